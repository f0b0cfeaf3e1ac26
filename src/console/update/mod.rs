//! `update`: the only place the console's state changes. Pure: a message in, engine commands
//! out (console-side work is queued in `state.effects`); no I/O, no clock, no await.
//!
//! This file routes: a message to its kind, a key through the keymap to an `Action`, an action
//! to the part of `update` that handles it. The parts:
//! - `navigation`: pane focus, selection, help, quitting;
//! - `details`: the details dialog of each pane;
//! - `run`: running, pausing, aborting, dry runs, and the questions before them;
//! - `rollback`: the rollback dialog (preview, typed name, confirm);
//! - `rejects`: the rejects pane (filter, fix dialog, retry, export);
//! - `review`, `verify`: the review and verify panes;
//! - `input`: text typed into dialogs and the filter, and their enter;
//! - `events`: applying each `EngineEvent`;
//! - `common`: the refusals and count summaries the others share.
//!
//! The parts never import this file, only `common` and each other, so the module graph stays
//! free of cycles.

use crate::console::keymap::{self, Action, Context};
use crate::console::state::{
    AppState, ConfirmAction, Dialog, Effect, Msg, Pane, QUIT_GRACE_SECS, QuitState, StatusLevel,
};
use crate::engine::protocol::Command;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

mod assess;
mod backup;
mod common;
mod details;
mod events;
mod import;
mod input;
mod navigation;
mod rejects;
mod review;
mod rollback;
mod run;
mod sync;
mod verify;

pub use common::{books, would_be};

pub fn update(state: &mut AppState, msg: Msg) -> Vec<Command> {
    match msg {
        Msg::Key(key) => on_key(state, key),
        Msg::Engine(event) => events::on_event(state, event),
        Msg::Tick(now) => {
            state.now = now;
            // A quit waiting for the run to stop gives up after a grace period.
            if let QuitState::Stopping { since } = state.quit
                && (now - since).num_seconds() >= QUIT_GRACE_SECS
            {
                state.quit = QuitState::Now;
            }
            let mut commands = rejects::on_tick(state);
            commands.extend(review::on_tick(state));
            commands.extend(sync::on_tick(state));
            // The panes stay empty until the target has been read once: keep trying.
            if let Some(at) = state.first_read_retry_at
                && now >= at
            {
                state.first_read_retry_at = None;
                if !state.loaded {
                    commands.push(Command::Refresh);
                }
            }
            commands
        }
        Msg::Resize(w, h) => {
            state.size = (w, h);
            Vec::new()
        }
    }
}

fn on_key(state: &mut AppState, key: KeyEvent) -> Vec<Command> {
    // Terminals with enhanced keyboard reporting also send releases and repeats.
    if key.kind == KeyEventKind::Release {
        return Vec::new();
    }
    let context = keymap::active_context(state);
    match keymap::lookup(context, &key) {
        Some(action) => on_action(state, context, action),
        None if context == Context::ImportInput => {
            if let KeyCode::Char(c) = key.code
                && !key.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
            {
                return import::type_char(state, c);
            }
            Vec::new()
        }
        None if matches!(context, Context::TextInput | Context::FixField) => {
            if let KeyCode::Char(c) = key.code
                && !key.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
            {
                return input::type_char(state, c);
            }
            Vec::new()
        }
        None => Vec::new(),
    }
}

fn on_action(state: &mut AppState, context: Context, action: Action) -> Vec<Command> {
    match context {
        Context::Help => navigation::on_help_action(state, action),
        Context::Confirm | Context::ConfirmRunAll => on_confirm(state, action),
        // In the fix dialog ↑/↓ choose the field; every other key is text input.
        Context::FixField if matches!(action, Action::Down | Action::Up) => {
            rejects::choose_field(state, action);
            Vec::new()
        }
        Context::TextInput | Context::FixField => input::on_action(state, action),
        Context::Details => details::on_action(state, action),
        Context::Import if action == Action::ForceQuit => navigation::force_quit(state),
        Context::Import => import::on_action(state, action),
        Context::ImportInput if action == Action::ForceQuit => navigation::force_quit(state),
        Context::ImportInput => import::on_input_action(state, action),
        Context::Assess => assess::on_action(state, action),
        _ => on_pane_action(state, action),
    }
}

fn on_pane_action(state: &mut AppState, action: Action) -> Vec<Command> {
    match action {
        Action::ToggleHelp => state.help = !state.help,
        Action::Quit => return navigation::quit(state),
        Action::ForceQuit => return navigation::force_quit(state),
        Action::NextPane => navigation::set_focus(state, state.focus.next()),
        Action::PrevPane => navigation::set_focus(state, state.focus.prev()),
        Action::Focus(p) => navigation::set_focus(state, p),
        Action::Up | Action::Down | Action::Top | Action::Bottom | Action::PageUp | Action::PageDown
            if state.focus == Pane::Rejects =>
        {
            return rejects::move_selection(state, action);
        }
        Action::Up | Action::Down | Action::Top | Action::Bottom | Action::PageUp | Action::PageDown => {
            navigation::move_selection(state, action)
        }
        Action::Details => details::open(state),
        Action::Refresh => {
            state.set_status(StatusLevel::Info, "reading the target…");
            state.counting_sources = true;
            return vec![Command::Refresh, Command::CountSources];
        }
        Action::RunNext => run::ask_run_next(state),
        Action::RunAll => run::ask_run_all(state),
        Action::PauseResume => return run::pause_resume(state),
        Action::Abort => return run::ask_abort(state),
        Action::DryRun => return run::dry_run(state),
        Action::Rollback => return rollback::ask(state),
        Action::Filter => rejects::start_filter(state),
        Action::ClearFilter => return rejects::clear_filter(state),
        Action::EditReject => rejects::ask_edit(state),
        Action::RetryReject => rejects::ask_retry(state, false),
        Action::RetryStep => rejects::ask_retry(state, true),
        Action::Export => return rejects::export(state),
        Action::TakeA => return review::decide_side(state, "a"),
        Action::TakeB => return review::decide_side(state, "b"),
        Action::DecideValue => review::ask_value(state),
        Action::Split => review::ask_split(state),
        Action::ReviewNote => review::ask_note(state),
        Action::UndoDecision => review::ask_undo(state),
        Action::ToggleShowAll => review::toggle_all(state),
        Action::Verify => return verify::request(state),
        Action::OpenImport => return import::open(state),
        Action::OpenAssess => return assess::open(state),
        Action::NotHere => state.set_status(
            StatusLevel::Info,
            "A (run all) does not work in the review pane, where a takes side A; press 1 first",
        ),
        Action::Log(event) => state.effects.push(Effect::Log(event)),
        Action::Confirm
        | Action::BackupThenRun
        | Action::Cancel
        | Action::Submit
        | Action::Backspace
        | Action::Close
        | Action::ImportTarget
        | Action::ImportTransforms
        | Action::ImportSave
        | Action::Reassess => {}
    }
    Vec::new()
}

/// A key in a yes/no dialog: the dialog closes on any key; only a yes acts, through the part
/// that asked.
fn on_confirm(state: &mut AppState, action: Action) -> Vec<Command> {
    if action == Action::ForceQuit {
        state.dialog = None;
        return navigation::force_quit(state);
    }
    let Some(Dialog::Confirm { action: what, .. }) = state.dialog.take() else {
        return Vec::new();
    };
    if action == Action::BackupThenRun && what == ConfirmAction::RunAll {
        return backup::backup_then_run_all(state);
    }
    if action != Action::Confirm {
        // The run held still while the abort question was open: a no lets it go on.
        if what == ConfirmAction::Abort {
            return run::abort_declined(state);
        }
        return Vec::new();
    }
    match what {
        ConfirmAction::RunNext { version } => run::confirmed_run_next(state, version),
        ConfirmAction::RunAll => run::confirmed_run_all(state),
        ConfirmAction::Abort => run::confirmed_abort(state),
        ConfirmAction::Quit => navigation::confirmed_quit(state),
        ConfirmAction::RetryReject { id } => rejects::confirmed_retry_reject(state, id),
        ConfirmAction::RetryStep { version } => rejects::confirmed_retry_step(state, version),
        ConfirmAction::Split { id } => review::confirmed_split(state, id),
        ConfirmAction::Redecide { id, decision } => review::confirmed_redecide(state, id, decision),
        ConfirmAction::UndoDecision { id } => review::confirmed_undo(state, id),
    }
}
