//! Where a step's rows come from. A `Source` counts its rows and hands out pages in key
//! order after a key, so any source can be resumed from a checkpoint; `ReadAhead` runs one on
//! its own task one page ahead of the writer. Tables and queries of a database are
//! `data::reader::SourceReader`; file sources plug in here the same way.

pub mod file;
pub mod read_ahead;
pub mod table;

use crate::engine::data::pipeline::SourceBatch;
use crate::engine::value::Value;
use color_eyre::eyre::Result;
use std::future::Future;

/// A step's source, read in pages.
pub trait Source: Send + 'static {
    /// How the operator knows this source: a table name, a query's name, a file.
    fn name(&self) -> &str;

    /// How many rows the source has, as it counts them itself.
    fn count(&self) -> impl Future<Output = Result<u64>> + Send;

    /// Before the first page: is every column the step reads there? The message says which
    /// is missing, where.
    fn check(&self) -> impl Future<Output = Result<(), String>> + Send;

    /// Up to `limit` rows after `after` (from the start when `None`), in key order.
    fn page(&mut self, after: &Option<Value>, limit: usize) -> impl Future<Output = Result<SourceBatch>> + Send;

    /// The checkpoint key of a page's last row: where the next page starts.
    fn key_after(&self, page: &SourceBatch) -> Option<Value>;
}
