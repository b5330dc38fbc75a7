//! Counters and the Prometheus admin endpoint.
