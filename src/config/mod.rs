//! `/etc/cagepipe/cagepipe.toml`: parsed into raw structs, then validated
//! into a [`Config`] the rest of the program can take at its word.
#![forbid(unsafe_code)]

pub(crate) mod account;
pub(crate) mod rollout;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::deliver::sandbox::{self, PathTemplate, Policy};
use crate::error::{Error, Result};
use crate::platform::secure_file::{self, Untrusted};

pub(crate) const DEFAULT_PATH: &str = "/etc/cagepipe/cagepipe.toml";
const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Exim's pipe-transport variables handed to the command (shared/notes:
/// "Environment exactly"); USER, LOGNAME, HOME, SHELL and PATH are set by
/// cagepipe itself from the account and the configuration.
pub(crate) const EXIM_ENV: &[&str] = &[
    "LOCAL_PART",
    "LOCAL_PART_PREFIX",
    "LOCAL_PART_SUFFIX",
    "DOMAIN",
    "MESSAGE_ID",
    "RECIPIENT",
    "QUALIFY_DOMAIN",
    "SENDER",
    "HOST",
    "TZ",
];

// ---- raw form: exactly what the file says -------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    users: RawUsers,
    container: Option<RawContainer>,
    #[serde(default)]
    command: RawCommand,
    #[serde(default)]
    kernel: RawKernel,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    sandbox: RawSandbox,
    #[serde(default)]
    rollout: RawRollout,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollout {
    contain: Option<toml::Spanned<RawContain>>,
}

/// `contain = "all"` or `contain = ["alice", "@web"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawContain {
    Word(String),
    List(Vec<String>),
}

/// Spanned, so that a value that parses but makes no sense is reported
/// with its line and column too.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSandbox {
    landlock: Option<toml::Spanned<String>>,
    write: Option<Vec<toml::Spanned<String>>>,
    execute: Option<Vec<toml::Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsers {
    min_uid: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainer {
    backend: Option<String>,
    pidfile: Option<toml::Spanned<String>>,
    missing: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    path: Option<String>,
    pass_env: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    disable: Option<Vec<String>>,
}

// ---- validated form ------------------------------------------------------

/// What to do when the user has no running container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Exit 75: Exim keeps the message and retries.
    Defer,
    /// Exit 77: Exim bounces.
    Refuse,
}

/// Which accounts' deliveries enter a container (`[rollout] contain`).
/// The others run on the host as Exim would have run them without
/// cagepipe, so an administrator can switch `force_command` on for the
/// whole server first and contain accounts step by step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rollout {
    /// `contain = "all"` (the default): every account.
    All,
    /// `contain = [...]` (`"none"` is the empty list): these user names and
    /// members of these groups (`@name`); `line` is where the list is.
    Listed { users: Vec<String>, groups: Vec<String>, line: usize },
}

impl Rollout {
    /// The setting as written, for check and survey.
    pub(crate) fn describe(&self) -> String {
        match self {
            Rollout::All => "contain = \"all\"".into(),
            Rollout::Listed { users, groups, .. } if users.is_empty() && groups.is_empty() => {
                "contain = \"none\"".into()
            }
            Rollout::Listed { users, groups, .. } => {
                let names: Vec<String> =
                    users.iter().map(|u| format!("{u:?}")).chain(groups.iter().map(|g| format!("\"@{g}\""))).collect();
                format!("contain = [{}]", names.join(", "))
            }
        }
    }
}

/// One piece of a pidfile path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    User,
    Uid,
}

/// Where a user's container is found. Only one backend exists so far; the
/// enum is where the next (e.g. a container manager's socket) goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    /// `line`: where the template is in the configuration file.
    Pidfile { template: Vec<Piece>, line: usize },
}

/// Kernel features cagepipe may use when the kernel has them. An
/// administrator (or a test) can switch one off to force the fallback that
/// EL8's 4.18 kernel takes anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Features {
    /// pidfd_open (Linux 5.3): the container pinned by a pidfd.
    pub(crate) pidfd: bool,
    /// close_range (Linux 5.9).
    pub(crate) close_range: bool,
    /// clone3 with CLONE_INTO_CGROUP (Linux 5.7): the command is born in the
    /// container's cgroup v2 without cagepipe migrating itself, which would
    /// wait for an RCU grace period (milliseconds) on an idle server.
    pub(crate) clone_into_cgroup: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) path: PathBuf,
    pub(crate) min_uid: u32,
    pub(crate) backend: Backend,
    pub(crate) missing: Missing,
    /// PATH for the command, searched inside the container.
    pub(crate) command_path: String,
    /// Environment variables passed through from Exim.
    pub(crate) pass_env: Vec<String>,
    pub(crate) features: Features,
    /// The syslog socket (default /dev/log).
    pub(crate) log_socket: PathBuf,
    /// What the command may write and execute (`[sandbox]`).
    pub(crate) sandbox: Policy,
    /// Which accounts are contained (`[rollout]`).
    pub(crate) rollout: Rollout,
}

impl Features {
    pub(crate) const ALL: Features = Features { pidfd: true, close_range: true, clone_into_cgroup: true };
}

impl Backend {
    /// The pidfile path for a validated user name and uid.
    pub(crate) fn pidfile_path(&self, user: &str, uid: u32) -> PathBuf {
        let Backend::Pidfile { template, .. } = self;
        let mut s = String::new();
        for piece in template {
            match piece {
                Piece::Text(t) => s.push_str(t),
                Piece::User => s.push_str(user),
                Piece::Uid => s.push_str(&uid.to_string()),
            }
        }
        PathBuf::from(s)
    }

    pub(crate) fn describe(&self) -> String {
        let Backend::Pidfile { template, .. } = self;
        let mut s = String::from("pidfile ");
        for piece in template {
            match piece {
                Piece::Text(t) => s.push_str(t),
                Piece::User => s.push_str("{user}"),
                Piece::Uid => s.push_str("{uid}"),
            }
        }
        s
    }
}

/// Load and validate the configuration at `path`, refusing a file that an
/// unprivileged user could have written.
pub(crate) fn load(path: &Path) -> Result<Config> {
    let bad = |problem: String| Error::Config { path: path.to_path_buf(), problem };
    let file = secure_file::read_root_owned(path, MAX_CONFIG_BYTES).map_err(|e| match e {
        Untrusted::Missing(p) if p == path => bad("does not exist; install the example from the package".into()),
        // A failing read is not a reason to distrust the file; say what failed.
        io @ Untrusted::Io { .. } => bad(format!("cannot be read: {io}")),
        other => bad(format!("cannot be trusted: {other}; it and every directory above it must be owned by root and not writable by group or others")),
    })?;
    let text = std::str::from_utf8(&file.contents).map_err(|_| bad("is not valid UTF-8".into()))?;
    parse(text, path)
}

/// Parse and validate configuration text (separate from I/O for tests).
pub(crate) fn parse(text: &str, path: &Path) -> Result<Config> {
    let bad = |problem: String| Error::Config { path: path.to_path_buf(), problem };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        bad(format!("line {line}, column {col}: {}", e.message().trim()))
    })?;
    validate(raw, text, path).map_err(bad)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, col)
}

fn validate(raw: RawConfig, text: &str, path: &Path) -> std::result::Result<Config, String> {
    let container = raw.container.ok_or("has no [container] section")?;
    let backend = match container.backend.as_deref().unwrap_or("pidfile") {
        "pidfile" => {
            let pidfile =
                container.pidfile.ok_or("[container] backend \"pidfile\" needs a pidfile = \"...\" template")?;
            let line = line_col(text, pidfile.span().start).0;
            Backend::Pidfile { template: parse_template(pidfile.get_ref())?, line }
        }
        other => return Err(format!("[container] backend = {other:?} is not known (known: \"pidfile\")")),
    };
    let missing = match container.missing.as_deref().unwrap_or("defer") {
        "defer" => Missing::Defer,
        "refuse" => Missing::Refuse,
        other => return Err(format!("[container] missing = {other:?} must be \"defer\" or \"refuse\"")),
    };
    let command_path = raw.command.path.unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    if command_path.split(':').any(|d| !d.starts_with('/')) {
        return Err(format!("[command] path = {command_path:?}: every entry must be an absolute directory"));
    }
    let mut pass_env: Vec<String> = EXIM_ENV.iter().map(|s| s.to_string()).collect();
    for name in raw.command.pass_env.unwrap_or_default() {
        check_env_name(&name)?;
        if !pass_env.contains(&name) {
            pass_env.push(name);
        }
    }
    let mut features = Features::ALL;
    for f in raw.kernel.disable.unwrap_or_default() {
        match f.as_str() {
            "pidfd" => features.pidfd = false,
            "close_range" => features.close_range = false,
            "clone_into_cgroup" => features.clone_into_cgroup = false,
            other => {
                return Err(format!(
                "[kernel] disable: {other:?} is not known (known: \"pidfd\", \"close_range\", \"clone_into_cgroup\")"
            ))
            }
        }
    }
    let log_socket = PathBuf::from(raw.log.socket.unwrap_or_else(|| crate::log::DEFAULT_SOCKET.into()));
    if !log_socket.is_absolute() {
        return Err(format!("[log] socket = {:?} must be an absolute path", log_socket));
    }
    let sandbox = validate_sandbox(raw.sandbox, text)?;
    let rollout = validate_rollout(raw.rollout, text)?;
    Ok(Config {
        rollout,
        path: path.to_path_buf(),
        log_socket,
        sandbox,
        min_uid: raw.users.min_uid.unwrap_or(1000),
        backend,
        missing,
        command_path,
        pass_env,
        features,
    })
}

fn validate_sandbox(raw: RawSandbox, text: &str) -> std::result::Result<Policy, String> {
    let at = |span: std::ops::Range<usize>, problem: String| {
        let (line, col) = line_col(text, span.start);
        format!("line {line}, column {col}: {problem}")
    };
    let mode = match &raw.landlock {
        None => sandbox::Mode::Off,
        Some(value) => sandbox::Mode::from_name(value.get_ref()).ok_or_else(|| {
            at(value.span(), format!("[sandbox] landlock = {:?} must be {}", value.get_ref(), sandbox::Mode::NAMES))
        })?,
    };
    let paths = |list: &str, entries: Option<Vec<toml::Spanned<String>>>| {
        entries
            .unwrap_or_default()
            .into_iter()
            .map(|e| PathTemplate::parse(e.get_ref()).map_err(|p| at(e.span(), format!("[sandbox] {list}: {p}"))))
            .collect::<std::result::Result<Vec<_>, String>>()
    };
    if mode != sandbox::Mode::Off && (raw.write.is_none() || raw.execute.is_none()) {
        let span = raw.landlock.as_ref().map(|v| v.span()).unwrap_or_default();
        return Err(at(
            span,
            format!(
                "[sandbox] landlock = \"{}\" needs write = [...] and execute = [...]: \
                 the paths the command may write beneath and execute from",
                mode.name()
            ),
        ));
    }
    Ok(Policy { mode, write: paths("write", raw.write)?, execute: paths("execute", raw.execute)? })
}

fn validate_rollout(raw: RawRollout, text: &str) -> std::result::Result<Rollout, String> {
    let Some(contain) = raw.contain else { return Ok(Rollout::All) };
    let (line, col) = line_col(text, contain.span().start);
    let at = |problem: String| format!("line {line}, column {col}: [rollout] contain: {problem}");
    let names = match contain.into_inner() {
        RawContain::Word(w) if w == "all" => return Ok(Rollout::All),
        RawContain::Word(w) if w == "none" => Vec::new(),
        RawContain::Word(w) => {
            return Err(at(format!("{w:?} must be \"all\", \"none\" or a list of user names and @group names")))
        }
        RawContain::List(names) => names,
    };
    let (mut users, mut groups) = (Vec::new(), Vec::new());
    for name in names {
        // Group names follow the same rules as user names (useradd, groupadd).
        let (list, bare) = match name.strip_prefix('@') {
            Some(group) => (&mut groups, group),
            None => (&mut users, name.as_str()),
        };
        crate::config::account::check_user_name(bare).map_err(|e| at(format!("{name:?}: {e}")))?;
        if !list.iter().any(|n: &String| n == bare) {
            list.push(bare.to_string());
        }
    }
    Ok(Rollout::Listed { users, groups, line })
}

/// Names a pass-through may not carry: the dynamic loader's, the shells'
/// start-up hooks, and the ones cagepipe sets itself.
fn check_env_name(name: &str) -> std::result::Result<(), String> {
    let well_formed = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !well_formed {
        return Err(format!("[command] pass_env: {name:?} is not a variable name (A-Z, 0-9, _)"));
    }
    const FORBIDDEN: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "SHELL", "IFS", "ENV", "BASH_ENV", "CDPATH"];
    if name.starts_with("LD_") || name.starts_with("RUST_") || FORBIDDEN.contains(&name) {
        return Err(format!("[command] pass_env: {name} may not be passed through"));
    }
    Ok(())
}

fn parse_template(text: &str) -> std::result::Result<Vec<Piece>, String> {
    if !text.starts_with('/') {
        return Err(format!("[container] pidfile = {text:?} must be an absolute path"));
    }
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_string()));
        }
        let close =
            rest[open..].find('}').ok_or_else(|| format!("[container] pidfile = {text:?}: '{{' without '}}'"))?;
        pieces.push(match &rest[open + 1..open + close] {
            "user" => Piece::User,
            "uid" => Piece::Uid,
            other => {
                return Err(format!(
                    "[container] pidfile = {text:?}: unknown placeholder {{{other}}} (known: {{user}}, {{uid}})"
                ))
            }
        });
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("[container] pidfile = {text:?}: '}}' without '{{'"));
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    let literal: String =
        pieces.iter().filter_map(|p| if let Piece::Text(t) = p { Some(t.as_str()) } else { None }).collect();
    if literal.split('/').any(|c| c == "." || c == "..") || literal.contains('\0') {
        return Err(format!("[container] pidfile = {text:?} must not contain '.', '..' or NUL"));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Config {
        parse(text, Path::new("/t.toml")).unwrap()
    }
    fn err(text: &str) -> String {
        parse(text, Path::new("/t.toml")).unwrap_err().to_string()
    }

    #[test]
    fn the_documented_example_parses_with_defaults() {
        let c = ok("[users]\nmin_uid = 500\n[container]\nbackend = \"pidfile\"\npidfile = \"/run/cagepipe/{user}.pid\"\nmissing = \"refuse\"\n");
        assert_eq!(c.min_uid, 500);
        assert_eq!(c.missing, Missing::Refuse);
        assert_eq!(c.backend.pidfile_path("alice", 1001), PathBuf::from("/run/cagepipe/alice.pid"));
        let d = ok("[container]\npidfile = \"/run/c/{uid}/{user}.pid\"\n");
        assert_eq!(d.min_uid, 1000);
        assert_eq!(d.missing, Missing::Defer);
        assert_eq!(d.features, Features::ALL);
        assert_eq!(d.command_path, "/usr/local/bin:/usr/bin:/bin");
        assert_eq!(d.log_socket, PathBuf::from("/dev/log"));
        assert_eq!(d.sandbox, Policy::OFF);
        assert_eq!(d.backend.pidfile_path("bob", 1002), PathBuf::from("/run/c/1002/bob.pid"));
        assert_eq!(d.backend.describe(), "pidfile /run/c/{uid}/{user}.pid");
    }

    #[test]
    fn unknown_keys_name_key_line_and_column() {
        let e = err("[container]\npidfile = \"/run/{user}\"\n  colour = 1\n");
        assert!(e.contains("line 3, column 3"), "{e}");
        assert!(e.contains("colour"), "{e}");
        let e = err("[users]\nmin_uid = 1\n[extra]\n");
        assert!(e.contains("line 3") && e.contains("extra"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        assert!(err("").contains("no [container] section"));
        assert!(err("[container]\nbackend = \"lxc\"\npidfile=\"/x\"\n").contains("not known"));
        assert!(err("[container]\nbackend = \"pidfile\"\n").contains("needs a pidfile"));
        assert!(err("[container]\npidfile = \"run/{user}\"\n").contains("absolute"));
        assert!(err("[container]\npidfile = \"/run/{name}\"\n").contains("unknown placeholder {name}"));
        assert!(err("[container]\npidfile = \"/run/{user\"\n").contains("without"));
        assert!(err("[container]\npidfile = \"/run/user}\"\n").contains("without"));
        assert!(err("[container]\npidfile = \"/run/../{user}\"\n").contains("'..'"));
        assert!(err("[container]\npidfile = \"/x\"\nmissing = \"bounce\"\n").contains("\"defer\" or \"refuse\""));
        assert!(err("[container]\npidfile = \"/x\"\n[command]\npath = \"bin:/usr/bin\"\n").contains("absolute"));
        assert!(err("[container]\npidfile = \"/x\"\n[command]\npass_env = [\"LD_PRELOAD\"]\n").contains("may not"));
        assert!(err("[container]\npidfile = \"/x\"\n[command]\npass_env = [\"lower\"]\n").contains("not a variable"));
        assert!(err("[container]\npidfile = \"/x\"\n[kernel]\ndisable = [\"clone9\"]\n").contains("not known"));
        assert!(err("[users]\nmin_uid = -1\n[container]\npidfile = \"/x\"\n").contains("line 2"));
    }

    #[test]
    fn the_packaged_example_is_valid_and_says_the_defaults() {
        let c = ok(include_str!("../../packaging/cagepipe.toml"));
        assert_eq!(c.min_uid, 1000);
        assert_eq!(c.missing, Missing::Defer);
        assert_eq!(c.backend.describe(), "pidfile /run/cagepipe/{user}.pid");
        assert_eq!(c.features, Features::ALL);
        assert_eq!(c.pass_env.len(), EXIM_ENV.len());
        assert_eq!(c.sandbox.mode, sandbox::Mode::Off);
        let write: Vec<&str> = c.sandbox.write.iter().map(PathTemplate::as_str).collect();
        assert_eq!(write, ["{home}", "/tmp", "/dev/null"]);
        assert!(c.sandbox.execute.iter().any(|t| t.as_str() == "/usr"));
        assert_eq!(c.rollout, Rollout::All);
    }

    #[test]
    fn the_pidfile_templates_line_is_kept_for_check() {
        let c = ok("# comment\n\n[container]\nbackend = \"pidfile\"\npidfile = \"/run/c/{user}.pid\"\n");
        let Backend::Pidfile { line, .. } = c.backend;
        assert_eq!(line, 5);
    }

    #[test]
    fn kernel_features_can_be_forced_off() {
        let c = ok(
            "[container]\npidfile = \"/x\"\n[kernel]\ndisable = [\"pidfd\", \"close_range\", \"clone_into_cgroup\"]\n",
        );
        assert_eq!(c.features, Features { pidfd: false, close_range: false, clone_into_cgroup: false });
    }

    #[test]
    fn the_sandbox_section_is_validated_with_line_and_column() {
        let base = "[container]\npidfile = \"/x\"\n[sandbox]\n";
        let c = ok(&format!(
            "{base}landlock = \"required\"\nwrite = [\"{{home}}\", \"/tmp\"]\nexecute = [\"/usr\", \"{{home}}/bin\"]\n"
        ));
        assert_eq!(c.sandbox.mode, sandbox::Mode::Required);
        let shown: Vec<&str> = c.sandbox.write.iter().map(PathTemplate::as_str).collect();
        assert_eq!(shown, ["{home}", "/tmp"]);
        assert_eq!(c.sandbox.execute.len(), 2);
        assert_eq!(ok(&format!("{base}landlock = \"best-effort\"\nwrite = []\nexecute = [\"/\"]\n")).sandbox.mode, {
            sandbox::Mode::BestEffort
        });
        // Off needs no paths; listed ones are still checked.
        assert_eq!(ok(&format!("{base}landlock = \"off\"\n")).sandbox, Policy::OFF);
        assert!(err(&format!("{base}write = [\"tmp\"]\n")).contains("line 4, column 10: [sandbox] write"));

        let e = err(&format!("{base}landlock = \"maybe\"\n"));
        assert!(e.contains("line 4, column 12") && e.contains("\"off\", \"best-effort\" or \"required\""), "{e}");
        let e = err(&format!("{base}landlock = \"required\"\nwrite = [\"/tmp\"]\n"));
        assert!(e.contains("line 4, column 12") && e.contains("needs write = [...] and execute = [...]"), "{e}");
        let e =
            err(&format!("{base}landlock = \"required\"\nwrite = [\"/tmp\"]\nexecute = [\"/usr\",\n  \"usr/bin\"]\n"));
        assert!(e.contains("line 7, column 3: [sandbox] execute: \"usr/bin\" must be an absolute path"), "{e}");
        let e = err(&format!("{base}landlock = \"required\"\nwrite = [\"{{home}}/../x\"]\nexecute = []\n"));
        assert!(e.contains("line 5, column 10") && e.contains("'..'"), "{e}");
        let e = err(&format!("{base}landlock = \"off\"\nread = [\"/\"]\n"));
        assert!(e.contains("line 5, column 1") && e.contains("read"), "{e}");
        let e = err(&format!("{base}landlock = true\n"));
        assert!(e.contains("line 4, column 12"), "{e}");
    }

    #[test]
    fn rollout_contains_all_by_default_or_the_listed_users_and_groups() {
        let base = "[container]\npidfile = \"/x\"\n";
        assert_eq!(ok(base).rollout, Rollout::All);
        assert_eq!(ok(&format!("{base}[rollout]\ncontain = \"all\"\n")).rollout, Rollout::All);
        let none = ok(&format!("{base}[rollout]\ncontain = \"none\"\n")).rollout;
        assert_eq!(none, Rollout::Listed { users: vec![], groups: vec![], line: 4 });
        assert_eq!(none.describe(), "contain = \"none\"");
        let c = ok(&format!("{base}[rollout]\n\ncontain = [\"alice\", \"@web\", \"bob\", \"alice\"]\n"));
        assert_eq!(
            c.rollout,
            Rollout::Listed { users: vec!["alice".into(), "bob".into()], groups: vec!["web".into()], line: 5 }
        );
        assert_eq!(c.rollout.describe(), "contain = [\"alice\", \"bob\", \"@web\"]");
        let e = err(&format!("{base}[rollout]\ncontain = \"some\"\n"));
        assert!(e.contains("line 4, column 11: [rollout] contain: \"some\" must be"), "{e}");
        let e = err(&format!("{base}[rollout]\ncontain = [\"alice\", \"../x\"]\n"));
        assert!(e.contains("line 4") && e.contains("\"../x\""), "{e}");
        assert!(err(&format!("{base}[rollout]\ncontain = [\"@\"]\n")).contains("[rollout] contain"));
        assert!(err(&format!("{base}[rollout]\ncontain = 1\n")).contains("line 4"));
        assert!(err(&format!("{base}[rollout]\ncontained = \"all\"\n")).contains("contained"));
    }

    #[test]
    fn pass_env_extends_the_exim_list() {
        let c = ok("[container]\npidfile = \"/x\"\n[command]\npass_env = [\"ORIGINAL_DOMAIN\", \"SENDER\"]\n");
        assert!(c.pass_env.iter().any(|n| n == "ORIGINAL_DOMAIN"));
        assert_eq!(c.pass_env.iter().filter(|n| *n == "SENDER").count(), 1);
    }
}
