//! Lookups by natural key through target columns (`lookup = { table = ..., by = [...] }`),
//! `run = "id"` fields and `[target] empty_json_as_null`, run as real data steps through the
//! binary on a SQLite and a PostgreSQL target. The source is a SQLite table shaped like the
//! import scenario's files (a `_line` key, camelCase columns).

mod common;
#[macro_use]
mod support;

use support::{Backend, TestProject, stderr, stdout};

const SCHEMA: &str = "20250101T090000_schema";
const PATIENTS: &str = "20250101T090100_patients";
const ORDERS: &str = "20250101T090200_orders";

const SCHEMA_UP: &str = "CREATE TABLE patients (id TEXT PRIMARY KEY, mrn TEXT NOT NULL UNIQUE, email TEXT, external_id TEXT, date_of_birth DATE, address TEXT, import_job TEXT);
CREATE TABLE orders (id TEXT PRIMARY KEY, patient_id TEXT NOT NULL REFERENCES patients (id), order_number TEXT NOT NULL UNIQUE, import_job TEXT);
";
/// PostgreSQL: real uuid, date and jsonb columns, so the lookup's answers and parameters go
/// through their casts.
const SCHEMA_UP_PG: &str = "CREATE TABLE patients (id uuid PRIMARY KEY, mrn TEXT NOT NULL UNIQUE, email TEXT, external_id TEXT, date_of_birth DATE, address jsonb, import_job TEXT);
CREATE TABLE orders (id uuid PRIMARY KEY, patient_id uuid NOT NULL REFERENCES patients (id), order_number TEXT NOT NULL UNIQUE, import_job TEXT);
";
const SCHEMA_DOWN: &str = "DROP TABLE orders;\nDROP TABLE patients;\n";

const PATIENTS_STEP: &str = r#"kind = "data"
[source]
table = "patients"
key = "_line"

[target]
table = "patients"
natural_key = ["mrn"]
on_duplicate = "skip"
empty_json_as_null = ["address"]

[id_map]
column = "id"
map = "patients"

[[fields]]
target = "mrn"
source = "mrn"
transforms = ["trim", "upper"]
validate = [{ rule = "required" }]

[[fields]]
target = "email"
source = "email"
transforms = ["trim", "lower", "empty_to_null"]

[[fields]]
target = "external_id"
source = "externalId"
transforms = ["trim", "empty_to_null"]

[[fields]]
target = "date_of_birth"
source = "dateOfBirth"
transforms = [{ date = { formats = ["%Y-%m-%d", "%m/%d/%Y"], excel_serial = true } }]
validate = [{ rule = "required" }, { rule = "not_in_future" }]

[[fields]]
target = "address.line1"
source = "address"
transforms = ["trim", "empty_to_null"]

[[fields]]
target = "address.city"
source = "city"
transforms = ["trim", "empty_to_null"]

[[fields]]
target = "import_job"
run = "id"
"#;

const ORDERS_STEP: &str = r#"kind = "data"
[source]
table = "orders"
key = "_line"

[target]
table = "orders"
natural_key = ["order_number"]
on_duplicate = "skip"

[id_map]
column = "id"
map = "orders"

[[fields]]
target = "order_number"
source = "orderNumber"
transforms = ["trim"]

[[fields]]
target = "patient_id"
source = "patientIdentifier"
transforms = ["trim", { lookup = { table = "patients", column = "id", noun = "patient", waits_for = "patients", by = [
    { column = "mrn", normalize = "upper", source_column = "mrn" },
    { column = "email", normalize = "lower", source_column = "email" },
    { column = "external_id", source_column = "externalId" },
] } }]
validate = [{ rule = "required" }]

[[fields]]
target = "import_job"
run = "id"
"#;

fn project(b: Backend) -> TestProject {
    let p = TestProject::new(b);
    p.source_sql(
        r#"CREATE TABLE patients (_line INTEGER PRIMARY KEY, mrn TEXT, email TEXT, externalId TEXT, dateOfBirth TEXT, address TEXT, city TEXT);
         CREATE TABLE orders (_line INTEGER PRIMARY KEY, patientIdentifier TEXT, orderNumber TEXT);
         INSERT INTO patients VALUES
           (2, ' mrn-001 ', 'Ann@Example.org', 'EXT-1', '3/7/1985', '1 Main St', 'Springfield'),
           (3, 'MRN-002', 'shared@example.org', 'EXT-2', '1990-01-01', '', '  '),
           (4, 'MRN-003', 'SHARED@example.org', '', '1991-02-02', NULL, NULL),
           (5, 'MRN-004', 'late@example.org', 'EXT-4', '2999-01-01', '', ''),
           (6, 'MRN-005', '', '', '14/03/1985', '', '');
         INSERT INTO orders VALUES
           (2, 'mrn-001', 'O-1'),
           (3, ' ANN@example.ORG ', 'O-2'),
           (4, 'EXT-2', 'O-3'),
           (5, 'Shared@Example.org', 'O-4'),
           (6, 'MRN-999', 'O-5'),
           (7, 'mrn-004', 'O-6'),
           (8, 'LATE@example.org', 'O-7'),
           (9, 'ext-2', 'O-8');"#,
    );
    p.schema_step(SCHEMA, SCHEMA_UP, SCHEMA_DOWN);
    if b == Backend::Postgres {
        std::fs::write(p.step_dir(SCHEMA).join("up.postgres.sql"), SCHEMA_UP_PG).expect("up.postgres.sql");
    }
    p.data_step(PATIENTS, PATIENTS_STEP);
    p.data_step(ORDERS, ORDERS_STEP);
    p
}

/// Open rejects of a source as (source key, rule, reason), by key.
fn open_rejects(p: &TestProject, source: &str) -> Vec<(String, String, String)> {
    let list = p.json(&["rejects", "list", "--open"]);
    let mut out: Vec<(String, String, String)> = list
        .as_array()
        .expect("a JSON array")
        .iter()
        .filter(|r| r["source_table"] == source)
        .map(|r| {
            (
                r["source_key"].as_str().unwrap_or("").to_string(),
                r["rule"].as_str().unwrap_or("").to_string(),
                r["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort_by_key(|r| r.0.parse::<u64>().unwrap_or(0));
    out
}

fn reject_id(p: &TestProject, source: &str, key: &str) -> String {
    let list = p.json(&["rejects", "list", "--open"]);
    list.as_array()
        .expect("a JSON array")
        .iter()
        .find(|r| r["source_table"] == source && r["source_key"] == key)
        .and_then(|r| r["id"].as_i64())
        .unwrap_or_else(|| panic!("no open reject {source} {key}: {list}"))
        .to_string()
}

/// The MRN of the patient each written order points at, by order number.
fn order_patients(p: &TestProject) -> String {
    p.target_sql(
        "SELECT o.order_number || ' ' || p.mrn FROM orders o JOIN patients p ON p.id = o.patient_id ORDER BY o.order_number",
    )
}

fn lookups_by_natural_key(b: Backend) {
    let p = project(b);

    // A dry run goes through the same lookups inside its rolled-back transaction.
    let o = p.run(&["up", "--dry-run", "--continue-on-error"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("source 5 = written 3 + skipped 0 + rejected 2"), "{out}");
    assert!(out.contains("source 8 = written 3 + skipped 0 + rejected 5"), "{out}");
    assert!(p.try_target_sql("SELECT COUNT(*) FROM orders").is_none_or(|n| n == "0"));

    let o = p.run(&["up", "--continue-on-error"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("source 5 = written 3 + skipped 0 + rejected 2"), "{out}");
    assert!(out.contains("source 8 = written 3 + skipped 0 + rejected 5"), "{out}");

    // By MRN (upper-cased input), by email (lower-cased, trimmed), by external id (as is: 'ext-2'
    // is no external id and matches nothing else either).
    assert_eq!(order_patients(&p), "O-1 MRN-001\nO-2 MRN-001\nO-3 MRN-002");
    let orders = open_rejects(&p, "orders");
    let expected: Vec<(String, String, String)> = [
        (
            "5",
            "lookup",
            "ambiguous: 'Shared@Example.org' matches 2 patients by email",
        ),
        ("6", "lookup", "no patient 'MRN-999'"),
        ("7", "waiting", "waiting for patients 5"),
        ("8", "waiting", "waiting for patients 5"),
        ("9", "lookup", "no patient 'ext-2'"),
    ]
    .iter()
    .map(|(k, r, m)| (k.to_string(), r.to_string(), m.to_string()))
    .collect();
    assert_eq!(orders, expected);
    let patients = open_rejects(&p, "patients");
    assert_eq!(
        patients
            .iter()
            .map(|r| (r.0.as_str(), r.1.as_str()))
            .collect::<Vec<_>>(),
        [("5", "not_in_future"), ("6", "date")],
        "{patients:?}"
    );

    // run = "id" is the ledger's run id; empty address parts make a NULL address.
    let ledger_run = p.target_sql(&format!(
        "SELECT run_id FROM cutover_ledger WHERE version = '{}'",
        &PATIENTS[..15]
    ));
    assert!(!ledger_run.trim().is_empty());
    assert_eq!(p.target_sql("SELECT DISTINCT import_job FROM patients"), ledger_run);
    assert_eq!(p.target_sql("SELECT DISTINCT import_job FROM orders"), ledger_run);
    assert_eq!(
        p.target_sql("SELECT mrn FROM patients WHERE address IS NULL ORDER BY mrn"),
        "MRN-002\nMRN-003"
    );
    let city = match b {
        Backend::Sqlite => "SELECT json_extract(address, '$.city') FROM patients WHERE mrn = 'MRN-001'",
        Backend::Postgres => "SELECT address ->> 'city' FROM patients WHERE mrn = 'MRN-001'",
    };
    assert_eq!(p.target_sql(city), "Springfield");
    assert_eq!(
        p.target_sql("SELECT date_of_birth FROM patients WHERE mrn = 'MRN-001'"),
        "1985-03-07"
    );

    // Fix the rejected patient and retry it: it is written by the retry's run, and both
    // orders waiting for it (one by MRN, one by email) follow.
    let patient = reject_id(&p, "patients", "5");
    p.ok(&["rejects", "fix", &patient, "dateOfBirth=1984-12-31"]);
    let r = p.json(&["rejects", "retry", &patient]);
    assert_eq!(r["written"].as_array().map(|w| w.len()), Some(3), "{r}");
    assert_eq!(
        order_patients(&p),
        "O-1 MRN-001\nO-2 MRN-001\nO-3 MRN-002\nO-6 MRN-004\nO-7 MRN-004"
    );
    let retry_run = p.target_sql(&format!(
        "SELECT DISTINCT run_id FROM cutover_events WHERE event = 'retried' AND version = '{}'",
        &PATIENTS[..15]
    ));
    assert!(!retry_run.trim().is_empty() && retry_run != ledger_run, "{retry_run}");
    assert_eq!(
        p.target_sql("SELECT import_job FROM patients WHERE mrn = 'MRN-004'"),
        retry_run,
        "a retried row is written by the retry's run"
    );
    assert_eq!(
        p.target_sql("SELECT DISTINCT import_job FROM orders WHERE order_number IN ('O-6', 'O-7')"),
        retry_run
    );
    assert_eq!(
        open_rejects(&p, "orders")
            .iter()
            .map(|r| r.0.as_str())
            .collect::<Vec<_>>(),
        ["5", "6", "9"]
    );
}
both!(lookups_by_natural_key);

/// A lookup naming a table the target lacks fails the step with the table's name, writing
/// no order.
fn a_missing_lookup_table_is_named(b: Backend) {
    let p = project(b);
    p.data_step(
        ORDERS,
        &ORDERS_STEP.replace("table = \"patients\", column", "table = \"patientz\", column"),
    );
    let o = p.run(&["up", "--continue-on-error"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(all.contains("lookup: the target has no table patientz"), "{all}");
    assert_eq!(p.count("orders"), 0);
}
both!(a_missing_lookup_table_is_named);
