//! The rejects pane's part of `update`: paging through the reject store (the engine reads a
//! page at a time, the filter applied in its query), the filter, the fix dialog (one field of
//! a rejected row), retrying a row or its whole step, and exporting every row the filter
//! matches.

use super::common::{refuse_if_locked, refuse_if_running};
use super::navigation::set_focus;
use crate::console::format::fmt_count;
use crate::console::keymap::Action;
use crate::console::state::{
    AppState, ConfirmAction, Dialog, Pane, REJECT_PAGE_ROWS, REJECT_RELOAD_MS, SelectOnLoad, StatusLevel,
};
use crate::engine::protocol::views::RejectPage;
use crate::engine::protocol::{Command, PageAt, RejectPageRequest};

// ---- paging --------------------------------------------------------------------------------

/// Ask the engine for a page of the rejects matching the filter now.
pub fn load(state: &mut AppState, at: PageAt, select: SelectOnLoad) -> Vec<Command> {
    let p = &mut state.reject_page;
    p.seq += 1;
    p.in_flight = true;
    p.stale = false;
    p.requested_at = Some(state.now);
    p.select = select;
    vec![Command::LoadRejects(RejectPageRequest {
        seq: p.seq,
        filter: state.reject_filter.clone(),
        at,
        limit: REJECT_PAGE_ROWS,
    })]
}

/// The rejects changed (a run rejected rows, a fix or retry landed): read the shown page
/// again, at most once per `REJECT_RELOAD_MS`; a change inside that time is read on a tick.
pub fn reload(state: &mut AppState) -> Vec<Command> {
    let recent = state
        .reject_page
        .requested_at
        .is_some_and(|t| (state.now - t).num_milliseconds() < REJECT_RELOAD_MS);
    if state.reject_page.in_flight || recent {
        state.reject_page.stale = true;
        return Vec::new();
    }
    let at = PageAt::Offset(state.reject_page.offset);
    load(state, at, SelectOnLoad::Keep)
}

/// The clock: a page marked stale is read once the throttle allows and no read is on its way.
pub fn on_tick(state: &mut AppState) -> Vec<Command> {
    if state.reject_page.stale && !state.reject_page.in_flight {
        return reload(state);
    }
    Vec::new()
}

/// The engine's page. Only the answer to the latest request is shown (an older one may come
/// late, for a filter typed over since).
pub fn on_page(state: &mut AppState, page: RejectPage) {
    if page.seq != state.reject_page.seq {
        return;
    }
    state.reject_page.in_flight = false;
    if let Some(e) = page.error {
        state.set_status(StatusLevel::Error, e);
        return;
    }
    let keep = state.selected_reject().map(|r| r.id);
    let p = &mut state.reject_page;
    p.offset = page.offset;
    p.matching = page.matching;
    p.filter = page.filter;
    p.loaded = true;
    state.open_rejects = page.open;
    state.rejects = page.rows;
    let last = state.rejects.len().saturating_sub(1);
    state.selected_reject = match std::mem::take(&mut state.reject_page.select) {
        SelectOnLoad::First => 0,
        SelectOnLoad::Last => last,
        SelectOnLoad::Keep => keep
            .and_then(|id| state.rejects.iter().position(|r| r.id == id))
            .unwrap_or(state.selected_reject)
            .min(last),
    };
}

/// ↑/↓ move within the page and on to the next or previous one at its edges; pgup/pgdn turn a
/// page; home/end go to the first row of all and the last.
pub fn move_selection(state: &mut AppState, action: Action) -> Vec<Command> {
    let rows = state.rejects.len();
    let offset = state.reject_page.offset;
    let has_next = state.reject_page.has_next(rows);
    match action {
        Action::Down if state.selected_reject + 1 < rows => state.selected_reject += 1,
        Action::Down if has_next => return load(state, PageAt::Offset(offset + rows as u64), SelectOnLoad::First),
        Action::Up if state.selected_reject > 0 => state.selected_reject -= 1,
        Action::Up if offset > 0 => {
            return load(
                state,
                PageAt::Offset(offset.saturating_sub(REJECT_PAGE_ROWS)),
                SelectOnLoad::Last,
            );
        }
        Action::PageDown if has_next => return load(state, PageAt::Offset(offset + rows as u64), SelectOnLoad::First),
        Action::PageDown => state.selected_reject = rows.saturating_sub(1),
        Action::PageUp if offset > 0 => {
            return load(
                state,
                PageAt::Offset(offset.saturating_sub(REJECT_PAGE_ROWS)),
                SelectOnLoad::First,
            );
        }
        Action::PageUp => state.selected_reject = 0,
        Action::Top => return load(state, PageAt::Offset(0), SelectOnLoad::First),
        Action::Bottom => return load(state, PageAt::Last, SelectOnLoad::Last),
        _ => {}
    }
    Vec::new()
}

/// The filter changed: the first page of what it matches.
pub fn filter_changed(state: &mut AppState) -> Vec<Command> {
    state.selected_reject = 0;
    load(state, PageAt::Offset(0), SelectOnLoad::First)
}

// ---- filter --------------------------------------------------------------------------------

/// `/`: typing goes to the filter until enter or esc.
pub fn start_filter(state: &mut AppState) {
    state.filter_editing = true;
    set_focus(state, Pane::Rejects);
}

pub fn clear_filter(state: &mut AppState) -> Vec<Command> {
    if state.reject_filter.is_empty() {
        return Vec::new();
    }
    state.reject_filter.clear();
    filter_changed(state)
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

/// The fix dialog's Enter: the value goes to the chosen field as typed. Text shaped like the
/// CLI's `FIELD=VALUE` (or `FIELD = VALUE`, any case) naming a field of the row was typed in
/// the wrong place (it would set the chosen field to the whole text), so it is refused without
/// echoing the value. The status says which field gets which value (never a secret's).
pub fn submit_fix(
    state: &mut AppState,
    id: i64,
    fields: Vec<(String, String)>,
    field: usize,
    input: String,
) -> Vec<Command> {
    let Some((name, before)) = fields.get(field).cloned() else {
        return Vec::new();
    };
    let named = input.split_once('=').and_then(|(lhs, _)| {
        let lhs = lhs.trim();
        fields
            .iter()
            .find(|(f, _)| f.eq_ignore_ascii_case(lhs))
            .map(|(f, _)| f.clone())
    });
    if let Some(other) = named {
        let text = if other == name {
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
    let text = if crate::engine::store::is_secret_column(&name) {
        format!("reject {id}: setting {name} (secret, not shown)…")
    } else if input.is_empty() {
        format!("reject {id}: setting {name} from {before:?} to NULL…")
    } else {
        format!("reject {id}: setting {name} from {before:?} to {input:?}…")
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
        let open = state.open_rejects_by_step.get(&r.step).copied().unwrap_or(0);
        (
            ConfirmAction::RetryStep {
                version: r.step.clone(),
            },
            format!("Retry all open rows of {step_name}?"),
            vec![format!(
                "{} open rejected rows of {} {step_name} go through the step again.",
                fmt_count(open),
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

/// `w`: every reject the filter matches (all pages) goes to a CSV file; the engine streams
/// them from the store and answers with `RejectsExported`.
pub fn export(state: &mut AppState) -> Vec<Command> {
    if state.reject_page.loaded && state.reject_page.matching == 0 {
        state.set_status(StatusLevel::Info, "no rejects to export");
        return Vec::new();
    }
    let what = if state.reject_filter.trim().is_empty() {
        format!("all {} rejects", fmt_count(state.reject_page.matching))
    } else {
        format!(
            "the {} rejects matching \"{}\"",
            fmt_count(state.reject_page.matching),
            state.reject_filter.trim()
        )
    };
    state.set_status(StatusLevel::Info, format!("exporting {what}…"));
    vec![Command::ExportRejects {
        filter: state.reject_filter.clone(),
        stamp: state.now.format("%Y%m%dT%H%M%S").to_string(),
    }]
}

/// The engine's answer to an export.
pub fn on_exported(state: &mut AppState, path: String, rows: u64, error: Option<String>) {
    match error {
        None => state.set_status(
            StatusLevel::Info,
            format!("{} rejects exported to {path}", fmt_count(rows)),
        ),
        Some(e) => state.set_status(StatusLevel::Error, format!("export failed: {e}")),
    }
}
