//! The database backends: the one place that knows how SQLite, PostgreSQL and MySQL/MariaDB
//! differ. Everything else speaks to a target or a source through [`Db`] (a pool) and
//! [`DbTx`] (a transaction), and asks the [`Dialect`] for the SQL fragments that differ
//! (quoting, DDL of the tool's own tables, upserts, casts, lock clauses).
//!
//! SQL is written with `$1`-style placeholders; SQLite and PostgreSQL take them as they are,
//! MySQL statements are rewritten to `?` with the parameters reordered ([`mysql::placeholders`]).
//!
//! The engine's own target SQL quotes identifiers ANSI-style (`"name"`, [`ident`]): a MariaDB
//! target session runs with `sql_mode` `ANSI_QUOTES` (and strict mode), so the same text works
//! on every target. Source SQL is quoted for the source's dialect ([`Dialect::quote_ident`]).

pub mod mysql;
pub mod postgres;
pub mod sqlite;

/// Commits to a source file by anyone else, seen through SQLite's `data_version`.
pub use sqlite::CommitWatch;

use crate::engine::config::DbUrl;
use crate::engine::decode::CellIssue;
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
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
    Mysql(mysql::MysqlTx),
}

/// What a connection is for: the target is created when missing, a source never is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Source,
    Target,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Target => "target",
        }
    }
}

/// A value the target cannot store as it is: the column, the reject rule and the reason.
#[derive(Debug)]
pub struct Unfit {
    pub column: String,
    pub rule: &'static str,
    pub reason: String,
}

impl Unfit {
    pub fn new(column: &str, rule: &'static str, reason: String) -> Unfit {
        Unfit {
            column: column.to_string(),
            rule,
            reason,
        }
    }
}

/// Where the foreign keys of a target are listed, and how orphans are found.
pub enum ForeignKeyCatalog {
    /// SQLite: `list` gives (table, parent table) per key column; `check` gives one row per
    /// orphan reference (table, rowid, parent, fkid).
    Pragma { list: &'static str, check: &'static str },
    /// A catalog query with one row per constraint: name, table, parent schema, parent table,
    /// child columns and parent columns (each list separated by `,` or U+001F).
    Query(&'static str),
}

/// Quote an ANSI identifier (`"name"`) for the engine's own SQL on the target.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote an identifier for a dialect (MySQL without ANSI_QUOTES wants backticks).
pub fn quote_ident(dialect: Dialect, name: &str) -> String {
    dialect.quote_ident(name)
}

impl Dialect {
    /// The dialect of a URL scheme (`sqlite`, `postgres`/`postgresql`, `mysql`/`mariadb`).
    pub fn from_scheme(scheme: &str) -> Option<Dialect> {
        match scheme {
            "sqlite" => Some(Dialect::Sqlite),
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::Mysql),
            _ => None,
        }
    }

    /// The dialect's name in file names (`up.mysql.sql`) and messages.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
        }
    }

    pub fn all() -> [Dialect; 3] {
        [Dialect::Sqlite, Dialect::Postgres, Dialect::Mysql]
    }

    /// Quote one identifier.
    pub fn quote_ident(self, name: &str) -> String {
        match self {
            Dialect::Sqlite => sqlite::quote_ident(name),
            Dialect::Postgres => postgres::quote_ident(name),
            Dialect::Mysql => mysql::quote_ident(name),
        }
    }

    /// Quote a possibly schema-qualified name (`schema.table`), part by part.
    pub fn quote_table(self, name: &str) -> String {
        name.split('.')
            .map(|p| self.quote_ident(p))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The column definition of an auto-incrementing integer primary key.
    pub fn serial_primary_key(self) -> &'static str {
        match self {
            Dialect::Sqlite => sqlite::SERIAL_PRIMARY_KEY,
            Dialect::Postgres => postgres::SERIAL_PRIMARY_KEY,
            Dialect::Mysql => mysql::SERIAL_PRIMARY_KEY,
        }
    }

    /// The type of a text column that is a key or indexed, holding up to `max_chars`
    /// characters (MySQL cannot index TEXT; SQLite and PostgreSQL use TEXT).
    pub fn key_text(self, max_chars: u32) -> String {
        match self {
            Dialect::Sqlite => "TEXT".into(),
            // Byte order ("C"): the tool's keys are compared for equality and paged, never
            // shown in a language's order, and a locale's strcoll in every B-tree step of the
            // ID map and reject indexes was a large share of the server's work per row.
            Dialect::Postgres => "TEXT COLLATE \"C\"".into(),
            Dialect::Mysql => mysql::key_text(max_chars),
        }
    }

    /// Options after `CREATE TABLE t (...)` for the tool's own tables (MySQL: InnoDB, utf8mb4,
    /// a binary no-pad collation so keys compare exactly as on the other targets).
    pub fn table_options(self) -> &'static str {
        match self {
            Dialect::Sqlite | Dialect::Postgres => "",
            Dialect::Mysql => mysql::TABLE_OPTIONS,
        }
    }

    /// Options for a tool table read only through its whole primary key (the ID map). SQLite
    /// stores it as the key's own B-tree (`WITHOUT ROWID`): a lookup is one descent, not the
    /// key's index and then the table (a third less time per page of keys against the clinic
    /// project's 1.5M-row map), and a write fills one tree, not two. PostgreSQL has no
    /// clustered tables; InnoDB clusters every table by its primary key already.
    pub fn keyed_table_options(self) -> &'static str {
        match self {
            Dialect::Sqlite => " WITHOUT ROWID",
            Dialect::Postgres | Dialect::Mysql => self.table_options(),
        }
    }

    /// The statement that refreshes the planner's statistics of a table (quoted name) a step
    /// has been filling, where the planner needs it: PostgreSQL plans a lookup of a page's keys
    /// from statistics taken when the table was small (or empty) until autovacuum comes round,
    /// so a table grown to millions of rows would still be planned as a few pages. SQLite's
    /// planner works without statistics and InnoDB refreshes its own. Of the (quoted)
    /// `columns` only, or of all columns when `columns` is empty.
    pub fn analyze_statement(self, table_sql: &str, columns: &[String]) -> Option<String> {
        match self {
            Dialect::Postgres if columns.is_empty() => Some(format!("ANALYZE {table_sql}")),
            Dialect::Postgres => Some(format!("ANALYZE {table_sql} ({})", columns.join(", "))),
            Dialect::Sqlite | Dialect::Mysql => None,
        }
    }

    /// The statement that gives back the space of a table a rollback emptied and refreshes its
    /// statistics (PostgreSQL's `VACUUM (ANALYZE)`; it runs outside a transaction). A deleted
    /// row stays in its page until a vacuum, and a foreign key without an index on the
    /// referencing side is checked by a scan of those pages for every parent row deleted:
    /// rolling back the clinic's persons after its emptied children took over ten minutes at
    /// 200k patients. SQLite frees the pages as it deletes; MariaDB indexes every foreign key.
    pub fn reclaim_statement(self, table_sql: &str) -> Option<String> {
        match self {
            Dialect::Postgres => Some(format!("VACUUM (ANALYZE) {table_sql}")),
            Dialect::Sqlite | Dialect::Mysql => None,
        }
    }

    /// The clause after `INSERT INTO t (...) VALUES (...)` that turns a conflict on the unique
    /// `conflict` columns into an update of `update` columns with the new values.
    pub fn upsert_clause(self, conflict: &[&str], update: &[&str]) -> String {
        match self {
            Dialect::Sqlite | Dialect::Postgres => postgres::upsert_clause(conflict, update),
            Dialect::Mysql => mysql::upsert_clause(update),
        }
    }

    /// Appended to a `SELECT` that must hold a share lock on the rows it read until commit.
    pub fn share_lock_suffix(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR SHARE",
            Dialect::Mysql => " LOCK IN SHARE MODE",
        }
    }

    /// A parameter or text expression written into a column of type `column_type`: cast on
    /// PostgreSQL, which does not convert text to uuid, date, ... implicitly.
    pub fn cast_to_column(self, expr: &str, column_type: Option<&str>) -> String {
        match self {
            Dialect::Postgres => postgres::cast_to_column(expr, column_type),
            Dialect::Sqlite | Dialect::Mysql => expr.to_string(),
        }
    }

    /// A keyset parameter `$n` compared with a source key of driver type `key_type`.
    pub fn key_param(self, n: usize, key_type: Option<&str>) -> String {
        match self {
            Dialect::Postgres => postgres::key_param(n, key_type),
            Dialect::Sqlite | Dialect::Mysql => format!("${n}"),
        }
    }

    /// Whether keyset parameters are cast to the key's type ([`Dialect::key_param`]), so the
    /// reader needs the key columns' types.
    pub fn casts_key_params(self) -> bool {
        matches!(self, Dialect::Postgres)
    }

    /// `lhs IN <this>` for row-value tuples `(a, b)`.
    pub fn tuple_list(self, tuples: &[String]) -> String {
        match self {
            Dialect::Sqlite | Dialect::Postgres => format!("(VALUES {})", tuples.join(", ")),
            Dialect::Mysql => format!("({})", tuples.join(", ")),
        }
    }

    /// `columns` (quoted) equal to one of `tuples` (each a parameter expression per column),
    /// as a condition. SQLite plans a row-value `IN (VALUES ...)` as a scan of the table for
    /// every statement; an `OR` of equalities uses the key's index (0.12 s against 0.013 s for
    /// 250 keys of a 250k-row table).
    pub fn tuple_in(self, columns: &[String], tuples: &[Vec<String>]) -> String {
        if columns.len() == 1 {
            let list: Vec<&str> = tuples.iter().filter_map(|t| t.first().map(String::as_str)).collect();
            return format!("{} IN ({})", columns[0], list.join(", "));
        }
        match self {
            Dialect::Sqlite => {
                let ors: Vec<String> = tuples
                    .iter()
                    .map(|t| {
                        let ands: Vec<String> = columns.iter().zip(t).map(|(c, p)| format!("{c} = {p}")).collect();
                        format!("({})", ands.join(" AND "))
                    })
                    .collect();
                format!("({})", ors.join(" OR "))
            }
            Dialect::Postgres | Dialect::Mysql => {
                let rows: Vec<String> = tuples.iter().map(|t| format!("({})", t.join(", "))).collect();
                format!("({}) IN {}", columns.join(", "), self.tuple_list(&rows))
            }
        }
    }

    /// Whether a column type (as [`DbTx::table_columns`] reports it) holds text.
    pub fn is_text_type(self, column_type: &str) -> bool {
        match self {
            Dialect::Sqlite => sqlite::is_text_type(column_type),
            Dialect::Postgres | Dialect::Mysql => matches!(
                column_type,
                "text"
                    | "character varying"
                    | "character"
                    | "varchar"
                    | "char"
                    | "tinytext"
                    | "mediumtext"
                    | "longtext"
                    | "citext"
                    | "name"
            ),
        }
    }

    /// Fix or refuse, before writing, a value the target would store as something else (see
    /// each backend's `fit`). Bytes bound for a text column are text in the source's encoding:
    /// decoded as UTF-8, never written as hex, on every target.
    pub fn fit(self, column: &str, v: &mut Value, text_column: bool) -> Result<(), Unfit> {
        if text_column && let Value::Bytes(b) = v {
            match String::from_utf8(std::mem::take(&mut b.bytes)) {
                Ok(s) => *v = Value::Text(s),
                Err(e) => {
                    return Err(Unfit::new(
                        column,
                        "encoding",
                        format!(
                            "{column}: a byte string bound for a text column is not valid UTF-8 (invalid byte at position {})",
                            e.utf8_error().valid_up_to()
                        ),
                    ));
                }
            }
            return Ok(());
        }
        match self {
            Dialect::Sqlite => sqlite::fit(column, v, text_column),
            Dialect::Postgres => postgres::fit(column, v),
            Dialect::Mysql => mysql::fit(column, v, text_column),
        }
    }

    /// Whether DDL runs inside a transaction (MySQL commits before and after each DDL
    /// statement, so a schema step there is not atomic and a dry run cannot try DDL).
    pub fn transactional_ddl(self) -> bool {
        !matches!(self, Dialect::Mysql)
    }

    /// Whether a `DELETE ... WHERE id IN (SELECT ... WHERE version = ?)` needs an index on
    /// `version` to run in one pass: MariaDB plans the subquery of a DELETE per target row,
    /// so without the index each row scans the whole ID map; PostgreSQL and SQLite read the
    /// subquery once.
    pub fn subquery_delete_needs_index(self) -> bool {
        matches!(self, Dialect::Mysql)
    }

    pub fn foreign_key_catalog(self) -> ForeignKeyCatalog {
        match self {
            Dialect::Sqlite => ForeignKeyCatalog::Pragma {
                list: sqlite::FOREIGN_KEY_LIST,
                check: sqlite::FOREIGN_KEY_CHECK,
            },
            Dialect::Postgres => ForeignKeyCatalog::Query(postgres::FOREIGN_KEYS),
            Dialect::Mysql => ForeignKeyCatalog::Query(mysql::FOREIGN_KEYS),
        }
    }

    fn table_exists_sql(self) -> &'static str {
        match self {
            Dialect::Sqlite => sqlite::TABLE_EXISTS,
            Dialect::Postgres => postgres::TABLE_EXISTS,
            Dialect::Mysql => mysql::TABLE_EXISTS,
        }
    }

    fn columns_sql(self) -> &'static str {
        match self {
            Dialect::Sqlite => sqlite::COLUMNS,
            Dialect::Postgres => postgres::COLUMNS,
            Dialect::Mysql => mysql::COLUMNS,
        }
    }
}

/// How a target is backed up (`cutover backup`) and restored (`cutover restore`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupTool {
    /// SQLite: `VACUUM INTO` a new file ([`Db::vacuum_into`]); restored by copying the file
    /// into place while no connection is open.
    SqliteFile,
    /// PostgreSQL: `pg_dump -Fc`; restored with `pg_restore --clean --if-exists`.
    PgDump,
    /// MySQL/MariaDB: `mariadb-dump` (or `mysqldump`), SQL text; restored with the `mariadb`
    /// (or `mysql`) client.
    MysqlDump,
}

impl Dialect {
    pub fn backup_tool(self) -> BackupTool {
        match self {
            Dialect::Sqlite => BackupTool::SqliteFile,
            Dialect::Postgres => BackupTool::PgDump,
            Dialect::Mysql => BackupTool::MysqlDump,
        }
    }
}

/// The expression buckets need (verify, rollback): a stored file's key kept inside a JSON
/// document column (a collection's `data.storage_key`).
impl Dialect {
    /// The text at `path` (keys, outermost first) of the JSON document in the quoted column
    /// `doc`; NULL when the path is missing or JSON null.
    pub fn json_text_at_path(self, doc: &str, path: &[&str]) -> String {
        // Each key quoted for the JSON path, then the whole path for an SQL string literal.
        let keys: Vec<String> = path
            .iter()
            .map(|p| format!("\"{}\"", p.replace('"', "\\\"").replace('\'', "''")))
            .collect();
        let json_path = format!("'$.{}'", keys.join("."));
        match self {
            Dialect::Postgres => format!("(CAST({doc} AS jsonb) #>> '{{{}}}')", keys.join(",")),
            Dialect::Sqlite => format!("json_extract({doc}, {json_path})"),
            Dialect::Mysql => {
                let e = format!("JSON_EXTRACT({doc}, {json_path})");
                format!("(CASE WHEN JSON_TYPE({e}) = 'NULL' THEN NULL ELSE JSON_UNQUOTE({e}) END)")
            }
        }
    }
}

/// Expressions the reject store's natural-key waits need (see `RejectStore::open_by_row_value`).
impl Dialect {
    /// The text of top-level key `key_param` (a placeholder bound to [`Dialect::json_key_param`])
    /// of the JSON document in text column `doc`; NULL when the key is missing or JSON null.
    pub fn json_text_at(self, doc: &str, key_param: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract({doc}, {key_param})"),
            Dialect::Postgres => format!("(CAST({doc} AS json) ->> {key_param})"),
            Dialect::Mysql => format!(
                "(CASE WHEN JSON_TYPE(JSON_EXTRACT({doc}, {key_param})) = 'NULL' THEN NULL ELSE JSON_UNQUOTE(JSON_EXTRACT({doc}, {key_param})) END)"
            ),
        }
    }

    /// The value to bind for [`Dialect::json_text_at`]'s `key_param`: a JSON path to the key
    /// (`$."key"`), or on PostgreSQL the key itself.
    pub fn json_key_param(self, key: &str) -> String {
        match self {
            Dialect::Postgres => key.to_string(),
            Dialect::Sqlite | Dialect::Mysql => format!("$.\"{key}\""),
        }
    }

    /// The server's version as one text value (`cutover check`).
    pub fn version_sql(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SELECT 'SQLite ' || sqlite_version()",
            Dialect::Postgres => "SELECT version()",
            Dialect::Mysql => "SELECT CONCAT(@@version_comment, ' ', VERSION())",
        }
    }

    /// A condition on a child table aliased `c`: its reference `columns` (all non-NULL, as a
    /// foreign key checks them) match no row of `parent` (quoted) by `parent_columns`.
    pub fn orphan_condition(self, columns: &[String], parent: &str, parent_columns: &[String]) -> String {
        let not_null: Vec<String> = columns
            .iter()
            .map(|k| format!("c.{} IS NOT NULL", self.quote_ident(k)))
            .collect();
        let matches: Vec<String> = columns
            .iter()
            .zip(parent_columns)
            .map(|(k, pc)| format!("p.{} = c.{}", self.quote_ident(pc), self.quote_ident(k)))
            .collect();
        format!(
            "{} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {})",
            not_null.join(" AND "),
            matches.join(" AND ")
        )
    }

    /// An expression of any column type as text, to compare with text parameters.
    pub fn as_text(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite | Dialect::Postgres => format!("CAST({expr} AS TEXT)"),
            Dialect::Mysql => format!("CAST({expr} AS CHAR)"),
        }
    }
}

/// The DDL of collection tables (`data::collection`): the dialect picks the types.
impl Dialect {
    /// `CREATE TABLE IF NOT EXISTS` of a collection: `_id` primary key, `data` and
    /// `_permissions` JSON, the two timestamps, and the unique natural-key column `_key`.
    pub fn collection_table_sql(self, table: &str) -> String {
        let q = |c: &str| self.quote_ident(c);
        let (id, json, ts, key, json_check) = match self {
            Dialect::Sqlite => ("TEXT", "TEXT", "TEXT", "TEXT".to_string(), true),
            Dialect::Postgres => ("uuid", "jsonb", "timestamptz", "text".to_string(), false),
            Dialect::Mysql => ("CHAR(36)", "JSON", "DATETIME(6)", mysql::key_text(500), false),
        };
        let check = |c: &str| {
            if json_check {
                format!(" CHECK (json_valid({}))", q(c))
            } else {
                String::new()
            }
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({} {id} NOT NULL PRIMARY KEY, {} {json} NOT NULL{}, {} {json} NOT NULL{}, {} {ts} NOT NULL, {} {ts} NOT NULL, {} {key} NULL UNIQUE){}",
            self.quote_table(table),
            q("_id"),
            q("data"),
            check("data"),
            q("_permissions"),
            check("_permissions"),
            q("_created_at"),
            q("_updated_at"),
            q("_key"),
            self.table_options()
        )
    }

    /// `CREATE INDEX IF NOT EXISTS` on the text value at `path` of a collection's `data`;
    /// `None` where the target has no such index (MySQL: a JSON path needs a generated
    /// column). Path parts are letters, digits and `_` (checked when the step loads).
    pub fn collection_index_sql(self, table: &str, index: &str, path: &[String]) -> Option<String> {
        let expr = match self {
            Dialect::Sqlite => format!("json_extract({}, '$.{}')", self.quote_ident("data"), path.join(".")),
            Dialect::Postgres => format!("({} #>> '{{{}}}')", self.quote_ident("data"), path.join(",")),
            Dialect::Mysql => return None,
        };
        Some(format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} ({expr})",
            self.quote_ident(index),
            self.quote_table(table)
        ))
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
        // SQLite answers with the file's own state, not a server's refusal.
        if msg.contains("database is locked") || msg.contains("database table is locked") {
            return "Another process holds the SQLite file locked: wait for it to finish (`fuser FILE` shows who has it open).";
        }
        if msg.contains("file is not a database") || msg.contains("malformed") {
            return "The file is not a SQLite database, or it is damaged: check the path (a damaged target can be restored from a backup with `cutover restore`).";
        }
        if msg.contains("unable to open database file") || msg.contains("readonly database") {
            return "SQLite cannot open or write the file: check that its folder exists and that this user may write there.";
        }
        return "The server refused the connection: check the user, its rights on this database and the server's access rules (pg_hba.conf / GRANT).";
    }
    "Check that the server is running and reachable, and the user, password (from the environment) and database name."
}

/// Turn a driver error into a message without the URL's password, saying what to check.
pub(crate) fn connect_error(url: &DbUrl, role: Role, e: sqlx::Error) -> color_eyre::Report {
    let what = role.name();
    let detail = url.redact(&e.to_string());
    let advice = connect_advice(&e);
    eyre!("cannot connect to the {what} database {url}: {detail}. {advice}")
}

/// Refuse a URL the parser cannot read, or one whose password evidently held an unencoded
/// `/ ? #` (the authority ended early and an `@` landed in the path). Never echoes the URL.
pub(crate) fn check_url(url: &DbUrl, role: Role) -> Result<()> {
    let what = role.name();
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
pub(crate) async fn probe<C: sqlx::Connection>(url: &DbUrl, role: Role, opts: &C::Options) -> Result<()> {
    match tokio::time::timeout(PROBE_TIMEOUT, C::connect_with(opts)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(connect_error(url, role, e)),
        Err(_) => Err(eyre!(
            "cannot connect to the {} database {url}: no answer within {} s. The server did not answer in time: check the host, the port and any firewall in between.",
            role.name(),
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// The file of a `sqlite://path` URL, relative paths taken from the project folder.
pub fn sqlite_path(url: &str, project_dir: &Path) -> Option<PathBuf> {
    sqlite::path_of(url, project_dir)
}

/// A run lock held by a database session of its own (PostgreSQL advisory lock, MySQL
/// `GET_LOCK`): the server releases it when the session ends, so a killed run never leaves
/// it behind.
pub enum SessionLock {
    Postgres(sqlx::PgConnection),
    Mysql(sqlx::MySqlConnection),
}

/// The outcome of trying the session lock.
pub enum SessionLockAttempt {
    /// This dialect has no session lock (SQLite: an OS lock file instead).
    Unsupported,
    Taken(SessionLock),
    /// Another session holds it.
    Busy,
}

impl SessionLock {
    /// Release the lock and close its session.
    pub async fn release(self) -> Result<()> {
        match self {
            SessionLock::Postgres(conn) => postgres::release_session_lock(conn).await,
            SessionLock::Mysql(conn) => mysql::release_session_lock(conn).await,
        }
    }
}

impl Db {
    pub async fn connect(url: &DbUrl, project_dir: &Path, role: Role) -> Result<Db> {
        match Dialect::from_scheme(url.scheme()) {
            Some(Dialect::Sqlite) => sqlite::connect(url, project_dir, role).await.map(Db::Sqlite),
            Some(Dialect::Postgres) => postgres::connect(url, role).await.map(Db::Postgres),
            Some(Dialect::Mysql) => mysql::connect(url, role).await.map(Db::Mysql),
            None => Err(eyre!(
                "unsupported database URL scheme '{}' in {url}: use sqlite://, postgres:// or mysql://",
                url.scheme()
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
            Db::Mysql(p) => DbTx::Mysql(mysql::MysqlTx::begin(p, false).await?),
        })
    }

    /// The transaction of a dry run, rolled back at its end. On MySQL, where DDL commits at
    /// once (and with it everything before), it refuses every statement that would commit.
    pub async fn begin_dry_run(&self) -> Result<DbTx> {
        Ok(match self {
            Db::Mysql(p) => DbTx::Mysql(mysql::MysqlTx::begin(p, true).await?),
            other => other.begin().await?,
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

    /// Run `sql` on its own, outside any transaction and unprepared: for statements a
    /// transaction block refuses (PostgreSQL's `VACUUM`).
    pub async fn execute_unprepared(&self, sql: &str) -> Result<()> {
        let sql = sqlx::AssertSqlSafe(sql);
        match self {
            Db::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ())?,
            Db::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ())?,
            Db::Mysql(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ())?,
        }
        Ok(())
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

    /// Whether `table` holds no row (one indexed probe, however big the table).
    pub async fn is_empty(&self, table: &str) -> Result<bool> {
        let sql = format!("SELECT 1 FROM {} LIMIT 1", self.dialect().quote_table(table));
        Ok(self.fetch_optional(&sql, &[]).await?.is_none())
    }

    /// The names of the columns `sql` returns, as the server describes the prepared
    /// statement: nothing is executed, so a view with joins and windows is not computed (its
    /// first row costs a sort of every row, a second and more at 200k rows).
    pub async fn result_columns(&self, sql: &str) -> Result<Vec<String>> {
        use sqlx::{Column, Executor, SqlSafeStr, Statement};
        fn names<C: Column>(columns: &[C]) -> Vec<String> {
            columns.iter().map(|c| c.name().to_string()).collect()
        }
        let sql = sqlx::AssertSqlSafe(sql.to_string()).into_sql_str();
        Ok(match self {
            Db::Sqlite(p) => names(p.prepare(sql).await?.columns()),
            Db::Postgres(p) => names(p.prepare(sql).await?.columns()),
            Db::Mysql(p) => names(p.prepare(sql).await?.columns()),
        })
    }

    pub async fn table_exists(&self, table: &str) -> Result<bool> {
        Ok(self
            .fetch_optional(self.dialect().table_exists_sql(), &[Value::Text(table.into())])
            .await?
            .is_some())
    }

    /// Whether `table` has a unique index whose columns are all among `columns`, so that the
    /// table itself refuses two rows equal on `columns`. `false` where it is not asked
    /// (MySQL/MariaDB).
    pub async fn unique_index_within(&self, table: &str, columns: &[impl AsRef<str>]) -> Result<bool> {
        let sql = match self.dialect() {
            Dialect::Postgres => postgres::UNIQUE_INDEX_WITHIN,
            Dialect::Sqlite => sqlite::UNIQUE_INDEX_WITHIN,
            Dialect::Mysql => return Ok(false),
        };
        self.asks_about_columns(sql, table, columns).await
    }

    /// Whether `columns` are exactly `table`'s primary key and can hold no NULL, so the server
    /// itself keeps them unique and never NULL. `false` where it is not asked (MySQL/MariaDB).
    pub async fn is_primary_key(&self, table: &str, columns: &[impl AsRef<str>]) -> Result<bool> {
        let sql = match self.dialect() {
            Dialect::Postgres => postgres::IS_PRIMARY_KEY,
            Dialect::Sqlite => sqlite::IS_PRIMARY_KEY,
            Dialect::Mysql => return Ok(false),
        };
        self.asks_about_columns(sql, table, columns).await
    }

    /// The indexes of `table` that only speed up reads (no unique, primary-key or constraint
    /// index), each with the statements that drop and recreate it; empty where it is not
    /// asked (MySQL/MariaDB). An index whose statement cannot be made idempotent is left out.
    pub async fn secondary_indexes(&self, table: &str) -> Result<Vec<SecondaryIndex>> {
        let sql = match self.dialect() {
            Dialect::Postgres => postgres::SECONDARY_INDEXES,
            Dialect::Sqlite => sqlite::SECONDARY_INDEXES,
            Dialect::Mysql => return Ok(Vec::new()),
        };
        let rows = self.fetch_all(sql, &[Value::Text(table.into())]).await?;
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let mut out = Vec::new();
        for r in rows.rows {
            let (name, schema, definition, first) = match self.dialect() {
                Dialect::Postgres => (text(r.first()), text(r.get(1)), text(r.get(2)), text(r.get(3))),
                _ => (text(r.first()), None, text(r.get(1)), text(r.get(2))),
            };
            let (Some(name), Some(create_sql)) = (name, definition.as_deref().and_then(create_if_missing)) else {
                continue;
            };
            let drop_sql = match &schema {
                Some(s) => format!(
                    "DROP INDEX IF EXISTS {}.{}",
                    postgres::quote_ident(s),
                    postgres::quote_ident(&name)
                ),
                None => format!("DROP INDEX IF EXISTS {}", quote_ident(self.dialect(), &name)),
            };
            out.push(SecondaryIndex {
                name,
                first_column: first,
                create_sql,
                drop_sql,
            });
        }
        Ok(out)
    }

    /// The foreign keys of `table` a step filling it may drop and add back at its end, each
    /// with the statements that do so; empty where the target does not answer (SQLite keeps
    /// its keys in the table's definition; MySQL/MariaDB rebuild a table to add one).
    pub async fn foreign_keys_of(&self, table: &str) -> Result<Vec<TableForeignKey>> {
        if self.dialect() != Dialect::Postgres {
            return Ok(Vec::new());
        }
        let rows = self
            .fetch_all(postgres::TABLE_FOREIGN_KEYS, &[Value::Text(table.into())])
            .await?;
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let list = |v: Option<&Value>| -> Vec<String> {
            text(v)
                .map(|s| s.split('\u{1f}').map(str::to_string).collect())
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for r in rows.rows {
            let (Some(name), Some(schema), Some(definition), Some(parent_table), Some(parent_schema)) = (
                text(r.first()),
                text(r.get(1)),
                text(r.get(2)),
                text(r.get(3)),
                text(r.get(4)),
            ) else {
                continue;
            };
            let (columns, parent_columns) = (list(r.get(5)), list(r.get(6)));
            if columns.is_empty() || columns.len() != parent_columns.len() {
                continue;
            }
            let on = format!("{}.{}", postgres::quote_ident(&schema), postgres::quote_ident(table));
            out.push(TableForeignKey {
                add_sql: format!(
                    "ALTER TABLE {on} ADD CONSTRAINT {} {definition}",
                    postgres::quote_ident(&name)
                ),
                drop_sql: format!(
                    "ALTER TABLE {on} DROP CONSTRAINT IF EXISTS {}",
                    postgres::quote_ident(&name)
                ),
                name,
                columns,
                parent: format!(
                    "{}.{}",
                    postgres::quote_ident(&parent_schema),
                    postgres::quote_ident(&parent_table)
                ),
                parent_table,
                parent_columns,
            });
        }
        Ok(out)
    }

    /// Run a catalog question `sql` about `table` (`$1`) and a list of its columns (`$2`: a
    /// text array on PostgreSQL, a JSON array on SQLite): whether it returns a row.
    async fn asks_about_columns(&self, sql: &str, table: &str, columns: &[impl AsRef<str>]) -> Result<bool> {
        let columns: Vec<&str> = columns.iter().map(AsRef::as_ref).collect();
        let list = match self.dialect() {
            Dialect::Postgres => {
                let mut list = String::from("{");
                for (i, c) in columns.iter().enumerate() {
                    if i > 0 {
                        list.push(',');
                    }
                    postgres::array_element(&mut list, c);
                }
                list.push('}');
                Value::Text(list)
            }
            Dialect::Sqlite | Dialect::Mysql => Value::Text(serde_json::to_string(&columns)?),
        };
        Ok(self
            .fetch_optional(sql, &[Value::Text(table.into()), list])
            .await?
            .is_some())
    }

    /// Run `sql` inside a transaction that is rolled back (read-only on PostgreSQL and MySQL),
    /// streaming its rows into `f` until it returns `Break`. A cell that cannot be decoded
    /// without loss is an error naming its column. PostgreSQL values are decoded for
    /// comparison across databases (see `decode_pg_compare`).
    pub async fn for_each_row<F>(&self, sql: &str, f: F) -> Result<(), sqlx::Error>
    where
        F: AsyncFnMut(Vec<Value>) -> ControlFlow<()>,
    {
        match self {
            Db::Sqlite(p) => sqlite::for_each_row(p, sql, None, f).await,
            Db::Postgres(p) => postgres::for_each_row(p, sql, f).await,
            Db::Mysql(p) => mysql::for_each_row(p, sql, f).await,
        }
    }

    /// [`Db::for_each_row`] for a statement that probes indexes at random rather than scans
    /// (verify's foreign-key check): on a SQLite file its connection gets a larger page cache.
    pub async fn for_each_row_probing<F>(&self, sql: &str, f: F) -> Result<(), sqlx::Error>
    where
        F: AsyncFnMut(Vec<Value>) -> ControlFlow<()>,
    {
        match self {
            Db::Sqlite(p) => sqlite::for_each_row(p, sql, Some(sqlite::PROBING_CACHE_KIB), f).await,
            other => other.for_each_row(sql, f).await,
        }
    }

    /// Whether `stream_pages` reads through the database's own handle (a SQLite file), which
    /// makes it the cheapest way to read even one page.
    pub fn reads_natively(&self) -> bool {
        matches!(self, Db::Sqlite(p) if sqlite::file_of(p).is_some())
    }

    /// A SQLite file: a watch that tells whether anyone committed to it from now on (see
    /// [`sqlite::CommitWatch`]). `None` for other dialects and in-memory databases.
    pub async fn watch_commits(&self) -> Option<Result<CommitWatch>> {
        let path = self.sqlite_file()?;
        Some(sqlite::CommitWatch::begin(path).await)
    }

    /// SQLite: write a consistent copy of the whole database into the new file `path`
    /// (`VACUUM INTO`, outside any transaction). Other dialects back up with their dump tools.
    pub async fn vacuum_into(&self, path: &Path) -> Result<()> {
        match self {
            Db::Sqlite(p) => sqlite::vacuum_into(p, path).await,
            _ => Err(eyre!(
                "VACUUM INTO is SQLite's; this target is {}",
                self.dialect().name()
            )),
        }
    }

    /// SQLite: the database file (`None` in memory); other dialects have none.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        match self {
            Db::Sqlite(p) => sqlite::file_of(p),
            _ => None,
        }
    }

    /// Try the run lock that lives in a session of its own, without waiting.
    pub async fn try_session_lock(&self) -> Result<SessionLockAttempt, sqlx::Error> {
        match self {
            Db::Sqlite(_) => Ok(SessionLockAttempt::Unsupported),
            Db::Postgres(p) => postgres::try_session_lock(p).await,
            Db::Mysql(p) => mysql::try_session_lock(p).await,
        }
    }

    /// Whether some session holds the run lock, asked without taking it (a `status` that held
    /// it for a moment would make a run starting then think the target is locked). `None`
    /// where the dialect has no session lock.
    pub async fn session_lock_held(&self) -> Result<Option<bool>> {
        match self {
            Db::Sqlite(_) => Ok(None),
            Db::Postgres(_) => Ok(Some(
                self.fetch_optional(postgres::LOCK_HELD, &postgres::lock_key_params())
                    .await?
                    .is_some(),
            )),
            Db::Mysql(_) => Ok(Some(
                self.fetch_optional(mysql::LOCK_HELD, &[])
                    .await?
                    .and_then(|r| r.into_iter().next())
                    .is_some_and(|v| !v.is_null()),
            )),
        }
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

/// Bind engine values to a query; `$null` is the dialect's NULL parameter.
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

/// Fetch every row of a bound query into `Rows`, decoding with `$decode`.
macro_rules! fetch_rows {
    ($query:expr, $exec:expr, $decode:expr) => {{
        use futures::TryStreamExt;
        use sqlx::{Column, Row, TypeInfo};
        let mut out = Rows::default();
        let mut s = $query.fetch($exec);
        while let Some(row) = s.try_next().await? {
            if out.columns.is_empty() {
                out.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                out.types = row.columns().iter().map(|c| c.type_info().name().to_string()).collect();
            }
            let mut issues = Vec::new();
            let vals = $decode(&row, &mut issues)?;
            let n = out.rows.len();
            out.issues.extend(issues.into_iter().map(|i| (n, i)));
            out.rows.push(vals);
        }
        out
    }};
}

/// Pages of a streamed query: `Ok(Some(rows))`, then `Ok(None)` at the end.
pub type PageStream = tokio::sync::mpsc::Receiver<Result<Option<Rows>>>;

/// The first stream of a step's source query, opened before the step starts: what the step's
/// reader adopts when its own first statement is this one (see `SourceReader::adopt`).
pub struct PrefetchedStream {
    pub sql: String,
    pub params: Vec<Value>,
    pub page_rows: usize,
    pub stream: PageStream,
}

/// A stream's end: `Ok(true)` when every row was sent and the transaction ended cleanly,
/// `Ok(false)` when the receiver went away (nothing more to say).
fn finish_stream<T>(sent: Result<bool, sqlx::Error>, rolled_back: Result<T, sqlx::Error>) -> Result<bool, sqlx::Error> {
    let all = sent?;
    rolled_back?;
    Ok(all)
}

/// Send a query's decoded rows as pages of `$page_rows` (see [`Db::stream_pages`]); evaluates
/// to `Ok(true)` when the query's rows are all sent, `Ok(false)` when the receiver is gone.
macro_rules! send_pages {
    ($query:expr, $exec:expr, $decode:expr, $out:expr, $page_rows:expr) => {{
        use futures::TryStreamExt;
        use sqlx::{Column, Row, TypeInfo};
        let mut page = Rows::default();
        let mut stream = $query.fetch($exec);
        let mut result: Result<bool, sqlx::Error> = Ok(true);
        loop {
            let row = match stream.try_next().await {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if page.columns.is_empty() {
                page.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                page.types = row.columns().iter().map(|c| c.type_info().name().to_string()).collect();
            }
            let mut issues = Vec::new();
            match $decode(&row, &mut issues) {
                Ok(vals) => {
                    let n = page.rows.len();
                    page.issues.extend(issues.into_iter().map(|i| (n, i)));
                    page.rows.push(vals);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            if page.rows.len() >= $page_rows {
                let next = Rows {
                    columns: page.columns.clone(),
                    types: page.types.clone(),
                    rows: Vec::with_capacity($page_rows),
                    issues: Vec::new(),
                };
                let full = std::mem::replace(&mut page, next);
                if $out.send(Ok(Some(full))).await.is_err() {
                    result = Ok(false);
                    break;
                }
            }
        }
        drop(stream);
        if matches!(result, Ok(true)) && !page.rows.is_empty() && $out.send(Ok(Some(page))).await.is_err() {
            result = Ok(false);
        }
        result
    }};
}

/// Stream a query's rows inside a transaction that is rolled back (see [`Db::for_each_row`]).
macro_rules! stream_rows {
    ($tx:expr, $sql:expr, $f:expr, $decode:expr) => {{
        use futures::TryStreamExt;
        use sqlx::{Column, Row};
        let mut tx = $tx;
        let mut f = $f;
        {
            let mut rows = sqlx::query(sqlx::AssertSqlSafe($sql)).persistent(false).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let mut issues = Vec::new();
                let vals = $decode(&row, &mut issues)?;
                if let Some(i) = issues.first() {
                    let name = row
                        .columns()
                        .get(i.column)
                        .map(|c| c.name().to_string())
                        .unwrap_or_default();
                    return Err(i.to_error(name));
                }
                if f(vals).await.is_break() {
                    break;
                }
            }
        }
        tx.rollback().await?;
        Ok(())
    }};
}
pub(crate) use stream_rows;

impl Db {
    /// Stream a query's rows in pages of `page_rows` through a bounded channel, from a task of
    /// its own inside one read transaction, so a source query with a window or a join over a
    /// whole table is computed once per step instead of once per page. The last message is
    /// `Ok(None)`, sent after the transaction has ended (its connection is back in the pool);
    /// a channel that closes without it means the task died.
    pub fn stream_pages(&self, sql: String, params: Vec<Value>, page_rows: usize) -> PageStream {
        if let Db::Sqlite(p) = self
            && let Some(path) = sqlite::file_of(p)
        {
            return sqlite::stream_pages(path, sql, params, page_rows.max(1), None);
        }
        let (out, pages) = tokio::sync::mpsc::channel(1);
        let db = self.clone();
        let page_rows = page_rows.max(1);
        tokio::spawn(async move {
            let tx = match db.begin_read().await {
                Ok(t) => t,
                Err(e) => {
                    let _ = out.send(Err(e)).await;
                    return;
                }
            };
            let ended = match tx {
                DbTx::Sqlite(mut t) => {
                    let q = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), params.iter(), None::<String>);
                    let r = send_pages!(q, &mut *t, crate::engine::decode::decode_sqlite, out, page_rows);
                    finish_stream(r, t.rollback().await)
                }
                DbTx::Postgres(mut t) => {
                    let q = bind_all!(
                        sqlx::query(sqlx::AssertSqlSafe(sql)),
                        params.iter(),
                        postgres::UntypedNull
                    );
                    let r = send_pages!(q, &mut *t, crate::engine::decode::decode_pg, out, page_rows);
                    finish_stream(r, t.rollback().await)
                }
                DbTx::Mysql(mut t) => {
                    let (sql, params) = mysql::placeholders(&sql, &params);
                    let q = bind_all!(
                        sqlx::query(sqlx::AssertSqlSafe(sql.into_owned())),
                        params.iter(),
                        None::<String>
                    );
                    let r = send_pages!(q, &mut *t.tx, crate::engine::decode::decode_mysql, out, page_rows);
                    finish_stream(r, t.tx.rollback().await)
                }
            };
            match ended {
                Ok(true) => {
                    let _ = out.send(Ok(None)).await;
                }
                Ok(false) => {}
                Err(e) => {
                    let _ = out.send(Err(e.into())).await;
                }
            }
        });
        pages
    }
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
            DbTx::Mysql(t) => t.tx.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self {
            DbTx::Sqlite(t) => t.rollback().await?,
            DbTx::Postgres(t) => t.rollback().await?,
            DbTx::Mysql(t) => t.tx.rollback().await?,
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
            DbTx::Postgres(t) => bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), params, postgres::UntypedNull)
                .execute(&mut **t)
                .await?
                .rows_affected(),
            DbTx::Mysql(t) => {
                t.guard(sql)?;
                let (sql, params) = mysql::placeholders(sql, params);
                bind_all!(
                    sqlx::query(sqlx::AssertSqlSafe(sql.into_owned())),
                    params.iter(),
                    None::<String>
                )
                .execute(&mut *t.tx)
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
                t.guard(sql)?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *t.tx).await?;
            }
        }
        Ok(())
    }

    pub async fn fetch_all(&mut self, sql: &str, params: &[Value]) -> Result<Rows, sqlx::Error> {
        use crate::engine::decode::{decode_mysql, decode_pg, decode_sqlite};
        Ok(match self {
            DbTx::Sqlite(t) => fetch_rows!(
                bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), params, None::<String>),
                &mut **t,
                decode_sqlite
            ),
            DbTx::Postgres(t) => fetch_rows!(
                bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), params, postgres::UntypedNull),
                &mut **t,
                decode_pg
            ),
            DbTx::Mysql(t) => {
                let (sql, params) = mysql::placeholders(sql, params);
                fetch_rows!(
                    bind_all!(
                        sqlx::query(sqlx::AssertSqlSafe(sql.into_owned())),
                        params.iter(),
                        None::<String>
                    ),
                    &mut *t.tx,
                    decode_mysql
                )
            }
        })
    }

    pub async fn fetch_optional(&mut self, sql: &str, params: &[Value]) -> Result<Option<Vec<Value>>, sqlx::Error> {
        Ok(self.fetch_all(sql, params).await?.rows.into_iter().next())
    }

    /// Column name -> type of a table: PostgreSQL's `data_type` (a domain or enum by its name),
    /// SQLite's declared type, MySQL's `data_type`; lower case. Empty when there is no table.
    pub async fn table_columns(&mut self, table: &str) -> Result<HashMap<String, String>, sqlx::Error> {
        let rows = self
            .fetch_all(self.dialect().columns_sql(), &[Value::Text(table.into())])
            .await?;
        Ok(rows
            .rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.first()?.to_text()?,
                    r.get(1).and_then(|v| v.to_text()).unwrap_or_default().to_lowercase(),
                ))
            })
            .collect())
    }

    /// The column clause that makes a large text value cheap to store, or nothing. PostgreSQL
    /// compresses a value past about 2 KB with pglz by default: for the tool's records of a
    /// page's keys (tens of KB each) that was more server time than the record's INSERT.
    /// lz4 compresses several times faster; a server without it keeps its default.
    pub async fn fast_compression(&mut self) -> &'static str {
        if !matches!(self, DbTx::Postgres(_)) {
            return "";
        }
        match self.fetch_optional(postgres::HAS_LZ4, &[]).await {
            Ok(Some(r)) if matches!(r.first(), Some(Value::Bool(true))) => " COMPRESSION lz4",
            _ => "",
        }
    }

    /// Create the tool's own tables where missing: `groups` are each a table and the
    /// statements that create it and its indexes (`CREATE ... IF NOT EXISTS`). In the
    /// transaction where DDL is transactional; on MySQL see `MysqlTx::create_own_tables`.
    pub async fn create_own_tables(&mut self, groups: &[(&str, Vec<String>)]) -> Result<(), sqlx::Error> {
        if let DbTx::Mysql(t) = self {
            return t.create_own_tables(groups).await;
        }
        for (_, statements) in groups {
            for s in statements {
                self.execute(s, &[]).await?;
            }
        }
        Ok(())
    }

    /// Write `rows` into `table` (quoted name) as fast as the dialect allows, inside this
    /// transaction: COPY on PostgreSQL, multi-row INSERTs with placeholders on SQLite and
    /// MySQL (as many rows per statement as the parameter and packet limits allow).
    pub async fn bulk_insert(
        &mut self,
        table_sql: &str,
        columns: &[String],
        rows: &[Vec<Value>],
    ) -> Result<(), sqlx::Error> {
        self.bulk_insert_then(table_sql, columns, rows, &mut || {}).await
    }

    /// As [`DbTx::bulk_insert`], running `meanwhile` once while the server may still be
    /// storing the rows (PostgreSQL: after the last row is sent, before the COPY's answer is
    /// awaited), so the caller's CPU work overlaps the server's. Elsewhere an INSERT's answer
    /// means its rows are stored, so there is nothing to overlap: it runs before them.
    pub async fn bulk_insert_then(
        &mut self,
        table_sql: &str,
        columns: &[String],
        rows: &[Vec<Value>],
        meanwhile: &mut (dyn FnMut() + Send),
    ) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            meanwhile();
            return Ok(());
        }
        let limits = match self {
            DbTx::Postgres(t) => return postgres::copy_in(t, table_sql, columns, rows, meanwhile).await,
            DbTx::Sqlite(_) => sqlite::INSERT_LIMITS,
            DbTx::Mysql(_) => mysql::insert_limits(),
        };
        meanwhile();
        insert_multi(self, table_sql, columns, rows, limits).await
    }
}

impl DbTx {
    /// As [`DbTx::bulk_insert`], for rows of text cells (`None` = NULL) borrowed from the
    /// caller: PostgreSQL gets them as COPY text without a value built per cell (the ID map
    /// writes one such row per row written).
    pub async fn bulk_insert_text<const N: usize>(
        &mut self,
        table_sql: &str,
        columns: &[String],
        rows: &[[Option<&str>; N]],
    ) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        if let DbTx::Postgres(t) = self {
            return postgres::copy_in(t, table_sql, columns, rows, &mut || {}).await;
        }
        let values: Vec<Vec<Value>> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|c| c.map(|t| Value::Text(t.to_string())).unwrap_or(Value::Null))
                    .collect()
            })
            .collect();
        self.bulk_insert(table_sql, columns, &values).await
    }

    /// Run one statement with the cells of `rows` as its parameters, in order, bound from the
    /// rows themselves (a multi-row INSERT on SQLite; no copy of each value).
    async fn execute_rows(&mut self, sql: &str, rows: &[Vec<Value>]) -> Result<u64, sqlx::Error> {
        match self {
            DbTx::Sqlite(t) => Ok(bind_all!(
                sqlx::query(sqlx::AssertSqlSafe(sql)),
                rows.iter().flatten(),
                None::<String>
            )
            .execute(&mut **t)
            .await?
            .rows_affected()),
            _ => {
                let params: Vec<Value> = rows.iter().flat_map(|r| r.iter().cloned()).collect();
                self.execute(sql, &params).await
            }
        }
    }
}

/// How big one multi-row INSERT may get.
#[derive(Clone, Copy, Debug)]
pub struct InsertLimits {
    pub max_params: usize,
    pub max_rows: usize,
    /// Estimated bytes of the bound values (MySQL's max_allowed_packet); `usize::MAX` for none.
    pub max_bytes: usize,
}

fn value_bytes(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 1,
        Value::Int(_) | Value::Real(_) => 8,
        Value::Text(s) => s.len(),
        Value::Bytes(b) => b.bytes.len(),
        Value::Json(j) => j.to_string().len(),
    }
}

/// The chunks (`start..end`) a multi-row insert is cut into under `limits`; a row bigger than
/// the byte limit goes alone (the server then says why it refuses it).
pub fn insert_chunks(rows: &[Vec<Value>], ncol: usize, limits: InsertLimits) -> Vec<std::ops::Range<usize>> {
    let per = (limits.max_params / ncol.max(1)).clamp(1, limits.max_rows.max(1));
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, r) in rows.iter().enumerate() {
        // a few bytes of protocol per value besides its content
        let size: usize = r.iter().map(|v| value_bytes(v) + 4).sum();
        if i > start && (i - start >= per || bytes.saturating_add(size) > limits.max_bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(size);
    }
    if start < rows.len() {
        out.push(start..rows.len());
    }
    out
}

async fn insert_multi(
    tx: &mut DbTx,
    table_sql: &str,
    columns: &[String],
    rows: &[Vec<Value>],
    limits: InsertLimits,
) -> Result<(), sqlx::Error> {
    let ncol = columns.len().max(1);
    let cols = columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
    let mut cached: Option<(usize, String)> = None;
    for range in insert_chunks(rows, ncol, limits) {
        let chunk = &rows[range];
        let sql = match &cached {
            Some((n, s)) if *n == chunk.len() => s.clone(),
            _ => {
                let mut s = String::with_capacity(32 + chunk.len() * ncol * 2);
                s.push_str(&format!("INSERT INTO {table_sql} ({cols}) VALUES "));
                for r in 0..chunk.len() {
                    if r > 0 {
                        s.push(',');
                    }
                    s.push('(');
                    for c in 0..ncol {
                        if c > 0 {
                            s.push(',');
                        }
                        // Plain `?`: SQLite resolves named parameters by a linear search, which
                        // made wide multi-row inserts quadratic; MySQL takes `?` as it is.
                        s.push('?');
                    }
                    s.push(')');
                }
                cached = Some((chunk.len(), s.clone()));
                s
            }
        };
        tx.execute_rows(&sql, chunk).await?;
    }
    Ok(())
}

/// Key lists bound as one parameter per key column, where the dialect has arrays: one
/// statement (planned once, cached) per batch instead of an `IN` list of hundreds of
/// parameters per few hundred keys.
impl Dialect {
    /// `columns` (quoted, each with its type as [`DbTx::table_columns`] reports it) matching
    /// one of `keys`, as a condition whose parameters start at `$first`, with the values to
    /// bind. `None` on MySQL, and where a key holds a value the list cannot carry exactly
    /// (bytes; on SQLite anything but text and integers): the caller then uses an `IN` list.
    /// Keys with a NULL part match nothing and are left out.
    pub fn key_list_filter(
        self,
        columns: &[(String, Option<String>)],
        keys: &[Vec<Value>],
        first: usize,
    ) -> Option<(String, Vec<Value>)> {
        if columns.is_empty() {
            return None;
        }
        match self {
            Dialect::Postgres => {}
            Dialect::Sqlite => return sqlite::key_list_filter(columns, keys, first),
            Dialect::Mysql => return None,
        }
        let mut lists: Vec<String> = vec![String::from("{"); columns.len()];
        let mut n = 0usize;
        for k in keys {
            if k.len() != columns.len() || k.iter().any(|v| v.is_null()) {
                continue;
            }
            for (list, v) in lists.iter_mut().zip(k) {
                let text = match v {
                    Value::Bytes(_) => return None,
                    other => other.to_text()?,
                };
                if n > 0 {
                    list.push(',');
                }
                postgres::array_element(list, &text);
            }
            n += 1;
        }
        let arrays: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| postgres::text_array_param(first + i, ty.as_deref()))
            .collect();
        // A semi-join on the unnested arrays, never `= ANY(array)`: the array is a cast of a
        // text parameter, which the planner cannot fold into a constant, so `= ANY` is
        // compared element by element on every row a scan reads, and a step's first pages
        // (a table too small for its statistics to favour the index) took seconds each.
        let lhs: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
        let sql = format!("({}) IN (SELECT * FROM unnest({}))", lhs.join(", "), arrays.join(", "));
        let params = lists
            .into_iter()
            .map(|mut l| {
                l.push('}');
                Value::Text(l)
            })
            .collect();
        Some((sql, params))
    }
}

/// An index that only speeds up reads, as [`Db::secondary_indexes`] finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondaryIndex {
    pub name: String,
    /// Its first column; `None` when it starts with an expression.
    pub first_column: Option<String>,
    /// `CREATE INDEX IF NOT EXISTS ...`: running it again is harmless.
    pub create_sql: String,
    pub drop_sql: String,
}

/// A foreign key of a table, as [`Db::foreign_keys_of`] finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableForeignKey {
    pub name: String,
    /// The referencing columns, in the key's order.
    pub columns: Vec<String>,
    /// The referenced table's name, and the same quoted with its schema.
    pub parent_table: String,
    pub parent: String,
    /// The referenced columns, in the key's order.
    pub parent_columns: Vec<String>,
    /// `ALTER TABLE ... ADD CONSTRAINT name FOREIGN KEY ...`: checks every row as it adds it.
    pub add_sql: String,
    pub drop_sql: String,
}

/// `CREATE INDEX x ...` as `CREATE INDEX IF NOT EXISTS x ...` (kept when it says so already);
/// `None` for any other shape, which is then never dropped.
fn create_if_missing(definition: &str) -> Option<String> {
    let d = definition.trim();
    let words: Vec<&str> = d.split_whitespace().take(5).collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    if upper.len() < 3 || upper[0] != "CREATE" || upper[1] != "INDEX" {
        return None;
    }
    if upper.len() == 5 && upper[2] == "IF" && upper[3] == "NOT" && upper[4] == "EXISTS" {
        return Some(d.to_string());
    }
    // The rest after "CREATE", then "INDEX", each followed by whitespace.
    let after_create = d[6..].trim_start();
    let rest = after_create.get(5..)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some(format!("CREATE INDEX IF NOT EXISTS {}", rest.trim_start()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn index_statements_become_idempotent() {
        assert_eq!(
            create_if_missing("CREATE INDEX p_email ON public.p USING btree (email)").as_deref(),
            Some("CREATE INDEX IF NOT EXISTS p_email ON public.p USING btree (email)")
        );
        assert_eq!(
            create_if_missing("create  index\n \"a b\" on t (x)").as_deref(),
            Some("CREATE INDEX IF NOT EXISTS \"a b\" on t (x)")
        );
        assert_eq!(
            create_if_missing("CREATE INDEX if not exists i ON t (x)").as_deref(),
            Some("CREATE INDEX if not exists i ON t (x)")
        );
        assert_eq!(create_if_missing("CREATE UNIQUE INDEX u ON t (x)"), None);
        assert_eq!(create_if_missing("CREATE INDEXED"), None);
        assert_eq!(create_if_missing("/* c */ CREATE INDEX i ON t (x)"), None);
    }

    use super::*;

    #[test]
    fn chunks_respect_params_rows_and_bytes() {
        let rows: Vec<Vec<Value>> = (0..10)
            .map(|i| vec![Value::Int(i), Value::Text("x".repeat(100))])
            .collect();
        let by_params = insert_chunks(
            &rows,
            2,
            InsertLimits {
                max_params: 6,
                max_rows: 100,
                max_bytes: usize::MAX,
            },
        );
        assert_eq!(by_params, vec![0..3, 3..6, 6..9, 9..10]);
        let by_bytes = insert_chunks(
            &rows,
            2,
            InsertLimits {
                max_params: 1000,
                max_rows: 100,
                max_bytes: 250,
            },
        );
        assert_eq!(by_bytes, vec![0..2, 2..4, 4..6, 6..8, 8..10]);
        // a row over the byte limit goes alone
        let tiny = insert_chunks(
            &rows[..2],
            2,
            InsertLimits {
                max_params: 1000,
                max_rows: 100,
                max_bytes: 10,
            },
        );
        assert_eq!(tiny, vec![0..1, 1..2]);
    }

    #[test]
    fn bytes_into_text_are_decoded_on_every_dialect() {
        for d in Dialect::all() {
            let mut v = Value::bytes(b"caf\xc3\xa9".to_vec());
            assert!(d.fit("c", &mut v, true).is_ok());
            assert_eq!(v, Value::Text("café".into()));
            let mut bad = Value::bytes(vec![0xff]);
            let e = d.fit("c", &mut bad, true).unwrap_err();
            assert_eq!((e.column.as_str(), e.rule), ("c", "encoding"));
        }
    }

    #[test]
    fn dialects_round_trip_their_names() {
        for d in Dialect::all() {
            assert_eq!(Dialect::from_scheme(d.name()), Some(d));
        }
        assert_eq!(Dialect::from_scheme("mariadb"), Some(Dialect::Mysql));
        assert_eq!(Dialect::from_scheme("postgresql"), Some(Dialect::Postgres));
        assert_eq!(Dialect::from_scheme("oracle"), None);
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
