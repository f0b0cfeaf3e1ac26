//! Per-field validation rules declared in a step's `step.toml`.
//!
//! A step's checks are compiled once into a [`Validator`] (regexes built, dates parsed, enum
//! values sorted) and then run for every row. A passing value costs no allocation: the
//! violation list stays an empty `Vec` and reasons are only formatted for failures.
//!
//! `today` is passed in rather than read from the clock, so a run judges every row against the
//! same day and tests are stable.
//!
//! This module holds the declared form ([`Rule`], [`Check`], [`Level`]), the compiled
//! [`Validator`] and the dispatch over its tests; each kind of rule lives in its own file
//! (`text`, `email`, `range`), and `report` words a failure into a [`Violation`].

mod email;
mod range;
mod report;
mod text;

use chrono::NaiveDate;
use regex::Regex;
use serde::{Deserialize, Serialize};

pub use report::is_secret_field;

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
    let test = match &c.rule {
        Rule::Required => Test::Required,
        Rule::MaxLength { max } => Test::MaxLength(*max),
        Rule::MinLength { min } => Test::MinLength(*min),
        Rule::Pattern { pattern } => text::compile_pattern(pattern)?,
        Rule::Email => Test::Email,
        Rule::Enum { values } => text::compile_enum(values)?,
        Rule::DateRange { min, max } => range::compile_date_range(name, min, max)?,
        Rule::NotInFuture => Test::NotInFuture,
        Rule::Range { min, max } => range::compile_range(*min, *max)?,
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
            Test::NotInFuture => range::not_in_future(v, today).map(whole),
            Test::DateRange(lo, hi) => range::date_within(v, *lo, *hi).map(whole),
            Test::Range(lo, hi) => range::number_within(v, *lo, *hi).map(whole),
        }
    }
}

/// Helpers the unit tests of every rule file share.
#[cfg(test)]
mod testing {
    use super::*;

    pub(super) fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, 1).unwrap()
    }

    pub(super) fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    pub(super) fn check(rule: Rule) -> Check {
        Check {
            rule,
            level: Level::Error,
            null_on_warning: false,
            message: None,
        }
    }

    pub(super) fn validator(rule: Rule) -> Validator {
        Validator::compile(&[check(rule)]).unwrap()
    }

    /// The reasons of all violations.
    pub(super) fn run(v: &Validator, field: &str, value: Value) -> Vec<String> {
        v.check(field, &value, today()).into_iter().map(|x| x.reason).collect()
    }

    pub(super) fn passes(v: &Validator, value: Value) {
        let r = run(v, "f", value.clone());
        assert!(r.is_empty(), "{value:?}: {r:?}");
    }

    pub(super) fn fails(v: &Validator, field: &str, value: Value) -> String {
        let mut r = run(v, field, value.clone());
        assert_eq!(r.len(), 1, "{value:?}: {r:?}");
        r.remove(0)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{check, fails, passes, text, today, validator};
    use super::*;

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
    fn reference_exists_is_left_to_the_engine() {
        let v = validator(Rule::ReferenceExists { map: "users".into() });
        passes(&v, text("no-such-user"));
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
