//! A source read on its own task, ahead of the writer, so reading and writing overlap. A step
//! may also give a pure per-page preparation (a data step's transforms and validations) that
//! runs on that side, on a blocking thread, so the CPU work of page N+1 overlaps the target's
//! work on page N. The channel of one page bounds memory. The task ends with an explicit end
//! marker: a channel that closes without it means the reader died, which must fail the step and
//! never look like the end of the data.

use crate::engine::data::pipeline::SourceBatch;
use crate::engine::source::Source;
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Pages prepared ahead of the writer; `T` is what one page becomes (the page itself when
/// nothing is prepared ahead).
pub struct ReadAhead<T = SourceBatch> {
    pages: mpsc::Receiver<Result<Option<T>>>,
    task: Option<JoinHandle<()>>,
    name: String,
}

impl ReadAhead<SourceBatch> {
    /// Start reading `source` after `start`, `batch_size` rows a page.
    pub fn spawn<S: Source>(source: S, start: Option<Value>, batch_size: usize) -> ReadAhead<SourceBatch> {
        Self::spawn_inline(source, start, batch_size, |p| p)
    }
}

impl<T: Send + 'static> ReadAhead<T> {
    /// Read `source` and turn each page into a `T` with `prepare` on a blocking thread (CPU work
    /// must not hold up the runtime's workers, which also draw the console).
    pub fn spawn_prepared<S, F>(source: S, start: Option<Value>, batch_size: usize, prepare: F) -> ReadAhead<T>
    where
        S: Source,
        F: Fn(SourceBatch) -> T + Send + Sync + 'static,
    {
        let prepare = Arc::new(prepare);
        Self::spawn_with(source, start, batch_size, move |page| {
            let prepare = prepare.clone();
            prepare_on_blocking_thread(move || prepare(page))
        })
    }

    fn spawn_inline<S, F>(source: S, start: Option<Value>, batch_size: usize, f: F) -> ReadAhead<T>
    where
        S: Source,
        F: Fn(SourceBatch) -> T + Send + Sync + 'static,
    {
        Self::spawn_with(source, start, batch_size, move |page| std::future::ready(Ok(f(page))))
    }

    /// Read `source` and turn each page into a `T` with the async `f` (a step whose page needs
    /// queries before it can be decided).
    pub fn spawn_with<S, F, Fut>(mut source: S, start: Option<Value>, batch_size: usize, f: F) -> ReadAhead<T>
    where
        S: Source,
        F: Fn(SourceBatch) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send,
    {
        let name = source.name().to_string();
        let (tx, pages) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            let mut after = start;
            loop {
                let msg = match source.page(&after, batch_size).await {
                    Ok(p) if p.rows.is_empty() => Ok(None),
                    Ok(p) => {
                        after = source.key_after(&p);
                        f(p).await.map(Some)
                    }
                    Err(e) => Err(e),
                };
                let last = !matches!(msg, Ok(Some(_)));
                if tx.send(msg).await.is_err() || last {
                    break;
                }
            }
        });
        ReadAhead {
            pages,
            task: Some(task),
            name,
        }
    }

    /// The next page; `Ok(None)` only when the source said it has no more rows.
    pub async fn next(&mut self) -> Result<Option<T>> {
        match self.pages.recv().await {
            Some(msg) => msg,
            None => {
                let why = match self.task.take() {
                    Some(h) => match h.await {
                        Err(e) if e.is_panic() => panic_text(e.into_panic()),
                        Err(e) => e.to_string(),
                        Ok(()) => "it ended without saying the data was complete".into(),
                    },
                    None => "it had stopped before".into(),
                };
                Err(eyre!("the source reader of {} stopped: {why}", self.name))
            }
        }
    }
}

impl<T> Drop for ReadAhead<T> {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Run a page's CPU work on a blocking thread (the runtime's workers also draw the console);
/// a panic in it becomes an error that says so.
pub async fn prepare_on_blocking_thread<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(p) => eyre!("preparing a page {}", panic_text(p)),
            Err(e) => eyre!("preparing a page stopped: {e}"),
        })
}

/// A panic's message, for the operator (a decoder bug must still say what happened).
fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    match p.downcast::<String>() {
        Ok(s) => format!("it panicked: {s}"),
        Err(p) => match p.downcast::<&str>() {
            Ok(s) => format!("it panicked: {s}"),
            Err(_) => "it panicked".into(),
        },
    }
}
