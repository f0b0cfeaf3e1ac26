//! Schema steps: `up.sql` / `down.sql`, each run in one transaction together with its ledger
//! row, so the ledger never claims a change that did not commit.

use crate::engine::db::DbTx;
use crate::engine::exec::{RunCtx, StepError};
use crate::engine::project::StepDef;
use crate::engine::protocol::{Counts, EngineEvent};
use crate::engine::sqlsplit::split_statements;
use crate::engine::store::ledger::{self, LedgerStatus};

pub async fn apply(ctx: &RunCtx, step: &StepDef) -> Result<Counts, StepError> {
    let sql = step.read("up.sql").map_err(StepError::plain)?;
    let statements = split_statements(&sql);
    if ctx.dry_run {
        let mut guard = ctx.dry_tx.lock().await;
        for (i, s) in statements.iter().enumerate() {
            ctx.emit(EngineEvent::Statement {
                version: step.version.clone(),
                index: i + 1,
                sql: s.clone(),
            })
            .await;
            // Run it inside the plan's rolled-back transaction, so a broken statement shows up
            // now and later dry-run steps see the schema.
            if let Some(tx) = guard.as_mut()
                && let Err(e) = tx.execute_raw(s).await
            {
                return Err(StepError {
                    message: e.to_string(),
                    statement: Some(s.clone()),
                    ..StepError::default()
                });
            }
        }
        return Ok(Counts::default());
    }
    let started = crate::engine::clock::now_iso();
    let t0 = std::time::Instant::now();
    // Written (and committed) first, so a process killed mid-step leaves `running` behind.
    {
        let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
        ledger::upsert(
            &mut tx,
            step,
            LedgerStatus::Running,
            &ctx.run_id,
            &started,
            None,
            &Counts::default(),
            None,
            None,
        )
        .await
        .map_err(StepError::plain)?;
        tx.commit().await.map_err(StepError::plain)?;
    }
    let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
    if let Err((stmt, err)) = run_statements(&mut tx, &statements).await {
        let _ = tx.rollback().await;
        let msg = crate::engine::config::redact_url(&err.to_string());
        record_failure(ctx, step, &started, t0, &msg, Some(&stmt)).await;
        return Err(StepError {
            message: msg,
            statement: Some(stmt),
            ..StepError::default()
        });
    }
    let dur = t0.elapsed().as_millis() as i64;
    let res: Result<(), sqlx::Error> = async {
        ledger::upsert(&mut tx, step, LedgerStatus::Applied, &ctx.run_id, &started, Some(dur), &Counts::default(), None, None).await?;
        ledger::append_event(&mut tx, Some(&ctx.run_id), Some(&step.version), "applied", &serde_json::json!({"name": step.name, "kind": "schema", "statements": statements.len(), "duration_ms": dur})).await?;
        Ok(())
    }
    .await;
    if let Err(e) = res {
        let _ = tx.rollback().await;
        let msg = e.to_string();
        record_failure(ctx, step, &started, t0, &msg, None).await;
        return Err(StepError::msg(msg));
    }
    if let Some(token) = &ctx.lock_token
        && let Err(e) = crate::engine::store::lock::fence(&mut tx, token).await
    {
        let _ = tx.rollback().await;
        return Err(StepError::lock_lost(e));
    }
    tx.commit().await.map_err(StepError::plain)?;
    Ok(Counts::default())
}

async fn record_failure(
    ctx: &RunCtx,
    step: &StepDef,
    started: &str,
    t0: std::time::Instant,
    msg: &str,
    stmt: Option<&str>,
) {
    let dur = t0.elapsed().as_millis() as i64;
    if let Err(e) = ledger::record_failure(
        &ctx.target,
        step,
        &ctx.run_id,
        started,
        dur,
        &Counts::default(),
        msg,
        stmt,
    )
    .await
    {
        tracing::error!("could not record the failure of {} in the ledger: {e:#}", step.version);
    }
}

async fn run_statements(tx: &mut DbTx, statements: &[String]) -> Result<(), (String, sqlx::Error)> {
    for s in statements {
        tx.execute_raw(s).await.map_err(|e| (s.clone(), e))?;
    }
    Ok(())
}

pub fn down_statements(step: &StepDef) -> Result<Vec<String>, StepError> {
    let p = step.file("down.sql");
    if !p.exists() {
        return Err(StepError::plain(color_eyre::eyre::eyre!(
            "migration {} has no down.sql, so it cannot be reverted; write {} first",
            step.folder_name(),
            p.display()
        )));
    }
    Ok(split_statements(&step.read("down.sql").map_err(StepError::plain)?))
}

pub async fn revert(ctx: &RunCtx, step: &StepDef) -> Result<(), StepError> {
    let statements = down_statements(step)?;
    if ctx.dry_run {
        for (i, s) in statements.iter().enumerate() {
            ctx.emit(EngineEvent::Statement {
                version: step.version.clone(),
                index: i + 1,
                sql: s.clone(),
            })
            .await;
        }
        return Ok(());
    }
    let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
    if let Err((stmt, err)) = run_statements(&mut tx, &statements).await {
        let _ = tx.rollback().await;
        let msg = err.to_string();
        let _ = ledger::append_event_db(
            &ctx.target,
            Some(&ctx.run_id),
            Some(&step.version),
            "revert_failed",
            &serde_json::json!({"error": msg, "statement": stmt}),
        )
        .await;
        return Err(StepError {
            message: format!("down.sql failed: {msg}"),
            statement: Some(stmt),
            ..StepError::default()
        });
    }
    let res: Result<(), sqlx::Error> = async {
        ledger::set_status(&mut tx, &step.version, LedgerStatus::Reverted).await?;
        ledger::append_event(
            &mut tx,
            Some(&ctx.run_id),
            Some(&step.version),
            "reverted",
            &serde_json::json!({"name": step.name, "kind": "schema", "statements": statements.len()}),
        )
        .await?;
        Ok(())
    }
    .await;
    if let Err(e) = res {
        let _ = tx.rollback().await;
        return Err(StepError::msg(e.to_string()));
    }
    tx.commit().await.map_err(StepError::plain)?;
    Ok(())
}
