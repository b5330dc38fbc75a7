//! One direction of a session: read into an owned buffer, walk the frames in place,
//! write the same bytes onward.
//!
//! Every complete frame of a read goes out in one write; a partial payload goes out as it
//! arrives; only an incomplete header (or control frame) is carried to the next read.

use std::time::Instant;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::AsyncReadRent;

use super::leg::Leg;
use super::session::{Dir, SessionShared};
use super::walker::{CloseSeen, WalkError, Walker};
use crate::tap::Tap;

/// Why a pump stopped.
#[derive(Debug)]
pub enum PumpEnd {
    /// The source sent a close frame. `forwarded` says whether it went to the other leg.
    PeerClose {
        /// The close.
        close: CloseSeen,
        /// Whether the close frame was forwarded.
        forwarded: bool,
    },
    /// The source closed TCP (or TLS) without a close frame.
    Eof,
    /// Reading the source failed.
    ReadError(std::io::ErrorKind),
    /// The source broke the protocol; it is owed a close with this code.
    Protocol(WalkError),
    /// Writing to the destination failed (and nothing is left to drain).
    DestGone,
    /// The session asked this pump to stop.
    Stopped,
    /// Upstream pump only: the client was gone and every open response has ended.
    Drained,
}

/// Smallest read buffer a session holds per direction.
pub const MIN_READ_BUFFER: usize = 4096;

/// Read-buffer sizing: a direction starts small and doubles its buffer (up to
/// `--buffer-bytes`) while reads fill it, then halves it again after a run of small
/// reads. Busy sessions batch many frames per read; idle ones hold ~4 KiB per direction
/// instead of the full buffer (with io_uring a pending read always owns its buffer).
#[derive(Debug, Clone, Copy)]
pub struct BufSizer {
    min: usize,
    max: usize,
    small_reads: u32,
}

impl BufSizer {
    /// Reads using under a quarter of the buffer, in a row, before it shrinks.
    const SHRINK_AFTER: u32 = 64;

    /// A sizer growing up to `max` bytes.
    pub fn new(max: usize) -> BufSizer {
        BufSizer {
            min: MIN_READ_BUFFER.min(max),
            max,
            small_reads: 0,
        }
    }

    /// The first buffer: `leftover` bytes already read, with room for one more read.
    pub fn first(&self, mut leftover: Vec<u8>) -> Vec<u8> {
        leftover.reserve_exact(self.min);
        leftover
    }

    /// After a read of `n` bytes into `room` free bytes (and after the processed bytes were
    /// dropped), resize `buf` if the traffic asks for it.
    pub fn adjust(&mut self, buf: &mut Vec<u8>, n: usize, room: usize) {
        let cap = buf.capacity();
        if n == room && cap < self.max {
            self.small_reads = 0;
            buf.reserve_exact((cap * 2).min(self.max).saturating_sub(buf.len()));
        } else if n < cap / 4 {
            self.small_reads += 1;
            if self.small_reads >= Self::SHRINK_AFTER && cap > self.min && buf.len() <= self.min / 2
            {
                self.small_reads = 0;
                buf.shrink_to((cap / 2).max(self.min));
            }
        } else {
            self.small_reads = 0;
        }
    }
}

/// Per-direction counters, folded into the worker's metrics at session end.
#[derive(Debug, Default, Clone, Copy)]
pub struct DirStats {
    /// Frames seen.
    pub frames: u64,
    /// Bytes read from the source.
    pub bytes: u64,
    /// Reads.
    pub reads: u64,
}

/// The per-direction state a pump works with.
pub struct DirState {
    /// Which way the frames flow.
    pub dir: Dir,
    /// Validates and re-masks frames.
    pub walker: Walker,
    /// Reads text messages for metering.
    pub tap: Tap,
    /// Counters.
    pub stats: DirStats,
    /// Read-buffer sizing.
    pub sizer: BufSizer,
}

/// Run one direction until it ends. `buf` holds bytes already read from the source (e.g.
/// frames a client pipelined behind its upgrade request); its capacity is the read size.
pub async fn pump<R: AsyncReadRent, W: monoio::io::AsyncWriteRent>(
    src: &mut R,
    dst: &Leg<W>,
    mut buf: Vec<u8>,
    st: &mut DirState,
    sh: &SessionShared,
) -> PumpEnd {
    let DirState {
        dir,
        walker,
        tap,
        stats,
        sizer,
    } = st;
    let dir = *dir;
    let stop = sh.stop(dir);
    let mut pending_input = !buf.is_empty();
    let (mut last_read, mut last_room) = (0, usize::MAX);
    loop {
        if !pending_input {
            if buf.len() == buf.capacity() {
                buf.reserve(MIN_READ_BUFFER); // never issue a zero-length read (reads as EOF)
            }
            let len = buf.len();
            let cap = buf.capacity();
            last_room = cap - len;
            let read = src.read(buf.slice_mut(len..cap));
            let (res, s) = monoio::select! {
                r = read => r,
                _ = stop.wait() => return PumpEnd::Stopped,
            };
            buf = s.into_inner();
            match res {
                Ok(0) => return PumpEnd::Eof,
                Ok(n) => {
                    stats.bytes += n as u64;
                    stats.reads += 1;
                    last_read = n;
                }
                Err(e) => return PumpEnd::ReadError(e.kind()),
            }
        }
        pending_input = false;
        let now = Instant::now();
        sh.touch(now);
        if dir == Dir::ClientToUpstream {
            // While the usage log is down, hold each client text message until it is whole
            // so a response.create can be refused instead of forwarded.
            walker.set_gate(!sh.usage_log_healthy());
        }
        let walked = walker.walk(&mut buf[..], tap, &mut |ev| sh.on_tap_event(dir, &ev, now));
        if dir == Dir::UpstreamToClient {
            tap.set_track_deltas(sh.meter_wants_deltas());
        }
        let walked = match walked {
            Ok(w) => w,
            Err(e) => {
                if e.valid_upto > 0 {
                    forward(dst, buf, e.valid_upto, true).await;
                }
                return PumpEnd::Protocol(e);
            }
        };
        stats.frames += walked.frames;
        if let Some(close) = walked.close {
            // Hold a client's close while responses are open: the relay answers the client
            // itself and keeps reading upstream for their usage (orphan drain).
            let hold = dir == Dir::ClientToUpstream && sh.open_responses() > 0;
            let upto = if hold {
                walked.close_start
            } else {
                walked.ready
            };
            if upto > 0 {
                forward(dst, buf, upto, true).await;
            }
            if !hold && !dst.is_dead() {
                dst.mark_close_sent();
            }
            return PumpEnd::PeerClose {
                close,
                forwarded: !hold && !dst.is_dead(),
            };
        }
        let len = buf.len();
        if let Some((start, end)) = walked.message {
            if sh.take_refused_create() {
                if start > 0 {
                    buf = forward(dst, buf, start, true).await;
                }
                sh.refuse_create().await;
                buf.copy_within(end..len, 0);
                buf.truncate(len - end);
                pending_input = !buf.is_empty();
                continue;
            }
        }
        if walked.ready > 0 {
            buf = forward(dst, buf, walked.ready, walker.at_boundary()).await;
            if dst.is_dead() && !sh.keep_draining(dir) {
                return PumpEnd::DestGone;
            }
        }
        if dir == Dir::UpstreamToClient && dst.is_dead() && sh.open_responses() == 0 {
            return PumpEnd::Drained;
        }
        // Carry the unprocessed tail (an incomplete header or control frame) to the front.
        buf.copy_within(walked.ready..len, 0);
        buf.truncate(len - walked.ready);
        if walked.message.is_some() && !buf.is_empty() {
            // Gate mode stopped right after a message: walk the rest before reading more.
            pending_input = true;
        } else if walked.need_more && buf.len() == buf.capacity() {
            // Gate mode holds a whole message: grow (bounded by the message limit, which
            // the walker enforces).
            buf.reserve(buf.len());
        } else if buf.capacity() > 4 * sh.buffer_bytes() && buf.len() < sh.buffer_bytes() {
            buf.shrink_to(sh.buffer_bytes());
        } else {
            sizer.adjust(&mut buf, last_read, last_room);
        }
    }
}

/// Write `buf[..upto]` to `dst` and hand the buffer back.
async fn forward<W: monoio::io::AsyncWriteRent>(
    dst: &Leg<W>,
    buf: Vec<u8>,
    upto: usize,
    boundary: bool,
) -> Vec<u8> {
    if dst.is_dead() {
        return buf;
    }
    let slice = buf.slice(0..upto);
    dst.forward(slice, boundary).await.into_inner()
}

/// The diagnostic byte tunnel: copy bytes until EOF, no frame walking.
pub async fn tunnel<R: AsyncReadRent, W: monoio::io::AsyncWriteRent>(
    src: &mut R,
    dst: &Leg<W>,
    mut buf: Vec<u8>,
    stop: &super::signal::Signal,
    stats: &mut DirStats,
    mut sizer: BufSizer,
) {
    loop {
        if !buf.is_empty() {
            buf = dst.forward(buf, true).await;
            buf.clear();
            if dst.is_dead() {
                return;
            }
        }
        let cap = buf.capacity();
        let read = src.read(buf.slice_mut(0..cap));
        let (res, s) = monoio::select! {
            r = read => r,
            _ = stop.wait() => return,
        };
        buf = s.into_inner();
        match res {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                stats.bytes += n as u64;
                stats.reads += 1;
                let room = buf.capacity();
                buf = dst.forward(buf, true).await;
                buf.clear();
                if dst.is_dead() {
                    return;
                }
                sizer.adjust(&mut buf, n, room);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_grows_while_reads_fill_it_and_shrinks_when_idle() {
        let mut z = BufSizer::new(64 << 10);
        let mut buf = z.first(Vec::new());
        assert!(buf.capacity() >= MIN_READ_BUFFER && buf.capacity() < 2 * MIN_READ_BUFFER);
        // Full reads double the buffer up to the maximum, never beyond.
        for _ in 0..10 {
            let room = buf.capacity();
            z.adjust(&mut buf, room, room);
        }
        assert!(
            buf.capacity() >= 64 << 10 && buf.capacity() < 80 << 10,
            "{}",
            buf.capacity()
        );
        // A run of small reads halves it, step by step, down to the minimum.
        for _ in 0..64 * 8 {
            let room = buf.capacity();
            z.adjust(&mut buf, 200, room);
        }
        assert!(buf.capacity() < 2 * MIN_READ_BUFFER, "{}", buf.capacity());
        // Fewer than 64 small reads in a row do not shrink it.
        let mut z = BufSizer::new(64 << 10);
        let mut buf = Vec::with_capacity(32 << 10);
        for i in 0..200 {
            let n = if i % 50 == 49 { 20_000 } else { 100 };
            z.adjust(&mut buf, n, 32 << 10);
        }
        assert!(buf.capacity() >= 32 << 10);
    }

    #[test]
    fn leftover_larger_than_the_minimum_is_kept_whole() {
        let z = BufSizer::new(64 << 10);
        let buf = z.first(vec![7u8; 10_000]);
        assert_eq!(buf.len(), 10_000);
        assert!(buf.capacity() >= 10_000 + MIN_READ_BUFFER);
    }
}
