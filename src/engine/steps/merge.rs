//! Merge steps: two sources that may describe one entity (side A, side B linking to it). Each
//! A row becomes an entity; each B row whose link names an A row merges into that entity
//! (blank fields filled from B, compared fields checked, every disagreement a discrepancy for
//! review); every other B row becomes an entity of its own. Both sides' legacy keys map to the
//! entity in the ID map. Nothing here knows about clinics: the step file says it all.

use crate::engine::clock::today;
use crate::engine::data::pipeline::{CompiledStep, Processed, SourceBatch};
use crate::engine::data::reader::SourceReader;
use crate::engine::data::spec::{DataStep, DupPolicy, FieldSpec, IdMapSpec, SourceSpec, TargetSpec};
use crate::engine::data::writer::{IdMapEntry, TargetWriter, ident, insert_id_map};
use crate::engine::db::{Db, DbTx};
use crate::engine::exec::batch::{
    BatchPlan, BatchStep, EVENTS_PER_BATCH, FlagNote, PageOutcome, RejectNote, run_batches,
};
use crate::engine::exec::{RunCtx, StepError, StepResult};
use crate::engine::project::StepDef;
use crate::engine::protocol::Counts;
use crate::engine::source::read_ahead::ReadAhead;
use crate::engine::source::table::count_source;
use crate::engine::store::{self, DISCREPANCIES, NewReject, RejectStore};
use crate::engine::transform::{Literal, Transform};
use crate::engine::validate::Check;
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SideSpec {
    pub table: Option<String>,
    pub query: Option<String>,
    pub key: String,
    pub name: Option<String>,
    /// Side B only: the column naming side A's key.
    pub link: Option<String>,
    #[serde(default)]
    pub references: Vec<crate::engine::data::spec::SourceReference>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MergeTarget {
    pub table: String,
    /// Boolean column set while the entity has open discrepancies.
    pub review_flag: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MergeIdMap {
    pub column: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MergeField {
    pub target: String,
    pub a: Option<String>,
    pub b: Option<String>,
    pub value: Option<Literal>,
    #[serde(default)]
    pub transforms: Vec<Transform>,
    #[serde(default)]
    pub validate: Vec<Check>,
    /// Compare A and B (after transforms, trimmed and case-folded; a blank never disagrees).
    #[serde(default)]
    pub compare: bool,
    /// Fill from B when A is blank (default true).
    #[serde(default = "yes")]
    pub fill: bool,
    /// The value when both sides are blank, applied after merging.
    pub default: Option<Literal>,
}

fn yes() -> bool {
    true
}

/// Rows of later steps that belong to side B's record; a split moves them to the new entity.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FollowsB {
    pub table: String,
    /// The column pointing at the entity.
    pub column: String,
    /// The column identifying the rows: B's legacy key, or values from `source_query`.
    pub match_column: String,
    /// SQL on the source returning the `match_column` values for B's key (`$1`).
    pub source_query: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MergeStepFile {
    pub kind: Option<String>,
    pub description: Option<String>,
    pub a: SideSpec,
    pub b: SideSpec,
    pub target: MergeTarget,
    pub id_map: MergeIdMap,
    pub fields: Vec<MergeField>,
    #[serde(default)]
    pub follows_b: Vec<FollowsB>,
    pub batch_size: Option<usize>,
    pub continue_on_error: Option<bool>,
}

pub struct MergeStep {
    pub file: MergeStepFile,
    /// Side A as a data step: its rows become entities.
    pub a: CompiledStep,
    /// Side B as a data step: its own data, for merging or for an entity of its own.
    pub b: CompiledStep,
    pub version: String,
}

fn side_name(s: &SideSpec, fallback: &str) -> String {
    s.name
        .clone()
        .or_else(|| s.table.clone())
        .unwrap_or_else(|| fallback.to_string())
}

impl MergeStep {
    pub fn load(step: &StepDef) -> Result<MergeStep> {
        let path = step.file("step.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| eyre!("cannot read {}: {e}", path.display()))?;
        Self::parse(&step.version, &text).map_err(|e| eyre!("{}: {e}", path.display()))
    }

    pub fn parse(version: &str, text: &str) -> Result<MergeStep> {
        let file: MergeStepFile = toml::from_str(text).map_err(|e| eyre!("{}", e.to_string().trim_end()))?;
        for (side, s) in [("a", &file.a), ("b", &file.b)] {
            if s.table.is_some() == s.query.is_some() {
                return Err(eyre!("[{side}] needs exactly one of table or query"));
            }
        }
        if file.b.link.is_none() {
            return Err(eyre!("[b] needs link: the column of side B that names side A's key"));
        }
        let side =
            |s: &SideSpec, fallback: &str, pick: &dyn Fn(&MergeField) -> Option<String>| -> Result<CompiledStep> {
                let name = side_name(s, fallback);
                let spec = DataStep {
                    kind: None,
                    description: None,
                    source: SourceSpec {
                        table: s.table.clone(),
                        query: s.query.clone(),
                        key: crate::engine::data::spec::SourceKey::One(s.key.clone()),
                        name: Some(name.clone()),
                        references: s.references.clone(),
                    },
                    target: TargetSpec {
                        table: file.target.table.clone(),
                        natural_key: vec![],
                        on_duplicate: DupPolicy::Error,
                    },
                    id_map: Some(IdMapSpec {
                        column: file.id_map.column.clone(),
                        map: Some(name),
                        key: None,
                    }),
                    fields: file
                        .fields
                        .iter()
                        .map(|f| {
                            let src = pick(f);
                            FieldSpec {
                                target: f.target.clone(),
                                value: if src.is_none() { f.value.clone() } else { None },
                                transforms: if src.is_some() { f.transforms.clone() } else { vec![] },
                                validate: if src.is_some() { f.validate.clone() } else { vec![] },
                                source: src,
                            }
                        })
                        .collect(),
                    batch_size: file.batch_size,
                    continue_on_error: file.continue_on_error,
                };
                CompiledStep::compile(version, spec)
            };
        let a = side(&file.a, "a", &|f: &MergeField| f.a.clone())?;
        let b = side(&file.b, "b", &|f: &MergeField| f.b.clone())?;
        Ok(MergeStep {
            file,
            a,
            b,
            version: version.to_string(),
        })
    }

    fn column(&self, target: &str) -> Option<usize> {
        self.a.target_columns.iter().position(|c| c == target)
    }
}

/// Normalised for comparison: trimmed and case-folded text; `None` when blank.
fn compare_form(v: &Value) -> Option<String> {
    let t = v.to_text()?;
    let t = t.trim();
    if t.is_empty() { None } else { Some(t.to_lowercase()) }
}

/// A discrepancy about to be stored.
#[derive(Debug, Clone)]
struct NewDiscrepancy {
    entity_id: String,
    field: String,
    value_a: Option<String>,
    value_b: Option<String>,
    key_a: String,
    key_b: String,
}

/// Merge B's values into the entity: fill blanks, list disagreements. Comparisons are with
/// A's own values (`a_own`), never with what another B row filled in.
fn merge_into(
    m: &MergeStep,
    a_vals: &mut [Value],
    a_own: &[Value],
    b_vals: &[Value],
    entity_id: &str,
    key_a: &str,
    key_b: &str,
) -> Vec<NewDiscrepancy> {
    let mut out = Vec::new();
    for f in &m.file.fields {
        let Some(i) = m.column(&f.target) else { continue };
        if f.compare
            && f.a.is_some()
            && f.b.is_some()
            && let (Some(x), Some(y)) = (compare_form(&a_own[i]), compare_form(&b_vals[i]))
            && x != y
        {
            out.push(NewDiscrepancy {
                entity_id: entity_id.to_string(),
                field: f.target.clone(),
                value_a: a_own[i].to_text(),
                value_b: b_vals[i].to_text(),
                key_a: key_a.to_string(),
                key_b: key_b.to_string(),
            });
        }
        if f.fill && f.b.is_some() && a_vals[i].is_blank() && !b_vals[i].is_blank() {
            a_vals[i] = b_vals[i].clone();
        }
    }
    out
}

async fn insert_discrepancies(tx: &mut DbTx, m: &MergeStep, ds: &[NewDiscrepancy]) -> Result<(), sqlx::Error> {
    let now = crate::engine::clock::now_iso();
    let side_a = side_name(&m.file.a, "a");
    let side_b = side_name(&m.file.b, "b");
    for d in ds {
        let opt = |s: &Option<String>| s.clone().map(Value::Text).unwrap_or(Value::Null);
        tx.execute(
            &format!("INSERT INTO {DISCREPANCIES} (version, entity_table, entity_id, field, value_a, value_b, side_a, side_b, key_a, key_b, state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'open', $11)"),
            &[
                Value::Text(m.version.clone()),
                Value::Text(m.file.target.table.clone()),
                Value::Text(d.entity_id.clone()),
                Value::Text(d.field.clone()),
                opt(&d.value_a),
                opt(&d.value_b),
                Value::Text(side_a.clone()),
                Value::Text(side_b.clone()),
                Value::Text(d.key_a.clone()),
                Value::Text(d.key_b.clone()),
                Value::Text(now.clone()),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Fields still blank after merging take their default.
pub(crate) fn apply_defaults(m: &MergeStep, vals: &mut [Value]) {
    for f in &m.file.fields {
        if let (Some(d), Some(i)) = (&f.default, m.column(&f.target))
            && vals[i].is_blank()
        {
            vals[i] = d.to_value();
        }
    }
}

fn set_flag(m: &MergeStep, vals: &mut [Value], on: bool) {
    if let Some(i) = m.file.target.review_flag.as_deref().and_then(|f| m.column(f)) {
        vals[i] = Value::Bool(on);
    }
}

fn key_of(c: &CompiledStep, batch: &SourceBatch, row: &[Value]) -> String {
    CompiledStep::column_index(&batch.columns, &c.id_key_column)
        .and_then(|i| row.get(i))
        .and_then(|v| v.to_text())
        .unwrap_or_default()
}

/// Linked B rows of a page of A keys, read from the source.
async fn linked_b_rows(source: &Db, m: &MergeStep, a_keys: &[String]) -> Result<SourceBatch> {
    let link = ident(m.file.b.link.as_deref().unwrap_or(""));
    let key = ident(&m.file.b.key);
    let mut out: Option<SourceBatch> = None;
    for chunk in a_keys.chunks(500) {
        let ph: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT * FROM ({}) src WHERE {link} IN ({}) ORDER BY {key}",
            m.b.spec.source_sql(source.dialect()),
            ph.join(", ")
        );
        let params: Vec<Value> = chunk.iter().map(|k| Value::Text(k.clone())).collect();
        let rows = source.fetch_all(&sql, &params).await?;
        match &mut out {
            None => out = Some(SourceBatch::new(Arc::new(rows.columns), rows.rows)),
            Some(b) => b.rows.extend(rows.rows),
        }
    }
    Ok(out.unwrap_or(SourceBatch::new(Arc::new(vec![]), vec![])))
}

/// Side B rows that merge into nothing: no link, or a link to no A row.
fn unmerged_b_sql(m: &MergeStep, dialect: crate::engine::db::Dialect) -> String {
    let link = ident(m.file.b.link.as_deref().unwrap_or(""));
    format!(
        "SELECT b.* FROM ({}) b WHERE b.{link} IS NULL OR NOT EXISTS (SELECT 1 FROM ({}) a WHERE a.{} = b.{link})",
        m.b.spec.source_sql(dialect),
        m.a.spec.source_sql(dialect),
        ident(&m.file.a.key)
    )
}

#[derive(Default)]
struct PageResult {
    counts: Counts,
    entities: Vec<Vec<Value>>,
    map: Vec<IdMapEntry>,
    rejects_a: Vec<NewReject>,
    rejects_b: Vec<NewReject>,
    warnings_a: Vec<NewReject>,
    warnings_b: Vec<NewReject>,
    discrepancies: Vec<NewDiscrepancy>,
}

/// Phase A: a page of A rows, with the B rows that link to them.
async fn phase_a_page(tx: &mut DbTx, m: &MergeStep, source: &Db, page: &SourceBatch) -> Result<PageResult> {
    let mut r = PageResult::default();
    let cache = m.a.prefetch(tx, page).await?;
    let layout = m.a.layout(&page.columns);
    let today = today();
    let a_name = m.a.map_name.clone().unwrap_or_default();
    let b_name = m.b.map_name.clone().unwrap_or_default();
    // key -> (index into r.entities, entity id) for A rows written; rejected A keys
    let mut written: HashMap<String, (usize, String)> = HashMap::new();
    let mut rejected: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut a_keys = Vec::with_capacity(page.rows.len());
    let mut a_own: Vec<Vec<Value>> = Vec::with_capacity(page.rows.len());
    for row in &page.rows {
        let key = key_of(&m.a, page, row);
        a_keys.push(key.clone());
        r.counts.source += 1;
        match m.a.process(&page.columns, &layout, row, &cache, today) {
            Processed::Write {
                values,
                new_id,
                warnings,
                ..
            } => {
                let id = new_id.unwrap_or_default();
                r.map.push(IdMapEntry {
                    map: a_name.clone(),
                    old_key: key.clone(),
                    new_id: id.clone(),
                    alias: false,
                });
                written.insert(key, (r.entities.len(), id));
                a_own.push(values.clone());
                r.entities.push(values);
                r.warnings_a.extend(warnings);
                r.counts.written += 1;
            }
            Processed::Reject(rej) => {
                rejected.insert(key);
                r.rejects_a.push(rej);
                r.counts.rejected += 1;
            }
        }
    }
    let linked = linked_b_rows(source, m, &a_keys).await?;
    if !linked.rows.is_empty() {
        let b_cache = m.b.prefetch(tx, &linked).await?;
        let b_layout = m.b.layout(&linked.columns);
        let link_i = CompiledStep::column_index(&linked.columns, m.file.b.link.as_deref().unwrap_or(""));
        for row in &linked.rows {
            r.counts.source += 1;
            let link = link_i
                .and_then(|i| row.get(i))
                .and_then(|v| v.to_text())
                .unwrap_or_default();
            let key_b = key_of(&m.b, &linked, row);
            if rejected.contains(&link) {
                // Never a second entity for a rejected A row: wait for it.
                r.rejects_b.push(NewReject {
                    source_key: key_b,
                    row: CompiledStep::row_json(&linked.columns, row),
                    field: m.file.b.link.clone(),
                    rule: "waiting".into(),
                    reason: format!("waiting for {a_name} {link}"),
                    warning: false,
                    waits_for: Some((a_name.clone(), link)),
                });
                r.counts.rejected += 1;
                continue;
            }
            let Some((idx, entity_id)) = written.get(&link).cloned() else {
                continue;
            };
            match m.b.process(&linked.columns, &b_layout, row, &b_cache, today) {
                Processed::Write { values, warnings, .. } => {
                    let ds = merge_into(m, &mut r.entities[idx], &a_own[idx], &values, &entity_id, &link, &key_b);
                    if !ds.is_empty() {
                        set_flag(m, &mut r.entities[idx], true);
                    }
                    r.discrepancies.extend(ds);
                    r.map.push(IdMapEntry {
                        map: b_name.clone(),
                        old_key: key_b,
                        new_id: entity_id,
                        alias: true,
                    });
                    r.warnings_b.extend(warnings);
                    r.counts.merged += 1;
                }
                Processed::Reject(rej) => {
                    r.rejects_b.push(rej);
                    r.counts.rejected += 1;
                }
            }
        }
    }
    for e in &mut r.entities {
        apply_defaults(m, e);
    }
    Ok(r)
}

/// Phase B: a page of B rows that merge into nothing; each becomes an entity of its own.
async fn phase_b_page(tx: &mut DbTx, m: &MergeStep, page: &SourceBatch) -> Result<PageResult> {
    let mut r = PageResult::default();
    let cache = m.b.prefetch(tx, page).await?;
    let layout = m.b.layout(&page.columns);
    let b_name = m.b.map_name.clone().unwrap_or_default();
    let a_name = m.a.map_name.clone().unwrap_or_default();
    let link_i = CompiledStep::column_index(&page.columns, m.file.b.link.as_deref().unwrap_or(""));
    for row in &page.rows {
        r.counts.source += 1;
        let key_b = key_of(&m.b, page, row);
        match m.b.process(&page.columns, &layout, row, &cache, today()) {
            Processed::Write {
                values,
                new_id,
                mut warnings,
                ..
            } => {
                if let Some(link) = link_i
                    .and_then(|i| row.get(i))
                    .and_then(|v| v.to_text())
                    .filter(|l| !l.trim().is_empty())
                {
                    warnings.push(NewReject {
                        source_key: key_b.clone(),
                        row: serde_json::Value::Null,
                        field: m.file.b.link.clone(),
                        rule: "dangling_link".into(),
                        reason: format!(
                            "{} {link} does not exist in {a_name}; kept as an entity of its own",
                            m.file.b.link.as_deref().unwrap_or("link")
                        ),
                        warning: true,
                        waits_for: None,
                    });
                }
                let id = new_id.unwrap_or_default();
                r.map.push(IdMapEntry {
                    map: b_name.clone(),
                    old_key: key_b,
                    new_id: id,
                    alias: false,
                });
                let mut values = values;
                apply_defaults(m, &mut values);
                r.entities.push(values);
                r.warnings_b.extend(warnings);
                r.counts.written += 1;
            }
            Processed::Reject(rej) => {
                r.rejects_b.push(rej);
                r.counts.rejected += 1;
            }
        }
    }
    Ok(r)
}

async fn store_page(
    tx: &mut DbTx,
    run_id: &str,
    m: &MergeStep,
    writer: &TargetWriter,
    r: &PageResult,
) -> Result<(), sqlx::Error> {
    writer.insert(tx, &r.entities).await?;
    insert_id_map(tx, &m.version, &r.map).await?;
    let a = m.a.source_name.clone();
    let b = m.b.source_name.clone();
    RejectStore::insert(tx, run_id, &m.version, &a, &r.rejects_a).await?;
    RejectStore::insert(tx, run_id, &m.version, &a, &r.warnings_a).await?;
    RejectStore::insert(tx, run_id, &m.version, &b, &r.rejects_b).await?;
    RejectStore::insert(tx, run_id, &m.version, &b, &r.warnings_b).await?;
    insert_discrepancies(tx, m, &r.discrepancies).await
}

fn phase_key(phase: &str, key: Option<Value>) -> Value {
    Value::Json(serde_json::json!({ "phase": phase, "key": key.map(|k| k.to_json()) }))
}

fn parse_phase(v: &Option<Value>) -> (String, Option<Value>) {
    match v {
        Some(Value::Json(j)) => (
            j.get("phase").and_then(|p| p.as_str()).unwrap_or("a").to_string(),
            j.get("key").filter(|k| !k.is_null()).map(Value::from_json),
        ),
        _ => ("a".into(), None),
    }
}

/// A merge step in the batch loop: phase A pages A rows (with the B rows linked to them),
/// then phase B pages the B rows no A row took. The checkpoint key names the phase.
struct MergeBatches {
    m: MergeStep,
    source: Db,
    batch_size: usize,
    writer: Option<TargetWriter>,
    /// Side A's reader and phase B's (the unmerged B rows), compiled for reading.
    a_reader: Arc<CompiledStep>,
    b_reader: Arc<CompiledStep>,
    phase: String,
    pages: Option<ReadAhead>,
}

impl MergeBatches {
    fn open(&mut self, after: Option<Value>) {
        let c = if self.phase == "a" {
            &self.a_reader
        } else {
            &self.b_reader
        };
        let reader = SourceReader::new(self.source.clone(), c.clone(), false);
        self.pages = Some(ReadAhead::spawn(reader, after, self.batch_size));
    }
}

impl BatchStep for MergeBatches {
    type Page = (String, SourceBatch);

    async fn prepare(
        &mut self,
        ctx: &RunCtx,
        dry_tx: Option<&mut DbTx>,
        resume_from: &Option<Value>,
    ) -> Result<(), StepError> {
        let (table, columns) = (&self.m.file.target.table, &self.m.a.target_columns);
        self.writer = Some(
            match dry_tx {
                Some(tx) => TargetWriter::new_in(tx, table, columns).await,
                None => TargetWriter::new(&ctx.target, table, columns).await,
            }
            .map_err(StepError::plain)?,
        );
        let (phase, after) = parse_phase(resume_from);
        self.phase = phase;
        self.open(after);
        Ok(())
    }

    async fn next_page(&mut self) -> Result<Option<(String, SourceBatch)>, StepError> {
        loop {
            let pages = self
                .pages
                .as_mut()
                .ok_or_else(|| StepError::msg("the source was not opened"))?;
            match pages.next().await.map_err(StepError::plain)? {
                Some(p) => return Ok(Some((self.phase.clone(), p))),
                None if self.phase == "a" => {
                    self.phase = "b".into();
                    self.open(None);
                }
                None => return Ok(None),
            }
        }
    }

    async fn at_end(&mut self, _counts: &Counts) -> Result<(), StepError> {
        // Phase B reads what phase A left, so the rows read are not one count of the source;
        // `verify` holds each side's books against the source instead.
        Ok(())
    }

    async fn write_page(
        &mut self,
        tx: &mut DbTx,
        run_id: &str,
        page: (String, SourceBatch),
    ) -> Result<PageOutcome, StepError> {
        let (phase, page) = page;
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| StepError::msg("the target was not opened"))?;
        let reader = if phase == "a" { &self.a_reader } else { &self.b_reader };
        let last = page.rows.last().and_then(|r| reader.page_key(&page.columns, r));
        let res = if phase == "a" {
            phase_a_page(tx, &self.m, &self.source, &page).await
        } else {
            phase_b_page(tx, &self.m, &page).await
        }
        .map_err(StepError::plain)?;
        store_page(tx, run_id, &self.m, writer, &res)
            .await
            .map_err(StepError::sql)?;
        let mut counts = res.counts;
        counts.warnings += (res.warnings_a.len() + res.warnings_b.len()) as u64;
        let note = |table: &String, r: &NewReject| RejectNote {
            source_table: table.clone(),
            source_key: r.source_key.clone(),
            rule: r.rule.clone(),
            reason: r.reason.clone(),
            column: r.field.clone(),
        };
        let rejects = res
            .rejects_a
            .iter()
            .map(|r| note(&self.m.a.source_name, r))
            .chain(res.rejects_b.iter().map(|r| note(&self.m.b.source_name, r)))
            .take(EVENTS_PER_BATCH)
            .collect();
        let flags = res
            .warnings_a
            .iter()
            .chain(&res.warnings_b)
            .take(EVENTS_PER_BATCH)
            .map(|w| FlagNote {
                source_key: w.source_key.clone(),
                field: w.field.clone().unwrap_or_default(),
                reason: w.reason.clone(),
            })
            .collect();
        Ok(PageOutcome {
            counts,
            rejects,
            flags,
            next_key: Some(phase_key(&phase, last)),
        })
    }
}

pub async fn run(ctx: &RunCtx, step: &StepDef) -> Result<StepResult, StepError> {
    let mut m = MergeStep::load(step).map_err(StepError::plain)?;
    for side in [&mut m.a, &mut m.b] {
        side.file_store = Some(crate::engine::data::pipeline::FileStore {
            root: ctx.project.config.dir.clone(),
            write: !ctx.dry_run,
        });
    }
    let source = ctx.source().await.map_err(StepError::plain)?.clone();
    let batch_size = m
        .file
        .batch_size
        .unwrap_or(ctx.project.config.defaults.batch_size)
        .max(1);
    let continue_on_error = ctx
        .continue_on_error
        .or(m.file.continue_on_error)
        .unwrap_or(ctx.project.config.defaults.continue_on_error)
        || ctx.dry_run;
    let total_a = count_source(&source, &m.a).await.map_err(StepError::plain)?;
    let total_b = count_source(&source, &m.b).await.map_err(StepError::plain)?;
    let unmerged = SourceSpec {
        table: None,
        query: Some(unmerged_b_sql(&m, source.dialect())),
        key: crate::engine::data::spec::SourceKey::One(m.file.b.key.clone()),
        name: m.b.spec.source.name.clone(),
        references: m.b.spec.source.references.clone(),
    };
    let b_reader = CompiledStep::compile(
        &m.version,
        DataStep {
            source: unmerged,
            ..m.b.spec.clone()
        },
    )
    .map_err(StepError::plain)?;
    let a_reader = CompiledStep::compile(&m.version, m.a.spec.clone()).map_err(StepError::plain)?;
    let plan = BatchPlan {
        total: total_a + total_b,
        batch_size,
        continue_on_error,
    };
    let mut s = MergeBatches {
        m,
        source,
        batch_size,
        writer: None,
        a_reader: Arc::new(a_reader),
        b_reader: Arc::new(b_reader),
        phase: "a".into(),
        pages: None,
    };
    run_batches(ctx, step, plan, &mut s).await
}

/// Retry one rejected row of a merge step inside `tx`. `Ok(None)` when it was written or
/// merged; `Ok(Some(reject))` when it is still rejected.
pub async fn retry_row(
    tx: &mut DbTx,
    source: &Db,
    m: &MergeStep,
    writer: &TargetWriter,
    run_id: &str,
    rec: &store::RejectRecord,
) -> Result<(Option<NewReject>, Counts)> {
    let obj = rec.row.as_object().cloned().unwrap_or_default();
    let batch = SourceBatch::new(
        Arc::new(obj.keys().cloned().collect()),
        vec![obj.values().map(Value::from_json).collect()],
    );
    let mut counts = Counts::default();
    if rec.source_table == m.a.source_name {
        let mut r = phase_a_page(tx, m, source, &batch).await?;
        if let Some(rej) = r.rejects_a.pop() {
            return Ok((Some(rej), counts));
        }
        // B rows linked to it were rejected as waiting and come back through their own
        // retries; they must not be merged twice here.
        r.entities.truncate(1);
        r.map.retain(|e| !e.alias);
        r.discrepancies.clear();
        r.rejects_b.clear();
        r.warnings_b.clear();
        counts.written = 1;
        let only_a = PageResult {
            entities: r.entities,
            map: r.map,
            warnings_a: r.warnings_a,
            ..Default::default()
        };
        store_page(tx, run_id, m, writer, &only_a).await?;
        return Ok((None, counts));
    }
    // Side B: merge into A's entity when it exists now, else an entity of its own.
    let link_i = CompiledStep::column_index(&batch.columns, m.file.b.link.as_deref().unwrap_or(""));
    let link = link_i
        .and_then(|i| batch.rows[0].get(i))
        .and_then(|v| v.to_text())
        .unwrap_or_default();
    let a_name = m.a.map_name.clone().unwrap_or_default();
    let entity = if link.is_empty() {
        None
    } else {
        tx.fetch_optional(
            &format!("SELECT new_id FROM {} WHERE map = $1 AND old_key = $2", store::ID_MAP),
            &[Value::Text(a_name.clone()), Value::Text(link.clone())],
        )
        .await?
        .and_then(|r| r.first().and_then(|v| v.to_text()))
    };
    let a_exists_in_source = !link.is_empty() && {
        let sql = format!(
            "SELECT 1 FROM ({}) a WHERE a.{} = $1",
            m.a.spec.source_sql(source.dialect()),
            ident(&m.file.a.key)
        );
        source
            .fetch_optional(&sql, &[Value::Text(link.clone())])
            .await?
            .is_some()
    };
    match entity {
        Some(entity_id) => {
            let cache = m.b.prefetch(tx, &batch).await?;
            let layout = m.b.layout(&batch.columns);
            match m.b.process(&batch.columns, &layout, &batch.rows[0], &cache, today()) {
                Processed::Write { values, warnings, .. } => {
                    let key_b = key_of(&m.b, &batch, &batch.rows[0]);
                    let mut current = read_entity(tx, m, writer, &entity_id).await?;
                    let before = current.clone();
                    let a_own = a_own_values(tx, source, m, &link)
                        .await?
                        .unwrap_or_else(|| current.clone());
                    let ds = merge_into(m, &mut current, &a_own, &values, &entity_id, &link, &key_b);
                    if !ds.is_empty() {
                        set_flag(m, &mut current, true);
                    }
                    update_entity(tx, m, writer, &entity_id, &before, &current).await?;
                    insert_discrepancies(tx, m, &ds).await?;
                    insert_id_map(
                        tx,
                        &m.version,
                        &[IdMapEntry {
                            map: m.b.map_name.clone().unwrap_or_default(),
                            old_key: key_b,
                            new_id: entity_id,
                            alias: true,
                        }],
                    )
                    .await?;
                    RejectStore::insert(tx, run_id, &m.version, &m.b.source_name, &warnings).await?;
                    counts.merged = 1;
                    Ok((None, counts))
                }
                Processed::Reject(rej) => Ok((Some(rej), counts)),
            }
        }
        None if a_exists_in_source => Ok((
            Some(NewReject {
                source_key: rec.source_key.clone(),
                row: rec.row.clone(),
                field: m.file.b.link.clone(),
                rule: "waiting".into(),
                reason: format!("waiting for {a_name} {link}"),
                warning: false,
                waits_for: Some((a_name, link)),
            }),
            counts,
        )),
        None => {
            let mut r = phase_b_page(tx, m, &batch).await?;
            if let Some(rej) = r.rejects_b.pop() {
                return Ok((Some(rej), counts));
            }
            counts.written = 1;
            r.counts = Counts::default();
            store_page(tx, run_id, m, writer, &r).await?;
            Ok((None, counts))
        }
    }
}

/// Side A's own values for `key`, read from the source and put through its pipeline.
pub async fn a_own_values(tx: &mut DbTx, source: &Db, m: &MergeStep, key: &str) -> Result<Option<Vec<Value>>> {
    let rows = source
        .fetch_all(
            &format!(
                "SELECT * FROM ({}) src WHERE src.{} = $1",
                m.a.spec.source_sql(source.dialect()),
                ident(&m.file.a.key)
            ),
            &[Value::Text(key.into())],
        )
        .await?;
    let Some(row) = rows.rows.first() else { return Ok(None) };
    let batch = SourceBatch::new(Arc::new(rows.columns.clone()), vec![row.clone()]);
    let cache = m.a.prefetch(tx, &batch).await?;
    let layout = m.a.layout(&batch.columns);
    Ok(match m.a.process(&batch.columns, &layout, row, &cache, today()) {
        Processed::Write { values, .. } => Some(values),
        Processed::Reject(_) => None,
    })
}

async fn read_entity(tx: &mut DbTx, m: &MergeStep, writer: &TargetWriter, id: &str) -> Result<Vec<Value>, sqlx::Error> {
    let cols =
        m.a.target_columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ");
    let id_col = &m.file.id_map.column;
    let row = tx
        .fetch_optional(
            &format!(
                "SELECT {cols} FROM {} WHERE {} = {}",
                ident(&m.file.target.table),
                ident(id_col),
                writer.param(1, id_col)
            ),
            &[Value::Text(id.into())],
        )
        .await?;
    Ok(row.unwrap_or_else(|| vec![Value::Null; m.a.target_columns.len()]))
}

/// Write the columns that changed.
async fn update_entity(
    tx: &mut DbTx,
    m: &MergeStep,
    writer: &TargetWriter,
    id: &str,
    before: &[Value],
    after: &[Value],
) -> Result<(), sqlx::Error> {
    let mut sets = Vec::new();
    let mut params = Vec::new();
    for (i, c) in m.a.target_columns.iter().enumerate() {
        if before.get(i) != after.get(i) {
            params.push(after[i].clone());
            sets.push(format!("{} = {}", ident(c), writer.param(params.len(), c)));
        }
    }
    if sets.is_empty() {
        return Ok(());
    }
    let id_col = &m.file.id_map.column;
    params.push(Value::Text(id.into()));
    tx.execute(
        &format!(
            "UPDATE {} SET {} WHERE {} = {}",
            ident(&m.file.target.table),
            sets.join(", "),
            ident(id_col),
            writer.param(params.len(), id_col)
        ),
        &params,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_parses() {
        let m = MergeStep::parse(
            "20250101T000000",
            include_str!("../../../assets/templates/merge.step.toml"),
        )
        .unwrap();
        assert_eq!(m.a.map_name.as_deref(), Some("patients"));
        assert_eq!(m.b.map_name.as_deref(), Some("children"));
        assert_eq!(m.a.target_columns, m.b.target_columns);
    }

    #[test]
    fn blanks_fill_and_only_real_differences_are_discrepancies() {
        let m = MergeStep::parse(
            "v",
            "kind = \"merge\"\n[a]\ntable = \"p\"\nkey = \"id\"\n[b]\ntable = \"c\"\nkey = \"id\"\nlink = \"pid\"\n[target]\ntable = \"t\"\n[id_map]\ncolumn = \"id\"\n[[fields]]\ntarget = \"name\"\na = \"name\"\nb = \"name\"\ncompare = true\n[[fields]]\ntarget = \"city\"\na = \"city\"\nb = \"city\"\n",
        )
        .unwrap();
        // columns: id, name, city
        let own = vec![Value::Text("e1".into()), Value::Text(" Ann ".into()), Value::Null];
        let mut entity = own.clone();
        let b = vec![Value::Null, Value::Text("ann".into()), Value::Text("Oslo".into())];
        assert!(
            merge_into(&m, &mut entity, &own, &b, "e1", "p1", "c1").is_empty(),
            "case and spaces are not a difference"
        );
        assert_eq!(entity[2], Value::Text("Oslo".into()), "a blank of A is filled from B");
        let b2 = vec![Value::Null, Value::Text("Anna".into()), Value::Text("Bergen".into())];
        let ds = merge_into(&m, &mut entity, &own, &b2, "e1", "p1", "c2");
        assert_eq!(ds.len(), 1);
        assert_eq!(ds[0].field, "name");
        assert_eq!(entity[2], Value::Text("Oslo".into()), "an already filled value is kept");
    }
}
