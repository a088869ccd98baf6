//! The real binary, with real file capabilities, run as an unprivileged
//! user, delivering into real containers. Asserted from inside by the probe.

mod common;
mod rig;

use std::collections::BTreeMap;
use std::ffi::OsString;

use common::{Container, ContainerOpts};
use rig::{deliver, raw_pipe, write_pidfile, Caller, ConfigDir, Delivery};

const PROBE: &str = "/opt/cagepipe-probe/probe";

struct Setup {
    container: Container,
    config: ConfigDir,
    user: common::User,
    caller: Caller,
}

/// A container for a fresh test user, its pidfile written where a fresh
/// configuration looks for it.
fn setup(test: &str, extra_config: &str, tweak: impl FnOnce(&mut ContainerOpts)) -> Setup {
    let user = common::test_user(&format!("cptest-{}", &test[..test.len().min(12)]));
    let (config, piddir) = ConfigDir::with_pidfile_dir(extra_config);
    let mut opts = ContainerOpts {
        users: vec![user.name.clone()],
        pidfile: Some(piddir.join(format!("{}.pid", user.name))),
        ..Default::default()
    };
    tweak(&mut opts);
    let container = Container::start(&common::unique_name(test), &opts);
    let caller = Caller { uid: user.uid, gid: rig::cagepipe_gid() };
    Setup { container, config, user, caller }
}

fn exim_env(user: &common::User) -> Vec<(&'static str, String)> {
    vec![
        ("LOCAL_PART", "support".to_string()),
        ("DOMAIN", "example.test".into()),
        ("SENDER", "sender@example.org".into()),
        ("RECIPIENT", "support@example.test".into()),
        ("MESSAGE_ID", "1abcDE-000001-AB".into()),
        ("QUALIFY_DOMAIN", "example.test".into()),
        ("USER", "support".into()),
        ("LOGNAME", "support".into()),
        ("HOME", user.home.display().to_string()),
        ("SHELL", "/bin/sh".into()),
        ("PATH", "/bin:/usr/bin".into()),
        // What a hostile caller adds: none of it may reach the command.
        ("LD_PRELOAD", "/tmp/evil.so".into()),
        ("LD_LIBRARY_PATH", "/tmp".into()),
        ("RUST_LOG", "trace".into()),
        ("RUST_BACKTRACE", "1".into()),
        ("IFS", "x".into()),
        ("BASH_ENV", "/tmp/x".into()),
        ("ENV", "/tmp/x".into()),
    ]
}

fn run(s: &Setup, args: &[OsString], stdin: &[u8]) -> Delivery {
    let env = exim_env(&s.user);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    deliver(&s.config, s.caller, args, &env, stdin)
}

fn report(d: &Delivery) -> BTreeMap<String, String> {
    assert_eq!(d.code(), Some(0), "delivery failed: {d:?}");
    common::parse_report(&d.stdout)
}

/// Everything that must hold inside for any delivery into `s.container`.
fn assert_contained(s: &Setup, r: &BTreeMap<String, String>, expect_uid: u32, expect_gid: u32) {
    for ns in ["mnt", "pid", "uts", "ipc", "net", "cgroup", "time"] {
        assert_eq!(r[&format!("ns_{ns}")], s.container.ns_inode(ns).to_string(), "{ns} namespace is the container's");
    }
    assert_eq!(r["ns_user"], s.container.ns_inode("user").to_string(), "user namespace is the container's");
    assert_eq!(r["hostname"], s.container.name);
    // In the container's cgroup namespace its own cgroups are "/": a process
    // in any other cgroup would see a path relative to it ("/../x").
    for line in r["cgroup"].split(';') {
        assert!(line.ends_with(":/"), "cgroup line {line:?} is the container's own cgroup");
    }
    assert!(r["cgroup"].contains("0::/"), "cgroup v2 joined: {}", r["cgroup"]);
    assert!(r["cgroup"].split(';').count() > 1, "cgroup v1 hierarchies joined: {}", r["cgroup"]);
    for k in ["uid", "euid", "suid", "fsuid"] {
        assert_eq!(r[k], expect_uid.to_string(), "{k}");
    }
    for k in ["gid", "egid", "sgid", "fsgid"] {
        assert_eq!(r[k], expect_gid.to_string(), "{k}");
    }
    for k in ["cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb"] {
        assert_eq!(u64::from_str_radix(&r[k], 16).unwrap(), 0, "{k} = {}", r[k]);
    }
    assert_eq!(r["no_new_privs"], "1");
    assert_eq!(r["fds"], "0,1,2", "only the standard descriptors");
    assert_eq!(u64::from_str_radix(&r["sig_ign"], 16).unwrap(), 0, "Exim's ignored signals were reset");
    assert_eq!(u64::from_str_radix(&r["sig_blk"], 16).unwrap(), 0, "signal mask is empty");
    assert_eq!(r["cwd"], s.user.home.display().to_string());
    assert_eq!(r["home_marker"], s.container.name, "the home is the container's, not the host's");
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
    if !common::require_root("delivers_into_the_users_container_with_nothing_else") {
        return;
    }
    let s = setup("basic", "", |_| {});
    let message: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let d = run(&s, &raw_pipe(&format!("|{PROBE} report --stdin-hash")), &message);
    let r = report(&d);
    assert_contained(&s, &r, s.user.uid, s.user.gid);
    assert_eq!(r["stdin_len"], message.len().to_string());
    assert_eq!(r["stdin_fnv64"], common::fnv64(&message), "message arrives byte-identical");
    assert_eq!(r["groups"], s.user.gid.to_string(), "the user's own groups, not the cagepipe group");
}

#[test]
fn fallbacks_without_pidfd_and_close_range_give_the_same_result() {
    if !common::require_root("fallbacks_without_pidfd_and_close_range_give_the_same_result") {
        return;
    }
    // What EL8's 4.18 kernel does anyway: no pidfd, no close_range, no clone3.
    let all_off = "[kernel]\ndisable = [\"pidfd\", \"close_range\", \"clone_into_cgroup\"]\n";
    let s = setup("fallback", all_off, |_| {});
    let r = report(&run(&s, &raw_pipe(&format!("|{PROBE} report")), b"x"));
    assert_contained(&s, &r, s.user.uid, s.user.gid);
    let s = setup("fallbackuserns", all_off, |o| o.userns = true);
    let r = report(&run(&s, &raw_pipe(&format!("|{PROBE} report")), b"x"));
    assert_contained(&s, &r, s.user.uid, s.user.gid);
    // Each one alone, too.
    for one in ["pidfd", "close_range", "clone_into_cgroup"] {
        let s = setup("fallbackone", &format!("[kernel]\ndisable = [\"{one}\"]\n"), |o| o.userns = true);
        let r = report(&run(&s, &raw_pipe(&format!("|{PROBE} report")), b"x"));
        assert_contained(&s, &r, s.user.uid, s.user.gid);
    }
}

#[test]
fn chroot_style_container_is_entered_through_its_process_root() {
    if !common::require_root("chroot_style_container_is_entered_through_its_process_root") {
        return;
    }
    for disable in ["", "[kernel]\ndisable = [\"pidfd\"]\n"] {
        let s = setup("chroot", disable, |o| o.chroot = true);
        let r = report(&run(&s, &raw_pipe(&format!("|{PROBE} report")), b""));
        assert_contained(&s, &r, s.user.uid, s.user.gid);
        let root = std::fs::metadata(format!("/proc/{}/root", s.container.pid)).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(r["root_dev_ino"], format!("{}:{}", root.dev(), root.ino()), "root is the container's");
    }
}

#[test]
fn user_namespace_ids_are_translated_and_unmapped_ones_refused() {
    if !common::require_root("user_namespace_ids_are_translated_and_unmapped_ones_refused") {
        return;
    }
    // Identity map for ordinary accounts.
    let s = setup("userns", "", |o| o.userns = true);
    let r = report(&run(&s, &raw_pipe(&format!("|{PROBE} report")), b""));
    assert_ne!(s.container.ns_inode("user"), common::host_ns_inode("user"));
    assert_contained(&s, &r, s.user.uid, s.user.gid);

    // The user's host uid/gid appear as 5000/6000 inside.
    let s = setup("usernsmap", "", |o| {
        o.userns = true;
        o.uid_map = Some(format!("0 100000 1000,5000 {} 1", common::test_user(&o.users[0]).uid));
        o.gid_map = Some(format!("0 100000 1000,6000 {} 1", common::test_user(&o.users[0]).gid));
    });
    let r = report(&run(&s, &raw_pipe(&format!("|{PROBE} report")), b""));
    assert_contained(&s, &r, 5000, 6000);

    // Not mapped at all: defer, never run with some other id.
    let s = setup("usernsunmapped", "", |o| {
        o.users.clear();
        o.userns = true;
        o.uid_map = Some("0 100000 65536".into());
        o.gid_map = Some("0 100000 65536".into());
    });
    let d = run(&s, &raw_pipe(&format!("|{PROBE} report")), b"");
    assert_eq!(d.code(), Some(75), "{d:?}");
    assert!(d.stderr.contains("not mapped"), "{}", d.stderr);
    assert!(d.stdout.is_empty());
}

#[test]
fn exit_status_and_signals_reach_exim_unchanged() {
    if !common::require_root("exit_status_and_signals_reach_exim_unchanged") {
        return;
    }
    let s = setup("status", "", |_| {});
    for code in [0, 1, 42, 75, 77, 126, 127] {
        let d = run(&s, &raw_pipe(&format!("|{PROBE} report --exit {code}")), b"");
        assert_eq!(d.code(), Some(code), "{d:?}");
    }
    for sig in [libc::SIGKILL, libc::SIGTERM, libc::SIGSEGV, libc::SIGHUP] {
        let d = run(&s, &raw_pipe(&format!("|{PROBE} report --signal {sig}")), b"");
        assert_eq!(d.signal(), Some(sig), "cagepipe dies from the command's signal: {d:?}");
    }
    // The command may stop reading early; only its status counts.
    let big = vec![b'x'; 4 * 1024 * 1024];
    let d = run(&s, &raw_pipe(&format!("|{PROBE} report --read-bytes 10")), &big);
    assert_eq!(d.code(), Some(0), "{d:?}");
}

#[test]
fn command_forms_and_path_search_happen_inside() {
    if !common::require_root("command_forms_and_path_search_happen_inside") {
        return;
    }
    let s = setup("forms", "", |_| {});
    // Quoted words arrive in order, without quotes; ${run} and $HOME are words.
    let d = run(&s, &raw_pipe(&format!("|{PROBE} report 'a b' \"c d\" e ${{run{{/usr/bin/id}}}} $HOME")), b"");
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
    assert!(String::from_utf8_lossy(&d.stdout).starts_with(&format!("{}\n", s.container.name)));
    // A relative name is searched on PATH inside the container: "hostname"
    // prints the container's name, which no host program would.
    let d = run(&s, &raw_pipe("|hostname"), b"");
    assert_eq!(d.code(), Some(0), "{d:?}");
    assert_eq!(String::from_utf8_lossy(&d.stdout).trim(), s.container.name);
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
    if !common::require_root("every_failure_has_its_exit_code") {
        return;
    }
    let s = setup("failures", "", |_| {});
    let pidfile = s.container_pidfile();
    let probe = raw_pipe(&format!("|{PROBE} report"));
    let expect = |d: Delivery, code: i32, words: &str| {
        assert_eq!(d.code(), Some(code), "{words}: {d:?}");
        assert!(d.stderr.contains(words), "stderr should say {words:?}: {}", d.stderr);
        assert!(d.stdout.is_empty(), "nothing ran: {d:?}");
    };

    // Command line.
    expect(run(&s, &[OsString::from("--bogus")], b""), 64, "usage");
    expect(run(&s, &raw_pipe("|"), b""), 64, "usage");
    expect(run(&s, &[], b""), 64, "nothing to deliver");
    // Caller not allowed.
    let mut args = vec![OsString::from("--user"), OsString::from("root")];
    args.extend(probe.clone());
    expect(run(&s, &args, b""), 77, "--user is for root only");
    let mut args = vec![OsString::from("--config"), OsString::from("/tmp/x.toml")];
    args.extend(probe.clone());
    expect(run(&s, &args, b""), 77, "--config is for root only");
    let low = ConfigDir::new(&format!(
        "[users]\nmin_uid = {}\n[container]\npidfile = \"{}\"\n",
        s.user.uid + 1,
        pidfile.display()
    ));
    expect(deliver(&low, s.caller, &probe, &[], b""), 77, "below min_uid");
    let root = Caller { uid: 0, gid: 0 };
    expect(deliver(&s.config, root, &probe, &[], b""), 77, "root delivers only with --user");

    // Configuration.
    let broken = ConfigDir::new("[container\n");
    expect(deliver(&broken, s.caller, &probe, &[], b""), 75, "line 1");
    let unknown = ConfigDir::new(&format!("[container]\npidfile = \"{}\"\ncolour = 1\n", pidfile.display()));
    expect(deliver(&unknown, s.caller, &probe, &[], b""), 75, "colour");
    let writable = ConfigDir::new(&format!("[container]\npidfile = \"{}\"\n", pidfile.display()));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(writable.file(), std::fs::Permissions::from_mode(0o666)).unwrap();
    expect(deliver(&writable, s.caller, &probe, &[], b""), 75, "writable by group or others");
    let missing = ConfigDir::new("");
    std::fs::remove_file(missing.file()).unwrap();
    expect(deliver(&missing, s.caller, &probe, &[], b""), 75, "does not exist");

    // Pidfile.
    let original = std::fs::read_to_string(&pidfile).unwrap();
    std::fs::remove_file(&pidfile).unwrap();
    expect(run(&s, &probe, b""), 75, "no pidfile");
    let refuse = ConfigDir::new(&format!("[container]\npidfile = \"{}\"\nmissing = \"refuse\"\n", pidfile.display()));
    expect(deliver(&refuse, s.caller, &probe, &[], b""), 77, "no pidfile");
    write_pidfile(&pidfile, "");
    expect(run(&s, &probe, b""), 75, "is empty");
    write_pidfile(&pidfile, "12ab\n");
    expect(run(&s, &probe, b""), 75, "pidfile");
    write_pidfile(&pidfile, &original);
    std::fs::set_permissions(&pidfile, std::fs::Permissions::from_mode(0o666)).unwrap();
    expect(run(&s, &probe, b""), 75, "cannot be trusted");
    nix::unistd::chown(&pidfile, Some(nix::unistd::Uid::from_raw(s.user.uid)), None).unwrap();
    std::fs::set_permissions(&pidfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    expect(run(&s, &probe, b""), 75, "owned by uid");
    write_pidfile(&pidfile, &original);
    nix::unistd::chown(&pidfile, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    // A process in cagepipe's own mount namespace is not a container: root
    // runs cagepipe here, in this test's namespaces, for this test's pid.
    write_pidfile(&pidfile, &format!("{}\n", std::process::id()));
    let mut args: Vec<OsString> =
        vec!["--config".into(), s.config.file().into(), "--user".into(), s.user.name.clone().into()];
    args.extend(probe.clone());
    expect(rig::run_as_root(&args, b""), 75, "not a container");
    // A pid nobody has.
    write_pidfile(&pidfile, "4194304\n");
    expect(run(&s, &probe, b""), 75, "does not exist");
    // Back to the real one: it works again.
    write_pidfile(&pidfile, &original);
    assert_eq!(run(&s, &probe, b"").code(), Some(0));
}

#[test]
fn a_pidfile_older_than_its_process_is_stale_and_never_entered() {
    if !common::require_root("a_pidfile_older_than_its_process_is_stale_and_never_entered") {
        return;
    }
    // The container's pid as if it had been recycled: the pidfile was
    // written before this process started.
    let s = setup("stale", "", |_| {});
    let pidfile = s.container_pidfile();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&pidfile).unwrap().set_modified(old).unwrap();
    let d = run(&s, &raw_pipe(&format!("|{PROBE} report")), b"");
    assert_eq!(d.code(), Some(75), "{d:?}");
    assert!(d.stderr.contains("stale"), "{}", d.stderr);
    assert!(d.stdout.is_empty());
    // Rewritten (as a container manager would on start): accepted.
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    write_pidfile(&pidfile, &pid);
    assert_eq!(run(&s, &raw_pipe(&format!("|{PROBE} report")), b"").code(), Some(0));
}

#[test]
fn a_dead_container_defers_and_a_restarted_one_delivers() {
    if !common::require_root("a_dead_container_defers_and_a_restarted_one_delivers") {
        return;
    }
    let s = setup("dead", "", |_| {});
    let pidfile = s.container_pidfile();
    let pid = s.container.pid;
    let Setup { container, config, user, caller } = s;
    drop(container); // stops it; the pidfile stays behind, naming a dead pid
    write_pidfile(&pidfile, &format!("{pid}\n"));
    let env: Vec<(&str, &str)> = vec![];
    let d = deliver(&config, caller, &raw_pipe(&format!("|{PROBE} report")), &env, b"");
    assert_eq!(d.code(), Some(75), "{d:?}");
    let opts = ContainerOpts { users: vec![user.name.clone()], pidfile: Some(pidfile), ..Default::default() };
    let _again = Container::start(&common::unique_name("dead2"), &opts);
    let d = deliver(&config, caller, &raw_pipe(&format!("|{PROBE} report")), &env, b"");
    assert_eq!(d.code(), Some(0), "{d:?}");
}

impl Setup {
    fn container_pidfile(&self) -> std::path::PathBuf {
        let text = std::fs::read_to_string(self.config.file()).unwrap();
        let template = text.lines().find_map(|l| l.strip_prefix("pidfile = \"")).unwrap().trim_end_matches('"');
        std::path::PathBuf::from(template.replace("{user}", &self.user.name))
    }
}

#[test]
fn one_syslog_line_per_delivery_with_the_outcome() {
    if !common::require_root("one_syslog_line_per_delivery_with_the_outcome") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let sock_path = rig::scratch().join(format!("log-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock_path);
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let s = setup("syslog", &format!("[log]\nsocket = \"{}\"\n", sock_path.display()), |_| {});
    let recv = || {
        let mut buf = vec![0u8; 4096];
        let n = sock.recv(&mut buf).expect("a syslog line");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    };

    let d = run(&s, &raw_pipe(&format!("|{PROBE} report --exit 3")), b"");
    assert_eq!(d.code(), Some(3));
    let line = recv();
    let prefix = "<22>cagepipe[";
    assert!(line.starts_with(prefix), "facility mail, severity info: {line}");
    let expected = format!(
        "]: user={} uid={} container=\"pidfile {}\" pid={} outcome=exited exit=3 duration_ms=",
        s.user.name,
        s.user.uid,
        s.container_pidfile().display(),
        s.container.pid
    );
    assert!(line.contains(&expected), "{line}\nshould contain\n{expected}");

    let d = run(&s, &raw_pipe(&format!("|{PROBE} report --signal 15")), b"");
    assert_eq!(d.signal(), Some(15));
    assert!(recv().contains("outcome=signaled signal=15 "));

    // A failure: warning severity, the reason quoted, control bytes escaped.
    write_pidfile(&s.container_pidfile(), "\u{1b}[2J\n");
    let d = run(&s, &raw_pipe("|/bin/true"), b"");
    assert_eq!(d.code(), Some(75));
    let line = recv();
    assert!(line.starts_with("<20>cagepipe["), "{line}");
    assert!(line.contains("outcome=deferred exit=75 reason=\"pidfile "), "{line}");
    assert!(line.contains("\\x1b[2J"), "control bytes escaped: {line:?}");
    assert!(!line.contains('\u{1b}') && !line.contains('\n'), "{line:?}");
    // No syslog line for a missing container is lost either.
    std::fs::remove_file(s.container_pidfile()).unwrap();
    assert_eq!(run(&s, &raw_pipe("|/bin/true"), b"").code(), Some(75));
    assert!(recv().contains("reason=\"no running container for user"));
    drop(sock);
    let _ = std::fs::remove_file(&sock_path);
}

#[test]
fn a_zombie_target_is_not_running() {
    if !common::require_root("a_zombie_target_is_not_running") {
        return;
    }
    let s = setup("zombie", "", |_| {});
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
    write_pidfile(&s.container_pidfile(), &format!("{zpid}\n"));
    let d = run(&s, &raw_pipe(&format!("|{PROBE} report")), b"");
    child.wait().unwrap();
    assert_eq!(d.code(), Some(75), "{d:?}");
    assert!(d.stderr.contains("zombie"), "{}", d.stderr);
}

#[test]
fn without_a_home_inside_the_command_starts_in_the_containers_root() {
    if !common::require_root("without_a_home_inside_the_command_starts_in_the_containers_root") {
        return;
    }
    // The container does not know the user: no /home/USER inside.
    let s = setup("nohome", "", |o| o.users.clear());
    let d = run(&s, &raw_pipe(&format!("|{PROBE} report")), b"");
    let r = report(&d);
    assert_eq!(r["cwd"], "/");
    let root = std::fs::metadata(format!("/proc/{}/root", s.container.pid)).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(r["cwd_dev_ino"], format!("{}:{}", root.dev(), root.ino()), "cwd is the container's root");
}

/// Host pids of the probes running `report` in the container's cgroup v2
/// (the container's init and its launcher are there too).
fn others_in_container(c: &Container) -> Vec<i32> {
    let v2 = c.cgroup_dirs().into_iter().find(|d| d.join("cgroup.type").exists()).expect("a cgroup v2 directory");
    let mut pids = Vec::new();
    for entry in walk(&v2) {
        if let Ok(text) = std::fs::read_to_string(entry.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.parse::<i32>().ok()).filter(|p| {
                let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                *p != c.pid && cmdline.windows(6).any(|w| w == b"report")
            }));
        }
    }
    pids
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.extend(walk(&e.path()));
        }
    }
    out
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
    if !common::require_root("killing_the_process_group_leaves_nothing_in_the_container") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let s = setup("killpg", "", |_| {});
    // Exim runs the transport in a process group of its own and, on
    // timeout, SIGKILLs the whole group.
    let mut child =
        rig::command(&s.config, s.caller, &raw_pipe(&format!("|{PROBE} report --spawn-bg --sleep 60")), &[])
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    wait_until("the command and its background child run", || others_in_container(&s.container).len() >= 2);
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    wait_until("nothing of the delivery is left", || others_in_container(&s.container).is_empty());
}

#[test]
fn the_command_does_not_outlive_a_killed_cagepipe() {
    if !common::require_root("the_command_does_not_outlive_a_killed_cagepipe") {
        return;
    }
    let s = setup("killwrapper", "", |_| {});
    let mut child = rig::command(&s.config, s.caller, &raw_pipe(&format!("|{PROBE} report --sleep 60")), &[])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the command runs", || others_in_container(&s.container).len() == 1);
    // Only cagepipe itself (the exec chain keeps the spawned pid) is killed.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    wait_until("the command died with its parent", || others_in_container(&s.container).is_empty());
}

#[test]
fn check_and_dry_run_explain_without_running_anything() {
    if !common::require_root("check_and_dry_run_explain_without_running_anything") {
        return;
    }
    let s = setup("check", "", |_| {});
    let d = run(&s, &[OsString::from("check")], b"");
    let out = String::from_utf8_lossy(&d.stdout).into_owned();
    assert_eq!(d.code(), Some(0), "{d:?}");
    assert!(out.contains(&format!("pid {} running since", s.container.pid)), "{out}");
    assert!(out.contains("capabilities missing  none"), "{out}");
    // Where the container reference came from: the file and the line.
    let source = "(/etc/cagepipe/cagepipe.toml line 2)";
    assert!(out.lines().any(|l| l.starts_with("container source") && l.ends_with(source)), "{out}");
    assert!(
        out.contains("kernel features       used where the kernel has them: pidfd, close_range, clone_into_cgroup"),
        "{out}"
    );
    assert!(out.ends_with("DELIVERABLE\n"), "{out}");

    let mut args = vec![OsString::from("--dry-run")];
    args.extend(raw_pipe(&format!("|{PROBE} report 'a b'")));
    let d = run(&s, &args, b"");
    let out = String::from_utf8_lossy(&d.stdout).into_owned();
    assert_eq!(d.code(), Some(0), "{d:?}");
    assert!(out.contains(&format!("command               {PROBE} report \"a b\"")), "{out}");
    assert!(out.contains("dry run               nothing was executed"), "{out}");
    assert!(!out.contains("hostname="), "the probe did not run: {out}");

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
    let j: serde_json::Value = serde_json::from_slice(&d.stdout).unwrap_or_else(|e| panic!("{e}: {d:?}"));
    assert_eq!(j["verdict"], "DELIVERABLE");
    assert_eq!(j["exit"], 0);
    assert!(j["reason"].is_null());
    assert_eq!(j["user"]["name"], s.user.name.as_str());
    assert_eq!(j["user"]["uid"], s.user.uid, "numbers are numbers: {j}");
    assert_eq!(j["target"]["pid"], s.container.pid, "{j}");
    assert!(j["cgroups"]["join"].as_array().is_some_and(|a| a.len() > 1), "v1 and v2 cgroups: {j}");
    assert!(j["cgroups"]["join"][0]["dir"].as_str().is_some_and(|d| d.starts_with('/')), "{j}");
    assert!(j["namespaces"].as_array().is_some_and(|n| n.iter().any(|n| n["kind"] == "mnt")), "{j}");
    assert_eq!(j["credentials"]["where"], "container", "{j}");
    assert_eq!(j["capabilities"]["missing"], serde_json::json!([]));

    std::fs::remove_file(s.container_pidfile()).unwrap();
    let d = run(&s, &[OsString::from("check"), OsString::from("--format=json")], b"");
    assert_eq!(d.code(), Some(75), "{d:?}");
    let j: serde_json::Value = serde_json::from_slice(&d.stdout).expect("JSON");
    assert_eq!(j["verdict"], "NOT DELIVERABLE");
    assert_eq!(j["exit"], 75);
    assert!(j["reason"].as_str().unwrap().starts_with("no running container"), "{j}");
    let d = run(&s, &[OsString::from("check")], b"");
    let out = String::from_utf8_lossy(&d.stdout).into_owned();
    assert_eq!(d.code(), Some(75), "{d:?}");
    assert!(out.contains("NOT DELIVERABLE (exit 75): no running container"), "{out}");
}

#[test]
fn root_reproduces_a_delivery_by_hand_with_exims_variables() {
    if !common::require_root("root_reproduces_a_delivery_by_hand_with_exims_variables") {
        return;
    }
    let s = setup("byhand", "", |_| {});
    let conf = s.config.file().into_os_string();
    let mut args: Vec<OsString> = vec![
        "--config".into(),
        conf.clone(),
        "--user".into(),
        s.user.name.clone().into(),
        "--env".into(),
        "LOCAL_PART=support".into(),
        "--env".into(),
        "SENDER=someone@example.org".into(),
    ];
    args.extend(raw_pipe(&format!("|{PROBE} report --stdin-hash")));
    let d = rig::run_as_root(&args, b"a message\n");
    let r = report(&d);
    assert_eq!(r["uid"], s.user.uid.to_string(), "run as the user, not as root");
    assert_eq!(r["ns_mnt"], s.container.ns_inode("mnt").to_string(), "inside the user's container");
    assert_eq!(r["env_LOCAL_PART"], "support");
    assert_eq!(r["env_SENDER"], "someone@example.org");
    assert_eq!(r["env_USER"], s.user.name, "identity from the account, as for Exim");
    assert_eq!(r["stdin_len"], "10");

    // A name Exim's deliveries would not pass on is refused, not dropped.
    let mut args: Vec<OsString> = vec![
        "--config".into(),
        conf,
        "--user".into(),
        s.user.name.clone().into(),
        "--env".into(),
        "LD_PRELOAD=/x".into(),
    ];
    args.extend(raw_pipe(&format!("|{PROBE} report")));
    let d = rig::run_as_root(&args, b"");
    assert_eq!(d.code(), Some(64), "{d:?}");
    assert!(d.stderr.contains("--env LD_PRELOAD: cagepipe passes on only LOCAL_PART"), "{}", d.stderr);
    assert!(d.stdout.is_empty(), "nothing ran");
}
