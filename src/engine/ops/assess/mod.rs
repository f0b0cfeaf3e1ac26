//! `assess`: what `up --continue-on-error` would do to the pending steps, without doing it.
//!
//! The pass is the ordinary step code run as a dry run: one transaction on the target for the
//! whole plan, always rolled back. So every step sees what the steps before it would have
//! written (a reference to a parent row an earlier step rejects does not resolve; one a merge
//! step would map does), and the target's own constraints refuse what they would refuse: the
//! counts are `up`'s counts by construction, not a model of them. Before the rollback the
//! rejects the pass stored are counted by rule. The source is read in batches as `up` reads
//! it; the process keeps nothing per row (the rows of the pass live in the target's
//! transaction until the rollback).

mod blanks;

use crate::engine::db::{Db, DbTx, Role};
use crate::engine::exec::{RunControl, RunCtx, StepResult, new_run_id};
use crate::engine::plan::{self, UpPlanOptions, compute_status};
use crate::engine::project::{Project, StepDef, StepKind};
use crate::engine::protocol::assess::{AssessExample, AssessReport, AssessStep};
use crate::engine::protocol::{Counts, EngineEvent};
use crate::engine::store::ledger::{self, LedgerRow, LedgerStatus};
use crate::engine::store::lock::{self, LockError};
use crate::engine::store::reject_tally;
use color_eyre::eyre::{Result, eyre};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rules whose rejects are references that did not resolve (`waiting`: the parent row is
/// itself rejected).
const REFERENCE_RULES: [&str; 3] = ["lookup", "reference_exists", "waiting"];
/// Events of a step in the pass waiting to be read (only progress matters, for `--sample`).
const STEP_EVENTS: usize = 256;
/// Rows assumed per second when nothing was measured (no applied step, nothing read).
const ASSUMED_ROWS_PER_SEC: f64 = 5000.0;

/// Assess the pending steps of `project`. `sample`: read at least that many rows per step
/// (whole batches) instead of the whole source.
pub async fn assess(project: &Project, sample: Option<u64>) -> Result<AssessReport> {
    let mut project = project.clone();
    // A SQLite target that does not exist yet is not created: the pass runs on an empty
    // scratch file, removed afterwards.
    let scratch = scratch_target(&mut project)?;
    let result = assess_on(Arc::new(project), sample).await;
    remove_scratch(scratch);
    result
}

/// Remove a scratch SQLite target and its WAL files.
pub(crate) fn remove_scratch(scratch: Option<std::path::PathBuf>) {
    if let Some(path) = scratch {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}

pub(crate) fn scratch_target(project: &mut Project) -> Result<Option<std::path::PathBuf>> {
    let Some(path) = crate::engine::db::sqlite_path(project.config.target.expose(), &project.config.dir) else {
        return Ok(None);
    };
    if path.exists() {
        return Ok(None);
    }
    let scratch = std::env::temp_dir().join(format!("cutover-assess-{}-{}.db", std::process::id(), new_run_id()));
    project.config.target = crate::engine::config::DbUrl::new(format!("sqlite://{}", scratch.display()));
    Ok(Some(scratch))
}

async fn assess_on(project: Arc<Project>, sample: Option<u64>) -> Result<AssessReport> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    // On MySQL the pass creates the tool's missing tables for real (DDL commits): they go
    // again afterwards, so assess leaves the target as it found it.
    let missing = match crate::engine::store::own_tables_missing(&target).await {
        Ok(m) => m,
        Err(e) => {
            target.close().await;
            return Err(e);
        }
    };
    let result = assess_target(&project, &target, sample).await;
    let cleaned = crate::engine::store::drop_created(&target, &missing).await;
    target.close().await;
    let report = result?;
    cleaned.map_err(|e| eyre!("assess could not drop the bookkeeping tables its pass created: {e:#}"))?;
    Ok(report)
}

async fn assess_target(project: &Arc<Project>, target: &Db, sample: Option<u64>) -> Result<AssessReport> {
    // Another process's run: the pass's transaction would hold SQLite's write lock (or wait
    // on the run's uncommitted rows) and stall that run into its retry budget. Only asked,
    // not taken: taking the lock would write to the target.
    let stale = std::time::Duration::from_secs(project.config.defaults.lock_stale_after_secs);
    if let Some(holder) = lock::current_holder(target, stale).await? {
        return Err(LockError::Held(holder).into());
    }
    let ledger_rows = ledger::load(target).await?;
    let status = compute_status(&project.steps, &ledger_rows);
    let plan = plan::plan_up(
        &status,
        &UpPlanOptions {
            to: None,
            only_next: false,
            only: None,
            allow_out_of_order: false,
        },
    )?;
    let run_id = new_run_id();
    // Nobody listens to the pre-flight: its sends fail at once and are ignored.
    let (events, _) = tokio::sync::mpsc::channel::<EngineEvent>(1);
    let ctx = step_ctx(project, target, &run_id, events);
    *ctx.dry_tx.lock().await = Some(target.begin_dry_run().await?);
    let problems = crate::engine::preflight::check(&ctx, &plan).await;
    let mut tx = ctx
        .dry_tx
        .lock()
        .await
        .take()
        .ok_or_else(|| eyre!("the assess transaction was lost"))?;
    let source = ctx.source.get().cloned();
    drop(ctx);
    let mut steps = Vec::new();
    for step in &plan {
        let mut a = AssessStep {
            version: step.version.clone(),
            name: step.name.clone(),
            kind: step.kind,
            target_table: None,
            source_rows: None,
            rows_read: 0,
            would_write: 0,
            would_skip: 0,
            would_merge: 0,
            rejects_by_rule: BTreeMap::new(),
            warnings_by_rule: BTreeMap::new(),
            examples: Vec::new(),
            blank_rates: BTreeMap::new(),
            duplicate_keys: 0,
            unresolved_references: 0,
            estimated_ms: 0,
            error: None,
        };
        let problem: Vec<String> = problems
            .iter()
            .filter(|p| p.version == step.version)
            .map(|p| p.message.clone())
            .collect();
        if step.kind != StepKind::Schema
            && let Ok(c) = crate::engine::ops::load_compiled(step)
        {
            a.target_table = Some(c.spec.target.table.clone());
            if problem.is_empty() {
                let counted = count_source(project, source.as_ref(), step).await;
                a.source_rows = counted.ok();
                if step.kind == StepKind::Data
                    && let Some(db) = source.as_ref()
                {
                    a.blank_rates = blanks::blank_rates(db, &c, sample).await.unwrap_or_default();
                }
            }
        }
        let t0 = std::time::Instant::now();
        if problem.is_empty() {
            let (res, back) = run_one(project, target, &run_id, step, tx, sample).await;
            tx = back.ok_or_else(|| eyre!("the assess transaction was lost in step {}", step.version))?;
            match res {
                Ok(counts) => {
                    a.rows_read = counts.source;
                    a.would_write = counts.written;
                    a.would_skip = counts.skipped;
                    a.would_merge = counts.merged;
                }
                Err(e) => a.error = Some(e),
            }
        } else {
            a.error = Some(problem.join("; "));
        }
        let took = t0.elapsed().as_millis() as u64;
        // The step's own measured time scaled to its whole source (a sample read a part).
        a.estimated_ms = match (a.source_rows, a.rows_read) {
            (Some(total), read) if read > 0 => (took as f64 * total as f64 / read as f64) as u64,
            _ => took,
        };
        steps.push(a);
    }
    tally_rejects(&mut tx, &run_id, &mut steps).await?;
    tx.rollback().await?;
    let basis = ledger_rate(&ledger_rows);
    if let Some(rows_per_ms) = basis {
        for a in steps.iter_mut().filter(|a| a.kind != StepKind::Schema) {
            let rows = a.source_rows.unwrap_or(a.rows_read) as f64;
            a.estimated_ms = (rows / rows_per_ms) as u64;
        }
    } else {
        for a in steps
            .iter_mut()
            .filter(|a| a.kind != StepKind::Schema && a.rows_read == 0)
        {
            a.estimated_ms = (a.source_rows.unwrap_or(0) as f64 / ASSUMED_ROWS_PER_SEC * 1000.0) as u64;
        }
    }
    Ok(AssessReport {
        sampled: sample,
        estimated_ms: steps.iter().map(|s| s.estimated_ms).sum(),
        estimate_basis: if basis.is_some() { "ledger" } else { "assess" }.into(),
        steps,
    })
}

fn step_ctx(
    project: &Arc<Project>,
    target: &Db,
    run_id: &str,
    events: tokio::sync::mpsc::Sender<EngineEvent>,
) -> RunCtx {
    RunCtx {
        project: project.clone(),
        target: target.clone(),
        source: tokio::sync::OnceCell::new(),
        run_id: run_id.to_string(),
        dry_run: true,
        continue_on_error: Some(true),
        events,
        control: RunControl::default(),
        dry_tx: tokio::sync::Mutex::new(None),
        lock_token: None,
        preflight_counts: Default::default(),
        next_source: Default::default(),
    }
}

/// Run one step inside `tx` under a savepoint (a failing step leaves nothing behind for the
/// next), stopping after `sample` rows when set. Gives the transaction back.
async fn run_one(
    project: &Arc<Project>,
    target: &Db,
    run_id: &str,
    step: &StepDef,
    mut tx: DbTx,
    sample: Option<u64>,
) -> (Result<Counts, String>, Option<DbTx>) {
    if let Err(e) = tx.execute_raw("SAVEPOINT cutover_assess_step").await {
        return (Err(crate::engine::db_error::describe(&e)), Some(tx));
    }
    let (events, mut rx) = tokio::sync::mpsc::channel::<EngineEvent>(STEP_EVENTS);
    let ctx = step_ctx(project, target, run_id, events);
    *ctx.dry_tx.lock().await = Some(tx);
    let control = ctx.control.clone();
    let run = async move {
        let res = match step.kind {
            StepKind::Schema => crate::engine::steps::schema::apply(&ctx, step)
                .await
                .map(StepResult::Done),
            StepKind::Data => crate::engine::steps::data::run(&ctx, step).await,
            StepKind::Merge => crate::engine::steps::merge::run(&ctx, step).await,
        };
        let tx = ctx.dry_tx.lock().await.take();
        (res, tx)
    };
    // The events only serve the sample: the step stops at the first batch boundary after
    // `sample` rows (an abort, which a dry run answers with the counts so far).
    let watch = async move {
        while let Some(ev) = rx.recv().await {
            if let (Some(n), EngineEvent::Progress { progress, .. }) = (sample, &ev)
                && progress.rows_done >= n
            {
                control.request_abort();
            }
        }
    };
    let ((res, tx), ()) = tokio::join!(run, watch);
    let Some(mut tx) = tx else {
        return (Err("the assess transaction was lost".into()), None);
    };
    let (out, undo) = match res {
        Ok(StepResult::Done(c)) | Ok(StepResult::Aborted(c)) => (Ok(c), false),
        Err(e) => (Err(e.message), true),
    };
    let end = if undo {
        "ROLLBACK TO SAVEPOINT cutover_assess_step"
    } else {
        "RELEASE SAVEPOINT cutover_assess_step"
    };
    if let Err(e) = tx.execute_raw(end).await {
        return (Err(crate::engine::db_error::describe(&e)), Some(tx));
    }
    (out, Some(tx))
}

async fn count_source(project: &Project, db: Option<&Db>, step: &StepDef) -> Result<u64> {
    let sides: Vec<crate::engine::data::pipeline::CompiledStep> = match step.kind {
        StepKind::Merge => {
            let m = crate::engine::steps::merge::MergeStep::load(step)?;
            vec![m.a, m.b]
        }
        _ => vec![crate::engine::ops::load_compiled(step)?],
    };
    let mut total = 0;
    for c in &sides {
        total += crate::engine::source::table::count_step_source(&project.config, db, c).await?;
    }
    Ok(total)
}

/// Rejects and warnings the pass stored, by step and rule, with up to three examples each.
async fn tally_rejects(tx: &mut DbTx, run_id: &str, steps: &mut [AssessStep]) -> Result<()> {
    // No data step ran (only schema steps, or none): the reject store may not exist.
    if !steps.iter().any(|s| s.kind != StepKind::Schema && s.rows_read > 0) {
        return Ok(());
    }
    for rc in reject_tally::count_by_rule(tx, run_id).await? {
        let Some(a) = steps.iter_mut().find(|s| s.version == rc.version) else {
            continue;
        };
        if REFERENCE_RULES.contains(&rc.rule.as_str()) {
            a.unresolved_references += rc.count;
        }
        if rc.warning {
            *a.warnings_by_rule.entry(rc.rule).or_default() += rc.count;
            continue;
        }
        if rc.rule == "duplicate" {
            a.duplicate_keys += rc.count;
        }
        for (source_key, reason) in reject_tally::examples(tx, run_id, &a.version, &rc.rule, 3).await? {
            a.examples.push(AssessExample {
                source_key,
                rule: rc.rule.clone(),
                reason,
            });
        }
        *a.rejects_by_rule.entry(rc.rule).or_default() += rc.count;
    }
    // Rows skipped by a natural key another row already has are duplicates too.
    for a in steps.iter_mut().filter(|a| a.kind == StepKind::Data) {
        a.duplicate_keys += a.would_skip;
    }
    Ok(())
}

/// Source rows per millisecond over the data and merge steps applied on this target.
fn ledger_rate(rows: &[LedgerRow]) -> Option<f64> {
    let (mut n, mut ms) = (0u64, 0u64);
    for r in rows {
        if r.status == LedgerStatus::Applied
            && r.kind != "schema"
            && let Some(d) = r.duration_ms.filter(|d| *d > 0)
            && r.counts.source > 0
        {
            n += r.counts.source;
            ms += d as u64;
        }
    }
    (ms > 0 && n > 0).then(|| n as f64 / ms as f64)
}
