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

    /// The lag of a step that a sync pass just brought up to date.
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
