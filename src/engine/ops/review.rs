//! The discrepancy review queue: disagreements found by merge steps, and the reviewer's
//! decisions, applied to the target at once and recorded in the audit trail.

use crate::engine::data::pipeline::Processed;
use crate::engine::data::writer::{TargetWriter, ident};
use crate::engine::db::{Db, DbTx, Role};
use crate::engine::project::Project;
pub use crate::engine::protocol::views::Discrepancy;
use crate::engine::protocol::views::{RecordField, ReviewRecords};
use crate::engine::steps::merge::MergeStep;
use crate::engine::store::ledger;
use crate::engine::store::{self, DISCREPANCIES, ID_MAP};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use serde::{Deserialize, Serialize};

const COLUMNS: &str = "id, version, entity_table, entity_id, field, value_a, value_b, side_a, side_b, key_a, key_b, state, decision, value_applied, reviewer, decided_at, note";

fn from_row(r: &[Value]) -> Discrepancy {
    let t = |i: usize| r.get(i).and_then(|v| v.to_text());
    Discrepancy {
        id: match r.first() {
            Some(Value::Int(i)) => *i,
            _ => 0,
        },
        step: t(1).unwrap_or_default(),
        entity_table: t(2).unwrap_or_default(),
        entity_id: t(3).unwrap_or_default(),
        field: t(4).unwrap_or_default(),
        values: [t(5), t(6)],
        sides: [t(7).unwrap_or_default(), t(8).unwrap_or_default()],
        keys: [t(9).unwrap_or_default(), t(10).unwrap_or_default()],
        state: t(11).unwrap_or_default(),
        decision: t(12),
        value_applied: t(13),
        reviewer: t(14),
        decided_at: t(15),
        note: t(16),
    }
}

pub async fn list(db: &Db, open_only: bool) -> Result<Vec<Discrepancy>> {
    if !db.table_exists(DISCREPANCIES).await? {
        return Ok(Vec::new());
    }
    let filter = if open_only { " WHERE state = 'open'" } else { "" };
    let rows = db
        .fetch_all(
            &format!("SELECT {COLUMNS} FROM {DISCREPANCIES}{filter} ORDER BY id"),
            &[],
        )
        .await?;
    Ok(rows.rows.iter().map(|r| from_row(r)).collect())
}

async fn get(tx: &mut DbTx, id: i64) -> Result<Option<Discrepancy>> {
    Ok(tx
        .fetch_optional(
            &format!("SELECT {COLUMNS} FROM {DISCREPANCIES} WHERE id = $1"),
            &[Value::Int(id)],
        )
        .await?
        .map(|r| from_row(&r)))
}

/// The two records behind discrepancy `id`, whole, for the reviewer to decide on: each side's
/// source row put through its own step (the values it brings to the entity, in the target's
/// terms, so A and B compare field by field), then the source columns no field takes (a
/// parent, a link). A record that fails its own checks shows its source values, and says so.
pub async fn records(project: &Project, id: i64) -> Result<ReviewRecords> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let res = records_in(project, &target, id).await;
    target.close().await;
    res
}

async fn records_in(project: &Project, target: &Db, id: i64) -> Result<ReviewRecords> {
    // Read only: the transaction is for the lookups a step makes, and is rolled back.
    let mut tx = target.begin().await?;
    let d = get(&mut tx, id)
        .await?
        .ok_or_else(|| eyre!("no discrepancy with id {id}"))?;
    let mut out = ReviewRecords {
        id,
        step: d.step.clone(),
        entity_id: d.entity_id.clone(),
        keys: d.keys.clone(),
        ..Default::default()
    };
    let step = project
        .step(&d.step)
        .ok_or_else(|| eyre!("discrepancy {id} belongs to step {} whose folder is gone", d.step))?;
    let m = MergeStep::load(step)?;
    let Some(url) = project.config.source.as_ref() else {
        out.notes
            .push("no source is configured: the records cannot be read".into());
        tx.rollback().await?;
        return Ok(out);
    };
    let source = Db::connect(url, &project.config.dir, Role::Source).await?;
    let mut sides: Vec<Option<SideRecord>> = Vec::new();
    for (i, (side, key_col)) in [(&m.a, &m.file.a.key), (&m.b, &m.file.b.key)].into_iter().enumerate() {
        let label = format!("{} · {} {}", ["A", "B"][i], d.sides[i], d.keys[i]);
        let sql = format!(
            "SELECT * FROM ({}) src WHERE src.{} = $1",
            side.spec.source_sql(source.dialect()),
            ident(key_col)
        );
        let rows = source.fetch_all(&sql, &[Value::Text(d.keys[i].clone())]).await?;
        let Some(row) = rows.rows.first() else {
            out.notes.push(format!("{label} is no longer in the source"));
            sides.push(None);
            continue;
        };
        let batch = crate::engine::data::pipeline::SourceBatch::new(
            std::sync::Arc::new(rows.columns.clone()),
            vec![row.clone()],
        );
        let cache = side.prefetch(&mut tx, &batch).await?;
        let layout = side.layout(&batch.columns);
        let processed = match side.process(&batch.columns, &layout, row, &cache, crate::engine::clock::today()) {
            Processed::Write { values, .. } => Some(values),
            Processed::Reject(r) => {
                out.notes.push(format!(
                    "{label} does not pass its own checks ({}): its source values are shown",
                    r.reason
                ));
                None
            }
        };
        sides.push(Some(SideRecord {
            columns: rows.columns.clone(),
            row: row.clone(),
            processed,
        }));
    }
    source.close().await;
    tx.rollback().await?;

    let side_column =
        |f: &crate::engine::steps::merge::MergeField, i: usize| if i == 0 { f.a.clone() } else { f.b.clone() };
    for f in &m.file.fields {
        if f.a.is_none() && f.b.is_none() {
            continue;
        }
        let mut field = RecordField {
            name: f.target.clone(),
            values: [None, None],
            present: [false, false],
        };
        for (i, rec) in sides.iter().enumerate() {
            let (Some(col), Some(rec)) = (side_column(f, i), rec) else {
                continue;
            };
            field.present[i] = true;
            let target_at = m.a.target_columns.iter().position(|c| *c == f.target);
            field.values[i] = match (&rec.processed, target_at) {
                (Some(values), Some(at)) => values.get(at).and_then(|v| v.to_text()),
                _ => rec.raw(&col),
            };
            if store::is_secret_column(&f.target) || store::is_secret_column(&col) {
                field.values[i] = field.values[i].as_ref().map(|_| "<redacted>".to_string());
            }
        }
        out.fields.push(field);
    }
    // The source columns no field takes, each on its own side: the parent, the link.
    for (i, rec) in sides.iter().enumerate() {
        let Some(rec) = rec else { continue };
        for (c, v) in rec.columns.iter().zip(&rec.row) {
            let taken = m
                .file
                .fields
                .iter()
                .any(|f| side_column(f, i).is_some_and(|s| s.eq_ignore_ascii_case(c)));
            if taken {
                continue;
            }
            let mut values = [None, None];
            let mut present = [false, false];
            values[i] = if store::is_secret_column(c) {
                v.to_text().map(|_| "<redacted>".to_string())
            } else {
                v.to_text()
            };
            present[i] = true;
            out.fields.push(RecordField {
                name: c.clone(),
                values,
                present,
            });
        }
    }
    Ok(out)
}

/// One side's source row, and what its own step makes of it (`None`: it fails its checks).
struct SideRecord {
    columns: Vec<String>,
    row: Vec<Value>,
    processed: Option<Vec<Value>>,
}

impl SideRecord {
    fn raw(&self, column: &str) -> Option<String> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))
            .and_then(|i| self.row.get(i))
            .and_then(|v| v.to_text())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Keep side A's value.
    TakeA,
    /// Use side B's value.
    TakeB,
    /// Another value, validated like the field.
    Value(String),
    /// Not the same entity: side B's record becomes an entity of its own.
    Split,
}

impl Decision {
    /// `a`, `b`, `value=…` or `split`.
    pub fn parse(s: &str) -> Result<Decision> {
        match s {
            "a" | "take_a" => Ok(Decision::TakeA),
            "b" | "take_b" => Ok(Decision::TakeB),
            "split" => Ok(Decision::Split),
            other => match other.strip_prefix("value=") {
                Some(v) => Ok(Decision::Value(v.to_string())),
                None => Err(eyre!("'{other}' is not a decision: use a, b, value=VALUE or split")),
            },
        }
    }
    pub fn label(&self) -> String {
        match self {
            Decision::TakeA => "take_a".into(),
            Decision::TakeB => "take_b".into(),
            Decision::Value(v) => format!("value={v}"),
            Decision::Split => "split".into(),
        }
    }
}

/// Apply a decision. Idempotent: deciding a decided discrepancy the same way changes nothing.
pub async fn decide(project: &Project, id: i64, decision: &Decision, note: Option<&str>) -> Result<String> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    store::ensure(&target).await?;
    // A decision writes to the target: never in the middle of someone else's run.
    let lock = crate::engine::store::lock::RunLock::acquire(
        &target,
        "review decide",
        std::time::Duration::from_secs(project.config.defaults.lock_stale_after_secs),
    )
    .await
    .map_err(|e| eyre!("{e}"))?;
    if let Err(e) = store::deferred_keys::require_in_place(&target, "review decide").await {
        lock.release().await?;
        return Err(e);
    }
    let res = decide_locked(project, &target, id, decision, note).await;
    lock.release().await?;
    target.close().await;
    res
}

async fn decide_locked(
    project: &Project,
    target: &Db,
    id: i64,
    decision: &Decision,
    note: Option<&str>,
) -> Result<String> {
    let mut tx = target.begin().await?;
    let d = get(&mut tx, id)
        .await?
        .ok_or_else(|| eyre!("no discrepancy with id {id} (see `cutover review list`)"))?;
    if d.state == "void" {
        return Err(eyre!(
            "discrepancy {id} is void: its record was split off into an entity of its own"
        ));
    }
    if d.state == "decided" && d.decision.as_deref() == Some(decision.label().as_str()) {
        return Ok(format!(
            "discrepancy {id} was already decided ({}); nothing changed",
            decision.label()
        ));
    }
    if d.state == "decided" && (d.decision.as_deref() == Some("split") || *decision == Decision::Split) {
        return Err(eyre!(
            "discrepancy {id} is already decided ({}); a split cannot be changed here",
            d.decision.unwrap_or_default()
        ));
    }
    let step = project
        .step(&d.step)
        .ok_or_else(|| eyre!("discrepancy {id} belongs to step {} whose folder is gone", d.step))?;
    let m = MergeStep::load(step)?;
    let writer = TargetWriter::new_in(&mut tx, &m.file.target.table, &m.a.target_columns).await?;
    let id_col = m.file.id_map.column.clone();
    let summary = match decision {
        Decision::Split => split(project, &mut tx, &m, &writer, &d, note).await?,
        _ => {
            let value = match decision {
                Decision::TakeA => d.values[0].clone().map(Value::Text).unwrap_or(Value::Null),
                Decision::TakeB => d.values[1].clone().map(Value::Text).unwrap_or(Value::Null),
                Decision::Value(v) => {
                    m.a.field_value(&d.field, Value::Text(v.clone()), chrono::Utc::now().date_naive())
                        .map_err(|e| eyre!("'{v}' is not a valid {}: {e}", d.field))?
                }
                Decision::Split => Value::Null,
            };
            let before = field_now(&mut tx, &m, &writer, &d).await?.unwrap_or(Value::Null);
            tx.execute(
                &format!(
                    "UPDATE {} SET {} = {} WHERE {} = {}",
                    ident(&m.file.target.table),
                    ident(&d.field),
                    writer.param(1, &d.field),
                    ident(&id_col),
                    writer.param(2, &id_col)
                ),
                &[value.clone(), Value::Text(d.entity_id.clone())],
            )
            .await?;
            mark_decided(&mut tx, id, &decision.label(), value.to_text(), before.to_text(), note).await?;
            format!("discrepancy {id}: {} = {} ({})", d.field, value, decision.label())
        }
    };
    refresh_flag(&mut tx, &m, &writer, &d.entity_id).await?;
    ledger::append_event(
        &mut tx,
        None,
        Some(&d.step),
        "review_decided",
        &serde_json::json!({"discrepancy": id, "entity": d.entity_id, "field": d.field, "decision": decision.label(), "note": note}),
    )
    .await?;
    tx.commit().await?;
    Ok(summary)
}

/// Undo the decision of a decided discrepancy: the field gets back the value it had before the
/// decision, the discrepancy is open again, and the ledger records it. A split is not undone
/// here, and a field changed since the decision is left alone (nothing is undone).
pub async fn undo(project: &Project, id: i64) -> Result<String> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    store::ensure(&target).await?;
    let lock = crate::engine::store::lock::RunLock::acquire(
        &target,
        "review undo",
        std::time::Duration::from_secs(project.config.defaults.lock_stale_after_secs),
    )
    .await
    .map_err(|e| eyre!("{e}"))?;
    if let Err(e) = store::deferred_keys::require_in_place(&target, "review undo").await {
        lock.release().await?;
        return Err(e);
    }
    let res = undo_locked(project, &target, id).await;
    lock.release().await?;
    target.close().await;
    res
}

async fn undo_locked(project: &Project, target: &Db, id: i64) -> Result<String> {
    let mut tx = target.begin().await?;
    let d = get(&mut tx, id)
        .await?
        .ok_or_else(|| eyre!("no discrepancy with id {id} (see `cutover review list`)"))?;
    let decision = d.decision.clone().unwrap_or_default();
    if d.state != "decided" {
        return Err(eyre!("discrepancy {id} is {}; there is no decision to undo", d.state));
    }
    if decision == "split" {
        return Err(eyre!("discrepancy {id} was split; a split cannot be undone here"));
    }
    let before = tx
        .fetch_optional(
            &format!("SELECT value_before FROM {DISCREPANCIES} WHERE id = $1"),
            &[Value::Int(id)],
        )
        .await?
        .and_then(|r| r.into_iter().next())
        .and_then(|v| v.to_text());
    let step = project
        .step(&d.step)
        .ok_or_else(|| eyre!("discrepancy {id} belongs to step {} whose folder is gone", d.step))?;
    let m = MergeStep::load(step)?;
    let writer = TargetWriter::new_in(&mut tx, &m.file.target.table, &m.a.target_columns).await?;
    let id_col = m.file.id_map.column.clone();
    let now = field_now(&mut tx, &m, &writer, &d).await?.and_then(|v| v.to_text());
    if now != d.value_applied {
        return Err(eyre!(
            "{} of {} {} changed after the decision; nothing undone (decide it again instead)",
            d.field,
            d.entity_table,
            d.entity_id
        ));
    }
    tx.execute(
        &format!(
            "UPDATE {} SET {} = {} WHERE {} = {}",
            ident(&m.file.target.table),
            ident(&d.field),
            writer.param(1, &d.field),
            ident(&id_col),
            writer.param(2, &id_col)
        ),
        &[
            before.clone().map(Value::Text).unwrap_or(Value::Null),
            Value::Text(d.entity_id.clone()),
        ],
    )
    .await?;
    tx.execute(
        &format!("UPDATE {DISCREPANCIES} SET state = 'open', decision = NULL, value_applied = NULL, value_before = NULL, reviewer = NULL, decided_at = NULL WHERE id = $1"),
        &[Value::Int(id)],
    )
    .await?;
    refresh_flag(&mut tx, &m, &writer, &d.entity_id).await?;
    // Like a decision's entry: who and what, not the patient's values.
    ledger::append_event(
        &mut tx,
        None,
        Some(&d.step),
        "review_undone",
        &serde_json::json!({"discrepancy": id, "entity": d.entity_id, "field": d.field, "undone": decision, "decided_by": d.reviewer, "decided_at": d.decided_at}),
    )
    .await?;
    tx.commit().await?;
    Ok(format!(
        "discrepancy {id}: {decision} undone; {} is back to {} and the discrepancy is open",
        d.field,
        before.as_deref().unwrap_or("NULL")
    ))
}

/// The decided field's value in the target now (before a decision, and to check that an undo
/// finds the value the decision wrote).
async fn field_now(tx: &mut DbTx, m: &MergeStep, writer: &TargetWriter, d: &Discrepancy) -> Result<Option<Value>> {
    let id_col = &m.file.id_map.column;
    let sql = format!(
        "SELECT {} FROM {} WHERE {} = {}",
        ident(&d.field),
        ident(&m.file.target.table),
        ident(id_col),
        writer.param(1, id_col)
    );
    Ok(tx
        .fetch_optional(&sql, &[Value::Text(d.entity_id.clone())])
        .await?
        .and_then(|r| r.into_iter().next()))
}

async fn mark_decided(
    tx: &mut DbTx,
    id: i64,
    decision: &str,
    applied: Option<String>,
    before: Option<String>,
    note: Option<&str>,
) -> Result<(), sqlx::Error> {
    let opt = |s: Option<String>| s.map(Value::Text).unwrap_or(Value::Null);
    tx.execute(
        &format!("UPDATE {DISCREPANCIES} SET state = 'decided', decision = $1, value_applied = $2, value_before = $3, reviewer = $4, decided_at = $5, note = $6 WHERE id = $7"),
        &[
            Value::Text(decision.into()),
            opt(applied),
            opt(before),
            Value::Text(crate::engine::clock::os_user()),
            Value::Text(crate::engine::clock::now_iso()),
            opt(note.map(|s| s.to_string())),
            Value::Int(id),
        ],
    )
    .await?;
    Ok(())
}

/// The entity's review flag follows its open discrepancies.
async fn refresh_flag(tx: &mut DbTx, m: &MergeStep, writer: &TargetWriter, entity_id: &str) -> Result<(), sqlx::Error> {
    let Some(flag) = &m.file.target.review_flag else {
        return Ok(());
    };
    let open = tx
        .fetch_optional(
            &format!("SELECT 1 FROM {DISCREPANCIES} WHERE entity_id = $1 AND state = 'open'"),
            &[Value::Text(entity_id.into())],
        )
        .await?
        .is_some();
    let id_col = &m.file.id_map.column;
    tx.execute(
        &format!(
            "UPDATE {} SET {} = {} WHERE {} = {}",
            ident(&m.file.target.table),
            ident(flag),
            writer.param(1, flag),
            ident(id_col),
            writer.param(2, id_col)
        ),
        &[Value::Bool(open), Value::Text(entity_id.into())],
    )
    .await?;
    Ok(())
}

/// "Not the same entity": side B's record becomes an entity of its own, rows that follow it
/// move there, and its other discrepancies are void.
async fn split(
    project: &Project,
    tx: &mut DbTx,
    m: &MergeStep,
    writer: &TargetWriter,
    d: &Discrepancy,
    note: Option<&str>,
) -> Result<String> {
    let url = project
        .config
        .source
        .as_ref()
        .ok_or_else(|| eyre!("a split reads side B's record from the source, but no source is configured"))?;
    let source = Db::connect(url, &project.config.dir, Role::Source).await?;
    let key_b = d.keys[1].clone();
    let sql = format!(
        "SELECT * FROM ({}) src WHERE src.{} = $1",
        m.b.spec.source_sql(source.dialect()),
        ident(&m.file.b.key)
    );
    let rows = source.fetch_all(&sql, &[Value::Text(key_b.clone())]).await?;
    let Some(row) = rows.rows.first() else {
        return Err(eyre!(
            "{} {key_b} is no longer in the source; cannot split it off",
            m.b.source_name
        ));
    };
    let batch =
        crate::engine::data::pipeline::SourceBatch::new(std::sync::Arc::new(rows.columns.clone()), vec![row.clone()]);
    let cache = m.b.prefetch(tx, &batch).await?;
    let layout = m.b.layout(&batch.columns);
    let (values, new_id) = match m
        .b
        .process(&batch.columns, &layout, row, &cache, chrono::Utc::now().date_naive())
    {
        Processed::Write { mut values, new_id, .. } => {
            crate::engine::steps::merge::apply_defaults(m, &mut values);
            (values, new_id.unwrap_or_default())
        }
        Processed::Reject(r) => {
            return Err(eyre!(
                "{} {key_b} does not pass its own checks ({}); fix it first",
                m.b.source_name,
                r.reason
            ));
        }
    };
    // Undo what B lent the old entity: its own fields, and blanks of A it filled.
    let old = d.entity_id.clone();
    let a_own = crate::engine::steps::merge::a_own_values(tx, &source, m, &d.keys[0]).await?;
    let id_col = m.file.id_map.column.clone();
    for f in &m.file.fields {
        let Some(i) = m.a.target_columns.iter().position(|c| *c == f.target) else {
            continue;
        };
        if f.b.is_none() || f.target == id_col || values[i].is_blank() {
            continue;
        }
        let a_blank = f.a.is_none() || a_own.as_ref().is_some_and(|a| a[i].is_blank());
        if a_blank {
            tx.execute(
                &format!(
                    "UPDATE {t} SET {c} = NULL WHERE {idc} = {p1} AND {c} = {p2}",
                    t = ident(&m.file.target.table),
                    c = ident(&f.target),
                    idc = ident(&id_col),
                    p1 = writer.param(1, &id_col),
                    p2 = writer.param(2, &f.target)
                ),
                &[Value::Text(old.clone()), values[i].clone()],
            )
            .await?;
        }
    }
    writer.insert(tx, std::slice::from_ref(&values)).await?;
    let b_map = m.b.map_name.clone().unwrap_or_default();
    tx.execute(
        &format!("UPDATE {ID_MAP} SET new_id = $1, alias = 0 WHERE map = $2 AND old_key = $3"),
        &[
            Value::Text(new_id.clone()),
            Value::Text(b_map),
            Value::Text(key_b.clone()),
        ],
    )
    .await?;
    let mut moved = Vec::new();
    for fb in &m.file.follows_b {
        let keys: Vec<Value> = match &fb.source_query {
            Some(q) => source
                .fetch_all(q, &[Value::Text(key_b.clone())])
                .await?
                .rows
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect(),
            None => vec![Value::Text(key_b.clone())],
        };
        if keys.is_empty() {
            continue;
        }
        let w = TargetWriter::new_in(tx, &fb.table, &[fb.column.clone(), fb.match_column.clone()]).await?;
        let mut n = 0;
        for chunk in keys.chunks(500) {
            let mut params = vec![Value::Text(new_id.clone()), Value::Text(old.clone())];
            let mut ph = Vec::new();
            for k in chunk {
                params.push(Value::Text(k.to_text().unwrap_or_default()));
                ph.push(w.param(params.len(), &fb.match_column));
            }
            n += tx
                .execute(
                    &format!(
                        "UPDATE {} SET {c} = {} WHERE {c} = {} AND {} IN ({})",
                        ident(&fb.table),
                        w.param(1, &fb.column),
                        w.param(2, &fb.column),
                        ident(&fb.match_column),
                        ph.join(", "),
                        c = ident(&fb.column)
                    ),
                    &params,
                )
                .await?;
        }
        moved.push(format!("{n} {}", fb.table));
    }
    tx.execute(
        &format!("UPDATE {DISCREPANCIES} SET state = 'void' WHERE key_b = $1 AND entity_id = $2 AND state = 'open' AND id <> $3"),
        &[Value::Text(key_b.clone()), Value::Text(old.clone()), Value::Int(d.id)],
    )
    .await?;
    mark_decided(tx, d.id, "split", Some(new_id.clone()), Some(old), note).await?;
    Ok(format!(
        "discrepancy {}: {} {key_b} split off into entity {new_id}{}",
        d.id,
        m.b.source_name,
        if moved.is_empty() {
            String::new()
        } else {
            format!(" (moved {})", moved.join(", "))
        }
    ))
}

/// Apply decisions made elsewhere (`review export` edited in a spreadsheet): each row is
/// checked and applied like one made here; one bad row does not stop the others.
pub async fn import_csv(project: &Project, path: &std::path::Path) -> Result<Vec<(i64, Result<String, String>)>> {
    let mut rdr = csv::Reader::from_path(path).map_err(|e| eyre!("cannot read {}: {e}", path.display()))?;
    let headers = rdr.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(id_i), Some(dec_i)) = (col("id"), col("decision")) else {
        return Err(eyre!(
            "{}: needs columns id and decision (a, b, value=…, split); note is optional",
            path.display()
        ));
    };
    let note_i = col("note");
    let mut out = Vec::new();
    for (line, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| eyre!("{} line {}: {e}", path.display(), line + 2))?;
        let id: i64 = rec.get(id_i).unwrap_or("").trim().parse().map_err(|_| {
            eyre!(
                "{} line {}: id '{}' is not a number",
                path.display(),
                line + 2,
                rec.get(id_i).unwrap_or("")
            )
        })?;
        let dec = rec.get(dec_i).unwrap_or("").trim();
        if dec.is_empty() {
            continue;
        }
        let note = note_i.and_then(|i| rec.get(i)).filter(|s| !s.is_empty());
        let res = match Decision::parse(dec) {
            Ok(d) => decide(project, id, &d, note).await.map_err(|e| format!("{e:#}")),
            Err(e) => Err(format!("{e:#}")),
        };
        out.push((id, res));
    }
    Ok(out)
}
