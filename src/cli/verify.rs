//! `cutover verify [--json]`: check the target against the source and print the checks.

use crate::cli::exit;
use crate::engine::ops::verify::{Check, VerifyReport, verify};
use crate::engine::project::Project;
use color_eyre::eyre::Result;

/// Run every check; exit code 5 when one fails.
pub async fn run(project: &Project, json: bool) -> Result<i32> {
    let report = verify(project).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render(project, &report));
    }
    Ok(if report.ok { exit::OK } else { exit::VERIFY_FAILED })
}

/// After `down`: the rollback checks of verify (each rolled-back table against its checksum
/// from before its step), and whether anything else fails; exit code 5 when a rolled-back table
/// is not back to its state before the step.
pub async fn after_rollback(project: &Project, json: bool) -> Result<i32> {
    let report = match verify(project).await {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("the rollback is done, but verify could not run: {e:#}");
            if json {
                println!("{}", serde_json::json!({"event": "unverified", "message": msg}));
            } else {
                eprintln!("{msg}");
            }
            return Ok(exit::VERIFY_FAILED);
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string(&crate::engine::protocol::EngineEvent::Verified(report.clone()))?
        );
    } else {
        for c in report
            .checks
            .iter()
            .filter(|c| c.kind == crate::engine::ops::verify::CheckKind::Rollback)
        {
            println!("{:<5} {} · {}", c.result_label(), c.name, c.detail);
        }
        let failed: Vec<&str> = report.failed().map(|c| c.name.as_str()).collect();
        if failed.is_empty() {
            println!("verified after the rollback: all {} checks pass", report.checks.len());
        } else {
            println!(
                "verify after the rollback: {} of {} checks FAILED ({}); see `cutover verify`",
                failed.len(),
                report.checks.len(),
                failed.join("; ")
            );
        }
    }
    let rollback_ok = report
        .failed()
        .all(|c| c.kind != crate::engine::ops::verify::CheckKind::Rollback);
    Ok(if rollback_ok { exit::OK } else { exit::VERIFY_FAILED })
}

fn side(m: &Option<crate::engine::ops::verify::Measure>) -> String {
    m.as_ref().map(|m| m.to_string()).unwrap_or_else(|| "-".into())
}

fn width(checks: &[Check], min: usize, max: usize, f: impl Fn(&Check) -> String) -> usize {
    checks
        .iter()
        .map(|c| f(c).chars().count())
        .max()
        .unwrap_or(0)
        .clamp(min, max)
}

fn pad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n >= w {
        s.to_string()
    } else {
        format!("{s}{}", " ".repeat(w - n))
    }
}

/// The report as a table, one line per check, and a closing verdict.
pub fn render(project: &Project, report: &VerifyReport) -> String {
    let mut out = format!(
        "verify {}: target {}",
        project.config.name,
        project.config.target.redacted()
    );
    if let Some(s) = &project.config.source {
        out.push_str(&format!(", source {}", s.redacted()));
    }
    out.push('\n');
    let checks = &report.checks;
    let wk = width(checks, 4, 14, |c| c.kind.as_str().to_string());
    let wn = width(checks, 5, 60, |c| c.name.clone());
    let ws = width(checks, 6, 32, |c| side(&c.source));
    let wt = width(checks, 6, 32, |c| side(&c.target));
    let line = |cols: [&str; 6]| {
        format!(
            "{} {} {} {} {} {}",
            pad(cols[0], 6),
            pad(cols[1], wk),
            pad(cols[2], wn),
            pad(cols[3], ws),
            pad(cols[4], wt),
            cols[5]
        )
        .trim_end()
        .to_string()
    };
    out.push_str(&line(["RESULT", "KIND", "CHECK", "SOURCE", "TARGET", "DETAIL"]));
    out.push('\n');
    for c in checks {
        out.push_str(&line([
            c.result_label(),
            c.kind.as_str(),
            &c.name,
            &side(&c.source),
            &side(&c.target),
            &c.detail,
        ]));
        out.push('\n');
    }
    let failed = report.failed().count();
    let fixed = checks.iter().filter(|c| c.result_label() == "fixed").count();
    let skipped = checks.iter().filter(|c| c.result_label() == "skip").count();
    let mut expected = Vec::new();
    if fixed > 0 {
        expected.push(format!("{fixed} pass after an operator's fix"));
    }
    if skipped > 0 {
        expected.push(format!("{skipped} not checked: their step was rolled back"));
    }
    let expected = if expected.is_empty() {
        String::new()
    } else {
        format!(" ({})", expected.join("; "))
    };
    if failed == 0 {
        out.push_str(&format!("verified: all {} checks passed{expected}\n", checks.len()));
    } else {
        out.push_str(&format!(
            "FAILED: {failed} of {} checks failed ({}){expected}\n",
            checks.len(),
            report.failed().map(|c| c.name.as_str()).collect::<Vec<_>>().join("; ")
        ));
    }
    out
}
