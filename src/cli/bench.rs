//! `cutover bench`: a realistic data step over a generated `patients`-like source, timed.
//! Six transforms, four validations and an ID map per row, like a real clinic step.

use crate::engine::config::Overrides;
use crate::engine::project::Project;
use crate::engine::protocol::{Command, EngineEvent, RunOptions};
use color_eyre::eyre::{Result, eyre};
use std::path::PathBuf;
use std::sync::Arc;

/// `cutover bench` options.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Rows of the generated source.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Target URL (default: a SQLite file in the bench folder).
    #[arg(long = "target-url")]
    pub target_url: Option<String>,
    /// Folder for the bench project (must not exist).
    #[arg(long, default_value = "cutover-bench")]
    pub dir: PathBuf,
    /// Rows per batch (one transaction each).
    #[arg(long, default_value_t = 5000)]
    pub batch_size: usize,
    /// A plain copy step instead: every column as it is, no transforms, no validation, no ID
    /// map (the work of pgloader or a COPY pipe).
    #[arg(long)]
    pub plain: bool,
    /// Read this existing bench source (a SQLite file from an earlier bench's folder) instead
    /// of generating one, so repeated runs read the same bytes.
    #[arg(long = "source-db")]
    pub source_db: Option<PathBuf>,
}

/// The plain step's target: the source's columns, typed as the pipe's table.
const PLAIN_SCHEMA_UP: &str = "CREATE TABLE patients_copy (
  id BIGINT PRIMARY KEY, first_name TEXT, last_name TEXT, email TEXT, phone TEXT, dob TEXT,
  gender TEXT, allergies TEXT, created_at TEXT
);
";

const PLAIN_STEP: &str = r#"kind = "data"
[source]
table = "patients"
key = "id"

[target]
table = "patients_copy"
# Rollback finds the rows it wrote by this key (no ID map in a plain copy).
natural_key = ["id"]

[[fields]]
target = "id"
source = "id"
[[fields]]
target = "first_name"
source = "first_name"
[[fields]]
target = "last_name"
source = "last_name"
[[fields]]
target = "email"
source = "email"
[[fields]]
target = "phone"
source = "phone"
[[fields]]
target = "dob"
source = "dob"
[[fields]]
target = "gender"
source = "gender"
[[fields]]
target = "allergies"
source = "allergies"
[[fields]]
target = "created_at"
source = "created_at"
"#;

const SCHEMA_UP: &str = "CREATE TABLE persons (
  id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, first_name TEXT, last_name TEXT, email TEXT,
  phone TEXT, date_of_birth DATE, gender TEXT, allergies TEXT, created_at TEXT
);
";

const STEP: &str = r#"kind = "data"
[source]
table = "patients"
key = "id"

[target]
table = "persons"

[id_map]
column = "id"
map = "patients"

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "first_name"
source = "first_name"
transforms = ["trim"]
validate = [{ rule = "required" }, { rule = "max_length", max = 100 }]

[[fields]]
target = "last_name"
source = "last_name"
transforms = ["trim"]

[[fields]]
target = "email"
source = "email"
transforms = ["trim", "lower"]
validate = [{ rule = "email", level = "warning", null_on_warning = true }]

[[fields]]
target = "phone"
source = "phone"
transforms = [{ phone = { country = "US", on_error = "null_warn" } }]

[[fields]]
target = "date_of_birth"
source = "dob"
transforms = [{ date = { formats = ["%Y-%m-%d", "%m/%d/%Y"] } }]
validate = [{ rule = "not_in_future" }]

[[fields]]
target = "gender"
source = "gender"
transforms = ["gender_normalize"]

[[fields]]
target = "allergies"
source = "allergies"
transforms = [{ split = { separator = "," } }]

[[fields]]
target = "created_at"
source = "created_at"
"#;

fn source_sql(rows: u64) -> String {
    format!(
        "CREATE TABLE patients (id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, email TEXT, phone TEXT, dob TEXT, gender TEXT, allergies TEXT, created_at TEXT);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
         INSERT INTO patients SELECT x,
           ' ' || substr('AnnaBorisCarlaDavidEmmaFrankGinaHugo', (x % 8) * 4 + 1, 4) || ' ',
           'Lastname' || (x % 1000),
           ' User' || x || '@Example.ORG ',
           CASE WHEN x % 50 = 0 THEN 'n/a' ELSE '(555) ' || (200 + x % 700) || '-' || printf('%04d', x % 10000) END,
           CASE WHEN x % 3 = 0 THEN printf('%02d/%02d/%04d', 1 + x % 12, 1 + x % 28, 1950 + x % 70)
                ELSE printf('%04d-%02d-%02d', 1950 + x % 70, 1 + x % 12, 1 + x % 28) END,
           substr('MFmfUo', 1 + x % 6, 1),
           CASE WHEN x % 4 = 0 THEN '' ELSE 'peanuts, latex ,, penicillin' END,
           '2020-01-01T00:00:00Z'
         FROM c;"
    )
}

fn peak_rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub async fn run(args: &BenchArgs, json: bool) -> Result<i32> {
    let (dir, rows, batch_size) = (args.dir.as_path(), args.rows, args.batch_size);
    if dir.exists() {
        return Err(eyre!(
            "{} exists; give bench a new folder (or remove it)",
            dir.display()
        ));
    }
    let (schema, down, step) = if args.plain {
        (PLAIN_SCHEMA_UP, "DROP TABLE patients_copy;\n", PLAIN_STEP)
    } else {
        (SCHEMA_UP, "DROP TABLE persons;\n", STEP)
    };
    std::fs::create_dir_all(dir.join("migrations/20250101T000000_schema"))?;
    std::fs::create_dir_all(dir.join("migrations/20250101T000100_persons"))?;
    std::fs::write(dir.join("migrations/20250101T000000_schema/up.sql"), schema)?;
    std::fs::write(dir.join("migrations/20250101T000000_schema/down.sql"), down)?;
    std::fs::write(dir.join("migrations/20250101T000100_persons/step.toml"), step)?;
    let target = args.target_url.as_deref().unwrap_or("sqlite://target.db");
    let source_url = match &args.source_db {
        Some(p) => {
            let p = std::fs::canonicalize(p).map_err(|e| eyre!("--source-db {}: {e}", p.display()))?;
            format!("sqlite://{}", p.display())
        }
        None => "sqlite://source.db".to_string(),
    };
    std::fs::write(
        dir.join("cutover.toml"),
        format!(
            "[project]\nname = \"bench\"\n[source]\nurl = \"{source_url}\"\n[target]\nurl = \"{target}\"\n[defaults]\nbatch_size = {batch_size}\ncontinue_on_error = true\n"
        ),
    )?;
    // Build the source with SQLite itself: fast, and nothing of it passes through our memory.
    let t_gen = std::time::Instant::now();
    if args.source_db.is_none() {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join("source.db"))
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(source_sql(rows)))
            .execute(&pool)
            .await?;
        pool.close().await;
    }
    let gen_secs = t_gen.elapsed().as_secs_f64();
    let rss_before = peak_rss_kb().unwrap_or(0);
    let project = Arc::new(Project::load(dir, &Overrides::default())?);
    let mut engine = crate::engine::runner::spawn(project);
    engine
        .commands
        .send(Command::Start(RunOptions::default()))
        .await
        .map_err(|_| eyre!("engine stopped"))?;
    let mut result = None;
    let mut error = None;
    while let Some(ev) = engine.events.recv().await {
        match ev {
            EngineEvent::StepFinished {
                version,
                counts,
                duration_ms,
                ..
            } if version == "20250101T000100" => {
                result = Some((counts, duration_ms));
            }
            EngineEvent::Failed { error: e, .. } => error = Some(e),
            EngineEvent::Finished { .. } => break,
            _ => {}
        }
    }
    let (counts, ms) = result.ok_or_else(|| eyre!("the bench step did not finish: {}", error.unwrap_or_default()))?;
    let secs = (ms as f64 / 1000.0).max(1e-3);
    let rate = counts.source as f64 / secs;
    let peak = peak_rss_kb().unwrap_or(0);
    let target_kind = if target.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"rows": counts.source, "target": target_kind, "plain": args.plain, "seconds": secs, "rows_per_sec": rate, "peak_rss_kb": peak, "rss_before_run_kb": rss_before, "counts": counts, "source_generation_seconds": gen_secs, "batch_size": batch_size})
        );
    } else {
        println!(
            "bench: {} rows, SQLite source -> {target_kind} target, batch {batch_size}{}",
            counts.source,
            if args.plain { ", plain copy step" } else { "" }
        );
        println!("  {}", counts.equation());
        println!("  data step: {secs:.2} s, {rate:.0} rows/s");
        println!(
            "  peak RSS: {:.1} MB (before the run: {:.1} MB)",
            peak as f64 / 1024.0,
            rss_before as f64 / 1024.0
        );
        println!(
            "  (source generated in {gen_secs:.1} s; project left in {})",
            dir.display()
        );
    }
    Ok(0)
}
