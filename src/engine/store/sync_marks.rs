//! Incremental sync's high-water marks (`cutover_sync_marks`), one per data step with
//! `[sync]`: the cursor value and source key of the last row a sync batch applied. A mark is
//! saved inside the transaction of the batch it covers, so a sync killed at any instant
//! resumes after its last committed batch with nothing applied twice. The lag the last pass
//! measured is kept beside it for the console's gauge.

use crate::engine::db::{Db, DbTx};
use crate::engine::protocol::views::SyncLag;
use crate::engine::store::{ID_MAP, REJECTS};
use crate::engine::value::Value;
use color_eyre::eyre::Result;
use std::collections::{BTreeMap, HashMap};

pub const SYNC_MARKS: &str = "cutover_sync_marks";

/// Where a step's sync stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncMark {
    /// The cursor value of the last applied row, as text (the first mark: the largest cursor
    /// the source had when `up` started the step).
    pub cursor: Option<String>,
    /// The source key of the last applied row at that cursor value, as JSON (a composite key
    /// is an array); None: every row at `cursor` is read again.
    pub last_key: Option<Value>,
    /// Rows applied by sync so far (inserted, updated, deleted or rejected).
    pub rows_applied: u64,
    pub updated_at: Option<String>,
}

/// Create the table where missing, inside the caller's transaction.
pub async fn ensure_in(tx: &mut DbTx) -> Result<(), sqlx::Error> {
    let d = tx.dialect();
    let version = d.key_text(64);
    let options = d.table_options();
    tx.create_own_tables(&[(
        SYNC_MARKS,
        vec![format!(
            "CREATE TABLE IF NOT EXISTS {SYNC_MARKS} (version {version} PRIMARY KEY, cursor_value TEXT, last_key TEXT, updated_at TEXT NOT NULL, rows_applied BIGINT NOT NULL, lag_rows BIGINT, lag_seconds TEXT, synced_at TEXT){options}"
        )],
    )])
    .await
}

pub async fn ensure(db: &Db) -> Result<()> {
    let mut tx = db.begin().await?;
    ensure_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

impl SyncMark {
    pub async fn load(tx: &mut DbTx, version: &str) -> Result<Option<SyncMark>, sqlx::Error> {
        let r = tx
            .fetch_optional(
                &format!(
                    "SELECT cursor_value, last_key, rows_applied, updated_at FROM {SYNC_MARKS} WHERE version = $1"
                ),
                &[Value::Text(version.into())],
            )
            .await?;
        Ok(r.map(|r| SyncMark {
            cursor: r.first().and_then(|v| v.to_text()),
            last_key: r
                .get(1)
                .and_then(|v| v.as_str())
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                .map(|j| Value::from_json(&j)),
            rows_applied: match r.get(2) {
                Some(Value::Int(n)) => (*n).max(0) as u64,
                _ => 0,
            },
            updated_at: r.get(3).and_then(|v| v.to_text()),
        }))
    }

    /// Save the mark (inside the batch's transaction: the exactly-once point).
    pub async fn save(&self, tx: &mut DbTx, version: &str) -> Result<(), sqlx::Error> {
        let conflict = tx.dialect().upsert_clause(
            &["version"],
            &["cursor_value", "last_key", "updated_at", "rows_applied"],
        );
        tx.execute(
            &format!(
                "INSERT INTO {SYNC_MARKS} (version, cursor_value, last_key, updated_at, rows_applied) VALUES ($1, $2, $3, $4, $5) {conflict}"
            ),
            &[
                Value::Text(version.into()),
                self.cursor.clone().map(Value::Text).unwrap_or(Value::Null),
                self.last_key
                    .as_ref()
                    .map(|k| Value::Text(k.to_json().to_string()))
                    .unwrap_or(Value::Null),
                Value::Text(crate::engine::clock::now_iso()),
                Value::Int(self.rows_applied as i64),
            ],
        )
        .await?;
        Ok(())
    }
}

/// Record the lag a pass measured, for the snapshot's gauge.
pub async fn save_lag(db: &Db, version: &str, lag_rows: u64, lag_seconds: Option<f64>) -> Result<()> {
    db.execute(
        &format!("UPDATE {SYNC_MARKS} SET lag_rows = $1, lag_seconds = $2, synced_at = $3 WHERE version = $4"),
        &[
            Value::Int(lag_rows as i64),
            lag_seconds
                .map(|s| Value::Text(format!("{s:.3}")))
                .unwrap_or(Value::Null),
            Value::Text(crate::engine::clock::now_iso()),
            Value::Text(version.into()),
        ],
    )
    .await?;
    Ok(())
}

/// Every step's mark and last lag, for the snapshot (empty when no sync ever ran).
pub async fn lags(db: &Db) -> Result<BTreeMap<String, SyncLag>> {
    let mut out = BTreeMap::new();
    let mut tx = db.begin().await?;
    let exists = tx
        .table_columns(SYNC_MARKS)
        .await
        .map(|c| !c.is_empty())
        .unwrap_or(false);
    if !exists {
        tx.rollback().await?;
        return Ok(out);
    }
    let rows = tx
        .fetch_all(
            &format!("SELECT version, cursor_value, lag_rows, lag_seconds, synced_at FROM {SYNC_MARKS}"),
            &[],
        )
        .await?;
    tx.rollback().await?;
    for r in rows.rows {
        let Some(version) = r.first().and_then(|v| v.to_text()) else {
            continue;
        };
        out.insert(
            version,
            SyncLag {
                mark: r.get(1).and_then(|v| v.to_text()),
                lag_rows: match r.get(2) {
                    Some(Value::Int(n)) => (*n).max(0) as u64,
                    _ => 0,
                },
                lag_seconds: r.get(3).and_then(|v| v.to_text()).and_then(|s| s.parse().ok()),
                synced_at: r.get(4).and_then(|v| v.to_text()),
            },
        );
    }
    Ok(out)
}

/// A legacy key's ID-map entry: the target id (or natural-key JSON) and whether it is an alias
/// (a duplicate that points at a row another source row wrote).
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub new_id: String,
    pub alias: bool,
}

/// The ID-map entries of `keys` in `map`, aliases included.
pub async fn mapped(tx: &mut DbTx, map: &str, keys: &[&str]) -> Result<HashMap<String, Mapped>, sqlx::Error> {
    let mut found = HashMap::new();
    if keys.is_empty() {
        return Ok(found);
    }
    let mut keep = |rows: Vec<Vec<Value>>| {
        for r in rows {
            if let (Some(k), Some(v)) = (r.first().and_then(|v| v.to_text()), r.get(1).and_then(|v| v.to_text())) {
                let alias = matches!(r.get(2), Some(Value::Int(n)) if *n != 0);
                found.insert(k, Mapped { new_id: v, alias });
            }
        }
    };
    let as_keys: Vec<Vec<Value>> = keys.iter().map(|k| vec![Value::Text((*k).into())]).collect();
    let column = [("old_key".to_string(), None)];
    if let Some((filter, mut params)) = tx.dialect().key_list_filter(&column, &as_keys, 2) {
        params.insert(0, Value::Text(map.into()));
        let sql = format!("SELECT old_key, new_id, alias FROM {ID_MAP} WHERE map = $1 AND {filter}");
        keep(tx.fetch_all(&sql, &params).await?.rows);
        return Ok(found);
    }
    for chunk in keys.chunks(500) {
        let mut sql = format!("SELECT old_key, new_id, alias FROM {ID_MAP} WHERE map = $1 AND old_key IN (");
        let mut params = vec![Value::Text(map.into())];
        for (i, k) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            params.push(Value::Text((*k).into()));
            sql.push_str(&format!("${}", params.len()));
        }
        sql.push(')');
        keep(tx.fetch_all(&sql, &params).await?.rows);
    }
    Ok(found)
}

/// Forget a legacy key whose target row a soft delete removed (so the key, coming back, is
/// inserted and mapped again).
pub async fn unmap(tx: &mut DbTx, map: &str, key: &str) -> Result<(), sqlx::Error> {
    tx.execute(
        &format!("DELETE FROM {ID_MAP} WHERE map = $1 AND old_key = $2"),
        &[Value::Text(map.into()), Value::Text(key.into())],
    )
    .await?;
    Ok(())
}

/// Point a natural-key step's written-row entry at the row's new natural key.
pub async fn remap(tx: &mut DbTx, map: &str, key: &str, new_id: &str) -> Result<(), sqlx::Error> {
    tx.execute(
        &format!("UPDATE {ID_MAP} SET new_id = $1 WHERE map = $2 AND old_key = $3"),
        &[
            Value::Text(new_id.into()),
            Value::Text(map.into()),
            Value::Text(key.into()),
        ],
    )
    .await?;
    Ok(())
}

/// Close the open rejects (errors) of `keys` in step `version`: a sync batch read these rows
/// again, so their newest state is what counts (written now, or rejected again by a reject the
/// batch files after this). Returns how many were closed.
pub async fn supersede_rejects(
    tx: &mut DbTx,
    version: &str,
    source_table: &str,
    keys: &[&str],
) -> Result<u64, sqlx::Error> {
    let mut closed = 0;
    let now = crate::engine::clock::now_iso();
    for chunk in keys.chunks(500) {
        let mut sql = format!(
            "UPDATE {REJECTS} SET state = 'resolved', resolved_at = $1 WHERE version = $2 AND source_table = $3 AND level = 'error' AND state = 'open' AND source_key IN ("
        );
        let mut params = vec![
            Value::Text(now.clone()),
            Value::Text(version.into()),
            Value::Text(source_table.into()),
        ];
        for (i, k) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            params.push(Value::Text((*k).into()));
            sql.push_str(&format!("${}", params.len()));
        }
        sql.push(')');
        closed += tx.execute(&sql, &params).await?;
    }
    Ok(closed)
}
