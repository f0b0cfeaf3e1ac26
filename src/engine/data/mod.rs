//! Data steps: declarative `step.toml` moves of rows from the source to the target.

pub mod bucket;
pub mod collection;
pub mod embed;
pub mod pipeline;
pub mod reader;
pub mod spec;
pub mod templates;
pub mod writer;
