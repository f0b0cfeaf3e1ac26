//! The engine task: takes `Command`s, runs plans, sends `EngineEvent`s. A run holds the target's
//! run lock from its first write to its last.

use crate::engine::db::{Db, Role};
use crate::engine::exec::batch::record_failed_now;
use crate::engine::exec::{RunControl, RunCtx, StepError, StepResult, new_run_id};
use crate::engine::plan::{self, UpPlanOptions, compute_status};
use crate::engine::project::{Project, StepDef, StepKind};
use crate::engine::protocol::{
    Command, Counts, DownTarget, EngineEvent, NoticeLevel, Operation, Outcome, PlannedStep, RunOptions,
};
use crate::engine::steps::schema;
use crate::engine::store::ledger;
use crate::engine::store::lock::{LockError, LockHolder, RunLock};
use color_eyre::eyre::{Result, eyre};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;

/// Channel sizes: small and bounded so a slow consumer slows the engine instead of growing
/// memory; progress is coalesced well below this rate.
pub const COMMAND_QUEUE: usize = 64;
pub const EVENT_QUEUE: usize = 1024;

/// How a run ended; the CLI maps these to exit codes.
#[derive(Debug)]
pub enum RunOutcome {
    Done { steps: usize },
    Locked(LockHolder),
    Refused(String),
    Failed { version: Option<String>, message: String },
    Aborted { version: String },
}

fn lock_stale(project: &Project) -> Duration {
    Duration::from_secs(project.config.defaults.lock_stale_after_secs)
}

async fn take_lock(project: &Project, target: &Db, command: &str) -> Result<RunLock, RunOutcome> {
    match RunLock::acquire(target, command, lock_stale(project)).await {
        Ok(l) => Ok(l),
        Err(LockError::Held(h)) => Err(RunOutcome::Locked(h)),
        Err(e) => Err(RunOutcome::Failed {
            version: None,
            message: e.to_string(),
        }),
    }
}

async fn emit_outcome(
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
    match outcome {
        RunOutcome::Locked(h) => {
            let _ = events
                .send(EngineEvent::Failed {
                    version: None,
                    error: LockError::Held(h.clone()).to_string(),
                    statement: None,
                    source_key: None,
                    column: None,
                    counts: None,
                })
                .await;
        }
        RunOutcome::Refused(m) => {
            let _ = events
                .send(EngineEvent::Failed {
                    version: None,
                    error: m.clone(),
                    statement: None,
                    source_key: None,
                    column: None,
                    counts: None,
                })
                .await;
        }
        RunOutcome::Failed { version: None, message } => {
            let _ = events
                .send(EngineEvent::Failed {
                    version: None,
                    error: message.clone(),
                    statement: None,
                    source_key: None,
                    column: None,
                    counts: None,
                })
                .await;
        }
        _ => {}
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

/// `cutover up`: apply pending steps in order.
pub async fn run_up(
    project: Arc<Project>,
    opts: RunOptions,
    events: mpsc::Sender<EngineEvent>,
    control: RunControl,
) -> RunOutcome {
    let run_id = new_run_id();
    let outcome = run_up_inner(project, &opts, &run_id, events.clone(), control).await;
    emit_outcome(&events, &run_id, Operation::Up, opts.dry_run, &outcome).await;
    outcome
}

async fn run_up_inner(
    project: Arc<Project>,
    opts: &RunOptions,
    run_id: &str,
    events: mpsc::Sender<EngineEvent>,
    control: RunControl,
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
    let lock = if opts.dry_run {
        None
    } else {
        let lock = match take_lock(&project, &target, "up").await {
            Ok(l) => l,
            Err(o) => return o,
        };
        if let Err(e) = ledger::ensure(&target).await {
            let _ = lock.release().await;
            return RunOutcome::Failed {
                version: None,
                message: format!("cannot create the ledger tables: {e:#}"),
            };
        }
        Some(lock)
    };
    let lock_token = lock.as_ref().map(|l| l.token().to_string());
    let outcome = run_up_locked(&project, opts, run_id, &target, events, control, lock_token).await;
    if let Some(l) = lock
        && let Err(e) = l.release().await
    {
        tracing::warn!("could not release the run lock: {e:#}");
    }
    target.close().await;
    outcome
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
        if !ctx.control.checkpoint().await {
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
                    status: if opts.dry_run {
                        "dry-run".into()
                    } else {
                        "applied".into()
                    },
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
                ctx.emit(EngineEvent::Failed {
                    version: Some(step.version.clone()),
                    error: e.message.clone(),
                    statement: e.statement.clone(),
                    source_key: e.row.as_ref().map(|r| r.source_key.clone()),
                    column: e.row.as_ref().and_then(|r| r.column.clone()),
                    counts: e.counts.as_deref().copied(),
                })
                .await;
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
        let lock = match take_lock(&project, &target, "down").await {
            Ok(l) => l,
            Err(o) => return o,
        };
        if let Err(e) = ledger::ensure(&target).await {
            let _ = lock.release().await;
            return RunOutcome::Failed {
                version: None,
                message: format!("{e:#}"),
            };
        }
        Some(lock)
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
                        ctx.emit(EngineEvent::Notice {
                            level: NoticeLevel::Info,
                            message: format!(
                                "  {} {} rows from {}, {} {} updated rows, {} {} ID-map entries and {} rejects",
                                if dry_run { "would delete" } else { "deleted" },
                                p.rows_to_delete,
                                p.table,
                                if dry_run { "would restore" } else { "restored" },
                                p.rows_to_restore,
                                if dry_run { "would drop" } else { "dropped" },
                                p.id_map_entries,
                                p.rejects
                            ),
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
                        status: if dry_run { "dry-run".into() } else { "reverted".into() },
                        counts,
                        duration_ms: t0.elapsed().as_millis() as u64,
                        dry_run,
                    })
                    .await;
                }
                Err(e) => {
                    ctx.emit(EngineEvent::Failed {
                        version: Some(def.version.clone()),
                        error: e.message.clone(),
                        statement: e.statement.clone(),
                        source_key: e.row.as_ref().map(|r| r.source_key.clone()),
                        column: e.row.as_ref().and_then(|r| r.column.clone()),
                        counts: e.counts.as_deref().copied(),
                    })
                    .await;
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

/// A handle to an engine task: send commands, receive events.
pub struct EngineHandle {
    pub commands: mpsc::Sender<Command>,
    pub events: mpsc::Receiver<EngineEvent>,
}

/// Start the engine on its own task. It runs one operation at a time; pause/resume/abort reach
/// the running operation between batches.
pub fn spawn(project: Arc<Project>) -> EngineHandle {
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Command>(COMMAND_QUEUE);
    let (ev_tx, ev_rx) = mpsc::channel::<EngineEvent>(EVENT_QUEUE);
    tokio::spawn(async move {
        let mut running: Option<(tokio::task::JoinHandle<RunOutcome>, RunControl)> = None;
        while let Some(cmd) = cmd_rx.recv().await {
            if let Some((h, _)) = &running
                && h.is_finished()
            {
                running = None;
            }
            match cmd {
                Command::Start(opts) => {
                    if running.is_some() {
                        let _ = ev_tx
                            .send(EngineEvent::Notice {
                                level: NoticeLevel::Warning,
                                message: "a run is already in progress".into(),
                            })
                            .await;
                        continue;
                    }
                    let control = RunControl::default();
                    let h = tokio::spawn(run_up(project.clone(), opts, ev_tx.clone(), control.clone()));
                    running = Some((h, control));
                }
                Command::Rollback { target, dry_run } => {
                    if running.is_some() {
                        let _ = ev_tx
                            .send(EngineEvent::Notice {
                                level: NoticeLevel::Warning,
                                message: "a run is in progress; roll back after it ends".into(),
                            })
                            .await;
                        continue;
                    }
                    let h = tokio::spawn(run_down(project.clone(), target, dry_run, ev_tx.clone()));
                    running = Some((h, RunControl::default()));
                }
                Command::Pause => {
                    if let Some((_, c)) = &running {
                        c.paused.send_replace(true);
                        let _ = ev_tx.send(EngineEvent::Paused { version: None }).await;
                    }
                }
                Command::Resume => {
                    if let Some((_, c)) = &running {
                        c.paused.send_replace(false);
                        let _ = ev_tx.send(EngineEvent::Resumed { version: None }).await;
                    }
                }
                Command::Abort => {
                    if let Some((_, c)) = &running {
                        c.abort.store(true, Ordering::SeqCst);
                        c.paused.send_replace(false);
                    }
                }
                Command::Refresh => {
                    spawn_snapshot(project.clone(), ev_tx.clone());
                }
                Command::Verify => {
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    // The verifier's streams are not `Send` across awaits, so it runs on a
                    // thread of its own with a single-threaded runtime.
                    std::thread::spawn(move || {
                        let ev = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                            Ok(rt) => match rt.block_on(crate::engine::verify::verify(&p)) {
                                Ok(r) => EngineEvent::Verified(r),
                                Err(e) => EngineEvent::Unverified {
                                    message: format!("verify could not run: {e:#}"),
                                },
                            },
                            Err(e) => EngineEvent::Unverified {
                                message: format!("verify could not start: {e}"),
                            },
                        };
                        let _ = tx.blocking_send(ev);
                    });
                }
                Command::PreviewRollback { version } => {
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    tokio::spawn(async move {
                        let ev = match crate::engine::ops::rollback::rollback_preview(&p, &version).await {
                            Ok(pr) => EngineEvent::RollbackPreview(pr),
                            Err(e) => EngineEvent::Notice {
                                level: NoticeLevel::Error,
                                message: format!("cannot preview the rollback of {version}: {e:#}"),
                            },
                        };
                        let _ = tx.send(ev).await;
                    });
                }
                Command::FixReject { id, field, value } => {
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    tokio::spawn(async move {
                        let (applied, message) =
                            match crate::engine::ops::rejects::fix_reject(&p, id, &field, &value).await {
                                Ok(()) => (true, format!("reject {id}: {field} set; retry it with r")),
                                Err(e) => (false, format!("reject {id}: {e:#}")),
                            };
                        let _ = tx
                            .send(EngineEvent::Fixed {
                                id,
                                field,
                                applied,
                                message,
                            })
                            .await;
                        spawn_snapshot(p, tx);
                    });
                }
                Command::Retry { id, step } => {
                    if running.is_some() {
                        let _ = ev_tx
                            .send(EngineEvent::Retried {
                                written: 0,
                                still_rejected: 0,
                                first_still_rejected: None,
                                error: Some("a run is in progress; retry after it ends".into()),
                            })
                            .await;
                        continue;
                    }
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    tokio::spawn(async move {
                        let ev = match crate::engine::ops::rejects::retry_rejects(&p, id, step.as_deref()).await {
                            Ok(r) => EngineEvent::Retried {
                                written: r.written.len() as u64,
                                still_rejected: r.still_rejected.len() as u64,
                                first_still_rejected: r.still_rejected.first().cloned(),
                                error: None,
                            },
                            Err(e) => EngineEvent::Retried {
                                written: 0,
                                still_rejected: 0,
                                first_still_rejected: None,
                                error: Some(format!("retry failed: {e:#}")),
                            },
                        };
                        let _ = tx.send(ev).await;
                        spawn_snapshot(p, tx);
                    });
                }
                Command::Decide { id, decision, note } => {
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    tokio::spawn(async move {
                        let (applied, message) = match crate::engine::ops::review::Decision::parse(&decision) {
                            Ok(d) => match crate::engine::ops::review::decide(&p, id, &d, note.as_deref()).await {
                                Ok(m) => (true, m),
                                Err(e) => (false, format!("discrepancy {id}: {e:#}")),
                            },
                            Err(e) => (false, format!("discrepancy {id}: {e:#}")),
                        };
                        let _ = tx
                            .send(EngineEvent::Decided {
                                id,
                                decision,
                                applied,
                                message,
                            })
                            .await;
                        spawn_snapshot(p, tx);
                    });
                }
            }
        }
    });
    EngineHandle {
        commands: cmd_tx,
        events: ev_rx,
    }
}

fn spawn_snapshot(project: Arc<Project>, tx: mpsc::Sender<EngineEvent>) {
    tokio::spawn(async move {
        let ev = match crate::engine::ops::snapshot::snapshot(&project).await {
            Ok(s) => EngineEvent::Snapshot(Box::new(s)),
            Err(e) => EngineEvent::Notice {
                level: NoticeLevel::Error,
                message: format!("cannot read the target: {e:#}"),
            },
        };
        let _ = tx.send(ev).await;
    });
}

/// `cutover baseline VERSION`: mark every pending step up to VERSION as applied without running it.
pub async fn baseline(project: &Project, version: &str) -> Result<Vec<String>> {
    if !project.steps.iter().any(|s| s.version == version) {
        return Err(eyre!("no migration has version {version} (see `cutover status`)"));
    }
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let lock = RunLock::acquire(&target, "baseline", lock_stale(project))
        .await
        .map_err(|e| eyre!("{e}"))?;
    ledger::ensure(&target).await?;
    let rows = ledger::load(&target).await?;
    let run_id = new_run_id();
    let mut marked = Vec::new();
    let mut tx = target.begin().await?;
    for s in project.steps.iter().filter(|s| s.version.as_str() <= version) {
        if rows
            .iter()
            .any(|r| r.version == s.version && r.status != ledger::LedgerStatus::Reverted)
        {
            continue;
        }
        let now = crate::engine::clock::now_iso();
        ledger::upsert(
            &mut tx,
            s,
            ledger::LedgerStatus::Baseline,
            &run_id,
            &now,
            Some(0),
            &Counts::default(),
            None,
            None,
        )
        .await?;
        marked.push(s.folder_name());
    }
    ledger::append_event(
        &mut tx,
        Some(&run_id),
        Some(version),
        "baseline",
        &serde_json::json!({"marked": marked}),
    )
    .await?;
    tx.commit().await?;
    lock.release().await?;
    target.close().await;
    Ok(marked)
}

/// `cutover repair`: forget schema steps left running/failed (nothing of them committed) and
/// record the on-disk checksum of applied steps whose files changed.
pub async fn repair(project: &Project) -> Result<Vec<String>> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let lock = RunLock::acquire(&target, "repair", lock_stale(project))
        .await
        .map_err(|e| eyre!("{e}"))?;
    ledger::ensure(&target).await?;
    let rows = ledger::load(&target).await?;
    let status = compute_status(&project.steps, &rows);
    let run_id = new_run_id();
    let mut actions = Vec::new();
    let mut tx = target.begin().await?;
    for s in &status {
        match s.state {
            plan::StepState::Running | plan::StepState::Failed if s.kind == StepKind::Schema => {
                ledger::delete(&mut tx, &s.version).await?;
                actions.push(format!(
                    "{}_{}: removed the {} entry; `cutover up` will run it again",
                    s.version,
                    s.name,
                    s.state.as_str()
                ));
            }
            plan::StepState::Modified => {
                if let Some(c) = &s.checksum {
                    ledger::set_checksum(&mut tx, &s.version, c).await?;
                    actions.push(format!(
                        "{}_{}: recorded the new checksum of {}",
                        s.version,
                        s.name,
                        s.modified_file.as_deref().unwrap_or("its file")
                    ));
                }
            }
            _ => {}
        }
    }
    ledger::append_event(
        &mut tx,
        Some(&run_id),
        None,
        "repair",
        &serde_json::json!({"actions": actions}),
    )
    .await?;
    tx.commit().await?;
    lock.release().await?;
    target.close().await;
    Ok(actions)
}
