//! The verify pane's part of `update`: asking the engine for the checks of `cutover verify`
//! (`Command::Verify`) and keeping its answer (`EngineEvent::Verified`).
//!
//! Verification only reads, so it is not refused while another process holds the run lock; it
//! is refused while this console's own run is writing (the checks would see it half done), and
//! it runs by itself once after a run of all pending steps ends well.

use super::common::refuse_if_running;
use crate::console::format::one_line;
use crate::console::keymap::Action;
use crate::console::state::{AppState, Dialog, StatusLevel};
use crate::engine::ops::verify::VerifyReport;
use crate::engine::protocol::Command;

/// `V`.
pub fn request(state: &mut AppState) -> Vec<Command> {
    if let Some(since) = state.verify.since.filter(|_| state.verify.verifying()) {
        let text = format!(
            "already verifying (since {}); the result shows in pane 6",
            state.local_time(since).format("%H:%M:%S")
        );
        state.set_status(StatusLevel::Info, text);
        return Vec::new();
    }
    if refuse_if_running(state) {
        return Vec::new();
    }
    state.set_status(StatusLevel::Info, "verifying the target (read-only)…");
    send(state)
}

/// After a run of all pending steps ended well: verify once, and say so after the run's line.
pub fn after_run(state: &mut AppState) -> Vec<Command> {
    let text = match &state.status {
        Some(s) if s.level == StatusLevel::Info => format!("{}; verifying…", s.text),
        _ => "verifying the target after the run…".to_string(),
    };
    state.set_status(StatusLevel::Info, text);
    send(state)
}

fn send(state: &mut AppState) -> Vec<Command> {
    if !state.verify.verifying() {
        state.verify.since = Some(state.now);
    }
    state.verify.in_flight += 1;
    vec![Command::Verify]
}

fn answered(state: &mut AppState) {
    state.verify.in_flight = state.verify.in_flight.saturating_sub(1);
    if state.verify.in_flight == 0 {
        state.verify.since = None;
    }
}

/// `EngineEvent::Verified`: keep the report, failing checks first, and select the first one.
pub fn on_report(state: &mut AppState, mut report: VerifyReport) {
    answered(state);
    // Stable: the failing checks first, each group in the engine's order.
    report.checks.sort_by_key(|c| c.ok);
    let total = report.checks.len();
    let failed = report.checks.iter().filter(|c| !c.ok).count();
    let v = &mut state.verify;
    v.report = Some(report);
    v.at = Some(state.now);
    v.error = None;
    v.selected = 0;
    let skipped = state
        .verify
        .report
        .as_ref()
        .map_or(0, |r| r.checks.iter().filter(|c| c.result_label() == "skip").count());
    let skipped = if skipped > 0 {
        format!(" ({skipped} not checked: their step was rolled back)")
    } else {
        String::new()
    };
    if failed == 0 {
        state.set_status(StatusLevel::Info, format!("verify: all {total} checks passed{skipped}"));
    } else {
        let text = format!(
            "verify: {} of {total} checks passed; {failed} FAILED (6 shows them)",
            total - failed
        );
        state.set_status(StatusLevel::Error, text);
    }
}

/// Verification could not run: the pane shows why.
pub fn on_unverified(state: &mut AppState, message: &str) {
    answered(state);
    let message = one_line(message);
    state.verify.error = Some(message.clone());
    state.set_status(StatusLevel::Error, message);
}

pub fn move_selection(state: &mut AppState, action: Action) {
    let len = state.verify.report.as_ref().map_or(0, |r| r.checks.len());
    let sel = &mut state.verify.selected;
    if len == 0 {
        *sel = 0;
        return;
    }
    *sel = match action {
        Action::Up => sel.saturating_sub(1),
        Action::Down => (*sel + 1).min(len - 1),
        Action::Top => 0,
        _ => len - 1,
    };
}

/// `enter`: the selected check, nothing cut.
pub fn details(state: &AppState) -> Option<Dialog> {
    let c = state.verify.selected_check()?;
    let measure =
        |m: &Option<crate::engine::ops::verify::Measure>| m.as_ref().map_or("-".to_string(), |m| m.to_string());
    let mut lines = vec![
        format!("result      {}", c.result_label()),
        format!("kind        {}", c.kind.as_str()),
        format!("check       {}", c.name),
        format!("source      {}", measure(&c.source)),
        format!("target      {}", measure(&c.target)),
        format!("detail      {}", c.detail),
    ];
    if let Some(at) = state.verify.at {
        lines.push(format!(
            "checked at  {}",
            state.local_time(at).format("%Y-%m-%d %H:%M:%S")
        ));
    }
    Some(Dialog::Details {
        title: format!("Check: {}", c.name),
        lines,
        scroll: 0,
    })
}
