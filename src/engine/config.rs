//! `cutover.toml`: connections, maintenance window and defaults.
//!
//! Parsing is strict (an unknown key is an error naming the key and line) because a typo in a
//! migration config must never silently fall back to a default during a maintenance window.

use color_eyre::eyre::{Result, WrapErr, eyre};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "cutover.toml";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub project: ProjectSection,
    pub source: Option<Connection>,
    pub target: Connection,
    #[serde(default)]
    pub window: Option<WindowSection>,
    #[serde(default)]
    pub defaults: Defaults,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSection {
    pub name: Option<String>,
    /// Folder of the migrations, relative to the project folder.
    pub migrations: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSection {
    pub start: chrono::DateTime<chrono::FixedOffset>,
    pub end: chrono::DateTime<chrono::FixedOffset>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub continue_on_error: bool,
    /// Seconds without a heartbeat after which a SQLite run lock counts as abandoned.
    #[serde(default = "default_lock_stale")]
    pub lock_stale_after_secs: u64,
    /// How long a step keeps retrying a lost connection (a server restart) before it fails.
    #[serde(default = "default_retry_for")]
    pub retry_for_secs: u64,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            batch_size: default_batch_size(),
            continue_on_error: false,
            lock_stale_after_secs: default_lock_stale(),
            retry_for_secs: default_retry_for(),
        }
    }
}

fn default_batch_size() -> usize {
    5000
}
fn default_lock_stale() -> u64 {
    30
}
fn default_retry_for() -> u64 {
    60
}

/// A connection URL that keeps its password out of every `Display` and `Debug`.
#[derive(Clone, PartialEq)]
pub struct DbUrl(String);

impl DbUrl {
    pub fn new(s: impl Into<String>) -> Self {
        DbUrl(s.into())
    }
    /// The real URL, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
    pub fn scheme(&self) -> &str {
        self.0.split(':').next().unwrap_or("")
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}
impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbUrl({})", self.redacted())
    }
}

/// Replace the password of `scheme://user:password@host/...` (and `password=` query
/// parameters) with `***`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map(|i| rest_start + i)
            .unwrap_or(out.len());
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let at = rest_start + at;
            if let Some(colon) = out[rest_start..at].find(':') {
                let colon = rest_start + colon;
                out.replace_range(colon + 1..at, "***");
            }
        }
    }
    // query parameters such as ?password=... or &sslpassword=...
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let parts: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", parts.join("&"));
    }
    out
}

/// Expand `${VAR}` from the environment. A missing variable is an error naming it.
pub fn interpolate_env(s: &str, what: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| eyre!("{what}: unterminated '${{' in value"))?;
        let name = &after[..end];
        let val = std::env::var(name).map_err(|_| {
            eyre!("{what}: environment variable {name} is not set (export {name}=... before running cutover)")
        })?;
        out.push_str(&val);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The loaded, interpolated configuration of a project.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub name: String,
    pub migrations_dir: PathBuf,
    pub source: Option<DbUrl>,
    pub target: DbUrl,
    pub window: Option<WindowSection>,
    pub defaults: Defaults,
}

/// Connection overrides from the command line / environment (`--source`, `CUTOVER_SOURCE`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub source: Option<String>,
    pub target: Option<String>,
}

impl Config {
    pub fn load(dir: &Path, overrides: &Overrides) -> Result<Config> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            eyre!(
                "cannot read {}: {e}. Is this a cutover project? (create one with `cutover init DIR`, or pass -C DIR)",
                path.display()
            )
        })?;
        Self::parse(dir, &text, overrides).wrap_err_with(|| format!("in {}", path.display()))
    }

    pub fn parse(dir: &Path, text: &str, overrides: &Overrides) -> Result<Config> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| eyre!("{}", e.to_string().trim_end()))?;
        let target_raw = match &overrides.target {
            Some(t) => t.clone(),
            None => interpolate_env(&file.target.url, "[target] url")?,
        };
        let source_raw = match (&overrides.source, &file.source) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(s)) => Some(interpolate_env(&s.url, "[source] url")?),
            (None, None) => None,
        };
        if file.defaults.batch_size == 0 {
            return Err(eyre!("[defaults] batch_size must be at least 1"));
        }
        if let Some(w) = &file.window
            && w.end <= w.start
        {
            return Err(eyre!("[window] end ({}) is not after start ({})", w.end, w.start));
        }
        let name = file
            .project
            .name
            .clone()
            .or_else(|| {
                dir.canonicalize()
                    .ok()
                    .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            })
            .unwrap_or_else(|| "cutover".into());
        let migrations_dir = dir.join(file.project.migrations.as_deref().unwrap_or("migrations"));
        Ok(Config {
            dir: dir.to_path_buf(),
            name,
            migrations_dir,
            source: source_raw.map(DbUrl::new),
            target: DbUrl::new(target_raw),
            window: file.window,
            defaults: file.defaults,
        })
    }
}

pub fn config_template(name: &str) -> String {
    format!(
        r#"# cutover project configuration.
# Secrets stay in the environment: write ${{VAR}} and export VAR before running.

[project]
name = "{name}"

[source]
# sqlite://legacy.db, postgres://user:${{SOURCE_PASSWORD}}@host/db, mysql://user:${{PW}}@host/db
url = "sqlite://legacy.db"

[target]
url = "sqlite://target.db"

# The maintenance window; the console shows the time left and whether pending work will fit.
# [window]
# start = "2026-11-21T22:00:00+00:00"
# end = "2026-11-22T02:00:00+00:00"

[defaults]
batch_size = 5000
continue_on_error = false
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://bob:s3cret@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://bob@db/x"), "postgres://bob@db/x");
        assert_eq!(
            redact_url("postgres://db/x?user=a&password=s3cret"),
            "postgres://db/x?user=a&password=***"
        );
        assert!(!format!("{:?}", DbUrl::new("mysql://a:pw@h/d")).contains("pw@"));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = "[target]\nurl = \"sqlite://t.db\"\n\n[defaults]\nbatch_sise = 10\n";
        let err = Config::parse(Path::new("."), text, &Overrides::default()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("batch_sise"), "{msg}");
        assert!(msg.contains("line 5"), "{msg}");
    }

    #[test]
    fn env_interpolation() {
        // SAFETY: single-threaded use of a variable name only this test reads.
        unsafe { std::env::set_var("CUTOVER_TEST_PW_1", "pw") };
        assert_eq!(
            interpolate_env("postgres://u:${CUTOVER_TEST_PW_1}@h/d", "x").unwrap(),
            "postgres://u:pw@h/d"
        );
        let err = interpolate_env("${CUTOVER_TEST_MISSING_9}", "[target] url").unwrap_err();
        assert!(err.to_string().contains("CUTOVER_TEST_MISSING_9"));
    }
}
