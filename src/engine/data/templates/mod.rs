//! Step templates: `kind = "users"` and `kind = "config"` are data steps written in a shorter
//! form, expanded here into the TOML of an ordinary collection data step (fields with paths
//! into the document, a natural key, an ID map, the role or setting transforms), which
//! `DataStep::parse` then reads as any other, so everything a data step does (duplicates,
//! rejects, rollback, verify) works for them unchanged. Producing TOML, not a `DataStep`,
//! keeps this module below `spec` (no module cycle): `[source]` and `[sync]` are passed through for
//! `spec` to check.

mod config;
#[cfg(test)]
mod tests;
mod users;

use crate::engine::transform::{Literal, Transform};
use color_eyre::eyre::{Result, eyre};
use serde::Deserialize;
use toml::{Table, Value};

#[derive(Deserialize)]
struct KindOnly {
    kind: Option<String>,
}

/// The expanded step when `text` is a template (`kind = "users"` or `"config"`), `None` for
/// any other kind (parsed as a plain data step by the caller).
pub fn expand(text: &str) -> Result<Option<Table>> {
    // Unknown keys are ignored here: the template's own parse refuses them, naming them.
    let Ok(k) = toml::from_str::<KindOnly>(text) else {
        return Ok(None);
    };
    match k.kind.as_deref() {
        Some("users") => users::expand(text).map(Some),
        Some("config") => config::expand(text).map(Some),
        _ => Ok(None),
    }
}

/// `[id_map]` of a template: the column is always the document's `_id`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateIdMap {
    map: Option<String>,
    key: Option<String>,
}

impl TemplateIdMap {
    fn table(self, default_map: &str) -> Value {
        let mut t = Table::new();
        t.insert("column".into(), Value::String("_id".into()));
        t.insert(
            "map".into(),
            Value::String(self.map.unwrap_or_else(|| default_map.to_string())),
        );
        if let Some(k) = self.key {
            t.insert("key".into(), Value::String(k));
        }
        Value::Table(t)
    }
}

/// One `[[fields]]` entry: a target path, its source column or constant, transforms and
/// validation rules (by name).
fn field(
    target: &str,
    source: Option<&str>,
    value: Option<Literal>,
    transforms: &[Transform],
    rules: &[&str],
) -> Result<Value> {
    let mut t = Table::new();
    t.insert("target".into(), Value::String(target.into()));
    if let Some(s) = source {
        t.insert("source".into(), Value::String(s.into()));
    }
    if let Some(v) = value {
        t.insert(
            "value".into(),
            Value::try_from(v).map_err(|e| eyre!("field {target}: {e}"))?,
        );
    }
    if !transforms.is_empty() {
        let ts = Value::try_from(transforms).map_err(|e| eyre!("field {target}: {e}"))?;
        t.insert("transforms".into(), ts);
    }
    if !rules.is_empty() {
        let checks = rules
            .iter()
            .map(|r| Value::Table(Table::from_iter([("rule".to_string(), Value::String((*r).into()))])))
            .collect();
        t.insert("validate".into(), Value::Array(checks));
    }
    Ok(Value::Table(t))
}

/// The target of an extra `[[fields]]` entry.
fn target_of(f: &Table) -> &str {
    f.get("target").and_then(Value::as_str).unwrap_or_default()
}

/// The step's keys every template passes through as written (`spec` checks them).
fn pass_through(
    out: &mut Table,
    description: Option<String>,
    source: Value,
    batch_size: Option<i64>,
    continue_on_error: Option<bool>,
    sync: Option<Value>,
) {
    if let Some(d) = description {
        out.insert("description".into(), Value::String(d));
    }
    out.insert("source".into(), source);
    if let Some(b) = batch_size {
        out.insert("batch_size".into(), Value::Integer(b));
    }
    if let Some(c) = continue_on_error {
        out.insert("continue_on_error".into(), Value::Boolean(c));
    }
    if let Some(s) = sync {
        out.insert("sync".into(), s);
    }
}

/// `[target]` of an expanded step: the collection, its natural key, and the settings a
/// template's `[target]` may give.
struct CollectionTarget {
    collection: String,
    natural_key: &'static str,
    on_duplicate: Option<Value>,
    permissions: Vec<String>,
    indexes: Vec<String>,
    max_document_bytes: Option<i64>,
}

impl CollectionTarget {
    fn table(self) -> Value {
        let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
        let mut t = Table::new();
        t.insert("collection".into(), Value::String(self.collection));
        t.insert("natural_key".into(), strings(vec![self.natural_key.to_string()]));
        if let Some(d) = self.on_duplicate {
            t.insert("on_duplicate".into(), d);
        }
        if !self.permissions.is_empty() {
            t.insert("permissions".into(), strings(self.permissions));
        }
        if !self.indexes.is_empty() {
            t.insert("indexes".into(), strings(self.indexes));
        }
        if let Some(m) = self.max_document_bytes {
            t.insert("max_document_bytes".into(), Value::Integer(m));
        }
        Value::Table(t)
    }
}

/// A setting naming a source column must name one.
fn column(section: &str, key: &str, v: Option<String>, what: &str) -> Result<String> {
    match v {
        Some(c) if !c.trim().is_empty() => Ok(c),
        Some(_) => Err(eyre!(
            "[{section}] {key} is empty: name the source column holding {what}"
        )),
        None => Err(eyre!(
            "[{section}] {key} = \"...\" is required: name the source column holding {what}"
        )),
    }
}

/// Extra `[[fields]]` must not write what the template writes (one value per path).
fn check_extra_fields(kind: &str, written: &[&str], extra: &[Table]) -> Result<()> {
    for f in extra {
        let t = target_of(f);
        let clash = written
            .iter()
            .find(|w| **w == t || w.starts_with(&format!("{t}.")) || t.starts_with(&format!("{w}.")));
        if let Some(w) = clash {
            return Err(eyre!(
                "[[fields]] target '{t}' collides with '{w}', which the {kind} template writes"
            ));
        }
    }
    Ok(())
}

/// Placeholders in a permission string must be balanced `{path}`s.
fn check_permission(section: &str, p: &str) -> Result<()> {
    if p.trim().is_empty() {
        return Err(eyre!("{section}: a permission string is empty"));
    }
    let mut open = false;
    for c in p.chars() {
        match (c, open) {
            ('{', false) => open = true,
            ('}', true) => open = false,
            ('{', true) | ('}', false) => {
                return Err(eyre!(
                    "{section}: {p:?} has unbalanced braces (write placeholders as {{path}})"
                ));
            }
            _ => {}
        }
    }
    if open {
        return Err(eyre!(
            "{section}: {p:?} has unbalanced braces (write placeholders as {{path}})"
        ));
    }
    Ok(())
}
