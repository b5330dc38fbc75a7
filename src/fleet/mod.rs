//! The fleet thread: usage records to NATS JetStream, tenant budgets and session counts
//! shared through Redis.
//!
//! # The bridge: never on the hot path
//!
//! The NATS and Redis clients (`async-nats`, `redis`) are tokio-based. They run on **one**
//! thread, `tollgate-fleet`, with its own single-threaded tokio runtime. No worker ever
//! awaits it, and nothing it does is on a per-frame or per-response path:
//!
//! - **Records** reach it through the usage log, not through a queue: the sink's writer
//!   makes them durable as before (fail-closed rules unchanged) and publishes how far the
//!   log is durable ([`crate::metering::DurableMark`]: file identity and byte offset, one
//!   mutex write per group commit). The exporter ([`export`]) reads the log up to that
//!   mark, publishes each line to JetStream with `Nats-Msg-Id = response_id`, and moves
//!   its cursor (a small file, fsynced) past what JetStream acknowledged. The local log
//!   stays the source of truth: a NATS outage only grows the backlog.
//! - **Budgets and session caps** reach the workers through memory: each tenant's
//!   [`crate::limits::BudgetBook`] (leases taken from Redis; a mutex touched once per create
//!   and once per terminal event) and its fleet session count (an atomic). The budget task
//!   ([`budget`]) tops leases up and syncs session counts on a timer; workers only read
//!   and charge the in-memory state.
//!
//! Shutdown ([`Fleet::shutdown`]) runs after the workers stopped and the sink closed: the
//! exporter gets a bounded last pass over the log, the budget task gives unspent leases
//! back to Redis.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::FleetConfig;
use crate::limits::Tenants;
use crate::metering::SinkHandle;
use crate::metrics::FleetMetrics;

pub mod budget;
pub mod export;
mod logfile;

/// Why the fleet thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The tokio runtime or the thread could not be created.
    #[error("fleet thread: {0}")]
    Spawn(std::io::Error),
    /// The usage log is not a file (`--usage-export` needs one).
    #[error("--usage-export needs the usage log to be a file")]
    NoLogFile,
    /// The export cursor file is unreadable or malformed.
    #[error("--usage-export-cursor {path}: {why}")]
    Cursor {
        /// The cursor file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// The running fleet thread.
pub struct Fleet {
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Without `shutdown` (a failed start): tell the thread to stop, do not wait.
        let _ = self.stop.send(true);
    }
}

impl Fleet {
    /// Start the thread if export or budgets are configured (`Ok(None)` otherwise).
    pub fn start(
        cfg: &FleetConfig,
        tenants: Arc<Tenants>,
        sink: SinkHandle,
        metrics: Arc<FleetMetrics>,
    ) -> Result<Option<Fleet>, FleetError> {
        if cfg.export.is_none() && cfg.budget.is_none() {
            return Ok(None);
        }
        let exporter = match &cfg.export {
            Some(e) => {
                metrics
                    .export_enabled
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Some(export::Exporter::new(
                    e.clone(),
                    sink,
                    Arc::clone(&metrics),
                )?)
            }
            None => None,
        };
        let budgets = cfg.budget.as_ref().map(|b| {
            metrics
                .budget_enabled
                .store(true, std::sync::atomic::Ordering::Relaxed);
            budget::Budgets::new(
                b.clone(),
                cfg.node_id.clone(),
                cfg.sync_interval,
                tenants,
                Arc::clone(&metrics),
            )
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(FleetError::Spawn)?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("tollgate-fleet".into())
            .spawn(move || {
                rt.block_on(async move {
                    let e = async {
                        if let Some(e) = exporter {
                            e.run(stopped.clone()).await;
                        }
                    };
                    let b = async {
                        if let Some(b) = budgets {
                            b.run(stopped.clone()).await;
                        }
                    };
                    tokio::join!(e, b);
                });
            })
            .map_err(FleetError::Spawn)?;
        Ok(Some(Fleet {
            stop,
            thread: Some(thread),
        }))
    }

    /// Stop: the exporter makes a last pass (bounded by its own deadline), unspent leases
    /// go back; returns once the thread ended or `limit` passed.
    pub fn shutdown(mut self, limit: Duration) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + limit;
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!("fleet thread still busy at shutdown; leaving it");
            }
        }
    }
}
