//! Logging while the console owns the terminal: tracing goes to tui-logger (the log pane) and
//! to `cutover.log` in the project folder, never to stdout/stderr, which would tear the screen.

use color_eyre::eyre::{Result, WrapErr, eyre};
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer};

pub const LOG_FILE: &str = "cutover.log";

/// Default filter: our own info and up; sqlx logs every statement at info, far too much.
const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Install the console's tracing subscriber. Must run before anything else installs a global
/// subscriber (the CLI's stderr logger must not be set up for the console).
pub fn init_logging(project_dir: &Path) -> Result<()> {
    let path = project_dir.join(LOG_FILE);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .wrap_err_with(|| format!("cannot open the log file {}", path.display()))?;
    let filter = || EnvFilter::try_from_env("CUTOVER_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let file_layer = tracing_subscriber::fmt::layer()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_target(true)
        .with_filter(filter());
    let pane_layer = tui_logger::TuiTracingSubscriberLayer.with_filter(filter());
    let subscriber = tracing_subscriber::registry().with(file_layer).with(pane_layer);
    tracing::subscriber::set_global_default(subscriber).map_err(|_| {
        eyre!(
            "a tracing subscriber is already installed, so the console's log would go to the terminal; \
             start the console without the CLI's stderr logger (cli::init_tracing)"
        )
    })?;
    tui_logger::init_logger(tui_logger::LevelFilter::Trace).map_err(|e| eyre!("cannot start the log pane: {e}"))?;
    tui_logger::set_default_level(tui_logger::LevelFilter::Trace);
    tracing::info!(log = %path.display(), "console logging started");
    Ok(())
}
