//! The real binary, with real file capabilities, run as an unprivileged
//! user, delivering into real containers. Asserted from inside by the probe.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::rig::{self, Cage, Caller, ConfigDir, Delivery, Need::Root, Report, PROBE_IN_CONTAINER as PROBE};
use rig::{probe, raw_pipe, report, write_pidfile};

/// What a hostile caller adds to Exim's environment: none of it may reach
/// the command.
const HOSTILE_ENV: [(&str, &str); 7] = [
    ("LD_PRELOAD", "/tmp/evil.so"),
    ("LD_LIBRARY_PATH", "/tmp"),
    ("RUST_LOG", "trace"),
    ("RUST_BACKTRACE", "1"),
    ("IFS", "x"),
    ("BASH_ENV", "/tmp/x"),
    ("ENV", "/tmp/x"),
];

/// Deliver as Exim would, with the hostile additions.
fn run(s: &Cage, args: &[OsString], stdin: &[u8]) -> Delivery {
    let mut env = s.env();
    env.extend(HOSTILE_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    rig::deliver(&s.config, s.caller, args, &rig::env_refs(&env), stdin)
}

/// Contained, as the account's own ids, started in its home inside, with
/// an environment built from scratch (Exim's variables, identity from the
/// account, cagepipe's PATH).
fn assert_delivered(s: &Cage, r: &Report, uid: u32, gid: u32) {
    rig::assert_contained(s.container(), r, uid, gid);
    assert_eq!(r["cwd"], s.user.home.display().to_string());
    let env: BTreeMap<&str, &str> = r
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("env_").map(|k| (k, v.as_str())))
        .filter(|(k, _)| *k != "count")
        .collect();
    let expected: BTreeMap<&str, String> = [
        ("LOCAL_PART", "support".to_string()),
        ("DOMAIN", "example.test".into()),
        ("SENDER", "sender@example.org".into()),
        ("RECIPIENT", "support@example.test".into()),
        ("MESSAGE_ID", "1abcDE-000001-AB".into()),
        ("QUALIFY_DOMAIN", "example.test".into()),
        ("USER", s.user.name.clone()),
        ("LOGNAME", s.user.name.clone()),
        ("HOME", s.user.home.display().to_string()),
        ("SHELL", "/bin/sh".into()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
    ]
    .into_iter()
    .collect();
    let expected: BTreeMap<&str, &str> = expected.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(env, expected, "environment built from scratch");
}

#[test]
fn delivers_into_the_users_container_with_nothing_else() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("basic").start();
    let message: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let d = run(&s, &probe("report --stdin-hash"), &message);
    let r = report(&d);
    assert_delivered(&s, &r, s.user.uid, s.user.gid);
    assert_eq!(r["stdin_len"], message.len().to_string());
    assert_eq!(r["stdin_fnv64"], rig::fnv64(&message), "message arrives byte-identical");
    assert_eq!(r["groups"], s.user.gid.to_string(), "the user's own groups, not the cagepipe group");
}

#[test]
fn fallbacks_without_pidfd_and_close_range_give_the_same_result() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // What EL8's 4.18 kernel does anyway: no pidfd, no close_range, no clone3.
    let all_off = "[kernel]\ndisable = [\"pidfd\", \"close_range\", \"clone_into_cgroup\", \"clone_vm\"]\n";
    let s = rig::cage("fallback").config(all_off).start();
    let r = report(&run(&s, &probe("report"), b"x"));
    assert_delivered(&s, &r, s.user.uid, s.user.gid);
    let s = rig::cage("fallbackuserns").config(all_off).container(|o, _| o.userns = true).start();
    let r = report(&run(&s, &probe("report"), b"x"));
    assert_delivered(&s, &r, s.user.uid, s.user.gid);
    // Each one alone, too.
    for one in ["pidfd", "close_range", "clone_into_cgroup", "clone_vm"] {
        let s = rig::cage("fallbackone")
            .config(&format!("[kernel]\ndisable = [\"{one}\"]\n"))
            .container(|o, _| o.userns = true)
            .start();
        let r = report(&run(&s, &probe("report"), b"x"));
        assert_delivered(&s, &r, s.user.uid, s.user.gid);
    }
}

#[test]
fn chroot_style_container_is_entered_through_its_process_root() {
    let Some(_test) = rig::need(&[Root]) else { return };
    for disable in ["", "[kernel]\ndisable = [\"pidfd\"]\n"] {
        let s = rig::cage("chroot").config(disable).container(|o, _| o.chroot = true).start();
        let r = report(&run(&s, &probe("report"), b""));
        assert_delivered(&s, &r, s.user.uid, s.user.gid);
        let root = std::fs::metadata(format!("/proc/{}/root", s.container().pid)).unwrap();
        assert_eq!(r["root_dev_ino"], format!("{}:{}", root.dev(), root.ino()), "root is the container's");
    }
}

#[test]
fn user_namespace_ids_are_translated_and_unmapped_ones_refused() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // Identity map for ordinary accounts.
    let s = rig::cage("userns").container(|o, _| o.userns = true).start();
    let r = report(&run(&s, &probe("report"), b""));
    assert_ne!(s.container().ns_inode("user"), rig::host_ns_inode("user"));
    assert_delivered(&s, &r, s.user.uid, s.user.gid);

    // The user's host uid/gid appear as 5000/6000 inside.
    let s = rig::cage("usernsmap")
        .container(|o, user| {
            o.userns = true;
            o.uid_map = Some(format!("0 100000 1000,5000 {} 1", user.uid));
            o.gid_map = Some(format!("0 100000 1000,6000 {} 1", user.gid));
        })
        .start();
    let r = report(&run(&s, &probe("report"), b""));
    assert_delivered(&s, &r, 5000, 6000);

    // Not mapped at all: defer, never run with some other id.
    let s = rig::cage("usernsunmapped")
        .container(|o, _| {
            o.users.clear();
            o.userns = true;
            o.uid_map = Some("0 100000 65536".into());
            o.gid_map = Some("0 100000 65536".into());
        })
        .start();
    let m = s.marker();
    m.assert_refused(&run(&s, &m.probe(""), b""), 75, "not mapped");
}

#[test]
fn exit_status_and_signals_reach_exim_unchanged() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("status").start();
    for code in [0, 1, 42, 75, 77, 126, 127] {
        let d = run(&s, &probe(&format!("report --exit {code}")), b"");
        assert_eq!(d.code(), Some(code), "{d:?}");
    }
    for sig in [libc::SIGKILL, libc::SIGTERM, libc::SIGSEGV, libc::SIGHUP] {
        let d = run(&s, &probe(&format!("report --signal {sig}")), b"");
        assert_eq!(d.signal(), Some(sig), "cagepipe dies from the command's signal: {d:?}");
    }
    // The command may stop reading early; only its status counts.
    let big = vec![b'x'; 4 * 1024 * 1024];
    let d = run(&s, &probe("report --read-bytes 10"), &big);
    assert_eq!(d.code(), Some(0), "{d:?}");
}

#[test]
fn command_forms_and_path_search_happen_inside() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("forms").start();
    let name = &s.container().name;
    // Quoted words arrive in order, without quotes; ${run} and $HOME are words.
    let d = run(&s, &probe("report 'a b' \"c d\" e ${run{/usr/bin/id}} $HOME"), b"");
    let r = report(&d);
    let argv: Vec<&str> = (1..7).map(|i| r[&format!("argv_{i}")].as_str()).collect();
    assert_eq!(argv, ["report", "a b", "c d", "e", "${run{/usr/bin/id}}", "$HOME"]);
    assert_eq!(r["argv_count"], "7");
    // After --: the command even if it starts with '-' style words.
    let args: Vec<OsString> = ["--", PROBE, "report", "--", "-x"].iter().map(OsString::from).collect();
    let r = report(&run(&s, &args, b""));
    assert_eq!((r["argv_2"].as_str(), r["argv_3"].as_str()), ("--", "-x"));
    // -c runs the container's /bin/sh.
    let args: Vec<OsString> = vec!["-c".into(), format!("hostname; exec {PROBE} report").into()];
    let d = run(&s, &args, b"");
    assert_eq!(d.code(), Some(0), "{d:?}");
    assert!(String::from_utf8_lossy(&d.stdout).starts_with(&format!("{name}\n")));
    // A relative name is searched on PATH inside the container: "hostname"
    // prints the container's name, which no host program would.
    let d = run(&s, &raw_pipe("|hostname"), b"");
    assert_eq!(d.code(), Some(0), "{d:?}");
    assert_eq!(String::from_utf8_lossy(&d.stdout).trim(), name);
    // Not found / not executable inside.
    let d = run(&s, &raw_pipe("|/no/such/handler"), b"");
    assert_eq!(d.code(), Some(127), "{d:?}");
    assert!(d.stderr.contains("not found inside the container"), "{}", d.stderr);
    let d = run(&s, &raw_pipe("|cagepipe-no-such-command"), b"");
    assert_eq!(d.code(), Some(127), "{d:?}");
    let d = run(&s, &raw_pipe("|/etc/hostname"), b"");
    assert_eq!(d.code(), Some(126), "{d:?}");
}

#[test]
fn every_failure_has_its_exit_code() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("failures").start();
    let pidfile = &s.pidfile;
    // Each refusal below would have run this, had it not been refused.
    let m = s.marker();
    let probe = m.probe("");
    let refused = |d: Delivery, code: i32, words: &str| m.assert_refused(&d, code, words);

    // Command line (no command to run).
    rig::assert_refused(&run(&s, &[OsString::from("--bogus")], b""), 64, "usage");
    rig::assert_refused(&run(&s, &raw_pipe("|"), b""), 64, "usage");
    rig::assert_refused(&run(&s, &[], b""), 64, "nothing to deliver");
    // Caller not allowed.
    let mut args = vec![OsString::from("--user"), OsString::from("root")];
    args.extend(probe.clone());
    refused(run(&s, &args, b""), 77, "--user is for root only");
    let mut args = vec![OsString::from("--config"), OsString::from("/tmp/x.toml")];
    args.extend(probe.clone());
    refused(run(&s, &args, b""), 77, "--config is for root only");
    let low = ConfigDir::new(&format!(
        "[users]\nmin_uid = {}\n[container]\npidfile = \"{}\"\n",
        s.user.uid + 1,
        pidfile.display()
    ));
    refused(rig::deliver(&low, s.caller, &probe, &[], b""), 77, "below min_uid");
    let root = Caller { uid: 0, gid: 0 };
    refused(rig::deliver(&s.config, root, &probe, &[], b""), 77, "root delivers only with --user");

    // Configuration.
    let broken = ConfigDir::new("[container\n");
    refused(rig::deliver(&broken, s.caller, &probe, &[], b""), 75, "line 1");
    let unknown = ConfigDir::new(&format!("[container]\npidfile = \"{}\"\ncolour = 1\n", pidfile.display()));
    refused(rig::deliver(&unknown, s.caller, &probe, &[], b""), 75, "colour");
    let writable = ConfigDir::new(&format!("[container]\npidfile = \"{}\"\n", pidfile.display()));
    std::fs::set_permissions(writable.file(), std::fs::Permissions::from_mode(0o666)).unwrap();
    refused(rig::deliver(&writable, s.caller, &probe, &[], b""), 75, "writable by group or others");
    let missing = ConfigDir::new("");
    std::fs::remove_file(missing.file()).unwrap();
    refused(rig::deliver(&missing, s.caller, &probe, &[], b""), 75, "does not exist");

    // Pidfile.
    let original = std::fs::read_to_string(pidfile).unwrap();
    std::fs::remove_file(pidfile).unwrap();
    refused(run(&s, &probe, b""), 75, "no pidfile");
    let refuse = ConfigDir::new(&format!("[container]\npidfile = \"{}\"\nmissing = \"refuse\"\n", pidfile.display()));
    refused(rig::deliver(&refuse, s.caller, &probe, &[], b""), 77, "no pidfile");
    write_pidfile(pidfile, "");
    refused(run(&s, &probe, b""), 75, "is empty");
    write_pidfile(pidfile, "12ab\n");
    refused(run(&s, &probe, b""), 75, "pidfile");
    write_pidfile(pidfile, &original);
    std::fs::set_permissions(pidfile, std::fs::Permissions::from_mode(0o666)).unwrap();
    refused(run(&s, &probe, b""), 75, "cannot be trusted");
    nix::unistd::chown(pidfile, Some(nix::unistd::Uid::from_raw(s.user.uid)), None).unwrap();
    std::fs::set_permissions(pidfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(run(&s, &probe, b""), 75, "owned by uid");
    write_pidfile(pidfile, &original);
    nix::unistd::chown(pidfile, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    // A process in cagepipe's own mount namespace is not a container: root
    // runs cagepipe here, in this test's namespaces, for this test's pid.
    write_pidfile(pidfile, &format!("{}\n", std::process::id()));
    let mut args = s.as_root();
    args.extend(probe.clone());
    refused(rig::run_as_root(&args, b""), 75, "not a container");
    // A pid nobody has.
    write_pidfile(pidfile, "4194304\n");
    refused(run(&s, &probe, b""), 75, "does not exist");
    // Back to the real one: it works again, and the marker shows it ran.
    write_pidfile(pidfile, &original);
    assert_eq!(run(&s, &probe, b"").code(), Some(0));
    m.assert_written();
}

#[test]
fn a_pidfile_older_than_its_process_is_stale_and_never_entered() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // The container's pid as if it had been recycled: the pidfile was
    // written before this process started.
    let s = rig::cage("stale").start();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&s.pidfile).unwrap().set_modified(old).unwrap();
    let m = s.marker();
    m.assert_refused(&run(&s, &m.probe(""), b""), 75, "stale");
    // Rewritten (as a container manager would on start): accepted.
    let pid = std::fs::read_to_string(&s.pidfile).unwrap();
    write_pidfile(&s.pidfile, &pid);
    assert_eq!(run(&s, &m.probe(""), b"").code(), Some(0));
    m.assert_written();
}

#[test]
fn a_dead_container_defers_and_a_restarted_one_delivers() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let mut s = rig::cage("dead").start();
    let pid = s.container().pid;
    drop(s.take_container()); // stops it; the pidfile stays behind, naming a dead pid
    write_pidfile(&s.pidfile, &format!("{pid}\n"));
    let env: Vec<(&str, &str)> = vec![];
    let d = rig::deliver(&s.config, s.caller, &probe("report"), &env, b"");
    assert_eq!(d.code(), Some(75), "{d:?}");
    assert!(d.stdout.is_empty(), "nothing ran: {d:?}");
    s.start_container();
    let d = rig::deliver(&s.config, s.caller, &probe("report"), &env, b"");
    assert_eq!(d.code(), Some(0), "{d:?}");
}

#[test]
fn one_syslog_line_per_delivery_with_the_outcome() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("syslog").syslog().start();

    let d = run(&s, &probe("report --exit 3"), b"");
    assert_eq!(d.code(), Some(3));
    let line = s.log().line();
    let prefix = "<22>cagepipe[";
    assert!(line.starts_with(prefix), "facility mail, severity info: {line}");
    let expected = format!(
        "]: user={} uid={} container=\"pidfile {}\" pid={} outcome=exited exit=3 duration_ms=",
        s.user.name,
        s.user.uid,
        s.pidfile.display(),
        s.container().pid
    );
    assert!(line.contains(&expected), "{line}\nshould contain\n{expected}");

    let d = run(&s, &probe("report --signal 15"), b"");
    assert_eq!(d.signal(), Some(15));
    assert!(s.log().line().contains("outcome=signaled signal=15 "));

    // A failure: warning severity, the reason quoted, control bytes escaped.
    write_pidfile(&s.pidfile, "\u{1b}[2J\n");
    let d = run(&s, &raw_pipe("|/bin/true"), b"");
    assert_eq!(d.code(), Some(75));
    let line = s.log().line();
    assert!(line.starts_with("<20>cagepipe["), "{line}");
    assert!(line.contains("outcome=deferred exit=75 reason=\"pidfile "), "{line}");
    assert!(line.contains("\\x1b[2J"), "control bytes escaped: {line:?}");
    assert!(!line.contains('\u{1b}') && !line.contains('\n'), "{line:?}");
    // No syslog line for a missing container is lost either.
    std::fs::remove_file(&s.pidfile).unwrap();
    assert_eq!(run(&s, &raw_pipe("|/bin/true"), b"").code(), Some(75));
    assert!(s.log().line().contains("reason=\"no running container for user"));
}

#[test]
fn a_zombie_target_is_not_running() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("zombie").start();
    // A child of this test in its own mount namespace that has exited and
    // is not yet reaped.
    let mut child = std::process::Command::new("unshare").args(["--mount", "true"]).spawn().unwrap();
    let zpid = child.id();
    let stat_path = format!("/proc/{zpid}/stat");
    for _ in 0..200 {
        if std::fs::read_to_string(&stat_path).map(|t| t.contains(") Z ")).unwrap_or(false) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    write_pidfile(&s.pidfile, &format!("{zpid}\n"));
    let m = s.marker();
    let d = run(&s, &m.probe(""), b"");
    child.wait().unwrap();
    m.assert_refused(&d, 75, "zombie");
}

#[test]
fn without_a_home_inside_the_command_starts_in_the_containers_root() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // The container does not know the user: no /home/USER inside.
    let s = rig::cage("nohome").container(|o, _| o.users.clear()).start();
    let d = run(&s, &probe("report"), b"");
    let r = report(&d);
    assert_eq!(r["cwd"], "/");
    let root = std::fs::metadata(format!("/proc/{}/root", s.container().pid)).unwrap();
    assert_eq!(r["cwd_dev_ino"], format!("{}:{}", root.dev(), root.ino()), "cwd is the container's root");
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let ps = std::process::Command::new("ps").args(["-eo", "pid,ppid,pgid,stat,cmd"]).output().unwrap();
    panic!("timed out waiting until {what}\n{}", String::from_utf8_lossy(&ps.stdout));
}

#[test]
fn killing_the_process_group_leaves_nothing_in_the_container() {
    let Some(_test) = rig::need(&[Root]) else { return };
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let s = rig::cage("killpg").start();
    let c = s.container();
    // Exim runs the transport in a process group of its own and, on
    // timeout, SIGKILLs the whole group.
    let mut child = rig::command(&s.config, s.caller, &probe("report --spawn-bg --sleep 60"), &[])
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the command and its background child run", || c.commands().len() >= 2);
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    wait_until("nothing of the delivery is left", || c.commands().is_empty());
}

#[test]
fn the_command_does_not_outlive_a_killed_cagepipe() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("killwrapper").start();
    let c = s.container();
    let mut child = rig::command(&s.config, s.caller, &probe("report --sleep 60"), &[])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the command runs", || c.commands().len() == 1);
    // Only cagepipe itself (the exec chain keeps the spawned pid) is killed.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    wait_until("the command died with its parent", || c.commands().is_empty());
}

#[test]
fn check_and_dry_run_explain_without_running_anything() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("check").start();
    let pid = s.container().pid;
    let d = run(&s, &[OsString::from("check")], b"");
    let out = String::from_utf8_lossy(&d.stdout).into_owned();
    assert_eq!(d.code(), Some(0), "{d:?}");
    assert!(out.contains(&format!("pid {pid} running since")), "{out}");
    assert!(out.contains("capabilities missing  none"), "{out}");
    // Where the container reference came from: the file and the line.
    let source = "(/etc/cagepipe/cagepipe.toml line 2)";
    assert!(out.lines().any(|l| l.starts_with("container source") && l.ends_with(source)), "{out}");
    assert!(
        out.contains(
            "kernel features       used where the kernel has them: pidfd, close_range, clone_into_cgroup, clone_vm"
        ),
        "{out}"
    );
    assert!(out.ends_with("DELIVERABLE\n"), "{out}");

    let m = s.marker();
    let mut args = vec![OsString::from("--dry-run")];
    args.extend(probe(&format!("report --mark {} 'a b'", m.path)));
    let d = run(&s, &args, b"");
    let out = String::from_utf8_lossy(&d.stdout).into_owned();
    assert_eq!(d.code(), Some(0), "{d:?}");
    assert!(out.contains(&format!("command               {PROBE} report --mark {} \"a b\"", m.path)), "{out}");
    assert!(out.contains("dry run               nothing was executed"), "{out}");
    assert!(!out.contains("hostname="), "the probe did not run: {out}");
    m.assert_absent();

    // DELIVERABLE means the delivery would start the command: a program the
    // container does not have (only the host does) is NOT DELIVERABLE with
    // the delivery's own exit code, as the delivery and survey say.
    let host_only = std::env::current_exe().unwrap();
    for (pipe, code, why) in [
        (format!("|{} -d x", host_only.display()), 127, "not found inside the container"),
        ("|/etc/hostname".to_string(), 126, "cannot execute /etc/hostname inside the container"),
    ] {
        let mut args = vec![OsString::from("--dry-run")];
        args.extend(raw_pipe(&pipe));
        let d = run(&s, &args, b"");
        let out = String::from_utf8_lossy(&d.stdout).into_owned();
        assert_eq!(d.code(), Some(code), "{pipe}: {d:?}");
        assert!(out.contains(&format!("NOT DELIVERABLE (exit {code})")) && out.contains(why), "{pipe}: {out}");
        let real = run(&s, &raw_pipe(&pipe), b"");
        assert_eq!(real.code(), Some(code), "the delivery agrees: {real:?}");
    }

    // The same as one JSON object, for monitoring.
    let d = run(&s, &[OsString::from("check"), OsString::from("--format=json")], b"");
    assert_eq!(d.code(), Some(0), "{d:?}");
    let j = rig::CheckJson::parse(&d.stdout, &d);
    assert_eq!(j.verdict(), "DELIVERABLE");
    assert_eq!(j.exit(), 0);
    assert_eq!(j.reason(), None);
    assert_eq!(j.user_name(), s.user.name);
    assert_eq!(j.target_pid(), Some(pid), "{j}");
    assert_eq!(j.user_uid(), Some(u64::from(s.user.uid)), "numbers are numbers: {j}");
    // One per hierarchy the container has a cgroup in: v2 and every v1
    // one on a hybrid host, v2 or v1 alone on the others.
    let hierarchies = s.container().cgroup_dirs().len();
    assert!(hierarchies > 0 && j.cgroups_to_join().len() == hierarchies, "one per mounted hierarchy: {j}");
    assert!(j.cgroups_to_join().iter().all(|c| c.split(' ').nth(1).is_some_and(|d| d.starts_with('/'))), "{j}");
    assert!(j.namespaces().iter().any(|n| n == "mnt"), "{j}");
    assert_eq!(j.credentials_where(), Some("container"), "{j}");
    assert_eq!(j.capabilities_missing(), Vec::<String>::new(), "{j}");

    std::fs::remove_file(&s.pidfile).unwrap();
    let d = run(&s, &[OsString::from("check"), OsString::from("--format=json")], b"");
    assert_eq!(d.code(), Some(75), "{d:?}");
    let j = rig::CheckJson::parse(&d.stdout, &d);
    assert_eq!(j.verdict(), "NOT DELIVERABLE");
    assert_eq!(j.exit(), 75);
    assert!(j.reason().is_some_and(|r| r.starts_with("no running container")), "{j}");
    let d = run(&s, &[OsString::from("check")], b"");
    let out = String::from_utf8_lossy(&d.stdout).into_owned();
    assert_eq!(d.code(), Some(75), "{d:?}");
    assert!(out.contains("NOT DELIVERABLE (exit 75): no running container"), "{out}");
}

#[test]
fn root_reproduces_a_delivery_by_hand_with_exims_variables() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("byhand").start();
    let mut args = s.as_root();
    args.extend(["--env".into(), "LOCAL_PART=support".into(), "--env".into(), "SENDER=someone@example.org".into()]);
    args.extend(probe("report --stdin-hash"));
    let d = rig::run_as_root(&args, b"a message\n");
    let r = report(&d);
    assert_eq!(r["uid"], s.user.uid.to_string(), "run as the user, not as root");
    assert_eq!(r["ns_mnt"], s.container().ns_inode("mnt").to_string(), "inside the user's container");
    assert_eq!(r["env_LOCAL_PART"], "support");
    assert_eq!(r["env_SENDER"], "someone@example.org");
    assert_eq!(r["env_USER"], s.user.name, "identity from the account, as for Exim");
    assert_eq!(r["stdin_len"], "10");

    // A name Exim's deliveries would not pass on is refused, not dropped.
    let m = s.marker();
    let mut args = s.as_root();
    args.extend(["--env".into(), "LD_PRELOAD=/x".into()]);
    args.extend(m.probe(""));
    m.assert_refused(&rig::run_as_root(&args, b""), 64, "--env LD_PRELOAD: cagepipe passes on only LOCAL_PART");
}
