//! The system-call budget of one delivery: every system call cagepipe and
//! its child make from cagepipe's exec to the command's exec, counted by
//! strace on the real binary (file capabilities, an unprivileged caller, a
//! real container), per phase, and held under a ceiling so that it cannot
//! creep up unnoticed. Each kernel fallback (`[kernel] disable`) is counted
//! too, and what it adds is printed.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use crate::rig::strace::{self, Count};
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

/// One delivery of the probe under strace, with `extra` configuration.
fn traced_delivery(s: &Cage, extra: &str, trace: &Path) -> Count {
    let config = ConfigDir::with_pidfile_template(&s.piddir, extra);
    let user = &s.user;
    let env = s.env();
    let args: Vec<OsString> = rig::probe("report");
    let inner = rig::command(&config, s.caller, &args, &rig::env_refs(&env));
    let cmd = rig::strace::under_strace(&inner, &["-e", "signal=none", "-s", "64"], trace);
    let d = rig::run_with_stdin(cmd, b"x");
    assert_eq!(d.code(), Some(0), "delivery under strace failed: {d:?}");
    let report = rig::parse_report(&d.stdout);
    assert_eq!(report["uid"], user.uid.to_string(), "the command ran as the user");
    assert_eq!(report["ns_mnt"], s.container().ns_inode("mnt").to_string(), "the command ran in the container");
    let text = std::fs::read_to_string(trace).unwrap();
    strace::count(&text, &rig::installed_binary().display().to_string(), cfg!(debug_assertions))
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
    let c = strace::count(trace, "/x/cagepipe", false);
    assert_eq!((c.startup, c.prepare, c.child, c.supervise), (1, 3, 2, 3), "{c:?}");
    assert_eq!(c.by_name["execve (child)"], 1);
    // Each counted call as strace showed it, in order, the command's exec not among them.
    assert_eq!(c.calls.len(), c.total());
    assert_eq!((c.calls[0].as_str(), c.calls.last().unwrap().as_str()), ("brk(NULL) = 0x55", "exit_group(0) = ?"));
    assert!(c.calls.iter().any(|l| l.starts_with("setresuid(1000")));
    assert!(!c.calls.iter().any(|l| l.starts_with("execve(\"/bin/p\"")), "{:?}", c.calls);
    // The debug build's check before a close is left out, a real fcntl is not.
    let debug = trace.replace(
        "10 read(4, \"\", 8192) = 0\n",
        "10 read(4, \"\", 8192) = 0\n10 fcntl(4, F_GETFD) = 0x1 (flags FD_CLOEXEC)\n10 close(4) = 0\n10 fcntl(0, F_GETFD) = 0\n",
    );
    let d = strace::count(&debug, "/x/cagepipe", true);
    assert_eq!((d.supervise, d.debug_checks), (c.supervise + 2, 1), "{d:?}");
}
