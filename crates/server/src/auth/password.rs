//! Argon2id password hashing: a bounded number of hashes at once, off the request threads,
//! in memory blocks reused within a burst and given back to the system after it.

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use domain::ports::{HashingError, PasswordHasher};
use domain::user::Password;
use domain::StorageError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of the hashes this hasher makes (argon2's default output).
const OUTPUT_BYTES: usize = 32;

/// Hashes with argon2id and the configured cost; verifies any argon2 PHC hash (its own
/// parameters are in the string, so hashes made under older settings keep working).
///
/// Each hash holds `memory_kib` of memory for tens of milliseconds of CPU, on purpose. Run
/// for every request at once, a registration flood took the server from 10 MB to 6.8 GB,
/// which the allocator then kept. So at most `slots` hashes run at a time; a request waits
/// up to `wait` for a slot and is then refused with [`HashingError::Saturated`]. Hashing
/// runs on tokio's blocking pool: an actix worker runs one single-threaded runtime and
/// would stall every request it serves.
///
/// Memory: each running hash has one memory block. While hashes keep coming (a burst),
/// blocks are reused, never more than `slots` of them; when the last hash of a burst
/// ends, every block is freed. Blocks are allocated with room for at least
/// [`MIN_BLOCK_CAPACITY`] (the unused part is never touched, so it costs address space,
/// not memory): glibc's malloc serves and frees allocations that large with mmap and
/// munmap whatever its adaptive threshold, so freed blocks really go back to the system
/// instead of staying in the heap as they did before.
#[derive(Clone)]
pub struct Argon2Hasher {
    params: Params,
    slots: Arc<HashSlots>,
    /// The salt of the dummy verification for unknown emails (random per process: the
    /// result is thrown away, only its cost matters).
    dummy_salt: [u8; 16],
}

/// The argon2 cost parameters are out of range.
#[derive(Debug, thiserror::Error)]
#[error("invalid argon2 parameters: {0}")]
pub struct InvalidArgon2Params(String);

/// Blocks (of 1 KiB) a memory block has room for at least: above glibc's largest mmap
/// threshold (32 MiB on 64-bit), so it is always mapped and unmapped on its own.
pub const MIN_BLOCK_CAPACITY: usize = 33 * 1024;

/// The concurrency bound and the memory blocks the hashes run in.
struct HashSlots {
    permits: Arc<Semaphore>,
    /// Blocks between two hashes of a burst. Never more blocks exist than permits, as a
    /// block is only made or taken under a permit.
    idle: Mutex<Vec<Vec<Block>>>,
    /// Hashes waiting for or holding a slot; when it falls to 0 the burst is over.
    demand: AtomicUsize,
    /// Memory blocks alive (for the tests and the bound).
    live_blocks: AtomicUsize,
    /// The most memory blocks ever alive at once.
    peak_blocks: AtomicUsize,
    /// Blocks of the configured cost.
    blocks: usize,
    wait: Duration,
}

/// One hash's share of the demand, given back however the hash ends (done, refused, or
/// abandoned by its caller).
struct Demand(Arc<HashSlots>);

impl Drop for Demand {
    fn drop(&mut self) {
        if self.0.demand.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last hash of the burst: free the blocks kept for the next one.
            let freed =
                std::mem::take(&mut *self.0.idle.lock().unwrap_or_else(PoisonError::into_inner));
            self.0.live_blocks.fetch_sub(freed.len(), Ordering::AcqRel);
        }
    }
}

impl HashSlots {
    /// A share of the demand and a permit, waiting up to `wait`.
    async fn acquire(self: &Arc<Self>) -> Result<(Demand, OwnedSemaphorePermit), HashingError> {
        self.demand.fetch_add(1, Ordering::AcqRel);
        let demand = Demand(self.clone());
        let saturated = || HashingError::Saturated {
            // What the caller just waited in vain, at least a second: sooner would most
            // likely meet the same queue.
            retry_after: self.wait.max(Duration::from_secs(1)),
        };
        let permits = self.permits.clone();
        if self.wait.is_zero() {
            let permit = permits.try_acquire_owned().map_err(|_| saturated())?;
            return Ok((demand, permit));
        }
        match tokio::time::timeout(self.wait, permits.acquire_owned()).await {
            Ok(Ok(permit)) => Ok((demand, permit)),
            // The semaphore is never closed; treat it as saturation all the same.
            Ok(Err(_)) | Err(_) => Err(saturated()),
        }
    }

    /// A kept block, or a new one of the configured cost.
    fn take_block(&self) -> Vec<Block> {
        let kept = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        kept.unwrap_or_else(|| {
            let live = self.live_blocks.fetch_add(1, Ordering::AcqRel) + 1;
            self.peak_blocks.fetch_max(live, Ordering::AcqRel);
            let mut block = Vec::with_capacity(self.blocks.max(MIN_BLOCK_CAPACITY));
            block.resize(self.blocks, Block::new());
            block
        })
    }

    /// Keeps `block` for the next hash of the burst; a block grown past the configured
    /// cost (for an older, costlier hash) is freed instead.
    fn put_back(&self, block: Vec<Block>) {
        if block.len() > self.blocks {
            drop(block);
            self.live_blocks.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(block);
    }
}

impl Argon2Hasher {
    /// A hasher with `memory_kib` KiB, `iterations` passes and `parallelism` lanes, running
    /// at most `slots` hashes at once (at least 1) and letting a hash wait `wait` for one.
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        slots: usize,
        wait: Duration,
    ) -> Result<Self, InvalidArgon2Params> {
        let params = Params::new(memory_kib, iterations, parallelism, Some(OUTPUT_BYTES))
            .map_err(|e| InvalidArgon2Params(e.to_string()))?;
        // Semaphore::new panics above MAX_PERMITS; no machine hashes that many at once.
        let slots = slots.clamp(1, Semaphore::MAX_PERMITS);
        Ok(Self {
            slots: Arc::new(HashSlots {
                permits: Arc::new(Semaphore::new(slots)),
                idle: Mutex::new(Vec::new()),
                demand: AtomicUsize::new(0),
                live_blocks: AtomicUsize::new(0),
                peak_blocks: AtomicUsize::new(0),
                blocks: params.block_count(),
                wait,
            }),
            params,
            dummy_salt: rand::random(),
        })
    }

    /// Runs `job` on the blocking pool with a permit and a memory block. The permit, the
    /// block and the demand go back from inside the blocking task, so a request that gives
    /// up (its client left) cannot let another hash start while its own still runs.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, HashingError> {
        let (demand, permit) = self.slots.acquire().await?;
        let slots = self.slots.clone();
        tokio::task::spawn_blocking(move || {
            let mut block = slots.take_block();
            let out = job(&mut block);
            slots.put_back(block);
            drop(permit);
            drop(demand);
            out
        })
        .await
        .map_err(|e| HashingError::Failed(StorageError::new(e)))
    }
}

/// Hashes `password` with `argon2` into `out`, in `memory` (grown when too small).
fn hash_into(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), argon2::Error> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
}

/// Whether `password` matches the PHC `hash`, under the hash's own algorithm, version and
/// cost; `false` for anything malformed.
fn verify_in(password: &[u8], hash: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut computed = vec![0u8; expected.len()];
    if hash_into(&argon2, &params, password, salt, &mut computed, memory).is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&computed).is_ok_and(|computed| computed == expected)
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Hasher")
            .field("memory_kib", &self.params.m_cost())
            .field("iterations", &self.params.t_cost())
            .field("parallelism", &self.params.p_cost())
            .field("wait", &self.slots.wait)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<String, HashingError> {
        let params = self.params.clone();
        let password = password.clone();
        let salt: [u8; 16] = rand::random();
        let hashed = self
            .run(move |memory| {
                let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
                let mut out = [0u8; OUTPUT_BYTES];
                hash_into(
                    &argon2,
                    &params,
                    password.expose().as_bytes(),
                    &salt,
                    &mut out,
                    memory,
                )
                .map(|()| (params, out))
            })
            .await?;
        let (params, out) =
            hashed.map_err(|e| StorageError::msg(format!("password hashing failed: {e}")))?;
        phc_string(&params, &salt, &out)
            .map_err(|e| HashingError::Failed(StorageError::msg(e.to_string())))
    }

    async fn verify(&self, password: &Password, hash: &str) -> Result<bool, HashingError> {
        let password = password.clone();
        let hash = hash.to_owned();
        self.run(move |memory| verify_in(password.expose().as_bytes(), &hash, memory))
            .await
    }

    async fn verify_dummy(&self, password: &Password) -> Result<(), HashingError> {
        let params = self.params.clone();
        let password = password.clone();
        let salt = self.dummy_salt;
        self.run(move |memory| {
            let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
            let mut out = [0u8; OUTPUT_BYTES];
            let _ = hash_into(
                &argon2,
                &params,
                password.expose().as_bytes(),
                &salt,
                &mut out,
                memory,
            );
            // Compare as a real verify does, so the work is the same to the last step.
            let matched = Output::new(&out)
                .is_ok_and(|computed| Output::new(&[0; OUTPUT_BYTES]).is_ok_and(|z| z == computed));
            std::hint::black_box(matched);
        })
        .await
    }
}

/// `$argon2id$v=19$m=..,t=..,p=..$<salt>$<hash>`.
fn phc_string(
    params: &Params,
    salt: &[u8],
    out: &[u8],
) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::encode_b64(salt)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: params.try_into()?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(out)?),
    };
    Ok(hash.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    fn cheap() -> Argon2Hasher {
        Argon2Hasher::new(64, 1, 1, 2, Duration::from_secs(5)).unwrap()
    }

    #[tokio::test]
    async fn a_hashed_password_verifies_and_a_different_one_does_not() {
        let hasher = cheap();
        let password = Password::parse("correct horse battery").unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert!(hasher.verify(&password, &hash).await.unwrap());
        assert!(!hasher
            .verify(&Password::for_login("correct horse battery!"), &hash)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        let hasher = cheap();
        let password = Password::parse("correct horse battery").unwrap();
        assert_ne!(
            hasher.hash(&password).await.unwrap(),
            hasher.hash(&password).await.unwrap()
        );
    }

    #[tokio::test]
    async fn a_hash_made_with_other_parameters_still_verifies() {
        let password = Password::parse("correct horse battery").unwrap();
        let old = Argon2Hasher::new(128, 2, 1, 1, Duration::from_secs(5))
            .unwrap()
            .hash(&password)
            .await
            .unwrap();
        assert!(cheap().verify(&password, &old).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_interoperate_with_the_argon2_crates_own_hasher_and_verifier() {
        let password = "correct horse battery";
        let theirs = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(256, 2, 2, None).unwrap(),
        )
        .hash_password(
            password.as_bytes(),
            &SaltString::encode_b64(&rand::random::<[u8; 16]>()).unwrap(),
        )
        .unwrap()
        .to_string();
        let hasher = cheap();
        assert!(hasher
            .verify(&Password::for_login(password), &theirs)
            .await
            .unwrap());
        let ours = hasher.hash(&Password::for_login(password)).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"another one", &parsed)
            .is_err());
    }

    #[tokio::test]
    async fn a_malformed_hash_never_verifies() {
        let hasher = cheap();
        for hash in [
            "not a hash",
            "",
            "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ",
            "$argon2id$v=7$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$wWKIMhR9lyDFvRz9YTZweHuXnLsTfePLhU4X5/6uMBs",
            "$bcrypt$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$wWKIMhR9lyDFvRz9YTZweHuXnLsTfePLhU4X5/6uMBs",
        ] {
            assert!(
                !hasher.verify(&Password::for_login("x"), hash).await.unwrap(),
                "{hash}"
            );
        }
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        assert!(Argon2Hasher::new(1, 1, 1, 1, Duration::ZERO).is_err());
        assert!(Argon2Hasher::new(64, 0, 1, 1, Duration::ZERO).is_err());
    }

    #[tokio::test]
    async fn zero_or_absurd_slot_counts_still_make_a_working_hasher() {
        for slots in [0, usize::MAX] {
            let hasher = Argon2Hasher::new(64, 1, 1, slots, Duration::ZERO).unwrap();
            assert!(
                hasher.hash(&Password::for_login("x")).await.is_ok(),
                "{slots}"
            );
        }
    }

    /// A job that holds its slot until told to finish.
    fn hold_slot(
        hasher: &Argon2Hasher,
    ) -> (tokio::task::JoinHandle<()>, std::sync::mpsc::Sender<()>) {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let hasher = hasher.clone();
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let task = tokio::spawn(async move {
            hasher
                .run(move |_| {
                    started_tx.send(()).unwrap();
                    let _ = released.recv();
                })
                .await
                .unwrap();
        });
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        (task, release)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_every_slot_taken_a_hash_waits_its_timeout_then_is_refused() {
        let hasher = Argon2Hasher::new(64, 1, 1, 1, Duration::from_millis(50)).unwrap();
        let (task, release) = hold_slot(&hasher);
        let password = Password::for_login("whatever1");
        let err = hasher.hash(&password).await.unwrap_err();
        assert!(
            matches!(err, HashingError::Saturated { retry_after } if retry_after == Duration::from_secs(1)),
            "{err:?}"
        );
        assert!(matches!(
            hasher.verify_dummy(&password).await,
            Err(HashingError::Saturated { .. })
        ));
        release.send(()).unwrap();
        task.await.unwrap();
        assert!(
            hasher.hash(&password).await.is_ok(),
            "the slot is free again"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_hash_runs_once_a_slot_frees_within_its_timeout() {
        let hasher = Argon2Hasher::new(64, 1, 1, 1, Duration::from_secs(30)).unwrap();
        let (task, release) = hold_slot(&hasher);
        let waiting = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(&Password::for_login("whatever1")).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        release.send(()).unwrap();
        task.await.unwrap();
        assert!(waiting.await.unwrap().is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_never_uses_more_memory_blocks_than_slots_and_frees_them_after() {
        let hasher = Argon2Hasher::new(1024, 1, 1, 3, Duration::from_secs(60)).unwrap();
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let hasher = hasher.clone();
                tokio::spawn(async move {
                    let password = Password::for_login(&format!("password {i}"));
                    let hash = hasher.hash(&password).await.unwrap();
                    assert!(hasher.verify(&password, &hash).await.unwrap());
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let slots = &hasher.slots;
        let peak = slots.peak_blocks.load(Ordering::Acquire);
        assert!((1..=3).contains(&peak), "{peak} blocks for 3 slots");
        assert_eq!(
            slots.live_blocks.load(Ordering::Acquire),
            0,
            "blocks kept after the burst"
        );
        assert!(slots.idle.lock().unwrap().is_empty());
        assert_eq!(slots.demand.load(Ordering::Acquire), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocks_are_reused_while_a_burst_lasts() {
        let hasher = Argon2Hasher::new(64, 1, 1, 1, Duration::from_secs(30)).unwrap();
        // A hash in flight keeps the burst going while others come and go.
        let (task, release) = hold_slot(&hasher);
        let waiting: Vec<_> = (0..5)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.hash(&Password::for_login("x")).await })
            })
            .collect();
        release.send(()).unwrap();
        task.await.unwrap();
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        assert_eq!(hasher.slots.peak_blocks.load(Ordering::Acquire), 1);
        assert_eq!(hasher.slots.live_blocks.load(Ordering::Acquire), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_or_abandoned_hash_gives_its_demand_back() {
        let hasher = Argon2Hasher::new(64, 1, 1, 1, Duration::from_millis(20)).unwrap();
        let (task, release) = hold_slot(&hasher);
        assert!(hasher.hash(&Password::for_login("x")).await.is_err());
        let abandoned = tokio::time::timeout(
            Duration::from_millis(5),
            hasher.hash(&Password::for_login("x")),
        )
        .await;
        assert!(abandoned.is_err(), "gave up before its own timeout");
        assert_eq!(
            hasher.slots.demand.load(Ordering::Acquire),
            1,
            "the held slot only"
        );
        release.send(()).unwrap();
        task.await.unwrap();
        assert_eq!(hasher.slots.demand.load(Ordering::Acquire), 0);
        assert_eq!(hasher.slots.live_blocks.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_block_grown_for_a_costlier_old_hash_is_freed() {
        let password = Password::for_login("correct horse battery");
        let old = Argon2Hasher::new(4096, 1, 1, 1, Duration::from_secs(5))
            .unwrap()
            .hash(&password)
            .await
            .unwrap();
        let hasher = Argon2Hasher::new(64, 1, 1, 1, Duration::from_secs(5)).unwrap();
        assert!(hasher.verify(&password, &old).await.unwrap());
        assert_eq!(hasher.slots.live_blocks.load(Ordering::Acquire), 0);
    }
}
