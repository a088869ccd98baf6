//! Attacks that must fail. Each test plays an unprivileged attacker (a test
//! user in the cagepipe group, as Exim's pipe process is, or the same user
//! inside the container) against the real binary with file capabilities,
//! and asserts exactly what happens: a refusal with its exit status and
//! message, or no effect at all. SECURITY.md has the table of attacks,
//! tests and the incidents they come from; tests/deliver.rs covers the
//! plain refusals (`every_failure_has_its_exit_code`) and is referenced,
//! not repeated, here.

mod common;
mod rig;

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{Container, ContainerOpts, User};
use rig::{raw_pipe, Caller, ConfigDir, Delivery};

const PROBE: &str = common::PROBE_IN_CONTAINER;

struct Setup {
    _container: Container,
    config: ConfigDir,
    _pidfile: PathBuf,
    user: User,
    caller: Caller,
}

/// A container for test user `cptest-NAME`, its root-owned pidfile where a
/// fresh configuration (with `extra` appended) looks for it.
fn setup(name: &str, extra: &str, tweak: impl FnOnce(&mut ContainerOpts)) -> Setup {
    let user = common::test_user(&format!("cptest-{name}"));
    let (config, piddir) = ConfigDir::with_pidfile_dir(extra);
    let pidfile = piddir.join(format!("{}.pid", user.name));
    let mut opts =
        ContainerOpts { users: vec![user.name.clone()], pidfile: Some(pidfile.clone()), ..Default::default() };
    tweak(&mut opts);
    let container = Container::start(&common::unique_name(name), &opts);
    let caller = Caller { uid: user.uid, gid: rig::cagepipe_gid() };
    Setup { _container: container, config, _pidfile: pidfile, user, caller }
}

/// What Exim hands a pipe delivery for `user`.
fn exim_env(user: &User) -> Vec<(&'static str, String)> {
    vec![
        ("LOCAL_PART", "support".into()),
        ("DOMAIN", "example.test".into()),
        ("USER", "support".into()),
        ("LOGNAME", "support".into()),
        ("HOME", user.home.display().to_string()),
        ("SHELL", "/bin/sh".into()),
        ("PATH", "/bin:/usr/bin".into()),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn stderr_note(text: &str) {
    use std::io::Write;
    // Straight to fd 2: the harness captures eprintln! of passing tests.
    let _ = writeln!(std::io::stderr(), "{text}");
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

    /// Make `cmd` run with the slave as stdin and as its controlling
    /// terminal, in a session of its own, as a shell started on it would.
    fn attach(&self, cmd: &mut Command) {
        cmd.stdin(Stdio::from(self.slave.try_clone().unwrap())).stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: setsid and ioctl are async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

fn collect(cmd: &mut Command) -> Delivery {
    let out = cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    Delivery { status: out.status, stdout: out.stdout, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

#[test]
fn a_command_cannot_type_into_the_callers_terminal() {
    if !common::require_root("a_command_cannot_type_into_the_callers_terminal") {
        return;
    }
    // Linux 6.2+ can forbid TIOCSTI for everyone without CAP_SYS_ADMIN;
    // where it does, the kernel alone stops the injection and what is left
    // to check is that the command does not hold the terminal as its
    // controlling terminal (which TIOCSTI would need).
    let legacy = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "absent (kernel before 6.2: TIOCSTI always allowed on the controlling terminal)".into());
    stderr_note(&format!("a_command_cannot_type_into_the_callers_terminal: dev.tty.legacy_tiocsti = {legacy}"));
    let tiocsti_allowed = legacy != "0";
    let s = setup("atk-tty", "", |_| {});
    let text = "id > /tmp/typed-by-the-command\n";

    // Control: the probe itself, on the host, as the user, with the
    // terminal as its controlling terminal, does get its text in.
    let pty = Pty::open();
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={}", s.user.uid))
        .arg(format!("--regid={}", s.user.gid))
        .args(["--clear-groups", "--"])
        .arg(common::probe_binary())
        .args(["tty", text]);
    pty.attach(&mut cmd);
    let control = common::parse_report(&report_ok(collect(&mut cmd)).stdout);
    assert_eq!(control["ctty"], "yes");
    if tiocsti_allowed {
        assert_eq!(control["tiocsti"], "ok", "the control must be able to inject");
        assert_eq!(pty.queued_input(), text.len() as i32, "the control's text is queued");
    } else {
        assert_eq!(control["tiocsti"], "EIO", "TIOCSTI is disabled system-wide");
    }
    drop(pty);

    // An administrator trying a delivery by hand, and the same through the
    // caller's path: the command must not reach the terminal's input.
    let args = |root: bool| -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        if root {
            a.extend(["--config".into(), s.config.file().into(), "--user".into(), s.user.name.clone().into()]);
        }
        a.extend(raw_pipe(&format!("|{PROBE} tty '{text}'")));
        a
    };
    for by_hand in [true, false] {
        let pty = Pty::open();
        let mut cmd = if by_hand {
            let mut c = Command::new(rig::installed_binary());
            c.args(args(true)).env_clear().current_dir("/");
            c
        } else {
            let env = exim_env(&s.user);
            rig::command(&s.config, s.caller, &args(false), &env_refs(&env))
        };
        pty.attach(&mut cmd);
        let d = collect(&mut cmd);
        let r = common::parse_report(&report_ok(d).stdout);
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
}

fn report_ok(d: Delivery) -> Delivery {
    assert_eq!(d.code(), Some(0), "{d:?}");
    d
}
