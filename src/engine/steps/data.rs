//! Running a data step: read the source in keyset pages on one task, decide rows, and commit
//! each batch's rows, ID-map entries, rejects and checkpoint in one transaction, so a run
//! killed at any instant resumes from its last checkpoint with nothing lost or written twice.

use crate::engine::data::pipeline::{CompiledStep, LookupCache, Processed, SourceBatch, written_log_map};
use crate::engine::data::reader::SourceReader;
use crate::engine::data::spec::{DataStep, DupPolicy};
use crate::engine::data::writer::{IdMapEntry, TargetWriter, insert_id_map, join_key, mapped_ids};
use crate::engine::db::{Db, DbTx};
use crate::engine::exec::batch::{
    BatchPlan, BatchStep, EVENTS_PER_BATCH, FilledTable, FlagNote, PageOutcome, RejectNote, run_batches,
};
use crate::engine::exec::{PreflightCount, RunCtx, StepError, StepResult};
use crate::engine::project::StepDef;
use crate::engine::protocol::Counts;
use crate::engine::source::Source;
use crate::engine::source::file::{self, FileSource, records::FileOptions};
use crate::engine::source::read_ahead::ReadAhead;
use crate::engine::store::{BatchCheckpoint, NewReject, RejectStore};
use crate::engine::value::Value;
use color_eyre::eyre::Result;
use std::collections::HashMap;
use std::sync::Arc;

/// Where a data step's rows come from: the source database, or a file.
#[derive(Clone)]
enum Origin {
    Db(Db),
    File {
        path: std::path::PathBuf,
        opts: FileOptions,
        /// The file's SHA-256 when the step started: the file must not change under it.
        checksum: String,
    },
}

impl Origin {
    async fn open(ctx: &RunCtx, c: &CompiledStep) -> Result<Origin> {
        if !c.spec.source.is_file() {
            return Ok(Origin::Db(ctx.source().await?.clone()));
        }
        let path = file::step_file(&ctx.project.config, c)?;
        let opts = c.spec.source.file_options()?;
        let at = path.clone();
        let checksum = tokio::task::spawn_blocking(move || file::file_checksum(&at))
            .await
            .map_err(|e| color_eyre::eyre::eyre!("reading the file stopped: {e}"))?
            .map_err(|e| color_eyre::eyre::eyre!("step {}: cannot read {}: {e}", c.version, path.display()))?;
        Ok(Origin::File { path, opts, checksum })
    }

    /// The source's own row count.
    async fn count(&self, c: &CompiledStep) -> Result<u64> {
        match self {
            Origin::Db(db) => crate::engine::source::table::count_source(db, c).await,
            Origin::File { path, opts, .. } => {
                let (path, opts) = (path.clone(), opts.clone());
                tokio::task::spawn_blocking(move || file::count_rows_blocking(&path, &opts))
                    .await
                    .map_err(|e| color_eyre::eyre::eyre!("counting the file stopped: {e}"))?
                    .map_err(|e| color_eyre::eyre::eyre!("{e}"))
            }
        }
    }
}

/// After the last page: the rows read must be the rows the source has. A difference means
/// the source changed during the run (rows added below the last key are never read) or the
/// pager skipped rows; either way the step must not be called applied. A file must still be
/// the file the step started on, byte for byte.
/// `counted`: the pre-flight's count, taken instead of counting again while nobody has
/// committed to the source since before it was taken (a view costs a second or more per
/// count at 200k rows); it is an independent count all the same.
async fn reconcile_source_count(
    origin: &Origin,
    c: &CompiledStep,
    read: u64,
    counted: Option<&PreflightCount>,
) -> Result<(), StepError> {
    if let Origin::File { path, checksum, .. } = origin {
        let at = path.clone();
        let now = tokio::task::spawn_blocking(move || file::file_checksum(&at))
            .await
            .map_err(|e| StepError::msg(format!("reading the file stopped: {e}")))?
            .map_err(|e| StepError::msg(format!("step {}: cannot read {}: {e}", c.version, path.display())))?;
        if &now != checksum {
            return Err(StepError::msg(format!(
                "step {}: the file {} changed while the step read it (its SHA-256 is not the one it had at the start). Nothing read was lost; leave the file alone, roll the step back (`cutover down --to` the step before) and run it again",
                c.version,
                path.display()
            )));
        }
    }
    let known = match counted {
        Some(p) => p.still_holds().await,
        None => None,
    };
    let have = match known {
        Some(rows) => rows,
        None => origin.count(c).await.map_err(StepError::plain)?,
    };
    if have != read {
        return Err(StepError::msg(format!(
            "step {}: the source {} has {have} rows but the step read {}. The source changed while the step ran, or rows were skipped; nothing read was lost (every row read is written, skipped or rejected). Stop writes to the source, roll the step back (`cutover down --to` the step before) and run it again",
            c.version, c.source_name, read
        )));
    }
    Ok(())
}

/// A skipped row's alias the ID map already holds (a second import of the same rows, e.g. the
/// same file as a new import job) is not written again. One that maps the key to another row
/// stays out, with a warning: references keep resolving to the row mapped first.
async fn drop_known_aliases(
    tx: &mut DbTx,
    entries: Vec<IdMapEntry>,
    warnings: &mut Vec<NewReject>,
) -> Result<Vec<IdMapEntry>, sqlx::Error> {
    let Some(map) = entries.iter().find(|e| e.alias).map(|e| e.map.clone()) else {
        return Ok(entries);
    };
    let keys: Vec<&str> = entries
        .iter()
        .filter(|e| e.alias && e.map == map)
        .map(|e| e.old_key.as_str())
        .collect();
    let known = mapped_ids(tx, &map, &keys).await?;
    if known.is_empty() {
        return Ok(entries);
    }
    let mut kept = Vec::with_capacity(entries.len());
    for e in entries {
        match known.get(&e.old_key) {
            Some(id) if e.alias && e.map == map => {
                if *id != e.new_id {
                    warnings.push(NewReject {
                        source_key: e.old_key.clone(),
                        row: serde_json::Value::Null,
                        field: None,
                        rule: "id_map".into(),
                        reason: format!(
                            "skipped as a duplicate of row {}, but ID map '{map}' already maps key {} to row {id}; references to the key keep resolving there",
                            e.new_id, e.old_key
                        ),
                        warning: true,
                        waits_for: None,
                    });
                }
            }
            _ => kept.push(e),
        }
    }
    Ok(kept)
}

/// A row that passed: legacy key, target values, new id, warnings, index in the batch.
pub(crate) type RowToWrite = (String, Vec<Value>, Option<String>, Vec<NewReject>, usize);

/// What one batch did.
#[derive(Default)]
pub(crate) struct BatchResult {
    pub(crate) counts: Counts,
    pub(crate) rejects: Vec<NewReject>,
    pub(crate) warnings: Vec<NewReject>,
    /// The rows as written, handed back so that freeing them (a value per cell) need not
    /// hold up the writer (see `DataBatches::write_page`).
    pub(crate) written: Vec<Vec<Value>>,
}

/// The half of a batch that needs nothing but the rows (and, for lookups, the batch's
/// `LookupCache`): every row decoded, transformed, validated and fitted to the target's
/// columns, or a reject.
pub(crate) struct DecidedRows {
    pub(crate) writes: Vec<RowToWrite>,
    pub(crate) rejects: Vec<NewReject>,
}

/// Decide every row of `batch`. Pure CPU work: for a step without lookups it runs ahead of
/// the writer, while the target stores the previous batch.
pub(crate) fn decide_rows(
    c: &CompiledStep,
    writer: &TargetWriter,
    batch: &SourceBatch,
    cache: &LookupCache,
) -> DecidedRows {
    let today = crate::engine::clock::today();
    let key_idx = CompiledStep::column_index(&batch.columns, &c.id_key_column);
    let mut out = DecidedRows {
        writes: Vec::with_capacity(batch.rows.len()),
        rejects: Vec::new(),
    };
    let layout = c.layout(&batch.columns);
    let mut issues = batch.issues.iter().peekable();
    for (ri, row) in batch.rows.iter().enumerate() {
        // A cell the reader could not decode without loss: the row is a reject, never a
        // guess (the cell is NULL in `row`).
        let mut bad: Option<&crate::engine::decode::CellIssue> = None;
        while let Some((i, issue)) = issues.peek() {
            if *i > ri {
                break;
            }
            if *i == ri && bad.is_none() {
                bad = Some(issue);
            }
            issues.next();
        }
        if let Some(issue) = bad {
            let column = batch.columns.get(issue.column).cloned().unwrap_or_default();
            let source_key = key_idx
                .and_then(|i| row.get(i))
                .and_then(|v| v.to_text())
                .unwrap_or_default();
            out.rejects.push(NewReject {
                source_key,
                row: CompiledStep::row_json(&batch.columns, row),
                field: Some(column.clone()),
                rule: "decode".into(),
                reason: format!("source column {column}: {}", issue.reason),
                warning: false,
                waits_for: None,
            });
            continue;
        }
        match c.process_embedded(&batch.columns, &layout, row, &batch.embeds, cache, today) {
            Processed::Write {
                key,
                mut values,
                new_id,
                warnings,
            } => {
                let map_key = key_idx
                    .and_then(|i| row.get(i))
                    .and_then(|v| v.to_text())
                    .unwrap_or(key);
                if let Some(r) = fit_to_target(writer, &mut values, &map_key, &batch.columns, row) {
                    out.rejects.push(r);
                    continue;
                }
                out.writes.push((map_key, values, new_id, warnings, ri));
            }
            Processed::Reject(r) => out.rejects.push(r),
        }
    }
    out
}

/// Decide and write one batch inside `tx`.
async fn write_batch(
    tx: &mut DbTx,
    c: &CompiledStep,
    writer: &TargetWriter,
    batch: &SourceBatch,
    cache: &LookupCache,
) -> Result<BatchResult, sqlx::Error> {
    let decided = decide_rows(c, writer, batch, cache);
    write_decided(tx, c, writer, batch, decided).await
}

/// Write the decided rows of one batch inside `tx`: natural-key duplicates, the rows, their
/// ID-map entries.
pub(crate) async fn write_decided(
    tx: &mut DbTx,
    c: &CompiledStep,
    writer: &TargetWriter,
    batch: &SourceBatch,
    decided: DecidedRows,
) -> Result<BatchResult, sqlx::Error> {
    let mut res = BatchResult::default();
    res.counts.source = batch.rows.len() as u64;
    let nk = &c.spec.target.natural_key;
    let nk_idx: Vec<usize> = nk
        .iter()
        .filter_map(|k| c.target_columns.iter().position(|t| t == k))
        .collect();
    let id_col = c.spec.id_map.as_ref().map(|m| m.column.clone());
    let key_idx = CompiledStep::column_index(&batch.columns, &c.id_key_column);
    let DecidedRows { writes, rejects } = decided;
    res.rejects = rejects;
    // Natural-key duplicates: against the target, and within this batch (first one wins).
    // Keys known to be new are also unique to the step (see `natural_keys_are_new`): no
    // duplicates to look for, in the table or among the batch's rows.
    let find_duplicates = !nk_idx.is_empty() && !writer.natural_keys_are_new;
    let existing = if !find_duplicates {
        HashMap::new()
    } else {
        let keys: Vec<Vec<Value>> = writes
            .iter()
            .map(|w| nk_idx.iter().map(|i| w.1[*i].clone()).collect())
            .collect();
        writer.existing(tx, nk, id_col.as_deref(), &keys).await?
    };
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut inserts: Vec<Vec<Value>> = Vec::with_capacity(writes.len());
    let mut map_entries: Vec<IdMapEntry> = Vec::with_capacity(writes.len());
    let map_name = c.map_name.clone().unwrap_or_else(|| written_log_map(&c.version));
    // Rows to insert, each with its old key, new id, batch index and warnings: a row the
    // target refuses takes its ID-map entry and warnings out with it.
    let mut pending: Vec<(String, Option<String>, usize, Vec<NewReject>)> = Vec::with_capacity(writes.len());
    for (old_key, values, new_id, warnings, ri) in writes {
        // A natural key with a NULL part is no key: NULL equals nothing, not even another NULL
        // (as in the target's own unique index), so such rows are never each other's duplicates.
        let nk_key = if !find_duplicates || nk_idx.iter().any(|i| values[*i].is_null()) {
            None
        } else {
            Some(join_key(&nk_idx.iter().map(|i| values[*i].clone()).collect::<Vec<_>>()))
        };
        let dup_of: Option<String> = nk_key
            .as_ref()
            .and_then(|k| existing.get(k).cloned().or_else(|| seen.get(k).cloned()));
        if let Some(existing_id) = dup_of {
            match c.spec.target.on_duplicate {
                DupPolicy::Skip => {
                    res.counts.skipped += 1;
                    if c.spec.id_map.is_some() && !existing_id.is_empty() {
                        // References to the skipped row resolve to the row that was kept.
                        map_entries.push(IdMapEntry {
                            map: map_name.clone(),
                            old_key,
                            new_id: existing_id,
                            alias: true,
                        });
                    }
                    continue;
                }
                DupPolicy::Error => {
                    res.rejects.push(NewReject {
                        source_key: old_key.clone(),
                        row: batch
                            .rows
                            .iter()
                            .find(|r| {
                                key_idx.and_then(|i| r.get(i)).and_then(|v| v.to_text()).as_deref()
                                    == Some(old_key.as_str())
                            })
                            .map(|r| CompiledStep::row_json(&batch.columns, r))
                            .unwrap_or(serde_json::Value::Null),
                        field: Some(nk.join(",")),
                        rule: "duplicate".into(),
                        reason: format!(
                            "duplicate {} {}",
                            if c.spec.target.document_key.is_empty() {
                                nk.join(", ")
                            } else {
                                c.spec.target.document_key.join(", ")
                            },
                            nk_key.unwrap_or_default().replace('\u{1f}', ", ")
                        ),
                        warning: false,
                        waits_for: None,
                    });
                    continue;
                }
                DupPolicy::Update => {
                    let mut values = values;
                    if let Some(doc) = &c.collection {
                        let kept = if existing_id.is_empty() {
                            writer
                                .existing(
                                    tx,
                                    nk,
                                    Some(crate::engine::data::collection::ID),
                                    &[nk_idx.iter().map(|i| values[*i].clone()).collect()],
                                )
                                .await?
                                .into_values()
                                .next()
                                .unwrap_or_default()
                        } else {
                            existing_id.clone()
                        };
                        if !kept.is_empty() {
                            doc.keep_id(&mut values, &kept);
                        }
                    }
                    let nk_vals: Vec<Value> = nk_idx.iter().map(|i| values[*i].clone()).collect();
                    let mut skip: Vec<String> = id_col.iter().cloned().collect();
                    if c.collection.is_some() {
                        // An updated document keeps its id (also without an ID map) and the
                        // time it was created.
                        for col in [
                            crate::engine::data::collection::ID,
                            crate::engine::data::collection::CREATED_AT,
                        ] {
                            if !skip.iter().any(|s| s == col) {
                                skip.push(col.to_string());
                            }
                        }
                    }
                    tx.execute_raw("SAVEPOINT cutover_rows").await?;
                    match writer
                        .update_with_backup(tx, &c.version, nk, &nk_vals, &values, &skip)
                        .await
                    {
                        Ok(()) => tx.execute_raw("RELEASE SAVEPOINT cutover_rows").await?,
                        Err(e) if crate::engine::db_error::is_row_refusal(&e) => {
                            tx.execute_raw("ROLLBACK TO SAVEPOINT cutover_rows").await?;
                            tx.execute_raw("RELEASE SAVEPOINT cutover_rows").await?;
                            res.rejects
                                .push(refusal_reject(c, &e, &old_key, &batch.columns, &batch.rows[ri]));
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                    res.counts.written += 1;
                    if c.spec.id_map.is_some() && !existing_id.is_empty() {
                        map_entries.push(IdMapEntry {
                            map: map_name.clone(),
                            old_key,
                            new_id: existing_id,
                            alias: true,
                        });
                    }
                    res.warnings.extend(warnings);
                    continue;
                }
            }
        }
        if let Some(k) = nk_key {
            seen.insert(k, new_id.clone().unwrap_or_default());
        }
        pending.push((old_key, new_id, ri, warnings));
        inserts.push(values);
    }
    // The rows' ID-map entries (or, without a map, their natural keys as JSON, for rollback)
    // are made while the server stores the rows.
    let mut entries: Vec<(IdMapEntry, usize, Vec<NewReject>)> = Vec::new();
    let make_entries = || {
        entries = pending
            .into_iter()
            .zip(&inserts)
            .map(|((old_key, new_id, ri, warnings), values)| {
                let new_id = new_id.unwrap_or_else(|| {
                    serde_json::to_string(&nk_idx.iter().map(|i| values[*i].to_json()).collect::<Vec<_>>())
                        .unwrap_or_default()
                });
                let entry = IdMapEntry {
                    map: map_name.clone(),
                    old_key,
                    new_id,
                    alias: false,
                };
                (entry, ri, warnings)
            })
            .collect();
    };
    let refused = writer.insert_isolating(tx, &inserts, make_entries).await?;
    let mut refused = refused.into_iter().peekable();
    for (i, (entry, ri, warnings)) in entries.into_iter().enumerate() {
        if refused.peek().is_some_and(|(r, _)| *r == i) {
            if let Some((_, e)) = refused.next() {
                res.rejects
                    .push(refusal_reject(c, &e, &entry.old_key, &batch.columns, &batch.rows[ri]));
            }
            continue;
        }
        res.counts.written += 1;
        res.warnings.extend(warnings);
        map_entries.push(entry);
    }
    let map_entries = drop_known_aliases(tx, map_entries, &mut res.warnings).await?;
    res.counts.rejected = res.rejects.len() as u64;
    res.counts.warnings = res.warnings.len() as u64;
    if c.spec.id_map.is_none() && c.spec.sync.is_none() {
        // Only rollback reads what such a step wrote: one record per page (see written_keys).
        let keys: Vec<&str> = map_entries.iter().map(|e| e.new_id.as_str()).collect();
        crate::engine::store::written_keys::record(tx, &c.version, &keys).await?;
    } else {
        insert_id_map(tx, &c.version, &map_entries).await?;
    }
    res.written = inserts;
    Ok(res)
}

/// Whether every natural key a step starting now will write is new to its table, so that its
/// batches can leave out the look-up of their keys in the table (a plain copy's largest cost
/// on the server after the rows themselves). All of:
/// - the natural key is the source key, copied as it is (no transform, no constant): the
///   pre-flight found the source key unique and never NULL, and pages come in key order, so
///   no two rows of the step share a natural key;
/// - the table is empty as the step starts (the caller asks only then; a resumed step is not
///   asked at all: its earlier batches are in the table);
/// - a unique index of the table covers the natural key, so a row that collides all the same
///   (two source keys the target's type makes equal, like '1' and '01' into an integer, or a
///   row another writer put there meanwhile) is refused by the table and becomes a reject: it
///   is never written twice.
///
/// A sync step, a document collection and a MySQL/MariaDB target keep the look-up.
async fn natural_keys_are_new(target: &Db, c: &CompiledStep) -> bool {
    let spec = &c.spec;
    let nk = &spec.target.natural_key;
    if nk.is_empty() || spec.sync.is_some() || c.collection.is_some() {
        return false;
    }
    let mut sources = Vec::with_capacity(nk.len());
    for k in nk {
        let copied = spec.fields.iter().find(|f| &f.target == k).and_then(|f| {
            (f.transforms.is_empty() && f.value.is_none() && f.run.is_none())
                .then_some(f.source.as_deref())
                .flatten()
        });
        match copied {
            Some(s) if c.key_columns.iter().any(|kc| kc == s) => sources.push(s),
            _ => return false,
        }
    }
    if !c.key_columns.iter().all(|kc| sources.contains(&kc.as_str())) {
        return false;
    }
    match target.unique_index_within(&spec.target.table, nk).await {
        Ok(unique) => unique,
        Err(e) => {
            tracing::debug!("step {}: natural keys are looked up in the table: {e:#}", c.version);
            false
        }
    }
}

/// A reject for a row the target refused, naming the column and the server's reason.
pub(crate) fn refusal_reject(
    c: &CompiledStep,
    e: &sqlx::Error,
    key: &str,
    columns: &[String],
    row: &[Value],
) -> NewReject {
    let column = crate::engine::db_error::refused_column(e, &c.target_columns);
    let secret = column.as_deref().is_some_and(crate::engine::validate::is_secret_field);
    NewReject {
        source_key: key.to_string(),
        row: CompiledStep::row_json(columns, row),
        field: column.clone(),
        rule: "target".into(),
        reason: format!(
            "the target table {} refused the row{}: {}",
            c.spec.target.table,
            column.map(|c| format!(" (column {c})")).unwrap_or_default(),
            crate::engine::db_error::describe_refusal(e, secret)
        ),
        warning: false,
        waits_for: None,
    }
}

/// A row with a value the target would store as something else is a reject (see
/// `TargetWriter::fit`).
fn fit_to_target(
    writer: &TargetWriter,
    values: &mut [Value],
    key: &str,
    columns: &[String],
    row: &[Value],
) -> Option<NewReject> {
    let unfit = writer.fit(values).err()?;
    Some(NewReject {
        source_key: key.to_string(),
        row: CompiledStep::row_json(columns, row),
        field: Some(unfit.column),
        rule: unfit.rule.into(),
        reason: unfit.reason,
        warning: false,
        waits_for: None,
    })
}

pub(crate) async fn store_rejects(
    tx: &mut DbTx,
    run_id: &str,
    c: &CompiledStep,
    res: &BatchResult,
) -> Result<(), sqlx::Error> {
    RejectStore::insert(tx, run_id, &c.version, &c.source_name, &res.rejects).await?;
    RejectStore::insert(tx, run_id, &c.version, &c.source_name, &res.warnings).await
}

/// Pages of `reader` read ahead of the writer, decided there too when the step needs nothing
/// from the target to decide (no lookups), or needs only what other steps committed: then
/// `lookups` (the target; none in a dry run, whose transaction holds uncommitted work) answers
/// a page's lookups on a connection of its own while the writer writes the page before.
fn read_ahead<S: Source>(
    c: &Arc<CompiledStep>,
    writer: Arc<TargetWriter>,
    lookups: Option<Db>,
    reader: S,
    start: Option<Value>,
    size: usize,
) -> ReadAhead<DataPage> {
    if c.decides_alone() {
        let c = c.clone();
        return ReadAhead::spawn_prepared(reader, start, size, move |batch| {
            let decided = decide_rows(&c, &writer, &batch, &LookupCache::default());
            DataPage {
                batch,
                decided: Some(decided),
            }
        });
    }
    match lookups.filter(|_| c.looks_up_only_elsewhere()) {
        Some(target) => {
            let c = c.clone();
            ReadAhead::spawn_with(reader, start, size, move |batch| {
                let (c, writer, target) = (c.clone(), writer.clone(), target.clone());
                async move { decide_ahead(c, writer, &target, batch).await }
            })
        }
        None => ReadAhead::spawn_prepared(reader, start, size, |batch| DataPage { batch, decided: None }),
    }
}

/// A page's lookups answered in a read transaction of its own (rolled back: it only reads),
/// then its rows decided on a blocking thread.
async fn decide_ahead(
    c: Arc<CompiledStep>,
    writer: Arc<TargetWriter>,
    target: &Db,
    batch: SourceBatch,
) -> Result<DataPage> {
    // Deferred on SQLite: a reader never waits for the writer's open batch (WAL).
    let mut tx = target.begin_read().await?;
    let cache = c.prefetch(&mut tx, &batch).await;
    let _ = tx.rollback().await;
    let cache = cache?;
    crate::engine::source::read_ahead::prepare_on_blocking_thread(move || {
        let decided = decide_rows(&c, &writer, &batch, &cache);
        DataPage {
            batch,
            decided: Some(decided),
        }
    })
    .await
}

/// A data step in the batch loop: pages from its source read one ahead, each decided and
/// written with its rejects and ID-map entries.
struct DataBatches {
    c: Arc<CompiledStep>,
    source: Origin,
    batch_size: usize,
    continue_on_error: bool,
    /// The target table's foreign keys this run left out, added back by `close`.
    deferred_keys: Vec<crate::engine::db::TableForeignKey>,
    writer: Option<Arc<TargetWriter>>,
    pages: Option<ReadAhead<DataPage>>,
    /// The pre-flight's count of the source, which `at_end` reconciles with while it holds.
    counted: Option<PreflightCount>,
}

/// A page on its way to the writer: decided ahead when the step needs nothing from the
/// target to decide (no lookups), else decided by the writer after its lookups.
struct DataPage {
    batch: SourceBatch,
    decided: Option<DecidedRows>,
}

impl DataBatches {
    fn notes(&self, rejects: &[NewReject]) -> Vec<RejectNote> {
        rejects
            .iter()
            .take(EVENTS_PER_BATCH)
            .map(|r| RejectNote {
                source_table: self.c.source_name.clone(),
                source_key: r.source_key.clone(),
                rule: r.rule.clone(),
                reason: r.reason.clone(),
                column: r.field.clone(),
            })
            .collect()
    }
}

impl BatchStep for DataBatches {
    type Page = DataPage;

    async fn prepare(
        &mut self,
        ctx: &RunCtx,
        dry_tx: Option<&mut DbTx>,
        resume_from: &Option<Value>,
    ) -> Result<(), StepError> {
        let (table, columns) = (&self.c.spec.target.table, &self.c.target_columns);
        let dry = dry_tx.is_some();
        let mut dry_tx = dry_tx;
        let lookups = dry_tx.is_none().then(|| ctx.target.clone());
        if let Some(tx) = dry_tx.as_deref_mut() {
            // A dry run creates the collection inside its own transaction (rolled back).
            let notices = ensure_table_in(tx, &self.c, true).await?;
            for n in notices {
                tracing::warn!("{n}");
            }
        }
        let mut writer = match dry_tx {
            Some(tx) => TargetWriter::new_in(tx, table, columns).await,
            None => TargetWriter::new(&ctx.target, table, columns).await,
        }
        .map_err(StepError::plain)?;
        if !dry && resume_from.is_none() {
            // A failed look costs speed only: the table is then treated as holding rows.
            let empty = ctx.target.is_empty(table).await.unwrap_or_else(|e| {
                tracing::debug!("step {}: {table} is taken for a table with rows: {e:#}", self.c.version);
                false
            });
            if empty {
                writer.natural_keys_are_new = natural_keys_are_new(&ctx.target, &self.c).await;
                crate::engine::steps::index_deferral::defer(ctx, &self.c).await?;
            }
            let reads_database = matches!(self.source, Origin::Db(_));
            self.deferred_keys =
                crate::engine::steps::key_deferral::defer(ctx, &self.c, self.continue_on_error, reads_database).await?;
        }
        let writer = Arc::new(writer);
        self.writer = Some(writer.clone());
        let (start, size) = (
            resume_from.clone(),
            crate::engine::exec::batch::page_rows(self.batch_size),
        );
        // Taken whatever happens next, so a stream opened for this step never outlives it.
        let opened_ahead = match dry {
            true => None,
            false => ctx.next_source.take(&self.c.version).await,
        };
        self.pages = Some(match &self.source {
            Origin::Db(db) => {
                let mut reader = SourceReader::new(db.clone(), self.c.clone(), true);
                reader.check().await.map_err(StepError::msg)?;
                if let Some(p) = opened_ahead
                    && start.is_none()
                {
                    // Its rows are the source as it was when it opened: only while nobody
                    // has committed to the source since the pre-flight are they its rows now.
                    if ctx.preflight_counts.unchanged().await {
                        reader.adopt(p);
                    } else {
                        tracing::info!(
                            "step {}: the source changed since the pre-flight; its stream opened ahead is read again",
                            self.c.version
                        );
                    }
                }
                read_ahead(&self.c, writer, lookups, reader, start, size)
            }
            Origin::File { .. } => {
                let reader = FileSource::new(&ctx.project.config, self.c.clone()).map_err(StepError::plain)?;
                reader.check().await.map_err(StepError::msg)?;
                read_ahead(&self.c, writer, lookups, reader, start, size)
            }
        });
        Ok(())
    }

    async fn next_page(&mut self) -> Result<Option<DataPage>, StepError> {
        let pages = self
            .pages
            .as_mut()
            .ok_or_else(|| StepError::msg("the source was not opened"))?;
        pages.next().await.map_err(|e| {
            StepError::plain(e.wrap_err(format!(
                "step {}: nothing after the last committed batch was written; `cutover up` resumes from there",
                self.c.version
            )))
        })
    }

    async fn at_end(&mut self, counts: &Counts) -> Result<(), StepError> {
        reconcile_source_count(&self.source, &self.c, counts.source, self.counted.as_ref()).await
    }

    async fn close(&mut self, ctx: &RunCtx, cp: &mut BatchCheckpoint) -> Result<Vec<RejectNote>, StepError> {
        // Keys first: a key's orphans leave the table before its indexes are built over it.
        let keys = std::mem::take(&mut self.deferred_keys);
        let added = match &self.source {
            // Only a database source has keys left out (see `key_deferral::defer`).
            Origin::Db(source) if !keys.is_empty() => {
                crate::engine::steps::key_deferral::add_back(ctx, &self.c, source, &keys, cp).await
            }
            _ => Ok(Vec::new()),
        };
        let added = match added {
            Ok(notes) => crate::engine::steps::key_deferral::add_back_left_over(ctx, &self.c.version)
                .await
                .map(|()| notes),
            Err(e) => Err(e),
        };
        let built = crate::engine::steps::index_deferral::build_again(ctx, &self.c.version).await;
        match (added, built) {
            (Ok(notes), Ok(())) => Ok(notes),
            (Err(e), Ok(())) | (Ok(_), Err(e)) => Err(e),
            (Err(first), Err(e)) => {
                tracing::error!("step {}: {}", self.c.version, e.message);
                Err(first)
            }
        }
    }

    fn filled_table(&self) -> Option<FilledTable> {
        let spec = &self.c.spec;
        self.writer.as_ref().map(|w| FilledTable {
            table: w.table.clone(),
            // Its own statements find target rows by the natural key only (duplicates,
            // updates), and not at all when every key is new (a fresh copy of the source
            // key); a sync pass compares whole rows.
            probed: spec.sync.is_none().then(|| match w.natural_keys_are_new {
                true => Vec::new(),
                false => spec.target.natural_key.clone(),
            }),
        })
    }

    async fn write_page(&mut self, tx: &mut DbTx, run_id: &str, page: DataPage) -> Result<PageOutcome, StepError> {
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| StepError::msg("the target was not opened"))?;
        let DataPage { batch: page, decided } = page;
        let next_key = page.rows.last().and_then(|r| self.c.page_key(&page.columns, r));
        let decided = match decided {
            Some(d) => d,
            None => {
                let cache = self.c.prefetch(tx, &page).await.map_err(StepError::plain)?;
                decide_rows(&self.c, writer, &page, &cache)
            }
        };
        let mut res = write_decided(tx, &self.c, writer, &page, decided)
            .await
            .map_err(StepError::sql)?;
        store_rejects(tx, run_id, &self.c, &res).await.map_err(StepError::sql)?;
        // Freeing a page is a free per cell: done beside the writer, which goes on to the
        // next page meanwhile.
        let garbage = (page, std::mem::take(&mut res.written));
        tokio::task::spawn_blocking(move || drop(garbage));
        Ok(PageOutcome {
            counts: res.counts,
            rejects: self.notes(&res.rejects),
            flags: res
                .warnings
                .iter()
                .take(EVENTS_PER_BATCH)
                .map(|w| FlagNote {
                    source_key: w.source_key.clone(),
                    field: w.field.clone().unwrap_or_default(),
                    reason: w.reason.clone(),
                })
                .collect(),
            next_key,
        })
    }
}

/// The first stream of `step`'s source, opened ahead of the step (see `exec::NextSource`):
/// `None` unless it is a data step reading a query (a view) from a SQLite source file.
pub async fn open_source_ahead(
    project: Arc<crate::engine::project::Project>,
    source: Db,
    step: StepDef,
) -> Option<crate::engine::db::PrefetchedStream> {
    let c = match load(&step) {
        Ok(c) => c,
        // The step reports it when it runs.
        Err(_) => return None,
    };
    if c.spec.source.is_file() {
        return None;
    }
    let size = crate::engine::exec::batch::page_rows(crate::engine::exec::batch_size_of(&project, c.spec.batch_size));
    let mut reader = SourceReader::new(source, Arc::new(c), true);
    match reader.open_first_stream(size).await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!("step {}: its source is not opened ahead: {e:#}", step.version);
            None
        }
    }
}

/// A data step's `step.toml`, compiled.
pub fn load(step: &StepDef) -> Result<CompiledStep> {
    let spec = DataStep::load(&step.file("step.toml"))?;
    CompiledStep::compile(&step.version, spec)
}

pub async fn run(ctx: &RunCtx, step: &StepDef) -> Result<StepResult, StepError> {
    let mut c = load(step).map_err(StepError::plain)?;
    c.file_store = Some(crate::engine::data::pipeline::FileStore::for_project(
        &ctx.project.config,
        !ctx.dry_run,
    ));
    c.run_id = Some(ctx.run_id.clone());
    c.sweep_store_temp_files();
    let source = Origin::open(ctx, &c).await.map_err(StepError::plain)?;
    let batch_size = ctx.batch_size(c.spec.batch_size);
    let continue_on_error = ctx.continue_on_error(c.spec.continue_on_error);
    let counted = ctx.preflight_counts.take(&step.version, &c.source_name);
    let total = match &counted {
        Some(p) => p.rows,
        None => source.count(&c).await.map_err(StepError::plain)?,
    };
    let plan = BatchPlan {
        total,
        batch_size,
        continue_on_error,
    };
    ensure_collection(ctx, &c).await?;
    crate::engine::ops::verify::baseline::take_pre_step_checksums(ctx, step, vec![c.spec.target.table.clone()]).await?;
    let c = Arc::new(c);
    record_first_mark(ctx, step, &c).await?;
    let mut s = DataBatches {
        c,
        source,
        batch_size,
        continue_on_error,
        deferred_keys: Vec::new(),
        writer: None,
        pages: None,
        counted,
    };
    let result = run_batches(ctx, step, plan, &mut s).await?;
    if let (StepResult::Done(_), Some(name), false) = (&result, &s.c.spec.target.collection, ctx.dry_run) {
        // What verify compares the collection with later: the whole collection, as it is now.
        crate::engine::ops::verify::collection::record_checksum(&ctx.project, Some(&ctx.run_id), &step.version, name)
            .await
            .map_err(StepError::plain)?;
    }
    Ok(result)
}

/// The collection's table and indexes inside `tx` (nothing for a table step).
async fn ensure_table_in(tx: &mut DbTx, c: &CompiledStep, dry_run: bool) -> Result<Vec<String>, StepError> {
    let Some(name) = &c.spec.target.collection else {
        return Ok(Vec::new());
    };
    crate::engine::data::collection::ensure_table(tx, name, &c.spec.target.indexes, dry_run)
        .await
        .map_err(StepError::plain)
}

/// A collection step's table and indexes, created when missing before the step first writes
/// (so its pre-step checksum is the empty table's, which a rollback leaves behind). A dry run
/// creates them in its own transaction instead (`prepare`).
async fn ensure_collection(ctx: &RunCtx, c: &CompiledStep) -> Result<(), StepError> {
    if c.spec.target.collection.is_none() || ctx.dry_run {
        return Ok(());
    }
    let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
    let notices = ensure_table_in(&mut tx, c, false).await?;
    tx.commit().await.map_err(StepError::plain)?;
    for message in notices {
        ctx.emit(crate::engine::protocol::EngineEvent::Notice {
            level: crate::engine::protocol::NoticeLevel::Warning,
            message,
        })
        .await;
    }
    Ok(())
}

/// Record the first mark of a step with `[sync]` as `up` starts it: the largest cursor value
/// the source has before the step reads a row, so every change made while `up` runs is read
/// again by the first sync (an upsert makes that harmless). A resumed step keeps its mark.
async fn record_first_mark(ctx: &RunCtx, step: &StepDef, c: &Arc<CompiledStep>) -> Result<(), StepError> {
    if c.spec.sync.is_none() || ctx.dry_run {
        return Ok(());
    }
    let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
    crate::engine::store::ensure_in(&mut tx).await.map_err(StepError::sql)?;
    crate::engine::store::sync_marks::ensure_in(&mut tx)
        .await
        .map_err(StepError::sql)?;
    let resumed = crate::engine::store::BatchCheckpoint::load(&mut tx, &step.version)
        .await
        .map_err(StepError::plain)?
        .is_some_and(|cp| cp.batches > 0);
    if resumed
        && crate::engine::store::sync_marks::SyncMark::load(&mut tx, &step.version)
            .await
            .map_err(StepError::sql)?
            .is_some()
    {
        let _ = tx.rollback().await;
        return Ok(());
    }
    let source = ctx.source().await.map_err(StepError::plain)?.clone();
    let mut reader = crate::engine::sync::read::ChangeReader::new(source, c.clone()).map_err(StepError::plain)?;
    let max = reader.max_cursor().await.map_err(StepError::plain)?;
    let mark = crate::engine::store::sync_marks::SyncMark {
        cursor: max.and_then(|v| v.to_text()),
        last_key: None,
        rows_applied: 0,
        updated_at: None,
    };
    mark.save(&mut tx, &step.version).await.map_err(StepError::sql)?;
    tx.commit().await.map_err(StepError::plain)?;
    Ok(())
}

/// Retry one rejected row of a data step inside `tx`: the row goes through the step's pipeline
/// again. Returns the reject when it is still rejected, else the row's books and warnings.
/// `source`: the source database, which a step with `[[embed]]` reads the row's children from
/// again (they may have been fixed too).
pub async fn retry_row(
    tx: &mut DbTx,
    c: &Arc<CompiledStep>,
    writer: &TargetWriter,
    rejected: &crate::engine::store::RejectRecord,
    source: Option<&Db>,
) -> Result<(Option<NewReject>, Counts, Vec<NewReject>)> {
    let row = &rejected.row;
    let obj = row.as_object().cloned().unwrap_or_default();
    // Such a row is read from the source again (where it was fixed), never written from the stub.
    let incomplete = cells_not_kept(rejected);
    let columns: Vec<String> = obj.keys().cloned().collect();
    let mut row: Vec<Value> = obj.values().map(Value::from_json).collect();
    let mut issues = Vec::new();
    if !incomplete.is_empty() {
        let source = match source {
            Some(s) if !c.spec.source.is_file() => s,
            _ => {
                return Err(color_eyre::eyre::eyre!(
                    "step {}: the reject of key {} holds {} that the reject store does not keep; it cannot be retried from the store{}",
                    c.version,
                    rejected.source_key,
                    incomplete.join(", "),
                    if c.spec.source.is_file() {
                        ": fix the file and roll the step back and run it again (`cutover down --to`, `cutover up`)"
                    } else {
                        ""
                    }
                ));
            }
        };
        let key: Vec<Value> = c
            .key_columns
            .iter()
            .map(|k| obj.get(k).map(Value::from_json).unwrap_or(Value::Null))
            .collect();
        let mut reader = crate::engine::data::reader::SourceReader::new(source.clone(), Arc::clone(c), true);
        let fresh = reader.row_by_key(&key).await?;
        let Some(src_row) = fresh.rows.first() else {
            return Err(color_eyre::eyre::eyre!(
                "step {}: the source no longer has the row of key {}; nothing to retry",
                c.version,
                rejected.source_key
            ));
        };
        for (ci, col) in columns.iter().enumerate() {
            if !incomplete.contains(col) {
                continue;
            }
            let Some(si) = CompiledStep::column_index(&fresh.columns, col) else {
                continue;
            };
            row[ci] = src_row[si].clone();
            issues.extend(
                fresh
                    .issues
                    .iter()
                    .filter(|(r, i)| *r == 0 && i.column == si)
                    .map(|(_, i)| {
                        (
                            0usize,
                            crate::engine::decode::CellIssue {
                                column: ci,
                                ..i.clone()
                            },
                        )
                    }),
            );
        }
    }
    let mut batch = SourceBatch::new(Arc::new(columns), vec![row]);
    batch.issues = issues;
    if !c.spec.embed.is_empty() {
        let source = source.ok_or_else(|| {
            color_eyre::eyre::eyre!(
                "step {}: retrying a row with [[embed]] needs the source database",
                c.version
            )
        })?;
        let key_type = crate::engine::data::embed::parent_key_type(source, &c.spec, &c.key_column).await?;
        crate::engine::data::reader::fetch_children(source, c, &mut batch, key_type.as_deref()).await?;
    }
    let cache = c.prefetch(tx, &batch).await?;
    let mut res = write_batch(tx, c, writer, &batch, &cache).await?;
    Ok((res.rejects.pop(), res.counts, res.warnings))
}

/// Whether retrying `r` needs its row from the source.
pub fn needs_source_row(r: &crate::engine::store::RejectRecord) -> bool {
    !cells_not_kept(r).is_empty()
}

/// Columns of a rejected row the reject store did not keep: bytes (kept as their length) and
/// the cell a `decode` reject could not read (kept as NULL, unless an operator's `rejects fix`
/// replaced it, in which case that value is retried).
fn cells_not_kept(r: &crate::engine::store::RejectRecord) -> Vec<String> {
    r.row
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| {
            Value::is_bytes_stand_in(v) || (r.rule == "decode" && v.is_null() && r.field.as_deref() == Some(k.as_str()))
        })
        .map(|(k, _)| k.clone())
        .collect()
}
