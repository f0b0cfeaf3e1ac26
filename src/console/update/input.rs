//! Text input: typed characters, backspace, esc and enter in the dialogs that take text
//! (rollback's typed name, the fix dialog, the review value and note) and in the rejects
//! filter. Enter hands the dialog to the part of `update` it belongs to.

use super::navigation::force_quit;
use super::rejects;
use super::review;
use super::rollback;
use crate::console::keymap::Action;
use crate::console::state::{AppState, Dialog, StatusLevel};
use crate::engine::protocol::Command;

pub fn type_char(state: &mut AppState, c: char) -> Vec<Command> {
    // A "type it exactly" or "no such field" warning is about the previous attempt.
    if state.status.as_ref().is_some_and(|s| s.level == StatusLevel::Warn) && state.dialog.is_some() {
        state.status = None;
    }
    match &mut state.dialog {
        Some(Dialog::Rollback { typed, .. }) => typed.push(c),
        Some(Dialog::EditReject { input, .. } | Dialog::DecideValue { input, .. } | Dialog::ReviewNote { input }) => {
            input.push(c)
        }
        None if state.filter_editing => {
            state.reject_filter.push(c);
            return rejects::filter_changed(state);
        }
        _ => {}
    }
    Vec::new()
}

pub fn on_action(state: &mut AppState, action: Action) -> Vec<Command> {
    match action {
        Action::ForceQuit => {
            state.dialog = None;
            state.filter_editing = false;
            force_quit(state)
        }
        Action::Backspace => {
            match &mut state.dialog {
                Some(Dialog::Rollback { typed, .. }) => {
                    typed.pop();
                }
                Some(
                    Dialog::EditReject { input, .. } | Dialog::DecideValue { input, .. } | Dialog::ReviewNote { input },
                ) => {
                    input.pop();
                }
                None if state.filter_editing && state.reject_filter.pop().is_some() => {
                    return rejects::filter_changed(state);
                }
                _ => {}
            }
            Vec::new()
        }
        Action::Cancel => {
            // Esc closes a dialog; with none open it leaves the filter and clears it.
            if state.dialog.take().is_none() && state.filter_editing {
                state.filter_editing = false;
                return rejects::clear_filter(state);
            }
            Vec::new()
        }
        Action::Submit => submit(state),
        _ => Vec::new(),
    }
}

/// Enter. The dialog is taken out of the state; a part that refuses the input puts it back.
fn submit(state: &mut AppState) -> Vec<Command> {
    match state.dialog.take() {
        None => {
            state.filter_editing = false;
            Vec::new()
        }
        Some(Dialog::Rollback {
            version,
            name,
            preview,
            typed,
            to_here,
        }) => rollback::submit(state, version, name, preview, typed, to_here),
        Some(Dialog::EditReject {
            id,
            fields,
            field,
            input,
        }) => rejects::submit_fix(state, id, fields, field, input),
        Some(Dialog::DecideValue { id, input }) => review::submit_value(state, id, input),
        Some(Dialog::ReviewNote { input }) => {
            review::keep_note(state, input);
            Vec::new()
        }
        other => {
            state.dialog = other;
            Vec::new()
        }
    }
}
