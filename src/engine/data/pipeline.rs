//! What happens to one source row: transforms, ID-map lookups, validation, and the decision
//! (write with warnings, or reject with a reason). Pure apart from the per-batch lookup
//! prefetch, so a row rejected today and retried tomorrow goes through exactly the same code.

use crate::engine::data::spec::{DataStep, FieldSpec, RunValue};
use crate::engine::db::DbTx;
use crate::engine::store::{NewReject, RejectStore};
use crate::engine::transform::{LookupSpec, OnError, TableLookup, Transform, normalized};
use crate::engine::validate::{Level, Rule, Validator, is_secret_field};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// A page of source rows with their column names.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    pub columns: Arc<Vec<String>>,
    pub rows: Vec<Vec<Value>>,
    /// Cells the reader could not decode without loss, by row index: such a row is a reject.
    pub issues: Vec<(usize, crate::engine::decode::CellIssue)>,
    /// `[[embed]]`: the page's child rows, one entry per embed (empty when the step has none).
    pub embeds: Arc<Vec<crate::engine::data::embed::EmbedRows>>,
}

impl SourceBatch {
    pub fn new(columns: Arc<Vec<String>>, rows: Vec<Vec<Value>>) -> SourceBatch {
        SourceBatch {
            columns,
            rows,
            issues: Vec::new(),
            embeds: Arc::default(),
        }
    }
}

struct CompiledField {
    spec: FieldSpec,
    validator: Validator,
    references: Vec<(String, Level)>,
    /// `matches_source` checks: (source column, level, null on warning).
    matches: Vec<(String, Level, bool)>,
    /// Index into the target columns.
    column: usize,
    /// Path inside a JSON document column; empty for a plain column.
    path: Vec<String>,
    secret: bool,
}

/// Where `store_file` puts bytes: the project folder, the project's buckets (folders resolved,
/// limits), and whether to write (not in dry runs).
#[derive(Debug, Clone)]
pub struct FileStore {
    pub root: std::path::PathBuf,
    pub write: bool,
    pub buckets: std::collections::BTreeMap<String, crate::engine::data::bucket::Bucket>,
}

impl FileStore {
    /// The file store of a project: its folder and its `[buckets.NAME]`.
    pub fn for_project(config: &crate::engine::config::Config, write: bool) -> FileStore {
        FileStore {
            root: config.dir.clone(),
            write,
            buckets: crate::engine::data::bucket::buckets_of(config),
        }
    }
}

/// A file `store_file` accepted for a row, written only once the whole row is accepted, so a
/// row rejected by a later field (or a bucket limit) leaves nothing in the folder.
struct PendingFile {
    field: String,
    folder: std::path::PathBuf,
    digest: String,
    bytes: Vec<u8>,
}

/// Why `store_file` did not give a key: a bucket limit (rule `bucket`), or anything else (rule
/// `store_file`).
enum FileRefusal {
    Limit(String),
    Other(String),
}

pub struct CompiledStep {
    pub file_store: Option<FileStore>,
    pub spec: DataStep,
    pub version: String,
    pub source_name: String,
    pub map_name: Option<String>,
    pub target_columns: Vec<String>,
    fields: Vec<CompiledField>,
    /// The first (for most steps the only) keyset column.
    pub key_column: String,
    /// Every keyset column, in `ORDER BY` order.
    pub key_columns: Vec<String>,
    pub id_key_column: String,
    /// The run writing the rows, for `run = "id"` fields (set by whoever runs the step: a
    /// run, or a `rejects retry`, which is a run of its own).
    pub run_id: Option<String>,
    /// `[target] empty_json_as_null` as indexes into the target columns.
    empty_json_as_null: Vec<usize>,
    /// Column types of the tables table lookups search, read once per step.
    lookup_tables: Mutex<HashMap<String, HashMap<String, String>>>,
    /// `[[embed]]`, compiled.
    pub(crate) embeds: Vec<crate::engine::data::embed::CompiledEmbed>,
    /// A collection step's per-document finishing (`[target] collection`).
    pub collection: Option<crate::engine::data::collection::CollectionTarget>,
}

/// Per-batch answers of the ID map: `map -> legacy key -> new id`, and the keys that are
/// waiting in the reject store; and of table lookups: per (field, transform) position, the
/// answer for each trimmed input that found something or waits (an input without an answer
/// matched nothing).
#[derive(Default, Debug)]
pub struct LookupCache {
    found: HashMap<String, HashMap<String, String>>,
    waiting: HashMap<String, HashSet<String>>,
    table: HashMap<(usize, usize), HashMap<String, TableAnswer>>,
}

/// What a table lookup found for one input.
#[derive(Debug, Clone, PartialEq)]
enum TableAnswer {
    /// Exactly one row: its `column`.
    Found(Value),
    /// Two or more rows by the alternative `by`.
    Ambiguous { count: usize, by: String },
    /// Nothing in the target, but an open reject of `waits_for` with this source key holds it.
    Waiting(String),
}

/// Values per IN list of a table lookup: a whole batch at the default batch size.
const LOOKUP_CHUNK: usize = 5000;

pub enum Processed {
    Write {
        key: String,
        values: Vec<Value>,
        new_id: Option<String>,
        warnings: Vec<NewReject>,
    },
    Reject(NewReject),
}

/// The pseudo-map under which steps without `[id_map]` record the natural keys they wrote.
pub fn written_log_map(version: &str) -> String {
    format!("@{version}")
}

impl CompiledStep {
    pub fn compile(version: &str, spec: DataStep) -> Result<CompiledStep> {
        let target_columns = spec.target_columns();
        let mut fields = Vec::new();
        for f in &spec.fields {
            let validator = Validator::compile(&f.validate).map_err(|e| eyre!("field '{}': {e}", f.target))?;
            let mut parts = f.target.split('.');
            let top = parts.next().unwrap_or(&f.target).to_string();
            let path: Vec<String> = parts.map(|s| s.to_string()).collect();
            let column = target_columns
                .iter()
                .position(|c| *c == top)
                .ok_or_else(|| eyre!("field '{}' has no column", f.target))?;
            let references = f
                .validate
                .iter()
                .filter_map(|c| match &c.rule {
                    Rule::ReferenceExists { map } => Some((map.clone(), c.level)),
                    _ => None,
                })
                .collect();
            let matches = f
                .validate
                .iter()
                .filter_map(|c| match &c.rule {
                    Rule::MatchesSource { column } => Some((column.clone(), c.level, c.null_on_warning)),
                    _ => None,
                })
                .collect();
            let secret = is_secret_field(&f.target) || f.source.as_deref().is_some_and(is_secret_field);
            fields.push(CompiledField {
                spec: f.clone(),
                validator,
                references,
                matches,
                column,
                path,
                secret,
            });
        }
        let empty_json_as_null = spec
            .target
            .empty_json_as_null
            .iter()
            .map(|c| {
                target_columns
                    .iter()
                    .position(|t| t == c)
                    .ok_or_else(|| eyre!("[target] empty_json_as_null names '{c}', which no field writes"))
            })
            .collect::<Result<Vec<usize>>>()?;
        let embeds = crate::engine::data::embed::compile(&spec, &target_columns)?;
        let key_columns = spec.source.key.columns();
        let key_column = key_columns.first().cloned().unwrap_or_default();
        let id_key_column = spec
            .id_map
            .as_ref()
            .and_then(|m| m.key.clone())
            .unwrap_or_else(|| key_column.clone());
        let collection = match spec.target.collection {
            Some(_) => Some(crate::engine::data::collection::CollectionTarget::compile(
                &spec.target.permissions,
                &spec.target.document_key,
                spec.target.max_document_bytes,
                &target_columns,
            )?),
            None => None,
        };
        Ok(CompiledStep {
            collection,
            file_store: None,
            version: version.to_string(),
            source_name: spec.source_name(),
            map_name: spec.map_name(),
            target_columns,
            fields,
            key_column,
            key_columns,
            id_key_column,
            run_id: None,
            empty_json_as_null,
            lookup_tables: Mutex::new(HashMap::new()),
            embeds,
            spec,
        })
    }

    pub fn column_index(columns: &[String], name: &str) -> Option<usize> {
        columns
            .iter()
            .position(|c| c == name)
            .or_else(|| columns.iter().position(|c| c.eq_ignore_ascii_case(name)))
    }

    /// Every source column the step reads: keys, identity, field sources, references and
    /// `matches_source` columns, each once, in first-use order.
    pub fn read_columns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let names = self
            .key_columns
            .iter()
            .map(|s| s.as_str())
            .chain(std::iter::once(self.id_key_column.as_str()))
            .chain(self.fields.iter().filter_map(|f| f.spec.source.as_deref()))
            .chain(self.spec.source.references.iter().map(|r| r.column.as_str()))
            .chain(self.fields.iter().flat_map(|f| f.matches.iter().map(|m| m.0.as_str())))
            .chain(self.fields.iter().flat_map(|f| {
                f.spec.transforms.iter().filter_map(|t| match t {
                    Transform::ConfigValue(c) => Some(c.key_column.as_str()),
                    _ => None,
                })
            }));
        for n in names {
            if !out.iter().any(|o| o == n) {
                out.push(n.to_string());
            }
        }
        out
    }

    /// The keyset position of a row: the key's value, or a JSON array for a composite key.
    /// `None` when a key column is NULL (which the reader refuses).
    pub fn page_key(&self, columns: &[String], row: &[Value]) -> Option<Value> {
        let mut vals = Vec::with_capacity(self.key_columns.len());
        for k in &self.key_columns {
            let v = Self::column_index(columns, k).and_then(|i| row.get(i))?;
            if v.is_null() {
                return None;
            }
            vals.push(v.clone());
        }
        if vals.len() == 1 {
            vals.pop()
        } else {
            Some(Value::Json(serde_json::Value::Array(
                vals.iter().map(|v| v.to_json()).collect(),
            )))
        }
    }

    /// Check that the source has the columns the step reads; says which is missing.
    pub fn check_source_columns(&self, columns: &[String]) -> Result<()> {
        let needed = self.read_columns();
        for n in &needed {
            if Self::column_index(columns, n).is_none() {
                return Err(eyre!(
                    "step {}: the source {} has no column '{n}' (it has: {})",
                    self.version,
                    self.source_name,
                    columns.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Resolve every lookup and reference of a batch with a few queries instead of one per row.
    /// Whether rows can be decided without asking the target: no lookups and no references.
    /// Such a step's pages are decided ahead of the writer, overlapping the target's work.
    pub fn decides_alone(&self) -> bool {
        self.spec.source.references.is_empty()
            && self.fields.iter().all(|f| {
                f.references.is_empty() && !f.spec.transforms.iter().any(|t| matches!(t, Transform::Lookup(_)))
            })
    }

    /// Whether nothing this step writes can change what its lookups answer: no lookup in its
    /// own ID map, its own target table, or its own rejects (a lookup `waits_for` its source).
    /// Such a step's lookups can be answered ahead of the writer from committed state, on a
    /// connection of their own, exactly as the batch's transaction would answer them.
    pub fn looks_up_only_elsewhere(&self) -> bool {
        let own = |m: &str| self.map_name.as_deref() == Some(m) || m == self.source_name;
        self.spec.source.references.iter().all(|r| !own(&r.map))
            && self.fields.iter().all(|f| {
                f.references.iter().all(|(m, _)| !own(m))
                    && f.spec.transforms.iter().all(|t| match t {
                        Transform::Lookup(LookupSpec::Map(l)) => !own(&l.map),
                        Transform::Lookup(LookupSpec::Table(l)) => {
                            !l.table.eq_ignore_ascii_case(&self.spec.target.table)
                                && l.waits_for.as_deref().is_none_or(|w| !own(w))
                        }
                        _ => true,
                    })
            })
    }

    pub async fn prefetch(&self, tx: &mut DbTx, batch: &SourceBatch) -> Result<LookupCache> {
        let mut wanted: HashMap<String, HashSet<String>> = HashMap::new();
        for f in &self.fields {
            let Some(src) = f.spec.source.as_deref() else { continue };
            let Some(idx) = Self::column_index(&batch.columns, src) else {
                continue;
            };
            let lookup_at = f
                .spec
                .transforms
                .iter()
                .position(|t| matches!(t, Transform::Lookup(LookupSpec::Map(_))));
            let maps: Vec<String> = match lookup_at {
                Some(i) => match &f.spec.transforms[i] {
                    Transform::Lookup(LookupSpec::Map(l)) => vec![l.map.clone()],
                    _ => vec![],
                },
                None => vec![],
            }
            .into_iter()
            .chain(f.references.iter().map(|r| r.0.clone()))
            .collect();
            if maps.is_empty() {
                continue;
            }
            let before = lookup_at.unwrap_or(f.spec.transforms.len());
            for row in &batch.rows {
                let mut v = row.get(idx).cloned().unwrap_or(Value::Null);
                for t in &f.spec.transforms[..before] {
                    if matches!(t, Transform::Lookup(_) | Transform::NewId) {
                        break;
                    }
                    v = match t.apply(v.clone()) {
                        Ok(o) => o.value,
                        Err(_) => break,
                    };
                }
                if let Some(k) = v.to_text().filter(|k| !k.trim().is_empty()) {
                    for m in &maps {
                        wanted.entry(m.clone()).or_default().insert(k.clone());
                    }
                }
            }
        }
        for r in &self.spec.source.references {
            let Some(idx) = Self::column_index(&batch.columns, &r.column) else {
                continue;
            };
            for row in &batch.rows {
                if let Some(k) = row.get(idx).and_then(|v| v.to_text()).filter(|k| !k.trim().is_empty()) {
                    wanted.entry(r.map.clone()).or_default().insert(k);
                }
            }
        }
        let mut cache = LookupCache::default();
        for (map, keys) in wanted {
            let keys: Vec<String> = keys.into_iter().collect();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let found = crate::engine::data::writer::mapped_ids(tx, &map, &refs).await?;
            let missing: Vec<String> = keys.iter().filter(|k| !found.contains_key(*k)).cloned().collect();
            if !missing.is_empty() {
                let waiting = RejectStore::open_keys(tx, &map, &missing).await?;
                cache.waiting.insert(map.clone(), waiting);
            }
            cache.found.insert(map, found);
        }
        for (fi, f) in self.fields.iter().enumerate() {
            for (ti, t) in f.spec.transforms.iter().enumerate() {
                let Transform::Lookup(LookupSpec::Table(l)) = t else {
                    continue;
                };
                let at = f
                    .spec
                    .source
                    .as_deref()
                    .and_then(|s| Self::column_index(&batch.columns, s));
                let inputs: HashSet<String> = batch
                    .rows
                    .iter()
                    .filter_map(|row| self.lookup_input(f, at.and_then(|i| row.get(i)), ti))
                    .collect();
                let answers = self.resolve_table_lookup(tx, l, inputs).await?;
                cache.table.insert((fi, ti), answers);
            }
        }
        Ok(cache)
    }

    /// The trimmed text a field's table lookup at transform `at` gets for a row: the source
    /// cell (or the field's constant) through the transforms before it. `None` for NULL or
    /// blank (the lookup then gives NULL) and when an earlier transform refuses the value
    /// (the row is rejected before it gets here).
    fn lookup_input(&self, f: &CompiledField, cell: Option<&Value>, at: usize) -> Option<String> {
        let mut v = match (&f.spec.source, &f.spec.value) {
            (Some(_), _) => cell.cloned().unwrap_or(Value::Null),
            (None, Some(lit)) => lit.to_value(),
            (None, None) => return None,
        };
        for t in &f.spec.transforms[..at] {
            if matches!(t, Transform::Lookup(_) | Transform::NewId | Transform::StoreFile(_)) {
                return None;
            }
            v = t.apply(v).ok()?.value;
        }
        v.to_text().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
    }

    /// Answer a table lookup for a batch's inputs: one statement per alternative (for the
    /// inputs earlier alternatives did not find), then one per alternative with a
    /// `source_column` against the reject store for the inputs nothing found.
    async fn resolve_table_lookup(
        &self,
        tx: &mut DbTx,
        l: &TableLookup,
        inputs: HashSet<String>,
    ) -> Result<HashMap<String, TableAnswer>> {
        let mut answers = HashMap::new();
        let mut pending: Vec<String> = inputs.into_iter().collect();
        if pending.is_empty() {
            return Ok(answers);
        }
        pending.sort();
        let types = self.lookup_table_columns(tx, &l.table).await?;
        let has = |c: &str| types.contains_key(c) || types.keys().any(|k| k.eq_ignore_ascii_case(c));
        if !has(&l.column) {
            return Err(eyre!(
                "step {}: lookup: the target table {} has no column {}",
                self.version,
                l.table,
                l.column
            ));
        }
        let d = tx.dialect();
        for by in &l.by {
            if pending.is_empty() {
                break;
            }
            if !has(&by.column) {
                return Err(eyre!(
                    "step {}: lookup: the target table {} has no column {} (named in by)",
                    self.version,
                    l.table,
                    by.column
                ));
            }
            let wanted = group_by_normalized(&pending, by.normalize);
            let values: Vec<String> = wanted.keys().cloned().collect();
            // Compared as text: a non-text key column is cast (an integer column would refuse
            // a text parameter on PostgreSQL).
            let column_type = types
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&by.column))
                .map(|(_, t)| t.as_str())
                .unwrap_or("");
            let by_expr = if d.is_text_type(column_type) {
                d.quote_ident(&by.column)
            } else {
                d.as_text(&d.quote_ident(&by.column))
            };
            let mut hits: HashMap<String, Vec<Value>> = HashMap::new();
            for chunk in values.chunks(LOOKUP_CHUNK) {
                let mut sql = format!(
                    "SELECT {by_expr}, {} FROM {} WHERE {by_expr} IN (",
                    d.quote_ident(&l.column),
                    d.quote_table(&l.table)
                );
                let mut params = Vec::with_capacity(chunk.len());
                for (i, v) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    params.push(Value::Text(v.clone()));
                    sql.push_str(&format!("${}", params.len()));
                }
                sql.push(')');
                for r in tx.fetch_all(&sql, &params).await?.rows {
                    // Kept only on an exact match, so a case-insensitive collation (MySQL)
                    // finds what the other targets find.
                    if let Some(k) = r.first().and_then(|v| v.to_text())
                        && wanted.contains_key(&k)
                    {
                        hits.entry(k)
                            .or_default()
                            .push(r.get(1).cloned().unwrap_or(Value::Null));
                    }
                }
            }
            let mut still = Vec::new();
            for (value, inputs) in wanted {
                let answer = match hits.remove(&value) {
                    Some(mut rows) if rows.len() == 1 => TableAnswer::Found(rows.remove(0)),
                    Some(rows) => TableAnswer::Ambiguous {
                        count: rows.len(),
                        by: by.column.clone(),
                    },
                    None => {
                        still.extend(inputs);
                        continue;
                    }
                };
                for i in inputs {
                    answers.insert(i, answer.clone());
                }
            }
            pending = still;
        }
        if let Some(source) = &l.waits_for {
            for by in &l.by {
                let Some(column) = &by.source_column else { continue };
                if pending.is_empty() {
                    break;
                }
                let wanted = group_by_normalized(&pending, by.normalize);
                let values: Vec<String> = wanted.keys().cloned().collect();
                let keys = RejectStore::open_by_row_value(tx, source, column, by.normalize, &values).await?;
                let mut still = Vec::new();
                for (value, inputs) in wanted {
                    match keys.get(&value) {
                        Some(key) => {
                            for i in inputs {
                                answers.insert(i, TableAnswer::Waiting(key.clone()));
                            }
                        }
                        None => still.extend(inputs),
                    }
                }
                pending = still;
            }
        }
        Ok(answers)
    }

    /// Column name -> type of a table lookup's table (read once per step; a missing table is
    /// an error naming it).
    async fn lookup_table_columns(&self, tx: &mut DbTx, table: &str) -> Result<HashMap<String, String>> {
        if let Some(t) = self.lookup_tables.lock().ok().and_then(|m| m.get(table).cloned()) {
            return Ok(t);
        }
        let types = tx.table_columns(table).await?;
        if types.is_empty() {
            return Err(eyre!("step {}: lookup: the target has no table {table}", self.version));
        }
        if let Ok(mut m) = self.lookup_tables.lock() {
            m.insert(table.to_string(), types.clone());
        }
        Ok(types)
    }

    /// A value for one target field entered by a person: the field's pure transforms and its
    /// validations, as if it had come from the source.
    pub fn field_value(&self, target: &str, v: Value, today: chrono::NaiveDate) -> Result<Value, String> {
        let f = self
            .fields
            .iter()
            .find(|f| f.spec.target == target)
            .ok_or_else(|| format!("no field {target}"))?;
        let mut v = v;
        for t in &f.spec.transforms {
            if matches!(t, Transform::Lookup(_) | Transform::NewId) {
                continue;
            }
            v = t.apply(v).map_err(|e| e.reason)?.value;
        }
        if let Some(viol) = f
            .validator
            .check(target, &v, today)
            .into_iter()
            .find(|x| x.level == Level::Error)
        {
            return Err(viol.reason);
        }
        Ok(v)
    }

    pub fn row_json(columns: &[String], row: &[Value]) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (c, v) in columns.iter().zip(row) {
            m.insert(c.clone(), v.to_json());
        }
        serde_json::Value::Object(m)
    }

    /// Where each field's source column sits in a batch's columns (looked up once per batch,
    /// not per row), followed by the identity column.
    /// Laid out as: one entry per field, the identity column, one per source reference, then
    /// one per `matches_source` check in field order.
    pub fn layout(&self, columns: &[String]) -> Vec<Option<usize>> {
        self.fields
            .iter()
            .map(|f| f.spec.source.as_deref().and_then(|s| Self::column_index(columns, s)))
            .chain(std::iter::once(Self::column_index(columns, &self.id_key_column)))
            .chain(
                self.spec
                    .source
                    .references
                    .iter()
                    .map(|r| Self::column_index(columns, &r.column)),
            )
            .chain(
                self.fields
                    .iter()
                    .flat_map(|f| f.matches.iter().map(|m| Self::column_index(columns, &m.0))),
            )
            .collect()
    }

    /// Decide one row. `layout` comes from `layout(columns)`.
    pub fn process(
        &self,
        columns: &[String],
        layout: &[Option<usize>],
        row: &[Value],
        cache: &LookupCache,
        today: chrono::NaiveDate,
    ) -> Processed {
        self.process_embedded(columns, layout, row, &[], cache, today)
    }

    /// Decide one row of a page whose `[[embed]]` child rows are `embeds`
    /// (`SourceBatch::embeds`).
    pub fn process_embedded(
        &self,
        columns: &[String],
        layout: &[Option<usize>],
        row: &[Value],
        embeds: &[crate::engine::data::embed::EmbedRows],
        cache: &LookupCache,
        today: chrono::NaiveDate,
    ) -> Processed {
        // Rejects are filed under the row's legacy identity (the ID-map key), which is what
        // other rows' lookups name when they wait for it.
        let identity = self.fields.len();
        let refs_at = identity + 1;
        let mut matches_at = refs_at + self.spec.source.references.len();
        let key = layout
            .get(identity)
            .copied()
            .flatten()
            .and_then(|i| row.get(i))
            .and_then(|v| v.to_text())
            .unwrap_or_default();
        let reject = |field: &str, rule: &str, reason: String, waits_for: Option<(String, String)>| {
            Processed::Reject(NewReject {
                source_key: key.clone(),
                row: Self::row_json(columns, row),
                field: Some(field.to_string()),
                rule: rule.to_string(),
                reason,
                warning: false,
                waits_for,
            })
        };
        let mut warnings: Vec<NewReject> = Vec::new();
        let warn = |field: &str, rule: &str, reason: String| NewReject {
            source_key: key.clone(),
            row: serde_json::Value::Null,
            field: Some(field.to_string()),
            rule: rule.to_string(),
            reason,
            warning: true,
            waits_for: None,
        };
        let mut pending_files: Vec<PendingFile> = Vec::new();
        let mut out = vec![Value::Null; self.target_columns.len()];
        let new_id = self.spec.id_map.as_ref().map(|_| uuid::Uuid::now_v7().to_string());
        if let (Some(m), Some(id)) = (&self.spec.id_map, &new_id)
            && let Some(i) = self.target_columns.iter().position(|c| *c == m.column)
        {
            out[i] = Value::Text(id.clone());
        }
        for (ri, r) in self.spec.source.references.iter().enumerate() {
            let Some(k) = layout
                .get(refs_at + ri)
                .copied()
                .flatten()
                .and_then(|i| row.get(i))
                .and_then(|v| v.to_text())
                .filter(|k| !k.trim().is_empty())
            else {
                continue;
            };
            if cache.found.get(&r.map).is_some_and(|m| m.contains_key(&k)) {
                continue;
            }
            if cache.waiting.get(&r.map).is_some_and(|w| w.contains(&k)) {
                return reject(
                    &r.column,
                    "waiting",
                    format!("waiting for {} {k}", r.map),
                    Some((r.map.clone(), k)),
                );
            }
            return reject(
                &r.column,
                "reference_exists",
                format!("{}: no {} with legacy id {k}", r.column, r.map),
                None,
            );
        }
        for (fi, f) in self.fields.iter().enumerate() {
            let name = f.spec.target.as_str();
            let mut v = match (&f.spec.source, &f.spec.value) {
                (Some(_), _) => layout
                    .get(fi)
                    .copied()
                    .flatten()
                    .and_then(|i| row.get(i))
                    .cloned()
                    .unwrap_or(Value::Null),
                (None, Some(lit)) => lit.to_value(),
                (None, None) => match (f.spec.run, &self.run_id) {
                    (Some(RunValue::Id), Some(id)) => Value::Text(id.clone()),
                    _ => Value::Null,
                },
            };
            for (ti, t) in f.spec.transforms.iter().enumerate() {
                match t {
                    Transform::Lookup(LookupSpec::Table(l)) => {
                        let Some(k) = v.to_text().map(|k| k.trim().to_string()).filter(|k| !k.is_empty()) else {
                            v = Value::Null;
                            continue;
                        };
                        match cache.table.get(&(fi, ti)).and_then(|m| m.get(&k)) {
                            Some(TableAnswer::Found(id)) => v = id.clone(),
                            Some(TableAnswer::Ambiguous { count, by }) => {
                                return reject(name, "lookup", l.ambiguous_reason(&k, *count, by), None);
                            }
                            Some(TableAnswer::Waiting(key)) => {
                                let source = l.waits_for.clone().unwrap_or_default();
                                return reject(
                                    name,
                                    "waiting",
                                    format!("waiting for {source} {key}"),
                                    Some((source, key.clone())),
                                );
                            }
                            None => {
                                let reason = l.missing_reason(&k);
                                match l.on_missing {
                                    OnError::Reject => return reject(name, "lookup", reason, None),
                                    OnError::NullWarn => {
                                        warnings.push(warn(name, "lookup", format!("{name}: {reason}; set to NULL")));
                                        v = Value::Null;
                                    }
                                    OnError::KeepWarn => {
                                        warnings.push(warn(name, "lookup", format!("{name}: {reason}; kept as is")))
                                    }
                                }
                            }
                        }
                    }
                    Transform::Lookup(LookupSpec::Map(l)) => {
                        let Some(k) = v.to_text().filter(|k| !k.trim().is_empty()) else {
                            v = Value::Null;
                            continue;
                        };
                        if let Some(id) = cache.found.get(&l.map).and_then(|m| m.get(&k)) {
                            v = Value::Text(id.clone());
                            continue;
                        }
                        if cache.waiting.get(&l.map).is_some_and(|w| w.contains(&k)) {
                            return reject(
                                name,
                                "waiting",
                                format!("waiting for {} {k}", l.map),
                                Some((l.map.clone(), k)),
                            );
                        }
                        let reason = format!("{name}: no {} with legacy id {k}", l.map);
                        match l.on_missing {
                            OnError::Reject => return reject(name, "lookup", reason, None),
                            OnError::NullWarn => {
                                warnings.push(warn(name, "lookup", format!("{reason}; set to NULL")));
                                v = Value::Null;
                            }
                            OnError::KeepWarn => warnings.push(warn(name, "lookup", format!("{reason}; kept as is"))),
                        }
                    }
                    Transform::NewId => v = Value::Text(uuid::Uuid::now_v7().to_string()),
                    Transform::ConfigValue(spec) => {
                        // Typed by the row's setting key, another column of the same row.
                        let old_key = Self::column_index(columns, &spec.key_column)
                            .and_then(|i| row.get(i))
                            .and_then(|k| k.to_text());
                        v = match spec.typed(old_key.as_deref(), v) {
                            Ok(typed) => typed,
                            Err(reason) => return reject(name, "config_type", format!("{name}: {reason}"), None),
                        };
                    }
                    Transform::StoreFile(spec) => {
                        match stage_file(
                            self.file_store.as_ref(),
                            spec,
                            std::mem::replace(&mut v, Value::Null),
                            name,
                        ) {
                            Ok((key, file)) => {
                                v = key;
                                pending_files.extend(file);
                            }
                            Err(FileRefusal::Limit(reason)) => return reject(name, "bucket", reason, None),
                            Err(FileRefusal::Other(e)) => {
                                return reject(name, "store_file", format!("{name}: {e}"), None);
                            }
                        }
                    }
                    _ => match t.apply(v) {
                        Ok(o) => {
                            if let Some(w) = o.warning {
                                warnings.push(warn(
                                    name,
                                    t.name(),
                                    if f.secret {
                                        format!("{name}: {} failed (value redacted)", t.name())
                                    } else {
                                        format!("{name}: {w}")
                                    },
                                ));
                            }
                            v = o.value;
                        }
                        Err(e) => {
                            let reason = if f.secret {
                                format!("{name}: {} failed (value redacted)", t.name())
                            } else {
                                format!("{name}: {}", e.reason)
                            };
                            return reject(name, t.name(), reason, None);
                        }
                    },
                }
            }
            for viol in f.validator.check(name, &v, today) {
                if viol.level == Level::Error {
                    return reject(name, viol.rule, viol.reason, None);
                }
                warnings.push(warn(name, viol.rule, viol.reason));
                if viol.null_value {
                    v = Value::Null;
                }
            }
            for (col, level, null_it) in &f.matches {
                let raw = layout
                    .get(matches_at)
                    .copied()
                    .flatten()
                    .and_then(|i| row.get(i))
                    .and_then(|x| x.to_text())
                    .map(|t| t.trim().to_lowercase());
                let mine = v.to_text().map(|t| t.trim().to_lowercase());
                if raw.is_some() && raw != mine {
                    let reason = format!(
                        "{name}: the source's {col} {} does not match {}",
                        raw.unwrap_or_default(),
                        mine.unwrap_or_default()
                    );
                    if *level == Level::Error {
                        return reject(name, "matches_source", reason, None);
                    }
                    warnings.push(warn(name, "matches_source", reason));
                    if *null_it {
                        v = Value::Null;
                    }
                }
                matches_at += 1;
            }
            for (map, level) in &f.references {
                let Some(k) = v.to_text().filter(|k| !k.trim().is_empty()) else {
                    continue;
                };
                if cache.found.get(map).is_some_and(|m| m.contains_key(&k)) {
                    continue;
                }
                if cache.waiting.get(map).is_some_and(|w| w.contains(&k)) {
                    return reject(
                        name,
                        "waiting",
                        format!("waiting for {map} {k}"),
                        Some((map.clone(), k)),
                    );
                }
                let reason = format!("{name}: no {map} with legacy id {k}");
                if *level == Level::Error {
                    return reject(name, "reference_exists", reason, None);
                }
                warnings.push(warn(name, "reference_exists", reason));
            }
            if f.path.is_empty() {
                out[f.column] = v;
            } else {
                set_path(&mut out[f.column], &f.path, v.to_json());
            }
        }
        let parent = Self::column_index(columns, &self.key_column)
            .and_then(|i| row.get(i))
            .and_then(|v| v.to_text())
            .unwrap_or_default();
        match crate::engine::data::embed::place(&self.embeds, &parent, embeds, &mut out, self.run_id.as_deref(), today)
        {
            Ok(notes) => warnings.extend(notes.into_iter().map(|(f, rule, reason)| warn(&f, &rule, reason))),
            Err(r) => return reject(&r.field, &r.rule, r.reason, None),
        }
        for &c in &self.empty_json_as_null {
            if let Value::Json(doc) = &out[c]
                && every_leaf_null(doc)
            {
                out[c] = Value::Null;
            }
        }
        // A collection's document is complete only now (ids, permissions, size).
        if let Some(doc) = &self.collection
            && let Err(r) = doc.finish_document(&mut out)
        {
            return reject(&r.field, r.rule, r.reason, None);
        }
        // Last, once nothing else can reject the row: its files go into their folders.
        for f in pending_files {
            if let Err(e) = f.write() {
                return reject(&f.field, "store_file", format!("{}: {e}", f.field), None);
            }
        }
        Processed::Write {
            key,
            values: out,
            new_id,
            warnings,
        }
    }
}

/// The inputs of a lookup alternative by their normalized form (several inputs can share one:
/// ` mrn-1` and `MRN-1`).
fn group_by_normalized(
    inputs: &[String],
    normalize: Option<crate::engine::transform::Normalize>,
) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for i in inputs {
        out.entry(normalized(i, normalize)).or_default().push(i.clone());
    }
    out
}

/// A JSON document with nothing in it: NULL, or objects whose every value is (recursively).
fn every_leaf_null(doc: &serde_json::Value) -> bool {
    match doc {
        serde_json::Value::Null => true,
        serde_json::Value::Object(m) => m.values().all(every_leaf_null),
        _ => false,
    }
}

impl CompiledStep {
    /// Remove temporary files a killed run left in this step's document stores (written but
    /// not yet renamed to their digest). Named `.<digest>.<pid>`; only a dead pid's are taken.
    pub fn sweep_store_temp_files(&self) {
        let Some(store) = self.file_store.as_ref().filter(|s| s.write) else {
            return;
        };
        for f in &self.fields {
            for t in &f.spec.transforms {
                if let Transform::StoreFile(spec) = t
                    && let Some((_, folder)) =
                        crate::engine::data::bucket::store_folder(&store.root, &store.buckets, spec)
                {
                    sweep_dir(&folder);
                }
            }
        }
    }
}

fn sweep_dir(dir: &std::path::Path) {
    let Ok(shards) = std::fs::read_dir(dir) else { return };
    for shard in shards.flatten() {
        let Ok(files) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix('.')
                .and_then(|n| n.rsplit_once('.'))
                .and_then(|(_, pid)| pid.parse::<i32>().ok())
            else {
                continue;
            };
            if !pid_alive(pid) {
                if let Err(e) = std::fs::remove_file(f.path()) {
                    tracing::warn!("cannot remove the partial file {}: {e}", f.path().display());
                } else {
                    tracing::info!("removed the partial file {} of a killed run", f.path().display());
                }
            }
        }
    }
}

fn pid_alive(pid: i32) -> bool {
    if pid == std::process::id() as i32 {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists; no signal is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The storage key (`ab/abcdef…`) of bytes for `store_file`, after the bucket's limits; the
/// file itself is handed back to be written once the row is accepted (none in a dry run).
/// Writing is idempotent: the same bytes have the same key. NULL stays NULL.
fn stage_file(
    store: Option<&FileStore>,
    spec: &crate::engine::transform::StoreFileSpec,
    v: Value,
    field: &str,
) -> Result<(Value, Option<PendingFile>), FileRefusal> {
    use sha2::{Digest, Sha256};
    let bytes: Vec<u8> = match v {
        Value::Null => return Ok((Value::Null, None)),
        Value::Bytes(b) => b.bytes,
        Value::Text(t) => t.into_bytes(),
        _ => return Err(FileRefusal::Other("store_file expects bytes".into())),
    };
    let store = store.ok_or_else(|| FileRefusal::Other("store_file needs a project folder".into()))?;
    let (_, folder) =
        crate::engine::data::bucket::store_folder(&store.root, &store.buckets, spec).ok_or_else(|| {
            FileRefusal::Other(format!(
                "no bucket named '{}' in cutover.toml",
                spec.bucket.as_deref().unwrap_or_default()
            ))
        })?;
    if let Some(bucket) = spec.bucket.as_ref().and_then(|b| store.buckets.get(b))
        && let Some(reason) = bucket.refusal(&bytes)
    {
        return Err(FileRefusal::Limit(reason));
    }
    let digest = crate::engine::value::hex(&Sha256::digest(&bytes));
    let key = Value::Text(format!("{}/{digest}", &digest[..2]));
    let file = store.write.then(|| PendingFile {
        field: field.to_string(),
        folder,
        digest,
        bytes,
    });
    Ok((key, file))
}

impl PendingFile {
    /// Write the file under its digest; an existing file is left alone.
    fn write(&self) -> Result<(), String> {
        let parent = self.folder.join(&self.digest[..2]);
        let path = parent.join(&self.digest);
        if path.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        // Write then rename, so a crash never leaves a half-written file under its digest. The
        // temporary name is unique per write (two rows of a batch may carry the same bytes) and
        // ends in the pid, which the sweep of a later run reads.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = parent.join(format!(".{}-{n}.{}", self.digest, std::process::id()));
        std::fs::write(&tmp, &self.bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot store {}: {e}", path.display())
        })
    }
}

/// Put `val` at `path` inside the JSON document `doc`, creating objects on the way.
fn set_path(doc: &mut Value, path: &[String], val: serde_json::Value) {
    if !matches!(doc, Value::Json(serde_json::Value::Object(_))) {
        *doc = Value::Json(serde_json::Value::Object(serde_json::Map::new()));
    }
    let Value::Json(root) = doc else { return };
    let mut cur = root;
    for (i, p) in path.iter().enumerate() {
        let serde_json::Value::Object(m) = cur else { return };
        if i + 1 == path.len() {
            m.insert(p.clone(), val);
            return;
        }
        cur = m
            .entry(p.clone())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if !cur.is_object() {
            *cur = serde_json::Value::Object(serde_json::Map::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_paths_build_one_document() {
        let mut doc = Value::Null;
        set_path(&mut doc, &["address".into(), "city".into()], serde_json::json!("Oslo"));
        set_path(&mut doc, &["phone".into()], serde_json::json!("+4712345678"));
        assert_eq!(
            doc,
            Value::Json(serde_json::json!({"address": {"city": "Oslo"}, "phone": "+4712345678"}))
        );
    }

    const STEP: &str = r#"
[source]
table = "orders"
key = "_line"

[target]
table = "orders"
natural_key = ["order_number"]
empty_json_as_null = ["details"]

[[fields]]
target = "order_number"
source = "orderNumber"

[[fields]]
target = "patient_id"
source = "patientIdentifier"
transforms = ["trim", { lookup = { table = "patients", column = "id", noun = "patient", waits_for = "patients", by = [
    { column = "mrn", normalize = "upper", source_column = "mrn" },
    { column = "email", normalize = "lower", source_column = "email" },
] } }]

[[fields]]
target = "import_job"
run = "id"

[[fields]]
target = "details.facility"
source = "facility"
transforms = ["trim", "empty_to_null"]

[[fields]]
target = "details.unit.name"
source = "unit"
transforms = ["trim", "empty_to_null"]
"#;

    fn step() -> CompiledStep {
        let mut c = CompiledStep::compile("v1", DataStep::parse(STEP).unwrap()).unwrap();
        c.run_id = Some("run-42".into());
        c
    }

    fn columns() -> Vec<String> {
        ["_line", "orderNumber", "patientIdentifier", "facility", "unit"]
            .into_iter()
            .map(String::from)
            .collect()
    }

    fn row(identifier: &str, facility: &str) -> Vec<Value> {
        vec![
            Value::Int(7),
            Value::Text("O-1".into()),
            Value::Text(identifier.into()),
            Value::Text(facility.into()),
            Value::Text(" ".into()),
        ]
    }

    fn decide(c: &CompiledStep, cache: &LookupCache, r: Vec<Value>) -> Processed {
        let cols = columns();
        let layout = c.layout(&cols);
        c.process(
            &cols,
            &layout,
            &r,
            cache,
            chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        )
    }

    fn cache_with(answers: &[(&str, TableAnswer)]) -> LookupCache {
        let mut cache = LookupCache::default();
        // field 1 (patient_id), transform 1 (after trim)
        cache.table.insert(
            (1, 1),
            answers.iter().map(|(k, a)| (k.to_string(), a.clone())).collect(),
        );
        cache
    }

    fn rejected(p: Processed) -> NewReject {
        match p {
            Processed::Reject(r) => r,
            Processed::Write { values, .. } => panic!("written: {values:?}"),
        }
    }

    /// Lookups are answered ahead of the writer only when nothing the step writes can change
    /// their answer: another step's map or table, not its own map, target table or rejects.
    #[test]
    fn lookups_are_answered_ahead_only_when_they_read_other_steps_work() {
        // `orders` looks up `patients` rows, waiting for the `patients` step's rejects.
        assert!(step().looks_up_only_elsewhere());
        let compile = |toml: &str| CompiledStep::compile("v1", DataStep::parse(toml).unwrap()).unwrap();
        let by_map = |map: &str| {
            compile(&format!(
                r#"
[source]
table = "employees"
key = "id"
[target]
table = "staff"
[id_map]
column = "id"
map = "employees"
[[fields]]
target = "manager_id"
source = "manager_id"
transforms = [{{ lookup = {{ map = "{map}" }} }}]
"#
            ))
        };
        assert!(by_map("departments").looks_up_only_elsewhere());
        assert!(!by_map("employees").looks_up_only_elsewhere(), "its own ID map");
        // The step's own target table, and a lookup waiting for the step's own source rows.
        assert!(!compile(&STEP.replace(r#"table = "patients""#, r#"table = "orders""#)).looks_up_only_elsewhere());
        assert!(
            !compile(&STEP.replace(r#"waits_for = "patients""#, r#"waits_for = "orders""#)).looks_up_only_elsewhere()
        );
    }

    #[test]
    fn table_lookup_answers_become_values_or_rejects() {
        let c = step();
        assert!(!c.decides_alone(), "a table lookup needs the target");
        let cache = cache_with(&[
            ("MRN-1", TableAnswer::Found(Value::Text("uuid-1".into()))),
            (
                "a@x.org",
                TableAnswer::Ambiguous {
                    count: 2,
                    by: "email".into(),
                },
            ),
            ("mrn-9", TableAnswer::Waiting("14".into())),
        ]);
        // The input is trimmed before it is looked up.
        let Processed::Write { values, key, .. } = decide(&c, &cache, row("  MRN-1 ", "Lab A")) else {
            panic!("not written")
        };
        assert_eq!(key, "7");
        assert_eq!(values[1], Value::Text("uuid-1".into()));
        assert_eq!(values[2], Value::Text("run-42".into()), "run = \"id\" is the run's id");
        assert_eq!(
            values[3],
            Value::Json(serde_json::json!({"facility": "Lab A", "unit": {"name": null}}))
        );

        let r = rejected(decide(&c, &cache, row("a@x.org", "")));
        assert_eq!(
            (r.rule.as_str(), r.reason.as_str()),
            ("lookup", "ambiguous: 'a@x.org' matches 2 patients by email")
        );
        assert_eq!(r.waits_for, None);
        assert_eq!(r.source_key, "7");
        assert_eq!(r.row["patientIdentifier"], "a@x.org");

        let r = rejected(decide(&c, &cache, row("mrn-9", "")));
        assert_eq!(
            (r.rule.as_str(), r.reason.as_str()),
            ("waiting", "waiting for patients 14")
        );
        assert_eq!(r.waits_for, Some(("patients".into(), "14".into())));

        let r = rejected(decide(&c, &cache, row("nobody", "")));
        assert_eq!((r.rule.as_str(), r.reason.as_str()), ("lookup", "no patient 'nobody'"));
        assert_eq!(r.field.as_deref(), Some("patient_id"));
    }

    #[test]
    fn a_blank_identifier_looks_up_nothing_and_an_empty_document_is_null() {
        let c = step();
        let Processed::Write { values, .. } = decide(&c, &LookupCache::default(), row("   ", " ")) else {
            panic!("not written")
        };
        assert_eq!(values[1], Value::Null);
        // Every leaf of `details` is NULL: the column is NULL, not {"facility": null, ...}.
        assert_eq!(values[3], Value::Null);
    }

    #[test]
    fn without_a_run_the_run_field_is_null() {
        let mut c = step();
        c.run_id = None;
        let cache = cache_with(&[("X", TableAnswer::Found(Value::Text("u".into())))]);
        let Processed::Write { values, .. } = decide(&c, &cache, row("X", "")) else {
            panic!("not written")
        };
        assert_eq!(values[2], Value::Null);
    }

    #[test]
    fn documents_with_any_value_are_kept() {
        assert!(every_leaf_null(&serde_json::json!({"a": null, "b": {"c": null}})));
        assert!(every_leaf_null(&serde_json::json!({})));
        assert!(!every_leaf_null(&serde_json::json!({"a": null, "b": {"c": ""}})));
        assert!(!every_leaf_null(&serde_json::json!({"a": []})));
        assert!(!every_leaf_null(&serde_json::json!({"a": false})));
    }

    #[test]
    fn inputs_are_grouped_by_their_normalized_form() {
        let g = group_by_normalized(
            &["mrn-1".into(), "MRN-1".into(), "mrn-2".into()],
            Some(crate::engine::transform::Normalize::Upper),
        );
        assert_eq!(g.len(), 2);
        assert_eq!(g["MRN-1"].len(), 2);
    }
}
