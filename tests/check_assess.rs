//! `cutover check` and `cutover assess` through the real binary: check's failure modes on real
//! servers (a refused port, a wrong password that is never printed, a missing database, a
//! SQLite target folder nobody can write in, a step that does not load), and assess on the
//! clinic scenario: what it says `up --continue-on-error` would write is what `up` writes,
//! step by step, and it writes nothing itself.

mod common;
mod support;

use common::mysql::MariaDbServer;
use common::pg::PgServer;
use serde_json::Value as J;
use std::path::Path;
use std::sync::OnceLock;
use support::{Backend, TestProject, stderr, stdout};

/// A password with the characters that break naive URL handling.
const PW: &str = "Ch3ck/pa?ss@wo#rd";
const PW_VAR: &str = "CUTOVER_CHECK_TEST_PW";

fn encoded(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Neither the password nor any 4-character piece of it, nor its encoded form, is printed.
fn assert_no_secret(what: &str, text: &str) {
    let chars: Vec<char> = PW.chars().collect();
    let mut pieces: Vec<String> = chars.windows(4).map(|w| w.iter().collect()).collect();
    pieces.push(encoded(PW));
    for p in pieces {
        assert!(
            !text.contains(&p),
            "{what} prints a piece of the password ({p}):\n{text}"
        );
    }
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

/// The clinic project (fixtures/clinic, unchanged) on a SQLite target, its legacy database
/// generated with `cutover generate`.
fn clinic(patients: u32, seed: u32) -> TestProject {
    let p = TestProject::with_config(
        Backend::Sqlite,
        "\n[defaults]\nbatch_size = 100\ncontinue_on_error = true\n",
    );
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clinic/migrations"),
        &p.path().join("migrations"),
    );
    let src = p.path().join("source.db");
    let o = std::process::Command::new(support::bin())
        .args([
            "generate",
            src.to_str().unwrap(),
            "--patients",
            &patients.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    p
}

/// Per version, the ledger's counts.
fn ledger_counts(p: &TestProject) -> std::collections::BTreeMap<String, J> {
    let status = p.json(&["status"]);
    status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["version"].as_str().unwrap().to_string(), m["counts"].clone()))
        .collect()
}

fn n(v: &J) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// What assess says `up --continue-on-error` would write, skip, merge and reject is what it
/// then writes, skips, merges and rejects, step by step: also for the steps whose references
/// point at rows an earlier step rejects (the persons merge rejects a few patients; their
/// appointments, grants and screenings wait).
#[test]
fn assess_predicts_what_up_writes_on_the_clinic() {
    let p = clinic(400, 11);
    let a = p.json(&["assess"]);
    assert_eq!(a["sampled"], J::Null);
    assert!(!p.path().join("target.db").exists(), "assess created the target");
    let steps = a["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 11, "{a}");
    // Dependent steps saw the earlier steps' rejects: some rows wait for a rejected parent.
    let waiting: u64 = steps
        .iter()
        .map(|s| s["rejects_by_rule"]["waiting"].as_u64().unwrap_or(0))
        .sum();
    assert!(waiting > 0, "no row waits for a rejected parent: {a}");
    assert!(steps.iter().any(|s| n(&s["unresolved_references"]) > 0), "{a}");
    assert!(steps.iter().any(|s| n(&s["duplicate_keys"]) > 0), "{a}");

    p.ok(&["up", "--continue-on-error"]);
    let ledger = ledger_counts(&p);
    for s in steps {
        let v = s["version"].as_str().unwrap();
        let c = &ledger[v];
        let rejects: u64 = s["rejects_by_rule"].as_object().unwrap().values().map(n).sum();
        assert_eq!(
            (n(&s["would_write"]), n(&s["would_skip"]), n(&s["would_merge"]), rejects),
            (n(&c["written"]), n(&c["skipped"]), n(&c["merged"]), n(&c["rejected"])),
            "step {v}: assess {s} against the ledger {c}"
        );
        assert_eq!(n(&s["rows_read"]), n(&c["source"]), "step {v}");
        if s["kind"] != "schema" {
            assert_eq!(n(&s["source_rows"]), n(&c["source"]), "step {v}");
        }
    }
    // Written rows are in the target table, too.
    let appointments = steps.iter().find(|s| s["name"] == "appointments").unwrap();
    assert_eq!(p.count("appointments") as u64, n(&appointments["would_write"]));
}

/// Assess after part of the plan is applied: the target's tables, ledger and reject store are
/// unchanged, the SQLite file byte for byte; `--sample` reads a part and says so.
#[test]
fn assess_writes_nothing() {
    let p = clinic(200, 5);
    p.ok(&["up", "--to", "20250101T090200", "--continue-on-error"]);
    let target = p.path().join("target.db");
    let dump = || support::sqlite3(&target, ".dump");
    let (bytes, before) = (std::fs::read(&target).unwrap(), dump());
    assert!(before.contains("cutover_rejects"), "{before}");

    let a = p.json(&["assess"]);
    let steps = a["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 8, "the pending steps only: {a}");
    assert!(steps.iter().map(|s| n(&s["would_write"])).sum::<u64>() > 0, "{a}");
    let human = p.ok(&["assess"]);
    assert!(human.contains("nothing was kept"), "{human}");
    assert!(human.contains("rejects by rule: waiting"), "{human}");

    let s = p.json(&["assess", "--sample", "10"]);
    assert_eq!(s["sampled"], 10);
    let appts = s["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "appointments")
        .unwrap();
    // Batches of 100: the sample stops at the first batch boundary after 10 rows (the read
    // ahead may have started one more batch by then).
    let read = n(&appts["rows_read"]);
    assert!(read == 100 || read == 200, "{appts}");
    assert!(n(&appts["source_rows"]) > read, "{appts}");

    assert_eq!(dump(), before, "assess changed the target");
    assert!(
        std::fs::read(&target).unwrap() == bytes,
        "assess changed the bytes of target.db"
    );
    let ledger = ledger_counts(&p);
    assert_eq!(
        ledger
            .values()
            .filter(|c| c["source"].as_u64().unwrap_or(0) > 0)
            .count(),
        2,
        "{ledger:?}"
    );
}

/// A login role that must give the hostile password (scram) on this process's server, owning
/// a fresh database. Returns the database.
fn pg_password_db(pg: &PgServer) -> String {
    static ROLE: OnceLock<()> = OnceLock::new();
    let role = "cutover_chk";
    ROLE.get_or_init(|| {
        let hba = pg.data_dir().join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!("local all {role} scram-sha-256\nhost all {role} 127.0.0.1/32 scram-sha-256\n{old}"),
        )
        .unwrap();
        pg.psql(
            "postgres",
            &format!(
                "SET password_encryption = 'scram-sha-256'; CREATE ROLE {role} LOGIN PASSWORD '{PW}'; SELECT pg_reload_conf();"
            ),
        );
    });
    let db = common::unique_db_name("check");
    pg.psql("postgres", &format!("CREATE DATABASE \"{db}\" OWNER {role};"));
    db
}

fn pg_url(pg: &PgServer, password: &str, db: &str) -> String {
    format!(
        "postgres://cutover_chk:{password}@localhost:{}/{db}?host={}",
        pg.port(),
        pg.socket_dir().display()
    )
}

/// A project whose target is `target` (written into cutover.toml, `${VAR}` allowed).
fn project_with_target(target: &str) -> TestProject {
    let p = TestProject::new(Backend::Sqlite);
    let config = p.path().join("cutover.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("sqlite://target.db", target)).unwrap();
    p.source_sql("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO people VALUES (1, 'Ann');");
    p.schema_step(
        "20250101T000000_schema",
        "CREATE TABLE people (id INTEGER PRIMARY KEY, legacy_id TEXT, name TEXT);",
        "DROP TABLE people;",
    );
    p.data_step(
        "20250101T000100_people",
        "kind = \"data\"\n[source]\ntable = \"people\"\nkey = \"id\"\n[target]\ntable = \"people\"\n[id_map]\ncolumn = \"legacy_id\"\nmap = \"people\"\n[[fields]]\ntarget = \"name\"\nsource = \"name\"\n",
    );
    p
}

/// `check --json` with the password in the environment: the checks by name, and the exit code.
fn check(p: &TestProject) -> (i32, std::collections::BTreeMap<String, (bool, String)>, String) {
    let o = p.cmd(&["check", "--json"]).env(PW_VAR, PW).output().unwrap();
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert_no_secret("check --json", &all);
    let human = p.cmd(&["check"]).env(PW_VAR, PW).output().unwrap();
    assert_no_secret("check", &format!("{}{}", stdout(&human), stderr(&human)));
    assert_eq!(human.status.code(), o.status.code());
    let j: J = serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("{e}: {all}"));
    let checks = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                (c["ok"].as_bool().unwrap(), c["detail"].as_str().unwrap().to_string()),
            )
        })
        .collect();
    assert_eq!(j["ok"].as_bool().unwrap(), o.status.code() == Some(0), "{j}");
    (o.status.code().unwrap_or(-1), checks, stdout(&human))
}

#[test]
fn check_passes_on_postgres_and_names_each_connection_failure() {
    let pg = PgServer::shared();
    let db = pg_password_db(pg);
    let good = pg_url(pg, &format!("${{{PW_VAR}}}"), &db);
    let p = project_with_target(&good);
    let (code, checks, human) = check(&p);
    assert_eq!(code, 0, "{checks:?}");
    for name in [
        "source reachable",
        "target reachable",
        "source version",
        "target version",
        "privileges",
        "disk space",
        "steps load",
    ] {
        assert!(checks[name].0, "{name}: {checks:?}");
    }
    assert!(checks["target version"].1.contains("PostgreSQL"), "{checks:?}");
    assert!(checks["privileges"].1.contains("COPY"), "{checks:?}");
    assert!(
        human.contains("✓ steps load") && human.contains("all 7 checks passed"),
        "{human}"
    );
    // The probe table of the privilege check is gone.
    let tables = pg.psql(
        &db,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    );
    assert_eq!(tables.trim(), "0", "check left a table behind");

    let failing = |url: String, expect: &str| {
        let p = project_with_target(&url);
        let (code, checks, human) = check(&p);
        assert_eq!(code, 4, "{url}: {checks:?}");
        let (ok, detail) = &checks["target reachable"];
        assert!(!ok, "{checks:?}");
        assert!(detail.contains(expect), "{url}: expected '{expect}' in: {detail}");
        assert!(human.contains("✗ target reachable"), "{human}");
        assert!(!checks["steps load"].0, "{checks:?}");
        assert!(checks["source reachable"].0, "{checks:?}");
    };
    failing(
        format!("postgres://cutover_chk:${{{PW_VAR}}}@127.0.0.1:1/{db}"),
        "Nothing listens at that host and port",
    );
    // The right password for another role's login is the wrong one here.
    failing(pg_url(pg, &encoded(&format!("{PW}x")), &db), "Authentication failed");
    failing(
        pg_url(pg, &format!("${{{PW_VAR}}}"), "no_such_database"),
        "The database does not exist",
    );
    failing(
        format!("postgres://cutover_chk:${{{PW_VAR}}}@no-such-host.invalid:5432/{db}"),
        "Unknown host",
    );
}

#[test]
fn check_names_mariadb_failures() {
    let my = MariaDbServer::shared();
    let url = my.fresh_db("check");
    let p = project_with_target(&url);
    let (code, checks, _) = check(&p);
    assert_eq!(code, 0, "{checks:?}");
    assert!(
        checks["target version"].1.contains("MariaDB") || checks["target version"].1.contains("mariadb"),
        "{checks:?}"
    );

    let db = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    let p = project_with_target(&my.url("no_such_database"));
    let (code, checks, _) = check(&p);
    assert_eq!(code, 4);
    assert!(checks["target reachable"].1.contains("does not exist"), "{checks:?}");

    let p = project_with_target(&format!("mysql://root:${{{PW_VAR}}}@127.0.0.1:1/{db}"));
    let (code, checks, _) = check(&p);
    assert_eq!(code, 4);
    assert!(checks["target reachable"].1.contains("Nothing listens"), "{checks:?}");
}

/// A read-only bind mount of a temp folder (as root), else sysfs, where nobody may create a
/// file.
struct ReadOnlyFolder {
    path: std::path::PathBuf,
    mounted: bool,
    _dir: Option<tempfile::TempDir>,
}

impl ReadOnlyFolder {
    fn new() -> ReadOnlyFolder {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mounted = std::process::Command::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(&path)
            .arg(&path)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if mounted && std::fs::write(path.join("probe"), b"x").is_err() {
            return ReadOnlyFolder {
                path,
                mounted,
                _dir: Some(dir),
            };
        }
        if mounted {
            let _ = std::process::Command::new("umount").arg(&path).status();
        }
        ReadOnlyFolder {
            path: "/sys".into(),
            mounted: false,
            _dir: None,
        }
    }
}

impl Drop for ReadOnlyFolder {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount").arg(&self.path).status();
        }
    }
}

#[test]
fn check_refuses_a_sqlite_target_nobody_can_write_and_a_step_that_does_not_load() {
    let ro = ReadOnlyFolder::new();
    assert!(
        std::fs::write(ro.path.join("probe"), b"x").is_err(),
        "{} is writable",
        ro.path.display()
    );
    let p = project_with_target(&format!("sqlite://{}/target.db", ro.path.display()));
    let (code, checks, human) = check(&p);
    assert_eq!(code, 4, "{checks:?}");
    let (ok, detail) = &checks["privileges"];
    assert!(
        !ok && detail.contains("cannot write in the target's folder"),
        "{checks:?}"
    );
    assert!(human.contains("✗ privileges"), "{human}");
    assert!(!ro.path.join("target.db").exists());

    // A target under a file: its folder is not a folder.
    let p = project_with_target("sqlite://cutover.toml/target.db");
    let (code, checks, _) = check(&p);
    assert_eq!(code, 4);
    assert!(checks["target reachable"].1.contains("is not a folder"), "{checks:?}");

    // A step that does not load: the pre-flight names it; everything else passes.
    let p = project_with_target("sqlite://target.db");
    p.data_step(
        "20250101T000200_broken",
        "kind = \"data\"\n[source]\ntable = \"people\"\nkey = \"id\"\n[target]\ntable = \"people\"\n[id_map]\ncolumn = \"legacy_id\"\nmap = \"people_again\"\n[[fields]]\ntarget = \"name\"\nsource = \"no_such_column\"\n",
    );
    let (code, checks, _) = check(&p);
    assert_eq!(code, 4, "{checks:?}");
    let (ok, detail) = &checks["steps load"];
    assert!(
        !ok && detail.contains("20250101T000200") && detail.contains("no_such_column"),
        "{checks:?}"
    );
    assert!(
        checks.iter().filter(|(k, _)| *k != "steps load").all(|(_, v)| v.0),
        "{checks:?}"
    );
    assert!(!p.path().join("target.db").exists(), "check created the target");
}
