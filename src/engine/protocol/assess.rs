//! What `assess` answers: per pending step, what `up --continue-on-error` would do with the
//! source as it is now, and how long it would take. Plain data.

use crate::engine::project::StepKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AssessReport {
    /// `--sample N`: each step read at least N rows (whole batches), not its whole source.
    pub sampled: Option<u64>,
    /// The whole plan's estimated duration.
    pub estimated_ms: u64,
    /// How the estimate was derived: `ledger` (rates of steps applied on this target) or
    /// `assess` (the rate this pass measured).
    pub estimate_basis: String,
    pub steps: Vec<AssessStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssessStep {
    pub version: String,
    pub name: String,
    pub kind: StepKind,
    pub target_table: Option<String>,
    /// The source's own row count (both sides of a merge step).
    pub source_rows: Option<u64>,
    pub rows_read: u64,
    pub would_write: u64,
    pub would_skip: u64,
    pub would_merge: u64,
    pub rejects_by_rule: BTreeMap<String, u64>,
    pub warnings_by_rule: BTreeMap<String, u64>,
    /// Up to three rejected rows per rule.
    pub examples: Vec<AssessExample>,
    /// Share of NULL or blank values of each mapped source column (0.0 to 1.0).
    pub blank_rates: BTreeMap<String, f64>,
    /// Rows whose natural key another row (in the target or earlier in the source) has.
    pub duplicate_keys: u64,
    /// Rows whose ID-map lookup or `reference_exists` found nothing.
    pub unresolved_references: u64,
    pub estimated_ms: u64,
    /// Why the step could not be assessed (it would fail `up` the same way).
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssessExample {
    pub source_key: String,
    pub rule: String,
    pub reason: String,
}
