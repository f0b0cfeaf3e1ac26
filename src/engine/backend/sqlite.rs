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
/// Whether the columns `$2` (a JSON array) are exactly the primary key of table `$1` and can
/// hold no NULL: the rowid itself (a one-column INTEGER PRIMARY KEY with no index of its own;
/// `INTEGER PRIMARY KEY DESC` is not the rowid and has one), or primary-key columns all declared
/// NOT NULL (SQLite lets a NULL into any other primary key).
pub const IS_PRIMARY_KEY: &str = "SELECT 1 WHERE \
     (SELECT group_concat(name, char(31)) FROM (SELECT name FROM pragma_table_info($1) WHERE pk > 0 ORDER BY name)) \
       = (SELECT group_concat(value, char(31)) FROM (SELECT value FROM json_each($2) ORDER BY value)) \
     AND (NOT EXISTS (SELECT 1 FROM pragma_table_info($1) WHERE pk > 0 AND \"notnull\" = 0) \
       OR ((SELECT COUNT(*) FROM pragma_table_info($1) WHERE pk > 0) = 1 \
           AND EXISTS (SELECT 1 FROM pragma_table_info($1) WHERE pk = 1 AND upper(type) = 'INTEGER') \
           AND NOT EXISTS (SELECT 1 FROM pragma_index_list($1) WHERE origin = 'pk')))";
/// A unique index of table `$1` whose columns are all among `$2` (a JSON array), over whole
/// columns (no expression, not partial); or a one-column INTEGER PRIMARY KEY (the rowid, which
/// has no index of its own) among them.
pub const UNIQUE_INDEX_WITHIN: &str = "SELECT 1 FROM pragma_index_list($1) il WHERE il.\"unique\" = 1 AND il.partial = 0 \
     AND NOT EXISTS (SELECT 1 FROM pragma_index_info(il.name) ii \
       WHERE ii.name IS NULL OR ii.name NOT IN (SELECT value FROM json_each($2))) \
     UNION ALL SELECT 1 FROM pragma_table_info($1) c WHERE c.pk = 1 AND upper(c.type) = 'INTEGER' \
       AND c.name IN (SELECT value FROM json_each($2)) \
       AND (SELECT COUNT(*) FROM pragma_table_info($1) WHERE pk > 0) = 1 \
     LIMIT 1";
/// The plain indexes of table `$1` (made by CREATE INDEX, not unique, so none backs a
/// constraint; not partial: its predicate could fail on a row the build then meets): name,
/// the statement that made it, and its first column (NULL for an expression).
pub const SECONDARY_INDEXES: &str = "SELECT il.name, m.sql, \
       (SELECT ii.name FROM pragma_index_info(il.name) ii WHERE ii.seqno = 0) \
     FROM pragma_index_list($1) il JOIN sqlite_master m ON m.type = 'index' AND m.name = il.name \
     WHERE il.\"unique\" = 0 AND il.origin = 'c' AND il.partial = 0 AND m.sql IS NOT NULL ORDER BY il.name";
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
    if role == Role::Source {
        // A source query's sorts and temporary b-trees (ORDER BY, DISTINCT, a window's
        // partitions) go to a temporary file past the page cache: the bundled SQLite keeps
        // them in memory by default, which grows the process with the data. Not on the target,
        // whose temporary b-trees are per statement and small (an OR of key lookups): on
        // disk they cost a write and a read each and made link_views a third slower.
        opts = opts.pragma("temp_store", "FILE");
    }
    if role == Role::Target {
        // WAL lets the console read the ledger while a run writes.
        opts = opts
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            // A checkpoint every 10,000 WAL pages (40 MB on disk) instead of 1,000: it runs in
            // the committing batch, and an index page that ten batches touch is copied back
            // once instead of up to ten times. Clinic project at 200k patients, three
            // interleaved pairs: `accounts` 4.3-4.5 s against 4.6-4.7 s, `persons` 6.7-7.3 s
            // against 7.3-7.5 s, `link_views` 12.1-12.4 s against 12.6-13.1 s, same peak.
            .pragma("wal_autocheckpoint", "10000");
    } else {
        opts = opts.read_only(true);
    }
    // Opening a fresh target switches it to WAL, which needs the file's exclusive lock; SQLite
    // answers SQLITE_BUSY at once (the busy handler is not consulted there) when another
    // connection opens it at the same instant, as the console's first reads do. Such a refusal
    // is a moment's contention, not an error: try again for as long as a busy wait would.
    let started = std::time::Instant::now();
    loop {
        match sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.clone())
            .await
        {
            Ok(pool) => return Ok(pool),
            Err(e) if is_busy(&e) && started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(connect_error(url, role, e)),
        }
    }
}

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), extended codes included.
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        _ => false,
    }
}

/// `VACUUM INTO path`: a consistent, compacted copy of the database in a new file.
pub async fn vacuum_into(pool: &sqlx::SqlitePool, path: &Path) -> Result<()> {
    let target = path
        .to_str()
        .ok_or_else(|| eyre!("the backup path {} is not valid UTF-8", path.display()))?;
    sqlx::query("VACUUM INTO ?1")
        .bind(target)
        .execute(pool)
        .await
        .map_err(|e| eyre!("VACUUM INTO {} failed: {e}", path.display()))?;
    Ok(())
}

/// Whether `path` holds a whole, sound SQLite database: opened read-only and immutable (no
/// side files), it must have at least one page and pass `PRAGMA integrity_check`. A truncated
/// file or a file of another kind fails here instead of replacing a good database.
pub async fn check_file(path: &Path) -> Result<()> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(true);
    let mut conn = sqlx::ConnectOptions::connect(&opts)
        .await
        .map_err(|e| eyre!("it cannot be opened as a SQLite database: {e}"))?;
    let checked = async {
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(&mut conn).await?;
        let problems: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check(5)")
            .fetch_all(&mut conn)
            .await?;
        Ok::<_, sqlx::Error>((pages, problems))
    }
    .await;
    if let Err(e) = sqlx::Connection::close(conn).await {
        tracing::debug!("closing the checked file: {e}");
    }
    match checked {
        Err(e) => Err(eyre!("it is not a sound SQLite database: {e}")),
        Ok((0, _)) => Err(eyre!("it is an empty file, not a database")),
        Ok((_, problems)) if problems != ["ok"] => {
            Err(eyre!("it is not a sound SQLite database: {}", problems.join("; ")))
        }
        Ok(_) => Ok(()),
    }
}

/// The database file of a pool; `None` for an in-memory database.
pub fn file_of(pool: &sqlx::SqlitePool) -> Option<PathBuf> {
    let opts = pool.connect_options();
    let file = opts.get_filename();
    let name = file.to_string_lossy();
    // sqlx names `sqlite::memory:` `file:sqlx-in-memory-N` (a shared in-memory database).
    if name.is_empty()
        || name.contains(":memory:")
        || name.starts_with("file:sqlx-in-memory-")
        || name.contains("mode=memory")
    {
        return None;
    }
    Some(file.to_path_buf())
}

/// Whether any other connection committed to a SQLite file since the watch began: `PRAGMA
/// data_version` on a read-only connection of the watch's own, which SQLite changes whenever
/// another connection (of this process or any other) commits to the file. A source only this
/// run reads answers `false`, so a count taken after the watch began is still the source's.
/// A file put in its place (`mv`, a copy over it) is not a commit the watch's open file sees:
/// the file's identity, size and modification time are compared as well.
pub struct CommitWatch {
    conn: std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>,
    path: PathBuf,
    began: i64,
    file: Option<FileStamp>,
}

/// What changes when a file is replaced or written outside SQLite.
#[derive(Clone, PartialEq, Eq, Debug)]
struct FileStamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        device: m.dev(),
        inode: m.ino(),
        len: m.len(),
        modified: m.modified().ok(),
    })
}

impl CommitWatch {
    pub async fn begin(path: PathBuf) -> Result<CommitWatch> {
        tokio::task::spawn_blocking(move || {
            use rusqlite::OpenFlags;
            let conn = rusqlite::Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| eyre!("opening {} to watch it: {e}", path.display()))?;
            conn.busy_timeout(Duration::from_secs(30))?;
            let file = file_stamp(&path);
            let began = data_version(&conn)?;
            Ok(CommitWatch {
                conn: std::sync::Arc::new(std::sync::Mutex::new(conn)),
                path,
                began,
                file,
            })
        })
        .await
        .map_err(|e| eyre!("the commit watch stopped: {e}"))?
    }

    /// `true` when some connection committed to the file since [`CommitWatch::begin`], or
    /// the file at its path is no longer the one it was (or cannot be told).
    pub async fn committed_since(&self) -> Result<bool> {
        let (conn, began) = (self.conn.clone(), self.began);
        let (path, file) = (self.path.clone(), self.file.clone());
        tokio::task::spawn_blocking(move || {
            if file.is_none() || file_stamp(&path) != file {
                return Ok(true);
            }
            let conn = conn
                .lock()
                .map_err(|_| eyre!("the commit watch's connection is poisoned"))?;
            Ok(data_version(&conn)? != began)
        })
        .await
        .map_err(|e| eyre!("the commit watch stopped: {e}"))?
    }
}

fn data_version(conn: &rusqlite::Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))?)
}

/// Stream a query on a SQLite file through SQLite's own handle on a blocking thread, a page at
/// a time: no message between threads per row and no copy of every cell into a driver row
/// (through sqlx those were a third of the client's work on a large source). The statement is
/// one read transaction from its first row to its last.
/// `cache_kib` sizes the connection's page cache (SQLite's default, 2 MB, when `None`); the
/// process-wide soft heap limit still bounds every cache together.
pub fn stream_pages(
    path: PathBuf,
    sql: String,
    params: Vec<Value>,
    page_rows: usize,
    cache_kib: Option<u32>,
) -> super::PageStream {
    let (out, pages) = tokio::sync::mpsc::channel(1);
    tokio::task::spawn_blocking(move || {
        let sent = send_native_pages(&path, &sql, &params, page_rows, cache_kib, &out);
        let last = match sent {
            Ok(true) => Ok(None),
            Ok(false) => return,
            Err(e) => Err(e),
        };
        let _ = out.blocking_send(last);
    });
    pages
}

/// `Ok(true)` when every row was sent, `Ok(false)` when the receiver went away.
fn send_native_pages(
    path: &Path,
    sql: &str,
    params: &[Value],
    page_rows: usize,
    cache_kib: Option<u32>,
    out: &tokio::sync::mpsc::Sender<Result<Option<super::Rows>>>,
) -> Result<bool> {
    use rusqlite::OpenFlags;
    let conn =
        rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| eyre!("opening {} to read: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // A query source's ORDER BY and window sort every row of the source: on disk past the page
    // cache, not in memory (the bundled SQLite's default), so memory stays flat as data grows.
    conn.pragma_update(None, "temp_store", "FILE")?;
    if let Some(kib) = cache_kib {
        // A negative cache_size is in KiB.
        conn.pragma_update(None, "cache_size", -i64::from(kib))?;
    }
    let mut stmt = conn.prepare(sql)?;
    let names: Vec<String> = stmt.column_names().iter().map(|n| n.to_string()).collect();
    let declared: Vec<String> = stmt
        .columns()
        .iter()
        .map(|c| c.decl_type().unwrap_or("").to_string())
        .collect();
    let text_affinity: Vec<bool> = declared.iter().map(|d| has_text_affinity(d)).collect();
    let bound: Vec<rusqlite::types::Value> = params.iter().map(native_param).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(bound.iter()))?;
    let empty_page = || super::Rows {
        columns: names.clone(),
        types: declared.clone(),
        rows: Vec::with_capacity(page_rows),
        issues: Vec::new(),
    };
    let mut page = empty_page();
    while let Some(row) = rows.next()? {
        let mut issues = Vec::new();
        let vals = crate::engine::decode::decode_sqlite_native(row, &names, &text_affinity, &mut issues)?;
        let n = page.rows.len();
        page.issues.extend(issues.into_iter().map(|i| (n, i)));
        page.rows.push(vals);
        if page.rows.len() >= page_rows {
            let full = std::mem::replace(&mut page, empty_page());
            if out.blocking_send(Ok(Some(full))).is_err() {
                return Ok(false);
            }
        }
    }
    if !page.rows.is_empty() && out.blocking_send(Ok(Some(page))).is_err() {
        return Ok(false);
    }
    Ok(true)
}

/// SQLite's own rule for a declared type's TEXT affinity: it names CHAR, CLOB or TEXT, and not INT.
fn has_text_affinity(declared: &str) -> bool {
    let d = declared.to_ascii_uppercase();
    !d.contains("INT") && (d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT"))
}

fn native_param(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as N;
    match v {
        Value::Null => N::Null,
        Value::Bool(b) => N::Integer(*b as i64),
        Value::Int(i) => N::Integer(*i),
        Value::Real(f) => N::Real(*f),
        Value::Text(s) => N::Text(s.clone()),
        Value::Bytes(b) => N::Blob(b.bytes.clone()),
        Value::Json(j) => N::Text(j.to_string()),
    }
}

/// Rows per page of [`for_each_row`]'s native stream: small rows (keys, digests), one page in
/// flight.
const FOR_EACH_PAGE_ROWS: usize = 1000;

/// Page cache of a [`for_each_row`] that probes indexes (`Db::for_each_row_probing`). Verify's
/// foreign-key check probes each parent's key index once per child row: with SQLite's default
/// 2 MB most probes missed the cache and cost a `pread` (clinic project at 200k patients:
/// `PRAGMA foreign_key_check` in `sqlite3` 3.4-3.8 s, 1.6 s of it in the kernel; with 16 MB
/// 2.4 s, 0.2 s in the kernel). A scan gets SQLite's default: a bigger cache only holds pages
/// it will not read again. The process's budget (main.rs) bounds it: `verify` raises it.
pub const PROBING_CACHE_KIB: u32 = 16 << 10;

/// A file is read through SQLite's own handle, opened read-only, a page at a time: verify's
/// checksums read every key of both sides, and through sqlx each row cost a message between
/// threads and a driver row. An in-memory database goes through the pool, in a transaction
/// that is rolled back.
/// `cache_kib` as in [`stream_pages`].
pub async fn for_each_row<F>(
    pool: &sqlx::SqlitePool,
    sql: &str,
    cache_kib: Option<u32>,
    mut f: F,
) -> Result<(), sqlx::Error>
where
    F: AsyncFnMut(Vec<Value>) -> ControlFlow<()>,
{
    let Some(path) = file_of(pool) else {
        return super::stream_rows!(pool.begin().await?, sql, f, crate::engine::decode::decode_sqlite);
    };
    // Dropping the receiver (on `Break` or an error) ends the reading thread at its next page.
    let mut pages = stream_pages(path, sql.to_string(), Vec::new(), FOR_EACH_PAGE_ROWS, cache_kib);
    while let Some(message) = pages.recv().await {
        let page = match message {
            Ok(Some(page)) => page,
            Ok(None) => return Ok(()),
            Err(e) => return Err(sqlx::Error::Database(Box::new(NativeError(format!("{e:#}"))))),
        };
        if let Some((_, issue)) = page.issues.first() {
            return Err(issue.to_error(page.columns.get(issue.column).cloned().unwrap_or_default()));
        }
        for row in page.rows {
            if f(row).await.is_break() {
                return Ok(());
            }
        }
    }
    Err(sqlx::Error::WorkerCrashed)
}

/// An error SQLite's own handle returned (the statement, its prepare or its rows), for callers
/// that take the driver's errors.
#[derive(Debug)]
struct NativeError(String);

impl std::fmt::Display for NativeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NativeError {}

impl sqlx::error::DatabaseError for NativeError {
    fn message(&self) -> &str {
        &self.0
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> sqlx::error::ErrorKind {
        sqlx::error::ErrorKind::Other
    }
}

/// SQLite's key list: the page's keys as one JSON array parameter, read back by `json_each`
/// (`[k, ...]` for one column, `[[a, b], ...]` for several). One statement per page, planned
/// once, where an `IN` list took one statement of up to 500 parameters per 500 keys (an `OR`
/// of equalities for several columns); SQLite searches the key's index once per listed key
/// either way. Values keep their JSON type, and are cast to text for a text column, so they
/// compare as bound parameters would.
pub(super) fn key_list_filter(
    columns: &[(String, Option<String>)],
    keys: &[Vec<Value>],
    first: usize,
) -> Option<(String, Vec<Value>)> {
    let cell = |v: &Value| match v {
        Value::Text(t) => Some(serde_json::Value::String(t.clone())),
        Value::Int(i) => Some(serde_json::Value::from(*i)),
        _ => None,
    };
    let mut list = Vec::with_capacity(keys.len());
    for k in keys {
        if k.len() != columns.len() || k.iter().any(|v| v.is_null()) {
            continue;
        }
        if columns.len() == 1 {
            list.push(cell(&k[0])?);
        } else {
            list.push(serde_json::Value::Array(
                k.iter().map(cell).collect::<Option<Vec<_>>>()?,
            ));
        }
    }
    let lhs: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
    // A JSON integer meets a TEXT column without the column's affinity turning it to text
    // (a bound integer parameter would be): the cast keeps `7` finding the text '7'.
    let select: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| {
            let v = if columns.len() == 1 {
                "value".to_string()
            } else {
                format!("value ->> {i}")
            };
            if ty.as_deref().is_some_and(is_text_type) {
                format!("CAST({v} AS TEXT)")
            } else {
                v
            }
        })
        .collect();
    let select = select.join(", ");
    let sql = format!("({}) IN (SELECT {select} FROM json_each(${first}))", lhs.join(", "));
    Some((sql, vec![Value::Text(serde_json::Value::Array(list).to_string())]))
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

    /// The watch answers `false` while only readers touch the file, and `true` after a commit
    /// by another connection, and after another file was put in its place with the same
    /// rows (no commit the watch's own open file could see).
    #[tokio::test]
    async fn a_commit_watch_sees_commits_and_a_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("legacy.db");
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer
            .execute_batch("CREATE TABLE t (id INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        let watch = CommitWatch::begin(path.clone()).await.unwrap();
        let reader = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = reader.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        assert!(!watch.committed_since().await.unwrap(), "a read is no commit");
        writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
        assert!(watch.committed_since().await.unwrap(), "a commit");

        let watch = CommitWatch::begin(path.clone()).await.unwrap();
        assert!(!watch.committed_since().await.unwrap());
        let copy = dir.path().join("copy.db");
        std::fs::copy(&path, &copy).unwrap();
        std::fs::rename(&copy, &path).unwrap();
        assert!(watch.committed_since().await.unwrap(), "a file put in its place");
    }

    /// Which tables refuse two rows equal on which columns: whole-column unique indexes and
    /// primary keys (the rowid one too), not partial or expression indexes, and not an index
    /// that needs a column outside the list.
    #[tokio::test]
    async fn unique_indexes_are_found_within_a_column_list() {
        let db = memory_db_with(&[
            "CREATE TABLE rowid_pk (id INTEGER PRIMARY KEY, v TEXT)",
            "CREATE TABLE bigint_pk (id BIGINT PRIMARY KEY, v TEXT)",
            "CREATE TABLE pair (a TEXT, b TEXT, c TEXT, UNIQUE (a, b))",
            "CREATE TABLE partial (a TEXT, live INTEGER)",
            "CREATE UNIQUE INDEX partial_a ON partial (a) WHERE live = 1",
            "CREATE TABLE expr (a TEXT)",
            "CREATE UNIQUE INDEX expr_a ON expr (lower(a))",
            "CREATE TABLE plain (a TEXT, b TEXT)",
            "CREATE INDEX plain_a ON plain (a)",
            "CREATE TABLE two_pk (a INTEGER, b INTEGER, PRIMARY KEY (a, b))",
        ])
        .await;
        let within = async |t: &str, cols: &[&str]| db.unique_index_within(t, cols).await.unwrap();
        assert!(within("rowid_pk", &["id"]).await);
        assert!(!within("rowid_pk", &["v"]).await);
        assert!(within("bigint_pk", &["id"]).await);
        assert!(within("pair", &["a", "b"]).await);
        assert!(within("pair", &["b", "c", "a"]).await, "a subset of the key is unique");
        assert!(!within("pair", &["a"]).await);
        assert!(!within("partial", &["a"]).await);
        assert!(!within("expr", &["a"]).await);
        assert!(!within("plain", &["a"]).await);
        assert!(!within("two_pk", &["a"]).await, "one part of a two-column rowid key");
        assert!(within("two_pk", &["a", "b"]).await);
        assert!(!within("missing", &["a"]).await);
    }

    /// A key that is the table's primary key and can hold no NULL: the rowid, or primary-key
    /// columns declared NOT NULL. SQLite lets NULLs into other primary keys (and into an
    /// `INTEGER PRIMARY KEY DESC`, which is not the rowid), so those still need the key check.
    #[tokio::test]
    async fn primary_keys_that_hold_no_null_are_found() {
        let db = memory_db_with(&[
            "CREATE TABLE rowid_pk (id INTEGER PRIMARY KEY, v TEXT)",
            "CREATE TABLE desc_pk (id INTEGER PRIMARY KEY DESC, v TEXT)",
            "CREATE TABLE text_pk (id TEXT PRIMARY KEY, v TEXT)",
            "CREATE TABLE text_pk_nn (id TEXT NOT NULL PRIMARY KEY, v TEXT)",
            "CREATE TABLE two (a TEXT NOT NULL, b INTEGER NOT NULL, v TEXT, PRIMARY KEY (a, b))",
            "CREATE TABLE uniq (id INTEGER NOT NULL UNIQUE, v TEXT)",
        ])
        .await;
        // What SQLite lets in: a NULL key in the two that are not flagged.
        db.execute("INSERT INTO desc_pk VALUES (NULL, 'x')", &[]).await.unwrap();
        db.execute("INSERT INTO text_pk VALUES (NULL, 'x')", &[]).await.unwrap();
        let pk = async |t: &str, cols: &[&str]| db.is_primary_key(t, cols).await.unwrap();
        assert!(pk("rowid_pk", &["id"]).await);
        assert!(!pk("rowid_pk", &["v"]).await);
        assert!(!pk("desc_pk", &["id"]).await);
        assert!(!pk("text_pk", &["id"]).await);
        assert!(pk("text_pk_nn", &["id"]).await);
        assert!(pk("two", &["b", "a"]).await);
        assert!(!pk("two", &["a"]).await);
        assert!(!pk("two", &["a", "b", "v"]).await);
        assert!(!pk("uniq", &["id"]).await);
        assert!(!pk("missing", &["id"]).await);
    }

    /// Plain indexes only: not unique, not partial, not another table's.
    #[tokio::test]
    async fn secondary_indexes_are_the_plain_ones() {
        let db = memory_db_with(&[
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT UNIQUE, b TEXT, c TEXT, live INTEGER)",
            "CREATE INDEX t_b ON t (b)",
            "create  index \"t c,b\" on t (c, b)",
            "CREATE INDEX t_lower ON t (lower(b))",
            "CREATE INDEX t_live ON t (b) WHERE live = 1",
            "CREATE UNIQUE INDEX t_c ON t (c)",
            "CREATE TABLE other (x TEXT)",
            "CREATE INDEX other_x ON other (x)",
        ])
        .await;
        let found = db.secondary_indexes("t").await.unwrap();
        let summary: Vec<(&str, Option<&str>, &str)> = found
            .iter()
            .map(|i| (i.name.as_str(), i.first_column.as_deref(), i.create_sql.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("t c,b", Some("c"), "CREATE INDEX IF NOT EXISTS \"t c,b\" on t (c, b)"),
                ("t_b", Some("b"), "CREATE INDEX IF NOT EXISTS t_b ON t (b)"),
                ("t_lower", None, "CREATE INDEX IF NOT EXISTS t_lower ON t (lower(b))"),
            ]
        );
        // Dropped and made again from what was found, the index is the same and the
        // statement can run twice.
        let t_b = &found[1];
        db.execute(&t_b.drop_sql, &[]).await.unwrap();
        assert!(db.secondary_indexes("t").await.unwrap().iter().all(|i| i.name != "t_b"));
        db.execute(&t_b.create_sql, &[]).await.unwrap();
        db.execute(&t_b.create_sql, &[]).await.unwrap();
        assert_eq!(db.secondary_indexes("t").await.unwrap().len(), 3);
        assert!(db.secondary_indexes("missing").await.unwrap().is_empty());
    }

    /// A fresh in-memory database holding the tables `ddl` creates.
    async fn memory_db_with(ddl: &[&str]) -> Db {
        let db = memory_db().await;
        for statement in ddl {
            db.execute(statement, &[]).await.unwrap();
        }
        db
    }

    /// A fresh in-memory database on one connection (each connection would have its own).
    async fn memory_db() -> Db {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        Db::Sqlite(pool)
    }

    /// `for_each_row` on a file reads through SQLite's own handle and on an in-memory database
    /// through the pool: the same rows and values either way, a `Break` ends the read, a cell
    /// that is not UTF-8 is an error naming its column, a bad statement is SQLite's message, and
    /// nothing is written through it.
    #[tokio::test]
    async fn rows_are_the_same_read_natively_or_through_the_pool() {
        let ddl = [
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, raw BLOB, note TEXT)",
            "INSERT INTO t VALUES (1, 'Ada', 1.5, X'00ff', NULL), (2, 'Bo', NULL, NULL, 'x'), (3, 'Ça', -2.0, X'', '')",
            "INSERT INTO t SELECT id + 3, name, score, raw, note FROM t",
            "CREATE TABLE bad (id INTEGER PRIMARY KEY, label TEXT)",
            "INSERT INTO bad VALUES (1, 'fine'), (2, CAST(X'ff00' AS TEXT))",
        ];
        let dir = tempfile::tempdir().unwrap();
        let file = Db::connect(&DbUrl::new("sqlite://f.db"), dir.path(), Role::Target)
            .await
            .unwrap();
        for statement in ddl {
            file.execute(statement, &[]).await.unwrap();
        }
        assert!(file.sqlite_file().is_some() && file.reads_natively());
        let memory = memory_db_with(&ddl).await;
        async fn all(db: &Db, sql: &str) -> Result<Vec<Vec<Value>>, sqlx::Error> {
            let mut rows = Vec::new();
            db.for_each_row(sql, async |r| {
                rows.push(r);
                ControlFlow::Continue(())
            })
            .await
            .map(|()| rows)
        }
        let sql = "SELECT * FROM t ORDER BY id";
        let native = all(&file, sql).await.unwrap();
        assert_eq!(native, all(&memory, sql).await.unwrap());
        assert_eq!(native.len(), 6);
        assert_eq!(native[0][3], Value::bytes(vec![0, 0xff]));
        assert_eq!(native[2][1], Value::Text("Ça".into()));
        // more rows than one page: every row once, in order
        let many = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2500) SELECT x FROM c";
        let rows = all(&file, many).await.unwrap();
        assert_eq!(rows.len(), 2500);
        assert!(
            rows.iter()
                .enumerate()
                .all(|(i, r)| r == &vec![Value::Int(i as i64 + 1)])
        );
        let mut seen = 0;
        file.for_each_row(many, async |_| {
            seen += 1;
            if seen == 1500 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await
        .unwrap();
        assert_eq!(seen, 1500, "a Break ends the read");
        match all(&file, "SELECT id, label FROM bad ORDER BY id").await {
            Err(sqlx::Error::ColumnDecode { index, .. }) => assert_eq!(index, "label"),
            other => panic!("{other:?}"),
        }
        let typo = all(&file, "SELECT * FROM nope").await.unwrap_err();
        assert!(matches!(typo, sqlx::Error::Database(_)), "{typo:?}");
        assert!(typo.to_string().contains("no such table: nope"), "{typo}");
        // read-only: a statement that would write is refused, and nothing changed
        assert!(all(&file, "DELETE FROM t RETURNING id").await.is_err());
        assert_eq!(
            all(&file, "SELECT COUNT(*) FROM t").await.unwrap(),
            vec![vec![Value::Int(6)]]
        );
        // a probing read gets its larger page cache; a scan and a source's page stream keep
        // SQLite's default
        let mut probing = Vec::new();
        file.for_each_row_probing("PRAGMA cache_size", async |r| {
            probing.push(r);
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
        assert_eq!(probing, vec![vec![Value::Int(-i64::from(PROBING_CACHE_KIB))]]);
        assert_eq!(
            all(&file, "PRAGMA cache_size").await.unwrap(),
            vec![vec![Value::Int(-2000)]]
        );
        let mut stream = file.stream_pages("PRAGMA cache_size".into(), Vec::new(), 10);
        let page = stream.recv().await.unwrap().unwrap().unwrap();
        assert_eq!(page.rows, vec![vec![Value::Int(-2000)]]);
        file.close().await;
    }

    /// The DDL of the tool's own tables runs on a fresh in-memory database, twice.
    #[tokio::test]
    async fn own_tables_ddl_is_valid() {
        let db = memory_db().await;
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

    /// SQLite's key list (`json_each` of one JSON parameter) finds exactly the rows an `IN`
    /// list of bound parameters finds: text against text, an integer key against an INTEGER
    /// column and against a TEXT one, two-column keys, keys with a NULL part matching nothing;
    /// and it uses the key's index (no scan of the table).
    #[tokio::test]
    async fn key_lists_match_as_bound_parameters_do() {
        let db = memory_db().await;
        let mut tx = db.begin().await.unwrap();
        tx.execute_raw("CREATE TABLE t (n INTEGER, s TEXT, x TEXT, UNIQUE (n, s))")
            .await
            .unwrap();
        tx.execute_raw("CREATE INDEX t_s ON t (s)").await.unwrap();
        tx.execute_raw(
            "INSERT INTO t VALUES (1, 'a', 'one'), (2, 'b', 'two'), (3, '7', 'three'), (4, 'O''Brien \"x\"', 'four')",
        )
        .await
        .unwrap();
        let ty = |c: &str| if c == "n" { "integer" } else { "text" };
        let one = |c: &str| vec![(format!("\"{c}\""), Some(ty(c).to_string()))];
        let found = |rows: super::super::Rows| -> Vec<String> {
            let mut v: Vec<String> = rows.rows.iter().filter_map(|r| r[0].to_text()).collect();
            v.sort();
            v
        };
        let text = |t: &str| Value::Text(t.into());
        // (columns with their types, keys, the rows' x expected)
        type Case<'a> = (Vec<(String, Option<String>)>, Vec<Vec<Value>>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            // text keys, one with quotes, one missing
            (
                one("s"),
                vec![vec![text("a")], vec![text("O'Brien \"x\"")], vec![text("zz")]],
                vec!["four", "one"],
            ),
            // text "2" against the INTEGER column, integer 7 against the TEXT column
            (one("n"), vec![vec![text("2")]], vec!["two"]),
            (one("s"), vec![vec![Value::Int(7)]], vec!["three"]),
            // two columns; a key with a NULL part matches nothing
            (
                vec![
                    ("\"n\"".into(), Some("integer".into())),
                    ("\"s\"".into(), Some("text".into())),
                ],
                vec![
                    vec![Value::Int(1), text("a")],
                    vec![Value::Int(2), text("a")],
                    vec![Value::Null, text("b")],
                ],
                vec!["one"],
            ),
        ];
        for (cols, keys, want) in cases {
            let (filter, params) = Dialect::Sqlite.key_list_filter(&cols, &keys, 1).expect("a key list");
            assert_eq!(params.len(), 1, "{filter}");
            let rows = tx
                .fetch_all(&format!("SELECT x FROM t WHERE {filter}"), &params)
                .await
                .unwrap();
            assert_eq!(found(rows), want, "{filter} {params:?}");
            let plan = tx
                .fetch_all(&format!("EXPLAIN QUERY PLAN SELECT x FROM t WHERE {filter}"), &params)
                .await
                .unwrap();
            let plan: Vec<String> = plan
                .rows
                .iter()
                .filter_map(|r| r.last().and_then(|v| v.to_text()))
                .collect();
            assert!(plan.iter().any(|l| l.starts_with("SEARCH t USING")), "{plan:?}");
            assert!(!plan.iter().any(|l| l == "SCAN t"), "{plan:?}");
        }
        // Values a JSON list cannot carry exactly leave the caller its IN list.
        assert!(
            Dialect::Sqlite
                .key_list_filter(&one("s"), &[vec![Value::bytes(vec![1])]], 1)
                .is_none()
        );
        assert!(
            Dialect::Sqlite
                .key_list_filter(&one("s"), &[vec![Value::Real(0.5)]], 1)
                .is_none()
        );
        tx.rollback().await.unwrap();
    }
}
