//! The rollback dialog (`u`): ask the engine what rolling the selected step back would undo
//! (`PreviewRollback`), show its answer (`RollbackPreview`), and roll back only once the
//! operator has typed the step's name exactly and pressed enter.

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
        });
        return Vec::new();
    };
    if let Some(why) = &p.refused {
        let text = format!("rollback refused: {why}");
        state.set_status(StatusLevel::Error, text);
        return Vec::new();
    }
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
        });
        return Vec::new();
    }
    // Checked again here: a run or a foreign lock may have started while the dialog was up.
    if refuse_if_running(state) || refuse_if_locked(state) {
        return Vec::new();
    }
    state.set_status(StatusLevel::Info, format!("rolling back {name}…"));
    state.run = Some(RunState {
        operation: Operation::Down,
        ..Default::default()
    });
    vec![Command::Rollback {
        target: DownTarget::Only(version),
        dry_run: false,
    }]
}
