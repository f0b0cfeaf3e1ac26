//! Per-field validation rules declared in a step's `step.toml`.
//!
//! A step's checks are compiled once into a [`Validator`] (regexes built, dates parsed, enum
//! values sorted) and then run for every row. A passing value costs no allocation: the
//! violation list stays an empty `Vec` and reasons are only formatted for failures.
//!
//! `today` is passed in rather than read from the clock, so a run judges every row against the
//! same day and tests are stable.

use chrono::NaiveDate;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::transform::{Quoted, Shown, fast_iso_date, kind_name};
use super::value::Value;

/// One validation rule. In TOML the rule name sits in the `rule` key next to its options:
/// `{ rule = "max_length", max = 100 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// Fails on NULL and blank text. Every other rule passes a blank value.
    Required,
    /// At most `max` characters (Unicode scalar values; bytes for binary values).
    MaxLength { max: usize },
    /// At least `min` characters.
    MinLength { min: usize },
    /// The text must match the regular expression somewhere; anchor it with `^...$` to
    /// match the whole value.
    Pattern { pattern: String },
    /// A plausible address: `local@domain.tld`, no spaces.
    Email,
    /// One of `values`, compared exactly (case-sensitive).
    Enum { values: Vec<String> },
    /// An ISO date (or the date part of an ISO datetime) within the inclusive bounds.
    DateRange {
        #[serde(default)]
        min: Option<String>,
        #[serde(default)]
        max: Option<String>,
    },
    /// An ISO date not after `today`.
    NotInFuture,
    /// A number (integer, real, or numeric text) within the inclusive bounds.
    Range {
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
    },
    /// The value must be a key of the engine's ID map `map`. Checked by the engine; a
    /// [`Validator`] skips it.
    ReferenceExists { map: String },
    /// The value must equal (case-insensitively, trimmed) the raw source column `column`;
    /// checked by the engine, e.g. a recorded digest against the one computed.
    MatchesSource { column: String },
}

impl Rule {
    /// The snake_case name used in `step.toml`.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Required => "required",
            Rule::MaxLength { .. } => "max_length",
            Rule::MinLength { .. } => "min_length",
            Rule::Pattern { .. } => "pattern",
            Rule::Email => "email",
            Rule::Enum { .. } => "enum",
            Rule::DateRange { .. } => "date_range",
            Rule::NotInFuture => "not_in_future",
            Rule::Range { .. } => "range",
            Rule::ReferenceExists { .. } => "reference_exists",
            Rule::MatchesSource { .. } => "matches_source",
        }
    }
}

/// How bad a violation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// The row is rejected.
    #[default]
    Error,
    /// The row goes through; the violation is reported.
    Warning,
}

/// A rule as declared for a field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    #[serde(flatten)]
    pub rule: Rule,
    #[serde(default)]
    pub level: Level,
    /// With `level = "warning"`: also set the field to NULL (e.g. keep a row with a broken
    /// email address, but not the address).
    #[serde(default)]
    pub null_on_warning: bool,
    /// Replaces the generated reason; `{field}` and `{value}` are filled in (the value is
    /// redacted for secret fields).
    #[serde(default)]
    pub message: Option<String>,
}

/// A failed check.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub rule: &'static str,
    pub level: Level,
    /// Readable, names the field and (unless the field is secret) the value.
    pub reason: String,
    /// The engine should set the field to NULL (a warning with `null_on_warning`).
    pub null_value: bool,
}

/// The checks of one field, compiled once per step.
#[derive(Debug, Clone)]
pub struct Validator {
    checks: Vec<Compiled>,
}

#[derive(Debug, Clone)]
struct Compiled {
    rule: &'static str,
    test: Test,
    level: Level,
    null_value: bool,
    message: Option<String>,
}

#[derive(Debug, Clone)]
enum Test {
    Required,
    MaxLength(usize),
    MinLength(usize),
    Pattern(Regex),
    Email,
    /// Declared order for reasons, sorted copy for binary search.
    Enum {
        declared: Vec<String>,
        sorted: Vec<String>,
    },
    DateRange(Option<NaiveDate>, Option<NaiveDate>),
    NotInFuture,
    Range(Option<f64>, Option<f64>),
    /// Resolved by the engine.
    Engine,
}

enum Fail {
    Blank,
    TooLong { len: usize, max: usize },
    TooShort { len: usize, min: usize },
    NoMatch,
    NotEmail,
    NotInEnum,
    NotText,
    NotDate,
    InFuture,
    Before(NaiveDate),
    After(NaiveDate),
    NotNumber,
    Below(f64),
    Above(f64),
}

/// What failed: the whole value, or one element of a JSON array (a `split` list).
enum Subject<'v> {
    Whole,
    Element(&'v str),
}

impl Validator {
    /// Compiles a field's checks. Fails on an invalid regex (naming the pattern) or
    /// inconsistent options, so a bad `step.toml` is caught before any row moves.
    pub fn compile(checks: &[Check]) -> Result<Self, String> {
        checks
            .iter()
            .map(compile_one)
            .collect::<Result<Vec<_>, _>>()
            .map(|checks| Self { checks })
    }

    /// Runs every check against one value. Empty when the value passes.
    pub fn check(&self, field: &str, v: &Value, today: NaiveDate) -> Vec<Violation> {
        let mut out = Vec::new();
        for c in &self.checks {
            if let Some((fail, subject)) = c.test.run(v, today) {
                out.push(c.violation(field, v, fail, subject));
            }
        }
        out
    }
}

fn compile_one(c: &Check) -> Result<Compiled, String> {
    let name = c.rule.name();
    let date_bound = |which: &str, s: &Option<String>| match s {
        None => Ok(None),
        Some(s) => match fast_iso_date(s) {
            Some(d) => Ok(Some(d)),
            None => Err(format!("{name} {which} '{s}' is not an ISO date (YYYY-MM-DD)")),
        },
    };
    let test = match &c.rule {
        Rule::Required => Test::Required,
        Rule::MaxLength { max } => Test::MaxLength(*max),
        Rule::MinLength { min } => Test::MinLength(*min),
        Rule::Pattern { pattern } => Test::Pattern(
            Regex::new(pattern).map_err(|e| format!("pattern '{pattern}' is not a valid regular expression: {e}"))?,
        ),
        Rule::Email => Test::Email,
        Rule::Enum { values } => {
            if values.is_empty() {
                return Err("enum needs at least one value".into());
            }
            let mut sorted = values.clone();
            sorted.sort_unstable();
            Test::Enum {
                declared: values.clone(),
                sorted,
            }
        }
        Rule::DateRange { min, max } => {
            let (lo, hi) = (date_bound("min", min)?, date_bound("max", max)?);
            if let (Some(lo), Some(hi)) = (lo, hi)
                && lo > hi
            {
                return Err(format!("date_range min {lo} is after max {hi}"));
            }
            Test::DateRange(lo, hi)
        }
        Rule::NotInFuture => Test::NotInFuture,
        Rule::Range { min, max } => {
            if min.is_some_and(f64::is_nan) || max.is_some_and(f64::is_nan) {
                return Err("range bounds must be numbers".into());
            }
            if let (Some(lo), Some(hi)) = (min, max)
                && lo > hi
            {
                return Err(format!("range min {lo} is above max {hi}"));
            }
            Test::Range(*min, *max)
        }
        Rule::ReferenceExists { .. } | Rule::MatchesSource { .. } => Test::Engine,
    };
    // An error already rejects the row, so nulling the field would be a silent no-op; say so.
    if c.null_on_warning && c.level != Level::Warning {
        return Err(format!("{name}: null_on_warning needs level = \"warning\""));
    }
    Ok(Compiled {
        rule: name,
        test,
        level: c.level,
        null_value: c.null_on_warning,
        message: c.message.clone(),
    })
}

impl Test {
    fn run<'v>(&self, v: &'v Value, today: NaiveDate) -> Option<(Fail, Subject<'v>)> {
        let whole = |f: Fail| (f, Subject::Whole);
        match self {
            Test::Required => v.is_blank().then(|| whole(Fail::Blank)),
            Test::Engine => None,
            // Absence is `required`'s business alone.
            _ if v.is_blank() => None,
            Test::MaxLength(_) | Test::MinLength(_) | Test::Pattern(_) | Test::Email | Test::Enum { .. } => {
                self.run_text(v)
            }
            Test::NotInFuture => {
                let Some(d) = v.as_str().and_then(iso_date) else {
                    return Some(whole(Fail::NotDate));
                };
                (d > today).then(|| whole(Fail::InFuture))
            }
            Test::DateRange(lo, hi) => {
                let Some(d) = v.as_str().and_then(iso_date) else {
                    return Some(whole(Fail::NotDate));
                };
                match (lo, hi) {
                    (Some(lo), _) if d < *lo => Some(whole(Fail::Before(*lo))),
                    (_, Some(hi)) if d > *hi => Some(whole(Fail::After(*hi))),
                    _ => None,
                }
            }
            Test::Range(lo, hi) => {
                let x = match v {
                    Value::Int(i) => *i as f64,
                    Value::Real(f) => *f,
                    Value::Text(s) => s.trim().parse::<f64>().unwrap_or(f64::NAN),
                    _ => f64::NAN,
                };
                match (lo, hi) {
                    _ if !x.is_finite() => Some(whole(Fail::NotNumber)),
                    (Some(lo), _) if x < *lo => Some(whole(Fail::Below(*lo))),
                    (_, Some(hi)) if x > *hi => Some(whole(Fail::Above(*hi))),
                    _ => None,
                }
            }
        }
    }

    /// Text rules: text directly, numbers and booleans by their text form, each string of a
    /// JSON array (a `split` list) on its own, binary only by length.
    fn run_text<'v>(&self, v: &'v Value) -> Option<(Fail, Subject<'v>)> {
        match v {
            Value::Text(s) => self.text(s).map(|f| (f, Subject::Whole)),
            Value::Int(_) | Value::Real(_) | Value::Bool(_) => {
                let s = v.to_text()?;
                self.text(&s).map(|f| (f, Subject::Whole))
            }
            Value::Json(serde_json::Value::Array(items)) => items.iter().find_map(|item| match item {
                serde_json::Value::String(s) if s.trim().is_empty() => None,
                serde_json::Value::String(s) => self.text(s).map(|f| (f, Subject::Element(s))),
                _ => Some((Fail::NotText, Subject::Whole)),
            }),
            Value::Bytes(b) => match self {
                Test::MaxLength(max) => (b.bytes_len > *max).then_some((
                    Fail::TooLong {
                        len: b.bytes_len,
                        max: *max,
                    },
                    Subject::Whole,
                )),
                Test::MinLength(min) => (b.bytes_len < *min).then_some((
                    Fail::TooShort {
                        len: b.bytes_len,
                        min: *min,
                    },
                    Subject::Whole,
                )),
                _ => Some((Fail::NotText, Subject::Whole)),
            },
            Value::Json(_) => Some((Fail::NotText, Subject::Whole)),
            Value::Null => None,
        }
    }

    fn text(&self, s: &str) -> Option<Fail> {
        match self {
            // Byte length bounds the character count, so most values skip counting.
            Test::MaxLength(max) if s.len() <= *max => None,
            Test::MaxLength(max) => {
                let len = s.chars().count();
                (len > *max).then_some(Fail::TooLong { len, max: *max })
            }
            Test::MinLength(min) => {
                let len = if s.is_ascii() { s.len() } else { s.chars().count() };
                (len < *min).then_some(Fail::TooShort { len, min: *min })
            }
            Test::Pattern(re) => (!re.is_match(s)).then_some(Fail::NoMatch),
            Test::Email => (!is_email(s)).then_some(Fail::NotEmail),
            Test::Enum { sorted, .. } => sorted
                .binary_search_by(|x| x.as_str().cmp(s))
                .is_err()
                .then_some(Fail::NotInEnum),
            _ => None,
        }
    }
}

impl Compiled {
    fn violation(&self, field: &str, v: &Value, fail: Fail, subject: Subject<'_>) -> Violation {
        let secret = is_secret_field(field);
        let shown = if secret {
            "<redacted>".to_owned()
        } else {
            match subject {
                Subject::Whole => Shown(v).to_string(),
                Subject::Element(s) => Quoted(s).to_string(),
            }
        };
        let reason = match &self.message {
            Some(m) => m.replace("{field}", field).replace("{value}", &shown),
            None => self.reason(field, &shown, v, fail, secret),
        };
        Violation {
            rule: self.rule,
            level: self.level,
            reason,
            null_value: self.null_value && self.level == Level::Warning,
        }
    }

    fn reason(&self, field: &str, shown: &str, v: &Value, fail: Fail, secret: bool) -> String {
        // A secret's length narrows a brute-force search, so it stays out of reports too.
        let count = |n: usize| {
            if secret { String::new() } else { format!(" ({n})") }
        };
        match fail {
            Fail::Blank => format!("{field} is required but blank"),
            Fail::TooLong { len, max } => {
                format!("{field} {shown} is longer than {max} characters{}", count(len))
            }
            Fail::TooShort { len, min } => {
                format!("{field} {shown} is shorter than {min} characters{}", count(len))
            }
            Fail::NoMatch => {
                let pattern = match &self.test {
                    Test::Pattern(re) => re.as_str(),
                    _ => "",
                };
                format!("{field} {shown} does not match the pattern {pattern}")
            }
            Fail::NotEmail => format!("{field} {shown} is not a valid email address"),
            Fail::NotInEnum => {
                let allowed = match &self.test {
                    Test::Enum { declared, .. } => list(declared),
                    _ => String::new(),
                };
                format!("{field} {shown} is not one of {allowed}")
            }
            Fail::NotText => format!("{field} {shown} is {}, not text", kind_name(v)),
            Fail::NotDate => format!("{field} {shown} is not an ISO date (YYYY-MM-DD)"),
            Fail::InFuture => format!("{field} {shown} is in the future"),
            Fail::Before(d) => format!("{field} {shown} is before {d}"),
            Fail::After(d) => format!("{field} {shown} is after {d}"),
            Fail::NotNumber => format!("{field} {shown} is not a number"),
            Fail::Below(x) => format!("{field} {shown} is below the minimum {x}"),
            Fail::Above(x) => format!("{field} {shown} is above the maximum {x}"),
        }
    }
}

/// Enum values for a reason; long lists are cut so a report line stays readable.
fn list(values: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = values
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if values.len() > SHOWN {
        s.push_str(&format!(", … ({} more)", values.len() - SHOWN));
    }
    s
}

/// Fields whose values must never appear in a reason, warning or report. Deliberately broad:
/// redacting a harmless field costs little, leaking a credential costs a lot.
pub fn is_secret_field(field: &str) -> bool {
    const MARKERS: &[&str] = &[
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "private_key",
        "credential",
        "hash",
    ];
    let b = field.as_bytes();
    MARKERS
        .iter()
        .any(|m| b.windows(m.len()).any(|w| w.eq_ignore_ascii_case(m.as_bytes())))
}

/// `YYYY-MM-DD`, or the date part of `YYYY-MM-DDTHH:MM:SS...` / `YYYY-MM-DD HH:MM:SS...`.
fn iso_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    match s.as_bytes().get(10) {
        None | Some(b'T' | b' ') => fast_iso_date(s.get(..10)?),
        _ => None,
    }
}

fn is_email(s: &str) -> bool {
    const LOCAL_SYMBOLS: &str = "!#$%&'*+/=?^_`{|}~.-";
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| c.is_alphanumeric() || LOCAL_SYMBOLS.contains(c));
    if !local_ok || domain.len() > 253 {
        return false;
    }
    let mut labels = 0;
    let mut last = "";
    for label in domain.split('.') {
        let label_ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-');
        if !label_ok {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && !last.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, 1).unwrap()
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn check(rule: Rule) -> Check {
        Check {
            rule,
            level: Level::Error,
            null_on_warning: false,
            message: None,
        }
    }

    fn validator(rule: Rule) -> Validator {
        Validator::compile(&[check(rule)]).unwrap()
    }

    /// The reasons of all violations.
    fn run(v: &Validator, field: &str, value: Value) -> Vec<String> {
        v.check(field, &value, today()).into_iter().map(|x| x.reason).collect()
    }

    fn passes(v: &Validator, value: Value) {
        let r = run(v, "f", value.clone());
        assert!(r.is_empty(), "{value:?}: {r:?}");
    }

    fn fails(v: &Validator, field: &str, value: Value) -> String {
        let mut r = run(v, field, value.clone());
        assert_eq!(r.len(), 1, "{value:?}: {r:?}");
        r.remove(0)
    }

    #[derive(Deserialize)]
    struct Field {
        validate: Vec<Check>,
    }

    #[test]
    fn toml_form_from_the_step_docs() {
        let src = r#"validate = [{ rule = "required" }, { rule = "max_length", max = 100 }, { rule = "email", level = "warning", null_on_warning = true }, { rule = "enum", values = ["parent","clinician","admin"] }, { rule = "date_range", min = "1900-01-01" }, { rule = "not_in_future" }, { rule = "pattern", pattern = "^[A-Z]{3}[0-9]+$" }]"#;
        let checks = toml::from_str::<Field>(src).unwrap().validate;
        let rules: Vec<Rule> = checks.iter().map(|c| c.rule.clone()).collect();
        assert_eq!(
            rules,
            vec![
                Rule::Required,
                Rule::MaxLength { max: 100 },
                Rule::Email,
                Rule::Enum {
                    values: vec!["parent".into(), "clinician".into(), "admin".into()]
                },
                Rule::DateRange {
                    min: Some("1900-01-01".into()),
                    max: None
                },
                Rule::NotInFuture,
                Rule::Pattern {
                    pattern: "^[A-Z]{3}[0-9]+$".into()
                },
            ]
        );
        assert_eq!(checks[0].level, Level::Error);
        assert_eq!(checks[2].level, Level::Warning);
        assert!(checks[2].null_on_warning);
        assert!(!checks[1].null_on_warning);
        assert!(checks.iter().all(|c| c.message.is_none()));
        Validator::compile(&checks).unwrap();
    }

    #[test]
    fn toml_other_rules_and_mistakes() {
        let src = r#"validate = [{ rule = "range", min = 0, max = 120.5 }, { rule = "min_length", min = 2, message = "{field} too short" }, { rule = "reference_exists", map = "users" }, { rule = "date_range", max = "2000-12-31" }]"#;
        let checks = toml::from_str::<Field>(src).unwrap().validate;
        assert_eq!(
            checks[0].rule,
            Rule::Range {
                min: Some(0.0),
                max: Some(120.5)
            }
        );
        assert_eq!(checks[1].message.as_deref(), Some("{field} too short"));
        assert_eq!(checks[2].rule, Rule::ReferenceExists { map: "users".into() });
        assert_eq!(
            checks[3].rule,
            Rule::DateRange {
                min: None,
                max: Some("2000-12-31".into())
            }
        );

        for (src, want) in [
            (r#"validate = [{ rule = "requird" }]"#, "unknown variant"),
            (r#"validate = [{ rule = "max_length" }]"#, "missing field `max`"),
            (r#"validate = [{ rule = "email", level = "fatal" }]"#, "unknown variant"),
            (r#"validate = [{ max = 3 }]"#, "rule"),
        ] {
            let e = toml::from_str::<Field>(src).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(want), "{src}: {e}");
        }
    }

    #[test]
    fn json_round_trip() {
        let c = Check {
            rule: Rule::Range {
                min: Some(1.0),
                max: None,
            },
            level: Level::Warning,
            null_on_warning: true,
            message: Some("m".into()),
        };
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Check>(&s).unwrap(), c);
    }

    #[test]
    fn compile_errors() {
        let e = Validator::compile(&[check(Rule::Pattern {
            pattern: "([a-z]".into(),
        })])
        .unwrap_err();
        assert!(
            e.starts_with("pattern '([a-z]' is not a valid regular expression"),
            "{e}"
        );
        let bad = |rule| Validator::compile(&[check(rule)]).unwrap_err();
        assert!(bad(Rule::Enum { values: vec![] }).contains("at least one"));
        assert!(
            bad(Rule::DateRange {
                min: Some("01/01/1900".into()),
                max: None
            })
            .contains("'01/01/1900'")
        );
        assert!(
            bad(Rule::DateRange {
                min: Some("2000-01-01".into()),
                max: Some("1999-01-01".into())
            })
            .contains("after")
        );
        assert!(
            bad(Rule::Range {
                min: Some(5.0),
                max: Some(1.0)
            })
            .contains("above")
        );
        let e = Validator::compile(&[Check {
            null_on_warning: true,
            ..check(Rule::Email)
        }])
        .unwrap_err();
        assert!(e.contains("null_on_warning"), "{e}");
    }

    #[test]
    fn required() {
        let v = validator(Rule::Required);
        passes(&v, text("x"));
        passes(&v, Value::Int(0));
        passes(&v, Value::Bool(false));
        assert_eq!(fails(&v, "name", Value::Null), "name is required but blank");
        assert_eq!(fails(&v, "name", text("  ")), "name is required but blank");
    }

    #[test]
    fn blanks_pass_every_other_rule() {
        let all = Validator::compile(&[
            check(Rule::MaxLength { max: 0 }),
            check(Rule::MinLength { min: 5 }),
            check(Rule::Pattern { pattern: "^x$".into() }),
            check(Rule::Email),
            check(Rule::Enum {
                values: vec!["a".into()],
            }),
            check(Rule::DateRange {
                min: Some("2000-01-01".into()),
                max: None,
            }),
            check(Rule::NotInFuture),
            check(Rule::Range {
                min: Some(1.0),
                max: None,
            }),
            check(Rule::ReferenceExists { map: "users".into() }),
        ])
        .unwrap();
        passes(&all, Value::Null);
        passes(&all, text(""));
        passes(&all, text("   "));
    }

    #[test]
    fn max_and_min_length() {
        let max = validator(Rule::MaxLength { max: 5 });
        passes(&max, text("abcde"));
        passes(&max, text("ééééé"));
        assert_eq!(
            fails(&max, "code", text("abcdef")),
            "code 'abcdef' is longer than 5 characters (6)"
        );
        assert!(fails(&max, "code", text("éééééé")).ends_with("(6)"));
        passes(&max, Value::Int(12345));
        assert!(fails(&max, "code", Value::Int(123456)).contains("'123456'"));
        passes(&max, Value::bytes(vec![0; 5]));
        assert_eq!(
            fails(&max, "blob", Value::bytes(vec![0; 6])),
            "blob <6 bytes> is longer than 5 characters (6)"
        );

        let min = validator(Rule::MinLength { min: 3 });
        passes(&min, text("abc"));
        passes(&min, text("äöü"));
        assert_eq!(
            fails(&min, "code", text("ab")),
            "code 'ab' is shorter than 3 characters (2)"
        );
        assert!(fails(&min, "code", text("äö")).ends_with("(2)"));
    }

    #[test]
    fn pattern() {
        let v = validator(Rule::Pattern {
            pattern: "^[A-Z]{3}[0-9]+$".into(),
        });
        passes(&v, text("ABC123"));
        assert_eq!(
            fails(&v, "code", text("AB123")),
            "code 'AB123' does not match the pattern ^[A-Z]{3}[0-9]+$"
        );
        let digits = validator(Rule::Pattern {
            pattern: "^[0-9]+$".into(),
        });
        passes(&digits, Value::Int(42));
        assert!(fails(&digits, "n", Value::Real(4.5)).contains("'4.5'"));
    }

    #[test]
    fn email() {
        let v = validator(Rule::Email);
        for ok in [
            "a@example.com",
            "first.last+tag@mail.example.co.uk",
            "o'hara@x.io",
            "jörg@bücher.de",
        ] {
            passes(&v, text(ok));
        }
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a@example",
            "a@@example.com",
            "a b@example.com",
            "a@exa mple.com",
            ".a@example.com",
            "a..b@example.com",
            "a@-example.com",
            "a@example..com",
            "a@1.2.3.4",
            " a@example.com",
        ] {
            let r = fails(&v, "email", text(bad));
            assert!(r.ends_with("is not a valid email address"), "{bad}: {r}");
        }
        assert_eq!(
            fails(&v, "email", text("nope")),
            "email 'nope' is not a valid email address"
        );
    }

    #[test]
    fn enum_values() {
        let v = validator(Rule::Enum {
            values: vec!["parent".into(), "clinician".into(), "admin".into()],
        });
        passes(&v, text("parent"));
        passes(&v, text("admin"));
        assert_eq!(
            fails(&v, "role", text("Parent")),
            "role 'Parent' is not one of parent, clinician, admin"
        );
        let many = validator(Rule::Enum {
            values: (0..15).map(|i| i.to_string()).collect(),
        });
        passes(&many, Value::Int(14));
        assert!(fails(&many, "n", Value::Int(99)).ends_with("8, 9, … (5 more)"));
    }

    #[test]
    fn text_rules_check_each_element_of_a_list() {
        let v = validator(Rule::Enum {
            values: vec!["red".into(), "blue".into()],
        });
        passes(&v, Value::Json(serde_json::json!(["red", "blue", ""])));
        passes(&v, Value::Json(serde_json::json!([])));
        assert_eq!(
            fails(&v, "tags", Value::Json(serde_json::json!(["red", "green"]))),
            "tags 'green' is not one of red, blue"
        );
        assert!(fails(&v, "tags", Value::Json(serde_json::json!([1]))).contains("is json, not text"));
        assert!(fails(&v, "tags", Value::Json(serde_json::json!({"a": 1}))).contains("not text"));
        assert_eq!(
            fails(&v, "pic", Value::bytes(vec![1, 2])),
            "pic <2 bytes> is bytes, not text"
        );
    }

    #[test]
    fn date_range() {
        let v = validator(Rule::DateRange {
            min: Some("1900-01-01".into()),
            max: Some("2010-12-31".into()),
        });
        passes(&v, text("1900-01-01"));
        passes(&v, text("2010-12-31"));
        passes(&v, text("1985-06-15T10:00:00Z"));
        passes(&v, text("1985-06-15 10:00:00"));
        assert_eq!(
            fails(&v, "dob", text("1899-12-31")),
            "dob '1899-12-31' is before 1900-01-01"
        );
        assert_eq!(
            fails(&v, "dob", text("2011-01-01")),
            "dob '2011-01-01' is after 2010-12-31"
        );
        assert_eq!(
            fails(&v, "dob", text("31/12/1980")),
            "dob '31/12/1980' is not an ISO date (YYYY-MM-DD)"
        );
        assert!(fails(&v, "dob", text("2001-02-29")).contains("not an ISO date"));
        assert!(fails(&v, "dob", text("2001-02-01X")).contains("not an ISO date"));
        assert_eq!(
            fails(&v, "dob", Value::Int(19800101)),
            "dob '19800101' is not an ISO date (YYYY-MM-DD)"
        );
        let open = validator(Rule::DateRange { min: None, max: None });
        passes(&open, text("0001-01-01"));
    }

    #[test]
    fn not_in_future_uses_the_injected_day() {
        let v = validator(Rule::NotInFuture);
        passes(&v, text("2024-05-01"));
        passes(&v, text("2024-04-30T23:59:59"));
        assert_eq!(
            fails(&v, "date_of_birth", text("2130-04-01")),
            "date_of_birth '2130-04-01' is in the future"
        );
        assert!(fails(&v, "d", text("2024-05-02")).contains("in the future"));
        let tomorrow = NaiveDate::from_ymd_opt(2024, 5, 2).unwrap();
        assert!(v.check("d", &text("2024-05-02"), tomorrow).is_empty());
        assert!(fails(&v, "d", text("soon")).contains("not an ISO date"));
    }

    #[test]
    fn range() {
        let v = validator(Rule::Range {
            min: Some(0.0),
            max: Some(120.0),
        });
        passes(&v, Value::Int(0));
        passes(&v, Value::Real(120.0));
        passes(&v, text(" 42 "));
        assert_eq!(fails(&v, "age", Value::Int(-1)), "age '-1' is below the minimum 0");
        assert_eq!(
            fails(&v, "age", Value::Real(120.5)),
            "age '120.5' is above the maximum 120"
        );
        assert_eq!(fails(&v, "age", text("old")), "age 'old' is not a number");
        assert!(fails(&v, "age", text("NaN")).contains("not a number"));
        assert!(fails(&v, "age", Value::Bool(true)).contains("not a number"));
        let at_least = validator(Rule::Range {
            min: Some(1.5),
            max: None,
        });
        passes(&at_least, Value::Int(i64::MAX));
        assert!(fails(&at_least, "x", Value::Int(1)).contains("below the minimum 1.5"));
    }

    #[test]
    fn reference_exists_is_left_to_the_engine() {
        let v = validator(Rule::ReferenceExists { map: "users".into() });
        passes(&v, text("no-such-user"));
    }

    #[test]
    fn levels_null_on_warning_and_messages() {
        let v = Validator::compile(&[
            Check {
                level: Level::Warning,
                null_on_warning: true,
                ..check(Rule::Email)
            },
            Check {
                level: Level::Warning,
                ..check(Rule::MaxLength { max: 3 })
            },
            Check {
                message: Some("{field} must be a corporate address, got {value}".into()),
                ..check(Rule::Pattern {
                    pattern: "@corp\\.com$".into(),
                })
            },
        ])
        .unwrap();
        let out = v.check("email", &text("nope"), today());
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[0],
            Violation {
                rule: "email",
                level: Level::Warning,
                reason: "email 'nope' is not a valid email address".into(),
                null_value: true,
            }
        );
        assert_eq!(
            (out[1].rule, out[1].level, out[1].null_value),
            ("max_length", Level::Warning, false)
        );
        assert_eq!((out[2].rule, out[2].level), ("pattern", Level::Error));
        assert_eq!(out[2].reason, "email must be a corporate address, got 'nope'");
        assert_eq!(v.check("email", &text("ab@corp.com"), today())[0].rule, "max_length");
    }

    #[test]
    fn secrets_are_redacted() {
        let v = Validator::compile(&[
            check(Rule::MinLength { min: 12 }),
            check(Rule::Pattern {
                pattern: "[0-9]".into(),
            }),
            Check {
                message: Some("{field}={value}".into()),
                ..check(Rule::Enum {
                    values: vec!["x".into()],
                })
            },
        ])
        .unwrap();
        for field in [
            "password",
            "user_password_hash",
            "PasswordHash",
            "client_secret",
            "api_token",
            "apiKey",
            "pin_hash",
        ] {
            let reasons = run(&v, field, text("hunter"));
            assert_eq!(reasons.len(), 3, "{field}");
            for r in &reasons {
                assert!(!r.contains("hunter"), "{field}: {r}");
                assert!(r.contains("<redacted>"), "{field}: {r}");
                // The length of a secret stays out too.
                assert!(!r.contains("(6)"), "{field}: {r}");
            }
            assert_eq!(reasons[0], format!("{field} <redacted> is shorter than 12 characters"));
            assert_eq!(reasons[2], format!("{field}=<redacted>"));
        }
        assert_eq!(
            run(&v, "username", text("hunter"))[0],
            "username 'hunter' is shorter than 12 characters (6)"
        );
        assert!(!is_secret_field("display_name"));
    }

    #[test]
    fn passing_values_allocate_nothing() {
        let v = Validator::compile(&[
            check(Rule::Required),
            check(Rule::MaxLength { max: 100 }),
            check(Rule::Email),
            check(Rule::NotInFuture),
        ])
        .unwrap();
        let out = v.check("email", &text("a@example.com"), today());
        assert_eq!(out.len(), 1); // only not_in_future fails on an email
        let ok = Validator::compile(&[check(Rule::Required), check(Rule::Email)]).unwrap();
        assert_eq!(ok.check("email", &text("a@example.com"), today()).capacity(), 0);
    }

    #[test]
    fn rule_names() {
        assert_eq!(Rule::MaxLength { max: 1 }.name(), "max_length");
        assert_eq!(Rule::NotInFuture.name(), "not_in_future");
        assert_eq!(Rule::ReferenceExists { map: "m".into() }.name(), "reference_exists");
    }
}
