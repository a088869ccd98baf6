//! Entering the container, forking the command and supervising it.
//!
//! The parent joins the cgroups and namespaces (so the child is born inside
//! them, in the container's pid namespace), forks, drops every capability
//! of its own and waits. The child drops privileges, verifies, and execs.
//! The parent stays in Exim's process group, so Exim's `killpg` on timeout
//! reaches the command and everything it started in that group.
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::cgroup;
use crate::error::{exit, Error, Result};
use crate::namespace::{self, Setns};
use crate::privileges::{self, Credentials, Kernel, CAP_DAC_OVERRIDE, CAP_SYS_ADMIN, CAP_SYS_CHROOT, CAP_SYS_PTRACE};
use crate::resolve::Target;
use crate::sys::{self, CapSets, Forked};

/// Everything the child needs, prepared before the fork.
pub struct Launch {
    pub credentials: Credentials,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    /// execve candidates (PATH already searched by name).
    pub candidates: Vec<CString>,
    /// The directory Exim started cagepipe in (the home for a `.forward`
    /// pipe, `/` for an alias pipe), tried inside the container.
    pub cwd: CString,
    pub close_range: bool,
    pub clone_into_cgroup: bool,
    /// Shown in error messages: the program as the user wrote it.
    pub program: String,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
}

struct RealSetns;
impl Setns for RealSetns {
    fn setns(&mut self, fd: std::os::fd::BorrowedFd<'_>, flags: libc::c_int) -> std::io::Result<()> {
        sys::setns(fd, flags)
    }
}

/// Join, enter, fork, and wait. Returns how the command ended, or the
/// error that kept it from running.
pub fn run(target: Target, launch: &Launch) -> Result<Ending> {
    privileges::with_caps(&[CAP_DAC_OVERRIDE], || cgroup::join_v1(&target.cgroups.join))?;
    let v2 = cgroup::open_v2(&target.cgroups.join)?;
    let (before_fork, in_child) = namespace::split(&target.foreign);
    privileges::with_caps(&[CAP_SYS_ADMIN, CAP_SYS_CHROOT, CAP_SYS_PTRACE], || {
        namespace::enter(&mut RealSetns, target.pidfd.as_ref(), &before_fork)
            .map_err(|(what, source)| Error::Namespace { what, pid: target.pid, source })?;
        // The namespace root is not always the container's root (a
        // chroot-style container); /proc/PID/root, opened on the host, is.
        nix::unistd::fchdir(&target.root).map_err(|e| Error::io("entering the container's root", e.into()))?;
        nix::unistd::chroot(".").map_err(|e| Error::io("chroot to the container's root", e.into()))
    })?;

    let (status_r, status_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()))?;
    let (alive_r, alive_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()))?;

    let forked = privileges::with_caps(&[CAP_DAC_OVERRIDE], || spawn(v2.as_ref(), launch.clone_into_cgroup))?;
    match forked {
        Forked::Child => {
            drop(status_r);
            drop(alive_w);
            let enter_rest = || {
                privileges::with_caps(&[CAP_SYS_ADMIN, CAP_SYS_PTRACE], || {
                    namespace::enter(&mut RealSetns, target.pidfd.as_ref(), &in_child)
                        .map_err(|(what, source)| Error::Namespace { what, pid: target.pid, source })
                })
            };
            child(launch, enter_rest, status_w, alive_r)
        }
        Forked::Parent(pid) => {
            drop(status_w);
            drop(alive_r);
            drop(target);
            // The parent only waits from now on: it needs no privilege.
            let _ = sys::capset(CapSets::default());
            let report = read_report(status_r);
            let ending = wait_for(pid)?;
            drop(alive_w);
            match report {
                Some(err) => Err(err),
                None => Ok(ending),
            }
        }
    }
}

/// Fork the command's process into the container's cgroup v2: born there by
/// clone3 where the kernel can (5.7+), else after moving ourselves there.
fn spawn(v2: Option<&cgroup::V2Dir>, clone_into_cgroup: bool) -> Result<Forked> {
    let fork_err = |e| Error::io("fork", e);
    let Some(v2) = v2 else { return sys::fork_single_threaded().map_err(fork_err) };
    if clone_into_cgroup {
        match sys::fork_into_cgroup(v2.fd.as_fd()) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG)) => {}
            Err(e) => return Err(Error::Cgroup { dir: v2.path.clone(), source: e }),
            Ok(forked) => return Ok(forked),
        }
    }
    cgroup::join_v2(v2)?;
    sys::fork_single_threaded().map_err(fork_err)
}

/// The child: never returns. Failures are reported to the parent through
/// the status pipe and end in `_exit`.
fn child(launch: &Launch, enter_rest: impl FnOnce() -> Result<()>, status_w: OwnedFd, alive_r: OwnedFd) -> ! {
    let fail = |err: Error, status_w: &OwnedFd| -> ! {
        let code = err.exit_code();
        let mut f = std::fs::File::from(status_w.try_clone().unwrap_or_else(|_| sys::exit_now(code)));
        let _ = write!(f, "{code}\t{err}");
        sys::exit_now(code)
    };
    if let Err(e) = enter_rest() {
        fail(e, &status_w);
    }
    if let Err(e) = leave_a_terminal_session() {
        fail(e, &status_w);
    }
    if let Err(e) = privileges::drop_privileges(&mut Kernel, &launch.credentials) {
        fail(e, &status_w);
    }
    // Die with the parent: if cagepipe is killed, the command must not run
    // on unsupervised inside the container. Set after the drop, because
    // changing credentials clears the parent-death signal; then check that
    // the parent did not die before it was set.
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
        fail(Error::Privileges("cannot set the parent-death signal".into()), &status_w);
    }
    let mut fds = [PollFd::new(alive_r.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::ZERO).map(|n| n > 0).unwrap_or(true) {
        sys::exit_now(exit::TEMPFAIL); // the parent is already gone
    }
    // Where Exim would have started the command, looked up inside the
    // container as the user (so its permissions apply), else the container's
    // root: never a host directory.
    if nix::unistd::chdir(launch.cwd.as_c_str()).is_err() {
        if let Err(e) = nix::unistd::chdir("/") {
            fail(Error::io("chdir /", e.into()), &status_w);
        }
    }
    close_other_fds(launch.close_range, status_w.as_raw_fd());
    let err = crate::command::exec_first(&launch.candidates, &launch.argv, &launch.env);
    fail(Error::Exec { command: launch.program.clone(), source: err }, &status_w)
}

/// Close every descriptor above 2 except the status pipe (close-on-exec).
/// Start-up closed everything inherited, so all that is open is ours and
/// numbered low; the fallback walk covers far more than we ever hold.
fn close_other_fds(use_close_range: bool, keep: i32) {
    let keep = keep as u32;
    if use_close_range
        && (keep <= 3 || sys::close_range(3, keep - 1).is_ok())
        && sys::close_range(keep + 1, u32::MAX).is_ok()
    {
        return;
    }
    for fd in 3..FALLBACK_CLOSE_LIMIT {
        if fd != keep as i32 {
            sys::close_fd_number(fd);
        }
    }
}

/// Highest fd number + 1 the fallback closes.
const FALLBACK_CLOSE_LIMIT: i32 = 1024;

/// Read the child's failure report; EOF without data means exec succeeded.
fn read_report(status_r: OwnedFd) -> Option<Error> {
    let mut text = String::new();
    let _ = std::fs::File::from(status_r).take(4096).read_to_string(&mut text);
    let (code, message) = text.split_once('\t')?;
    let code: i32 = code.parse().ok()?;
    Some(Error::Reported { code, message: message.to_string() })
}

fn wait_for(pid: i32) -> Result<Ending> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Ending::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Ending::Signaled(sig as i32)),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::io("waiting for the command", e.into())),
        }
    }
}

/// When a terminal is on 0, 1 or 2 (an administrator trying a delivery by
/// hand; Exim never passes one), start a session of our own so that the
/// terminal is not the command's controlling terminal: TIOCSTI, which needs
/// that, would let the command type into the caller's shell once it exits
/// (CVE-2016-7545, CVE-2017-5226). Without a terminal nothing changes, so
/// the command stays in Exim's process group for its `killpg` on timeout.
fn leave_a_terminal_session() -> Result<()> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() || std::io::stdout().is_terminal() || std::io::stderr().is_terminal() {
        nix::unistd::setsid().map_err(|e| Error::io("leaving the terminal's session", e.into()))?;
    }
    Ok(())
}
