//! The session and its two pumps.
