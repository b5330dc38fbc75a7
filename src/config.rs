//! Validated configuration from the command line.
