//! A merge step's `step.toml`: the two sides, the target, the ID map and the fields, compiled
//! into two data-step pipelines that write one table.

use crate::engine::data::pipeline::CompiledStep;
use crate::engine::data::spec::{DataStep, DupPolicy, FieldSpec, IdMapSpec, SourceSpec, TargetSpec};
use crate::engine::project::StepDef;
use crate::engine::transform::{Literal, Transform};
use crate::engine::validate::Check;
use color_eyre::eyre::{Result, eyre};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SideSpec {
    pub table: Option<String>,
    pub query: Option<String>,
    pub key: String,
    pub name: Option<String>,
    /// Side B only: the column naming side A's key.
    pub link: Option<String>,
    #[serde(default)]
    pub references: Vec<crate::engine::data::spec::SourceReference>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MergeTarget {
    pub table: String,
    /// Boolean column set while the entity has open discrepancies.
    pub review_flag: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MergeIdMap {
    pub column: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MergeField {
    pub target: String,
    pub a: Option<String>,
    pub b: Option<String>,
    pub value: Option<Literal>,
    #[serde(default)]
    pub transforms: Vec<Transform>,
    #[serde(default)]
    pub validate: Vec<Check>,
    /// Compare A and B (after transforms, trimmed and case-folded; a blank never disagrees).
    #[serde(default)]
    pub compare: bool,
    /// Fill from B when A is blank (default true).
    #[serde(default = "yes")]
    pub fill: bool,
    /// The value when both sides are blank, applied after merging.
    pub default: Option<Literal>,
}

pub(super) fn yes() -> bool {
    true
}

/// Rows of later steps that belong to side B's record; a split moves them to the new entity.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FollowsB {
    pub table: String,
    /// The column pointing at the entity.
    pub column: String,
    /// The column identifying the rows: B's legacy key, or values from `source_query`.
    pub match_column: String,
    /// SQL on the source returning the `match_column` values for B's key (`$1`).
    pub source_query: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MergeStepFile {
    pub kind: Option<String>,
    pub description: Option<String>,
    pub a: SideSpec,
    pub b: SideSpec,
    pub target: MergeTarget,
    pub id_map: MergeIdMap,
    pub fields: Vec<MergeField>,
    #[serde(default)]
    pub follows_b: Vec<FollowsB>,
    pub batch_size: Option<usize>,
    pub continue_on_error: Option<bool>,
}

pub struct MergeStep {
    pub file: MergeStepFile,
    /// Side A as a data step: its rows become entities.
    pub a: CompiledStep,
    /// Side B as a data step: its own data, for merging or for an entity of its own.
    pub b: CompiledStep,
    pub version: String,
}

pub(super) fn side_name(s: &SideSpec, fallback: &str) -> String {
    s.name
        .clone()
        .or_else(|| s.table.clone())
        .unwrap_or_else(|| fallback.to_string())
}

impl MergeStep {
    pub fn load(step: &StepDef) -> Result<MergeStep> {
        let path = step.file("step.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| eyre!("cannot read {}: {e}", path.display()))?;
        Self::parse(&step.version, &text).map_err(|e| eyre!("{}: {e}", path.display()))
    }

    pub fn parse(version: &str, text: &str) -> Result<MergeStep> {
        let file: MergeStepFile = toml::from_str(text).map_err(|e| eyre!("{}", e.to_string().trim_end()))?;
        for (side, s) in [("a", &file.a), ("b", &file.b)] {
            if s.table.is_some() == s.query.is_some() {
                return Err(eyre!("[{side}] needs exactly one of table or query"));
            }
        }
        if file.b.link.is_none() {
            return Err(eyre!("[b] needs link: the column of side B that names side A's key"));
        }
        let side =
            |s: &SideSpec, fallback: &str, pick: &dyn Fn(&MergeField) -> Option<String>| -> Result<CompiledStep> {
                let name = side_name(s, fallback);
                let spec = DataStep {
                    kind: None,
                    description: None,
                    source: SourceSpec {
                        table: s.table.clone(),
                        query: s.query.clone(),
                        key: crate::engine::data::spec::SourceKey::One(s.key.clone()),
                        name: Some(name.clone()),
                        references: s.references.clone(),
                        ..Default::default()
                    },
                    target: TargetSpec {
                        table: file.target.table.clone(),
                        natural_key: vec![],
                        on_duplicate: DupPolicy::Error,
                        empty_json_as_null: vec![],
                        ..Default::default()
                    },
                    id_map: Some(IdMapSpec {
                        column: file.id_map.column.clone(),
                        map: Some(name),
                        key: None,
                    }),
                    fields: file
                        .fields
                        .iter()
                        .map(|f| {
                            let src = pick(f);
                            FieldSpec {
                                target: f.target.clone(),
                                value: if src.is_none() { f.value.clone() } else { None },
                                run: None,
                                transforms: if src.is_some() { f.transforms.clone() } else { vec![] },
                                validate: if src.is_some() { f.validate.clone() } else { vec![] },
                                source: src,
                            }
                        })
                        .collect(),
                    batch_size: file.batch_size,
                    continue_on_error: file.continue_on_error,
                    sync: None,
                    embed: vec![],
                };
                CompiledStep::compile(version, spec)
            };
        let a = side(&file.a, "a", &|f: &MergeField| f.a.clone())?;
        let b = side(&file.b, "b", &|f: &MergeField| f.b.clone())?;
        Ok(MergeStep {
            file,
            a,
            b,
            version: version.to_string(),
        })
    }

    pub(super) fn column(&self, target: &str) -> Option<usize> {
        self.a.target_columns.iter().position(|c| c == target)
    }
}
