//! Incremental sync (`cutover sync`): keep the target in step with a legacy source that is
//! still in use. Each applied data step with `[sync]` re-reads the rows whose change cursor
//! grew since its high-water mark and applies them through the step's own transforms and
//! validations: upserts by ID map or natural key, deletes for soft-deleted rows, rejects as
//! usual. The mark commits with each batch (`store::sync_marks`), so a pass killed at any
//! instant resumes after its last batch and applies nothing twice.

pub mod pass;
pub mod read;

use crate::engine::data::pipeline::CompiledStep;
use crate::engine::db::{Db, Role};
use crate::engine::exec::{RunControl, RunCtx, StepError, new_run_id};
use crate::engine::plan::compute_status;
use crate::engine::project::{Project, StepDef, StepKind};
use crate::engine::protocol::{EngineEvent, NoticeLevel, Operation, PlannedStep};
use crate::engine::runner::RunOutcome;
use crate::engine::runner::outcome::{emit_outcome, take_lock};
use crate::engine::store::ledger;
use crate::engine::store::sync_marks::{self, SyncMark};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What `Command::Sync` asks for.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub once: bool,
    pub every: Option<Duration>,
    /// Only these versions (empty: every step with `[sync]`).
    pub steps: Vec<String>,
}

/// Record the first mark of a step with `[sync]` as `up` starts it: the largest cursor value
/// the source has before the step reads a row, so every change made while `up` runs is read
/// again by the first sync (an upsert makes that harmless). A resumed step keeps its mark.
pub async fn record_first_mark(ctx: &RunCtx, step: &StepDef, c: &CompiledStep) -> Result<(), StepError> {
    if c.spec.sync.is_none() || ctx.dry_run {
        return Ok(());
    }
    let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
    crate::engine::store::ensure_in(&mut tx).await.map_err(StepError::sql)?;
    sync_marks::ensure_in(&mut tx).await.map_err(StepError::sql)?;
    let resumed = crate::engine::store::BatchCheckpoint::load(&mut tx, &step.version)
        .await
        .map_err(StepError::plain)?
        .is_some_and(|cp| cp.batches > 0);
    if resumed
        && SyncMark::load(&mut tx, &step.version)
            .await
            .map_err(StepError::sql)?
            .is_some()
    {
        let _ = tx.rollback().await;
        return Ok(());
    }
    let source = ctx.source().await.map_err(StepError::plain)?.clone();
    let mut reader = read::ChangeReader::new(source, Arc::new(crate::engine::steps::data::load(step).map_err(StepError::plain)?))
        .map_err(StepError::plain)?;
    let max = reader.max_cursor().await.map_err(StepError::plain)?;
    let mark = SyncMark {
        cursor: max.and_then(|v| v.to_text()),
        last_key: None,
        rows_applied: 0,
        updated_at: None,
    };
    mark.save(&mut tx, &step.version).await.map_err(StepError::sql)?;
    tx.commit().await.map_err(StepError::plain)?;
    Ok(())
}

/// `cutover sync`: passes over the applied steps with `[sync]` until `once` is done or an
/// abort arrives (between batches, or while waiting for the next pass).
pub async fn run_sync(
    project: Arc<Project>,
    opts: SyncOptions,
    events: mpsc::Sender<EngineEvent>,
    control: RunControl,
) -> RunOutcome {
    let run_id = new_run_id();
    let outcome = run_sync_inner(&project, &opts, &run_id, events.clone(), control).await;
    emit_outcome(&events, &run_id, Operation::Sync, false, &outcome).await;
    outcome
}

/// The steps a pass covers: data steps with `[sync]` (of `wanted`, when given), in order.
fn sync_steps(project: &Project, wanted: &[String]) -> Result<Vec<StepDef>, String> {
    for w in wanted {
        if !project.steps.iter().any(|s| &s.version == w) {
            return Err(format!("--steps names {w}, which is not a step of this project"));
        }
    }
    let mut out = Vec::new();
    for s in &project.steps {
        let asked = wanted.contains(&s.version);
        if !wanted.is_empty() && !asked {
            continue;
        }
        let has_sync = s.kind == StepKind::Data
            && crate::engine::steps::data::load(s)
                .map_err(|e| format!("step {}: {e:#}", s.version))?
                .spec
                .sync
                .is_some();
        if has_sync {
            out.push(s.clone());
        } else if asked {
            return Err(format!(
                "step {} {} has no [sync]: only a data step with [sync] cursor = \"...\" can be synced",
                s.version, s.name
            ));
        }
    }
    Ok(out)
}

async fn run_sync_inner(
    project: &Arc<Project>,
    opts: &SyncOptions,
    run_id: &str,
    events: mpsc::Sender<EngineEvent>,
    control: RunControl,
) -> RunOutcome {
    let steps = match sync_steps(project, &opts.steps) {
        Ok(s) => s,
        Err(e) => return RunOutcome::Refused(e),
    };
    let _ = events
        .send(EngineEvent::Planned {
            run_id: run_id.to_string(),
            operation: Operation::Sync,
            dry_run: false,
            steps: steps
                .iter()
                .map(|s| PlannedStep {
                    version: s.version.clone(),
                    name: s.name.clone(),
                    kind: s.kind,
                    rows_estimate: None,
                })
                .collect(),
        })
        .await;
    if steps.is_empty() {
        let _ = events
            .send(EngineEvent::Notice {
                level: NoticeLevel::Warning,
                message: "no data step has [sync]: nothing to sync".into(),
            })
            .await;
        return RunOutcome::Done { steps: 0 };
    }
    let target = match Db::connect(&project.config.target, &project.config.dir, Role::Target).await {
        Ok(t) => t,
        Err(e) => {
            return RunOutcome::Failed {
                version: None,
                message: format!("{e:#}"),
            };
        }
    };
    let ctx = RunCtx {
        project: project.clone(),
        target: target.clone(),
        source: tokio::sync::OnceCell::new(),
        run_id: run_id.to_string(),
        dry_run: false,
        continue_on_error: Some(true),
        events: events.clone(),
        control: control.clone(),
        dry_tx: tokio::sync::Mutex::new(None),
        lock_token: None,
    };
    let mut pass = 0u64;
    let mut synced = 0usize;
    let outcome = loop {
        pass += 1;
        match one_pass(&ctx, &steps, pass).await {
            PassEnd::Done(n) => synced = synced.max(n),
            PassEnd::Stopped(o) => break o,
        }
        if opts.once || opts.every.is_none() || control.aborted() {
            break RunOutcome::Done { steps: synced };
        }
        if !wait_or_abort(&control, opts.every.unwrap_or_default()).await {
            break RunOutcome::Done { steps: synced };
        }
    };
    if let Some(source) = ctx.source.get() {
        source.close().await;
    }
    target.close().await;
    outcome
}

enum PassEnd {
    /// Steps synced in the pass.
    Done(usize),
    Stopped(RunOutcome),
}

/// One pass over every step, under the run lock (taken per pass, so `up` or the console can
/// get in between passes).
async fn one_pass(ctx: &RunCtx, steps: &[StepDef], pass: u64) -> PassEnd {
    let lock = match take_lock(&ctx.project, &ctx.target, "sync").await {
        Ok(l) => l,
        Err(o) => return PassEnd::Stopped(o),
    };
    // Fence every batch with this pass's token.
    let ctx = RunCtx {
        project: ctx.project.clone(),
        target: ctx.target.clone(),
        source: ctx.source.clone(),
        run_id: ctx.run_id.clone(),
        dry_run: false,
        continue_on_error: Some(true),
        events: ctx.events.clone(),
        control: ctx.control.clone(),
        dry_tx: tokio::sync::Mutex::new(None),
        lock_token: Some(lock.token().to_string()),
    };
    let end = pass_locked(&ctx, steps, pass).await;
    if let Err(e) = lock.release().await {
        tracing::warn!("could not release the run lock: {e:#}");
    }
    end
}

async fn pass_locked(ctx: &RunCtx, steps: &[StepDef], pass: u64) -> PassEnd {
    if let Err(e) = sync_marks::ensure(&ctx.target).await {
        return PassEnd::Stopped(RunOutcome::Failed {
            version: None,
            message: format!("cannot create the sync marks table: {e:#}"),
        });
    }
    let ledger_rows = match ledger::load(&ctx.target).await {
        Ok(r) => r,
        Err(e) => {
            return PassEnd::Stopped(RunOutcome::Failed {
                version: None,
                message: format!("cannot read the ledger: {e:#}"),
            });
        }
    };
    let status = compute_status(&ctx.project.steps, &ledger_rows);
    let mut done = 0;
    for step in steps {
        let applied = status
            .iter()
            .any(|s| s.version == step.version && s.is_applied());
        if !applied {
            if pass == 1 {
                ctx.emit(EngineEvent::Notice {
                    level: NoticeLevel::Warning,
                    message: format!(
                        "{} {}: not applied yet, skipped (`cutover up` applies it and records its first sync mark)",
                        step.version, step.name
                    ),
                })
                .await;
            }
            continue;
        }
        match pass::sync_step(ctx, step, pass).await {
            Ok(r) => {
                record_pass(ctx, step, pass, &r).await;
                if r.aborted {
                    return PassEnd::Stopped(RunOutcome::Aborted {
                        version: step.version.clone(),
                    });
                }
                if !r.counts.balanced() {
                    let message = format!(
                        "pass {pass}: the books of the changed rows do not balance: {}",
                        r.counts.equation()
                    );
                    ctx.emit(StepError::msg(message.clone()).event(&step.version)).await;
                    return PassEnd::Stopped(RunOutcome::Failed {
                        version: Some(step.version.clone()),
                        message,
                    });
                }
                done += 1;
            }
            Err(e) => {
                if let Some(holder) = e.lost_lock {
                    return PassEnd::Stopped(RunOutcome::Locked(*holder));
                }
                ctx.emit(e.event(&step.version)).await;
                return PassEnd::Stopped(RunOutcome::Failed {
                    version: Some(step.version.clone()),
                    message: e.message,
                });
            }
        }
    }
    PassEnd::Done(done)
}

/// The audit trail: one `synced` event per step and pass that read changes.
async fn record_pass(ctx: &RunCtx, step: &StepDef, pass: u64, r: &pass::PassResult) {
    if r.counts.source == 0 {
        return;
    }
    let detail = serde_json::json!({
        "pass": pass,
        "counts": r.counts,
        "inserted": r.inserted,
        "updated": r.updated,
        "deleted": r.deleted,
        "lag_rows": r.lag_rows,
        "mark": r.mark,
    });
    if let Err(e) =
        ledger::append_event_db(&ctx.target, Some(&ctx.run_id), Some(&step.version), "synced", &detail).await
    {
        tracing::warn!(step = %step.version, error = %format!("{e:#}"), "could not record the sync pass in the ledger");
    }
}

/// Wait `every` before the next pass; false when an abort came first.
async fn wait_or_abort(control: &RunControl, every: Duration) -> bool {
    let mut rx = control.holds.subscribe();
    let sleep = tokio::time::sleep(every);
    tokio::pin!(sleep);
    loop {
        if control.aborted() {
            return false;
        }
        tokio::select! {
            _ = &mut sleep => return !control.aborted(),
            changed = rx.changed() => {
                if changed.is_err() {
                    (&mut sleep).await;
                    return !control.aborted();
                }
            }
        }
    }
}
