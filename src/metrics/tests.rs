//! Unit tests of the metrics module.
