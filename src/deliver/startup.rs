//! What cagepipe establishes before it trusts anything: standard
//! descriptors, no inherited descriptors, and a self-check of how it was
//! installed and started.
#![forbid(unsafe_code)]

use std::io;

use crate::deliver::privileges::{self, REQUIRED};
use crate::error::{Error, Result};
use crate::parse::procfs;
use crate::platform::{process, sys};

/// Make sure 0, 1 and 2 are open (on /dev/null if the caller closed them),
/// so that no file cagepipe opens can become the command's stdin or stdout.
pub(crate) fn ensure_std_fds() -> io::Result<()> {
    for fd in 0..=2 {
        if !sys::fd_is_open(fd) {
            sys::open_devnull_at(fd)?;
        }
    }
    Ok(())
}

/// Close every descriptor above 2 that the caller left open (a directory
/// fd to the host's `/`, a socket...): none of them may reach the container
/// (runc CVE-2024-21626). Listed from the host's /proc, checked to be procfs.
pub(crate) fn close_inherited_fds() -> Result<()> {
    check_proc_is_procfs()?;
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").map_err(|e| Error::io("listing /proc/self/fd", e))? {
        let entry = entry.map_err(|e| Error::io("listing /proc/self/fd", e))?;
        if let Some(n) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
            if n > 2 {
                numbers.push(n);
            }
        }
    }
    // The directory's own descriptor is in the list; it is closed by now.
    for n in numbers {
        sys::close_fd_number(n);
    }
    Ok(())
}

fn check_proc_is_procfs() -> Result<()> {
    if !process::proc_is_procfs().map_err(|e| Error::io("statfs /proc", e))? {
        return Err(Error::SelfCheck("/proc is not the proc file system".into()));
    }
    Ok(())
}

/// Refuse to run when installed or started in a way that would make the
/// result wrong: setuid/setgid, no_new_privs already set (so the file
/// capabilities were not granted), more than one thread, or capabilities
/// missing. Root (`--user` by an administrator) holds every capability.
pub(crate) fn self_check(caller_is_root: bool) -> Result<()> {
    let [real, effective, saved] = process::uids().map_err(|e| Error::io("getresuid", e))?;
    if real != effective || effective != saved {
        return Err(Error::SelfCheck(
            "cagepipe is running setuid; remove the setuid bit and install it with file capabilities".into(),
        ));
    }
    let [real, effective, saved] = process::gids().map_err(|e| Error::io("getresgid", e))?;
    if real != effective || effective != saved {
        return Err(Error::SelfCheck(
            "cagepipe is running setgid; remove the setgid bit and install it with file capabilities".into(),
        ));
    }
    if process::no_new_privs().unwrap_or(true) {
        return Err(Error::SelfCheck(
            "no_new_privs is already set, so the file capabilities were not granted (is the caller sandboxed, or cagepipe started from inside a container?)".into(),
        ));
    }
    let status = std::fs::File::open("/proc/self/status")
        .and_then(|f| crate::platform::fs::read_small(f, 64 * 1024))
        .map_err(|e| Error::io("reading /proc/self/status", e))?;
    let status = procfs::parse_status(&status).map_err(|e| Error::io("/proc/self/status", io::Error::other(e)))?;
    if status.threads != 1 {
        return Err(Error::SelfCheck(format!(
            "{} threads at start-up; cagepipe must be single-threaded",
            status.threads
        )));
    }
    sys::mark_single_threaded();
    // The child resets these, and only these, before exec.
    sys::note_signals_at_startup(status.sig_ign | status.sig_cgt);
    if !caller_is_root {
        let have = sys::capget().map_err(|e| Error::io("reading capabilities", e))?.permitted;
        let missing = privileges::missing_names(have, &REQUIRED);
        if !missing.is_empty() {
            return Err(Error::SelfCheck(format!(
                "the binary lacks the capabilities {missing}; install it with: setcap {} {}",
                privileges::setcap_text(),
                running_binary()
            )));
        }
    }
    Ok(())
}

/// The binary that is running, for the setcap advice (it need not be the
/// packaged /usr/sbin/cagepipe).
fn running_binary() -> String {
    std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "/usr/sbin/cagepipe".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fork that follows assumes one thread: in a threaded process the
    /// child could inherit a lock held by a thread that does not exist there.
    #[test]
    fn a_second_thread_is_refused() {
        if crate::platform::process::no_new_privs().unwrap_or(true) {
            use std::io::Write;
            // Straight to fd 2: the harness captures eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIP a_second_thread_is_refused: this test runs under no_new_privs, which self_check refuses first"
            );
            return;
        }
        let (stop, wait) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            let _ = wait.recv();
        });
        let result = self_check(true);
        drop(stop);
        other.join().unwrap();
        let e = result.unwrap_err();
        assert_eq!(e.exit_code(), crate::error::exit::TEMPFAIL);
        assert!(e.to_string().contains("threads at start-up; cagepipe must be single-threaded"), "{e}");
    }
}
