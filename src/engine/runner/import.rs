//! The console's import pane, run: a mapping not saved yet is dry-run as the project's newest
//! step through the ordinary `up --dry-run` path.

use crate::engine::exec::RunControl;
use crate::engine::preview::step::save_step;
use crate::engine::project::{Project, load_steps};
use crate::engine::protocol::{EngineEvent, Outcome, RunOptions, StepDryRun};
use color_eyre::eyre::{Result, eyre};
use std::sync::Arc;

/// Rejected rows a dry run report keeps.
pub const DRY_RUN_REJECTS: usize = 50;

/// Dry-run `text` as if it were the project's newest step: it is written to a folder of its
/// own under the system's temporary folder and run by the ordinary dry-run path (one
/// transaction, rolled back), then the folder is removed.
pub async fn dry_run_step(project: &Project, name: &str, text: &str) -> Result<StepDryRun> {
    let scratch = std::env::temp_dir().join(format!(
        "cutover-import-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    let result = async {
        let migrations = scratch.join("migrations");
        std::fs::create_dir_all(&migrations).map_err(|e| eyre!("cannot create {}: {e}", migrations.display()))?;
        save_step(&migrations, &project.steps, name, text)?;
        let mut steps = load_steps(&migrations)?;
        let step = steps.pop().ok_or_else(|| eyre!("the step could not be read back"))?;
        let version = step.version.clone();
        let mut with_step = project.clone();
        with_step.steps.push(step);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<EngineEvent>(super::EVENT_QUEUE);
        let opts = RunOptions {
            only: Some(version),
            dry_run: true,
            allow_out_of_order: true,
            continue_on_error: Some(true),
            ..RunOptions::default()
        };
        let run = tokio::spawn(super::run_up(Arc::new(with_step), opts, tx, RunControl::default()));
        let mut report = StepDryRun::default();
        while let Some(ev) = rx.recv().await {
            match ev {
                EngineEvent::Rejected {
                    source_key,
                    rule,
                    reason,
                    ..
                } if report.rejects.len() < DRY_RUN_REJECTS => report.rejects.push((source_key, rule, reason)),
                EngineEvent::StepFinished { counts, .. } => report.counts = Some(counts),
                EngineEvent::Failed { error, .. } => report.errors.push(error),
                EngineEvent::Notice { message, .. } => report.errors.push(message),
                EngineEvent::Finished { outcome, .. } => report.ok = outcome == Outcome::Done,
                _ => {}
            }
        }
        let _ = run.await;
        Ok(report)
    }
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}
