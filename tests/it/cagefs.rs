//! The CageFS recipe (packaging/cagefs/): its script run exactly as its
//! systemd unit's ExecStart and ExecStopPost name it (there is no systemd
//! as PID 1 here), with testbed/cagefs-enter-user standing in for
//! CloudLinux's cagefs_enter_user (a mount namespace and root of the
//! user's own, no pid namespace, as CageFS gives), and real deliveries by
//! the real binary with its file capabilities, run as the unprivileged
//! user. What this proves is the recipe's logic, not that it works on
//! CloudLinux, where it was never tried.

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::rig;
use rig::{cagepipe_gid, Caller, ConfigDir, Delivery, User};

const UNIT: &str = include_str!("../../packaging/cagefs/cagepipe-cagefs@.service");

/// The unit's `KEY=` command for `user`: the script in this tree (the unit
/// names where an admin installs it) and its arguments, `%i` expanded.
fn unit_command(key: &str, user: &str) -> (PathBuf, Vec<String>) {
    let line = UNIT
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .unwrap_or_else(|| panic!("the unit has no {key}="));
    let mut words = line.split_whitespace();
    let program = Path::new(words.next().expect("a program"));
    assert_eq!(program.file_name().and_then(|n| n.to_str()), Some("cagepipe-cagefs"), "{key} runs the recipe's script");
    let args = words.map(|w| w.replace("%i", user)).collect();
    (rig::container::repo_dir().join("packaging/cagefs/cagepipe-cagefs"), args)
}

fn wait_until(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {seconds} s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `dev:ino` of what `path` leads to, as the probe reports `root_dev_ino`.
fn dev_ino(path: &str) -> String {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    format!("{}:{}", m.dev(), m.ino())
}

/// A user whose CageFS stand-in has a skeleton, a pidfile directory the
/// recipe writes to, and a cagepipe configuration that reads it.
struct Recipe {
    user: User,
    skeleton: PathBuf,
    piddir: PathBuf,
    config: ConfigDir,
    log: PathBuf,
    /// The running ExecStart.
    service: Option<Child>,
    /// Every caged process a run named, with its start time: stopped when
    /// the test ends if it still runs (and is still that process).
    caged: Vec<(i32, u64)>,
}

impl Recipe {
    fn new() -> Recipe {
        let user = rig::test_user("cptest-cagefs");
        let skeleton = rig::fresh_dir("cagefs-skeleton");
        for dir in ["usr", "proc", "tmp", "dev", "etc", "opt/cagepipe-probe"] {
            std::fs::create_dir_all(skeleton.join(dir)).unwrap();
        }
        std::fs::create_dir_all(skeleton.join(user.home.strip_prefix("/").unwrap())).unwrap();
        // A merged-/usr tree (Debian 12, EL 9): the loader and libraries
        // come through the host's /usr, mounted read-only by the stand-in.
        for link in ["bin", "sbin", "lib", "lib64"] {
            std::os::unix::fs::symlink(format!("usr/{link}"), skeleton.join(link)).unwrap();
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        let lines: String = passwd
            .lines()
            .filter(|l| l.starts_with("root:") || l.starts_with(&format!("{}:", user.name)))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(skeleton.join("etc/passwd"), lines).unwrap();
        std::fs::write(skeleton.join("etc/hostname"), "cagefs-standin\n").unwrap();
        let probe = skeleton.join(rig::PROBE_IN_CONTAINER.trim_start_matches('/'));
        std::fs::copy(rig::probe_binary(), &probe).unwrap();
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let piddir = rig::fresh_dir("cagefs-pids");
        let config = ConfigDir::with_pidfile_template(&piddir, "");
        let log = rig::fresh("cagefs-log");
        Recipe { user, skeleton, piddir, config, log, service: None, caged: Vec::new() }
    }

    fn pidfile(&self) -> PathBuf {
        self.piddir.join(format!("{}.pid", self.user.name))
    }

    /// The pid the pidfile names, if there is one.
    fn pidfile_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pidfile()).ok().map(|t| t.trim().parse().expect("a pid"))
    }

    /// The unit's command `key` as systemd would run it: as root, with the
    /// settings an admin puts in /etc/sysconfig/cagepipe-cagefs.
    fn unit(&self, key: &str) -> Command {
        let (script, args) = unit_command(key, &self.user.name);
        let mut cmd = Command::new(script);
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CAGEFS_ENTER", rig::container::repo_dir().join("testbed/cagefs-enter-user"))
            .env("CAGEFS_STANDIN_SKELETON", &self.skeleton)
            .env("CAGEPIPE_PIDDIR", &self.piddir)
            .stdin(Stdio::null())
            .current_dir("/");
        cmd
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// ExecStart, until the pidfile names a caged process: its pid.
    fn start(&mut self) -> i32 {
        assert!(self.service.is_none(), "already started");
        let log = std::fs::File::create(&self.log).unwrap();
        let child = self.unit("ExecStart").stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
        self.service = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid = loop {
            if let Some(pid) = self.pidfile_pid() {
                break pid;
            }
            if let Some(status) = self.service.as_mut().unwrap().try_wait().unwrap() {
                panic!("ExecStart ended ({status}) without a pidfile: {}", self.log_text());
            }
            assert!(Instant::now() < deadline, "no pidfile after 20 s: {}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        };
        self.caged.push((pid, rig::start_ticks(pid).expect("the caged process runs")));
        pid
    }

    /// Signal the running ExecStart and wait for it to end.
    fn signal_service(&mut self, signal: Signal) -> ExitStatus {
        let pid = self.service.as_ref().expect("started").id() as i32;
        kill(Pid::from_raw(pid), signal).unwrap();
        self.wait_service(&format!("ExecStart did not end after {signal}"))
    }

    /// The running ExecStart ends by itself.
    fn service_ends(&mut self) -> ExitStatus {
        self.wait_service("ExecStart still runs")
    }

    /// Its end, within 15 s; else `failure`, with the unit's log.
    fn wait_service(&mut self, failure: &str) -> ExitStatus {
        let mut child = self.service.take().expect("started");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{failure}: {}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn exec_stop_post(&self) {
        let out = self.unit("ExecStopPost").output().unwrap();
        assert!(out.status.success(), "ExecStopPost failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A delivery for the user, as Exim runs cagepipe.
    fn deliver(&self, args: &[OsString]) -> Delivery {
        let env = rig::cagepipe::exim_env(&self.user);
        let caller = Caller { uid: self.user.uid, gid: cagepipe_gid() };
        rig::deliver(&self.config, caller, args, &rig::env_refs(&env), b"")
    }

    /// A delivery of the probe lands in the cage of `caged`, and only
    /// there: its mount namespace and root, the host's pid namespace (CageFS
    /// has none of its own), the user's ids, nothing privileged; a file it
    /// writes to /tmp is in the cage's private /tmp.
    fn assert_lands_in(&self, caged: i32) {
        let written = format!("/tmp/cagefs-landed-{}", std::process::id());
        let d = self.deliver(&rig::probe(&format!("report --try-write {written}")));
        let r = rig::report(&d);
        let get = |k: &str| r.get(k).map(String::as_str).unwrap_or("(missing)");
        let cage_mnt = rig::ns_inode_of(caged, "mnt");
        assert_ne!(cage_mnt, rig::host_ns_inode("mnt"), "the stand-in gave no mount namespace");
        assert_eq!(get("ns_mnt"), cage_mnt.to_string(), "the cage's mount namespace: {r:#?}");
        assert_eq!(get("root_dev_ino"), dev_ino(&format!("/proc/{caged}/root")), "the cage's root: {r:#?}");
        assert_ne!(get("root_dev_ino"), dev_ino("/"), "not the host's root: {r:#?}");
        for kind in ["pid", "user", "net", "uts", "ipc"] {
            assert_eq!(get(&format!("ns_{kind}")), rig::host_ns_inode(kind).to_string(), "{kind}: {r:#?}");
        }
        for k in ["uid", "euid", "suid", "fsuid"] {
            assert_eq!(get(k), self.user.uid.to_string(), "{k}: {r:#?}");
        }
        for k in ["gid", "egid", "sgid", "fsgid"] {
            assert_eq!(get(k), self.user.gid.to_string(), "{k}: {r:#?}");
        }
        for k in ["cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb"] {
            assert_eq!(get(k), "0000000000000000", "{k}: {r:#?}");
        }
        assert_eq!(get("no_new_privs"), "1", "{r:#?}");
        assert_eq!(get("fds"), "0,1,2", "{r:#?}");
        assert_eq!(get(&format!("try_write:{written}")), "ok", "{r:#?}");
        assert!(Path::new(&format!("/proc/{caged}/root{written}")).exists(), "not in the cage's /tmp: {r:#?}");
        assert!(!Path::new(&written).exists(), "{written} landed on the host");
    }

    /// A delivery now defers (75) saying `words`, and runs nothing.
    fn assert_defers(&self, words: &str) {
        let d = self.deliver(&rig::probe("report"));
        rig::assert_refused(&d, 75, words);
    }
}

impl Drop for Recipe {
    fn drop(&mut self) {
        if let Some(child) = self.service.as_mut() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let _ = child.wait();
        }
        let ours = |&(pid, started): &(i32, u64)| rig::process_running(pid) && rig::start_ticks(pid) == Some(started);
        for &(pid, _) in self.caged.iter().filter(|c| ours(c)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // No panic here (this may run while a test is unwinding).
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.caged.iter().any(ours) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(self.pidfile());
    }
}

fn can_run() -> Option<rig::need::Running> {
    rig::need(&[
        rig::Need::Root,
        rig::Need::Tool("unshare"),
        rig::Need::Tool("setpriv"),
        rig::Need::Tool("chroot"),
        rig::Need::Tool("tail"),
    ])
}

#[test]
fn the_recipe_keeps_a_caged_process_that_deliveries_enter_and_stop_and_restart_keep_the_pidfile_true() {
    let Some(_test) = can_run() else { return };
    let mut recipe = Recipe::new();

    let caged = recipe.start();
    // cagepipe's rules for a pidfile, kept by the recipe: root's, not
    // writable by others, written after the process started (cagepipe
    // checks that one itself on every delivery).
    let meta = std::fs::metadata(recipe.pidfile()).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o644), "the pidfile is root's 0644");
    let status = std::fs::read_to_string(format!("/proc/{caged}/status")).unwrap();
    let uid_line = format!("Uid:\t{0}\t{0}\t{0}\t{0}", recipe.user.uid);
    assert!(status.lines().any(|l| l == uid_line), "the caged process is the user's: {status}");
    recipe.assert_lands_in(caged);

    // systemctl stop: SIGTERM to ExecStart. The pidfile goes, the caged
    // process with it, and mail waits (75).
    let stopped = recipe.signal_service(Signal::SIGTERM);
    assert!(stopped.success(), "a stop is a clean exit: {stopped}: {}", recipe.log_text());
    assert!(!recipe.pidfile().exists(), "the pidfile of a stopped unit stays: {}", recipe.log_text());
    assert!(!rig::process_running(caged), "the caged process {caged} outlived its unit");
    recipe.exec_stop_post();
    recipe.assert_defers("no pidfile");

    // systemctl start again: a new caged process, and deliveries go into
    // its namespace. (Its inode may be the old one's: the kernel reuses
    // the numbers of namespaces that are gone.)
    let again = recipe.start();
    assert_ne!(again, caged, "a new process");
    recipe.assert_lands_in(again);
    assert_eq!(recipe.signal_service(Signal::SIGTERM).code(), Some(0));
    recipe.exec_stop_post();
    recipe.assert_defers("no pidfile");
}

#[test]
fn a_caged_process_that_dies_or_a_stale_pidfile_is_never_believed_and_stop_post_removes_it() {
    let Some(_test) = can_run() else { return };
    let mut recipe = Recipe::new();

    // The user (or CageFS) ends the caged process: the script removes the
    // pidfile and fails, so that systemd's Restart=always starts a new one.
    let caged = recipe.start();
    kill(Pid::from_raw(caged), Signal::SIGKILL).unwrap();
    let ended = recipe.service_ends();
    assert_eq!(ended.code(), Some(1), "a failure for Restart=: {}", recipe.log_text());
    assert!(!recipe.pidfile().exists(), "the pidfile outlived its process: {}", recipe.log_text());
    recipe.assert_defers("no pidfile");
    recipe.exec_stop_post();

    // Restart=always: the next ExecStart cages a new process.
    let next = recipe.start();
    recipe.assert_lands_in(next);

    // The script itself is killed (SIGKILL: no trap runs), then its
    // unit's cgroup, as systemd does: the pidfile stays, naming a process
    // that is gone. (Here the script is stopped with SIGTERM and its
    // pidfile put back as a killed one leaves it: an orphaned caged
    // process would go to a PID 1 that never reaps it, and its zombie
    // would keep the test account from being removed.)
    assert!(recipe.signal_service(Signal::SIGTERM).success());
    wait_until("the caged process ends", 10, || !rig::process_running(next));
    rig::write_pidfile(&recipe.pidfile(), &format!("{next}\n"));
    let d = recipe.deliver(&rig::probe("report"));
    // Gone, or its number already taken by a later process: both refused.
    assert_eq!(d.code(), Some(75), "{d:?}");
    assert!(["does not exist", "is stale"].iter().any(|w| d.stderr.contains(w)), "{d:?}");
    assert!(d.stdout.is_empty(), "{d:?}");
    // ExecStopPost removes it.
    recipe.exec_stop_post();
    assert!(!recipe.pidfile().exists(), "ExecStopPost left the pidfile");
    recipe.assert_defers("no pidfile");
}
