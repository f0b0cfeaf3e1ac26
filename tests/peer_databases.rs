//! pgloader's own SQLite test databases (`fixtures/pgloader-sqlite/`, see its README) copied
//! table by table into a SQLite and a PostgreSQL target with `--continue-on-error`, through a
//! project generated from each database's schema.
//!
//! Per table, from independent counts (sqlite3 on the source, psql/sqlite3 on the target,
//! `rejects list --json` for the reject store, `status --json` for the ledger):
//! - source rows = written + skipped + rejected, and target rows = written;
//! - every reject names its source key and its column;
//! - no text cell of the target starts with `\x` unless the source's text did (a byte string
//!   must not arrive as the COPY encoder's hex);
//! - blobs arrive byte-identical;
//! - Chinook's content arrives exact (every column of every table, in key order).
//!
//! Every violation is collected and the test fails once with all of them, so one run lists
//! everything that is wrong with a database. A failed step stops the run and leaves the later
//! tables pending; to see what those do, leave tables out with
//! `CUTOVER_PEER_SKIP=stamps,products cargo test --test peer_databases` (a diagnosis aid: CI
//! runs every table).

mod common;
#[macro_use]
mod support;

use common::pg::PgServer;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Backend, TestProject, stderr, stdout};

/// A source table as `PRAGMA table_info` describes it.
#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<Column>,
    /// Primary key columns in key order (empty when the table has none).
    pk: Vec<String>,
    /// The primary key holds no NULL and no duplicate (SQLite allows both in a PRIMARY KEY
    /// that is not an INTEGER rowid alias: sqlite.db's `autoinc` has three NULL ids).
    pk_valid: bool,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    /// The declared type, as written in CREATE TABLE (may be empty).
    decl: String,
}

impl Table {
    /// One valid primary key column: the step pages on it. Otherwise (none, composite, or
    /// holding NULLs or duplicates, which cutover rightly refuses as a key) the step reads
    /// `rowid AS cutover_rowid` and pages on that.
    fn single_key(&self) -> Option<&str> {
        match self.pk.as_slice() {
            [k] if self.pk_valid => Some(k.as_str()),
            _ => None,
        }
    }

    /// The target's natural key: the primary key when it is valid, else `cutover_rowid`.
    fn natural_key(&self) -> Vec<String> {
        if self.has_rowid_column() {
            vec![ROWID.to_string()]
        } else {
            self.pk.clone()
        }
    }

    /// The target gets a `cutover_rowid` column when the source has no valid primary key.
    fn has_rowid_column(&self) -> bool {
        self.pk.is_empty() || !self.pk_valid
    }

    fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

const ROWID: &str = "cutover_rowid";

/// Target type on PostgreSQL, from the declared SQLite type (SQLite's own affinity order:
/// INT first, then text-like, then BLOB, then REAL-like).
fn pg_type(decl: &str) -> String {
    let d = decl.to_ascii_uppercase();
    if d.contains("INT") {
        "bigint".into()
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        "text".into()
    } else if d.contains("BLOB") {
        "bytea".into()
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        "double precision".into()
    } else if d.starts_with("NUMERIC") || d.starts_with("DECIMAL") {
        // numeric(p,s) keeps its precision and scale; a bare NUMERIC stays unconstrained.
        match (d.find('('), d.find(')')) {
            (Some(a), Some(b)) if a < b => format!("numeric({})", d[a + 1..b].replace(' ', "")),
            _ => "numeric".into(),
        }
    } else if d.contains("DATE") || d.contains("TIME") {
        "timestamp".into()
    } else {
        "text".into()
    }
}

fn is_blob(decl: &str) -> bool {
    pg_type(decl) == "bytea"
}

fn is_text(decl: &str) -> bool {
    pg_type(decl) == "text"
}

/// The target column of a source column: the same name, except that PostgreSQL truncates
/// identifiers to 63 bytes (collision.db has two columns that differ only after that), so a
/// longer name keeps 54 bytes and gets a hash of the whole name.
fn target_col(b: Backend, name: &str) -> String {
    if b == Backend::Sqlite || name.len() <= 63 {
        return name.to_string();
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, c| {
        (h ^ c as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut cut = 54;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{:08x}", &name[..cut], hash as u32)
}

fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn sq(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn fixture(db: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/pgloader-sqlite")
        .join(db)
}

/// Rows of a query as JSON objects (`sqlite3 -json`; no rows prints nothing).
fn sqlite_json(db: &Path, sql: &str) -> Vec<serde_json::Map<String, Value>> {
    let o = Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg("-json")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 (apt-get install sqlite3)");
    assert!(
        o.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    if text.trim().is_empty() {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("sqlite3 -json ({e}): {text}"));
    v.as_array()
        .expect("an array of rows")
        .iter()
        .map(|r| r.as_object().expect("a row object").clone())
        .collect()
}

fn tables_of(db: &Path) -> Vec<Table> {
    let names = sqlite_json(
        db,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
    );
    names
        .iter()
        .map(|n| {
            let name = n["name"].as_str().expect("table name").to_string();
            let info = sqlite_json(db, &format!("PRAGMA table_info({})", q(&name)));
            let columns = info
                .iter()
                .map(|c| Column {
                    name: c["name"].as_str().expect("column name").to_string(),
                    decl: c["type"].as_str().unwrap_or("").to_string(),
                })
                .collect();
            let mut pk: Vec<(i64, String)> = info
                .iter()
                .filter(|c| c["pk"].as_i64().unwrap_or(0) > 0)
                .map(|c| {
                    (
                        c["pk"].as_i64().unwrap_or(0),
                        c["name"].as_str().expect("column name").to_string(),
                    )
                })
                .collect();
            pk.sort();
            let pk: Vec<String> = pk.into_iter().map(|(_, n)| n).collect();
            let pk_valid = pk.is_empty() || {
                let cols = pk.iter().map(|k| q(k)).collect::<Vec<_>>().join(", ");
                let nulls = pk
                    .iter()
                    .map(|k| format!("{} IS NULL", q(k)))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                let bad = sqlite_json(
                    db,
                    &format!(
                        "SELECT (SELECT count(*) FROM {t} WHERE {nulls}) + \
                         (SELECT count(*) FROM (SELECT 1 FROM {t} GROUP BY {cols} HAVING count(*) > 1)) AS n",
                        t = q(&name)
                    ),
                );
                bad.first().and_then(|r| r["n"].as_i64()) == Some(0)
            };
            Table {
                name,
                columns,
                pk,
                pk_valid,
            }
        })
        .collect()
}

fn version(i: usize) -> String {
    format!("20250101T{:02}{:02}{:02}", 10 + i / 3600, (i / 60) % 60, i % 60)
}

fn folder_name(table: &str) -> String {
    table
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The target's CREATE TABLE: every column with its mapped type (PostgreSQL) or its declared
/// type (SQLite), plus `cutover_rowid` when the source has no primary key.
fn create_table(b: Backend, t: &Table) -> String {
    let mut cols: Vec<String> = Vec::new();
    if t.has_rowid_column() {
        cols.push(format!("{} bigint NOT NULL UNIQUE", q(ROWID)));
    }
    for c in &t.columns {
        let ty = match b {
            Backend::Postgres => pg_type(&c.decl),
            Backend::Sqlite => c.decl.clone(),
        };
        cols.push(format!("{} {ty}", q(&target_col(b, &c.name))).trim_end().to_string());
    }
    format!("CREATE TABLE {} (\n  {}\n);\n", q(&t.name), cols.join(",\n  "))
}

fn step_toml(b: Backend, t: &Table) -> String {
    let mut s = String::from("kind = \"data\"\n");
    s.push_str(&format!(
        "description = {}\n\n[source]\n",
        sq(&format!("{} -> {}", t.name, t.name))
    ));
    match t.single_key() {
        Some(k) => {
            s.push_str(&format!("table = {}\nkey = {}\n", toml_str(&t.name), toml_str(k)));
        }
        None => {
            // No single primary key: page on the rowid, which `SELECT *` does not return.
            s.push_str(&format!(
                "query = {}\nkey = {}\nname = {}\n",
                toml_str(&format!("SELECT rowid AS {ROWID}, * FROM {}", q(&t.name))),
                toml_str(ROWID),
                toml_str(&t.name)
            ));
        }
    }
    let natural = t.natural_key();
    s.push_str(&format!(
        "\n[target]\ntable = {}\nnatural_key = [{}]\n",
        toml_str(&t.name),
        natural.iter().map(|n| toml_str(n)).collect::<Vec<_>>().join(", ")
    ));
    if t.has_rowid_column() {
        s.push_str(&format!(
            "\n[[fields]]\ntarget = {}\nsource = {}\n",
            toml_str(ROWID),
            toml_str(ROWID)
        ));
    }
    for c in &t.columns {
        s.push_str(&format!(
            "\n[[fields]]\ntarget = {}\nsource = {}\n",
            toml_str(&target_col(b, &c.name)),
            toml_str(&c.name)
        ));
    }
    s
}

fn toml_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A project copying every table of `db`: one schema step, one data step per table.
fn project(b: Backend, db: &str, tables: &[Table]) -> (TestProject, Vec<(String, Table)>) {
    let p = TestProject::new(b);
    std::fs::copy(fixture(db), p.path().join("source.db")).expect("copy the fixture");
    let up: String = tables.iter().map(|t| create_table(b, t)).collect();
    let down: String = tables
        .iter()
        .rev()
        .map(|t| format!("DROP TABLE {};\n", q(&t.name)))
        .collect();
    p.schema_step(&format!("{}_schema", version(0)), &up, &down);
    let mut steps = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let v = version(i + 1);
        p.data_step(&format!("{v}_{}", folder_name(&t.name)), &step_toml(b, t));
        steps.push((v, t.clone()));
    }
    (p, steps)
}

fn source_count(p: &TestProject, t: &Table) -> i64 {
    let rows = sqlite_json(
        &p.path().join("source.db"),
        &format!("SELECT count(*) AS n FROM {}", q(&t.name)),
    );
    rows.first().and_then(|r| r["n"].as_i64()).expect("a count")
}

fn target_count(p: &TestProject, t: &Table) -> Result<i64, String> {
    let sql = format!("SELECT count(*) FROM {}", q(&t.name));
    p.try_target_sql(&sql)
        .ok_or_else(|| format!("cannot count {} on the target", t.name))?
        .trim()
        .parse()
        .map_err(|e| format!("count of {}: {e}", t.name))
}

/// Rows of a SELECT on the target as JSON objects, in the order given.
fn target_rows(p: &TestProject, select: &str) -> Vec<serde_json::Map<String, Value>> {
    match p.backend {
        Backend::Sqlite => sqlite_json(&p.path().join("target.db"), select),
        Backend::Postgres => {
            let out = PgServer::shared().psql(
                &p.target_url,
                &format!("SELECT coalesce(json_agg(x), '[]') FROM ({select}) x"),
            );
            let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("psql json ({e}): {out}"));
            v.as_array()
                .expect("an array")
                .iter()
                .map(|r| r.as_object().expect("a row object").clone())
                .collect()
        }
    }
}

/// A cell, comparable across SQLite and PostgreSQL: numbers as f64, timestamps with a space
/// between date and time.
fn normal(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map(Value::from).unwrap_or(Value::Null),
        Value::String(s) => {
            let b = s.as_bytes();
            if b.len() >= 19 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' {
                Value::String(format!("{} {}", &s[..10], &s[11..]))
            } else {
                Value::String(s.clone())
            }
        }
        other => other.clone(),
    }
}

/// `SELECT` of every column (blobs as upper-case hex) ordered by the primary key.
fn content_select(b: Backend, t: &Table, source: bool) -> String {
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            // Read under the source's name on both sides.
            let col = if source { q(&c.name) } else { q(&target_col(b, &c.name)) };
            let alias = q(&c.name);
            match (is_blob(&c.decl), source || b == Backend::Sqlite) {
                (true, true) => format!("hex({col}) AS {alias}"),
                (true, false) => format!("upper(encode({col}, 'hex')) AS {alias}"),
                (false, _) => format!("{col} AS {alias}"),
            }
        })
        .collect();
    let order: Vec<String> = if t.has_rowid_column() {
        vec![if source { "rowid".to_string() } else { q(ROWID) }]
    } else {
        t.pk.iter().map(|k| q(k)).collect()
    };
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        cols.join(", "),
        q(&t.name),
        order.join(", ")
    )
}

/// Check one database on one backend; returns every violation found.
fn check_database(b: Backend, db: &str, exact_content: bool) -> Vec<String> {
    let skip: Vec<String> = std::env::var("CUTOVER_PEER_SKIP")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let tables: Vec<Table> = tables_of(&fixture(db))
        .into_iter()
        .filter(|t| !skip.contains(&t.name))
        .collect();
    assert!(!tables.is_empty(), "{db} has no tables");
    let (p, steps) = project(b, db, &tables);
    let mut problems: Vec<String> = Vec::new();

    let o = p.run(&["up", "--continue-on-error"]);
    if !o.status.success() {
        problems.push(format!(
            "`cutover up --continue-on-error` exited {:?}; stderr: {}",
            o.status.code(),
            one_line(&stderr(&o))
        ));
    }
    let up_out = stdout(&o);

    let status = p.json(&["status"]);
    let ledger: BTreeMap<String, Value> = status["migrations"]
        .as_array()
        .expect("migrations")
        .iter()
        .map(|m| (m["version"].as_str().unwrap_or("").to_string(), m.clone()))
        .collect();
    let rejects = p.json(&["rejects", "list"]);
    let rejects = rejects.as_array().cloned().unwrap_or_default();

    for (v, t) in &steps {
        let name = &t.name;
        let m = ledger.get(v).cloned().unwrap_or(Value::Null);
        let state = m["state"].as_str().unwrap_or("?").to_string();
        let n = |k: &str| m["counts"][k].as_i64().unwrap_or(0);
        let source = source_count(&p, t);
        if state != "applied" {
            problems.push(format!(
                "{name}: step {v} is {state}, not applied{}",
                m["error"]
                    .as_str()
                    .map(|e| format!(" ({})", one_line(e)))
                    .unwrap_or_default()
            ));
        }
        let target = match target_count(&p, t) {
            Ok(n) => n,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        let mine: Vec<&Value> = rejects
            .iter()
            .filter(|r| r["step"] == v.as_str() && r["level"] == "error")
            .collect();
        let rejected = mine.len() as i64;
        let skipped = n("skipped");
        if source != target + skipped + rejected {
            problems.push(format!(
                "{name}: source {source} != target rows {target} + skipped {skipped} + rejects {rejected} \
                 (ledger: source {} written {} skipped {} rejected {})",
                n("source"),
                n("written"),
                n("skipped"),
                n("rejected")
            ));
        }
        if target != n("written") {
            problems.push(format!(
                "{name}: target rows {target} != ledger written {}",
                n("written")
            ));
        }
        if n("source") != source {
            problems.push(format!(
                "{name}: ledger source {} != the source's own count {source}",
                n("source")
            ));
        }
        for r in &mine {
            let key = r["source_key"].as_str().unwrap_or("");
            let field = r["field"].as_str().unwrap_or("");
            if key.is_empty() || t.column(field).is_none() {
                problems.push(format!(
                    "{name}: reject {} does not name its source key and column (key {:?}, field {:?}): {}",
                    r["id"],
                    key,
                    r["field"],
                    one_line(r["reason"].as_str().unwrap_or(""))
                ));
            }
        }
        // A byte string must not arrive as `\x…` text.
        for c in t.columns.iter().filter(|c| is_text(&c.decl)) {
            let col = q(&c.name);
            let tcol = q(&target_col(b, &c.name));
            let in_source = sqlite_json(
                &p.path().join("source.db"),
                &format!(
                    "SELECT count(*) AS n FROM {} WHERE typeof({col}) = 'text' AND substr({col}, 1, 2) = '\\x'",
                    q(name)
                ),
            )
            .first()
            .and_then(|r| r["n"].as_i64())
            .unwrap_or(0);
            let sql = match b {
                Backend::Postgres => format!("SELECT count(*) FROM {} WHERE left({tcol}, 2) = '\\x'", q(name)),
                Backend::Sqlite => format!(
                    "SELECT count(*) FROM {} WHERE typeof({tcol}) = 'text' AND substr({tcol}, 1, 2) = '\\x'",
                    q(name)
                ),
            };
            let in_target: i64 = p.try_target_sql(&sql).and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            if in_target > in_source {
                let sample = p
                    .try_target_sql(&format!(
                        "SELECT {tcol} FROM {} WHERE {} LIMIT 1",
                        q(name),
                        match b {
                            Backend::Postgres => format!("left({tcol}, 2) = '\\x'"),
                            Backend::Sqlite => format!("substr({tcol}, 1, 2) = '\\x'"),
                        }
                    ))
                    .unwrap_or_default();
                problems.push(format!(
                    "{name}.{}: {in_target} text cells start with \\x (the source has {in_source}), e.g. {sample}",
                    c.name
                ));
            }
        }
        let blobs: Vec<&Column> = t.columns.iter().filter(|c| is_blob(&c.decl)).collect();
        if exact_content || !blobs.is_empty() {
            let src = sqlite_json(&p.path().join("source.db"), &content_select(b, t, true));
            let dst = target_rows(&p, &content_select(b, t, false));
            let columns: Vec<&Column> = if exact_content {
                t.columns.iter().collect()
            } else {
                blobs
            };
            compare_rows(name, &src, &dst, &columns, exact_content, &mut problems);
        }
    }
    if !problems.is_empty() {
        problems.push(format!("(stdout of up: {})", one_line(&up_out)));
    }
    problems
}

/// Chinook (every table and column) is compared row by row; elsewhere only the blobs of the
/// rows that were written.
fn compare_rows(
    table: &str,
    src: &[serde_json::Map<String, Value>],
    dst: &[serde_json::Map<String, Value>],
    columns: &[&Column],
    all_rows: bool,
    problems: &mut Vec<String>,
) {
    if all_rows && src.len() != dst.len() {
        problems.push(format!("{table}: {} source rows, {} target rows", src.len(), dst.len()));
        return;
    }
    let mut differences = 0;
    let mut first: Option<String> = None;
    if all_rows {
        for (i, (s, d)) in src.iter().zip(dst).enumerate() {
            for c in columns {
                let (a, b) = (
                    normal(s.get(&c.name).unwrap_or(&Value::Null)),
                    normal(d.get(&c.name).unwrap_or(&Value::Null)),
                );
                if a != b {
                    differences += 1;
                    first.get_or_insert_with(|| format!("row {i} {}: source {a} target {b}", c.name));
                }
            }
        }
    } else {
        // Blobs: every target row's blob equals the source's at the same position of the
        // key order (rows that were rejected are missing on the target, so match by content
        // of the other columns is not possible in general; compare the multiset).
        for c in columns {
            let mut a: Vec<String> = src
                .iter()
                .map(|r| r.get(&c.name).unwrap_or(&Value::Null).to_string())
                .collect();
            let mut b: Vec<String> = dst
                .iter()
                .map(|r| r.get(&c.name).unwrap_or(&Value::Null).to_string())
                .collect();
            a.sort();
            b.sort();
            for v in &b {
                if let Ok(i) = a.binary_search(v) {
                    a.remove(i);
                } else {
                    differences += 1;
                    first.get_or_insert_with(|| format!("{}: target blob {v:.80} is not in the source", c.name));
                }
            }
        }
    }
    if differences > 0 {
        problems.push(format!(
            "{table}: {differences} cells differ from the source; first: {}",
            first.unwrap_or_default()
        ));
    }
}

fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 600 {
        format!("{}…", s.chars().take(600).collect::<String>())
    } else {
        s
    }
}

fn assert_clean(b: Backend, db: &str, exact_content: bool) {
    let problems = check_database(b, db, exact_content);
    assert!(
        problems.is_empty(),
        "{db} on {b:?}: {} problems:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// `peer!(name, "file", exact_content)`: the database on SQLite and on PostgreSQL.
macro_rules! peer {
    ($name:ident, $file:expr, $exact:expr) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::assert_clean(super::Backend::Sqlite, $file, $exact)
            }
            #[test]
            fn postgres() {
                super::assert_clean(super::Backend::Postgres, $file, $exact)
            }
        }
    };
}

peer!(chinook, "Chinook_Sqlite.sqlite", true);
peer!(
    chinook_autoincrement_pks,
    "Chinook_Sqlite_AutoIncrementPKs.sqlite",
    true
);
peer!(bad_utf8, "bad-utf8.db", false);
peer!(collision, "collision.db", false);
peer!(sqlite_db, "sqlite.db", false);
peer!(storage, "storage.sqlite", false);
peer!(test_pk, "test_pk.db", false);
peer!(type_mismatch, "type-mismatch.db", false);

#[test]
fn type_mapping_follows_the_declared_types() {
    for (decl, pg) in [
        ("INTEGER", "bigint"),
        ("smallint unsigned", "bigint"),
        ("short integer", "bigint"),
        ("integer auto_increment", "bigint"),
        ("NVARCHAR(160)", "text"),
        ("character(20)", "text"),
        ("text nocase", "text"),
        ("BLOB", "bytea"),
        ("real", "double precision"),
        ("double precision", "double precision"),
        ("NUMERIC(10,2)", "numeric(10,2)"),
        ("numeric(20, 6)", "numeric(20,6)"),
        ("DATETIME", "timestamp"),
        ("TIMESTAMP", "timestamp"),
        ("", "text"),
    ] {
        assert_eq!(pg_type(decl), pg, "{decl}");
    }
    // Every fixture database is found and read.
    let sqlite = tables_of(&fixture("sqlite.db"));
    assert!(sqlite.iter().any(|t| t.name == "references" && t.pk.is_empty()));
    // autoinc's PRIMARY KEY holds NULLs: it is paged on the rowid instead.
    let autoinc = sqlite.iter().find(|t| t.name == "autoinc").expect("autoinc");
    assert!(!autoinc.pk_valid && autoinc.single_key().is_none());
    assert!(
        sqlite
            .iter()
            .find(|t| t.name == "ints")
            .is_some_and(|t| t.single_key() == Some("id"))
    );
    let chinook = tables_of(&fixture("Chinook_Sqlite.sqlite"));
    assert_eq!(chinook.len(), 11);
    let total: i64 = chinook
        .iter()
        .map(|t| {
            sqlite_json(
                &fixture("Chinook_Sqlite.sqlite"),
                &format!("SELECT count(*) AS n FROM {}", q(&t.name)),
            )[0]["n"]
                .as_i64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(total, 15_607);
}

/// The content comparison is not vacuous: a changed cell, a lost fraction and a blob that is
/// not the source's are reported; SQLite's and PostgreSQL's spellings of one value are not.
#[test]
fn content_comparison_sees_differences() {
    let row = |v: Value| v.as_object().cloned().expect("an object");
    let cols = [
        Column {
            name: "a".into(),
            decl: "INTEGER".into(),
        },
        Column {
            name: "t".into(),
            decl: "DATETIME".into(),
        },
    ];
    let cols: Vec<&Column> = cols.iter().collect();
    let src = vec![row(serde_json::json!({"a": 1, "t": "2009-01-01 00:00:00"}))];
    let mut problems = Vec::new();
    compare_rows(
        "x",
        &src,
        &[row(serde_json::json!({"a": 1.0, "t": "2009-01-01T00:00:00"}))],
        &cols,
        true,
        &mut problems,
    );
    assert!(problems.is_empty(), "{problems:?}");
    compare_rows(
        "x",
        &src,
        &[row(serde_json::json!({"a": 2, "t": "2009-01-01T00:00:00"}))],
        &cols,
        true,
        &mut problems,
    );
    compare_rows(
        "x",
        &src,
        &[row(serde_json::json!({"a": 1, "t": "2009-01-01T00:00:00.5"}))],
        &cols,
        true,
        &mut problems,
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
    let blob = [Column {
        name: "b".into(),
        decl: "BLOB".into(),
    }];
    let blob: Vec<&Column> = blob.iter().collect();
    let mut problems = Vec::new();
    compare_rows(
        "x",
        &[row(serde_json::json!({"b": "00FF"}))],
        &[row(serde_json::json!({"b": "00FE"}))],
        &blob,
        false,
        &mut problems,
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
}
