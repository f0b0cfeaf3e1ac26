//! What a run report reads from the engine's tables: a run's events, its rejects per rule
//! with a few examples, the discrepancies opened and decided while it ran, and the verify
//! results recorded after it.

use super::ledger::{EVENTS_TABLE, HistoryEntry};
use super::{DISCREPANCIES, REJECT_COLUMNS, REJECTS, RejectRecord, reject_from};
use crate::engine::db::Db;
use crate::engine::value::Value;
use color_eyre::eyre::Result;

fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Int(i)) => *i,
        Some(Value::Text(s)) => s.parse().unwrap_or(0),
        Some(Value::Real(f)) => *f as i64,
        _ => 0,
    }
}

fn entry(r: &[Value]) -> HistoryEntry {
    let t = |i: usize| r.get(i).and_then(|v| v.to_text());
    HistoryEntry {
        id: int(r.first()),
        at: t(1).unwrap_or_default(),
        run_id: t(2),
        version: t(3),
        event: t(4).unwrap_or_default(),
        os_user: t(5).unwrap_or_default(),
        host: t(6).unwrap_or_default(),
        detail: t(7)
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null),
    }
}

const EVENT_COLUMNS: &str = "id, at, run_id, version, event, os_user, host, detail";

/// The run of the newest event that belongs to a run.
pub async fn latest_run_id(db: &Db) -> Result<Option<String>> {
    if !db.table_exists(EVENTS_TABLE).await? {
        return Ok(None);
    }
    let row = db
        .fetch_optional(
            &format!("SELECT run_id FROM {EVENTS_TABLE} WHERE run_id IS NOT NULL ORDER BY id DESC LIMIT 1"),
            &[],
        )
        .await?;
    Ok(row.and_then(|r| r.first().and_then(|v| v.to_text())))
}

/// Every event of one run, oldest first.
pub async fn run_events(db: &Db, run_id: &str) -> Result<Vec<HistoryEntry>> {
    if !db.table_exists(EVENTS_TABLE).await? {
        return Ok(Vec::new());
    }
    let rows = db
        .fetch_all(
            &format!("SELECT {EVENT_COLUMNS} FROM {EVENTS_TABLE} WHERE run_id = $1 ORDER BY id"),
            &[Value::Text(run_id.into())],
        )
        .await?;
    Ok(rows.rows.iter().map(|r| entry(r)).collect())
}

/// The id of the first event of the next run after event `after_id` (another run id).
pub async fn next_run_start(db: &Db, run_id: &str, after_id: i64) -> Result<Option<i64>> {
    let row = db
        .fetch_optional(
            &format!("SELECT MIN(id) FROM {EVENTS_TABLE} WHERE id > $1 AND run_id IS NOT NULL AND run_id <> $2"),
            &[Value::Int(after_id), Value::Text(run_id.into())],
        )
        .await?;
    Ok(row.and_then(|r| match r.first() {
        Some(Value::Null) | None => None,
        v => Some(int(v)),
    }))
}

/// The newest event named `event` with an id above `from_id` and below `to_id` (when given).
pub async fn latest_event_between(
    db: &Db,
    event: &str,
    from_id: i64,
    to_id: Option<i64>,
) -> Result<Option<HistoryEntry>> {
    if !db.table_exists(EVENTS_TABLE).await? {
        return Ok(None);
    }
    let row = db
        .fetch_optional(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM {EVENTS_TABLE} WHERE event = $1 AND id > $2 AND id < $3 ORDER BY id DESC LIMIT 1"
            ),
            &[
                Value::Text(event.into()),
                Value::Int(from_id),
                Value::Int(to_id.unwrap_or(i64::MAX)),
            ],
        )
        .await?;
    Ok(row.map(|r| entry(&r)))
}

/// A run's rejected rows (not warnings) per (step version, rule), by version then rule.
pub async fn rejects_by_rule(db: &Db, run_id: &str) -> Result<Vec<(String, String, u64)>> {
    if !db.table_exists(REJECTS).await? {
        return Ok(Vec::new());
    }
    let rows = db
        .fetch_all(
            &format!(
                "SELECT version, rule, COUNT(*) FROM {REJECTS} WHERE run_id = $1 AND level = 'error' GROUP BY version, rule ORDER BY version, rule"
            ),
            &[Value::Text(run_id.into())],
        )
        .await?;
    Ok(rows
        .rows
        .iter()
        .map(|r| {
            (
                r.first().and_then(|v| v.to_text()).unwrap_or_default(),
                r.get(1).and_then(|v| v.to_text()).unwrap_or_default(),
                int(r.get(2)).max(0) as u64,
            )
        })
        .collect())
}

/// The first `limit` rejected rows of a run's step under one rule, oldest first.
pub async fn reject_examples(
    db: &Db,
    run_id: &str,
    version: &str,
    rule: &str,
    limit: u64,
) -> Result<Vec<RejectRecord>> {
    let rows = db
        .fetch_all(
            &format!(
                "SELECT {REJECT_COLUMNS} FROM {REJECTS} WHERE run_id = $1 AND version = $2 AND rule = $3 AND level = 'error' ORDER BY id LIMIT {limit}"
            ),
            &[
                Value::Text(run_id.into()),
                Value::Text(version.into()),
                Value::Text(rule.into()),
            ],
        )
        .await?;
    Ok(rows.rows.iter().map(|r| reject_from(r)).collect())
}

/// Discrepancies opened, and decided, between two instants (ISO-8601 UTC text, as every
/// timestamp of the engine's tables is written, so they compare as text).
pub async fn discrepancies_between(db: &Db, from: &str, to: &str) -> Result<(u64, u64)> {
    if !db.table_exists(DISCREPANCIES).await? {
        return Ok((0, 0));
    }
    let count = |column: &'static str| async move {
        let row = db
            .fetch_optional(
                &format!("SELECT COUNT(*) FROM {DISCREPANCIES} WHERE {column} >= $1 AND {column} <= $2"),
                &[Value::Text(from.into()), Value::Text(to.into())],
            )
            .await?;
        Ok::<u64, color_eyre::Report>(int(row.as_ref().and_then(|r| r.first())).max(0) as u64)
    };
    Ok((count("created_at").await?, count("decided_at").await?))
}
