//! RFC 6455 building blocks, pure (no sockets): frame headers, masking, close frames, UTF-8.
pub mod close;
pub mod frame;
pub mod mask;
pub mod utf8;
pub mod utf8_simd;
