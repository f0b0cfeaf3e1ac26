//! One sync pass over one step: the rows changed since its mark, in batches, each batch's
//! upserts, deletes, ID-map entries, rejects and new mark committed in one transaction.

use crate::engine::data::collection::{CREATED_AT, ID};
use crate::engine::data::pipeline::{CompiledStep, LookupCache, SourceBatch, written_log_map};
use crate::engine::data::writer::{TargetWriter, ident};
use crate::engine::db::DbTx;
use crate::engine::exec::batch::EVENTS_PER_BATCH;
use crate::engine::exec::{RunCtx, StepError};
use crate::engine::project::StepDef;
use crate::engine::protocol::{Counts, EngineEvent, Progress};
use crate::engine::steps::data::{
    BatchResult, DecidedRows, RowToWrite, decide_rows, refusal_reject, store_rejects, write_decided,
};
use crate::engine::store::NewReject;
use crate::engine::store::sync_marks::{self, Mapped, SyncMark};
use crate::engine::sync::read::{ChangeReader, Position, cursor_value, looked_back};
use crate::engine::value::Value;
use std::sync::Arc;
use std::time::Instant;

/// What one pass over one step did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassResult {
    /// source: changed rows read; written: inserted + updated + deleted; skipped: aliases
    /// (duplicates of another row) and deletes of rows the target never had.
    pub counts: Counts,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub lag_rows: u64,
    pub lag_seconds: Option<f64>,
    pub mark: Option<String>,
    /// Stopped at a batch boundary on request.
    pub aborted: bool,
}

/// What one batch did, before it commits.
#[derive(Default)]
struct BatchOutcome {
    res: BatchResult,
    inserted: u64,
    updated: u64,
    deleted: u64,
}

/// The mark as stored, as a reading position.
fn position_of_mark(m: &SyncMark) -> Option<Position> {
    m.cursor.as_ref().map(|c| Position {
        cursor: cursor_value(c),
        key: m.last_key.clone(),
    })
}

/// Sync one step: read its changes since the mark (less the lookback), up to the cursor's
/// maximum at the start, and apply them batch by batch.
pub async fn sync_step(ctx: &RunCtx, step: &StepDef, pass: u64) -> Result<PassResult, StepError> {
    let mut c = crate::engine::steps::data::load(step).map_err(StepError::plain)?;
    c.file_store = Some(crate::engine::data::pipeline::FileStore::for_project(
        &ctx.project.config,
        true,
    ));
    c.run_id = Some(ctx.run_id.clone());
    let sync = c
        .spec
        .sync
        .clone()
        .ok_or_else(|| StepError::msg(format!("step {} has no [sync]", step.version)))?;
    let lookback = sync.lookback().map_err(StepError::plain)?;
    let batch_size = ctx.batch_size(c.spec.batch_size);
    let c = Arc::new(c);
    let source = ctx.source().await.map_err(StepError::plain)?.clone();
    let mut reader = ChangeReader::new(source, c.clone()).map_err(StepError::plain)?;
    let writer = TargetWriter::new(&ctx.target, &c.spec.target.table, &c.target_columns)
        .await
        .map_err(StepError::plain)?;

    let mut mark = {
        let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
        let m = SyncMark::load(&mut tx, &step.version).await.map_err(StepError::sql)?;
        let _ = tx.rollback().await;
        m.unwrap_or_default()
    };
    let upto = reader.max_cursor().await.map_err(StepError::plain)?;
    let mut from = position_of_mark(&mark).map(|p| looked_back(&p, lookback));
    let mut out = PassResult::default();
    let t0 = Instant::now();
    let mut started = false;
    let mut last_progress: Option<Instant> = None;
    let mut batches = 0u64;
    // Each batch from its page read to its commit, for the metrics' batch-duration histogram.
    let mut batch_times = crate::engine::protocol::BatchTimes::default();

    while let Some(hi) = &upto {
        let boundary = ctx.boundary(Some(&step.version)).await;
        if !boundary.go {
            out.aborted = true;
            break;
        }
        let batch_t0 = Instant::now();
        let page = reader
            .page(from.as_ref(), Some(hi), batch_size)
            .await
            .map_err(StepError::plain)?;
        let Some(end) = page.rows.last().and_then(|r| reader.position_of(&page.columns, r)) else {
            break;
        };
        if !started {
            started = true;
            ctx.emit(EngineEvent::StepStarted {
                version: step.version.clone(),
                name: step.name.clone(),
                kind: step.kind,
                dry_run: false,
            })
            .await;
        }
        let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
        if let Some(token) = &ctx.lock_token
            && let Err(e) = crate::engine::store::lock::fence(&mut tx, token).await
        {
            let _ = tx.rollback().await;
            return Err(StepError::lock_lost(e));
        }
        let applied = apply_batch(&mut tx, &c, &writer, &reader, &page).await;
        let b = match applied {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(StepError::sql(e));
            }
        };
        // A lookback re-reads rows behind the mark: the mark never moves back.
        let current = position_of_mark(&mark);
        if current.as_ref().is_none_or(|m| end.after(m)) {
            mark.cursor = end.cursor.to_text();
            mark.last_key = end.key.clone();
        }
        mark.rows_applied += page.rows.len() as u64;
        let saved = async {
            store_rejects(&mut tx, &ctx.run_id, &c, &b.res).await?;
            mark.save(&mut tx, &step.version).await
        }
        .await;
        if let Err(e) = saved {
            let _ = tx.rollback().await;
            return Err(StepError::sql(e));
        }
        tx.commit().await.map_err(StepError::plain)?;
        batches += 1;
        batch_times.record(batch_t0.elapsed());
        let mut counts = b.res.counts;
        counts.source = page.rows.len() as u64;
        out.counts.add(&counts);
        out.inserted += b.inserted;
        out.updated += b.updated;
        out.deleted += b.deleted;
        for r in b.res.rejects.iter().take(EVENTS_PER_BATCH) {
            ctx.emit(EngineEvent::Rejected {
                version: step.version.clone(),
                source_table: c.source_name.clone(),
                source_key: r.source_key.clone(),
                rule: r.rule.clone(),
                reason: r.reason.clone(),
            })
            .await;
        }
        if last_progress.is_none_or(|l| l.elapsed() >= crate::engine::exec::batch::PROGRESS_EVERY) {
            last_progress = Some(Instant::now());
            ctx.emit(progress_event(&step.version, &out.counts, batches, batch_times, t0))
                .await;
        }
        from = Some(end);
        if page.rows.len() < batch_size {
            break;
        }
    }
    if started {
        ctx.emit(progress_event(&step.version, &out.counts, batches, batch_times, t0))
            .await;
    }
    let (lag_rows, lag_seconds) = reader
        .lag(position_of_mark(&mark).as_ref())
        .await
        .map_err(StepError::plain)?;
    out.lag_rows = lag_rows;
    out.lag_seconds = lag_seconds;
    out.mark = position_of_mark(&mark).map(|p| p.text());
    if mark.cursor.is_some() {
        // Marks are only saved with a batch or by `up`; the lag goes beside an existing one.
        if let Err(e) = sync_marks::save_lag(&ctx.target, &step.version, lag_rows, lag_seconds).await {
            tracing::warn!(step = %step.version, error = %format!("{e:#}"), "could not record the sync lag");
        }
    }
    if let Some(name) = c.spec.target.collection.as_deref()
        && out.inserted + out.updated + out.deleted > 0
    {
        // verify compares a collection with its last recorded checksum: a sync that changed
        // documents records the new one, as the step did when it finished.
        crate::engine::ops::verify::collection::record_checksum(&ctx.project, Some(&ctx.run_id), &step.version, name)
            .await
            .map_err(StepError::plain)?;
    }
    if started {
        ctx.emit(EngineEvent::StepFinished {
            version: step.version.clone(),
            name: step.name.clone(),
            status: crate::engine::protocol::StepState::Applied,
            counts: out.counts,
            duration_ms: t0.elapsed().as_millis() as u64,
            dry_run: false,
        })
        .await;
    }
    ctx.emit(EngineEvent::Synced {
        version: step.version.clone(),
        pass,
        inserted: out.inserted,
        updated: out.updated,
        deleted: out.deleted,
        rejected: out.counts.rejected,
        lag_rows,
        lag_seconds,
        mark: out.mark.clone(),
    })
    .await;
    Ok(out)
}

fn progress_event(
    version: &str,
    counts: &Counts,
    batches: u64,
    batch_times: crate::engine::protocol::BatchTimes,
    t0: Instant,
) -> EngineEvent {
    let secs = t0.elapsed().as_secs_f64().max(1e-3);
    EngineEvent::Progress {
        version: version.to_string(),
        progress: Progress {
            step_index: 0,
            rows_done: counts.source,
            rows_total: counts.source,
            written: counts.written,
            skipped: counts.skipped,
            rejected: counts.rejected,
            merged: counts.merged,
            warnings: counts.warnings,
            batches_done: batches,
            batches_total: batches,
            rows_per_sec: counts.source as f64 / secs,
            elapsed_ms: t0.elapsed().as_millis() as u64,
            batch_times,
        },
    }
}

/// The batch's rows split into the live ones (as a batch of their own, decode issues moved
/// with their rows) and the soft-deleted ones.
fn split_deleted(reader: &ChangeReader, page: &SourceBatch) -> (SourceBatch, Vec<Vec<Value>>) {
    let mut live = Vec::with_capacity(page.rows.len());
    let mut deleted = Vec::new();
    let mut index = vec![None; page.rows.len()];
    for (i, row) in page.rows.iter().enumerate() {
        if reader.is_deleted(&page.columns, row) {
            deleted.push(row.clone());
        } else {
            index[i] = Some(live.len());
            live.push(row.clone());
        }
    }
    let issues = page
        .issues
        .iter()
        .filter_map(|(i, issue)| index.get(*i).copied().flatten().map(|j| (j, issue.clone())))
        .collect();
    (
        SourceBatch {
            columns: page.columns.clone(),
            rows: live,
            issues,
            embeds: page.embeds.clone(),
        },
        deleted,
    )
}

/// Decide and apply one batch inside `tx`: changed rows of legacy keys the map holds update
/// their target row, new keys are inserted and mapped (through the same code as `up`),
/// soft-deleted rows delete theirs.
async fn apply_batch(
    tx: &mut DbTx,
    c: &CompiledStep,
    writer: &TargetWriter,
    reader: &ChangeReader,
    page: &SourceBatch,
) -> Result<BatchOutcome, sqlx::Error> {
    let (live, deleted) = split_deleted(reader, page);
    let cache = if c.decides_alone() || live.rows.is_empty() {
        LookupCache::default()
    } else {
        c.prefetch(tx, &live)
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("{e:#}")))?
    };
    let DecidedRows { writes, rejects } = decide_rows(c, writer, &live, &cache);
    let mut out = BatchOutcome::default();
    out.res.rejects = rejects;
    let map = c.map_name.clone().unwrap_or_else(|| written_log_map(&c.version));
    let key_idx = CompiledStep::column_index(&page.columns, &c.id_key_column);
    let deleted_keys: Vec<String> = deleted
        .iter()
        .map(|r| {
            key_idx
                .and_then(|i| r.get(i))
                .and_then(|v| v.to_text())
                .unwrap_or_default()
        })
        .collect();
    let keys: Vec<&str> = writes
        .iter()
        .map(|w| w.0.as_str())
        .chain(deleted_keys.iter().map(String::as_str))
        .collect();
    let known = sync_marks::mapped(tx, &map, &keys).await?;
    // Every row of the batch is read again: earlier open rejects of its key give way to what
    // happens to it now (written, or rejected again below).
    let all_keys: Vec<String> = page
        .rows
        .iter()
        .map(|r| {
            key_idx
                .and_then(|i| r.get(i))
                .and_then(|v| v.to_text())
                .unwrap_or_default()
        })
        .collect();
    let all_keys: Vec<&str> = all_keys.iter().map(String::as_str).collect();
    sync_marks::supersede_rejects(tx, &c.version, &c.source_name, &all_keys).await?;

    let mut fresh: Vec<RowToWrite> = Vec::new();
    for w in writes {
        match known.get(&w.0) {
            None => fresh.push(w),
            Some(m) if m.alias => out.res.counts.skipped += 1,
            Some(m) => {
                let (old_key, values, _, warnings, ri) = w;
                match update_mapped(tx, c, writer, &map, &old_key, m, &values).await {
                    Ok(true) => {
                        out.updated += 1;
                        out.res.counts.written += 1;
                        out.res.warnings.extend(warnings);
                    }
                    Ok(false) => out.res.rejects.push(NewReject {
                        source_key: old_key.clone(),
                        row: CompiledStep::row_json(&live.columns, &live.rows[ri]),
                        field: None,
                        rule: "sync".into(),
                        reason: format!(
                            "the target row of legacy key {old_key} is gone from {} (deleted outside cutover); the change was not applied",
                            c.spec.target.table
                        ),
                        warning: false,
                        waits_for: None,
                    }),
                    Err(e) if crate::engine::db_error::is_row_refusal(&e) => {
                        out.res
                            .rejects
                            .push(refusal_reject(c, &e, &old_key, &live.columns, &live.rows[ri]))
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    if !fresh.is_empty() {
        let inserted = write_decided(
            tx,
            c,
            writer,
            &live,
            DecidedRows {
                writes: fresh,
                rejects: Vec::new(),
            },
        )
        .await?;
        out.inserted += inserted.counts.written;
        out.res.counts.written += inserted.counts.written;
        out.res.counts.skipped += inserted.counts.skipped;
        out.res.rejects.extend(inserted.rejects);
        out.res.warnings.extend(inserted.warnings);
    }
    for (row, key) in deleted.iter().zip(&deleted_keys) {
        match known.get(key) {
            Some(m) if !m.alias => match delete_mapped(tx, c, writer, &map, key, m).await {
                Ok(()) => {
                    out.deleted += 1;
                    out.res.counts.written += 1;
                }
                Err(e) if crate::engine::db_error::is_row_refusal(&e) => {
                    out.res.rejects.push(refusal_reject(c, &e, key, &page.columns, row))
                }
                Err(e) => return Err(e),
            },
            Some(_) => {
                // A duplicate's alias: the row it points at belongs to another source row.
                sync_marks::unmap(tx, &map, key).await?;
                out.res.counts.skipped += 1;
            }
            // Never on the target (rejected, or inserted and deleted between passes).
            None => out.res.counts.skipped += 1,
        }
    }
    out.res.counts.rejected = out.res.rejects.len() as u64;
    out.res.counts.warnings = out.res.warnings.len() as u64;
    Ok(out)
}

/// `WHERE` of the target row a map entry names: the ID-map column, or (a step without an ID
/// map) the natural key whose values the entry holds as a JSON array.
fn mapped_row_filter(
    c: &CompiledStep,
    writer: &TargetWriter,
    m: &Mapped,
    params: &mut Vec<Value>,
) -> Result<String, sqlx::Error> {
    if let Some(id) = &c.spec.id_map {
        params.push(Value::Text(m.new_id.clone()));
        return Ok(format!(
            "{} = {}",
            ident(&id.column),
            writer.param(params.len(), &id.column)
        ));
    }
    let vals: Vec<serde_json::Value> = serde_json::from_str(&m.new_id)
        .map_err(|e| sqlx::Error::Protocol(format!("an unreadable natural key in the ID map ({e})")))?;
    let nk = &c.spec.target.natural_key;
    let mut wh = Vec::new();
    for (col, v) in nk.iter().zip(vals) {
        params.push(Value::from_json(&v));
        wh.push(format!("{} = {}", ident(col), writer.param(params.len(), col)));
    }
    Ok(wh.join(" AND "))
}

/// Overwrite the mapped target row with the row's new values (the ID column stays). False when
/// the row is no longer there.
async fn update_mapped(
    tx: &mut DbTx,
    c: &CompiledStep,
    writer: &TargetWriter,
    map: &str,
    old_key: &str,
    m: &Mapped,
    values: &[Value],
) -> Result<bool, sqlx::Error> {
    let id_col = c.spec.id_map.as_ref().map(|m| m.column.as_str());
    let mut values = values.to_vec();
    if let Some(doc) = &c.collection {
        // A document keeps its id and creation time; its permissions name the kept id. With
        // an ID map the entry is that id; without one it is read by the natural key.
        let kept = if id_col.is_some() {
            Some(m.new_id.clone())
        } else {
            let mut p = Vec::new();
            let filter = mapped_row_filter(c, writer, m, &mut p)?;
            tx.fetch_optional(
                &format!(
                    "SELECT {} FROM {} WHERE {filter}",
                    writer.dialect.as_text(&ident(ID)),
                    ident(&c.spec.target.table)
                ),
                &p,
            )
            .await?
            .and_then(|r| r.first().and_then(|v| v.to_text()))
        };
        match kept {
            Some(kept) => doc.keep_id(&mut values, &kept),
            None => return Ok(false),
        }
    }
    let mut params = Vec::new();
    let mut sets = Vec::new();
    for (col, v) in c.target_columns.iter().zip(&values) {
        if Some(col.as_str()) == id_col || (c.collection.is_some() && (col == ID || col == CREATED_AT)) {
            continue;
        }
        params.push(v.clone());
        sets.push(format!("{} = {}", ident(col), writer.param(params.len(), col)));
    }
    let filter = mapped_row_filter(c, writer, m, &mut params)?;
    tx.execute_raw("SAVEPOINT cutover_rows").await?;
    let sql = format!(
        "UPDATE {} SET {} WHERE {filter}",
        ident(&c.spec.target.table),
        sets.join(", ")
    );
    match tx.execute(&sql, &params).await {
        Ok(n) => {
            tx.execute_raw("RELEASE SAVEPOINT cutover_rows").await?;
            if n > 0 && id_col.is_none() {
                // The natural key itself may have changed: the entry follows the row.
                let nk: Vec<serde_json::Value> = c
                    .spec
                    .target
                    .natural_key
                    .iter()
                    .filter_map(|k| c.target_columns.iter().position(|t| t == k))
                    .map(|i| values[i].to_json())
                    .collect();
                let new_id = serde_json::to_string(&nk).unwrap_or_default();
                if new_id != m.new_id {
                    sync_marks::remap(tx, map, old_key, &new_id).await?;
                }
            }
            Ok(n > 0)
        }
        Err(e) => {
            tx.execute_raw("ROLLBACK TO SAVEPOINT cutover_rows").await?;
            tx.execute_raw("RELEASE SAVEPOINT cutover_rows").await?;
            Err(e)
        }
    }
}

/// Delete the mapped target row of a soft-deleted source row, and forget its key.
async fn delete_mapped(
    tx: &mut DbTx,
    c: &CompiledStep,
    writer: &TargetWriter,
    map: &str,
    key: &str,
    m: &Mapped,
) -> Result<(), sqlx::Error> {
    let mut params = Vec::new();
    let filter = mapped_row_filter(c, writer, m, &mut params)?;
    tx.execute_raw("SAVEPOINT cutover_rows").await?;
    let sql = format!("DELETE FROM {} WHERE {filter}", ident(&c.spec.target.table));
    match tx.execute(&sql, &params).await {
        Ok(_) => {
            tx.execute_raw("RELEASE SAVEPOINT cutover_rows").await?;
            sync_marks::unmap(tx, map, key).await
        }
        Err(e) => {
            tx.execute_raw("ROLLBACK TO SAVEPOINT cutover_rows").await?;
            tx.execute_raw("RELEASE SAVEPOINT cutover_rows").await?;
            Err(e)
        }
    }
}
