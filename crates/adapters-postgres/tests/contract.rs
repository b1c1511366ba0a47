//! The shared storage contract suite, against PostgreSQL: every case on its own fresh
//! database, so the cases run in parallel.

use adapters_postgres::testing::fresh_database;
use adapters_postgres::PostgresStorage;
use std::sync::Arc;

async fn connect(url: &str) -> Arc<dyn domain::ports::Storage> {
    match PostgresStorage::connect(url, 8).await {
        Ok(store) => Arc::new(store),
        Err(err) => panic!("could not connect to the test database {url}: {err}"),
    }
}

async fn fresh_store() -> Arc<dyn domain::ports::Storage> {
    connect(&fresh_database().await).await
}

storage_contract::storage_contract_tests!(fresh_store);

/// Two nodes: two separate pools on one database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_through_two_stores_share_one_gap_free_sequence() {
    let url = fresh_database().await;
    let (node_a, node_b) = (connect(&url).await, connect(&url).await);
    storage_contract::concurrency::sends_through_two_stores_share_one_gap_free_sequence(
        node_a, node_b,
    )
    .await;
}

/// Two nodes moving the same members' watermarks at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_watermark_updates_of_one_row_lose_none() {
    let url = fresh_database().await;
    let (node_a, node_b) = (connect(&url).await, connect(&url).await);
    storage_contract::concurrency::concurrent_watermark_updates_of_one_row_lose_none(
        node_a, node_b,
    )
    .await;
}

/// Two nodes changing messages of one conversation at once: one counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_through_two_stores_get_distinct_consecutive_numbers() {
    let url = fresh_database().await;
    let (node_a, node_b) = (connect(&url).await, connect(&url).await);
    storage_contract::lifecycle::concurrent_changes_through_two_stores_get_distinct_consecutive_numbers(
        node_a, node_b,
    )
    .await;
}
