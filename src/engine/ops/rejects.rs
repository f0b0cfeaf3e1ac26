//! Rejected rows after a run: fix a field of one, retry one or a step's worth. A row that
//! passes is written, leaves the store, and its step's books move from rejected to written.

use crate::engine::data::pipeline::CompiledStep;
use crate::engine::data::writer::TargetWriter;
use crate::engine::db::{Db, Role};
use crate::engine::ops::load_compiled;
use crate::engine::ops::snapshot::RejectSummary;
use crate::engine::project::Project;
use crate::engine::protocol::Counts;
use crate::engine::protocol::views::RejectPage;
use crate::engine::protocol::{PageAt, RejectPageRequest};
use crate::engine::store::ledger;
use crate::engine::store::{self, REJECTS, RejectFilter, RejectStore, RejectTextTerm};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, WrapErr, eyre};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Result of retrying rejected rows.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RetryReport {
    pub written: Vec<i64>,
    pub still_rejected: Vec<(i64, String)>,
}

/// Retry rejected rows through their step's pipeline. A row that passes is written, leaves the
/// store, and its step's books move from rejected to written; rows waiting for it are retried
/// in turn.
pub async fn retry(project: &Project, target: &Db, ids: Vec<i64>, run_id: &str) -> Result<RetryReport> {
    store::ensure(target).await?;
    let mut report = RetryReport::default();
    let mut queue: std::collections::VecDeque<i64> = ids.into();
    let mut done: HashSet<i64> = HashSet::new();
    let mut compiled: HashMap<String, (Arc<CompiledStep>, Arc<TargetWriter>)> = HashMap::new();
    let mut merges: HashMap<String, Arc<crate::engine::steps::merge::MergeStep>> = HashMap::new();
    let mut source: Option<Db> = None;
    let mut collections: std::collections::BTreeSet<(String, String)> = Default::default();
    while let Some(id) = queue.pop_front() {
        if !done.insert(id) {
            continue;
        }
        let mut tx = target.begin().await?;
        let Some(rec) = RejectStore::get(&mut tx, id).await? else {
            tx.rollback().await?;
            return Err(eyre!("no rejected row with id {id} (see `cutover rejects list`)"));
        };
        if rec.state != "open" || rec.level != "error" {
            tx.rollback().await?;
            report
                .still_rejected
                .push((id, format!("not an open reject (state {})", rec.state)));
            continue;
        }
        let step = project
            .step(&rec.step)
            .ok_or_else(|| eyre!("reject {id} belongs to step {} whose folder is gone", rec.step))?;
        if !compiled.contains_key(&rec.step) {
            let mut c = load_compiled(step)?;
            c.file_store = Some(crate::engine::data::pipeline::FileStore::for_project(
                &project.config,
                true,
            ));
            c.run_id = Some(run_id.to_string());
            let w = TargetWriter::new_in(&mut tx, &c.spec.target.table, &c.target_columns).await?;
            compiled.insert(rec.step.clone(), (Arc::new(c), Arc::new(w)));
        }
        let (c, writer) = compiled
            .get(&rec.step)
            .cloned()
            .ok_or_else(|| eyre!("step {} not compiled", rec.step))?;
        let (still, counts, warnings) = if step.kind == crate::engine::project::StepKind::Merge {
            if !merges.contains_key(&rec.step) {
                merges.insert(
                    rec.step.clone(),
                    Arc::new(crate::engine::steps::merge::MergeStep::load(step)?),
                );
            }
            let m = merges
                .get(&rec.step)
                .cloned()
                .ok_or_else(|| eyre!("step {} not loaded", rec.step))?;
            if source.is_none() {
                source = Some(connect_source(project).await?);
            }
            let src = source.as_ref().ok_or_else(|| eyre!("no source"))?;
            let (still, counts) =
                crate::engine::steps::merge::retry_row(&mut tx, src, &m, &writer, run_id, &rec).await?;
            (still, counts, Vec::new())
        } else {
            if source.is_none() && (!c.spec.embed.is_empty() || crate::engine::steps::data::needs_source_row(&rec)) {
                source = Some(connect_source(project).await?);
            }
            crate::engine::steps::data::retry_row(&mut tx, &c, &writer, &rec, source.as_ref()).await?
        };
        if let Some(r) = still {
            // Still rejected: keep the one record, with the new reason.
            tx.execute(
                &format!("UPDATE {REJECTS} SET rule = $1, reason = $2, waits_for_table = $3, waits_for_key = $4, run_id = $5 WHERE id = $6"),
                &[
                    Value::Text(r.rule.clone()),
                    Value::Text(r.reason.clone()),
                    r.waits_for.as_ref().map(|w| Value::Text(w.0.clone())).unwrap_or(Value::Null),
                    r.waits_for.as_ref().map(|w| Value::Text(w.1.clone())).unwrap_or(Value::Null),
                    Value::Text(run_id.into()),
                    Value::Int(id),
                ],
            )
            .await?;
            tx.commit().await?;
            report.still_rejected.push((id, r.reason.clone()));
            continue;
        }
        let counts = Counts {
            warnings: warnings.len() as u64,
            ..counts
        };
        let warn_table = if warnings.is_empty() {
            c.source_name.clone()
        } else {
            rec.source_table.clone()
        };
        RejectStore::insert(&mut tx, run_id, &c.version, &warn_table, &warnings).await?;
        RejectStore::resolve(&mut tx, id).await?;
        tx.execute(
            &format!(
                "UPDATE {} SET rows_written = rows_written + $1, rows_skipped = rows_skipped + $2, rows_rejected = rows_rejected - 1, rows_warned = rows_warned + $3, rows_merged = rows_merged + $5 WHERE version = $4",
                ledger::LEDGER_TABLE
            ),
            &[
                Value::Int(counts.written as i64),
                Value::Int(counts.skipped as i64),
                Value::Int(counts.warnings as i64),
                Value::Text(rec.step.clone()),
                Value::Int(counts.merged as i64),
            ],
        )
        .await?;
        ledger::append_event(
            &mut tx,
            Some(run_id),
            Some(&rec.step),
            "retried",
            &serde_json::json!({"reject": id, "source_table": rec.source_table, "source_key": rec.source_key}),
        )
        .await?;
        let waiting = RejectStore::waiting_for(&mut tx, &rec.source_table, &rec.source_key).await?;
        tx.commit().await?;
        report.written.push(id);
        queue.extend(waiting);
        if let Some(name) = &c.spec.target.collection {
            collections.insert((rec.step.clone(), name.clone()));
        }
    }
    // A collection the retries wrote into is recorded again, so verify compares it with what
    // it holds now, not with what the step left.
    for (version, name) in collections {
        crate::engine::ops::verify::collection::record_checksum(project, Some(run_id), &version, &name).await?;
    }
    Ok(report)
}

/// Set one field of a rejected row's source data (before a retry). Audited.
pub async fn fix_reject(project: &Project, id: i64, field: &str, value: &str) -> Result<()> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let mut tx = target.begin().await?;
    let r = RejectStore::get(&mut tx, id)
        .await?
        .ok_or_else(|| eyre!("no rejected row with id {id}"))?;
    if r.state != "open" {
        return Err(eyre!("reject {id} is {}, not open; nothing to fix", r.state));
    }
    let mut row = r.row.as_object().cloned().unwrap_or_default();
    if !row.contains_key(field) {
        return Err(eyre!(
            "the source row of reject {id} has no field '{field}' (it has: {})",
            row.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let before = row.get(field).cloned().unwrap_or_default();
    row.insert(
        field.to_string(),
        if value.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(value)
        },
    );
    RejectStore::set_row(&mut tx, id, &serde_json::Value::Object(row)).await?;
    // A secret field's audit entry records that it changed, never its values.
    let detail = if store::is_secret_column(field) {
        serde_json::json!({"reject": id, "field": field, "changed": true, "redacted": true})
    } else {
        serde_json::json!({"reject": id, "field": field, "before": before, "after": value})
    };
    ledger::append_event(&mut tx, None, Some(&r.step), "reject_fixed", &detail).await?;
    tx.commit().await?;
    target.close().await;
    Ok(())
}

/// Retry rejects under the run lock: one id, or every open reject of a step.
pub async fn retry_rejects(project: &Project, id: Option<i64>, step: Option<&str>) -> Result<RetryReport> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let ids: Vec<i64> = match (id, step) {
        (Some(i), _) => vec![i],
        (None, Some(s)) => RejectStore::list(
            &target,
            &RejectFilter {
                step: Some(s.to_string()),
                open_only: true,
                ..Default::default()
            },
        )
        .await?
        .iter()
        .filter(|r| r.state == "open")
        .map(|r| r.id)
        .collect(),
        (None, None) => return Err(eyre!("say which rows: one reject id, or a step")),
    };
    let lock = crate::engine::store::lock::RunLock::acquire(
        &target,
        "rejects retry",
        Duration::from_secs(project.config.defaults.lock_stale_after_secs),
    )
    .await
    .map_err(|e| eyre!("{e}"))?;
    if let Err(e) = crate::engine::store::deferred_keys::require_in_place(&target, "rejects retry").await {
        lock.release().await?;
        return Err(e);
    }
    let rep = retry(project, &target, ids, &crate::engine::exec::new_run_id()).await;
    lock.release().await?;
    target.close().await;
    rep
}

/// Rows a page of the console's rejects pane holds at most (a request asking for more gets
/// this many).
pub const MAX_PAGE: u64 = 500;

/// Rows read from the store at a time while exporting: the file grows, memory does not.
pub const EXPORT_CHUNK: u64 = 1000;

/// The console's `/` filter as a store filter: rejected rows (errors, open and resolved), every
/// word matched against the store's columns and against the names of the project's steps.
pub fn text_filter(project: &Project, text: &str) -> RejectFilter {
    RejectFilter {
        text: text
            .split_whitespace()
            .map(|w| {
                let word = w.to_lowercase();
                RejectTextTerm {
                    versions: project
                        .steps
                        .iter()
                        .filter(|s| s.name.to_lowercase().contains(&word))
                        .map(|s| s.version.clone())
                        .collect(),
                    word,
                }
            })
            .collect(),
        ..Default::default()
    }
}

/// One page of the rejects matching the request's filter, with the true totals.
pub async fn page(project: &Project, req: &RejectPageRequest) -> Result<RejectPage> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let res = page_in(&target, project, req).await;
    target.close().await;
    res
}

async fn page_in(target: &Db, project: &Project, req: &RejectPageRequest) -> Result<RejectPage> {
    let filter = text_filter(project, &req.filter);
    let limit = req.limit.clamp(1, MAX_PAGE);
    let matching = RejectStore::count(target, &filter).await?;
    // Pages start at multiples of the page size, so "the last page" is the one `End` reaches
    // by paging down too; an offset past the end shows the last page.
    let last = matching.saturating_sub(1) / limit * limit;
    let offset = match req.at {
        PageAt::Offset(o) => (o / limit * limit).min(last),
        PageAt::Last => last,
    };
    let rows = RejectStore::page(target, &filter, offset, limit).await?;
    let open = RejectStore::count(
        target,
        &RejectFilter {
            open_only: true,
            ..Default::default()
        },
    )
    .await?;
    Ok(RejectPage {
        seq: req.seq,
        filter: req.filter.clone(),
        offset,
        rows: rows.iter().map(RejectSummary::from).collect(),
        matching,
        open,
        error: None,
    })
}

/// The CSV columns of an export (the CLI's and the console's).
const CSV_HEADER: [&str; 12] = [
    "id",
    "step",
    "source_table",
    "source_key",
    "step_name",
    "level",
    "state",
    "rule",
    "field",
    "reason",
    "waits_for",
    "row_json",
];

/// Write every reject matching `filter` to `path` as CSV (secrets redacted), reading the store
/// `EXPORT_CHUNK` rows at a time. Returns the rows written.
pub async fn export_csv(project: &Project, target: &Db, filter: &RejectFilter, path: &Path) -> Result<u64> {
    let mut w = csv::Writer::from_path(path).wrap_err_with(|| format!("cannot create {}", path.display()))?;
    w.write_record(CSV_HEADER)?;
    let mut written = 0u64;
    let mut after = 0i64;
    loop {
        let chunk = RejectStore::chunk_after(target, filter, after, EXPORT_CHUNK).await?;
        let Some(last) = chunk.last() else {
            break;
        };
        after = last.id;
        for r in &chunk {
            let name = project.step(&r.step).map(|s| s.name.clone()).unwrap_or_default();
            w.write_record([
                r.id.to_string(),
                r.step.clone(),
                r.source_table.clone(),
                r.source_key.clone(),
                name,
                r.level.clone(),
                r.state.clone(),
                r.rule.clone(),
                r.field.clone().unwrap_or_default(),
                r.reason.clone(),
                r.waits_for_table
                    .as_ref()
                    .map(|t| format!("{t} {}", r.waits_for_key.clone().unwrap_or_default()))
                    .unwrap_or_default(),
                store::redacted_row(&r.row).to_string(),
            ])?;
        }
        written += chunk.len() as u64;
        w.flush().wrap_err_with(|| format!("cannot write {}", path.display()))?;
    }
    w.flush().wrap_err_with(|| format!("cannot write {}", path.display()))?;
    Ok(written)
}

/// The console's export: the rejects its `/` filter matches, to `rejects-<stamp>.csv` in the
/// project folder. Returns the path and the rows written.
pub async fn export_filtered(project: &Project, filter: &str, stamp: &str) -> Result<(PathBuf, u64)> {
    let path = project.config.dir.join(format!("rejects-{stamp}.csv"));
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let res = export_csv(project, &target, &text_filter(project, filter), &path).await;
    target.close().await;
    res.map(|n| (path, n))
}

/// The project's source database, for a retry that reads it again (a merge step's rows, a
/// data step's `[[embed]]` children).
async fn connect_source(project: &Project) -> Result<Db> {
    let url = project
        .config
        .source
        .as_ref()
        .ok_or_else(|| eyre!("no [source] configured"))?;
    Db::connect(url, &project.config.dir, crate::engine::db::Role::Source).await
}
