//! Database connections behind one small enum, so the engine speaks to SQLite, PostgreSQL and
//! MySQL/MariaDB with the same calls. SQL uses `$1`-style placeholders, which all three of our
//! SQLite/PostgreSQL drivers accept; MySQL statements are rewritten to `?`.

use crate::engine::config::DbUrl;
use crate::engine::decode::{CellIssue, decode_mysql, decode_pg, decode_sqlite};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use futures::TryStreamExt;
use sqlx::{Column, Row, TypeInfo};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
}

pub enum DbTx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Mysql(sqlx::Transaction<'static, sqlx::MySql>),
}

/// What a connection is for: the target is created when missing, a source never is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Source,
    Target,
}

/// Turn a driver error into a message without the URL's password, saying what to check.
fn connect_error(url: &DbUrl, role: Role, e: sqlx::Error) -> color_eyre::Report {
    let what = match role {
        Role::Source => "source",
        Role::Target => "target",
    };
    let detail = crate::engine::config::redact_url(&e.to_string());
    eyre!(
        "cannot connect to the {what} database {url}: {detail}. Check that the server is running and reachable, and the user, password (from the environment) and database name."
    )
}

/// The file of a `sqlite://path` URL, relative paths taken from the project folder.
pub fn sqlite_path(url: &str, project_dir: &Path) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    let p = Path::new(path);
    Some(if p.is_absolute() {
        p.to_path_buf()
    } else {
        project_dir.join(p)
    })
}

impl Db {
    pub async fn connect(url: &DbUrl, project_dir: &Path, role: Role) -> Result<Db> {
        let raw = url.expose();
        match url.scheme() {
            "sqlite" => {
                let path = sqlite_path(raw, project_dir).ok_or_else(|| eyre!("bad sqlite URL {url}"))?;
                if role == Role::Source && !path.exists() {
                    return Err(eyre!(
                        "the source database {} does not exist (check [source] url in cutover.toml or --source)",
                        path.display()
                    ));
                }
                let mut opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(role == Role::Target)
                    .busy_timeout(Duration::from_secs(10))
                    // Wide multi-row inserts are big prepared statements; a step needs few.
                    .statement_cache_capacity(16)
                    .foreign_keys(true);
                if role == Role::Target {
                    // WAL lets the console read the ledger while a run writes.
                    opts = opts
                        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
                } else {
                    opts = opts.read_only(true);
                }
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(opts)
                    .await
                    .map_err(|e| connect_error(url, role, e))?;
                Ok(Db::Sqlite(pool))
            }
            "postgres" | "postgresql" => {
                let opts = sqlx::postgres::PgConnectOptions::from_str(raw)
                    .map_err(|e| connect_error(url, role, e))?
                    .application_name("cutover");
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // PostgreSQL 14+: end the query of a client that died (kill -9)
                            // within a second, instead of letting it hold its locks until done.
                            let _ = sqlx::Executor::execute(&mut *conn, "SET client_connection_check_interval = 1000")
                                .await;
                            Ok(())
                        })
                    })
                    .acquire_timeout(Duration::from_secs(15))
                    .connect_with(opts)
                    .await
                    .map_err(|e| connect_error(url, role, e))?;
                Ok(Db::Postgres(pool))
            }
            "mysql" | "mariadb" => {
                let raw = raw.replacen("mariadb://", "mysql://", 1);
                let opts = sqlx::mysql::MySqlConnectOptions::from_str(&raw).map_err(|e| connect_error(url, role, e))?;
                let pool = sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(15))
                    .connect_with(opts)
                    .await
                    .map_err(|e| connect_error(url, role, e))?;
                Ok(Db::Mysql(pool))
            }
            other => Err(eyre!(
                "unsupported database URL scheme '{other}' in {url}: use sqlite://, postgres:// or mysql://"
            )),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
            Db::Mysql(_) => Dialect::Mysql,
        }
    }

    pub async fn begin(&self) -> Result<DbTx> {
        Ok(match self {
            // IMMEDIATE takes the write lock up front: a deferred transaction that read first
            // fails with SQLITE_BUSY_SNAPSHOT (no retry) if another connection (the lock
            // heartbeat, the console) wrote in between.
            Db::Sqlite(p) => DbTx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(p) => DbTx::Postgres(p.begin().await?),
            Db::Mysql(p) => DbTx::Mysql(p.begin().await?),
        })
    }

    /// A transaction for reading only: on SQLite a deferred one, so readers never wait for
    /// the writer (WAL) and a read-only source can be read.
    pub async fn begin_read(&self) -> Result<DbTx> {
        Ok(match self {
            Db::Sqlite(p) => DbTx::Sqlite(p.begin().await?),
            other => other.begin().await?,
        })
    }

    /// Run one statement outside an explicit transaction.
    pub async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut tx = self.begin().await?;
        let n = tx.execute(sql, params).await?;
        tx.commit().await?;
        Ok(n)
    }

    pub async fn fetch_all(&self, sql: &str, params: &[Value]) -> Result<Rows> {
        let mut tx = self.begin_read().await?;
        let rows = tx.fetch_all(sql, params).await?;
        tx.rollback().await?;
        Ok(rows)
    }

    pub async fn fetch_optional(&self, sql: &str, params: &[Value]) -> Result<Option<Vec<Value>>> {
        let rows = self.fetch_all(sql, params).await?;
        Ok(rows.rows.into_iter().next())
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
            Db::Mysql(p) => p.close().await,
        }
    }

    pub async fn table_exists(&self, table: &str) -> Result<bool> {
        let (sql, params) = match self {
            Db::Sqlite(_) => (
                "SELECT 1 FROM sqlite_master WHERE type IN ('table','view') AND name = $1",
                vec![Value::Text(table.into())],
            ),
            Db::Postgres(_) => (
                "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
                vec![Value::Text(table.into())],
            ),
            Db::Mysql(_) => (
                "SELECT 1 FROM information_schema.tables WHERE table_schema = database() AND table_name = $1",
                vec![Value::Text(table.into())],
            ),
        };
        Ok(self.fetch_optional(sql, &params).await?.is_some())
    }
}

/// Quote an identifier for a dialect (MySQL without ANSI_QUOTES wants backticks).
pub fn quote_ident(dialect: Dialect, name: &str) -> String {
    match dialect {
        Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// Result rows with their column names.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    /// The driver's type name of each column (`INT8`, `TIMESTAMPTZ`, `TEXT`, ...).
    pub types: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// Cells that could not be decoded without loss, by row index (the cell holds NULL).
    pub issues: Vec<(usize, CellIssue)>,
}

/// `$1` → `?` for MySQL. Our own statements never put `$` inside string literals.
pub fn mysql_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// A NULL parameter whose type PostgreSQL infers from where it is used (oid 0 = unspecified),
/// so one NULL fits a text, bigint, uuid or date column alike.
struct PgUntypedNull;

impl sqlx::Type<sqlx::Postgres> for PgUntypedNull {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for PgUntypedNull {
    fn encode_by_ref(
        &self,
        _buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

macro_rules! bind_all {
    ($q:expr, $params:expr, $null:expr) => {{
        let mut q = $q;
        for p in $params {
            q = match p {
                Value::Null => q.bind($null),
                Value::Bool(b) => q.bind(*b),
                Value::Int(i) => q.bind(*i),
                Value::Real(f) => q.bind(*f),
                Value::Text(s) => q.bind(s.as_str()),
                Value::Bytes(b) => q.bind(b.bytes.as_slice()),
                Value::Json(j) => q.bind(j.to_string()),
            };
        }
        q
    }};
}

impl DbTx {
    pub fn dialect(&self) -> Dialect {
        match self {
            DbTx::Sqlite(_) => Dialect::Sqlite,
            DbTx::Postgres(_) => Dialect::Postgres,
            DbTx::Mysql(_) => Dialect::Mysql,
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            DbTx::Sqlite(t) => t.commit().await?,
            DbTx::Postgres(t) => t.commit().await?,
            DbTx::Mysql(t) => t.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self {
            DbTx::Sqlite(t) => t.rollback().await?,
            DbTx::Postgres(t) => t.rollback().await?,
            DbTx::Mysql(t) => t.rollback().await?,
        }
        Ok(())
    }

    /// Run a statement with parameters; returns rows affected.
    pub async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, sqlx::Error> {
        Ok(match self {
            DbTx::Sqlite(t) => bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), params, None::<String>)
                .execute(&mut **t)
                .await?
                .rows_affected(),
            DbTx::Postgres(t) => bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), params, PgUntypedNull)
                .execute(&mut **t)
                .await?
                .rows_affected(),
            DbTx::Mysql(t) => {
                let sql = mysql_placeholders(sql);
                bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), params, None::<String>)
                    .execute(&mut **t)
                    .await?
                    .rows_affected()
            }
        })
    }

    /// Run SQL text without parameters (DDL, user scripts), possibly several statements.
    pub async fn execute_raw(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            DbTx::Sqlite(t) => {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut **t).await?;
            }
            DbTx::Postgres(t) => {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut **t).await?;
            }
            DbTx::Mysql(t) => {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut **t).await?;
            }
        }
        Ok(())
    }

    pub async fn fetch_all(&mut self, sql: &str, params: &[Value]) -> Result<Rows, sqlx::Error> {
        let mut out = Rows::default();
        match self {
            DbTx::Sqlite(t) => {
                let mut s = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), params, None::<String>).fetch(&mut **t);
                while let Some(row) = s.try_next().await? {
                    if out.columns.is_empty() {
                        out.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                        out.types = row.columns().iter().map(|c| c.type_info().name().to_string()).collect();
                    }
                    let mut issues = Vec::new();
                    let vals = decode_sqlite(&row, &mut issues)?;
                    let n = out.rows.len();
                    out.issues.extend(issues.into_iter().map(|i| (n, i)));
                    out.rows.push(vals);
                }
            }
            DbTx::Postgres(t) => {
                let mut s = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), params, PgUntypedNull).fetch(&mut **t);
                while let Some(row) = s.try_next().await? {
                    if out.columns.is_empty() {
                        out.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                        out.types = row.columns().iter().map(|c| c.type_info().name().to_string()).collect();
                    }
                    let mut issues = Vec::new();
                    let vals = decode_pg(&row, &mut issues)?;
                    let n = out.rows.len();
                    out.issues.extend(issues.into_iter().map(|i| (n, i)));
                    out.rows.push(vals);
                }
            }
            DbTx::Mysql(t) => {
                let sql = mysql_placeholders(sql);
                let mut s = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), params, None::<String>).fetch(&mut **t);
                while let Some(row) = s.try_next().await? {
                    if out.columns.is_empty() {
                        out.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                        out.types = row.columns().iter().map(|c| c.type_info().name().to_string()).collect();
                    }
                    let mut issues = Vec::new();
                    let vals = decode_mysql(&row, &mut issues)?;
                    let n = out.rows.len();
                    out.issues.extend(issues.into_iter().map(|i| (n, i)));
                    out.rows.push(vals);
                }
            }
        }
        Ok(out)
    }

    pub async fn fetch_optional(&mut self, sql: &str, params: &[Value]) -> Result<Option<Vec<Value>>, sqlx::Error> {
        Ok(self.fetch_all(sql, params).await?.rows.into_iter().next())
    }
}
