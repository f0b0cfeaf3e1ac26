//! `[[embed]]`: an order with its lines. Each parent row's children (a second source query
//! joined on the parent's source key) become an array inside the parent's JSON column, read a
//! page of parents at a time. On SQLite (source and target) and on real PostgreSQL (source and
//! target): the arrays as read back from the target, pages and IN-list chunks, `max_items`,
//! a child value a transform refuses, a dry run, `rejects retry` after the source is fixed, and
//! `sync` reading the synced rows' children.

mod common;
#[macro_use]
mod support;

use common::pg::PgServer;
use serde_json::{Value as J, json};
use support::{Backend, TestProject, stderr, stdout};

const SCHEMA_DIR: &str = "20250101T090000_schema";
const ORDERS_DIR: &str = "20250101T090100_orders";
const ORDERS: &str = "20250101T090100";

/// The legacy tables, in SQL both SQLite and PostgreSQL take.
const LEGACY: &str = "CREATE TABLE orders (id INTEGER PRIMARY KEY, number TEXT, customer TEXT, updated_at TEXT);
CREATE TABLE order_lines (id INTEGER PRIMARY KEY, order_id INTEGER, line_no INTEGER, sku TEXT, qty INTEGER, price DOUBLE PRECISION, shipped_on TEXT);
CREATE TABLE order_notes (id INTEGER PRIMARY KEY, order_id INTEGER, body TEXT);
";

/// A project whose source is SQLite (`source.db`) or a fresh PostgreSQL database, with the
/// target's `orders` table (`details` a JSON column) and the orders step (`step_extra` goes
/// into the step's top level, e.g. `batch_size = 2`).
fn project(b: Backend, step_extra: &str, embed_extra: &str) -> TestProject {
    let p = TestProject::new(b);
    if b == Backend::Postgres {
        let url = PgServer::shared().fresh_db("embedsrc");
        let config = p.path().join("cutover.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text.replace("sqlite://source.db", &url)).unwrap();
        PgServer::shared().psql(&url, LEGACY);
    } else {
        p.source_sql(LEGACY);
    }
    let json = if b == Backend::Postgres { "JSONB" } else { "TEXT" };
    p.schema_step(
        SCHEMA_DIR,
        &format!(
            "CREATE TABLE orders (id VARCHAR(36) PRIMARY KEY, legacy_id VARCHAR(20) NOT NULL UNIQUE, number VARCHAR(20), details {json}, notes {json});\n"
        ),
        "DROP TABLE orders;\n",
    );
    p.data_step(ORDERS_DIR, &orders_step(step_extra, embed_extra));
    p
}

fn orders_step(step_extra: &str, embed_extra: &str) -> String {
    format!(
        r#"kind = "data"
{step_extra}
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
target = "number"
source = "number"

[[fields]]
target = "details.customer"
source = "customer"

[[embed]]
path = "details.lines"
table = "order_lines"
parent_key = "order_id"
order_by = ["line_no"]
{embed_extra}

[[embed.fields]]
target = "sku"
source = "sku"
transforms = ["trim", "upper"]

[[embed.fields]]
target = "qty"
source = "qty"

[[embed.fields]]
target = "price"
source = "price"

[[embed.fields]]
target = "shipped.on"
source = "shipped_on"
transforms = [{{ date = {{ formats = ["%d.%m.%Y"] }} }}]

[[embed]]
path = "notes"
query = "SELECT order_id, id AS note_id, body FROM order_notes"
parent_key = "order_id"
order_by = ["note_id desc"]
"#
    )
}

/// Run SQL on the project's source.
fn source_sql(p: &TestProject, sql: &str) {
    match p.backend {
        Backend::Sqlite => p.source_sql(sql),
        Backend::Postgres => {
            let config = std::fs::read_to_string(p.path().join("cutover.toml")).unwrap();
            let url = config
                .lines()
                .find_map(|l| l.trim().strip_prefix("url = \"").filter(|u| u.starts_with("postgres")))
                .map(|u| u.trim_end_matches('"').to_string())
                .expect("the source url");
            PgServer::shared().psql(&url, sql);
        }
    }
}

/// The `details` document of order `legacy_id`, as the target holds it.
fn details(p: &TestProject, legacy_id: &str) -> J {
    json_column(p, "details", legacy_id)
}

/// A JSON column of order `legacy_id`, as the target holds it.
fn json_column(p: &TestProject, column: &str, legacy_id: &str) -> J {
    let cast = if p.backend == Backend::Postgres {
        format!("{column}::text")
    } else {
        column.to_string()
    };
    let text = p.target_sql(&format!("SELECT {cast} FROM orders WHERE legacy_id = '{legacy_id}'"));
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("order {legacy_id}: {column} {text:?} is not JSON: {e}"))
}

fn status_of(p: &TestProject, version: &str) -> J {
    let v = p.json(&["status"]);
    v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["version"] == version)
        .cloned()
        .unwrap_or_else(|| panic!("no {version} in {v}"))
}

/// The step's books: (source, written, skipped, rejected); they must balance.
fn books(p: &TestProject) -> (u64, u64, u64, u64) {
    let c = status_of(p, ORDERS)["counts"].clone();
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("no counts.{k}: {c}"));
    let b = (n("source"), n("written"), n("skipped"), n("rejected"));
    assert_eq!(b.0, b.1 + b.2 + b.3, "source = written + skipped + rejected: {c}");
    b
}

fn open_rejects(p: &TestProject) -> Vec<J> {
    p.json(&["rejects", "list", "--open"])
        .as_array()
        .expect("rejects")
        .iter()
        .filter(|r| r["level"] == "error")
        .cloned()
        .collect()
}

const SEED: &str = "INSERT INTO orders VALUES (1, 'O-1', 'Ann', '2025-01-01 10:00:00'), (2, 'O-2', 'Bob', '2025-01-01 10:00:00'), (3, 'O-3', 'Cy', '2025-01-01 10:00:00');
INSERT INTO order_lines VALUES (10, 1, 3, ' c-3 ', 1, 2.5, '03.01.2025'), (11, 1, 1, 'a-1', 2, 10.0, '01.01.2025'), (12, 1, 2, 'b-2', 5, 0.75, NULL), (13, 3, 1, 'z-9', 7, 1.25, '31.12.2024');
INSERT INTO order_notes VALUES (100, 1, 'first'), (101, 1, 'second'), (102, 3, 'only');
";

/// Three orders over two pages: order 1 with three lines (stored out of line order), order 2
/// with none, order 3 with one. A dry run reports the books and writes nothing; `up` writes
/// each order with its lines in `order_by` order, typed (numbers stay numbers), transformed,
/// nested item paths as objects, and the query embed's default fields (every child column
/// but the parent key) in descending note order.
fn an_order_carries_its_lines(b: Backend) {
    let p = project(b, "batch_size = 2", "");
    source_sql(&p, SEED);

    let o = p.run(&["up", "--dry-run", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let fin = stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<J>(l).ok())
        .find(|e| e["event"] == "step_finished" && e["version"] == ORDERS)
        .unwrap_or_else(|| panic!("no step_finished for the orders: {}", stdout(&o)));
    assert_eq!(
        (fin["counts"]["source"].as_u64(), fin["counts"]["written"].as_u64()),
        (Some(3), Some(3)),
        "{fin}"
    );
    assert!(
        p.user_tables().is_empty(),
        "a dry run writes nothing: {:?}",
        p.user_tables()
    );

    p.ok(&["up"]);
    assert_eq!(books(&p), (3, 3, 0, 0));
    assert_eq!(
        details(&p, "1"),
        json!({
            "customer": "Ann",
            "lines": [
                {"sku": "A-1", "qty": 2, "price": 10.0, "shipped": {"on": "2025-01-01"}},
                {"sku": "B-2", "qty": 5, "price": 0.75, "shipped": {"on": null}},
                {"sku": "C-3", "qty": 1, "price": 2.5, "shipped": {"on": "2025-01-03"}},
            ],
        })
    );
    assert_eq!(
        json_column(&p, "notes", "1"),
        json!([{"note_id": 101, "body": "second"}, {"note_id": 100, "body": "first"}]),
        "an embed path without a dot is the whole column"
    );
    assert_eq!(
        details(&p, "2"),
        json!({"customer": "Bob", "lines": []}),
        "a parent without children gets []"
    );
    assert_eq!(json_column(&p, "notes", "2"), json!([]));
    assert_eq!(
        details(&p, "3"),
        json!({
            "customer": "Cy",
            "lines": [{"sku": "Z-9", "qty": 7, "price": 1.25, "shipped": {"on": "2024-12-31"}}],
        })
    );
    assert_eq!(json_column(&p, "notes", "3"), json!([{"note_id": 102, "body": "only"}]));
}
both!(an_order_carries_its_lines);

/// 1 200 orders with 0 to 3 lines each, in pages of 1 100 parents: the first page's children
/// are read in two IN lists (1 000 keys each at most), a page boundary falls between orders
/// 1 100 and 1 101. Every order has exactly its own lines, in order.
fn children_across_pages_and_chunks(b: Backend) {
    const N: u32 = 1200;
    let p = project(b, "batch_size = 1100", "");
    let orders: Vec<String> = (1..=N).map(|i| format!("({i}, 'O-{i}', 'C{i}', NULL)")).collect();
    let mut lines = Vec::new();
    let mut id = 0;
    for i in 1..=N {
        // Stored in reverse line order, so only ORDER BY puts them right.
        for l in (1..=i % 4).rev() {
            id += 1;
            lines.push(format!("({id}, {i}, {l}, 's{i}-{l}', {l}, {l}.5, NULL)"));
        }
    }
    source_sql(
        &p,
        &format!(
            "INSERT INTO orders VALUES {};\nINSERT INTO order_lines VALUES {};\n",
            orders.join(", "),
            lines.join(", ")
        ),
    );
    p.ok(&["up"]);
    assert_eq!(books(&p), (N as u64, N as u64, 0, 0));
    let json_len = if b == Backend::Postgres {
        "jsonb_array_length(details->'lines')"
    } else {
        "json_array_length(details, '$.lines')"
    };
    assert_eq!(
        p.target_sql(&format!("SELECT SUM({json_len}) FROM orders")).trim(),
        id.to_string(),
        "every child row is in exactly one array"
    );
    assert_eq!(
        p.target_sql(&format!(
            "SELECT COUNT(*) FROM orders WHERE {json_len} <> CAST(legacy_id AS INTEGER) % 4"
        ))
        .trim(),
        "0",
        "every order has exactly its own number of lines"
    );
    for i in [1u32, 999, 1000, 1001, 1099, 1100, 1101, 1199, 1200] {
        let got: Vec<String> = details(&p, &i.to_string())["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["sku"].as_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = (1..=i % 4).map(|l| format!("S{i}-{l}")).collect();
        assert_eq!(got, want, "order {i}");
    }
}
both!(children_across_pages_and_chunks);

/// `assess`, then `up`: an order with more lines than `max_items` is a reject (rule `embed`); an order whose line
/// has a date the `date` transform refuses is a reject naming the item (`details.lines[1].
/// shipped.on`); the books balance. After the source is fixed, `rejects retry` reads the
/// order's children again and writes it.
fn rejects_and_retry(b: Backend) {
    let p = project(b, "", "max_items = 3");
    source_sql(
        &p,
        "INSERT INTO orders VALUES (1, 'O-1', 'Ann', NULL), (2, 'O-2', 'Bob', NULL), (3, 'O-3', 'Cy', NULL);
         INSERT INTO order_lines VALUES (1, 1, 1, 'a', 1, 1, NULL), (2, 1, 2, 'b', 1, 1, NULL), (3, 1, 3, 'c', 1, 1, NULL), (4, 1, 4, 'd', 1, 1, NULL),
           (5, 2, 1, 'a', 1, 1, '01.01.2025'), (6, 2, 2, 'b', 1, 1, '31.02.2025'),
           (7, 3, 1, 'a', 1, 1, NULL);",
    );
    // assess predicts the same: one written, one `embed` and one `date` reject.
    let a = p.json(&["assess"]);
    let step = a["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["version"] == ORDERS))
        .unwrap_or_else(|| panic!("no orders step in {a}"));
    assert_eq!(step["would_write"].as_u64(), Some(1), "{step}");
    assert_eq!(step["rejects_by_rule"], json!({"embed": 1, "date": 1}), "{step}");

    let o = p.run(&["up", "--continue-on-error"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(books(&p), (3, 1, 0, 2));
    assert_eq!(p.count("orders"), 1);
    let rejects = open_rejects(&p);
    let by_key = |k: &str| {
        rejects
            .iter()
            .find(|r| r["source_key"] == k)
            .unwrap_or_else(|| panic!("no reject of order {k}: {rejects:?}"))
            .clone()
    };
    let too_many = by_key("1");
    assert_eq!(
        (too_many["rule"].as_str(), too_many["field"].as_str()),
        (Some("embed"), Some("details.lines")),
        "{too_many}"
    );
    assert!(
        too_many["reason"]
            .as_str()
            .unwrap()
            .contains("4 items, over max_items = 3"),
        "{too_many}"
    );
    let bad_date = by_key("2");
    assert_eq!(
        (bad_date["rule"].as_str(), bad_date["field"].as_str()),
        (Some("date"), Some("details.lines[1].shipped.on")),
        "{bad_date}"
    );
    assert!(
        bad_date["reason"].as_str().unwrap().contains("31.02.2025"),
        "{bad_date}"
    );

    // Fix the source's line and retry: the children are read again.
    source_sql(&p, "UPDATE order_lines SET shipped_on = '28.02.2025' WHERE id = 6;");
    let id = bad_date["id"].as_i64().unwrap().to_string();
    let r = p.json(&["rejects", "retry", &id]);
    assert_eq!(r["written"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(
        details(&p, "2")["lines"],
        json!([
            {"sku": "A", "qty": 1, "price": 1.0, "shipped": {"on": "2025-01-01"}},
            {"sku": "B", "qty": 1, "price": 1.0, "shipped": {"on": "2025-02-28"}},
        ])
    );
    assert_eq!(books(&p), (3, 2, 0, 1));

    // Still too many lines: retried, still rejected with the same rule.
    let id = too_many["id"].as_i64().unwrap().to_string();
    let o = p.run(&["rejects", "retry", &id, "--json"]);
    let r: J = serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    assert_eq!(r["written"].as_array().map(Vec::len), Some(0), "{r}");
    assert!(
        r["still_rejected"][0][1]
            .as_str()
            .unwrap_or("")
            .contains("4 items, over max_items = 3"),
        "{r}"
    );
    assert_eq!(books(&p), (3, 2, 0, 1));
}
both!(rejects_and_retry);

/// `sync`: a parent whose row changed is written again with its children as they are now
/// (a line added since `up` is in the array).
#[test]
fn sync_reads_the_children_of_synced_rows() {
    let p = TestProject::new(Backend::Sqlite);
    p.source_sql(LEGACY);
    p.schema_step(
        SCHEMA_DIR,
        "CREATE TABLE orders (id VARCHAR(36) PRIMARY KEY, legacy_id VARCHAR(20) NOT NULL UNIQUE, number VARCHAR(20), details TEXT, notes TEXT);\n",
        "DROP TABLE orders;\n",
    );
    p.data_step(
        ORDERS_DIR,
        &orders_step("", "").replacen("[[fields]]", "[sync]\ncursor = \"updated_at\"\n\n[[fields]]", 1),
    );
    p.source_sql(SEED);
    p.ok(&["up"]);
    assert_eq!(details(&p, "3")["lines"].as_array().map(Vec::len), Some(1));
    p.source_sql(
        "INSERT INTO order_lines VALUES (14, 3, 2, 'y-8', 1, 3.0, NULL);
         UPDATE orders SET updated_at = '2025-01-02 10:00:00' WHERE id = 3;",
    );
    p.ok(&["sync", "--once"]);
    assert_eq!(
        details(&p, "3")["lines"],
        json!([
            {"sku": "Z-9", "qty": 7, "price": 1.25, "shipped": {"on": "2024-12-31"}},
            {"sku": "Y-8", "qty": 1, "price": 3.0, "shipped": {"on": null}},
        ])
    );
    assert_eq!(details(&p, "1")["lines"].as_array().map(Vec::len), Some(3));
}

/// Refusals when the step is loaded (`up` stops before it reads a row), each saying what is
/// wrong.
#[test]
fn bad_embeds_are_refused_when_the_step_loads() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[(
                "table = \"order_lines\"\nparent_key",
                "table = \"order_lines\"\nquery = \"SELECT 1\"\nparent_key",
            )],
            "has table and query; give one",
        ),
        (
            &[(
                "parent_key = \"order_id\"\norder_by = [\"line_no\"]",
                "parent_key = \"\"",
            )],
            "parent_key must name",
        ),
        (
            &[(
                "transforms = [\"trim\", \"upper\"]",
                "transforms = [{ lookup = { map = \"skus\" } }]",
            )],
            "lookup is not available",
        ),
        (
            &[
                ("key = \"id\"", "key = [\"id\", \"number\"]"),
                ("map = \"orders\"", "map = \"orders\"\nkey = \"id\""),
            ],
            "must be one column",
        ),
        (
            &[("table = \"orders\"\nkey = \"id\"\n", "file = \"orders.csv\"\n")],
            "[[embed]] reads the source database; this step reads a file",
        ),
    ];
    for (edits, says) in cases {
        let p = TestProject::new(Backend::Sqlite);
        p.source_sql(LEGACY);
        let mut step = orders_step("", "");
        for (from, to) in edits {
            assert!(step.contains(from), "{from}");
            step = step.replacen(from, to, 1);
        }
        let to = edits[0].1;
        p.data_step(ORDERS_DIR, &step);
        let o = p.run(&["up"]);
        let text = format!("{}{}", stdout(&o), stderr(&o));
        assert!(!o.status.success(), "{to}: up succeeded: {text}");
        assert!(text.contains(says), "{to}: {text}");
    }
}

/// A query source is read as one ordered stream; the children of each of its pages are read
/// beside it, on the same source.
fn a_query_source_reads_children_beside_its_stream(b: Backend) {
    let p = project(b, "batch_size = 2", "");
    p.data_step(
        ORDERS_DIR,
        &orders_step("batch_size = 2", "").replacen(
            "table = \"orders\"\nkey",
            "query = \"SELECT id, number, customer FROM orders WHERE id <> 2\"\nkey",
            1,
        ),
    );
    source_sql(&p, SEED);
    p.ok(&["up"]);
    assert_eq!(books(&p), (2, 2, 0, 0));
    let skus = |id: &str| -> Vec<String> {
        details(&p, id)["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["sku"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(skus("1"), ["A-1", "B-2", "C-3"]);
    assert_eq!(skus("3"), ["Z-9"]);
}
both!(a_query_source_reads_children_beside_its_stream);
