//! The journals dead relays left, appended to the log: at start-up and, while a relay runs,
//! once a second by its writer (see the parent module's "Start-up" and "Adoption").
//!
//! **Memory.** A dead journal is mapped read-only, not read into the heap, and the log's last
//! `capacity` bytes are streamed through a 64 KiB buffer looking only for the ids the dead
//! journals hold, on lines no longer than their longest entry. What the recovery allocates
//! is those ids and the lines it appends — nothing in proportion to the ring or the log
//! (`tests/journal_memory.rs` fails above 1 MiB). It used to read the whole journal and the
//! log's last `capacity` bytes into the heap, on a relay's writer thread when it adopts a
//! journal while it serves: `tests/journal_memory.rs` (a dead 16 MiB journal with 200
//! records, 80 of them not in a 20 MiB log) measured a heap peak of 51.8 MB that way and
//! 90 KB this way.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::metering::append::append_lines;

use super::{
    io_err, read_u64, scan, try_lock, JournalError, Recovered, CAPACITY_AT, HEADER, MAGIC, PAGE,
    WRITTEN_AT,
};

/// Bytes of the log read at a time while looking for ids already in it.
const TAIL_CHUNK: usize = 64 << 10;

/// A dead relay's journal, locked by this process and mapped.
struct Dead {
    path: PathBuf,
    /// Held for its `flock` until the journal is deleted.
    _lock: File,
    /// `None` for a file too short to be a journal (it holds nothing).
    map: Option<Mmap>,
}

impl Dead {
    fn entries(&self) -> Vec<&[u8]> {
        self.map.as_deref().map_or_else(Vec::new, entries_of)
    }
}

/// The start-up half of [`Journal::open`], and [`Journal::adopt`]: every dead process's
/// unwritten records into the log, once, then its journal deleted.
///
/// [`Journal::open`]: super::Journal::open
/// [`Journal::adopt`]: super::Journal::adopt
pub(super) fn recover(
    log: &mut File,
    log_path: &Path,
    mut known_end: Option<u64>,
) -> Result<Recovered, JournalError> {
    let dead = take_dead(log_path)?;
    if dead.is_empty() {
        return Ok(Recovered::default());
    }
    // The ids the journals hold, and the widest window of the log their records can be in:
    // entries past `written` the writer may still have appended are in the log's last
    // `capacity` bytes at most (their lines are no longer than their entries).
    let mut wanted = HashSet::new();
    let (mut window, mut longest) = (0, 0);
    for d in &dead {
        let entries = d.entries();
        if entries.is_empty() {
            continue;
        }
        if let Some(map) = &d.map {
            window = window.max(read_u64(map, CAPACITY_AT) + PAGE);
        }
        longest = entries.iter().map(|l| l.len()).fold(longest, usize::max);
        wanted.extend(entries.iter().filter_map(|line| response_id(line)));
    }
    let mut seen = if wanted.is_empty() {
        HashSet::new()
    } else {
        ids_in_tail(log_path, window, longest, &wanted).map_err(io_err(log_path))?
    };
    drop(wanted);
    let mut found = Recovered::default();
    for d in dead {
        let entries = d.entries();
        let mut out = Vec::new();
        let mut appended = 0;
        for line in &entries {
            let Some(id) = response_id(line) else {
                // An intact entry is a line `submit` serialized; say so if one is not.
                tracing::warn!(
                    journal = %d.path.display(),
                    "usage journal entry with a valid checksum is not a usage record; skipped"
                );
                continue;
            };
            // In the log already, or appended from an earlier journal just now.
            if !seen.insert(id) {
                continue;
            }
            out.extend_from_slice(line);
            out.push(b'\n');
            appended += 1;
        }
        if !out.is_empty() {
            // After a torn line the dead relay may have left: on a line of its own.
            let a = append_lines(log, &out, known_end).map_err(io_err(log_path))?;
            log.sync_data().map_err(io_err(log_path))?;
            found.bytes += out.len() as u64 + u64::from(a.ended_torn_line);
            if a.end.is_some() {
                known_end = a.end;
                found.end = a.end;
            }
        }
        found.found += entries.len() as u64;
        found.appended += appended;
        // Everything it held is in the log and synced: the journal goes.
        match std::fs::remove_file(&d.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&d.path)(e)),
            _ => {}
        }
    }
    Ok(found)
}

/// Every journal of the log that no live process holds, locked and mapped.
fn take_dead(log_path: &Path) -> Result<Vec<Dead>, JournalError> {
    let mut out = Vec::new();
    for path in journals_of(log_path).map_err(io_err(log_path))? {
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path)(e)),
        };
        if !try_lock(&file).map_err(io_err(&path))? {
            continue; // a live relay's journal
        }
        let meta = file.metadata().map_err(io_err(&path))?;
        {
            use std::os::unix::fs::MetadataExt;
            // Another relay recovered and deleted it between our open and our lock: its
            // records are in the log already.
            if meta.nlink() == 0 {
                continue;
            }
        }
        let map = if meta.len() < HEADER as u64 {
            None
        } else {
            // SAFETY: a journal is written only by the relay that holds its lock; its relay is
            // dead and this process holds the lock now, and no relay truncates a journal it
            // does not hold — so the file keeps its length while it is mapped. (A process
            // that is not a relay truncating it would fault this thread, as it would the
            // live relay's own mapping.)
            Some(unsafe { Mmap::map(&file) }.map_err(io_err(&path))?)
        };
        out.push(Dead {
            path,
            _lock: file,
            map,
        });
    }
    Ok(out)
}

/// The journals of `log` in its directory (`<log>.journal.*`), whoever left them.
fn journals_of(log: &Path) -> io::Result<Vec<PathBuf>> {
    let Some(name) = log.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let dir = match log.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| super::is_journal_of(name, n))
        {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The current entries of a journal file's bytes past its `written` mark (none when it is not
/// a journal or was never initialised).
fn entries_of(bytes: &[u8]) -> Vec<&[u8]> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Vec::new();
    }
    let capacity = read_u64(bytes, CAPACITY_AT);
    if capacity == 0 || bytes.len() as u64 != HEADER as u64 + capacity {
        return Vec::new();
    }
    scan(&bytes[HEADER..], capacity, read_u64(bytes, WRITTEN_AT))
}

/// Which of `wanted` are the `response_id` of a complete line in the last `window` bytes of
/// the log, read [`TAIL_CHUNK`] bytes at a time. A line longer than `longest` (the longest
/// journal entry) cannot be one of theirs and is skipped without being held.
fn ids_in_tail(
    log_path: &Path,
    window: u64,
    longest: usize,
    wanted: &HashSet<String>,
) -> io::Result<HashSet<String>> {
    let mut log = File::open(log_path)?;
    let len = log.metadata()?.len();
    let start = len.saturating_sub(window);
    log.seek(SeekFrom::Start(start))?;
    let mut tail = BufReader::with_capacity(TAIL_CHUNK, log.take(len - start));
    let mut present = HashSet::new();
    // A window that starts mid-line skips that first partial line.
    let mut first = start > 0;
    complete_lines(&mut tail, longest, |line| {
        if std::mem::take(&mut first) {
            return;
        }
        if let Some(id) = response_id(line).filter(|id| wanted.contains(id)) {
            present.insert(id);
        }
    })?;
    Ok(present)
}

/// Calls `f` with each newline-terminated line of `r` (without its newline), or with an empty
/// slice for one longer than `max` bytes, whose bytes are skipped, not gathered. An
/// unterminated last line is not passed.
fn complete_lines(r: &mut impl BufRead, max: usize, mut f: impl FnMut(&[u8])) -> io::Result<()> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        let (part, ends) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        if !too_long && line.len() + part.len() > max {
            too_long = true;
            line = Vec::new();
        }
        if !too_long {
            line.extend_from_slice(part);
        }
        let used = part.len() + usize::from(ends);
        r.consume(used);
        if ends {
            f(if too_long { &[] } else { &line });
            line.clear();
            too_long = false;
        }
    }
}

pub(super) fn response_id(line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        response_id: String,
    }
    serde_json::from_slice::<Id>(line)
        .ok()
        .map(|id| id.response_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], chunk: usize, max: usize) -> Vec<Vec<u8>> {
        let mut r = BufReader::with_capacity(chunk, input);
        let mut out = Vec::new();
        complete_lines(&mut r, max, |l| out.push(l.to_vec())).expect("in memory");
        out
    }

    #[test]
    fn lines_are_whole_at_any_read_size_long_ones_empty_and_an_unterminated_one_dropped() {
        let input = b"ab\n\nabcdefgh\nxyz\nlast";
        for chunk in 1..=input.len() + 1 {
            assert_eq!(
                lines(input, chunk, 4),
                [&b"ab"[..], b"", b"", b"xyz"],
                "read {chunk} bytes at a time"
            );
        }
        // A line of exactly `max` bytes is passed.
        assert_eq!(lines(b"abcd\n", 2, 4), [b"abcd"]);
    }
}
