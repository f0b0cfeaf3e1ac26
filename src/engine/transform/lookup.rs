//! `lookup`'s options. Two forms: through the engine's ID map (`{ map = "users" }`: a legacy
//! key becomes the new id another step recorded), or through target columns (`{ table =
//! "patients", column = "id", by = [...] }`: a natural key such as an MRN or an email becomes
//! the id of the one target row that has it, alternatives tried in order). The engine resolves
//! both a batch at a time (`data::pipeline`); this file only reads and checks the options, and
//! words the reasons so a step's rejects read the same wherever they are decided.

use serde::{Deserialize, Serialize};

use super::OnError;
use super::reason::Quoted;

/// Options of `lookup`. Read through [`RawLookup`] so that each wrong combination of keys
/// gets a sentence of its own instead of serde's "did not match any variant".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, try_from = "RawLookup")]
pub enum LookupSpec {
    Map(MapLookup),
    Table(TableLookup),
}

/// `{ map = "users", on_missing = "reject" }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapLookup {
    /// Name of the ID map (usually the table whose keys it holds, e.g. `users`).
    pub map: String,
    /// What the engine does when the legacy key has no entry in the map.
    pub on_missing: OnError,
}

/// `{ table = "patients", column = "id", noun = "patient", waits_for = "patients", by = [...] }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableLookup {
    /// The target table searched.
    pub table: String,
    /// The column of the one matching row that becomes the value (its id).
    pub column: String,
    /// Alternatives, tried in order until one finds rows.
    pub by: Vec<LookupBy>,
    /// What reasons call a row of `table` (`no patient 'x'`); default: the table's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noun: Option<String>,
    /// The source name (another step's `[source] name`) whose rejected rows this lookup waits
    /// for when nothing in the target matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<String>,
    /// What happens when no alternative matches and nothing waits (an ambiguous match always
    /// rejects).
    pub on_missing: OnError,
}

/// One alternative of a table lookup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LookupBy {
    /// The target column compared with the (trimmed, normalized) input.
    pub column: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalize>,
    /// The column of a `waits_for` source row that holds this key, compared the same way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_column: Option<String>,
}

/// How an input is brought to the stored form before it is compared (it is always trimmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    Upper,
    Lower,
}

/// Trim, then normalize.
pub fn normalized(input: &str, normalize: Option<Normalize>) -> String {
    let t = input.trim();
    match normalize {
        Some(Normalize::Upper) => t.to_uppercase(),
        Some(Normalize::Lower) => t.to_lowercase(),
        None => t.to_string(),
    }
}

impl TableLookup {
    /// The singular word for a row of the table.
    pub fn noun(&self) -> &str {
        self.noun.as_deref().unwrap_or(&self.table)
    }

    /// The plural: the noun with an `s`, unless it already ends in one (a table name).
    pub fn nouns(&self) -> String {
        let n = self.noun();
        if n.ends_with('s') {
            n.to_string()
        } else {
            format!("{n}s")
        }
    }

    /// `ambiguous: 'a@x.org' matches 2 patients by email`.
    pub fn ambiguous_reason(&self, input: &str, count: usize, by: &str) -> String {
        format!("ambiguous: {} matches {count} {} by {by}", Quoted(input), self.nouns())
    }

    /// `no patient 'MRN-7'`.
    pub fn missing_reason(&self, input: &str) -> String {
        format!("no {} {}", self.noun(), Quoted(input))
    }
}

/// Every key either form may have, checked into a [`LookupSpec`] with a readable error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLookup {
    map: Option<String>,
    on_missing: Option<OnError>,
    table: Option<String>,
    column: Option<String>,
    by: Option<Vec<RawBy>>,
    noun: Option<String>,
    waits_for: Option<String>,
}

/// A `by` entry: a column name, or a table `{ column, normalize, source_column }`. Read as a
/// plain value and checked by hand, so a wrong entry says what is wrong with it.
type RawBy = serde_json::Value;

fn blank(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| s.trim().is_empty())
}

impl TryFrom<RawLookup> for LookupSpec {
    type Error = String;

    fn try_from(r: RawLookup) -> Result<LookupSpec, String> {
        match (r.map, r.table) {
            (Some(_), Some(_)) => Err(
                "lookup takes either map (through the ID map) or table (through target columns), not both".into(),
            ),
            (None, None) => Err(
                "lookup needs map = \"...\" (through the ID map) or table = \"...\" with column and by (through target columns)"
                    .into(),
            ),
            (Some(map), None) => {
                let extra: Vec<&str> = [
                    ("column", r.column.is_some()),
                    ("by", r.by.is_some()),
                    ("noun", r.noun.is_some()),
                    ("waits_for", r.waits_for.is_some()),
                ]
                .into_iter()
                .filter_map(|(k, set)| set.then_some(k))
                .collect();
                if !extra.is_empty() {
                    return Err(format!(
                        "lookup through the ID map (map = \"{map}\") does not take {}: those belong to a lookup through a table",
                        extra.join(", ")
                    ));
                }
                if map.trim().is_empty() {
                    return Err("lookup map must name an ID map".into());
                }
                Ok(LookupSpec::Map(MapLookup {
                    map,
                    on_missing: r.on_missing.unwrap_or_default(),
                }))
            }
            (None, Some(table)) => {
                if table.trim().is_empty() {
                    return Err("lookup table must name a target table".into());
                }
                let column = match r.column {
                    Some(c) if !c.trim().is_empty() => c,
                    _ => {
                        return Err(format!(
                            "lookup through table \"{table}\" needs column = \"...\": the column of the matching row that becomes the value (e.g. \"id\")"
                        ));
                    }
                };
                let by = table_by(&table, r.by.unwrap_or_default())?;
                if blank(&r.noun) {
                    return Err("lookup noun must not be blank".into());
                }
                if blank(&r.waits_for) {
                    return Err("lookup waits_for must name a source (another step's [source] name)".into());
                }
                let waits_on = by.iter().any(|b| b.source_column.is_some());
                match (&r.waits_for, waits_on) {
                    (Some(w), false) => {
                        return Err(format!(
                            "lookup waits_for = \"{w}\" needs source_column on at least one alternative of by: the column of a {w} row that holds the key"
                        ));
                    }
                    (None, true) => {
                        return Err(
                            "lookup by: source_column needs waits_for = \"...\": the source whose rejected rows hold that column"
                                .into(),
                        );
                    }
                    _ => {}
                }
                Ok(LookupSpec::Table(TableLookup {
                    table,
                    column,
                    by,
                    noun: r.noun,
                    waits_for: r.waits_for,
                    on_missing: r.on_missing.unwrap_or_default(),
                }))
            }
        }
    }
}

fn table_by(table: &str, raw: Vec<RawBy>) -> Result<Vec<LookupBy>, String> {
    if raw.is_empty() {
        return Err(format!(
            "lookup through table \"{table}\" needs by = [...] with at least one alternative, e.g. by = [{{ column = \"mrn\", normalize = \"upper\" }}]"
        ));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, b) in raw.into_iter().enumerate() {
        let n = i + 1;
        let text = |v: Option<&serde_json::Value>, key: &str| -> Result<Option<String>, String> {
            match v {
                None => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!("lookup by alternative {n}: {key} must be text, not {other}")),
            }
        };
        let (column, normalize, source_column) = match &b {
            serde_json::Value::String(c) => (c.clone(), None, None),
            serde_json::Value::Object(m) => {
                if let Some(k) = m
                    .keys()
                    .find(|k| !["column", "normalize", "source_column"].contains(&k.as_str()))
                {
                    return Err(format!(
                        "lookup by alternative {n}: unknown key `{k}`; an alternative has column, normalize and source_column"
                    ));
                }
                (
                    text(m.get("column"), "column")?.unwrap_or_default(),
                    text(m.get("normalize"), "normalize")?,
                    text(m.get("source_column"), "source_column")?,
                )
            }
            other => {
                return Err(format!(
                    "lookup by alternative {n}: expected a column name or {{ column = \"...\", normalize = \"upper\" }}, not {other}"
                ));
            }
        };
        if column.trim().is_empty() {
            return Err(format!(
                "lookup by alternative {n}: column must name a column of {table}"
            ));
        }
        let normalize = match normalize.as_deref().map(str::trim) {
            None | Some("none") => None,
            Some("upper") => Some(Normalize::Upper),
            Some("lower") => Some(Normalize::Lower),
            Some(other) => {
                return Err(format!(
                    "lookup by alternative {n} ({column}): normalize = \"{other}\" is not known; use \"upper\", \"lower\" or \"none\""
                ));
            }
        };
        if let Some(sc) = &source_column
            && (sc.trim().is_empty() || sc.contains('"'))
        {
            return Err(format!(
                "lookup by alternative {n} ({column}): source_column must name a source column (without double quotes)"
            ));
        }
        out.push(LookupBy {
            column,
            normalize,
            source_column,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transform::Transform;

    #[derive(Deserialize)]
    struct Field {
        transforms: Vec<Transform>,
    }

    fn parse(lookup: &str) -> Result<LookupSpec, String> {
        let text = format!("transforms = [{{ lookup = {lookup} }}]");
        let f: Field = toml::from_str(&text).map_err(|e| e.to_string())?;
        match f.transforms.into_iter().next() {
            Some(Transform::Lookup(l)) => Ok(l),
            other => panic!("not a lookup: {other:?}"),
        }
    }

    fn parse_err(lookup: &str) -> String {
        match parse(lookup) {
            Ok(l) => panic!("{lookup} parsed as {l:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_contracts_table_form() {
        let l = parse(
            r#"{ table = "patients", column = "id", noun = "patient", waits_for = "patients", by = [
                { column = "mrn", normalize = "upper", source_column = "mrn" },
                { column = "email", normalize = "lower", source_column = "email" },
                { column = "external_id", source_column = "externalId" },
            ] }"#,
        )
        .unwrap();
        let LookupSpec::Table(t) = l else { panic!("{l:?}") };
        assert_eq!(t.table, "patients");
        assert_eq!(t.column, "id");
        assert_eq!(t.noun(), "patient");
        assert_eq!(t.nouns(), "patients");
        assert_eq!(t.waits_for.as_deref(), Some("patients"));
        assert_eq!(t.on_missing, OnError::Reject);
        assert_eq!(
            t.by,
            vec![
                LookupBy {
                    column: "mrn".into(),
                    normalize: Some(Normalize::Upper),
                    source_column: Some("mrn".into())
                },
                LookupBy {
                    column: "email".into(),
                    normalize: Some(Normalize::Lower),
                    source_column: Some("email".into())
                },
                LookupBy {
                    column: "external_id".into(),
                    normalize: None,
                    source_column: Some("externalId".into())
                },
            ]
        );
    }

    #[test]
    fn bare_column_names_and_the_map_form() {
        let LookupSpec::Table(t) = parse(r#"{ table = "patients", column = "id", by = ["mrn", "email"] }"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(t.by.len(), 2);
        assert_eq!(t.by[1].column, "email");
        assert_eq!(t.by[1].normalize, None);
        // Without a noun the table's name is used, and not pluralised twice.
        assert_eq!(t.missing_reason("x"), "no patients 'x'");
        assert_eq!(t.nouns(), "patients");
        assert_eq!(
            parse(r#"{ map = "users", on_missing = "null_warn" }"#).unwrap(),
            LookupSpec::Map(MapLookup {
                map: "users".into(),
                on_missing: OnError::NullWarn
            })
        );
    }

    #[test]
    fn reasons() {
        let LookupSpec::Table(t) =
            parse(r#"{ table = "patients", column = "id", noun = "patient", by = ["email"] }"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            t.ambiguous_reason("a@x.org", 2, "email"),
            "ambiguous: 'a@x.org' matches 2 patients by email"
        );
        assert_eq!(t.missing_reason("MRN-7"), "no patient 'MRN-7'");
    }

    #[test]
    fn normalizing_trims_first() {
        assert_eq!(normalized("  mrn-7 ", Some(Normalize::Upper)), "MRN-7");
        assert_eq!(normalized(" A@X.Org", Some(Normalize::Lower)), "a@x.org");
        assert_eq!(normalized(" Ext 1 ", None), "Ext 1");
    }

    #[test]
    fn wrong_combinations_are_named() {
        let e = parse_err(r#"{ table = "patients", column = "id", by = [] }"#);
        assert!(e.contains("needs by = [...] with at least one alternative"), "{e}");
        let e = parse_err(r#"{ table = "patients", column = "id" }"#);
        assert!(e.contains("needs by = [...]"), "{e}");
        let e = parse_err(r#"{ table = "patients", column = "id", by = [{ column = "mrn", normalize = "title" }] }"#);
        assert!(
            e.contains("normalize = \"title\" is not known; use \"upper\", \"lower\" or \"none\""),
            "{e}"
        );
        let e = parse_err(r#"{ table = "patients", map = "patients", column = "id", by = ["mrn"] }"#);
        assert!(e.contains("either map") && e.contains("not both"), "{e}");
        let e = parse_err(r#"{ map = "users", by = ["mrn"] }"#);
        assert!(e.contains("does not take by"), "{e}");
        let e = parse_err(r#"{ table = "patients", by = ["mrn"] }"#);
        assert!(e.contains("needs column"), "{e}");
        let e = parse_err(r#"{ on_missing = "reject" }"#);
        assert!(e.contains("needs map") && e.contains("or table"), "{e}");
        let e = parse_err(r#"{ table = "patients", column = "id", waits_for = "patients", by = ["mrn"] }"#);
        assert!(e.contains("needs source_column"), "{e}");
        let e = parse_err(r#"{ table = "patients", column = "id", by = [{ column = "mrn", source_column = "mrn" }] }"#);
        assert!(e.contains("source_column needs waits_for"), "{e}");
        let e = parse_err(r#"{ table = "patients", column = "id", by = [{ column = "", normalize = "upper" }] }"#);
        assert!(e.contains("alternative 1: column must name"), "{e}");
        let e = parse_err(r#"{ table = "patients", column = "id", by = ["mrn"], colour = 1 }"#);
        assert!(e.contains("colour"), "{e}");
        let e = parse_err(r#"{ table = "patients", column = "id", by = [{ column = "mrn", normalise = "upper" }] }"#);
        assert!(e.contains("unknown key `normalise`"), "{e}");
        let e = parse_err(r#"{ table = "patients", column = "id", by = [3] }"#);
        assert!(e.contains("expected a column name"), "{e}");
    }
}
