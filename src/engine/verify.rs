//! Verification: checks the target against the source and against itself.
//!
//! - **ledger**: no step is left failed or running;
//! - **accounting**, per applied data/merge step: source = written + skipped + rejected + merged,
//!   and the ledger's rejected count equals the open rejects in the reject store (**rejects**);
//! - **expect**: scalar queries declared in the project's `verify.toml`, equal on both sides (or
//!   equal to a constant);
//! - **checksum**: an order-independent content checksum of a query's rows, computed the same way
//!   on both sides;
//! - **foreign_keys**: no reference in the target points nowhere (one check per table with keys);
//! - **documents**: the bytes of every document row in the file store hash to its digest column.
//!
//! Every declared query runs inside a transaction that is rolled back (read-only where the
//! database supports it), so verification never changes either side. Rows are streamed, never
//! loaded whole. A query that fails is a failed check carrying the error, not an error of the
//! verification.

use crate::engine::data::store::REJECTS;
use crate::engine::db::{Db, Dialect, Role};
use crate::engine::decode::{decode_mysql, decode_pg_compare, decode_sqlite};
use crate::engine::ledger::{self, LedgerStatus};
use crate::engine::project::{Project, StepKind};
use crate::engine::protocol::report::canonical_real;
pub use crate::engine::protocol::report::{Check, CheckKind, Measure, VerifyReport};
use crate::engine::value::{Value, hex};
use color_eyre::eyre::{Result, eyre};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{Column, Row};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Component, Path, PathBuf};

/// The file of declared checks, in the project folder next to `cutover.toml`.
pub const VERIFY_FILE: &str = "verify.toml";

/// How many keys of missing or mismatching documents a check names.
const SHOW_KEYS: usize = 5;

impl VerifyReport {
    pub fn new(checks: Vec<Check>) -> VerifyReport {
        VerifyReport {
            ok: checks.iter().all(|c| c.ok),
            checks,
        }
    }
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

impl Measure {
    /// The value as a check shows it; NULL is no measure.
    pub fn from_value(v: &Value) -> Option<Measure> {
        match v {
            Value::Null => None,
            Value::Int(i) => Some(Measure::Int(*i)),
            Value::Real(f) if f.is_finite() => Some(Measure::Real(*f)),
            Value::Bool(b) => Some(Measure::Int(i64::from(*b))),
            other => canonical(other).map(Measure::Text),
        }
    }

    fn count(n: u64) -> Measure {
        Measure::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

// ---------------------------------------------------------------------------------------------
// verify.toml

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyFile {
    #[serde(default)]
    pub expect: Vec<ExpectSpec>,
    #[serde(default)]
    pub checksum: Vec<ChecksumSpec>,
    #[serde(default)]
    pub documents: Vec<DocumentsSpec>,
}

/// Scalar queries that must agree: source = target, or one (or both) = `equals`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    pub name: String,
    pub source: Option<String>,
    pub target: Option<String>,
    pub equals: Option<Measure>,
}

/// Queries whose rows must have the same content checksum on both sides.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksumSpec {
    pub name: String,
    pub source: String,
    pub target: String,
}

/// A target table whose rows point at files in a content store.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentsSpec {
    /// Target table.
    pub table: String,
    /// Column holding the hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// Column holding the path of the bytes, relative to `store`.
    pub storage_key: String,
    /// Folder of the store, relative to the project folder.
    pub store: String,
}

impl VerifyFile {
    /// `verify.toml` of the project folder; a missing file declares no checks.
    pub fn load(project_dir: &Path) -> Result<VerifyFile> {
        let path = project_dir.join(VERIFY_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(VerifyFile::default()),
            Err(e) => return Err(eyre!("cannot read {}: {e}", path.display())),
        };
        Self::parse(&text).map_err(|e| eyre!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<VerifyFile> {
        let file: VerifyFile = toml::from_str(text).map_err(|e| eyre!("{}", e.to_string().trim_end()))?;
        file.validate()?;
        Ok(file)
    }

    fn validate(&self) -> Result<()> {
        for (i, e) in self.expect.iter().enumerate() {
            let what = format!("[[expect]] #{} '{}'", i + 1, e.name);
            if e.name.trim().is_empty() {
                return Err(eyre!("[[expect]] #{}: name is empty", i + 1));
            }
            let queries = usize::from(e.source.is_some()) + usize::from(e.target.is_some());
            if queries == 0 {
                return Err(eyre!("{what}: give a `source` and/or a `target` query"));
            }
            if queries == 1 && e.equals.is_none() {
                return Err(eyre!(
                    "{what}: with only one query, give `equals = <value>` to compare it with (or give both `source` and `target`)"
                ));
            }
        }
        for (i, c) in self.checksum.iter().enumerate() {
            if c.name.trim().is_empty() {
                return Err(eyre!("[[checksum]] #{}: name is empty", i + 1));
            }
        }
        for (i, d) in self.documents.iter().enumerate() {
            for (field, v) in [
                ("table", &d.table),
                ("sha256", &d.sha256),
                ("storage_key", &d.storage_key),
                ("store", &d.store),
            ] {
                if v.trim().is_empty() {
                    return Err(eyre!("[[documents]] #{}: {field} is empty", i + 1));
                }
            }
        }
        Ok(())
    }

    fn needs_source(&self) -> bool {
        !self.checksum.is_empty() || self.expect.iter().any(|e| e.source.is_some())
    }
}

// ---------------------------------------------------------------------------------------------
// canonical values and the content checksum

/// The canonical text form of a value, the same for every database: NULL is `None`; integers as
/// decimals; a real with no fraction as an integer; booleans as 1/0 (SQLite has no booleans);
/// text as is; bytes in hex; JSON compact.
pub fn canonical(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        Value::Int(i) => Some(i.to_string()),
        Value::Real(f) => Some(canonical_real(*f)),
        Value::Text(s) => Some(s.clone()),
        Value::Bytes(b) => Some(hex(&b.bytes)),
        Value::Json(j) => Some(j.to_string()),
    }
}

/// The first 16 bytes of the SHA-256 of a row's canonical form: each value as `N;` (NULL) or
/// `V<length>:<text>;`, so no two rows share a form.
pub fn row_hash(row: &[Value]) -> u128 {
    let mut h = Sha256::new();
    for v in row {
        match canonical(v) {
            None => h.update(b"N;"),
            Some(s) => {
                h.update(format!("V{}:", s.len()).as_bytes());
                h.update(s.as_bytes());
                h.update(b";");
            }
        }
    }
    let d = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&d[..16]);
    u128::from_be_bytes(first)
}

/// An order-independent checksum of rows: the wrapping sum of their row hashes (duplicates
/// count), with the number of rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentSum {
    pub sum: u128,
    pub rows: u64,
}

impl ContentSum {
    pub fn add(&mut self, row: &[Value]) {
        self.sum = self.sum.wrapping_add(row_hash(row));
        self.rows += 1;
    }
    pub fn hex(&self) -> String {
        format!("{:032x}", self.sum)
    }
}

// ---------------------------------------------------------------------------------------------
// streaming queries

/// Run `sql` on `db` inside a transaction that is rolled back (read-only on PostgreSQL and
/// MySQL), streaming its rows into `f` until it returns `Break`.
async fn for_each_row<F>(db: &Db, sql: &str, mut f: F) -> Result<(), sqlx::Error>
where
    F: AsyncFnMut(Vec<Value>) -> ControlFlow<()>,
{
    macro_rules! stream {
        ($tx:expr, $decode:expr) => {{
            let mut tx = $tx;
            {
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false).fetch(&mut *tx);
                while let Some(row) = rows.try_next().await? {
                    let mut issues = Vec::new();
                    let vals = $decode(&row, &mut issues)?;
                    if let Some(i) = issues.first() {
                        let name = row
                            .columns()
                            .get(i.column)
                            .map(|c| c.name().to_string())
                            .unwrap_or_default();
                        return Err(sqlx::Error::ColumnDecode {
                            index: name,
                            source: i.reason.clone().into(),
                        });
                    }
                    if f(vals).await.is_break() {
                        break;
                    }
                }
            }
            tx.rollback().await?;
        }};
    }
    match db {
        Db::Sqlite(p) => stream!(p.begin().await?, decode_sqlite),
        Db::Postgres(p) => stream!(p.begin_with("BEGIN READ ONLY").await?, decode_pg_compare),
        Db::Mysql(p) => stream!(p.begin_with("START TRANSACTION READ ONLY").await?, decode_mysql),
    }
    Ok(())
}

/// The one value of a scalar query.
async fn scalar(db: &Db, sql: &str) -> Result<Value, String> {
    let mut rows: Vec<Vec<Value>> = Vec::new();
    for_each_row(db, sql, async |row| {
        rows.push(row);
        if rows.len() > 1 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await
    .map_err(|e| sql_error(&e))?;
    match rows.as_slice() {
        [] => Err("returned no row (a scalar query returns one row of one column)".into()),
        [row] if row.len() == 1 => Ok(row[0].clone()),
        [row] => Err(format!(
            "returned {} columns (a scalar query returns one row of one column)",
            row.len()
        )),
        _ => Err("returned more than one row (a scalar query returns one row of one column)".into()),
    }
}

async fn content_sum(db: &Db, sql: &str) -> Result<ContentSum, String> {
    let mut sum = ContentSum::default();
    for_each_row(db, sql, async |row| {
        sum.add(&row);
        ControlFlow::Continue(())
    })
    .await
    .map_err(|e| sql_error(&e))?;
    Ok(sum)
}

fn sql_error(e: &sqlx::Error) -> String {
    let msg = crate::engine::config::redact_url(&e.to_string());
    if matches!(e, sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) {
        format!("{msg} (cast the value to an integer, a real or text in the query)")
    } else {
        msg
    }
}

// ---------------------------------------------------------------------------------------------
// the checks

/// The source connection, opened only when a declared check needs it.
enum Source {
    Open(Db),
    Unavailable(String),
}

impl Source {
    fn db(&self) -> Result<&Db, String> {
        match self {
            Source::Open(db) => Ok(db),
            Source::Unavailable(why) => Err(why.clone()),
        }
    }
}

/// Run every check against the project's target (and source, for declared checks that query it).
/// An `Err` means verification could not run (bad `verify.toml`, unreachable target); a failing
/// check is a report with `ok = false`.
pub async fn verify(project: &Project) -> Result<VerifyReport> {
    let file = VerifyFile::load(&project.config.dir)?;
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let source = if file.needs_source() {
        Some(match &project.config.source {
            None => Source::Unavailable(
                "no source connection: set [source] url in cutover.toml, --source or CUTOVER_SOURCE".into(),
            ),
            Some(url) => match Db::connect(url, &project.config.dir, Role::Source).await {
                Ok(db) => Source::Open(db),
                Err(e) => Source::Unavailable(crate::engine::config::redact_url(&format!("{e:#}"))),
            },
        })
    } else {
        None
    };
    let result = run_checks(project, &file, &target, source.as_ref()).await;
    target.close().await;
    if let Some(Source::Open(db)) = &source {
        db.close().await;
    }
    Ok(VerifyReport::new(result?))
}

async fn run_checks(project: &Project, file: &VerifyFile, target: &Db, source: Option<&Source>) -> Result<Vec<Check>> {
    let mut checks = ledger_checks(target).await?;
    let no_source = Source::Unavailable("no source connection".into());
    let opened;
    let source = match source {
        Some(s) => s,
        // The source-count check needs the source even when verify.toml asks for nothing of it.
        None => match &project.config.source {
            Some(url) => {
                opened = match Db::connect(url, &project.config.dir, Role::Source).await {
                    Ok(db) => Source::Open(db),
                    Err(e) => Source::Unavailable(crate::engine::config::redact_url(&format!("{e:#}"))),
                };
                &opened
            }
            None => &no_source,
        },
    };
    checks.extend(source_count_checks(project, target, source).await?);
    for e in &file.expect {
        checks.push(expect_check(e, source, target).await);
    }
    for c in &file.checksum {
        checks.push(checksum_check(c, source, target).await);
    }
    checks.extend(foreign_key_checks(target).await);
    for d in &file.documents {
        checks.push(documents_check(d, &project.config.dir, target).await);
    }
    Ok(checks)
}

/// Steps left failed/running, then accounting and the reject store per applied data/merge step.
async fn ledger_checks(target: &Db) -> Result<Vec<Check>> {
    let rows = ledger::load(target).await?;
    let mut checks = Vec::new();
    let unfinished: Vec<String> = rows
        .iter()
        .filter(|r| matches!(r.status, LedgerStatus::Failed | LedgerStatus::Running))
        .map(|r| format!("{}_{} is {}", r.version, r.name, r.status.as_str()))
        .collect();
    checks.push(Check {
        name: "no step failed or running".into(),
        kind: CheckKind::Ledger,
        ok: unfinished.is_empty(),
        source: None,
        target: Some(Measure::count(unfinished.len() as u64)),
        detail: if unfinished.is_empty() {
            let applied = rows.iter().filter(|r| r.status.is_applied()).count();
            format!("{applied} step{} applied", if applied == 1 { "" } else { "s" })
        } else {
            format!(
                "{} (see `cutover status`: `cutover up` resumes a failed or interrupted data step from its last checkpoint; `cutover repair` clears a failed schema step so `up` runs it again)",
                unfinished.join(", ")
            )
        },
    });
    let mut open_rejects: BTreeMap<String, i64> = BTreeMap::new();
    if target.table_exists(REJECTS).await? {
        let counted = target
            .fetch_all(
                &format!(
                    "SELECT version, COUNT(*) FROM {REJECTS} WHERE level = 'error' AND state = 'open' GROUP BY version"
                ),
                &[],
            )
            .await?;
        for r in counted.rows {
            if let (Some(v), Some(Value::Int(n))) = (r.first().and_then(|v| v.to_text()), r.get(1)) {
                open_rejects.insert(v, *n);
            }
        }
    }
    for r in rows
        .iter()
        .filter(|r| r.status == LedgerStatus::Applied && matches!(ledger::kind_of(r), StepKind::Data | StepKind::Merge))
    {
        let step = format!("{}_{}", r.version, r.name);
        let c = &r.counts;
        let accounted = c.written + c.skipped + c.rejected + c.merged;
        checks.push(Check {
            name: format!("accounting {step}"),
            kind: CheckKind::Accounting,
            ok: c.balanced(),
            source: Some(Measure::count(c.source)),
            target: Some(Measure::count(accounted)),
            detail: format!(
                "source {} {} written {} + skipped {} + rejected {} + merged {}",
                c.source,
                if c.balanced() { "=" } else { "≠" },
                c.written,
                c.skipped,
                c.rejected,
                c.merged
            ),
        });
        let stored = open_rejects.get(&r.version).copied().unwrap_or(0);
        let ok = i64::try_from(c.rejected).is_ok_and(|n| n == stored);
        checks.push(Check {
            name: format!("rejects {step}"),
            kind: CheckKind::Rejects,
            ok,
            source: Some(Measure::count(c.rejected)),
            target: Some(Measure::Int(stored)),
            detail: format!(
                "ledger rejected {} {} open rejects in {REJECTS} {stored}",
                c.rejected,
                if ok { "=" } else { "≠" }
            ),
        });
    }
    Ok(checks)
}

/// Per applied data and merge step: the source's own row count (of the step's table or
/// query, now) against the rows the ledger accounted for. A reader that stopped early, or a
/// pager that skipped rows, shows here even when the books balance.
async fn source_count_checks(project: &Project, target: &Db, source: &Source) -> Result<Vec<Check>> {
    let rows = ledger::load(target).await?;
    let mut checks = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.status == LedgerStatus::Applied && matches!(ledger::kind_of(r), StepKind::Data | StepKind::Merge))
    {
        let name = format!("source rows {}_{}", r.version, r.name);
        let Some(step) = project.step(&r.version) else {
            continue;
        };
        let counted: Result<u64, String> = match source {
            Source::Unavailable(why) => Err(format!("cannot count the source: {why}")),
            Source::Open(db) => {
                let sides = match step.kind {
                    StepKind::Merge => crate::engine::steps::merge::MergeStep::load(step).map(|m| vec![m.a, m.b]),
                    _ => crate::engine::ops::load_compiled(step).map(|c| vec![c]),
                };
                match sides {
                    Err(e) => Err(format!("cannot load the step: {e:#}")),
                    Ok(sides) => {
                        let mut n = 0u64;
                        let mut err = None;
                        for c in &sides {
                            match crate::engine::source::table::count_source(db, c).await {
                                Ok(k) => n += k,
                                Err(e) => err = Some(format!("cannot count the source: {e:#}")),
                            }
                        }
                        match err {
                            Some(e) => Err(e),
                            None => Ok(n),
                        }
                    }
                }
            }
        };
        checks.push(match counted {
            Ok(n) => Check {
                name,
                kind: CheckKind::Accounting,
                ok: n == r.counts.source,
                source: Some(Measure::count(n)),
                target: Some(Measure::count(r.counts.source)),
                detail: format!(
                    "the source has {n} rows {} the ledger accounted for {}",
                    if n == r.counts.source { "=" } else { "≠" },
                    r.counts.source
                ),
            },
            Err(e) => Check {
                name,
                kind: CheckKind::Accounting,
                ok: false,
                source: None,
                target: Some(Measure::count(r.counts.source)),
                detail: e,
            },
        });
    }
    Ok(checks)
}

async fn expect_check(e: &ExpectSpec, source: &Source, target: &Db) -> Check {
    let src = match &e.source {
        Some(sql) => Some(match source.db() {
            Ok(db) => scalar(db, sql).await,
            Err(why) => Err(why),
        }),
        None => None,
    };
    let tgt = match &e.target {
        Some(sql) => Some(scalar(target, sql).await),
        None => None,
    };
    let mut errors = Vec::new();
    let mut values: Vec<(&str, Option<String>)> = Vec::new();
    for (side, r) in [("source", &src), ("target", &tgt)] {
        match r {
            Some(Ok(v)) => values.push((side, canonical(v))),
            Some(Err(msg)) => errors.push(format!("{side} query failed: {msg}")),
            None => {}
        }
    }
    if let Some(eq) = &e.equals {
        values.push(("expected", Some(eq.canonical())));
    }
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".into());
    let agree = values.windows(2).all(|w| w[0].1 == w[1].1);
    let ok = errors.is_empty() && agree;
    let detail = if !errors.is_empty() {
        errors.join("; ")
    } else {
        let parts: Vec<String> = values.iter().map(|(side, v)| format!("{side} {}", shown(v))).collect();
        parts.join(if agree { " = " } else { " ≠ " })
    };
    let measure = |r: &Option<Result<Value, String>>| match r {
        Some(Ok(v)) => Measure::from_value(v),
        _ => None,
    };
    Check {
        name: e.name.clone(),
        kind: CheckKind::Expect,
        ok,
        source: measure(&src),
        target: measure(&tgt),
        detail,
    }
}

async fn checksum_check(c: &ChecksumSpec, source: &Source, target: &Db) -> Check {
    let src = match source.db() {
        Ok(db) => content_sum(db, &c.source).await,
        Err(why) => Err(why),
    };
    let tgt = content_sum(target, &c.target).await;
    let mut errors = Vec::new();
    if let Err(msg) = &src {
        errors.push(format!("source query failed: {msg}"));
    }
    if let Err(msg) = &tgt {
        errors.push(format!("target query failed: {msg}"));
    }
    let rows = |r: &Result<ContentSum, String>| match r {
        Ok(s) => s.rows.to_string(),
        Err(_) => "?".into(),
    };
    let ok = matches!((&src, &tgt), (Ok(a), Ok(b)) if a == b);
    let counts = format!("rows: source {}, target {}", rows(&src), rows(&tgt));
    let detail = if !errors.is_empty() {
        format!("{}; {counts}", errors.join("; "))
    } else if ok {
        format!("{counts}; content equal")
    } else {
        format!("{counts}; content differs")
    };
    let digest = |r: &Result<ContentSum, String>| r.as_ref().ok().map(|s| Measure::Text(s.hex()));
    Check {
        name: c.name.clone(),
        kind: CheckKind::Checksum,
        ok,
        source: digest(&src),
        target: digest(&tgt),
        detail,
    }
}

/// Quote an identifier for the target's dialect.
fn quote(dialect: Dialect, name: &str) -> String {
    match dialect {
        Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// Quote a possibly schema-qualified table name (`schema.table`).
fn quote_table(dialect: Dialect, name: &str) -> String {
    name.split('.').map(|p| quote(dialect, p)).collect::<Vec<_>>().join(".")
}

/// A foreign key of the target: child columns referencing parent columns.
struct ForeignKey {
    name: String,
    child: String,
    parent_schema: Option<String>,
    parent: String,
    columns: Vec<String>,
    parent_columns: Vec<String>,
}

const SEP: char = '\u{1f}';

fn split_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(|v| v.to_text())
        .map(|s| s.split([SEP, ',']).map(str::to_string).collect())
        .unwrap_or_default()
}

/// One check per target table with foreign keys: how many rows reference nothing.
async fn foreign_key_checks(target: &Db) -> Vec<Check> {
    let result = match target {
        Db::Sqlite(_) => sqlite_foreign_keys(target).await,
        _ => server_foreign_keys(target).await,
    };
    match result {
        Ok(checks) => checks,
        Err(msg) => vec![Check {
            name: "foreign keys".into(),
            kind: CheckKind::ForeignKeys,
            ok: false,
            source: None,
            target: None,
            detail: format!("cannot check foreign keys: {msg}"),
        }],
    }
}

fn fk_check(table: &str, orphans: u64, parts: &[String], parents: &[String]) -> Check {
    Check {
        name: format!("foreign keys {table}"),
        kind: CheckKind::ForeignKeys,
        ok: orphans == 0,
        source: None,
        target: Some(Measure::count(orphans)),
        detail: if orphans == 0 {
            format!("no orphan references (to {})", parents.join(", "))
        } else {
            format!(
                "{orphans} row{} reference{} nothing: {}",
                if orphans == 1 { "" } else { "s" },
                if orphans == 1 { "s" } else { "" },
                parts.join(", ")
            )
        },
    }
}

async fn sqlite_foreign_keys(target: &Db) -> Result<Vec<Check>, String> {
    let keys = target
        .fetch_all(
            "SELECT m.name, f.\"table\" FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f \
             WHERE m.type = 'table' ORDER BY m.name, f.id, f.seq",
            &[],
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
    // table -> parents it references
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &keys.rows {
        let (Some(t), Some(p)) = (r.first().and_then(|v| v.to_text()), r.get(1).and_then(|v| v.to_text())) else {
            continue;
        };
        let parents = tables.entry(t).or_default();
        if !parents.contains(&p) {
            parents.push(p);
        }
    }
    // table -> parent -> orphans
    let mut orphans: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for_each_row(target, "PRAGMA foreign_key_check", async |r| {
        if let (Some(t), Some(p)) = (r.first().and_then(|v| v.to_text()), r.get(2).and_then(|v| v.to_text())) {
            *orphans.entry(t).or_default().entry(p).or_default() += 1;
        }
        ControlFlow::Continue(())
    })
    .await
    .map_err(|e| sql_error(&e))?;
    Ok(tables
        .iter()
        .map(|(table, parents)| {
            let by_parent = orphans.get(table);
            let total = by_parent.map(|m| m.values().sum()).unwrap_or(0);
            let parts: Vec<String> = by_parent
                .map(|m| m.iter().map(|(p, n)| format!("{n} to {p}")).collect())
                .unwrap_or_default();
            fk_check(table, total, &parts, parents)
        })
        .collect())
}

async fn server_foreign_keys(target: &Db) -> Result<Vec<Check>, String> {
    let dialect = target.dialect();
    let sql = match dialect {
        Dialect::Postgres => {
            "SELECT con.conname::text, cl.relname::text, pns.nspname::text, pcl.relname::text,
                (SELECT string_agg(a.attname::text, chr(31) ORDER BY k.n) FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, n)
                   JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum),
                (SELECT string_agg(a.attname::text, chr(31) ORDER BY k.n) FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, n)
                   JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum)
             FROM pg_constraint con
             JOIN pg_class cl ON cl.oid = con.conrelid
             JOIN pg_namespace ns ON ns.oid = cl.relnamespace
             JOIN pg_class pcl ON pcl.oid = con.confrelid
             JOIN pg_namespace pns ON pns.oid = pcl.relnamespace
             WHERE con.contype = 'f' AND ns.nspname = current_schema()
             ORDER BY cl.relname, con.conname"
        }
        _ => {
            "SELECT CONSTRAINT_NAME, TABLE_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME,
                GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION SEPARATOR ','),
                GROUP_CONCAT(REFERENCED_COLUMN_NAME ORDER BY ORDINAL_POSITION SEPARATOR ',')
             FROM information_schema.KEY_COLUMN_USAGE
             WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IS NOT NULL
             GROUP BY CONSTRAINT_NAME, TABLE_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME
             ORDER BY TABLE_NAME, CONSTRAINT_NAME"
        }
    };
    let rows = target.fetch_all(sql, &[]).await.map_err(|e| format!("{e:#}"))?;
    let keys: Vec<ForeignKey> = rows
        .rows
        .iter()
        .map(|r| {
            let t = |i: usize| r.get(i).and_then(|v| v.to_text()).unwrap_or_default();
            ForeignKey {
                name: t(0),
                child: t(1),
                parent_schema: r.get(2).and_then(|v| v.to_text()),
                parent: t(3),
                columns: split_list(r.get(4)),
                parent_columns: split_list(r.get(5)),
            }
        })
        .collect();
    // table -> (orphans, per-constraint parts, parents)
    let mut tables: BTreeMap<String, (u64, Vec<String>, Vec<String>)> = BTreeMap::new();
    for fk in &keys {
        let q = |n: &str| quote(dialect, n);
        let parent = match &fk.parent_schema {
            Some(s) => format!("{}.{}", q(s), q(&fk.parent)),
            None => q(&fk.parent),
        };
        let join: Vec<String> = fk
            .columns
            .iter()
            .zip(&fk.parent_columns)
            .map(|(c, p)| format!("p.{} = c.{}", q(p), q(c)))
            .collect();
        let not_null: Vec<String> = fk.columns.iter().map(|c| format!("c.{} IS NOT NULL", q(c))).collect();
        let first_parent = fk.parent_columns.first().map(|p| q(p)).unwrap_or_default();
        let count_sql = format!(
            "SELECT COUNT(*) FROM {} c LEFT JOIN {parent} p ON {} WHERE {} AND p.{first_parent} IS NULL",
            q(&fk.child),
            join.join(" AND "),
            not_null.join(" AND ")
        );
        let n = match scalar(target, &count_sql).await {
            Ok(Value::Int(n)) => u64::try_from(n).unwrap_or(0),
            Ok(other) => return Err(format!("counting orphans of {} returned {other}", fk.name)),
            Err(msg) => return Err(format!("counting orphans of {}: {msg}", fk.name)),
        };
        let entry = tables.entry(fk.child.clone()).or_default();
        entry.0 += n;
        if n > 0 {
            entry.1.push(format!(
                "{n} by {} ({}) to {}",
                fk.name,
                fk.columns.join(", "),
                fk.parent
            ));
        }
        if !entry.2.contains(&fk.parent) {
            entry.2.push(fk.parent.clone());
        }
    }
    Ok(tables
        .iter()
        .map(|(table, (n, parts, parents))| fk_check(table, *n, parts, parents))
        .collect())
}

/// Why a document's bytes do not check out.
enum DocProblem {
    Missing,
    Mismatch,
}

/// The file of `key` in the store, refusing keys that leave it.
fn store_path(store: &Path, key: &str) -> Option<PathBuf> {
    let rel = Path::new(key);
    if key.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(store.join(rel))
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex(&h.finalize()))
}

async fn documents_check(d: &DocumentsSpec, project_dir: &Path, target: &Db) -> Check {
    let name = format!("documents {}", d.table);
    let store = project_dir.join(&d.store);
    let dialect = target.dialect();
    let sql = format!(
        "SELECT {}, {} FROM {}",
        quote(dialect, &d.storage_key),
        quote(dialect, &d.sha256),
        quote_table(dialect, &d.table)
    );
    let mut rows = 0u64;
    let mut good = 0u64;
    let mut no_file = 0u64;
    let mut missing: Vec<String> = Vec::new();
    let mut mismatched: Vec<String> = Vec::new();
    let mut inconsistent: Vec<String> = Vec::new();
    let mut missing_n = 0u64;
    let mut mismatched_n = 0u64;
    let mut inconsistent_n = 0u64;
    let result = for_each_row(target, &sql, async |r| {
        rows += 1;
        let key = r.first().and_then(|v| v.to_text());
        let digest = r.get(1).and_then(|v| v.to_text());
        let (key, digest) = match (key, digest) {
            (None, None) => {
                // a row without stored bytes
                no_file += 1;
                return ControlFlow::Continue(());
            }
            (Some(k), Some(d)) => (k, d),
            (k, _) => {
                inconsistent_n += 1;
                if inconsistent.len() < SHOW_KEYS {
                    inconsistent.push(k.unwrap_or_else(|| "NULL".into()));
                }
                return ControlFlow::Continue(());
            }
        };
        let expected = digest.trim().trim_start_matches("sha256:").to_ascii_lowercase();
        let problem = match store_path(&store, &key) {
            None => Some(DocProblem::Missing),
            Some(path) => match tokio::task::spawn_blocking(move || file_sha256(&path)).await {
                Ok(Ok(actual)) if actual == expected => None,
                Ok(Ok(_)) => Some(DocProblem::Mismatch),
                _ => Some(DocProblem::Missing),
            },
        };
        match problem {
            None => good += 1,
            Some(DocProblem::Missing) => {
                missing_n += 1;
                if missing.len() < SHOW_KEYS {
                    missing.push(key);
                }
            }
            Some(DocProblem::Mismatch) => {
                mismatched_n += 1;
                if mismatched.len() < SHOW_KEYS {
                    mismatched.push(key);
                }
            }
        }
        ControlFlow::Continue(())
    })
    .await;
    if let Err(e) = result {
        return Check {
            name,
            kind: CheckKind::Documents,
            ok: false,
            source: None,
            target: None,
            detail: format!("target query failed: {}", sql_error(&e)),
        };
    }
    let with_files = rows - no_file;
    let ok = missing_n == 0 && mismatched_n == 0 && inconsistent_n == 0;
    let list = |n: u64, keys: &[String]| {
        if n == 0 {
            String::new()
        } else {
            format!(
                " ({}{})",
                keys.join(", "),
                if n > keys.len() as u64 { ", …" } else { "" }
            )
        }
    };
    let mut detail = format!(
        "{with_files} files in {}: {missing_n} missing{}, {mismatched_n} mismatching{}",
        store.display(),
        list(missing_n, &missing),
        list(mismatched_n, &mismatched)
    );
    if inconsistent_n > 0 {
        detail.push_str(&format!(
            ", {inconsistent_n} rows with only one of {} and {}{}",
            d.storage_key,
            d.sha256,
            list(inconsistent_n, &inconsistent)
        ));
    }
    if no_file > 0 {
        detail.push_str(&format!("; {no_file} rows without stored bytes"));
    }
    Check {
        name,
        kind: CheckKind::Documents,
        ok,
        source: Some(Measure::count(with_files)),
        target: Some(Measure::count(good)),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_agree_across_types() {
        assert_eq!(canonical(&Value::Real(1.0)), canonical(&Value::Int(1)));
        assert_eq!(canonical(&Value::Real(-0.0)), Some("0".into()));
        assert_eq!(canonical(&Value::Real(12.5)), Some("12.5".into()));
        assert_eq!(canonical(&Value::Bool(true)), canonical(&Value::Int(1)));
        assert_eq!(canonical(&Value::Null), None);
        assert_eq!(canonical(&Value::Text("a b ".into())), Some("a b ".into()));
    }

    #[test]
    fn content_sum_ignores_order_but_counts_duplicates() {
        let rows = [
            vec![Value::Int(1), Value::Text("a".into())],
            vec![Value::Int(2), Value::Null],
            vec![Value::Real(3.0), Value::Text("".into())],
        ];
        let mut a = ContentSum::default();
        for r in &rows {
            a.add(r);
        }
        let mut b = ContentSum::default();
        for r in rows.iter().rev() {
            b.add(r);
        }
        assert_eq!(a, b);
        assert_eq!(a.hex().len(), 32);
        b.add(&rows[0]);
        assert_ne!(a.sum, b.sum);
        // NULL and empty text differ, and so do values that only concatenate alike
        assert_ne!(row_hash(&[Value::Null]), row_hash(&[Value::Text(String::new())]));
        assert_ne!(
            row_hash(&[Value::Text("ab".into()), Value::Text("c".into())]),
            row_hash(&[Value::Text("a".into()), Value::Text("bc".into())])
        );
    }

    #[test]
    fn verify_toml_is_strict() {
        let ok = VerifyFile::parse(
            r#"
[[expect]]
name = "a"
source = "SELECT 1"
target = "SELECT 1"

[[expect]]
name = "b"
target = "SELECT 2"
equals = 2

[[checksum]]
name = "c"
source = "SELECT 1"
target = "SELECT 1"

[[documents]]
table = "documents"
sha256 = "sha256"
storage_key = "storage_key"
store = "document-store"
"#,
        )
        .unwrap();
        assert_eq!(ok.expect.len(), 2);
        assert_eq!(ok.expect[1].equals, Some(Measure::Int(2)));
        let err = VerifyFile::parse("[[expect]]\nname = \"a\"\ntarget = \"SELECT 1\"\nequal = 1\n").unwrap_err();
        assert!(err.to_string().contains("equal"), "{err}");
        assert!(err.to_string().contains("line 4"), "{err}");
        let err = VerifyFile::parse("[[expect]]\nname = \"a\"\ntarget = \"SELECT 1\"\n").unwrap_err();
        assert!(err.to_string().contains("equals"), "{err}");
    }

    #[test]
    fn store_keys_stay_in_the_store() {
        let s = Path::new("/p/store");
        assert_eq!(store_path(s, "ab/cd.pdf"), Some(PathBuf::from("/p/store/ab/cd.pdf")));
        assert_eq!(store_path(s, "../secret"), None);
        assert_eq!(store_path(s, "/etc/passwd"), None);
        assert_eq!(store_path(s, ""), None);
    }
}
