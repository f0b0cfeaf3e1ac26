//! Indexes a step dropped from the empty table it fills and builds again once its rows are in:
//! one `CREATE INDEX` over a million rows costs a fraction of keeping the index up to date
//! row by row (PostgreSQL: two plain text indexes of the import's patients, 7.8 s row by row
//! against 1.9 s built after). Each dropped index is recorded here, in the transaction that
//! drops it, so a run killed before it built them again leaves a record that the next `up`,
//! `down` or `sync` acts on first.

use crate::engine::db::{Db, SecondaryIndex};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, WrapErr};

pub const DEFERRED_INDEXES: &str = "cutover_deferred_indexes";

/// The table's DDL for `store::ensure_in` (created with the tool's other tables).
pub fn create_statements(d: crate::engine::db::Dialect) -> Vec<String> {
    let version = d.key_text(64);
    let name = d.key_text(191);
    vec![format!(
        "CREATE TABLE IF NOT EXISTS {DEFERRED_INDEXES} (version {version} NOT NULL, index_name {name} NOT NULL, table_name TEXT NOT NULL, create_sql TEXT NOT NULL, deferred_at TEXT NOT NULL, PRIMARY KEY (version, index_name)){}",
        d.table_options()
    )]
}

/// An index waiting to be built again.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingIndex {
    pub version: String,
    pub index_name: String,
    pub table_name: String,
    pub create_sql: String,
}

/// Record `indexes` of `table` for step `version` and drop them, in one transaction (the
/// step's start has made the tool's tables).
pub async fn defer(db: &Db, version: &str, table: &str, indexes: &[SecondaryIndex]) -> Result<()> {
    let mut tx = db.begin().await?;
    let now = crate::engine::clock::now_iso();
    for i in indexes {
        tx.execute(
            &format!(
                "INSERT INTO {DEFERRED_INDEXES} (version, index_name, table_name, create_sql, deferred_at) VALUES ($1, $2, $3, $4, $5)"
            ),
            &[
                Value::Text(version.into()),
                Value::Text(i.name.clone()),
                Value::Text(table.into()),
                Value::Text(i.create_sql.clone()),
                Value::Text(now.clone()),
            ],
        )
        .await?;
        tx.execute(&i.drop_sql, &[]).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The indexes waiting to be built: of step `version`, or of every step.
pub async fn pending(db: &Db, version: Option<&str>) -> Result<Vec<PendingIndex>> {
    if !db.table_exists(DEFERRED_INDEXES).await? {
        return Ok(Vec::new());
    }
    let columns = "version, index_name, table_name, create_sql";
    let rows = match version {
        Some(v) => {
            db.fetch_all(
                &format!("SELECT {columns} FROM {DEFERRED_INDEXES} WHERE version = $1 ORDER BY index_name"),
                &[Value::Text(v.into())],
            )
            .await?
        }
        None => {
            db.fetch_all(
                &format!("SELECT {columns} FROM {DEFERRED_INDEXES} ORDER BY version, index_name"),
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
            Some(PendingIndex {
                version: text(0)?,
                index_name: text(1)?,
                table_name: text(2)?,
                create_sql: text(3)?,
            })
        })
        .collect())
}

/// What building the pending indexes did.
#[derive(Debug, Default, PartialEq)]
pub struct Rebuilt {
    /// `table.index` of each index built.
    pub built: Vec<String>,
    /// Records dropped without building: their table is gone (a rollback dropped it).
    pub gone: Vec<String>,
}

/// Build the pending indexes (of `version`, or all), each in a transaction with the removal
/// of its record, so a build cut short leaves the record for the next run. `CREATE INDEX IF
/// NOT EXISTS` makes a build that already happened harmless.
pub async fn rebuild(db: &Db, version: Option<&str>) -> Result<Rebuilt> {
    let mut done = Rebuilt::default();
    for p in pending(db, version).await? {
        let what = format!("{}.{}", p.table_name, p.index_name);
        let forget = format!("DELETE FROM {DEFERRED_INDEXES} WHERE version = $1 AND index_name = $2");
        let key = [Value::Text(p.version.clone()), Value::Text(p.index_name.clone())];
        let exists = db.table_exists(&p.table_name).await?;
        let mut tx = db.begin().await?;
        if exists {
            tx.execute(&p.create_sql, &[]).await.wrap_err_with(|| {
                format!(
                    "building the index {} of {} again (step {} built its table without it): {}",
                    p.index_name, p.table_name, p.version, p.create_sql
                )
            })?;
            done.built.push(what);
        } else {
            done.gone.push(what);
        }
        tx.execute(&forget, &key).await?;
        tx.commit().await?;
    }
    Ok(done)
}
