//! Reading a usage log back (audits, tests, the `kill -9` recovery check).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::record::UsageRecord;

/// A usage log, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRead {
    /// Every complete record, in file order.
    pub records: Vec<UsageRecord>,
    /// Byte offset of a torn last line (no trailing newline, or unparsable), which is not in
    /// `records`; `None` when the log ends cleanly.
    pub torn_tail: Option<usize>,
    /// Byte offsets of lines before the last that are the start of a record cut short: a
    /// relay sharing the log was killed in the middle of a write, and the next append began
    /// a new line after it (`metering::append`). The record is appended again, whole, from
    /// that relay's journal. Blank lines are skipped and not listed.
    pub fragments: Vec<usize>,
}

/// Why a usage log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading the file failed.
    #[error("cannot read usage log {path}: {source}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A line that is not the last one is not a valid record.
    #[error("usage log {path} line {line} (byte {offset}) is not a valid record: {source}")]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Byte offset of the line's start.
        offset: usize,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Reads every record of the JSON Lines log at `path`. A torn last line is tolerated and
/// reported in [`LogRead::torn_tail`]; a line before it that is a record's beginning cut
/// short (the JSON ends early) in [`LogRead::fragments`]; any other unparsable line before
/// the last is a [`ReadError::Corrupt`] naming its line number. Blank lines are skipped.
pub fn read_log(path: impl AsRef<Path>) -> Result<LogRead, ReadError> {
    let path = path.as_ref();
    let io_err = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut r = BufReader::new(File::open(path).map_err(io_err)?);
    let mut records = Vec::new();
    let mut fragments = Vec::new();
    let mut line = Vec::new();
    let mut offset = 0usize;
    let mut lineno = 0usize;
    // A parse failure is only an error if another line follows it.
    let mut pending: Option<(usize, usize, serde_json::Error)> = None;
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).map_err(io_err)?;
        if n == 0 {
            break;
        }
        if let Some((line, offset, source)) = pending.take() {
            if source.is_eof() {
                fragments.push(offset);
            } else {
                return Err(ReadError::Corrupt {
                    path: path.to_owned(),
                    line,
                    offset,
                    source,
                });
            }
        }
        lineno += 1;
        let Some(body) = line.strip_suffix(b"\n") else {
            // No trailing newline: this is the last line, and it is torn.
            return Ok(LogRead {
                records,
                torn_tail: Some(offset),
                fragments,
            });
        };
        if body.is_empty() {
            offset += n;
            continue;
        }
        match serde_json::from_slice::<UsageRecord>(body) {
            Ok(rec) => records.push(rec),
            Err(e) => pending = Some((lineno, offset, e)),
        }
        offset += n;
    }
    let torn_tail = pending.map(|(_, at, _)| at);
    Ok(LogRead {
        records,
        torn_tail,
        fragments,
    })
}
