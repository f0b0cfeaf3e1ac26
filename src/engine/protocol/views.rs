//! The read models the engine sends out: the state of every step and the reject store, what a
//! rollback would undo, the review queue, who holds the run lock. Plain data, so the protocol
//! depends on nothing that computes them.

use crate::engine::project::StepKind;
use crate::engine::protocol::{Counts, StepState};
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
