//! Blank rates: the share of NULL or blank (empty or spaces only) values of each source column
//! a data step maps, counted by the source database in one statement.

use crate::engine::data::pipeline::CompiledStep;
use crate::engine::db::Db;
use color_eyre::eyre::Result;
use std::collections::BTreeMap;

/// Per mapped source column, NULL-or-blank rows / rows (over the first `sample` rows when
/// set). A file step has none here (its cells are text read by the file reader).
pub async fn blank_rates(db: &Db, c: &CompiledStep, sample: Option<u64>) -> Result<BTreeMap<String, f64>> {
    let mut columns: Vec<String> = Vec::new();
    for f in &c.spec.fields {
        if let Some(s) = &f.source
            && !columns.contains(s)
        {
            columns.push(s.clone());
        }
    }
    if columns.is_empty() || c.spec.source.is_file() {
        return Ok(BTreeMap::new());
    }
    let d = db.dialect();
    let base = c.spec.source_sql_of(d, Some(&columns));
    let limit = sample.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    let sums: Vec<String> = columns
        .iter()
        .map(|col| {
            let q = d.quote_ident(col);
            format!(
                "SUM(CASE WHEN {q} IS NULL OR TRIM({}) = '' THEN 1 ELSE 0 END)",
                d.as_text(&q)
            )
        })
        .collect();
    let sql = format!(
        "SELECT COUNT(*), {} FROM (SELECT * FROM ({base}) cutover_src{limit}) cutover_blank",
        sums.join(", ")
    );
    let rows = db.fetch_all(&sql, &[]).await?;
    let Some(row) = rows.rows.first() else {
        return Ok(BTreeMap::new());
    };
    let num = |i: usize| -> f64 {
        row.get(i)
            .and_then(|v| v.to_text())
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let total = num(0);
    if total <= 0.0 {
        return Ok(BTreeMap::new());
    }
    Ok(columns
        .into_iter()
        .enumerate()
        .map(|(i, col)| (col, (num(i + 1) / total * 10_000.0).round() / 10_000.0))
        .collect())
}
