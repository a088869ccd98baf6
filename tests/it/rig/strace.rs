//! cagepipe under `strace -f`: the command that traces it, and the calls
//! of cagepipe's own processes (the parent from its exec, the child until
//! the command's exec) read from the trace, by phase.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// `inner` (a [`super::command`]) run under `strace -f` with `options` (which
/// calls, how much of each string), the trace written to `trace`. strace
/// runs as root: tracing the exec of a binary with file capabilities needs
/// CAP_SYS_PTRACE in the tracer, or the capabilities are not granted.
pub fn under_strace(inner: &Command, options: &[&str], trace: &Path) -> Command {
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq"]).args(options).arg("-o").arg(trace).arg("--").arg(inner.get_program());
    cmd.args(inner.get_args()).env_clear();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    if let Some(dir) = inner.get_current_dir() {
        cmd.current_dir(dir);
    }
    cmd
}

/// The calls of one delivery, by phase.
#[derive(Debug, Default)]
pub struct Count {
    /// cagepipe's exec to its configuration's open: the loader, the Rust
    /// runtime, start-up (descriptors, self-check).
    pub startup: usize,
    /// The configuration's open to the fork: configuration, account,
    /// resolving and pinning the container, opening its cgroups, entering
    /// its namespaces.
    pub prepare: usize,
    /// The child, from its birth to the command's exec.
    pub child: usize,
    /// The parent after the fork: the drop, the report, the wait, the log.
    pub supervise: usize,
    /// The debug build's own descriptor checks, not counted.
    pub debug_checks: usize,
    /// Every call, by name.
    pub by_name: BTreeMap<String, usize>,
    /// Every call counted, as strace showed it (without the pid), in order.
    pub calls: Vec<String>,
}

impl Count {
    pub fn total(&self) -> usize {
        self.startup + self.prepare + self.child + self.supervise
    }
}

/// The pid a strace -f line starts with, and the rest of the line.
fn split_pid(line: &str) -> Option<(i32, &str)> {
    let line = line.trim_start();
    let (pid, rest) = line.split_once(' ')?;
    Some((pid.parse().ok()?, rest.trim_start()))
}

/// The system call a strace line reports, once per call: an `<unfinished
/// ...>` line counts, its `<... resumed>` does not, nor do signal and exit
/// lines.
fn call_name(rest: &str) -> Option<&str> {
    if rest.starts_with('<') || rest.starts_with("---") || rest.starts_with("+++") {
        return None;
    }
    let name = &rest[..rest.find('(')?];
    name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_').then_some(name)
}

/// `fcntl(N, F_GETFD)` followed by the same process's `close(N)`: the
/// debug assertion of `OwnedFd`'s drop.
fn is_debug_check(pid: i32, rest: &str, after: &[&str]) -> bool {
    let Some(fd) = rest.strip_prefix("fcntl(").and_then(|r| r.split_once(", F_GETFD")).map(|(fd, _)| fd) else {
        return false;
    };
    let close = format!("close({fd}");
    after.iter().filter_map(|l| split_pid(l)).find(|(p, _)| *p == pid).is_some_and(|(_, r)| r.starts_with(&close))
}

/// The value a completed call returned.
fn returned(rest: &str) -> Option<i64> {
    rest.rsplit_once(" = ")?.1.split_whitespace().next()?.parse().ok()
}

/// Count the calls in `trace` (strace -f output) from the exec of `binary`
/// to its child's successful exec, and the parent's until it exits.
///
/// A debug build's standard library checks that a descriptor is open
/// (`fcntl(fd, F_GETFD)`) before each close of an `OwnedFd`; a release
/// build does not, so those are left out when `debug` says so (and counted
/// in `debug_checks`).
pub fn count(trace: &str, binary: &str, debug: bool) -> Count {
    let lines: Vec<&str> = trace.lines().collect();
    let exec_of_binary = format!("execve(\"{binary}\"");
    let mut c = Count::default();
    let mut parent = None;
    let mut child = None;
    let mut child_done = false;
    let mut configured = false;
    let mut forked = false;
    let mut exec_pending = None;
    for (i, line) in lines.iter().enumerate() {
        let Some((pid, rest)) = split_pid(line) else { continue };
        if debug && parent.is_some() && is_debug_check(pid, rest, &lines[i + 1..]) {
            c.debug_checks += 1;
            continue;
        }
        // An exec may be reported unfinished, its result on the resumed line.
        let exec_done =
            (rest.starts_with("execve(") || rest.starts_with("<... execve resumed>")) && returned(rest) == Some(0);
        if parent.is_none() {
            if rest.starts_with(&exec_of_binary) {
                exec_pending = Some(pid);
            }
            if exec_done && exec_pending == Some(pid) {
                parent = Some(pid);
            }
            continue;
        }
        // The parent's fork may be reported unfinished, and the child's
        // first calls before the fork's result: after the fork began, the
        // first other pid is the child (nothing else runs under cagepipe).
        if forked && child.is_none() && Some(pid) != parent {
            child = Some(pid);
        }
        if Some(pid) == child && !child_done && exec_done {
            // The command's exec ends the count; its call is not counted.
            child_done = true;
            if rest.starts_with("<...") {
                c.child -= 1;
                *c.by_name.entry("execve (child)".into()).or_default() -= 1;
                // The parent may have made calls since.
                if let Some(i) =
                    c.calls.iter().rposition(|l| l.starts_with("execve(") && l.ends_with("<unfinished ...>"))
                {
                    c.calls.remove(i);
                }
            }
            continue;
        }
        let Some(name) = call_name(rest) else { continue };
        if Some(pid) == parent {
            if !forked && name.starts_with("clone") {
                c.prepare += 1;
                *c.by_name.entry(name.to_string()).or_default() += 1;
                c.calls.push(rest.to_string());
                // A clone3 the kernel refuses is followed by a plain fork.
                match returned(rest) {
                    Some(n) if n <= 0 => {}
                    done => {
                        child = done.map(|n| n as i32);
                        forked = true;
                    }
                }
                continue;
            }
            if !configured && rest.contains("\"cagepipe.toml\"") {
                configured = true;
            }
            let phase = match (configured, forked) {
                (false, _) => &mut c.startup,
                (true, false) => &mut c.prepare,
                (true, true) => &mut c.supervise,
            };
            *phase += 1;
            *c.by_name.entry(name.to_string()).or_default() += 1;
            c.calls.push(rest.to_string());
        } else if Some(pid) == child && !child_done {
            c.child += 1;
            *c.by_name.entry(format!("{name} (child)")).or_default() += 1;
            c.calls.push(rest.to_string());
        }
    }
    assert!(parent.is_some(), "no exec of {binary} in the trace");
    assert!(configured, "cagepipe never opened its configuration");
    assert!(child.is_some() && child_done, "the child never exec'd the command");
    c
}
