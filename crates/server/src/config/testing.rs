//! `[testing]`: fault injection for the test suite only.

use serde::Deserialize;

/// `[testing]`: faults the end-to-end suite injects into a node to prove what happens around
/// them. For tests only; everything is off by default, and a production node must never set
/// any of it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TestingSettings {
    /// The node commits sends but never publishes nor acknowledges them, as a node that
    /// stalls (or dies) between commit and publish: the sender times out and resends elsewhere.
    pub stall_after_commit: bool,
}
