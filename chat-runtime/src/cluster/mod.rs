//! The driver's side of one room across several servers through Redis
//! (docs/design/cluster.md, section 4). So far: [`calls`], the Redis
//! scripts and the function that runs each of the core's calls. The
//! threads that will run them for the hub come with the core's cluster
//! outputs.

pub(crate) mod calls;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
