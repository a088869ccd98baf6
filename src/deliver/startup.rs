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
/// Started with its file capabilities, the C library has done so already
/// (see [`sys::started_secure`]); only root (`--user`) is not.
pub(crate) fn ensure_std_fds() -> io::Result<()> {
    if sys::started_secure() {
        return Ok(());
    }
    for (fd, closed) in (0..).zip(sys::closed_std_fds()?) {
        if closed {
            sys::open_devnull_at(fd)?;
        }
    }
    Ok(())
}

/// Close every descriptor above 2 that the caller left open (a directory
/// fd to the host's `/`, a socket...): none of them may reach the container
/// (runc CVE-2024-21626). Nothing of ours is open yet, so one close_range
/// does it; older kernels (before 5.9) get them listed from the host's
/// /proc. Then /proc is opened for good, checked to be procfs.
pub(crate) fn close_inherited_fds() -> Result<()> {
    if sys::close_range(3, u32::MAX).is_err() {
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
    }
    check_proc_is_procfs()
}

fn check_proc_is_procfs() -> Result<()> {
    if !process::open_host_proc().map_err(|e| Error::io("opening /proc", e))? {
        return Err(Error::SelfCheck("/proc is not the proc file system".into()));
    }
    Ok(())
}

/// What start-up learnt about the calling process from its
/// /proc/self/status, read once: the ids and groups the plan takes from
/// the caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) uid: u32,
    pub(crate) egid: u32,
    pub(crate) groups: Vec<u32>,
}

/// Read /proc/self/status once, for the self-check and the caller's ids.
pub(crate) fn own_status() -> Result<procfs::Status> {
    let status = process::read_own("status", 64 * 1024).map_err(|e| Error::io("reading /proc/self/status", e))?;
    procfs::parse_status(&status).map_err(|e| Error::io("/proc/self/status", io::Error::other(e)))
}

/// Refuse to run when installed or started in a way that would make the
/// result wrong: setuid/setgid, no_new_privs already set (so the file
/// capabilities were not granted), more than one thread, or capabilities
/// missing. Root (`--user` by an administrator) holds every capability.
/// Everything is taken from one read of /proc/self/status.
pub(crate) fn self_check(status: &procfs::Status, caller_is_root: bool) -> Result<Caller> {
    let [real, effective, saved, _] = status.uid;
    if real != effective || effective != saved {
        return Err(Error::SelfCheck(
            "cagepipe is running setuid; remove the setuid bit and install it with file capabilities".into(),
        ));
    }
    let [real, effective, saved, _] = status.gid;
    if real != effective || effective != saved {
        return Err(Error::SelfCheck(
            "cagepipe is running setgid; remove the setgid bit and install it with file capabilities".into(),
        ));
    }
    // Kernels before 4.10 do not show the flag: ask.
    if status.no_new_privs.unwrap_or_else(|| process::no_new_privs().unwrap_or(true)) {
        return Err(Error::SelfCheck(
            "no_new_privs is already set, so the file capabilities were not granted (is the caller sandboxed, or cagepipe started from inside a container?)".into(),
        ));
    }
    if status.threads != 1 {
        return Err(Error::SelfCheck(format!(
            "{} threads at start-up; cagepipe must be single-threaded",
            status.threads
        )));
    }
    sys::mark_single_threaded();
    // The child resets these, and only these, before exec: exec itself
    // resets every caught signal, but an ignored one stays ignored.
    sys::note_signals_at_startup(status.sig_ign);
    sys::note_ambient_at_startup(status.cap_amb);
    // An ignored SIGCHLD (a caller can hand it over so) would make waitpid
    // fail; a blocked one is harmless but is unblocked too, as before.
    let sigchld = 1u64 << (process::SIGCHLD - 1);
    if (status.sig_ign | status.sig_blk) & sigchld != 0 {
        process::default_sigchld();
    }
    if !caller_is_root {
        let missing = privileges::missing_names(status.cap_prm, &REQUIRED);
        if !missing.is_empty() {
            return Err(Error::SelfCheck(format!(
                "the binary lacks the capabilities {missing}; install it with: setcap {} {}",
                privileges::setcap_text(),
                running_binary()
            )));
        }
    }
    Ok(Caller { uid: status.uid[0], egid: status.gid[1], groups: status.groups.clone() })
}

/// The binary that is running, for the setcap advice (it need not be the
/// packaged /usr/sbin/cagepipe).
fn running_binary() -> String {
    std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "/usr/sbin/cagepipe".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The syslog line's pid comes from this read, not from getpid.
    #[test]
    fn the_status_read_at_start_up_says_our_pid() {
        crate::platform::process::open_host_proc().unwrap();
        let status = own_status().unwrap();
        assert_eq!(status.ns_pid.last().map(|&p| p as u32), Some(std::process::id()), "{:?}", status.ns_pid);
    }

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
        crate::platform::process::open_host_proc().unwrap();
        let result = own_status().and_then(|status| self_check(&status, true));
        drop(stop);
        other.join().unwrap();
        let e = result.unwrap_err();
        assert_eq!(e.exit_code(), crate::error::exit::TEMPFAIL);
        assert!(e.to_string().contains("threads at start-up; cagepipe must be single-threaded"), "{e}");
    }
}
