//! Reading a step's source in keyset pages: `WHERE key > last ORDER BY key LIMIT n`, with
//! single or composite keys. The pager is only correct when the key is unique and never NULL,
//! so the reader refuses a page that breaks that instead of silently skipping rows, and the
//! pre-flight (`check_keys`) refuses the run before anything is written.

use crate::engine::data::pipeline::{CompiledStep, SourceBatch};
use crate::engine::db::{Db, PageStream, PrefetchedStream, quote_ident};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use std::sync::Arc;

pub struct SourceReader {
    source: Db,
    c: Arc<CompiledStep>,
    /// The step's source as a subquery (a table narrowed to the columns the step reads).
    base: String,
    /// PostgreSQL type names of the key columns, so a text-decoded key (a timestamp, a uuid)
    /// compares as its own type when it comes back as a parameter.
    key_types: Option<Vec<String>>,
    /// A query source is read as one ordered stream (see `page`), opened at the first page.
    stream: Option<PageStream>,
    /// The key of the last row handed out, so the guard also holds across pages.
    last_key: Option<Value>,
    /// A stream of this source opened before the step started (see `exec::NextSource`).
    adopted: Option<PrefetchedStream>,
}

impl SourceReader {
    /// `narrow`: read only the columns the step uses (data steps); merge steps read whole rows.
    pub fn new(source: Db, c: Arc<CompiledStep>, narrow: bool) -> SourceReader {
        let d = source.dialect();
        let cols = c.read_columns();
        let base = c.spec.source_sql_of(d, narrow.then_some(cols.as_slice()));
        SourceReader {
            source,
            c,
            base,
            key_types: None,
            stream: None,
            adopted: None,
            last_key: None,
        }
    }

    /// The placeholder of parameter `n` compared with the first key column, cast to the key's
    /// type where the dialect needs that (as the pager's own `key > $n`).
    pub async fn key_param(&mut self, n: usize) -> Result<String> {
        self.load_key_types().await?;
        let ty = self.key_types.as_ref().and_then(|t| t.first());
        Ok(self.source.dialect().key_param(n, ty.map(String::as_str)))
    }

    /// The step this reader reads for.
    pub fn compiled(&self) -> &Arc<CompiledStep> {
        &self.c
    }

    fn q(&self, name: &str) -> String {
        quote_ident(self.source.dialect(), name)
    }

    /// How many rows the source has for this step, as the source itself counts them.
    pub async fn count(&self) -> Result<u64> {
        count_rows(&self.source, &self.base).await
    }

    /// Check that the source has every column the step reads, by the columns of the whole
    /// source (a narrowed SELECT cannot tell: SQLite reads an unknown double-quoted name as a
    /// string literal). The statement is only prepared, never run: an empty source is
    /// checked too, and a query source is not computed for it.
    pub async fn check_columns(&self) -> Result<(), String> {
        let whole = self.c.spec.source_sql(self.source.dialect());
        let columns = self
            .source
            .result_columns(&format!("SELECT * FROM ({whole}) src"))
            .await
            .map_err(|e| {
                format!(
                    "step {}: cannot read the source {}: {}",
                    self.c.version,
                    self.c.source_name,
                    crate::engine::db_error::report_text(&e)
                )
            })?;
        crate::engine::data::embed::check_children(&self.source, &self.c.version, &self.c.spec.embed).await?;
        self.c.check_source_columns(&columns).map_err(|e| format!("{e:#}"))
    }

    /// Refuse a key that is NULL or not unique, naming the step, the key and one offending value.
    /// One pass over the source finds both and counts its rows (the step's progress total, so
    /// the step need not compute a view again to count it): a source that is a view with joins
    /// and windows costs a second or more per pass at 200k rows. Only a problem found costs a
    /// second pass, to name a value. A table whose key is its primary key (unique and never
    /// NULL, as the server enforces) is not read at all, and not counted: `Ok(None)`.
    pub async fn check_keys(&self) -> Result<Option<u64>, String> {
        if let Some(table) = self.c.spec.source.table.as_deref() {
            match self.source.is_primary_key(table, &self.c.key_columns).await {
                Ok(true) => return Ok(None),
                Ok(false) => {}
                // The pass below answers all the same.
                Err(e) => tracing::debug!("step {}: the source's primary key is unknown: {e:#}", self.c.version),
            }
        }
        let keys: Vec<String> = self.c.key_columns.iter().map(|k| self.q(k)).collect();
        let list = keys.join(", ");
        let step = &self.c.version;
        let key_name = self.c.key_columns.join(", ");
        let nulls = keys
            .iter()
            .map(|k| format!("{k} IS NULL"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let cannot_read =
            |e: &dyn std::fmt::Display| format!("step {step}: cannot read the source {}: {e}", self.c.source_name);
        // The groups carry only their aggregates, so no key column's name can meet them.
        let summary = format!(
            "SELECT SUM(cutover_n), MAX(cutover_n), MAX(cutover_null) \
             FROM (SELECT COUNT(*) AS cutover_n, MAX(CASE WHEN {nulls} THEN 1 ELSE 0 END) AS cutover_null \
             FROM ({}) src GROUP BY {list}) g",
            self.base
        );
        let ask = async |sql: &str| {
            self.source
                .fetch_optional(sql, &[])
                .await
                .map_err(|e| cannot_read(&crate::engine::db_error::report_text(&e)))
        };
        let Some(row) = ask(&summary).await? else {
            return Ok(None);
        };
        // NULL (an empty source) is 0; a value that reads as no number at all is not taken
        // for a clean key: the second pass decides.
        let number = |i: usize| match row.get(i) {
            None | Some(Value::Null) => Some(0),
            Some(v) => v.as_count(),
        };
        if let (Some(rows), Some(most), Some(null)) = (number(0), number(1), number(2))
            && most <= 1
            && null == 0
        {
            return Ok(Some(rows));
        }
        let rows = number(0).unwrap_or(0);
        let sql = format!(
            "SELECT {list}, COUNT(*) FROM ({}) src GROUP BY {list} HAVING COUNT(*) > 1 OR {nulls} \
             ORDER BY CASE WHEN {nulls} THEN 0 ELSE 1 END, {list} LIMIT 1",
            self.base
        );
        let Some(row) = ask(&sql).await? else {
            // The source changed between the two passes; the step's own reads guard the rest.
            return Ok(Some(rows));
        };
        let key_vals = &row[..row.len().saturating_sub(1)];
        if key_vals.iter().any(Value::is_null) {
            let sql = format!("SELECT COUNT(*) FROM ({}) src WHERE {nulls}", self.base);
            let n = scalar_count(&self.source, &sql)
                .await
                .map_err(|e| cannot_read(&crate::engine::db_error::report_text(&e)))?;
            return Err(format!(
                "step {step}: the source key ({key_name}) of {} is NULL in {n} row(s). Keyset paging needs a key that is never NULL: choose another [source] key (a composite key = [\"a\", \"b\"] is allowed) or fix the source rows",
                self.c.source_name
            ));
        }
        let n = row.last().cloned().unwrap_or(Value::Null);
        let vals: Vec<String> = key_vals.iter().map(|v| v.to_string()).collect();
        Err(format!(
            "step {step}: the source key ({key_name}) of {} is not unique: {} appears in {n} rows. Keyset paging would skip rows with an equal key: choose a unique [source] key (a composite key = [\"a\", \"b\"] is allowed)",
            self.c.source_name,
            vals.join(", ")
        ))
    }

    /// Open the stream of a query source from its first row, in pages of `limit` rows, ahead
    /// of the step (see `exec::NextSource`); `None` for a table source, or a source read
    /// through a connection pool (a server's), whose read transaction would be held for
    /// nothing.
    pub async fn open_first_stream(&mut self, limit: usize) -> Result<Option<PrefetchedStream>> {
        if self.c.spec.source.query.is_none() || !self.source.reads_natively() {
            return Ok(None);
        }
        let (sql, params) = self.page_sql(&None, None).await?;
        let stream = self.source.stream_pages(sql.clone(), params.clone(), limit);
        Ok(Some(PrefetchedStream {
            sql,
            params,
            page_rows: limit,
            stream,
        }))
    }

    /// Read `p` (opened by [`SourceReader::open_first_stream`] for the same step) instead of
    /// opening the first stream, if it is the statement the first page would run.
    pub fn adopt(&mut self, p: PrefetchedStream) {
        self.adopted = Some(p);
    }

    /// The page of up to `limit` rows after `after`, in key order. A table is read in keyset
    /// pages, each an index range of its own. A query (a view with joins and window functions)
    /// would be computed again for every page, so it is read as one ordered stream instead,
    /// from `after` at the first page: a step computes it once. A SQLite file is read through
    /// SQLite's own handle (see `Db::reads_natively`).
    pub async fn page(&mut self, after: &Option<Value>, limit: usize) -> Result<SourceBatch> {
        let rows = if self.c.spec.source.query.is_some() {
            if self.stream.is_none() {
                let (sql, params) = self.page_sql(after, None).await?;
                // An adopted stream is used only when it is exactly the statement this read
                // would start (the same first key, the same page size).
                let adopted = self
                    .adopted
                    .take()
                    .filter(|p| p.sql == sql && p.params == params && p.page_rows == limit);
                self.stream = Some(match adopted {
                    Some(p) => {
                        tracing::info!(
                            "step {}: reads the source stream opened while the step before closed",
                            self.c.version
                        );
                        p.stream
                    }
                    None => self.source.stream_pages(sql, params, limit),
                });
            }
            let stream = self
                .stream
                .as_mut()
                .ok_or_else(|| eyre!("the source stream was not opened"))?;
            match stream.recv().await {
                Some(Ok(Some(rows))) => rows,
                Some(Ok(None)) => Default::default(),
                Some(Err(e)) => return Err(self.read_error(e, after)),
                None => {
                    return Err(eyre!(
                        "step {}: the stream reading the source {} stopped before its end",
                        self.c.version,
                        self.c.source_name
                    ));
                }
            }
        } else if self.source.reads_natively() {
            // One short statement per page, so the source is never held between pages (a
            // legacy writer, or an operator's lock, gets in between).
            let (sql, params) = self.page_sql(after, Some(limit)).await?;
            let mut page = self.source.stream_pages(sql, params, limit.max(1));
            let mut rows = Default::default();
            loop {
                match page.recv().await {
                    Some(Ok(Some(r))) => rows = r,
                    Some(Ok(None)) => break,
                    Some(Err(e)) => return Err(self.read_error(e, after)),
                    None => {
                        return Err(eyre!(
                            "step {}: the reader of the source {} stopped before the end of a page",
                            self.c.version,
                            self.c.source_name
                        ));
                    }
                }
            }
            rows
        } else {
            let (sql, params) = self.page_sql(after, Some(limit)).await?;
            match self.source.fetch_all(&sql, &params).await {
                Ok(rows) => rows,
                Err(e) => return Err(self.read_error(e, after)),
            }
        };
        if self.key_types.is_none() && !rows.types.is_empty() {
            self.key_types = Some(key_types_of(&self.c, &rows.columns, &rows.types));
        }
        let mut batch = SourceBatch {
            columns: Arc::new(rows.columns),
            rows: rows.rows,
            issues: rows.issues,
            embeds: Arc::default(),
        };
        self.guard(&batch)?;
        if !self.c.spec.embed.is_empty() {
            self.load_key_types().await?;
            let key_type = self.key_types.as_ref().and_then(|t| t.first()).cloned();
            fetch_children(&self.source, &self.c, &mut batch, key_type.as_deref()).await?;
        }
        Ok(batch)
    }

    fn read_error(&self, e: color_eyre::eyre::Report, after: &Option<Value>) -> color_eyre::eyre::Report {
        e.wrap_err(format!(
            "step {}: reading the source {} after key {}",
            self.c.version,
            self.c.source_name,
            after
                .as_ref()
                .map(|k| k.to_string())
                .unwrap_or_else(|| "(start)".into())
        ))
    }

    /// The SELECT of the rows after `after` in key order, `limit` of them when given.
    async fn page_sql(&mut self, after: &Option<Value>, limit: Option<usize>) -> Result<(String, Vec<Value>)> {
        let keys: Vec<String> = self.c.key_columns.iter().map(|k| self.q(k)).collect();
        let order = keys.join(", ");
        let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        Ok(match after {
            None => (
                format!("SELECT * FROM ({}) src ORDER BY {order}{limit}", self.base),
                vec![],
            ),
            Some(k) => {
                let params: Vec<Value> = match k {
                    Value::Json(serde_json::Value::Array(a)) if keys.len() > 1 => {
                        a.iter().map(Value::from_json).collect()
                    }
                    other => vec![other.clone()],
                };
                if params.len() != keys.len() {
                    return Err(eyre!(
                        "step {}: the checkpoint's key {k} does not fit the source key ({}); was [source] key changed after the step started? Roll the step back (`cutover down --to`) and run it again",
                        self.c.version,
                        self.c.key_columns.join(", ")
                    ));
                }
                self.load_key_types().await?;
                let ph: Vec<String> = (1..=params.len())
                    .map(|i| {
                        let ty = self.key_types.as_ref().and_then(|t| t.get(i - 1));
                        self.source.dialect().key_param(i, ty.map(String::as_str))
                    })
                    .collect();
                let cond = if keys.len() == 1 {
                    format!("{} > {}", keys[0], ph[0])
                } else {
                    format!("({order}) > ({})", ph.join(", "))
                };
                (
                    format!("SELECT * FROM ({}) src WHERE {cond} ORDER BY {order}{limit}", self.base),
                    params,
                )
            }
        })
    }

    /// The source rows whose `column` reads as one of `texts` (compared as text, as the ID
    /// map keeps legacy keys), in no particular order. For a handful of rows found late (a
    /// foreign key's orphans): the source is scanned once per call.
    pub async fn rows_with_text_in(&self, column: &str, texts: &[String]) -> Result<SourceBatch> {
        let d = self.source.dialect();
        let list: Vec<String> = (1..=texts.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT * FROM ({}) src WHERE {} IN ({})",
            self.base,
            d.as_text(&self.q(column)),
            list.join(", ")
        );
        let params: Vec<Value> = texts.iter().map(|t| Value::Text(t.clone())).collect();
        let rows = self.source.fetch_all(&sql, &params).await?;
        Ok(SourceBatch {
            columns: Arc::new(rows.columns),
            rows: rows.rows,
            issues: rows.issues,
            embeds: Arc::default(),
        })
    }

    /// The source row whose key columns hold `key` (values as the reject store kept them),
    /// as a one-row batch with its cells' decode issues; an empty batch when it is gone.
    pub async fn row_by_key(&mut self, key: &[Value]) -> Result<SourceBatch> {
        if key.len() != self.c.key_columns.len() {
            return Err(eyre!(
                "step {}: the rejected row does not hold its key ({})",
                self.c.version,
                self.c.key_columns.join(", ")
            ));
        }
        self.load_key_types().await?;
        let cond: Vec<String> = self
            .c
            .key_columns
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let ty = self.key_types.as_ref().and_then(|t| t.get(i));
                format!(
                    "{} = {}",
                    self.q(k),
                    self.source.dialect().key_param(i + 1, ty.map(String::as_str))
                )
            })
            .collect();
        let sql = format!("SELECT * FROM ({}) src WHERE {}", self.base, cond.join(" AND "));
        let rows = self.source.fetch_all(&sql, key).await?;
        Ok(SourceBatch {
            columns: Arc::new(rows.columns),
            rows: rows.rows,
            issues: rows.issues,
            embeds: Arc::default(),
        })
    }

    /// The second guard: no row of a page may have a NULL key or repeat its predecessor's.
    fn guard(&mut self, batch: &SourceBatch) -> Result<()> {
        let mut prev: Option<Value> = self.last_key.take();
        for row in &batch.rows {
            let Some(k) = self.c.page_key(&batch.columns, row) else {
                return Err(eyre!(
                    "step {}: a source row of {} has a NULL key ({}) after key {}; rows with a NULL key cannot be paged and would be lost. Choose a key that is never NULL",
                    self.c.version,
                    self.c.source_name,
                    self.c.key_columns.join(", "),
                    prev.map(|p| p.to_string()).unwrap_or_else(|| "(page start)".into())
                ));
            };
            if prev.as_ref() == Some(&k) {
                return Err(eyre!(
                    "step {}: the source key ({}) of {} repeats the value {k}; rows with an equal key would be skipped. Choose a unique key",
                    self.c.version,
                    self.c.key_columns.join(", "),
                    self.c.source_name
                ));
            }
            prev = Some(k);
        }
        self.last_key = prev;
        Ok(())
    }

    async fn load_key_types(&mut self) -> Result<()> {
        if self.key_types.is_some() || !self.source.dialect().casts_key_params() {
            return Ok(());
        }
        let cols = self
            .c
            .key_columns
            .iter()
            .map(|k| self.q(k))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = self
            .source
            .fetch_all(&format!("SELECT {cols} FROM ({}) src LIMIT 1", self.base), &[])
            .await?;
        if !rows.types.is_empty() {
            self.key_types = Some(key_types_of(&self.c, &rows.columns, &rows.types));
        }
        Ok(())
    }
}

fn key_types_of(c: &CompiledStep, columns: &[String], types: &[String]) -> Vec<String> {
    c.key_columns
        .iter()
        .map(|k| {
            CompiledStep::column_index(columns, k)
                .and_then(|i| types.get(i))
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// `[[embed]]`: read the children of every parent of `batch` onto it (`SourceBatch::embeds`),
/// keyed by the step's source key; `key_type` is that key's type as the source reports it.
pub async fn fetch_children(
    source: &Db,
    c: &CompiledStep,
    batch: &mut SourceBatch,
    key_type: Option<&str>,
) -> Result<()> {
    if c.spec.embed.is_empty() {
        return Ok(());
    }
    let key_at = CompiledStep::column_index(&batch.columns, &c.key_column);
    if key_at.is_none() && !batch.rows.is_empty() {
        return Err(eyre!(
            "step {}: the page has no column {} (the source key the embedded rows join on)",
            c.version,
            c.key_column
        ));
    }
    let mut keys: Vec<Value> = Vec::with_capacity(batch.rows.len());
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::with_capacity(batch.rows.len());
    for row in &batch.rows {
        if let Some(v) = key_at.and_then(|i| row.get(i))
            && let Some(t) = v.to_text()
            && seen.insert(t)
        {
            keys.push(v.clone());
        }
    }
    let embeds = crate::engine::data::embed::fetch(source, &c.version, &c.spec.embed, &keys, key_type).await?;
    batch.embeds = Arc::new(embeds);
    Ok(())
}

async fn scalar_count(db: &Db, sql: &str) -> Result<u64> {
    let r = db.fetch_optional(sql, &[]).await?;
    match r.and_then(|r| r.into_iter().next()) {
        Some(v) => v.as_count().ok_or_else(|| eyre!("COUNT(*) returned {v:?}")),
        None => Err(eyre!("COUNT(*) returned no row")),
    }
}

/// `SELECT COUNT(*)` of a subquery.
pub async fn count_rows(db: &Db, base: &str) -> Result<u64> {
    scalar_count(db, &format!("SELECT COUNT(*) FROM ({base}) src")).await
}
