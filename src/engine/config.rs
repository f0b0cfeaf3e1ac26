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
    /// `[buckets.NAME]`: named file stores with their limits (`store_file = { bucket = … }`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub buckets: std::collections::BTreeMap<String, BucketSpec>,
}

/// A named bucket: a content-addressed folder of files with limits every file must keep.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    /// Folder, relative to the project folder (default `buckets/NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Largest file allowed, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// MIME types allowed, as detected from the bytes (`image/png`, `image/*`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mime: Vec<String>,
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

/// A connection URL that keeps its password out of every `Display` and `Debug`, and knows its
/// secrets so any text (a driver's error message) can be redacted against it.
#[derive(Clone, PartialEq)]
pub struct DbUrl {
    raw: String,
    /// The password (and `password=` query values) in every spelling it may be printed in.
    secrets: Vec<String>,
}

impl DbUrl {
    pub fn new(s: impl Into<String>) -> Self {
        let raw = s.into();
        let secrets = secret_forms(&url_secrets(&raw));
        register_secrets(&secrets);
        DbUrl { raw, secrets }
    }
    /// The real URL, for the driver only.
    pub fn expose(&self) -> &str {
        &self.raw
    }
    pub fn redacted(&self) -> String {
        self.redact(&self.raw)
    }
    /// `text` with this URL's secrets, any URL password and `password=` values replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        redact_text(text, &self.secrets)
    }
    pub fn scheme(&self) -> &str {
        self.raw.split(':').next().unwrap_or("")
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

/// Shorter secrets are not scrubbed from free text: removing every "ab" would garble messages,
/// and the URL-structure redaction still hides them inside URLs.
const MIN_SCRUB_LEN: usize = 4;

/// Every secret of every `DbUrl` made in this process, so text redacted without a `DbUrl` at
/// hand (a ledger message, the last error) is still scrubbed.
static SECRETS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn register_secrets(secrets: &[String]) {
    let mut all = SECRETS.lock().unwrap_or_else(|p| p.into_inner());
    for s in secrets {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
}

fn registered_secrets() -> Vec<String> {
    SECRETS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn is_password_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("passwd") || k == "pwd"
}

/// The password of a URL and its `password=` query values, as written. Works on URLs the
/// parser refuses too (an unencoded `/` or `?` in the password): then the userinfo is taken up
/// to the last `@`.
fn url_secrets(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(u) = url::Url::parse(raw) {
        if let Some(p) = u.password() {
            out.push(p.to_string());
        }
        for (k, v) in u.query_pairs() {
            if is_password_key(&k) {
                out.push(v.into_owned());
            }
        }
    }
    if let Some(i) = raw.find("://") {
        let rest = &raw[i + 3..];
        if let Some(at) = rest.rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            out.push(rest[colon + 1..at].to_string());
        }
    }
    for part in raw.split(['?', '&']) {
        if let Some((k, v)) = part.split_once('=')
            && is_password_key(k)
        {
            out.push(v.to_string());
        }
    }
    out
}

/// The characters left as they are when a value is put into a URL (RFC 3986 "unreserved").
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Each secret as written, percent-decoded, percent-encoded and form-encoded: a driver may
/// print any of them.
fn secret_forms(secrets: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in secrets {
        let decoded = percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let form_decoded: String = url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        for base in [s.clone(), decoded, form_decoded] {
            let encoded = percent_encoding::utf8_percent_encode(&base, COMPONENT).to_string();
            let all_encoded =
                percent_encoding::utf8_percent_encode(&base, percent_encoding::NON_ALPHANUMERIC).to_string();
            let form: String = url::form_urlencoded::byte_serialize(base.as_bytes()).collect();
            for f in [base, encoded, all_encoded, form] {
                if f.chars().count() >= MIN_SCRUB_LEN && !out.contains(&f) {
                    out.push(f);
                }
            }
        }
    }
    // Longest first, so a secret is never half-replaced by a shorter spelling of itself.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// Redact a URL or any text that contains URLs (a driver error): URL passwords, `password=`
/// values, and every secret of every connection URL this process has seen.
pub fn redact_url(text: &str) -> String {
    redact_text(text, &registered_secrets())
}

/// Redact `text`: the given secrets (and their encoded/decoded spellings) wherever they appear,
/// the password of every URL in it (parsed with a real URL parser; a URL the parser refuses is
/// cut at its last `@`), and `password=` values. Secrets already registered are removed too.
pub fn redact_text(text: &str, secrets: &[String]) -> String {
    let mut all = secret_forms(secrets);
    for s in registered_secrets() {
        if !all.contains(&s) {
            all.push(s);
        }
    }
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = redact_url_passwords(text);
    for s in &all {
        if s.chars().count() >= MIN_SCRUB_LEN && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    redact_password_params(&out)
}

/// `scheme://user:password@host/...` → `scheme://user:***@host/...` for every URL in `text`.
fn redact_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let after = i + 3;
        // The URL runs to the next whitespace or quote: a password with an unencoded space is
        // only caught by the secret scrub.
        let end = rest[after..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .map(|e| after + e)
            .unwrap_or(rest.len());
        let region = &rest[after..end];
        out.push_str(&rest[..after]);
        match password_span(&rest[..after], region) {
            Some((a, b)) => {
                out.push_str(&region[..a]);
                out.push_str("***");
                out.push_str(&region[b..]);
            }
            None => out.push_str(region),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Byte span of the password inside `region` (the text after `://`).
fn password_span(head: &str, region: &str) -> Option<(usize, usize)> {
    let scheme: String = head
        .trim_end_matches("://")
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let trimmed = region.trim_end_matches(['.', ',', ';', ':', ')', ']']);
    let parsed = (!scheme.is_empty())
        .then(|| url::Url::parse(&format!("{scheme}://{trimmed}")).ok())
        .flatten();
    let authority_end = region.find(['/', '?', '#']).unwrap_or(region.len());
    let last_at = region.rfind('@')?;
    let at = match parsed {
        // Well formed: the userinfo ends at the last `@` of the authority.
        Some(u) if u.password().is_some() => region[..authority_end].rfind('@')?,
        // Well formed and no `@` past the authority: no password.
        Some(_) if last_at < authority_end => return None,
        // Refused, or an `@` in the path/query (an unencoded `/`, `?` or `#` in the password
        // moved the authority's end): the userinfo runs to the last `@`.
        _ => last_at,
    };
    let colon = region[..at].find(':')?;
    Some((colon + 1, at))
}

/// `password=value` (also `sslpassword=`, `passwd=`, `pwd=`) → `password=***`.
fn redact_password_params(text: &str) -> String {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(r#"(?i)([\w.-]*(?:password|passwd|pwd)[\w.-]*=)([^&\s'"]+)"#).ok());
    match re {
        Some(re) => re.replace_all(text, "${1}***").into_owned(),
        None => text.to_string(),
    }
}

/// Where `${VAR}` values come from: the process environment, or a map in tests (which must
/// not mutate the environment of a multi-threaded test harness).
pub type VarLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Expand `${VAR}` from the environment. A missing variable is an error naming it.
pub fn interpolate_env(s: &str, what: &str) -> Result<String> {
    interpolate_env_with(s, what, &process_env)
}

/// `interpolate_env` with the variables from `vars`.
pub fn interpolate_env_with(s: &str, what: &str, vars: VarLookup) -> Result<String> {
    let mut out = String::new();
    for part in split_vars(s, what)? {
        match part {
            Part::Lit(l) => out.push_str(l),
            Part::Var(name) => out.push_str(&env_var(name, what, vars)?),
        }
    }
    Ok(out)
}

enum Part<'a> {
    Lit(&'a str),
    Var(&'a str),
}

fn split_vars<'a>(s: &'a str, what: &str) -> Result<Vec<Part<'a>>> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        parts.push(Part::Lit(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| eyre!("{what}: unterminated '${{' in value"))?;
        parts.push(Part::Var(&after[..end]));
        rest = &after[end + 1..];
    }
    parts.push(Part::Lit(rest));
    Ok(parts)
}

fn env_var(name: &str, what: &str, vars: VarLookup) -> Result<String> {
    vars(name).ok_or_else(|| {
        eyre!("{what}: environment variable {name} is not set (export {name}=... before running cutover)")
    })
}

/// Expand `${VAR}` in a connection URL, percent-encoding each value for the part of the URL it
/// lands in (user name, password, database name, query value), so a password with `/ ? @ # %`
/// connects. Host, port and a whole URL in one variable are taken as they are; so are SQLite
/// paths, which are file names, not URL-encoded.
pub fn interpolate_url(s: &str, what: &str) -> Result<String> {
    interpolate_url_with(s, what, &process_env)
}

/// `interpolate_url` with the variables from `vars`.
pub fn interpolate_url_with(s: &str, what: &str, vars: VarLookup) -> Result<String> {
    let parts = split_vars(s, what)?;
    // The URL's shape with each variable as one neutral character: where each one lands.
    let mut skeleton = String::new();
    let mut var_pos = Vec::new();
    for p in &parts {
        match p {
            Part::Lit(l) => skeleton.push_str(l),
            Part::Var(_) => {
                var_pos.push(skeleton.len());
                skeleton.push('x');
            }
        }
    }
    let encode_from = |pos: usize| -> bool {
        let Some(sep) = skeleton.find("://") else {
            return false;
        };
        let scheme = &skeleton[..sep];
        if pos < sep + 3 || scheme.starts_with("sqlite") {
            return false;
        }
        let a = sep + 3;
        let authority_end = skeleton[a..]
            .find(['/', '?', '#'])
            .map(|i| a + i)
            .unwrap_or(skeleton.len());
        if pos < authority_end {
            // userinfo yes; host and port no
            return skeleton[a..authority_end].rfind('@').is_some_and(|at| pos < a + at);
        }
        true
    };
    let mut out = String::new();
    let mut vi = 0;
    for p in &parts {
        match p {
            Part::Lit(l) => out.push_str(l),
            Part::Var(name) => {
                let val = env_var(name, what, vars)?;
                if encode_from(var_pos[vi]) {
                    out.extend(percent_encoding::utf8_percent_encode(&val, COMPONENT));
                } else {
                    out.push_str(&val);
                }
                vi += 1;
            }
        }
    }
    Ok(out)
}

/// The loaded, interpolated configuration of a project.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub name: String,
    pub migrations_dir: PathBuf,
    /// The source database. `None` when the source is a folder of files (`source_folder`): a
    /// `file://` URL is never a database URL.
    pub source: Option<DbUrl>,
    /// The folder a `file://` source names, absolute; file steps read relative names from it.
    pub source_folder: Option<PathBuf>,
    pub target: DbUrl,
    pub window: Option<WindowSection>,
    pub defaults: Defaults,
    /// `[buckets.NAME]` of cutover.toml.
    pub buckets: std::collections::BTreeMap<String, BucketSpec>,
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
            None => interpolate_url(&file.target.url, "[target] url")?,
        };
        let source_raw = match (&overrides.source, &file.source) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(s)) => Some(interpolate_url(&s.url, "[source] url")?),
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
        let (source, source_folder) = match source_raw {
            Some(raw) => match source_folder_of(dir, &raw)? {
                Some(folder) => (None, Some(folder)),
                None => (Some(DbUrl::new(raw)), None),
            },
            None => (None, None),
        };
        Ok(Config {
            dir: dir.to_path_buf(),
            name,
            migrations_dir,
            source,
            source_folder,
            target: DbUrl::new(target_raw),
            window: file.window,
            defaults: file.defaults,
            buckets: file.buckets,
        })
    }
}

/// The folder a `file://` source URL names: `file:///abs/export/` as it is, `file://export/`
/// relative to the project folder. `None` for any other URL (a database).
pub fn source_folder_of(project_dir: &Path, url: &str) -> Result<Option<PathBuf>> {
    let Some(rest) = url.strip_prefix("file://") else {
        return Ok(None);
    };
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8_lossy()
        .into_owned();
    if decoded.trim().is_empty() {
        return Err(eyre!(
            "[source] url = \"file://\" names no folder: write file:///absolute/path/ or file://relative/path/"
        ));
    }
    let path = PathBuf::from(&decoded);
    Ok(Some(if path.is_absolute() {
        path
    } else {
        project_dir.join(path)
    }))
}

impl Config {
    /// The source database a table or query step reads, or why there is none.
    pub fn source_db(&self) -> Result<&DbUrl> {
        match (&self.source, &self.source_folder) {
            (Some(url), _) => Ok(url),
            (None, Some(folder)) => Err(eyre!(
                "the project's source is a folder of files ({}), so it has no tables or queries: read a file with [source] file = \"...\", or pass --source with a database URL",
                folder.display()
            )),
            (None, None) => Err(eyre!(
                "this step reads the source, but no source is configured: add [source] url to cutover.toml or pass --source"
            )),
        }
    }

    /// Where a step's `[source] file` is: an absolute path as it is, a relative one in the
    /// source folder.
    pub fn source_file(&self, file: &str) -> Result<PathBuf> {
        let p = PathBuf::from(file);
        if p.is_absolute() {
            return Ok(p);
        }
        match &self.source_folder {
            Some(folder) => Ok(folder.join(p)),
            None => Err(eyre!(
                "[source] file = {file:?} is relative, but the project's source is not a folder: set [source] url = \"file:///path/to/export/\" in cutover.toml (or --source / CUTOVER_SOURCE), or give an absolute path"
            )),
        }
    }

    /// How the source is shown to an operator: a redacted database URL or the folder.
    pub fn source_shown(&self) -> Option<String> {
        match (&self.source, &self.source_folder) {
            (Some(url), _) => Some(url.redacted()),
            (None, Some(folder)) => Some(format!("file://{}", folder.display())),
            (None, None) => None,
        }
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
        let url = DbUrl::new("mysql://a:Vq7xLmZ2pw@h/d");
        for shown in [format!("{url:?}"), format!("{url}"), url.redacted()] {
            assert!(!shown.contains("Vq7xLmZ2pw") && !shown.contains("Vq7x"), "{shown}");
            assert!(shown.contains("a:***@h/d"), "{shown}");
        }
    }

    const PW: &str = "Zm9v/YmFy+==?x@y#z%41";

    fn enc(s: &str) -> String {
        percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
    }

    /// No fragment of the password of 4+ characters survives.
    fn assert_clean(text: &str) {
        let chars: Vec<char> = PW.chars().collect();
        for w in chars.windows(4) {
            let frag: String = w.iter().collect();
            assert!(!text.contains(&frag), "{frag:?} leaked in {text:?}");
        }
        assert!(!text.contains(&enc(PW)), "{text}");
    }

    #[test]
    fn redacts_hostile_passwords() {
        let good = DbUrl::new(format!("postgres://sec:{}@127.0.0.1:5432/x?sslmode=disable", enc(PW)));
        assert_eq!(good.redacted(), "postgres://sec:***@127.0.0.1:5432/x?sslmode=disable");
        // Unencoded, as a user may type it: the parser refuses it, the redaction does not.
        let bad = DbUrl::new(format!("postgres://sec:{PW}@127.0.0.1:1/x"));
        assert_clean(&bad.redacted());
        assert!(bad.redacted().contains("127.0.0.1:1/x"), "{}", bad.redacted());
        // The issue's reproduction: a `/` in the password.
        let r = redact_url("cannot connect to postgres://sec:ab/cd@127.0.0.1:1/x: refused");
        assert_eq!(r, "cannot connect to postgres://sec:***@127.0.0.1:1/x: refused");
        let r = redact_url("mysql://root:a?b#c@db/x and then mysql://u:p1234@h/y.");
        assert_eq!(r, "mysql://root:***@db/x and then mysql://u:***@h/y.");
        // Free text that mentions the password in any spelling.
        // As written, encoded, and as a form decoder reads it (`+` is a space, %41 is `A`).
        for spelling in [PW.to_string(), enc(PW), "Zm9v/YmFy ==?x@y#zA".to_string()] {
            let msg = format!("driver said: password {spelling} rejected; url postgres://sec:{spelling}@h/d");
            assert_clean(&good.redact(&msg));
        }
        assert_eq!(
            redact_url("postgres://h/x?user=a&password=s3cret&sslpassword=zz"),
            "postgres://h/x?user=a&password=***&sslpassword=***"
        );
        assert_eq!(
            redact_url("postgres://u@h:5432/x?host=/tmp/a"),
            "postgres://u@h:5432/x?host=/tmp/a"
        );
    }

    #[test]
    fn env_values_are_encoded_where_they_land() {
        let vars = |n: &str| {
            match n {
                "CUTOVER_TEST_PW_2" => Some(PW),
                "CUTOVER_TEST_HOST_2" => Some("db.example:5433"),
                "CUTOVER_TEST_SOCK_2" => Some("/tmp/sock dir"),
                "CUTOVER_TEST_URL_2" => Some("postgres://a:b@c/d"),
                _ => None,
            }
            .map(str::to_string)
        };
        let interpolate_url = |s: &str, w: &str| interpolate_url_with(s, w, &vars);
        let u = interpolate_url(
            "postgres://sec:${CUTOVER_TEST_PW_2}@${CUTOVER_TEST_HOST_2}/x?host=${CUTOVER_TEST_SOCK_2}",
            "t",
        )
        .unwrap();
        assert_eq!(
            u,
            format!("postgres://sec:{}@db.example:5433/x?host=%2Ftmp%2Fsock%20dir", enc(PW))
        );
        let parsed = url::Url::parse(&u).unwrap();
        let pw = percent_encoding::percent_decode_str(parsed.password().unwrap())
            .decode_utf8()
            .unwrap();
        assert_eq!(pw, PW);
        assert_eq!(
            interpolate_url("${CUTOVER_TEST_URL_2}", "t").unwrap(),
            "postgres://a:b@c/d"
        );
        assert_eq!(
            interpolate_url("sqlite://${CUTOVER_TEST_SOCK_2}/t.db", "t").unwrap(),
            "sqlite:///tmp/sock dir/t.db"
        );
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
    fn a_file_source_is_a_folder_never_a_database() {
        let text = "[source]\nurl = \"file:///srv/export/\"\n[target]\nurl = \"sqlite://t.db\"\n";
        let c = Config::parse(Path::new("/p"), text, &Overrides::default()).unwrap();
        assert!(c.source.is_none());
        assert_eq!(c.source_folder.as_deref(), Some(Path::new("/srv/export/")));
        assert_eq!(c.source_file("a.csv").unwrap(), PathBuf::from("/srv/export/a.csv"));
        assert_eq!(c.source_file("/x/y.csv").unwrap(), PathBuf::from("/x/y.csv"));
        let err = c.source_db().unwrap_err().to_string();
        assert!(err.contains("folder of files"), "{err}");
        let over = Overrides {
            source: Some("file://export".into()),
            target: None,
        };
        let c = Config::parse(Path::new("/p"), text, &over).unwrap();
        assert_eq!(c.source_folder.as_deref(), Some(Path::new("/p/export")));
        let db = Config::parse(
            Path::new("/p"),
            "[source]\nurl = \"sqlite://l.db\"\n[target]\nurl = \"sqlite://t.db\"\n",
            &Overrides::default(),
        )
        .unwrap();
        assert!(db.source_folder.is_none() && db.source.is_some());
        let err = db.source_file("a.csv").unwrap_err().to_string();
        assert!(err.contains("not a folder"), "{err}");
        assert_eq!(db.source_file("/abs/a.csv").unwrap(), PathBuf::from("/abs/a.csv"));
    }

    #[test]
    fn env_interpolation() {
        let vars = |n: &str| (n == "CUTOVER_TEST_PW_1").then(|| "pw".to_string());
        assert_eq!(
            interpolate_env_with("postgres://u:${CUTOVER_TEST_PW_1}@h/d", "x", &vars).unwrap(),
            "postgres://u:pw@h/d"
        );
        let err = interpolate_env_with("${CUTOVER_TEST_MISSING_9}", "[target] url", &vars).unwrap_err();
        assert!(err.to_string().contains("CUTOVER_TEST_MISSING_9"));
    }
}
