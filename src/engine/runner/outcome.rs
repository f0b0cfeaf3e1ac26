//! How a run ends: the outcome, the one `Finished` event that closes every run, and the run
//! lock a run takes first (a lock held elsewhere is an outcome, not an error).

use crate::engine::db::Db;
use crate::engine::project::Project;
use crate::engine::protocol::{EngineEvent, Operation, Outcome};
use crate::engine::store::lock::{LockError, LockHolder, RunLock};
use color_eyre::eyre::Result;
use std::time::Duration;
use tokio::sync::mpsc;

/// How a run ended; the CLI maps these to exit codes.
#[derive(Debug)]
pub enum RunOutcome {
    Done { steps: usize },
    Locked(LockHolder),
    Refused(String),
    Failed { version: Option<String>, message: String },
    Aborted { version: String },
}

pub(crate) fn lock_stale(project: &Project) -> Duration {
    Duration::from_secs(project.config.defaults.lock_stale_after_secs)
}

/// Take the target's run lock for `command` and make sure the ledger's tables exist (under
/// the lock, so two first runs never race to create them).
pub(crate) async fn take_lock(project: &Project, target: &Db, command: &str) -> Result<RunLock, RunOutcome> {
    let lock = match RunLock::acquire(target, command, lock_stale(project)).await {
        Ok(l) => l,
        Err(LockError::Held(h)) => return Err(RunOutcome::Locked(h)),
        Err(e) => {
            return Err(RunOutcome::Failed {
                version: None,
                message: e.to_string(),
            });
        }
    };
    if let Err(e) = crate::engine::store::ledger::ensure(target).await {
        let _ = lock.release().await;
        return Err(RunOutcome::Failed {
            version: None,
            message: format!("cannot create the ledger tables: {e:#}"),
        });
    }
    // A step killed while its table's indexes were left out: they are built before anything
    // else happens to the target (a resumed step then writes with them in place).
    match crate::engine::store::deferred_indexes::rebuild(target, None).await {
        Ok(done) => {
            for i in &done.done {
                tracing::info!("built the index {i}, which an interrupted step had left to build");
            }
            for i in &done.gone {
                tracing::warn!("the index {i} an interrupted step left to build belongs to a table that is gone");
            }
        }
        // A rollback goes ahead all the same: it may remove the very rows the index refuses,
        // and the record stays for the next command.
        Err(e) if command == "down" => {
            tracing::warn!("an interrupted step left indexes to build, and building them failed: {e:#}");
        }
        Err(e) => {
            let _ = lock.release().await;
            return Err(RunOutcome::Failed {
                version: None,
                message: format!(
                    "an interrupted step left indexes to build, and building them failed: {e:#}. Nothing else was done; fix the rows the index refuses, or roll the step back (`cutover down --to` the step before it), and run the command again"
                ),
            });
        }
    }
    // The same for a step killed while its table's foreign keys were left out.
    match crate::engine::store::deferred_keys::restore(target, None).await {
        Ok(done) => {
            for k in &done.done {
                tracing::info!("added back the foreign key {k}, which an interrupted step had left out");
            }
            for k in &done.gone {
                tracing::warn!("the foreign key {k} an interrupted step left out belongs to a table that is gone");
            }
        }
        Err(e) if command == "down" => {
            tracing::warn!("an interrupted step left foreign keys out, and adding them back failed: {e:#}");
        }
        Err(e) => {
            let _ = lock.release().await;
            return Err(RunOutcome::Failed {
                version: None,
                message: format!(
                    "an interrupted step left foreign keys out, and adding them back failed: {e:#}. Nothing else was done; fix or remove the rows the key refuses, or roll the step back (`cutover down --to` the step before it), and run the command again"
                ),
            });
        }
    }
    Ok(lock)
}

pub(crate) async fn emit_outcome(
    events: &mpsc::Sender<EngineEvent>,
    run_id: &str,
    operation: Operation,
    dry_run: bool,
    outcome: &RunOutcome,
) {
    let (ok, steps) = match outcome {
        RunOutcome::Done { steps } => (true, *steps),
        _ => (false, 0),
    };
    let name = match outcome {
        RunOutcome::Done { .. } => Outcome::Done,
        RunOutcome::Locked(_) => Outcome::Locked,
        RunOutcome::Refused(_) => Outcome::Refused,
        RunOutcome::Failed { .. } => Outcome::Failed,
        RunOutcome::Aborted { .. } => Outcome::Aborted,
    };
    // A run that failed before or outside any step says why once; a step's own failure was
    // already sent with its version.
    let run_error = match outcome {
        RunOutcome::Locked(h) => Some(LockError::Held(h.clone()).to_string()),
        RunOutcome::Refused(m)
        | RunOutcome::Failed {
            version: None,
            message: m,
        } => Some(m.clone()),
        _ => None,
    };
    if let Some(error) = run_error {
        let _ = events.send(EngineEvent::run_failed(error)).await;
    }
    let _ = events
        .send(EngineEvent::Finished {
            run_id: run_id.into(),
            operation,
            ok,
            outcome: name,
            steps_done: steps,
            dry_run,
        })
        .await;
}
