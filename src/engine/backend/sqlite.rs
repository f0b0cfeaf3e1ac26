//! SQLite: the embedded default. A target file is created when missing and opened in WAL mode
//! (the console reads while a run writes); a source is opened read-only.

use super::{InsertLimits, Role, Unfit, connect_error};
use crate::engine::config::DbUrl;
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SERIAL_PRIMARY_KEY: &str = "INTEGER PRIMARY KEY AUTOINCREMENT";
pub const TABLE_EXISTS: &str = "SELECT 1 FROM sqlite_master WHERE type IN ('table','view') AND name = $1";
pub const COLUMNS: &str = "SELECT name, type FROM pragma_table_info($1)";
pub const FOREIGN_KEY_LIST: &str = "SELECT m.name, f.\"table\" FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f \
     WHERE m.type = 'table' ORDER BY m.name, f.id, f.seq";
pub const FOREIGN_KEY_CHECK: &str = "PRAGMA foreign_key_check";
/// SQLite's default limit is 32766 bound parameters; a wide prepared statement also costs
/// memory, so at most 500 rows.
pub const INSERT_LIMITS: InsertLimits = InsertLimits {
    max_params: 30_000,
    max_rows: 500,
    max_bytes: usize::MAX,
};

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// SQLite's type affinity rule: a declared type containing CHAR, CLOB or TEXT.
pub fn is_text_type(t: &str) -> bool {
    let t = t.to_ascii_uppercase();
    t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT")
}

/// SQLite would round a REAL put into a TEXT column to 15 digits (so it goes as text), and
/// stores NaN as NULL (so it is refused).
pub fn fit(column: &str, v: &mut Value, text_column: bool) -> Result<(), Unfit> {
    if let Value::Real(f) = *v {
        if text_column {
            *v = Value::Text(real_text(f));
        } else if f.is_nan() {
            return Err(Unfit::new(
                column,
                "target",
                format!(
                    "{column}: SQLite stores NaN as NULL, which would lose the value; map it with a transform or write it to a text column"
                ),
            ));
        }
    }
    Ok(())
}

/// A real as text, infinities spelt as PostgreSQL does.
pub fn real_text(f: f64) -> String {
    match f {
        f if f == f64::INFINITY => "Infinity".into(),
        f if f == f64::NEG_INFINITY => "-Infinity".into(),
        f => f.to_string(),
    }
}

/// The file of a `sqlite://path` URL, relative paths taken from the project folder.
pub fn path_of(url: &str, project_dir: &Path) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    let p = Path::new(path);
    Some(if p.is_absolute() {
        p.to_path_buf()
    } else {
        project_dir.join(p)
    })
}

pub async fn connect(url: &DbUrl, project_dir: &Path, role: Role) -> Result<sqlx::SqlitePool> {
    let path = path_of(url.expose(), project_dir).ok_or_else(|| eyre!("bad sqlite URL {url}"))?;
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
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .map_err(|e| connect_error(url, role, e))
}

/// The database file of a pool; `None` for an in-memory database.
pub fn file_of(pool: &sqlx::SqlitePool) -> Option<PathBuf> {
    let opts = pool.connect_options();
    let file = opts.get_filename();
    let name = file.to_string_lossy();
    if name.is_empty() || name.contains(":memory:") {
        return None;
    }
    Some(file.to_path_buf())
}

pub async fn for_each_row<F>(pool: &sqlx::SqlitePool, sql: &str, f: F) -> Result<(), sqlx::Error>
where
    F: AsyncFnMut(Vec<Value>) -> ControlFlow<()>,
{
    super::stream_rows!(pool.begin().await?, sql, f, crate::engine::decode::decode_sqlite)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::backend::{Db, Dialect};

    #[test]
    fn quotes_identifiers_with_the_quote_inside() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(Dialect::Sqlite.quote_table("main.t\"x"), "\"main\".\"t\"\"x\"");
    }

    #[test]
    fn fits_reals_as_sqlite_stores_them() {
        let mut v = Value::Real(0.1 + 0.2);
        fit("c", &mut v, true).unwrap();
        assert_eq!(v, Value::Text("0.30000000000000004".into()));
        let mut inf = Value::Real(f64::NEG_INFINITY);
        fit("c", &mut inf, true).unwrap();
        assert_eq!(inf, Value::Text("-Infinity".into()));
        assert!(fit("c", &mut Value::Real(f64::NAN), false).is_err());
        assert!(is_text_type("VARCHAR(10)") && !is_text_type("INTEGER"));
    }

    /// The DDL of the tool's own tables runs on a fresh in-memory database, twice.
    #[tokio::test]
    async fn own_tables_ddl_is_valid() {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let db = Db::Sqlite(pool);
        for _ in 0..2 {
            crate::engine::store::ledger::ensure(&db).await.unwrap();
            crate::engine::store::ensure(&db).await.unwrap();
        }
        for t in [
            "cutover_ledger",
            "cutover_events",
            "cutover_id_map",
            "cutover_rejects",
            "cutover_checkpoints",
        ] {
            assert!(db.table_exists(t).await.unwrap(), "{t}");
        }
        let mut tx = db.begin().await.unwrap();
        let cols = tx.table_columns("cutover_id_map").await.unwrap();
        assert_eq!(cols.get("old_key").map(String::as_str), Some("text"));
        // the upsert clause works
        for n in [1, 2] {
            tx.execute(
                &format!(
                    "INSERT INTO cutover_checkpoints (version, rows_read, written, skipped, rejected, merged, warnings, batches, updated_at) VALUES ('v', {n}, 0, 0, 0, 0, 0, 0, 'x') {}",
                    Dialect::Sqlite.upsert_clause(&["version"], &["rows_read"])
                ),
                &[],
            )
            .await
            .unwrap();
        }
        let r = tx
            .fetch_all("SELECT rows_read FROM cutover_checkpoints", &[])
            .await
            .unwrap();
        assert_eq!(r.rows, vec![vec![Value::Int(2)]]);
        tx.rollback().await.unwrap();
    }
}
