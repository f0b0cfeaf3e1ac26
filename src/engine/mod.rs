//! The migration engine. No terminal code lives here: the console and CLI reach it only
//! through `Command`s in and `EngineEvent`s out.

pub mod backend;
pub mod checksum;
pub mod config;
pub mod data;
pub mod db;
pub mod db_error;
pub mod decode;
pub mod events;
pub mod ledger;
pub mod lock;
pub mod merge;
pub mod plan;
pub mod preflight;
pub mod project;
pub mod review;
pub mod runner;
pub mod schema_step;
pub mod snapshot;
pub mod sqlsplit;
pub mod transform;
pub mod validate;
pub mod value;
pub mod verify;
