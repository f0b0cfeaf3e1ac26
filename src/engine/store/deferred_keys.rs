//! Foreign keys a step dropped from the empty table it fills and adds back once its rows are
//! in: on PostgreSQL each referencing row otherwise runs a trigger that looks up and locks its
//! parent row (the clinic's `parent_child_views`, 250k rows: 7.7 s with its two keys, 3.5 s
//! without them, 0.44 s to add them after). Each dropped key is recorded here, in the
//! transaction that drops it, so a run killed before it added them back leaves a record that
//! the next `up`, `down` or `sync` acts on first.

use crate::engine::db::{Db, DbTx, TableForeignKey};
use crate::engine::store::deferred_ddl::{DeferredDdl, Dropped, Pending, PutBack};
use crate::engine::store::{ID_MAP, REJECTS};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, WrapErr};

pub const DEFERRED_KEYS: &str = "cutover_deferred_keys";

const RECORDS: DeferredDdl = DeferredDdl {
    table: DEFERRED_KEYS,
    name_column: "constraint_name",
    sql_column: "add_sql",
};

/// The table's DDL for `store::ensure_in` (created with the tool's other tables).
pub fn create_statements(d: crate::engine::db::Dialect) -> Vec<String> {
    RECORDS.create_statements(d)
}

/// Record `keys` of `table` for step `version` and drop them, in one transaction.
pub async fn defer(db: &Db, version: &str, table: &str, keys: &[TableForeignKey]) -> Result<()> {
    let pieces: Vec<Dropped> = keys
        .iter()
        .map(|k| Dropped {
            name: &k.name,
            sql: &k.add_sql,
            drop_sql: &k.drop_sql,
        })
        .collect();
    RECORDS.record_and_drop(db, version, table, &pieces).await
}

/// Add `key` back and forget its record, inside `tx`: both commit together, so a run cut
/// short leaves the record and the key missing, never one without the other.
pub async fn add_back_in(tx: &mut DbTx, key: &Pending) -> Result<(), sqlx::Error> {
    RECORDS.put_back_in(tx, key).await
}

/// Add back the pending keys (of `version`, or all) as they are, each in a transaction of its
/// own. A key that refuses rows fails with the server's reason and keeps its record.
pub async fn restore(db: &Db, version: Option<&str>) -> Result<PutBack> {
    RECORDS
        .put_back(db, version, |k| {
            format!(
                "adding the foreign key {} of {} again (step {} wrote its table without it): {}",
                k.name, k.table_name, k.version, k.sql
            )
        })
        .await
}

/// Before a command that writes outside a run goes ahead under the run lock (`rejects retry`,
/// `review decide`, `review undo`): add back the keys a killed run left out, so nothing it
/// writes skips their checks. A key that cannot be added stops the command, saying what to do.
pub async fn require_in_place(db: &Db, command: &str) -> Result<()> {
    let done = restore(db, None).await.wrap_err_with(|| {
        format!(
            "{command}: an interrupted step left foreign keys out, and adding them back failed; nothing was done. Fix or remove the rows the key refuses, or roll the step back (`cutover down --to` the step before it), and run it again"
        )
    })?;
    for k in &done.done {
        tracing::info!("added back the foreign key {k}, which an interrupted step had left out");
    }
    Ok(())
}

/// The ID-map entries step `version` wrote into `map` for the target ids `new_ids` (the rows
/// a key refused at its end), removed: the legacy key of each row, aliases (duplicates that
/// were skipped onto it) removed with it so no later lookup finds a row that is gone.
pub async fn forget_mapped_rows(
    tx: &mut DbTx,
    map: &str,
    version: &str,
    new_ids: &[String],
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let mut found = Vec::new();
    for chunk in new_ids.chunks(500) {
        let list = placeholders(3, chunk.len());
        let mut params = vec![Value::Text(map.into()), Value::Text(version.into())];
        params.extend(chunk.iter().map(|i| Value::Text(i.clone())));
        let rows = tx
            .fetch_all(
                &format!(
                    "SELECT old_key, new_id FROM {ID_MAP} WHERE map = $1 AND version = $2 AND alias = 0 AND new_id IN ({list})"
                ),
                &params,
            )
            .await?;
        found.extend(
            rows.rows
                .into_iter()
                .filter_map(|r| Some((r.first()?.as_str()?.to_string(), r.get(1)?.as_str()?.to_string()))),
        );
        tx.execute(
            &format!("DELETE FROM {ID_MAP} WHERE map = $1 AND version = $2 AND new_id IN ({list})"),
            &params,
        )
        .await?;
    }
    Ok(found)
}

/// Remove the warnings run `run_id` noted for the rows of `keys` of step `version` (rows that
/// became rejects after all); how many were removed.
pub async fn forget_warnings(tx: &mut DbTx, run_id: &str, version: &str, keys: &[String]) -> Result<u64, sqlx::Error> {
    let mut removed = 0;
    for chunk in keys.chunks(500) {
        let list = placeholders(3, chunk.len());
        let mut params = vec![Value::Text(run_id.into()), Value::Text(version.into())];
        params.extend(chunk.iter().map(|k| Value::Text(k.clone())));
        removed += tx
            .execute(
                &format!(
                    "DELETE FROM {REJECTS} WHERE run_id = $1 AND version = $2 AND level = 'warning' AND source_key IN ({list})"
                ),
                &params,
            )
            .await?;
    }
    Ok(removed)
}

/// `$first, $first+1, ...` for `n` parameters.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
