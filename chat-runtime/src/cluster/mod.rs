//! The driver's side of one room across several servers through Redis
//! (docs/design/cluster.md, section 4): [`calls`], the Redis scripts and
//! the function that runs each of the core's calls; [`link`], the two
//! threads that run them for the hub and report the link down.

pub(crate) mod calls;
pub(crate) mod link;
#[cfg(test)]
mod tests;

pub use link::RedisSettings;
