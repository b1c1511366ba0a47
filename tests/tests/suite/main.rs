//! The end-to-end suite: real server nodes (in-process, or `chat-node` processes) over real
//! HTTP and WebSocket connections on random ports, one module per area. One test binary, so
//! the server and its dependencies are linked once, not once per file.
//!
//! Run one area with `cargo test -p e2e --test suite ws_flow::`, one test by its name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attachments;
mod deploy_nginx;
mod durability;
mod e2ee;
mod e2ee_conversations;
mod fault_node;
mod fault_postgres;
mod fault_redis;
mod fault_sigterm;
mod lifecycle_rest;
mod openapi;
mod rest_auth;
mod rest_bad_input;
mod rest_direct;
mod rest_groups;
mod restart;
mod unstorable_input;
mod upgrade;
mod web_client;
mod ws_auth;
mod ws_cluster;
mod ws_costs;
mod ws_flow;
mod ws_groups;
mod ws_lifecycle;
mod ws_limits;
mod ws_messages;
mod ws_own_echo;
mod ws_protocol_edges;
mod ws_pubsub_kill;
mod ws_recovery;
mod ws_replay_publish;
mod ws_rest_send_typing;
mod ws_storage_down;
