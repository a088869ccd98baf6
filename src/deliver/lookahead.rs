//! Looking ahead: would a command run once inside the account's container?
//! Decided from the host through the container's root (`inroot`), never by
//! executing anything. `check --dry-run`, `survey` and the syslog line of an
//! uncontained (`[rollout]`) delivery all ask the same question here.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use crate::config::account::Account;
use crate::config::Config;
use crate::deliver::command;
use crate::deliver::inroot::{self, Lookup, Viewer};
use crate::deliver::resolve::{self, Target};
use crate::error::{Error, Result};
use crate::escape::escape;
use crate::platform::kernel::Kernel;
use crate::platform::Errno;

/// The verdict on one pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ready,
    /// `code` is stable for scripts; `reason` is a sentence for people.
    NeedsAttention {
        code: &'static str,
        reason: String,
    },
}

pub(crate) fn attention(code: &'static str, reason: String) -> Verdict {
    Verdict::NeedsAttention { code, reason }
}

/// For the syslog line of an uncontained delivery: `ready`, or the code of
/// what would keep it from working once the account is contained.
pub(crate) fn if_contained(k: &mut impl Kernel, config: &Config, account: &Account, argv: &[Vec<u8>]) -> &'static str {
    match judge_in_container(k, config, account, argv, &mut None, &mut Inside::default()) {
        Verdict::Ready => "ready",
        Verdict::NeedsAttention { code, .. } => code,
    }
}

/// What a look into the container found.
#[derive(Debug, Default)]
pub(crate) struct Inside {
    /// Where the container reference came from, and the pid.
    pub(crate) container: Option<(String, i32)>,
    /// Where the program is, inside, and its script's interpreter.
    pub(crate) command: Option<Vec<u8>>,
    pub(crate) interpreter: Option<Vec<u8>>,
}

/// Whether `argv` would run for `account` once contained: its container
/// runs and the program exists inside and may be executed by the account.
/// `target` caches the resolution across an account's pipes.
pub(crate) fn judge_in_container(
    k: &mut impl Kernel,
    config: &Config,
    account: &Account,
    argv: &[Vec<u8>],
    target: &mut Option<Result<resolve::Target>>,
    e: &mut Inside,
) -> Verdict {
    let target = target.get_or_insert_with(|| resolve::resolve(k, config, account));
    let target = match target {
        Ok(t) => t,
        Err(err @ Error::NotRunning { .. }) => {
            return attention(
                "no-container",
                format!(
                    "The account's container is not running ({}), so mail for this pipe would wait in the queue until it runs.",
                    not_running_detail(err)
                ),
            )
        }
        Err(err) => return attention("container-problem", format!("The account's container cannot be entered: {err}.")),
    };
    e.container = Some((target.source.clone(), target.pid));
    if let Err(err) = resolve::credentials(account, target) {
        return attention("container-problem", format!("The account cannot run as itself in its container: {err}."));
    }
    let candidates: Vec<Vec<u8>> =
        command::candidates(&argv[0], &config.command_path).into_iter().map(|c| c.into_bytes()).collect();
    let viewer = viewer_of(account);
    let program = escape(&argv[0]);
    match inroot::find_command(target.root.as_fd(), &candidates, &viewer, &config.command_path) {
        Lookup::Executable { path, interpreter } => {
            let verdict = match sandbox_verdict(config, account, target, &viewer, &path, interpreter.as_deref()) {
                Verdict::Ready => arguments_verdict(target, &viewer, &argv[1..]),
                refused => refused,
            };
            e.command = Some(path);
            e.interpreter = interpreter;
            verdict
        }
        Lookup::NotFound => {
            attention(
                "not-found",
                if argv[0].contains(&b'/') {
                    format!("The program {program} does not exist inside the account's container, so the delivery would fail.")
                } else {
                    format!(
                    "The program {program} is not found inside the account's container (searched {}), so the delivery would fail.",
                    config.command_path
                )
                },
            )
        }
        Lookup::NotExecutable { path, why } => {
            e.command = Some(path.clone());
            attention(
                "not-executable",
                format!(
                    "The program {} exists inside the account's container but {why}, so the delivery would fail.",
                    escape(&path)
                ),
            )
        }
        Lookup::InterpreterMissing { path, interpreter } => {
            e.command = Some(path.clone());
            e.interpreter = Some(interpreter.clone());
            attention(
                "interpreter-missing",
                format!(
                    "The script {} needs {}, which does not exist inside the account's container.",
                    escape(&path),
                    escape(&interpreter)
                ),
            )
        }
        Lookup::InterpreterNotExecutable { path, interpreter, why } => {
            e.command = Some(path.clone());
            e.interpreter = Some(interpreter.clone());
            attention(
                "interpreter-not-executable",
                format!(
                    "The script {} needs {}, which exists inside the account's container but {why}.",
                    escape(&path),
                    escape(&interpreter)
                ),
            )
        }
    }
}

/// A command such as `/usr/bin/php -q /home/bob/pipe.php` names its script
/// as an argument: an absolute path that exists on this host but that the
/// account cannot reach inside its container is the commonest thing that
/// breaks when a pipe moves into one. Only paths the host has are judged,
/// so an argument that merely starts with '/' is left alone.
fn arguments_verdict(target: &resolve::Target, viewer: &Viewer, args: &[Vec<u8>]) -> Verdict {
    for arg in args.iter().filter(|a| a.starts_with(b"/")) {
        let on_host = std::fs::symlink_metadata(OsStr::from_bytes(arg)).is_ok();
        if on_host && inroot::where_inside(target.root.as_fd(), arg, viewer).is_none() {
            return attention(
                "argument-missing",
                format!(
                    "The file {} named in the command exists on this server but not inside the account's container \
                     (or the account cannot reach it there), so the program would not find it.",
                    escape(arg)
                ),
            );
        }
    }
    Verdict::Ready
}

/// With `[sandbox] landlock` on, the program and its interpreter must lie
/// beneath an `execute` path (each resolved inside, as the account reaches
/// it; one it cannot reach allows nothing, as in the sandbox itself), or
/// Landlock stops the exec. "best-effort" counts as on: the survey does not
/// know the kernel every delivery will run on.
fn sandbox_verdict(
    config: &Config,
    account: &Account,
    target: &resolve::Target,
    viewer: &Viewer,
    program: &[u8],
    interpreter: Option<&[u8]>,
) -> Verdict {
    let plan = match crate::deliver::sandbox::plan(&config.sandbox, account, &config.path) {
        Ok(Some(plan)) => plan,
        Ok(None) => return Verdict::Ready,
        Err(err) => return attention("sandbox-execute", format!("The [sandbox] paths do not fit the account: {err}.")),
    };
    let allowed: Vec<Vec<u8>> = plan
        .execute
        .iter()
        .filter_map(|dir| inroot::where_inside(target.root.as_fd(), dir.as_bytes(), viewer))
        .collect();
    let beneath = |file: &[u8]| {
        allowed.iter().any(|dir| {
            dir == b"/" || file == &dir[..] || file.strip_prefix(&dir[..]).is_some_and(|r| r.starts_with(b"/"))
        })
    };
    for (what, file) in [("program", Some(program)), ("interpreter", interpreter)] {
        let Some(file) = file else { continue };
        if !beneath(file) {
            let listed: Vec<String> = config.sandbox.execute.iter().map(|t| t.as_str().to_string()).collect();
            return attention(
                "sandbox-execute",
                format!(
                    "The {what} {} is not beneath any directory [sandbox] execute allows ({}), so the sandbox would stop it and the delivery would fail.",
                    escape(file),
                    listed.join(", ")
                ),
            );
        }
    }
    Verdict::Ready
}

/// "no pidfile /run/cagepipe/bob.pid" out of a NotRunning error.
pub(crate) fn not_running_detail(err: &Error) -> String {
    match err {
        Error::NotRunning { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// For `--dry-run`: whether the delivery's exec would start `argv[0]`
/// inside the container, looked up as the account through the container's
/// root. The error is the one the delivery would end with (127 or 126).
pub(crate) fn command_would_start(config: &Config, account: &Account, target: &Target, argv: &[Vec<u8>]) -> Result<()> {
    let candidates: Vec<Vec<u8>> =
        command::candidates(&argv[0], &config.command_path).into_iter().map(|c| c.into_bytes()).collect();
    let viewer = viewer_of(account);
    let exec = |source: io::Error| Error::Exec { command: escape(&argv[0]), inside: true, source };
    match inroot::find_command(target.root.as_fd(), &candidates, &viewer, &config.command_path) {
        Lookup::Executable { .. } => Ok(()),
        Lookup::NotFound => Err(exec(io::Error::from_raw_os_error(Errno::ENOENT as i32))),
        Lookup::NotExecutable { why, .. } => Err(exec(io::Error::new(io::ErrorKind::PermissionDenied, why))),
        Lookup::InterpreterMissing { interpreter, .. } => Err(exec(io::Error::new(
            io::ErrorKind::NotFound,
            format!("its interpreter {} does not exist there", escape(&interpreter)),
        ))),
        Lookup::InterpreterNotExecutable { interpreter, why, .. } => Err(exec(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("its interpreter {} {why}", escape(&interpreter)),
        ))),
    }
}

/// The account as the lookups see it: its own uid, gid and groups.
fn viewer_of(account: &Account) -> Viewer {
    Viewer { uid: account.uid, gid: account.gid, groups: account.groups.clone(), name: account.name.clone() }
}
