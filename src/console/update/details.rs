//! The details dialog (`enter`): what it shows for the selection of each pane, and its keys
//! (scrolling, closing).

use super::common::{books, would_be};
use super::navigation::force_quit;
use super::review;
use super::verify;
use crate::console::format::{fmt_count, fmt_duration, one_line};
use crate::console::keymap::Action;
use crate::console::state::{AppState, Dialog, Pane};
use crate::engine::project::StepKind;
use crate::engine::protocol::{Command, Counts, StepState};

/// A key while the details dialog is up: ↑/↓ scroll, ctrl-c quits, anything else closes it.
pub fn on_action(state: &mut AppState, action: Action) -> Vec<Command> {
    if let Some(Dialog::Details { scroll, .. }) = &mut state.dialog {
        match action {
            Action::Down => *scroll = scroll.saturating_add(1),
            Action::Up => *scroll = scroll.saturating_sub(1),
            Action::ForceQuit => return force_quit(state),
            _ => state.dialog = None,
        }
    }
    Vec::new()
}

pub fn open(state: &mut AppState) {
    let dialog = match state.focus {
        Pane::Migrations => state.selected_step().map(|s| step_details(state, &s.version)),
        // The step running now, else the one that ran last.
        Pane::Progress => state
            .run
            .as_ref()
            .and_then(|r| r.current.as_ref())
            .map(|c| c.version.clone())
            .or_else(|| state.last_finished.as_ref().map(|f| f.version.clone()))
            .map(|v| step_details(state, &v)),
        Pane::Rejects => state.selected_reject().map(|r| {
            let mut lines = vec![
                format!("reject      {}", r.id),
                format!("step        {} {}", r.step, state.step_name(&r.step).unwrap_or("")),
                format!("source      {} key {}", r.source_table, r.source_key),
                format!("rule        {}", r.rule),
                format!("field       {}", r.field.as_deref().unwrap_or("-")),
                format!("level       {}", r.level),
                format!("state       {}", r.state),
                format!("reason      {}", r.reason),
            ];
            if let Some(w) = &r.waits_for {
                lines.push(format!("waits for   {w}"));
            }
            lines.push(String::new());
            lines.push("source row:".into());
            lines.extend(r.row.iter().map(|(k, v)| format!("  {k} = {v}")));
            Dialog::Details {
                title: format!("Reject {}", r.id),
                lines,
                scroll: 0,
            }
        }),
        Pane::Review => review::details(state),
        Pane::Verify => verify::details(state),
        Pane::Log => None,
    };
    if dialog.is_some() {
        state.dialog = dialog;
    }
}

fn step_details(state: &AppState, version: &str) -> Dialog {
    let mut lines = Vec::new();
    let Some(s) = state.migrations.iter().find(|m| m.version == version) else {
        return Dialog::Details {
            title: version.to_string(),
            lines: vec!["no such step".into()],
            scroll: 0,
        };
    };
    lines.push(format!("version     {}", s.version));
    lines.push(format!("kind        {}", s.kind.as_str()));
    lines.push(format!("state       {}", s.state));
    if s.state == StepState::Interrupted {
        lines.push(if s.kind == StepKind::Schema {
            "resume      nothing of it committed: `cutover repair`, then n runs it again".to_string()
        } else {
            format!(
                "resume      n (or `cutover up`) resumes it from its last checkpoint ({} source rows done)",
                fmt_count(s.counts.source)
            )
        });
    }
    let checksum = match &s.modified_file {
        Some(f) => format!("{} ({f} changed since it was applied)", s.checksum_state),
        None => s.checksum_state.clone(),
    };
    lines.push(format!("checksum    {checksum}"));
    if let Some(info) = state.step_info.get(version) {
        lines.push(format!("reads       {}", info.source));
        lines.push(format!("writes      {}", info.target));
        if info.waits_for.is_empty() {
            lines.push("waits for   nothing before it".to_string());
        } else {
            lines.push(format!("waits for   {}", info.waits_for.join(", ")));
        }
    }
    if let Some(at) = &s.applied_at {
        lines.push(format!("applied at  {at}"));
    }
    if let Some(ms) = s.duration_ms {
        lines.push(format!("duration    {}", fmt_duration(ms.max(0) as u64)));
    }
    // Schema steps move no rows, and a step not yet run has nothing to count.
    if s.kind != StepKind::Schema && s.counts != Counts::default() {
        lines.push(format!("books       {}", books(&s.counts)));
        lines.push(format!("warnings    {}", fmt_count(s.counts.warnings)));
    }
    match (state.dry_run_statements.get(version), state.dry_runs.get(version)) {
        (Some(statements), _) => {
            lines.push(format!("dry run     would run {} statement(s):", statements.len()));
            lines.extend(statements.iter().enumerate().map(|(i, s)| format!("  {}. {s}", i + 1)));
        }
        (None, Some(c)) => lines.push(format!("dry run     {}", would_be(c))),
        (None, None) => {}
    }
    if let Some(e) = &s.error {
        lines.push(String::new());
        lines.push(format!("error       {e}"));
    }
    if let Some(st) = &s.failing_statement {
        lines.push(format!("statement   {}", one_line(st)));
    }
    Dialog::Details {
        title: format!("{}_{}", s.version, s.name),
        lines,
        scroll: 0,
    }
}
