//! Gatehouse's shared caches: state every server instance must agree on, kept out of the
//! database because it is checked on every request.
//!
//! - [`RedisRevocationList`]: the session revocation list on Redis, shared by any number of
//!   server instances ([`gatehouse_domain::ports::RevocationList`]).
//! - [`InProcessRevocationList`]: the same list in this process's memory, for single-node
//!   deployments without Redis.
//! - [`RedisRateLimiter`], [`InProcessRateLimiter`] and [`FallbackRateLimiter`] (Redis while it
//!   answers, in-process meanwhile): the [`gatehouse_domain::ports::RateLimiter`] port.
//!
//! Depends on the domain's ports only; never on storage, HTTP or configuration crates. Redis
//! URLs may carry a password, so they never appear in errors or logs: only `host:port` does.

mod changes;
mod connection;
mod rate_limits;
mod revocations;

pub use changes::RedisChangeFeed;
pub use rate_limits::{FallbackRateLimiter, InProcessRateLimiter, RedisRateLimiter};
pub use revocations::{InProcessRevocationList, RedisRevocationList};
