//! `date` and `datetime`: text in one of a list of formats becomes ISO 8601. Also
//! [`fast_iso_date`], the format-free `YYYY-MM-DD` reader `validate` uses too, and the
//! check of `formats` when a step is loaded.

use chrono::format::{Item, ParseErrorKind, StrftimeItems};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, Timelike};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::OnError;
use super::output::{Buf, reuse_or_new};
use super::reason::{Quoted, Shown, kind_name};
use crate::engine::value::Value;

/// The `formats` keyword that means RFC 3339 (`2021-03-04T10:00:00Z`, `...+02:00`), which
/// strftime patterns cannot express with its optional fraction and `Z`.
pub const RFC3339: &str = "rfc3339";

/// Options of `date` and `datetime`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DateSpec {
    /// chrono strftime patterns (or [`RFC3339`]), tried in order; the first that parses wins.
    /// The defaults read month-first for slashes (`%m/%d/%Y`, US) and day-first for dots.
    #[serde(deserialize_with = "de_formats")]
    pub formats: Vec<String>,
    pub on_error: OnError,
    /// Also read Excel's date numbers: a whole number (integer, or a real without a fraction;
    /// `datetime` takes the fraction as the time of day) is a serial day of Excel's 1900 system,
    /// and text `YYYY-MM-DD` (what a spreadsheet's date cell is read as, with `THH:MM:SS` when
    /// it has a time) is accepted whatever `formats` says.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub excel_serial: bool,
}

impl Default for DateSpec {
    fn default() -> Self {
        Self {
            formats: [
                "%Y-%m-%d",
                "%m/%d/%Y",
                "%Y/%m/%d",
                "%d.%m.%Y",
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                RFC3339,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            on_error: OnError::Reject,
            excel_serial: false,
        }
    }
}

enum DateFail {
    /// Some format matched the shape but the fields are impossible (2021-02-30, month 13).
    NotReal,
    NoMatch,
}

impl DateFail {
    fn reason(&self, what: &str, input: &str, formats: &[String]) -> String {
        match self {
            DateFail::NotReal => format!("{what} {} is not a real date", Quoted(input)),
            DateFail::NoMatch => format!(
                "{what} {} does not match any of the formats {}",
                Quoted(input),
                formats.join(", ")
            ),
        }
    }
}

fn is_not_real(kind: ParseErrorKind) -> bool {
    matches!(kind, ParseErrorKind::OutOfRange | ParseErrorKind::Impossible)
}

/// `YYYY-MM-DD` without going through chrono's format interpreter: the common case.
pub(crate) fn fast_iso_date(t: &str) -> Option<NaiveDate> {
    let b = t.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let y = i32::try_from(num(0..4)?).ok()?;
    NaiveDate::from_ymd_opt(y, num(5..7)?, num(8..10)?)
}

fn parse_date(formats: &[String], t: &str) -> Result<NaiveDate, DateFail> {
    if formats.first().is_some_and(|f| f == "%Y-%m-%d")
        && let Some(d) = fast_iso_date(t)
    {
        return Ok(d);
    }
    let mut not_real = false;
    for f in formats {
        let r = if f == RFC3339 {
            // The date as written, not converted to UTC: a birth date stays a birth date.
            DateTime::parse_from_rfc3339(t).map(|dt| dt.date_naive())
        } else {
            NaiveDate::parse_from_str(t, f)
        };
        match r {
            Ok(d) if f != RFC3339 && !year_written_in_full(f, t, d.year()) => {}
            Ok(d) => return Ok(d),
            Err(e) => not_real |= is_not_real(e.kind()),
        }
    }
    Err(if not_real { DateFail::NotReal } else { DateFail::NoMatch })
}

/// chrono's `%Y` takes a year of any number of digits, so `3/7/85` would be the year 85: a
/// pattern with `%Y` only matches when the text holds the year's four digits.
fn year_written_in_full(format: &str, text: &str, year: i32) -> bool {
    if !format.contains("%Y") || !(0..=9999).contains(&year) {
        return true;
    }
    let mut digits = [0u8; 4];
    let mut y = year as u32;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (y % 10) as u8;
        y /= 10;
    }
    text.as_bytes().windows(4).any(|w| w == digits)
}

/// Excel's 1900 date system: day 1 is 1900-01-01, and Excel counts a 1900-02-29 that never
/// was (day 60), so from day 61 (1900-03-01) on the days are one ahead of the calendar.
fn excel_serial_date(what: &str, day: i64) -> Result<NaiveDate, String> {
    let base = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN);
    let date = match day {
        60 => {
            return Err(format!(
                "{what} {} as an Excel serial is 1900-02-29, a day that never was (Excel's 1900 leap-year bug)",
                Quoted(&day.to_string())
            ));
        }
        1..=59 => base(1899, 12, 31).checked_add_days(chrono::Days::new(day as u64)),
        61..=2_958_465 => base(1899, 12, 30).checked_add_days(chrono::Days::new(day as u64)),
        _ => None,
    };
    date.ok_or_else(|| {
        format!(
            "{what} {} is not an Excel serial date (1 = 1900-01-01 to 2958465 = 9999-12-31)",
            Quoted(&day.to_string())
        )
    })
}

/// A number as an Excel serial: the day, and the fraction of it (the time of day).
fn excel_serial_parts(v: &Value) -> Option<(i64, f64)> {
    match v {
        Value::Int(n) => Some((*n, 0.0)),
        Value::Real(f) if f.is_finite() && f.abs() < 1e12 => Some((f.floor() as i64, f - f.floor())),
        _ => None,
    }
}

/// What `excel_serial` reads as a date: a number (whole for `date`), or text that starts
/// with `YYYY-MM-DD` alone or followed by `THH:MM:SS` (a spreadsheet's date cell).
fn excel_date(what: &str, v: &Value) -> Option<Result<NaiveDate, String>> {
    if let Some((day, fraction)) = excel_serial_parts(v) {
        if fraction != 0.0 && what == "date" {
            return Some(Err(format!(
                "{what} {} is not a whole Excel serial day (it has a time of day; use datetime)",
                Shown(v)
            )));
        }
        return Some(excel_serial_date(what, day));
    }
    let Value::Text(t) = v else { return None };
    let t = t.trim();
    let (day, rest) = (t.get(..10)?, t.get(10..)?);
    let cell_time = rest.is_empty()
        || (rest.len() == 9 && rest.starts_with('T') && NaiveTime::parse_from_str(&rest[1..], "%H:%M:%S").is_ok());
    if what == "date" && cell_time {
        return fast_iso_date(day).map(Ok);
    }
    None
}

enum Stamp {
    Naive(NaiveDateTime),
    Offset(DateTime<FixedOffset>),
}

fn has_offset_spec(f: &str) -> bool {
    f.contains("%z") || f.contains("%:z") || f.contains("%#z") || f.contains("%::z")
}

fn parse_datetime(formats: &[String], t: &str) -> Result<Stamp, DateFail> {
    let mut not_real = false;
    for f in formats {
        let r = if f == RFC3339 {
            DateTime::parse_from_rfc3339(t).map(Stamp::Offset)
        } else if has_offset_spec(f) {
            DateTime::parse_from_str(t, f).map(Stamp::Offset)
        } else {
            match NaiveDateTime::parse_from_str(t, f) {
                Ok(dt) => Ok(Stamp::Naive(dt)),
                // A date-only format: the value is midnight of that day.
                Err(e) if e.kind() == ParseErrorKind::NotEnough => {
                    NaiveDate::parse_from_str(t, f).map(|d| Stamp::Naive(d.and_time(NaiveTime::MIN)))
                }
                Err(e) => Err(e),
            }
        };
        match r {
            Ok(s) => return Ok(s),
            Err(e) => not_real |= is_not_real(e.kind()),
        }
    }
    Err(if not_real { DateFail::NotReal } else { DateFail::NoMatch })
}

/// Splits a value into the text to convert, or hands it back with a reason.
fn text_input<'a>(what: &str, v: &'a Value) -> Result<Option<&'a str>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Text(s) => Ok(Some(s)),
        other => Err(format!(
            "{what} expects text, got {} {}",
            kind_name(other),
            Shown(other)
        )),
    }
}

pub(super) fn to_date(spec: &DateSpec, v: Value) -> Result<Value, (Value, String)> {
    if spec.excel_serial
        && let Some(r) = excel_date("date", &v)
    {
        return match r {
            Ok(d) => Ok(Value::Text(d.format("%Y-%m-%d").to_string())),
            Err(reason) => Err((v, reason)),
        };
    }
    let t = match text_input("date", &v) {
        Ok(Some(s)) => s.trim(),
        Ok(None) => return Ok(v),
        Err(reason) => return Err((v, reason)),
    };
    if t.is_empty() {
        return Ok(Value::Null);
    }
    let d = match parse_date(&spec.formats, t) {
        Ok(d) => d,
        Err(fail) => {
            let reason = fail.reason("date", t, &spec.formats);
            return Err((v, reason));
        }
    };
    let mut out = Buf::new();
    if !out.push_date(d) {
        return Ok(Value::Text(d.format("%Y-%m-%d").to_string()));
    }
    Ok(reuse_or_new(v, out.as_str()))
}

pub(super) fn to_datetime(spec: &DateSpec, v: Value) -> Result<Value, (Value, String)> {
    if spec.excel_serial
        && let Some((day, fraction)) = excel_serial_parts(&v)
    {
        return match excel_serial_date("datetime", day) {
            Ok(d) => {
                // The fraction of a day, to the nearest second (how Excel shows it).
                let secs = (fraction * 86_400.0).round() as u64;
                let dt = d.and_time(NaiveTime::MIN) + chrono::Duration::seconds(secs as i64);
                Ok(Value::Text(dt.format("%Y-%m-%dT%H:%M:%S").to_string()))
            }
            Err(reason) => Err((v, reason)),
        };
    }
    let t = match text_input("datetime", &v) {
        Ok(Some(s)) => s.trim(),
        Ok(None) => return Ok(v),
        Err(reason) => return Err((v, reason)),
    };
    if t.is_empty() {
        return Ok(Value::Null);
    }
    let stamp = match parse_datetime(&spec.formats, t) {
        Ok(s) => s,
        Err(fail) => {
            let reason = fail.reason("datetime", t, &spec.formats);
            return Err((v, reason));
        }
    };
    let (dt, offset) = match stamp {
        Stamp::Naive(dt) => (dt, None),
        Stamp::Offset(dt) => (dt.naive_local(), Some(dt.offset().fix().local_minus_utc())),
    };
    let mut out = Buf::new();
    if !out.push_datetime(dt, offset) {
        let mut s = dt.format("%Y-%m-%dT%H:%M:%S%.f").to_string();
        if let Some(off) = offset {
            s.push_str(&offset_text(off));
        }
        return Ok(Value::Text(s));
    }
    Ok(reuse_or_new(v, out.as_str()))
}

fn offset_text(secs: i32) -> String {
    let mut b = Buf::new();
    b.push_offset(secs);
    b.as_str().to_owned()
}

/// ISO 8601 output written into the stack buffer, so an input already in shape is reused.
impl Buf {
    /// `YYYY-MM-DD`; false for years outside 0..=9999, which need chrono's signed form.
    fn push_date(&mut self, d: NaiveDate) -> bool {
        let Ok(year) = u32::try_from(d.year()) else {
            return false;
        };
        if year > 9999 {
            return false;
        }
        self.push_num(year, 4);
        self.push(b'-');
        self.push_num(d.month(), 2);
        self.push(b'-');
        self.push_num(d.day(), 2);
        true
    }

    fn push_datetime(&mut self, dt: NaiveDateTime, offset: Option<i32>) -> bool {
        if !self.push_date(dt.date()) {
            return false;
        }
        let t = dt.time();
        // chrono keeps a leap second as nanoseconds >= 1e9 of second 59.
        let (sec, nanos) = match t.nanosecond() {
            n if n >= 1_000_000_000 => (t.second() + 1, n - 1_000_000_000),
            n => (t.second(), n),
        };
        self.push(b'T');
        self.push_num(t.hour(), 2);
        self.push(b':');
        self.push_num(t.minute(), 2);
        self.push(b':');
        self.push_num(sec, 2);
        // Shortest of 3/6/9 digits that keeps the fraction exact (chrono's `%.f`).
        if nanos != 0 {
            self.push(b'.');
            if nanos % 1_000_000 == 0 {
                self.push_num(nanos / 1_000_000, 3);
            } else if nanos % 1_000 == 0 {
                self.push_num(nanos / 1_000, 6);
            } else {
                self.push_num(nanos, 9);
            }
        }
        if let Some(secs) = offset {
            self.push_offset(secs);
        }
        true
    }

    fn push_offset(&mut self, secs: i32) {
        if secs == 0 {
            self.push(b'Z');
            return;
        }
        self.push(if secs < 0 { b'-' } else { b'+' });
        let mins = secs.unsigned_abs() / 60;
        self.push_num(mins / 60, 2);
        self.push(b':');
        self.push_num(mins % 60, 2);
    }
}

/// Rejects bad strftime patterns when the step is loaded rather than on every row.
fn de_formats<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let formats = Vec::<String>::deserialize(d)?;
    if formats.is_empty() {
        return Err(de::Error::custom("formats must list at least one format"));
    }
    for f in &formats {
        if f != RFC3339 && StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
            return Err(de::Error::custom(format_args!(
                "date format '{f}' is not a valid strftime pattern"
            )));
        }
    }
    Ok(formats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transform::Transform;
    use crate::engine::transform::testing::{date, datetime, err, ok, text};

    #[test]
    fn date_happy_paths() {
        let d = date();
        assert_eq!(ok(&d, text("2021-03-04")), text("2021-03-04"));
        assert_eq!(ok(&d, text(" 2021-03-04 ")), text("2021-03-04"));
        assert_eq!(ok(&d, text("3/4/2021")), text("2021-03-04"));
        assert_eq!(ok(&d, text("03/04/2021")), text("2021-03-04"));
        assert_eq!(ok(&d, text("2021/03/04")), text("2021-03-04"));
        assert_eq!(ok(&d, text("04.03.2021")), text("2021-03-04"));
        assert_eq!(ok(&d, text("2021-03-04T10:11:12")), text("2021-03-04"));
        assert_eq!(ok(&d, text("2021-03-04 10:11:12.5")), text("2021-03-04"));
        // The written date, not the UTC one.
        assert_eq!(ok(&d, text("2021-03-04T23:30:00-05:00")), text("2021-03-04"));
        assert_eq!(ok(&d, text("0999-01-02")), text("0999-01-02"));
        assert_eq!(ok(&d, Value::Null), Value::Null);
        assert_eq!(ok(&d, text("   ")), Value::Null);
        assert_eq!(ok(&d, text("2024-02-29")), text("2024-02-29"));
    }

    #[test]
    fn date_passes_iso_input_through_without_allocating() {
        let s = String::from("2021-03-04");
        let ptr = s.as_ptr();
        let Value::Text(out) = ok(&date(), Value::Text(s)) else {
            panic!()
        };
        assert_eq!(out.as_ptr(), ptr);
    }

    #[test]
    fn date_custom_formats_in_order() {
        let d = Transform::Date(DateSpec {
            formats: vec!["%d/%m/%Y".into(), "%B %d, %Y".into()],
            on_error: OnError::Reject,
            excel_serial: false,
        });
        assert_eq!(ok(&d, text("04/03/2021")), text("2021-03-04"));
        assert_eq!(ok(&d, text("March 4, 2021")), text("2021-03-04"));
        let r = err(&d, text("2021-03-04"));
        assert!(
            r.contains("does not match any of the formats %d/%m/%Y, %B %d, %Y"),
            "{r}"
        );
    }

    #[test]
    fn date_errors() {
        let d = date();
        assert_eq!(err(&d, text("2021-02-30")), "date '2021-02-30' is not a real date");
        assert_eq!(err(&d, text("2023-02-29")), "date '2023-02-29' is not a real date");
        assert_eq!(err(&d, text("13/45/2020")), "date '13/45/2020' is not a real date");
        assert_eq!(err(&d, text("2021-13-01")), "date '2021-13-01' is not a real date");
        assert_eq!(
            err(&d, text("2021-02-30T10:00:00")),
            "date '2021-02-30T10:00:00' is not a real date"
        );
        let r = err(&d, text("yesterday"));
        assert!(
            r.starts_with("date 'yesterday' does not match any of the formats %Y-%m-%d"),
            "{r}"
        );
        assert_eq!(
            err(&d, Value::Int(20210304)),
            "date expects text, got integer '20210304'"
        );
        assert_eq!(err(&d, Value::Real(1.5)), "date expects text, got real '1.5'");
        assert!(err(&d, Value::Bool(true)).contains("got boolean"));
    }

    fn scenario_date(excel_serial: bool) -> Transform {
        Transform::Date(DateSpec {
            formats: vec!["%Y-%m-%d".into(), "%m/%d/%Y".into()],
            on_error: OnError::Reject,
            excel_serial,
        })
    }

    #[test]
    fn month_first_with_one_digit_parts_and_nothing_else() {
        let d = scenario_date(false);
        assert_eq!(ok(&d, text("3/7/1985")), text("1985-03-07"));
        assert_eq!(ok(&d, text("03/14/1985")), text("1985-03-14"));
        assert_eq!(ok(&d, text("12/1/1985")), text("1985-12-01"));
        assert_eq!(ok(&d, text("1985-03-14")), text("1985-03-14"));
        // Day-first is never guessed: a day above 12 in front is an impossible month.
        assert_eq!(err(&d, text("14/03/1985")), "date '14/03/1985' is not a real date");
        // Neither listed format reads year/month/day with slashes.
        assert!(err(&d, text("1985/03/14")).starts_with("date '1985/03/14' "));
        // Two-digit years are not YYYY (chrono's %Y alone would read the year 85).
        assert!(err(&d, text("3/7/85")).contains("does not match any of the formats"));
        assert_eq!(ok(&d, text("03/07/0085")), text("0085-03-07"));
        // chrono stops at the impossible month 14 before it sees the dots: refused either way.
        assert_eq!(err(&d, text("14.03.1985")), "date '14.03.1985' is not a real date");
        assert!(err(&d, text("March 7, 1985")).contains("does not match"));
        // Without excel_serial a number is still not a date.
        assert_eq!(err(&d, Value::Int(31121)), "date expects text, got integer '31121'");
    }

    #[test]
    fn excel_serial_days() {
        let d = scenario_date(true);
        assert_eq!(ok(&d, Value::Int(1)), text("1900-01-01"));
        assert_eq!(ok(&d, Value::Int(59)), text("1900-02-28"));
        assert_eq!(ok(&d, Value::Int(61)), text("1900-03-01"));
        assert_eq!(ok(&d, Value::Int(31121)), text("1985-03-15"));
        assert_eq!(ok(&d, Value::Int(45292)), text("2024-01-01"));
        assert_eq!(ok(&d, Value::Real(45292.0)), text("2024-01-01"));
        assert_eq!(ok(&d, Value::Int(2_958_465)), text("9999-12-31"));
        assert!(err(&d, Value::Int(60)).contains("1900-02-29, a day that never was"));
        assert!(err(&d, Value::Int(0)).contains("is not an Excel serial date"));
        assert!(err(&d, Value::Int(-3)).contains("is not an Excel serial date"));
        assert!(err(&d, Value::Int(2_958_466)).contains("is not an Excel serial date"));
        assert!(err(&d, Value::Real(45292.5)).contains("not a whole Excel serial day"));
        // A date cell read as text, with or without its time, is always a date.
        let cells = Transform::Date(DateSpec {
            formats: vec!["%m/%d/%Y".into()],
            on_error: OnError::Reject,
            excel_serial: true,
        });
        assert_eq!(ok(&cells, text("2024-01-31")), text("2024-01-31"));
        assert_eq!(ok(&cells, text("2024-01-31T10:30:00")), text("2024-01-31"));
        assert_eq!(ok(&cells, text("1/31/2024")), text("2024-01-31"));
        assert!(err(&cells, text("2024-02-30")).starts_with("date '2024-02-30' "));
        // Text digits are not a serial: a CSV cell "45292" is not a date.
        assert_eq!(err(&cells, text("45292")), "date '45292' is not a real date");
        let dt = Transform::Datetime(DateSpec {
            excel_serial: true,
            ..DateSpec::default()
        });
        assert_eq!(ok(&dt, Value::Real(45292.5)), text("2024-01-01T12:00:00"));
        assert_eq!(ok(&dt, Value::Int(61)), text("1900-03-01T00:00:00"));
        assert!(err(&dt, Value::Int(60)).contains("never was"));
    }

    #[test]
    fn datetime_conversions() {
        let d = datetime();
        assert_eq!(ok(&d, text("2021-03-04T10:11:12")), text("2021-03-04T10:11:12"));
        assert_eq!(ok(&d, text("2021-03-04 10:11:12")), text("2021-03-04T10:11:12"));
        assert_eq!(ok(&d, text("2021-03-04 10:11:12.250")), text("2021-03-04T10:11:12.250"));
        assert_eq!(
            ok(&d, text("2021-03-04T10:11:12.000001")),
            text("2021-03-04T10:11:12.000001")
        );
        assert_eq!(ok(&d, text("2021-03-04")), text("2021-03-04T00:00:00"));
        assert_eq!(ok(&d, text("3/4/2021")), text("2021-03-04T00:00:00"));
        assert_eq!(ok(&d, text("2021-03-04T10:11:12Z")), text("2021-03-04T10:11:12Z"));
        assert_eq!(ok(&d, text("2021-03-04T10:11:12+00:00")), text("2021-03-04T10:11:12Z"));
        assert_eq!(
            ok(&d, text("2021-03-04T10:11:12+05:30")),
            text("2021-03-04T10:11:12+05:30")
        );
        assert_eq!(
            ok(&d, text("2021-03-04T10:11:12-08:00")),
            text("2021-03-04T10:11:12-08:00")
        );
        assert_eq!(ok(&d, text("")), Value::Null);
        assert_eq!(ok(&d, Value::Null), Value::Null);
        let custom = Transform::Datetime(DateSpec {
            formats: vec!["%d/%m/%Y %H:%M %z".into(), "%d/%m/%Y %H:%M".into()],
            on_error: OnError::Reject,
            excel_serial: false,
        });
        assert_eq!(
            ok(&custom, text("04/03/2021 10:11 +0100")),
            text("2021-03-04T10:11:00+01:00")
        );
        assert_eq!(ok(&custom, text("04/03/2021 10:11")), text("2021-03-04T10:11:00"));
    }

    #[test]
    fn datetime_errors() {
        let d = datetime();
        assert_eq!(
            err(&d, text("2021-02-30T10:00:00")),
            "datetime '2021-02-30T10:00:00' is not a real date"
        );
        assert_eq!(
            err(&d, text("2021-03-04T25:00:00")),
            "datetime '2021-03-04T25:00:00' is not a real date"
        );
        assert!(err(&d, text("noon")).contains("does not match"));
        assert!(err(&d, Value::Int(1)).contains("expects text"));
    }
}
