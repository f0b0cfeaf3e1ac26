//! The appwrite scenario's legacy database: an in-house scheduling application on PostgreSQL
//! (teams, users with roles and bcrypt hashes, projects, appointments with their notes, files as
//! `bytea`, settings) that `fixtures/appwrite` moves into collections and buckets. [`build`]
//! makes every row deterministically per seed together with an [`AppwriteManifest`] of what was
//! planted and what the fixture must make of it; [`generate`] writes the rows.
//!
//! The outcomes are computed here from the fixture's rules written out again (the constants
//! below; a unit test holds them against the fixture's files), never through the engine, so a
//! test comparing the engine's result with the manifest compares two independent computations.
//!
//! The rules the manifest follows (the fixture's steps, in order; a row's first failing rule
//! decides, fields in the step's order):
//! - **teams**: all written.
//! - **users** (in id order): a role outside admin/clinician/patient rejects the row (rule
//!   `roles`); an email equal, after trim + lower, to an earlier written user's is skipped as a
//!   duplicate (its legacy id then resolves to the kept user); the rest are written.
//! - **projects**: an owner that was rejected makes the project wait (`waiting`).
//! - **appointments**: a patient id naming no user is rejected `lookup`; a patient (or
//!   clinician) that was rejected makes it wait (`waiting`); a NULL patient is written without
//!   a `user:` permission for the patient; a document (fields plus the embedded notes) whose
//!   compact JSON is over [`MAX_DOCUMENT_BYTES`] is rejected `document_size`.
//! - **files, one step per bucket**: an owner that was rejected makes the file wait
//!   (`waiting`); bytes over the bucket's `max_bytes` or of a type the bucket does not take
//!   (detected from the bytes, never from the name or the claimed type) are rejected `bucket`;
//!   each bucket keeps one file per distinct content.
//! - **config**: a key with no new name is rejected `config_key`; a value that does not parse
//!   as its new key's type is rejected `config_type`.

mod files;
mod schema;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{Duration, NaiveDate, NaiveDateTime};
use color_eyre::Result;
use color_eyre::eyre::{WrapErr, bail, eyre};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, SqlSafeStr};

pub use schema::TABLES;

use super::names::{BCRYPT_ALPHABET, EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES};
use super::rng::Rng;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppwriteConfig {
    pub users: u64,
    pub seed: u64,
}

impl Default for AppwriteConfig {
    fn default() -> Self {
        AppwriteConfig { users: 300, seed: 42 }
    }
}

/// Upper bound on `users` (everything is built in memory before it is written: about 1.5 KB of
/// file bytes per user).
pub const MAX_USERS: u64 = 200_000;

// ---- The fixture's rules (fixtures/appwrite), written out again. ------------------------

/// The steps of fixtures/appwrite: version and name.
pub const STEPS: &[(&str, &str)] = &[
    ("20250601T090000", "teams"),
    ("20250601T090100", "users"),
    ("20250601T090200", "projects"),
    ("20250601T090300", "appointments"),
    ("20250601T090400", "files_avatars"),
    ("20250601T090500", "files_records"),
    ("20250601T090600", "config"),
];

/// `max_document_bytes` of the appointments collection.
pub const MAX_DOCUMENT_BYTES: usize = 4096;
/// `[buckets.avatars]` and `[buckets.records]`: (name, max_bytes, mime types taken).
pub const BUCKETS: &[(&str, usize, &[&str])] = &[
    ("avatars", 65_536, &["image/png", "image/jpeg"]),
    (
        "records",
        131_072,
        &["application/pdf", "image/png", "image/jpeg", "text/plain"],
    ),
];
/// The roles the users step knows.
pub const ROLES: &[&str] = &["admin", "clinician", "patient"];
/// `[users.role_permissions]` of the users step (`*`: every user).
pub const ROLE_PERMISSIONS: &[(&str, &[&str])] = &[
    ("admin", &["read(\"any\")", "write(\"any\")"]),
    (
        "clinician",
        &["read(\"team:clinicians\")", "write(\"team:clinicians\")"],
    ),
    ("patient", &[]),
    ("*", &["read(\"user:{_id}\")", "write(\"user:{_id}\")"]),
];
/// `[target] permissions` of the projects step.
pub const PROJECT_PERMISSIONS: &[&str] = &["read(\"team:{team_id}\")", "write(\"user:{owner_id}\")"];
/// `[target] permissions` of the appointments step.
pub const APPOINTMENT_PERMISSIONS: &[&str] = &[
    "read(\"user:{patient_id}\")",
    "read(\"user:{clinician_id}\")",
    "write(\"user:{clinician_id}\")",
    "read(\"team:{team_id}\")",
];
/// `[config.keys]` of the config step: old key -> new key.
pub const CONFIG_KEYS: &[(&str, &str)] = &[
    ("smtp_host", "mail.smtp.host"),
    ("smtp_port", "mail.smtp.port"),
    ("smtp_user", "mail.smtp.user"),
    ("mail_from", "mail.from"),
    ("booking_enabled", "features.booking"),
    ("reminders_enabled", "features.reminders"),
    ("branding", "branding"),
    ("site_name", "site.name"),
    ("timezone", "site.timezone"),
    ("session_timeout_min", "auth.session_timeout_minutes"),
    ("password_min_length", "auth.password.min_length"),
    ("max_upload_mb", "storage.max_upload_mb"),
];
/// `[config] types` of the config step, by new key (others are text).
pub const CONFIG_TYPES: &[(&str, &str)] = &[
    ("mail.smtp.port", "integer"),
    ("features.booking", "boolean"),
    ("features.reminders", "boolean"),
    ("branding", "json"),
    ("auth.session_timeout_minutes", "integer"),
    ("auth.password.min_length", "integer"),
    ("storage.max_upload_mb", "integer"),
];

// ---- Planting. -------------------------------------------------------------------------

/// Every N-th user (at offset N/2) repeats an earlier user's email.
const DUPLICATE_EMAIL_EVERY: u64 = 25;
/// Every N-th user (at offset N/2) has a role the new system does not know.
const UNKNOWN_ROLE_EVERY: u64 = 40;
const UNKNOWN_ROLES: &[&str] = &["receptionist", "superuser", "Billing", "nurse"];
/// Every N-th appointment names a patient that does not exist.
const MISSING_PATIENT_EVERY: u64 = 50;
/// Every N-th appointment has no patient (a blocked slot).
const NO_PATIENT_EVERY: u64 = 70;
/// Every N-th appointment carries a dictation far over the document limit.
const OVERSIZE_APPOINTMENT_EVERY: u64 = 90;
/// Every N-th avatar is a GIF (named and claimed as a PNG).
const GIF_AVATAR_EVERY: u64 = 30;
/// Every N-th avatar is a photo over the bucket's limit.
const OVERSIZE_AVATAR_EVERY: u64 = 45;
/// Every N-th record file is a GIF claimed as a PDF.
const WRONG_TYPE_RECORD_EVERY: u64 = 40;
/// Every N-th record file is a scan over the bucket's limit.
const OVERSIZE_RECORD_EVERY: u64 = 70;

const TEAM_NAMES: &[&str] = &[
    "Cardiology",
    "Dermatology",
    "Family Medicine",
    "Neurology",
    "Oncology",
    "Pediatrics",
    "Physiotherapy",
    "Psychiatry",
];

const NOTES: &[&str] = &[
    "Annual check-up.",
    "Follow-up in 6 weeks.",
    "  Patient asked for an interpreter (Spanish).",
    "Bring previous lab results.",
    "Rescheduled by phone; confirmed. ",
    "Blood pressure 128/84, continue medication.",
    "Referral to physiotherapy sent.",
];

/// A long dictation: 12 of these (with numbering) are far over the appointments limit.
const DICTATION: &str = "Dictated summary: patient seen for review of chronic lower back pain radiating to the \
left leg, worse after prolonged sitting, improved with rest and heat. Examination shows reduced lumbar flexion, \
straight leg raise positive at 60 degrees on the left, power and reflexes preserved. Plan: continue physiotherapy \
twice weekly, review analgesia, imaging only if red flags appear, follow-up appointment in four weeks.";

const STATUSES: &[&str] = &[
    "scheduled",
    "completed",
    "completed",
    "cancelled",
    "no_show",
    " Scheduled",
];

const PROJECT_WORDS: &[&str] = &[
    "Diabetes outreach",
    "Falls prevention",
    "Telehealth pilot",
    "Vaccination drive",
    "Sleep clinic",
    "Pain pathway",
];

/// What one step must do with its source rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepExpectation {
    /// The step's name in fixtures/appwrite (its folder name without the version).
    pub name: String,
    /// Source rows the step reads.
    pub source: u64,
    pub written: u64,
    pub skipped: u64,
    /// Including rows waiting for a rejected row.
    pub rejected: u64,
    pub rejected_by_rule: BTreeMap<String, u64>,
    /// Warnings of rows that were not rejected, per rule.
    pub warnings_by_rule: BTreeMap<String, u64>,
}

impl StepExpectation {
    fn named(name: &str) -> Self {
        StepExpectation {
            name: name.into(),
            ..StepExpectation::default()
        }
    }
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
}

/// A document a sample user's migration must produce, and the permissions it must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleDocument {
    /// The collection (the target table).
    pub collection: String,
    /// `data.legacy_id` of the document.
    pub legacy_id: u64,
    /// The permission strings, sorted (compare as a set: the order depends on the template).
    /// Placeholders stand for ids the run decides: `{_id}` is this document's `_id`,
    /// `{users:7}` / `{teams:2}` the `_id` of the document with that legacy id in that
    /// collection.
    pub permissions: Vec<String>,
}

/// One of the three sample users (an admin, a clinician, a patient).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub role: String,
    pub legacy_id: u64,
    /// The email as the users collection stores it (trimmed, lower-cased).
    pub email: String,
    /// Their user document first, then a document of theirs in another collection.
    pub documents: Vec<SampleDocument>,
}

/// What was generated and what fixtures/appwrite must produce from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppwriteManifest {
    pub seed: u64,
    pub users: u64,
    /// Rows per legacy table.
    pub tables: BTreeMap<String, u64>,
    /// Rows carrying each planted problem, as `table.kind`.
    pub planted: BTreeMap<String, u64>,
    /// After `up --continue-on-error` on an empty target: `collection:NAME` documents, and
    /// `bucket:NAME` distinct stored files.
    pub expected: BTreeMap<String, u64>,
    /// Per step version.
    pub steps: BTreeMap<String, StepExpectation>,
    pub samples: Vec<Sample>,
}

impl AppwriteManifest {
    fn plant(&mut self, what: &str) {
        *self.planted.entry(what.into()).or_default() += 1;
    }
    fn step(&mut self, name: &str, step: StepExpectation) {
        let version = STEPS
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(v, _)| (*v).to_string())
            .unwrap_or_else(|| name.to_string());
        self.steps.insert(version, step);
    }
}

/// One legacy cell.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    Ts(NaiveDateTime),
}

/// Every legacy row (per table, in [`TABLES`] order) and the manifest.
pub struct Legacy {
    pub rows: Vec<(&'static str, Vec<Vec<V>>)>,
    pub manifest: AppwriteManifest,
}

/// What a later row finds when it looks a user up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fate {
    /// Written, or skipped as a duplicate (its id resolves to the kept user).
    Found,
    /// Rejected: rows naming it wait.
    Rejected,
}

/// The legacy user the other tables refer to.
struct User {
    fate: Fate,
    roles: BTreeSet<&'static str>,
    team: Option<u64>,
}

fn epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2021, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// A deterministic moment in 2021..2025, on the minute.
fn moment(rng: &mut Rng) -> NaiveDateTime {
    epoch() + Duration::minutes(rng.below(4 * 365 * 24 * 60) as i64)
}

/// Office hours on a day in 2022..2025, on the quarter hour.
fn slot(rng: &mut Rng) -> NaiveDateTime {
    let day = epoch() + Duration::days(365 + rng.below(3 * 365) as i64);
    day + Duration::minutes(8 * 60 + 15 * rng.below(40) as i64)
}

fn bcrypt_hash(rng: &mut Rng) -> String {
    let body: String = (0..53).map(|_| char::from(*rng.pick(BCRYPT_ALPHABET))).collect();
    format!("$2b$12${body}")
}

/// An email the way people type it: sometimes upper case, sometimes padded.
fn typed(rng: &mut Rng, email: &str) -> String {
    match rng.below(6) {
        0 => email.to_uppercase(),
        1 => format!(" {email} "),
        2 => format!("{email} "),
        _ => email.to_string(),
    }
}

/// How the legacy app spelled a role list: any case, `,` `;` or space between.
fn spelled(rng: &mut Rng, roles: &[&str]) -> String {
    let sep = *rng.pick(&[",", ", ", ";", " "]);
    roles
        .iter()
        .map(|r| {
            if rng.chance(0.2) {
                capitalised(r)
            } else {
                (*r).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(sep)
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// The permission strings of `templates` with the placeholders named in `with` replaced (a
/// placeholder mapped to `None` is NULL: its permission is left out), sorted, duplicates
/// removed. Placeholders not in `with` stay as they are.
fn render(templates: &[&str], with: &[(&str, Option<String>)]) -> Vec<String> {
    let mut out = BTreeSet::new();
    'next: for t in templates {
        let mut s = (*t).to_string();
        for (name, value) in with {
            let ph = format!("{{{name}}}");
            if s.contains(&ph) {
                match value {
                    Some(v) => s = s.replace(&ph, v),
                    None => continue 'next,
                }
            }
        }
        out.insert(s);
    }
    out.into_iter().collect()
}

/// The permissions of a user document with these (valid) roles.
fn user_permissions(roles: &BTreeSet<&str>) -> Vec<String> {
    let templates: Vec<&str> = ROLE_PERMISSIONS
        .iter()
        .filter(|(role, _)| *role == "*" || roles.contains(role))
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    render(&templates, &[])
}

/// The appointments document as the fixture builds it, with 36-character stand-ins for the
/// ids the run decides: its compact JSON length is what `max_document_bytes` measures (give or
/// take how the engine spells a timestamp, a few bytes).
fn appointment_document(
    id: u64,
    patient: bool,
    team: bool,
    starts: NaiveDateTime,
    ends: NaiveDateTime,
    status: &str,
    notes: &[(String, NaiveDateTime)],
) -> serde_json::Value {
    let uuid = "0190c3a2-7e1b-7c3d-9f00-000000000000";
    let ts = |t: &NaiveDateTime| t.format("%Y-%m-%dT%H:%M:%S").to_string();
    serde_json::json!({
        "legacy_id": id,
        "patient_id": if patient { serde_json::json!(uuid) } else { serde_json::Value::Null },
        "clinician_id": uuid,
        "team_id": if team { serde_json::json!(uuid) } else { serde_json::Value::Null },
        "schedule": { "starts_at": ts(&starts), "ends_at": ts(&ends) },
        "status": status.trim().to_lowercase(),
        "notes": notes.iter().map(|(text, at)| serde_json::json!({ "text": text.trim(), "written_at": ts(at) })).collect::<Vec<_>>(),
    })
}

/// Builds every legacy row for `cfg` and the manifest of what the fixture must make of them.
pub fn build(cfg: &AppwriteConfig) -> Result<Legacy> {
    if !(3..=MAX_USERS).contains(&cfg.users) {
        bail!("users must be between 3 and {MAX_USERS}, got {}", cfg.users);
    }
    let seed = cfg.seed;
    let n = cfg.users;
    let mut m = AppwriteManifest {
        seed,
        users: n,
        tables: BTreeMap::new(),
        planted: BTreeMap::new(),
        expected: BTreeMap::new(),
        steps: BTreeMap::new(),
        samples: Vec::new(),
    };
    let mut rows: Vec<(&'static str, Vec<Vec<V>>)> = Vec::new();

    // ---- teams
    let teams = (n / 40).max(3);
    let mut step = StepExpectation::named("teams");
    let mut t_rows = Vec::new();
    for i in 0..teams {
        let mut rng = Rng::new(seed, 0xA_0001, i);
        let base = TEAM_NAMES[(i as usize) % TEAM_NAMES.len()];
        let name = if i as usize >= TEAM_NAMES.len() {
            format!("{base} {}", i as usize / TEAM_NAMES.len() + 1)
        } else {
            base.to_string()
        };
        t_rows.push(vec![V::Int(i as i64 + 1), V::Text(name), V::Ts(moment(&mut rng))]);
        step.written();
    }
    m.expected.insert("collection:teams".into(), step.written);
    m.step("teams", step);
    rows.push(("teams", t_rows));

    // ---- users
    let mut step = StepExpectation::named("users");
    let mut u_rows = Vec::new();
    let mut users: Vec<User> = Vec::with_capacity(n as usize);
    // Stored emails of written users; (stored email, full name) of those a duplicate may repeat.
    let mut stored: HashSet<String> = HashSet::new();
    let mut repeatable: Vec<(String, String)> = Vec::new();
    let mut sample_emails: HashMap<u64, String> = HashMap::new();
    for i in 0..n {
        let id = i + 1;
        let mut rng = Rng::new(seed, 0xA_0002, i);
        let first = *rng.pick(FIRST_NAMES);
        let last = *rng.pick(LAST_NAMES);
        let mut full_name = format!("{first} {last}");
        let domain = *rng.pick(EMAIL_DOMAINS);
        let mut email = typed(
            &mut rng,
            &format!("{}.{}{id}@{domain}", first.to_lowercase(), last.to_lowercase()),
        );
        let hash = bcrypt_hash(&mut rng);
        let mut valid: Vec<&'static str> = match i {
            0 => vec!["admin"],
            1 => vec!["clinician"],
            2 => vec!["patient"],
            _ => match rng.below(100) {
                0..=3 => vec!["clinician", "admin"],
                4..=21 => vec!["clinician"],
                _ => vec!["patient"],
            },
        };
        let mut unknown = None;
        if i % UNKNOWN_ROLE_EVERY == UNKNOWN_ROLE_EVERY / 2 {
            valid = vec!["patient"];
            unknown = Some(*rng.pick(UNKNOWN_ROLES));
            m.plant("users.unknown_role");
        } else if i % DUPLICATE_EMAIL_EVERY == DUPLICATE_EMAIL_EVERY / 2 && !repeatable.is_empty() {
            // The same person signed up again a while later: same name, the email typed
            // another way.
            let back = rng.below((repeatable.len() as u64).min(30)) as usize;
            let (e, name) = repeatable[repeatable.len() - 1 - back].clone();
            email = match rng.below(3) {
                0 => e.to_uppercase(),
                1 => format!("  {e}"),
                _ => e,
            };
            full_name = name;
            valid = vec!["patient"];
            m.plant("users.duplicate_email");
        }
        let mut spelled_roles: Vec<&str> = valid.clone();
        if let Some(u) = unknown {
            spelled_roles.push(u);
        }
        let roles_text = spelled(&mut rng, &spelled_roles);
        let team = if valid.contains(&"clinician") || valid.contains(&"admin") {
            Some(1 + rng.below(teams))
        } else {
            None
        };
        let key = email.trim().to_lowercase();
        let fate = if unknown.is_some() {
            step.rejected("roles");
            Fate::Rejected
        } else if stored.contains(&key) {
            step.skipped();
            Fate::Found
        } else {
            step.written();
            stored.insert(key.clone());
            repeatable.push((key.clone(), full_name.clone()));
            if i < 3 {
                sample_emails.insert(id, key);
            }
            Fate::Found
        };
        users.push(User {
            fate,
            roles: valid.iter().copied().collect(),
            team,
        });
        u_rows.push(vec![
            V::Int(id as i64),
            V::Text(email),
            V::Text(full_name),
            V::Text(hash),
            V::Text(roles_text),
            team.map_or(V::Null, |t| V::Int(t as i64)),
            V::Ts(moment(&mut rng)),
        ]);
    }
    m.expected.insert("collection:users".into(), step.written);
    m.step("users", step);
    rows.push(("users", u_rows));
    let fate_of = |uid: u64| -> Option<Fate> { uid.checked_sub(1).and_then(|i| users.get(i as usize)).map(|u| u.fate) };
    let patients: Vec<u64> = (1..=n)
        .filter(|&u| users[(u - 1) as usize].roles.contains("patient"))
        .collect();
    let clinicians: Vec<u64> = (1..=n)
        .filter(|&u| users[(u - 1) as usize].roles.contains("clinician"))
        .collect();

    // ---- projects (the first belongs to the admin sample)
    let projects = (n / 6).max(2);
    let mut step = StepExpectation::named("projects");
    let mut p_rows = Vec::new();
    let mut first_project_team = 1;
    for k in 0..projects {
        let mut rng = Rng::new(seed, 0xA_0003, k);
        let owner = if k == 0 { 1 } else { 1 + rng.below(n) };
        let team = 1 + rng.below(teams);
        if k == 0 {
            first_project_team = team;
        }
        match fate_of(owner) {
            Some(Fate::Found) => step.written(),
            Some(Fate::Rejected) => step.rejected("waiting"),
            None => step.rejected("lookup"),
        }
        p_rows.push(vec![
            V::Int(k as i64 + 1),
            V::Text(format!("{} {}", rng.pick(PROJECT_WORDS), 2022 + rng.below(4))),
            V::Int(owner as i64),
            V::Int(team as i64),
            if rng.chance(0.3) {
                V::Null
            } else {
                V::Text("Quality improvement project of the practice.".into())
            },
            V::Ts(moment(&mut rng)),
        ]);
    }
    m.expected.insert("collection:projects".into(), step.written);
    m.step("projects", step);
    rows.push(("projects", p_rows));

    // ---- appointments and their notes (the first: patient sample with clinician sample)
    let appointments = 2 * n;
    let mut step = StepExpectation::named("appointments");
    let mut a_rows = Vec::new();
    let mut n_rows = Vec::new();
    let mut first_appointment_team = None;
    for j in 0..appointments {
        let id = j + 1;
        let mut rng = Rng::new(seed, 0xA_0004, j);
        let mut patient = Some(if j == 0 { 3 } else { *rng.pick(&patients) });
        let clinician = if j == 0 { 2 } else { *rng.pick(&clinicians) };
        let team = users[(clinician - 1) as usize].team;
        if j == 0 {
            first_appointment_team = team;
        }
        let starts = slot(&mut rng);
        let ends = starts + Duration::minutes(15 * (1 + rng.below(4) as i64));
        let status = *rng.pick(STATUSES);
        let mut oversize = false;
        if j % MISSING_PATIENT_EVERY == MISSING_PATIENT_EVERY / 2 {
            patient = Some(n + 1_000 + id);
            m.plant("appointments.missing_patient");
        } else if j % NO_PATIENT_EVERY == NO_PATIENT_EVERY / 2 {
            patient = None;
            m.plant("appointments.no_patient");
        } else if j % OVERSIZE_APPOINTMENT_EVERY == OVERSIZE_APPOINTMENT_EVERY / 2 {
            oversize = true;
            m.plant("appointments.oversize_document");
        }
        let notes: Vec<(String, NaiveDateTime)> = if oversize {
            (0..12)
                .map(|k| (format!("{}. {DICTATION}", k + 1), starts + Duration::minutes(k)))
                .collect()
        } else {
            (0..rng.below(4))
                .map(|k| {
                    (
                        (*rng.pick(NOTES)).to_string(),
                        starts - Duration::hours(24 * (3 - k as i64)),
                    )
                })
                .collect()
        };
        let size = appointment_document(id, patient.is_some(), team.is_some(), starts, ends, status, &notes)
            .to_string()
            .len();
        let lookup = |u: Option<u64>| u.map(fate_of);
        match (lookup(patient), lookup(Some(clinician))) {
            (Some(None), _) => step.rejected("lookup"),
            (Some(Some(Fate::Rejected)), _) => step.rejected("waiting"),
            (_, Some(None)) => step.rejected("lookup"),
            (_, Some(Some(Fate::Rejected))) => step.rejected("waiting"),
            _ if size > MAX_DOCUMENT_BYTES => step.rejected("document_size"),
            _ => step.written(),
        }
        for (text, at) in notes {
            n_rows.push(vec![
                V::Int(n_rows.len() as i64 + 1),
                V::Int(id as i64),
                V::Text(text),
                V::Ts(at),
            ]);
        }
        a_rows.push(vec![
            V::Int(id as i64),
            patient.map_or(V::Null, |p| V::Int(p as i64)),
            V::Int(clinician as i64),
            team.map_or(V::Null, |t| V::Int(t as i64)),
            V::Ts(starts),
            V::Ts(ends),
            V::Text(status.into()),
            V::Ts(starts - Duration::days(1 + rng.below(30) as i64)),
        ]);
    }
    m.expected.insert("collection:appointments".into(), step.written);
    m.step("appointments", step);
    rows.push(("appointments", a_rows));
    rows.push(("appointment_notes", n_rows));

    // ---- files: avatars (about every other user), then records
    let mut f_rows: Vec<Vec<V>> = Vec::new();
    let mut files_written = 0;
    let default_avatar = files::png(&mut Rng::new(seed, 0xA_0005, u64::MAX), 12, 12);
    let (avatars_max, avatars_mime) = (BUCKETS[0].1, BUCKETS[0].2);
    let mut step = StepExpectation::named("files_avatars");
    let mut digests: HashSet<[u8; 32]> = HashSet::new();
    let mut a = 0u64;
    for i in 0..n {
        let mut rng = Rng::new(seed, 0xA_0006, i);
        if !rng.chance(0.5) {
            continue;
        }
        let owner = i + 1;
        let (content, detected, name, claimed) = if a % GIF_AVATAR_EVERY == GIF_AVATAR_EVERY / 2 {
            m.plant("files.avatar_gif");
            (
                files::gif(&format!("avatar of user {owner}")),
                "image/gif",
                "avatar.png",
                "image/png",
            )
        } else if a % OVERSIZE_AVATAR_EVERY == OVERSIZE_AVATAR_EVERY / 2 {
            m.plant("files.avatar_over_limit");
            let side = 150 + rng.below(20) as u32;
            (files::png(&mut rng, side, side), "image/png", "photo.png", "image/png")
        } else if rng.chance(0.15) {
            (default_avatar.clone(), "image/png", "default.png", "image/png")
        } else if rng.chance(0.6) {
            let side = 8 + rng.below(17) as u32;
            (files::png(&mut rng, side, side), "image/png", "avatar.png", "image/png")
        } else {
            (
                files::jpeg(&format!("avatar of user {owner}")),
                "image/jpeg",
                "avatar.jpg",
                "image/jpeg",
            )
        };
        a += 1;
        match fate_of(owner) {
            Some(Fate::Rejected) => step.rejected("waiting"),
            None => step.rejected("lookup"),
            Some(Fate::Found) if content.len() > avatars_max || !avatars_mime.contains(&detected) => {
                step.rejected("bucket")
            }
            Some(Fate::Found) => {
                step.written();
                digests.insert(Sha256::digest(&content).into());
            }
        }
        f_rows.push(vec![
            V::Int(f_rows.len() as i64 + 1),
            V::Text("avatars".into()),
            V::Int(owner as i64),
            V::Text(name.into()),
            V::Text(claimed.into()),
            V::Bytes(content),
            V::Ts(moment(&mut rng)),
        ]);
    }
    files_written += step.written;
    m.expected.insert("bucket:avatars".into(), digests.len() as u64);
    m.step("files_avatars", step);

    let (records_max, records_mime) = (BUCKETS[1].1, BUCKETS[1].2);
    let mut step = StepExpectation::named("files_records");
    let mut digests: HashSet<[u8; 32]> = HashSet::new();
    for r in 0..(n / 2).max(4) {
        let mut rng = Rng::new(seed, 0xA_0007, r);
        let owner = *rng.pick(&patients);
        let (content, detected, name, claimed) = if r % WRONG_TYPE_RECORD_EVERY == WRONG_TYPE_RECORD_EVERY / 2 {
            m.plant("files.record_wrong_type");
            (
                files::gif(&format!("scan {r}")),
                "image/gif",
                format!("scan-{r}.pdf"),
                "application/pdf",
            )
        } else if r % OVERSIZE_RECORD_EVERY == OVERSIZE_RECORD_EVERY / 2 {
            m.plant("files.record_over_limit");
            let w = 230 + rng.below(30) as u32;
            (
                files::png(&mut rng, w, 200),
                "image/png",
                format!("xray-{r}.png"),
                "image/png",
            )
        } else {
            match rng.below(4) {
                0 => {
                    let lines: Vec<String> = (0..3 + rng.below(8))
                        .map(|k| format!("Referral {r}, line {k}: {}", rng.pick(NOTES).trim()))
                        .collect();
                    (
                        files::pdf(&lines),
                        "application/pdf",
                        format!("referral-{r}.pdf"),
                        "application/pdf",
                    )
                }
                1 => {
                    let side = 16 + rng.below(25) as u32;
                    (
                        files::png(&mut rng, side, side),
                        "image/png",
                        format!("photo-{r}.png"),
                        "image/png",
                    )
                }
                2 => (
                    files::jpeg(&format!("wound photo {r}")),
                    "image/jpeg",
                    format!("wound-{r}.jpg"),
                    "image/jpeg",
                ),
                _ => {
                    let text = format!(
                        "Lab results {r}\nHbA1c: {}.{}%\nLDL: {} mg/dL\nReviewed.\n",
                        5 + rng.below(4),
                        rng.below(10),
                        70 + rng.below(120)
                    );
                    (text.into_bytes(), "text/plain", format!("labs-{r}.txt"), "text/plain")
                }
            }
        };
        match fate_of(owner) {
            Some(Fate::Rejected) => step.rejected("waiting"),
            None => step.rejected("lookup"),
            Some(Fate::Found) if content.len() > records_max || !records_mime.contains(&detected) => {
                step.rejected("bucket")
            }
            Some(Fate::Found) => {
                step.written();
                digests.insert(Sha256::digest(&content).into());
            }
        }
        f_rows.push(vec![
            V::Int(f_rows.len() as i64 + 1),
            V::Text("records".into()),
            V::Int(owner as i64),
            V::Text(name),
            V::Text(claimed.into()),
            V::Bytes(content),
            V::Ts(moment(&mut rng)),
        ]);
    }
    files_written += step.written;
    m.expected.insert("bucket:records".into(), digests.len() as u64);
    m.step("files_records", step);
    m.expected.insert("collection:files".into(), files_written);
    rows.push(("files", f_rows));

    // ---- settings
    let mut rng = Rng::new(seed, 0xA_0008, 0);
    let settings: Vec<(&str, String)> = vec![
        ("smtp_host", format!("smtp{}.clinic.example", rng.below(3) + 1)),
        ("smtp_port", rng.pick(&["25", "465", "587"]).to_string()),
        ("smtp_user", "mailer".into()),
        ("mail_from", "no-reply@clinic.example".into()),
        ("booking_enabled", rng.pick(&["true", "false"]).to_string()),
        ("reminders_enabled", "true".into()),
        (
            "branding",
            format!(r##"{{"primary": "#0a6ebd", "logo": "logo-{}.png"}}"##, rng.below(9)),
        ),
        ("site_name", "Riverside Family Practice".into()),
        ("timezone", "Europe/Berlin".into()),
        ("session_timeout_min", (15 * (1 + rng.below(4))).to_string()),
        ("password_min_length", "12".into()),
        // Planted: a size with its unit typed in.
        ("max_upload_mb", format!("{}MB", 10 + rng.below(20))),
        // Planted: settings of features the new system does not have.
        ("fax_gateway", "fax.clinic.example:4559".into()),
        ("legacy_theme", "classic-blue".into()),
    ];
    let mut step = StepExpectation::named("config");
    let mut s_rows = Vec::new();
    for (key, value) in settings {
        let new_key = CONFIG_KEYS.iter().find(|(old, _)| *old == key).map(|(_, new)| *new);
        let kind = new_key
            .and_then(|k| CONFIG_TYPES.iter().find(|(nk, _)| *nk == k))
            .map(|(_, t)| *t)
            .unwrap_or("text");
        match new_key {
            None => {
                m.plant("settings.unmapped_key");
                step.rejected("config_key");
            }
            Some(_) if !parses_as(kind, &value) => {
                m.plant("settings.bad_typed_value");
                step.rejected("config_type");
            }
            Some(_) => step.written(),
        }
        s_rows.push(vec![V::Text(key.into()), V::Text(value), V::Ts(moment(&mut rng))]);
    }
    m.expected.insert("collection:config".into(), step.written);
    m.step("config", step);
    rows.push(("settings", s_rows));

    // ---- samples: users 1, 2, 3 (admin, clinician, patient; written by construction)
    let user_doc = |uid: u64| SampleDocument {
        collection: "users".into(),
        legacy_id: uid,
        permissions: user_permissions(&users[(uid - 1) as usize].roles),
    };
    let appointment_one = SampleDocument {
        collection: "appointments".into(),
        legacy_id: 1,
        permissions: render(
            APPOINTMENT_PERMISSIONS,
            &[
                ("patient_id", Some("{users:3}".into())),
                ("clinician_id", Some("{users:2}".into())),
                ("team_id", first_appointment_team.map(|t| format!("{{teams:{t}}}"))),
            ],
        ),
    };
    let project_one = SampleDocument {
        collection: "projects".into(),
        legacy_id: 1,
        permissions: render(
            PROJECT_PERMISSIONS,
            &[
                ("team_id", Some(format!("{{teams:{first_project_team}}}"))),
                ("owner_id", Some("{users:1}".into())),
            ],
        ),
    };
    for (uid, role, other) in [
        (1, "admin", project_one),
        (2, "clinician", appointment_one.clone()),
        (3, "patient", appointment_one),
    ] {
        let email = sample_emails
            .get(&uid)
            .cloned()
            .ok_or_else(|| eyre!("sample user {uid} was not written"))?;
        m.samples.push(Sample {
            role: role.into(),
            legacy_id: uid,
            email,
            documents: vec![user_doc(uid), other],
        });
    }

    for (table, r) in &rows {
        m.tables.insert((*table).into(), r.len() as u64);
    }
    Ok(Legacy { rows, manifest: m })
}

/// Whether the config step reads `value` as a `kind` (integer, boolean, json, text).
fn parses_as(kind: &str, value: &str) -> bool {
    let v = value.trim();
    match kind {
        "integer" => v.parse::<i64>().is_ok(),
        "boolean" => matches!(v.to_lowercase().as_str(), "true" | "false"),
        "json" => serde_json::from_str::<serde_json::Value>(v).is_ok(),
        _ => true,
    }
}

/// `postgres://…` URL → connect options; errors never show the password.
fn connect_options(url: &str) -> Result<sqlx::postgres::PgConnectOptions> {
    use std::str::FromStr;
    let shown = crate::engine::config::DbUrl::new(url).redacted();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!("generate appwrite needs a PostgreSQL URL (postgres://…), got {shown}");
    }
    sqlx::postgres::PgConnectOptions::from_str(url).map_err(|_| eyre!("{shown} is not a valid PostgreSQL URL"))
}

/// Fills the PostgreSQL database `url` names with the legacy tables (dropped and created
/// again) and the rows for `cfg`, in one transaction. Returns the manifest.
pub async fn generate(url: &str, cfg: &AppwriteConfig) -> Result<AppwriteManifest> {
    let legacy = build(cfg)?;
    let shown = crate::engine::config::DbUrl::new(url).redacted();
    let opts = connect_options(url)?;
    let mut conn = sqlx::postgres::PgConnection::connect_with(&opts).await.map_err(|e| {
        eyre!(
            "cannot connect to {shown}: {}",
            crate::engine::config::redact_url(&e.to_string())
        )
    })?;
    let mut tx = conn.begin().await?;
    for table in schema::table_names().collect::<Vec<_>>().iter().rev() {
        sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {table} CASCADE")))
            .execute(&mut *tx)
            .await
            .wrap_err_with(|| format!("dropping the legacy table {table}"))?;
    }
    for table in schema::table_names() {
        sqlx::query(AssertSqlSafe(schema::create_statement(table)))
            .execute(&mut *tx)
            .await
            .wrap_err_with(|| format!("creating the legacy table {table}"))?;
    }
    for (table, rows) in &legacy.rows {
        insert(&mut tx, table, rows).await?;
    }
    tx.commit().await?;
    conn.close().await?;
    Ok(legacy.manifest)
}

/// Multi-row INSERTs of `rows` into `table`: far below PostgreSQL's 65535 parameters, and a
/// few MB per statement at most.
async fn insert(conn: &mut sqlx::PgConnection, table: &str, rows: &[Vec<V>]) -> Result<()> {
    let cols = schema::columns(table);
    let per_statement = (60_000 / cols.len().max(1)).min(200);
    for chunk in rows.chunks(per_statement) {
        let mut values = Vec::with_capacity(chunk.len());
        for r in 0..chunk.len() {
            let tuple: Vec<String> = (0..cols.len())
                .map(|c| format!("${}", r * cols.len() + c + 1))
                .collect();
            values.push(format!("({})", tuple.join(",")));
        }
        let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
        // Table and column names are constants; every value is a bind parameter.
        let sql = AssertSqlSafe(format!(
            "INSERT INTO {table} ({}) VALUES {}",
            names.join(","),
            values.join(",")
        ))
        .into_sql_str();
        let mut q = sqlx::query(sql);
        for (i, v) in chunk.iter().flatten().enumerate() {
            let ty = cols[i % cols.len()].1;
            q = match v {
                // A NULL of the column's own type.
                V::Null if ty.starts_with("INTEGER") => q.bind(None::<i32>),
                V::Null if ty.starts_with("TIMESTAMP") => q.bind(None::<NaiveDateTime>),
                V::Null if ty.starts_with("BYTEA") => q.bind(None::<Vec<u8>>),
                V::Null => q.bind(None::<String>),
                V::Int(i) => q.bind(*i as i32),
                V::Text(s) => q.bind(s.clone()),
                V::Bytes(b) => q.bind(b.clone()),
                V::Ts(t) => q.bind(*t),
            };
        }
        q.execute(&mut *conn)
            .await
            .wrap_err_with(|| format!("inserting into {table}"))?;
    }
    Ok(())
}

/// `cutover generate appwrite URL`: fills the database, writes the manifest to `manifest` (if
/// given) and prints it (`json`) or a summary. Called from the CLI's multi-threaded runtime,
/// whose caller is not async.
pub fn run(url: &str, cfg: &AppwriteConfig, manifest: Option<&std::path::Path>, json: bool) -> Result<()> {
    let m = tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(generate(url, cfg)))?;
    if let Some(path) = manifest {
        let text = serde_json::to_string_pretty(&m)? + "\n";
        std::fs::write(path, text).map_err(|e| eyre!("cannot write {}: {e}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string(&m)?);
        return Ok(());
    }
    println!(
        "generated the appwrite legacy database in {} ({} users, seed {}); the rules imply:\n{}",
        crate::engine::config::DbUrl::new(url).redacted(),
        cfg.users,
        cfg.seed,
        summary(&m)
    );
    if let Some(path) = manifest {
        println!("manifest: {}", path.display());
    }
    Ok(())
}

/// The operator's summary of a manifest: each step's books as the rules imply them.
pub fn summary(m: &AppwriteManifest) -> String {
    let mut out = Vec::new();
    for (version, name) in STEPS {
        let Some(s) = m.steps.get(*version) else { continue };
        let rules: Vec<String> = s.rejected_by_rule.iter().map(|(r, n)| format!("{r} {n}")).collect();
        out.push(format!(
            "  {version} {name}: {} rows = {} written + {} skipped + {} rejected{}",
            s.source,
            s.written,
            s.skipped,
            s.rejected,
            if rules.is_empty() {
                String::new()
            } else {
                format!(" ({})", rules.join(", "))
            }
        ));
    }
    let expected: Vec<String> = m.expected.iter().map(|(k, n)| format!("{k} {n}")).collect();
    out.push(format!("  expected: {}", expected.join(", ")));
    out.join("\n")
}

#[cfg(test)]
mod tests;
