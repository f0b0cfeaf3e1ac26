//! `b` in the run-all confirmation: back up the target first, and run all pending steps only
//! when the backup is written (a failed backup starts nothing and says why).

use crate::console::format::one_line;
use crate::console::state::{AppState, RunState, StatusLevel};
use crate::engine::protocol::{Command, Operation, RunOptions};

pub fn backup_then_run_all(state: &mut AppState) -> Vec<Command> {
    // Counted as running from now on, so no other write starts under the backup.
    state.run = Some(RunState {
        operation: Operation::Up,
        all: true,
        ..Default::default()
    });
    state.backup.in_flight = true;
    state.set_status(
        StatusLevel::Info,
        "backing up the target; the run starts when the backup is written…",
    );
    vec![Command::Backup { out: None }]
}

pub fn on_backed_up(state: &mut AppState, file: String, bytes: u64, error: Option<String>) -> Vec<Command> {
    let waiting = std::mem::take(&mut state.backup.in_flight);
    match error {
        Some(why) => {
            let msg = format!("backup failed: {why}");
            state.backup.last = Some(msg.clone());
            if waiting {
                // Nothing started: the run waits for an operator who knows the backup failed.
                state.run = None;
                state.set_status(
                    StatusLevel::Error,
                    one_line(&format!("{msg} — the run was not started")),
                );
            } else {
                state.set_status(StatusLevel::Error, one_line(&msg));
            }
            Vec::new()
        }
        None => {
            let msg = format!("backed up to {file} ({bytes} bytes)");
            state.backup.last = Some(msg.clone());
            if waiting && state.run.is_some() {
                state.set_status(
                    StatusLevel::Info,
                    one_line(&format!("{msg}; running all pending steps")),
                );
                vec![Command::Start(RunOptions::default())]
            } else {
                state.set_status(StatusLevel::Info, one_line(&msg));
                Vec::new()
            }
        }
    }
}
