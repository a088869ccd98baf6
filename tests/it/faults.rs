//! Faults around a delivery: whatever breaks, Exim must see 75 (defer) or
//! the command's own status, and no process of the delivery may stay in the
//! container. The real binary, with file capabilities, run as the user the
//! way Exim runs it, against real containers.
//!
//! Already covered in the deliver module and not repeated here: stale and
//! zombie pidfiles (`a_pidfile_older_than_its_process_is_stale_and_never_entered`,
//! `a_zombie_target_is_not_running`), a container that died and was
//! restarted (`a_dead_container_defers_and_a_restarted_one_delivers`), and
//! Exim's timeout killing the process group
//! (`killing_the_process_group_leaves_nothing_in_the_container`).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::rig::{self, Cage, ConfigDir, Container, Delivery, Marker, Need::Root};
use rig::write_pidfile;

/// A cage for the test account `cptest-f<tag>` (with `extra_config`).
fn setup(tag: &str, extra_config: &str) -> Cage {
    rig::cage(&format!("f{tag}")).config(extra_config).start()
}

/// Deliver `stdin` to the marked `|PROBE report --mark M ARGS` with
/// `config`; the marker shows whether it ran.
fn deliver_with(s: &Cage, config: &ConfigDir, args: &str, stdin: &[u8]) -> (Delivery, Marker) {
    let m = s.marker();
    (s.deliver_with(config, &m.probe(args), stdin), m)
}

/// [`deliver_with`] the cage's own configuration and an empty message.
fn deliver(s: &Cage, args: &str) -> (Delivery, Marker) {
    deliver_with(s, &s.config, args, b"")
}

/// The command of a delivery of `|PROBE report ARGS`, for the test to spawn.
fn command(s: &Cage, args: &str) -> std::process::Command {
    s.command(&rig::probe(&format!("report {args}")))
}

/// Poll `done` for up to `limit`; false if it never held.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Nothing of any delivery is left in the container (its pid namespace and
/// cgroups hold only its init and launcher). Killed processes need a moment
/// to be reaped by the container's init, hence the wait.
fn assert_clean(c: &Container, after: &str) {
    let mut left = Vec::new();
    if !eventually(Duration::from_secs(5), || {
        left = c.leftovers();
        left.is_empty()
    }) {
        panic!("after {after}, processes are left in container {}:\n{}", c.name, rig::describe_pids(&left));
    }
}

/// Exim defers (75), nothing ran (no report on stdout, no marker), and
/// stderr says why.
fn assert_deferred((d, m): &(Delivery, Marker), fault: &str, words: &str) {
    assert_eq!(d.code(), Some(75), "{fault}: Exim must see 75: {d:?}");
    assert!(d.stdout.is_empty(), "{fault}: nothing may run: {d:?}");
    m.assert_absent();
    assert!(d.stderr.contains(words), "{fault}: stderr should say {words:?}: {}", d.stderr);
}

/// A good delivery into `s`: the report comes from inside the container.
fn assert_delivers(s: &Cage, config: &ConfigDir) {
    let (d, m) = deliver_with(s, config, "", b"");
    assert_eq!(d.code(), Some(0), "control delivery: {d:?}");
    let r = rig::parse_report(&d.stdout);
    assert_eq!(r["hostname"], s.container().name, "control delivery ran inside");
    m.assert_written();
}

#[test]
fn configuration_faults_defer_and_nothing_enters_the_container() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = setup("config", "");
    let good = format!("[container]\npidfile = \"{}/{{user}}.pid\"\n", s.pidfile.parent().unwrap().display());
    let mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // Each fault: how to break a good configuration, and what stderr says.
    type Break = Box<dyn Fn(&ConfigDir)>;
    let faults: Vec<(&str, Break, &str)> = vec![
        ("missing", Box::new(|c| std::fs::remove_file(c.file()).unwrap()), "does not exist"),
        ("unreadable file (0600)", Box::new(move |c| mode(&c.file(), 0o600)), "cannot be read: "),
        ("unreadable directory (0700)", Box::new(move |c| mode(&c.dir, 0o700)), "Permission denied"),
        ("world-writable file", Box::new(move |c| mode(&c.file(), 0o666)), "writable by group or others"),
        ("group-writable file", Box::new(move |c| mode(&c.file(), 0o664)), "writable by group or others"),
        ("world-writable directory", Box::new(move |c| mode(&c.dir, 0o777)), "writable by group or others"),
        (
            "owned by the user",
            Box::new({
                let uid = s.user.uid;
                move |c| nix::unistd::chown(&c.file(), Some(nix::unistd::Uid::from_raw(uid)), None).unwrap()
            }),
            "owned by uid",
        ),
        (
            "a symbolic link to a good file",
            Box::new(|c| {
                std::fs::rename(c.file(), c.dir.join("real.toml")).unwrap();
                std::os::unix::fs::symlink("real.toml", c.file()).unwrap();
            }),
            "symbolic link",
        ),
        (
            // Opened without O_NONBLOCK, a FIFO would hang the delivery.
            "a FIFO",
            Box::new(|c| {
                std::fs::remove_file(c.file()).unwrap();
                nix::unistd::mkfifo(&c.file(), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
            }),
            "not a regular file",
        ),
        ("invalid TOML", Box::new(|c| c.write("[container\n")), "line 1, column"),
        ("not UTF-8", Box::new(|c| std::fs::write(c.file(), b"[container]\npidfile = \"/\xff\"\n").unwrap()), "UTF-8"),
        ("empty", Box::new(|c| c.write("")), "no [container] section"),
        ("unknown key", Box::new(|c| c.write("[container]\npidfile = \"/x\"\ncolour = 1\n")), "colour"),
        ("over 64 KiB", Box::new(|c| c.write(&"#\n".repeat(33 * 1024))), "larger than"),
    ];
    for (fault, break_it, words) in &faults {
        let config = ConfigDir::new(&good);
        break_it(&config);
        let deferred = deliver_with(&s, &config, "", b"");
        assert_deferred(&deferred, fault, words);
        let d = &deferred.0;
        assert!(d.stderr.contains("configuration /etc/cagepipe/cagepipe.toml"), "{fault}: names the file: {d:?}");
        assert_clean(s.container(), fault);
    }
    // The container itself was fine all along.
    assert_delivers(&s, &ConfigDir::new(&good));
}

#[test]
fn pidfile_faults_defer_and_nothing_enters_the_container() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = setup("pidfile", "");
    enum Break {
        Remove,
        Write(&'static str),
        /// A pid that was alive when the pidfile was written and is dead
        /// and reaped now. Should the number be reused meanwhile, the new
        /// process started after the pidfile was written: stale, also 75.
        DeadPid,
        /// A live process in the host's namespaces (a manager that records
        /// its own pid instead of the container's init).
        HostProcess,
        /// The right pid, with this file mode.
        Mode(u32),
    }
    let faults: Vec<(&str, Break, &[&str])> = vec![
        ("missing", Break::Remove, &["no pidfile"]),
        ("empty", Break::Write(""), &["is empty"]),
        ("only white space", Break::Write(" \n\n"), &["is empty"]),
        ("garbage", Break::Write("12ab\n"), &["does not hold one decimal pid"]),
        ("control bytes", Break::Write("\u{1b}[2J\0\n"), &["does not hold one decimal pid", "\\x1b"]),
        ("two pids", Break::Write("100\n200\n"), &["does not hold one decimal pid"]),
        ("negative", Break::Write("-1\n"), &["does not hold one decimal pid"]),
        ("zero", Break::Write("0\n"), &["does not hold one decimal pid"]),
        ("beyond PID_MAX_LIMIT", Break::Write("99999999999999999999\n"), &["does not hold one decimal pid"]),
        ("a free pid number", Break::Write("4194304\n"), &["does not exist"]),
        ("a dead pid", Break::DeadPid, &["process "]),
        // Refused as the host's; where a sandbox hides pid 1's namespaces
        // even from root, refused as unreadable.
        ("the host's init", Break::Write("1\n"), &["process 1"]),
        ("a process on the host", Break::HostProcess, &["not a container"]),
        ("unreadable (0600)", Break::Mode(0o600), &["Permission denied"]),
        ("world-writable", Break::Mode(0o666), &["cannot be trusted"]),
    ];
    for (fault, break_it, words) in &faults {
        let mut host_process = None;
        match break_it {
            Break::Remove => std::fs::remove_file(&s.pidfile).unwrap(),
            Break::Write(text) => write_pidfile(&s.pidfile, text),
            Break::HostProcess => {
                let child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
                std::thread::sleep(Duration::from_millis(20)); // an mtime after its start
                write_pidfile(&s.pidfile, &format!("{}\n", child.id()));
                host_process = Some(child);
            }
            Break::DeadPid => {
                let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
                std::thread::sleep(Duration::from_millis(20)); // an mtime after its start
                write_pidfile(&s.pidfile, &format!("{}\n", child.id()));
                child.kill().unwrap();
                child.wait().unwrap();
            }
            Break::Mode(mode) => {
                write_pidfile(&s.pidfile, &s.pidfile_text());
                std::fs::set_permissions(&s.pidfile, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
        }
        let d = deliver(&s, "");
        if let Some(mut child) = host_process {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        for w in words.iter() {
            assert_deferred(&d, fault, w);
        }
        assert_clean(s.container(), fault);
        write_pidfile(&s.pidfile, &s.pidfile_text());
    }
    assert_delivers(&s, &s.config);
}

/// How the deliveries racing a container stop ended.
#[derive(Debug, Default)]
struct RaceOutcome {
    /// Exit 0, the report from inside the container.
    delivered_inside: usize,
    /// Exit 75, counted by reason (pids and paths left out).
    deferred: std::collections::BTreeMap<String, usize>,
    /// Anything else: a bug.
    wrong: Vec<String>,
}

/// What cagepipe says when the command was killed with its container.
const STOPPED_DURING: &str = "the container stopped during the delivery";

/// Keep `WORKERS` deliveries going into one container, stop the container
/// in the middle (the test bed kills its init, which takes the pid
/// namespace with it, kills whatever is left in its cgroups, removes the
/// cgroups, then the pidfile), and classify every outcome.
fn race_deliveries_against_a_stop(tag: &str, extra_config: &str) -> RaceOutcome {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    const WORKERS: usize = 8;
    const BEFORE: usize = 16; // deliveries finished before the stop starts
    const AFTER: usize = 16; // begun after it returned
    let s = setup(tag, extra_config);
    let inside = rig::Inside::of(s.container(), s.user.uid, s.user.gid);
    let finished = AtomicUsize::new(0);
    let stop_done = AtomicBool::new(false);
    let results = Mutex::new(Vec::new());
    let mut stopped_at = 0;
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                let mut after_stop = 0;
                while after_stop < AFTER.div_ceil(WORKERS) {
                    if stop_done.load(Ordering::SeqCst) {
                        after_stop += 1;
                    }
                    let d = s.run(&rig::probe("report"));
                    finished.fetch_add(1, Ordering::SeqCst);
                    results.lock().unwrap().push(d);
                }
            });
        }
        assert!(eventually(Duration::from_secs(60), || finished.load(Ordering::SeqCst) >= BEFORE));
        stopped_at = finished.load(Ordering::SeqCst);
        // The free function: the workers hold `s` (Drop stops it again, a no-op).
        let out = rig::stop_container(&s.container().name);
        assert!(out.status.success(), "stop with deliveries entering: {}", String::from_utf8_lossy(&out.stderr));
        stop_done.store(true, Ordering::SeqCst);
    });
    let results = results.into_inner().unwrap();
    let mut outcome = RaceOutcome::default();
    for d in &results {
        match d.code() {
            Some(0) => {
                let r = rig::parse_report(&d.stdout);
                let differ = inside.differences(&r);
                if differ.is_empty() {
                    outcome.delivered_inside += 1;
                } else {
                    outcome.wrong.push(format!("delivered elsewhere ({differ:?} differ): {d:?}"));
                }
            }
            // Nothing ran; or the command ran inside (its report may have
            // begun) and was killed with the container.
            Some(75) if d.stdout.is_empty() || (d.stderr.contains(STOPPED_DURING) && d.stdout.starts_with(b"uid=")) => {
                let reason = d.stderr.lines().next().unwrap_or_default();
                let kind: String = reason
                    .split_whitespace()
                    .filter(|w| !w.chars().any(|c| c.is_ascii_digit() || c == '/'))
                    .collect::<Vec<_>>()
                    .join(" ");
                *outcome.deferred.entry(kind).or_default() += 1;
            }
            _ => outcome.wrong.push(format!("{d:?}")),
        }
    }
    println!("{tag}: {} deliveries, the stop began after {stopped_at}: {outcome:#?}", results.len());
    let left = s.container().leftovers();
    assert!(left.is_empty(), "after the stop, left in the container:\n{}", rig::describe_pids(&left));
    outcome
}

#[test]
fn deliveries_racing_a_container_stop_defer_or_run_inside() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // Each kernel path: pidfd and clone3 into the cgroup (the child on our
    // memory), and none of them (a forked child joins the cgroup v2 itself,
    // through cgroup.procs).
    for (tag, config) in [
        ("race", ""),
        ("racefallback", "[kernel]\ndisable = [\"pidfd\", \"close_range\", \"clone_into_cgroup\", \"clone_vm\"]\n"),
    ] {
        let o = race_deliveries_against_a_stop(tag, config);
        assert!(o.wrong.is_empty(), "{tag}: every delivery ends delivered inside or deferred: {:#?}", o.wrong);
        assert!(o.delivered_inside > 0 && !o.deferred.is_empty(), "{tag}: the stop fell amid the deliveries: {o:#?}");
    }
}

/// The command is running (and has a child of its own) when its container
/// stops. The container manager kills the command, so the message was not
/// (or not completely) handled: Exim sees 75 and keeps the message, and the
/// retry delivers it once the container runs again. Without cagepipe's
/// check, Exim would see the command's SIGKILL and bounce the message
/// ("terminated by signal 9").
#[test]
fn a_container_stopped_mid_delivery_defers() {
    let Some(_test) = rig::need(&[Root]) else { return };
    enum Stop {
        /// testbed/container stop: SIGKILL to the init first, which makes
        /// the kernel kill everything else in its pid namespace.
        TestBed,
        /// Everything in the container's cgroup v2 at once (cgroup.kill,
        /// as systemd does), in no particular order.
        CgroupKill,
    }
    let all_off = "[kernel]\ndisable = [\"pidfd\", \"close_range\", \"clone_into_cgroup\", \"clone_vm\"]\n";
    for (tag, config, stop) in
        [("midstop", "", Stop::TestBed), ("midstopfallback", all_off, Stop::TestBed), ("midkill", "", Stop::CgroupKill)]
    {
        let mut s = setup(tag, config);
        let child = command(&s, "--spawn-bg --sleep 60")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        assert!(
            eventually(Duration::from_secs(10), || s.container().commands().len() == 2),
            "{tag}: the command and its background child run"
        );
        match stop {
            Stop::TestBed => s.container_mut().stop().unwrap(),
            Stop::CgroupKill => {
                let v2 = s.container().cgroup_dirs().into_iter().find(|d| d.join("cgroup.kill").exists());
                let Some(v2) = v2 else {
                    rig::skip_or_fail(tag, "no cgroup.kill (Linux 5.14+) in the container's cgroup v2");
                    continue;
                };
                std::fs::write(v2.join("cgroup.kill"), "1").unwrap();
            }
        }
        let d = rig::delivered(child.wait_with_output().unwrap());
        assert_eq!(d.code(), Some(75), "{tag}: Exim must defer: {d:?}");
        assert!(d.stderr.contains(STOPPED_DURING), "{tag}: stderr says why: {}", d.stderr);
        assert!(d.stderr.contains("killed by signal 9"), "{tag}: and how: {}", d.stderr);
        let r = rig::parse_report(&d.stdout);
        assert_eq!(r["hostname"], s.container().name, "{tag}: the command had run inside");
        s.container_mut().stop().unwrap();
        assert_clean(s.container(), tag);
    }
}

/// Parts of a failing delivery's stderr: cagepipe's own lines, in order.
fn cagepipe_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("cagepipe: ")).collect()
}

/// Without a syslog daemon, the audit line goes to stderr, but only for a
/// delivery that failed anyway: with `return_output` Exim fails any
/// delivery that writes output, and a working delivery must not bounce
/// because syslog is down.
#[test]
fn without_syslog_deliveries_work_and_only_failures_write_the_audit_line_to_stderr() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let not_a_socket = rig::fresh("not-a-socket");
    std::fs::write(&not_a_socket, "").unwrap();
    let refused = rig::fresh("nobody-listens").with_extension("sock");
    drop(std::os::unix::net::UnixDatagram::bind(&refused).unwrap()); // the file stays, unbound
    let missing = rig::fresh("no-such-dir").join("log");
    for (what, socket) in [("missing", &missing), ("not a socket", &not_a_socket), ("nobody listening", &refused)] {
        let s = setup("nosyslog", &format!("[log]\nsocket = \"{}\"\n", socket.display()));
        let user = format!("user={} uid={} ", s.user.name, s.user.uid);

        let (d, _) = deliver(&s, "--stdin-hash");
        assert_eq!(d.code(), Some(0), "{what}: delivered: {d:?}");
        assert_eq!(rig::parse_report(&d.stdout)["hostname"], s.container().name, "{what}");
        assert_eq!(d.stderr, "", "{what}: a success writes nothing to stderr");

        let (d, _) = deliver(&s, "--exit 3");
        assert_eq!(d.code(), Some(3), "{what}: the command's status: {d:?}");
        let lines = cagepipe_lines(&d.stderr);
        assert_eq!(lines.len(), 1, "{what}: one audit line on stderr: {}", d.stderr);
        assert!(lines[0].starts_with(&format!("cagepipe: {user}")), "{what}: {}", lines[0]);
        assert!(lines[0].contains(" outcome=exited exit=3 duration_ms="), "{what}: {}", lines[0]);

        let (d, _) = deliver(&s, "--signal 15");
        assert_eq!(d.signal(), Some(15), "{what}: the command's signal: {d:?}");
        let lines = cagepipe_lines(&d.stderr);
        assert_eq!(lines.len(), 1, "{what}: {}", d.stderr);
        assert!(lines[0].contains(" outcome=signaled signal=15 "), "{what}: {}", lines[0]);

        // cagepipe's own failure: the sentence for a person, and no more.
        std::fs::remove_file(&s.pidfile).unwrap();
        let deferred = deliver(&s, "");
        assert_deferred(&deferred, what, "no running container");
        let d = &deferred.0;
        let lines = cagepipe_lines(&d.stderr);
        assert_eq!(lines.len(), 1, "{what}: {}", d.stderr);
        assert!(lines[0].starts_with("cagepipe: no running container for user"), "{what}: {}", lines[0]);
        assert_clean(s.container(), what);
    }
}

/// A syslog daemon that stopped reading (hung, or busy): once its queue is
/// full (net.unix.max_dgram_qlen lines), sending blocks. The delivery must
/// not wait for it: the line is given up after a short wait, and goes to
/// stderr if the delivery failed anyway.
#[test]
fn a_syslog_daemon_that_stopped_reading_does_not_hold_deliveries() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // A daemon that never reads: the catcher, never asked for a line.
    let daemon = rig::Syslog::new();
    // Fill its queue ourselves.
    let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
    client.connect(&daemon.path).unwrap();
    client.set_nonblocking(true).unwrap();
    let mut queued = 0;
    while client.send(b"<22>filler: x").is_ok() {
        queued += 1;
        assert!(queued < 100_000, "the queue never filled");
    }
    let s = setup("stucklog", &daemon.config());
    for (args, code) in [("", 0), ("--exit 3", 3)] {
        let started = Instant::now();
        let mut child = command(&s, args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let ended = eventually(Duration::from_secs(10), || child.try_wait().unwrap().is_some());
        if !ended {
            child.kill().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(ended, "a delivery with {args:?} hung on a full syslog queue ({queued} lines)");
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if code == 0 {
            assert_eq!(stderr, "", "a success writes nothing to stderr");
        } else {
            assert!(stderr.contains(" outcome=exited exit=3 "), "the failure's audit line on stderr: {stderr}");
        }
        println!("{args:?}: ended after {took:?} with the syslog queue full");
    }
}

/// State, parent, process group and session of a host pid.
fn proc_ids(pid: i32) -> Option<(char, i32, i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    Some((f[0].chars().next()?, f[1].parse().ok()?, f[2].parse().ok()?, f[3].parse().ok()?))
}

/// What cagepipe guarantees when it is SIGKILLed: its direct child, the
/// command, dies with it (PR_SET_PDEATHSIG, SIGKILL), whatever the command
/// did to its session or process group. Nothing more: what the command
/// started is reparented to the container's init and lives on, unless Exim's
/// timeout `killpg` reaches it in Exim's process group.
///
/// | killed           | the command           | command | its child |
/// |------------------|-----------------------|---------|-----------|
/// | cagepipe alone   | sleeps                | dies    | (none)    | deliver
/// | cagepipe alone   | called setsid         | dies    | (none)    | here
/// | cagepipe alone   | started a child       | dies    | lives     | here
/// | Exim's killpg    | started a child       | dies    | dies      | deliver
/// | Exim's killpg    | setsid, then a child  | dies    | lives     | here
#[test]
fn a_killed_cagepipe_takes_exactly_its_direct_child_along() {
    let Some(_test) = rig::need(&[Root]) else { return };
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    // (tag, probe arguments, kill the whole process group, its child lives)
    for (tag, args, group, child_lives) in [
        ("killsetsid", "--setsid --sleep 60", false, false),
        ("killbg", "--spawn-bg --sleep 60", false, true),
        ("killpgsetsid", "--setsid --spawn-bg --sleep 60", true, true),
    ] {
        let mut s = setup(tag, "");
        let setsid = args.contains("--setsid");
        let expect = if args.contains("--spawn-bg") { 2 } else { 1 };
        // Like Exim: a process group of its own; nothing read from its output.
        let mut wrapper = command(&s, args)
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let wrapper_pid = wrapper.id() as i32;
        assert!(
            eventually(Duration::from_secs(10), || s.container().commands().len() == expect
                && s.container()
                    .commands()
                    .iter()
                    .all(|p| proc_ids(*p).is_some_and(|ids| !setsid || ids.3 != wrapper_pid))),
            "{tag}: the command (and its child) run"
        );
        let probes = s.container().commands();
        let command = *probes.iter().find(|p| proc_ids(**p).is_some_and(|ids| ids.1 == wrapper_pid)).unwrap();
        let (_, _, pgid, sid) = proc_ids(command).unwrap();
        if setsid {
            assert_eq!((pgid, sid), (command, command), "{tag}: the command left Exim's process group and session");
        } else {
            assert_eq!(pgid, wrapper_pid, "{tag}: the command is in Exim's process group");
        }
        let child = probes.iter().copied().find(|p| *p != command);

        if group {
            killpg(Pid::from_raw(wrapper_pid), Signal::SIGKILL).unwrap();
        } else {
            kill(Pid::from_raw(wrapper_pid), Signal::SIGKILL).unwrap();
        }
        assert_eq!(wrapper.wait().unwrap().signal(), Some(libc::SIGKILL), "{tag}: Exim sees the wrapper killed");
        assert!(
            eventually(Duration::from_secs(5), || !rig::process_running(command)),
            "{tag}: the command died with cagepipe:\n{}",
            rig::describe_pids(&[command])
        );
        if let Some(child) = child {
            // Give a kill that should not come the time it would take.
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(rig::process_running(child), child_lives, "{tag}: the command's child");
            if child_lives {
                assert!(
                    eventually(Duration::from_secs(5), || proc_ids(child)
                        .is_some_and(|ids| ids.1 == s.container().pid)),
                    "{tag}: the orphan is the container's init's:\n{}",
                    rig::describe_pids(&[child])
                );
            }
        }
        // The killed command's parent is gone, so it stays a zombie until
        // the host's init collects it, and the container's init cannot
        // finish dying before: the stop may take a moment.
        s.container_mut().stop().unwrap();
        assert_clean(s.container(), tag);
    }
}
