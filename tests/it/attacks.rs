//! Attacks that must fail. Each test plays an unprivileged attacker (a test
//! user in the cagepipe group, as Exim's pipe process is, or the same user
//! inside the container) against the real binary with file capabilities,
//! and asserts exactly what happens: a refusal with its exit status and
//! message, or no effect at all. SECURITY.md has the table of attacks,
//! tests and the incidents they come from; the deliver module covers the
//! plain refusals (`every_failure_has_its_exit_code`) and is referenced,
//! not repeated, here.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::rig::{
    self, ConfigDir, Container, ContainerOpts, Delivery,
    Need::{Root, Tool},
    User, PROBE_IN_CONTAINER as PROBE,
};
use rig::{assert_contained_as, assert_refused, probe, raw_pipe, report, write_pidfile};

fn status_field(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).unwrap_or("").trim().to_owned()
}

/// The host pid of the one delivered command (a probe) running in `c`.
fn wait_for_probe(c: &Container) -> i32 {
    // A delivery takes milliseconds here, seconds under software emulation
    // (testbed/vm).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut pids = c.commands();
    while pids.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
        pids = c.commands();
    }
    assert_eq!(pids.len(), 1, "one delivered command in the container: {pids:?}");
    pids[0]
}

// ---- 1. another user's container ----------------------------------------

#[test]
fn another_users_container_cannot_be_asked_for() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let a = rig::cage("atk-who-a").start();
    let b = rig::cage("atk-who-b").start();
    let b_name: OsString = b.user.name.clone().into();
    // Whatever any of the refusals below would have run, in either container.
    let m = a.marker().also(b.container());

    // Options naming another user or configuration are root's alone
    // (the plain cases are in deliver::every_failure_has_its_exit_code).
    let cases: Vec<Vec<OsString>> = vec![
        [vec!["--user".into(), b_name.clone()], m.probe("")].concat(),
        [vec!["--config".into(), b.config.file().into()], m.probe("")].concat(),
        vec!["check".into(), b_name.clone()],
        vec!["--user".into(), b_name.clone(), "check".into()],
        [vec!["--dry-run".into(), "--user".into(), b_name.clone()], m.probe("")].concat(),
    ];
    for args in &cases {
        m.assert_refused(&a.run(args), 77, "is for root only");
    }

    // A makes herself root in a user namespace of her own and asks again:
    // the capabilities she gets there are worth nothing outside it, and
    // the root-owned configuration shows up as owned by nobody (65534).
    let own_root = ["/usr/bin/unshare", "--user", "--map-root-user", "--"];
    let as_own_root: Vec<Vec<OsString>> = vec![
        cases[0].clone(),
        [vec!["--config".into(), b.config.file().into(), "--user".into(), b_name.clone()], m.probe("")].concat(),
    ];
    for args in &as_own_root {
        let cmd = a.command_via(rig::installed_binary(), &own_root, args);
        m.assert_refused(&rig::run_with_stdin(cmd, b""), 75, "is owned by uid 65534, not root");
    }

    // Exim's variables and the working directory naming B: identity comes
    // from the uid, so it is still A's container, as A, with A's variables.
    let b_home = b.user.home.display().to_string();
    let env = [
        ("USER", b.user.name.as_str()),
        ("LOGNAME", b.user.name.as_str()),
        ("LOCAL_PART", b.user.name.as_str()),
        ("HOME", b_home.as_str()),
        ("PATH", "/bin:/usr/bin"),
    ];
    let r = report(&rig::deliver(&a.config, a.caller, &probe("report"), &env, b""));
    assert_contained_as(a.container(), &a.user.name, &r);
    assert_eq!(r["env_USER"], a.user.name);
    assert_eq!(r["env_LOGNAME"], a.user.name);
    assert_eq!(r["env_HOME"], a.user.home.display().to_string());
    assert_eq!(r["env_LOCAL_PART"], b.user.name, "Exim's local part passes through as data");
    assert_eq!(r["cwd"], "/", "B's home is not in A's container");

    // Pipe text naming B or cagepipe's options: words of A's own command.
    let r = report(&a.run(&probe(&format!("report -- --user {} --config /etc/shadow --", b.user.name))));
    assert_contained_as(a.container(), &a.user.name, &r);
    let argv: Vec<&str> = (3..8).map(|i| r[&format!("argv_{i}")].as_str()).collect();
    assert_eq!(argv, ["--user", b.user.name.as_str(), "--config", "/etc/shadow", "--"]);
    for text in [format!("--user={}", b.user.name), format!("--user {} {PROBE} report --mark {}", b.user.name, m.path)]
    {
        m.assert_refused(&a.run(&raw_pipe(&text)), 127, "not found inside the container");
    }
}

// ---- 2. paths ------------------------------------------------------------

fn pidfile_config(template: &Path) -> ConfigDir {
    ConfigDir::new(&format!("[container]\npidfile = \"{}\"\n", template.display()))
}

#[test]
fn pidfiles_that_lead_elsewhere_are_refused() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let a = rig::cage("atk-path-a").start();
    let b = rig::cage("atk-path-b").start();
    let a_pid = std::fs::read_to_string(&a.pidfile).unwrap();
    let b_pid = std::fs::read_to_string(&b.pidfile).unwrap();
    // Had any refusal below been a delivery, into A's container or B's.
    let m = a.marker().also(b.container());
    let report_args = m.probe("");

    // A's pidfile is a symbolic link to B's.
    std::fs::remove_file(&a.pidfile).unwrap();
    std::os::unix::fs::symlink(&b.pidfile, &a.pidfile).unwrap();
    m.assert_refused(&a.run(&report_args), 75, "is a symbolic link");
    std::fs::remove_file(&a.pidfile).unwrap();
    write_pidfile(&a.pidfile, &a_pid);
    assert_contained_as(a.container(), &a.user.name, &report(&a.run(&probe("report"))));

    // The pidfile directory is a symbolic link, to a directory where a
    // file with A's name names B's container.
    let elsewhere = rig::fresh_dir("atk-elsewhere");
    write_pidfile(&elsewhere.join(format!("{}.pid", a.user.name)), &b_pid);
    let link = rig::fresh("atk-link");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let d = a.deliver_with(&pidfile_config(&link.join("{user}.pid")), &report_args, b"");
    m.assert_refused(&d, 75, "is a symbolic link or not a directory");

    // A directory the user could write in (any pid could be put there).
    let open_dir = rig::fresh_dir("atk-open-dir");
    write_pidfile(&open_dir.join(format!("{}.pid", a.user.name)), &b_pid);
    let config = pidfile_config(&open_dir.join("{user}.pid"));
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    m.assert_refused(&a.deliver_with(&config, &report_args, b""), 75, "is writable by group or others");
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::chown(&open_dir, Some(nix::unistd::Uid::from_raw(a.user.uid)), None).unwrap();
    m.assert_refused(&a.deliver_with(&config, &report_args, b""), 75, &format!("is owned by uid {}", a.user.uid));

    // A per-user directory in the template, owned by its user.
    let per_user = rig::fresh_dir("atk-per-user");
    let own = per_user.join(&a.user.name);
    std::fs::create_dir(&own).unwrap();
    nix::unistd::chown(&own, Some(nix::unistd::Uid::from_raw(a.user.uid)), None).unwrap();
    write_pidfile(&own.join("pid"), &b_pid);
    let d = a.deliver_with(&pidfile_config(&per_user.join("{user}/pid")), &report_args, b"");
    m.assert_refused(&d, 75, &format!("is owned by uid {}", a.user.uid));

    // Not a regular file: a fifo nobody writes to is refused, not waited on.
    let fifo_dir = rig::fresh_dir("atk-fifo");
    nix::unistd::mkfifo(
        &fifo_dir.join(format!("{}.pid", a.user.name)),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    m.assert_refused(
        &a.deliver_with(&pidfile_config(&fifo_dir.join("{user}.pid")), &report_args, b""),
        75,
        "is not a regular file",
    );

    // A component longer than any file name.
    let long = rig::scratch().join("x".repeat(300)).join("{user}.pid");
    m.assert_refused(&a.deliver_with(&pidfile_config(&long), &report_args, b""), 75, "File name too long");
    for dir in [elsewhere, open_dir, per_user, fifo_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_file(link);
}

#[test]
fn user_names_and_templates_cannot_make_paths() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // Only root may name a user; even root cannot name one that is a path.
    let s = rig::cage("atk-names").start();
    let m = s.marker();
    let long = "a".repeat(33);
    for name in ["../../etc/passwd", "a/b", ".", "..", "-rf", "a b", "x\ny", long.as_str()] {
        let mut args: Vec<OsString> = vec!["--config".into(), s.config.file().into(), format!("--user={name}").into()];
        args.extend(m.probe(""));
        m.assert_refused(&rig::run_as_root(&args, b""), 64, "user name");
        let check: Vec<OsString> = vec!["--config".into(), s.config.file().into(), "check".into(), name.into()];
        let d = rig::run_as_root(&check, b"");
        assert_eq!(d.code(), Some(64), "check {name:?}: {d:?}");
    }
    // A template cannot produce '..' or NUL either (the user name never
    // contains '/' or starts with '.', so placeholders cannot make them).
    for template in ["/run/x/../{user}.pid", "/run/{user}/../../etc/pid", "/run/{user}\\u0000.pid", "run/{user}.pid"] {
        let config = ConfigDir::new(&format!("[container]\npidfile = \"{template}\"\n"));
        m.assert_refused(&s.deliver_with(&config, &m.probe(""), b""), 75, "[container] pidfile");
    }
}

#[test]
fn refusals_do_not_tell_whether_another_users_files_exist() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let a = rig::cage("atk-oracle-a").start();
    let b = rig::test_user("cptest-atk-oracle-b");
    let m = a.marker();
    let secret = b.home.join(".cagepipe-atk-secret");
    std::fs::write(&secret, "[container]\npidfile = \"/x\"\n").unwrap();
    let exists = secret.display().to_string();
    let missing = b.home.join(".cagepipe-atk-nothing").display().to_string();
    let with_probe = |mut args: Vec<OsString>| {
        args.extend(m.probe(""));
        args
    };
    let pairs: Vec<(Vec<OsString>, Vec<OsString>)> = vec![
        (
            with_probe(vec!["--config".into(), exists.clone().into()]),
            with_probe(vec!["--config".into(), missing.into()]),
        ),
        (
            with_probe(vec!["--config".into(), "/etc/shadow".into()]),
            with_probe(vec!["--config".into(), "/etc/no-shadow".into()]),
        ),
        (vec!["check".into(), b.name.clone().into()], vec!["check".into(), "cptest-atk-nobody".into()]),
        (
            with_probe(vec!["--user".into(), b.name.clone().into()]),
            with_probe(vec!["--user".into(), "cptest-atk-nobody".into()]),
        ),
    ];
    // Without syslog the audit line goes to stderr too, with a duration.
    let text = |d: &Delivery| {
        let words: Vec<&str> = d.stderr.split(' ').filter(|w| !w.starts_with("duration_ms=")).collect();
        words.join(" ")
    };
    for (there, not_there) in pairs {
        let (d1, d2) = (a.run(&there), a.run(&not_there));
        assert_eq!(d1.code(), Some(77), "{d1:?}");
        assert!(d1.stdout.is_empty(), "{d1:?}");
        m.assert_absent();
        assert_eq!(
            (d1.code(), &d1.stdout, text(&d1)),
            (d2.code(), &d2.stdout, text(&d2)),
            "{there:?} vs {not_there:?}"
        );
    }
    std::fs::remove_file(secret).unwrap();
}

// ---- 3. a container the user built ---------------------------------------

/// A process `user` starts in new user and mount namespaces of its own: a
/// "container" anyone can make. Returns it once its namespaces exist.
fn fake_container(user: &User) -> std::process::Child {
    let mut child = Command::new("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        // Its own root directory too, as a real container has: so that only
        // the owner of its user namespace gives it away.
        .args(["--clear-groups", "--", "unshare", "--user", "--map-root-user", "--mount", "--root=/usr", "--"])
        .args(["/bin/sleep", "120"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    for _ in 0..500 {
        if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.ends_with("sleep")) {
            assert_ne!(rig::ns_inode_of(pid, "mnt"), rig::host_ns_inode("mnt"), "the fake has its own mounts");
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the user's own namespaces did not come up (unprivileged user namespaces disabled?)");
}

#[test]
fn a_container_the_user_built_is_never_entered() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("atk-fake").start();
    let mut fake = fake_container(&s.user);
    let fake_pid = format!("{}\n", fake.id());
    let m = s.marker();

    // While the real container runs, the fake changes nothing.
    assert_contained_as(s.container(), &s.user.name, &report(&s.run(&probe("report"))));

    // A pidfile the user wrote, in the root-owned directory.
    let real = std::fs::read_to_string(&s.pidfile).unwrap();
    write_pidfile(&s.pidfile, &fake_pid);
    nix::unistd::chown(&s.pidfile, Some(nix::unistd::Uid::from_raw(s.user.uid)), None).unwrap();
    m.assert_refused(&s.run(&m.probe("")), 75, &format!("is owned by uid {}", s.user.uid));

    // One in a directory of the user's own, which the template names.
    let per_user = rig::fresh_dir("atk-fake-dirs");
    let own = per_user.join(&s.user.name);
    std::fs::create_dir(&own).unwrap();
    nix::unistd::chown(&own, Some(nix::unistd::Uid::from_raw(s.user.uid)), None).unwrap();
    write_pidfile(&own.join("pid"), &fake_pid);
    let per_user_config = pidfile_config(&per_user.join("{user}/pid"));
    m.assert_refused(&s.deliver_with(&per_user_config, &m.probe(""), b""), 75, "is owned by uid");

    // Even a root-owned pidfile written after the fake started (so not
    // stale) does not make it a container: the user created its user
    // namespace herself.
    std::fs::remove_file(&s.pidfile).unwrap();
    write_pidfile(&s.pidfile, &fake_pid);
    m.assert_refused(&s.run(&m.probe("")), 75, &format!("in a user namespace that uid {} created", s.user.uid));

    // The real container's manager removed its pidfile: nothing to enter.
    std::fs::remove_file(&s.pidfile).unwrap();
    m.assert_refused(&s.run(&m.probe("")), 75, "no pidfile");

    // Back to the root-owned pidfile of the real container.
    write_pidfile(&s.pidfile, &real);
    assert_contained_as(s.container(), &s.user.name, &report(&s.run(&probe("report"))));
    let _ = fake.kill();
    let _ = fake.wait();
    let _ = std::fs::remove_dir_all(per_user);
}

// ---- 4. pid reuse and races ----------------------------------------------
// A zombie target: deliver::a_zombie_target_is_not_running.

/// Wait until `pid` no longer exists (its parent has reaped it).
fn wait_gone(pid: i32) {
    for _ in 0..500 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("process {pid} did not go away");
}

/// Start the user's fake container (see [`fake_container`]) as process
/// number `pid`, which must be free: the kernel hands out the number after
/// `ns_last_pid`. Other threads of this test process may take it first, so
/// try a few times.
fn fake_container_as(user: &User, pid: i32) -> Option<std::process::Child> {
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let mut child = fake_container(user);
        if child.id() as i32 == pid {
            return Some(child);
        }
        let _ = child.kill();
        let _ = child.wait();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

#[test]
fn a_recycled_pid_is_never_entered() {
    let Some(_test) = rig::need(&[Root]) else { return };
    for extra in ["", "[kernel]\ndisable = [\"pidfd\"]\n"] {
        let s = rig::cage("atk-reuse").config(extra).start();
        let pid = s.container().pid;
        // Some time after its pidfile was written the container dies, and
        // the user's own fake container gets its number. The pidfile stays
        // behind (`stop` would remove it, so the init is killed directly).
        std::thread::sleep(std::time::Duration::from_millis(200));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        wait_gone(pid);
        let mut fake = fake_container_as(&s.user, pid).expect("the user's fake container as the old pid");
        assert_eq!(std::fs::read_to_string(&s.pidfile).unwrap(), format!("{pid}\n"), "the pidfile still names {pid}");
        let m = s.marker();
        m.assert_refused(&s.run(&m.probe("")), 75, "is stale");

        // A pidfile written just before its container died and its number
        // was taken: too close in time to tell the processes apart by their
        // start times, but the user's namespace is not a container.
        let _ = fake.kill();
        let _ = fake.wait();
        write_pidfile(&s.pidfile, &format!("{pid}\n"));
        let mut fake = fake_container_as(&s.user, pid).expect("the user's fake container as the old pid");
        let d = s.run(&m.probe(""));
        assert_eq!(d.code(), Some(75), "{d:?}");
        assert!(d.stdout.is_empty(), "{d:?}");
        m.assert_absent();
        assert!(d.stderr.contains("is stale") || d.stderr.contains("created, not root"), "{}", d.stderr);
        let _ = fake.kill();
        let _ = fake.wait();
    }
}

/// Where a delivery ran, as its report says: the hostname and the inodes
/// of the mount and user namespaces. (Inode numbers of dead namespaces are
/// reused, so no one of them alone tells a container from a later fake.)
type Place = [(&'static str, String); 3];

fn place(hostname: String, pid: i32) -> Place {
    [
        ("hostname", hostname),
        ("ns_mnt", rig::ns_inode_of(pid, "mnt").to_string()),
        ("ns_user", rig::ns_inode_of(pid, "user").to_string()),
    ]
}

#[test]
fn deliveries_racing_a_dying_container_enter_it_or_defer() {
    let Some(_test) = rig::need(&[Root]) else { return };
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    // The account and its configurations; its containers come and go below.
    let s = rig::cage("atk-race").stopped().start();
    let (user, caller, config) = (&s.user, s.caller, &s.config);
    let no_pidfd = pidfile_config(&s.piddir.join("{user}.pid"));
    no_pidfd.write(&format!("{}[kernel]\ndisable = [\"pidfd\"]\n", s.config_text()));
    let opts = ContainerOpts { users: vec![user.name.clone()], pidfile: Some(s.pidfile.clone()), ..Default::default() };
    let places: Mutex<Vec<Place>> = Mutex::new(Vec::new());
    let fakes: Mutex<Vec<Place>> = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let env = s.env();
    let env = rig::env_refs(&env);

    let outcomes: Vec<Delivery> = std::thread::scope(|scope| {
        // Deliveries, with and without pidfd, all the time.
        let workers: Vec<_> = [config, &no_pidfd, config]
            .into_iter()
            .map(|config| {
                let (done, env) = (&done, &env);
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    while !done.load(Ordering::SeqCst) {
                        seen.push(rig::deliver(config, caller, &probe("report"), env, b""));
                    }
                    seen
                })
            })
            .collect();
        // Load: processes coming and going, so that numbers are recycled.
        let churn = scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let _ = Command::new("/bin/true").status();
            }
        });
        for round in 0..10 {
            let mut c = Container::start(&rig::unique_name("atk-race"), &opts);
            places.lock().unwrap().push(place(c.name.clone(), c.pid));
            std::thread::sleep(std::time::Duration::from_millis(80 + 30 * (round % 4)));
            // The container dies under the deliveries; the user grabs its
            // number for a fake container of her own as soon as it is free.
            let pid = c.pid;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
            wait_gone(pid);
            if let Some(mut fake) = fake_container_as(user, pid) {
                fakes.lock().unwrap().push(place(nix::unistd::gethostname().unwrap().into_string().unwrap(), pid));
                std::thread::sleep(std::time::Duration::from_millis(100));
                let _ = fake.kill();
                let _ = fake.wait();
            }
            c.stop().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        churn.join().unwrap();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });

    let places = places.into_inner().unwrap();
    let fakes = fakes.into_inner().unwrap();
    assert!(!fakes.is_empty(), "the user's fake container took over a container's pid at least once");
    let (mut entered, mut deferred, mut killed) = (0, 0, 0);
    for d in &outcomes {
        // Where the command ran, as far as it got to report before its
        // container took it along (whole lines only).
        let lines = d.stdout.iter().rposition(|&b| b == b'\n').map_or(&d.stdout[..0], |end| &d.stdout[..=end]);
        let r = rig::parse_report(lines);
        if let Some(uid) = r.get("uid") {
            // In the user's own namespace it would have been its root.
            assert_eq!(*uid, user.uid.to_string(), "ran as the user: {d:?}");
        }
        let here = |place: &Place| place.iter().all(|(key, value)| r.get(*key).is_none_or(|v| v == value));
        if r.contains_key("ns_mnt") {
            assert!(places.iter().any(here), "ran outside the user's containers: {d:?}");
            assert!(!fakes.iter().any(here), "ran in the user's fake container: {d:?}");
        }
        // The command ran inside and its container's stop killed it: cagepipe
        // defers (75) so the message is retried once the container is back.
        let killed_with_container =
            d.code() == Some(75) && d.stderr.contains("the container stopped during the delivery");
        if !r.contains_key("ns_mnt") {
            assert!(
                d.stdout.is_empty() || d.signal().is_some() || killed_with_container,
                "a report without its namespaces: {d:?}"
            );
        }
        match (d.code(), d.signal()) {
            (Some(0), _) => entered += 1,
            (Some(75), _) if killed_with_container => killed += 1,
            (Some(75), _) => {
                assert!(d.stdout.is_empty(), "a deferral ran nothing: {d:?}");
                deferred += 1;
            }
            // The container died around the running command, taking it along.
            (_, Some(libc::SIGKILL)) => killed += 1,
            _ => panic!("neither entered nor deferred: {d:?}"),
        }
    }
    rig::note(&format!(
        "deliveries_racing_a_dying_container_enter_it_or_defer: {} deliveries, {entered} entered, {deferred} deferred, \
         {killed} killed with their container, {} pids taken over by a fake",
        outcomes.len(),
        fakes.len()
    ));
    assert!(entered > 0 && deferred > 0, "both outcomes happened: {entered} entered, {deferred} deferred");
}

// ---- 5. reaching into cagepipe from inside while it enters ----------------

/// The attack kinds of `probe attack`.
const ATTACK_KINDS: [&str; 9] = ["ptrace", "mem", "environ", "exe", "exe_write", "root", "cwd", "fd", "pidfd_getfd"];

/// cagepipe is visible inside only as its child, from the fork into the
/// container's pid namespace to the exec. A `[command] path` of many
/// directories that do not exist, the container's /usr/bin last, makes each
/// delivery of a relative name spend its last moments as cagepipe trying
/// exec candidates there: an ordinary configuration, no test knob in the
/// binary.
fn slow_exec_path() -> String {
    let mut dirs: Vec<String> = (0..400).map(|i| format!("/nonexistent-{i}")).collect();
    dirs.push("/usr/bin".into());
    dirs.join(":")
}

/// The contained user, inside, running `probe attack SECONDS`.
fn spawn_attacker(c: &Container, user: &str, seconds: f64) -> std::process::Child {
    let (uid, gid) = c.inside_ids(user);
    c.nsenter()
        .arg("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--init-groups", "--", PROBE, "attack", &seconds.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn attacker_report(attacker: std::process::Child) -> BTreeMap<String, String> {
    let out = attacker.wait_with_output().unwrap();
    assert!(out.status.success(), "attacker failed: {}", String::from_utf8_lossy(&out.stderr));
    rig::parse_report(&out.stdout)
}

#[test]
fn processes_inside_cannot_reach_cagepipe_while_it_enters() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let dumpable = std::fs::read_to_string("/proc/sys/fs/suid_dumpable").unwrap_or_default();
    rig::note(&format!(
        "processes_inside_cannot_reach_cagepipe_while_it_enters: fs.suid_dumpable = {}",
        dumpable.trim()
    ));
    for userns in [false, true] {
        let name = if userns { "atk-ptrace-u" } else { "atk-ptrace" };
        let s = rig::cage(name)
            .config(&format!("[command]\npath = \"{}\"\n", slow_exec_path()))
            .container(move |o, _| o.userns = userns)
            .start();
        // The attacker: the same user, inside, in a tight loop.
        let (uid, _) = s.container().inside_ids(&s.user.name);
        let seconds = 6.0;
        let attacker = spawn_attacker(s.container(), &s.user.name, seconds);
        // Meanwhile, deliveries, three at a time until the attacker is done:
        // of `true`, and of a command that does not exist, whose process
        // never stops being cagepipe (so any success on it is a breach).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds - 0.5);
        let outcomes: Vec<(u32, Vec<String>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = [("|true", 0), ("|cagepipe-no-such-command", 127), ("|true", 0)]
                .into_iter()
                .map(|(text, expected)| {
                    let s = &s;
                    scope.spawn(move || {
                        let (mut ok, mut bad) = (0, Vec::new());
                        while std::time::Instant::now() < deadline {
                            let d = s.run(&raw_pipe(text));
                            if d.code() == Some(expected) {
                                ok += 1;
                            } else {
                                bad.push(format!("{d:?}"));
                            }
                        }
                        (ok, bad)
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let r = attacker_report(attacker);
        let delivered: u32 = outcomes.iter().map(|(ok, _)| ok).sum();
        assert!(outcomes.iter().all(|(ok, _)| *ok > 0), "every kind of delivery ran: {outcomes:?}");
        let failed: Vec<&String> = outcomes.iter().flat_map(|(_, bad)| bad).collect();
        rig::note(&format!(
            "{name}: {delivered} deliveries; attacker as uid {}: {} scans, {} sightings of {} cagepipe processes, \
             {} successes on the command after its exec, {} breaches",
            r["uid"],
            r["scans"],
            r["sightings"],
            r["targets"],
            ATTACK_KINDS.iter().map(|k| r[&format!("{k}_late")].parse::<u64>().unwrap()).sum::<u64>(),
            r["breaches"]
        ));
        assert!(failed.is_empty(), "every delivery went through: {failed:?}");
        assert_eq!(r["uid"], uid.to_string(), "the attacker is the user");
        // Each attempt works against a process of the attacker's own...
        for kind in ATTACK_KINDS.iter().filter(|k| **k != "exe_write") {
            assert_eq!(r[&format!("control_{kind}")], "ok", "the {kind} attempt works on the attacker's own process");
        }
        // ...was made against cagepipe, and never got anywhere.
        assert!(r["sightings"].parse::<u64>().unwrap() > 0, "the attacker saw cagepipe entering: {r:?}");
        assert_eq!(r["breaches"], "0", "{}", r["breach_detail"]);
        for kind in ATTACK_KINDS {
            assert!(r[&format!("{kind}_denied")].parse::<u64>().unwrap() > 0, "{kind} was attempted: {r:?}");
        }
        assert_eq!(r["dumpable_sightings"], "0", "cagepipe is never dumpable while it is visible inside");
    }
}

// ---- 6. #!/proc/self/exe, setuid and file-capability binaries inside ------

/// A copy of `from` as `name` in this test process's scratch directory:
/// owner root, group `gid`, `mode`, and file capabilities `caps` if given
/// (set last: chown and chmod clear them). Removed when dropped.
struct Copy(PathBuf);

impl Copy {
    fn install(from: &Path, name: &str, gid: u32, mode: u32, caps: Option<&str>) -> Copy {
        let path = rig::fresh(name);
        std::fs::copy(from, &path).unwrap();
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(0)), Some(nix::unistd::Gid::from_raw(gid))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        if let Some(caps) = caps {
            let out = Command::new("setcap").arg(caps).arg(&path).output().unwrap();
            assert!(out.status.success(), "setcap {caps}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Copy(path)
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn reexecuting_cagepipe_from_inside_gains_nothing() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("atk-reexec").start();
    // runc CVE-2019-5736: the container makes the runtime execute itself
    // inside (an interpreter of /proc/self/exe) and then writes to it.
    let script = s.container().state_dir().join("rootfs/home").join(&s.user.name).join("reexec");
    std::fs::write(&script, "#!/proc/self/exe --\n").unwrap();
    nix::unistd::chown(
        &script,
        Some(nix::unistd::Uid::from_raw(s.user.uid)),
        Some(nix::unistd::Gid::from_raw(s.user.gid)),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // What the re-executed cagepipe is asked to run: never runs.
    let m = s.marker();
    let command = format!("{PROBE} report --mark {}", m.path);
    let texts = [format!("|/home/{}/reexec {command}", s.user.name), format!("|/proc/self/exe -- {command}")];

    // Installed as it must be (root:cagepipe 0750), the user's command
    // cannot even execute it.
    for text in &texts {
        m.assert_refused(&s.run(&raw_pipe(text)), 126, "Permission denied");
    }

    // A copy anyone may execute (a packaging mistake): it does run inside,
    // but under no_new_privs its file capabilities were not granted, and it
    // refuses. Meanwhile the user, inside, tries to open it for writing.
    let loose =
        Copy::install(rig::installed_binary(), "cagepipe-loose", rig::cagepipe_gid(), 0o755, Some(rig::file_caps()));
    let before = rig::fnv64(&std::fs::read(&loose.0).unwrap());
    let attacker = spawn_attacker(s.container(), &s.user.name, 3.0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(2500);
    let mut runs = 0;
    while std::time::Instant::now() < deadline {
        for text in &texts {
            let d = rig::run_with_stdin(s.command_via(&loose.0, &[], &raw_pipe(text)), b"");
            m.assert_refused(&d, 75, "no_new_privs is already set");
            runs += 1;
        }
    }
    let r = attacker_report(attacker);
    rig::note(&format!(
        "reexecuting_cagepipe_from_inside_gains_nothing: {runs} re-executions; attacker: {} sightings, exe_write {}",
        r["sightings"], r["exe_write_errnos"]
    ));
    assert_eq!(r["control_exe"], "ok", "the attacker can open an exe of its own");
    assert!(r["sightings"].parse::<u64>().unwrap() > 0, "the attacker saw cagepipe run inside: {r:?}");
    assert_eq!((r["exe_write_breach"].as_str(), r["exe_write_late"].as_str()), ("0", "0"), "{r:?}");
    assert_eq!(rig::fnv64(&std::fs::read(&loose.0).unwrap()), before, "the binary is unchanged");
}

#[test]
fn setuid_and_capability_binaries_inside_gain_nothing() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // Executable by the user's group only: no other account on the machine
    // gets a setuid-root program out of this test.
    let user = rig::test_user("cptest-atk-suid");
    let probe_bin = rig::probe_binary();
    let suid = Copy::install(probe_bin, "probe-setuid", user.gid, 0o4750, None);
    let caps = "cap_sys_admin,cap_dac_override,cap_setuid";
    let fcap = Copy::install(probe_bin, "probe-fcap", user.gid, 0o750, Some(&format!("{caps}=p")));
    let fcap_eff = Copy::install(probe_bin, "probe-fcap-eff", user.gid, 0o750, Some(&format!("{caps}=ep")));
    let binds = vec![
        (suid.0.clone(), "/opt/atk/probe-setuid".into()),
        (fcap.0.clone(), "/opt/atk/probe-fcap".into()),
        (fcap_eff.0.clone(), "/opt/atk/probe-fcap-eff".into()),
    ];
    let s = rig::cage("atk-suid").container(move |o, _| o.bind_ro = binds).start();
    // Control: without no_new_privs they do what they are made for.
    let control = |bin: &str| {
        let (uid, gid) = s.container().inside_ids(&s.user.name);
        let out = s
            .container()
            .nsenter()
            .arg("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .args(["--init-groups", "--", bin, "report"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{bin}: {}", String::from_utf8_lossy(&out.stderr));
        rig::parse_report(&out.stdout)
    };
    assert_eq!(control("/opt/atk/probe-setuid")["euid"], "0", "the setuid bit works here");
    assert_ne!(control("/opt/atk/probe-fcap")["cap_prm"], "0000000000000000", "the file capabilities work here");
    assert_ne!(control("/opt/atk/probe-fcap-eff")["cap_eff"], "0000000000000000", "the file capabilities work here");
    // Delivered: the user's ids, nothing else.
    for bin in ["/opt/atk/probe-setuid", "/opt/atk/probe-fcap"] {
        let r = report(&s.run(&raw_pipe(&format!("|{bin} report"))));
        assert_contained_as(s.container(), &s.user.name, &r);
    }
    // With the effective bit, the kernel refuses to start a program that
    // would not get all of its capabilities: the bounding set is empty.
    let m = s.marker();
    let text = format!("|/opt/atk/probe-fcap-eff report --mark {}", m.path);
    m.assert_refused(&s.run(&raw_pipe(&text)), 126, "Operation not permitted");
}

// ---- 7. descriptors and working directory of the caller -------------------

#[test]
fn descriptors_and_cwd_of_the_caller_never_reach_the_container() {
    let Some(_test) = rig::need(&[Root]) else { return };
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let s = rig::cage("atk-fds").start();
    // runc CVE-2024-21626: a descriptor of a host directory left open into
    // the container, and a working directory resolved through it.
    let host_root = open("/", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
    let host_etc = open("/etc", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
    let host_proc = open("/proc", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
    let (socket, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let leaks: [(i32, i32); 5] = [
        (host_root.as_raw_fd(), 3),
        (socket.as_raw_fd(), 4),
        (host_etc.as_raw_fd(), 5),
        (host_root.as_raw_fd(), 77),
        (host_proc.as_raw_fd(), 200),
    ];
    let hostile = |mut cmd: Command| {
        // SAFETY: fcntl and dup2 are async-signal-safe, and nothing here
        // allocates; both leave the new descriptor without close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                // Out of the way first: a source may have a target's number.
                let mut moved = leaks;
                for (i, (from, _)) in moved.iter_mut().enumerate() {
                    *from = libc::fcntl(*from, libc::F_DUPFD, 900 + i as libc::c_int);
                    if *from < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (from, to) in moved {
                    if libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd.current_dir("/sys/fs/cgroup");
        cmd
    };
    // Control: whatever stands where cagepipe does receives them all.
    let ls = s.command_via(Path::new("/bin/ls"), &[], &["/proc/self/fd".into()]);
    let d = rig::run_with_stdin(hostile(ls), b"");
    let listed: Vec<&str> = std::str::from_utf8(&d.stdout).unwrap().split_whitespace().collect();
    for fd in ["3", "4", "5", "77", "200"] {
        assert!(listed.contains(&fd), "fd {fd} reaches the program in cagepipe's place: {listed:?}");
    }

    let deliver = |args: &[OsString]| rig::run_with_stdin(hostile(s.command(args)), b"");
    let r = report(&deliver(&probe("report")));
    assert_contained_as(s.container(), &s.user.name, &r);
    let container_root = std::fs::metadata(format!("/proc/{}/root", s.container().pid)).unwrap();
    let container_root = format!("{}:{}", container_root.dev(), container_root.ino());
    assert_eq!(r["root_dev_ino"], container_root);
    assert_eq!(r["cwd"], "/", "the host's /sys/fs/cgroup is not in the container");
    assert_eq!(r["cwd_dev_ino"], container_root, "the working directory is the container's root");
    for text in ["|/proc/self/fd/3/usr/bin/id", "|/proc/self/fd/77/bin/true", "|/proc/self/fd/200/1/root/bin/true"] {
        assert_refused(&deliver(&raw_pipe(text)), 127, "not found inside the container");
    }
}

// ---- 8. hostile process state ----------------------------------------------

/// The bit of `sig` in a /proc/PID/status signal mask.
fn sig_bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// Starts cagepipe with every signal blocked and SIGCHLD, SIGALRM and
/// SIGQUIT ignored. (Done by the last program before cagepipe: the rig's
/// shell empties its mask whenever it has waited for a child.)
const HOSTILE_SIGNALS: [&str; 5] = [
    "/usr/bin/perl",
    "-MPOSIX",
    "-e",
    "sigprocmask(SIG_SETMASK, POSIX::SigSet->new(1 .. 31, 34 .. 64)) or die; \
     $SIG{$_} = 'IGNORE' for qw(CHLD ALRM QUIT); exec { $ARGV[0] } @ARGV or die",
    "--",
];

#[test]
fn the_callers_signal_state_is_not_the_commands() {
    let Some(_test) = rig::need(&[Root, Tool("perl")]) else { return };
    let s = rig::cage("atk-signals").start();
    let hostile = |args: &[OsString]| s.command_via(rig::installed_binary(), &HOSTILE_SIGNALS, args);
    // cagepipe itself does start that way.
    let child = hostile(&probe("report --sleep 1"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    for _ in 0..300 {
        if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == rig::installed_binary()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let blocked = u64::from_str_radix(&status_field(pid, "SigBlk"), 16).unwrap_or(0);
    let ignored = u64::from_str_radix(&status_field(pid, "SigIgn"), 16).unwrap_or(0);
    assert_ne!(blocked & sig_bit(libc::SIGTERM), 0, "cagepipe was started with SIGTERM blocked");
    assert_ne!(ignored & sig_bit(libc::SIGALRM), 0, "cagepipe was started with SIGALRM ignored");
    let out = child.wait_with_output().unwrap();
    let r = rig::parse_report(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_contained_as(s.container(), &s.user.name, &r);
    assert_eq!(u64::from_str_radix(&r["sig_blk"], 16).unwrap(), 0, "the command's mask is empty");
    assert_eq!(u64::from_str_radix(&r["sig_ign"], 16).unwrap(), 0, "the command ignores nothing");

    // The command's status and its signal still reach the caller: waitpid
    // works although SIGCHLD was ignored, the signal is re-raised although
    // it was blocked.
    assert_eq!(rig::run_with_stdin(hostile(&probe("report --exit 42")), b"").code(), Some(42));
    assert_eq!(rig::run_with_stdin(hostile(&probe("report --signal 15")), b"").signal(), Some(15));
}

#[test]
fn the_callers_umask_passes_through_as_exim_sets_it() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // Exim's pipe transport has a `umask` option (default 022) that the
    // command must see; cagepipe creates no file, so it needs no umask of
    // its own, and an odd one affects only the user's own files inside.
    let s = rig::cage("atk-umask").start();
    for mask in [0o000, 0o027, 0o777] {
        let mut cmd = s.command(&probe("report"));
        // SAFETY: umask is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(mask);
                Ok(())
            });
        }
        let r = report(&rig::run_with_stdin(cmd, b""));
        assert_contained_as(s.container(), &s.user.name, &r);
        assert_eq!(r["umask"], format!("{mask:04o}"));
    }
}

#[test]
fn closed_standard_descriptors_are_filled_not_reused() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("atk-closed").start();
    let inside = format!("/home/{}/atk-report", s.user.name);
    let on_host = s.host_path(&inside);
    let close_all = ["/bin/sh", "-c", "exec \"$@\" <&- >&- 2>&-", "sh"];
    let cmd = s.command_via(rig::installed_binary(), &close_all, &probe(&format!("report --out {inside} --sleep 1")));
    let (d, links) = std::thread::scope(|scope| {
        let delivery = scope.spawn(|| rig::run_with_stdin(cmd, b""));
        let p = wait_for_probe(s.container());
        let links: Vec<u64> =
            (0..3).map(|fd| std::fs::metadata(format!("/proc/{p}/fd/{fd}")).unwrap().rdev()).collect();
        (delivery.join().unwrap(), links)
    });
    assert_eq!(d.code(), Some(0), "{d:?}");
    let r = rig::parse_report(&std::fs::read(&on_host).unwrap());
    assert_contained_as(s.container(), &s.user.name, &r);
    // Had cagepipe opened a file (its configuration, a pidfile, a namespace)
    // while 0-2 were free, it would be among them. The C library of a
    // program with file capabilities fills them first, /dev/full to read
    // and /dev/null to write, so that nothing is read or written by mistake.
    let harmless = ["/dev/null", "/dev/full"].map(|d| std::fs::metadata(d).unwrap().rdev());
    for (fd, device) in links.iter().enumerate() {
        assert!(harmless.contains(device), "fd {fd} is device {device:#x}, not /dev/null or /dev/full");
    }
}

#[test]
fn a_tiny_descriptor_limit_fails_closed() {
    let Some(_test) = rig::need(&[Root, Tool("prlimit")]) else { return };
    let s = rig::cage("atk-nofile").start();
    let mut summary = Vec::new();
    for n in [3, 4, 5, 6, 7, 8, 10, 16, 64] {
        let limit = format!("--nofile={n}:{n}");
        let wrapper = ["/usr/bin/prlimit", limit.as_str(), "--"];
        let m = s.marker();
        let d = rig::run_with_stdin(s.command_via(rig::installed_binary(), &wrapper, &m.probe("")), b"");
        if d.code() == Some(0) {
            assert_contained_as(s.container(), &s.user.name, &report(&d));
            m.assert_written();
            summary.push(format!("{n}: delivered"));
        } else {
            assert!(d.stdout.is_empty(), "RLIMIT_NOFILE {n}: nothing ran: {d:?}");
            m.assert_absent();
            assert!(matches!(d.code(), Some(75 | 127)), "RLIMIT_NOFILE {n}: {d:?}");
            summary.push(format!("{n}: exit {:?}, {}", d.code(), d.stderr.lines().next().unwrap_or("")));
        }
    }
    rig::note(&format!("a_tiny_descriptor_limit_fails_closed: {}", summary.join("; ")));
    assert!(summary[0].starts_with("3: exit"), "3 descriptors are not enough: {summary:?}");
    assert!(summary.last().unwrap().ends_with("delivered"), "64 are: {summary:?}");
}

#[test]
fn a_hostile_environment_reaches_neither_cagepipe_nor_the_command() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("atk-env").start();
    // A library that leaves a mark wherever it is loaded.
    let dir = rig::fresh_dir("atk-preload");
    let marks = dir.join("marks");
    std::fs::create_dir(&marks).unwrap();
    std::fs::set_permissions(&marks, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let source = dir.join("evil.c");
    std::fs::write(
        &source,
        format!(
            "#include <stdio.h>\n#include <unistd.h>\n__attribute__((constructor)) static void mark(void) {{\n\
             char p[256]; snprintf(p, sizeof p, \"{}/%d\", (int)getpid()); FILE *f = fopen(p, \"w\"); if (f) fclose(f);\n}}\n",
            marks.display()
        ),
    )
    .unwrap();
    let library = dir.join("evil.so");
    let built = Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&library).arg(&source).output();
    let preload = match built {
        Ok(out) if out.status.success() => {
            std::fs::set_permissions(&library, std::fs::Permissions::from_mode(0o644)).unwrap();
            // Control: it does load into an ordinary program of the user.
            let status = Command::new("setpriv")
                .arg(format!("--reuid={}", s.user.uid))
                .arg(format!("--regid={}", s.user.gid))
                .args(["--clear-groups", "--", "/usr/bin/env"])
                .arg(format!("LD_PRELOAD={}", library.display()))
                .arg("/bin/true")
                .status()
                .unwrap();
            assert!(status.success());
            assert_eq!(std::fs::read_dir(&marks).unwrap().count(), 1, "the control loaded the library");
            for mark in std::fs::read_dir(&marks).unwrap() {
                std::fs::remove_file(mark.unwrap().path()).unwrap();
            }
            library.display().to_string()
        }
        other => {
            rig::skip_or_fail(
                "part of a_hostile_environment_reaches_neither_cagepipe_nor_the_command",
                &format!("no C compiler ({other:?}): LD_PRELOAD is set to a library that does not exist"),
            );
            library.display().to_string()
        }
    };
    // A time zone file that blocks whoever opens it: a fifo nobody writes.
    let tz = dir.join("tz");
    nix::unistd::mkfifo(&tz, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let tz = tz.display().to_string();
    let dirs = dir.display().to_string();
    let mut env = s.env();
    for (k, v) in [
        ("LD_PRELOAD", preload.as_str()),
        ("LD_AUDIT", preload.as_str()),
        ("LD_LIBRARY_PATH", dirs.as_str()),
        ("LD_DEBUG", "all"),
        ("GCONV_PATH", dirs.as_str()),
        ("LOCPATH", dirs.as_str()),
        ("RUST_LOG", "trace"),
        ("RUST_BACKTRACE", "full"),
        ("TZ", tz.as_str()),
        ("IFS", "x"),
        ("BASH_ENV", "/tmp/x"),
        ("ENV", "/tmp/x"),
        ("LC_ALL", "xx_XX.UTF-8"),
        ("TMPDIR", "/tmp/evil"),
    ] {
        env.push((k.to_owned(), v.to_owned()));
    }
    let mut child = rig::command(&s.config, s.caller, &probe("report"), &rig::env_refs(&env))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the delivery hung: something opened the TZ fifo");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let d = rig::delivered(child.wait_with_output().unwrap());
    let r = report(&d);
    assert!(d.stderr.is_empty(), "nothing on stderr (LD_DEBUG, RUST_LOG): {}", d.stderr);
    assert_contained_as(s.container(), &s.user.name, &r);
    let env: BTreeMap<&str, &str> = r
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("env_")?, v.as_str())))
        .filter(|(k, _)| *k != "count")
        .collect();
    let home = s.user.home.display().to_string();
    let expected: BTreeMap<&str, &str> = [
        ("LOCAL_PART", "support"),
        ("DOMAIN", "example.test"),
        ("SENDER", "sender@example.org"),
        ("RECIPIENT", "support@example.test"),
        ("MESSAGE_ID", "1abcDE-000001-AB"),
        ("QUALIFY_DOMAIN", "example.test"),
        ("TZ", tz.as_str()), // one of Exim's variables: passed on, never read by cagepipe
        ("HOME", home.as_str()),
        ("USER", s.user.name.as_str()),
        ("LOGNAME", s.user.name.as_str()),
        ("SHELL", "/bin/sh"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ]
    .into_iter()
    .collect();
    assert_eq!(env, expected);
    assert_eq!(std::fs::read_dir(&marks).unwrap().count(), 0, "the library was loaded nowhere");
    let _ = std::fs::remove_dir_all(dir);
}

// ---- 9. a fake /proc inside the container ----------------------------------

#[test]
fn a_fake_proc_inside_the_container_decides_nothing() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // lxc-attach CVE-2015-1334 / CVE-2016-8649: a container root that
    // mounts over its /proc fools a tool that reads it after entering.
    for extra in ["", "[kernel]\ndisable = [\"pidfd\", \"clone_into_cgroup\", \"clone_vm\"]\n"] {
        let s = rig::cage("atk-fakeproc").config(extra).start();
        let fake = "mount -t tmpfs fakeproc /proc && mkdir -p /proc/self/fd /proc/self/ns /proc/1/ns \
                    && printf 'Name:\\tcagepipe\\nThreads:\\t1\\nNoNewPrivs:\\t0\\nCapBnd:\\tffffffffffffffff\\n' >/proc/self/status \
                    && echo 0::/ >/proc/self/cgroup && echo '0 0 4294967295' >/proc/self/uid_map \
                    && echo '1 0 0:1 / / rw - ext4 /dev/root rw' >/proc/self/mountinfo";
        let out = s.container().nsenter().args(["sh", "-c", fake]).output().unwrap();
        assert!(out.status.success(), "mounting the fake /proc: {}", String::from_utf8_lossy(&out.stderr));

        let (d, seen) = std::thread::scope(|scope| {
            let delivery = scope.spawn(|| s.run(&probe("report --sleep 2")));
            // Watched from the host while the command runs.
            let p = wait_for_probe(s.container());
            let seen = (
                ["mnt", "pid", "net", "uts", "ipc", "cgroup", "user", "time"].map(|k| (k, rig::ns_inode_of(p, k))),
                std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap(),
                ["Uid", "Gid", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"]
                    .map(|k| (k, status_field(p as u32, k))),
            );
            (delivery.join().unwrap(), seen)
        });
        let r = report(&d);
        assert_eq!(r["ns_mnt"], "-", "inside, /proc is the fake one");
        let (ns, cgroup, status) = seen;
        for (kind, inode) in ns {
            assert_eq!(inode, s.container().ns_inode(kind), "{kind} namespace");
        }
        let init_cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", s.container().pid)).unwrap();
        assert_eq!(cgroup, init_cgroup, "the container's cgroups, every hierarchy");
        let uid = s.user.uid.to_string();
        let gid = s.user.gid.to_string();
        for (key, value) in status {
            let expected = match key {
                "Uid" => [uid.as_str(); 4].join("\t"),
                "Gid" => [gid.as_str(); 4].join("\t"),
                "NoNewPrivs" => "1".into(),
                _ => "0000000000000000".into(),
            };
            assert_eq!(value, expected, "{key}");
        }
    }
}

// ---- 10. argument injection ------------------------------------------------
// Quoted words in order, ${run{...}} and $HOME as plain words, `--` and
// `-x` after it: deliver::command_forms_and_path_search_happen_inside.

#[test]
fn pipe_text_reaches_the_command_exactly_and_never_a_shell() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("atk-argv").start();
    // Words that look like cagepipe's options are the command's name.
    for text in ["-c id", "--help", "--user=root /bin/true", "|--config=/tmp/x /bin/true", "|-- /bin/true"] {
        assert_refused(&s.run(&raw_pipe(text)), 127, "not found inside the container");
    }
    // Shell syntax is text, quotes that do not close run to the end.
    let m = "/tmp/atk-shell-ran";
    let text = format!(
        "|{PROBE} report -- ; touch {m} && touch {m} | touch {m} `touch {m}` $(touch {m}) >{m} \"a -- b\" \\\"x 'open \"quote"
    );
    let r = report(&s.run(&raw_pipe(&text)));
    let tick = format!("{m}`");
    let paren = format!("{m})");
    let redirect = format!(">{m}");
    let expected = [
        "--",
        ";",
        "touch",
        m,
        "&&",
        "touch",
        m,
        "|",
        "touch",
        m,
        "`touch",
        &tick,
        "$(touch",
        &paren,
        &redirect,
        "a -- b",
        "\\\"x",
        "open \"quote",
    ];
    assert_eq!(r["argv_count"], (expected.len() + 2).to_string(), "{r:?}");
    for (i, word) in expected.iter().enumerate() {
        assert_eq!(r[&format!("argv_{}", i + 2)], *word, "word {i}");
    }
    assert!(!s.container().state_dir().join("rootfs").join(m.trim_start_matches('/')).exists(), "no shell ran");
    assert!(!Path::new(m).exists());

    // An escaped NUL ends its word, as in Exim; bytes that are not UTF-8
    // pass through.
    use std::os::unix::ffi::OsStringExt;
    let mut text = format!("--raw-pipe=|{PROBE} report -- \"a\\0b\" ").into_bytes();
    text.extend_from_slice(b"\xff\xfe");
    let d = s.run(&[OsString::from_vec(text)]);
    assert_eq!(d.code(), Some(0), "{d:?}");
    let lines: Vec<&[u8]> = d.stdout.split(|&b| b == b'\n').collect();
    assert!(lines.contains(&&b"argv_3=a"[..]), "the word ends at the NUL");
    assert!(lines.contains(&&b"argv_4=\\xff\\xfe"[..]), "raw bytes arrive as they were");

    // 100,000 arguments.
    let mut args: Vec<OsString> = ["--", PROBE, "report", "--"].iter().map(OsString::from).collect();
    args.extend(std::iter::repeat_n(OsString::from("x"), 100_000));
    let r = report(&s.run(&args));
    assert_eq!(r["argv_count"], "100003");
    assert_eq!(r["argv_100002"], "x");
    // As many words as one --raw-pipe argument holds.
    let text = format!("|{PROBE} report --{}", " w".repeat(60_000));
    let r = report(&s.run(&raw_pipe(&text)));
    assert_eq!(r["argv_count"], "60003");
    // 1 MiB of arguments, as eight of the largest single arguments the
    // kernel takes (MAX_ARG_STRLEN, 128 KiB with its NUL).
    let big: Vec<String> = (0..8u8).map(|i| char::from(b'a' + i).to_string().repeat(128 * 1024 - 1)).collect();
    let mut args: Vec<OsString> = ["--", PROBE, "report", "--"].iter().map(OsString::from).collect();
    args.extend(big.iter().map(OsString::from));
    let r = report(&s.run(&args));
    for (i, word) in big.iter().enumerate() {
        assert!(r[&format!("argv_{}", i + 3)] == *word, "argument {i} arrives whole");
    }
    // One argument of 1 MiB reaches no program at all: the kernel refuses
    // the exec (E2BIG) before cagepipe could see it, and the caller (Exim)
    // reports that it could not start the transport.
    let huge = format!("--raw-pipe=|/bin/true {}", "a".repeat(1 << 20));
    let err = rig::command(&s.config, s.caller, &[huge.into()], &[]).stdin(Stdio::null()).output().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::E2BIG));
}

// ---- 11. terminal injection ---------------------------------------------

/// A pseudo-terminal pair, both ends close-on-exec in this process.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Pty {
    fn open() -> Pty {
        use nix::fcntl::{open, OFlag};
        use nix::sys::stat::Mode;
        let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let master = open("/dev/ptmx", flags, Mode::empty()).expect("open /dev/ptmx");
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: grantpt/unlockpt take the master descriptor; ptsname_r
        // writes a NUL-terminated name of at most `name.len()` bytes.
        unsafe {
            assert_eq!(libc::grantpt(master.as_raw_fd()), 0);
            assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
            assert_eq!(libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()), 0);
        }
        // SAFETY: ptsname_r succeeded, so `name` holds a C string.
        let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_str().unwrap().to_owned();
        let slave = open(path.as_str(), flags, Mode::empty()).expect("open the pty slave");
        Pty { master, slave }
    }

    /// Bytes waiting in the terminal's input queue: what a shell reading
    /// the terminal would run next.
    fn queued_input(&self) -> i32 {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        assert_eq!(unsafe { libc::ioctl(self.slave.as_raw_fd(), libc::FIONREAD, &mut n) }, 0);
        n
    }

    /// Make `cmd` run in a session of its own with the slave as its
    /// controlling terminal: with the slave as stdin too, as a shell started
    /// on it would (`on_stdin`), or with nothing of it on 0-2 (stdin
    /// /dev/null, pipes out), as `exim -odi` typed in a shell runs its
    /// delivery.
    fn attach(&self, cmd: &mut Command, on_stdin: bool) {
        let stdin = if on_stdin { Stdio::from(self.slave.try_clone().unwrap()) } else { Stdio::null() };
        cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        let slave = self.slave.as_raw_fd();
        // SAFETY: setsid and ioctl are async-signal-safe system calls; the
        // slave is open in the child until its exec (close-on-exec).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 || libc::ioctl(slave, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

fn collect(cmd: &mut Command) -> Delivery {
    rig::delivered(cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")))
}

#[test]
fn a_command_cannot_type_into_the_callers_terminal() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // Linux 6.2+ can forbid TIOCSTI for everyone without CAP_SYS_ADMIN;
    // where it does, the kernel alone stops the injection and what is left
    // to check is that the command does not hold the terminal as its
    // controlling terminal (which TIOCSTI would need).
    let legacy = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "absent (kernel before 6.2: TIOCSTI always allowed on the controlling terminal)".into());
    rig::note(&format!("a_command_cannot_type_into_the_callers_terminal: dev.tty.legacy_tiocsti = {legacy}"));
    let tiocsti_allowed = legacy != "0";
    let s = rig::cage("atk-tty").start();
    let text = "id > /tmp/typed-by-the-command\n";

    // The probe itself, on the host, as the user: the control.
    let control_probe = || {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", s.user.uid))
            .arg(format!("--regid={}", s.user.gid))
            .args(["--clear-groups", "--"])
            .arg(rig::probe_binary())
            .args(["tty", text]);
        cmd
    };
    // An administrator trying a delivery by hand, or the same through the
    // caller's path.
    let args = |root: bool| -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        if root {
            a.extend(s.as_root());
        }
        a.extend(raw_pipe(&format!("|{PROBE} tty '{text}'")));
        a
    };
    let delivery = |by_hand: bool| {
        if by_hand {
            let mut c = Command::new(rig::installed_binary());
            c.args(args(true)).env_clear().current_dir("/");
            c
        } else {
            s.command(&args(false))
        }
    };

    // Control: with the terminal as its controlling terminal, the probe
    // does get its text in.
    let pty = Pty::open();
    let mut cmd = control_probe();
    pty.attach(&mut cmd, true);
    let control = rig::parse_report(&report_ok(collect(&mut cmd)).stdout);
    assert_eq!(control["ctty"], "yes");
    if tiocsti_allowed {
        assert_eq!(control["tiocsti"], "ok", "the control must be able to inject");
        assert_eq!(pty.queued_input(), text.len() as i32, "the control's text is queued");
    } else {
        assert_eq!(control["tiocsti"], "EIO", "TIOCSTI is disabled system-wide");
    }
    drop(pty);

    // By hand and through the caller's path, the command must not reach
    // the terminal's input.
    for by_hand in [true, false] {
        let pty = Pty::open();
        let mut cmd = delivery(by_hand);
        pty.attach(&mut cmd, true);
        let d = collect(&mut cmd);
        let r = rig::parse_report(&report_ok(d).stdout);
        let who = if by_hand { "root by hand" } else { "the user" };
        assert_eq!(r["isatty"], "yes", "{who}: stdin is the terminal");
        assert!(r["ctty"].starts_with("no"), "{who}: the terminal is not the command's controlling terminal: {r:?}");
        if tiocsti_allowed {
            assert_eq!(r["tiocsti"], "EPERM", "{who}: {r:?}");
        } else {
            assert_eq!(r["tiocsti"], "EIO", "{who}: {r:?}");
        }
        assert_eq!(pty.queued_input(), 0, "{who}: nothing was typed into the terminal");
        let _ = &pty.master;
    }

    // The terminal as the caller's controlling terminal only, 0-2 pipes:
    // the command must not get it through /dev/tty. Control first: the
    // probe on the host does.
    let pty = Pty::open();
    let mut cmd = control_probe();
    pty.attach(&mut cmd, false);
    let control = rig::parse_report(&report_ok(collect(&mut cmd)).stdout);
    assert_eq!(control["isatty"], "no");
    assert_eq!(control["devtty"], "opened", "the control reaches its terminal through /dev/tty: {control:?}");
    if tiocsti_allowed {
        assert_eq!(control["devtty_tiocsti"], "ok");
        assert_eq!(pty.queued_input(), text.len() as i32, "the control's text is queued");
    }
    drop(pty);
    for by_hand in [true, false] {
        let pty = Pty::open();
        let mut cmd = delivery(by_hand);
        pty.attach(&mut cmd, false);
        let r = rig::parse_report(&report_ok(collect(&mut cmd)).stdout);
        let who = if by_hand { "root by hand, 0-2 no terminal" } else { "the user, 0-2 no terminal" };
        assert_eq!(r["isatty"], "no", "{who}");
        assert_eq!(r["devtty"], "ENXIO", "{who}: the command has no controlling terminal: {r:?}");
        assert_eq!(pty.queued_input(), 0, "{who}: nothing was typed into the terminal");
    }
}

fn report_ok(d: Delivery) -> Delivery {
    assert_eq!(d.code(), Some(0), "{d:?}");
    d
}

// ---- least privilege: how it is installed and started ---------------------
// The single-thread check: startup::tests::a_second_thread_is_refused.

#[test]
fn refuses_to_run_when_installed_or_started_wrongly() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("atk-install").start();
    let gid = rig::cagepipe_gid();
    let installed = rig::installed_binary();
    let other_group = rig::test_group("atk-sgid");
    let fewer = rig::file_caps().replace(",cap_sys_admin", "");
    let cases = [
        (Copy::install(installed, "cagepipe-setuid", gid, 0o4750, None), vec![], "is running setuid"),
        (Copy::install(installed, "cagepipe-setgid", other_group.gid, 0o2755, None), vec![], "is running setgid"),
        (
            Copy::install(installed, "cagepipe-fewer-caps", gid, 0o750, Some(&fewer)),
            vec![],
            "lacks the capabilities cap_sys_admin;",
        ),
        (
            Copy::install(installed, "cagepipe-no-caps", gid, 0o750, None),
            vec![],
            "lacks the capabilities cap_dac_override, ",
        ),
        (
            Copy::install(installed, "cagepipe-nnp", gid, 0o750, Some(rig::file_caps())),
            vec!["/usr/bin/setpriv", "--no-new-privs", "--"],
            "no_new_privs is already set",
        ),
    ];
    let m = s.marker();
    for (copy, wrapper, words) in &cases {
        m.assert_refused(&rig::run_with_stdin(s.command_via(&copy.0, wrapper, &m.probe("")), b""), 75, words);
    }
    // The same binary, properly installed, delivers.
    assert_contained_as(s.container(), &s.user.name, &report(&s.run(&probe("report"))));
}

#[test]
fn refuses_to_enter_the_container_it_already_runs_in() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // cagepipe with its capabilities, started by a process already inside
    // the container (here: root enters it and becomes the user), with a
    // configuration and a pidfile it finds inside: the pidfile names the
    // container's init as the container sees it, process 1.
    let (inner, inner_pids) = ConfigDir::with_pidfile_dir("");
    let inner_pids_inside = inner_pids.display().to_string();
    let binds = vec![
        (rig::installed_binary().to_path_buf(), "/opt/atk/cagepipe".into()),
        (inner.dir.clone(), "/etc/cagepipe".into()),
        (inner_pids.clone(), inner_pids_inside),
    ];
    let s = rig::cage("atk-inside").container(move |o, _| o.bind_ro = binds).start();
    write_pidfile(&inner_pids.join(format!("{}.pid", s.user.name)), "1\n");
    let m = s.marker();
    let out = s
        .container()
        .nsenter()
        .arg("setpriv")
        .arg(format!("--reuid={}", s.user.uid))
        .arg(format!("--regid={}", rig::cagepipe_gid()))
        .args(["--clear-groups", "--", "/usr/bin/env", "-i", "PATH=/usr/bin:/bin"])
        .arg("/opt/atk/cagepipe")
        .args(m.probe(""))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    m.assert_refused(&rig::delivered(out), 75, "so it is not a container (or cagepipe already runs inside it)");
}
