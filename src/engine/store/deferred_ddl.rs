//! What the records of deferred indexes and deferred foreign keys share: a table of the tool's
//! own holding, per step, each piece of a table's definition the step dropped while it wrote,
//! with the statement that puts it back. A record is written in the transaction that drops
//! the piece and removed in the one that puts it back, so a run killed in between leaves the
//! record for the next command, never a piece missing without one.

use crate::engine::db::{Db, DbTx, Dialect};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, WrapErr};

/// One such table: its name, and the names of its columns for the piece and its statement.
pub struct DeferredDdl {
    pub table: &'static str,
    pub name_column: &'static str,
    pub sql_column: &'static str,
}

/// A piece waiting to be put back.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub version: String,
    /// The index's or constraint's name.
    pub name: String,
    pub table_name: String,
    /// The statement that puts it back.
    pub sql: String,
}

/// What putting the pending pieces back did.
#[derive(Debug, Default, PartialEq)]
pub struct PutBack {
    /// `table.name` of each piece put back.
    pub done: Vec<String>,
    /// Records dropped without putting anything back: their table is gone (a rollback dropped
    /// it).
    pub gone: Vec<String>,
}

/// A piece to drop: its name, the statement that puts it back, the one that drops it.
pub struct Dropped<'a> {
    pub name: &'a str,
    pub sql: &'a str,
    pub drop_sql: &'a str,
}

impl DeferredDdl {
    /// The table's DDL for `store::ensure_in` (created with the tool's other tables).
    pub fn create_statements(&self, d: Dialect) -> Vec<String> {
        let version = d.key_text(64);
        let name = d.key_text(191);
        vec![format!(
            "CREATE TABLE IF NOT EXISTS {} (version {version} NOT NULL, {} {name} NOT NULL, table_name TEXT NOT NULL, {} TEXT NOT NULL, deferred_at TEXT NOT NULL, PRIMARY KEY (version, {})){}",
            self.table,
            self.name_column,
            self.sql_column,
            self.name_column,
            d.table_options()
        )]
    }

    /// Record `pieces` of `table` for step `version` and drop them, in one transaction.
    pub async fn record_and_drop(&self, db: &Db, version: &str, table: &str, pieces: &[Dropped<'_>]) -> Result<()> {
        let mut tx = db.begin().await?;
        let now = crate::engine::clock::now_iso();
        let insert = format!(
            "INSERT INTO {} (version, {}, table_name, {}, deferred_at) VALUES ($1, $2, $3, $4, $5)",
            self.table, self.name_column, self.sql_column
        );
        for p in pieces {
            tx.execute(
                &insert,
                &[
                    Value::Text(version.into()),
                    Value::Text(p.name.into()),
                    Value::Text(table.into()),
                    Value::Text(p.sql.into()),
                    Value::Text(now.clone()),
                ],
            )
            .await?;
            tx.execute(p.drop_sql, &[]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The pieces waiting to be put back: of step `version`, or of every step.
    pub async fn pending(&self, db: &Db, version: Option<&str>) -> Result<Vec<Pending>> {
        if !db.table_exists(self.table).await? {
            return Ok(Vec::new());
        }
        let select = format!(
            "SELECT version, {}, table_name, {} FROM {}",
            self.name_column, self.sql_column, self.table
        );
        let rows = match version {
            Some(v) => {
                db.fetch_all(
                    &format!("{select} WHERE version = $1 ORDER BY {}", self.name_column),
                    &[Value::Text(v.into())],
                )
                .await?
            }
            None => {
                db.fetch_all(&format!("{select} ORDER BY version, {}", self.name_column), &[])
                    .await?
            }
        };
        Ok(rows
            .rows
            .into_iter()
            .filter_map(|r| {
                let text = |i: usize| r.get(i).and_then(Value::as_str).map(str::to_string);
                Some(Pending {
                    version: text(0)?,
                    name: text(1)?,
                    table_name: text(2)?,
                    sql: text(3)?,
                })
            })
            .collect())
    }

    /// Forget the record of `p`, inside `tx`.
    async fn forget_in(&self, tx: &mut DbTx, p: &Pending) -> Result<(), sqlx::Error> {
        tx.execute(
            &format!(
                "DELETE FROM {} WHERE version = $1 AND {} = $2",
                self.table, self.name_column
            ),
            &[Value::Text(p.version.clone()), Value::Text(p.name.clone())],
        )
        .await?;
        Ok(())
    }

    /// Put `p` back and forget its record, inside `tx`: both commit together.
    pub async fn put_back_in(&self, tx: &mut DbTx, p: &Pending) -> Result<(), sqlx::Error> {
        tx.execute(&p.sql, &[]).await?;
        self.forget_in(tx, p).await
    }

    /// Put the pending pieces back (of `version`, or all), each in a transaction of its own
    /// with the removal of its record; `failing` says what a piece that cannot be put back
    /// was (its record stays).
    pub async fn put_back(
        &self,
        db: &Db,
        version: Option<&str>,
        failing: impl Fn(&Pending) -> String,
    ) -> Result<PutBack> {
        let mut done = PutBack::default();
        for p in self.pending(db, version).await? {
            let what = format!("{}.{}", p.table_name, p.name);
            let exists = db.table_exists(&p.table_name).await?;
            let mut tx = db.begin().await?;
            if exists {
                self.put_back_in(&mut tx, &p).await.wrap_err_with(|| failing(&p))?;
                done.done.push(what);
            } else {
                self.forget_in(&mut tx, &p).await?;
                done.gone.push(what);
            }
            tx.commit().await?;
        }
        Ok(done)
    }
}
