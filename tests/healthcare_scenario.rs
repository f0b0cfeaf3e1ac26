//! The healthcare scenario end to end on real servers: `cutover generate healthcare` fills a
//! MariaDB database (deterministic per seed) and writes a manifest of what the rules imply,
//! computed from what it planted (never through the engine); fixtures/healthcare, unchanged
//! but for its batch size, moves it into PostgreSQL the way an operator runs it
//! (`cutover -C COPY --source mysql://… --target postgres://… up --continue-on-error`); every
//! count, every reject and warning by rule, and the record store are held against the manifest;
//! verify passes with its checksums; a second `up` writes nothing.
//!
//! [`setup`] is the one shared start (servers, generate, copy the fixture): later cases (check,
//! assess, sync, report) start from it too.

mod common;
mod support;

use common::mysql::MariaDbServer;
use common::pg::PgServer;
use serde_json::Value as J;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{stderr, stdout};

/// Patients of the default test size: several batches per step, well under a minute.
const PATIENTS: u64 = 300;
const SEED: u64 = 7;
/// Batches of this many rows in the test's copy (the fixture's 5000 would be one batch).
const BATCH: u64 = 100;

/// Step versions of fixtures/healthcare and the target table each one writes.
const STEPS: &[(&str, &str)] = &[
    ("20250401T090100", "specialties"),
    ("20250401T090200", "physicians"),
    ("20250401T090300", "patients"),
    ("20250401T090400", "appointments"),
    ("20250401T090500", "medical_records"),
    ("20250401T090600", "record_files"),
];

/// A generated legacy database, an empty target and a copy of the fixture.
pub struct Healthcare {
    /// The project folder (a copy of fixtures/healthcare).
    dir: tempfile::TempDir,
    pub source: String,
    pub target: String,
    /// The generator's manifest.
    pub m: J,
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/healthcare")
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

/// `cutover generate healthcare URL --patients N --seed S --manifest FILE`.
fn generate(url: &str, patients: u64, seed: u64, manifest: &Path) -> Output {
    Command::new(support::bin())
        .args(["generate", "healthcare", url])
        .args(["--patients", &patients.to_string(), "--seed", &seed.to_string()])
        .arg("--manifest")
        .arg(manifest)
        .output()
        .expect("run cutover generate")
}

/// Servers (shared per test process), a fresh MariaDB database generated with `patients` and
/// `seed`, a fresh PostgreSQL database, and a copy of the fixture with batches of [`BATCH`].
pub fn setup(patients: u64, seed: u64) -> Healthcare {
    let source = MariaDbServer::shared().fresh_db("practice");
    let target = PgServer::shared().fresh_db("practice_v2");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), dir.path());
    let config = dir.path().join("cutover.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("batch_size = 5000"), "{text}");
    std::fs::write(
        &config,
        text.replace("batch_size = 5000", &format!("batch_size = {BATCH}")),
    )
    .unwrap();
    let manifest = dir.path().join("manifest.json");
    let o = generate(&source, patients, seed, &manifest);
    assert!(o.status.success(), "generate: {}\n{}", stdout(&o), stderr(&o));
    let m: J = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    Healthcare { dir, source, target, m }
}

impl Healthcare {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `cutover -C COPY --source SOURCE --target TARGET ARGS`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(support::bin());
        c.arg("-C")
            .arg(self.path())
            .args(["--source", &self.source, "--target", &self.target])
            .args(args)
            .env_remove("CUTOVER_SOURCE")
            .env_remove("CUTOVER_TARGET");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run cutover")
    }

    pub fn ok(&self, args: &[&str]) -> String {
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

    pub fn json(&self, args: &[&str]) -> J {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ok(&a);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Rows of a query on the target, `|`-separated.
    pub fn target_sql(&self, sql: &str) -> String {
        PgServer::shared().psql(&self.target, sql)
    }

    pub fn source_sql(&self, sql: &str) -> String {
        MariaDbServer::shared().mysql(&self.source, sql)
    }

    pub fn count(&self, table: &str) -> u64 {
        let out = self.target_sql(&format!("SELECT COUNT(*) FROM {table}"));
        out.trim().parse().unwrap_or_else(|_| panic!("{table}: {out}"))
    }

    /// `rule=count` lines of the reject store for one source table and level.
    fn by_rule(&self, source_table: &str, level: &str) -> BTreeMap<String, u64> {
        self.target_sql(&format!(
            "SELECT rule || '=' || COUNT(*) FROM cutover_rejects WHERE source_table = '{source_table}' AND level = '{level}' GROUP BY rule"
        ))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (rule, n) = l.trim().split_once('=').unwrap_or_else(|| panic!("{l}"));
            (rule.to_string(), n.parse().unwrap())
        })
        .collect()
    }

    /// Files in the project's record store.
    fn stored_files(&self) -> u64 {
        fn walk(d: &Path) -> u64 {
            std::fs::read_dir(d)
                .map(|it| {
                    it.map(|e| {
                        let p = e.unwrap().path();
                        if p.is_dir() { walk(&p) } else { 1 }
                    })
                    .sum()
                })
                .unwrap_or(0)
        }
        walk(&self.path().join("record-store"))
    }

    /// The ledger's counts per step version, from `status --json`.
    fn counts(&self) -> BTreeMap<String, J> {
        let status = self.json(&["status"]);
        status["migrations"]
            .as_array()
            .unwrap_or_else(|| panic!("{status}"))
            .iter()
            .map(|m| (m["version"].as_str().unwrap().to_string(), m["counts"].clone()))
            .collect()
    }

    /// Every target count, every step's books, rejects and warnings by rule, and the record
    /// store, against the manifest.
    fn assert_matches_manifest(&self) {
        let counts = self.counts();
        for (version, table) in STEPS {
            let want = &self.m["steps"][table];
            assert_eq!(
                self.count(table),
                self.m["expected"][table].as_u64().unwrap(),
                "rows in {table}"
            );
            let got = &counts[*version];
            for k in ["source", "written", "skipped", "rejected"] {
                assert_eq!(got[k], want[k], "{table}: ledger {k} (ledger {got}, manifest {want})");
            }
            let rules = |v: &J| -> BTreeMap<String, u64> {
                v.as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
                    .collect()
            };
            assert_eq!(
                self.by_rule(table, "error"),
                rules(&want["rejected_by_rule"]),
                "{table}: rejects by rule"
            );
            assert_eq!(
                self.by_rule(table, "warning"),
                rules(&want["warnings_by_rule"]),
                "{table}: warnings by rule"
            );
        }
        assert_eq!(
            self.stored_files(),
            self.m["stored_files"].as_u64().unwrap(),
            "record store"
        );
    }
}

fn planted(m: &J, what: &str) -> u64 {
    m["planted"][what].as_u64().unwrap_or(0)
}

#[test]
fn up_moves_what_the_manifest_predicts_and_verify_passes() {
    let h = setup(PATIENTS, SEED);
    // The manifest describes a run worth checking: every planted kind of dirt is there.
    for what in [
        "patients.zero_date_of_birth",
        "patients.future_date_of_birth",
        "patients.duplicate_email",
        "patients.invalid_email",
        "patients.bad_phone",
        "appointments.missing_patient",
        "medical_records.zero_recorded_on",
        "record_files.empty_content",
        "physicians.missing_specialty",
    ] {
        assert!(
            planted(&h.m, what) > 0,
            "nothing planted for {what}: {}",
            h.m["planted"]
        );
    }
    for (_, table) in STEPS {
        assert_eq!(
            h.source_sql(&format!("SELECT COUNT(*) FROM {table}")),
            h.m["tables"][table].to_string(),
            "legacy rows of {table}"
        );
    }
    // Waiting rows exist on every level of the chain (patient -> record -> file).
    for table in ["appointments", "medical_records", "record_files"] {
        assert!(
            h.m["steps"][table]["rejected_by_rule"]["waiting"].as_u64().unwrap_or(0) > 0,
            "{table}: {}",
            h.m["steps"][table]
        );
    }

    let out = h.ok(&["up", "--continue-on-error"]);
    let status = h.json(&["status"]);
    let states: Vec<&str> = status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["applied"; 7], "{out}\n{status}");
    h.assert_matches_manifest();

    // A skipped duplicate's appointments went to the patient that was kept: the earlier
    // patient with that email, through the duplicate's alias in the ID map.
    let pairs: Vec<(String, String, String)> = h
        .source_sql(
            "SELECT a.id, a.patient_id, (SELECT MIN(q.id) FROM patients q WHERE LOWER(TRIM(q.email)) = LOWER(TRIM(p.email)))
             FROM appointments a JOIN patients p ON p.id = a.patient_id
             WHERE EXISTS (SELECT 1 FROM patients q WHERE LOWER(TRIM(q.email)) = LOWER(TRIM(p.email)) AND q.id < p.id)",
        )
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect();
    assert!(!pairs.is_empty(), "no appointment of a duplicate patient");
    let values: Vec<String> = pairs
        .iter()
        .map(|(a, p, kept)| format!("({a}, '{p}', {kept})"))
        .collect();
    let landed = h.target_sql(&format!(
        "SELECT COUNT(*) FROM (VALUES {}) v(appointment, duplicate, kept)
         JOIN appointments a ON a.legacy_id = v.appointment
         JOIN cutover_id_map m ON m.map = 'patients' AND m.old_key = v.duplicate AND m.alias = 1
         JOIN patients p ON p.id = a.patient_id AND p.id = m.new_id AND p.legacy_id = v.kept",
        values.join(", ")
    ));
    assert_eq!(landed, pairs.len().to_string(), "appointments of duplicates: {pairs:?}");

    // Rejects name what the operator must look at.
    let zero =
        h.target_sql("SELECT reason FROM cutover_rejects WHERE source_table = 'patients' AND rule = 'decode' LIMIT 1");
    assert!(zero.contains("date_of_birth") && zero.contains("0000-00-00"), "{zero}");

    // verify: accounting, the declared counts and checksums, foreign keys, the record store.
    let v = h.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v:#}");
    let checks = v["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap_or("")).collect();
    for kind in ["checksum", "foreign_keys", "documents"] {
        assert!(
            checks.iter().any(|c| c["kind"] == kind && c["ok"] == true),
            "no passing {kind} check in {names:?}"
        );
    }
    assert_eq!(
        checks.iter().filter(|c| c["kind"] == "checksum").count(),
        4,
        "the fixture's checksums: {names:?}"
    );

    // A second `up` writes nothing twice: same rows, same rejects, same store.
    let rejects = h.target_sql("SELECT COUNT(*) FROM cutover_rejects");
    let ids = h.target_sql("SELECT COUNT(*) FROM cutover_id_map");
    let again = h.ok(&["up", "--continue-on-error"]);
    assert!(again.contains("nothing to do"), "{again}");
    h.assert_matches_manifest();
    assert_eq!(h.target_sql("SELECT COUNT(*) FROM cutover_rejects"), rejects);
    assert_eq!(h.target_sql("SELECT COUNT(*) FROM cutover_id_map"), ids);
}

#[test]
fn generate_is_deterministic_and_refuses_a_database_with_rows() {
    let a = MariaDbServer::shared().fresh_db("gen_a");
    let b = MariaDbServer::shared().fresh_db("gen_b");
    let dir = tempfile::tempdir().unwrap();
    let (ma, mb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    for (url, m) in [(&a, &ma), (&b, &mb)] {
        let o = generate(url, 60, 3, m);
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
        // The operator's summary: each step's books as the rules imply them.
        let manifest: J = serde_json::from_str(&std::fs::read_to_string(m).unwrap()).unwrap();
        let p = &manifest["steps"]["patients"];
        let line = format!(
            "  patients: 60 rows = {} written + {} skipped + {} rejected",
            p["written"], p["skipped"], p["rejected"]
        );
        assert!(stdout(&o).contains(&line), "{line:?} not in:\n{}", stdout(&o));
    }
    assert_eq!(
        std::fs::read_to_string(&ma).unwrap(),
        std::fs::read_to_string(&mb).unwrap()
    );
    let digest = |url: &str| -> Vec<String> {
        [
            "specialties",
            "physicians",
            "patients",
            "appointments",
            "medical_records",
            "record_files",
        ]
        .iter()
        .map(|t| MariaDbServer::shared().mysql(url, &format!("CHECKSUM TABLE {t}")))
        .map(|line| line.split('\t').nth(1).unwrap_or("").to_string())
        .collect()
    };
    assert_eq!(digest(&a), digest(&b), "same seed, same rows");
    // Another seed gives other rows.
    let c = MariaDbServer::shared().fresh_db("gen_c");
    let o = generate(&c, 60, 4, &dir.path().join("c.json"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(digest(&a)[2], digest(&c)[2]);

    // A database whose legacy tables hold rows is refused, and keeps its rows.
    let before = MariaDbServer::shared().mysql(&a, "SELECT COUNT(*) FROM patients");
    let o = generate(&a, 60, 3, &dir.path().join("again.json"));
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("already has a `specialties` table with rows"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        MariaDbServer::shared().mysql(&a, "SELECT COUNT(*) FROM patients"),
        before
    );

    // The zero dates are really there (the server's sql_mode let them in).
    let my = MariaDbServer::shared();
    assert!(
        my.mysql(&a, "SELECT COUNT(*) FROM patients WHERE YEAR(date_of_birth) = 0")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    // updated_at is the change cursor a sync needs: generated in the past, bumped by MariaDB
    // on every update past every generated value.
    let newest = my.mysql(&a, "SELECT MAX(updated_at) FROM patients");
    assert!(newest.as_str() < "2025-07-01", "{newest}");
    my.mysql(&a, "UPDATE patients SET first_name = 'Zed' WHERE id = 2");
    let bumped = my.mysql(&a, "SELECT updated_at FROM patients WHERE id = 2");
    assert!(
        bumped > newest,
        "updated_at {bumped} after an update, newest generated {newest}"
    );
}

#[test]
fn generate_never_shows_the_password() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the connection is refused.
    let o = generate(
        "mysql://legacy:Hunter2Secret@127.0.0.1:1/practice",
        10,
        1,
        &dir.path().join("m.json"),
    );
    assert!(!o.status.success());
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(all.contains("cannot connect to"), "{all}");
    assert!(!all.contains("Hunter2Secret"), "{all}");
    assert!(
        !dir.path().join("m.json").exists(),
        "no manifest for a run that did nothing"
    );
}

/// Rule -> count of a manifest object (`rejected_by_rule`, `warnings_by_rule`).
fn rules_of(v: &J) -> BTreeMap<String, u64> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect()
}

/// The night before: `check` passes on both servers, `assess` predicts per step exactly what the
/// manifest says `up` will write and reject (and writes nothing), then after `up` and `verify`
/// the run's report holds the ledger's books, the rejects by rule and verify's result.
#[test]
fn check_assess_and_report_tell_the_operator_the_truth() {
    let h = setup(PATIENTS, SEED);

    let check = h.json(&["check"]);
    assert_eq!(check["ok"], true, "{check}");
    let checks = check["checks"].as_array().unwrap();
    for name in [
        "source reachable",
        "target reachable",
        "source version",
        "target version",
        "privileges",
        "steps load",
    ] {
        let c = checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {check}"));
        assert_eq!(c["ok"], true, "{c}");
    }
    let versions = checks.iter().find(|c| c["name"] == "source version").unwrap();
    assert!(
        versions["detail"].as_str().unwrap().to_lowercase().contains("mariadb"),
        "{versions}"
    );

    let assess = h.json(&["assess"]);
    let steps = assess["steps"].as_array().unwrap();
    for (version, table) in STEPS {
        let s = steps
            .iter()
            .find(|s| s["version"] == *version)
            .unwrap_or_else(|| panic!("assess has no {version}: {assess}"));
        let want = &h.m["steps"][table];
        assert_eq!(s["source_rows"], want["source"], "{table}: assess source rows");
        assert_eq!(s["would_write"], want["written"], "{table}: assess would write ({s})");
        assert_eq!(s["would_write"], h.m["expected"][table], "{table}: assess vs expected");
        assert_eq!(
            rules_of(&s["rejects_by_rule"]),
            rules_of(&want["rejected_by_rule"]),
            "{table}: assess rejects by rule"
        );
    }
    assert!(assess["estimated_ms"].as_u64().is_some(), "{assess}");
    // Assess kept nothing: the schema step is still pending and created no table.
    assert_eq!(
        h.target_sql(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name IN ('patients', 'cutover_rejects')"
        )
        .trim(),
        "0"
    );

    h.ok(&["up", "--continue-on-error"]);
    h.assert_matches_manifest();
    h.ok(&["verify"]);

    let report = h.json(&["report"]);
    assert_eq!(report["operation"], "up", "{report}");
    assert_eq!(report["outcome"], "done", "{report}");
    let counts = h.counts();
    for (version, table) in STEPS {
        let s = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["version"] == *version)
            .unwrap_or_else(|| panic!("report has no {version}: {report}"));
        for k in ["source", "written", "skipped", "rejected"] {
            assert_eq!(s[k], counts[*version][k], "{table}: report {k} against the ledger");
        }
        let by_rule: BTreeMap<String, u64> = report["rejects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["step"] == *version)
            .map(|g| (g["rule"].as_str().unwrap().to_string(), g["count"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            by_rule,
            rules_of(&h.m["steps"][table]["rejected_by_rule"]),
            "{table}: report rejects"
        );
    }
    assert_eq!(report["verify"]["ok"], true, "{report}");
    let run_id = report["run_id"].as_str().unwrap();
    let md = std::fs::read_to_string(h.path().join("reports").join(format!("{run_id}.md")))
        .unwrap_or_else(|e| panic!("up wrote no report for {run_id}: {e}"));
    assert!(md.contains("patients"), "{md}");
}

/// The NDJSON events of a run's stdout.
fn events(out: &str) -> Vec<J> {
    out.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `GET /metrics` on ADDR, the body.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("scrape {addr}: {e}"));
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body
}

/// After the cutover night the practice keeps working: a patient's first name changes (MariaDB
/// bumps `updated_at`), a patient registers, one is soft-deleted. `cutover sync --once` brings the
/// new name to the target row of the same `legacy_id`, inserts the new patient and deletes the
/// deleted one, with `--metrics-addr` serving the pass's lag; a second pass has nothing to do.
#[test]
fn sync_once_brings_the_practices_changes_across() {
    let h = setup(PATIENTS, SEED);
    h.ok(&["up", "--continue-on-error"]);
    let patients = h.count("patients");

    // A written patient without appointments or records (so deleting it is possible), one to
    // rename, and a new legacy id.
    let free = h
        .target_sql(
            "SELECT p.legacy_id FROM patients p WHERE NOT EXISTS (SELECT 1 FROM appointments a WHERE a.patient_id = p.id) \
             AND NOT EXISTS (SELECT 1 FROM medical_records r WHERE r.patient_id = p.id) ORDER BY p.legacy_id LIMIT 1",
        )
        .trim()
        .to_string();
    let renamed = h
        .target_sql(&format!(
            "SELECT legacy_id FROM patients WHERE legacy_id <> {free} ORDER BY legacy_id LIMIT 1"
        ))
        .trim()
        .to_string();
    assert!(
        !free.is_empty() && !renamed.is_empty(),
        "free {free:?} renamed {renamed:?}"
    );
    let new_id: i64 = h.source_sql("SELECT MAX(id) + 1 FROM patients").trim().parse().unwrap();
    h.source_sql(&format!(
        "UPDATE patients SET first_name = 'Philippa' WHERE id = {renamed}; \
         INSERT INTO patients (id, first_name, last_name, date_of_birth, email, phone) \
           VALUES ({new_id}, 'Nora', 'Newcomer', '1990-05-06', 'nora.newcomer@example.org', NULL); \
         UPDATE patients SET deleted_at = NOW(6) WHERE id = {free};"
    ));

    let mut child = h
        .cmd(&[
            "sync",
            "--once",
            "--json",
            "--metrics-addr",
            "127.0.0.1:0",
            "--metrics-linger",
            "30",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start cutover sync");
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    let mut addr = None;
    let mut metrics = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let ev: J = match serde_json::from_str(&line) {
            Ok(ev) => ev,
            Err(_) => continue,
        };
        if ev["event"] == "metrics" {
            addr = ev["addr"].as_str().map(str::to_string);
        }
        let finished = ev["event"] == "finished";
        seen.push(ev);
        if finished {
            // The endpoint lingers: the scrape sees the pass's end values.
            metrics = scrape(addr.as_deref().expect("the metrics address comes first"));
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let finished = seen
        .iter()
        .find(|e| e["event"] == "finished")
        .unwrap_or_else(|| panic!("{seen:?}"));
    assert_eq!(finished["ok"], true, "{finished}");
    assert_eq!(finished["operation"], "sync", "{finished}");
    let synced = seen
        .iter()
        .find(|e| e["event"] == "synced" && e["version"] == "20250401T090300")
        .unwrap_or_else(|| panic!("no synced event for patients: {seen:?}"));
    assert_eq!(synced["inserted"], 1, "{synced}");
    assert_eq!(synced["deleted"], 1, "{synced}");
    assert!(synced["updated"].as_u64().unwrap() >= 1, "{synced}");
    assert_eq!(synced["rejected"], 0, "{synced}");
    assert_eq!(synced["lag_rows"], 0, "{synced}");
    assert!(
        metrics.contains("cutover_sync_lag_rows{step=\"20250401T090300\""),
        "{metrics}"
    );

    assert_eq!(
        h.target_sql(&format!("SELECT first_name FROM patients WHERE legacy_id = {renamed}"))
            .trim(),
        "Philippa"
    );
    assert_eq!(
        h.target_sql(&format!(
            "SELECT first_name || ' ' || email FROM patients WHERE legacy_id = {new_id}"
        ))
        .trim(),
        "Nora nora.newcomer@example.org"
    );
    assert_eq!(
        h.target_sql(&format!("SELECT COUNT(*) FROM patients WHERE legacy_id = {free}"))
            .trim(),
        "0"
    );
    assert_eq!(h.count("patients"), patients, "one in, one out");

    let again = events(&h.ok(&["sync", "--once", "--json"]));
    let synced = again
        .iter()
        .find(|e| e["event"] == "synced" && e["version"] == "20250401T090300")
        .unwrap_or_else(|| panic!("{again:?}"));
    for k in ["inserted", "updated", "deleted", "rejected", "lag_rows"] {
        assert_eq!(synced[k], 0, "second pass {k}: {synced}");
    }
}
