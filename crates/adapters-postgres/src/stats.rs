//! Counts of what the pool's connections sent to PostgreSQL, so tests can prove that an
//! operation costs a fixed number of statements (not one per member) and that concurrent
//! sends share transactions (group commit).

use diesel::connection::{Instrumentation, InstrumentationEvent};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Running totals, shared by every connection of one [`crate::PostgresStorage`].
#[derive(Debug, Default)]
pub(crate) struct StatementStats {
    statements: AtomicU64,
    commits: AtomicU64,
    cached: AtomicU64,
}

impl StatementStats {
    pub(crate) fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    pub(crate) fn cached(&self) -> u64 {
        self.cached.load(Ordering::Relaxed)
    }
}

/// Installed on every pooled connection: one relaxed atomic add per statement.
pub(crate) struct CountingInstrumentation(pub(crate) Arc<StatementStats>);

impl Instrumentation for CountingInstrumentation {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            // Every statement, `BEGIN` and `COMMIT` included (they go through `batch_execute`).
            InstrumentationEvent::StartQuery { .. } => {
                self.0.statements.fetch_add(1, Ordering::Relaxed);
            }
            // Only outermost commits: a savepoint release is not a transaction.
            InstrumentationEvent::CommitTransaction { depth, .. } if depth.get() == 1 => {
                self.0.commits.fetch_add(1, Ordering::Relaxed);
            }
            // A statement prepared to be kept (once per connection and query type).
            InstrumentationEvent::CacheQuery { .. } => {
                self.0.cached.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}
