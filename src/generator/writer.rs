//! Streaming insert: multi-row `INSERT` statements inside large transactions.
//!
//! Rows are buffered only up to one statement (a few hundred rows), so memory stays flat; the
//! full-size statement text is built once per table and then reused from sqlx's statement cache.

use color_eyre::Result;
use color_eyre::eyre::WrapErr;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

use super::schema::columns;

/// Rows per multi-row INSERT (capped further by the bind-parameter limit).
const ROWS_PER_STATEMENT: usize = 250;
/// Stay well under SQLite's default limit of 32766 bind parameters.
const MAX_PARAMS: usize = 8_000;
/// Rows per transaction: big enough to amortise commits, small enough to bound the page cache.
const ROWS_PER_TRANSACTION: u64 = 50_000;

/// One bound value.
#[derive(Debug, Clone)]
pub(crate) enum V {
    Null,
    Text(String),
    Int(i64),
    Real(f64),
    Blob(Vec<u8>),
}

impl From<String> for V {
    fn from(s: String) -> Self {
        V::Text(s)
    }
}

impl From<&str> for V {
    fn from(s: &str) -> Self {
        V::Text(s.to_string())
    }
}

impl From<Option<String>> for V {
    fn from(s: Option<String>) -> Self {
        s.map_or(V::Null, V::Text)
    }
}

impl From<Option<&str>> for V {
    fn from(s: Option<&str>) -> Self {
        s.map_or(V::Null, |s| V::Text(s.to_string()))
    }
}

/// The connection plus the running transaction.
pub(crate) struct Sink {
    pub conn: SqliteConnection,
    rows_in_transaction: u64,
}

impl Sink {
    pub(crate) async fn begin(conn: SqliteConnection) -> Result<Self> {
        let mut sink = Sink {
            conn,
            rows_in_transaction: 0,
        };
        sqlx::query("BEGIN").execute(&mut sink.conn).await?;
        Ok(sink)
    }

    async fn wrote(&mut self, rows: u64) -> Result<()> {
        self.rows_in_transaction += rows;
        if self.rows_in_transaction >= ROWS_PER_TRANSACTION {
            sqlx::query("COMMIT").execute(&mut self.conn).await?;
            sqlx::query("BEGIN").execute(&mut self.conn).await?;
            self.rows_in_transaction = 0;
        }
        Ok(())
    }

    pub(crate) async fn commit(mut self) -> Result<SqliteConnection> {
        sqlx::query("COMMIT").execute(&mut self.conn).await?;
        Ok(self.conn)
    }
}

/// A buffered writer for one legacy table.
pub(crate) struct TableWriter {
    table: &'static str,
    ncols: usize,
    rows_per_statement: usize,
    buf: Vec<V>,
    full_sql: SqlStr,
    pub rows: u64,
}

impl TableWriter {
    pub(crate) fn new(table: &'static str) -> Self {
        let ncols = columns(table).len().max(1);
        let rows_per_statement = ROWS_PER_STATEMENT.min(MAX_PARAMS / ncols).max(1);
        TableWriter {
            table,
            ncols,
            rows_per_statement,
            buf: Vec::with_capacity(rows_per_statement * ncols),
            full_sql: insert_sql(table, rows_per_statement),
            rows: 0,
        }
    }

    pub(crate) async fn push<const N: usize>(&mut self, sink: &mut Sink, row: [V; N]) -> Result<()> {
        debug_assert_eq!(N, self.ncols, "row arity for {}", self.table);
        self.buf.extend(row);
        self.rows += 1;
        if self.buf.len() >= self.rows_per_statement * self.ncols {
            self.flush(sink).await?;
        }
        Ok(())
    }

    pub(crate) async fn flush(&mut self, sink: &mut Sink) -> Result<()> {
        let n = self.buf.len() / self.ncols;
        if n == 0 {
            return Ok(());
        }
        let sql = if n == self.rows_per_statement {
            self.full_sql.clone()
        } else {
            insert_sql(self.table, n)
        };
        let mut q = sqlx::query(sql);
        for v in self.buf.drain(..) {
            q = match v {
                V::Null => q.bind(None::<String>),
                V::Text(s) => q.bind(s),
                V::Int(i) => q.bind(i),
                V::Real(f) => q.bind(f),
                V::Blob(b) => q.bind(b),
            };
        }
        q.execute(&mut sink.conn)
            .await
            .wrap_err_with(|| format!("inserting {n} rows into {}", self.table))?;
        sink.wrote(n as u64).await
    }
}

fn insert_sql(table: &'static str, rows: usize) -> SqlStr {
    let cols = columns(table);
    let tuple = format!("({})", vec!["?"; cols.len()].join(","));
    let values = vec![tuple.as_str(); rows].join(",");
    // Table and column names are compile-time constants and every value is a bind parameter.
    AssertSqlSafe(format!("INSERT INTO {table} ({}) VALUES {values}", cols.join(","))).into_sql_str()
}
