//! A data step that starts (not a resumed one) on a PostgreSQL table leaves the table's foreign
//! keys out while it writes, and adds them back once its rows are in (as `pg_restore` and
//! pgloader do): row by row, each reference runs a trigger that finds and locks its parent
//! row, which costs the clinic's link table 7.7 s of 250k rows against 0.44 s to check them
//! all at the end. Rows already in the table were checked by the key when it was dropped.
//!
//! No row the key would have refused is kept: at the step's end the rows that reference
//! nothing (orphans) become rejects exactly as a row the table refused does (the row deleted
//! with its ID-map entry, the source row kept in the reject store, the books moved from
//! written to rejected), in the transaction that adds the key back. The keys are recorded
//! (`store::deferred_keys`) so a killed run's next command adds them back first.
//!
//! Deferred only where orphans are the exception: every referencing column is filled by a
//! lookup (into an ID map, or into the parent table) that rejects or empties a value it does
//! not find, so a written reference named a parent that was there when its row was decided.

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::data::pipeline::CompiledStep;
use crate::engine::data::reader::SourceReader;
use crate::engine::data::spec::DupPolicy;
use crate::engine::db::{Db, TableForeignKey, quote_ident};
use crate::engine::exec::batch::RejectNote;
use crate::engine::exec::{RunCtx, StepError};
use crate::engine::protocol::{EngineEvent, NoticeLevel};
use crate::engine::store::deferred_ddl::Pending;
use crate::engine::store::deferred_keys;
use crate::engine::store::{BatchCheckpoint, NewReject, RejectStore};
use crate::engine::transform::reason::Quoted;
use crate::engine::transform::{LookupSpec, OnError, Transform};
use crate::engine::value::Value;

/// Orphans handled per statement (their ids, keys and source rows are held together).
const ORPHANS_PER_CHUNK: usize = 2000;

/// Drop the foreign keys of the table step `c` is about to fill (a start, not a resume) that
/// may wait for the step's end, recording them; the keys dropped. Only when rejects go to the
/// store (`continue_on_error`: a step that stops at its first reject must stop before the
/// batch that holds it), the step has an ID map (an orphan's legacy key is found through it),
/// reads a database (its source row is read again for the reject store) and never updates a
/// row that is there (`on_duplicate = "update"`: such a row is not the step's to reject). A
/// catalog question that fails costs speed only.
pub async fn defer(
    ctx: &RunCtx,
    c: &CompiledStep,
    continue_on_error: bool,
    reads_database: bool,
) -> Result<Vec<TableForeignKey>, StepError> {
    let spec = &c.spec;
    if !continue_on_error
        || !reads_database
        || spec.id_map.is_none()
        || c.map_name.is_none()
        || spec.sync.is_some()
        || c.collection.is_some()
        || spec.target.on_duplicate == DupPolicy::Update
    {
        return Ok(Vec::new());
    }
    let table = &spec.target.table;
    let keys = match ctx.target.foreign_keys_of(table).await {
        Ok(k) => k,
        Err(e) => {
            tracing::debug!(
                "step {}: the foreign keys of {table} stay as they are: {e:#}",
                c.version
            );
            return Ok(Vec::new());
        }
    };
    let keys: Vec<TableForeignKey> = keys
        .into_iter()
        .filter(|k| &k.parent_table != table && k.columns.iter().all(|col| filled_by_lookup(c, col, k)))
        .collect();
    if keys.is_empty() {
        return Ok(keys);
    }
    deferred_keys::defer(&ctx.target, &c.version, table, &keys)
        .await
        .map_err(StepError::plain)?;
    let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    ctx.emit(EngineEvent::Notice {
        level: NoticeLevel::Info,
        message: format!(
            "step {}: the foreign key(s) {} of {table} are checked once the step's rows are in",
            c.version,
            names.join(", ")
        ),
    })
    .await;
    Ok(keys)
}

/// Whether target column `column` is filled by exactly one field whose value is the answer of
/// a lookup that never passes a value it did not find: through an ID map, or through the
/// key's parent table and column.
fn filled_by_lookup(c: &CompiledStep, column: &str, key: &TableForeignKey) -> bool {
    let mut fields = c.spec.fields.iter().filter(|f| f.target.eq_ignore_ascii_case(column));
    let (Some(f), None) = (fields.next(), fields.next()) else {
        return false;
    };
    if f.value.is_some() || f.run.is_some() {
        return false;
    }
    let parent_column = key
        .columns
        .iter()
        .position(|c| c.eq_ignore_ascii_case(column))
        .and_then(|i| key.parent_columns.get(i));
    match f.transforms.last() {
        Some(Transform::Lookup(LookupSpec::Map(m))) => m.on_missing != OnError::KeepWarn,
        Some(Transform::Lookup(LookupSpec::Table(t))) => {
            t.on_missing != OnError::KeepWarn
                && t.table == key.parent_table
                && parent_column.is_some_and(|p| p.eq_ignore_ascii_case(&t.column))
        }
        _ => false,
    }
}

/// Add back the keys `keys` step `c` left out, however the step ended, before its books
/// close: rows that reference nothing become rejects first (see the module). `cp` is the
/// step's last checkpoint, moved with them; the notes are for the events.
pub async fn add_back(
    ctx: &RunCtx,
    c: &Arc<CompiledStep>,
    source: &Db,
    keys: &[TableForeignKey],
    cp: &mut BatchCheckpoint,
) -> Result<Vec<RejectNote>, StepError> {
    let mut notes = Vec::new();
    let (mut added, mut first_error) = (Vec::new(), None);
    for key in keys {
        // The record this run wrote when it dropped the key.
        let p = Pending {
            version: c.version.clone(),
            name: key.name.clone(),
            table_name: c.spec.target.table.clone(),
            sql: key.add_sql.clone(),
        };
        // Each key is tried, whatever another one did: one that cannot be added keeps its
        // record (and the step fails), the others are back.
        match add_one_back(ctx, c, source, key, &p, cp).await {
            Ok(rejected) => {
                notes.extend(rejected);
                added.push(p.name.clone());
            }
            Err(e) => {
                tracing::error!("step {}: {}", c.version, e.message);
                first_error.get_or_insert(e);
            }
        }
    }
    if !added.is_empty() {
        ctx.emit(EngineEvent::Notice {
            level: NoticeLevel::Info,
            message: format!("step {}: added back the foreign key(s) {}", c.version, added.join(", ")),
        })
        .await;
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(notes),
    }
}

/// Add back, as they are, the keys an earlier attempt of step `version` left out: a step
/// retried after the server went away resumes from its checkpoint and leaves nothing out
/// itself, but must not end with its table's keys missing. Orphans make this fail (the step
/// with it), keeping the record.
pub async fn add_back_left_over(ctx: &RunCtx, version: &str) -> Result<(), StepError> {
    let done = deferred_keys::restore(&ctx.target, Some(version))
        .await
        .map_err(StepError::plain)?;
    if !done.done.is_empty() {
        ctx.emit(EngineEvent::Notice {
            level: NoticeLevel::Info,
            message: format!("step {version}: added back the foreign key(s) {}", done.done.join(", ")),
        })
        .await;
    }
    Ok(())
}

/// Add key `p` back: at once in the common case (no orphan; adding the key is its one check
/// of every row), else after its orphans became rejects.
async fn add_one_back(
    ctx: &RunCtx,
    c: &Arc<CompiledStep>,
    source: &Db,
    key: &TableForeignKey,
    p: &Pending,
    cp: &mut BatchCheckpoint,
) -> Result<Vec<RejectNote>, StepError> {
    let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
    match deferred_keys::add_back_in(&mut tx, p).await {
        Ok(()) => {
            tx.commit().await.map_err(StepError::plain)?;
            Ok(Vec::new())
        }
        Err(e) if crate::engine::db_error::is_row_refusal(&e) => {
            let _ = tx.rollback().await;
            reject_orphans(ctx, c, source, key, p, cp).await
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(refused_again(e, p))
        }
    }
}

fn refused_again(e: sqlx::Error, p: &Pending) -> StepError {
    StepError::plain(color_eyre::Report::new(e).wrap_err(format!(
        "adding the foreign key {} of {} again (step {} wrote its table without it); the key stays recorded and the next `up`, `down` or `sync` tries to add it again first",
        p.name, p.table_name, p.version
    )))
}

/// One orphan: the row's id and its referencing values, as text.
struct Orphan {
    id: String,
    values: Vec<Option<String>>,
}

/// The rows of the step's table that `key` refuses become rejects, and the key is added, in
/// one transaction.
async fn reject_orphans(
    ctx: &RunCtx,
    c: &Arc<CompiledStep>,
    source: &Db,
    key: &TableForeignKey,
    p: &Pending,
    cp: &mut BatchCheckpoint,
) -> Result<Vec<RejectNote>, StepError> {
    let d = ctx.target.dialect();
    let q = |n: &str| quote_ident(d, n);
    let table = &c.spec.target.table;
    let (Some(map), Some(id_map)) = (c.map_name.as_deref(), c.spec.id_map.as_ref()) else {
        return Err(StepError::msg(format!(
            "step {}: no ID map to find orphans' keys by",
            c.version
        )));
    };
    let orphan_where = d.orphan_condition(&key.columns, &key.parent, &key.parent_columns);
    let texts: Vec<String> = key.columns.iter().map(|k| d.as_text(&format!("c.{}", q(k)))).collect();
    let select = format!(
        "SELECT {}, {} FROM {} c WHERE {orphan_where}",
        d.as_text(&format!("c.{}", q(&id_map.column))),
        texts.join(", "),
        q(table)
    );

    let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
    let rows = tx.fetch_all(&select, &[]).await.map_err(StepError::sql)?;
    let orphans: Vec<Orphan> = rows
        .rows
        .into_iter()
        .filter_map(|r| {
            Some(Orphan {
                id: r.first()?.as_str()?.to_string(),
                values: r.get(1..)?.iter().map(|v| v.as_str().map(str::to_string)).collect(),
            })
        })
        .collect();
    // The step's own orphans go in one statement, while the ID map still names them as its
    // rows; one of another step's (the key was valid on them when it was dropped) stays, and
    // adding the key back then fails with the server's reason.
    let deleted = tx
        .execute(
            &format!(
                "DELETE FROM {} c WHERE {orphan_where} AND {} IN ({})",
                q(table),
                d.as_text(&format!("c.{}", q(&id_map.column))),
                crate::engine::store::written_ids_sql()
            ),
            &[Value::Text(c.version.clone())],
        )
        .await
        .map_err(StepError::sql)?;
    let by_id: HashMap<&str, &Orphan> = orphans.iter().map(|o| (o.id.as_str(), o)).collect();
    let reader = SourceReader::new(source.clone(), c.clone(), true);
    let mut notes = Vec::new();
    let mut removed_warnings = 0;
    let mut rejected = 0u64;
    for chunk in orphans.chunks(ORPHANS_PER_CHUNK) {
        let ids: Vec<String> = chunk.iter().map(|o| o.id.clone()).collect();
        let keys = deferred_keys::forget_mapped_rows(&mut tx, map, &c.version, &ids)
            .await
            .map_err(StepError::sql)?;
        let legacy: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
        let found = reader
            .rows_with_text_in(&c.id_key_column, &legacy)
            .await
            .map_err(StepError::plain)?;
        let key_index = CompiledStep::column_index(&found.columns, &c.id_key_column);
        let source_rows: HashMap<String, &Vec<Value>> = key_index
            .map(|ki| {
                found
                    .rows
                    .iter()
                    .filter_map(|r| Some((r.get(ki)?.to_text()?, r)))
                    .collect()
            })
            .unwrap_or_default();
        let mut rejects = Vec::with_capacity(keys.len());
        for (legacy_key, id) in &keys {
            let Some(o) = by_id.get(id.as_str()) else {
                continue;
            };
            // A source row gone since the step read it is kept by its key alone.
            let row = source_rows
                .get(legacy_key)
                .map(|r| CompiledStep::row_json(&found.columns, r))
                .unwrap_or_else(|| serde_json::json!({ c.id_key_column.clone(): legacy_key }));
            rejects.push(orphan_reject(c, key, legacy_key, o, row));
        }
        removed_warnings += deferred_keys::forget_warnings(&mut tx, &ctx.run_id, &c.version, &legacy)
            .await
            .map_err(StepError::sql)?;
        RejectStore::insert(&mut tx, &ctx.run_id, &c.version, &c.source_name, &rejects)
            .await
            .map_err(StepError::sql)?;
        rejected += rejects.len() as u64;
        notes.extend(
            rejects
                .iter()
                .take(crate::engine::exec::batch::EVENTS_PER_BATCH)
                .map(|r| RejectNote {
                    source_table: c.source_name.clone(),
                    source_key: r.source_key.clone(),
                    rule: r.rule.clone(),
                    reason: r.reason.clone(),
                    column: r.field.clone(),
                }),
        );
    }
    if deleted != rejected {
        // Nothing of it commits: the books would not balance.
        return Err(StepError::msg(format!(
            "step {}: the foreign key {} of {table} refused {deleted} row(s) of this step, but {rejected} of them have an ID-map entry to file a reject under; nothing was changed; the key stays recorded and the next `up`, `down` or `sync` tries to add it again first",
            c.version, key.name
        )));
    }
    let mut moved = cp.clone();
    moved.counts.written = moved.counts.written.saturating_sub(rejected);
    moved.counts.rejected += rejected;
    moved.counts.warnings = moved.counts.warnings.saturating_sub(removed_warnings);
    moved.save(&mut tx, &c.version).await.map_err(StepError::sql)?;
    deferred_keys::add_back_in(&mut tx, p)
        .await
        .map_err(|e| refused_again(e, p))?;
    tx.commit().await.map_err(StepError::plain)?;
    *cp = moved;
    tracing::warn!(
        "step {}: {rejected} row(s) of {table} referenced nothing through {} and became rejects",
        c.version,
        key.name
    );
    Ok(notes)
}

/// The reject of an orphan, worded as the table's own refusal of the row would be.
fn orphan_reject(
    c: &CompiledStep,
    key: &TableForeignKey,
    legacy_key: &str,
    o: &Orphan,
    row: serde_json::Value,
) -> NewReject {
    let named: Vec<String> = key
        .columns
        .iter()
        .zip(&o.values)
        .map(|(col, v)| format!("{col} {}", Quoted(v.as_deref().unwrap_or(""))))
        .collect();
    NewReject {
        source_key: legacy_key.to_string(),
        row,
        field: key.columns.first().cloned(),
        rule: "target".into(),
        reason: format!(
            "the target table {} refused the row (column {}): foreign key {}: {} is not in {} ({}); checked when the step added the key back at its end",
            c.spec.target.table,
            key.columns.join(", "),
            key.name,
            named.join(", "),
            key.parent_table,
            key.parent_columns.join(", ")
        ),
        warning: false,
        waits_for: None,
    }
}
