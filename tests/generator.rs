//! The legacy clinic generator: determinism, sizes, schema, and every planted anomaly and
//! expectation recomputed independently from the generated file (a tiny reference migration
//! that applies the scenario's rules with in-memory maps).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use cutover::generator::{
    Anomalies, Expected, ExpectedWarnings, GeneratorConfig, LEGACY_TABLES, Manifest, Outcome, Outcomes, generate,
    manifest_path,
};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection};

fn cfg(patients: u64, seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        patients,
        seed,
        ..GeneratorConfig::default()
    }
}

async fn gen_in(dir: &Path, name: &str, cfg: &GeneratorConfig) -> (PathBuf, Manifest) {
    let path = dir.join(name);
    let m = generate(&path, cfg).await.expect("generate");
    (path, m)
}

async fn open(path: &Path) -> SqliteConnection {
    let opts = SqliteConnectOptions::new().filename(path).read_only(true);
    SqliteConnection::connect_with(&opts).await.expect("open")
}

async fn count(conn: &mut SqliteConnection, sql: &str) -> u64 {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut *conn)
        .await
        .expect(sql);
    n as u64
}

/// SHA-256 over every row of every table, ordered by id, each value as SQLite's `quote()`.
async fn content_digest(path: &Path) -> String {
    let mut conn = open(path).await;
    let mut h = Sha256::new();
    for (table, cols) in LEGACY_TABLES {
        let expr = cols
            .iter()
            .map(|c| format!("quote({c})"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT {expr} FROM {table} ORDER BY id")))
            .fetch_all(&mut conn)
            .await
            .expect("rows");
        h.update(table.as_bytes());
        for r in rows {
            h.update(r.as_bytes());
            h.update(b"\n");
        }
    }
    format!("{:x}", h.finalize())
}

#[tokio::test]
async fn same_seed_gives_identical_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ma) = gen_in(dir.path(), "a.db", &cfg(1_000, 7)).await;
    let (b, mb) = gen_in(dir.path(), "b.db", &cfg(1_000, 7)).await;
    let (c, _) = gen_in(dir.path(), "c.db", &cfg(1_000, 8)).await;
    assert_eq!(ma, mb);
    let (da, db, dc) = (
        content_digest(&a).await,
        content_digest(&b).await,
        content_digest(&c).await,
    );
    assert_eq!(da, db, "same seed, same rows");
    assert_ne!(da, dc, "another seed, other rows");
}

#[tokio::test]
async fn refuses_an_existing_file_and_writes_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = gen_in(dir.path(), "legacy.sqlite", &cfg(100, 1)).await;
    let mpath = manifest_path(&path);
    assert_eq!(mpath, dir.path().join("legacy.sqlite.manifest.json"));
    let on_disk: Manifest = serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    assert_eq!(on_disk, m);
    let before = std::fs::read(&path).unwrap();
    assert!(generate(&path, &cfg(100, 1)).await.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before, "existing file untouched");
}

#[tokio::test]
async fn schema_is_the_scenario_schema() {
    let expected: &[(&str, &[&str])] = &[
        (
            "users",
            &[
                "id",
                "email",
                "full_name",
                "role",
                "password_hash",
                "phone",
                "created_at",
            ],
        ),
        (
            "patients",
            &[
                "id",
                "clinician_id",
                "mrn",
                "first_name",
                "last_name",
                "date_of_birth",
                "gender",
                "email",
                "phone",
                "address_line1",
                "city",
                "state",
                "postal_code",
                "country",
                "allergies",
                "clinical_notes",
                "is_active",
                "created_at",
                "updated_at",
            ],
        ),
        (
            "children",
            &[
                "id",
                "parent_id",
                "first_name",
                "last_name",
                "date_of_birth",
                "gender",
                "linked_patient_id",
                "parent_notes",
                "created_at",
                "updated_at",
            ],
        ),
        (
            "parent_children",
            &["id", "parent_id", "patient_id", "relationship", "created_at"],
        ),
        (
            "consent_grants",
            &[
                "id",
                "parent_id",
                "patient_id",
                "clinician_id",
                "scope",
                "granted_at",
                "revoked_at",
            ],
        ),
        (
            "screenings",
            &["id", "patient_id", "child_id", "kind", "score", "performed_at"],
        ),
        (
            "appointments",
            &["id", "patient_id", "clinician_id", "scheduled_at", "status", "notes"],
        ),
        (
            "documents",
            &[
                "id",
                "patient_id",
                "file_name",
                "mime_type",
                "sha256",
                "content",
                "uploaded_at",
            ],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = gen_in(dir.path(), "s.db", &cfg(100, 3)).await;
    let mut conn = open(&path).await;
    let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let names: Vec<&str> = expected.iter().map(|t| t.0).collect();
    assert_eq!(tables, names);
    for (table, cols) in expected {
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT cid, name, type, pk FROM pragma_table_info('{table}') ORDER BY cid"
        )))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let got: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(&got, cols, "columns of {table}");
        assert!(
            rows.iter().all(|r| (r.1 == "id") == (r.3 == 1)),
            "{table}: id is the key"
        );
    }
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(journal, "delete");
}

#[tokio::test]
async fn sizes_follow_the_ratios() {
    let dir = tempfile::tempdir().unwrap();
    for patients in [100u64, 5_000] {
        let (path, m) = gen_in(dir.path(), &format!("{patients}.db"), &cfg(patients, 11)).await;
        let mut conn = open(&path).await;
        let t = &m.tables;
        let actual = [
            ("users", t.users),
            ("patients", t.patients),
            ("children", t.children),
            ("parent_children", t.parent_children),
            ("consent_grants", t.consent_grants),
            ("screenings", t.screenings),
            ("appointments", t.appointments),
            ("documents", t.documents),
        ];
        for (table, n) in actual {
            assert_eq!(
                count(&mut conn, &format!("SELECT COUNT(*) FROM {table}")).await,
                n,
                "{table}"
            );
        }
        let p = patients;
        assert_eq!(t.patients, p);
        assert_eq!(t.children, p / 2);
        assert_eq!(t.consent_grants, p / 2);
        assert_eq!(t.screenings, p);
        assert_eq!(t.appointments, p * 3 / 2);
        assert_eq!(t.documents, p / 5);
        // 0.6 parents + max(3, p/200) clinicians + 3 admins.
        assert_eq!(t.users, p / 4 + p * 7 / 20 + (p / 200).max(3) + 3);
        let pc = t.parent_children as f64 / p as f64;
        let band = if p >= 5_000 { 0.7..0.95 } else { 0.5..1.2 };
        assert!(band.contains(&pc), "parent_children ratio {pc}");

        let o = &m.expected.outcomes;
        let totals = [
            (o.users, t.users),
            (o.patients, t.patients),
            (o.children, t.children),
            (o.parent_children, t.parent_children),
            (o.consent_grants, t.consent_grants),
            (o.screenings, t.screenings),
            (o.appointments, t.appointments),
            (o.documents, t.documents),
        ];
        for (outcome, rows) in totals {
            assert_eq!(outcome.total(), rows, "nothing is dropped");
        }
    }
}

// ---- independent recomputation -------------------------------------------------------------

const VALID_ROLES: &[&str] = &["parent", "Parent", "PARENT", "clinician", "doctor", "Doctor", "admin"];
const GENDERS: &[&str] = &["M", "F", "male", "female", "U", "other", ""];

fn blank(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(|s| s.trim().is_empty())
}

enum DobClass {
    Blank,
    Iso(NaiveDate),
    Mmdd(NaiveDate),
    Invalid,
}

fn classify_dob(v: &Option<String>) -> DobClass {
    let Some(s) = v.as_deref().filter(|s| !s.trim().is_empty()) else {
        return DobClass::Blank;
    };
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if s.len() == 10 && b[4] == b'-' && b[7] == b'-' && digits(0..4) && digits(5..7) && digits(8..10) {
        return NaiveDate::parse_from_str(s, "%Y-%m-%d").map_or(DobClass::Invalid, DobClass::Iso);
    }
    if s.len() == 10 && b[2] == b'/' && b[5] == b'/' && digits(0..2) && digits(3..5) && digits(6..10) {
        return NaiveDate::parse_from_str(s, "%m/%d/%Y").map_or(DobClass::Invalid, DobClass::Mmdd);
    }
    DobClass::Invalid
}

fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

fn dob_rejects(v: &Option<String>) -> bool {
    match classify_dob(v) {
        DobClass::Invalid => true,
        DobClass::Iso(d) | DobClass::Mmdd(d) => d > today(),
        DobClass::Blank => false,
    }
}

fn dob_date(v: &Option<String>) -> Option<NaiveDate> {
    match classify_dob(v) {
        DobClass::Iso(d) | DobClass::Mmdd(d) => Some(d),
        _ => None,
    }
}

fn clean_allergies(raw: &str) -> String {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

struct Patient {
    clinician_id: Option<String>,
    first: Option<String>,
    last: Option<String>,
    dob: Option<String>,
    rejected: bool,
}

struct Child {
    id: String,
    parent_id: String,
    first: Option<String>,
    last: Option<String>,
    dob: Option<String>,
    link: Option<String>,
}

type Opt = Option<String>;
/// id, clinician_id, first_name, last_name, date_of_birth, gender, email, phone, allergies.
type PatientRow = (String, Opt, Opt, Opt, Opt, Opt, Opt, Opt, Opt);

#[tokio::test]
async fn every_anomaly_is_planted_and_every_expectation_recomputes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = gen_in(dir.path(), "legacy.db", &cfg(5_000, 42)).await;
    let mut conn = open(&path).await;

    // Every planted count and every expected warning is non-zero at this size.
    for (group, value) in [
        ("anomalies", serde_json::to_value(&m.anomalies).unwrap()),
        ("warnings", serde_json::to_value(&m.expected.warnings).unwrap()),
    ] {
        for (k, v) in value.as_object().unwrap() {
            assert!(v.as_u64().unwrap() > 0, "{group}.{k} is zero");
        }
    }

    let mut a = Anomalies::default();
    let mut w = ExpectedWarnings::default();
    let mut o = Outcomes::default();

    // users ----------------------------------------------------------------------------------
    let users: Vec<(String, String, String, Opt, String)> =
        sqlx::query_as("SELECT id, email, role, password_hash, created_at FROM users ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut rejected_users = HashSet::new();
    let mut groups: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (id, email, role, hash, created) in &users {
        let hash = hash.as_deref().unwrap_or_default();
        assert!(
            hash.len() == 60
                && hash.starts_with("$2b$12$")
                && hash[7..]
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'/'),
            "bcrypt shape: {hash}"
        );
        a.mixed_case_emails += u64::from(*email != email.to_lowercase());
        a.spaced_emails += u64::from(email != email.trim());
        a.legacy_roles += u64::from(["Parent", "PARENT", "doctor", "Doctor"].contains(&role.as_str()));
        if VALID_ROLES.contains(&role.as_str()) {
            let key = email.trim().to_lowercase();
            groups.entry(key).or_default().push((created.clone(), id.clone()));
        } else {
            a.unknown_roles += 1;
            rejected_users.insert(id.clone());
        }
    }
    // Rule 1: keep the earliest created_at, ties to the smaller id; the rest are skipped.
    let mut kept_of: HashMap<String, String> = HashMap::new();
    let mut duplicates = HashSet::new();
    for (_, mut g) in groups {
        g.sort();
        let (kept_created, kept) = g[0].clone();
        for (created, id) in &g[1..] {
            a.duplicate_emails += 1;
            a.duplicate_email_ties += u64::from(*created == kept_created);
            duplicates.insert(id.clone());
        }
        for (_, id) in g {
            kept_of.insert(id, kept.clone());
        }
    }
    // Unknown-role emails never collide with a valid user's (the generator avoids that mix).
    for (id, email, ..) in &users {
        if rejected_users.contains(id) {
            let key = email.trim().to_lowercase();
            assert!(!users.iter().any(|u| u.0 != *id && u.1.trim().to_lowercase() == key));
        }
    }
    o.users = Outcome {
        written: users.len() as u64 - a.duplicate_emails - a.unknown_roles,
        skipped: a.duplicate_emails,
        merged: 0,
        rejected: a.unknown_roles,
    };
    let user_ids: HashSet<String> = users.iter().map(|u| u.0.clone()).collect();
    let dup_ref = |id: &Option<String>| u64::from(id.as_ref().is_some_and(|i| duplicates.contains(i)));

    // patients -------------------------------------------------------------------------------
    let rows: Vec<PatientRow> = sqlx::query_as(
        "SELECT id, clinician_id, first_name, last_name, date_of_birth, gender, email, phone, \
         allergies FROM patients ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut patients: HashMap<String, Patient> = HashMap::new();
    for (id, clinician_id, first, last, dob, gender, email, phone, allergies) in rows {
        let rejected = dob_rejects(&dob);
        match classify_dob(&dob) {
            DobClass::Invalid => a.invalid_dob += 1,
            DobClass::Iso(d) if d > today() => a.future_dob += 1,
            DobClass::Mmdd(d) if d > today() => a.future_dob += 1,
            DobClass::Mmdd(_) => a.mmddyyyy_dob += 1,
            DobClass::Blank => a.blank_dob += 1,
            DobClass::Iso(_) => {}
        }
        if clinician_id.as_ref().is_none_or(|c| !user_ids.contains(c)) {
            a.missing_clinician += 1;
            w.missing_clinician += u64::from(!rejected);
        }
        a.references_to_duplicates += dup_ref(&clinician_id);
        a.odd_genders += u64::from(gender.as_deref().is_some_and(|g| !GENDERS.contains(&g)));
        if !blank(&phone) && !phone.as_deref().unwrap_or_default().bytes().any(|b| b.is_ascii_digit()) {
            a.bad_phones += 1;
            w.bad_phones += u64::from(!rejected);
        }
        if !blank(&email) && !email.as_deref().unwrap_or_default().contains('@') {
            a.bad_emails += 1;
            w.bad_emails += u64::from(!rejected);
        }
        if let Some(al) = allergies.as_deref() {
            a.empty_allergies += u64::from(al.is_empty());
            a.messy_allergies += u64::from(al != clean_allergies(al));
        }
        a.blank_patient_names += u64::from(blank(&first) || blank(&last));
        if rejected {
            o.patients.rejected += 1;
        } else {
            o.patients.written += 1;
        }
        patients.insert(
            id,
            Patient {
                clinician_id,
                first,
                last,
                dob,
                rejected,
            },
        );
    }
    let n_like_mmdd = count(
        &mut conn,
        "SELECT COUNT(*) FROM patients WHERE date_of_birth LIKE '__/__/____'",
    )
    .await;
    assert_eq!(n_like_mmdd, a.mmddyyyy_dob, "all MM/DD/YYYY dobs are real dates");
    let missing_sql = count(
        &mut conn,
        "SELECT COUNT(*) FROM patients WHERE clinician_id NOT IN (SELECT id FROM users)",
    )
    .await;
    assert_eq!(missing_sql, a.missing_clinician);
    assert!(patients.values().all(|p| p.clinician_id.is_some()));

    // children -------------------------------------------------------------------------------
    let rows: Vec<(String, String, Opt, Opt, Opt, Opt, Opt)> = sqlx::query_as(
        "SELECT id, parent_id, first_name, last_name, date_of_birth, gender, linked_patient_id \
         FROM children ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut children: HashMap<String, (bool, bool)> = HashMap::new(); // id -> (rejected, merged)
    let mut views: HashSet<(String, String)> = HashSet::new();
    let mut child_pairs: HashSet<(String, String)> = HashSet::new();
    let mut views_from_children = 0u64;
    let mut prev_link: Option<String> = None;
    let resolve = |u: &str| kept_of.get(u).cloned().unwrap_or_else(|| u.to_string());
    for (id, parent_id, first, last, dob, gender, link) in rows {
        let c = Child {
            id,
            parent_id,
            first,
            last,
            dob,
            link,
        };
        a.odd_genders += u64::from(gender.as_deref().is_some_and(|g| !GENDERS.contains(&g)));
        a.references_to_duplicates += u64::from(duplicates.contains(&c.parent_id));
        let patient = c.link.as_ref().and_then(|l| patients.get(l));
        match (&c.link, patient) {
            (Some(_), Some(_)) => a.linked_children += 1,
            (Some(_), None) => a.dangling_links += 1,
            (None, _) => a.unlinked_children += 1,
        }
        if patient.is_some() && prev_link == c.link {
            a.co_registered_children += 1;
        }
        prev_link = patient.and(c.link.clone());
        let patient_rejected = patient.is_some_and(|p| p.rejected);
        let parent_rejected = rejected_users.contains(&c.parent_id);
        a.children_of_rejected_patients += u64::from(patient_rejected);
        a.children_of_rejected_parents += u64::from(parent_rejected);
        match classify_dob(&c.dob) {
            DobClass::Invalid => a.child_invalid_dob += 1,
            DobClass::Iso(d) | DobClass::Mmdd(d) if d > today() => a.child_future_dob += 1,
            DobClass::Mmdd(_) => a.child_mmddyyyy_dob += 1,
            DobClass::Blank => a.child_blank_dob += 1,
            DobClass::Iso(_) => {}
        }
        let rejected = parent_rejected || patient_rejected || dob_rejects(&c.dob);
        let merged = !rejected && patient.is_some();
        if let (true, Some(p)) = (merged, patient) {
            // Rule 3: trimmed + case-folded names, ISO-normalised dates, a blank never disagrees.
            let fields = [
                (&p.first, &c.first, false),
                (&p.last, &c.last, false),
                (&p.dob, &c.dob, true),
            ];
            for (pv, cv, is_date) in fields {
                if blank(pv) || blank(cv) {
                    a.blank_side_fields += u64::from(blank(pv) != blank(cv));
                    continue;
                }
                let same = if is_date {
                    dob_date(pv).is_some() && dob_date(pv) == dob_date(cv)
                } else {
                    let norm = |v: &Opt| v.as_deref().unwrap_or_default().trim().to_lowercase();
                    norm(pv) == norm(cv)
                };
                if !same {
                    a.disagreeing_fields += 1;
                } else if pv != cv {
                    a.equivalent_fields += 1;
                }
            }
            child_pairs.insert((c.parent_id.clone(), c.link.clone().unwrap_or_default()));
        }
        if rejected {
            o.children.rejected += 1;
        } else {
            views_from_children += 1;
            let person = if merged {
                c.link.clone().unwrap_or_default()
            } else {
                c.id.clone()
            };
            views.insert((resolve(&c.parent_id), person));
            if merged {
                o.children.merged += 1;
            } else {
                o.children.written += 1;
                w.dangling_links += u64::from(c.link.is_some());
            }
        }
        children.insert(c.id, (rejected, merged));
    }

    // parent_children ------------------------------------------------------------------------
    let mut links: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT id, parent_id, patient_id, created_at FROM parent_children")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    links.sort_by(|x, y| (&x.3, &x.0).cmp(&(&y.3, &y.0)));
    let mut seen_raw: HashSet<(String, String)> = HashSet::new();
    let mut ordinary_parents: HashMap<String, HashSet<String>> = HashMap::new();
    let mut written_links = 0u64;
    for (_, parent_id, patient_id, _) in &links {
        let pair = (parent_id.clone(), patient_id.clone());
        a.references_to_duplicates += u64::from(duplicates.contains(parent_id));
        let p = patients.get(patient_id).expect("links name existing patients");
        let parent_rejected = rejected_users.contains(parent_id);
        a.links_of_rejected_parents += u64::from(parent_rejected);
        a.links_of_rejected_patients += u64::from(p.rejected);
        if child_pairs.contains(&pair) {
            a.links_duplicating_child_views += 1;
        } else {
            ordinary_parents
                .entry(patient_id.clone())
                .or_default()
                .insert(parent_id.clone());
            if !seen_raw.insert(pair) {
                a.duplicate_links += 1;
            }
        }
        // Rule 4, in created_at order, against views of the resolved parent.
        if parent_rejected || p.rejected {
            o.parent_children.rejected += 1;
        } else if views.insert((resolve(parent_id), patient_id.clone())) {
            o.parent_children.written += 1;
            written_links += 1;
        } else {
            o.parent_children.skipped += 1;
        }
    }
    a.multi_parent_patients = ordinary_parents.values().filter(|s| s.len() >= 2).count() as u64;

    // consent_grants -------------------------------------------------------------------------
    let grants: Vec<(String, String, Opt)> =
        sqlx::query_as("SELECT parent_id, patient_id, clinician_id FROM consent_grants")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    for (parent_id, patient_id, clinician_id) in &grants {
        assert!(!rejected_users.contains(parent_id), "grant parents are never rejected");
        a.references_to_duplicates += u64::from(duplicates.contains(parent_id)) + dup_ref(clinician_id);
        match patients.get(patient_id) {
            None => {
                a.orphan_grants += 1;
                o.consent_grants.rejected += 1;
            }
            Some(p) if p.rejected => {
                a.grants_of_rejected_patients += 1;
                o.consent_grants.rejected += 1;
            }
            Some(_) => o.consent_grants.written += 1,
        }
    }
    let orphans_sql = count(
        &mut conn,
        "SELECT COUNT(*) FROM consent_grants WHERE patient_id NOT IN (SELECT id FROM patients)",
    )
    .await;
    assert_eq!(orphans_sql, a.orphan_grants);

    // screenings -----------------------------------------------------------------------------
    let screenings: Vec<(Opt, Opt)> = sqlx::query_as("SELECT patient_id, child_id FROM screenings")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for (patient_id, child_id) in &screenings {
        assert!(patient_id.is_some() != child_id.is_some(), "exactly one reference");
        let rejected = if let Some(c) = child_id {
            let (rejected, merged) = children[c];
            a.screenings_on_children += 1;
            a.screenings_on_merged_children += u64::from(merged);
            a.screenings_on_rejected_children += u64::from(rejected);
            rejected
        } else {
            let rejected = patients[patient_id.as_ref().unwrap()].rejected;
            a.screenings_of_rejected_patients += u64::from(rejected);
            rejected
        };
        if rejected {
            o.screenings.rejected += 1;
        } else {
            o.screenings.written += 1;
        }
    }

    // appointments ---------------------------------------------------------------------------
    let appointments: Vec<(String, Opt)> = sqlx::query_as("SELECT patient_id, clinician_id FROM appointments")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for (patient_id, clinician_id) in &appointments {
        a.references_to_duplicates += dup_ref(clinician_id);
        if patients[patient_id].rejected {
            a.appointments_of_rejected_patients += 1;
            o.appointments.rejected += 1;
        } else {
            o.appointments.written += 1;
        }
    }

    // documents ------------------------------------------------------------------------------
    let documents: Vec<(String, String, Vec<u8>)> = sqlx::query_as("SELECT patient_id, sha256, content FROM documents")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for (patient_id, sha, content) in &documents {
        assert!((64..=2048).contains(&content.len()));
        let wrong = *sha != format!("{:x}", Sha256::digest(content));
        let rejected = patients[patient_id].rejected;
        a.wrong_sha256 += u64::from(wrong);
        if rejected {
            a.documents_of_rejected_patients += 1;
            o.documents.rejected += 1;
        } else {
            o.documents.written += 1;
            w.sha256_mismatches += u64::from(wrong);
        }
    }

    assert_eq!(a, m.anomalies, "planted anomalies recomputed from the file");
    let expected = Expected {
        accounts: o.users.written,
        persons: o.patients.written + o.children.written,
        parent_child_views: views_from_children + written_links,
        clinician_patient_views: o.patients.written,
        access_grants: o.consent_grants.written,
        screenings: o.screenings.written,
        appointments: o.appointments.written,
        documents: o.documents.written,
        discrepancies: a.disagreeing_fields,
        warnings: w,
        outcomes: o,
    };
    assert_eq!(expected, m.expected, "expectations recomputed by the rules");
}

/// Timing at scale: `cargo test --release --test generator -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn timing() {
    let dir = tempfile::tempdir().unwrap();
    for patients in [20_000u64, 1_000_000] {
        let start = std::time::Instant::now();
        let (path, m) = gen_in(dir.path(), &format!("{patients}.db"), &cfg(patients, 42)).await;
        let secs = start.elapsed().as_secs_f64();
        let size = std::fs::metadata(&path).unwrap().len();
        let rows = serde_json::to_value(&m.tables).unwrap();
        let total: u64 = rows.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        println!("{patients} patients: {total} rows, {size} bytes, {secs:.2} s");
    }
}
