//! `cutover preview`: what a file holds (headers, row count, an inferred type per column, sample
//! rows) and, given a target table, which of its columns each file column most likely fills,
//! with the transforms that would get the values there. The file is read through
//! [`FileRecords`], the same reader a step uses, so a preview fails where a run would.

pub mod infer;
pub mod step;
pub mod suggest;

use crate::engine::source::file::records::{FileError, FileOptions, FileRecords};
use crate::engine::value::Value;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use infer::ColumnType;
pub use suggest::{Suggestion, TargetColumn, suggest};

/// Sample values listed per column.
pub const COLUMN_SAMPLES: usize = 3;

/// A file, as the preview saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    /// The file as given.
    pub file: String,
    /// The sheet read (workbooks), when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    /// Data rows in the whole file (blank lines are not rows).
    pub rows: u64,
    pub columns: Vec<ColumnPreview>,
    /// The first rows, each with its line (CSV) or row (workbook) number; cells as text, a
    /// blank or NULL cell as "".
    pub sample_rows: Vec<SampleRow>,
    /// Rows the reader could not take as they are (too few cells, an Excel error cell): they
    /// would be rejects.
    #[serde(default)]
    pub bad_rows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRow {
    pub line: u64,
    pub cells: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnPreview {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// Date columns: the formats seen, most used first (chrono patterns, as `date` takes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub formats: Vec<String>,
    /// Share of rows whose cell is blank (0..1).
    pub blank_rate: f64,
    /// Share of the non-blank values that fit `kind` (0..1).
    pub fit_rate: f64,
    /// Only gender spellings (`M`, `female`, ...).
    #[serde(default)]
    pub gender_like: bool,
    /// The first few distinct non-blank values.
    pub samples: Vec<String>,
}

/// A preview with its suggested mapping, as the engine answers `Command::PreviewFile`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PreviewReport {
    /// The file as asked for (relative to the source folder, or absolute).
    pub file: String,
    pub into: Option<String>,
    pub preview: Option<Preview>,
    /// The target table's columns; None when it has no such table (then `error` says so).
    pub targets: Option<Vec<TargetColumn>>,
    pub suggestions: Vec<Suggestion>,
    pub error: Option<String>,
}

/// Read the whole file (for the count and the types) and keep `rows` sample rows; memory
/// does not grow with the file.
pub fn preview_file(path: &Path, opts: &FileOptions, rows: usize) -> Result<Preview, FileError> {
    let mut records = FileRecords::open(path, opts)?;
    let headers = records.headers().to_vec();
    let mut stats = vec![infer::ColumnStats::default(); headers.len()];
    let mut samples: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
    let mut sample_rows = Vec::new();
    let mut count = 0u64;
    let mut bad_rows = 0u64;
    while let Some(record) = records.next_record()? {
        count += 1;
        if record.issue.is_some() {
            bad_rows += 1;
        }
        for (i, v) in record.cells.iter().enumerate().take(headers.len()) {
            stats[i].add(v);
            if samples[i].len() < COLUMN_SAMPLES && !v.is_blank() {
                let text = cell_text(v);
                if !samples[i].contains(&text) {
                    samples[i].push(text);
                }
            }
        }
        if sample_rows.len() < rows {
            sample_rows.push(SampleRow {
                line: record.line,
                cells: record.cells.iter().map(cell_text).collect(),
            });
        }
    }
    let columns = headers
        .into_iter()
        .zip(stats)
        .zip(samples)
        .map(|((name, s), samples)| {
            let kind = s.column_type();
            ColumnPreview {
                name,
                kind,
                formats: if kind == ColumnType::Date {
                    s.date_formats()
                } else {
                    Vec::new()
                },
                blank_rate: if count == 0 { 0.0 } else { s.blank as f64 / count as f64 },
                fit_rate: s.fit_rate(),
                gender_like: s.gender_like(),
                samples,
            }
        })
        .collect();
    Ok(Preview {
        file: path.display().to_string(),
        sheet: opts.sheet.clone(),
        rows: count,
        columns,
        sample_rows,
        bad_rows,
    })
}

fn cell_text(v: &Value) -> String {
    v.to_text().unwrap_or_default()
}
