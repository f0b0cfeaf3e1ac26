//! The read models the engine sends out: the state of every step and the reject store, what a
//! rollback would undo, the review queue, who holds the run lock. Plain data, so the protocol
//! depends on nothing that computes them.

use crate::engine::project::StepKind;
use crate::engine::protocol::{Counts, DownTarget, StepState};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    pub version: String,
    pub name: String,
    pub kind: StepKind,
    pub state: StepState,
    pub checksum_state: String,
    pub modified_file: Option<String>,
    pub duration_ms: Option<i64>,
    pub applied_at: Option<String>,
    pub counts: Counts,
    pub error: Option<String>,
    pub failing_statement: Option<String>,
    /// Steps with `[sync]` that were synced (or marked by `up`): how far behind they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncLag>,
}

/// How far a synced step is behind its source, as of its last sync pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SyncLag {
    pub lag_rows: u64,
    pub lag_seconds: Option<f64>,
    pub mark: Option<String>,
    pub synced_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectSummary {
    pub id: i64,
    pub step: String,
    pub source_table: String,
    pub source_key: String,
    pub field: Option<String>,
    pub rule: String,
    pub reason: String,
    pub level: String,
    pub state: String,
    pub waits_for: Option<String>,
    /// The source row with secrets redacted, in column order.
    pub row: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    pub project: String,
    /// The target URL with its password redacted.
    pub target: String,
    pub window_start: Option<String>,
    pub window_end: Option<String>,
    pub migrations: Vec<StepSummary>,
    /// Open rejected rows in the store (the rows themselves come a page at a time).
    pub open_rejects: u64,
    /// Open rejected rows per step version.
    #[serde(default)]
    pub open_rejects_by_step: std::collections::BTreeMap<String, u64>,
    pub locked_by: Option<LockHolder>,
    /// The review queue (all states; the console filters).
    #[serde(default)]
    pub discrepancies: Vec<Discrepancy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackPreview {
    pub version: String,
    pub name: String,
    pub kind: StepKind,
    /// What will be undone, one line each: the down.sql statements, or rows per table.
    pub lines: Vec<String>,
    /// Set when the step cannot be rolled back now, with the reason.
    pub refused: Option<String>,
    /// Every step this rollback, or the rollback "to here" when later steps must go first,
    /// undoes, in the order they are undone (newest first; the selected step last).
    #[serde(default)]
    pub steps: Vec<StepRollback>,
    /// Later applied steps (`version_name`, newest first) that must be rolled back before this
    /// one: the reason a rollback of this step alone is refused.
    #[serde(default)]
    pub later: Vec<String>,
    /// The rollback that undoes this step and every later one (`down --to` the step before
    /// it), offered when `later` is not empty.
    #[serde(default)]
    pub to_here: Option<DownTarget>,
}

/// Everything rolling back one step destroys or puts back, counted from the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRollback {
    pub version: String,
    pub name: String,
    pub kind: StepKind,
    /// The `down.sql` statements of a schema step.
    #[serde(default)]
    pub statements: Vec<String>,
    /// The table a data or merge step wrote.
    #[serde(default)]
    pub table: Option<String>,
    pub rows_deleted: u64,
    /// Rows an `update` changed, put back from their before-images.
    pub rows_restored: u64,
    pub id_map_entries: u64,
    pub open_rejects: u64,
    /// Rejects retried successfully (waiting rows and fixed rows): their rows go with the step.
    pub resolved_rejects: u64,
    /// Rejects the operator fixed and retried: the rows go, and so do the fixes (the source
    /// still holds the old value, so re-applying rejects them again).
    pub fixed_rejects: u64,
    pub warnings: u64,
    /// Review queue entries of the step, by state, and the notes on them.
    pub open_discrepancies: u64,
    pub decided_discrepancies: u64,
    pub void_discrepancies: u64,
    pub notes: u64,
    /// Files in the document store that no remaining row names, and the store's folder.
    pub files: u64,
    #[serde(default)]
    pub file_store: Option<String>,
}

impl StepRollback {
    /// A step with nothing counted yet.
    pub fn new(version: String, name: String, kind: StepKind) -> StepRollback {
        StepRollback {
            version,
            name,
            kind,
            statements: Vec::new(),
            table: None,
            rows_deleted: 0,
            rows_restored: 0,
            id_map_entries: 0,
            open_rejects: 0,
            resolved_rejects: 0,
            fixed_rejects: 0,
            warnings: 0,
            open_discrepancies: 0,
            decided_discrepancies: 0,
            void_discrepancies: 0,
            notes: 0,
            files: 0,
            file_store: None,
        }
    }

    /// Every consequence that is not zero, on one line: for a list of many steps.
    pub fn summary(&self) -> String {
        if self.kind == StepKind::Schema {
            let n = self.statements.len();
            return format!("run {n} statement{} of down.sql", if n == 1 { "" } else { "s" });
        }
        let table = self.table.as_deref().unwrap_or("its table");
        let mut parts = vec![format!("delete {} rows of {table}", self.rows_deleted)];
        let mut add = |n: u64, what: String| {
            if n > 0 {
                parts.push(what);
            }
        };
        add(self.rows_restored, format!("restore {} rows", self.rows_restored));
        add(self.id_map_entries, format!("{} ID-map entries", self.id_map_entries));
        add(self.open_rejects, format!("{} open rejects", self.open_rejects));
        add(
            self.resolved_rejects,
            format!("{} retried rejects", self.resolved_rejects),
        );
        add(self.warnings, format!("{} warnings", self.warnings));
        add(
            self.fixed_rejects,
            format!("FIXES LOST on {}", plural(self.fixed_rejects, "reject")),
        );
        add(
            self.decided_discrepancies + self.notes,
            format!(
                "WIPED: {} and {}",
                plural(self.decided_discrepancies, "review decision"),
                plural(self.notes, "note")
            ),
        );
        let discrepancies = self.open_discrepancies + self.decided_discrepancies + self.void_discrepancies;
        add(discrepancies, plural(discrepancies, "discrepancy record"));
        add(self.files, format!("{} removed", plural(self.files, "file")));
        parts.join(", ")
    }

    /// One line per consequence, as the console dialog and `down --dry-run` show them.
    pub fn lines(&self) -> Vec<String> {
        if self.kind == StepKind::Schema {
            return self.statements.iter().map(|s| format!("run {s}")).collect();
        }
        let table = self.table.as_deref().unwrap_or("its table");
        let mut out = vec![
            format!(
                "delete {} rows from {table} (the rows the step wrote)",
                self.rows_deleted
            ),
            format!(
                "restore {} rows of {table} the step updated (from backups)",
                self.rows_restored
            ),
            format!("remove {} ID-map entries", self.id_map_entries),
            format!(
                "remove {} open rejects, {} retried rejects and {} warnings",
                self.open_rejects, self.resolved_rejects, self.warnings
            ),
        ];
        if self.fixed_rejects > 0 {
            out.push(format!(
                "remove {}: the fixes are lost, re-applying rejects those rows again",
                plural(self.fixed_rejects, "fixed reject")
            ));
        }
        let discrepancies = self.open_discrepancies + self.decided_discrepancies + self.void_discrepancies;
        if discrepancies > 0 {
            out.push(format!(
                "wipe {} and {} ({discrepancies} discrepancies: {} open, {} decided, {} void); re-applying reopens them",
                plural(self.decided_discrepancies, "review decision"),
                plural(self.notes, "note"),
                self.open_discrepancies,
                self.decided_discrepancies,
                self.void_discrepancies
            ));
        }
        if let Some(store) = &self.file_store {
            out.push(format!("remove {} from {store}/", plural(self.files, "file")));
        }
        out
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct LockHolder {
    pub owner: String,
    pub host: String,
    pub pid: i64,
    pub command: String,
    pub since: String,
    pub heartbeat_age_secs: i64,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} (pid {}, `{}`) since {}, last heartbeat {}s ago",
            self.owner, self.host, self.pid, self.command, self.since, self.heartbeat_age_secs
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discrepancy {
    pub id: i64,
    pub step: String,
    pub entity_table: String,
    pub entity_id: String,
    pub field: String,
    /// `[side A's value, side B's value]`.
    pub values: [Option<String>; 2],
    pub sides: [String; 2],
    /// Legacy keys of the two records.
    pub keys: [String; 2],
    /// `open`, `decided` or `void` (its record was split off).
    pub state: String,
    pub decision: Option<String>,
    pub value_applied: Option<String>,
    pub reviewer: Option<String>,
    pub decided_at: Option<String>,
    pub note: Option<String>,
}

/// One page of the reject store (the answer to `LoadRejects`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RejectPage {
    pub seq: u64,
    pub filter: String,
    /// Rows before this page among those matching the filter.
    pub offset: u64,
    pub rows: Vec<RejectSummary>,
    /// Rejects matching the filter, all pages.
    pub matching: u64,
    /// Open rejected rows in the whole store.
    pub open: u64,
    /// Why the page could not be read.
    pub error: Option<String>,
}

/// `1 note`, `2 notes`.
fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else if let Some(stem) = what.strip_suffix('y') {
        format!("{n} {stem}ies")
    } else {
        format!("{n} {what}s")
    }
}

/// The two records behind a discrepancy, whole (the answer to `LoadReviewRecords`): every
/// field either side brings to the entity, as its own step makes it, then the source columns
/// no field takes (a parent, a link). Secrets redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ReviewRecords {
    /// The discrepancy asked about; the records are those of its step, entity and keys.
    pub id: i64,
    pub step: String,
    pub entity_id: String,
    pub keys: [String; 2],
    pub fields: Vec<RecordField>,
    /// What is not as asked: a record gone from the source, one that fails its own checks
    /// (its source values are shown), no source configured.
    pub notes: Vec<String>,
    /// Why the records could not be read at all.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordField {
    /// The target field, or the source column for one no field takes.
    pub name: String,
    /// `[record A's value, record B's value]`.
    pub values: [Option<String>; 2],
    /// Whether each record has this field at all (a side without the column shows nothing).
    pub present: [bool; 2],
}
