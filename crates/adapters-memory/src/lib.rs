#![doc = include_str!("../README.md")]

mod presence;
mod pubsub;
mod typing;

pub use presence::MemoryPresence;
pub use pubsub::{MemoryBus, MemoryPubSub};
pub use typing::MemoryTyping;

/// Locks `mutex`, recovering from poisoning: every critical section here leaves the state
/// consistent before anything that could panic, so a panicking holder corrupts nothing.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
