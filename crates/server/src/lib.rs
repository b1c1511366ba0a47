//! The chat server: configuration, start-up, and the actix-web handlers that parse a
//! request, call a domain service and serialize its answer. No business rule lives here.
//!
//! - [`config::Settings`]: layered settings (defaults < `config/*.toml` < `CHAT_*` env).
//! - [`startup::Application`]: builds and runs the server; binds first, so port 0 works.
//! - `api`: the REST routes; `error::ApiError`: the one error mapping.
//! - [`auth`]: argon2id, JWT issue and verification, the `AuthUser` extractor, login limits.
//! - [`cli`]: `chat-server [serve]` and `chat-server migrate`.
//! - `ws`: the WebSocket endpoints and sessions; `realtime`: fan-out, group commit,
//!   receipts, presence and typing of a node.
//! - `wire`: domain values into the `protocol` crate's wire types (REST bodies, frames).
//!
//! `api`, `error`, `realtime`, `ws` and `wire` are internal (`pub(crate)`); other crates use
//! `startup`, `config`, `cli`, `storage` and `auth`, and the wire types from `protocol`.

#![warn(missing_docs)]

pub(crate) mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub(crate) mod error;
pub mod origin;
pub(crate) mod realtime;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod web;
mod wire;
pub(crate) mod ws;
