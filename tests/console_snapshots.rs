//! What the console draws, as text snapshots on ratatui's TestBackend. The clock, the pid and
//! every id are injected, so the screens are stable. Update with
//! `INSTA_UPDATE=always cargo test --test console_snapshots` and review the .snap diff.

use chrono::{DateTime, TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use cutover::console::state::{StepInfo, Window};
use cutover::console::{AppState, Msg, update, view};
use cutover::engine::ops::review::Discrepancy;
use cutover::engine::ops::snapshot::{RejectSummary, RollbackPreview, Snapshot, StepSummary};
use cutover::engine::ops::verify::{Check, CheckKind, Measure, VerifyReport};
use cutover::engine::project::StepKind;
use cutover::engine::protocol::Command;
use cutover::engine::protocol::StepState;
use cutover::engine::protocol::views::{RecordField, RejectPage, ReviewRecords};
use cutover::engine::protocol::{Counts, EngineEvent, Operation, Outcome, PlannedStep, Progress};
use cutover::engine::store::lock::LockHolder;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use tui_logger::{TuiWidgetEvent, TuiWidgetState};

const SCHEMA: &str = "20250101T090000";
const ACCOUNTS: &str = "20250101T090100";
const ORDERS: &str = "20250101T090200";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 23, 10, 0)
        .single()
        .expect("valid time")
}

fn window() -> Window {
    Window::parse("2026-11-21T22:00:00+00:00", "2026-11-22T02:00:00+00:00").expect("window")
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

fn counts(source: u64, written: u64, skipped: u64, rejected: u64) -> Counts {
    Counts {
        source,
        written,
        skipped,
        rejected,
        merged: 0,
        warnings: 1,
    }
}

fn migrations() -> Vec<StepSummary> {
    let mut schema = step(SCHEMA, "create_v2_schema", StepKind::Schema, "applied");
    schema.duration_ms = Some(140);
    vec![
        schema,
        step(ACCOUNTS, "accounts", StepKind::Data, "pending"),
        step(ORDERS, "orders", StepKind::Data, "pending"),
    ]
}

fn base() -> AppState {
    let mut s = AppState::new("clinic-v2", "sqlite://target.db", t0());
    s.own_pid = 4242;
    s.window = Some(window());
    s.step_info.insert(
        ACCOUNTS.into(),
        StepInfo {
            source: "table users on sqlite://legacy.db".into(),
            target: "table accounts on sqlite://target.db".into(),
            waits_for: vec!["20250101T090000 create_v2_schema".into()],
        },
    );
    s
}

fn with_snapshot(mut s: AppState, snap: Snapshot) -> AppState {
    update(&mut s, Msg::Engine(EngineEvent::Snapshot(Box::new(snap))));
    s
}

fn snap(migrations: Vec<StepSummary>) -> Snapshot {
    Snapshot {
        project: "clinic-v2".into(),
        target: "sqlite://target.db".into(),
        window_start: Some("2026-11-21T22:00:00+00:00".into()),
        window_end: Some("2026-11-22T02:00:00+00:00".into()),
        migrations,
        ..Default::default()
    }
}

fn ev(s: &mut AppState, e: EngineEvent) {
    update(s, Msg::Engine(e));
}

fn key(s: &mut AppState, code: KeyCode) {
    update(s, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

fn chars(s: &mut AppState, text: &str) {
    for c in text.chars() {
        key(s, KeyCode::Char(c));
    }
}

/// accounts running: 4 200 of 10 000 rows, with a rate history for the sparkline.
fn running() -> AppState {
    let mut s = with_snapshot(base(), snap(migrations()));
    key(&mut s, KeyCode::Char('n'));
    key(&mut s, KeyCode::Char('y'));
    ev(
        &mut s,
        EngineEvent::Planned {
            run_id: "run-1".into(),
            operation: Operation::Up,
            dry_run: false,
            steps: vec![
                PlannedStep {
                    version: ACCOUNTS.into(),
                    name: "accounts".into(),
                    kind: StepKind::Data,
                    rows_estimate: None,
                },
                PlannedStep {
                    version: ORDERS.into(),
                    name: "orders".into(),
                    kind: StepKind::Data,
                    rows_estimate: None,
                },
            ],
        },
    );
    ev(
        &mut s,
        EngineEvent::StepStarted {
            version: ACCOUNTS.into(),
            name: "accounts".into(),
            kind: StepKind::Data,
            dry_run: false,
        },
    );
    for i in 1..=42u64 {
        let rate = 800.0 + ((i * 37) % 11) as f64 * 40.0;
        let progress = Progress {
            step_index: 1,
            rows_done: i * 100,
            rows_total: 10_000,
            written: i * 100 - i * 2,
            skipped: i,
            rejected: i,
            merged: 0,
            warnings: i / 4,
            batches_done: i,
            batches_total: 100,
            rows_per_sec: rate,
            elapsed_ms: i * 120,
            batch_times: Default::default(),
        };
        ev(
            &mut s,
            EngineEvent::Progress {
                version: ACCOUNTS.into(),
                progress,
            },
        );
    }
    ev(
        &mut s,
        EngineEvent::Rejected {
            version: ACCOUNTS.into(),
            source_table: "users".into(),
            source_key: "u4117".into(),
            rule: "email".into(),
            reason: "'bob@' is not an email address".into(),
        },
    );
    // The snapshot the console reads while the step runs: the step `running` in the ledger and
    // its 42 rejects in the store, the last one the u4117 the event named.
    let mut m = migrations();
    m[1].state = StepState::Running;
    let mut sn = snap(m);
    sn.open_rejects = 42;
    let mut s = with_snapshot(s, sn);
    store_page(&mut s, running_rejects(), 42);
    show_logs(&[LOG_RUN, LOG_DATA]);
    s
}

/// The 42 rows the accounts step has rejected by 4 200 rows: one per 100, the last u4117.
fn running_rejects() -> Vec<RejectSummary> {
    (1..=42u64)
        .map(|i| {
            let key = format!("u{}", i * 100 - 83);
            if i % 2 == 0 {
                reject(
                    i as i64,
                    ACCOUNTS,
                    &key,
                    "email",
                    "email",
                    "'bob@' is not an email address",
                )
            } else {
                reject(
                    i as i64,
                    ACCOUNTS,
                    &key,
                    "role",
                    "enum",
                    "'janitor' is not one of parent, clinician, admin",
                )
            }
        })
        .collect()
}

fn failed() -> AppState {
    let mut s = running();
    show_logs(&[LOG_FAILED]);
    ev(
        &mut s,
        EngineEvent::Failed {
            version: Some(ACCOUNTS.into()),
            error: "reading users after u4117: the source closed the connection (retried for 60s)".into(),
            statement: None,
            source_key: None,
            column: None,
            counts: None,
        },
    );
    ev(
        &mut s,
        EngineEvent::Finished {
            run_id: "run-1".into(),
            operation: Operation::Up,
            ok: false,
            outcome: Outcome::Failed,
            steps_done: 0,
            dry_run: false,
        },
    );
    let mut m = migrations();
    m[1].state = StepState::Failed;
    m[1].duration_ms = Some(5040);
    m[1].counts = counts(4200, 4116, 42, 42);
    m[1].error = Some("reading users after u4117: the source closed the connection".into());
    // The step ran with continue_on_error: its 42 rejects stay in the store.
    let mut sn = snap(m);
    sn.open_rejects = 42;
    let mut s = with_snapshot(s, sn);
    store_page(&mut s, running_rejects(), 42);
    s
}

fn reject(id: i64, step: &str, key: &str, field: &str, rule: &str, reason: &str) -> RejectSummary {
    RejectSummary {
        id,
        step: step.into(),
        source_table: "users".into(),
        source_key: key.into(),
        field: Some(field.into()),
        rule: rule.into(),
        reason: reason.into(),
        level: "error".into(),
        state: "open".into(),
        waits_for: None,
        row: vec![
            ("id".into(), key.into()),
            (
                "email".into(),
                if field == "email" {
                    "bob@".into()
                } else {
                    "ann@example.com".into()
                },
            ),
            ("role".into(), "doctor".into()),
            ("phone".into(), "555-0100".into()),
            ("password_hash".into(), "<redacted>".into()),
        ],
    }
}

fn with_rejects() -> AppState {
    let mut m = migrations();
    m[1].state = StepState::Applied;
    m[1].duration_ms = Some(12_400);
    m[1].counts = counts(10_000, 9_990, 7, 3);
    let sn = snap(m);
    let rows = vec![
        reject(1, ACCOUNTS, "u17", "email", "email", "'bob@' is not an email address"),
        reject(
            2,
            ACCOUNTS,
            "u230",
            "role",
            "enum",
            "'janitor' is not one of parent, clinician, admin",
        ),
        RejectSummary {
            waits_for: Some("users u9".into()),
            ..reject(3, ORDERS, "o88", "account_id", "lookup", "no account for user u9 yet")
        },
    ];
    let mut s = with_snapshot(base(), sn);
    store_page(&mut s, rows, 3);
    key(&mut s, KeyCode::Char('3'));
    s
}

/// The engine's answer to the console's last page request: these rows, the first page of
/// `matching`, all of them open.
fn store_page(s: &mut AppState, rows: Vec<RejectSummary>, matching: u64) {
    let page = RejectPage {
        seq: s.reject_page.seq,
        filter: s.reject_filter.clone(),
        offset: 0,
        rows,
        matching,
        open: matching,
        error: None,
    };
    ev(s, EngineEvent::RejectPage(page));
}

// ---- the log pane ---------------------------------------------------------------------------
//
// tui-logger keeps one global log, so the lines of every scenario are logged once, each under
// its own target (as the engine's modules log), and a screen shows the targets of its scenario:
// what the console would have logged by then.

/// Every screen: the console's own start.
const LOG_CONSOLE: &str = "cutover::console";
/// From `n` + `y` on: the run and the step.
const LOG_RUN: &str = "cutover::engine::runner";
/// The data step's rejects, as they happen.
const LOG_DATA: &str = "cutover::engine::data";
/// The step's failure.
const LOG_FAILED: &str = "cutover::engine::exec";
/// `V`.
const LOG_VERIFY: &str = "cutover::engine::ops::verify";

/// The lines each scenario has logged, by target, in order.
const LOG_LINES: &[(&str, tracing::Level, &str)] = &[
    (
        LOG_CONSOLE,
        tracing::Level::INFO,
        "console logging started log=/srv/clinic-v2/cutover.log",
    ),
    (LOG_RUN, tracing::Level::INFO, "run run-1: up, 2 steps planned"),
    (
        LOG_RUN,
        tracing::Level::INFO,
        "step 20250101T090100 accounts started (data)",
    ),
    (
        LOG_DATA,
        tracing::Level::WARN,
        "users u4117 rejected: email — 'bob@' is not an email address",
    ),
    (
        LOG_FAILED,
        tracing::Level::ERROR,
        "accounts failed: reading users after u4117: the source closed the connection",
    ),
    (
        LOG_VERIFY,
        tracing::Level::INFO,
        "verify: checking sqlite://target.db against sqlite://legacy.db (read-only)",
    ),
];

fn log_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(tui_logger::TuiTracingSubscriberLayer);
        tracing::subscriber::set_global_default(subscriber).expect("the test's subscriber");
        tui_logger::set_default_level(tui_logger::LevelFilter::Trace);
        for (target, level, line) in LOG_LINES {
            // tracing wants a constant target and level at each call site.
            macro_rules! at {
                ($t:expr) => {
                    match *level {
                        tracing::Level::ERROR => tracing::error!(target: $t, "{line}"),
                        tracing::Level::WARN => tracing::warn!(target: $t, "{line}"),
                        _ => tracing::info!(target: $t, "{line}"),
                    }
                };
            }
            match *target {
                LOG_CONSOLE => at!("cutover::console"),
                LOG_RUN => at!("cutover::engine::runner"),
                LOG_DATA => at!("cutover::engine::data"),
                LOG_FAILED => at!("cutover::engine::exec"),
                _ => at!("cutover::engine::ops::verify"),
            }
        }
        tui_logger::move_events();
    });
}

thread_local! {
    /// The log targets this test's screens show (each test runs on its own thread).
    static SHOWN: std::cell::RefCell<Vec<&'static str>> = std::cell::RefCell::new(vec![LOG_CONSOLE]);
}

fn show_logs(targets: &[&'static str]) {
    SHOWN.with(|s| s.borrow_mut().extend_from_slice(targets));
}

/// The log lines this test's screens should show.
fn shown_log_lines() -> Vec<&'static str> {
    SHOWN.with(|s| {
        let shown = s.borrow();
        LOG_LINES
            .iter()
            .filter(|(t, _, _)| shown.contains(t))
            .map(|(_, _, l)| *l)
            .collect()
    })
}

/// The screen as insta shows a TestBackend, with the log's wall-clock timestamps masked.
fn masked(t: &Terminal<TestBackend>) -> String {
    let text = format!("{}", t.backend());
    let stamp = regex::Regex::new(r"([│┃])\d\d:\d\d:\d\d ([EWIDT]) ").expect("regex");
    let text = stamp.replace_all(&text, "${1}hh:mm:ss ${2} ");
    // tui-logger's own rate of log lines, measured on the wall clock.
    // Masked to the same width, so the frame stays as wide as the screen.
    let rate = regex::Regex::new(r"\[log=[0-9.]+/s\]─*").expect("regex");
    rate.replace_all(&text, |c: &regex::Captures| {
        let width = c[0].chars().count();
        format!("[log=…/s]{}", "─".repeat(width.saturating_sub(9)))
    })
    .into_owned()
}

fn shot(state: &AppState, width: u16, height: u16) -> String {
    masked(&render(state, width, height))
}

fn render(state: &AppState, width: u16, height: u16) -> Terminal<TestBackend> {
    log_once();
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    let log = SHOWN.with(|shown| {
        shown.borrow().iter().fold(
            TuiWidgetState::new().set_default_display_level(tui_logger::LevelFilter::Off),
            |state, t| state.set_level_for_target(t, tui_logger::LevelFilter::Trace),
        )
    });
    log.transition(TuiWidgetEvent::HideKey);
    terminal.draw(|f| view::draw(f, state, &log)).expect("draw");
    terminal
}

/// The log pane of a 120×40 screen shows this scenario's lines, in order, and no others.
fn assert_log_pane(s: &AppState) {
    let text = screen_text(&render(s, 120, 40));
    let log: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("[4] Log"))
        .skip(1)
        .filter_map(|l| {
            let l = l.trim_start_matches(['│', '┃']).trim_end_matches(['│', '┃']).trim();
            // "23:10:00 I cutover::engine::runner run run-1: …"
            let mut parts = l.splitn(4, ' ');
            let (stamp, level, target) = (parts.next()?, parts.next()?, parts.next()?);
            (stamp.len() == 8 && level.len() == 1 && target.starts_with("cutover::"))
                .then(|| parts.next().unwrap_or("").trim())
        })
        .collect();
    assert_eq!(log, shown_log_lines(), "the log pane:\n{text}");
}

#[test]
fn empty_project() {
    let s = with_snapshot(base(), snap(Vec::new()));
    assert_log_pane(&s);
    insta::assert_snapshot!("empty_project", shot(&s, 120, 40));
}

#[test]
fn before_the_first_snapshot() {
    let s = base();
    insta::assert_snapshot!("before_first_snapshot", shot(&s, 120, 40));
}

#[test]
fn running_step_mid_way() {
    let s = running();
    let text = screen_text(&render(&s, 120, 40));
    // The rejects pane and the progress pane tell the same books.
    assert!(text.contains("rejected 42"), "the progress pane:\n{text}");
    assert!(
        text.contains("[3] Rejects · showing 1–42 of 42 · 42 open"),
        "the rejects pane counts what progress counts:\n{text}"
    );
    assert!(!text.contains("No rejected rows"), "{text}");
    // The first rejects listed, the selected one's whole row beside it.
    for key in ["u17 ", "u117 ", "u217 "] {
        assert!(text.contains(key), "{key:?} in the list:\n{text}");
    }
    assert!(
        text.contains("'janitor' is not one of"),
        "the selected reject's reason:\n{text}"
    );
    assert_log_pane(&s);
    insta::assert_snapshot!("running_mid_way", shot(&s, 120, 40));
}

#[test]
fn failed_step() {
    let s = failed();
    assert_log_pane(&s);
    let text = screen_text(&render(&s, 120, 40));
    // The migrations row, the rejects pane and the status tell one story.
    let row = text.lines().find(|l| l.contains(ACCOUNTS)).unwrap_or("");
    assert!(row.contains("failed") && row.contains(" 42 "), "{row}");
    assert!(text.contains("[3] Rejects · showing 1–42 of 42 · 42 open"), "{text}");
    assert!(
        text.contains("✗ accounts failed: reading users after u4117: the source closed the connection"),
        "{text}"
    );
    insta::assert_snapshot!("failed_step", shot(&s, 120, 40));
}

#[test]
fn failed_step_details() {
    let mut s = failed();
    key(&mut s, KeyCode::Char('j'));
    key(&mut s, KeyCode::Char('k'));
    key(&mut s, KeyCode::Enter);
    insta::assert_snapshot!("failed_step_details", shot(&s, 120, 40));
}

#[test]
fn rejects_listed() {
    let mut s = with_rejects();
    key(&mut s, KeyCode::Char('j'));
    insta::assert_snapshot!("rejects_listed", shot(&s, 120, 40));
}

/// Issue 8, item 10: the fix dialog names the field it sets as a label, takes the value alone,
/// and masks a secret field's value (and its length) while it is typed.
#[test]
fn fix_dialog_plain_and_secret() {
    let mut s = with_rejects();
    key(&mut s, KeyCode::Char('j'));
    key(&mut s, KeyCode::Char('e'));
    chars(&mut s, "parent");
    insta::assert_snapshot!("fix_dialog_role_80x24", shot(&s, 80, 24));
    // tab twice from role: phone, then password_hash.
    key(&mut s, KeyCode::Tab);
    key(&mut s, KeyCode::Tab);
    chars(&mut s, "NEWSECRET123");
    let screen = render(&s, 120, 40);
    let text = format!("{}", screen.backend());
    assert!(!text.contains("NEWSECRET"), "the secret is masked:\n{text}");
    insta::assert_snapshot!("fix_dialog_secret_120x40", masked(&screen));
}

#[test]
fn rejects_filtered_small() {
    let mut s = with_rejects();
    key(&mut s, KeyCode::Char('/'));
    chars(&mut s, "lookup");
    // The engine answers with what the store's query matched.
    let waiting = RejectSummary {
        waits_for: Some("users u9".into()),
        ..reject(3, ORDERS, "o88", "account_id", "lookup", "no account for user u9 yet")
    };
    store_page(&mut s, vec![waiting], 1);
    insta::assert_snapshot!("rejects_filtered_80x24", shot(&s, 80, 24));
}

#[test]
fn run_next_confirmation() {
    let mut s = with_snapshot(base(), snap(migrations()));
    key(&mut s, KeyCode::Char('n'));
    insta::assert_snapshot!("run_next_confirmation", shot(&s, 120, 40));
}

#[test]
fn rollback_dialog() {
    let mut m = migrations();
    m[1].state = StepState::Applied;
    m[1].counts = counts(10_000, 9_990, 7, 3);
    let mut s = with_snapshot(base(), snap(m));
    key(&mut s, KeyCode::Char('k'));
    key(&mut s, KeyCode::Char('u'));
    ev(
        &mut s,
        EngineEvent::RollbackPreview(RollbackPreview {
            version: ACCOUNTS.into(),
            name: "accounts".into(),
            kind: StepKind::Data,
            lines: vec![
                "delete 9990 rows written to accounts".into(),
                "restore 0 rows of accounts that the step updated".into(),
                "drop 9990 ID-map entries".into(),
                "drop 3 rejects and warnings".into(),
            ],
            refused: None,
            steps: vec![],
            later: vec![],
            to_here: None,
        }),
    );
    chars(&mut s, "accou");
    insta::assert_snapshot!("rollback_dialog", shot(&s, 120, 40));
}

#[test]
fn help_overlay() {
    let mut s = with_rejects();
    key(&mut s, KeyCode::Char('?'));
    insta::assert_snapshot!("help_overlay_rejects_80x24", shot(&s, 80, 24));
}

#[test]
fn full_screen_80x24() {
    let s = running();
    insta::assert_snapshot!("running_80x24", shot(&s, 80, 24));
}

#[test]
fn full_screen_80x24_progress_pane() {
    let mut s = running();
    key(&mut s, KeyCode::Char('2'));
    insta::assert_snapshot!("running_80x24_progress", shot(&s, 80, 24));
}

#[test]
fn too_small() {
    let s = running();
    insta::assert_snapshot!("too_small", shot(&s, 79, 24));
    insta::assert_snapshot!("too_small_short", shot(&s, 100, 20));
}

#[test]
fn locked_banner() {
    let mut sn = snap(migrations());
    sn.locked_by = Some(LockHolder {
        owner: "alice".into(),
        host: "ops1".into(),
        pid: 999,
        command: "up".into(),
        since: "2026-11-21T22:58:00+00:00".into(),
        heartbeat_age_secs: 2,
    });
    let mut s = with_snapshot(base(), sn);
    key(&mut s, KeyCode::Char('n'));
    // The banner is a whole sentence at every width: who, which process, since when, and
    // what is refused; never cut off mid-way.
    for (w, h) in [(80, 24), (120, 40), (200, 50)] {
        let text = screen_text(&render(&s, w, h));
        let banner = text.lines().nth(2).unwrap_or("").trim_end();
        assert!(
            banner.starts_with(" READ-ONLY: ")
                && banner.contains("alice@ops1")
                && banner.contains("pid 999")
                && banner.ends_with("refused"),
            "the banner at {w}x{h}: {banner:?}"
        );
    }
    let wide = screen_text(&render(&s, 200, 50));
    assert!(
        wide.contains(
            "since 2026-11-21T22:58:00+00:00 (pid 999, `up`); runs, rollbacks, retries and review decisions are refused"
        ),
        "{wide}"
    );
    insta::assert_snapshot!("locked_80x24", shot(&s, 80, 24));
}

/// The ETA of all pending work against the window: red (and said in words) when it overruns.
#[test]
fn clock_turns_red_when_the_eta_passes_the_window_end() {
    let mut s = running();
    // 5 800 rows left at 920 rows/s is 7 s; 5 s before the window closes that overruns.
    s.now = Utc.with_ymd_and_hms(2026, 11, 22, 1, 59, 55).single().expect("time");
    let t = render(&s, 120, 40);
    let buf = t.backend().buffer();
    let line: String = (0..120).map(|x| buf[(x, 1)].symbol().to_string()).collect();
    assert!(line.contains("OVERRUNS the window"), "{line}");
    assert!(
        (0..120).any(|x| buf[(x, 1)].fg == Color::Red),
        "the clock line is red: {line}"
    );

    // With every pending step's size known and hours left, it fits.
    let mut s = running();
    s.dry_runs.insert(ORDERS.into(), counts(2_000, 2_000, 0, 0));
    let t = render(&s, 120, 40);
    let buf = t.backend().buffer();
    let line: String = (0..120).map(|x| buf[(x, 1)].symbol().to_string()).collect();
    assert!(line.contains("fits"), "{line}");
    assert!(!(0..120).any(|x| buf[(x, 1)].fg == Color::Red), "{line}");
}

#[test]
fn eta_is_unknown_without_a_rate() {
    let s = with_snapshot(base(), snap(migrations()));
    let t = render(&s, 120, 40);
    let buf = t.backend().buffer();
    let line: String = (0..120).map(|x| buf[(x, 1)].symbol().to_string()).collect();
    assert!(line.contains("ETA unknown") || line.contains("unknown size"), "{line}");
}

#[test]
fn no_color_means_no_colour_at_all() {
    for mut s in [running(), failed(), with_rejects()] {
        s.color = false;
        s.now = Utc.with_ymd_and_hms(2026, 11, 22, 1, 59, 0).single().expect("time");
        key(&mut s, KeyCode::Char('?'));
        for (w, h) in [(120, 40), (80, 24)] {
            let t = render(&s, w, h);
            for cell in t.backend().buffer().content() {
                assert_eq!(cell.fg, Color::Reset, "fg colour under NO_COLOR at {:?}", cell.symbol());
                assert_eq!(cell.bg, Color::Reset, "bg colour under NO_COLOR at {:?}", cell.symbol());
            }
        }
    }
}

// ---- the review pane -----------------------------------------------------------------------

const MERGE: &str = "20250101T090300";

fn discrepancy(id: i64, field: &str, a: Option<&str>, b: Option<&str>) -> Discrepancy {
    Discrepancy {
        id,
        step: MERGE.into(),
        entity_table: "people".into(),
        entity_id: "0b7e2c1a".into(),
        field: field.into(),
        values: [a.map(String::from), b.map(String::from)],
        sides: ["patients".into(), "children".into()],
        keys: ["P-1042".into(), "C-77".into()],
        state: "open".into(),
        decision: None,
        value_applied: None,
        reviewer: None,
        decided_at: None,
        note: None,
    }
}

/// Two open discrepancies of one entity (people 0b7e2c1a, merged from patient P-1042 and
/// child C-77) and one decided, with the review pane in front.
fn reviewing() -> AppState {
    let mut m = migrations();
    m[1].state = StepState::Applied;
    m[1].counts = counts(10_000, 9_990, 7, 3);
    m[2].state = StepState::Applied;
    m[2].counts = counts(500, 500, 0, 0);
    let mut merge = step(MERGE, "merge_people", StepKind::Merge, "applied");
    merge.counts = counts(1_200, 1_100, 0, 0);
    m.push(merge);
    let mut sn = snap(m);
    sn.discrepancies = vec![
        discrepancy(1, "phone", Some("555-0101"), Some("555-0199")),
        discrepancy(2, "email", Some("ann.lee@example.org"), None),
        Discrepancy {
            state: "decided".into(),
            decision: Some("take_b".into()),
            value_applied: Some("Lee-Smith".into()),
            reviewer: Some("alice".into()),
            decided_at: Some("2026-11-21T23:05:12Z".into()),
            note: Some("married name, per the front desk".into()),
            ..discrepancy(3, "last_name", Some("Lee"), Some("Lee-Smith"))
        },
    ];
    let mut s = with_snapshot(base(), sn);
    key(&mut s, KeyCode::Char('5'));
    s
}

#[test]
fn review_pane() {
    let s = reviewing();
    insta::assert_snapshot!("review_120x40", shot(&s, 120, 40));
    insta::assert_snapshot!("review_80x24", shot(&s, 80, 24));
}

#[test]
fn review_pane_all_shown_with_a_note() {
    let mut s = reviewing();
    key(&mut s, KeyCode::Char('v'));
    key(&mut s, KeyCode::Char('G'));
    key(&mut s, KeyCode::Char('c'));
    chars(&mut s, "called the family");
    key(&mut s, KeyCode::Enter);
    insta::assert_snapshot!("review_all_80x24", shot(&s, 80, 24));
}

#[test]
fn review_split_confirmation() {
    let mut s = reviewing();
    key(&mut s, KeyCode::Char('s'));
    insta::assert_snapshot!("review_split_confirmation", shot(&s, 120, 40));
}

#[test]
fn review_help_overlay() {
    let mut s = reviewing();
    key(&mut s, KeyCode::Char('?'));
    insta::assert_snapshot!("help_overlay_review_80x24", shot(&s, 80, 24));
}

/// Without colour the differences still show: `≠`, bold, and the selected row reversed.
#[test]
fn review_pane_without_colour() {
    let mut s = reviewing();
    s.color = false;
    for (w, h) in [(120, 40), (80, 24)] {
        let t = render(&s, w, h);
        let buf = t.backend().buffer();
        for cell in buf.content() {
            assert_eq!(cell.fg, Color::Reset, "fg colour under NO_COLOR at {:?}", cell.symbol());
            assert_eq!(cell.bg, Color::Reset, "bg colour under NO_COLOR at {:?}", cell.symbol());
        }
        let marks: Vec<_> = buf.content().iter().filter(|c| c.symbol() == "≠").collect();
        assert_eq!(marks.len(), 3, "one ≠ per differing field at {w}x{h}");
        assert!(marks.iter().all(|c| c.modifier.contains(Modifier::BOLD)));
        assert!(
            buf.content().iter().any(|c| c.modifier.contains(Modifier::REVERSED)),
            "the selected row is reversed at {w}x{h}"
        );
    }
}

/// In the grid, rejects and review share a place; the hidden one's open count is on the frame.
#[test]
fn review_and_rejects_share_the_grid() {
    let mut s = reviewing();
    key(&mut s, KeyCode::Char('3'));
    let t = render(&s, 120, 40);
    let text: String = t.backend().buffer().content().iter().map(|c| c.symbol()).collect();
    assert!(text.contains("[3] Rejects"), "rejects in front");
    assert!(text.contains(" 5 review: 2 open "), "review's open count on the frame");
    key(&mut s, KeyCode::Char('1'));
    let t = render(&s, 120, 40);
    let text: String = t.backend().buffer().content().iter().map(|c| c.symbol()).collect();
    assert!(text.contains("[3] Rejects"), "the last of the two focused stays");
}

/// A long queue: the list shows a window around the selection.
#[test]
fn review_long_queue_keeps_the_selection_in_view() {
    let mut s = reviewing();
    let mut sn = snap(migrations());
    sn.discrepancies = (1..=500)
        .map(|i| Discrepancy {
            entity_id: format!("e{i:04}"),
            keys: [format!("Pe{i:04}"), format!("Ce{i:04}")],
            ..discrepancy(i, "phone", Some("1"), Some("2"))
        })
        .collect();
    s = with_snapshot(s, sn);
    key(&mut s, KeyCode::Char('G'));
    for (w, h) in [(120, 40), (80, 24)] {
        let t = render(&s, w, h);
        let buf = t.backend().buffer();
        let lines: Vec<String> = (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect())
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l.contains(">? 500") && l.contains("Pe0500 + Ce0500")),
            "the last one is listed and selected at {w}x{h}:\n{}",
            lines.join("\n")
        );
    }
}

// ---- the verify pane -----------------------------------------------------------------------

fn check(
    kind: CheckKind,
    name: &str,
    ok: bool,
    source: Option<Measure>,
    target: Option<Measure>,
    detail: &str,
) -> Check {
    Check {
        name: name.into(),
        kind,
        ok,
        source,
        target,
        detail: detail.into(),
        explained: None,
        not_checked: None,
    }
}

/// The checks of `cutover verify` on the three-step project, in the engine's order; with
/// `failing`, the expect and the checksum of the accounts disagree (two rows went missing).
fn report(failing: bool) -> VerifyReport {
    let int = |n: i64| Some(Measure::Int(n));
    let digest = |s: &str| Some(Measure::Text(s.into()));
    let (target_rows, target_digest) = if failing {
        (9_988, "5d0c3e1f77a2b94c08e6d1a3f29b7c40")
    } else {
        (9_990, "97a95da9c83656bb329a383cb900767e")
    };
    VerifyReport::new(vec![
        check(
            CheckKind::Ledger,
            "no step failed or running",
            true,
            None,
            int(0),
            "3 steps applied",
        ),
        check(
            CheckKind::Accounting,
            &format!("accounting {ACCOUNTS}_accounts"),
            true,
            int(10_000),
            int(10_000),
            "source 10000 = written 9990 + skipped 7 + rejected 3 + merged 0",
        ),
        check(
            CheckKind::Rejects,
            &format!("rejects {ACCOUNTS}_accounts"),
            true,
            int(3),
            int(3),
            "ledger rejected 3 = open rejects in cutover_rejects 3",
        ),
        check(
            CheckKind::Accounting,
            &format!("accounting {ORDERS}_orders"),
            true,
            int(500),
            int(500),
            "source 500 = written 500 + skipped 0 + rejected 0 + merged 0",
        ),
        check(
            CheckKind::Expect,
            "accounts = users - duplicate emails - unknown roles",
            !failing,
            int(9_990),
            int(target_rows),
            &format!("source 9990 {} target {target_rows}", if failing { "≠" } else { "=" }),
        ),
        check(
            CheckKind::Checksum,
            "account emails",
            !failing,
            digest("97a95da9c83656bb329a383cb900767e"),
            digest(target_digest),
            &format!(
                "rows: source 9990, target {target_rows}; content {}",
                if failing { "differs" } else { "equal" }
            ),
        ),
        check(
            CheckKind::ForeignKeys,
            "foreign keys orders",
            true,
            None,
            int(0),
            "no orphan references (to accounts)",
        ),
        check(
            CheckKind::Documents,
            "documents documents",
            true,
            int(59),
            int(59),
            "59 files in /srv/clinic/document-store: 0 missing, 0 mismatching",
        ),
    ])
}

fn all_applied() -> AppState {
    let mut m = migrations();
    m[1].state = StepState::Applied;
    m[1].counts = counts(10_000, 9_990, 7, 3);
    m[2].state = StepState::Applied;
    m[2].counts = counts(500, 500, 0, 0);
    with_snapshot(base(), snap(m))
}

/// `V` at 23:10:00, the answer 4 s later, looked at at 23:12:05 in the verify pane.
fn verified(failing: bool) -> AppState {
    let mut s = all_applied();
    show_logs(&[LOG_VERIFY]);
    key(&mut s, KeyCode::Char('V'));
    update(&mut s, Msg::Tick(t0() + chrono::Duration::seconds(4)));
    ev(&mut s, EngineEvent::Verified(report(failing)));
    update(&mut s, Msg::Tick(t0() + chrono::Duration::seconds(125)));
    key(&mut s, KeyCode::Char('6'));
    s
}

fn screen_text(t: &Terminal<TestBackend>) -> String {
    let buf = t.backend().buffer();
    let (w, h) = (buf.area.width, buf.area.height);
    (0..h)
        .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rows of the verify table on screen: `(result, kind, the rest of the row)`.
fn verify_rows(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let inner = l.trim_start_matches(['┃', '│']).trim_end_matches(['┃', '│']);
            let row = inner.strip_prefix('>').or_else(|| inner.strip_prefix(' '))?;
            let mut words = row.split_whitespace();
            let result = words.next()?;
            if result != "ok" && result != "FAIL" {
                return None;
            }
            let kind = words.next()?.to_string();
            Some((result.to_string(), kind, words.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// Every check of the report has its row, in the pane's order, with its result, its kind and
/// its name (whole, or cut with `…` where the column is narrow), and the title counts them.
fn assert_every_check_shown(s: &AppState, w: u16, h: u16) {
    let text = screen_text(&render(s, w, h));
    let checks = &s.verify.report.as_ref().expect("a report").checks;
    let rows = verify_rows(&text);
    assert_eq!(rows.len(), checks.len(), "one row per check at {w}x{h}:\n{text}");
    for (c, (result, kind, rest)) in checks.iter().zip(&rows) {
        assert_eq!(result, if c.ok { "ok" } else { "FAIL" }, "{} at {w}x{h}", c.name);
        assert_eq!(kind, c.kind.as_str(), "{} at {w}x{h}", c.name);
        let named = rest.starts_with(&c.name)
            || (4..c.name.len())
                .rev()
                .any(|k| rest.starts_with(&format!("{}…", &c.name[..k])));
        assert!(named, "the row of {:?} at {w}x{h}: {rest}", c.name);
    }
    let passed = checks.iter().filter(|c| c.ok).count();
    assert!(
        text.contains(&format!("{passed} of {} checks passed", checks.len())),
        "the title at {w}x{h}:\n{text}"
    );
}

#[test]
fn verify_pane_all_passing() {
    let s = verified(false);
    assert_log_pane(&s);
    for (w, h) in [(120, 40), (80, 24)] {
        assert_every_check_shown(&s, w, h);
    }
    insta::assert_snapshot!("verify_passing_120x40", shot(&s, 120, 40));
    insta::assert_snapshot!("verify_passing_80x24", shot(&s, 80, 24));
}

#[test]
fn verify_pane_two_failing() {
    let s = verified(true);
    for (w, h) in [(120, 40), (80, 24)] {
        assert_every_check_shown(&s, w, h);
    }
    insta::assert_snapshot!("verify_failing_120x40", shot(&s, 120, 40));
    insta::assert_snapshot!("verify_failing_80x24", shot(&s, 80, 24));
}

/// More checks than rows: the table scrolls with the selection and says what is out of view.
#[test]
fn verify_pane_with_more_checks_than_rows() {
    let mut s = all_applied();
    key(&mut s, KeyCode::Char('V'));
    let checks: Vec<Check> = (1..=30)
        .map(|i| {
            check(
                CheckKind::Expect,
                &format!("expectation {i:02}"),
                true,
                Some(Measure::Int(i)),
                Some(Measure::Int(i)),
                "equal",
            )
        })
        .collect();
    ev(&mut s, EngineEvent::Verified(VerifyReport::new(checks)));
    key(&mut s, KeyCode::Char('6'));
    for (w, h) in [(120, 40), (80, 24)] {
        let text = screen_text(&render(&s, w, h));
        let rows = verify_rows(&text);
        assert!(
            rows.len() < 30 && rows.len() >= 3,
            "{} rows at {w}x{h}:\n{text}",
            rows.len()
        );
        assert!(rows[0].2.starts_with("expectation 01"), "{text}");
        let below = format!("↓ {} more below", 30 - rows.len());
        assert!(text.contains(&below), "{below:?} at {w}x{h}:\n{text}");
        assert!(!text.contains("more above"), "{text}");
    }
    key(&mut s, KeyCode::Char('G'));
    for (w, h) in [(120, 40), (80, 24)] {
        let text = screen_text(&render(&s, w, h));
        let rows = verify_rows(&text);
        assert!(
            rows.last().is_some_and(|r| r.2.starts_with("expectation 30")),
            "the last check in view at {w}x{h}:\n{text}"
        );
        let above = format!("↑ {} more above", 30 - rows.len());
        assert!(text.contains(&above), "{above:?} at {w}x{h}:\n{text}");
        assert!(!text.contains("more below"), "{text}");
    }
}

/// Without colour a failing check still shows: `FAIL` in words, and the row in bold.
#[test]
fn verify_pane_without_colour() {
    let mut s = verified(true);
    s.color = false;
    for (w, h) in [(120, 40), (80, 24)] {
        let t = render(&s, w, h);
        let buf = t.backend().buffer();
        for cell in buf.content() {
            assert_eq!(cell.fg, Color::Reset, "fg colour under NO_COLOR at {:?}", cell.symbol());
            assert_eq!(cell.bg, Color::Reset, "bg colour under NO_COLOR at {:?}", cell.symbol());
        }
        let text = screen_text(&t);
        let fails: Vec<&str> = text.lines().filter(|l| l.contains("FAIL ")).collect();
        assert!(fails.len() >= 2, "the failing checks say FAIL at {w}x{h}:\n{text}");
        // The second failing row (the first is selected and reversed) is bold throughout.
        let y = text
            .lines()
            .position(|l| l.contains("FAIL") && l.contains("checksum"))
            .expect("the failing checksum row") as u16;
        let x = text
            .lines()
            .nth(y as usize)
            .and_then(|l| l.chars().position(|c| c == 'F'))
            .expect("FAIL") as u16;
        assert!(buf[(x, y)].modifier.contains(Modifier::BOLD), "FAIL is bold at {w}x{h}");
        assert!(
            text.contains("6 of 8 checks passed · 2 FAILED"),
            "the title at {w}x{h}:\n{text}"
        );
    }
}

/// Between `V` and the answer: "verifying…" in the pane, on the shared frame and in the status.
#[test]
fn verify_pane_while_verifying() {
    let mut s = all_applied();
    key(&mut s, KeyCode::Char('6'));
    key(&mut s, KeyCode::Char('V'));
    for (w, h) in [(120, 40), (80, 24)] {
        let text = screen_text(&render(&s, w, h));
        assert!(
            text.contains("[6] Verify · verifying…"),
            "the title at {w}x{h}:\n{text}"
        );
        assert!(
            text.contains("verifying… (since 23:10:00)"),
            "the pane at {w}x{h}:\n{text}"
        );
        assert!(
            text.contains(" verifying the target (read-only)…"),
            "the status at {w}x{h}:\n{text}"
        );
    }
    // With the rejects pane in the grid's shared place, its frame says so.
    key(&mut s, KeyCode::Char('3'));
    let text = screen_text(&render(&s, 120, 40));
    assert!(text.contains(" 6 verify: verifying… "), "{text}");
    let text = screen_text(&render(&s, 80, 24));
    let tabs = text.lines().nth(2).unwrap_or("");
    assert!(tabs.contains(" 6 Ver (verifying…) "), "the tab bar at 80x24:\n{text}");

    // A new answer replaces the old one; while the next is on its way, the old one stays.
    ev(&mut s, EngineEvent::Verified(report(true)));
    key(&mut s, KeyCode::Char('V'));
    key(&mut s, KeyCode::Char('6'));
    let text = screen_text(&render(&s, 120, 40));
    assert!(
        text.contains("verifying… · 6 of 8 checks passed · 2 FAILED"),
        "the last result stays while verifying:\n{text}"
    );
    assert!(
        text.contains("verifying… (the checks below are from 23:10:00)"),
        "{text}"
    );
}

/// The help overlay of the verify pane: its keys, `V` among the global ones, the pane digits on
/// one line, and why `V` works while the target is locked.
#[test]
fn verify_help_overlay() {
    let mut s = verified(true);
    key(&mut s, KeyCode::Char('?'));
    for (w, h) in [(120, 40), (80, 24)] {
        let text = screen_text(&render(&s, w, h));
        for needle in [
            "Keys · Verify pane",
            "j, ↓     next check",
            "enter    check in full",
            "1–6        focus pane by number",
            "V          verify the target",
            "another process holds the lock",
        ] {
            assert!(text.contains(needle), "{needle:?} at {w}x{h}:\n{text}");
        }
    }
}

// ---- the whole truth at every width (issue 11, items 1 and 6) ------------------------------

const VISITS: &str = "20250101T090300";
const GRANTS: &str = "20250101T090400";

/// A 50k demo after its run: 7 383 rejects in the store, long step names, counts in the
/// millions, and the rejects pane on its last page (keys of nine characters).
fn last_page_of_many() -> AppState {
    let mut m = migrations();
    m[1].state = StepState::Applied;
    m[1].duration_ms = Some(754_000);
    m[1].counts = counts(1_241_950, 1_234_567, 0, 7_383);
    m[2].state = StepState::Applied;
    m[2].counts = counts(148, 0, 0, 148);
    m.push(step(VISITS, "child_visits_and_guardians", StepKind::Data, "pending"));
    m.push(step(GRANTS, "access_grants_for_clinicians", StepKind::Data, "pending"));
    let mut s = with_snapshot(base(), snap(m));
    key(&mut s, KeyCode::Char('3'));
    key(&mut s, KeyCode::End);
    let rows = (7351..=7383i64)
        .map(|id| RejectSummary {
            field: Some("dob".into()),
            ..reject(
                id,
                VISITS,
                &format!("u{id:08}"),
                "dob",
                "not_in_future",
                "date of birth 2031-02-30 is in the future",
            )
        })
        .collect();
    let seq = s.reject_page.seq;
    ev(
        &mut s,
        EngineEvent::RejectPage(RejectPage {
            seq,
            filter: String::new(),
            offset: 7350,
            rows,
            matching: 7383,
            open: 7383,
            error: None,
        }),
    );
    s
}

/// The migrations pane's counts, whole.
fn assert_counts_whole(text: &str, size: &str) {
    let row = text.lines().find(|l| l.contains(ACCOUNTS)).unwrap_or("");
    assert!(
        row.contains("1 234 567") && row.contains("7 383"),
        "{size}: written and rejected whole: {row:?}\n{text}"
    );
    let row = text.lines().find(|l| l.contains(ORDERS)).unwrap_or("");
    assert!(row.contains(" 148"), "{size}: {row:?}");
}

/// Every key and step name of the screen, whole or visibly shortened.
fn assert_nothing_cut(text: &str, size: &str) {
    // Every key listed is whole: nine characters, never eight.
    for line in text.lines() {
        if let Some(i) = line.find(" u0000") {
            let key: String = line[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert_eq!(key.len(), 9, "{size}: a cut key {key:?} in {line:?}");
        }
    }
    // A step name is whole or visibly shortened.
    for name in ["child_visits_and_guardians", "access_grants_for_clinicians"] {
        let cut = &name[..6];
        for line in text.lines().filter(|l| l.contains(cut)) {
            let shown: String = line[line.find(cut).unwrap_or(0)..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '│' && *c != '┃')
                .collect();
            assert!(
                shown == name || shown.ends_with('…'),
                "{size}: {shown:?} is a cut name without …"
            );
        }
    }
}

#[test]
fn rejects_pane_at_the_last_page_shows_whole_keys_and_counts() {
    let s = last_page_of_many();
    let wide = screen_text(&render(&s, 120, 40));
    assert!(
        wide.contains("[3] Rejects · showing 7 351–7 383 of 7 383 · 7 383 open"),
        "{wide}"
    );
    assert!(wide.contains("u00007383"), "the selected (last) key whole:\n{wide}");
    assert_nothing_cut(&wide, "120x40");
    assert_counts_whole(&wide, "120x40");
    assert!(
        wide.contains("child_visits_and_guardians"),
        "names get the width:\n{wide}"
    );
    insta::assert_snapshot!("rejects_last_page_120x40", shot(&s, 120, 40));

    let small = screen_text(&render(&s, 80, 24));
    assert!(small.contains("u00007383"), "the selected (last) key whole:\n{small}");
    assert_nothing_cut(&small, "80x24");
    insta::assert_snapshot!("rejects_last_page_80x24", shot(&s, 80, 24));
    // At 80x24 one pane shows at a time: the migrations pane keeps its numbers too.
    let mut s = s;
    key(&mut s, KeyCode::Char('1'));
    let small = screen_text(&render(&s, 80, 24));
    assert_counts_whole(&small, "80x24");
    assert_nothing_cut(&small, "80x24 migrations");
    insta::assert_snapshot!("migrations_large_counts_80x24", shot(&s, 80, 24));
}

#[test]
fn progress_numbers_are_never_cut_at_80x24() {
    let mut s = running();
    let mut progress = s
        .run
        .as_ref()
        .and_then(|r| r.current.as_ref())
        .map(|c| c.progress)
        .unwrap_or_default();
    progress.rows_done = 1_240_000;
    progress.rows_total = 2_500_000;
    progress.written = 1_234_567;
    progress.rejected = 148;
    progress.skipped = 5_285;
    ev(
        &mut s,
        EngineEvent::Progress {
            version: ACCOUNTS.into(),
            progress,
        },
    );
    key(&mut s, KeyCode::Char('2'));
    for (w, h) in [(80, 24), (120, 40)] {
        let text = screen_text(&render(&s, w, h));
        for fact in ["written 1 234 567", "rejected 148", "skipped 5 285"] {
            assert!(text.contains(fact), "{w}x{h}: {fact:?} whole:\n{text}");
        }
    }
    insta::assert_snapshot!("progress_large_counts_80x24", shot(&s, 80, 24));
}

// ---- issue 11 item 2: the rollback preview of persons after decisions were made -------------

fn clinic_applied() -> Vec<StepSummary> {
    [
        ("20250101T090000", "create_v2_schema", StepKind::Schema),
        ("20250101T090100", "accounts", StepKind::Data),
        ("20250101T090200", "persons", StepKind::Merge),
        ("20250101T090300", "child_views", StepKind::Data),
        ("20250101T090400", "link_views", StepKind::Data),
        ("20250101T090500", "clinician_views", StepKind::Data),
        ("20250101T090600", "access_grants", StepKind::Data),
        ("20250101T090700", "patient_screenings", StepKind::Data),
        ("20250101T090800", "child_screenings", StepKind::Data),
        ("20250101T090900", "appointments", StepKind::Data),
        ("20250101T091000", "documents", StepKind::Data),
    ]
    .into_iter()
    .map(|(v, n, k)| step(v, n, k, "applied"))
    .collect()
}

fn persons_preview() -> RollbackPreview {
    use cutover::engine::protocol::DownTarget;
    use cutover::engine::protocol::views::StepRollback;
    let data = |v: &str, n: &str, table: &str, rows: u64, open: u64| StepRollback {
        table: Some(table.into()),
        rows_deleted: rows,
        id_map_entries: rows,
        open_rejects: open,
        ..StepRollback::new(v.into(), n.into(), StepKind::Data)
    };
    let persons = StepRollback {
        table: Some("persons".into()),
        rows_deleted: 2931,
        id_map_entries: 3580,
        open_rejects: 84,
        resolved_rejects: 3,
        fixed_rejects: 1,
        warnings: 190,
        open_discrepancies: 218,
        decided_discrepancies: 20,
        void_discrepancies: 0,
        notes: 1,
        ..StepRollback::new("20250101T090200".into(), "persons".into(), StepKind::Merge)
    };
    let mut documents = data("20250101T091000", "documents", "documents", 588, 12);
    documents.files = 571;
    documents.file_store = Some("document-store".into());
    let steps = vec![
        documents,
        data("20250101T090900", "appointments", "appointments", 4410, 90),
        data("20250101T090800", "child_screenings", "screenings", 830, 10),
        data("20250101T090700", "patient_screenings", "screenings", 2090, 70),
        data("20250101T090600", "access_grants", "access_grants", 1390, 110),
        data(
            "20250101T090500",
            "clinician_views",
            "clinician_patient_views",
            2940,
            60,
        ),
        data("20250101T090400", "link_views", "parent_child_views", 2120, 100),
        data("20250101T090300", "child_views", "parent_child_views", 1460, 40),
        persons.clone(),
    ];
    let later: Vec<String> = steps[..8].iter().map(|s| format!("{}_{}", s.version, s.name)).collect();
    RollbackPreview {
        version: "20250101T090200".into(),
        name: "persons".into(),
        kind: StepKind::Merge,
        lines: persons.lines(),
        refused: Some(format!(
            "8 later steps applied after it must be rolled back first: {}",
            later.join(", ")
        )),
        steps,
        later,
        to_here: Some(DownTarget::To("20250101T090100".into())),
    }
}

#[test]
fn rollback_preview_of_persons_after_decisions() {
    let mut s = with_snapshot(base(), snap(clinic_applied()));
    s.selected_step = 2;
    key(&mut s, KeyCode::Char('u'));
    ev(&mut s, EngineEvent::RollbackPreview(persons_preview()));
    insta::assert_snapshot!("rollback_preview_persons_refused", shot_under_dialog(&s, 120, 40));
    key(&mut s, KeyCode::Enter);
    chars(&mut s, "pers");
    insta::assert_snapshot!("rollback_preview_persons_to_here", shot_under_dialog(&s, 120, 40));
}

/// `shot`, with the clock of a log line the dialog cuts short masked too.
fn shot_under_dialog(state: &AppState, width: u16, height: u16) -> String {
    let cut = regex::Regex::new(r"([│┃])\d\d:\d\d:\d\d([ ║])").expect("regex");
    cut.replace_all(&shot(state, width, height), "${1}hh:mm:ss${2}")
        .into_owned()
}

// ---- issue 11 item 8: verify reports a fix and a rolled-back step as such --------------------

#[test]
fn verify_pane_with_a_fix_and_a_rolled_back_step() {
    let mut s = all_applied();
    key(&mut s, KeyCode::Char('V'));
    let mut fixed = check(
        CheckKind::Expect,
        "accounts = users - duplicate emails - unknown roles",
        true,
        Some(Measure::Int(2931)),
        Some(Measure::Int(2932)),
        "pass (1 row written after a fix: reject 17 users u00000105: role fixed by alice at 2026-11-21T22:41:07Z); source 2931 ≠ target 2932",
    );
    fixed.explained = Some(
        "1 row written after a fix: reject 17 users u00000105: role fixed by alice at 2026-11-21T22:41:07Z".into(),
    );
    let mut skipped = check(
        CheckKind::Checksum,
        "patients: persons and rejects",
        true,
        Some(Measure::Text("d10a12a3a3ed99592e2de3f4f0532c85".into())),
        Some(Measure::Text("00000000000000000000000000000000".into())),
        "reverted: not checked (20250101T090200_persons was rolled back, and persons with it); rows: source 300, target 0; content differs",
    );
    skipped.not_checked =
        Some("reverted: not checked (20250101T090200_persons was rolled back, and persons with it)".into());
    let back = check(
        CheckKind::Rollback,
        "rollback 20250101T090200_persons: persons as before it ran",
        true,
        Some(Measure::Text("00000000000000000000000000000000".into())),
        Some(Measure::Text("00000000000000000000000000000000".into())),
        "persons is back to its content before 20250101T090200_persons ran (checksum taken at 2026-11-21T22:05:00Z): 0 rows then, 0 now",
    );
    ev(
        &mut s,
        EngineEvent::Verified(VerifyReport::new(vec![back, fixed, skipped])),
    );
    key(&mut s, KeyCode::Char('6'));
    let screen = shot(&s, 120, 40);
    assert!(screen.contains("fixed  expect"), "{screen}");
    assert!(screen.contains("skip   checksum"), "{screen}");
    assert!(screen.contains("1 pass after a fix"), "{screen}");
    insta::assert_snapshot!("verify_fixed_and_rolled_back_120x40", screen);
}

// ---- the review pane: both whole records ----------------------------------------------------

fn record_field(name: &str, a: Option<&str>, b: Option<&str>, present: [bool; 2]) -> RecordField {
    RecordField {
        name: name.into(),
        values: [a.map(String::from), b.map(String::from)],
        present,
    }
}

/// The review pane with long legacy keys, after the engine sent both records of the pair:
/// names, date of birth, sex (differing, not in dispute), the parent and both legacy ids.
fn reviewing_whole_records() -> AppState {
    let mut s = reviewing();
    let keys = ["P-000001042-NORTH".to_string(), "C-000000077-NORTH".to_string()];
    let mut sn = snap(migrations());
    sn.migrations
        .push(step(MERGE, "merge_people", StepKind::Merge, "applied"));
    sn.discrepancies = vec![
        Discrepancy {
            keys: keys.clone(),
            ..discrepancy(1, "date_of_birth", Some("2019-03-04"), Some("2019-04-03"))
        },
        Discrepancy {
            keys: keys.clone(),
            ..discrepancy(2, "first_name", Some("Ann"), Some("Anne-Marie"))
        },
    ];
    s = with_snapshot(s, sn);
    let asked = update(&mut s, Msg::Tick(t0() + chrono::Duration::seconds(1)));
    assert_eq!(asked, vec![Command::LoadReviewRecords { id: 1 }]);
    let both = [true, true];
    let records = ReviewRecords {
        id: 1,
        step: MERGE.into(),
        entity_id: "0b7e2c1a".into(),
        keys,
        fields: vec![
            record_field("first_name", Some("Ann"), Some("Anne-Marie"), both),
            record_field("last_name", Some("Lee"), Some("Lee"), both),
            record_field("date_of_birth", Some("2019-03-04"), Some("2019-04-03"), both),
            record_field("gender", Some("female"), Some("male"), both),
            record_field("email", Some("ann.lee@example.org"), None, [true, false]),
            record_field("legacy_patient_id", Some("P-000001042-NORTH"), None, [true, false]),
            record_field("legacy_child_id", None, Some("C-000000077-NORTH"), [false, true]),
            record_field("parent_id", None, Some("U-5531-guardian-account-0001"), [false, true]),
            record_field("linked_patient_id", None, Some("P-000001042-NORTH"), [false, true]),
        ],
        notes: Vec::new(),
        error: None,
    };
    update(&mut s, Msg::Engine(EngineEvent::ReviewRecords(Box::new(records))));
    s
}

#[test]
fn review_pane_shows_both_whole_records() {
    let mut s = reviewing_whole_records();
    insta::assert_snapshot!("review_records_120x40", shot(&s, 120, 40));
    insta::assert_snapshot!("review_records_80x24", shot(&s, 80, 24));
    // Keys and values whole at both sizes (wrapped, never cut); the marks show without colour.
    s.color = false;
    for (w, h) in [(120, 40), (80, 24)] {
        let t = render(&s, w, h);
        let buf = t.backend().buffer();
        let text: String = (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>() + "\n")
            .collect();
        for whole in [
            " A · patients ",
            " B · children ",
            " P-000001042-NORTH ",
            " C-000000077-NORTH ",
        ] {
            assert!(text.contains(whole), "{whole} whole at {w}x{h}:\n{text}");
        }
        // The parent (only B has it) fits at 80x24; the grid's review pane at 120x40 is
        // shorter, and says fields are left out.
        if h == 24 {
            assert!(
                text.contains(" U-5531-guardian-account-0001 "),
                "the parent whole:\n{text}"
            );
        } else {
            assert!(text.contains("of 9 fields shown"), "fields left out are said:\n{text}");
        }
        let marks = |m: &str| buf.content().iter().filter(|c| c.symbol() == m).count();
        assert_eq!(marks("≠"), 2, "one ≠ per field in dispute at {w}x{h}:\n{text}");
        assert_eq!(marks("~"), 1, "gender differs, not in dispute, at {w}x{h}:\n{text}");
    }
}

/// Until the records arrive, the pane says so and shows the fields in dispute.
#[test]
fn review_pane_reads_the_records() {
    let s = reviewing();
    let text = shot(&s, 120, 40);
    assert!(text.contains("reading both records…"), "{text}");
}

// ---- issue 11 (items 3, 5, 12): a fresh demo's header, the plan's ETA, interrupted steps ----

fn header_lines(s: &AppState, width: u16) -> String {
    let t = render(s, width, 40);
    let buf = t.backend().buffer();
    (0..2)
        .map(|y| {
            (0..width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A fresh demo: the window opens now for two hours, nothing has run on this target, and the
/// console has counted every pending step's source rows. The header gives the plan's ETA from
/// an assumed rate, marked `~`, and whether it fits.
fn fresh_demo() -> AppState {
    let mut s = AppState::new("clinic-v2", "sqlite://target.db", t0());
    s.own_pid = 4242;
    s.window = Window::parse("2026-11-21T23:10:00+00:00", "2026-11-22T01:10:00+00:00");
    let mut migrations = vec![step(SCHEMA, "create_v2_schema", StepKind::Schema, "pending")];
    migrations.push(step(ACCOUNTS, "accounts", StepKind::Data, "pending"));
    migrations.push(step(ORDERS, "orders", StepKind::Data, "pending"));
    let mut sn = snap(migrations);
    sn.window_start = Some("2026-11-21T23:10:00+00:00".into());
    sn.window_end = Some("2026-11-22T01:10:00+00:00".into());
    let mut s = with_snapshot(s, sn);
    ev(
        &mut s,
        EngineEvent::SourceCounts {
            rows: vec![(ACCOUNTS.into(), 600_000), (ORDERS.into(), 900_000)],
            errors: Vec::new(),
        },
    );
    s
}

#[test]
fn a_fresh_demo_header_gives_the_plan_eta_as_an_estimate() {
    let s = fresh_demo();
    let header = header_lines(&s, 120);
    // 1 500 000 rows at an assumed 5 000 rows/s: 5 minutes, marked as an estimate.
    assert!(header.contains("window 23:10–01:10 · 2h00m left"), "{header}");
    assert!(header.contains("ETA ~5m00s → 23:15"), "{header}");
    assert!(header.contains("fits"), "{header}");
    assert!(header.contains("~5 000 rows/s assumed"), "{header}");
    insta::assert_snapshot!("fresh_demo_header", header);
}

#[test]
fn the_eta_uses_past_runs_on_this_target_before_the_assumed_rate() {
    let mut s = fresh_demo();
    // accounts ran once before and was reverted: 600 000 rows in 60 s, 10 000 rows/s.
    s.migrations[1].state = StepState::Reverted;
    s.migrations[1].counts = counts(600_000, 600_000, 0, 0);
    s.migrations[1].duration_ms = Some(60_000);
    let header = header_lines(&s, 120);
    // 1 500 000 rows at 10 000 rows/s: 2m30s, from the ledger, not marked as assumed.
    assert!(header.contains("ETA 2m30s"), "{header}");
    assert!(header.contains("past runs"), "{header}");
    assert!(!header.contains("assumed"), "{header}");
}

#[test]
fn the_header_shows_the_date_of_a_window_that_is_not_today() {
    let mut s = fresh_demo();
    s.window = Window::parse("2026-11-28T22:00:00+00:00", "2026-11-29T02:00:00+00:00");
    let header = header_lines(&s, 120);
    assert!(header.contains("window 2026-11-28 22:00–02:00 · opens in"), "{header}");
}

#[test]
fn the_run_all_question_gives_the_plan_eta() {
    let mut s = fresh_demo();
    key(&mut s, KeyCode::Char('A'));
    let screen = shot(&s, 120, 40);
    assert!(screen.contains("ETA ~5m00s for 1 500 000 rows"), "{screen}");
    assert!(screen.contains("fits the window"), "{screen}");
    insta::assert_snapshot!("run_all_confirmation_with_eta", screen);
}

#[test]
fn an_interrupted_step_in_the_migrations_pane() {
    let mut m = migrations();
    m[1].state = StepState::Interrupted;
    m[1].counts = counts(4_200, 4_190, 0, 10);
    m[1].duration_ms = Some(3_000);
    let s = with_snapshot(base(), snap(m));
    let screen = shot(&s, 120, 40);
    let row = screen.lines().find(|l| l.contains("accounts")).unwrap_or("");
    // The state column's width is the migrations pane's (issue 11 item 6); the word starts there.
    assert!(row.contains("interrupted"), "{screen}");
    insta::assert_snapshot!("interrupted_step", screen);
}

// ---- The import pane (`i`) ----

const IMPORT_CSV: &str = "patient_first_name,birth_date,Email Address,phone_number,sex,MRN#,notes\n\
Ann,1985-03-14,ann@example.com,(415) 555-2671,F,mrn001,hi\n\
Bo,3/4/1990,bo@x.org,415-555-2672,m,MRN002,\n\
Cy,12/31/1970,,+1 212 555 0123,Male,mrn003,x\n";

fn import_report() -> cutover::engine::preview::PreviewReport {
    use cutover::engine::preview::{PreviewReport, TargetColumn, preview_file, suggest};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("renamed.csv");
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
        file: "renamed.csv".into(),
        into: Some("patients".into()),
        suggestions: suggest(&preview, &targets),
        targets: Some(targets),
        preview: Some(preview),
        error: None,
    }
}

fn import_files() -> AppState {
    let mut s = with_snapshot(
        base(),
        snap(vec![step(SCHEMA, "create_v2_schema", StepKind::Schema, "applied")]),
    );
    update(&mut s, Msg::Key(KeyEvent::new(KeyCode::Char('i'), KeyModifiers::NONE)));
    ev(
        &mut s,
        EngineEvent::ImportFiles {
            folder: Some("/data/export".into()),
            files: vec!["orders.xlsx".into(), "renamed.csv".into()],
            error: None,
        },
    );
    s
}

fn import_mapping() -> AppState {
    let mut s = import_files();
    let press = |s: &mut AppState, code: KeyCode| {
        update(s, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
    };
    press(&mut s, KeyCode::Char('j'));
    press(&mut s, KeyCode::Enter);
    for _ in 0.."renamed".len() {
        press(&mut s, KeyCode::Backspace);
    }
    for c in "patients".chars() {
        press(&mut s, KeyCode::Char(c));
    }
    press(&mut s, KeyCode::Enter);
    ev(&mut s, EngineEvent::Preview(Box::new(import_report())));
    press(&mut s, KeyCode::Char('j'));
    ev(
        &mut s,
        EngineEvent::ImportDryRun {
            report: cutover::engine::protocol::StepDryRun {
                ok: true,
                counts: Some(Counts {
                    source: 3,
                    written: 2,
                    skipped: 0,
                    rejected: 1,
                    merged: 0,
                    warnings: 1,
                }),
                rejects: vec![("4".into(), "required".into(), "email is required".into())],
                errors: Vec::new(),
            },
            error: None,
        },
    );
    s
}

#[test]
fn import_pane_files_80x24() {
    let s = import_files();
    insta::assert_snapshot!("import_files_80x24", shot(&s, 80, 24));
}

#[test]
fn import_pane_mapping_80x24() {
    let s = import_mapping();
    insta::assert_snapshot!("import_mapping_80x24", shot(&s, 80, 24));
}

#[test]
fn import_pane_mapping_120x40() {
    let mut s = import_mapping();
    // The transforms line open on the selected row.
    update(&mut s, Msg::Key(KeyEvent::new(KeyCode::Char('t'), KeyModifiers::NONE)));
    insta::assert_snapshot!("import_mapping_120x40", shot(&s, 120, 40));
}

/// The pre-flight pane after an assess: a row per pending step, the total against the
/// window, and the selected step's rules and examples.
#[test]
fn preflight_pane() {
    use cutover::engine::protocol::assess::{AssessExample, AssessReport, AssessStep};
    let mut s = with_snapshot(base(), snap(migrations()));
    key(&mut s, KeyCode::Char('F'));
    let step = |version: &str, name: &str, rows: u64, write: u64, ms: u64| AssessStep {
        version: version.into(),
        name: name.into(),
        kind: StepKind::Data,
        target_table: Some(name.into()),
        source_rows: Some(rows),
        rows_read: rows,
        would_write: write,
        would_skip: 2,
        would_merge: 0,
        rejects_by_rule: [("email".to_string(), rows - write - 5), ("lookup".to_string(), 3)]
            .into_iter()
            .collect(),
        warnings_by_rule: [("phone".to_string(), 9)].into_iter().collect(),
        examples: vec![AssessExample {
            source_key: "u00000085".into(),
            rule: "email".into(),
            reason: "email: 'bob@' is not an email address".into(),
        }],
        blank_rates: [("phone".to_string(), 0.258)].into_iter().collect(),
        duplicate_keys: 2,
        unresolved_references: 3,
        estimated_ms: ms,
        error: None,
    };
    ev(
        &mut s,
        EngineEvent::Assessed(Box::new(AssessReport {
            sampled: None,
            estimated_ms: 12_000_000,
            estimate_basis: "assess".into(),
            steps: vec![
                step(ACCOUNTS, "accounts", 186_000, 182_000, 7_200_000),
                step(ORDERS, "orders", 90_000, 89_000, 4_800_000),
            ],
        })),
    );
    let text = shot(&s, 120, 30);
    assert!(text.contains("OVERRUNS the window"), "{text}");
    // The header's ETA is the assessed one, and says where it comes from.
    assert!(text.contains("ETA 3h20m") && text.contains("assessed"), "{text}");
    assert!(text.contains("rejects by rule: email 3995, lookup 3"), "{text}");
    insta::assert_snapshot!("preflight_pane", text);
}

/// The run-all confirmation offers `b`: back up the target first, then run.
#[test]
fn run_all_confirmation_offers_a_backup() {
    let mut s = with_snapshot(base(), snap(migrations()));
    key(&mut s, KeyCode::Char('A'));
    let screen = shot(&s, 120, 40);
    assert!(screen.contains("back up the target first, then run"), "{screen}");
    insta::assert_snapshot!("run_all_confirmation_backup_120x40", screen);
}

// ---- issue 13: the sync lag gauges ----------------------------------------------------------

/// Steps with `[sync]` show a lag gauge at the foot of the progress pane: in step, or rows
/// behind with the age of the oldest unsynced change (amber, red past a minute).
#[test]
fn the_progress_pane_shows_each_synced_steps_lag() {
    use cutover::engine::protocol::views::SyncLag;
    let mut m = migrations();
    m[1].state = StepState::Applied;
    m[2].state = StepState::Applied;
    m[1].sync = Some(SyncLag {
        lag_rows: 0,
        lag_seconds: None,
        mark: Some("2025-01-01 10:00:00".into()),
        synced_at: None,
    });
    let mut s = with_snapshot(base(), snap(m));
    update(
        &mut s,
        Msg::Engine(EngineEvent::Synced {
            version: ORDERS.into(),
            pass: 4,
            inserted: 0,
            updated: 3,
            deleted: 0,
            rejected: 0,
            lag_rows: 1_234,
            lag_seconds: Some(12.4),
            mark: Some("2025-01-01 10:00:05 / 17".into()),
        }),
    );
    let screen = shot(&s, 120, 40);
    assert!(screen.contains("⟳ orders: 1 234 behind · oldest 12s"), "{screen}");
    assert!(screen.contains("⟳ accounts: in step"), "{screen}");
    insta::assert_snapshot!("sync_lag_gauges", screen);
}
