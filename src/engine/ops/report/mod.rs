//! Run reports: who ran what when, per-step accounting, rejects by rule with examples,
//! discrepancies, rollbacks, the verify result after the run and the run against the window.
//! Built from the target's own tables only (the ledger, its events, the reject store, the
//! discrepancies), so a report can be made of any past run, on any machine.
//!
//! Secrets never reach a report: values of secret-looking columns in reject examples and URL
//! passwords anywhere in its text are replaced by `[redacted]` while it is built.

mod render;

pub use render::{html, markdown};

use crate::engine::clock::now_iso;
use crate::engine::db::{Db, Role};
use crate::engine::project::Project;
use crate::engine::protocol::Counts;
use crate::engine::store::ledger::{self, HistoryEntry};
use crate::engine::store::{RejectRecord, is_secret_column, lock, runs};
use color_eyre::eyre::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What replaces a secret in a report.
pub const REDACTED: &str = "[redacted]";
/// Examples shown per (step, rule).
const EXAMPLES_PER_RULE: u64 = 3;
/// The folder of the project where `up` writes its reports.
pub const REPORTS_DIR: &str = "reports";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the ledger records no run yet: run `cutover up` first")]
    NoRuns,
    #[error("the ledger has no run {0}: `cutover history` lists the runs")]
    UnknownRun(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    /// `up` or `down`.
    pub operation: String,
    pub os_user: String,
    pub host: String,
    pub started_at: String,
    pub finished_at: String,
    /// `done`, `failed`, `aborted`, `refused`; for a run that never recorded its end,
    /// `running` while its process still holds the run lock, else `interrupted` (killed).
    pub outcome: String,
    pub project: String,
    pub steps: Vec<StepReport>,
    pub rejects: Vec<RejectGroup>,
    pub discrepancies: DiscrepancyCounts,
    pub rollbacks: Vec<RollbackEntry>,
    pub verify: Option<VerifySummary>,
    pub window: Option<WindowReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub version: String,
    pub name: String,
    /// The step's state after this run: applied, failed, interrupted, reverted, running.
    pub status: String,
    pub source: u64,
    pub written: u64,
    pub skipped: u64,
    pub rejected: u64,
    pub merged: u64,
    pub warnings: u64,
    pub duration_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectGroup {
    pub step: String,
    pub rule: String,
    pub count: u64,
    pub examples: Vec<RejectExample>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectExample {
    pub source_key: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The source row, secret-looking columns redacted.
    #[serde(default)]
    pub row: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DiscrepancyCounts {
    pub opened: u64,
    pub decided: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackEntry {
    pub version: String,
    pub at: String,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifySummary {
    pub at: String,
    pub ok: bool,
    pub passed: u64,
    pub failed: u64,
    pub checks: Vec<VerifyCheckLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyCheckLine {
    pub name: String,
    pub ok: bool,
    #[serde(default)]
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    pub start: String,
    pub end: String,
    pub window_ms: i64,
    pub run_ms: i64,
    /// Whether the run finished before the window's end.
    pub finished_in_window: bool,
    /// Time left in the window when the run finished (negative: overran).
    pub margin_ms: i64,
}

/// The report of run `run_id`, or of the latest run.
pub async fn build(project: &Project, run_id: Option<&str>) -> Result<RunReport> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let report = build_in(project, &target, run_id).await;
    target.close().await;
    report
}

pub async fn build_in(project: &Project, db: &Db, run_id: Option<&str>) -> Result<RunReport> {
    let run_id = match run_id {
        Some(r) => r.to_string(),
        None => runs::latest_run_id(db).await?.ok_or(ReportError::NoRuns)?,
    };
    let events = runs::run_events(db, &run_id).await?;
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Err(ReportError::UnknownRun(run_id).into());
    };
    let finished = events.iter().rev().find(|e| e.event == RUN_FINISHED);
    let operation = events
        .iter()
        .find_map(|e| e.detail.get("operation").and_then(|o| o.as_str()).map(str::to_string))
        .unwrap_or_else(|| {
            if events.iter().any(|e| e.event == "reverted") {
                "down".into()
            } else {
                "up".into()
            }
        });
    let outcome = match finished.and_then(|f| f.detail.get("outcome")).and_then(|o| o.as_str()) {
        Some(o) => o.to_string(),
        None if events.iter().any(|e| e.event == "refused") => "refused".into(),
        None if events.iter().any(|e| e.event == "failed") => "failed".into(),
        // No end recorded: the run is still going only while a live process holds the lock
        // and no later run started; otherwise it was killed (or lost its connection for good).
        None if run_is_live(project, db, &run_id).await? => "running".into(),
        None => INTERRUPTED.into(),
    };
    let started_at = first.at.clone();
    let finished_at = finished.unwrap_or(last).at.clone();
    let mut steps = step_reports(project, db, &run_id, &events).await?;
    if outcome == INTERRUPTED {
        for s in steps.iter_mut().filter(|s| s.status == "running") {
            s.status = INTERRUPTED.into();
        }
    }
    let mut rejects = Vec::new();
    for (step, rule, count) in runs::rejects_by_rule(db, &run_id).await? {
        let examples = runs::reject_examples(db, &run_id, &step, &rule, EXAMPLES_PER_RULE)
            .await?
            .iter()
            .map(example)
            .collect();
        rejects.push(RejectGroup {
            step,
            rule: clean(&rule),
            count,
            examples,
        });
    }
    let (opened, decided) = runs::discrepancies_between(db, &started_at, &finished_at).await?;
    let rollbacks = events
        .iter()
        .filter(|e| e.event == "reverted")
        .map(|e| RollbackEntry {
            version: e.version.clone().unwrap_or_default(),
            at: e.at.clone(),
            by: e.os_user.clone(),
        })
        .collect();
    let next_run = runs::next_run_start(db, &run_id, last.id).await?;
    let verify = runs::latest_event_between(db, VERIFIED, first.id, next_run)
        .await?
        .and_then(|e| verify_summary(&e));
    let window = project
        .config
        .window
        .as_ref()
        .and_then(|w| window_report(&w.start.to_rfc3339(), &w.end.to_rfc3339(), &started_at, &finished_at));
    Ok(RunReport {
        run_id,
        operation,
        os_user: first.os_user.clone(),
        host: first.host.clone(),
        started_at,
        finished_at,
        outcome,
        project: project.config.name.clone(),
        steps,
        rejects,
        discrepancies: DiscrepancyCounts { opened, decided },
        rollbacks,
        verify,
        window,
    })
}

/// The outcome of a run that recorded no end and whose process is gone.
const INTERRUPTED: &str = "interrupted";

/// Whether `run_id` is the latest run and a live process holds the target's run lock.
async fn run_is_live(project: &Project, db: &Db, run_id: &str) -> Result<bool> {
    if runs::latest_run_id(db).await?.as_deref() != Some(run_id) {
        return Ok(false);
    }
    let stale = std::time::Duration::from_secs(project.config.defaults.lock_stale_after_secs);
    Ok(lock::current_holder(db, stale).await?.is_some())
}

/// The ledger event that closes a run (written by [`after_run`]).
pub const RUN_FINISHED: &str = "run_finished";
/// The ledger event of a verification (written by `verify`).
pub use crate::engine::ops::verify::VERIFIED_EVENT as VERIFIED;

/// Per step the run touched, in the order it touched them: the ledger's row when this run is
/// the last that wrote it, else the counts of the run's own last event of the step.
async fn step_reports(project: &Project, db: &Db, run_id: &str, events: &[HistoryEntry]) -> Result<Vec<StepReport>> {
    let ledger_rows = ledger::load(db).await?;
    let mut versions: Vec<String> = Vec::new();
    for e in events {
        if let Some(v) = &e.version
            && !versions.contains(v)
        {
            versions.push(v.clone());
        }
    }
    let mut out = Vec::new();
    for v in versions {
        let row = ledger_rows.iter().find(|r| r.version == v);
        let name = project
            .steps
            .iter()
            .find(|s| s.version == v)
            .map(|s| s.name.clone())
            .or_else(|| row.map(|r| r.name.clone()))
            .unwrap_or_default();
        let (status, counts, duration_ms, error) = match row {
            Some(r) if r.run_id.as_deref() == Some(run_id) && r.status.as_str() != "reverted" => {
                (r.status.as_str().to_string(), r.counts, r.duration_ms, r.error.clone())
            }
            _ => {
                let last = events.iter().rev().find(|e| {
                    e.version.as_deref() == Some(v.as_str())
                        && matches!(
                            e.event.as_str(),
                            "applied" | "failed" | "aborted" | "reverted" | "started" | "resumed"
                        )
                });
                let status = match last.map(|e| e.event.as_str()) {
                    Some("aborted") => "interrupted",
                    Some("started" | "resumed") => "running",
                    Some(s) => s,
                    None => "unknown",
                }
                .to_string();
                let counts: Counts = last
                    .and_then(|e| e.detail.get("counts"))
                    .and_then(|c| serde_json::from_value(c.clone()).ok())
                    .unwrap_or_default();
                let duration = last.and_then(|e| e.detail.get("duration_ms")).and_then(|d| d.as_i64());
                let error = last
                    .and_then(|e| e.detail.get("error"))
                    .and_then(|d| d.as_str())
                    .map(str::to_string);
                (status, counts, duration, error)
            }
        };
        out.push(StepReport {
            version: v,
            name,
            status,
            source: counts.source,
            written: counts.written,
            skipped: counts.skipped,
            rejected: counts.rejected,
            merged: counts.merged,
            warnings: counts.warnings,
            duration_ms,
            error: error.map(|e| clean(&e)),
        });
    }
    Ok(out)
}

fn example(r: &RejectRecord) -> RejectExample {
    // A secret value may be quoted in the reason ("password_hash: 'x' is too short").
    let mut reason = r.reason.clone();
    if let serde_json::Value::Object(m) = &r.row {
        for (k, v) in m {
            if let Some(s) = v.as_str()
                && is_secret_column(k)
                && s.chars().count() >= 3
            {
                reason = reason.replace(s, REDACTED);
            }
        }
    }
    RejectExample {
        source_key: clean(&r.source_key),
        reason: clean(&reason),
        field: r.field.clone(),
        row: redact_row(&r.row),
    }
}

/// The row with every secret-looking column's value (not NULL) replaced by `[redacted]`, and
/// URL passwords in the others.
pub fn redact_row(row: &serde_json::Value) -> serde_json::Value {
    match row {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if is_secret_column(k) && !v.is_null() {
                        serde_json::Value::String(REDACTED.into())
                    } else if let serde_json::Value::String(s) = v {
                        serde_json::Value::String(clean(s))
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Text as a report may hold it: URL passwords, `password=` values and every secret a URL of
/// this process carried are replaced by `[redacted]`.
pub fn clean(text: &str) -> String {
    let scrubbed = crate::engine::config::redact_url(text);
    if scrubbed == text {
        text.to_string()
    } else {
        scrubbed.replace("***", REDACTED)
    }
}

fn verify_summary(e: &HistoryEntry) -> Option<VerifySummary> {
    let d = &e.detail;
    Some(VerifySummary {
        at: e.at.clone(),
        ok: d.get("ok")?.as_bool()?,
        passed: d.get("passed").and_then(|n| n.as_u64()).unwrap_or(0),
        failed: d.get("failed").and_then(|n| n.as_u64()).unwrap_or(0),
        checks: d
            .get("checks")
            .and_then(|c| c.as_array())
            .map(|cs| {
                cs.iter()
                    .map(|c| VerifyCheckLine {
                        name: clean(c.get("name").and_then(|n| n.as_str()).unwrap_or_default()),
                        ok: c.get("ok").and_then(|o| o.as_bool()).unwrap_or(false),
                        detail: clean(c.get("detail").and_then(|n| n.as_str()).unwrap_or_default()),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn window_report(start: &str, end: &str, started_at: &str, finished_at: &str) -> Option<WindowReport> {
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    let (ws, we, rs, rf) = (t(start)?, t(end)?, t(started_at)?, t(finished_at)?);
    Some(WindowReport {
        start: start.to_string(),
        end: end.to_string(),
        window_ms: (we - ws).num_milliseconds(),
        run_ms: (rf - rs).num_milliseconds(),
        finished_in_window: rf >= ws && rf <= we,
        margin_ms: (we - rf).num_milliseconds(),
    })
}

/// The end of a real run: record `run_finished` with its outcome in the ledger, then write
/// `reports/<run_id>.md` and `.json` into the project folder. Returns the Markdown file.
pub async fn after_run(project: &Project, run_id: &str, outcome: &str) -> Result<PathBuf> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let written = async {
        ledger::append_event_db(
            &target,
            Some(run_id),
            None,
            RUN_FINISHED,
            &serde_json::json!({"outcome": outcome, "at": now_iso()}),
        )
        .await?;
        let report = build_in(project, &target, Some(run_id)).await?;
        write_files(&project.config.dir, &report)
    }
    .await;
    target.close().await;
    written
}

/// Write a report as `reports/<run_id>.md` and `.json` under `dir`; returns the `.md` path.
pub fn write_files(dir: &Path, report: &RunReport) -> Result<PathBuf> {
    let folder = dir.join(REPORTS_DIR);
    std::fs::create_dir_all(&folder).map_err(|e| color_eyre::eyre::eyre!("cannot create {}: {e}", folder.display()))?;
    let md = folder.join(format!("{}.md", report.run_id));
    let json = folder.join(format!("{}.json", report.run_id));
    std::fs::write(&md, markdown(report)).map_err(|e| color_eyre::eyre::eyre!("cannot write {}: {e}", md.display()))?;
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(&json, text).map_err(|e| color_eyre::eyre::eyre!("cannot write {}: {e}", json.display()))?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use crate::engine::ops::report::*;

    #[test]
    fn secret_columns_and_url_passwords_are_redacted() {
        let row = serde_json::json!({"id": 7, "password_hash": "$2b$12$abc", "api_key": null, "note": "see postgres://u:hunter22@db/x"});
        let r = redact_row(&row);
        assert_eq!(r["password_hash"], REDACTED);
        assert_eq!(r["api_key"], serde_json::Value::Null, "NULL is no secret");
        assert_eq!(r["id"], 7);
        let note = r["note"].as_str().unwrap();
        assert!(!note.contains("hunter22") && note.contains(REDACTED), "{note}");
    }

    #[test]
    fn the_window_says_whether_the_run_fit() {
        let w = window_report(
            "2026-01-01T22:00:00+00:00",
            "2026-01-02T02:00:00+00:00",
            "2026-01-01T23:00:00.000Z",
            "2026-01-02T01:30:00.000Z",
        )
        .unwrap();
        assert!(w.finished_in_window);
        assert_eq!(w.margin_ms, 30 * 60 * 1000);
        assert_eq!(w.run_ms, 150 * 60 * 1000);
        let late = window_report(
            "2026-01-01T22:00:00+00:00",
            "2026-01-02T02:00:00+00:00",
            "2026-01-01T23:00:00.000Z",
            "2026-01-02T02:10:00.000Z",
        )
        .unwrap();
        assert!(!late.finished_in_window);
        assert_eq!(late.margin_ms, -10 * 60 * 1000);
    }
}
