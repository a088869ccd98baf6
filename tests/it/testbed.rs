//! The test bed itself: `testbed/container` makes real containers (their
//! own namespaces, cgroups in every hierarchy, pidfile, rootfs with the
//! users' homes) and takes them apart again; the probe reports what it
//! should. Asserted from the host and from inside.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::rig::container::{cgroup_dir, cgroup_lines, cgroup_mounts, container_script, TESTBED_STATE_ROOT};
use crate::rig::{self, Container, ContainerOpts, Need::Root, Report, User, PROBE_IN_CONTAINER};

/// Namespaces every container has of its own (`user` only with --userns).
const OWN_NAMESPACES: [&str; 7] = ["mnt", "pid", "uts", "ipc", "net", "cgroup", "time"];

/// A pidfile in a directory that does not exist yet: the script creates it.
fn pidfile_for(name: &str) -> PathBuf {
    rig::scratch().join(format!("testbed-{name}/init.pid"))
}

fn report_of(out: &Output) -> Report {
    assert!(out.status.success(), "probe failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    rig::parse_report(&out.stdout)
}

fn dev_ino(path: impl AsRef<Path>) -> String {
    let meta = std::fs::metadata(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()));
    format!("{}:{}", meta.dev(), meta.ino())
}

/// Everything that must hold for a running container, checked from the
/// host and then from inside.
fn assert_container_is_sound(c: &Container, user: &User, userns: bool) {
    assert!(rig::process_running(c.pid), "init {} runs", c.pid);
    for kind in OWN_NAMESPACES {
        assert_ne!(c.ns_inode(kind), rig::host_ns_inode(kind), "{kind} namespace is new");
    }
    if userns {
        assert_ne!(c.ns_inode("user"), rig::host_ns_inode("user"), "user namespace is new");
    } else {
        assert_eq!(c.ns_inode("user"), rig::host_ns_inode("user"), "host user namespace");
    }

    // In its own cgroup in the v2 tree and in every v1 hierarchy, nested
    // under the cgroup of whoever started it (this test).
    let mounts = cgroup_mounts();
    let lines = cgroup_lines(c.pid);
    let mine = cgroup_lines(std::process::id() as i32);
    assert!(mounts.iter().any(|m| m.fs_type == "cgroup2"), "cgroup2 is mounted");
    let mounted: Vec<_> = lines.iter().filter(|l| cgroup_dir(l, &mounts).is_some()).collect();
    assert_eq!(c.cgroup_dirs().len(), mounted.len(), "a cgroup in every mounted hierarchy: {lines:?}");
    for line in &mounted {
        let base = mine.iter().find(|m| m.hierarchy == line.hierarchy).expect("same hierarchies");
        let expected = format!("{}/cagepipe-testbed/{}", base.path.trim_end_matches('/'), c.name);
        assert_eq!(line.path, expected, "hierarchy {}:{}", line.hierarchy, line.controllers);
    }
    for dir in c.cgroup_dirs() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        assert!(procs.lines().any(|p| p == c.pid.to_string()), "{} lists the init", dir.display());
    }

    // The pidfile: the pid, a newline, root-owned 0644.
    let pidfile = c.pidfile.as_ref().expect("tests give every container a pidfile");
    assert_eq!(std::fs::read_to_string(pidfile).unwrap(), format!("{}\n", c.pid));
    let meta = std::fs::metadata(pidfile).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (0, 0, 0o644), "pidfile owner/mode");
    let dir = std::fs::metadata(pidfile.parent().unwrap()).unwrap();
    assert_eq!((dir.uid(), dir.mode() & 0o7777), (0, 0o755), "pidfile directory");

    // The home is the container's: in its rootfs, owned by the user's
    // host ids (which is how its inside ids are stored on disk).
    let home = PathBuf::from(format!("/proc/{}/root/home/{}", c.pid, user.name));
    let meta = std::fs::metadata(&home).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (user.uid, user.gid, 0o750));
    assert_eq!(std::fs::read_to_string(home.join(".container-home")).unwrap(), format!("{}\n", c.name));

    // From inside, as root and as the user.
    let root = report_of(&c.probe_as_root(&[]));
    assert_eq!(root["hostname"], c.name);
    assert_eq!(root["uid"], "0");
    for kind in OWN_NAMESPACES.iter().chain(&["user"]) {
        assert_eq!(root[&format!("ns_{kind}")], c.ns_inode(kind).to_string(), "probe is in the {kind} ns");
    }
    assert_eq!(root["root_dev_ino"], dev_ino(format!("/proc/{}/root", c.pid)), "probe's / is the container's");
    let as_user = report_of(&c.probe_as(&user.name, &[]));
    let (uid, gid) = c.inside_ids(&user.name);
    assert_eq!((as_user["uid"].as_str(), as_user["gid"].as_str()), (&*uid.to_string(), &*gid.to_string()));
    assert_eq!(as_user["hostname"], c.name);
    assert_eq!(as_user["home_marker"], c.name, "the home inside is the container's");
}

/// Stop `c` and check nothing of it is left.
fn stop_and_assert_gone(mut c: Container) {
    let dirs = c.cgroup_dirs();
    let state = c.state_dir();
    let pid = c.pid;
    let started = Instant::now();
    c.stop().unwrap();
    eprintln!("stop {} took {:?}", c.name, started.elapsed());
    assert!(!rig::process_running(pid), "init {pid} is dead");
    // (The cagepipe-testbed group above them goes once no other
    // container, say of a parallel test, uses it.)
    for dir in &dirs {
        assert!(!dir.exists(), "{} removed", dir.display());
    }
    assert!(!state.exists(), "{} removed", state.display());
    if let Some(pidfile) = &c.pidfile {
        assert!(!pidfile.exists(), "stop removes the pidfile that still names its init");
        std::fs::remove_dir(pidfile.parent().unwrap()).unwrap();
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&state.display().to_string()), "no mounts left under {}", state.display());
    // Idempotent.
    let again = rig::stop_container(&c.name);
    assert!(again.status.success(), "second stop: {}", String::from_utf8_lossy(&again.stderr));
}

fn timed_start(name: &str, opts: &ContainerOpts) -> Container {
    let started = Instant::now();
    let c = Container::start(name, opts);
    eprintln!("start {name} took {:?}", started.elapsed());
    c
}

#[test]
fn plain_container_has_its_own_namespaces_cgroups_and_home() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let user = rig::test_user("cptest-testbed");
    let name = rig::unique_name("plain");
    let opts =
        ContainerOpts { users: vec![user.name.clone()], pidfile: Some(pidfile_for(&name)), ..Default::default() };
    let c = timed_start(&name, &opts);
    assert_container_is_sound(&c, &user, false);
    // pivot_root: the mount namespace's root is the container's root.
    let ns_root = report_of(&run(Command::new("nsenter")
        .args(["-t", &c.pid.to_string(), "--all"])
        .args([PROBE_IN_CONTAINER, "report"])));
    assert_eq!(ns_root["root_dev_ino"], dev_ino(format!("/proc/{}/root", c.pid)));
    stop_and_assert_gone(c);
}

#[test]
fn user_namespace_container_maps_ids() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let user = rig::test_user("cptest-testbed");
    let name = rig::unique_name("userns");
    let opts = ContainerOpts {
        users: vec![user.name.clone()],
        userns: true,
        pidfile: Some(pidfile_for(&name)),
        ..Default::default()
    };
    let c = timed_start(&name, &opts);
    assert_container_is_sound(&c, &user, true);
    let maps = |file: &str| -> Vec<Vec<u64>> {
        std::fs::read_to_string(format!("/proc/{}/{file}", c.pid))
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
            .collect()
    };
    let default = vec![vec![0, 100_000, 1000], vec![1000, 1000, 59_000]];
    assert_eq!(maps("uid_map"), default);
    assert_eq!(maps("gid_map"), default);
    // The container's root is 100000 outside and owns its /etc.
    assert_eq!(std::fs::metadata(format!("/proc/{}/root/etc", c.pid)).unwrap().uid(), 100_000);
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid)).unwrap();
    assert!(status.lines().any(|l| l.split_whitespace().eq(["Uid:", "100000", "100000", "100000", "100000"])));
    stop_and_assert_gone(c);

    // A shifted map: the user's host ids appear as 5000/6000 inside; on
    // disk the home still belongs to the host ids.
    let name = rig::unique_name("usernsmap");
    let opts = ContainerOpts {
        users: vec![user.name.clone()],
        uid_map: Some(format!("0 100000 1000,5000 {} 1", user.uid)),
        gid_map: Some(format!("0 100000 1000,6000 {} 1", user.gid)),
        pidfile: Some(pidfile_for(&name)),
        ..Default::default()
    };
    let c = timed_start(&name, &opts);
    assert_eq!(c.inside_ids(&user.name), (5000, 6000));
    assert_container_is_sound(&c, &user, true);
    let group = std::fs::read_to_string(format!("/proc/{}/root/etc/group", c.pid)).unwrap();
    assert!(group.lines().any(|l| l == format!("{}:x:6000:", user.name)), "{group}");
    stop_and_assert_gone(c);

    // Not mapped at all: a loud failure, nothing left behind.
    let name = rig::unique_name("usernsunmapped");
    let opts =
        ContainerOpts { users: vec![user.name.clone()], uid_map: Some("0 200000 65536".into()), ..Default::default() };
    let err = Container::try_start(&name, &opts).unwrap_err();
    assert!(err.contains("is not mapped"), "{err}");
    assert!(!Path::new(TESTBED_STATE_ROOT).join(&name).exists());
}

#[test]
fn chroot_container_has_a_process_root_unlike_its_namespace_root() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let user = rig::test_user("cptest-testbed");
    let name = rig::unique_name("chroot");
    let opts = ContainerOpts {
        users: vec![user.name.clone()],
        chroot: true,
        pidfile: Some(pidfile_for(&name)),
        ..Default::default()
    };
    let c = timed_start(&name, &opts);
    // assert_container_is_sound enters with nsenter --root --wd.
    assert_container_is_sound(&c, &user, false);
    let root = std::fs::read_link(format!("/proc/{}/root", c.pid)).unwrap();
    assert_eq!(root, c.state_dir().join("rootfs"));
    // Without --root, nsenter lands in the mount namespace's root: the
    // host-like tree the rootfs lives in, where the probe is not bound.
    let ns_root = run(Command::new("nsenter").args(["-t", &c.pid.to_string(), "--all", "stat", "-c", "%d:%i", "/"]));
    assert!(ns_root.status.success(), "{ns_root:?}");
    let ns_root = String::from_utf8(ns_root.stdout).unwrap();
    assert_ne!(ns_root.trim(), dev_ino(format!("/proc/{}/root", c.pid)));
    let probe_outside = format!("{}/rootfs{}", c.state_dir().display(), PROBE_IN_CONTAINER);
    let status = Command::new("nsenter")
        .args(["-t", &c.pid.to_string(), "--all", "test", "-x", &probe_outside])
        .status()
        .unwrap();
    assert!(status.success(), "the rootfs (and its mounts) are visible below the namespace root");
    stop_and_assert_gone(c);
}

#[test]
fn stop_of_an_absent_container_succeeds() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let out = rig::stop_container(&rig::unique_name("never-started"));
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let out = run(Command::new(container_script()).args(["pid", &rig::unique_name("absent")]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn parallel_containers_do_not_interfere() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let user = rig::test_user("cptest-testbed");
    let started: Vec<Container> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let user = &user;
                scope.spawn(move || {
                    let name = rig::unique_name(&format!("parallel{i}"));
                    let opts = ContainerOpts {
                        users: vec![user.name.clone()],
                        userns: i == 1,
                        pidfile: Some(pidfile_for(&name)),
                        ..Default::default()
                    };
                    let c = timed_start(&name, &opts);
                    assert_container_is_sound(&c, user, i == 1);
                    c
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let [a, b]: [Container; 2] = started.try_into().unwrap();
    assert_ne!(a.pid, b.pid);
    for kind in OWN_NAMESPACES {
        assert_ne!(a.ns_inode(kind), b.ns_inode(kind), "{kind} namespaces differ");
    }
    assert!(a.cgroup_dirs().iter().all(|d| !b.cgroup_dirs().contains(d)));
    // Stopping one leaves the other whole.
    stop_and_assert_gone(a);
    assert_container_is_sound(&b, &user, true);
    stop_and_assert_gone(b);
}

#[test]
fn init_reaps_orphans() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let user = rig::test_user("cptest-testbed");
    let name = rig::unique_name("reaper");
    let opts =
        ContainerOpts { users: vec![user.name.clone()], pidfile: Some(pidfile_for(&name)), ..Default::default() };
    let c = timed_start(&name, &opts);
    // The shell exits at once; its background children are reparented to
    // the container's init, which must collect them when they exit.
    let out = run(c.nsenter().args(["sh", "-c", "for i in 1 2 3 4 5; do sleep 0.2 & done"]));
    assert!(out.status.success(), "{out:?}");
    let pid_ns = c.ns_inode("pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let in_container: Vec<(i32, char, i32)> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| std::fs::metadata(format!("/proc/{pid}/ns/pid")).map(|m| m.ino()).ok() == Some(pid_ns))
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let mut rest = stat.rsplit_once(") ")?.1.split(' ');
                let state = rest.next()?.chars().next()?;
                let ppid = rest.next()?.parse().ok()?;
                Some((pid, state, ppid))
            })
            .collect();
        if in_container == [(c.pid, 'S', in_container[0].2)] {
            break; // only the init is left
        }
        assert!(Instant::now() < deadline, "orphans not reaped: {in_container:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_and_assert_gone(c);
}

#[test]
fn failed_start_is_loud_and_leaves_nothing() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // Fails inside the new namespaces (the bind source vanishes between
    // the script's check and the mount is hard to arrange; an unreadable
    // one in a user namespace does it): stderr carries the setup log.
    let secret_dir = rig::fresh("testbed-secret");
    std::fs::create_dir_all(&secret_dir).unwrap();
    std::fs::set_permissions(&secret_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(secret_dir.join("file"), "x").unwrap();
    let name = rig::unique_name("failing");
    let pidfile_dir = pidfile_for(&name).parent().unwrap().to_owned();
    let opts = ContainerOpts {
        userns: true,
        bind_ro: vec![(secret_dir.join("file"), "/opt/secret".into())],
        pidfile: Some(pidfile_for(&name)),
        ..Default::default()
    };
    let err = Container::try_start(&name, &opts).unwrap_err();
    std::fs::remove_dir_all(&secret_dir).unwrap();
    assert!(err.contains("setup log") && err.contains("/opt/secret"), "{err}");
    assert!(err.contains("start of") && err.contains("failed"), "{err}");
    assert!(!Path::new(TESTBED_STATE_ROOT).join(&name).exists(), "state removed");
    assert!(!pidfile_dir.exists(), "no pidfile for a failed container");
    let mine = cgroup_lines(std::process::id() as i32);
    let mounts = cgroup_mounts();
    for line in &mine {
        if let Some(dir) = cgroup_dir(line, &mounts) {
            let dir = dir.join("cagepipe-testbed").join(&name);
            assert!(!dir.exists(), "{} removed", dir.display());
        }
    }

    // Refused before anything runs.
    for (args, words) in [
        (&["--user", "cptest-no-such-account"][..], "no such account"),
        (&["--bind-ro", "/etc:/usr/x"], "inside a mount the testbed owns"),
        (&["--bind-ro", "/no/such/path:/x"], "does not exist"),
        (&["--uid-map", "0 100000"], "is not 'IN OUT COUNT'"),
        (&["--frobnicate"], "unknown option"),
    ] {
        let name = rig::unique_name("refused");
        let out = run(Command::new(container_script()).args(["start", &name]).args(args));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(words), "{args:?}: stderr {stderr:?} should say {words:?}");
        assert!(out.stdout.is_empty());
        assert!(!Path::new(TESTBED_STATE_ROOT).join(&name).exists(), "state removed");
    }
    let out = run(Command::new(container_script()).args(["start", "bad_name"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid container name"), "{out:?}");
}

#[test]
fn no_cgroup_container_stays_in_the_callers_cgroups() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let name = rig::unique_name("nocgroup");
    let c = timed_start(&name, &ContainerOpts { no_cgroup: true, ..Default::default() });
    assert!(c.cgroup_dirs().is_empty());
    let mine = cgroup_lines(std::process::id() as i32);
    assert_eq!(cgroup_lines(c.pid), mine, "same cgroups as the test that started it");
    assert_ne!(c.ns_inode("cgroup"), rig::host_ns_inode("cgroup"), "still its own cgroup namespace");
    stop_and_assert_gone(c);
}

#[test]
fn restarting_a_name_replaces_the_old_container() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let name = rig::unique_name("restart");
    let opts = ContainerOpts { pidfile: Some(pidfile_for(&name)), ..Default::default() };
    let first = Container::start(&name, &opts);
    let second = Container::start(&name, &opts);
    assert!(!rig::process_running(first.pid), "the old init was killed");
    assert_ne!(first.pid, second.pid);
    let pidfile = opts.pidfile.as_ref().unwrap();
    assert_eq!(std::fs::read_to_string(pidfile).unwrap(), format!("{}\n", second.pid));
    // The first handle's container is gone; dropping it would stop the
    // replacement, which has the same name.
    std::mem::forget(first);
    stop_and_assert_gone(second);
}

// ---------------------------------------------------------------- probe ---

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn probe_with_stdin(args: &[&str], env: &[(&str, &[u8])], stdin: &[u8]) -> Output {
    use std::os::unix::ffi::OsStrExt;
    let mut cmd = Command::new(rig::probe_binary());
    cmd.arg("report").args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, std::ffi::OsStr::from_bytes(v));
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = pipe.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

#[test]
fn probe_report_round_trips_escapes_and_hashes_stdin() {
    let _test = rig::need_nothing();
    let odd = b"line one\nline\ttwo \\ =x\x01\xff\xc3\xa9";
    let message: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let out =
        probe_with_stdin(&["--stdin-hash", "--", "a b", "-x"], &[("ODD", odd), ("HOME", b"/nonexistent")], &message);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout.clone()).expect("the report is ASCII");
    assert!(text.lines().all(|l| l.contains('=')), "one key=value per line");
    let r = rig::parse_report(&out.stdout);
    assert_eq!(r["stdin_len"], message.len().to_string());
    assert_eq!(r["stdin_fnv64"], rig::fnv64(&message));
    assert_eq!(rig::fnv64(b""), "cbf29ce484222325");
    assert_eq!(rig::fnv64(b"a"), "af63dc4c8601ec8c", "FNV-1a 64 reference value");
    assert!(text.contains("env_ODD=line one\\nline\\ttwo \\\\ =x\\x01\\xff\\xc3\\xa9\n"), "{text}");
    assert_eq!(r["env_ODD"], String::from_utf8_lossy(odd));
    assert_eq!(r["env_count"], "2");
    assert_eq!(r["home_marker"], "-");
    assert_eq!(r["argv_count"], "6");
    assert_eq!((r["argv_3"].as_str(), r["argv_4"].as_str(), r["argv_5"].as_str()), ("--", "a b", "-x"));
    for key in [
        "uid",
        "cap_eff",
        "cap_bnd",
        "no_new_privs",
        "sig_ign",
        "sig_blk",
        "umask",
        "ns_mnt",
        "ns_pid_for_children",
        "cgroup",
        "fds",
        "cwd",
        "cwd_dev_ino",
        "root_dev_ino",
        "hostname",
        "pid",
        "ppid",
        "pgid",
        "sid",
        "groups",
    ] {
        assert!(r.contains_key(key), "report has {key}");
    }
    assert_eq!(r["ns_mnt"], rig::host_ns_inode("mnt").to_string());
    assert_eq!(r["root_dev_ino"], dev_ino("/"));
    // Whatever else the test process inherited (it is not cagepipe's job
    // here) comes after the standard three.
    assert!(r["fds"] == "0,1,2" || r["fds"].starts_with("0,1,2,"), "{}", r["fds"]);
}

#[test]
fn probe_sees_what_rust_start_up_would_hide() {
    let _test = rig::need_nothing();
    // An ignored SIGPIPE and a closed stdin must show as they are.
    let out = run(Command::new("sh").arg("-c").arg("trap '' PIPE; exec \"$0\" report <&-").arg(rig::probe_binary()));
    let r = report_of(&out);
    let ignored = u64::from_str_radix(&r["sig_ign"], 16).unwrap();
    assert_ne!(ignored & 1 << (libc::SIGPIPE - 1), 0, "SIGPIPE ignored: {}", r["sig_ign"]);
    let fds: Vec<&str> = r["fds"].split(',').collect();
    assert!(!fds.contains(&"0") && fds.starts_with(&["1", "2"]), "stdin stays closed: {fds:?}");
}

#[test]
fn probe_exits_and_signals_as_asked() {
    let _test = rig::need_nothing();
    use std::os::unix::process::ExitStatusExt;
    let out = probe_with_stdin(&["--exit", "42"], &[], b"");
    assert_eq!(out.status.code(), Some(42));
    assert!(!rig::parse_report(&out.stdout).is_empty(), "the report comes first");
    let out = probe_with_stdin(&["--signal", "15"], &[], b"");
    assert_eq!(out.status.signal(), Some(15));
    assert!(rig::parse_report(&out.stdout).contains_key("pid"), "flushed before the signal");
    // --read-bytes stops reading; the writer gets EPIPE, not a hang.
    let big = vec![b'x'; 1 << 20];
    let out = probe_with_stdin(&["--read-bytes", "10"], &[], &big);
    let r = report_of(&out);
    assert_eq!((r["stdin_len"].as_str(), r["stdin_fnv64"].clone()), ("10", rig::fnv64(&big[..10])));
    let out = probe_with_stdin(&["--exit", "300"], &[], b"");
    assert_eq!(out.status.code(), Some(2), "bad arguments are a usage error");
}

#[test]
fn probe_spawn_bg_leaves_a_child_in_its_process_group() {
    let _test = rig::need_nothing();
    let mut child = Command::new(rig::probe_binary())
        .args(["report", "--spawn-bg"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    // The background child keeps stdout open: read until bg_pid appears.
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&text).contains("bg_pid=") {
        let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
        assert_ne!(n, 0, "EOF before bg_pid");
        text.extend_from_slice(&buf[..n]);
    }
    while !text.ends_with(b"\n") {
        let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
        text.extend_from_slice(&buf[..n]);
    }
    let r = rig::parse_report(&text);
    let bg: i32 = r["bg_pid"].parse().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{bg}/stat")).unwrap();
    let pgid: i32 = stat.rsplit_once(") ").unwrap().1.split(' ').nth(2).unwrap().parse().unwrap();
    assert_eq!(pgid.to_string(), r["pgid"], "same process group");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(bg), nix::sys::signal::Signal::SIGKILL).unwrap();
}
