//! Runs: the questions before running the next step or all pending steps, what a yes starts,
//! pausing and resuming, aborting, and the dry run of one step.
//!
//! `state.run` is set as soon as a run is asked for, so the console counts as running (and
//! refuses other writes) before the engine's `Planned` arrives.

use super::common::{refuse_if_locked, refuse_if_running, would_be};
use crate::console::state::{AppState, ConfirmAction, Dialog, RunState, StatusLevel, is_runnable};
use crate::engine::protocol::StepState;
use crate::engine::protocol::{Command, Operation, RunOptions};

/// `n`.
pub fn ask_run_next(state: &mut AppState) {
    if refuse_if_running(state) || refuse_if_locked(state) {
        return;
    }
    let Some(step) = state.next_pending() else {
        state.set_status(StatusLevel::Info, "nothing pending: every step is applied");
        return;
    };
    let version = step.version.clone();
    let mut lines = vec![format!("{}  {}  ({})", step.version, step.name, step.kind.as_str())];
    if let Some(info) = state.step_info.get(&version) {
        lines.push(format!("source  {}", info.source));
        lines.push(format!("target  {}", info.target));
    }
    if step.state != StepState::Pending {
        lines.push(format!("it is {}; the run resumes or repeats it", step.state));
    }
    if let Some(c) = state.dry_runs.get(&version) {
        lines.push(format!("dry run {}", would_be(c)));
    }
    state.dialog = Some(Dialog::Confirm {
        action: ConfirmAction::RunNext { version },
        title: "Run the next pending step?".into(),
        lines,
    });
}

pub fn confirmed_run_next(state: &mut AppState, version: String) -> Vec<Command> {
    // The state may have changed under the dialog (a snapshot arrived): say so rather
    // than run a different step than the one confirmed.
    if state.next_pending().map(|s| s.version.as_str()) != Some(version.as_str()) {
        state.set_status(StatusLevel::Warn, "the next pending step changed; press n again");
        return Vec::new();
    }
    state.run = Some(RunState {
        operation: Operation::Up,
        ..Default::default()
    });
    vec![Command::Start(RunOptions {
        only_next: true,
        ..Default::default()
    })]
}

/// `a`.
pub fn ask_run_all(state: &mut AppState) {
    if refuse_if_running(state) || refuse_if_locked(state) {
        return;
    }
    let pending: Vec<String> = state
        .migrations
        .iter()
        .filter(|m| is_runnable(m))
        .map(|m| format!("{}  {}  ({})", m.version, m.name, m.kind.as_str()))
        .collect();
    if pending.is_empty() {
        state.set_status(StatusLevel::Info, "nothing pending: every step is applied");
        return;
    }
    let mut lines = vec![format!("{} steps, in this order:", pending.len())];
    lines.extend(pending);
    lines.push(String::new());
    lines.push(crate::console::eta::plan_summary(state));
    state.dialog = Some(Dialog::Confirm {
        action: ConfirmAction::RunAll,
        title: "Run all pending steps?".into(),
        lines,
    });
}

pub fn confirmed_run_all(state: &mut AppState) -> Vec<Command> {
    // `all` is what makes a clean end verify by itself (see `events`).
    state.run = Some(RunState {
        operation: Operation::Up,
        all: true,
        ..Default::default()
    });
    vec![Command::Start(RunOptions::default())]
}

/// `x`: asks first, and holds the run at its next batch boundary while the question is open,
/// so the step cannot go on (or finish) under the dialog and make the answer meaningless.
pub fn ask_abort(state: &mut AppState) -> Vec<Command> {
    let Some(run) = &mut state.run else {
        state.set_status(StatusLevel::Info, "nothing is running");
        return Vec::new();
    };
    run.abort_question = true;
    let name = run
        .current
        .as_ref()
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "the run".into());
    state.dialog = Some(Dialog::Confirm {
        action: ConfirmAction::Abort,
        title: "Abort the run?".into(),
        lines: vec![
            format!("{name} holds at its next batch boundary while you decide."),
            "y: it stops there; committed batches stay and n resumes from there.".into(),
            "n: it goes on.".into(),
        ],
    });
    vec![Command::HoldForAbortQuestion]
}

/// The abort question answered yes. The hold keeps the step from ending under the dialog, but
/// the run may have ended before the hold reached it.
pub fn confirmed_abort(state: &mut AppState) -> Vec<Command> {
    if let Some(run) = &mut state.run {
        run.aborting = true;
        run.abort_question = false;
        state.set_status(StatusLevel::Warn, "aborting at the next batch boundary…");
        vec![Command::Abort]
    } else {
        state.set_status(StatusLevel::Info, "the run had already ended: nothing to abort");
        Vec::new()
    }
}

/// The abort question answered no: the run goes on from the boundary it held at.
pub fn abort_declined(state: &mut AppState) -> Vec<Command> {
    match &mut state.run {
        Some(run) => {
            run.abort_question = false;
            state.set_status(StatusLevel::Info, "not aborted: the run goes on");
            vec![Command::ReleaseAbortQuestion]
        }
        None => Vec::new(),
    }
}

/// `p`: no question, since a pause loses nothing. A second `p` before the step reached its
/// boundary takes the pause back.
pub fn pause_resume(state: &mut AppState) -> Vec<Command> {
    match &mut state.run {
        None => {
            state.set_status(StatusLevel::Info, "nothing is running");
            Vec::new()
        }
        Some(r) if r.paused || r.pause_requested => {
            r.pause_requested = false;
            state.set_status(StatusLevel::Info, "resuming…");
            vec![Command::Resume]
        }
        Some(r) => {
            r.pause_requested = true;
            state.set_status(StatusLevel::Info, "pausing at the next batch boundary…");
            vec![Command::Pause]
        }
    }
}

/// `d`: no question, since nothing is committed. Not refused under a foreign lock: it writes
/// nothing.
pub fn dry_run(state: &mut AppState) -> Vec<Command> {
    if refuse_if_running(state) {
        return Vec::new();
    }
    let Some(step) = state.selected_step() else {
        return Vec::new();
    };
    if !is_runnable(step) {
        let text = format!("{} is {}; d dry-runs a pending step", step.name, step.state);
        state.set_status(StatusLevel::Info, text);
        return Vec::new();
    }
    let version = step.version.clone();
    let text = format!("dry run of {}: nothing will be committed…", step.name);
    state.set_status(StatusLevel::Info, text);
    state.run = Some(RunState {
        operation: Operation::Up,
        dry_run: true,
        ..Default::default()
    });
    vec![Command::Start(RunOptions {
        only: Some(version),
        dry_run: true,
        ..Default::default()
    })]
}
