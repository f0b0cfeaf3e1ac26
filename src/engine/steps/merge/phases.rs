//! Running a merge step in the batch loop: phase A pages A rows with the B rows linked to them,
//! phase B pages the B rows no A row took.

use super::entity::*;
use super::linked::LinkedRows;
use super::spec::*;
use crate::engine::clock::today;
use crate::engine::data::pipeline::{CompiledStep, Processed, SourceBatch};
use crate::engine::data::reader::SourceReader;
use crate::engine::data::spec::{DataStep, SourceSpec};
use crate::engine::data::writer::{IdMapEntry, TargetWriter, insert_id_map};
use crate::engine::db::{Db, DbTx};
use crate::engine::exec::batch::{
    BatchPlan, BatchStep, EVENTS_PER_BATCH, FilledTable, FlagNote, PageOutcome, RejectNote, run_batches,
};
use crate::engine::exec::{RunCtx, StepError, StepResult};
use crate::engine::project::StepDef;
use crate::engine::protocol::Counts;
use crate::engine::source::read_ahead::ReadAhead;
use crate::engine::source::table::count_source;
use crate::engine::store::{NewReject, RejectStore};
use crate::engine::value::Value;
use color_eyre::eyre::Result;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default)]
pub(super) struct PageResult {
    pub(super) counts: Counts,
    pub(super) entities: Vec<Vec<Value>>,
    pub(super) map: Vec<IdMapEntry>,
    pub(super) rejects_a: Vec<NewReject>,
    pub(super) rejects_b: Vec<NewReject>,
    pub(super) warnings_a: Vec<NewReject>,
    pub(super) warnings_b: Vec<NewReject>,
    pub(super) discrepancies: Vec<NewDiscrepancy>,
}

/// Where phase A gets the B rows linked to a page: the step's one stream, or (retrying one
/// row) a query of its own.
pub(super) enum LinkedFrom<'a> {
    Stream(&'a mut LinkedRows),
    Query(&'a Db),
}

/// Phase A: a page of A rows, with the B rows that link to them.
pub(super) async fn phase_a_page(
    tx: &mut DbTx,
    m: &MergeStep,
    linked_from: LinkedFrom<'_>,
    page: &SourceBatch,
) -> Result<PageResult> {
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
    // A's own values of an entity, kept from the first B row merged into it on (merges compare
    // with A's values, never with what another B row filled in): a copy only of the entities
    // that have B rows, not of the whole page.
    let mut a_own: HashMap<usize, Vec<Value>> = HashMap::new();
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
    let linked = match linked_from {
        LinkedFrom::Stream(stream) => stream.take(&a_keys.iter().cloned().collect()).await?,
        LinkedFrom::Query(source) => linked_b_rows(source, m, &a_keys).await?,
    };
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
                    let own = a_own.entry(idx).or_insert_with(|| r.entities[idx].clone());
                    let ds = merge_into(m, &mut r.entities[idx], own, &values, &entity_id, &link, &key_b);
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
pub(super) async fn phase_b_page(tx: &mut DbTx, m: &MergeStep, page: &SourceBatch) -> Result<PageResult> {
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

pub(super) async fn store_page(
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

pub(super) fn phase_key(phase: &str, key: Option<Value>) -> Value {
    Value::Json(serde_json::json!({ "phase": phase, "key": key.map(|k| k.to_json()) }))
}

pub(super) fn parse_phase(v: &Option<Value>) -> (String, Option<Value>) {
    match v {
        Some(Value::Json(j)) => (
            j.get("phase").and_then(|p| p.as_str()).unwrap_or("a").to_string(),
            j.get("key").filter(|k| !k.is_null()).map(Value::from_json),
        ),
        _ => ("a".into(), None),
    }
}

/// Rows per page of a merge step's side, below a data step's `PAGE_ROWS`: a merge page holds
/// its A rows, the B rows linked to them, their entities and the page read ahead, so at a
/// data step's page size the clinic project's `persons` step was the peak of the whole run
/// (64-67 MiB at 200k patients into SQLite; 57-58 MiB with pages of 1000: README, Benchmark).
const MERGE_PAGE_ROWS: usize = 1000;

/// A merge step in the batch loop: phase A pages A rows (with the B rows linked to them),
/// then phase B pages the B rows no A row took. The checkpoint key names the phase.
pub(super) struct MergeBatches {
    pub(super) m: MergeStep,
    pub(super) source: Db,
    pub(super) batch_size: usize,
    pub(super) writer: Option<TargetWriter>,
    /// Side A's reader and phase B's (the unmerged B rows), compiled for reading.
    pub(super) a_reader: Arc<CompiledStep>,
    pub(super) b_reader: Arc<CompiledStep>,
    pub(super) phase: String,
    pub(super) pages: Option<ReadAhead>,
    /// Phase A's linked B rows (see `linked`).
    pub(super) linked: Option<LinkedRows>,
}

impl MergeBatches {
    fn open(&mut self, after: Option<Value>) {
        let c = if self.phase == "a" {
            &self.a_reader
        } else {
            &self.b_reader
        };
        let reader = SourceReader::new(self.source.clone(), c.clone(), false);
        // Pages, not batches: a batch of 50 000 rows must not mean 50 000 rows read ahead.
        let page = crate::engine::exec::batch::page_rows(self.batch_size).min(MERGE_PAGE_ROWS);
        self.pages = Some(ReadAhead::spawn(reader, after, page));
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
        if self.phase == "a" {
            let resume = match &after {
                Some(k) => {
                    let mut a = SourceReader::new(self.source.clone(), self.a_reader.clone(), false);
                    let p = a.key_param(1).await.map_err(StepError::plain)?;
                    Some((p, k.clone()))
                }
                None => None,
            };
            // Small pages: the stream's rows wait in memory until their A page comes.
            self.linked = Some(LinkedRows::open(
                &self.source,
                &self.m,
                resume,
                self.batch_size.min(MERGE_PAGE_ROWS),
            ));
        }
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
                    if let Some(mut linked) = self.linked.take() {
                        linked.finish().await.map_err(StepError::plain)?;
                    }
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

    fn filled_table(&self) -> Option<FilledTable> {
        // Phase A only adds rows (side B's linked rows come from the source); phase B looks
        // rows of the table up by its match keys and whole rows: all columns.
        self.writer.as_ref().map(|w| FilledTable {
            table: w.table.clone(),
            probed: (self.phase == "a").then(Vec::new),
        })
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
            let linked = self
                .linked
                .as_mut()
                .ok_or_else(|| StepError::msg("the linked rows of side B were not opened"))?;
            phase_a_page(tx, &self.m, LinkedFrom::Stream(linked), &page).await
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
        side.file_store = Some(crate::engine::data::pipeline::FileStore::for_project(
            &ctx.project.config,
            !ctx.dry_run,
        ));
    }
    let source = ctx.source().await.map_err(StepError::plain)?.clone();
    let batch_size = ctx.batch_size(m.file.batch_size);
    let continue_on_error = ctx.continue_on_error(m.file.continue_on_error);
    let total_a = count_source(&source, &m.a).await.map_err(StepError::plain)?;
    let total_b = count_source(&source, &m.b).await.map_err(StepError::plain)?;
    let unmerged = SourceSpec {
        table: None,
        query: Some(unmerged_b_sql(&m, source.dialect())),
        key: crate::engine::data::spec::SourceKey::One(m.file.b.key.clone()),
        name: m.b.spec.source.name.clone(),
        references: m.b.spec.source.references.clone(),
        ..Default::default()
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
    crate::engine::ops::verify::baseline::take_pre_step_checksums(ctx, step, vec![m.a.spec.target.table.clone()])
        .await?;
    let mut s = MergeBatches {
        m,
        source,
        batch_size,
        writer: None,
        a_reader: Arc::new(a_reader),
        b_reader: Arc::new(b_reader),
        phase: "a".into(),
        pages: None,
        linked: None,
    };
    run_batches(ctx, step, plan, &mut s).await
}
