//! The rows a step without an ID map wrote, by natural key, so its rollback deletes exactly
//! those rows and no row that was there before it. One record per page: a JSON array of the
//! page's natural keys (each an array of the key's values). A per-row entry (in the ID map,
//! as such steps kept before) cost the target a row and two index entries for every row
//! written: on a plain copy, more work than the copy itself. A step with `[sync]` still keeps
//! per-key entries in the ID map, because sync looks its rows up by source key.

use crate::engine::db::DbTx;
use crate::engine::value::Value;

pub const WRITTEN_KEYS: &str = "cutover_written_keys";

/// The table's DDL for `store::ensure_in` (created with the tool's other tables);
/// `compression` is [`DbTx::fast_compression`]'s clause for the keys.
pub fn create_statements(tx: &DbTx, compression: &str) -> Vec<String> {
    let d = tx.dialect();
    let version = d.key_text(64);
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {WRITTEN_KEYS} (id {}, version {version} NOT NULL, row_count BIGINT NOT NULL, keys_json TEXT{compression} NOT NULL){}",
            d.serial_primary_key(),
            d.table_options()
        ),
        format!("CREATE INDEX IF NOT EXISTS {WRITTEN_KEYS}_version ON {WRITTEN_KEYS} (version)"),
    ]
}

/// Record the natural keys of rows a page of `version` wrote, inside the page's transaction;
/// each key is the JSON text of an array of the key's values.
pub async fn record(tx: &mut DbTx, version: &str, keys: &[&str]) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut json = String::with_capacity(2 + keys.iter().map(|k| k.len() + 1).sum::<usize>());
    json.push('[');
    json.push_str(&keys.join(","));
    json.push(']');
    tx.execute(
        &format!("INSERT INTO {WRITTEN_KEYS} (version, row_count, keys_json) VALUES ($1, $2, $3)"),
        &[
            Value::Text(version.into()),
            Value::Int(keys.len() as i64),
            Value::Text(json),
        ],
    )
    .await?;
    Ok(())
}

/// How many rows `version` wrote by this log.
pub async fn count(tx: &mut DbTx, version: &str) -> Result<u64, sqlx::Error> {
    let r = tx
        .fetch_optional(
            &format!("SELECT COALESCE(SUM(row_count), 0) FROM {WRITTEN_KEYS} WHERE version = $1"),
            &[Value::Text(version.into())],
        )
        .await?;
    Ok(r.and_then(|r| r.into_iter().next())
        .and_then(|v| v.as_count())
        .unwrap_or(0))
}

/// The ids of `version`'s records, in the order they were written (read one at a time with
/// [`page`], so a rollback holds one page of keys, not the step's).
pub async fn record_ids(tx: &mut DbTx, version: &str) -> Result<Vec<i64>, sqlx::Error> {
    let rows = tx
        .fetch_all(
            &format!("SELECT id FROM {WRITTEN_KEYS} WHERE version = $1 ORDER BY id"),
            &[Value::Text(version.into())],
        )
        .await?;
    Ok(super::first_ints(&rows))
}

/// The natural keys of one record. A record that does not parse is an error naming it: a
/// rollback must not silently leave rows behind.
pub async fn page(tx: &mut DbTx, id: i64) -> Result<Vec<Vec<Value>>, sqlx::Error> {
    let r = tx
        .fetch_optional(
            &format!("SELECT keys_json FROM {WRITTEN_KEYS} WHERE id = $1"),
            &[Value::Int(id)],
        )
        .await?;
    let Some(text) = r.and_then(|r| r.into_iter().next()).and_then(|v| v.to_text()) else {
        return Ok(Vec::new());
    };
    let keys: Vec<Vec<serde_json::Value>> = serde_json::from_str(&text).map_err(|e| {
        sqlx::Error::Protocol(format!(
            "{WRITTEN_KEYS} record {id} is not a JSON array of keys ({e}); the rows it names cannot be found"
        ))
    })?;
    Ok(keys.iter().map(|k| k.iter().map(Value::from_json).collect()).collect())
}

/// Forget `version`'s records (its rollback is done).
pub async fn delete(tx: &mut DbTx, version: &str) -> Result<(), sqlx::Error> {
    tx.execute(
        &format!("DELETE FROM {WRITTEN_KEYS} WHERE version = $1"),
        &[Value::Text(version.into())],
    )
    .await?;
    Ok(())
}
