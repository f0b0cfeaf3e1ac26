//! The review pane's part of `update`: deciding discrepancies found by merge steps.
//!
//! A decision goes out as `Command::Decide`; the engine answers with `Decided` and then a
//! fresh `Snapshot`. Until the answer, the discrepancy is "on the way" (`state.deciding`) and
//! the selection has already moved on to the next open one, so a run of ordinary decisions is
//! one key each.

use super::common::{refuse_if_locked, refuse_if_running};
use crate::console::format::{one_line, show_value};
use crate::console::keymap::Action;
use crate::console::state::{
    AppState, ConfirmAction, Dialog, Pane, PendingDecision, RecordPair, SessionDecision, StatusLevel,
};
use crate::engine::ops::review::Discrepancy;
use crate::engine::protocol::Command;
use crate::engine::protocol::views::ReviewRecords;

/// Why this discrepancy cannot take a decision here, if it cannot.
fn refusal(d: &Discrepancy) -> Option<String> {
    if d.state == "void" {
        return Some(format!(
            "discrepancy {} is void: its record was split off into an entity of its own",
            d.id
        ));
    }
    if d.state == "decided" && d.decision.as_deref() == Some("split") {
        return Some(format!(
            "discrepancy {} was split; a split cannot be changed here",
            d.id
        ));
    }
    None
}

/// The selected discrepancy if a write may be made on it now; otherwise says why not.
fn writable_selection(state: &mut AppState) -> Option<Discrepancy> {
    if refuse_if_running(state) || refuse_if_locked(state) {
        return None;
    }
    let Some(d) = state.selected_discrepancy().cloned() else {
        state.set_status(StatusLevel::Info, "no discrepancy selected");
        return None;
    };
    if let Some(why) = refusal(&d) {
        state.set_status(StatusLevel::Info, why);
        return None;
    }
    Some(d)
}

/// The discrepancy `id` if a write may be made on it now (checked again when a dialog is
/// confirmed: a snapshot or a lock may have arrived under it).
fn writable(state: &mut AppState, id: i64) -> Option<Discrepancy> {
    if refuse_if_running(state) || refuse_if_locked(state) {
        return None;
    }
    let Some(d) = state.discrepancy(id).cloned() else {
        state.set_status(StatusLevel::Warn, format!("discrepancy {id} is no longer in the queue"));
        return None;
    };
    if let Some(why) = refusal(&d) {
        state.set_status(StatusLevel::Info, why);
        return None;
    }
    Some(d)
}

fn describe(d: &Discrepancy, decision: &str) -> String {
    match decision {
        "a" => format!("take A ({})", show_value(&d.values[0])),
        "b" => format!("take B ({})", show_value(&d.values[1])),
        "split" => format!("split off {} {}", d.sides[1], d.keys[1]),
        other => match other.strip_prefix("value=") {
            Some(v) => format!("set to {v}"),
            None => other.to_string(),
        },
    }
}

/// Send a decision (with the pending note) and move on to the next open discrepancy.
fn send(state: &mut AppState, d: &Discrepancy, decision: String) -> Vec<Command> {
    let note = state.review_note.take();
    let previous = state.last_decision.replace(SessionDecision {
        id: d.id,
        decision: decision.clone(),
    });
    state.deciding.push(PendingDecision {
        id: d.id,
        decision: decision.clone(),
        note: note.clone(),
        answered: false,
        previous,
    });
    let mut text = format!("discrepancy {} {}: {}…", d.id, d.field, describe(d, &decision));
    if !advance(state, d.id) {
        text.push_str(" (no other open discrepancy)");
    }
    state.set_status(StatusLevel::Info, text);
    vec![Command::Decide {
        id: d.id,
        decision,
        note,
    }]
}

/// Select the next open discrepancy after `from` (wrapping), skipping those on their way.
fn advance(state: &mut AppState, from: i64) -> bool {
    let deciding = state.deciding_ids();
    let all = &state.discrepancies;
    let start = all.iter().position(|d| d.id == from).map_or(0, |i| i + 1);
    let next = all[start..]
        .iter()
        .chain(all[..start].iter())
        .find(|d| d.id != from && d.state == "open" && !deciding.contains(&d.id))
        .map(|d| d.id);
    match next {
        Some(id) => {
            state.selected_discrepancy = Some(id);
            true
        }
        None => false,
    }
}

// ---- keys ----------------------------------------------------------------------------------

/// `a` / `b`.
pub fn decide_side(state: &mut AppState, side: &str) -> Vec<Command> {
    match writable_selection(state) {
        Some(d) => decide_or_ask(state, &d, side.to_string()),
        None => Vec::new(),
    }
}

/// An open discrepancy is decided at once; a decided one asks first, saying what it was.
fn decide_or_ask(state: &mut AppState, d: &Discrepancy, decision: String) -> Vec<Command> {
    if d.state != "decided" {
        return send(state, d, decision);
    }
    let mut lines = vec![
        format!("#{} {} {} · {}", d.id, d.entity_table, d.entity_id, d.field),
        format!(
            "Decided {} ({}) by {} at {}.",
            d.decision.as_deref().unwrap_or("?"),
            show_value(&d.value_applied),
            d.reviewer.as_deref().unwrap_or("?"),
            d.decided_at.as_deref().unwrap_or("?")
        ),
        format!("This decides it again: {}.", describe(d, &decision)),
    ];
    if let Some(n) = &state.review_note {
        lines.push(format!("note: {n}"));
    }
    state.dialog = Some(Dialog::Confirm {
        action: ConfirmAction::Redecide { id: d.id, decision },
        title: format!("Discrepancy {} is already decided. Decide again?", d.id),
        lines,
    });
    Vec::new()
}

/// `e`.
pub fn ask_value(state: &mut AppState) {
    if let Some(d) = writable_selection(state) {
        state.dialog = Some(Dialog::DecideValue {
            id: d.id,
            input: String::new(),
        });
    }
}

pub fn submit_value(state: &mut AppState, id: i64, input: String) -> Vec<Command> {
    if input.trim().is_empty() {
        state.set_status(
            StatusLevel::Warn,
            "type a value (to keep one side's value, esc and press a or b)",
        );
        state.dialog = Some(Dialog::DecideValue { id, input });
        return Vec::new();
    }
    match writable(state, id) {
        Some(d) => decide_or_ask(state, &d, format!("value={input}")),
        None => Vec::new(),
    }
}

/// `s`: asks first, since it creates an entity and moves rows.
pub fn ask_split(state: &mut AppState) {
    let Some(d) = writable_selection(state) else {
        return;
    };
    if d.state != "open" {
        let text = format!(
            "discrepancy {} is already decided ({}); only an open one can be split",
            d.id,
            d.decision.as_deref().unwrap_or("?")
        );
        state.set_status(StatusLevel::Info, text);
        return;
    }
    let (a, b) = (
        format!("{} {}", d.sides[0], d.keys[0]),
        format!("{} {}", d.sides[1], d.keys[1]),
    );
    let mut lines = vec![
        format!("{} {} was merged from {a} and {b}.", d.entity_table, d.entity_id),
        format!(
            "Splitting makes {b} an entity of its own: a new {} row;",
            d.entity_table
        ),
        "the rows that follow it move there, and its other open".into(),
        "discrepancies with this entity become void.".into(),
        "A split cannot be undone from the console.".into(),
    ];
    if let Some(n) = &state.review_note {
        lines.push(format!("note: {n}"));
    }
    state.dialog = Some(Dialog::Confirm {
        action: ConfirmAction::Split { id: d.id },
        title: format!("Not the same entity? Split off {b}"),
        lines,
    });
}

pub fn confirmed_split(state: &mut AppState, id: i64) -> Vec<Command> {
    let Some(d) = writable(state, id) else {
        return Vec::new();
    };
    if d.state != "open" {
        state.set_status(
            StatusLevel::Warn,
            format!("discrepancy {id} is no longer open; nothing split"),
        );
        return Vec::new();
    }
    send(state, &d, "split".into())
}

/// `N`.
pub fn ask_note(state: &mut AppState) {
    let input = state.review_note.clone().unwrap_or_default();
    state.dialog = Some(Dialog::ReviewNote { input });
}

pub fn keep_note(state: &mut AppState, input: String) {
    let note = input.trim();
    if note.is_empty() {
        state.review_note = None;
        state.set_status(StatusLevel::Info, "note cleared");
    } else {
        state.review_note = Some(note.to_string());
        state.set_status(StatusLevel::Info, "note kept; it goes with the next decision");
    }
}

/// `U`: undo this session's last decision, after a question: the engine puts back the value
/// the field had before it and opens the discrepancy again (audited in the ledger).
pub fn ask_undo(state: &mut AppState) {
    if refuse_if_running(state) || refuse_if_locked(state) {
        return;
    }
    let Some(last) = state.last_decision.clone() else {
        state.set_status(StatusLevel::Info, "no decision to undo in this session");
        return;
    };
    if last.decision == "split" {
        let text = format!(
            "discrepancy {} was split; a split cannot be undone from the console",
            last.id
        );
        state.set_status(StatusLevel::Warn, text);
        return;
    }
    if state.deciding.iter().any(|p| !p.answered && p.id == last.id) {
        state.set_status(
            StatusLevel::Info,
            format!("discrepancy {} is still on its way; U once it is decided", last.id),
        );
        return;
    }
    let Some(d) = state.discrepancy(last.id).cloned() else {
        state.set_status(
            StatusLevel::Warn,
            format!("discrepancy {} is no longer in the queue", last.id),
        );
        return;
    };
    if d.state != "decided" {
        state.set_status(
            StatusLevel::Info,
            format!("discrepancy {} is {}; nothing to undo", d.id, d.state),
        );
        return;
    }
    let lines = vec![
        format!("#{} {} {} · {}", d.id, d.entity_table, d.entity_id, d.field),
        format!(
            "Your decision {} set it to {}.",
            d.decision.as_deref().unwrap_or(&last.decision),
            show_value(&d.value_applied)
        ),
        "Undo puts back the value from before the decision and opens the".into(),
        "discrepancy again; the ledger records the undo.".into(),
    ];
    state.dialog = Some(Dialog::Confirm {
        action: ConfirmAction::UndoDecision { id: d.id },
        title: format!("Undo the decision on discrepancy {}?", d.id),
        lines,
    });
}

pub fn confirmed_undo(state: &mut AppState, id: i64) -> Vec<Command> {
    if refuse_if_running(state) || refuse_if_locked(state) {
        return Vec::new();
    }
    let previous = state.last_decision.take();
    state.deciding.push(PendingDecision {
        id,
        decision: "undo".into(),
        note: None,
        answered: false,
        previous,
    });
    state.selected_discrepancy = Some(id);
    state.set_status(StatusLevel::Info, format!("discrepancy {id}: undoing the decision…"));
    vec![Command::UndoDecision { id }]
}

pub fn confirmed_redecide(state: &mut AppState, id: i64, decision: String) -> Vec<Command> {
    match writable(state, id) {
        Some(d) => send(state, &d, decision),
        None => Vec::new(),
    }
}

/// `v`.
pub fn toggle_all(state: &mut AppState) {
    state.review_all = !state.review_all;
    fix_selection(state);
    let text = if state.review_all {
        "showing every discrepancy (v: open only)"
    } else {
        "showing open discrepancies (v: all)"
    };
    state.set_status(StatusLevel::Info, text);
}

// ---- selection -----------------------------------------------------------------------------

pub fn move_selection(state: &mut AppState, action: Action) {
    let ids: Vec<i64> = state.shown_discrepancies().iter().map(|d| d.id).collect();
    if ids.is_empty() {
        state.selected_discrepancy = None;
        return;
    }
    let pos = state
        .selected_discrepancy
        .and_then(|id| ids.iter().position(|x| *x == id))
        .unwrap_or(0);
    let last = ids.len() - 1;
    let pos = match action {
        Action::Up => pos.saturating_sub(1),
        Action::Down => (pos + 1).min(last),
        Action::Top => 0,
        _ => last,
    };
    state.selected_discrepancy = Some(ids[pos]);
}

/// Keep the selection on a listed discrepancy: the same one if still listed, else the next
/// one by id, else the last; the first open one when nothing was selected.
pub fn fix_selection(state: &mut AppState) {
    let deciding = state.deciding_ids();
    let shown = state.shown_discrepancies();
    let keep = match state.selected_discrepancy {
        Some(id) if shown.iter().any(|d| d.id == id) => Some(id),
        Some(old) => shown.iter().find(|d| d.id > old).or(shown.last()).map(|d| d.id),
        None => shown
            .iter()
            .find(|d| d.state == "open" && !deciding.contains(&d.id))
            .or(shown.first())
            .map(|d| d.id),
    };
    state.selected_discrepancy = keep;
}

/// `enter`: everything about the selected discrepancy, values in full.
pub fn details(state: &AppState) -> Option<Dialog> {
    let d = state.selected_discrepancy()?;
    let step = match state.step_name(&d.step) {
        Some(name) => format!("{} {name}", d.step),
        None => d.step.clone(),
    };
    let mut lines = vec![
        format!("state       {}", d.state),
        format!("step        {step}"),
        format!("entity      {} {}", d.entity_table, d.entity_id),
        format!("field       {}", d.field),
        format!("A           {} {}: {}", d.sides[0], d.keys[0], show_value(&d.values[0])),
        format!("B           {} {}: {}", d.sides[1], d.keys[1], show_value(&d.values[1])),
    ];
    if let Some(dec) = &d.decision {
        lines.push(format!("decision    {dec}"));
    }
    if let Some(v) = &d.value_applied {
        lines.push(format!("applied     {v}"));
    }
    if let Some(r) = &d.reviewer {
        lines.push(format!("decided by  {r} at {}", d.decided_at.as_deref().unwrap_or("?")));
    }
    if let Some(n) = &d.note {
        lines.push(format!("note        {n}"));
    }
    // Both records, every field, in full (the pane shows what fits).
    if let Some(r) = state.selected_records() {
        lines.push(String::new());
        lines.push(format!(
            "both records: A = {} {} | B = {} {}",
            d.sides[0], d.keys[0], d.sides[1], d.keys[1]
        ));
        for f in &r.fields {
            let side = |i: usize| {
                if f.present[i] {
                    show_value(&f.values[i])
                } else {
                    "-".into()
                }
            };
            let mark = if f.name == d.field { "▶" } else { " " };
            lines.push(format!("{mark} {:<18} A {} | B {}", f.name, side(0), side(1)));
        }
        lines.extend(r.notes.iter().cloned());
    }
    Some(Dialog::Details {
        title: format!("Discrepancy {}", d.id),
        lines,
        scroll: 0,
    })
}

// ---- the engine's answer -------------------------------------------------------------------

/// The engine's answer to one of our decisions. A refused decision puts the selection (and
/// the note) back on its discrepancy.
pub fn on_decided(state: &mut AppState, id: i64, applied: bool, message: &str) {
    let Some(i) = state.deciding.iter().position(|p| !p.answered && p.id == id) else {
        // Not ours (another console's, or already answered): still worth showing.
        let level = if applied { StatusLevel::Info } else { StatusLevel::Error };
        state.set_status(level, one_line(message));
        return;
    };
    state.deciding[i].answered = true;
    let p = state.deciding[i].clone();
    if applied {
        state.set_status(StatusLevel::Info, one_line(message));
        return;
    }
    state.set_status(StatusLevel::Error, format!("not applied: {}", one_line(message)));
    state.selected_discrepancy = Some(p.id);
    if state.review_note.is_none() {
        state.review_note = p.note;
    }
    // A refused undo leaves the decision in place: it can still be undone.
    if p.decision == "undo" {
        state.last_decision = p.previous;
        return;
    }
    let this = SessionDecision {
        id: p.id,
        decision: p.decision,
    };
    if state.last_decision.as_ref() == Some(&this) {
        state.last_decision = p.previous;
    }
}

// ---- the two whole records -----------------------------------------------------------------

/// The clock: while the review pane is shown, the selected discrepancy's two records are read
/// once per pair. On the tick rather than on every key, so scrolling through the queue reads
/// only the pair it stops on.
pub fn on_tick(state: &mut AppState) -> Vec<Command> {
    if state.middle != Pane::Review {
        return Vec::new();
    }
    let Some(d) = state.selected_discrepancy() else {
        return Vec::new();
    };
    let pair = RecordPair::of(d);
    if state.review_records_asked.as_ref().is_some_and(|(_, p)| *p == pair) {
        return Vec::new();
    }
    let id = d.id;
    state.review_records_asked = Some((id, pair));
    vec![Command::LoadReviewRecords { id }]
}

/// The engine's answer: kept if it answers the last request (an older one may come late).
pub fn on_records(state: &mut AppState, records: ReviewRecords) {
    if state.review_records_asked.as_ref().map(|(id, _)| *id) != Some(records.id) {
        return;
    }
    state.review_records = Some(records);
}
