//! A fresh data step into an empty table builds the table's plain indexes after its rows are
//! in, instead of keeping them up to date row by row (see `store::deferred_indexes`, which
//! records them so that the next `up`, `down` or `sync` after a killed run builds them first).

use crate::engine::data::pipeline::CompiledStep;
use crate::engine::db::SecondaryIndex;
use crate::engine::exec::{RunCtx, StepError};
use crate::engine::protocol::{EngineEvent, NoticeLevel};
use crate::engine::store::deferred_indexes;
use crate::engine::transform::LookupSpec;
use crate::engine::transform::Transform;

/// Drop the plain indexes of the empty table step `c` is about to fill (a start, not a
/// resume; the caller has found the table empty), recording them to be built when the step
/// ends. Kept: an index led by a column of the natural key, or by an expression (the step's
/// own duplicate checks look rows up by it), and every index when a lookup of the step
/// searches its own table. Unique and
/// constraint indexes are never dropped (they refuse rows as they come). A catalog question
/// that fails costs speed only: the step runs with its indexes.
pub async fn defer(ctx: &RunCtx, c: &CompiledStep) -> Result<(), StepError> {
    let spec = &c.spec;
    if spec.sync.is_some() || c.collection.is_some() || looks_in_own_table(c) {
        return Ok(());
    }
    let table = &spec.target.table;
    let indexes = match ctx.target.secondary_indexes(table).await {
        Ok(i) => i,
        Err(e) => {
            tracing::debug!("step {}: the indexes of {table} stay as they are: {e:#}", c.version);
            return Ok(());
        }
    };
    let deferred: Vec<SecondaryIndex> = indexes
        .into_iter()
        .filter(|i| {
            // Case-blind: SQLite's column names are (keeping one too many costs nothing).
            i.first_column
                .as_ref()
                .is_some_and(|f| !spec.target.natural_key.iter().any(|k| k.eq_ignore_ascii_case(f)))
        })
        .collect();
    if deferred.is_empty() {
        return Ok(());
    }
    deferred_indexes::defer(&ctx.target, &c.version, table, &deferred)
        .await
        .map_err(StepError::plain)?;
    let names: Vec<&str> = deferred.iter().map(|i| i.name.as_str()).collect();
    ctx.emit(EngineEvent::Notice {
        level: NoticeLevel::Info,
        message: format!(
            "step {}: {table} is empty, so its index(es) {} are built once its rows are in",
            c.version,
            names.join(", ")
        ),
    })
    .await;
    Ok(())
}

/// Build the indexes step `version` left out while it wrote into its empty table, however it
/// ended (done, failed, aborted), each with the removal of its record (a build that fails
/// keeps it for the next run).
pub async fn build_again(ctx: &RunCtx, version: &str) -> Result<(), StepError> {
    let done = deferred_indexes::rebuild(&ctx.target, Some(version))
        .await
        .map_err(StepError::plain)?;
    if !done.done.is_empty() {
        ctx.emit(EngineEvent::Notice {
            level: NoticeLevel::Info,
            message: format!("step {version}: built the index(es) {}", done.done.join(", ")),
        })
        .await;
    }
    Ok(())
}

fn looks_in_own_table(c: &CompiledStep) -> bool {
    let table = &c.spec.target.table;
    c.spec.fields.iter().any(|f| {
        f.transforms
            .iter()
            .any(|t| matches!(t, Transform::Lookup(LookupSpec::Table(l)) if &l.table == table))
    })
}
