//! Metering: one durable usage record per `response.id`.
//!
//! - [`record`]: the [`UsageRecord`] written as one JSON line.
//! - [`recent`]: the response ids a session recorded last (duplicate terminals).
//! - [`session`]: [`SessionMeter`], one per session on its worker, turning the tap's events
//!   into records (exactly once per `response.id`, lanes matched FIFO, steering successors,
//!   disconnects).
//! - `successors`: the steering successors a session still waits for (steers unanswered,
//!   successors announced), so the orphan drain does not end between a steered response's
//!   terminal event and its successor's `response.created`.
//! - [`sink`]: the durable JSON Lines log with group commit that fails closed
//!   ([`Sink`], [`SinkHandle`]).
//! - [`append`]: appending whole lines to a log other relays may share (a new line after a
//!   killed writer's torn one), under the log's `flock`.
//! - [`journal`]: each record in a memory-mapped file as it is submitted, so a killed
//!   process loses none between group commits.
//! - [`reader`]: reads a log back, tolerating a torn last line.
//! - [`recover`]: moves a torn last line aside when the sink starts.

pub mod append;
pub mod journal;
pub mod reader;
pub mod recent;
pub mod record;
pub mod recover;
pub mod session;
pub mod sink;
mod successors;
#[cfg(test)]
mod tests;

pub use reader::{read_log, LogRead, ReadError};
pub use record::{format_rfc3339_ms, RecordStatus, UsageRecord};
pub use session::{EndReason, MeterStats, SessionMeter};
pub use sink::{DurableMark, Sink, SinkConfig, SinkError, SinkHandle, SinkPath, SinkStats};
