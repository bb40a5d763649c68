//! The session revocation list ([`gatehouse_domain::ports::RevocationList`]): in this
//! process for one node, on Redis for many.

mod in_process;
mod on_redis;

pub use in_process::InProcessRevocationList;
pub use on_redis::RedisRevocationList;
