//! Incremental sync (`cutover sync`): rows changed on the source after `up` reach the target
//! through the step's own transforms and validations, upserted by ID map or natural key,
//! soft-deleted rows deleted, rejects as usual, the mark committed with each batch. SQLite
//! cases for the edges; a MariaDB and a PostgreSQL source (PostgreSQL target) with a writer
//! changing rows while `sync --every 1s` runs, compared row by row afterwards.

mod common;
mod support;

use common::mysql::MariaDbServer;
use common::pg::PgServer;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::{Backend, TestProject, stderr, stdout};

const SCHEMA_DIR: &str = "20250101T090000_schema";
const PATIENTS_DIR: &str = "20250101T090100_patients";
const SPECIALTIES_DIR: &str = "20250101T090200_specialties";
const SCHEMA: &str = "20250101T090000";
const PATIENTS: &str = "20250101T090100";
const SPECIALTIES: &str = "20250101T090200";

const SCHEMA_UP: &str = "CREATE TABLE patients (id VARCHAR(36) PRIMARY KEY, legacy_id VARCHAR(32) NOT NULL UNIQUE, first_name VARCHAR(100) NOT NULL, email VARCHAR(255));
CREATE TABLE specialties (code VARCHAR(32) PRIMARY KEY, name VARCHAR(100) NOT NULL);
";
const SCHEMA_DOWN: &str = "DROP TABLE specialties;\nDROP TABLE patients;\n";

fn patients_step(sync: &str) -> String {
    format!(
        r#"kind = "data"
[source]
table = "patients"
key = "id"

[target]
table = "patients"

[id_map]
column = "id"
map = "patients"

[sync]
{sync}

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "first_name"
source = "first_name"
transforms = ["trim"]
validate = [{{ rule = "required" }}]

[[fields]]
target = "email"
source = "email"
transforms = ["trim", "lower"]
"#
    )
}

/// A step without an ID map: sync upserts it by its natural key.
const SPECIALTIES_STEP: &str = r#"kind = "data"
[source]
table = "specialties"
key = "id"

[target]
table = "specialties"
natural_key = ["code"]

[sync]
cursor = "updated_at"

[[fields]]
target = "code"
source = "code"

[[fields]]
target = "name"
source = "name"
validate = [{ rule = "required" }]
"#;

const T0: &str = "2025-01-01 10:00:00";
/// The cursor of row `i` at the start: distinct, the largest `09:00:05` (patient 5).
fn t(i: u32) -> String {
    format!("2025-01-01 09:00:0{i}")
}
const T1: &str = "2025-01-01 10:00:05";
const T2: &str = "2025-01-01 10:00:09";

/// A SQLite project: five patients and two specialties, each with its own cursor value.
fn sqlite_project(extra_config: &str) -> TestProject {
    let p = TestProject::with_config(Backend::Sqlite, extra_config);
    p.source_sql(&format!(
        "CREATE TABLE patients (id INTEGER PRIMARY KEY, first_name TEXT, email TEXT, updated_at TEXT, deleted_at TEXT);
         INSERT INTO patients VALUES (1, 'Ann', 'ann@x.org', '{}', NULL), (2, 'Bob', 'bob@x.org', '{}', NULL),
           (3, 'Cy', 'cy@x.org', '{}', NULL), (4, 'Di', 'di@x.org', '{}', NULL), (5, 'Ed', 'ed@x.org', '{}', NULL);
         CREATE TABLE specialties (id INTEGER PRIMARY KEY, code TEXT, name TEXT, updated_at TEXT);
         INSERT INTO specialties VALUES (1, 'CARD', 'Cardiology', '{}'), (2, 'DERM', 'Dermatology', '{}');",
        t(1),
        t(2),
        t(3),
        t(4),
        t(5),
        t(1),
        t(2)
    ));
    p.schema_step(SCHEMA_DIR, SCHEMA_UP, SCHEMA_DOWN);
    p.data_step(
        PATIENTS_DIR,
        &patients_step("cursor = \"updated_at\"\ndeleted = \"deleted_at\""),
    );
    p.data_step(SPECIALTIES_DIR, SPECIALTIES_STEP);
    p
}

/// The NDJSON events of a run.
fn events(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The `synced` events of one step.
fn synced<'a>(evs: &'a [serde_json::Value], version: &str) -> Vec<&'a serde_json::Value> {
    evs.iter()
        .filter(|e| e["event"] == "synced" && e["version"] == version)
        .collect()
}

fn n(e: &serde_json::Value, k: &str) -> u64 {
    e[k].as_u64().unwrap_or_else(|| panic!("no {k} in {e}"))
}

/// (inserted, updated, deleted, rejected) of a `synced` event.
fn applied(e: &serde_json::Value) -> (u64, u64, u64, u64) {
    (n(e, "inserted"), n(e, "updated"), n(e, "deleted"), n(e, "rejected"))
}

fn sync_once(p: &TestProject) -> Vec<serde_json::Value> {
    events(&p.ok(&["sync", "--once", "--json"]))
}

/// Every change kind in one pass: an update (made twice: applied once, newest content), an
/// insert of a row the source got after `up`, a soft delete, and a change that now fails
/// validation (a reject; the target keeps the old row; the mark still advances and the books
/// balance). A second pass applies nothing again.
#[test]
fn one_pass_applies_updates_inserts_deletes_and_rejects_once() {
    let p = sqlite_project("");
    p.ok(&["up", "--continue-on-error"]);
    assert_eq!(p.count("patients"), 5);
    p.source_sql(&format!(
        "UPDATE patients SET first_name = 'Annie', updated_at = '2025-01-01 10:00:03' WHERE id = 1;
         UPDATE patients SET first_name = ' Anna ', email = 'ANNA@X.ORG', updated_at = '{T1}' WHERE id = 1;
         INSERT INTO patients VALUES (6, 'Flo', 'flo@x.org', '{T1}', NULL);
         UPDATE patients SET deleted_at = '{T1}', updated_at = '{T1}' WHERE id = 2;
         UPDATE patients SET first_name = '  ', updated_at = '{T1}' WHERE id = 3;
         UPDATE specialties SET name = 'Heart', updated_at = '{T1}' WHERE id = 1;
         INSERT INTO specialties VALUES (3, 'NEUR', 'Neurology', '{T1}');"
    ));
    // Read: the four changed rows, and patient 5, at the mark `up` recorded (read again,
    // harmlessly: the same content).
    let evs = sync_once(&p);
    let s = synced(&evs, PATIENTS);
    assert_eq!(s.len(), 1, "{evs:?}");
    assert_eq!(applied(s[0]), (1, 2, 1, 1), "{}", s[0]);
    assert_eq!(n(s[0], "lag_rows"), 0);
    assert_eq!(
        s[0]["mark"],
        format!("{T1} / 6"),
        "the mark is the last row's cursor and key"
    );
    assert_eq!(
        p.target_sql("SELECT legacy_id, first_name, email FROM patients ORDER BY legacy_id"),
        "1|Anna|anna@x.org\n3|Cy|cy@x.org\n4|Di|di@x.org\n5|Ed|ed@x.org\n6|Flo|flo@x.org",
        "newest content through the step's transforms; 2 deleted; 3 keeps its old row"
    );
    // The updated row kept its target id (references to it still resolve).
    let before_after = p.target_sql(
        "SELECT COUNT(*) FROM patients p JOIN cutover_id_map m ON m.new_id = p.id AND m.map = 'patients' AND m.old_key = p.legacy_id",
    );
    assert_eq!(before_after, "5", "every target row is the one its legacy key maps to");
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM cutover_id_map WHERE map = 'patients' AND old_key = '2'"),
        "0",
        "a deleted row's key is forgotten"
    );
    // The reject is in the store under the sync run, with its rule.
    let rejects = p.json(&["rejects", "list", "--step", PATIENTS]);
    let r: Vec<_> = rejects
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["level"] == "error")
        .collect();
    assert_eq!(r.len(), 1, "{rejects}");
    assert_eq!(
        (r[0]["source_key"].as_str(), r[0]["rule"].as_str()),
        (Some("3"), Some("required"))
    );
    let run_id = evs.iter().find(|e| e["event"] == "planned").unwrap()["run_id"].clone();
    assert_eq!(r[0]["run_id"], run_id, "{}", r[0]);
    // Books of the pass: 4 changed rows = 3 written + 1 rejected.
    let fin = evs
        .iter()
        .find(|e| e["event"] == "step_finished" && e["version"] == PATIENTS)
        .unwrap();
    assert_eq!(
        (
            n(&fin["counts"], "source"),
            n(&fin["counts"], "written"),
            n(&fin["counts"], "rejected")
        ),
        (5, 4, 1)
    );
    // The natural-key step: an update in place and an insert (and DERM, at the first mark).
    let s = synced(&evs, SPECIALTIES);
    assert_eq!(applied(s[0]), (1, 2, 0, 0), "{}", s[0]);
    assert_eq!(
        p.target_sql("SELECT code, name FROM specialties ORDER BY code"),
        "CARD|Heart\nDERM|Dermatology\nNEUR|Neurology"
    );

    // Nothing changed: nothing is applied again.
    let evs = sync_once(&p);
    assert_eq!(applied(synced(&evs, PATIENTS)[0]), (0, 0, 0, 0));
    assert_eq!(applied(synced(&evs, SPECIALTIES)[0]), (0, 0, 0, 0));
    assert_eq!(p.count("patients"), 5);

    // The deleted row comes back: inserted and mapped again; the fixed row goes through.
    p.source_sql(&format!(
        "UPDATE patients SET deleted_at = NULL, updated_at = '{T2}' WHERE id = 2;
         UPDATE patients SET first_name = 'Cyd', updated_at = '{T2}' WHERE id = 3;"
    ));
    let evs = sync_once(&p);
    assert_eq!(applied(synced(&evs, PATIENTS)[0]), (1, 1, 0, 0));
    assert_eq!(
        p.target_sql("SELECT first_name FROM patients WHERE legacy_id IN ('2', '3') ORDER BY legacy_id"),
        "Bob\nCyd"
    );
    // The written row's earlier reject is no longer open (nothing waits for it, no retry
    // writes it twice).
    let open = p.json(&["rejects", "list", "--step", PATIENTS, "--open"]);
    assert_eq!(open.as_array().map(|a| a.len()), Some(0), "{open}");
    // The human output says what each pass did.
    let out = p.ok(&["sync", "--once"]);
    assert!(
        out.contains(&format!(
            "⟳ {PATIENTS} pass 1: 0 inserted, 0 updated, 0 deleted, 0 rejected · lag 0 rows"
        )),
        "{out}"
    );
}

/// Many rows with the same cursor value across batch boundaries: the mark is cursor + key, so
/// every row is applied once (a cursor-only mark would skip or repeat the rest of the tie).
#[test]
fn a_tie_of_cursor_values_spans_batches() {
    let p = sqlite_project("\n[defaults]\nbatch_size = 2\n");
    p.ok(&["up"]);
    p.source_sql(&format!(
        "INSERT INTO patients SELECT id + 5, 'new' || id, NULL, '{T1}', NULL FROM patients;
         UPDATE patients SET first_name = first_name || '!', updated_at = '{T1}' WHERE id <= 5;"
    ));
    let evs = sync_once(&p);
    let s = synced(&evs, PATIENTS);
    assert_eq!(applied(s[0]), (5, 5, 0, 0), "{}", s[0]);
    assert_eq!(s[0]["mark"], format!("{T1} / 10"));
    assert_eq!(p.count("patients"), 10);
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM patients WHERE first_name LIKE '%!' OR first_name LIKE 'new%'"),
        "10"
    );
    assert_eq!(
        p.target_sql(&format!(
            "SELECT rows_applied FROM cutover_sync_marks WHERE version = '{PATIENTS}'"
        )),
        "10",
        "ten rows in five batches, each counted once"
    );
    assert_eq!(applied(synced(&sync_once(&p), PATIENTS)[0]), (0, 0, 0, 0));
}

/// `up` records the first mark: the largest cursor before the step read a row. The first sync
/// reads only what changed after it.
#[test]
fn up_records_the_first_mark() {
    let p = sqlite_project("");
    p.ok(&["up"]);
    assert_eq!(
        p.target_sql(&format!(
            "SELECT cursor_value, last_key IS NULL FROM cutover_sync_marks WHERE version = '{PATIENTS}'"
        )),
        "2025-01-01 09:00:05|1",
        "the largest cursor, with no key: rows at it are read again"
    );
    p.source_sql(&format!(
        "UPDATE patients SET first_name = 'Dee', updated_at = '{T1}' WHERE id = 4;"
    ));
    let evs = sync_once(&p);
    let s = synced(&evs, PATIENTS);
    assert_eq!(
        applied(s[0]),
        (0, 2, 0, 0),
        "the changed row, and the row at the first mark read again: {}",
        s[0]
    );
    assert_eq!(applied(synced(&sync_once(&p), PATIENTS)[0]), (0, 0, 0, 0));
    // The snapshot (status --json) carries the lag for the console's gauge.
    let status = p.json(&["status"]);
    let m = status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["version"] == PATIENTS)
        .unwrap();
    assert_eq!(m["state"], "applied", "{m}");
}

/// A step not applied yet is skipped with a notice; the others still sync.
#[test]
fn a_step_not_applied_yet_is_skipped() {
    let p = sqlite_project("");
    p.ok(&["up", "--to", PATIENTS]);
    let out = p.ok(&["sync", "--once"]);
    assert!(
        out.contains(&format!("{SPECIALTIES} specialties: not applied yet, skipped")),
        "{out}"
    );
    assert!(out.contains(&format!("⟳ {PATIENTS} pass 1")), "{out}");
    assert!(!out.contains(&format!("⟳ {SPECIALTIES}")), "{out}");
    // Naming a step without [sync] is refused.
    let o = p.run(&["sync", "--once", "--steps", SCHEMA]);
    assert_eq!(o.status.code(), Some(4), "{}", stdout(&o));
}

/// A `[sync]` without a way to match rows, or with a file source, fails when the step loads.
#[test]
fn sync_settings_are_checked_when_the_step_loads() {
    let p = sqlite_project("");
    p.data_step(
        PATIENTS_DIR,
        &patients_step("cursor = \"updated_at\"\nlookback = \"soon\""),
    );
    let o = p.run(&["sync", "--once"]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("lookback = \"soon\" is not a duration")
            || stderr(&o).contains("lookback = \"soon\" is not a duration"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
}

/// A sync killed mid-pass (kill -9) resumes from its last committed mark: every change lands
/// and nothing is applied twice (the rows applied across both runs are exactly the changes).
#[test]
fn a_killed_sync_resumes_from_the_committed_mark() {
    const N: u32 = 20_000;
    let p = sqlite_project("\n[defaults]\nbatch_size = 50\n");
    p.source_sql(&format!(
        "WITH RECURSIVE c(x) AS (SELECT 6 UNION ALL SELECT x + 1 FROM c WHERE x < {N})
         INSERT INTO patients SELECT x, 'p' || x, NULL, '{T0}', NULL FROM c;"
    ));
    p.ok(&["up"]);
    p.source_sql(&format!(
        "UPDATE patients SET first_name = 'v2-' || id, updated_at = '{T1}';"
    ));
    let mut child = p
        .cmd(&["sync", "--once", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let applied_rows = |p: &TestProject| -> u64 {
        p.try_target_sql(&format!(
            "SELECT rows_applied FROM cutover_sync_marks WHERE version = '{PATIENTS}'"
        ))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
    };
    let started = common::wait_until(Duration::from_secs(60), Duration::from_millis(5), || {
        applied_rows(&p) > 0
    });
    assert!(started, "the sync never committed a batch");
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = applied_rows(&p);
    assert!(at_kill < N as u64, "killed before the end ({at_kill})");
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM patients WHERE first_name LIKE 'v2-%'"),
        at_kill.to_string(),
        "the committed mark covers exactly the rows written"
    );
    let evs = sync_once(&p);
    let s = synced(&evs, PATIENTS);
    assert_eq!(applied(s[0]), (0, N as u64 - at_kill, 0, 0), "the rest, once: {}", s[0]);
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM patients WHERE first_name = 'v2-' || legacy_id"),
        N.to_string()
    );
    assert_eq!(applied_rows(&p), N as u64);
}

/// The legacy source of the real-server tests.
#[derive(Clone, Copy, Debug, PartialEq)]
enum LegacyDb {
    MariaDb,
    Postgres,
}

impl LegacyDb {
    fn sql(self, url: &str, q: &str) -> String {
        match self {
            LegacyDb::MariaDb => MariaDbServer::shared().mysql(url, q),
            LegacyDb::Postgres => PgServer::shared().psql(url, q),
        }
    }

    /// The source's live rows as `id|first_name|email`, in id order, as the step writes them.
    fn live_rows(self, url: &str) -> String {
        let q = match self {
            LegacyDb::MariaDb => {
                "SELECT CONCAT_WS('|', id, TRIM(first_name), LOWER(TRIM(email))) FROM patients WHERE deleted_at IS NULL ORDER BY id"
            }
            LegacyDb::Postgres => {
                "SELECT id || '|' || TRIM(first_name) || '|' || LOWER(TRIM(email)) FROM patients WHERE deleted_at IS NULL ORDER BY id"
            }
        };
        self.sql(url, q)
    }
}

/// A changing legacy database: `up`, then `sync --every 1s` while a writer updates, inserts
/// and soft-deletes rows (and brings deleted ones back), then a final `--once`: the target
/// holds exactly the source's live rows, each with its newest content, and every row the
/// target holds is the one its legacy key maps to.
fn sync_while_the_source_changes(legacy: LegacyDb) {
    const ROWS: u32 = 400;
    let p = TestProject::with_config(Backend::Postgres, "\n[defaults]\nbatch_size = 25\n");
    let source_url = match legacy {
        LegacyDb::MariaDb => MariaDbServer::shared().fresh_db("synclegacy"),
        LegacyDb::Postgres => PgServer::shared().fresh_db("synclegacy"),
    };
    let config = p.path().join("cutover.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("sqlite://source.db", &source_url)).unwrap();
    p.schema_step(SCHEMA_DIR, SCHEMA_UP, SCHEMA_DOWN);
    p.data_step(
        PATIENTS_DIR,
        &patients_step("cursor = \"updated_at\"\ndeleted = \"deleted_at\"\nlookback = \"2s\""),
    );
    let (create, seed, now) = match legacy {
        LegacyDb::MariaDb => (
            "CREATE TABLE patients (id INT PRIMARY KEY, first_name VARCHAR(100), email VARCHAR(255), updated_at DATETIME(6) NOT NULL, deleted_at DATETIME(6) NULL, KEY (updated_at))",
            format!(
                "INSERT INTO patients SELECT seq, CONCAT('p', seq), CONCAT(' P', seq, '@X.org'), NOW(6) - INTERVAL 1 HOUR, NULL FROM seq_1_to_{ROWS}"
            ),
            "NOW(6)",
        ),
        LegacyDb::Postgres => (
            "CREATE TABLE patients (id INT PRIMARY KEY, first_name VARCHAR(100), email VARCHAR(255), updated_at TIMESTAMP(6) NOT NULL, deleted_at TIMESTAMP(6) NULL); CREATE INDEX ON patients (updated_at)",
            format!(
                "INSERT INTO patients SELECT x, 'p' || x, ' P' || x || '@X.org', LOCALTIMESTAMP - INTERVAL '1 hour', NULL FROM generate_series(1, {ROWS}) x"
            ),
            "LOCALTIMESTAMP",
        ),
    };
    legacy.sql(&source_url, &format!("{create}; {seed};"));
    p.ok(&["up", "--continue-on-error"]);
    assert_eq!(p.count("patients"), ROWS as i64);
    // The project's own folder holds the sync's NDJSON.
    let log = p.path().join("sync.ndjson");
    let child = p
        .cmd(&["sync", "--every", "1s", "--json"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The writer: ~4 s of changes of every kind.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, stop) = (source_url.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i: u32 = 0;
            let t0 = std::time::Instant::now();
            while t0.elapsed() < Duration::from_secs(4) && !stop.load(Ordering::SeqCst) {
                i += 1;
                let id = (i * 37) % ROWS + 1;
                let q = match i % 6 {
                    // the same row twice in a row: only the newest content must land
                    0 | 1 => format!("UPDATE patients SET first_name = 'w{i}', updated_at = {now} WHERE id = {id}"),
                    2 => format!(
                        "INSERT INTO patients VALUES ({}, 'n{i}', 'N{i}@x.org', {now}, NULL)",
                        ROWS + i
                    ),
                    3 => format!("UPDATE patients SET deleted_at = {now}, updated_at = {now} WHERE id = {id}"),
                    4 => format!(
                        "UPDATE patients SET deleted_at = NULL, updated_at = {now} WHERE id = {}",
                        (id + 37) % ROWS + 1
                    ),
                    _ => format!("UPDATE patients SET email = 'E{i}@x.org', updated_at = {now} WHERE id = {id}"),
                };
                legacy.sql(&url, &q);
                if i.is_multiple_of(6) {
                    legacy.sql(
                        &url,
                        &format!("UPDATE patients SET first_name = 'w{i}b', updated_at = {now} WHERE id = {id}"),
                    );
                }
                std::thread::sleep(Duration::from_millis(15));
            }
            i
        })
    };
    let changes = writer.join().unwrap();
    assert!(changes > 20, "the writer made {changes} changes");
    // A pass after the writer stopped, then ctrl-c: the run stops cleanly.
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let out = wait_within(child, Duration::from_secs(30));
    assert_eq!(
        out.status.code(),
        Some(0),
        "sync --every ends with 0 on ctrl-c: {}",
        stderr(&out)
    );
    let evs = events(&std::fs::read_to_string(&log).unwrap());
    let s = synced(&evs, PATIENTS);
    assert!(s.len() >= 3, "one pass a second: {} passes", s.len());
    let during: u64 = s
        .iter()
        .map(|e| n(e, "inserted") + n(e, "updated") + n(e, "deleted"))
        .sum();
    assert!(during > 0, "changes were applied while the writer ran");
    assert_eq!(evs.last().unwrap()["event"], "finished");

    let evs = sync_once(&p);
    let last = synced(&evs, PATIENTS)[0];
    assert_eq!(n(last, "lag_rows"), 0, "{last}");
    assert_eq!(n(last, "rejected"), 0, "{last}");
    let target = p.target_sql(
        "SELECT legacy_id || '|' || first_name || '|' || email FROM patients ORDER BY CAST(legacy_id AS INTEGER)",
    );
    assert_eq!(
        target,
        legacy.live_rows(&source_url),
        "the target equals the source's live rows"
    );
    assert_eq!(
        p.target_sql(
            "SELECT COUNT(*) FROM patients p JOIN cutover_id_map m ON m.map = 'patients' AND m.old_key = p.legacy_id AND m.new_id = p.id"
        ),
        p.count("patients").to_string(),
        "every target row is the one its legacy key maps to"
    );
    // No reject anywhere: every changed row was written.
    let rejects = p.json(&["rejects", "list", "--step", PATIENTS]);
    assert_eq!(rejects.as_array().map(|a| a.len()), Some(0), "{rejects}");
}

/// Wait for a spawned child for up to `limit`, killing it (and failing) after that.
fn wait_within(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let t0 = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().expect("output");
            panic!("sync still running after {limit:?}: {}", stderr(&o));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn mariadb_source_changing_during_sync() {
    sync_while_the_source_changes(LegacyDb::MariaDb);
}

#[test]
fn postgres_source_changing_during_sync() {
    sync_while_the_source_changes(LegacyDb::Postgres);
}
