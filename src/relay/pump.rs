//! Read-buffer sizing for the pumps.

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
    /// dropped), resize `buf` if the traffic asks for it. A buffer holding more than `max`
    /// (a held message) is left alone until it is emptied, then brought back to `max`.
    pub fn adjust(&mut self, buf: &mut Vec<u8>, n: usize, room: usize) {
        let cap = buf.capacity();
        if cap > 2 * self.max {
            if buf.len() < self.max {
                buf.shrink_to(self.max);
            }
            return;
        }
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
    fn a_buffer_grown_for_a_held_message_returns_to_the_maximum_once_emptied() {
        let mut z = BufSizer::new(64 << 10);
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        buf.resize(900_000, 0);
        z.adjust(&mut buf, 100, 1000);
        assert!(buf.capacity() >= 900_000, "still holding");
        buf.clear();
        z.adjust(&mut buf, 100, 1000);
        assert!(buf.capacity() <= 80 << 10, "{}", buf.capacity());
    }

    #[test]
    fn leftover_larger_than_the_minimum_is_kept_whole() {
        let z = BufSizer::new(64 << 10);
        let buf = z.first(vec![7u8; 10_000]);
        assert_eq!(buf.len(), 10_000);
        assert!(buf.capacity() >= 10_000 + MIN_READ_BUFFER);
    }
}
