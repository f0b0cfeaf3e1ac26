//! Collection targets (`[target] collection = "..."`) on SQLite and a real PostgreSQL target:
//! the documents as they land in the target (nested paths, permissions rendered per document,
//! timestamps), duplicates by a natural-key path, an oversize document rejected with its size,
//! the books, the indexes, dry run, rollback, `rejects retry`, a kill mid-step, and verify's
//! order-independent collection checksum.

mod common;
#[macro_use]
mod support;

use serde_json::{Value as J, json};
use support::{Backend, TestProject, stderr, stdout};

const VERIFY_FAILED: i32 = 5;
const PATIENTS: &str = "20250101T090100";
const APPOINTMENTS: &str = "20250101T090200";
const LATE: &str = "20250101T090300";

const PATIENTS_STEP: &str = r#"kind = "data"
[source]
table = "patients"
key = "id"

[target]
collection = "patients"
natural_key = ["mrn"]
on_duplicate = "skip"
permissions = ['read("user:{_id}")']
indexes = ["name.last"]

[id_map]
map = "patients"

[[fields]]
target = "mrn"
source = "mrn"
transforms = ["trim", "upper"]

[[fields]]
target = "name.first"
source = "first_name"

[[fields]]
target = "name.last"
source = "last_name"
"#;

/// Appointments `id < 20` (the late ones are another step's, into the same collection).
fn appointments_step(filter: &str) -> String {
    format!(
        r#"kind = "data"
[source]
query = "SELECT * FROM appointments WHERE {filter}"
key = "id"
name = "appointments"

[target]
collection = "appointments"
natural_key = ["legacy_id"]
on_duplicate = "skip"
permissions = ['read("user:{{patient_id}}")', 'read("team:{{team}}")', 'write("user:{{clinician}}")']
indexes = ["schedule.starts_at", "patient_id"]
max_document_bytes = 300

[id_map]
map = "appointments"

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "patient_id"
source = "patient_id"
transforms = [{{ lookup = {{ map = "patients" }} }}]

[[fields]]
target = "schedule.starts_at"
source = "starts_at"

[[fields]]
target = "team"
source = "team"

[[fields]]
target = "clinician"
source = "clinician"

[[fields]]
target = "notes"
source = "notes"

[[fields]]
target = "_created_at"
source = "created_at"
"#
    )
}

/// Patients 1..3 (3 repeats 1's MRN), appointments 10..13 and late ones 20..21: 11 has no
/// patient, 12 is too large a document; 13's `created_at` is no time (PostgreSQL's timestamptz
/// refuses it, SQLite's TEXT takes it).
fn project(b: Backend) -> TestProject {
    let p = TestProject::new(b);
    let long = "x".repeat(400);
    p.source_sql(&format!(
        "CREATE TABLE patients (id INTEGER PRIMARY KEY, mrn TEXT, first_name TEXT, last_name TEXT);
         INSERT INTO patients VALUES (1, ' m1 ', 'Ann', 'Lee'), (2, 'M2', 'Bob', 'Ray'), (3, 'M1', 'Ann', 'Lee-Again');
         CREATE TABLE appointments (id INTEGER PRIMARY KEY, patient_id INTEGER, starts_at TEXT, team TEXT, clinician TEXT, notes TEXT, created_at TEXT);
         INSERT INTO appointments VALUES
           (10, 1, '2025-03-01T09:00:00Z', 'cardio', 'c7', 'first visit', '2024-12-01T08:00:00Z'),
           (11, NULL, '2025-03-02T10:00:00Z', 'cardio', 'c7', 'walk-in', NULL),
           (12, 2, '2025-03-03T11:00:00Z', 'derm', 'c9', '{long}', NULL),
           (13, 2, '2025-03-04T12:00:00Z', 'derm', 'c9', 'follow-up', 'soon'),
           (20, 2, '2025-04-01T09:00:00Z', 'derm', 'c9', 'late one', NULL),
           (21, 1, '2025-04-02T09:00:00Z', 'cardio', 'c7', 'late two', NULL);"
    ));
    p.data_step(&format!("{PATIENTS}_patients"), PATIENTS_STEP);
    p.data_step(&format!("{APPOINTMENTS}_appointments"), &appointments_step("id < 20"));
    p.data_step(&format!("{LATE}_late_appointments"), &appointments_step("id >= 20"));
    p
}

/// One document of a collection by its `legacy_id` / `mrn`: `(_id, data, _permissions,
/// _created_at, _key)`, the JSON parsed (PostgreSQL prints jsonb with spaces, SQLite as stored).
fn document(p: &TestProject, collection: &str, path: &str, value: &str) -> Option<(String, J, J, String, String)> {
    let sql = match p.backend {
        Backend::Sqlite => format!(
            "SELECT _id, data, _permissions, _created_at, coalesce(_key, 'NULL') FROM {collection} WHERE CAST(json_extract(data, '$.{path}') AS TEXT) = '{value}'"
        ),
        Backend::Postgres => format!(
            "SELECT _id, data, _permissions, _created_at, coalesce(_key, 'NULL') FROM {collection} WHERE data->>'{path}' = '{value}'"
        ),
    };
    let out = p.target_sql(&sql);
    let line = out.lines().next()?;
    let cols: Vec<&str> = line.splitn(5, '|').collect();
    assert_eq!(cols.len(), 5, "{line}");
    Some((
        cols[0].to_string(),
        serde_json::from_str(cols[1]).unwrap_or_else(|e| panic!("data is not JSON ({e}): {}", cols[1])),
        serde_json::from_str(cols[2]).unwrap_or_else(|e| panic!("_permissions is not JSON ({e}): {}", cols[2])),
        cols[3].to_string(),
        cols[4].to_string(),
    ))
}

fn counts(p: &TestProject, version: &str) -> J {
    let s = p.json(&["status"]);
    s["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["version"] == version)
        .unwrap_or_else(|| panic!("no {version}: {s}"))["counts"]
        .clone()
}

fn verify_json(p: &TestProject) -> (i32, J) {
    let o = p.run(&["verify", "--json"]);
    let out = stdout(&o);
    let v: J = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\n{}", stderr(&o)));
    (o.status.code().unwrap_or(-1), v)
}

fn check<'a>(report: &'a J, name: &str) -> &'a J {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check '{name}' in {report:#}"))
}

fn indexes(p: &TestProject, table: &str) -> Vec<String> {
    let sql = match p.backend {
        Backend::Sqlite => {
            format!("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '{table}' ORDER BY name")
        }
        Backend::Postgres => format!("SELECT indexname FROM pg_indexes WHERE tablename = '{table}' ORDER BY indexname"),
    };
    p.target_sql(&sql).lines().map(|l| l.trim().to_string()).collect()
}

fn rejects(p: &TestProject) -> Vec<J> {
    p.json(&["rejects", "list", "--open"])
        .as_array()
        .cloned()
        .expect("a list of rejects")
}

/// 5213 -> "5 213", as reasons write sizes.
fn spaced(n: usize) -> String {
    let d = n.to_string();
    d.chars()
        .enumerate()
        .flat_map(|(i, c)| {
            (i > 0 && (d.len() - i).is_multiple_of(3))
                .then_some(' ')
                .into_iter()
                .chain([c])
        })
        .collect()
}

fn documents_migrate_with_their_paths_permissions_and_timestamps(b: Backend) {
    let p = project(b);
    let o = p.run(&["up", "--continue-on-error"]);
    assert!(o.status.success(), "up: {}\n{}", stdout(&o), stderr(&o));

    // Patients: the second M1 is a duplicate by the natural-key path, skipped.
    assert_eq!(p.count("patients"), 2);
    let c = counts(&p, PATIENTS);
    assert_eq!(
        (c["source"].as_u64(), c["written"].as_u64(), c["skipped"].as_u64()),
        (Some(3), Some(2), Some(1)),
        "{c}"
    );
    let (ann_id, ann, ann_perms, _, ann_key) = document(&p, "patients", "mrn", "M1").expect("M1");
    assert_eq!(ann, json!({"mrn": "M1", "name": {"first": "Ann", "last": "Lee"}}));
    assert_eq!(
        ann_perms,
        json!([format!("read(\"user:{ann_id}\")")]),
        "{{_id}} is the document's id"
    );
    assert_eq!(ann_key, "M1");
    assert_eq!(ann_id.len(), 36, "a uuid: {ann_id}");
    let (bob_id, ..) = document(&p, "patients", "mrn", "M2").expect("M2");

    // Appointment 10: nested path, the patient's document id through the ID map, all three
    // permissions, the source's creation time.
    let (id10, doc10, perms10, created10, key10) = document(&p, "appointments", "legacy_id", "10").expect("10");
    assert_eq!(
        doc10,
        json!({"legacy_id": 10, "patient_id": ann_id, "schedule": {"starts_at": "2025-03-01T09:00:00Z"},
               "team": "cardio", "clinician": "c7", "notes": "first visit"})
    );
    assert_eq!(
        perms10,
        json!([
            format!("read(\"user:{ann_id}\")"),
            "read(\"team:cardio\")",
            "write(\"user:c7\")"
        ])
    );
    assert!(created10.starts_with("2024-12-01"), "{created10}");
    assert_eq!(key10, "10");
    assert_ne!(id10, ann_id);
    // Appointment 11 has no patient: its `user:` read permission is left out; its creation
    // time is the time it was written.
    let (_, doc11, perms11, created11, _) = document(&p, "appointments", "legacy_id", "11").expect("11");
    assert_eq!(doc11["patient_id"], J::Null);
    assert_eq!(perms11, json!(["read(\"team:cardio\")", "write(\"user:c7\")"]));
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(created11.starts_with(&today), "{created11} is not today ({today})");
    let updated11 = p.target_sql(&format!(
        "SELECT _updated_at FROM appointments WHERE _id = '{}'",
        document(&p, "appointments", "legacy_id", "11").unwrap().0
    ));
    assert!(updated11.starts_with(&today), "{updated11}");

    // Appointment 12 is over 300 bytes: rejected with its size.
    assert!(document(&p, "appointments", "legacy_id", "12").is_none());
    let expected12 = json!({"legacy_id": 12, "patient_id": bob_id, "schedule": {"starts_at": "2025-03-03T11:00:00Z"},
                            "team": "derm", "clinician": "c9", "notes": "x".repeat(400)});
    let size = serde_json::to_string(&expected12).unwrap().len();
    let rs = rejects(&p);
    let r12 = rs
        .iter()
        .find(|r| r["source_key"] == "12")
        .unwrap_or_else(|| panic!("no reject for 12: {rs:?}"));
    assert_eq!(r12["rule"], "document_size", "{r12}");
    assert_eq!(
        r12["reason"],
        format!("document is {} bytes, over the collection's limit of 300", spaced(size)),
        "{r12}"
    );

    // Appointment 13's creation time is no time: PostgreSQL refuses the document, and
    // --continue-on-error isolates it like a row; SQLite's TEXT column takes it.
    let c = counts(&p, APPOINTMENTS);
    match b {
        Backend::Postgres => {
            assert!(document(&p, "appointments", "legacy_id", "13").is_none());
            let r13 = rs.iter().find(|r| r["source_key"] == "13").expect("13 refused");
            assert_eq!(r13["rule"], "target", "{r13}");
            assert_eq!(
                (c["written"].as_u64(), c["rejected"].as_u64()),
                (Some(2), Some(2)),
                "{c}"
            );
        }
        Backend::Sqlite => {
            assert!(document(&p, "appointments", "legacy_id", "13").is_some());
            assert_eq!(
                (c["written"].as_u64(), c["rejected"].as_u64()),
                (Some(3), Some(1)),
                "{c}"
            );
        }
    }
    // The books: source = written + skipped + rejected, and the collection holds exactly what
    // the two appointment steps wrote.
    let late = counts(&p, LATE);
    for c in [&c, &late, &counts(&p, PATIENTS)] {
        assert_eq!(
            c["source"].as_u64().unwrap(),
            c["written"].as_u64().unwrap() + c["skipped"].as_u64().unwrap() + c["rejected"].as_u64().unwrap(),
            "{c}"
        );
    }
    assert_eq!(
        p.count("appointments") as u64,
        c["written"].as_u64().unwrap() + late["written"].as_u64().unwrap()
    );

    // The table's indexes: the primary key, `_key`, and one per declared path.
    let idx = indexes(&p, "appointments");
    for name in ["appointments_idx_schedule_starts_at", "appointments_idx_patient_id"] {
        assert!(idx.iter().any(|i| i == name), "no {name} in {idx:?}");
    }
    assert!(indexes(&p, "patients").iter().any(|i| i == "patients_idx_name_last"));
    if b == Backend::Postgres {
        let types = p.target_sql(
            "SELECT column_name || ' ' || data_type FROM information_schema.columns WHERE table_name = 'appointments' ORDER BY ordinal_position",
        );
        assert_eq!(
            types.lines().collect::<Vec<_>>(),
            [
                "_id uuid",
                "data jsonb",
                "_permissions jsonb",
                "_created_at timestamp with time zone",
                "_updated_at timestamp with time zone",
                "_key text"
            ]
        );
        // The index is used by a query on the path's text value.
        let def =
            p.target_sql("SELECT indexdef FROM pg_indexes WHERE indexname = 'appointments_idx_schedule_starts_at'");
        assert!(def.contains("(data #>> '{schedule,starts_at}'::text[])"), "{def}");
    }

    // verify: one check per collection, passing.
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "{r:#}");
    let ca = check(&r, "collection appointments");
    assert_eq!(ca["kind"], "collection");
    assert_eq!(
        ca["detail"],
        format!(
            "{} documents, checksum matches the one recorded when {LATE} applied",
            p.count("appointments")
        ),
        "the last step writing the collection recorded it: {ca}"
    );
    assert_eq!(check(&r, "collection patients")["ok"], true);
}
both!(documents_migrate_with_their_paths_permissions_and_timestamps);

/// verify notices a changed document, a removed one, and does not care about row order.
fn verify_catches_changed_documents_but_not_row_order(b: Backend) {
    let p = project(b);
    p.ok(&["up", "--continue-on-error"]);
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "{r:#}");
    let n = p.count("appointments");

    // Every document deleted and inserted again in the reverse order: the same collection.
    let reorder = match b {
        Backend::Sqlite => {
            "CREATE TEMP TABLE t AS SELECT * FROM appointments; DELETE FROM appointments; INSERT INTO appointments SELECT * FROM t ORDER BY _id DESC;"
        }
        Backend::Postgres => {
            "CREATE TEMP TABLE t AS SELECT * FROM appointments; DELETE FROM appointments; INSERT INTO appointments SELECT * FROM t ORDER BY _id DESC; VACUUM FULL appointments;"
        }
    };
    p.target_sql(reorder);
    let first_before = p.target_sql("SELECT _id FROM appointments LIMIT 1");
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "reordered rows still match: {r:#}");
    assert_eq!(check(&r, "collection appointments")["ok"], true);
    assert!(!first_before.is_empty());

    // One document's data changed with SQL.
    let change = match b {
        Backend::Sqlite => {
            "UPDATE appointments SET data = json_set(data, '$.team', 'onco') WHERE json_extract(data, '$.legacy_id') = 10"
        }
        Backend::Postgres => {
            "UPDATE appointments SET data = jsonb_set(data, '{team}', '\"onco\"') WHERE data->>'legacy_id' = '10'"
        }
    };
    p.target_sql(change);
    let (code, r) = verify_json(&p);
    assert_eq!(code, VERIFY_FAILED, "{r:#}");
    let ca = check(&r, "collection appointments");
    assert_eq!(ca["ok"], false, "{ca}");
    assert_eq!(
        ca["detail"],
        format!(
            "{n} documents, as recorded when {LATE} applied, but the checksum differs: documents were changed since"
        ),
        "{ca}"
    );
    assert_eq!(
        check(&r, "collection patients")["ok"],
        true,
        "only the changed collection fails"
    );

    // One document removed.
    let remove = match b {
        Backend::Sqlite => "DELETE FROM appointments WHERE json_extract(data, '$.legacy_id') = 11",
        Backend::Postgres => "DELETE FROM appointments WHERE data->>'legacy_id' = '11'",
    };
    p.target_sql(remove);
    let (_, r) = verify_json(&p);
    let ca = check(&r, "collection appointments");
    assert_eq!(
        ca["detail"],
        format!(
            "{} documents, 1 fewer than recorded when {LATE} applied ({n}): documents were removed since",
            n - 1
        ),
        "{ca}"
    );
}
both!(verify_catches_changed_documents_but_not_row_order);

/// `up --dry-run` and `assess` write nothing: not a document, not even the collection's table
/// (created inside the dry run's transaction, rolled back with it).
fn dry_run_and_assess_leave_nothing(b: Backend) {
    let p = project(b);
    let o = p.run(&["up", "--dry-run", "--continue-on-error"]);
    assert!(o.status.success(), "dry run: {}\n{}", stdout(&o), stderr(&o));
    assert_eq!(p.user_tables(), Vec::<String>::new(), "the dry run left tables behind");
    let a = p.json(&["assess"]);
    let steps = a["steps"].as_array().expect("steps");
    let appts = steps
        .iter()
        .find(|s| s["version"] == APPOINTMENTS)
        .unwrap_or_else(|| panic!("{a:#}"));
    assert_eq!(appts["rejects_by_rule"]["document_size"], 1, "{appts}");
    assert_eq!(p.user_tables(), Vec::<String>::new(), "assess left tables behind");
    // And `up` then writes what the dry run announced.
    p.ok(&["up", "--continue-on-error"]);
    assert_eq!(p.user_tables(), vec!["appointments", "patients"]);
}
both!(dry_run_and_assess_leave_nothing);

/// `down` deletes exactly the documents a step wrote: the late step's, then everything; the
/// table stays, empty, with its indexes, and verify's rollback checks pass.
fn down_deletes_exactly_the_steps_documents(b: Backend) {
    let p = project(b);
    p.ok(&["up", "--continue-on-error"]);
    let before_late: Vec<String> = {
        let sql = "SELECT _id FROM appointments ORDER BY _id";
        p.target_sql(sql).lines().map(str::to_string).collect()
    };
    assert_eq!(p.count("appointments") as usize, before_late.len());
    p.ok(&["down", "--yes", "--to", APPOINTMENTS]);
    // The late step wrote 20 and 21; only those are gone.
    assert!(document(&p, "appointments", "legacy_id", "20").is_none());
    assert!(document(&p, "appointments", "legacy_id", "21").is_none());
    assert!(document(&p, "appointments", "legacy_id", "10").is_some());
    assert_eq!(p.count("appointments") as usize, before_late.len() - 2);
    // The earlier step's record is the one compared now, and it matches.
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "{r:#}");
    let ca = check(&r, "collection appointments");
    assert!(
        ca["detail"].as_str().unwrap().ends_with(&format!(
            "checksum matches the one recorded when {APPOINTMENTS} applied"
        )),
        "{ca}"
    );

    p.ok(&["down", "--all", "--yes"]);
    assert_eq!(p.count("appointments"), 0);
    assert_eq!(p.count("patients"), 0);
    assert_eq!(p.user_tables(), vec!["appointments", "patients"], "the tables stay");
    assert!(
        indexes(&p, "appointments")
            .iter()
            .any(|i| i == "appointments_idx_patient_id")
    );
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "rollback checks pass on the emptied collections: {r:#}");
    let rollbacks: Vec<&J> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "rollback")
        .collect();
    assert!(!rollbacks.is_empty(), "{r:#}");
    // And up again writes the same documents into the existing tables.
    p.ok(&["up", "--continue-on-error"]);
    assert_eq!(p.count("appointments") as usize, before_late.len());
}
both!(down_deletes_exactly_the_steps_documents);

/// A rejected document fixed and retried lands in the collection, and verify compares the
/// collection with what it holds after the retry.
fn rejects_retry_writes_the_document_and_verify_follows(b: Backend) {
    let p = project(b);
    p.ok(&["up", "--continue-on-error"]);
    let rs = rejects(&p);
    let r12 = rs.iter().find(|r| r["source_key"] == "12").expect("12 rejected");
    let id = r12["id"].to_string();
    p.ok(&["rejects", "fix", &id, "notes=shorter now"]);
    p.ok(&["rejects", "retry", &id]);
    let (_, doc, perms, ..) = document(&p, "appointments", "legacy_id", "12").expect("12 written by the retry");
    assert_eq!(doc["notes"], "shorter now");
    assert_eq!(perms[1], "read(\"team:derm\")", "{perms}");
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(check(&r, "collection appointments")["ok"], true);
}
both!(rejects_retry_writes_the_document_and_verify_follows);

/// A run killed mid-step resumes and writes every document exactly once.
fn killed_run_resumes_exactly_once(b: Backend) {
    let p = TestProject::new(b);
    let n = 20_000;
    p.source_sql(&format!(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) INSERT INTO items SELECT i, 'item ' || i FROM s;"
    ));
    p.data_step(
        "20250101T090100_items",
        r#"kind = "data"
batch_size = 500
[source]
table = "items"
key = "id"
[target]
collection = "items"
natural_key = ["legacy_id"]
permissions = ['read("any")']
[id_map]
map = "items"
[[fields]]
target = "legacy_id"
source = "id"
[[fields]]
target = "label.name"
source = "name"
"#,
    );
    let mut child = p
        .cmd(&["up"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn up");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let k = p
            .try_target_sql("SELECT COUNT(*) FROM items")
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        if k > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "up wrote nothing in 60 s");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    let partial = p.count("items");
    p.ok(&["up"]);
    assert_eq!(p.count("items"), n, "killed after {partial} documents");
    assert_eq!(
        p.target_sql("SELECT COUNT(DISTINCT _key) FROM items").trim(),
        n.to_string()
    );
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(check(&r, "collection items")["target"], n);
}
both!(killed_run_resumes_exactly_once);

/// Mistakes in a collection step are refused when the step loads, naming the problem.
#[test]
fn bad_collection_steps_are_refused_when_they_load() {
    for (target, field, says) in [
        (
            "collection = \"a\"\npermissions = ['read(\"user:{owner\")']",
            "target = \"owner\"",
            "a { without its }",
        ),
        ("collection = \"a\"\ntable = \"b\"", "target = \"owner\"", "give one"),
        ("collection = \"a\"", "target = \"_id\"", "_id"),
        ("collection = \"a b\"", "target = \"owner\"", "letters, digits and _"),
        (
            "collection = \"a\"\nindexes = [\"x'y\"]",
            "target = \"owner\"",
            "[target] indexes",
        ),
        (
            "table = \"t\"\npermissions = ['read(\"any\")']",
            "target = \"owner\"",
            "setting of a collection",
        ),
    ] {
        let p = TestProject::new(Backend::Sqlite);
        p.source_sql("CREATE TABLE s (id INTEGER PRIMARY KEY, owner TEXT); INSERT INTO s VALUES (1, 'u');");
        let column = if target.starts_with("table") {
            "column = \"id\"\n"
        } else {
            ""
        };
        p.data_step(
            "20250101T090100_s",
            &format!(
                "kind = \"data\"\n[source]\ntable = \"s\"\nkey = \"id\"\n[target]\n{target}\n[id_map]\nmap = \"s\"\n{column}[[fields]]\n{field}\nsource = \"owner\"\n"
            ),
        );
        let o = p.run(&["up"]);
        assert!(!o.status.success(), "{target}: up succeeded");
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(all.contains(says), "{target}: {all}");
    }
}

/// An existing table that is not a collection is refused, naming what it lacks.
#[test]
fn a_table_that_is_not_a_collection_is_refused() {
    let p = TestProject::new(Backend::Sqlite);
    p.source_sql("CREATE TABLE s (id INTEGER PRIMARY KEY, owner TEXT); INSERT INTO s VALUES (1, 'u');");
    p.schema_step(
        "20250101T090000_schema",
        "CREATE TABLE things (_id TEXT PRIMARY KEY, data TEXT NOT NULL);\n",
        "DROP TABLE things;\n",
    );
    p.data_step(
        "20250101T090100_things",
        "kind = \"data\"\n[source]\ntable = \"s\"\nkey = \"id\"\n[target]\ncollection = \"things\"\n[id_map]\nmap = \"s\"\n[[fields]]\ntarget = \"owner\"\nsource = \"owner\"\n",
    );
    let o = p.run(&["up"]);
    assert!(!o.status.success());
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        all.contains("the target table things is not a collection: it has no _permissions, _created_at, _updated_at, _key columns"),
        "{all}"
    );
}

/// MariaDB (best effort): the collection table is created with JSON columns, documents are
/// written and verified; JSON-path indexes are skipped with a notice.
#[test]
fn mariadb_writes_a_collection() {
    let mut p = project(Backend::Sqlite);
    let url = common::mysql::MariaDbServer::shared().fresh_db("coll");
    let config = p.path().join("cutover.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("sqlite://target.db", &url)).unwrap();
    p.target_url = url.clone();
    let o = p.run(&["up", "--continue-on-error"]);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "{all}");
    assert!(all.contains("has no index on a JSON path"), "{all}");
    let sql = |q: &str| common::mysql::MariaDbServer::shared().mysql(&url, q);
    assert_eq!(sql("SELECT COUNT(*) FROM patients").trim(), "2");
    let c = counts(&p, APPOINTMENTS);
    // 12 is too large; 13's creation time 'soon' is refused by DATETIME(6), isolated.
    assert_eq!(
        (c["written"].as_u64(), c["rejected"].as_u64()),
        (Some(2), Some(2)),
        "{c}"
    );
    let rules: Vec<J> = rejects(&p).iter().map(|r| r["rule"].clone()).collect();
    assert_eq!(rules, [json!("document_size"), json!("target")]);
    // The patient-less appointment's permissions (unquoted: the client escapes backslashes).
    let perms = sql(
        "SELECT JSON_LENGTH(_permissions), JSON_UNQUOTE(JSON_EXTRACT(_permissions, '$[0]')), JSON_UNQUOTE(JSON_EXTRACT(_permissions, '$[1]')) FROM appointments WHERE JSON_VALUE(data, '$.legacy_id') = '11'",
    );
    assert_eq!(perms.trim(), "2\tread(\"team:cardio\")\twrite(\"user:c7\")");
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(check(&r, "collection appointments")["ok"], true);
}

/// `on_duplicate = "update"` overwrites a document found by its natural-key path, keeping its
/// id and creation time; rolling the step back restores the document as it was.
fn update_overwrites_and_rollback_restores(b: Backend) {
    let p = project(b);
    p.ok(&["up", "--continue-on-error"]);
    let (id_before, doc_before, perms_before, created_before, _) =
        document(&p, "appointments", "legacy_id", "10").expect("10");
    p.source_sql("CREATE TABLE moved (id INTEGER PRIMARY KEY, team TEXT); INSERT INTO moved VALUES (10, 'onco');");
    p.data_step(
        "20250101T090400_moves",
        r#"kind = "data"
[source]
table = "moved"
key = "id"
[target]
collection = "appointments"
natural_key = ["legacy_id"]
on_duplicate = "update"
permissions = ['read("team:{team}")', 'write("user:{_id}")']
[[fields]]
target = "legacy_id"
source = "id"
[[fields]]
target = "team"
source = "team"
"#,
    );
    p.ok(&["up"]);
    let (id, doc, perms, created, _) = document(&p, "appointments", "legacy_id", "10").expect("10 still there");
    assert_eq!(id, id_before, "the document keeps its id");
    assert_eq!(created, created_before, "and its creation time");
    assert_eq!(doc, json!({"legacy_id": 10, "team": "onco"}));
    // `{_id}` names the document's kept id, not the fresh id the row was built with.
    assert_eq!(
        perms,
        json!(["read(\"team:onco\")", format!("write(\"user:{id_before}\")")])
    );
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "{r:#}");
    p.ok(&["down", "--yes", "--to", LATE]);
    let (id, doc, perms, ..) = document(&p, "appointments", "legacy_id", "10").expect("10 restored");
    assert_eq!((id, doc, perms), (id_before, doc_before, perms_before));
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "{r:#}");
}
both!(update_overwrites_and_rollback_restores);

/// `cutover sync` on a collection step: a changed row updates its document in place (same `_id`,
/// same `_created_at`, permissions naming that id), a new row is inserted, a soft-deleted row
/// deletes its document, and verify's collection checksum follows the sync.
fn sync_updates_documents_in_place(b: Backend) {
    let p = TestProject::new(b);
    p.source_sql(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, team TEXT, updated_at TEXT, deleted_at TEXT);
         INSERT INTO people VALUES (1, 'Ann', 'a', '2025-01-01 10:00:00', NULL), (2, 'Bo', NULL, '2025-01-01 10:00:01', NULL);",
    );
    p.data_step(
        "20250101T090100_people",
        r#"kind = "data"
[source]
table = "people"
key = "id"
[target]
collection = "people"
permissions = ['write("user:{_id}")', 'read("team:{team}")']
[id_map]
map = "people"
[sync]
cursor = "updated_at"
deleted = "deleted_at"
[[fields]]
target = "legacy_id"
source = "id"
[[fields]]
target = "name.first"
source = "name"
[[fields]]
target = "team"
source = "team"
"#,
    );
    p.ok(&["up"]);
    let (id1, _, perms1, created1, _) = document(&p, "people", "legacy_id", "1").expect("1");
    assert_eq!(perms1, json!([format!("write(\"user:{id1}\")"), "read(\"team:a\")"]));
    p.source_sql(
        "UPDATE people SET name = 'Annie', team = 'b', updated_at = '2025-01-02 00:00:00' WHERE id = 1;
         UPDATE people SET deleted_at = '2025-01-02', updated_at = '2025-01-02 00:00:01' WHERE id = 2;
         INSERT INTO people VALUES (3, 'Cy', 'a', '2025-01-02 00:00:02', NULL);",
    );
    p.ok(&["sync", "--once"]);
    let (id, doc, perms, created, _) = document(&p, "people", "legacy_id", "1").expect("1 after sync");
    assert_eq!(id, id1, "the document keeps its id");
    assert_eq!(created, created1, "and its creation time");
    assert_eq!(doc, json!({"legacy_id": 1, "name": {"first": "Annie"}, "team": "b"}));
    assert_eq!(perms, json!([format!("write(\"user:{id1}\")"), "read(\"team:b\")"]));
    assert!(document(&p, "people", "legacy_id", "2").is_none(), "2 was soft-deleted");
    let (id3, _, perms3, ..) = document(&p, "people", "legacy_id", "3").expect("3 inserted");
    assert_eq!(perms3, json!([format!("write(\"user:{id3}\")"), "read(\"team:a\")"]));
    let (_, r) = verify_json(&p);
    assert_eq!(check(&r, "collection people")["ok"], true, "{r:#}");
}
both!(sync_updates_documents_in_place);

/// The reject store keeps bytes as their length and an undecodable cell as NULL: `rejects
/// retry` reads such a row from the source again (where it was fixed) and never writes the
/// stand-in; while the source is still bad the reject stays open with its own rule.
#[test]
fn retry_reads_incomplete_rows_from_the_source() {
    let p = TestProject::with_config(Backend::Sqlite, "\n[buckets.b]\nmax_bytes = 10\n");
    p.source_sql(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, note TEXT); INSERT INTO notes VALUES (1, CAST(x'ff41' AS TEXT)), (2, 'ok');
         CREATE TABLE files (id INTEGER PRIMARY KEY, content BLOB); INSERT INTO files VALUES (1, zeroblob(20));",
    );
    p.data_step(
        "20250101T090100_notes",
        "kind = \"data\"\n[source]\ntable = \"notes\"\nkey = \"id\"\n[target]\ncollection = \"notes\"\n[id_map]\nmap = \"notes\"\n[[fields]]\ntarget = \"note\"\nsource = \"note\"\n",
    );
    p.data_step(
        "20250101T090200_files",
        "kind = \"data\"\n[source]\ntable = \"files\"\nkey = \"id\"\n[target]\ncollection = \"files\"\n[id_map]\nmap = \"files\"\n[[fields]]\ntarget = \"k\"\nsource = \"content\"\ntransforms = [{ store_file = { bucket = \"b\" } }]\n",
    );
    p.ok(&["up", "--continue-on-error"]);
    let ids: Vec<(i64, String)> = rejects(&p)
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r["rule"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    // Still bad at the source: nothing is written, the rules stay.
    for (id, _) in &ids {
        p.run(&["rejects", "retry", &id.to_string()]);
    }
    assert!(document(&p, "notes", "note", "ok").is_some());
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM notes").trim(),
        "1",
        "the undecodable note was written"
    );
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM files").trim(),
        "0",
        "the oversize file was written"
    );
    let rules: Vec<String> = rejects(&p)
        .iter()
        .map(|r| r["rule"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(rules, ids.iter().map(|i| i.1.clone()).collect::<Vec<_>>());
    // Fixed at the source: the retry writes the source's values.
    p.source_sql("UPDATE notes SET note = 'fixed' WHERE id = 1; UPDATE files SET content = zeroblob(5);");
    for (id, _) in &ids {
        p.ok(&["rejects", "retry", &id.to_string()]);
    }
    assert!(
        document(&p, "notes", "note", "fixed").is_some(),
        "{}",
        p.target_sql("SELECT data FROM notes")
    );
    let key = p.target_sql("SELECT json_extract(data, '$.k') FROM files");
    let stored = std::fs::read(p.path().join("buckets/b").join(key.trim())).expect("the file is stored");
    assert_eq!(stored, vec![0u8; 5]);
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "{r:#}");
    // An operator's fix of an undecodable cell is what a retry writes (the source stays bad).
    p.source_sql("INSERT INTO notes VALUES (3, CAST(x'fe' AS TEXT));");
    p.data_step(
        "20250101T090300_more_notes",
        "kind = \"data\"\n[source]\nquery = \"SELECT * FROM notes WHERE id = 3\"\nkey = \"id\"\nname = \"more_notes\"\n[target]\ncollection = \"notes\"\n[id_map]\nmap = \"more_notes\"\n[[fields]]\ntarget = \"note\"\nsource = \"note\"\n",
    );
    p.ok(&["up", "--continue-on-error"]);
    let open = rejects(&p);
    assert_eq!(open.len(), 1, "{open:?}");
    let id = open[0]["id"].as_i64().unwrap().to_string();
    p.ok(&["rejects", "fix", &id, "note=typed by hand"]);
    p.ok(&["rejects", "retry", &id]);
    assert!(
        document(&p, "notes", "note", "typed by hand").is_some(),
        "{}",
        p.target_sql("SELECT data FROM notes")
    );
}

/// A source value cannot widen a permission: text holding a quote or a bracket (`x"), write("any`)
/// or an object rejects the row (rule `permissions`); blank text is no value; and a placeholder
/// naming a path no field writes is refused when the step loads.
#[test]
fn source_values_cannot_inject_permissions() {
    let p = TestProject::new(Backend::Sqlite);
    p.source_sql(
        "CREATE TABLE a (id INTEGER PRIMARY KEY, team TEXT);
         INSERT INTO a VALUES (1, 'x\"), write(\"any'), (2, 'cardio'), (3, '  ');",
    );
    let step = |perm: &str| {
        format!(
            "kind = \"data\"\n[source]\ntable = \"a\"\nkey = \"id\"\n[target]\ncollection = \"c\"\npermissions = ['{perm}']\n[id_map]\nmap = \"a\"\n[[fields]]\ntarget = \"legacy_id\"\nsource = \"id\"\n[[fields]]\ntarget = \"team\"\nsource = \"team\"\n"
        )
    };
    p.data_step("20250101T090100_a", &step("read(\"team:{nope}\")"));
    let o = p.run(&["up", "--continue-on-error"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("{nope} names a path no [[fields]] target writes"),
        "{}",
        stderr(&o)
    );
    p.data_step("20250101T090100_a", &step("read(\"team:{team}\")"));
    p.ok(&["up", "--continue-on-error"]);
    let all = rejects(&p);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["rule"], "permissions");
    assert_eq!(all[0]["source_key"], "1");
    let perms = p.target_sql("SELECT _permissions FROM c ORDER BY json_extract(data, '$.legacy_id')");
    assert_eq!(
        perms.lines().collect::<Vec<_>>(),
        vec![r#"["read(\"team:cardio\")"]"#, "[]"]
    );
    assert!(!p.target_sql("SELECT _permissions FROM c").contains("any"));
}

/// A file in a bucket that no row names (a batch killed before it committed, a row the target
/// refused) fails verify, naming it, and a rollback of a step storing into the bucket removes it.
#[test]
fn files_no_row_names_fail_verify_and_go_with_a_rollback() {
    use sha2::Digest;
    let p = TestProject::with_config(Backend::Sqlite, "\n[buckets.b]\n");
    p.source_sql(
        "CREATE TABLE files (id INTEGER PRIMARY KEY, content BLOB); INSERT INTO files VALUES (1, zeroblob(5));",
    );
    p.data_step(
        "20250101T090100_files",
        "kind = \"data\"\n[source]\ntable = \"files\"\nkey = \"id\"\n[target]\ncollection = \"files\"\n[id_map]\nmap = \"files\"\n[[fields]]\ntarget = \"k\"\nsource = \"content\"\ntransforms = [{ store_file = { bucket = \"b\" } }]\n",
    );
    p.ok(&["up"]);
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "{r:#}");
    // What a killed batch leaves: a complete, content-addressed file no committed row names.
    let bytes = b"left behind by a killed batch";
    let digest: String = sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    let stray = p.path().join("buckets/b").join(&digest[..2]).join(&digest);
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, bytes).unwrap();
    let (code, r) = verify_json(&p);
    assert_eq!(code, VERIFY_FAILED, "{r:#}");
    let detail = check(&r, "bucket b")["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("1 of 2 files is named by no row") && detail.contains(&digest[..12]),
        "{detail}"
    );
    p.ok(&["down", "--all", "--yes"]);
    assert!(!stray.exists(), "the stray file outlived the rollback");
    let left: Vec<_> = walk_files(&p.path().join("buckets/b"));
    assert!(left.is_empty(), "{left:?}");
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
