//! The console's whole state as plain data, and the messages that change it.
//!
//! Nothing here does I/O: `update` (in `update.rs`) is a pure function over these types, and the
//! panes only read them, so both can be tested without a terminal or a database.

use crate::engine::ops::review::Discrepancy;
use crate::engine::ops::snapshot::{RejectSummary, RollbackPreview, StepSummary};
use crate::engine::ops::verify::{Check, VerifyReport};
use crate::engine::project::StepKind;
use crate::engine::protocol::views::ReviewRecords;
use crate::engine::protocol::{Counts, EngineEvent, Operation, PlannedStep, Progress};
use crate::engine::store::lock::LockHolder;
use chrono::{DateTime, FixedOffset, Offset, Utc};
use crossterm::event::KeyEvent;
use std::collections::{BTreeMap, BTreeSet};

/// Most rows/s samples the throughput sparkline keeps (about a minute at 4 Hz progress).
pub const RATE_HISTORY: usize = 240;

/// Rows of the reject store the rejects pane holds at a time (one page).
pub const REJECT_PAGE_ROWS: u64 = 50;

/// The rejects pane reads its page again at most this often while rejects keep changing (a
/// run rejecting thousands of rows must not flood the engine with reads).
pub const REJECT_RELOAD_MS: i64 = 500;

/// How long a quit waits for the running step to reach its batch boundary before leaving anyway.
pub const QUIT_GRACE_SECS: i64 = 10;

/// Everything that can change the state.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Engine(EngineEvent),
    /// The clock; injected so tests and snapshots are stable.
    Tick(DateTime<Utc>),
    Resize(u16, u16),
}

/// Work the console does itself (not engine work, which goes out as `Command`s).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A key for the tui-logger widget, whose state lives outside `AppState`.
    Log(tui_logger::TuiWidgetEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pane {
    Migrations,
    Progress,
    Rejects,
    Log,
    Review,
    Verify,
}

impl Pane {
    /// Tab order: the pane numbers, 1 to 6, so tab and the digits agree.
    pub const ALL: [Pane; 6] = [
        Pane::Migrations,
        Pane::Progress,
        Pane::Rejects,
        Pane::Log,
        Pane::Review,
        Pane::Verify,
    ];

    /// The panes that take turns in the grid's middle place (the one focused last is shown).
    pub const MIDDLE: [Pane; 3] = [Pane::Rejects, Pane::Review, Pane::Verify];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Migrations => "Migrations",
            Pane::Progress => "Progress",
            Pane::Rejects => "Rejects",
            Pane::Log => "Log",
            Pane::Review => "Review",
            Pane::Verify => "Verify",
        }
    }

    /// The title where room is short (the tab bar beside a running step).
    pub fn short_title(self) -> &'static str {
        match self {
            Pane::Migrations => "Migr",
            Pane::Progress => "Prog",
            Pane::Rejects => "Rej",
            Pane::Log => "Log",
            Pane::Review => "Rev",
            Pane::Verify => "Ver",
        }
    }

    /// The digit that focuses the pane.
    pub fn number(self) -> usize {
        match self {
            Pane::Migrations => 1,
            Pane::Progress => 2,
            Pane::Rejects => 3,
            Pane::Log => 4,
            Pane::Review => 5,
            Pane::Verify => 6,
        }
    }

    fn position(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    pub fn next(self) -> Pane {
        Pane::ALL[(self.position() + 1) % Pane::ALL.len()]
    }

    pub fn prev(self) -> Pane {
        Pane::ALL[(self.position() + Pane::ALL.len() - 1) % Pane::ALL.len()]
    }
}

/// Where the rejects pane's selection goes when the page asked for arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SelectOnLoad {
    /// The same reject if it is still on the page, else the same row number.
    #[default]
    Keep,
    First,
    Last,
}

/// The two records a discrepancy is between: every discrepancy of the same step, entity and
/// keys shares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPair {
    pub step: String,
    pub entity_id: String,
    pub keys: [String; 2],
}

impl RecordPair {
    pub fn of(d: &Discrepancy) -> RecordPair {
        RecordPair {
            step: d.step.clone(),
            entity_id: d.entity_id.clone(),
            keys: d.keys.clone(),
        }
    }
}

/// The rejects pane's window on the reject store: which page it shows, of how many, and the
/// reads on their way. The rows themselves are `AppState::rejects`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RejectPaging {
    /// Rows before the shown page among those matching `filter`.
    pub offset: u64,
    /// Rejects matching `filter` in the store, all pages.
    pub matching: u64,
    /// The filter the shown page was read with.
    pub filter: String,
    /// The last request sent; a page answering an older one is dropped.
    pub seq: u64,
    /// A request was sent and not answered yet.
    pub in_flight: bool,
    /// When the last request was sent (the console's clock).
    pub requested_at: Option<DateTime<Utc>>,
    /// Rejects changed since the page was asked for: read it again when the throttle allows.
    pub stale: bool,
    pub select: SelectOnLoad,
    /// A page has arrived at least once.
    pub loaded: bool,
}

impl RejectPaging {
    /// 1-based numbers of the first and last row shown, for "showing 1201–1250 of 7383".
    pub fn shown_range(&self, rows: usize) -> Option<(u64, u64)> {
        (rows > 0).then(|| (self.offset + 1, self.offset + rows as u64))
    }

    pub fn has_next(&self, rows: usize) -> bool {
        self.offset + (rows as u64) < self.matching
    }
}

/// The maintenance window from the config (or the latest snapshot).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
}

impl Window {
    pub fn parse(start: &str, end: &str) -> Option<Window> {
        Some(Window {
            start: DateTime::parse_from_rfc3339(start).ok()?,
            end: DateTime::parse_from_rfc3339(end).ok()?,
        })
    }
}

/// Where a step reads and writes, for the confirmation dialog and the details view. Read from
/// the step files once at start-up (outside `update`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepInfo {
    pub source: String,
    pub target: String,
    /// Earlier steps this one needs applied first: the schema step that creates its table,
    /// the steps whose ID maps its lookups and references read.
    pub waits_for: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusLevel {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusLine {
    pub level: StatusLevel,
    pub text: String,
}

/// The step the engine is working on now.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentStep {
    pub version: String,
    pub name: String,
    pub kind: StepKind,
    pub dry_run: bool,
    pub progress: Progress,
    /// rows/s samples for the sparkline, oldest first.
    pub rate_history: Vec<u64>,
    pub statements_done: usize,
    pub last_statement: Option<String>,
    pub flags: u64,
    pub last_reject: Option<String>,
}

/// A run (up, down or dry run) from the moment the console asked for it until `Finished`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunState {
    /// `up` or `down`, once the engine says (`Planned`).
    pub operation: Operation,
    pub dry_run: bool,
    pub planned: Vec<PlannedStep>,
    pub steps_done: usize,
    pub current: Option<CurrentStep>,
    pub paused: bool,
    /// An abort was asked for; the run stops at the next batch boundary.
    pub aborting: bool,
    /// A run of all pending steps (`a`): verified by itself when it ends well.
    pub all: bool,
    /// `p` was pressed and the step has not reached its batch boundary yet.
    pub pause_requested: bool,
    /// The abort question is open: the run holds at its next batch boundary until answered.
    pub abort_question: bool,
}

/// The verify pane: the last report of the checks `cutover verify` runs, and any on the way.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VerifyState {
    /// The last report, its checks failing first (otherwise in the engine's order).
    pub report: Option<VerifyReport>,
    /// When the last report arrived (the console's clock).
    pub at: Option<DateTime<Utc>>,
    /// `Verify` commands sent and not answered yet.
    pub in_flight: u32,
    /// When the oldest unanswered `Verify` was sent.
    pub since: Option<DateTime<Utc>>,
    /// Why the last verify could not run (cleared by the next report).
    pub error: Option<String>,
    /// The selected check, an index into `report.checks`.
    pub selected: usize,
}

impl VerifyState {
    pub fn verifying(&self) -> bool {
        self.in_flight > 0
    }

    /// (passed, total) of the last report.
    pub fn passed(&self) -> Option<(usize, usize)> {
        let r = self.report.as_ref()?;
        Some((r.checks.iter().filter(|c| c.ok).count(), r.checks.len()))
    }

    pub fn failed(&self) -> usize {
        self.passed().map_or(0, |(ok, all)| all - ok)
    }

    pub fn selected_check(&self) -> Option<&Check> {
        self.report.as_ref()?.checks.get(self.selected)
    }
}

/// Where the import pane is: choosing a file, or looking at its mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportStage {
    #[default]
    Files,
    Mapping,
}

/// What the import pane's input line is typing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportField {
    /// The target table to map the chosen file into.
    Table,
    /// The selected row's target column (empty: left out).
    Target,
    /// The selected row's transforms, in step.toml's syntax.
    Transforms,
    /// The name of the step to save.
    StepName,
}

/// One row of the mapping: a file column, where it goes and how.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingRow {
    pub suggestion: crate::engine::preview::Suggestion,
    /// The operator changed this row (its confidence no longer applies).
    pub edited: bool,
}

/// The import pane (`i`): a file from the source folder, its preview, the suggested mapping
/// the operator edits, a dry run of it and saving it as a step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportState {
    pub stage: ImportStage,
    /// The source folder, once the engine said.
    pub folder: Option<String>,
    pub files: Vec<String>,
    pub selected_file: usize,
    /// The file being mapped (as listed) and the table it goes into.
    pub file: Option<String>,
    pub table: String,
    pub preview: Option<crate::engine::preview::Preview>,
    pub targets: Vec<crate::engine::preview::TargetColumn>,
    pub rows: Vec<MappingRow>,
    pub selected_row: usize,
    /// A request is on its way (files, preview, dry run or save).
    pub waiting: Option<String>,
    pub error: Option<String>,
    /// The input line, when one is open: what it edits and the text so far.
    pub editing: Option<(ImportField, String)>,
    pub dry_run: Option<crate::engine::protocol::StepDryRun>,
    /// The step folder saved from this mapping.
    pub saved: Option<String>,
}

impl ImportState {
    pub fn selected(&self) -> Option<&MappingRow> {
        self.rows.get(self.selected_row)
    }
}

/// The last step that finished in this session, shown in the progress pane when idle.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedStep {
    pub version: String,
    pub name: String,
    pub status: String,
    pub counts: Counts,
    pub duration_ms: u64,
    pub dry_run: bool,
}

/// What a yes/no dialog confirms.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfirmAction {
    RunNext {
        version: String,
    },
    RunAll,
    Abort,
    Quit,
    RetryReject {
        id: i64,
    },
    RetryStep {
        version: String,
    },
    /// `s`: side B's record is not the same entity.
    Split {
        id: i64,
    },
    /// a, b or e on a discrepancy already decided: decide it again.
    Redecide {
        id: i64,
        decision: String,
    },
    /// `U`: undo the session's last decision (the value from before it comes back).
    UndoDecision {
        id: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Dialog {
    Confirm {
        action: ConfirmAction,
        title: String,
        lines: Vec<String>,
    },
    /// `u`: what the rollback undoes, and the step name typed so far.
    Rollback {
        version: String,
        name: String,
        preview: Option<RollbackPreview>,
        typed: String,
        /// The operator chose "roll back to here": this step and every later applied one.
        to_here: bool,
    },
    /// `e`: a new value for one field of a rejected row's source data, as
    /// `cutover rejects fix ID FIELD=VALUE` sets it. The field is chosen with tab/↑↓ and shown
    /// as a label; `input` is the value alone (empty sets NULL), masked for secret fields.
    EditReject {
        id: i64,
        /// The source row's fields and their current values (secrets already redacted).
        fields: Vec<(String, String)>,
        /// Index into `fields` of the field being set.
        field: usize,
        input: String,
    },
    Details {
        title: String,
        lines: Vec<String>,
        scroll: u16,
    },
    /// `e` in the review pane: a value other than either side's.
    DecideValue { id: i64, input: String },
    /// `N`: a note that goes with the next decision.
    ReviewNote { input: String },
}

/// A decision sent to the engine and not yet answered (its `Notice`).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDecision {
    pub id: i64,
    /// As sent: `a`, `b`, `value=…` or `split`.
    pub decision: String,
    pub note: Option<String>,
    /// The engine answered; the next snapshot shows the outcome.
    pub answered: bool,
    /// `last_decision` before this one, restored when the engine refuses it.
    pub previous: Option<SessionDecision>,
}

/// A decision made in this console session, for `U`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionDecision {
    pub id: i64,
    /// As sent: `a`, `b`, `value=…` or `split`.
    pub decision: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuitState {
    #[default]
    Running,
    /// Asked the running step to stop; leaving when the run ends or the grace time passes.
    Stopping {
        since: DateTime<Utc>,
    },
    Now,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppState {
    pub project: String,
    /// Already redacted.
    pub target: String,
    pub window: Option<Window>,
    pub now: DateTime<Utc>,
    /// This process, so the console does not call its own run lock "someone else's".
    pub own_pid: i64,
    /// False when NO_COLOR is set.
    pub color: bool,
    pub size: (u16, u16),
    pub focus: Pane,
    /// True once the first snapshot arrived.
    pub loaded: bool,
    /// The first read of the target failed (a server not up yet, a file locked for a moment):
    /// it is tried again at this time, until a snapshot arrives.
    pub first_read_retry_at: Option<DateTime<Utc>>,
    pub migrations: Vec<StepSummary>,
    pub step_info: BTreeMap<String, StepInfo>,
    pub selected_step: usize,
    /// The page of the reject store the rejects pane shows (see `reject_page`).
    pub rejects: Vec<RejectSummary>,
    pub reject_page: RejectPaging,
    /// Open rejected rows in the whole store.
    pub open_rejects: u64,
    /// Open rejected rows per step version.
    pub open_rejects_by_step: BTreeMap<String, u64>,
    pub reject_filter: String,
    pub filter_editing: bool,
    /// Index into the page's rows.
    pub selected_reject: usize,
    pub locked_by: Option<LockHolder>,
    /// The review queue, all states (the pane filters).
    pub discrepancies: Vec<Discrepancy>,
    /// `v`: show decided and void discrepancies too.
    pub review_all: bool,
    /// The selected discrepancy, by id (the list changes under it as decisions land).
    pub selected_discrepancy: Option<i64>,
    /// `N`: sent with the next decision, then cleared.
    pub review_note: Option<String>,
    /// Decisions sent and not yet answered.
    pub deciding: Vec<PendingDecision>,
    /// The last decision of this session, for `U`.
    pub last_decision: Option<SessionDecision>,
    /// The two whole records behind the selected discrepancy, as last read by the engine.
    pub review_records: Option<ReviewRecords>,
    /// The records last asked for: the discrepancy and its pair (each pair is read once).
    pub review_records_asked: Option<(i64, RecordPair)>,
    /// Which of rejects, review and verify the grid shows in their shared place: the last
    /// focused.
    pub middle: Pane,
    pub verify: VerifyState,
    /// The pre-flight pane (`F`): the last assess of the pending steps.
    pub assess: AssessState,
    pub run: Option<RunState>,
    pub last_finished: Option<FinishedStep>,
    /// The last rows/s seen in this session, for the ETA when nothing runs.
    pub last_rate: Option<f64>,
    /// Would-be counts of dry runs, by version.
    pub dry_runs: BTreeMap<String, Counts>,
    /// Source rows of the steps not applied yet, counted at start and on refresh (for the ETA).
    pub source_rows: BTreeMap<String, u64>,
    /// A `CountSources` is on its way.
    pub counting_sources: bool,
    /// The statements a dry run of a schema step would run, by version.
    pub dry_run_statements: BTreeMap<String, Vec<String>>,
    pub dialog: Option<Dialog>,
    /// The import pane, while open (it takes the panes' place).
    pub import: Option<ImportState>,
    pub help: bool,
    pub status: Option<StatusLine>,
    /// Console-side work for the main loop; drained after every `update`.
    pub effects: Vec<Effect>,
    pub quit: QuitState,
    /// When the snapshot was last asked for to follow the sync lag (see `update::sync`).
    pub sync_refreshed_at: Option<DateTime<Utc>>,
    /// The backup the run-all confirmation's `b` asked for.
    pub backup: BackupState,
}

/// A backup of the target before a run (`b` in the run-all confirmation).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BackupState {
    /// A `Backup` is on its way; the run of all pending steps starts when it succeeds.
    pub in_flight: bool,
    /// The last backup's result in words: its file and size, or why it failed.
    pub last: Option<String>,
}

impl AppState {
    pub fn new(project: impl Into<String>, target: impl Into<String>, now: DateTime<Utc>) -> AppState {
        AppState {
            project: project.into(),
            target: target.into(),
            window: None,
            now,
            own_pid: 0,
            color: true,
            size: (0, 0),
            focus: Pane::Migrations,
            loaded: false,
            migrations: Vec::new(),
            step_info: BTreeMap::new(),
            selected_step: 0,
            rejects: Vec::new(),
            reject_page: RejectPaging::default(),
            open_rejects: 0,
            open_rejects_by_step: BTreeMap::new(),
            reject_filter: String::new(),
            filter_editing: false,
            selected_reject: 0,
            locked_by: None,
            discrepancies: Vec::new(),
            review_all: false,
            selected_discrepancy: None,
            review_note: None,
            deciding: Vec::new(),
            last_decision: None,
            review_records: None,
            review_records_asked: None,
            middle: Pane::Rejects,
            verify: VerifyState::default(),
            assess: AssessState::default(),
            run: None,
            last_finished: None,
            last_rate: None,
            dry_runs: BTreeMap::new(),
            source_rows: BTreeMap::new(),
            counting_sources: false,
            dry_run_statements: BTreeMap::new(),
            dialog: None,
            import: None,
            help: false,
            status: None,
            effects: Vec::new(),
            quit: QuitState::Running,
            backup: BackupState::default(),
            sync_refreshed_at: None,
            first_read_retry_at: None,
        }
    }

    pub fn should_exit(&self) -> bool {
        self.quit == QuitState::Now
    }

    pub fn running(&self) -> bool {
        self.run.is_some()
    }

    pub fn selected_step(&self) -> Option<&StepSummary> {
        self.migrations.get(self.selected_step)
    }

    pub fn step_name(&self, version: &str) -> Option<&str> {
        self.migrations
            .iter()
            .find(|m| m.version == version)
            .map(|m| m.name.as_str())
    }

    /// The lock holder when it is another process (our own run holds the lock too).
    pub fn foreign_lock(&self) -> Option<&LockHolder> {
        self.locked_by.as_ref().filter(|h| h.pid != self.own_pid)
    }

    /// The step `n` would run: the engine's rule (pending or reverted; a data or merge step
    /// that failed or was interrupted resumes).
    pub fn next_pending(&self) -> Option<&StepSummary> {
        self.migrations.iter().find(|m| is_runnable(m))
    }

    pub fn pending_count(&self) -> usize {
        self.migrations.iter().filter(|m| is_runnable(m)).count()
    }

    /// The rejects the pane shows: one page of those matching the filter (the engine applies
    /// the filter to the whole store).
    pub fn shown_rejects(&self) -> &[RejectSummary] {
        &self.rejects
    }

    pub fn selected_reject(&self) -> Option<&RejectSummary> {
        self.rejects.get(self.selected_reject)
    }

    /// The discrepancies the review pane lists: open ones, or all with `v`.
    pub fn shown_discrepancies(&self) -> Vec<&Discrepancy> {
        self.discrepancies
            .iter()
            .filter(|d| self.review_all || d.state == "open")
            .collect()
    }

    pub fn selected_discrepancy(&self) -> Option<&Discrepancy> {
        let id = self.selected_discrepancy?;
        self.shown_discrepancies().into_iter().find(|d| d.id == id)
    }

    /// The whole records of the selected discrepancy's pair, once the engine has sent them.
    pub fn selected_records(&self) -> Option<&ReviewRecords> {
        let pair = RecordPair::of(self.selected_discrepancy()?);
        let (asked, asked_pair) = self.review_records_asked.as_ref()?;
        self.review_records
            .as_ref()
            .filter(|r| r.id == *asked && *asked_pair == pair)
    }

    pub fn discrepancy(&self, id: i64) -> Option<&Discrepancy> {
        self.discrepancies.iter().find(|d| d.id == id)
    }

    /// (open, decided, void).
    pub fn review_counts(&self) -> (usize, usize, usize) {
        let n = |s: &str| self.discrepancies.iter().filter(|d| d.state == s).count();
        (n("open"), n("decided"), n("void"))
    }

    /// Discrepancies a decision is on its way for: the ones sent and not yet answered, and the
    /// open ones a split on its way will void (same step, entity and record B). One pass over
    /// the queue, so the pane and the reducer ask once per frame or key, not once per row.
    pub fn deciding_ids(&self) -> BTreeSet<i64> {
        let mut ids = BTreeSet::new();
        let mut splits = Vec::new();
        for p in self.deciding.iter().filter(|p| !p.answered) {
            ids.insert(p.id);
            if p.decision == "split"
                && let Some(s) = self.discrepancy(p.id)
            {
                splits.push(s);
            }
        }
        if !splits.is_empty() {
            ids.extend(
                self.discrepancies
                    .iter()
                    .filter(|d| {
                        d.state == "open"
                            && splits
                                .iter()
                                .any(|s| d.step == s.step && d.entity_id == s.entity_id && d.keys[1] == s.keys[1])
                    })
                    .map(|d| d.id),
            );
        }
        ids
    }

    pub fn is_deciding(&self, id: i64) -> bool {
        self.deciding.iter().any(|p| !p.answered) && self.deciding_ids().contains(&id)
    }

    /// A time as the header's clock shows it: in the maintenance window's offset, else UTC.
    pub fn local_time(&self, t: DateTime<Utc>) -> DateTime<FixedOffset> {
        let offset = self.window.map(|w| *w.end.offset()).unwrap_or_else(|| Utc.fix());
        t.with_timezone(&offset)
    }

    /// What a dry run of a schema step found: the statements it would run (a schema step
    /// moves no rows, so "would write 0" would say nothing).
    pub fn dry_run_statements_text(&self, version: &str) -> Option<String> {
        let statements = self.dry_run_statements.get(version)?;
        let first = statements.first().map(|s| format!(": {s}")).unwrap_or_default();
        Some(match statements.len() {
            1 => format!("would run 1 statement{first}"),
            n => format!("would run {n} statements{first}, … (enter lists them)"),
        })
    }

    pub fn set_status(&mut self, level: StatusLevel, text: impl Into<String>) {
        self.status = Some(StatusLine {
            level,
            text: text.into(),
        });
    }
}

/// Whether `up` would run this step (mirrors the engine's planner).
pub fn is_runnable(m: &StepSummary) -> bool {
    match m.state.as_str() {
        "pending" | "reverted" => true,
        "failed" | "running" | "interrupted" => m.kind != StepKind::Schema,
        _ => false,
    }
}

/// Whether `u` can offer a rollback of this step (the engine has the last word in the preview).
pub fn is_revertible(m: &StepSummary) -> bool {
    match m.state.as_str() {
        "applied" | "modified" => true,
        "failed" | "running" | "interrupted" => m.kind != StepKind::Schema,
        _ => false,
    }
}

/// The pre-flight pane: the last `assess` report, whether one is on the way, and whether the
/// pane is open (it covers the grid like the import pane).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssessState {
    pub open: bool,
    pub report: Option<crate::engine::protocol::assess::AssessReport>,
    /// When the assess on the way was asked for.
    pub since: Option<DateTime<Utc>>,
    /// Why the last assess could not run.
    pub error: Option<String>,
    /// When the shown report arrived.
    pub at: Option<DateTime<Utc>>,
    pub selected: usize,
}
