#![deny(unsafe_code)]
//! cagepipe: run a mail pipe delivery inside its owner's running container.
//!
//! The layers, each a folder (ARCHITECTURE.md has the whole picture):
//! [`cli`] and `config` turn the command line and the configuration into
//! validated values; `deliver` is the privileged pipeline (decide, then
//! act); `admin` holds the administrator's tools, which use the pipeline
//! but are never on it; [`parse`] holds the pure parsers of untrusted text;
//! `platform` is the only code with `unsafe` or direct system calls. This
//! file parses the request, runs the pipeline or a tool, and turns the
//! result into the one exit status Exim reads.

pub mod cli;
pub mod error;
pub mod parse;

mod admin;
mod config;
mod deliver;
mod escape;
mod log;
mod platform;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Instant;

use admin::check::Report;
use cli::{Action, Request};
use config::account::Account;
use config::rollout::Placement;
use config::Config;
use deliver::plan::Caller;
use deliver::resolve::Target;
use deliver::{startup, Purpose, Witness};
use error::{Error, Result};
use platform::kernel::{Ending, Linux};
use platform::process;
use platform::sys::CapSets;

/// Running out of memory defers (75) rather than aborting.
#[global_allocator]
static ALLOCATOR: platform::alloc::DeferOnExhaustion = platform::alloc::DeferOnExhaustion;

/// How the process should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exit(i32),
    /// Die from this signal, as the command did.
    Signal(i32),
}

/// The configuration parser, for the fuzz target: `Ok` or the error a
/// delivery would report.
pub fn parse_config(text: &str, path: &std::path::Path) -> Result<()> {
    config::parse(text, path).map(drop)
}

/// The program: run with the process's arguments and end as [`run`] says.
pub fn main() -> ! {
    platform::sys::no_fast_bins();
    // As the standard library's start-up would (main.rs bypasses it): a
    // write to a closed pipe is an error, not death by SIGPIPE.
    platform::sys::block_sigpipe();
    // A bug in cagepipe must not bounce mail: report it and defer (75).
    std::panic::set_hook(Box::new(|info| {
        log::to_stderr(&format!("internal error: {info}"));
        platform::sys::exit_now(error::exit::TEMPFAIL);
    }));
    match run(std::env::args_os().collect()) {
        Outcome::Exit(code) => std::process::exit(code),
        Outcome::Signal(sig) => process::die_from_signal(sig),
    }
}

/// What the audit line says about a delivery, filled in by the pipeline as
/// it learns it, and where it goes.
struct Audit {
    /// Connected at start-up, and again to the configured socket as soon as
    /// the configuration is read: before any namespace is entered.
    log: log::Log,
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

impl Witness for Audit {
    fn config(&mut self, config: &Config) {
        self.log.use_socket(&config.log_socket);
    }
    fn account(&mut self, account: &Account) {
        self.user = Some(account.name.clone());
        self.uid = Some(account.uid);
    }
    fn placement(&mut self, placement: &Placement, _resolving_anyway: bool) {
        if !placement.is_contained() {
            self.container = Some(placement.state().to_string());
        }
    }
    fn target(&mut self, target: &Target) {
        self.container = Some(target.source.clone());
        self.pid = Some(target.pid);
    }
    fn if_contained(&mut self, verdict: &'static str) {
        self.if_contained = Some(verdict);
    }
}

impl Audit {
    fn line(&self, text: &str, started: Instant) -> String {
        let mut line = String::new();
        if let Some(u) = &self.user {
            line.push_str(&format!("user={} ", log::field(u)));
        }
        if let Some(uid) = self.uid {
            line.push_str(&format!("uid={uid} "));
        }
        if let Some(c) = &self.container {
            line.push_str(&format!("container={} ", log::field(c)));
        }
        if let Some(pid) = self.pid {
            line.push_str(&format!("pid={pid} "));
        }
        if let Some(s) = &self.sandbox {
            line.push_str(&format!("sandbox={} ", log::field(s)));
        }
        if let Some(s) = self.if_contained {
            line.push_str(&format!("if_contained={s} "));
        }
        line.push_str(text);
        line.push_str(&format!(" duration_ms={:.1}", started.elapsed().as_secs_f64() * 1000.0));
        line
    }
}

/// Run cagepipe with these arguments (argv[0] included).
pub fn run(args: Vec<OsString>) -> Outcome {
    let started = Instant::now();
    if startup::ensure_std_fds().is_err() {
        return Outcome::Exit(error::exit::TEMPFAIL);
    }
    let closed = startup::close_inherited_fds();
    let mut audit = Audit {
        log: log::Log::open(),
        user: None,
        uid: None,
        container: None,
        pid: None,
        sandbox: None,
        if_contained: None,
    };
    let result = closed.and_then(|()| dispatch(args, &mut audit));
    let (outcome, severity, text, ok) = match &result {
        Ok(Done::Finished(code)) => return Outcome::Exit(*code),
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
    // Without syslog the audit line goes to stderr for a failed delivery,
    // unless the sentence above already said why: one line is enough.
    let said_why = result.is_err();
    audit.log.audit(severity, &audit.line(&text, started), ok || said_why);
    outcome
}

enum Done {
    /// Help or version text, a report or a survey was printed; exit with
    /// this code (decided by [`error::Finding`] or the error shown).
    Finished(i32),
    /// The command ran.
    Ran(Ending),
}

fn dispatch(args: Vec<OsString>, audit: &mut Audit) -> Result<Done> {
    let request = Request::parse(args)?;
    if let Action::Print(text) = &request.action {
        print!("{text}");
        return Ok(Done::Finished(0));
    }
    let status = startup::own_status()?;
    if let Some(&pid) = status.ns_pid.last() {
        audit.log.know_pid(pid as u32);
    }
    let is_root = status.uid[0] == 0;
    authorize(&request, is_root)?;
    let started = startup::self_check(&status, is_root)?;
    let config_path = request.config.clone().unwrap_or_else(deliver::default_config);
    let caller = caller(started, &request);
    let k = &mut Linux::knowing_caps(CapSets {
        effective: status.cap_eff,
        permitted: status.cap_prm,
        inheritable: status.cap_inh,
    });

    match &request.action {
        Action::Deliver(spec) => {
            let pipeline = deliver::Request {
                purpose: if request.dry_run { Purpose::DryRun } else { Purpose::Deliver },
                config: &config_path,
                user: request.user.as_deref(),
                argv: Some(spec.argv()),
                caller: &caller,
            };
            if request.dry_run {
                let mut out = Report::new(request.json);
                let result = deliver::prepare(k, &pipeline, &mut out);
                return Ok(Done::Finished(out.finish(result.map(drop))));
            }
            let (sandbox, ending) = deliver::deliver(k, &pipeline, audit);
            audit.sandbox = sandbox;
            Ok(Done::Ran(ending?))
        }
        Action::Check { user, exim, exim_config } => {
            let mut out = Report::new(request.json);
            // Root without a user checks the installation itself; root is
            // never delivered to.
            let installation_only = is_root && user.is_none();
            let result = if installation_only {
                admin::check::installation(&config_path, &mut out)
            } else {
                let pipeline = deliver::Request {
                    purpose: Purpose::Check,
                    config: &config_path,
                    user: user.as_deref(),
                    argv: None,
                    caller: &caller,
                };
                deliver::prepare(k, &pipeline, &mut out).map(drop)
            };
            // Only root reads Exim's configuration.
            let exim_problems = if is_root { out.exim(exim.as_deref(), exim_config.as_deref()) } else { 0 };
            Ok(Done::Finished(out.finish_check(result, installation_only, exim_problems)))
        }
        Action::Survey(opts) => Ok(Done::Finished(admin::survey::run_and_print(&config_path, opts, request.json))),
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

/// What the plan takes from the calling process: its ids (as start-up
/// read them), Exim's environment with `--env` on top (given by hand, they
/// win), and the directory Exim started cagepipe in (an unreadable one
/// counts as `/`).
fn caller(started: startup::Caller, request: &Request) -> Caller {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    env.retain(|(k, _)| !request.env.iter().any(|(h, _)| h == k));
    env.extend(request.env.iter().cloned());
    let cwd = std::env::current_dir().map(|p| p.into_os_string().into_vec()).unwrap_or_else(|_| b"/".to_vec());
    Caller {
        uid: started.uid,
        is_root: started.uid == 0,
        egid: started.egid,
        groups: started.groups,
        env,
        by_hand: request.env.clone(),
        cwd,
    }
}

/// The layers, as ARCHITECTURE.md states them, checked on the source: what
/// the compiler's visibility rules cannot say.
#[cfg(test)]
mod layers {
    use std::path::{Path, PathBuf};

    /// Every source file below `dir`, with its production code (unit
    /// tests, which may use the kernel directly, cut off).
    fn sources(dir: &str) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        if dir.is_empty() {
            return root_files();
        }
        let mut todo = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir)];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    todo.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let code = text.split("\n#[cfg(test)]\nmod ").next().unwrap().to_string();
                    out.push((path, code));
                }
            }
        }
        assert!(!out.is_empty(), "no sources below src/{dir}");
        out
    }

    /// Lines that use a path starting with one of `words` (`nix::` but not
    /// `unix::`), comments aside.
    fn offenders(dir: &str, words: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        for (path, code) in sources(dir) {
            for (n, line) in code.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for w in words {
                    let hit = code
                        .match_indices(w)
                        .any(|(i, _)| !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':'));
                    if hit {
                        found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
        found
    }

    fn root_files() -> Vec<(PathBuf, String)> {
        ["lib.rs", "error.rs", "escape.rs", "log.rs", "main.rs"]
            .iter()
            .map(|f| {
                let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(f);
                let text = std::fs::read_to_string(&path).unwrap();
                (path, text.split("\n#[cfg(test)]\nmod ").next().unwrap().to_string())
            })
            .collect()
    }

    #[test]
    fn only_the_platform_layer_calls_the_kernel_directly() {
        for dir in ["", "admin", "cli", "config", "deliver", "parse"] {
            let found = offenders(dir, &["nix::", "libc::"]);
            assert!(found.is_empty(), "nix or libc outside src/platform:\n{}", found.join("\n"));
        }
    }

    #[test]
    fn nothing_on_the_delivery_path_depends_on_the_admin_tools() {
        for dir in ["deliver", "platform", "config", "parse"] {
            let found = offenders(dir, &["crate::admin", "admin::"]);
            assert!(found.is_empty(), "src/{dir} uses the admin tools:\n{}", found.join("\n"));
        }
    }

    #[test]
    fn the_parsers_do_no_io() {
        let found = offenders("parse", &["std::fs", "std::io::Read", "std::net", "crate::platform", "crate::deliver"]);
        assert!(found.is_empty(), "src/parse must stay pure:\n{}", found.join("\n"));
    }
}
