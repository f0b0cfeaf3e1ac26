//! `cutover report [RUN_ID] [--format md|json|html] [--out FILE]`: a run's report, the latest
//! run by default, as Markdown on stdout unless told otherwise.

use crate::cli::exit;
use crate::engine::ops::report::{self, ReportError};
use crate::engine::project::Project;
use clap::{Args, ValueEnum};
use color_eyre::eyre::{Result, eyre};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, Default)]
pub enum ReportFormat {
    #[default]
    Md,
    Json,
    Html,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run (its id, as `cutover history` shows it); default: the latest run.
    pub run_id: Option<String>,
    /// md (Markdown), json, or html (one self-contained page).
    #[arg(long, value_enum, default_value = "md")]
    pub format: ReportFormat,
    /// Write the report into this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub async fn run(project: &Project, args: &ReportArgs, json: bool) -> Result<i32> {
    let built = match report::build(project, args.run_id.as_deref()).await {
        Ok(r) => r,
        Err(e) if e.downcast_ref::<ReportError>().is_some() => {
            let msg = format!("{e}");
            if json {
                println!("{}", serde_json::json!({"event": "error", "error": msg}));
            } else {
                eprintln!("error: {msg}");
            }
            return Ok(exit::FAILED);
        }
        Err(e) => return Err(e),
    };
    // --json alone means the JSON report.
    let format = if json && args.format == ReportFormat::Md {
        ReportFormat::Json
    } else {
        args.format
    };
    let text = match format {
        ReportFormat::Md => report::markdown(&built),
        ReportFormat::Json => serde_json::to_string_pretty(&built)? + "\n",
        ReportFormat::Html => report::html(&built),
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| eyre!("cannot write {}: {e}", path.display()))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"report": path.display().to_string(), "run_id": built.run_id})
                );
            } else {
                eprintln!("wrote the report of run {} to {}", built.run_id, path.display());
            }
        }
        None => print!("{text}"),
    }
    Ok(exit::OK)
}
