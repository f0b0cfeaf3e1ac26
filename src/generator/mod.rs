//! Legacy clinic database generator.
//!
//! [`generate`] writes a new SQLite file in exactly the legacy schema of the clinic scenario
//! (`SCENARIO-clinic.md`), fills it with deterministic synthetic rows carrying every anomaly the
//! scenario names, and writes a [`Manifest`] beside it: what was planted, and what a migration that
//! follows the scenario's rules must produce.
//!
//! Determinism and flat memory come from the same design: every property of every row is a pure
//! function of `(seed, table, index)` (see `world.rs`), so later tables recompute what they need
//! to know about earlier rows instead of remembering it, and rows are streamed to SQLite in
//! multi-row INSERTs. No wall clock is read: timestamps are 2019-01-01 plus random offsets.

pub mod appwrite;
pub mod healthcare;
pub mod import;
mod names;
mod rng;
mod schema;
mod tables;
mod world;
mod writer;

use std::path::{Path, PathBuf};

use color_eyre::Result;
use color_eyre::eyre::{WrapErr, bail};
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};

pub use schema::{LEGACY_SCHEMA, LEGACY_TABLES};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GeneratorConfig {
    /// Number of patients, 100 ..= 10,000,000 (smaller works, ratios get rough); every other
    /// table is sized relative to it.
    pub patients: u64,
    pub seed: u64,
    pub rates: AnomalyRates,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            patients: 20_000,
            seed: 42,
            rates: AnomalyRates::default(),
        }
    }
}

/// Upper bound on `patients`: ids have 8 digits (see `world::ID_WIDTH`).
pub const MAX_PATIENTS: u64 = 10_000_000;

/// How often each anomaly (or structural feature) is planted; all fractions in `0..=1`.
///
/// Exclusive categories of one draw are cumulated and must sum to at most 1: patient dob
/// (`dob_invalid + dob_future + dob_blank + dob_mmddyyyy`), child dob (`child_dob_invalid +
/// child_dob_future + dob_blank + dob_mmddyyyy`), user class (`unknown_role + duplicate_email`),
/// child kind (`child_linked + child_dangling`), and linked-child field comparison
/// (`field_disagree + field_blank + field_equivalent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnomalyRates {
    /// Users whose email has upper-case letters.
    pub email_mixed_case: f64,
    /// Users whose email has leading/trailing spaces.
    pub email_stray_spaces: f64,
    /// Clinician and parent users that repeat an earlier user's email (case-insensitively).
    pub duplicate_email: f64,
    /// Of the duplicates, those whose `created_at` equals the original's exactly.
    pub duplicate_email_tie: f64,
    /// Parents spelled 'Parent'/'PARENT', clinicians 'doctor'/'Doctor'.
    pub legacy_role: f64,
    /// Parent users with a role the rules do not know ('nurse', 'superuser', ...).
    pub unknown_role: f64,
    /// Patients whose `clinician_id` names no user.
    pub missing_clinician: f64,
    /// Dates of birth (patients and children) as 'MM/DD/YYYY'.
    pub dob_mmddyyyy: f64,
    /// Dates of birth (patients and children) '' or NULL.
    pub dob_blank: f64,
    /// Patient dates of birth that are not real dates ('2021-02-30').
    pub dob_invalid: f64,
    /// Patient dates of birth in 2100 or later.
    pub dob_future: f64,
    /// Genders outside the scenario's list ('X', '?', 'N/A', 'unknown'), patients and children.
    pub gender_odd: f64,
    /// Patient phones that cannot be read as a number ('n/a', 'call me').
    pub bad_phone: f64,
    /// Patient emails that are not an address ('not-an-email').
    pub bad_email: f64,
    /// Patient allergy lists with stray spaces or empty items.
    pub messy_allergies: f64,
    /// Patients with a blank ('' or NULL) first or last name.
    pub blank_patient_name: f64,
    /// Children whose `linked_patient_id` names an existing patient.
    pub child_linked: f64,
    /// Children whose `linked_patient_id` names nothing.
    pub child_dangling: f64,
    /// Linked children that link to the same patient as the previous child record.
    pub child_co_registered: f64,
    /// Unlinked/dangling children with an invalid date of birth.
    pub child_dob_invalid: f64,
    /// Unlinked/dangling children with a date of birth in 2100 or later.
    pub child_dob_future: f64,
    /// Per field (first, last, dob) of an accepted linked child: a real disagreement.
    pub field_disagree: f64,
    /// Per field of a linked child: the child's side blank.
    pub field_blank: f64,
    /// Per field of a linked child: equal after trimming/case-folding or date normalising.
    pub field_equivalent: f64,
    /// Patients that have at least one `parent_children` row.
    pub patient_has_links: f64,
    /// Of those, patients with 2 or 3 parents.
    pub multi_parent: f64,
    /// Merged children (no disagreement) whose parent also has a `parent_children` row for the
    /// same patient, duplicating the child's view.
    pub link_duplicates_child_view: f64,
    /// Patients with links that get a second row for their first (parent, patient) pair.
    pub duplicate_link: f64,
    /// Consent grants whose patient does not exist.
    pub orphan_grant: f64,
    /// Screenings recorded against a child instead of a patient.
    pub screening_on_child: f64,
    /// Documents whose legacy sha256 does not match the content.
    pub wrong_sha256: f64,
}

impl Default for AnomalyRates {
    fn default() -> Self {
        AnomalyRates {
            email_mixed_case: 0.3,
            email_stray_spaces: 0.05,
            duplicate_email: 0.02,
            duplicate_email_tie: 0.3,
            legacy_role: 0.3,
            unknown_role: 0.01,
            missing_clinician: 0.01,
            dob_mmddyyyy: 0.1,
            dob_blank: 0.03,
            dob_invalid: 0.01,
            dob_future: 0.005,
            gender_odd: 0.02,
            bad_phone: 0.02,
            bad_email: 0.02,
            messy_allergies: 0.1,
            blank_patient_name: 0.01,
            child_linked: 0.6,
            child_dangling: 0.05,
            child_co_registered: 0.15,
            child_dob_invalid: 0.01,
            child_dob_future: 0.01,
            field_disagree: 0.05,
            field_blank: 0.05,
            field_equivalent: 0.15,
            patient_has_links: 0.55,
            multi_parent: 0.35,
            link_duplicates_child_view: 0.1,
            duplicate_link: 0.02,
            orphan_grant: 0.02,
            screening_on_child: 0.3,
            wrong_sha256: 0.03,
        }
    }
}

impl AnomalyRates {
    fn fields(&self) -> [(&'static str, f64); 31] {
        [
            ("email_mixed_case", self.email_mixed_case),
            ("email_stray_spaces", self.email_stray_spaces),
            ("duplicate_email", self.duplicate_email),
            ("duplicate_email_tie", self.duplicate_email_tie),
            ("legacy_role", self.legacy_role),
            ("unknown_role", self.unknown_role),
            ("missing_clinician", self.missing_clinician),
            ("dob_mmddyyyy", self.dob_mmddyyyy),
            ("dob_blank", self.dob_blank),
            ("dob_invalid", self.dob_invalid),
            ("dob_future", self.dob_future),
            ("gender_odd", self.gender_odd),
            ("bad_phone", self.bad_phone),
            ("bad_email", self.bad_email),
            ("messy_allergies", self.messy_allergies),
            ("blank_patient_name", self.blank_patient_name),
            ("child_linked", self.child_linked),
            ("child_dangling", self.child_dangling),
            ("child_co_registered", self.child_co_registered),
            ("child_dob_invalid", self.child_dob_invalid),
            ("child_dob_future", self.child_dob_future),
            ("field_disagree", self.field_disagree),
            ("field_blank", self.field_blank),
            ("field_equivalent", self.field_equivalent),
            ("patient_has_links", self.patient_has_links),
            ("multi_parent", self.multi_parent),
            ("link_duplicates_child_view", self.link_duplicates_child_view),
            ("duplicate_link", self.duplicate_link),
            ("orphan_grant", self.orphan_grant),
            ("screening_on_child", self.screening_on_child),
            ("wrong_sha256", self.wrong_sha256),
        ]
    }

    /// Every rate in `0..=1` and every exclusive group summing to at most 1.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in self.fields() {
            if !(0.0..=1.0).contains(&v) {
                bail!("rate {name} = {v} is not a fraction in 0..=1");
            }
        }
        let groups = [
            (
                "dob_invalid + dob_future + dob_blank + dob_mmddyyyy",
                self.dob_invalid + self.dob_future + self.dob_blank + self.dob_mmddyyyy,
            ),
            (
                "child_dob_invalid + child_dob_future + dob_blank + dob_mmddyyyy",
                self.child_dob_invalid + self.child_dob_future + self.dob_blank + self.dob_mmddyyyy,
            ),
            (
                "unknown_role + duplicate_email",
                self.unknown_role + self.duplicate_email,
            ),
            ("child_linked + child_dangling", self.child_linked + self.child_dangling),
            (
                "field_disagree + field_blank + field_equivalent",
                self.field_disagree + self.field_blank + self.field_equivalent,
            ),
        ];
        for (name, sum) in groups {
            if sum > 1.0 {
                bail!("rates {name} sum to {sum}, more than 1");
            }
        }
        Ok(())
    }
}

/// Rows per legacy table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCounts {
    pub users: u64,
    pub patients: u64,
    pub children: u64,
    pub parent_children: u64,
    pub consent_grants: u64,
    pub screenings: u64,
    pub appointments: u64,
    pub documents: u64,
}

/// How many rows carry each planted anomaly (counted over all rows, rejected or not).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomalies {
    // users
    /// `email <> lower(email)`.
    pub mixed_case_emails: u64,
    /// `email <> trim(email)`.
    pub spaced_emails: u64,
    /// Users skipped as case-insensitive duplicates (later `created_at`, or a tie and larger id).
    pub duplicate_emails: u64,
    /// Of those, the ones whose `created_at` equals the kept user's.
    pub duplicate_email_ties: u64,
    /// Roles 'Parent', 'PARENT', 'doctor', 'Doctor'.
    pub legacy_roles: u64,
    /// Roles the rules do not know: rejected users.
    pub unknown_roles: u64,
    /// User references (patients/appointments/grants clinician, children/links/grants parent)
    /// that name a duplicate user and must be rewritten to the kept account.
    pub references_to_duplicates: u64,
    // patients
    /// Patients whose `clinician_id` names no user.
    pub missing_clinician: u64,
    /// Patient dobs that are not real dates (all `YYYY-MM-DD`-shaped).
    pub invalid_dob: u64,
    /// Patient dobs in 2100 or later.
    pub future_dob: u64,
    /// Patient dobs in 'MM/DD/YYYY' (all real dates).
    pub mmddyyyy_dob: u64,
    /// Patient dobs '' or NULL.
    pub blank_dob: u64,
    /// Patient and child genders outside 'M','F','male','female','U','other','' and NULL.
    pub odd_genders: u64,
    /// Patient phones without a single digit.
    pub bad_phones: u64,
    /// Patient emails without '@' (blank ones not counted).
    pub bad_emails: u64,
    /// Patient allergies that differ from their clean form (items trimmed, empties dropped,
    /// joined by ", ").
    pub messy_allergies: u64,
    /// Patient allergies ''.
    pub empty_allergies: u64,
    /// Patients with a blank first or last name.
    pub blank_patient_names: u64,
    // children
    /// Children whose `linked_patient_id` names an existing patient.
    pub linked_children: u64,
    /// Linked children linking to the same patient as the previous child record.
    pub co_registered_children: u64,
    /// Children whose `linked_patient_id` names nothing.
    pub dangling_links: u64,
    /// Children with `linked_patient_id` NULL.
    pub unlinked_children: u64,
    /// Linked children whose patient is rejected (invalid/future dob).
    pub children_of_rejected_patients: u64,
    /// Children whose parent user is rejected (unknown role).
    pub children_of_rejected_parents: u64,
    /// Child dobs that are not real dates.
    pub child_invalid_dob: u64,
    /// Child dobs in 2100 or later.
    pub child_future_dob: u64,
    /// Child dobs in 'MM/DD/YYYY'.
    pub child_mmddyyyy_dob: u64,
    /// Child dobs '' or NULL.
    pub child_blank_dob: u64,
    /// (merged child, field) pairs that disagree with the patient: each one discrepancy.
    pub disagreeing_fields: u64,
    /// (merged child, field) pairs that differ only by case/whitespace or date format.
    pub equivalent_fields: u64,
    /// (merged child, field) pairs with exactly one side blank.
    pub blank_side_fields: u64,
    // parent_children
    /// Patients with 2 or 3 distinct parents among their ordinary links.
    pub multi_parent_patients: u64,
    /// Links whose (parent_id, patient_id) equals a merged child's (parent_id, linked_patient_id).
    pub links_duplicating_child_views: u64,
    /// Links repeating an earlier link's (parent_id, patient_id), with a later created_at.
    pub duplicate_links: u64,
    /// Links whose parent user is rejected.
    pub links_of_rejected_parents: u64,
    /// Links whose patient is rejected.
    pub links_of_rejected_patients: u64,
    // consent_grants
    /// Grants whose patient_id names no patient.
    pub orphan_grants: u64,
    /// Grants of rejected patients.
    pub grants_of_rejected_patients: u64,
    // screenings, appointments, documents
    /// Screenings with `child_id` set (and `patient_id` NULL).
    pub screenings_on_children: u64,
    /// Of those, on children that merge into a patient.
    pub screenings_on_merged_children: u64,
    /// Of those, on rejected (or waiting) children.
    pub screenings_on_rejected_children: u64,
    /// Screenings with `patient_id` of a rejected patient.
    pub screenings_of_rejected_patients: u64,
    pub appointments_of_rejected_patients: u64,
    pub documents_of_rejected_patients: u64,
    /// Documents whose legacy sha256 is not the lowercase hex SHA-256 of `content`.
    pub wrong_sha256: u64,
}

/// Where the rows of one source table end up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub written: u64,
    pub skipped: u64,
    pub merged: u64,
    /// Including the ones waiting for another rejected row.
    pub rejected: u64,
}

impl Outcome {
    pub fn total(&self) -> u64 {
        self.written + self.skipped + self.merged + self.rejected
    }
}

/// Outcome per source table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    pub users: Outcome,
    pub patients: Outcome,
    pub children: Outcome,
    pub parent_children: Outcome,
    pub consent_grants: Outcome,
    pub screenings: Outcome,
    pub appointments: Outcome,
    pub documents: Outcome,
}

/// Warnings a correct migration raises, counted over rows that are not rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedWarnings {
    /// Accepted patients whose clinician names no account (clinician set to NULL).
    pub missing_clinician: u64,
    /// Accepted children whose link dangles.
    pub dangling_links: u64,
    /// Accepted patients whose phone is set to NULL.
    pub bad_phones: u64,
    /// Accepted patients whose email is set to NULL.
    pub bad_emails: u64,
    /// Written documents whose legacy sha256 is wrong.
    pub sha256_mismatches: u64,
}

/// Target row counts and per-table outcomes of a migration that follows the rules, before any
/// review decision or operator retry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    pub accounts: u64,
    pub persons: u64,
    pub parent_child_views: u64,
    pub clinician_patient_views: u64,
    pub access_grants: u64,
    pub screenings: u64,
    pub appointments: u64,
    pub documents: u64,
    /// Items in the review queue: one per (merged child, disagreeing field).
    pub discrepancies: u64,
    pub warnings: ExpectedWarnings,
    pub outcomes: Outcomes,
}

/// What a generated file holds and what its migration must produce; written as JSON to
/// `<db file name>.manifest.json`.
///
/// Readings of the scenario used to compute `expected` (counted by construction while
/// generating, before any review decision or operator retry):
///
/// - **users**: rejected = unknown roles; skipped = case-insensitive duplicate emails among the
///   valid rows. Only parent slots get unknown roles, and a duplicate always repeats an earlier
///   *valid* user of the same kind (never an unknown-role one, never another duplicate), so
///   "duplicate of a rejected user" never arises. References to a duplicate resolve to the kept
///   account and never wait. Duplicates have a later `created_at`, or an equal one and a larger id.
/// - **patients**: rejected = invalid or future dob; otherwise written. A clinician that names no
///   user gives NULL + a warning, not a rejection (clinician ids never name rejected users here).
/// - **children**: rejected = own dob invalid/future, or parent user rejected, or linked patient
///   rejected (waiting); merged = linked to an accepted patient; written = unlinked or dangling
///   (one person each). Only unlinked/dangling children carry an invalid/future dob of their own,
///   and disagreements are only planted on children that merge.
/// - **parent_children**: rejected = parent user or patient rejected (waiting); skipped = the
///   (resolved parent, person) pair already has a view (from a child, or an earlier link);
///   written = the rest. Ordinary links use parents disjoint from the children's parents, so the
///   only duplicates are the planted ones.
/// - **consent_grants**: rejected = orphan, or patient rejected (waiting); grant parents are
///   never rejected users. **screenings**: rejected when the referenced patient or child is
///   rejected; a merged child's screenings are written to the patient's person.
///   **appointments / documents**: rejected when the patient is rejected.
/// - persons = accepted patients + written children; parent_child_views = accepted children +
///   written links (two child records of one parent still give two views); clinician_patient_views
///   = accepted patients; discrepancies = disagreeing fields. No row is "merged" except merged
///   children, and only merged children compare fields.
/// - **values**: "future" dates are in 2100 or later, so the counts never depend on today;
///   invalid dates are always `YYYY-MM-DD`-shaped (e.g. `2021-02-30`, `2019-02-29`, `2020-13-01`),
///   and every `MM/DD/YYYY` value is a real past date. Equivalent values (case, surrounding
///   spaces, other date format) and one-sided blanks are never discrepancies.
/// - **warnings** (`expected.warnings`) count only rows that are not rejected; the planted counts
///   in `anomalies` count every row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub seed: u64,
    pub patients: u64,
    pub rates: AnomalyRates,
    pub tables: TableCounts,
    pub anomalies: Anomalies,
    pub expected: Expected,
}

/// `<db>.manifest.json`: `.manifest.json` appended to the full file name.
pub fn manifest_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".manifest.json");
    PathBuf::from(s)
}

/// Creates a new SQLite file at `path` (error if it exists) in the legacy schema, fills it, and
/// writes `<path>.manifest.json` (replacing a stale one). On error the partial file is removed.
pub async fn generate(path: &Path, cfg: &GeneratorConfig) -> Result<Manifest> {
    if !(1..=MAX_PATIENTS).contains(&cfg.patients) {
        bail!("patients must be between 1 and {MAX_PATIENTS}, got {}", cfg.patients);
    }
    cfg.rates.validate()?;
    // create_new: refuse to touch an existing file, atomically.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .wrap_err_with(|| format!("creating {}", path.display()))?;
    let manifest = match fill(path, cfg).await {
        Ok(m) => m,
        Err(e) => {
            // Best effort: a half-written legacy file is worse than none.
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    };
    let json = serde_json::to_string_pretty(&manifest)? + "\n";
    let mpath = manifest_path(path);
    std::fs::write(&mpath, json).wrap_err_with(|| format!("writing {}", mpath.display()))?;
    Ok(manifest)
}

async fn fill(path: &Path, cfg: &GeneratorConfig) -> Result<Manifest> {
    // No journal and no fsync while generating: the file is new, a crash just means "rerun".
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Off)
        .synchronous(SqliteSynchronous::Off)
        .pragma("cache_size", "-65536");
    let mut conn = SqliteConnection::connect_with(&opts)
        .await
        .wrap_err_with(|| format!("opening {}", path.display()))?;
    sqlx::raw_sql(LEGACY_SCHEMA).execute(&mut conn).await?;

    let world = world::World::new(cfg);
    let mut m = Manifest {
        seed: cfg.seed,
        patients: cfg.patients,
        rates: cfg.rates.clone(),
        tables: TableCounts::default(),
        anomalies: Anomalies::default(),
        expected: Expected::default(),
    };
    let mut sink = writer::Sink::begin(conn).await?;
    tables::generate_all(&world, &mut sink, &mut m).await?;
    let mut conn = sink.commit().await?;

    // Leave an ordinary rollback-journal database behind.
    sqlx::query("PRAGMA journal_mode=DELETE").execute(&mut conn).await?;
    sqlx::query("PRAGMA synchronous=FULL").execute(&mut conn).await?;
    conn.close().await?;
    Ok(m)
}
