//! What a test needs from the machine, and the one decision about a test
//! that cannot have it: a loud SKIP for a developer's `cargo test`, a
//! failure under strict mode (`CAGEPIPE_STRICT=1`, set by `testbed/test`
//! and so by CI), where a broken environment must never look green.

use std::io::Write;
use std::path::Path;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::exim::EXIM;

/// Something a test cannot run without.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// Real namespaces, cgroups, mounts and test accounts.
    Root,
    /// Debian's exim4 (`exim4-daemon-light`).
    Exim,
    /// A program on PATH (or an absolute path).
    Tool(&'static str),
}

impl Need {
    /// Why it is missing, or `None` when it is there.
    fn missing(self) -> Option<String> {
        match self {
            Need::Root if nix::unistd::geteuid().is_root() => None,
            Need::Root => Some(
                "needs root (real namespaces, cgroups, mounts and test accounts); run `testbed/test` as root".into(),
            ),
            Need::Exim if Path::new(EXIM).exists() => None,
            Need::Exim => Some(format!("{EXIM} is not installed (apt-get install exim4-daemon-light)")),
            Need::Tool(tool) if on_path(tool) => None,
            Need::Tool(tool) => Some(format!("needs `{tool}`, which is not on PATH")),
        }
    }
}

fn on_path(tool: &str) -> bool {
    if tool.contains('/') {
        return Path::new(tool).exists();
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())
}

/// A line for the person running the tests, straight to fd 2 (the harness
/// captures `eprintln!` of passing tests).
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Under `testbed/test`, add this process's pid to the file
/// `CAGEPIPE_TEST_PIDS` names, once: whatever the run finds left behind
/// that names this pid (an account, a container, a scratch directory) is
/// the run's failure.
fn register_with_the_run() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(path) = std::env::var_os("CAGEPIPE_TEST_PIDS") else { return };
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("CAGEPIPE_TEST_PIDS {}: {e}", Path::new(&path).display()));
        writeln!(file, "{}", std::process::id()).expect("write CAGEPIPE_TEST_PIDS");
    });
}

/// Strict mode: `CAGEPIPE_STRICT=1`.
pub fn strict() -> bool {
    std::env::var_os("CAGEPIPE_STRICT").is_some_and(|v| v == "1")
}

/// The running test's name (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current().name().unwrap_or("this test").to_owned()
}

/// The one place that decides what happens when `what` cannot be done:
/// under strict mode the test fails with `why`; otherwise a SKIP line goes
/// straight to fd 2 (the harness captures `eprintln!` of passing tests)
/// and the caller leaves that part out.
pub fn skip_or_fail(what: &str, why: &str) {
    if strict() {
        panic!("{what}: {why} (CAGEPIPE_STRICT=1: a test that cannot run fails)");
    }
    let _ = writeln!(std::io::stderr(), "SKIP {what}: {why}");
}

/// Every test holds one of these while it runs. Most share the suite; a
/// test that counts this process's children and descriptors (load) runs
/// alone.
pub struct Running {
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _alone: Option<RwLockWriteGuard<'static, ()>>,
}

static SUITE: RwLock<()> = RwLock::new(());

/// `Some` when the machine has everything in `needs`; `None` after a loud
/// SKIP (see [`skip_or_fail`]).
pub fn need(needs: &[Need]) -> Option<Running> {
    check(needs)?;
    Some(Running { _shared: Some(SUITE.read().unwrap_or_else(|e| e.into_inner())), _alone: None })
}

/// For a test that needs nothing of the machine: it still holds its share
/// of the suite (see [`Running`]).
pub fn need_nothing() -> Running {
    need(&[]).expect("nothing is needed")
}

/// [`need`], and no other test of this process runs meanwhile.
pub fn need_alone(needs: &[Need]) -> Option<Running> {
    check(needs)?;
    Some(Running { _shared: None, _alone: Some(SUITE.write().unwrap_or_else(|e| e.into_inner())) })
}

fn check(needs: &[Need]) -> Option<()> {
    register_with_the_run();
    let missing: Vec<String> = needs.iter().filter_map(|n| n.missing()).collect();
    if missing.is_empty() {
        return Some(());
    }
    skip_or_fail(&test_name(), &missing.join("; "));
    None
}
