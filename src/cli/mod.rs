//! The headless face: `cutover <verb> [--json]` over the same engine and events as the console.

pub mod assess;
pub mod backup;
pub mod bench;
pub mod check;
pub mod exit;
pub mod import_scenario;
pub mod output;
pub mod preview;
pub mod rejects;
pub mod report;
pub mod review;
pub mod sync;
pub mod templates;
pub mod verify;

use crate::cli::rejects::RejectsAction;
use crate::engine::config::{CONFIG_FILE, Overrides, config_template};
use crate::engine::db::{Db, Role};
use crate::engine::plan::compute_status;
use crate::engine::project::{Project, new_version, sanitise_name};
use crate::engine::protocol::{Command, DownTarget, EngineEvent, Outcome, RunOptions};
use crate::engine::runner;
use crate::engine::store::ledger;
use crate::engine::store::lock;
use crate::metrics::Metrics;
use clap::{Parser, Subcommand, ValueEnum};
use color_eyre::eyre::{Result, eyre};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Exit codes and environment, at the end of `--help` (the README has the same table).
const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  a step failed, or an error (configuration, connection, bad input)
  2  command-line usage error
  3  the target is locked by another run (the message names the holder)
  4  refused: pre-flight found a problem, a modified applied migration, a step left failed
     or running, out of order, `down` without --yes
  5  verify found a failing check
  6  the run was aborted at a batch boundary (ctrl-c); `cutover up` resumes it

Environment:
  CUTOVER_SOURCE  source database URL (like --source; overrides cutover.toml)
  CUTOVER_TARGET  target database URL (like --target; overrides cutover.toml)
  CUTOVER_LOG     log filter (tracing EnvFilter syntax, e.g. info or cutover=debug)
  NO_COLOR        set and not empty: no colour in the console or on stderr
  ${VAR}          any variable a cutover.toml value names (passwords stay out of files)";

#[derive(Parser, Debug)]
#[command(
    name = "cutover",
    version,
    about = "A terminal migration console: move a live system's data into a new schema, step by step.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Project folder (holds cutover.toml).
    #[arg(short = 'C', long = "project", global = true, default_value = ".")]
    pub project: PathBuf,
    /// Source database URL, overriding cutover.toml.
    #[arg(long, global = true, env = "CUTOVER_SOURCE", hide_env_values = true)]
    pub source: Option<String>,
    /// Target database URL, overriding cutover.toml.
    #[arg(long, global = true, env = "CUTOVER_TARGET", hide_env_values = true)]
    pub target: Option<String>,
    /// Machine-readable output: JSON (NDJSON events for runs).
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Serve Prometheus metrics of the run on http://ADDR/metrics (up, down, console), e.g.
    /// 127.0.0.1:9090; port 0 picks a free port (printed on stderr).
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// With --metrics-addr: after the run ends, keep answering scrapes this many seconds, so a
    /// scraper sees the final values (ctrl-c ends it sooner).
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        default_value_t = 0,
        requires = "metrics_addr"
    )]
    pub metrics_linger: u64,
    #[command(subcommand)]
    pub command: Option<Verb>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum CreateKind {
    Sql,
    Data,
    Merge,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Create a new project folder with cutover.toml and migrations/.
    Init {
        /// The folder to create (it must not hold a cutover.toml yet).
        dir: PathBuf,
    },
    /// Add a migration folder from a template.
    Create {
        /// The migration's name (the folder is VERSION_NAME).
        name: String,
        /// sql: up.sql/down.sql; data: a step.toml that moves rows; merge: a step.toml that
        /// merges two sources into one entity table.
        #[arg(long, value_enum, default_value = "sql")]
        kind: CreateKind,
    },
    /// Open the console (also: plain `cutover` in a project folder).
    Console,
    /// Show every migration and its state.
    Status,
    /// Apply pending migrations.
    Up {
        /// Stop after this version.
        #[arg(long)]
        to: Option<String>,
        /// Show what would run (schema SQL; data counts) and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply pending migrations older than the newest applied one.
        #[arg(long)]
        allow_out_of_order: bool,
        /// Keep going past rejected rows (they go to the reject store).
        #[arg(long)]
        continue_on_error: bool,
    },
    /// Revert applied migrations, newest first.
    Down {
        /// Revert everything above this version.
        #[arg(long, conflicts_with = "all")]
        to: Option<String>,
        /// Revert every applied migration.
        #[arg(long)]
        all: bool,
        /// Confirm: down changes the target.
        #[arg(long)]
        yes: bool,
        /// Show what would be undone and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The ledger's event log (runs, failures, rollbacks, decisions).
    History {
        /// The newest this many events.
        #[arg(long, default_value_t = 200)]
        limit: i64,
    },
    /// Mark migrations up to VERSION as applied without running them (existing databases).
    Baseline { version: String },
    /// Clear steps left failed/running and record changed checksums.
    Repair,
    /// Build a demo project with a generated legacy clinic database, and run it.
    Demo {
        /// The demo project's folder (default: ./cutover-demo, with --import
        /// ./cutover-import-demo; an existing one is reused).
        dir: Option<PathBuf>,
        /// Patients in the generated legacy database (with --import: rows of patients.csv;
        /// the orders file gets 2.5 per patient).
        #[arg(long, default_value_t = 20_000)]
        rows: u64,
        /// The import scenario instead: a folder of exported files (patients.csv,
        /// orders.xlsx) into patients and orders.
        #[arg(long)]
        import: bool,
        /// Seed of the generated data (the same seed gives the same database).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Do not open the console; print the result instead.
        #[arg(long)]
        no_console: bool,
    },
    /// The reject store: rows that did not go through, with their reasons.
    Rejects {
        #[command(subcommand)]
        action: RejectsAction,
    },
    /// Time a realistic data step (six transforms, four validations, ID map) over N rows.
    Bench(crate::cli::bench::BenchArgs),
    /// Check the target against the source: accounting, expectations, checksums, foreign keys, documents.
    Verify,
    /// Before the window: both servers reachable, versions, privileges, disk space, every step loads.
    Check,
    /// What `up` would do to the pending steps (rows written, rejected by rule, duplicates,
    /// unresolved references, duration), read-only.
    Assess {
        /// Read at least N rows of each step (whole batches) instead of its whole source.
        #[arg(long)]
        sample: Option<u64>,
    },
    /// The discrepancy review queue of merge steps.
    Review {
        #[command(subcommand)]
        action: crate::cli::review::ReviewAction,
    },
    /// Incremental sync: apply the source rows changed since each [sync] step's mark (upserts,
    /// soft deletes, rejects as usual), once or every DURATION until ctrl-c.
    Sync(sync::SyncArgs),
    /// Look at a file: headers, inferred types, rows, samples; with --into, a suggested mapping.
    Preview(crate::cli::preview::PreviewArgs),
    /// A run's report: who ran what when, per-step accounting, rejects by rule, verify, the window.
    Report(crate::cli::report::ReportArgs),
    /// Back up the target (SQLite: VACUUM INTO; PostgreSQL: pg_dump; MariaDB: mariadb-dump) and
    /// record the file and its checksum in the ledger.
    Backup {
        /// The backup file (default: backups/<timestamp>.sqlite|.dump|.sql in the project folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Replace the target with a backup (checked against the checksum the ledger recorded).
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Confirm: restore replaces everything in the target.
        #[arg(long)]
        yes: bool,
    },
    /// Generate a legacy clinic database (for tests and benchmarks); `generate import DIR`
    /// writes the import scenario's export folder instead.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Generate {
        #[command(subcommand)]
        what: Option<crate::cli::import_scenario::GenerateWhat>,
        /// The SQLite file to write (a manifest is written beside it).
        #[arg(required = true)]
        path: Option<PathBuf>,
        /// Patients in the generated database (the other tables scale with it).
        #[arg(long, default_value_t = 20_000)]
        patients: u64,
        /// Seed of the generated data (the same seed gives the same database).
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

pub fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUTOVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},sqlx=error")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(stderr_in_colour())
        .try_init();
}

/// Colour codes on stderr only for a person at a terminal: not when stderr is a file or a
/// pipe (logs, CI), and never with `NO_COLOR` set to anything but the empty string.
pub fn stderr_in_colour() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn overrides(cli: &Cli) -> Overrides {
    Overrides {
        source: cli.source.clone(),
        target: cli.target.clone(),
    }
}

/// Entry point; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let json = cli.json;
    let console_mode = match &cli.command {
        None => cli.project.join(CONFIG_FILE).exists(),
        Some(Verb::Console) => true,
        Some(Verb::Demo { no_console, .. }) => {
            !no_console && !json && std::io::IsTerminal::is_terminal(&std::io::stdout())
        }
        _ => false,
    };
    if !console_mode {
        init_tracing(cli.verbose);
    }
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            let msg = crate::engine::config::redact_url(&format!("{e:#}"));
            if json {
                println!("{}", serde_json::json!({"event": "error", "error": msg}));
            } else {
                eprintln!("error: {msg}");
            }
            exit::FAILED
        }
    }
}

fn load(cli: &Cli) -> Result<Arc<Project>> {
    Ok(Arc::new(Project::load(&cli.project, &overrides(cli))?))
}

async fn dispatch(cli: Cli) -> Result<i32> {
    if cli.metrics_addr.is_some() && !serves_metrics(cli.command.as_ref()) {
        return Err(eyre!(
            "--metrics-addr serves the metrics of a run: use it with up, down, sync or console"
        ));
    }
    let Some(verb) = &cli.command else {
        if cli.project.join(CONFIG_FILE).exists() {
            return console(&cli, &cli.project).await;
        }
        return Err(eyre!(
            "no cutover.toml in {}: run `cutover init DIR`, `cutover demo`, or pass -C DIR (see --help)",
            cli.project.display()
        ));
    };
    match verb {
        Verb::Init { dir } => init(dir, cli.json),
        Verb::Create { name, kind } => create(&cli, name, *kind),
        Verb::Status => status(&cli).await,
        Verb::Console => console(&cli, &cli.project).await,
        Verb::Up {
            to,
            dry_run,
            allow_out_of_order,
            continue_on_error,
        } => {
            let project = load(&cli)?;
            let metrics = serve_metrics(&cli, &project)?;
            let opts = RunOptions {
                to: to.clone(),
                only_next: false,
                only: None,
                dry_run: *dry_run,
                allow_out_of_order: *allow_out_of_order,
                continue_on_error: if *continue_on_error { Some(true) } else { None },
            };
            let code = drive_watched(project, cli.json, Command::Start(opts), metrics.as_ref()).await;
            linger(&cli, metrics.as_ref()).await;
            Ok(code)
        }
        Verb::Down { to, all, yes, dry_run } => {
            let project = load(&cli)?;
            let sel = match (to, all) {
                (Some(v), _) => DownTarget::To(v.clone()),
                (None, true) => DownTarget::All,
                (None, false) => DownTarget::Last,
            };
            if !yes && !dry_run {
                let msg = "down changes the target: add --yes to confirm (or --dry-run to see what it would undo)";
                if cli.json {
                    println!("{}", serde_json::json!({"event": "error", "error": msg}));
                } else {
                    eprintln!("refused: {msg}");
                }
                return Ok(exit::REFUSED);
            }
            let metrics = serve_metrics(&cli, &project)?;
            let code = drive_watched(
                project.clone(),
                cli.json,
                Command::Rollback {
                    target: sel,
                    dry_run: *dry_run,
                },
                metrics.as_ref(),
            )
            .await;
            linger(&cli, metrics.as_ref()).await;
            // A rollback proves itself: verify compares each rolled-back table with its
            // checksum from before the step.
            if code == exit::OK && !dry_run {
                return verify::after_rollback(&project, cli.json).await;
            }
            Ok(code)
        }
        Verb::History { limit } => history(&cli, *limit).await,
        Verb::Baseline { version } => {
            let project = load(&cli)?;
            let marked = crate::engine::ops::repair::baseline(&project, version).await?;
            output::print_list(cli.json, "baselined", &marked);
            Ok(exit::OK)
        }
        Verb::Repair => {
            let project = load(&cli)?;
            let actions = crate::engine::ops::repair::repair(&project).await?;
            output::print_list(cli.json, "repaired", &actions);
            Ok(exit::OK)
        }
        Verb::Demo {
            dir,
            rows,
            seed,
            no_console,
            import,
        } => {
            let default_dir = if *import { "cutover-import-demo" } else { "cutover-demo" };
            let dir = dir.clone().unwrap_or_else(|| PathBuf::from(default_dir));
            if *import {
                crate::cli::import_scenario::create_demo(&dir, *rows, *seed, cli.json)?;
            } else {
                crate::demo::create(&dir, *rows, *seed, cli.json).await?;
            }
            // The console needs a terminal; piped or with --no-console the demo runs headless.
            if !no_console && !cli.json && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return console(&cli, &dir).await;
            }
            let project = Arc::new(Project::load(&dir, &overrides(&cli))?);
            let code = drive(project.clone(), cli.json, Command::Start(RunOptions::default())).await;
            if !cli.json {
                print_project_status(&project, false).await?;
                println!(
                    "\nThe demo project is in {}; try `cutover -C {} status`.",
                    dir.display(),
                    dir.display()
                );
            }
            Ok(code)
        }
        Verb::Bench(args) => crate::cli::bench::run(args, cli.json).await,
        Verb::Review { action } => {
            let project = load(&cli)?;
            crate::cli::review::run(&project, action, cli.json).await
        }
        Verb::Rejects { action } => {
            let project = load(&cli)?;
            crate::cli::rejects::run(&project, action, cli.json).await
        }
        Verb::Verify => {
            let project = load(&cli)?;
            crate::cli::verify::run(&project, cli.json).await
        }
        Verb::Check => crate::cli::check::run(&cli.project, &overrides(&cli), cli.json).await,
        Verb::Assess { sample } => {
            let project = load(&cli)?;
            crate::cli::assess::run(&project, *sample, cli.json).await
        }
        Verb::Report(args) => {
            let project = load(&cli)?;
            crate::cli::report::run(&project, args, cli.json).await
        }
        Verb::Backup { out } => {
            let project = load(&cli)?;
            crate::cli::backup::backup(&project, out.as_deref(), cli.json).await
        }
        Verb::Restore { file, yes } => {
            let project = load(&cli)?;
            crate::cli::backup::restore(&project, file, *yes, cli.json).await
        }
        Verb::Sync(args) => {
            let project = load(&cli)?;
            let metrics = serve_metrics(&cli, &project)?;
            let code = sync::run(project, cli.json, args, metrics.as_ref()).await;
            linger(&cli, metrics.as_ref()).await;
            code
        }
        Verb::Preview(args) => crate::cli::preview::run(&cli.project, &overrides(&cli), cli.json, args).await,
        Verb::Generate { what: Some(what), .. } => crate::cli::import_scenario::generate(what, cli.json),
        Verb::Generate {
            what: None,
            path,
            patients,
            seed,
        } => {
            let Some(path) = path else {
                return Err(eyre!(
                    "generate needs the SQLite file to write (or `generate import DIR`)"
                ));
            };
            let cfg = crate::generator::GeneratorConfig {
                patients: *patients,
                seed: *seed,
                ..Default::default()
            };
            let manifest = crate::generator::generate(path, &cfg).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&manifest)?);
            } else {
                println!("generated {} ({} patients, seed {})", path.display(), patients, seed);
            }
            Ok(exit::OK)
        }
    }
}

/// The verbs whose runs `--metrics-addr` watches (a bare `cutover` opens the console).
fn serves_metrics(verb: Option<&Verb>) -> bool {
    matches!(
        verb,
        None | Some(Verb::Up { .. } | Verb::Down { .. } | Verb::Sync(_) | Verb::Console)
    )
}

/// Start the metrics listener when `--metrics-addr` asks for one: before any work, so a taken
/// port stops the command with nothing done.
fn serve_metrics(cli: &Cli, project: &Project) -> Result<Option<Metrics>> {
    let Some(addr) = cli.metrics_addr else {
        return Ok(None);
    };
    let metrics = Metrics::serve(addr, project)?;
    if !cli.json {
        eprintln!("metrics: http://{}/metrics", metrics.addr());
    } else {
        // The address (port 0 picks one) as its own line, for scripts.
        println!(
            "{}",
            serde_json::json!({"event": "metrics", "addr": metrics.addr().to_string()})
        );
    }
    Ok(Some(metrics))
}

/// `--metrics-linger`: keep answering scrapes for a while after the run, so the last values
/// (the ledger's) reach the scraper.
async fn linger(cli: &Cli, metrics: Option<&Metrics>) {
    let (Some(m), secs @ 1..) = (metrics, cli.metrics_linger) else {
        return;
    };
    if !cli.json {
        eprintln!(
            "metrics: the final values stay on http://{}/metrics for {secs}s (ctrl-c ends it)",
            m.addr()
        );
    }
    tokio::select! {
        _ = tokio::time::sleep(std::time::Duration::from_secs(secs)) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Open the console on the project in `dir`; logs go to its log pane and `cutover.log`.
async fn console(cli: &Cli, dir: &Path) -> Result<i32> {
    let project = Arc::new(Project::load(dir, &overrides(cli))?);
    let metrics = match cli.metrics_addr {
        Some(addr) => Some(Metrics::serve(addr, &project)?),
        None => None,
    };
    crate::console::init_logging(&project.config.dir)?;
    if let Some(m) = &metrics {
        tracing::info!("metrics: http://{}/metrics", m.addr());
    }
    crate::console::run(project, metrics).await
}

/// Start an engine, send it one command, print its events until the run finishes; returns the
/// exit code.
async fn drive(project: Arc<Project>, json: bool, command: Command) -> i32 {
    drive_watched(project, json, command, None).await
}

/// `drive`, every event also shown to the metrics exporter.
async fn drive_watched(project: Arc<Project>, json: bool, command: Command, metrics: Option<&Metrics>) -> i32 {
    let mut engine = runner::spawn(project.clone());
    // The size of each step to run, for the metrics' ETA (the console asks the same at start).
    let count_sources = metrics.is_some() && matches!(command, Command::Start(RunOptions { dry_run: false, .. }));
    if count_sources && engine.commands.send(Command::CountSources).await.is_err() {
        return exit::FAILED;
    }
    if engine.commands.send(command).await.is_err() {
        return exit::FAILED;
    }
    // ctrl-c stops the run at the next batch boundary instead of killing it mid-write.
    let commands = engine.commands.clone();
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupt: stopping at the next batch boundary (ctrl-c again to kill)");
            let _ = commands.send(Command::Abort).await;
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let mut printer = output::EventPrinter::new(json);
    let mut code = exit::FAILED;
    let mut run: Option<(String, bool)> = None;
    while let Some(ev) = engine.events.recv().await {
        if let Some(m) = metrics {
            m.observe(&ev);
        }
        if let EngineEvent::Planned { run_id, dry_run, .. } = &ev {
            run = Some((run_id.clone(), *dry_run));
        }
        // A step's end sums its rejects up per rule: from the store (all of this run's, where
        // the events are capped per batch), unless a dry run kept none.
        let ended = match &ev {
            EngineEvent::StepFinished {
                version,
                dry_run: false,
                ..
            }
            | EngineEvent::Aborted { version, .. } => Some(version.clone()),
            EngineEvent::Failed { version: Some(v), .. } => Some(v.clone()),
            _ => None,
        };
        if !json
            && let (Some(version), Some((run_id, false))) = (ended, &run)
            && let Some(by_rule) = rejects_by_rule(&project, &version, run_id).await
        {
            printer.rejects_by_rule = by_rule;
        }
        // The counts were asked for the metrics only: not part of this command's output.
        if !matches!(ev, EngineEvent::SourceCounts { .. }) {
            printer.print(&ev);
        }
        if let EngineEvent::Finished { outcome, .. } = &ev {
            code = match outcome {
                Outcome::Done => exit::OK,
                Outcome::Locked => exit::LOCKED,
                Outcome::Refused => exit::REFUSED,
                Outcome::Aborted => exit::ABORTED,
                Outcome::Failed => exit::FAILED,
            };
            break;
        }
    }
    interrupt.abort();
    code
}

/// This run's rejects of one step, per rule, from the reject store; None when it cannot be
/// read (the printer then sums the events it saw).
async fn rejects_by_rule(
    project: &Project,
    version: &str,
    run_id: &str,
) -> Option<std::collections::BTreeMap<String, u64>> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target)
        .await
        .ok()?;
    // Counted by the database: listing every reject (each with its row) to count them held
    // the whole run's rejects in memory at the end of a big import.
    let counted = crate::engine::store::runs::rejects_by_rule(&target, run_id).await;
    target.close().await;
    let by_rule: std::collections::BTreeMap<String, u64> = counted
        .ok()?
        .into_iter()
        .filter(|(v, _, _)| v == version)
        .map(|(_, rule, n)| (rule, n))
        .collect();
    Some(by_rule)
}

fn init(dir: &Path, json: bool) -> Result<i32> {
    let cfg = dir.join(CONFIG_FILE);
    if cfg.exists() {
        return Err(eyre!(
            "{} already exists; cutover will not overwrite a project",
            cfg.display()
        ));
    }
    std::fs::create_dir_all(dir.join("migrations")).map_err(|e| eyre!("cannot create {}: {e}", dir.display()))?;
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "cutover".into());
    std::fs::write(&cfg, config_template(&name)).map_err(|e| eyre!("cannot write {}: {e}", cfg.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"created": cfg.display().to_string(), "migrations": dir.join("migrations").display().to_string()})
        );
    } else {
        println!("created {} and {}/", cfg.display(), dir.join("migrations").display());
        println!(
            "next: edit the [source] and [target] urls, then `cutover -C {} create NAME --kind sql|data|merge`",
            dir.display()
        );
    }
    Ok(exit::OK)
}

fn create(cli: &Cli, name: &str, kind: CreateKind) -> Result<i32> {
    let project = Project::load(&cli.project, &overrides(cli))?;
    let name = sanitise_name(name)?;
    let mut now = chrono::Utc::now();
    // Two creates in one second must not share a version.
    while project.steps.iter().any(|s| s.version == new_version(now)) {
        now += chrono::Duration::seconds(1);
    }
    let dir = project
        .config
        .migrations_dir
        .join(format!("{}_{name}", new_version(now)));
    std::fs::create_dir_all(&dir).map_err(|e| eyre!("cannot create {}: {e}", dir.display()))?;
    let files: Vec<(&str, String)> = match kind {
        CreateKind::Sql => vec![
            ("up.sql", templates::schema_up(&name)),
            ("down.sql", templates::schema_down(&name)),
        ],
        CreateKind::Data => vec![("step.toml", templates::DATA_STEP.to_string())],
        CreateKind::Merge => vec![("step.toml", templates::MERGE_STEP.to_string())],
    };
    for (f, text) in &files {
        std::fs::write(dir.join(f), text).map_err(|e| eyre!("cannot write {}: {e}", dir.join(f).display()))?;
    }
    if cli.json {
        println!(
            "{}",
            serde_json::json!({"created": dir.display().to_string(), "files": files.iter().map(|f| f.0).collect::<Vec<_>>()})
        );
    } else {
        println!(
            "created {}/ ({})",
            dir.display(),
            files.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(exit::OK)
}

async fn status(cli: &Cli) -> Result<i32> {
    print_project_status(&*load(cli)?, cli.json).await
}

async fn print_project_status(project: &Project, json: bool) -> Result<i32> {
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let rows = ledger::load(&target).await?;
    let holder = lock::current_holder(
        &target,
        std::time::Duration::from_secs(project.config.defaults.lock_stale_after_secs),
    )
    .await?;
    target.close().await;
    let mut status = compute_status(&project.steps, &rows);
    crate::engine::plan::mark_interrupted(&mut status, holder.is_some());
    output::print_status(json, project, &status, holder.as_ref());
    Ok(exit::OK)
}

async fn history(cli: &Cli, limit: i64) -> Result<i32> {
    let project = load(cli)?;
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let h = ledger::history(&target, limit).await?;
    target.close().await;
    output::print_history(cli.json, &h);
    Ok(exit::OK)
}
