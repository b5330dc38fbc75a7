//! Appending whole lines to a usage log that other relays may append to too.
//!
//! Two relays share a log during a restart that overlaps the old process's drain. Each
//! appends with `O_APPEND`, so their writes never interleave — but the kernel stops a
//! buffered `write(2)` between pages when `SIGKILL` arrives (`generic_perform_write` in
//! mm/filemap.c checks `fatal_signal_pending` per page), so a relay killed during a group
//! commit larger than a page leaves a torn last line. The survivor's next write would start
//! on that line and merge its first record with the fragment into one unparsable line.
//!
//! So every append to a regular log file, by the writer thread, by adoption of a dead
//! relay's journal and by start-up's journal recovery, goes through [`append_lines`]: under
//! an exclusive `flock` on the log (held for that one append), it starts a new line first
//! when the log does not end in one. The lock makes the check exact: a relay holding it is
//! never mid-write when another looks, so a log not ending in a newline was left so by a
//! writer that died (or failed) — never by one that is about to finish its line. Start-up's
//! torn-tail repair takes the same lock before it cuts a tail (`recover`), so it never cuts
//! the line of a live relay that is mid-write.
//!
//! Costs, per group commit (once per `--usage-fsync-ms` interval, never per frame): two
//! `flock` calls, two `fstat`s, one `lseek`; a one-byte `pread` only when the log's length is
//! not the one this process left it at. About 3 µs over a plain `write_all` of a 630-byte
//! line on this VM's ext4 (`cargo bench --bench append`, two runs: 4.09 and 4.10 µs against
//! 1.09 and 1.20), next to the commit's ~0.2 ms `fdatasync`. A peer stopped while it holds
//! the lock (`SIGSTOP` during its write) stalls this writer for as long; the sink's
//! backpressure then refuses new responses, as it does for a slow disk.
//!
//! Readers tolerate what this leaves: the fragment is a line of its own that is a prefix of a
//! record ([`crate::metering::read_log`] lists it in `fragments`; the exporter skips it),
//! and the record it was part of is appended again, whole, from the dead relay's journal.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::unix::fs::FileExt;

/// What [`append_lines`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The log's length right after this append (everything before it is in the file; an
    /// `fdatasync` now covers it). `None` for a log that is not a regular file.
    pub end: Option<u64>,
    /// Whether a newline was written first, ending another writer's torn line.
    pub ended_torn_line: bool,
}

/// Unlocks the log when the append is done, whichever way it went.
struct Held<'a>(&'a File);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Closing the descriptor would release it too; a failure here leaves it held until
        // the next append's `lock` (the same descriptor re-locks without waiting).
        let _ = self.0.unlock();
    }
}

/// Takes the exclusive `flock` on a log file until the returned guard drops. Also used by
/// start-up's torn-tail repair.
pub(crate) fn lock(file: &File) -> io::Result<impl Drop + '_> {
    file.lock()?;
    Ok(Held(file))
}

/// Appends `lines` (whole lines, each ending in `\n`) to `file` (opened `O_APPEND`, and for
/// reading: the check reads the log's last byte).
///
/// For a regular file: under the log's `flock`, if the log is not `known_end` bytes long (the
/// length this process left it at, so its last byte is this process's newline) and its last
/// byte is not `\n`, writes `\n` first. Returns the length after the append. Other files
/// (a pipe, a device) are written as they are.
pub fn append_lines(file: &File, lines: &[u8], known_end: Option<u64>) -> io::Result<Appended> {
    let mut f = file;
    if !file.metadata()?.is_file() {
        f.write_all(lines)?;
        return Ok(Appended {
            end: None,
            ended_torn_line: false,
        });
    }
    let _held = lock(file)?;
    let len = file.metadata()?.len();
    let torn = len > 0 && Some(len) != known_end && {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, len - 1)?;
        last[0] != b'\n'
    };
    if torn {
        tracing::warn!(
            offset = len,
            "usage log ends in a torn line (a relay sharing it was killed mid-write); starting a new line"
        );
        f.write_all(b"\n")?;
    }
    f.write_all(lines)?;
    // With O_APPEND the offset is the end of this write, whoever wrote before it.
    let end = f.stream_position()?;
    Ok(Appended {
        end: Some(end),
        ended_torn_line: torn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn log_with(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf, File) {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("usage.jsonl");
        std::fs::write(&path, bytes).expect("write");
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .expect("open");
        (dir, path, f)
    }

    #[test]
    fn a_torn_line_is_ended_before_the_lines_and_the_end_counts_both() {
        let (_d, path, f) = log_with(b"{\"a\":1}\n{\"b\":");
        let a = append_lines(&f, b"{\"c\":3}\n", None).expect("append");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"{\"a\":1}\n{\"b\":\n{\"c\":3}\n"
        );
        assert_eq!(
            a,
            Appended {
                end: Some(22),
                ended_torn_line: true
            }
        );
    }

    #[test]
    fn a_log_ending_in_a_newline_or_empty_gets_no_extra_line() {
        for start in [&b""[..], b"{\"a\":1}\n"] {
            let (_d, path, f) = log_with(start);
            let a = append_lines(&f, b"{\"c\":3}\n", None).expect("append");
            let mut want = start.to_vec();
            want.extend_from_slice(b"{\"c\":3}\n");
            assert_eq!(std::fs::read(&path).expect("read"), want);
            assert_eq!(a.end, Some(want.len() as u64));
            assert!(!a.ended_torn_line);
        }
    }

    #[test]
    fn the_end_this_process_left_is_trusted_and_another_length_is_checked() {
        let (_d, path, f) = log_with(b"");
        let first = append_lines(&f, b"{\"a\":1}\n", None).expect("append");
        // Another relay appends and is killed mid-record.
        let mut other = OpenOptions::new().append(true).open(&path).expect("open");
        other.write_all(b"{\"b\":2}\n{\"x\"").expect("write");
        let second = append_lines(&f, b"{\"c\":3}\n", first.end).expect("append");
        assert!(second.ended_torn_line);
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"{\"a\":1}\n{\"b\":2}\n{\"x\"\n{\"c\":3}\n"
        );
        // Nobody else wrote: the last byte is not read (and is this process's newline).
        let third = append_lines(&f, b"{\"d\":4}\n", second.end).expect("append");
        assert!(!third.ended_torn_line);
        assert_eq!(
            third.end,
            Some(std::fs::metadata(&path).expect("meta").len())
        );
    }

    #[test]
    fn an_append_waits_for_the_lock_a_writer_holds() {
        let (_d, path, f) = log_with(b"{\"a\":1}\n");
        let other = OpenOptions::new().append(true).open(&path).expect("open");
        let held = lock(&other).expect("lock");
        // The holder is mid-record: an append that did not wait would end its line.
        (&other).write_all(b"{\"b\":").expect("write");
        let t = std::thread::spawn(move || append_lines(&f, b"{\"c\":3}\n", None));
        std::thread::sleep(std::time::Duration::from_millis(100));
        (&other).write_all(b"2}\n").expect("write");
        drop(held);
        let a = t.join().expect("thread").expect("append");
        assert!(!a.ended_torn_line, "the holder finished its line first");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"
        );
    }

    #[test]
    fn a_pipe_is_written_as_it_is() {
        let (r, w) = std::io::pipe().expect("pipe");
        let w = File::from(std::os::fd::OwnedFd::from(w));
        let a = append_lines(&w, b"x\n", Some(7)).expect("append");
        assert_eq!(a.end, None);
        drop(w);
        let mut got = String::new();
        std::io::Read::read_to_string(&mut { r }, &mut got).expect("read");
        assert_eq!(got, "x\n");
    }
}
