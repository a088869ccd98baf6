//! The one fixture most tests start from: a test account, a running
//! container it lives in (its pidfile where the configuration looks), and a
//! cagepipe configuration of its own, optionally with a syslog catcher.
//!
//! ```ignore
//! let s = rig::cage("basic").config("[kernel]\n...").syslog().container(|o| o.userns = true).start();
//! ```

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use super::accounts::{test_user, User};
use super::cagepipe::{cagepipe_gid, command, command_via, deliver, env_refs, exim_env, Caller, ConfigDir, Delivery};
use super::container::{unique_name, Container, ContainerOpts};
use super::probe::Marker;
use super::syslog::Syslog;

/// A change to how a cage's container is started.
type Tweak = Box<dyn FnOnce(&mut ContainerOpts, &User)>;

/// How to build a [`Cage`]; see [`cage`].
pub struct CageBuilder {
    tag: String,
    extra: String,
    syslog: bool,
    start: bool,
    piddir: Option<PathBuf>,
    tweaks: Vec<Tweak>,
}

/// A cage for the test account `cptest-TAG` (at most 32 characters), with a
/// container named after `tag`.
pub fn cage(tag: &str) -> CageBuilder {
    CageBuilder {
        tag: tag.to_owned(),
        extra: String::new(),
        syslog: false,
        start: true,
        piddir: None,
        tweaks: Vec::new(),
    }
}

impl CageBuilder {
    /// Configuration after the `[container]` section (and `[log]`, with
    /// [`CageBuilder::syslog`]).
    pub fn config(mut self, extra: &str) -> Self {
        self.extra = extra.to_owned();
        self
    }

    /// Audit lines go to a [`Syslog`] of the cage's own (`[log]`, lines 3-4).
    pub fn syslog(mut self) -> Self {
        self.syslog = true;
        self
    }

    /// Change how the container is started: by default the account lives
    /// in it and its pidfile is where the configuration looks.
    pub fn container(mut self, tweak: impl FnOnce(&mut ContainerOpts, &User) + 'static) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// Pidfiles in `dir` (root-owned), which other cages may share, instead
    /// of a directory of the cage's own.
    pub fn piddir(mut self, dir: &std::path::Path) -> Self {
        self.piddir = Some(dir.to_owned());
        self
    }

    /// No container yet ([`Cage::start_container`] starts it).
    pub fn stopped(mut self) -> Self {
        self.start = false;
        self
    }

    pub fn start(self) -> Cage {
        let user = test_user(&format!("cptest-{}", self.tag));
        let syslog = self.syslog.then(Syslog::new);
        let log = syslog.as_ref().map(Syslog::config).unwrap_or_default();
        let extra = format!("{log}{}", self.extra);
        let (config, piddir) = match self.piddir {
            Some(dir) => (ConfigDir::with_pidfile_template(&dir, &extra), dir),
            None => ConfigDir::with_pidfile_dir(&extra),
        };
        let pidfile = piddir.join(format!("{}.pid", user.name));
        let mut opts =
            ContainerOpts { users: vec![user.name.clone()], pidfile: Some(pidfile.clone()), ..Default::default() };
        for tweak in self.tweaks {
            tweak(&mut opts, &user);
        }
        let caller = Caller { uid: user.uid, gid: cagepipe_gid() };
        let mut cage = Cage { container: None, tag: self.tag, opts, config, piddir, pidfile, caller, syslog, user };
        if self.start {
            cage.start_container();
        }
        cage
    }
}

/// An account, its container and a configuration that finds it. Dropped in
/// that order of need: the container stops before the account goes.
pub struct Cage {
    container: Option<Container>,
    tag: String,
    opts: ContainerOpts,
    pub config: ConfigDir,
    /// Where the configuration looks for pidfiles (`{user}.pid`).
    pub piddir: PathBuf,
    /// The account's pidfile, written by the container once it runs.
    pub pidfile: PathBuf,
    /// How Exim calls cagepipe for the account (its uid, group cagepipe).
    pub caller: Caller,
    syslog: Option<Syslog>,
    pub user: User,
}

impl Cage {
    /// The running container.
    pub fn container(&self) -> &Container {
        self.container.as_ref().expect("the cage's container runs")
    }

    pub fn container_mut(&mut self) -> &mut Container {
        self.container.as_mut().expect("the cage's container runs")
    }

    /// (Re)start the container; its pidfile names it.
    pub fn start_container(&mut self) {
        self.container = None;
        self.container = Some(Container::start(&unique_name(&self.tag), &self.opts));
    }

    /// The container, out of the cage (dropping it stops it).
    pub fn take_container(&mut self) -> Container {
        self.container.take().expect("the cage's container runs")
    }

    /// The syslog catcher ([`CageBuilder::syslog`]).
    pub fn log(&self) -> &Syslog {
        self.syslog.as_ref().expect("the cage was built with .syslog()")
    }

    /// The configuration file's text.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.config.file()).unwrap()
    }

    /// The pidfile's contents as the container wrote it.
    pub fn pidfile_text(&self) -> String {
        format!("{}\n", self.container().pid)
    }

    /// Exim's environment for a `.forward` pipe of the account.
    pub fn env(&self) -> Vec<(String, String)> {
        exim_env(&self.user)
    }

    /// Deliver `stdin` with `args`, as Exim would, with `config`.
    pub fn deliver_with(&self, config: &ConfigDir, args: &[OsString], stdin: &[u8]) -> Delivery {
        let env = self.env();
        deliver(config, self.caller, args, &env_refs(&env), stdin)
    }

    /// Deliver `stdin` with `args`, as Exim would.
    pub fn deliver(&self, args: &[OsString], stdin: &[u8]) -> Delivery {
        self.deliver_with(&self.config, args, stdin)
    }

    /// Deliver an empty message with `args`, as Exim would.
    pub fn run(&self, args: &[OsString]) -> Delivery {
        self.deliver(args, b"")
    }

    /// The delivery's command, for the test to spawn.
    pub fn command(&self, args: &[OsString]) -> Command {
        let env = self.env();
        command(&self.config, self.caller, args, &env_refs(&env))
    }

    /// The delivery's command with another binary and a wrapper (see
    /// [`super::cagepipe::command_via`]).
    pub fn command_via(&self, bin: &std::path::Path, wrapper: &[&str], args: &[OsString]) -> Command {
        let env = self.env();
        command_via(&self.config, self.caller, bin, wrapper, args, &env_refs(&env))
    }

    /// A fresh marker for a command delivered into the container.
    pub fn marker(&self) -> Marker {
        Marker::new(self.container())
    }

    /// Where a path inside the container is on the host.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.container().host_path(inside)
    }

    /// `--config FILE --user NAME`: root naming the cage's configuration
    /// and account.
    pub fn as_root(&self) -> Vec<OsString> {
        vec!["--config".into(), self.config.file().into(), "--user".into(), self.user.name.clone().into()]
    }
}
