//! `cutover generate import DIR` and `cutover demo --import`: the import scenario's export
//! folder and its demo project.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use color_eyre::eyre::Result;

use crate::cli::exit;
use crate::generator::import::{ImportConfig, ImportManifest, OrdersFormat};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum OrdersFormatArg {
    Xlsx,
    Csv,
}

#[derive(Subcommand, Debug)]
pub enum GenerateWhat {
    /// Generate the import scenario's export folder: patients.csv, orders.xlsx (or orders.csv)
    /// and manifest.json (the counts the scenario's rules imply).
    Import {
        /// The folder to write (created if missing; the files must not exist yet).
        dir: PathBuf,
        /// Rows of patients.csv.
        #[arg(long, default_value_t = 20_000)]
        patients: u64,
        /// Rows of the orders file.
        #[arg(long, default_value_t = 50_000)]
        orders: u64,
        /// Seed of the generated data (the same seed gives the same files).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The orders file's format.
        #[arg(long, value_enum, default_value = "xlsx")]
        orders_format: OrdersFormatArg,
        /// Fraction of rows that carry one of the scenario's anomalies (0..=1).
        #[arg(long, default_value_t = 0.1)]
        anomaly_rate: f64,
    },
    /// Fill a MariaDB database with the healthcare scenario's legacy tables (specialties,
    /// physicians, patients, appointments, medical_records, record_files) and say what the
    /// fixtures/healthcare project must make of them.
    Healthcare {
        /// The MariaDB database to fill: mysql://user:${PW}@host/DB (it must exist; a legacy
        /// table that already holds rows refuses the run).
        url: String,
        /// Patients (physicians, appointments, records and files scale with it).
        #[arg(long, default_value_t = 1_000)]
        patients: u64,
        /// Seed of the generated data (the same seed gives the same rows).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Where to write the manifest (JSON): expected rows per target table, rejects and
        /// warnings by rule per step.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Fill a PostgreSQL database with the appwrite scenario's legacy tables (teams, users,
    /// projects, appointments, appointment_notes, files, settings; dropped and created again)
    /// and say what the fixtures/appwrite project must make of them.
    Appwrite {
        /// The PostgreSQL database to fill: postgres://user:${PW}@host/DB (it must exist).
        url: String,
        /// Users (teams, projects, appointments and files scale with it).
        #[arg(long, default_value_t = 300)]
        users: u64,
        /// Seed of the generated data (the same seed gives the same rows).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Where to write the manifest (JSON): documents per collection, files per bucket,
        /// each step's books, the sample users' permissions.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
}

fn summary(m: &ImportManifest) -> String {
    let line = |name: &str| {
        let f = &m.files[name];
        format!(
            "  {name}: {} rows = {} written + {} skipped + {} rejected",
            f.rows, f.written, f.skipped, f.rejected
        )
    };
    format!("{}\n{}", line("patients.csv"), line(m.config.orders_format.file_name()))
}

pub fn generate(what: &GenerateWhat, json: bool) -> Result<i32> {
    let (dir, patients, orders, seed, orders_format, anomaly_rate) = match what {
        GenerateWhat::Import {
            dir,
            patients,
            orders,
            seed,
            orders_format,
            anomaly_rate,
        } => (dir, patients, orders, seed, orders_format, anomaly_rate),
        GenerateWhat::Healthcare {
            url,
            patients,
            seed,
            manifest,
        } => return generate_healthcare(url, *patients, *seed, manifest.as_deref(), json),
        GenerateWhat::Appwrite {
            url,
            users,
            seed,
            manifest,
        } => {
            let cfg = crate::generator::appwrite::AppwriteConfig {
                users: *users,
                seed: *seed,
            };
            crate::generator::appwrite::run(url, &cfg, manifest.as_deref(), json)?;
            return Ok(exit::OK);
        }
    };
    let cfg = ImportConfig {
        patients: *patients,
        orders: *orders,
        seed: *seed,
        orders_format: match orders_format {
            OrdersFormatArg::Xlsx => OrdersFormat::Xlsx,
            OrdersFormatArg::Csv => OrdersFormat::Csv,
        },
        anomaly_rate: *anomaly_rate,
    };
    let m = crate::generator::import::generate(dir, &cfg)?;
    if json {
        println!("{}", serde_json::to_string(&m)?);
    } else {
        println!(
            "generated {} ({} patients, {} orders, seed {}); the manifest says what an import must do:\n{}",
            dir.display(),
            patients,
            orders,
            seed,
            summary(&m)
        );
    }
    Ok(exit::OK)
}

/// `generate healthcare URL`: the generator is async (sqlx) and this verb's caller is not, so
/// it runs on the CLI's multi-threaded runtime from here.
fn generate_healthcare(url: &str, patients: u64, seed: u64, manifest: Option<&Path>, json: bool) -> Result<i32> {
    use crate::generator::healthcare::{HealthcareConfig, generate};
    let cfg = HealthcareConfig { patients, seed };
    let m = tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(generate(url, &cfg)))?;
    let text = serde_json::to_string_pretty(&m)? + "\n";
    if let Some(path) = manifest {
        std::fs::write(path, &text).map_err(|e| color_eyre::eyre::eyre!("cannot write {}: {e}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string(&m)?);
        return Ok(exit::OK);
    }
    println!(
        "generated the healthcare legacy database in {} ({patients} patients, seed {seed}); the rules imply:",
        crate::engine::config::DbUrl::new(url).redacted()
    );
    for (table, step) in crate::generator::healthcare::TABLES
        .iter()
        .filter_map(|t| m.steps.get(*t).map(|s| (t, s)))
    {
        let rules: Vec<String> = step.rejected_by_rule.iter().map(|(r, n)| format!("{r} {n}")).collect();
        println!(
            "  {table}: {} rows = {} written + {} skipped + {} rejected{}",
            step.source,
            step.written,
            step.skipped,
            step.rejected,
            if rules.is_empty() {
                String::new()
            } else {
                format!(" ({})", rules.join(", "))
            }
        );
    }
    if let Some(path) = manifest {
        println!("manifest: {}", path.display());
    }
    Ok(exit::OK)
}

/// Writes the import demo project into `dir` (default ./cutover-import-demo).
pub fn create_demo(dir: &Path, rows: u64, seed: u64, json: bool) -> Result<()> {
    if let Some(m) = crate::generator::import::project::create(dir, rows, seed, json)?
        && !json
    {
        println!("{}", summary(&m));
    }
    Ok(())
}
