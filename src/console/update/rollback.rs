//! The rollback dialog (`u`): ask the engine what rolling the selected step back would undo
//! (`PreviewRollback`), show its answer (`RollbackPreview`), and roll back only once the
//! operator has typed the step's name exactly and pressed enter.
//!
//! When later applied steps must be rolled back first, the engine refuses the step alone; the
//! dialog says so before asking for any name, lists those steps, and offers "roll back to
//! here" (enter): this step and every later one, each with what it destroys, after the name.

use super::common::{refuse_if_locked, refuse_if_running};
use crate::console::state::{AppState, Dialog, RunState, StatusLevel, is_revertible};
use crate::engine::ops::snapshot::RollbackPreview;
use crate::engine::protocol::{Command, DownTarget, Operation};

pub fn ask(state: &mut AppState) -> Vec<Command> {
    if refuse_if_running(state) || refuse_if_locked(state) {
        return Vec::new();
    }
    let Some(step) = state.selected_step() else {
        return Vec::new();
    };
    if !is_revertible(step) {
        let text = format!("{} is {}; u rolls back an applied step", step.name, step.state);
        state.set_status(StatusLevel::Info, text);
        return Vec::new();
    }
    let version = step.version.clone();
    state.dialog = Some(Dialog::Rollback {
        version: version.clone(),
        name: step.name.clone(),
        preview: None,
        typed: String::new(),
        to_here: false,
    });
    vec![Command::PreviewRollback { version }]
}

/// `EngineEvent::RollbackPreview`: kept only if its dialog is still open for the same step.
pub fn on_preview(state: &mut AppState, p: RollbackPreview) {
    if let Some(Dialog::Rollback { version, preview, .. }) = &mut state.dialog
        && *version == p.version
    {
        *preview = Some(p);
    }
}

/// Enter in the rollback dialog (already taken out of `state.dialog`; put back to go on).
pub fn submit(
    state: &mut AppState,
    version: String,
    name: String,
    preview: Option<RollbackPreview>,
    typed: String,
    to_here: bool,
) -> Vec<Command> {
    let Some(p) = &preview else {
        state.set_status(
            StatusLevel::Info,
            "waiting for the engine to say what the rollback undoes…",
        );
        state.dialog = Some(Dialog::Rollback {
            version,
            name,
            preview,
            typed,
            to_here,
        });
        return Vec::new();
    };
    let target = match (&p.refused, &p.to_here, to_here) {
        (None, _, _) => DownTarget::Only(version.clone()),
        (Some(_), Some(t), true) => t.clone(),
        // Refused with a way on: enter chooses it, and only then is the name asked for.
        (Some(_), Some(_), false) => {
            let steps = p.steps.len();
            state.set_status(
                StatusLevel::Warn,
                format!("rolling back to here undoes {steps} steps (listed); type {name} to confirm"),
            );
            state.dialog = Some(Dialog::Rollback {
                version,
                name,
                preview,
                typed: String::new(),
                to_here: true,
            });
            return Vec::new();
        }
        (Some(why), None, _) => {
            let text = format!("rollback refused: {why}");
            state.set_status(StatusLevel::Error, text);
            return Vec::new();
        }
    };
    if typed != name {
        state.set_status(
            StatusLevel::Warn,
            format!("type the step's name exactly ({name}) to roll it back"),
        );
        state.dialog = Some(Dialog::Rollback {
            version,
            name,
            preview,
            typed,
            to_here,
        });
        return Vec::new();
    }
    // Checked again here: a run or a foreign lock may have started while the dialog was up.
    if refuse_if_running(state) || refuse_if_locked(state) {
        return Vec::new();
    }
    let text = if to_here {
        format!("rolling back {} steps, down to {name}…", p.steps.len())
    } else {
        format!("rolling back {name}…")
    };
    state.set_status(StatusLevel::Info, text);
    state.run = Some(RunState {
        operation: Operation::Down,
        ..Default::default()
    });
    vec![Command::Rollback { target, dry_run: false }]
}
