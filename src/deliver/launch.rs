//! Entering the container, forking the command and supervising it.
//!
//! The parent enters the namespaces (so the child is born inside them, in
//! the container's pid namespace), forks, drops every capability of its own
//! and waits. The child joins the container's cgroups, drops privileges,
//! verifies, and execs. The parent stays in Exim's process group, so Exim's
//! `killpg` on timeout reaches the command and everything it started in that
//! group; and it stays out of the container's cgroups, so a container
//! manager that kills everything in them when the container stops cannot
//! kill the wrapper (Exim would bounce: "terminated by signal 9").
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::deliver::cgroup;
use crate::error::{exit, Error, Result};
use crate::deliver::namespace::{self, Setns};
use crate::deliver::privileges::{self, Credentials, Kernel, CAP_DAC_OVERRIDE, CAP_SYS_ADMIN, CAP_SYS_CHROOT, CAP_SYS_PTRACE};
use crate::deliver::resolve::{self, Target};
use crate::deliver::sandbox;
use crate::platform::sys::{self, CapSets, Forked};

/// Where the command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Inside the account's container, with every privilege dropped.
    Container,
    /// On the host, as Exim would have run it without cagepipe
    /// (`[rollout]`: the account is not contained yet).
    Host,
}

/// Everything the child needs, prepared before the fork.
pub(crate) struct Launch {
    pub(crate) place: Place,
    pub(crate) credentials: Credentials,
    pub(crate) argv: Vec<CString>,
    pub(crate) env: Vec<CString>,
    /// execve candidates (PATH already searched by name).
    pub(crate) candidates: Vec<CString>,
    /// The directory Exim started cagepipe in (the home for a `.forward`
    /// pipe, `/` for an alias pipe), tried inside the container.
    pub(crate) cwd: CString,
    pub(crate) close_range: bool,
    pub(crate) clone_into_cgroup: bool,
    /// Shown in error messages: the program as the user wrote it.
    pub(crate) program: String,
    /// The Landlock sandbox, unless `[sandbox] landlock = "off"`.
    pub(crate) sandbox: Option<sandbox::Plan>,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
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
/// error that kept it from running; `sandbox_note` receives what the child
/// said about the sandbox (for the audit line), whatever the outcome.
pub(crate) fn run(target: Target, launch: &Launch, sandbox_note: &mut Option<String>) -> Result<Ending> {
    // Opened on the host now; the child writes itself in.
    let v1 = privileges::with_caps(&[CAP_DAC_OVERRIDE], || cgroup::open_v1(&target.cgroups.join))?;
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

    let (forked, born_in_v2) = spawn(v2.as_ref(), launch.clone_into_cgroup)?;
    match forked {
        Forked::Child => {
            drop(status_r);
            drop(alive_w);
            let enter_rest = || {
                // The cgroup files belong to the host's root; moving itself
                // needs no other right. First, while still in the host's
                // cgroup and user namespaces.
                privileges::with_caps(&[CAP_DAC_OVERRIDE], || {
                    cgroup::join_v1(&v1)?;
                    match &v2 {
                        Some(v2) if !born_in_v2 => cgroup::join_v2(v2),
                        _ => Ok(()),
                    }
                })?;
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
            drop(v1);
            let Target { pid: target_pid, proc_dir, .. } = target;
            let (failure, ending) = supervise(pid, status_r, alive_w, sandbox_note)?;
            match (failure, ending) {
                (Some(err), _) => Err(err),
                // Killed with its container (when a pid namespace's init dies
                // the kernel kills everything else in it; a manager kills the
                // rest of the cgroup), not the command's own end: defer, and
                // Exim delivers the message once the container runs again.
                (None, Ending::Signaled(sig)) if container_stopping(&proc_dir) => Err(Error::Target {
                    pid: target_pid,
                    problem: format!(
                        "the container stopped during the delivery; the command was killed by signal {sig}"
                    ),
                }),
                (None, ending) => Ok(ending),
            }
        }
    }
}

/// Run the command on the host as the user, as Exim would have run it
/// without cagepipe: the same fork, session, supervision and status as
/// inside a container, but nothing entered or joined, the host user's
/// credentials (see [`privileges::drop_to_host_user`]) and Exim's cwd.
pub(crate) fn run_on_host(launch: &Launch) -> Result<Ending> {
    debug_assert_eq!(launch.place, Place::Host);
    let (status_r, status_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()))?;
    let (alive_r, alive_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()))?;
    match sys::fork_single_threaded().map_err(|e| Error::io("fork", e))? {
        Forked::Child => {
            drop(status_r);
            drop(alive_w);
            child(launch, || Ok(()), status_w, alive_r)
        }
        Forked::Parent(pid) => {
            drop(status_w);
            drop(alive_r);
            match supervise(pid, status_r, alive_w, &mut None)? {
                (Some(err), _) => Err(err),
                (None, ending) => Ok(ending),
            }
        }
    }
}

/// The parent's part once the child is forked: give up every privilege,
/// collect the child's report and wait for the command.
fn supervise(
    pid: i32,
    status_r: OwnedFd,
    alive_w: OwnedFd,
    sandbox_note: &mut Option<String>,
) -> Result<(Option<Error>, Ending)> {
    // The parent only waits from now on: it needs no privilege.
    let _ = sys::capset(CapSets::default());
    let (note, failure) = read_report(status_r);
    *sandbox_note = note;
    let ending = wait_for(pid)?;
    drop(alive_w);
    Ok((failure, ending))
}

/// Fork the command's process, born in the container's cgroup v2 by clone3
/// where the kernel can (5.7+; then true), else plainly: the child then
/// joins it itself.
fn spawn(v2: Option<&cgroup::V2Dir>, clone_into_cgroup: bool) -> Result<(Forked, bool)> {
    if let (Some(v2), true) = (v2, clone_into_cgroup) {
        // Placing the child needs write access to the host's cgroup files.
        match privileges::with_caps(&[CAP_DAC_OVERRIDE], || Ok(sys::fork_into_cgroup(v2.fd.as_fd())))? {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG)) => {}
            Err(e) => return Err(Error::Cgroup { dir: v2.path.clone(), source: e }),
            Ok(forked) => return Ok((forked, true)),
        }
    }
    Ok((sys::fork_single_threaded().map_err(|e| Error::io("fork", e))?, false))
}

/// The child: never returns. Failures are reported to the parent through
/// the status pipe and end in `_exit`; before them, or before an exec that
/// succeeds, one `sandbox` line may say how much of the sandbox is on.
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
    let dropped = match launch.place {
        Place::Container => privileges::drop_privileges(&mut Kernel, &launch.credentials),
        Place::Host => privileges::drop_to_host_user(&mut Kernel, &launch.credentials),
    };
    if let Err(e) = dropped {
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
    // root: never a host directory. On the host it already is there.
    if launch.place == Place::Container && nix::unistd::chdir(launch.cwd.as_c_str()).is_err() {
        if let Err(e) = nix::unistd::chdir("/") {
            fail(Error::io("chdir /", e.into()), &status_w);
        }
    }
    // Last before exec, as the user and inside: the paths are the ones the
    // command will see, and nothing cagepipe still has to do is restricted.
    if let Some(plan) = &launch.sandbox {
        match sandbox::apply(plan) {
            Ok(note) => {
                let line = format!("{SANDBOX_NOTE}\t{}\n", note.replace('\n', "\\n"));
                let _ = nix::unistd::write(&status_w, line.as_bytes());
            }
            Err(e) => fail(e, &status_w),
        }
    }
    close_other_fds(launch.close_range, status_w.as_raw_fd());
    let err = crate::deliver::command::exec_first(&launch.candidates, &launch.argv, &launch.env);
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

/// How long to wait, once the command died from a signal, for its
/// container's init to show that the container is stopping: a manager that
/// kills every process of the container at once may reach the command
/// first. Only a death by signal waits: in a live container, the command's
/// own signal reaches Exim this much later.
const STOP_GRACE: Duration = Duration::from_millis(250);

fn container_stopping(init_proc_dir: &OwnedFd) -> bool {
    let until = Instant::now() + STOP_GRACE;
    loop {
        if resolve::is_ending(init_proc_dir) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How the status pipe's sandbox line starts (a failure starts with its code).
const SANDBOX_NOTE: &str = "sandbox";

/// Read what the child reported: its sandbox line, if any, and its failure,
/// if any. EOF without a failure means exec succeeded.
fn read_report(status_r: OwnedFd) -> (Option<String>, Option<Error>) {
    let mut text = String::new();
    let _ = std::fs::File::from(status_r).take(8192).read_to_string(&mut text);
    parse_report(&text)
}

fn parse_report(text: &str) -> (Option<String>, Option<Error>) {
    let (note, rest) = match text.strip_prefix(SANDBOX_NOTE).and_then(|t| t.strip_prefix('\t')) {
        Some(t) => match t.split_once('\n') {
            Some((note, rest)) => (Some(note.to_string()), rest),
            None => (Some(t.to_string()), ""),
        },
        None => (None, text),
    };
    let failure = rest.split_once('\t').and_then(|(code, message)| {
        let code: i32 = code.parse().ok()?;
        Some(Error::Reported { code, message: message.to_string() })
    });
    (note, failure)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_pipe_carries_a_sandbox_line_then_a_failure() {
        let (note, failure) = parse_report("");
        assert!(note.is_none() && failure.is_none(), "exec succeeded");
        let (note, failure) = parse_report("sandbox\tenforced\n");
        assert_eq!(note.as_deref(), Some("enforced"));
        assert!(failure.is_none());
        let (note, failure) = parse_report("sandbox\tnot applied: x\n126\tcannot execute /x: denied");
        assert_eq!(note.as_deref(), Some("not applied: x"));
        let failure = failure.unwrap();
        assert_eq!((failure.exit_code(), failure.to_string().as_str()), (126, "cannot execute /x: denied"));
        let (note, failure) = parse_report("75\tsandbox: cannot be met");
        assert!(note.is_none());
        assert_eq!(failure.unwrap().to_string(), "sandbox: cannot be met");
    }
}
