//! Step templates: `kind = "users"` and `kind = "config"` are data steps written in a shorter
//! form, expanded here into an ordinary collection [`DataStep`] (fields with paths into the
//! document, a natural key, an ID map, the role or setting transforms), so everything a data
//! step does (duplicates, rejects, rollback, verify) works for them unchanged.

mod config;
#[cfg(test)]
mod tests;
mod users;

use crate::engine::data::spec::{DataStep, FieldSpec, IdMapSpec};
use crate::engine::transform::Transform;
use crate::engine::validate::Check;
use color_eyre::eyre::{Result, eyre};
use serde::Deserialize;

#[derive(Deserialize)]
struct KindOnly {
    kind: Option<String>,
}

/// The expanded step when `text` is a template (`kind = "users"` or `"config"`), `None` for
/// any other kind (parsed as a plain data step by the caller).
pub fn expand(text: &str) -> Result<Option<DataStep>> {
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
    fn spec(self, default_map: &str) -> IdMapSpec {
        IdMapSpec {
            column: "_id".into(),
            map: Some(self.map.unwrap_or_else(|| default_map.to_string())),
            key: self.key,
        }
    }
}

fn field(target: &str, source: Option<&str>, transforms: Vec<Transform>, validate: Vec<Check>) -> FieldSpec {
    FieldSpec {
        target: target.into(),
        source: source.map(str::to_string),
        value: None,
        run: None,
        transforms,
        validate,
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
fn check_extra_fields(kind: &str, written: &[&str], extra: &[FieldSpec]) -> Result<()> {
    for f in extra {
        let t = f.target.as_str();
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
