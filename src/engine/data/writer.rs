//! Writing rows into the target: prepared multi-row INSERTs on SQLite, COPY on PostgreSQL, both
//! inside the batch's transaction.

use crate::engine::data::store::{BACKUPS, ID_MAP};
use crate::engine::db::{Db, DbTx, Dialect};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use std::collections::HashMap;

/// A value the target cannot store as it is: the column, the reject rule and the reason.
pub struct Unfit {
    pub column: String,
    pub rule: &'static str,
    pub reason: String,
}

pub struct TargetWriter {
    pub dialect: Dialect,
    pub table: String,
    pub columns: Vec<String>,
    /// PostgreSQL column types, to cast text parameters (uuid, date, ...) where the server
    /// will not do it implicitly.
    types: HashMap<String, String>,
}

/// Quote an identifier we put into SQL text.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl TargetWriter {
    pub async fn new(db: &Db, table: &str, columns: &[String]) -> Result<TargetWriter> {
        let mut tx = db.begin().await?;
        let w = Self::new_in(&mut tx, table, columns).await;
        tx.rollback().await?;
        w
    }

    /// As `new`, seeing the caller's uncommitted schema (dry runs).
    pub async fn new_in(tx: &mut DbTx, table: &str, columns: &[String]) -> Result<TargetWriter> {
        let existing = table_columns(tx, table).await?;
        if existing.is_empty() {
            return Err(eyre!(
                "the target has no table '{table}': is the schema step that creates it applied before this step? (see `cutover status`)"
            ));
        }
        for c in columns {
            if !existing.contains_key(c) {
                let mut have: Vec<&String> = existing.keys().collect();
                have.sort();
                return Err(eyre!(
                    "the target table '{table}' has no column '{c}' (it has: {})",
                    have.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        Ok(TargetWriter {
            dialect: tx.dialect(),
            table: table.to_string(),
            columns: columns.to_vec(),
            types: existing,
        })
    }

    /// `$n`, cast to the column's type on PostgreSQL.
    pub fn param(&self, n: usize, column: &str) -> String {
        match (self.dialect, self.types.get(column)) {
            (Dialect::Postgres, Some(t)) if !matches!(t.as_str(), "text" | "character varying") => {
                format!("CAST(${n} AS {t})")
            }
            _ => format!("${n}"),
        }
    }

    pub fn cast_text_expr(&self, expr: &str, column: &str) -> String {
        match (self.dialect, self.types.get(column)) {
            (Dialect::Postgres, Some(t)) if !matches!(t.as_str(), "text" | "character varying") => {
                format!("CAST({expr} AS {t})")
            }
            _ => expr.to_string(),
        }
    }

    pub async fn insert(&self, tx: &mut DbTx, rows: &[Vec<Value>]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        match tx {
            DbTx::Postgres(t) => {
                let cols = self.columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
                copy_in(t, &format!("COPY {} ({cols}) FROM STDIN", ident(&self.table)), rows).await
            }
            _ => insert_multi(tx, &ident(&self.table), &self.columns, rows).await,
        }
    }

    /// Whether a column holds text (so bytes bound for it must be decoded, not hex-encoded).
    pub fn is_text_column(&self, column: &str) -> bool {
        let Some(t) = self.types.get(column) else {
            return false;
        };
        match self.dialect {
            Dialect::Postgres | Dialect::Mysql => {
                matches!(
                    t.as_str(),
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
                )
            }
            // SQLite's type affinity rule: a declared type containing CHAR, CLOB or TEXT.
            Dialect::Sqlite => {
                let t = t.to_ascii_uppercase();
                t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT")
            }
        }
    }

    /// Fix or refuse, before writing, values the target would store as something else: a NUL
    /// byte cannot go into PostgreSQL text; bytes bound for a text column are text in the
    /// source's encoding (decoded as UTF-8, never written as hex); SQLite would round a REAL put
    /// into a TEXT column to 15 digits and turns NaN into NULL.
    pub fn fit(&self, values: &mut [Value]) -> Result<(), Unfit> {
        let unfit = |col: &str, rule: &'static str, reason: String| Unfit {
            column: col.to_string(),
            rule,
            reason,
        };
        for (col, v) in self.columns.iter().zip(values.iter_mut()) {
            match (self.dialect, &mut *v) {
                (Dialect::Postgres, Value::Text(t)) => {
                    if let Some(at) = t.find('\0') {
                        return Err(unfit(
                            col,
                            "encoding",
                            format!(
                                "{col}: PostgreSQL text cannot hold a NUL byte (at byte {at}); remove it in the source or with a transform"
                            ),
                        ));
                    }
                }
                (Dialect::Sqlite, Value::Real(f)) => {
                    let f = *f;
                    if self.is_text_column(col) {
                        *v = Value::Text(match f {
                            f if f == f64::INFINITY => "Infinity".into(),
                            f if f == f64::NEG_INFINITY => "-Infinity".into(),
                            f => f.to_string(),
                        });
                    } else if f.is_nan() {
                        return Err(unfit(
                            col,
                            "target",
                            format!(
                                "{col}: SQLite stores NaN as NULL, which would lose the value; map it with a transform or write it to a text column"
                            ),
                        ));
                    }
                }
                (_, Value::Bytes(b)) if self.is_text_column(col) => {
                    match String::from_utf8(std::mem::take(&mut b.bytes)) {
                        Ok(s) => *v = Value::Text(s),
                        Err(e) => {
                            return Err(unfit(
                                col,
                                "encoding",
                                format!(
                                    "{col}: a byte string bound for a text column is not valid UTF-8 (invalid byte at position {})",
                                    e.utf8_error().valid_up_to()
                                ),
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Insert `rows`, isolating the ones the target refuses: the batch is tried whole under a
    /// savepoint and, when a row's data is refused, split in halves down to single rows (as
    /// pgloader does), so one bad row costs a few statements, not the batch. Returns the
    /// refused rows' indexes with the error; anything but a data refusal is returned as `Err`.
    pub async fn insert_isolating(
        &self,
        tx: &mut DbTx,
        rows: &[Vec<Value>],
    ) -> Result<Vec<(usize, sqlx::Error)>, sqlx::Error> {
        let mut refused = Vec::new();
        if rows.is_empty() {
            return Ok(refused);
        }
        let mut todo: Vec<std::ops::Range<usize>> = Vec::with_capacity(16);
        todo.push(0..rows.len());
        while let Some(r) = todo.pop() {
            tx.execute_raw("SAVEPOINT cutover_rows").await?;
            match self.insert(tx, &rows[r.clone()]).await {
                Ok(()) => tx.execute_raw("RELEASE SAVEPOINT cutover_rows").await?,
                Err(e) if crate::engine::db_error::is_row_refusal(&e) => {
                    tx.execute_raw("ROLLBACK TO SAVEPOINT cutover_rows").await?;
                    tx.execute_raw("RELEASE SAVEPOINT cutover_rows").await?;
                    if r.len() == 1 {
                        refused.push((r.start, e));
                    } else {
                        let mid = r.start + r.len() / 2;
                        // Second half first onto the stack, so rows are tried in order.
                        todo.push(mid..r.end);
                        todo.push(r.start..mid);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        refused.sort_by_key(|(i, _)| *i);
        Ok(refused)
    }

    /// Existing target rows among `keys` (natural-key values in `nk` column order):
    /// joined key -> value of `id_column` (or empty when there is none).
    pub async fn existing(
        &self,
        tx: &mut DbTx,
        nk: &[String],
        id_column: Option<&str>,
        keys: &[Vec<Value>],
    ) -> Result<HashMap<String, String>, sqlx::Error> {
        let mut out = HashMap::new();
        if nk.is_empty() || keys.is_empty() {
            return Ok(out);
        }
        let select: Vec<String> = nk.iter().map(|c| ident(c)).chain(id_column.map(ident)).collect();
        let per = (500 / nk.len()).max(1);
        for chunk in keys.chunks(per) {
            let mut params = Vec::new();
            let mut tuples = Vec::new();
            for k in chunk {
                let mut t = Vec::new();
                for (c, v) in nk.iter().zip(k) {
                    params.push(v.clone());
                    t.push(self.param(params.len(), c));
                }
                tuples.push(if nk.len() == 1 {
                    t.remove(0)
                } else {
                    format!("({})", t.join(", "))
                });
            }
            let lhs = if nk.len() == 1 {
                ident(&nk[0])
            } else {
                format!("({})", nk.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", "))
            };
            let sql = if nk.len() == 1 {
                format!(
                    "SELECT {} FROM {} WHERE {lhs} IN ({})",
                    select.join(", "),
                    ident(&self.table),
                    tuples.join(", ")
                )
            } else {
                format!(
                    "SELECT {} FROM {} WHERE {lhs} IN (VALUES {})",
                    select.join(", "),
                    ident(&self.table),
                    tuples.join(", ")
                )
            };
            for r in tx.fetch_all(&sql, &params).await?.rows {
                let key = join_key(&r[..nk.len()]);
                let id = if id_column.is_some() {
                    r.get(nk.len()).and_then(|v| v.to_text()).unwrap_or_default()
                } else {
                    String::new()
                };
                out.insert(key, id);
            }
        }
        Ok(out)
    }

    /// Overwrite the row with natural key `nk_vals`, saving its current content first so that
    /// rollback can restore it.
    pub async fn update_with_backup(
        &self,
        tx: &mut DbTx,
        version: &str,
        nk: &[String],
        nk_vals: &[Value],
        values: &[Value],
        skip_columns: &[String],
    ) -> Result<(), sqlx::Error> {
        let cols: Vec<&String> = self.columns.iter().filter(|c| !skip_columns.contains(c)).collect();
        let mut params = Vec::new();
        let where_sql: Vec<String> = nk
            .iter()
            .zip(nk_vals)
            .map(|(c, v)| {
                params.push(v.clone());
                format!("{} = {}", ident(c), self.param(params.len(), c))
            })
            .collect();
        let where_sql = where_sql.join(" AND ");
        let select = cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
        let before = tx
            .fetch_optional(
                &format!("SELECT {select} FROM {} WHERE {where_sql}", ident(&self.table)),
                &params,
            )
            .await?;
        if let Some(before) = before {
            let mut m = serde_json::Map::new();
            for (c, v) in cols.iter().zip(&before) {
                m.insert((*c).clone(), v.to_json());
            }
            let key: serde_json::Map<String, serde_json::Value> =
                nk.iter().zip(nk_vals).map(|(c, v)| (c.clone(), v.to_json())).collect();
            tx.execute(
                &format!(
                    "INSERT INTO {BACKUPS} (version, target_table, key_json, before_json) VALUES ($1, $2, $3, $4)"
                ),
                &[
                    Value::Text(version.into()),
                    Value::Text(self.table.clone()),
                    Value::Text(serde_json::Value::Object(key).to_string()),
                    Value::Text(serde_json::Value::Object(m).to_string()),
                ],
            )
            .await?;
        }
        let mut set_params = Vec::new();
        let mut sets = Vec::new();
        for (c, v) in self.columns.iter().zip(values) {
            if skip_columns.contains(c) {
                continue;
            }
            set_params.push(v.clone());
            sets.push(format!("{} = {}", ident(c), self.param(set_params.len(), c)));
        }
        let mut wh = Vec::new();
        for (c, v) in nk.iter().zip(nk_vals) {
            set_params.push(v.clone());
            wh.push(format!("{} = {}", ident(c), self.param(set_params.len(), c)));
        }
        tx.execute(
            &format!(
                "UPDATE {} SET {} WHERE {}",
                ident(&self.table),
                sets.join(", "),
                wh.join(" AND ")
            ),
            &set_params,
        )
        .await?;
        Ok(())
    }
}

pub fn join_key(vals: &[Value]) -> String {
    vals.iter()
        .map(|v| v.to_text().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

/// Column name -> type (PostgreSQL `data_type`, lower case; SQLite declared type).
pub async fn table_columns(db: &mut DbTx, table: &str) -> Result<HashMap<String, String>> {
    let rows = match db.dialect() {
        Dialect::Sqlite => db.fetch_all(&format!("SELECT name, type FROM pragma_table_info('{}')", table.replace('\'', "''")), &[]).await?,
        Dialect::Postgres => {
            db.fetch_all(
                "SELECT column_name, CASE WHEN data_type = 'USER-DEFINED' THEN udt_name WHEN data_type = 'ARRAY' THEN 'text' ELSE data_type END FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
                &[Value::Text(table.into())],
            )
            .await?
        }
        Dialect::Mysql => {
            db.fetch_all(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = database() AND table_name = $1",
                &[Value::Text(table.into())],
            )
            .await?
        }
    };
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

/// Multi-row INSERT, as many rows per statement as SQLite's parameter limit allows.
pub async fn insert_multi(
    tx: &mut DbTx,
    table_sql: &str,
    columns: &[String],
    rows: &[Vec<Value>],
) -> Result<(), sqlx::Error> {
    let ncol = columns.len().max(1);
    let per = (30_000 / ncol).clamp(1, 500);
    let cols = columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
    let mut cached: Option<(usize, String)> = None;
    for chunk in rows.chunks(per) {
        let sql = match &cached {
            Some((n, s)) if *n == chunk.len() => s.clone(),
            _ => {
                let mut s = String::with_capacity(32 + chunk.len() * ncol * 6);
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
                        // made wide multi-row inserts quadratic.
                        s.push('?');
                    }
                    s.push(')');
                }
                cached = Some((chunk.len(), s.clone()));
                s
            }
        };
        let params: Vec<Value> = chunk.iter().flat_map(|r| r.iter().cloned()).collect();
        tx.execute(&sql, &params).await?;
    }
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

/// COPY rows in text format inside the caller's transaction.
pub async fn copy_in(
    t: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    statement: &str,
    rows: &[Vec<Value>],
) -> Result<(), sqlx::Error> {
    let mut buf = String::with_capacity(rows.len() * 64);
    for r in rows {
        for (i, v) in r.iter().enumerate() {
            if i > 0 {
                buf.push('\t');
            }
            copy_escape(&mut buf, v);
        }
        buf.push('\n');
    }
    let mut copy = t.copy_in_raw(statement).await?;
    if let Err(e) = copy.send(buf.into_bytes()).await {
        let _ = copy.abort("cutover: send failed").await;
        return Err(e);
    }
    copy.finish().await?;
    Ok(())
}

/// One ID-map entry: `alias` entries point at a row another source row already wrote.
pub struct IdMapEntry {
    pub map: String,
    pub old_key: String,
    pub new_id: String,
    pub alias: bool,
}

pub async fn insert_id_map(tx: &mut DbTx, version: &str, entries: &[IdMapEntry]) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let rows: Vec<Vec<Value>> = entries
        .iter()
        .map(|e| {
            vec![
                Value::Text(e.map.clone()),
                Value::Text(e.old_key.clone()),
                Value::Text(e.new_id.clone()),
                Value::Text(version.into()),
                Value::Int(e.alias as i64),
            ]
        })
        .collect();
    let cols: Vec<String> = ["map", "old_key", "new_id", "version", "alias"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match tx {
        DbTx::Postgres(t) => {
            copy_in(
                t,
                &format!("COPY {ID_MAP} (map, old_key, new_id, version, alias) FROM STDIN"),
                &rows,
            )
            .await
        }
        _ => insert_multi(tx, ID_MAP, &cols, &rows).await,
    }
}
