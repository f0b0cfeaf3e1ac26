//! The ledger in the target: one row of state per step (`cutover_ledger`) and an append-only
//! table of everything that happened (`cutover_events`), which is also the audit trail.

use crate::engine::clock::{host_name, now_iso, os_user};
use crate::engine::db::{Db, DbTx};
use crate::engine::project::{StepDef, StepKind};
use crate::engine::protocol::Counts;
use crate::engine::value::Value;
use color_eyre::eyre::Result;
use serde::Serialize;

pub const LEDGER_TABLE: &str = "cutover_ledger";
pub const EVENTS_TABLE: &str = "cutover_events";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerStatus {
    Running,
    /// Stopped at a batch boundary on request (abort, ctrl-c); `up` resumes it from its
    /// checkpoint. A run killed outright leaves `Running`, which readers without a live lock
    /// holder show as interrupted too.
    Interrupted,
    Applied,
    Failed,
    Reverted,
    /// Marked applied by `baseline`: never run, never reverted.
    Baseline,
}

impl LedgerStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            LedgerStatus::Running => "running",
            LedgerStatus::Interrupted => "interrupted",
            LedgerStatus::Applied => "applied",
            LedgerStatus::Failed => "failed",
            LedgerStatus::Reverted => "reverted",
            LedgerStatus::Baseline => "baseline",
        }
    }
    pub fn parse(s: &str) -> LedgerStatus {
        match s {
            "running" => LedgerStatus::Running,
            "interrupted" => LedgerStatus::Interrupted,
            "applied" => LedgerStatus::Applied,
            "failed" => LedgerStatus::Failed,
            "baseline" => LedgerStatus::Baseline,
            _ => LedgerStatus::Reverted,
        }
    }
    pub fn is_applied(&self) -> bool {
        matches!(self, LedgerStatus::Applied | LedgerStatus::Baseline)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LedgerRow {
    pub version: String,
    pub name: String,
    pub kind: String,
    pub checksum: String,
    pub status: LedgerStatus,
    pub run_id: Option<String>,
    pub started_at: Option<String>,
    pub applied_at: Option<String>,
    pub applied_by: Option<String>,
    pub host: Option<String>,
    pub duration_ms: Option<i64>,
    pub counts: Counts,
    pub error: Option<String>,
    pub failing_statement: Option<String>,
    /// The SHA-256 of the file a data step read (`[source] file`), when it read one.
    pub source_checksum: Option<String>,
}

/// Create the ledger tables when missing. Idempotent.
pub async fn ensure(db: &Db) -> Result<()> {
    let d = db.dialect();
    let text_key = d.key_text(64);
    let options = d.table_options();
    let stmts = [
        format!(
            "CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
                version {text_key} PRIMARY KEY,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                checksum TEXT NOT NULL,
                status TEXT NOT NULL,
                run_id TEXT,
                started_at TEXT,
                applied_at TEXT,
                applied_by TEXT,
                host TEXT,
                duration_ms BIGINT,
                rows_source BIGINT NOT NULL DEFAULT 0,
                rows_written BIGINT NOT NULL DEFAULT 0,
                rows_skipped BIGINT NOT NULL DEFAULT 0,
                rows_rejected BIGINT NOT NULL DEFAULT 0,
                rows_merged BIGINT NOT NULL DEFAULT 0,
                rows_warned BIGINT NOT NULL DEFAULT 0,
                error TEXT,
                failing_statement TEXT
            ){options}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
                id {},
                at TEXT NOT NULL,
                run_id TEXT,
                version TEXT,
                event TEXT NOT NULL,
                os_user TEXT NOT NULL,
                host TEXT NOT NULL,
                detail TEXT
            ){options}",
            d.serial_primary_key()
        ),
    ];
    let mut tx = db.begin().await?;
    for s in &stmts {
        tx.execute(s, &[]).await?;
    }
    // Ledgers made before file sources lack the column of a file's checksum: add it.
    if !has_source_checksum(&mut tx).await? {
        tx.execute(
            &format!("ALTER TABLE {LEDGER_TABLE} ADD COLUMN {SOURCE_CHECKSUM} TEXT"),
            &[],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The ledger column of a file step's file checksum (added to older ledgers by `ensure`).
const SOURCE_CHECKSUM: &str = "source_checksum";

async fn has_source_checksum(tx: &mut DbTx) -> Result<bool, sqlx::Error> {
    Ok(tx
        .table_columns(LEDGER_TABLE)
        .await?
        .keys()
        .any(|c| c.eq_ignore_ascii_case(SOURCE_CHECKSUM)))
}

/// The columns `load` reads: a ledger not yet upgraded (read by `status` before any run
/// could add the column) reads NULL for the file checksum.
async fn select_columns(tx: &mut DbTx) -> Result<String, sqlx::Error> {
    Ok(if has_source_checksum(tx).await? {
        format!("{SELECT_COLUMNS}, {SOURCE_CHECKSUM}")
    } else {
        format!("{SELECT_COLUMNS}, NULL")
    })
}

const SELECT_COLUMNS: &str = "version, name, kind, checksum, status, run_id, started_at, applied_at, applied_by, host, duration_ms, rows_source, rows_written, rows_skipped, rows_rejected, rows_merged, rows_warned, error, failing_statement";

fn text(v: &Value) -> Option<String> {
    v.to_text()
}
fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Text(s) => s.parse().unwrap_or(0),
        Value::Real(f) => *f as i64,
        _ => 0,
    }
}

fn row_from(vals: &[Value]) -> LedgerRow {
    let g = |i: usize| vals.get(i).cloned().unwrap_or(Value::Null);
    LedgerRow {
        version: text(&g(0)).unwrap_or_default(),
        name: text(&g(1)).unwrap_or_default(),
        kind: text(&g(2)).unwrap_or_default(),
        checksum: text(&g(3)).unwrap_or_default(),
        status: LedgerStatus::parse(&text(&g(4)).unwrap_or_default()),
        run_id: text(&g(5)),
        started_at: text(&g(6)),
        applied_at: text(&g(7)),
        applied_by: text(&g(8)),
        host: text(&g(9)),
        duration_ms: if g(10).is_null() { None } else { Some(int(&g(10))) },
        counts: Counts {
            source: int(&g(11)) as u64,
            written: int(&g(12)) as u64,
            skipped: int(&g(13)) as u64,
            rejected: int(&g(14)) as u64,
            merged: int(&g(15)) as u64,
            warnings: int(&g(16)) as u64,
        },
        error: text(&g(17)),
        failing_statement: text(&g(18)),
        source_checksum: text(&g(19)),
    }
}

pub async fn load(db: &Db) -> Result<Vec<LedgerRow>> {
    if !db.table_exists(LEDGER_TABLE).await? {
        return Ok(Vec::new());
    }
    let mut tx = db.begin_read().await?;
    let columns = select_columns(&mut tx).await?;
    let rows = tx
        .fetch_all(&format!("SELECT {columns} FROM {LEDGER_TABLE} ORDER BY version"), &[])
        .await?;
    tx.rollback().await?;
    Ok(rows.rows.iter().map(|r| row_from(r)).collect())
}

pub async fn load_one(tx: &mut DbTx, version: &str) -> Result<Option<LedgerRow>> {
    let columns = select_columns(tx).await?;
    let r = tx
        .fetch_optional(
            &format!("SELECT {columns} FROM {LEDGER_TABLE} WHERE version = $1"),
            &[Value::Text(version.into())],
        )
        .await?;
    Ok(r.map(|r| row_from(&r)))
}

/// Write the step's state row (insert or replace).
#[allow(clippy::too_many_arguments)]
pub async fn upsert(
    tx: &mut DbTx,
    step: &StepDef,
    status: LedgerStatus,
    run_id: &str,
    started_at: &str,
    duration_ms: Option<i64>,
    counts: &Counts,
    error: Option<&str>,
    failing_statement: Option<&str>,
) -> Result<(), sqlx::Error> {
    let applied_at = if matches!(status, LedgerStatus::Running | LedgerStatus::Interrupted) {
        None
    } else {
        Some(now_iso())
    };
    let conflict = tx
        .dialect()
        .upsert_clause(&["version"], &SELECT_COLUMNS.split(", ").skip(1).collect::<Vec<_>>());
    let sql = format!(
        "INSERT INTO {LEDGER_TABLE} ({SELECT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) {conflict}"
    );
    let opt = |s: Option<&str>| s.map(|s| Value::Text(s.into())).unwrap_or(Value::Null);
    tx.execute(
        &sql,
        &[
            Value::Text(step.version.clone()),
            Value::Text(step.name.clone()),
            Value::Text(step.kind.as_str().into()),
            Value::Text(step.checksum.clone()),
            Value::Text(status.as_str().into()),
            Value::Text(run_id.into()),
            Value::Text(started_at.into()),
            opt(applied_at.as_deref()),
            Value::Text(os_user()),
            Value::Text(host_name()),
            duration_ms.map(Value::Int).unwrap_or(Value::Null),
            Value::Int(counts.source as i64),
            Value::Int(counts.written as i64),
            Value::Int(counts.skipped as i64),
            Value::Int(counts.rejected as i64),
            Value::Int(counts.merged as i64),
            Value::Int(counts.warnings as i64),
            opt(error),
            opt(failing_statement),
        ],
    )
    .await?;
    // A file step's file as it is now (the step checked at its end that it had not changed
    // while it was read; the checksum is remembered, so this reads nothing again).
    if let Some(path) = &step.source_file
        && let Ok(sum) = crate::engine::checksum::file_checksum(path)
    {
        set_source_checksum(tx, &step.version, &sum).await?;
    }
    Ok(())
}

/// The SHA-256 the ledger holds for a file step's file: the file its committed batches were
/// read from.
pub async fn recorded_source_checksum(tx: &mut DbTx, version: &str) -> Result<Option<String>, sqlx::Error> {
    if !has_source_checksum(tx).await? {
        return Ok(None);
    }
    let row = tx
        .fetch_optional(
            &format!("SELECT {SOURCE_CHECKSUM} FROM {LEDGER_TABLE} WHERE version = $1"),
            &[Value::Text(version.into())],
        )
        .await?;
    Ok(row.and_then(|r| r.first().and_then(|v| v.to_text())))
}

/// Record the SHA-256 of the file a data step read (`cutover repair` records a changed one).
pub async fn set_source_checksum(tx: &mut DbTx, version: &str, checksum: &str) -> Result<(), sqlx::Error> {
    tx.execute(
        &format!("UPDATE {LEDGER_TABLE} SET {SOURCE_CHECKSUM} = $1 WHERE version = $2"),
        &[Value::Text(checksum.into()), Value::Text(version.into())],
    )
    .await?;
    Ok(())
}

pub async fn set_status(tx: &mut DbTx, version: &str, status: LedgerStatus) -> Result<(), sqlx::Error> {
    tx.execute(
        &format!(
            "UPDATE {LEDGER_TABLE} SET status = $1, applied_at = $2, applied_by = $3, host = $4 WHERE version = $5"
        ),
        &[
            Value::Text(status.as_str().into()),
            Value::Text(now_iso()),
            Value::Text(os_user()),
            Value::Text(host_name()),
            Value::Text(version.into()),
        ],
    )
    .await?;
    Ok(())
}

pub async fn delete(tx: &mut DbTx, version: &str) -> Result<(), sqlx::Error> {
    tx.execute(
        &format!("DELETE FROM {LEDGER_TABLE} WHERE version = $1"),
        &[Value::Text(version.into())],
    )
    .await?;
    Ok(())
}

pub async fn set_checksum(tx: &mut DbTx, version: &str, checksum: &str) -> Result<(), sqlx::Error> {
    tx.execute(
        &format!("UPDATE {LEDGER_TABLE} SET checksum = $1 WHERE version = $2"),
        &[Value::Text(checksum.into()), Value::Text(version.into())],
    )
    .await?;
    Ok(())
}

/// What a failed step leaves in the ledger, in one transaction: the row marked `failed` with
/// its counts and error (and the failing statement of a schema step), and a `failed` event.
#[allow(clippy::too_many_arguments)]
pub async fn record_failure(
    db: &Db,
    step: &StepDef,
    run_id: &str,
    started_at: &str,
    duration_ms: i64,
    counts: &Counts,
    error: &str,
    statement: Option<&str>,
) -> Result<()> {
    let mut tx = db.begin().await?;
    upsert(
        &mut tx,
        step,
        LedgerStatus::Failed,
        run_id,
        started_at,
        Some(duration_ms),
        counts,
        Some(error),
        statement,
    )
    .await?;
    let detail = match statement {
        Some(s) => serde_json::json!({"error": error, "statement": s}),
        None => serde_json::json!({"error": error}),
    };
    append_event(&mut tx, Some(run_id), Some(&step.version), "failed", &detail).await?;
    tx.commit().await?;
    Ok(())
}

/// Append to the audit trail. `detail` is JSON and must never carry secrets.
pub async fn append_event(
    tx: &mut DbTx,
    run_id: Option<&str>,
    version: Option<&str>,
    event: &str,
    detail: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    let opt = |s: Option<&str>| s.map(|s| Value::Text(s.into())).unwrap_or(Value::Null);
    tx.execute(
        &format!("INSERT INTO {EVENTS_TABLE} (at, run_id, version, event, os_user, host, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
        &[
            Value::Text(now_iso()),
            opt(run_id),
            opt(version),
            Value::Text(event.into()),
            Value::Text(os_user()),
            Value::Text(host_name()),
            Value::Text(detail.to_string()),
        ],
    )
    .await?;
    Ok(())
}

pub async fn append_event_db(
    db: &Db,
    run_id: Option<&str>,
    version: Option<&str>,
    event: &str,
    detail: &serde_json::Value,
) -> Result<()> {
    let mut tx = db.begin().await?;
    append_event(&mut tx, run_id, version, event, detail).await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub id: i64,
    pub at: String,
    pub run_id: Option<String>,
    pub version: Option<String>,
    pub event: String,
    pub os_user: String,
    pub host: String,
    pub detail: serde_json::Value,
}

pub async fn history(db: &Db, limit: i64) -> Result<Vec<HistoryEntry>> {
    if !db.table_exists(EVENTS_TABLE).await? {
        return Ok(Vec::new());
    }
    let rows = db
        .fetch_all(
            &format!("SELECT id, at, run_id, version, event, os_user, host, detail FROM {EVENTS_TABLE} ORDER BY id DESC LIMIT $1"),
            &[Value::Int(limit)],
        )
        .await?;
    let mut out: Vec<HistoryEntry> = rows
        .rows
        .iter()
        .map(|r| HistoryEntry {
            id: int(&r[0]),
            at: text(&r[1]).unwrap_or_default(),
            run_id: text(&r[2]),
            version: text(&r[3]),
            event: text(&r[4]).unwrap_or_default(),
            os_user: text(&r[5]).unwrap_or_default(),
            host: text(&r[6]).unwrap_or_default(),
            detail: text(&r[7])
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(serde_json::Value::Null),
        })
        .collect();
    out.reverse();
    Ok(out)
}

/// The kind recorded in the ledger, for steps whose folder has since disappeared.
pub fn kind_of(row: &LedgerRow) -> StepKind {
    StepKind::parse(&row.kind).unwrap_or(StepKind::Schema)
}

/// The audit event that holds a step's pre-step content checksum of one table.
const PRE_CHECKSUM_EVENT: &str = "pre_step_checksum";

/// The content checksum of a table a step writes, taken before the step first wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreStepChecksum {
    pub version: String,
    pub table: String,
    /// `ContentSum::hex` of every row of the table (all columns).
    pub sum: String,
    pub rows: u64,
    pub at: String,
}

/// Keep a step's pre-step checksum of `table` with its ledger entry (in the audit trail).
pub async fn record_pre_checksum(
    db: &Db,
    run_id: &str,
    version: &str,
    table: &str,
    sum: &str,
    rows: u64,
) -> Result<()> {
    let detail = serde_json::json!({"table": table, "sum": sum, "rows": rows});
    append_event_db(db, Some(run_id), Some(version), PRE_CHECKSUM_EVENT, &detail).await
}

/// The latest pre-step checksum of every (step, table), by version then table.
pub async fn pre_checksums(db: &Db) -> Result<Vec<PreStepChecksum>> {
    if !db.table_exists(EVENTS_TABLE).await? {
        return Ok(Vec::new());
    }
    let rows = db
        .fetch_all(
            &format!("SELECT version, at, detail FROM {EVENTS_TABLE} WHERE event = $1 ORDER BY id"),
            &[Value::Text(PRE_CHECKSUM_EVENT.into())],
        )
        .await?;
    let mut latest: std::collections::BTreeMap<(String, String), PreStepChecksum> = Default::default();
    for r in &rows.rows {
        let g = |i: usize| r.get(i).and_then(text);
        let detail: serde_json::Value = g(2).and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
        let (Some(version), Some(table), Some(sum)) = (g(0), detail["table"].as_str(), detail["sum"].as_str()) else {
            continue;
        };
        let c = PreStepChecksum {
            version: version.clone(),
            table: table.to_string(),
            sum: sum.to_string(),
            rows: detail["rows"].as_u64().unwrap_or(0),
            at: g(1).unwrap_or_default(),
        };
        latest.insert((version, table.to_string()), c);
    }
    Ok(latest.into_values().collect())
}

/// An operator's fix of one field of a rejected row (`rejects fix`), from the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectFix {
    pub reject_id: i64,
    pub version: String,
    pub field: String,
    /// The new value; `None` for a secret field (the audit trail never holds it).
    pub value: Option<String>,
    pub by: String,
    pub at: String,
}

/// Every recorded reject fix, oldest first.
pub async fn reject_fixes(db: &Db) -> Result<Vec<RejectFix>> {
    if !db.table_exists(EVENTS_TABLE).await? {
        return Ok(Vec::new());
    }
    let rows = db
        .fetch_all(
            &format!(
                "SELECT version, at, os_user, detail FROM {EVENTS_TABLE} WHERE event = 'reject_fixed' ORDER BY id"
            ),
            &[],
        )
        .await?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|r| {
            let g = |i: usize| r.get(i).and_then(text);
            let detail: serde_json::Value = g(3).and_then(|s| serde_json::from_str(&s).ok())?;
            Some(RejectFix {
                reject_id: detail["reject"].as_i64()?,
                version: g(0).unwrap_or_default(),
                field: detail["field"].as_str().unwrap_or_default().to_string(),
                value: detail["after"].as_str().map(str::to_string),
                by: g(2).unwrap_or_default(),
                at: g(1).unwrap_or_default(),
            })
        })
        .collect())
}

/// The audit event holding a collection's content checksum, recorded when a step writing it
/// finished (and again after `rejects retry` wrote into it).
const COLLECTION_CHECKSUM_EVENT: &str = "collection_checksum";

/// A collection's document count and content checksum as recorded by a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollectionChecksum {
    pub version: String,
    pub collection: String,
    pub documents: u64,
    /// `ContentSum::hex` of `(_id, data, _permissions)` of every document.
    pub checksum: String,
    pub at: String,
}

/// Keep a collection's checksum with the step that wrote it last.
pub async fn record_collection_checksum(
    db: &Db,
    run_id: Option<&str>,
    version: &str,
    collection: &str,
    documents: u64,
    checksum: &str,
) -> Result<()> {
    let detail = serde_json::json!({"collection": collection, "documents": documents, "checksum": checksum});
    append_event_db(db, run_id, Some(version), COLLECTION_CHECKSUM_EVENT, &detail).await
}

/// Every recorded collection checksum, oldest first.
pub async fn collection_checksums(db: &Db) -> Result<Vec<CollectionChecksum>> {
    if !db.table_exists(EVENTS_TABLE).await? {
        return Ok(Vec::new());
    }
    let rows = db
        .fetch_all(
            &format!("SELECT version, at, detail FROM {EVENTS_TABLE} WHERE event = $1 ORDER BY id"),
            &[Value::Text(COLLECTION_CHECKSUM_EVENT.into())],
        )
        .await?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|r| {
            let g = |i: usize| r.get(i).and_then(text);
            let detail: serde_json::Value = g(2).and_then(|s| serde_json::from_str(&s).ok())?;
            Some(CollectionChecksum {
                version: g(0)?,
                collection: detail["collection"].as_str()?.to_string(),
                documents: detail["documents"].as_u64()?,
                checksum: detail["checksum"].as_str()?.to_string(),
                at: g(1).unwrap_or_default(),
            })
        })
        .collect())
}
