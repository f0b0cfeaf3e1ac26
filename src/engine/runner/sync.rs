//! `cutover sync`'s run: passes over the applied steps with `[sync]` (see `engine::sync`),
//! each under the run lock, until `--once` is done or an abort arrives.

use crate::engine::db::{Db, Role};
use crate::engine::exec::{RunControl, RunCtx, StepError, new_run_id};
use crate::engine::plan::compute_status;
use crate::engine::project::{Project, StepDef, StepKind};
use crate::engine::protocol::{EngineEvent, NoticeLevel, Operation, PlannedStep};
use crate::engine::runner::RunOutcome;
use crate::engine::runner::outcome::{emit_outcome, take_lock};
use crate::engine::store::ledger;
use crate::engine::store::sync_marks;
use crate::engine::sync::{SyncOptions, pass};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

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
        preflight_counts: Default::default(),
        next_source: Default::default(),
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
        preflight_counts: Default::default(),
        next_source: Default::default(),
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
        let applied = status.iter().any(|s| s.version == step.version && s.is_applied());
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
