//! Rolling back data and merge steps: what it will undo (`preview`), and undoing it
//! (`revert`): restore updated rows, delete written rows, drop the step's ID-map entries,
//! rejects and checkpoint, in one transaction with the ledger change.

use crate::engine::data::writer::{TargetWriter, ident};
use crate::engine::db::{Db, Role};
use crate::engine::exec::{RunCtx, StepError};
use crate::engine::ops::load_compiled;
use crate::engine::plan::{StepState, compute_status};
use crate::engine::project::{Project, StepDef, StepKind};
use crate::engine::protocol::views::RollbackPreview;
use crate::engine::store::ledger::{self, LedgerStatus};
use crate::engine::store::{self, BACKUPS, BatchCheckpoint, ID_MAP, REJECTS};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};

/// What rolling back a data step will do, per table.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct TableRollback {
    pub table: String,
    pub rows_to_delete: u64,
    pub rows_to_restore: u64,
    pub id_map_entries: u64,
    pub rejects: u64,
}

pub async fn table_preview(db: &Db, step: &StepDef) -> Result<TableRollback> {
    let c = load_compiled(step)?;
    preview_of(db, &step.version, &c.spec.target.table).await
}

async fn preview_of(db: &Db, version: &str, table: &str) -> Result<TableRollback> {
    let mut p = TableRollback {
        table: table.to_string(),
        ..Default::default()
    };
    // The engine's tables are created together: none yet means the step wrote nothing.
    if !db.table_exists(ID_MAP).await? {
        return Ok(p);
    }
    let count = |sql: String| async move {
        let r = db.fetch_optional(&sql, &[Value::Text(version.to_string())]).await?;
        Ok::<u64, color_eyre::Report>(match r.and_then(|r| r.into_iter().next()) {
            Some(Value::Int(n)) => n as u64,
            _ => 0,
        })
    };
    p.rows_to_delete = count(format!(
        "SELECT COUNT(*) FROM {ID_MAP} WHERE version = $1 AND alias = 0"
    ))
    .await?;
    p.rows_to_restore = count(format!("SELECT COUNT(*) FROM {BACKUPS} WHERE version = $1")).await?;
    p.id_map_entries = count(format!("SELECT COUNT(*) FROM {ID_MAP} WHERE version = $1")).await?;
    p.rejects = count(format!("SELECT COUNT(*) FROM {REJECTS} WHERE version = $1")).await?;
    Ok(p)
}

/// Undo everything the step's runs wrote: restore updated rows, delete written rows, and drop
/// its ID-map entries, rejects and checkpoint, in one transaction with the ledger change.
pub async fn revert(ctx: &RunCtx, step: &StepDef) -> Result<TableRollback, StepError> {
    let c = load_compiled(step).map_err(StepError::plain)?;
    let preview = preview_of(&ctx.target, &step.version, &c.spec.target.table)
        .await
        .map_err(StepError::plain)?;
    if ctx.dry_run {
        return Ok(preview);
    }
    store::ensure(&ctx.target).await.map_err(StepError::plain)?;
    let writer = TargetWriter::new(&ctx.target, &c.spec.target.table, &c.target_columns)
        .await
        .map_err(StepError::plain)?;
    let v = Value::Text(step.version.clone());
    let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
    let res: Result<(), sqlx::Error> = async {
        // 1. restore rows an `update` overwrote, newest backup last so the oldest image wins
        let backups = tx
            .fetch_all(
                &format!("SELECT key_json, before_json FROM {BACKUPS} WHERE version = $1 ORDER BY id DESC"),
                std::slice::from_ref(&v),
            )
            .await?;
        for b in &backups.rows {
            let key: serde_json::Map<String, serde_json::Value> = b
                .first()
                .and_then(|x| x.as_str())
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            let before: serde_json::Map<String, serde_json::Value> = b
                .get(1)
                .and_then(|x| x.as_str())
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            let mut params = Vec::new();
            let mut sets = Vec::new();
            for (col, val) in &before {
                params.push(Value::from_json(val));
                sets.push(format!("{} = {}", ident(col), writer.param(params.len(), col)));
            }
            let mut wh = Vec::new();
            for (col, val) in &key {
                params.push(Value::from_json(val));
                wh.push(format!("{} = {}", ident(col), writer.param(params.len(), col)));
            }
            if !sets.is_empty() && !wh.is_empty() {
                tx.execute(
                    &format!(
                        "UPDATE {} SET {} WHERE {}",
                        ident(&writer.table),
                        sets.join(", "),
                        wh.join(" AND ")
                    ),
                    &params,
                )
                .await?;
            }
        }
        // 2. delete the rows the step wrote
        match &c.spec.id_map {
            Some(m) => {
                let expr = writer.cast_text_expr("new_id", &m.column);
                tx.execute(
                    &format!(
                        "DELETE FROM {} WHERE {} IN (SELECT {expr} FROM {ID_MAP} WHERE version = $1 AND alias = 0)",
                        ident(&writer.table),
                        ident(&m.column)
                    ),
                    std::slice::from_ref(&v),
                )
                .await?;
            }
            None => {
                let nk = &c.spec.target.natural_key;
                let rows = tx
                    .fetch_all(
                        &format!("SELECT new_id FROM {ID_MAP} WHERE version = $1 AND alias = 0"),
                        std::slice::from_ref(&v),
                    )
                    .await?;
                for r in rows.rows {
                    let vals: Vec<serde_json::Value> = r
                        .first()
                        .and_then(|x| x.as_str())
                        .and_then(|s| serde_json::from_str(s).ok())
                        .unwrap_or_default();
                    let mut params = Vec::new();
                    let wh: Vec<String> = nk
                        .iter()
                        .zip(&vals)
                        .map(|(col, val)| {
                            params.push(Value::from_json(val));
                            format!("{} = {}", ident(col), writer.param(params.len(), col))
                        })
                        .collect();
                    if !wh.is_empty() {
                        tx.execute(
                            &format!("DELETE FROM {} WHERE {}", ident(&writer.table), wh.join(" AND ")),
                            &params,
                        )
                        .await?;
                    }
                }
            }
        }
        // 3. the engine's own records of the step
        for t in [ID_MAP, REJECTS, BACKUPS, store::DISCREPANCIES] {
            tx.execute(&format!("DELETE FROM {t} WHERE version = $1"), std::slice::from_ref(&v))
                .await?;
        }
        BatchCheckpoint::delete(&mut tx, &step.version).await?;
        ledger::set_status(&mut tx, &step.version, LedgerStatus::Reverted).await?;
        ledger::append_event(
            &mut tx,
            Some(&ctx.run_id),
            Some(&step.version),
            "reverted",
            &serde_json::to_value(&preview).unwrap_or_default(),
        )
        .await?;
        Ok(())
    }
    .await;
    match res {
        Ok(()) => {
            tx.commit().await.map_err(StepError::plain)?;
            Ok(preview)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(StepError::sql(e))
        }
    }
}

pub async fn rollback_preview(project: &Project, version: &str) -> Result<RollbackPreview> {
    let step = project
        .step(version)
        .ok_or_else(|| eyre!("no migration has version {version}"))?;
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let rows = ledger::load(&target).await?;
    let status = compute_status(&project.steps, &rows);
    let refused =
        crate::engine::plan::plan_down(&status, &crate::engine::protocol::DownTarget::Only(version.to_string()))
            .err()
            .map(|e| format!("{e:#}"));
    let applied = status
        .iter()
        .any(|s| s.version == version && matches!(s.state, StepState::Applied | StepState::Modified));
    let lines = match step.kind {
        StepKind::Schema => match crate::engine::steps::schema::down_statements(step) {
            Ok(st) => st.into_iter().map(|s| format!("{s};")).collect(),
            Err(e) => vec![e.message],
        },
        _ => {
            let p = table_preview(&target, step).await?;
            vec![
                format!("delete {} rows written to {}", p.rows_to_delete, p.table),
                format!(
                    "restore {} rows of {} that the step updated",
                    p.rows_to_restore, p.table
                ),
                format!("drop {} ID-map entries", p.id_map_entries),
                format!("drop {} rejects and warnings", p.rejects),
            ]
        }
    };
    target.close().await;
    Ok(RollbackPreview {
        version: step.version.clone(),
        name: step.name.clone(),
        kind: step.kind,
        lines,
        refused: if applied || refused.is_some() {
            refused
        } else {
            Some(format!("{version} is not applied"))
        },
    })
}
