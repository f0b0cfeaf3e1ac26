//! Files as the source of data steps: a CSV with every quirk of a real export and an XLSX
//! workbook into SQLite and PostgreSQL, rejects keyed by line and retried, resume from a
//! checkpoint, the malformed-file corpus refused before anything is written, and a file
//! changed after its import.

mod common;
#[macro_use]
mod support;

use std::path::{Path, PathBuf};
use support::{Backend, TestProject, stderr, stdout};

const SCHEMA: &str = "20250101T090000_schema";
const PATIENTS: &str = "20250101T090100_patients";
const V_SCHEMA: &str = "20250101T090000";
const V_PATIENTS: &str = "20250101T090100";

const SCHEMA_UP: &str = "CREATE TABLE patients (id TEXT PRIMARY KEY, mrn TEXT NOT NULL UNIQUE, first_name TEXT, notes TEXT, email TEXT, source_line INTEGER);\n";
const SCHEMA_DOWN: &str = "DROP TABLE patients;\n";

/// A patients step reading `file` (relative to the source folder, or absolute).
fn patients_step(file: &str, extra_source: &str) -> String {
    format!(
        r#"kind = "data"

[source]
file = "{file}"
optional = ["email"]
{extra_source}

[target]
table = "patients"
natural_key = ["mrn"]
on_duplicate = "skip"

[id_map]
column = "id"

[[fields]]
target = "mrn"
source = "mrn"
transforms = ["trim", "upper", "empty_to_null"]
validate = [{{ rule = "required" }}]

[[fields]]
target = "first_name"
source = "firstName"

[[fields]]
target = "notes"
source = "notes"

[[fields]]
target = "email"
source = "email"

[[fields]]
target = "source_line"
source = "_line"
"#
    )
}

/// A project whose source is the folder `export/` beside cutover.toml (`file://export/`).
fn project(b: Backend, config_extra: &str) -> TestProject {
    let p = TestProject::new(b);
    std::fs::write(
        p.path().join("cutover.toml"),
        format!(
            "[project]\nname = \"files\"\n\n[source]\nurl = \"file://export/\"\n\n[target]\nurl = \"{}\"\n{config_extra}",
            p.target_url
        ),
    )
    .unwrap();
    std::fs::create_dir_all(export(&p)).unwrap();
    p.schema_step(SCHEMA, SCHEMA_UP, SCHEMA_DOWN);
    p
}

fn export(p: &TestProject) -> PathBuf {
    p.path().join("export")
}

/// BOM, CRLF, a quoted comma, doubled quotes, a quoted line break, blank lines, and a row
/// without its MRN (line 6): four rows, one rejected.
const PATIENTS_CSV: &[u8] = b"\xEF\xBB\xBFmrn,firstName,notes\r\na1,Ann,\"said \"\"hi\"\", then left\"\r\n\r\na2,Bob,\"two\r\nlines\"\r\n ,Nobody,no mrn\r\n\r\na3,\"Lee, Jr\",\r\n";

fn status_of(p: &TestProject, version: &str) -> serde_json::Value {
    let v = p.json(&["status"]);
    v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["version"] == version)
        .cloned()
        .unwrap_or_else(|| panic!("no {version} in {v}"))
}

fn counts(p: &TestProject, version: &str) -> (u64, u64, u64, u64) {
    let c = status_of(p, version)["counts"].clone();
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("no counts.{k}: {c}"));
    (n("source"), n("written"), n("skipped"), n("rejected"))
}

fn a_real_export(b: Backend) {
    let p = project(b, "");
    std::fs::write(export(&p).join("patients.csv"), PATIENTS_CSV).unwrap();
    p.data_step(PATIENTS, &patients_step("patients.csv", ""));

    // The console's and plan's count of what `up` will read: the file's rows, blank lines out.
    let dry = p.run(&["up", "--dry-run", "--json"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("\"source\":4"),
        "a dry run counts the file's 4 rows: {}",
        stdout(&dry)
    );
    assert!(p.user_tables().is_empty(), "a dry run writes nothing");

    p.ok(&["up", "--continue-on-error"]);
    let rows = p.target_sql(
        "SELECT mrn, first_name, source_line, length(notes), COALESCE(email, 'null') FROM patients ORDER BY mrn",
    );
    assert_eq!(
        rows.lines().map(str::trim).collect::<Vec<_>>(),
        ["A1|Ann|2|20|null", "A2|Bob|4|10|null", "A3|Lee, Jr|8|0|null"],
        "quoted comma, doubled quotes and a line break inside a value, and each row's first line"
    );
    assert_eq!(
        p.target_sql("SELECT notes FROM patients WHERE mrn = 'A1'"),
        "said \"hi\", then left"
    );
    assert_eq!(counts(&p, V_PATIENTS), (4, 3, 0, 1));

    // The reject is the row at line 6, with the file's columns and its line.
    let rejects = p.json(&["rejects", "list"]);
    let items = rejects.as_array().unwrap();
    assert_eq!(items.len(), 1, "{rejects}");
    let r = &items[0];
    assert_eq!(
        (r["source_table"].as_str(), r["source_key"].as_str()),
        (Some("patients"), Some("6")),
        "{r}"
    );
    assert_eq!(r["row"]["firstName"], "Nobody", "{r}");
    assert_eq!(r["row"]["_line"], 6, "{r}");

    // Fixed and retried, the file row goes through like a table row.
    let id = r["id"].as_i64().unwrap().to_string();
    p.ok(&["rejects", "fix", &id, "mrn=a4"]);
    let retried = p.json(&["rejects", "retry", &id]);
    assert_eq!(retried["written"].as_array().map(Vec::len), Some(1), "{retried}");
    assert_eq!(
        p.target_sql("SELECT first_name, source_line FROM patients WHERE mrn = 'A4'"),
        "Nobody|6"
    );
    assert_eq!(counts(&p, V_PATIENTS), (4, 4, 0, 0));

    // verify counts the file for the step's accounting.
    let out = p.run(&["verify", "--json"]);
    let report: serde_json::Value =
        serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with("source rows")))
        .unwrap_or_else(|| panic!("no source rows check: {report}"))
        .clone();
    assert_eq!(check["ok"], true, "{check}");
    assert!(check["detail"].as_str().unwrap().contains("has 4 rows"), "{check}");
    assert!(out.status.success(), "{report}");

    // Rolling the step back removes exactly what it wrote.
    p.ok(&["down", "--to", V_SCHEMA, "--yes"]);
    assert_eq!(p.count("patients"), 0);
}
both!(a_real_export);

/// Write `rows` (strings, or `=N` for a number, `@Y-M-D` for a date cell) into sheet `sheet`.
fn workbook(path: &Path, sheet: &str, rows: &[&[&str]]) {
    let mut book = rust_xlsxwriter::Workbook::new();
    let date = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd");
    let s = book.add_worksheet();
    s.set_name(sheet).unwrap();
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let (r, c) = (r as u32, c as u16);
            if let Some(n) = cell.strip_prefix('=') {
                s.write_number(r, c, n.parse::<f64>().unwrap()).unwrap();
            } else if let Some(d) = cell.strip_prefix('@') {
                let d = rust_xlsxwriter::ExcelDateTime::parse_from_str(d).unwrap();
                s.write_datetime_with_format(r, c, &d, &date).unwrap();
            } else if !cell.is_empty() {
                s.write_string(r, c, *cell).unwrap();
            }
        }
    }
    book.save(path).unwrap();
}

#[test]
fn a_workbook_sheet() {
    let p = project(Backend::Sqlite, "");
    workbook(
        &export(&p).join("patients.xlsx"),
        "Patients",
        &[
            &["mrn", "firstName", "notes"],
            &["x1", "Ann", "@2024-03-05"],
            &[],
            &["x2", "Bob", "=45356"],
            &["x3", "", "=2.5"],
        ],
    );
    p.data_step(PATIENTS, &patients_step("patients.xlsx", "sheet = \"Patients\""));
    p.ok(&["up"]);
    assert_eq!(
        p.target_sql("SELECT mrn, COALESCE(first_name, 'NULL'), notes, source_line FROM patients ORDER BY mrn"),
        "X1|Ann|2024-03-05|2\nX2|Bob|45356|4\nX3|NULL|2.5|5",
        "a date cell is ISO text, a whole number an integer, rows keep Excel's numbers"
    );
    assert_eq!(counts(&p, V_PATIENTS), (3, 3, 0, 0));

    // Another project asks for a sheet the workbook lacks: refused before anything is written.
    let q = project(Backend::Sqlite, "");
    std::fs::copy(export(&p).join("patients.xlsx"), export(&q).join("patients.xlsx")).unwrap();
    q.data_step(PATIENTS, &patients_step("patients.xlsx", "sheet = \"Orders\""));
    let o = q.run(&["up"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("patients.xlsx") && stderr(&o).contains("no sheet 'Orders'; its sheets are 'Patients'"),
        "{}",
        stderr(&o)
    );
    assert!(q.user_tables().is_empty(), "nothing written: {:?}", q.user_tables());
}

/// An absolute `file = ...` works whatever the project's source is (here a database).
#[test]
fn an_absolute_file_with_a_database_source() {
    let p = TestProject::new(Backend::Sqlite);
    p.schema_step(SCHEMA, SCHEMA_UP, SCHEMA_DOWN);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.csv");
    std::fs::write(&file, "mrn,firstName,notes\nz1,Zoe,\n").unwrap();
    p.data_step(PATIENTS, &patients_step(file.to_str().unwrap(), ""));
    p.ok(&["up"]);
    assert_eq!(p.target_sql("SELECT mrn, source_line FROM patients"), "Z1|2");
    // A relative name needs a folder source, and says so.
    p.ok(&["down", "--to", V_SCHEMA, "--yes"]);
    p.data_step(PATIENTS, &patients_step("p.csv", ""));
    let o = p.run(&["up"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is relative, but the project's source is not a folder"),
        "{}",
        stderr(&o)
    );
}

/// A table step in a project whose source is a folder: a clear error, no database opened.
#[test]
fn a_table_step_with_a_folder_source_is_refused() {
    let p = project(Backend::Sqlite, "");
    p.data_step(
        PATIENTS,
        "[source]\ntable = \"patients\"\nkey = \"id\"\n[target]\ntable = \"patients\"\nnatural_key = [\"mrn\"]\n[[fields]]\ntarget = \"mrn\"\nsource = \"mrn\"\n",
    );
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the project's source is a folder of files"),
        "{}",
        stderr(&o)
    );
    assert!(!p.path().join("export").join("patients").exists());
    assert!(p.user_tables().is_empty());
}

/// A step that stops part-way (a reject, without continue-on-error) resumes from its last
/// committed batch: the file is read again from the line after the checkpoint, and every row
/// is written exactly once.
#[test]
fn resumes_from_its_checkpoint() {
    const N: usize = 2_000;
    const BAD: usize = 1_234; // the data row whose MRN is missing
    let p = project(Backend::Sqlite, "\n[defaults]\nbatch_size = 100\n");
    let write = |fixed: bool| {
        let mut text = String::from("mrn,firstName,notes\n");
        for i in 1..=N {
            let mrn = if i == BAD && !fixed {
                String::new()
            } else {
                format!("m{i:05}")
            };
            text.push_str(&format!("{mrn},n{i},\n"));
            if i % 500 == 0 {
                text.push('\n'); // blank lines shift the lines, never the rows
            }
        }
        std::fs::write(export(&p).join("patients.csv"), text).unwrap();
    };
    write(false);
    p.data_step(PATIENTS, &patients_step("patients.csv", ""));
    let o = p.run(&["up"]);
    assert!(!o.status.success(), "the missing MRN stops the step");
    let written = p.count("patients");
    assert_eq!(
        written, 1_200,
        "every batch before the bad row committed, nothing after it"
    );
    let checkpoint = p.target_sql("SELECT last_key FROM cutover_checkpoints");
    assert_eq!(
        checkpoint, "1203",
        "row 1200 is on line 1203 (two blank lines above it)"
    );
    // An edited file is never resumed: the rows before the checkpoint came from the old one.
    write(true);
    let o = p.run(&["up"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "a changed file must not be resumed");
    assert!(
        err.contains("patients.csv changed since the step started") && err.contains("first 1200 rows"),
        "{err}"
    );
    assert_eq!(p.count("patients"), 1_200, "the refusal wrote nothing");
    // The file as it was, the bad row kept as a reject: the run resumes exactly once.
    write(false);
    p.ok(&["up", "--continue-on-error"]);
    assert_eq!(p.count("patients"), N as i64 - 1);
    assert_eq!(
        p.target_sql("SELECT COUNT(DISTINCT mrn) FROM patients"),
        (N - 1).to_string()
    );
    assert_eq!(
        p.target_sql("SELECT source_line FROM patients WHERE mrn = 'M01235'"),
        "1238",
        "data row 1235 is on line 1 + 1235 + 2 blank lines"
    );
    assert_eq!(
        p.target_sql("SELECT source_key FROM cutover_rejects"),
        "1237",
        "the bad row is a reject at its line"
    );
    assert_eq!(counts(&p, V_PATIENTS), (N as u64, N as u64 - 1, 0, 1));
}

/// The corpus of broken files: each is refused by `up` before anything is written, with a
/// message naming the file, the line and the column.
#[test]
fn malformed_files_are_refused_before_anything_is_written() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/files/malformed");
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unterminated_quote.csv",
            "",
            &["line 3", "column notes", "never closed"],
        ),
        (
            "more_cells_than_header.csv",
            "",
            &["line 4", "column 4", "4 cells but the header names 3"],
        ),
        ("invalid_utf8.csv", "", &["line 3", "column firstName", "invalid UTF-8"]),
        (
            "missing_column.csv",
            "",
            &["line 1", "column firstName", "has no column 'firstName'"],
        ),
        ("empty.csv", "", &["the file is empty"]),
        (
            "no_sheet.xlsx",
            "sheet = \"Patients\"",
            &["no sheet 'Patients'", "'Sheet1'"],
        ),
    ];
    for (file, extra, says) in cases {
        let p = project(Backend::Sqlite, "");
        std::fs::copy(corpus.join(file), export(&p).join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        p.data_step(PATIENTS, &patients_step(file, extra));
        let o = p.run(&["up", "--continue-on-error"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(4), "{file}: refused by the pre-flight\n{err}");
        assert!(err.contains(&format!("export/{file}")), "{file}: names the file\n{err}");
        for s in *says {
            assert!(err.contains(s), "{file}: says {s:?}\n{err}");
        }
        assert!(
            p.user_tables().is_empty(),
            "{file}: nothing written: {:?}",
            p.user_tables()
        );
        p.assert_states(&["pending", "pending"]);
    }
}

/// Regenerates `fixtures/files/malformed/no_sheet.xlsx` (a workbook whose only sheet is
/// `Sheet1`): `cargo test --test file_sources -- --ignored write_no_sheet_fixture`.
#[test]
#[ignore]
fn write_no_sheet_fixture() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/files/malformed/no_sheet.xlsx");
    workbook(&p, "Sheet1", &[&["mrn", "firstName", "notes"], &["a1", "Ann", ""]]);
}

/// A file changed after its step applied makes the step modified, naming the file; `up`
/// refuses; `repair` records the file as it is now.
#[test]
fn a_changed_file_is_modified_until_repaired() {
    let p = project(Backend::Sqlite, "");
    let file = export(&p).join("patients.csv");
    std::fs::write(&file, "mrn,firstName,notes\na1,Ann,\n").unwrap();
    p.data_step(PATIENTS, &patients_step("patients.csv", ""));
    p.ok(&["up"]);
    let s = status_of(&p, V_PATIENTS);
    assert_eq!(s["state"], "applied", "{s}");
    let recorded = p.target_sql("SELECT source_checksum FROM cutover_ledger WHERE version = '20250101T090100'");
    assert!(
        recorded.starts_with("sha256:") && recorded.len() == 7 + 64,
        "{recorded}"
    );

    std::fs::write(&file, "mrn,firstName,notes\na1,Ann,\na2,Bob,\n").unwrap();
    let s = status_of(&p, V_PATIENTS);
    assert_eq!(
        (s["state"].as_str(), s["checksum_state"].as_str()),
        (Some("modified"), Some("modified")),
        "{s}"
    );
    assert!(
        s["modified_file"].as_str().unwrap().ends_with("export/patients.csv"),
        "{s}"
    );
    let text = p.ok(&["status"]);
    assert!(text.contains("modified"), "{text}");

    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("export/patients.csv has changed since"),
        "{}",
        stderr(&o)
    );

    let r = p.ok(&["repair"]);
    assert!(r.contains("patients.csv"), "{r}");
    assert_eq!(status_of(&p, V_PATIENTS)["state"], "applied");
    let now = p.target_sql("SELECT source_checksum FROM cutover_ledger WHERE version = '20250101T090100'");
    assert_ne!(now, recorded, "repair recorded the new file");
    p.ok(&["up"]);
}

/// A row with fewer cells than the header is a bad row, not a bad file: a `decode` reject at
/// its line, naming the first missing column; the rows around it are written.
#[test]
fn a_short_row_is_a_reject_at_its_line() {
    let p = project(Backend::Sqlite, "");
    std::fs::write(
        export(&p).join("patients.csv"),
        "mrn,firstName,notes\na1,Ann,x\na2\na3,Lee,y\n",
    )
    .unwrap();
    p.data_step(PATIENTS, &patients_step("patients.csv", ""));
    p.ok(&["up", "--continue-on-error"]);
    assert_eq!(p.target_sql("SELECT mrn FROM patients ORDER BY mrn"), "A1\nA3");
    let rejects = p.json(&["rejects", "list"]);
    let r = &rejects.as_array().unwrap()[0];
    assert_eq!(
        (r["source_key"].as_str(), r["rule"].as_str()),
        (Some("3"), Some("decode")),
        "{r}"
    );
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("'firstName' and the columns after it are missing"),
        "{r}"
    );
    assert_eq!(counts(&p, V_PATIENTS), (3, 2, 0, 1));
}

/// A CSV whose lines end with a lone CR (old Mac exports): every row keeps its own line as its
/// key. They all were line 1: the ID map refused the second row and the run failed.
#[test]
fn cr_only_line_endings() {
    let p = project(Backend::Sqlite, "");
    std::fs::write(
        export(&p).join("patients.csv"),
        "mrn,firstName,notes\ra1,Ann,x\ra2,Bo,\"two\rlines\"\r\ra3,Cy,z",
    )
    .unwrap();
    p.data_step(PATIENTS, &patients_step("patients.csv", ""));
    p.ok(&["up"]);
    assert_eq!(
        p.target_sql("SELECT mrn, source_line FROM patients ORDER BY mrn"),
        "A1|2\nA2|3\nA3|6"
    );
    assert_eq!(counts(&p, V_PATIENTS), (3, 3, 0, 0));
}
