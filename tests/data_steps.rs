//! Data steps on SQLite and a real PostgreSQL target: accounting, the reject store, waiting
//! rows, exactly-once resume after kill -9, dry run, continue-on-error, rollback.

mod common;
#[macro_use]
mod support;

use std::time::Duration;
use support::{Backend, TestProject, stderr, stdout};

const SCHEMA: &str = "20250101T090000_schema";
const ACCOUNTS: &str = "20250101T090100_accounts";
const ORDERS: &str = "20250101T090200_orders";

const SCHEMA_UP: &str = "CREATE TABLE accounts (id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, email TEXT NOT NULL UNIQUE, role TEXT NOT NULL, phone TEXT);
CREATE TABLE orders (id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, account_id TEXT NOT NULL REFERENCES accounts (id), amount DOUBLE PRECISION, placed DATE);
";
const SCHEMA_DOWN: &str = "DROP TABLE orders;\nDROP TABLE accounts;\n";

fn accounts_step(extra: &str) -> String {
    format!(
        r#"kind = "data"
{extra}
[source]
table = "users"
key = "id"

[target]
table = "accounts"
natural_key = ["email"]
on_duplicate = "skip"

[id_map]
column = "id"
map = "users"

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "email"
source = "email"
transforms = ["trim", "lower"]
validate = [{{ rule = "required" }}, {{ rule = "email" }}]

[[fields]]
target = "role"
source = "role"
transforms = ["trim", {{ map = {{ values = {{ parent = "parent", Parent = "parent", doctor = "clinician", admin = "admin" }}, case_insensitive = false }} }}]

[[fields]]
target = "phone"
source = "phone"
transforms = [{{ phone = {{ country = "US", on_error = "null_warn" }} }}]
"#
    )
}

const ORDERS_STEP: &str = r#"kind = "data"
[source]
table = "orders"
key = "id"

[target]
table = "orders"

[id_map]
column = "id"
map = "orders"

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "account_id"
source = "user_id"
transforms = [{ lookup = { map = "users" } }]

[[fields]]
target = "amount"
source = "amount"

[[fields]]
target = "placed"
source = "placed"
transforms = [{ date = { formats = ["%Y-%m-%d", "%m/%d/%Y"] } }]
validate = [{ rule = "not_in_future" }]
"#;

fn project(b: Backend, extra_config: &str, accounts_extra: &str) -> TestProject {
    let p = TestProject::with_config(b, extra_config);
    p.source_sql(
        "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT, role TEXT, phone TEXT, created_at TEXT);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id TEXT, amount TEXT, placed TEXT);",
    );
    p.schema_step(SCHEMA, SCHEMA_UP, SCHEMA_DOWN);
    p.data_step(ACCOUNTS, &accounts_step(accounts_extra));
    p.data_step(ORDERS, ORDERS_STEP);
    p
}

fn ledger_counts(p: &TestProject, version: &str) -> serde_json::Value {
    let v = p.json(&["status"]);
    v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["version"] == version)
        .map(|m| m["counts"].clone())
        .unwrap()
}

/// The ledger's own equation; a missing count is a failure, not a zero.
fn balanced(c: &serde_json::Value) -> bool {
    let n = |k: &str| {
        c[k].as_u64()
            .unwrap_or_else(|| panic!("the ledger has no counts.{k}: {c}"))
    };
    n("source") == n("written") + n("skipped") + n("rejected") + n("merged")
}

/// The books from independent counts: rows of the source table, rows of the target table,
/// open rejects of the step in the store; the ledger must agree with each.
fn assert_books(p: &TestProject, version: &str, source_table: &str, target_table: &str) {
    let source: u64 = support::sqlite3(
        &p.path().join("source.db"),
        &format!("SELECT COUNT(*) FROM {source_table}"),
    )
    .trim()
    .parse()
    .expect("source count");
    let target = p.count(target_table) as u64;
    let rejects = p.json(&["rejects", "list", "--step", version]);
    let rejected = rejects
        .as_array()
        .expect("rejects")
        .iter()
        .filter(|r| r["level"] == "error")
        .count() as u64;
    let c = ledger_counts(p, version);
    assert!(balanced(&c), "{version}: {c}");
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("no counts.{k}: {c}"));
    assert_eq!(n("source"), source, "{version}: ledger source vs the source table: {c}");
    assert_eq!(
        n("written"),
        target,
        "{version}: ledger written vs the target table: {c}"
    );
    assert_eq!(
        n("rejected"),
        rejected,
        "{version}: ledger rejected vs the reject store: {c}"
    );
    assert_eq!(source, target + n("skipped") + rejected, "{version}: {c}");
}

fn accounting_rejects_waiting_and_retry(b: Backend) {
    let p = project(b, "", "");
    p.source_sql(
        "INSERT INTO users VALUES ('u1', ' Ann@Example.COM ', 'parent', '(555) 201-3344', '2020-01-01'),
                                  ('u2', 'bob@example.com', 'nurse', 'call me', '2020-01-02'),
                                  ('u3', 'ann@example.com', 'Parent', NULL, '2020-01-03'),
                                  ('u4', 'cy@example.com', 'doctor', NULL, '2020-01-04');
         INSERT INTO orders VALUES (1, 'u1', '12.50', '2024-03-01'), (2, 'u2', '3', '03/04/2024'), (3, 'u3', '7.25', '2024-03-05'),
                                   (4, 'u9', '1', '2024-03-06'), (5, 'u4', '2', '2021-02-30');",
    );
    let o = p.run(&["up", "--continue-on-error"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("source 4 = written 2 + skipped 1 + rejected 1"), "{out}");
    assert!(out.contains("source 5 = written 2 + skipped 0 + rejected 3"), "{out}");
    assert_eq!(p.count("accounts"), 2);
    assert_eq!(p.count("orders"), 2);
    assert_eq!(
        p.target_sql("SELECT email || ' ' || role || ' ' || COALESCE(phone, '-') FROM accounts ORDER BY email"),
        "ann@example.com parent +15552013344\ncy@example.com clinician -"
    );
    // the duplicate's order resolves to the kept account
    assert_eq!(
        p.target_sql("SELECT a.legacy_id FROM orders o JOIN accounts a ON a.id = o.account_id WHERE o.legacy_id = '3'"),
        "u1"
    );
    assert_books(&p, "20250101T090100", "users", "accounts");
    assert_books(&p, "20250101T090200", "orders", "orders");
    // the reject store, as JSON
    let rejects = p.json(&["rejects", "list"]);
    let items = rejects.as_array().unwrap();
    assert_eq!(items.len(), 4, "{rejects}");
    for i in items {
        for k in ["step", "source_table", "source_key", "reason"] {
            assert!(i.get(k).is_some_and(|v| !v.is_null()), "{k} missing in {i}");
        }
    }
    let find = |t: &str, k: &str| {
        items
            .iter()
            .find(|i| i["source_table"] == t && i["source_key"] == k)
            .unwrap_or_else(|| panic!("no reject {t} {k}"))
            .clone()
    };
    assert!(find("users", "u2")["reason"].as_str().unwrap().contains("nurse"));
    assert_eq!(find("orders", "2")["reason"], "waiting for users u2");
    assert!(find("orders", "4")["reason"].as_str().unwrap().contains("u9"));
    assert!(find("orders", "5")["reason"].as_str().unwrap().contains("2021-02-30"));
    assert_eq!(
        find("users", "u2")["row"]["email"],
        "bob@example.com",
        "the whole source row is kept"
    );
    // with warnings included the list is the same: the only phone that could not be read
    // belongs to a rejected row, and rejected rows carry no warnings
    let with_warnings = p.json(&["rejects", "list", "--warnings"]);
    assert_eq!(with_warnings.as_array().unwrap().len(), 4);
    assert!(with_warnings.as_array().unwrap().iter().all(|w| w["level"] == "error"));
    // fix the rejected user and retry: it is written, and the order waiting for it follows
    let u2 = find("users", "u2")["id"].as_i64().unwrap().to_string();
    p.ok(&["rejects", "fix", &u2, "role=parent"]);
    let r = p.json(&["rejects", "retry", &u2]);
    assert_eq!(
        r["written"].as_array().unwrap().len(),
        2,
        "the user and the order waiting for it: {r}"
    );
    assert_eq!(p.count("accounts"), 3);
    assert_eq!(p.count("orders"), 3);
    assert_eq!(
        p.target_sql("SELECT a.email FROM orders o JOIN accounts a ON a.id = o.account_id WHERE o.legacy_id = '2'"),
        "bob@example.com"
    );
    let users = ledger_counts(&p, "20250101T090100");
    assert_eq!(
        (users["written"].as_u64(), users["rejected"].as_u64()),
        (Some(3), Some(0))
    );
    let orders = ledger_counts(&p, "20250101T090200");
    assert_eq!(
        (orders["written"].as_u64(), orders["rejected"].as_u64()),
        (Some(3), Some(2))
    );
    assert!(balanced(&users) && balanced(&orders));
    let open = p.json(&["rejects", "list", "--open"]);
    assert_eq!(open.as_array().unwrap().len(), 2);
    // export
    let csv = p.path().join("rejects.csv");
    p.ok(&["rejects", "export", "--csv", csv.to_str().unwrap()]);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text.starts_with("id,step,source_table,source_key") && text.contains("u9"),
        "{text}"
    );
}
both!(accounting_rejects_waiting_and_retry);

fn stop_at_first_reject_then_resume(b: Backend) {
    let p = project(b, "\n[defaults]\nbatch_size = 2\n", "");
    p.source_sql(
        "INSERT INTO users VALUES ('u1', 'a@x.org', 'parent', NULL, NULL), ('u2', 'b@x.org', 'parent', NULL, NULL),
                                  ('u3', 'c@x.org', 'janitor', NULL, NULL), ('u4', 'd@x.org', 'parent', NULL, NULL),
                                  ('u5', 'e@x.org', 'admin', NULL, NULL);",
    );
    let o = p.run(&["up", "--to", "20250101T090100", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    // the failure names the row and its column, and carries the books committed before it
    let failed: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "failed" && e["version"] == "20250101T090100")
        .collect();
    assert_eq!(failed.len(), 1, "{}", stdout(&o));
    let f = &failed[0];
    assert!(
        f["error"]
            .as_str()
            .is_some_and(|e| e.contains("u3") && e.contains("janitor")),
        "{f}"
    );
    assert_eq!(
        (f["source_key"].as_str(), f["column"].as_str()),
        (Some("u3"), Some("role")),
        "{f}"
    );
    assert_eq!(
        (f["counts"]["source"].as_u64(), f["counts"]["written"].as_u64()),
        (Some(2), Some(2)),
        "{f}"
    );
    // the first batch committed; nothing of the failing batch did
    assert_eq!(
        p.target_sql("SELECT legacy_id FROM accounts ORDER BY legacy_id"),
        "u1\nu2"
    );
    assert!(p.json(&["rejects", "list"]).as_array().unwrap().is_empty());
    let v = p.json(&["status"]);
    assert_eq!(v["migrations"][1]["state"], "failed");
    // fix the source and run again: it resumes from the checkpoint, nothing is written twice
    p.source_sql("UPDATE users SET role = 'parent' WHERE id = 'u3'");
    p.ok(&["up", "--to", "20250101T090100"]);
    assert_eq!(
        p.target_sql("SELECT legacy_id FROM accounts ORDER BY legacy_id"),
        "u1\nu2\nu3\nu4\nu5"
    );
    let c = ledger_counts(&p, "20250101T090100");
    assert_eq!(c["source"].as_u64(), Some(5));
    assert_eq!(c["written"].as_u64(), Some(5));
}
both!(stop_at_first_reject_then_resume);

fn dry_run_reports_and_writes_nothing(b: Backend) {
    let p = project(b, "", "");
    p.source_sql(
        "INSERT INTO users VALUES ('u1', 'a@x.org', 'parent', 'nope', NULL), ('u2', 'A@x.org', 'parent', NULL, NULL), ('u3', 'c@x.org', 'janitor', NULL, NULL);
         INSERT INTO orders VALUES (1, 'u1', '1', '2024-01-01'), (2, 'u3', '1', '2024-01-01');",
    );
    let o = p.run(&["up", "--dry-run", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let events: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let fin = |v: &str| {
        events
            .iter()
            .find(|e| e["event"] == "step_finished" && e["version"] == v)
            .unwrap()["counts"]
            .clone()
    };
    let a = fin("20250101T090100");
    assert_eq!(
        (
            a["written"].as_u64(),
            a["skipped"].as_u64(),
            a["rejected"].as_u64(),
            a["warnings"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(1))
    );
    let o2 = fin("20250101T090200");
    assert_eq!(
        (o2["written"].as_u64(), o2["rejected"].as_u64()),
        (Some(1), Some(1)),
        "the dry run sees the accounts it would have written"
    );
    assert!(p.user_tables().is_empty(), "{:?}", p.user_tables());
    p.assert_states(&["pending", "pending", "pending"]);
}
both!(dry_run_reports_and_writes_nothing);

fn rollback_removes_writes_and_restores_updates(b: Backend) {
    let p = project(b, "", "");
    p.data_step(
        ACCOUNTS,
        &accounts_step("").replace("on_duplicate = \"skip\"", "on_duplicate = \"update\""),
    );
    p.source_sql(
        "INSERT INTO users VALUES ('u1', 'pre@x.org', 'parent', NULL, NULL), ('u2', 'new@x.org', 'admin', NULL, NULL);
         INSERT INTO orders VALUES (1, 'u2', '5', '2024-01-01');",
    );
    p.ok(&["up", "--to", "20250101T090000"]);
    // a row that was there before the data step
    p.target_sql("INSERT INTO accounts (id, legacy_id, email, role, phone) VALUES ('existing-1', 'legacy-0', 'pre@x.org', 'admin', '+15550000000')");
    let before = p.target_sql("SELECT id || '|' || legacy_id || '|' || email || '|' || role || '|' || COALESCE(phone, '') FROM accounts ORDER BY id");
    p.ok(&["up"]);
    assert_eq!(
        p.target_sql("SELECT role FROM accounts WHERE email = 'pre@x.org'"),
        "parent",
        "update overwrote it"
    );
    assert_eq!(p.count("accounts"), 2);
    assert_eq!(p.count("orders"), 1);
    // rollback shows what it will undo, then undoes it
    let preview = p.ok(&["down", "--dry-run"]);
    assert!(preview.contains("would delete 1 rows from orders"), "{preview}");
    p.ok(&["down", "--yes"]);
    assert_eq!(p.count("orders"), 0);
    let preview = p.ok(&["down", "--dry-run"]);
    assert!(
        preview.contains("would delete 1 rows from accounts") && preview.contains("would restore 1"),
        "{preview}"
    );
    p.ok(&["down", "--yes"]);
    let after = p.target_sql("SELECT id || '|' || legacy_id || '|' || email || '|' || role || '|' || COALESCE(phone, '') FROM accounts ORDER BY id");
    assert_eq!(after, before, "the target is back to its pre-step content");
    assert_eq!(p.count("cutover_id_map"), 0);
    assert_eq!(p.count("cutover_rejects"), 0);
    let states = p.states();
    assert_eq!(states[1].1, "reverted");
    assert_eq!(states[2].1, "reverted");
    // and forward again gives the same content
    p.ok(&["up"]);
    assert_eq!(p.count("accounts"), 2);
    assert_eq!(p.count("orders"), 1);
}
both!(rollback_removes_writes_and_restores_updates);

/// Content of the target without the generated uuids, for comparing two runs.
fn content(p: &TestProject) -> String {
    p.target_sql(
        "SELECT a.legacy_id || '|' || a.email || '|' || a.role || '|' || COALESCE(o.legacy_id, '-') FROM accounts a LEFT JOIN orders o ON o.account_id = a.id ORDER BY a.legacy_id, o.legacy_id",
    )
}

fn fill_big_source(p: &TestProject, n: u32) {
    p.source_sql(&format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})
         INSERT INTO users SELECT printf('u%07d', x), printf('user%d@example.org', x), CASE WHEN x % 97 = 0 THEN 'nurse' WHEN x % 2 = 0 THEN 'parent' ELSE 'doctor' END, NULL, NULL FROM c;
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})
         INSERT INTO orders SELECT x, printf('u%07d', (x * 7) % {n} + 1), '1.5', '2024-01-02' FROM c;"
    ));
}

fn exactly_once_after_kill(b: Backend) {
    const N: u32 = 30_000;
    let cfg = "\n[defaults]\nbatch_size = 250\ncontinue_on_error = true\n";
    let reference = project(b, cfg, "");
    fill_big_source(&reference, N);
    reference.ok(&["up"]);
    let expected = content(&reference);

    let p = project(b, cfg, "");
    fill_big_source(&p, N);
    // Three runs, each killed with -9 once it has committed past a threshold (over both data
    // steps: mid accounts, mid orders, later in orders). The kill does not race the run: the
    // test first takes an exclusive lock on the source, so the step waits at its next page
    // read (and a run cannot finish without reading the source), and kills it there.
    let checkpointed = || {
        p.try_target_sql("SELECT COALESCE(SUM(rows_read), 0) FROM cutover_checkpoints")
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    let mut killed_at = Vec::new();
    for threshold in [3_000i64, 20_000, 40_000] {
        let mut child = p
            .cmd(&["up"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let reached = common::wait_until(Duration::from_secs(120), Duration::from_millis(5), || {
            checkpointed() >= threshold || child.try_wait().ok().flatten().is_some()
        });
        assert!(reached, "no progress past {threshold} rows in 120 s");
        let lock = support::SqliteLock::exclusive(&p.path().join("source.db"));
        let status = child.try_wait().unwrap();
        assert!(
            status.is_none(),
            "the run past {threshold} ended before it could be held ({status:?}); the test needs a run that is still going"
        );
        let _ = std::process::Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status();
        let _ = child.wait();
        drop(lock);
        killed_at.push(checkpointed());
    }
    // Each kill left a run part-way: more committed than the threshold, less than everything.
    assert!(
        killed_at.windows(2).all(|w| w[0] <= w[1]) && killed_at[0] >= 3_000 && killed_at[2] < 2 * i64::from(N),
        "killed at {killed_at:?}"
    );
    p.ok(&["up"]);
    assert_eq!(
        content(&p),
        expected,
        "resumed target differs from an uninterrupted run"
    );
    for t in ["accounts", "orders", "cutover_id_map", "cutover_rejects"] {
        assert_eq!(p.count(t), reference.count(t), "{t}");
    }
    // every ID-map entry points at a row that exists, and every row has one
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM cutover_id_map m LEFT JOIN accounts a ON a.id = m.new_id WHERE m.map = 'users' AND a.id IS NULL"),
        "0"
    );
    // Independent of both runs: nurses have no role mapping (rejected), and their orders wait.
    let nurse = |u: u32| u.is_multiple_of(97);
    let accounts = (1..=N).filter(|x| !nurse(*x)).count() as i64;
    let orders = (1..=N).filter(|x| !nurse((x * 7) % N + 1)).count() as i64;
    assert_eq!(p.count("accounts"), accounts);
    assert_eq!(p.count("orders"), orders);
    assert_books(&p, "20250101T090100", "users", "accounts");
    assert_books(&p, "20250101T090200", "orders", "orders");
}
both!(exactly_once_after_kill);

/// On PostgreSQL a rollback that leaves its table empty gives the table's pages back (a
/// deleted row stays in its page until a vacuum): the rollback of the step before it deletes
/// the rows this table referenced, and PostgreSQL checks a foreign key with no index on the
/// referencing side by scanning those pages once for every row deleted.
#[test]
fn postgres_rollback_gives_back_the_space_of_a_table_it_empties() {
    let p = project(
        Backend::Postgres,
        "\n[defaults]\nbatch_size = 500\ncontinue_on_error = true\n",
        "",
    );
    fill_big_source(&p, 3_000);
    p.ok(&["up"]);
    let size = |t: &str| {
        p.target_sql(&format!("SELECT pg_relation_size('{t}')"))
            .trim()
            .parse::<i64>()
            .unwrap_or(-1)
    };
    assert!(p.count("orders") > 0 && size("orders") > 0);
    let accounts_size = size("accounts");
    p.ok(&["down", "--to", "20250101T090100", "--yes"]);
    assert_eq!(p.count("orders"), 0);
    assert_eq!(size("orders"), 0, "the emptied table kept its pages");
    assert_eq!(size("accounts"), accounts_size, "a table the rollback did not touch");
    p.ok(&["down", "--to", "20250101T090000", "--yes"]);
    assert_eq!(p.count("accounts"), 0);
    assert_eq!(size("accounts"), 0);
    // Still a working table: the steps run again.
    p.ok(&["up"]);
    assert!(p.count("orders") > 0);
}

#[test]
fn progress_is_streamed_and_coalesced() {
    let p = project(
        Backend::Sqlite,
        "\n[defaults]\nbatch_size = 100\ncontinue_on_error = true\n",
        "",
    );
    fill_big_source(&p, 20_000);
    let o = p.run(&["up", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let events: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let progress: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "progress" && e["version"] == "20250101T090100")
        .collect();
    assert!(!progress.is_empty());
    let last = &progress.last().unwrap()["progress"];
    assert_eq!(last["rows_done"], 20_000);
    assert_eq!(last["rows_total"], 20_000);
    assert_eq!(last["batches_done"], 200);
    // Coalesced by the run's own clock (each event carries the step's elapsed time): at most
    // one event per 100 ms however fast or slow the machine is, plus the final one.
    let elapsed: Vec<u64> = progress
        .iter()
        .map(|e| e["progress"]["elapsed_ms"].as_u64().expect("elapsed_ms"))
        .collect();
    assert!(elapsed.windows(2).all(|w| w[0] <= w[1]), "{elapsed:?}");
    let gaps: Vec<u64> = elapsed[..elapsed.len() - 1].windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= 95),
        "progress events closer than 100 ms apart: {elapsed:?}"
    );
    assert!(
        (progress.len() as u64) <= elapsed.last().unwrap() / 100 + 2,
        "{} progress events in {} ms",
        progress.len(),
        elapsed.last().unwrap()
    );
    // and streamed: the batches in between were reported as they went, not only at the end
    let batches: Vec<u64> = progress
        .iter()
        .map(|e| e["progress"]["batches_done"].as_u64().expect("batches_done"))
        .collect();
    assert!(batches.windows(2).all(|w| w[0] < w[1]), "{batches:?}");
    let rejected = events.iter().filter(|e| e["event"] == "rejected").count();
    assert!(rejected > 0);
}

/// The next engine event, or a failure naming what was awaited after `secs` seconds.
async fn next_event(
    engine: &mut cutover::engine::runner::EngineHandle,
    secs: u64,
    what: &str,
) -> cutover::engine::protocol::EngineEvent {
    tokio::time::timeout(Duration::from_secs(secs), engine.events.recv())
        .await
        .unwrap_or_else(|_| panic!("no engine event in {secs} s while waiting for {what}"))
        .unwrap_or_else(|| panic!("the engine stopped while waiting for {what}"))
}

#[tokio::test]
async fn abort_pause_and_resume_between_batches() {
    use cutover::engine::protocol::{Command, EngineEvent, Outcome, RunOptions};
    const BATCH: i64 = 100;
    let p = project(
        Backend::Sqlite,
        "\n[defaults]\nbatch_size = 100\ncontinue_on_error = true\n",
        "",
    );
    fill_big_source(&p, 20_000);
    let project = std::sync::Arc::new(cutover::engine::project::Project::load(p.path(), &Default::default()).unwrap());
    let mut engine = cutover::engine::runner::spawn(project.clone());
    engine
        .commands
        .send(Command::Start(RunOptions::default()))
        .await
        .unwrap();
    // abort as soon as the data step reports progress
    let mut aborted = false;
    loop {
        match next_event(&mut engine, 60, "the aborted run to finish").await {
            EngineEvent::Progress { .. } if !aborted => {
                engine.commands.send(Command::Abort).await.unwrap();
                aborted = true;
            }
            EngineEvent::Finished { outcome, .. } => {
                assert!(aborted, "the run finished before it could be aborted");
                assert_eq!(outcome, Outcome::Aborted);
                break;
            }
            _ => {}
        }
    }
    let mid = p.count("accounts");
    assert!(mid > 0 && mid < 19_000, "aborted mid-way at a batch boundary: {mid}");
    assert_eq!(
        p.states()[1].1,
        "interrupted",
        "an aborted step is interrupted and resumable"
    );

    // Pause at the first progress of the resumed run; the engine must say it paused.
    engine
        .commands
        .send(Command::Start(RunOptions::default()))
        .await
        .unwrap();
    let rate = loop {
        match next_event(&mut engine, 60, "the resumed run's progress").await {
            EngineEvent::Progress { progress, .. } => break progress.rows_per_sec,
            EngineEvent::Finished { outcome, .. } => panic!("the run ended ({outcome}) before it could be paused"),
            _ => {}
        }
    };
    engine.commands.send(Command::Pause).await.unwrap();
    loop {
        match next_event(&mut engine, 30, "the Paused event").await {
            EngineEvent::Paused { .. } => break,
            EngineEvent::Finished { outcome, .. } => panic!("the run ended ({outcome}) instead of pausing"),
            _ => {}
        }
    }
    // Several batch intervals at the rate the run was going (at least 0.2 s, at most 3 s).
    let interval = Duration::from_secs_f64((BATCH as f64 / rate.max(1.0)).clamp(0.01, 0.5));
    let window = (interval * 6).max(Duration::from_millis(200));
    // What arrives while paused: the batch that was in flight may still commit and report.
    let drain = |engine: &mut cutover::engine::runner::EngineHandle| {
        let mut progress = 0;
        while let Ok(ev) = engine.events.try_recv() {
            match ev {
                EngineEvent::Progress { .. } => progress += 1,
                EngineEvent::Finished { outcome, .. } => panic!("the run ended ({outcome}) while paused"),
                _ => {}
            }
        }
        progress
    };
    let at_pause = p.count("accounts");
    tokio::time::sleep(window).await;
    drain(&mut engine);
    let settled = p.count("accounts");
    assert!(
        settled - at_pause <= BATCH,
        "{} rows written in {window:?} after Paused: more than the one batch in flight",
        settled - at_pause
    );
    for _ in 0..3 {
        tokio::time::sleep(window).await;
        assert_eq!(drain(&mut engine), 0, "progress reported while paused");
        assert_eq!(
            p.count("accounts"),
            settled,
            "rows were written while paused (batch interval {interval:?})"
        );
    }
    assert!(settled < 19_000, "paused before the end: {settled}");

    engine.commands.send(Command::Resume).await.unwrap();
    let mut resumed = false;
    loop {
        match next_event(&mut engine, 60, "the resumed run to finish").await {
            EngineEvent::Resumed { .. } => resumed = true,
            EngineEvent::Finished { outcome, .. } => {
                assert_eq!(outcome, Outcome::Done);
                break;
            }
            _ => {}
        }
    }
    assert!(resumed, "the engine said it resumed");
    let accounts = p.count("accounts");
    assert_eq!(accounts, 20_000 - 20_000 / 97);
    assert!(accounts > settled, "resume wrote the rest");
    assert_eq!(
        p.target_sql("SELECT COUNT(DISTINCT legacy_id) FROM accounts"),
        accounts.to_string()
    );
}

fn nested_paths_build_json_documents(b: Backend) {
    let p = TestProject::new(b);
    p.source_sql(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, city TEXT, zip TEXT, phone TEXT);
         INSERT INTO people VALUES (1, ' Oslo ', '0150', '(555) 201-3344'), (2, 'Bergen', NULL, NULL);",
    );
    let doc_type = if b == Backend::Postgres { "JSONB" } else { "TEXT" };
    p.schema_step(
        "20250101T090000_schema",
        &format!("CREATE TABLE profiles (id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, contact {doc_type});\n"),
        "DROP TABLE profiles;\n",
    );
    p.data_step(
        "20250101T090100_profiles",
        r#"kind = "data"
[source]
table = "people"
key = "id"
[target]
table = "profiles"
[id_map]
column = "id"
map = "people"
[[fields]]
target = "legacy_id"
source = "id"
[[fields]]
target = "contact.address.city"
source = "city"
transforms = ["trim"]
[[fields]]
target = "contact.address.zip"
source = "zip"
[[fields]]
target = "contact.phone"
source = "phone"
transforms = ["phone"]
"#,
    );
    p.ok(&["up"]);
    let docs = p.target_sql("SELECT contact FROM profiles ORDER BY legacy_id");
    let docs: Vec<serde_json::Value> = docs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(
        docs[0],
        serde_json::json!({"address": {"city": "Oslo", "zip": "0150"}, "phone": "+15552013344"})
    );
    assert_eq!(
        docs[1],
        serde_json::json!({"address": {"city": "Bergen", "zip": null}, "phone": null})
    );
}
both!(nested_paths_build_json_documents);

/// A natural key with a NULL part is no key: rows whose key is NULL are not duplicates of each
/// other (in one batch or across batches), as the target's own unique index sees them. Before,
/// the NULLs of one batch were all "the same key" and all but the first were skipped.
#[test]
fn null_natural_keys_are_not_duplicates_of_each_other() {
    let p = TestProject::new(Backend::Sqlite);
    p.source_sql(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT);
         INSERT INTO people VALUES (1, 'a@example.org'), (2, NULL), (3, '  '), (4, NULL), (5, 'b@example.org'), (6, 'A@example.org');",
    );
    p.schema_step(
        SCHEMA,
        "CREATE TABLE contacts (id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, email TEXT UNIQUE);",
        "DROP TABLE contacts;",
    );
    p.data_step(
        ACCOUNTS,
        r#"kind = "data"
[source]
table = "people"
key = "id"

[target]
table = "contacts"
natural_key = ["email"]
on_duplicate = "skip"

[id_map]
column = "id"
map = "people"

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "email"
source = "email"
transforms = ["trim", "lower", "empty_to_null"]
"#,
    );
    p.ok(&["up"]);
    let c = ledger_counts(&p, "20250101T090100");
    assert_eq!(
        (c["written"].as_u64(), c["skipped"].as_u64()),
        (Some(5), Some(1)),
        "{c}"
    );
    assert_eq!(p.count("contacts"), 5);
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM contacts WHERE email IS NULL").trim(),
        "3"
    );
}

/// Duplicate natural keys across batches are found in the target whatever their text holds
/// (quotes, backslashes, commas, braces, the word NULL, blanks: PostgreSQL gets the batch's keys
/// as one array parameter), for a text key and for a composite key of an integer and a date.
/// Batches of 2 rows, so every duplicate is in a later batch than the row it duplicates.
fn duplicate_keys_with_any_text_are_found_across_batches(b: Backend) {
    let p = TestProject::new(b);
    p.source_sql(
        r#"CREATE TABLE items (id INTEGER PRIMARY KEY, code TEXT, shelf INTEGER, day TEXT);
         INSERT INTO items VALUES
           (1, 'a"b', 1, '2024-01-01'), (2, 'c\d', 1, '2024-01-02'), (3, 'e,f', 2, '2024-01-01'),
           (4, '{g}', 2, '2024-01-02'), (5, 'NULL', 3, '2024-01-01'), (6, ' h ', 3, '2024-01-02'),
           (7, 'a"b', 1, '2024-01-01'), (8, 'c\d', 9, '2024-01-09'), (9, 'e,f', 2, '2024-01-01'),
           (10, '{g}', 8, '2024-01-08'), (11, 'NULL', 7, '2024-01-07'), (12, ' h ', 3, '2024-01-02'),
           (13, 'i', 1, '2024-01-02'), (14, 'j', 2, '2024-01-02');"#,
    );
    p.schema_step(
        SCHEMA,
        "CREATE TABLE by_code (id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, code TEXT UNIQUE);
         CREATE TABLE by_place (id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, shelf INTEGER, day DATE, UNIQUE (shelf, day));",
        "DROP TABLE by_place;\nDROP TABLE by_code;",
    );
    let step = |table: &str, nk: &str, fields: &str| {
        format!(
            r#"kind = "data"
batch_size = 2
[source]
table = "items"
key = "id"

[target]
table = "{table}"
natural_key = [{nk}]
on_duplicate = "skip"

[id_map]
column = "id"
map = "{table}"

[[fields]]
target = "legacy_id"
source = "id"
{fields}"#
        )
    };
    p.data_step(
        ACCOUNTS,
        &step(
            "by_code",
            r#""code""#,
            "[[fields]]\ntarget = \"code\"\nsource = \"code\"\n",
        ),
    );
    p.data_step(
        ORDERS,
        &step(
            "by_place",
            r#""shelf", "day""#,
            "[[fields]]\ntarget = \"shelf\"\nsource = \"shelf\"\n[[fields]]\ntarget = \"day\"\nsource = \"day\"\ntransforms = [{ date = { formats = [\"%Y-%m-%d\"] } }]\n",
        ),
    );
    p.ok(&["up"]);
    let c = ledger_counts(&p, ACCOUNTS.split('_').next().unwrap());
    assert_eq!(
        (c["written"].as_u64(), c["skipped"].as_u64()),
        (Some(8), Some(6)),
        "{c}"
    );
    assert_eq!(
        p.target_sql("SELECT legacy_id FROM by_code ORDER BY CAST(legacy_id AS INTEGER)")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5", "6", "13", "14"]
    );
    // Later rows of (1, 01-01), (1, 01-02), (2, 01-01), (2, 01-02), (3, 01-02) are duplicates.
    let c = ledger_counts(&p, ORDERS.split('_').next().unwrap());
    assert_eq!(
        (c["written"].as_u64(), c["skipped"].as_u64()),
        (Some(9), Some(5)),
        "{c}"
    );
    assert_eq!(
        p.target_sql("SELECT legacy_id FROM by_place ORDER BY CAST(legacy_id AS INTEGER)")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5", "6", "8", "10", "11"]
    );
}
both!(duplicate_keys_with_any_text_are_found_across_batches);

/// A step without an ID map records the natural keys it wrote one page at a time; its rollback
/// deletes exactly those rows (composite keys, text with quotes and commas, many pages), never
/// the rows that were there before it with keys it skipped as duplicates, and says how many.
fn rollback_without_id_map_deletes_only_the_rows_it_wrote(b: Backend) {
    let p = TestProject::new(b);
    p.source_sql(
        r#"CREATE TABLE readings (id INTEGER PRIMARY KEY, site TEXT, n INTEGER, v TEXT);
         WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 23)
         INSERT INTO readings SELECT i, CASE i % 3 WHEN 0 THEN 'a"b' WHEN 1 THEN 'c,d' ELSE 'e' END, i, 'v' || i FROM k;"#,
    );
    p.schema_step(
        SCHEMA,
        "CREATE TABLE copies (site TEXT NOT NULL, n INTEGER NOT NULL, v TEXT, PRIMARY KEY (site, n));",
        "DROP TABLE copies;",
    );
    p.data_step(
        ACCOUNTS,
        r#"kind = "data"
batch_size = 4
[source]
table = "readings"
key = "id"

[target]
table = "copies"
natural_key = ["site", "n"]
on_duplicate = "skip"

[[fields]]
target = "site"
source = "site"
[[fields]]
target = "n"
source = "n"
[[fields]]
target = "v"
source = "v"
"#,
    );
    p.ok(&["up", "--to", "20250101T090000"]);
    // Rows there before the step, two of them with keys the source has (4 is 'c,d', 9 'a"b').
    p.target_sql(r#"INSERT INTO copies VALUES ('c,d', 4, 'before'), ('a"b', 9, 'before'), ('zz', 1, 'before')"#);
    p.ok(&["up"]);
    let c = ledger_counts(&p, "20250101T090100");
    assert_eq!(
        (c["written"].as_u64(), c["skipped"].as_u64()),
        (Some(21), Some(2)),
        "{c}"
    );
    assert_eq!(p.count("copies"), 24);
    // one record per page, not one entry per row
    assert_eq!(p.count("cutover_id_map"), 0);
    assert_eq!(p.count("cutover_written_keys"), 6);
    if b == Backend::Postgres {
        // The records are compressed with lz4 where the server has it (pglz cost more server
        // time than the record's INSERT); the rollback below reads them back.
        let has_lz4 =
            p.target_sql("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'");
        let method = p.target_sql(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = 'cutover_written_keys'::regclass AND attname = 'keys_json'",
        );
        let expected = if has_lz4.trim() == "t" { "l" } else { "" };
        assert_eq!(method.trim(), expected, "lz4 available: {has_lz4}");
    }
    let preview = p.ok(&["down", "--dry-run"]);
    assert!(preview.contains("would delete 21 rows from copies"), "{preview}");
    p.ok(&["down", "--yes"]);
    assert_eq!(
        p.target_sql("SELECT site || '|' || n || '|' || v FROM copies ORDER BY site, n")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [r#"a"b|9|before"#, "c,d|4|before", "zz|1|before"]
    );
    assert_eq!(p.count("cutover_written_keys"), 0);
    // forward again: the same rows, exactly once
    p.ok(&["up"]);
    assert_eq!(p.count("copies"), 24);
}
both!(rollback_without_id_map_deletes_only_the_rows_it_wrote);

/// A step copying `columns` of `readings` into `copies` as they are, keyed by `id` on both
/// sides.
fn copy_step(columns: &[&str]) -> String {
    let mut step = String::from(
        "kind = \"data\"\n[source]\ntable = \"readings\"\nkey = \"id\"\n\n[target]\ntable = \"copies\"\nnatural_key = [\"id\"]\n",
    );
    for c in columns {
        step.push_str(&format!("\n[[fields]]\ntarget = \"{c}\"\nsource = \"{c}\"\n"));
    }
    step
}

/// A source table `readings (id INTEGER PRIMARY KEY, v TEXT)` of `n` rows.
fn readings_source(p: &TestProject, n: u32) {
    p.source_sql(&format!(
        "CREATE TABLE readings (id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {n})
         INSERT INTO readings SELECT i, 'v' || i FROM k;"
    ));
}

/// How many times PostgreSQL's statistics of `table` have been refreshed by `ANALYZE`.
fn analyze_count(p: &TestProject, table: &str) -> u64 {
    p.target_sql(&format!(
        "SELECT COALESCE(analyze_count, 0) FROM pg_stat_user_tables WHERE relname = '{table}'"
    ))
    .trim()
    .parse()
    .unwrap_or(0)
}

/// On PostgreSQL a step refreshes the planner's statistics of the table it fills and of the ID
/// map when it ends, so the next step's key lookups are planned for the table's real size,
/// not for the empty table autovacuum last saw.
#[test]
fn postgres_statistics_are_refreshed_when_a_step_has_filled_its_table() {
    let p = TestProject::new(Backend::Postgres);
    readings_source(&p, 50);
    p.schema_step(
        SCHEMA,
        "CREATE TABLE copies (id TEXT PRIMARY KEY, legacy_id INTEGER NOT NULL UNIQUE, v TEXT);",
        "DROP TABLE copies;",
    );
    p.data_step(
        ACCOUNTS,
        r#"kind = "data"
batch_size = 7
[source]
table = "readings"
key = "id"

[target]
table = "copies"
natural_key = ["legacy_id"]

[id_map]
column = "id"

[[fields]]
target = "legacy_id"
source = "id"
[[fields]]
target = "v"
source = "v"
"#,
    );
    let analyzed = |table: &str| analyze_count(&p, table);
    p.ok(&["up", "--to", "20250101T090000"]);
    assert_eq!((analyzed("copies"), analyzed("cutover_id_map")), (0, 0));
    p.ok(&["up"]);
    assert_eq!(p.count("copies"), 50);
    // The statistics the planner reads: 50 rows, not the empty table's.
    assert!(analyzed("copies") >= 1, "copies was not analysed");
    assert!(analyzed("cutover_id_map") >= 1, "the ID map was not analysed");
    assert_eq!(
        p.target_sql("SELECT reltuples::bigint FROM pg_class WHERE relname = 'copies'")
            .trim(),
        "50"
    );
}

/// A step that copies its source key into the natural key of an empty table with a unique
/// index on it does not look its keys up in the table page by page (every key is new: the
/// source key is unique); a row that collides all the same ('1' and '01' into an integer key)
/// is refused by the table and becomes a reject, never a second row. Into a table that
/// already holds rows, the keys are looked up and a row already there is found.
fn natural_keys_of_a_fresh_copy_are_not_looked_up(b: Backend) {
    let p = TestProject::with_config(b, "\n[defaults]\nbatch_size = 2\ncontinue_on_error = true\n");
    p.source_sql(
        "CREATE TABLE readings (id TEXT PRIMARY KEY, v TEXT);
         INSERT INTO readings VALUES ('01', 'a'), ('1', 'b'), ('2', 'c'), ('3', 'd'), ('4', 'e');",
    );
    p.schema_step(
        SCHEMA,
        "CREATE TABLE copies (id BIGINT PRIMARY KEY, v TEXT);",
        "DROP TABLE copies;",
    );
    p.data_step(ACCOUNTS, &copy_step(&["id", "v"]));
    let logged = |o: &std::process::Output| {
        assert!(o.status.success(), "{}", stderr(o));
        let log = format!("{}{}", stdout(o), stderr(o));
        log.lines().filter(|l| l.contains(r#"FROM \"copies\" WHERE"#)).count()
    };
    let o = p.cmd(&["up"]).env("CUTOVER_LOG", "sqlx::query=debug").output().unwrap();
    assert_eq!(logged(&o), 0, "a fresh copy looked its keys up: {}", stderr(&o));
    assert_eq!(
        p.target_sql("SELECT id || ':' || v FROM copies ORDER BY id")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1:a", "2:c", "3:d", "4:e"]
    );
    let rejects = p.json(&["rejects", "list", "--step", "20250101T090100"]);
    let rejects = rejects.as_array().expect("rejects");
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0]["source_key"], "1", "{rejects:?}");
    assert_eq!(rejects[0]["rule"], "target", "{rejects:?}");
    assert_books(&p, "20250101T090100", "readings", "copies");

    // Again into a table that holds rows: each page's keys are looked up, and the row
    // already there is a duplicate.
    p.ok(&["down", "--to", "20250101T090000", "--yes"]);
    p.target_sql("INSERT INTO copies (id, v) VALUES (3, 'kept')");
    let o = p.cmd(&["up"]).env("CUTOVER_LOG", "sqlx::query=debug").output().unwrap();
    assert!(logged(&o) > 0, "keys were not looked up in a table with rows");
    assert_eq!(
        p.target_sql("SELECT id || ':' || v FROM copies ORDER BY id")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1:a", "2:c", "3:kept", "4:e"]
    );
    let rejects = p.json(&["rejects", "list", "--step", "20250101T090100"]);
    let mut rules: Vec<(String, String)> = rejects
        .as_array()
        .expect("rejects")
        .iter()
        .map(|r| {
            (
                r["source_key"].as_str().unwrap_or("").to_string(),
                r["rule"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        [
            ("1".to_string(), "target".to_string()),
            ("3".to_string(), "duplicate".to_string())
        ],
        "the row already there is found as a duplicate (on_duplicate = error)"
    );
    // 5 source rows = 3 written + 2 rejected; the table holds them and the row kept.
    let c = ledger_counts(&p, "20250101T090100");
    assert_eq!(
        (
            c["source"].as_u64(),
            c["written"].as_u64(),
            c["rejected"].as_u64(),
            c["skipped"].as_u64()
        ),
        (Some(5), Some(3), Some(2), Some(0)),
        "{c}"
    );
    assert_eq!(p.count("copies"), 4);
}
both!(natural_keys_of_a_fresh_copy_are_not_looked_up);

/// The plain indexes of an empty table a step fills are dropped when the step starts and
/// built once its rows are in (faster than row by row); unique indexes, an index led by the
/// natural key and an expression index stay. A run killed in between leaves a record, and
/// the next run builds them before it resumes: the table ends with every index and every row
/// once. A dry run drops nothing.
fn plain_indexes_of_an_empty_table_are_built_after_its_rows(b: Backend) {
    const N: u32 = 20_000;
    let p = TestProject::with_config(b, "\n[defaults]\nbatch_size = 100\ncontinue_on_error = true\n");
    p.source_sql(&format!(
        "CREATE TABLE readings (id INTEGER PRIMARY KEY, v TEXT, w TEXT, code TEXT);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {N})
         INSERT INTO readings SELECT i, 'v' || (i % 97), 'w' || (i % 13), 'c' || i FROM s;"
    ));
    p.schema_step(
        SCHEMA,
        "CREATE TABLE copies (id BIGINT PRIMARY KEY, v TEXT, w TEXT, code TEXT UNIQUE);
CREATE INDEX copies_v ON copies (v);
CREATE INDEX copies_w_v ON copies (w, v);
CREATE INDEX copies_id_v ON copies (id, v);
CREATE INDEX copies_lower_v ON copies (lower(v));",
        "DROP TABLE copies;",
    );
    p.data_step(ACCOUNTS, &copy_step(&["id", "v", "w", "code"]));
    let indexes = || {
        p.target_sql(
            "SELECT name FROM (SELECT 'copies_v' AS name UNION ALL SELECT 'copies_w_v' UNION ALL SELECT 'copies_id_v' \
             UNION ALL SELECT 'copies_lower_v') n WHERE EXISTS (SELECT 1 FROM probe_indexes i WHERE i.name = n.name) ORDER BY name",
        )
        .split_whitespace()
        .map(str::to_string)
        .collect::<Vec<_>>()
    };
    let all = ["copies_id_v", "copies_lower_v", "copies_v", "copies_w_v"];
    let deferred_records = || {
        p.try_target_sql("SELECT COUNT(*) FROM cutover_deferred_indexes")
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    p.ok(&["up", "--to", "20250101T090000"]);
    // The catalog as a view both backends answer the same way.
    p.target_sql(match b {
        Backend::Sqlite => "CREATE VIEW probe_indexes AS SELECT name FROM sqlite_master WHERE type = 'index'",
        _ => {
            "CREATE VIEW probe_indexes AS SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema()"
        }
    });
    assert_eq!(indexes(), all);

    // A dry run leaves them alone.
    p.ok(&["up", "--dry-run"]);
    assert_eq!(indexes(), all);
    assert_eq!(deferred_records(), 0);

    // A run killed part-way: the two plain indexes are gone and recorded.
    kill_up_after(&p, 2_000);
    assert_eq!(indexes(), ["copies_id_v", "copies_lower_v"], "kept while the step ran");
    assert_eq!(deferred_records(), 2);

    // The next run builds them before anything else (here a run with nothing to do), then
    // the step resumes with them in place.
    let out = p.ok(&["up", "--to", "20250101T090000"]);
    assert_eq!(indexes(), all, "{out}");
    assert_eq!(deferred_records(), 0);
    p.ok(&["up"]);
    assert_eq!(indexes(), all);
    assert_eq!(
        p.target_sql("SELECT COUNT(*), COUNT(DISTINCT id), SUM(id), COUNT(DISTINCT code) FROM copies")
            .trim()
            .replace('|', " "),
        format!("{N} {N} {} {N}", (1..=i64::from(N)).sum::<i64>())
    );
    let columns = match b {
        Backend::Sqlite => p.target_sql(
            "SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_index_info('copies_w_v') ORDER BY seqno)",
        ),
        _ => p.target_sql("SELECT indexdef FROM pg_indexes WHERE indexname = 'copies_w_v'"),
    };
    assert!(
        columns.contains("w,v") || columns.contains("(w, v)"),
        "copies_w_v was rebuilt as {columns}"
    );
    assert_books(&p, "20250101T090100", "readings", "copies");

    // A fresh start says what it leaves out and builds, in order.
    p.ok(&["down", "--to", "20250101T090000", "--yes"]);
    let o = p.cmd(&["up"]).env("CUTOVER_LOG", "sqlx::query=debug").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let log = format!("{}{}", stdout(&o), stderr(&o));
    let at = |needle: &str| log.find(needle).unwrap_or_else(|| panic!("no {needle} in {log}"));
    assert!(
        at("copies is empty, so its index(es) copies_v, copies_w_v are built")
            < at("built the index(es) copies.copies_v, copies.copies_w_v")
    );
    let drops: Vec<&str> = log.lines().filter(|l| l.contains("DROP INDEX")).collect();
    assert_eq!(drops.len(), 2, "{drops:?}");
    assert!(
        drops
            .iter()
            .all(|l| !l.contains("copies_id_v") && !l.contains("copies_lower_v")),
        "{drops:?}"
    );
    assert_eq!(indexes(), all);
    assert_eq!(p.count("copies"), i64::from(N));
}
both!(plain_indexes_of_an_empty_table_are_built_after_its_rows);

/// `kill -9` of an `up` once its checkpoints have read `rows` source rows, while the SQLite
/// source is held (so the run is mid-batch, not between steps).
fn kill_up_after(p: &TestProject, rows: i64) {
    let checkpointed = || {
        p.try_target_sql("SELECT COALESCE(SUM(rows_read), 0) FROM cutover_checkpoints")
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    let mut child = p
        .cmd(&["up"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let reached = common::wait_until(Duration::from_secs(120), Duration::from_millis(5), || {
        checkpointed() >= rows || child.try_wait().ok().flatten().is_some()
    });
    assert!(reached, "no progress past {rows} rows in 120 s");
    let lock = support::SqliteLock::exclusive(&p.path().join("source.db"));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before it could be held"
    );
    let _ = std::process::Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
    drop(lock);
}

/// PostgreSQL's unique indexes as `Db::unique_index_within` sees them: whole-column unique
/// indexes and primary keys count, also when they need fewer columns than the natural key;
/// partial, expression and deferred ones do not, nor one that needs a column outside it.
#[test]
fn postgres_unique_indexes_and_primary_keys_are_found() {
    use cutover::engine::config::DbUrl;
    use cutover::engine::db::{Db, Role};
    let url = common::pg::PgServer::shared().fresh_db("uniq");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let db = Db::connect(&DbUrl::new(url), dir.path(), Role::Target)
            .await
            .expect("connect");
        for ddl in [
            "CREATE TABLE pk (id BIGINT PRIMARY KEY, v TEXT)",
            "CREATE TABLE pair (a TEXT, b TEXT, c TEXT, UNIQUE (a, b))",
            "CREATE TABLE partial (a TEXT, live BOOLEAN)",
            "CREATE UNIQUE INDEX partial_a ON partial (a) WHERE live",
            "CREATE TABLE expr (a TEXT)",
            "CREATE UNIQUE INDEX expr_a ON expr (lower(a))",
            "CREATE TABLE deferred (a TEXT UNIQUE DEFERRABLE INITIALLY DEFERRED)",
            "CREATE TABLE plain (a TEXT)",
            "CREATE INDEX plain_a ON plain (a)",
            r#"CREATE TABLE "Mixed" ("Key" TEXT PRIMARY KEY)"#,
        ] {
            db.execute(ddl, &[]).await.expect(ddl);
        }
        let within = async |t: &str, cols: &[&str]| db.unique_index_within(t, cols).await.expect("unique_index_within");
        assert!(within("pk", &["id"]).await);
        assert!(!within("pk", &["v"]).await);
        assert!(within("pair", &["a", "b"]).await);
        assert!(within("pair", &["c", "b", "a"]).await);
        assert!(!within("pair", &["a"]).await);
        assert!(!within("partial", &["a"]).await);
        assert!(!within("expr", &["a"]).await);
        assert!(!within("deferred", &["a"]).await);
        assert!(!within("plain", &["a"]).await);
        assert!(within("Mixed", &["Key"]).await);
        assert!(!within("Mixed", &["key"]).await);
        assert!(!within("missing", &["a"]).await);
        // A source key that is the primary key needs no key check: unique and never NULL.
        let pk = async |t: &str, cols: &[&str]| db.is_primary_key(t, cols).await.expect("is_primary_key");
        db.execute("CREATE TABLE two (a TEXT, b INT, c TEXT, PRIMARY KEY (a, b))", &[])
            .await
            .expect("two");
        assert!(pk("pk", &["id"]).await);
        assert!(!pk("pk", &["v"]).await);
        assert!(pk("two", &["b", "a"]).await);
        assert!(!pk("two", &["a"]).await);
        assert!(!pk("two", &["a", "b", "c"]).await);
        assert!(!pk("pair", &["a", "b"]).await, "unique, but NULLs are allowed");
        assert!(pk("Mixed", &["Key"]).await);
        assert!(!pk("missing", &["id"]).await);
        db.close().await;
    });
}

/// While a step runs, its table's statistics are refreshed only if the step looks rows up in
/// it (a natural-key check): at 10 000 written rows, at 20 000, and at its end. A step that
/// never looks in its table (an ID map, no natural key; or a fresh copy of the source key,
/// whose keys are all new) refreshes them once, at its end.
#[test]
fn postgres_statistics_are_refreshed_mid_step_only_for_a_step_that_probes_its_table() {
    let p = TestProject::new(Backend::Postgres);
    readings_source(&p, 25_000);
    p.schema_step(
        SCHEMA,
        "CREATE TABLE checked (legacy_id INTEGER NOT NULL, v TEXT NOT NULL UNIQUE);
         CREATE TABLE copied (id TEXT PRIMARY KEY, legacy_id INTEGER NOT NULL, v TEXT);
         CREATE TABLE fresh (legacy_id INTEGER PRIMARY KEY, v TEXT);",
        "DROP TABLE fresh; DROP TABLE copied; DROP TABLE checked;",
    );
    let step = |table: &str, natural_key: &str| {
        format!(
            "kind = \"data\"\nbatch_size = 5000\n[source]\ntable = \"readings\"\nkey = \"id\"\n\n[target]\ntable = \"{table}\"\n{natural_key}\n[[fields]]\ntarget = \"legacy_id\"\nsource = \"id\"\n[[fields]]\ntarget = \"v\"\nsource = \"v\"\n"
        )
    };
    p.data_step(ACCOUNTS, &step("checked", "natural_key = [\"v\"]"));
    // Rollback finds its rows through the ID map: no natural key to check.
    p.data_step(ORDERS, &step("copied", "[id_map]\ncolumn = \"id\"\n"));
    p.data_step("20250101T090300_fresh", &step("fresh", "natural_key = [\"legacy_id\"]"));
    p.ok(&["up"]);
    for t in ["checked", "copied", "fresh"] {
        assert_eq!(p.count(t), 25_000, "{t}");
    }
    assert_eq!(
        analyze_count(&p, "checked"),
        3,
        "at 10 000 and 20 000 rows, and at the end"
    );
    assert_eq!(analyze_count(&p, "copied"), 1, "only at the end");
    assert_eq!(analyze_count(&p, "fresh"), 1, "only at the end: every key is new");
    // The end's refresh covers every column, for the steps and checks that come after.
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM pg_stats WHERE tablename = 'copied'")
            .trim(),
        "3"
    );
}

/// A step whose lookups go into its own ID map: a row's manager was written by an earlier
/// page of the same, still uncommitted batch (rows 2501..5000 look up rows 1..2500, one batch
/// of two 2 500-row pages), or by the batch before (rows 5001..6000). Such lookups must be
/// answered inside the batch's transaction, never ahead of the writer from committed state,
/// which would leave the second page's managers unresolved (waiting rejects).
fn lookups_in_the_steps_own_map_see_earlier_pages_of_its_batch(b: Backend) {
    let p = TestProject::new(b);
    p.source_sql(
        "CREATE TABLE employees (id INTEGER PRIMARY KEY, manager_id INTEGER);
         WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 6000)
         INSERT INTO employees SELECT i, CASE WHEN i > 2500 THEN i - 2500 END FROM k;",
    );
    p.schema_step(
        SCHEMA,
        "CREATE TABLE staff (id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, manager_id TEXT REFERENCES staff (id));",
        "DROP TABLE staff;",
    );
    p.data_step(
        ACCOUNTS,
        r#"kind = "data"
batch_size = 5000
[source]
table = "employees"
key = "id"

[target]
table = "staff"

[id_map]
column = "id"
map = "employees"

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "manager_id"
source = "manager_id"
transforms = [{ lookup = { map = "employees" } }]
"#,
    );
    p.ok(&["up"]);
    let c = ledger_counts(&p, "20250101T090100");
    assert_eq!(
        (c["written"].as_u64(), c["rejected"].as_u64()),
        (Some(6000), Some(0)),
        "{c}"
    );
    // Each manager is the row 2 500 before, by its new id.
    let linked = p.target_sql(
        "SELECT COUNT(*) FROM staff s JOIN staff m ON m.id = s.manager_id
         WHERE CAST(m.legacy_id AS INTEGER) = CAST(s.legacy_id AS INTEGER) - 2500",
    );
    assert_eq!(linked.trim(), "3500");
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM staff WHERE manager_id IS NULL")
            .trim(),
        "2500"
    );
}
both!(lookups_in_the_steps_own_map_see_earlier_pages_of_its_batch);

/// A merge step whose A row has two B rows: the first fills A's blank, and the second is
/// compared with A's own values, not with what the first filled in (no discrepancy for a
/// blank of A); a B row that disagrees with a value A has is a discrepancy. Entities across
/// more than one page of A rows.
fn merges_compare_each_b_row_with_the_a_row_as_it_came(b: Backend) {
    let p = TestProject::new(b);
    p.source_sql(
        "CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT, city TEXT);
         CREATE TABLE children (id INTEGER PRIMARY KEY, pid INTEGER, name TEXT, city TEXT);
         WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 3000)
         INSERT INTO patients SELECT i, 'P' || i, CASE WHEN i % 2 = 0 THEN 'Oslo' END FROM k;
         INSERT INTO children SELECT 10000 + id, id, name, 'Bergen' FROM patients WHERE id % 3 = 0;
         INSERT INTO children SELECT 20000 + id, id, name, 'Tromsø' FROM patients WHERE id % 3 = 0;",
    );
    p.schema_step(
        SCHEMA,
        "CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT, city TEXT);",
        "DROP TABLE people;",
    );
    p.data_step(
        ACCOUNTS,
        r#"kind = "merge"
[a]
table = "patients"
key = "id"

[b]
table = "children"
key = "id"
link = "pid"

[target]
table = "people"

[id_map]
column = "id"

[[fields]]
target = "name"
a = "name"
b = "name"
compare = true

[[fields]]
target = "city"
a = "city"
b = "city"
compare = true
"#,
    );
    p.ok(&["up"]);
    // 1000 patients have two children each; 500 of them have no city of their own (odd ids).
    assert_eq!(p.target_sql("SELECT COUNT(*) FROM people").trim(), "3000");
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM people WHERE city = 'Bergen'").trim(),
        "500",
        "a blank of A is filled by its first B row"
    );
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM people WHERE city IS NULL").trim(),
        "1000",
        "odd ids without children keep their blank"
    );
    // Discrepancies only where A itself has a city (even ids divisible by 3): both children
    // disagree with it. The odd ids' second child (Tromsø) meets A's blank, not Bergen.
    assert_eq!(
        p.target_sql("SELECT COUNT(*), COUNT(DISTINCT entity_id), MIN(field), MAX(field), MIN(value_a) FROM cutover_discrepancies")
            .trim()
            .replace(['|', '\t'], " "),
        "1000 500 city city Oslo"
    );
}
both!(merges_compare_each_b_row_with_the_a_row_as_it_came);

/// The source's columns are checked from the prepared statement, never by running it: a
/// column the step reads is missing from an empty table too (a first row could not tell),
/// and a query source (a view with a window, a sort of every row) is not computed for the
/// check: only the step's own stream, its count at the end and the key check run it.
fn source_columns_are_checked_without_running_the_source(b: Backend) {
    let p = TestProject::with_config(b, "");
    p.source_sql("CREATE TABLE readings (id TEXT PRIMARY KEY, v TEXT);");
    p.schema_step(
        SCHEMA,
        "CREATE TABLE copies (id TEXT PRIMARY KEY, v TEXT, w TEXT);",
        "DROP TABLE copies;",
    );
    p.data_step(ACCOUNTS, &copy_step(&["id", "v", "w"]));
    let o = p.run(&["up"]);
    assert!(
        !o.status.success(),
        "an empty source without column w was copied: {}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("has no column 'w'"),
        "the missing column is not named: {}",
        stderr(&o)
    );
    let status = p.json(&["status"]);
    let applied: Vec<&serde_json::Value> = status["migrations"]
        .as_array()
        .expect("migrations")
        .iter()
        .filter(|m| m["status"] == "applied")
        .collect();
    assert!(applied.is_empty(), "the refused run applied steps: {applied:?}");

    // A query the source cannot prepare is named with the database's own words, once.
    p.data_step(
        ACCOUNTS,
        "kind = \"data\"\n[source]\nname = \"readings\"\nkey = \"id\"\nquery = \"SELECT id, v, v AS w FROM nothere\"\n\n[target]\ntable = \"copies\"\nnatural_key = [\"id\"]\n\n[[fields]]\ntarget = \"id\"\nsource = \"id\"\n",
    );
    let o = p.run(&["up"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert_eq!(
        stderr(&o).matches("no such table: nothere").count(),
        1,
        "the cause is not said once: {}",
        stderr(&o)
    );

    let p = TestProject::with_config(b, "");
    readings_source(&p, 50);
    p.schema_step(
        SCHEMA,
        "CREATE TABLE copies (id TEXT PRIMARY KEY, v TEXT, w TEXT);",
        "DROP TABLE copies;",
    );
    p.data_step(
        ACCOUNTS,
        "kind = \"data\"\n[source]\nname = \"readings\"\nkey = \"id\"\nquery = \"SELECT id, v, ROW_NUMBER() OVER (ORDER BY v DESC) AS w FROM readings\"\n\n[target]\ntable = \"copies\"\nnatural_key = [\"id\"]\n\n[[fields]]\ntarget = \"id\"\nsource = \"id\"\n\n[[fields]]\ntarget = \"v\"\nsource = \"v\"\n\n[[fields]]\ntarget = \"w\"\nsource = \"w\"\n",
    );
    let o = p.cmd(&["up"]).env("CUTOVER_LOG", "sqlx::query=debug").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let log = format!("{}{}", stdout(&o), stderr(&o));
    let runs: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ROW_NUMBER() OVER") && l.contains("elapsed"))
        .collect();
    // The key check only: it also counts the rows, for the progress bar and for the step's
    // end, which reconciles with that count while nobody commits to the source (no count
    // again); the stream itself is read through SQLite's own handle and not logged by sqlx.
    assert_eq!(
        runs.len(),
        1,
        "the query source ran {} times through sqlx: {runs:#?}",
        runs.len()
    );
    assert!(runs.iter().all(|l| !l.contains("LIMIT 1")), "{runs:#?}");
    assert_eq!(p.count("copies"), 50);
    // v1 sorts last of v1..v50 in descending text order.
    assert_eq!(p.target_sql("SELECT w FROM copies WHERE id = '1'").trim(), "50");
}
both!(source_columns_are_checked_without_running_the_source);

/// PostgreSQL: a fresh step into an empty table leaves out the foreign keys its lookups fill
/// and adds them back at its end, and still keeps no row the key refuses. Here the account of
/// `u3` is deleted from the target after its step wrote it (its ID-map entry stays), so the
/// orders looked up through the map reference nothing: each becomes a reject like the key's
/// own refusal would have made it (row gone with its ID-map entry, source row kept, books
/// moved from written to rejected), the key is back, and the rejects retry once the account
/// is back. A run killed while the key is out leaves a record the next command acts on.
#[test]
fn postgres_foreign_keys_are_checked_at_the_end_of_a_fresh_step() {
    const N: u32 = 3000;
    const ORDERS_V: &str = "20250101T090200";
    let p = project(
        Backend::Postgres,
        "\n[defaults]\nbatch_size = 100\ncontinue_on_error = true\n",
        "",
    );
    p.source_sql(&format!(
        "INSERT INTO users VALUES ('u1', 'a@example.com', 'parent', NULL, NULL), ('u2', 'b@example.com', 'parent', NULL, NULL),
                                  ('u3', 'c@example.com', 'doctor', NULL, NULL), ('u4', 'd@example.com', 'admin', NULL, NULL);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {N})
         INSERT INTO orders SELECT i, 'u' || (1 + i % 4), CAST(i AS TEXT), '2024-01-02' FROM s;"
    ));
    let key_count = || {
        p.target_sql("SELECT COUNT(*) FROM pg_constraint WHERE conname = 'orders_account_id_fkey' AND convalidated")
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    let deferred_records = || {
        p.try_target_sql("SELECT COUNT(*) FROM cutover_deferred_keys")
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    p.ok(&["up", "--to", "20250101T090100"]);
    assert_eq!(key_count(), 1);
    let u3_id = p.target_sql("SELECT id FROM accounts WHERE legacy_id = 'u3'");
    let u3_row = p.target_sql("SELECT id || '|' || email || '|' || role FROM accounts WHERE legacy_id = 'u3'");
    p.target_sql("DELETE FROM accounts WHERE legacy_id = 'u3'");

    let o = p.cmd(&["up"]).env("CUTOVER_LOG", "sqlx::query=debug").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let log = format!("{}{}", stdout(&o), stderr(&o));
    let at = |needle: &str| log.find(needle).unwrap_or_else(|| panic!("no {needle} in {log}"));
    assert!(
        at("the foreign key(s) orders_account_id_fkey of orders are checked once the step's rows are in")
            < at("added back the foreign key(s) orders_account_id_fkey")
    );
    assert!(log.contains("DROP CONSTRAINT IF EXISTS"), "{log}");
    assert_eq!(key_count(), 1, "the key is back, validated");
    assert_eq!(deferred_records(), 0);

    // Every fourth order was u3's: none of them is in the target, each is a reject.
    let u3_orders = (1..=N).filter(|i| 1 + i % 4 == 3).count() as i64;
    assert_eq!(p.count("orders"), i64::from(N) - u3_orders);
    assert_eq!(
        p.target_sql(
            "SELECT COUNT(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = o.account_id)"
        ),
        "0"
    );
    assert_books(&p, ORDERS_V, "orders", "orders");
    let c = ledger_counts(&p, ORDERS_V);
    assert_eq!(c["rejected"].as_i64(), Some(u3_orders), "{c}");
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM cutover_id_map WHERE map = 'orders'"),
        (i64::from(N) - u3_orders).to_string(),
        "the rejected rows' ID-map entries are gone with them"
    );
    let rejects = p.json(&["rejects", "list", "--step", ORDERS_V]);
    let items = rejects.as_array().unwrap();
    assert_eq!(items.len() as i64, u3_orders);
    let first = items
        .iter()
        .find(|r| r["source_key"] == "2")
        .unwrap_or_else(|| panic!("no reject of order 2 in {rejects}"));
    let reason = first["reason"].as_str().unwrap();
    assert!(
        reason.contains("orders_account_id_fkey") && reason.contains(&u3_id) && reason.contains("is not in accounts"),
        "{reason}"
    );
    assert_eq!(first["row"]["user_id"], "u3", "the source row is kept: {first}");
    assert_eq!(first["row"]["amount"], "2", "{first}");

    // The account comes back (as it was): the rejects retry into the table, keys intact.
    let parts: Vec<&str> = u3_row.trim().split('|').collect();
    p.target_sql(&format!(
        "INSERT INTO accounts (id, legacy_id, email, role) VALUES ('{}', 'u3', '{}', '{}')",
        parts[0], parts[1], parts[2]
    ));
    p.ok(&["rejects", "retry", "--step", ORDERS_V]);
    assert_eq!(p.count("orders"), i64::from(N));
    let c = ledger_counts(&p, ORDERS_V);
    assert_eq!(
        (c["written"].as_i64(), c["rejected"].as_i64()),
        (Some(i64::from(N)), Some(0)),
        "{c}"
    );

    // Killed with the key out: recorded, and the next command adds it back before anything:
    // a run (`up`), and a command that writes outside a run (`rejects retry`).
    let killed_mid_step = || {
        p.ok(&["down", "--to", "20250101T090100", "--yes"]);
        assert_eq!(p.count("orders"), 0);
        kill_up_after(&p, 300);
        assert_eq!(key_count(), 0, "left out while the step ran");
        assert_eq!(deferred_records(), 1);
    };
    for next in [
        &["up", "--to", "20250101T090100"][..],
        &["rejects", "retry", "--step", ORDERS_V],
    ] {
        killed_mid_step();
        p.ok(next);
        assert_eq!(key_count(), 1, "{next:?} added the key back");
        assert_eq!(deferred_records(), 0, "{next:?}");
        p.ok(&["up"]);
        assert_eq!(p.count("orders"), i64::from(N));
        assert_eq!(key_count(), 1);
        assert_books(&p, ORDERS_V, "orders", "orders");
    }
}

/// PostgreSQL, a step that stops at its first reject: its foreign keys stay in place (the
/// batch holding a row they refuse must not commit), so the same orphan stops the step before
/// its batch, exactly as before keys could be left out.
#[test]
fn postgres_foreign_keys_stay_when_the_step_stops_at_its_first_reject() {
    let p = project(Backend::Postgres, "\n[defaults]\nbatch_size = 2\n", "");
    p.source_sql(
        "INSERT INTO users VALUES ('u1', 'a@x.org', 'parent', NULL, NULL), ('u2', 'b@x.org', 'parent', NULL, NULL);
         INSERT INTO orders VALUES (1, 'u1', '1', '2024-01-02'), (2, 'u1', '2', '2024-01-02'), (3, 'u2', '3', '2024-01-02'),
                                   (4, 'u1', '4', '2024-01-02');",
    );
    p.ok(&["up", "--to", "20250101T090100"]);
    p.target_sql("DELETE FROM accounts WHERE legacy_id = 'u2'");
    let o = p.cmd(&["up"]).env("CUTOVER_LOG", "sqlx::query=debug").output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let log = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!log.contains("DROP CONSTRAINT"), "a key was dropped: {log}");
    assert!(
        log.contains("orders_account_id_fkey"),
        "the refusal names the key: {log}"
    );
    assert_eq!(
        p.target_sql("SELECT legacy_id FROM orders ORDER BY legacy_id"),
        "1\n2",
        "the batch before the refused row committed, nothing of its own batch did"
    );
    assert_eq!(
        p.target_sql("SELECT COUNT(*) FROM pg_constraint WHERE conname = 'orders_account_id_fkey'"),
        "1"
    );
    assert!(p.json(&["rejects", "list"]).as_array().unwrap().is_empty());
}
