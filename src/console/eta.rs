//! The window clock's arithmetic: how much pending work is left and whether it fits the
//! maintenance window. Pure, from `AppState` only, and honest about what it does not know.

use crate::console::state::{AppState, is_runnable};
use crate::engine::project::StepKind;
use crate::engine::protocol::StepState;
use chrono::{DateTime, Duration, FixedOffset, Offset, Utc};

/// Where the rows/s figure comes from, so the header can say how much to trust it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateSource {
    /// The running step, now.
    Live,
    /// The last step that ran in this session.
    Session,
    /// Applied steps in the ledger: their rows over their durations.
    Ledger,
    /// Nothing measured on this target yet: `DEFAULT_RATE`, an assumption shown as one.
    Default,
    /// Nothing measured on this target yet, but the pre-flight pane's assess timed its pass
    /// (a dry run of the pending steps): its estimate, as an average rate.
    Assessed,
}

/// Rows per second assumed before anything ran on this target (a modest figure for a data step
/// with transforms and validations; the first batches replace it with the measured rate).
pub const DEFAULT_RATE: f64 = 5_000.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Rows still to process: the running step's remainder plus pending steps' last known sizes.
    pub rows_left: u64,
    /// Pending data/merge steps whose size is not known yet (never run, no dry run).
    pub unknown_steps: usize,
    pub pending_steps: usize,
    pub rate: Option<(f64, RateSource)>,
    /// Seconds of known work; None when there is work but no rate yet.
    pub secs: Option<u64>,
}

pub fn estimate(state: &AppState) -> Estimate {
    let current = state
        .run
        .as_ref()
        .and_then(|r| r.current.as_ref())
        .filter(|c| !c.dry_run);
    let mut rows_left = current
        .map(|c| c.progress.rows_total.saturating_sub(c.progress.rows_done))
        .unwrap_or(0);
    let rate = live_rate(state)
        .map(|r| (r, RateSource::Live))
        .or_else(|| state.last_rate.filter(|r| *r > 0.0).map(|r| (r, RateSource::Session)))
        .or_else(|| ledger_rate(state).map(|r| (r, RateSource::Ledger)))
        .unwrap_or((DEFAULT_RATE, RateSource::Default));
    let mut work_secs = rows_left as f64 / rate.0;
    let mut unknown_steps = 0;
    let mut used_assess = false;
    let mut pending_steps = usize::from(current.is_some());
    for m in state.migrations.iter().filter(|m| is_runnable(m)) {
        if current.is_some_and(|c| c.version == m.version) {
            continue;
        }
        pending_steps += 1;
        if m.kind == StepKind::Schema {
            // DDL takes seconds at most; it does not move the ETA.
            continue;
        }
        // The source as counted at start, less what an interrupted or failed run already got
        // through (it resumes from its checkpoint); else what a dry run or a run since reverted
        // counted.
        let resumes = matches!(m.state, StepState::Interrupted | StepState::Failed | StepState::Running);
        let known = state
            .source_rows
            .get(&m.version)
            .map(|n| if resumes { n.saturating_sub(m.counts.source) } else { *n })
            .or_else(|| state.dry_runs.get(&m.version).map(|c| c.source).filter(|n| *n > 0))
            .or((m.state == StepState::Reverted)
                .then_some(m.counts.source)
                .filter(|n| *n > 0));
        // The pre-flight pane's assess: its size when nothing else counted the source, and its
        // estimate when no rate was measured on this target (only the assumed default).
        let assessed = assessed_step(state, &m.version);
        let known = known.or_else(|| assessed.and_then(|a| a.source_rows));
        match known {
            Some(n) => {
                rows_left += n;
                // This step's own earlier run on this target says best how fast it goes.
                work_secs += match (own_rate(m), assessed) {
                    (Some(r), _) => n as f64 / r,
                    (None, Some(a)) if rate.1 == RateSource::Default && a.estimated_ms > 0 => {
                        used_assess = true;
                        a.estimated_ms as f64 / 1000.0
                    }
                    (None, _) => n as f64 / rate.0,
                };
            }
            None => unknown_steps += 1,
        }
    }
    let rate = if used_assess && work_secs > 0.0 {
        Some((rows_left as f64 / work_secs, RateSource::Assessed))
    } else {
        Some(rate)
    };
    let secs = if rows_left == 0 {
        Some(0)
    } else {
        Some(work_secs.ceil().max(1.0) as u64)
    };
    Estimate {
        rows_left,
        unknown_steps,
        pending_steps,
        rate,
        secs,
    }
}

/// The last assess's view of a pending step (not one that failed to be assessed).
fn assessed_step<'a>(state: &'a AppState, version: &str) -> Option<&'a crate::engine::protocol::assess::AssessStep> {
    state
        .assess
        .report
        .as_ref()?
        .steps
        .iter()
        .find(|s| s.version == version && s.error.is_none())
}

fn live_rate(state: &AppState) -> Option<f64> {
    let c = state.run.as_ref()?.current.as_ref()?;
    (c.progress.rows_per_sec > 0.0).then_some(c.progress.rows_per_sec)
}

/// A step's rows/s in its last run on this target (since reverted, or stopped part way).
fn own_rate(m: &crate::engine::ops::snapshot::StepSummary) -> Option<f64> {
    let ms = m.duration_ms.filter(|d| *d > 0)? as f64;
    (m.counts.source > 0 && m.state != StepState::Pending).then(|| m.counts.source as f64 * 1000.0 / ms)
}

fn ledger_rate(state: &AppState) -> Option<f64> {
    let (rows, ms) = state
        .migrations
        .iter()
        .filter(|m| matches!(m.state, StepState::Applied | StepState::Reverted) && m.kind != StepKind::Schema)
        .filter_map(|m| m.duration_ms.filter(|d| *d > 0).map(|d| (m.counts.source, d as u64)))
        .fold((0u64, 0u64), |(r, t), (a, b)| (r + a, t + b));
    (rows > 0 && ms > 0).then(|| rows as f64 * 1000.0 / ms as f64)
}

/// Where the clock stands against the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Clock {
    pub now: DateTime<FixedOffset>,
    /// Seconds until the window opens (positive) or until it closes (when open).
    pub opens_in: Option<i64>,
    pub left: Option<i64>,
    /// When the known work would end.
    pub eta_end: Option<DateTime<FixedOffset>>,
    /// The ETA passes the window end (or the window is over with work pending).
    pub overrun: bool,
}

pub fn clock(state: &AppState, est: &Estimate) -> Clock {
    let offset = state.window.map(|w| *w.end.offset()).unwrap_or_else(|| Utc.fix());
    let now = state.now.with_timezone(&offset);
    let eta_end = est
        .secs
        .map(|s| now + Duration::seconds(s.min(i64::MAX as u64 / 2) as i64));
    let (opens_in, left, overrun) = match state.window {
        None => (None, None, false),
        Some(w) => {
            let opens_in = (now < w.start).then(|| (w.start - now).num_seconds());
            let left = (w.end - now).num_seconds();
            let work_left = est.pending_steps > 0;
            let overrun = match eta_end {
                Some(end) => work_left && end > w.end,
                None => work_left && left <= 0,
            };
            (opens_in, Some(left), overrun)
        }
    };
    Clock {
        now,
        opens_in,
        left,
        eta_end,
        overrun,
    }
}

/// The plan's ETA in one sentence, for the run-all question: how long, when it would end, at
/// what rate and where that rate comes from, and whether it fits the window.
pub fn plan_summary(state: &AppState) -> String {
    use crate::console::format::{fmt_rate, fmt_secs};
    let est = estimate(state);
    let clock = clock(state, &est);
    let Some(secs) = est.secs else {
        return "ETA unknown".to_string();
    };
    let mut text = match (secs, est.rate) {
        (0, _) => "ETA: seconds (no rows to move)".to_string(),
        (s, Some((r, source))) => {
            let (approx, from) = match source {
                RateSource::Live => ("", "now"),
                RateSource::Session => ("", "as the last step"),
                RateSource::Ledger => ("", "as past runs on this target"),
                RateSource::Default => ("~", "assumed: nothing measured on this target yet"),
                RateSource::Assessed => ("~", "as the pre-flight assess measured"),
            };
            format!(
                "ETA {approx}{} for {} rows, at {approx}{} ({from})",
                fmt_secs(s as i64),
                crate::console::format::fmt_count(est.rows_left),
                fmt_rate(r)
            )
        }
        (s, None) => format!("ETA {}", fmt_secs(s as i64)),
    };
    if let Some(end) = clock.eta_end.filter(|_| secs > 0) {
        text.push_str(&format!("; ends {}", end.format("%H:%M")));
    }
    if let Some(w) = state.window {
        if clock.overrun {
            text.push_str(&format!(", OVERRUNS the window (ends {})", w.end.format("%H:%M")));
        } else if est.unknown_steps == 0 {
            text.push_str(&format!(", fits the window (ends {})", w.end.format("%H:%M")));
        }
    }
    if est.unknown_steps > 0 {
        text.push_str(&format!(" (+{} step(s) of unknown size)", est.unknown_steps));
    }
    text
}
