//! Reading a driver row into engine values, one decoder per dialect. Every column type a
//! source server can hold must arrive here without loss or fail with the column named.
//!
//! The drivers' own typed decoding is used only where it is exact; everything else is read
//! from the raw bytes the server sent, because sqlx's typed decoders refuse many types
//! ("String is not compatible with …"), panic on PostgreSQL `infinity`, and turn MySQL zero
//! dates into NULL. Values with no exact `Value` variant (decimals, times, intervals, unsigned
//! 64-bit integers beyond `i64`) travel as their exact text.

use crate::engine::value::{Value, hex};
use sqlx::postgres::{PgRow, PgTypeInfo, PgTypeKind, PgValueFormat};
use sqlx::{Column, Row, TypeInfo, ValueRef};

/// A cell that cannot become a value without loss (invalid UTF-8, a zero date). The row keeps
/// NULL in its place; a data step turns the row into a reject naming the column and reason,
/// and verification treats it as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellIssue {
    /// Index of the column in the row.
    pub column: usize,
    pub reason: String,
}

impl CellIssue {
    /// The cell as a read error naming its column `name`, for readers that take no lossy cell
    /// (verification).
    pub fn to_error(&self, name: String) -> sqlx::Error {
        sqlx::Error::ColumnDecode {
            index: name,
            source: self.reason.clone().into(),
        }
    }
}

/// Why one cell could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bad {
    /// This value cannot be represented without loss: the row is rejected, the read goes on.
    Issue(String),
    /// The column's type cannot be read at all (or the server sent something malformed): the
    /// read fails, naming the column and type.
    Fail(String),
}

type Cell = Result<Value, Bad>;

fn column_error(column: &str, msg: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: format!("\"{column}\""),
        source: msg.into(),
    }
}

/// Put a decoded cell into the row, or record its issue, or fail the read.
fn push_cell(
    vals: &mut Vec<Value>,
    issues: &mut Vec<CellIssue>,
    i: usize,
    name: &str,
    cell: Cell,
) -> Result<(), sqlx::Error> {
    match cell {
        Ok(v) => vals.push(v),
        Err(Bad::Issue(reason)) => {
            issues.push(CellIssue { column: i, reason });
            vals.push(Value::Null);
        }
        Err(Bad::Fail(msg)) => return Err(column_error(name, msg)),
    }
    Ok(())
}

/// Text that must be UTF-8; otherwise an issue naming the first bad byte (0-based).
fn utf8(b: &[u8]) -> Cell {
    match std::str::from_utf8(b) {
        Ok(s) => Ok(Value::Text(s.to_string())),
        Err(e) => Err(Bad::Issue(format!("invalid UTF-8 at byte {}", e.valid_up_to()))),
    }
}

/// Fraction of a second the way chrono's `%.f` writes it (none, 3 or 6 digits), so every
/// source writes the same instant the same way.
fn frac(micros: u32) -> String {
    if micros == 0 {
        String::new()
    } else if micros.is_multiple_of(1000) {
        format!(".{:03}", micros / 1000)
    } else {
        format!(".{micros:06}")
    }
}

/// A float4 as the real number its shortest text names (0.1, not 0.10000000149011612).
fn real_from_f32(f: f32) -> Value {
    if f.is_finite() {
        Value::Real(f.to_string().parse::<f64>().unwrap_or(f64::from(f)))
    } else {
        Value::Real(f64::from(f))
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// A JSON document as `Value::Json` when serde_json keeps every number exactly; otherwise the
/// exact text (a number like 12345678901234567890123 would become a rounded float).
fn json_value(text: &str) -> Cell {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Bad::Issue(format!("invalid JSON: {e}")))?;
    if json_numbers_exact(text, &v) {
        Ok(Value::Json(v))
    } else {
        Ok(Value::Text(text.to_string()))
    }
}

/// Whether each number literal of `text` is, as parsed into `v`, the same decimal number.
fn json_numbers_exact(text: &str, v: &serde_json::Value) -> bool {
    fn collect<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Number>) {
        match v {
            serde_json::Value::Number(n) => out.push(n),
            serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    // Literals in document order; object values come back in key order, so compare as sets.
    let mut literals = Vec::new();
    let (mut in_str, mut esc) = (false, false);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
        } else if c == b'-' || c.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                i += 1;
            }
            literals.push(decimal_key(&text[start..i]));
            continue;
        }
        i += 1;
    }
    let mut nums = Vec::new();
    collect(v, &mut nums);
    let mut parsed: Vec<_> = nums.iter().map(|n| decimal_key(&n.to_string())).collect();
    literals.sort();
    parsed.sort();
    literals == parsed
}

/// A decimal literal reduced to (negative, significant digits, exponent of the last digit),
/// so `1.50`, `15e-1` and `1.5` compare equal.
fn decimal_key(s: &str) -> (bool, String, i64) {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(p) => (&s[..p], s[p + 1..].parse::<i64>().unwrap_or(0)),
        None => (s, 0),
    };
    let (int, fr) = mant.split_once('.').unwrap_or((mant, ""));
    let mut digits = format!("{int}{fr}");
    let mut exp = exp.saturating_sub(fr.len() as i64);
    while digits.ends_with('0') {
        digits.pop();
        exp = exp.saturating_add(1);
    }
    let digits = digits.trim_start_matches('0').to_string();
    if digits.is_empty() {
        return (false, String::new(), 0);
    }
    (neg, digits, exp)
}

/// A value as an element of a JSON array: numbers that JSON cannot hold exactly stay text.
fn to_json_element(v: Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(b),
        Value::Int(i) => serde_json::Value::from(i),
        Value::Real(f) => match serde_json::Number::from_f64(f) {
            Some(n) => serde_json::Value::Number(n),
            None => serde_json::Value::String(pg_float_text(f)),
        },
        Value::Text(s) => serde_json::Value::String(s),
        Value::Bytes(b) => serde_json::Value::String(format!("\\x{}", hex(&b.bytes))),
        Value::Json(j) => j,
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite

/// Whether a declared SQLite type has TEXT affinity (contains CHAR, CLOB or TEXT and not INT,
/// SQLite's own rule, which sqlx's declared-type parsing follows).
fn sqlite_text_affinity(declared: &str) -> bool {
    declared == "TEXT"
}

pub fn decode_sqlite(row: &sqlx::sqlite::SqliteRow, issues: &mut Vec<CellIssue>) -> Result<Vec<Value>, sqlx::Error> {
    let mut vals = Vec::with_capacity(row.len());
    for i in 0..row.len() {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            vals.push(Value::Null);
            continue;
        }
        // The value's storage class, not the column's declared type: SQLite is dynamic.
        let cell = match raw.type_info().name() {
            "INTEGER" | "BOOLEAN" => Ok(Value::Int(row.try_get_unchecked::<i64, _>(i)?)),
            "REAL" => Ok(Value::Real(row.try_get_unchecked::<f64, _>(i)?)),
            "BLOB" => {
                let b = row.try_get_unchecked::<&[u8], _>(i)?;
                if sqlite_text_affinity(row.column(i).type_info().name()) {
                    // Bytes stored in a text column are text written by a careless client.
                    utf8(b).map_err(|e| match e {
                        Bad::Issue(r) => Bad::Issue(format!("BLOB value in a text column: {r}")),
                        other => other,
                    })
                } else {
                    Ok(Value::bytes(b.to_vec()))
                }
            }
            // Raw bytes: text that is not UTF-8 is one bad cell, not a failed read.
            _ => utf8(row.try_get_unchecked::<&[u8], _>(i)?),
        };
        push_cell(&mut vals, issues, i, row.column(i).name(), cell)?;
    }
    Ok(vals)
}

/// A row read through SQLite's own handle (`backend::sqlite::stream_pages`), by the same rules
/// as `decode_sqlite`: the value's storage class decides, bytes in a text column are text, and
/// text that is not UTF-8 is one bad cell.
pub fn decode_sqlite_native(
    row: &rusqlite::Row,
    names: &[String],
    text_affinity: &[bool],
    issues: &mut Vec<CellIssue>,
) -> Result<Vec<Value>, sqlx::Error> {
    use rusqlite::types::ValueRef as Native;
    let mut vals = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let raw = row.get_ref(i).map_err(|e| column_error(name, e.to_string()))?;
        let cell = match raw {
            Native::Null => Ok(Value::Null),
            Native::Integer(n) => Ok(Value::Int(n)),
            Native::Real(f) => Ok(Value::Real(f)),
            Native::Text(b) => utf8(b),
            Native::Blob(b) if text_affinity.get(i).copied().unwrap_or(false) => utf8(b).map_err(|e| match e {
                Bad::Issue(r) => Bad::Issue(format!("BLOB value in a text column: {r}")),
                other => other,
            }),
            Native::Blob(b) => Ok(Value::bytes(b.to_vec())),
        };
        push_cell(&mut vals, issues, i, name, cell)?;
    }
    Ok(vals)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A cursor over PostgreSQL's binary wire format (big-endian).
struct Rd<'a> {
    b: &'a [u8],
    what: &'a str,
}

impl<'a> Rd<'a> {
    fn new(b: &'a [u8], what: &'a str) -> Self {
        Rd { b, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        if self.b.len() < n {
            return Err(Bad::Fail(format!(
                "malformed {} value from the server (too short)",
                self.what
            )));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Bad> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, Bad> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u32(&mut self) -> Result<u32, Bad> {
        Ok(self.i32()? as u32)
    }
    fn i64(&mut self) -> Result<i64, Bad> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn f64(&mut self) -> Result<f64, Bad> {
        Ok(f64::from_bits(self.i64()? as u64))
    }
    /// A length-prefixed field: `None` for -1 (NULL).
    fn field(&mut self) -> Result<Option<&'a [u8]>, Bad> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(None);
        }
        self.take(n as usize).map(Some)
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
    fn done(&self) -> Result<(), Bad> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(Bad::Fail(format!(
                "malformed {} value from the server (trailing bytes)",
                self.what
            )))
        }
    }
}

pub fn decode_pg(row: &PgRow, issues: &mut Vec<CellIssue>) -> Result<Vec<Value>, sqlx::Error> {
    let mut vals = Vec::with_capacity(row.len());
    for i in 0..row.len() {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            vals.push(Value::Null);
            continue;
        }
        let col = row.column(i);
        let ty = col.type_info();
        let bytes = raw.as_bytes().map_err(|e| column_error(col.name(), e.to_string()))?;
        let cell = match raw.format() {
            PgValueFormat::Binary => pg_binary(Some(ty), pg_oid(ty), bytes),
            PgValueFormat::Text => pg_text(pg_oid(ty), bytes),
        };
        let cell = cell.map_err(|e| match e {
            Bad::Fail(m) => Bad::Fail(format!("PostgreSQL type {}: {m}", ty.name())),
            issue => issue,
        });
        push_cell(&mut vals, issues, i, col.name(), cell)?;
    }
    Ok(vals)
}

/// `decode_pg` for comparisons (verification): NUMERIC values become the number they name,
/// an integer or a real when one holds them exactly, so `SUM(numeric)` on PostgreSQL compares
/// equal to `SUM(real)` on SQLite; other decimals keep their (trimmed) digits.
pub fn decode_pg_compare(row: &PgRow, issues: &mut Vec<CellIssue>) -> Result<Vec<Value>, sqlx::Error> {
    let mut vals = decode_pg(row, issues)?;
    for (i, v) in vals.iter_mut().enumerate() {
        if row.column(i).type_info().name() == "NUMERIC"
            && let Value::Text(t) = v
        {
            *v = numeric_value(t);
        }
    }
    Ok(vals)
}

/// The number an exact decimal text names: an integer that fits becomes `Int`, a decimal a
/// real reproduces exactly (12.5) a `Real`, others their digits without trailing zeros.
fn numeric_value(text: &str) -> Value {
    let trimmed = match text.split_once('.') {
        Some((int, fr)) => {
            let fr = fr.trim_end_matches('0');
            if fr.is_empty() {
                int.to_string()
            } else {
                format!("{int}.{fr}")
            }
        }
        None => text.to_string(),
    };
    if let Ok(i) = trimmed.parse::<i64>() {
        return Value::Int(i);
    }
    if trimmed.contains('.')
        && let Ok(f) = trimmed.parse::<f64>()
        && f.to_string() == trimmed
    {
        return Value::Real(f);
    }
    Value::Text(trimmed)
}

fn pg_oid(ty: &PgTypeInfo) -> u32 {
    ty.oid().map(|o| o.0).unwrap_or(0)
}

/// PostgreSQL's float text (`NaN`, `Infinity`, `1e+20`) for values inside text forms.
fn pg_float_text(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e15).contains(&a) {
        let s = format!("{f:e}");
        if let Some((m, e)) = s.split_once('e') {
            let e: i32 = e.parse().unwrap_or(0);
            return format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
        }
    }
    f.to_string()
}

/// A value in text format (simple-protocol queries): exact text, typed where that is lossless.
fn pg_text(oid: u32, b: &[u8]) -> Cell {
    let s = match std::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) => return Err(Bad::Issue(format!("invalid UTF-8 at byte {}", e.valid_up_to()))),
    };
    let bad = || Bad::Fail(format!("unreadable value '{s}'"));
    Ok(match oid {
        16 => Value::Bool(s == "t"),
        20 | 21 | 23 | 26 => Value::Int(s.parse().map_err(|_| bad())?),
        700 | 701 => Value::Real(match s {
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            _ => s.parse().map_err(|_| bad())?,
        }),
        17 => {
            let h = s.strip_prefix("\\x").ok_or_else(bad)?;
            Value::bytes(unhex(h).ok_or_else(bad)?)
        }
        114 | 3802 => return json_value(s),
        _ => Value::Text(s.to_string()),
    })
}

fn unhex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

fn pg_epoch() -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// Microseconds since 2000-01-01, PostgreSQL's timestamp; `None` past chrono's range.
fn pg_timestamp(us: i64) -> Option<chrono::NaiveDateTime> {
    pg_epoch().checked_add_signed(chrono::TimeDelta::microseconds(us))
}

/// `HH:MM:SS[.f]` from microseconds since midnight (24:00:00 is a valid PostgreSQL time).
fn time_text(us: i64) -> String {
    let (h, rem) = (us / 3_600_000_000, us % 3_600_000_000);
    let (m, rem) = (rem / 60_000_000, rem % 60_000_000);
    let (s, micros) = (rem / 1_000_000, rem % 1_000_000);
    format!("{h:02}:{m:02}:{s:02}{}", frac(micros as u32))
}

/// A UTC offset in seconds east as `+HH:MM` (`+HH:MM:SS` when it has seconds).
fn offset_text(east: i32) -> String {
    let sign = if east < 0 { '-' } else { '+' };
    let a = east.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    if s == 0 {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}:{m:02}:{s:02}")
    }
}

/// An interval as ISO 8601 the way PostgreSQL's `intervalstyle = iso_8601` writes it: each
/// field keeps its own sign (months, days and time are independent in PostgreSQL).
fn interval_text(us: i64, days: i32, months: i32) -> String {
    if us == 0 && days == 0 && months == 0 {
        return "PT0S".into();
    }
    let mut s = String::from("P");
    let (y, mo) = (months / 12, months % 12);
    for (n, unit) in [(y as i64, 'Y'), (mo as i64, 'M'), (days as i64, 'D')] {
        if n != 0 {
            s.push_str(&format!("{n}{unit}"));
        }
    }
    if us != 0 {
        s.push('T');
        let (h, rem) = (us / 3_600_000_000, us % 3_600_000_000);
        let (m, rem) = (rem / 60_000_000, rem % 60_000_000);
        if h != 0 {
            s.push_str(&format!("{h}H"));
        }
        if m != 0 {
            s.push_str(&format!("{m}M"));
        }
        if rem != 0 {
            let sign = if rem < 0 { "-" } else { "" };
            let a = rem.unsigned_abs();
            let fr = format!("{:06}", a % 1_000_000);
            let fr = fr.trim_end_matches('0');
            s.push_str(&format!(
                "{sign}{}{}{fr}S",
                a / 1_000_000,
                if fr.is_empty() { "" } else { "." }
            ));
        }
    }
    s
}

/// Binary NUMERIC (ndigits, weight, sign, dscale, then base-10000 digits) as PostgreSQL's own
/// text: exactly `dscale` fraction digits, `NaN`, `Infinity`, `-Infinity`.
fn numeric_text(b: &[u8]) -> Result<String, Bad> {
    let mut r = Rd::new(b, "NUMERIC");
    let ndigits = usize::from(r.u16()?);
    let weight = i64::from(r.u16()? as i16);
    let sign = r.u16()?;
    let dscale = usize::from(r.u16()?);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        other => return Err(Bad::Fail(format!("malformed NUMERIC value (sign {other:#x})"))),
    }
    let digits: Vec<u16> = (0..ndigits).map(|_| r.u16()).collect::<Result<_, _>>()?;
    r.done()?;
    // the digit group worth 10000^(weight - pos)
    let digit_at = |pos: i64| -> u16 {
        usize::try_from(pos)
            .ok()
            .and_then(|p| digits.get(p).copied())
            .unwrap_or(0)
    };
    let mut int = String::new();
    for pos in 0..=weight {
        let d = digit_at(pos);
        if int.is_empty() {
            if d != 0 {
                int = d.to_string();
            }
        } else {
            int.push_str(&format!("{d:04}"));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    // every stored fraction digit, then padded or trimmed (zeros only) to the display scale
    let mut fr = String::new();
    let last = i64::try_from(ndigits).unwrap_or(i64::MAX) - 1;
    let mut pos = weight + 1;
    while pos <= last || fr.len() < dscale {
        fr.push_str(&format!("{:04}", digit_at(pos)));
        pos += 1;
    }
    while fr.len() > dscale && fr.ends_with('0') {
        fr.pop();
    }
    let negative = sign == 0x4000 && (int != "0" || fr.bytes().any(|c| c != b'0'));
    Ok(format!(
        "{}{int}{}{fr}",
        if negative { "-" } else { "" },
        if fr.is_empty() { "" } else { "." }
    ))
}

fn pg_point(r: &mut Rd) -> Result<String, Bad> {
    let (x, y) = (r.f64()?, r.f64()?);
    Ok(format!("({},{})", pg_float_text(x), pg_float_text(y)))
}

fn pg_points(r: &mut Rd) -> Result<Vec<String>, Bad> {
    let n = r.i32()?;
    (0..n).map(|_| pg_point(r)).collect()
}

/// tsvector: lexemes with positions and weights, written as PostgreSQL does ('a':1A 'b':2).
fn tsvector_text(b: &[u8]) -> Result<String, Bad> {
    let mut r = Rd::new(b, "tsvector");
    let n = r.i32()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let rest = r.b;
        let end = rest
            .iter()
            .position(|&c| c == 0)
            .ok_or_else(|| Bad::Fail("malformed tsvector value".into()))?;
        let lex = std::str::from_utf8(&rest[..end]).map_err(|_| Bad::Fail("malformed tsvector value".into()))?;
        r.take(end + 1)?;
        let mut s = format!("'{}'", lex.replace('\\', "\\\\").replace('\'', "''"));
        let npos = r.u16()?;
        let mut pos = Vec::new();
        for _ in 0..npos {
            let p = r.u16()?;
            let w = match p >> 14 {
                3 => "A",
                2 => "B",
                1 => "C",
                _ => "",
            };
            pos.push(format!("{}{w}", p & 0x3fff));
        }
        if !pos.is_empty() {
            s.push(':');
            s.push_str(&pos.join(","));
        }
        out.push(s);
    }
    r.done()?;
    Ok(out.join(" "))
}

/// A bound or element as it appears inside a range's text, quoted when it must be.
fn quoted_element(v: &Value) -> String {
    let s = match v {
        Value::Real(f) => pg_float_text(*f),
        other => other.to_text().unwrap_or_default(),
    };
    if s.is_empty() || s.chars().any(|c| "\"\\()[],{}".contains(c) || c.is_whitespace()) {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

fn pg_range(elem: Option<&PgTypeInfo>, elem_oid: u32, b: &[u8]) -> Result<String, Bad> {
    let mut r = Rd::new(b, "range");
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Ok("empty".into());
    }
    let mut bound = |infinite: bool| -> Result<String, Bad> {
        if infinite {
            return Ok(String::new());
        }
        let bytes = r.field()?.ok_or_else(|| Bad::Fail("malformed range value".into()))?;
        Ok(quoted_element(&pg_binary(elem, elem_oid, bytes)?))
    };
    let lower = bound(flags & 0x08 != 0)?;
    let upper = bound(flags & 0x10 != 0)?;
    r.done()?;
    Ok(format!(
        "{}{lower},{upper}{}",
        if flags & 0x02 != 0 { '[' } else { '(' },
        if flags & 0x04 != 0 { ']' } else { ')' }
    ))
}

/// An array of any element type as a JSON array (nested for more dimensions).
fn pg_array(elem: Option<&PgTypeInfo>, b: &[u8]) -> Cell {
    let mut r = Rd::new(b, "array");
    let ndim = r.i32()?;
    let _has_nulls = r.i32()?;
    let elem_oid = r.u32()?;
    let mut dims = Vec::new();
    for _ in 0..ndim {
        let len = r.i32()?;
        let lower = r.i32()?;
        if lower != 1 {
            return Err(Bad::Issue(format!(
                "array with lower bound {lower} cannot be a JSON array without losing its bounds"
            )));
        }
        dims.push(usize::try_from(len).map_err(|_| Bad::Fail("malformed array value".into()))?);
    }
    let total = if dims.is_empty() {
        0
    } else {
        dims.iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Bad::Fail("malformed array value".into()))?
    };
    // each element takes at least its 4-byte length: never trust the header for memory
    let mut flat = Vec::with_capacity(total.min(r.b.len() / 4));
    for _ in 0..total {
        flat.push(match r.field()? {
            None => serde_json::Value::Null,
            Some(e) => to_json_element(pg_binary(elem, elem_oid, e)?),
        });
    }
    r.done()?;
    // Fold the flat elements into nested arrays, innermost dimension first.
    for &d in dims.iter().skip(1).rev() {
        if d == 0 {
            break;
        }
        flat = flat.chunks(d).map(|c| serde_json::Value::Array(c.to_vec())).collect();
    }
    Ok(Value::Json(serde_json::Value::Array(flat)))
}

/// A composite value: a JSON object by field name when the type is known, else an array.
fn pg_composite(fields: Option<&[(String, PgTypeInfo)]>, b: &[u8]) -> Cell {
    let mut r = Rd::new(b, "record");
    let n = r.i32()?;
    let mut obj = serde_json::Map::new();
    let mut arr = Vec::new();
    for k in 0..n {
        let oid = r.u32()?;
        let field = fields.and_then(|f| f.get(k as usize));
        let v = match r.field()? {
            None => serde_json::Value::Null,
            Some(e) => to_json_element(pg_binary(field.map(|f| &f.1), oid, e)?),
        };
        match field {
            Some((name, _)) => {
                obj.insert(name.clone(), v);
            }
            None => arr.push(v),
        }
    }
    r.done()?;
    Ok(Value::Json(if fields.is_some() {
        serde_json::Value::Object(obj)
    } else {
        serde_json::Value::Array(arr)
    }))
}

/// One value in PostgreSQL's binary format. `ty` is the resolved type when known (columns,
/// array elements of known types); builtin types are read by OID alone.
fn pg_binary(ty: Option<&PgTypeInfo>, oid: u32, b: &[u8]) -> Cell {
    let what = ty.map(|t| t.name()).unwrap_or("value");
    let mut r = Rd::new(b, what);
    let v = match oid {
        16 => Value::Bool(r.u8()? != 0),
        17 => Value::bytes(r.rest().to_vec()),
        // "char": one byte, text
        18 => return utf8(r.rest()),
        // name, text, bpchar, varchar, unknown, xml, pg_node_tree, citext-like text types
        19 | 25 | 1042 | 1043 | 705 | 142 | 194 => return utf8(r.rest()),
        21 => Value::Int(i64::from(r.u16()? as i16)),
        23 => Value::Int(i64::from(r.i32()?)),
        20 => Value::Int(r.i64()?),
        // oid, xid, cid: unsigned 32-bit
        26 | 28 | 29 => Value::Int(i64::from(r.u32()?)),
        // xid8: unsigned 64-bit
        5069 => {
            let u = r.i64()? as u64;
            i64::try_from(u).map(Value::Int).unwrap_or(Value::Text(u.to_string()))
        }
        // int2vector, oidvector: arrays in disguise
        22 | 30 => return pg_array(None, b),
        27 => {
            let (blk, off) = (r.u32()?, r.u16()?);
            Value::Text(format!("({blk},{off})"))
        }
        114 => return json_value(std::str::from_utf8(r.rest()).map_err(|e| bad_utf8(&e))?),
        3802 => {
            let ver = r.u8()?;
            if ver != 1 {
                return Err(Bad::Fail(format!("unknown jsonb format version {ver}")));
            }
            return json_value(std::str::from_utf8(r.rest()).map_err(|e| bad_utf8(&e))?);
        }
        // jsonpath: version byte, then text
        4072 => {
            r.u8()?;
            return utf8(r.rest());
        }
        700 => real_from_f32(f32::from_bits(r.u32()?)),
        701 => Value::Real(r.f64()?),
        1700 => return numeric_text(b).map(Value::Text),
        // money: an int64 count of the currency's smallest unit; 2 fraction digits assumed
        // (lc_monetary C and most locales)
        790 => {
            let c = r.i64()?;
            let sign = if c < 0 { "-" } else { "" };
            let a = c.unsigned_abs();
            Value::Text(format!("{sign}{}.{:02}", a / 100, a % 100))
        }
        1082 => match r.i32()? {
            i32::MAX => Value::Text("infinity".into()),
            i32::MIN => Value::Text("-infinity".into()),
            d => match chrono::TimeDelta::try_days(i64::from(d)).and_then(|t| pg_epoch().checked_add_signed(t)) {
                Some(dt) => Value::Text(dt.format("%Y-%m-%d").to_string()),
                None => return Err(Bad::Issue(format!("date {d} days from 2000-01-01 is out of range"))),
            },
        },
        1114 | 1184 => match r.i64()? {
            i64::MAX => Value::Text("infinity".into()),
            i64::MIN => Value::Text("-infinity".into()),
            us => match pg_timestamp(us) {
                Some(dt) if oid == 1114 => Value::Text(dt.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
                Some(dt) => Value::Text(
                    chrono::DateTime::<chrono::Utc>::from_naive_utc_and_offset(dt, chrono::Utc).to_rfc3339(),
                ),
                None => return Err(Bad::Issue(format!("timestamp {us} µs from 2000-01-01 is out of range"))),
            },
        },
        1083 => Value::Text(time_text(r.i64()?)),
        1266 => {
            let us = r.i64()?;
            // stored as seconds west of UTC
            let west = r.i32()?;
            Value::Text(format!("{}{}", time_text(us), offset_text(-west)))
        }
        1186 => {
            let (us, days, months) = (r.i64()?, r.i32()?, r.i32()?);
            Value::Text(interval_text(us, days, months))
        }
        2950 => {
            let u = uuid::Uuid::from_slice(r.take(16)?).map_err(|e| Bad::Fail(e.to_string()))?;
            Value::Text(u.to_string())
        }
        // inet, cidr: family, prefix bits, is_cidr, address length, address
        869 | 650 => {
            let (family, bits, _is_cidr, n) = (r.u8()?, r.u8()?, r.u8()?, r.u8()?);
            let a = r.take(usize::from(n))?;
            let (addr, max) = match (family, a.len()) {
                (2, 4) => (std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(), 32),
                (3, 16) => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(a);
                    (std::net::Ipv6Addr::from(o).to_string(), 128)
                }
                _ => return Err(Bad::Fail("malformed inet value".into())),
            };
            Value::Text(if oid == 869 && bits == max {
                addr
            } else {
                format!("{addr}/{bits}")
            })
        }
        829 | 774 => {
            let a = r.rest();
            Value::Text(a.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":"))
        }
        // bit, varbit: bit count, then the bits packed high-first
        1560 | 1562 => {
            let n = usize::try_from(r.i32()?).map_err(|_| Bad::Fail("malformed bit value".into()))?;
            let bytes = r.rest();
            if bytes.len() * 8 < n {
                return Err(Bad::Fail("malformed bit value".into()));
            }
            Value::Text(
                (0..n)
                    .map(|k| {
                        if bytes[k / 8] & (0x80 >> (k % 8)) != 0 {
                            '1'
                        } else {
                            '0'
                        }
                    })
                    .collect(),
            )
        }
        600 => Value::Text(pg_point(&mut r)?),
        601 => Value::Text(format!("[{},{}]", pg_point(&mut r)?, pg_point(&mut r)?)),
        603 => Value::Text(format!("{},{}", pg_point(&mut r)?, pg_point(&mut r)?)),
        628 => {
            let (a, bb, c) = (r.f64()?, r.f64()?, r.f64()?);
            Value::Text(format!(
                "{{{},{},{}}}",
                pg_float_text(a),
                pg_float_text(bb),
                pg_float_text(c)
            ))
        }
        602 => {
            let closed = r.u8()? != 0;
            let pts = pg_points(&mut r)?.join(",");
            Value::Text(if closed { format!("({pts})") } else { format!("[{pts}]") })
        }
        604 => Value::Text(format!("({})", pg_points(&mut r)?.join(","))),
        718 => {
            let p = pg_point(&mut r)?;
            Value::Text(format!("<{p},{}>", pg_float_text(r.f64()?)))
        }
        3220 => {
            let l = r.i64()? as u64;
            Value::Text(format!("{:X}/{:X}", l >> 32, l & 0xffff_ffff))
        }
        3614 => return tsvector_text(b).map(Value::Text),
        // anonymous record
        2249 => return pg_composite(None, b),
        // builtin ranges, by element
        3904 => return pg_range(None, 23, b).map(Value::Text),
        3926 => return pg_range(None, 20, b).map(Value::Text),
        3906 => return pg_range(None, 1700, b).map(Value::Text),
        3908 => return pg_range(None, 1114, b).map(Value::Text),
        3910 => return pg_range(None, 1184, b).map(Value::Text),
        3912 => return pg_range(None, 1082, b).map(Value::Text),
        _ => return pg_custom(ty, oid, b),
    };
    r.done()?;
    Ok(v)
}

fn bad_utf8(e: &std::str::Utf8Error) -> Bad {
    Bad::Issue(format!("invalid UTF-8 at byte {}", e.valid_up_to()))
}

/// Types without a fixed OID: arrays, enums, domains, composites and ranges resolved by the
/// driver, and extension types known by name. Anything else fails the read, naming the type.
fn pg_custom(ty: Option<&PgTypeInfo>, oid: u32, b: &[u8]) -> Cell {
    let Some(ty) = ty else {
        return Err(Bad::Fail(format!(
            "cannot read a value of type oid {oid}; cast the column to text in the step's query"
        )));
    };
    match ty.kind() {
        // an enum's binary form is its label
        PgTypeKind::Enum(_) => return utf8(b),
        PgTypeKind::Domain(base) => return pg_binary(Some(base), pg_oid(base), b),
        PgTypeKind::Array(elem) => return pg_array(Some(elem), b),
        PgTypeKind::Range(elem) => return pg_range(Some(elem), pg_oid(elem), b).map(Value::Text),
        PgTypeKind::Composite(fields) => return pg_composite(Some(fields), b),
        PgTypeKind::Simple | PgTypeKind::Pseudo => {}
    }
    match ty.name() {
        "citext" => utf8(b),
        // ltree, lquery, ltxtquery: a version byte, then text
        "ltree" | "lquery" | "ltxtquery" => utf8(b.get(1..).unwrap_or_default()),
        "hstore" => {
            let mut r = Rd::new(b, "hstore");
            let n = r.i32()?;
            let mut obj = serde_json::Map::new();
            for _ in 0..n {
                let k = r.field()?.ok_or_else(|| Bad::Fail("malformed hstore value".into()))?;
                let k = std::str::from_utf8(k).map_err(|e| bad_utf8(&e))?.to_string();
                let v = match r.field()? {
                    None => serde_json::Value::Null,
                    Some(v) => serde_json::Value::String(std::str::from_utf8(v).map_err(|e| bad_utf8(&e))?.to_string()),
                };
                obj.insert(k, v);
            }
            r.done()?;
            Ok(Value::Json(serde_json::Value::Object(obj)))
        }
        other => Err(Bad::Fail(format!(
            "cannot read type {other} (oid {oid}) without loss; cast the column to text in the step's query"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// MySQL / MariaDB

/// The column flags and collation sqlx keeps private, read from its `Debug` form (only for the
/// few type names that are ambiguous without them).
fn mysql_meta(ty: &sqlx::mysql::MySqlTypeInfo) -> MyMeta {
    let d = format!("{ty:?}");
    let after = |key: &str| -> Option<u32> {
        d.split(key)
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|n| n.trim().parse().ok())
    };
    MyMeta {
        unsigned: d.contains("UNSIGNED"),
        collation: after("Collation(").and_then(|c| u16::try_from(c).ok()),
        max_size: after("max_size: Some("),
    }
}

struct MyMeta {
    unsigned: bool,
    collation: Option<u16>,
    max_size: Option<u32>,
}

/// The binary collation: bytes, not text.
const MYSQL_BINARY_COLLATION: u16 = 63;

/// A date/datetime/timestamp cell, from either protocol: the text protocol sends
/// `YYYY-MM-DD[ HH:MM:SS[.ffffff]]`, the binary one a length byte and packed fields.
fn mysql_datetime(b: &[u8], with_time: bool) -> Cell {
    let (y, mo, d, h, mi, s, us) = if b.first().is_some_and(|c| c.is_ascii_digit()) {
        let t = std::str::from_utf8(b).map_err(|e| bad_utf8(&e))?;
        let bad = || Bad::Fail(format!("unreadable date '{t}'"));
        let num = |r: Option<&str>| -> Result<u32, Bad> { r.and_then(|x| x.parse().ok()).ok_or_else(bad) };
        let (date, time) = t.split_once(' ').unwrap_or((t, "00:00:00"));
        let mut dp = date.split('-');
        let (y, mo, d) = (num(dp.next())?, num(dp.next())?, num(dp.next())?);
        let (hms, fr) = time.split_once('.').unwrap_or((time, ""));
        let mut tp = hms.split(':');
        let (h, mi, s) = (num(tp.next())?, num(tp.next())?, num(tp.next())?);
        let us = micros(fr).ok_or_else(bad)?;
        (y, mo, d, h, mi, s, us)
    } else {
        let mut r = MyRd(b);
        let len = r.u8()?;
        let mut f = [0u32; 7];
        if len >= 4 {
            f[0] = u32::from(r.u16()?);
            f[1] = u32::from(r.u8()?);
            f[2] = u32::from(r.u8()?);
        }
        if len >= 7 {
            f[3] = u32::from(r.u8()?);
            f[4] = u32::from(r.u8()?);
            f[5] = u32::from(r.u8()?);
        }
        if len >= 11 {
            f[6] = r.u32()?;
        }
        (f[0], f[1], f[2], f[3], f[4], f[5], f[6])
    };
    let shown = if with_time {
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{}", frac(us))
    } else {
        format!("{y:04}-{mo:02}-{d:02}")
    };
    if y == 0 && mo == 0 && d == 0 {
        return Err(Bad::Issue(format!("zero date '{shown}' is not a date")));
    }
    if mo == 0 || d == 0 {
        return Err(Bad::Issue(format!("date '{shown}' has a zero month or day")));
    }
    let date = chrono::NaiveDate::from_ymd_opt(y as i32, mo, d)
        .ok_or_else(|| Bad::Issue(format!("'{shown}' is not a valid date")))?;
    if !with_time {
        return Ok(Value::Text(date.format("%Y-%m-%d").to_string()));
    }
    if h > 23 || mi > 59 || s > 59 || us > 999_999 {
        return Err(Bad::Issue(format!("'{shown}' is not a valid time of day")));
    }
    Ok(Value::Text(format!(
        "{}T{h:02}:{mi:02}:{s:02}{}",
        date.format("%Y-%m-%d"),
        frac(us)
    )))
}

/// TIME (a duration: -838:59:59 to 838:59:59) as `[-]HH:MM:SS[.f]`, from either protocol.
fn mysql_time(b: &[u8]) -> Cell {
    if b.first().is_some_and(|c| c.is_ascii_digit() || *c == b'-') {
        let t = std::str::from_utf8(b).map_err(|e| bad_utf8(&e))?;
        let bad = || Bad::Fail(format!("unreadable time '{t}'"));
        let (neg, body) = match t.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, t),
        };
        let (hms, fr) = body.split_once('.').unwrap_or((body, ""));
        let mut p = hms.split(':');
        let mut num = || -> Result<u32, Bad> { p.next().and_then(|x| x.parse().ok()).ok_or_else(bad) };
        let (h, m, s) = (num()?, num()?, num()?);
        let us = micros(fr).ok_or_else(bad)?;
        return Ok(Value::Text(duration_text(neg, h, m, s, us)));
    }
    let mut r = MyRd(b);
    let len = r.u8()?;
    if len == 0 {
        return Ok(Value::Text("00:00:00".into()));
    }
    let neg = r.u8()? != 0;
    let days = r.u32()?;
    let (h, m, s) = (u32::from(r.u8()?), u32::from(r.u8()?), u32::from(r.u8()?));
    let us = if len >= 12 { r.u32()? } else { 0 };
    Ok(Value::Text(duration_text(
        neg,
        days.saturating_mul(24).saturating_add(h),
        m,
        s,
        us,
    )))
}

fn duration_text(neg: bool, h: u32, m: u32, s: u32, us: u32) -> String {
    let zero = h == 0 && m == 0 && s == 0 && us == 0;
    format!(
        "{}{h:02}:{m:02}:{s:02}{}",
        if neg && !zero { "-" } else { "" },
        frac(us)
    )
}

/// A cursor over MySQL's binary protocol (little-endian).
struct MyRd<'a>(&'a [u8]);

impl MyRd<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], Bad> {
        if self.0.len() < N {
            return Err(Bad::Fail("malformed date/time value from the server".into()));
        }
        let mut a = [0u8; N];
        a.copy_from_slice(&self.0[..N]);
        self.0 = &self.0[N..];
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, Bad> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, Bad> {
        Ok(u32::from_le_bytes(self.take()?))
    }
}

fn unsigned_value(u: u64) -> Value {
    i64::try_from(u)
        .map(Value::Int)
        .unwrap_or_else(|_| Value::Text(u.to_string()))
}

pub fn decode_mysql(row: &sqlx::mysql::MySqlRow, issues: &mut Vec<CellIssue>) -> Result<Vec<Value>, sqlx::Error> {
    let mut vals = Vec::with_capacity(row.len());
    for i in 0..row.len() {
        let col = row.column(i);
        let ty = col.type_info();
        let name = ty.name();
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            // sqlx reports a binary-protocol zero date as NULL; its bytes tell them apart.
            let zero_date = matches!(name, "DATE" | "DATETIME" | "TIMESTAMP")
                && row.try_get_unchecked::<&[u8], _>(i).is_ok_and(|b| !b.is_empty());
            if !zero_date {
                vals.push(Value::Null);
                continue;
            }
        }
        let wrap = |e: sqlx::Error| column_error(col.name(), format!("MySQL type {name}: {e}"));
        let bytes = || row.try_get_unchecked::<&[u8], _>(i).map_err(wrap);
        let cell = match name {
            // TINYINT(1): an integer column, whatever the driver calls it (2 stays 2)
            "BOOLEAN" => {
                if mysql_meta(ty).unsigned {
                    Ok(Value::Int(row.try_get_unchecked::<u8, _>(i).map_err(wrap)?.into()))
                } else {
                    Ok(Value::Int(row.try_get_unchecked::<i8, _>(i).map_err(wrap)?.into()))
                }
            }
            "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" => {
                Ok(Value::Int(row.try_get_unchecked::<i64, _>(i).map_err(wrap)?))
            }
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "INT UNSIGNED" | "MEDIUMINT UNSIGNED" | "BIGINT UNSIGNED"
            | "YEAR" => Ok(unsigned_value(row.try_get_unchecked::<u64, _>(i).map_err(wrap)?)),
            // BIT(n): raw big-endian bits in both protocols
            "BIT" => Ok(unsigned_value(
                bytes()?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
            )),
            "FLOAT" => Ok(real_from_f32(row.try_get_unchecked::<f32, _>(i).map_err(wrap)?)),
            "DOUBLE" => Ok(Value::Real(row.try_get_unchecked::<f64, _>(i).map_err(wrap)?)),
            // exact decimal text in both protocols
            "DECIMAL" => utf8(bytes()?),
            "DATE" => mysql_datetime(bytes()?, false),
            "DATETIME" | "TIMESTAMP" => mysql_datetime(bytes()?, true),
            "TIME" => mysql_time(bytes()?),
            "JSON" => std::str::from_utf8(bytes()?)
                .map_err(|e| bad_utf8(&e))
                .and_then(json_value),
            "GEOMETRY" => Ok(Value::bytes(bytes()?.to_vec())),
            "NULL" => Ok(Value::Null),
            "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" | "TINYTEXT" | "TEXT"
            | "MEDIUMTEXT" | "LONGTEXT" => {
                // The BINARY flag is also set for text in a `_bin` collation: only the binary
                // collation means bytes.
                let b = bytes()?;
                let meta = mysql_meta(ty);
                match meta.collation {
                    Some(MYSQL_BINARY_COLLATION) => Ok(Value::bytes(b.to_vec())),
                    None if !name.ends_with("TEXT") => Ok(Value::bytes(b.to_vec())),
                    // MariaDB's JSON is LONGTEXT utf8mb4_bin with a json_valid check, which the
                    // protocol does not show: a LONGTEXT in a `_bin` collation (BINARY flag)
                    Some(_) if !name.ends_with("TEXT") && meta.max_size == Some(u32::MAX) => mysql_longtext(b),
                    _ => utf8(b),
                }
            }
            // CHAR, VARCHAR, TEXT types, ENUM, SET, MariaDB INET6/UUID: text
            _ => utf8(bytes()?),
        };
        push_cell(&mut vals, issues, i, col.name(), cell)?;
    }
    Ok(vals)
}

/// LONGTEXT is how MariaDB stores JSON (`JSON` is an alias with a json_valid check), and the
/// protocol does not say which: an object or array document becomes JSON, anything else text.
fn mysql_longtext(b: &[u8]) -> Cell {
    let t = utf8(b)?;
    if let Value::Text(s) = &t {
        let s_trim = s.trim_start();
        if (s_trim.starts_with('{') || s_trim.starts_with('['))
            && let Ok(v @ Value::Json(_)) = json_value(s)
        {
            return Ok(v);
        }
    }
    Ok(t)
}

/// A text fraction of a second (`"5"`, `"123456"`) as microseconds; `""` is 0.
fn micros(fraction: &str) -> Option<u32> {
    if fraction.is_empty() {
        return Some(0);
    }
    format!("{fraction:0<6}").get(..6).and_then(|x| x.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale] {
            b.extend(w.to_be_bytes());
        }
        for d in digits {
            b.extend(d.to_be_bytes());
        }
        b
    }

    fn num(b: &[u8]) -> String {
        numeric_text(b).unwrap()
    }

    #[test]
    fn reads_postgres_numeric_exactly() {
        assert_eq!(num(&numeric(0, 0, 0, 0, &[])), "0");
        assert_eq!(num(&numeric(0, 0, 0, 2, &[])), "0.00");
        assert_eq!(num(&numeric(1, 0, 0, 0, &[42])), "42");
        // 123456789 = 1|2345|6789
        assert_eq!(num(&numeric(3, 2, 0, 0, &[1, 2345, 6789])), "123456789");
        // 10000 = 1 * 10000^1, digits trimmed
        assert_eq!(num(&numeric(1, 1, 0, 0, &[1])), "10000");
        // -12.50 keeps its scale
        assert_eq!(num(&numeric(2, 0, 0x4000, 2, &[12, 5000])), "-12.50");
        assert_eq!(num(&numeric(1, -1, 0, 4, &[1])), "0.0001");
        assert_eq!(num(&numeric(1, -2, 0, 8, &[2])), "0.00000002");
        assert_eq!(
            num(&numeric(6, 0, 0, 20, &[1, 2345, 6789, 123, 4567, 8901])),
            "1.23456789012345678901"
        );
        assert_eq!(num(&numeric(0, 0, 0xC000, 0, &[])), "NaN");
        assert_eq!(num(&numeric(0, 0, 0xD000, 0, &[])), "Infinity");
        assert_eq!(num(&numeric(0, 0, 0xF000, 0, &[])), "-Infinity");
        assert!(numeric_text(&[0, 1]).is_err());
    }

    #[test]
    fn numeric_for_comparison_is_the_number() {
        // what verification compares: integers, exact reals, else trimmed digits
        assert_eq!(numeric_value("0"), Value::Int(0));
        assert_eq!(numeric_value("123456789.000"), Value::Int(123_456_789));
        assert_eq!(numeric_value("-12.50"), Value::Real(-12.5));
        assert_eq!(numeric_value("0.0001"), Value::Real(0.0001));
        assert_eq!(numeric_value("0.00000002"), Value::Real(0.00000002));
        assert_eq!(
            numeric_value("1.23456789012345678901"),
            Value::Text("1.23456789012345678901".into())
        );
        assert_eq!(numeric_value("NaN"), Value::Text("NaN".into()));
    }

    #[test]
    fn intervals_are_iso_8601() {
        assert_eq!(interval_text(0, 0, 0), "PT0S");
        assert_eq!(
            interval_text(4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000, 3, 14),
            "P1Y2M3DT4H5M6.5S"
        );
        assert_eq!(interval_text(-1_500_000, -1, 0), "P-1DT-1.5S");
        assert_eq!(interval_text(-500_000, 0, 0), "PT-0.5S");
        assert_eq!(interval_text(0, 0, -13), "P-1Y-1M");
    }

    #[test]
    fn json_numbers_that_would_round_stay_text() {
        assert_eq!(
            json_value(r#"{"b": 1.50, "a": [1e2, -0.1]}"#),
            Ok(Value::Json(serde_json::json!({"a": [100.0, -0.1], "b": 1.5})))
        );
        let big = r#"{"id": 12345678901234567890123}"#;
        assert_eq!(json_value(big), Ok(Value::Text(big.into())));
        assert!(matches!(json_value("{"), Err(Bad::Issue(_))));
    }

    #[test]
    fn floats_written_like_postgres() {
        assert_eq!(pg_float_text(1.5), "1.5");
        assert_eq!(pg_float_text(1e20), "1e+20");
        assert_eq!(pg_float_text(1.5e-7), "1.5e-07");
        assert_eq!(pg_float_text(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn mysql_dates_from_both_protocols() {
        assert_eq!(
            mysql_datetime(b"2024-02-29 23:59:58.120", true),
            Ok(Value::Text("2024-02-29T23:59:58.120".into()))
        );
        assert_eq!(
            mysql_datetime(&[11, 0xe8, 0x07, 2, 29, 23, 59, 58, 0xc0, 0xd4, 0x01, 0], true),
            Ok(Value::Text("2024-02-29T23:59:58.120".into()))
        );
        assert_eq!(
            mysql_datetime(&[0], false),
            Err(Bad::Issue("zero date '0000-00-00' is not a date".into()))
        );
        assert_eq!(
            mysql_datetime(b"2020-00-00", false),
            Err(Bad::Issue("date '2020-00-00' has a zero month or day".into()))
        );
        assert_eq!(mysql_time(b"-838:59:59"), Ok(Value::Text("-838:59:59".into())));
        assert_eq!(
            mysql_time(&[12, 1, 34, 0, 0, 0, 22, 59, 59, 0x20, 0xa1, 0x07, 0]),
            Ok(Value::Text("-838:59:59.500".into()))
        );
    }
}
