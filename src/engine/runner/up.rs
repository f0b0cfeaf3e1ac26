//! `up`: plan the pending steps, check them all before the first write, run them in order
//! under the run lock, retrying a step whose connection dropped from its last checkpoint.

use crate::engine::db::{Db, Role};
use crate::engine::exec::batch::record_failed_now;
use crate::engine::exec::{RunControl, RunCtx, StepError, StepResult, new_run_id};
use crate::engine::plan::{self, UpPlanOptions, compute_status};
use crate::engine::project::{Project, StepDef, StepKind};
use crate::engine::protocol::StepState;
use crate::engine::protocol::{EngineEvent, NoticeLevel, Operation, PlannedStep, RunOptions};
use crate::engine::steps::schema;
use crate::engine::store::ledger;
use color_eyre::eyre::Result;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::engine::runner::outcome::{RunOutcome, emit_outcome, take_lock};

/// `cutover up`: apply pending steps in order.
pub async fn run_up(
    project: Arc<Project>,
    opts: RunOptions,
    events: mpsc::Sender<EngineEvent>,
    control: RunControl,
) -> RunOutcome {
    let run_id = new_run_id();
    let (outcome, locked) = run_up_inner(project.clone(), &opts, &run_id, events.clone(), control).await;
    // Every real run leaves its report in reports/ (before `Finished`, which ends the CLI).
    // A run that never got the run lock wrote nothing of its own to report.
    if locked {
        let name = outcome_name(&outcome);
        match crate::engine::ops::report::after_run(&project, &run_id, name).await {
            Ok(path) => tracing::info!(path = %path.display(), "run report written"),
            Err(e) => tracing::warn!("could not write the run report: {e:#}"),
        }
    }
    emit_outcome(&events, &run_id, Operation::Up, opts.dry_run, &outcome).await;
    outcome
}

fn outcome_name(outcome: &RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Done { .. } => "done",
        RunOutcome::Locked(_) => "locked",
        RunOutcome::Refused(_) => "refused",
        RunOutcome::Failed { .. } => "failed",
        RunOutcome::Aborted { .. } => "aborted",
    }
}

async fn run_up_inner(
    project: Arc<Project>,
    opts: &RunOptions,
    run_id: &str,
    events: mpsc::Sender<EngineEvent>,
    control: RunControl,
) -> (RunOutcome, bool) {
    let target = match Db::connect(&project.config.target, &project.config.dir, Role::Target).await {
        Ok(t) => t,
        Err(e) => {
            let failed = RunOutcome::Failed {
                version: None,
                message: format!("{e:#}"),
            };
            return (failed, false);
        }
    };
    let lock = if opts.dry_run {
        None
    } else {
        match take_lock(&project, &target, "up").await {
            Ok(l) => Some(l),
            Err(o) => return (o, false),
        }
    };
    let locked = lock.is_some();
    let lock_token = lock.as_ref().map(|l| l.token().to_string());
    let outcome = run_up_locked(&project, opts, run_id, &target, events, control, lock_token).await;
    if let Some(l) = lock
        && let Err(e) = l.release().await
    {
        tracing::warn!("could not release the run lock: {e:#}");
    }
    target.close().await;
    (outcome, locked)
}

async fn run_up_locked(
    project: &Arc<Project>,
    opts: &RunOptions,
    run_id: &str,
    target: &Db,
    events: mpsc::Sender<EngineEvent>,
    control: RunControl,
    lock_token: Option<String>,
) -> RunOutcome {
    let ledger_rows = match ledger::load(target).await {
        Ok(r) => r,
        Err(e) => {
            return RunOutcome::Failed {
                version: None,
                message: format!("cannot read the ledger: {e:#}"),
            };
        }
    };
    let status = compute_status(&project.steps, &ledger_rows);
    let plan = match plan::plan_up(
        &status,
        &UpPlanOptions {
            to: opts.to.as_deref(),
            only_next: opts.only_next,
            only: opts.only.as_deref(),
            allow_out_of_order: opts.allow_out_of_order,
        },
    ) {
        Ok(p) => p,
        Err(e) => return RunOutcome::Refused(format!("{e:#}")),
    };
    let ctx = RunCtx {
        project: project.clone(),
        target: target.clone(),
        source: tokio::sync::OnceCell::new(),
        run_id: run_id.to_string(),
        dry_run: opts.dry_run,
        continue_on_error: opts.continue_on_error,
        events,
        control,
        dry_tx: tokio::sync::Mutex::new(None),
        lock_token: lock_token.clone(),
        preflight_counts: Default::default(),
        next_source: Default::default(),
    };
    if opts.dry_run {
        match target.begin_dry_run().await {
            Ok(tx) => *ctx.dry_tx.lock().await = Some(tx),
            Err(e) => {
                return RunOutcome::Failed {
                    version: None,
                    message: format!("{e:#}"),
                };
            }
        }
    }
    // Pre-flight: every pending step is loaded and checked before the first write.
    let problems = crate::engine::preflight::check(&ctx, &plan).await;
    if !problems.is_empty() {
        if !opts.dry_run {
            let _ = ledger::append_event_db(
                target,
                Some(run_id),
                None,
                "refused",
                &serde_json::json!({"operation": "up", "problems": problems}),
            )
            .await;
        }
        if let Some(tx) = ctx.dry_tx.lock().await.take() {
            let _ = tx.rollback().await;
        }
        let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        return RunOutcome::Refused(format!(
            "pre-flight found {} problem(s); nothing was written:\n{}",
            problems.len(),
            list.join("\n")
        ));
    }
    ctx.emit(EngineEvent::Planned {
        run_id: run_id.to_string(),
        operation: Operation::Up,
        dry_run: opts.dry_run,
        steps: plan
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
    if !opts.dry_run {
        let _ = ledger::append_event_db(
            target,
            Some(run_id),
            None,
            "run_started",
            &serde_json::json!({"operation": "up", "steps": plan.len()}),
        )
        .await;
    }
    let mut done = 0;
    // A dry run goes on past a failing step (under a savepoint) to report every failure.
    let mut dry_failures: Vec<(String, String)> = Vec::new();
    for (at, step) in plan.iter().enumerate() {
        if !ctx.boundary(None).await.go {
            return RunOutcome::Aborted {
                version: step.version.clone(),
            };
        }
        ctx.emit(EngineEvent::StepStarted {
            version: step.version.clone(),
            name: step.name.clone(),
            kind: step.kind,
            dry_run: opts.dry_run,
        })
        .await;
        let t0 = std::time::Instant::now();
        if opts.dry_run
            && let Some(tx) = ctx.dry_tx.lock().await.as_mut()
        {
            let _ = tx.execute_raw("SAVEPOINT cutover_dry_step").await;
        }
        // The next step's view is computed while this step closes (see `NextSource`).
        if let (false, Some(next), Some(source)) = (opts.dry_run, plan.get(at + 1), ctx.source.get())
            && next.kind == StepKind::Data
        {
            let open = crate::engine::steps::data::open_source_ahead(ctx.project.clone(), source.clone(), next.clone());
            ctx.next_source.arm(&step.version, next.version.clone(), open);
        }
        let res = run_step_retrying(&ctx, step).await;
        if opts.dry_run
            && let Some(tx) = ctx.dry_tx.lock().await.as_mut()
        {
            let sql = if res.is_err() {
                "ROLLBACK TO SAVEPOINT cutover_dry_step"
            } else {
                "RELEASE SAVEPOINT cutover_dry_step"
            };
            let _ = tx.execute_raw(sql).await;
        }
        match res {
            Ok(StepResult::Done(counts)) => {
                done += 1;
                ctx.emit(EngineEvent::StepFinished {
                    version: step.version.clone(),
                    name: step.name.clone(),
                    status: StepState::Applied,
                    counts,
                    duration_ms: t0.elapsed().as_millis() as u64,
                    dry_run: opts.dry_run,
                })
                .await;
            }
            Ok(StepResult::Aborted(counts)) => {
                ctx.emit(EngineEvent::Aborted {
                    version: step.version.clone(),
                    counts,
                })
                .await;
                return RunOutcome::Aborted {
                    version: step.version.clone(),
                };
            }
            Err(e) => {
                if let Some(holder) = e.lost_lock {
                    return RunOutcome::Locked(*holder);
                }
                ctx.emit(e.event(&step.version)).await;
                if opts.dry_run {
                    dry_failures.push((step.version.clone(), e.message));
                    continue;
                }
                let not_run: Vec<&str> = plan[at + 1..].iter().map(|s| s.version.as_str()).collect();
                if !not_run.is_empty() {
                    ctx.emit(EngineEvent::Notice {
                        level: NoticeLevel::Warning,
                        message: format!(
                            "Not run because of this failure ({} step(s), still pending): {}",
                            not_run.len(),
                            not_run.join(", ")
                        ),
                    })
                    .await;
                }
                let message = if not_run.is_empty() {
                    e.message
                } else {
                    format!(
                        "{}\nNot run because of this failure ({} step(s), still pending): {}",
                        e.message,
                        not_run.len(),
                        not_run.join(", ")
                    )
                };
                return RunOutcome::Failed {
                    version: Some(step.version.clone()),
                    message,
                };
            }
        }
    }
    if !dry_failures.is_empty() {
        if let Some(tx) = ctx.dry_tx.lock().await.take() {
            let _ = tx.rollback().await;
        }
        let list: Vec<String> = dry_failures.iter().map(|(v, m)| format!("  {v}: {m}")).collect();
        // Failed with no version: the summary is printed after the per-step failures.
        return RunOutcome::Failed {
            version: None,
            message: format!(
                "the dry run found {} step(s) that would fail (nothing was written):\n{}",
                dry_failures.len(),
                list.join("\n")
            ),
        };
    }
    if let Some(tx) = ctx.dry_tx.lock().await.take() {
        let _ = tx.rollback().await;
    }
    RunOutcome::Done { steps: done }
}

/// Run a step; on a transient failure (a server restart) wait with backoff and run it again,
/// which resumes from its last committed checkpoint, for up to `retry_for_secs`.
async fn run_step_retrying(ctx: &RunCtx, step: &StepDef) -> Result<StepResult, StepError> {
    let budget = Duration::from_secs(ctx.project.config.defaults.retry_for_secs);
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        match run_step(ctx, step).await {
            Err(e) if e.transient && !ctx.dry_run && started.elapsed() < budget && !ctx.control.aborted() => {
                tracing::warn!(
                    "{}: {} — retrying in {:.1}s from the last checkpoint ({}s of {}s used)",
                    step.version,
                    e.message,
                    delay.as_secs_f64(),
                    started.elapsed().as_secs(),
                    budget.as_secs()
                );
                ctx.emit(EngineEvent::Notice {
                    level: NoticeLevel::Warning,
                    message: format!(
                        "{}: connection lost ({}); retrying in {:.1}s from the last checkpoint",
                        step.version,
                        e.message,
                        delay.as_secs_f64()
                    ),
                })
                .await;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
            }
            Err(e) if e.transient && !ctx.dry_run => {
                let message = format!(
                    "{} (gave up after retrying for {}s; set [defaults] retry_for_secs to wait longer)",
                    e.message,
                    started.elapsed().as_secs()
                );
                record_failed_now(ctx, step, &message).await;
                return Err(StepError { message, ..e });
            }
            other => return other,
        }
    }
}

async fn run_step(ctx: &RunCtx, step: &StepDef) -> Result<StepResult, StepError> {
    match step.kind {
        StepKind::Schema => schema::apply(ctx, step).await.map(StepResult::Done),
        StepKind::Data => crate::engine::steps::data::run(ctx, step).await,
        StepKind::Merge => crate::engine::steps::merge::run(ctx, step).await,
    }
}
