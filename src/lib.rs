//! cutover: a terminal migration console. The engine moves rows; the console and the CLI are
//! two faces over it that only talk to it through typed messages.

pub mod cli;
pub mod console;
pub mod demo;
pub mod engine;
pub mod generator;
pub mod metrics;
