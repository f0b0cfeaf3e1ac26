//! `update`: the only place the console's state changes. Pure: a message in, engine commands
//! out (console-side work is queued in `state.effects`); no I/O, no clock, no await.

use crate::console::format::{fmt_count, fmt_duration, one_line};
use crate::console::keymap::{self, Action, Context};
use crate::console::state::{
    AppState, ConfirmAction, CurrentStep, Dialog, Effect, FinishedStep, Msg, Pane, QUIT_GRACE_SECS, QuitState,
    RATE_HISTORY, RunState, StatusLevel, Window, is_revertible, is_runnable,
};
use crate::engine::project::StepKind;
use crate::engine::protocol::{Command, Counts, DownTarget, EngineEvent, NoticeLevel, Operation, Outcome, RunOptions};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

mod review;
mod verify;

pub fn update(state: &mut AppState, msg: Msg) -> Vec<Command> {
    match msg {
        Msg::Key(key) => on_key(state, key),
        Msg::Engine(event) => on_engine(state, event),
        Msg::Tick(now) => {
            state.now = now;
            if let QuitState::Stopping { since } = state.quit
                && (now - since).num_seconds() >= QUIT_GRACE_SECS
            {
                state.quit = QuitState::Now;
            }
            Vec::new()
        }
        Msg::Resize(w, h) => {
            state.size = (w, h);
            Vec::new()
        }
        Msg::Exported(Ok(path)) => {
            state.set_status(StatusLevel::Info, format!("rejects exported to {path}"));
            Vec::new()
        }
        Msg::Exported(Err(e)) => {
            state.set_status(StatusLevel::Error, format!("export failed: {e}"));
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
        None if matches!(context, Context::TextInput | Context::FixField) => {
            if let KeyCode::Char(c) = key.code
                && !key.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
            {
                type_char(state, c);
            }
            Vec::new()
        }
        None => Vec::new(),
    }
}

fn on_action(state: &mut AppState, context: Context, action: Action) -> Vec<Command> {
    match context {
        Context::Help if action == Action::ForceQuit => force_quit(state),
        Context::Help => {
            state.help = false;
            Vec::new()
        }
        Context::Confirm => on_confirm(state, action),
        Context::TextInput => on_text_action(state, action),
        Context::FixField => on_fix_action(state, action),
        Context::Details => {
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
        _ => on_pane_action(state, action),
    }
}

fn on_pane_action(state: &mut AppState, action: Action) -> Vec<Command> {
    match action {
        Action::ToggleHelp => state.help = !state.help,
        Action::Quit => return quit(state),
        Action::ForceQuit => return force_quit(state),
        Action::NextPane => set_focus(state, state.focus.next()),
        Action::PrevPane => set_focus(state, state.focus.prev()),
        Action::Focus(p) => set_focus(state, p),
        Action::Up | Action::Down | Action::Top | Action::Bottom => move_selection(state, action),
        Action::Details => open_details(state),
        Action::Refresh => {
            state.set_status(StatusLevel::Info, "reading the target…");
            return vec![Command::Refresh];
        }
        Action::RunNext => ask_run_next(state),
        Action::RunAll => ask_run_all(state),
        Action::PauseResume => return pause_resume(state),
        Action::Abort => ask_abort(state),
        Action::DryRun => return dry_run(state),
        Action::Rollback => return ask_rollback(state),
        Action::Filter => {
            state.filter_editing = true;
            set_focus(state, Pane::Rejects);
        }
        Action::ClearFilter => {
            state.reject_filter.clear();
            state.selected_reject = 0;
        }
        Action::EditReject => ask_edit(state),
        Action::RetryReject => ask_retry(state, false),
        Action::RetryStep => ask_retry(state, true),
        Action::Export => export(state),
        Action::TakeA => return review::decide_side(state, "a"),
        Action::TakeB => return review::decide_side(state, "b"),
        Action::DecideValue => review::ask_value(state),
        Action::Split => review::ask_split(state),
        Action::ReviewNote => review::ask_note(state),
        Action::UndoDecision => review::ask_undo(state),
        Action::ToggleShowAll => review::toggle_all(state),
        Action::Verify => return verify::request(state),
        Action::Log(event) => state.effects.push(Effect::Log(event)),
        Action::Confirm | Action::Cancel | Action::Submit | Action::Backspace | Action::Close => {}
    }
    Vec::new()
}

fn set_focus(state: &mut AppState, pane: Pane) {
    state.focus = pane;
    if Pane::MIDDLE.contains(&pane) {
        state.middle = pane;
    }
}

// ---- quitting ------------------------------------------------------------------------------

fn quit(state: &mut AppState) -> Vec<Command> {
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

/// ctrl-c: leave without a question. A running step is asked to stop at its batch boundary
/// first (so the lock is released); a second ctrl-c leaves at once.
fn force_quit(state: &mut AppState) -> Vec<Command> {
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

fn move_selection(state: &mut AppState, action: Action) {
    let (len, sel) = match state.focus {
        Pane::Migrations => (state.migrations.len(), &mut state.selected_step),
        Pane::Rejects => {
            let len = state.filtered_rejects().len();
            (len, &mut state.selected_reject)
        }
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
        Action::Top => 0,
        _ => len - 1,
    };
}

fn clamp_selections(state: &mut AppState) {
    state.selected_step = state.selected_step.min(state.migrations.len().saturating_sub(1));
    let n = state.filtered_rejects().len();
    state.selected_reject = state.selected_reject.min(n.saturating_sub(1));
    review::fix_selection(state);
}

// ---- details -------------------------------------------------------------------------------

fn open_details(state: &mut AppState) {
    let dialog = match state.focus {
        Pane::Migrations => state.selected_step().map(|s| step_details(state, &s.version)),
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
    let checksum = match &s.modified_file {
        Some(f) => format!("{} ({f} changed since it was applied)", s.checksum_state),
        None => s.checksum_state.clone(),
    };
    lines.push(format!("checksum    {checksum}"));
    if let Some(info) = state.step_info.get(version) {
        lines.push(format!("source      {}", info.source));
        lines.push(format!("target      {}", info.target));
    }
    if let Some(at) = &s.applied_at {
        lines.push(format!("applied at  {at}"));
    }
    if let Some(ms) = s.duration_ms {
        lines.push(format!("duration    {}", fmt_duration(ms.max(0) as u64)));
    }
    if s.kind != StepKind::Schema && s.counts != Counts::default() {
        lines.push(format!("books       {}", books(&s.counts)));
        lines.push(format!("warnings    {}", fmt_count(s.counts.warnings)));
    }
    if let Some(c) = state.dry_runs.get(version) {
        lines.push(format!("dry run     {}", would_be(c)));
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

/// "100 source = 95 written + 3 skipped + 2 rejected + 0 merged (balanced)".
pub fn books(c: &Counts) -> String {
    format!(
        "{} source = {} written + {} skipped + {} rejected + {} merged ({})",
        fmt_count(c.source),
        fmt_count(c.written),
        fmt_count(c.skipped),
        fmt_count(c.rejected),
        fmt_count(c.merged),
        if c.balanced() { "balanced" } else { "NOT balanced" }
    )
}

pub fn would_be(c: &Counts) -> String {
    format!(
        "would write {}, reject {}, skip {}, merge {} of {} rows ({} warnings)",
        fmt_count(c.written),
        fmt_count(c.rejected),
        fmt_count(c.skipped),
        fmt_count(c.merged),
        fmt_count(c.source),
        fmt_count(c.warnings)
    )
}

// ---- runs ----------------------------------------------------------------------------------

/// Write actions are refused while another process holds the target's run lock.
fn refuse_if_locked(state: &mut AppState) -> bool {
    if let Some(h) = state.foreign_lock() {
        let text = format!(
            "read-only: the target is locked by {}@{} since {}",
            h.owner, h.host, h.since
        );
        state.set_status(StatusLevel::Warn, text);
        return true;
    }
    false
}

fn refuse_if_running(state: &mut AppState) -> bool {
    if state.running() {
        state.set_status(
            StatusLevel::Warn,
            "a run is in progress; wait for it to end (p pauses, x aborts)",
        );
        return true;
    }
    false
}

fn ask_run_next(state: &mut AppState) {
    if refuse_if_running(state) || refuse_if_locked(state) {
        return;
    }
    let Some(step) = state.next_pending() else {
        state.set_status(StatusLevel::Info, "nothing pending: every step is applied");
        return;
    };
    let version = step.version.clone();
    let mut lines = vec![format!("{}  {}  ({})", step.version, step.name, step.kind.as_str())];
    if let Some(info) = state.step_info.get(&version) {
        lines.push(format!("source  {}", info.source));
        lines.push(format!("target  {}", info.target));
    }
    if step.state != "pending" {
        lines.push(format!("it is {}; the run resumes or repeats it", step.state));
    }
    if let Some(c) = state.dry_runs.get(&version) {
        lines.push(format!("dry run {}", would_be(c)));
    }
    state.dialog = Some(Dialog::Confirm {
        action: ConfirmAction::RunNext { version },
        title: "Run the next pending step?".into(),
        lines,
    });
}

fn ask_run_all(state: &mut AppState) {
    if refuse_if_running(state) || refuse_if_locked(state) {
        return;
    }
    let pending: Vec<String> = state
        .migrations
        .iter()
        .filter(|m| is_runnable(m))
        .map(|m| format!("{}  {}  ({})", m.version, m.name, m.kind.as_str()))
        .collect();
    if pending.is_empty() {
        state.set_status(StatusLevel::Info, "nothing pending: every step is applied");
        return;
    }
    let mut lines = vec![format!("{} steps, in this order:", pending.len())];
    lines.extend(pending);
    state.dialog = Some(Dialog::Confirm {
        action: ConfirmAction::RunAll,
        title: "Run all pending steps?".into(),
        lines,
    });
}

fn ask_abort(state: &mut AppState) {
    let Some(run) = &state.run else {
        state.set_status(StatusLevel::Info, "nothing is running");
        return;
    };
    let name = run
        .current
        .as_ref()
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "the run".into());
    state.dialog = Some(Dialog::Confirm {
        action: ConfirmAction::Abort,
        title: "Abort the run?".into(),
        lines: vec![
            format!("{name} stops at the next batch boundary."),
            "Committed batches stay; `n` resumes from there.".into(),
        ],
    });
}

fn pause_resume(state: &mut AppState) -> Vec<Command> {
    match &state.run {
        None => {
            state.set_status(StatusLevel::Info, "nothing is running");
            Vec::new()
        }
        Some(r) if r.paused => vec![Command::Resume],
        Some(_) => {
            state.set_status(StatusLevel::Info, "pausing at the next batch boundary…");
            vec![Command::Pause]
        }
    }
}

fn dry_run(state: &mut AppState) -> Vec<Command> {
    if refuse_if_running(state) {
        return Vec::new();
    }
    let Some(step) = state.selected_step() else {
        return Vec::new();
    };
    if !is_runnable(step) {
        let text = format!("{} is {}; d dry-runs a pending step", step.name, step.state);
        state.set_status(StatusLevel::Info, text);
        return Vec::new();
    }
    let version = step.version.clone();
    let text = format!("dry run of {}: nothing will be committed…", step.name);
    state.set_status(StatusLevel::Info, text);
    state.run = Some(RunState {
        operation: Operation::Up,
        dry_run: true,
        ..Default::default()
    });
    vec![Command::Start(RunOptions {
        only: Some(version),
        dry_run: true,
        ..Default::default()
    })]
}

fn ask_rollback(state: &mut AppState) -> Vec<Command> {
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

fn ask_edit(state: &mut AppState) {
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

fn ask_retry(state: &mut AppState, whole_step: bool) {
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

fn export(state: &mut AppState) {
    let rows: Vec<_> = state.filtered_rejects().into_iter().cloned().collect();
    if rows.is_empty() {
        state.set_status(StatusLevel::Info, "no rejects to export");
        return;
    }
    let stamp = state.now.format("%Y%m%dT%H%M%S").to_string();
    state.effects.push(Effect::ExportRejects { rows, stamp });
}

fn on_confirm(state: &mut AppState, action: Action) -> Vec<Command> {
    if action == Action::ForceQuit {
        state.dialog = None;
        return force_quit(state);
    }
    let Some(Dialog::Confirm { action: what, .. }) = state.dialog.take() else {
        return Vec::new();
    };
    if action != Action::Confirm {
        return Vec::new();
    }
    match what {
        ConfirmAction::RunNext { version } => {
            // The state may have changed under the dialog (a snapshot arrived): say so rather
            // than run a different step than the one confirmed.
            if state.next_pending().map(|s| s.version.as_str()) != Some(version.as_str()) {
                state.set_status(StatusLevel::Warn, "the next pending step changed; press n again");
                return Vec::new();
            }
            state.run = Some(RunState {
                operation: Operation::Up,
                ..Default::default()
            });
            vec![Command::Start(RunOptions {
                only_next: true,
                ..Default::default()
            })]
        }
        ConfirmAction::RunAll => {
            state.run = Some(RunState {
                operation: Operation::Up,
                all: true,
                ..Default::default()
            });
            vec![Command::Start(RunOptions::default())]
        }
        ConfirmAction::Abort => {
            if let Some(run) = &mut state.run {
                run.aborting = true;
                state.set_status(StatusLevel::Warn, "aborting at the next batch boundary…");
                vec![Command::Abort]
            } else {
                Vec::new()
            }
        }
        ConfirmAction::Quit => {
            if state.running() {
                stop_and_quit(state)
            } else {
                state.quit = QuitState::Now;
                Vec::new()
            }
        }
        ConfirmAction::RetryReject { id } => {
            state.set_status(StatusLevel::Info, format!("retrying reject {id}…"));
            vec![Command::Retry {
                id: Some(id),
                step: None,
            }]
        }
        ConfirmAction::RetryStep { version } => {
            state.set_status(StatusLevel::Info, format!("retrying the open rejects of {version}…"));
            vec![Command::Retry {
                id: None,
                step: Some(version),
            }]
        }
        ConfirmAction::Split { id } => review::confirmed_split(state, id),
        ConfirmAction::Redecide { id, decision } => review::confirmed_redecide(state, id, decision),
    }
}

// ---- text input ----------------------------------------------------------------------------

fn type_char(state: &mut AppState, c: char) {
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
            state.selected_reject = 0;
        }
        _ => {}
    }
}

fn on_text_action(state: &mut AppState, action: Action) -> Vec<Command> {
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
                None if state.filter_editing => {
                    state.reject_filter.pop();
                    state.selected_reject = 0;
                }
                _ => {}
            }
            Vec::new()
        }
        Action::Cancel => {
            if state.dialog.take().is_none() && state.filter_editing {
                state.filter_editing = false;
                state.reject_filter.clear();
                state.selected_reject = 0;
            }
            Vec::new()
        }
        Action::Submit => submit(state),
        _ => Vec::new(),
    }
}

/// The fix dialog: ↑/↓ (tab/shift-tab) choose the field, the rest is text input. Choosing
/// another field clears the value typed so far, so a secret typed for one field is never
/// shown unmasked under another.
fn on_fix_action(state: &mut AppState, action: Action) -> Vec<Command> {
    match action {
        Action::Down | Action::Up => {
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
            Vec::new()
        }
        other => on_text_action(state, other),
    }
}

/// The fix dialog's Enter: the value goes to the chosen field as typed. A value that starts
/// with `FIELD=` naming a field of the row is the CLI's syntax typed in the wrong place (it
/// would set the chosen field to the whole text), so it is refused without echoing the value.
fn submit_fix(
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
        }) => {
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
        Some(Dialog::EditReject {
            id,
            fields,
            field,
            input,
        }) => submit_fix(state, id, fields, field, input),
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

// ---- engine events -------------------------------------------------------------------------

fn on_engine(state: &mut AppState, event: EngineEvent) -> Vec<Command> {
    match event {
        EngineEvent::Verified(report) => verify::on_report(state, report),
        EngineEvent::Planned {
            operation,
            dry_run,
            steps,
            ..
        } => {
            let run = state.run.get_or_insert_with(RunState::default);
            run.operation = operation;
            run.dry_run = dry_run;
            run.planned = steps;
        }
        EngineEvent::StepStarted {
            version,
            name,
            kind,
            dry_run,
        } => {
            if !dry_run && let Some(m) = state.migrations.iter_mut().find(|m| m.version == version) {
                m.state = "running".into();
            }
            let verb = match (dry_run, state.run.as_ref().map(|r| r.operation.as_str())) {
                (true, _) => "dry run of",
                (false, Some("down")) => "rolling back",
                _ => "running",
            };
            state.set_status(StatusLevel::Info, format!("{verb} {name} ({})…", kind.as_str()));
            let run = state.run.get_or_insert_with(RunState::default);
            run.current = Some(CurrentStep {
                version,
                name,
                kind,
                dry_run,
                progress: Default::default(),
                rate_history: Vec::new(),
                statements_done: 0,
                last_statement: None,
                flags: 0,
                last_reject: None,
            });
        }
        EngineEvent::Statement { version, index, sql } => {
            if let Some(c) = current_mut(state, &version) {
                c.statements_done = c.statements_done.max(index + 1);
                c.last_statement = Some(one_line(&sql));
            }
        }
        EngineEvent::Progress { version, progress } => {
            if progress.rows_per_sec > 0.0 {
                state.last_rate = Some(progress.rows_per_sec);
            }
            if let Some(c) = current_mut(state, &version) {
                c.progress = progress;
                c.rate_history.push(progress.rows_per_sec.max(0.0).round() as u64);
                if c.rate_history.len() > RATE_HISTORY {
                    let extra = c.rate_history.len() - RATE_HISTORY;
                    c.rate_history.drain(..extra);
                }
            }
        }
        EngineEvent::Rejected {
            version,
            source_key,
            rule,
            reason,
            ..
        } => {
            if let Some(c) = current_mut(state, &version) {
                c.last_reject = Some(format!("{source_key}: {rule} — {reason}"));
            }
        }
        EngineEvent::Flagged { version, .. } => {
            if let Some(c) = current_mut(state, &version) {
                c.flags += 1;
            }
        }
        EngineEvent::Paused { .. } => {
            if let Some(r) = &mut state.run {
                r.paused = true;
            }
            state.set_status(StatusLevel::Warn, "paused at a batch boundary; p resumes");
        }
        EngineEvent::Resumed { .. } => {
            if let Some(r) = &mut state.run {
                r.paused = false;
            }
            state.set_status(StatusLevel::Info, "resumed");
        }
        EngineEvent::StepFinished {
            version,
            name,
            status,
            counts,
            duration_ms,
            dry_run,
        } => {
            if dry_run {
                state.dry_runs.insert(version.clone(), counts);
                state.set_status(StatusLevel::Info, format!("dry run of {name}: {}", would_be(&counts)));
            } else {
                if let Some(m) = state.migrations.iter_mut().find(|m| m.version == version) {
                    m.state = status.clone();
                    m.counts = counts;
                    m.duration_ms = Some(duration_ms as i64);
                    m.error = None;
                }
                let text = format!("{name} {status} in {}", fmt_duration(duration_ms));
                state.set_status(StatusLevel::Info, text);
            }
            if let Some(r) = &mut state.run {
                r.steps_done += 1;
                r.current = None;
            }
            state.last_finished = Some(FinishedStep {
                version,
                name,
                status,
                counts,
                duration_ms,
                dry_run,
            });
        }
        EngineEvent::Aborted { version, counts } => {
            let name = state.step_name(&version).unwrap_or(&version).to_string();
            let text = format!(
                "{name} aborted at a batch boundary after {} rows; n resumes it",
                fmt_count(counts.written + counts.skipped + counts.rejected + counts.merged)
            );
            state.set_status(StatusLevel::Warn, text);
        }
        EngineEvent::Failed {
            version,
            error,
            statement,
            ..
        } => {
            let error = one_line(&error);
            if let Some(v) = &version
                && let Some(m) = state.migrations.iter_mut().find(|m| &m.version == v)
            {
                m.state = "failed".into();
                m.error = Some(error.clone());
                m.failing_statement = statement;
            }
            let text = match version.as_deref().and_then(|v| state.step_name(v)) {
                Some(name) => format!("{name} failed: {error}"),
                None => error,
            };
            state.set_status(StatusLevel::Error, text);
        }
        EngineEvent::Finished {
            ok,
            outcome,
            steps_done,
            dry_run,
            operation,
            ..
        } => {
            let all = state.run.take().is_some_and(|r| r.all);
            if state.quit != QuitState::Running {
                state.quit = QuitState::Now;
            }
            // Failures and aborts already said why; only a clean end needs a line of its own.
            if outcome == Outcome::Done && !dry_run {
                let text = match (operation.as_str(), steps_done) {
                    (_, 0) => "nothing to do".to_string(),
                    ("down", n) => format!("rollback finished: {n} step(s) reverted"),
                    (_, n) => format!("run finished: {n} step(s) applied"),
                };
                state.set_status(StatusLevel::Info, text);
            }
            let mut commands = vec![Command::Refresh];
            // A run of all pending steps that ended well is checked at once, as `cutover
            // verify` would (not when leaving, and not after a dry run or a rollback).
            if all
                && ok
                && outcome == Outcome::Done
                && !dry_run
                && operation == Operation::Up
                && state.quit == QuitState::Running
            {
                commands.extend(verify::after_run(state));
            }
            return commands;
        }
        EngineEvent::Snapshot(s) => {
            let first = !state.loaded;
            state.loaded = true;
            state.project = s.project;
            state.target = s.target;
            if let (Some(a), Some(b)) = (&s.window_start, &s.window_end)
                && let Some(w) = Window::parse(a, b)
            {
                state.window = Some(w);
            }
            state.migrations = s.migrations;
            state.rejects = s.rejects;
            state.open_rejects = s.open_rejects;
            state.locked_by = s.locked_by;
            state.discrepancies = s.discrepancies;
            // Answered decisions are in this snapshot (or were refused): no longer "on the way".
            state.deciding.retain(|p| !p.answered);
            if first && let Some(i) = state.migrations.iter().position(is_runnable) {
                state.selected_step = i;
            }
            clamp_selections(state);
        }
        EngineEvent::RollbackPreview(p) => {
            if let Some(Dialog::Rollback { version, preview, .. }) = &mut state.dialog
                && *version == p.version
            {
                *preview = Some(p);
            }
        }
        EngineEvent::Unverified { message } => verify::on_unverified(state, &message),
        EngineEvent::Decided {
            id, applied, message, ..
        } => review::on_decided(state, id, applied, &message),
        EngineEvent::Fixed { applied, message, .. } => {
            let level = if applied { StatusLevel::Info } else { StatusLevel::Error };
            state.set_status(level, one_line(&message));
        }
        EngineEvent::Retried {
            written,
            still_rejected,
            first_still_rejected,
            error,
        } => match error {
            Some(e) => state.set_status(StatusLevel::Error, one_line(&e)),
            None => {
                let first = first_still_rejected
                    .map(|(i, why)| format!(" ({i}: {why})"))
                    .unwrap_or_default();
                let level = if still_rejected > 0 {
                    StatusLevel::Warn
                } else {
                    StatusLevel::Info
                };
                state.set_status(
                    level,
                    one_line(&format!(
                        "retry: {written} written, {still_rejected} still rejected{first}"
                    )),
                );
            }
        },
        EngineEvent::Notice { level, message } => {
            let level = match level {
                NoticeLevel::Info => StatusLevel::Info,
                NoticeLevel::Warning => StatusLevel::Warn,
                NoticeLevel::Error => StatusLevel::Error,
            };
            state.set_status(level, one_line(&message));
        }
    }
    Vec::new()
}

fn current_mut<'a>(state: &'a mut AppState, version: &str) -> Option<&'a mut CurrentStep> {
    state
        .run
        .as_mut()
        .and_then(|r| r.current.as_mut())
        .filter(|c| c.version == version)
}
