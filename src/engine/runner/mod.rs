//! The engine task: takes `Command`s, runs plans, sends `EngineEvent`s. A run holds the target's
//! run lock from its first write to its last. `up` and `down` are the two operations;
//! everything else a command asks for is an `ops` call answered with a typed event.

pub mod down;
pub mod import;
pub mod outcome;
pub mod sync;
pub mod up;

pub use down::run_down;
pub use outcome::RunOutcome;
pub use up::run_up;

use crate::engine::exec::RunControl;
use crate::engine::project::Project;
use crate::engine::protocol::{Command, EngineEvent, NoticeLevel};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Channel sizes: small and bounded so a slow consumer slows the engine instead of growing
/// memory; progress is coalesced well below this rate.
pub const COMMAND_QUEUE: usize = 64;
pub const EVENT_QUEUE: usize = 1024;

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
                Command::Sync { once, every_ms, steps } => {
                    if running.is_some() {
                        let _ = ev_tx
                            .send(EngineEvent::Notice {
                                level: NoticeLevel::Warning,
                                message: "a run is in progress; sync after it ends".into(),
                            })
                            .await;
                        continue;
                    }
                    let control = RunControl::default();
                    let opts = crate::engine::sync::SyncOptions {
                        once,
                        every: every_ms.map(std::time::Duration::from_millis),
                        steps,
                    };
                    let h = tokio::spawn(sync::run_sync(project.clone(), opts, ev_tx.clone(), control.clone()));
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
                // `Paused` and `Resumed` come from the step itself, when it actually stops at
                // (and leaves) a batch boundary; a pause asked for and taken back before the
                // next boundary sends neither.
                Command::Pause => {
                    if let Some((_, c)) = &running {
                        c.set_paused(true);
                    }
                }
                Command::Resume => {
                    if let Some((_, c)) = &running {
                        c.set_paused(false);
                    }
                }
                Command::HoldForAbortQuestion => {
                    if let Some((_, c)) = &running {
                        c.set_abort_question(true);
                    }
                }
                Command::ReleaseAbortQuestion => {
                    if let Some((_, c)) = &running {
                        c.set_abort_question(false);
                    }
                }
                Command::Abort => {
                    if let Some((_, c)) = &running {
                        c.request_abort();
                    }
                }
                Command::Refresh => {
                    spawn_snapshot(project.clone(), ev_tx.clone());
                }
                Command::CountSources => {
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    tokio::spawn(async move {
                        let ev = match count_sources(&p).await {
                            Ok((rows, errors)) => EngineEvent::SourceCounts { rows, errors },
                            Err(e) => EngineEvent::SourceCounts {
                                rows: Vec::new(),
                                errors: vec![("*".into(), format!("{e:#}"))],
                            },
                        };
                        let _ = tx.send(ev).await;
                    });
                }
                Command::Verify => {
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    // The verifier's streams are not `Send` across awaits, so it runs on a
                    // thread of its own with a single-threaded runtime.
                    std::thread::spawn(move || {
                        let ev = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                            Ok(rt) => match rt.block_on(crate::engine::ops::verify::verify(&p)) {
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
                Command::UndoDecision { id } => {
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    tokio::spawn(async move {
                        let (applied, message) = match crate::engine::ops::review::undo(&p, id).await {
                            Ok(m) => (true, m),
                            Err(e) => (false, format!("discrepancy {id}: {e:#}")),
                        };
                        let _ = tx
                            .send(EngineEvent::Decided {
                                id,
                                decision: "undo".into(),
                                applied,
                                message,
                            })
                            .await;
                        spawn_snapshot(p, tx);
                    });
                }
                Command::LoadRejects(req) => {
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    tokio::spawn(async move {
                        let page = match crate::engine::ops::rejects::page(&p, &req).await {
                            Ok(page) => page,
                            Err(e) => crate::engine::protocol::views::RejectPage {
                                seq: req.seq,
                                filter: req.filter.clone(),
                                error: Some(format!("cannot read the rejects: {e:#}")),
                                ..Default::default()
                            },
                        };
                        let _ = tx.send(EngineEvent::RejectPage(page)).await;
                    });
                }
                Command::LoadReviewRecords { id } => {
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    tokio::spawn(async move {
                        let records = match crate::engine::ops::review::records(&p, id).await {
                            Ok(r) => r,
                            Err(e) => crate::engine::protocol::views::ReviewRecords {
                                id,
                                error: Some(format!("cannot read the records of discrepancy {id}: {e:#}")),
                                ..Default::default()
                            },
                        };
                        let _ = tx.send(EngineEvent::ReviewRecords(Box::new(records))).await;
                    });
                }
                Command::ListImportFiles => {
                    let folder = crate::engine::preview::step::source_folder(&project.config);
                    let ev = match &folder {
                        Some(f) => match crate::engine::preview::step::list_files(f) {
                            Ok(files) => EngineEvent::ImportFiles {
                                folder: Some(f.display().to_string()),
                                files,
                                error: None,
                            },
                            Err(e) => EngineEvent::ImportFiles {
                                folder: Some(f.display().to_string()),
                                files: Vec::new(),
                                error: Some(format!("{e:#}")),
                            },
                        },
                        None => EngineEvent::ImportFiles {
                            folder: None,
                            files: Vec::new(),
                            error: Some(
                                "the project's source is not a folder of files: set [source] url = \"file:///path/to/export/\" (or --source file://…)"
                                    .into(),
                            ),
                        },
                    };
                    let _ = ev_tx.send(ev).await;
                }
                Command::PreviewFile {
                    file,
                    sheet,
                    into,
                    rows,
                } => {
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    tokio::spawn(async move {
                        let report = crate::engine::preview::step::preview_report(&p, &file, sheet, into, rows).await;
                        let _ = tx.send(EngineEvent::Preview(Box::new(report))).await;
                    });
                }
                Command::DryRunImport { name, step } => {
                    if running.is_some() {
                        let _ = ev_tx
                            .send(EngineEvent::ImportDryRun {
                                report: Default::default(),
                                error: Some("a run is in progress; dry-run the import after it ends".into()),
                            })
                            .await;
                        continue;
                    }
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    tokio::spawn(async move {
                        let ev = match import::dry_run_step(&p, &name, &step).await {
                            Ok(report) => EngineEvent::ImportDryRun { report, error: None },
                            Err(e) => EngineEvent::ImportDryRun {
                                report: Default::default(),
                                error: Some(format!("{e:#}")),
                            },
                        };
                        let _ = tx.send(ev).await;
                    });
                }
                Command::SaveImportStep { name, step } => {
                    let ev = match crate::engine::preview::step::save_step(
                        &project.config.migrations_dir,
                        &project.steps,
                        &name,
                        &step,
                    ) {
                        Ok(dir) => {
                            tracing::info!(path = %dir.display(), "import step saved");
                            EngineEvent::ImportSaved {
                                path: dir.display().to_string(),
                                error: None,
                            }
                        }
                        Err(e) => EngineEvent::ImportSaved {
                            path: String::new(),
                            error: Some(format!("{e:#}")),
                        },
                    };
                    let _ = ev_tx.send(ev).await;
                }
                Command::Assess { sample } => {
                    // The assess's transaction on the target would wait for the run's writes.
                    if running.is_some() {
                        let _ = ev_tx
                            .send(EngineEvent::Notice {
                                level: NoticeLevel::Warning,
                                message: "a run is in progress; assess after it ends".into(),
                            })
                            .await;
                        continue;
                    }
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    tokio::spawn(async move {
                        let ev = match crate::engine::ops::assess::assess(&p, sample).await {
                            Ok(r) => EngineEvent::Assessed(Box::new(r)),
                            Err(e) => EngineEvent::Notice {
                                level: NoticeLevel::Error,
                                message: format!("assess could not run: {}", crate::engine::db_error::report_text(&e)),
                            },
                        };
                        let _ = tx.send(ev).await;
                    });
                }
                Command::Backup { out } => {
                    if running.is_some() {
                        let _ = ev_tx
                            .send(EngineEvent::BackedUp {
                                file: String::new(),
                                bytes: 0,
                                sha256: String::new(),
                                error: Some("a run is in progress; back up before or after it".into()),
                            })
                            .await;
                        continue;
                    }
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    tokio::spawn(async move {
                        let out = out.map(std::path::PathBuf::from);
                        let ev = match crate::engine::ops::backup::backup(&p, out.as_deref()).await {
                            Ok(r) => EngineEvent::BackedUp {
                                file: r.file,
                                bytes: r.bytes,
                                sha256: r.sha256,
                                error: None,
                            },
                            Err(e) => EngineEvent::BackedUp {
                                file: String::new(),
                                bytes: 0,
                                sha256: String::new(),
                                error: Some(crate::engine::config::redact_url(&format!("{e:#}"))),
                            },
                        };
                        let _ = tx.send(ev).await;
                    });
                }
                Command::ExportRejects { filter, stamp } => {
                    let (p, tx) = (project.clone(), ev_tx.clone());
                    tokio::spawn(async move {
                        let ev = match crate::engine::ops::rejects::export_filtered(&p, &filter, &stamp).await {
                            Ok((path, rows)) => {
                                tracing::info!(path = %path.display(), rows, "rejects exported");
                                EngineEvent::RejectsExported {
                                    path: path.display().to_string(),
                                    rows,
                                    error: None,
                                }
                            }
                            Err(e) => EngineEvent::RejectsExported {
                                path: String::new(),
                                rows: 0,
                                error: Some(format!("{e:#}")),
                            },
                        };
                        let _ = tx.send(ev).await;
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

/// Source rows of each data and merge step `up` would run: one COUNT per source (both sides
/// of a merge), on a connection of its own. A step that cannot be counted is listed with why.
#[allow(clippy::type_complexity)]
async fn count_sources(project: &Project) -> color_eyre::Result<(Vec<(String, u64)>, Vec<(String, String)>)> {
    use crate::engine::db::{Db, Role};
    use crate::engine::project::StepKind;
    use crate::engine::source::table::count_step_source;
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let ledger_rows = crate::engine::store::ledger::load(&target).await;
    target.close().await;
    let status = crate::engine::plan::compute_status(&project.steps, &ledger_rows?);
    let todo: Vec<_> = status
        .iter()
        .filter(|s| s.kind != StepKind::Schema && !s.is_applied())
        .filter_map(|s| s.def.clone())
        .collect();
    if todo.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    // The source database is opened only when a step reads it: file steps count their files.
    let source = match project.config.source.as_ref() {
        Some(url) => Some(Db::connect(url, &project.config.dir, Role::Source).await?),
        None => None,
    };
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    let config = &project.config;
    for step in todo {
        let counted: color_eyre::Result<u64> = async {
            Ok(match step.kind {
                StepKind::Merge => {
                    let m = crate::engine::steps::merge::MergeStep::load(&step)?;
                    count_step_source(config, source.as_ref(), &m.a).await?
                        + count_step_source(config, source.as_ref(), &m.b).await?
                }
                _ => count_step_source(config, source.as_ref(), &crate::engine::ops::load_compiled(&step)?).await?,
            })
        }
        .await;
        match counted {
            Ok(n) => rows.push((step.version.clone(), n)),
            Err(e) => errors.push((
                step.version.clone(),
                crate::engine::config::redact_url(&format!("{e:#}")),
            )),
        }
    }
    if let Some(source) = source {
        source.close().await;
    }
    Ok((rows, errors))
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
