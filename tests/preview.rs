//! `cutover preview`: a file with renamed headers, previewed into the scenario's patients
//! table, gets the right target columns, types, formats and transforms; `--json` has the
//! documented shape; a workbook previews like a CSV; `--write-step` writes a step that parses
//! and dry-runs.

use assert_cmd::Command;
use cutover::engine::data::spec::DataStep;
use std::path::{Path, PathBuf};

/// The scenario's patients table, in SQLite's words.
const PATIENTS: &str = "CREATE TABLE patients (
    id TEXT PRIMARY KEY, mrn TEXT UNIQUE NOT NULL, first_name TEXT, last_name TEXT,
    date_of_birth DATE, email TEXT, phone TEXT,
    gender TEXT CHECK (gender IN ('male', 'female', 'other', 'unknown')),
    address JSON, external_id TEXT, notes TEXT, import_job TEXT);\n";

const RENAMED: &str = "patient_first_name,patient_last_name,birth_date,Email Address,phone_number,sex,MRN#,notes\n\
Ann,Lee,1985-03-14,Ann@Example.com ,(415) 555-2671,F,mrn001,\"hi, there\"\n\
Bo,Ng,3/4/1990,bo@x.org,415-555-2672,m,MRN002,\n\
Cy,Oh,12/31/1970,,+1 212 555 0123,Male,mrn003,x\n\
\n\
Di,Ra,2001-07-04,di@y.net,,female,mrn004,\n";

/// A project whose source is the folder `export/` beside it and whose target (SQLite) has the
/// patients table, created by an applied schema step.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::write(
        p.join("cutover.toml"),
        "[project]\nname = \"import\"\n\n[source]\nurl = \"file://export/\"\n\n[target]\nurl = \"sqlite://target.db\"\n",
    )
    .expect("config");
    std::fs::create_dir_all(p.join("export")).expect("export");
    std::fs::write(p.join("export/renamed.csv"), RENAMED).expect("csv");
    let schema = p.join("migrations/20250101T090000_schema");
    std::fs::create_dir_all(&schema).expect("mkdir");
    std::fs::write(schema.join("up.sql"), PATIENTS).expect("up");
    std::fs::write(schema.join("down.sql"), "DROP TABLE patients;\n").expect("down");
    let out = cutover(p).arg("up").output().expect("up");
    assert!(out.status.success(), "schema: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn cutover(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("cutover").expect("the cutover binary");
    c.arg("-C").arg(dir);
    c.env_remove("CUTOVER_SOURCE")
        .env_remove("CUTOVER_TARGET")
        .env("NO_COLOR", "1");
    c
}

fn json_preview(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = cutover(dir)
        .arg("preview")
        .args(args)
        .arg("--json")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "preview failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim().lines().count(), 1, "--json prints one object:\n{text}");
    serde_json::from_str(text.trim()).expect("json")
}

fn column<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["columns"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no column {name} in {v}"))
}

fn suggestion<'a>(v: &'a serde_json::Value, col: &str) -> &'a serde_json::Value {
    v["suggestions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["column"] == col))
        .unwrap_or_else(|| panic!("no suggestion for {col} in {v}"))
}

#[test]
fn renamed_headers_suggest_the_scenarios_target_columns() {
    let dir = project();
    // A name relative to the project's source folder.
    let v = json_preview(dir.path(), &["renamed.csv", "--into", "patients", "--rows", "2"]);
    assert_eq!(v["rows"], 4, "blank lines are not rows: {v}");
    for (col, target) in [
        ("patient_first_name", "first_name"),
        ("patient_last_name", "last_name"),
        ("birth_date", "date_of_birth"),
        ("Email Address", "email"),
        ("phone_number", "phone"),
        ("sex", "gender"),
        ("MRN#", "mrn"),
        ("notes", "notes"),
    ] {
        let s = suggestion(&v, col);
        assert_eq!(s["target"], target, "{col}: {s}");
        let c = s["confidence"].as_f64().expect("confidence");
        assert!((0.5..=1.0).contains(&c), "{col}: confidence {c}");
    }
    // One target column is used once.
    let targets: Vec<&str> = v["suggestions"]
        .as_array()
        .expect("suggestions")
        .iter()
        .filter_map(|s| s["target"].as_str())
        .collect();
    let mut unique = targets.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(targets.len(), unique.len(), "{targets:?}");

    // Types and the date formats seen.
    assert_eq!(column(&v, "birth_date")["type"], "date");
    let formats = column(&v, "birth_date")["formats"].as_array().expect("formats").clone();
    assert!(
        formats.contains(&"%Y-%m-%d".into()) && formats.contains(&"%m/%d/%Y".into()),
        "{formats:?}"
    );
    assert_eq!(column(&v, "Email Address")["type"], "email");
    assert_eq!(column(&v, "phone_number")["type"], "phone");
    assert_eq!(column(&v, "patient_first_name")["type"], "text");
    assert_eq!(column(&v, "Email Address")["blank_rate"], 0.25);
    assert_eq!(
        column(&v, "patient_first_name")["samples"],
        serde_json::json!(["Ann", "Bo", "Cy"])
    );
    assert_eq!(v["sample_rows"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["sample_rows"][0]["line"], 2);

    // Transforms by the values.
    let dob = suggestion(&v, "birth_date");
    let date = dob["transforms"]
        .as_array()
        .and_then(|ts| ts.iter().find_map(|t| t.get("date")))
        .unwrap_or_else(|| panic!("no date transform: {dob}"));
    assert_eq!(date["formats"].as_array().map(Vec::len), Some(2), "{date}");
    assert!(dob["validate"].to_string().contains("not_in_future"), "{dob}");
    assert!(
        suggestion(&v, "phone_number")["transforms"]
            .to_string()
            .contains("phone")
    );
    let email = suggestion(&v, "Email Address")["transforms"].to_string();
    assert!(email.contains("trim") && email.contains("lower"), "{email}");
    assert!(
        suggestion(&v, "sex")["transforms"]
            .to_string()
            .contains("gender_normalize")
    );
}

#[test]
fn plain_output_is_a_readable_table() {
    let dir = project();
    let out = cutover(dir.path())
        .args(["preview", "renamed.csv", "--into", "patients"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("4 rows, 8 columns"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("birth_date") && l.contains("date") && l.contains("%m/%d/%Y")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("MRN#") && l.contains("-> mrn") && l.contains("1.00")),
        "{text}"
    );
    assert!(text.contains("target columns no file column fills"), "{text}");
}

#[test]
fn a_missing_file_or_table_is_said_plainly() {
    let dir = project();
    let out = cutover(dir.path()).args(["preview", "nope.csv"]).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no file nope.csv"), "{err}");

    std::fs::write(dir.path().join("export/empty.csv"), "").expect("empty");
    let out = cutover(dir.path())
        .args(["preview", "empty.csv"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("empty.csv") && err.contains("empty"), "{err}");

    let v = json_preview(dir.path(), &["renamed.csv", "--into", "orders"]);
    assert!(
        v["note"].as_str().is_some_and(|n| n.contains("no table 'orders'")),
        "{v}"
    );
    let out = cutover(dir.path())
        .args(["preview", "renamed.csv", "--into", "orders", "--write-step", "orders"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "a step into a missing table is refused");
}

#[test]
fn a_workbook_previews_like_a_csv() {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let dir = project();
    let path = dir.path().join("export/orders.xlsx");
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("Orders").expect("name");
    let date = Format::new().set_num_format("yyyy-mm-dd");
    for (c, h) in ["orderNumber", "orderDate", "qty", "price", "patient e-mail"]
        .iter()
        .enumerate()
    {
        sheet.write_string(0, c as u16, *h).expect("header");
    }
    for r in 1..=3u32 {
        sheet.write_string(r, 0, format!("ORD-{r}")).expect("cell");
        let d = ExcelDateTime::from_ymd(2024, 1, r as u8).expect("date");
        sheet.write_datetime_with_format(r, 1, &d, &date).expect("date cell");
        sheet.write_number(r, 2, f64::from(r)).expect("int");
        sheet.write_number(r, 3, f64::from(r) + 0.5).expect("real");
        sheet.write_string(r, 4, format!("p{r}@clinic.org")).expect("email");
    }
    book.save(&path).expect("save");
    let v = json_preview(dir.path(), &[path.to_str().expect("utf-8 path"), "--sheet", "Orders"]);
    assert_eq!(v["rows"], 3);
    assert_eq!(column(&v, "orderDate")["type"], "date");
    assert_eq!(column(&v, "orderDate")["formats"], serde_json::json!(["%Y-%m-%d"]));
    assert_eq!(column(&v, "orderDate")["samples"][0], "2024-01-01");
    assert_eq!(column(&v, "qty")["type"], "integer");
    assert_eq!(column(&v, "price")["type"], "decimal");
    assert_eq!(column(&v, "patient e-mail")["type"], "email");
    assert_eq!(v["sample_rows"][0]["line"], 2, "the row as Excel numbers it");

    let out = cutover(dir.path())
        .args(["preview", "orders.xlsx", "--sheet", "Nope"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sheet 'Nope'"));
}

fn step_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("migrations"))
        .expect("migrations")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("step.toml"))
        .filter(|p| p.exists())
        .collect();
    v.sort();
    v
}

#[test]
fn write_step_writes_a_step_that_parses_and_dry_runs() {
    let dir = project();
    let out = cutover(dir.path())
        .args([
            "preview",
            "renamed.csv",
            "--into",
            "patients",
            "--write-step",
            "patients",
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files = step_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).expect("step.toml");
    let step = DataStep::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(step.target.table, "patients");
    assert_eq!(step.target.natural_key, vec!["mrn".to_string()]);
    assert!(
        text.contains("file = \"renamed.csv\""),
        "relative to the source folder:\n{text}"
    );
    assert!(text.contains("# CHECK: natural_key"), "{text}");
    let targets: Vec<&str> = step.fields.iter().map(|f| f.target.as_str()).collect();
    for t in [
        "first_name",
        "last_name",
        "date_of_birth",
        "email",
        "phone",
        "gender",
        "mrn",
    ] {
        assert!(targets.contains(&t), "{t} missing: {targets:?}");
    }

    let out = cutover(dir.path())
        .args(["up", "--dry-run", "--continue-on-error", "--json"])
        .output()
        .expect("dry run");
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dry run failed:\n{events}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let finished = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "step_finished")
        .unwrap_or_else(|| panic!("no step_finished:\n{events}"));
    assert_eq!(finished["counts"]["source"], 4, "{finished}");
    assert_eq!(finished["counts"]["written"], 4, "{finished}");
}

/// A Windows export with a title line above its header: refused as invalid UTF-8 by default,
/// read with the same settings a step's [source] takes.
#[test]
fn file_settings_reach_the_preview() {
    let dir = project();
    std::fs::write(
        dir.path().join("export/latin.csv"),
        b"exported 2026-11-25\r\nname;city\r\n\xe9mile;K\xf6ln\r\n".as_slice(),
    )
    .expect("write");
    let out = cutover(dir.path())
        .args(["preview", "latin.csv"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid UTF-8") && err.contains("preview --encoding"),
        "{err}"
    );

    let v = json_preview(
        dir.path(),
        &["latin.csv", "--encoding", "windows-1252", "--header-row", "2"],
    );
    assert_eq!(v["rows"], 1, "{v}");
    assert_eq!(column(&v, "name")["samples"][0], "émile", "{v}");
    assert_eq!(column(&v, "city")["samples"][0], "Köln", "{v}");

    let out = cutover(dir.path())
        .args(["preview", "latin.csv", "--delimiter", ";;"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--delimiter") && err.contains("one ASCII character"),
        "{err}"
    );
}
