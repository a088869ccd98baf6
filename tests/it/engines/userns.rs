//! User namespaces a user made: a rootless Podman container and a user's
//! own `unshare` sandbox are refused even when root's own configuration
//! names them, and a process that unshares namespaces of its own inside a
//! container's cgroup is never taken for the container.

use super::*;
use std::os::unix::process::CommandExt;

/// A delivery that must not have run: exit 75 with `why`, nothing on
/// stdout, and the marker `mark` (given to the probe) made nowhere.
fn assert_refused(d: &Delivery, why: &str, mark: &str, roots: &[PathBuf]) {
    assert_deferred(d, why);
    assert!(d.stdout.is_empty(), "nothing ran: {d:?}");
    for root in roots.iter().map(PathBuf::as_path).chain([Path::new("/")]) {
        let place = root.join(mark.trim_start_matches('/'));
        assert!(!place.exists(), "the command ran: {} exists", place.display());
    }
}

fn marked_probe(config: &ConfigDir, caller: Caller, mark: &str) -> Delivery {
    deliver(config, caller, &raw_pipe(&format!("|{PROBE} report --mark {mark}")), &[("PATH", "/bin:/usr/bin")], b"")
}

/// The children of `pid` (its threads' `children` lists).
fn children(pid: i32) -> Vec<i32> {
    let mut kids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        kids.extend(list.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    kids
}

/// Wait up to five seconds for `what` to be something.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kill a process we started and reap it.
fn end(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

// ---- rootless Podman ------------------------------------------------------

/// What rootless Podman needs of the host for one account, undone on drop:
/// subordinate ids (added only where useradd did not already add them),
/// the runtime directory /run/user/UID, the user's Podman storage and
/// every process Podman left running for the account (conmon, the pause
/// process that holds the user namespace).
struct RootlessHost {
    user: rig::User,
    added_subids: Option<String>,
    made_run_user: bool,
}

impl RootlessHost {
    fn new(user: &rig::User) -> RootlessHost {
        let has = |file: &str| {
            std::fs::read_to_string(file).unwrap_or_default().lines().any(|l| l.starts_with(&format!("{}:", user.name)))
        };
        let added_subids = if has("/etc/subuid") && has("/etc/subgid") {
            None
        } else {
            // A range of its own per uid, far above the test accounts.
            let first = 1_000_000 + u64::from(user.uid % 10_000) * 65_536;
            let range = format!("{first}-{}", first + 65_535);
            run(Command::new("usermod").args(["--add-subuids", &range, "--add-subgids", &range, &user.name]));
            Some(range)
        };
        let made_run_user = !Path::new("/run/user").exists();
        let host = RootlessHost { user: user.clone(), added_subids, made_run_user };
        std::fs::create_dir_all("/run/user").unwrap();
        let dir = host.runtime_dir();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        nix::unistd::chown(&dir, Some(user.uid.into()), Some(user.gid.into())).unwrap();
        host
    }

    fn runtime_dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/user/{}", self.user.uid))
    }

    /// `program` run as the user, as from a login: own uid, gid and no
    /// supplementary groups, a clean environment.
    fn as_user(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.uid(self.user.uid)
            .gid(self.user.gid)
            .env_clear()
            .env("HOME", &self.user.home)
            .env("USER", &self.user.name)
            .env("LOGNAME", &self.user.name)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .current_dir(&self.user.home)
            .stdin(Stdio::null());
        cmd
    }

    /// Rootless podman with the OCI runtime, cgroup manager and event log
    /// that work without systemd.
    fn podman(&self, args: &[&str]) -> String {
        run(self
            .as_user("/usr/bin/podman")
            .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(args))
    }
}

/// The processes of `uid` (a test account's: all started by its test).
fn processes_of(uid: u32) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let real = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next());
        // A zombie is gone; only its parent (or init) has to reap it.
        if real == Some(uid.to_string().as_str()) && !zombie(pid) {
            pids.push(pid);
        }
    }
    pids
}

impl Drop for RootlessHost {
    fn drop(&mut self) {
        // Podman's own cleanup: the containers, the storage, the pause
        // process. Then whatever of ours still runs.
        let _ = self
            .as_user("/usr/bin/podman")
            .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(["system", "reset", "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for pid in processes_of(self.user.uid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(self.user.home.join(".local/share/containers"));
        let _ = std::fs::remove_dir_all(self.user.home.join(".config/containers"));
        let _ = std::fs::remove_dir_all(self.runtime_dir());
        if self.made_run_user {
            let _ = std::fs::remove_dir("/run/user");
        }
        if let Some(range) = &self.added_subids {
            let _ = Command::new("usermod")
                .args(["--del-subuids", range, "--del-subgids", range, &self.user.name])
                .stdin(Stdio::null())
                .output();
        }
    }
}

#[test]
fn a_rootless_podman_container_or_a_users_own_sandbox_is_refused() {
    let Some(_running) = can_run(
        "a_rootless_podman_container_or_a_users_own_sandbox_is_refused",
        &[
            "/usr/bin/podman",
            "/usr/bin/conmon",
            "/usr/sbin/runc",
            "/usr/bin/newuidmap",
            "/usr/bin/newgidmap",
            "usermod",
        ],
    ) else {
        return;
    };
    let _lease = Lease::take();
    let (user, caller) = user("rl");
    let host = RootlessHost::new(&user);
    let tree = user.home.join("rootfs");
    run(Command::new("cp").arg("-a").arg(rootfs()).arg(&tree));
    run(Command::new("chown").arg("-R").arg(format!("{}:{}", user.uid, user.gid)).arg(&tree));

    // The user's own rootless Podman container.
    let rootfs_arg = tree.to_str().unwrap();
    // Every option before --rootfs: podman stops reading options after
    // the root directory.
    host.podman(&[
        "run",
        "-d",
        "--name",
        "rl",
        "--hostname",
        "rl",
        "--network",
        "none",
        "--rootfs",
        rootfs_arg,
        "/bin/sleep",
        "infinity",
    ]);
    let init: i32 = host.podman(&["inspect", "-f", "{{.State.Pid}}", "rl"]).trim().parse().unwrap();
    assert!(init > 0, "rootless podman container is not running");
    // It is what it claims: its user namespace maps root to the user.
    let uid_map = std::fs::read_to_string(format!("/proc/{init}/uid_map")).unwrap();
    let first: Vec<&str> = uid_map.split_whitespace().take(3).collect();
    assert_eq!(first, ["0", &user.uid.to_string(), "1"], "{uid_map}");
    assert_ne!(rig::ns_inode_of(init, "user"), rig::host_ns_inode("user"));

    // Root's configuration names it (a root-owned pidfile written after it
    // started): still refused, with the reason, and nothing runs.
    let (config, piddir) = ConfigDir::with_pidfile_dir("");
    rig::write_pidfile(&piddir.join(format!("{}.pid", user.name)), &format!("{init}\n"));
    let mark = format!("/tmp/cagepipe-ran-eng-rl-{}", std::process::id());
    let roots = [PathBuf::from(format!("/proc/{init}/root"))];
    let reason = "rootless containers are owned by the user and are not entered";
    let d = marked_probe(&config, caller, &mark);
    assert_refused(&d, reason, &mark, &roots);
    assert!(d.stderr.contains(&format!("uid {} created", user.uid)), "{}", d.stderr);

    // Pointing the podman backend at the user's own storage gets nowhere
    // either: the user's files are not believed.
    let storage = user.home.join(".local/share/containers/storage");
    assert!(storage.is_dir(), "rootless podman keeps its storage in {}", storage.display());
    let at_storage = ConfigDir::new(&format!(
        "[container]\nbackend = \"podman\"\nname = \"rl\"\npodman_root = \"{}\"\n",
        storage.display()
    ));
    let d = marked_probe(&at_storage, caller, &mark);
    assert_refused(&d, "is owned by uid", &mark, &roots);
    assert!(d.stderr.contains("cannot be trusted"), "{}", d.stderr);
    host.podman(&["rm", "--force", "--time", "0", "rl"]);

    // A user's own container, without Podman (its own user, mount and pid
    // namespaces and root directory): the same refusal.
    let mut sandbox = host
        .as_user("/usr/bin/unshare")
        .args(["--user", "--map-root-user", "--mount", "--pid", "--fork"])
        .arg(format!("--root={}", tree.display()))
        .args(["/bin/sleep", "60"])
        .spawn()
        .unwrap();
    let inner = wait_for("the sandbox's sleep", || {
        children(sandbox.id() as i32)
            .into_iter()
            .find(|&p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep"))
    });
    rig::write_pidfile(&piddir.join(format!("{}.pid", user.name)), &format!("{inner}\n"));
    let d = marked_probe(&config, caller, &mark);
    end(&mut sandbox);
    assert_refused(&d, reason, &mark, std::slice::from_ref(&tree));

    // Nothing of the account's Podman is left: no process, no runtime
    // directory, no subordinate ids this test added.
    let added = host.added_subids.clone();
    let runtime_dir = host.runtime_dir();
    drop(host);
    assert!(!runtime_dir.exists(), "{} is left", runtime_dir.display());
    let gone = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_of(user.uid);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < gone, "processes of {} left: {left:?}", user.name);
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(range) = added {
        let first = range.split('-').next().unwrap();
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(!text.contains(&format!("{}:{first}:", user.name)), "{file} keeps {range}: {text}");
        }
    }
}

// ---- processes that unshare inside a container's cgroup ------------------

/// `argv` started in the cgroup `rel` of every systemd hierarchy (as a
/// process the container forked would be), by root.
fn spawn_in_cgroup(rel: &str, argv: &[OsString]) -> Child {
    let procs: Vec<String> =
        systemd_hierarchies().iter().map(|h| h.join(rel).join("cgroup.procs").display().to_string()).collect();
    Command::new("/bin/sh")
        .args(["-c", "for f in $CGROUPS; do echo $$ > $f || exit 1; done; exec \"$@\"", "sh"])
        .args(argv)
        .env("CGROUPS", procs.join(" "))
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// The members of the cgroup `dir` and of the cgroups below it.
fn members(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        pending.extend(std::fs::read_dir(&d).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    pids
}

/// A process's pids in each pid namespace, outermost first.
fn nspid(pid: i32) -> Vec<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap_or_default();
    line.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

fn zombie(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().any(|l| l.starts_with("State:") && l.contains('Z'))
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

#[test]
fn cgroup_backend_never_takes_a_member_that_unshared_for_the_container() {
    let Some(_running) = can_run(
        "cgroup_backend_never_takes_a_member_that_unshared_for_the_container",
        &["/usr/bin/systemd-nspawn", "/usr/bin/nsenter", "/usr/bin/unshare"],
    ) else {
        return;
    };
    let _lease = Lease::take();
    let (user, caller) = user("cgu");
    let unit = format!("cpeng-{}.scope", user.name);
    let config = ConfigDir::new("[container]\nbackend = \"cgroup\"\ncgroup = \"cpeng-{user}.scope/payload\"\n");
    let c = Nspawn::start(&user.name, &unit, None);
    let leader = c.leader().unwrap();
    assert_eq!(nspid(leader).last(), Some(&1), "nspawn's payload is pid 1 of its pid namespace");
    let payload = c.payload();
    let (uid, gid) = (user.uid.to_string(), user.gid.to_string());

    // The user, inside the container and in its cgroup, unshares a user
    // and mount namespace of their own; then, besides, a pid namespace
    // too, whose first process is pid 1 one level deeper.
    for (variant, extra) in [("user+mount", &[][..]), ("user+mount+pid", &["--pid", "--fork"][..])] {
        let argv: Vec<OsString> = ["/usr/bin/nsenter", "-t", &leader.to_string(), "-a", "--root", "--wd"]
            .into_iter()
            .chain(["-S", &uid, "-G", &gid, "/bin/unshare", "--user", "--map-root-user", "--mount"])
            .chain(extra.iter().copied())
            .chain(["/bin/sleep", "60"])
            .map(OsString::from)
            .collect();
        let mut inside = spawn_in_cgroup(&format!("{unit}/payload"), &argv);
        let unshared = wait_for(&format!("the {variant} sleep in {}", payload.display()), || {
            members(&payload).into_iter().find(|&p| {
                let depth = if extra.is_empty() { 2 } else { 3 };
                comm(p) == "sleep"
                    && !zombie(p)
                    && nspid(p).len() == depth
                    && std::fs::metadata(format!("/proc/{p}/ns/user"))
                        .is_ok_and(|_| rig::ns_inode_of(p, "user") != rig::ns_inode_of(leader, "user"))
            })
        });
        assert_ne!(rig::ns_inode_of(unshared, "mnt"), rig::ns_inode_of(leader, "mnt"), "{variant}");
        let status = std::fs::read_to_string(format!("/proc/{unshared}/status")).unwrap();
        assert!(status.lines().any(|l| l.starts_with("Uid:") && l.contains(&uid)), "{variant} runs as the user");
        if !extra.is_empty() {
            assert_eq!(nspid(unshared).last(), Some(&1), "{variant}: pid 1 in a deeper pid namespace");
        }

        let d = probe(&config, caller);
        let r = assert_inside(&d, leader, &user.name, &user);
        assert_eq!(r["ns_user"], rig::ns_inode_of(leader, "user").to_string(), "{variant}");
        let text = check_text(&config, &user);
        assert!(text.contains(&format!("init {leader}: pid 1 of its own pid namespace")), "{variant}: {text}");
        end(&mut inside);
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(unshared), nix::sys::signal::SIGKILL);
    }
    drop(c);

    // A container without a pid namespace of its own (a mount namespace
    // and root directory, as a service manager's unit may have): its
    // oldest member is the container while all members share one mount
    // namespace; a member that unshared its own is a refusal.
    let flat = format!("cpeng-{}-flat.scope", user.name);
    for h in systemd_hierarchies() {
        std::fs::create_dir_all(h.join(&flat)).unwrap();
    }
    let flat_config = ConfigDir::new("[container]\nbackend = \"cgroup\"\ncgroup = \"cpeng-{user}-flat.scope\"\n");
    let result = std::panic::catch_unwind(|| {
        // Its root is pivoted to, not chrooted into: a process in a chroot
        // may not make a user namespace.
        let mut init = spawn_in_cgroup(
            &flat,
            &[
                "/usr/bin/unshare".into(),
                "--mount".into(),
                "/bin/sh".into(),
                "-c".into(),
                "mount --bind \"$0\" \"$0\" && mount -t proc proc \"$0/proc\" && cd \"$0\" && pivot_root . sys && exec /bin/sleep 60".into(),
                rootfs().into(),
            ],
        );
        let a = init.id() as i32;
        wait_for("the flat container's sleep", || (comm(a) == "sleep").then_some(()));
        let d = probe(&flat_config, caller);
        assert_eq!(d.code(), Some(0), "{d:?}");
        let r = rig::parse_report(&d.stdout);
        assert_eq!(r["ns_mnt"], rig::ns_inode_of(a, "mnt").to_string());
        assert_eq!(r["uid"], user.uid.to_string());
        let text = check_text(&flat_config, &user);
        assert!(
            text.contains(&format!("init {a}: the oldest member; all members share one mount namespace")),
            "{text}"
        );

        let argv: Vec<OsString> =
            ["/usr/bin/nsenter", "-t", &a.to_string(), "-m", "--root", "--wd", "-S", &uid, "-G", &gid]
                .into_iter()
                .chain(["/bin/unshare", "--user", "--map-root-user", "--mount", "/bin/sleep", "60"])
                .map(OsString::from)
                .collect();
        let mut intruder = spawn_in_cgroup(&flat, &argv);
        let b = intruder.id() as i32;
        wait_for("the intruder's sleep", || {
            (comm(b) == "sleep" && rig::ns_inode_of(b, "mnt") != rig::ns_inode_of(a, "mnt")).then_some(())
        });
        let mark = format!("/tmp/cagepipe-ran-eng-cgu-{}", std::process::id());
        let roots = [PathBuf::from(format!("/proc/{a}/root")), PathBuf::from(format!("/proc/{b}/root"))];
        let d = marked_probe(&flat_config, caller, &mark);
        assert_refused(&d, "disagree on their mount namespace", &mark, &roots);
        end(&mut intruder);

        // The intruder gone, the container is found again.
        let d = probe(&flat_config, caller);
        assert_eq!(d.code(), Some(0), "{d:?}");
        assert_eq!(rig::parse_report(&d.stdout)["ns_mnt"], rig::ns_inode_of(a, "mnt").to_string());
        end(&mut init);
    });
    let root_v2 = systemd_hierarchies().pop().unwrap().join(&flat);
    for pid in members(&root_v2) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !members(&root_v2).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    remove_cgroup(&flat);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
