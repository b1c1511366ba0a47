//! The embedded migrations on a real server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use adapters_postgres::testing::fresh_database;
use adapters_postgres::{revert_all_migrations, run_migrations, PostgresStorage};
use domain::ports::StoreHealth;

#[tokio::test]
async fn every_migration_runs_up_down_and_up_again() {
    let url = fresh_database().await;
    // A fresh database is already migrated: nothing is pending.
    assert_eq!(run_migrations(&url).await.unwrap(), 0);

    let reverted = revert_all_migrations(&url).await.unwrap();
    assert!(reverted >= 1);
    assert_eq!(run_migrations(&url).await.unwrap(), reverted);

    let store = PostgresStorage::connect(&url, 1).await.unwrap();
    store.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_nodes_migrating_at_once_apply_each_migration_once() {
    let url = fresh_database().await;
    let all = revert_all_migrations(&url).await.unwrap();

    let nodes: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { run_migrations(&url).await.unwrap() })
        })
        .collect();
    let mut applied = 0;
    for node in nodes {
        applied += node.await.unwrap();
    }

    assert_eq!(applied, all);
    assert_eq!(run_migrations(&url).await.unwrap(), 0);
}

#[tokio::test]
async fn migrating_an_unreachable_server_is_a_storage_error() {
    assert!(run_migrations("postgres://postgres@127.0.0.1:1/none")
        .await
        .is_err());
}
