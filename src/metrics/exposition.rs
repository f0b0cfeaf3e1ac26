//! The board in the Prometheus text format, encoded at each scrape (so the window's seconds left
//! are those of the scrape, not of the last event).

use crate::metrics::board::{Board, ROW_KINDS, STEP_STATES};
use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug)]
struct BoardCollector(Arc<Mutex<Board>>);

impl Collector for BoardCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A panic elsewhere while holding the lock leaves plain numbers behind: still worth
        // showing.
        let board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        encode_board(&board, Utc::now(), encoder)
    }
}

/// A registry whose one collector reads `board` at every scrape.
pub fn registry(board: Arc<Mutex<Board>>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BoardCollector(board)));
    registry
}

/// The text of one scrape.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    m.encode_gauge(&value)
}

fn encode_board(board: &Board, now: DateTime<Utc>, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
    {
        // Encoded as `cutover_rows_total` (counters get `_total`).
        let mut m = encoder.encode_descriptor(
            "cutover_rows",
            "Rows per step and kind (read, written, skipped, rejected, merged, warned), as the ledger counts them",
            None,
            MetricType::Counter,
        )?;
        for (version, step) in &board.steps {
            for (kind, n) in ROW_KINDS.iter().zip(step.rows) {
                let labels = [("step", version.as_str()), ("name", step.name.as_str()), ("kind", kind)];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, u64, u64>(&n, None)?;
            }
        }
    }
    {
        let mut m = encoder.encode_descriptor(
            "cutover_batch_duration_seconds",
            "Time of each batch of a step: reading its page, writing it, committing",
            None,
            MetricType::Histogram,
        )?;
        for (version, step) in &board.steps {
            let h = &step.batches;
            let labels = [("step", version.as_str()), ("name", step.name.as_str())];
            m.encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(h.sum_secs, h.count, &h.buckets(), None)?;
        }
    }
    {
        let mut m = encoder.encode_descriptor(
            "cutover_step_state",
            "1 for the state each step is in (pending, running, paused, applied, failed), 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for (version, step) in &board.steps {
            let Some(current) = step.state else { continue };
            for state in STEP_STATES {
                let labels = [
                    ("step", version.as_str()),
                    ("name", step.name.as_str()),
                    ("state", state),
                ];
                m.encode_family(&labels)?.encode_gauge(&i64::from(state == current))?;
            }
        }
    }
    if let Some(left) = board.window_seconds_left(now) {
        gauge(
            &mut encoder,
            "cutover_window_seconds_left",
            "Seconds until the maintenance window closes (negative once it has)",
            left,
        )?;
    }
    if let Some(eta) = board.eta_seconds() {
        gauge(
            &mut encoder,
            "cutover_eta_seconds",
            "Seconds until the current run's known work is done, at the measured rate (0 when no run is going)",
            eta,
        )?;
    }
    if !board.sync_lag.is_empty() {
        {
            let mut m = encoder.encode_descriptor(
                "cutover_sync_lag_rows",
                "Source rows changed after the step's sync mark, after the last sync pass",
                None,
                MetricType::Gauge,
            )?;
            for (version, lag) in &board.sync_lag {
                m.encode_family(&[("step", version.as_str())])?
                    .encode_gauge(&lag.rows)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "cutover_sync_lag_seconds",
            "Age of the oldest source change not synced yet, after the last sync pass",
            None,
            MetricType::Gauge,
        )?;
        for (version, lag) in &board.sync_lag {
            if let Some(secs) = lag.seconds {
                m.encode_family(&[("step", version.as_str())])?.encode_gauge(&secs)?;
            }
        }
    }
    if let Some((ok, at)) = board.verify {
        gauge(
            &mut encoder,
            "cutover_verify_last_ok",
            "1 when the last verification passed every check, else 0",
            i64::from(ok),
        )?;
        gauge(
            &mut encoder,
            "cutover_verify_last_timestamp_seconds",
            "When the last verification ended (Unix time)",
            at,
        )?;
    }
    if let Some(run) = &board.run {
        {
            let mut m = encoder.encode_descriptor(
                "cutover_run_info",
                "The current run (or the last one): its id and operation",
                None,
                MetricType::Gauge,
            )?;
            let labels = [("run_id", run.run_id.as_str()), ("operation", run.operation.as_str())];
            m.encode_family(&labels)?.encode_gauge(&1i64)?;
        }
        gauge(
            &mut encoder,
            "cutover_run_active",
            "1 while the run of cutover_run_info is going, 0 once it has finished",
            i64::from(run.going),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::protocol::report::VerifyReport;
    use crate::engine::protocol::{Counts, EngineEvent, Operation, StepState};

    #[test]
    fn the_scrape_names_the_series_of_the_contract() {
        let mut board = Board::new(None, [("20250101T090100".to_string(), "accounts".to_string())]);
        board.observe(
            &EngineEvent::Planned {
                run_id: "r1".into(),
                operation: Operation::Up,
                dry_run: false,
                steps: Vec::new(),
            },
            Utc::now(),
        );
        board.observe(
            &EngineEvent::StepFinished {
                version: "20250101T090100".into(),
                name: "accounts".into(),
                status: StepState::Applied,
                counts: Counts {
                    source: 10,
                    written: 9,
                    rejected: 1,
                    ..Counts::default()
                },
                duration_ms: 10,
                dry_run: false,
            },
            Utc::now(),
        );
        board.observe(
            &EngineEvent::Verified(VerifyReport {
                ok: false,
                checks: Vec::new(),
            }),
            Utc::now(),
        );
        board.synced("20250101T090100", 7, Some(2.5));
        let text = render(&registry(Arc::new(Mutex::new(board)))).unwrap();
        for line in [
            "# TYPE cutover_rows_total counter",
            "cutover_rows_total{step=\"20250101T090100\",name=\"accounts\",kind=\"written\"} 9",
            "cutover_rows_total{step=\"20250101T090100\",name=\"accounts\",kind=\"rejected\"} 1",
            "# TYPE cutover_batch_duration_seconds histogram",
            "cutover_step_state{step=\"20250101T090100\",name=\"accounts\",state=\"applied\"} 1",
            "cutover_step_state{step=\"20250101T090100\",name=\"accounts\",state=\"failed\"} 0",
            "cutover_sync_lag_rows{step=\"20250101T090100\"} 7",
            "cutover_sync_lag_seconds{step=\"20250101T090100\"} 2.5",
            "cutover_verify_last_ok 0",
            "# TYPE cutover_verify_last_timestamp_seconds gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }
        assert!(!text.contains("_total_total"), "{text}");
        assert!(
            text.contains("cutover_run_info{run_id=\"r1\",operation=\"up\"} 1"),
            "{text}"
        );
        // No [window]: no seconds left.
        assert!(!text.contains("cutover_window_seconds_left"), "{text}");
    }
}
