//! The rejects pane's part of `update`: the filter, the fix dialog (one field of a rejected
//! row), retrying a row or its whole step, and exporting the rows shown.

use super::common::{refuse_if_locked, refuse_if_running};
use super::navigation::set_focus;
use crate::console::keymap::Action;
use crate::console::state::{AppState, ConfirmAction, Dialog, Effect, Pane, StatusLevel};
use crate::engine::protocol::Command;

/// `/`: typing goes to the filter until enter or esc.
pub fn start_filter(state: &mut AppState) {
    state.filter_editing = true;
    set_focus(state, Pane::Rejects);
}

pub fn clear_filter(state: &mut AppState) {
    state.reject_filter.clear();
    state.selected_reject = 0;
}

/// `e`: open the fix dialog on the selected row.
pub fn ask_edit(state: &mut AppState) {
    if refuse_if_locked(state) {
        return;
    }
    let Some(r) = state.selected_reject() else {
        state.set_status(StatusLevel::Info, "no rejected row selected");
        return;
    };
    if r.state != "open" {
        let text = format!("reject {} is {}; only open rows can be fixed", r.id, r.state);
        state.set_status(StatusLevel::Info, text);
        return;
    }
    if r.row.is_empty() {
        state.set_status(StatusLevel::Info, format!("reject {} has no source row to fix", r.id));
        return;
    }
    // The failing field is chosen first; the text is its new value alone, never FIELD=VALUE.
    let field = r
        .field
        .as_ref()
        .and_then(|f| r.row.iter().position(|(k, _)| k == f))
        .unwrap_or(0);
    state.dialog = Some(Dialog::EditReject {
        id: r.id,
        fields: r.row.clone(),
        field,
        input: String::new(),
    });
}

/// The fix dialog's ↑/↓ (tab/shift-tab): choose the field; the other keys are text input.
/// Choosing another field clears the value typed so far, so a secret typed for one field is
/// never shown unmasked under another.
pub fn choose_field(state: &mut AppState, action: Action) {
    if let Some(Dialog::EditReject {
        fields, field, input, ..
    }) = &mut state.dialog
        && !fields.is_empty()
    {
        let n = fields.len();
        *field = if action == Action::Down {
            (*field + 1) % n
        } else {
            (*field + n - 1) % n
        };
        input.clear();
    }
}

/// The fix dialog's Enter: the value goes to the chosen field as typed. A value that starts
/// with `FIELD=` naming a field of the row is the CLI's syntax typed in the wrong place (it
/// would set the chosen field to the whole text), so it is refused without echoing the value.
pub fn submit_fix(
    state: &mut AppState,
    id: i64,
    fields: Vec<(String, String)>,
    field: usize,
    input: String,
) -> Vec<Command> {
    let Some(name) = fields.get(field).map(|(f, _)| f.clone()) else {
        return Vec::new();
    };
    if let Some((other, _)) = fields.iter().find(|(f, _)| input.starts_with(&format!("{f}="))) {
        let text = if *other == name {
            format!("type only the new value of {name}, without '{name}='")
        } else {
            format!("this sets {name} only: type the value alone; tab chooses {other}")
        };
        state.set_status(StatusLevel::Warn, text);
        state.dialog = Some(Dialog::EditReject {
            id,
            fields,
            field,
            input,
        });
        return Vec::new();
    }
    let text = if input.is_empty() {
        format!("reject {id}: setting {name} to NULL…")
    } else {
        format!("reject {id}: setting {name}…")
    };
    state.set_status(StatusLevel::Info, text);
    vec![Command::FixReject {
        id,
        field: name,
        value: input,
    }]
}

/// `r` (the selected row) or `R` (every open row of its step): ask first.
pub fn ask_retry(state: &mut AppState, whole_step: bool) {
    if refuse_if_running(state) || refuse_if_locked(state) {
        return;
    }
    let Some(r) = state.selected_reject() else {
        state.set_status(StatusLevel::Info, "no rejected row selected");
        return;
    };
    let step_name = state.step_name(&r.step).unwrap_or(&r.step).to_string();
    let (action, title, lines) = if whole_step {
        let open = state
            .rejects
            .iter()
            .filter(|x| x.step == r.step && x.state == "open")
            .count();
        (
            ConfirmAction::RetryStep {
                version: r.step.clone(),
            },
            format!("Retry all open rows of {step_name}?"),
            vec![format!(
                "{open} open rejected rows of {} {step_name} go through the step again.",
                r.step
            )],
        )
    } else {
        (
            ConfirmAction::RetryReject { id: r.id },
            format!("Retry reject {}?", r.id),
            vec![
                format!(
                    "{} key {} ({step_name}) goes through the step again.",
                    r.source_table, r.source_key
                ),
                format!("It failed: {} — {}", r.rule, r.reason),
            ],
        )
    };
    state.dialog = Some(Dialog::Confirm { action, title, lines });
}

pub fn confirmed_retry_reject(state: &mut AppState, id: i64) -> Vec<Command> {
    state.set_status(StatusLevel::Info, format!("retrying reject {id}…"));
    vec![Command::Retry {
        id: Some(id),
        step: None,
    }]
}

pub fn confirmed_retry_step(state: &mut AppState, version: String) -> Vec<Command> {
    state.set_status(StatusLevel::Info, format!("retrying the open rejects of {version}…"));
    vec![Command::Retry {
        id: None,
        step: Some(version),
    }]
}

/// `x`: the file is written by the console loop (`Effect::ExportRejects`), not here, since
/// `update` does no I/O; its answer comes back as `Msg::Exported`.
pub fn export(state: &mut AppState) {
    let rows: Vec<_> = state.filtered_rejects().into_iter().cloned().collect();
    if rows.is_empty() {
        state.set_status(StatusLevel::Info, "no rejects to export");
        return;
    }
    let stamp = state.now.format("%Y%m%dT%H%M%S").to_string();
    state.effects.push(Effect::ExportRejects { rows, stamp });
}
