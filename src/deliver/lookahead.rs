//! Looking ahead: would a command run once inside the account's container?
//! Decided from the host through the container's root (`inroot`), never by
//! executing anything. `check --dry-run`, `survey` and the syslog line of an
//! uncontained (`[rollout]`) delivery all ask the same question here.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::config::account::Account;
use crate::config::Config;
use crate::deliver::command;
use crate::deliver::inroot::{self, Budget, Lookup, Viewer};
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
    match judge_in_container(k, config, account, argv, &mut Looks::default(), &mut Inside::default()) {
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

/// Most paths remembered for one account; beyond it they are looked up
/// again (each look still paid from the budget).
const MAX_REMEMBERED: usize = 10_000;

/// What the looks made for one account share: its container, resolved
/// once; the budget all its walks are paid from; and what was found
/// already, by path (the container is the same for all of them), so that
/// a file repeating a pipe or a path costs one look.
#[derive(Default)]
pub(crate) struct Looks {
    target: Option<Result<resolve::Target>>,
    pub(crate) budget: Budget,
    commands: HashMap<Vec<Vec<u8>>, Lookup>,
    inside: HashMap<Vec<u8>, std::result::Result<Option<Vec<u8>>, String>>,
    on_host: HashMap<Vec<u8>, std::result::Result<bool, String>>,
    host_root: Option<OwnedFd>,
}

impl Looks {
    fn remember<K: std::hash::Hash + Eq, V: Clone>(map: &mut HashMap<K, V>, key: K, value: V) -> V {
        if map.len() < MAX_REMEMBERED {
            map.insert(key, value.clone());
        }
        value
    }

    fn find_command(&mut self, root: BorrowedFd<'_>, candidates: Vec<Vec<u8>>, viewer: &Viewer, path: &str) -> Lookup {
        if let Some(found) = self.commands.get(&candidates) {
            return found.clone();
        }
        let found = inroot::find_command_within(root, &candidates, viewer, path, &self.budget);
        Looks::remember(&mut self.commands, candidates, found)
    }

    /// Where `path` leads inside, as [`inroot::where_inside_within`].
    fn where_inside(
        &mut self,
        root: BorrowedFd<'_>,
        path: &[u8],
        viewer: &Viewer,
    ) -> std::result::Result<Option<Vec<u8>>, String> {
        if let Some(found) = self.inside.get(path) {
            return found.clone();
        }
        let found = inroot::where_inside_within(root, path, viewer, &self.budget);
        Looks::remember(&mut self.inside, path.to_vec(), found)
    }

    /// Whether the account reaches `path` on this host: walked from the
    /// host's root as the account (every directory on the way searchable
    /// by it), so that the answer says nothing the account could not see.
    fn on_host(&mut self, path: &[u8], viewer: &Viewer) -> std::result::Result<bool, String> {
        if let Some(found) = self.on_host.get(path) {
            return found.clone();
        }
        if self.host_root.is_none() {
            self.host_root = crate::platform::fs::open(
                "/",
                crate::platform::fs::OFlag::O_PATH
                    | crate::platform::fs::OFlag::O_DIRECTORY
                    | crate::platform::fs::OFlag::O_CLOEXEC,
                crate::platform::fs::Mode::empty(),
            )
            .ok();
        }
        let found = match &self.host_root {
            Some(root) => inroot::where_inside_within(root.as_fd(), path, viewer, &self.budget).map(|p| p.is_some()),
            None => Ok(false),
        };
        Looks::remember(&mut self.on_host, path.to_vec(), found)
    }
}

/// Whether `argv` would run for `account` once contained: its container
/// runs and the program exists inside and may be executed by the account.
/// `looks` holds what the account's pipes share (its container, the budget
/// of its walks, what was found already).
pub(crate) fn judge_in_container(
    k: &mut impl Kernel,
    config: &Config,
    account: &Account,
    argv: &[Vec<u8>],
    looks: &mut Looks,
    e: &mut Inside,
) -> Verdict {
    let cuts = looks.budget.cuts();
    let verdict = judge_with(k, config, account, argv, looks, e);
    if looks.budget.cuts() > cuts {
        if let Verdict::NeedsAttention { code, reason } = &verdict {
            if *code != "survey-limit" {
                // A walk was given up on the way: what was found is not
                // the whole story.
                return attention(
                    "survey-limit",
                    format!("{reason} (Part of the check was given up: its paths cost more than the survey spends.)"),
                );
            }
        }
    }
    verdict
}

fn judge_with(
    k: &mut impl Kernel,
    config: &Config,
    account: &Account,
    argv: &[Vec<u8>],
    looks: &mut Looks,
    e: &mut Inside,
) -> Verdict {
    let mut target_slot = looks.target.take();
    let verdict = judge_target(k, config, account, argv, &mut target_slot, looks, e);
    looks.target = target_slot;
    verdict
}

fn judge_target(
    k: &mut impl Kernel,
    config: &Config,
    account: &Account,
    argv: &[Vec<u8>],
    target: &mut Option<Result<resolve::Target>>,
    looks: &mut Looks,
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
    match looks.find_command(target.root.as_fd(), candidates, &viewer, &config.command_path) {
        Lookup::Unchecked { path, why } => {
            attention("survey-limit", format!("The program {} {why}; check it by hand.", escape(&path)))
        }
        Lookup::Executable { path, interpreter } => {
            let verdict = match sandbox_verdict(config, account, target, &viewer, &path, interpreter.as_deref(), looks)
            {
                Verdict::Ready => arguments_verdict(target, &viewer, &argv[1..], looks),
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
fn arguments_verdict(target: &resolve::Target, viewer: &Viewer, args: &[Vec<u8>], looks: &mut Looks) -> Verdict {
    for arg in args.iter().filter(|a| a.starts_with(b"/")) {
        let judged = looks.on_host(arg, viewer).and_then(|on_host| match on_host {
            true => looks.where_inside(target.root.as_fd(), arg, viewer).map(|inside| inside.is_some()),
            false => Ok(true),
        });
        match judged {
            Ok(true) => {}
            Ok(false) => {
                return attention(
                    "argument-missing",
                    format!(
                        "The file {} named in the command exists on this server but not inside the account's container \
                         (or the account cannot reach it there), so the program would not find it.",
                        escape(arg)
                    ),
                )
            }
            Err(why) => {
                return attention("survey-limit", format!("The file {} named in the command {why}.", escape(arg)))
            }
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
    looks: &mut Looks,
) -> Verdict {
    let plan = match crate::deliver::sandbox::plan(&config.sandbox, account, &config.path) {
        Ok(Some(plan)) => plan,
        Ok(None) => return Verdict::Ready,
        Err(err) => return attention("sandbox-execute", format!("The [sandbox] paths do not fit the account: {err}.")),
    };
    let mut allowed: Vec<Vec<u8>> = Vec::new();
    for dir in &plan.execute {
        match looks.where_inside(target.root.as_fd(), dir.as_bytes(), viewer) {
            Ok(Some(at)) => allowed.push(at),
            Ok(None) => {}
            Err(why) => {
                return attention(
                    "survey-limit",
                    format!("The [sandbox] execute path {} {why}.", escape(dir.as_bytes())),
                )
            }
        }
    }
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
        Lookup::Unchecked { why, .. } => Err(exec(io::Error::other(why))),
    }
}

/// The account as the lookups see it: its own uid, gid and groups.
fn viewer_of(account: &Account) -> Viewer {
    Viewer { uid: account.uid, gid: account.gid, groups: account.groups.clone(), name: account.name.clone() }
}
