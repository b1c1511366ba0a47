//! `chat-loadgen`, the load generator of SPEC section 9: it provisions users straight into
//! the server's store (one fixed argon2 hash, tokens minted with the server's key), creates
//! conversations over REST, opens WebSocket connections from loopback source addresses,
//! runs a scenario (`idle`, `direct`, `group`, `storm`) for a bounded time, and reports
//! connections, rates, latency percentiles, duplicates, gaps and acked-but-lost messages.
//! The `persist` scenario needs no server: it commits batches straight to the store through
//! `MessageStore::append_messages`, as the server's group-commit batcher does, and reads
//! everything back ([`persist`]).
//!
//! It only ever targets 127.0.0.1, and every run stops by itself ([`run::run_bound`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use clap::Parser;
//! let args = loadgen::cli::Args::try_parse_from([
//!     "chat-loadgen", "--scenario", "direct", "--clients", "40", "--duration", "2s",
//! ])?;
//! let report = loadgen::run::run(args).await?;
//! println!("{}", report.table());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod cli;
pub mod client;
pub mod metrics;
pub mod persist;
pub mod procstat;
pub mod provision;
pub mod report;
pub mod run;
pub mod track;

pub use clap;
