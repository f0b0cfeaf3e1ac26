//! What a database error means for the row that caused it. A value or constraint the target
//! refuses is the row's problem (it becomes a reject naming the column); anything else (a lost
//! connection, a missing table) is the step's. Each server words this differently, so the
//! reading of SQLSTATEs and messages lives here, with the backends.

/// The target refused a row's data: a bad value, a NOT NULL, CHECK, UNIQUE or foreign-key
/// violation. Such an error is confined to the statement; the transaction can go on after a
/// rollback to a savepoint.
pub fn is_row_refusal(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else {
        return false;
    };
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
        // 22: data exception (bad input, out of range, NUL byte); 23: integrity violation.
        return code.starts_with("22") || code.starts_with("23");
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // Primary result codes: 19 CONSTRAINT, 20 MISMATCH, 25 RANGE, 18 TOOBIG.
        return code
            .parse::<i64>()
            .map(|n| matches!(n & 0xff, 18 | 19 | 20 | 25))
            .unwrap_or(false);
    }
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return mysql_row_refusal(my.number()) || code.starts_with("22") || code.starts_with("23");
    }
    false
}

/// MySQL/MariaDB error numbers that refuse a row's data (in strict mode; the target session
/// runs in it, so none of these is a mere warning): 1048 NULL into NOT NULL, 1062/1586
/// duplicate key, 1264 out of range, 1265 data truncated, 1292 incorrect date/time/number,
/// 1366 incorrect value (e.g. text into a number), 1367 illegal value, 1406 data too long,
/// 1411 incorrect value for a function, 1451/1452 foreign key, 1690 value out of range,
/// 3819/4025 CHECK constraint, 4078 illegal JSON.
fn mysql_row_refusal(number: u16) -> bool {
    matches!(
        number,
        1048 | 1062 | 1264 | 1265 | 1292 | 1366 | 1367 | 1406 | 1411 | 1451 | 1452 | 1586 | 1690 | 3819 | 4025 | 4078
    )
}

/// The column a refusal names, when the server says: PostgreSQL's column field, COPY context
/// or constraint name (`items_qty_check`), SQLite's `constraint failed: t.col` or `column t.col`;
/// else a target column named in the message. `columns` are the columns written.
pub fn refused_column(e: &sqlx::Error, columns: &[String]) -> Option<String> {
    let db = e.as_database_error()?;
    let known = |name: &str| columns.iter().find(|c| c.eq_ignore_ascii_case(name)).cloned();
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(c) = pg.column() {
            return Some(c.to_string());
        }
        // COPY context: `COPY t, line 2, column qty: "lots-of-it"`.
        if let Some(w) = pg.r#where()
            && let Some(at) = w.find(", column ")
        {
            let rest = &w[at + ", column ".len()..];
            return Some(rest.split(':').next().unwrap_or(rest).trim().to_string());
        }
        // Default constraint names: `<table>_<column>_check|key|fkey`.
        if let Some(con) = pg.constraint() {
            let mut by_len: Vec<&String> = columns.iter().collect();
            by_len.sort_by_key(|c| std::cmp::Reverse(c.len()));
            for suffix in ["_check", "_fkey", "_key", "_not_null"] {
                if let Some(stem) = con.strip_suffix(suffix)
                    && let Some(c) = by_len
                        .iter()
                        .find(|c| stem.ends_with(&format!("_{c}")) || stem == c.as_str())
                {
                    return Some((*c).clone());
                }
            }
        }
        // `Key (email)=(…) already exists.`
        if let Some(d) = pg.detail()
            && let Some(rest) = d.strip_prefix("Key (")
        {
            let name = rest.split(')').next().unwrap_or("");
            if let Some(c) = known(name) {
                return Some(c);
            }
        }
    }
    let msg = db.message();
    if db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().is_some()
        && let Some(c) = mysql_refused_column(msg, columns)
    {
        return Some(c);
    }
    for marker in ["constraint failed: ", " column "] {
        if let Some(tail) = msg.split(marker).nth(1) {
            let first = tail.split([',', ' ']).next().unwrap_or(tail).trim();
            let name = first.rsplit('.').next().unwrap_or(first).trim_matches(['"', '\'', '`']);
            if let Some(c) = known(name) {
                return Some(c);
            }
        }
    }
    // A CHECK expression or other wording: the longest target column named as a word.
    let words: Vec<&str> = msg
        .split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut by_len: Vec<&String> = columns.iter().collect();
    by_len.sort_by_key(|c| std::cmp::Reverse(c.len()));
    by_len
        .into_iter()
        .find(|c| words.iter().any(|w| w.eq_ignore_ascii_case(c)))
        .cloned()
}

/// The column in MySQL/MariaDB's wording: `Column 'c' cannot be null`, `... for column
/// \`db\`.\`t\`.\`c\` at row 1`, `FOREIGN KEY (\`c\`) REFERENCES`, `for key 't.c'` (a unique key
/// named after its column), `CONSTRAINT \`t.c\` failed` (a column CHECK).
fn mysql_refused_column(msg: &str, columns: &[String]) -> Option<String> {
    let known = |name: &str| {
        let name = name.trim_matches(['"', '\'', '`', '(', ')', ' ']);
        let name = name.rsplit('.').next().unwrap_or(name).trim_matches(['"', '\'', '`']);
        columns.iter().find(|c| c.eq_ignore_ascii_case(name)).cloned()
    };
    let after = |marker: &str| -> Option<String> {
        let at = msg.find(marker)? + marker.len();
        let rest = &msg[at..];
        let token: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != ',').collect();
        known(&token)
    };
    after("Column ")
        .or_else(|| after("for column "))
        .or_else(|| after("FOREIGN KEY ("))
        .or_else(|| after("for key "))
        .or_else(|| after("CONSTRAINT "))
}

/// The server's own words for a refusal, with its detail but without the C-source location
/// and without the refused value where the column holds a secret.
pub fn describe_refusal(e: &sqlx::Error, secret_column: bool) -> String {
    let Some(db) = e.as_database_error() else {
        return crate::engine::config::redact_url(&e.to_string());
    };
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    if secret_column {
        return format!("the target refused the value (SQLSTATE {code}; the value is secret and not shown)");
    }
    let mut out = db.message().to_string();
    // PostgreSQL's "Failing row contains (…)" repeats every value of the row, secrets too.
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        && let Some(d) = pg.detail()
        && !d.starts_with("Failing row contains")
    {
        out.push_str(&format!(" ({d})"));
    }
    if !code.is_empty() {
        out.push_str(&format!(" [SQLSTATE {code}]"));
    }
    out
}

/// A driver error as an operator reads it: PostgreSQL's message, detail, hint and context
/// (which names the table, line and column of a COPY) instead of the C source line.
pub fn describe(e: &sqlx::Error) -> String {
    let Some(db) = e.as_database_error() else {
        return crate::engine::config::redact_url(&e.to_string());
    };
    let mut out = db.message().to_string();
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(d) = pg.detail().filter(|d| !d.starts_with("Failing row contains")) {
            out.push_str(&format!(". {d}"));
        }
        if let Some(h) = pg.hint() {
            out.push_str(&format!(". Hint: {h}"));
        }
        if let Some(w) = pg.r#where() {
            out.push_str(&format!(" (where: {w})"));
        }
    }
    if let Some(code) = db.code() {
        out.push_str(&format!(" [SQLSTATE {code}]"));
    }
    crate::engine::config::redact_url(&out)
}

/// A failure that a new connection may cure: the connection was lost or refused for a while
/// (a server restart), the pool timed out, the server is shutting down or starting, or a
/// lock/serialization conflict. The step resumes from its checkpoint after such an error.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                return code.starts_with("08")
                    || matches!(code.as_str(), "57P01" | "57P02" | "57P03" | "40001" | "40P01");
            }
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLITE_BUSY / SQLITE_LOCKED after the busy timeout.
                return code.parse::<i64>().map(|n| matches!(n & 0xff, 5 | 6)).unwrap_or(false);
            }
            // MySQL: lock wait timeout, deadlock, server shutdown in progress.
            matches!(code.as_str(), "40001" | "08S01" | "HY000") && {
                let m = db.message().to_ascii_lowercase();
                m.contains("deadlock") || m.contains("lock wait") || m.contains("shutdown") || m.contains("gone away")
            }
        }
        _ => false,
    }
}

/// `is_transient` for an error somewhere in a report's chain.
pub fn report_is_transient(e: &color_eyre::Report) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<sqlx::Error>().is_some_and(is_transient))
}

/// A report as one line for an operator: each cause once (a driver error's `source` often
/// repeats its own text, which made messages read `X: X`), database errors in their own words.
pub fn report_text(e: &color_eyre::Report) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = match cause.downcast_ref::<sqlx::Error>() {
            Some(s) => describe(s),
            None => cause.to_string(),
        };
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        // A sqlx error's source is the database error it already described.
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        if cause.downcast_ref::<sqlx::Error>().is_some() {
            break;
        }
    }
    crate::engine::config::redact_url(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_messages_name_their_column() {
        let cols: Vec<String> = ["id", "legacy_id", "name", "born", "person_id", "email"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let c = |m: &str| mysql_refused_column(m, &cols);
        assert_eq!(c("Data too long for column 'name' at row 1").as_deref(), Some("name"));
        assert_eq!(
            c("Incorrect date value: '2021-02-30' for column `db`.`people`.`born` at row 1").as_deref(),
            Some("born")
        );
        assert_eq!(c("Column 'name' cannot be null").as_deref(), Some("name"));
        assert_eq!(
            c("Cannot add or update a child row: a foreign key constraint fails (`db`.`t`, CONSTRAINT `t_ibfk_1` FOREIGN KEY (`person_id`) REFERENCES `persons` (`id`))").as_deref(),
            Some("person_id")
        );
        assert_eq!(c("Duplicate entry 'a@x.org' for key 'email'").as_deref(), Some("email"));
        assert_eq!(c("something else entirely"), None);
        for n in [1048, 1062, 1292, 1366, 1406, 1452, 4025] {
            assert!(mysql_row_refusal(n), "{n}");
        }
        for n in [1146, 1213, 2006] {
            assert!(!mysql_row_refusal(n), "{n}");
        }
    }
}
