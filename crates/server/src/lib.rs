//! The chat server: configuration, start-up, and the actix-web handlers that parse a
//! request, call a domain service and serialize its answer. No business rule lives here.
//!
//! - [`config::Settings`]: layered settings (defaults < `config/*.toml` < `CHAT_*` env).
//! - [`startup::Application`]: builds and runs the server; binds first, so port 0 works.
//! - `api`: the REST routes; `error::ApiError`: the one error mapping.
//! - [`auth`]: argon2id, JWT issue and verification, the `AuthUser` extractor, login limits.
//! - [`cli`]: `chat-server [serve]` and `chat-server migrate`.
//! - `ws`: the WebSocket endpoints and sessions, on the `realtime` crate's engine (fan-out,
//!   group commit, receipts, presence and typing of a node), whose adapters `backend` builds.
//! - Domain values become the `protocol` crate's wire types in `realtime::wire`.
//!
//! `api`, `backend`, `error` and `ws` are internal (`pub(crate)`); other crates use
//! `startup`, `config`, `cli`, `storage` and `auth`, and the wire types from `protocol`.

#![warn(missing_docs)]

pub(crate) mod api;
pub(crate) mod app;
pub mod auth;
pub(crate) mod backend;
pub mod cli;
pub mod config;
pub(crate) mod error;
pub(crate) mod origin;
pub mod startup;
pub(crate) mod state;
pub mod storage;
pub(crate) mod telemetry;
pub(crate) mod web;
pub(crate) mod ws;
