//! The expansion of the templates, and what the expanded steps make of rows. The documents
//! are read by path whether the fields still name their own columns (`email`) or, once the
//! collection normalisation has run, paths into `data` (`data.email`).

use crate::engine::data::pipeline::{CompiledStep, LookupCache, Processed};
use crate::engine::data::spec::{DataStep, DupPolicy};
use crate::engine::store::NewReject;
use crate::engine::transform::{OnUnknownRole, Transform};
use crate::engine::validate::Rule;
use crate::engine::value::Value;
use serde_json::json;

const USERS: &str = r#"
kind = "users"
description = "legacy users -> users collection"
[source]
table = "users"
key = "id"
[target]
on_duplicate = "skip"
[users]
email = "email"
name = "full_name"
password_hash = "password_hash"
hash_algorithm = "bcrypt"
roles = "roles"
on_unknown_role = "reject"
[users.role_permissions]
admin = ['read("any")', 'write("any")']
Clinician = ['read("team:clinicians")', 'write("team:clinicians")']
patient = []
"*" = ['read("user:{_id}")', 'write("user:{_id}")']
[[fields]]
target = "legacy_id"
source = "id"
"#;

const CONFIG: &str = r#"
kind = "config"
[source]
table = "settings"
key = "key"
[config]
value = "value"
unmapped = "reject"
types = { "mail.smtp.port" = "integer", "features.booking" = "boolean", "branding" = "json" }
[config.keys]
smtp_host = "mail.smtp.host"
smtp_port = "mail.smtp.port"
booking_enabled = "features.booking"
brand = "branding"
"#;

/// The step a template expands into, before `DataStep::parse` goes on with it.
fn expanded(text: &str) -> DataStep {
    toml::Value::Table(super::expand(text).unwrap().unwrap())
        .try_into()
        .unwrap()
}

fn targets(s: &DataStep) -> Vec<String> {
    s.fields
        .iter()
        .map(|f| f.target.trim_start_matches("data.").to_string())
        .collect()
}

fn field<'a>(s: &'a DataStep, target: &str) -> &'a crate::engine::data::spec::FieldSpec {
    s.fields
        .iter()
        .find(|f| f.target == target || f.target == format!("data.{target}"))
        .unwrap_or_else(|| panic!("no field {target}"))
}

#[test]
fn a_users_step_expands_into_a_collection_step() {
    // As the template gives it, before the collection normalisation (which turns the
    // natural key into `_key` and the targets into `data.` paths).
    assert!(DataStep::parse(USERS).is_ok());
    let s = expanded(USERS);
    assert_eq!(s.target.collection.as_deref(), Some("users"));
    assert_eq!(s.target.natural_key, ["email"]);
    assert_eq!(s.target.on_duplicate, DupPolicy::Skip);
    let m = s.id_map.as_ref().unwrap();
    assert_eq!(
        (m.column.as_str(), m.map.as_deref(), m.key.as_deref()),
        ("_id", Some("users"), None)
    );
    assert_eq!(s.map_name().as_deref(), Some("users"));
    assert_eq!(
        targets(&s),
        [
            "email",
            "name",
            "password.hash",
            "password.algorithm",
            "roles",
            "_permissions",
            "legacy_id"
        ]
    );
    let email = field(&s, "email");
    assert_eq!(email.source.as_deref(), Some("email"));
    assert_eq!(email.transforms, [Transform::Trim, Transform::Lower]);
    let rules: Vec<&Rule> = email.validate.iter().map(|c| &c.rule).collect();
    assert_eq!(rules, [&Rule::Required, &Rule::Email]);
    // The hash: no trim, no check; only the UTF-8 guard.
    let hash = field(&s, "password.hash");
    assert_eq!(hash.source.as_deref(), Some("password_hash"));
    assert_eq!(hash.transforms, [Transform::Utf8]);
    assert!(hash.validate.is_empty());
    assert!(crate::engine::validate::is_secret_field(&hash.target));
    assert_eq!(
        field(&s, "password.algorithm").value,
        Some(crate::engine::transform::Literal::Text("bcrypt".into()))
    );
    let Transform::Roles(roles) = &field(&s, "roles").transforms[0] else {
        panic!("roles field without the roles transform")
    };
    assert_eq!(roles.known, ["admin", "clinician", "patient"]);
    assert_eq!(roles.on_unknown, OnUnknownRole::Reject);
    let perms = field(&s, "_permissions");
    assert_eq!(perms.source.as_deref(), Some("roles"));
    let Transform::RolesToPermissions(p) = &perms.transforms[0] else {
        panic!("_permissions without roles_to_permissions")
    };
    assert_eq!(p.every, [r#"read("user:{_id}")"#, r#"write("user:{_id}")"#]);
    assert_eq!(
        p.roles["clinician"],
        [r#"read("team:clinicians")"#, r#"write("team:clinicians")"#]
    );
    assert!(p.roles["patient"].is_empty());
    assert_eq!(
        p.on_unknown,
        OnUnknownRole::Drop,
        "the roles field reports unknown roles once"
    );
    assert_eq!(field(&s, "legacy_id").source.as_deref(), Some("id"));
}

#[test]
fn a_minimal_users_step_takes_the_defaults() {
    let s = DataStep::parse(
        "kind = \"users\"\n[source]\ntable = \"accounts\"\nkey = \"id\"\n[target]\ncollection = \"people\"\n[id_map]\nmap = \"people\"\n[users]\nemail = \"mail\"\npassword_hash = \"pw_hash\"\non_unknown_role = \"ignore\"\n[users.role_permissions]\n\"*\" = ['read(\"any\")']\n",
    )
    .unwrap();
    assert_eq!(s.target.collection.as_deref(), Some("people"));
    assert_eq!(s.map_name().as_deref(), Some("people"));
    assert_eq!(s.target.on_duplicate, DupPolicy::Error);
    assert_eq!(targets(&s), ["email", "password.hash", "_permissions"]);
    let perms = field(&s, "_permissions");
    assert_eq!(perms.source, None, "no roles column: every user's permissions only");
}

fn refused(text: &str) -> String {
    match DataStep::parse(text) {
        Ok(s) => panic!("accepted: {s:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn users_steps_are_parsed_strictly() {
    let with = |from: &str, to: &str| {
        assert!(USERS.contains(from), "{from}");
        USERS.replacen(from, to, 1)
    };
    for (text, says) in [
        (with("hash_algorithm", "hash_algo"), "unknown field `hash_algo`"),
        (
            with("on_duplicate", "natural_key = [\"x\"]\non_duplicate"),
            "unknown field `natural_key`",
        ),
        (
            with("[users]\n", "[id_map]\ncolumn = \"id\"\n[users]\n"),
            "unknown field `column`",
        ),
        (with("email = \"email\"\n", ""), "[users] email = \"...\" is required"),
        (
            with("password_hash = \"password_hash\"\n", ""),
            "[users] password_hash = \"...\" is required",
        ),
        (
            with("password_hash = \"password_hash\"", "password_hash = \"pw\""),
            "\"pw\" does not look secret",
        ),
        (with("roles = \"roles\"\n", ""), "[users] roles names no source column"),
        (
            with("on_unknown_role = \"reject\"", "on_unknown_role = \"skip\""),
            "unknown variant `skip`",
        ),
        (with("admin = ", "ADMIN = ['x']\nadmin = "), "names role 'admin' twice"),
        (
            with("patient = []", "patient = ['read(\"user:{id\")']"),
            "unbalanced braces",
        ),
        (
            with("target = \"legacy_id\"", "target = \"password.salt\""),
            "collides with 'password'",
        ),
        (
            with("target = \"legacy_id\"", "target = \"email\""),
            "collides with 'email'",
        ),
    ] {
        let e = refused(&text);
        assert!(e.contains(says), "{says}: {e}");
    }
    let no_roles = USERS
        .split("[users.role_permissions]")
        .next()
        .unwrap_or_default()
        .to_string()
        + "[[fields]]\ntarget = \"legacy_id\"\nsource = \"id\"\n";
    assert!(refused(&no_roles).contains("[users.role_permissions] is empty"));
    let only_every = no_roles.replacen("[[fields]]", "[users.role_permissions]\n\"*\" = []\n[[fields]]", 1);
    assert!(
        refused(&only_every).contains("names no role"),
        "{}",
        refused(&only_every)
    );
    let no_users = USERS.split("[users]").next().unwrap_or_default();
    assert!(refused(no_users).contains("needs a [users] table"));
}

#[test]
fn a_config_step_expands_into_one_document_per_setting() {
    assert!(DataStep::parse(CONFIG).is_ok());
    let s = expanded(CONFIG);
    assert_eq!(s.target.collection.as_deref(), Some("config"));
    assert_eq!(s.target.natural_key, ["key"]);
    assert_eq!(
        s.target.on_duplicate,
        DupPolicy::Error,
        "two old keys onto one new key reject"
    );
    assert_eq!(s.map_name().as_deref(), Some("config"));
    assert_eq!(targets(&s), ["key", "value", "legacy_key"]);
    assert!(
        s.fields
            .iter()
            .all(|f| f.source.as_deref() == Some(if f.target.ends_with("value") { "value" } else { "key" }))
    );
    let Transform::ConfigKey(k) = &field(&s, "key").transforms[0] else {
        panic!("key without config_key")
    };
    assert_eq!(k.keys["smtp_port"], "mail.smtp.port");
    let Transform::ConfigValue(v) = &field(&s, "value").transforms[0] else {
        panic!("value without config_value")
    };
    assert_eq!(v.key_column, "key");
    assert!(field(&s, "legacy_key").transforms.is_empty());
}

#[test]
fn config_steps_are_parsed_strictly() {
    let with = |from: &str, to: &str| {
        assert!(CONFIG.contains(from), "{from}");
        CONFIG.replacen(from, to, 1)
    };
    for (text, says) in [
        (with("unmapped", "unmaped"), "unknown field `unmaped`"),
        (with("value = \"value\"\n", ""), "[config] value = \"...\" is required"),
        (with("\"integer\"", "\"float\""), "unknown variant `float`"),
        (
            with("\"branding\" = \"json\"", "\"brand\" = \"json\""),
            "types names \"brand\"",
        ),
        (
            CONFIG.split("[config.keys]").next().unwrap_or_default().to_string(),
            "[config.keys] is empty",
        ),
        (with("brand = \"branding\"", "brand = \" \""), "maps to an empty key"),
        (
            with("key = \"key\"", "key = [\"a\", \"b\"]"),
            "name the column holding the setting keys",
        ),
        (
            CONFIG.split("[config]").next().unwrap_or_default().to_string(),
            "needs a [config] table",
        ),
        (
            with("[config]", "[[fields]]\ntarget = \"x\"\nsource = \"x\"\n[config]"),
            "unknown field `fields`",
        ),
    ] {
        let e = refused(&text);
        assert!(e.contains(says), "{says}: {e}");
    }
    // Kept unmapped keys may be typed by their old name.
    let keep = with("unmapped = \"reject\"", "unmapped = \"keep\"").replacen(
        "\"branding\" = \"json\"",
        "\"brand\" = \"json\"",
        1,
    );
    assert!(DataStep::parse(&keep).is_ok());
    // A separate key column.
    let s = DataStep::parse(&with("value = \"value\"", "key = \"name\"\nvalue = \"value\"")).unwrap();
    assert_eq!(field(&s, "key").source.as_deref(), Some("name"));
}

#[test]
fn project_kinds_users_and_config_are_data_steps() {
    use crate::engine::project::{StepKind, load_steps};
    let dir = std::env::temp_dir().join(format!("cutover-templates-kinds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (folder, text) in [("20250101T090000_users", USERS), ("20250101T090100_config", CONFIG)] {
        std::fs::create_dir_all(dir.join(folder)).unwrap();
        std::fs::write(dir.join(folder).join("step.toml"), text).unwrap();
    }
    let steps = load_steps(&dir).unwrap();
    assert_eq!(
        steps.iter().map(|s| s.kind).collect::<Vec<_>>(),
        [StepKind::Data, StepKind::Data]
    );
    std::fs::write(
        dir.join("20250101T090100_config").join("step.toml"),
        "kind = \"settings\"\n",
    )
    .unwrap();
    let e = load_steps(&dir).unwrap_err().to_string();
    assert!(e.contains("data, merge, users or config"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- what the expanded steps make of rows ----

fn compiled(text: &str) -> CompiledStep {
    CompiledStep::compile("v1", DataStep::parse(text).unwrap()).unwrap()
}

fn decide(c: &CompiledStep, columns: &[&str], row: Vec<Value>) -> Processed {
    let cols: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let layout = c.layout(&cols);
    c.process(
        &cols,
        &layout,
        &row,
        &LookupCache::default(),
        chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
    )
}

/// A written row as one JSON document by path (whether the fields write their own columns
/// or paths into `data`), `_permissions` with the document's id put back as `{_id}`.
fn document(c: &CompiledStep, p: Processed) -> (serde_json::Value, Vec<NewReject>) {
    let (values, new_id, warnings) = match p {
        Processed::Write {
            values,
            new_id,
            warnings,
            ..
        } => (values, new_id, warnings),
        Processed::Reject(r) => panic!("rejected: {} {}", r.rule, r.reason),
    };
    let mut doc = serde_json::Map::new();
    for (col, v) in c.target_columns.iter().zip(values) {
        match (col.as_str(), v.to_json()) {
            ("data", serde_json::Value::Object(m)) => doc.extend(m),
            // The collection's own columns (id, timestamps, key) are not the template's.
            (c, _) if c.starts_with('_') && c != "_permissions" => {}
            // A collection gives every document its (maybe empty) permissions.
            ("_permissions", serde_json::Value::Null) => {}
            ("_permissions", serde_json::Value::Array(a)) if a.is_empty() => {}
            (_, j) => {
                doc.insert(col.clone(), j);
            }
        }
    }
    let mut doc = serde_json::Value::Object(doc);
    if let (Some(id), Some(p)) = (new_id, doc.get_mut("_permissions")) {
        *p = serde_json::from_str(&p.to_string().replace(&id, "{_id}")).unwrap();
    }
    (doc, warnings)
}

fn rejected(p: Processed) -> NewReject {
    match p {
        Processed::Reject(r) => r,
        Processed::Write { values, .. } => panic!("written: {values:?}"),
    }
}

const USER_COLUMNS: &[&str] = &["id", "email", "full_name", "password_hash", "roles"];

fn user(email: &str, hash: Value, roles: &str) -> Vec<Value> {
    vec![
        Value::Int(7),
        Value::Text(email.into()),
        Value::Text(" Ada Lovelace ".into()),
        hash,
        Value::Text(roles.into()),
    ]
}

const HASH: &str = " $2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW ";

#[test]
fn a_user_becomes_a_document_with_roles_permissions_and_the_hash_untouched() {
    let c = compiled(USERS);
    let (doc, warnings) = document(
        &c,
        decide(
            &c,
            USER_COLUMNS,
            user(
                "  Ada@Example.ORG ",
                Value::Text(HASH.into()),
                "Clinician; admin,clinician",
            ),
        ),
    );
    assert!(warnings.is_empty());
    let perms = doc["_permissions"].clone();
    let mut data = doc;
    data.as_object_mut().unwrap().remove("_permissions");
    assert_eq!(
        data,
        json!({
            "email": "ada@example.org",
            "name": "Ada Lovelace",
            "password": {"hash": HASH, "algorithm": "bcrypt"},
            "roles": ["clinician", "admin"],
            "legacy_id": 7
        })
    );
    assert_eq!(
        perms,
        json!([
            "read(\"user:{_id}\")",
            "write(\"user:{_id}\")",
            "read(\"team:clinicians\")",
            "write(\"team:clinicians\")",
            "read(\"any\")",
            "write(\"any\")"
        ])
    );
    // A hash read as bytes (bytea) arrives as the same text.
    let (doc, _) = document(
        &c,
        decide(
            &c,
            USER_COLUMNS,
            user("a@b.org", Value::bytes(HASH.as_bytes().to_vec()), "patient"),
        ),
    );
    assert_eq!(doc["password"]["hash"], HASH);
    assert_eq!(doc["roles"], json!(["patient"]));
    assert_eq!(
        doc["_permissions"],
        json!(["read(\"user:{_id}\")", "write(\"user:{_id}\")"])
    );
}

#[test]
fn bad_users_are_rejected_and_the_hash_never_appears_in_a_reason() {
    let c = compiled(USERS);
    let r = rejected(decide(
        &c,
        USER_COLUMNS,
        user("not-an-address", Value::Text(HASH.into()), "admin"),
    ));
    assert_eq!(r.rule, "email");
    let r = rejected(decide(
        &c,
        USER_COLUMNS,
        user("a@b.org", Value::Text(HASH.into()), "admin, nurse"),
    ));
    assert_eq!(r.rule, "roles");
    assert!(r.reason.contains("unknown role 'nurse'"), "{}", r.reason);
    let r = rejected(decide(
        &c,
        USER_COLUMNS,
        user("a@b.org", Value::bytes(vec![b'$', 0xff, 0xfe]), "admin"),
    ));
    assert_eq!(r.rule, "utf8");
    assert!(
        r.field.as_deref().is_some_and(|f| f.ends_with("password.hash")),
        "{:?}",
        r.field
    );
    assert!(r.reason.contains("value redacted"), "{}", r.reason);
    // The stored row keeps the source as read (a retry needs it); it is redacted when shown.
    let shown = crate::engine::store::redacted_row(&r.row).to_string();
    assert!(!shown.contains("bytes_len") || !shown.contains("255"), "{shown}");
    let r = rejected(decide(&c, USER_COLUMNS, user("bad", Value::Text(HASH.into()), "admin")));
    let shown = crate::engine::store::redacted_row(&r.row).to_string();
    assert!(!shown.contains("$2b$12$"), "{shown}");
    assert!(!r.reason.contains("$2b$12$"), "{}", r.reason);
}

#[test]
fn unknown_roles_can_be_dropped_with_one_warning() {
    let c = compiled(&USERS.replacen("on_unknown_role = \"reject\"", "on_unknown_role = \"ignore\"", 1));
    let (doc, warnings) = document(
        &c,
        decide(
            &c,
            USER_COLUMNS,
            user("a@b.org", Value::Text(HASH.into()), "nurse,admin"),
        ),
    );
    assert_eq!(doc["roles"], json!(["admin"]));
    assert_eq!(
        doc["_permissions"],
        json!([
            "read(\"user:{_id}\")",
            "write(\"user:{_id}\")",
            "read(\"any\")",
            "write(\"any\")"
        ])
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].rule, "roles");
    assert!(
        warnings[0].reason.ends_with("unknown role 'nurse' dropped"),
        "{}",
        warnings[0].reason
    );
}

fn setting(key: &str, value: Value) -> Vec<Value> {
    vec![Value::Text(key.into()), value]
}

#[test]
fn settings_become_typed_documents_keyed_by_their_new_key() {
    let c = compiled(CONFIG);
    let cols = ["key", "value"];
    let doc = |k: &str, v: Value| document(&c, decide(&c, &cols, setting(k, v))).0;
    assert_eq!(
        doc("smtp_port", Value::Text("587".into())),
        json!({"key": "mail.smtp.port", "value": 587, "legacy_key": "smtp_port"})
    );
    assert_eq!(doc("booking_enabled", Value::Text("yes".into()))["value"], json!(true));
    assert_eq!(
        doc("brand", Value::Text("{\"colour\":\"teal\"}".into()))["value"],
        json!({"colour": "teal"})
    );
    assert_eq!(
        doc("smtp_host", Value::Text("mx.example.org".into()))["value"],
        json!("mx.example.org")
    );
    let r = rejected(decide(&c, &cols, setting("smtp_port", Value::Text("five".into()))));
    assert_eq!(
        (
            r.rule.as_str(),
            r.field.as_deref().map(|f| f.trim_start_matches("data."))
        ),
        ("config_type", Some("value"))
    );
    assert!(r.reason.contains("'five' is not an integer"), "{}", r.reason);
    let r = rejected(decide(&c, &cols, setting("fax", Value::Text("1".into()))));
    assert_eq!(r.rule, "config_key");
    assert!(r.reason.contains("setting 'fax' has no new key"), "{}", r.reason);

    let keep = compiled(&CONFIG.replacen("unmapped = \"reject\"", "unmapped = \"keep\"", 1));
    let (d, warnings) = document(&keep, decide(&keep, &cols, setting("fax", Value::Text("1".into()))));
    assert_eq!(d, json!({"key": "fax", "value": "1", "legacy_key": "fax"}));
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].rule, "config_key");
}
