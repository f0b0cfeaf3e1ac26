//! The sync lag gauges follow a `cutover sync` running elsewhere (another terminal, a
//! service): while any step has a mark and no run of this console is going, the snapshot (which
//! carries each step's last measured lag) is read again every few seconds.

use crate::console::state::AppState;
use crate::engine::protocol::Command;

/// How often the snapshot is read again for the gauges.
pub const SYNC_REFRESH_SECS: i64 = 5;

pub fn on_tick(state: &mut AppState) -> Vec<Command> {
    let synced = state.migrations.iter().any(|m| m.sync.is_some());
    if !synced || state.run.is_some() {
        return Vec::new();
    }
    let due = state
        .sync_refreshed_at
        .is_none_or(|at| (state.now - at).num_seconds() >= SYNC_REFRESH_SECS);
    if !due {
        return Vec::new();
    }
    state.sync_refreshed_at = Some(state.now);
    vec![Command::Refresh]
}
