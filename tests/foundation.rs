//! The foundation on SQLite and a real PostgreSQL: ledger, checksums, run lock, schema steps,
//! through the real binary.

mod common;
#[macro_use]
mod support;

use std::time::Duration;
use support::{Backend, TestProject, stderr, stdout};

const V1: &str = "20250101T090000_create_people";
const V2: &str = "20250101T090100_add_pets";

fn two_steps(p: &TestProject) {
    p.schema_step(
        V1,
        "CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT);\nCREATE INDEX people_name ON people (name);\n",
        "DROP TABLE people;\n",
    );
    p.schema_step(
        V2,
        "CREATE TABLE pets (id TEXT PRIMARY KEY, owner TEXT REFERENCES people (id));\n",
        "DROP TABLE pets;\n",
    );
}

fn up_down_all_restores_the_schema(b: Backend) {
    let p = TestProject::new(b);
    p.target_sql("CREATE TABLE existing_before (x INTEGER)");
    let before = p.user_tables();
    two_steps(&p);
    p.assert_states(&["pending", "pending"]);
    p.ok(&["up"]);
    assert_eq!(p.user_tables(), vec!["existing_before", "people", "pets"]);
    p.assert_states(&["applied", "applied"]);
    let refused = p.run(&["down", "--all"]);
    assert_eq!(refused.status.code(), Some(4), "down without --yes must be refused");
    assert_eq!(p.user_tables(), vec!["existing_before", "people", "pets"]);
    p.ok(&["down", "--all", "--yes"]);
    assert_eq!(p.user_tables(), before);
    p.assert_states(&["reverted", "reverted"]);
    // and forward again
    p.ok(&["up"]);
    assert_eq!(p.user_tables(), vec!["existing_before", "people", "pets"]);
    let history = p.json(&["history"]);
    let events: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(events.iter().filter(|e| **e == "applied").count(), 4);
    assert_eq!(events.iter().filter(|e| **e == "reverted").count(), 2);
}
both!(up_down_all_restores_the_schema);

fn status_json_and_up_to(b: Backend) {
    let p = TestProject::new(b);
    two_steps(&p);
    p.ok(&["up", "--to", "20250101T090000"]);
    let v = p.json(&["status"]);
    let m = v["migrations"].as_array().unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0]["version"], "20250101T090000");
    assert_eq!(m[0]["name"], "create_people");
    assert_eq!(m[0]["kind"], "schema");
    assert_eq!(m[0]["state"], "applied");
    assert!(m[0]["checksum"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(m[1]["state"], "pending");
    // up --json streams NDJSON events, ending with `finished`
    let o = p.run(&["up", "--json"]);
    assert!(o.status.success());
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect();
    assert_eq!(lines.first().unwrap()["event"], "planned");
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "step_finished" && l["version"] == "20250101T090100")
    );
    assert_eq!(lines.last().unwrap()["event"], "finished");
    assert_eq!(lines.last().unwrap()["ok"], true);
}
both!(status_json_and_up_to);

fn crlf_is_not_a_modification_but_an_edit_is(b: Backend) {
    let p = TestProject::new(b);
    two_steps(&p);
    p.ok(&["up"]);
    let up = p.step_dir(V1).join("up.sql");
    let text = std::fs::read_to_string(&up).unwrap();
    std::fs::write(&up, format!("\u{feff}{}", text.replace('\n', "\r\n"))).unwrap();
    // CRLF + BOM must not count as an edit
    p.assert_states(&["applied", "applied"]);
    assert!(stdout(&p.run(&["up"])).contains("nothing to do"));

    std::fs::write(&up, text.replace("name TEXT", "name TEXT, age INTEGER")).unwrap();
    let v = p.json(&["status"]);
    assert_eq!(v["migrations"][0]["state"], "modified");
    assert!(
        v["migrations"][0]["modified_file"]
            .as_str()
            .unwrap()
            .ends_with("up.sql")
    );
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("up.sql") && stderr(&o).contains("20250101T090000"),
        "{}",
        stderr(&o)
    );
    // repair records the new checksum, after which up has nothing to refuse
    p.ok(&["repair"]);
    p.assert_states(&["applied", "applied"]);
}
both!(crlf_is_not_a_modification_but_an_edit_is);

fn failing_statement_is_recorded_and_target_unchanged(b: Backend) {
    let p = TestProject::new(b);
    p.schema_step(
        V1,
        "CREATE TABLE first_one (id INTEGER);\nINSERT INTO no_such_table VALUES (1);\nCREATE TABLE third_one (id INTEGER);\n",
        "DROP TABLE third_one;\nDROP TABLE first_one;\n",
    );
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no_such_table"), "{}", stderr(&o));
    assert!(
        p.user_tables().is_empty(),
        "the failed step must leave the target unchanged: {:?}",
        p.user_tables()
    );
    let v = p.json(&["status"]);
    assert_eq!(v["migrations"][0]["state"], "failed");
    assert_eq!(
        v["migrations"][0]["failing_statement"],
        "INSERT INTO no_such_table VALUES (1)"
    );
    assert!(v["migrations"][0]["error"].as_str().unwrap().contains("no_such_table"));
    // a failed step blocks up, saying what happened and what repair does
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(4));
    let msg = stderr(&o);
    assert!(
        msg.contains("INSERT INTO no_such_table") && msg.contains("repair"),
        "{msg}"
    );
    // fix, repair, run
    p.schema_step(
        V1,
        "CREATE TABLE first_one (id INTEGER);\nCREATE TABLE third_one (id INTEGER);\n",
        "DROP TABLE third_one;\nDROP TABLE first_one;\n",
    );
    p.ok(&["repair"]);
    p.ok(&["up"]);
    assert_eq!(p.user_tables(), vec!["first_one", "third_one"]);
}
both!(failing_statement_is_recorded_and_target_unchanged);

fn out_of_order_and_duplicate_versions(b: Backend) {
    let p = TestProject::new(b);
    p.schema_step(V2, "CREATE TABLE b (id INTEGER);\n", "DROP TABLE b;\n");
    p.ok(&["up"]);
    p.schema_step(V1, "CREATE TABLE a (id INTEGER);\n", "DROP TABLE a;\n");
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("--allow-out-of-order"), "{}", stderr(&o));
    p.ok(&["up", "--allow-out-of-order"]);
    assert_eq!(p.user_tables(), vec!["a", "b"]);
    p.schema_step("20250101T090000_another", "SELECT 1;\n", "SELECT 1;\n");
    let o = p.run(&["status"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("20250101T090000_another") && e.contains(V1), "{e}");
}
both!(out_of_order_and_duplicate_versions);

/// A schema step that does not end by itself, however fast the machine: the test ends it with
/// kill -9. On SQLite a count to 10^15; on PostgreSQL it waits for an advisory lock the test
/// holds (see `Held`).
fn endless_sql(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => {
            "CREATE TABLE slow AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000000000) SELECT count(*) AS n FROM c;\n"
        }
        Backend::Postgres => "SELECT pg_advisory_xact_lock(424242);\nCREATE TABLE slow (n INTEGER);\n",
    }
}

/// On PostgreSQL, the advisory lock `endless_sql` waits for, held on the test's own connection
/// until dropped.
struct Held {
    _rt: tokio::runtime::Runtime,
    _conn: Option<sqlx::PgConnection>,
}

impl Held {
    fn take(p: &TestProject) -> Held {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let conn = (p.backend == Backend::Postgres).then(|| {
            rt.block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&p.target_url).await.expect("connect");
                sqlx::query("SELECT pg_advisory_lock(424242)")
                    .execute(&mut c)
                    .await
                    .expect("advisory lock");
                c
            })
        });
        Held { _rt: rt, _conn: conn }
    }
}

fn lock_contention_and_killed_run(b: Backend) {
    let p = TestProject::new(b);
    p.schema_step(V1, endless_sql(b), "DROP TABLE slow;\n");
    let advisory = Held::take(&p);
    let mut first = p.cmd(&["up"]).spawn().expect("spawn first run");
    let pid = first.id();
    // Wait until the first run holds the lock and is inside the step (which cannot end).
    let held = common::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        let v = p.json(&["status"]);
        v["locked_by"]["pid"].as_i64() == Some(pid as i64) && v["migrations"][0]["state"] == "running"
    });
    assert!(
        held,
        "the first run never showed up as the lock holder with its step running"
    );
    let second = p.run(&["up"]);
    assert_eq!(second.status.code(), Some(3), "second run: {}", stderr(&second));
    let msg = stderr(&second);
    assert!(msg.contains("locked") && msg.contains(&format!("pid {pid}")), "{msg}");

    // kill -9 the holder mid-step
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    let _ = first.wait();
    drop(advisory);
    // The lock does not block the next run; the step the killed run left `running` does,
    // with a message that says so, until `repair`.
    // (bounded: were the endless step run again, the test would fail instead of hanging)
    let next = support::output_within(p.cmd(&["up"]), Duration::from_secs(60));
    assert_eq!(next.status.code(), Some(4), "{}", stderr(&next));
    assert!(
        stderr(&next).contains("running") && stderr(&next).contains("repair"),
        "{}",
        stderr(&next)
    );
    assert!(
        p.user_tables().is_empty(),
        "the killed step must not have committed: {:?}",
        p.user_tables()
    );
    // replace the slow step by a quick one and finish
    p.schema_step(V1, "CREATE TABLE slow (n INTEGER);\n", "DROP TABLE slow;\n");
    p.ok(&["repair"]);
    p.ok(&["up"]);
    assert_eq!(p.user_tables(), vec!["slow"]);
    assert!(p.json(&["status"])["locked_by"].is_null());
}
both!(lock_contention_and_killed_run);

/// Holds the run lock's advisory key on a session of its own, with a lock row naming `pid` on
/// this host, until `hold` has passed: a run's session as the server still sees it.
fn hold_run_lock_as(p: &TestProject, pid: i64, hold: Duration) -> std::thread::JoinHandle<()> {
    let url = p.target_url.clone();
    let (ready, taken) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(cutover::engine::backend::postgres::LOCK_KEY)
                .execute(&mut c)
                .await
                .expect("advisory lock");
            sqlx::query("DELETE FROM cutover_lock").execute(&mut c).await.expect("delete row");
            sqlx::query("INSERT INTO cutover_lock (id, token, owner, host, pid, command, since, heartbeat) VALUES (1, 'crashed', 'ops', $1, $2, 'up', '2026-01-01T00:00:00Z', extract(epoch from now())::bigint)")
                .bind(cutover::engine::clock::host_name())
                .bind(pid)
                .execute(&mut c)
                .await
                .expect("lock row");
            ready.send(()).expect("signal");
            tokio::time::sleep(hold).await;
        });
    });
    taken.recv().expect("the lock was taken");
    holder
}

/// A run started right after a crash: the server still holds the dead run's session for a
/// moment (until it notices the client is gone), and the new run waits for it instead of
/// refusing; a lock whose holder is alive is still refused at once.
#[test]
fn a_run_right_after_a_crash_waits_for_the_dead_session() {
    let p = TestProject::new(Backend::Postgres);
    two_steps(&p);
    p.ok(&["up", "--to", "20250101T090000"]);
    let mut gone = std::process::Command::new("true").spawn().expect("spawn true");
    let dead_pid = i64::from(gone.id());
    let _ = gone.wait();

    let holder = hold_run_lock_as(&p, dead_pid, Duration::from_millis(1500));
    let started = std::time::Instant::now();
    let next = support::output_within(p.cmd(&["up"]), Duration::from_secs(60));
    assert_eq!(next.status.code(), Some(0), "{}", stderr(&next));
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the run went ahead while the dead session still held the lock"
    );
    holder.join().expect("holder thread");
    p.assert_states(&["applied", "applied"]);

    let live = hold_run_lock_as(&p, i64::from(std::process::id()), Duration::from_secs(8));
    let started = std::time::Instant::now();
    let refused = support::output_within(p.cmd(&["up"]), Duration::from_secs(60));
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(&format!("pid {}", std::process::id())),
        "{}",
        stderr(&refused)
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "a live holder must be refused at once, not waited for"
    );
    live.join().expect("holder thread");
}

fn dry_run_prints_sql_and_writes_nothing(b: Backend) {
    let p = TestProject::new(b);
    two_steps(&p);
    let out = p.ok(&["up", "--dry-run"]);
    assert!(
        out.contains("CREATE TABLE people")
            && out.contains("CREATE INDEX people_name")
            && out.contains("CREATE TABLE pets"),
        "{out}"
    );
    let people = out.find("CREATE TABLE people").unwrap();
    let pets = out.find("CREATE TABLE pets").unwrap();
    assert!(people < pets, "statements in order");
    assert!(p.user_tables().is_empty());
    p.assert_states(&["pending", "pending"]);
}
both!(dry_run_prints_sql_and_writes_nothing);

#[test]
fn passwords_never_printed_nor_stored() {
    let pg = common::pg::PgServer::shared();
    let url = pg.fresh_db("secret");
    // trust auth ignores the password, so the run works and we can look for leaks
    let with_pw = url.replacen("postgres://postgres@", "postgres://postgres:Sup3rS3cretPw@", 1);
    let p = TestProject::new(Backend::Sqlite);
    two_steps(&p);
    let mut outputs = String::new();
    for args in [
        vec!["status"],
        vec!["up"],
        vec!["status", "--json"],
        vec!["history"],
        vec!["up", "--json"],
    ] {
        let mut a = vec!["--target", with_pw.as_str()];
        a.extend(args);
        let o = p.run(&a);
        outputs.push_str(&stdout(&o));
        outputs.push_str(&stderr(&o));
    }
    // an unreachable server: the error names the server but not the password
    let bad = "postgres://postgres:Sup3rS3cretPw@127.0.0.1:1/nowhere";
    let o = p.run(&["--target", bad, "up"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot connect") && stderr(&o).contains("***"),
        "{}",
        stderr(&o)
    );
    outputs.push_str(&stderr(&o));
    assert!(
        outputs.contains("postgres:***@"),
        "the redacted URL is shown: {outputs}"
    );
    assert!(!outputs.contains("Sup3rS3cretPw"), "password leaked: {outputs}");
    let ledger = pg.psql(&url, "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM cutover_ledger) t; SELECT string_agg(e::text, ' ') FROM cutover_events e; SELECT string_agg(l::text, ' ') FROM cutover_lock l;");
    assert!(!ledger.contains("Sup3rS3cretPw"));
    assert!(
        ledger.contains("create_people"),
        "the run went to the PostgreSQL target: {ledger}"
    );
}

#[test]
fn init_create_and_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("clinic-v2");
    let run = |args: &[&str]| std::process::Command::new(support::bin()).args(args).output().unwrap();
    assert!(run(&["init", proj.to_str().unwrap()]).status.success());
    assert!(proj.join("cutover.toml").exists() && proj.join("migrations").is_dir());
    assert!(
        !run(&["init", proj.to_str().unwrap()]).status.success(),
        "init must not overwrite"
    );
    for kind in ["sql", "data", "merge"] {
        let o = run(&[
            "-C",
            proj.to_str().unwrap(),
            "create",
            &format!("add {kind} step"),
            "--kind",
            kind,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let mut folders: Vec<String> = std::fs::read_dir(proj.join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    assert_eq!(folders.len(), 3);
    assert!(
        folders[0].ends_with("_add_sql_step") && proj.join("migrations").join(&folders[0]).join("down.sql").exists()
    );
    assert!(proj.join("migrations").join(&folders[1]).join("step.toml").exists());
    // versions differ even within one second
    let versions: std::collections::HashSet<&str> = folders.iter().map(|f| &f[..15]).collect();
    assert_eq!(versions.len(), 3);
    // unknown key: named with its line
    let cfg = proj.join("cutover.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("batch_size = 5000", "batch_size = 5000\nbatchsize = 10"),
    )
    .unwrap();
    let o = run(&["-C", proj.to_str().unwrap(), "status"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("batchsize") && e.contains("line"), "{e}");
    // a missing env var is named
    std::fs::write(
        &cfg,
        "[target]\nurl = \"postgres://u:${CUTOVER_TEST_NOT_SET_PW}@h/d\"\n",
    )
    .unwrap();
    let o = run(&["-C", proj.to_str().unwrap(), "status"]);
    assert!(stderr(&o).contains("CUTOVER_TEST_NOT_SET_PW"), "{}", stderr(&o));
}

#[test]
fn baseline_marks_without_running() {
    let p = TestProject::new(Backend::Sqlite);
    two_steps(&p);
    // The table exists already, with a row, and without the index the step would create.
    p.target_sql("CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT); INSERT INTO people VALUES ('p1', 'Ann')");
    let schema = || {
        p.target_sql("SELECT type || ' ' || name FROM sqlite_master WHERE name NOT LIKE 'cutover_%' AND name NOT LIKE 'sqlite_%' ORDER BY name")
    };
    let content = || p.target_sql("SELECT id || '|' || name FROM people ORDER BY id");
    let out = p.ok(&["baseline", "20250101T090000"]);
    assert!(out.contains("baselined: 20250101T090000_create_people"), "{out}");
    // Marked, not run: the step's up.sql would have added people_name.
    assert_eq!(schema(), "table people", "baseline ran the step");
    assert_eq!(content(), "p1|Ann");
    let v = p.json(&["status"]);
    assert_eq!(v["migrations"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["migrations"][0]["state"], "applied");
    assert_eq!(v["migrations"][0]["baseline"], true);
    assert_eq!(v["migrations"][1]["state"], "pending");
    p.ok(&["up"]);
    assert_eq!(p.user_tables(), vec!["people", "pets"]);
    assert_eq!(
        schema(),
        "table people\ntable pets",
        "up ran only the step after the baseline"
    );
    let o = p.run(&["down", "--all", "--yes"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "below the baseline cannot be reverted: {}",
        stderr(&o)
    );
    let msg = stderr(&o);
    assert!(
        msg.contains("20250101T090000_create_people is below the baseline") && msg.contains("cannot be reverted"),
        "{msg}"
    );
    // Refused as a whole: nothing was reverted, not even the step above the baseline.
    assert_eq!(schema(), "table people\ntable pets");
    assert_eq!(content(), "p1|Ann");
    p.assert_states(&["applied", "applied"]);
}

/// Issue 11 item 12: every flag and argument of every verb says what it is, and `--help` lists
/// the exit codes and the environment variables.
#[test]
fn every_flag_has_help_and_help_lists_exit_codes_and_environment() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let cmd = cutover::cli::Cli::command();
    let mut missing = Vec::new();
    walk(&cmd, "cutover", &mut missing);
    assert!(missing.is_empty(), "flags without help text: {missing:?}");

    let help = cutover::cli::Cli::command().render_long_help().to_string();
    for want in [
        "Exit codes:",
        "0  success",
        "3  the target is locked by another run",
        "4  refused",
        "5  verify found a failing check",
        "6  the run was aborted",
        "Environment:",
        "CUTOVER_SOURCE",
        "CUTOVER_TARGET",
        "CUTOVER_LOG",
        "NO_COLOR",
    ] {
        assert!(help.contains(want), "{want:?} not in --help:\n{help}");
    }
}

const PEOPLE_STEP: &str = r#"kind = "data"

[source]
table = "src_people"
key = "id"

[target]
table = "people"
natural_key = ["id"]

[[fields]]
target = "id"
source = "id"

[[fields]]
target = "name"
source = "name"
"#;

/// A project whose data step moves `rows` rows in batches of 2, so a run lasts a while.
fn slow_people(rows: u32) -> TestProject {
    let p = TestProject::with_config(Backend::Sqlite, "\n[defaults]\nbatch_size = 2\n");
    p.source_sql(&format!(
        "CREATE TABLE src_people (id TEXT PRIMARY KEY, name TEXT);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {rows})
         INSERT INTO src_people SELECT printf('p%06d', i), 'n' || i FROM c;"
    ));
    p.schema_step(
        V1,
        "CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT);\n",
        "DROP TABLE people;\n",
    );
    p.data_step("20250101T090100_people", PEOPLE_STEP);
    p
}

/// Issue 11 item 3: a run killed outright leaves the ledger saying `running`; with no live run
/// holding the lock, `status` calls it interrupted and says what resumes it, and `up` does.
#[test]
fn a_killed_step_is_interrupted_and_up_resumes_it() {
    let p = slow_people(20_000);
    p.ok(&["up", "--to", "20250101T090000"]);
    let mut child = p.cmd(&["up"]).spawn().expect("start up");
    let start = std::time::Instant::now();
    while p
        .try_target_sql("SELECT rows_source FROM cutover_ledger WHERE version = '20250101T090100'")
        .is_none_or(|n| n.trim().parse::<u64>().unwrap_or(0) < 100)
    {
        assert!(start.elapsed() < Duration::from_secs(60), "the step never got going");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert_eq!(
        p.target_sql("SELECT status FROM cutover_ledger WHERE version = '20250101T090100'")
            .trim(),
        "running",
        "a killed run could not say anything: the ledger still says running"
    );
    let v = p.json(&["status"]);
    assert_eq!(v["migrations"][1]["state"], "interrupted", "{v}");
    let text = p.ok(&["status"]);
    assert!(text.contains("interrupted"), "{text}");
    assert!(
        text.contains("`cutover up` resumes it from its last checkpoint"),
        "{text}"
    );
    p.ok(&["up"]);
    assert_eq!(p.json(&["status"])["migrations"][1]["state"], "applied");
    assert_eq!(p.count("people"), 20_000);
}

/// Issue 11 item 12: a reverted step's undone books are not listed as its written count.
#[test]
fn status_does_not_list_the_written_count_of_a_reverted_step() {
    let p = slow_people(10);
    p.ok(&["up"]);
    p.ok(&["down", "--yes"]);
    let text = p.ok(&["status"]);
    let line = text
        .lines()
        .find(|l| l.contains("people") && l.contains("reverted"))
        .unwrap_or("");
    assert!(!line.contains(" 10 "), "{text}");
    let v = p.json(&["status"]);
    assert!(v["migrations"][1]["counts"].is_null(), "{v}");
    assert_eq!(v["migrations"][1]["reverted_counts"]["written"], 10, "{v}");
}

/// Issue 11 item 12: a dry run of a data step whose table a schema step not applied yet
/// creates says which step, and that it would fail, not just `failed`.
#[test]
fn a_dry_run_of_a_step_whose_table_does_not_exist_yet_names_the_step_that_creates_it() {
    use cutover::engine::protocol::{Command, EngineEvent, RunOptions};
    let p = slow_people(10);
    let project =
        std::sync::Arc::new(cutover::engine::project::Project::load(p.path(), &Default::default()).expect("project"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let errors = rt.block_on(async {
        let mut engine = cutover::engine::runner::spawn(project);
        engine
            .commands
            .send(Command::Start(RunOptions {
                only: Some("20250101T090100".into()),
                dry_run: true,
                ..Default::default()
            }))
            .await
            .expect("send");
        let mut errors = Vec::new();
        while let Some(ev) = engine.events.recv().await {
            match ev {
                EngineEvent::Failed { error, .. } => errors.push(error),
                EngineEvent::Finished { .. } => break,
                _ => {}
            }
        }
        errors
    });
    let all = errors.join("\n");
    assert!(
        all.contains("would fail: the table people is created by step 20250101T090000_create_people"),
        "{all}"
    );
}
