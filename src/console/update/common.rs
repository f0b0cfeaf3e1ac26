//! Helpers shared by the parts of `update`: the refusals every write action checks first, and
//! the one-line summaries of a step's counts (also used by the progress pane).
//!
//! This module depends on none of its siblings, so any of them may use it without a cycle.

use crate::console::format::fmt_count;
use crate::console::state::{AppState, StatusLevel};
use crate::engine::protocol::Counts;

/// Write actions are refused while another process holds the target's run lock.
pub fn refuse_if_locked(state: &mut AppState) -> bool {
    if let Some(h) = state.foreign_lock() {
        let text = format!(
            "read-only: the target is locked by {}@{} since {}",
            h.owner, h.host, h.since
        );
        state.set_status(StatusLevel::Warn, text);
        return true;
    }
    false
}

pub fn refuse_if_running(state: &mut AppState) -> bool {
    if state.running() {
        state.set_status(
            StatusLevel::Warn,
            "a run is in progress; wait for it to end (p pauses, x aborts)",
        );
        return true;
    }
    false
}

/// "100 source = 95 written + 3 skipped + 2 rejected + 0 merged (balanced)".
pub fn books(c: &Counts) -> String {
    format!(
        "{} source = {} written + {} skipped + {} rejected + {} merged ({})",
        fmt_count(c.source),
        fmt_count(c.written),
        fmt_count(c.skipped),
        fmt_count(c.rejected),
        fmt_count(c.merged),
        if c.balanced() { "balanced" } else { "NOT balanced" }
    )
}

pub fn would_be(c: &Counts) -> String {
    format!(
        "would write {}, reject {}, skip {}, merge {} of {} rows ({} warnings)",
        fmt_count(c.written),
        fmt_count(c.rejected),
        fmt_count(c.skipped),
        fmt_count(c.merged),
        fmt_count(c.source),
        fmt_count(c.warnings)
    )
}
