//! The migration engine. No terminal code lives here: the console and CLI reach it only
//! through `Command`s in and `EngineEvent`s out.

pub mod backend;
pub mod checksum;
pub mod clock;
pub mod config;
pub mod data;
pub mod db;
pub mod db_error;
pub mod decode;
pub mod exec;
pub mod ops;
pub mod plan;
pub mod preflight;
pub mod preview;
pub mod project;
pub mod protocol;
pub mod runner;
pub mod source;
pub mod sqlsplit;
pub mod steps;
pub mod store;
pub mod sync;
pub mod transform;
pub mod validate;
pub mod value;
