//! The system-call budget of one delivery: every system call cagepipe and
//! its child make from cagepipe's exec to the command's exec, counted by
//! strace on the real binary (file capabilities, an unprivileged caller, a
//! real container), per phase, and held under a ceiling so that it cannot
//! creep up unnoticed. Each kernel fallback (`[kernel] disable`) is counted
//! too, and what it adds is printed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use crate::rig::{
    self, Cage, ConfigDir,
    Need::{Root, Tool},
};

/// Calls from cagepipe's exec to the command's exec (parent and child), on
/// a kernel with pidfd, clone3 and close_range: the figure measured on
/// Linux 6.x (Debian 12, glibc, 9 v1 hierarchies, the dynamic debug build:
/// 233, its own fd checks left out; see `budget_is_held`), plus a small
/// margin for what varies between machines (the size of the user database,
/// the number of v1 hierarchies). About 30 of them are the dynamic
/// loader's, which the static build the packages ship does not make.
const BUDGET: usize = 250;

/// What each fallback may add on top of the budget.
const FALLBACK_BUDGET: &[(&str, usize)] =
    &[("pidfd", 40), ("close_range", 1100), ("clone_into_cgroup", 40), ("clone_vm", 10)];

/// The calls of one delivery, by phase.
#[derive(Debug, Default)]
struct Count {
    /// cagepipe's exec to its configuration's open: the loader, the Rust
    /// runtime, start-up (descriptors, self-check).
    startup: usize,
    /// The configuration's open to the fork: configuration, account,
    /// resolving and pinning the container, opening its cgroups, entering
    /// its namespaces.
    prepare: usize,
    /// The child, from its birth to the command's exec.
    child: usize,
    /// The parent after the fork: the drop, the report, the wait, the log.
    supervise: usize,
    /// The debug build's own descriptor checks, not counted.
    debug_checks: usize,
    /// Every call, by name.
    by_name: BTreeMap<String, usize>,
}

impl Count {
    fn total(&self) -> usize {
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
fn count(trace: &str, binary: &str, debug: bool) -> Count {
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
            }
            continue;
        }
        let Some(name) = call_name(rest) else { continue };
        if Some(pid) == parent {
            if !forked && name.starts_with("clone") {
                c.prepare += 1;
                *c.by_name.entry(name.to_string()).or_default() += 1;
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
        } else if Some(pid) == child && !child_done {
            c.child += 1;
            *c.by_name.entry(format!("{name} (child)")).or_default() += 1;
        }
    }
    assert!(parent.is_some(), "no exec of {binary} in the trace");
    assert!(configured, "cagepipe never opened its configuration");
    assert!(child.is_some() && child_done, "the child never exec'd the command");
    c
}

/// One delivery of the probe under strace, with `extra` configuration.
fn traced_delivery(s: &Cage, extra: &str, trace: &Path) -> Count {
    let config = ConfigDir::with_pidfile_template(&s.piddir, extra);
    let user = &s.user;
    let env = s.env();
    let args: Vec<OsString> = rig::probe("report");
    let inner = rig::command(&config, s.caller, &args, &rig::env_refs(&env));
    // strace runs as root (ptrace of a capability-raising exec needs
    // CAP_SYS_PTRACE in the tracer, or the file capabilities are not granted).
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "signal=none", "-s", "64", "-o"]).arg(trace).arg("--").arg(inner.get_program());
    cmd.args(inner.get_args()).env_clear();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    if let Some(dir) = inner.get_current_dir() {
        cmd.current_dir(dir);
    }
    let d = rig::run_with_stdin(cmd, b"x");
    assert_eq!(d.code(), Some(0), "delivery under strace failed: {d:?}");
    let report = rig::parse_report(&d.stdout);
    assert_eq!(report["uid"], user.uid.to_string(), "the command ran as the user");
    assert_eq!(report["ns_mnt"], s.container().ns_inode("mnt").to_string(), "the command ran in the container");
    let text = std::fs::read_to_string(trace).unwrap();
    count(&text, &rig::installed_binary().display().to_string(), cfg!(debug_assertions))
}

fn print(label: &str, c: &Count) {
    let _ = writeln!(
        std::io::stderr(),
        "budget {label:<26} total {:>5}   start-up {:>4}   prepare {:>4}   child {:>4}   supervise {:>4}   \
         (debug-build fd checks left out: {})",
        c.total(),
        c.startup,
        c.prepare,
        c.child,
        c.supervise,
        c.debug_checks
    );
}

#[test]
fn budget_is_held() {
    let Some(_test) = rig::need(&[Root, Tool("strace")]) else { return };
    let s = rig::cage("budget").start();
    let trace = rig::scratch().join("budget.trace");
    // Twice: the first run may differ (a cold page cache), the second is
    // what Exim's deliveries see.
    traced_delivery(&s, "", &trace);
    let base = traced_delivery(&s, "", &trace);
    // CAGEPIPE_BUDGET_TRACE=FILE keeps a copy of the counted trace, to see
    // what each call is for (and FILE.FEATURE of each fallback's).
    let keep = std::env::var_os("CAGEPIPE_BUDGET_TRACE");
    if let Some(keep) = &keep {
        std::fs::copy(&trace, keep).unwrap();
    }
    print("all features", &base);
    let mut names: Vec<(&String, &usize)> = base.by_name.iter().collect();
    names.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let listing: Vec<String> = names.iter().map(|(n, k)| format!("{n} {k}")).collect();
    let _ = writeln!(std::io::stderr(), "budget calls: {}", listing.join(", "));
    let mut over = Vec::new();
    for (feature, allowed) in FALLBACK_BUDGET {
        let c = traced_delivery(&s, &format!("[kernel]\ndisable = [\"{feature}\"]\n"), &trace);
        if let Some(keep) = &keep {
            let mut name = keep.clone();
            name.push(format!(".{feature}"));
            std::fs::copy(&trace, name).unwrap();
        }
        print(&format!("without {feature}"), &c);
        let _ = writeln!(std::io::stderr(), "budget without {feature} adds {}", c.total() as i64 - base.total() as i64);
        if c.total() > BUDGET + allowed {
            over.push(format!("without {feature}: {} > {}", c.total(), BUDGET + allowed));
        }
    }
    let _ = std::fs::remove_file(&trace);
    assert!(
        base.total() <= BUDGET,
        "{} system calls from cagepipe's exec to the command's exec, over the budget of {BUDGET}: {base:?}",
        base.total()
    );
    assert!(over.is_empty(), "fallbacks over their budget: {over:?}");
}

#[test]
fn the_counter_counts_each_call_once_and_follows_the_child() {
    let _test = rig::need_nothing();
    // A trace as strace -f writes it: the launcher, cagepipe's exec, an
    // interrupted call, the fork, the child's failed and successful execs.
    let trace = "\
10 execve(\"/x/cagepipe\", [\"cagepipe\"], 0x1 /* 0 vars */) = 0
10 brk(NULL) = 0x55
10 openat(4, \"cagepipe.toml\", O_RDONLY) = 3
10 read(3, <unfinished ...>
10 <... read resumed>\"x\", 10) = 1
10 clone3({flags=CLONE_INTO_CGROUP, exit_signal=SIGCHLD}, 88 <unfinished ...>
11 setresuid(1000, 1000, 1000) = 0
10 <... clone3 resumed>) = 11
11 execve(\"/usr/local/bin/p\", [\"p\"], 0x2 /* 1 var */) = -1 ENOENT (No such file or directory)
11 execve(\"/bin/p\", [\"p\"], 0x2 /* 1 var */ <unfinished ...>
10 read(4, \"\", 8192) = 0
11 <... execve resumed>) = 0
11 write(1, \"not counted\", 11) = 11
10 wait4(11, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 11
10 --- SIGCHLD {si_signo=SIGCHLD} ---
10 exit_group(0) = ?
10 +++ exited with 0 +++
";
    let c = count(trace, "/x/cagepipe", false);
    assert_eq!((c.startup, c.prepare, c.child, c.supervise), (1, 3, 2, 3), "{c:?}");
    assert_eq!(c.by_name["execve (child)"], 1);
    // The debug build's check before a close is left out, a real fcntl is not.
    let debug = trace.replace(
        "10 read(4, \"\", 8192) = 0\n",
        "10 read(4, \"\", 8192) = 0\n10 fcntl(4, F_GETFD) = 0x1 (flags FD_CLOEXEC)\n10 close(4) = 0\n10 fcntl(0, F_GETFD) = 0\n",
    );
    let d = count(&debug, "/x/cagepipe", true);
    assert_eq!((d.supervise, d.debug_checks), (c.supervise + 2, 1), "{d:?}");
}
