//! Test probe for cagepipe: runs inside the testbed containers.
//!
//! ```text
//! probe init
//! probe report [--mark FILE] [--stdin-hash] [--read-bytes N] [--save-stdin FILE]
//!              [--out FILE] [--setsid] [--spawn-bg] [--sleep SECS] [--signal SIGNUM | --exit N]
//!              [--try-write PATH] [--try-exec PATH] [--try-rename FROM TO]
//!              [ARGS...] [-- ARGS...]
//! probe attack SECONDS
//! probe tty [TEXT]
//! ```
//!
//! `init` is the containers' pid 1: it reaps every child and orphan and
//! never exits on its own.
//!
//! `attack` and `tty` are the contained user's side of tests/it/attacks.rs:
//! `attack` spends SECONDS trying to get hold of every cagepipe process it
//! can see (ptrace, /proc/PID/{mem,environ,exe,root,cwd,fd/N}, pidfd_getfd)
//! and reports what worked; `tty` tries to push TEXT into the terminal on
//! fd 0 (TIOCSTI). Both print `key=value` lines like `report`.
//!
//! `report` prints what a delivered command sees, one `key=value` per line on
//! stdout, then acts as asked (see `usage()` below for the keys). Values are
//! escaped so each key takes exactly one line: `\\` for a backslash, `\n`,
//! `\r`, `\t`, and `\xHH` (two lowercase hex digits) for every other byte
//! outside printable ASCII 0x20..=0x7e. Keys are escaped the same way, and an
//! `=` inside a key (possible in odd environment variable names) is `\x3d`,
//! so a line splits at its first `=`.
//!
//! The probe has its own C `main` (`#![no_main]`) because Rust's normal
//! start-up changes exactly what it must observe: it sets SIGPIPE to
//! ignored and reopens closed descriptors 0-2 on /dev/null. Without that
//! start-up `std` works as usual (argv comes from glibc's init hooks).
//! `cargo test --all-targets` also builds the probe as a test harness,
//! which brings its own `main`; that build only runs the unit tests below.

#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]
#![deny(unsafe_op_in_unsafe_fn)]

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{self, SigHandler, SigSet, Signal};
use nix::sys::stat::{self, Mode};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{self, ForkResult};

/// Exit status for a bad command line.
const EXIT_USAGE: i32 = 2;
/// Exit status when the report cannot be produced or written.
const EXIT_FAILURE: i32 = 70;
/// How long the `--spawn-bg` child lingers.
const BACKGROUND_SLEEP: Duration = Duration::from_secs(600);

const FNV64_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The namespaces reported as `ns_<kind>`, as named in /proc/self/ns.
const NAMESPACE_KINDS: [&str; 10] =
    ["user", "mnt", "pid", "pid_for_children", "net", "ipc", "uts", "cgroup", "time", "time_for_children"];

/// /proc/self/status fields reported under the given key.
const STATUS_FIELDS: [(&str, &str); 10] = [
    ("CapInh", "cap_inh"),
    ("CapPrm", "cap_prm"),
    ("CapEff", "cap_eff"),
    ("CapBnd", "cap_bnd"),
    ("CapAmb", "cap_amb"),
    ("NoNewPrivs", "no_new_privs"),
    ("SigIgn", "sig_ign"),
    ("SigBlk", "sig_blk"),
    ("Umask", "umask"),
    ("Seccomp", "seccomp"),
];

fn usage() -> &'static str {
    "usage: probe init
       probe report [--mark FILE] [--stdin-hash] [--read-bytes N] [--save-stdin FILE]
                    [--out FILE] [--setsid] [--spawn-bg] [--sleep SECS]
                    [--signal SIGNUM | --exit N]
                    [--try-write PATH] [--try-exec PATH] [--try-rename FROM TO]
                    [ARGS...] [-- ARGS...]
(ARGS are only reported, as argv_<N>; --mark creates FILE before anything
else, so that its absence proves the command never ran; --out writes the
report to FILE instead of stdout, for callers such as Exim that keep the
command's output;
--save-stdin also copies what was read from stdin into FILE; --setsid starts
a new session first, leaving the caller's process group, as a daemonising
handler does; the --try-* options, repeatable, are done in order after the
report's other keys: create or truncate PATH and write to it, run PATH (which
must print nothing), rename FROM to TO)

report keys: uid euid suid fsuid gid egid sgid fsgid groups cap_inh cap_prm
cap_eff cap_bnd cap_amb no_new_privs seccomp sig_ign sig_blk umask
ns_<user|mnt|pid|pid_for_children|net|ipc|uts|cgroup|time|time_for_children>
cgroup fds cwd cwd_dev_ino root_dev_ino hostname pid ppid pgid sid argv_count
argv_<N> env_count env_<NAME> home_marker, then stdin_len stdin_fnv64 (with
--stdin-hash, --read-bytes or --save-stdin), try_write:PATH, try_exec:PATH and
try_rename:FROM (ok, or the errno name such as EACCES) and bg_pid (with
--spawn-bg). A value that cannot be read is '-'.

attack keys: uid scans sightings targets dumpable_sightings breaches breach_detail
late_detail,
and for each of ptrace mem environ exe exe_write root cwd fd pidfd_getfd:
<kind>_denied <kind>_late <kind>_breach <kind>_errnos control_<kind>
tty keys: isatty ctty tiocsti sid pgid"
}

/// The C entry point; see the crate comment for why it is not `fn main`.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // Lossy is fine: only options are parsed here; argv_<N> reports the
    // exact bytes.
    let args: Vec<String> = std::env::args_os().skip(1).map(|arg| arg.to_string_lossy().into_owned()).collect();
    match args.first().map(String::as_str) {
        Some("init") if args.len() == 1 => run_init(),
        Some("report") => match ReportOptions::parse(&args[1..]) {
            Ok(options) => run_report(&options),
            Err(message) => {
                eprintln!("probe: {message}\n{}", usage());
                EXIT_USAGE
            }
        },
        Some("attack") if args.len() == 2 => {
            match args[1].parse::<f64>().ok().and_then(|s| Duration::try_from_secs_f64(s).ok()) {
                Some(duration) => run_attack(duration),
                None => {
                    eprintln!("probe: attack: bad duration {:?}\n{}", args[1], usage());
                    EXIT_USAGE
                }
            }
        }
        Some("tty") if args.len() <= 2 => run_tty(args.get(1).map_or(&b""[..], |t| t.as_bytes())),
        _ => {
            eprintln!("{}", usage());
            EXIT_USAGE
        }
    }
}

/// One step of FNV-1a, 64 bit (reported as 16 lowercase hex digits; the
/// tests' `rig::fnv64` must stay the same function).
fn fnv64_update(mut hash: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV64_PRIME);
    }
    hash
}

// ---------------------------------------------------------------- init ---

/// Reap children forever. Orphans anywhere in the pid namespace are
/// reparented to us; collecting them keeps the process table clean.
fn run_init() -> ! {
    let mut sigchld = SigSet::empty();
    sigchld.add(Signal::SIGCHLD);
    // Blocked, SIGCHLD stays pending between the last waitpid and sigwait,
    // so no exit can slip through unnoticed (and pid 1 would otherwise
    // have it discarded: its default action is to ignore).
    if let Err(err) = sigchld.thread_block() {
        eprintln!("probe init: cannot block SIGCHLD: {err}");
    }
    loop {
        reap_ready_children();
        if sigchld.wait().is_err() {
            // Only EINVAL is documented; never spin.
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn reap_ready_children() {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(err) => {
                eprintln!("probe init: waitpid: {err}");
                return;
            }
        }
    }
}

// -------------------------------------------------------------- report ---

#[derive(Debug, Default)]
struct ReportOptions {
    mark: Option<String>,
    stdin_hash: bool,
    setsid: bool,
    read_bytes: Option<u64>,
    save_stdin: Option<String>,
    out: Option<String>,
    spawn_background: bool,
    sleep: Option<Duration>,
    signal: Option<Signal>,
    exit_status: i32,
    tries: Vec<Try>,
}

/// A file-system operation whose outcome is reported (for sandbox tests).
#[derive(Debug)]
enum Try {
    Write(String),
    Exec(String),
    Rename(String, String),
}

impl ReportOptions {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = ReportOptions::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value")).cloned();
            match arg.as_str() {
                "--mark" => options.mark = Some(value(arg)?),
                "--stdin-hash" => options.stdin_hash = true,
                "--setsid" => options.setsid = true,
                "--spawn-bg" => options.spawn_background = true,
                "--save-stdin" => options.save_stdin = Some(value(arg)?),
                "--out" => options.out = Some(value(arg)?),
                "--try-write" => options.tries.push(Try::Write(value(arg)?)),
                "--try-exec" => options.tries.push(Try::Exec(value(arg)?)),
                "--try-rename" => {
                    let from = value(arg)?;
                    let to = args.next().ok_or("--try-rename needs FROM and TO")?.clone();
                    options.tries.push(Try::Rename(from, to));
                }
                "--read-bytes" => {
                    let text = value(arg)?;
                    let count = text.parse().map_err(|_| format!("--read-bytes: bad count {text:?}"))?;
                    options.read_bytes = Some(count);
                }
                "--sleep" => {
                    let text = value(arg)?;
                    let seconds = text
                        .parse::<f64>()
                        .ok()
                        .and_then(|s| Duration::try_from_secs_f64(s).ok())
                        .ok_or_else(|| format!("--sleep: bad duration {text:?}"))?;
                    options.sleep = Some(seconds);
                }
                "--signal" => {
                    let text = value(arg)?;
                    let signal = text
                        .parse::<i32>()
                        .ok()
                        .and_then(|n| Signal::try_from(n).ok())
                        .ok_or_else(|| format!("--signal: bad signal number {text:?}"))?;
                    options.signal = Some(signal);
                }
                "--exit" => {
                    let text = value(arg)?;
                    options.exit_status =
                        text.parse::<u8>().map_err(|_| format!("--exit: bad status {text:?} (0-255)"))?.into();
                }
                // Arguments after `--`, and any that are not options, only
                // show up in argv_<N> (for tests of argument passing).
                "--" => break,
                other if other.starts_with('-') => return Err(format!("unknown option {other:?}")),
                _ => {}
            }
        }
        Ok(options)
    }
}

fn run_report(options: &ReportOptions) -> i32 {
    // First, before this process opens anything of its own.
    let fds = open_fds();
    // Right after: the proof that the command ran at all.
    if let Some(path) = &options.mark {
        if let Err(err) = std::fs::File::create(path) {
            eprintln!("probe report: --mark {path}: {err}");
            return EXIT_FAILURE;
        }
    }
    // Before the report, so that pgid and sid show the new session.
    if options.setsid {
        if let Err(err) = unistd::setsid() {
            eprintln!("probe report: setsid: {err}");
            return EXIT_FAILURE;
        }
    }
    let mut out: Box<dyn Write> = match &options.out {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Box::new(io::BufWriter::new(file)),
            Err(err) => {
                eprintln!("probe report: {path}: {err}");
                return EXIT_FAILURE;
            }
        },
        None => Box::new(io::stdout().lock()),
    };
    let result = write_report(&mut out, fds, options)
        .and_then(|()| if options.spawn_background { spawn_background(&mut out) } else { Ok(()) })
        .and_then(|()| out.flush());
    drop(out);
    if let Err(err) = result {
        eprintln!("probe report: {err}");
        return EXIT_FAILURE;
    }
    if let Some(duration) = options.sleep {
        std::thread::sleep(duration);
    }
    if let Some(signal) = options.signal {
        die_by_signal(signal);
    }
    options.exit_status
}

/// One `key=value` line, both escaped (see the crate comment).
fn put(out: &mut impl Write, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> io::Result<()> {
    let mut line = Vec::new();
    escape_into(&mut line, key.as_ref(), true);
    line.push(b'=');
    escape_into(&mut line, value.as_ref(), false);
    line.push(b'\n');
    out.write_all(&line)
}

fn escape_into(line: &mut Vec<u8>, bytes: &[u8], is_key: bool) {
    for &byte in bytes {
        match byte {
            b'\\' => line.extend_from_slice(b"\\\\"),
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            b'\t' => line.extend_from_slice(b"\\t"),
            b'=' if is_key => line.extend_from_slice(b"\\x3d"),
            0x20..=0x7e => line.push(byte),
            _ => line.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
        }
    }
}

fn write_report(out: &mut impl Write, fds: String, options: &ReportOptions) -> io::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> Option<Vec<String>> {
        status.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            Some(rest.split_whitespace().map(str::to_owned).collect())
        })
    };

    // Uid:/Gid: list real, effective, saved set and filesystem ids.
    for (name, keys) in [("Uid", ["uid", "euid", "suid", "fsuid"]), ("Gid", ["gid", "egid", "sgid", "fsgid"])] {
        let ids = field(name).unwrap_or_default();
        for (i, key) in keys.iter().enumerate() {
            put(out, key, ids.get(i).map_or("-", String::as_str))?;
        }
    }
    let groups = field("Groups").map_or_else(|| "-".to_owned(), |g| g.join(","));
    put(out, "groups", groups)?;
    for (name, key) in STATUS_FIELDS {
        let value = field(name).map_or_else(|| "-".to_owned(), |v| v.join(" "));
        put(out, key, value)?;
    }

    for kind in NAMESPACE_KINDS {
        put(out, format!("ns_{kind}"), namespace_inode(kind))?;
    }
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .map(|text| text.lines().collect::<Vec<_>>().join(";"))
        .unwrap_or_else(|_| "-".to_owned());
    put(out, "cgroup", cgroup)?;
    put(out, "fds", fds)?;

    let cwd = std::env::current_dir().map(|p| p.into_os_string()).unwrap_or_else(|_| "-".into());
    put(out, "cwd", cwd.as_bytes())?;
    put(out, "cwd_dev_ino", dev_ino("."))?;
    put(out, "root_dev_ino", dev_ino("/"))?;
    let hostname = unistd::gethostname().unwrap_or_else(|_| "-".into());
    put(out, "hostname", hostname.as_bytes())?;

    put(out, "pid", unistd::getpid().to_string())?;
    put(out, "ppid", unistd::getppid().to_string())?;
    put(out, "pgid", unistd::getpgrp().to_string())?;
    let sid = unistd::getsid(None).map_or_else(|_| "-".to_owned(), |s| s.to_string());
    put(out, "sid", sid)?;

    let argv: Vec<_> = std::env::args_os().collect();
    put(out, "argv_count", argv.len().to_string())?;
    for (i, arg) in argv.iter().enumerate() {
        put(out, format!("argv_{i}"), arg.as_bytes())?;
    }
    let env: Vec<_> = std::env::vars_os().collect();
    put(out, "env_count", env.len().to_string())?;
    for (name, value) in &env {
        let mut key = b"env_".to_vec();
        key.extend_from_slice(name.as_bytes());
        put(out, key, value.as_bytes())?;
    }
    put(out, "home_marker", home_marker())?;

    if options.stdin_hash || options.read_bytes.is_some() || options.save_stdin.is_some() {
        let mut copy = options.save_stdin.as_ref().map(std::fs::File::create).transpose()?;
        let (len, hash) = hash_stdin(options.read_bytes, copy.as_mut())?;
        put(out, "stdin_len", len.to_string())?;
        put(out, "stdin_fnv64", hash)?;
    }
    for attempt in &options.tries {
        let (key, result) = match attempt {
            Try::Write(path) => (format!("try_write:{path}"), try_write(path)),
            Try::Exec(path) => (format!("try_exec:{path}"), try_exec(path)),
            Try::Rename(from, to) => (format!("try_rename:{from}"), std::fs::rename(from, to)),
        };
        put(out, key, outcome(&result))?;
    }
    Ok(())
}

fn try_write(path: &str) -> io::Result<()> {
    std::fs::File::create(path)?.write_all(b"written by the probe\n")
}

/// Run `path` (a program that prints nothing, such as a copy of `true`);
/// only whether it could be executed counts. It inherits our descriptors:
/// opening /dev/null for it would need the right to write there.
fn try_exec(path: &str) -> io::Result<()> {
    std::process::Command::new(path).status().map(drop)
}

/// `ok`, or the errno's name (`EACCES`, `EXDEV`, ...).
fn outcome(result: &io::Result<()>) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(err) => match err.raw_os_error() {
            Some(code) => format!("{:?}", Errno::from_raw(code)),
            None => format!("error: {err}"),
        },
    }
}

/// Sorted open descriptors, without the one used to list them.
fn open_fds() -> String {
    let Ok(mut dir) =
        Dir::open("/proc/self/fd", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
    else {
        return "-".to_owned();
    };
    let own = dir.as_raw_fd();
    let mut fds: Vec<i32> = dir
        .iter()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str().ok()?.parse().ok())
        .filter(|&fd| fd != own)
        .collect();
    fds.sort_unstable();
    let fds: Vec<String> = fds.iter().map(i32::to_string).collect();
    fds.join(",")
}

/// The inode number in a /proc/self/ns link such as `mnt:[4026531841]`.
fn namespace_inode(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .ok()
        .and_then(|target| {
            let target = target.to_str()?.to_owned();
            let inode = target.split_once(":[")?.1.strip_suffix(']')?;
            Some(inode.to_owned())
        })
        .unwrap_or_else(|| "-".to_owned())
}

fn dev_ino(path: &str) -> String {
    stat::stat(path).map_or_else(|_| "-".to_owned(), |st| format!("{}:{}", st.st_dev, st.st_ino))
}

/// `$HOME/.container-home` without its trailing newline, or `-`.
fn home_marker() -> Vec<u8> {
    let Some(home) = std::env::var_os("HOME") else {
        return b"-".to_vec();
    };
    let path = std::path::Path::new(&home).join(".container-home");
    match std::fs::read(path) {
        Ok(mut text) => {
            if text.last() == Some(&b'\n') {
                text.pop();
            }
            text
        }
        Err(_) => b"-".to_vec(),
    }
}

/// Read stdin to EOF, or only `limit` bytes, straight from fd 0: a buffered
/// reader could take more than `limit` from the pipe.
fn hash_stdin(limit: Option<u64>, mut copy: Option<&mut std::fs::File>) -> io::Result<(u64, String)> {
    let stdin = io::stdin();
    let fd = stdin.as_fd();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut hash = FNV64_OFFSET_BASIS;
    let mut total: u64 = 0;
    loop {
        let want = match limit {
            Some(limit) if total >= limit => break,
            Some(limit) => buffer.len().min(usize::try_from(limit - total).unwrap_or(usize::MAX)),
            None => buffer.len(),
        };
        match unistd::read(fd, &mut buffer[..want]) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(file) = copy.as_mut() {
                    file.write_all(&buffer[..n])?;
                }
                hash = fnv64_update(hash, &buffer[..n]);
                total += n as u64;
            }
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(io::Error::from(err)),
        }
    }
    Ok((total, format!("{hash:016x}")))
}

/// Fork a child that stays in our process group (and keeps our stdout and
/// stderr) for ten minutes: what a delivery leaves behind when it
/// daemonises badly.
fn spawn_background(out: &mut impl Write) -> io::Result<()> {
    // Nothing buffered may be duplicated into the child.
    out.flush()?;
    // SAFETY: the probe is single-threaded, so the child may run any code.
    match unsafe { unistd::fork() }.map_err(io::Error::from)? {
        ForkResult::Child => {
            std::thread::sleep(BACKGROUND_SLEEP);
            std::process::exit(0);
        }
        ForkResult::Parent { child } => put(out, "bg_pid", child.to_string()),
    }
}

/// Kill ourselves with `signal` under its default action.
fn die_by_signal(signal: Signal) {
    // SAFETY: SIG_DFL installs no handler, so no code of ours can run in
    // signal context; the probe is single-threaded.
    if let Err(err) = unsafe { signal::signal(signal, SigHandler::SigDfl) } {
        eprintln!("probe report: cannot reset {signal}: {err}");
    }
    let mut set = SigSet::empty();
    set.add(signal);
    if let Err(err) = set.thread_unblock() {
        eprintln!("probe report: cannot unblock {signal}: {err}");
    }
    if let Err(err) = signal::raise(signal) {
        eprintln!("probe report: cannot raise {signal}: {err}");
    }
    // Signals whose default action is to ignore or stop end up here.
    eprintln!("probe report: still alive after {signal}");
    std::process::exit(EXIT_FAILURE);
}

// -------------------------------------------------------------- attack ---

/// What a contained user tries against a process that is entering the
/// container (CVE-2016-9962: runc's entering process could be ptraced and
/// its host descriptors taken; CVE-2019-5736: /proc/PID/exe opened from
/// inside to overwrite the runtime's binary).
const ATTACKS: [&str; 9] = ["ptrace", "mem", "environ", "exe", "exe_write", "root", "cwd", "fd", "pidfd_getfd"];

/// Highest descriptor number tried through /proc/PID/fd/N and pidfd_getfd.
const MAX_FD_TRIED: i32 = 31;

/// What a successful attempt obtained.
#[derive(Clone)]
enum Got {
    /// Access to the process itself: its memory, environment, exe, root, cwd.
    Process,
    /// A copy of its descriptor N, or a path to it, and what it was.
    Fd(i32, String),
    /// Tracing it; whether it was still cagepipe, judged while it was stopped.
    Traced { still_cagepipe: bool },
}

impl std::fmt::Display for Got {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Got::Process => f.write_str("process"),
            Got::Fd(n, what) => write!(f, "fd {n} ({what})"),
            Got::Traced { still_cagepipe } => write!(f, "traced (still cagepipe: {still_cagepipe})"),
        }
    }
}

type Attempt = Result<Got, Errno>;

#[derive(Default)]
struct Tally {
    denied: u64,
    /// Successes on a process that had already become the delivered
    /// command (exec had replaced cagepipe, but /proc still showed its name).
    late: u64,
    breach: u64,
    errnos: std::collections::BTreeSet<String>,
}

/// Whether `path` is a cagepipe binary: its file name starts with
/// `cagepipe` (an installed copy under another name, " (deleted)" added).
fn is_cagepipe_binary(path: &std::path::Path) -> bool {
    path.file_name().is_some_and(|name| name.as_bytes().starts_with(b"cagepipe"))
}

/// Whether `pid` still runs the cagepipe binary (exec replaces the exe link
/// before the name in /proc/PID/comm changes).
fn still_cagepipe(pid: i32) -> bool {
    match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(target) => is_cagepipe_binary(&target),
        // Readable a moment ago, refused now: count it against cagepipe.
        Err(e) => matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)),
    }
}

/// A success counts against cagepipe unless the process had already become
/// the command: /proc/PID/comm keeps the old name for a moment after exec
/// has replaced the image (and the command's own start-up may have opened
/// descriptors by then, its dynamic loader's for one).
fn is_breach(pid: i32, got: &Got) -> bool {
    match got {
        Got::Fd(..) | Got::Process => still_cagepipe(pid),
        Got::Traced { still_cagepipe } => *still_cagepipe,
    }
}

fn link_of(path: &str) -> String {
    std::fs::read_link(path).map_or_else(|e| format!("? {e}"), |t| t.to_string_lossy().into_owned())
}

fn open_proc(pid: i32, leaf: &str, flags: OFlag) -> Result<(), Errno> {
    nix::fcntl::open(format!("/proc/{pid}/{leaf}").as_str(), flags | OFlag::O_CLOEXEC, Mode::empty()).map(drop)
}

/// PTRACE_SEIZE; on success stop the tracee, judge it, and let it go.
fn ptrace_seize(pid: i32) -> Attempt {
    // SAFETY: PTRACE_SEIZE with null addr and data touches no memory of ours.
    if unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) } != 0 {
        return Err(Errno::last());
    }
    // SAFETY: as above; PTRACE_INTERRUPT stops a seized tracee.
    unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0) };
    let _ = waitpid(unistd::Pid::from_raw(pid), Some(WaitPidFlag::__WALL));
    let still = still_cagepipe(pid);
    // SAFETY: as above; detaching resumes the tracee.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
    Ok(Got::Traced { still_cagepipe: still })
}

fn pidfd_getfds(pid: i32) -> Vec<Attempt> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return vec![Err(Errno::last())];
    }
    // SAFETY: the kernel just returned this descriptor to us.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    (0..=MAX_FD_TRIED)
        .filter_map(|n| {
            // SAFETY: pidfd_getfd takes two descriptor numbers and flags.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), n, 0) };
            if fd < 0 {
                let e = Errno::last();
                return (e != Errno::EBADF).then_some(Err(e)); // EBADF: no such descriptor
            }
            let what = link_of(&format!("/proc/self/fd/{fd}"));
            // SAFETY: a new descriptor of ours.
            drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            Some(Ok(Got::Fd(n, what)))
        })
        .collect()
}

/// Every attempt of one kind against `pid`.
fn attempts(pid: i32, kind: &str) -> Vec<Attempt> {
    let process = |r: Result<(), Errno>| vec![r.map(|()| Got::Process)];
    match kind {
        "ptrace" => vec![ptrace_seize(pid)],
        "mem" => process(open_proc(pid, "mem", OFlag::O_RDONLY)),
        "environ" => process(
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(drop)
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
        ),
        "exe" => process(open_proc(pid, "exe", OFlag::O_PATH)),
        "exe_write" => process(open_proc(pid, "exe", OFlag::O_WRONLY)),
        "root" => process(open_proc(pid, "root", OFlag::O_PATH | OFlag::O_DIRECTORY)),
        "cwd" => process(open_proc(pid, "cwd", OFlag::O_PATH | OFlag::O_DIRECTORY)),
        "fd" => (0..=MAX_FD_TRIED)
            .filter_map(|n| match open_proc(pid, &format!("fd/{n}"), OFlag::O_PATH) {
                Err(Errno::ENOENT) => None, // no such descriptor
                r => Some(r.map(|()| Got::Fd(n, link_of(&format!("/proc/{pid}/fd/{n}"))))),
            })
            .collect(),
        "pidfd_getfd" => pidfd_getfds(pid),
        _ => Vec::new(),
    }
}

/// Pids in our pid namespace whose name is `cagepipe`, or that run a
/// cagepipe binary under another name (a script whose interpreter is
/// /proc/self/exe is named after the script).
fn cagepipe_pids(skip: &[i32]) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| !skip.contains(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/comm")).is_ok_and(|c| c == b"cagepipe\n")
                || std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| is_cagepipe_binary(&e))
        })
        .collect()
}

fn run_attack(duration: Duration) -> i32 {
    let me = unistd::getpid().as_raw();
    let my_uid = unistd::getuid().as_raw();
    // The control: a process of our own, which every attempt must reach;
    // otherwise a denial below would prove nothing.
    // SAFETY: the probe is single-threaded, so the child may run any code.
    let control = match unsafe { unistd::fork() } {
        Ok(ForkResult::Child) => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        Ok(ForkResult::Parent { child }) => child,
        Err(err) => {
            eprintln!("probe attack: fork: {err}");
            return EXIT_FAILURE;
        }
    };
    let mut controls = Vec::new();
    for kind in ATTACKS {
        let results = attempts(control.as_raw(), kind);
        let verdict = if results.iter().any(Result::is_ok) {
            "ok".to_owned()
        } else {
            results.iter().find_map(|r| r.as_ref().err().map(|e| format!("{e:?}"))).unwrap_or_else(|| "-".into())
        };
        controls.push((kind, verdict));
    }

    let mut tallies: Vec<Tally> = ATTACKS.iter().map(|_| Tally::default()).collect();
    let (mut scans, mut sightings, mut dumpable) = (0u64, 0u64, 0u64);
    let mut targets = std::collections::BTreeSet::new();
    let (mut details, mut late_details) = (Vec::new(), Vec::new());
    let deadline = std::time::Instant::now() + duration;
    while std::time::Instant::now() < deadline {
        scans += 1;
        for pid in cagepipe_pids(&[me, control.as_raw()]) {
            sightings += 1;
            targets.insert(pid);
            // A process that is not dumpable has its /proc entries owned by
            // root, whoever it runs as (all but /proc/PID itself).
            if stat::stat(format!("/proc/{pid}/fd").as_str()).is_ok_and(|st| st.st_uid == my_uid) && still_cagepipe(pid)
            {
                dumpable += 1;
            }
            for (kind, tally) in ATTACKS.iter().zip(tallies.iter_mut()) {
                for attempt in attempts(pid, kind) {
                    match attempt {
                        Ok(got) if is_breach(pid, &got) => {
                            tally.breach += 1;
                            if details.len() < 8 {
                                details.push(format!("{kind}:{pid}:{got}"));
                            }
                        }
                        Ok(got) => {
                            tally.late += 1;
                            if late_details.len() < 8 {
                                late_details.push(format!("{kind}:{pid}:{got}"));
                            }
                        }
                        Err(e) => {
                            tally.denied += 1;
                            tally.errnos.insert(format!("{e:?}"));
                        }
                    }
                }
            }
        }
    }
    let _ = signal::kill(control, Signal::SIGKILL);
    let _ = waitpid(control, None);

    let mut out = io::stdout().lock();
    let breaches: u64 = tallies.iter().map(|t| t.breach).sum();
    let mut lines = vec![
        ("uid".to_owned(), my_uid.to_string()),
        ("scans".into(), scans.to_string()),
        ("sightings".into(), sightings.to_string()),
        ("targets".into(), targets.len().to_string()),
        ("dumpable_sightings".into(), dumpable.to_string()),
        ("breaches".into(), breaches.to_string()),
        ("breach_detail".into(), details.join(" ")),
        ("late_detail".into(), late_details.join(" ")),
    ];
    for ((kind, tally), (_, control)) in ATTACKS.iter().zip(&tallies).zip(&controls) {
        lines.push((format!("{kind}_denied"), tally.denied.to_string()));
        lines.push((format!("{kind}_late"), tally.late.to_string()));
        lines.push((format!("{kind}_breach"), tally.breach.to_string()));
        lines.push((format!("{kind}_errnos"), tally.errnos.iter().cloned().collect::<Vec<_>>().join(",")));
        lines.push((format!("control_{kind}"), control.clone()));
    }
    let result = lines.iter().try_for_each(|(k, v)| put(&mut out, k, v)).and_then(|()| out.flush());
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("probe attack: {err}");
            EXIT_FAILURE
        }
    }
}

// ----------------------------------------------------------------- tty ---

/// Try to push `text` into the input of the terminal on fd 0 (TIOCSTI),
/// as a command that wants the keystrokes run by whoever's shell owns the
/// terminal once the command exits (CVE-2016-7545, CVE-2017-5226).
/// Push `text` into the input of the terminal on `fd` (TIOCSTI), byte by
/// byte: "ok", or the errno of the first refusal.
fn type_into(fd: std::os::fd::RawFd, text: &[u8]) -> String {
    for byte in text {
        // SAFETY: TIOCSTI reads one byte through the pointer, which is valid.
        if unsafe { libc::ioctl(fd, libc::TIOCSTI, byte as *const u8) } != 0 {
            return format!("{:?}", Errno::last());
        }
    }
    "ok".to_owned()
}

fn run_tty(text: &[u8]) -> i32 {
    let isatty = unistd::isatty(io::stdin().as_fd()).unwrap_or(false);
    // tcgetsid fails with ENOTTY unless fd 0 is our controlling terminal.
    // SAFETY: tcgetsid only asks the kernel about descriptor 0.
    let ctty = if unsafe { libc::tcgetsid(0) } >= 0 { "yes".to_owned() } else { format!("no ({:?})", Errno::last()) };
    let tiocsti = type_into(0, text);
    // Any process can open its controlling terminal as /dev/tty, whatever
    // is on 0-2; without one the open fails with ENXIO. (Typed through it
    // only when 0 is no terminal: the text goes in once.)
    let (devtty, devtty_tiocsti) =
        match nix::fcntl::open("/dev/tty", OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(_) if isatty => ("opened".to_owned(), "-".to_owned()),
            Ok(fd) => ("opened".to_owned(), type_into(fd.as_raw_fd(), text)),
            Err(e) => (format!("{e:?}"), "-".to_owned()),
        };
    let sid = unistd::getsid(None).map_or_else(|_| "-".to_owned(), |s| s.to_string());
    let mut out = io::stdout().lock();
    let result = [
        ("isatty", if isatty { "yes".to_owned() } else { "no".to_owned() }),
        ("ctty", ctty),
        ("tiocsti", tiocsti),
        ("devtty", devtty),
        ("devtty_tiocsti", devtty_tiocsti),
        ("sid", sid),
        ("pgid", unistd::getpgrp().to_string()),
    ]
    .iter()
    .try_for_each(|(k, v)| put(&mut out, k, v))
    .and_then(|()| out.flush());
    if result.is_err() {
        return EXIT_FAILURE;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(bytes: &[u8], is_key: bool) -> String {
        let mut line = Vec::new();
        escape_into(&mut line, bytes, is_key);
        String::from_utf8(line).expect("escaped text is ASCII")
    }

    #[test]
    fn escaping_keeps_one_key_per_line() {
        assert_eq!(escaped(b"plain text=1", false), "plain text=1");
        assert_eq!(escaped(b"a\\b\nc\rd\te", false), "a\\\\b\\nc\\rd\\te");
        assert_eq!(escaped(b"\x00\x1f\x7f\xff\xc3\xa9", false), "\\x00\\x1f\\x7f\\xff\\xc3\\xa9");
        assert_eq!(escaped(b"env_A=B", true), "env_A\\x3dB");
    }

    #[test]
    fn fnv1a_64_matches_the_reference_values() {
        let hex = |bytes: &[u8]| format!("{:016x}", fnv64_update(FNV64_OFFSET_BASIS, bytes));
        assert_eq!(hex(b""), "cbf29ce484222325");
        assert_eq!(hex(b"a"), "af63dc4c8601ec8c");
        assert_eq!(hex(b"foobar"), "85944171f73967e8");
        // Streaming in pieces gives the same hash.
        let split = fnv64_update(fnv64_update(FNV64_OFFSET_BASIS, b"foo"), b"bar");
        assert_eq!(format!("{split:016x}"), "85944171f73967e8");
    }
}
