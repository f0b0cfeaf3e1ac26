//! `cutover sync [--once | --every DURATION] [--steps V1,V2]`: incremental sync of the applied
//! steps with `[sync]`, printed like `up` (human lines, or NDJSON events with `--json`).
//! ctrl-c stops at the next batch boundary; a second ctrl-c kills.

use crate::cli::exit;
use crate::cli::output::EventPrinter;
use crate::engine::project::Project;
use crate::engine::protocol::{Command, EngineEvent, Outcome};
use crate::engine::runner;
use clap::Args;
use color_eyre::eyre::{Result, eyre};
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct SyncArgs {
    /// One pass over every applied step with [sync], then exit.
    #[arg(long, conflicts_with = "every")]
    pub once: bool,
    /// A pass every DURATION (e.g. 10s, 500ms, 2m) until ctrl-c.
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,
    /// Only these step versions (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub steps: Vec<String>,
}

/// The command the arguments ask for (`--once` when neither is given).
pub fn command(args: &SyncArgs) -> Result<Command> {
    let every_ms = match &args.every {
        None => None,
        Some(s) => {
            let d = crate::engine::data::spec::parse_duration(s)
                .ok_or_else(|| eyre!("--every {s:?} is not a duration: write e.g. 10s, 500ms or 2m"))?;
            if d.is_zero() {
                return Err(eyre!("--every must be longer than zero"));
            }
            Some(d.as_millis() as u64)
        }
    };
    Ok(Command::Sync {
        once: every_ms.is_none(),
        every_ms,
        steps: args.steps.clone(),
    })
}

pub async fn run(
    project: Arc<Project>,
    json: bool,
    args: &SyncArgs,
    metrics: Option<&crate::metrics::Metrics>,
) -> Result<i32> {
    let command = command(args)?;
    let every = matches!(command, Command::Sync { every_ms: Some(_), .. });
    let mut engine = runner::spawn(project);
    if engine.commands.send(command).await.is_err() {
        return Ok(exit::FAILED);
    }
    let commands = engine.commands.clone();
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupt: stopping at the next batch boundary (ctrl-c again to kill)");
            let _ = commands.send(Command::Abort).await;
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let mut printer = EventPrinter::new(json);
    let mut code = exit::FAILED;
    while let Some(ev) = engine.events.recv().await {
        if let Some(m) = metrics {
            m.observe(&ev);
        }
        printer.print(&ev);
        if let EngineEvent::Finished { outcome, .. } = &ev {
            code = match outcome {
                Outcome::Done => exit::OK,
                // ctrl-c is how `--every` ends: every committed batch is accounted for.
                Outcome::Aborted if every => exit::OK,
                Outcome::Aborted => exit::ABORTED,
                Outcome::Locked => exit::LOCKED,
                Outcome::Refused => exit::REFUSED,
                Outcome::Failed => exit::FAILED,
            };
            break;
        }
    }
    interrupt.abort();
    Ok(code)
}
