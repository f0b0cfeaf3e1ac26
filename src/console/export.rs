//! `x` in the error inspector: the shown rejects as CSV in the project folder. The rows are
//! already redacted by the engine (secret columns never reach the console).

use crate::engine::ops::snapshot::RejectSummary;
use color_eyre::eyre::{Result, WrapErr};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Write `rejects-<stamp>.csv` under `dir`; returns the path written.
pub fn write_rejects_csv(
    dir: &Path,
    stamp: &str,
    rows: &[RejectSummary],
    step_names: &BTreeMap<String, String>,
) -> Result<PathBuf> {
    let path = dir.join(format!("rejects-{stamp}.csv"));
    let mut w = csv::Writer::from_path(&path).wrap_err_with(|| format!("cannot create {}", path.display()))?;
    w.write_record([
        "id",
        "step",
        "step_name",
        "source_table",
        "source_key",
        "field",
        "rule",
        "reason",
        "level",
        "state",
        "waits_for",
        "row",
    ])?;
    for r in rows {
        // The source row as one JSON object keeps its columns in order and any value intact.
        let row = serde_json::Value::Object(
            r.row
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        );
        w.write_record([
            r.id.to_string().as_str(),
            &r.step,
            step_names.get(&r.step).map(String::as_str).unwrap_or(""),
            &r.source_table,
            &r.source_key,
            r.field.as_deref().unwrap_or(""),
            &r.rule,
            &r.reason,
            &r.level,
            &r.state,
            r.waits_for.as_deref().unwrap_or(""),
            &row.to_string(),
        ])?;
    }
    w.flush().wrap_err_with(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
