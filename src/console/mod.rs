//! The ratatui console: the operator's face over the engine during a maintenance window.
//!
//! Shape (Elm-like, so the logic is testable without a terminal):
//! - `state`: `AppState`, plain data; `Msg` (key, engine event, tick, resize); `Effect`.
//! - `keymap`: the one table of keys; the help overlay and hint bar render from it.
//! - `update`: `update(&mut AppState, Msg) -> Vec<Command>`, pure.
//! - `view`: panes as widgets over `&AppState`.
//! - this file: the terminal, the engine task and the loop between them; the only I/O.
//!
//! The engine runs on its own tokio tasks (`engine::runner::spawn`); the console talks to it
//! only through `Command`s and `EngineEvent`s, so the screen never waits on the database.

pub mod eta;
pub mod format;
pub mod keymap;
pub mod logging;
pub mod state;
pub mod update;
pub mod view;

pub use logging::init_logging;
pub use state::{AppState, Effect, Msg};
pub use update::update;

use crate::console::state::{StatusLevel, StepInfo, Window};
use crate::engine::data::spec::DataStep;
use crate::engine::project::{Project, StepKind};
use crate::engine::protocol::Command;
use crate::engine::runner::{self, EngineHandle};
use crate::metrics::Metrics;
use color_eyre::eyre::{Result, WrapErr};
use crossterm::event::{Event, EventStream};
use futures::{FutureExt, StreamExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
use tui_logger::{TuiWidgetEvent, TuiWidgetState};

/// The clock and the quit grace period advance at this rate; progress redraws come with events.
const TICK: Duration = Duration::from_millis(250);

/// Open the console on a project; returns the process exit code. `metrics` sees every engine
/// event (`--metrics-addr`).
pub async fn run(project: Arc<Project>, metrics: Option<Metrics>) -> Result<i32> {
    let mut state = initial_state(&project, chrono::Utc::now());
    let mut engine = runner::spawn(project.clone());
    // The first snapshot fills the panes; until then they say they are reading the target.
    send(&mut state, &engine, Command::Refresh);
    // The size of every pending step, for the plan's ETA before anything has run.
    state.counting_sources = true;
    send(&mut state, &engine, Command::CountSources);

    let log_state = TuiWidgetState::new().set_default_display_level(tui_logger::LevelFilter::Info);
    // Start with the target selector folded away: the log lines need the width more.
    log_state.transition(TuiWidgetEvent::HideKey);

    // try_init installs a panic hook that restores the terminal before the panic message.
    let mut terminal = ratatui::try_init().wrap_err("cannot open the terminal for the console")?;
    let _restore = RestoreOnDrop;
    let size = terminal.size().wrap_err("cannot read the terminal size")?;
    dispatch(&mut state, &engine, &log_state, Msg::Resize(size.width, size.height));
    let result = event_loop(&mut terminal, &mut state, &mut engine, &log_state, metrics.as_ref()).await;
    tracing::info!("console closed");
    result.map(|()| 0)
}

/// Leaves raw mode and the alternate screen however `run` ends (error or normal return).
struct RestoreOnDrop;

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// The state before the first snapshot: what the project files say.
pub fn initial_state(project: &Project, now: chrono::DateTime<chrono::Utc>) -> AppState {
    let mut state = AppState::new(project.config.name.clone(), project.config.target.redacted(), now);
    state.window = project.config.window.as_ref().map(|w| Window {
        start: w.start,
        end: w.end,
    });
    state.own_pid = i64::from(std::process::id());
    // https://no-color.org: set and not empty means no colour.
    state.color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    state.step_info = step_infos(project);
    state
}

/// Where each step reads and writes, from its files; a file that does not parse says so here
/// and fails properly when the step runs.
pub fn step_infos(project: &Project) -> BTreeMap<String, StepInfo> {
    let target = project.config.target.redacted();
    let source = project
        .config
        .source
        .as_ref()
        .map(|s| s.redacted())
        .unwrap_or_else(|| "(no source configured)".into());
    let files: Vec<Option<toml::Value>> = project
        .steps
        .iter()
        .map(|s| {
            (s.kind != StepKind::Schema)
                .then(|| std::fs::read_to_string(s.file("step.toml")).ok())
                .flatten()
                .and_then(|t| toml::from_str(&t).ok())
        })
        .collect();
    project
        .steps
        .iter()
        .enumerate()
        .map(|(at, s)| {
            let file = files[at].as_ref();
            let table_of =
                |f: Option<&toml::Value>| f.and_then(|f| f.get("target")?.get("table")?.as_str().map(str::to_string));
            let mut info = match s.kind {
                StepKind::Schema => StepInfo {
                    source: "up.sql".into(),
                    target: target.clone(),
                    waits_for: Vec::new(),
                },
                StepKind::Merge => {
                    let side = |k: &str| {
                        file.and_then(|f| f.get(k)?.get("table")?.as_str().map(str::to_string))
                            .unwrap_or_else(|| "?".into())
                    };
                    StepInfo {
                        source: format!("tables {} (A) and {} (B) on {source}", side("a"), side("b")),
                        target: format!("table {} on {target}", table_of(file).unwrap_or_else(|| "?".into())),
                        waits_for: Vec::new(),
                    }
                }
                StepKind::Data => match DataStep::load(&s.file("step.toml")) {
                    Ok(d) => StepInfo {
                        source: match &d.source.table {
                            Some(t) => format!("table {t} on {source}"),
                            None => format!("query ({}) on {source}", d.source_name()),
                        },
                        target: format!("table {} on {target}", d.target.table),
                        waits_for: Vec::new(),
                    },
                    Err(e) => StepInfo {
                        source: format!("step.toml does not parse: {e}"),
                        target: target.clone(),
                        waits_for: Vec::new(),
                    },
                },
            };
            if let Some(table) = table_of(file) {
                info.waits_for = waits_for(project, &files, at, &table, file);
            }
            (s.version.clone(), info)
        })
        .collect()
}

/// The earlier steps step `at` needs: the schema step whose up.sql creates its table, and the
/// steps that fill the ID maps its lookups and references name.
fn waits_for(
    project: &Project,
    files: &[Option<toml::Value>],
    at: usize,
    table: &str,
    file: Option<&toml::Value>,
) -> Vec<String> {
    fn maps_named(v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    match (k.as_str(), v) {
                        ("map", toml::Value::String(m)) => out.push(m.clone()),
                        _ => maps_named(v, out),
                    }
                }
            }
            toml::Value::Array(a) => a.iter().for_each(|v| maps_named(v, out)),
            _ => {}
        }
    }
    // The maps a step fills: a data step's [id_map] map; a merge step's two sides (by name,
    // else table), whose legacy keys both map to the entity.
    let own_maps = |f: &toml::Value| -> Vec<String> {
        let text = |v: Option<&toml::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
        let mut maps: Vec<String> = text(f.get("id_map").and_then(|m| m.get("map"))).into_iter().collect();
        for side in ["a", "b"] {
            if let Some(s) = f.get(side) {
                maps.extend(text(s.get("name")).or_else(|| text(s.get("table"))));
            }
        }
        maps
    };
    let mut wanted = Vec::new();
    if let Some(f) = file {
        let mut without_own = f.clone();
        if let Some(t) = without_own.as_table_mut() {
            t.remove("id_map");
        }
        maps_named(&without_own, &mut wanted);
    }
    let create = format!("create table {}", table.to_ascii_lowercase());
    let create_if = format!("create table if not exists {}", table.to_ascii_lowercase());
    let mut out = Vec::new();
    for (i, s) in project.steps.iter().enumerate().take(at) {
        let needed = match s.kind {
            StepKind::Schema => s.read("up.sql").is_ok_and(|sql| {
                let sql = sql
                    .to_ascii_lowercase()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                sql.contains(&create) || sql.contains(&create_if)
            }),
            _ => files[i]
                .as_ref()
                .is_some_and(|f| own_maps(f).iter().any(|m| wanted.contains(m))),
        };
        if needed {
            out.push(format!("{} {}", s.version, s.name));
        }
    }
    out
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    state: &mut AppState,
    engine: &mut EngineHandle,
    log_state: &TuiWidgetState,
    metrics: Option<&Metrics>,
) -> Result<()> {
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut engine_open = true;
    loop {
        terminal
            .draw(|f| view::draw(f, state, log_state))
            .wrap_err("cannot draw the console")?;
        if state.should_exit() {
            return Ok(());
        }
        // Wait for one message, then take everything else already queued, then draw once.
        let first = tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(ev)) => terminal_msg(ev),
                Some(Err(e)) => return Err(e).wrap_err("cannot read the terminal"),
                None => return Ok(()),
            },
            ev = engine.events.recv(), if engine_open => match ev {
                Some(ev) => {
                    observe(metrics, &ev);
                    Some(Msg::Engine(ev))
                }
                None => {
                    engine_open = false;
                    state.set_status(StatusLevel::Error, "the engine stopped; restart the console");
                    None
                }
            },
            _ = tick.tick() => Some(Msg::Tick(chrono::Utc::now())),
            // SIGINT from outside (raw mode turns the ctrl-c key into a key event instead).
            _ = tokio::signal::ctrl_c() => Some(Msg::Key(crossterm::event::KeyEvent::new(
                crossterm::event::KeyCode::Char('c'),
                crossterm::event::KeyModifiers::CONTROL,
            ))),
        };
        if let Some(msg) = first {
            dispatch(state, engine, log_state, msg);
        }
        while let Ok(ev) = engine.events.try_recv() {
            observe(metrics, &ev);
            dispatch(state, engine, log_state, Msg::Engine(ev));
        }
        while let Some(Some(Ok(ev))) = keys.next().now_or_never() {
            if let Some(msg) = terminal_msg(ev) {
                dispatch(state, engine, log_state, msg);
            }
        }
    }
}

fn observe(metrics: Option<&Metrics>, ev: &crate::engine::protocol::EngineEvent) {
    if let Some(m) = metrics {
        m.observe(ev);
    }
}

fn terminal_msg(ev: Event) -> Option<Msg> {
    match ev {
        Event::Key(k) => Some(Msg::Key(k)),
        Event::Resize(w, h) => Some(Msg::Resize(w, h)),
        _ => None,
    }
}

/// One message through `update`, then its commands to the engine and its effects here.
fn dispatch(state: &mut AppState, engine: &EngineHandle, log_state: &TuiWidgetState, msg: Msg) {
    if let Msg::Engine(event) = &msg {
        match event {
            crate::engine::protocol::EngineEvent::Verified(report) => log_verified(report),
            other => logging::log_engine_event(other),
        }
    }
    let commands = update(state, msg);
    for c in commands {
        send(state, engine, c);
    }
    for effect in std::mem::take(&mut state.effects) {
        match effect {
            Effect::Log(ev) => log_state.transition(ev),
        }
    }
}

/// A verification goes to the log (and cutover.log) too: the pane keeps only the last one.
fn log_verified(report: &crate::engine::ops::verify::VerifyReport) {
    let total = report.checks.len();
    let failed: Vec<_> = report.failed().collect();
    if failed.is_empty() {
        tracing::info!(checks = total, "verified: all {total} checks passed");
        return;
    }
    tracing::warn!(
        checks = total,
        failed = failed.len(),
        "verified: {} of {total} checks passed",
        total - failed.len()
    );
    for c in failed {
        tracing::warn!(kind = c.kind.as_str(), "check failed: {}: {}", c.name, c.detail);
    }
}

/// Never wait on the engine's queue: a full queue is reported, not blocked on.
fn send(state: &mut AppState, engine: &EngineHandle, command: Command) {
    logging::log_command(&command);
    match engine.commands.try_send(command) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => state.set_status(StatusLevel::Error, "the engine is busy; try again"),
        Err(TrySendError::Closed(_)) => {
            state.set_status(StatusLevel::Error, "the engine stopped; restart the console");
        }
    }
}
