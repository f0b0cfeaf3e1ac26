//! Files as sources: CSV exports and workbook sheets, read as rows keyed by their line.
//!
//! A `FileSource` hands out the file's rows in pages like a table's: the header's columns
//! plus `_line` (the line or row a record starts on, the key). The reader stays open between
//! pages; a page that does not continue the last one (a resume from a checkpoint) reopens the
//! file and skips to the line after the checkpoint. All reading happens on blocking threads.
//!
//! The whole-file facts (its row count, its SHA-256) are remembered per file version (path,
//! size, modification time), so the pre-flight's pass, the run's count and the end-of-run
//! reconciliation read a big file through once, not three times.

pub mod records;

use crate::engine::config::Config;
use crate::engine::data::pipeline::{CompiledStep, SourceBatch};
use crate::engine::data::spec::LINE_COLUMN;
use crate::engine::decode::CellIssue;
use crate::engine::source::Source;
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use records::{FileError, FileOptions, FileRecords};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Where a step's file is: `[source] file` resolved against the project's source folder.
pub fn step_file(config: &Config, c: &CompiledStep) -> Result<PathBuf> {
    let file = c
        .spec
        .source
        .file
        .as_deref()
        .ok_or_else(|| eyre!("step {} does not read a file", c.version))?;
    config.source_file(file).map_err(|e| eyre!("step {}: {e}", c.version))
}

/// One version of a file on disk: a file rewritten in place has another size or time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileVersion {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileVersion {
    fn of(path: &Path) -> std::io::Result<FileVersion> {
        let m = std::fs::metadata(path)?;
        Ok(FileVersion {
            path: path.to_path_buf(),
            len: m.len(),
            modified: m.modified().ok(),
        })
    }
}

static COUNTS: Mutex<Option<HashMap<(FileVersion, String), u64>>> = Mutex::new(None);

fn remembered<K: std::hash::Hash + Eq, V: Clone>(cache: &Mutex<Option<HashMap<K, V>>>, k: &K) -> Option<V> {
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(k).cloned())
}

fn remember<K: std::hash::Hash + Eq, V>(cache: &Mutex<Option<HashMap<K, V>>>, k: K, v: V) {
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(k, v);
}

pub use crate::engine::checksum::file_checksum;

/// The file's rows, counted by reading it through: blank lines are not rows, and a malformed
/// file is an error naming file, line and column. Blocking; remembered per file version.
pub fn count_rows_blocking(path: &Path, opts: &FileOptions) -> Result<u64, FileError> {
    let version = FileVersion::of(path).map_err(|e| FileError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        problem: format!("cannot read the file: {e}"),
    })?;
    let key = (version, format!("{opts:?}"));
    if let Some(n) = remembered(&COUNTS, &key) {
        return Ok(n);
    }
    let mut r = FileRecords::open(path, opts)?;
    let mut n = 0u64;
    // Every row is checked as a page's would be, without building its cells.
    while r.skip_record()?.is_some() {
        n += 1;
    }
    remember(&COUNTS, key, n);
    Ok(n)
}

/// The rows of a step's file, counted on a blocking thread.
pub async fn count_step_file(config: &Config, c: &CompiledStep) -> Result<u64> {
    let path = step_file(config, c)?;
    let opts = c.spec.source.file_options()?;
    tokio::task::spawn_blocking(move || count_rows_blocking(&path, &opts))
        .await
        .map_err(|e| eyre!("counting the file stopped: {e}"))?
        .map_err(|e| eyre!("{e}"))
}

/// How the file's columns become a page's: every header column, then the optional columns
/// the step reads that the file lacks (NULL), then `_line`.
#[derive(Debug, Clone)]
struct Layout {
    columns: Arc<Vec<String>>,
    /// NULL cells appended after the header's.
    absent: usize,
}

impl Layout {
    /// `header_line`: where the header is, for the messages.
    fn of(path: &Path, header_line: u64, headers: &[String], c: &CompiledStep) -> Result<Layout, FileError> {
        let err = |column: Option<String>, problem: String| FileError {
            file: path.to_path_buf(),
            line: Some(header_line),
            column,
            problem,
        };
        if let Some(h) = headers.iter().find(|h| h.eq_ignore_ascii_case(LINE_COLUMN)) {
            return Err(err(
                Some(h.clone()),
                format!(
                    "the header names a column '{h}', but {LINE_COLUMN} is the line number cutover gives every row; rename that column"
                ),
            ));
        }
        let optional = &c.spec.source.optional;
        let mut absent: Vec<String> = Vec::new();
        for col in c.read_columns() {
            if col == LINE_COLUMN || CompiledStep::column_index(headers, &col).is_some() {
                continue;
            }
            if optional.iter().any(|o| o.eq_ignore_ascii_case(&col)) {
                absent.push(col);
                continue;
            }
            return Err(err(
                Some(col.clone()),
                format!(
                    "the header has no column '{col}', which step {} reads (the file's columns: {}). Rename the column in the file or the step, or list it in [source] optional = [...] to read it as NULL when absent",
                    c.version,
                    headers.join(", ")
                ),
            ));
        }
        let n = absent.len();
        let columns: Vec<String> = headers
            .iter()
            .cloned()
            .chain(absent)
            .chain(std::iter::once(LINE_COLUMN.to_string()))
            .collect();
        Ok(Layout {
            columns: Arc::new(columns),
            absent: n,
        })
    }
}

/// The open reader between pages, and the line of the last record it handed out.
struct OpenFile {
    records: FileRecords,
    layout: Layout,
    last_line: u64,
}

/// A step's file as a `Source`.
pub struct FileSource {
    path: PathBuf,
    opts: FileOptions,
    c: Arc<CompiledStep>,
    open: Option<OpenFile>,
}

impl FileSource {
    pub fn new(config: &Config, c: Arc<CompiledStep>) -> Result<FileSource> {
        let path = step_file(config, &c)?;
        let opts = c.spec.source.file_options()?;
        Ok(FileSource {
            path,
            opts,
            c,
            open: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open the file and check its header against the step (blocking).
    fn open_blocking(path: &Path, opts: &FileOptions, c: &CompiledStep) -> Result<(FileRecords, Layout), FileError> {
        let records = FileRecords::open(path, opts)?;
        let layout = Layout::of(path, opts.header_row, records.headers(), c)?;
        Ok((records, layout))
    }

    /// Everything the pre-flight can know before a run writes: the file opens, its header has
    /// every column the step needs, and every record can be read (this also counts it).
    pub async fn check_whole_file(self) -> Result<u64, String> {
        let (path, opts, c) = (self.path.clone(), self.opts.clone(), self.c.clone());
        // The pre-flight names the step before the message: the message is the file's.
        tokio::task::spawn_blocking(move || {
            Self::open_blocking(&path, &opts, &c)?;
            count_rows_blocking(&path, &opts)
        })
        .await
        .map_err(|e| format!("reading the file stopped: {e}"))?
        .map_err(|e| e.to_string())
    }
}

/// Read up to `limit` records after line `after` into a page (blocking).
fn read_page(
    path: &Path,
    opts: &FileOptions,
    c: &CompiledStep,
    open: Option<OpenFile>,
    after: u64,
    limit: usize,
) -> Result<(OpenFile, SourceBatch), FileError> {
    let mut open = match open {
        Some(o) if o.last_line == after => o,
        // The first page, or a resume: open afresh and skip what the checkpoint covers.
        _ => {
            let (mut records, layout) = FileSource::open_blocking(path, opts, c)?;
            // The absent optional columns and `_line` follow the file's cells.
            records.reserve_trailing(layout.absent + 1);
            OpenFile {
                records,
                layout,
                last_line: 0,
            }
        }
    };
    let mut rows = Vec::with_capacity(limit.min(65_536));
    let mut issues = Vec::new();
    while rows.len() < limit {
        // Rows up to the checkpoint's line (a resume) are passed over, not built.
        let Some(rec) = open.records.next_record_after(after)? else {
            break;
        };
        open.last_line = rec.line;
        if let Some(issue) = rec.issue {
            issues.push((
                rows.len(),
                CellIssue {
                    column: issue.column,
                    reason: issue.reason,
                },
            ));
        }
        let mut cells = rec.cells;
        cells.extend(std::iter::repeat_n(Value::Null, open.layout.absent));
        cells.push(Value::Int(rec.line as i64));
        rows.push(cells);
    }
    let batch = SourceBatch {
        columns: open.layout.columns.clone(),
        rows,
        issues,
        embeds: Default::default(),
    };
    Ok((open, batch))
}

/// The line a checkpoint's key names (`None`: from the start).
fn after_line(after: &Option<Value>) -> Result<u64> {
    match after {
        None => Ok(0),
        Some(Value::Int(n)) if *n >= 0 => Ok(*n as u64),
        Some(Value::Text(s)) => s
            .trim()
            .parse()
            .map_err(|_| eyre!("the checkpoint's key '{s}' is not a line number")),
        Some(other) => Err(eyre!("the checkpoint's key {other} is not a line number")),
    }
}

impl Source for FileSource {
    fn name(&self) -> &str {
        &self.c.source_name
    }

    fn count(&self) -> impl Future<Output = Result<u64>> + Send {
        let (path, opts) = (self.path.clone(), self.opts.clone());
        async move {
            tokio::task::spawn_blocking(move || count_rows_blocking(&path, &opts))
                .await
                .map_err(|e| eyre!("counting the file stopped: {e}"))?
                .map_err(|e| eyre!("{e}"))
        }
    }

    fn check(&self) -> impl Future<Output = Result<(), String>> + Send {
        let (path, opts, c) = (self.path.clone(), self.opts.clone(), self.c.clone());
        async move {
            tokio::task::spawn_blocking(move || FileSource::open_blocking(&path, &opts, &c).map(|_| ()))
                .await
                .map_err(|e| format!("opening the file stopped: {e}"))?
                .map_err(|e| e.to_string())
        }
    }

    fn page(&mut self, after: &Option<Value>, limit: usize) -> impl Future<Output = Result<SourceBatch>> + Send {
        let after = after_line(after);
        let (path, opts, c) = (self.path.clone(), self.opts.clone(), self.c.clone());
        let open = self.open.take();
        let slot = &mut self.open;
        async move {
            let after = after?;
            let (open, batch) =
                tokio::task::spawn_blocking(move || read_page(&path, &opts, &c, open, after, limit.max(1)))
                    .await
                    .map_err(|e| eyre!("reading the file stopped: {e}"))?
                    .map_err(|e| eyre!("{e}"))?;
            *slot = Some(open);
            Ok(batch)
        }
    }

    fn key_after(&self, page: &SourceBatch) -> Option<Value> {
        page.rows.last().and_then(|r| self.c.page_key(&page.columns, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::data::spec::DataStep;

    fn step() -> CompiledStep {
        let spec = DataStep::parse(
            r#"kind = "data"
[source]
file = "p.csv"
optional = ["email"]
[target]
table = "patients"
[id_map]
column = "id"
[[fields]]
target = "mrn"
source = "mrn"
[[fields]]
target = "email"
source = "email"
"#,
        )
        .unwrap();
        CompiledStep::compile("20250101T000000", spec).unwrap()
    }

    fn lines(batch: &SourceBatch) -> Vec<i64> {
        batch
            .rows
            .iter()
            .map(|r| match r.last() {
                Some(Value::Int(n)) => *n,
                other => panic!("no line: {other:?}"),
            })
            .collect()
    }

    /// Pages continue one reader: the file is read once per step, not again from its start
    /// for each page. (A file replaced after the first page is not seen by the open reader; a
    /// reader reopened per page would read the new file.) A page after another line (a
    /// resume) opens the file afresh and starts after that line.
    #[test]
    fn pages_continue_one_reader_and_a_resume_starts_after_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        let rows = |tag: &str| {
            let mut text = String::from("mrn\n");
            for i in 1..=7 {
                text.push_str(&format!("{tag}{i}\n"));
            }
            text
        };
        std::fs::write(&path, rows("a")).unwrap();
        let (c, opts) = (step(), FileOptions::default());
        let (open, first) = read_page(&path, &opts, &c, None, 0, 3).unwrap();
        assert_eq!(lines(&first), [2, 3, 4]);
        assert_eq!(first.columns.as_slice(), ["mrn", "email", "_line"]);
        assert_eq!(first.rows[0][1], Value::Null, "an absent optional column is NULL");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, rows("b")).unwrap();
        let (open, second) = read_page(&path, &opts, &c, Some(open), 4, 3).unwrap();
        assert_eq!(lines(&second), [5, 6, 7]);
        assert_eq!(
            second.rows[0][0],
            Value::Text("a4".into()),
            "the same reader, the same file"
        );
        // Not where the reader stands: a resume after line 3 reads the file as it is now.
        let (_, resumed) = read_page(&path, &opts, &c, Some(open), 3, 10).unwrap();
        assert_eq!(lines(&resumed), [4, 5, 6, 7, 8]);
        assert_eq!(resumed.rows[0][0], Value::Text("b3".into()));
    }
}
