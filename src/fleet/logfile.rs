//! Where the usage exporter is in the log: the cursor (file and offset, stored atomically),
//! the file being read and its line count, complete lines and what each is, and the log's
//! rotated copies.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::metering::DurableMark;

/// Where the exporter is: a file (device, inode) and the offset up to which JetStream
/// acknowledged every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// Bytes of that file exported and acknowledged.
    pub offset: u64,
}

impl Cursor {
    /// Parse the cursor file's text (`dev ino offset`).
    pub fn parse(text: &str) -> Option<Cursor> {
        let mut it = text.split_whitespace().map(str::parse::<u64>);
        let c = Cursor {
            dev: it.next()?.ok()?,
            ino: it.next()?.ok()?,
            offset: it.next()?.ok()?,
        };
        it.next().is_none().then_some(c)
    }

    /// The cursor file's text.
    pub fn render(&self) -> String {
        format!("{} {} {}\n", self.dev, self.ino, self.offset)
    }

    /// Write `path` atomically and durably (temp file, fsync, rename, fsync the directory).
    pub fn store(&self, path: &Path) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, self.render())?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    pub(super) fn same_file(&self, m: &DurableMark) -> bool {
        (self.dev, self.ino) == (m.dev, m.ino)
    }
}

/// Complete lines (each with its `\n`) at the front of `buf`: their end offsets.
pub fn line_ends(buf: &[u8]) -> Vec<usize> {
    memchr::memchr_iter(b'\n', buf).map(|i| i + 1).collect()
}

/// The fields of a record line the exporter needs.
#[derive(Debug, Deserialize)]
pub(super) struct Key<'a> {
    #[serde(borrow)]
    pub(super) response_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) tenant: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(super) route: Option<Cow<'a, str>>,
}

/// What a line of the log (without its newline) is, to the exporter.
#[derive(Debug)]
pub(super) enum Line<'a> {
    /// A record: publish it.
    Record(Key<'a>),
    /// Empty: skip it.
    Blank,
    /// The beginning of a record cut short (its JSON ends early): a relay sharing the log was
    /// killed mid-write and the next append began a new line after it (`metering::append`).
    /// Skip it; the dead relay's journal appends the record again.
    Fragment,
    /// Anything else: never a line a relay wrote. Skip it, loudly.
    NotARecord(serde_json::Error),
}

/// What `body` (a line without its newline) is.
pub(super) fn classify(body: &[u8]) -> Line<'_> {
    if body.is_empty() {
        return Line::Blank;
    }
    match serde_json::from_slice::<Key<'_>>(body) {
        Ok(k) => Line::Record(k),
        Err(e) if e.is_eof() => Line::Fragment,
        Err(e) => Line::NotARecord(e),
    }
}

/// The file being exported.
pub(super) struct Tail {
    pub(super) file: File,
    pub(super) cursor: Cursor,
    /// Offset up to which lines were counted (backlog), and how many lines are in
    /// `[cursor.offset, counted_to)`.
    pub(super) counted_to: u64,
    pub(super) pending_lines: u64,
}

impl Tail {
    pub(super) fn open(file: File, offset: u64) -> io::Result<Tail> {
        let m = file.metadata()?;
        Ok(Tail {
            file,
            cursor: Cursor {
                dev: m.dev(),
                ino: m.ino(),
                offset,
            },
            counted_to: offset,
            pending_lines: 0,
        })
    }

    /// Count the lines in `[counted_to, limit)` (backlog metric).
    pub(super) fn count_to(&mut self, limit: u64) {
        let mut buf = vec![0u8; 64 << 10];
        while self.counted_to < limit {
            let n = (limit - self.counted_to).min(buf.len() as u64) as usize;
            match self.file.read_at(&mut buf[..n], self.counted_to) {
                Ok(0) | Err(_) => return,
                Ok(got) => {
                    self.pending_lines += memchr::memchr_iter(b'\n', &buf[..got]).count() as u64;
                    self.counted_to += got as u64;
                }
            }
        }
    }
}

/// The log file and its rotated copies: files next to `log` whose names start with the
/// log's (not the cursor, temp or compressed files, nor the usage journals
/// `<log>.journal.<pid>-<random>`), with their metadata.
fn log_files(log: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let dir = log
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = log.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&name)
                && !crate::metering::journal::is_journal_of(&name, &n)
                && ![".export-cursor", ".tmp", ".gz", ".zst", ".xz", ".bz2"]
                    .iter()
                    .any(|s| n.ends_with(s))
        })
        .filter_map(|e| {
            let p = e.path();
            let m = std::fs::metadata(&p).ok()?;
            m.is_file().then_some((p, m))
        })
        .collect()
}

/// The log file (current or rotated) with this device and inode: where logrotate moved the
/// file the cursor points into.
pub(super) fn find_rotated(log: &Path, dev: u64, ino: u64) -> Option<(PathBuf, File)> {
    log_files(log)
        .into_iter()
        .find(|(_, m)| (m.dev(), m.ino()) == (dev, ino))
        .and_then(|(p, _)| File::open(&p).ok().map(|f| (p, f)))
}

/// The log file written right after `done`: the one modified least long after it (the sink
/// writes one file at a time, so modification times order them).
pub(super) fn next_file(log: &Path, done: &std::fs::Metadata) -> Option<(PathBuf, File)> {
    let after = (done.mtime(), done.mtime_nsec());
    log_files(log)
        .into_iter()
        .filter(|(_, m)| (m.dev(), m.ino()) != (done.dev(), done.ino()))
        .filter(|(_, m)| (m.mtime(), m.mtime_nsec()) >= after)
        .min_by_key(|(_, m)| (m.mtime(), m.mtime_nsec()))
        .and_then(|(p, _)| File::open(&p).ok().map(|f| (p, f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            dev: 2049,
            ino: 1234567,
            offset: 98765,
        };
        assert_eq!(Cursor::parse(&c.render()), Some(c));
        for bad in ["", "1 2", "1 2 x", "1 2 3 4", "-1 2 3"] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("cur");
        c.store(&p).expect("store");
        assert_eq!(
            Cursor::parse(&std::fs::read_to_string(&p).expect("read")),
            Some(c)
        );
        assert!(!dir.path().join("cur.tmp").exists());
    }

    #[test]
    fn rotated_copies_are_log_files_and_cursors_and_journals_are_not() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = dir.path().join("usage.jsonl");
        for name in [
            "usage.jsonl",
            "usage.jsonl.1",
            "usage.jsonl.2.gz",
            "usage.jsonl.export-cursor",
            "usage.jsonl.journal.4242",
            "other.jsonl",
        ] {
            std::fs::write(dir.path().join(name), b"x\n").expect("write");
        }
        let mut found: Vec<String> = log_files(&log)
            .into_iter()
            .filter_map(|(p, _)| Some(p.file_name()?.to_str()?.to_owned()))
            .collect();
        found.sort();
        assert_eq!(found, ["usage.jsonl", "usage.jsonl.1"]);
    }

    #[test]
    fn lines_are_records_blanks_fragments_or_not_records() {
        let rec = br#"{"response_id":"resp_1","tenant":"acme","route":"xai","model":"m"}"#;
        match classify(rec) {
            Line::Record(k) => assert_eq!(
                (&*k.response_id, &*k.tenant, k.route.as_deref()),
                ("resp_1", "acme", Some("xai"))
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify(b""), Line::Blank));
        // Every cut of a record inside its JSON is a fragment.
        for cut in 1..rec.len() {
            assert!(
                matches!(classify(&rec[..cut]), Line::Fragment),
                "cut at {cut}: {:?}",
                classify(&rec[..cut])
            );
        }
        for bad in [&b"not json"[..], b"{\"tenant\":\"a\"}", b"{\"a\":1}}"] {
            assert!(matches!(classify(bad), Line::NotARecord(_)), "{bad:?}");
        }
    }

    #[test]
    fn only_complete_lines_are_taken() {
        assert_eq!(line_ends(b"{\"a\":1}\n{\"b\":2}\n{\"c\""), vec![8, 16]);
        assert!(line_ends(b"no newline").is_empty());
    }
}
