//! Reading a CSV file or a workbook sheet record by record, each with the line (CSV) or row
//! (XLSX) number an operator finds it at. CSV streams: memory does not grow with the file.
//! A workbook sheet is loaded whole by calamine (a sheet holds at most 1 048 576 rows).
//!
//! Everything that makes the file itself unreadable (an unterminated quote, a row wider than
//! the header, invalid UTF-8, an empty file, a missing sheet) is a `FileError` naming the file,
//! line and column. A row that is merely short, or holds an Excel error cell, is returned with
//! an `issue`: the row is a reject, the file is fine.

use crate::engine::value::Value;
use calamine::{Data, Range, Reader};
use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Bytes read from a CSV file at a time (the csv reader's buffer and the file's).
const READ_BUFFER: usize = 64 * 1024;

/// How the bytes of a CSV file are text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextEncoding {
    /// UTF-8, with or without a byte-order mark. Invalid bytes are a file error.
    #[default]
    Utf8,
    /// Windows-1252 (what Excel on Windows writes as "CSV"); every byte is a character.
    Windows1252,
}

impl TextEncoding {
    /// `utf-8`, `utf8`, `windows-1252`, `cp1252`, `latin1`, `iso-8859-1` (any case).
    pub fn parse(name: &str) -> Option<TextEncoding> {
        match name.trim().to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Some(TextEncoding::Utf8),
            // Latin-1 files are read as Windows-1252, as browsers do: the two differ only in
            // 0x80–0x9F, which Latin-1 leaves to control characters nobody writes.
            "windows-1252" | "cp1252" | "latin1" | "latin-1" | "iso-8859-1" => Some(TextEncoding::Windows1252),
            _ => None,
        }
    }
}

/// How to read a file. `Default` detects the delimiter and takes the header from line 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOptions {
    /// CSV field delimiter; `None` detects it from the header line among `,` `;` tab `|`.
    pub delimiter: Option<u8>,
    pub quote: u8,
    pub encoding: TextEncoding,
    /// Workbook sheet; `None` is the first sheet.
    pub sheet: Option<String>,
    /// 1-based line (CSV) or row (workbook) of the header.
    pub header_row: u64,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            delimiter: None,
            quote: b'"',
            encoding: TextEncoding::Utf8,
            sheet: None,
            header_row: 1,
        }
    }
}

/// The kinds of file a step can read, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Csv,
    Workbook,
}

impl FileKind {
    /// `.xlsx`, `.xlsm`, `.xlsb`, `.xls` and `.ods` are workbooks; anything else is read as
    /// delimited text.
    pub fn of(path: &Path) -> FileKind {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => FileKind::Workbook,
            _ => FileKind::Csv,
        }
    }
}

/// A file that cannot be read as a whole: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileError {
    pub file: PathBuf,
    pub line: Option<u64>,
    pub column: Option<String>,
    pub problem: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(col) = &self.column {
            write!(f, ", column {col}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// One row of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    /// CSV: the line the record starts on (the header is line 1 by default). Workbook: the
    /// row number Excel shows.
    pub line: u64,
    /// One value per header column.
    pub cells: Vec<Value>,
    /// Why the row cannot be taken as it is (too few cells, an error cell); the row is a
    /// reject, not a broken file.
    pub issue: Option<RowIssue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowIssue {
    /// Index into the headers of the cell at fault.
    pub column: usize,
    pub reason: String,
}

/// An open file, read one record at a time.
pub struct FileRecords {
    path: PathBuf,
    headers: Vec<String>,
    inner: Inner,
    /// Cells a caller appends to every record (`reserve_trailing`): a row's cells are
    /// allocated once, at their final size.
    trailing: usize,
}

enum Inner {
    Csv(CsvRecords),
    Sheet(SheetRecords),
}

struct CsvRecords {
    reader: csv::Reader<Box<dyn Read + Send>>,
    /// The line breaks the csv reader has been handed and not yet passed.
    breaks: Arc<Mutex<LineBreaks>>,
    record: csv::ByteRecord,
    encoding: TextEncoding,
    quote: u8,
    delimiter: u8,
    /// Bytes skipped before the csv reader's first byte (a byte-order mark).
    offset: u64,
    done: bool,
    /// Where the reader began looking for the last record returned (line, byte): checked for
    /// an open quote at the end.
    last: Option<(u64, u64)>,
}

struct SheetRecords {
    range: Range<Data>,
    /// Next row, relative to the range's first row.
    next: usize,
    /// The sheet row (0-based) of the range's first row, and its first column.
    origin: (u32, u32),
}

impl FileRecords {
    pub fn open(path: &Path, opts: &FileOptions) -> Result<FileRecords, FileError> {
        // Opening a named pipe blocks until something writes to it: refuse anything that is
        // not a plain file before opening it. (A missing file is the open's error below.)
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.is_dir() {
                return Err(Self::err(path, None, None, "this is a folder, not a file"));
            }
            if !meta.is_file() {
                return Err(Self::err(
                    path,
                    None,
                    None,
                    "this is not a plain file (a pipe, socket or device); copy the export into a file",
                ));
            }
        }
        match FileKind::of(path) {
            FileKind::Csv => Self::open_csv(path, opts),
            FileKind::Workbook => Self::open_sheet(path, opts),
        }
    }

    /// Column names from the header row, trimmed; a blank header cell is `column_N`.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leave room for `n` more cells in every record's `cells`, for a caller that appends
    /// its own (a page's `_line`): the row is then allocated once, at its final size.
    pub fn reserve_trailing(&mut self, n: usize) {
        self.trailing = n;
    }

    /// The next row that is not blank, or `None` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<FileRecord>, FileError> {
        self.next_record_after(0)
    }

    /// The next row that is not blank and starts after line `after` (a resume's checkpoint).
    /// The rows passed over are checked as any row is (a malformed one is still an error) but
    /// their cells are never built.
    pub fn next_record_after(&mut self, after: u64) -> Result<Option<FileRecord>, FileError> {
        let room = self.headers.len() + self.trailing;
        match &mut self.inner {
            Inner::Csv(c) => loop {
                let Some(line) = c.next_checked(&self.path, &self.headers)? else {
                    return Ok(None);
                };
                if line > after {
                    return c.record_at(&self.path, &self.headers, line, room).map(Some);
                }
            },
            Inner::Sheet(s) => loop {
                let Some(rec) = s.next(self.headers.len(), room) else {
                    return Ok(None);
                };
                if rec.line > after {
                    return Ok(Some(rec));
                }
            },
        }
    }

    /// Pass over the next row that is not blank, checked as `next_record` checks it, without
    /// building its cells; its line, or `None` at the end of the file. What a count needs.
    pub fn skip_record(&mut self) -> Result<Option<u64>, FileError> {
        match &mut self.inner {
            Inner::Csv(c) => c.next_checked(&self.path, &self.headers),
            Inner::Sheet(s) => Ok(s.next(self.headers.len(), 0).map(|r| r.line)),
        }
    }

    fn err(path: &Path, line: Option<u64>, column: Option<String>, problem: impl Into<String>) -> FileError {
        FileError {
            file: path.to_path_buf(),
            line,
            column,
            problem: problem.into(),
        }
    }

    fn open_csv(path: &Path, opts: &FileOptions) -> Result<FileRecords, FileError> {
        let io = |e: std::io::Error| Self::err(path, None, None, format!("cannot read the file: {e}"));
        let mut file = BufReader::with_capacity(READ_BUFFER, File::open(path).map_err(io)?);
        let head = file.fill_buf().map_err(io)?;
        if head.is_empty() {
            return Err(Self::err(
                path,
                None,
                None,
                "the file is empty: a header row naming the columns is needed",
            ));
        }
        let offset: u64 = if head.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
        let delimiter = match opts.delimiter {
            Some(d) => d,
            // Detected on the header's line: lines above it (a title) say nothing.
            None => {
                let mut from = &head[offset as usize..];
                for _ in 1..opts.header_row {
                    match from.iter().position(|b| *b == b'\n') {
                        Some(i) => from = &from[i + 1..],
                        None => break,
                    }
                }
                detect_delimiter(from, opts.quote)
            }
        };
        file.consume(offset as usize);
        let breaks = Arc::new(Mutex::new(LineBreaks::default()));
        let reader = csv::ReaderBuilder::new()
            .buffer_capacity(READ_BUFFER)
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .quote(opts.quote)
            .from_reader(Box::new(BreakTracking {
                inner: file,
                breaks: breaks.clone(),
            }) as Box<dyn Read + Send>);
        let mut c = CsvRecords {
            reader,
            breaks,
            record: csv::ByteRecord::new(),
            encoding: opts.encoding,
            quote: opts.quote,
            delimiter,
            offset,
            done: false,
            last: None,
        };
        // The header is the `header_row`-th record; lines before it (a title, an export
        // date) are not data.
        let mut header: Option<(u64, Vec<String>)> = None;
        while let Some((line, cells)) = c.read_raw(path)? {
            // A line of only spaces (or only delimiters) is blank, not a header.
            let blank = cells.iter().all(|b| b.iter().all(u8::is_ascii_whitespace));
            if line >= opts.header_row && !blank {
                let cells = cells
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        c.decode(b)
                            .map_err(|p| Self::err(path, Some(line), Some(format!("{}", i + 1)), p))
                    })
                    .collect::<Result<Vec<String>, FileError>>()?;
                header = Some((line, cells));
                break;
            }
        }
        let Some((line, raw)) = header else {
            return Err(Self::err(
                path,
                None,
                None,
                if opts.header_row > 1 {
                    format!("the file ends before its header row {}", opts.header_row)
                } else {
                    "the file is empty: a header row naming the columns is needed".into()
                },
            ));
        };
        let headers = name_headers(path, line, raw)?;
        Ok(FileRecords {
            path: path.to_path_buf(),
            headers,
            inner: Inner::Csv(c),
            trailing: 0,
        })
    }

    fn open_sheet(path: &Path, opts: &FileOptions) -> Result<FileRecords, FileError> {
        let mut book = calamine::open_workbook_auto(path)
            .map_err(|e| Self::err(path, None, None, format!("cannot open the workbook: {e}")))?;
        let names = book.sheet_names();
        let sheet = match &opts.sheet {
            Some(s) => names.iter().find(|n| *n == s).cloned().ok_or_else(|| {
                Self::err(
                    path,
                    None,
                    None,
                    format!(
                        "the workbook has no sheet '{s}'; its sheets are {}",
                        names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
                    ),
                )
            })?,
            None => names
                .first()
                .cloned()
                .ok_or_else(|| Self::err(path, None, None, "the workbook has no sheets"))?,
        };
        let range = book
            .worksheet_range(&sheet)
            .map_err(|e| Self::err(path, None, None, format!("cannot read sheet '{sheet}': {e}")))?;
        let Some(origin) = range.start() else {
            // The first sheet, taken by default, is often an empty cover or notes sheet.
            let others: Vec<String> = names
                .iter()
                .filter(|n| **n != sheet)
                .map(|n| format!("'{n}'"))
                .collect();
            let hint = if opts.sheet.is_none() && !others.is_empty() {
                format!(
                    " (it is the first sheet, read when [source] sheet is not set; the workbook's other sheets: {})",
                    others.join(", ")
                )
            } else {
                String::new()
            };
            return Err(Self::err(
                path,
                None,
                None,
                format!("sheet '{sheet}' is empty: a header row naming the columns is needed{hint}"),
            ));
        };
        let header_idx = opts.header_row.saturating_sub(1);
        if header_idx < u64::from(origin.0) || header_idx >= u64::from(origin.0) + range.height() as u64 {
            return Err(Self::err(
                path,
                Some(opts.header_row),
                None,
                format!(
                    "sheet '{sheet}' has no header at row {}: its cells span rows {}–{}",
                    opts.header_row,
                    origin.0 + 1,
                    u64::from(origin.0) + range.height() as u64
                ),
            ));
        }
        let rel = (header_idx - u64::from(origin.0)) as usize;
        let raw: Vec<String> = (0..range.width())
            .map(|c| match range.get((rel, c)) {
                Some(Data::Empty) | None => String::new(),
                Some(d) => d.to_string(),
            })
            .collect();
        let headers = name_headers(path, opts.header_row, raw)?;
        Ok(FileRecords {
            path: path.to_path_buf(),
            headers,
            inner: Inner::Sheet(SheetRecords {
                range,
                next: rel + 1,
                origin,
            }),
            trailing: 0,
        })
    }
}

/// Trim header names, name blank ones by position, refuse a name given twice (a step could
/// not say which of the two it means).
fn name_headers(path: &Path, line: u64, raw: Vec<String>) -> Result<Vec<String>, FileError> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (i, h) in raw.into_iter().enumerate() {
        let h = h.trim().to_string();
        let h = if h.is_empty() { format!("column_{}", i + 1) } else { h };
        if let Some(j) = out.iter().position(|o| *o == h) {
            return Err(FileRecords::err(
                path,
                Some(line),
                Some(h.clone()),
                format!(
                    "the header names '{h}' twice (columns {} and {}); rename one so a step can tell them apart",
                    j + 1,
                    i + 1
                ),
            ));
        }
        out.push(h);
    }
    Ok(out)
}

/// The delimiter that occurs most often outside quotes on the first line (`,` when none do).
fn detect_delimiter(head: &[u8], quote: u8) -> u8 {
    let candidates = [b',', b';', b'\t', b'|'];
    let mut counts = [0usize; 4];
    let mut quoted = false;
    for &b in head {
        if b == quote {
            quoted = !quoted;
        } else if !quoted {
            if b == b'\n' {
                break;
            }
            if let Some(i) = candidates.iter().position(|c| *c == b) {
                counts[i] += 1;
            }
        }
    }
    let best = (0..4).max_by_key(|i| (counts[*i], usize::from(*i == 0))).unwrap_or(0);
    if counts[best] == 0 { b',' } else { candidates[best] }
}

/// A record's first line and its cells as bytes.
type RawRecord = (u64, Vec<Vec<u8>>);
/// A place in the file as the csv reader counts it.
type LineAndByte = (u64, u64);

impl CsvRecords {
    /// The next record as raw cells with its line, or `None` at the end.
    fn read_raw(&mut self, path: &Path) -> Result<Option<RawRecord>, FileError> {
        let (line, (_, byte)) = match self.read_into(path)? {
            Some(at) => at,
            None => return Ok(None),
        };
        // A header whose quote never closes swallows the whole file: check it at the end
        // like any last record.
        self.last = Some((line, byte));
        Ok(Some((line, self.record.iter().map(|c| c.to_vec()).collect())))
    }

    /// Read the next record into `self.record`; returns the line it starts on, and where the
    /// csv reader began looking for it (line and byte; see `check_closed`).
    ///
    /// The csv crate's record position is where the previous record ended (the rest of its
    /// terminator and any blank lines before this record are not yet consumed), so it cannot
    /// say on which line a record starts: `LineBreaks` can.
    fn read_into(&mut self, path: &Path) -> Result<Option<(u64, LineAndByte)>, FileError> {
        if self.done {
            return Ok(None);
        }
        match self.reader.read_byte_record(&mut self.record) {
            Ok(true) => {
                let pos = self.record.position().cloned().unwrap_or_else(csv::Position::new);
                let line = self
                    .breaks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .line_after(pos.byte());
                Ok(Some((line, (pos.line(), pos.byte()))))
            }
            Ok(false) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                let line = e.position().map(|p| p.line());
                Err(FileRecords::err(path, line, None, format!("cannot read the file: {e}")))
            }
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<String, String> {
        match self.encoding {
            TextEncoding::Utf8 => match std::str::from_utf8(bytes) {
                Ok(s) => Ok(s.to_string()),
                Err(e) => Err(format!(
                    "invalid UTF-8 at byte {} of the cell; if the file is not UTF-8, set [source] encoding (`cutover preview --encoding`), e.g. \"windows-1252\"",
                    e.valid_up_to() + 1
                )),
            },
            TextEncoding::Windows1252 => {
                let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
                Ok(text.into_owned())
            }
        }
    }

    /// Read up to the next record that is not blank and check it as a whole: not wider than
    /// the header, every cell text in the file's encoding. Returns the line it starts on; its
    /// bytes stay in `self.record` for `record_at`. `None` at the end of the file.
    fn next_checked(&mut self, path: &Path, headers: &[String]) -> Result<Option<u64>, FileError> {
        loop {
            let Some((line, looked_from)) = self.read_into(path)? else {
                if let Some((from_line, from_byte)) = self.last.take() {
                    self.check_closed(path, headers, from_line, from_byte)?;
                }
                return Ok(None);
            };
            // The record's own line: the csv reader counts `\n` only, and its position is
            // where the previous record ended (check_closed skips the breaks after it).
            self.last = Some((line, looked_from.1));
            // The cells lie end to end in one buffer: all of them blank is all of it blank.
            if self.record.as_slice().iter().all(|b| b.is_ascii_whitespace()) {
                continue; // a blank line, or one of only delimiters: not a row
            }
            let width = self.record.len();
            if width > headers.len() {
                return Err(FileRecords::err(
                    path,
                    Some(line),
                    Some(format!("{}", headers.len() + 1)),
                    format!(
                        "the row has {width} cells but the header names {}; a delimiter inside an unquoted value, or a missing header?",
                        headers.len()
                    ),
                ));
            }
            self.utf8_text(path, headers, line)?;
            return Ok(Some(line));
        }
    }

    /// The record's bytes as one text when the file is UTF-8 (`None` for an encoding where
    /// every byte is a character). Checked once for the whole record, and each cell's end
    /// must fall between two characters (a character split by a delimiter is invalid in both
    /// cells); a failure is re-checked cell by cell to name the cell.
    fn utf8_text(&self, path: &Path, headers: &[String], line: u64) -> Result<Option<&str>, FileError> {
        if self.encoding != TextEncoding::Utf8 {
            return Ok(None);
        }
        if let Ok(text) = std::str::from_utf8(self.record.as_slice()) {
            let mut end = 0;
            let whole = self.record.iter().all(|cell| {
                end += cell.len();
                text.is_char_boundary(end)
            });
            if whole {
                return Ok(Some(text));
            }
        }
        for (i, raw) in self.record.iter().enumerate() {
            self.decode(raw).map_err(|p| {
                FileRecords::err(path, Some(line), Some(headers.get(i).cloned().unwrap_or_default()), p)
            })?;
        }
        Ok(None)
    }

    /// The record `next_checked` read (at `line`) as a row of values, `room` cells long.
    fn record_at(&self, path: &Path, headers: &[String], line: u64, room: usize) -> Result<FileRecord, FileError> {
        let width = self.record.len();
        let mut cells = Vec::with_capacity(room.max(headers.len()));
        match self.utf8_text(path, headers, line)? {
            Some(text) => {
                let mut start = 0;
                for raw in self.record.iter() {
                    let end = start + raw.len();
                    cells.push(Value::Text(text.get(start..end).unwrap_or_default().to_string()));
                    start = end;
                }
            }
            None => {
                for (i, raw) in self.record.iter().enumerate() {
                    let text = self.decode(raw).map_err(|p| {
                        FileRecords::err(path, Some(line), Some(headers.get(i).cloned().unwrap_or_default()), p)
                    })?;
                    cells.push(Value::Text(text));
                }
            }
        }
        let issue = (width < headers.len()).then(|| RowIssue {
            column: width,
            reason: format!(
                "the row has {width} cells but the header names {}: '{}' and the columns after it are missing",
                headers.len(),
                headers.get(width).cloned().unwrap_or_default()
            ),
        });
        cells.resize(headers.len(), Value::Null);
        Ok(FileRecord { line, cells, issue })
    }

    /// The csv crate ends an unterminated quoted field at the end of the file without an
    /// error, turning the rest of the file into one cell. At the end of the file, scan the
    /// last record's bytes as RFC 4180 does and refuse the file when a quote is still open.
    /// (Callers count a file through to its end before writing any of it.)
    fn check_closed(&self, path: &Path, headers: &[String], line: u64, start: u64) -> Result<(), FileError> {
        let io = |e: std::io::Error| FileRecords::err(path, Some(line), None, format!("cannot read the file: {e}"));
        let mut f = File::open(path).map_err(io)?;
        f.seek(SeekFrom::Start(start + self.offset)).map_err(io)?;
        let delimiter = self.delimiter;
        let mut open = false;
        let mut field_start = true;
        let mut after_quote = false;
        let mut opened_at_line = line;
        let mut cur_line = line;
        // Which cell of its record the open quote starts: the column the message names.
        let mut field = 0usize;
        let mut opened_in_field = 0usize;
        // `start` is where the previous record ended: the line breaks up to this record's
        // first byte belong to the lines before `line`.
        let mut leading = true;
        let mut after_cr = false;
        // The file's last byte ended a line: that line break does not start another line.
        let mut ended_line = false;
        for b in BufReader::new(f).bytes() {
            let b = b.map_err(io)?;
            let is_break = b == b'\n' || b == b'\r';
            if leading && is_break {
                continue;
            }
            leading = false;
            // A line ends at `\n`, `\r\n` (once) or a lone `\r`, as LineBreaks counts them.
            let ends_line = b == b'\r' || (b == b'\n' && !after_cr);
            after_cr = b == b'\r';
            ended_line = is_break;
            if open {
                if after_quote {
                    after_quote = false;
                    if b == self.quote {
                        continue; // an escaped quote
                    }
                    open = false;
                } else if b == self.quote {
                    after_quote = true;
                    continue;
                } else {
                    if ends_line {
                        cur_line += 1;
                    }
                    continue;
                }
            }
            if b == self.quote && field_start {
                open = true;
                opened_at_line = cur_line;
                opened_in_field = field;
                field_start = false;
            } else if b == delimiter || is_break {
                if ends_line {
                    cur_line += 1;
                    field = 0;
                } else if b == delimiter {
                    field += 1;
                }
                field_start = true;
            } else {
                field_start = false;
            }
        }
        if open && !after_quote {
            return Err(FileRecords::err(
                path,
                Some(opened_at_line),
                Some(
                    headers
                        .get(opened_in_field)
                        // The header's own open quote: its "name" is the rest of the file.
                        .filter(|h| !h.contains(['\n', '\r']))
                        .cloned()
                        .unwrap_or_else(|| format!("{}", opened_in_field + 1)),
                ),
                {
                    let rest = cur_line - opened_at_line + u64::from(!ended_line);
                    format!(
                        "a quoted value opened on line {opened_at_line} is never closed: the rest of the file ({rest} line{}) would be one cell. Close the quote (a quote inside a value is written twice: \"\")",
                        if rest == 1 { "" } else { "s" }
                    )
                },
            ));
        }
        Ok(())
    }
}

/// The runs of line-break bytes (`\r`, `\n`) the csv reader has been handed, so the line a
/// record starts on can be told from the byte its search started at: past the run of breaks
/// it stands in. Runs the reader has passed are dropped, so memory stays within its buffer.
#[derive(Default)]
struct LineBreaks {
    /// (first byte, end byte, line feeds in the file up to the end byte).
    runs: VecDeque<(u64, u64, u64)>,
    /// Line feeds up to the end of the last dropped run.
    passed: u64,
    /// Bytes and line ends handed to the reader so far.
    seen: u64,
    feeds: u64,
    /// The last byte handed over was `\r`: a `\n` now ends the same line (CRLF).
    after_cr: bool,
}

impl LineBreaks {
    /// A line ends at `\n`, at `\r\n` (once), and at a `\r` alone (old Mac exports): the csv
    /// reader ends records at all three, so counting only `\n` would give every record of a
    /// CR-only file line 1.
    fn saw(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            // Most of a file is not line breaks: pass eight bytes at a time that hold none.
            if let Some(word) = bytes.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
                let word = u64::from_ne_bytes(word);
                if !has_byte(word, b'\n') && !has_byte(word, b'\r') {
                    i += 8;
                    self.seen += 8;
                    self.after_cr = false;
                    continue;
                }
            }
            i += 1;
            let at = self.seen;
            self.seen += 1;
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            if b != b'\n' && b != b'\r' {
                continue;
            }
            if b == b'\r' || !after_cr {
                self.feeds += 1;
            }
            match self.runs.back_mut() {
                Some(run) if run.1 == at => {
                    run.1 = at + 1;
                    run.2 = self.feeds;
                }
                _ => self.runs.push_back((at, at + 1, self.feeds)),
            }
        }
    }

    /// The 1-based line of the first byte at or after `from` that is not a line break.
    fn line_after(&mut self, from: u64) -> u64 {
        while let Some(&(_, end, feeds)) = self.runs.front() {
            if end > from {
                break;
            }
            self.passed = feeds;
            self.runs.pop_front();
        }
        match self.runs.front() {
            Some(&(start, _, feeds)) if start <= from => 1 + feeds,
            _ => 1 + self.passed,
        }
    }
}

/// Whether any of the eight bytes of `word` is `byte`: whether `word ^ byte` has a zero lane
/// (exact as a yes/no: a borrow that could set a high bit runs on only from a zero lane).
fn has_byte(word: u64, byte: u8) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS != 0
}

/// The file as the csv reader reads it, each chunk noted in `LineBreaks` on its way.
struct BreakTracking<R> {
    inner: R,
    breaks: Arc<Mutex<LineBreaks>>,
}

impl<R: Read> Read for BreakTracking<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.breaks.lock().unwrap_or_else(|p| p.into_inner()).saw(&buf[..n]);
        Ok(n)
    }
}

impl SheetRecords {
    /// `room`: the capacity of the row's cells (at least `width`).
    fn next(&mut self, width: usize, room: usize) -> Option<FileRecord> {
        while self.next < self.range.height() {
            let r = self.next;
            self.next += 1;
            let line = u64::from(self.origin.0) + r as u64 + 1;
            let mut cells = Vec::with_capacity(room.max(width));
            let mut issue = None;
            for c in 0..width {
                let cell = self.range.get((r, c)).unwrap_or(&Data::Empty);
                let (value, problem) = sheet_value(cell);
                if let (Some(p), None) = (problem, &issue) {
                    issue = Some(RowIssue {
                        column: c,
                        reason: format!("cell {}{line} {p}", column_letters(self.origin.1 as usize + c)),
                    });
                }
                cells.push(value);
            }
            if cells.iter().all(|v| match v {
                Value::Null => true,
                Value::Text(t) => t.trim().is_empty(),
                _ => false,
            }) && issue.is_none()
            {
                continue; // an empty row is not a row
            }
            return Some(FileRecord { line, cells, issue });
        }
        None
    }
}

/// A sheet cell as a value; date cells become ISO text so `date` reads them like any other.
fn sheet_value(cell: &Data) -> (Value, Option<String>) {
    match cell {
        Data::Empty => (Value::Null, None),
        Data::String(s) => (Value::Text(s.clone()), None),
        Data::Int(i) => (Value::Int(*i), None),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => (Value::Int(*f as i64), None),
        Data::Float(f) => (Value::Real(*f), None),
        Data::Bool(b) => (Value::Bool(*b), None),
        Data::DateTime(d) if d.is_datetime() => date_cell(d),
        Data::DateTime(d) => (Value::Real(d.as_f64()), None),
        Data::DateTimeIso(s) | Data::DurationIso(s) => (Value::Text(s.clone()), None),
        Data::Error(e) => (Value::Null, Some(format!("is an Excel error ({e})"))),
    }
}

/// A date cell as Excel shows it: `YYYY-MM-DD`, with `THH:MM:SS` when it has a time. calamine
/// turns any serial into some date, so the serials Excel cannot show as one are caught here:
/// a negative serial (Excel shows ####), 60 in the 1900 system (Excel's 1900-02-29, a day that
/// never was: calamine reads it as 1900-02-28, the same day as 59), and days past 9999-12-31.
/// A serial below 1 in the 1900 system is a time of day alone (`HH:MM:SS`), not 1899-12-31.
fn date_cell(d: &calamine::ExcelDateTime) -> (Value, Option<String>) {
    use chrono::Datelike;
    let serial = d.as_f64();
    let cannot = |why: &str| (Value::Null, Some(format!("holds a date serial ({serial}) {why}")));
    if !serial.is_finite() || serial < 0.0 {
        return cannot("below zero, which Excel cannot show as a date");
    }
    // calamine does not say which date system the workbook uses; the two read one serial
    // 1462 days apart.
    let in_1900 = calamine::ExcelDateTime::new(serial, calamine::ExcelDateTimeType::DateTime, false).as_datetime()
        == d.as_datetime();
    if in_1900 && (60.0..61.0).contains(&serial) {
        return cannot("that Excel shows as 1900-02-29, a day that does not exist (Excel's 1900 leap-year bug)");
    }
    match d.as_datetime() {
        Some(dt) if in_1900 && serial < 1.0 => (Value::Text(dt.format("%H:%M:%S").to_string()), None),
        Some(dt) if dt.year() > 9999 => cannot("past 9999-12-31, the last day Excel shows"),
        Some(dt) if dt.time() == chrono::NaiveTime::MIN => (Value::Text(dt.format("%Y-%m-%d").to_string()), None),
        Some(dt) => (Value::Text(dt.format("%Y-%m-%dT%H:%M:%S").to_string()), None),
        None => cannot("that Excel cannot show as a date"),
    }
}

/// `0` → `A`, `25` → `Z`, `26` → `AA`: how Excel names a column.
pub fn column_letters(mut index: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    // By its own path: `super` would name engine::source::file, which reads this module.
    use crate::engine::source::file::records::*;

    fn csv_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.csv");
        std::fs::write(&p, bytes).unwrap();
        (dir, p)
    }

    /// A record as (line, cells as text, has an issue).
    type Row = (u64, Vec<String>, bool);

    /// The headers and every record.
    fn read_all(p: &Path, opts: &FileOptions) -> Result<(Vec<String>, Vec<Row>), FileError> {
        let mut r = FileRecords::open(p, opts)?;
        let headers = r.headers().to_vec();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            let cells = rec
                .cells
                .iter()
                .map(|v| v.to_text().unwrap_or_else(|| "NULL".into()))
                .collect();
            out.push((rec.line, cells, rec.issue.is_some()));
        }
        Ok((headers, out))
    }

    #[test]
    fn bom_crlf_quoted_newlines_and_blank_lines_keep_their_lines() {
        let (_d, p) = csv_file(
            b"\xEF\xBB\xBFid,name,notes\r\n1,Ann,\"said \"\"hi\"\", then left\"\r\n\r\n2,Bob,\"two\r\nlines\"\r\n,,\r\n3,\"Lee, Jr\",\r\n",
        );
        let (headers, rows) = read_all(&p, &FileOptions::default()).unwrap();
        assert_eq!(headers, ["id", "name", "notes"]);
        assert_eq!(
            rows,
            [
                (
                    2,
                    vec!["1".into(), "Ann".into(), "said \"hi\", then left".into()],
                    false
                ),
                (4, vec!["2".into(), "Bob".into(), "two\r\nlines".into()], false),
                // line 6 is only delimiters: not a row
                (7, vec!["3".into(), "Lee, Jr".into(), "".into()], false),
            ]
        );
    }

    #[test]
    fn delimiter_is_detected_and_header_row_may_be_later() {
        let (_d, p) = csv_file(b"export of 2024-01-02\n\na;b\n1;x,y\n");
        let opts = FileOptions {
            header_row: 3,
            ..Default::default()
        };
        let (headers, rows) = read_all(&p, &opts).unwrap();
        assert_eq!(headers, ["a", "b"]);
        assert_eq!(rows, [(4, vec!["1".into(), "x,y".into()], false)]);
        let (_d, p) = csv_file(b"a\tb\n1\t2\n");
        assert_eq!(read_all(&p, &FileOptions::default()).unwrap().1[0].1, ["1", "2"]);
    }

    #[test]
    fn a_short_row_is_a_row_issue_a_long_row_a_file_error() {
        let (_d, p) = csv_file(b"a,b,c\n1,2\n");
        let (_, rows) = read_all(&p, &FileOptions::default()).unwrap();
        assert_eq!(rows, [(2, vec!["1".into(), "2".into(), "NULL".into()], true)]);
        let (_d, p) = csv_file(b"a,b\n1,2\n3,4,5\n");
        let e = read_all(&p, &FileOptions::default()).unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (Some(3), Some("3")), "{e}");
        assert!(e.to_string().contains("3 cells but the header names 2"), "{e}");
    }

    #[test]
    fn an_unterminated_quote_names_its_line_and_column() {
        let (_d, p) = csv_file(b"id,notes\n1,ok\n2,\"never closed\n3,more\n");
        let e = read_all(&p, &FileOptions::default()).unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (Some(3), Some("notes")), "{e}");
        assert!(e.to_string().contains("never closed"), "{e}");
    }

    #[test]
    fn invalid_utf8_is_a_file_error_unless_the_encoding_says_otherwise() {
        let (_d, p) = csv_file(b"id,name\n1,Ren\xE9e\n");
        let e = read_all(&p, &FileOptions::default()).unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (Some(2), Some("name")), "{e}");
        assert!(e.to_string().contains("invalid UTF-8"), "{e}");
        let opts = FileOptions {
            encoding: TextEncoding::Windows1252,
            ..Default::default()
        };
        assert_eq!(read_all(&p, &opts).unwrap().1[0].1, ["1", "Renée"]);
    }

    #[test]
    fn empty_files_and_duplicate_headers_are_refused() {
        for bytes in [&b""[..], b"\xEF\xBB\xBF"] {
            let (_d, p) = csv_file(bytes);
            let e = read_all(&p, &FileOptions::default()).unwrap_err();
            assert!(e.to_string().contains("the file is empty"), "{e}");
        }
        let (_d, p) = csv_file(b"a,b,a\n");
        let e = read_all(&p, &FileOptions::default()).unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (Some(1), Some("a")), "{e}");
        let (_d, p) = csv_file(b"a, ,c\n1,2,3\n");
        assert_eq!(read_all(&p, &FileOptions::default()).unwrap().0, ["a", "column_2", "c"]);
    }

    #[test]
    fn workbook_cells_become_values_and_a_missing_sheet_names_the_sheets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.xlsx");
        let mut book = rust_xlsxwriter::Workbook::new();
        let date = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd");
        let stamp = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd hh:mm");
        let s = book.add_worksheet();
        s.set_name("Orders").unwrap();
        for (c, h) in ["n", "when", "at", "serial", "ok", "price"].iter().enumerate() {
            s.write_string(0, c as u16, *h).unwrap();
        }
        s.write_string(1, 0, "A-1").unwrap();
        let d = rust_xlsxwriter::ExcelDateTime::from_ymd(2024, 3, 5).unwrap();
        s.write_datetime_with_format(1, 1, &d, &date).unwrap();
        let t = rust_xlsxwriter::ExcelDateTime::parse_from_str("2024-03-05 14:30:00").unwrap();
        s.write_datetime_with_format(1, 2, &t, &stamp).unwrap();
        s.write_number(1, 3, 45356.0).unwrap();
        s.write_boolean(1, 4, true).unwrap();
        s.write_number(1, 5, 2.5).unwrap();
        // row 3 left empty: not a row
        s.write_string(3, 0, "A-2").unwrap();
        book.save(&p).unwrap();

        let opts = FileOptions {
            sheet: Some("Orders".into()),
            ..Default::default()
        };
        let mut r = FileRecords::open(&p, &opts).unwrap();
        assert_eq!(r.headers(), ["n", "when", "at", "serial", "ok", "price"]);
        let first = r.next_record().unwrap().unwrap();
        assert_eq!(first.line, 2);
        assert_eq!(
            first.cells,
            [
                Value::Text("A-1".into()),
                Value::Text("2024-03-05".into()),
                Value::Text("2024-03-05T14:30:00".into()),
                Value::Int(45356),
                Value::Bool(true),
                Value::Real(2.5),
            ]
        );
        let second = r.next_record().unwrap().unwrap();
        assert_eq!(
            (second.line, &second.cells[0], &second.cells[1]),
            (4, &Value::Text("A-2".into()), &Value::Null)
        );
        assert!(r.next_record().unwrap().is_none());

        let e = FileRecords::open(
            &p,
            &FileOptions {
                sheet: Some("Patients".into()),
                ..Default::default()
            },
        )
        .err()
        .unwrap();
        assert!(
            e.to_string().contains("no sheet 'Patients'; its sheets are 'Orders'"),
            "{e}"
        );
    }

    /// Old Mac exports end lines with a lone CR: each record keeps its own line (they were all
    /// line 1, so the line key collided and a resume would have skipped rows).
    #[test]
    fn cr_only_line_endings_count_lines() {
        let (_d, p) = csv_file(b"id,name\r1,Ann\r2,Bo\r\r3,Cy");
        let (_, rows) = read_all(&p, &FileOptions::default()).unwrap();
        let lines: Vec<u64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 3, 5]);
        let (_d, p) = csv_file(b"id,name\r1,Ann\r2,\"Bo\r\r3,Cy\r");
        let e = read_all(&p, &FileOptions::default()).unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (Some(3), Some("name")), "{e}");
        assert!(e.to_string().contains("(3 lines)"), "{e}");
    }

    /// A header whose quote never closes is a file error (it swallowed every row, silently, when
    /// the step's columns were optional); a line of spaces above the header is blank, not the
    /// header; the lines an open quote takes do not count the file's final line break.
    #[test]
    fn the_header_row_is_checked_like_any_row() {
        let (_d, p) = csv_file(b"id,\"name\n1,Ann\n");
        let e = read_all(&p, &FileOptions::default()).unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (Some(1), Some("2")), "{e}");
        assert!(e.to_string().contains("never closed"), "{e}");
        let (_d, p) = csv_file(b"\r\n  \r\nid,name\r\n1,Ann\r\n");
        let (headers, rows) = read_all(&p, &FileOptions::default()).unwrap();
        assert_eq!(headers, ["id", "name"]);
        assert_eq!(rows, [(4, vec!["1".into(), "Ann".into()], false)]);
        let (_d, p) = csv_file(b"id,name\n1,\"Ann\n");
        let e = read_all(&p, &FileOptions::default()).unwrap_err();
        assert!(e.to_string().contains("(1 line)"), "{e}");
    }

    /// Date cells whose serial Excel cannot show as a date are decode issues, not a wrong date:
    /// 60 is Excel's 1900-02-29 (calamine read it as 1900-02-28, like 59), below zero and past
    /// 9999 have no date; below 1 is a time of day, not 1899-12-31.
    #[test]
    fn date_cells_excel_cannot_show_are_row_issues() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.xlsx");
        let mut book = rust_xlsxwriter::Workbook::new();
        let date = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd");
        let s = book.add_worksheet();
        s.write_string(0, 0, "d").unwrap();
        for (r, n) in [59.0, 60.0, 61.0, -1.0, 0.5, 3_000_000.0].iter().enumerate() {
            s.write_number_with_format(r as u32 + 1, 0, *n, &date).unwrap();
        }
        book.save(&p).unwrap();
        let (_, rows) = read_all(&p, &FileOptions::default()).unwrap();
        let got: Vec<(String, bool)> = rows.into_iter().map(|(_, c, issue)| (c[0].clone(), issue)).collect();
        let want = [
            ("1900-02-28", false),
            ("NULL", true),
            ("1900-03-01", false),
            ("NULL", true),
            ("12:00:00", false),
            ("NULL", true),
        ];
        assert_eq!(got, want.map(|(v, i)| (v.to_string(), i)));
    }

    /// The first sheet is read by default; when it is empty the message names the others.
    #[test]
    fn an_empty_first_sheet_names_the_other_sheets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.xlsx");
        let mut book = rust_xlsxwriter::Workbook::new();
        book.add_worksheet().set_name("Cover").unwrap();
        book.add_worksheet()
            .set_name("Orders")
            .unwrap()
            .write_string(0, 0, "n")
            .unwrap();
        book.save(&p).unwrap();
        let e = FileRecords::open(&p, &FileOptions::default()).err().unwrap();
        assert!(e.to_string().contains("sheet 'Cover' is empty"), "{e}");
        assert!(e.to_string().contains("other sheets: 'Orders'"), "{e}");
    }

    /// A folder or a named pipe is refused at once (opening a pipe would wait for a writer).
    #[test]
    fn a_folder_or_a_pipe_is_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("x.xlsx");
        std::fs::create_dir(&folder).unwrap();
        let e = FileRecords::open(&folder, &FileOptions::default()).err().unwrap();
        assert!(e.to_string().contains("a folder, not a file"), "{e}");
        let pipe = dir.path().join("p.csv");
        let made = std::process::Command::new("mkfifo").arg(&pipe).status();
        if made.is_ok_and(|s| s.success()) {
            let e = FileRecords::open(&pipe, &FileOptions::default()).err().unwrap();
            assert!(e.to_string().contains("not a plain file"), "{e}");
        }
    }

    /// A character whose bytes a delimiter splits is invalid in both cells, though the
    /// record's bytes end to end are valid UTF-8: a file error naming the first cell, both
    /// when reading and when counting; a character whole inside a cell is fine.
    #[test]
    fn a_character_split_by_a_delimiter_is_invalid_utf8() {
        let (_d, p) = csv_file(b"id,a,b\n1,x\xC3,\xA9y\n");
        let e = read_all(&p, &FileOptions::default()).unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (Some(2), Some("a")), "{e}");
        let mut r = FileRecords::open(&p, &FileOptions::default()).unwrap();
        let e = r.skip_record().unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (Some(2), Some("a")), "{e}");
        let (_d, p) = csv_file("id,a,b\n1,é,ü\u{1F600}\n".as_bytes());
        assert_eq!(
            read_all(&p, &FileOptions::default()).unwrap().1[0].1,
            ["1", "é", "ü\u{1F600}"]
        );
    }

    /// Lines long and short, LF, CRLF and CR, blank lines and quoted line breaks, read through
    /// buffers of every alignment: each record keeps the line it starts on, the same when
    /// skipped, counted, or resumed after a line.
    #[test]
    fn long_and_short_lines_keep_their_lines_at_any_alignment() {
        let mut bytes = b"id,text\n".to_vec();
        let mut want: Vec<(u64, String)> = Vec::new();
        let mut line = 2u64;
        for i in 0..600u64 {
            let text = "x".repeat((i * 7 % 53) as usize);
            let (value, spans) = match i % 5 {
                0 => (format!("\"{text}\r\n{text}\""), 2),
                _ => (text.clone(), 1),
            };
            bytes.extend_from_slice(format!("{i},{value}").as_bytes());
            let end: &[u8] = match i % 3 {
                0 => b"\r\n",
                1 => b"\n",
                _ => b"\n\n",
            };
            bytes.extend_from_slice(end);
            let cell = if spans == 2 { format!("{text}\r\n{text}") } else { text };
            want.push((line, cell));
            line += spans - 1 + if end == b"\n\n" { 2 } else { 1 };
        }
        let (_d, p) = csv_file(&bytes);
        let (_, rows) = read_all(&p, &FileOptions::default()).unwrap();
        let got: Vec<(u64, String)> = rows.into_iter().map(|(l, c, _)| (l, c[1].clone())).collect();
        assert_eq!(got, want);
        let mut r = FileRecords::open(&p, &FileOptions::default()).unwrap();
        let mut skipped = Vec::new();
        while let Some(l) = r.skip_record().unwrap() {
            skipped.push(l);
        }
        assert_eq!(skipped, want.iter().map(|w| w.0).collect::<Vec<_>>());
        let after = want[300].0;
        let mut r = FileRecords::open(&p, &FileOptions::default()).unwrap();
        assert_eq!(
            r.next_record_after(after).unwrap().map(|rec| rec.line),
            Some(want[301].0)
        );

        // The line breaks a reader is handed in pieces of any size land where they are.
        let mut whole = LineBreaks::default();
        whole.saw(&bytes);
        for piece in [1, 3, 7, 8, 9, 13, 64] {
            let mut pieces = LineBreaks::default();
            for chunk in bytes.chunks(piece) {
                pieces.saw(chunk);
            }
            assert_eq!(
                (pieces.runs.clone(), pieces.feeds),
                (whole.runs.clone(), whole.feeds),
                "{piece}"
            );
        }
        let breaks = bytes.iter().filter(|b| **b == b'\n' || **b == b'\r').count();
        let crlf = bytes.windows(2).filter(|w| w == b"\r\n").count();
        assert_eq!(whole.feeds as usize, breaks - crlf);
    }

    /// Rows of the file carry room for the cells a page appends, so none is grown again.
    #[test]
    fn records_leave_room_for_trailing_cells() {
        let (_d, p) = csv_file(b"a,b\n1,2\n");
        let mut r = FileRecords::open(&p, &FileOptions::default()).unwrap();
        r.reserve_trailing(3);
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(rec.cells.len(), 2);
        assert!(rec.cells.capacity() >= 5, "{}", rec.cells.capacity());
    }

    #[test]
    fn excel_column_letters() {
        assert_eq!(column_letters(0), "A");
        assert_eq!(column_letters(25), "Z");
        assert_eq!(column_letters(26), "AA");
        assert_eq!(column_letters(701), "ZZ");
        assert_eq!(column_letters(702), "AAA");
    }
}
