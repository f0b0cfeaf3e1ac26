//! PostgreSQL: the production target. Rows go in by COPY; the run lock is a session-level
//! advisory lock on a connection of its own.

use super::{Role, SessionLock, SessionLockAttempt, Unfit, check_url, connect_error, probe};
use crate::engine::config::DbUrl;
use crate::engine::value::Value;
use color_eyre::eyre::Result;
use sqlx::Connection;
use std::ops::ControlFlow;
use std::str::FromStr;
use std::time::Duration;

pub const SERIAL_PRIMARY_KEY: &str = "BIGSERIAL PRIMARY KEY";
pub const TABLE_EXISTS: &str =
    "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1";
/// A unique index of table `$1` (in the current schema) whose columns are all among `$2` (a
/// text array), checked row by row (not deferred), over whole columns (no expression, no
/// predicate): it refuses any two rows equal on `$2`.
pub const UNIQUE_INDEX_WITHIN: &str = "SELECT 1 FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid \
     WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace \
     AND i.indisunique AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL \
     AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey::int2[]) k LEFT JOIN pg_attribute a \
       ON a.attrelid = i.indrelid AND a.attnum = k WHERE a.attname IS NULL OR NOT (a.attname::text = ANY($2::text[]))) \
     LIMIT 1";
/// Whether the columns `$2` (a text array) are exactly the primary key of table `$1` (in the
/// current schema): unique and never NULL, as the server enforces.
pub const IS_PRIMARY_KEY: &str = "SELECT 1 FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid \
     WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace AND i.indisprimary \
     AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a \
          WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[])) \
       = (SELECT array_agg(c ORDER BY c) FROM unnest($2::text[]) c)";
/// The plain indexes of table `$1` (an ordinary table in the current schema: a partitioned
/// table's index is recreated `ON ONLY` the parent): not unique, not partial (its predicate
/// could fail on a row the build then meets), valid, backing no constraint: name, schema,
/// definition, and first column (NULL for an expression).
pub const SECONDARY_INDEXES: &str = "SELECT c.relname::text, n.nspname::text, pg_get_indexdef(i.indexrelid), \
       (SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0]) \
     FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_class c ON c.oid = i.indexrelid \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace AND t.relkind = 'r' \
     AND NOT i.indisunique AND NOT i.indisprimary AND i.indisvalid AND NOT i.indisexclusion \
     AND i.indpred IS NULL \
     AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) ORDER BY 1";
pub const COLUMNS: &str = "SELECT column_name, CASE WHEN data_type = 'USER-DEFINED' THEN udt_name WHEN data_type = 'ARRAY' THEN 'text' ELSE data_type END FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1";
pub const FOREIGN_KEYS: &str = "SELECT con.conname::text, cl.relname::text, pns.nspname::text, pcl.relname::text,
    (SELECT string_agg(a.attname::text, chr(31) ORDER BY k.n) FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, n)
       JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum),
    (SELECT string_agg(a.attname::text, chr(31) ORDER BY k.n) FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, n)
       JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum)
 FROM pg_constraint con
 JOIN pg_class cl ON cl.oid = con.conrelid
 JOIN pg_namespace ns ON ns.oid = cl.relnamespace
 JOIN pg_class pcl ON pcl.oid = con.confrelid
 JOIN pg_namespace pns ON pns.oid = pcl.relnamespace
 WHERE con.contype = 'f' AND ns.nspname = current_schema()
 ORDER BY cl.relname, con.conname";

/// The foreign keys of table `$1` (an ordinary table in the current schema) that a step may
/// leave out while it fills the table and add back at its end: name, schema, definition
/// (`FOREIGN KEY (...) REFERENCES ...`, as `ALTER TABLE ... ADD CONSTRAINT` takes it), the
/// parent table, its schema, and the child and parent columns (separated by chr(31)). Only
/// `NOT DEFERRABLE` keys that are validated: a key checked at commit, or one that was added
/// `NOT VALID` over rows it would refuse, is left as it is.
pub const TABLE_FOREIGN_KEYS: &str =
    "SELECT con.conname::text, ns.nspname::text, pg_get_constraintdef(con.oid), pcl.relname::text, pns.nspname::text,
    (SELECT string_agg(a.attname::text, chr(31) ORDER BY k.n) FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, n)
       JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum),
    (SELECT string_agg(a.attname::text, chr(31) ORDER BY k.n) FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, n)
       JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum)
 FROM pg_constraint con
 JOIN pg_class cl ON cl.oid = con.conrelid
 JOIN pg_namespace ns ON ns.oid = cl.relnamespace
 JOIN pg_class pcl ON pcl.oid = con.confrelid
 JOIN pg_namespace pns ON pns.oid = pcl.relnamespace
 WHERE con.contype = 'f' AND cl.relname = $1 AND cl.relnamespace = current_schema()::regnamespace
   AND cl.relkind = 'r' AND NOT con.condeferrable AND con.convalidated
 ORDER BY 1";

/// Whether the server compresses out-of-line values with lz4 when asked (PostgreSQL 14+
/// built with it): `default_toast_compression` then lists it among its choices.
pub const HAS_LZ4: &str = "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'";

/// Advisory lock key: "cutover" in ASCII, so other tools' keys are unlikely to collide.
pub const LOCK_KEY: i64 = 0x0063_7574_6f76_6572;
pub const LOCK_HELD: &str = "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND classid::text::bigint = $1 AND objid::text::bigint = $2 AND objsubid = 1";

pub fn lock_key_params() -> [Value; 2] {
    [Value::Int(LOCK_KEY >> 32), Value::Int(LOCK_KEY & 0xffff_ffff)]
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `ON CONFLICT (k) DO UPDATE SET c = excluded.c, ...` (SQLite speaks it too).
pub fn upsert_clause(conflict: &[&str], update: &[&str]) -> String {
    let sets: Vec<String> = update.iter().map(|c| format!("{c} = excluded.{c}")).collect();
    format!(
        "ON CONFLICT ({}) DO UPDATE SET {}",
        conflict.join(", "),
        sets.join(", ")
    )
}

fn is_text(t: &str) -> bool {
    matches!(t, "text" | "character varying")
}

/// `CAST(expr AS type)` unless the column holds text: PostgreSQL does not turn a text
/// parameter into a uuid, date or number by itself.
pub fn cast_to_column(expr: &str, column_type: Option<&str>) -> String {
    match column_type {
        Some(t) if !is_text(t) => format!("CAST({expr} AS {t})"),
        _ => expr.to_string(),
    }
}

/// Parameter `$n`, bound to a text array literal (see [`array_element`]), as an array of the
/// column type `ty` (text arrays are cast element by element, like a text parameter).
pub fn text_array_param(n: usize, ty: Option<&str>) -> String {
    match ty {
        Some(t) if !is_text(t) && !t.is_empty() => format!("CAST(CAST(${n} AS text[]) AS {t}[])"),
        _ => format!("CAST(${n} AS text[])"),
    }
}

/// One element of a PostgreSQL array literal, always quoted (so `NULL`, braces, commas and
/// blanks stay text), with `"` and `\` escaped.
pub fn array_element(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        if matches!(ch, '"' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
}

/// A keyset parameter cast to the key's own type, so a text-decoded key (a timestamp, a
/// uuid) compares as that type.
pub fn key_param(n: usize, key_type: Option<&str>) -> String {
    match key_type {
        Some(ty) if !ty.is_empty() => format!("CAST(${n} AS {ty})"),
        _ => format!("${n}"),
    }
}

/// PostgreSQL text cannot hold a NUL byte.
pub fn fit(column: &str, v: &mut Value) -> Result<(), Unfit> {
    if let Value::Text(t) = v
        && let Some(at) = t.find('\0')
    {
        return Err(Unfit::new(
            column,
            "encoding",
            format!(
                "{column}: PostgreSQL text cannot hold a NUL byte (at byte {at}); remove it in the source or with a transform"
            ),
        ));
    }
    Ok(())
}

pub async fn connect(url: &DbUrl, role: Role) -> Result<sqlx::PgPool> {
    check_url(url, role)?;
    let opts = sqlx::postgres::PgConnectOptions::from_str(url.expose())
        .map_err(|e| connect_error(url, role, e))?
        .application_name("cutover");
    probe::<sqlx::PgConnection>(url, role, &opts).await?;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .after_connect(|conn, _| {
            Box::pin(async move {
                // PostgreSQL 14+: end the query of a client that died (kill -9) within a
                // second, instead of letting it hold its locks until done.
                let _ = sqlx::Executor::execute(&mut *conn, "SET client_connection_check_interval = 1000").await;
                Ok(())
            })
        })
        .acquire_timeout(Duration::from_secs(15))
        .connect_with(opts)
        .await
        .map_err(|e| connect_error(url, role, e))
}

/// A NULL parameter whose type PostgreSQL infers from where it is used (oid 0 = unspecified),
/// so one NULL fits a text, bigint, uuid or date column alike.
pub struct UntypedNull;

impl sqlx::Type<sqlx::Postgres> for UntypedNull {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for UntypedNull {
    fn encode_by_ref(
        &self,
        _buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

pub async fn for_each_row<F>(pool: &sqlx::PgPool, sql: &str, f: F) -> Result<(), sqlx::Error>
where
    F: AsyncFnMut(Vec<Value>) -> ControlFlow<()>,
{
    super::stream_rows!(
        pool.begin_with("BEGIN READ ONLY").await?,
        sql,
        f,
        crate::engine::decode::decode_pg_compare
    )
}

/// A connection of its own, outside the pool, so the session lives exactly as long as the
/// lock.
pub async fn try_session_lock(pool: &sqlx::PgPool) -> Result<SessionLockAttempt, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut conn)
        .await?;
    if !got {
        let _ = conn.close().await;
        return Ok(SessionLockAttempt::Busy);
    }
    Ok(SessionLockAttempt::Taken(SessionLock::Postgres(conn)))
}

pub async fn release_session_lock(mut conn: sqlx::PgConnection) -> Result<()> {
    let _: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

fn copy_escape(out: &mut String, v: &Value) {
    use std::fmt::Write;
    match v {
        Value::Null => out.push_str("\\N"),
        Value::Bool(b) => out.push(if *b { 't' } else { 'f' }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Real(f) => {
            let _ = write!(out, "{f}");
        }
        Value::Bytes(b) => {
            out.push_str("\\\\x");
            out.push_str(&crate::engine::value::hex(&b.bytes));
        }
        Value::Text(s) => escape_text(out, s),
        Value::Json(j) => escape_text(out, &j.to_string()),
    }
}

fn escape_text(out: &mut String, s: &str) {
    // Most values need no escaping: copy them whole.
    if !s.bytes().any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r')) {
        out.push_str(s);
        return;
    }
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// A cell as COPY's text format writes it: a value, or a text cell borrowed from the caller
/// (`None` = NULL; the ID map writes one such row per row written, no value built per cell).
pub trait CopyCell {
    fn write_copy(&self, out: &mut String);
}

impl CopyCell for Value {
    fn write_copy(&self, out: &mut String) {
        copy_escape(out, self);
    }
}

impl CopyCell for Option<&str> {
    fn write_copy(&self, out: &mut String) {
        match self {
            Some(t) => escape_text(out, t),
            None => out.push_str("\\N"),
        }
    }
}

/// One row in the COPY text format, appended to `out`: its cells separated by tabs.
fn copy_line<C: CopyCell>(out: &mut String, row: &[C]) {
    for (i, c) in row.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        c.write_copy(out);
    }
    out.push('\n');
}

/// About this many bytes of a COPY go to the server at a time, as the rows are encoded: the
/// server parses and stores the first rows of a page while the client encodes the rest,
/// instead of waiting for the whole page (a page of the bench's rows is about 250 KB).
const COPY_CHUNK_BYTES: usize = 64 * 1024;

/// COPY rows in text format inside the caller's transaction, sent `COPY_CHUNK_BYTES` at a
/// time as they are encoded. `meanwhile` runs once every row has been sent and before the
/// server's answer is awaited: work the caller would otherwise do after the COPY runs while
/// the server is still storing the rows.
pub async fn copy_in<C: CopyCell, R: AsRef<[C]> + Sync>(
    t: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    table_sql: &str,
    columns: &[String],
    rows: &[R],
    meanwhile: &mut (dyn FnMut() + Send),
) -> Result<(), sqlx::Error> {
    let cols = columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    let statement = format!("COPY {table_sql} ({cols}) FROM STDIN");
    let mut copy = t.copy_in_raw(&statement).await?;
    let mut buf = String::with_capacity(COPY_CHUNK_BYTES + COPY_CHUNK_BYTES / 4);
    for (i, r) in rows.iter().enumerate() {
        copy_line(&mut buf, r.as_ref());
        if buf.len() >= COPY_CHUNK_BYTES || i + 1 == rows.len() {
            if let Err(e) = copy.send(buf.as_bytes()).await {
                let _ = copy.abort("cutover: send failed").await;
                return Err(e);
            }
            buf.clear();
        }
    }
    meanwhile();
    copy.finish().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::backend::Dialect;

    #[test]
    fn quotes_identifiers_with_the_quote_inside() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(Dialect::Postgres.quote_table("s.t"), "\"s\".\"t\"");
    }

    #[test]
    fn ddl_fragments() {
        assert_eq!(Dialect::Postgres.serial_primary_key(), "BIGSERIAL PRIMARY KEY");
        assert_eq!(Dialect::Postgres.key_text(64), "TEXT COLLATE \"C\"");
        assert_eq!(Dialect::Postgres.table_options(), "");
        assert_eq!(
            upsert_clause(&["version"], &["a", "b"]),
            "ON CONFLICT (version) DO UPDATE SET a = excluded.a, b = excluded.b"
        );
        assert_eq!(cast_to_column("$1", Some("uuid")), "CAST($1 AS uuid)");
        assert_eq!(cast_to_column("$1", Some("text")), "$1");
        assert_eq!(key_param(2, Some("timestamptz")), "CAST($2 AS timestamptz)");
        assert_eq!(Dialect::Postgres.share_lock_suffix(), " FOR SHARE");
    }

    #[test]
    fn copy_rows_are_escaped_and_nul_is_refused() {
        let mut t = String::new();
        copy_line(&mut t, &[Value::Null, Value::Text("a\tb\\".into()), Value::Bool(true)]);
        assert_eq!(t, "\\N\ta\\tb\\\\\tt\n");
        let mut cells = String::new();
        copy_line(&mut cells, &[Some("a\tb"), None]);
        assert_eq!(cells, "a\\tb\t\\N\n");
        assert!(fit("c", &mut Value::Text("a\0b".into())).is_err());
    }
}
