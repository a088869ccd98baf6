//! Faults around a delivery: whatever breaks, Exim must see 75 (defer) or
//! the command's own status, and no process of the delivery may stay in the
//! container. The real binary, with file capabilities, run as the user the
//! way Exim runs it, against real containers.
//!
//! Already covered in tests/deliver.rs and not repeated here: stale and
//! zombie pidfiles (`a_pidfile_older_than_its_process_is_stale_and_never_entered`,
//! `a_zombie_target_is_not_running`), a container that died and was
//! restarted (`a_dead_container_defers_and_a_restarted_one_delivers`), and
//! Exim's timeout killing the process group
//! (`killing_the_process_group_leaves_nothing_in_the_container`).

mod common;
mod rig;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Container, ContainerOpts};
use rig::{raw_pipe, write_pidfile, Caller, ConfigDir, Delivery};

const PROBE: &str = common::PROBE_IN_CONTAINER;

struct Setup {
    container: Container,
    config: ConfigDir,
    pidfile: PathBuf,
    user: common::User,
    caller: Caller,
}

/// A container for the test user `cptest-f<tag>`, its pidfile where a
/// fresh configuration (plus `extra_config`) looks for it.
fn setup(tag: &str, extra_config: &str) -> Setup {
    let user = common::test_user(&format!("cptest-f{}", &tag[..tag.len().min(12)]));
    let (config, piddir) = ConfigDir::with_pidfile_dir(extra_config);
    let pidfile = piddir.join(format!("{}.pid", user.name));
    let opts = ContainerOpts { users: vec![user.name.clone()], pidfile: Some(pidfile.clone()), ..Default::default() };
    let container = Container::start(&common::unique_name(&format!("fault-{tag}")), &opts);
    let caller = Caller { uid: user.uid, gid: rig::cagepipe_gid() };
    Setup { container, config, pidfile, user, caller }
}

impl Setup {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HOME", self.user.home.display().to_string()),
            ("USER", self.user.name.clone()),
            ("LOGNAME", self.user.name.clone()),
            ("LOCAL_PART", self.user.name.clone()),
            ("DOMAIN", "example.test".into()),
            ("SENDER", "sender@example.org".into()),
            ("PATH", "/bin:/usr/bin".into()),
        ]
    }

    /// Deliver `stdin` to `|PROBE report ARGS` with configuration `config`.
    fn deliver_with(&self, config: &ConfigDir, args: &str, stdin: &[u8]) -> Delivery {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        rig::deliver(config, self.caller, &raw_pipe(&format!("|{PROBE} report {args}")), &env, stdin)
    }

    fn deliver(&self, args: &str) -> Delivery {
        self.deliver_with(&self.config, args, b"")
    }

    /// The pidfile line the container manager wrote.
    fn pidfile_text(&self) -> String {
        format!("{}\n", self.container.pid)
    }
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
        panic!("after {after}, processes are left in container {}:\n{}", c.name, common::describe_pids(&left));
    }
}

/// Exim defers (75), nothing ran (no report on stdout), and stderr says why.
fn assert_deferred(d: &Delivery, fault: &str, words: &str) {
    assert_eq!(d.code(), Some(75), "{fault}: Exim must see 75: {d:?}");
    assert!(d.stdout.is_empty(), "{fault}: nothing may run: {d:?}");
    assert!(d.stderr.contains(words), "{fault}: stderr should say {words:?}: {}", d.stderr);
}

/// A good delivery into `s`: the report comes from inside the container.
fn assert_delivers(s: &Setup, config: &ConfigDir) {
    let d = s.deliver_with(config, "", b"");
    assert_eq!(d.code(), Some(0), "control delivery: {d:?}");
    let r = common::parse_report(&d.stdout);
    assert_eq!(r["hostname"], s.container.name, "control delivery ran inside");
}

#[test]
fn configuration_faults_defer_and_nothing_enters_the_container() {
    if !common::require_root("configuration_faults_defer_and_nothing_enters_the_container") {
        return;
    }
    let s = setup("config", "");
    let good = format!("[container]\npidfile = \"{}/{{user}}.pid\"\n", s.pidfile.parent().unwrap().display());
    let mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // Each fault: how to break a good configuration, and what stderr says.
    type Break = Box<dyn Fn(&ConfigDir)>;
    let faults: Vec<(&str, Break, &str)> = vec![
        ("missing", Box::new(|c| std::fs::remove_file(c.file()).unwrap()), "does not exist"),
        ("unreadable file (0600)", Box::new(move |c| mode(&c.file(), 0o600)), "Permission denied"),
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
        let d = s.deliver_with(&config, "", b"");
        assert_deferred(&d, fault, words);
        assert!(d.stderr.contains("configuration /etc/cagepipe/cagepipe.toml"), "{fault}: names the file: {d:?}");
        assert_clean(&s.container, fault);
    }
    // The container itself was fine all along.
    assert_delivers(&s, &ConfigDir::new(&good));
}

#[test]
fn pidfile_faults_defer_and_nothing_enters_the_container() {
    if !common::require_root("pidfile_faults_defer_and_nothing_enters_the_container") {
        return;
    }
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
        let d = s.deliver("");
        if let Some(mut child) = host_process {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        for w in words.iter() {
            assert_deferred(&d, fault, w);
        }
        assert_clean(&s.container, fault);
        write_pidfile(&s.pidfile, &s.pidfile_text());
    }
    assert_delivers(&s, &s.config);
}
