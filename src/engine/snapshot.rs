//! Read-side answers the console asks the engine for: the state of every step and the reject
//! store (`Snapshot`), and what a rollback would undo (`RollbackPreview`). Also the reject
//! fix shared by the CLI and the console.

use crate::engine::data::store::{self, RejectFilter, RejectRecord, RejectStore, redacted_row};
use crate::engine::db::{Db, Role};
use crate::engine::ledger;
use crate::engine::lock::{self, LockHolder};
use crate::engine::plan::{StepState, compute_status};
use crate::engine::project::{Project, StepKind};
use crate::engine::protocol::Counts;
use color_eyre::eyre::{Result, eyre};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Most rejects a snapshot carries; the CLI's `rejects list` has them all.
pub const SNAPSHOT_REJECTS: usize = 2000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    pub version: String,
    pub name: String,
    pub kind: StepKind,
    pub state: String,
    pub checksum_state: String,
    pub modified_file: Option<String>,
    pub duration_ms: Option<i64>,
    pub applied_at: Option<String>,
    pub counts: Counts,
    pub error: Option<String>,
    pub failing_statement: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectSummary {
    pub id: i64,
    pub step: String,
    pub source_table: String,
    pub source_key: String,
    pub field: Option<String>,
    pub rule: String,
    pub reason: String,
    pub level: String,
    pub state: String,
    pub waits_for: Option<String>,
    /// The source row with secrets redacted, in column order.
    pub row: Vec<(String, String)>,
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    pub project: String,
    /// The target URL with its password redacted.
    pub target: String,
    pub window_start: Option<String>,
    pub window_end: Option<String>,
    pub migrations: Vec<StepSummary>,
    pub rejects: Vec<RejectSummary>,
    pub open_rejects: u64,
    pub locked_by: Option<LockHolder>,
    /// The review queue (all states; the console filters).
    #[serde(default)]
    pub discrepancies: Vec<crate::engine::review::Discrepancy>,
}

pub async fn snapshot(project: &Project) -> Result<Snapshot> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let rows = ledger::load(&target).await?;
    let status = compute_status(&project.steps, &rows);
    let locked_by = lock::current_holder(
        &target,
        Duration::from_secs(project.config.defaults.lock_stale_after_secs),
    )
    .await?;
    let rejects = RejectStore::list(
        &target,
        &RejectFilter {
            open_only: false,
            ..Default::default()
        },
    )
    .await?;
    let discrepancies = crate::engine::review::list(&target, false).await?;
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
                state: if s.baseline {
                    "applied".into()
                } else {
                    s.state.as_str().into()
                },
                checksum_state: s.checksum_state.into(),
                modified_file: s.modified_file.clone(),
                duration_ms: s.ledger.as_ref().and_then(|l| l.duration_ms),
                applied_at: s.ledger.as_ref().and_then(|l| l.applied_at.clone()),
                counts: s.ledger.as_ref().map(|l| l.counts).unwrap_or_default(),
                error: s.ledger.as_ref().and_then(|l| l.error.clone()),
                failing_statement: s.ledger.as_ref().and_then(|l| l.failing_statement.clone()),
            })
            .collect(),
        open_rejects: rejects.iter().filter(|r| r.state == "open").count() as u64,
        rejects: rejects
            .iter()
            .rev()
            .take(SNAPSHOT_REJECTS)
            .rev()
            .map(RejectSummary::from)
            .collect(),
        locked_by,
        discrepancies,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackPreview {
    pub version: String,
    pub name: String,
    pub kind: StepKind,
    /// What will be undone, one line each: the down.sql statements, or rows per table.
    pub lines: Vec<String>,
    /// Set when the step cannot be rolled back now, with the reason.
    pub refused: Option<String>,
}

pub async fn rollback_preview(project: &Project, version: &str) -> Result<RollbackPreview> {
    let step = project
        .step(version)
        .ok_or_else(|| eyre!("no migration has version {version}"))?;
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let rows = ledger::load(&target).await?;
    let status = compute_status(&project.steps, &rows);
    let refused =
        crate::engine::plan::plan_down(&status, &crate::engine::protocol::DownTarget::Only(version.to_string()))
            .err()
            .map(|e| format!("{e:#}"));
    let applied = status
        .iter()
        .any(|s| s.version == version && matches!(s.state, StepState::Applied | StepState::Modified));
    let lines = match step.kind {
        StepKind::Schema => match crate::engine::schema_step::down_statements(step) {
            Ok(st) => st.into_iter().map(|s| format!("{s};")).collect(),
            Err(e) => vec![e.message],
        },
        _ => {
            let p = crate::engine::data::run::rollback_preview(&target, step).await?;
            vec![
                format!("delete {} rows written to {}", p.rows_to_delete, p.table),
                format!(
                    "restore {} rows of {} that the step updated",
                    p.rows_to_restore, p.table
                ),
                format!("drop {} ID-map entries", p.id_map_entries),
                format!("drop {} rejects and warnings", p.rejects),
            ]
        }
    };
    target.close().await;
    Ok(RollbackPreview {
        version: step.version.clone(),
        name: step.name.clone(),
        kind: step.kind,
        lines,
        refused: if applied || refused.is_some() {
            refused
        } else {
            Some(format!("{version} is not applied"))
        },
    })
}

/// Set one field of a rejected row's source data (before a retry). Audited.
pub async fn fix_reject(project: &Project, id: i64, field: &str, value: &str) -> Result<()> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let mut tx = target.begin().await?;
    let r = RejectStore::get(&mut tx, id)
        .await?
        .ok_or_else(|| eyre!("no rejected row with id {id}"))?;
    if r.state != "open" {
        return Err(eyre!("reject {id} is {}, not open; nothing to fix", r.state));
    }
    let mut row = r.row.as_object().cloned().unwrap_or_default();
    if !row.contains_key(field) {
        return Err(eyre!(
            "the source row of reject {id} has no field '{field}' (it has: {})",
            row.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let before = row.get(field).cloned().unwrap_or_default();
    row.insert(
        field.to_string(),
        if value.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(value)
        },
    );
    RejectStore::set_row(&mut tx, id, &serde_json::Value::Object(row)).await?;
    // A secret field's audit entry records that it changed, never its values.
    let detail = if store::is_secret_column(field) {
        serde_json::json!({"reject": id, "field": field, "changed": true, "redacted": true})
    } else {
        serde_json::json!({"reject": id, "field": field, "before": before, "after": value})
    };
    ledger::append_event(&mut tx, None, Some(&r.step), "reject_fixed", &detail).await?;
    tx.commit().await?;
    target.close().await;
    Ok(())
}

/// Retry rejects under the run lock: one id, or every open reject of a step.
pub async fn retry_rejects(
    project: &Project,
    id: Option<i64>,
    step: Option<&str>,
) -> Result<crate::engine::data::run::RetryReport> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let ids: Vec<i64> = match (id, step) {
        (Some(i), _) => vec![i],
        (None, Some(s)) => RejectStore::list(
            &target,
            &RejectFilter {
                step: Some(s.to_string()),
                open_only: true,
                ..Default::default()
            },
        )
        .await?
        .iter()
        .filter(|r| r.state == "open")
        .map(|r| r.id)
        .collect(),
        (None, None) => return Err(eyre!("say which rows: one reject id, or a step")),
    };
    let lock = crate::engine::lock::RunLock::acquire(
        &target,
        "rejects retry",
        Duration::from_secs(project.config.defaults.lock_stale_after_secs),
    )
    .await
    .map_err(|e| eyre!("{e}"))?;
    let rep = crate::engine::data::run::retry(project, &target, ids, &crate::engine::exec::new_run_id()).await;
    lock.release().await?;
    target.close().await;
    rep
}
