//! `kind = "config"`: settings rows (an old key and a value) into a config collection, one
//! document per setting: `{"key": new key, "value": typed value, "legacy_key": old key}`,
//! natural key `key`, so two old keys mapped onto one new key are a duplicate, not an
//! overwrite.

use std::collections::BTreeMap;

use super::{TemplateIdMap, check_permission, column, field};
use crate::engine::data::spec::{DataStep, DupPolicy, SourceSpec, SyncSpec, TargetSpec};
use crate::engine::transform::{ConfigKeySpec, ConfigType, ConfigValueSpec, Transform, Unmapped};
use color_eyre::eyre::{Result, eyre};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigStep {
    #[allow(dead_code)]
    kind: String,
    description: Option<String>,
    source: SourceSpec,
    #[serde(default)]
    target: ConfigTarget,
    id_map: Option<TemplateIdMap>,
    config: Option<ConfigSpec>,
    batch_size: Option<usize>,
    continue_on_error: Option<bool>,
    sync: Option<SyncSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigTarget {
    collection: Option<String>,
    #[serde(default)]
    on_duplicate: DupPolicy,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    indexes: Vec<String>,
    max_document_bytes: Option<u64>,
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

pub(super) fn expand(text: &str) -> Result<DataStep> {
    let step: ConfigStep = toml::from_str(text).map_err(|e| eyre!("{}", e.to_string().trim_end()))?;
    let config = step.config.ok_or_else(|| {
        eyre!("a config step needs a [config] table: value = \"...\" names the source column of the values, [config.keys] maps old keys to new")
    })?;
    let key = match config.key {
        Some(k) => column("config", "key", Some(k), "the setting keys")?,
        None => match step.source.key.columns().as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(eyre!(
                    "[config] key = \"...\" is required: name the source column holding the setting keys"
                ));
            }
            _ => {
                return Err(eyre!(
                    "[source] key is composite ({}): name the column holding the setting keys with [config] key",
                    step.source.key
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
            vec![Transform::ConfigKey(ConfigKeySpec {
                keys: config.keys.clone(),
                unmapped: config.unmapped,
            })],
            vec![],
        ),
        field(
            "value",
            Some(&value),
            vec![Transform::ConfigValue(ConfigValueSpec {
                key_column: key.clone(),
                keys: config.keys,
                types: config.types,
            })],
            vec![],
        ),
        field("legacy_key", Some(&key), vec![], vec![]),
    ];
    Ok(DataStep {
        kind: Some("config".into()),
        description: step.description,
        source: step.source,
        target: TargetSpec {
            table: String::new(),
            collection: Some(step.target.collection.unwrap_or_else(|| "config".into())),
            permissions: step.target.permissions,
            indexes: step.target.indexes,
            max_document_bytes: step.target.max_document_bytes,
            natural_key: vec!["key".into()],
            on_duplicate: step.target.on_duplicate,
            // Whatever else a target has (filled in when a collection is normalised).
            ..TargetSpec::default()
        },
        id_map: Some(step.id_map.unwrap_or_default().spec("config")),
        fields,
        batch_size: step.batch_size,
        continue_on_error: step.continue_on_error,
        sync: step.sync,
        embed: Vec::new(),
    })
}
