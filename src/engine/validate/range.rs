//! Bounds: `date_range` and `not_in_future` on ISO dates, `range` on numbers. The bounds are
//! parsed and checked for consistency when a step is compiled, not on every row.

use chrono::NaiveDate;

use super::{Fail, Test};
use crate::engine::transform::fast_iso_date;
use crate::engine::value::Value;

pub(super) fn compile_date_range(name: &str, min: &Option<String>, max: &Option<String>) -> Result<Test, String> {
    let date_bound = |which: &str, s: &Option<String>| match s {
        None => Ok(None),
        Some(s) => match fast_iso_date(s) {
            Some(d) => Ok(Some(d)),
            None => Err(format!("{name} {which} '{s}' is not an ISO date (YYYY-MM-DD)")),
        },
    };
    let (lo, hi) = (date_bound("min", min)?, date_bound("max", max)?);
    if let (Some(lo), Some(hi)) = (lo, hi)
        && lo > hi
    {
        return Err(format!("date_range min {lo} is after max {hi}"));
    }
    Ok(Test::DateRange(lo, hi))
}

pub(super) fn compile_range(min: Option<f64>, max: Option<f64>) -> Result<Test, String> {
    if min.is_some_and(f64::is_nan) || max.is_some_and(f64::is_nan) {
        return Err("range bounds must be numbers".into());
    }
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        return Err(format!("range min {lo} is above max {hi}"));
    }
    Ok(Test::Range(min, max))
}

pub(super) fn not_in_future(v: &Value, today: NaiveDate) -> Option<Fail> {
    let Some(d) = v.as_str().and_then(iso_date) else {
        return Some(Fail::NotDate);
    };
    (d > today).then_some(Fail::InFuture)
}

pub(super) fn date_within(v: &Value, lo: Option<NaiveDate>, hi: Option<NaiveDate>) -> Option<Fail> {
    let Some(d) = v.as_str().and_then(iso_date) else {
        return Some(Fail::NotDate);
    };
    match (lo, hi) {
        (Some(lo), _) if d < lo => Some(Fail::Before(lo)),
        (_, Some(hi)) if d > hi => Some(Fail::After(hi)),
        _ => None,
    }
}

/// Integers, reals and numeric text; anything else (or NaN) is not a number.
pub(super) fn number_within(v: &Value, lo: Option<f64>, hi: Option<f64>) -> Option<Fail> {
    let x = match v {
        Value::Int(i) => *i as f64,
        Value::Real(f) => *f,
        Value::Text(s) => s.trim().parse::<f64>().unwrap_or(f64::NAN),
        _ => f64::NAN,
    };
    match (lo, hi) {
        _ if !x.is_finite() => Some(Fail::NotNumber),
        (Some(lo), _) if x < lo => Some(Fail::Below(lo)),
        (_, Some(hi)) if x > hi => Some(Fail::Above(hi)),
        _ => None,
    }
}

/// `YYYY-MM-DD`, or the date part of `YYYY-MM-DDTHH:MM:SS...` / `YYYY-MM-DD HH:MM:SS...`.
fn iso_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    match s.as_bytes().get(10) {
        None | Some(b'T' | b' ') => fast_iso_date(s.get(..10)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::validate::Rule;
    use crate::engine::validate::testing::{fails, passes, text, validator};

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
}
