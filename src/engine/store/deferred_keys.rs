//! Foreign keys a step dropped from the empty table it fills and adds back once its rows are
//! in: on PostgreSQL each referencing row otherwise runs a trigger that looks up and locks its
//! parent row (the clinic's `parent_child_views`, 250k rows: 7.7 s with its two keys, 3.5 s
//! without them, 0.44 s to add them after). Each dropped key is recorded here, in the
//! transaction that drops it, so a run killed before it added them back leaves a record that
//! the next `up`, `down` or `sync` acts on first.

use crate::engine::db::{Db, DbTx, TableForeignKey};
use crate::engine::store::{ID_MAP, REJECTS};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, WrapErr};

pub const DEFERRED_KEYS: &str = "cutover_deferred_keys";

/// The table's DDL for `store::ensure_in` (created with the tool's other tables).
pub fn create_statements(d: crate::engine::db::Dialect) -> Vec<String> {
    let version = d.key_text(64);
    let name = d.key_text(191);
    vec![format!(
        "CREATE TABLE IF NOT EXISTS {DEFERRED_KEYS} (version {version} NOT NULL, constraint_name {name} NOT NULL, table_name TEXT NOT NULL, add_sql TEXT NOT NULL, deferred_at TEXT NOT NULL, PRIMARY KEY (version, constraint_name)){}",
        d.table_options()
    )]
}

/// A foreign key waiting to be added back.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingKey {
    pub version: String,
    pub constraint_name: String,
    pub table_name: String,
    pub add_sql: String,
}

/// Record `keys` of `table` for step `version` and drop them, in one transaction.
pub async fn defer(db: &Db, version: &str, table: &str, keys: &[TableForeignKey]) -> Result<()> {
    let mut tx = db.begin().await?;
    let now = crate::engine::clock::now_iso();
    for k in keys {
        tx.execute(
            &format!(
                "INSERT INTO {DEFERRED_KEYS} (version, constraint_name, table_name, add_sql, deferred_at) VALUES ($1, $2, $3, $4, $5)"
            ),
            &[
                Value::Text(version.into()),
                Value::Text(k.name.clone()),
                Value::Text(table.into()),
                Value::Text(k.add_sql.clone()),
                Value::Text(now.clone()),
            ],
        )
        .await?;
        tx.execute(&k.drop_sql, &[]).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The keys waiting to be added back: of step `version`, or of every step.
pub async fn pending(db: &Db, version: Option<&str>) -> Result<Vec<PendingKey>> {
    if !db.table_exists(DEFERRED_KEYS).await? {
        return Ok(Vec::new());
    }
    let columns = "version, constraint_name, table_name, add_sql";
    let rows = match version {
        Some(v) => {
            db.fetch_all(
                &format!("SELECT {columns} FROM {DEFERRED_KEYS} WHERE version = $1 ORDER BY constraint_name"),
                &[Value::Text(v.into())],
            )
            .await?
        }
        None => {
            db.fetch_all(
                &format!("SELECT {columns} FROM {DEFERRED_KEYS} ORDER BY version, constraint_name"),
                &[],
            )
            .await?
        }
    };
    Ok(rows
        .rows
        .into_iter()
        .filter_map(|r| {
            let text = |i: usize| r.get(i).and_then(Value::as_str).map(str::to_string);
            Some(PendingKey {
                version: text(0)?,
                constraint_name: text(1)?,
                table_name: text(2)?,
                add_sql: text(3)?,
            })
        })
        .collect())
}

/// Add `key` back and forget its record, inside `tx`: both commit together, so a run cut
/// short leaves the record and the key missing, never one without the other.
pub async fn add_back_in(tx: &mut DbTx, key: &PendingKey) -> Result<(), sqlx::Error> {
    tx.execute(&key.add_sql, &[]).await?;
    tx.execute(
        &format!("DELETE FROM {DEFERRED_KEYS} WHERE version = $1 AND constraint_name = $2"),
        &[
            Value::Text(key.version.clone()),
            Value::Text(key.constraint_name.clone()),
        ],
    )
    .await?;
    Ok(())
}

/// What adding back the pending keys did.
#[derive(Debug, Default, PartialEq)]
pub struct Restored {
    /// `table.constraint` of each key added.
    pub added: Vec<String>,
    /// Records dropped without adding: their table is gone (a rollback dropped it).
    pub gone: Vec<String>,
}

/// Add back the pending keys (of `version`, or all) as they are, each in a transaction of its
/// own. A key that refuses rows fails with the server's reason and keeps its record.
pub async fn restore(db: &Db, version: Option<&str>) -> Result<Restored> {
    let mut done = Restored::default();
    for k in pending(db, version).await? {
        let what = format!("{}.{}", k.table_name, k.constraint_name);
        let exists = db.table_exists(&k.table_name).await?;
        let mut tx = db.begin().await?;
        if exists {
            add_back_in(&mut tx, &k).await.wrap_err_with(|| {
                format!(
                    "adding the foreign key {} of {} again (step {} wrote its table without it): {}",
                    k.constraint_name, k.table_name, k.version, k.add_sql
                )
            })?;
            done.added.push(what);
        } else {
            tx.execute(
                &format!("DELETE FROM {DEFERRED_KEYS} WHERE version = $1 AND constraint_name = $2"),
                &[Value::Text(k.version.clone()), Value::Text(k.constraint_name.clone())],
            )
            .await?;
            done.gone.push(what);
        }
        tx.commit().await?;
    }
    Ok(done)
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
    for k in &done.added {
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
