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
        let mut batch = SourceBatch {
            columns: Arc::new(rows.columns),
            rows: rows.rows,
            issues: rows.issues,
            embeds: Arc::default(),
        };
        // The synced rows' children, read again with them (a parent's array is rebuilt
        // whole when the parent row changes).
        let key_type = self.types.as_ref().and_then(|t| t.get(1)).cloned();
        crate::engine::data::reader::fetch_children(&self.source, &self.c, &mut batch, key_type.as_deref()).await?;
        Ok(batch)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::Overrides;
    use crate::engine::data::spec::DataStep;
    use crate::engine::db::Role;
    use crate::engine::project::Project;

    const STEP: &str = "[source]\ntable = \"p\"\nkey = \"id\"\n[target]\ntable = \"t\"\n[id_map]\ncolumn = \"id\"\n[sync]\ncursor = \"updated_at\"\ndeleted = \"gone\"\n[[fields]]\ntarget = \"name\"\nsource = \"name\"\n";

    async fn reader(dir: &std::path::Path, rows: &str) -> ChangeReader {
        std::fs::write(
            dir.join("cutover.toml"),
            "[source]\nurl = \"sqlite://source.db\"\n[target]\nurl = \"sqlite://target.db\"\n",
        )
        .unwrap();
        let project = Project::load(dir, &Overrides::default()).unwrap();
        let source = Db::connect(project.config.source_db().unwrap(), dir, Role::Target)
            .await
            .unwrap();
        source
            .execute(
                "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT, updated_at TEXT, gone INTEGER)",
                &[],
            )
            .await
            .unwrap();
        source
            .execute(&format!("INSERT INTO p VALUES {rows}"), &[])
            .await
            .unwrap();
        let c = CompiledStep::compile("v1", DataStep::parse(STEP).unwrap()).unwrap();
        ChangeReader::new(source, Arc::new(c)).unwrap()
    }

    /// The lag counts the rows after the mark (cursor, then key) and dates the oldest of them
    /// against the source's clock.
    #[tokio::test]
    async fn the_lag_is_the_rows_after_the_mark_and_the_age_of_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let now = chrono::Utc::now().naive_utc();
        let at = |secs: i64| {
            (now - chrono::Duration::seconds(secs))
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        };
        let rows = format!(
            "(1, 'a', '{}', 0), (2, 'b', '{}', 0), (3, 'c', '{}', 1), (4, 'd', '{}', 0), (5, 'e', NULL, 0)",
            at(100),
            at(40),
            at(40),
            at(10)
        );
        let mut r = reader(dir.path(), &rows).await;
        // After row 2: rows 3 (same cursor, larger key) and 4; row 5 has no cursor.
        let mark = Position {
            cursor: Value::Text(at(40)),
            key: Some(Value::Int(2)),
        };
        let (rows, age) = r.lag(Some(&mark)).await.unwrap();
        assert_eq!(rows, 2);
        let age = age.expect("a timestamp cursor has an age");
        assert!(
            (38.0..45.0).contains(&age),
            "the oldest unsynced change is 40 s old: {age}"
        );
        // Nothing after the last row: no lag, no age.
        let end = Position {
            cursor: Value::Text(at(10)),
            key: Some(Value::Int(4)),
        };
        assert_eq!(r.lag(Some(&end)).await.unwrap(), (0, None));
        // The pages follow (cursor, key) and stop at `upto`; soft deletes are seen.
        let page = r.page(Some(&mark), Some(&Value::Text(at(40))), 10).await.unwrap();
        let keys: Vec<_> = page
            .rows
            .iter()
            .map(|row| r.position_of(&page.columns, row).unwrap().key)
            .collect();
        assert_eq!(keys, [Some(Value::Int(3))]);
        assert!(r.is_deleted(&page.columns, &page.rows[0]));
        assert_eq!(r.max_cursor().await.unwrap(), Some(Value::Text(at(10))));
    }

    #[test]
    fn positions_order_by_cursor_then_key_and_lookback_moves_back() {
        let p = |c: &str, k: Option<i64>| Position {
            cursor: Value::Text(c.into()),
            key: k.map(Value::Int),
        };
        assert!(p("2025-01-01 10:00:01", Some(1)).after(&p("2025-01-01 10:00:00", Some(9))));
        assert!(p("2025-01-01 10:00:00", Some(10)).after(&p("2025-01-01 10:00:00", Some(9))));
        assert!(!p("2025-01-01 10:00:00", Some(9)).after(&p("2025-01-01 10:00:00", Some(9))));
        assert!(p("2025-01-01 10:00:00", Some(1)).after(&p("2025-01-01 10:00:00", None)));
        // RFC 3339 and plain text of the same instant compare equal.
        assert_eq!(
            cmp_values(
                &Value::Text("2025-01-01T10:00:00+00:00".into()),
                &Value::Text("2025-01-01 10:00:00".into())
            ),
            Ordering::Equal
        );
        assert_eq!(
            looked_back(&p("2025-01-01 10:00:00", Some(4)), std::time::Duration::from_secs(5)),
            p("2025-01-01 09:59:55", None)
        );
        assert_eq!(
            looked_back(
                &p("2025-01-01T10:00:00.5+00:00", Some(4)),
                std::time::Duration::from_secs(1)
            )
            .cursor,
            Value::Text("2025-01-01T09:59:59.500+00:00".into())
        );
        // An integer cursor has no time to look back over.
        let int = Position {
            cursor: Value::Int(42),
            key: None,
        };
        assert_eq!(looked_back(&int, std::time::Duration::from_secs(5)), int);
    }
}
