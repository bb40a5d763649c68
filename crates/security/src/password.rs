//! Password hashing with argon2id on a bounded pool of worker threads.
//!
//! Implements [`gatehouse_domain::ports::PasswordHasher`]. Hashing is CPU-bound (≈17 ms with the
//! OWASP parameters), so it runs on dedicated threads sized to the cores behind a bounded
//! queue: when the queue is full, callers get [`HashError::Overloaded`] at once (the server
//! answers 503) instead of waiting, and the async executor never runs a hash.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use argon2::password_hash::{self, PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use gatehouse_domain::ports::{HashError, PasswordCheck, PasswordHash, PasswordHasher};
use rand::RngExt as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::pool::{PoolError, Scheduling, WorkerPool};

/// Argon2id cost parameters. The defaults are OWASP's recommendation (m = 19 MiB, t = 2, p = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory cost in KiB (`m`).
    pub memory_kib: u32,
    /// Number of passes (`t`).
    pub iterations: u32,
    /// Degree of parallelism (`p`).
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

/// Size of the hashing pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashPoolSettings {
    /// Worker threads; defaults to the number of cores. At least 1.
    pub workers: usize,
    /// Jobs that may wait for a worker before callers get [`HashError::Overloaded`]; defaults
    /// to 64. At least 1.
    pub queue_capacity: usize,
    /// Whether hashing runs below every normal thread (the default), so that a sign-in flood
    /// only slows sign-ins, not cheap requests.
    pub background: bool,
}

impl Default for HashPoolSettings {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            queue_capacity: 64,
            background: true,
        }
    }
}

/// The argon2id [`PasswordHasher`]: hashes on a bounded worker pool, verifies unknown accounts
/// against a dummy hash, and flags hashes made with other parameters for rehashing.
#[derive(Debug)]
pub struct Argon2Hasher {
    shared: Arc<Shared>,
    pool: WorkerPool,
}

/// What the worker jobs need.
#[derive(Debug)]
struct Shared {
    argon2: Argon2<'static>,
    params: Params,
    /// Verified against when there is no stored hash, so unknown accounts cost a verification.
    dummy: password_hash::phc::PasswordHash,
    dummy_verifications: AtomicU64,
}

impl Argon2Hasher {
    /// Checks `params`, hashes the dummy password (one hash, on the calling thread) and starts
    /// the pool.
    ///
    /// # Errors
    ///
    /// When argon2 refuses the parameters (e.g. `memory_kib < 8 × parallelism`, zero
    /// iterations), when `settings` has no worker or no queue, or when a thread cannot start.
    pub fn new(params: Argon2Params, settings: HashPoolSettings) -> anyhow::Result<Self> {
        let params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
            .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let dummy_password: [u8; 32] = rand::rng().random();
        let dummy =
            argon2.hash_password(&dummy_password).map_err(|e| anyhow::anyhow!("hashing the dummy password: {e}"))?;
        let scheduling = if settings.background { Scheduling::Background } else { Scheduling::Normal };
        let pool = WorkerPool::start("argon2", settings.workers, settings.queue_capacity, scheduling)
            .context("starting the password hashing pool")?;
        let shared = Arc::new(Shared { argon2, params, dummy, dummy_verifications: AtomicU64::new(0) });
        Ok(Self { shared, pool })
    }

    /// Hashing jobs queued or running right now, for metrics.
    #[must_use]
    pub fn queue_depth(&self) -> usize {
        self.pool.depth()
    }

    /// How many verifications ran against the dummy hash (attempts on unknown accounts or
    /// accounts without a password), for metrics.
    #[must_use]
    pub fn dummy_verifications(&self) -> u64 {
        self.shared.dummy_verifications.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Shared) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let shared = Arc::clone(&self.shared);
        match self.pool.run(move || job(&shared)).await {
            Ok(outcome) => outcome,
            Err(PoolError::Full) => Err(HashError::Overloaded),
            Err(PoolError::Crashed) => Err(HashError::Unexpected(anyhow::anyhow!("a password hashing worker crashed"))),
        }
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn hash(&self, password: &SecretString) -> Result<PasswordHash, HashError> {
        let password = password.clone();
        self.run(move |shared| {
            let phc = shared
                .argon2
                .hash_password(password.expose_secret().as_bytes())
                .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?;
            Ok(PasswordHash::new(phc.to_string()))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn verify<'a>(
        &self,
        password: &SecretString,
        hash: Option<&'a PasswordHash>,
    ) -> Result<PasswordCheck, HashError> {
        let password = password.clone();
        let Some(hash) = hash else {
            return self
                .run(move |shared| {
                    // The outcome is irrelevant: only the work done counts.
                    let _ = shared.argon2.verify_password(password.expose_secret().as_bytes(), &shared.dummy);
                    shared.dummy_verifications.fetch_add(1, Ordering::Relaxed);
                    Ok(PasswordCheck::Invalid)
                })
                .await;
        };
        let stored = parse_stored(hash.as_str())?;
        let needs_rehash = differs_from(&stored, &self.shared.params);
        self.run(move |shared| match shared.argon2.verify_password(password.expose_secret().as_bytes(), &stored) {
            Ok(()) => Ok(PasswordCheck::Valid { needs_rehash }),
            Err(password_hash::Error::PasswordInvalid) => Ok(PasswordCheck::Invalid),
            Err(e) => Err(HashError::Unexpected(anyhow::anyhow!("argon2 verification failed: {e}"))),
        })
        .await
    }
}

/// Parses a stored PHC string and checks that it is a complete argon2 hash, so a corrupt row
/// is an error rather than a silently failing login.
fn parse_stored(phc: &str) -> Result<password_hash::phc::PasswordHash, HashError> {
    let malformed = |why: &str| HashError::Unexpected(anyhow::anyhow!("malformed stored password hash: {why}"));
    let parsed = password_hash::phc::PasswordHash::new(phc).map_err(|e| malformed(&e.to_string()))?;
    Algorithm::new(parsed.algorithm.as_str()).map_err(|_| malformed("not an argon2 algorithm"))?;
    if let Some(version) = parsed.version {
        Version::try_from(version).map_err(|_| malformed("unknown argon2 version"))?;
    }
    Params::try_from(&parsed).map_err(|e| malformed(&e.to_string()))?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(malformed("no salt or no hash"));
    }
    Ok(parsed)
}

/// Whether `stored` was made with another algorithm, version or cost than `configured`. A
/// missing version counts as different: argon2 reads it as the default, the spec as 0x10.
fn differs_from(stored: &password_hash::phc::PasswordHash, configured: &Params) -> bool {
    let Ok(params) = Params::try_from(stored) else { return true };
    Algorithm::new(stored.algorithm.as_str()) != Ok(Algorithm::Argon2id)
        || stored.version != Some(u32::from(Version::V0x13))
        || params.m_cost() != configured.m_cost()
        || params.t_cost() != configured.t_cost()
        || params.p_cost() != configured.p_cost()
        || params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)
            != configured.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: Argon2Params = Argon2Params { memory_kib: 64, iterations: 1, parallelism: 1 };
    const SMALL_POOL: HashPoolSettings = HashPoolSettings { workers: 2, queue_capacity: 16, background: false };

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn cheap_hasher() -> Argon2Hasher {
        Argon2Hasher::new(CHEAP, SMALL_POOL).expect("valid parameters")
    }

    #[tokio::test]
    async fn a_hashed_password_verifies() {
        let hasher = cheap_hasher();
        let hash = hasher.hash(&secret("correct horse battery staple")).await.expect("hash");
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "PHC string: {}", hash.as_str());

        let check = hasher.verify(&secret("correct horse battery staple"), Some(&hash)).await.expect("verify");

        assert_eq!(check, PasswordCheck::Valid { needs_rehash: false });
        assert_eq!(hasher.queue_depth(), 0);
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        let hasher = cheap_hasher();
        let first = hasher.hash(&secret("pw")).await.expect("hash");
        let second = hasher.hash(&secret("pw")).await.expect("hash");
        assert_ne!(first, second, "each hash has a fresh salt");
    }

    #[tokio::test]
    async fn a_wrong_password_is_invalid() {
        let hasher = cheap_hasher();
        let hash = hasher.hash(&secret("correct horse battery staple")).await.expect("hash");

        let check = hasher.verify(&secret("Tr0ub4dor&3"), Some(&hash)).await.expect("verify");

        assert_eq!(check, PasswordCheck::Invalid);
    }

    #[tokio::test]
    async fn verifying_without_a_hash_is_invalid_after_a_dummy_verification() {
        let hasher = cheap_hasher();
        assert_eq!(hasher.dummy_verifications(), 0);

        let check = hasher.verify(&secret("anything"), None).await.expect("verify");

        assert_eq!(check, PasswordCheck::Invalid);
        assert_eq!(hasher.dummy_verifications(), 1, "the dummy hash was verified against");
    }

    #[tokio::test]
    async fn the_dummy_hash_uses_the_configured_parameters() {
        let hasher = Argon2Hasher::new(Argon2Params::default(), SMALL_POOL).expect("default parameters");
        let dummy = PasswordHash::new(hasher.shared.dummy.to_string());
        assert!(dummy.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "dummy: {}", dummy.as_str());
        assert!(!differs_from(&hasher.shared.dummy, &hasher.shared.params));
    }

    #[tokio::test]
    async fn a_hash_made_with_other_parameters_needs_rehash() {
        let old = cheap_hasher();
        let hash = old.hash(&secret("pw")).await.expect("hash");
        for params in [
            Argon2Params { memory_kib: 128, ..CHEAP },
            Argon2Params { iterations: 2, ..CHEAP },
            Argon2Params { parallelism: 2, ..CHEAP },
        ] {
            let new = Argon2Hasher::new(params, SMALL_POOL).expect("valid parameters");

            let check = new.verify(&secret("pw"), Some(&hash)).await.expect("verify");

            assert_eq!(check, PasswordCheck::Valid { needs_rehash: true }, "after changing to {params:?}");
        }
    }

    #[tokio::test]
    async fn an_argon2i_or_old_version_hash_needs_rehash() {
        let hasher = cheap_hasher();
        let params = Params::new(CHEAP.memory_kib, CHEAP.iterations, CHEAP.parallelism, None).expect("params");
        for (algorithm, version) in [(Algorithm::Argon2i, Version::V0x13), (Algorithm::Argon2id, Version::V0x10)] {
            let phc = Argon2::new(algorithm, version, params.clone()).hash_password(b"pw").expect("hash");
            let hash = PasswordHash::new(phc.to_string());

            let check = hasher.verify(&secret("pw"), Some(&hash)).await.expect("verify");

            assert_eq!(check, PasswordCheck::Valid { needs_rehash: true }, "{algorithm:?} {version:?}");
        }
    }

    #[tokio::test]
    async fn a_malformed_stored_hash_is_unexpected() {
        let hasher = cheap_hasher();
        for stored in [
            "",
            "not a hash",
            "$argon2id$v=19$m=64,t=1,p=1",
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$",
            "$argon2id$v=99$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=0,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            "$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        ] {
            let result = hasher.verify(&secret("pw"), Some(&PasswordHash::new(stored.to_owned()))).await;
            assert!(matches!(result, Err(HashError::Unexpected(_))), "{stored:?} gave {result:?}");
        }
    }

    #[test]
    fn invalid_parameters_or_pool_settings_are_refused() {
        for (params, settings) in [
            (Argon2Params { memory_kib: 4, ..CHEAP }, SMALL_POOL),
            (Argon2Params { iterations: 0, ..CHEAP }, SMALL_POOL),
            (Argon2Params { parallelism: 0, ..CHEAP }, SMALL_POOL),
            (CHEAP, HashPoolSettings { workers: 0, queue_capacity: 1, background: false }),
            (CHEAP, HashPoolSettings { workers: 1, queue_capacity: 0, background: false }),
        ] {
            assert!(Argon2Hasher::new(params, settings).is_err(), "{params:?} {settings:?}");
        }
    }

    #[test]
    fn the_defaults_are_the_owasp_parameters_and_a_pool_sized_to_the_cores() {
        assert_eq!(Argon2Params::default(), Argon2Params { memory_kib: 19_456, iterations: 2, parallelism: 1 });
        let settings = HashPoolSettings::default();
        assert!(settings.workers >= 1);
        assert_eq!(settings.queue_capacity, 64);
    }

    #[tokio::test]
    async fn a_full_queue_answers_overloaded_at_once() {
        let hasher = Argon2Hasher::new(
            Argon2Params::default(),
            HashPoolSettings { workers: 1, queue_capacity: 1, background: false },
        )
        .expect("valid parameters");
        let password = secret("pw");

        let results = futures::future::join_all((0..8).map(|_| hasher.hash(&password))).await;

        let overloaded = results.iter().filter(|r| matches!(r, Err(HashError::Overloaded))).count();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert!(overloaded >= 1, "at least one call was refused: {results:?}");
        assert!(ok >= 1, "at least one call was served: {results:?}");
        assert_eq!(ok + overloaded, results.len(), "no other outcome: {results:?}");
        assert_eq!(hasher.queue_depth(), 0, "everything has drained");
    }
}
