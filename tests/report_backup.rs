//! Run reports and backups, through the real binary: the report of a clinic run (its accounting
//! against the ledger, its rejects by rule against the reject store, secrets redacted, the
//! HTML escaped and rendered by a real browser), the report every real `up` writes, and backup
//! + restore round trips on SQLite and PostgreSQL with their refusals.

mod common;
mod support;

use serde_json::Value as J;
use sha2::Digest;
use std::path::{Path, PathBuf};
use support::{Backend, TestProject, sqlite3, stderr, stdout};

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

/// The clinic project (fixtures/clinic) on a generated legacy SQLite database, with a window
/// that holds any run of today.
fn clinic() -> TestProject {
    let p = TestProject::with_config(
        Backend::Sqlite,
        "\n[window]\nstart = \"2020-01-01T00:00:00+00:00\"\nend = \"2099-01-01T00:00:00+00:00\"\n\n[defaults]\nbatch_size = 200\ncontinue_on_error = true\n",
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clinic");
    copy_dir(&root.join("migrations"), &p.path().join("migrations"));
    std::fs::copy(root.join("verify.toml"), p.path().join("verify.toml")).unwrap();
    let src = p.path().join("source.db");
    let o = std::process::Command::new(support::bin())
        .args(["generate", src.to_str().unwrap(), "--patients", "300", "--seed", "7"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    p
}

fn reports_in(p: &TestProject) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(p.path().join("reports"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn n(v: &J) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The rendered DOM of an HTML file, from headless Chromium; `None` (with the reason printed)
/// only when Chromium is missing and cannot be installed.
fn chromium_dom(file: &Path) -> Option<String> {
    let bin = Path::new("/usr/bin/chromium");
    if !bin.exists() {
        let installed = std::process::Command::new("apt-get")
            .args(["install", "-y", "-qq", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !installed || !bin.exists() {
            eprintln!("SKIPPED the browser check: chromium is not installed and `apt-get install -y chromium` failed");
            return None;
        }
    }
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", file.display()));
    let o = support::output_within(cmd, std::time::Duration::from_secs(120));
    assert!(o.status.success(), "chromium failed: {}", stderr(&o));
    Some(stdout(&o))
}

/// The text a browser shows of a serialized DOM: tags dropped, entities decoded.
fn visible_text(dom: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[test]
fn the_report_of_a_clinic_run_tells_the_truth_and_keeps_secrets() {
    let p = clinic();
    // A dry run writes no report.
    p.run(&["up", "--dry-run"]);
    assert!(reports_in(&p).is_empty(), "a dry run wrote {:?}", reports_in(&p));
    p.ok(&["up", "--continue-on-error"]);

    let report = p.json(&["report"]);
    let run_id = report["run_id"].as_str().expect("run_id").to_string();
    assert_eq!(report["operation"], "up");
    assert_eq!(report["outcome"], "done");
    assert!(!report["os_user"].as_str().unwrap_or_default().is_empty());
    assert!(!report["host"].as_str().unwrap_or_default().is_empty());

    // The files `up` wrote at its end: reports/<run_id>.md and .json.
    let md_file = p.path().join("reports").join(format!("{run_id}.md"));
    let json_file = p.path().join("reports").join(format!("{run_id}.json"));
    assert_eq!(reports_in(&p), vec![json_file.clone(), md_file.clone()]);
    let written: J = serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
    assert_eq!(written["run_id"], run_id.as_str());
    assert_eq!(
        written["steps"], report["steps"],
        "the file up wrote has the books of the ledger"
    );
    let written_md = std::fs::read_to_string(&md_file).unwrap();
    assert!(
        written_md.contains(&run_id) && written_md.contains("| accounts |"),
        "{written_md}"
    );

    // Accounting: every step of the run, as the ledger holds it.
    let ledger = sqlite3(
        &p.path().join("target.db"),
        "SELECT version, status, rows_source, rows_written, rows_skipped, rows_rejected, rows_merged, rows_warned FROM cutover_ledger ORDER BY version",
    );
    let steps = report["steps"].as_array().expect("steps");
    let from_report: Vec<String> = steps
        .iter()
        .map(|s| {
            format!(
                "{}|{}|{}|{}|{}|{}|{}|{}",
                s["version"].as_str().unwrap(),
                s["status"].as_str().unwrap(),
                n(&s["source"]),
                n(&s["written"]),
                n(&s["skipped"]),
                n(&s["rejected"]),
                n(&s["merged"]),
                n(&s["warnings"])
            )
        })
        .collect();
    assert_eq!(from_report, ledger.lines().collect::<Vec<_>>());
    assert_eq!(steps.len(), 11);
    assert!(
        steps.iter().any(|s| n(&s["rejected"]) > 0),
        "the clinic data has rejects"
    );

    // Rejects by rule: as the reject store counts this run's rejected rows.
    let store = sqlite3(
        &p.path().join("target.db"),
        &format!(
            "SELECT version, rule, COUNT(*) FROM cutover_rejects WHERE run_id = '{run_id}' AND level = 'error' GROUP BY version, rule ORDER BY version, rule"
        ),
    );
    let groups = report["rejects"].as_array().expect("rejects");
    let from_report: Vec<String> = groups
        .iter()
        .map(|g| {
            format!(
                "{}|{}|{}",
                g["step"].as_str().unwrap(),
                g["rule"].as_str().unwrap(),
                n(&g["count"])
            )
        })
        .collect();
    assert_eq!(from_report, store.lines().collect::<Vec<_>>());
    for g in groups {
        let examples = g["examples"].as_array().expect("examples");
        assert_eq!(examples.len() as u64, n(&g["count"]).min(3), "{g}");
        assert!(
            examples
                .iter()
                .all(|e| e["source_key"].is_string() && e["reason"].is_string())
        );
    }

    // Secrets: the rejected accounts' password hashes (in the rows the store keeps) appear in
    // no form of the report; [redacted] stands in their place.
    let hashes: Vec<String> = sqlite3(
        &p.path().join("target.db"),
        &format!(
            "SELECT json_extract(row_json, '$.password_hash') FROM cutover_rejects WHERE run_id = '{run_id}' AND row_json LIKE '%password_hash%' AND json_extract(row_json, '$.password_hash') IS NOT NULL"
        ),
    )
    .lines()
    .map(str::to_string)
    .filter(|h| h.len() >= 8)
    .collect();
    assert!(
        !hashes.is_empty(),
        "the clinic run rejects accounts that carry a password hash"
    );
    let md = p.ok(&["report", &run_id]);
    let json_text = p.ok(&["report", &run_id, "--format", "json"]);
    let html_text = p.ok(&["report", &run_id, "--format", "html"]);
    for (what, text) in [
        ("md", &md),
        ("json", &json_text),
        ("html", &html_text),
        ("reports/*.md", &written_md),
    ] {
        for h in &hashes {
            assert!(!text.contains(h.as_str()), "{what} shows a password hash");
        }
        assert!(
            text.contains("[redacted]"),
            "{what}: no [redacted] in place of the hash"
        );
    }
    // Markdown: the accounting table and the rejects by rule.
    assert!(md.contains("| Step | Name | Status | Source | Written |"), "{md}");
    assert!(md.contains("## Rejects by rule"));
    // The window: the run finished inside it.
    assert_eq!(report["window"]["finished_in_window"], true, "{}", report["window"]);
    assert!(report["verify"].is_null(), "not verified yet: {}", report["verify"]);

    // Verify records its result in the ledger; the report shows it.
    let v = p.run(&["verify", "--json"]);
    let verified: J = serde_json::from_str(stdout(&v).trim()).expect("verify --json");
    let checks = verified["checks"].as_array().expect("checks");
    let passed = checks.iter().filter(|c| c["ok"] == true).count() as u64;
    let report = p.json(&["report"]);
    assert_eq!(report["run_id"], run_id.as_str(), "verify is no run");
    assert_eq!(report["verify"]["ok"], verified["ok"]);
    assert_eq!(n(&report["verify"]["passed"]), passed);
    assert_eq!(n(&report["verify"]["failed"]), checks.len() as u64 - passed);

    // A reject whose reason holds markup and a URL with a password, and whose row holds
    // secrets: the HTML shows the markup as text and neither secret.
    let accounts = steps[1]["version"].as_str().unwrap();
    sqlite3(
        &p.path().join("target.db"),
        &format!(
            "INSERT INTO cutover_rejects (run_id, version, source_table, source_key, row_json, field, rule, reason, level, state, created_at) VALUES ('{run_id}', '{accounts}', 'users', 'u-evil', '{{\"id\": \"u-evil\", \"password_hash\": \"$2b$12$TopSecretHashValue\", \"api_token\": \"tok-ABCDEF123\"}}', 'email', 'hostile', '<script>alert(\"pwned\")</script> see postgres://app:Sup3rS3cret@db.example/clinic', 'error', 'open', '2026-01-01T00:00:00.000Z')"
        ),
    );
    let html_file = p.path().join("report.html");
    p.ok(&[
        "report",
        &run_id,
        "--format",
        "html",
        "--out",
        html_file.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&html_file).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for external in ["<link", "src=", "<script", "@import", "url("] {
        assert!(
            !html.contains(external),
            "the page is not self-contained or runs code: {external}"
        );
    }
    for secret in ["Sup3rS3cret", "TopSecretHashValue", "tok-ABCDEF123"] {
        assert!(!html.contains(secret), "{secret} in the HTML");
    }
    if let Some(dom) = chromium_dom(&html_file) {
        assert!(!dom.contains("<script"), "the reason became markup:\n{dom}");
        let text = visible_text(&dom);
        assert!(
            text.contains("<script>alert(\"pwned\")</script> see postgres://app:[redacted]@db.example/clinic"),
            "the reason is not shown as text:\n{text}"
        );
        assert!(text.contains("Rejects by rule") && text.contains("accounts") && text.contains("hostile: 1 row(s)"));
        assert!(text.contains(&run_id));
        for secret in ["Sup3rS3cret", "TopSecretHashValue", "tok-ABCDEF123"] {
            assert!(!text.contains(secret), "{secret} on the page");
        }
    }
}

#[test]
fn a_failed_run_gets_its_report_and_an_unknown_run_is_an_error() {
    let p = TestProject::new(Backend::Sqlite);
    p.schema_step(
        "20250101T000000_a",
        "CREATE TABLE a (id INTEGER PRIMARY KEY);",
        "DROP TABLE a;",
    );
    p.schema_step(
        "20250101T000100_b",
        "CREATE TABLE b (id INTEGER PRIMARY KEY); INSERT INTO nowhere VALUES (1);",
        "DROP TABLE b;",
    );
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report = p.json(&["report"]);
    assert_eq!(report["outcome"], "failed");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{report}");
    assert_eq!(steps[0]["status"], "applied");
    assert_eq!(steps[1]["status"], "failed");
    assert!(
        steps[1]["error"].as_str().unwrap_or_default().contains("nowhere"),
        "{report}"
    );
    let run_id = report["run_id"].as_str().unwrap();
    assert!(p.path().join("reports").join(format!("{run_id}.md")).exists());
    let o = p.run(&["report", "no-such-run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no run no-such-run"), "{}", stderr(&o));
}

fn sha256_hex(path: &Path) -> String {
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// A project with one table of three notes, applied.
fn notes(backend: Backend) -> TestProject {
    let p = TestProject::new(backend);
    p.schema_step(
        "20250101T000000_notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);\nINSERT INTO notes VALUES (1, 'one'), (2, 'two'), (3, 'three');",
        "DROP TABLE notes;",
    );
    p.ok(&["up"]);
    p
}

fn backup(p: &TestProject, extra: &[&str]) -> J {
    let mut args = vec!["backup"];
    args.extend_from_slice(extra);
    p.json(&args)
}

/// Back up, change the target, restore: the change is gone and the ledger still lists the
/// backup (with its checksum). Without --yes nothing happens.
fn round_trip(p: &TestProject) -> PathBuf {
    let b = backup(p, &[]);
    let file = PathBuf::from(b["file"].as_str().expect("file"));
    assert!(file.starts_with(p.path().join("backups")), "{}", file.display());
    assert!(file.is_file());
    assert_eq!(b["sha256"].as_str().unwrap(), sha256_hex(&file));
    assert_eq!(n(&b["bytes"]), std::fs::metadata(&file).unwrap().len());
    let listed = p.target_sql("SELECT file, sha256 FROM cutover_backups");
    assert!(listed.contains(&sha256_hex(&file)), "{listed}");

    p.target_sql("INSERT INTO notes VALUES (99, 'written after the backup'); DELETE FROM notes WHERE id = 1;");
    assert_eq!(p.count("notes"), 3);
    let refused = p.run(&["restore", file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM notes WHERE id = 99").trim(),
        "1",
        "refused, yet changed"
    );

    let out = p.ok(&["restore", file.to_str().unwrap(), "--yes"]);
    assert!(out.contains("sha256 matches the ledger"), "{out}");
    assert_eq!(
        p.target_sql("SELECT id FROM notes ORDER BY id")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    let listed = p.target_sql("SELECT sha256 FROM cutover_backups");
    assert!(
        listed.contains(&sha256_hex(&file)),
        "the restored ledger lost the backup: {listed}"
    );
    assert!(p.target_sql("SELECT event FROM cutover_events").contains("restored"));
    // The target works on: the ledger still says the step is applied, and a run is possible.
    p.assert_states(&["applied"]);
    p.ok(&["up"]);
    file
}

/// A backup file that changed since the ledger recorded it is not restored.
fn tampered_backup_is_refused(p: &TestProject, ext: &str) {
    let out = p.path().join(format!("second.{ext}"));
    backup(p, &["--out", out.to_str().unwrap()]);
    let mut bytes = std::fs::read(&out).unwrap();
    bytes.extend_from_slice(b"\n-- tampered\n");
    std::fs::write(&out, bytes).unwrap();
    p.target_sql("INSERT INTO notes VALUES (42, 'kept');");
    let o = p.run(&["restore", out.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(4), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("does not match the ledger"), "{}", stderr(&o));
    assert_eq!(p.target_sql("SELECT body FROM notes WHERE id = 42").trim(), "kept");
}

#[test]
fn backup_and_restore_on_sqlite() {
    let p = notes(Backend::Sqlite);
    let file = round_trip(&p);
    assert_eq!(file.extension().and_then(|e| e.to_str()), Some("sqlite"));
    tampered_backup_is_refused(&p, "sqlite");
    // Another process with the database open (its write still in the write-ahead log): the
    // file is not replaced under it.
    let mut other = std::process::Command::new("sqlite3")
        .arg(p.path().join("target.db"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sqlite3");
    {
        use std::io::Write;
        let stdin = other.stdin.as_mut().unwrap();
        stdin
            // The busy timeout: the test's own polling reads below can hold the lock at the
            // instant this write commits, and the shell gives up at once without one.
            .write_all(b".timeout 10000\nINSERT INTO notes VALUES (77, 'open elsewhere');\n")
            .unwrap();
        stdin.flush().unwrap();
    }
    assert!(common::wait_until(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(50),
        || p.target_sql("SELECT COUNT(*) FROM notes WHERE id = 77").trim() == "1"
    ));
    let o = p.run(&["restore", file.to_str().unwrap(), "--yes"]);
    drop(other.stdin.take());
    let _ = other.wait();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("another process has"), "{}", stderr(&o));
    assert_eq!(
        p.target_sql("SELECT body FROM notes WHERE id = 77").trim(),
        "open elsewhere"
    );
    // An existing file is never overwritten.
    let o = p.run(&["backup", "--out", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("already exists"));
}

#[test]
fn backup_and_restore_on_postgres_with_pg_dump() {
    let mut p = notes(Backend::Postgres);
    // A password in the URL (the test server trusts every local user, so it is not checked):
    // it must reach no output.
    let with_password = p.target_url.replacen("postgres@", "postgres:Pa55wordInUrl@", 1);
    assert_ne!(with_password, p.target_url);
    let config = p.path().join("cutover.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(&p.target_url, &with_password)).unwrap();
    p.target_url = with_password;
    let o = p.run(&["backup"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("Pa55wordInUrl") && !stderr(&o).contains("Pa55wordInUrl"));
    let file = round_trip(&p);
    assert_eq!(file.extension().and_then(|e| e.to_str()), Some("dump"));
    assert!(
        std::fs::read(&file).unwrap().starts_with(b"PGDMP"),
        "pg_dump's custom format"
    );
    tampered_backup_is_refused(&p, "dump");

    // Without pg_dump on PATH: a refusal that says what to install.
    let empty = tempfile::tempdir().unwrap();
    let o = p.cmd(&["backup"]).env("PATH", empty.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("pg_dump is not installed") && stderr(&o).contains("apt-get install -y postgresql-client"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn backup_and_restore_on_mariadb_with_mariadb_dump() {
    use common::mysql::MariaDbServer;
    let my = MariaDbServer::shared();
    let mut p = TestProject::new(Backend::Sqlite);
    let url = my.fresh_db("backup");
    let config = p.path().join("cutover.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("sqlite://target.db", &url)).unwrap();
    p.target_url = url.clone();
    let sql = |q: &str| my.mysql(&url, q);
    p.schema_step(
        "20250101T000000_notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);\nINSERT INTO notes VALUES (1, 'one'), (2, 'two'), (3, 'three');",
        "DROP TABLE notes;",
    );
    p.ok(&["up"]);
    let b = backup(&p, &[]);
    let file = PathBuf::from(b["file"].as_str().expect("file"));
    assert_eq!(file.extension().and_then(|e| e.to_str()), Some("sql"));
    assert_eq!(b["sha256"].as_str().unwrap(), sha256_hex(&file));
    sql("INSERT INTO notes VALUES (99, 'after'); DELETE FROM notes WHERE id = 1;");
    p.ok(&["restore", file.to_str().unwrap(), "--yes"]);
    assert_eq!(
        sql("SELECT id FROM notes ORDER BY id")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    assert!(sql("SELECT sha256 FROM cutover_backups").contains(&sha256_hex(&file)));
    p.assert_states(&["applied"]);
}
