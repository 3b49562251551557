//! Property tests of the TLS plumbing in `Stream` (written separately).
