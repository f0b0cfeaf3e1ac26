//! Issue 13's operations verbs (backup/restore, report, check, assess, metrics) tried as a
//! hostile tester would: truncated files, killed runs, hostile passwords. Each test drives the
//! real binary and looks at what a user would see: the target's rows, the files, the output.

mod common;
#[macro_use]
mod support;

use support::{Backend, TestProject, stderr, stdout};

const SCHEMA: &str = "20250101T090000_schema";
const ITEMS: &str = "20250101T090100_items";

/// A SQLite project with `n` items in the source, nothing run yet.
fn pending_project(n: u32) -> TestProject {
    let p = TestProject::new(Backend::Sqlite);
    p.schema_step(
        SCHEMA,
        "CREATE TABLE items (id TEXT PRIMARY KEY, legacy_id INTEGER NOT NULL UNIQUE, name TEXT, qty INTEGER NOT NULL CHECK (qty >= 0)) STRICT;\n",
        "DROP TABLE items;\n",
    );
    p.data_step(
        ITEMS,
        r#"kind = "data"
batch_size = 1000
[source]
table = "t"
key = "id"

[target]
table = "items"

[id_map]
column = "id"
map = "items"
key = "id"

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "name"
source = "name"

[[fields]]
target = "qty"
source = "qty"
"#,
    );
    p.source_sql(&format!(
        "CREATE TABLE t (id INTEGER, name TEXT, qty INTEGER);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})
         INSERT INTO t SELECT i, 'item ' || i, i FROM s;"
    ));
    p
}

/// A SQLite project with `n` items applied to the target.
fn applied_project(n: u32) -> TestProject {
    let p = pending_project(n);
    p.ok(&["up"]);
    assert_eq!(p.count("items"), i64::from(n));
    p
}

/// A backup cut short (a kill -9 mid-copy, a full disk, a truncated download) is not in the
/// ledger, so its checksum cannot refuse it: restore must still see that it is no database
/// and leave the target as it was.
#[test]
fn restore_of_a_truncated_sqlite_backup_keeps_the_target() {
    let p = applied_project(5000);
    let out = p.json(&["backup"]);
    let file = std::path::PathBuf::from(out["file"].as_str().expect("file"));
    let bytes = std::fs::read(&file).expect("backup");
    let cut = p.path().join("cut.sqlite");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write cut");
    let o = p.run(&["restore", cut.to_str().expect("utf8"), "--yes"]);
    assert!(
        !o.status.success(),
        "restore of a truncated file succeeded:\n{}",
        stdout(&o)
    );
    let err = stderr(&o);
    assert!(err.contains("cut.sqlite"), "the refusal names the file: {err}");
    assert_eq!(p.count("items"), 5000, "the target survived: {err}");
    assert!(
        !p.path().join("target.db.restoring").exists(),
        "the temporary copy is removed"
    );
    // And the good backup still restores afterwards.
    p.ok(&["restore", file.to_str().expect("utf8"), "--yes"]);
    assert_eq!(p.count("items"), 5000);
}

/// A file that is not a SQLite database at all (a PostgreSQL dump given by mistake).
#[test]
fn restore_of_a_file_that_is_no_database_keeps_the_target() {
    let p = applied_project(100);
    let junk = p.path().join("junk.dump");
    std::fs::write(&junk, b"PGDMP\x01\x0e\x00 not a sqlite file at all").expect("write");
    let o = p.run(&["restore", junk.to_str().expect("utf8"), "--yes"]);
    assert!(!o.status.success(), "restore of junk succeeded:\n{}", stdout(&o));
    assert_eq!(p.count("items"), 100, "the target survived: {}", stderr(&o));
}

/// Start `up` and return once the items step has committed a batch.
fn up_mid_step(p: &TestProject) -> std::process::Child {
    let child = p
        .cmd(&["up"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn up");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n = p
            .try_target_sql("SELECT COUNT(*) FROM items")
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        if n > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "up wrote nothing in 60 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// Start `up` and kill -9 it once the items step has committed a batch.
fn kill_up_mid_step(p: &TestProject) {
    let mut child = up_mid_step(p);
    child.kill().expect("kill -9");
    child.wait().expect("wait");
}

/// The report of a run killed mid-step says so: the run was interrupted and so was the step;
/// it does not claim the dead step is still running or the outcome is unknown.
#[test]
fn report_of_a_run_killed_mid_step_says_interrupted() {
    let p = pending_project(150_000);
    kill_up_mid_step(&p);
    let out = p.ok(&["report", "--format", "json"]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(r["outcome"], "interrupted", "{r:#}");
    let items = r["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == "items")
        .unwrap_or_else(|| panic!("no items step: {r:#}"))
        .clone();
    assert_eq!(items["status"], "interrupted", "{r:#}");
    let md = p.ok(&["report"]);
    assert!(!md.contains("running"), "{md}");
    assert!(md.contains("| Outcome | **interrupted** |"), "{md}");
}

/// `assess` while another process's `up` holds the run lock: its rolled-back pass would hold
/// the target's write lock (SQLite) or wait on the run's rows, stalling the real run into its
/// retry budget. It refuses like every other writer (exit 3) and the run finishes untouched.
#[test]
fn assess_refuses_while_another_up_runs() {
    let p = pending_project(150_000);
    let up = up_mid_step(&p);
    let o = p.run(&["assess"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "assess during a run:\n{}\n{err}", stdout(&o));
    assert!(err.contains("locked by another cutover run"), "{err}");
    let o = p.run(&["assess", "--json"]);
    assert_eq!(o.status.code(), Some(3));
    let refusal: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("JSON refusal");
    assert_eq!(refusal["event"], "refused", "{refusal}");
    let done = up.wait_with_output().expect("wait up");
    let up_err = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "up: {up_err}");
    assert!(!up_err.contains("database is locked"), "the run was stalled: {up_err}");
    assert_eq!(p.count("items"), 150_000);
}

/// `assess` on a fresh MariaDB target with a pending schema step: MariaDB's DDL commits at once,
/// so the pass cannot try it. Whatever assess says, it must leave the database as it found it:
/// no table of the plan's and none of the tool's own.
#[test]
fn assess_on_a_fresh_mariadb_target_leaves_no_table() {
    let my = common::mysql::MariaDbServer::shared();
    let url = my.fresh_db("assess_hostile");
    let p = pending_project(50);
    let config = p.path().join("cutover.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("sqlite://target.db", &url)).expect("config");
    p.schema_step(
        SCHEMA,
        "CREATE TABLE items (id CHAR(36) PRIMARY KEY, legacy_id BIGINT NOT NULL UNIQUE, name TEXT, qty BIGINT NOT NULL CHECK (qty >= 0));\n",
        "DROP TABLE items;\n",
    );
    let o = p.run(&["assess", "--json"]);
    let out = stdout(&o);
    let tables = my.mysql(&url, "SHOW TABLES");
    assert!(
        tables.trim().is_empty(),
        "assess left tables behind: {tables}\n{out}\n{}",
        stderr(&o)
    );
    // It says why it could not assess the schema step, instead of a clean bill.
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let schema = &r["steps"][0];
    assert!(schema["error"].is_string(), "{r:#}");
    // With the schema applied for real, the data step is assessed and the tables stay as they were.
    p.ok(&["up", "--to", "20250101T090000"]);
    let before = my.mysql(&url, "SHOW TABLES");
    let r = p.json(&["assess"]);
    assert_eq!(r["steps"][0]["would_write"], 50, "{r:#}");
    assert_eq!(my.mysql(&url, "SHOW TABLES"), before);
    assert_eq!(my.mysql(&url, "SELECT COUNT(*) FROM items").trim(), "0");
}

/// A MariaDB dump cut short (kill -9 of the dump, a full disk): it starts with `DROP TABLE IF
/// EXISTS` for each table and the client stops at the cut, so restoring it would drop tables it
/// never recreates or refills. Restore refuses a dump that does not end the way the dump tool
/// ends every finished dump, and the target keeps its rows.
#[test]
fn restore_of_a_truncated_mariadb_dump_keeps_the_target() {
    let my = common::mysql::MariaDbServer::shared();
    let url = my.fresh_db("restore_cut");
    let p = pending_project(3000);
    let config = p.path().join("cutover.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("sqlite://target.db", &url)).expect("config");
    p.schema_step(
        SCHEMA,
        "CREATE TABLE items (id CHAR(36) PRIMARY KEY, legacy_id BIGINT NOT NULL UNIQUE, name TEXT, qty BIGINT NOT NULL CHECK (qty >= 0));\n",
        "DROP TABLE items;\n",
    );
    p.ok(&["up"]);
    let b = p.json(&["backup"]);
    let file = std::path::PathBuf::from(b["file"].as_str().expect("file"));
    let dump = std::fs::read_to_string(&file).expect("dump");
    // Cut after the items table was dropped and recreated, before its rows.
    let at = dump.find("INSERT INTO `items`").expect("the dump inserts items");
    let cut = p.path().join("cut.sql");
    std::fs::write(&cut, &dump[..at]).expect("write cut");
    let o = p.run(&["restore", cut.to_str().expect("utf8"), "--yes"]);
    assert!(
        !o.status.success(),
        "restore of a truncated dump succeeded:\n{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("cut.sql"), "{}", stderr(&o));
    assert_eq!(
        my.mysql(&url, "SELECT COUNT(*) FROM items").trim(),
        "3000",
        "{}",
        stderr(&o)
    );
    // The whole dump still restores.
    p.ok(&["restore", file.to_str().expect("utf8"), "--yes"]);
    assert_eq!(my.mysql(&url, "SELECT COUNT(*) FROM items").trim(), "3000");
}

/// kill -9 in the middle of a backup: what is left must not look like a finished backup (a
/// `backups/<timestamp>.sqlite` that is half a database). The ledger never records it, and the
/// file carries a name that says it is partial.
#[test]
fn backup_killed_midway_leaves_no_file_that_looks_finished() {
    let p = applied_project(10);
    // ~200 MB of pages so VACUUM INTO takes long enough to be killed midway.
    support::sqlite3(
        &p.path().join("target.db"),
        "CREATE TABLE ballast (b BLOB);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 50000)
         INSERT INTO ballast SELECT randomblob(4000) FROM s;",
    );
    let mut child = p
        .cmd(&["backup"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn backup");
    let dir = p.path().join("backups");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(std::time::Instant::now() < deadline, "backup wrote no file in 30 s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(30));
    child.kill().expect("kill -9");
    let status = child.wait().expect("wait");
    assert!(
        !status.success(),
        "the backup finished before the kill: the test proves nothing"
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("backups")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.ends_with(".sqlite")),
        "a killed backup left a file named like a finished one: {names:?}"
    );
    let recorded = p.try_target_sql("SELECT COUNT(*) FROM cutover_backups");
    assert!(
        matches!(recorded.as_deref().map(str::trim), None | Some("0")),
        "{recorded:?}"
    );
    // The next backup is whole and recorded.
    let b = p.json(&["backup"]);
    assert!(b["file"].as_str().is_some_and(|f| f.ends_with(".sqlite")), "{b}");
    assert_eq!(p.count("ballast"), 50_000);
}

/// `backup` before the SQLite target exists: there is nothing to back up. It must say so
/// (exit 4) instead of creating an empty target and recording a backup of nothing.
#[test]
fn backup_of_a_sqlite_target_that_does_not_exist_is_refused() {
    let p = pending_project(10);
    let o = p.run(&["backup"]);
    assert_eq!(o.status.code(), Some(4), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert!(!p.path().join("target.db").exists(), "backup created the target");
    assert!(!p.path().join("backups").exists(), "backup wrote a file");
}
