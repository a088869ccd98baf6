#![deny(unsafe_code)]
//! cagepipe: run a mail pipe delivery inside its owner's running container.
//!
//!
//! The flow is parse → validate → act: [`cli`] and [`config`] produce
//! validated values, [`resolve`] pins the container on the host, and only
//! then [`launch`] enters it and runs the command.

pub mod cli;
pub mod error;
pub mod parse;

mod admin;
mod config;
mod deliver;
mod log;
mod platform;

use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Instant;

use config::account::{self, Account};
use cli::{Action, CommandSpec, Request};
use config::Config;
use error::{Error, Result};
use deliver::launch::{self, Ending, Launch};
use deliver::{command, privileges, resolve, sandbox, startup};
use config::rollout;
use admin::{check as report, survey};
use platform::sys;

/// How the process should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exit(i32),
    /// Die from this signal, as the command did.
    Signal(i32),
}

/// What the audit line says about a delivery, filled in as it is learned.
#[derive(Default)]
struct Audit {
    user: Option<String>,
    uid: Option<u32>,
    container: Option<String>,
    pid: Option<i32>,
    /// How much of the Landlock sandbox the child could apply.
    sandbox: Option<String>,
    /// For an account not contained yet: what containing it would find
    /// (`ready` or the survey's code), so the switch can be watched first.
    if_contained: Option<&'static str>,
}

/// The configuration parser, for the fuzz target: `Ok` or the error a
/// delivery would report.
pub fn parse_config(text: &str, path: &std::path::Path) -> Result<()> {
    config::parse(text, path).map(drop)
}

/// The program: run with the process's arguments and end as [`run`] says.
pub fn main() -> ! {
    // A bug in cagepipe must not bounce mail: report it and defer (75).
    std::panic::set_hook(Box::new(|info| {
        log::to_stderr(&format!("internal error: {info}"));
        sys::exit_now(error::exit::TEMPFAIL);
    }));
    match run(std::env::args_os().collect()) {
        Outcome::Exit(code) => std::process::exit(code),
        Outcome::Signal(sig) => die_from_signal(sig),
    }
}

/// Run cagepipe with these arguments (argv[0] included).
pub fn run(args: Vec<OsString>) -> Outcome {
    let started = Instant::now();
    if startup::ensure_std_fds().is_err() {
        return Outcome::Exit(error::exit::TEMPFAIL);
    }
    let closed = startup::close_inherited_fds();
    // Connected now, before any namespace is entered.
    let mut log = log::Log::open();
    let mut audit = Audit::default();
    let result = closed.and_then(|()| dispatch(args, &mut audit, &mut log));
    let (outcome, severity, text, ok) = match &result {
        Ok(Done::Printed) => return Outcome::Exit(0),
        Ok(Done::Explained(code)) => return Outcome::Exit(*code),
        Ok(Done::Ran(Ending::Exited(code))) => {
            (Outcome::Exit(*code), log::INFO, format!("outcome=exited exit={code}"), *code == 0)
        }
        Ok(Done::Ran(Ending::Signaled(sig))) => {
            (Outcome::Signal(*sig), log::INFO, format!("outcome=signaled signal={sig}"), false)
        }
        Err(e) => {
            log::to_stderr(&e.to_string());
            let severity = if e.exit_code() == error::exit::TEMPFAIL { log::WARNING } else { log::ERR };
            (
                Outcome::Exit(e.exit_code()),
                severity,
                format!("outcome={} exit={} reason={}", e.outcome(), e.exit_code(), log::field(&e.to_string())),
                false,
            )
        }
    };
    let mut line = String::new();
    if let Some(u) = &audit.user {
        line.push_str(&format!("user={} ", log::field(u)));
    }
    if let Some(uid) = audit.uid {
        line.push_str(&format!("uid={uid} "));
    }
    if let Some(c) = &audit.container {
        line.push_str(&format!("container={} ", log::field(c)));
    }
    if let Some(pid) = audit.pid {
        line.push_str(&format!("pid={pid} "));
    }
    if let Some(s) = &audit.sandbox {
        line.push_str(&format!("sandbox={} ", log::field(s)));
    }
    if let Some(s) = audit.if_contained {
        line.push_str(&format!("if_contained={s} "));
    }
    line.push_str(&text);
    line.push_str(&format!(" duration_ms={:.1}", started.elapsed().as_secs_f64() * 1000.0));
    log.audit(severity, &line, ok);
    outcome
}

enum Done {
    /// Help or version text was printed.
    Printed,
    /// `check` or `--dry-run` printed its explanation; exit with this code.
    Explained(i32),
    /// The command ran.
    Ran(Ending),
}

fn dispatch(args: Vec<OsString>, audit: &mut Audit, log: &mut log::Log) -> Result<Done> {
    let request = Request::parse(args)?;
    if let Action::Print(text) = &request.action {
        print!("{text}");
        return Ok(Done::Printed);
    }
    let caller = nix::unistd::getuid().as_raw();
    let is_root = caller == 0;
    authorize(&request, is_root)?;
    startup::self_check(is_root)?;
    sys::default_and_unblock(libc::SIGCHLD); // an ignored SIGCHLD would make waitpid fail
    let config_path = request.config.clone().unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));

    match &request.action {
        Action::Check { user, exim, exim_config } => {
            let mut out = report::Report::new(request.json);
            // Root without a user checks the installation itself; root is
            // never delivered to.
            let installation_only = is_root && user.is_none();
            let result = if installation_only {
                config::load(&config_path).and_then(|c| {
                    out.config(&c);
                    out.unknown_rollout_groups(&rollout::unknown_groups(&c.rollout, &account::Database::default())?);
                    out.capabilities();
                    Ok(())
                })
            } else {
                explain(&config_path, user.as_deref(), caller, true, &mut out).map(|_| ())
            };
            // Only root reads Exim's configuration.
            let exim_problems = if is_root { out.exim(exim.as_deref(), exim_config.as_deref()) } else { 0 };
            Ok(Done::Explained(out.finish_check(result, installation_only, exim_problems)))
        }
        Action::Deliver(spec) if request.dry_run => {
            let mut out = report::Report::new(request.json);
            let result = explain(&config_path, request.user.as_deref(), caller, false, &mut out).and_then(
                |(config, account, target)| {
                    let plan = match &target {
                        Some(target) => prepare(&config, &account, target, spec, &request.env)?,
                        None => prepare_on_host(&config, &account, spec, &request.env, is_root)?,
                    };
                    out.plan(&plan, spec);
                    Ok(())
                },
            );
            Ok(Done::Explained(out.finish(result)))
        }
        Action::Deliver(spec) => {
            let config = config::load(&config_path)?;
            log.use_socket(&config.log_socket);
            let account = account_for(request.user.as_deref(), caller, &config)?;
            audit.user = Some(account.name.clone());
            audit.uid = Some(account.uid);
            let placement = rollout::place(&config.rollout, &account, &account::Database::default())?;
            if !placement.is_contained() {
                audit.container = Some(placement.state().to_string());
                audit.if_contained = Some(survey::if_contained(&config, &account, &spec.argv()));
                let plan = prepare_on_host(&config, &account, spec, &request.env, is_root)?;
                return Ok(Done::Ran(launch::run_on_host(&plan)?));
            }
            let target = resolve::resolve(&config, &account)?;
            audit.container = Some(target.source.clone());
            audit.pid = Some(target.pid);
            let plan = prepare(&config, &account, &target, spec, &request.env)?;
            Ok(Done::Ran(launch::run(target, &plan, &mut audit.sandbox)?))
        }
        Action::Survey(opts) => {
            use std::io::IsTerminal;
            let on_terminal = std::io::stderr().is_terminal();
            let mut shown = Instant::now();
            let mut progress = |done: usize, total: usize| {
                if on_terminal && (done == total || shown.elapsed().as_millis() >= 100) {
                    shown = Instant::now();
                    eprint!("\rcagepipe survey: {done}/{total} accounts with pipes judged\x1b[K");
                    if done == total {
                        eprint!("\r\x1b[K");
                    }
                }
            };
            // A survey that cannot run is not a delivery: the reason goes to
            // the administrator, not to the mail log as a deferral.
            match config::load(&config_path).and_then(|config| survey::run(&config, opts, &mut progress)) {
                Ok(survey) => {
                    print!("{}", if request.json { survey.json() } else { survey.text() });
                    Ok(Done::Explained(if survey.needing_attention().next().is_some() { 1 } else { 0 }))
                }
                Err(e) => {
                    log::to_stderr(&e.to_string());
                    Ok(Done::Explained(e.exit_code()))
                }
            }
        }
        Action::Print(_) => unreachable!("handled above"),
    }
}

/// Who may ask for what: only root may name another user or configuration,
/// and root itself never delivers as root.
fn authorize(request: &Request, is_root: bool) -> Result<()> {
    if !is_root {
        if request.user.is_some() {
            return Err(Error::NotPermitted("--user is for root only".into()));
        }
        if request.config.is_some() {
            return Err(Error::NotPermitted("--config is for root only".into()));
        }
        if let Action::Check { user, exim, exim_config } = &request.action {
            if user.is_some() {
                return Err(Error::NotPermitted("checking another user is for root only".into()));
            }
            if exim.is_some() || exim_config.is_some() {
                return Err(Error::NotPermitted("--exim and --exim-config are for root only".into()));
            }
        }
        if matches!(request.action, Action::Survey(_)) {
            return Err(Error::NotPermitted("survey reads every user's files and is for root only".into()));
        }
    } else if matches!(request.action, Action::Deliver(_)) && request.user.is_none() {
        return Err(Error::NotPermitted("root delivers only with --user NAME; Exim never runs a pipe as root".into()));
    }
    Ok(())
}

fn account_for(user: Option<&str>, caller: u32, config: &Config) -> Result<Account> {
    let db = account::Database::default();
    let account = match user {
        Some(name) => account::lookup(&db, account::Key::Name(name))?,
        None => account::lookup(&db, account::Key::Uid(caller))?,
    };
    if account.uid == 0 || account.uid < config.min_uid {
        return Err(Error::NotPermitted(format!(
            "user {} has uid {}, below min_uid {} (system accounts are not contained)",
            account.name, account.uid, config.min_uid
        )));
    }
    Ok(account)
}

/// Resolve everything a delivery would need, recording each step in `out`.
/// An account that `[rollout]` does not contain yet has no target, unless
/// `even_uncontained` (check): then its container is resolved as if it
/// were, to show what containing it would find.
fn explain(
    config_path: &std::path::Path,
    user: Option<&str>,
    caller: u32,
    even_uncontained: bool,
    out: &mut report::Report,
) -> Result<(Config, Account, Option<resolve::Target>)> {
    let config = config::load(config_path)?;
    out.config(&config);
    let account = account_for(user, caller, &config)?;
    out.account(&account);
    let placement = rollout::place(&config.rollout, &account, &account::Database::default())?;
    out.placement(&placement, even_uncontained);
    if !placement.is_contained() && !even_uncontained {
        return Ok((config, account, None));
    }
    out.pidfile(&resolve::pidfile_of(&config, &account));
    let target = resolve::resolve(&config, &account)?;
    out.target(&target);
    let creds = resolve::credentials(&account, &target)?;
    out.credentials(&creds);
    out.capabilities();
    Ok((config, account, Some(target)))
}

/// Everything the child needs, built before anything is entered.
fn prepare(
    config: &Config,
    account: &Account,
    target: &resolve::Target,
    spec: &CommandSpec,
    by_hand: &[(OsString, OsString)],
) -> Result<Launch> {
    // --env goes through the same filter as Exim's environment; a name that
    // would be dropped is an error, not a silent surprise.
    for (name, _) in by_hand {
        if !config.pass_env.iter().any(|p| p.as_bytes() == name.as_bytes()) {
            return Err(Error::Usage(format!(
                "--env {}: cagepipe passes on only {} (and [command] pass_env)",
                name.to_string_lossy(),
                config::EXIM_ENV.join(", ")
            )));
        }
    }
    let credentials = resolve::credentials(account, target)?;
    let argv_bytes = spec.argv();
    let mut inherited: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    // Given by hand, they win over the caller's own environment.
    inherited.retain(|(k, _)| !by_hand.iter().any(|(h, _)| h == k));
    inherited.extend(by_hand.iter().cloned());
    let env_bytes = command::environment(account, config, &inherited);
    let bad = |e: std::io::Error| Error::Usage(format!("argument or environment: {e}"));
    let argv = command::to_cstrings(&argv_bytes).map_err(bad)?;
    let env = command::to_cstrings(&env_bytes).map_err(bad)?;
    let candidates = command::candidates(&argv_bytes[0], &config.command_path);
    // Exim chdirs to the home for .forward pipes and to / for alias pipes;
    // the command starts in the same place, inside. An unreadable cwd is /.
    let cwd = std::env::current_dir().map(|p| p.into_os_string().into_vec()).unwrap_or_else(|_| b"/".to_vec());
    let cwd = CString::new(cwd).unwrap_or_else(|_| CString::from(c"/"));
    Ok(Launch {
        place: launch::Place::Container,
        credentials,
        argv,
        env,
        candidates,
        cwd,
        close_range: config.features.close_range,
        clone_into_cgroup: config.features.clone_into_cgroup,
        program: log::escape(&argv_bytes[0]),
        sandbox: sandbox::plan(&config.sandbox, account, &config.path)?,
    })
}

/// An account not yet contained (`[rollout]`): the command runs on the
/// host as Exim would have run it without cagepipe. Exim's environment
/// (with `--env` on top) and cwd as they are; the program searched on
/// Exim's PATH (the transport's `path`, `/bin:/usr/bin` by default) as Exim
/// does for a pipe; the account's uid and primary gid, which `group =
/// cagepipe` replaced; and the supplementary groups Exim gave (its
/// `initgroups` setting), less cagepipe's group unless the account is a
/// member. Root trying a delivery by hand gets the account's own groups.
fn prepare_on_host(
    config: &Config,
    account: &Account,
    spec: &CommandSpec,
    by_hand: &[(OsString, OsString)],
    is_root: bool,
) -> Result<Launch> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    env.retain(|(k, _)| !by_hand.iter().any(|(h, _)| h == k));
    env.extend(by_hand.iter().cloned());
    let env_bytes: Vec<Vec<u8>> = env.iter().map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat()).collect();
    let groups = if is_root {
        account.groups.clone()
    } else {
        let ours = nix::unistd::getegid().as_raw();
        let mut given: Vec<u32> = nix::unistd::getgroups()
            .map_err(|e| Error::io("reading our supplementary groups", e.into()))?
            .into_iter()
            .map(|g| g.as_raw())
            .filter(|g| *g != ours || account.groups.contains(g))
            .collect();
        given.sort_unstable();
        given.dedup();
        given
    };
    let argv_bytes = spec.argv();
    let search = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.to_string_lossy().into_owned());
    let candidates = command::candidates(&argv_bytes[0], search.as_deref().unwrap_or(EXIM_DEFAULT_PATH));
    let bad = |e: std::io::Error| Error::Usage(format!("argument or environment: {e}"));
    Ok(Launch {
        place: launch::Place::Host,
        credentials: privileges::Credentials { uid: account.uid, gid: account.gid, groups },
        argv: command::to_cstrings(&argv_bytes).map_err(bad)?,
        env: command::to_cstrings(&env_bytes).map_err(bad)?,
        candidates,
        cwd: CString::from(c"."),
        close_range: config.features.close_range,
        clone_into_cgroup: false,
        program: log::escape(&argv_bytes[0]),
        sandbox: None,
    })
}

/// The pipe transport's default `path` option.
const EXIM_DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Die from `sig` as the command did, so that Exim logs what it would have
/// logged without cagepipe; exit 128+sig if the signal does not kill.
fn die_from_signal(sig: i32) -> ! {
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    sys::default_and_unblock(sig);
    if let Ok(s) = nix::sys::signal::Signal::try_from(sig) {
        let _ = nix::sys::signal::raise(s);
    }
    std::process::exit(128 + sig)
}
