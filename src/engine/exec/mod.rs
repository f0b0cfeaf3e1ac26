//! What every step runs inside: the run's context (target, source, pause/abort, the dry-run
//! transaction, the lock's fencing token), the step's typed error, and the one batch loop
//! (`batch`) that data and merge steps plug into.

pub mod batch;

use crate::engine::db::{Db, DbTx, Role};
use crate::engine::project::Project;
use crate::engine::protocol::{Counts, EngineEvent};
use crate::engine::store::lock::{FenceError, LockHolder};
use color_eyre::eyre::Result;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, watch};

/// Why a step stopped. Typed so the runner can decide (retry a transient failure, end the run
/// as `Locked` when the lock was lost) and so the failure says where: the source key and
/// column when one row caused it, and the books committed before it.
#[derive(Debug, Default, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
    pub statement: Option<String>,
    /// A lost connection or similar: retrying the step (from its checkpoint) may succeed.
    pub transient: bool,
    /// The run lost its lock to this holder: the step stops without touching the ledger,
    /// which belongs to the new holder now, and the run ends as `Locked`.
    pub lost_lock: Option<Box<LockHolder>>,
    /// The source row that stopped the step (and its column), when one did.
    pub row: Option<Box<RowPlace>>,
    /// What the step had committed when it stopped.
    pub counts: Option<Box<Counts>>,
}

/// Where in the source a failure is: the row's key and, when known, the column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowPlace {
    pub source_key: String,
    pub column: Option<String>,
}

impl StepError {
    pub fn plain(e: impl Into<color_eyre::Report>) -> StepError {
        let e: color_eyre::Report = e.into();
        StepError {
            message: crate::engine::db_error::report_text(&e),
            transient: crate::engine::db_error::report_is_transient(&e),
            ..StepError::default()
        }
    }

    /// A database error while writing or reading: transient when the server went away.
    pub fn sql(e: sqlx::Error) -> StepError {
        StepError {
            transient: crate::engine::db_error::is_transient(&e),
            message: crate::engine::db_error::describe(&e),
            ..StepError::default()
        }
    }

    /// The fence refused a commit: another run holds the lock now.
    pub fn lock_lost(e: FenceError) -> StepError {
        let message = e.to_string();
        let holder = match e {
            FenceError::Taken(holder) => holder,
            FenceError::Gone => LockHolder {
                owner: "(unknown)".into(),
                host: "(unknown)".into(),
                pid: 0,
                command: "(the lock row is gone)".into(),
                since: String::new(),
                heartbeat_age_secs: 0,
            },
            FenceError::Db(e) => {
                return StepError {
                    message,
                    transient: crate::engine::db_error::is_transient(&e),
                    ..StepError::default()
                };
            }
        };
        StepError {
            message,
            lost_lock: Some(Box::new(holder)),
            ..StepError::default()
        }
    }

    /// The `Failed` event of step `version`, with the row and books this error carries.
    pub fn event(&self, version: &str) -> EngineEvent {
        EngineEvent::Failed {
            version: Some(version.to_string()),
            error: self.message.clone(),
            statement: self.statement.clone(),
            source_key: self.row.as_ref().map(|r| r.source_key.clone()),
            column: self.row.as_ref().and_then(|r| r.column.clone()),
            counts: self.counts.as_deref().copied(),
        }
    }

    /// An error of the step's own making (not retried).
    pub fn msg(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            ..StepError::default()
        }
    }

    /// The same error, saying which source row stopped the step.
    pub fn at_row(mut self, source_key: impl Into<String>, column: Option<String>) -> StepError {
        self.row = Some(Box::new(RowPlace {
            source_key: source_key.into(),
            column,
        }));
        self
    }

    /// The same error, carrying the books committed before it.
    pub fn with_counts(mut self, counts: Counts) -> StepError {
        self.counts.get_or_insert(Box::new(counts));
        self
    }
}

pub enum StepResult {
    Done(Counts),
    /// Stopped at a batch boundary on request; resumable.
    Aborted(Counts),
}

/// Why a run waits at its next batch boundary: the operator paused it, or is being asked
/// whether to abort it (the run must not go on, or finish, under the open question).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holds {
    pub paused: bool,
    pub abort_question: bool,
}

impl Holds {
    pub fn any(&self) -> bool {
        self.paused || self.abort_question
    }
}

/// Pause, hold and abort flags the running step checks between batches.
#[derive(Clone)]
pub struct RunControl {
    pub holds: watch::Sender<Holds>,
    pub abort: Arc<AtomicBool>,
}

impl Default for RunControl {
    fn default() -> Self {
        RunControl {
            holds: watch::channel(Holds::default()).0,
            abort: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What a batch boundary decided: go on or stop (an abort), and how long the run waited there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundary {
    pub go: bool,
    /// Time spent paused or held here, left out of the step's elapsed time and rows/s.
    pub waited: std::time::Duration,
}

impl RunControl {
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }
    pub fn set_paused(&self, on: bool) {
        self.holds.send_modify(|h| h.paused = on);
    }
    pub fn set_abort_question(&self, on: bool) {
        self.holds.send_modify(|h| h.abort_question = on);
    }
    /// Stop at the next batch boundary; wakes a run waiting at one.
    pub fn request_abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
        self.holds.send_modify(|h| *h = Holds::default());
    }
    /// Wait here while paused or held; returns false when an abort arrived. No events: see
    /// `RunCtx::boundary`.
    pub async fn checkpoint(&self) -> bool {
        let mut rx = self.holds.subscribe();
        while rx.borrow_and_update().any() {
            if self.aborted() {
                return false;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
        !self.aborted()
    }
}

/// Everything a step needs while it runs.
pub struct RunCtx {
    pub project: Arc<Project>,
    pub target: Db,
    pub source: tokio::sync::OnceCell<Db>,
    pub run_id: String,
    pub dry_run: bool,
    pub continue_on_error: Option<bool>,
    pub events: mpsc::Sender<EngineEvent>,
    pub control: RunControl,
    /// Dry runs: one transaction for the whole plan, rolled back at the end, so later steps
    /// see what earlier ones would have done and nothing is ever committed.
    pub dry_tx: tokio::sync::Mutex<Option<DbTx>>,
    /// The run lock's fencing token: each batch commits only while the lock row still holds
    /// it, so a run that lost its lock (paused past the stale time) cannot write again.
    pub lock_token: Option<String>,
    /// Source rows the pre-flight counted while it checked the keys, taken by each step as
    /// its progress total instead of computing its source (a view) once more.
    pub preflight_counts: PreflightCounts,
    /// The next step's source stream, opened while this step closes (see [`NextSource`]).
    pub next_source: NextSource,
}

/// A view source is computed whole (joined, windowed, sorted) before its first row comes: the
/// clinic's link_views waited 1.8 s for its first page at 200k patients. The runner arms this
/// with the next step's opening before it runs a step; the batch loop fires it once that step
/// has read its last page, so the view is computed while the step adds its keys back and
/// builds its indexes. The stream holds the source only from then on (never through a
/// step's batches or an operator's pause), and the next step adopts it only when nobody has
/// committed to the source since the pre-flight (see [`PreflightCounts::unchanged`]).
#[derive(Default)]
pub struct NextSource {
    armed: std::sync::Mutex<Vec<ArmedSource>>,
}

struct ArmedSource {
    version: String,
    fire: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Option<crate::engine::db::PrefetchedStream>>,
}

impl NextSource {
    /// Before step `running` runs: open step `next`'s stream with `open` once
    /// [`NextSource::fire`] is called. What was armed for any other step than `running` is
    /// dropped.
    pub fn arm<F>(&self, running: &str, next: String, open: F)
    where
        F: std::future::Future<Output = Option<crate::engine::db::PrefetchedStream>> + Send + 'static,
    {
        let (fire, fired) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            fired.await.ok()?;
            open.await
        });
        if let Ok(mut armed) = self.armed.lock() {
            armed.retain(|a| {
                let keep = a.version == running;
                if !keep {
                    a.task.abort();
                }
                keep
            });
            armed.push(ArmedSource {
                version: next,
                fire: Some(fire),
                task,
            });
        } else {
            task.abort();
        }
    }

    /// The running step has read its last page: open what is armed for the next step now.
    pub fn fire(&self) {
        if let Ok(mut armed) = self.armed.lock() {
            for a in armed.iter_mut() {
                if let Some(fire) = a.fire.take() {
                    let _ = fire.send(());
                }
            }
        }
    }

    /// The stream opened for step `version`, if one was.
    pub async fn take(&self, version: &str) -> Option<crate::engine::db::PrefetchedStream> {
        let armed = {
            let mut armed = self.armed.lock().ok()?;
            let at = armed.iter().position(|a| a.version == version)?;
            armed.remove(at)
        };
        if armed.fire.is_some() {
            // Never fired (the step before was no batch step, or did not finish).
            armed.task.abort();
            return None;
        }
        armed.task.await.ok().flatten()
    }

    /// Drop everything armed or opened: an operator's pause must not hold the source.
    pub fn clear(&self) {
        if let Ok(mut armed) = self.armed.lock() {
            for a in armed.drain(..) {
                a.task.abort();
            }
        }
    }
}

impl Drop for NextSource {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Row counts of step sources, by step version and source name, from the pre-flight's key
/// check. Each is taken once: a step run again later counts afresh.
#[derive(Default)]
pub struct PreflightCounts {
    counts: std::sync::Mutex<std::collections::HashMap<(String, String), u64>>,
    /// Begun before the first count on a SQLite source file: while nobody has committed to the
    /// source since, a count the pre-flight took is still the source's count at a step's end,
    /// and the step need not compute its source (a view) once more to reconcile.
    watch: tokio::sync::OnceCell<Option<Arc<crate::engine::db::CommitWatch>>>,
}

impl std::fmt::Debug for PreflightCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreflightCounts")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

/// A source's row count from the pre-flight, with the watch that says whether it still holds.
#[derive(Clone)]
pub struct PreflightCount {
    pub rows: u64,
    watch: Option<Arc<crate::engine::db::CommitWatch>>,
}

impl PreflightCount {
    /// The source's row count now, when it is known without counting again: nobody committed
    /// to the source since before the pre-flight counted it. `None`: count again.
    pub async fn still_holds(&self) -> Option<u64> {
        nobody_committed(self.watch.as_deref()).await.then_some(self.rows)
    }
}

/// Whether `watch` tells that nobody has committed to the source since it began (`false` when
/// there is no watch, or it cannot tell).
async fn nobody_committed(watch: Option<&crate::engine::db::CommitWatch>) -> bool {
    let Some(watch) = watch else { return false };
    match watch.committed_since().await {
        Ok(committed) => !committed,
        Err(e) => {
            tracing::debug!("the source's commit watch cannot tell ({e:#}); the source is read again");
            false
        }
    }
}

impl PreflightCounts {
    /// Begin watching `source` for commits (once per run, before its first count).
    pub async fn watch(&self, source: &Db) {
        self.watch
            .get_or_init(|| async {
                match source.watch_commits().await? {
                    Ok(w) => Some(Arc::new(w)),
                    Err(e) => {
                        tracing::debug!("the source cannot be watched for commits ({e:#}); steps count it again");
                        None
                    }
                }
            })
            .await;
    }

    /// Whether nobody has committed to the source since before the pre-flight (`false` when
    /// that cannot be told: no watch, or it fails).
    pub async fn unchanged(&self) -> bool {
        nobody_committed(self.watch.get().and_then(|w| w.as_deref())).await
    }

    pub fn remember(&self, version: &str, source: &str, rows: u64) {
        if let Ok(mut m) = self.counts.lock() {
            m.insert((version.to_string(), source.to_string()), rows);
        }
    }

    pub fn take(&self, version: &str, source: &str) -> Option<PreflightCount> {
        let rows = self
            .counts
            .lock()
            .ok()?
            .remove(&(version.to_string(), source.to_string()))?;
        Some(PreflightCount {
            rows,
            watch: self.watch.get().cloned().flatten(),
        })
    }
}

impl RunCtx {
    pub async fn emit(&self, e: EngineEvent) {
        // A consumer that went away must not stop the run: the ledger is the record.
        let _ = self.events.send(e).await;
    }

    /// A batch boundary: wait while the run is paused or held. `Paused` is sent when the step
    /// has actually stopped here (not when the pause was asked for), `Resumed` when it goes on.
    pub async fn boundary(&self, version: Option<&str>) -> Boundary {
        let mut rx = self.control.holds.subscribe();
        let mut since: Option<std::time::Instant> = None;
        while !self.control.aborted() && rx.borrow_and_update().any() {
            if since.is_none() {
                since = Some(std::time::Instant::now());
                // A stream opened ahead for the next step would hold the source while the run
                // waits here; that step opens its own when it starts.
                self.next_source.clear();
                self.emit(EngineEvent::Paused {
                    version: version.map(str::to_string),
                })
                .await;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
        let go = !self.control.aborted();
        let waited = since.map(|s| s.elapsed()).unwrap_or_default();
        if since.is_some() && go {
            self.emit(EngineEvent::Resumed {
                version: version.map(str::to_string),
            })
            .await;
        }
        Boundary { go, waited }
    }

    /// Rows per batch: the step's own setting, else the project's default.
    pub fn batch_size(&self, step_setting: Option<usize>) -> usize {
        batch_size_of(&self.project, step_setting)
    }

    /// Whether a rejected row stops the step: the command line's choice, else the step's, else
    /// the project's. A dry run never stops on one (it reports them all).
    pub fn continue_on_error(&self, step_setting: Option<bool>) -> bool {
        self.continue_on_error
            .or(step_setting)
            .unwrap_or(self.project.config.defaults.continue_on_error)
            || self.dry_run
    }

    pub async fn source(&self) -> Result<&Db> {
        self.source
            .get_or_try_init(|| async {
                // Only a database URL gets here: a `file://` source is a folder (see
                // `Config::source_db`), read by file steps through `source_file`.
                let url = self.project.config.source_db()?;
                Db::connect(url, &self.project.config.dir, Role::Source).await
            })
            .await
    }
}

/// As [`RunCtx::batch_size`], without a run.
pub fn batch_size_of(project: &Project, step_setting: Option<usize>) -> usize {
    step_setting.unwrap_or(project.config.defaults.batch_size).max(1)
}

pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::db::PrefetchedStream;

    /// A stream that holds one page naming `label`, as an opened view would.
    fn opened(label: &str) -> PrefetchedStream {
        let (tx, stream) = mpsc::channel(1);
        let page = crate::engine::db::Rows {
            columns: vec![label.to_string()],
            ..Default::default()
        };
        tx.try_send(Ok(Some(page))).ok();
        PrefetchedStream {
            sql: format!("SELECT * FROM {label}"),
            params: Vec::new(),
            page_rows: 10,
            stream,
        }
    }

    async fn first_column(p: Option<PrefetchedStream>) -> Option<String> {
        let mut p = p?;
        match p.stream.recv().await {
            Some(Ok(Some(rows))) => rows.columns.first().cloned(),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_stream_opens_when_fired_and_goes_to_its_step_only() {
        let next = NextSource::default();
        let opens = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = opens.clone();
        next.arm("v1", "v2".into(), async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Some(opened("view2"))
        });
        tokio::task::yield_now().await;
        assert_eq!(
            opens.load(Ordering::SeqCst),
            0,
            "nothing opens before the step before reads its last page"
        );
        next.fire();
        assert!(next.take("v3").await.is_none(), "another step gets nothing");
        assert_eq!(first_column(next.take("v2").await).await.as_deref(), Some("view2"));
        assert_eq!(opens.load(Ordering::SeqCst), 1);
        assert!(next.take("v2").await.is_none(), "taken once");
    }

    #[tokio::test]
    async fn a_stream_never_fired_or_cleared_is_not_handed_out() {
        let next = NextSource::default();
        next.arm("v1", "v2".into(), async { Some(opened("view2")) });
        // The step before ended without reading its last page (failed, aborted).
        assert!(next.take("v2").await.is_none());

        next.arm("v1", "v2".into(), async { Some(opened("view2")) });
        next.fire();
        // A pause at the boundary before v2.
        next.clear();
        assert!(next.take("v2").await.is_none());
    }

    #[tokio::test]
    async fn arming_the_step_after_keeps_the_running_steps_stream() {
        let next = NextSource::default();
        next.arm("v1", "v2".into(), async { Some(opened("view2")) });
        next.fire();
        // The runner arms v3 before it runs v2, which then takes its own.
        next.arm("v2", "v3".into(), async { Some(opened("view3")) });
        assert_eq!(first_column(next.take("v2").await).await.as_deref(), Some("view2"));
        next.fire();
        assert_eq!(first_column(next.take("v3").await).await.as_deref(), Some("view3"));
    }
}
