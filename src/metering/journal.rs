//! The usage journal: every record copied into a memory-mapped file the moment it is
//! submitted, so that a record survives the relay's process dying (`kill -9`, the OOM killer,
//! an abort) before the writer thread's next group commit.
//!
//! **Why.** The writer gathers records for one group-commit interval and then appends them
//! with one `write` (issue 11: one wake-up, one write and one fsync per interval). A terminal
//! event is forwarded to the client as soon as it is walked, so without the journal a record
//! lived only in the process's memory for up to an interval after its response was delivered,
//! and a `kill -9` in that window lost it. The pages of a `MAP_SHARED` file mapping belong to
//! the kernel's page cache, not to the process: what a worker copied there is in the file
//! whether or not the process lives on — with no system call on the worker (a `write(2)` per
//! record would be one, and could block a worker on the disk).
//!
//! **What it does not cover.** A power loss or kernel crash: the journal is never fsynced
//! while the relay runs (the log's fsync per interval is what covers that), so a machine crash
//! loses what it always did — at most the last interval.
//!
//! **Files.** Each relay process has its own journal, `<log>.journal.<pid>-<random>`, locked with
//! `flock` while it lives, so two relays sharing a log (a restart overlapping the old
//! process's drain) never touch each other's. A clean stop deletes its journal once every
//! record is written; after a failed log the journal keeps what was not written.
//!
//! **Layout.** A 4 KiB header (magic, capacity, `written`), then a ring of `capacity` bytes
//! (whole pages). Entries sit at monotonically growing positions (`position % capacity` in the
//! ring), each `[position: u64][length: u32][crc32: u32][record's JSON line]`, padded to 8
//! bytes; the position and the checksum (which covers the position) tell a current entry from
//! a stale one of an earlier lap or a torn one. An entry that does not fit before the ring's
//! end leaves a wrap marker (length `u32::MAX`) and starts the next lap. `written` is the
//! position up to which the writer thread has appended the entries' records to the log; the
//! space before it is free, and its whole pages leave the process's resident set.
//!
//! **Start-up.** [`Journal::open`] takes every journal of the log that no live process
//! holds, drops the entries past `written` whose `response_id` is already in the log's last
//! bytes (the writer appended them but died before it moved `written`), appends the rest to
//! the log, fsyncs it, and deletes the journal — then creates this process's own.
//!
//! **Adoption.** Two relays may share a log: a restart that overlaps the old process's drain.
//! If the old one is then killed (a stop timeout's `SIGKILL`), its journal would wait for the
//! next start; instead the live relay's writer thread looks once a second for journals no
//! process holds and recovers them the same way ([`Journal::adopt`]). Records appended from
//! dead relays' journals, at a start or by adoption, are counted in
//! `tollgate_usage_journal_recovered_total`. Creating a journal
//! locks it before truncating it and checks that the lock is on the file its name still
//! points to, so an adopting relay never takes a journal being created (see
//! `create_locked`).
//!
//! **Full.** When the writer is `capacity` bytes behind (a stalled disk), a record is queued
//! without a journal entry and counted (`tollgate_usage_journal_skipped_total`); the sink's
//! own backpressure refuses new responses well before that at the default sizes.
//!
//! **Cost.** Per record, on the worker: serializing it (~0.6 KiB) outside the queue lock and
//! copying it in under it; ~1 µs per record in all (a throwaway harness timing
//! `SinkHandle::submit` with and without a journal, minimum of 20 × 1,000 submits, seven
//! rounds: 1.4–2.3 µs, median 2.0, against 0.7–1.7, median 1.0), which then included a page
//! fault per ~6 records as the ring advanced. The writer thread now faults the ring's next
//! pages in ahead of the workers ([`Ahead`]). Never per frame.
//! The journal's dirty pages are written back by the kernel's flusher threads, not the relay.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapMut, UncheckedAdvice};

/// Bytes of the header page before the ring; the ring is whole pages of this size too.
const HEADER: usize = 4096;
const PAGE: u64 = HEADER as u64;
/// File magic and format version.
const MAGIC: &[u8; 8] = b"TGJRNL01";
/// Offsets of the header's fields.
const CAPACITY_AT: usize = 8;
const WRITTEN_AT: usize = 16;
/// Bytes before an entry's payload: position, length, checksum.
const ENTRY_HEAD: usize = 16;
/// The length that marks "continue at the next lap".
const WRAP: u32 = u32::MAX;

/// Why the journal could not be opened or recovered.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading, writing, sizing or mapping a file failed.
    #[error("usage journal {path}: {source}")]
    Io {
        /// The file (journal or log).
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The ring is too small for a header and one record (under 64 KiB).
    #[error("usage journal capacity {0} bytes is below the 64 KiB minimum")]
    TooSmall(u64),
}

/// What [`Journal::open`] (at start-up) or [`Journal::adopt`] (while running) found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Records found in the journal past what the log had been written to.
    pub found: u64,
    /// Of those, records appended to the log (the rest were already in it).
    pub appended: u64,
    /// Bytes appended to the log (with the newline that ended another writer's torn line,
    /// when one was written first).
    pub bytes: u64,
    /// The log's length after the last append (`None` when nothing was appended, or the log
    /// is not a regular file).
    pub end: Option<u64>,
}

/// The mapped journal (owned by the sink, appended to under its queue lock).
#[derive(Debug)]
pub struct Journal {
    map: MmapMut,
    /// Held open for its `flock`: a live relay's journal is left alone by other starts.
    _lock: File,
    path: PathBuf,
    capacity: u64,
    /// Where the next entry goes.
    head: u64,
    /// Mirror of the header's `written` (this process is its only writer).
    written: u64,
    /// Ring pages before this position are out of the process's memory (see `set_written`).
    released: u64,
}

/// What follows the log's file name in its journals' names.
const JOURNAL_INFIX: &str = ".journal.";

/// `<log>.journal.<id>`: one process's journal, next to the log it protects.
pub fn journal_path(log: &Path, id: impl std::fmt::Display) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!("{JOURNAL_INFIX}{id}"));
    PathBuf::from(name)
}

/// Whether a file named `file` (in the log's directory) is a journal of the log named `log`
/// — whichever process's: the recovery looks for these, the usage exporter skips them.
pub fn is_journal_of(log: &str, file: &str) -> bool {
    file.strip_prefix(log)
        .is_some_and(|rest| rest.starts_with(JOURNAL_INFIX))
}

/// Opens (creating it if needed) and locks this process's journal file, without
/// truncating it before the lock is held. The lock must be on the file the path names: a
/// relay adopting dead journals locks and deletes any unlocked `<log>.journal.*`, and this
/// one is unlocked between its creation and the `flock` — so when the path no longer names
/// the locked file (it was deleted), or another relay holds the lock for that moment, try
/// again (for up to a second).
fn create_locked(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    for _ in 0..100 {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(path)?;
        if try_lock(&file)? {
            let (held, named) = (file.metadata()?, std::fs::metadata(path));
            if named.is_ok_and(|n| (n.dev(), n.ino()) == (held.dev(), held.ino())) {
                return Ok(file);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(io::Error::from(io::ErrorKind::WouldBlock))
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(false)` when another process holds the file.
fn try_lock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on an open descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The ring positions `from..to` (at most one lap) as `(offset in the ring, bytes)`: one
/// slice, or two when they wrap past the ring's end.
fn ring_slices(capacity: u64, from: u64, to: u64) -> impl Iterator<Item = (usize, usize)> {
    let mut pos = from;
    std::iter::from_fn(move || {
        if pos >= to {
            return None;
        }
        let at = pos % capacity;
        let len = (to - pos).min(capacity - at);
        pos += len;
        Some((at as usize, len as usize))
    })
}

fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

fn entry_crc(pos: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&pos.to_le_bytes());
    h.update(&(payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// The entries of a ring from position `from` on, as long as they are current and intact (a
/// corrupt header's position ends the scan, never the process).
fn scan(ring: &[u8], capacity: u64, from: u64) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos - from < capacity {
        let at = (pos % capacity) as usize;
        let room = capacity as usize - at;
        if room < ENTRY_HEAD {
            let Some(next) = pos.checked_add(room as u64) else {
                break;
            };
            pos = next;
            continue;
        }
        if read_u64(ring, at) != pos {
            break;
        }
        let len = read_u32(ring, at + 8);
        if len == WRAP {
            let Some(next) = pos.checked_add(room as u64) else {
                break;
            };
            pos = next;
            continue;
        }
        let len = len as usize;
        if len > room - ENTRY_HEAD {
            break;
        }
        let payload = &ring[at + ENTRY_HEAD..at + ENTRY_HEAD + len];
        if read_u32(ring, at + 12) != entry_crc(pos, payload) {
            break;
        }
        out.push(payload);
        let Some(next) = pos.checked_add(align8((ENTRY_HEAD + len) as u64)) else {
            break;
        };
        pos = next;
    }
    out
}

/// Gives `file` (empty) `len` bytes with every block allocated: a store into a mapped hole on
/// a full disk would be a SIGBUS; so the disk being full shows here, at start, as an error.
fn allocate(file: &mut File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let Ok(off) = libc::off_t::try_from(len) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: fallocate(2) on an open descriptor; no memory is passed.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, off) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(e);
    }
    // A file system without fallocate: write the zeros.
    let zeros = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    Ok(())
}

impl Journal {
    /// Recovers the journals of `log_path` that no live process holds — appending to `log`
    /// (opened for appending) every record they hold that the log lacks, fsyncing it, then
    /// deleting them — and creates this process's own, `<log>.journal.<pid>-<random>`, with a
    /// ring of `capacity` bytes, locked (`flock`) for as long as it is open. The random part
    /// keeps two relays apart that share a log directory from different PID namespaces (two
    /// containers whose relays are both pid 1): a pid alone would name both journals alike.
    ///
    /// Two relays may share a log (a restart that overlaps the old process's drain): each has
    /// its own journal, and neither touches the other's while it lives.
    pub fn open(
        capacity: u64,
        log: &mut File,
        log_path: &Path,
    ) -> Result<(Journal, Recovered), JournalError> {
        let id = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        Self::open_as(id, capacity, log, log_path)
    }

    /// [`Journal::open`] with the journal named `<log>.journal.<id>`.
    pub(crate) fn open_as(
        id: impl std::fmt::Display,
        capacity: u64,
        log: &mut File,
        log_path: &Path,
    ) -> Result<(Journal, Recovered), JournalError> {
        if capacity < 64 << 10 {
            return Err(JournalError::TooSmall(capacity));
        }
        let capacity = capacity & !(PAGE - 1);
        let recovered = recovery::recover(log, log_path, None)?;
        let path = journal_path(log_path, id);
        let mut file = create_locked(&path).map_err(io_err(&path))?;
        file.set_len(0).map_err(io_err(&path))?;
        allocate(&mut file, HEADER as u64 + capacity).map_err(io_err(&path))?;
        // SAFETY: the file is this process's (named by its pid, created and sized above, and
        // locked); nothing else maps or resizes it while it is open, so the mapping stays
        // valid.
        let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(io_err(&path))?;
        map[..8].copy_from_slice(MAGIC);
        map[CAPACITY_AT..CAPACITY_AT + 8].copy_from_slice(&capacity.to_le_bytes());
        map[WRITTEN_AT..WRITTEN_AT + 8].copy_from_slice(&0u64.to_le_bytes());
        map.flush_range(0, HEADER).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
        Ok((
            Journal {
                map,
                _lock: file,
                path,
                capacity,
                head: 0,
                written: 0,
                released: 0,
            },
            recovered,
        ))
    }

    /// Adoption: what [`Journal::open`] does at start-up for the journals of dead relays, done
    /// again while this relay runs — for a relay that died beside it (two relays on one log:
    /// the old process of an overlapping restart killed during its drain). Appends to `log`
    /// every record those journals hold that the log lacks, fsyncs it, and deletes them. This
    /// process's own journal is locked, so it is never taken. The writer thread calls it once
    /// a second, with the log's length after its own last append (`known_end`, see
    /// [`append_lines`](crate::metering::append::append_lines)).
    pub fn adopt(
        log: &mut File,
        log_path: &Path,
        known_end: Option<u64>,
    ) -> Result<Recovered, JournalError> {
        recovery::recover(log, log_path, known_end)
    }

    /// Deletes this process's journal; for a clean stop, once every record is in the log.
    pub fn remove(self) -> io::Result<()> {
        std::fs::remove_file(&self.path)
    }

    /// Copies `line` (one record's JSON, no newline) into the ring. Returns the position after
    /// it — pass it to [`Journal::set_written`] once the record is in the log — or `None` when
    /// the ring has no room for it (the writer is a whole ring behind).
    pub fn append(&mut self, line: &[u8]) -> Option<u64> {
        let len = u32::try_from(line.len()).ok().filter(|&l| l != WRAP)?;
        let size = align8((ENTRY_HEAD + line.len()) as u64);
        let at = (self.head % self.capacity) as usize;
        let room = self.capacity - at as u64;
        // An entry never wraps: if it does not fit before the end it starts the next lap.
        let skip = if size > room { room } else { 0 };
        if self.head + skip + size - self.written > self.capacity {
            return None;
        }
        let ring = &mut self.map[HEADER..];
        if skip > 0 {
            if skip as usize >= ENTRY_HEAD {
                ring[at..at + 8].copy_from_slice(&self.head.to_le_bytes());
                ring[at + 8..at + 12].copy_from_slice(&WRAP.to_le_bytes());
            }
            self.head += skip;
        }
        let pos = self.head;
        let at = (pos % self.capacity) as usize;
        ring[at + ENTRY_HEAD..at + ENTRY_HEAD + line.len()].copy_from_slice(line);
        ring[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
        ring[at + 12..at + 16].copy_from_slice(&entry_crc(pos, line).to_le_bytes());
        ring[at..at + 8].copy_from_slice(&pos.to_le_bytes());
        self.head = pos + size;
        Some(self.head)
    }

    /// Where the next entry goes (the position after the last one).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Everything before `pos` is in the log: free it. (An aligned 8-byte store, so a
    /// process killed at any instant leaves the old or the new value, never a mix.)
    ///
    /// The whole ring pages before `pos` also leave the process's memory (`MADV_DONTNEED`;
    /// their contents stay in the file's page cache): otherwise every page the ring ever
    /// touched would stay in the relay's resident set — up to the ring's size, ~0.6 KiB per
    /// response until it wraps — though none of it is needed once written.
    pub fn set_written(&mut self, pos: u64) {
        if pos <= self.written || pos > self.head {
            return;
        }
        self.written = pos;
        let field = self.map[WRITTEN_AT..WRITTEN_AT + 8]
            .as_mut_ptr()
            .cast::<u64>();
        // SAFETY: the mapping is page aligned, so the field at offset 16 is 8-byte aligned,
        // and `&mut self` makes this the only access to it in the process.
        unsafe { AtomicU64::from_ptr(field) }.store(pos.to_le(), Ordering::Release);
        let end = pos & !(PAGE - 1);
        let from = self.released.max(end.saturating_sub(self.capacity));
        for (at, len) in ring_slices(self.capacity, from, end) {
            // SAFETY: a range of the ring inside the mapping, nothing borrowed from it (`&mut
            // self`); for a shared file mapping MADV_DONTNEED only drops the page table entries
            // — the data stays in the page cache and comes back on the next access. A failure
            // only leaves the pages resident.
            let _ = unsafe {
                self.map
                    .unchecked_advise_range(UncheckedAdvice::DontNeed, HEADER + at, len)
            };
        }
        self.released = self.released.max(end);
    }
}

mod ahead;
mod recovery;
pub use ahead::{Ahead, AHEAD};
#[cfg(test)]
use recovery::response_id;

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
