//! The healthcare scenario's legacy database: a MariaDB practice-management system
//! (specialties, physicians, patients, appointments, medical records, record files with their
//! bytes), filled deterministically per seed, and a [`HealthcareManifest`] of what was planted and
//! what `fixtures/healthcare` must make of it.
//!
//! Every row is a pure function of `(seed, table, index)` plus the outcomes of earlier rows (a
//! duplicate patient repeats an earlier written patient's email; an appointment's outcome
//! depends on its patient's). The outcomes are computed here by the fixture's rules written
//! out again (never through the engine's transforms), so a test comparing the engine's result
//! with the manifest compares two independent computations.
//!
//! The rules the manifest follows (the fixture's steps, in order):
//! - **specialties**: all written (names trimmed).
//! - **physicians**: all written; a `specialty_id` naming no specialty is NULL with a `lookup`
//!   warning.
//! - **patients** (in id order): a zero date of birth is rejected `decode` (the reader cannot
//!   read `0000-00-00` as a date); a birth date in 2100 or later is rejected `not_in_future`;
//!   an email equal, after trim + lower, to an earlier written patient's is skipped as a
//!   duplicate (its id then resolves to the kept patient); the rest are written. An invalid
//!   email is kept with an `email` warning; an unreadable phone becomes NULL with a `phone`
//!   warning.
//! - **appointments**: a patient id naming no patient is rejected `lookup`; one naming a
//!   rejected patient waits for it (`waiting`); the rest are written.
//! - **medical_records**: a zero `recorded_on` is rejected `decode` (before anything else); a
//!   rejected patient makes the record wait (`waiting`); the rest are written.
//! - **record_files**: a file of a rejected (or waiting) record waits for it (`waiting`); an
//!   empty file is rejected `range` (size 0); the rest are written, their bytes stored once per
//!   distinct content.

mod schema;

use std::collections::{BTreeMap, HashSet};

use chrono::{Days, NaiveDate, NaiveDateTime};
use color_eyre::Result;
use color_eyre::eyre::{WrapErr, bail, eyre};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, SqlSafeStr};

pub use schema::TABLES;

use super::names::{EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES};
use super::rng::Rng;
use super::writer::V;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthcareConfig {
    pub patients: u64,
    pub seed: u64,
}

impl Default for HealthcareConfig {
    fn default() -> Self {
        HealthcareConfig {
            patients: 1_000,
            seed: 42,
        }
    }
}

/// Upper bound on `patients` (ids are INT; the outcome bookkeeping keeps a byte per row).
pub const MAX_PATIENTS: u64 = 5_000_000;

/// What one step must do with its source rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepExpectation {
    /// Rows of the step's source table.
    pub source: u64,
    pub written: u64,
    pub skipped: u64,
    /// Including the rows waiting for a rejected row.
    pub rejected: u64,
    /// Rejected rows per rule as the reject store names it.
    pub rejected_by_rule: BTreeMap<String, u64>,
    /// Warnings of rows that were not rejected, per rule.
    pub warnings_by_rule: BTreeMap<String, u64>,
}

impl StepExpectation {
    fn written(&mut self) {
        self.source += 1;
        self.written += 1;
    }
    fn skipped(&mut self) {
        self.source += 1;
        self.skipped += 1;
    }
    fn rejected(&mut self, rule: &str) {
        self.source += 1;
        self.rejected += 1;
        *self.rejected_by_rule.entry(rule.into()).or_default() += 1;
    }
    fn warned(&mut self, rule: &str) {
        *self.warnings_by_rule.entry(rule.into()).or_default() += 1;
    }
}

/// What was generated and what the fixture project must produce from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthcareManifest {
    pub seed: u64,
    pub patients: u64,
    /// Rows per legacy table.
    pub tables: BTreeMap<String, u64>,
    /// Rows carrying each planted anomaly, as `table.kind`.
    pub planted: BTreeMap<String, u64>,
    /// Rows per target table after `up --continue-on-error` on an empty target.
    pub expected: BTreeMap<String, u64>,
    /// Per step, named by its target table.
    pub steps: BTreeMap<String, StepExpectation>,
    /// Files in the record store after the run: one per distinct content of a written file.
    pub stored_files: u64,
}

impl HealthcareManifest {
    fn plant(&mut self, what: &str) {
        *self.planted.entry(what.into()).or_default() += 1;
    }
}

const SPECIALTIES: &[&str] = &[
    "Cardiology",
    "Dermatology",
    "Endocrinology",
    "Family Medicine",
    "Gastroenterology",
    "Neurology",
    "Obstetrics and Gynecology",
    "Oncology",
    "Orthopedics",
    "Pediatrics",
    "Psychiatry",
    "Pulmonology",
];

/// Legacy status spellings; the appointments step maps every one of them.
const STATUSES: &[&str] = &[
    "scheduled",
    "Scheduled",
    "SCHEDULED",
    "completed",
    "done",
    "Completed",
    "cancelled",
    "canceled",
    "no-show",
    "noshow",
];

const APPOINTMENT_NOTES: &[&str] = &[
    "Annual physical.",
    "Follow-up in 6 weeks.",
    "Patient asked for an interpreter (Spanish).",
    "Bring previous lab results.",
    "Rescheduled by phone; confirmed.",
];

/// ICD-10 codes as typed into the old system (case and spaces vary).
const DIAGNOSES: &[&str] = &[
    "E11.9", "I10", "J45.909", "M54.5", "K21.9", "F41.1", "E78.5", "N39.0", " j06.9 ", "z00.00", "i10 ", "R51",
];

const RECORD_NOTES: &[&str] = &[
    "Blood pressure 128/84. Continue current medication.",
    "HbA1c 7.2%; diet counselling.\nReview in 3 months.",
    "Complains of lower back pain after lifting; NSAIDs, physio referral.",
    "Seasonal allergies. Café worker, exposure to dust.",
    "Anxiety symptoms improving with CBT.",
    "Normal exam.",
];

/// (extension, mime type, magic bytes the content starts with).
const FILE_KINDS: &[(&str, &str, &[u8])] = &[
    ("pdf", "application/pdf", b"%PDF-1.4\n"),
    ("png", "image/png", b"\x89PNG\r\n\x1a\n"),
    ("jpg", "image/jpeg", b"\xff\xd8\xff\xe0"),
    ("txt", "text/plain", b"Lab report\n"),
];

/// Real US area codes and exchanges that are not 555/N11, so a phone library reads them.
const AREA_CODES: &[&str] = &["212", "415", "617", "312", "202", "305", "503", "713", "206", "404"];
const BAD_PHONES: &[&str] = &["n/a", "unknown", "12345", "call work"];

/// Patient anomalies, planted in turn on a fraction of rows so each kind appears in a small run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatientKind {
    ZeroDob,
    FutureDob,
    DuplicateEmail,
    InvalidEmail,
    BadPhone,
}

const PATIENT_KINDS: &[PatientKind] = &[
    PatientKind::ZeroDob,
    PatientKind::DuplicateEmail,
    PatientKind::InvalidEmail,
    PatientKind::FutureDob,
    PatientKind::BadPhone,
];

/// Fraction of patients that carry one anomaly.
const PATIENT_ANOMALY_RATE: f64 = 0.12;
/// Every N-th appointment names a patient that does not exist.
const MISSING_PATIENT_EVERY: u64 = 60;
/// Every N-th medical record has a zero `recorded_on`.
const ZERO_RECORD_DATE_EVERY: u64 = 70;
/// Every N-th record file is empty.
const EMPTY_FILE_EVERY: u64 = 40;
/// Every N-th physician names a specialty that does not exist.
const MISSING_SPECIALTY_EVERY: u64 = 9;

/// `mysql://…` or `mariadb://…` URL → connect options; errors never show the password.
fn connect_options(url: &str) -> Result<sqlx::mysql::MySqlConnectOptions> {
    use std::str::FromStr;
    let shown = crate::engine::config::DbUrl::new(url).redacted();
    let raw = if let Some(rest) = url.strip_prefix("mariadb://") {
        format!("mysql://{rest}")
    } else if url.starts_with("mysql://") {
        url.to_string()
    } else {
        bail!("generate healthcare needs a MariaDB URL (mysql://… or mariadb://…), got {shown}");
    };
    sqlx::mysql::MySqlConnectOptions::from_str(&raw).map_err(|_| eyre!("{shown} is not a valid MariaDB URL"))
}

/// Fills the MariaDB database `url` names with the legacy schema and rows for `cfg`. Refuses a
/// database where one of the legacy tables already holds rows (empty ones are dropped and
/// created again). Returns the manifest; the caller writes it where it wants.
pub async fn generate(url: &str, cfg: &HealthcareConfig) -> Result<HealthcareManifest> {
    if !(1..=MAX_PATIENTS).contains(&cfg.patients) {
        bail!("patients must be between 1 and {MAX_PATIENTS}, got {}", cfg.patients);
    }
    let shown = crate::engine::config::DbUrl::new(url).redacted();
    let opts = connect_options(url)?;
    let mut conn = sqlx::mysql::MySqlConnection::connect_with(&opts).await.map_err(|e| {
        eyre!(
            "cannot connect to {shown}: {}",
            crate::engine::config::redact_url(&e.to_string())
        )
    })?;
    // The old system's mode: zero dates allowed, nothing else unusual.
    sqlx::query("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
        .execute(&mut conn)
        .await?;
    let database: Option<String> = sqlx::query_scalar("SELECT DATABASE()").fetch_one(&mut conn).await?;
    if database.is_none() {
        bail!("{shown} names no database; put one in the URL (mysql://user@host/DATABASE)");
    }
    for table in TABLES {
        let exists: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
        )
        .bind(*table)
        .fetch_one(&mut conn)
        .await?;
        if exists == 0 {
            continue;
        }
        let sql = format!("SELECT CAST(EXISTS (SELECT 1 FROM `{table}`) AS SIGNED)");
        let has_rows: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut conn).await?;
        if has_rows != 0 {
            bail!("{shown} already has a `{table}` table with rows; generate into an empty database");
        }
    }
    for table in TABLES.iter().rev() {
        sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS `{table}`")))
            .execute(&mut conn)
            .await?;
    }
    for ddl in schema::create_statements() {
        sqlx::query(AssertSqlSafe(ddl))
            .execute(&mut conn)
            .await
            .wrap_err("creating the legacy tables")?;
    }
    let mut m = HealthcareManifest {
        seed: cfg.seed,
        patients: cfg.patients,
        tables: BTreeMap::new(),
        planted: BTreeMap::new(),
        expected: BTreeMap::new(),
        steps: BTreeMap::new(),
        stored_files: 0,
    };
    sqlx::query("START TRANSACTION").execute(&mut conn).await?;
    fill(&mut conn, cfg, &mut m).await?;
    sqlx::query("COMMIT").execute(&mut conn).await?;
    conn.close().await?;
    Ok(m)
}

/// A deterministic timestamp between 2023-01-01 and 2025-06-30 (the legacy rows' last change;
/// anything the sync tests change later is newer).
fn updated_at(rng: &mut Rng) -> String {
    let start = NaiveDate::from_ymd_opt(2023, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default();
    let t = start + chrono::Duration::seconds(rng.below(911 * 86_400) as i64);
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

fn past_date(rng: &mut Rng, from_year: i32, years: u64) -> NaiveDate {
    let start = NaiveDate::from_ymd_opt(from_year, 1, 1).unwrap_or_default();
    start
        .checked_add_days(Days::new(rng.below(years * 365)))
        .unwrap_or(start)
}

fn datetime(rng: &mut Rng, from_year: i32, years: u64) -> NaiveDateTime {
    let d = past_date(rng, from_year, years);
    // Office hours, on the quarter hour.
    d.and_hms_opt(8 + rng.below(10) as u32, 15 * rng.below(4) as u32, 0)
        .unwrap_or_default()
}

fn phone(rng: &mut Rng) -> String {
    let area = *rng.pick(AREA_CODES);
    let exchange = loop {
        let e = 201 + rng.below(799);
        if e % 100 != 11 && e != 555 {
            break e;
        }
    };
    let line = rng.below(10_000);
    match rng.below(5) {
        0 => format!("({area}) {exchange}-{line:04}"),
        1 => format!("{area}-{exchange}-{line:04}"),
        2 => format!("{area}.{exchange}.{line:04}"),
        3 => format!("+1 {area} {exchange} {line:04}"),
        _ => format!("{area}{exchange}{line:04}"),
    }
}

/// An email written the way a front desk types it: sometimes upper case, sometimes padded.
fn typed(rng: &mut Rng, email: &str) -> String {
    match rng.below(6) {
        0 => email.to_uppercase(),
        1 => format!(" {email} "),
        2 => format!("{email} "),
        _ => email.to_string(),
    }
}

/// The email the patients step stores (and matches duplicates on).
fn stored_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Outcome of a source row that later rows depend on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Written or skipped as a duplicate: a lookup finds it.
    Found,
    /// Rejected (or waiting): a lookup waits for it.
    Rejected,
}

async fn fill(
    conn: &mut sqlx::mysql::MySqlConnection,
    cfg: &HealthcareConfig,
    m: &mut HealthcareManifest,
) -> Result<()> {
    let seed = cfg.seed;
    let n = cfg.patients;

    // ---- specialties
    let mut step = StepExpectation::default();
    let mut w = Writer::new("specialties");
    for (i, name) in SPECIALTIES.iter().enumerate() {
        let i = i as u64;
        let mut rng = Rng::new(seed, 0x5_0001, i);
        let shown = if rng.chance(0.3) {
            format!("{name} ")
        } else {
            (*name).to_string()
        };
        w.push(
            conn,
            vec![V::Int(i as i64 + 1), V::Text(shown), V::Text(updated_at(&mut rng))],
        )
        .await?;
        step.written();
    }
    w.finish(conn, m).await?;
    m.expected.insert("specialties".into(), step.written);
    m.steps.insert("specialties".into(), step);

    // ---- physicians
    let physicians = (n / 25).max(5);
    let mut step = StepExpectation::default();
    let mut w = Writer::new("physicians");
    for i in 0..physicians {
        let mut rng = Rng::new(seed, 0x5_0002, i);
        let first = *rng.pick(FIRST_NAMES);
        let last = *rng.pick(LAST_NAMES);
        let specialty = if i % MISSING_SPECIALTY_EVERY == MISSING_SPECIALTY_EVERY / 2 {
            m.plant("physicians.missing_specialty");
            step.warned("lookup");
            SPECIALTIES.len() as i64 + 1 + i as i64
        } else {
            1 + rng.below(SPECIALTIES.len() as u64) as i64
        };
        let email = format!(
            "dr.{}.{}{}@{}",
            first.to_lowercase(),
            last.to_lowercase(),
            i + 1,
            rng.pick(EMAIL_DOMAINS)
        );
        w.push(
            conn,
            vec![
                V::Int(i as i64 + 1),
                V::Text(first.into()),
                V::Text(last.into()),
                V::Int(specialty),
                V::Text(typed(&mut rng, &email)),
                V::Text(format!("MD{:06}", 100_000 + i * 7 + rng.below(7))),
                V::Text(updated_at(&mut rng)),
            ],
        )
        .await?;
        step.written();
    }
    w.finish(conn, m).await?;
    m.expected.insert("physicians".into(), step.written);
    m.steps.insert("physicians".into(), step);

    // ---- patients
    let mut step = StepExpectation::default();
    let mut w = Writer::new("patients");
    let mut patient_fate: Vec<Fate> = Vec::with_capacity(n as usize);
    // Written patients that a duplicate may repeat: (first, last, dob, stored email).
    let mut written: Vec<(String, String, String, String)> = Vec::new();
    let mut written_emails: HashSet<String> = HashSet::new();
    let mut turn = 0usize;
    for i in 0..n {
        let id = i + 1;
        let mut rng = Rng::new(seed, 0x5_0003, i);
        let kind = if Rng::new(seed, 0x5_0004, i).chance(PATIENT_ANOMALY_RATE) {
            let k = PATIENT_KINDS[turn % PATIENT_KINDS.len()];
            turn += 1;
            Some(k)
        } else {
            None
        };
        let mut first = (*rng.pick(FIRST_NAMES)).to_string();
        let mut last = (*rng.pick(LAST_NAMES)).to_string();
        let mut dob = past_date(&mut rng, 1930, 90).format("%Y-%m-%d").to_string();
        let user = format!("{}.{}{id}", first.to_lowercase(), last.to_lowercase());
        let domain = *rng.pick(EMAIL_DOMAINS);
        let mut email = typed(&mut rng, &format!("{user}@{domain}"));
        let mut phone_text = if rng.chance(0.1) {
            String::new()
        } else {
            phone(&mut rng)
        };
        if rng.chance(0.1) {
            first = format!(" {first}");
        }
        let mut email_ok = true;
        let mut phone_ok = true;
        match kind {
            None => {}
            Some(PatientKind::ZeroDob) => {
                dob = "0000-00-00".into();
                m.plant("patients.zero_date_of_birth");
            }
            Some(PatientKind::FutureDob) => {
                dob = NaiveDate::from_ymd_opt(
                    2100 + rng.below(50) as i32,
                    1 + rng.below(12) as u32,
                    1 + rng.below(28) as u32,
                )
                .unwrap_or_default()
                .format("%Y-%m-%d")
                .to_string();
                m.plant("patients.future_date_of_birth");
            }
            // The same person registered again, a while later, at another desk (nothing to
            // repeat before the first written patient).
            Some(PatientKind::DuplicateEmail) if !written.is_empty() => {
                let back = rng.below((written.len() as u64).min(40)) as usize;
                let (f, l, d, e) = written[written.len() - 1 - back].clone();
                first = f;
                last = l;
                dob = d;
                email = match rng.below(3) {
                    0 => e.to_uppercase(),
                    1 => format!("  {e}"),
                    _ => e.clone(),
                };
                m.plant("patients.duplicate_email");
            }
            Some(PatientKind::DuplicateEmail) => {}
            Some(PatientKind::InvalidEmail) => {
                let domain = *rng.pick(EMAIL_DOMAINS);
                email = match rng.below(4) {
                    0 => format!("{user}.{domain}"),
                    1 => format!("{user}@@{domain}"),
                    2 => format!("{user}(at){domain}"),
                    _ => format!("{user} @{domain}"),
                };
                email_ok = false;
                m.plant("patients.invalid_email");
            }
            Some(PatientKind::BadPhone) => {
                phone_text = (*rng.pick(BAD_PHONES)).to_string();
                phone_ok = false;
                m.plant("patients.bad_phone");
            }
        }
        // The patients step's rules, in the order the engine applies them.
        let fate = if dob == "0000-00-00" {
            step.rejected("decode");
            Fate::Rejected
        } else if dob.as_str() >= "2100-01-01" {
            step.rejected("not_in_future");
            Fate::Rejected
        } else if written_emails.contains(&stored_email(&email)) {
            step.skipped();
            Fate::Found
        } else {
            step.written();
            if !email_ok {
                step.warned("email");
            }
            if !phone_ok {
                step.warned("phone");
            }
            let e = stored_email(&email);
            written_emails.insert(e.clone());
            if email_ok {
                written.push((first.clone(), last.clone(), dob.clone(), e));
            }
            Fate::Found
        };
        patient_fate.push(fate);
        w.push(
            conn,
            vec![
                V::Int(id as i64),
                V::Text(first),
                V::Text(last),
                V::Text(dob),
                V::Text(email),
                if phone_text.is_empty() && rng.chance(0.5) {
                    V::Null
                } else {
                    V::Text(phone_text)
                },
                V::Text(updated_at(&mut rng)),
            ],
        )
        .await?;
    }
    w.finish(conn, m).await?;
    m.expected.insert("patients".into(), step.written);
    m.steps.insert("patients".into(), step);
    let fate_of_patient =
        |pid: u64| -> Option<Fate> { pid.checked_sub(1).and_then(|i| patient_fate.get(i as usize)).copied() };

    // ---- appointments
    let mut step = StepExpectation::default();
    let mut w = Writer::new("appointments");
    let mut next_id = 1u64;
    for i in 0..n {
        let mut rng = Rng::new(seed, 0x5_0005, i);
        for _ in 0..rng.below(5) {
            let id = next_id;
            next_id += 1;
            let patient = if id % MISSING_PATIENT_EVERY == MISSING_PATIENT_EVERY - 1 {
                m.plant("appointments.missing_patient");
                n + 100_000 + id
            } else {
                i + 1
            };
            match fate_of_patient(patient) {
                None => step.rejected("lookup"),
                Some(Fate::Rejected) => step.rejected("waiting"),
                Some(Fate::Found) => step.written(),
            }
            let physician = if rng.chance(0.05) {
                V::Null
            } else {
                V::Int(1 + rng.below(physicians) as i64)
            };
            let notes = if rng.chance(0.4) {
                V::Text((*rng.pick(APPOINTMENT_NOTES)).into())
            } else {
                V::Null
            };
            w.push(
                conn,
                vec![
                    V::Int(id as i64),
                    V::Int(patient as i64),
                    physician,
                    V::Text(datetime(&mut rng, 2019, 7).format("%Y-%m-%d %H:%M:%S").to_string()),
                    V::Text((*rng.pick(STATUSES)).into()),
                    notes,
                    V::Text(updated_at(&mut rng)),
                ],
            )
            .await?;
        }
    }
    w.finish(conn, m).await?;
    m.expected.insert("appointments".into(), step.written);
    m.steps.insert("appointments".into(), step);

    // ---- medical_records
    let mut step = StepExpectation::default();
    let mut w = Writer::new("medical_records");
    let mut record_found: Vec<bool> = Vec::new();
    for i in 0..n {
        let mut rng = Rng::new(seed, 0x5_0006, i);
        for _ in 0..rng.below(4) {
            let id = record_found.len() as u64 + 1;
            let zero = id % ZERO_RECORD_DATE_EVERY == ZERO_RECORD_DATE_EVERY / 2;
            let recorded_on = if zero {
                m.plant("medical_records.zero_recorded_on");
                "0000-00-00".to_string()
            } else {
                past_date(&mut rng, 2015, 10).format("%Y-%m-%d").to_string()
            };
            let found = if zero {
                step.rejected("decode");
                false
            } else if fate_of_patient(i + 1) == Some(Fate::Rejected) {
                step.rejected("waiting");
                false
            } else {
                step.written();
                true
            };
            record_found.push(found);
            let physician = if rng.chance(0.05) {
                V::Null
            } else {
                V::Int(1 + rng.below(physicians) as i64)
            };
            w.push(
                conn,
                vec![
                    V::Int(id as i64),
                    V::Int(i as i64 + 1),
                    physician,
                    V::Text(recorded_on),
                    V::Text((*rng.pick(DIAGNOSES)).into()),
                    V::Text((*rng.pick(RECORD_NOTES)).into()),
                    V::Text(updated_at(&mut rng)),
                ],
            )
            .await?;
        }
    }
    w.finish(conn, m).await?;
    m.expected.insert("medical_records".into(), step.written);
    m.steps.insert("medical_records".into(), step);

    // ---- record_files
    let mut step = StepExpectation::default();
    let mut w = Writer::new("record_files");
    let mut next_id = 1u64;
    let mut digests: HashSet<[u8; 32]> = HashSet::new();
    for (ri, found) in record_found.iter().enumerate() {
        let mut rng = Rng::new(seed, 0x5_0007, ri as u64);
        for k in 0..rng.below(3) {
            let id = next_id;
            next_id += 1;
            let (ext, mime, magic) = *rng.pick(FILE_KINDS);
            let empty = id % EMPTY_FILE_EVERY == EMPTY_FILE_EVERY / 2;
            let content = if empty {
                m.plant("record_files.empty_content");
                Vec::new()
            } else {
                let mut c = magic.to_vec();
                let mut body = vec![0u8; 200 + rng.below(3_000) as usize];
                rng.fill(&mut body);
                c.extend(body);
                c
            };
            if !found {
                step.rejected("waiting");
            } else if empty {
                step.rejected("range");
            } else {
                step.written();
                digests.insert(Sha256::digest(&content).into());
            }
            w.push(
                conn,
                vec![
                    V::Int(id as i64),
                    V::Int(ri as i64 + 1),
                    V::Text(format!("record-{}-{}.{ext}", ri + 1, k + 1)),
                    V::Text(mime.into()),
                    V::Blob(content),
                    V::Text(updated_at(&mut rng)),
                ],
            )
            .await?;
        }
    }
    w.finish(conn, m).await?;
    m.expected.insert("record_files".into(), step.written);
    m.steps.insert("record_files".into(), step);
    m.stored_files = digests.len() as u64;
    Ok(())
}

/// Rows per multi-row INSERT: far below MariaDB's 65535 placeholders, and with files of a few
/// KB each far below its default 16 MB packet.
const ROWS_PER_STATEMENT: usize = 200;

/// A buffered multi-row INSERT into one legacy table.
struct Writer {
    table: &'static str,
    rows: Vec<Vec<V>>,
    total: u64,
}

impl Writer {
    fn new(table: &'static str) -> Self {
        Writer {
            table,
            rows: Vec::new(),
            total: 0,
        }
    }

    async fn push(&mut self, conn: &mut sqlx::mysql::MySqlConnection, row: Vec<V>) -> Result<()> {
        debug_assert_eq!(row.len(), schema::columns(self.table).len(), "{}", self.table);
        self.rows.push(row);
        self.total += 1;
        if self.rows.len() >= ROWS_PER_STATEMENT {
            self.flush(conn).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, conn: &mut sqlx::mysql::MySqlConnection) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let cols = schema::columns(self.table);
        let tuple = format!("({})", vec!["?"; cols.len()].join(","));
        let values = vec![tuple.as_str(); self.rows.len()].join(",");
        // Table and column names are constants; every value is a bind parameter.
        let sql = AssertSqlSafe(format!(
            "INSERT INTO `{}` ({}) VALUES {values}",
            self.table,
            cols.join(",")
        ))
        .into_sql_str();
        let mut q = sqlx::query(sql);
        for v in self.rows.drain(..).flatten() {
            q = match v {
                V::Null => q.bind(None::<String>),
                V::Text(s) => q.bind(s),
                V::Int(i) => q.bind(i),
                V::Real(f) => q.bind(f),
                V::Blob(b) => q.bind(b),
            };
        }
        q.execute(&mut *conn)
            .await
            .wrap_err_with(|| format!("inserting into {}", self.table))?;
        Ok(())
    }

    async fn finish(mut self, conn: &mut sqlx::mysql::MySqlConnection, m: &mut HealthcareManifest) -> Result<()> {
        self.flush(conn).await?;
        m.tables.insert(self.table.into(), self.total);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_mariadb_and_errors_hide_the_password() {
        let e = connect_options("postgres://u:Secret9@h/db").unwrap_err().to_string();
        assert!(e.contains("needs a MariaDB URL"), "{e}");
        assert!(!e.contains("Secret9"), "{e}");
        assert!(connect_options("mariadb://u:pw@localhost/db").is_ok());
    }

    #[test]
    fn stored_emails_match_across_case_and_spaces() {
        assert_eq!(stored_email("  Ann.Lee3@Example.COM "), "ann.lee3@example.com");
    }
}
