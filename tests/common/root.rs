//! Where the checkout under test is. Read at run time: cargo sets `CARGO_MANIFEST_DIR`
//! for every test it runs, while the compile-time value is whatever checkout first
//! built a test binary that a shared `CARGO_TARGET_DIR` then reuses (cargo does not
//! rebuild when only the checkout's path changes), so a clean clone would otherwise
//! read another clone's files.

use std::path::PathBuf;

pub fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
