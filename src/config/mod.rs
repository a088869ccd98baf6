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
    backend: Option<toml::Spanned<RawBackend>>,
    pidfile: Option<toml::Spanned<String>>,
    /// OCI state roots (runc, crun, youki).
    state: Option<toml::Spanned<Vec<toml::Spanned<String>>>>,
    /// The OCI container id.
    id: Option<toml::Spanned<String>>,
    /// The container (or machine) name: docker, podman, lxc, machined.
    name: Option<toml::Spanned<String>>,
    /// A cgroup below the hierarchies' roots.
    cgroup: Option<toml::Spanned<String>>,
    docker_root: Option<toml::Spanned<String>>,
    podman_root: Option<toml::Spanned<String>>,
    missing: Option<String>,
}

/// `backend = "docker"` or `backend = ["docker", "lxc"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawBackend {
    One(String),
    List(Vec<String>),
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

/// One piece of a template: literal text, the account's name or uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    User,
    Uid,
}

/// A template from the configuration: a pidfile path, a container name or
/// id, a cgroup. Only the account's own name and uid are substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) pieces: Vec<Piece>,
    /// Where it is in the configuration file (0: the default).
    pub(crate) line: usize,
}

impl Template {
    pub(crate) fn expand(&self, user: &str, uid: u32) -> String {
        let mut s = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => s.push_str(t),
                Piece::User => s.push_str(user),
                Piece::Uid => s.push_str(&uid.to_string()),
            }
        }
        s
    }

    /// As written, with its placeholders.
    pub(crate) fn text(&self) -> String {
        let mut s = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => s.push_str(t),
                Piece::User => s.push_str("{user}"),
                Piece::Uid => s.push_str("{uid}"),
            }
        }
        s
    }
}

/// How a user's container is found: one engine's own root-owned state,
/// read as files (never its tool or daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    /// A root-owned pidfile the hoster's tooling writes.
    Pidfile { template: Template },
    /// OCI runtime state (runc `state.json`, crun `status`, youki
    /// `state.json`) below one of `roots`, container `id`.
    Oci { roots: Vec<PathBuf>, id: Template },
    /// Docker: the container named `name` in `root`/containers, its runc
    /// state in /run/docker/runtime-runc/moby.
    Docker { name: Template, root: PathBuf },
    /// Rootful Podman: `name` in `root`'s containers.json.
    Podman { name: Template, root: PathBuf, oci_roots: Vec<PathBuf> },
    /// LXC, LXD, Incus: the init of the cgroup `lxc.payload.<name>`.
    Lxc { name: Template },
    /// systemd-nspawn registered with machined: /run/systemd/machines/<name>.
    Machined { name: Template },
    /// Any manager: the init of a cgroup (`machine.slice/{user}.scope`).
    Cgroup { cgroup: Template },
}

/// The OCI state roots looked in by default: runc's and crun's.
pub(crate) const OCI_STATE_ROOTS: &[&str] = &["/run/runc", "/run/crun"];
pub(crate) const DOCKER_ROOT: &str = "/var/lib/docker";
pub(crate) const PODMAN_ROOT: &str = "/var/lib/containers/storage";
pub(crate) const BACKEND_NAMES: &str =
    "\"oci\", \"docker\", \"podman\", \"lxc\", \"machined\", \"cgroup\" or \"pidfile\"";

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
    /// clone3 with CLONE_VM|CLONE_VFORK (Linux 5.3, x86_64): the command's
    /// process runs on cagepipe's memory until its exec instead of a copy
    /// of it: no page tables copied, no copy-on-write faults.
    pub(crate) clone_vm: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) path: PathBuf,
    pub(crate) min_uid: u32,
    /// Tried in order: the first that has a container for the account
    /// decides.
    pub(crate) backends: Vec<Backend>,
    /// Where `backend` is in the file (0: not given, "pidfile").
    pub(crate) backend_line: usize,
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
    pub(crate) const ALL: Features =
        Features { pidfd: true, close_range: true, clone_into_cgroup: true, clone_vm: true };

    /// Each feature's name in `[kernel] disable`, and whether it is used.
    pub(crate) fn named(&self) -> [(&'static str, bool); 4] {
        [
            ("pidfd", self.pidfd),
            ("close_range", self.close_range),
            ("clone_into_cgroup", self.clone_into_cgroup),
            ("clone_vm", self.clone_vm),
        ]
    }
}

impl Backend {
    /// The engine's name, as `backend =` spells it.
    pub(crate) fn engine(&self) -> &'static str {
        match self {
            Backend::Pidfile { .. } => "pidfile",
            Backend::Oci { .. } => "oci",
            Backend::Docker { .. } => "docker",
            Backend::Podman { .. } => "podman",
            Backend::Lxc { .. } => "lxc",
            Backend::Machined { .. } => "machined",
            Backend::Cgroup { .. } => "cgroup",
        }
    }

    /// The setting as written: `docker name = "{user}"`.
    pub(crate) fn describe(&self) -> String {
        let roots = |r: &[PathBuf]| r.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        match self {
            Backend::Pidfile { template } => format!("pidfile {}", template.text()),
            Backend::Oci { roots: r, id } => format!("oci id {:?} in {}", id.text(), roots(r)),
            Backend::Docker { name, root } => format!("docker name {:?} in {}", name.text(), root.display()),
            Backend::Podman { name, root, .. } => format!("podman name {:?} in {}", name.text(), root.display()),
            Backend::Lxc { name } => format!("lxc name {:?}", name.text()),
            Backend::Machined { name } => format!("machined name {:?}", name.text()),
            Backend::Cgroup { cgroup } => format!("cgroup {}", cgroup.text()),
        }
    }

    /// The line of its main template (0: a default).
    pub(crate) fn line(&self) -> usize {
        match self {
            Backend::Pidfile { template } | Backend::Cgroup { cgroup: template } => template.line,
            Backend::Oci { id: t, .. }
            | Backend::Docker { name: t, .. }
            | Backend::Podman { name: t, .. }
            | Backend::Lxc { name: t }
            | Backend::Machined { name: t } => t.line,
        }
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
    let (backends, backend_line) = validate_backends(&container, text)?;
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
            "clone_vm" => features.clone_vm = false,
            other => {
                let known: Vec<String> = Features::ALL.named().iter().map(|(n, _)| format!("{n:?}")).collect();
                return Err(format!("[kernel] disable: {other:?} is not known (known: {})", known.join(", ")));
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
        backends,
        backend_line,
        missing,
        command_path,
        pass_env,
        features,
    })
}

/// What a template names, for its rules.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TemplateKind {
    /// An absolute file path (pidfile).
    Path,
    /// One path component: a container name or id.
    Name,
    /// A cgroup path below the hierarchies' roots.
    Cgroup,
}

/// `[container]`: one backend or a list, each with the keys it reads; a
/// key no listed backend reads is an error at its line and column.
fn validate_backends(c: &RawContainer, text: &str) -> std::result::Result<(Vec<Backend>, usize), String> {
    let at = |span: std::ops::Range<usize>, problem: String| {
        let (line, col) = line_col(text, span.start);
        format!("line {line}, column {col}: {problem}")
    };
    let (names, backend_line) = match &c.backend {
        None => (vec!["pidfile".to_string()], 0),
        Some(b) => {
            let line = line_col(text, b.span().start).0;
            match b.get_ref() {
                RawBackend::One(n) => (vec![n.clone()], line),
                RawBackend::List(l) if l.is_empty() => {
                    return Err(at(b.span(), "[container] backend = [] names no backend".into()))
                }
                RawBackend::List(l) => (l.clone(), line),
            }
        }
    };
    let span = c.backend.as_ref().map(|b| b.span()).unwrap_or_default();
    let template = |key: &str, value: &Option<toml::Spanned<String>>, default: Option<&str>, kind| match value {
        Some(v) => {
            let line = line_col(text, v.span().start).0;
            parse_template(v.get_ref(), key, kind).map(|pieces| Template { pieces, line }).map_err(|e| at(v.span(), e))
        }
        None => match default {
            Some(d) => parse_template(d, key, kind).map(|pieces| Template { pieces, line: 0 }),
            None => Err(at(span.clone(), format!("[container] backend {:?} needs {key} = \"...\"", names.join(", ")))),
        },
    };
    let dir = |key: &str, value: &Option<toml::Spanned<String>>, default: &str| match value {
        Some(v) if !v.get_ref().starts_with('/') || v.get_ref().split('/').any(|c| c == "." || c == "..") => Err(at(
            v.span(),
            format!("[container] {key} = {:?} must be an absolute path without '.' or '..'", v.get_ref()),
        )),
        Some(v) => Ok(PathBuf::from(v.get_ref())),
        None => Ok(PathBuf::from(default)),
    };
    let oci_roots = || -> std::result::Result<Vec<PathBuf>, String> {
        match &c.state {
            None => Ok(OCI_STATE_ROOTS.iter().map(PathBuf::from).collect()),
            Some(list) if list.get_ref().is_empty() => {
                Err(at(list.span(), "[container] state = [] names no state directory".into()))
            }
            Some(list) => list.get_ref().iter().map(|v| dir("state", &Some(v.clone()), "")).collect(),
        }
    };
    let mut used: Vec<&str> = Vec::new();
    let mut backends = Vec::new();
    for name in &names {
        let backend = match name.as_str() {
            "pidfile" => {
                used.push("pidfile");
                Backend::Pidfile {
                    template: template("pidfile", &c.pidfile, None, TemplateKind::Path).map_err(|e| {
                        if c.pidfile.is_none() {
                            "[container] backend \"pidfile\" needs a pidfile = \"...\" template".to_string()
                        } else {
                            e
                        }
                    })?,
                }
            }
            "oci" => {
                used.extend(["state", "id"]);
                Backend::Oci { roots: oci_roots()?, id: template("id", &c.id, Some("{user}"), TemplateKind::Name)? }
            }
            "docker" => {
                used.extend(["name", "docker_root"]);
                Backend::Docker {
                    name: template("name", &c.name, Some("{user}"), TemplateKind::Name)?,
                    root: dir("docker_root", &c.docker_root, DOCKER_ROOT)?,
                }
            }
            "podman" => {
                used.extend(["name", "podman_root", "state"]);
                Backend::Podman {
                    name: template("name", &c.name, Some("{user}"), TemplateKind::Name)?,
                    root: dir("podman_root", &c.podman_root, PODMAN_ROOT)?,
                    oci_roots: oci_roots()?,
                }
            }
            "lxc" => {
                used.push("name");
                Backend::Lxc { name: template("name", &c.name, Some("{user}"), TemplateKind::Name)? }
            }
            "machined" => {
                used.push("name");
                Backend::Machined { name: template("name", &c.name, Some("{user}"), TemplateKind::Name)? }
            }
            "cgroup" => {
                used.push("cgroup");
                Backend::Cgroup { cgroup: template("cgroup", &c.cgroup, None, TemplateKind::Cgroup)? }
            }
            other => {
                return Err(at(span, format!("[container] backend = {other:?} is not known (known: {BACKEND_NAMES})")))
            }
        };
        if backends.iter().any(|b: &Backend| b.engine() == backend.engine()) {
            return Err(at(span, format!("[container] backend lists {name:?} twice")));
        }
        backends.push(backend);
    }
    let given = [
        ("pidfile", c.pidfile.as_ref().map(|v| v.span())),
        ("state", c.state.as_ref().map(|v| v.span())),
        ("id", c.id.as_ref().map(|v| v.span())),
        ("name", c.name.as_ref().map(|v| v.span())),
        ("cgroup", c.cgroup.as_ref().map(|v| v.span())),
        ("docker_root", c.docker_root.as_ref().map(|v| v.span())),
        ("podman_root", c.podman_root.as_ref().map(|v| v.span())),
    ];
    for (key, span) in given {
        if let Some(span) = span {
            if !used.contains(&key) {
                return Err(at(
                    span,
                    format!(
                        "[container] {key} is not read by backend {:?}; remove it or add the backend that reads it",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    Ok((backends, backend_line))
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

fn parse_template(text: &str, key: &str, kind: TemplateKind) -> std::result::Result<Vec<Piece>, String> {
    let shown = format!("[container] {key} = {text:?}");
    match kind {
        TemplateKind::Path if !text.starts_with('/') => return Err(format!("{shown} must be an absolute path")),
        TemplateKind::Name | TemplateKind::Cgroup if text.is_empty() => return Err(format!("{shown} is empty")),
        _ => {}
    }
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_string()));
        }
        let close = rest[open..].find('}').ok_or_else(|| format!("{shown}: '{{' without '}}'"))?;
        pieces.push(match &rest[open + 1..open + close] {
            "user" => Piece::User,
            "uid" => Piece::Uid,
            other => return Err(format!("{shown}: unknown placeholder {{{other}}} (known: {{user}}, {{uid}})")),
        });
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("{shown}: '}}' without '{{'"));
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    let literal: String =
        pieces.iter().filter_map(|p| if let Piece::Text(t) = p { Some(t.as_str()) } else { None }).collect();
    match kind {
        TemplateKind::Path | TemplateKind::Cgroup => {
            if literal.split('/').any(|c| c == "." || c == "..") || literal.contains('\0') {
                return Err(format!("{shown} must not contain '.', '..' or NUL"));
            }
        }
        TemplateKind::Name => {
            if !literal.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
                return Err(format!("{shown} may contain only letters, digits, '_', '.', '-' and placeholders"));
            }
        }
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
        assert_eq!(c.backends.len(), 1);
        let Backend::Pidfile { template } = &c.backends[0] else { panic!("{:?}", c.backends) };
        assert_eq!(template.expand("alice", 1001), "/run/cagepipe/alice.pid");
        let d = ok("[container]\npidfile = \"/run/c/{uid}/{user}.pid\"\n");
        assert_eq!(d.min_uid, 1000);
        assert_eq!(d.missing, Missing::Defer);
        assert_eq!(d.features, Features::ALL);
        assert_eq!(d.command_path, "/usr/local/bin:/usr/bin:/bin");
        assert_eq!(d.log_socket, PathBuf::from("/dev/log"));
        assert_eq!(d.sandbox, Policy::OFF);
        let Backend::Pidfile { template } = &d.backends[0] else { panic!("{:?}", d.backends) };
        assert_eq!(template.expand("bob", 1002), "/run/c/1002/bob.pid");
        assert_eq!(d.backends[0].describe(), "pidfile /run/c/{uid}/{user}.pid");
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
        assert!(err("[container]\nbackend = \"lxd\"\n").contains("not known"));
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
        assert_eq!(c.backends[0].describe(), "pidfile /run/cagepipe/{user}.pid");
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
        assert_eq!(c.backends[0].line(), 5);
        assert_eq!(c.backend_line, 4);
    }

    #[test]
    fn each_engine_has_a_backend_with_its_keys_and_defaults() {
        let one = |text: &str| ok(&format!("[container]\n{text}\n")).backends;
        assert_eq!(
            one("backend = \"oci\""),
            [Backend::Oci {
                roots: vec![PathBuf::from("/run/runc"), PathBuf::from("/run/crun")],
                id: Template { pieces: vec![Piece::User], line: 0 }
            }]
        );
        let b = one("backend = \"oci\"\nstate = [\"/run/youki\"]\nid = \"ct-{uid}\"");
        assert_eq!(b[0].describe(), "oci id \"ct-{uid}\" in /run/youki");
        assert_eq!(one("backend = \"docker\"")[0].describe(), "docker name \"{user}\" in /var/lib/docker");
        let b = one("backend = \"docker\"\nname = \"mail-{user}\"\ndocker_root = \"/srv/docker\"");
        assert_eq!(b[0].describe(), "docker name \"mail-{user}\" in /srv/docker");
        assert_eq!(b[0].line(), 3);
        assert_eq!(one("backend = \"podman\"")[0].engine(), "podman");
        assert_eq!(one("backend = \"lxc\"")[0].describe(), "lxc name \"{user}\"");
        assert_eq!(one("backend = \"machined\"")[0].describe(), "machined name \"{user}\"");
        let b = one("backend = \"cgroup\"\ncgroup = \"machine.slice/{user}.scope\"");
        assert_eq!(b[0].describe(), "cgroup machine.slice/{user}.scope");
        // A list, tried in order.
        let b = one("backend = [\"docker\", \"lxc\", \"pidfile\"]\npidfile = \"/run/c/{user}.pid\"");
        let engines: Vec<&str> = b.iter().map(Backend::engine).collect();
        assert_eq!(engines, ["docker", "lxc", "pidfile"]);
    }

    #[test]
    fn engine_keys_are_checked_with_line_and_column() {
        let e = err("[container]\nbackend = \"docker\"\ncgroup = \"x\"\n");
        assert!(e.contains("line 3, column 10: [container] cgroup is not read by backend \"docker\""), "{e}");
        let e = err("[container]\nbackend = \"docker\"\nname = \"a/{user}\"\n");
        assert!(e.contains("line 3, column 8") && e.contains("only letters"), "{e}");
        let e = err("[container]\nbackend = \"docker\"\nname = \"{name}\"\n");
        assert!(e.contains("unknown placeholder {name}"), "{e}");
        let e = err("[container]\nbackend = \"cgroup\"\n");
        assert!(e.contains("line 2, column 11") && e.contains("needs cgroup"), "{e}");
        let e = err("[container]\nbackend = \"cgroup\"\ncgroup = \"a/../{user}\"\n");
        assert!(e.contains("'..'"), "{e}");
        let e = err("[container]\nbackend = [\"lxc\", \"lxc\"]\n");
        assert!(e.contains("twice"), "{e}");
        let e = err("[container]\nbackend = []\n");
        assert!(e.contains("names no backend"), "{e}");
        let e = err("[container]\nbackend = \"oci\"\nstate = [\"/run/runc\", \"run/crun\"]\n");
        assert!(e.contains("line 3, column 23") && e.contains("absolute"), "{e}");
        let e = err("[container]\nbackend = \"docker\"\nnmae = \"x\"\n");
        assert!(e.contains("line 3") && e.contains("nmae"), "{e}");
        let e = err("[container]\nbackend = \"vz\"\n");
        assert!(e.contains("line 2, column 11") && e.contains("\"oci\", \"docker\""), "{e}");
    }

    #[test]
    fn kernel_features_can_be_forced_off() {
        let c = ok(
            "[container]\npidfile = \"/x\"\n[kernel]\ndisable = [\"pidfd\", \"close_range\", \"clone_into_cgroup\", \"clone_vm\"]\n",
        );
        assert_eq!(
            c.features,
            Features { pidfd: false, close_range: false, clone_into_cgroup: false, clone_vm: false }
        );
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
