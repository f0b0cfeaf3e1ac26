//! Per-field value transforms declared in a step's `step.toml`.
//!
//! Each transform is a pure function of one value, so a step's transform chain can run on any
//! worker thread and be unit-tested without a database. Two transforms (`lookup`, `new_id`) need
//! engine state and are only *declared* here; the engine resolves them before calling [`apply`].
//!
//! Rows stream through these at hundreds of thousands per second, so a value that is already in
//! the target shape is handed back as is (no new `String`), and text is edited in place where
//! the edit cannot grow it.
//!
//! [`apply`]: Transform::apply

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use chrono::format::{Item, ParseErrorKind, StrftimeItems};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, Timelike};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::value::{Value, hex};

/// One step of a field's transform chain.
///
/// In TOML a transform is either a bare name (`"trim"`) or a one-key table whose value holds
/// the options (`{ date = { formats = ["%d.%m.%Y"] } }`). Transforms whose options all have
/// defaults (`date`, `datetime`, `phone`, `gender_normalize`, `split`) accept both forms, and
/// option-less transforms also accept an empty table (`{ trim = {} }`). `default`, `map` and
/// `lookup` have required options and only take the table form.
///
/// `Serialize` is derived (bare names for unit variants, one-key tables otherwise); `Deserialize`
/// is written by hand because serde's derived enum reader cannot take `"date"` as a bare name
/// for a variant that carries options.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// Strip leading and trailing whitespace from text.
    Trim,
    /// Upper-case text.
    Upper,
    /// Lower-case text.
    Lower,
    /// Blank text (empty or only whitespace) becomes NULL.
    EmptyToNull,
    /// NULL or blank text becomes this literal.
    Default(Literal),
    /// Text in one of `formats` becomes `YYYY-MM-DD`.
    Date(DateSpec),
    /// Text in one of `formats` becomes `YYYY-MM-DDTHH:MM:SS` (plus the offset when the input
    /// had one: `Z` for UTC, `+hh:mm` otherwise). Plain dates become midnight.
    Datetime(DateSpec),
    /// A phone number becomes E.164 (`+15551234567`).
    Phone(PhoneSpec),
    /// Free-form gender spellings become one of four configurable labels.
    GenderNormalize(GenderSpec),
    /// 1/0, true/false, yes/no, y/n, t/f, on/off (any case) become a boolean; blank becomes NULL.
    Boolean,
    /// Delimited text becomes a JSON array of strings; NULL and blank text become `[]`, and an
    /// array passes through.
    Split(SplitSpec),
    /// Value mapping, e.g. legacy role spellings to the new role names.
    Map(MapSpec),
    /// Replace a legacy key with the new key recorded in the engine's ID map `map`. The engine
    /// resolves this (it needs the ID map); [`Transform::apply`] refuses it.
    Lookup(LookupSpec),
    /// Generate a fresh UUIDv7 and record legacy key -> new id in the ID map. The engine resolves
    /// this (it owns the ID map); [`Transform::apply`] refuses it.
    NewId,
    /// Lower-case hex SHA-256 of text (its UTF-8 bytes) or bytes.
    Hash,
    /// Length in bytes of binary data or text.
    ByteLength,
    /// Store binary data in a content-addressed folder beside the target (`dir`, relative to
    /// the project) and become its storage key. The engine resolves this (it writes files).
    StoreFile(StoreFileSpec),
}

/// Options of `store_file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFileSpec {
    pub dir: String,
}

/// What a transform with an `on_error` option does with input it cannot convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Reject the row.
    #[default]
    Reject,
    /// Set the field to NULL and record a warning.
    NullWarn,
    /// Keep the original value and record a warning.
    KeepWarn,
}

/// What `map` does with a value that is not in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Otherwise {
    /// Pass the value through unchanged.
    Keep,
    /// Set the field to NULL.
    Null,
    /// Reject the row. The default, so a value the step author did not foresee is never
    /// carried over silently.
    #[default]
    Reject,
}

/// A TOML-compatible scalar for `default`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Literal {
    Bool(bool),
    Int(i64),
    Real(f64),
    Text(String),
}

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
        }
    }
}

/// Options of `phone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhoneSpec {
    /// ISO 3166 alpha-2 code of the country that numbers without an international prefix
    /// belong to. Checked against the supported table when the step is parsed.
    #[serde(deserialize_with = "de_country")]
    pub country: String,
    pub on_error: OnError,
}

impl Default for PhoneSpec {
    fn default() -> Self {
        Self {
            country: "US".into(),
            on_error: OnError::Reject,
        }
    }
}

/// Options of `gender_normalize`.
///
/// Recognised by default (case-insensitive, trimmed): m/male/man -> `male`, f/female/woman ->
/// `female`, o/other/x/nonbinary/non-binary/nb -> `other`; anything else, NULL and blank ->
/// `unknown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenderSpec {
    /// Extra spellings (input -> output), matched case-insensitively before the defaults, e.g.
    /// `{ "1" = "male", "2" = "female" }` for a legacy numeric code.
    pub map: BTreeMap<String, String>,
    /// Output labels, for targets that store codes (`male = "M"`).
    pub male: String,
    pub female: String,
    pub other: String,
    pub unknown: String,
}

impl Default for GenderSpec {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            male: "male".into(),
            female: "female".into(),
            other: "other".into(),
            unknown: "unknown".into(),
        }
    }
}

/// Options of `split`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitSpec {
    #[serde(deserialize_with = "de_separator")]
    pub separator: String,
    /// Trim each element.
    pub trim: bool,
    /// Leave out elements that are empty (after trimming).
    pub drop_empty: bool,
}

impl Default for SplitSpec {
    fn default() -> Self {
        Self {
            separator: ",".into(),
            trim: true,
            drop_empty: true,
        }
    }
}

/// Options of `map`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapSpec {
    /// Input -> output. Input text is trimmed before the lookup; numbers and booleans are
    /// looked up by their text form.
    pub values: BTreeMap<String, String>,
    /// Match keys ignoring case. An exact match wins over a case-insensitive one.
    #[serde(default = "yes")]
    pub case_insensitive: bool,
    /// What to do with a value that has no entry. NULL and blank text without an entry always
    /// pass through (a missing value is not an unforeseen one).
    #[serde(default)]
    pub otherwise: Otherwise,
    /// A value for everything that has no entry (e.g. `"unknown"`); takes precedence over
    /// `otherwise`. NULL and blank still pass through.
    #[serde(default)]
    pub otherwise_value: Option<String>,
}

/// Options of `lookup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSpec {
    /// Name of the ID map (usually the table whose keys it holds, e.g. `users`).
    pub map: String,
    /// What the engine does when the legacy key has no entry in the map.
    #[serde(default)]
    pub on_missing: OnError,
}

/// A successful transform: the new value, and a warning when `on_error` chose to let a bad
/// value through (as NULL or unchanged).
#[derive(Debug, Clone, PartialEq)]
pub struct TransformOutcome {
    pub value: Value,
    pub warning: Option<String>,
}

/// A value the transform refused. `reason` names the bad input, e.g.
/// `date '2021-02-30' is not a real date`.
///
/// Reasons quote the input value; callers must redact them for secret fields
/// (see [`super::validate::is_secret_field`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformError {
    pub transform: &'static str,
    pub reason: String,
}

impl fmt::Display for TransformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for TransformError {}

impl Transform {
    /// The snake_case name used in `step.toml`.
    pub fn name(&self) -> &'static str {
        match self {
            Transform::Trim => "trim",
            Transform::Upper => "upper",
            Transform::Lower => "lower",
            Transform::EmptyToNull => "empty_to_null",
            Transform::Default(_) => "default",
            Transform::Date(_) => "date",
            Transform::Datetime(_) => "datetime",
            Transform::Phone(_) => "phone",
            Transform::GenderNormalize(_) => "gender_normalize",
            Transform::Boolean => "boolean",
            Transform::Split(_) => "split",
            Transform::Map(_) => "map",
            Transform::Lookup(_) => "lookup",
            Transform::NewId => "new_id",
            Transform::Hash => "hash",
            Transform::ByteLength => "byte_length",
            Transform::StoreFile(_) => "store_file",
        }
    }

    /// Pure transforms. Lookup and NewId return Err (the engine handles them before calling this).
    pub fn apply(&self, v: Value) -> Result<TransformOutcome, TransformError> {
        let name = self.name();
        let plain = |r: Result<Value, String>| {
            r.map(done).map_err(|reason| TransformError {
                transform: name,
                reason,
            })
        };
        match self {
            Transform::Trim => Ok(done(trim(v))),
            Transform::Upper => Ok(done(upper(v))),
            Transform::Lower => Ok(done(lower(v))),
            Transform::EmptyToNull => Ok(done(if v.is_blank() { Value::Null } else { v })),
            Transform::Default(lit) => Ok(done(if v.is_blank() { lit.to_value() } else { v })),
            Transform::Date(spec) => settle(name, spec.on_error, to_date(spec, v)),
            Transform::Datetime(spec) => settle(name, spec.on_error, to_datetime(spec, v)),
            Transform::Phone(spec) => settle(name, spec.on_error, to_phone(spec, v)),
            Transform::GenderNormalize(spec) => Ok(done(spec.normalize(v))),
            Transform::Boolean => plain(to_bool(v)),
            Transform::Split(spec) => plain(spec.split(v)),
            Transform::Map(spec) => plain(spec.map(v)),
            Transform::Hash => plain(hash(v)),
            Transform::ByteLength => plain(match &v {
                Value::Null => Ok(Value::Null),
                Value::Bytes(b) => Ok(Value::Int(b.bytes.len() as i64)),
                Value::Text(t) => Ok(Value::Int(t.len() as i64)),
                other => Err(format!("byte_length expects bytes or text, got {}", kind_name(other))),
            }),
            Transform::StoreFile(_) => Err(TransformError {
                transform: name,
                reason: "store_file is resolved by the engine".into(),
            }),
            Transform::Lookup(_) | Transform::NewId => Err(TransformError {
                transform: name,
                reason: format!("{name} is resolved by the engine through the ID map"),
            }),
        }
    }
}

fn done(value: Value) -> TransformOutcome {
    TransformOutcome { value, warning: None }
}

/// Applies `on_error` to a conversion that hands back the original value on failure (so
/// `keep_warn` needs no clone).
fn settle(
    transform: &'static str,
    on_error: OnError,
    r: Result<Value, (Value, String)>,
) -> Result<TransformOutcome, TransformError> {
    match r {
        Ok(value) => Ok(done(value)),
        Err((original, reason)) => match on_error {
            OnError::Reject => Err(TransformError { transform, reason }),
            OnError::NullWarn => Ok(TransformOutcome {
                value: Value::Null,
                warning: Some(format!("{reason}; set to NULL")),
            }),
            OnError::KeepWarn => Ok(TransformOutcome {
                value: original,
                warning: Some(format!("{reason}; kept unchanged")),
            }),
        },
    }
}

impl Literal {
    pub fn to_value(&self) -> Value {
        match self {
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Int(i) => Value::Int(*i),
            Literal::Real(f) => Value::Real(*f),
            Literal::Text(s) => Value::Text(s.clone()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Text case and whitespace

fn trim(v: Value) -> Value {
    match v {
        Value::Text(mut s) => {
            // In place: truncate the end, then shift the rest down; no new allocation.
            let end = s.trim_end().len();
            s.truncate(end);
            let start = s.len() - s.trim_start().len();
            if start > 0 {
                s.drain(..start);
            }
            Value::Text(s)
        }
        other => other,
    }
}

fn upper(v: Value) -> Value {
    match v {
        Value::Text(mut s) if s.is_ascii() => {
            s.make_ascii_uppercase();
            Value::Text(s)
        }
        Value::Text(s) if s.chars().any(char::is_lowercase) => Value::Text(s.to_uppercase()),
        other => other,
    }
}

fn lower(v: Value) -> Value {
    match v {
        Value::Text(mut s) if s.is_ascii() => {
            s.make_ascii_lowercase();
            Value::Text(s)
        }
        Value::Text(s) if s.chars().any(char::is_uppercase) => Value::Text(s.to_lowercase()),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// Dates

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
            Ok(d) => return Ok(d),
            Err(e) => not_real |= is_not_real(e.kind()),
        }
    }
    Err(if not_real { DateFail::NotReal } else { DateFail::NoMatch })
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

fn to_date(spec: &DateSpec, v: Value) -> Result<Value, (Value, String)> {
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

fn to_datetime(spec: &DateSpec, v: Value) -> Result<Value, (Value, String)> {
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

/// Hands back `v` itself when it already is exactly `out`, so clean data costs no allocation.
fn reuse_or_new(v: Value, out: &str) -> Value {
    match v {
        Value::Text(s) if s == out => Value::Text(s),
        _ => Value::Text(out.to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// Phone numbers

/// A numbering plan, enough to turn a national number into E.164 without a phone library.
struct Country {
    iso: &'static str,
    /// Country calling code.
    cc: &'static str,
    /// National numbers are written with a leading trunk `0` that E.164 drops.
    trunk: bool,
    /// Length range of the national significant number (without trunk prefix).
    nsn: (usize, usize),
}

impl Country {
    fn valid_nsn(&self, nsn: &str) -> bool {
        let first = nsn.as_bytes().first().copied().unwrap_or(b'0');
        let len_ok = (self.nsn.0..=self.nsn.1).contains(&nsn.len());
        let total_ok = self.cc.len() + nsn.len() <= 15;
        // NANP area codes start with 2-9; in trunk countries a leading 0 is the trunk, never
        // part of the number.
        let first_ok = match self.cc {
            "1" => first >= b'2',
            _ => !(self.trunk && first == b'0'),
        };
        len_ok && total_ok && first_ok
    }
}

const COUNTRIES: &[Country] = &[
    Country {
        iso: "US",
        cc: "1",
        trunk: false,
        nsn: (10, 10),
    },
    Country {
        iso: "CA",
        cc: "1",
        trunk: false,
        nsn: (10, 10),
    },
    Country {
        iso: "GB",
        cc: "44",
        trunk: true,
        nsn: (7, 10),
    },
    Country {
        iso: "IE",
        cc: "353",
        trunk: true,
        nsn: (7, 9),
    },
    Country {
        iso: "DE",
        cc: "49",
        trunk: true,
        nsn: (6, 13),
    },
    Country {
        iso: "AT",
        cc: "43",
        trunk: true,
        nsn: (4, 13),
    },
    Country {
        iso: "CH",
        cc: "41",
        trunk: true,
        nsn: (9, 9),
    },
    Country {
        iso: "FR",
        cc: "33",
        trunk: true,
        nsn: (9, 9),
    },
    Country {
        iso: "BE",
        cc: "32",
        trunk: true,
        nsn: (8, 9),
    },
    Country {
        iso: "NL",
        cc: "31",
        trunk: true,
        nsn: (9, 9),
    },
    Country {
        iso: "ES",
        cc: "34",
        trunk: false,
        nsn: (9, 9),
    },
    // Italy keeps the leading 0 of landlines in E.164, so it is not a trunk prefix.
    Country {
        iso: "IT",
        cc: "39",
        trunk: false,
        nsn: (6, 11),
    },
    Country {
        iso: "PT",
        cc: "351",
        trunk: false,
        nsn: (9, 9),
    },
    Country {
        iso: "DK",
        cc: "45",
        trunk: false,
        nsn: (8, 8),
    },
    Country {
        iso: "NO",
        cc: "47",
        trunk: false,
        nsn: (8, 8),
    },
    Country {
        iso: "SE",
        cc: "46",
        trunk: true,
        nsn: (7, 10),
    },
    Country {
        iso: "PL",
        cc: "48",
        trunk: false,
        nsn: (9, 9),
    },
    Country {
        iso: "AU",
        cc: "61",
        trunk: true,
        nsn: (9, 9),
    },
    Country {
        iso: "NZ",
        cc: "64",
        trunk: true,
        nsn: (8, 10),
    },
    Country {
        iso: "IN",
        cc: "91",
        trunk: true,
        nsn: (10, 10),
    },
    Country {
        iso: "JP",
        cc: "81",
        trunk: true,
        nsn: (9, 10),
    },
    Country {
        iso: "ZA",
        cc: "27",
        trunk: true,
        nsn: (9, 9),
    },
    Country {
        iso: "MX",
        cc: "52",
        trunk: false,
        nsn: (10, 10),
    },
];

fn country(iso: &str) -> Option<&'static Country> {
    let iso = if iso.eq_ignore_ascii_case("UK") { "GB" } else { iso };
    COUNTRIES.iter().find(|c| c.iso.eq_ignore_ascii_case(iso))
}

enum PhoneFail {
    NotNumber,
    WrongLength(usize),
}

/// Drops a trailing extension (`x123`, `ext. 123`, `extension 123`, `#123`).
fn strip_extension(s: &str) -> &str {
    let t = s.trim_end();
    let head = t.trim_end_matches(|c: char| c.is_ascii_digit());
    if head.len() == t.len() {
        return s;
    }
    let head = head.trim_end();
    for marker in ["extension", "ext.", "ext", "x", "#"] {
        let Some(cut) = head.len().checked_sub(marker.len()) else {
            continue;
        };
        if head.is_char_boundary(cut) && head[cut..].eq_ignore_ascii_case(marker) {
            return &head[..cut];
        }
    }
    s
}

fn e164(home: &'static Country, raw: &str) -> Result<Buf, PhoneFail> {
    let body = strip_extension(raw).trim();
    let (plus, rest) = match body.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, body),
    };
    let mut digits = Buf::new();
    let mut count = 0usize;
    for c in rest.chars() {
        match c {
            '0'..='9' => {
                count += 1;
                digits.push(c as u8);
            }
            ' ' | '.' | '-' | '(' | ')' | '/' | '\t' | '\u{a0}' => {}
            _ => return Err(PhoneFail::NotNumber),
        }
    }
    if count == 0 {
        return Err(PhoneFail::NotNumber);
    }
    if count > 20 {
        return Err(PhoneFail::WrongLength(count));
    }
    let d = digits.as_str();
    let intl = if plus {
        Some(d)
    } else if let Some(r) = d.strip_prefix("00") {
        Some(r)
    } else if home.cc == "1" {
        // 011 is the NANP international call prefix.
        d.strip_prefix("011")
    } else {
        None
    };
    let (cc, nsn) = match intl {
        Some(full) => international(full)?,
        None => national(home, d)?,
    };
    let mut out = Buf::new();
    out.push(b'+');
    out.push_str(cc);
    out.push_str(nsn);
    Ok(out)
}

fn international(full: &str) -> Result<(&'static str, &str), PhoneFail> {
    let fail = Err(PhoneFail::WrongLength(full.len()));
    if full.starts_with('0') {
        return fail;
    }
    match COUNTRIES.iter().find(|c| full.starts_with(c.cc)) {
        Some(c) => {
            let mut nsn = &full[c.cc.len()..];
            if c.trunk {
                // "+44 (0)20 ..." writes the trunk 0 after the country code; E.164 drops it.
                nsn = nsn.strip_prefix('0').unwrap_or(nsn);
            }
            if c.valid_nsn(nsn) { Ok((c.cc, nsn)) } else { fail }
        }
        None if (8..=15).contains(&full.len()) => Ok(("", full)),
        None => fail,
    }
}

fn national<'a>(home: &'static Country, d: &'a str) -> Result<(&'static str, &'a str), PhoneFail> {
    let candidates = [
        if home.trunk { d.strip_prefix('0') } else { None },
        Some(d),
        // The country code written without '+' or 00 (e.g. 1-555-123-4567 in the US).
        d.strip_prefix(home.cc),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|nsn| home.valid_nsn(nsn))
        .map(|nsn| (home.cc, nsn))
        .ok_or(PhoneFail::WrongLength(d.len()))
}

fn to_phone(spec: &PhoneSpec, v: Value) -> Result<Value, (Value, String)> {
    let Some(home) = country(&spec.country) else {
        let reason = format!("phone country '{}' is not supported", spec.country);
        return Err((v, reason));
    };
    let text: Cow<'_, str> = match &v {
        Value::Null => return Ok(v),
        Value::Text(s) => Cow::Borrowed(s.as_str()),
        // Legacy schemas sometimes store numbers as integers.
        Value::Int(i) if *i > 0 => Cow::Owned(i.to_string()),
        other => {
            let reason = format!("phone expects text, got {} {}", kind_name(other), Shown(other));
            return Err((v, reason));
        }
    };
    let t = text.trim();
    if t.is_empty() {
        return Ok(Value::Null);
    }
    match e164(home, t) {
        Ok(out) => Ok(reuse_or_new(v, out.as_str())),
        Err(fail) => {
            let reason = match fail {
                PhoneFail::NotNumber => format!("phone {} is not a number", Quoted(t)),
                PhoneFail::WrongLength(n) => format!(
                    "phone {} is not a valid {} number ({n} digits)",
                    Quoted(t),
                    if t.starts_with('+') { "international" } else { home.iso }
                ),
            };
            Err((v, reason))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Gender, boolean, split, map, hash

const MALE: &[&str] = &["m", "male", "man"];
const FEMALE: &[&str] = &["f", "female", "woman"];
const OTHER: &[&str] = &["o", "other", "x", "nonbinary", "non-binary", "non binary", "nb"];

impl GenderSpec {
    fn label(&self, t: &str) -> &str {
        let any = |words: &[&str]| words.iter().any(|w| w.eq_ignore_ascii_case(t));
        if t.is_empty() {
            &self.unknown
        } else if let Some(out) = lookup(&self.map, t, true) {
            out
        } else if any(MALE) {
            &self.male
        } else if any(FEMALE) {
            &self.female
        } else if any(OTHER) {
            &self.other
        } else {
            &self.unknown
        }
    }

    fn normalize(&self, v: Value) -> Value {
        let label = match &v {
            Value::Text(s) => self.label(s.trim()),
            // Numeric legacy codes can be mapped through `map`.
            Value::Int(i) => self.label(&i.to_string()),
            _ => &self.unknown,
        };
        reuse_or_new(v, label)
    }
}

const TRUE_WORDS: &[&str] = &["1", "true", "yes", "y", "t", "on"];
const FALSE_WORDS: &[&str] = &["0", "false", "no", "n", "f", "off"];

fn to_bool(v: Value) -> Result<Value, String> {
    match v {
        Value::Null | Value::Bool(_) => Ok(v),
        Value::Int(1) => Ok(Value::Bool(true)),
        Value::Int(0) => Ok(Value::Bool(false)),
        Value::Text(ref s) => {
            let t = s.trim();
            let is = |words: &[&str]| words.iter().any(|w| w.eq_ignore_ascii_case(t));
            if t.is_empty() {
                Ok(Value::Null)
            } else if is(TRUE_WORDS) {
                Ok(Value::Bool(true))
            } else if is(FALSE_WORDS) {
                Ok(Value::Bool(false))
            } else {
                Err(format!(
                    "boolean {} is not one of 1/0, true/false, yes/no, y/n, t/f, on/off",
                    Quoted(t)
                ))
            }
        }
        other => Err(format!("boolean {} {} is not 1 or 0", kind_name(&other), Shown(&other))),
    }
}

impl SplitSpec {
    fn split(&self, v: Value) -> Result<Value, String> {
        let s = match &v {
            Value::Null => return Ok(Value::Json(serde_json::Value::Array(Vec::new()))),
            Value::Json(serde_json::Value::Array(_)) => return Ok(v),
            Value::Text(s) => s,
            other => {
                return Err(format!("split expects text, got {} {}", kind_name(other), Shown(other)));
            }
        };
        if self.separator.is_empty() {
            return Err("split separator is empty".into());
        }
        let items = if s.trim().is_empty() {
            Vec::new()
        } else {
            s.split(self.separator.as_str())
                .map(|part| if self.trim { part.trim() } else { part })
                .filter(|part| !(self.drop_empty && part.is_empty()))
                .map(|part| serde_json::Value::String(part.to_owned()))
                .collect()
        };
        Ok(Value::Json(serde_json::Value::Array(items)))
    }
}

/// Exact key first (a tree lookup), then a case-insensitive scan; value maps are small.
fn lookup<'m>(map: &'m BTreeMap<String, String>, key: &str, ci: bool) -> Option<&'m String> {
    map.get(key).or_else(|| {
        ci.then(|| map.iter().find(|(k, _)| eq_fold(k, key)).map(|(_, v)| v))
            .flatten()
    })
}

fn eq_fold(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.chars()
            .flat_map(char::to_lowercase)
            .eq(b.chars().flat_map(char::to_lowercase))
    }
}

impl MapSpec {
    fn map(&self, v: Value) -> Result<Value, String> {
        let hit = match &v {
            Value::Null => return Ok(v),
            Value::Text(s) => lookup(&self.values, s.trim(), self.case_insensitive),
            Value::Int(_) | Value::Real(_) | Value::Bool(_) => {
                let key = v.to_text().unwrap_or_default();
                lookup(&self.values, &key, self.case_insensitive)
            }
            Value::Bytes(_) | Value::Json(_) => None,
        };
        match hit {
            Some(out) => Ok(reuse_or_new(v, out)),
            None if v.is_blank() => Ok(v),
            None if self.otherwise_value.is_some() => Ok(Value::Text(self.otherwise_value.clone().unwrap_or_default())),
            None => match self.otherwise {
                Otherwise::Keep => Ok(v),
                Otherwise::Null => Ok(Value::Null),
                Otherwise::Reject => Err(format!("map has no entry for {}", Shown(&v))),
            },
        }
    }
}

fn hash(v: Value) -> Result<Value, String> {
    match &v {
        Value::Null => Ok(v),
        Value::Text(s) => Ok(Value::Text(hex(&Sha256::digest(s.as_bytes())))),
        Value::Bytes(b) => Ok(Value::Text(hex(&Sha256::digest(&b.bytes)))),
        other => Err(format!("hash expects text or bytes, got {}", kind_name(other))),
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared with `validate`

pub(crate) fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Int(_) => "integer",
        Value::Real(_) => "real",
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytes",
        Value::Json(_) => "json",
    }
}

/// Longest stretch of a value quoted in a reason; reports must stay readable.
const QUOTE_MAX_CHARS: usize = 60;

/// Displays text in single quotes, shortened and with control characters escaped, so a stray
/// multi-kilobyte or multi-line value cannot wreck a report line.
pub(crate) struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        f.write_char('\'')?;
        for (i, c) in self.0.chars().enumerate() {
            if i == QUOTE_MAX_CHARS {
                f.write_char('…')?;
                break;
            }
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        f.write_char('\'')
    }
}

/// Displays any value for a reason: text quoted, bytes summarised, others as their text form.
pub(crate) struct Shown<'a>(pub &'a Value);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Null => f.write_str("NULL"),
            Value::Text(s) => Quoted(s).fmt(f),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.bytes_len),
            Value::Json(j) => Quoted(&j.to_string()).fmt(f),
            other => Quoted(&other.to_text().unwrap_or_default()).fmt(f),
        }
    }
}

/// A small stack buffer for ASCII output (dates, E.164), so the result can be compared with
/// the input before deciding to allocate. Pushes past the end are dropped; callers bound
/// their output well below the capacity.
struct Buf {
    bytes: [u8; 48],
    len: usize,
}

impl Buf {
    fn new() -> Self {
        Self { bytes: [0; 48], len: 0 }
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn push_str(&mut self, s: &str) {
        s.bytes().for_each(|b| self.push(b));
    }

    /// Zero-padded decimal of at least `width` digits.
    fn push_num(&mut self, mut n: u32, width: usize) {
        let mut tmp = [0u8; 10];
        let mut i = 0;
        while i < tmp.len() && (n > 0 || i < width) {
            tmp[i] = b'0' + (n % 10) as u8;
            n /= 10;
            i += 1;
        }
        tmp[..i].iter().rev().for_each(|&b| self.push(b));
    }

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

    fn as_str(&self) -> &str {
        // Only ASCII is ever pushed, so this cannot fail.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Deserialisation

const NAMES: &[&str] = &[
    "trim",
    "upper",
    "lower",
    "empty_to_null",
    "default",
    "date",
    "datetime",
    "phone",
    "gender_normalize",
    "boolean",
    "split",
    "map",
    "lookup",
    "new_id",
    "hash",
];

/// A transform written as a bare name: the option-less ones, and those whose options all
/// have defaults.
fn bare(name: &str) -> Option<Transform> {
    Some(match name {
        "trim" => Transform::Trim,
        "upper" => Transform::Upper,
        "lower" => Transform::Lower,
        "empty_to_null" => Transform::EmptyToNull,
        "boolean" => Transform::Boolean,
        "new_id" => Transform::NewId,
        "hash" => Transform::Hash,
        "byte_length" => Transform::ByteLength,
        "date" => Transform::Date(DateSpec::default()),
        "datetime" => Transform::Datetime(DateSpec::default()),
        "phone" => Transform::Phone(PhoneSpec::default()),
        "gender_normalize" => Transform::GenderNormalize(GenderSpec::default()),
        "split" => Transform::Split(SplitSpec::default()),
        _ => return None,
    })
}

/// The empty table of `{ trim = {} }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

impl<'de> Deserialize<'de> for Transform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TransformVisitor)
    }
}

struct TransformVisitor;

impl<'de> Visitor<'de> for TransformVisitor {
    type Value = Transform;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a transform name such as \"trim\" or a one-key table such as { date = {} }")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Transform, E> {
        match bare(s) {
            Some(t) => Ok(t),
            None if NAMES.contains(&s) => Err(E::custom(format_args!(
                "transform `{s}` needs options; write it as a table: {{ {s} = ... }}"
            ))),
            None => Err(E::unknown_variant(s, NAMES)),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Transform, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        let t = match key.as_str() {
            "default" => Transform::Default(map.next_value()?),
            "date" => Transform::Date(map.next_value()?),
            "datetime" => Transform::Datetime(map.next_value()?),
            "phone" => Transform::Phone(map.next_value()?),
            "gender_normalize" => Transform::GenderNormalize(map.next_value()?),
            "split" => Transform::Split(map.next_value()?),
            "map" => Transform::Map(map.next_value()?),
            "lookup" => Transform::Lookup(map.next_value()?),
            "store_file" => Transform::StoreFile(map.next_value()?),
            other => match bare(other) {
                Some(t) => {
                    map.next_value::<NoOptions>()?;
                    t
                }
                None => return Err(de::Error::unknown_variant(other, NAMES)),
            },
        };
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom(format_args!(
                "a transform table has exactly one key; put `{key}` in its own {{ }}"
            )));
        }
        Ok(t)
    }
}

impl<'de> Deserialize<'de> for Literal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LiteralVisitor)
    }
}

struct LiteralVisitor;

impl Visitor<'_> for LiteralVisitor {
    type Value = Literal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, integer, float or boolean")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Literal, E> {
        Ok(Literal::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Literal, E> {
        Ok(Literal::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Literal, E> {
        i64::try_from(v)
            .map(Literal::Int)
            .map_err(|_| E::custom(format_args!("default {v} does not fit a 64-bit integer")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Literal, E> {
        Ok(Literal::Real(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Literal, E> {
        Ok(Literal::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Literal, E> {
        Ok(Literal::Text(v))
    }
}

fn yes() -> bool {
    true
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

fn de_country<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let iso = String::deserialize(d)?;
    match country(&iso) {
        Some(c) => Ok(c.iso.to_owned()),
        None => {
            let known: Vec<&str> = COUNTRIES.iter().map(|c| c.iso).collect();
            Err(de::Error::custom(format_args!(
                "phone country '{iso}' is not supported (supported: {})",
                known.join(", ")
            )))
        }
    }
}

fn de_separator<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let sep = String::deserialize(d)?;
    if sep.is_empty() {
        return Err(de::Error::custom("split separator must not be empty"));
    }
    Ok(sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn ok(t: &Transform, v: Value) -> Value {
        match t.apply(v) {
            Ok(o) => {
                assert_eq!(o.warning, None);
                o.value
            }
            Err(e) => panic!("{} failed: {}", t.name(), e.reason),
        }
    }

    fn err(t: &Transform, v: Value) -> String {
        match t.apply(v) {
            Ok(o) => panic!("{} unexpectedly gave {:?}", t.name(), o.value),
            Err(e) => {
                assert_eq!(e.transform, t.name());
                e.reason
            }
        }
    }

    fn json(j: serde_json::Value) -> Value {
        Value::Json(j)
    }

    fn date() -> Transform {
        Transform::Date(DateSpec::default())
    }

    fn datetime() -> Transform {
        Transform::Datetime(DateSpec::default())
    }

    fn phone(country: &str) -> Transform {
        Transform::Phone(PhoneSpec {
            country: country.into(),
            on_error: OnError::Reject,
        })
    }

    #[derive(Deserialize)]
    struct Field {
        transforms: Vec<Transform>,
    }

    fn parse(toml_text: &str) -> Result<Vec<Transform>, String> {
        toml::from_str::<Field>(toml_text)
            .map(|f| f.transforms)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn toml_form_from_the_step_docs() {
        let src = r#"transforms = ["trim", "lower", "empty_to_null", { default = "unknown" }, { date = { formats = ["%Y-%m-%d", "%m/%d/%Y"], on_error = "reject" } }, { phone = { country = "US", on_error = "null_warn" } }, { gender_normalize = {} }, "boolean", { split = { separator = "," } }, { map = { values = { Parent = "parent", PARENT = "parent", doctor = "clinician" }, otherwise = "reject" } }, { lookup = { map = "users", on_missing = "reject" } }, "new_id"]"#;
        let ts = parse(src).unwrap();
        let values: BTreeMap<String, String> = [("Parent", "parent"), ("PARENT", "parent"), ("doctor", "clinician")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            ts,
            vec![
                Transform::Trim,
                Transform::Lower,
                Transform::EmptyToNull,
                Transform::Default(Literal::Text("unknown".into())),
                Transform::Date(DateSpec {
                    formats: vec!["%Y-%m-%d".into(), "%m/%d/%Y".into()],
                    on_error: OnError::Reject,
                }),
                Transform::Phone(PhoneSpec {
                    country: "US".into(),
                    on_error: OnError::NullWarn
                }),
                Transform::GenderNormalize(GenderSpec::default()),
                Transform::Boolean,
                Transform::Split(SplitSpec::default()),
                Transform::Map(MapSpec {
                    values,
                    case_insensitive: true,
                    otherwise: Otherwise::Reject,
                    otherwise_value: None,
                }),
                Transform::Lookup(LookupSpec {
                    map: "users".into(),
                    on_missing: OnError::Reject
                }),
                Transform::NewId,
            ]
        );
    }

    #[test]
    fn toml_bare_names_take_defaults() {
        let ts = parse(
            r#"transforms = ["date", "datetime", "phone", "gender_normalize", "split", "upper", "hash", { trim = {} }]"#,
        )
        .unwrap();
        assert_eq!(
            ts,
            vec![
                date(),
                datetime(),
                Transform::Phone(PhoneSpec::default()),
                Transform::GenderNormalize(GenderSpec::default()),
                Transform::Split(SplitSpec::default()),
                Transform::Upper,
                Transform::Hash,
                Transform::Trim,
            ]
        );
    }

    #[test]
    fn toml_literals_and_options() {
        let ts = parse(
            r#"transforms = [{ default = 0 }, { default = 1.5 }, { default = true }, { phone = { country = "gb" } }, { gender_normalize = { male = "M", map = { "1" = "M" } } }, { split = { separator = ";", trim = false, drop_empty = false } }, { date = { on_error = "keep_warn" } }]"#,
        )
        .unwrap();
        assert_eq!(ts[0], Transform::Default(Literal::Int(0)));
        assert_eq!(ts[1], Transform::Default(Literal::Real(1.5)));
        assert_eq!(ts[2], Transform::Default(Literal::Bool(true)));
        // Country codes are normalised to upper case when the step is read.
        assert_eq!(
            ts[3],
            Transform::Phone(PhoneSpec {
                country: "GB".into(),
                ..Default::default()
            })
        );
        let Transform::GenderNormalize(g) = &ts[4] else {
            panic!("{:?}", ts[4])
        };
        assert_eq!((g.male.as_str(), g.female.as_str()), ("M", "female"));
        assert_eq!(
            ts[5],
            Transform::Split(SplitSpec {
                separator: ";".into(),
                trim: false,
                drop_empty: false
            })
        );
        assert_eq!(
            ts[6],
            Transform::Date(DateSpec {
                on_error: OnError::KeepWarn,
                ..DateSpec::default()
            })
        );
    }

    #[test]
    fn toml_mistakes_are_reported_at_load() {
        let cases = [
            (r#"transforms = ["trimm"]"#, "unknown variant"),
            (r#"transforms = ["map"]"#, "needs options"),
            (r#"transforms = ["default"]"#, "needs options"),
            (r#"transforms = [{ date = {}, trim = {} }]"#, "exactly one key"),
            (
                r#"transforms = [{ date = { formats = ["%Y-%Q"] } }]"#,
                "not a valid strftime",
            ),
            (r#"transforms = [{ date = { formats = [] } }]"#, "at least one format"),
            (r#"transforms = [{ date = { on_eror = "reject" } }]"#, "unknown field"),
            (r#"transforms = [{ phone = { country = "XX" } }]"#, "not supported"),
            (r#"transforms = [{ split = { separator = "" } }]"#, "must not be empty"),
            (r#"transforms = [{ map = { otherwise = "keep" } }]"#, "missing field"),
            (
                r#"transforms = [{ map = { values = {}, otherwise = "drop" } }]"#,
                "unknown variant",
            ),
            (r#"transforms = [{ trim = { x = 1 } }]"#, "unknown field"),
            (
                r#"transforms = [{ default = [1] }]"#,
                "string, integer, float or boolean",
            ),
        ];
        for (src, want) in cases {
            let e = parse(src).unwrap_err();
            assert!(e.contains(want), "{src}: {e}");
        }
    }

    #[test]
    fn json_round_trip() {
        let ts = vec![
            Transform::Trim,
            Transform::Default(Literal::Int(3)),
            date(),
            Transform::Phone(PhoneSpec::default()),
            Transform::Map(MapSpec {
                values: BTreeMap::from([("a".into(), "b".into())]),
                case_insensitive: false,
                otherwise: Otherwise::Keep,
                otherwise_value: None,
            }),
            Transform::NewId,
        ];
        let s = serde_json::to_string(&ts).unwrap();
        let back: Vec<Transform> = serde_json::from_str(&s).unwrap();
        assert_eq!(back, ts);
    }

    #[test]
    fn names() {
        assert_eq!(Transform::EmptyToNull.name(), "empty_to_null");
        assert_eq!(
            Transform::GenderNormalize(GenderSpec::default()).name(),
            "gender_normalize"
        );
        assert_eq!(Transform::NewId.name(), "new_id");
        assert_eq!(datetime().name(), "datetime");
    }

    #[test]
    fn trim_upper_lower() {
        assert_eq!(ok(&Transform::Trim, text("  a b \t")), text("a b"));
        assert_eq!(ok(&Transform::Trim, text("ab")), text("ab"));
        assert_eq!(ok(&Transform::Trim, text("   ")), text(""));
        assert_eq!(ok(&Transform::Trim, text(" Ünïcode ")), text("Ünïcode"));
        assert_eq!(ok(&Transform::Trim, Value::Int(4)), Value::Int(4));
        assert_eq!(ok(&Transform::Upper, text("abc-1")), text("ABC-1"));
        assert_eq!(ok(&Transform::Upper, text("straße")), text("STRASSE"));
        assert_eq!(ok(&Transform::Upper, Value::Null), Value::Null);
        assert_eq!(ok(&Transform::Lower, text("ABC")), text("abc"));
        assert_eq!(ok(&Transform::Lower, text("ÉCOLE")), text("école"));
        assert_eq!(ok(&Transform::Lower, Value::Bool(true)), Value::Bool(true));
    }

    #[test]
    fn trim_reuses_the_allocation() {
        let s = String::from("  hello  ");
        let ptr = s.as_ptr();
        let Value::Text(out) = ok(&Transform::Trim, Value::Text(s)) else {
            panic!()
        };
        assert_eq!(out, "hello");
        assert_eq!(out.as_ptr(), ptr);
    }

    #[test]
    fn empty_to_null_and_default() {
        let e = Transform::EmptyToNull;
        assert_eq!(ok(&e, text("  ")), Value::Null);
        assert_eq!(ok(&e, text("")), Value::Null);
        assert_eq!(ok(&e, text(" x ")), text(" x "));
        assert_eq!(ok(&e, Value::Int(0)), Value::Int(0));
        let d = Transform::Default(Literal::Text("unknown".into()));
        assert_eq!(ok(&d, Value::Null), text("unknown"));
        assert_eq!(ok(&d, text(" ")), text("unknown"));
        assert_eq!(ok(&d, text("known")), text("known"));
        assert_eq!(ok(&Transform::Default(Literal::Int(7)), Value::Null), Value::Int(7));
        assert_eq!(
            ok(&Transform::Default(Literal::Bool(false)), Value::Null),
            Value::Bool(false)
        );
        assert_eq!(
            ok(&Transform::Default(Literal::Real(0.5)), Value::Null),
            Value::Real(0.5)
        );
    }

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

    #[test]
    fn on_error_modes() {
        let spec = |on_error| {
            Transform::Date(DateSpec {
                on_error,
                ..DateSpec::default()
            })
        };
        let bad = || text("2021-02-30");

        let e = spec(OnError::Reject).apply(bad()).unwrap_err();
        assert_eq!(e.transform, "date");
        assert_eq!(e.to_string(), "date '2021-02-30' is not a real date");

        let o = spec(OnError::NullWarn).apply(bad()).unwrap();
        assert_eq!(o.value, Value::Null);
        assert_eq!(
            o.warning.as_deref(),
            Some("date '2021-02-30' is not a real date; set to NULL")
        );

        let o = spec(OnError::KeepWarn).apply(bad()).unwrap();
        assert_eq!(o.value, bad());
        assert_eq!(
            o.warning.as_deref(),
            Some("date '2021-02-30' is not a real date; kept unchanged")
        );

        // Good input never warns, whatever the mode.
        let o = spec(OnError::NullWarn).apply(text("2021-02-03")).unwrap();
        assert_eq!((o.value, o.warning), (text("2021-02-03"), None));

        let p = Transform::Phone(PhoneSpec {
            on_error: OnError::NullWarn,
            ..PhoneSpec::default()
        });
        let o = p.apply(text("call me")).unwrap();
        assert_eq!(o.value, Value::Null);
        assert_eq!(
            o.warning.as_deref(),
            Some("phone 'call me' is not a number; set to NULL")
        );
        let p = Transform::Phone(PhoneSpec {
            on_error: OnError::KeepWarn,
            ..PhoneSpec::default()
        });
        assert_eq!(p.apply(text("call me")).unwrap().value, text("call me"));
        let dt = Transform::Datetime(DateSpec {
            on_error: OnError::KeepWarn,
            ..DateSpec::default()
        });
        let o = dt.apply(Value::Int(5)).unwrap();
        assert_eq!(o.value, Value::Int(5));
        assert!(o.warning.is_some());
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

    #[test]
    fn phone_us() {
        let p = phone("US");
        for input in [
            "(555) 234-5678",
            "555.234.5678",
            "555 234 5678",
            "5552345678",
            "1-555-234-5678",
            "+1 555 234 5678",
            "001 555 234 5678",
            "555-234-5678 x123",
            "555-234-5678 ext. 9",
            "555-234-5678 Extension 12",
        ] {
            assert_eq!(ok(&p, text(input)), text("+15552345678"), "{input}");
        }
        assert_eq!(ok(&p, Value::Int(5552345678)), text("+15552345678"));
        assert_eq!(ok(&phone("CA"), text("416 555 0123")), text("+14165550123"));
        assert_eq!(ok(&p, text("011 44 20 7946 0958")), text("+442079460958"));
        assert_eq!(ok(&p, Value::Null), Value::Null);
        assert_eq!(ok(&p, text("  ")), Value::Null);
    }

    #[test]
    fn phone_e164_input_is_reused() {
        let s = String::from("+15552345678");
        let ptr = s.as_ptr();
        let Value::Text(out) = ok(&phone("US"), Value::Text(s)) else {
            panic!()
        };
        assert_eq!(out.as_ptr(), ptr);
    }

    #[test]
    fn phone_other_countries() {
        assert_eq!(ok(&phone("GB"), text("020 7946 0958")), text("+442079460958"));
        assert_eq!(ok(&phone("GB"), text("07700 900123")), text("+447700900123"));
        assert_eq!(ok(&phone("GB"), text("+44 (0)20 7946 0958")), text("+442079460958"));
        assert_eq!(ok(&phone("DE"), text("030 123456")), text("+4930123456"));
        assert_eq!(ok(&phone("DE"), text("0151 23456789")), text("+4915123456789"));
        assert_eq!(ok(&phone("FR"), text("01 23 45 67 89")), text("+33123456789"));
        assert_eq!(ok(&phone("NL"), text("020-1234567")), text("+31201234567"));
        assert_eq!(ok(&phone("AU"), text("(02) 9876 5432")), text("+61298765432"));
        assert_eq!(ok(&phone("AU"), text("0412 345 678")), text("+61412345678"));
        assert_eq!(ok(&phone("IT"), text("06 1234 5678")), text("+390612345678"));
        // An international number is kept in its own country whatever the default country.
        assert_eq!(ok(&phone("DE"), text("+1 555 234 5678")), text("+15552345678"));
        assert_eq!(ok(&phone("US"), text("+86 10 1234 5678")), text("+861012345678"));
        assert_eq!(ok(&phone("US"), text("0086 10 1234 5678")), text("+861012345678"));
    }

    #[test]
    fn phone_errors() {
        let p = phone("US");
        assert_eq!(err(&p, text("call me")), "phone 'call me' is not a number");
        assert_eq!(err(&p, text("555-CALL-NOW")), "phone '555-CALL-NOW' is not a number");
        assert_eq!(err(&p, text("x123")), "phone 'x123' is not a number");
        assert_eq!(err(&p, text("555+2345678")), "phone '555+2345678' is not a number");
        assert_eq!(
            err(&p, text("555-1234")),
            "phone '555-1234' is not a valid US number (7 digits)"
        );
        assert_eq!(
            err(&p, text("155523456789")),
            "phone '155523456789' is not a valid US number (12 digits)"
        );
        // Area codes never start with 0 or 1.
        assert!(err(&p, text("055 234 5678")).contains("not a valid US number"));
        assert_eq!(
            err(&p, text("+12 34")),
            "phone '+12 34' is not a valid international number (4 digits)"
        );
        assert!(err(&p, text("+1234567890123456")).contains("international"));
        assert!(err(&p, text("+1 555 234 567")).contains("international"));
        assert!(err(&phone("GB"), text("020 79")).contains("not a valid GB number"));
        assert_eq!(err(&p, Value::Real(5.5)), "phone expects text, got real '5.5'");
        assert!(err(&phone("ZZ"), text("5552345678")).contains("'ZZ' is not supported"));
    }

    #[test]
    fn gender() {
        let g = Transform::GenderNormalize(GenderSpec::default());
        for (input, want) in [
            ("M", "male"),
            ("male", "male"),
            ("MALE", "male"),
            (" m ", "male"),
            ("F", "female"),
            ("Female", "female"),
            ("other", "other"),
            ("O", "other"),
            ("x", "other"),
            ("NonBinary", "other"),
            ("non-binary", "other"),
            ("", "unknown"),
            ("  ", "unknown"),
            ("dunno", "unknown"),
        ] {
            assert_eq!(ok(&g, text(input)), text(want), "{input}");
        }
        assert_eq!(ok(&g, Value::Null), text("unknown"));
        assert_eq!(ok(&g, Value::Int(1)), text("unknown"));

        let custom = Transform::GenderNormalize(GenderSpec {
            map: BTreeMap::from([("1".into(), "M".into()), ("Herr".into(), "M".into())]),
            male: "M".into(),
            female: "F".into(),
            other: "X".into(),
            unknown: "U".into(),
        });
        assert_eq!(ok(&custom, Value::Int(1)), text("M"));
        assert_eq!(ok(&custom, text("HERR")), text("M"));
        assert_eq!(ok(&custom, text("female")), text("F"));
        assert_eq!(ok(&custom, text("?")), text("U"));
    }

    #[test]
    fn boolean() {
        let b = Transform::Boolean;
        for t in ["1", "true", "TRUE", "Yes", "y", "T", "on", " ON "] {
            assert_eq!(ok(&b, text(t)), Value::Bool(true), "{t}");
        }
        for f in ["0", "false", "No", "N", "f", "OFF"] {
            assert_eq!(ok(&b, text(f)), Value::Bool(false), "{f}");
        }
        assert_eq!(ok(&b, text(" ")), Value::Null);
        assert_eq!(ok(&b, Value::Null), Value::Null);
        assert_eq!(ok(&b, Value::Int(1)), Value::Bool(true));
        assert_eq!(ok(&b, Value::Int(0)), Value::Bool(false));
        assert_eq!(ok(&b, Value::Bool(false)), Value::Bool(false));
        assert_eq!(
            err(&b, text("maybe")),
            "boolean 'maybe' is not one of 1/0, true/false, yes/no, y/n, t/f, on/off"
        );
        assert_eq!(err(&b, Value::Int(2)), "boolean integer '2' is not 1 or 0");
    }

    #[test]
    fn split() {
        let s = Transform::Split(SplitSpec::default());
        assert_eq!(ok(&s, text("a, b,,c ")), json(serde_json::json!(["a", "b", "c"])));
        assert_eq!(ok(&s, text("single")), json(serde_json::json!(["single"])));
        assert_eq!(ok(&s, text("  ")), json(serde_json::json!([])));
        assert_eq!(ok(&s, Value::Null), json(serde_json::json!([])));
        assert_eq!(ok(&s, json(serde_json::json!(["x"]))), json(serde_json::json!(["x"])));
        let raw = Transform::Split(SplitSpec {
            separator: "||".into(),
            trim: false,
            drop_empty: false,
        });
        assert_eq!(
            ok(&raw, text("a || b||||")),
            json(serde_json::json!(["a ", " b", "", ""]))
        );
        assert_eq!(err(&s, Value::Int(3)), "split expects text, got integer '3'");
    }

    fn role_map(otherwise: Otherwise, case_insensitive: bool) -> Transform {
        Transform::Map(MapSpec {
            values: BTreeMap::from([
                ("Parent".into(), "parent".into()),
                ("doctor".into(), "clinician".into()),
                ("ÄRZTIN".into(), "clinician".into()),
                ("1".into(), "admin".into()),
            ]),
            case_insensitive,
            otherwise,
            otherwise_value: None,
        })
    }

    #[test]
    fn map() {
        let m = role_map(Otherwise::Reject, true);
        assert_eq!(ok(&m, text("Parent")), text("parent"));
        assert_eq!(ok(&m, text(" PARENT ")), text("parent"));
        assert_eq!(ok(&m, text("Doctor")), text("clinician"));
        assert_eq!(ok(&m, text("ärztin")), text("clinician"));
        assert_eq!(ok(&m, Value::Int(1)), text("admin"));
        assert_eq!(ok(&m, Value::Null), Value::Null);
        assert_eq!(ok(&m, text(" ")), text(" "));
        assert_eq!(err(&m, text("nurse")), "map has no entry for 'nurse'");
        assert_eq!(err(&m, Value::Int(9)), "map has no entry for '9'");

        let strict = role_map(Otherwise::Reject, false);
        assert_eq!(ok(&strict, text("Parent")), text("parent"));
        assert!(err(&strict, text("parent")).contains("no entry"));

        assert_eq!(ok(&role_map(Otherwise::Keep, true), text("nurse")), text("nurse"));
        assert_eq!(ok(&role_map(Otherwise::Null, true), text("nurse")), Value::Null);
    }

    #[test]
    fn hash() {
        let h = Transform::Hash;
        assert_eq!(
            ok(&h, text("abc")),
            text("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            ok(&h, Value::bytes(b"abc".to_vec())),
            text("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(ok(&h, Value::Null), Value::Null);
        assert_eq!(err(&h, Value::Int(1)), "hash expects text or bytes, got integer");
    }

    #[test]
    fn engine_transforms_refuse_apply() {
        let l = Transform::Lookup(LookupSpec {
            map: "users".into(),
            on_missing: OnError::Reject,
        });
        assert!(err(&l, Value::Int(1)).contains("resolved by the engine"));
        assert!(err(&Transform::NewId, Value::Null).contains("resolved by the engine"));
    }

    #[test]
    fn long_values_are_shortened_in_reasons() {
        let long = "y".repeat(500);
        let r = err(&Transform::Boolean, text(&long));
        assert!(r.len() < 200, "{r}");
        assert!(r.contains("…'"));
        let r = err(&Transform::Boolean, text("a\nb"));
        assert!(r.contains("'a\\nb'"), "{r}");
    }
}
