//! Logging while the console owns the terminal: tracing goes to tui-logger (the log pane) and
//! to `cutover.log` in the project folder, never to stdout/stderr, which would tear the screen.

use crate::engine::protocol::{Command, DownTarget, EngineEvent, NoticeLevel};
use color_eyre::eyre::{Result, WrapErr, eyre};
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer};

pub const LOG_FILE: &str = "cutover.log";

/// Default filter: our own info and up; sqlx logs every statement at info, far too much.
const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Install the console's tracing subscriber. Must run before anything else installs a global
/// subscriber (the CLI's stderr logger must not be set up for the console).
pub fn init_logging(project_dir: &Path) -> Result<()> {
    let path = project_dir.join(LOG_FILE);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .wrap_err_with(|| format!("cannot open the log file {}", path.display()))?;
    let filter = || EnvFilter::try_from_env("CUTOVER_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let file_layer = tracing_subscriber::fmt::layer()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_target(true)
        .with_filter(filter());
    let pane_layer = tui_logger::TuiTracingSubscriberLayer.with_filter(filter());
    let subscriber = tracing_subscriber::registry().with(file_layer).with(pane_layer);
    tracing::subscriber::set_global_default(subscriber).map_err(|_| {
        eyre!(
            "a tracing subscriber is already installed, so the console's log would go to the terminal; \
             start the console without the CLI's stderr logger (cli::init_tracing)"
        )
    })?;
    tui_logger::init_logger(tui_logger::LevelFilter::Trace).map_err(|e| eyre!("cannot start the log pane: {e}"))?;
    tui_logger::set_default_level(tui_logger::LevelFilter::Trace);
    tracing::info!(log = %path.display(), "console logging started");
    Ok(())
}

/// Where the console's record of a run goes: the log pane and `cutover.log` show it under this
/// target, so `h` in the log pane can filter it.
pub const RUN_TARGET: &str = "cutover::run";

/// Every engine event an operator would want in the record of the night, as one tracing event
/// with readable fields (never a value's Rust debug form). Progress, statements and single
/// rejects are left out: the panes show them and the reject store keeps every reject. Field
/// names sort after `message`, so the log pane (which orders fields by name) starts each line
/// with what happened.
pub fn log_engine_event(event: &EngineEvent) {
    use crate::console::format::fmt_duration;
    match event {
        EngineEvent::Planned {
            operation,
            dry_run,
            steps,
            ..
        } => tracing::info!(
            target: RUN_TARGET,
            operation = %operation.as_str(),
            steps = steps.len(),
            "{}run planned",
            if *dry_run { "dry " } else { "" }
        ),
        EngineEvent::StepStarted {
            version,
            name,
            kind,
            dry_run,
        } => tracing::info!(
            target: RUN_TARGET,
            step = %version,
            name = %name,
            step_kind = %kind.as_str(),
            "{}step started",
            if *dry_run { "dry run: " } else { "" }
        ),
        EngineEvent::StepFinished {
            version,
            name,
            status,
            counts,
            duration_ms,
            dry_run,
        } => tracing::info!(
            target: RUN_TARGET,
            step = %version,
            name = %name,
            state = %status.finished_label(*dry_run),
            source = counts.source,
            written = counts.written,
            skipped = counts.skipped,
            rejected = counts.rejected,
            rows_merged = counts.merged,
            warnings = counts.warnings,
            took = %fmt_duration(*duration_ms),
            "step finished"
        ),
        EngineEvent::Failed {
            version,
            error,
            statement,
            source_key,
            column,
            ..
        } => tracing::error!(
            target: RUN_TARGET,
            step = %version.as_deref().unwrap_or("-"),
            reason = %error,
            statement = %statement.as_deref().unwrap_or("-"),
            source_key = %source_key.as_deref().unwrap_or("-"),
            source_column = %column.as_deref().unwrap_or("-"),
            "{}",
            if version.is_some() { "step failed" } else { "run failed" }
        ),
        EngineEvent::Paused { version } => tracing::info!(
            target: RUN_TARGET,
            step = %version.as_deref().unwrap_or("-"),
            "paused at a batch boundary"
        ),
        EngineEvent::Resumed { version } => {
            tracing::info!(target: RUN_TARGET, step = %version.as_deref().unwrap_or("-"), "resumed")
        }
        EngineEvent::Aborted { version, counts } => tracing::warn!(
            target: RUN_TARGET,
            step = %version,
            source_rows_done = counts.source,
            written = counts.written,
            "step aborted at a batch boundary; it is interrupted and `up` resumes it"
        ),
        EngineEvent::Finished {
            operation,
            outcome,
            steps_done,
            dry_run,
            ..
        } => tracing::info!(
            target: RUN_TARGET,
            operation = %operation.as_str(),
            outcome = %outcome.as_str(),
            steps_done = steps_done,
            "{}run finished",
            if *dry_run { "dry " } else { "" }
        ),
        EngineEvent::Fixed {
            id,
            field,
            applied,
            message,
        } => {
            // The value may be a patient's data or a secret: the log names the field only.
            if *applied {
                tracing::info!(target: RUN_TARGET, reject = id, set_field = %field, "reject fixed");
            } else {
                tracing::warn!(target: RUN_TARGET, reject = id, set_field = %field, reason = %message, "reject fix refused");
            }
        }
        EngineEvent::Retried {
            written,
            still_rejected,
            error,
            ..
        } => match error {
            Some(e) => tracing::warn!(target: RUN_TARGET, reason = %e, "retry could not run"),
            None => tracing::info!(
                target: RUN_TARGET,
                written = written,
                still_rejected = still_rejected,
                "rejects retried"
            ),
        },
        EngineEvent::Decided {
            id,
            decision,
            applied,
            message,
        } => {
            // `value=…` may be a patient's data: the log says a value was entered, not which.
            let taken = if decision.starts_with("value=") {
                "value"
            } else {
                decision.as_str()
            };
            if *applied {
                tracing::info!(target: RUN_TARGET, review_item = id, taken = %taken, "review decision applied");
            } else {
                tracing::warn!(target: RUN_TARGET, review_item = id, taken = %taken, reason = %message, "review decision refused");
            }
        }
        EngineEvent::RollbackPreview(p) => tracing::info!(
            target: RUN_TARGET,
            step = %p.version,
            name = %p.name,
            refused = %p.refused.as_deref().unwrap_or("-"),
            "rollback previewed"
        ),
        EngineEvent::Unverified { message } => {
            tracing::warn!(target: RUN_TARGET, reason = %message, "verify could not run")
        }
        EngineEvent::SourceCounts { rows, errors } => {
            tracing::info!(target: RUN_TARGET, steps = rows.len(), total_rows = rows.iter().map(|(_, n)| n).sum::<u64>(), "source rows counted");
            for (version, why) in errors {
                tracing::warn!(target: RUN_TARGET, step = %version, reason = %why, "source rows not counted");
            }
        }
        EngineEvent::RejectsExported { path, rows, error } => match error {
            None => tracing::info!(target: RUN_TARGET, rows = rows, file = %path, "rejects exported"),
            Some(why) => tracing::warn!(target: RUN_TARGET, file = %path, reason = %why, "rejects not exported"),
        },
        EngineEvent::ImportSaved { path, error } => match error {
            None => tracing::info!(target: RUN_TARGET, folder = %path, "import step saved"),
            Some(why) => tracing::warn!(target: RUN_TARGET, reason = %why, "import step not saved"),
        },
        EngineEvent::Assessed(report) => tracing::info!(
            target: RUN_TARGET,
            steps = report.steps.len(),
            would_write = report.steps.iter().map(|s| s.would_write).sum::<u64>(),
            estimate = %fmt_duration(report.estimated_ms),
            "assessed"
        ),
        EngineEvent::BackedUp { file, bytes, error, .. } => match error {
            None => tracing::info!(target: RUN_TARGET, file = %file, bytes = bytes, "target backed up"),
            Some(why) => tracing::warn!(target: RUN_TARGET, reason = %why, "backup failed"),
        },
        EngineEvent::Synced {
            version,
            pass,
            inserted,
            updated,
            deleted,
            rejected,
            lag_rows,
            ..
        } => {
            if inserted + updated + deleted + rejected > 0 {
                tracing::info!(
                    target: RUN_TARGET,
                    step = %version,
                    pass,
                    inserted,
                    updated,
                    deleted,
                    rejected,
                    lag_rows,
                    "synced"
                )
            }
        }
        EngineEvent::Notice { level, message } => match level {
            NoticeLevel::Info => tracing::info!(target: RUN_TARGET, "{message}"),
            NoticeLevel::Warning => tracing::warn!(target: RUN_TARGET, "{message}"),
            NoticeLevel::Error => tracing::error!(target: RUN_TARGET, "{message}"),
        },
        // Verified is logged with its failing checks where it arrives; the rest is live state.
        EngineEvent::Verified(_)
        | EngineEvent::Statement { .. }
        | EngineEvent::Progress { .. }
        | EngineEvent::Rejected { .. }
        | EngineEvent::Flagged { .. }
        | EngineEvent::ImportFiles { .. }
        | EngineEvent::Preview(_)
        | EngineEvent::ImportDryRun { .. }
        | EngineEvent::Snapshot(_)
        | EngineEvent::RejectPage(_)
        | EngineEvent::ReviewRecords(_) => {}
    }
}

/// What the operator asked the engine for, in words. Typed values (a fix, a decision's own
/// value) are never logged: they may be a patient's data or a secret.
pub fn log_command(command: &Command) {
    match command {
        Command::Start(o) => tracing::info!(
            target: RUN_TARGET,
            only = %o.only.as_deref().unwrap_or("-"),
            only_next = o.only_next,
            trial = o.dry_run,
            "operator: run"
        ),
        Command::Pause => tracing::info!(target: RUN_TARGET, "operator: pause at the next batch boundary"),
        Command::Resume => tracing::info!(target: RUN_TARGET, "operator: resume"),
        Command::Sync { once, steps, .. } => tracing::info!(
            target: RUN_TARGET,
            once = *once,
            steps = %if steps.is_empty() { "all".to_string() } else { steps.join(",") },
            "operator: sync"
        ),
        Command::Abort => tracing::warn!(target: RUN_TARGET, "operator: abort at the next batch boundary"),
        Command::HoldForAbortQuestion => {
            tracing::info!(target: RUN_TARGET, "operator: asked whether to abort; the run holds at its next batch boundary")
        }
        Command::ReleaseAbortQuestion => tracing::info!(target: RUN_TARGET, "operator: not aborted; the run goes on"),
        Command::Retry { id, step } => tracing::info!(
            target: RUN_TARGET,
            reject = %id.map(|i| i.to_string()).unwrap_or_else(|| "all".into()),
            step = %step.as_deref().unwrap_or("-"),
            "operator: retry rejects"
        ),
        Command::FixReject { id, field, .. } => {
            tracing::info!(target: RUN_TARGET, reject = id, set_field = %field, "operator: fix a reject")
        }
        Command::Decide { id, decision, note } => tracing::info!(
            target: RUN_TARGET,
            review_item = id,
            taken = %if decision.starts_with("value=") { "value" } else { decision.as_str() },
            with_note = note.is_some(),
            "operator: review decision"
        ),
        Command::Rollback { target, dry_run } => tracing::warn!(
            target: RUN_TARGET,
            to = %match target {
                DownTarget::Last => "the last applied step".to_string(),
                DownTarget::To(v) => format!("down to {v}"),
                DownTarget::Only(v) => v.clone(),
                DownTarget::All => "every applied step".to_string(),
            },
            trial = dry_run,
            "operator: roll back"
        ),
        Command::PreviewRollback { version } => {
            tracing::debug!(target: RUN_TARGET, step = %version, "operator: preview a rollback")
        }
        Command::Verify => tracing::info!(target: RUN_TARGET, "operator: verify"),
        Command::Assess { .. } => tracing::info!(target: RUN_TARGET, "operator: assess"),
        Command::UndoDecision { id } => {
            tracing::warn!(target: RUN_TARGET, review_item = id, "operator: undo the last decision")
        }
        Command::ExportRejects { filter, .. } => {
            tracing::info!(target: RUN_TARGET, filtered = !filter.is_empty(), "operator: export rejects")
        }
        Command::Backup { .. } => tracing::info!(target: RUN_TARGET, "operator: back up the target"),
        Command::SaveImportStep { name, .. } => {
            tracing::info!(target: RUN_TARGET, step = %name, "operator: save an import step")
        }
        Command::DryRunImport { name, .. } => {
            tracing::info!(target: RUN_TARGET, step = %name, "operator: dry-run an import step")
        }
        Command::ListImportFiles | Command::PreviewFile { .. } => {
            tracing::debug!(target: RUN_TARGET, "read the source folder")
        }
        Command::Refresh | Command::CountSources | Command::LoadRejects(_) | Command::LoadReviewRecords { .. } => {
            tracing::debug!(target: RUN_TARGET, "read the target")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::project::StepKind;
    use crate::engine::protocol::{Counts, StepState};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `cutover.log` would get for these events and commands (the same fmt layer).
    fn logged(events: &[EngineEvent], commands: &[Command]) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            events.iter().for_each(log_engine_event);
            commands.iter().for_each(log_command);
        });
        let bytes = out.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn a_run_is_recorded_step_by_step_with_readable_fields() {
        let v = "20250101T090100".to_string();
        let counts = Counts {
            source: 50_000,
            written: 49_990,
            rejected: 10,
            ..Counts::default()
        };
        let log = logged(
            &[
                EngineEvent::StepStarted {
                    version: v.clone(),
                    name: "accounts".into(),
                    kind: StepKind::Data,
                    dry_run: false,
                },
                EngineEvent::Paused {
                    version: Some(v.clone()),
                },
                EngineEvent::Resumed {
                    version: Some(v.clone()),
                },
                EngineEvent::Aborted {
                    version: v.clone(),
                    counts,
                },
                EngineEvent::StepFinished {
                    version: v.clone(),
                    name: "accounts".into(),
                    status: StepState::Applied,
                    counts,
                    duration_ms: 4_200,
                    dry_run: false,
                },
                EngineEvent::Failed {
                    version: Some(v.clone()),
                    error: "users u00002000 rejected (email)".into(),
                    statement: None,
                    source_key: Some("u00002000".into()),
                    column: Some("email".into()),
                    counts: None,
                },
                EngineEvent::Fixed {
                    id: 7,
                    field: "email".into(),
                    applied: true,
                    message: "ok".into(),
                },
                EngineEvent::Retried {
                    written: 1,
                    still_rejected: 0,
                    first_still_rejected: None,
                    error: None,
                },
                EngineEvent::Decided {
                    id: 3,
                    decision: "value=1999-02-03".into(),
                    applied: true,
                    message: "ok".into(),
                },
            ],
            &[
                Command::Pause,
                Command::Abort,
                Command::FixReject {
                    id: 7,
                    field: "email".into(),
                    value: "bob@example.com".into(),
                },
                Command::Rollback {
                    target: DownTarget::Only(v.clone()),
                    dry_run: false,
                },
                Command::Verify,
            ],
        );
        for want in [
            "step started step=20250101T090100 name=accounts step_kind=data",
            "paused at a batch boundary step=20250101T090100",
            "resumed step=20250101T090100",
            "step aborted at a batch boundary",
            "step finished step=20250101T090100 name=accounts state=applied source=50000 written=49990",
            "took=4.2s",
            "step failed step=20250101T090100",
            "source_key=u00002000 source_column=email",
            "reject fixed reject=7 set_field=email",
            "rejects retried written=1 still_rejected=0",
            "review decision applied review_item=3 taken=value",
            "operator: pause at the next batch boundary",
            "operator: abort at the next batch boundary",
            "operator: fix a reject reject=7 set_field=email",
            "operator: roll back to=20250101T090100",
            "operator: verify",
        ] {
            assert!(log.contains(want), "{want:?} not in:\n{log}");
        }
        // Readable, and nothing typed by the operator or a patient's data leaks.
        assert!(!log.contains("Some("), "{log}");
        assert!(!log.contains("bob@example.com"), "{log}");
        assert!(!log.contains("1999-02-03"), "{log}");
    }
}
