//! Rejects and warnings of one run counted by step and rule, read inside the caller's
//! transaction (the assess reads what its rolled-back pass stored before rolling it back).

use super::REJECTS;
use crate::engine::db::DbTx;
use crate::engine::value::Value;

/// One (step, rule, level) with its count.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleCount {
    pub version: String,
    pub rule: String,
    pub warning: bool,
    pub count: u64,
}

/// Every (step, rule, level) of `run_id` with its count.
pub async fn count_by_rule(tx: &mut DbTx, run_id: &str) -> Result<Vec<RuleCount>, sqlx::Error> {
    let rows = tx
        .fetch_all(
            &format!(
                "SELECT version, rule, level, COUNT(*) FROM {REJECTS} WHERE run_id = $1 GROUP BY version, rule, level ORDER BY version, rule, level"
            ),
            &[Value::Text(run_id.into())],
        )
        .await?;
    Ok(rows
        .rows
        .iter()
        .map(|r| RuleCount {
            version: r.first().and_then(|v| v.to_text()).unwrap_or_default(),
            rule: r.get(1).and_then(|v| v.to_text()).unwrap_or_default(),
            warning: r.get(2).and_then(|v| v.to_text()).as_deref() == Some("warning"),
            count: r
                .get(3)
                .and_then(|v| v.to_text())
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
        })
        .collect())
}

/// The first `limit` errors (not warnings) of one step and rule of `run_id`: (source key,
/// reason).
pub async fn examples(
    tx: &mut DbTx,
    run_id: &str,
    version: &str,
    rule: &str,
    limit: u32,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = tx
        .fetch_all(
            &format!(
                "SELECT source_key, reason FROM {REJECTS} WHERE run_id = $1 AND version = $2 AND rule = $3 AND level = 'error' ORDER BY id LIMIT {limit}"
            ),
            &[
                Value::Text(run_id.into()),
                Value::Text(version.into()),
                Value::Text(rule.into()),
            ],
        )
        .await?;
    Ok(rows
        .rows
        .iter()
        .map(|r| {
            (
                r.first().and_then(|v| v.to_text()).unwrap_or_default(),
                r.get(1).and_then(|v| v.to_text()).unwrap_or_default(),
            )
        })
        .collect())
}
