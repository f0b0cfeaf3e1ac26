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

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Source => "source",
        Role::Target => "target",
    }
}

/// How long the first, direct connection attempt may take before we say the server does not
/// answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong connecting, and what to do about it.
fn connect_advice(e: &sqlx::Error) -> &'static str {
    if let sqlx::Error::Io(io) = e {
        let msg = io.to_string().to_ascii_lowercase();
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "Nothing listens at that host and port: check that the server is running and the port is right."
            }
            std::io::ErrorKind::NotFound => {
                "No server socket there: check that the server is running and the socket directory (host=) is right."
            }
            std::io::ErrorKind::TimedOut => {
                "The server did not answer in time: check the host, the port and any firewall in between."
            }
            std::io::ErrorKind::PermissionDenied => {
                "Permission denied opening the connection: check the socket's permissions."
            }
            _ if msg.contains("lookup")
                || msg.contains("name or service not known")
                || msg.contains("nodename nor servname")
                || msg.contains("no address associated") =>
            {
                "Unknown host: check the host name in the URL."
            }
            _ => "Check that the server is running and reachable at that host and port.",
        };
    }
    if let sqlx::Error::Tls(_) = e {
        return "The TLS handshake failed: check the server's TLS setup and the URL's sslmode / ssl-mode.";
    }
    if let Some(db) = e.as_database_error() {
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        let msg = db.message().to_ascii_lowercase();
        // MySQL error 1044: the user authenticated but may not use that database (which is
        // also what a missing database looks like to a user without global rights).
        if msg.contains("access denied") && msg.contains("to database") {
            return "The user may not use this database, or it does not exist: check the database name in the URL and the user's grants.";
        }
        // PostgreSQL SQLSTATEs; MySQL reports 28000 with "Access denied ... (using password)".
        if code == "28P01" || code == "28000" || msg.contains("access denied") || msg.contains("authentication failed")
        {
            return "Authentication failed: check the user name and the password (from the environment; a password written into a URL on the command line must be percent-encoded).";
        }
        if code == "3D000"
            || msg.contains("unknown database")
            || (msg.contains("database") && msg.contains("does not exist"))
        {
            return "The database does not exist: create it, or correct the database name in the URL.";
        }
        if code == "53300" || msg.contains("too many connections") {
            return "The server has no free connection slots: try again later or raise its connection limit.";
        }
        return "The server refused the connection: check the user, its rights on this database and the server's access rules (pg_hba.conf / GRANT).";
    }
    "Check that the server is running and reachable, and the user, password (from the environment) and database name."
}

/// Turn a driver error into a message without the URL's password, saying what to check.
fn connect_error(url: &DbUrl, role: Role, e: sqlx::Error) -> color_eyre::Report {
    let what = role_name(role);
    let detail = url.redact(&e.to_string());
    let advice = connect_advice(&e);
    eyre!("cannot connect to the {what} database {url}: {detail}. {advice}")
}

/// Refuse a URL the parser cannot read, or one whose password evidently held an unencoded
/// `/ ? #` (the authority ended early and an `@` landed in the path). Never echoes the URL.
fn check_url(url: &DbUrl, role: Role) -> Result<()> {
    let what = role_name(role);
    let hint = "Characters such as / ? # @ % : + = in a user name or password must be percent-encoded when the URL is written out (/ is %2F, ? is %3F, # is %23, @ is %40, % is %25, : is %3A, + is %2B, = is %3D); or keep the password in the environment and write ${VAR} in cutover.toml, which encodes it for you";
    match url::Url::parse(url.expose()) {
        Err(e) => Err(eyre!("the {what} database URL cannot be parsed ({e}). {hint}.")),
        Ok(u) if u.password().is_none() && (u.path().contains('@') || u.fragment().is_some()) => Err(eyre!(
            "the {what} database URL looks malformed (an '@' after the host, or a '#'): probably an unencoded character in the password. {hint}."
        )),
        Ok(_) => Ok(()),
    }
}

/// One direct connection before the pool: a refused port, a wrong password or a missing
/// database is reported at once with its real cause, not as a pool timeout 15 s later.
async fn probe<C: sqlx::Connection>(url: &DbUrl, role: Role, opts: &C::Options) -> Result<()> {
    match tokio::time::timeout(PROBE_TIMEOUT, C::connect_with(opts)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(connect_error(url, role, e)),
        Err(_) => Err(eyre!(
            "cannot connect to the {} database {url}: no answer within {} s. The server did not answer in time: check the host, the port and any firewall in between.",
            role_name(role),
            PROBE_TIMEOUT.as_secs()
        )),
    }
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
                check_url(url, role)?;
                let opts = sqlx::postgres::PgConnectOptions::from_str(raw)
                    .map_err(|e| connect_error(url, role, e))?
                    .application_name("cutover");
                probe::<sqlx::PgConnection>(url, role, &opts).await?;
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
                check_url(url, role)?;
                let raw = raw.replacen("mariadb://", "mysql://", 1);
                let opts = sqlx::mysql::MySqlConnectOptions::from_str(&raw).map_err(|e| connect_error(url, role, e))?;
                probe::<sqlx::mysql::MySqlConnection>(url, role, &opts).await?;
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
