//! The rate limiter ([`gatehouse_domain::ports::RateLimiter`]): in this process for one node,
//! on Redis for many, and a fallback that keeps limiting in-process while Redis is away.

mod fallback;
mod in_process;
mod on_redis;

pub use fallback::FallbackRateLimiter;
pub use in_process::InProcessRateLimiter;
pub use on_redis::RedisRateLimiter;
