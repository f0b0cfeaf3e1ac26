//! Writing the export files: a CSV the way spreadsheet exports write them (UTF-8 with a BOM,
//! CRLF, RFC 4180 quoting, the odd blank line) and an XLSX workbook with real date cells.

use std::io::Write;
use std::path::Path;

use color_eyre::Result;
use color_eyre::eyre::WrapErr;

use super::orders::Cell;

/// A CSV being written, counting physical lines so each record's `_line` is known.
pub(crate) struct CsvOut {
    out: std::io::BufWriter<std::fs::File>,
    /// The line the next record starts on.
    line: u64,
    pub blank_lines: u64,
}

impl CsvOut {
    pub(crate) fn create(path: &Path, header: &[&str]) -> Result<CsvOut> {
        let file = std::fs::File::create(path).wrap_err_with(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        out.write_all(b"\xEF\xBB\xBF")?;
        let mut me = CsvOut {
            out,
            line: 1,
            blank_lines: 0,
        };
        me.record(header.iter().copied())?;
        Ok(me)
    }

    /// Writes one record; returns the line it starts on.
    pub(crate) fn record<'a>(&mut self, cells: impl IntoIterator<Item = &'a str>) -> Result<u64> {
        let start = self.line;
        for (i, c) in cells.into_iter().enumerate() {
            if i > 0 {
                self.out.write_all(b",")?;
            }
            // RFC 4180: quote a field holding a comma, a quote or a line break (and, as
            // exporters do, one with surrounding spaces); double the quotes inside.
            if c.contains([',', '"', '\n', '\r']) || c.starts_with(' ') || c.ends_with(' ') {
                self.out.write_all(b"\"")?;
                self.out.write_all(c.replace('"', "\"\"").as_bytes())?;
                self.out.write_all(b"\"")?;
            } else {
                self.out.write_all(c.as_bytes())?;
            }
            self.line += c.matches('\n').count() as u64;
        }
        self.out.write_all(b"\r\n")?;
        self.line += 1;
        Ok(start)
    }

    pub(crate) fn blank_line(&mut self) -> Result<()> {
        self.out.write_all(b"\r\n")?;
        self.line += 1;
        self.blank_lines += 1;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

/// The orders workbook: sheet "Orders", header in row 1.
pub(crate) struct XlsxOut {
    book: rust_xlsxwriter::Workbook,
    date_format: rust_xlsxwriter::Format,
    /// 0-based row of the next record.
    row: u32,
}

impl XlsxOut {
    pub(crate) fn new(header: &[&str]) -> Result<XlsxOut> {
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet();
        sheet.set_name("Orders")?;
        for (c, h) in header.iter().enumerate() {
            sheet.write_string(0, c as u16, *h)?;
        }
        Ok(XlsxOut {
            book,
            date_format: rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd"),
            row: 1,
        })
    }

    /// Writes one record; returns its row number as Excel shows it (1-based).
    pub(crate) fn record(&mut self, cells: &[Cell]) -> Result<u64> {
        let sheet = self.book.worksheet_from_index(0)?;
        let r = self.row;
        for (c, cell) in cells.iter().enumerate() {
            let c = c as u16;
            match cell {
                // Blank cells are left empty, as a spreadsheet leaves them.
                Cell::Text(t) if t.is_empty() => {}
                Cell::Text(t) => {
                    sheet.write_string(r, c, t)?;
                }
                Cell::Serial(n) => {
                    sheet.write_number(r, c, *n as f64)?;
                }
                Cell::Date(d) => {
                    use chrono::Datelike;
                    let dt = rust_xlsxwriter::ExcelDateTime::from_ymd(d.year() as u16, d.month() as u8, d.day() as u8)?;
                    sheet.write_datetime_with_format(r, c, &dt, &self.date_format)?;
                }
            }
        }
        self.row += 1;
        Ok(u64::from(r) + 1)
    }

    pub(crate) fn save(mut self, path: &Path) -> Result<()> {
        self.book
            .save(path)
            .wrap_err_with(|| format!("writing {}", path.display()))
    }
}
