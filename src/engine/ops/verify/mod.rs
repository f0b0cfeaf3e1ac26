//! Verification: checks the target against the source and against itself.
//!
//! - **ledger**: no step is left failed or running;
//! - **accounting**, per applied data/merge step: source = written + skipped + rejected + merged,
//!   and the ledger's rejected count equals the open rejects in the reject store (**rejects**);
//! - **expect**: scalar queries declared in the project's `verify.toml`, equal on both sides (or
//!   equal to a constant);
//! - **checksum**: an order-independent content checksum of a query's rows, computed the same way
//!   on both sides;
//! - **foreign_keys**: no reference in the target points nowhere (one check per table with keys);
//! - **documents**: the bytes of every document row in the file store hash to its digest column;
//! - **bucket**: every file of every `[buckets.NAME]` hashes to its name, and every storage key
//!   the rows of the steps writing into it name is there.
//!
//! Every declared query runs inside a transaction that is rolled back (read-only where the
//! database supports it), so verification never changes either side. Rows are streamed, never
//! loaded whole. A query that fails is a failed check carrying the error, not an error of the
//! verification.
//!
//! The parts: [`spec`] reads `verify.toml`; [`checksum`] holds the canonical values and the
//! content checksum and runs the declared queries; [`checks`] holds the checks of the ledger,
//! the accounting and the foreign keys; [`documents`] checks a file store.

pub mod baseline;
pub(crate) mod bucket;
mod checks;
mod checksum;
pub mod collection;
mod documents;
mod operator;
mod spec;

pub use checksum::{ContentSum, canonical, row_hash, table_sum};
pub use spec::{ChecksumSpec, DocumentsSpec, ExpectSpec, VERIFY_FILE, VerifyFile};

use crate::engine::db::{Db, Role};
use crate::engine::project::Project;
use crate::engine::store::ledger;
use crate::engine::value::Value;
use color_eyre::eyre::Result;

pub use crate::engine::protocol::report::{Check, CheckKind, Measure, VerifyReport};

impl VerifyReport {
    pub fn new(checks: Vec<Check>) -> VerifyReport {
        VerifyReport {
            ok: checks.iter().all(|c| c.ok),
            checks,
        }
    }
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

impl Measure {
    /// The value as a check shows it; NULL is no measure.
    pub fn from_value(v: &Value) -> Option<Measure> {
        match v {
            Value::Null => None,
            Value::Int(i) => Some(Measure::Int(*i)),
            Value::Real(f) if f.is_finite() => Some(Measure::Real(*f)),
            Value::Bool(b) => Some(Measure::Int(i64::from(*b))),
            other => canonical(other).map(Measure::Text),
        }
    }

    pub(crate) fn count(n: u64) -> Measure {
        Measure::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// The source connection, opened only when a declared check needs it.
enum Source {
    Open(Db),
    Unavailable(String),
}

impl Source {
    fn db(&self) -> Result<&Db, String> {
        match self {
            Source::Open(db) => Ok(db),
            Source::Unavailable(why) => Err(why.clone()),
        }
    }
}

/// The audit-trail event of a verification; run reports show the last one after a run.
pub const VERIFIED_EVENT: &str = "verified";

/// What a verification records in the ledger: the result and every check (its detail with
/// URL passwords scrubbed).
fn recorded_detail(checks: &[Check]) -> serde_json::Value {
    let failed = checks.iter().filter(|c| !c.ok).count();
    serde_json::json!({
        "ok": failed == 0,
        "passed": checks.len() - failed,
        "failed": failed,
        "checks": checks
            .iter()
            .map(|c| serde_json::json!({
                "name": c.name,
                "kind": c.kind.as_str(),
                "ok": c.ok,
                "detail": crate::engine::config::redact_url(&c.detail),
            }))
            .collect::<Vec<_>>(),
    })
}

/// check is a report with `ok = false`.
pub async fn verify(project: &Project) -> Result<VerifyReport> {
    let file = VerifyFile::load(&project.config.dir)?;
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target).await?;
    let source = if file.needs_source() {
        Some(match &project.config.source {
            None if project.config.source_folder.is_some() => Source::Unavailable(format!(
                "no source database: {}",
                project
                    .config
                    .source_db()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            )),
            None => Source::Unavailable(
                "no source connection: set [source] url in cutover.toml, --source or CUTOVER_SOURCE".into(),
            ),
            Some(url) => match Db::connect(url, &project.config.dir, Role::Source).await {
                Ok(db) => Source::Open(db),
                Err(e) => Source::Unavailable(crate::engine::config::redact_url(&format!("{e:#}"))),
            },
        })
    } else {
        None
    };
    let result = run_checks(project, &file, &target, source.as_ref()).await;
    // The result goes into the ledger's audit trail, where run reports read it.
    if let Ok(checks) = &result
        && target.table_exists(ledger::EVENTS_TABLE).await.unwrap_or(false)
        && let Err(e) = ledger::append_event_db(&target, None, None, VERIFIED_EVENT, &recorded_detail(checks)).await
    {
        tracing::warn!("could not record the verify result in the ledger: {e:#}");
    }
    target.close().await;
    if let Some(Source::Open(db)) = &source {
        db.close().await;
    }
    Ok(VerifyReport::new(result?))
}

async fn run_checks(project: &Project, file: &VerifyFile, target: &Db, source: Option<&Source>) -> Result<Vec<Check>> {
    let mut checks = checks::ledger_checks(target).await?;
    let no_source = Source::Unavailable("no source connection".into());
    let opened;
    let source = match source {
        Some(s) => s,
        // The source-count check needs the source even when verify.toml asks for nothing of it.
        None => match &project.config.source {
            Some(url) => {
                opened = match Db::connect(url, &project.config.dir, Role::Source).await {
                    Ok(db) => Source::Open(db),
                    Err(e) => Source::Unavailable(crate::engine::config::redact_url(&format!("{e:#}"))),
                };
                &opened
            }
            None => &no_source,
        },
    };
    // Fixed rejects and rolled-back steps are expected states, reported as such.
    let actions = operator::OperatorActions::load(project, target).await?;
    // Three lanes: the source counts (a view is computed once more for its count: the
    // longest check), the expect and checksum checks, and what only reads the target. Each
    // lane holds at most one connection to each side at a time, so the lanes never wait on
    // each other for the pools (four connections each). On two cores the clinic project at
    // 200k patients (PostgreSQL target) went from 3.5-3.6 s with two lanes (the counts, then
    // these checks) to 3.0-3.2 s: the two cores are then busy throughout.
    let counted = timed("source counts", async {
        let mut checks = checks::source_count_checks(project, target, source).await?;
        checks.extend(actions.rollback_checks(target).await);
        Ok::<_, color_eyre::Report>(checks)
    });
    let compared = timed("expect and checksum checks", async {
        let mut checks = Vec::new();
        for e in &file.expect {
            let check = timed(&e.name, checks::expect_check(e, source, target)).await;
            checks.push(actions.review_expect(e, check));
        }
        for c in &file.checksum {
            let check = timed(&c.name, checks::checksum_check(c, source, target)).await;
            checks.push(actions.review_checksum(c, check, source, target).await);
        }
        Ok::<_, color_eyre::Report>(checks)
    });
    let target_only = timed("collection, foreign key, document and bucket checks", async {
        let mut checks = timed("collections", collection::collection_checks(project, target)).await?;
        checks.extend(timed("foreign keys", checks::foreign_key_checks(target)).await);
        for d in &file.documents {
            let check = timed(&d.table, documents::documents_check(d, &project.config.dir, target)).await;
            checks.push(actions.review_documents(d, check));
        }
        checks.extend(timed("buckets", bucket::bucket_checks(project, target)).await);
        Ok::<_, color_eyre::Report>(checks)
    });
    let (counted, compared, target_only) = tokio::join!(counted, compared, target_only);
    checks.extend(counted?);
    checks.extend(compared?);
    checks.extend(target_only?);
    Ok(checks)
}

/// A lane of checks, its time logged (`-v`), so a slow verification says where it spent it.
async fn timed<T>(what: &str, lane: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = lane.await;
    tracing::info!("verify: {what} took {} ms", started.elapsed().as_millis());
    out
}
