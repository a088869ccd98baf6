//! The plan: everything a delivery will do, decided before anything is
//! entered. Contained and uncontained (`[rollout]`) deliveries are the same
//! pipeline; where they differ is data here, built in one place.
#![forbid(unsafe_code)]

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::config::account::Account;
use crate::config::{self, Config};
use crate::deliver::privileges::{Confinement, Credentials};
use crate::deliver::resolve::{self, Target};
use crate::deliver::{command, sandbox};
use crate::error::{Error, Result};
use crate::escape::escape;
use crate::platform::sys::ExecWords;

/// Where the command runs.
#[derive(Debug)]
pub(crate) enum Place {
    /// Inside the account's container, pinned, with every privilege dropped.
    Container(Box<Target>),
    /// On the host, as Exim would have run it without cagepipe (`[rollout]`:
    /// the account is not contained yet).
    Host,
}

/// Who called cagepipe and from where: what the plan takes from the
/// caller's process, read once at start-up.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) uid: u32,
    pub(crate) is_root: bool,
    /// Our effective gid (`group = cagepipe` in Exim's transport).
    pub(crate) egid: u32,
    /// The supplementary groups Exim gave (its `initgroups` setting).
    pub(crate) groups: Vec<u32>,
    /// Exim's environment, with `--env` on top.
    pub(crate) env: Vec<(OsString, OsString)>,
    /// `--env` given by hand.
    pub(crate) by_hand: Vec<(OsString, OsString)>,
    /// The directory Exim started cagepipe in.
    pub(crate) cwd: Vec<u8>,
}

/// Everything the launch needs.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) place: Place,
    pub(crate) credentials: Credentials,
    pub(crate) argv: ExecWords,
    pub(crate) env: ExecWords,
    /// execve candidates (PATH already searched by name).
    pub(crate) candidates: Vec<CString>,
    /// Where the command starts inside the container: the directory Exim
    /// started cagepipe in (the home for a `.forward` pipe, `/` for an alias
    /// pipe), looked up inside, else `/`. `None`: stays where it is (host).
    pub(crate) cwd: Option<CString>,
    /// The Landlock sandbox, unless `[sandbox] landlock = "off"`.
    pub(crate) sandbox: Option<sandbox::Plan>,
    pub(crate) close_range: bool,
    pub(crate) clone_into_cgroup: bool,
    /// The command's process shares our memory until its exec.
    pub(crate) share_memory: bool,
    /// Shown in error messages: the program as the user wrote it.
    pub(crate) program: String,
}

impl Plan {
    pub(crate) fn confinement(&self) -> Confinement {
        match self.place {
            Place::Container(_) => Confinement::Contained,
            Place::Host => Confinement::Host,
        }
    }

    pub(crate) fn target(&self) -> Option<&Target> {
        match &self.place {
            Place::Container(t) => Some(t),
            Place::Host => None,
        }
    }
}

/// The pipe transport's default `path` option, searched for an uncontained
/// account's program as Exim would.
const EXIM_DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Build the plan for running `argv` as `account` at `place`.
///
/// Inside a container the environment is built from scratch and `--env`
/// must name a variable cagepipe passes on; the ids are translated through
/// the container's id maps; the program is searched on `[command] path`.
/// On the host (`[rollout]`) the command gets what Exim would have given it
/// without cagepipe: Exim's environment (with `--env` on top) and cwd; the
/// program searched on Exim's PATH; the account's uid and primary gid, which
/// `group = cagepipe` replaced; and the supplementary groups Exim gave, less
/// cagepipe's group unless the account is a member. Root trying a delivery
/// by hand gets the account's own groups.
pub(crate) fn build(
    config: &Config,
    account: &Account,
    place: Place,
    argv: &[Vec<u8>],
    caller: &Caller,
) -> Result<Plan> {
    let bad = |e: std::io::Error| Error::Usage(format!("argument or environment: {e}"));
    let (credentials, env_bytes, search, cwd, sandbox) = match &place {
        Place::Container(target) => {
            // --env goes through the same filter as Exim's environment; a
            // name that would be dropped is an error, not a silent surprise.
            for (name, _) in &caller.by_hand {
                if !config.pass_env.iter().any(|p| p.as_bytes() == name.as_bytes()) {
                    return Err(Error::Usage(format!(
                        "--env {}: cagepipe passes on only {} (and [command] pass_env)",
                        name.to_string_lossy(),
                        config::EXIM_ENV.join(", ")
                    )));
                }
            }
            let env = command::environment(account, config, &caller.env);
            let cwd = CString::new(caller.cwd.clone()).unwrap_or_else(|_| CString::from(c"/"));
            let sandbox = sandbox::plan(&config.sandbox, account, &config.path)?;
            (resolve::credentials(account, target)?, env, config.command_path.clone(), Some(cwd), sandbox)
        }
        Place::Host => {
            let groups = if caller.is_root {
                account.groups.clone()
            } else {
                let mut given: Vec<u32> =
                    caller.groups.iter().copied().filter(|g| *g != caller.egid || account.groups.contains(g)).collect();
                given.sort_unstable();
                given.dedup();
                given
            };
            let credentials = Credentials { uid: account.uid, gid: account.gid, groups };
            let env: Vec<Vec<u8>> =
                caller.env.iter().map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat()).collect();
            let search = caller.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.to_string_lossy().into_owned());
            (credentials, env, search.unwrap_or_else(|| EXIM_DEFAULT_PATH.into()), None, None)
        }
    };
    let contained = matches!(place, Place::Container(_));
    Ok(Plan {
        credentials,
        argv: ExecWords::new(command::to_cstrings(argv).map_err(bad)?),
        env: ExecWords::new(command::to_cstrings(&env_bytes).map_err(bad)?),
        candidates: command::candidates(&argv[0], &search),
        cwd,
        sandbox,
        close_range: config.features.close_range,
        clone_into_cgroup: contained && config.features.clone_into_cgroup,
        share_memory: config.features.clone_vm,
        program: escape(&argv[0]),
        place,
    })
}
