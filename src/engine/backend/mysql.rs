//! MySQL/MariaDB, as a source and as a target.
//!
//! A target session runs in strict mode with `ANSI_QUOTES` and `PIPES_AS_CONCAT`
//! ([`TARGET_SQL_MODE`]): a value that does not fit (too long, a bad date, a NULL into NOT
//! NULL) is refused with an error instead of being truncated or zeroed with a warning (a
//! silent truncation is data loss), and `"name"` is an identifier as on the other targets.
//! The tool's own tables are InnoDB in utf8mb4 with a binary no-pad collation, so keys
//! compare byte for byte as on SQLite and PostgreSQL. The run lock is `GET_LOCK` on a
//! connection of its own. MySQL commits DDL implicitly: a schema step is not atomic there.

use super::{InsertLimits, Role, SessionLock, SessionLockAttempt, Unfit, check_url, connect_error, probe};
use crate::engine::config::DbUrl;
use crate::engine::value::Value;
use color_eyre::eyre::Result;
use sqlx::Connection;
use std::borrow::Cow;
use std::ops::ControlFlow;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const SERIAL_PRIMARY_KEY: &str = "BIGINT AUTO_INCREMENT PRIMARY KEY";
pub const TABLE_OPTIONS: &str = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin";
pub const TABLE_EXISTS: &str =
    "SELECT 1 FROM information_schema.tables WHERE table_schema = database() AND table_name = $1";
pub const COLUMNS: &str =
    "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = database() AND table_name = $1";
pub const FOREIGN_KEYS: &str = "SELECT CONSTRAINT_NAME, TABLE_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME,
    GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION SEPARATOR ','),
    GROUP_CONCAT(REFERENCED_COLUMN_NAME ORDER BY ORDINAL_POSITION SEPARATOR ',')
 FROM information_schema.KEY_COLUMN_USAGE
 WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IS NOT NULL
 GROUP BY CONSTRAINT_NAME, TABLE_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME
 ORDER BY TABLE_NAME, CONSTRAINT_NAME";

/// The session's sql_mode on a target: refuse rather than truncate, ANSI identifiers and `||`.
pub const TARGET_SQL_MODE: &str = "STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,ANSI_QUOTES,PIPES_AS_CONCAT";

/// The run lock's name: one per database (GET_LOCK names are server-wide, at most 64 chars).
const LOCK_NAME: &str = "LEFT(CONCAT('cutover:', COALESCE(DATABASE(), '')), 64)";
pub const LOCK_HELD: &str = "SELECT IS_USED_LOCK(LEFT(CONCAT('cutover:', COALESCE(DATABASE(), '')), 64))";

/// The server's max_allowed_packet as a target session read it (16 MiB until then).
static MAX_PACKET: AtomicUsize = AtomicUsize::new(16 << 20);

pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A key or indexed text column: VARCHAR (InnoDB indexes up to 3072 bytes, 768 utf8mb4
/// characters, per index).
pub fn key_text(max_chars: u32) -> String {
    format!("VARCHAR({max_chars})")
}

/// `ON DUPLICATE KEY UPDATE c = VALUES(c), ...` (the conflict is on any unique key).
pub fn upsert_clause(update: &[&str]) -> String {
    let sets: Vec<String> = update.iter().map(|c| format!("{c} = VALUES({c})")).collect();
    format!("ON DUPLICATE KEY UPDATE {}", sets.join(", "))
}

/// MySQL's DOUBLE holds no NaN or infinity: refused, or written as text into a text column
/// (as on SQLite, so the digits are Rust's shortest round-trip form, not the server's).
pub fn fit(column: &str, v: &mut Value, text_column: bool) -> Result<(), Unfit> {
    // A collection's timestamps are RFC 3339 (`...Z`), which DATETIME(6) refuses: written as
    // the UTC time it names.
    if matches!(column, "_created_at" | "_updated_at")
        && !text_column
        && let Value::Text(t) = v
        && let Ok(at) = chrono::DateTime::parse_from_rfc3339(t)
    {
        *v = Value::Text(
            at.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S%.6f")
                .to_string(),
        );
    }
    if let Value::Real(f) = *v {
        if text_column {
            *v = Value::Text(super::sqlite::real_text(f));
        } else if !f.is_finite() {
            return Err(Unfit::new(
                column,
                "target",
                format!(
                    "{column}: MySQL/MariaDB cannot store {f} in a number column; map it with a transform or write it to a text column"
                ),
            ));
        }
    }
    Ok(())
}

/// Multi-row INSERT limits: 65535 placeholders per statement, and the bound values within
/// the server's max_allowed_packet (with room for the protocol).
pub fn insert_limits() -> InsertLimits {
    InsertLimits {
        max_params: 65_535,
        max_rows: 1000,
        max_bytes: MAX_PACKET.load(Ordering::Relaxed) / 4 * 3,
    }
}

/// `$n` placeholders to `?`, with the parameters in the order the `?` appear (a `$n` may come
/// out of order or twice). Quoted strings, identifiers and comments are left alone.
pub fn placeholders<'a>(sql: &'a str, params: &'a [Value]) -> (Cow<'a, str>, Cow<'a, [Value]>) {
    if !sql.contains('$') {
        return (Cow::Borrowed(sql), Cow::Borrowed(params));
    }
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut order: Vec<usize> = Vec::new();
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() {
                    if b[i] == b'\\' && q == b'\'' {
                        i += 2;
                        continue;
                    }
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'$' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let start = i;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let n: usize = sql[start + 1..i].parse().unwrap_or(0);
                out.push_str(&sql[last..start]);
                out.push('?');
                last = i;
                order.push(n);
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[last.min(sql.len())..]);
    let in_order = order.iter().enumerate().all(|(k, n)| *n == k + 1) && order.len() == params.len();
    let params = if in_order {
        Cow::Borrowed(params)
    } else {
        Cow::Owned(
            order
                .iter()
                .map(|n| {
                    n.checked_sub(1)
                        .and_then(|k| params.get(k))
                        .cloned()
                        .unwrap_or(Value::Null)
                })
                .collect(),
        )
    };
    (Cow::Owned(out), params)
}

/// A MySQL transaction, with its pool for the DDL of the tool's own tables (which MySQL runs
/// outside any transaction) and, in a dry run, a guard against statements that commit.
pub struct MysqlTx {
    pub tx: sqlx::Transaction<'static, sqlx::MySql>,
    pool: sqlx::MySqlPool,
    /// A dry run's transaction: a statement that would commit it is refused.
    dry_run: bool,
}

impl MysqlTx {
    pub async fn begin(pool: &sqlx::MySqlPool, dry_run: bool) -> Result<MysqlTx, sqlx::Error> {
        Ok(MysqlTx {
            tx: pool.begin().await?,
            pool: pool.clone(),
            dry_run,
        })
    }

    /// In a dry run, refuse a statement that MySQL would run after committing the transaction
    /// (DDL and the like): it would make everything the dry run did so far permanent.
    pub fn guard(&self, sql: &str) -> Result<(), sqlx::Error> {
        if self.dry_run && commits_implicitly(sql) {
            let code = sql
                .lines()
                .map(|l| l.split("--").next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let head: String = code.chars().take(60).collect();
            return Err(sqlx::Error::InvalidArgument(format!(
                "a dry run on a MySQL/MariaDB target cannot try `{head}…`: MySQL commits DDL at once, with everything before it, so it could not be rolled back. Apply schema steps for real (`cutover up --to VERSION`) and dry-run the data steps after them"
            )));
        }
        Ok(())
    }

    /// Create the tool's own tables that are missing, each with its indexes, on a connection
    /// of its own (DDL commits on MySQL; empty bookkeeping tables are harmless even after a
    /// dry run). Tables that exist are left alone, so no DDL waits on this transaction's locks.
    pub async fn create_own_tables(&mut self, groups: &[(&str, Vec<String>)]) -> Result<(), sqlx::Error> {
        for (table, statements) in groups {
            let exists: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = database() AND table_name = ?",
            )
            .bind(*table)
            .fetch_optional(&mut *self.tx)
            .await?;
            if exists.is_some() {
                continue;
            }
            let mut conn = self.pool.acquire().await?;
            for s in statements {
                sqlx::raw_sql(sqlx::AssertSqlSafe(s.as_str()))
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Whether MySQL commits the transaction before running `sql` (DDL, account and lock
/// statements, transaction control). Checks the first word of each `;`-separated part.
pub fn commits_implicitly(sql: &str) -> bool {
    // Line comments out first: a `;` in a comment must not cut a statement.
    let text: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';').any(|part| {
        let part = part.trim_start();
        let part = match part.strip_prefix("/*") {
            Some(rest) => rest.split_once("*/").map(|(_, r)| r).unwrap_or(""),
            None => part,
        };
        let mut words = part.split_whitespace().map(str::to_ascii_uppercase);
        match words.next().as_deref() {
            Some("CREATE") | Some("DROP") => words.next().as_deref() != Some("TEMPORARY"),
            Some(
                "ALTER" | "RENAME" | "TRUNCATE" | "GRANT" | "REVOKE" | "LOCK" | "UNLOCK" | "ANALYZE" | "OPTIMIZE"
                | "REPAIR" | "INSTALL" | "UNINSTALL" | "FLUSH" | "RESET" | "LOAD" | "BEGIN" | "START" | "COMMIT"
                | "CACHE",
            ) => true,
            _ => false,
        }
    })
}

pub async fn connect(url: &DbUrl, role: Role) -> Result<sqlx::MySqlPool> {
    check_url(url, role)?;
    let raw = url.expose().replacen("mariadb://", "mysql://", 1);
    let opts = sqlx::mysql::MySqlConnectOptions::from_str(&raw).map_err(|e| connect_error(url, role, e))?;
    probe::<sqlx::mysql::MySqlConnection>(url, role, &opts).await?;
    let mut pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(15));
    if role == Role::Target {
        pool = pool.after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(
                    &mut *conn,
                    sqlx::AssertSqlSafe(format!("SET SESSION sql_mode = '{TARGET_SQL_MODE}'")),
                )
                .await?;
                let packet: Option<i64> = sqlx::query_scalar("SELECT CAST(@@max_allowed_packet AS SIGNED)")
                    .fetch_one(&mut *conn)
                    .await?;
                if let Some(p) = packet.and_then(|p| usize::try_from(p).ok()) {
                    MAX_PACKET.store(p, Ordering::Relaxed);
                }
                Ok(())
            })
        });
    }
    pool.connect_with(opts).await.map_err(|e| connect_error(url, role, e))
}

pub async fn for_each_row<F>(pool: &sqlx::MySqlPool, sql: &str, f: F) -> Result<(), sqlx::Error>
where
    F: AsyncFnMut(Vec<Value>) -> ControlFlow<()>,
{
    super::stream_rows!(
        pool.begin_with("START TRANSACTION READ ONLY").await?,
        sql,
        f,
        crate::engine::decode::decode_mysql
    )
}

/// `GET_LOCK` on a connection of its own, outside the pool: the server releases it when the
/// session ends (the process died, the connection dropped).
pub async fn try_session_lock(pool: &sqlx::MySqlPool) -> Result<SessionLockAttempt, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    let got: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT GET_LOCK({LOCK_NAME}, 0)")))
        .fetch_one(&mut conn)
        .await?;
    if got != Some(1) {
        let _ = conn.close().await;
        return Ok(SessionLockAttempt::Busy);
    }
    Ok(SessionLockAttempt::Taken(SessionLock::Mysql(conn)))
}

pub async fn release_session_lock(mut conn: sqlx::MySqlConnection) -> Result<()> {
    let _: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT RELEASE_LOCK({LOCK_NAME})")))
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::backend::Dialect;

    #[test]
    fn quotes_identifiers_with_the_backtick_inside() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(Dialect::Mysql.quote_table("db.t"), "`db`.`t`");
    }

    #[test]
    fn placeholders_follow_their_numbers() {
        let p = [Value::Int(1), Value::Int(2), Value::Int(3)];
        let (sql, params) = placeholders("SELECT $1, '$2', `$x`, $3 -- $2\n, $2", &p);
        assert_eq!(sql, "SELECT ?, '$2', `$x`, ? -- $2\n, ?");
        assert_eq!(params.as_ref(), &[Value::Int(1), Value::Int(3), Value::Int(2)]);
        let (sql, params) = placeholders("UPDATE t SET a = a + $2 WHERE v = $1 AND w = $1", &p[..2]);
        assert_eq!(sql, "UPDATE t SET a = a + ? WHERE v = ? AND w = ?");
        assert_eq!(params.as_ref(), &[Value::Int(2), Value::Int(1), Value::Int(1)]);
        let (sql, params) = placeholders("INSERT INTO t VALUES (?, ?)", &p[..2]);
        assert!(matches!(sql, Cow::Borrowed(_)) && params.len() == 2);
        let (sql, _) = placeholders("SELECT 'it''s $1', \"a\"\"$1\", $1", &p[..1]);
        assert_eq!(sql, "SELECT 'it''s $1', \"a\"\"$1\", ?");
    }

    #[test]
    fn ddl_fragments() {
        assert_eq!(Dialect::Mysql.serial_primary_key(), "BIGINT AUTO_INCREMENT PRIMARY KEY");
        assert_eq!(Dialect::Mysql.key_text(191), "VARCHAR(191)");
        assert!(Dialect::Mysql.table_options().contains("utf8mb4"));
        assert_eq!(
            Dialect::Mysql.upsert_clause(&["version"], &["a", "b"]),
            "ON DUPLICATE KEY UPDATE a = VALUES(a), b = VALUES(b)"
        );
        assert_eq!(Dialect::Mysql.share_lock_suffix(), " LOCK IN SHARE MODE");
        assert_eq!(Dialect::Mysql.tuple_list(&["(?, ?)".into()]), "((?, ?))");
        assert!(!Dialect::Mysql.transactional_ddl());
    }

    #[test]
    fn statements_that_commit() {
        assert!(commits_implicitly("CREATE TABLE t (a INT)"));
        assert!(commits_implicitly("  -- note\n  create index i on t (a)"));
        assert!(commits_implicitly("INSERT INTO t VALUES (1); DROP TABLE t"));
        assert!(commits_implicitly("-- a; b\n-- c\nCREATE TABLE t (a INT)"));
        assert!(commits_implicitly("/* head */ ALTER TABLE t ADD b INT"));
        assert!(!commits_implicitly("CREATE TEMPORARY TABLE t (a INT)"));
        assert!(!commits_implicitly("INSERT INTO t VALUES ('CREATE')"));
        assert!(!commits_implicitly("SAVEPOINT cutover_rows"));
        assert!(!commits_implicitly("UPDATE t SET a = 1"));
    }

    #[test]
    fn reals_that_mysql_cannot_hold() {
        assert!(fit("c", &mut Value::Real(f64::NAN), false).is_err());
        let mut v = Value::Real(f64::INFINITY);
        fit("c", &mut v, true).unwrap();
        assert_eq!(v, Value::Text("Infinity".into()));
        let mut ok = Value::Real(1.5);
        fit("c", &mut ok, false).unwrap();
        assert_eq!(ok, Value::Real(1.5));
    }
}
