//! Start-up repair of a usage log whose last line was torn (power loss mid-write): the
//! fragment after the last newline is copied to a side file and cut from the log, so that
//! new records are not appended onto it (which would make a corrupt line mid-file).
//!
//! It holds the log's `flock` while it looks and cuts (the lock every append takes, see
//! [`append`](super::append)): a relay sharing the log that is in the middle of a write
//! holds it, so a start never takes a live relay's unfinished line for a torn one.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Longest torn fragment moved aside; a longer one means the file is probably not a usage
/// log, and start-up refuses it.
pub const MAX_TORN_TAIL: u64 = 1024 * 1024;

/// Why the torn tail could not be repaired.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// Reading the log, writing the side file, or truncating failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// More than [`MAX_TORN_TAIL`] bytes follow the last newline.
    #[error("{len} bytes after the last newline (more than {MAX_TORN_TAIL}); not a usage log?")]
    TooLong {
        /// Bytes after the last newline.
        len: u64,
    },
}

/// If `path` is a regular, non-empty file not ending in `\n`, copies the bytes after its
/// last newline to `<path>.torn-<offset>` (fsynced), truncates the log to `offset`, fsyncs
/// it, and returns `Some(offset)`. Missing files, special files (`/dev/full`) and files
/// ending in a newline are left alone (`None`).
pub fn recover_torn_tail(path: &Path) -> Result<Option<u64>, RecoverError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !meta.is_file() || meta.len() == 0 {
        return Ok(None);
    }
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let held = super::append::lock(&file)?;
    let len = file.metadata()?.len();
    let offset = match last_line_start(&file, len)? {
        None => return Ok(None),
        Some(o) => o,
    };
    let torn = len - offset;
    if torn > MAX_TORN_TAIL {
        return Err(RecoverError::TooLong { len: torn });
    }
    let mut fragment = Vec::with_capacity(torn as usize);
    (&file).seek(SeekFrom::Start(offset))?;
    Read::take(&file, torn).read_to_end(&mut fragment)?;
    let side = side_path(path, offset);
    let mut s = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&side)?;
    s.write_all(&fragment)?;
    s.sync_all()?;
    file.set_len(offset)?;
    file.sync_all()?;
    drop(held);
    tracing::warn!(
        path = %path.display(),
        offset,
        bytes = torn,
        moved_to = %side.display(),
        "usage log ended with a torn line; moved it aside"
    );
    Ok(Some(offset))
}

/// `Some(start of the unterminated last line)`, or `None` when the file ends in `\n`.
fn last_line_start(mut file: &File, len: u64) -> io::Result<Option<u64>> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut first = true;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let n = (end - start) as usize;
        let chunk = buf.get_mut(..n).unwrap_or_default();
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if first {
            if chunk.last() == Some(&b'\n') {
                return Ok(None);
            }
            first = false;
        }
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return Ok(Some(start + i as u64 + 1));
        }
        if len - start > MAX_TORN_TAIL {
            return Ok(Some(start));
        }
        end = start;
    }
    Ok(Some(0))
}

/// `<path>.torn-<offset>`, or with a numeric suffix if that exists already.
fn side_path(path: &Path, offset: u64) -> PathBuf {
    let base = format!("{}.torn-{offset}", path.display());
    let mut p = PathBuf::from(&base);
    let mut i = 1u32;
    while p.exists() && i < 1000 {
        p = PathBuf::from(format!("{base}.{i}"));
        i += 1;
    }
    p
}
