//! What `verify` answers: every check with both sides' measures. Plain data.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The result of a verification: `ok` when every check passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// No step left failed or running.
    Ledger,
    /// source = written + skipped + rejected + merged, per step.
    Accounting,
    /// The ledger's rejected count against the open rejects in the reject store, per step.
    Rejects,
    /// A declared `[[expect]]`.
    Expect,
    /// A declared `[[checksum]]`.
    Checksum,
    /// No orphan references in one target table.
    ForeignKeys,
    /// A declared `[[documents]]` store.
    Documents,
    /// A table a rolled-back step wrote, against its content checksum from before the step.
    Rollback,
    /// A bucket of cutover.toml: every file hashes to its name, every key the rows name exists.
    Bucket,
    /// A collection's documents against the count and checksum recorded when it was written.
    Collection,
}

impl CheckKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckKind::Ledger => "ledger",
            CheckKind::Accounting => "accounting",
            CheckKind::Rejects => "rejects",
            CheckKind::Expect => "expect",
            CheckKind::Checksum => "checksum",
            CheckKind::ForeignKeys => "foreign_keys",
            CheckKind::Documents => "documents",
            CheckKind::Rollback => "rollback",
            CheckKind::Bucket => "bucket",
            CheckKind::Collection => "collection",
        }
    }
}

/// One side's number or text (a count, a scalar, a digest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Measure {
    Int(i64),
    Real(f64),
    Text(String),
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub ok: bool,
    pub source: Option<Measure>,
    pub target: Option<Measure>,
    pub detail: String,
    /// Set when the check passes although the sides differ, because of what an operator did
    /// (rows written after a reject fix): says what explains the difference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explained: Option<String>,
    /// Set when the check was not run against what it declares (its step was rolled back):
    /// says why. Not a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_checked: Option<String>,
}

impl Check {
    /// The result as the CLI and the console show it: `ok`, `FAIL`, `fixed` (passes because
    /// of an operator's fix) or `skip` (not checked: its step was rolled back).
    pub fn result_label(&self) -> &'static str {
        match (self.ok, &self.explained, &self.not_checked) {
            (false, _, _) => "FAIL",
            (true, _, Some(_)) => "skip",
            (true, Some(_), None) => "fixed",
            (true, None, None) => "ok",
        }
    }
}

impl Measure {
    /// The canonical text form, as values are compared.
    pub fn canonical(&self) -> String {
        match self {
            Measure::Int(i) => i.to_string(),
            Measure::Real(f) => canonical_real(*f),
            Measure::Text(s) => s.clone(),
        }
    }
}

/// A real as values are compared: with no fraction it is an integer, so 1.0 on one side equals 1
/// on the other.
pub fn canonical_real(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18 {
        // 1.0 on one side equals 1 on the other
        (f as i64).to_string()
    } else {
        f.to_string()
    }
}
