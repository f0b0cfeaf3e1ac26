//! Moving around and leaving: pane focus, selection movement in each pane, the help overlay,
//! and quitting (with its question while a run is in progress).

use super::review;
use super::verify;
use crate::console::keymap::Action;
use crate::console::state::{AppState, ConfirmAction, Dialog, Pane, QuitState, StatusLevel};
use crate::engine::protocol::Command;

pub fn set_focus(state: &mut AppState, pane: Pane) {
    state.focus = pane;
    // The middle column remembers which of its panes it shows when focus leaves it.
    if Pane::MIDDLE.contains(&pane) {
        state.middle = pane;
    }
}

/// A key while the help overlay is up: ctrl-c still quits, anything else closes it.
pub fn on_help_action(state: &mut AppState, action: Action) -> Vec<Command> {
    if action == Action::ForceQuit {
        return force_quit(state);
    }
    state.help = false;
    Vec::new()
}

// ---- quitting ------------------------------------------------------------------------------

pub fn quit(state: &mut AppState) -> Vec<Command> {
    if state.running() {
        let what = state
            .run
            .as_ref()
            .and_then(|r| r.current.as_ref())
            .map(|c| c.name.clone());
        state.dialog = Some(Dialog::Confirm {
            action: ConfirmAction::Quit,
            title: "Quit while a run is in progress?".into(),
            lines: vec![
                format!("{} is running.", what.unwrap_or_else(|| "A run".into())),
                "Quitting stops it at the next batch boundary;".into(),
                "nothing is lost, and `n` resumes it later.".into(),
            ],
        });
        Vec::new()
    } else {
        state.quit = QuitState::Now;
        Vec::new()
    }
}

/// The quit question answered yes. The run may have ended while the dialog was up.
pub fn confirmed_quit(state: &mut AppState) -> Vec<Command> {
    if state.running() {
        stop_and_quit(state)
    } else {
        state.quit = QuitState::Now;
        Vec::new()
    }
}

/// ctrl-c: leave without a question. A running step is asked to stop at its batch boundary
/// first (so the lock is released); a second ctrl-c leaves at once.
pub fn force_quit(state: &mut AppState) -> Vec<Command> {
    match state.quit {
        QuitState::Running if state.running() => stop_and_quit(state),
        _ => {
            state.quit = QuitState::Now;
            Vec::new()
        }
    }
}

fn stop_and_quit(state: &mut AppState) -> Vec<Command> {
    state.quit = QuitState::Stopping { since: state.now };
    state.set_status(
        StatusLevel::Warn,
        "stopping the run at the next batch boundary, then quitting…",
    );
    if let Some(run) = &mut state.run {
        run.aborting = true;
    }
    vec![Command::Abort]
}

// ---- selection -----------------------------------------------------------------------------

pub fn move_selection(state: &mut AppState, action: Action) {
    let (len, sel) = match state.focus {
        Pane::Migrations => (state.migrations.len(), &mut state.selected_step),
        Pane::Review => return review::move_selection(state, action),
        Pane::Verify => return verify::move_selection(state, action),
        _ => return,
    };
    if len == 0 {
        *sel = 0;
        return;
    }
    *sel = match action {
        Action::Up => sel.saturating_sub(1),
        Action::Down => (*sel + 1).min(len - 1),
        Action::Top | Action::PageUp => 0,
        _ => len - 1,
    };
}

/// After the lists changed under them (a snapshot), keep every selection inside its list.
pub fn clamp_selections(state: &mut AppState) {
    state.selected_step = state.selected_step.min(state.migrations.len().saturating_sub(1));
    let n = state.rejects.len();
    state.selected_reject = state.selected_reject.min(n.saturating_sub(1));
    review::fix_selection(state);
}
