//! `--metrics-addr`: the engine's events as Prometheus metrics, for the people who watch a
//! dashboard rather than the terminal.
//!
//! The faces (`cutover up`, `sync`, the console) hand every event they receive to
//! [`Metrics::observe`]; a [`board::Board`] folds them into plain numbers; an HTTP listener
//! encodes the board at each `GET /metrics`. Nothing here talks to a database: the numbers are
//! the events', which are the ledger's.

pub mod board;
pub mod exposition;
pub mod http;

use crate::engine::project::Project;
use crate::engine::protocol::EngineEvent;
use board::Board;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Shown with its cause (eyre prints the chain): "…: Address already in use".
    #[error("cannot serve metrics on {addr}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// The exporter: cheap to clone; the listener stops when the last clone is dropped.
#[derive(Clone)]
pub struct Metrics {
    board: Arc<Mutex<Board>>,
    addr: SocketAddr,
    _listener: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Metrics {
    /// Bind `addr` now (so a taken port fails before any work starts) and answer scrapes on a
    /// tokio task. Needs a tokio runtime.
    pub fn serve(addr: SocketAddr, project: &Project) -> Result<Metrics, MetricsError> {
        let bind_error = |source| MetricsError::Bind { addr, source };
        let std_listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        std_listener.set_nonblocking(true).map_err(bind_error)?;
        // Port 0 asks the system for a free one: report the one it gave.
        let addr = std_listener.local_addr().map_err(bind_error)?;
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(bind_error)?;
        let board = Arc::new(Mutex::new(Board::new(
            project.config.window.as_ref().map(|w| w.end),
            project.steps.iter().map(|s| (s.version.clone(), s.name.clone())),
        )));
        let registry = Arc::new(exposition::registry(board.clone()));
        let task = tokio::spawn(http::serve(listener, registry));
        Ok(Metrics {
            board,
            addr,
            _listener: Arc::new(AbortOnDrop(task)),
        })
    }

    /// The address the listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Fold one engine event into the numbers; never waits on a scrape for long (a scrape
    /// holds the lock only while it encodes).
    pub fn observe(&self, ev: &EngineEvent) {
        self.board().observe(ev, chrono::Utc::now());
    }

    /// The lag a sync pass reported for a step (`EngineEvent::Synced`).
    pub fn observe_sync_lag(&self, version: &str, lag_rows: u64, lag_seconds: Option<f64>) {
        self.board().synced(version, lag_rows, lag_seconds);
    }

    /// The text a scrape would get now.
    pub fn render(&self) -> String {
        let registry = exposition::registry(self.board.clone());
        exposition::render(&registry).unwrap_or_default()
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }
}
