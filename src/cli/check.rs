//! `cutover check [--json]`: can this project run? One line per check, ✓ or ✗.

use crate::cli::exit;
use crate::engine::config::Overrides;
use crate::engine::ops::check::check;
use crate::engine::project::Project;
use color_eyre::eyre::Result;

/// Exit 0 when every check passes, else 4 (refused).
pub async fn run(dir: &std::path::Path, overrides: &Overrides, json: bool) -> Result<i32> {
    let project = Project::load(dir, overrides)?;
    let report = check(&project).await;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for c in &report.checks {
            println!("{} {}: {}", if c.ok { "✓" } else { "✗" }, c.name, c.detail);
        }
        let failed = report.checks.iter().filter(|c| !c.ok).count();
        if failed == 0 {
            println!("all {} checks passed", report.checks.len());
        } else {
            println!("{failed} of {} checks failed", report.checks.len());
        }
    }
    Ok(if report.ok { exit::OK } else { exit::REFUSED })
}
