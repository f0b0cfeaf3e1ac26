//! Ledger maintenance without running steps: `baseline` marks steps applied, `repair` forgets
//! schema steps left running/failed and records changed checksums. Both under the run lock.

use crate::engine::db::{Db, Role};
use crate::engine::exec::new_run_id;
use crate::engine::plan::{self, compute_status};
use crate::engine::project::{Project, StepKind};
use crate::engine::protocol::Counts;
use crate::engine::store::ledger;
use crate::engine::store::lock::RunLock;
use color_eyre::eyre::{Result, eyre};
use std::time::Duration;

/// `cutover baseline VERSION`: mark every pending step up to VERSION as applied without running it.
pub async fn baseline(project: &Project, version: &str) -> Result<Vec<String>> {
    if !project.steps.iter().any(|s| s.version == version) {
        return Err(eyre!("no migration has version {version} (see `cutover status`)"));
    }
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let lock = RunLock::acquire(
        &target,
        "baseline",
        Duration::from_secs(project.config.defaults.lock_stale_after_secs),
    )
    .await
    .map_err(|e| eyre!("{e}"))?;
    ledger::ensure(&target).await?;
    let rows = ledger::load(&target).await?;
    let run_id = new_run_id();
    let mut marked = Vec::new();
    let mut tx = target.begin().await?;
    for s in project.steps.iter().filter(|s| s.version.as_str() <= version) {
        if rows
            .iter()
            .any(|r| r.version == s.version && r.status != ledger::LedgerStatus::Reverted)
        {
            continue;
        }
        let now = crate::engine::clock::now_iso();
        ledger::upsert(
            &mut tx,
            s,
            ledger::LedgerStatus::Baseline,
            &run_id,
            &now,
            Some(0),
            &Counts::default(),
            None,
            None,
        )
        .await?;
        marked.push(s.folder_name());
    }
    ledger::append_event(
        &mut tx,
        Some(&run_id),
        Some(version),
        "baseline",
        &serde_json::json!({"marked": marked}),
    )
    .await?;
    tx.commit().await?;
    lock.release().await?;
    target.close().await;
    Ok(marked)
}

/// `cutover repair`: forget schema steps left running/failed (nothing of them committed) and
/// record the on-disk checksum of applied steps whose files changed.
pub async fn repair(project: &Project) -> Result<Vec<String>> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let lock = RunLock::acquire(
        &target,
        "repair",
        Duration::from_secs(project.config.defaults.lock_stale_after_secs),
    )
    .await
    .map_err(|e| eyre!("{e}"))?;
    ledger::ensure(&target).await?;
    let rows = ledger::load(&target).await?;
    let status = compute_status(&project.steps, &rows);
    let run_id = new_run_id();
    let mut actions = Vec::new();
    let mut tx = target.begin().await?;
    for s in &status {
        match s.state {
            plan::StepState::Running | plan::StepState::Interrupted | plan::StepState::Failed
                if s.kind == StepKind::Schema =>
            {
                ledger::delete(&mut tx, &s.version).await?;
                actions.push(format!(
                    "{}_{}: removed the {} entry; `cutover up` will run it again",
                    s.version,
                    s.name,
                    s.state.as_str()
                ));
            }
            plan::StepState::Modified => {
                if let Some(c) = &s.checksum {
                    ledger::set_checksum(&mut tx, &s.version, c).await?;
                    // A data file that changed: re-planned as it is now.
                    if let Some(f) = &s.source_checksum {
                        ledger::set_source_checksum(&mut tx, &s.version, f).await?;
                    }
                    actions.push(format!(
                        "{}_{}: recorded the new checksum of {}",
                        s.version,
                        s.name,
                        s.modified_file.as_deref().unwrap_or("its file")
                    ));
                }
            }
            _ => {}
        }
    }
    ledger::append_event(
        &mut tx,
        Some(&run_id),
        None,
        "repair",
        &serde_json::json!({"actions": actions}),
    )
    .await?;
    tx.commit().await?;
    lock.release().await?;
    target.close().await;
    Ok(actions)
}
