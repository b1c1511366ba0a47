//! The chat server: configuration, start-up, and the actix-web handlers that parse a
//! request, call a domain service and serialize its answer. No business rule lives here.

pub mod auth;
pub mod config;
pub mod error;
