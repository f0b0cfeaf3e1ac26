//! Fixing a secret field of a rejected row (issue 8, item 10): the new value is stored for the
//! retry, but the audit trail records only that the field changed, and the reject store shows
//! and exports the field redacted. The console's dialog sends the same `FixReject` command
//! (tests/console_reducer.rs), so this covers both faces.

mod common;
#[macro_use]
mod support;

use support::{Backend, TestProject};

const SECRET: &str = "NEWSECRET123";

fn project(b: Backend) -> TestProject {
    let p = TestProject::new(b);
    p.source_sql(
        "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT, role TEXT, password_hash TEXT);
         INSERT INTO users VALUES ('u1', 'ann@example.com', 'parent', 'oldhash1'),
                                  ('u2', 'bob@example.com', 'nurse', 'oldhash2');",
    );
    p.schema_step(
        "20250101T090000_schema",
        "CREATE TABLE accounts (legacy_id TEXT PRIMARY KEY, email TEXT NOT NULL, role TEXT NOT NULL, password_hash TEXT);\n",
        "DROP TABLE accounts;\n",
    );
    p.data_step(
        "20250101T090100_accounts",
        r#"kind = "data"
[source]
table = "users"
key = "id"

[target]
table = "accounts"
natural_key = ["legacy_id"]

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "email"
source = "email"

[[fields]]
target = "role"
source = "role"
transforms = [{ map = { values = { parent = "parent", doctor = "clinician" } } }]

[[fields]]
target = "password_hash"
source = "password_hash"
"#,
    );
    p
}

fn a_secret_fix_is_audited_without_its_value(b: Backend) {
    let p = project(b);
    p.ok(&["up", "--continue-on-error"]);
    let rejects = p.json(&["rejects", "list"]);
    let items = rejects.as_array().expect("rejects");
    assert_eq!(items.len(), 1, "{rejects}");
    let id = items[0]["id"].as_i64().expect("id").to_string();
    assert_eq!(items[0]["source_key"], "u2");
    assert_eq!(items[0]["row"]["password_hash"], "<redacted>");

    let out = p.ok(&["rejects", "fix", &id, &format!("password_hash={SECRET}")]);
    assert!(!out.contains(SECRET), "{out}");
    let out = p.ok(&["rejects", "fix", &id, "role=doctor"]);
    assert!(out.contains("role set"), "{out}");

    // The audit trail: the secret's entry names the field and says it changed, nothing else.
    let events = p.target_sql("SELECT detail FROM cutover_events WHERE event = 'reject_fixed' ORDER BY id");
    let lines: Vec<&str> = events.lines().collect();
    assert_eq!(lines.len(), 2, "{events}");
    let secret: serde_json::Value = serde_json::from_str(lines[0]).expect("json");
    assert_eq!(secret["field"], "password_hash");
    assert_eq!(secret["changed"], true);
    assert!(
        secret.get("after").is_none() && secret.get("before").is_none(),
        "{secret}"
    );
    assert!(!events.contains(SECRET) && !events.contains("oldhash2"), "{events}");
    let role: serde_json::Value = serde_json::from_str(lines[1]).expect("json");
    assert_eq!(
        (role["before"].as_str(), role["after"].as_str()),
        (Some("nurse"), Some("doctor"))
    );

    // Shown, listed and exported redacted.
    let show = p.ok(&["rejects", "show", &id]);
    assert!(!show.contains(SECRET) && show.contains("<redacted>"), "{show}");
    let csv = p.path().join("rejects.csv");
    p.ok(&["rejects", "export", "--csv", csv.to_str().expect("utf-8 path")]);
    let exported = std::fs::read_to_string(&csv).expect("csv");
    assert!(
        !exported.contains(SECRET) && exported.contains("<redacted>"),
        "{exported}"
    );

    // The retry writes the fixed row with the new secret.
    p.ok(&["rejects", "retry", &id]);
    assert_eq!(
        p.target_sql("SELECT role || ' ' || password_hash FROM accounts WHERE legacy_id = 'u2'"),
        format!("clinician {SECRET}")
    );
}
both!(a_secret_fix_is_audited_without_its_value);
