//! Retrying one rejected row of a merge step, and reading side A's own values of an entity
//! (what review decisions compare against).

use super::entity::*;
use super::phases::*;
use super::spec::*;
use crate::engine::clock::today;
use crate::engine::data::pipeline::{CompiledStep, Processed, SourceBatch};
use crate::engine::data::writer::{IdMapEntry, TargetWriter, ident, insert_id_map};
use crate::engine::db::{Db, DbTx};
use crate::engine::protocol::Counts;
use crate::engine::store::{self, NewReject, RejectStore};
use crate::engine::value::Value;
use color_eyre::eyre::Result;
use std::sync::Arc;

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
        let mut r = phase_a_page(tx, m, LinkedFrom::Query(source), &batch).await?;
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

pub(super) async fn read_entity(
    tx: &mut DbTx,
    m: &MergeStep,
    writer: &TargetWriter,
    id: &str,
) -> Result<Vec<Value>, sqlx::Error> {
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
pub(super) async fn update_entity(
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
