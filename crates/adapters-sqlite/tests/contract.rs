//! The shared storage contract, against a fresh SQLite file per case.

use std::sync::Arc;

async fn fresh_store() -> Arc<dyn domain::ports::Storage> {
    match adapters_sqlite::testing::temporary_store().await {
        Ok(store) => Arc::new(store),
        Err(e) => panic!("could not open a temporary SQLite store: {e}"),
    }
}

storage_contract::storage_contract_tests!(fresh_store);
