//! Incremental sync (`cutover sync`): keep the target in step with a legacy source that is
//! still in use. Each applied data step with `[sync]` re-reads the rows whose change cursor
//! grew since its high-water mark and applies them through the step's own transforms and
//! validations: upserts by ID map or natural key, deletes for soft-deleted rows, rejects as
//! usual. The mark commits with each batch (`store::sync_marks`), so a pass killed at any
//! instant resumes after its last batch and applies nothing twice.

pub mod pass;
pub mod read;

use std::time::Duration;

/// What `Command::Sync` asks for.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub once: bool,
    pub every: Option<Duration>,
    /// Only these versions (empty: every step with `[sync]`).
    pub steps: Vec<String>,
}
