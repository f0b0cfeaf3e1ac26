//! What a column's values look like: counted value by value as the file streams past, so a
//! preview of a 10M-row file keeps a few counters per column, not the column.

use crate::engine::transform::{PhoneSpec, Transform};
use crate::engine::value::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The date formats a preview recognises, in the order they are tried (chrono patterns, as the
/// `date` transform takes them). Slashes are read month first, as the scenario's exports are;
/// a day-first file is not guessed at.
pub const DATE_FORMATS: [&str; 6] = [
    "%Y-%m-%d",
    "%m/%d/%Y",
    "%Y/%m/%d",
    "%d.%m.%Y",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
];

/// Share of a column's non-blank values that must fit a type for the column to get it: an
/// export with a few bad dates is still a date column (the bad ones become rejects).
pub const TYPE_THRESHOLD: f64 = 0.9;

/// Distinct values kept per column to recognise small vocabularies (gender codes).
const VOCABULARY: usize = 24;

/// The type a preview infers for a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Integer,
    Decimal,
    Date,
    Email,
    Phone,
    Boolean,
    Text,
    /// Every value is blank.
    Empty,
}

impl ColumnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Integer => "integer",
            ColumnType::Decimal => "decimal",
            ColumnType::Date => "date",
            ColumnType::Email => "email",
            ColumnType::Phone => "phone",
            ColumnType::Boolean => "boolean",
            ColumnType::Text => "text",
            ColumnType::Empty => "empty",
        }
    }
}

/// Counters for one column.
#[derive(Debug, Clone, Default)]
pub struct ColumnStats {
    pub blank: u64,
    pub non_blank: u64,
    integer: u64,
    decimal: u64,
    boolean: u64,
    email: u64,
    phone: u64,
    date: u64,
    /// Date format -> values read by it (the first format in `DATE_FORMATS` that reads it).
    formats: BTreeMap<&'static str, u64>,
    /// Lower-cased, trimmed distinct values, until there are more than `VOCABULARY`.
    vocabulary: BTreeMap<String, u64>,
    vocabulary_overflow: bool,
}

impl ColumnStats {
    pub fn add(&mut self, v: &Value) {
        if v.is_blank() {
            self.blank += 1;
            return;
        }
        self.non_blank += 1;
        match v {
            Value::Int(_) => {
                self.integer += 1;
                self.decimal += 1;
            }
            Value::Real(_) => self.decimal += 1,
            Value::Bool(_) => self.boolean += 1,
            Value::Text(t) => self.add_text(t.trim()),
            _ => {}
        }
        if !self.vocabulary_overflow {
            let key = v.to_text().unwrap_or_default().trim().to_lowercase();
            let n = self.vocabulary.len();
            match self.vocabulary.get_mut(&key) {
                Some(c) => *c += 1,
                None if n < VOCABULARY => {
                    self.vocabulary.insert(key, 1);
                }
                None => {
                    self.vocabulary_overflow = true;
                    self.vocabulary.clear();
                }
            }
        }
    }

    fn add_text(&mut self, t: &str) {
        if t.parse::<i64>().is_ok() {
            self.integer += 1;
            self.decimal += 1;
            return;
        }
        if t.parse::<f64>().is_ok_and(f64::is_finite) {
            self.decimal += 1;
            return;
        }
        if matches!(t.to_ascii_lowercase().as_str(), "true" | "false" | "yes" | "no") {
            self.boolean += 1;
            return;
        }
        if let Some(f) = date_format(t) {
            self.date += 1;
            *self.formats.entry(f).or_insert(0) += 1;
            return;
        }
        if is_email(t) {
            self.email += 1;
            return;
        }
        if looks_like_phone(t) {
            self.phone += 1;
        }
    }

    /// The first type (most specific first) that at least `TYPE_THRESHOLD` of the non-blank
    /// values fit.
    pub fn column_type(&self) -> ColumnType {
        if self.non_blank == 0 {
            return ColumnType::Empty;
        }
        let fits = |n: u64| n as f64 >= self.non_blank as f64 * TYPE_THRESHOLD;
        if fits(self.boolean) {
            ColumnType::Boolean
        } else if fits(self.integer) {
            ColumnType::Integer
        } else if fits(self.decimal) {
            ColumnType::Decimal
        } else if fits(self.date) {
            ColumnType::Date
        } else if fits(self.email) {
            ColumnType::Email
        } else if fits(self.phone) {
            ColumnType::Phone
        } else {
            ColumnType::Text
        }
    }

    /// The date formats seen, most used first.
    pub fn date_formats(&self) -> Vec<String> {
        let mut f: Vec<(&str, u64)> = self.formats.iter().map(|(k, v)| (*k, *v)).collect();
        f.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        f.into_iter().map(|(k, _)| k.to_string()).collect()
    }

    /// Share of the column's values (out of `rows`) that fit its type, for the report.
    pub fn fit_rate(&self) -> f64 {
        let n = match self.column_type() {
            ColumnType::Boolean => self.boolean,
            ColumnType::Integer => self.integer,
            ColumnType::Decimal => self.decimal,
            ColumnType::Date => self.date,
            ColumnType::Email => self.email,
            ColumnType::Phone => self.phone,
            ColumnType::Text | ColumnType::Empty => self.non_blank,
        };
        if self.non_blank == 0 {
            1.0
        } else {
            n as f64 / self.non_blank as f64
        }
    }

    /// Whether the column holds only gender spellings (`M`, `female`, `o`, ...).
    pub fn gender_like(&self) -> bool {
        const GENDER: [&str; 12] = [
            "m", "f", "o", "u", "male", "female", "other", "unknown", "man", "woman", "x", "nb",
        ];
        !self.vocabulary_overflow
            && self.non_blank > 0
            && self
                .vocabulary
                .keys()
                .filter(|v| GENDER.contains(&v.as_str()))
                .map(|k| self.vocabulary[k])
                .sum::<u64>() as f64
                >= self.non_blank as f64 * TYPE_THRESHOLD
    }
}

/// The first format of `DATE_FORMATS` that reads `t` as a real date.
pub fn date_format(t: &str) -> Option<&'static str> {
    // Cheap filter: dates have digits and a separator.
    if t.len() < 6 || t.len() > 26 || !t.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    DATE_FORMATS.iter().copied().find(|f| {
        if f.contains("%H") {
            chrono::NaiveDateTime::parse_from_str(t, f).is_ok()
        } else {
            chrono::NaiveDate::parse_from_str(t, f).is_ok()
        }
    })
}

/// The scenario's rule: one `@`, no spaces, a dot in the domain.
pub fn is_email(t: &str) -> bool {
    let mut parts = t.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(local), Some(domain), None) => {
            !local.is_empty()
                && !t.contains(char::is_whitespace)
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        _ => false,
    }
}

/// Phone-shaped text (digits with the punctuation people write numbers with) that the `phone`
/// transform reads as a valid number, US by default.
pub fn looks_like_phone(t: &str) -> bool {
    let digits = t.chars().filter(char::is_ascii_digit).count();
    let shaped = t
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().x".contains(c) || c == '.');
    if !shaped || !(7..=16).contains(&digits) {
        return false;
    }
    Transform::Phone(PhoneSpec::default())
        .apply(Value::Text(t.to_string()))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(values: &[&str]) -> ColumnStats {
        let mut s = ColumnStats::default();
        for v in values {
            s.add(&Value::Text((*v).to_string()));
        }
        s
    }

    #[test]
    fn types_by_their_values() {
        assert_eq!(stats(&["1", "22", ""]).column_type(), ColumnType::Integer);
        assert_eq!(stats(&["1.5", "2"]).column_type(), ColumnType::Decimal);
        assert_eq!(stats(&["yes", "No"]).column_type(), ColumnType::Boolean);
        assert_eq!(stats(&["a@b.org", "x+tag@c.co"]).column_type(), ColumnType::Email);
        assert_eq!(
            stats(&["(415) 555-2671", "415-555-2671", "+1 212 555 0123"]).column_type(),
            ColumnType::Phone
        );
        assert_eq!(stats(&["Ann", "Bo"]).column_type(), ColumnType::Text);
        assert_eq!(stats(&["", " "]).column_type(), ColumnType::Empty);
    }

    #[test]
    fn dates_keep_the_formats_seen() {
        let s = stats(&["1985-03-14", "3/4/1990", "12/31/1970", "2001-01-01", "2002-02-02"]);
        assert_eq!(s.column_type(), ColumnType::Date);
        assert_eq!(s.date_formats(), vec!["%Y-%m-%d", "%m/%d/%Y"]);
        // An impossible date is not a date; one in twenty does not change the type.
        let mut many = vec!["1985-03-14"; 19];
        many.push("1985-02-30");
        assert_eq!(stats(&many).column_type(), ColumnType::Date);
    }

    #[test]
    fn gender_codes_are_recognised() {
        assert!(stats(&["M", "f", "Female", "male", "O", ""]).gender_like());
        assert!(!stats(&["Ann", "Bo", "M"]).gender_like());
    }
}
