//! The response ids a session recorded last, so that a repeated terminal event is
//! recognised as a duplicate: keyed hashes of the last [`MAX_RECENT_DONE`] ids — 1 KiB per
//! busy session instead of 128 boxed strings, and one hash per terminal instead of up to 128
//! string compares.

use std::collections::VecDeque;

/// How many recorded `response.id`s are remembered to ignore duplicate terminals.
pub const MAX_RECENT_DONE: usize = 128;

/// Keyed 64-bit hash of a recorded `response.id`. The key is random per process, so an
/// upstream cannot aim for a collision; a chance one (about 128 in 2^64 per terminal) would
/// make a terminal look like a duplicate.
pub fn id_hash(id: &str) -> u64 {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    KEY.get_or_init(std::hash::RandomState::new).hash_one(id)
}

/// The hashes ([`id_hash`]) of the last [`MAX_RECENT_DONE`] recorded ids, oldest first.
#[derive(Debug, Default)]
pub struct RecentIds(VecDeque<u64>);

impl RecentIds {
    /// Whether the id with hash `h` is among the remembered ones.
    pub fn contains(&self, h: u64) -> bool {
        self.0.contains(&h)
    }

    /// Remembers the id with hash `h`, forgetting the oldest past [`MAX_RECENT_DONE`].
    pub fn remember(&mut self, h: u64) {
        if self.0.len() >= MAX_RECENT_DONE {
            self.0.pop_front();
        }
        self.0.push_back(h);
    }
}
