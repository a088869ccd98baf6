//! Every failure of cagepipe, with the context an administrator needs, and
//! the one place where a failure becomes an exit status for Exim.
#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::path::PathBuf;

/// sysexits(3) codes Exim acts on (see shared notes on Exim).
pub mod exit {
    /// Bad command line: Exim bounces, but this is a configuration bug that
    /// shows at once.
    pub const USAGE: i32 = 64;
    /// Anything an administrator can fix: Exim defers and retries.
    pub const TEMPFAIL: i32 = 75;
    /// The caller is not allowed: Exim bounces.
    pub const NOPERM: i32 = 77;
    /// `check` only: Exim's transports that name cagepipe have problems
    /// (never a delivery's status).
    pub const CONFIG: i32 = 78;
    /// The command exists but cannot be executed (shell convention).
    pub const NOT_EXECUTABLE: i32 = 126;
    /// The command does not exist inside the container (shell convention;
    /// Exim logs 127 as "unable to exec or command does not exist").
    pub const NOT_FOUND: i32 = 127;
}

#[derive(Debug)]
pub enum Error {
    /// Command line not understood.
    Usage(String),
    /// The caller may not do this (uid below min_uid, --user from non-root).
    NotPermitted(String),
    /// The configuration file is missing, unsafe or invalid.
    Config { path: PathBuf, problem: String },
    /// The binary is installed wrongly (setuid, missing capabilities, ...).
    SelfCheck(String),
    /// The account of the caller could not be established.
    Account(String),
    /// No running container for the user; `refuse` reflects `missing`.
    NotRunning { user: String, reason: String, refuse: bool },
    /// The pidfile exists but cannot be trusted or read.
    Pidfile { path: PathBuf, problem: String },
    /// A container engine's state exists but cannot be trusted or used.
    Engine { engine: &'static str, path: Option<PathBuf>, problem: String },
    /// Something about the target process itself.
    Target { pid: i32, problem: String },
    /// Joining a cgroup failed.
    Cgroup { dir: PathBuf, source: io::Error },
    /// Entering a namespace failed.
    Namespace { what: String, pid: i32, source: io::Error },
    /// Dropping privileges failed or could not be verified.
    Privileges(String),
    /// The `[sandbox]` could not be planned or applied as configured.
    Sandbox(String),
    /// The command could not be executed (`inside` the container, or on
    /// the host for an account `[rollout]` does not contain yet).
    Exec { command: String, inside: bool, source: io::Error },
    /// A failure the forked child reported before exec, already mapped.
    Reported { code: i32, message: String },
    /// Any other system failure, with what we were doing.
    Io { context: String, source: io::Error },
    /// A file the administrator gave `survey --notices` (the template, the
    /// contacts) is not what it must be; `problem` names line and column.
    Template { path: PathBuf, problem: String },
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// The one mapping from failure to exit status.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Template { .. } => exit::USAGE,
            Error::Reported { code, .. } => *code,
            Error::NotPermitted(_) => exit::NOPERM,
            Error::NotRunning { refuse: true, .. } => exit::NOPERM,
            Error::Exec { source, .. } if is_transient(source) => exit::TEMPFAIL,
            Error::Exec { source, .. } if is_not_found(source) => exit::NOT_FOUND,
            Error::Exec { .. } => exit::NOT_EXECUTABLE,
            Error::NotRunning { refuse: false, .. }
            | Error::Config { .. }
            | Error::SelfCheck(_)
            | Error::Account(_)
            | Error::Pidfile { .. }
            | Error::Engine { .. }
            | Error::Target { .. }
            | Error::Cgroup { .. }
            | Error::Namespace { .. }
            | Error::Privileges(_)
            | Error::Sandbox(_)
            | Error::Io { .. } => exit::TEMPFAIL,
        }
    }

    /// A one-word outcome for the syslog line.
    pub fn outcome(&self) -> &'static str {
        match self.exit_code() {
            exit::USAGE => "usage",
            exit::NOPERM => "refused",
            exit::NOT_FOUND => "not-found",
            exit::NOT_EXECUTABLE => "not-executable",
            _ => "deferred",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "usage: {m}"),
            Error::NotPermitted(m) => write!(f, "not permitted: {m}"),
            Error::Config { path, problem } => {
                write!(f, "configuration {}: {problem}", path.display())
            }
            Error::SelfCheck(m) => write!(f, "installation problem: {m}"),
            Error::Account(m) => write!(f, "account: {m}"),
            Error::NotRunning { user, reason, .. } => {
                write!(f, "no running container for user {user}: {reason}")
            }
            Error::Pidfile { path, problem } => write!(f, "pidfile {}: {problem}", path.display()),
            Error::Engine { engine, path: Some(path), problem } => {
                write!(f, "{engine} state {}: {problem}", path.display())
            }
            Error::Engine { engine, path: None, problem } => write!(f, "{engine}: {problem}"),
            Error::Target { pid, problem } => write!(f, "container process {pid}: {problem}"),
            Error::Cgroup { dir, source } => {
                write!(f, "cannot join cgroup {}: {source}", dir.display())
            }
            Error::Namespace { what, pid, source } => {
                write!(f, "cannot enter {what} of process {pid}: {source}")
            }
            Error::Privileges(m) => write!(f, "cannot drop privileges: {m}"),
            // Every message names [sandbox] or Landlock itself.
            Error::Sandbox(m) => f.write_str(m),
            Error::Exec { command, inside, source } => {
                let place = if *inside { "inside the container" } else { "on the host" };
                match source.raw_os_error() {
                    Some(ENOENT) => write!(f, "command {command} not found {place}"),
                    Some(ENOTDIR) => {
                        write!(f, "command {command} not found {place} (a path component is not a directory)")
                    }
                    Some(ELOOP) => write!(f, "command {command} not found {place} (too many levels of symbolic links)"),
                    _ if is_transient(source) => {
                        write!(f, "cannot execute {command} {place} for now: {source}; the delivery is deferred")
                    }
                    _ => write!(f, "cannot execute {command} {place}: {source}"),
                }
            }
            Error::Reported { message, .. } => f.write_str(message),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Template { path, problem } => write!(f, "{}: {problem}", path.display()),
        }
    }
}

impl std::error::Error for Error {}

use crate::platform::errno::{EAGAIN, ELOOP, EMFILE, ENFILE, ENOENT, ENOMEM, ENOTDIR, ETXTBSY};

/// Exec failures that pass: out of memory, processes, descriptors, or the
/// program being written right now. Exim retries; the message is kept.
fn is_transient(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(EAGAIN | ENOMEM | ENFILE | EMFILE | ETXTBSY))
}

/// What the shell reports as 127: the program, or a directory or link on
/// its way, is not there.
fn is_not_found(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(ENOENT | ENOTDIR | ELOOP)) || e.kind() == io::ErrorKind::NotFound
}

/// The exits of the administrator's tools that are not failures of
/// cagepipe: what `check` and `survey` found, decided here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finding {
    /// `check`: the delivery (or installation) is fine, but Exim's
    /// transports that name cagepipe, or names in `[rollout]`, have this
    /// many problems.
    Check { problems: usize },
    /// `survey`: whether every pipe found is ready to be contained.
    Survey { all_ready: bool },
}

impl Finding {
    pub(crate) fn exit_code(self) -> i32 {
        match self {
            Finding::Check { problems: 0 } => 0,
            Finding::Check { .. } => exit::CONFIG,
            Finding::Survey { all_ready: true } => 0,
            Finding::Survey { all_ready: false } => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Errno;

    const EACCES: i32 = Errno::EACCES as i32;
    const EIO: i32 = Errno::EIO as i32;
    const ENOEXEC: i32 = Errno::ENOEXEC as i32;
    const EPERM: i32 = Errno::EPERM as i32;

    fn io(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn every_failure_maps_to_its_sysexits_code() {
        let p = PathBuf::from("/x");
        let cases: Vec<(Error, i32)> = vec![
            (Error::Usage("x".into()), 64),
            (Error::NotPermitted("x".into()), 77),
            (Error::Config { path: p.clone(), problem: "x".into() }, 75),
            (Error::SelfCheck("x".into()), 75),
            (Error::Account("x".into()), 75),
            (Error::NotRunning { user: "a".into(), reason: "x".into(), refuse: false }, 75),
            (Error::NotRunning { user: "a".into(), reason: "x".into(), refuse: true }, 77),
            (Error::Pidfile { path: p.clone(), problem: "x".into() }, 75),
            (Error::Target { pid: 1, problem: "x".into() }, 75),
            (Error::Engine { engine: "docker", path: None, problem: "x".into() }, 75),
            (Error::Cgroup { dir: p, source: io(ENOENT) }, 75),
            (Error::Namespace { what: "mnt".into(), pid: 1, source: io(EPERM) }, 75),
            (Error::Privileges("x".into()), 75),
            (Error::Sandbox("x".into()), 75),
            (Error::Exec { command: "c".into(), inside: true, source: io(ENOENT) }, 127),
            (Error::Exec { command: "c".into(), inside: true, source: io(ELOOP) }, 127),
            (Error::Exec { command: "c".into(), inside: true, source: io(EACCES) }, 126),
            (Error::Exec { command: "c".into(), inside: false, source: io(ENOEXEC) }, 126),
            (Error::io("reading", io(EIO)), 75),
            (Error::Template { path: PathBuf::from("/t"), problem: "line 1, column 2: x".into() }, 64),
        ];
        for (err, code) in cases {
            assert_eq!(err.exit_code(), code, "{err}");
        }
    }

    #[test]
    fn exec_messages_agree_with_their_exit_codes() {
        let exec = |inside, e| Error::Exec { command: "/x".into(), inside, source: io(e) };
        assert_eq!(
            exec(true, ELOOP).to_string(),
            "command /x not found inside the container (too many levels of symbolic links)"
        );
        assert_eq!(exec(false, ENOENT).to_string(), "command /x not found on the host");
        assert_eq!(
            exec(true, EACCES).to_string(),
            "cannot execute /x inside the container: Permission denied (os error 13)"
        );
        for e in [ENOENT, ENOTDIR, ELOOP] {
            assert_eq!(exec(true, e).outcome(), "not-found");
        }
        for e in [Errno::EAGAIN, Errno::ENOMEM, Errno::ENFILE, Errno::EMFILE, Errno::ETXTBSY] {
            let err = exec(true, e as i32);
            assert_eq!((err.exit_code(), err.outcome()), (75, "deferred"), "{err}");
            assert!(err.to_string().ends_with("the delivery is deferred"), "{err}");
        }
    }

    #[test]
    fn messages_name_what_to_fix() {
        let e = Error::Cgroup { dir: PathBuf::from("/sys/fs/cgroup/x"), source: io(ENOENT) };
        assert_eq!(e.to_string(), "cannot join cgroup /sys/fs/cgroup/x: No such file or directory (os error 2)");
        assert_eq!(e.outcome(), "deferred");
    }
}
