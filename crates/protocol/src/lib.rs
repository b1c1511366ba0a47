#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod client;
pub mod error;
pub mod rest;
pub mod server;

pub use client::ClientFrame;
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use server::ServerFrame;
