//! The import scenario (SCENARIO-import.md) end to end: fixtures/import, unchanged, on an
//! export folder from `cutover generate import`, run the way an operator runs it
//! (`cutover -C PROJECT --source file:///ABS/export/ --target URL up --continue-on-error`) on
//! SQLite and PostgreSQL, and every count checked against the generator's manifest (computed
//! from what it planted, by the scenario's rules, not by the engine). Then: a re-run and a
//! second import job write nothing; rollback of orders then patients removes exactly their
//! rows; a fixed and retried patient releases its waiting orders; a changed file is refused.

mod common;
#[macro_use]
mod support;

use serde_json::Value as J;
use std::path::{Path, PathBuf};
use std::process::Output;
use support::{Backend, TestProject, stderr, stdout};

const SCHEMA: &str = "20250301T090000";
const PATIENTS: &str = "20250301T090100";
const ORDERS: &str = "20250301T090200";

/// The import project on one target, with its export folder outside the project.
struct Import {
    p: TestProject,
    /// Holds the export folder.
    _export_dir: tempfile::TempDir,
    export: PathBuf,
    m: J,
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/import")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn generate(dir: &Path, patients: u32, orders: u32, seed: u32, format: &str) -> J {
    let o = std::process::Command::new(support::bin())
        .args(["generate", "import"])
        .arg(dir)
        .args([
            "--patients",
            &patients.to_string(),
            "--orders",
            &orders.to_string(),
            "--seed",
            &seed.to_string(),
            "--orders-format",
            format,
            "--anomaly-rate",
            "0.2",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// A copy of fixtures/import (batches of 300 rows, so a file spans several) and a generated
/// export folder; for a CSV orders file the orders step names orders.csv.
fn import(b: Backend, patients: u32, orders: u32, seed: u32, format: &str) -> Import {
    let p = TestProject::new(b);
    copy_dir(&fixture(), p.path());
    let config = p.path().join("cutover.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("batch_size = 2000"), "{text}");
    std::fs::write(&config, text.replace("batch_size = 2000", "batch_size = 300")).unwrap();
    if format == "csv" {
        let step = p.step_dir(&format!("{ORDERS}_orders")).join("step.toml");
        let text = std::fs::read_to_string(&step).unwrap();
        let edited = text.replace(
            "file = \"orders.xlsx\"\nsheet = \"Orders\"\n",
            "file = \"orders.csv\"\n",
        );
        assert_ne!(edited, text);
        std::fs::write(&step, edited).unwrap();
    }
    let export_dir = tempfile::tempdir().unwrap();
    let export = export_dir.path().join("export");
    let m = generate(&export, patients, orders, seed, format);
    Import {
        p,
        _export_dir: export_dir,
        export,
        m,
    }
}

fn n(v: &J) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not a number: {v}"))
}

impl Import {
    fn source_url(&self) -> String {
        format!("file://{}/", self.export.display())
    }

    fn target_url(&self) -> String {
        match self.p.backend {
            Backend::Sqlite => format!("sqlite://{}", self.p.path().join("target.db").display()),
            Backend::Postgres => self.p.target_url.clone(),
        }
    }

    /// `cutover -C PROJECT --source file:///ABS/export/ --target URL ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        let mut c = self
            .p
            .cmd(&["--source", &self.source_url(), "--target", &self.target_url()]);
        c.args(args);
        c.output().expect("run cutover")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "cutover {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    fn json(&self, args: &[&str]) -> J {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ok(&a);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// `up --continue-on-error --json`; returns the run id.
    fn up(&self) -> String {
        let out = self.ok(&["up", "--continue-on-error", "--json"]);
        let events: Vec<J> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let run_id = events
            .iter()
            .find(|e| e["event"] == "planned")
            .and_then(|e| e["run_id"].as_str())
            .unwrap_or_else(|| panic!("no planned event: {out}"));
        run_id.to_string()
    }

    fn scalar(&self, sql: &str) -> i64 {
        let out = self.p.target_sql(sql);
        out.trim().parse().unwrap_or_else(|_| panic!("{sql}: {out}"))
    }

    fn file(&self, name: &str) -> &J {
        &self.m["files"][name]
    }

    fn orders_file(&self) -> &J {
        let name = format!("orders.{}", self.m["config"]["orders_format"].as_str().unwrap());
        &self.m["files"][name]
    }

    /// Each migration's (version, state) from `status --json` (on this export folder: the
    /// fixture's own `file://export/` is not there).
    fn states(&self) -> Vec<(String, String)> {
        let status = self.json(&["status"]);
        let ms = status["migrations"].as_array().expect("migrations");
        assert!(!ms.is_empty(), "{status}");
        ms.iter()
            .map(|m| {
                (
                    m["version"].as_str().unwrap_or("").to_string(),
                    m["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// The ledger's counts of one step from `status --json`.
    fn counts(&self, version: &str) -> J {
        let status = self.json(&["status"]);
        status["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["version"] == version)
            .unwrap_or_else(|| panic!("no step {version}: {status}"))["counts"]
            .clone()
    }

    /// Open error-level rejects of a source, per `column` (rule, field).
    fn rejects_by(&self, source: &str, column: &str, level: &str) -> std::collections::BTreeMap<String, i64> {
        let state = if level == "error" { " AND state = 'open'" } else { "" };
        self.p
            .target_sql(&format!(
                "SELECT {column} || '=' || COUNT(*) FROM cutover_rejects WHERE source_table = '{source}' AND level = '{level}'{state} GROUP BY {column} ORDER BY {column}"
            ))
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.rsplit_once('=').unwrap();
                (k.to_string(), v.parse().unwrap())
            })
            .collect()
    }
}

fn as_counts(v: &J) -> std::collections::BTreeMap<String, i64> {
    v.as_object().unwrap().iter().map(|(k, v)| (k.clone(), n(v))).collect()
}

/// The target holds exactly what the manifest says: rows per table, each file's books (the
/// ledger, the ID map and the reject store), rejects per rule and field, the lookup's reasons,
/// warnings per field, and the content of the written rows.
fn check_against_manifest(t: &Import) {
    let m = &t.m;
    assert_eq!(t.p.count("patients"), n(&m["tables"]["patients"]), "patients rows");
    assert_eq!(t.p.count("orders"), n(&m["tables"]["orders"]), "orders rows");
    for (version, source, file) in [
        (PATIENTS, "patients", t.file("patients.csv")),
        (ORDERS, "orders", t.orders_file()),
    ] {
        let c = t.counts(version);
        let ledger = (n(&c["source"]), n(&c["written"]), n(&c["skipped"]), n(&c["rejected"]));
        let want = (
            n(&file["rows"]),
            n(&file["written"]),
            n(&file["skipped"]),
            n(&file["rejected"]),
        );
        assert_eq!(
            ledger, want,
            "{source}: ledger (rows, written, skipped, rejected) vs manifest"
        );
        // The same books from the tables: one ID-map entry per written or skipped row, one
        // open reject per rejected row.
        let mapped = t.scalar(&format!(
            "SELECT COUNT(*) FROM cutover_id_map WHERE version = '{version}'"
        ));
        assert_eq!(mapped, want.1 + want.2, "{source}: ID map entries");
        assert_eq!(
            t.rejects_by(source, "rule", "error"),
            as_counts(&file["rejected_by_rule"]),
            "{source}: rejects per rule"
        );
        assert_eq!(
            t.rejects_by(source, "field", "error"),
            as_counts(&file["rejected_by_field"]),
            "{source}: rejects per field"
        );
        assert_eq!(
            t.rejects_by(source, "field", "warning"),
            as_counts(&file["warnings"]),
            "{source}: warnings per field"
        );
    }
    let o = t.orders_file();
    let reason = |like: &str| {
        t.scalar(&format!(
            "SELECT COUNT(*) FROM cutover_rejects WHERE source_table = 'orders' AND rule = 'lookup' AND state = 'open' AND reason LIKE '{like}'"
        ))
    };
    assert_eq!(reason("%ambiguous%"), n(&o["lookup_reasons"]["ambiguous"]));
    assert_eq!(reason("%no patient%"), n(&o["lookup_reasons"]["no patient"]));
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM cutover_rejects WHERE source_table = 'orders' AND rule = 'waiting' AND state = 'open' AND reason LIKE 'waiting for patients %'"),
        n(&o["rejected_by_rule"]["waiting"]),
        "waiting orders name the patient reject they wait for"
    );

    // content
    let c = &m["content"];
    let by = |sql: &str| -> std::collections::BTreeMap<String, i64> {
        t.p.target_sql(sql)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.rsplit_once('=').unwrap();
                (k.to_string(), v.parse().unwrap())
            })
            .collect()
    };
    assert_eq!(
        by("SELECT gender || '=' || COUNT(*) FROM patients GROUP BY gender ORDER BY gender"),
        as_counts(&c["genders"])
    );
    assert_eq!(
        by("SELECT status || '=' || COUNT(*) FROM orders GROUP BY status ORDER BY status"),
        as_counts(&c["order_statuses"])
    );
    assert_eq!(
        by("SELECT priority || '=' || COUNT(*) FROM orders GROUP BY priority ORDER BY priority"),
        as_counts(&c["order_priorities"])
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM patients WHERE address IS NULL"),
        n(&c["address_null"])
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM patients WHERE email IS NULL"),
        n(&c["email_null"])
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM patients WHERE phone IS NULL"),
        n(&c["phone_null"])
    );
    let newline = match t.p.backend {
        Backend::Sqlite => "char(10)",
        Backend::Postgres => "chr(10)",
    };
    assert_eq!(
        t.scalar(&format!(
            "SELECT COUNT(*) FROM patients WHERE notes LIKE '%' || {newline} || '%'"
        )),
        n(&c["notes_with_newline"])
    );
    check_samples(t);
}

/// JSON without its null leaves (an absent leaf and a null one say the same).
fn without_nulls(v: J) -> J {
    match v {
        J::Object(o) => J::Object(o.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

/// The manifest's sample patients, column by column, as the target stores them.
fn check_samples(t: &Import) {
    const UNIT: &str = "\u{1f}";
    const NULL: &str = "\u{2400}";
    let samples = t.m["samples"].as_array().unwrap();
    assert!(samples.len() > 25, "samples of every written kind");
    let mrns: Vec<String> = samples
        .iter()
        .map(|s| format!("'{}'", s["mrn"].as_str().unwrap()))
        .collect();
    let cols = [
        "mrn",
        "first_name",
        "last_name",
        "CAST(date_of_birth AS TEXT)",
        "email",
        "phone",
        "gender",
        "CAST(address AS TEXT)",
        "external_id",
        "notes",
    ];
    let select = cols
        .iter()
        .map(|c| format!("COALESCE({c}, '{NULL}')"))
        .collect::<Vec<_>>()
        .join(&format!(" || '{UNIT}' || "));
    let out = t.p.target_sql(&format!(
        "SELECT {select} || '{UNIT}' FROM patients WHERE mrn IN ({}) ORDER BY mrn",
        mrns.join(", ")
    ));
    let mut rows: std::collections::BTreeMap<String, Vec<Option<String>>> = Default::default();
    let mut fields = out.split(UNIT).map(|f| f.strip_prefix('\n').unwrap_or(f));
    loop {
        let row: Vec<Option<String>> = fields
            .by_ref()
            .take(cols.len())
            .map(|f| (f != NULL).then(|| f.to_string()))
            .collect();
        if row.len() < cols.len() {
            break;
        }
        rows.insert(row[0].clone().unwrap(), row);
    }
    assert_eq!(rows.len(), samples.len(), "every sample patient is in the target");
    let text = |v: &J| v.as_str().map(String::from);
    for s in samples {
        let mrn = s["mrn"].as_str().unwrap();
        let got = &rows[mrn];
        let want = [
            text(&s["mrn"]),
            text(&s["first_name"]),
            text(&s["last_name"]),
            text(&s["date_of_birth"]),
            text(&s["email"]),
            text(&s["phone"]),
            text(&s["gender"]),
            None,
            text(&s["external_id"]),
            text(&s["notes"]),
        ];
        for (i, col) in cols.iter().enumerate() {
            if i == 7 {
                let stored = got[7].as_ref().map(|a| {
                    without_nulls(serde_json::from_str(a).unwrap_or_else(|e| panic!("{mrn}: address {a}: {e}")))
                });
                let expected = (!s["address"].is_null()).then(|| without_nulls(s["address"].clone()));
                assert_eq!(stored, expected, "{mrn}: address");
            } else {
                assert_eq!(got[i], want[i], "{mrn}: {col}");
            }
        }
    }
}

fn whole_scenario_matches_the_manifest(b: Backend) {
    let t = import(b, 1500, 4000, 7, "xlsx");
    let run_id = t.up();
    assert_eq!(
        t.states(),
        [SCHEMA, PATIENTS, ORDERS].map(|v| (v.to_string(), "applied".to_string())),
    );
    check_against_manifest(&t);
    // import_job is the run that wrote the row
    for table in ["patients", "orders"] {
        assert_eq!(
            t.p.target_sql(&format!("SELECT DISTINCT import_job FROM {table}")),
            run_id,
            "{table}.import_job"
        );
    }
    let v = t.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");

    // Rule 4: running `up` again writes nothing.
    let out = t.ok(&["up", "--continue-on-error"]);
    assert!(out.contains("nothing to do"), "{out}");
    check_against_manifest(&t);

    // Rule 5: rolling back the orders import removes exactly its orders ...
    let patients = t.p.count("patients");
    t.ok(&["down", "--yes"]);
    assert_eq!(t.p.count("orders"), 0);
    assert_eq!(t.p.count("patients"), patients);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM cutover_rejects WHERE source_table = 'orders'"),
        0,
        "the orders' rejects go with them"
    );
    // ... and then the patients import exactly its patients.
    t.ok(&["down", "--yes"]);
    assert_eq!(t.p.count("patients"), 0);
    assert_eq!(
        t.scalar(&format!(
            "SELECT COUNT(*) FROM cutover_id_map WHERE version IN ('{PATIENTS}', '{ORDERS}')"
        )),
        0
    );
    assert_eq!(
        t.states(),
        [(SCHEMA, "applied"), (PATIENTS, "reverted"), (ORDERS, "reverted")]
            .map(|(v, s)| (v.to_string(), s.to_string()))
    );
    // Re-applied, the same files give the same books.
    t.up();
    check_against_manifest(&t);
}
both!(whole_scenario_matches_the_manifest);

/// Rule 4 across import jobs: the same two steps as new versions (a second import job over the
/// same files) write nothing, skip every row the first job wrote or skipped, and reject what
/// it rejected; rolling the second job back leaves the first job's rows.
fn a_second_import_job_writes_nothing(b: Backend) {
    let t = import(b, 800, 2000, 13, "xlsx");
    t.up();
    let (patients, orders) = (t.p.count("patients"), t.p.count("orders"));
    // Word for word: the same files, the same ID maps. A file row's legacy key is its line,
    // so each skipped row's alias is already in the map and is not written again.
    for (from, to) in [
        (format!("{PATIENTS}_patients"), "20250302T090100_patients_again"),
        (format!("{ORDERS}_orders"), "20250302T090200_orders_again"),
    ] {
        copy_dir(&t.p.step_dir(&from), &t.p.step_dir(to));
    }
    t.up();
    assert_eq!((t.p.count("patients"), t.p.count("orders")), (patients, orders));
    for (version, file) in [
        ("20250302T090100", t.file("patients.csv")),
        ("20250302T090200", t.orders_file()),
    ] {
        let c = t.counts(version);
        assert_eq!(
            (n(&c["source"]), n(&c["written"]), n(&c["skipped"]), n(&c["rejected"])),
            (
                n(&file["rows"]),
                0,
                n(&file["written"]) + n(&file["skipped"]),
                n(&file["rejected"])
            ),
            "{version}: the second job's books"
        );
    }
    // The second job is reversible on its own: nothing of the first job goes with it.
    t.ok(&["down", "--yes"]);
    t.ok(&["down", "--yes"]);
    assert_eq!((t.p.count("patients"), t.p.count("orders")), (patients, orders));
    check_against_manifest(&t);
}
both!(a_second_import_job_writes_nothing);

/// Rule 2: an order whose patient was rejected waits; fixing the patient's row and retrying it
/// writes the patient and releases exactly the orders that waited for it.
fn a_fixed_patient_releases_its_waiting_orders(b: Backend) {
    let t = import(b, 800, 2000, 21, "xlsx");
    t.up();
    let w = t.m["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|w| n(&w["orders"]))
        .expect("a rejected patient with waiting orders")
        .clone();
    let (line, waiting) = (w["line"].to_string(), n(&w["orders"]));
    let rejects = t.json(&["rejects", "list", "--open"]);
    let items = rejects.as_array().unwrap();
    let waiters = |items: &[J]| {
        items
            .iter()
            .filter(|r| r["source_table"] == "orders" && r["waits_for"] == format!("patients {line}").as_str())
            .count() as i64
    };
    assert_eq!(waiters(items), waiting, "orders waiting for patients {line}");
    let patient = items
        .iter()
        .find(|r| r["source_table"] == "patients" && r["source_key"] == line.as_str())
        .unwrap_or_else(|| panic!("the reject of patients.csv line {line}"));
    assert_eq!(patient["row"]["_line"].to_string().trim_matches('"'), line, "{patient}");
    let id = patient["id"].to_string();
    let (patients, orders) = (t.p.count("patients"), t.p.count("orders"));
    let fix = format!(
        "{}={}",
        w["fix_column"].as_str().unwrap(),
        w["fix_value"].as_str().unwrap()
    );
    t.ok(&["rejects", "fix", &id, &fix]);
    t.ok(&["rejects", "retry", &id]);
    assert_eq!(t.p.count("patients"), patients + 1);
    assert_eq!(t.p.count("orders"), orders + waiting, "the waiting orders went through");
    let still = t.json(&["rejects", "list", "--open"]);
    assert_eq!(waiters(still.as_array().unwrap()), 0);
    // The released orders belong to the fixed patient.
    let mrn = patient["row"]["mrn"].as_str().unwrap().trim().to_uppercase();
    assert_eq!(
        t.scalar(&format!(
            "SELECT COUNT(*) FROM orders o JOIN patients p ON p.id = o.patient_id WHERE p.mrn = '{mrn}'"
        )),
        waiting
    );
}
both!(a_fixed_patient_releases_its_waiting_orders);

/// Rule 5: a file changed after its import makes its step `modified`, naming the file, and
/// `up` refuses until the operator re-plans.
fn a_changed_file_is_refused(b: Backend) {
    let t = import(b, 300, 600, 5, "xlsx");
    t.up();
    let csv = t.export.join("patients.csv");
    let mut bytes = std::fs::read(&csv).unwrap();
    bytes.extend_from_slice(b"MRN99999999,Late,Row,1990-01-01,F,,,,,,,,,,,\r\n");
    std::fs::write(&csv, bytes).unwrap();
    let status = t.json(&["status"]);
    let step = status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["version"] == PATIENTS)
        .unwrap()
        .clone();
    assert_eq!(step["state"], "modified", "{step}");
    assert!(
        step["modified_file"]
            .as_str()
            .is_some_and(|f| f.ends_with("patients.csv")),
        "{step}"
    );
    let o = t.run(&["up", "--continue-on-error"]);
    assert_eq!(o.status.code(), Some(4), "{}\n{}", stdout(&o), stderr(&o));
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains("patients.csv") && said.contains(PATIENTS), "{said}");
    assert_eq!(t.p.count("patients"), n(&t.m["tables"]["patients"]), "nothing written");
}
both!(a_changed_file_is_refused);

/// The export may bring orders.csv instead of orders.xlsx: the same rules, the same books.
#[test]
fn orders_as_csv_match_the_manifest() {
    let t = import(Backend::Sqlite, 600, 1500, 9, "csv");
    t.up();
    check_against_manifest(&t);
}

/// `cutover demo --import --no-console`: the bundled project on a fresh export folder inside
/// it (the fixture's relative `file://export/`), applied headless, matching its manifest.
#[test]
fn the_import_demo_runs_headless() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let o = std::process::Command::new(support::bin())
        .args(["demo"])
        .arg(&demo)
        .args(["--import", "--rows", "400", "--no-console"])
        .env_remove("CUTOVER_SOURCE")
        .env_remove("CUTOVER_TARGET")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let m: J = serde_json::from_str(&std::fs::read_to_string(demo.join("export/manifest.json")).unwrap()).unwrap();
    assert_eq!(n(&m["config"]["patients"]), 400);
    assert_eq!(n(&m["config"]["orders"]), 1000);
    let count = |table: &str| -> i64 {
        support::sqlite3(&demo.join("target.db"), &format!("SELECT COUNT(*) FROM {table}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(count("patients"), n(&m["tables"]["patients"]));
    assert_eq!(count("orders"), n(&m["tables"]["orders"]));
    assert!(stdout(&o).contains("patients.csv"), "{}", stdout(&o));
}
