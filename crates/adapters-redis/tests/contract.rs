//! The Redis adapters pass every real-time contract suite. Each test runs on its own key
//! prefix; each node has its own connections.

mod common;

use common::RedisBackend;

realtime_contract::realtime_contract_tests!(RedisBackend::fresh);
