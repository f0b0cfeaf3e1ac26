//! A database table or query as a `Source`: keyset pages through `SourceReader`.

use crate::engine::config::Config;
use crate::engine::data::pipeline::{CompiledStep, SourceBatch};
use crate::engine::data::reader::SourceReader;
use crate::engine::db::Db;
use crate::engine::source::Source;
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use std::future::Future;

impl Source for SourceReader {
    fn name(&self) -> &str {
        &self.compiled().source_name
    }

    fn count(&self) -> impl Future<Output = Result<u64>> + Send {
        SourceReader::count(self)
    }

    fn check(&self) -> impl Future<Output = Result<(), String>> + Send {
        self.check_columns()
    }

    fn page(&mut self, after: &Option<Value>, limit: usize) -> impl Future<Output = Result<SourceBatch>> + Send {
        SourceReader::page(self, after, limit)
    }

    fn key_after(&self, page: &SourceBatch) -> Option<Value> {
        page.rows
            .last()
            .and_then(|r| self.compiled().page_key(&page.columns, r))
    }
}

/// Count a step's source rows wherever they are: its file, or the source database (`db`;
/// `None` when the project has none, which only a file step can do without).
pub async fn count_step_source(config: &Config, db: Option<&Db>, c: &CompiledStep) -> Result<u64> {
    if c.spec.source.is_file() {
        return crate::engine::source::file::count_step_file(config, c).await;
    }
    match db {
        Some(db) => count_source(db, c).await,
        None => Err(config
            .source_db()
            .err()
            .unwrap_or_else(|| eyre!("the source is not open"))),
    }
}

/// Count source rows (for progress, ETA and the plan's estimate).
pub async fn count_source(source: &Db, c: &CompiledStep) -> Result<u64> {
    crate::engine::data::reader::count_rows(source, &c.spec.source_sql(source.dialect())).await
}
