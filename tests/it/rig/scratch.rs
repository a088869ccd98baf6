//! This test process's scratch directory, `/run/cagepipe-it/PID`: the
//! installed binary, configurations, pidfiles, Exim spools, sockets. It is
//! removed when the process exits, and the first use removes those of
//! earlier runs that died without getting that far.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub const SCRATCH_ROOT: &str = "/run/cagepipe-it";

pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        remove_stale();
        let dir = PathBuf::from(format!("{SCRATCH_ROOT}/{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for d in [Path::new(SCRATCH_ROOT), dir.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // SAFETY: atexit only stores the pointer of a function that lives
        // as long as the program.
        let registered = unsafe { libc::atexit(remove_at_exit) };
        assert_eq!(registered, 0, "atexit");
        dir
    })
}

/// A fresh name in the scratch directory: `stem-N`.
pub fn fresh(stem: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    scratch().join(format!("{stem}-{}", N.fetch_add(1, Ordering::SeqCst)))
}

/// A fresh root-owned 0755 directory in the scratch directory.
pub fn fresh_dir(stem: &str) -> PathBuf {
    let dir = fresh(stem);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs when the test binary exits (libtest returns from main, or calls
/// exit with the failure status).
extern "C" fn remove_at_exit() {
    let dir = PathBuf::from(format!("{SCRATCH_ROOT}/{}", std::process::id()));
    if let Err(err) = std::fs::remove_dir_all(&dir) {
        eprintln!("WARNING: cannot remove the scratch directory {}: {err}", dir.display());
    }
    // The last run out turns off the light (fails while others use it).
    let _ = std::fs::remove_dir(SCRATCH_ROOT);
}

/// Scratch directories of test processes that are gone.
fn remove_stale() {
    for entry in std::fs::read_dir(SCRATCH_ROOT).into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
