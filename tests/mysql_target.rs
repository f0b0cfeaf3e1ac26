//! MariaDB as a target: exactly-once batches after kill -9, the run lock (GET_LOCK) refusing a
//! second run, values MariaDB refuses becoming rejects with their key and column while the rest
//! of the batch lands, rollback to the pre-step content, and a password that is never printed.

mod common;
mod support;

use common::mysql::MariaDbServer;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use support::{Backend, TestProject, stderr, stdout};

const SCHEMA: &str = "20250101T090000_schema";
const ACCOUNTS: &str = "20250101T090100_accounts";

/// Portable SQL: VARCHAR keys work on every target (MariaDB cannot index TEXT).
const SCHEMA_UP: &str = "CREATE TABLE accounts (id VARCHAR(36) PRIMARY KEY, legacy_id VARCHAR(32) NOT NULL UNIQUE, email VARCHAR(255) NOT NULL UNIQUE, role VARCHAR(16) NOT NULL, phone TEXT);\n";
const SCHEMA_DOWN: &str = "DROP TABLE accounts;\n";

fn accounts_step(on_duplicate: &str) -> String {
    format!(
        r#"kind = "data"
[source]
table = "users"
key = "id"

[target]
table = "accounts"
natural_key = ["email"]
on_duplicate = "{on_duplicate}"

[id_map]
column = "id"
map = "users"

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "email"
source = "email"
transforms = ["trim", "lower"]
validate = [{{ rule = "required" }}]

[[fields]]
target = "role"
source = "role"
transforms = ["trim", {{ map = {{ values = {{ parent = "parent", doctor = "clinician", admin = "admin" }} }} }}]

[[fields]]
target = "phone"
source = "phone"
"#
    )
}

/// The session settings of the engine's MariaDB target sessions.
const SESSION: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,ANSI_QUOTES,PIPES_AS_CONCAT';";

/// A project whose target is a fresh MariaDB database (`url` replaces the SQLite target; by
/// default a root URL of the shared server).
fn project(extra_config: &str, url: Option<String>) -> (TestProject, String) {
    let mut p = TestProject::with_config(Backend::Sqlite, extra_config);
    let url = url.unwrap_or_else(|| MariaDbServer::shared().fresh_db("mytarget"));
    let config = p.path().join("cutover.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("sqlite://target.db"), "{text}");
    std::fs::write(&config, text.replace("sqlite://target.db", &url)).unwrap();
    p.target_url = url.clone();
    p.source_sql("CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT, role TEXT, phone TEXT);");
    (p, url)
}

fn sql(url: &str, q: &str) -> String {
    MariaDbServer::shared().mysql(url, &format!("{SESSION} {q}"))
}

fn count(url: &str, table: &str) -> i64 {
    let out = sql(url, &format!("SELECT COUNT(*) FROM {table}"));
    out.trim().parse().unwrap_or_else(|_| panic!("count {table}: {out}"))
}

fn source_count(p: &TestProject, q: &str) -> i64 {
    let out = support::sqlite3(&p.path().join("source.db"), q);
    out.trim().parse().unwrap_or_else(|_| panic!("{q}: {out}"))
}

fn fill_users(p: &TestProject, n: u32) {
    p.source_sql(&format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})
         INSERT INTO users SELECT printf('u%07d', x), printf('user%d@example.org', x), CASE WHEN x % 97 = 0 THEN 'nurse' WHEN x % 2 = 0 THEN 'parent' ELSE 'doctor' END, NULL FROM c;"
    ));
}

#[test]
fn exactly_once_after_kill_mid_run() {
    const N: u32 = 20_000;
    let (p, url) = project("\n[defaults]\nbatch_size = 200\ncontinue_on_error = true\n", None);
    p.schema_step(SCHEMA, SCHEMA_UP, SCHEMA_DOWN);
    p.data_step(ACCOUNTS, &accounts_step("skip"));
    fill_users(&p, N);
    let mut kills = 0;
    for threshold in [2_000i64, 9_000] {
        let mut child = p
            .cmd(&["up"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reached = common::wait_until(Duration::from_secs(120), Duration::from_millis(5), || {
            let done = MariaDbServer::shared()
                .try_mysql(&url, "SELECT COALESCE(SUM(rows_read), 0) FROM cutover_checkpoints")
                .unwrap_or_default();
            done.trim().parse::<i64>().unwrap_or(0) >= threshold || child.try_wait().ok().flatten().is_some()
        });
        assert!(reached);
        if child.try_wait().unwrap().is_none() {
            let _ = std::process::Command::new("kill")
                .args(["-9", &child.id().to_string()])
                .status();
            kills += 1;
        }
        let _ = child.wait();
    }
    assert!(kills >= 1, "the run should have been killed mid-way (was {kills})");
    p.ok(&["up"]);
    let states = p.states();
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(states.iter().all(|(_, s)| s == "applied"), "{states:?}");
    // Independent of the run: nurses have no role mapping (rejected), everyone else is written.
    let expected = source_count(&p, "SELECT COUNT(*) FROM users WHERE role <> 'nurse'");
    assert_eq!(expected, (1..=N).filter(|x| !x.is_multiple_of(97)).count() as i64);
    assert_eq!(count(&url, "accounts"), expected);
    assert_eq!(
        sql(&url, "SELECT COUNT(DISTINCT legacy_id) FROM accounts"),
        expected.to_string()
    );
    assert_eq!(count(&url, "cutover_id_map"), expected);
    assert_eq!(
        sql(
            &url,
            "SELECT COUNT(*) FROM cutover_rejects WHERE level = 'error' AND state = 'open'"
        ),
        (i64::from(N) - expected).to_string()
    );
    // every ID-map entry points at a row that exists
    assert_eq!(
        sql(
            &url,
            "SELECT COUNT(*) FROM cutover_id_map m LEFT JOIN accounts a ON a.id = m.new_id WHERE a.id IS NULL"
        ),
        "0"
    );
    let v = p.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
}

#[test]
fn a_second_run_is_refused_by_get_lock() {
    let (p, url) = project("\n[defaults]\nbatch_size = 50\ncontinue_on_error = true\n", None);
    p.schema_step(SCHEMA, SCHEMA_UP, SCHEMA_DOWN);
    p.data_step(ACCOUNTS, &accounts_step("skip"));
    fill_users(&p, 40_000);
    let db = common::db_name_from_url(&url).expect("db name");
    let held = || {
        MariaDbServer::shared()
            .try_mysql(&url, &format!("SELECT IS_USED_LOCK('cutover:{db}') IS NOT NULL"))
            .unwrap_or_default()
            == "1"
    };
    assert!(!held());
    let mut first = p
        .cmd(&["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = common::wait_until(Duration::from_secs(60), Duration::from_millis(10), || {
        MariaDbServer::shared()
            .try_mysql(&url, "SELECT COUNT(*) FROM cutover_checkpoints")
            .is_ok_and(|n| n.trim() != "0")
    });
    assert!(
        running && first.try_wait().unwrap().is_none(),
        "the first run is under way"
    );
    assert!(held(), "the first run holds GET_LOCK");
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("locked by another cutover run"), "{e}");
    assert!(e.contains(&format!("pid {}", first.id())), "the holder is named: {e}");
    // status says who holds it, and does not take the lock
    let status = p.ok(&["status"]);
    assert!(first.try_wait().unwrap().is_none());
    assert!(held());
    drop(status);
    // kill -9: the server ends the session and its lock; the next run resumes
    let _ = std::process::Command::new("kill")
        .args(["-9", &first.id().to_string()])
        .status();
    let _ = first.wait();
    assert!(
        common::wait_until(Duration::from_secs(20), Duration::from_millis(50), || !held()),
        "the lock of a dead run is released"
    );
    p.ok(&["up"]);
    assert!(!held(), "a finished run releases the lock");
    let expected = source_count(&p, "SELECT COUNT(*) FROM users WHERE role <> 'nurse'");
    assert_eq!(count(&url, "accounts"), expected);
    assert_eq!(count(&url, "cutover_lock"), 0, "the lock row is gone after the run");
}

#[test]
fn refused_values_become_rejects_and_the_rest_lands() {
    let (p, url) = project("\n[defaults]\ncontinue_on_error = true\n", None);
    p.source_sql(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, born TEXT);
         INSERT INTO people VALUES (1, 'Ann', '2001-01-01'), (2, 'Bob', '2002-02-02'),
           (3, 'Bartholomew-the-Long', '2003-03-03'), (4, 'Cy', '2004-04-04'), (5, 'Di', NULL),
           (6, 'Ed', '2021-02-30'), (7, 'Flo', '2007-07-07'), (8, 'Gus', '0000-00-00');",
    );
    p.schema_step(
        SCHEMA,
        "CREATE TABLE people (id VARCHAR(36) PRIMARY KEY, legacy_id VARCHAR(16) NOT NULL UNIQUE, name VARCHAR(10) NOT NULL, born DATE);\n",
        "DROP TABLE people;\n",
    );
    p.data_step(
        "20250101T090100_people",
        r#"kind = "data"
[source]
table = "people"
key = "id"

[target]
table = "people"

[id_map]
column = "id"
map = "people"

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "name"
source = "name"

[[fields]]
target = "born"
source = "born"
"#,
    );
    p.ok(&["up"]);
    assert_eq!(
        sql(&url, "SELECT legacy_id FROM people ORDER BY legacy_id"),
        "1\n2\n4\n5\n7",
        "the rest of the batch landed"
    );
    let rejects = p.json(&["rejects", "list"]);
    let mut got: Vec<(String, String, String)> = rejects
        .as_array()
        .expect("rejects")
        .iter()
        .map(|r| {
            (
                r["source_key"].as_str().unwrap_or("").to_string(),
                r["field"].as_str().unwrap_or("").to_string(),
                r["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    got.sort();
    let keys: Vec<(&str, &str)> = got.iter().map(|(k, f, _)| (k.as_str(), f.as_str())).collect();
    assert_eq!(keys, [("3", "name"), ("6", "born"), ("8", "born")], "{got:?}");
    assert!(got[0].2.to_lowercase().contains("too long"), "{got:?}");
    assert!(got[1].2.contains("2021-02-30"), "{got:?}");
    // the books balance against the tables
    let status = p.json(&["status"]);
    let c = &status["migrations"][1]["counts"];
    let n = |k: &str| c[k].as_i64().unwrap_or_else(|| panic!("no counts.{k}: {c}"));
    assert_eq!(n("source"), 8);
    assert_eq!(n("written"), count(&url, "people"));
    assert_eq!(n("rejected"), count(&url, "cutover_rejects"));
    // a fixed value goes through on retry
    let id = rejects
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source_key"] == "3")
        .unwrap()["id"]
        .to_string();
    p.ok(&["rejects", "fix", &id, "name=Bart"]);
    p.ok(&["rejects", "retry", &id]);
    assert_eq!(sql(&url, "SELECT name FROM people WHERE legacy_id = '3'"), "Bart");
}

#[test]
fn rollback_restores_the_pre_step_state() {
    let (p, url) = project("", None);
    p.schema_step(SCHEMA, SCHEMA_UP, SCHEMA_DOWN);
    p.data_step(ACCOUNTS, &accounts_step("update"));
    p.source_sql(
        "INSERT INTO users VALUES ('u1', 'pre@x.org', 'parent', '555'), ('u2', 'new@x.org', 'admin', NULL), ('u3', 'Pre@X.org ', 'doctor', NULL);",
    );
    p.ok(&["up", "--to", "20250101T090000"]);
    sql(
        &url,
        "INSERT INTO accounts (id, legacy_id, email, role, phone) VALUES ('existing-1', 'legacy-0', 'pre@x.org', 'admin', '+15550000000'), ('existing-2', 'legacy-9', 'other@x.org', 'parent', NULL)",
    );
    let content = || {
        sql(
            &url,
            "SELECT id, legacy_id, email, role, COALESCE(phone, '-') FROM accounts ORDER BY id",
        )
    };
    let before = content();
    p.ok(&["up"]);
    assert_ne!(content(), before);
    assert_eq!(
        sql(&url, "SELECT role FROM accounts WHERE id = 'existing-1'"),
        "clinician"
    );
    assert_eq!(count(&url, "accounts"), 3);
    p.ok(&["down", "--yes"]);
    assert_eq!(content(), before, "the target is back to its pre-step content");
    for t in [
        "cutover_id_map",
        "cutover_rejects",
        "cutover_checkpoints",
        "cutover_row_backups",
    ] {
        assert_eq!(count(&url, t), 0, "{t}");
    }
    assert_eq!(p.states()[1].1, "reverted");
    // and the schema step's down.sql
    p.ok(&["down", "--yes"]);
    assert_eq!(
        sql(
            &url,
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'accounts'"
        ),
        "0"
    );
}

/// MySQL commits DDL at once: a dry run refuses it instead of making everything permanent,
/// and dry-runs data steps on an applied schema without writing anything.
#[test]
fn a_dry_run_writes_nothing() {
    let (p, url) = project("\n[defaults]\ncontinue_on_error = true\n", None);
    p.schema_step(SCHEMA, SCHEMA_UP, SCHEMA_DOWN);
    p.data_step(ACCOUNTS, &accounts_step("skip"));
    fill_users(&p, 500);
    let o = p.run(&["up", "--dry-run"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("commits DDL at once"), "{}", stderr(&o));
    assert_eq!(
        sql(
            &url,
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name NOT LIKE 'cutover%'"
        ),
        "0",
        "the schema step's DDL did not run"
    );
    p.ok(&["up", "--to", "20250101T090000"]);
    let out = p.ok(&["up", "--dry-run"]);
    assert!(out.contains("nothing was written"), "{out}");
    assert_eq!(count(&url, "accounts"), 0);
    assert_eq!(count(&url, "cutover_id_map"), 0);
    assert_eq!(count(&url, "cutover_rejects"), 0);
    assert_eq!(p.states()[1].1, "pending");
}

const PW: &str = "Zm9v/YmFy?x@y#z";
const PW_VAR: &str = "CUTOVER_MYSQL_TARGET_PW";

fn encoded(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn assert_clean(what: &str, text: &str) {
    let chars: Vec<char> = PW.chars().collect();
    let mut fragments: Vec<String> = chars.windows(4).map(|w| w.iter().collect()).collect();
    fragments.push(encoded(PW));
    for f in fragments {
        assert!(
            !text.contains(&f),
            "{what} contains the password fragment {f:?}:\n{text}"
        );
    }
}

fn assert_output_clean(what: &str, o: &Output) {
    assert_clean(&format!("{what} stdout"), &stdout(o));
    assert_clean(&format!("{what} stderr"), &stderr(o));
}

fn assert_files_clean(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_files_clean(&path);
        } else {
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert_clean(&path.display().to_string(), &String::from_utf8_lossy(&bytes));
        }
    }
}

#[test]
fn a_target_password_is_never_printed() {
    let my = MariaDbServer::shared();
    let db = common::unique_db_name("mysecret");
    my.mysql(
        "mysql",
        &format!(
            "CREATE DATABASE {db}; CREATE USER IF NOT EXISTS 'cutover_tgt'@'localhost' IDENTIFIED BY '{PW}'; GRANT ALL ON {db}.* TO 'cutover_tgt'@'localhost';"
        ),
    );
    let sock = my.socket_path();
    let url = format!(
        "mysql://cutover_tgt:${{{PW_VAR}}}@localhost/{db}?socket={}",
        sock.display()
    );
    let (p, _) = project("", Some(url));
    p.schema_step(SCHEMA, SCHEMA_UP, SCHEMA_DOWN);
    p.data_step(ACCOUNTS, &accounts_step("skip"));
    p.source_sql("INSERT INTO users VALUES ('u1', 'a@x.org', 'parent', NULL), ('u2', 'b@x.org', 'nurse', NULL);");
    let run = |args: &[&str]| p.cmd(args).env(PW_VAR, PW).output().unwrap();
    for args in [
        &["up", "--continue-on-error"][..],
        &["status"],
        &["status", "--json"],
        &["history", "--json"],
        &["verify"],
        &["rejects", "list", "--json"],
    ] {
        let o = run(args);
        assert_output_clean(&format!("{args:?}"), &o);
        assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
    }
    assert_eq!(
        count(
            &format!("mysql://root@localhost/{db}?socket={}", sock.display()),
            "accounts"
        ),
        1
    );
    // A wrong password: an authentication error that names neither password.
    let o = p.cmd(&["status"]).env(PW_VAR, "wrong/?@#pass").output().unwrap();
    assert!(!o.status.success());
    assert_output_clean("wrong password", &o);
    assert!(stderr(&o).contains("Authentication failed"), "{}", stderr(&o));
    // Unencoded on the command line: refused without echoing it.
    let o = p
        .cmd(&[
            "--target",
            &format!("mysql://cutover_tgt:{PW}@localhost/{db}?socket={}", sock.display()),
            "status",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_output_clean("unencoded password", &o);
    assert!(stderr(&o).contains("percent-encoded"), "{}", stderr(&o));
    // Nothing the run wrote holds it: the engine's tables and the project folder.
    let root = format!("mysql://root@localhost/{db}?socket={}", sock.display());
    for t in ["cutover_ledger", "cutover_events", "cutover_rejects"] {
        assert_clean(t, &sql(&root, &format!("SELECT * FROM {t}")));
    }
    assert_files_clean(p.path());
}

/// The tool's own tables on MariaDB: created twice (idempotent), utf8mb4 with a binary
/// collation (keys that differ only in case or trailing space are different keys).
#[test]
fn own_tables_are_utf8mb4_and_compare_keys_exactly() {
    let (p, url) = project("", None);
    p.schema_step(SCHEMA, SCHEMA_UP, SCHEMA_DOWN);
    p.data_step(ACCOUNTS, &accounts_step("skip"));
    p.ok(&["up"]);
    p.ok(&["up"]);
    let tables = sql(
        &url,
        "SELECT table_name, table_collation, engine FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE 'cutover%' ORDER BY table_name",
    );
    assert_eq!(tables.lines().count(), 11, "{tables}");
    for line in tables.lines() {
        assert!(line.contains("utf8mb4_nopad_bin") && line.contains("InnoDB"), "{line}");
    }
    sql(
        &url,
        "INSERT INTO cutover_id_map (map, old_key, new_id, version, alias) VALUES ('m', 'a', '1', 'v', 0), ('m', 'A', '2', 'v', 0), ('m', 'a ', '3', 'v', 0), ('m', 'ä', '4', 'v', 0)",
    );
    assert_eq!(count(&url, "cutover_id_map"), 4);
}
