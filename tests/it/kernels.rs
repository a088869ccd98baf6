//! What differs between the kernels and cgroup layouts hosters run, with
//! the real binary (file capabilities, an unprivileged caller in the
//! cagepipe group) and real containers:
//!
//! - cgroup v2 trees as systemd and container managers shape them: the
//!   container's cgroup handing its controllers down to children, and a
//!   subtree delegated to the container, which arranges it as it likes
//!   (and can make the init's cgroup refuse newcomers);
//! - Landlock as far as the running kernel's ABI goes (Debian 12's 6.1 has
//!   ABI 2: `best-effort` is partial there, `required` defers);
//! - the fallbacks for what EL8's 4.18 lacks, each alone and all together,
//!   in one container (cheap enough for every layout under emulation).
//!
//! `testbed/kernel-matrix` runs them on Debian 12's 6.1 in `testbed/vm`'s
//! cgroup layouts; they also run on the hybrid CI host, where the cgroup2
//! hierarchy has no controllers of its own.

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::rig::{
    self, Cage, Container, Delivery,
    Need::{Root, Tool},
};
use rig::{probe, report};

const ALL_OFF: &str = "[kernel]\ndisable = [\"pidfd\", \"close_range\", \"clone_into_cgroup\", \"clone_vm\"]\n";

/// A cage whose configuration a test changes between deliveries: the text
/// the cage was built with, and `extra` after it.
fn reconfigure(s: &Cage, base: &str, extra: &str) {
    s.config.write(&format!("{base}{extra}"));
}

fn run(s: &Cage, args: &[OsString]) -> Delivery {
    s.deliver(args, b"a message\n")
}

/// Run `script` with sh inside the container as its root (uid 0 of its
/// user namespace, if it has one), in all its namespaces.
fn as_container_root(c: &Container, script: &str) {
    let out = c.nsenter().args(["sh", "-euc", script]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{script}\nfailed inside: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn each_kernel_fallback_alone_and_all_together_deliver_inside() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // What EL8's 4.18 lacks (pidfd, clone3, close_range),
    // forced off one at a time and all together, on whatever cgroup layout
    // this host has; one container with a user namespace for all of them
    // (a container start costs 30 s and more under emulation).
    let s = rig::cage("kfallbacks").container(|o, _| o.userns = true).start();
    let base = s.config_text();
    for disable in [
        "",
        "\"pidfd\"",
        "\"close_range\"",
        "\"clone_into_cgroup\"",
        "\"clone_vm\"",
        "\"pidfd\", \"close_range\", \"clone_into_cgroup\", \"clone_vm\"",
    ] {
        reconfigure(&s, &base, &format!("[kernel]\ndisable = [{disable}]\n"));
        let d = run(&s, &probe("report"));
        let r = report(&d);
        // Namespaces, every hierarchy's own cgroup, ids inside, no
        // capability, no_new_privs, descriptors, signals.
        rig::assert_contained_as(s.container(), &s.user.name, &r);
        assert_eq!(r["cwd"], s.user.home.display().to_string(), "disable = [{disable}]");
        assert_eq!(d.stderr, "", "disable = [{disable}]: a delivery says nothing");
    }
}

/// Container runtimes' and service managers' system-call filters refuse
/// clone3 (Docker's default seccomp profile answers ENOSYS, a systemd
/// `SystemCallFilter=` EPERM), so that programs fall back to clone: a
/// delivery under such a filter forks and joins the cgroup v2 by writing,
/// and still runs inside.
#[test]
fn with_clone3_refused_by_a_system_call_filter_the_delivery_forks_inside() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("kseccomp").start();
    for errno in [libc::ENOSYS, libc::EPERM] {
        // The filter is set where the delivery's command starts, as root
        // (CAP_SYS_ADMIN, so no no_new_privs, which would cost cagepipe its
        // file capabilities), and holds for everything started from there.
        let filtered = |mut cmd: std::process::Command| {
            // SAFETY: prctl with a filter built on the stack; nothing is
            // allocated between fork and exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || refuse_clone3(errno));
            }
            cmd
        };
        // The filter is in force: clone3 (here with no arguments, which
        // the kernel would answer EFAULT) gets the filter's answer.
        let probe_clone3 = format!("exit(syscall({}, 0, 0) == -1 ? $! + 0 : 0)", libc::SYS_clone3);
        let d = rig::run_with_stdin(
            filtered(s.command_via(Path::new("/usr/bin/perl"), &[], &["-e".into(), probe_clone3.into()])),
            b"",
        );
        assert_eq!(d.code(), Some(errno), "clone3 under the filter: {d:?}");
        let d = rig::run_with_stdin(filtered(s.command(&probe("report"))), b"a message\n");
        let r = report(&d);
        rig::assert_contained_as(s.container(), &s.user.name, &r);
        assert_eq!(d.stderr, "", "clone3 refused with {errno}: a delivery says nothing");
    }
}

/// Install a seccomp filter answering clone3 with `errno`.
fn refuse_clone3(errno: i32) -> std::io::Result<()> {
    let filter = [
        // Load the system call number; clone3 gets `errno`, all else runs.
        libc::sock_filter { code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, jt: 0, jf: 0, k: 0 },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_clone3 as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | errno as u32,
        },
        libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
    ];
    let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
    // SAFETY: a valid filter program that outlives the call.
    if unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program as *const libc::sock_fprog) } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Where the container is in cgroup v2 alone (`testbed/vm --layout v2`,
/// systemd's default), a delivery finds cgroup2's root by probing
/// /sys/fs/cgroup and never opens the mount table, which the kernel renders
/// whole on each read; where v1 hierarchies are in use (this hybrid CI
/// host, the v1 and hybrid layouts) it reads the table as before and
/// probes nothing. Either way the command runs in the container's own
/// cgroup of every hierarchy, and `check` says which way the mount was found.
#[test]
fn the_mount_table_is_read_only_where_cgroup_v1_is_in_use() {
    let Some(_test) = rig::need(&[Root, Tool("strace")]) else { return };
    let s = rig::cage("mtable").start();
    let trace = rig::fresh("mtable.trace");
    let traced = rig::strace::under_strace(&s.command(&probe("report")), &["-e", "signal=none", "-s", "128"], &trace);
    let d = rig::run_with_stdin(traced, b"a message\n");
    assert_eq!(d.code(), Some(0), "delivery under strace: {d:?}");
    rig::assert_contained_as(s.container(), &s.user.name, &report(&d));
    let text = read(&trace);
    std::fs::remove_file(&trace).unwrap();
    // cagepipe's own calls only: the wrapper that starts it (mount, unshare)
    // may read the mount table itself.
    let c = rig::strace::count(&text, &rig::installed_binary().display().to_string(), cfg!(debug_assertions));
    let opened_table: Vec<&String> =
        c.calls.iter().filter(|l| l.starts_with("open") && l.contains("/proc/self/mountinfo")).collect();
    let probed: Vec<&String> =
        c.calls.iter().filter(|l| l.starts_with("fstatfs(") && l.contains("f_type=CGROUP2_SUPER_MAGIC")).collect();
    let v2_alone = pure_v2();
    // What the lookup cost, for the log (`testbed/kernel-matrix` shows it).
    let lookup: Vec<&String> = c
        .calls
        .iter()
        .filter(|l| {
            ["mountinfo", "ns/cgroup", "\"sys\"", "\"fs\"", "\"cgroup\"", "fstatfs("].iter().any(|w| l.contains(w))
        })
        .collect();
    let lookup: Vec<String> =
        lookup.iter().map(|l| format!("\n  {}", l.chars().take(120).collect::<String>())).collect();
    rig::note(&format!("mount lookup (cgroup v2 alone: {v2_alone}; {} calls in all):{}", c.total(), lookup.concat()));
    if v2_alone {
        assert_eq!(opened_table, Vec::<&String>::new(), "cgroup v2 alone: the mount table is not read");
        assert_eq!(probed.len(), 1, "cgroup2's root is probed once: {:?}", c.calls);
    } else {
        assert_eq!(opened_table.len(), 1, "v1 hierarchies in use: the mount table is read once: {:?}", c.calls);
        assert_eq!(probed, Vec::<&String>::new(), "v1 hierarchies in use: nothing is probed");
    }
    let d = s.run(&[OsString::from("check")]);
    let out = String::from_utf8_lossy(&d.stdout);
    assert_eq!(d.code(), Some(0), "{d:?}");
    let how = if v2_alone {
        "cgroup2 root: /sys/fs/cgroup (cgroup2, hierarchy root; the mount table is not read)"
    } else {
        "cgroup mounts: from /proc/self/mountinfo (cgroup v1 hierarchies are in use)"
    };
    assert!(out.lines().any(|l| l.starts_with("rule") && l.ends_with(how)), "check says {how:?}:\n{out}");
}

/// The container's cgroup v2 directory on the host; `None` without a
/// cgroup2 mount (a v1-only host), after [`rig::skip_or_fail`].
fn v2_dir(c: &Container, test: &str) -> Option<PathBuf> {
    let dir = c.cgroup_dirs().into_iter().find(|d| d.join("cgroup.type").exists());
    if dir.is_none() {
        rig::skip_or_fail(test, "no cgroup2 hierarchy is mounted on this host (cgroup v1 only)");
    }
    dir
}

/// True if no cgroup v1 hierarchy is mounted: pure cgroup v2, as systemd
/// hosts run it (and `testbed/vm --layout v2`).
fn pure_v2() -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let v1 = mountinfo.lines().any(|l| l.split_once(" - ").is_some_and(|(_, fs)| fs.starts_with("cgroup ")));
    !v1 && mountinfo.contains(" - cgroup2 ")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {text:?} to {}: {e}", path.display()));
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// Move every process of cgroup v2 `from` into `to` (one pid per write, as
/// the kernel wants).
fn move_processes(from: &Path, to: &Path) {
    for pid in read(&from.join("cgroup.procs")).lines() {
        write(&to.join("cgroup.procs"), pid);
    }
    assert_eq!(read(&from.join("cgroup.procs")), "", "{} emptied", from.display());
}

/// `pid`'s /proc/PID/cgroup as a process inside the container reads it (in
/// the container's cgroup namespace), lines joined by ';' as the probe
/// reports its own.
fn cgroup_seen_inside(c: &Container, pid: i32) -> String {
    let out = c.nsenter().args(["cat", &format!("/proc/{pid}/cgroup")]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "cat /proc/{pid}/cgroup inside: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().collect::<Vec<_>>().join(";")
}

/// A process of the container's (in all its namespaces) that a test moves
/// into a cgroup of the container's tree, as the container's own services
/// would be. Killed with the container; killed and reaped on drop.
struct Workload {
    nsenter: Child,
    pid: i32,
}

impl Workload {
    fn start(c: &Container) -> Workload {
        let mut nsenter = c
            .nsenter()
            .args(["sleep", "600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // nsenter forks to enter the pid namespace: the sleep is its child.
        let children = format!("/proc/{0}/task/{0}/children", nsenter.id());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&children).unwrap_or_default();
            if let Some(pid) = text.split_whitespace().next().and_then(|p| p.parse().ok()) {
                return Workload { nsenter, pid };
            }
            if Instant::now() > deadline || nsenter.try_wait().unwrap().is_some() {
                let _ = nsenter.kill();
                let _ = nsenter.wait();
                panic!("the workload process did not start inside {}", c.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGKILL);
        let _ = self.nsenter.wait();
    }
}

#[test]
fn controllers_handed_down_below_the_containers_cgroup_leave_the_command_in_the_inits_cgroup() {
    let test = "controllers_handed_down_below_the_containers_cgroup_leave_the_command_in_the_inits_cgroup";
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("knested").start();
    let base = s.config_text();
    let Some(top) = v2_dir(s.container(), test) else { return };
    // What systemd in a container, or a manager that keeps the payload in a
    // leaf, makes of it: the container's processes in a leaf, the
    // container's cgroup handing every controller it has to its children
    // (allowed now that it holds no process), and a second child with a
    // process of its own.
    let init_scope = top.join("init.scope");
    let workload_dir = top.join("workload");
    std::fs::create_dir(&init_scope).unwrap();
    std::fs::create_dir(&workload_dir).unwrap();
    move_processes(&top, &init_scope);
    let offered = words(&read(&top.join("cgroup.controllers")));
    if pure_v2() {
        // systemd enables them from the root down (testbed/vm's v2 layout).
        for c in ["memory", "pids"] {
            assert!(offered.iter().any(|o| o == c), "pure cgroup v2: {c} reaches the container: {offered:?}");
        }
    }
    let enable: Vec<String> = offered.iter().map(|c| format!("+{c}")).collect();
    if !enable.is_empty() {
        write(&top.join("cgroup.subtree_control"), &enable.join(" "));
    }
    assert_eq!(words(&read(&top.join("cgroup.subtree_control"))), offered, "every controller handed down");
    assert_eq!(words(&read(&init_scope.join("cgroup.controllers"))), offered);
    rig::note(&format!("{test}: controllers enabled below the container's cgroup: {offered:?}"));
    let workload = Workload::start(s.container());
    write(&workload_dir.join("cgroup.procs"), &workload.pid.to_string());

    let inits = cgroup_seen_inside(s.container(), 1);
    assert!(inits.ends_with("0::/init.scope"), "the init is in the leaf: {inits}");
    // Born in the cgroup v2 by clone3, and joined through cgroup.procs.
    for extra in ["", ALL_OFF] {
        reconfigure(&s, &base, extra);
        let r = report(&run(&s, &probe("report")));
        // Relative to the container's cgroup namespace: a process in the
        // container's parent cgroup, or anywhere outside, reads "/.." here.
        assert_eq!(r["cgroup"], inits, "{extra}: the command is in the init's cgroups, every hierarchy");
        assert_eq!(r["ns_cgroup"], s.container().ns_inode("cgroup").to_string());
    }
    assert_eq!(read(&workload_dir.join("cgroup.procs")).trim(), workload.pid.to_string(), "the workload untouched");
}

/// The container root's ids on the host: what uid and gid 0 of `pid`'s
/// user namespace map to.
fn container_root_ids(pid: i32) -> (u32, u32) {
    let outside_of_0 = |file: &str| {
        let text = read(Path::new(&format!("/proc/{pid}/{file}")));
        text.lines()
            .find_map(|line| match words(line).as_slice() {
                [inside, outside, _] if inside == "0" => outside.parse().ok(),
                _ => None,
            })
            .unwrap_or_else(|| panic!("/proc/{pid}/{file} maps no id 0: {text}"))
    };
    (outside_of_0("uid_map"), outside_of_0("gid_map"))
}

#[test]
fn a_cgroup_subtree_delegated_to_the_container_gets_the_command_or_the_delivery_defers() {
    let test = "a_cgroup_subtree_delegated_to_the_container_gets_the_command_or_the_delivery_defers";
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("kdelegated").container(|o, _| o.userns = true).start();
    let base = s.config_text();
    let c = s.container();
    let Some(top) = v2_dir(c, test) else { return };
    // The manager's own process (testbed's launcher, the init's parent)
    // goes to a cgroup of its own, as LXC keeps its monitor apart; then the
    // container's cgroup is delegated as systemd's Delegate=yes does: the
    // directory and the files that move processes and hand controllers
    // down belong to the container's root.
    let monitor = top.join("monitor");
    std::fs::create_dir(&monitor).unwrap();
    for pid in read(&top.join("cgroup.procs")).lines().filter(|p| *p != c.pid.to_string()) {
        write(&monitor.join("cgroup.procs"), pid);
    }
    let (uid, gid) = container_root_ids(c.pid);
    for path in [top.clone(), top.join("cgroup.procs"), top.join("cgroup.threads"), top.join("cgroup.subtree_control")]
    {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    }
    // The container's root arranges its subtree from inside, through its
    // own cgroup2 mount, as systemd inside would: its init in a leaf two
    // levels down, every controller it was given handed down.
    let offered = words(&read(&top.join("cgroup.controllers")));
    let enable: Vec<String> = offered.iter().map(|c| format!("+{c}")).collect();
    let hand_down = |dir: &str| {
        if enable.is_empty() {
            String::new()
        } else {
            format!("echo '{}' >{dir}/cgroup.subtree_control\n", enable.join(" "))
        }
    };
    as_container_root(
        c,
        &format!(
            "mkdir -p /tmp/cg && mount -t cgroup2 cgroup2 /tmp/cg && cd /tmp/cg\nmkdir payload payload/init.scope\n\
             echo 1 >payload/init.scope/cgroup.procs\n{}{}cd / && umount /tmp/cg\n",
            hand_down("."),
            hand_down("payload"),
        ),
    );
    let leaf = top.join("payload/init.scope");
    assert_eq!(std::fs::metadata(&leaf).unwrap().uid(), uid, "the container made its cgroups itself");
    assert_eq!(words(&read(&leaf.join("cgroup.controllers"))), offered, "handed down to the init's cgroup");
    rig::note(&format!("{test}: controllers in the delegated subtree: {offered:?}"));
    let inits = cgroup_seen_inside(c, 1);
    assert!(inits.ends_with("0::/payload/init.scope"), "the init is where its root put it: {inits}");
    for extra in ["", ALL_OFF] {
        reconfigure(&s, &base, extra);
        let r = report(&run(&s, &probe("report")));
        assert_eq!(r["cgroup"], inits, "{extra}: the command is in the init's cgroups, every hierarchy");
        assert_eq!(r["uid"], c.inside_ids(&s.user.name).0.to_string());
    }

    // The container's root caps its init's cgroup at the processes it has
    // (pids.max). A process cannot be born there any more: clone3 into it
    // fails (EAGAIN), and cagepipe defers and runs nothing anywhere else.
    // Without clone3 (as on EL8's kernel) the command is forked outside and
    // moved in through cgroup.procs, which the kernel allows beyond
    // pids.max: it runs there, in the init's cgroup, and nowhere else.
    // That needs the pids controller in cgroup v2: always so in pure v2
    // (checked), never on a hybrid host, where pids is a v1 controller.
    if !pure_v2() && !offered.iter().any(|c| c == "pids") {
        rig::note(&format!(
            "{test}: pids.max part left out: pids is a cgroup v1 controller on this host ({offered:?} in v2); \
             testbed/kernel-matrix runs it in pure v2"
        ));
        return;
    }
    assert!(offered.iter().any(|c| c == "pids"), "pure cgroup v2: pids reaches the container: {offered:?}");
    as_container_root(
        c,
        "mkdir -p /tmp/cg && mount -t cgroup2 cgroup2 /tmp/cg\n\
         cat /tmp/cg/payload/init.scope/pids.current >/tmp/cg/payload/init.scope/pids.max\numount /tmp/cg\n",
    );
    assert_eq!(read(&leaf.join("pids.max")).trim(), "1", "the init alone");
    let marker = s.marker();
    reconfigure(&s, &base, "");
    let d = run(&s, &marker.probe(""));
    let reason = format!("cannot join cgroup {}: Resource temporarily unavailable", leaf.display());
    marker.assert_refused(&d, 75, &reason);
    reconfigure(&s, &base, "[kernel]\ndisable = [\"clone_into_cgroup\"]\n");
    let r = report(&run(&s, &marker.probe("")));
    assert_eq!(r["cgroup"], inits, "moved into the init's cgroup, beyond its pids.max");
    marker.assert_written();
}

/// The running kernel's Landlock ABI (0: none, or not enabled), asked of
/// the kernel directly, not of cagepipe.
fn landlock_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag
    // the kernel reads nothing and only returns a number.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    abi.max(0)
}

#[test]
fn landlock_is_enforced_as_far_as_the_kernels_abi_goes() {
    let test = "landlock_is_enforced_as_far_as_the_kernels_abi_goes";
    let Some(_test) = rig::need(&[Root]) else { return };
    let abi = landlock_abi();
    // testbed/kernel-matrix says which ABI the kernel it boots must have,
    // so that the partial path is known to be the one taken there.
    if let Ok(expected) = std::env::var("CAGEPIPE_EXPECT_LANDLOCK_ABI") {
        assert_eq!(abi.to_string(), expected, "this kernel's Landlock ABI");
    }
    rig::note(&format!("{test}: Landlock ABI {abi}"));
    let sandbox = |mode: &str| {
        format!(
            "[sandbox]\nlandlock = \"{mode}\"\nwrite = [\"{{home}}\", \"/tmp\", \"/dev/null\"]\n\
             execute = [\"/usr\", \"/bin\", \"/lib\", \"/lib64\", \"/opt/cagepipe-probe\"]\n"
        )
    };
    let s = rig::cage("klandlockabi").syslog().start();
    let base = s.config_text();
    // Writable for the user as far as file permissions go, but in no
    // `write` entry.
    let drop_dir = s.host_path("/srv/drop");
    std::fs::create_dir_all(&drop_dir).unwrap();
    std::fs::set_permissions(&drop_dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let home = s.user.home.display().to_string();

    reconfigure(&s, &base, &sandbox("best-effort"));
    let r = report(&run(&s, &probe(&format!("report --try-write /srv/drop/note --try-write {home}/note"))));
    let line = s.log().line();
    assert_eq!(r[&format!("try_write:{home}/note")], "ok");
    let (drop_write, sandbox_field) = match abi {
        0 => ("ok", " sandbox=\"not applied: "),
        1 => ("ok", " sandbox=\"not applied: the kernel's Landlock ABI 1 refuses every rename"),
        // Writes are restricted; truncate(2) of a file it may open is not.
        2 => {
            ("EACCES", " sandbox=\"partial: the kernel's Landlock ABI 2 cannot restrict truncate(2) (ABI 3, Linux 6.2)")
        }
        _ => ("EACCES", " sandbox=enforced "),
    };
    assert_eq!(r["try_write:/srv/drop/note"], drop_write, "ABI {abi}");
    assert!(line.contains(sandbox_field) && line.contains("outcome=exited exit=0"), "ABI {abi}: {line}");

    reconfigure(&s, &base, &sandbox("required"));
    let marker = s.marker();
    let d = run(&s, &marker.probe(""));
    let line = s.log().line();
    if abi >= 3 {
        report(&d);
        marker.assert_written();
        assert!(line.contains(" sandbox=enforced outcome=exited exit=0"), "{line}");
        return;
    }
    marker.assert_refused(&d, 75, "[sandbox] landlock = \"required\" cannot be met");
    for words in ["nothing was run", "\"best-effort\""] {
        assert!(d.stderr.contains(words), "stderr should say {words:?}: {}", d.stderr);
    }
    assert!(line.contains("outcome=deferred exit=75 reason=\"[sandbox] landlock = "), "{line}");
}
