//! Exit codes, documented in the README.

pub const OK: i32 = 0;
/// A step failed, or an error (configuration, connection, bad input).
pub const FAILED: i32 = 1;
/// Command-line usage error (clap).
pub const USAGE: i32 = 2;
/// Another run holds the target's lock.
pub const LOCKED: i32 = 3;
/// The plan was refused: modified applied migration, step left failed/running, out of order,
/// or a destructive command without --yes.
pub const REFUSED: i32 = 4;
/// `verify` found a failing check.
pub const VERIFY_FAILED: i32 = 5;
/// The operator aborted the run at a batch boundary; `cutover up` resumes it.
pub const ABORTED: i32 = 6;
