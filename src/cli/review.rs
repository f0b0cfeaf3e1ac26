//! `cutover review ...`: the discrepancy review queue from the command line.

use crate::cli::exit;
use crate::engine::db::{Db, Role};
use crate::engine::ops::review::{self, Decision};
use crate::engine::project::Project;
use clap::Subcommand;
use color_eyre::eyre::{Result, eyre};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ReviewAction {
    /// List discrepancies.
    List {
        /// Only those still waiting for a decision.
        #[arg(long)]
        open: bool,
    },
    /// One discrepancy in full.
    Show {
        /// The discrepancy's id (see `review list`).
        id: i64,
    },
    /// Decide: --take a | b | value=VALUE | split.
    Decide {
        /// The discrepancy's id (see `review list`).
        id: i64,
        /// a (side A's value), b (side B's), value=VALUE (another), or split (B is not the
        /// same entity).
        #[arg(long)]
        take: String,
        /// A note recorded with the decision in the audit trail.
        #[arg(long)]
        note: Option<String>,
    },
    /// Export discrepancies to CSV (fill the `decision` column and import it back).
    Export {
        /// The CSV file to write.
        #[arg(long)]
        csv: PathBuf,
    },
    /// Apply decisions from a CSV with columns id, decision[, note].
    Import {
        /// The CSV file to read (columns id, decision[, note]).
        #[arg(long)]
        csv: PathBuf,
    },
}

pub async fn run(project: &Project, action: &ReviewAction, json: bool) -> Result<i32> {
    match action {
        ReviewAction::List { open } => {
            let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
            let items = review::list(&target, *open).await?;
            target.close().await;
            if json {
                println!("{}", serde_json::to_string(&items)?);
            } else if items.is_empty() {
                println!("no discrepancies");
            } else {
                println!(
                    "{:>6} {:<9} {:<14} {:<22} {:<22} {:<12} {:<12}",
                    "ID", "STATE", "FIELD", "A", "B", "KEY A", "KEY B"
                );
                for d in &items {
                    println!(
                        "{:>6} {:<9} {:<14} {:<22} {:<22} {:<12} {:<12}",
                        d.id,
                        d.state,
                        d.field,
                        d.values[0].as_deref().unwrap_or("∅"),
                        d.values[1].as_deref().unwrap_or("∅"),
                        d.keys[0],
                        d.keys[1]
                    );
                }
                let open = items.iter().filter(|d| d.state == "open").count();
                println!("{} open, {} decided or void", open, items.len() - open);
            }
            Ok(exit::OK)
        }
        ReviewAction::Show { id } => {
            let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
            let d = review::list(&target, false)
                .await?
                .into_iter()
                .find(|d| d.id == *id)
                .ok_or_else(|| eyre!("no discrepancy with id {id}"))?;
            target.close().await;
            if json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                println!(
                    "discrepancy {} ({}) on {} {} field {}",
                    d.id, d.state, d.entity_table, d.entity_id, d.field
                );
                println!(
                    "  {:<10} {:<12} {}",
                    d.sides[0],
                    d.keys[0],
                    d.values[0].as_deref().unwrap_or("∅")
                );
                println!(
                    "  {:<10} {:<12} {}",
                    d.sides[1],
                    d.keys[1],
                    d.values[1].as_deref().unwrap_or("∅")
                );
                if let Some(dec) = &d.decision {
                    println!(
                        "decided {dec} by {} at {}{}",
                        d.reviewer.as_deref().unwrap_or("?"),
                        d.decided_at.as_deref().unwrap_or("?"),
                        d.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default()
                    );
                }
            }
            Ok(exit::OK)
        }
        ReviewAction::Decide { id, take, note } => {
            let decision = Decision::parse(take)?;
            let msg = review::decide(project, *id, &decision, note.as_deref()).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"decided": id, "decision": decision.label(), "message": msg})
                );
            } else {
                println!("{msg}");
            }
            Ok(exit::OK)
        }
        ReviewAction::Export { csv: path } => {
            let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
            let items = review::list(&target, false).await?;
            target.close().await;
            let mut w = csv::Writer::from_path(path).map_err(|e| eyre!("cannot write {}: {e}", path.display()))?;
            w.write_record([
                "id",
                "state",
                "entity_id",
                "field",
                "value_a",
                "value_b",
                "key_a",
                "key_b",
                "decision",
                "note",
            ])?;
            for d in &items {
                w.write_record([
                    d.id.to_string(),
                    d.state.clone(),
                    d.entity_id.clone(),
                    d.field.clone(),
                    d.values[0].clone().unwrap_or_default(),
                    d.values[1].clone().unwrap_or_default(),
                    d.keys[0].clone(),
                    d.keys[1].clone(),
                    String::new(),
                    d.note.clone().unwrap_or_default(),
                ])?;
            }
            w.flush()?;
            println!("exported {} discrepancies to {}", items.len(), path.display());
            Ok(exit::OK)
        }
        ReviewAction::Import { csv: path } => {
            let results = review::import_csv(project, path).await?;
            let failed = results.iter().filter(|r| r.1.is_err()).count();
            if json {
                println!(
                    "{}",
                    serde_json::json!(
                        results
                            .iter()
                            .map(|(id, r)| match r {
                                Ok(m) => serde_json::json!({"id": id, "ok": true, "message": m}),
                                Err(e) => serde_json::json!({"id": id, "ok": false, "error": e}),
                            })
                            .collect::<Vec<_>>()
                    )
                );
            } else {
                for (id, r) in &results {
                    match r {
                        Ok(m) => println!("{m}"),
                        Err(e) => println!("discrepancy {id}: not applied: {e}"),
                    }
                }
                println!("{} applied, {failed} refused", results.len() - failed);
            }
            Ok(if failed == 0 { exit::OK } else { exit::FAILED })
        }
    }
}
