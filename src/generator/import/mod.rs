//! The import scenario's export folder (`SCENARIO-import.md`): `patients.csv`, `orders.xlsx`
//! (or `orders.csv`) and `manifest.json`.
//!
//! Every row is a pure function of `(seed, file, index)` plus what the earlier rows left behind
//! (a duplicate names an earlier written MRN; an order names a written or rejected patient). An
//! anomalous row (probability `anomaly_rate`) carries exactly one anomaly, the kinds taken in
//! turn so that every kind of the contract appears once there are enough anomalous rows; so
//! each row has one reason and the manifest's counts are unambiguous.
//!
//! The manifest is computed here from what was planted, by the contract's rules written out
//! again in `rules.rs` (never through the engine's transforms), so a test that compares the
//! engine's result with it compares two independent computations.

mod files;
mod orders;
mod patients;
pub mod project;
mod rules;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use color_eyre::Result;
use color_eyre::eyre::bail;
use serde::{Deserialize, Serialize};

pub use patients::StoredPatient;

use crate::generator::rng::Rng;

/// The format of the orders file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OrdersFormat {
    #[default]
    Xlsx,
    Csv,
}

impl OrdersFormat {
    pub fn file_name(self) -> &'static str {
        match self {
            OrdersFormat::Xlsx => "orders.xlsx",
            OrdersFormat::Csv => "orders.csv",
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportConfig {
    pub patients: u64,
    pub orders: u64,
    pub seed: u64,
    pub orders_format: OrdersFormat,
    /// The fraction of rows that carry an anomaly, in `0..=1`.
    pub anomaly_rate: f64,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            patients: 20_000,
            orders: 50_000,
            seed: 42,
            orders_format: OrdersFormat::Xlsx,
            anomaly_rate: 0.1,
        }
    }
}

/// Upper bounds: MRNs and order numbers have 8 digits.
pub const MAX_PATIENTS: u64 = 10_000_000;
pub const MAX_ORDERS: u64 = 10_000_000;

/// What the import of one file must do with its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileExpectation {
    /// Data rows (records); blank lines are not rows.
    pub rows: u64,
    /// Blank lines in the file (CSV only).
    pub blank_lines: u64,
    pub written: u64,
    pub skipped: u64,
    /// Including the rows waiting for a rejected patient.
    pub rejected: u64,
    /// Rejected rows per rule as the reject store names it (`required`, `date`,
    /// `not_in_future`, `map`, `lookup`, `waiting`).
    pub rejected_by_rule: BTreeMap<String, u64>,
    /// Rejected rows per target field.
    pub rejected_by_field: BTreeMap<String, u64>,
    /// Lookup rejects per class of reason: `no patient`, `ambiguous`.
    pub lookup_reasons: BTreeMap<String, u64>,
    /// Warnings of rows that were not rejected, per target field.
    pub warnings: BTreeMap<String, u64>,
}

impl FileExpectation {
    fn rejected(&mut self, r: rules::Reject) {
        self.rejected += 1;
        *self.rejected_by_rule.entry(r.rule.into()).or_default() += 1;
        *self.rejected_by_field.entry(r.field.into()).or_default() += 1;
        if r.rule == "lookup" {
            *self.lookup_reasons.entry(r.reason.into()).or_default() += 1;
        }
    }

    fn warned(&mut self, fields: &[&str]) {
        for f in fields {
            *self.warnings.entry((*f).into()).or_default() += 1;
        }
    }
}

/// Content the written rows must have.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContentExpectation {
    /// Written patients per stored gender.
    pub genders: BTreeMap<String, u64>,
    /// Written patients whose address is NULL (every part blank).
    pub address_null: u64,
    pub email_null: u64,
    pub phone_null: u64,
    /// Written patients whose notes hold a line break.
    pub notes_with_newline: u64,
    /// Written orders per stored status and priority.
    pub order_statuses: BTreeMap<String, u64>,
    pub order_priorities: BTreeMap<String, u64>,
}

/// A rejected patient that orders wait for, and how an operator fixes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingPatient {
    /// Its line in patients.csv: the reject's source key.
    pub line: u64,
    /// `rejects fix ID COLUMN=VALUE` that makes the row valid.
    pub fix_column: String,
    pub fix_value: String,
    /// Orders waiting for it.
    pub orders: u64,
}

/// What was generated and what the fixture project must produce from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportManifest {
    pub config: ImportConfig,
    /// Per file name (`patients.csv`, `orders.xlsx`/`orders.csv`).
    pub files: BTreeMap<String, FileExpectation>,
    /// Rows per target table after the import.
    pub tables: BTreeMap<String, u64>,
    /// Rows carrying each planted anomaly, per file (`patients.csv:email_invalid`).
    pub planted: BTreeMap<String, u64>,
    pub content: ContentExpectation,
    /// Rejected patients with waiting orders (fixable ones only).
    pub waiting: Vec<WaitingPatient>,
    /// The stored form of the first written patients and of the first written patient of
    /// each planted kind that is written (spot checks of real content).
    pub samples: Vec<StoredPatient>,
}

impl ImportManifest {
    pub fn patients_file(&self) -> &FileExpectation {
        &self.files["patients.csv"]
    }
    pub fn orders_file(&self) -> &FileExpectation {
        &self.files[self.config.orders_format.file_name()]
    }
}

/// How many leading written patients the manifest describes in full.
const SAMPLES: usize = 25;

/// The anomaly of row `index` of one file: every `1/rate`-th row on average, kinds in turn.
fn kind_of<K: Copy>(seed: u64, tag: u64, index: u64, rate: f64, kinds: &[K], turn: &mut usize) -> Option<K> {
    if !Rng::new(seed, tag, index).chance(rate) {
        return None;
    }
    let k = kinds[*turn % kinds.len()];
    *turn += 1;
    Some(k)
}

/// Writes the export folder `dir` (created if missing; the files must not exist yet) and its
/// `manifest.json`.
pub fn generate(dir: &Path, cfg: &ImportConfig) -> Result<ImportManifest> {
    if !(1..=MAX_PATIENTS).contains(&cfg.patients) {
        bail!("patients must be between 1 and {MAX_PATIENTS}, got {}", cfg.patients);
    }
    if cfg.orders > MAX_ORDERS {
        bail!("orders must be at most {MAX_ORDERS}, got {}", cfg.orders);
    }
    if !(0.0..=1.0).contains(&cfg.anomaly_rate) {
        bail!("the anomaly rate must be a fraction in 0..=1, got {}", cfg.anomaly_rate);
    }
    std::fs::create_dir_all(dir).map_err(|e| color_eyre::eyre::eyre!("cannot create {}: {e}", dir.display()))?;
    let orders_name = cfg.orders_format.file_name();
    for f in ["patients.csv", orders_name, "manifest.json"] {
        if dir.join(f).exists() {
            bail!("{} already exists; generate into a new folder", dir.join(f).display());
        }
    }
    let mut m = ImportManifest {
        config: cfg.clone(),
        files: BTreeMap::new(),
        tables: BTreeMap::new(),
        planted: BTreeMap::new(),
        content: ContentExpectation::default(),
        waiting: Vec::new(),
        samples: Vec::new(),
    };

    // ---- patients.csv
    let mut pf = FileExpectation::default();
    let mut known = patients::Known::default();
    let mut csv = files::CsvOut::create(&dir.join("patients.csv"), patients::HEADER)?;
    // A blank line right after the header and a few more later: none of them is a row.
    csv.blank_line()?;
    let mut turn = 0;
    let mut sampled_kinds = HashSet::new();
    for i in 0..cfg.patients {
        let kind = kind_of(cfg.seed, 0x1_0000, i, cfg.anomaly_rate, patients::KINDS, &mut turn);
        let row = patients::row(cfg.seed, i, kind, &known);
        let line = csv.record(row.cells())?;
        if Rng::new(cfg.seed, 0x1_0003, i).chance(0.002) {
            csv.blank_line()?;
        }
        pf.rows += 1;
        if let Some(k) = kind {
            *m.planted.entry(format!("patients.csv:{}", k.name())).or_default() += 1;
        }
        let (outcome, warnings) = patients::outcome(&row, &known.written_mrns);
        match outcome {
            patients::Outcome::Written(p) => {
                pf.written += 1;
                pf.warned(&warnings);
                let c = &mut m.content;
                *c.genders.entry(p.gender.clone()).or_default() += 1;
                c.address_null += u64::from(p.address.is_none());
                c.email_null += u64::from(p.email.is_none());
                c.phone_null += u64::from(p.phone.is_none());
                c.notes_with_newline += u64::from(p.notes.as_ref().is_some_and(|n| n.contains('\n')));
                let newline_notes = p.notes.as_ref().is_some_and(|n| n.contains('\n'));
                let first_of_kind = kind.is_some_and(|k| sampled_kinds.insert(Some(k)));
                let first_newline = newline_notes && sampled_kinds.insert(None);
                if m.samples.len() < SAMPLES || first_of_kind || first_newline {
                    m.samples.push((*p).clone());
                }
                known.add_written(&p);
            }
            patients::Outcome::Skipped => {
                pf.skipped += 1;
                pf.warned(&warnings);
            }
            patients::Outcome::Rejected(r) => {
                pf.rejected(r);
                known.add_rejected(&row, line, kind);
            }
        }
    }
    csv.blank_line()?;
    pf.blank_lines = csv.blank_lines;
    csv.finish()?;

    // ---- orders
    let mut of = FileExpectation::default();
    let ambiguous: Vec<String> = {
        let mut v: Vec<String> = known
            .emails
            .iter()
            .filter(|(_, n)| **n >= 2)
            .map(|(e, _)| e.clone())
            .collect();
        v.sort();
        v
    };
    let xlsx = cfg.orders_format == OrdersFormat::Xlsx;
    let mut book = if xlsx {
        Some(files::XlsxOut::new(orders::HEADER)?)
    } else {
        None
    };
    let mut ocsv = if xlsx {
        None
    } else {
        Some(files::CsvOut::create(&dir.join(orders_name), orders::HEADER)?)
    };
    let mut written_numbers: Vec<String> = Vec::new();
    let mut written_set: HashSet<String> = HashSet::new();
    let mut waiting: BTreeMap<u64, u64> = BTreeMap::new();
    let mut turn = 0;
    for j in 0..cfg.orders {
        let kind = kind_of(cfg.seed, 0x2_0000, j, cfg.anomaly_rate, orders::KINDS, &mut turn);
        let row = orders::row(cfg.seed, j, kind, &known, &ambiguous, &written_numbers, xlsx);
        let cells = row.cells();
        if let Some(b) = book.as_mut() {
            b.record(&cells)?;
        }
        if let Some(c) = ocsv.as_mut() {
            let texts: Vec<String> = cells.iter().map(orders::Cell::as_text).collect();
            c.record(texts.iter().map(String::as_str))?;
            if Rng::new(cfg.seed, 0x2_0003, j).chance(0.002) {
                c.blank_line()?;
            }
        }
        of.rows += 1;
        if let Some(k) = kind {
            *m.planted.entry(format!("{orders_name}:{}", k.name())).or_default() += 1;
        }
        let (outcome, warnings) = orders::outcome(&row, &known, &written_set);
        match outcome {
            orders::Outcome::Written { status, priority } => {
                of.written += 1;
                of.warned(&warnings);
                *m.content.order_statuses.entry(status.into()).or_default() += 1;
                *m.content.order_priorities.entry(priority.into()).or_default() += 1;
                let n = row.order_number.trim().to_string();
                written_set.insert(n.clone());
                written_numbers.push(n);
            }
            orders::Outcome::Skipped => {
                of.skipped += 1;
                of.warned(&warnings);
            }
            orders::Outcome::Rejected(r) => {
                if r.rule == "waiting"
                    && let orders::Lookup::Waiting(line) = orders::lookup(&known, &row.identifier)
                {
                    *waiting.entry(line).or_default() += 1;
                }
                of.rejected(r);
            }
        }
    }
    if let Some(b) = book {
        b.save(&dir.join(orders_name))?;
    }
    if let Some(mut c) = ocsv {
        c.blank_line()?;
        of.blank_lines = c.blank_lines;
        c.finish()?;
    }

    // A waiting patient is listed when a fix of one cell makes it valid and new.
    for p in &known.rejected {
        let Some(&orders) = waiting.get(&p.line) else {
            continue;
        };
        let (column, value) = match p.kind {
            Some(patients::Kind::FirstNameBlank) => ("firstName", "Ann"),
            Some(patients::Kind::LastNameBlank) => ("lastName", "Doe"),
            Some(
                patients::Kind::DobBlank
                | patients::Kind::DobImpossible
                | patients::Kind::DobSlashYmd
                | patients::Kind::DobDayFirst
                | patients::Kind::DobFuture,
            ) => ("dateOfBirth", "1985-03-14"),
            _ => continue,
        };
        if known.written_mrns.contains(&p.mrn.trim().to_uppercase()) {
            continue;
        }
        m.waiting.push(WaitingPatient {
            line: p.line,
            fix_column: column.into(),
            fix_value: value.into(),
            orders,
        });
    }

    m.tables.insert("patients".into(), pf.written);
    m.tables.insert("orders".into(), of.written);
    m.files.insert("patients.csv".into(), pf);
    m.files.insert(orders_name.into(), of);
    let json = serde_json::to_string_pretty(&m)? + "\n";
    let mpath = dir.join("manifest.json");
    std::fs::write(&mpath, json).map_err(|e| color_eyre::eyre::eyre!("cannot write {}: {e}", mpath.display()))?;
    Ok(m)
}

#[cfg(test)]
mod tests;
