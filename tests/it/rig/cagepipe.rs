//! Running the real cagepipe the way Exim does: the built binary copied to a
//! root-owned directory, installed root:cagepipe 0750 with file capabilities
//! set by setcap, started as an unprivileged user whose gid is the cagepipe
//! group, with SIGHUP/SIGINT/SIGTERM/SIGUSR1 ignored, in a private mount
//! namespace whose /etc/cagepipe is a bind mount of a test directory (so each
//! test has its own configuration and the host's is never touched).

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;

use super::accounts::User;
use super::scratch::{fresh_dir, scratch};

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The group Exim's transport runs cagepipe with.
pub fn cagepipe_gid() -> u32 {
    if Command::new("getent").args(["group", "cagepipe"]).output().map(|o| !o.status.success()).unwrap_or(true) {
        let _ = Command::new("groupadd").args(["--system", "cagepipe"]).status();
    }
    let out = Command::new("getent").args(["group", "cagepipe"]).output().unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    line.split(':').nth(2).and_then(|g| g.trim().parse().ok()).expect("cagepipe group")
}

/// The binary under test, installed with the capabilities packaging/file-caps names.
pub fn installed_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let gid = cagepipe_gid();
        let bin = scratch().join("cagepipe");
        std::fs::copy(env!("CARGO_BIN_EXE_cagepipe"), &bin).unwrap();
        nix::unistd::chown(&bin, Some(nix::unistd::Uid::from_raw(0)), Some(nix::unistd::Gid::from_raw(gid))).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o750)).unwrap();
        let caps = file_caps().trim();
        run_ok(Command::new("setcap").arg(caps).arg(&bin));
        std::fs::create_dir_all("/etc/cagepipe").unwrap();
        bin
    })
}

/// A configuration directory to bind over /etc/cagepipe.
pub struct ConfigDir {
    pub dir: PathBuf,
}

impl ConfigDir {
    pub fn new(toml: &str) -> ConfigDir {
        let c = ConfigDir { dir: fresh_dir("conf") };
        c.write(toml);
        c
    }

    pub fn file(&self) -> PathBuf {
        self.dir.join("cagepipe.toml")
    }

    pub fn write(&self, toml: &str) {
        std::fs::write(self.file(), toml).unwrap();
        std::fs::set_permissions(self.file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// A configuration whose pidfiles live in a fresh root-owned directory.
    pub fn with_pidfile_dir(extra: &str) -> (ConfigDir, PathBuf) {
        let piddir = fresh_dir("pids");
        (ConfigDir::with_pidfile_template(&piddir, extra), piddir)
    }

    /// A configuration whose pidfiles are `DIR/{user}.pid`, then `extra`.
    pub fn with_pidfile_template(piddir: &Path, extra: &str) -> ConfigDir {
        ConfigDir::new(&format!("[container]\npidfile = \"{}/{{user}}.pid\"\n{extra}", piddir.display()))
    }
}

/// What a delivery returned.
#[derive(Debug)]
pub struct Delivery {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Delivery {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }
}

/// Who runs cagepipe.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// The command that runs the installed cagepipe as `caller` with `args`,
/// Exim's environment `env`, and `config` as /etc/cagepipe.
pub fn command(config: &ConfigDir, caller: Caller, args: &[OsString], env: &[(&str, &str)]) -> Command {
    command_via(config, caller, installed_binary(), &[], args, env)
}

/// [`command`] with another installed copy `bin`, started through `wrapper`
/// (a program and its arguments, run last, after the environment is set:
/// `setpriv --no-new-privs`, `prlimit ...`), for tests of hostile callers.
pub fn command_via(
    config: &ConfigDir,
    caller: Caller,
    bin: &Path,
    wrapper: &[&str],
    args: &[OsString],
    env: &[(&str, &str)],
) -> Command {
    // sh ignores the signals Exim hands over as ignored (trap ''), which
    // survives the exec of setpriv and of cagepipe.
    let script = r#"cfg=$1 uid=$2 gid=$3; shift 3
mount --bind "$cfg" /etc/cagepipe || exit 99
trap '' HUP INT TERM USR1
if [ "$uid" = 0 ]; then exec "$@"; fi
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@""#;
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh"])
        .arg(&config.dir)
        .arg(caller.uid.to_string())
        .arg(caller.gid.to_string())
        // Exim's environment (and what a hostile caller adds) goes to
        // cagepipe alone: env -i sets it just for the final exec.
        .arg("/usr/bin/env")
        .arg("-i")
        .args(env.iter().map(|(k, v)| format!("{k}={v}")))
        .args(wrapper)
        .arg(bin)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        // Exim starts a .forward pipe in the user's home, an alias pipe in /.
        .current_dir(env.iter().find(|(k, _)| *k == "HOME").map_or("/", |(_, v)| *v));
    cmd
}

/// Run the installed cagepipe as `caller` with `args`, Exim's environment
/// `env`, `stdin` as the message, and `config` as /etc/cagepipe.
pub fn deliver(config: &ConfigDir, caller: Caller, args: &[OsString], env: &[(&str, &str)], stdin: &[u8]) -> Delivery {
    run_with_stdin(command(config, caller, args, env), stdin)
}

/// Run the installed cagepipe as root in this process's own namespaces
/// (root may name --config and --user), with an empty environment.
pub fn run_as_root(args: &[OsString], stdin: &[u8]) -> Delivery {
    let mut cmd = Command::new(installed_binary());
    cmd.args(args).env_clear().current_dir("/");
    run_with_stdin(cmd, stdin)
}

/// Spawn `cmd`, feed it `stdin` and collect what it returned.
pub fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Delivery {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut sin = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // Feed stdin from a thread; the command may stop reading early.
    let feeder = std::thread::spawn(move || {
        let _ = sin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let _ = feeder.join();
    Delivery { status: out.status, stdout: out.stdout, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

/// Run `cmd` (a command line that starts `/usr/bin/time -f PEAK_RSS_KIB=%M`)
/// with empty stdin: its delivery, and the peak RSS in KiB that time
/// reported on stderr.
pub fn run_for_peak_rss(cmd: Command) -> (Delivery, u64) {
    let d = run_with_stdin(cmd, b"");
    let peak = d
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("PEAK_RSS_KIB="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time: {d:?}"));
    (d, peak)
}

/// `--raw-pipe=TEXT` as one argument.
pub fn raw_pipe(text: &str) -> Vec<OsString> {
    vec![OsString::from(format!("--raw-pipe={text}"))]
}

/// Write a root-owned 0644 pidfile.
pub fn write_pidfile(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// The file capabilities the packages install (packaging/file-caps).
pub fn file_caps() -> &'static str {
    include_str!("../../../packaging/file-caps").trim()
}

/// Exim's environment for a `.forward` pipe of `user` (tests add what a
/// hostile caller would).
pub fn exim_env(user: &User) -> Vec<(String, String)> {
    [
        ("LOCAL_PART", "support".to_owned()),
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
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `[("K", "V")]` views of an owned environment.
pub fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A finished process as a [`Delivery`].
pub fn delivered(out: std::process::Output) -> Delivery {
    Delivery { status: out.status, stdout: out.stdout, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}
