//! `cutover rejects ...`: the reject store from the command line.

use crate::cli::exit;
use crate::engine::db::{Db, Role};
use crate::engine::project::Project;
use crate::engine::store::{RejectFilter, RejectRecord, RejectStore, redacted_row};
use clap::Subcommand;
use color_eyre::eyre::{Result, eyre};
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum RejectsAction {
    /// List rejected rows (open and resolved).
    List {
        /// Only this step's rejects (its version).
        #[arg(long)]
        step: Option<String>,
        /// Only this rule's rejects (required, email, lookup, …).
        #[arg(long)]
        rule: Option<String>,
        /// Only rows still waiting to be fixed.
        #[arg(long)]
        open: bool,
        /// Include warnings (rows written with a note).
        #[arg(long)]
        warnings: bool,
    },
    /// One rejected row in full (secrets redacted).
    Show {
        /// The reject's id (see `rejects list`).
        id: i64,
    },
    /// Set a field of a rejected row's source data, then `retry` it.
    Fix {
        /// The reject's id (see `rejects list`).
        id: i64,
        /// FIELD=VALUE (an empty VALUE sets NULL).
        assignment: String,
    },
    /// Retry rejected rows through their step: one id, or all open rows of --step.
    Retry {
        /// The reject's id; without it, every open reject of --step.
        id: Option<i64>,
        /// Retry every open reject of this step (its version).
        #[arg(long)]
        step: Option<String>,
    },
    /// Export rejects to CSV (secrets redacted).
    Export {
        /// The CSV file to write.
        #[arg(long)]
        csv: PathBuf,
        /// Only this step's rejects (its version).
        #[arg(long)]
        step: Option<String>,
    },
}

fn public(r: &RejectRecord) -> serde_json::Value {
    json!({
        "id": r.id,
        "step": r.step,
        "source_table": r.source_table,
        "source_key": r.source_key,
        "field": r.field,
        "rule": r.rule,
        "reason": r.reason,
        "level": r.level,
        "state": r.state,
        "waits_for": r.waits_for_table.as_ref().map(|t| format!("{t} {}", r.waits_for_key.clone().unwrap_or_default())),
        "row": redacted_row(&r.row),
        "run_id": r.run_id,
        "created_at": r.created_at,
        "resolved_at": r.resolved_at,
    })
}

pub async fn run(project: &Project, action: &RejectsAction, json_out: bool) -> Result<i32> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let code = match action {
        RejectsAction::List {
            step,
            rule,
            open,
            warnings,
        } => {
            let rows = RejectStore::list(
                &target,
                &RejectFilter {
                    step: step.clone(),
                    rule: rule.clone(),
                    open_only: *open,
                    include_warnings: *warnings,
                    ..Default::default()
                },
            )
            .await?;
            if json_out {
                println!("{}", serde_json::Value::Array(rows.iter().map(public).collect()));
            } else if rows.is_empty() {
                println!("no rejected rows");
            } else {
                println!(
                    "{:>6} {:<16} {:<14} {:<12} {:<9} {:<10} REASON",
                    "ID", "STEP", "SOURCE", "KEY", "STATE", "RULE"
                );
                for r in &rows {
                    println!(
                        "{:>6} {:<16} {:<14} {:<12} {:<9} {:<10} {}",
                        r.id, r.step, r.source_table, r.source_key, r.state, r.rule, r.reason
                    );
                }
            }
            exit::OK
        }
        RejectsAction::Show { id } => {
            let mut tx = target.begin().await?;
            let r = RejectStore::get(&mut tx, *id)
                .await?
                .ok_or_else(|| eyre!("no rejected row with id {id}"))?;
            tx.rollback().await?;
            if json_out {
                println!("{}", public(&r));
            } else {
                println!(
                    "reject {} ({}), step {}, {} {}",
                    r.id, r.state, r.step, r.source_table, r.source_key
                );
                println!("rule: {}  field: {}", r.rule, r.field.as_deref().unwrap_or("-"));
                println!("reason: {}", r.reason);
                if let Some(t) = &r.waits_for_table {
                    println!("waits for: {t} {}", r.waits_for_key.as_deref().unwrap_or(""));
                }
                println!("source row:");
                if let Some(m) = redacted_row(&r.row).as_object() {
                    for (k, v) in m {
                        println!("  {k:<20} {v}");
                    }
                }
            }
            exit::OK
        }
        RejectsAction::Fix { id, assignment } => {
            let (field, value) = assignment
                .split_once('=')
                .ok_or_else(|| eyre!("'{assignment}' is not FIELD=VALUE"))?;
            crate::engine::ops::rejects::fix_reject(project, *id, field, value).await?;
            if json_out {
                println!("{}", json!({"fixed": id, "field": field}));
            } else {
                println!("reject {id}: {field} set; run `cutover rejects retry {id}` to write it");
            }
            exit::OK
        }
        RejectsAction::Retry { id, step } => {
            if id.is_none() && step.is_none() {
                return Err(eyre!(
                    "say which rows: `rejects retry ID` or `rejects retry --step VERSION`"
                ));
            }
            let rep = crate::engine::ops::rejects::retry_rejects(project, *id, step.as_deref()).await?;
            if json_out {
                println!("{}", serde_json::to_string(&rep)?);
            } else {
                println!(
                    "written: {}  still rejected: {}",
                    rep.written.len(),
                    rep.still_rejected.len()
                );
                for (i, why) in &rep.still_rejected {
                    println!("  {i}: {why}");
                }
            }
            if rep.still_rejected.is_empty() {
                exit::OK
            } else {
                exit::FAILED
            }
        }
        RejectsAction::Export { csv: path, step } => {
            // Streamed from the store a chunk at a time: a million rejects never sit in memory.
            let rows = crate::engine::ops::rejects::export_csv(
                project,
                &target,
                &RejectFilter {
                    step: step.clone(),
                    include_warnings: true,
                    ..Default::default()
                },
                path,
            )
            .await?;
            if json_out {
                println!("{}", json!({"exported": rows, "file": path.display().to_string()}));
            } else {
                println!("exported {rows} rows to {}", path.display());
            }
            exit::OK
        }
    };
    target.close().await;
    Ok(code)
}
