//! How far the usage log is durable, as the exporter reads it.

use std::fs::File;
use std::io;

/// How far the log file is durable: which file (device and inode, so a rotated file is
/// told from its successor) and the byte offset every fsync so far covers. The usage
/// exporter reads the log up to here and no further.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurableMark {
    /// `st_dev` of the file being appended to.
    pub dev: u64,
    /// `st_ino` of that file.
    pub ino: u64,
    /// Bytes of it that are durable.
    pub offset: u64,
}

impl DurableMark {
    /// The mark of `file` as opened: everything already in it is durable (a previous run
    /// fsynced it; a torn tail was moved aside before opening).
    pub fn of(file: &File) -> io::Result<DurableMark> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata()?;
        Ok(DurableMark {
            dev: m.dev(),
            ino: m.ino(),
            offset: m.len(),
        })
    }

    /// Whether this mark is about the same file as `other`.
    pub fn same_file(&self, other: &DurableMark) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
}
