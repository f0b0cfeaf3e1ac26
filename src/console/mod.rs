//! The ratatui console (see console/mod.rs docs).
