//! `cutover verify` on SQLite and a real PostgreSQL target: accounting and the reject store,
//! declared expectations and content checksums, foreign-key integrity, documents in a file
//! store, and broken declarations reported as failed checks.

mod common;
#[macro_use]
mod support;

use sha2::{Digest, Sha256};
use support::{Backend, TestProject, stderr, stdout};

const VERIFY_FAILED: i32 = 5;

const SCHEMA_UP: &str = "CREATE TABLE accounts (id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, email TEXT NOT NULL UNIQUE, role TEXT NOT NULL);
CREATE TABLE orders (id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, account_id TEXT NOT NULL REFERENCES accounts (id), amount DOUBLE PRECISION);
";
const SCHEMA_DOWN: &str = "DROP TABLE orders;\nDROP TABLE accounts;\n";

const ACCOUNTS_STEP: &str = r#"kind = "data"
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
validate = [{ rule = "required" }, { rule = "email" }]

[[fields]]
target = "role"
source = "role"
transforms = ["trim", { map = { values = { parent = "parent", Parent = "parent", doctor = "clinician" } } }]
"#;

const ORDERS_STEP: &str = r#"kind = "data"
[source]
table = "orders"
key = "id"

[target]
table = "orders"

[id_map]
column = "id"
map = "orders"

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "account_id"
source = "user_id"
transforms = [{ lookup = { map = "users" } }]

[[fields]]
target = "amount"
source = "amount"
"#;

/// The rows that go through: valid roles only (u2's "nurse" is rejected, with its order).
const VALID: &str = "trim(role) IN ('parent', 'Parent', 'doctor')";

fn verify_toml() -> String {
    format!(
        r#"
[[expect]]
name = "accounts = users - duplicate emails - unknown roles"
source = "SELECT COUNT(DISTINCT lower(trim(email))) FROM users WHERE {VALID}"
target = "SELECT COUNT(*) FROM accounts"

[[expect]]
name = "orders written"
target = "SELECT COUNT(*) FROM orders"
equals = 2

[[expect]]
name = "order total"
source = "SELECT SUM(CAST(o.amount AS REAL)) FROM orders o JOIN users u ON u.id = o.user_id WHERE {VALID}"
target = "SELECT SUM(amount) FROM orders"

[[expect]]
name = "order total as a decimal"
source = "SELECT SUM(CAST(o.amount AS REAL)) FROM orders o JOIN users u ON u.id = o.user_id WHERE {VALID}"
target = "SELECT SUM(CAST(amount AS NUMERIC(10, 2))) FROM orders"

[[expect]]
name = "orders counted by a bigint sum"
target = "SELECT SUM(CAST(1 AS BIGINT)) FROM orders"
equals = 2

[[checksum]]
name = "account emails"
source = "SELECT DISTINCT lower(trim(email)) FROM users WHERE {VALID}"
target = "SELECT email FROM accounts"

[[checksum]]
name = "order amounts"
source = "SELECT o.id, CAST(o.amount AS REAL) FROM orders o JOIN users u ON u.id = o.user_id WHERE {VALID}"
target = "SELECT legacy_id, amount FROM orders"
"#
    )
}

/// users u1..u4 (u3 a duplicate of u1's email, u2 an unknown role) and three orders (u2's is
/// rejected as waiting); applied with --continue-on-error.
fn applied_project(b: Backend) -> TestProject {
    let p = TestProject::new(b);
    p.source_sql(
        "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT, role TEXT);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id TEXT, amount TEXT);
         INSERT INTO users VALUES ('u1', ' Ann@Example.COM ', 'parent'), ('u2', 'bob@example.com', 'nurse'),
                                  ('u3', 'ann@example.com', 'Parent'), ('u4', 'cy@example.com', 'doctor');
         INSERT INTO orders VALUES (1, 'u1', '12.50'), (2, 'u2', '3'), (3, 'u3', '7');",
    );
    p.schema_step("20250101T090000_schema", SCHEMA_UP, SCHEMA_DOWN);
    p.data_step("20250101T090100_accounts", ACCOUNTS_STEP);
    p.data_step("20250101T090200_orders", ORDERS_STEP);
    std::fs::write(p.path().join("verify.toml"), verify_toml()).expect("verify.toml");
    let o = p.run(&["up", "--continue-on-error"]);
    assert!(o.status.success(), "up: {}\n{}", stdout(&o), stderr(&o));
    assert_eq!(p.count("accounts"), 2);
    assert_eq!(p.count("orders"), 2);
    p
}

/// `verify --json`: the exit code and the report.
fn verify_json(p: &TestProject) -> (i32, serde_json::Value) {
    let o = p.run(&["verify", "--json"]);
    let out = stdout(&o);
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\nstderr: {}", stderr(&o)));
    (o.status.code().unwrap_or(-1), v)
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check '{name}' in {report:#}"))
}

fn failed_names(report: &serde_json::Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect()
}

fn passing_project_verifies(b: Backend) {
    let p = applied_project(b);
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["ok"], true, "{r:#}");
    assert!(failed_names(&r).is_empty(), "{r:#}");
    for c in r["checks"].as_array().unwrap() {
        for k in ["name", "kind", "ok", "source", "target", "detail"] {
            assert!(c.get(k).is_some(), "{k} missing in {c}");
        }
    }
    let kinds: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["kind"].as_str())
        .collect();
    for k in ["ledger", "accounting", "rejects", "expect", "checksum", "foreign_keys"] {
        assert!(kinds.contains(&k), "no {k} check: {r:#}");
    }
    // accounting per data step, cross-checked with the reject store
    let acc = check(&r, "accounting 20250101T090100_accounts");
    assert_eq!(
        (acc["source"].as_i64(), acc["target"].as_i64()),
        (Some(4), Some(4)),
        "{acc}"
    );
    assert!(
        acc["detail"]
            .as_str()
            .unwrap()
            .contains("written 2 + skipped 1 + rejected 1"),
        "{acc}"
    );
    let rej = check(&r, "rejects 20250101T090200_orders");
    assert_eq!(
        (rej["source"].as_i64(), rej["target"].as_i64()),
        (Some(1), Some(1)),
        "{rej}"
    );
    // expectations: numbers of both sides; a real sum on one side equals the other
    let e = check(&r, "accounts = users - duplicate emails - unknown roles");
    assert_eq!((e["source"].as_i64(), e["target"].as_i64()), (Some(2), Some(2)), "{e}");
    let e = check(&r, "orders written");
    assert_eq!(
        (e["source"].clone(), e["target"].as_i64()),
        (serde_json::Value::Null, Some(2)),
        "{e}"
    );
    let e = check(&r, "order total");
    assert_eq!(e["ok"], true, "{e}");
    // PostgreSQL returns NUMERIC for these: read, and compared by value
    for name in ["order total as a decimal", "orders counted by a bigint sum"] {
        assert_eq!(check(&r, name)["ok"], true, "{:#}", check(&r, name));
    }
    assert_eq!(check(&r, "orders counted by a bigint sum")["target"].as_i64(), Some(2));
    // checksums: the same digest, the row counts in the detail; text ids equal integer ids
    for name in ["account emails", "order amounts"] {
        let c = check(&r, name);
        assert_eq!(c["source"], c["target"], "{c}");
        assert_eq!(c["source"].as_str().map(str::len), Some(32), "{c}");
        assert!(c["detail"].as_str().unwrap().contains("source 2, target 2"), "{c}");
    }
    let fk = check(&r, "foreign keys orders");
    assert_eq!(fk["target"].as_i64(), Some(0), "{fk}");
    // the text form: a table and a verdict, exit 0
    let o = p.run(&["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("RESULT"), "{text}");
    assert!(text.contains("verified: all"), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
}
both!(passing_project_verifies);

fn deleted_row_fails_expectation_and_checksum(b: Backend) {
    let p = applied_project(b);
    p.target_sql("DELETE FROM accounts WHERE email = 'cy@example.com'");
    let (code, r) = verify_json(&p);
    assert_eq!(code, VERIFY_FAILED, "{r:#}");
    assert_eq!(r["ok"], false);
    assert_eq!(
        failed_names(&r),
        vec!["accounts = users - duplicate emails - unknown roles", "account emails"],
        "{r:#}"
    );
    let e = check(&r, "accounts = users - duplicate emails - unknown roles");
    assert_eq!((e["source"].as_i64(), e["target"].as_i64()), (Some(2), Some(1)), "{e}");
    assert!(e["detail"].as_str().unwrap().contains("source 2 ≠ target 1"), "{e}");
    let c = check(&r, "account emails");
    assert_ne!(c["source"], c["target"], "{c}");
    assert!(c["detail"].as_str().unwrap().contains("source 2, target 1"), "{c}");
    // the text form shows both sides and the failing checks
    let o = p.run(&["verify"]);
    assert_eq!(o.status.code(), Some(VERIFY_FAILED));
    let text = stdout(&o);
    assert!(text.contains("FAIL"), "{text}");
    assert!(text.contains("FAILED: 2 of"), "{text}");
}
both!(deleted_row_fails_expectation_and_checksum);

fn updated_value_fails_checksum(b: Backend) {
    let p = applied_project(b);
    p.target_sql("UPDATE orders SET amount = 8 WHERE legacy_id = '3'");
    let (code, r) = verify_json(&p);
    assert_eq!(code, VERIFY_FAILED, "{r:#}");
    assert_eq!(
        failed_names(&r),
        vec!["order total", "order total as a decimal", "order amounts"],
        "{r:#}"
    );
    let c = check(&r, "order amounts");
    assert!(c["detail"].as_str().unwrap().contains("source 2, target 2"), "{c}");
    assert!(c["detail"].as_str().unwrap().contains("differs"), "{c}");
    let e = check(&r, "order total");
    assert_eq!(e["source"].as_f64(), Some(19.5), "{e}");
    assert_eq!(e["target"].as_f64(), Some(20.5), "{e}");
}
both!(updated_value_fails_checksum);

fn orphan_reference_fails_foreign_keys(b: Backend) {
    let p = applied_project(b);
    let insert = "INSERT INTO orders (id, legacy_id, account_id, amount) VALUES ('o-x', '99', 'no-such-account', 1)";
    match b {
        Backend::Sqlite => p.target_sql(&format!("PRAGMA foreign_keys=OFF; {insert};")),
        Backend::Postgres => p.target_sql(&format!("SET session_replication_role = replica; {insert};")),
    };
    let (code, r) = verify_json(&p);
    assert_eq!(code, VERIFY_FAILED, "{r:#}");
    let fk = check(&r, "foreign keys orders");
    assert_eq!(fk["ok"], false, "{fk}");
    assert_eq!(fk["target"].as_i64(), Some(1), "{fk}");
    assert!(fk["detail"].as_str().unwrap().contains("accounts"), "{fk}");
    let e = check(&r, "orders written");
    assert_eq!(e["ok"], false, "{e}");
    assert_eq!(e["target"].as_i64(), Some(3), "{e}");
    assert!(e["detail"].as_str().unwrap().contains("target 3 ≠ expected 2"), "{e}");
}
both!(orphan_reference_fails_foreign_keys);

fn reject_store_disagreeing_with_ledger_fails(b: Backend) {
    let p = applied_project(b);
    p.target_sql("DELETE FROM cutover_rejects WHERE source_table = 'users'");
    let (code, r) = verify_json(&p);
    assert_eq!(code, VERIFY_FAILED, "{r:#}");
    assert_eq!(failed_names(&r), vec!["rejects 20250101T090100_accounts"], "{r:#}");
    let c = check(&r, "rejects 20250101T090100_accounts");
    assert_eq!((c["source"].as_i64(), c["target"].as_i64()), (Some(1), Some(0)), "{c}");
    // and a ledger whose books do not balance
    p.target_sql("UPDATE cutover_ledger SET rows_source = 5 WHERE version = '20250101T090200'");
    let (_, r) = verify_json(&p);
    let c = check(&r, "accounting 20250101T090200_orders");
    assert_eq!(c["ok"], false, "{c}");
    assert_eq!((c["source"].as_i64(), c["target"].as_i64()), (Some(5), Some(3)), "{c}");
}
both!(reject_store_disagreeing_with_ledger_fails);

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn documents_in_the_store_are_checked(b: Backend) {
    let p = TestProject::new(b);
    p.source_sql("CREATE TABLE t (id INTEGER);");
    let files: [(&str, &[u8]); 3] = [
        ("ab/one.pdf", b"%PDF one"),
        ("cd/two.txt", b"two\n"),
        ("three.bin", &[0u8, 1, 2, 255]),
    ];
    let mut up = String::from(
        "CREATE TABLE documents (id INTEGER PRIMARY KEY, file_name TEXT, sha256 TEXT, storage_key TEXT);\n",
    );
    for (i, (key, bytes)) in files.iter().enumerate() {
        let path = p.path().join("document-store").join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        up.push_str(&format!(
            "INSERT INTO documents VALUES ({i}, 'f{i}', '{}', '{key}');\n",
            sha256_hex(bytes)
        ));
    }
    // a document row without stored bytes is fine
    up.push_str("INSERT INTO documents VALUES (9, 'empty', NULL, NULL);\n");
    p.schema_step("20250101T090000_documents", &up, "DROP TABLE documents;\n");
    std::fs::write(
        p.path().join("verify.toml"),
        "[[documents]]\ntable = \"documents\"\nsha256 = \"sha256\"\nstorage_key = \"storage_key\"\nstore = \"document-store\"\n",
    )
    .unwrap();
    p.ok(&["up"]);
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "{r:#}");
    let d = check(&r, "documents documents");
    assert_eq!((d["source"].as_i64(), d["target"].as_i64()), (Some(3), Some(3)), "{d}");
    // bytes changed on disk, and a file gone
    std::fs::write(p.path().join("document-store/cd/two.txt"), b"tampered\n").unwrap();
    std::fs::remove_file(p.path().join("document-store/three.bin")).unwrap();
    let (code, r) = verify_json(&p);
    assert_eq!(code, VERIFY_FAILED, "{r:#}");
    assert_eq!(failed_names(&r), vec!["documents documents"], "{r:#}");
    let d = check(&r, "documents documents");
    assert_eq!((d["source"].as_i64(), d["target"].as_i64()), (Some(3), Some(1)), "{d}");
    let detail = d["detail"].as_str().unwrap();
    assert!(detail.contains("1 missing (three.bin)"), "{detail}");
    assert!(detail.contains("1 mismatching (cd/two.txt)"), "{detail}");
}
both!(documents_in_the_store_are_checked);

fn broken_declarations_are_failed_checks(b: Backend) {
    let p = applied_project(b);
    std::fs::write(
        p.path().join("verify.toml"),
        r#"
[[expect]]
name = "target typo"
source = "SELECT COUNT(*) FROM users"
target = "SELECT COUNT(*) FROM acounts"

[[expect]]
name = "source typo"
source = "SELEC 1"
target = "SELECT 1"

[[checksum]]
name = "checksum typo"
source = "SELECT email FROM users"
target = "SELECT emial FROM accounts"
"#,
    )
    .unwrap();
    let (code, r) = verify_json(&p);
    assert_eq!(code, VERIFY_FAILED, "{r:#}");
    assert_eq!(
        failed_names(&r),
        vec!["target typo", "source typo", "checksum typo"],
        "{r:#}"
    );
    let t = check(&r, "target typo");
    let detail = t["detail"].as_str().unwrap();
    assert!(detail.starts_with("target query failed"), "{t}");
    assert!(detail.contains("acounts"), "{t}");
    assert_eq!(t["source"].as_i64(), Some(4), "the working side is still shown: {t}");
    assert!(t["target"].is_null(), "{t}");
    let s = check(&r, "source typo");
    assert!(s["detail"].as_str().unwrap().starts_with("source query failed"), "{s}");
    let c = check(&r, "checksum typo");
    assert!(c["detail"].as_str().unwrap().contains("target query failed"), "{c}");
    assert!(c["source"].is_string(), "{c}");
    // a typo in the file itself is an error naming the key (exit 1), not a check
    std::fs::write(
        p.path().join("verify.toml"),
        "[[expect]]\nname = \"x\"\ntarget = \"SELECT 1\"\nequal = 1\n",
    )
    .unwrap();
    let o = p.run(&["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("equal"), "{}", stderr(&o));
    assert!(stderr(&o).contains("verify.toml"), "{}", stderr(&o));
}
both!(broken_declarations_are_failed_checks);

#[test]
fn no_verify_file_still_checks_the_ledger_and_keys() {
    let p = applied_project(Backend::Sqlite);
    std::fs::remove_file(p.path().join("verify.toml")).unwrap();
    let (code, r) = verify_json(&p);
    assert_eq!(code, 0, "{r:#}");
    assert!(
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["kind"] != "expect" && c["kind"] != "checksum")
    );
    check(&r, "foreign keys orders");
    check(&r, "accounting 20250101T090200_orders");
}
