//! The engine's two message types: `Command` in, `EngineEvent` out. Both serialise, so the CLI's
//! `--json` output is these events as NDJSON and the console consumes exactly the same stream.

pub mod assess;
pub mod report;
pub mod views;

use crate::engine::project::StepKind;
use serde::{Deserialize, Serialize};

/// What a run should do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunOptions {
    /// Stop after this version (inclusive).
    pub to: Option<String>,
    /// Run only the next pending step.
    pub only_next: bool,
    /// Run only this version (console: dry-run of the selected step).
    pub only: Option<String>,
    pub dry_run: bool,
    pub allow_out_of_order: bool,
    /// Overrides the step's and the project's setting when set.
    pub continue_on_error: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownTarget {
    /// Revert the last applied step only.
    Last,
    /// Revert every applied step above this version.
    To(String),
    /// Revert one step (the console's `u`), which must be the latest applied one.
    Only(String),
    All,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Start(RunOptions),
    Pause,
    Resume,
    Abort,
    /// The operator is being asked whether to abort: the run waits at its next batch boundary
    /// until `Abort` or `ReleaseAbortQuestion`, so it cannot go on (or finish) under the
    /// question.
    HoldForAbortQuestion,
    /// The abort question was answered no: the run goes on (unless paused).
    ReleaseAbortQuestion,
    /// Retry rejected rows: one id, or all of a step when `id` is None.
    Retry {
        id: Option<i64>,
        step: Option<String>,
    },
    /// Set a field of a rejected row before retrying it.
    FixReject {
        id: i64,
        field: String,
        value: String,
    },
    Decide {
        id: i64,
        decision: String,
        note: Option<String>,
    },
    /// Undo a discrepancy's decision: restore the value from before it, open it again
    /// (answered by `Decided` with decision `undo`).
    UndoDecision {
        id: i64,
    },
    Rollback {
        target: DownTarget,
        dry_run: bool,
    },
    /// Re-read the ledger and rejects and send a fresh `Snapshot`.
    Refresh,
    /// Say what rolling back this step would undo (`RollbackPreview`).
    PreviewRollback {
        version: String,
    },
    /// Check the target against the source (`Verified`).
    Verify,
    /// One page of the reject store, the filter applied by the store (`RejectPage`).
    LoadRejects(RejectPageRequest),
    /// Write every reject matching `filter` to `rejects-<stamp>.csv` in the project folder,
    /// read from the store a chunk at a time (`RejectsExported`).
    ExportRejects {
        filter: String,
        stamp: String,
    },
    /// Both records behind discrepancy `id`, whole (`ReviewRecords`).
    LoadReviewRecords {
        id: i64,
    },
    /// Count the source rows of every data and merge step not applied yet (`SourceCounts`),
    /// for the plan's ETA before anything ran.
    CountSources,
    /// The files of the project's source folder (`ImportFiles`), for the console's import pane.
    ListImportFiles,
    /// Preview a file (relative to the source folder, or absolute) and, with `into`, suggest a
    /// mapping into that target table (`Preview`).
    PreviewFile {
        file: String,
        sheet: Option<String>,
        into: Option<String>,
        rows: usize,
    },
    /// Dry-run a step not saved yet, as the project's newest step (`ImportDryRun`).
    DryRunImport {
        name: String,
        step: String,
    },
    /// Save a step as a new migration folder (`ImportSaved`).
    SaveImportStep {
        name: String,
        step: String,
    },
    /// Assess the pending steps read-only: what `up` would write, reject and skip, and how
    /// long it would take (`Assessed`).
    Assess {
        sample: Option<u64>,
    },
    /// Back up the target into `out` (default: the project's `backups/` folder) and record it
    /// in the ledger (`BackedUp`).
    Backup {
        out: Option<String>,
    },
    /// Incremental sync of the applied steps with `[sync]` (all, or `steps`): one pass when
    /// `once`, else a pass every `every_ms` until `Abort` (which stops at a batch boundary).
    Sync {
        once: bool,
        every_ms: Option<u64>,
        steps: Vec<String>,
    },
}

/// Which page of the rejects: the one starting at a row, or the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageAt {
    Offset(u64),
    Last,
}

/// A page of rejected rows (errors, open and resolved, oldest first) matching a filter: every
/// word of `filter` must appear in the step (version or name), rule, source table, key, field
/// or reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectPageRequest {
    /// Echoed in the answer, so a late page of an older request is recognised.
    pub seq: u64,
    pub filter: String,
    pub at: PageAt,
    pub limit: u64,
}

/// Which way a run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    #[default]
    Up,
    Down,
    Sync,
}

impl Operation {
    pub fn as_str(&self) -> &'static str {
        match self {
            Operation::Up => "up",
            Operation::Down => "down",
            Operation::Sync => "sync",
        }
    }
}

/// How a run ended. The CLI's exit code follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Locked,
    Refused,
    Failed,
    Aborted,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Locked => "locked",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Aborted => "aborted",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a step stands: its folder joined with the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    #[default]
    Pending,
    Applied,
    Failed,
    Running,
    /// Stopped before it finished (aborted at a batch boundary, or its process was killed) and
    /// no run is working on it now: `up` resumes a data or merge step from its checkpoint.
    Interrupted,
    Modified,
    Reverted,
}

impl StepState {
    /// How a finished step is shown: a dry run changed nothing, whatever state it would reach.
    pub fn finished_label(self, dry_run: bool) -> &'static str {
        if dry_run { "dry-run" } else { self.as_str() }
    }
}

impl StepState {
    /// Started and not finished: failed, interrupted, or (per the ledger) still running.
    pub fn is_unfinished(self) -> bool {
        matches!(self, StepState::Running | StepState::Interrupted | StepState::Failed)
    }
}

impl std::fmt::Display for StepState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StepState {
    pub fn as_str(&self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Applied => "applied",
            StepState::Failed => "failed",
            StepState::Running => "running",
            StepState::Interrupted => "interrupted",
            StepState::Modified => "modified",
            StepState::Reverted => "reverted",
        }
    }
}

impl EngineEvent {
    /// The run failed outside any step (a lock held elsewhere, a refused plan, no connection).
    pub fn run_failed(error: String) -> EngineEvent {
        EngineEvent::Failed {
            version: None,
            error,
            statement: None,
            source_key: None,
            column: None,
            counts: None,
        }
    }
}

/// How much a `Notice` matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeLevel {
    Info,
    Warning,
    Error,
}

/// Progress of the running step: small and `Copy` so it can be sent often and coalesced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Progress {
    pub step_index: u32,
    pub rows_done: u64,
    pub rows_total: u64,
    pub written: u64,
    pub skipped: u64,
    pub rejected: u64,
    pub merged: u64,
    pub warnings: u64,
    pub batches_done: u64,
    pub batches_total: u64,
    pub rows_per_sec: f64,
    pub elapsed_ms: u64,
    /// How long this attempt's batches took, as histogram buckets summed up engine-side: the
    /// events are coalesced, so a consumer (the metrics exporter) could not rebuild the
    /// distribution from the batches it happens to see.
    #[serde(default, skip_serializing_if = "BatchTimes::is_empty")]
    pub batch_times: BatchTimes,
}

/// Upper bounds, in seconds, of the batch duration buckets (Prometheus' default buckets).
pub const BATCH_SECONDS_BOUNDS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Durations of the batches of one step attempt (one `run_batches` call; a resumed step starts
/// again at zero): how many, their sum, and how many fell in each bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BatchTimes {
    pub count: u64,
    pub sum_us: u64,
    /// `in_bucket[i]`: batches longer than bound `i - 1` and at most `BATCH_SECONDS_BOUNDS[i]`;
    /// the ones longer than the last bound are `count` less the sum of these.
    pub in_bucket: [u32; BATCH_SECONDS_BOUNDS.len()],
}

impl BatchTimes {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn record(&mut self, took: std::time::Duration) {
        self.count += 1;
        self.sum_us = self
            .sum_us
            .saturating_add(took.as_micros().min(u128::from(u64::MAX)) as u64);
        let secs = took.as_secs_f64();
        if let Some(i) = BATCH_SECONDS_BOUNDS.iter().position(|b| secs <= *b) {
            self.in_bucket[i] = self.in_bucket[i].saturating_add(1);
        }
    }
}

/// The accounting of one step: source = written + skipped + rejected + merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Counts {
    pub source: u64,
    pub written: u64,
    pub skipped: u64,
    pub rejected: u64,
    pub merged: u64,
    pub warnings: u64,
}

impl Counts {
    pub fn balanced(&self) -> bool {
        self.source == self.written + self.skipped + self.rejected + self.merged
    }
    /// The equation as people read it: `source 10 = written 8 + skipped 1 + rejected 1 + merged 0`.
    pub fn equation(&self) -> String {
        format!(
            "source {} = written {} + skipped {} + rejected {} + merged {}{}{}",
            self.source,
            self.written,
            self.skipped,
            self.rejected,
            self.merged,
            if self.balanced() { "" } else { "  (DOES NOT BALANCE)" },
            if self.warnings > 0 {
                format!(", {} warnings", self.warnings)
            } else {
                String::new()
            }
        )
    }
    pub fn add(&mut self, o: &Counts) {
        self.source += o.source;
        self.written += o.written;
        self.skipped += o.skipped;
        self.rejected += o.rejected;
        self.merged += o.merged;
        self.warnings += o.warnings;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub version: String,
    pub name: String,
    pub kind: StepKind,
    /// Source rows when known (data steps), for ETA.
    pub rows_estimate: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    Planned {
        run_id: String,
        operation: Operation,
        dry_run: bool,
        steps: Vec<PlannedStep>,
    },
    StepStarted {
        version: String,
        name: String,
        kind: StepKind,
        dry_run: bool,
    },
    /// A schema statement (dry runs list them; real runs report each as it completes).
    Statement {
        version: String,
        index: usize,
        sql: String,
    },
    Progress {
        version: String,
        progress: Progress,
    },
    Rejected {
        version: String,
        source_table: String,
        source_key: String,
        rule: String,
        reason: String,
    },
    Flagged {
        version: String,
        source_key: String,
        field: String,
        reason: String,
    },
    Paused {
        version: Option<String>,
    },
    Resumed {
        version: Option<String>,
    },
    StepFinished {
        version: String,
        name: String,
        /// The state the step is in now (a dry run: would be in).
        status: StepState,
        counts: Counts,
        duration_ms: u64,
        dry_run: bool,
    },
    /// The run stopped at a batch boundary on request; `cutover up` resumes it.
    Aborted {
        version: String,
        counts: Counts,
    },
    /// A step or the run failed. For a step: the source row that stopped it (key and column)
    /// when one did, and the books it had committed.
    Failed {
        version: Option<String>,
        error: String,
        statement: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        column: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        counts: Option<Counts>,
    },
    /// The last event of every run. `outcome`: done, locked, refused, failed or aborted.
    Finished {
        run_id: String,
        operation: Operation,
        ok: bool,
        outcome: Outcome,
        steps_done: usize,
        dry_run: bool,
    },
    /// The state of every step and the reject store, after `Refresh` and after every run.
    Snapshot(Box<views::Snapshot>),
    RollbackPreview(views::RollbackPreview),
    /// Answer to `LoadRejects`.
    RejectPage(views::RejectPage),
    /// Answer to `LoadReviewRecords`.
    ReviewRecords(Box<views::ReviewRecords>),
    /// Answer to `ExportRejects`: the file and the rows written, or why not.
    RejectsExported {
        path: String,
        rows: u64,
        error: Option<String>,
    },
    /// The result of `Verify`: the same checks `cutover verify` prints.
    Verified(report::VerifyReport),
    /// `Verify` could not run (a broken verify.toml, an unreachable database).
    Unverified {
        message: String,
    },
    /// Answer to `Decide`: `applied` false when the engine refused it (`message` says why).
    Decided {
        id: i64,
        decision: String,
        applied: bool,
        message: String,
    },
    /// Answer to `FixReject`.
    Fixed {
        id: i64,
        field: String,
        applied: bool,
        message: String,
    },
    /// Answer to `Retry`: `error` set when the retry could not run at all.
    Retried {
        written: u64,
        still_rejected: u64,
        /// The first row still rejected, with its reason.
        first_still_rejected: Option<(i64, String)>,
        error: Option<String>,
    },
    /// Answer to `CountSources`: source rows per step (a merge step: both sides), and the
    /// steps that could not be counted, with why.
    SourceCounts {
        rows: Vec<(String, u64)>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        errors: Vec<(String, String)>,
    },
    /// Answer to `ListImportFiles`.
    ImportFiles {
        folder: Option<String>,
        files: Vec<String>,
        error: Option<String>,
    },
    /// Answer to `PreviewFile`.
    Preview(Box<crate::engine::preview::PreviewReport>),
    /// Answer to `DryRunImport`.
    ImportDryRun {
        report: StepDryRun,
        error: Option<String>,
    },
    /// Answer to `SaveImportStep`: the folder written, or why not.
    ImportSaved {
        path: String,
        error: Option<String>,
    },
    /// One sync pass over one step: what it applied, and how far the step is behind now.
    Synced {
        version: String,
        pass: u64,
        inserted: u64,
        updated: u64,
        deleted: u64,
        rejected: u64,
        /// Source rows changed after the new mark (read right after the pass).
        lag_rows: u64,
        /// Age in seconds of the oldest change not yet synced (None when lag_rows is 0 or the
        /// cursor is not a timestamp).
        lag_seconds: Option<f64>,
        /// The new mark, as text.
        mark: Option<String>,
    },
    /// Anything else the engine wants the operator to see.
    Notice {
        level: NoticeLevel,
        message: String,
    },
    /// The answer to `Assess`.
    Assessed(Box<assess::AssessReport>),
    /// Answer to `Backup`: the file written with its size and SHA-256, or why not.
    BackedUp {
        file: String,
        bytes: u64,
        sha256: String,
        error: Option<String>,
    },
}

/// What a dry run of a step not saved yet would do (the console's import pane).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StepDryRun {
    pub ok: bool,
    pub counts: Option<Counts>,
    /// The first rejected rows: (source key, rule, reason).
    pub rejects: Vec<(String, String, String)>,
    /// Why the dry run failed or was refused.
    pub errors: Vec<String>,
}
