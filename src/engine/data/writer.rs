//! Writing rows into the target inside the batch's transaction, by the backend's bulk path
//! (COPY on PostgreSQL, multi-row INSERTs on SQLite and MySQL).

pub use crate::engine::backend::{Unfit, ident};
use crate::engine::db::{Db, DbTx, Dialect};
use crate::engine::store::{BACKUPS, ID_MAP};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use std::collections::HashMap;

pub struct TargetWriter {
    pub dialect: Dialect,
    pub table: String,
    pub columns: Vec<String>,
    /// PostgreSQL column types, to cast text parameters (uuid, date, ...) where the server
    /// will not do it implicitly.
    types: HashMap<String, String>,
    /// Whether each of `columns` holds text (so bytes bound for it must be decoded, not
    /// hex-encoded), looked up once instead of per cell.
    text_columns: Vec<bool>,
    /// Every natural key the step writes is known to be new to the table, so batches need not
    /// look for them there (see `steps::data::natural_keys_are_new`); a row that collides all
    /// the same is refused by the table's unique index and becomes a reject.
    pub natural_keys_are_new: bool,
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
        let dialect = tx.dialect();
        let text_columns = columns
            .iter()
            .map(|c| existing.get(c).is_some_and(|t| dialect.is_text_type(t)))
            .collect();
        Ok(TargetWriter {
            dialect,
            table: table.to_string(),
            columns: columns.to_vec(),
            types: existing,
            text_columns,
            natural_keys_are_new: false,
        })
    }

    /// `$n`, cast to the column's type where the target needs it (PostgreSQL).
    pub fn param(&self, n: usize, column: &str) -> String {
        self.cast_text_expr(&format!("${n}"), column)
    }

    pub fn cast_text_expr(&self, expr: &str, column: &str) -> String {
        self.dialect
            .cast_to_column(expr, self.types.get(column).map(String::as_str))
    }

    pub async fn insert(&self, tx: &mut DbTx, rows: &[Vec<Value>]) -> Result<(), sqlx::Error> {
        tx.bulk_insert(&ident(&self.table), &self.columns, rows).await
    }

    /// Fix or refuse, before writing, values the target would store as something else (see
    /// [`Dialect::fit`]: a NUL byte cannot go into PostgreSQL text; bytes bound for a text
    /// column are text in the source's encoding; SQLite would round a REAL put into a TEXT
    /// column to 15 digits and turns NaN into NULL; MySQL holds no NaN or infinity).
    pub fn fit(&self, values: &mut [Value]) -> Result<(), Unfit> {
        for ((col, v), text) in self.columns.iter().zip(values.iter_mut()).zip(&self.text_columns) {
            self.dialect.fit(col, v, *text)?;
        }
        Ok(())
    }

    /// Insert `rows`, isolating the ones the target refuses: the batch is tried whole under a
    /// savepoint and, when a row's data is refused, split in halves down to single rows (as
    /// pgloader does), so one bad row costs a few statements, not the batch. Returns the
    /// refused rows' indexes with the error; anything but a data refusal is returned as `Err`.
    /// `meanwhile` runs once, while the server stores the first try (see
    /// [`DbTx::bulk_insert_then`]).
    pub async fn insert_isolating(
        &self,
        tx: &mut DbTx,
        rows: &[Vec<Value>],
        meanwhile: impl FnOnce() + Send,
    ) -> Result<Vec<(usize, sqlx::Error)>, sqlx::Error> {
        let mut meanwhile = Some(meanwhile);
        let mut once = move || {
            if let Some(f) = meanwhile.take() {
                f()
            }
        };
        let mut refused = Vec::new();
        if rows.is_empty() {
            once();
            return Ok(refused);
        }
        let table = ident(&self.table);
        let mut todo: Vec<std::ops::Range<usize>> = Vec::with_capacity(16);
        todo.push(0..rows.len());
        while let Some(r) = todo.pop() {
            tx.execute_raw("SAVEPOINT cutover_rows").await?;
            match tx
                .bulk_insert_then(&table, &self.columns, &rows[r.clone()], &mut once)
                .await
            {
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
        // It ran in the first try, unless that try failed before its rows were all sent.
        once();
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
        let typed: Vec<(String, Option<String>)> = nk.iter().map(|c| (ident(c), self.types.get(c).cloned())).collect();
        if let Some((filter, params)) = self.dialect.key_list_filter(&typed, keys, 1) {
            let sql = format!(
                "SELECT {} FROM {} WHERE {filter}",
                select.join(", "),
                ident(&self.table)
            );
            for r in tx.fetch_all(&sql, &params).await?.rows {
                out.insert(join_key(&r[..nk.len()]), Self::id_of(&r, nk.len(), id_column));
            }
            return Ok(out);
        }
        for chunk in keys.chunks((500 / nk.len()).max(1)) {
            let Some((cond, params)) = self.key_match(nk, chunk) else {
                continue;
            };
            let sql = format!("SELECT {} FROM {} WHERE {cond}", select.join(", "), ident(&self.table));
            for r in tx.fetch_all(&sql, &params).await?.rows {
                out.insert(join_key(&r[..nk.len()]), Self::id_of(&r, nk.len(), id_column));
            }
        }
        Ok(out)
    }

    /// Delete the rows whose natural key (values in `nk` column order) is one of `keys`; keys
    /// with a NULL part match nothing. Returns how many rows went.
    pub async fn delete_keys(&self, tx: &mut DbTx, nk: &[String], keys: &[Vec<Value>]) -> Result<u64, sqlx::Error> {
        if nk.is_empty() || keys.is_empty() {
            return Ok(0);
        }
        let typed: Vec<(String, Option<String>)> = nk.iter().map(|c| (ident(c), self.types.get(c).cloned())).collect();
        if let Some((filter, params)) = self.dialect.key_list_filter(&typed, keys, 1) {
            let sql = format!("DELETE FROM {} WHERE {filter}", ident(&self.table));
            return tx.execute(&sql, &params).await;
        }
        let mut deleted = 0;
        for chunk in keys.chunks((500 / nk.len()).max(1)) {
            let Some((cond, params)) = self.key_match(nk, chunk) else {
                continue;
            };
            let sql = format!("DELETE FROM {} WHERE {cond}", ident(&self.table));
            deleted += tx.execute(&sql, &params).await?;
        }
        Ok(deleted)
    }

    /// A condition matching the rows whose natural key is one of `keys` (keys with a NULL part
    /// left out: they match nothing), with its parameters; `None` when no key is left.
    fn key_match(&self, nk: &[String], keys: &[Vec<Value>]) -> Option<(String, Vec<Value>)> {
        let mut params = Vec::new();
        let mut tuples = Vec::new();
        for k in keys
            .iter()
            .filter(|k| k.len() == nk.len() && k.iter().all(|v| !v.is_null()))
        {
            let mut t = Vec::with_capacity(nk.len());
            for (c, v) in nk.iter().zip(k) {
                params.push(v.clone());
                t.push(self.param(params.len(), c));
            }
            tuples.push(t);
        }
        if tuples.is_empty() {
            return None;
        }
        let cols: Vec<String> = nk.iter().map(|c| ident(c)).collect();
        Some((self.dialect.tuple_in(&cols, &tuples), params))
    }

    /// The id column's value of an `existing` row (empty without an id column).
    fn id_of(r: &[Value], at: usize, id_column: Option<&str>) -> String {
        match id_column {
            Some(_) => r.get(at).and_then(|v| v.to_text()).unwrap_or_default(),
            None => String::new(),
        }
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

/// Column name -> type (see [`DbTx::table_columns`]).
pub async fn table_columns(db: &mut DbTx, table: &str) -> Result<HashMap<String, String>> {
    Ok(db.table_columns(table).await?)
}

/// One ID-map entry: `alias` entries point at a row another source row already wrote.
pub struct IdMapEntry {
    pub map: String,
    pub old_key: String,
    pub new_id: String,
    pub alias: bool,
}

/// The ids the ID map `map` already holds for `keys` (old key → new id), aliases included
/// (one query: `store::sync_marks::mapped`).
pub async fn mapped_ids(tx: &mut DbTx, map: &str, keys: &[&str]) -> Result<HashMap<String, String>, sqlx::Error> {
    Ok(crate::engine::store::sync_marks::mapped(tx, map, keys)
        .await?
        .into_iter()
        .map(|(k, m)| (k, m.new_id))
        .collect())
}

pub async fn insert_id_map(tx: &mut DbTx, version: &str, entries: &[IdMapEntry]) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    // In key order: a page's entries then go into the map's B-tree in one sweep from left to
    // right instead of at random places (legacy integer keys as text are far from sorted:
    // "10" comes before "9").
    let mut sorted: Vec<&IdMapEntry> = entries.iter().collect();
    sorted.sort_unstable_by_key(|&e| (e.map.as_str(), e.old_key.as_str()));
    // Borrowed text cells: no value is built per entry (one ID-map row per row written).
    let rows: Vec<[Option<&str>; 5]> = sorted
        .into_iter()
        .map(|e| {
            [
                Some(e.map.as_str()),
                Some(e.old_key.as_str()),
                Some(e.new_id.as_str()),
                Some(version),
                Some(if e.alias { "1" } else { "0" }),
            ]
        })
        .collect();
    let cols: Vec<String> = ["map", "old_key", "new_id", "version", "alias"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    tx.bulk_insert_text(ID_MAP, &cols, &rows).await
}
