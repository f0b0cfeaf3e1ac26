//! Engine events: what each `EngineEvent` changes in the state. The run's progress (planned,
//! step started, statements, progress, rejects and flags, pause, end) is applied here; the
//! review, verify and rollback answers go to their own parts of `update`.

use super::common::would_be;
use super::navigation::clamp_selections;
use super::rejects;
use super::review;
use super::rollback;
use super::verify;
use crate::console::format::{fmt_count, fmt_duration, one_line};
use crate::console::state::{
    AppState, CurrentStep, FinishedStep, QuitState, RATE_HISTORY, RunState, StatusLevel, Window, is_runnable,
};
use crate::engine::protocol::StepState;
use crate::engine::protocol::{Command, EngineEvent, NoticeLevel, Operation, Outcome};

pub fn on_event(state: &mut AppState, event: EngineEvent) -> Vec<Command> {
    match event {
        EngineEvent::Verified(report) => verify::on_report(state, report),
        EngineEvent::Assessed(report) => super::assess::on_report(state, *report),
        EngineEvent::ImportFiles { folder, files, error } => super::import::on_files(state, folder, files, error),
        EngineEvent::Preview(report) => super::import::on_preview(state, *report),
        EngineEvent::ImportDryRun { report, error } => super::import::on_dry_run(state, report, error),
        EngineEvent::ImportSaved { path, error } => super::import::on_saved(state, path, error),
        EngineEvent::BackedUp { file, bytes, error, .. } => {
            return super::backup::on_backed_up(state, file, bytes, error);
        }
        EngineEvent::Planned {
            operation,
            dry_run,
            steps,
            ..
        } => {
            let run = state.run.get_or_insert_with(RunState::default);
            run.operation = operation;
            run.dry_run = dry_run;
            run.planned = steps;
        }
        EngineEvent::StepStarted {
            version,
            name,
            kind,
            dry_run,
        } => {
            if !dry_run && let Some(m) = state.migrations.iter_mut().find(|m| m.version == version) {
                m.state = StepState::Running;
            }
            let verb = match (dry_run, state.run.as_ref().map(|r| r.operation.as_str())) {
                (true, _) => "dry run of",
                (false, Some("down")) => "rolling back",
                _ => "running",
            };
            state.set_status(StatusLevel::Info, format!("{verb} {name} ({})…", kind.as_str()));
            let run = state.run.get_or_insert_with(RunState::default);
            run.current = Some(CurrentStep {
                version,
                name,
                kind,
                dry_run,
                progress: Default::default(),
                rate_history: Vec::new(),
                statements_done: 0,
                last_statement: None,
                flags: 0,
                last_reject: None,
            });
        }
        EngineEvent::Statement { version, index, sql } => {
            let dry_run = state
                .run
                .as_ref()
                .is_some_and(|r| r.dry_run && r.operation == Operation::Up);
            if dry_run {
                let list = state.dry_run_statements.entry(version.clone()).or_default();
                if index <= 1 {
                    list.clear();
                }
                list.push(one_line(&sql));
            }
            if let Some(c) = current_mut(state, &version) {
                c.statements_done = c.statements_done.max(index + 1);
                c.last_statement = Some(one_line(&sql));
            }
        }
        EngineEvent::Progress { version, progress } => {
            if progress.rows_per_sec > 0.0 {
                state.last_rate = Some(progress.rows_per_sec);
            }
            if let Some(c) = current_mut(state, &version) {
                c.progress = progress;
                // A sparkline's worth of history; older rates are dropped.
                c.rate_history.push(progress.rows_per_sec.max(0.0).round() as u64);
                if c.rate_history.len() > RATE_HISTORY {
                    let extra = c.rate_history.len() - RATE_HISTORY;
                    c.rate_history.drain(..extra);
                }
            }
        }
        EngineEvent::Rejected {
            version,
            source_key,
            rule,
            reason,
            ..
        } => {
            if let Some(c) = current_mut(state, &version) {
                c.last_reject = Some(format!("{source_key}: {rule} — {reason}"));
            }
            // The rejects pane reads its page again (throttled: a run may reject thousands).
            return rejects::reload(state);
        }
        EngineEvent::Flagged { version, .. } => {
            if let Some(c) = current_mut(state, &version) {
                c.flags += 1;
            }
        }
        EngineEvent::Paused { .. } => {
            let question = state
                .run
                .as_ref()
                .is_some_and(|r| r.abort_question && !r.pause_requested);
            if let Some(r) = &mut state.run {
                r.paused = true;
            }
            let text = if question {
                "held at a batch boundary: y aborts here, n goes on"
            } else {
                "paused at a batch boundary; p resumes"
            };
            state.set_status(StatusLevel::Warn, text);
        }
        EngineEvent::Resumed { .. } => {
            if let Some(r) = &mut state.run {
                r.paused = false;
                r.pause_requested = false;
            }
            state.set_status(StatusLevel::Info, "resumed");
        }
        EngineEvent::StepFinished {
            version,
            name,
            status,
            counts,
            duration_ms,
            dry_run,
        } => {
            if dry_run {
                state.dry_runs.insert(version.clone(), counts);
                let outcome = state
                    .dry_run_statements_text(&version)
                    .unwrap_or_else(|| would_be(&counts));
                state.set_status(StatusLevel::Info, format!("dry run of {name}: {outcome}"));
            } else {
                if let Some(m) = state.migrations.iter_mut().find(|m| m.version == version) {
                    m.state = status;
                    m.counts = counts;
                    m.duration_ms = Some(duration_ms as i64);
                    m.error = None;
                }
                let text = format!("{name} {status} in {}", fmt_duration(duration_ms));
                state.set_status(StatusLevel::Info, text);
            }
            if let Some(r) = &mut state.run {
                r.steps_done += 1;
                r.current = None;
            }
            state.last_finished = Some(FinishedStep {
                version,
                name,
                status: status.finished_label(dry_run).into(),
                counts,
                duration_ms,
                dry_run,
            });
        }
        EngineEvent::Aborted { version, counts } => {
            if let Some(m) = state.migrations.iter_mut().find(|m| m.version == version) {
                m.state = StepState::Interrupted;
                m.counts = counts;
            }
            let name = state.step_name(&version).unwrap_or(&version).to_string();
            let text = format!(
                "{name} aborted at a batch boundary after {} rows; n resumes it",
                fmt_count(counts.written + counts.skipped + counts.rejected + counts.merged)
            );
            state.set_status(StatusLevel::Warn, text);
        }
        EngineEvent::Failed {
            version,
            error,
            statement,
            ..
        } => {
            let error = one_line(&error);
            if let Some(v) = &version
                && let Some(m) = state.migrations.iter_mut().find(|m| &m.version == v)
            {
                m.state = StepState::Failed;
                m.error = Some(error.clone());
                m.failing_statement = statement;
            }
            let text = match version.as_deref().and_then(|v| state.step_name(v)) {
                Some(name) => format!("{name} failed: {error}"),
                None => error,
            };
            state.set_status(StatusLevel::Error, text);
        }
        EngineEvent::Finished {
            ok,
            outcome,
            steps_done,
            dry_run,
            operation,
            ..
        } => {
            let all = state.run.take().is_some_and(|r| r.all);
            // A quit that waited for the run to stop can leave now.
            if state.quit != QuitState::Running {
                state.quit = QuitState::Now;
            }
            // Failures and aborts already said why; only a clean end needs a line of its own.
            if outcome == Outcome::Done && !dry_run {
                let text = match (operation.as_str(), steps_done) {
                    (_, 0) => "nothing to do".to_string(),
                    ("down", n) => format!("rollback finished: {n} step(s) reverted"),
                    (_, n) => format!("run finished: {n} step(s) applied"),
                };
                state.set_status(StatusLevel::Info, text);
            }
            let mut commands = vec![Command::Refresh];
            // A run of all pending steps that ended well is checked at once, as `cutover
            // verify` would (not when leaving, and not after a dry run).
            // A rollback is checked too: verify compares each rolled-back table with its
            // checksum from before the step.
            if (all || operation == Operation::Down)
                && ok
                && outcome == Outcome::Done
                && !dry_run
                && state.quit == QuitState::Running
            {
                commands.extend(verify::after_run(state));
            }
            return commands;
        }
        EngineEvent::Snapshot(s) => {
            let first = !state.loaded;
            state.loaded = true;
            state.project = s.project;
            state.target = s.target;
            if let (Some(a), Some(b)) = (&s.window_start, &s.window_end)
                && let Some(w) = Window::parse(a, b)
            {
                state.window = Some(w);
            }
            state.migrations = s.migrations;
            state.open_rejects = s.open_rejects;
            state.open_rejects_by_step = s.open_rejects_by_step;
            state.locked_by = s.locked_by;
            state.discrepancies = s.discrepancies;
            // Answered decisions are in this snapshot (or were refused): no longer "on the way".
            state.deciding.retain(|p| !p.answered);
            // On the first snapshot only: later ones keep the operator's selection.
            if first && let Some(i) = state.migrations.iter().position(is_runnable) {
                state.selected_step = i;
            }
            clamp_selections(state);
            // Rejects may have changed (a run, a fix, a retry): the shown page is read again.
            return rejects::reload(state);
        }
        EngineEvent::RejectPage(page) => rejects::on_page(state, page),
        EngineEvent::ReviewRecords(records) => review::on_records(state, *records),
        EngineEvent::RejectsExported { path, rows, error } => rejects::on_exported(state, path, rows, error),
        EngineEvent::RollbackPreview(p) => rollback::on_preview(state, p),
        EngineEvent::Unverified { message } => verify::on_unverified(state, &message),
        EngineEvent::Decided {
            id, applied, message, ..
        } => review::on_decided(state, id, applied, &message),
        EngineEvent::Fixed { applied, message, .. } => {
            let level = if applied { StatusLevel::Info } else { StatusLevel::Error };
            state.set_status(level, one_line(&message));
        }
        EngineEvent::Retried {
            written,
            still_rejected,
            first_still_rejected,
            error,
        } => match error {
            Some(e) => state.set_status(StatusLevel::Error, one_line(&e)),
            None => {
                let first = first_still_rejected
                    .map(|(i, why)| format!(" ({i}: {why})"))
                    .unwrap_or_default();
                let level = if still_rejected > 0 {
                    StatusLevel::Warn
                } else {
                    StatusLevel::Info
                };
                state.set_status(
                    level,
                    one_line(&format!(
                        "retry: {written} written, {still_rejected} still rejected{first}"
                    )),
                );
            }
        },
        EngineEvent::SourceCounts { rows, errors } => {
            state.counting_sources = false;
            state.source_rows = rows.into_iter().collect();
            if let Some((version, why)) = errors.first() {
                let name = state.step_name(version).unwrap_or(version).to_string();
                state.set_status(
                    StatusLevel::Warn,
                    one_line(&format!("cannot count the source of {name} for the ETA: {why}")),
                );
            }
        }
        EngineEvent::Synced {
            version,
            lag_rows,
            lag_seconds,
            mark,
            ..
        } => {
            // The gauge follows each pass; the snapshot brings it back after a restart.
            if let Some(m) = state.migrations.iter_mut().find(|m| m.version == version) {
                let synced_at = m.sync.as_ref().and_then(|s| s.synced_at.clone());
                m.sync = Some(crate::engine::protocol::views::SyncLag {
                    lag_rows,
                    lag_seconds,
                    mark,
                    synced_at,
                });
            }
        }
        EngineEvent::Notice { level, message } => {
            let level = match level {
                NoticeLevel::Info => StatusLevel::Info,
                NoticeLevel::Warning => StatusLevel::Warn,
                NoticeLevel::Error => StatusLevel::Error,
            };
            super::assess::on_failure(state, &message);
            if !state.loaded && message.starts_with(TARGET_UNREADABLE) {
                state.first_read_retry_at = Some(state.now + chrono::Duration::seconds(FIRST_READ_RETRY_SECS));
            }
            state.set_status(level, one_line(&message));
        }
    }
    Vec::new()
}

/// How the engine words a snapshot it could not read (`runner::spawn_snapshot`).
const TARGET_UNREADABLE: &str = "cannot read the target";
/// Until the first snapshot arrives, a failed read is tried again this often.
pub const FIRST_READ_RETRY_SECS: i64 = 3;

/// The step running now, if it is the one the event is about (a late event of a step that
/// already ended is dropped).
fn current_mut<'a>(state: &'a mut AppState, version: &str) -> Option<&'a mut CurrentStep> {
    state
        .run
        .as_mut()
        .and_then(|r| r.current.as_mut())
        .filter(|c| c.version == version)
}
