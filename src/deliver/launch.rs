//! Entering the container, forking the command and supervising it: the
//! second half of the pipeline, one linear sequence for contained and
//! uncontained deliveries alike (an uncontained plan has no cgroups, no
//! namespaces and no root to enter).
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

use std::convert::Infallible;
use std::os::fd::{AsFd, OwnedFd};

use crate::deliver::cgroup::{self, Opened};
use crate::deliver::command;
use crate::deliver::namespace::{self, ForeignNs};
use crate::deliver::plan::{Place, Plan};
use crate::deliver::privileges::{self, CAP_DAC_OVERRIDE, REQUIRED};
use crate::deliver::resolve;
use crate::error::{exit, Error, Result};
use crate::platform::kernel::{raw, unsupported, Ending, Kernel};
use crate::platform::sys::CapSets;

/// What the supervised command did, and what the child said about the
/// sandbox (for the audit line), whatever the outcome.
#[derive(Debug)]
pub(crate) struct Supervised {
    pub(crate) sandbox: Option<String>,
    pub(crate) ending: Result<Ending>,
}

/// Join, enter, fork, and wait: in this order, for every delivery.
///
/// Capabilities, in two windows (one `capset` each, not a raise and a
/// lower around every step): CAP_DAC_OVERRIDE alone while the container's
/// cgroup files are opened (their paths carry the container's cgroup
/// names); then every required capability from entering to the fork, and
/// in the child on to its drop, which empties them all. Nothing in that
/// second window opens a path: it enters through descriptors opened on the
/// host, chroots to the root opened so, forks into the cgroup opened so,
/// and the child writes itself into the cgroup files opened in the first
/// window (without clone3, it opens `cgroup.procs` below the directory
/// opened there) and enters the cgroup and user namespaces. The parent
/// empties its sets right after the fork, or on any failure before it.
pub(crate) fn launch<K: Kernel>(k: &mut K, plan: &Plan) -> Result<Supervised> {
    // Asked on the host, before anything is entered (see
    // `leave_a_terminal_session`).
    let terminal = k.has_controlling_terminal();
    let prepared = match plan.target() {
        Some(t) => enter_before_fork(k, t).inspect_err(|_| {
            let _ = privileges::lower_all(k);
        })?,
        None => (Opened::default(), Vec::new()),
    };
    let (cgroups, in_child) = prepared;
    // 3. One channel: the child reports on its end (its exec closes it:
    //    EOF without a report is success), and sees our death on it (our
    //    end closes with us).
    let (parent_end, child_end) = k.channel().map_err(|e| Error::io("socketpair", e))?;
    // 4. The command's process: born in the container's cgroup v2 where
    //    the kernel can, and on our memory until its exec where it can.
    let mut in_the_child = |k: &mut K, born_in_v2: bool| -> Infallible {
        // The child's copy of our end must go, or our death would not show
        // (only the number is closed: the descriptor table is the child's
        // own, the memory may be ours). Nothing the child holds is dropped:
        // it ends in exec or `_exit`.
        k.close(raw(&parent_end));
        let failure = child(k, plan, &cgroups, born_in_v2, &in_child, &child_end, terminal);
        report_and_exit(k, failure, &child_end)
    };
    let pid = match spawn(k, &cgroups, plan, &mut in_the_child) {
        Ok(pid) => pid,
        Err(e) => {
            let _ = privileges::lower_all(k);
            return Err(e);
        }
    };
    // Our copy of the child's end must go, for the report's EOF; the cgroup
    // files close with our exit.
    drop(child_end);
    std::mem::forget(cgroups);
    Ok(supervise(k, plan, pid, parent_end))
}

/// The parent's two capability windows (see [`launch`]): open the
/// container's cgroups, enter every namespace but cgroup and user, and its
/// root; every required capability stays effective for the fork. Returns
/// the cgroups and the namespaces the child enters.
fn enter_before_fork<'t>(k: &mut impl Kernel, t: &'t resolve::Target) -> Result<(Opened, Vec<&'t ForeignNs>)> {
    // 1. The container's cgroups, opened on the host; the child writes
    //    itself in (the files belong to the host's root).
    privileges::set_effective(k, &[CAP_DAC_OVERRIDE])?;
    let cgroups = cgroup::open(k, &t.cgroups.join)?;
    // 2. Every namespace but cgroup and user, and the container's root.
    privileges::set_effective(k, &REQUIRED)?;
    let (before_fork, in_child) = namespace::split(&t.foreign);
    enter(k, t.pid, &before_fork)?;
    // The namespace root is not always the container's root (a
    // chroot-style container); /proc/PID/root, opened on the host, is.
    k.chroot(t.root.as_fd()).map_err(|e| Error::io("entering the container's root", e))?;
    Ok((cgroups, in_child))
}

fn enter(k: &mut impl Kernel, pid: i32, which: &[&ForeignNs]) -> Result<()> {
    namespace::enter(k, which).map_err(|(what, source)| Error::Namespace { what, pid, source })
}

/// Start the command's process and run `in_the_child` in it: born in the
/// container's cgroup v2 by clone3 where the kernel can (5.7+; the child is
/// told so), else plainly: the child then joins it itself. Returns its pid.
fn spawn<K: Kernel>(
    k: &mut K,
    cgroups: &Opened,
    plan: &Plan,
    in_the_child: &mut dyn FnMut(&mut K, bool) -> Infallible,
) -> Result<i32> {
    if let (Some((dir, fd)), true) = (&cgroups.v2, plan.clone_into_cgroup) {
        // Placing the child needs write access to the host's cgroup files:
        // CAP_DAC_OVERRIDE, effective in the window before the fork.
        match k.spawn(Some(fd.as_fd()), plan.share_memory, &mut |k| in_the_child(k, true)) {
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(Error::Cgroup { dir: dir.clone(), source: e }),
            Ok(pid) => return Ok(pid),
        }
    }
    k.spawn(None, plan.share_memory, &mut |k| in_the_child(k, false)).map_err(|e| Error::io("fork", e))
}

/// The child's steps, in order; returns only the failure that stopped it
/// (an exec that succeeds never returns). Before a failure, or before an
/// exec that succeeds, one `sandbox` line may say how much of the sandbox
/// is on.
fn child(
    k: &mut impl Kernel,
    plan: &Plan,
    cgroups: &Opened,
    born_in_v2: bool,
    in_child: &[&ForeignNs],
    channel: &OwnedFd,
    terminal: bool,
) -> Error {
    match child_steps(k, plan, cgroups, born_in_v2, in_child, channel, terminal) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

fn child_steps(
    k: &mut impl Kernel,
    plan: &Plan,
    cgroups: &Opened,
    born_in_v2: bool,
    in_child: &[&ForeignNs],
    channel: &OwnedFd,
    terminal: bool,
) -> Result<std::convert::Infallible> {
    {
        if let Place::Container(t) = &plan.place {
            // First, while still in the host's cgroup and user namespaces:
            // the cgroup files belong to the host's root (CAP_DAC_OVERRIDE),
            // entering needs CAP_SYS_ADMIN and CAP_SYS_PTRACE; all of them
            // are effective since the parent's window before the fork.
            cgroup::join(k, cgroups, born_in_v2)?;
            enter(k, t.pid, in_child)?;
        }
        if terminal {
            leave_a_terminal_session(k)?;
        }
        privileges::drop_privileges(k, &plan.credentials, plan.confinement())?;
        // Die with the parent: if cagepipe is killed, the command must not
        // run on unsupervised inside the container. Set after the drop,
        // because changing credentials clears the parent-death signal; then
        // check that the parent did not die before it was set.
        k.set_parent_death_signal().map_err(|_| Error::Privileges("cannot set the parent-death signal".into()))?;
        if !k.parent_alive(channel.as_fd()) {
            k.exit(exit::TEMPFAIL); // nobody is left to report to
        }
        // Where Exim would have started the command, looked up inside the
        // container as the user (so its permissions apply), else the
        // container's root: never a host directory. On the host it already
        // is there.
        if let Some(cwd) = &plan.cwd {
            if k.chdir(cwd).is_err() {
                k.chdir(c"/").map_err(|e| Error::io("chdir /", e))?;
            }
        }
        // Last before exec, as the user and inside: the paths are the ones
        // the command will see, and nothing cagepipe still has to do is
        // restricted.
        if let Some(sandbox) = &plan.sandbox {
            let note = k.restrict_self(sandbox)?;
            k.write(channel.as_fd(), format!("{SANDBOX_NOTE}\t{}\n", note.replace('\n', "\\n")).as_bytes());
        }
        close_other_fds(k, plan.close_range, raw(channel));
        let err = command::exec_first(k, &plan.candidates, &plan.argv, &plan.env);
        Err(Error::Exec { command: plan.program.clone(), inside: plan.target().is_some(), source: err })
    }
}

/// Tell the parent why the child stopped, and end with the same code.
fn report_and_exit(k: &mut impl Kernel, err: Error, channel: &OwnedFd) -> ! {
    let code = err.exit_code();
    k.write(channel.as_fd(), format!("{code}\t{err}").as_bytes());
    k.exit(code)
}

/// The parent's part once the child is forked: give up every privilege,
/// collect the child's report and wait for the command.
fn supervise(k: &mut impl Kernel, plan: &Plan, pid: i32, channel: OwnedFd) -> Supervised {
    // The parent only waits from now on: it needs no privilege.
    let _ = k.capset(CapSets::default());
    // Read to EOF (the child's exec or exit); our end closes after that,
    // when the child no longer looks at it.
    let (sandbox, failure) = parse_report(&String::from_utf8_lossy(&k.read_to_end(channel, 8192)));
    let ending = k.wait(pid).map_err(|e| Error::io("waiting for the command", e));
    let ending = match (failure, ending) {
        (Some(err), _) => Err(err),
        (None, Err(e)) => Err(e),
        // Killed with its container (when a pid namespace's init dies the
        // kernel kills everything else in it; a manager kills the rest of
        // the cgroup), not the command's own end: defer, and Exim delivers
        // the message once the container runs again.
        (None, Ok(Ending::Signaled(sig))) if plan.target().is_some_and(|t| container_stopping(k, &t.proc_dir)) => {
            Err(Error::Target {
                pid: plan.target().map_or(0, |t| t.pid),
                problem: format!("the container stopped during the delivery; the command was killed by signal {sig}"),
            })
        }
        (None, Ok(ending)) => Ok(ending),
    };
    Supervised { sandbox, ending }
}

/// Close every descriptor above 2 except the child's end of the channel
/// (close-on-exec).
/// Start-up closed everything inherited, so all that is open is ours and
/// numbered low; the fallback walk covers far more than we ever hold.
fn close_other_fds(k: &mut impl Kernel, use_close_range: bool, keep: i32) {
    let keep = keep as u32;
    if use_close_range && (keep <= 3 || k.close_range(3, keep - 1).is_ok()) && k.close_range(keep + 1, u32::MAX).is_ok()
    {
        return;
    }
    for fd in 3..FALLBACK_CLOSE_LIMIT {
        if fd != keep as i32 {
            k.close(fd);
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
const STOP_GRACE_MS: u64 = 250;
const STOP_POLL_MS: u64 = 5;

fn container_stopping(k: &mut impl Kernel, init_proc_dir: &OwnedFd) -> bool {
    for _ in 0..=STOP_GRACE_MS / STOP_POLL_MS {
        if resolve::is_ending(k, init_proc_dir) {
            return true;
        }
        k.pause(STOP_POLL_MS);
    }
    false
}

/// How the report's sandbox line starts (a failure starts with its code).
const SANDBOX_NOTE: &str = "sandbox";

/// What the child reported: its sandbox line, if any, and its failure, if
/// any. EOF without a failure means exec succeeded.
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

/// With a controlling terminal (an administrator trying a delivery by hand,
/// or a message sent with `exim -odi` from a shell, whose delivery runs in
/// that shell's session even though 0-2 are pipes), start a session of our
/// own so that the terminal is not the command's: through `/dev/tty`, which
/// any process can open for its controlling terminal, it could read the
/// caller's input, and with TIOCSTI type into the caller's shell once it
/// exits (CVE-2016-7545, CVE-2017-5226). Without one nothing changes, so
/// the command stays in Exim's process group for its `killpg` on timeout.
fn leave_a_terminal_session(k: &mut impl Kernel) -> Result<()> {
    k.new_session().map_err(|e| Error::io("leaving the terminal's session", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_carries_a_sandbox_line_then_a_failure() {
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
