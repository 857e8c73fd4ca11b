//! End-to-end tests of naast against real processes, and the helper programs they run.
//!
//! # Layout
//! - `src/bin/eventlog-crash-writer.rs`: a child process that appends to an event log without
//!   pause and reports each acknowledged append on stdout, to be killed at random moments;
//! - `tests/eventlog_crash.rs`: kills that child again and again and checks what survived;
//! - `tests/eventlog_lock.rs`: a data directory held by one process is refused to another;
//! - `tests/bench_cli.rs`: the `naast bench eventlog` command prints its figures.
//!
//! The helpers below find binaries of this workspace that cargo built beside the test.

use std::path::PathBuf;

/// Path of a binary of another package of this workspace, built into the same target folder as
/// the running test (the test command builds all binaries first).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --bins` (ops/test.sh does)",
        path.display()
    );
    path
}

/// A small deterministic generator, so a failing run can be repeated from its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % bound.max(1)
    }
}
