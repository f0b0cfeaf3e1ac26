//! Indexes a step dropped from the empty table it fills and builds again once its rows are in:
//! one `CREATE INDEX` over a million rows costs a fraction of keeping the index up to date
//! row by row (PostgreSQL: two plain text indexes of the import's patients, 7.8 s row by row
//! against 1.9 s built after). Each dropped index is recorded here, in the transaction that
//! drops it, so a run killed before it built them again leaves a record that the next `up`,
//! `down` or `sync` acts on first.

use crate::engine::db::{Db, SecondaryIndex};
use crate::engine::store::deferred_ddl::{DeferredDdl, Dropped, PutBack};
use color_eyre::eyre::Result;

pub const DEFERRED_INDEXES: &str = "cutover_deferred_indexes";

const RECORDS: DeferredDdl = DeferredDdl {
    table: DEFERRED_INDEXES,
    name_column: "index_name",
    sql_column: "create_sql",
};

/// The table's DDL for `store::ensure_in` (created with the tool's other tables).
pub fn create_statements(d: crate::engine::db::Dialect) -> Vec<String> {
    RECORDS.create_statements(d)
}

/// Record `indexes` of `table` for step `version` and drop them, in one transaction (the
/// step's start has made the tool's tables).
pub async fn defer(db: &Db, version: &str, table: &str, indexes: &[SecondaryIndex]) -> Result<()> {
    let pieces: Vec<Dropped> = indexes
        .iter()
        .map(|i| Dropped {
            name: &i.name,
            sql: &i.create_sql,
            drop_sql: &i.drop_sql,
        })
        .collect();
    RECORDS.record_and_drop(db, version, table, &pieces).await
}

/// Build the pending indexes (of `version`, or all), each in a transaction with the removal
/// of its record, so a build cut short leaves the record for the next run. `CREATE INDEX IF
/// NOT EXISTS` makes a build that already happened harmless.
pub async fn rebuild(db: &Db, version: Option<&str>) -> Result<PutBack> {
    RECORDS
        .put_back(db, version, |p| {
            format!(
                "building the index {} of {} again (step {} built its table without it): {}",
                p.name, p.table_name, p.version, p.sql
            )
        })
        .await
}
