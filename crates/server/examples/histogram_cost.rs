//! What one latency observation costs: `prometheus-client`'s `Histogram` (a mutex around
//! the buckets), which the node's registry uses, against the hand-written atomic histogram
//! the node had before (copied below), with the same buckets, on one thread and on two
//! threads observing into the same histogram. The figures are in docs/benchmarks.md.
//!
//! `cargo run --release -p server --example histogram_cost`

use prometheus_client::metrics::histogram::Histogram;
/// The node's latency bounds in microseconds (`realtime::metrics`, private to that crate).
const LATENCY_BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
    2_000_000, 5_000_000, 10_000_000,
];
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Observations per thread per round.
const OBSERVATIONS: usize = 10_000_000;
/// Rounds per case; the fastest is reported (the machine is shared).
const ROUNDS: usize = 5;

/// The node's former histogram: one relaxed add on the bucket (or the overflow) and one on
/// the sum in microseconds.
#[derive(Default)]
struct AtomicHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    overflow: AtomicU64,
    sum_us: AtomicU64,
}

impl AtomicHistogram {
    fn observe_us(&self, us: u64) {
        let i = LATENCY_BUCKETS_US.partition_point(|bound| *bound < us);
        match self.buckets.get(i) {
            Some(bucket) => bucket.fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// Latencies spread over the buckets like a loaded node's: 0.2 to 20 ms.
fn latencies_us() -> Vec<u64> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            200 + state % 20_000
        })
        .collect()
}

/// The fastest of [`ROUNDS`] runs of `threads` threads each calling `observe` for
/// [`OBSERVATIONS`] values, in nanoseconds of wall time per observation of one thread.
fn nanos_per_observation(threads: usize, observe: &(dyn Fn(u64) + Sync)) -> f64 {
    let values = latencies_us();
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        std::thread::scope(|scope| {
            for t in 0..threads {
                let values = &values;
                scope.spawn(move || {
                    for i in 0..OBSERVATIONS {
                        observe(black_box(values[(i + t * 97) % values.len()]));
                    }
                });
            }
        });
        let ns = started.elapsed().as_nanos() as f64 / OBSERVATIONS as f64;
        best = best.min(ns);
    }
    best
}

fn main() {
    println!("ns per observation (fastest of {ROUNDS} rounds of {OBSERVATIONS} per thread)");
    println!("{:<28} {:>9} {:>9}", "histogram", "1 thread", "2 threads");
    let row = |name: &str, observe_on: &dyn Fn(usize) -> f64| {
        println!("{name:<28} {:>9.1} {:>9.1}", observe_on(1), observe_on(2));
    };
    row("prometheus-client (mutex)", &|threads| {
        let h = Histogram::new(LATENCY_BUCKETS_US.map(|us| us as f64 / 1e6));
        nanos_per_observation(threads, &|us| h.observe(us as f64 / 1e6))
    });
    row("hand-written (atomics)", &|threads| {
        let h = AtomicHistogram::default();
        let ns = nanos_per_observation(threads, &|us| h.observe_us(us));
        black_box(h.sum_us.load(Ordering::Relaxed));
        ns
    });
}
