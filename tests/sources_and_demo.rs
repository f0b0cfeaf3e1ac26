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
        assert_eq!(rejects.as_array().map(Vec::len), Some(1), "{rejects}");
        assert_eq!(rejects[0]["source_key"], "3");
        // The ledger's books against the MariaDB table, the target table and the reject store.
        let status = p.json(&["--source", &src, "status"]);
        let c = &status["migrations"][1]["counts"];
        let k = |key: &str| c[key].as_u64().unwrap_or_else(|| panic!("no counts.{key}: {c}"));
        let source_rows: u64 = maria
            .mysql(&src, "SELECT COUNT(*) FROM users")
            .trim()
            .parse()
            .expect("count");
        assert_eq!(k("source"), source_rows, "{c}");
        assert_eq!(k("written"), p.count("accounts") as u64, "{c}");
        assert_eq!(k("rejected"), 1, "{c}");
        assert_eq!(
            k("source"),
            k("written") + k("skipped") + k("rejected") + k("merged"),
            "{c}"
        );
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
    // The generator's manifest: what it planted and what a correct run must produce.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo.join("legacy.db.manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("not a count in the manifest: {v}"));
    let expected = &manifest["expected"];
    let outcome = |table: &str, k: &str| n(&expected["outcomes"][table][k]);
    let legacy_rows = |table: &str| n(&manifest["tables"][table]);
    let target = |sql: &str| support::sqlite3(&demo.join("target.db"), sql);
    let count = |table: &str| -> u64 {
        target(&format!("SELECT COUNT(*) FROM {table}"))
            .parse()
            .expect("a count")
    };
    // Every table of the new schema holds exactly what the manifest expects.
    for table in [
        "accounts",
        "persons",
        "parent_child_views",
        "clinician_patient_views",
        "access_grants",
        "screenings",
        "appointments",
        "documents",
    ] {
        assert_eq!(count(table), n(&expected[table]), "{table}");
    }
    // The books of every step, against the manifest's outcomes, the legacy tables' own sizes
    // and the reject store; a step missing from the ledger fails.
    let ledger: std::collections::HashMap<String, [u64; 5]> = target(
        "SELECT name, rows_source, rows_written, rows_skipped, rows_rejected, rows_merged FROM cutover_ledger WHERE kind <> 'schema'",
    )
    .lines()
    .map(|l| {
        let f: Vec<&str> = l.split('|').collect();
        let c = |i: usize| f[i].parse::<u64>().expect("a ledger count");
        (f[0].to_string(), [c(1), c(2), c(3), c(4), c(5)])
    })
    .collect();
    let step = |name: &str| {
        ledger
            .get(name)
            .unwrap_or_else(|| panic!("no ledger row for {name}: {ledger:?}"))
    };
    // [source, written, skipped, rejected, merged]
    let (src, written, skipped, rejected, merged) = (0, 1, 2, 3, 4);
    assert_eq!(ledger.len(), 10, "{ledger:?}");
    let users = step("accounts");
    assert_eq!(users[src], legacy_rows("users"));
    assert_eq!(
        [users[written], users[skipped], users[rejected], users[merged]],
        [
            outcome("users", "written"),
            outcome("users", "skipped"),
            outcome("users", "rejected"),
            0
        ]
    );
    let persons = step("persons");
    assert_eq!(persons[src], legacy_rows("patients") + legacy_rows("children"));
    assert_eq!(
        persons[written],
        outcome("patients", "written") + outcome("children", "written")
    );
    assert_eq!(persons[merged], outcome("children", "merged"));
    assert_eq!(
        persons[rejected],
        outcome("patients", "rejected") + outcome("children", "rejected")
    );
    assert_eq!(step("child_views")[src], legacy_rows("children"));
    let links = step("link_views");
    assert_eq!(links[src], legacy_rows("parent_children"));
    assert_eq!(
        [links[written], links[skipped], links[rejected]],
        [
            outcome("parent_children", "written"),
            outcome("parent_children", "skipped"),
            outcome("parent_children", "rejected")
        ]
    );
    assert_eq!(
        step("child_views")[written] + links[written],
        n(&expected["parent_child_views"])
    );
    let clinicians = step("clinician_views");
    assert_eq!(clinicians[src], legacy_rows("patients"));
    assert_eq!(clinicians[written], n(&expected["clinician_patient_views"]));
    let grants = step("access_grants");
    assert_eq!(grants[src], legacy_rows("consent_grants"));
    assert_eq!(
        [grants[written], grants[rejected]],
        [
            outcome("consent_grants", "written"),
            outcome("consent_grants", "rejected")
        ]
    );
    let (ps, cs) = (step("patient_screenings"), step("child_screenings"));
    assert_eq!(ps[src] + cs[src], legacy_rows("screenings"));
    assert_eq!(
        [ps[written] + cs[written], ps[rejected] + cs[rejected]],
        [outcome("screenings", "written"), outcome("screenings", "rejected")]
    );
    for t in ["appointments", "documents"] {
        let s = step(t);
        assert_eq!(s[src], legacy_rows(t), "{t}");
        assert_eq!(
            [s[written], s[skipped], s[rejected], s[merged]],
            [outcome(t, "written"), outcome(t, "skipped"), outcome(t, "rejected"), 0],
            "{t}"
        );
    }
    // The ledger's rejected counts are the reject store's open errors, step by step.
    let store: std::collections::HashMap<String, u64> = target(
        "SELECT l.name, COUNT(r.id) FROM cutover_ledger l LEFT JOIN cutover_rejects r ON r.version = l.version AND r.level = 'error' AND r.state = 'open' WHERE l.kind <> 'schema' GROUP BY l.name",
    )
    .lines()
    .map(|l| {
        let (name, c) = l.split_once('|').expect("name|count");
        (name.to_string(), c.parse().expect("count"))
    })
    .collect();
    for (name, c) in &ledger {
        assert_eq!(store.get(name), Some(&c[rejected]), "{name}: the reject store");
    }

    // verify passes on the demo as built, with every check the project defines: the ledger,
    // per non-schema step its books, its source's row count and its rejects, each entry of
    // verify.toml, and the foreign keys of each target table that has any.
    let v = std::process::Command::new(support::bin())
        .args(["-C", demo.to_str().unwrap(), "verify", "--json"])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    let report: serde_json::Value = serde_json::from_str(stdout(&v).trim()).expect("verify --json");
    let checks = report["checks"].as_array().expect("checks");
    let data_steps = std::fs::read_dir(demo.join("migrations"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("step.toml").exists())
        .count();
    assert_eq!(data_steps, 10);
    let verify_toml = std::fs::read_to_string(demo.join("verify.toml")).expect("verify.toml");
    let entries = verify_toml
        .lines()
        .filter(|l| ["[[expect]]", "[[checksum]]", "[[documents]]"].contains(&l.trim()))
        .count();
    let fk_tables = target(
        "SELECT COUNT(*) FROM sqlite_master m WHERE m.type = 'table' AND m.name NOT LIKE 'cutover_%' AND EXISTS (SELECT 1 FROM pragma_foreign_key_list(m.name))",
    )
    .parse::<usize>()
    .expect("count");
    assert_eq!(
        checks.len(),
        1 + 3 * data_steps + entries + fk_tables,
        "{}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    assert_eq!(report["ok"], true);
    assert!(checks.iter().all(|c| c["ok"] == true), "{report}");

    // password hashes are copied untouched: each account's hash is its legacy user's
    let hashes = target(&format!(
        "ATTACH '{}' AS legacy; SELECT COUNT(*), SUM(a.password_hash = u.password_hash), SUM(a.password_hash LIKE '$2b$%') FROM accounts a JOIN legacy.users u ON u.id = a.legacy_user_id",
        demo.join("legacy.db").display()
    ));
    let accounts = n(&expected["accounts"]);
    assert_eq!(
        hashes,
        format!("{accounts}|{accounts}|{accounts}"),
        "(accounts, equal hashes, bcrypt hashes)"
    );
    // and never appear in the reject store's output
    let rejects = std::process::Command::new(support::bin())
        .args(["-C", demo.to_str().unwrap(), "rejects", "list", "--json"])
        .output()
        .unwrap();
    let text = stdout(&rejects);
    assert!(text.contains("<redacted>") && !text.contains("$2b$12$"), "{text}");
}
