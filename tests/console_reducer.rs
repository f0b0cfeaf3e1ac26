//! The console's reducer: keys and engine events in, state and engine commands out. No terminal,
//! no database: `update` is pure.

use chrono::{DateTime, TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use cutover::console::keymap::{self, Action, Context, KEYMAP};
use cutover::console::state::{ConfirmAction, Dialog, Pane, QuitState, StatusLevel};
use cutover::console::{AppState, Msg, update};
use cutover::engine::ops::review::Discrepancy;
use cutover::engine::ops::snapshot::{RejectSummary, RollbackPreview, Snapshot, StepSummary};
use cutover::engine::ops::verify::{Check, CheckKind, Measure, VerifyReport};
use cutover::engine::project::StepKind;
use cutover::engine::protocol::views::{RejectPage, ReviewRecords};
use cutover::engine::protocol::{
    Command, Counts, DownTarget, EngineEvent, Operation, Outcome, PlannedStep, Progress, RunOptions,
};
use cutover::engine::protocol::{PageAt, StepState};
use cutover::engine::store::lock::LockHolder;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 23, 0, 0)
        .single()
        .expect("valid time")
}

fn step(version: &str, name: &str, kind: StepKind, state: &str) -> StepSummary {
    StepSummary {
        version: version.into(),
        name: name.into(),
        kind,
        state: serde_json::from_value(serde_json::json!(state)).expect("a step state"),
        checksum_state: if state == "pending" { "-".into() } else { "ok".into() },
        modified_file: None,
        duration_ms: None,
        applied_at: None,
        counts: Counts::default(),
        error: None,
        failing_statement: None,
        sync: None,
    }
}

fn reject(id: i64, step: &str, rule: &str, state: &str) -> RejectSummary {
    RejectSummary {
        id,
        step: step.into(),
        source_table: "users".into(),
        source_key: format!("u{id}"),
        field: Some("email".into()),
        rule: rule.into(),
        reason: format!("{rule} failed"),
        level: "error".into(),
        state: state.into(),
        waits_for: None,
        row: vec![("id".into(), format!("u{id}")), ("email".into(), "bob@".into())],
    }
}

fn snapshot(migrations: Vec<StepSummary>) -> Snapshot {
    Snapshot {
        project: "clinic".into(),
        target: "sqlite://target.db".into(),
        migrations,
        ..Default::default()
    }
}

/// A state that has seen its first snapshot.
fn loaded(migrations: Vec<StepSummary>) -> AppState {
    let mut s = AppState::new("clinic", "sqlite://target.db", t0());
    s.own_pid = 4242;
    let cmds = update(
        &mut s,
        Msg::Engine(EngineEvent::Snapshot(Box::new(snapshot(migrations)))),
    );
    // The first snapshot asks for the first page of the reject store; it is empty.
    assert!(
        matches!(cmds.as_slice(), [Command::LoadRejects(r)] if r.at == PageAt::Offset(0)),
        "{cmds:?}"
    );
    answer_page(&mut s, 0, Vec::new(), 0);
    s
}

fn two_steps() -> Vec<StepSummary> {
    vec![
        step("20250101T090000", "schema", StepKind::Schema, "applied"),
        step("20250101T090100", "accounts", StepKind::Data, "pending"),
    ]
}

fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ch(c: char) -> Msg {
    key(KeyCode::Char(c))
}

fn ctrl(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn type_str(s: &mut AppState, text: &str) -> Vec<Command> {
    text.chars().flat_map(|c| update(s, ch(c))).collect()
}

fn progress(rows_done: u64, rows_total: u64, rate: f64) -> Progress {
    Progress {
        step_index: 1,
        rows_done,
        rows_total,
        written: rows_done - 3,
        skipped: 1,
        rejected: 2,
        merged: 0,
        warnings: 5,
        batches_done: rows_done / 100,
        batches_total: rows_total / 100,
        rows_per_sec: rate,
        elapsed_ms: 2500,
        batch_times: Default::default(),
    }
}

/// A state with `accounts` running (the engine has acknowledged the start).
fn running() -> AppState {
    let mut s = loaded(two_steps());
    update(&mut s, ch('n'));
    let cmds = update(&mut s, ch('y'));
    assert_eq!(cmds.len(), 1);
    update(
        &mut s,
        Msg::Engine(EngineEvent::Planned {
            run_id: "r1".into(),
            operation: Operation::Up,
            dry_run: false,
            steps: vec![PlannedStep {
                version: "20250101T090100".into(),
                name: "accounts".into(),
                kind: StepKind::Data,
                rows_estimate: None,
            }],
        }),
    );
    update(
        &mut s,
        Msg::Engine(EngineEvent::StepStarted {
            version: "20250101T090100".into(),
            name: "accounts".into(),
            kind: StepKind::Data,
            dry_run: false,
        }),
    );
    s
}

#[test]
fn n_with_nothing_pending_sends_nothing() {
    let mut s = loaded(vec![step("20250101T090000", "schema", StepKind::Schema, "applied")]);
    let cmds = update(&mut s, ch('n'));
    assert!(cmds.is_empty());
    assert!(s.dialog.is_none(), "no confirmation for nothing");
    let status = s.status.as_ref().expect("a status line says why");
    assert!(status.text.contains("nothing pending"), "{status:?}");
}

#[test]
fn n_asks_then_confirm_starts_only_the_next_step() {
    let mut s = loaded(two_steps());
    let cmds = update(&mut s, ch('n'));
    assert!(cmds.is_empty(), "nothing runs before the confirmation");
    match &s.dialog {
        Some(Dialog::Confirm {
            action: ConfirmAction::RunNext { version },
            lines,
            ..
        }) => {
            assert_eq!(version, "20250101T090100");
            assert!(lines[0].contains("accounts") && lines[0].contains("data"), "{lines:?}");
        }
        other => panic!("expected the run-next confirmation, got {other:?}"),
    }
    let cmds = update(&mut s, key(KeyCode::Enter));
    assert_eq!(
        cmds,
        vec![Command::Start(RunOptions {
            only_next: true,
            ..Default::default()
        })]
    );
    assert!(s.dialog.is_none());
    assert!(s.running());
}

#[test]
fn n_then_no_cancels() {
    let mut s = loaded(two_steps());
    update(&mut s, ch('n'));
    let cmds = update(&mut s, key(KeyCode::Esc));
    assert!(cmds.is_empty());
    assert!(s.dialog.is_none());
    assert!(!s.running());
}

#[test]
fn a_confirms_and_runs_all_pending() {
    let mut s = loaded(two_steps());
    update(&mut s, ch('A'));
    assert!(matches!(
        s.dialog,
        Some(Dialog::Confirm {
            action: ConfirmAction::RunAll,
            ..
        })
    ));
    let cmds = update(&mut s, ch('y'));
    assert_eq!(cmds, vec![Command::Start(RunOptions::default())]);
}

#[test]
fn rollback_needs_the_exact_name() {
    let mut s = loaded(two_steps());
    // Select the applied schema step (the first snapshot selected the next pending one).
    update(&mut s, ch('k'));
    assert_eq!(s.selected_step, 0);
    let cmds = update(&mut s, ch('u'));
    assert_eq!(
        cmds,
        vec![Command::PreviewRollback {
            version: "20250101T090000".into()
        }]
    );
    update(
        &mut s,
        Msg::Engine(EngineEvent::RollbackPreview(RollbackPreview {
            version: "20250101T090000".into(),
            name: "schema".into(),
            kind: StepKind::Schema,
            lines: vec!["DROP TABLE accounts;".into()],
            refused: None,
            steps: vec![],
            later: vec![],
            to_here: None,
        })),
    );
    assert!(matches!(&s.dialog, Some(Dialog::Rollback { preview: Some(_), .. })));

    let mut cmds = type_str(&mut s, "schemaa");
    cmds.extend(update(&mut s, key(KeyCode::Enter)));
    assert!(
        !cmds.iter().any(|c| matches!(c, Command::Rollback { .. })),
        "a wrong name must not roll back: {cmds:?}"
    );
    assert!(
        matches!(s.dialog, Some(Dialog::Rollback { .. })),
        "the dialog stays open"
    );
    assert_eq!(s.status.as_ref().map(|x| x.level), Some(StatusLevel::Warn));

    update(&mut s, key(KeyCode::Backspace));
    let cmds = update(&mut s, key(KeyCode::Enter));
    assert_eq!(
        cmds,
        vec![Command::Rollback {
            target: DownTarget::Only("20250101T090000".into()),
            dry_run: false
        }]
    );
    assert!(s.dialog.is_none());
    assert!(s.running());
}

#[test]
fn rollback_refused_by_the_engine_sends_nothing() {
    let mut s = loaded(two_steps());
    update(&mut s, ch('k'));
    update(&mut s, ch('u'));
    update(
        &mut s,
        Msg::Engine(EngineEvent::RollbackPreview(RollbackPreview {
            version: "20250101T090000".into(),
            name: "schema".into(),
            kind: StepKind::Schema,
            lines: vec![],
            refused: Some("roll back accounts first".into()),
            steps: vec![],
            later: vec![],
            to_here: None,
        })),
    );
    let mut cmds = type_str(&mut s, "schema");
    cmds.extend(update(&mut s, key(KeyCode::Enter)));
    assert!(cmds.is_empty(), "{cmds:?}");
    assert_eq!(s.status.as_ref().map(|x| x.level), Some(StatusLevel::Error));
}

#[test]
fn enter_before_the_preview_arrives_does_not_roll_back() {
    let mut s = loaded(two_steps());
    update(&mut s, ch('k'));
    update(&mut s, ch('u'));
    let mut cmds = type_str(&mut s, "schema");
    cmds.extend(update(&mut s, key(KeyCode::Enter)));
    assert!(
        cmds.is_empty(),
        "the operator has not seen what it undoes yet: {cmds:?}"
    );
}

#[test]
fn u_on_a_pending_step_explains() {
    let mut s = loaded(two_steps());
    assert_eq!(s.selected_step, 1);
    assert!(s.status.is_none(), "no status before u: {:?}", s.status);
    let cmds = update(&mut s, ch('u'));
    assert!(cmds.is_empty());
    assert!(s.dialog.is_none());
    // The status line says why nothing happened: the step, its state, and what u is for.
    let status = s.status.as_ref().expect("u on a pending step explains itself");
    assert_eq!(status.level, StatusLevel::Info, "{status:?}");
    assert_eq!(status.text, "accounts is pending; u rolls back an applied step");
}

#[test]
fn q_while_running_asks_and_yes_aborts_first() {
    let mut s = running();
    let cmds = update(&mut s, ch('q'));
    assert!(cmds.is_empty());
    assert!(matches!(
        s.dialog,
        Some(Dialog::Confirm {
            action: ConfirmAction::Quit,
            ..
        })
    ));
    assert!(!s.should_exit());
    let cmds = update(&mut s, ch('y'));
    assert_eq!(cmds, vec![Command::Abort]);
    assert!(matches!(s.quit, QuitState::Stopping { .. }));
    // The run ends at its batch boundary: now the console leaves.
    let cmds = update(
        &mut s,
        Msg::Engine(EngineEvent::Finished {
            run_id: "r1".into(),
            operation: Operation::Up,
            ok: false,
            outcome: Outcome::Aborted,
            steps_done: 0,
            dry_run: false,
        }),
    );
    assert_eq!(cmds, vec![Command::Refresh]);
    assert!(s.should_exit());
}

#[test]
fn q_while_running_no_stays() {
    let mut s = running();
    update(&mut s, ch('q'));
    update(&mut s, ch('n'));
    assert!(s.dialog.is_none());
    assert!(!s.should_exit());
    assert!(s.running());
}

#[test]
fn quit_gives_up_waiting_after_the_grace_time() {
    let mut s = running();
    update(&mut s, ctrl('c'));
    assert!(!s.should_exit());
    update(&mut s, Msg::Tick(t0() + chrono::Duration::seconds(3)));
    assert!(!s.should_exit());
    update(&mut s, Msg::Tick(t0() + chrono::Duration::seconds(11)));
    assert!(s.should_exit());
}

#[test]
fn q_when_idle_quits_at_once() {
    let mut s = loaded(two_steps());
    let cmds = update(&mut s, ch('q'));
    assert!(cmds.is_empty());
    assert!(s.should_exit());
}

#[test]
fn ctrl_c_quits_from_anywhere() {
    let mut s = loaded(two_steps());
    let cmds = update(&mut s, ctrl('c'));
    assert!(cmds.is_empty());
    assert!(s.should_exit());

    // Even from a text input, where 'c' would otherwise be typed.
    let mut s = loaded(two_steps());
    update(&mut s, ch('k'));
    update(&mut s, ch('u'));
    update(&mut s, ctrl('c'));
    assert!(s.should_exit());

    // While running: stop at the batch boundary; a second ctrl-c leaves at once.
    let mut s = running();
    assert_eq!(update(&mut s, ctrl('c')), vec![Command::Abort]);
    assert!(!s.should_exit());
    update(&mut s, ctrl('c'));
    assert!(s.should_exit());
}

#[test]
fn progress_events_update_the_gauge_numbers() {
    let mut s = running();
    for (done, rate) in [(200, 100.0), (500, 150.0)] {
        update(
            &mut s,
            Msg::Engine(EngineEvent::Progress {
                version: "20250101T090100".into(),
                progress: progress(done, 1000, rate),
            }),
        );
    }
    let c = s.run.as_ref().and_then(|r| r.current.as_ref()).expect("a current step");
    assert_eq!(c.progress.rows_done, 500);
    assert_eq!(c.progress.rows_total, 1000);
    assert_eq!(c.progress.batches_done, 5);
    assert_eq!(c.rate_history, vec![100, 150]);
    assert_eq!(s.last_rate, Some(150.0));
    // 500 rows left at 150 rows/s.
    let est = cutover::console::eta::estimate(&s);
    assert_eq!(est.rows_left, 500);
    assert_eq!(est.secs, Some(4));

    // Progress for another version (a stale event) does not touch the gauge.
    update(
        &mut s,
        Msg::Engine(EngineEvent::Progress {
            version: "20250101T090000".into(),
            progress: progress(900, 1000, 1.0),
        }),
    );
    let c = s.run.as_ref().and_then(|r| r.current.as_ref()).expect("a current step");
    assert_eq!(c.progress.rows_done, 500);
}

#[test]
fn step_finished_and_finished_end_the_run_and_refresh() {
    let mut s = running();
    let counts = Counts {
        source: 10,
        written: 8,
        skipped: 0,
        rejected: 2,
        merged: 0,
        warnings: 0,
    };
    update(
        &mut s,
        Msg::Engine(EngineEvent::StepFinished {
            version: "20250101T090100".into(),
            name: "accounts".into(),
            status: StepState::Applied,
            counts,
            duration_ms: 1200,
            dry_run: false,
        }),
    );
    assert_eq!(s.migrations[1].state, StepState::Applied);
    assert_eq!(s.migrations[1].counts, counts);
    let cmds = update(
        &mut s,
        Msg::Engine(EngineEvent::Finished {
            run_id: "r1".into(),
            operation: Operation::Up,
            ok: true,
            outcome: Outcome::Done,
            steps_done: 1,
            dry_run: false,
        }),
    );
    assert_eq!(cmds, vec![Command::Refresh]);
    assert!(!s.running());
}

#[test]
fn a_locked_snapshot_refuses_writes() {
    let mut s = loaded(two_steps());
    let mut snap = snapshot(two_steps());
    snap.locked_by = Some(LockHolder {
        owner: "alice".into(),
        host: "ops1".into(),
        pid: 999,
        command: "up".into(),
        since: "2026-11-21T22:58:00Z".into(),
        heartbeat_age_secs: 2,
    });
    update(&mut s, Msg::Engine(EngineEvent::Snapshot(Box::new(snap))));
    let cmds = update(&mut s, ch('n'));
    assert!(cmds.is_empty());
    assert!(s.dialog.is_none(), "no confirmation for a refused action");
    let status = s.status.as_ref().expect("status");
    assert!(status.text.contains("alice@ops1"), "{status:?}");
    assert!(status.text.contains("read-only"), "{status:?}");
    // Rollback is a write too.
    update(&mut s, ch('k'));
    assert!(update(&mut s, ch('u')).is_empty());
    // A dry run commits nothing and takes no lock: allowed.
    update(&mut s, ch('j'));
    let cmds = update(&mut s, ch('d'));
    assert_eq!(
        cmds,
        vec![Command::Start(RunOptions {
            only: Some("20250101T090100".into()),
            dry_run: true,
            ..Default::default()
        })]
    );
}

#[test]
fn our_own_lock_is_not_a_foreign_lock() {
    let mut s = loaded(two_steps());
    let mut snap = snapshot(two_steps());
    snap.locked_by = Some(LockHolder {
        owner: "me".into(),
        host: "here".into(),
        pid: 4242,
        command: "up".into(),
        since: "x".into(),
        heartbeat_age_secs: 0,
    });
    update(&mut s, Msg::Engine(EngineEvent::Snapshot(Box::new(snap))));
    update(&mut s, ch('n'));
    assert!(s.dialog.is_some());
}

#[test]
fn dry_run_records_would_be_counts() {
    let mut s = loaded(two_steps());
    let cmds = update(&mut s, ch('d'));
    assert_eq!(cmds.len(), 1);
    let counts = Counts {
        source: 10,
        written: 7,
        skipped: 1,
        rejected: 2,
        merged: 0,
        warnings: 0,
    };
    update(
        &mut s,
        Msg::Engine(EngineEvent::StepFinished {
            version: "20250101T090100".into(),
            name: "accounts".into(),
            status: StepState::Applied,
            counts,
            duration_ms: 50,
            dry_run: true,
        }),
    );
    assert_eq!(s.dry_runs.get("20250101T090100"), Some(&counts));
    assert_eq!(s.migrations[1].state, StepState::Pending, "a dry run changes nothing");
    assert!(s.status.as_ref().is_some_and(|x| x.text.contains("would write 7")));
}

#[test]
fn pause_and_abort() {
    let mut s = running();
    assert_eq!(update(&mut s, ch('p')), vec![Command::Pause]);
    update(&mut s, Msg::Engine(EngineEvent::Paused { version: None }));
    assert!(s.run.as_ref().is_some_and(|r| r.paused));
    assert_eq!(update(&mut s, ch('p')), vec![Command::Resume]);
    // x asks first (holding the run while it asks), then aborts.
    assert_eq!(update(&mut s, ch('x')), vec![Command::HoldForAbortQuestion]);
    assert_eq!(update(&mut s, ch('y')), vec![Command::Abort]);
}

fn with_rejects() -> AppState {
    let mut s = AppState::new("clinic", "sqlite://target.db", t0());
    let mut snap = snapshot(two_steps());
    snap.migrations[1].state = StepState::Applied;
    snap.open_rejects = 2;
    snap.open_rejects_by_step = [("20250101T090100".to_string(), 2)].into();
    let cmds = update(&mut s, Msg::Engine(EngineEvent::Snapshot(Box::new(snap))));
    assert!(
        matches!(cmds.as_slice(), [Command::LoadRejects(r)] if r.at == PageAt::Offset(0)),
        "a snapshot reads the rejects page again: {cmds:?}"
    );
    answer_page(
        &mut s,
        0,
        vec![
            reject(1, "20250101T090100", "email", "open"),
            reject(2, "20250101T090100", "required", "open"),
            reject(3, "20250101T090000", "email", "resolved"),
        ],
        3,
    );
    update(&mut s, ch('3'));
    assert_eq!(s.focus, Pane::Rejects);
    s
}

/// The engine's answer to the console's latest page request.
fn answer_page(s: &mut AppState, offset: u64, rows: Vec<RejectSummary>, matching: u64) {
    let page = RejectPage {
        seq: s.reject_page.seq,
        filter: s.reject_filter.clone(),
        offset,
        rows,
        matching,
        open: matching,
        error: None,
    };
    update(s, Msg::Engine(EngineEvent::RejectPage(page)));
}

/// The filter of the page request among `cmds`, if there is one.
fn requested_filter(cmds: &[Command]) -> Option<String> {
    cmds.iter().find_map(|c| match c {
        Command::LoadRejects(r) => Some(r.filter.clone()),
        _ => None,
    })
}

#[test]
fn reject_filter_goes_to_the_store_query() {
    let mut s = with_rejects();
    update(&mut s, ch('/'));
    let mut last = Vec::new();
    for c in "accounts email".chars() {
        last = update(&mut s, ch(c));
    }
    // Each keystroke asks the store for the first page of what the filter matches.
    assert_eq!(requested_filter(&last).as_deref(), Some("accounts email"));
    update(&mut s, key(KeyCode::Enter));
    assert!(!s.filter_editing);
    assert_eq!(s.reject_filter, "accounts email");
    // Esc clears it and asks for the unfiltered first page.
    let cmds = update(&mut s, key(KeyCode::Esc));
    assert_eq!(requested_filter(&cmds).as_deref(), Some(""));
}

#[test]
fn retry_edit_and_export_rejects() {
    let mut s = with_rejects();
    update(&mut s, ch('j'));
    assert_eq!(s.selected_reject().map(|r| r.id), Some(2));
    update(&mut s, ch('r'));
    assert_eq!(
        update(&mut s, ch('y')),
        vec![Command::Retry {
            id: Some(2),
            step: None
        }]
    );
    update(&mut s, ch('R'));
    assert_eq!(
        update(&mut s, ch('y')),
        vec![Command::Retry {
            id: None,
            step: Some("20250101T090100".into())
        }]
    );

    // e chooses the failing field; the operator types the value alone.
    update(&mut s, ch('e'));
    match &s.dialog {
        Some(Dialog::EditReject {
            id,
            fields,
            field,
            input,
        }) => {
            assert_eq!(*id, 2);
            assert_eq!(fields[*field].0, "email");
            assert_eq!(input, "", "nothing to delete before typing");
        }
        other => panic!("expected the edit dialog, got {other:?}"),
    }
    type_str(&mut s, "bob@example.com");
    let cmds = update(&mut s, key(KeyCode::Enter));
    assert_eq!(
        cmds,
        vec![Command::FixReject {
            id: 2,
            field: "email".into(),
            value: "bob@example.com".into()
        }]
    );

    // Esc leaves without a command.
    update(&mut s, ch('e'));
    type_str(&mut s, "x");
    assert!(update(&mut s, key(KeyCode::Esc)).is_empty());
    assert_eq!(s.dialog, None);

    // w: every matching row, exported by the engine from the store (not the page in memory).
    let cmds = update(&mut s, ch('w'));
    assert_eq!(
        cmds,
        vec![Command::ExportRejects {
            filter: String::new(),
            stamp: "20261121T230000".into()
        }]
    );
}

#[test]
fn panes_switch_with_tab_and_digits() {
    let mut s = loaded(two_steps());
    assert_eq!(s.focus, Pane::Migrations);
    update(&mut s, key(KeyCode::Tab));
    assert_eq!(s.focus, Pane::Progress);
    update(&mut s, key(KeyCode::BackTab));
    update(&mut s, key(KeyCode::BackTab));
    assert_eq!(s.focus, Pane::Verify, "shift-tab from 1 wraps to 6");
    update(&mut s, ch('1'));
    assert_eq!(s.focus, Pane::Migrations);
    update(&mut s, ch('?'));
    assert!(s.help);
    update(&mut s, key(KeyCode::Esc));
    assert!(!s.help);
}

#[test]
fn keymap_has_no_duplicate_keys_per_context() {
    for (i, a) in KEYMAP.iter().enumerate() {
        for b in &KEYMAP[i + 1..] {
            assert!(
                !(a.context == b.context && a.code == b.code && a.modifiers == b.modifiers),
                "{:?} {:?} is bound twice",
                a.context,
                a.code
            );
        }
    }
    // Every pane has help lines, and the help overlay lists the pane's own keys.
    for ctx in [
        Context::Migrations,
        Context::Rejects,
        Context::Log,
        Context::Progress,
        Context::Review,
        Context::Verify,
    ] {
        assert!(!keymap::help_lines(ctx).is_empty());
    }
    let k = KeyEvent::new(KeyCode::Char('R'), KeyModifiers::SHIFT);
    assert_eq!(keymap::lookup(Context::Rejects, &k), Some(Action::RetryStep));
}

#[test]
fn failures_and_notices_reach_the_status_line() {
    let mut s = running();
    update(
        &mut s,
        Msg::Engine(EngineEvent::Failed {
            version: Some("20250101T090100".into()),
            error: "UNIQUE constraint failed:\n accounts.email".into(),
            statement: None,
            source_key: None,
            column: None,
            counts: None,
        }),
    );
    let st = s.status.clone().expect("status");
    assert_eq!(st.level, StatusLevel::Error);
    assert_eq!(st.text, "accounts failed: UNIQUE constraint failed: accounts.email");
    assert_eq!(s.migrations[1].state, StepState::Failed);
    update(
        &mut s,
        Msg::Engine(EngineEvent::Retried {
            written: 1,
            still_rejected: 0,
            first_still_rejected: None,
            error: None,
        }),
    );
    assert_eq!(s.status.as_ref().map(|x| x.level), Some(StatusLevel::Info));
}

// ---- the review pane -----------------------------------------------------------------------

const MERGE: &str = "20250101T090300";

fn discrepancy(id: i64, entity: &str, field: &str, a: Option<&str>, b: Option<&str>, state: &str) -> Discrepancy {
    Discrepancy {
        id,
        step: MERGE.into(),
        entity_table: "people".into(),
        entity_id: entity.into(),
        field: field.into(),
        values: [a.map(String::from), b.map(String::from)],
        sides: ["patients".into(), "children".into()],
        keys: [format!("p{entity}"), format!("c{entity}")],
        state: state.into(),
        decision: (state == "decided").then(|| "take_a".into()),
        value_applied: None,
        reviewer: (state == "decided").then(|| "alice".into()),
        decided_at: None,
        note: None,
    }
}

fn queue() -> Vec<Discrepancy> {
    vec![
        discrepancy(11, "7", "phone", Some("555-0101"), Some("555-0199"), "open"),
        discrepancy(12, "7", "email", Some("ann@x.org"), None, "open"),
        discrepancy(13, "8", "last_name", Some("Smith"), Some("Smyth"), "decided"),
        discrepancy(14, "9", "phone", Some("555-0400"), Some("555-0401"), "open"),
    ]
}

fn review_snapshot(discrepancies: Vec<Discrepancy>, locked: bool) -> Snapshot {
    let mut snap = snapshot(two_steps());
    snap.discrepancies = discrepancies;
    if locked {
        snap.locked_by = Some(LockHolder {
            owner: "alice".into(),
            host: "ops1".into(),
            pid: 999,
            command: "up".into(),
            since: "2026-11-21T22:58:00Z".into(),
            heartbeat_age_secs: 2,
        });
    }
    snap
}

/// The review pane in front, with the queue above.
fn reviewing() -> AppState {
    let mut s = loaded(two_steps());
    update(
        &mut s,
        Msg::Engine(EngineEvent::Snapshot(Box::new(review_snapshot(queue(), false)))),
    );
    update(&mut s, ch('5'));
    assert_eq!(s.focus, Pane::Review);
    s
}

fn decide(id: i64, decision: &str, note: Option<&str>) -> Command {
    Command::Decide {
        id,
        decision: decision.into(),
        note: note.map(String::from),
    }
}

fn selected_id(s: &AppState) -> Option<i64> {
    s.selected_discrepancy().map(|d| d.id)
}

#[test]
fn review_a_on_the_selected_open_discrepancy_takes_a_and_moves_on() {
    let mut s = reviewing();
    // Open only by default; the first open one is selected.
    let shown: Vec<i64> = s.shown_discrepancies().iter().map(|d| d.id).collect();
    assert_eq!(shown, vec![11, 12, 14]);
    assert_eq!(selected_id(&s), Some(11));
    // One key per ordinary decision: the selection moves to the next open one.
    assert_eq!(update(&mut s, ch('a')), vec![decide(11, "a", None)]);
    assert_eq!(selected_id(&s), Some(12));
    assert!(s.is_deciding(11));
    assert_eq!(update(&mut s, ch('b')), vec![decide(12, "b", None)]);
    assert_eq!(selected_id(&s), Some(14));
    // The engine answers, then a snapshot without them open: the selection stays.
    for (id, label) in [(11, "take_a"), (12, "take_b")] {
        update(
            &mut s,
            Msg::Engine(EngineEvent::Decided {
                id,
                decision: label.into(),
                applied: true,
                message: format!("discrepancy {id}: phone = x ({label})"),
            }),
        );
    }
    assert_eq!(s.status.as_ref().map(|x| x.level), Some(StatusLevel::Info));
    let mut q = queue();
    q[0].state = "decided".into();
    q[1].state = "decided".into();
    update(
        &mut s,
        Msg::Engine(EngineEvent::Snapshot(Box::new(review_snapshot(q, false)))),
    );
    assert!(s.deciding.is_empty());
    assert_eq!(selected_id(&s), Some(14));
    assert_eq!(s.review_counts(), (1, 3, 0));
    // The last open one: nothing left to move to.
    assert_eq!(update(&mut s, ch('a')), vec![decide(14, "a", None)]);
    assert_eq!(selected_id(&s), Some(14));
    assert!(s.status.as_ref().is_some_and(|x| x.text.contains("no other open")));
}

#[test]
fn review_selection_advances_to_the_next_open_one_and_wraps() {
    let mut s = reviewing();
    // v shows all; j/k walk the whole list.
    update(&mut s, ch('v'));
    assert_eq!(s.shown_discrepancies().len(), 4);
    update(&mut s, ch('j'));
    update(&mut s, ch('j'));
    assert_eq!(selected_id(&s), Some(13), "a decided one can be selected with v");
    // Re-deciding a decided one asks first, then goes to the next open one after it.
    assert!(
        update(&mut s, ch('b')).is_empty(),
        "a decided one is not re-decided at once"
    );
    assert!(matches!(
        s.dialog,
        Some(Dialog::Confirm {
            action: ConfirmAction::Redecide { id: 13, .. },
            ..
        })
    ));
    assert_eq!(update(&mut s, ch('y')), vec![decide(13, "b", None)]);
    assert_eq!(selected_id(&s), Some(14));
    // From the end it wraps to the first open one not already on its way.
    assert_eq!(update(&mut s, ch('a')), vec![decide(14, "a", None)]);
    assert_eq!(selected_id(&s), Some(11));
    update(&mut s, ch('k'));
    assert_eq!(selected_id(&s), Some(11), "k stops at the top");
    update(&mut s, ch('v'));
    assert!(!s.review_all);
}

#[test]
fn review_s_asks_then_splits() {
    let mut s = reviewing();
    assert!(update(&mut s, ch('s')).is_empty());
    match &s.dialog {
        Some(Dialog::Confirm {
            action: ConfirmAction::Split { id },
            title,
            lines,
        }) => {
            assert_eq!(*id, 11);
            assert!(title.contains("children c7"), "{title}");
            assert!(lines.iter().any(|l| l.contains("void")), "{lines:?}");
        }
        other => panic!("expected the split confirmation, got {other:?}"),
    }
    // No cancels.
    assert!(update(&mut s, ch('n')).is_empty());
    assert!(s.dialog.is_none());
    update(&mut s, ch('s'));
    assert_eq!(update(&mut s, ch('y')), vec![decide(11, "split", None)]);
    // The split voids the other open discrepancy of the same records: skipped as well.
    assert!(s.is_deciding(12));
    assert_eq!(selected_id(&s), Some(14));
}

#[test]
fn review_e_sends_the_typed_value() {
    let mut s = reviewing();
    assert!(update(&mut s, ch('e')).is_empty());
    assert!(matches!(s.dialog, Some(Dialog::DecideValue { id: 11, .. })));
    // Keys are text now: a and b do not decide.
    assert!(type_str(&mut s, "555-0").is_empty());
    update(&mut s, key(KeyCode::Backspace));
    assert!(type_str(&mut s, "0100 ab").is_empty());
    assert_eq!(
        update(&mut s, key(KeyCode::Enter)),
        vec![decide(11, "value=555-0100 ab", None)]
    );
    assert!(s.dialog.is_none());
    assert_eq!(selected_id(&s), Some(12));
    // An empty value is not sent; the dialog stays.
    update(&mut s, ch('e'));
    assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
    assert!(matches!(s.dialog, Some(Dialog::DecideValue { id: 12, .. })));
    update(&mut s, key(KeyCode::Esc));
    assert!(s.dialog.is_none());
}

#[test]
fn review_nothing_is_sent_while_locked_or_running() {
    let mut s = loaded(two_steps());
    update(
        &mut s,
        Msg::Engine(EngineEvent::Snapshot(Box::new(review_snapshot(queue(), true)))),
    );
    update(&mut s, ch('5'));
    for c in ['a', 'b', 'e', 's', 'U'] {
        assert!(update(&mut s, ch(c)).is_empty(), "{c} sent something");
        assert!(s.dialog.is_none(), "{c} opened a dialog");
        let status = s.status.as_ref().expect("status");
        assert!(status.text.contains("read-only"), "{c}: {status:?}");
    }
    assert_eq!(selected_id(&s), Some(11), "nothing moved");

    // A split confirmed just before the lock arrived is not sent either.
    let mut s = reviewing();
    update(&mut s, ch('s'));
    update(
        &mut s,
        Msg::Engine(EngineEvent::Snapshot(Box::new(review_snapshot(queue(), true)))),
    );
    assert!(update(&mut s, ch('y')).is_empty());

    // Nor while a run is in progress.
    let mut s = running();
    update(
        &mut s,
        Msg::Engine(EngineEvent::Snapshot(Box::new(review_snapshot(queue(), false)))),
    );
    update(&mut s, ch('5'));
    assert!(update(&mut s, ch('a')).is_empty());
    assert!(s.status.as_ref().is_some_and(|x| x.text.contains("run is in progress")));
}

#[test]
fn review_note_goes_with_the_next_decision_only() {
    let mut s = reviewing();
    update(&mut s, ch('c'));
    assert!(matches!(s.dialog, Some(Dialog::ReviewNote { .. })));
    type_str(&mut s, "same phone, typo in B");
    assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
    assert_eq!(s.review_note.as_deref(), Some("same phone, typo in B"));
    assert_eq!(
        update(&mut s, ch('a')),
        vec![decide(11, "a", Some("same phone, typo in B"))]
    );
    assert_eq!(s.review_note, None);
    assert_eq!(update(&mut s, ch('a')), vec![decide(12, "a", None)]);
}

#[test]
fn review_u_undoes_the_last_decision_after_asking() {
    let mut s = reviewing();
    update(&mut s, ch('U'));
    assert!(
        s.status
            .as_ref()
            .is_some_and(|x| x.text.contains("no decision to undo"))
    );
    update(&mut s, ch('a'));
    update(
        &mut s,
        Msg::Engine(EngineEvent::Decided {
            id: 11,
            decision: "a".into(),
            applied: true,
            message: "discrepancy 11: phone = 555-0101 (take_a)".into(),
        }),
    );
    // U asks (it writes to a discrepancy that may no longer be on screen)… but only once the
    // snapshot shows the decision made.
    let mut q = queue();
    q[0].state = "decided".into();
    q[0].decision = Some("take_a".into());
    q[0].value_applied = Some("555-0101".into());
    update(
        &mut s,
        Msg::Engine(EngineEvent::Snapshot(Box::new(review_snapshot(q, false)))),
    );
    assert!(update(&mut s, ch('U')).is_empty());
    match &s.dialog {
        Some(Dialog::Confirm {
            action: ConfirmAction::UndoDecision { id },
            lines,
            ..
        }) => {
            assert_eq!(*id, 11);
            assert!(lines.iter().any(|l| l.contains("555-0101")), "{lines:?}");
            assert!(lines.iter().any(|l| l.contains("value from before")), "{lines:?}");
        }
        other => panic!("expected the undo confirmation, got {other:?}"),
    }
    // Yes: a real undo, not the other side.
    assert_eq!(update(&mut s, ch('y')), vec![Command::UndoDecision { id: 11 }]);
    // Refused by the engine: the decision can still be undone.
    update(
        &mut s,
        Msg::Engine(EngineEvent::Decided {
            id: 11,
            decision: "undo".into(),
            applied: false,
            message: "discrepancy 11: phone changed after the decision".into(),
        }),
    );
    assert_eq!(s.last_decision.as_ref().map(|d| d.id), Some(11));
    update(&mut s, ch('U'));
    assert_eq!(update(&mut s, ch('y')), vec![Command::UndoDecision { id: 11 }]);
    update(
        &mut s,
        Msg::Engine(EngineEvent::Decided {
            id: 11,
            decision: "undo".into(),
            applied: true,
            message: "discrepancy 11: take_a undone".into(),
        }),
    );
    // Done: nothing left to undo in this session.
    assert!(update(&mut s, ch('U')).is_empty());
    assert!(s.dialog.is_none());
    assert!(
        s.status
            .as_ref()
            .is_some_and(|x| x.text.contains("no decision to undo"))
    );
}

#[test]
fn review_a_refused_decision_brings_back_the_selection_and_the_note() {
    let mut s = reviewing();
    update(&mut s, ch('c'));
    type_str(&mut s, "checked");
    update(&mut s, key(KeyCode::Enter));
    update(&mut s, ch('e'));
    type_str(&mut s, "not a phone");
    update(&mut s, key(KeyCode::Enter));
    assert_eq!(selected_id(&s), Some(12));
    update(
        &mut s,
        Msg::Engine(EngineEvent::Decided {
            id: 11,
            decision: "value".into(),
            applied: false,
            message: "discrepancy 11: 'not a phone' is not a valid phone: bad format".into(),
        }),
    );
    let status = s.status.clone().expect("status");
    assert_eq!(status.level, StatusLevel::Error);
    assert!(status.text.starts_with("not applied:"), "{status:?}");
    assert_eq!(selected_id(&s), Some(11));
    assert_eq!(s.review_note.as_deref(), Some("checked"));
    // Nothing of this session to undo: the refused one does not count.
    update(&mut s, ch('U'));
    assert!(
        s.status
            .as_ref()
            .is_some_and(|x| x.text.contains("no decision to undo"))
    );
    // A notice about discrepancy 1 is not an answer about 11 or 12.
    update(&mut s, ch('a'));
    update(
        &mut s,
        Msg::Engine(EngineEvent::Decided {
            id: 1,
            decision: "a".into(),
            applied: true,
            message: "discrepancy 1: something".into(),
        }),
    );
    assert!(s.is_deciding(11));
}

#[test]
fn review_keys_leave_n_and_p_global_and_tab_reaches_the_pane() {
    let k = |c: char| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
    assert_eq!(keymap::lookup(Context::Review, &k('n')), Some(Action::RunNext));
    assert_eq!(keymap::lookup(Context::Review, &k('p')), Some(Action::PauseResume));
    assert_eq!(keymap::lookup(Context::Review, &k('a')), Some(Action::TakeA));
    assert_eq!(
        keymap::lookup(Context::Review, &k('5')),
        Some(Action::Focus(Pane::Review))
    );
    let shift = KeyEvent::new(KeyCode::Char('U'), KeyModifiers::SHIFT);
    assert_eq!(keymap::lookup(Context::Review, &shift), Some(Action::UndoDecision));
    // The only global key a pane takes over is `A` (run all, one shift from `a` take A) in the
    // review pane, where it is refused; the help overlay marks "run all" as not working there.
    let mut shadowed = Vec::new();
    for b in KEYMAP.iter().filter(|b| b.context != Context::Global) {
        if KEYMAP
            .iter()
            .any(|g| g.context == Context::Global && g.code == b.code && g.modifiers == b.modifiers)
            && matches!(
                b.context,
                Context::Migrations
                    | Context::Progress
                    | Context::Rejects
                    | Context::Log
                    | Context::Review
                    | Context::Verify
            )
        {
            shadowed.push((b.context, b.code));
        }
    }
    assert_eq!(shadowed, vec![(Context::Review, KeyCode::Char('A'))]);
    assert!(keymap::shadowed(Context::Review, Action::RunAll));
    assert!(!keymap::shadowed(Context::Review, Action::RunNext));
    assert!(!keymap::help_lines(Context::Review).is_empty());
    assert!(keymap::help_lines(Context::Review).iter().any(|l| l.keys == "U"));

    // Tab follows the pane numbers: 3 Rejects, 4 Log, 5 Review, 6 Verify, then 1 again.
    let mut s = with_rejects();
    let mut order = vec![s.focus.number()];
    for _ in 0..6 {
        update(&mut s, key(KeyCode::Tab));
        order.push(s.focus.number());
    }
    assert_eq!(order, vec![3, 4, 5, 6, 1, 2, 3]);
    assert_eq!(
        s.middle,
        Pane::Rejects,
        "the grid shows the last of rejects/review/verify focused"
    );
}

#[test]
fn review_enter_shows_the_whole_discrepancy() {
    let mut s = reviewing();
    update(&mut s, key(KeyCode::Enter));
    match &s.dialog {
        Some(Dialog::Details { title, lines, .. }) => {
            assert_eq!(title, "Discrepancy 11");
            assert!(lines.iter().any(|l| l.contains("patients p7: 555-0101")), "{lines:?}");
            assert!(lines.iter().any(|l| l.contains("children c7: 555-0199")), "{lines:?}");
        }
        other => panic!("expected details, got {other:?}"),
    }
}

// ---- the verify pane -----------------------------------------------------------------------

fn check(name: &str, kind: CheckKind, ok: bool, source: Option<i64>, target: Option<i64>) -> Check {
    Check {
        name: name.into(),
        kind,
        ok,
        source: source.map(Measure::Int),
        target: target.map(Measure::Int),
        detail: format!("{name}: {}", if ok { "equal" } else { "differ" }),
        explained: None,
        not_checked: None,
    }
}

/// Five checks in the engine's order; the 2nd and 4th fail.
fn report_with_two_failing() -> VerifyReport {
    VerifyReport::new(vec![
        check("no step failed or running", CheckKind::Ledger, true, None, Some(0)),
        check("accounts = users", CheckKind::Expect, false, Some(182), Some(181)),
        check(
            "accounting 20250101T090100_accounts",
            CheckKind::Accounting,
            true,
            Some(10),
            Some(10),
        ),
        check("account emails", CheckKind::Checksum, false, Some(1), Some(2)),
        check("foreign keys accounts", CheckKind::ForeignKeys, true, None, Some(0)),
    ])
}

fn finished(ok: bool, outcome: Outcome) -> Msg {
    Msg::Engine(EngineEvent::Finished {
        run_id: "r1".into(),
        operation: Operation::Up,
        ok,
        outcome,
        steps_done: 1,
        dry_run: false,
    })
}

fn count_verify(cmds: &[Command]) -> usize {
    cmds.iter().filter(|c| **c == Command::Verify).count()
}

#[test]
fn verify_v_sends_verify_once_and_says_verifying() {
    let mut s = loaded(two_steps());
    assert_eq!(update(&mut s, ch('V')), vec![Command::Verify]);
    assert!(s.verify.verifying());
    assert_eq!(s.verify.since, Some(t0()));
    let status = s.status.clone().expect("status");
    assert!(status.text.contains("verifying"), "{status:?}");
    // A second V while the first is on its way sends nothing more.
    assert!(update(&mut s, ch('V')).is_empty());
    assert_eq!(s.verify.in_flight, 1);
    assert!(s.status.as_ref().is_some_and(|x| x.text.contains("already verifying")));
    // V works from every pane, the review pane too (its own `v` is another key).
    update(&mut s, Msg::Engine(EngineEvent::Verified(report_with_two_failing())));
    for pane in ['1', '2', '3', '4', '5', '6'] {
        update(&mut s, ch(pane));
        assert_eq!(update(&mut s, ch('V')), vec![Command::Verify], "from pane {pane}");
        update(&mut s, Msg::Engine(EngineEvent::Verified(report_with_two_failing())));
    }
    let k = KeyEvent::new(KeyCode::Char('V'), KeyModifiers::SHIFT);
    assert_eq!(keymap::lookup(Context::Verify, &k), Some(Action::Verify));
    assert_eq!(keymap::lookup(Context::Review, &k), Some(Action::Verify));
}

#[test]
fn verify_is_allowed_while_another_process_holds_the_lock_but_not_during_our_run() {
    let mut s = loaded(two_steps());
    let mut snap = snapshot(two_steps());
    snap.locked_by = Some(LockHolder {
        owner: "alice".into(),
        host: "ops1".into(),
        pid: 999,
        command: "up".into(),
        since: "2026-11-21T22:58:00Z".into(),
        heartbeat_age_secs: 2,
    });
    update(&mut s, Msg::Engine(EngineEvent::Snapshot(Box::new(snap))));
    assert!(update(&mut s, ch('n')).is_empty(), "writes are refused");
    assert_eq!(update(&mut s, ch('V')), vec![Command::Verify], "verify only reads");

    // While this console's own run writes, the checks would see it half done.
    let mut s = running();
    assert!(update(&mut s, ch('V')).is_empty());
    assert!(!s.verify.verifying());
    assert!(s.status.as_ref().is_some_and(|x| x.text.contains("run is in progress")));
}

#[test]
fn verify_runs_once_after_a_run_of_all_pending_steps_ends_well() {
    let mut s = loaded(two_steps());
    update(&mut s, ch('A'));
    assert_eq!(update(&mut s, ch('y')), vec![Command::Start(RunOptions::default())]);
    let cmds = update(&mut s, finished(true, Outcome::Done));
    assert_eq!(cmds, vec![Command::Refresh, Command::Verify]);
    assert!(s.verify.verifying());
    let status = s.status.clone().expect("status");
    assert!(
        status.text.contains("run finished") && status.text.contains("verifying…"),
        "{status:?}"
    );
    // The snapshot that follows does not verify again.
    let cmds = update(
        &mut s,
        Msg::Engine(EngineEvent::Snapshot(Box::new(snapshot(two_steps())))),
    );
    assert_eq!(count_verify(&cmds), 0);
    // The answer ends "verifying…".
    update(&mut s, Msg::Engine(EngineEvent::Verified(report_with_two_failing())));
    assert!(!s.verify.verifying());
}

#[test]
fn verify_does_not_run_after_other_runs() {
    // A failed or aborted run of all steps.
    for (ok, outcome) in [
        (false, Outcome::Failed),
        (false, Outcome::Aborted),
        (false, Outcome::Locked),
    ] {
        let mut s = loaded(two_steps());
        update(&mut s, ch('a'));
        update(&mut s, ch('y'));
        assert_eq!(
            update(&mut s, finished(ok, outcome)),
            vec![Command::Refresh],
            "{outcome}"
        );
        assert!(!s.verify.verifying());
    }
    // `n` runs one step only.
    let mut s = running();
    assert_eq!(update(&mut s, finished(true, Outcome::Done)), vec![Command::Refresh]);
    // A dry run commits nothing.
    let mut s = loaded(two_steps());
    update(&mut s, ch('d'));
    let cmds = update(
        &mut s,
        Msg::Engine(EngineEvent::Finished {
            run_id: "r2".into(),
            operation: Operation::Up,
            ok: true,
            outcome: Outcome::Done,
            steps_done: 1,
            dry_run: true,
        }),
    );
    assert_eq!(count_verify(&cmds), 0);
    // Quitting while the run of all steps ends: leave, do not start checking.
    let mut s = loaded(two_steps());
    update(&mut s, ch('a'));
    update(&mut s, ch('y'));
    update(&mut s, ctrl('c'));
    assert_eq!(update(&mut s, finished(true, Outcome::Done)), vec![Command::Refresh]);
}

#[test]
fn verified_fills_the_verify_pane_failing_checks_first() {
    let mut s = loaded(two_steps());
    update(&mut s, ch('V'));
    let later = t0() + chrono::Duration::seconds(4);
    update(&mut s, Msg::Tick(later));
    let cmds = update(&mut s, Msg::Engine(EngineEvent::Verified(report_with_two_failing())));
    assert!(cmds.is_empty());
    let v = &s.verify;
    assert!(!v.verifying());
    assert_eq!(v.since, None);
    assert_eq!(v.at, Some(later), "the time of the answer, from the injected clock");
    assert_eq!(v.passed(), Some((3, 5)));
    let report = v.report.as_ref().expect("a report");
    let order: Vec<(&str, bool)> = report.checks.iter().map(|c| (c.name.as_str(), c.ok)).collect();
    assert_eq!(
        order,
        vec![
            ("accounts = users", false),
            ("account emails", false),
            ("no step failed or running", true),
            ("accounting 20250101T090100_accounts", true),
            ("foreign keys accounts", true),
        ],
        "failing first, otherwise in the engine's order"
    );
    assert_eq!(v.selected_check().map(|c| c.name.as_str()), Some("accounts = users"));
    let status = s.status.clone().expect("status");
    assert_eq!(status.level, StatusLevel::Error);
    assert!(
        status.text.contains("3 of 5 checks passed") && status.text.contains("2 FAILED"),
        "{status:?}"
    );

    // The pane: j/k move through the checks, enter shows one whole.
    update(&mut s, ch('6'));
    assert_eq!(s.focus, Pane::Verify);
    update(&mut s, ch('j'));
    update(&mut s, ch('j'));
    update(&mut s, ch('k'));
    assert_eq!(s.verify.selected, 1);
    update(&mut s, ch('G'));
    assert_eq!(s.verify.selected, 4);
    update(&mut s, ch('g'));
    update(&mut s, key(KeyCode::Enter));
    match &s.dialog {
        Some(Dialog::Details { title, lines, .. }) => {
            assert!(title.contains("accounts = users"), "{title}");
            let text = lines.join("\n");
            assert!(
                text.contains("FAIL") && text.contains("182") && text.contains("181"),
                "{text}"
            );
        }
        other => panic!("expected the check's details, got {other:?}"),
    }

    // All passing: an info line.
    let mut s = loaded(two_steps());
    update(&mut s, ch('V'));
    let all_ok = VerifyReport::new(vec![check("x", CheckKind::Ledger, true, None, Some(0))]);
    update(&mut s, Msg::Engine(EngineEvent::Verified(all_ok)));
    let status = s.status.clone().expect("status");
    assert_eq!(status.level, StatusLevel::Info);
    assert!(status.text.contains("all 1 checks passed"), "{status:?}");
}

#[test]
fn verify_that_cannot_run_says_why_and_stops_verifying() {
    let mut s = loaded(two_steps());
    update(&mut s, ch('V'));
    update(
        &mut s,
        Msg::Engine(EngineEvent::Unverified {
            message: "verify could not run: verify.toml: unknown field `expects`".into(),
        }),
    );
    assert!(!s.verify.verifying());
    assert!(s.verify.error.as_deref().is_some_and(|e| e.contains("unknown field")));
    assert_eq!(s.status.as_ref().map(|x| x.level), Some(StatusLevel::Error));
    // V again is allowed, and a report clears the error.
    assert_eq!(update(&mut s, ch('V')), vec![Command::Verify]);
    update(&mut s, Msg::Engine(EngineEvent::Verified(report_with_two_failing())));
    assert_eq!(s.verify.error, None);
}

/// A rejected accounts row whose failing field is `role`, with a secret column.
fn with_secret_reject() -> AppState {
    let mut s = loaded(two_steps());
    let snap = snapshot(two_steps());
    update(&mut s, Msg::Engine(EngineEvent::Snapshot(Box::new(snap))));
    let rows = vec![RejectSummary {
        field: Some("role".into()),
        rule: "map".into(),
        reason: "role 'nurse' is not mapped".into(),
        row: vec![
            ("id".into(), "u7".into()),
            ("email".into(), "ann@example.com".into()),
            ("role".into(), "nurse".into()),
            ("password_hash".into(), "<redacted>".into()),
        ],
        ..reject(7, "20250101T090100", "map", "open")
    }];
    answer_page(&mut s, 0, rows, 1);
    update(&mut s, ch('3'));
    s
}

fn edit_dialog(s: &AppState) -> (String, String) {
    match &s.dialog {
        Some(Dialog::EditReject {
            fields, field, input, ..
        }) => (fields[*field].0.clone(), input.clone()),
        other => panic!("expected the edit dialog, got {other:?}"),
    }
}

/// Issue 8, item 10: `password_hash=NEWSECRET123` typed in the dialog opened on `role` set
/// `role` to the whole text. Now the text is the value of the field shown, and the CLI's
/// FIELD=VALUE form typed there is refused, without echoing the secret.
#[test]
fn the_fix_dialog_sets_exactly_the_field_shown() {
    let mut s = with_secret_reject();
    update(&mut s, ch('e'));
    assert_eq!(keymap::active_context(&s), Context::FixField);
    assert_eq!(edit_dialog(&s), ("role".into(), String::new()));

    type_str(&mut s, "password_hash=NEWSECRET123");
    assert!(
        update(&mut s, key(KeyCode::Enter)).is_empty(),
        "FIELD=VALUE in the value is refused"
    );
    let status = s.status.clone().expect("a warning");
    assert_eq!(status.level, StatusLevel::Warn);
    assert!(status.text.contains("tab chooses password_hash"), "{}", status.text);
    assert!(
        !status.text.contains("NEWSECRET123"),
        "the refused value is not echoed: {}",
        status.text
    );
    assert_eq!(edit_dialog(&s).0, "role", "still open on role");

    // tab moves to the next field and clears what was typed (a secret is never shown under
    // another field's name); shift-tab and ↑/↓ move too, wrapping around.
    update(&mut s, key(KeyCode::Tab));
    assert_eq!(edit_dialog(&s), ("password_hash".into(), String::new()));
    update(&mut s, key(KeyCode::Down));
    assert_eq!(edit_dialog(&s).0, "id");
    update(&mut s, key(KeyCode::BackTab));
    update(&mut s, key(KeyCode::Up));
    update(&mut s, key(KeyCode::Down));
    assert_eq!(edit_dialog(&s).0, "password_hash");

    // j and k are text here, not movement.
    type_str(&mut s, "NEWSECRET123jk");
    update(&mut s, key(KeyCode::Backspace));
    update(&mut s, key(KeyCode::Backspace));
    let cmds = update(&mut s, key(KeyCode::Enter));
    assert_eq!(
        cmds,
        vec![Command::FixReject {
            id: 7,
            field: "password_hash".into(),
            value: "NEWSECRET123".into()
        }]
    );
    assert_eq!(s.dialog, None);
    let status = s.status.clone().expect("a status");
    assert_eq!(status.text, "reject 7: setting password_hash (secret, not shown)…");
    assert!(!status.text.contains("NEWSECRET"));
}

#[test]
fn the_fix_dialog_refuses_its_own_field_name_and_sets_null_when_empty() {
    let mut s = with_secret_reject();
    update(&mut s, ch('e'));
    type_str(&mut s, "role=parent");
    assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
    assert!(
        s.status.as_ref().is_some_and(|x| x.text.contains("without 'role='")),
        "{:?}",
        s.status
    );
    // A value that merely contains '=' is a value.
    for _ in 0.."role=parent".len() {
        update(&mut s, key(KeyCode::Backspace));
    }
    type_str(&mut s, "a=b");
    assert_eq!(
        update(&mut s, key(KeyCode::Enter)),
        vec![Command::FixReject {
            id: 7,
            field: "role".into(),
            value: "a=b".into()
        }]
    );
    // Empty sets NULL, as `cutover rejects fix 7 role=` does, and the status says so.
    update(&mut s, ch('e'));
    assert_eq!(
        update(&mut s, key(KeyCode::Enter)),
        vec![Command::FixReject {
            id: 7,
            field: "role".into(),
            value: String::new()
        }]
    );
    assert!(s.status.as_ref().is_some_and(|x| x.text.contains("to NULL")));
}

#[test]
fn the_fix_dialog_is_documented_in_the_keymap() {
    let lines = keymap::help_lines(Context::FixField);
    let text: Vec<String> = lines.iter().map(|l| format!("{} {}", l.keys, l.help)).collect();
    for want in [
        "enter set the field",
        "esc cancel",
        "tab, ↓ next field",
        "shift-tab, ↑ previous field",
    ] {
        assert!(text.iter().any(|t| t == want), "{want} not in {text:?}");
    }
}

/// The engine hands the console (and its CSV export) secret columns already redacted.
#[test]
fn secret_columns_reach_the_console_redacted() {
    use cutover::engine::store::RejectRecord;
    let record = RejectRecord {
        id: 1,
        run_id: "r".into(),
        step: "20250101T090100".into(),
        source_table: "users".into(),
        source_key: "u1".into(),
        row: serde_json::json!({
            "id": "u1",
            "password_hash": "$2b$12$abcdefghijklmnopqrstuv",
            "api_token": "tok-123",
            "client_secret": "s3cr3t",
            "pin_hash": "9999",
            "role": "nurse"
        }),
        field: Some("role".into()),
        rule: "map".into(),
        reason: "role 'nurse' is not mapped".into(),
        level: "error".into(),
        waits_for_table: None,
        waits_for_key: None,
        state: "open".into(),
        created_at: "2026-11-21T23:00:00Z".into(),
        resolved_at: None,
    };
    let summary = RejectSummary::from(&record);
    let row: std::collections::BTreeMap<_, _> = summary.row.iter().cloned().collect();
    for secret in ["password_hash", "api_token", "client_secret", "pin_hash"] {
        assert_eq!(row[secret], "<redacted>", "{secret}");
    }
    assert_eq!(row["role"], "nurse");
    assert_eq!(row["id"], "u1");
}

// ---- the rejects pane pages through the store (issue 11, item 1) ---------------------------

/// The page request among `cmds`: where it starts.
fn requested_page(cmds: &[Command]) -> Option<PageAt> {
    cmds.iter().find_map(|c| match c {
        Command::LoadRejects(r) => Some(r.at),
        _ => None,
    })
}

/// 50 rejects with ids from `offset + 1`.
fn page_rows(offset: u64, n: u64) -> Vec<RejectSummary> {
    (offset + 1..=offset + n)
        .map(|id| reject(id as i64, "20250101T090100", "email", "open"))
        .collect()
}

/// The rejects pane on the first page of 7 383 rejects.
fn paged() -> AppState {
    let mut s = loaded(two_steps());
    update(&mut s, ch('3'));
    // The store holds 7 383 rejects.
    answer_page(&mut s, 0, page_rows(0, 50), 7383);
    s
}

#[test]
fn rejects_pages_move_through_the_whole_store() {
    let mut s = paged();
    assert_eq!(s.reject_page.shown_range(s.rejects.len()), Some((1, 50)));

    // pgdn: the next page, first row selected when it arrives.
    let cmds = update(&mut s, key(KeyCode::PageDown));
    assert_eq!(requested_page(&cmds), Some(PageAt::Offset(50)));
    answer_page(&mut s, 50, page_rows(50, 50), 7383);
    assert_eq!((s.reject_page.offset, s.selected_reject), (50, 0));
    assert_eq!(s.selected_reject().map(|r| r.id), Some(51));

    // ↑ on the first row of a page: the previous page, its last row selected.
    let cmds = update(&mut s, ch('k'));
    assert_eq!(requested_page(&cmds), Some(PageAt::Offset(0)));
    answer_page(&mut s, 0, page_rows(0, 50), 7383);
    assert_eq!(s.selected_reject().map(|r| r.id), Some(50));
    // ↓ on the last row of a page: the next one.
    let cmds = update(&mut s, ch('j'));
    assert_eq!(requested_page(&cmds), Some(PageAt::Offset(50)));
    answer_page(&mut s, 50, page_rows(50, 50), 7383);
    assert_eq!(s.selected_reject().map(|r| r.id), Some(51));

    // end: the last page of all, its last row selected: 7 351–7 383.
    let cmds = update(&mut s, key(KeyCode::End));
    assert_eq!(requested_page(&cmds), Some(PageAt::Last));
    answer_page(&mut s, 7350, page_rows(7350, 33), 7383);
    assert_eq!(s.reject_page.shown_range(s.rejects.len()), Some((7351, 7383)));
    assert_eq!(s.selected_reject().map(|r| r.id), Some(7383));
    // Nothing after the last row: ↓ and pgdn stay.
    assert!(update(&mut s, ch('j')).is_empty());
    assert!(update(&mut s, key(KeyCode::PageDown)).is_empty());
    // home: the first page again.
    assert_eq!(
        requested_page(&update(&mut s, key(KeyCode::Home))),
        Some(PageAt::Offset(0))
    );
}

#[test]
fn a_late_page_of_an_older_request_is_dropped() {
    let mut s = paged();
    update(&mut s, ch('/'));
    let old_seq = s.reject_page.seq;
    type_str(&mut s, "x");
    // The answer to the request before the filter changed arrives after it.
    let late = RejectPage {
        seq: old_seq,
        filter: String::new(),
        offset: 50,
        rows: page_rows(50, 50),
        matching: 7383,
        open: 7383,
        error: None,
    };
    update(&mut s, Msg::Engine(EngineEvent::RejectPage(late)));
    assert_eq!(s.reject_page.offset, 0, "the late page is not shown");
    answer_page(&mut s, 0, page_rows(0, 2), 2);
    assert_eq!((s.reject_page.matching, s.rejects.len()), (2, 2));
    assert_eq!(s.reject_page.filter, "x");
}

#[test]
fn rejects_during_a_run_reload_the_page_a_few_times_a_second_at_most() {
    let mut s = paged();
    let t1 = t0() + chrono::Duration::seconds(5);
    update(&mut s, Msg::Tick(t1));
    let rejected = |i: u32| {
        Msg::Engine(EngineEvent::Rejected {
            version: "20250101T090100".into(),
            source_table: "users".into(),
            source_key: format!("u{i}"),
            rule: "email".into(),
            reason: "not an email".into(),
        })
    };
    // The first reject reads the page again; the next hundred in the same instant do not.
    let first = update(&mut s, rejected(0));
    assert_eq!(requested_page(&first), Some(PageAt::Offset(0)));
    let burst: Vec<Command> = (1..=100).flat_map(|i| update(&mut s, rejected(i))).collect();
    assert!(burst.is_empty(), "no flood: {} requests", burst.len());
    answer_page(&mut s, 0, page_rows(0, 50), 7384);
    // A tick inside the throttle sends nothing; the first one after it reads once.
    assert!(update(&mut s, Msg::Tick(t1 + chrono::Duration::milliseconds(250))).is_empty());
    let later = update(&mut s, Msg::Tick(t1 + chrono::Duration::milliseconds(500)));
    assert_eq!(requested_page(&later), Some(PageAt::Offset(0)));
    assert!(update(&mut s, Msg::Tick(t1 + chrono::Duration::milliseconds(1250))).is_empty());
    answer_page(&mut s, 0, page_rows(0, 50), 7484);
    assert_eq!(s.reject_page.matching, 7484);
    // Nothing changed since: no more reads.
    assert!(update(&mut s, Msg::Tick(t1 + chrono::Duration::seconds(3))).is_empty());
}

// ---- the fix dialog never takes FIELD=VALUE silently (issue 11, item 12) ---------------------

#[test]
fn the_fix_dialog_refuses_field_assignments_in_any_spelling_and_says_what_it_sets() {
    let mut s = with_secret_reject();
    update(&mut s, ch('e'));
    assert_eq!(edit_dialog(&s).0, "role");
    // The CLI's syntax with spaces or another case, for this field or another one.
    for typed in ["role = parent", "ROLE=parent", "email=ann@x.org"] {
        type_str(&mut s, typed);
        assert!(update(&mut s, key(KeyCode::Enter)).is_empty(), "{typed:?} is refused");
        let status = s.status.clone().expect("a status");
        assert_eq!(status.level, StatusLevel::Warn, "{typed:?}: {status:?}");
        assert!(
            !status.text.contains("parent") && !status.text.contains("ann@"),
            "never echoed"
        );
        assert!(
            matches!(s.dialog, Some(Dialog::EditReject { .. })),
            "the dialog stays open"
        );
        for _ in 0..typed.len() {
            update(&mut s, key(KeyCode::Backspace));
        }
    }
    // A plain value goes through, and the status names the field and both values.
    type_str(&mut s, "parent");
    assert_eq!(
        update(&mut s, key(KeyCode::Enter)),
        vec![Command::FixReject {
            id: 7,
            field: "role".into(),
            value: "parent".into()
        }]
    );
    let status = s.status.clone().expect("a status");
    assert_eq!(status.text, "reject 7: setting role from \"nurse\" to \"parent\"…");
}

// ---- issue 11 item 2: a refused rollback and "roll back to here" ----------------------------

fn clinic_three() -> Vec<StepSummary> {
    vec![
        step("20250101T090100", "accounts", StepKind::Data, "applied"),
        step("20250101T090200", "persons", StepKind::Merge, "applied"),
        step("20250101T090300", "child_views", StepKind::Data, "applied"),
    ]
}

fn consequences(version: &str, name: &str, kind: StepKind) -> cutover::engine::protocol::views::StepRollback {
    cutover::engine::protocol::views::StepRollback {
        table: Some(name.into()),
        rows_deleted: 10,
        decided_discrepancies: 2,
        notes: 1,
        ..cutover::engine::protocol::views::StepRollback::new(version.into(), name.into(), kind)
    }
}

/// The engine's answer for persons while child_views is applied after it.
fn persons_refused(to_here: Option<DownTarget>) -> RollbackPreview {
    RollbackPreview {
        version: "20250101T090200".into(),
        name: "persons".into(),
        kind: StepKind::Merge,
        lines: consequences("20250101T090200", "persons", StepKind::Merge).lines(),
        refused: Some("1 later step applied after it must be rolled back first: 20250101T090300_child_views".into()),
        steps: vec![
            consequences("20250101T090300", "child_views", StepKind::Data),
            consequences("20250101T090200", "persons", StepKind::Merge),
        ],
        later: vec!["20250101T090300_child_views".into()],
        to_here,
    }
}

fn rollback_dialog_on_persons(preview: RollbackPreview) -> AppState {
    let mut s = loaded(clinic_three());
    s.selected_step = 1;
    let cmds = update(&mut s, ch('u'));
    assert_eq!(
        cmds,
        vec![Command::PreviewRollback {
            version: "20250101T090200".into()
        }]
    );
    update(&mut s, Msg::Engine(EngineEvent::RollbackPreview(preview)));
    s
}

#[test]
fn refused_rollback_never_takes_the_name_and_offers_to_here() {
    let mut s = rollback_dialog_on_persons(persons_refused(Some(DownTarget::To("20250101T090100".into()))));
    // Typing the name while refused rolls nothing back: enter chooses "to here" first.
    let mut cmds = type_str(&mut s, "persons");
    cmds.extend(update(&mut s, key(KeyCode::Enter)));
    assert!(
        !cmds.iter().any(|c| matches!(c, Command::Rollback { .. })),
        "refused: {cmds:?}"
    );
    match &s.dialog {
        Some(Dialog::Rollback { to_here, typed, .. }) => {
            assert!(*to_here, "enter chose roll back to here");
            assert!(typed.is_empty(), "the name is asked for afresh: {typed:?}");
        }
        other => panic!("the dialog stays open in 'to here' mode: {other:?}"),
    }
    // A wrong name does not roll back either.
    let mut cmds = type_str(&mut s, "person");
    cmds.extend(update(&mut s, key(KeyCode::Enter)));
    assert!(cmds.is_empty(), "{cmds:?}");
    assert_eq!(s.status.as_ref().map(|x| x.level), Some(StatusLevel::Warn));
    // The exact name rolls back to here: the engine's `down --to` the step before persons.
    type_str(&mut s, "s");
    let cmds = update(&mut s, key(KeyCode::Enter));
    assert_eq!(
        cmds,
        vec![Command::Rollback {
            target: DownTarget::To("20250101T090100".into()),
            dry_run: false
        }]
    );
    assert!(s.dialog.is_none());
    assert!(s.running());
}

#[test]
fn refused_rollback_without_a_way_on_only_says_why() {
    let mut s = rollback_dialog_on_persons(persons_refused(None));
    let mut cmds = type_str(&mut s, "persons");
    cmds.extend(update(&mut s, key(KeyCode::Enter)));
    assert!(cmds.is_empty(), "{cmds:?}");
    assert!(s.dialog.is_none());
    let status = s.status.as_ref().expect("a status line");
    assert_eq!(status.level, StatusLevel::Error);
    assert!(status.text.contains("child_views"), "{}", status.text);
}

#[test]
fn a_rollback_that_ends_well_is_verified() {
    let mut s = loaded(clinic_three());
    s.selected_step = 2;
    update(&mut s, ch('u'));
    update(
        &mut s,
        Msg::Engine(EngineEvent::RollbackPreview(RollbackPreview {
            version: "20250101T090300".into(),
            name: "child_views".into(),
            kind: StepKind::Data,
            lines: vec![],
            refused: None,
            steps: vec![],
            later: vec![],
            to_here: None,
        })),
    );
    type_str(&mut s, "child_views");
    let cmds = update(&mut s, key(KeyCode::Enter));
    assert_eq!(
        cmds,
        vec![Command::Rollback {
            target: DownTarget::Only("20250101T090300".into()),
            dry_run: false
        }]
    );
    let cmds = update(
        &mut s,
        Msg::Engine(EngineEvent::Finished {
            run_id: "r".into(),
            operation: Operation::Down,
            ok: true,
            outcome: Outcome::Done,
            steps_done: 1,
            dry_run: false,
        }),
    );
    assert!(cmds.contains(&Command::Verify), "{cmds:?}");
}

/// The review pane reads the selected discrepancy's two whole records once per pair, on the
/// clock (scrolling reads only where it stops), and keeps only the answer to the last request.
#[test]
fn review_records_are_read_once_per_pair_on_the_tick() {
    let mut s = reviewing();
    // The review's commands only (the rejects pane has its own reads on the clock).
    let tick = |s: &mut AppState, ms: i64| -> Vec<Command> {
        update(s, Msg::Tick(t0() + chrono::Duration::milliseconds(ms)))
            .into_iter()
            .filter(|c| matches!(c, Command::LoadReviewRecords { .. }))
            .collect()
    };
    assert_eq!(tick(&mut s, 250), vec![Command::LoadReviewRecords { id: 11 }]);
    assert!(tick(&mut s, 500).is_empty(), "asked once");
    // 12 is between the same two records as 11: nothing to read.
    update(&mut s, ch('j'));
    assert_eq!(selected_id(&s), Some(12));
    assert!(tick(&mut s, 750).is_empty());
    // 14 is another pair; j twice between ticks reads only where the selection stops.
    update(&mut s, ch('j'));
    update(&mut s, ch('k'));
    update(&mut s, ch('j'));
    assert_eq!(tick(&mut s, 1000), vec![Command::LoadReviewRecords { id: 14 }]);
    // A late answer for 11 is dropped; the answer for 14 is kept and shown for 14.
    let records = |id: i64, entity: &str| {
        Msg::Engine(EngineEvent::ReviewRecords(Box::new(ReviewRecords {
            id,
            step: MERGE.into(),
            entity_id: entity.into(),
            keys: [format!("p{entity}"), format!("c{entity}")],
            ..Default::default()
        })))
    };
    update(&mut s, records(11, "7"));
    assert!(s.selected_records().is_none(), "an older answer is not shown");
    update(&mut s, records(14, "9"));
    assert_eq!(s.selected_records().map(|r| r.id), Some(14));
    // Another pane in front: nothing is read.
    update(&mut s, ch('3'));
    update(&mut s, ch('5'));
    update(&mut s, ch('3'));
    s.selected_discrepancy = Some(11);
    assert!(tick(&mut s, 1250).is_empty(), "review not shown");
}

// ---- issue 11 (items 3, 4): interrupted steps; the abort question holds the run ----

#[test]
fn the_abort_question_holds_the_run_and_no_lets_it_go_on() {
    let mut s = running();
    assert_eq!(
        update(&mut s, ch('x')),
        vec![Command::HoldForAbortQuestion],
        "x holds the run at its next batch boundary while it asks"
    );
    assert!(matches!(
        &s.dialog,
        Some(Dialog::Confirm {
            action: ConfirmAction::Abort,
            ..
        })
    ));
    // The step reached its boundary and stopped there, under the question.
    update(&mut s, Msg::Engine(EngineEvent::Paused { version: None }));
    let status = s.status.clone().expect("a status line");
    assert!(status.text.contains("held at a batch boundary"), "{status:?}");
    assert_eq!(
        update(&mut s, ch('n')),
        vec![Command::ReleaseAbortQuestion],
        "n lets the run go on"
    );
    assert!(s.dialog.is_none());
    assert!(s.run.as_ref().is_some_and(|r| !r.abort_question && !r.aborting));
    update(&mut s, Msg::Engine(EngineEvent::Resumed { version: None }));
    assert!(s.run.as_ref().is_some_and(|r| !r.paused));
}

#[test]
fn esc_on_the_abort_question_also_releases_the_hold() {
    let mut s = running();
    update(&mut s, ch('x'));
    assert_eq!(update(&mut s, key(KeyCode::Esc)), vec![Command::ReleaseAbortQuestion]);
}

#[test]
fn yes_after_the_run_ended_under_the_question_says_so() {
    let mut s = running();
    update(&mut s, ch('x'));
    // The last batch had already passed its boundary: the run ends under the dialog.
    update(
        &mut s,
        Msg::Engine(EngineEvent::Finished {
            run_id: "r1".into(),
            operation: Operation::Up,
            ok: true,
            outcome: Outcome::Done,
            steps_done: 1,
            dry_run: false,
        }),
    );
    assert!(update(&mut s, ch('y')).is_empty());
    let status = s.status.clone().expect("a status line");
    assert!(status.text.contains("already ended"), "{status:?}");
}

#[test]
fn p_twice_before_the_boundary_takes_the_pause_back() {
    let mut s = running();
    assert_eq!(update(&mut s, ch('p')), vec![Command::Pause]);
    // No `Paused` yet: the step has not reached its boundary. A second p resumes.
    assert_eq!(update(&mut s, ch('p')), vec![Command::Resume]);
    assert_eq!(update(&mut s, ch('p')), vec![Command::Pause]);
}

#[test]
fn an_aborted_step_is_interrupted_and_its_details_say_what_resumes_it() {
    let mut s = running();
    update(&mut s, ch('x'));
    update(&mut s, ch('y'));
    let counts = Counts {
        source: 400,
        written: 398,
        rejected: 2,
        ..Counts::default()
    };
    update(
        &mut s,
        Msg::Engine(EngineEvent::Aborted {
            version: "20250101T090100".into(),
            counts,
        }),
    );
    assert_eq!(s.migrations[1].state, StepState::Interrupted);
    assert_eq!(s.migrations[1].state.as_str(), "interrupted");
    // `n` runs it again: an interrupted data step resumes.
    update(
        &mut s,
        Msg::Engine(EngineEvent::Finished {
            run_id: "r1".into(),
            operation: Operation::Up,
            ok: false,
            outcome: Outcome::Aborted,
            steps_done: 0,
            dry_run: false,
        }),
    );
    assert_eq!(s.next_pending().map(|m| m.version.as_str()), Some("20250101T090100"));
    s.selected_step = 1;
    update(&mut s, key(KeyCode::Enter));
    match &s.dialog {
        Some(Dialog::Details { lines, .. }) => {
            assert!(lines.iter().any(|l| l.contains("state       interrupted")), "{lines:?}");
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("resumes it from its last checkpoint") && l.contains("400")),
                "{lines:?}"
            );
        }
        other => panic!("expected the step details, got {other:?}"),
    }
}

// ---- issue 11 (item 5): the source rows of pending steps are counted at start and on refresh ----

#[test]
fn refresh_counts_the_sources_again_and_the_counts_land_in_the_state() {
    let mut s = loaded(two_steps());
    assert_eq!(update(&mut s, ctrl('r')), vec![Command::Refresh, Command::CountSources]);
    assert!(s.counting_sources);
    update(
        &mut s,
        Msg::Engine(EngineEvent::SourceCounts {
            rows: vec![("20250101T090100".into(), 12_345)],
            errors: Vec::new(),
        }),
    );
    assert!(!s.counting_sources);
    assert_eq!(s.source_rows.get("20250101T090100"), Some(&12_345));
    let est = cutover::console::eta::estimate(&s);
    assert_eq!((est.rows_left, est.unknown_steps), (12_345, 0));
}

// ---- issue 11 (item 12): a schema dry run lists its statements; details say reads/writes/waits ----

#[test]
fn a_schema_dry_run_says_the_statements_it_would_run() {
    let mut s = loaded(vec![
        step("20250101T090000", "schema", StepKind::Schema, "pending"),
        step("20250101T090100", "accounts", StepKind::Data, "pending"),
    ]);
    assert_eq!(update(&mut s, ch('d')).len(), 1);
    for (i, sql) in ["CREATE TABLE accounts (id TEXT)", "CREATE INDEX a_id ON accounts (id)"]
        .iter()
        .enumerate()
    {
        update(
            &mut s,
            Msg::Engine(EngineEvent::Statement {
                version: "20250101T090000".into(),
                index: i + 1,
                sql: sql.to_string(),
            }),
        );
    }
    update(
        &mut s,
        Msg::Engine(EngineEvent::StepFinished {
            version: "20250101T090000".into(),
            name: "schema".into(),
            status: StepState::Applied,
            counts: Counts::default(),
            duration_ms: 3,
            dry_run: true,
        }),
    );
    let status = s.status.clone().expect("a status line");
    assert!(
        status
            .text
            .contains("would run 2 statements: CREATE TABLE accounts (id TEXT)"),
        "{status:?}"
    );
    assert!(!status.text.contains("would write 0"), "{status:?}");
    update(&mut s, key(KeyCode::Enter));
    match &s.dialog {
        Some(Dialog::Details { lines, .. }) => {
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("2. CREATE INDEX a_id ON accounts (id)")),
                "{lines:?}"
            );
        }
        other => panic!("expected the step details, got {other:?}"),
    }
}

#[test]
fn step_details_say_what_a_step_reads_writes_and_waits_for() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clinic");
    let project =
        cutover::engine::project::Project::load(&fixture, &Default::default()).expect("the clinic fixture loads");
    let infos = cutover::console::step_infos(&project);
    let grants = infos.get("20250101T090600").expect("access_grants");
    assert!(grants.target.contains("table"), "{grants:?}");
    assert_eq!(
        grants.waits_for,
        [
            "20250101T090000 create_v2_schema",
            "20250101T090100 accounts",
            "20250101T090200 persons"
        ],
        "the schema step creates its table; accounts fills the users map, persons the patients map"
    );
    let persons = infos.get("20250101T090200").expect("persons");
    assert!(
        persons.source.contains("(A)") && persons.source.contains("(B)"),
        "{persons:?}"
    );
    let mut s = loaded(vec![step(
        "20250101T090600",
        "access_grants",
        StepKind::Data,
        "pending",
    )]);
    s.step_info = infos;
    update(&mut s, key(KeyCode::Enter));
    match &s.dialog {
        Some(Dialog::Details { lines, .. }) => {
            for want in [
                "reads       table",
                "writes      table",
                "waits for   20250101T090000 create_v2_schema",
            ] {
                assert!(lines.iter().any(|l| l.contains(want)), "{want} not in {lines:?}");
            }
        }
        other => panic!("expected the step details, got {other:?}"),
    }
}

// ---- The import pane (`i`) ----

const IMPORT_CSV: &str = "patient_first_name,birth_date,Email Address,phone_number,sex,MRN#,notes\n\
Ann,1985-03-14,ann@example.com,(415) 555-2671,F,mrn001,hi\n\
Bo,3/4/1990,bo@x.org,415-555-2672,m,MRN002,\n";

/// The engine's answer to a preview of IMPORT_CSV into the scenario's patients table.
fn import_report(file: &str, into: &str) -> cutover::engine::preview::PreviewReport {
    use cutover::engine::preview::{PreviewReport, TargetColumn, preview_file, suggest};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(file);
    std::fs::write(&path, IMPORT_CSV).expect("csv");
    let preview = preview_file(&path, &Default::default(), 5).expect("preview");
    let targets: Vec<TargetColumn> = [
        ("date_of_birth", "date"),
        ("email", "text"),
        ("first_name", "text"),
        ("gender", "text"),
        ("id", "text"),
        ("mrn", "text"),
        ("notes", "text"),
        ("phone", "text"),
    ]
    .iter()
    .map(|(n, t)| TargetColumn {
        name: (*n).into(),
        sql_type: (*t).into(),
    })
    .collect();
    PreviewReport {
        file: file.into(),
        into: Some(into.into()),
        suggestions: suggest(&preview, &targets),
        targets: Some(targets),
        preview: Some(preview),
        error: None,
    }
}

/// The pane open on a preview of `renamed.csv` into patients.
fn import_mapping() -> AppState {
    let mut s = loaded(two_steps());
    assert_eq!(update(&mut s, ch('i')), vec![Command::ListImportFiles]);
    update(
        &mut s,
        Msg::Engine(EngineEvent::ImportFiles {
            folder: Some("/data/export".into()),
            files: vec!["orders.xlsx".into(), "renamed.csv".into()],
            error: None,
        }),
    );
    update(&mut s, ch('j'));
    assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
    // The table is asked for, the file's stem offered.
    assert_eq!(
        s.import.as_ref().and_then(|i| i.editing.clone()).map(|(_, t)| t),
        Some("renamed".to_string())
    );
    for _ in 0.."renamed".len() {
        update(&mut s, key(KeyCode::Backspace));
    }
    type_str(&mut s, "patients");
    let cmds = update(&mut s, key(KeyCode::Enter));
    assert_eq!(
        cmds,
        vec![Command::PreviewFile {
            file: "renamed.csv".into(),
            sheet: None,
            into: Some("patients".into()),
            rows: 5,
        }]
    );
    update(
        &mut s,
        Msg::Engine(EngineEvent::Preview(Box::new(import_report("renamed.csv", "patients")))),
    );
    s
}

fn row_target(s: &AppState, column: &str) -> Option<String> {
    s.import
        .as_ref()
        .and_then(|i| i.rows.iter().find(|r| r.suggestion.column == column))
        .and_then(|r| r.suggestion.target.clone())
}

fn select_row(s: &mut AppState, column: &str) {
    let i = s
        .import
        .as_ref()
        .and_then(|i| i.rows.iter().position(|r| r.suggestion.column == column))
        .expect("row");
    update(s, key(KeyCode::Home));
    for _ in 0..i {
        update(s, ch('j'));
    }
}

#[test]
fn import_pane_shows_the_suggested_mapping() {
    let s = import_mapping();
    let import = s.import.as_ref().expect("open");
    assert_eq!(import.stage, cutover::console::state::ImportStage::Mapping);
    assert_eq!(keymap::active_context(&s), Context::Import);
    for (col, target) in [
        ("patient_first_name", "first_name"),
        ("birth_date", "date_of_birth"),
        ("Email Address", "email"),
        ("phone_number", "phone"),
        ("sex", "gender"),
        ("MRN#", "mrn"),
    ] {
        assert_eq!(row_target(&s, col).as_deref(), Some(target), "{col}");
    }
}

#[test]
fn import_pane_edits_a_target_column_once_per_table() {
    let mut s = import_mapping();
    select_row(&mut s, "notes");
    update(&mut s, ch('e'));
    assert_eq!(keymap::active_context(&s), Context::ImportInput);
    for _ in 0.."notes".len() {
        update(&mut s, key(KeyCode::Backspace));
    }
    // Not a column of the table: refused, the line stays open.
    type_str(&mut s, "nope");
    update(&mut s, key(KeyCode::Enter));
    assert!(
        s.import
            .as_ref()
            .and_then(|i| i.error.clone())
            .is_some_and(|e| e.contains("no column 'nope'"))
    );
    assert_eq!(keymap::active_context(&s), Context::ImportInput);
    for _ in 0..4 {
        update(&mut s, key(KeyCode::Backspace));
    }
    type_str(&mut s, "gender");
    update(&mut s, key(KeyCode::Enter));
    assert_eq!(row_target(&s, "notes").as_deref(), Some("gender"));
    assert_eq!(row_target(&s, "sex"), None, "gender is taken by one column only");
    assert!(
        s.status
            .as_ref()
            .is_some_and(|st| st.text.contains("sex no longer goes there"))
    );
}

#[test]
fn import_pane_edits_transforms_and_refuses_unknown_ones() {
    let mut s = import_mapping();
    select_row(&mut s, "notes");
    update(&mut s, ch('t'));
    let current = s.import.as_ref().and_then(|i| i.editing.clone()).map(|(_, t)| t);
    assert_eq!(current.as_deref(), Some("[\"trim\", \"empty_to_null\"]"));
    let n = current.map_or(0, |c| c.chars().count());
    for _ in 0..n {
        update(&mut s, key(KeyCode::Backspace));
    }
    type_str(&mut s, "trim, shout");
    update(&mut s, key(KeyCode::Enter));
    assert!(
        s.import.as_ref().and_then(|i| i.error.clone()).is_some(),
        "an unknown transform is refused"
    );
    for _ in 0.."shout".len() {
        update(&mut s, key(KeyCode::Backspace));
    }
    type_str(&mut s, "upper");
    update(&mut s, key(KeyCode::Enter));
    let row = s
        .import
        .as_ref()
        .and_then(|i| i.rows.iter().find(|r| r.suggestion.column == "notes").cloned())
        .expect("row");
    use cutover::engine::transform::Transform;
    assert_eq!(row.suggestion.transforms, vec![Transform::Trim, Transform::Upper]);
    assert!(row.edited);
}

#[test]
fn import_pane_dry_runs_and_saves_the_edited_step() {
    use cutover::engine::data::spec::DataStep;
    let mut s = import_mapping();
    select_row(&mut s, "notes");
    update(&mut s, ch('e'));
    for _ in 0.."notes".len() {
        update(&mut s, key(KeyCode::Backspace));
    }
    update(&mut s, key(KeyCode::Enter)); // empty: left out
    let cmds = update(&mut s, ch('d'));
    let [Command::DryRunImport { name, step }] = cmds.as_slice() else {
        panic!("{cmds:?}");
    };
    assert_eq!(name, "patients");
    let parsed = DataStep::parse(step).unwrap_or_else(|e| panic!("{e}\n{step}"));
    assert_eq!(parsed.target.table, "patients");
    assert!(
        parsed.fields.iter().all(|f| f.target != "notes"),
        "the edit is in the step:\n{step}"
    );
    assert!(
        parsed
            .fields
            .iter()
            .any(|f| f.target == "mrn" && f.source.as_deref() == Some("MRN#"))
    );

    update(
        &mut s,
        Msg::Engine(EngineEvent::ImportDryRun {
            report: cutover::engine::protocol::StepDryRun {
                ok: true,
                counts: Some(Counts {
                    source: 2,
                    written: 1,
                    skipped: 0,
                    rejected: 1,
                    merged: 0,
                    warnings: 0,
                }),
                rejects: vec![("3".into(), "date".into(), "date '3/4/1990x' is not a date".into())],
                errors: Vec::new(),
            },
            error: None,
        }),
    );
    let status = s.status.clone().expect("status");
    assert!(status.text.contains("would write 1, reject 1"), "{}", status.text);

    update(&mut s, ch('s'));
    let cmds = update(&mut s, key(KeyCode::Enter));
    let [Command::SaveImportStep { name, step: saved }] = cmds.as_slice() else {
        panic!("{cmds:?}");
    };
    assert_eq!(name, "patients");
    assert_eq!(saved, step, "the saved step is the one dry-run");
    update(
        &mut s,
        Msg::Engine(EngineEvent::ImportSaved {
            path: "migrations/20261121T231000_patients".into(),
            error: None,
        }),
    );
    assert!(
        s.status
            .as_ref()
            .is_some_and(|st| st.text.contains("20261121T231000_patients/step.toml"))
    );
}

#[test]
fn import_pane_drops_a_late_preview_and_esc_goes_back_then_closes() {
    let mut s = import_mapping();
    let before = s.import.clone();
    update(
        &mut s,
        Msg::Engine(EngineEvent::Preview(Box::new(import_report("other.csv", "patients")))),
    );
    assert_eq!(s.import, before, "an answer for another file changes nothing");
    update(&mut s, key(KeyCode::Esc));
    assert_eq!(
        s.import.as_ref().map(|i| i.stage),
        Some(cutover::console::state::ImportStage::Files)
    );
    update(&mut s, key(KeyCode::Esc));
    assert!(s.import.is_none());
    assert_eq!(keymap::active_context(&s), Context::Migrations);
    // While open, the global write keys do nothing: `n` is not "run next" there.
    let mut s = import_mapping();
    assert!(update(&mut s, ch('n')).is_empty());
    assert!(s.dialog.is_none());
}

/// An assess report of one pending data step: `rows` source rows, `ms` estimated.
fn assessed(version: &str, rows: u64, ms: u64) -> EngineEvent {
    use cutover::engine::protocol::assess::{AssessReport, AssessStep};
    EngineEvent::Assessed(Box::new(AssessReport {
        sampled: None,
        estimated_ms: ms,
        estimate_basis: "assess".into(),
        steps: vec![AssessStep {
            version: version.into(),
            name: "accounts".into(),
            kind: StepKind::Data,
            target_table: Some("accounts".into()),
            source_rows: Some(rows),
            rows_read: rows,
            would_write: rows - 3,
            would_skip: 1,
            would_merge: 0,
            rejects_by_rule: [("email".to_string(), 2)].into_iter().collect(),
            warnings_by_rule: Default::default(),
            examples: Vec::new(),
            blank_rates: Default::default(),
            duplicate_keys: 1,
            unresolved_references: 0,
            estimated_ms: ms,
            error: None,
        }],
    }))
}

#[test]
fn f_opens_the_preflight_pane_which_asks_for_an_assess_once() {
    let mut s = loaded(two_steps());
    let cmds = update(&mut s, ch('F'));
    assert!(
        matches!(cmds.as_slice(), [Command::Assess { sample: None }]),
        "{cmds:?}"
    );
    assert!(s.assess.open);
    assert_eq!(keymap::active_context(&s), Context::Assess);
    // While it runs, `r` does not send a second one.
    assert!(update(&mut s, ch('r')).is_empty());
    update(&mut s, Msg::Engine(assessed("20250101T090100", 1000, 4000)));
    assert!(s.assess.since.is_none());
    assert_eq!(s.assess.report.as_ref().map(|r| r.steps.len()), Some(1));
    assert!(
        s.status.as_ref().unwrap().text.contains("997 rows would be written"),
        "{:?}",
        s.status
    );
    assert_eq!(s.assess.report.as_ref().map(|r| r.estimated_ms), Some(4000));
    // Closed and opened again: the report is kept, nothing is sent; `r` assesses again.
    update(&mut s, key(KeyCode::Esc));
    assert!(!s.assess.open);
    assert!(update(&mut s, ch('F')).is_empty());
    assert!(matches!(update(&mut s, ch('r')).as_slice(), [Command::Assess { .. }]));
    // A failure of the assess shows in the pane.
    update(
        &mut s,
        Msg::Engine(EngineEvent::Notice {
            level: cutover::engine::protocol::NoticeLevel::Error,
            message: "assess could not run: cannot connect".into(),
        }),
    );
    assert_eq!(s.assess.error.as_deref(), Some("assess could not run: cannot connect"));
    assert!(s.assess.since.is_none());
}

#[test]
fn a_in_the_review_pane_still_takes_side_a() {
    let mut s = loaded(two_steps());
    update(&mut s, ch('5'));
    let cmds = update(&mut s, ch('a'));
    assert!(!s.assess.open);
    assert!(!cmds.iter().any(|c| matches!(c, Command::Assess { .. })), "{cmds:?}");
}

#[test]
fn the_window_eta_uses_the_assessed_estimate_when_nothing_was_measured() {
    let mut s = loaded(two_steps());
    let before = cutover::console::eta::estimate(&s);
    assert_eq!(before.unknown_steps, 1);
    update(&mut s, Msg::Engine(assessed("20250101T090100", 10_000, 120_000)));
    let est = cutover::console::eta::estimate(&s);
    assert_eq!((est.unknown_steps, est.rows_left, est.secs), (0, 10_000, Some(120)));
    assert!(
        matches!(est.rate, Some((_, cutover::console::eta::RateSource::Assessed))),
        "{est:?}"
    );
    // A rate measured on this target (an applied step's) is better than the assess's estimate.
    let mut steps = two_steps();
    let mut done = step("20250101T080000", "older", StepKind::Data, "applied");
    done.counts.source = 1000;
    done.duration_ms = Some(1000);
    steps.insert(0, done);
    let mut s = loaded(steps);
    update(&mut s, Msg::Engine(assessed("20250101T090100", 10_000, 120_000)));
    assert_eq!(cutover::console::eta::estimate(&s).secs, Some(10));
}

/// The run-all confirmation offers `b`: back up the target first, and run only once the
/// backup is written.
#[test]
fn run_all_b_backs_up_first_then_runs() {
    let mut s = loaded(two_steps());
    update(&mut s, ch('A'));
    assert_eq!(keymap::active_context(&s), Context::ConfirmRunAll);
    let cmds = update(&mut s, ch('b'));
    assert_eq!(
        cmds,
        vec![Command::Backup { out: None }],
        "b backs up, it does not start yet"
    );
    assert!(s.dialog.is_none());
    assert!(s.running(), "no other write may start under the backup");
    let cmds = update(
        &mut s,
        Msg::Engine(EngineEvent::BackedUp {
            file: "/p/backups/20261121T230000.000Z.sqlite".into(),
            bytes: 4096,
            sha256: "ab".repeat(32),
            error: None,
        }),
    );
    assert_eq!(cmds, vec![Command::Start(RunOptions::default())]);
    assert!(
        s.run.as_ref().is_some_and(|r| r.all),
        "a run of all steps, verified at its end"
    );
    let status = s.status.as_ref().map(|st| st.text.clone()).unwrap_or_default();
    assert!(
        status.contains("backed up to /p/backups/20261121T230000.000Z.sqlite"),
        "{status}"
    );
}

#[test]
fn run_all_b_with_a_failed_backup_starts_nothing_and_says_why() {
    let mut s = loaded(two_steps());
    update(&mut s, ch('A'));
    update(&mut s, ch('b'));
    let cmds = update(
        &mut s,
        Msg::Engine(EngineEvent::BackedUp {
            file: String::new(),
            bytes: 0,
            sha256: String::new(),
            error: Some("pg_dump is not installed (not found on PATH)".into()),
        }),
    );
    assert!(cmds.is_empty(), "{cmds:?}");
    assert!(!s.running());
    let st = s.status.as_ref().expect("a status line");
    assert_eq!(st.level, StatusLevel::Error);
    assert!(
        st.text.contains("pg_dump is not installed") && st.text.contains("not started"),
        "{}",
        st.text
    );
}

#[test]
fn b_is_only_offered_by_the_run_all_confirmation() {
    let mut s = loaded(two_steps());
    update(&mut s, ch('n'));
    assert_eq!(keymap::active_context(&s), Context::Confirm);
    // In the run-next question b is no answer: the dialog closes and nothing is sent.
    let cmds = update(&mut s, ch('b'));
    assert!(cmds.is_empty(), "{cmds:?}");
    assert!(!s.running());
    assert!(
        keymap::help_lines(Context::ConfirmRunAll)
            .iter()
            .any(|h| h.keys == "b" && h.help.contains("back up"))
    );
    assert!(!keymap::help_lines(Context::Confirm).iter().any(|h| h.keys == "b"));
}

// ---- issue 13: incremental sync --------------------------------------------------------------

/// A `Synced` event moves the step's lag gauge (rows behind, oldest change, mark); the next
/// snapshot's own value replaces it.
#[test]
fn a_synced_event_moves_the_steps_lag() {
    let mut steps = two_steps();
    steps[1].state = StepState::Applied;
    steps[1].sync = Some(cutover::engine::protocol::views::SyncLag {
        lag_rows: 0,
        lag_seconds: None,
        mark: Some("2025-01-01 10:00:00".into()),
        synced_at: Some("2026-11-21T23:00:00Z".into()),
    });
    let mut s = loaded(steps);
    let cmds = update(
        &mut s,
        Msg::Engine(EngineEvent::Synced {
            version: "20250101T090100".into(),
            pass: 3,
            inserted: 1,
            updated: 2,
            deleted: 0,
            rejected: 0,
            lag_rows: 12,
            lag_seconds: Some(4.5),
            mark: Some("2025-01-01 10:00:05 / 17".into()),
        }),
    );
    assert!(cmds.is_empty(), "{cmds:?}");
    let lag = s.migrations[1].sync.clone().expect("the lag");
    assert_eq!(
        (
            lag.lag_rows,
            lag.lag_seconds,
            lag.mark.as_deref(),
            lag.synced_at.as_deref()
        ),
        (
            12,
            Some(4.5),
            Some("2025-01-01 10:00:05 / 17"),
            Some("2026-11-21T23:00:00Z")
        )
    );
    // A step without [sync] is left alone.
    assert!(s.migrations[0].sync.is_none());
}

/// With a synced step and no run of its own, the console reads the snapshot again every five
/// seconds, so the lag gauge follows a `cutover sync` running elsewhere.
#[test]
fn the_lag_gauge_follows_a_sync_running_elsewhere() {
    let tick = |s: &mut AppState, secs: i64| update(s, Msg::Tick(t0() + chrono::Duration::seconds(secs)));
    let refreshes = |cmds: &[Command]| cmds.iter().filter(|c| matches!(c, Command::Refresh)).count();
    // No step with a mark: no polling.
    let mut plain = loaded(two_steps());
    assert_eq!(refreshes(&tick(&mut plain, 10)), 0);
    let mut steps = two_steps();
    steps[1].sync = Some(cutover::engine::protocol::views::SyncLag::default());
    let mut s = loaded(steps);
    assert_eq!(refreshes(&tick(&mut s, 1)), 1);
    assert_eq!(refreshes(&tick(&mut s, 3)), 0, "not before five seconds");
    assert_eq!(refreshes(&tick(&mut s, 6)), 1);
    // A run of this console brings its own snapshots.
    let mut r = running();
    r.migrations[1].sync = Some(cutover::engine::protocol::views::SyncLag::default());
    assert_eq!(refreshes(&tick(&mut r, 100)), 0);
}

/// The first read of the target fails (a server still starting, a SQLite file locked for a
/// moment): the console tries again every few seconds until a snapshot arrives, instead of
/// showing "reading the target…" for good; once loaded, a failed refresh is not retried this way.
#[test]
fn a_failed_first_read_of_the_target_is_tried_again() {
    use cutover::engine::protocol::NoticeLevel;
    let mut s = AppState::new("clinic", "sqlite://target.db", t0());
    let unreadable = || {
        Msg::Engine(EngineEvent::Notice {
            level: NoticeLevel::Error,
            message:
                "cannot read the target: cannot connect to the target database sqlite://target.db: database is locked"
                    .into(),
        })
    };
    update(&mut s, unreadable());
    let at = |secs| Msg::Tick(t0() + chrono::Duration::seconds(secs));
    assert!(update(&mut s, at(1)).iter().all(|c| !matches!(c, Command::Refresh)));
    let cmds = update(&mut s, at(3));
    assert_eq!(
        cmds.iter().filter(|c| matches!(c, Command::Refresh)).count(),
        1,
        "{cmds:?}"
    );
    assert!(
        update(&mut s, at(4)).iter().all(|c| !matches!(c, Command::Refresh)),
        "asked once per failure"
    );
    // It fails again: asked again later.
    update(&mut s, unreadable());
    let cmds = update(&mut s, at(8));
    assert_eq!(
        cmds.iter().filter(|c| matches!(c, Command::Refresh)).count(),
        1,
        "{cmds:?}"
    );

    // Once a snapshot has arrived, a failed refresh only says so.
    let mut s = loaded(two_steps());
    update(&mut s, unreadable());
    let cmds = update(&mut s, at(10));
    assert!(cmds.iter().all(|c| !matches!(c, Command::Refresh)), "{cmds:?}");
}
