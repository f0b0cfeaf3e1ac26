//! Reading a step's changed rows: `WHERE cursor > mark OR (cursor = mark AND key > last key)`
//! in (cursor, key) order, bounded above by the cursor's maximum when the pass started (so a
//! pass ends even while the legacy system keeps writing). Also the lag after a pass, and the
//! first mark `up` records.

use crate::engine::data::pipeline::{CompiledStep, SourceBatch};
use crate::engine::data::spec::SyncSpec;
use crate::engine::db::{Db, quote_ident};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use std::cmp::Ordering;
use std::sync::Arc;

/// A position in (cursor, key) order. `key` None: before every row at `cursor` (they are all
/// read again).
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    pub cursor: Value,
    pub key: Option<Value>,
}

impl Position {
    /// The mark as people read it: `2025-03-01 10:00:00 / 17`.
    pub fn text(&self) -> String {
        let cursor = self.cursor.to_text().unwrap_or_default();
        match self.key.as_ref().and_then(|k| k.to_text()) {
            Some(k) => format!("{cursor} / {k}"),
            None => cursor,
        }
    }

    /// Whether this position is after `other` (cursor first, then key; no key is first).
    pub fn after(&self, other: &Position) -> bool {
        match cmp_values(&self.cursor, &other.cursor) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => match (&self.key, &other.key) {
                (Some(a), Some(b)) => cmp_values(a, b) == Ordering::Greater,
                (Some(_), None) => true,
                _ => false,
            },
        }
    }
}

/// Order two cursor or key values as the source would: numbers as numbers, timestamps as
/// instants, composite keys element by element, anything else as text.
pub fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Json(serde_json::Value::Array(x)), Value::Json(serde_json::Value::Array(y))) => {
            for (p, q) in x.iter().zip(y) {
                let o = cmp_values(&Value::from_json(p), &Value::from_json(q));
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => {
            let (ta, tb) = (a.to_text().unwrap_or_default(), b.to_text().unwrap_or_default());
            if let (Some(x), Some(y)) = (parse_instant(&ta), parse_instant(&tb)) {
                return x.cmp(&y);
            }
            if let (Ok(x), Ok(y)) = (ta.parse::<f64>(), tb.parse::<f64>()) {
                return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
            }
            ta.cmp(&tb)
        }
    }
}

/// A timestamp as the backends decode one: RFC 3339 (PostgreSQL), `YYYY-MM-DD HH:MM:SS[.f]`
/// (MySQL, SQLite text), or a date. Offsets are applied (the instant in UTC).
pub fn parse_instant(s: &str) -> Option<chrono::NaiveDateTime> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.naive_utc());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

/// A mark's cursor text as a value to bind: an integer cursor binds as an integer.
pub fn cursor_value(text: &str) -> Value {
    match text.trim().parse::<i64>() {
        Ok(n) => Value::Int(n),
        Err(_) => Value::Text(text.to_string()),
    }
}

/// `mark` moved back by `lookback`, for a timestamp cursor (an integer cursor has no time to
/// look back over). Written in the mark's own style so text comparisons (SQLite) still order.
pub fn looked_back(mark: &Position, lookback: std::time::Duration) -> Position {
    if lookback.is_zero() {
        return mark.clone();
    }
    let text = mark.cursor.to_text().unwrap_or_default();
    let Ok(back) = chrono::Duration::from_std(lookback) else {
        return mark.clone();
    };
    let moved = if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text.trim()) {
        Some((t - back).to_rfc3339())
    } else if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f") {
        Some((t - back).format("%Y-%m-%d %H:%M:%S%.f").to_string())
    } else if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M:%S%.f") {
        Some((t - back).format("%Y-%m-%dT%H:%M:%S%.f").to_string())
    } else {
        None
    };
    match moved {
        Some(t) => Position {
            cursor: Value::Text(t),
            key: None,
        },
        None => mark.clone(),
    }
}

pub struct ChangeReader {
    source: Db,
    c: Arc<CompiledStep>,
    sync: SyncSpec,
    /// The step's source narrowed to the columns it reads, plus the cursor and delete columns.
    base: String,
    /// PostgreSQL types of the cursor and key columns (parameters are cast to them).
    types: Option<Vec<String>>,
}

impl ChangeReader {
    pub fn new(source: Db, c: Arc<CompiledStep>) -> Result<ChangeReader> {
        let sync = c
            .spec
            .sync
            .clone()
            .ok_or_else(|| eyre!("step {} has no [sync]", c.version))?;
        let mut cols = c.read_columns();
        for extra in std::iter::once(&sync.cursor).chain(sync.deleted.iter()) {
            if !cols.contains(extra) {
                cols.push(extra.clone());
            }
        }
        let base = c.spec.source_sql_of(source.dialect(), Some(&cols));
        Ok(ChangeReader {
            source,
            c,
            sync,
            base,
            types: None,
        })
    }

    fn q(&self, name: &str) -> String {
        quote_ident(self.source.dialect(), name)
    }

    /// Cursor and key column types, once (PostgreSQL only needs them).
    async fn load_types(&mut self) -> Result<()> {
        if self.types.is_some() || !self.source.dialect().casts_key_params() {
            return Ok(());
        }
        let cols: Vec<String> = std::iter::once(&self.sync.cursor)
            .chain(&self.c.key_columns)
            .map(|k| self.q(k))
            .collect();
        let rows = self
            .source
            .fetch_all(
                &format!("SELECT {} FROM ({}) src LIMIT 1", cols.join(", "), self.base),
                &[],
            )
            .await?;
        if !rows.types.is_empty() {
            self.types = Some(rows.types);
        }
        Ok(())
    }

    fn param(&self, n: usize, which: usize) -> String {
        let ty = self.types.as_ref().and_then(|t| t.get(which));
        self.source.dialect().key_param(n, ty.map(String::as_str))
    }

    /// `cursor IS NOT NULL AND (cursor, key) > from AND cursor <= upto`, with its parameters.
    fn condition(&self, from: Option<&Position>, upto: Option<&Value>) -> Result<(String, Vec<Value>)> {
        let cursor = self.q(&self.sync.cursor);
        let mut conds = vec![format!("{cursor} IS NOT NULL")];
        let mut params: Vec<Value> = Vec::new();
        if let Some(p) = from {
            match &p.key {
                None => {
                    params.push(p.cursor.clone());
                    conds.push(format!("{cursor} >= {}", self.param(params.len(), 0)));
                }
                Some(k) => {
                    let keys: Vec<String> = self.c.key_columns.iter().map(|k| self.q(k)).collect();
                    let kv: Vec<Value> = match k {
                        Value::Json(serde_json::Value::Array(a)) if keys.len() > 1 => {
                            a.iter().map(Value::from_json).collect()
                        }
                        other => vec![other.clone()],
                    };
                    if kv.len() != keys.len() {
                        return Err(eyre!(
                            "step {}: the sync mark's key {k} does not fit the source key ({}); was [source] key changed?",
                            self.c.version,
                            self.c.key_columns.join(", ")
                        ));
                    }
                    params.push(p.cursor.clone());
                    let gt = self.param(params.len(), 0);
                    params.push(p.cursor.clone());
                    let eq = self.param(params.len(), 0);
                    let mut ph = Vec::new();
                    for (i, v) in kv.into_iter().enumerate() {
                        params.push(v);
                        ph.push(self.param(params.len(), i + 1));
                    }
                    let key_gt = if keys.len() == 1 {
                        format!("{} > {}", keys[0], ph[0])
                    } else {
                        format!("({}) > ({})", keys.join(", "), ph.join(", "))
                    };
                    conds.push(format!("({cursor} > {gt} OR ({cursor} = {eq} AND {key_gt}))"));
                }
            }
        }
        if let Some(hi) = upto {
            params.push(hi.clone());
            conds.push(format!("{cursor} <= {}", self.param(params.len(), 0)));
        }
        Ok((conds.join(" AND "), params))
    }

    /// The largest cursor value the source has now (None: no row has one).
    pub async fn max_cursor(&mut self) -> Result<Option<Value>> {
        self.load_types().await?;
        let cursor = self.q(&self.sync.cursor);
        let r = self
            .source
            .fetch_optional(&format!("SELECT MAX({cursor}) FROM ({}) src", self.base), &[])
            .await
            .map_err(|e| {
                e.wrap_err(format!(
                    "step {}: reading the sync cursor {}",
                    self.c.version, self.sync.cursor
                ))
            })?;
        Ok(r.and_then(|r| r.into_iter().next()).filter(|v| !v.is_null()))
    }

    /// Up to `limit` changed rows after `from`, up to cursor `upto`, in (cursor, key) order.
    pub async fn page(&mut self, from: Option<&Position>, upto: Option<&Value>, limit: usize) -> Result<SourceBatch> {
        self.load_types().await?;
        let (cond, params) = self.condition(from, upto)?;
        let order: Vec<String> = std::iter::once(&self.sync.cursor)
            .chain(&self.c.key_columns)
            .map(|k| self.q(k))
            .collect();
        let sql = format!(
            "SELECT * FROM ({}) src WHERE {cond} ORDER BY {} LIMIT {limit}",
            self.base,
            order.join(", ")
        );
        let rows = self.source.fetch_all(&sql, &params).await.map_err(|e| {
            e.wrap_err(format!(
                "step {}: reading the changes of {} after {}",
                self.c.version,
                self.c.source_name,
                from.map(|p| p.text()).unwrap_or_else(|| "(start)".into())
            ))
        })?;
        Ok(SourceBatch {
            columns: Arc::new(rows.columns),
            rows: rows.rows,
            issues: rows.issues,
        })
    }

    /// The position of a row read by `page`.
    pub fn position_of(&self, columns: &[String], row: &[Value]) -> Option<Position> {
        let cursor = CompiledStep::column_index(columns, &self.sync.cursor).and_then(|i| row.get(i))?;
        Some(Position {
            cursor: cursor.clone(),
            key: self.c.page_key(columns, row),
        })
    }

    /// Whether a row is soft-deleted: its delete column is set (not NULL, not 0/false/empty).
    pub fn is_deleted(&self, columns: &[String], row: &[Value]) -> bool {
        let Some(col) = &self.sync.deleted else {
            return false;
        };
        match CompiledStep::column_index(columns, col).and_then(|i| row.get(i)) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Int(n)) => *n != 0,
            Some(Value::Real(r)) => *r != 0.0,
            Some(Value::Text(t)) => {
                let t = t.trim();
                !(t.is_empty() || t == "0" || t.eq_ignore_ascii_case("false") || t.starts_with("0000-00-00"))
            }
            Some(_) => true,
        }
    }

    /// Rows changed after `mark` (the lag), and the age in seconds of the oldest of them when
    /// the cursor is a timestamp, measured against the source's own clock.
    pub async fn lag(&mut self, mark: Option<&Position>) -> Result<(u64, Option<f64>)> {
        self.load_types().await?;
        let (cond, params) = self.condition(mark, None)?;
        let cursor = self.q(&self.sync.cursor);
        let r = self
            .source
            .fetch_optional(
                &format!("SELECT COUNT(*), MIN({cursor}) FROM ({}) src WHERE {cond}", self.base),
                &params,
            )
            .await?
            .unwrap_or_default();
        let rows = match r.first() {
            Some(Value::Int(n)) => (*n).max(0) as u64,
            Some(Value::Text(t)) => t.trim().parse().unwrap_or(0),
            _ => 0,
        };
        if rows == 0 {
            return Ok((0, None));
        }
        let Some(oldest) = r.get(1).and_then(|v| v.to_text()).and_then(|t| parse_instant(&t)) else {
            return Ok((rows, None));
        };
        // The source's clock in the cursor's own type (PostgreSQL: a timestamp without time
        // zone is the session's local time), so the age holds whatever zone the server is in.
        let now_expr = self.param(1, 0).replace("$1", "CURRENT_TIMESTAMP");
        let now = self
            .source
            .fetch_optional(&format!("SELECT {now_expr}"), &[])
            .await?
            .and_then(|r| r.into_iter().next())
            .and_then(|v| v.to_text())
            .and_then(|t| parse_instant(&t));
        Ok((
            rows,
            now.map(|now| ((now - oldest).num_milliseconds().max(0) as f64) / 1000.0),
        ))
    }
}
