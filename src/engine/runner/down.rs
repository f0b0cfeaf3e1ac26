//! `down`: revert applied steps, newest first, under the run lock.

use crate::engine::db::{Db, Role};
use crate::engine::exec::{RunControl, RunCtx, new_run_id};
use crate::engine::plan::{self, compute_status};
use crate::engine::project::{Project, StepKind};
use crate::engine::protocol::StepState;
use crate::engine::protocol::{Counts, DownTarget, EngineEvent, NoticeLevel, Operation, PlannedStep};
use crate::engine::steps::schema;
use crate::engine::store::ledger;
use std::sync::Arc;
use tokio::sync::mpsc;

use crate::engine::runner::outcome::{RunOutcome, emit_outcome, take_lock};

/// `cutover down`: revert applied steps, newest first.
pub async fn run_down(
    project: Arc<Project>,
    target_sel: DownTarget,
    dry_run: bool,
    events: mpsc::Sender<EngineEvent>,
) -> RunOutcome {
    let run_id = new_run_id();
    let outcome = run_down_inner(project, &target_sel, dry_run, &run_id, events.clone()).await;
    emit_outcome(&events, &run_id, Operation::Down, dry_run, &outcome).await;
    outcome
}

async fn run_down_inner(
    project: Arc<Project>,
    sel: &DownTarget,
    dry_run: bool,
    run_id: &str,
    events: mpsc::Sender<EngineEvent>,
) -> RunOutcome {
    let target = match Db::connect(&project.config.target, &project.config.dir, Role::Target).await {
        Ok(t) => t,
        Err(e) => {
            return RunOutcome::Failed {
                version: None,
                message: format!("{e:#}"),
            };
        }
    };
    let lock = if dry_run {
        None
    } else {
        match take_lock(&project, &target, "down").await {
            Ok(l) => Some(l),
            Err(o) => return o,
        }
    };
    let outcome = async {
        let rows = ledger::load(&target).await.map_err(|e| RunOutcome::Failed {
            version: None,
            message: format!("{e:#}"),
        })?;
        let status = compute_status(&project.steps, &rows);
        let plan = plan::plan_down(&status, sel).map_err(|e| RunOutcome::Refused(format!("{e:#}")))?;
        let ctx = RunCtx {
            project: project.clone(),
            target: target.clone(),
            source: tokio::sync::OnceCell::new(),
            run_id: run_id.to_string(),
            dry_run,
            continue_on_error: None,
            events: events.clone(),
            control: RunControl::default(),
            dry_tx: tokio::sync::Mutex::new(None),
            lock_token: lock.as_ref().map(|l| l.token().to_string()),
            preflight_counts: Default::default(),
            next_source: Default::default(),
        };
        ctx.emit(EngineEvent::Planned {
            run_id: run_id.to_string(),
            operation: Operation::Down,
            dry_run,
            steps: plan
                .iter()
                .map(|s| PlannedStep {
                    version: s.status.version.clone(),
                    name: s.status.name.clone(),
                    kind: s.status.kind,
                    rows_estimate: None,
                })
                .collect(),
        })
        .await;
        let mut done = 0;
        for s in &plan {
            let Some(def) = &s.def else { continue };
            ctx.emit(EngineEvent::StepStarted {
                version: def.version.clone(),
                name: def.name.clone(),
                kind: def.kind,
                dry_run,
            })
            .await;
            let t0 = std::time::Instant::now();
            let res = match def.kind {
                StepKind::Schema => schema::revert(&ctx, def).await.map(|_| Counts::default()),
                StepKind::Data | StepKind::Merge => match crate::engine::ops::rollback::revert(&ctx, def).await {
                    Ok(p) => {
                        // Every consequence, as the console's preview lists them.
                        let lines: Vec<String> = p
                            .lines()
                            .iter()
                            .map(|l| format!("  {} {l}", if dry_run { "would" } else { "done:" }))
                            .collect();
                        ctx.emit(EngineEvent::Notice {
                            level: NoticeLevel::Info,
                            message: lines.join("\n"),
                        })
                        .await;
                        Ok(Counts::default())
                    }
                    Err(e) => Err(e),
                },
            };
            match res {
                Ok(counts) => {
                    done += 1;
                    ctx.emit(EngineEvent::StepFinished {
                        version: def.version.clone(),
                        name: def.name.clone(),
                        status: StepState::Reverted,
                        counts,
                        duration_ms: t0.elapsed().as_millis() as u64,
                        dry_run,
                    })
                    .await;
                }
                Err(e) => {
                    ctx.emit(e.event(&def.version)).await;
                    return Err(RunOutcome::Failed {
                        version: Some(def.version.clone()),
                        message: e.message,
                    });
                }
            }
        }
        Ok(RunOutcome::Done { steps: done })
    }
    .await
    .unwrap_or_else(|o| o);
    if let Some(l) = lock
        && let Err(e) = l.release().await
    {
        tracing::warn!("could not release the run lock: {e:#}");
    }
    target.close().await;
    outcome
}
