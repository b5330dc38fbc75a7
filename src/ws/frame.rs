//! TODO(ws helper)
