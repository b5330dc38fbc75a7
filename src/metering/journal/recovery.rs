//! The journals dead relays left, appended to the log: at start-up and, while a relay runs,
//! once a second by its writer (see the parent module's "Start-up" and "Adoption").

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{
    io_err, read_u64, scan, try_lock, JournalError, Recovered, CAPACITY_AT, HEADER, MAGIC, PAGE,
    WRITTEN_AT,
};

/// The start-up half of [`Journal::open`], and [`Journal::adopt`]: every dead process's
/// unwritten records into the log, once, then its journal deleted.
///
/// [`Journal::open`]: super::Journal::open
/// [`Journal::adopt`]: super::Journal::adopt
pub(super) fn recover(log: &mut File, log_path: &Path) -> Result<Recovered, JournalError> {
    let dir_err = io_err(log_path);
    let mut found = Recovered::default();
    let mut present: Option<HashSet<String>> = None;
    let mut seen = HashSet::new();
    for path in journals_of(log_path).map_err(dir_err)? {
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path)(e)),
        };
        if !try_lock(&file).map_err(io_err(&path))? {
            continue; // a live relay's journal
        }
        {
            use std::os::unix::fs::MetadataExt;
            // Another relay recovered and deleted it between our open and our lock: its
            // records are in the log already.
            if file.metadata().map_err(io_err(&path))?.nlink() == 0 {
                continue;
            }
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&path))?;
        let entries = entries_of(&bytes);
        if !entries.is_empty() {
            // Entries past `written` the writer may still have appended: they are in the
            // log's last `capacity` bytes at most (their lines are no longer than their
            // entries).
            let capacity = read_u64(&bytes, CAPACITY_AT);
            let tail = match present.take() {
                Some(ids) => ids,
                None => ids_in_tail(log_path, capacity + PAGE).map_err(io_err(log_path))?,
            };
            let mut out = Vec::new();
            let mut appended = 0;
            for line in &entries {
                let Some(id) = response_id(line) else {
                    // An intact entry is a line `submit` serialized; say so if one is not.
                    tracing::warn!(
                        journal = %path.display(),
                        "usage journal entry with a valid checksum is not a usage record; skipped"
                    );
                    continue;
                };
                if tail.contains(&id) || !seen.insert(id) {
                    continue;
                }
                out.extend_from_slice(line);
                out.push(b'\n');
                appended += 1;
            }
            present = Some(tail);
            if !out.is_empty() {
                log.write_all(&out).map_err(io_err(log_path))?;
                log.sync_data().map_err(io_err(log_path))?;
            }
            found.found += entries.len() as u64;
            found.appended += appended;
            found.bytes += out.len() as u64;
        }
        // Everything it held is in the log and synced: the journal goes.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&path)(e)),
            _ => {}
        }
    }
    Ok(found)
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

/// The `response_id`s of the complete lines in the last `window` bytes of the log.
fn ids_in_tail(log_path: &Path, window: u64) -> io::Result<HashSet<String>> {
    let mut log = File::open(log_path)?;
    let len = log.metadata()?.len();
    let start = len.saturating_sub(window);
    log.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    log.take(len - start).read_to_end(&mut tail)?;
    // A window that starts mid-line skips that first partial line.
    let skip = if start == 0 {
        0
    } else {
        memchr::memchr(b'\n', &tail).map_or(tail.len(), |i| i + 1)
    };
    Ok(tail[skip..]
        .split(|&b| b == b'\n')
        .filter_map(response_id)
        .collect())
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
