//! Merging a B row into its entity: fill blanks, compare, record each disagreement as a
//! discrepancy; and the B rows that link to a page of A rows.

use super::spec::*;
use crate::engine::data::pipeline::{CompiledStep, SourceBatch};
use crate::engine::data::writer::ident;
use crate::engine::db::{Db, DbTx};
use crate::engine::store::DISCREPANCIES;
use crate::engine::value::Value;
use color_eyre::eyre::Result;
use std::sync::Arc;

/// Normalised for comparison: trimmed and case-folded text; `None` when blank.
pub(super) fn compare_form(v: &Value) -> Option<String> {
    let t = v.to_text()?;
    let t = t.trim();
    if t.is_empty() { None } else { Some(t.to_lowercase()) }
}

/// A discrepancy about to be stored.
#[derive(Debug, Clone)]
pub(super) struct NewDiscrepancy {
    pub(super) entity_id: String,
    pub(super) field: String,
    pub(super) value_a: Option<String>,
    pub(super) value_b: Option<String>,
    pub(super) key_a: String,
    pub(super) key_b: String,
}

/// Merge B's values into the entity: fill blanks, list disagreements. Comparisons are with
/// A's own values (`a_own`), never with what another B row filled in.
pub(super) fn merge_into(
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

pub(super) async fn insert_discrepancies(
    tx: &mut DbTx,
    m: &MergeStep,
    ds: &[NewDiscrepancy],
) -> Result<(), sqlx::Error> {
    if ds.is_empty() {
        return Ok(());
    }
    let now = crate::engine::clock::now_iso();
    let side_a = side_name(&m.file.a, "a");
    let side_b = side_name(&m.file.b, "b");
    let columns: Vec<String> = [
        "version",
        "entity_table",
        "entity_id",
        "field",
        "value_a",
        "value_b",
        "side_a",
        "side_b",
        "key_a",
        "key_b",
        "state",
        "created_at",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    let opt = |s: &Option<String>| s.clone().map(Value::Text).unwrap_or(Value::Null);
    // One multi-row statement per page (a statement per discrepancy was thousands a run).
    let rows: Vec<Vec<Value>> = ds
        .iter()
        .map(|d| {
            vec![
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
                Value::Text("open".into()),
                Value::Text(now.clone()),
            ]
        })
        .collect();
    tx.bulk_insert(DISCREPANCIES, &columns, &rows).await
}

/// Fields still blank after merging take their default.
pub fn apply_defaults(m: &MergeStep, vals: &mut [Value]) {
    for f in &m.file.fields {
        if let (Some(d), Some(i)) = (&f.default, m.column(&f.target))
            && vals[i].is_blank()
        {
            vals[i] = d.to_value();
        }
    }
}

pub(super) fn set_flag(m: &MergeStep, vals: &mut [Value], on: bool) {
    if let Some(i) = m.file.target.review_flag.as_deref().and_then(|f| m.column(f)) {
        vals[i] = Value::Bool(on);
    }
}

pub(super) fn key_of(c: &CompiledStep, batch: &SourceBatch, row: &[Value]) -> String {
    CompiledStep::column_index(&batch.columns, &c.id_key_column)
        .and_then(|i| row.get(i))
        .and_then(|v| v.to_text())
        .unwrap_or_default()
}

/// Linked B rows of a page of A keys, read from the source.
pub(super) async fn linked_b_rows(source: &Db, m: &MergeStep, a_keys: &[String]) -> Result<SourceBatch> {
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
pub(super) fn unmerged_b_sql(m: &MergeStep, dialect: crate::engine::db::Dialect) -> String {
    let link = ident(m.file.b.link.as_deref().unwrap_or(""));
    format!(
        "SELECT b.* FROM ({}) b WHERE b.{link} IS NULL OR NOT EXISTS (SELECT 1 FROM ({}) a WHERE a.{} = b.{link})",
        m.b.spec.source_sql(dialect),
        m.a.spec.source_sql(dialect),
        ident(&m.file.a.key)
    )
}
