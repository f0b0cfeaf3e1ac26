//! `cutover backup [--out FILE]` and `cutover restore FILE --yes`.

use crate::cli::exit;
use crate::engine::ops::backup::{self, BackupError};
use crate::engine::project::Project;
use crate::engine::store::lock::LockError;
use color_eyre::eyre::Result;
use std::path::Path;

/// The exit code of a refused backup or restore (exit 4, or 3 for a lock), with its message;
/// `None` for any other error.
fn refusal(e: &color_eyre::Report) -> Option<(i32, String)> {
    let b = e.downcast_ref::<BackupError>()?;
    let code = match b {
        BackupError::Locked(LockError::Held(_)) => exit::LOCKED,
        BackupError::Locked(_) | BackupError::ToolFailed { .. } | BackupError::NoFile(_) => return None,
        _ => exit::REFUSED,
    };
    Some((code, b.to_string()))
}

fn refuse(json: bool, code: i32, msg: &str) -> i32 {
    if json {
        println!("{}", serde_json::json!({"event": "refused", "error": msg}));
    } else {
        eprintln!("refused: {msg}");
    }
    code
}

pub async fn backup(project: &Project, out: Option<&Path>, json: bool) -> Result<i32> {
    match backup::backup(project, out).await {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "backed up the target to {} ({} bytes, sha256 {})",
                    r.file, r.bytes, r.sha256
                );
            }
            Ok(exit::OK)
        }
        Err(e) => match refusal(&e) {
            Some((code, msg)) => Ok(refuse(json, code, &msg)),
            None => Err(e),
        },
    }
}

pub async fn restore(project: &Project, file: &Path, yes: bool, json: bool) -> Result<i32> {
    match backup::restore(project, file, yes).await {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                if let Some(w) = &r.warning {
                    eprintln!("warning: {w}");
                }
                match &r.recorded {
                    Some(b) => println!(
                        "restored the target from {} (the backup of {} by {}; sha256 matches the ledger)",
                        r.file, b.at, b.os_user
                    ),
                    None => println!("restored the target from {} (sha256 {})", r.file, r.sha256),
                }
            }
            Ok(exit::OK)
        }
        Err(e) => match refusal(&e) {
            Some((code, msg)) => Ok(refuse(json, code, &msg)),
            None => Err(e),
        },
    }
}
