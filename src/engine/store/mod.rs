//! The engine's own tables in the target, and the only module that names them: the ledger
//! and its events (`ledger`), the run lock (`lock`), and here the ID map, the reject store,
//! batch checkpoints, the before-images of rows an `update` changed and merge discrepancies.
//! They live in the target so that a batch's rows, its ID-map entries, its rejects and its
//! checkpoint commit in one transaction.

pub mod backups;
pub mod deferred_ddl;
pub mod deferred_indexes;
pub mod deferred_keys;
pub mod ledger;
pub mod lock;
pub mod reject_tally;
pub mod runs;
pub mod sync_marks;
pub mod written_keys;

use crate::engine::db::{Db, DbTx};
use crate::engine::protocol::Counts;
use crate::engine::transform::Normalize;
use crate::engine::value::Value;
use color_eyre::eyre::Result;
use serde::Serialize;

pub const ID_MAP: &str = "cutover_id_map";
pub const REJECTS: &str = "cutover_rejects";
pub const CHECKPOINTS: &str = "cutover_checkpoints";
pub const BACKUPS: &str = "cutover_row_backups";
pub const DISCREPANCIES: &str = "cutover_discrepancies";

/// Every table of the tool's own.
const OWN_TABLES: [&str; 12] = [
    ID_MAP,
    deferred_indexes::DEFERRED_INDEXES,
    deferred_keys::DEFERRED_KEYS,
    written_keys::WRITTEN_KEYS,
    REJECTS,
    CHECKPOINTS,
    BACKUPS,
    DISCREPANCIES,
    ledger::LEDGER_TABLE,
    ledger::EVENTS_TABLE,
    lock::LOCK_TABLE,
    backups::BACKUPS_TABLE,
];

/// The tool's tables the target lacks, where its DDL commits at once (MySQL): a dry pass
/// that needs one creates it for real (see `MysqlTx::create_own_tables`). Empty where DDL is
/// transactional (the pass's rollback removes them).
/// The ids a step wrote through its ID map, as a subquery with the step's version as `$1`.
pub fn written_ids_sql() -> String {
    format!("SELECT new_id FROM {ID_MAP} WHERE version = $1 AND alias = 0")
}

pub async fn own_tables_missing(db: &Db) -> Result<Vec<&'static str>> {
    let mut missing = Vec::new();
    if db.dialect().transactional_ddl() {
        return Ok(missing);
    }
    for t in OWN_TABLES {
        if !db.table_exists(t).await? {
            missing.push(t);
        }
    }
    Ok(missing)
}

/// Drop those of `missing_before` (from [`own_tables_missing`]) that exist now: what a pass
/// that promised to change nothing created. Empty tables only: one holding rows belongs to
/// someone else's run and is kept.
pub async fn drop_created(db: &Db, missing_before: &[&'static str]) -> Result<()> {
    for t in missing_before {
        if !db.table_exists(t).await? {
            continue;
        }
        let rows = db.fetch_all(&format!("SELECT 1 FROM {t} LIMIT 1"), &[]).await?;
        if rows.rows.is_empty() {
            db.execute(&format!("DROP TABLE {t}"), &[]).await?;
        }
    }
    Ok(())
}

pub async fn ensure(db: &Db) -> Result<()> {
    let mut tx = db.begin().await?;
    ensure_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Create the tables inside the caller's transaction (dry runs roll them back again).
pub async fn ensure_in(tx: &mut DbTx) -> Result<(), sqlx::Error> {
    let d = tx.dialect();
    let compression = tx.fast_compression().await;
    let serial = d.serial_primary_key();
    // Text columns that are keys or indexed (VARCHAR on MySQL, TEXT elsewhere): names of maps
    // and tables, source keys (whole composite keys as text), versions and states.
    let name = d.key_text(191);
    let key = d.key_text(512);
    let version = d.key_text(64);
    let state = d.key_text(16);
    let options = d.table_options();
    let groups: Vec<(&str, Vec<String>)> = vec![
        (
            ID_MAP,
            // No index on `version` where a rollback can do without: it cost a quarter of the
            // ID map's write time (1.4 s per million rows on PostgreSQL) on every run, for the
            // benefit of a rollback, which finds a step's entries in one scan of the map
            // instead. A store made before keeps its index (dropping it here would lock the
            // map under a running step).
            std::iter::once(format!(
                "CREATE TABLE IF NOT EXISTS {ID_MAP} (map {name} NOT NULL, old_key {key} NOT NULL, new_id TEXT NOT NULL, version {version} NOT NULL, alias INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (map, old_key)){}",
                d.keyed_table_options()
            ))
            .chain(
                d.subquery_delete_needs_index()
                    .then(|| format!("CREATE INDEX IF NOT EXISTS {ID_MAP}_version ON {ID_MAP} (version)")),
            )
            .collect(),
        ),
        (
            REJECTS,
            vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {REJECTS} (
                        id {serial},
                        run_id TEXT NOT NULL,
                        version {version} NOT NULL,
                        source_table {name} NOT NULL,
                        source_key {key} NOT NULL,
                        row_json TEXT NOT NULL,
                        field TEXT,
                        rule TEXT NOT NULL,
                        reason TEXT NOT NULL,
                        level TEXT NOT NULL,
                        waits_for_table {name},
                        waits_for_key {key},
                        state {state} NOT NULL,
                        created_at TEXT NOT NULL,
                        resolved_at TEXT
                    ){options}"
                ),
                format!("CREATE INDEX IF NOT EXISTS {REJECTS}_source ON {REJECTS} (source_table, source_key)"),
                format!("CREATE INDEX IF NOT EXISTS {REJECTS}_waits ON {REJECTS} (waits_for_table, waits_for_key)"),
                format!("CREATE INDEX IF NOT EXISTS {REJECTS}_version ON {REJECTS} (version, state)"),
            ],
        ),
        (
            CHECKPOINTS,
            vec![format!(
                "CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (version {version} PRIMARY KEY, last_key TEXT, rows_read BIGINT NOT NULL, written BIGINT NOT NULL, skipped BIGINT NOT NULL, rejected BIGINT NOT NULL, merged BIGINT NOT NULL, warnings BIGINT NOT NULL, batches BIGINT NOT NULL, updated_at TEXT NOT NULL){options}"
            )],
        ),
        (
            DISCREPANCIES,
            vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {DISCREPANCIES} (
                        id {serial},
                        version {version} NOT NULL,
                        entity_table TEXT NOT NULL,
                        entity_id {name} NOT NULL,
                        field TEXT NOT NULL,
                        value_a TEXT,
                        value_b TEXT,
                        side_a TEXT NOT NULL,
                        side_b TEXT NOT NULL,
                        key_a {key} NOT NULL,
                        key_b {key} NOT NULL,
                        state {state} NOT NULL,
                        decision TEXT,
                        value_applied TEXT,
                        value_before TEXT,
                        reviewer TEXT,
                        decided_at TEXT,
                        note TEXT,
                        created_at TEXT NOT NULL
                    ){options}"
                ),
                format!("CREATE INDEX IF NOT EXISTS {DISCREPANCIES}_entity ON {DISCREPANCIES} (entity_id, state)"),
                format!("CREATE INDEX IF NOT EXISTS {DISCREPANCIES}_key_b ON {DISCREPANCIES} (key_b)"),
            ],
        ),
        (
            BACKUPS,
            vec![format!(
                "CREATE TABLE IF NOT EXISTS {BACKUPS} (id {serial}, version {version} NOT NULL, target_table TEXT NOT NULL, key_json TEXT NOT NULL, before_json TEXT NOT NULL){options}"
            )],
        ),
        (written_keys::WRITTEN_KEYS, written_keys::create_statements(tx, compression)),
        (
            deferred_indexes::DEFERRED_INDEXES,
            deferred_indexes::create_statements(d),
        ),
        (deferred_keys::DEFERRED_KEYS, deferred_keys::create_statements(d)),
    ];
    tx.create_own_tables(&groups).await
}

/// Where a step stands: the last source key whose batch committed, and the books so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchCheckpoint {
    pub last_key: Option<Value>,
    pub counts: Counts,
    pub batches: u64,
}

impl BatchCheckpoint {
    pub async fn load(tx: &mut DbTx, version: &str) -> Result<Option<BatchCheckpoint>> {
        let r = tx
            .fetch_optional(
                &format!("SELECT last_key, rows_read, written, skipped, rejected, merged, warnings, batches FROM {CHECKPOINTS} WHERE version = $1"),
                &[Value::Text(version.into())],
            )
            .await?;
        Ok(r.map(|r| {
            let n = |i: usize| match r.get(i) {
                Some(Value::Int(x)) => *x as u64,
                _ => 0,
            };
            BatchCheckpoint {
                last_key: r
                    .first()
                    .and_then(|v| v.as_str())
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                    .map(|j| Value::from_json(&j)),
                counts: Counts {
                    source: n(1),
                    written: n(2),
                    skipped: n(3),
                    rejected: n(4),
                    merged: n(5),
                    warnings: n(6),
                },
                batches: n(7),
            }
        }))
    }

    pub async fn save(&self, tx: &mut DbTx, version: &str) -> Result<(), sqlx::Error> {
        let conflict = tx.dialect().upsert_clause(
            &["version"],
            &[
                "last_key",
                "rows_read",
                "written",
                "skipped",
                "rejected",
                "merged",
                "warnings",
                "batches",
                "updated_at",
            ],
        );
        let c = &self.counts;
        tx.execute(
            &format!("INSERT INTO {CHECKPOINTS} (version, last_key, rows_read, written, skipped, rejected, merged, warnings, batches, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) {conflict}"),
            &[
                Value::Text(version.into()),
                self.last_key.as_ref().map(|k| Value::Text(k.to_json().to_string())).unwrap_or(Value::Null),
                Value::Int(c.source as i64),
                Value::Int(c.written as i64),
                Value::Int(c.skipped as i64),
                Value::Int(c.rejected as i64),
                Value::Int(c.merged as i64),
                Value::Int(c.warnings as i64),
                Value::Int(self.batches as i64),
                Value::Text(crate::engine::clock::now_iso()),
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn delete(tx: &mut DbTx, version: &str) -> Result<(), sqlx::Error> {
        tx.execute(
            &format!("DELETE FROM {CHECKPOINTS} WHERE version = $1"),
            &[Value::Text(version.into())],
        )
        .await?;
        Ok(())
    }
}

/// A row of the reject store (rejected rows and warnings).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RejectRecord {
    pub id: i64,
    pub run_id: String,
    /// The step's version.
    pub step: String,
    pub source_table: String,
    pub source_key: String,
    /// The whole source row; secret fields are redacted by `redacted_row` before display.
    pub row: serde_json::Value,
    pub field: Option<String>,
    pub rule: String,
    pub reason: String,
    /// `error` (row rejected) or `warning` (row written, noted).
    pub level: String,
    pub waits_for_table: Option<String>,
    pub waits_for_key: Option<String>,
    /// `open`, `resolved` (retried and written) or `noted` (warnings).
    pub state: String,
    pub created_at: String,
    pub resolved_at: Option<String>,
}

/// A reject about to be stored.
#[derive(Debug, Clone)]
pub struct NewReject {
    pub source_key: String,
    pub row: serde_json::Value,
    pub field: Option<String>,
    pub rule: String,
    pub reason: String,
    pub warning: bool,
    pub waits_for: Option<(String, String)>,
}

/// Column names whose values are secrets: never shown, exported or logged.
pub fn is_secret_column(name: &str) -> bool {
    crate::engine::validate::is_secret_field(name)
}

/// The row as it may be shown or exported: secret fields replaced by `<redacted>`.
pub fn redacted_row(row: &serde_json::Value) -> serde_json::Value {
    match row {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, v)| {
                    if is_secret_column(k) && !v.is_null() {
                        (k.clone(), serde_json::Value::String("<redacted>".into()))
                    } else {
                        (k.clone(), v.clone())
                    }
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

pub struct RejectStore;

const REJECT_COLUMNS: &str = "id, run_id, version, source_table, source_key, row_json, field, rule, reason, level, waits_for_table, waits_for_key, state, created_at, resolved_at";

fn reject_from(r: &[Value]) -> RejectRecord {
    let t = |i: usize| r.get(i).and_then(|v| v.to_text());
    RejectRecord {
        id: match r.first() {
            Some(Value::Int(i)) => *i,
            _ => 0,
        },
        run_id: t(1).unwrap_or_default(),
        step: t(2).unwrap_or_default(),
        source_table: t(3).unwrap_or_default(),
        source_key: t(4).unwrap_or_default(),
        row: t(5)
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null),
        field: t(6),
        rule: t(7).unwrap_or_default(),
        reason: t(8).unwrap_or_default(),
        level: t(9).unwrap_or_default(),
        waits_for_table: t(10),
        waits_for_key: t(11),
        state: t(12).unwrap_or_default(),
        created_at: t(13).unwrap_or_default(),
        resolved_at: t(14),
    }
}

#[derive(Debug, Clone, Default)]
pub struct RejectFilter {
    pub step: Option<String>,
    pub rule: Option<String>,
    pub open_only: bool,
    pub include_warnings: bool,
    /// The console's `/` filter: every term must match (case-insensitive).
    pub text: Vec<RejectTextTerm>,
}

/// One word of a text filter: it matches a reject whose version, rule, source table, source
/// key, field or reason contains it, or whose step is one of `versions` (the steps whose
/// name contains the word; names live in the project, not in the store).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RejectTextTerm {
    pub word: String,
    pub versions: Vec<String>,
}

/// `word` as a LIKE pattern that matches it anywhere, its own `%` and `_` taken literally
/// (escaped with `!`, which needs no quoting in any dialect's string literals).
fn like_anywhere(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('%');
    for c in word.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '!') {
            out.push('!');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl RejectFilter {
    /// The WHERE clause (starting with `WHERE`) and its parameters.
    fn where_clause(&self) -> (String, Vec<Value>) {
        let mut sql = String::from("WHERE 1 = 1");
        let mut params = Vec::new();
        if let Some(s) = &self.step {
            params.push(Value::Text(s.clone()));
            sql.push_str(&format!(" AND version = ${}", params.len()));
        }
        if let Some(r) = &self.rule {
            params.push(Value::Text(r.clone()));
            sql.push_str(&format!(" AND rule = ${}", params.len()));
        }
        if !self.include_warnings {
            sql.push_str(" AND level = 'error'");
        }
        if self.open_only {
            sql.push_str(" AND state IN ('open', 'noted')");
        }
        for term in &self.text {
            params.push(Value::Text(like_anywhere(&term.word)));
            let n = params.len();
            let mut any: Vec<String> = ["version", "rule", "source_table", "source_key", "field", "reason"]
                .iter()
                .map(|c| format!("LOWER({c}) LIKE ${n} ESCAPE '!'"))
                .collect();
            if !term.versions.is_empty() {
                let mut list = Vec::new();
                for v in &term.versions {
                    params.push(Value::Text(v.clone()));
                    list.push(format!("${}", params.len()));
                }
                any.push(format!("version IN ({})", list.join(", ")));
            }
            sql.push_str(&format!(" AND ({})", any.join(" OR ")));
        }
        (sql, params)
    }
}

impl RejectStore {
    pub async fn insert(
        tx: &mut DbTx,
        run_id: &str,
        version: &str,
        source_table: &str,
        rejects: &[NewReject],
    ) -> Result<(), sqlx::Error> {
        let now = crate::engine::clock::now_iso();
        // Several rows per statement: rejects can come in bulk when a whole batch waits.
        for chunk in rejects.chunks(50) {
            let mut sql = format!(
                "INSERT INTO {REJECTS} (run_id, version, source_table, source_key, row_json, field, rule, reason, level, waits_for_table, waits_for_key, state, created_at) VALUES "
            );
            let mut params = Vec::with_capacity(chunk.len() * 13);
            for (i, r) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let b = i * 13;
                sql.push('(');
                for j in 1..=13 {
                    if j > 1 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("${}", b + j));
                }
                sql.push(')');
                let opt = |s: Option<&String>| s.map(|s| Value::Text(s.clone())).unwrap_or(Value::Null);
                params.extend([
                    Value::Text(run_id.into()),
                    Value::Text(version.into()),
                    Value::Text(source_table.into()),
                    Value::Text(r.source_key.clone()),
                    Value::Text(r.row.to_string()),
                    opt(r.field.as_ref()),
                    Value::Text(r.rule.clone()),
                    Value::Text(r.reason.clone()),
                    Value::Text(if r.warning { "warning".into() } else { "error".into() }),
                    opt(r.waits_for.as_ref().map(|w| &w.0)),
                    opt(r.waits_for.as_ref().map(|w| &w.1)),
                    Value::Text(if r.warning { "noted".into() } else { "open".into() }),
                    Value::Text(now.clone()),
                ]);
            }
            tx.execute(&sql, &params).await?;
        }
        Ok(())
    }

    pub async fn list(db: &Db, f: &RejectFilter) -> Result<Vec<RejectRecord>> {
        if !db.table_exists(REJECTS).await? {
            return Ok(Vec::new());
        }
        let (filter, params) = f.where_clause();
        let sql = format!("SELECT {REJECT_COLUMNS} FROM {REJECTS} {filter} ORDER BY id");
        Ok(db
            .fetch_all(&sql, &params)
            .await?
            .rows
            .iter()
            .map(|r| reject_from(r))
            .collect())
    }

    /// How many rejects match the filter.
    pub async fn count(db: &Db, f: &RejectFilter) -> Result<u64> {
        if !db.table_exists(REJECTS).await? {
            return Ok(0);
        }
        let (filter, params) = f.where_clause();
        let rows = db
            .fetch_all(&format!("SELECT COUNT(*) FROM {REJECTS} {filter}"), &params)
            .await?;
        Ok(match rows.rows.first().and_then(|r| r.first()) {
            Some(Value::Int(n)) => (*n).max(0) as u64,
            _ => 0,
        })
    }

    /// One page of the rejects matching the filter, oldest first: `limit` rows after the
    /// first `offset`.
    pub async fn page(db: &Db, f: &RejectFilter, offset: u64, limit: u64) -> Result<Vec<RejectRecord>> {
        if !db.table_exists(REJECTS).await? {
            return Ok(Vec::new());
        }
        let (filter, params) = f.where_clause();
        // Numbers, not user text: written into the statement (MySQL takes no LIMIT parameter
        // of every type).
        let sql = format!("SELECT {REJECT_COLUMNS} FROM {REJECTS} {filter} ORDER BY id LIMIT {limit} OFFSET {offset}");
        Ok(db
            .fetch_all(&sql, &params)
            .await?
            .rows
            .iter()
            .map(|r| reject_from(r))
            .collect())
    }

    /// The next `limit` rejects matching the filter with an id above `after_id`, oldest first:
    /// keyset paging, for reading all of them a chunk at a time.
    pub async fn chunk_after(db: &Db, f: &RejectFilter, after_id: i64, limit: u64) -> Result<Vec<RejectRecord>> {
        if !db.table_exists(REJECTS).await? {
            return Ok(Vec::new());
        }
        let (filter, mut params) = f.where_clause();
        params.push(Value::Int(after_id));
        let sql = format!(
            "SELECT {REJECT_COLUMNS} FROM {REJECTS} {filter} AND id > ${} ORDER BY id LIMIT {limit}",
            params.len()
        );
        Ok(db
            .fetch_all(&sql, &params)
            .await?
            .rows
            .iter()
            .map(|r| reject_from(r))
            .collect())
    }

    /// Open rejected rows (errors, not warnings) per step version.
    pub async fn open_by_step(db: &Db) -> Result<std::collections::BTreeMap<String, u64>> {
        let mut out = std::collections::BTreeMap::new();
        if !db.table_exists(REJECTS).await? {
            return Ok(out);
        }
        let rows = db
            .fetch_all(
                &format!(
                    "SELECT version, COUNT(*) FROM {REJECTS} WHERE level = 'error' AND state = 'open' GROUP BY version"
                ),
                &[],
            )
            .await?;
        for r in rows.rows {
            if let (Some(v), Some(Value::Int(n))) = (r.first().and_then(|v| v.to_text()), r.get(1)) {
                out.insert(v, (*n).max(0) as u64);
            }
        }
        Ok(out)
    }

    pub async fn get(tx: &mut DbTx, id: i64) -> Result<Option<RejectRecord>> {
        Ok(tx
            .fetch_optional(
                &format!("SELECT {REJECT_COLUMNS} FROM {REJECTS} WHERE id = $1"),
                &[Value::Int(id)],
            )
            .await?
            .map(|r| reject_from(&r)))
    }

    /// Open rejects among `keys` of `source_table`: the rows a lookup is waiting for.
    pub async fn open_keys(
        tx: &mut DbTx,
        source_table: &str,
        keys: &[String],
    ) -> Result<std::collections::HashSet<String>, sqlx::Error> {
        let mut out = std::collections::HashSet::new();
        for chunk in keys.chunks(500) {
            let mut sql = format!(
                "SELECT DISTINCT source_key FROM {REJECTS} WHERE source_table = $1 AND level = 'error' AND state = 'open' AND source_key IN ("
            );
            let mut params = vec![Value::Text(source_table.into())];
            for (i, k) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                params.push(Value::Text(k.clone()));
                sql.push_str(&format!("${}", params.len()));
            }
            sql.push(')');
            for r in tx.fetch_all(&sql, &params).await?.rows {
                if let Some(k) = r.first().and_then(|v| v.to_text()) {
                    out.insert(k);
                }
            }
        }
        Ok(out)
    }

    /// Open rejected rows (errors) of `source_table` whose stored source row holds, in column
    /// `column`, one of `values` once trimmed and case-folded by `fold`: value -> that row's
    /// source key (the oldest reject when several hold it). What a natural-key lookup waits
    /// for. The row is JSON text, so the matching is done by the database (one statement per
    /// 500 values), reading only this source's open rejects.
    pub async fn open_by_row_value(
        tx: &mut DbTx,
        source_table: &str,
        column: &str,
        fold: Option<Normalize>,
        values: &[String],
    ) -> Result<std::collections::HashMap<String, String>, sqlx::Error> {
        let mut out = std::collections::HashMap::new();
        let d = tx.dialect();
        let cell = format!("TRIM({})", d.json_text_at("row_json", "$2"));
        let folded = match fold {
            Some(Normalize::Upper) => format!("UPPER({cell})"),
            Some(Normalize::Lower) => format!("LOWER({cell})"),
            None => cell,
        };
        for chunk in values.chunks(500) {
            let mut sql = format!(
                "SELECT source_key, {folded} FROM {REJECTS} WHERE source_table = $1 AND level = 'error' AND state = 'open' AND {folded} IN ("
            );
            let mut params = vec![Value::Text(source_table.into()), Value::Text(d.json_key_param(column))];
            for (i, v) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                params.push(Value::Text(v.clone()));
                sql.push_str(&format!("${}", params.len()));
            }
            sql.push_str(") ORDER BY id");
            for r in tx.fetch_all(&sql, &params).await?.rows {
                if let (Some(key), Some(value)) =
                    (r.first().and_then(|v| v.to_text()), r.get(1).and_then(|v| v.to_text()))
                {
                    out.entry(value).or_insert(key);
                }
            }
        }
        Ok(out)
    }

    pub async fn resolve(tx: &mut DbTx, id: i64) -> Result<(), sqlx::Error> {
        tx.execute(
            &format!("UPDATE {REJECTS} SET state = 'resolved', resolved_at = $1 WHERE id = $2"),
            &[Value::Text(crate::engine::clock::now_iso()), Value::Int(id)],
        )
        .await?;
        Ok(())
    }

    pub async fn set_row(tx: &mut DbTx, id: i64, row: &serde_json::Value) -> Result<(), sqlx::Error> {
        tx.execute(
            &format!("UPDATE {REJECTS} SET row_json = $1 WHERE id = $2"),
            &[Value::Text(row.to_string()), Value::Int(id)],
        )
        .await?;
        Ok(())
    }

    /// Open rejects waiting for `table` `key`.
    pub async fn waiting_for(tx: &mut DbTx, table: &str, key: &str) -> Result<Vec<i64>, sqlx::Error> {
        let rows = tx
            .fetch_all(
                &format!("SELECT id FROM {REJECTS} WHERE waits_for_table = $1 AND waits_for_key = $2 AND state = 'open' ORDER BY id"),
                &[Value::Text(table.into()), Value::Text(key.into())],
            )
            .await?;
        Ok(first_ints(&rows))
    }
}

/// The first column of each row as an integer (row ids), rows without one left out.
pub(crate) fn first_ints(rows: &crate::engine::db::Rows) -> Vec<i64> {
    rows.rows
        .iter()
        .filter_map(|r| match r.first() {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::DbUrl;
    use crate::engine::db::Role;

    async fn target(dir: &std::path::Path) -> Db {
        let db = Db::connect(&DbUrl::new("sqlite://target.db"), dir, Role::Target)
            .await
            .unwrap();
        ensure(&db).await.unwrap();
        db
    }

    fn reject(key: &str, warning: bool, waits_for: Option<(&str, &str)>) -> NewReject {
        NewReject {
            source_key: key.into(),
            row: serde_json::json!({"id": key, "password_hash": "$2b$secret"}),
            field: Some("email".into()),
            rule: "email".into(),
            reason: "not an email".into(),
            warning,
            waits_for: waits_for.map(|(t, k)| (t.into(), k.into())),
        }
    }

    #[tokio::test]
    async fn a_checkpoint_round_trips_and_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let db = target(dir.path()).await;
        let mut tx = db.begin().await.unwrap();
        assert_eq!(BatchCheckpoint::load(&mut tx, "v1").await.unwrap(), None);
        let cp = BatchCheckpoint {
            last_key: Some(Value::Json(serde_json::json!(["a", 7]))),
            counts: Counts {
                source: 10,
                written: 7,
                skipped: 1,
                rejected: 2,
                merged: 0,
                warnings: 3,
            },
            batches: 4,
        };
        cp.save(&mut tx, "v1").await.unwrap();
        // saving again replaces, never adds a second row
        let later = BatchCheckpoint {
            batches: 5,
            ..cp.clone()
        };
        later.save(&mut tx, "v1").await.unwrap();
        assert_eq!(BatchCheckpoint::load(&mut tx, "v1").await.unwrap(), Some(later));
        BatchCheckpoint::delete(&mut tx, "v1").await.unwrap();
        assert_eq!(BatchCheckpoint::load(&mut tx, "v1").await.unwrap(), None);
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn rejects_are_stored_filtered_resolved_and_wait_for_their_parent() {
        let dir = tempfile::tempdir().unwrap();
        let db = target(dir.path()).await;
        let mut tx = db.begin().await.unwrap();
        RejectStore::insert(
            &mut tx,
            "run",
            "v1",
            "users",
            &[reject("u1", false, None), reject("u2", true, None)],
        )
        .await
        .unwrap();
        RejectStore::insert(
            &mut tx,
            "run",
            "v2",
            "orders",
            &[reject("o9", false, Some(("users", "u1")))],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let open = RejectStore::list(
            &db,
            &RejectFilter {
                open_only: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let keys: Vec<&str> = open.iter().map(|r| r.source_key.as_str()).collect();
        assert_eq!(keys.len(), 2, "warnings are not open rejects: {keys:?}");
        assert!(keys.contains(&"u1") && keys.contains(&"o9"));
        let v1 = RejectStore::list(
            &db,
            &RejectFilter {
                step: Some("v1".into()),
                include_warnings: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(v1.len(), 2);
        assert!(v1.iter().any(|r| r.level == "warning" && r.source_key == "u2"));
        // the row is stored whole; showing it redacts secrets
        let u1 = v1.iter().find(|r| r.source_key == "u1").unwrap();
        assert_eq!(u1.row["password_hash"], "$2b$secret");
        assert_ne!(redacted_row(&u1.row)["password_hash"], "$2b$secret");

        let mut tx = db.begin().await.unwrap();
        let waiting = RejectStore::waiting_for(&mut tx, "users", "u1").await.unwrap();
        let o9 = open.iter().find(|r| r.source_key == "o9").unwrap();
        assert_eq!(waiting, [o9.id]);
        RejectStore::resolve(&mut tx, u1.id).await.unwrap();
        let got = RejectStore::get(&mut tx, u1.id).await.unwrap().unwrap();
        assert_eq!(got.state, "resolved");
        assert!(got.resolved_at.is_some());
        tx.commit().await.unwrap();
        let open = RejectStore::list(
            &db,
            &RejectFilter {
                open_only: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(open.len(), 1);
    }

    #[tokio::test]
    async fn open_rejects_are_found_by_a_value_of_their_row() {
        let dir = tempfile::tempdir().unwrap();
        let db = target(dir.path()).await;
        let row = |key: &str, row: serde_json::Value, warning: bool| NewReject {
            source_key: key.into(),
            row,
            field: Some("mrn".into()),
            rule: "date".into(),
            reason: "bad".into(),
            warning,
            waits_for: None,
        };
        let mut tx = db.begin().await.unwrap();
        RejectStore::insert(
            &mut tx,
            "run",
            "v1",
            "patients",
            &[
                row(
                    "4",
                    serde_json::json!({"_line": 4, "mrn": " mrn-4 ", "email": "A@X.org"}),
                    false,
                ),
                row(
                    "9",
                    serde_json::json!({"_line": 9, "mrn": "MRN-4", "email": null}),
                    false,
                ),
                row("5", serde_json::json!({"_line": 5, "mrn": "mrn-5"}), true),
                row("6", serde_json::json!({"_line": 6, "mrn": 6}), false),
            ],
        )
        .await
        .unwrap();
        RejectStore::insert(
            &mut tx,
            "run",
            "v2",
            "orders",
            &[row("3", serde_json::json!({"mrn": "MRN-3"}), false)],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let oldest = RejectStore::list(&db, &RejectFilter::default()).await.unwrap()[0].id;
        let mut tx = db.begin().await.unwrap();
        let found = RejectStore::open_by_row_value(
            &mut tx,
            "patients",
            "mrn",
            Some(Normalize::Upper),
            &["MRN-4".into(), "MRN-5".into(), "MRN-3".into(), "6".into()],
        )
        .await
        .unwrap();
        // Trimmed and upper-cased; the oldest of two; a warning is not a rejected row; another
        // source's rejects are not looked at; a number in the row compares as its text.
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found["MRN-4"], "4");
        assert_eq!(found["6"], "6");
        let by_email = RejectStore::open_by_row_value(
            &mut tx,
            "patients",
            "email",
            Some(Normalize::Lower),
            &["a@x.org".into(), "null".into()],
        )
        .await
        .unwrap();
        assert_eq!(by_email.len(), 1, "a JSON null is no value: {by_email:?}");
        assert_eq!(by_email["a@x.org"], "4");
        // Resolved rejects no longer hold anything.
        RejectStore::resolve(&mut tx, oldest).await.unwrap();
        let after =
            RejectStore::open_by_row_value(&mut tx, "patients", "mrn", Some(Normalize::Upper), &["MRN-4".into()])
                .await
                .unwrap();
        assert_eq!(after["MRN-4"], "9");
        tx.commit().await.unwrap();
    }

    /// The ID map's layout on SQLite: one B-tree keyed by (map, old_key) for a new store; a
    /// store made before (a rowid table with the key as an index) is kept as it is. Both
    /// answer a page's lookup with the same ids and aliases.
    #[tokio::test]
    async fn the_sqlite_id_map_is_one_tree_and_a_map_made_before_still_answers() {
        for made_before in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::connect(&DbUrl::new("sqlite://target.db"), dir.path(), Role::Target)
                .await
                .unwrap();
            if made_before {
                db.execute(
                    &format!("CREATE TABLE {ID_MAP} (map TEXT NOT NULL, old_key TEXT NOT NULL, new_id TEXT NOT NULL, version TEXT NOT NULL, alias INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (map, old_key))"),
                    &[],
                )
                .await
                .unwrap();
            }
            ensure(&db).await.unwrap();
            let ddl = db
                .fetch_all(&format!("SELECT sql FROM sqlite_master WHERE name = '{ID_MAP}'"), &[])
                .await
                .unwrap()
                .rows[0][0]
                .to_text()
                .unwrap();
            assert_eq!(ddl.ends_with("WITHOUT ROWID"), !made_before, "{ddl}");
            let mut tx = db.begin().await.unwrap();
            for (map, old, new, alias) in [
                ("patients", "1", "p-1", 0),
                ("patients", "2", "p-2", 0),
                ("children", "1", "p-1", 1),
            ] {
                tx.execute(
                    &format!(
                        "INSERT INTO {ID_MAP} (map, old_key, new_id, version, alias) VALUES ($1, $2, $3, 'v1', $4)"
                    ),
                    &[
                        Value::Text(map.into()),
                        Value::Text(old.into()),
                        Value::Text(new.into()),
                        Value::Int(alias),
                    ],
                )
                .await
                .unwrap();
            }
            let same_key_twice = tx
                .execute(
                    &format!(
                        "INSERT INTO {ID_MAP} (map, old_key, new_id, version) VALUES ('patients', '1', 'other', 'v2')"
                    ),
                    &[],
                )
                .await;
            assert!(same_key_twice.is_err(), "a key is mapped once per map");
            let found = sync_marks::mapped(&mut tx, "patients", &["1", "2", "3"]).await.unwrap();
            assert_eq!(found.len(), 2, "{found:?}");
            assert_eq!(found["1"].new_id, "p-1");
            assert_eq!(found["2"].new_id, "p-2");
            let found = sync_marks::mapped(&mut tx, "children", &["1"]).await.unwrap();
            assert_eq!(
                found["1"],
                sync_marks::Mapped {
                    new_id: "p-1".into(),
                    alias: true
                }
            );
            tx.commit().await.unwrap();
        }
    }
}
