//! The pre-flight pane's part of `update`: `F` opens it and asks the engine to assess the
//! pending steps (`Command::Assess`); `EngineEvent::Assessed` keeps the report, which the
//! pane shows and the window ETA uses for pending steps nothing better measures.

use super::common::refuse_if_running;
use crate::console::format::fmt_count;
use crate::console::keymap::Action;
use crate::console::state::{AppState, StatusLevel};
use crate::engine::protocol::Command;
use crate::engine::protocol::assess::AssessReport;

/// `F`: open the pane; assess when there is no report yet (`r` in the pane assesses again).
pub fn open(state: &mut AppState) -> Vec<Command> {
    state.assess.open = true;
    if state.assess.report.is_some() || state.assess.since.is_some() {
        return Vec::new();
    }
    request(state)
}

/// `r` in the pane: assess (again).
pub fn request(state: &mut AppState) -> Vec<Command> {
    if state.assess.since.is_some() {
        state.set_status(StatusLevel::Info, "already assessing; the report shows here");
        return Vec::new();
    }
    if refuse_if_running(state) {
        return Vec::new();
    }
    state.assess.since = Some(state.now);
    state.assess.error = None;
    state.set_status(
        StatusLevel::Info,
        "assessing the pending steps (in one rolled-back transaction: nothing is kept)…",
    );
    vec![Command::Assess { sample: None }]
}

/// A key while the pane is open: it takes all keys (ctrl-c still quits).
pub fn on_action(state: &mut AppState, action: Action) -> Vec<Command> {
    match action {
        Action::ForceQuit => return super::navigation::force_quit(state),
        Action::Close => state.assess.open = false,
        Action::Reassess => return request(state),
        Action::Down => select(state, 1),
        Action::Up => select(state, -1),
        Action::ToggleHelp => state.help = !state.help,
        _ => {}
    }
    Vec::new()
}

fn select(state: &mut AppState, delta: i64) {
    let n = state.assess.report.as_ref().map(|r| r.steps.len()).unwrap_or(0);
    if n == 0 {
        return;
    }
    let at = (state.assess.selected as i64 + delta).clamp(0, n as i64 - 1);
    state.assess.selected = at as usize;
}

/// `EngineEvent::Assessed`.
pub fn on_report(state: &mut AppState, report: AssessReport) {
    state.assess.since = None;
    state.assess.error = None;
    state.assess.at = Some(state.now);
    state.assess.selected = state.assess.selected.min(report.steps.len().saturating_sub(1));
    let writes: u64 = report.steps.iter().map(|s| s.would_write).sum();
    let rejects: u64 = report
        .steps
        .iter()
        .map(|s| s.rejects_by_rule.values().sum::<u64>())
        .sum();
    state.set_status(
        StatusLevel::Info,
        format!(
            "assessed {} pending step(s): {} rows would be written, {} rejected",
            report.steps.len(),
            fmt_count(writes),
            fmt_count(rejects)
        ),
    );
    state.assess.report = Some(report);
}

/// A `Notice` while an assess is on the way is its failure.
pub fn on_failure(state: &mut AppState, message: &str) -> bool {
    if state.assess.since.is_none() || !(message.starts_with("assess") || message.contains("assess after")) {
        return false;
    }
    state.assess.since = None;
    state.assess.error = Some(message.to_string());
    true
}
