//! Suggested mappings: which target column each file column most likely fills, how sure that
//! is, and the transforms (and checks) that would get its values there.
//!
//! Names are compared as word lists (camelCase, snake_case, spaces and punctuation all split
//! into words, `MRN#` is `mrn`), through a table of synonyms for the columns people name a
//! dozen ways; the values then confirm or contradict (a column of dates into a date column).
//! Each target column is used once: the best-scoring pairs are taken first.

use super::{ColumnPreview, ColumnType, Preview};
use crate::engine::transform::{DateSpec, GenderSpec, OnError, PhoneSpec, Transform};
use crate::engine::validate::{Check, Level, Rule};
use serde::{Deserialize, Serialize};

/// Below this a pair is not suggested: the operator chooses.
pub const MIN_CONFIDENCE: f64 = 0.5;

/// A column of the target table, as the target reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetColumn {
    pub name: String,
    /// The type as the target names it (`TEXT`, `date`, `uuid`, ...), lower-cased.
    #[serde(rename = "type")]
    pub sql_type: String,
}

/// One file column and where it would go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub column: String,
    /// None: no target column fits well enough; the operator decides (or leaves it out).
    pub target: Option<String>,
    /// 0..1.
    pub confidence: f64,
    pub transforms: Vec<Transform>,
    /// Checks worth having (a birth date not in the future, a valid email as a warning).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validate: Vec<Check>,
    /// Why, in a few words ("synonym of date_of_birth; dates").
    pub why: String,
}

/// What a column name means, for names that come in many spellings. Each concept lists its
/// spellings as word lists joined by `_`.
const CONCEPTS: &[(&str, &[&str])] = &[
    (
        "date_of_birth",
        &[
            "date_of_birth",
            "dob",
            "birth_date",
            "birthdate",
            "birthday",
            "born",
            "date_birth",
            "birth",
        ],
    ),
    (
        "zip",
        &[
            "zip",
            "zipcode",
            "zip_code",
            "postal_code",
            "postcode",
            "post_code",
            "postal",
        ],
    ),
    ("gender", &["gender", "sex"]),
    (
        "mrn",
        &[
            "mrn",
            "medical_record_number",
            "medical_record",
            "record_number",
            "mr_number",
        ],
    ),
    (
        "phone",
        &[
            "phone",
            "phone_number",
            "tel",
            "telephone",
            "mobile",
            "mobile_number",
            "cell",
            "cell_phone",
            "phone_no",
        ],
    ),
    (
        "first_name",
        &["first_name", "first", "firstname", "given_name", "given", "forename"],
    ),
    (
        "last_name",
        &["last_name", "last", "lastname", "family_name", "surname", "family"],
    ),
    ("email", &["email", "e_mail", "email_address", "mail", "e_mail_address"]),
    (
        "address",
        &[
            "address",
            "address_line",
            "address1",
            "address_line1",
            "line1",
            "street",
        ],
    ),
    ("state", &["state", "province", "region"]),
    ("country", &["country", "country_code"]),
    ("external_id", &["external_id", "legacy_id", "ext_id", "source_id"]),
];

/// Words of a column name: `dateOfBirth` → date, of, birth; `MRN#` → mrn; `Email Address` →
/// email, address; `zipCode` → zip, code.
pub fn words(name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        // A new word at a lower→upper step (dateOf) and at the last capital of a run before
        // a lower-case letter (MRNNumber → MRN, Number).
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1).copied();
        let boundary = c.is_uppercase()
            && prev.is_some_and(|p| {
                p.is_lowercase() || p.is_ascii_digit() || (p.is_uppercase() && next.is_some_and(char::is_lowercase))
            });
        if boundary && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The concept a word list spells, if any.
fn concept_of(words: &[String]) -> Option<&'static str> {
    let joined = words.join("_");
    CONCEPTS
        .iter()
        .find(|(_, spellings)| spellings.contains(&joined.as_str()))
        .map(|(c, _)| *c)
}

/// The concept of the whole name, else of its longest run of words that spells one
/// (`patient_first_name` → first_name).
fn concept_within(words: &[String]) -> Option<(&'static str, bool)> {
    if let Some(c) = concept_of(words) {
        return Some((c, true));
    }
    for len in (1..words.len()).rev() {
        for start in 0..=words.len() - len {
            if let Some(c) = concept_of(&words[start..start + len]) {
                return Some((c, false));
            }
        }
    }
    None
}

/// How well a file column's name matches a target column's name (0..1), and why.
pub fn name_score(column: &str, target: &str) -> (f64, String) {
    let (cw, tw) = (words(column), words(target));
    if cw.is_empty() || tw.is_empty() {
        return (0.0, String::new());
    }
    if cw == tw {
        return (1.0, "same name".into());
    }
    let tc = concept_within(&tw).filter(|(_, whole)| *whole).map(|(c, _)| c);
    if let (Some(t), Some((c, whole))) = (tc, concept_within(&cw))
        && c == t
    {
        return if whole {
            (0.9, format!("synonym of {target}"))
        } else {
            (0.8, format!("contains a synonym of {target}"))
        };
    }
    // Shared words (Dice): `order_number` and `orderNumber` are caught above; this is for
    // `test_type` vs `type_of_test`.
    let shared = cw.iter().filter(|w| tw.contains(w)).count();
    let dice = 2.0 * shared as f64 / (cw.len() + tw.len()) as f64;
    (
        dice * 0.75,
        if shared > 0 {
            "shares words".into()
        } else {
            String::new()
        },
    )
}

/// Whether the values fit the target column: +0.1 when they confirm, -0.3 when they
/// contradict, 0 when they say nothing.
fn value_score(col: &ColumnPreview, target: &TargetColumn) -> f64 {
    let t = target.sql_type.as_str();
    let concept = concept_within(&words(&target.name)).filter(|(_, w)| *w).map(|(c, _)| c);
    let date_target = t.contains("date") || t.contains("time") || concept == Some("date_of_birth");
    match col.kind {
        ColumnType::Date if date_target => 0.1,
        ColumnType::Date => -0.3,
        _ if date_target && col.kind != ColumnType::Empty => -0.3,
        ColumnType::Email if concept == Some("email") => 0.1,
        ColumnType::Phone if concept == Some("phone") => 0.1,
        ColumnType::Email | ColumnType::Phone if concept.is_some_and(|c| c == "email" || c == "phone") => -0.3,
        _ if col.gender_like && concept == Some("gender") => 0.1,
        _ => 0.0,
    }
}

/// One suggestion per file column, in file order; each target column used at most once.
pub fn suggest(preview: &Preview, targets: &[TargetColumn]) -> Vec<Suggestion> {
    let mut pairs: Vec<(f64, usize, usize, String)> = Vec::new();
    for (ci, col) in preview.columns.iter().enumerate() {
        for (ti, t) in targets.iter().enumerate() {
            let (name, why) = name_score(&col.name, &t.name);
            if name <= 0.0 {
                continue;
            }
            let score = (name + value_score(col, t)).clamp(0.0, 1.0);
            if score >= MIN_CONFIDENCE {
                pairs.push((score, ci, ti, why));
            }
        }
    }
    // Best first; ties in file order, then table order, so the result does not depend on
    // the order the target listed its columns in beyond that.
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut chosen: Vec<Option<(f64, usize, String)>> = vec![None; preview.columns.len()];
    let mut used = vec![false; targets.len()];
    for (score, ci, ti, why) in pairs {
        if chosen[ci].is_none() && !used[ti] {
            used[ti] = true;
            chosen[ci] = Some((score, ti, why));
        }
    }
    preview
        .columns
        .iter()
        .zip(chosen)
        .map(|(col, pick)| match pick {
            Some((score, ti, why)) => {
                let target = &targets[ti];
                let (transforms, validate, what) = transforms_for(col, Some(target));
                Suggestion {
                    column: col.name.clone(),
                    target: Some(target.name.clone()),
                    confidence: (score * 100.0).round() / 100.0,
                    transforms,
                    validate,
                    why: [why, what]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join("; "),
                }
            }
            None => {
                let (transforms, validate, what) = transforms_for(col, None);
                Suggestion {
                    column: col.name.clone(),
                    target: None,
                    confidence: 0.0,
                    transforms,
                    validate,
                    why: if what.is_empty() {
                        "no target column fits".into()
                    } else {
                        format!("no target column fits; {what}")
                    },
                }
            }
        })
        .collect()
}

/// The transforms (and checks) for a column's values, by what the values are and where they
/// go, with a word on why.
pub fn transforms_for(col: &ColumnPreview, target: Option<&TargetColumn>) -> (Vec<Transform>, Vec<Check>, String) {
    let concept = target.and_then(|t| concept_within(&words(&t.name)).filter(|(_, w)| *w).map(|(c, _)| c));
    let birth = concept == Some("date_of_birth")
        || target.is_some_and(|t| words(&t.name).iter().any(|w| w == "birth" || w == "dob"));
    let check = |rule: Rule, level: Level, null_on_warning: bool| Check {
        rule,
        level,
        null_on_warning,
        message: None,
    };
    if col.gender_like || concept == Some("gender") {
        return (
            vec![Transform::GenderNormalize(GenderSpec::default())],
            Vec::new(),
            "gender spellings".into(),
        );
    }
    match col.kind {
        ColumnType::Date => {
            let formats = if col.formats.is_empty() {
                vec!["%Y-%m-%d".to_string()]
            } else {
                col.formats.clone()
            };
            // `..default()` keeps options added to `date` later (issue 12: excel_serial) at theirs.
            #[allow(clippy::needless_update)]
            let spec = DateSpec {
                formats,
                on_error: OnError::Reject,
                ..DateSpec::default()
            };
            let validate = if birth {
                vec![check(Rule::NotInFuture, Level::Error, false)]
            } else {
                Vec::new()
            };
            let what = format!("dates ({})", col.formats.join(", "));
            (
                vec![Transform::Trim, Transform::EmptyToNull, Transform::Date(spec)],
                validate,
                what,
            )
        }
        ColumnType::Phone => (
            vec![
                Transform::Trim,
                Transform::EmptyToNull,
                Transform::Phone(PhoneSpec {
                    on_error: OnError::NullWarn,
                    ..PhoneSpec::default()
                }),
            ],
            Vec::new(),
            "phone numbers".into(),
        ),
        ColumnType::Email => (
            vec![Transform::Trim, Transform::Lower, Transform::EmptyToNull],
            vec![check(Rule::Email, Level::Warning, true)],
            "email addresses".into(),
        ),
        ColumnType::Boolean => (vec![Transform::Boolean], Vec::new(), "yes/no values".into()),
        ColumnType::Integer | ColumnType::Decimal => (
            vec![Transform::Trim, Transform::EmptyToNull],
            Vec::new(),
            "numbers".into(),
        ),
        ColumnType::Text | ColumnType::Empty => {
            let mut t = vec![Transform::Trim];
            // A medical record number is a key: compared upper-cased.
            if concept == Some("mrn") {
                t.push(Transform::Upper);
            }
            t.push(Transform::EmptyToNull);
            (t, Vec::new(), String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_every_spelling() {
        assert_eq!(words("dateOfBirth"), vec!["date", "of", "birth"]);
        assert_eq!(words("MRN#"), vec!["mrn"]);
        assert_eq!(words("Email Address"), vec!["email", "address"]);
        assert_eq!(words("patient_first_name"), vec!["patient", "first", "name"]);
        assert_eq!(words("zipCode"), vec!["zip", "code"]);
        assert_eq!(words("MRNNumber"), vec!["mrn", "number"]);
        assert_eq!(words("e-mail"), vec!["e", "mail"]);
    }

    #[test]
    fn synonyms_match_and_strangers_do_not() {
        for (col, target) in [
            ("dob", "date_of_birth"),
            ("birth_date", "date_of_birth"),
            ("dateOfBirth", "date_of_birth"),
            ("date of birth", "date_of_birth"),
            ("zipCode", "postal_code"),
            ("sex", "gender"),
            ("MRN#", "mrn"),
            ("medical record number", "mrn"),
            ("tel", "phone"),
            ("given name", "first_name"),
            ("surname", "last_name"),
            ("e-mail", "email"),
            ("patient_first_name", "first_name"),
        ] {
            let (s, _) = name_score(col, target);
            assert!(s >= MIN_CONFIDENCE, "{col} -> {target}: {s}");
        }
        assert!(name_score("notes", "first_name").0 < MIN_CONFIDENCE);
        assert!(name_score("patient_first_name", "last_name").0 < MIN_CONFIDENCE);
    }
}

/// A transform as `step.toml` writes it, inline: a bare name when its options are the defaults
/// (`"gender_normalize"`), else a one-key table (`{ date = { formats = [...] } }`).
pub fn transform_toml(t: &Transform) -> String {
    match t {
        Transform::GenderNormalize(g) if *g == GenderSpec::default() => "\"gender_normalize\"".into(),
        Transform::Phone(p) if *p == PhoneSpec::default() => "\"phone\"".into(),
        other => match toml::Value::try_from(other) {
            Ok(v) => v.to_string(),
            Err(e) => format!("\"(cannot write {}: {e})\"", other.name()),
        },
    }
}

/// A transform list as `step.toml` writes it: `["trim", { date = { ... } }]`.
pub fn transforms_toml(ts: &[Transform]) -> String {
    format!("[{}]", ts.iter().map(transform_toml).collect::<Vec<_>>().join(", "))
}

/// Read a transform list as typed by an operator, in `step.toml`'s syntax (the brackets may
/// be left out: `trim, lower`); the error is the TOML parser's.
pub fn parse_transforms(text: &str) -> Result<Vec<Transform>, String> {
    #[derive(Deserialize)]
    struct List {
        t: Vec<Transform>,
    }
    let trimmed = text.trim();
    let body = if trimmed.starts_with('[') {
        trimmed.to_string()
    } else {
        // Bare words are names: `trim, lower` is `["trim", "lower"]`.
        let items: Vec<String> = split_top_level(trimmed)
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.starts_with('{') || s.starts_with('"') {
                    s
                } else {
                    format!("\"{s}\"")
                }
            })
            .collect();
        format!("[{}]", items.join(", "))
    };
    toml::from_str::<List>(&format!("t = {body}"))
        .map(|l| l.t)
        .map_err(|e| e.message().to_string())
}

/// Split on commas outside braces, brackets and quotes.
fn split_top_level(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quoted) = (Vec::new(), String::new(), 0i32, false);
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' | '[' if !quoted => depth += 1,
            '}' | ']' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_string());
    out
}

#[cfg(test)]
mod toml_tests {
    use super::*;

    #[test]
    #[allow(clippy::needless_update)]
    fn transforms_round_trip_through_their_text() {
        let ts = vec![
            Transform::Trim,
            Transform::GenderNormalize(GenderSpec::default()),
            Transform::Date(DateSpec {
                formats: vec!["%m/%d/%Y".into()],
                ..DateSpec::default()
            }),
        ];
        let text = transforms_toml(&ts);
        assert!(text.starts_with("[\"trim\", \"gender_normalize\", { date = "), "{text}");
        assert_eq!(parse_transforms(&text).unwrap(), ts);
        assert_eq!(
            parse_transforms("trim, lower").unwrap(),
            vec![Transform::Trim, Transform::Lower]
        );
        assert!(parse_transforms("trim, nonsense").is_err());
    }
}

/// A transform in a few characters, for tables: its name, and a date's formats.
pub fn transform_label(t: &Transform) -> String {
    match t {
        Transform::Date(d) | Transform::Datetime(d) => format!("{}({})", t.name(), d.formats.join(" ")),
        Transform::Phone(p) => format!("phone({})", p.country),
        other => other.name().to_string(),
    }
}
