//! Worker threads: one pinned monoio runtime per core.
