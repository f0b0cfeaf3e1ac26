//! Files as sources: CSV exports and workbook sheets, read as rows keyed by their line.

pub mod records;
