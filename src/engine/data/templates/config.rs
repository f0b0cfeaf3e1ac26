//! `kind = "config"`: settings rows (an old key and a value) into a config collection, one
//! document per setting: `{"key": new key, "value": typed value, "legacy_key": old key}`,
//! natural key `key`, so two old keys mapped onto one new key are a duplicate, not an
//! overwrite.

use std::collections::BTreeMap;

use super::{CollectionTarget, TemplateIdMap, check_permission, column, field, pass_through};
use crate::engine::transform::{ConfigKeySpec, ConfigType, ConfigValueSpec, Transform, Unmapped};
use color_eyre::eyre::{Result, eyre};
use serde::Deserialize;
use toml::{Table, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigStep {
    #[allow(dead_code)]
    kind: String,
    description: Option<String>,
    source: Value,
    #[serde(default)]
    target: ConfigTarget,
    id_map: Option<TemplateIdMap>,
    config: Option<ConfigSpec>,
    batch_size: Option<i64>,
    continue_on_error: Option<bool>,
    sync: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigTarget {
    collection: Option<String>,
    on_duplicate: Option<Value>,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    indexes: Vec<String>,
    max_document_bytes: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigSpec {
    key: Option<String>,
    value: Option<String>,
    #[serde(default)]
    unmapped: Unmapped,
    #[serde(default)]
    types: BTreeMap<String, ConfigType>,
    #[serde(default)]
    keys: BTreeMap<String, String>,
}

pub(super) fn expand(text: &str) -> Result<Table> {
    let step: ConfigStep = toml::from_str(text).map_err(|e| eyre!("{}", e.to_string().trim_end()))?;
    let config = step.config.ok_or_else(|| {
        eyre!("a config step needs a [config] table: value = \"...\" names the source column of the values, [config.keys] maps old keys to new")
    })?;
    let key = match config.key {
        Some(k) => column("config", "key", Some(k), "the setting keys")?,
        None => match step.source.get("key") {
            Some(Value::String(one)) => one.clone(),
            Some(Value::Array(many)) if many.len() == 1 && many[0].is_str() => {
                many[0].as_str().unwrap_or_default().to_string()
            }
            Some(Value::Array(many)) if many.len() > 1 => {
                return Err(eyre!(
                    "[source] key is composite: name the column holding the setting keys with [config] key"
                ));
            }
            _ => {
                return Err(eyre!(
                    "[config] key = \"...\" is required: name the source column holding the setting keys"
                ));
            }
        },
    };
    let value = column("config", "value", config.value, "the setting values")?;
    if config.keys.is_empty() {
        return Err(eyre!(
            "[config.keys] is empty: map each old setting key to its new key (smtp_host = \"mail.smtp.host\")"
        ));
    }
    if let Some((old, _)) = config.keys.iter().find(|(_, new)| new.trim().is_empty()) {
        return Err(eyre!("[config.keys] {old:?} maps to an empty key"));
    }
    if config.unmapped == Unmapped::Reject
        && let Some(typed) = config.types.keys().find(|k| !config.keys.values().any(|new| new == *k))
    {
        return Err(eyre!(
            "[config] types names {typed:?}, which is no new key of [config.keys] (types are given by the new key)"
        ));
    }
    for p in &step.target.permissions {
        check_permission("[target] permissions", p)?;
    }
    let fields = vec![
        field(
            "key",
            Some(&key),
            None,
            &[Transform::ConfigKey(ConfigKeySpec {
                keys: config.keys.clone(),
                unmapped: config.unmapped,
            })],
            &[],
        )?,
        field(
            "value",
            Some(&value),
            None,
            &[Transform::ConfigValue(ConfigValueSpec {
                key_column: key.clone(),
                keys: config.keys,
                types: config.types,
            })],
            &[],
        )?,
        field("legacy_key", Some(&key), None, &[], &[])?,
    ];
    let mut out = Table::new();
    out.insert("kind".into(), Value::String("config".into()));
    pass_through(
        &mut out,
        step.description,
        step.source,
        step.batch_size,
        step.continue_on_error,
        step.sync,
    );
    let target = CollectionTarget {
        collection: step.target.collection.unwrap_or_else(|| "config".into()),
        natural_key: "key",
        on_duplicate: step.target.on_duplicate,
        permissions: step.target.permissions,
        indexes: step.target.indexes,
        max_document_bytes: step.target.max_document_bytes,
    };
    out.insert("target".into(), target.table());
    out.insert("id_map".into(), step.id_map.unwrap_or_default().table("config"));
    out.insert("fields".into(), Value::Array(fields));
    Ok(out)
}
