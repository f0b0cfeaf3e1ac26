//! Rolling back data and merge steps: what it will undo (`preview`), and undoing it
//! (`revert`): restore updated rows, delete written rows, drop the step's ID-map entries,
//! rejects and checkpoint, in one transaction with the ledger change.

use crate::engine::data::bucket;
use crate::engine::data::pipeline::CompiledStep;
use crate::engine::data::writer::{TargetWriter, ident};
use crate::engine::db::{Db, Role};
use crate::engine::exec::{RunCtx, StepError};
use crate::engine::ops::load_compiled;
use crate::engine::plan::{self, StepState, StepStatus, compute_status};
use crate::engine::project::{Project, StepDef, StepKind};
use crate::engine::protocol::DownTarget;
use crate::engine::protocol::views::{RollbackPreview, StepRollback};
use crate::engine::steps::schema;
use crate::engine::store::ledger::{self, LedgerStatus};
use crate::engine::store::{self, BACKUPS, BatchCheckpoint, DISCREPANCIES, ID_MAP, REJECTS, written_keys};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};

/// Where a step keeps files it wrote: the target field holding the store key (a column or a
/// path into a JSON column), the folder as cutover.toml or step.toml names it, the folder, and
/// the bucket when it is one.
struct StoredFiles {
    target: String,
    folder_name: String,
    folder: std::path::PathBuf,
    bucket: Option<String>,
}

fn stored_file_columns(project: &Project, c: &CompiledStep) -> Vec<StoredFiles> {
    let buckets = bucket::buckets_of(&project.config);
    bucket::store_file_fields(&c.spec)
        .into_iter()
        .filter_map(|(target, spec)| {
            let (folder_name, folder) = bucket::store_folder(&project.config.dir, &buckets, &spec)?;
            Some(StoredFiles {
                target,
                folder_name,
                folder,
                bucket: spec.bucket,
            })
        })
        .collect()
}

/// Queries of the keys that other steps' rows name in `bucket` (a file one of them names is
/// not this step's to remove). Rows of this step's own table and field are left to
/// [`orphaned_files_sql`], which tells this step's rows from the others.
async fn other_steps_keys(
    db: &Db,
    project: &Project,
    step: &StepDef,
    table: &str,
    f: &StoredFiles,
) -> Result<Vec<String>> {
    let Some(name) = &f.bucket else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for other in project.steps.iter().filter(|s| s.version != step.version) {
        if !matches!(other.kind, StepKind::Data | StepKind::Merge) {
            continue;
        }
        let Ok(oc) = load_compiled(other) else { continue };
        let other_table = &oc.spec.target.table;
        for (target, spec) in bucket::store_file_fields(&oc.spec) {
            if spec.bucket.as_ref() != Some(name) || (other_table == table && target == f.target) {
                continue;
            }
            if db.table_exists(other_table).await? {
                let k = bucket::stored_key_expr(db.dialect(), &target);
                out.push(format!("SELECT {k} FROM {} WHERE {k} IS NOT NULL", ident(other_table)));
            }
        }
    }
    Ok(out)
}

/// The rows of `table` a step wrote, as a subquery over the ID map (data steps with an ID map).
fn written_rows(writer: &TargetWriter, id_column: &str) -> String {
    let expr = writer.cast_text_expr("new_id", id_column);
    format!("SELECT {expr} FROM {ID_MAP} WHERE version = $1 AND alias = 0")
}

/// Store keys that only the step's rows name: the files its rollback removes. `key` is the
/// key's SQL expression; `others` are queries of keys other steps' rows name in the bucket.
fn orphaned_files_sql(table: &str, id_column: &str, key: &str, written: &str, others: &[String]) -> String {
    let (t, id, k) = (ident(table), ident(id_column), key);
    let mut sql = format!(
        "SELECT DISTINCT {k} FROM {t} WHERE {id} IN ({written}) AND {k} IS NOT NULL \
         AND {k} NOT IN (SELECT {k} FROM {t} WHERE {id} NOT IN ({written}) AND {k} IS NOT NULL)"
    );
    for o in others {
        sql.push_str(&format!(" AND {k} NOT IN ({o})"));
    }
    sql
}

/// Everything rolling back a data or merge step destroys or puts back, counted from the target.
pub async fn step_rollback(db: &Db, project: &Project, step: &StepDef) -> Result<StepRollback> {
    let c = load_compiled(step)?;
    let version = step.version.as_str();
    let files = stored_file_columns(project, &c);
    let mut p = StepRollback {
        table: Some(c.spec.target.table.clone()),
        file_store: files.first().map(|f| f.folder_name.clone()),
        ..StepRollback::new(step.version.clone(), step.name.clone(), step.kind)
    };
    // The engine's tables are created together: none yet means the step wrote nothing.
    if !db.table_exists(ID_MAP).await? {
        return Ok(p);
    }
    let count = |sql: String| async move {
        let r = db.fetch_optional(&sql, &[Value::Text(version.to_string())]).await?;
        Ok::<u64, color_eyre::Report>(match r.and_then(|r| r.into_iter().next()) {
            Some(Value::Int(n)) => n as u64,
            _ => 0,
        })
    };
    p.rows_deleted = count(format!(
        "SELECT COUNT(*) FROM {ID_MAP} WHERE version = $1 AND alias = 0"
    ))
    .await?;
    if db.table_exists(written_keys::WRITTEN_KEYS).await? {
        let mut tx = db.begin_read().await?;
        p.rows_deleted += written_keys::count(&mut tx, version).await?;
        tx.rollback().await?;
    }
    p.rows_restored = count(format!("SELECT COUNT(*) FROM {BACKUPS} WHERE version = $1")).await?;
    p.id_map_entries = count(format!("SELECT COUNT(*) FROM {ID_MAP} WHERE version = $1")).await?;
    let rejects = |cond: &str| format!("SELECT COUNT(*) FROM {REJECTS} WHERE version = $1 AND {cond}");
    p.open_rejects = count(rejects("level = 'error' AND state = 'open'")).await?;
    p.resolved_rejects = count(rejects("level = 'error' AND state <> 'open'")).await?;
    p.warnings = count(rejects("level <> 'error'")).await?;
    let fixed: std::collections::BTreeSet<i64> = ledger::reject_fixes(db)
        .await?
        .into_iter()
        .filter(|f| f.version == version)
        .map(|f| f.reject_id)
        .collect();
    if !fixed.is_empty() {
        let resolved = db
            .fetch_all(
                &format!("SELECT id FROM {REJECTS} WHERE version = $1 AND level = 'error' AND state <> 'open'"),
                &[Value::Text(version.to_string())],
            )
            .await?;
        p.fixed_rejects = resolved
            .rows
            .iter()
            .filter(|r| matches!(r.first(), Some(Value::Int(id)) if fixed.contains(id)))
            .count() as u64;
    }
    let discrepancies = |cond: &str| format!("SELECT COUNT(*) FROM {DISCREPANCIES} WHERE version = $1 AND {cond}");
    p.open_discrepancies = count(discrepancies("state = 'open'")).await?;
    p.decided_discrepancies = count(discrepancies("state = 'decided'")).await?;
    p.void_discrepancies = count(discrepancies("state NOT IN ('open', 'decided')")).await?;
    p.notes = count(discrepancies("note IS NOT NULL AND note <> ''")).await?;
    if let (Some(m), false) = (&c.spec.id_map, files.is_empty())
        && db.table_exists(&c.spec.target.table).await?
    {
        let writer = TargetWriter::new(db, &c.spec.target.table, &c.target_columns).await?;
        let written = written_rows(&writer, &m.column);
        for f in &files {
            let others = other_steps_keys(db, project, step, &c.spec.target.table, f).await?;
            let key = bucket::stored_key_expr(db.dialect(), &f.target);
            let sql = orphaned_files_sql(&c.spec.target.table, &m.column, &key, &written, &others);
            p.files += count(format!("SELECT COUNT(*) FROM ({sql}) orphaned")).await?;
        }
    }
    Ok(p)
}

/// Undo everything the step's runs wrote: restore updated rows, delete written rows, and drop
/// its ID-map entries, rejects and checkpoint, in one transaction with the ledger change.
pub async fn revert(ctx: &RunCtx, step: &StepDef) -> Result<StepRollback, StepError> {
    let c = load_compiled(step).map_err(StepError::plain)?;
    let preview = step_rollback(&ctx.target, &ctx.project, step)
        .await
        .map_err(StepError::plain)?;
    if ctx.dry_run {
        return Ok(preview);
    }
    let files = stored_file_columns(&ctx.project, &c);
    let mut others = Vec::new();
    for f in &files {
        others.push(
            other_steps_keys(&ctx.target, &ctx.project, step, &c.spec.target.table, f)
                .await
                .map_err(StepError::plain)?,
        );
    }
    let dialect = ctx.target.dialect();
    store::ensure(&ctx.target).await.map_err(StepError::plain)?;
    let writer = TargetWriter::new(&ctx.target, &c.spec.target.table, &c.target_columns)
        .await
        .map_err(StepError::plain)?;
    let v = Value::Text(step.version.clone());
    let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
    let mut orphaned: Vec<std::path::PathBuf> = Vec::new();
    let res: Result<(), sqlx::Error> = async {
        // 1. restore rows an `update` overwrote, newest backup last so the oldest image wins
        let backups = tx
            .fetch_all(
                &format!("SELECT key_json, before_json FROM {BACKUPS} WHERE version = $1 ORDER BY id DESC"),
                std::slice::from_ref(&v),
            )
            .await?;
        for b in &backups.rows {
            let key: serde_json::Map<String, serde_json::Value> = b
                .first()
                .and_then(|x| x.as_str())
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            let before: serde_json::Map<String, serde_json::Value> = b
                .get(1)
                .and_then(|x| x.as_str())
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            let mut params = Vec::new();
            let mut sets = Vec::new();
            for (col, val) in &before {
                params.push(Value::from_json(val));
                sets.push(format!("{} = {}", ident(col), writer.param(params.len(), col)));
            }
            let mut wh = Vec::new();
            for (col, val) in &key {
                params.push(Value::from_json(val));
                wh.push(format!("{} = {}", ident(col), writer.param(params.len(), col)));
            }
            if !sets.is_empty() && !wh.is_empty() {
                tx.execute(
                    &format!(
                        "UPDATE {} SET {} WHERE {}",
                        ident(&writer.table),
                        sets.join(", "),
                        wh.join(" AND ")
                    ),
                    &params,
                )
                .await?;
            }
        }
        // 2. delete the rows the step wrote, noting first the stored files only they name
        match &c.spec.id_map {
            Some(m) => {
                let written = written_rows(&writer, &m.column);
                for (f, others) in files.iter().zip(&others) {
                    let key = bucket::stored_key_expr(dialect, &f.target);
                    let sql = orphaned_files_sql(&writer.table, &m.column, &key, &written, others);
                    for r in tx.fetch_all(&sql, std::slice::from_ref(&v)).await?.rows {
                        if let Some(key) = r.first().and_then(|k| k.to_text()) {
                            orphaned.push(f.folder.join(key));
                        }
                    }
                }
                let expr = writer.cast_text_expr("new_id", &m.column);
                tx.execute(
                    &format!(
                        "DELETE FROM {} WHERE {} IN (SELECT {expr} FROM {ID_MAP} WHERE version = $1 AND alias = 0)",
                        ident(&writer.table),
                        ident(&m.column)
                    ),
                    std::slice::from_ref(&v),
                )
                .await?;
            }
            None => {
                let nk = &c.spec.target.natural_key;
                // Pages of natural keys (see store::written_keys), one at a time.
                for id in written_keys::record_ids(&mut tx, &step.version).await? {
                    let keys = written_keys::page(&mut tx, id).await?;
                    writer.delete_keys(&mut tx, nk, &keys).await?;
                }
                // Per-row entries: steps with [sync], and runs of earlier versions.
                let rows = tx
                    .fetch_all(
                        &format!("SELECT new_id FROM {ID_MAP} WHERE version = $1 AND alias = 0"),
                        std::slice::from_ref(&v),
                    )
                    .await?;
                for r in rows.rows {
                    let vals: Vec<serde_json::Value> = r
                        .first()
                        .and_then(|x| x.as_str())
                        .and_then(|s| serde_json::from_str(s).ok())
                        .unwrap_or_default();
                    let mut params = Vec::new();
                    let wh: Vec<String> = nk
                        .iter()
                        .zip(&vals)
                        .map(|(col, val)| {
                            params.push(Value::from_json(val));
                            format!("{} = {}", ident(col), writer.param(params.len(), col))
                        })
                        .collect();
                    if !wh.is_empty() {
                        tx.execute(
                            &format!("DELETE FROM {} WHERE {}", ident(&writer.table), wh.join(" AND ")),
                            &params,
                        )
                        .await?;
                    }
                }
            }
        }
        // 3. the engine's own records of the step
        for t in [ID_MAP, REJECTS, BACKUPS, DISCREPANCIES] {
            tx.execute(&format!("DELETE FROM {t} WHERE version = $1"), std::slice::from_ref(&v))
                .await?;
        }
        written_keys::delete(&mut tx, &step.version).await?;
        BatchCheckpoint::delete(&mut tx, &step.version).await?;
        ledger::set_status(&mut tx, &step.version, LedgerStatus::Reverted).await?;
        ledger::append_event(
            &mut tx,
            Some(&ctx.run_id),
            Some(&step.version),
            "reverted",
            &serde_json::to_value(&preview).unwrap_or_default(),
        )
        .await?;
        Ok(())
    }
    .await;
    match res {
        Ok(()) => {
            tx.commit().await.map_err(StepError::plain)?;
            reclaim_if_empty(&ctx.target, &writer.table).await;
            // After the commit: a file removed for a rollback that did not happen would be lost.
            for f in &orphaned {
                // A key is a relative `ab/abcdef…` path of the store; never follow one out of it.
                if f.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                    continue;
                }
                match std::fs::remove_file(f) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!("rollback of {}: cannot remove {}: {e}", step.version, f.display()),
                }
            }
            // Files of a batch that never committed (a killed run, a row the target refused)
            // are named by no row: a rollback of a step storing into the bucket removes them too.
            let buckets = bucket::buckets_of(&ctx.project.config);
            for name in files.iter().filter_map(|f| f.bucket.as_ref()) {
                let Some(b) = buckets.get(name) else { continue };
                match crate::engine::ops::verify::bucket::unnamed_files(&ctx.project, b, &ctx.target).await {
                    Ok(stray) => {
                        for key in stray {
                            match std::fs::remove_file(b.dir.join(&key)) {
                                Ok(()) => tracing::info!(
                                    "rollback of {}: removed {key}, which no row names, from bucket {name}",
                                    step.version
                                ),
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                                Err(e) => tracing::warn!(
                                    "rollback of {}: cannot remove {key} from bucket {name}: {e}",
                                    step.version
                                ),
                            }
                        }
                    }
                    Err(e) => tracing::warn!(
                        "rollback of {}: cannot list the files no row names in bucket {name}: {e}",
                        step.version
                    ),
                }
            }
            Ok(preview)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(StepError::sql(e))
        }
    }
}

/// What rolling back `version` undoes. When later applied steps must go first, the rollback of
/// this step alone is refused, and the preview lists them and what rolling back "to here"
/// (them and this step, newest first) undoes.
pub async fn rollback_preview(project: &Project, version: &str) -> Result<RollbackPreview> {
    let step = project
        .step(version)
        .ok_or_else(|| eyre!("no migration has version {version}"))?;
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let preview = preview_on(project, &target, step).await;
    target.close().await;
    preview
}

async fn preview_on(project: &Project, target: &Db, step: &StepDef) -> Result<RollbackPreview> {
    let version = step.version.as_str();
    let rows = ledger::load(target).await?;
    let status = compute_status(&project.steps, &rows);
    let applied = |s: &&StepStatus| {
        s.is_applied() || (s.kind != StepKind::Schema && matches!(s.state, StepState::Running | StepState::Failed))
    };
    let this_applied = status.iter().filter(applied).any(|s| s.version == version);
    let later: Vec<&StepStatus> = status
        .iter()
        .filter(applied)
        .filter(|s| s.version.as_str() > version)
        .rev()
        .collect();
    let mut to_here = None;
    let refused = if !this_applied {
        Some(format!("{version} is not applied, so there is nothing to roll back"))
    } else if later.is_empty() {
        plan::plan_down(&status, &DownTarget::Only(version.to_string()))
            .err()
            .map(|e| format!("{e:#}"))
    } else {
        let names: Vec<String> = later.iter().map(|s| format!("{}_{}", s.version, s.name)).collect();
        let refused = format!(
            "{} later step{} applied after it must be rolled back first: {}",
            later.len(),
            if later.len() == 1 { "" } else { "s" },
            names.join(", ")
        );
        // "To here": every applied step above the one before this step.
        let before = project.steps.iter().rev().find(|s| s.version.as_str() < version);
        let target_sel = match before {
            Some(b) => DownTarget::To(b.version.clone()),
            None => DownTarget::All,
        };
        match plan::plan_down(&status, &target_sel) {
            Ok(_) => {
                to_here = Some(target_sel);
                Some(refused)
            }
            Err(e) => Some(format!("{refused}; rolling back to here is refused too: {e:#}")),
        }
    };
    let mut steps = Vec::new();
    let mut undone: Vec<&StepDef> = Vec::new();
    if to_here.is_some() {
        undone.extend(later.iter().filter_map(|s| s.def.as_ref()));
    }
    undone.push(step);
    for def in undone {
        steps.push(match def.kind {
            StepKind::Schema => StepRollback {
                statements: match schema::down_statements(def) {
                    Ok(st) => st.into_iter().map(|s| format!("{s};")).collect(),
                    Err(e) => vec![e.message],
                },
                ..StepRollback::new(def.version.clone(), def.name.clone(), def.kind)
            },
            _ => step_rollback(target, project, def).await?,
        });
    }
    let lines = steps.last().map(StepRollback::lines).unwrap_or_default();
    Ok(RollbackPreview {
        version: step.version.clone(),
        name: step.name.clone(),
        kind: step.kind,
        lines,
        refused,
        steps,
        later: later.iter().map(|s| format!("{}_{}", s.version, s.name)).collect(),
        to_here,
    })
}

/// A table the rollback left empty gives its pages back (see `Dialect::reclaim_statement`), so
/// the rollback of the steps before it, deleting the rows this table referenced, does not scan
/// them for every row. A refusal costs speed, not rows: it is logged.
async fn reclaim_if_empty(target: &Db, table: &str) {
    let d = target.dialect();
    let quoted = d.quote_table(table);
    let Some(sql) = d.reclaim_statement(&quoted) else {
        return;
    };
    match target.is_empty(table).await {
        Ok(true) => {
            if let Err(e) = target.execute_unprepared(&sql).await {
                tracing::warn!("could not give back the space of {table} after its rollback: {e:#}");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!("could not read {table} after its rollback: {e:#}"),
    }
}
