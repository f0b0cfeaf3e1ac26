//! Database connections: the names the engine has always used for them, now defined with
//! their per-dialect parts in [`crate::engine::backend`].

pub use crate::engine::backend::{
    CommitWatch, Db, DbTx, Dialect, PageStream, PrefetchedStream, Role, Rows, SecondaryIndex, TableForeignKey,
    quote_ident, sqlite_path,
};
