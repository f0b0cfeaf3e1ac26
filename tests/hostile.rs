//! The engine tried as a hostile tester would (issue: nothing lost at the edges). Each test
//! drives the real binary on a SQLite source into a SQLite and a real PostgreSQL target, and
//! checks the accounting equation against counts taken from the source and target tables
//! themselves, not the ledger against itself.

mod common;
#[macro_use]
mod support;

use common::pg::PgServer;
use std::time::{Duration, Instant};
use support::{Backend, TestProject, stderr, stdout};

const SCHEMA: &str = "20250101T090000_schema";
const ITEMS: &str = "20250101T090100_items";
const MORE: &str = "20250101T090200_more";
const LAST: &str = "20250101T090300_last";

/// Items: legacy id, name and a quantity the target constrains (NOT NULL, >= 0, integer).
fn items_schema(b: Backend) -> String {
    match b {
        Backend::Sqlite => "CREATE TABLE items (id TEXT PRIMARY KEY, legacy_id INTEGER NOT NULL UNIQUE, name TEXT, qty INTEGER NOT NULL CHECK (qty >= 0)) STRICT;\n".into(),
        Backend::Postgres => "CREATE TABLE items (id UUID PRIMARY KEY, legacy_id BIGINT NOT NULL UNIQUE, name TEXT, qty BIGINT NOT NULL CHECK (qty >= 0));\n".into(),
    }
}

fn items_step(source: &str, key: &str, extra: &str) -> String {
    format!(
        r#"kind = "data"
batch_size = 1000
{extra}
[source]
{source}
key = {key}

[target]
table = "items"

[id_map]
column = "id"
map = "items"
key = "id"

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "name"
source = "name"

[[fields]]
target = "qty"
source = "qty"
"#
    )
}

/// A source table `t(id, name, qty)` of `n` rows, qty = id.
fn source_rows(p: &TestProject, table: &str, n: u32) {
    p.source_sql(&format!(
        "CREATE TABLE \"{table}\" (id INTEGER, name TEXT, qty INTEGER);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})
         INSERT INTO \"{table}\" SELECT i, 'item ' || i, i FROM s;"
    ));
}

fn src_count(p: &TestProject, sql: &str) -> i64 {
    support::sqlite3(&p.path().join("source.db"), sql)
        .trim()
        .parse()
        .expect("count")
}

fn ledger_counts(p: &TestProject, version: &str) -> serde_json::Value {
    let v = p.json(&["status"]);
    v["migrations"]
        .as_array()
        .expect("migrations")
        .iter()
        .find(|m| m["version"] == ver(version))
        .unwrap_or_else(|| panic!("no {version} in status: {v}"))
        .clone()
}

/// The version part of a migration folder name.
fn ver(folder: &str) -> &str {
    folder.split('_').next().unwrap_or(folder)
}

fn count_of(m: &serde_json::Value, what: &str) -> i64 {
    m["counts"][what]
        .as_i64()
        .unwrap_or_else(|| panic!("status has no counts.{what}: {m}"))
}

fn rejects(p: &TestProject) -> Vec<serde_json::Value> {
    p.json(&["rejects", "list"]).as_array().expect("rejects array").clone()
}

/// The accounting equation from independent counts: rows in the source, rows in the target,
/// rejects in the store; and the ledger agrees with them.
fn assert_books(p: &TestProject, version: &str, source_rows: i64, target_table: &str) {
    let target = p.count(target_table);
    let open = rejects(p)
        .iter()
        .filter(|r| r["step"] == ver(version) && r["level"] == "error")
        .count() as i64;
    assert_eq!(
        source_rows,
        target + open,
        "source {source_rows} != target {target} + rejects {open}"
    );
    let m = ledger_counts(p, version);
    assert_eq!(count_of(&m, "source"), source_rows, "ledger source: {m}");
    assert_eq!(count_of(&m, "written"), target, "ledger written: {m}");
    assert_eq!(count_of(&m, "rejected"), open, "ledger rejected: {m}");
}

// 1. A reader failure (the source query errors at row 2500 of 5000) fails the step with the
//    step named, keeps the two committed batches, and is never reported as applied.
fn reader_error_fails_the_step(b: Backend) {
    let p = TestProject::new(b);
    // A query source is read as one ordered stream; with the key as the table's primary key
    // SQLite produces rows in key order without sorting first, so the failing row is reached
    // mid-stream, after two batches were handed out (a query that must sort fails before its
    // first row, which `query_that_must_sort_fails_before_writing` below covers).
    p.source_sql(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 5000)
         INSERT INTO t SELECT i, 'item ' || i, i FROM s;",
    );
    p.schema_step(SCHEMA, &items_schema(b), "DROP TABLE items;");
    // abs(i64::MIN) raises "integer overflow" in SQLite when that row is computed.
    let q = "query = \"SELECT id, name, CASE WHEN id = 2500 THEN abs(-9223372036854775807 - 1) ELSE qty END AS qty FROM t\"";
    p.data_step(ITEMS, &items_step(q, "\"id\"", ""));
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(ver(ITEMS)) && err.contains("reading the source"), "{err}");
    assert!(err.contains("integer overflow"), "{err}");
    let m = ledger_counts(&p, ITEMS);
    assert_eq!(m["state"], "failed", "{m}");
    assert_eq!(count_of(&m, "written"), 2000, "{m}");
    assert_eq!(p.count("items"), 2000);
    // verify does not pass a failed step
    let v = p.run(&["verify"]);
    assert_ne!(v.status.code(), Some(0), "{}", stdout(&v));
}
both!(reader_error_fails_the_step);

// 1b. A query source that must be sorted before its first row (no index on the key) is
//     computed once; its failure comes before any row, and nothing is written or applied.
fn query_that_must_sort_fails_before_writing(b: Backend) {
    let p = TestProject::new(b);
    source_rows(&p, "t", 5000);
    p.schema_step(SCHEMA, &items_schema(b), "DROP TABLE items;");
    let q = "query = \"SELECT id, name, CASE WHEN id = 2500 THEN abs(-9223372036854775807 - 1) ELSE qty END AS qty FROM t\"";
    p.data_step(ITEMS, &items_step(q, "\"id\"", ""));
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("reading the source") && err.contains("integer overflow"),
        "{err}"
    );
    let m = ledger_counts(&p, ITEMS);
    assert_eq!(m["state"], "failed", "{m}");
    assert_eq!(count_of(&m, "written"), p.count("items"), "{m}");
    assert_eq!(p.count("items"), 0);
}
both!(query_that_must_sort_fails_before_writing);

// 2. A key that is not unique, or NULL, refuses the run before anything is written (exit 4),
//    naming the step, the key and an offending value.
fn bad_keys_refuse_the_run(b: Backend) {
    let p = TestProject::new(b);
    p.source_sql(
        "CREATE TABLE t (id INTEGER, code TEXT, name TEXT, qty INTEGER);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 500)
         INSERT INTO t SELECT i, 'C' || (i % 480), 'n' || i, i FROM s;
         CREATE TABLE u (id INTEGER, name TEXT, qty INTEGER);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 500)
         INSERT INTO u SELECT CASE WHEN i % 4 = 0 THEN NULL ELSE i END, 'n' || i, i FROM s;",
    );
    p.schema_step(SCHEMA, &items_schema(b), "DROP TABLE items;");
    p.data_step(ITEMS, &items_step("table = \"t\"", "\"code\"", ""));
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(ver(ITEMS)) && err.contains("code") && err.contains("not unique") && err.contains("C1"),
        "{err}"
    );
    // nothing ran: not even the schema step before it
    assert!(p.user_tables().is_empty(), "{:?}", p.user_tables());
    p.assert_states(&["pending", "pending"]);

    p.data_step(ITEMS, &items_step("table = \"u\"", "\"id\"", ""));
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("NULL in 125 row(s)"), "{err}");
    assert!(p.user_tables().is_empty());
}
both!(bad_keys_refuse_the_run);

// 2a. A source table whose key is its primary key is not read for the key check (the
//     database keeps it unique and never NULL); SQLite's TEXT PRIMARY KEY lets a NULL in, so
//     such a key is still checked and the NULL refuses the run.
#[test]
fn a_primary_key_that_holds_no_null_skips_the_key_check() {
    let p = TestProject::new(Backend::Sqlite);
    p.source_sql(
        "CREATE TABLE v (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 300)
         INSERT INTO v SELECT i, 'n' || i, i FROM s;
         CREATE TABLE w (id TEXT PRIMARY KEY, name TEXT, qty INTEGER);
         INSERT INTO w VALUES ('1', 'a', 1), (NULL, 'b', 2), ('3', 'c', 3);",
    );
    p.schema_step(SCHEMA, &items_schema(Backend::Sqlite), "DROP TABLE items;");
    p.data_step(ITEMS, &items_step("table = \"v\"", "\"id\"", ""));
    let o = p.cmd(&["up"]).env("CUTOVER_LOG", "sqlx::query=debug").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stderr(&o);
    assert!(
        !log.lines().any(|l| l.contains("GROUP BY") && l.contains("\\\"v\\\"")),
        "the key check read the table: {log}"
    );
    assert_eq!(p.count("items"), 300);

    p.ok(&["down", "--to", ver(SCHEMA), "--yes"]);
    p.data_step(ITEMS, &items_step("table = \"w\"", "\"id\"", ""));
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("NULL in 1 row(s)"), "{}", stderr(&o));
}

// 2b. A composite key pages every row although each column repeats.
fn composite_key_reads_every_row(b: Backend) {
    let p = TestProject::new(b);
    p.source_sql(
        "CREATE TABLE t (grp INTEGER, n INTEGER, name TEXT, qty INTEGER);
         WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 2499)
         INSERT INTO t SELECT i % 5, i / 5, 'n' || i, i FROM s;",
    );
    p.schema_step(SCHEMA, &items_schema(b), "DROP TABLE items;");
    let step = items_step(
        "query = \"SELECT grp * 1000 + n AS id, grp, n, name, qty FROM t\"",
        "[\"grp\", \"n\"]",
        "",
    )
    .replace("batch_size = 1000", "batch_size = 300");
    p.data_step(ITEMS, &step);
    p.ok(&["up"]);
    assert_eq!(p.count("items"), 2500);
    assert_eq!(
        p.target_sql("SELECT SUM(qty), COUNT(DISTINCT legacy_id) FROM items")
            .trim(),
        format!("{}|2500", (0..2500).sum::<i64>())
    );
    assert_books(&p, ITEMS, 2500, "items");
}
both!(composite_key_reads_every_row);

// 2c. A view source (a query) is computed once before its step: the pre-flight's key check
//     also counts it, and the step takes that count as its progress total instead of
//     counting the view again. Nobody committed to the source file since that count, so the
//     step's end reconciles the rows it read with it, without a third pass over the view
//     (2e covers a source written to in between).
fn a_view_is_counted_by_its_key_check(b: Backend) {
    let p = TestProject::new(b);
    source_rows(&p, "t", 2500);
    p.schema_step(SCHEMA, &items_schema(b), "DROP TABLE items;");
    let step = items_step(
        "query = \"SELECT id * 10 AS id, name, qty FROM t WHERE qty >= 0\"",
        "\"id\"",
        "",
    )
    .replace("batch_size = 1000", "batch_size = 300");
    p.data_step(ITEMS, &step);
    let o = p
        .cmd(&["up", "--json"])
        .env("CUTOVER_LOG", "sqlx::query=debug")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stderr(&o);
    let of_view = |l: &&str| l.contains("SELECT id * 10 AS id");
    let key_checks = log.lines().filter(of_view).filter(|l| l.contains("GROUP BY")).count();
    let counts = log
        .lines()
        .filter(of_view)
        .filter(|l| l.contains("SELECT COUNT(*) FROM (") && !l.contains("GROUP BY"))
        .count();
    assert_eq!(key_checks, 1, "one key-check pass: {log}");
    assert_eq!(counts, 0, "no count at the step's end: {log}");
    let totals: Vec<u64> = stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.pointer("/progress/rows_total").and_then(|t| t.as_u64()))
        .collect();
    assert!(!totals.is_empty(), "no progress event: {}", stdout(&o));
    assert!(totals.iter().all(|t| *t == 2500), "totals {totals:?}");
    assert_books(&p, ITEMS, 2500, "items");
}
both!(a_view_is_counted_by_its_key_check);

// 2e. A row committed to the source after the pre-flight counted a view, before the view's
//     step reads it: the count the pre-flight took no longer holds, so the step counts its
//     source again at its end and the books balance with the row it read. (Had it trusted the
//     pre-flight's 2500, the run would have failed; had the count missed rows, it would have
//     called a short read whole.)
/// A project of two data steps: `others` from table `u` (`u_rows` rows, `first_batch` a batch),
/// then `items` from the view `view` over `t` (2500 rows).
fn a_table_step_then_a_view_step(b: Backend, u_rows: u32, first_batch: u32, view: &str) -> TestProject {
    let p = TestProject::new(b);
    source_rows(&p, "t", 2500);
    source_rows(&p, "u", u_rows);
    let schema = format!("{}{}", items_schema(b), items_schema(b).replace("items", "others"));
    p.schema_step(SCHEMA, &schema, "DROP TABLE others; DROP TABLE items;");
    let first = items_step("table = \"u\"", "\"id\"", "")
        .replace("batch_size = 1000", &format!("batch_size = {first_batch}"))
        .replace("table = \"items\"", "table = \"others\"")
        .replace("map = \"items\"", "map = \"others\"");
    p.data_step(ITEMS, &first);
    let view =
        items_step(&format!("query = \"{view}\""), "\"id\"", "").replace("batch_size = 1000", "batch_size = 300");
    p.data_step(MORE, &view);
    p
}

fn a_commit_to_the_source_is_counted_again(b: Backend) {
    // The first step reads a table in small pages: the test holds it between two pages.
    let p = a_table_step_then_a_view_step(b, 20000, 100, "SELECT id * 10 AS id, name, qty FROM t WHERE qty >= 0");
    let checkpointed = |version: &str| {
        p.try_target_sql(&format!(
            "SELECT COALESCE(SUM(rows_read), 0) FROM cutover_checkpoints WHERE version = '{}'",
            ver(version)
        ))
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0)
    };
    // The log goes to a file: a pipe nobody reads until the end would stop the run when full.
    let log_path = p.path().join("up.log");
    let mut child = p
        .cmd(&["up"])
        .env("CUTOVER_LOG", "sqlx::query=debug,cutover=info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let reached = common::wait_until(Duration::from_secs(120), Duration::from_millis(5), || {
        checkpointed(ITEMS) >= 300 || child.try_wait().ok().flatten().is_some()
    });
    if !reached {
        let _ = child.kill();
    }
    assert!(reached, "the first step wrote nothing in 120 s");
    // The first step is past the pre-flight and waits at its next page while this commits.
    support::SqliteLock::exclusive(&p.path().join("source.db"))
        .commit("INSERT INTO t VALUES (2501, 'item 2501', 2501);");
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "{log}");
    let counts = log
        .lines()
        .filter(|l| {
            l.contains("SELECT id * 10 AS id") && l.contains("SELECT COUNT(*) FROM (") && !l.contains("GROUP BY")
        })
        .count();
    assert_eq!(counts, 1, "the view counted again at its step's end: {log}");
    // The view's stream, opened while the first step closed, is not taken on trust either:
    // the step reads the source afresh.
    assert!(
        log.contains("its stream opened ahead is read again") && !log.contains("reads the source stream opened while"),
        "{log}"
    );
    assert_eq!(src_count(&p, "SELECT COUNT(*) FROM t"), 2501);
    assert_books(&p, MORE, 2501, "items");
    assert_books(&p, ITEMS, 20000, "others");
}
both!(a_commit_to_the_source_is_counted_again);

// 2f. A view step after a batch step reads the stream opened while that step closed (the
//     view computed beside the step's key and index work): every row of the view once, the
//     books balanced. The source unchanged since the pre-flight is what lets it.
fn a_view_opened_ahead_is_read_whole(b: Backend) {
    // Ordered by something else than its key: the view is sorted whole before its first row.
    let p = a_table_step_then_a_view_step(
        b,
        3000,
        1000,
        "SELECT id * 10 AS id, name, qty FROM t WHERE qty >= 0 ORDER BY name DESC",
    );
    let o = p.cmd(&["up"]).env("CUTOVER_LOG", "cutover=info").output().unwrap();
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "step {}: reads the source stream opened while the step before closed",
            ver(MORE)
        )),
        "{log}"
    );
    assert_books(&p, MORE, 2500, "items");
    assert_books(&p, ITEMS, 3000, "others");
    // Every row of the view, once: legacy ids 10..25000 by tens.
    assert_eq!(
        p.target_sql("SELECT COUNT(DISTINCT legacy_id), MIN(legacy_id), MAX(legacy_id), SUM(legacy_id) FROM items")
            .trim()
            .replace(['|', ' '], ","),
        "2500,10,25000,31262500"
    );
}
both!(a_view_opened_ahead_is_read_whole);

// 2d. A key column named like the key check's own count column is checked all the same: a
//     unique one passes, a repeated one is refused before anything is written.
fn a_key_named_cutover_n_is_checked(b: Backend) {
    let p = TestProject::new(b);
    source_rows(&p, "t", 300);
    p.schema_step(SCHEMA, &items_schema(b), "DROP TABLE items;");
    let step = |query: &str| items_step(&format!("query = \"{query}\""), "\"cutover_n\"", "");
    p.data_step(ITEMS, &step("SELECT id, id AS cutover_n, name, qty FROM t"));
    p.ok(&["up"]);
    assert_books(&p, ITEMS, 300, "items");
    p.ok(&["down", "--to", ver(SCHEMA), "--yes"]);
    p.data_step(ITEMS, &step("SELECT id, id % 299 AS cutover_n, name, qty FROM t"));
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("is not unique: 1 appears in 2 rows"),
        "{}",
        stderr(&o)
    );
    assert_eq!(p.count("items"), 0);
}
both!(a_key_named_cutover_n_is_checked);

// 5 and 13. Rows the target refuses (a word into an integer column, NULL into NOT NULL, a
//    CHECK violation, a NUL byte on PostgreSQL) are rejects naming key and column; the rest
//    of their batch is written with --continue-on-error; without it the step stops on the row.
fn refused_rows_become_rejects(b: Backend) {
    let p = TestProject::new(b);
    source_rows(&p, "t", 3000);
    p.source_sql(
        "UPDATE t SET qty = 'lots-of-it' WHERE id = 700;
         UPDATE t SET qty = NULL WHERE id = 1500;
         UPDATE t SET qty = -5 WHERE id = 2200;
         UPDATE t SET name = 'nul' || char(0) || 'byte' WHERE id = 2900;",
    );
    p.schema_step(SCHEMA, &items_schema(b), "DROP TABLE items;");
    p.data_step(ITEMS, &items_step("table = \"t\"", "\"id\"", ""));

    // Without continue-on-error: stop on the first bad row, nothing of its batch written.
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("700") && err.contains("qty"), "{err}");
    assert_eq!(p.count("items"), 0);

    p.ok(&["up", "--continue-on-error"]);
    let mut bad: Vec<i64> = vec![700, 1500, 2200];
    if b == Backend::Postgres {
        bad.push(2900);
    }
    let rs = rejects(&p);
    let mut keys: Vec<i64> = rs
        .iter()
        .map(|r| r["source_key"].as_str().unwrap_or("").parse().unwrap_or(-1))
        .collect();
    keys.sort();
    assert_eq!(keys, bad, "{rs:#?}");
    for r in &rs {
        let field = r["field"].as_str().unwrap_or("");
        let want = if r["source_key"] == "2900" { "name" } else { "qty" };
        assert_eq!(field, want, "{r}");
        let reason = r["reason"].as_str().unwrap_or("");
        assert!(reason.contains("refused") || reason.contains("NUL byte"), "{r}");
    }
    assert_books(&p, ITEMS, 3000, "items");
    let missing = p.target_sql(&format!(
        "SELECT COUNT(*) FROM items WHERE legacy_id IN ({})",
        bad.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(",")
    ));
    assert_eq!(missing.trim(), "0");
    // every good row arrived with its own values
    let sum: i64 = (1..=3000).filter(|i| !bad.contains(i)).sum();
    assert_eq!(p.target_sql("SELECT SUM(qty) FROM items").trim(), sum.to_string());
    p.ok(&["verify"]);
}
both!(refused_rows_become_rejects);

// 7. Pre-flight: a broken step.toml and a missing source table in later steps refuse the
//    run before the first write, each named with its file, and the refusal is recorded.
fn preflight_finds_every_problem_first(b: Backend) {
    let p = TestProject::new(b);
    source_rows(&p, "t", 100);
    p.schema_step(SCHEMA, &items_schema(b), "DROP TABLE items;");
    p.data_step(ITEMS, &items_step("table = \"t\"", "\"id\"", ""));
    p.data_step(MORE, &items_step("table = \"no_such_table\"", "\"id\"", ""));
    p.data_step(LAST, &items_step("table = \"t\"", "\"id\"", "batch_sise = 3"));
    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(ver(MORE)) && err.contains("no_such_table"), "{err}");
    assert!(
        err.contains(ver(LAST)) && err.contains("batch_sise") && err.contains("step.toml"),
        "{err}"
    );
    assert!(!err.contains(ver(ITEMS)), "the good step is not a problem: {err}");
    assert!(
        p.user_tables().is_empty(),
        "nothing may be written: {:?}",
        p.user_tables()
    );
    let refused = p.target_sql("SELECT COUNT(*) FROM cutover_events WHERE event = 'refused'");
    assert_eq!(refused.trim(), "1");
}
both!(preflight_finds_every_problem_first);

// 17. A dry run reports every step that would fail; a real run names the steps it left.
fn dry_run_reports_every_failure(b: Backend) {
    let p = TestProject::new(b);
    source_rows(&p, "t", 3000);
    p.schema_step(SCHEMA, &items_schema(b), "DROP TABLE items;");
    let q = "query = \"SELECT id, name, CASE WHEN id = 2500 THEN abs(-9223372036854775807 - 1) ELSE qty END AS qty FROM t\"";
    p.data_step(ITEMS, &items_step(q, "\"id\"", ""));
    p.data_step(MORE, &items_step(q, "\"id\"", ""));
    p.data_step(LAST, &items_step("table = \"t\"", "\"id\"", ""));
    let o = p.run(&["up", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("2 step(s) that would fail"), "{err}");
    assert!(err.contains(ver(ITEMS)) && err.contains(ver(MORE)), "{err}");
    assert!(p.user_tables().is_empty());

    let o = p.run(&["up"]);
    assert_eq!(o.status.code(), Some(1));
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        out.contains("Not run because of this failure") && out.contains(ver(MORE)) && out.contains(ver(LAST)),
        "{out}"
    );
}
both!(dry_run_reports_every_failure);

// 15. A source table named with a reserved word is quoted.
fn reserved_word_table(b: Backend) {
    let p = TestProject::new(b);
    source_rows(&p, "references", 1200);
    p.schema_step(SCHEMA, &items_schema(b), "DROP TABLE items;");
    p.data_step(ITEMS, &items_step("table = \"references\"", "\"id\"", ""));
    p.ok(&["up"]);
    assert_books(&p, ITEMS, 1200, "items");
}
both!(reserved_word_table);

// 12. A BLOB-class value in a text column arrives as its text, never as `\x…` hex; bytes
//     that are not UTF-8 are a reject naming the column.
fn bytes_in_text_columns(b: Backend) {
    let p = TestProject::new(b);
    source_rows(&p, "t", 10);
    p.source_sql("UPDATE t SET name = X'66696c65' WHERE id = 3; UPDATE t SET name = X'66ff00' WHERE id = 5;");
    p.schema_step(SCHEMA, &items_schema(b), "DROP TABLE items;");
    p.data_step(ITEMS, &items_step("table = \"t\"", "\"id\"", ""));
    p.ok(&["up", "--continue-on-error"]);
    assert_eq!(
        p.target_sql("SELECT name FROM items WHERE legacy_id = 3").trim(),
        "file"
    );
    let hex = p.target_sql("SELECT COUNT(*) FROM items WHERE name LIKE '\\x%' OR name LIKE '66%'");
    assert_eq!(hex.trim(), "0");
    let rs = rejects(&p);
    assert_eq!(rs.len(), 1, "{rs:#?}");
    assert_eq!(rs[0]["source_key"], "5");
    assert_eq!(rs[0]["field"], "name");
    assert!(rs[0]["reason"].as_str().unwrap_or("").contains("UTF-8"), "{}", rs[0]);
    assert_books(&p, ITEMS, 10, "items");
}
both!(bytes_in_text_columns);

// "A read never ends early in silence": verify compares the source's own count with the
// ledger's, so rows the run never read fail verification.
fn verify_counts_the_source(b: Backend) {
    let p = TestProject::new(b);
    source_rows(&p, "t", 1500);
    p.schema_step(SCHEMA, &items_schema(b), "DROP TABLE items;");
    p.data_step(ITEMS, &items_step("table = \"t\"", "\"id\"", ""));
    p.ok(&["up"]);
    p.ok(&["verify"]);
    p.source_sql("INSERT INTO t VALUES (0, 'late', 1);");
    assert_eq!(src_count(&p, "SELECT COUNT(*) FROM t"), 1501);
    let o = p.run(&["verify", "--json"]);
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    let failed: Vec<String> = v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(failed, vec![format!("source rows {ITEMS}")], "{v:#}");
}
both!(verify_counts_the_source);

// 9. A PostgreSQL restart in the middle of a step: the run retries from its checkpoint in the
//    same process and ends with every row written exactly once.
#[test]
fn postgres_restart_mid_run_is_survived() {
    let mut pg = PgServer::start_private().expect("private postgres");
    let db = pg.fresh_db("restart");
    let p = TestProject::with_config(Backend::Sqlite, "");
    // Point the project at the private server instead of the shared one.
    let cfg = std::fs::read_to_string(p.path().join("cutover.toml")).expect("cfg");
    std::fs::write(p.path().join("cutover.toml"), cfg.replace("sqlite://target.db", &db)).expect("cfg");
    source_rows(&p, "t", 60_000);
    p.schema_step(SCHEMA, &items_schema(Backend::Postgres), "DROP TABLE items;");
    p.data_step(
        ITEMS,
        &items_step("table = \"t\"", "\"id\"", "").replace("batch_size = 1000", "batch_size = 500"),
    );
    let mut child = p
        .cmd(&["up"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait for the first batches, then restart the server under the run.
    let t0 = Instant::now();
    loop {
        let n = pg
            .try_psql(&db, "SELECT COUNT(*) FROM items")
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        if n >= 2000 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "the run did not start writing");
        std::thread::sleep(Duration::from_millis(50));
    }
    pg.restart().expect("restart");
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(t1.elapsed() < Duration::from_secs(120), "the run did not end");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "run failed after the restart: {err}");
    assert_eq!(
        pg.psql(&db, "SELECT COUNT(*), COUNT(DISTINCT legacy_id), SUM(qty) FROM items")
            .trim(),
        format!("60000|60000|{}", (1..=60_000i64).sum::<i64>())
    );
}

// 11. A documents step killed between writing a stored file and renaming it leaves a
//     `.<digest>.<pid>` temp file; the next run of the step removes those of dead processes
//     (and only those) before it writes.
fn partial_store_files_are_removed(b: Backend) {
    let p = TestProject::new(b);
    p.source_sql(
        "CREATE TABLE t (id INTEGER, name TEXT, qty INTEGER, doc BLOB);
         INSERT INTO t VALUES (1, 'a', 1, X'0102'), (2, 'b', 2, X'0304'), (3, 'c', 3, NULL);",
    );
    let schema = items_schema(b).replace("qty >= 0)", "qty >= 0), doc_key TEXT");
    p.schema_step(SCHEMA, &schema, "DROP TABLE items;");
    let step = format!(
        "{}\n[[fields]]\ntarget = \"doc_key\"\nsource = \"doc\"\ntransforms = [{{ store_file = {{ dir = \"docs\" }} }}]\n",
        items_step("table = \"t\"", "\"id\"", "")
    );
    p.data_step(ITEMS, &step);
    // A process that has exited: its pid is dead (and not reused within this test).
    let mut done = std::process::Command::new("true").spawn().expect("spawn true");
    let dead = done.id();
    done.wait().expect("wait");
    let shard = p.path().join("docs").join("ab");
    std::fs::create_dir_all(&shard).expect("mkdir");
    let orphan = shard.join(format!(".ab{}.{dead}", "0".repeat(62)));
    let live = shard.join(format!(".ab{}.{}", "1".repeat(62), std::process::id()));
    std::fs::write(&orphan, b"half").expect("orphan");
    std::fs::write(&live, b"in use").expect("live");
    p.ok(&["up"]);
    assert!(!orphan.exists(), "the dead run's partial file is still there");
    assert!(live.exists(), "a live process's temp file was removed");
    assert_books(&p, ITEMS, 3, "items");
    // the stored documents are there under their digests
    let keys = p.target_sql("SELECT doc_key FROM items WHERE doc_key IS NOT NULL ORDER BY legacy_id");
    let keys: Vec<&str> = keys.lines().map(|l| l.trim()).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in keys {
        assert!(p.path().join("docs").join(k).is_file(), "missing stored file {k}");
    }
}
both!(partial_store_files_are_removed);

// 1. The issue's own reproduction: a PostgreSQL `timestamptz` holding `infinity` at row 2500
//    of 5000 (batch 1000). The old decoder panicked in the reader, the step took the closed
//    channel for the end of the data and reported 2000 of 5000 rows as applied. Now every row
//    is read: `infinity` arrives as a value, and a date transform rejects it with a reason.
fn infinity_mid_read_loses_nothing(b: Backend) {
    let pg = PgServer::shared();
    let src = pg.fresh_db("infinity");
    pg.psql(
        &src,
        "CREATE TABLE t (id int PRIMARY KEY, name text, qty int, seen timestamptz);
         INSERT INTO t SELECT i, 'item ' || i, i, CASE WHEN i = 2500 THEN 'infinity'::timestamptz ELSE timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute' END FROM generate_series(1, 5000) i;",
    );
    let p = TestProject::new(b);
    let schema = items_schema(b).replace("qty >= 0)", "qty >= 0), seen TEXT");
    p.schema_step(SCHEMA, &schema, "DROP TABLE items;");
    let step = format!(
        "{}\n[[fields]]\ntarget = \"seen\"\nsource = \"seen\"\ntransforms = [\"datetime\"]\n",
        items_step("table = \"t\"", "\"id\"", "")
    );
    p.data_step(ITEMS, &step);
    let o = p.run(&["--source", &src, "up", "--continue-on-error"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(p.count("items"), 4999);
    let rs = p.json(&["--source", &src, "rejects", "list"]);
    let rs = rs.as_array().expect("rejects");
    assert_eq!(rs.len(), 1, "{rs:#?}");
    assert_eq!(rs[0]["source_key"], "2500");
    assert_eq!(rs[0]["field"], "seen");
    assert!(rs[0]["reason"].as_str().unwrap_or("").contains("infinity"), "{}", rs[0]);
    let m = ledger_counts(&p, ITEMS);
    assert_eq!(
        (
            count_of(&m, "source"),
            count_of(&m, "written"),
            count_of(&m, "rejected")
        ),
        (5000, 4999, 1),
        "{m}"
    );
    p.ok(&["--source", &src, "verify"]);
}
both!(infinity_mid_read_loses_nothing);
