//! The flags whose values are a fixed set of choices (clap `ValueEnum`s): what the operator
//! may pick for the driver, the heap's huge pages and the log format.

use clap::ValueEnum;

/// Which io driver each worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Driver {
    /// io_uring, falling back to epoll when io_uring cannot start.
    Auto,
    /// io_uring only; fail to start without it.
    Uring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable key=value lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether the heap may use transparent huge pages (`--huge-pages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HugePages {
    /// As the kernel's THP mode and the allocator choose (mimalloc asks for them).
    Allow,
    /// Off for the whole process (`prctl(PR_SET_THP_DISABLE)`).
    Off,
}
