//! Counters and the Prometheus admin endpoint.
//!
//! - [`WorkerMetrics`]: one per worker thread, plain `Cell`s (no atomics per frame).
//! - [`WorkerSnapshot`] (`snapshot`): the plain copy a worker publishes, and its labels.
//! - [`Registry`]: shared; each worker [`WorkerMetrics::publish`]es a copy of its counters
//!   into it every ~500 ms and at shutdown; [`Registry::render`] sums the workers into
//!   Prometheus text format 0.0.4, with the counters of the parts beside the workers.
//! - [`SinkMetrics`], [`FleetMetrics`] (`shared`): the usage-log sink's and the fleet
//!   thread's counters (atomics, touched once per usage record or batch).
//! - [`spawn_admin`]: the `/metrics`, `/healthz`, `/readyz` listener on a std thread.
//! - [`names`]: every metric name, defined once.

mod admin;
pub mod names;
mod registry;
mod shared;
mod snapshot;
#[cfg(test)]
mod tests;
mod worker;

pub use admin::{
    route, spawn_admin, AdminResponse, IO_TIMEOUT, MAX_HEADERS, MAX_REQUEST, METRICS_CONTENT_TYPE,
};
pub use registry::{escape_label_into, Registry};
pub use shared::{FleetMetrics, SinkMetrics};
pub use snapshot::{close_code_label, Side, TokenCounts, WorkerSnapshot};
pub use worker::{
    WorkerMetrics, MAX_MODEL_LABEL, MAX_STATUS_SERIES, MAX_TENANT_LABELS, MAX_TOKEN_SERIES, OTHER,
    SESSION_DURATION_BUCKETS,
};
