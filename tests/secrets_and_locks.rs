//! Secrets never printed; one run per target, and a run that lost its lock cannot write.
//! Through the real binary on SQLite, a real PostgreSQL and a real MariaDB.

mod common;
#[macro_use]
mod support;

use common::pg::PgServer;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::{Backend, TestProject, stderr, stdout};

/// A password with every character that breaks naive URL handling.
const PW: &str = "Zm9v/YmFy+==?x@y#z%41";
const PW_VAR: &str = "CUTOVER_SECRET_TEST_PW";

fn encoded(s: &str) -> String {
    // RFC 3986 unreserved characters stay, everything else is %XX.
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

/// Every 4-character fragment of the password, and its encoded form.
fn fragments() -> Vec<String> {
    let chars: Vec<char> = PW.chars().collect();
    let mut f: Vec<String> = chars.windows(4).map(|w| w.iter().collect()).collect();
    f.push(encoded(PW));
    f
}

fn assert_clean(what: &str, text: &str) {
    for f in fragments() {
        assert!(
            !text.contains(&f),
            "{what} contains the password fragment {f:?}:\n{text}"
        );
    }
}

fn assert_output_clean(what: &str, o: &Output) {
    assert_clean(&format!("{what} stdout"), &stdout(o));
    assert_clean(&format!("{what} stderr"), &stderr(o));
}

/// Every file of the project folder (log, reports, CSV, SQLite files), as bytes.
fn assert_files_clean(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_files_clean(&path);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            assert_clean(&path.display().to_string(), &String::from_utf8_lossy(&bytes));
        }
    }
}

fn small_project(p: &TestProject) {
    p.source_sql(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');",
    );
    p.schema_step(
        "20250101T090000_schema",
        "CREATE TABLE items (id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, name TEXT);\n",
        "DROP TABLE items;\n",
    );
    p.data_step("20250101T090100_items", ITEMS_STEP);
}

const ITEMS_STEP: &str = r#"kind = "data"
[source]
table = "items"
key = "id"
[target]
table = "items"
[id_map]
column = "id"
map = "items"
[[fields]]
target = "legacy_id"
source = "id"
[[fields]]
target = "name"
source = "name"
"#;

/// A login role with the hostile password, allowed to log in with it (scram) over the shared
/// server's socket, owning a fresh database. Returns (role, database).
fn pg_secret_role() -> (&'static PgServer, String, String) {
    static ROLE: OnceLock<String> = OnceLock::new();
    let pg = PgServer::shared();
    let role = ROLE.get_or_init(|| {
        let role = "cutover_sec".to_string();
        // First match wins in pg_hba.conf: this role must give a password, everyone else
        // keeps the harness' trust.
        let hba = pg.data_dir().join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!("local all {role} scram-sha-256\nhost all {role} 127.0.0.1/32 scram-sha-256\n{old}"),
        )
        .unwrap();
        let quoted = PW.replace('\'', "''");
        pg.psql(
            "postgres",
            &format!(
                "SET password_encryption = 'scram-sha-256'; CREATE ROLE {role} LOGIN PASSWORD '{quoted}'; SELECT pg_reload_conf();"
            ),
        );
        role
    });
    let db = common::unique_db_name("secret");
    pg.psql("postgres", &format!("CREATE DATABASE \"{db}\" OWNER {role};"));
    (pg, role.clone(), db)
}

fn pg_url_with(pg: &PgServer, user: &str, password: &str, db: &str) -> String {
    format!(
        "postgres://{user}:{password}@localhost:{}/{db}?host={}",
        pg.port(),
        pg.socket_dir().display()
    )
}

/// Every engine table of the target, as text.
fn pg_engine_tables(pg: &PgServer, db: &str) -> String {
    let tables = pg.psql(
        db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE 'cutover%' ORDER BY 1",
    );
    tables
        .lines()
        .map(|t| pg.psql(db, &format!("SELECT string_agg(x::text, E'\\n') FROM {t} x")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn pg_password_through_env_and_command_line_never_printed() {
    let (pg, role, db) = pg_secret_role();
    // Through ${VAR} in cutover.toml: the raw password, encoded by cutover.
    let p = TestProject::with_config(Backend::Sqlite, "");
    let url_tpl = pg_url_with(pg, &role, &format!("${{{PW_VAR}}}"), &db);
    std::fs::write(
        p.path().join("cutover.toml"),
        format!(
            "[project]\nname = \"secret\"\n\n[source]\nurl = \"sqlite://source.db\"\n\n[target]\nurl = \"{url_tpl}\"\n"
        ),
    )
    .unwrap();
    small_project(&p);
    let run = |args: &[&str]| -> Output {
        let o = p.cmd(args).env(PW_VAR, PW).output().unwrap();
        assert_output_clean(&format!("{args:?}"), &o);
        o
    };
    let up = run(&["up"]);
    assert!(up.status.success(), "up failed: {}", stderr(&up));
    assert_eq!(
        pg.psql(
            &db,
            "SELECT string_agg(legacy_id || '=' || name, ',' ORDER BY legacy_id) FROM items"
        ),
        "1=one,2=two,3=three"
    );
    for args in [
        &["status", "--json"][..],
        &["history", "--json"],
        &["status"],
        &["history"],
        &["verify"],
        &["verify", "--json"],
    ] {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    let status: serde_json::Value = serde_json::from_str(stdout(&run(&["status", "--json"])).trim()).unwrap();
    assert!(
        status["target"].as_str().unwrap().contains(&format!("{role}:***@")),
        "{status}"
    );

    // Through --target: the user percent-encodes the password.
    let good = pg_url_with(pg, &role, &encoded(PW), &db);
    let o = p.cmd(&["--target", &good, "status", "--json"]).output().unwrap();
    assert_output_clean("--target status", &o);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = p.cmd(&["--target", &good, "up"]).output().unwrap();
    assert_output_clean("--target up", &o);
    assert!(o.status.success(), "{}", stderr(&o));

    // Failing connections that carry the password.
    let started = Instant::now();
    let missing_db = pg_url_with(pg, &role, &encoded(PW), "no_such_db");
    let o = p.cmd(&["--target", &missing_db, "status"]).output().unwrap();
    assert_output_clean("missing database", &o);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));

    let refused = format!("postgres://{role}:{}@127.0.0.1:1/{db}", encoded(PW));
    let t = Instant::now();
    let o = p.cmd(&["--target", &refused, "up"]).output().unwrap();
    assert_output_clean("refused port", &o);
    assert!(!o.status.success());
    assert!(
        stderr(&o).to_lowercase().contains("connection refused"),
        "{}",
        stderr(&o)
    );
    assert!(t.elapsed() < Duration::from_secs(5), "refused took {:?}", t.elapsed());

    let wrong_pw = pg_url_with(pg, &role, &encoded(&format!("{PW}x")), &db);
    let o = p.cmd(&["--target", &wrong_pw, "status"]).output().unwrap();
    assert_output_clean("wrong password", &o);
    assert!(stderr(&o).contains("Authentication failed"), "{}", stderr(&o));

    // Not encoded: refused with how to write it, the URL not echoed.
    let raw = pg_url_with(pg, &role, PW, &db);
    let o = p.cmd(&["--target", &raw, "status"]).output().unwrap();
    assert_output_clean("unencoded password", &o);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("percent-encoded"), "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(30));

    // Ledger, events, lock and every file of the project.
    assert_clean("engine tables", &pg_engine_tables(pg, &db));
    assert_files_clean(p.path());
}

#[test]
fn mysql_password_never_printed() {
    let my = common::mysql::MariaDbServer::shared();
    let db = common::unique_db_name("secret");
    let quoted = PW.replace('\\', "\\\\").replace('\'', "\\'");
    my.mysql(
        "mysql",
        &format!(
            "CREATE DATABASE {db}; CREATE USER IF NOT EXISTS 'cutover_sec'@'localhost' IDENTIFIED BY '{quoted}'; GRANT ALL ON {db}.* TO 'cutover_sec'@'localhost';"
        ),
    );
    let sock = my.socket_path();
    let url = |pw: &str, db: &str| format!("mysql://cutover_sec:{pw}@localhost/{db}?socket={}", sock.display());
    let p = TestProject::new(Backend::Sqlite);
    // Connects with the encoded password: whatever the verb says, it is not an auth error.
    let o = p
        .cmd(&["--target", &url(&encoded(PW), &db), "status"])
        .output()
        .unwrap();
    assert_output_clean("mysql status", &o);
    assert!(!stderr(&o).contains("cannot connect"), "{}", stderr(&o));
    // Wrong database: the real reason, no password.
    let o = p
        .cmd(&["--target", &url(&encoded(PW), "no_such_db"), "status"])
        .output()
        .unwrap();
    assert_output_clean("mysql missing database", &o);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    // Refused port and unencoded password.
    let o = p
        .cmd(&[
            "--target",
            &format!("mysql://cutover_sec:{}@127.0.0.1:1/{db}", encoded(PW)),
            "status",
        ])
        .output()
        .unwrap();
    assert_output_clean("mysql refused", &o);
    assert!(
        stderr(&o).to_lowercase().contains("connection refused"),
        "{}",
        stderr(&o)
    );
    let o = p.cmd(&["--target", &url(PW, &db), "status"]).output().unwrap();
    assert_output_clean("mysql unencoded", &o);
    assert!(stderr(&o).contains("percent-encoded"), "{}", stderr(&o));
    // Through ${VAR} as a source: the source URL shows up redacted in verify's header.
    std::fs::write(
        p.path().join("cutover.toml"),
        format!(
            "[project]\nname = \"secret\"\n\n[source]\nurl = \"{}\"\n\n[target]\nurl = \"sqlite://target.db\"\n",
            url(&format!("${{{PW_VAR}}}"), &db)
        ),
    )
    .unwrap();
    for args in [&["status"][..], &["verify"], &["up"]] {
        let o = p.cmd(args).env(PW_VAR, PW).output().unwrap();
        assert_output_clean(&format!("mysql source {args:?}"), &o);
        assert!(!stderr(&o).contains("Authentication failed"), "{}", stderr(&o));
    }
    assert_files_clean(p.path());
}

/// A schema step that sleeps, so two runs started together overlap.
#[test]
fn concurrent_first_starts_on_postgres() {
    for round in 0..5 {
        let p = TestProject::new(Backend::Postgres);
        p.schema_step(
            "20250101T090000_slow",
            "CREATE TABLE slow AS SELECT 1 AS n FROM pg_sleep(1);\n",
            "DROP TABLE slow;\n",
        );
        let spawn = || {
            p.cmd(&["up"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = (wait_output(a, 60), wait_output(b, 60));
        let mut codes = vec![a.status.code(), b.status.code()];
        codes.sort();
        assert_eq!(
            codes,
            vec![Some(0), Some(3)],
            "round {round}:\nA: {}\nB: {}",
            stderr(&a),
            stderr(&b)
        );
        let loser = if a.status.code() == Some(3) { &a } else { &b };
        assert!(stderr(loser).contains("locked"), "{}", stderr(loser));
        assert_eq!(p.target_sql("SELECT COUNT(*) FROM slow"), "1");
        let applied = p
            .json(&["history"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "applied")
            .count();
        assert_eq!(applied, 1, "round {round}");
    }
}

fn wait_output(mut child: Child, secs: u64) -> Output {
    let ok = common::wait_until(Duration::from_secs(secs), Duration::from_millis(50), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !ok {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(ok, "the run did not finish within {secs}s: {}", stderr(&out));
    out
}

// ---------------------------------------------------------------------------------------------
// SQLite: the OS lock.

const N: u32 = 40_000;

/// A data step over N rows in small batches: long enough to stop mid-way.
fn long_sqlite_project(stale_secs: u64) -> TestProject {
    let p = TestProject::with_config(
        Backend::Sqlite,
        &format!("\n[defaults]\nbatch_size = 50\nlock_stale_after_secs = {stale_secs}\n"),
    );
    p.source_sql(&format!(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {N})
         INSERT INTO items SELECT x, printf('name-%d-%x', x, x * 7919) FROM c;"
    ));
    p.schema_step(
        "20250101T090000_schema",
        "CREATE TABLE items (id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, name TEXT);\n",
        "DROP TABLE items;\n",
    );
    p.data_step("20250101T090100_items", ITEMS_STEP);
    p
}

fn rows_done(p: &TestProject) -> i64 {
    p.try_target_sql("SELECT COALESCE(SUM(rows_read), 0) FROM cutover_checkpoints")
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Source and target hold exactly the same rows: count and content.
fn assert_exact_copy(p: &TestProject) {
    let source = support::sqlite3(
        &p.path().join("source.db"),
        "SELECT id || '|' || name FROM items ORDER BY id",
    );
    let target = p.target_sql("SELECT legacy_id || '|' || name FROM items ORDER BY CAST(legacy_id AS INTEGER)");
    assert_eq!(p.count("items"), N as i64);
    assert_eq!(
        p.target_sql("SELECT COUNT(DISTINCT legacy_id) FROM items"),
        N.to_string()
    );
    assert!(source == target, "target content differs from the source");
    let v = p.json(&["status"]);
    let m = v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["version"] == "20250101T090100")
        .unwrap()
        .clone();
    assert_eq!(m["state"], "applied", "{m}");
    let c = &m["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    assert_eq!(n("source"), N as u64, "{c}");
    assert_eq!(n("written"), N as u64, "{c}");
    assert_eq!(
        n("source"),
        n("written") + n("skipped") + n("rejected") + n("merged"),
        "{c}"
    );
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling our own child, by its pid.
    let r = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(r, 0, "kill({}, {sig})", child.id());
}

/// Start `up` and stop it (SIGSTOP) once some batches are committed, before the end.
fn start_and_stop_midway(p: &TestProject) -> Child {
    let child = p
        .cmd(&["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reached = common::wait_until(Duration::from_secs(120), Duration::from_millis(2), || {
        rows_done(p) >= 1_000
    });
    signal(&child, libc::SIGSTOP);
    assert!(reached, "the run never committed a batch");
    let done = rows_done(p);
    assert!(
        done < N as i64,
        "the run finished before it could be stopped ({done} rows)"
    );
    child
}

#[test]
fn sqlite_stopped_holder_is_not_taken_over() {
    let p = long_sqlite_project(1);
    let mut a = start_and_stop_midway(&p);
    // Far past the stale time: A's heartbeat is old, A is alive.
    std::thread::sleep(Duration::from_secs(3));
    let t = Instant::now();
    let b = p.run(&["up"]);
    assert_eq!(
        b.status.code(),
        Some(3),
        "B must be refused while A lives: {}",
        stderr(&b)
    );
    assert!(stderr(&b).contains(&format!("pid {}", a.id())), "{}", stderr(&b));
    assert!(t.elapsed() < Duration::from_secs(8), "B waited {:?}", t.elapsed());
    assert_eq!(p.json(&["status"])["locked_by"]["pid"].as_i64(), Some(a.id() as i64));
    signal(&a, libc::SIGCONT);
    let ok = common::wait_until(Duration::from_secs(180), Duration::from_millis(50), || {
        a.try_wait().ok().flatten().is_some()
    });
    if !ok {
        let _ = a.kill();
    }
    assert!(ok, "A did not finish after SIGCONT");
    assert!(a.wait().unwrap().success(), "A must finish its run");
    assert_exact_copy(&p);
    assert!(p.json(&["status"])["locked_by"].is_null());
}

#[test]
fn sqlite_killed_holder_is_taken_over_at_once() {
    // An hour of staleness: only the OS lock can tell that A is gone.
    let p = long_sqlite_project(3600);
    let mut a = start_and_stop_midway(&p);
    signal(&a, libc::SIGKILL);
    let _ = a.wait();
    let t = Instant::now();
    let b = p.run(&["up"]);
    assert!(b.status.success(), "B must take over a dead holder: {}", stderr(&b));
    assert!(t.elapsed() < Duration::from_secs(120));
    assert_exact_copy(&p);
}

#[test]
fn sqlite_long_transaction_does_not_starve_the_lock() {
    // One long write transaction (a slow schema step) and a heartbeat stale after 1 s.
    let p = TestProject::with_config(Backend::Sqlite, "\n[defaults]\nlock_stale_after_secs = 1\n");
    p.schema_step(
        "20250101T090000_slow",
        "CREATE TABLE slow AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000000) SELECT count(*) AS n FROM c;\n",
        "DROP TABLE slow;\n",
    );
    let mut a = p
        .cmd(&["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let held = common::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        p.json(&["status"])["locked_by"]["pid"].as_i64() == Some(a.id() as i64)
    });
    assert!(held, "A never showed up as the lock holder");
    std::thread::sleep(Duration::from_secs(3));
    let b = p.run(&["up"]);
    let still_running = a.try_wait().unwrap().is_none();
    let _ = a.kill();
    let _ = a.wait();
    assert!(still_running, "A's transaction ended too early for this test");
    assert_eq!(b.status.code(), Some(3), "B: {}", stderr(&b));
    assert!(stderr(&b).contains(&format!("pid {}", a.id())), "{}", stderr(&b));
    assert!(!stderr(&b).contains("database is locked"), "{}", stderr(&b));
}

/// The fence itself: a batch of a run whose token was replaced cannot commit.
#[tokio::test]
async fn fence_refuses_a_batch_after_takeover() {
    use cutover::engine::config::DbUrl;
    use cutover::engine::db::{Db, Role};
    use cutover::engine::store::lock::{FenceError, RunLock, fence};
    use cutover::engine::value::Value;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = tempfile::tempdir().unwrap();
        let url = match backend {
            Backend::Sqlite => "sqlite://t.db".to_string(),
            Backend::Postgres => PgServer::shared().fresh_db("fence"),
        };
        let db = Db::connect(&DbUrl::new(url.clone()), dir.path(), Role::Target)
            .await
            .unwrap();
        db.execute("CREATE TABLE batch (n INTEGER)", &[]).await.unwrap();
        let lock = RunLock::acquire(&db, "test", Duration::from_secs(30)).await.unwrap();
        let token = lock.token().to_string();
        assert!(!token.is_empty());
        // Holding the lock: the batch commits.
        let mut tx = db.begin().await.unwrap();
        tx.execute("INSERT INTO batch VALUES (1)", &[]).await.unwrap();
        fence(&mut tx, &token).await.unwrap();
        tx.commit().await.unwrap();
        // Another run took the lock over (a second connection writes its token).
        let other = Db::connect(&DbUrl::new(url.clone()), dir.path(), Role::Target)
            .await
            .unwrap();
        other
            .execute(
                "UPDATE cutover_lock SET token = $1, pid = 424242 WHERE id = 1",
                &[Value::Text("the-new-holder".into())],
            )
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        tx.execute("INSERT INTO batch VALUES (2)", &[]).await.unwrap();
        match fence(&mut tx, &token).await {
            Err(FenceError::Taken(h)) => assert_eq!(h.pid, 424242),
            other => panic!("{backend:?}: expected Lost, got {other:?}"),
        }
        tx.rollback().await.unwrap();
        let rows = db.fetch_all("SELECT n FROM batch ORDER BY n", &[]).await.unwrap();
        assert_eq!(rows.rows, vec![vec![Value::Int(1)]], "{backend:?}");
        // The lock row gone entirely: refused too.
        other.execute("DELETE FROM cutover_lock", &[]).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        assert!(matches!(fence(&mut tx, &token).await, Err(FenceError::Gone)));
        tx.rollback().await.unwrap();
        drop(lock);
        other.close().await;
        db.close().await;
    }
}

/// On PostgreSQL the fence holds the row: a takeover waits for the batch that fenced.
#[tokio::test]
async fn fence_serialises_with_a_takeover_on_postgres() {
    use cutover::engine::config::DbUrl;
    use cutover::engine::db::{Db, Role};
    use cutover::engine::store::lock::{RunLock, fence};
    use cutover::engine::value::Value;
    let dir = tempfile::tempdir().unwrap();
    let url = PgServer::shared().fresh_db("fence_wait");
    let db = Db::connect(&DbUrl::new(url.clone()), dir.path(), Role::Target)
        .await
        .unwrap();
    let lock = RunLock::acquire(&db, "test", Duration::from_secs(30)).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    fence(&mut tx, lock.token()).await.unwrap();
    let other = Db::connect(&DbUrl::new(url), dir.path(), Role::Target).await.unwrap();
    let mut otx = other.begin().await.unwrap();
    otx.execute("SET LOCAL lock_timeout = '500ms'", &[]).await.unwrap();
    let r = otx
        .execute(
            "UPDATE cutover_lock SET token = $1 WHERE id = 1",
            &[Value::Text("x".into())],
        )
        .await;
    assert!(r.is_err(), "a takeover must wait for the fenced batch to commit");
    otx.rollback().await.unwrap();
    tx.commit().await.unwrap();
    other
        .execute(
            "UPDATE cutover_lock SET token = $1 WHERE id = 1",
            &[Value::Text("x".into())],
        )
        .await
        .unwrap();
    drop(lock);
    other.close().await;
    db.close().await;
}

#[test]
fn refused_port_says_so_at_once() {
    let p = TestProject::new(Backend::Sqlite);
    let t = Instant::now();
    let o = p
        .cmd(&["--target", "postgres://u@127.0.0.1:1/x", "status"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).to_lowercase().contains("connection refused"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("pool timed out"), "{}", stderr(&o));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // The old symptom of issue 8: a `/` in a literal password was printed.
    let o = p
        .cmd(&["--target", "postgres://sec:ab/cdef@127.0.0.1:1/x", "status"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        !stderr(&o).contains("ab/cdef") && !stderr(&o).contains("cdef"),
        "{}",
        stderr(&o)
    );
}
