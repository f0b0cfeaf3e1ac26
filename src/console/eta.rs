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
}

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
    let mut unknown_steps = 0;
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
        // A reverted step ran to the end once, so its source count is its size; a failed or
        // interrupted one only counted what it got through. A dry run counted everything.
        let known = state
            .dry_runs
            .get(&m.version)
            .map(|c| c.source)
            .or((m.state == StepState::Reverted).then_some(m.counts.source))
            .filter(|n| *n > 0);
        match known {
            Some(n) => rows_left += n,
            None => unknown_steps += 1,
        }
    }
    let rate = live_rate(state)
        .map(|r| (r, RateSource::Live))
        .or_else(|| state.last_rate.filter(|r| *r > 0.0).map(|r| (r, RateSource::Session)))
        .or_else(|| ledger_rate(state).map(|r| (r, RateSource::Ledger)));
    let secs = if rows_left == 0 {
        Some(0)
    } else {
        rate.map(|(r, _)| (rows_left as f64 / r).ceil() as u64)
    };
    Estimate {
        rows_left,
        unknown_steps,
        pending_steps,
        rate,
        secs,
    }
}

fn live_rate(state: &AppState) -> Option<f64> {
    let c = state.run.as_ref()?.current.as_ref()?;
    (c.progress.rows_per_sec > 0.0).then_some(c.progress.rows_per_sec)
}

fn ledger_rate(state: &AppState) -> Option<f64> {
    let (rows, ms) = state
        .migrations
        .iter()
        .filter(|m| m.state == StepState::Applied && m.kind != StepKind::Schema)
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
