//! A migration project on disk: `cutover.toml` plus `migrations/<version>_<name>/` folders.

use crate::engine::backend::Dialect;
use crate::engine::checksum::checksum;
use crate::engine::config::{Config, Overrides};
use color_eyre::eyre::{Result, eyre};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Schema,
    Data,
    Merge,
}

impl StepKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            StepKind::Schema => "schema",
            StepKind::Data => "data",
            StepKind::Merge => "merge",
        }
    }
    pub fn parse(s: &str) -> Option<StepKind> {
        match s {
            "schema" | "sql" => Some(StepKind::Schema),
            "data" => Some(StepKind::Data),
            "merge" => Some(StepKind::Merge),
            _ => None,
        }
    }
}

/// One migration folder as found on disk.
#[derive(Debug, Clone, Serialize)]
pub struct StepDef {
    pub version: String,
    pub name: String,
    pub kind: StepKind,
    #[serde(skip)]
    pub dir: PathBuf,
    /// The file whose content the checksum covers (`up.sql` or `step.toml`; the target's
    /// `up.<dialect>.sql` when there is one).
    pub checksum_file: String,
    pub checksum: String,
    /// Per-dialect SQL used instead of a file on this target: `up.sql` -> `up.mysql.sql`.
    #[serde(skip)]
    pub overrides: BTreeMap<String, String>,
    /// The file a data step reads (`[source] file`, resolved against the source folder): its
    /// SHA-256 is kept in the ledger, and a change to it makes the step `modified`.
    #[serde(skip)]
    pub source_file: Option<PathBuf>,
}

impl StepDef {
    pub fn folder_name(&self) -> String {
        format!("{}_{}", self.version, self.name)
    }
    /// The path of a step's file: the target dialect's override (`up.mysql.sql`) of `up.sql`
    /// or `down.sql` when the folder has one.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir
            .join(self.overrides.get(name).map(String::as_str).unwrap_or(name))
    }
    pub fn read(&self, name: &str) -> Result<String> {
        let p = self.file(name);
        std::fs::read_to_string(&p).map_err(|e| eyre!("cannot read {}: {e}", p.display()))
    }
}

#[derive(Debug, Clone)]
pub struct Project {
    pub config: Config,
    pub steps: Vec<StepDef>,
}

/// `YYYYMMDDTHHMMSS`, a real UTC time.
pub fn is_version(s: &str) -> bool {
    s.len() == 15 && chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%S").is_ok()
}

pub fn new_version(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y%m%dT%H%M%S").to_string()
}

impl Project {
    pub fn load(dir: &Path, overrides: &Overrides) -> Result<Project> {
        let config = Config::load(dir, overrides)?;
        let dialect = Dialect::from_scheme(config.target.scheme());
        let mut steps = load_steps_for(&config.migrations_dir, dialect)?;
        for s in steps.iter_mut().filter(|s| s.kind == StepKind::Data) {
            s.source_file = source_file_of(&config, s);
        }
        for s in steps
            .iter()
            .filter(|s| matches!(s.kind, StepKind::Data | StepKind::Merge))
        {
            if let Ok(text) = std::fs::read_to_string(s.file("step.toml")) {
                crate::engine::data::bucket::check_buckets_named(&text, &config.buckets)
                    .map_err(|e| eyre!("step {}_{}: {e}", s.version, s.name))?;
            }
        }
        Ok(Project { config, steps })
    }

    pub fn step(&self, version: &str) -> Option<&StepDef> {
        self.steps.iter().find(|s| s.version == version)
    }
}

/// The file a data step reads, when it reads one and it can be placed (a step.toml that does
/// not parse is reported when the step is loaded to run, not here).
fn source_file_of(config: &Config, step: &StepDef) -> Option<PathBuf> {
    let spec = crate::engine::data::spec::DataStep::load(&step.file("step.toml")).ok()?;
    config.source_file(spec.source.file.as_deref()?).ok()
}

/// The steps of a migrations folder, without a target dialect (no per-dialect overrides).
pub fn load_steps(migrations_dir: &Path) -> Result<Vec<StepDef>> {
    load_steps_for(migrations_dir, None)
}

/// The steps of a migrations folder, each schema step's `up.sql`/`down.sql` replaced by the
/// target dialect's `up.<dialect>.sql`/`down.<dialect>.sql` where the folder has one.
pub fn load_steps_for(migrations_dir: &Path, dialect: Option<Dialect>) -> Result<Vec<StepDef>> {
    if !migrations_dir.exists() {
        return Ok(Vec::new());
    }
    let mut by_version: BTreeMap<String, StepDef> = BTreeMap::new();
    let entries =
        std::fs::read_dir(migrations_dir).map_err(|e| eyre!("cannot read {}: {e}", migrations_dir.display()))?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type()?.is_dir() {
            continue;
        }
        dirs.push(entry.path());
    }
    dirs.sort();
    for dir in dirs {
        let folder = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (version, name) = folder.split_once('_').ok_or_else(|| {
            eyre!("migration folder '{folder}' is not named <version>_<name> (version = UTC YYYYMMDDTHHMMSS)")
        })?;
        if !is_version(version) {
            return Err(eyre!(
                "migration folder '{folder}': '{version}' is not a version; use a UTC timestamp YYYYMMDDTHHMMSS (e.g. 20250101T090000)"
            ));
        }
        let step = load_step(&dir, version, name, dialect)?;
        if let Some(prev) = by_version.get(version) {
            return Err(eyre!(
                "two migrations share version {version}: '{}' and '{}'; give one of them a new version",
                prev.folder_name(),
                folder
            ));
        }
        by_version.insert(version.to_string(), step);
    }
    Ok(by_version.into_values().collect())
}

#[derive(Deserialize)]
struct KindOnly {
    kind: Option<String>,
}

/// `up.<dialect>.sql` / `down.<dialect>.sql` files of a folder, by dialect.
fn dialect_files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = Dialect::all()
        .iter()
        .flat_map(|d| [format!("up.{}.sql", d.name()), format!("down.{}.sql", d.name())])
        .filter(|f| dir.join(f).is_file())
        .collect();
    out.sort();
    out
}

fn load_step(dir: &Path, version: &str, name: &str, dialect: Option<Dialect>) -> Result<StepDef> {
    let up = dir.join("up.sql");
    let step_toml = dir.join("step.toml");
    let folder = format!("{version}_{name}");
    let (kind, file) = match (up.exists(), step_toml.exists()) {
        (true, true) => {
            return Err(eyre!(
                "migration '{folder}' has both up.sql and step.toml; a step is either schema (up.sql/down.sql) or data/merge (step.toml)"
            ));
        }
        (true, false) => (StepKind::Schema, "up.sql"),
        (false, true) => {
            let text =
                std::fs::read_to_string(&step_toml).map_err(|e| eyre!("cannot read {}: {e}", step_toml.display()))?;
            let k: KindOnly =
                toml::from_str(&text).map_err(|e| eyre!("{}: {}", step_toml.display(), e.to_string().trim_end()))?;
            let kind = match k.kind.as_deref() {
                // `users` and `config` are data steps written as templates.
                None | Some("data" | "users" | "config") => StepKind::Data,
                Some("merge") => StepKind::Merge,
                Some(other) => {
                    return Err(eyre!(
                        "{}: kind = '{other}' is not a step kind (data, merge, users or config)",
                        step_toml.display()
                    ));
                }
            };
            (kind, "step.toml")
        }
        (false, false) => {
            return Err(eyre!("migration '{folder}' has neither up.sql nor step.toml"));
        }
    };
    let read =
        |f: &str| std::fs::read_to_string(dir.join(f)).map_err(|e| eyre!("cannot read {}: {e}", dir.join(f).display()));
    let text = read(file)?;
    let mut overrides = BTreeMap::new();
    let mut checksum_file = file.to_string();
    let variants = if kind == StepKind::Schema {
        dialect_files(dir)
    } else {
        Vec::new()
    };
    let sum = if variants.is_empty() {
        checksum(&text)
    } else {
        // The checksum covers up.sql and every dialect's variant: editing any of them after
        // the step was applied is a change.
        let mut all = format!("up.sql\n{text}");
        for f in &variants {
            all.push_str(&format!("\n\u{1f}{f}\n{}", read(f)?));
        }
        checksum(&all)
    };
    if let Some(d) = dialect {
        for base in ["up.sql", "down.sql"] {
            let variant = base.replacen(".sql", &format!(".{}.sql", d.name()), 1);
            if variants.contains(&variant) {
                if base == "up.sql" {
                    checksum_file = variant.clone();
                }
                overrides.insert(base.to_string(), variant);
            }
        }
    }
    Ok(StepDef {
        version: version.to_string(),
        name: name.to_string(),
        kind,
        dir: dir.to_path_buf(),
        checksum_file,
        checksum: sum,
        overrides,
        source_file: None,
    })
}

/// A folder-safe step name: lower-case letters, digits and underscores.
pub fn sanitise_name(name: &str) -> Result<String> {
    let s: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches('_').to_string();
    if s.is_empty() {
        return Err(eyre!(
            "'{name}' is not a usable migration name: use letters, digits and underscores"
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialect_override_replaces_up_sql_and_counts_in_the_checksum() {
        let dir = tempfile_dir();
        let step = dir.join("20250101T090000_schema");
        std::fs::create_dir_all(&step).unwrap();
        std::fs::write(step.join("up.sql"), "CREATE TABLE t (id TEXT PRIMARY KEY);\n").unwrap();
        std::fs::write(step.join("down.sql"), "DROP TABLE t;\n").unwrap();
        let plain = load_steps_for(&dir, Some(Dialect::Mysql)).unwrap().remove(0);
        assert_eq!(plain.checksum, checksum("CREATE TABLE t (id TEXT PRIMARY KEY);\n"));
        assert!(plain.overrides.is_empty());
        std::fs::write(
            step.join("up.mysql.sql"),
            "CREATE TABLE t (id VARCHAR(36) PRIMARY KEY);\n",
        )
        .unwrap();
        let my = load_steps_for(&dir, Some(Dialect::Mysql)).unwrap().remove(0);
        assert_eq!(my.file("up.sql"), step.join("up.mysql.sql"));
        assert_eq!(my.file("down.sql"), step.join("down.sql"));
        assert_eq!(my.checksum_file, "up.mysql.sql");
        assert!(my.read("up.sql").unwrap().contains("VARCHAR(36)"));
        let pg = load_steps_for(&dir, Some(Dialect::Postgres)).unwrap().remove(0);
        assert_eq!(pg.file("up.sql"), step.join("up.sql"));
        // one checksum on every target, and it changes with the override
        assert_eq!(pg.checksum, my.checksum);
        assert_ne!(my.checksum, plain.checksum);
        std::fs::write(
            step.join("up.mysql.sql"),
            "CREATE TABLE t (id VARCHAR(40) PRIMARY KEY);\n",
        )
        .unwrap();
        let edited = load_steps_for(&dir, Some(Dialect::Sqlite)).unwrap().remove(0);
        assert_ne!(edited.checksum, my.checksum);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("cutover-project-test-{}-{}", std::process::id(), line!()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
