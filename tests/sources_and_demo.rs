//! MariaDB as a real source, unreachable servers, and the demo end to end (headless).

mod common;
mod support;

use support::{Backend, TestProject, stderr, stdout};

const STEP: &str = r#"kind = "data"
[source]
table = "users"
key = "id"

[target]
table = "accounts"
natural_key = ["email"]
on_duplicate = "skip"

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
validate = [{ rule = "email" }]

[[fields]]
target = "created_at"
source = "created_at"
transforms = ["datetime"]
"#;

#[test]
fn mariadb_source_to_sqlite_and_postgres_targets() {
    let maria = common::mysql::MariaDbServer::shared();
    let src = maria.fresh_db("legacy");
    maria.mysql(
        &src,
        "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(200), created_at DATETIME);
         INSERT INTO users VALUES (1, ' A@x.org', '2020-01-02 03:04:05'), (2, 'a@X.org', '2020-01-03 00:00:00'),
                                  (3, 'not-an-email', NULL), (4, 'd@x.org', '2021-06-07 08:09:10');",
    );
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let p = TestProject::new(backend);
        p.schema_step(
            "20250101T090000_schema",
            "CREATE TABLE accounts (id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, email TEXT NOT NULL UNIQUE, created_at TEXT);\n",
            "DROP TABLE accounts;\n",
        );
        p.data_step("20250101T090100_accounts", STEP);
        let o = p.run(&["--source", &src, "up", "--continue-on-error"]);
        assert!(o.status.success(), "{backend:?}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("source 4 = written 2 + skipped 1 + rejected 1"),
            "{}",
            stdout(&o)
        );
        assert_eq!(
            p.target_sql("SELECT legacy_id || ' ' || email || ' ' || created_at FROM accounts ORDER BY legacy_id"),
            "1 a@x.org 2020-01-02T03:04:05\n4 d@x.org 2021-06-07T08:09:10"
        );
        let rejects = p.json(&["--source", &src, "rejects", "list"]);
        assert_eq!(rejects[0]["source_key"], "3");
    }
}

#[test]
fn unreachable_source_is_a_clear_error_and_loses_nothing() {
    let p = TestProject::new(Backend::Sqlite);
    p.schema_step(
        "20250101T090000_schema",
        "CREATE TABLE accounts (id TEXT PRIMARY KEY, legacy_id TEXT, email TEXT, created_at TEXT);\n",
        "DROP TABLE accounts;\n",
    );
    p.data_step("20250101T090100_accounts", STEP);
    let o = p.run(&["--source", "mysql://root:Hunter2Pw@127.0.0.1:1/legacy", "up"]);
    // Pre-flight reaches the source before anything is written: the run is refused (exit 4).
    assert_eq!(o.status.code(), Some(4));
    let e = stderr(&o);
    assert!(
        e.contains("cannot connect to the source") && e.contains("***") && !e.contains("Hunter2Pw"),
        "{e}"
    );
    // nothing was applied, not even the schema step before it; everything can run later
    p.assert_states(&["pending", "pending"]);
    assert!(p.user_tables().is_empty(), "{:?}", p.user_tables());
    // a missing SQLite source file says which file
    let o = p.run(&["up"]);
    assert!(
        stderr(&o).contains("source.db") && stderr(&o).contains("does not exist"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn malformed_step_file_names_file_and_line() {
    let p = TestProject::new(Backend::Sqlite);
    p.data_step(
        "20250101T090100_accounts",
        &STEP.replace("on_duplicate = \"skip\"", "on_duplicate = \"skip\"\nmystery = 1"),
    );
    p.source_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, created_at TEXT);");
    let o = p.run(&["up"]);
    // found by pre-flight, before anything runs: refused
    assert_eq!(o.status.code(), Some(4));
    let e = stderr(&o);
    assert!(
        e.contains("step.toml") && e.contains("mystery") && e.contains("line"),
        "{e}"
    );
}

#[test]
fn demo_runs_headless_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let o = std::process::Command::new(support::bin())
        .args(["demo", demo.to_str().unwrap(), "--rows", "300", "--no-console"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("applied"), "{out}");
    let accounts = support::sqlite3(&demo.join("target.db"), "SELECT COUNT(*) FROM accounts");
    let users = support::sqlite3(&demo.join("legacy.db"), "SELECT COUNT(*) FROM users");
    assert!(accounts.parse::<i64>().unwrap() > 0 && accounts.parse::<i64>().unwrap() < users.parse::<i64>().unwrap());
    // the books balance for every step, and the accounts step read every user
    let ledger = support::sqlite3(
        &demo.join("target.db"),
        "SELECT name, rows_source, rows_written + rows_skipped + rows_rejected + rows_merged FROM cutover_ledger WHERE kind <> 'schema'",
    );
    assert_eq!(ledger.lines().count(), 10, "{ledger}");
    for line in ledger.lines() {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f[1], f[2], "{line}");
        if f[0] == "accounts" {
            assert_eq!(f[1], users);
        }
    }
    // verify passes on the demo as built
    let v = std::process::Command::new(support::bin())
        .args(["-C", demo.to_str().unwrap(), "verify"])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", stdout(&v));
    // password hashes are copied untouched, and never appear in the reject store's output
    let rejects = std::process::Command::new(support::bin())
        .args(["-C", demo.to_str().unwrap(), "rejects", "list", "--json"])
        .output()
        .unwrap();
    let text = stdout(&rejects);
    assert!(text.contains("<redacted>") && !text.contains("$2b$12$"), "{text}");
}
