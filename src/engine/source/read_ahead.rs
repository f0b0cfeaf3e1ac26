//! A source read on its own task, one page ahead of the writer, so reading and writing
//! overlap. The channel of two pages bounds memory. The task ends with an explicit end marker:
//! a channel that closes without it means the reader died, which must fail the step and never
//! look like the end of the data.

use crate::engine::data::pipeline::SourceBatch;
use crate::engine::source::Source;
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub struct ReadAhead {
    pages: mpsc::Receiver<Result<Option<SourceBatch>>>,
    task: Option<JoinHandle<()>>,
    name: String,
}

impl ReadAhead {
    /// Start reading `source` after `start`, `batch_size` rows a page.
    pub fn spawn<S: Source>(mut source: S, start: Option<Value>, batch_size: usize) -> ReadAhead {
        let name = source.name().to_string();
        let (tx, pages) = mpsc::channel(2);
        let task = tokio::spawn(async move {
            let mut after = start;
            loop {
                let msg = match source.page(&after, batch_size).await {
                    Ok(p) if p.rows.is_empty() => Ok(None),
                    Ok(p) => {
                        after = source.key_after(&p);
                        Ok(Some(p))
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
    pub async fn next(&mut self) -> Result<Option<SourceBatch>> {
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

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
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
