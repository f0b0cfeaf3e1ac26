//! Printing for the headless face: a readable text form, or JSON (`--json`).

use crate::engine::plan::{StepStatus, one_line};
use crate::engine::project::Project;
use crate::engine::protocol::{EngineEvent, Operation};
use crate::engine::store::ledger::HistoryEntry;
use crate::engine::store::lock::LockHolder;
use serde_json::json;

pub struct EventPrinter {
    json: bool,
}

impl EventPrinter {
    pub fn new(json: bool) -> Self {
        EventPrinter { json }
    }

    pub fn print(&mut self, ev: &EngineEvent) {
        if self.json {
            if let Ok(s) = serde_json::to_string(ev) {
                println!("{s}");
            }
            return;
        }
        match ev {
            EngineEvent::Planned {
                operation,
                dry_run,
                steps,
                ..
            } => {
                if steps.is_empty() {
                    println!(
                        "nothing to do: no {} migrations",
                        if *operation == Operation::Down {
                            "applied"
                        } else {
                            "pending"
                        }
                    );
                } else {
                    println!(
                        "{}{} {} migration{}",
                        if *dry_run { "dry run: " } else { "" },
                        if *operation == Operation::Down {
                            "reverting"
                        } else {
                            "applying"
                        },
                        steps.len(),
                        if steps.len() == 1 { "" } else { "s" }
                    );
                }
            }
            EngineEvent::StepStarted {
                version, name, kind, ..
            } => println!("▶ {version} {name} ({})", kind.as_str()),
            EngineEvent::Statement { index, sql, .. } => println!("  [{index}] {sql};"),
            EngineEvent::Progress { .. } => {}
            EngineEvent::Rejected {
                source_table,
                source_key,
                reason,
                ..
            } => {
                println!("  rejected {source_table} {source_key}: {reason}")
            }
            EngineEvent::Flagged {
                source_key,
                field,
                reason,
                ..
            } => println!("  warning {source_key} {field}: {reason}"),
            EngineEvent::Paused { .. } => println!("  paused"),
            EngineEvent::Resumed { .. } => println!("  resumed"),
            EngineEvent::StepFinished {
                status,
                counts,
                duration_ms,
                dry_run,
                ..
            } => {
                let status = status.finished_label(*dry_run);
                if counts.source > 0 || counts.written > 0 {
                    println!("  ✓ {status} in {duration_ms} ms: {}", counts.equation());
                } else {
                    println!("  ✓ {status} in {duration_ms} ms");
                }
            }
            EngineEvent::Aborted { version, counts } => {
                println!(
                    "  ■ aborted {version} at a batch boundary: {}; `cutover up` resumes it",
                    counts.equation()
                )
            }
            EngineEvent::Failed {
                version,
                error,
                statement,
                counts,
                ..
            } => {
                match version {
                    Some(v) => eprintln!("  ✗ {v} failed: {error}"),
                    None => eprintln!("error: {error}"),
                }
                if let Some(s) = statement {
                    eprintln!("    statement: {}", one_line(s));
                }
                if let Some(c) = counts.filter(|c| c.source > 0) {
                    eprintln!("    committed before the failure: {}", c.equation());
                }
            }
            EngineEvent::Finished {
                ok,
                steps_done,
                dry_run,
                operation,
                ..
            } => {
                if *ok && *steps_done > 0 {
                    println!(
                        "{} {steps_done} migration{}{}",
                        match (operation.as_str(), *dry_run) {
                            ("down", false) => "reverted",
                            ("down", true) => "would revert",
                            (_, false) => "applied",
                            (_, true) => "would apply",
                        },
                        if *steps_done == 1 { "" } else { "s" },
                        if *dry_run {
                            " (dry run: nothing was written)"
                        } else {
                            ""
                        }
                    );
                }
            }
            EngineEvent::Notice { message, .. }
            | EngineEvent::Unverified { message }
            | EngineEvent::Decided { message, .. }
            | EngineEvent::Fixed { message, .. } => println!("{message}"),
            EngineEvent::Retried {
                written,
                still_rejected,
                first_still_rejected,
                error,
            } => match error {
                Some(e) => println!("{e}"),
                None => println!(
                    "retry: {written} written, {still_rejected} still rejected{}",
                    first_still_rejected
                        .as_ref()
                        .map(|(i, why)| format!(" ({i}: {why})"))
                        .unwrap_or_default()
                ),
            },
            EngineEvent::Snapshot(_)
            | EngineEvent::RollbackPreview(_)
            | EngineEvent::Verified(_)
            | EngineEvent::SourceCounts { .. } => {}
        }
    }
}

pub fn print_status(json: bool, project: &Project, status: &[StepStatus], holder: Option<&LockHolder>) {
    if json {
        let v = json!({
            "project": project.config.name,
            "target": project.config.target.redacted(),
            "locked_by": holder,
            "migrations": status.iter().map(|s| json!({
                "version": s.version,
                "name": s.name,
                "kind": s.kind,
                "state": s.state,
                "checksum": s.checksum,
                "checksum_state": s.checksum_state,
                "modified_file": s.modified_file,
                "baseline": s.baseline,
                "applied_at": s.ledger.as_ref().and_then(|l| l.applied_at.clone()),
                "applied_by": s.ledger.as_ref().and_then(|l| l.applied_by.clone()),
                "duration_ms": s.ledger.as_ref().and_then(|l| l.duration_ms),
                // A reverted step's books describe a run that was undone: `counts` is null and
                // the undone run's figures are under `reverted_counts`.
                "counts": s.ledger.as_ref().filter(|_| s.state != crate::engine::plan::StepState::Reverted).map(|l| l.counts),
                "reverted_counts": s.ledger.as_ref().filter(|_| s.state == crate::engine::plan::StepState::Reverted).map(|l| l.counts),
                "error": s.ledger.as_ref().and_then(|l| l.error.clone()),
                "failing_statement": s.ledger.as_ref().and_then(|l| l.failing_statement.clone()),
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
        return;
    }
    println!(
        "project {}  target {}",
        project.config.name,
        project.config.target.redacted()
    );
    if let Some(h) = holder {
        println!("locked by {h}");
    }
    if status.is_empty() {
        println!("no migrations yet: `cutover create NAME --kind sql|data|merge`");
        return;
    }
    println!(
        "{:<16} {:<32} {:<7} {:<11} {:<9} {:<24} {:>9} {:>9}",
        "VERSION", "NAME", "KIND", "STATE", "CHECKSUM", "APPLIED", "WRITTEN", "REJECTED"
    );
    for s in status {
        let l = s.ledger.as_ref();
        // A reverted step's ledger row still holds the undone run's books: they describe
        // nothing in the target now, so they are not listed as if they did.
        let books = l.filter(|_| s.state != crate::engine::plan::StepState::Reverted);
        println!(
            "{:<16} {:<32} {:<7} {:<11} {:<9} {:<24} {:>9} {:>9}",
            s.version,
            truncate(&s.name, 32),
            s.kind.as_str(),
            if s.baseline { "baseline" } else { s.state.as_str() },
            s.checksum_state,
            l.and_then(|l| l.applied_at.clone()).unwrap_or_default(),
            books.map(|l| l.counts.written.to_string()).unwrap_or_else(|| "-".into()),
            books.map(|l| l.counts.rejected.to_string()).unwrap_or_else(|| "-".into()),
        );
        if let Some(f) = &s.modified_file {
            println!("    modified since applied: {f}");
        }
        if let Some(e) = l.and_then(|l| l.error.as_ref()) {
            println!("    error: {}", one_line(e));
        }
        if s.state == crate::engine::plan::StepState::Interrupted {
            println!("    {}", resume_hint(s));
        }
    }
}

/// What resumes an interrupted step (said by `status` and the console's details alike).
pub fn resume_hint(s: &StepStatus) -> String {
    let done = s.ledger.as_ref().map(|l| l.counts.source).unwrap_or(0);
    interrupted_hint(s.kind, done)
}

pub fn interrupted_hint(kind: crate::engine::project::StepKind, rows_done: u64) -> String {
    if kind == crate::engine::project::StepKind::Schema {
        "interrupted: nothing of it committed; `cutover repair`, then `cutover up` runs it again".to_string()
    } else {
        format!("interrupted after {rows_done} source rows: `cutover up` resumes it from its last checkpoint")
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

pub fn print_history(json: bool, h: &[HistoryEntry]) {
    if json {
        println!("{}", serde_json::to_string(h).unwrap_or_else(|_| "[]".into()));
        return;
    }
    for e in h {
        println!(
            "{:<25} {:<16} {:<14} {}@{} {}",
            e.at,
            e.version.as_deref().unwrap_or("-"),
            e.event,
            e.os_user,
            e.host,
            if e.detail.is_null() {
                String::new()
            } else {
                e.detail.to_string()
            }
        );
    }
}

pub fn print_list(json: bool, what: &str, items: &[String]) {
    if json {
        println!("{}", json!({ what: items }));
    } else if items.is_empty() {
        println!("{what}: nothing to do");
    } else {
        for i in items {
            println!("{what}: {i}");
        }
    }
}
