//! The one batch loop. Data and merge steps differ in how they read a page and what they
//! write for it; everything else is here, once: the ledger's `running` row, resuming from the
//! last checkpoint, pause and abort between batches, one transaction per batch (or the plan's
//! dry-run transaction), stop-at-first-reject, the checkpoint committed with the rows (the
//! exactly-once point, fenced by the run lock), rejected/flagged events, coalesced progress,
//! and closing the books into the ledger.

use crate::engine::db::DbTx;
use crate::engine::exec::{RunCtx, StepError, StepResult};
use crate::engine::project::StepDef;
use crate::engine::protocol::{BatchTimes, Counts, EngineEvent, Progress};
use crate::engine::store::ledger::{self, LedgerStatus};
use crate::engine::store::{self, BatchCheckpoint};
use crate::engine::value::Value;
use std::time::{Duration, Instant};

/// Progress is sent at most this often, so a fast run never floods a screen.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Rejected/flagged events per batch beyond which only counts are sent (all are stored).
pub const EVENTS_PER_BATCH: usize = 20;

/// A rejected row as events and messages name it.
#[derive(Debug, Clone)]
pub struct RejectNote {
    pub source_table: String,
    pub source_key: String,
    pub rule: String,
    pub reason: String,
    pub column: Option<String>,
}

/// A row written with a warning.
#[derive(Debug, Clone)]
pub struct FlagNote {
    pub source_key: String,
    pub field: String,
    pub reason: String,
}

/// What one page did inside the batch transaction (not committed yet).
#[derive(Debug, Default)]
pub struct PageOutcome {
    /// The page's share of the books, warnings included.
    pub counts: Counts,
    /// The first rejects of the page (at most `EVENTS_PER_BATCH`); all are in the store.
    pub rejects: Vec<RejectNote>,
    pub flags: Vec<FlagNote>,
    /// The checkpoint key after this page: where a resumed run starts reading.
    pub next_key: Option<Value>,
}

/// The sizes a step runs with.
#[derive(Debug, Clone, Copy)]
pub struct BatchPlan {
    /// Source rows, as the source counts them at the start.
    pub total: u64,
    pub batch_size: usize,
    pub continue_on_error: bool,
}

/// A step that runs in batches: it reads pages and writes each inside a transaction the loop
/// owns. Only implemented and called inside the crate with concrete types, where the futures'
/// `Send` is known, so plain `async fn` is enough.
#[allow(async_fn_in_trait)]
pub trait BatchStep {
    type Page: Send;

    /// Once, before the first page, inside the plan's dry-run transaction when there is one;
    /// `resume_from` is the last committed checkpoint key of an interrupted run.
    async fn prepare(
        &mut self,
        ctx: &RunCtx,
        dry_tx: Option<&mut DbTx>,
        resume_from: &Option<Value>,
    ) -> Result<(), StepError>;

    /// The next page, or `None` when the source has no more rows.
    async fn next_page(&mut self) -> Result<Option<Self::Page>, StepError>;

    /// After the last page: hold the rows read against the source's own count.
    async fn at_end(&mut self, counts: &Counts) -> Result<(), StepError>;

    /// Decide and write one page inside `tx`, rejects and ID map included.
    async fn write_page(&mut self, tx: &mut DbTx, run_id: &str, page: Self::Page) -> Result<PageOutcome, StepError>;

    /// After the last page, however the step ended (never in a dry run), before the ledger
    /// closes the step: put back what `prepare` took from the target (a data step's indexes
    /// and foreign keys), which may move rows from written to rejected in `cp`; the notes of
    /// those rejects.
    async fn close(&mut self, _ctx: &RunCtx, _cp: &mut BatchCheckpoint) -> Result<Vec<RejectNote>, StepError> {
        Ok(Vec::new())
    }

    /// The target table this step fills (known after `prepare`), whose planner statistics
    /// are refreshed as it grows (see [`StatisticsRefresh`]).
    fn filled_table(&self) -> Option<FilledTable> {
        None
    }
}

/// The table a step fills, and what of it the step's own statements look rows up by.
pub struct FilledTable {
    pub table: String,
    /// The columns the step finds rows of this table by while it runs (a natural key):
    /// only they need fresh statistics before the step ends; empty when the step never looks
    /// in the table; `None` when it may look by any column.
    pub probed: Option<Vec<String>>,
}

/// When a step refreshes the planner's statistics of the table it fills: once it has written
/// 10 000 rows, then each time the count doubles, and at its end, when the ID map's are
/// refreshed too (for the steps after it: a step's own lookups are key probes that need no
/// fresh statistics of the map, and sampling a map of millions of rows takes a tenth of a
/// second). A step of 2M rows samples its table about eight times, never scans it. While the
/// step runs only the columns it probes are analysed (without them a natural-key check of a
/// few thousand keys is planned as a full scan); a step that never looks in its table
/// leaves the refresh to its end (`ANALYZE` of all columns of a 1M-row table: ~0.3 s).
struct StatisticsRefresh {
    next_at: u64,
}

impl StatisticsRefresh {
    const FIRST: u64 = 10_000;

    fn new() -> StatisticsRefresh {
        StatisticsRefresh { next_at: Self::FIRST }
    }

    /// Whether `written` rows call for a refresh now.
    fn due(&mut self, written: u64) -> bool {
        if written < self.next_at {
            return false;
        }
        self.next_at = written.saturating_mul(2);
        true
    }

    /// Whether the table a step fills calls for a refresh now, at `written` rows. While the
    /// step does not look in it (a merge's first phase) the schedule waits: the first batch
    /// that does look after 10 000 rows refreshes at once (a merge's second phase finds rows
    /// by any column of what the first wrote), instead of sampling a table nobody reads as
    /// it doubles (five `ANALYZE` of the clinic's persons at 200k patients, 1.5 s).
    fn due_for(&mut self, filled: Option<&FilledTable>, written: u64) -> bool {
        let looks = filled.is_some_and(|t| t.probed.as_ref().is_none_or(|p| !p.is_empty()));
        looks && self.due(written)
    }

    /// Refresh the filled table's, after a commit, outside any transaction. A refusal costs
    /// speed, not rows: it is logged and the step goes on.
    async fn refresh(ctx: &RunCtx, table: Option<FilledTable>, at_end: bool) {
        let d = ctx.target.dialect();
        let q = |name: &str| crate::engine::db::quote_ident(d, name);
        let Some(t) = table else { return };
        let columns: Vec<String> = match (at_end, t.probed) {
            (true, _) | (false, None) => Vec::new(),
            (false, Some(probed)) if probed.is_empty() => return,
            (false, Some(probed)) => probed.iter().map(|c| q(c)).collect(),
        };
        let table = q(&t.table);
        Self::run(ctx, &table, d.analyze_statement(&table, &columns)).await;
    }

    /// The ID map's, at a step's end (see [`run_batches`]).
    async fn refresh_id_map(ctx: &RunCtx) {
        let d = ctx.target.dialect();
        let map = crate::engine::db::quote_ident(d, store::ID_MAP);
        let sql = d.analyze_statement(&map, &[]);
        Self::run(ctx, &map, sql).await;
    }

    async fn run(ctx: &RunCtx, table: &str, sql: Option<String>) {
        if let Some(sql) = sql
            && let Err(e) = ctx.target.execute(&sql, &[]).await
        {
            tracing::warn!("could not refresh the planner's statistics of {table}: {e:#}");
        }
    }
}

/// Where the batch loop's time went (logged with `-v`): waiting for the next page (the source,
/// its lookups and transforms, which run ahead), writing pages, committing batches. A step
/// that mostly waits is bound by what runs ahead; one that mostly writes, by the target.
#[derive(Default)]
struct StageTimes {
    waited: Duration,
    wrote: Duration,
    committed: Duration,
}

impl StageTimes {
    fn log(&self, version: &str) {
        tracing::info!(
            "step {version}: waited {} ms for pages, wrote pages in {} ms, committed batches in {} ms",
            self.waited.as_millis(),
            self.wrote.as_millis(),
            self.committed.as_millis()
        );
    }
}

/// Run `step` batch by batch through `s`; the ledger, checkpoint and events are handled here.
pub async fn run_batches<S: BatchStep>(
    ctx: &RunCtx,
    step: &StepDef,
    plan: BatchPlan,
    s: &mut S,
) -> Result<StepResult, StepError> {
    let started_at = crate::engine::clock::now_iso();
    let t0 = Instant::now();
    let mut dry_guard = ctx.dry_tx.lock().await;
    let mut dry_tx: Option<&mut DbTx> = dry_guard.as_mut();
    let mut cp = BatchCheckpoint::default();
    match dry_tx.as_mut() {
        Some(tx) => store::ensure_in(tx).await.map_err(StepError::sql)?,
        None => cp = begin_step(ctx, step, &started_at, plan.total).await?,
    }
    let mut progress = ProgressClock::new(&step.version, plan, &cp);

    if let Err(e) = s.prepare(ctx, dry_tx.as_deref_mut(), &cp.last_key).await {
        if dry_tx.is_some() {
            return Err(e);
        }
        drop(dry_guard);
        let outcome = closed(ctx, step, s, &mut cp, Err(e)).await;
        return finish(ctx, step, &started_at, t0.elapsed(), &cp, outcome).await;
    }

    // A batch (one transaction, one checkpoint) is written as one or more pages: a step reads
    // pages of at most `page_rows(batch_size)` rows, so the rows held in memory stay bounded
    // whatever the batch size, while a big batch keeps its one commit.
    let mut open: Option<OpenBatch> = None;
    let mut statistics = StatisticsRefresh::new();
    let mut stages = StageTimes::default();
    let outcome: Result<StepResult, StepError> = loop {
        if open.is_none() {
            let boundary = ctx.boundary(Some(&step.version)).await;
            progress.exclude(boundary.waited);
            if !boundary.go {
                break Ok(StepResult::Aborted(cp.counts));
            }
            let tx = match dry_tx {
                Some(_) => None,
                None => match ctx.target.begin().await {
                    Ok(t) => Some(t),
                    Err(e) => break Err(StepError::plain(e)),
                },
            };
            // A batch's time: reading its pages, writing them, committing; not the wait before it.
            open = Some(OpenBatch::new(tx));
        }
        let Some(batch) = open.as_mut() else {
            break Err(StepError::msg("no open batch"));
        };
        let asked = Instant::now();
        let next = s.next_page().await;
        stages.waited += asked.elapsed();
        let page = match next {
            Ok(Some(p)) => Some(p),
            Ok(None) => None,
            Err(e) => {
                batch.abandon().await;
                break Err(e);
            }
        };
        let Some(page) = page else {
            // The source is done: commit what the open batch holds, then close the books.
            if let Some(b) = open.take() {
                let committing = Instant::now();
                let committed = b.commit(ctx, step, &started_at, &mut cp, &mut progress).await;
                stages.committed += committing.elapsed();
                if let Err(e) = committed {
                    break Err(e);
                }
            }
            match s.at_end(&cp.counts).await {
                Ok(()) => break Ok(StepResult::Done(cp.counts)),
                Err(e) => break Err(e),
            }
        };
        let res = {
            let tx: &mut DbTx = match (batch.tx.as_mut(), dry_tx.as_deref_mut()) {
                (Some(t), _) => t,
                (None, Some(t)) => t,
                (None, None) => break Err(StepError::msg("no transaction for the batch")),
            };
            let writing = Instant::now();
            let res = s.write_page(tx, &ctx.run_id, page).await;
            stages.wrote += writing.elapsed();
            res
        };
        let res = match res {
            Ok(r) => r,
            Err(e) => {
                batch.abandon().await;
                break Err(e);
            }
        };
        if !plan.continue_on_error
            && let Some(r) = res.rejects.first()
        {
            // Nothing of this batch commits; the step stops on the row, resumable after a fix.
            batch.abandon().await;
            ctx.emit(rejected_event(&step.version, r)).await;
            let msg = format!(
                "{} {} rejected ({}): {}. The step stopped before this batch (nothing of it was written); fix the source row, or run with --continue-on-error to send rejects to the reject store, then `cutover up` resumes",
                r.source_table, r.source_key, r.rule, r.reason
            );
            // `finish` records the failure in the ledger.
            break Err(StepError::msg(msg).at_row(r.source_key.clone(), r.column.clone()));
        }
        batch.add(res);
        if batch.counts.source >= plan.batch_size as u64
            && let Some(b) = open.take()
        {
            let committing = Instant::now();
            let committed = b.commit(ctx, step, &started_at, &mut cp, &mut progress).await;
            stages.committed += committing.elapsed();
            if let Err(e) = committed {
                break Err(e);
            }
            if dry_tx.is_none() {
                let filled = s.filled_table();
                if statistics.due_for(filled.as_ref(), cp.counts.written + cp.counts.merged) {
                    StatisticsRefresh::refresh(ctx, filled, false).await;
                }
            }
        }
    };
    if let Some(mut b) = open.take() {
        b.abandon().await;
    }
    stages.log(&step.version);
    let outcome = match dry_tx {
        Some(_) => outcome,
        None => {
            // The next step looks up in what this one wrote: the statistics of its table and of
            // the ID map are refreshed once it is done. The map's sampling (0.15 s at 200k
            // patients) runs beside the close and the table's (their locks do not meet: a
            // foreign key added back or an index built locks the step's table, not the map).
            let done = matches!(outcome, Ok(StepResult::Done(_)));
            if done {
                // The next step's view is computed beside this close (see `NextSource`).
                ctx.next_source.fire();
            }
            let close_then_table = async {
                let outcome = closed(ctx, step, s, &mut cp, outcome).await;
                if matches!(outcome, Ok(StepResult::Done(_))) {
                    StatisticsRefresh::refresh(ctx, s.filled_table(), true).await;
                }
                outcome
            };
            let map = async {
                if done {
                    StatisticsRefresh::refresh_id_map(ctx).await;
                }
            };
            tokio::join!(close_then_table, map).0
        }
    };
    if let Some(ev) = progress.closing(&cp) {
        ctx.emit(ev).await;
    }

    if dry_tx.is_some() {
        // The plan's dry-run transaction is rolled back by the runner at the end.
        return outcome.map_err(|e| e.with_counts(cp.counts));
    }
    drop(dry_guard);
    // Time held at a boundary (paused, or the abort question open) is not the step's time:
    // later ETAs read this duration as the step's rate.
    finish(ctx, step, &started_at, progress.active(), &cp, outcome).await
}

/// The step's `close`, however it ended: its rejects announced, the books it moved taken into
/// the outcome. A close that fails fails a step that was done; a failure already there is
/// the one reported.
async fn closed<S: BatchStep>(
    ctx: &RunCtx,
    step: &StepDef,
    s: &mut S,
    cp: &mut BatchCheckpoint,
    outcome: Result<StepResult, StepError>,
) -> Result<StepResult, StepError> {
    match (s.close(ctx, cp).await, outcome) {
        (Ok(notes), outcome) => {
            for n in &notes {
                ctx.emit(rejected_event(&step.version, n)).await;
            }
            match outcome {
                Ok(StepResult::Done(_)) => Ok(StepResult::Done(cp.counts)),
                Ok(StepResult::Aborted(_)) => Ok(StepResult::Aborted(cp.counts)),
                Err(e) => Err(e),
            }
        }
        (Err(e), Ok(_)) => Err(e),
        (Err(e), Err(first)) => {
            tracing::error!("step {}: {}", step.version, e.message);
            Err(first)
        }
    }
}

fn rejected_event(version: &str, r: &RejectNote) -> EngineEvent {
    EngineEvent::Rejected {
        version: version.to_string(),
        source_table: r.source_table.clone(),
        source_key: r.source_key.clone(),
        rule: r.rule.clone(),
        reason: r.reason.clone(),
    }
}

/// Rows per page of a step whose batches are bigger: a batch of 20 000 rows is written as
/// pages of this many rows inside its one transaction, so memory holds a few pages, not a few
/// batches.
pub const PAGE_ROWS: usize = 2500;

/// The page size a step reads with for `batch_size` rows per transaction.
pub fn page_rows(batch_size: usize) -> usize {
    batch_size.clamp(1, PAGE_ROWS)
}

/// A batch being written: its transaction (none in a dry run, which writes into the plan's
/// transaction) and what its pages did so far.
struct OpenBatch {
    tx: Option<DbTx>,
    started: Instant,
    counts: Counts,
    rejects: Vec<RejectNote>,
    flags: Vec<FlagNote>,
    next_key: Option<Value>,
    pages: u64,
}

impl OpenBatch {
    fn new(tx: Option<DbTx>) -> OpenBatch {
        OpenBatch {
            tx,
            started: Instant::now(),
            counts: Counts::default(),
            rejects: Vec::new(),
            flags: Vec::new(),
            next_key: None,
            pages: 0,
        }
    }

    fn add(&mut self, page: PageOutcome) {
        self.counts.add(&page.counts);
        let room = EVENTS_PER_BATCH.saturating_sub(self.rejects.len());
        self.rejects.extend(page.rejects.into_iter().take(room));
        let room = EVENTS_PER_BATCH.saturating_sub(self.flags.len());
        self.flags.extend(page.flags.into_iter().take(room));
        // The checkpoint is where the last page ended.
        self.next_key = page.next_key;
        self.pages += 1;
    }

    /// Roll back whatever the batch wrote (nothing in a dry run: the plan's transaction is
    /// rolled back by the runner).
    async fn abandon(&mut self) {
        if let Some(t) = self.tx.take() {
            let _ = t.rollback().await;
        }
    }

    /// Commit the batch with its checkpoint (the exactly-once point), then tell the screen.
    async fn commit(
        mut self,
        ctx: &RunCtx,
        step: &StepDef,
        started_at: &str,
        cp: &mut BatchCheckpoint,
        progress: &mut ProgressClock,
    ) -> Result<(), StepError> {
        if self.pages == 0 {
            self.abandon().await;
            return Ok(());
        }
        let mut next = cp.clone();
        next.counts.add(&self.counts);
        next.batches += 1;
        next.last_key = self.next_key.take();
        if let Some(t) = self.tx.take() {
            commit_batch(t, ctx, step, started_at, &next).await?;
        }
        *cp = next;
        progress.batch_done(self.started.elapsed());
        for r in &self.rejects {
            ctx.emit(rejected_event(&step.version, r)).await;
        }
        for w in &self.flags {
            ctx.emit(EngineEvent::Flagged {
                version: step.version.clone(),
                source_key: w.source_key.clone(),
                field: w.field.clone(),
                reason: w.reason.clone(),
            })
            .await;
        }
        if let Some(ev) = progress.tick(cp) {
            ctx.emit(ev).await;
        }
        Ok(())
    }
}

/// Coalesces progress to one event per `PROGRESS_EVERY`, so a fast run never floods a screen.
pub struct ProgressClock {
    version: String,
    total: u64,
    batches_total: u64,
    resumed: u64,
    t0: Instant,
    /// Time spent paused or held at batch boundaries: not part of elapsed or rows/s.
    waited: Duration,
    last: Option<Instant>,
    /// Batches and rows of the last event sent, so the step's closing event is not a repeat.
    last_sent: Option<(u64, u64)>,
    batch_times: BatchTimes,
}

impl ProgressClock {
    pub fn new(version: &str, plan: BatchPlan, cp: &BatchCheckpoint) -> ProgressClock {
        let resumed = cp.counts.source;
        ProgressClock {
            version: version.to_string(),
            total: plan.total,
            batches_total: cp.batches
                + plan
                    .total
                    .saturating_sub(resumed)
                    .div_ceil(plan.batch_size.max(1) as u64),
            resumed,
            t0: Instant::now(),
            waited: Duration::ZERO,
            last: None,
            last_sent: None,
            batch_times: BatchTimes::default(),
        }
    }

    /// Leave time spent paused out of elapsed and rows/s.
    pub fn exclude(&mut self, waited: Duration) {
        self.waited += waited;
    }

    /// One batch committed (or, in a dry run, written) in `took`.
    pub fn batch_done(&mut self, took: Duration) {
        self.batch_times.record(took);
    }

    /// Time spent working: since the start, less the time paused.
    pub fn active(&self) -> Duration {
        self.t0.elapsed().saturating_sub(self.waited)
    }

    /// An event when the last one is at least `PROGRESS_EVERY` old.
    pub fn tick(&mut self, cp: &BatchCheckpoint) -> Option<EngineEvent> {
        if self.last.is_some_and(|l| l.elapsed() < PROGRESS_EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        self.last_sent = Some((cp.batches, cp.counts.source));
        Some(self.now(cp))
    }

    /// The step's closing event, unless the last one sent already said the same (a fast
    /// step's last batch often lands on a tick): listeners get each count once.
    pub fn closing(&self, cp: &BatchCheckpoint) -> Option<EngineEvent> {
        (self.last_sent != Some((cp.batches, cp.counts.source))).then(|| self.now(cp))
    }

    /// An event now (the last one of a step).
    pub fn now(&self, cp: &BatchCheckpoint) -> EngineEvent {
        let active = self.active();
        let secs = active.as_secs_f64().max(1e-3);
        EngineEvent::Progress {
            version: self.version.clone(),
            progress: Progress {
                step_index: 0,
                rows_done: cp.counts.source,
                rows_total: self.total.max(cp.counts.source),
                written: cp.counts.written,
                skipped: cp.counts.skipped,
                rejected: cp.counts.rejected,
                merged: cp.counts.merged,
                warnings: cp.counts.warnings,
                batches_done: cp.batches,
                batches_total: self.batches_total.max(cp.batches),
                rows_per_sec: cp.counts.source.saturating_sub(self.resumed) as f64 / secs,
                elapsed_ms: active.as_millis() as u64,
                batch_times: self.batch_times,
            },
        }
    }
}

/// Record a failure from outside the step's own loop (the runner giving up on retries).
pub async fn record_failed_now(ctx: &RunCtx, step: &StepDef, msg: &str) {
    let counts = match ctx.target.begin().await {
        Ok(mut tx) => {
            let cp = BatchCheckpoint::load(&mut tx, &step.version).await.ok().flatten();
            let _ = tx.rollback().await;
            cp.map(|c| c.counts).unwrap_or_default()
        }
        Err(_) => Counts::default(),
    };
    // The target may be coming back: try for a few seconds, so a step that gave up is
    // recorded `failed` rather than left `running` where that is possible.
    let started_at = crate::engine::clock::now_iso();
    for attempt in 1..=5u64 {
        match ledger::record_failure(&ctx.target, step, &ctx.run_id, &started_at, 0, &counts, msg, None).await {
            Ok(()) => return,
            Err(e) if attempt == 5 => tracing::error!("could not record the failure of {}: {e:#}", step.version),
            Err(_) => tokio::time::sleep(Duration::from_millis(500 * attempt)).await,
        }
    }
}

pub async fn record_failed(
    ctx: &RunCtx,
    step: &StepDef,
    started_at: &str,
    active: Duration,
    counts: &Counts,
    msg: &str,
) {
    let dur = active.as_millis() as i64;
    if let Err(e) = ledger::record_failure(&ctx.target, step, &ctx.run_id, started_at, dur, counts, msg, None).await {
        tracing::error!("could not record the failure of {}: {e:#}", step.version);
    }
}

/// A file step resumes only on the file its committed batches were read from: an edited file
/// would mix two versions of the data (rows before the checkpoint never re-read).
async fn refuse_a_changed_file(tx: &mut DbTx, step: &StepDef, cp: &BatchCheckpoint) -> Result<(), StepError> {
    let Some(path) = &step.source_file else {
        return Ok(());
    };
    let Some(recorded) = ledger::recorded_source_checksum(tx, &step.version)
        .await
        .map_err(StepError::sql)?
    else {
        return Ok(());
    };
    let now = crate::engine::checksum::file_checksum(path)
        .map_err(|e| StepError::msg(format!("step {}: cannot read {}: {e}", step.version, path.display())))?;
    if now != recorded {
        return Err(StepError::msg(format!(
            "step {}: {} changed since the step started: its first {} rows were read from the earlier file, so resuming would mix two versions of it. Restore the file as it was and run `cutover up` again (fix bad rows with `cutover rejects fix`), or roll the step back and run it on the new file",
            step.version,
            path.display(),
            cp.counts.source
        )));
    }
    Ok(())
}

/// Start (or resume) a step: the engine's tables, the last checkpoint, and the ledger saying
/// `running` — committed first, so a run killed from here on is seen as interrupted.
async fn begin_step(ctx: &RunCtx, step: &StepDef, started_at: &str, total: u64) -> Result<BatchCheckpoint, StepError> {
    store::ensure(&ctx.target).await.map_err(StepError::plain)?;
    let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
    let cp = BatchCheckpoint::load(&mut tx, &step.version)
        .await
        .map_err(StepError::plain)?
        .unwrap_or_default();
    if cp.batches > 0 {
        // The key as the source shows it, never the value's Rust debug form.
        let after_key = cp
            .last_key
            .as_ref()
            .and_then(|k| k.to_text())
            .unwrap_or_else(|| "-".into());
        tracing::info!(
            step = %step.version,
            after_key = %after_key,
            rows_done = cp.counts.source,
            "resuming from the last checkpoint"
        );
    }
    if cp.batches > 0 {
        refuse_a_changed_file(&mut tx, step, &cp).await?;
    }
    ledger::upsert(
        &mut tx,
        step,
        LedgerStatus::Running,
        &ctx.run_id,
        started_at,
        None,
        &cp.counts,
        None,
        None,
    )
    .await
    .map_err(StepError::sql)?;
    ledger::append_event(
        &mut tx,
        Some(&ctx.run_id),
        Some(&step.version),
        if cp.batches > 0 { "resumed" } else { "started" },
        &serde_json::json!({"rows_done": cp.counts.source, "rows_total": total}),
    )
    .await
    .map_err(StepError::sql)?;
    tx.commit().await.map_err(StepError::plain)?;
    Ok(cp)
}

/// Commit a batch together with its checkpoint and the ledger's running counts: the
/// exactly-once point.
async fn commit_batch(
    mut t: DbTx,
    ctx: &RunCtx,
    step: &StepDef,
    started_at: &str,
    cp: &BatchCheckpoint,
) -> Result<(), StepError> {
    if let Some(token) = &ctx.lock_token
        && let Err(e) = crate::engine::store::lock::fence(&mut t, token).await
    {
        let _ = t.rollback().await;
        return Err(StepError::lock_lost(e));
    }
    let saved = async {
        cp.save(&mut t, &step.version).await?;
        ledger::upsert(
            &mut t,
            step,
            LedgerStatus::Running,
            &ctx.run_id,
            started_at,
            None,
            &cp.counts,
            None,
            None,
        )
        .await
    }
    .await;
    if let Err(e) = saved {
        let _ = t.rollback().await;
        return Err(StepError::sql(e));
    }
    t.commit().await.map_err(StepError::plain)
}

/// Close a step's run: balance the books into the ledger when it finished, note an abort,
/// record a failure.
async fn finish(
    ctx: &RunCtx,
    step: &StepDef,
    started_at: &str,
    active: Duration,
    cp: &BatchCheckpoint,
    outcome: Result<StepResult, StepError>,
) -> Result<StepResult, StepError> {
    match outcome {
        Ok(StepResult::Done(counts)) => {
            let dur = active.as_millis() as i64;
            let balanced = counts.balanced();
            let mut tx = ctx.target.begin().await.map_err(StepError::plain)?;
            let status = if balanced {
                LedgerStatus::Applied
            } else {
                LedgerStatus::Failed
            };
            let err = (!balanced).then(|| format!("the books do not balance: {}", counts.equation()));
            ledger::upsert(
                &mut tx,
                step,
                status,
                &ctx.run_id,
                started_at,
                Some(dur),
                &counts,
                err.as_deref(),
                None,
            )
            .await
            .map_err(StepError::sql)?;
            ledger::append_event(
                &mut tx,
                Some(&ctx.run_id),
                Some(&step.version),
                status.as_str(),
                &serde_json::json!({"counts": counts, "duration_ms": dur}),
            )
            .await
            .map_err(StepError::sql)?;
            tx.commit().await.map_err(StepError::plain)?;
            match err {
                Some(e) => Err(StepError::msg(e).with_counts(counts)),
                None => Ok(StepResult::Done(counts)),
            }
        }
        Ok(StepResult::Aborted(counts)) => {
            // Recorded `interrupted` at once, so no reader mistakes it for a live step; if this
            // write fails the row still says `running`, which readers without a live lock
            // holder show as interrupted as well.
            let dur = active.as_millis() as i64;
            let recorded: color_eyre::Result<()> = async {
                let mut tx = ctx.target.begin().await?;
                ledger::upsert(
                    &mut tx,
                    step,
                    LedgerStatus::Interrupted,
                    &ctx.run_id,
                    started_at,
                    Some(dur),
                    &counts,
                    None,
                    None,
                )
                .await?;
                ledger::append_event(
                    &mut tx,
                    Some(&ctx.run_id),
                    Some(&step.version),
                    "aborted",
                    &serde_json::json!({"counts": counts, "batches": cp.batches}),
                )
                .await?;
                tx.commit().await
            }
            .await;
            if let Err(e) = recorded {
                tracing::warn!(step = %step.version, error = %format!("{e:#}"), "could not record the abort in the ledger");
            }
            Ok(StepResult::Aborted(counts))
        }
        Err(e) if e.lost_lock.is_some() => Err(e.with_counts(cp.counts)),
        Err(e) => {
            record_failed(ctx, step, started_at, active, &cp.counts, &e.message).await;
            Err(e.with_counts(cp.counts))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::Overrides;
    use crate::engine::db::{Db, Role};
    use crate::engine::exec::RunControl;
    use crate::engine::project::{Project, StepKind};
    use crate::engine::store::ledger::LedgerStatus;
    use std::sync::Arc;
    use tokio::sync::mpsc;

    /// Statistics are refreshed at 10 000 rows written, then at each doubling: a few times for
    /// a big step, never per batch.
    #[test]
    fn statistics_are_refreshed_at_each_doubling() {
        let mut r = StatisticsRefresh::new();
        let due: Vec<u64> = (1..=400u64).map(|b| b * 5000).filter(|&w| r.due(w)).collect();
        assert_eq!(
            due,
            vec![10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 640_000, 1_280_000]
        );
        assert!(!r.due(2_000_000));
    }

    /// A table the step does not look in is not sampled as it grows; the first batch that
    /// looks in it (past 10 000 rows) is, and the doubling goes on from there.
    #[test]
    fn statistics_wait_while_the_step_does_not_look_in_its_table() {
        let table = |probed: Option<Vec<String>>| FilledTable {
            table: "persons".into(),
            probed,
        };
        let mut r = StatisticsRefresh::new();
        let unread = table(Some(Vec::new()));
        let due: Vec<u64> = (1..=36u64)
            .map(|b| b * 5000)
            .filter(|&w| r.due_for(Some(&unread), w))
            .collect();
        assert_eq!(due, Vec::<u64>::new(), "nothing while the table is not read");
        assert!(!r.due_for(None, 185_000), "no table: nothing");
        let read = table(None);
        assert!(r.due_for(Some(&read), 185_000), "the first batch that reads it");
        assert!(!r.due_for(Some(&read), 190_000));
        assert!(r.due_for(Some(&read), 370_000), "then at its double");
        let by_key = table(Some(vec!["email".into()]));
        let mut k = StatisticsRefresh::new();
        assert!(!k.due_for(Some(&by_key), 5_000));
        assert!(k.due_for(Some(&by_key), 10_000), "a natural key is read from the start");
    }

    /// Pages of row ids; a page may carry one reject. Rows go into table `t` of the target.
    struct Pages {
        pages: Vec<(Vec<i64>, Option<i64>)>,
        next: usize,
    }

    impl BatchStep for Pages {
        type Page = (Vec<i64>, Option<i64>);

        async fn prepare(
            &mut self,
            _: &RunCtx,
            _: Option<&mut DbTx>,
            resume_from: &Option<Value>,
        ) -> Result<(), StepError> {
            // resume after the checkpoint key: skip pages already committed
            if let Some(Value::Int(k)) = resume_from {
                self.next = self
                    .pages
                    .iter()
                    .position(|(ids, _)| ids.first().is_some_and(|f| f > k))
                    .unwrap_or(self.pages.len());
            }
            Ok(())
        }

        async fn next_page(&mut self) -> Result<Option<Self::Page>, StepError> {
            self.next += 1;
            Ok(self.pages.get(self.next - 1).cloned())
        }

        async fn at_end(&mut self, _: &Counts) -> Result<(), StepError> {
            Ok(())
        }

        async fn write_page(
            &mut self,
            tx: &mut DbTx,
            _: &str,
            (ids, reject): Self::Page,
        ) -> Result<PageOutcome, StepError> {
            let mut out = PageOutcome {
                next_key: ids.last().map(|i| Value::Int(*i)),
                ..PageOutcome::default()
            };
            for id in &ids {
                out.counts.source += 1;
                if Some(*id) == reject {
                    out.counts.rejected += 1;
                    out.rejects.push(RejectNote {
                        source_table: "src".into(),
                        source_key: id.to_string(),
                        rule: "required".into(),
                        reason: "name is empty".into(),
                        column: Some("name".into()),
                    });
                    continue;
                }
                tx.execute("INSERT INTO t (id) VALUES ($1)", &[Value::Int(*id)])
                    .await
                    .map_err(StepError::sql)?;
                out.counts.written += 1;
            }
            Ok(out)
        }
    }

    async fn ctx(dir: &std::path::Path) -> (RunCtx, mpsc::Receiver<EngineEvent>) {
        std::fs::write(dir.join("cutover.toml"), "[target]\nurl = \"sqlite://target.db\"\n").unwrap();
        let project = Project::load(dir, &Overrides::default()).unwrap();
        let target = Db::connect(&project.config.target, dir, Role::Target).await.unwrap();
        target
            .execute("CREATE TABLE t (id INTEGER PRIMARY KEY)", &[])
            .await
            .unwrap();
        // the runner creates the ledger before any step runs
        crate::engine::store::ledger::ensure(&target).await.unwrap();
        let (events, rx) = mpsc::channel(1024);
        let ctx = RunCtx {
            project: Arc::new(project),
            target,
            source: tokio::sync::OnceCell::new(),
            run_id: "run-1".into(),
            dry_run: false,
            continue_on_error: None,
            events,
            control: RunControl::default(),
            dry_tx: tokio::sync::Mutex::new(None),
            lock_token: None,
            preflight_counts: Default::default(),
            next_source: Default::default(),
        };
        (ctx, rx)
    }

    fn step() -> StepDef {
        StepDef {
            version: "20250101T000000".into(),
            name: "rows".into(),
            kind: StepKind::Data,
            dir: std::path::PathBuf::new(),
            checksum_file: "step.toml".into(),
            checksum: "sum".into(),
            overrides: Default::default(),
            source_file: None,
        }
    }

    async fn ids_in_t(ctx: &RunCtx) -> Vec<i64> {
        let rows = ctx.target.fetch_all("SELECT id FROM t ORDER BY id", &[]).await.unwrap();
        rows.rows
            .iter()
            .map(|r| match r[0] {
                Value::Int(i) => i,
                ref other => panic!("{other:?}"),
            })
            .collect()
    }

    async fn ledger_status(ctx: &RunCtx) -> (LedgerStatus, Counts) {
        let rows = crate::engine::store::ledger::load(&ctx.target).await.unwrap();
        let r = rows.iter().find(|r| r.version == step().version).expect("a ledger row");
        (r.status, r.counts)
    }

    fn plan(continue_on_error: bool) -> BatchPlan {
        BatchPlan {
            total: 6,
            batch_size: 2,
            continue_on_error,
        }
    }

    #[tokio::test]
    async fn every_page_commits_and_the_books_close() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, mut rx) = ctx(dir.path()).await;
        let mut s = Pages {
            pages: vec![(vec![1, 2], None), (vec![3, 4], Some(4)), (vec![5, 6], None)],
            next: 0,
        };
        let res = run_batches(&ctx, &step(), plan(true), &mut s).await.unwrap();
        let want = Counts {
            source: 6,
            written: 5,
            rejected: 1,
            ..Counts::default()
        };
        assert!(matches!(res, StepResult::Done(c) if c == want));
        assert_eq!(ids_in_t(&ctx).await, [1, 2, 3, 5, 6]);
        assert_eq!(ledger_status(&ctx).await, (LedgerStatus::Applied, want));
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        assert!(
            events
                .iter()
                .any(|e| matches!(e, EngineEvent::Rejected { source_key, .. } if source_key == "4"))
        );
        match events.last() {
            Some(EngineEvent::Progress { progress, .. }) => {
                assert_eq!((progress.rows_done, progress.written, progress.batches_done), (6, 5, 3));
            }
            other => panic!("the last event is the final progress, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_reject_stops_before_its_batch_and_a_rerun_resumes_there() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _rx) = ctx(dir.path()).await;
        let pages = vec![(vec![1, 2], None), (vec![3, 4], Some(4)), (vec![5, 6], None)];
        let mut s = Pages {
            pages: pages.clone(),
            next: 0,
        };
        let err = run_batches(&ctx, &step(), plan(false), &mut s)
            .await
            .err()
            .expect("the reject stops the step");
        let place = err.row.as_deref().expect("the row is named");
        assert_eq!(
            (place.source_key.as_str(), place.column.as_deref()),
            ("4", Some("name"))
        );
        assert_eq!(
            err.counts.as_deref().map(|c| c.written),
            Some(2),
            "partial books: the first batch"
        );
        // nothing of the rejected batch was written; the first batch was
        assert_eq!(ids_in_t(&ctx).await, [1, 2]);
        assert_eq!(ledger_status(&ctx).await.0, LedgerStatus::Failed);

        // the fixed source runs again from the checkpoint: exactly once
        let mut s = Pages {
            pages: vec![(vec![1, 2], None), (vec![3, 4], None), (vec![5, 6], None)],
            next: 0,
        };
        run_batches(&ctx, &step(), plan(false), &mut s).await.unwrap();
        assert_eq!(ids_in_t(&ctx).await, [1, 2, 3, 4, 5, 6]);
        assert_eq!(
            ledger_status(&ctx).await,
            (
                LedgerStatus::Applied,
                Counts {
                    source: 6,
                    written: 6,
                    ..Counts::default()
                }
            )
        );
    }

    /// A batch bigger than a page is written as several pages in one transaction: a reject in
    /// its last page takes the batch's earlier pages back out with it, the checkpoint stays
    /// at the last committed batch, and the rerun writes every row once.
    #[tokio::test]
    async fn a_batch_of_several_pages_commits_or_rolls_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, mut rx) = ctx(dir.path()).await;
        let pages = |reject: Option<i64>| Pages {
            pages: vec![
                (vec![1, 2], None),
                (vec![3, 4], None),
                (vec![5, 6], None),
                (vec![7, 8], reject),
                (vec![9], None),
            ],
            next: 0,
        };
        let four = |continue_on_error| BatchPlan {
            total: 9,
            batch_size: 4,
            continue_on_error,
        };
        let err = run_batches(&ctx, &step(), four(false), &mut pages(Some(8)))
            .await
            .err()
            .expect("the reject stops the step");
        assert_eq!(err.counts.as_deref().map(|c| c.source), Some(4), "one batch committed");
        // 5 and 6 were written in the failed batch's first page: rolled back with it.
        assert_eq!(ids_in_t(&ctx).await, [1, 2, 3, 4]);
        let mut tx = ctx.target.begin().await.unwrap();
        let cp = BatchCheckpoint::load(&mut tx, &step().version).await.unwrap().unwrap();
        tx.rollback().await.unwrap();
        assert_eq!((cp.last_key, cp.batches), (Some(Value::Int(4)), 1));
        while rx.try_recv().is_ok() {}

        run_batches(&ctx, &step(), four(false), &mut pages(None)).await.unwrap();
        assert_eq!(ids_in_t(&ctx).await, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let (status, counts) = ledger_status(&ctx).await;
        assert_eq!((status, counts.source, counts.written), (LedgerStatus::Applied, 9, 9));
        let mut tx = ctx.target.begin().await.unwrap();
        let cp = BatchCheckpoint::load(&mut tx, &step().version).await.unwrap().unwrap();
        tx.rollback().await.unwrap();
        // 1-4 first, then 5-8 and the last page 9 on the rerun.
        assert_eq!(cp.batches, 3);
    }

    #[tokio::test]
    async fn an_abort_stops_at_the_batch_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _rx) = ctx(dir.path()).await;
        ctx.control.abort.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut s = Pages {
            pages: vec![(vec![1, 2], None)],
            next: 0,
        };
        let res = run_batches(&ctx, &step(), plan(true), &mut s).await.unwrap();
        assert!(matches!(res, StepResult::Aborted(c) if c == Counts::default()));
        assert!(ids_in_t(&ctx).await.is_empty());
        // the ledger says interrupted: a step that `up` resumes
        assert_eq!(ledger_status(&ctx).await.0, LedgerStatus::Interrupted);
    }

    /// The abort question holds the run at its next batch boundary: nothing more is written
    /// under it; `Paused` comes when the step has stopped there; a yes stops it interrupted.
    #[tokio::test]
    async fn the_abort_question_holds_at_the_boundary_and_yes_stops_there() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, mut rx) = ctx(dir.path()).await;
        let mut s = Pages {
            pages: vec![(vec![1, 2], None), (vec![3, 4], None), (vec![5, 6], None)],
            next: 0,
        };
        ctx.control.set_abort_question(true);
        let the_step = step();
        let (res, ()) = tokio::join!(run_batches(&ctx, &the_step, plan(true), &mut s), async {
            let paused = async {
                loop {
                    match rx.recv().await {
                        Some(EngineEvent::Paused { version }) => return version,
                        Some(_) => continue,
                        None => return None,
                    }
                }
            };
            let version = tokio::time::timeout(Duration::from_secs(5), paused)
                .await
                .expect("the step stops at its boundary and says Paused");
            assert_eq!(version.as_deref(), Some("20250101T000000"));
            // Held: give the step time it must not use.
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(ids_in_t(&ctx).await.is_empty(), "nothing is written under the question");
            ctx.control.request_abort();
        });
        assert!(matches!(res.unwrap(), StepResult::Aborted(c) if c == Counts::default()));
        assert!(ids_in_t(&ctx).await.is_empty());
        assert_eq!(ledger_status(&ctx).await.0, LedgerStatus::Interrupted);
    }

    /// A no releases the hold: `Resumed` comes, every row is written, and the time spent held
    /// is not part of the step's elapsed time (so not of its rows/s either).
    #[tokio::test]
    async fn a_released_hold_goes_on_and_held_time_is_not_elapsed() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, mut rx) = ctx(dir.path()).await;
        let mut s = Pages {
            pages: vec![(vec![1, 2], None), (vec![3, 4], None), (vec![5, 6], None)],
            next: 0,
        };
        ctx.control.set_paused(true);
        let the_step = step();
        let (res, events) = tokio::join!(run_batches(&ctx, &the_step, plan(true), &mut s), async {
            let mut seen = Vec::new();
            while let Some(e) = rx.recv().await {
                let paused = matches!(e, EngineEvent::Paused { .. });
                seen.push(e);
                if paused {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    ctx.control.set_paused(false);
                }
                if let Some(EngineEvent::Progress { progress, .. }) = seen.last()
                    && progress.rows_done == 6
                {
                    break;
                }
            }
            seen
        });
        assert!(matches!(res.unwrap(), StepResult::Done(_)));
        assert_eq!(ids_in_t(&ctx).await, [1, 2, 3, 4, 5, 6]);
        assert!(events.iter().any(|e| matches!(e, EngineEvent::Resumed { .. })));
        match events.last() {
            Some(EngineEvent::Progress { progress, .. }) => {
                assert!(
                    progress.elapsed_ms < 500,
                    "600 ms held are not elapsed: {}",
                    progress.elapsed_ms
                );
            }
            other => panic!("the last event is the final progress, got {other:?}"),
        }
    }
}
