//! The usage exporter: the durable usage log → NATS JetStream, exactly once per
//! `response.id` in the stream.
//!
//! - **Reads only what is durable.** The sink's [`DurableMark`] says which file is current
//!   and how many of its bytes every fsync so far covers; the exporter reads up to there.
//! - **Publishes each line unchanged** to the subject template (`{route}`, `{tenant}`) with
//!   `Nats-Msg-Id = response_id`, many in flight, and moves its cursor past each record in
//!   order as JetStream acknowledges it. The cursor (`dev ino offset`) is fsynced after each
//!   batch; a crash between an ack and that fsync re-publishes a few records on restart,
//!   which JetStream's duplicate window (10 minutes on the stream the exporter creates)
//!   drops — so each `response.id` is in the stream once, and a consumer keying on it is
//!   safe even past the window.
//! - **Rotation.** When the sink reopens its path (SIGHUP), the mark moves to the new file;
//!   the old file is complete by then (the writer finished its round on it), so the
//!   exporter reads it to its end, then continues from byte 0 with the file written after it
//!   (the next rotated copy if the log was rotated more than once meanwhile — files next to
//!   the log whose names start with its name, ordered by modification time — else the
//!   current one). A restart whose cursor names a rotated file finds it by its inode and
//!   works forward from there. Compressed copies are skipped: rotate with `delaycompress`
//!   (or `nocompress`).
//! - **Outages.** A failed connect, publish or ack (2 s) counts an error, backs off (up to
//!   2 s) and retries from the cursor; async-nats reconnects by itself. The backlog (records
//!   and bytes durable but not acknowledged) is a metric; over `--usage-export-max-backlog`
//!   `/readyz` answers 503.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::watch;

use super::logfile::{classify, find_rotated, next_file, Line, Tail};
pub use super::logfile::{line_ends, Cursor};
use super::FleetError;
use crate::config::ExportConfig;
use crate::metering::{DurableMark, SinkHandle};
use crate::metrics::FleetMetrics;

/// Longest a record line may be (records are about 1 KiB; a line longer than this is
/// published in no case and stops the exporter with an error line, never skipped).
pub const MAX_LINE: usize = 16 << 20;
/// Bytes read per pass.
const READ_CHUNK: usize = 1 << 20;
/// Longest wait for one acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the last pass at shutdown may take.
const FINAL_PASS: Duration = Duration::from_secs(5);

/// The subject for a record: `template` with `{route}` and `{tenant}` filled in (a value
/// that would break the subject's tokens becomes `_`).
pub fn subject(template: &str, route: &str, tenant: &str) -> String {
    let token = |s: &str| {
        if s.is_empty() || s.contains(|c: char| c.is_whitespace() || matches!(c, '.' | '*' | '>')) {
            "_".to_string()
        } else {
            s.to_string()
        }
    };
    template
        .replace("{route}", &token(route))
        .replace("{tenant}", &token(tenant))
}

/// The stream's subject filter for `template` (each placeholder → `*`).
pub fn subject_filter(template: &str) -> String {
    template.replace("{route}", "*").replace("{tenant}", "*")
}

/// Credentials written in the NATS URL (`nats://user:pass@host`, `nats://token@host`).
#[derive(PartialEq, Eq)]
enum Credentials {
    UserPassword(String, String),
    Token(String),
}

/// Redacted, so that no `{:?}` can put a password in a log line.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::UserPassword(user, _) => write!(f, "UserPassword({user:?}, <redacted>)"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// The URL's credentials, percent-decoded; async-nats connects to the host of such a URL
/// but does not send what is written before the `@`.
fn url_credentials(addr: &async_nats::ServerAddr) -> Option<Credentials> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = addr.username()?;
    Some(match addr.password() {
        Some(pass) => Credentials::UserPassword(decode(user), decode(pass)),
        None => Credentials::Token(decode(user)),
    })
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error("reading the usage log: {0}")]
    Read(#[from] io::Error),
    #[error("publish: {0}")]
    Publish(String),
    #[error("ack: {0}")]
    Ack(String),
    #[error("no ack within {ACK_TIMEOUT:?}")]
    AckTimeout,
    #[error("a usage log line is longer than {MAX_LINE} bytes")]
    LineTooLong,
}

/// The exporter (owned by the fleet thread).
pub struct Exporter {
    cfg: ExportConfig,
    sink: SinkHandle,
    metrics: Arc<FleetMetrics>,
    tail: Tail,
    buf: Vec<u8>,
}

impl Exporter {
    /// Open the log where the cursor says (see the module docs for a rotated-away file).
    pub fn new(
        cfg: ExportConfig,
        sink: SinkHandle,
        metrics: Arc<FleetMetrics>,
    ) -> Result<Exporter, FleetError> {
        let cursor_err = |why: String| FleetError::Cursor {
            path: cfg.cursor.display().to_string(),
            why,
        };
        let saved = match std::fs::read_to_string(&cfg.cursor) {
            Ok(t) => Some(
                Cursor::parse(&t).ok_or_else(|| cursor_err("expected `dev ino offset`".into()))?,
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(cursor_err(e.to_string())),
        };
        let current = File::open(&cfg.log).map_err(|_| FleetError::NoLogFile)?;
        let cur_meta = current.metadata().map_err(|_| FleetError::NoLogFile)?;
        let tail = match saved {
            None => Tail::open(current, 0),
            Some(c) if (c.dev, c.ino) == (cur_meta.dev(), cur_meta.ino()) => {
                Tail::open(current, c.offset.min(cur_meta.len()))
            }
            Some(c) => match find_rotated(&cfg.log, c.dev, c.ino) {
                Some((path, f)) => {
                    tracing::info!(file = %path.display(), offset = c.offset, "usage export resumes in the rotated log file first");
                    Tail::open(f, c.offset)
                }
                None => {
                    tracing::warn!(log = %cfg.log.display(), "usage export: the file the cursor points into is gone; records in it that were not exported stay in the rotated files only; exporting the current log from its start");
                    Tail::open(current, 0)
                }
            },
        }
        .map_err(|e| cursor_err(e.to_string()))?;
        if saved.is_none() {
            // From now on a cursor always exists: if the log is rotated before anything was
            // exported, the next start still finds the file it names.
            tail.cursor
                .store(&cfg.cursor)
                .map_err(|e| cursor_err(e.to_string()))?;
        }
        Ok(Exporter {
            cfg,
            sink,
            metrics,
            tail,
            buf: Vec::new(),
        })
    }

    /// Run until `stop`, then make a last pass (bounded).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut js: Option<jetstream::Context> = None;
        let mut backoff = Duration::from_millis(100);
        let mut last_error_log: Option<Instant> = None;
        let mut final_by: Option<Instant> = None;
        loop {
            if final_by.is_none() && *stop.borrow() {
                final_by = Some(Instant::now() + FINAL_PASS);
            }
            if final_by.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            let outcome = match &js {
                Some(c) => self.pass(c).await,
                None => match self.connect().await {
                    Ok(c) => {
                        tracing::info!(url = %crate::config::loggable_url(&self.cfg.url), stream = %self.cfg.stream, "usage export connected");
                        js = Some(c);
                        continue;
                    }
                    Err(e) => Err(PassError::Publish(e)),
                },
            };
            self.update_backlog();
            match outcome {
                Ok(true) => {
                    backoff = Duration::from_millis(100);
                    tokio::task::yield_now().await;
                }
                Ok(false) => {
                    if final_by.is_some() {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(e) => {
                    self.metrics.export_error();
                    // The next pass re-reads from the cursor: nothing acknowledged is lost,
                    // nothing unacknowledged is skipped.
                    self.tail.counted_to = self.tail.counted_to.max(self.tail.cursor.offset);
                    if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(error = %e, backlog = self.metrics.export_backlog_records.load(std::sync::atomic::Ordering::Relaxed), "usage export failing; records stay in the log and are retried");
                        last_error_log = Some(Instant::now());
                    }
                    if matches!(e, PassError::LineTooLong) {
                        tracing::error!(
                            "usage export stopped: a usage log line is too long to publish"
                        );
                        return;
                    }
                    js = None;
                    if final_by.is_some() {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        let backlog = self
            .metrics
            .export_backlog_records
            .load(std::sync::atomic::Ordering::Relaxed);
        if backlog > 0 {
            tracing::warn!(backlog, cursor = %self.cfg.cursor.display(), "usage export stopped with records not yet exported; the next start resumes from the cursor");
        }
    }

    async fn connect(&self) -> Result<jetstream::Context, String> {
        let addr: async_nats::ServerAddr = self.cfg.url.parse().map_err(|e| format!("{e}"))?;
        let options = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(1))
            .name("tollgate-usage-export");
        let options = match url_credentials(&addr) {
            Some(Credentials::UserPassword(user, pass)) => options.user_and_password(user, pass),
            Some(Credentials::Token(token)) => options.token(token),
            None => options,
        };
        let client = tokio::time::timeout(Duration::from_secs(2), options.connect(addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let js = jetstream::new(client);
        js.get_or_create_stream(jetstream::stream::Config {
            name: self.cfg.stream.clone(),
            subjects: vec![subject_filter(&self.cfg.subject)],
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("stream {}: {e}", self.cfg.stream))?;
        Ok(js)
    }

    /// The file to read and how far: the current file up to the durable mark, or a
    /// rotated (complete) file to its end. `None`: no log file mark (should not happen).
    fn limit(&self) -> Option<(u64, Option<DurableMark>)> {
        let mark = self.sink.durable_mark()?;
        if self.tail.cursor.same_file(&mark) {
            Some((mark.offset, None))
        } else {
            let len = self.tail.file.metadata().map(|m| m.len()).unwrap_or(0);
            Some((len, Some(mark)))
        }
    }

    /// One read-publish-ack round; `Ok(true)` when it moved (or switched files).
    async fn pass(&mut self, js: &jetstream::Context) -> Result<bool, PassError> {
        let Some((limit, rotated)) = self.limit() else {
            return Ok(false);
        };
        let start = self.tail.cursor.offset;
        if start >= limit {
            if let Some(mark) = rotated {
                return self.switch(mark).map(|_| true);
            }
            return Ok(false);
        }
        let mut want = READ_CHUNK;
        let ends = loop {
            let n = (limit - start).min(want as u64) as usize;
            self.buf.resize(n, 0);
            let got = self.tail.file.read_at(&mut self.buf, start)?;
            self.buf.truncate(got);
            let ends = line_ends(&self.buf);
            if !ends.is_empty() || (got as u64) == limit - start {
                break ends;
            }
            if want >= MAX_LINE {
                return Err(PassError::LineTooLong);
            }
            want *= 4;
        };
        let mut acks = VecDeque::with_capacity(ends.len());
        let mut from = 0usize;
        for end in ends {
            let line = &self.buf[from..end];
            let at = start + end as u64;
            let body = &line[..line.len() - 1];
            from = end;
            let key = match classify(body) {
                Line::Record(k) => k,
                Line::Blank => {
                    acks.push_back((at, None));
                    continue;
                }
                Line::Fragment => {
                    // A relay sharing the log was killed mid-write; its journal appends the
                    // record again, whole, and that line is exported.
                    tracing::warn!(offset = at - line.len() as u64, "usage log line is a record cut short by a killed writer; skipped (the killed relay's usage journal, when it had one, re-appends the record)");
                    acks.push_back((at, None));
                    continue;
                }
                Line::NotARecord(e) => {
                    // Never a record the relay wrote; kept in the log, not published.
                    tracing::error!(offset = at - line.len() as u64, error = %e, "usage log line is not a record; not exported");
                    acks.push_back((at, None));
                    continue;
                }
            };
            let subject = subject(
                &self.cfg.subject,
                key.route.as_deref().unwrap_or("default"),
                &key.tenant,
            );
            let publish = jetstream::message::PublishMessage::build()
                .payload(bytes::Bytes::copy_from_slice(body))
                .message_id(key.response_id.as_ref());
            // Bounded: while the connection is down the client's buffer fills and a publish
            // would wait for the reconnect.
            let fut = tokio::time::timeout(ACK_TIMEOUT, js.send_publish(subject, publish))
                .await
                .map_err(|_| PassError::Publish("publish timed out".into()))?
                .map_err(|e| PassError::Publish(e.to_string()))?;
            acks.push_back((at, Some(fut)));
        }
        let mut moved = 0u64;
        let mut result = Ok(());
        while let Some((at, fut)) = acks.pop_front() {
            if let Some(fut) = fut {
                match tokio::time::timeout(ACK_TIMEOUT, fut).await {
                    Err(_) => {
                        result = Err(PassError::AckTimeout);
                        break;
                    }
                    Ok(Err(e)) => {
                        result = Err(PassError::Ack(e.to_string()));
                        break;
                    }
                    Ok(Ok(_)) => {}
                }
                moved += 1;
            }
            self.tail.cursor.offset = at;
            if at > self.tail.counted_to {
                // Not counted yet (the backlog count lags the reads): nothing to take off.
                self.tail.counted_to = at;
            } else {
                self.tail.pending_lines = self.tail.pending_lines.saturating_sub(1);
            }
        }
        if moved > 0 {
            self.metrics.exported(moved);
        }
        if self.tail.cursor.offset > start {
            self.tail.cursor.store(&self.cfg.cursor)?;
        }
        result.map(|_| true)
    }

    /// The rotated file is done: continue with the file written after it — the next
    /// rotated one if the log was rotated more than once meanwhile, else the current one.
    fn switch(&mut self, mark: DurableMark) -> Result<(), PassError> {
        let done = self.tail.file.metadata()?;
        let Some((path, f)) = next_file(&self.cfg.log, &done) else {
            return Ok(()); // the sink is mid-reopen: look again next pass
        };
        let m = f.metadata()?;
        let current = (m.dev(), m.ino()) == (mark.dev, mark.ino);
        tracing::info!(file = %path.display(), current, "usage export finished a rotated log file; continuing with the next");
        self.tail = Tail::open(f, 0)?;
        self.tail.cursor.store(&self.cfg.cursor)?;
        Ok(())
    }

    fn update_backlog(&mut self) {
        let Some((limit, rotated)) = self.limit() else {
            return;
        };
        self.tail.count_to(limit);
        let mut bytes = limit.saturating_sub(self.tail.cursor.offset);
        if let Some(m) = rotated {
            bytes += m.offset; // the new file's durable bytes wait behind the old file
        }
        self.metrics
            .set_backlog(self.tail.pending_lines, bytes, self.cfg.max_backlog);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_fill_tokens_safely() {
        assert_eq!(
            subject("tollgate.usage.{route}", "xai", "acme"),
            "tollgate.usage.xai"
        );
        assert_eq!(
            subject("u.{tenant}.{route}", "a.b", "fp-12 x"),
            "u._._",
            "dots and spaces would change the subject's tokens"
        );
        assert_eq!(subject_filter("tollgate.usage.{route}"), "tollgate.usage.*");
        assert_eq!(subject_filter("fixed.subject"), "fixed.subject");
    }

    #[test]
    fn credentials_in_the_url_are_decoded() {
        let creds = |url: &str| url_credentials(&url.parse().expect("url"));
        assert_eq!(
            creds("nats://tollgate:p%40ss%3Aw@127.0.0.1:4222"),
            Some(Credentials::UserPassword(
                "tollgate".into(),
                "p@ss:w".into()
            ))
        );
        assert_eq!(
            creds("nats://s3cr3t-token@nats:4222"),
            Some(Credentials::Token("s3cr3t-token".into()))
        );
        assert_eq!(creds("nats://127.0.0.1:4222"), None);
        let shown = format!("{:?}", creds("nats://tollgate:s3cret@h"));
        assert!(
            shown.contains("tollgate") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
