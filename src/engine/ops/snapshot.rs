//! Read-side answers the console asks the engine for: the state of every step and the reject
//! store's totals (`Snapshot`; the rejects themselves come a page at a time, see
//! `ops::rejects::page`).

use crate::engine::db::{Db, Role};
use crate::engine::plan::{StepState, compute_status};
use crate::engine::project::Project;
pub use crate::engine::protocol::views::{RejectSummary, RollbackPreview, Snapshot, StepSummary};
use crate::engine::store::ledger;
use crate::engine::store::lock;
use crate::engine::store::{RejectFilter, RejectRecord, RejectStore, redacted_row};
use color_eyre::eyre::Result;
use std::time::Duration;

impl From<&RejectRecord> for RejectSummary {
    fn from(r: &RejectRecord) -> Self {
        let row = match redacted_row(&r.row) {
            serde_json::Value::Object(m) => m
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        if let serde_json::Value::String(s) = v {
                            s
                        } else {
                            v.to_string()
                        },
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        RejectSummary {
            id: r.id,
            step: r.step.clone(),
            source_table: r.source_table.clone(),
            source_key: r.source_key.clone(),
            field: r.field.clone(),
            rule: r.rule.clone(),
            reason: r.reason.clone(),
            level: r.level.clone(),
            state: r.state.clone(),
            waits_for: r
                .waits_for_table
                .as_ref()
                .map(|t| format!("{t} {}", r.waits_for_key.clone().unwrap_or_default())),
            row,
        }
    }
}

pub async fn snapshot(project: &Project) -> Result<Snapshot> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let rows = ledger::load(&target).await?;
    let mut status = compute_status(&project.steps, &rows);
    let locked_by = lock::current_holder(
        &target,
        Duration::from_secs(project.config.defaults.lock_stale_after_secs),
    )
    .await?;
    crate::engine::plan::mark_interrupted(&mut status, locked_by.is_some());
    let open_rejects = RejectStore::count(
        &target,
        &RejectFilter {
            open_only: true,
            ..Default::default()
        },
    )
    .await?;
    let open_rejects_by_step = RejectStore::open_by_step(&target).await?;
    let discrepancies = crate::engine::ops::review::list(&target, false).await?;
    let sync_lags = crate::engine::store::sync_marks::lags(&target)
        .await
        .unwrap_or_default();
    target.close().await;
    Ok(Snapshot {
        project: project.config.name.clone(),
        target: project.config.target.redacted(),
        window_start: project.config.window.as_ref().map(|w| w.start.to_rfc3339()),
        window_end: project.config.window.as_ref().map(|w| w.end.to_rfc3339()),
        migrations: status
            .iter()
            .map(|s| StepSummary {
                version: s.version.clone(),
                name: s.name.clone(),
                kind: s.kind,
                state: if s.baseline { StepState::Applied } else { s.state },
                checksum_state: s.checksum_state.into(),
                modified_file: s.modified_file.clone(),
                duration_ms: s.ledger.as_ref().and_then(|l| l.duration_ms),
                applied_at: s.ledger.as_ref().and_then(|l| l.applied_at.clone()),
                counts: s.ledger.as_ref().map(|l| l.counts).unwrap_or_default(),
                error: s.ledger.as_ref().and_then(|l| l.error.clone()),
                failing_statement: s.ledger.as_ref().and_then(|l| l.failing_statement.clone()),
                sync: sync_lags.get(&s.version).cloned(),
            })
            .collect(),
        open_rejects,
        open_rejects_by_step,
        locked_by,
        discrepancies,
    })
}
