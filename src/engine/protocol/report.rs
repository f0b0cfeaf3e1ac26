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
