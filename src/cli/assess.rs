//! `cutover assess [--json] [--sample N]`: what `up` would do to the pending steps, read-only.

use crate::cli::exit;
use crate::engine::ops::assess::assess;
use crate::engine::project::{Project, StepKind};
use crate::engine::protocol::assess::AssessReport;
use crate::engine::store::lock::LockError;
use color_eyre::eyre::Result;
use std::fmt::Write as _;

/// Exit 0 when every step could be assessed (rejects are data, not a failure), else 1.
pub async fn run(project: &Project, sample: Option<u64>, json: bool) -> Result<i32> {
    let report = match assess(project, sample).await {
        Ok(r) => r,
        Err(e) => match e.downcast_ref::<LockError>() {
            Some(held @ LockError::Held(_)) => {
                if json {
                    println!("{}", serde_json::json!({"event": "refused", "error": held.to_string()}));
                } else {
                    eprintln!("refused: {held}");
                }
                return Ok(exit::LOCKED);
            }
            _ => return Err(e),
        },
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.steps.iter().any(|s| s.error.is_some()) {
        exit::FAILED
    } else {
        exit::OK
    })
}

pub fn render(r: &AssessReport) -> String {
    let mut out = String::new();
    if r.steps.is_empty() {
        out.push_str("nothing pending: every step is applied\n");
        return out;
    }
    if let Some(n) = r.sampled {
        let _ = writeln!(
            out,
            "sample: the first {n}+ rows of each step (whole batches), not the whole source"
        );
    }
    for s in &r.steps {
        let _ = writeln!(out, "{} {} ({})", s.version, s.name, kind(s.kind));
        if let Some(e) = &s.error {
            let _ = writeln!(out, "  ✗ cannot be assessed: {e}");
            continue;
        }
        if s.kind == StepKind::Schema {
            continue;
        }
        let _ = writeln!(
            out,
            "  source {}  read {}  would write {}  skip {}{}  reject {}  → {}",
            s.source_rows.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
            s.rows_read,
            s.would_write,
            s.would_skip,
            if s.would_merge > 0 {
                format!("  merge {}", s.would_merge)
            } else {
                String::new()
            },
            s.rejects_by_rule.values().sum::<u64>(),
            s.target_table.as_deref().unwrap_or("?")
        );
        if !s.rejects_by_rule.is_empty() {
            let _ = writeln!(out, "  rejects by rule: {}", pairs(&s.rejects_by_rule));
        }
        if !s.warnings_by_rule.is_empty() {
            let _ = writeln!(out, "  warnings by rule: {}", pairs(&s.warnings_by_rule));
        }
        if s.duplicate_keys > 0 || s.unresolved_references > 0 {
            let _ = writeln!(
                out,
                "  duplicate keys {}  unresolved references {}",
                s.duplicate_keys, s.unresolved_references
            );
        }
        let blanks: Vec<String> = s
            .blank_rates
            .iter()
            .filter(|(_, r)| **r > 0.0)
            .map(|(c, r)| format!("{c} {:.1}%", r * 100.0))
            .collect();
        if !blanks.is_empty() {
            let _ = writeln!(out, "  blank: {}", blanks.join(", "));
        }
        for e in &s.examples {
            let _ = writeln!(out, "    e.g. key {} [{}]: {}", e.source_key, e.rule, e.reason);
        }
        let _ = writeln!(out, "  estimate {}", duration(s.estimated_ms));
    }
    let writes: u64 = r.steps.iter().map(|s| s.would_write).sum();
    let rejects: u64 = r.steps.iter().map(|s| s.rejects_by_rule.values().sum::<u64>()).sum();
    let _ = writeln!(
        out,
        "{} pending step(s): {writes} rows would be written, {rejects} rejected; estimated {} (from {} rates); nothing was kept (one rolled-back transaction)",
        r.steps.len(),
        duration(r.estimated_ms),
        if r.estimate_basis == "ledger" {
            "this target's applied steps'"
        } else {
            "this pass's measured"
        }
    );
    out
}

fn kind(k: StepKind) -> &'static str {
    match k {
        StepKind::Schema => "schema",
        StepKind::Data => "data",
        StepKind::Merge => "merge",
    }
}

fn pairs(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

fn duration(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}
