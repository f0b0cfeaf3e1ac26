//! What the exporter knows, folded from engine events: plain data, no I/O, so the rules that
//! keep the counters honest are tested without a server.
//!
//! The row counters follow the ledger. Progress and the end-of-step events carry a step's
//! counts as the ledger has them (a resumed step's include what its earlier attempt
//! committed), so each new value adds only what it is above the last one seen: a counter never
//! goes backwards, and at the end of a run it equals the ledger's count. When a step's ledger
//! counts start again from zero (a rollback reverted it, or a run of another kind than `up`
//! counts each step afresh) the next values add up on top of what was already counted.

use crate::engine::project::StepKind;
use crate::engine::protocol::report::VerifyReport;
use crate::engine::protocol::views::Snapshot;
use crate::engine::protocol::{BATCH_SECONDS_BOUNDS, BatchTimes, Counts, EngineEvent, Operation, Progress, StepState};
use chrono::{DateTime, FixedOffset, Utc};
use std::collections::BTreeMap;

/// The `kind` label values of `cutover_rows_total`, in the order of [`RowCounts`].
pub const ROW_KINDS: [&str; 6] = ["read", "written", "skipped", "rejected", "merged", "warned"];

/// The `state` label values of `cutover_step_state`.
pub const STEP_STATES: [&str; 5] = ["pending", "running", "paused", "applied", "failed"];

/// Rows per kind, in the order of [`ROW_KINDS`].
pub type RowCounts = [u64; 6];

fn row_counts(c: &Counts) -> RowCounts {
    [c.source, c.written, c.skipped, c.rejected, c.merged, c.warnings]
}

fn progress_counts(p: &Progress) -> RowCounts {
    [p.rows_done, p.written, p.skipped, p.rejected, p.merged, p.warnings]
}

/// A step's state as the dashboard shows it: one of [`STEP_STATES`].
pub fn gauge_state(s: StepState) -> &'static str {
    match s {
        StepState::Pending | StepState::Reverted => "pending",
        StepState::Running => "running",
        // Stopped at a batch boundary and waiting for `up` to resume it.
        StepState::Interrupted => "paused",
        StepState::Applied | StepState::Modified => "applied",
        StepState::Failed => "failed",
    }
}

/// A histogram as exported: per-bucket counts (the encoder sums them up to `le`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Histogram {
    pub count: u64,
    pub sum_secs: f64,
    pub in_bucket: [u64; BATCH_SECONDS_BOUNDS.len()],
}

impl Histogram {
    /// Add what `now` has more than `before` (two values of one attempt's running totals).
    fn add_growth(&mut self, now: &BatchTimes, before: &BatchTimes) {
        self.count += now.count.saturating_sub(before.count);
        self.sum_secs += now.sum_us.saturating_sub(before.sum_us) as f64 / 1e6;
        for (i, b) in self.in_bucket.iter_mut().enumerate() {
            *b += u64::from(now.in_bucket[i].saturating_sub(before.in_bucket[i]));
        }
    }

    /// (upper bound, batches in that bucket only), the form the encoder takes.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        BATCH_SECONDS_BOUNDS
            .iter()
            .copied()
            .zip(self.in_bucket.iter().copied())
            .collect()
    }
}

#[derive(Debug, Clone, Default)]
pub struct StepBoard {
    pub name: String,
    /// One of [`STEP_STATES`]; None until an event or snapshot says.
    pub state: Option<&'static str>,
    /// Exported: rows counted since this process started watching.
    pub rows: RowCounts,
    /// The ledger's counts of this step's current application, as last seen.
    seen: RowCounts,
    pub batches: Histogram,
    /// The running totals of the current attempt's batch times, as last seen.
    batches_seen: BatchTimes,
    /// The last progress of a real (not dry) attempt, for the ETA.
    progress: Option<Progress>,
    /// Source rows, when the plan or a count said (for the ETA of a step not started yet).
    rows_estimate: Option<u64>,
}

impl StepBoard {
    /// Take the ledger's counts of this step: add their growth over the last seen.
    fn ledger_counts(&mut self, now: RowCounts) {
        for ((exported, seen), now) in self.rows.iter_mut().zip(self.seen.iter_mut()).zip(now) {
            *exported += now.saturating_sub(*seen);
            *seen = (*seen).max(now);
        }
    }

    /// The ledger's counts of this step start again from zero.
    fn ledger_reset(&mut self) {
        self.seen = RowCounts::default();
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub run_id: String,
    pub operation: String,
    pub dry_run: bool,
    /// False once `Finished` came.
    pub going: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncLag {
    pub rows: u64,
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Board {
    pub window_end: Option<DateTime<FixedOffset>>,
    pub steps: BTreeMap<String, StepBoard>,
    pub run: Option<RunInfo>,
    /// The run's operation counts rows (up and sync; not down, not dry runs).
    counting: bool,
    /// Each step start counts from zero (any run but `up`, which resumes from the ledger).
    fresh_each_start: bool,
    /// Steps of the current run not finished yet, in plan order.
    remaining: Vec<String>,
    /// Rows/s of the last step that finished in this process (the ETA's rate between steps).
    last_rate: Option<f64>,
    /// (ok, unix seconds) of the last verification.
    pub verify: Option<(bool, f64)>,
    pub sync_lag: BTreeMap<String, SyncLag>,
}

impl Board {
    pub fn new(window_end: Option<DateTime<FixedOffset>>, steps: impl IntoIterator<Item = (String, String)>) -> Board {
        Board {
            window_end,
            steps: steps
                .into_iter()
                .map(|(version, name)| {
                    (
                        version,
                        StepBoard {
                            name,
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    fn step(&mut self, version: &str) -> &mut StepBoard {
        self.steps.entry(version.to_string()).or_default()
    }

    fn real_run(&self) -> bool {
        self.run.as_ref().is_some_and(|r| !r.dry_run)
    }

    pub fn observe(&mut self, ev: &EngineEvent, now: DateTime<Utc>) {
        match ev {
            EngineEvent::Planned {
                run_id,
                operation,
                dry_run,
                steps,
            } => {
                self.run = Some(RunInfo {
                    run_id: run_id.clone(),
                    operation: operation.as_str().to_string(),
                    dry_run: *dry_run,
                    going: true,
                });
                self.counting = !dry_run && *operation != Operation::Down;
                self.fresh_each_start = !matches!(operation, Operation::Up | Operation::Down);
                self.remaining = if *dry_run {
                    Vec::new()
                } else {
                    steps.iter().map(|s| s.version.clone()).collect()
                };
                for s in steps {
                    let step = self.step(&s.version);
                    step.name = s.name.clone();
                    if s.kind == StepKind::Schema {
                        // DDL moves no rows: it does not move the ETA.
                        step.rows_estimate = Some(0);
                    } else if s.rows_estimate.is_some() {
                        step.rows_estimate = s.rows_estimate;
                    }
                    if !dry_run && *operation == Operation::Up {
                        step.state = Some("pending");
                    }
                }
            }
            EngineEvent::StepStarted {
                version,
                name,
                dry_run: false,
                ..
            } => {
                let fresh = self.fresh_each_start;
                let step = self.step(version);
                step.name = name.clone();
                step.state = Some("running");
                step.batches_seen = BatchTimes::default();
                step.progress = None;
                if fresh {
                    step.ledger_reset();
                }
            }
            EngineEvent::Progress { version, progress } if self.real_run() => {
                let counting = self.counting;
                let step = self.step(version);
                if counting {
                    step.ledger_counts(progress_counts(progress));
                }
                let before = step.batches_seen;
                step.batches.add_growth(&progress.batch_times, &before);
                step.batches_seen = progress.batch_times;
                step.progress = Some(*progress);
            }
            EngineEvent::Paused { version: Some(v) } if self.real_run() => {
                self.step(v).state = Some("paused");
            }
            EngineEvent::Resumed { version: Some(v) } if self.real_run() => {
                self.step(v).state = Some("running");
            }
            EngineEvent::StepFinished {
                version,
                name,
                status,
                counts,
                duration_ms,
                dry_run: false,
            } => {
                let counting = self.counting;
                let step = self.step(version);
                step.name = name.clone();
                step.state = Some(gauge_state(*status));
                step.progress = None;
                if counting {
                    step.ledger_counts(row_counts(counts));
                }
                if *status == StepState::Reverted {
                    step.ledger_reset();
                }
                if counting && counts.source > 0 && *duration_ms > 0 {
                    self.last_rate = Some(counts.source as f64 * 1000.0 / *duration_ms as f64);
                }
                self.remaining.retain(|v| v != version);
            }
            EngineEvent::Aborted { version, counts } if self.real_run() => {
                let counting = self.counting;
                let step = self.step(version);
                step.state = Some("paused");
                step.progress = None;
                if counting {
                    step.ledger_counts(row_counts(counts));
                }
            }
            EngineEvent::Failed {
                version: Some(version),
                counts,
                ..
            } if self.real_run() => {
                let counting = self.counting;
                let step = self.step(version);
                step.state = Some("failed");
                step.progress = None;
                if let (true, Some(c)) = (counting, counts) {
                    step.ledger_counts(row_counts(c));
                }
            }
            EngineEvent::Finished { run_id, .. } => {
                if let Some(run) = self.run.as_mut().filter(|r| &r.run_id == run_id) {
                    run.going = false;
                }
                self.remaining.clear();
                for step in self.steps.values_mut() {
                    step.progress = None;
                }
            }
            EngineEvent::Snapshot(s) => self.snapshot(s),
            EngineEvent::SourceCounts { rows, .. } => {
                for (version, n) in rows {
                    self.step(version).rows_estimate = Some(*n);
                }
            }
            EngineEvent::Synced {
                version,
                lag_rows,
                lag_seconds,
                ..
            } => self.synced(version, *lag_rows, *lag_seconds),
            EngineEvent::Verified(report) => self.verified(report, now),
            _ => {}
        }
    }

    /// The ledger as it stands: every step's state, and its counts for what was not seen yet.
    fn snapshot(&mut self, s: &Snapshot) {
        for m in &s.migrations {
            let step = self.step(&m.version);
            step.name = m.name.clone();
            step.state = Some(gauge_state(m.state));
            match m.state {
                // A reverted step's row keeps its old counts; they are no longer the ledger's.
                StepState::Pending | StepState::Reverted => step.ledger_reset(),
                _ => step.ledger_counts(row_counts(&m.counts)),
            }
        }
    }

    fn verified(&mut self, report: &VerifyReport, now: DateTime<Utc>) {
        self.verify = Some((report.ok, now.timestamp_millis() as f64 / 1000.0));
    }

    /// The lag of a step that a sync pass just brought up to date (`EngineEvent::Synced`).
    pub fn synced(&mut self, version: &str, lag_rows: u64, lag_seconds: Option<f64>) {
        self.sync_lag.insert(
            version.to_string(),
            SyncLag {
                rows: lag_rows,
                seconds: lag_seconds,
            },
        );
    }

    /// Seconds until the window closes (negative once it has); None without a `[window]`.
    pub fn window_seconds_left(&self, now: DateTime<Utc>) -> Option<f64> {
        self.window_end
            .map(|end| (end.with_timezone(&Utc) - now).num_milliseconds() as f64 / 1000.0)
    }

    /// Seconds until the current run's known work is done: the running step's rows left and the
    /// sizes of its steps not started yet, at the running step's rate (between steps: the last
    /// finished step's). 0 when no run is going; None before any run, or while no rate has been
    /// measured yet. Steps of unknown size (not counted) add nothing.
    pub fn eta_seconds(&self) -> Option<f64> {
        let run = self.run.as_ref()?;
        if !run.going || run.dry_run {
            return Some(0.0);
        }
        let mut rows_left = 0u64;
        let mut live_rate = None;
        let mut unknown = 0;
        for step in self.remaining.iter().filter_map(|v| self.steps.get(v)) {
            match (&step.progress, step.rows_estimate) {
                (Some(p), _) => {
                    rows_left += p.rows_total.saturating_sub(p.rows_done);
                    live_rate = live_rate.or((p.rows_per_sec > 0.0).then_some(p.rows_per_sec));
                }
                (None, Some(n)) => rows_left += n,
                (None, None) => unknown += 1,
            }
        }
        if rows_left == 0 {
            // Nothing known left: done, or only steps not counted yet (then: unknown).
            return (unknown == 0).then_some(0.0);
        }
        let rate = live_rate.or(self.last_rate)?;
        Some((rows_left as f64 / rate).ceil())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::protocol::{NoticeLevel, PlannedStep};

    const V: &str = "20250101T090100";

    fn board() -> Board {
        Board::new(None, [(V.to_string(), "accounts".to_string())])
    }

    fn planned(operation: Operation, dry_run: bool) -> EngineEvent {
        EngineEvent::Planned {
            run_id: "r1".into(),
            operation,
            dry_run,
            steps: vec![PlannedStep {
                version: V.into(),
                name: "accounts".into(),
                kind: StepKind::Data,
                rows_estimate: None,
            }],
        }
    }

    fn started(dry_run: bool) -> EngineEvent {
        EngineEvent::StepStarted {
            version: V.into(),
            name: "accounts".into(),
            kind: StepKind::Data,
            dry_run,
        }
    }

    fn progress(done: u64, total: u64, batches: &[u64]) -> EngineEvent {
        let mut times = BatchTimes::default();
        for ms in batches {
            times.record(std::time::Duration::from_millis(*ms));
        }
        EngineEvent::Progress {
            version: V.into(),
            progress: Progress {
                rows_done: done,
                rows_total: total,
                written: done,
                rows_per_sec: 100.0,
                batch_times: times,
                ..Progress::default()
            },
        }
    }

    fn finished(status: StepState, source: u64) -> EngineEvent {
        EngineEvent::StepFinished {
            version: V.into(),
            name: "accounts".into(),
            status,
            counts: Counts {
                source,
                written: source,
                ..Counts::default()
            },
            duration_ms: 1000,
            dry_run: false,
        }
    }

    fn feed(b: &mut Board, events: &[EngineEvent]) {
        for e in events {
            b.observe(e, Utc::now());
        }
    }

    fn read(b: &Board) -> u64 {
        b.steps[V].rows[0]
    }

    #[test]
    fn counters_follow_the_ledger_and_a_resumed_attempt_does_not_count_twice() {
        let mut b = board();
        feed(
            &mut b,
            &[planned(Operation::Up, false), started(false), progress(300, 1000, &[])],
        );
        assert_eq!(read(&b), 300);
        // Aborted at 400; the next `up` resumes: its progress starts at the ledger's 400.
        feed(
            &mut b,
            &[EngineEvent::Aborted {
                version: V.into(),
                counts: Counts {
                    source: 400,
                    written: 400,
                    ..Counts::default()
                },
            }],
        );
        assert_eq!(b.steps[V].state, Some("paused"));
        feed(
            &mut b,
            &[
                planned(Operation::Up, false),
                started(false),
                progress(600, 1000, &[]),
                finished(StepState::Applied, 1000),
            ],
        );
        assert_eq!(read(&b), 1000, "ends equal to the ledger's 1000");
        assert_eq!(b.steps[V].rows[1], 1000);
        assert_eq!(b.steps[V].state, Some("applied"));
    }

    #[test]
    fn a_counter_never_goes_back() {
        let mut b = board();
        feed(
            &mut b,
            &[planned(Operation::Up, false), started(false), progress(500, 1000, &[])],
        );
        // A late, older value (a snapshot read before the last batch committed).
        feed(&mut b, &[progress(200, 1000, &[])]);
        assert_eq!(read(&b), 500);
        feed(&mut b, &[progress(700, 1000, &[])]);
        assert_eq!(read(&b), 700);
    }

    #[test]
    fn a_rerun_after_a_rollback_adds_up_and_dry_runs_and_down_count_nothing() {
        let mut b = board();
        feed(
            &mut b,
            &[
                planned(Operation::Up, false),
                started(false),
                finished(StepState::Applied, 100),
            ],
        );
        feed(
            &mut b,
            &[planned(Operation::Down, false), finished(StepState::Reverted, 100)],
        );
        assert_eq!(read(&b), 100, "a rollback takes nothing back from a counter");
        assert_eq!(b.steps[V].state, Some("pending"));
        feed(
            &mut b,
            &[
                planned(Operation::Up, true),
                started(true),
                progress(100, 100, &[10]),
                EngineEvent::StepFinished {
                    version: V.into(),
                    name: "accounts".into(),
                    status: StepState::Applied,
                    counts: Counts {
                        source: 100,
                        ..Counts::default()
                    },
                    duration_ms: 5,
                    dry_run: true,
                },
            ],
        );
        assert_eq!(read(&b), 100, "a dry run moves no rows");
        assert_eq!(b.steps[V].batches.count, 0, "nor counts batches");
        assert_eq!(b.steps[V].state, Some("pending"));
        feed(
            &mut b,
            &[planned(Operation::Up, false), started(false), progress(40, 100, &[])],
        );
        assert_eq!(read(&b), 140, "the second application counts from zero on top");
        feed(&mut b, &[finished(StepState::Applied, 100)]);
        assert_eq!(read(&b), 200);
    }

    #[test]
    fn the_histogram_counts_every_batch_of_coalesced_progress() {
        let mut b = board();
        feed(&mut b, &[planned(Operation::Up, false), started(false)]);
        // Five batches, but only two progress events reached the exporter.
        feed(&mut b, &[progress(200, 500, &[3, 40])]);
        feed(&mut b, &[progress(500, 500, &[3, 40, 40, 300, 20_000])]);
        let h = b.steps[V].batches;
        assert_eq!(h.count, 5);
        assert_eq!(h.buckets()[0], (0.005, 1));
        assert_eq!(h.buckets()[3], (0.05, 2));
        assert_eq!(h.buckets()[6], (0.5, 1));
        // 20 s is past the last bound: only in +Inf (count less the buckets).
        assert_eq!(h.in_bucket.iter().sum::<u64>(), 4);
        assert!((h.sum_secs - 20.383).abs() < 1e-9, "{}", h.sum_secs);
        // A new attempt's totals start at zero again: they add on top.
        feed(&mut b, &[started(false), progress(100, 100, &[3])]);
        assert_eq!(b.steps[V].batches.count, 6);
    }

    #[test]
    fn the_eta_is_known_work_at_the_measured_rate() {
        let mut b = board();
        assert_eq!(b.eta_seconds(), None, "no run yet");
        feed(&mut b, &[planned(Operation::Up, false)]);
        assert_eq!(b.eta_seconds(), None, "a step of unknown size and no rate");
        feed(
            &mut b,
            &[
                EngineEvent::SourceCounts {
                    rows: vec![(V.into(), 1000)],
                    errors: Vec::new(),
                },
                started(false),
                progress(250, 1000, &[]),
            ],
        );
        // 750 rows at 100 rows/s.
        assert_eq!(b.eta_seconds(), Some(8.0));
        feed(
            &mut b,
            &[EngineEvent::Notice {
                level: NoticeLevel::Info,
                message: "x".into(),
            }],
        );
        feed(
            &mut b,
            &[
                finished(StepState::Applied, 1000),
                EngineEvent::Finished {
                    run_id: "r1".into(),
                    operation: Operation::Up,
                    ok: true,
                    outcome: crate::engine::protocol::Outcome::Done,
                    steps_done: 1,
                    dry_run: false,
                },
            ],
        );
        assert_eq!(b.eta_seconds(), Some(0.0));
        assert!(!b.run.as_ref().unwrap().going);
    }

    #[test]
    fn the_window_counts_down_to_its_end() {
        let end = DateTime::parse_from_rfc3339("2026-11-22T02:00:00+01:00").unwrap();
        let b = Board::new(Some(end), []);
        let now = DateTime::parse_from_rfc3339("2026-11-22T00:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(b.window_seconds_left(now), Some(30.0 * 60.0));
        let later = now + chrono::Duration::hours(1);
        assert_eq!(b.window_seconds_left(later), Some(-30.0 * 60.0));
    }
}
