//! `collection <name>`: a collection's documents against the count and order-independent
//! checksum recorded when the last applied step writing it finished, so verify says when
//! documents were changed, added or removed since the migration.

use super::checksum::{ContentSum, sql_error};
use super::{Check, CheckKind, Measure};
use crate::engine::data::collection::spaced;
use crate::engine::db::{Db, Role};
use crate::engine::project::{Project, StepKind};
use crate::engine::store::ledger::{self, LedgerStatus};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// JSON with every object's keys in sorted order, so two stores of one document agree.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut pairs: Vec<(String, serde_json::Value)> = m.into_iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(pairs.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// A JSON column's value as canonical text: sorted keys, compact.
fn canonical_json(v: &Value) -> Value {
    let parsed = match v {
        Value::Json(j) => Some(j.clone()),
        Value::Text(t) => serde_json::from_str(t).ok(),
        Value::Bytes(b) => serde_json::from_slice(&b.bytes).ok(),
        _ => None,
    };
    match parsed {
        Some(j) => Value::Text(sorted(j).to_string()),
        None => v.clone(),
    }
}

/// The content checksum of a collection: one row `(_id, data, _permissions)` per document,
/// the JSON canonical (sorted keys, compact), order-independent.
pub async fn collection_sum(db: &Db, collection: &str) -> Result<ContentSum, String> {
    let d = db.dialect();
    let sql = format!(
        "SELECT {}, {}, {} FROM {}",
        d.as_text(&d.quote_ident("_id")),
        d.as_text(&d.quote_ident("data")),
        d.as_text(&d.quote_ident("_permissions")),
        d.quote_table(collection)
    );
    let mut sum = ContentSum::default();
    db.for_each_row(&sql, async |row| {
        let canon: Vec<Value> = row
            .iter()
            .enumerate()
            .map(|(i, v)| if i == 0 { v.clone() } else { canonical_json(v) })
            .collect();
        sum.add(&canon);
        ControlFlow::Continue(())
    })
    .await
    .map_err(|e| sql_error(&e))?;
    Ok(sum)
}

/// Record the collection's count and checksum under `version` (a step that finished writing
/// it, or a `rejects retry` that wrote into it), on a connection and thread of its own: the
/// row stream is not `Send`, and a run's future must be.
pub async fn record_checksum(project: &Project, run_id: Option<&str>, version: &str, collection: &str) -> Result<()> {
    let (url, dir) = (project.config.target.clone(), project.config.dir.clone());
    let collection_name = collection.to_string();
    let (run_id, version, collection) = (run_id.map(str::to_string), version.to_string(), collection.to_string());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let done = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(async {
                let db = Db::connect(&url, &dir, Role::Target)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                let res = async {
                    let sum = collection_sum(&db, &collection).await?;
                    ledger::record_collection_checksum(
                        &db,
                        run_id.as_deref(),
                        &version,
                        &collection,
                        sum.rows,
                        &sum.hex(),
                    )
                    .await
                    .map_err(|e| format!("{e:#}"))
                }
                .await;
                db.close().await;
                res
            }),
            Err(e) => Err(format!("cannot start a runtime: {e}")),
        };
        let _ = tx.send(done);
    });
    rx.await
        .map_err(|_| eyre!("the checksum thread ended without an answer"))?
        .map_err(|e| eyre!("cannot record the checksum of collection {collection_name}: {e}"))
}

/// One check per collection an applied data step writes.
pub(super) async fn collection_checks(project: &Project, target: &Db) -> Result<Vec<Check>> {
    let rows = ledger::load(target).await?;
    let mut writers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.status == LedgerStatus::Applied && ledger::kind_of(r) == StepKind::Data)
    {
        let Some(step) = project.step(&r.version) else { continue };
        // The step's file, not the compiled step: verify must not import the steps.
        let Ok(spec) = crate::engine::data::spec::DataStep::load(&step.file("step.toml")) else {
            continue;
        };
        if let Some(name) = &spec.target.collection {
            writers.entry(name.clone()).or_default().push(r.version.clone());
        }
    }
    if writers.is_empty() {
        return Ok(Vec::new());
    }
    let records = ledger::collection_checksums(target).await?;
    let mut checks = Vec::new();
    for (name, versions) in writers {
        // The latest record of an applied step writing the collection: the whole collection
        // as that step (or a retry after it) left it.
        let record = records
            .iter()
            .rev()
            .find(|r| r.collection == name && versions.contains(&r.version));
        let mut check = Check {
            name: format!("collection {name}"),
            kind: CheckKind::Collection,
            ok: false,
            source: record.map(|r| Measure::count(r.documents)),
            target: None,
            detail: String::new(),
            explained: None,
            not_checked: None,
        };
        let Some(record) = record else {
            check.detail = format!(
                "no checksum was recorded when {} applied; run the step again to record one",
                versions.join(", ")
            );
            checks.push(check);
            continue;
        };
        let sum = match collection_sum(target, &name).await {
            Ok(s) => s,
            Err(e) => {
                check.detail = format!("cannot read the collection: {e}");
                checks.push(check);
                continue;
            }
        };
        check.target = Some(Measure::count(sum.rows));
        let when = format!("when {} applied", record.version);
        let n = spaced(sum.rows);
        check.ok = sum.rows == record.documents && sum.hex() == record.checksum;
        check.detail = if check.ok {
            format!("{n} documents, checksum matches the one recorded {when}")
        } else if sum.rows < record.documents {
            format!(
                "{n} documents, {} fewer than recorded {when} ({}): documents were removed since",
                spaced(record.documents - sum.rows),
                spaced(record.documents)
            )
        } else if sum.rows > record.documents {
            format!(
                "{n} documents, {} more than recorded {when} ({}): documents were added since",
                spaced(sum.rows - record.documents),
                spaced(record.documents)
            )
        } else {
            format!("{n} documents, as recorded {when}, but the checksum differs: documents were changed since")
        };
        checks.push(check);
    }
    Ok(checks)
}
