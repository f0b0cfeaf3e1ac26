//! The state of the tables a step writes, taken before it first writes them: what verify
//! holds a rolled-back table against to prove the rollback put it back.
//!
//! Called by the data and merge steps; kept under `verify` (not `rollback`) so the steps do not
//! import the operations that import them.

use crate::engine::db::{Db, Role};
use crate::engine::exec::{RunCtx, StepError};
use crate::engine::project::{Project, StepDef};
use crate::engine::store::ledger;
use crate::engine::store::{self, BatchCheckpoint};
use color_eyre::eyre::eyre;

/// Before a data or merge step first writes (not on a resume, not in a dry run): the content
/// checksum of each table it writes, kept with its ledger entry, so that verify can prove a
/// rollback put the table back as it was.
pub async fn take_pre_step_checksums(ctx: &RunCtx, step: &StepDef, tables: Vec<String>) -> Result<(), StepError> {
    if ctx.dry_run {
        return Ok(());
    }
    store::ensure(&ctx.target).await.map_err(StepError::plain)?;
    let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
    let resuming = BatchCheckpoint::load(&mut tx, &step.version)
        .await
        .map_err(StepError::plain)?
        .is_some_and(|cp| cp.batches > 0);
    tx.rollback().await.map_err(StepError::plain)?;
    if resuming {
        return Ok(());
    }
    let sums = detached_table_sums(ctx.project.clone(), tables).await.map_err(|e| {
        StepError::plain(eyre!(
            "cannot take the checksums of the step's tables before it writes: {e}"
        ))
    })?;
    for (table, sum) in sums {
        ledger::record_pre_checksum(&ctx.target, &ctx.run_id, &step.version, &table, &sum.hex(), sum.rows)
            .await
            .map_err(StepError::plain)?;
    }
    Ok(())
}

/// The content checksums of the tables that exist, on a connection and thread of their own:
/// the row streams of the checksum are not `Send`, and a run's future must be.
async fn detached_table_sums(
    project: std::sync::Arc<Project>,
    tables: Vec<String>,
) -> Result<Vec<(String, super::ContentSum)>, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let sums = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(async {
                let db = Db::connect(&project.config.target, &project.config.dir, Role::Target)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                let mut out = Vec::new();
                for table in tables {
                    match db.table_exists(&table).await {
                        Ok(false) => continue,
                        Ok(true) => {}
                        Err(e) => {
                            db.close().await;
                            return Err(format!("{e:#}"));
                        }
                    }
                    match super::table_sum(&db, &table).await {
                        Ok(sum) => out.push((table, sum)),
                        Err(e) => {
                            db.close().await;
                            return Err(e);
                        }
                    }
                }
                db.close().await;
                Ok(out)
            }),
            Err(e) => Err(format!("cannot start a runtime: {e}")),
        };
        let _ = tx.send(sums);
    });
    rx.await
        .map_err(|_| "the checksum thread ended without an answer".to_string())?
}
