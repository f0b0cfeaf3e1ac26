//! Users and configuration (issue 14): the role and setting transforms and the secrecy of
//! password hashes through the real binary, and the `kind = "users"` / `kind = "config"`
//! templates end to end on a collection target.
//!
//! The first tests use an ordinary table step with the transforms the templates expand into
//! (`utf8`, `roles`, `roles_to_permissions`, `config_key`, `config_value`). The template tests
//! run the expanded steps end to end on a collection target (the `collection` table and
//! `data.` paths), on SQLite and PostgreSQL.

mod common;
#[macro_use]
mod support;

use support::{Backend, TestProject};

/// Every hash in the source carries this marker, so no output may contain it.
const MARK: &str = "HASHMARK";
/// A hash with blanks around it and characters a trim or a re-encoding would touch.
const HASH_TEXT: &str = " $2b$12$HASHMARKtext/Qx.9zZ+é ";
const HASH_BLOB: &str = "$2b$12$HASHMARKblob/abcdefghijklmnopqrstuv";

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02X}")).collect()
}

/// Users: two good ones (a text hash, a UTF-8 blob hash), and three rejected: a bad email, an
/// unknown role, a hash whose bytes are not UTF-8.
fn users_source(p: &TestProject) {
    p.source_sql(&format!(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, full_name TEXT, password_hash BLOB, roles TEXT);
         INSERT INTO users VALUES
           (1, '  Ada@Example.ORG ', 'Ada', '{}', 'Clinician; admin'),
           (2, 'bob@example.org', 'Bob', X'{}', '[\"patient\"]'),
           (3, 'not-an-address', 'Cy', '$2b$12$HASHMARKbademail', 'admin'),
           (4, 'dee@example.org', 'Dee', '$2b$12$HASHMARKnurse', 'nurse,patient'),
           (5, 'eve@example.org', 'Eve', X'{}FFFE', 'patient');",
        HASH_TEXT.replace('\'', "''"),
        hex(HASH_BLOB),
        hex("$2b$12$HASHMARK"),
    ));
}

/// Every place a rejected user is shown: none may hold a hash.
fn assert_no_hash_shown(p: &TestProject, up_output: &str) {
    assert!(!up_output.contains(MARK), "up printed a hash:\n{up_output}");
    let list = p.json(&["rejects", "list"]);
    let items = list.as_array().expect("rejects").clone();
    assert_eq!(items.len(), 3, "{list}");
    let text = list.to_string();
    assert!(!text.contains(MARK), "rejects list shows a hash: {text}");
    assert!(text.contains("<redacted>"), "{text}");
    for r in &items {
        let id = r["id"].as_i64().expect("id").to_string();
        let shown = p.ok(&["rejects", "show", &id]);
        assert!(!shown.contains(MARK), "rejects show {id}: {shown}");
        let shown = p.json(&["rejects", "show", &id]).to_string();
        assert!(!shown.contains(MARK), "rejects show {id} --json: {shown}");
    }
    let listed = p.ok(&["rejects", "list"]);
    assert!(!listed.contains(MARK), "{listed}");
    let csv = p.path().join("rejects.csv");
    p.ok(&["rejects", "export", "--csv", csv.to_str().expect("utf-8 path")]);
    let exported = std::fs::read_to_string(&csv).expect("csv");
    assert!(
        !exported.contains(MARK) && exported.contains("<redacted>"),
        "{exported}"
    );
    let report = p.ok(&["report"]);
    assert!(!report.contains(MARK), "{report}");
    let report = p.json(&["report"]).to_string();
    assert!(!report.contains(MARK), "{report}");
}

const ROLE_TABLE: &str =
    r#"{ admin = ['read("any")', 'write("any")'], clinician = ['read("team:clinicians")'], patient = [] }"#;

fn rules(p: &TestProject) -> Vec<(String, String, String)> {
    let list = p.json(&["rejects", "list"]);
    let mut out: Vec<(String, String, String)> = list
        .as_array()
        .expect("rejects")
        .iter()
        .map(|r| {
            (
                r["source_key"].as_str().unwrap_or_default().to_string(),
                r["rule"].as_str().unwrap_or_default().to_string(),
                r["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The role and hash transforms on an ordinary table: the hash arrives byte for byte, the
/// roles and permissions as JSON arrays, and no output shows a hash.
#[test]
fn roles_and_password_hashes_through_a_table_step() {
    let p = TestProject::new(Backend::Sqlite);
    users_source(&p);
    p.schema_step(
        "20250101T090000_schema",
        "CREATE TABLE accounts (id TEXT PRIMARY KEY, legacy_id INTEGER, email TEXT NOT NULL UNIQUE, roles TEXT, permissions TEXT, password_hash TEXT);\n",
        "DROP TABLE accounts;\n",
    );
    p.data_step(
        "20250101T090100_accounts",
        &format!(
            r#"kind = "data"
[source]
table = "users"
key = "id"
[target]
table = "accounts"
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
validate = [{{ rule = "required" }}, {{ rule = "email" }}]
[[fields]]
target = "roles"
source = "roles"
transforms = [{{ roles = {{ known = ["admin", "clinician", "patient"] }} }}]
[[fields]]
target = "permissions"
source = "roles"
transforms = [{{ roles_to_permissions = {{ roles = {ROLE_TABLE}, every = ['read("user:{{_id}}")'], on_unknown = "drop" }} }}]
[[fields]]
target = "password_hash"
source = "password_hash"
transforms = ["utf8"]
"#
        ),
    );
    let o = p.run(&["up", "--continue-on-error"]);
    let up = format!("{}{}", support::stdout(&o), support::stderr(&o));
    assert_eq!(p.count("accounts"), 2, "{up}");
    // Byte for byte: blanks and the accented letter of the text hash, the blob's bytes.
    assert_eq!(
        p.target_sql("SELECT hex(password_hash) FROM accounts ORDER BY legacy_id"),
        format!("{}\n{}", hex(HASH_TEXT), hex(HASH_BLOB))
    );
    assert_eq!(
        p.target_sql("SELECT email, roles, permissions FROM accounts ORDER BY legacy_id"),
        concat!(
            "ada@example.org|[\"clinician\",\"admin\"]|[\"read(\\\"user:{_id}\\\")\",\"read(\\\"team:clinicians\\\")\",\"read(\\\"any\\\")\",\"write(\\\"any\\\")\"]\n",
            "bob@example.org|[\"patient\"]|[\"read(\\\"user:{_id}\\\")\"]"
        )
    );
    let got = rules(&p);
    let brief: Vec<(&str, &str)> = got.iter().map(|(k, r, _)| (k.as_str(), r.as_str())).collect();
    assert_eq!(brief, [("3", "email"), ("4", "roles"), ("5", "utf8")]);
    assert!(got[1].2.contains("unknown role 'nurse'"), "{:?}", got[1]);
    assert!(got[2].2.contains("value redacted"), "{:?}", got[2]);
    assert_no_hash_shown(&p, &up);
}

/// Setting keys and typed values on an ordinary table.
#[test]
fn settings_keys_and_types_through_a_table_step() {
    let p = TestProject::new(Backend::Sqlite);
    p.source_sql(
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT);
         INSERT INTO settings VALUES ('smtp_port', '587'), ('booking', 'yes'), ('brand', '{\"colour\":\"teal\"}'),
           ('smtp_host', 'mx.example.org'), ('fax', '0123'), ('smtp_port_old', 'twenty-five');",
    );
    p.schema_step(
        "20250101T090000_schema",
        "CREATE TABLE settings_new (id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, value, legacy_key TEXT);\n",
        "DROP TABLE settings_new;\n",
    );
    let keys = r#"{ smtp_port = "mail.smtp.port", smtp_port_old = "mail.smtp.port_old", booking = "features.booking", brand = "branding", smtp_host = "mail.smtp.host" }"#;
    p.data_step(
        "20250101T090100_settings",
        &format!(
            r#"kind = "data"
[source]
table = "settings"
key = "key"
[target]
table = "settings_new"
natural_key = ["key"]
[id_map]
column = "id"
map = "config"
[[fields]]
target = "key"
source = "key"
transforms = [{{ config_key = {{ keys = {keys} }} }}]
[[fields]]
target = "value"
source = "value"
transforms = [{{ config_value = {{ key_column = "key", keys = {keys}, types = {{ "mail.smtp.port" = "integer", "mail.smtp.port_old" = "integer", "features.booking" = "boolean", branding = "json" }} }} }}]
[[fields]]
target = "legacy_key"
source = "key"
"#
        ),
    );
    p.run(&["up", "--continue-on-error"]);
    assert_eq!(
        p.target_sql("SELECT key, typeof(value), value, legacy_key FROM settings_new ORDER BY key"),
        [
            "branding|text|{\"colour\":\"teal\"}|brand",
            "features.booking|integer|1|booking",
            "mail.smtp.host|text|mx.example.org|smtp_host",
            "mail.smtp.port|integer|587|smtp_port",
        ]
        .join("\n")
    );
    let got = rules(&p);
    let brief: Vec<(&str, &str)> = got.iter().map(|(k, r, _)| (k.as_str(), r.as_str())).collect();
    assert_eq!(brief, [("fax", "config_key"), ("smtp_port_old", "config_type")]);
    assert!(got[1].2.contains("'twenty-five' is not an integer"), "{:?}", got[1]);
}

// ---- the templates on a collection target ----

const USERS_STEP: &str = r#"kind = "users"
description = "legacy users -> users collection"
[source]
table = "users"
key = "id"
[target]
collection = "users"
on_duplicate = "skip"
[id_map]
map = "users"
[users]
email = "email"
name = "full_name"
password_hash = "password_hash"
hash_algorithm = "bcrypt"
roles = "roles"
on_unknown_role = "reject"
[users.role_permissions]
admin = ['read("any")', 'write("any")']
clinician = ['read("team:clinicians")', 'write("team:clinicians")']
patient = []
"*" = ['read("user:{_id}")', 'write("user:{_id}")']
[[fields]]
target = "legacy_id"
source = "id"
"#;

/// The text at a path of `data`, as SQL of the target.
fn at(p: &TestProject, path: &str) -> String {
    match p.backend {
        Backend::Sqlite => format!("json_extract(data, '$.{path}')"),
        Backend::Postgres => format!("(data #>> '{{{}}}')", path.replace('.', ",")),
    }
}

/// Upper-case hex of a text expression's UTF-8 bytes, as SQL of the target.
fn hex_sql(p: &TestProject, expr: &str) -> String {
    match p.backend {
        Backend::Sqlite => format!("hex({expr})"),
        Backend::Postgres => format!("upper(encode(convert_to({expr}, 'UTF8'), 'hex'))"),
    }
}

fn user_where(p: &TestProject, legacy_id: i64) -> String {
    let id = match p.backend {
        Backend::Sqlite => format!("CAST({} AS TEXT)", at(p, "legacy_id")),
        Backend::Postgres => at(p, "legacy_id"),
    };
    format!("WHERE {id} = '{legacy_id}'")
}

fn doc(p: &TestProject, legacy_id: i64, path: &str) -> String {
    p.target_sql(&format!(
        "SELECT {} FROM users {}",
        at(p, path),
        user_where(p, legacy_id)
    ))
}

fn json_of(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn users_template(b: Backend) {
    let p = TestProject::new(b);
    users_source(&p);
    // A sixth user whose email differs from Ada's only by case: a duplicate, skipped.
    p.source_sql("INSERT INTO users VALUES (6, 'ADA@example.org', 'Ada 2', '$2b$12$HASHMARKdup', 'patient');");
    p.data_step("20250101T090000_users", USERS_STEP);
    let o = p.run(&["up", "--continue-on-error"]);
    let up = format!("{}{}", support::stdout(&o), support::stderr(&o));
    assert_eq!(p.count("users"), 2, "{up}");
    for (legacy_id, hash) in [(1, HASH_TEXT), (2, HASH_BLOB)] {
        let sql = format!(
            "SELECT {} FROM users {}",
            hex_sql(&p, &at(&p, "password.hash")),
            user_where(&p, legacy_id)
        );
        assert_eq!(p.target_sql(&sql), hex(hash), "user {legacy_id}");
    }
    assert_eq!(doc(&p, 1, "email"), "ada@example.org");
    assert_eq!(doc(&p, 1, "password.algorithm"), "bcrypt");
    assert_eq!(json_of(&doc(&p, 1, "roles")), serde_json::json!(["clinician", "admin"]));
    let id = p.target_sql(&format!("SELECT _id FROM users {}", user_where(&p, 1)));
    let perms = json_of(&p.target_sql(&format!("SELECT _permissions FROM users {}", user_where(&p, 1))));
    assert_eq!(
        perms,
        serde_json::json!([
            format!("read(\"user:{id}\")"),
            format!("write(\"user:{id}\")"),
            "read(\"team:clinicians\")",
            "write(\"team:clinicians\")",
            "read(\"any\")",
            "write(\"any\")"
        ])
    );
    let bob = p.target_sql(&format!("SELECT _id FROM users {}", user_where(&p, 2)));
    assert_eq!(
        json_of(&p.target_sql(&format!("SELECT _permissions FROM users {}", user_where(&p, 2)))),
        serde_json::json!([format!("read(\"user:{bob}\")"), format!("write(\"user:{bob}\")")])
    );
    let brief: Vec<(String, String)> = rules(&p).into_iter().map(|(k, r, _)| (k, r)).collect();
    assert_eq!(
        brief,
        [
            ("3".into(), "email".into()),
            ("4".into(), "roles".into()),
            ("5".into(), "utf8".into())
        ]
    );
    assert_no_hash_shown(&p, &up);
    p.ok(&["down", "--all", "--yes"]);
    assert_eq!(p.count("users"), 0);
}

#[test]
fn users_template_sqlite() {
    users_template(Backend::Sqlite);
}

#[test]
fn users_template_postgres() {
    users_template(Backend::Postgres);
}

fn config_template(b: Backend) {
    let p = TestProject::new(b);
    p.source_sql(
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT);
         INSERT INTO settings VALUES ('smtp_port', '587'), ('booking', 'yes'), ('brand', '{\"colour\":\"teal\"}'),
           ('smtp_host', 'mx.example.org'), ('fax', '0123'), ('port', 'twenty-five'), ('mail_host', 'mx2.example.org');",
    );
    p.data_step(
        "20250101T090000_config",
        r#"kind = "config"
[source]
table = "settings"
key = "key"
[target]
collection = "config"
[config]
key = "key"
value = "value"
unmapped = "reject"
types = { "mail.smtp.port" = "integer", "features.booking" = "boolean", "branding" = "json" }
[config.keys]
smtp_host = "mail.smtp.host"
mail_host = "mail.smtp.host"
smtp_port = "mail.smtp.port"
port = "mail.smtp.port"
booking = "features.booking"
brand = "branding"
"#,
    );
    p.run(&["up", "--continue-on-error"]);
    let docs = p.target_sql(&format!("SELECT data FROM config ORDER BY {}", at(&p, "key")));
    let docs: Vec<serde_json::Value> = docs
        .lines()
        .map(|l| serde_json::from_str(l).expect("document JSON"))
        .collect();
    assert_eq!(
        docs,
        [
            serde_json::json!({"key": "branding", "value": {"colour": "teal"}, "legacy_key": "brand"}),
            serde_json::json!({"key": "features.booking", "value": true, "legacy_key": "booking"}),
            serde_json::json!({"key": "mail.smtp.host", "value": "mx2.example.org", "legacy_key": "mail_host"}),
            serde_json::json!({"key": "mail.smtp.port", "value": 587, "legacy_key": "smtp_port"}),
        ]
    );
    let rules: Vec<String> = rules(&p).into_iter().map(|(k, r, _)| format!("{k} {r}")).collect();
    // `port` -> mail.smtp.port is refused by its type before its key is checked for duplicates;
    // `smtp_host` comes after `mail_host` (key order) onto the same new key: a duplicate.
    assert_eq!(rules, ["fax config_key", "port config_type", "smtp_host duplicate"]);
}

#[test]
fn config_template_sqlite() {
    config_template(Backend::Sqlite);
}

#[test]
fn config_template_postgres() {
    config_template(Backend::Postgres);
}
