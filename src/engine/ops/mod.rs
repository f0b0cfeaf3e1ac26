//! Operations over steps of every kind, called by the runner and the CLI alike: rollback,
//! rejects (fix, retry), review of merge discrepancies, and the snapshot the console shows.

pub mod assess;
pub mod backup;
pub mod check;
pub mod rejects;
pub mod repair;
pub mod report;
pub mod review;
pub mod rollback;
pub mod snapshot;
pub mod verify;

use crate::engine::data::pipeline::CompiledStep;
use crate::engine::project::{StepDef, StepKind};
use crate::engine::steps::merge::MergeStep;
use color_eyre::eyre::Result;

/// The compiled data step a step's rows are written by: a data step, or side A of a merge
/// step (which writes one table with one id column, like its side A).
pub fn load_compiled(step: &StepDef) -> Result<CompiledStep> {
    match step.kind {
        StepKind::Merge => Ok(MergeStep::load(step)?.a),
        _ => crate::engine::steps::data::load(step),
    }
}
