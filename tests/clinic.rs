//! The clinic scenario end to end on a generated legacy database, checked count by count
//! against the generator's manifest, on SQLite, PostgreSQL and MariaDB as target; then the
//! review queue (a split), an orphan grant, a dangling link, primary caregivers, and a rejected
//! patient whose dependants wait and go through once its date of birth is fixed.

mod common;
mod support;

use common::mysql::MariaDbServer;
use serde_json::Value as J;
use support::{Backend, TestProject, stderr};

/// The target a clinic test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Sqlite,
    Postgres,
    Mariadb,
}

/// `targets!(check)` runs `fn check(t: Target)` as three tests, one per target.
macro_rules! targets {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::Target::Sqlite)
            }
            #[test]
            fn postgres() {
                super::$name(super::Target::Postgres)
            }
            #[test]
            fn mariadb() {
                super::$name(super::Target::Mariadb)
            }
        }
    };
}

/// A clinic project on one target: SQL on the target goes through that server's own client.
struct Clinic {
    p: TestProject,
    t: Target,
}

impl std::ops::Deref for Clinic {
    type Target = TestProject;
    fn deref(&self) -> &TestProject {
        &self.p
    }
}

/// The session settings of the engine's MariaDB target sessions (ANSI quotes, `||`, strict).
const MARIADB_SESSION: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,ANSI_QUOTES,PIPES_AS_CONCAT';";

impl Clinic {
    fn target_sql(&self, sql: &str) -> String {
        match self.t {
            Target::Mariadb => MariaDbServer::shared().mysql(&self.p.target_url, &format!("{MARIADB_SESSION} {sql}")),
            _ => self.p.target_sql(sql),
        }
    }

    fn count(&self, table: &str) -> i64 {
        scalar(self, &format!("SELECT COUNT(*) FROM {table}"))
    }

    /// `expr` as text in this target's SQL.
    fn text(&self, expr: &str) -> String {
        match self.t {
            Target::Mariadb => format!("CAST({expr} AS CHAR)"),
            _ => format!("CAST({expr} AS TEXT)"),
        }
    }

    fn user_tables(&self) -> Vec<String> {
        match self.t {
            Target::Mariadb => self
                .target_sql("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY table_name")
                .lines()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && !s.starts_with("cutover_"))
                .collect(),
            _ => self.p.user_tables(),
        }
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The clinic project (fixtures/clinic, unchanged) on a freshly generated legacy database.
fn clinic(t: Target, patients: u32, seed: u32) -> (Clinic, J) {
    let b = if t == Target::Postgres {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let mut p = TestProject::with_config(b, "\n[defaults]\nbatch_size = 500\ncontinue_on_error = true\n");
    if t == Target::Mariadb {
        let url = MariaDbServer::shared().fresh_db("clinic");
        let config = p.path().join("cutover.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.contains("url = \"sqlite://target.db\""), "{text}");
        std::fs::write(&config, text.replace("sqlite://target.db", &url)).unwrap();
        p.target_url = url;
    }
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clinic/migrations"),
        &p.path().join("migrations"),
    );
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clinic/verify.toml"),
        p.path().join("verify.toml"),
    )
    .unwrap();
    let src = p.path().join("source.db");
    let o = std::process::Command::new(support::bin())
        .args([
            "generate",
            src.to_str().unwrap(),
            "--patients",
            &patients.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest: J =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("source.db.manifest.json")).unwrap()).unwrap();
    (Clinic { p, t }, manifest)
}

fn n(v: &J) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn scalar(p: &Clinic, sql: &str) -> i64 {
    let out = p.target_sql(sql);
    out.trim().parse().unwrap_or_else(|_| panic!("{sql}: {out}"))
}

/// Rows of a query on the legacy (SQLite) source.
fn source_count(p: &Clinic, sql: &str) -> u64 {
    let out = support::sqlite3(&p.path().join("source.db"), sql);
    out.trim().parse().unwrap_or_else(|_| panic!("{sql}: {out}"))
}

/// The source rows of a data or merge step, counted on the source from its own step.toml
/// (a table or a query; both sides of a merge).
fn step_source_rows(p: &Clinic, folder: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(folder.join("step.toml")).unwrap();
    let step: toml::Value = toml::from_str(&text).unwrap();
    let count = |side: &toml::Value| {
        let from = match (side.get("table"), side.get("query")) {
            (Some(t), _) => format!("\"{}\"", t.as_str().unwrap()),
            (None, Some(q)) => format!("({})", q.as_str().unwrap()),
            _ => panic!("{}: a source without table or query", folder.display()),
        };
        source_count(p, &format!("SELECT COUNT(*) FROM {from}"))
    };
    match step.get("kind").and_then(|k| k.as_str()) {
        Some("merge") => count(&step["a"]) + count(&step["b"]),
        _ => count(&step["source"]),
    }
}

/// The books of every applied data and merge step, against counts taken from the source and
/// the target's own tables (never the ledger against itself): the source rows counted now on
/// the source; the rejected rows in the reject store; the written, skipped and merged rows in
/// the ID map (one entry per row: an own row, or an alias to the row it joined). A count
/// missing from `status --json` fails.
fn assert_books(p: &Clinic) {
    let status = p.json(&["status"]);
    let migrations = status["migrations"].as_array().expect("migrations");
    assert_eq!(migrations.len(), 11, "{status}");
    let mut checked = 0;
    for m in migrations {
        if m["kind"] == "schema" {
            continue;
        }
        let version = m["version"].as_str().expect("version");
        let c = &m["counts"];
        let n = |k: &str| c[k].as_i64().unwrap_or_else(|| panic!("{version}: no counts.{k}: {m}"));
        let folder = p
            .path()
            .join("migrations")
            .join(format!("{version}_{}", m["name"].as_str().expect("name")));
        let source = step_source_rows(p, &folder) as i64;
        let rejected = scalar(
            p,
            &format!(
                "SELECT COUNT(*) FROM cutover_rejects WHERE version = '{version}' AND level = 'error' AND state = 'open'"
            ),
        );
        let mapped = scalar(
            p,
            &format!("SELECT COUNT(*) FROM cutover_id_map WHERE version = '{version}'"),
        );
        assert_eq!(n("source"), source, "{version}: ledger source vs the source now: {m}");
        assert_eq!(
            n("rejected"),
            rejected,
            "{version}: ledger rejected vs the reject store: {m}"
        );
        assert_eq!(
            n("written") + n("skipped") + n("merged"),
            mapped,
            "{version}: written + skipped + merged vs the ID map: {m}"
        );
        assert_eq!(
            source,
            mapped + rejected,
            "{version}: the books balance on the tables: {m}"
        );
        checked += 1;
    }
    assert_eq!(checked, 10, "every data and merge step was checked");
}

fn check_against_manifest(p: &Clinic, m: &J) {
    let e = &m["expected"];
    for (table, key) in [
        ("accounts", "accounts"),
        ("persons", "persons"),
        ("parent_child_views", "parent_child_views"),
        ("clinician_patient_views", "clinician_patient_views"),
        ("access_grants", "access_grants"),
        ("screenings", "screenings"),
        ("appointments", "appointments"),
        ("documents", "documents"),
    ] {
        assert_eq!(p.count(table), n(&e[key]), "{table}");
    }
    assert_eq!(
        p.count("cutover_discrepancies"),
        n(&e["discrepancies"]),
        "discrepancies"
    );
    // every source row ends written, skipped, merged or rejected, table by table
    let map = |name: &str, alias: i32| {
        scalar(
            p,
            &format!("SELECT COUNT(*) FROM cutover_id_map WHERE map = '{name}' AND alias = {alias}"),
        )
    };
    let rejected = |t: &str| {
        scalar(
            p,
            &format!(
                "SELECT COUNT(*) FROM cutover_rejects WHERE source_table = '{t}' AND level = 'error' AND state = 'open'"
            ),
        )
    };
    let o = &e["outcomes"];
    for (table, written, skipped, merged) in [
        ("users", map("users", 0), map("users", 1), 0),
        ("patients", map("patients", 0), 0, 0),
        ("children", map("children", 0), 0, map("children", 1)),
        (
            "parent_children",
            map("parent_children", 0),
            map("parent_children", 1),
            0,
        ),
        ("consent_grants", map("consent_grants", 0), 0, 0),
        ("screenings", map("screenings", 0), 0, 0),
        ("appointments", map("appointments", 0), 0, 0),
        ("documents", map("documents", 0), 0, 0),
    ] {
        let got = (written, skipped, merged, rejected(table));
        let want = (
            n(&o[table]["written"]),
            n(&o[table]["skipped"]),
            n(&o[table]["merged"]),
            n(&o[table]["rejected"]),
        );
        assert_eq!(got, want, "{table}: (written, skipped, merged, rejected)");
        assert_eq!(
            got.0 + got.1 + got.2 + got.3,
            n(&m["tables"][table]),
            "{table}: the books balance"
        );
    }
    let w = &e["warnings"];
    let warned = |rule: &str| {
        scalar(
            p,
            &format!("SELECT COUNT(*) FROM cutover_rejects WHERE level = 'warning' AND rule = '{rule}'"),
        )
    };
    assert_eq!(warned("dangling_link"), n(&w["dangling_links"]));
    assert_eq!(warned("matches_source"), n(&w["sha256_mismatches"]));
    assert_eq!(
        scalar(
            p,
            "SELECT COUNT(*) FROM cutover_rejects r JOIN cutover_ledger l ON l.version = r.version WHERE r.level = 'warning' AND r.rule = 'lookup' AND l.name = 'clinician_views'"
        ),
        n(&w["missing_clinician"])
    );
    assert_eq!(
        scalar(
            p,
            "SELECT COUNT(*) FROM cutover_rejects WHERE level = 'warning' AND rule = 'phone' AND source_table = 'patients'"
        ),
        n(&w["bad_phones"])
    );
    // orphan grants: rejected with a reason that says the patient does not exist
    assert_eq!(
        scalar(
            p,
            "SELECT COUNT(*) FROM cutover_rejects WHERE source_table = 'consent_grants' AND rule = 'lookup' AND reason LIKE '%no patients with legacy id%'"
        ),
        n(&m["anomalies"]["orphan_grants"])
    );
    // exactly one primary caregiver per person with views
    assert_eq!(
        p.target_sql("SELECT person_id FROM parent_child_views GROUP BY person_id HAVING SUM(CASE WHEN is_primary_caregiver THEN 1 ELSE 0 END) <> 1"),
        ""
    );
    // needs_review exactly where discrepancies are open
    assert_eq!(
        scalar(p, "SELECT COUNT(*) FROM persons WHERE needs_review"),
        scalar(
            p,
            "SELECT COUNT(DISTINCT entity_id) FROM cutover_discrepancies WHERE state = 'open'"
        )
    );
}

fn whole_project_matches_the_manifest(t: Target) {
    let (p, m) = clinic(t, 1500, 7);
    let o = p.run(&["up"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let states = p.states();
    assert_eq!(states.len(), 11, "{states:?}");
    assert!(states.iter().all(|(_, s)| s == "applied"), "{states:?}");
    check_against_manifest(&p, &m);
    assert_books(&p);
    // `cutover verify` agrees: accounting, expectations, checksums, foreign keys, documents
    let v = p.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["checks"].as_array().unwrap().len() > 30);
    // document bytes in the store hash to their row's sha256
    let rows = p.target_sql("SELECT storage_key || '|' || sha256 || '|' || size_bytes FROM documents");
    assert_eq!(rows.lines().count() as i64, n(&m["expected"]["documents"]));
    for line in rows.lines() {
        let parts: Vec<&str> = line.split('|').collect();
        let bytes = std::fs::read(p.path().join("document-store").join(parts[0])).unwrap();
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, parts[1]);
        assert_eq!(bytes.len().to_string(), parts[2]);
    }
    // a rollback of everything, then a second run, gives the same content (ids aside)
    let content = |p: &Clinic| {
        p.target_sql(&format!(
            "SELECT COALESCE(legacy_patient_id, '') || '/' || COALESCE(legacy_child_id, '') || '/' || COALESCE(first_name, '') || '/' || COALESCE({}, '') || '/' || gender || '/' || allergies FROM persons ORDER BY 1",
            p.text("date_of_birth")
        ))
    };
    let before = content(&p);
    p.ok(&["down", "--all", "--yes"]);
    assert_eq!(p.user_tables(), Vec::<String>::new());
    p.ok(&["up"]);
    assert_eq!(content(&p), before);
    check_against_manifest(&p, &m);
    assert_books(&p);
}
targets!(whole_project_matches_the_manifest);

fn review_split_and_waiting_rows(t: Target) {
    let (p, _m) = clinic(t, 800, 11);
    p.ok(&["up"]);
    // --- a split: "not the same person"
    let queue = p.json(&["review", "list", "--open"]);
    let d = queue
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["field"] == "date_of_birth")
        .expect("a date-of-birth discrepancy")
        .clone();
    for k in ["id", "field", "values", "state"] {
        assert!(!d[k].is_null(), "{k} in {d}");
    }
    let (id, child, old) = (
        d["id"].as_i64().unwrap(),
        d["keys"][1].as_str().unwrap().to_string(),
        d["entity_id"].as_str().unwrap().to_string(),
    );
    let persons = p.count("persons");
    let child_screenings = scalar(
        &p,
        &format!("SELECT COUNT(*) FROM screenings s WHERE s.person_id = '{old}'"),
    );
    p.ok(&[
        "review",
        "decide",
        &id.to_string(),
        "--take",
        "split",
        "--note",
        "different birth dates on the records",
    ]);
    assert_eq!(p.count("persons"), persons + 1);
    let new = p.target_sql(&format!("SELECT id FROM persons WHERE legacy_child_id = '{child}'"));
    assert!(!new.is_empty() && new != old);
    assert_eq!(
        p.target_sql(&format!(
            "SELECT person_id FROM parent_child_views WHERE legacy_child_id = '{child}'"
        )),
        new,
        "the child's view moved"
    );
    let moved = scalar(
        &p,
        &format!("SELECT COUNT(*) FROM screenings WHERE person_id = '{new}'"),
    );
    assert_eq!(
        moved
            + scalar(
                &p,
                &format!("SELECT COUNT(*) FROM screenings WHERE person_id = '{old}'")
            ),
        child_screenings
    );
    let after = p.json(&["review", "list"]);
    for other in after
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["keys"][1] == child.as_str() && x["id"] != id)
    {
        assert_eq!(other["state"], "void", "{other}");
    }
    let decided = after
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(decided["state"], "decided");
    assert_eq!(decided["note"], "different birth dates on the records");
    // deciding it again changes nothing
    p.ok(&["review", "decide", &id.to_string(), "--take", "split"]);
    assert_eq!(p.count("persons"), persons + 1);
    // take b on another: applied to the target, and needs_review clears with the last one
    let d2 = p
        .json(&["review", "list", "--open"])
        .as_array()
        .expect("review list")
        .first()
        .cloned()
        .expect("an open discrepancy left to take b on");
    let entity = d2["entity_id"].as_str().expect("entity_id").to_string();
    let field = d2["field"].as_str().expect("field").to_string();
    let open_of_entity: Vec<J> = p
        .json(&["review", "list", "--open"])
        .as_array()
        .expect("review list")
        .iter()
        .filter(|x| x["entity_id"] == entity.as_str())
        .cloned()
        .collect();
    assert!(!open_of_entity.is_empty());
    for open in &open_of_entity {
        p.ok(&["review", "decide", &open["id"].to_string(), "--take", "b"]);
    }
    let v = p.target_sql(&format!(
        "SELECT {} FROM persons WHERE id = '{entity}'",
        p.text(&format!("\"{field}\""))
    ));
    assert_eq!(v, d2["values"][1].as_str().expect("value b"));
    assert_eq!(
        scalar(
            &p,
            &format!("SELECT COUNT(*) FROM persons WHERE id = '{entity}' AND needs_review")
        ),
        0
    );
    let history = p.json(&["history"]);
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "review_decided" && e["detail"]["decision"] == "split")
    );

    // --- a rejected patient whose children, grants and screenings wait, then go through
    let rejects = p.json(&["rejects", "list", "--open"]);
    let items = rejects.as_array().unwrap();
    let waiting_on = |key: &str| {
        items
            .iter()
            .filter(|r| r["waits_for"] == format!("patients {key}").as_str())
            .count()
    };
    let patient = items
        .iter()
        .filter(|r| r["source_table"] == "patients" && r["field"] == "date_of_birth")
        .max_by_key(|r| waiting_on(r["source_key"].as_str().unwrap()))
        .expect("a patient rejected for its date of birth")
        .clone();
    let key = patient["source_key"].as_str().unwrap().to_string();
    let waiters = waiting_on(&key);
    assert!(waiters > 0, "patient {key} has rows waiting for it");
    assert!(
        patient["reason"].as_str().unwrap().contains("date_of_birth"),
        "{patient}"
    );
    let rid = patient["id"].to_string();
    p.ok(&["rejects", "fix", &rid, "date_of_birth=2015-06-01"]);
    let r = p.json(&["rejects", "retry", &rid]);
    assert!(
        r["written"].as_array().unwrap().len() > waiters,
        "the patient and what waited for it: {r}"
    );
    let person = p.target_sql(&format!(
        "SELECT id || '|' || {} FROM persons WHERE legacy_patient_id = '{key}'",
        p.text("date_of_birth")
    ));
    assert!(person.ends_with("|2015-06-01"), "{person}");
    let person_id = person.split('|').next().unwrap().to_string();
    assert_eq!(
        scalar(
            &p,
            &format!("SELECT COUNT(*) FROM clinician_patient_views WHERE person_id = '{person_id}'")
        ),
        1
    );
    let still = p.json(&["rejects", "list", "--open"]);
    assert_eq!(
        still
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["waits_for"] == format!("patients {key}").as_str())
            .count(),
        0
    );
    let v = p.json(&["verify"]);
    assert_eq!(v["ok"], true, "after decisions and a retry: {v}");
    // a tampered document is caught: exactly the documents check fails, and it names the key
    let key = p.target_sql("SELECT storage_key FROM documents ORDER BY legacy_id LIMIT 1");
    let key = key.trim().to_string();
    assert!(!key.is_empty());
    std::fs::write(p.path().join("document-store").join(&key), b"tampered").unwrap();
    let o = p.run(&["verify", "--json"]);
    assert_eq!(o.status.code(), Some(5), "{}", support::stdout(&o));
    let report: J = serde_json::from_str(support::stdout(&o).trim()).expect("verify --json");
    assert_eq!(report["ok"], false, "{report}");
    let failed: Vec<&J> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "exactly one check fails: {failed:?}");
    assert_eq!(failed[0]["kind"], "documents", "{failed:?}");
    let detail = failed[0]["detail"].as_str().expect("detail");
    assert!(detail.contains("1 mismatching") && detail.contains(&key), "{detail}");
    // the books still balance for every step, on the tables themselves
    assert_books(&p);
}
targets!(review_split_and_waiting_rows);

/// What rolling back `version` undoes, as the console's dialog is told (the engine's preview).
fn rollback_preview(p: &Clinic, version: &str) -> cutover::engine::ops::snapshot::RollbackPreview {
    let project = cutover::engine::project::Project::load(p.path(), &Default::default()).expect("project");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(cutover::engine::ops::rollback::rollback_preview(&project, version))
        .expect("preview")
}

fn verify_report(p: &Clinic) -> (i32, J) {
    let o = p.run(&["verify", "--json"]);
    let report: J = serde_json::from_str(support::stdout(&o).trim())
        .unwrap_or_else(|e| panic!("{e}: {}{}", support::stdout(&o), stderr(&o)));
    (o.status.code().unwrap_or(-1), report)
}

fn report_check<'a>(report: &'a J, name: &str) -> &'a J {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.contains(name)))
        .unwrap_or_else(|| panic!("no check named {name} in {report}"))
}

/// Issue 11, items 2 and 8 on SQLite: the rollback preview of persons after review decisions,
/// a note and a fixed reject counts every one of them (held against the target's tables) and
/// refuses the step alone while later steps are applied, offering "to here"; a legitimate reject
/// fix passes verify as a fix (and a tampered target still fails); after the rollback, verify
/// reports the reverted steps as not checked and proves each table is back as it was.
#[test]
fn rollback_preview_and_verify_know_operator_actions() {
    let (p, _m) = clinic(Target::Sqlite, 300, 7);
    p.ok(&["up"]);
    let persons_version = "20250101T090200";
    let accounts_version = "20250101T090100";
    // --- operator actions: two decisions (one with a note), a fixed patient, a fixed account
    let open = p.json(&["review", "list", "--open"]);
    let ids: Vec<i64> = open
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_i64())
        .take(2)
        .collect();
    assert_eq!(ids.len(), 2, "two open discrepancies to decide: {open}");
    p.ok(&[
        "review",
        "decide",
        &ids[0].to_string(),
        "--take",
        "b",
        "--note",
        "checked with the parent",
    ]);
    p.ok(&["review", "decide", &ids[1].to_string(), "--take", "a"]);
    let rejects = p.json(&["rejects", "list", "--open"]);
    let first = |table: &str, rule: &str| {
        rejects
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["source_table"] == table && r["rule"] == rule)
            .unwrap_or_else(|| panic!("an open {table} reject by {rule}: {rejects}"))
            .clone()
    };
    let patient = first("patients", "date");
    let patient_id = patient["id"].as_i64().unwrap().to_string();
    p.ok(&["rejects", "fix", &patient_id, "date_of_birth=2010-01-01"]);
    p.ok(&["rejects", "retry", &patient_id]);
    let user = first("users", "map");
    let user_id = user["id"].as_i64().unwrap().to_string();
    p.ok(&["rejects", "fix", &user_id, "role=parent"]);
    p.ok(&["rejects", "retry", &user_id]);

    // --- item 8: the fixed account is written; verify passes and says why
    let (code, report) = verify_report(&p);
    assert_eq!(code, 0, "{report}");
    let emails = report_check(&report, "accounts = users");
    assert_eq!(emails["ok"], true, "{emails}");
    let explained = emails["explained"]
        .as_str()
        .unwrap_or_else(|| panic!("explained: {emails}"));
    assert!(
        explained.contains("1 row written after a fix") && explained.contains(&format!("reject {user_id} users")),
        "{explained}"
    );
    let checksum = report_check(&report, "account emails");
    assert!(checksum["explained"].is_string(), "{checksum}");
    let human = p.ok(&["verify"]);
    assert!(human.contains("fixed  expect"), "{human}");
    // A second account nobody fixed is not explained by the one fix: the check can still fail.
    p.target_sql(
        "INSERT INTO accounts (id, legacy_user_id, email, full_name, role, password_hash, phone, created_at) \
         VALUES ('00000000-0000-0000-0000-00000000dead', 'u99999999', 'intruder@example.org', 'x', 'admin', NULL, NULL, '2020-01-01')",
    );
    let (code, tampered) = verify_report(&p);
    assert_eq!(code, 5, "{tampered}");
    assert_eq!(report_check(&tampered, "accounts = users")["ok"], false);
    assert_eq!(report_check(&tampered, "account emails")["ok"], false);
    p.target_sql("DELETE FROM accounts WHERE legacy_user_id = 'u99999999'");

    // --- item 2: the preview of persons, every consequence held against the target
    let preview = rollback_preview(&p, persons_version);
    let later: Vec<String> = preview.later.clone();
    assert_eq!(later.len(), 8, "{later:?}");
    assert!(later[0].starts_with("20250101T091000"), "newest first: {later:?}");
    let refused = preview.refused.clone().expect("refused while later steps are applied");
    assert!(
        refused.contains("8 later steps") && refused.contains("20250101T090300_child_views"),
        "{refused}"
    );
    assert_eq!(
        preview.to_here,
        Some(cutover::engine::protocol::DownTarget::To(accounts_version.into()))
    );
    assert_eq!(preview.steps.len(), 9, "the later steps and persons");
    let persons = preview.steps.last().unwrap();
    assert_eq!(persons.version, persons_version);
    let db = |sql: &str| scalar(&p, sql) as u64;
    let v = format!("version = '{persons_version}'");
    assert_eq!(persons.decided_discrepancies, 2);
    assert_eq!(
        persons.decided_discrepancies,
        db(&format!(
            "SELECT COUNT(*) FROM cutover_discrepancies WHERE {v} AND state = 'decided'"
        ))
    );
    assert_eq!(persons.notes, 1);
    assert_eq!(
        persons.notes,
        db(&format!(
            "SELECT COUNT(*) FROM cutover_discrepancies WHERE {v} AND note IS NOT NULL"
        ))
    );
    assert_eq!(
        persons.open_discrepancies + persons.decided_discrepancies + persons.void_discrepancies,
        db(&format!("SELECT COUNT(*) FROM cutover_discrepancies WHERE {v}"))
    );
    assert_eq!(persons.fixed_rejects, 1, "the fixed patient");
    assert_eq!(
        persons.open_rejects,
        db(&format!(
            "SELECT COUNT(*) FROM cutover_rejects WHERE {v} AND level = 'error' AND state = 'open'"
        ))
    );
    assert_eq!(
        persons.rows_deleted,
        p.count("persons") as u64,
        "every person came from the step"
    );
    assert_eq!(
        persons.id_map_entries,
        db(&format!("SELECT COUNT(*) FROM cutover_id_map WHERE {v}"))
    );
    let documents = &preview.steps[0];
    let stored = walk_files(&p.path().join("document-store"));
    assert_eq!(
        documents.files, stored,
        "every stored file is named only by the documents step's rows"
    );
    let lines = preview.lines.join("\n");
    assert!(lines.contains("wipe 2 review decisions and 1 note"), "{lines}");
    assert!(lines.contains("remove 1 fixed reject:"), "{lines}");

    // --- roll back to here; verify runs by itself and proves each table is back
    let out = p.ok(&["down", "--yes", "--to", accounts_version]);
    assert!(out.contains("wipe 2 review decisions"), "{out}");
    assert!(
        out.contains("ok    rollback 20250101T090200_persons: persons as before it ran"),
        "{out}"
    );
    assert!(out.contains("verified after the rollback"), "{out}");
    assert_eq!(
        walk_files(&p.path().join("document-store")),
        0,
        "the rollback removed the step's files"
    );
    let (code, report) = verify_report(&p);
    assert_eq!(code, 0, "{report}");
    let every_patient = report_check(&report, "every patient is a person");
    assert_eq!(every_patient["ok"], true);
    assert!(
        every_patient["not_checked"]
            .as_str()
            .is_some_and(|w| w.starts_with("reverted: not checked")),
        "{every_patient}"
    );
    let back = report_check(&report, "rollback 20250101T090200_persons");
    assert_eq!(back["ok"], true, "{back}");
    assert_eq!(back["kind"], "rollback");
    // A row left behind is caught: the rolled-back table no longer matches its checksum.
    p.target_sql(&format!(
        "INSERT INTO persons (id, first_name, needs_review) VALUES ('00000000-0000-0000-0000-00000000beef', 'left behind', {})",
        0
    ));
    let (code, after) = verify_report(&p);
    assert_eq!(code, 5, "{after}");
    let back = report_check(&after, "rollback 20250101T090200_persons");
    assert_eq!(back["ok"], false, "{back}");
    assert!(back["detail"].as_str().unwrap().contains("DIFFERS"), "{back}");
}

fn walk_files(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| if e.path().is_dir() { walk_files(&e.path()) } else { 1 })
        .sum()
}
