//! Pre-flight: before a run writes anything, load and check every pending step (its files,
//! the source table, columns and key, the target table and columns), so a problem in step 7
//! refuses the run up front instead of failing it after steps 1 to 6 were applied.

use crate::engine::data::pipeline::CompiledStep;
use crate::engine::data::reader::SourceReader;
use crate::engine::data::writer::TargetWriter;
use crate::engine::db::{Db, DbTx};
use crate::engine::exec::RunCtx;
use crate::engine::project::{StepDef, StepKind};
use crate::engine::source::file::FileSource;
use std::sync::Arc;

/// One thing that would make a step fail, with the step it belongs to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    pub version: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.version, self.message)
    }
}

/// Check every step of `plan`; returns all problems found (empty: the run may start).
/// The key checks (each a pass over its source, a view costing a second or more at 200k rows)
/// run two at a time once every cheaper check is done; the problems come out in plan order.
pub async fn check(ctx: &RunCtx, plan: &[StepDef]) -> Vec<Problem> {
    use futures::StreamExt;
    // (step index, check order within the step, problem): sorted into plan order at the end.
    let mut problems: Vec<(usize, u8, Problem)> = Vec::new();
    let mut key_checks = Vec::new();
    for (i, step) in plan.iter().enumerate() {
        let problem = |m: String| Problem {
            version: step.version.clone(),
            message: m,
        };
        let mut problems = Found {
            at: i,
            list: &mut problems,
        };
        match step.kind {
            StepKind::Schema => {
                if let Err(e) = step.read("up.sql") {
                    problems.push(problem(format!("{e:#}")));
                }
            }
            StepKind::Data | StepKind::Merge => {
                let compiled: Vec<CompiledStep> = match load_sides(step) {
                    Ok(c) => c,
                    Err(e) => {
                        problems.push(problem(format!("{e:#}")));
                        continue;
                    }
                };
                // A file step needs no database: the project's source may be a folder.
                let source = if compiled.iter().any(|c| !c.spec.source.is_file()) {
                    match ctx.source().await {
                        Ok(s) => {
                            // Before the first count, so a count taken after it is known to
                            // hold at a step's end while nobody commits to the source.
                            ctx.preflight_counts.watch(s).await;
                            Some(s.clone())
                        }
                        Err(e) => {
                            problems.push(problem(format!("{e:#}")));
                            continue;
                        }
                    }
                } else {
                    None
                };
                let narrow = step.kind == StepKind::Data;
                let mut target_table = None;
                for c in compiled {
                    target_table.get_or_insert_with(|| {
                        (
                            c.spec.target.table.clone(),
                            c.target_columns.clone(),
                            c.spec.target.collection.is_some(),
                        )
                    });
                    let Some(source) = source.as_ref().filter(|_| !c.spec.source.is_file()) else {
                        if let Err(e) = check_file(ctx, c).await {
                            problems.push(problem(e));
                        }
                        continue;
                    };
                    let c_source_name = c.source_name.clone();
                    let reader = SourceReader::new(source.clone(), Arc::new(c), narrow);
                    if let Err(e) = reader.check_columns().await {
                        problems.push(problem(e));
                        continue;
                    }
                    if narrow {
                        let version = step.version.clone();
                        key_checks.push(async move {
                            match reader.check_keys().await {
                                Ok(Some(rows)) => {
                                    ctx.preflight_counts.remember(&version, &c_source_name, rows);
                                    None
                                }
                                Ok(None) => None,
                                Err(e) => Some((i, KEYS, Problem { version, message: e })),
                            }
                        });
                    }
                }
                // A collection's table is created by its step when missing.
                if let Some((table, columns, collection)) = target_table
                    && (!collection || collection_exists(ctx, &table).await)
                    && let Err(e) = check_target(ctx, &plan[..i], &table, &columns).await
                {
                    problems.after_keys(problem(e));
                }
            }
        }
    }
    let found: Vec<_> = futures::stream::iter(key_checks).buffer_unordered(2).collect().await;
    problems.extend(found.into_iter().flatten());
    problems.sort_by_key(|(i, order, _)| (*i, *order));
    problems.into_iter().map(|(_, _, p)| p).collect()
}

/// Where a step's problems go, in its check order: what is found before its key check, the
/// key check's own, then its target's.
struct Found<'a> {
    at: usize,
    list: &'a mut Vec<(usize, u8, Problem)>,
}

const BEFORE_KEYS: u8 = 0;
const KEYS: u8 = 1;
const AFTER_KEYS: u8 = 2;

impl Found<'_> {
    fn push(&mut self, p: Problem) {
        self.list.push((self.at, BEFORE_KEYS, p));
    }
    fn after_keys(&mut self, p: Problem) {
        self.list.push((self.at, AFTER_KEYS, p));
    }
}

/// A file step's file, read through before anything is written: it opens (it exists, the
/// sheet is there, it is not empty), its header has every column the step needs, and every
/// record reads (no unterminated quote, no row wider than the header, no invalid UTF-8).
/// The message names the file, line and column.
async fn check_file(ctx: &RunCtx, c: CompiledStep) -> Result<(), String> {
    let file = FileSource::new(&ctx.project.config, Arc::new(c)).map_err(|e| format!("{e:#}"))?;
    file.check_whole_file().await.map(|_| ())
}

fn load_sides(step: &StepDef) -> color_eyre::eyre::Result<Vec<CompiledStep>> {
    Ok(match step.kind {
        StepKind::Merge => {
            let m = crate::engine::steps::merge::MergeStep::load(step)?;
            vec![m.a, m.b]
        }
        _ => vec![crate::engine::ops::load_compiled(step)?],
    })
}

/// The target table must exist with the step's columns, or be created by a schema step that
/// runs before it in this plan.
async fn check_target(ctx: &RunCtx, earlier: &[StepDef], table: &str, columns: &[String]) -> Result<(), String> {
    let mut dry = ctx.dry_tx.lock().await;
    if created_by(earlier, table) && !table_exists(&ctx.target, dry.as_mut(), table).await {
        return Ok(());
    }
    // A table that a schema step outside this plan creates: say which step, rather than that
    // the step fails (a dry run of one step does not run the schema step before it).
    if !table_exists(&ctx.target, dry.as_mut(), table).await
        && let Some(creator) = ctx
            .project
            .steps
            .iter()
            .find(|s| created_by(std::slice::from_ref(*s), table))
    {
        let what = format!(
            "the table {table} is created by step {}, which has not run yet",
            creator.folder_name()
        );
        return Err(if ctx.dry_run {
            format!("would fail: {what}; dry-run from that step on (`cutover up --dry-run`) or apply it first")
        } else {
            format!("{what}; run it first")
        });
    }
    let found = match dry.as_mut() {
        Some(tx) => writer_in(tx, table, columns).await,
        None => TargetWriter::new(&ctx.target, table, columns).await,
    };
    found.map(|_| ()).map_err(|e| format!("{e:#}"))
}

async fn collection_exists(ctx: &RunCtx, table: &str) -> bool {
    let mut dry = ctx.dry_tx.lock().await;
    table_exists(&ctx.target, dry.as_mut(), table).await
}

async fn writer_in(tx: &mut DbTx, table: &str, columns: &[String]) -> color_eyre::eyre::Result<TargetWriter> {
    TargetWriter::new_in(tx, table, columns).await
}

async fn table_exists(db: &Db, tx: Option<&mut DbTx>, table: &str) -> bool {
    match tx {
        Some(tx) => crate::engine::data::writer::table_columns(tx, table)
            .await
            .map(|c| !c.is_empty())
            .unwrap_or(false),
        None => db.table_exists(table).await.unwrap_or(false),
    }
}

/// Whether a pending schema step before this one creates `table` (its up.sql names it in a
/// CREATE TABLE); the real check happens again when the data step starts.
fn created_by(earlier: &[StepDef], table: &str) -> bool {
    let t = table.to_ascii_lowercase();
    earlier.iter().filter(|s| s.kind == StepKind::Schema).any(|s| {
        let Ok(sql) = s.read("up.sql") else { return false };
        let sql = sql.to_ascii_lowercase();
        sql.match_indices("create table").any(|(at, _)| {
            let rest = sql[at + "create table".len()..].trim_start();
            let rest = rest.strip_prefix("if not exists").unwrap_or(rest).trim_start();
            let name: String = rest
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '(')
                .filter(|c| !matches!(c, '"' | '`' | '[' | ']'))
                .collect();
            name == t || name.rsplit('.').next() == Some(t.as_str())
        })
    })
}
