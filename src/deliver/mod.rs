//! The delivery path: everything a pipe delivery does, in the order it
//! happens, as one pipeline. [`prepare`] decides (configuration → account →
//! rollout placement → resolve and pin → one [`Plan`]); [`launch`] acts
//! (open cgroups → enter → fork → in the child: join, enter the rest,
//! session, drop and verify, pdeathsig, chdir, sandbox, close descriptors,
//! exec → supervise). `check` and `--dry-run` run the same [`prepare`] and
//! render what it decided; nothing here depends on the admin tools.
#![forbid(unsafe_code)]

pub(crate) mod cgroup;
pub(crate) mod command;
pub(crate) mod engine;
pub(crate) mod inroot;
pub(crate) mod launch;
pub(crate) mod lookahead;
pub(crate) mod namespace;
pub(crate) mod plan;
pub(crate) mod privileges;
pub(crate) mod resolve;
pub(crate) mod sandbox;
pub(crate) mod startup;

use std::path::{Path, PathBuf};

use crate::config::account::{self, Account, Database};
use crate::config::rollout::{self, Placement};
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::platform::kernel::{Ending, Kernel};
use plan::{Caller, Place, Plan};
use privileges::Credentials;
use resolve::Target;

/// Why the pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Run the command.
    Deliver,
    /// Decide everything a delivery would, and look the command up inside
    /// the container; run nothing.
    DryRun,
    /// `check USER`: resolve the account's container even when `[rollout]`
    /// does not contain it yet, to show what containing it would find; no
    /// command.
    Check,
}

/// What the pipeline is asked to do.
pub(crate) struct Request<'a> {
    pub(crate) purpose: Purpose,
    pub(crate) config: &'a Path,
    /// `--user` (root only); else the caller's own account.
    pub(crate) user: Option<&'a str>,
    /// The command's words; none for `check`.
    pub(crate) argv: Option<Vec<Vec<u8>>>,
    pub(crate) caller: &'a Caller,
}

/// What the pipeline learns, step by step, as it learns it: the audit line
/// of a delivery and the report of `check` and `--dry-run` are both built
/// from these calls, so they cannot tell a different story.
pub(crate) trait Witness {
    fn config(&mut self, _config: &Config) {}
    fn account(&mut self, _account: &Account) {}
    fn placement(&mut self, _placement: &Placement, _resolving_anyway: bool) {}
    /// Where the container is looked for: each configured engine, in order.
    fn looking_in(&mut self, _places: &[String]) {}
    fn target(&mut self, _target: &Target) {}
    fn credentials(&mut self, _credentials: &Credentials) {}
    /// For an uncontained account: what containing it would find.
    fn if_contained(&mut self, _verdict: &'static str) {}
    fn plan(&mut self, _plan: &Plan) {}
}

/// A delivery: the whole pipeline, top to bottom. Returns how the command
/// ended, and what the child said about the sandbox (for the audit line)
/// whatever the outcome.
pub(crate) fn deliver(
    k: &mut impl Kernel,
    request: &Request<'_>,
    w: &mut impl Witness,
) -> (Option<String>, Result<Ending>) {
    let plan = match prepare(k, request, w) {
        Ok(Some(plan)) => plan,
        Ok(None) => unreachable!("a delivery always has a command"),
        Err(e) => return (None, Err(e)),
    };
    let launched = launch::launch(k, &plan);
    // The process ends next: its descriptors (the container's namespaces,
    // root and /proc directory) close with it, not one close each.
    std::mem::forget(plan);
    match launched {
        Ok(supervised) => (supervised.sandbox, supervised.ending),
        Err(e) => (None, Err(e)),
    }
}

/// The deciding half of the pipeline, shared by a delivery, `--dry-run` and
/// `check`: nothing is entered or executed here. `check` gets no plan.
pub(crate) fn prepare(k: &mut impl Kernel, request: &Request<'_>, w: &mut impl Witness) -> Result<Option<Plan>> {
    // 1. Configuration.
    let config = config::load(request.config)?;
    w.config(&config);
    // 2. Account.
    let db = Database::default();
    let account = account_for(&db, request.user, request.caller.uid, &config)?;
    w.account(&account);
    // 3. Rollout placement.
    let placement = rollout::place(&config.rollout, &account, &db)?;
    let resolving_anyway = request.purpose == Purpose::Check && !placement.is_contained();
    w.placement(&placement, resolving_anyway);
    // 4. Resolve and pin the container (an uncontained account has none;
    //    its audit line says what containing it would find).
    let place = if placement.is_contained() || resolving_anyway {
        w.looking_in(&resolve::looked_in(&config, &account));
        let target = resolve::resolve(k, &config, &account)?;
        w.target(&target);
        w.credentials(&resolve::credentials(&account, &target)?);
        Place::Container(Box::new(target))
    } else {
        if let (Purpose::Deliver, Some(argv)) = (request.purpose, &request.argv) {
            w.if_contained(lookahead::if_contained(k, &config, &account, argv));
        }
        Place::Host
    };
    let Some(argv) = &request.argv else { return Ok(None) };
    // 5. One plan.
    let plan = plan::build(&config, &account, place, argv, request.caller)?;
    w.plan(&plan);
    // A dry run says DELIVERABLE only if the delivery would start the
    // command: it is looked up inside as the delivery's exec would find it.
    if let (Purpose::DryRun, Some(target)) = (request.purpose, plan.target()) {
        lookahead::command_would_start(&config, &account, target, argv)?;
    }
    Ok(Some(plan))
}

/// The account a delivery runs as: `--user` (root), else the caller's own.
fn account_for(db: &Database, user: Option<&str>, caller: u32, config: &Config) -> Result<Account> {
    let account = match user {
        Some(name) => account::lookup(db, account::Key::Name(name))?,
        None => account::lookup(db, account::Key::Uid(caller))?,
    };
    if account.uid == 0 || account.uid < config.min_uid {
        return Err(Error::NotPermitted(format!(
            "user {} has uid {}, below min_uid {} (system accounts are not contained)",
            account.name, account.uid, config.min_uid
        )));
    }
    Ok(account)
}

/// The default configuration file.
pub(crate) fn default_config() -> PathBuf {
    PathBuf::from(config::DEFAULT_PATH)
}

/// What the pipeline's unit tests share with the engines' (`engine/`).
#[cfg(test)]
pub(crate) mod fixtures {
    use std::path::PathBuf;

    use crate::config::account::Account;

    /// Uid and gid 101001 outside are 1001 inside the recording double's
    /// container.
    pub(crate) fn alice() -> Account {
        Account {
            name: "alice".into(),
            uid: 101_001,
            gid: 101_001,
            groups: vec![101_001],
            home: PathBuf::from("/home/alice"),
            shell: "/bin/sh".into(),
        }
    }
}

/// The whole sequence of each path, against the recording kernel: what a
/// delivery does from resolving the container to the command's exec (in
/// the child) or its end (in the parent), in order, without root.
#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::*;
    use crate::platform::recording::Forked;
    use crate::platform::recording::{Exited, Recording};

    fn config(extra: &str) -> Config {
        let text = format!("[container]\npidfile = \"/run/cagepipe/{{user}}.pid\"\n{extra}");
        config::parse(&text, Path::new("/etc/cagepipe/cagepipe.toml")).unwrap()
    }

    use fixtures::alice;

    fn caller() -> Caller {
        Caller {
            uid: 101_001,
            is_root: false,
            egid: 900,
            groups: vec![900, 101_001],
            env: vec![("LOCAL_PART".into(), "alice".into()), ("PATH".into(), "/usr/bin:/bin".into())],
            by_hand: Vec::new(),
            cwd: b"/home/alice".to_vec(),
        }
    }

    fn argv() -> Vec<Vec<u8>> {
        vec![b"handler".to_vec(), b"x".to_vec()]
    }

    /// Resolve (contained) and launch; the child's `exit` ends in a panic
    /// the test catches. Returns the calls from the launch on.
    fn run(k: &mut Recording, config: &Config, contained: bool) -> (Vec<String>, Option<i32>) {
        let place = if contained {
            Place::Container(Box::new(resolve::resolve(k, config, &alice()).expect("resolves")))
        } else {
            Place::Host
        };
        let plan = plan::build(config, &alice(), place, &argv(), &caller()).unwrap();
        let resolved = k.calls.len();
        let exited = match catch_unwind(AssertUnwindSafe(|| launch::launch(k, &plan))) {
            Ok(_) => None,
            Err(payload) => Some(payload.downcast::<Exited>().expect("only exit panics").0),
        };
        (k.calls[resolved..].to_vec(), exited)
    }

    /// The close_range arguments depend on descriptor numbers.
    fn without_numbers(calls: &[String]) -> Vec<String> {
        calls.iter().map(|c| if c.starts_with("close_range") { "close_range".into() } else { c.clone() }).collect()
    }

    const DAC: &str = "capset effective=1";
    const ALL: &str = "capset effective=1,6,8,18,19,21";
    const NONE: &str = "capset effective=";

    /// No path is opened while capabilities are effective, except the
    /// cgroup files under CAP_DAC_OVERRIDE alone (the window that exists
    /// for them): between each `capset` and the next, in `calls`.
    fn assert_no_open_under(calls: &[String], caps: &str) {
        let mut effective = "";
        for c in calls {
            if let Some(set) = c.strip_prefix("capset effective=") {
                effective = set;
            } else if (c.starts_with("open") || c.starts_with("read_trusted") || c.starts_with("identity"))
                && !effective.is_empty()
            {
                assert!(
                    effective == caps && (c.starts_with("open_cgroup") || caps == "19"),
                    "{c} with capabilities {effective} effective: {calls:?}"
                );
            }
        }
    }

    #[test]
    fn a_contained_delivery_resolves_and_pins_in_this_order() {
        let mut k = Recording::new();
        resolve::resolve(&mut k, &config(""), &alice()).unwrap();
        let mut want: Vec<String> = [
            "read_trusted /run/cagepipe/alice.pid",
            "pidfd_open 4711",
            "open_proc 4711",
            "read_proc 4711/stat",
            "boot_clock",
            "capset effective=19",
        ]
        .map(String::from)
        .to_vec();
        for ns in ["ipc", "uts", "net", "pid", "time", "mnt", "cgroup", "user"] {
            // Ours only where it decides something: mnt (a container at
            // all?), user (not entered when shared), time (often shared).
            if ["time", "mnt", "user"].contains(&ns) {
                want.push(format!("identity /proc/self/ns/{ns}"));
            }
            // Time and user are looked at first: the double's container
            // shares our time namespace (nothing opened), not our user one.
            if ns == "time" || ns == "user" {
                want.push(format!("proc_identity 4711/ns/{ns}"));
            }
            if ns != "time" {
                want.push(format!("open_proc_entry 4711/ns/{ns}"));
            }
        }
        want.extend(
            [
                "open_proc_entry 4711/root",
                "identity /proc/1/ns/mnt",
                "identity /proc/1/ns/pid",
                // A pid namespace of its own decides: the roots are not asked.
                NONE,
                "read_proc 4711/cgroup",
                "mountinfo",
                "own_cgroups",
                "ns_owner_uid ns/user",
                "read_proc 4711/uid_map",
                "read_proc 4711/gid_map",
                "read_proc 4711/setgroups",
                "pidfd_alive pidfd",
            ]
            .map(String::from),
        );
        assert_eq!(k.calls, want);
        assert_no_open_under(&k.calls, "19");
    }

    /// With cgroup v2 alone, the pin finds cgroup2's root by probing it
    /// (its namespace, then the directory) where the mount table was read,
    /// and the command is born in the container's cgroup below it.
    #[test]
    fn with_cgroup_v2_alone_the_mount_table_is_not_read_and_the_command_is_born_in_the_containers_cgroup() {
        let mut k = Recording::pure_v2();
        let target = resolve::resolve(&mut k, &config(""), &alice()).unwrap();
        assert!(!k.calls.iter().any(|c| c == "mountinfo"), "{:?}", k.calls);
        let at = k.calls.iter().position(|c| c == "read_proc 4711/cgroup").unwrap();
        assert_eq!(
            k.calls[at..at + 4],
            ["read_proc 4711/cgroup", "identity /proc/self/ns/cgroup", "probe_dir /sys/fs/cgroup", "own_cgroups"]
        );
        assert!(
            target.evidence.iter().any(|e| e.starts_with("cgroup2 root: /sys/fs/cgroup (cgroup2, hierarchy root")),
            "{:?}",
            target.evidence
        );
        let mut k = Recording::pure_v2();
        let (calls, _) = run(&mut k, &config(""), true);
        let cgroup_calls: Vec<&str> =
            calls.iter().map(String::as_str).filter(|c| c.contains("cgroup") && !c.starts_with("setns")).collect();
        assert_eq!(
            cgroup_calls,
            ["open_cgroup /sys/fs/cgroup/ct/alice", "clone3 into /sys/fs/cgroup/ct/alice sharing memory"]
        );
    }

    #[test]
    fn an_often_shared_namespace_is_opened_only_when_it_differs() {
        let mut k = Recording::new();
        k.process.as_mut().unwrap().foreign.push(("time", 96));
        let target = resolve::resolve(&mut k, &config(""), &alice()).unwrap();
        let time: Vec<&String> = k.calls.iter().filter(|c| c.ends_with("ns/time")).collect();
        assert_eq!(time, ["identity /proc/self/ns/time", "proc_identity 4711/ns/time", "open_proc_entry 4711/ns/time"]);
        let entered = target.foreign.iter().find(|ns| ns.kind.name == "time").expect("time is entered");
        assert_eq!(entered.inode, 96);
    }

    #[test]
    fn a_pidfile_written_before_its_process_started_is_stale_beyond_the_timestamp_lag_only() {
        // The double's process started at boot + 5 s; its coarse clock lags
        // by at most 4 ms.
        for (written_after_start_ms, believed) in [(1000, true), (0, true), (-3, true), (-5, false), (-50, false)] {
            let mut k = Recording::new();
            k.pidfile.as_mut().unwrap().1 = 1_000_000_000_000 + 5_000_000_000 + written_after_start_ms * 1_000_000;
            let r = resolve::resolve(&mut k, &config(""), &alice());
            assert_eq!(r.is_ok(), believed, "written {written_after_start_ms} ms after the start: {r:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains("is stale"), "{e}");
            }
        }
    }

    #[test]
    fn a_host_daemon_with_a_private_mount_namespace_is_not_a_container() {
        let mut k = Recording::new();
        // Its own mount namespace only: same pid namespace and root as the host.
        k.process.as_mut().unwrap().foreign = vec![("mnt", 95)];
        k.process.as_mut().unwrap().root = (8, 1);
        let e = resolve::resolve(&mut k, &config(""), &alice()).unwrap_err();
        assert_eq!(e.exit_code(), 75);
        assert!(e.to_string().contains("a host daemon"), "{e}");
        // A pid namespace of its own, or a root of its own, makes it one.
        let mut k = Recording::new();
        k.process.as_mut().unwrap().foreign = vec![("mnt", 95), ("pid", 94)];
        k.process.as_mut().unwrap().root = (8, 1);
        assert!(resolve::resolve(&mut k, &config(""), &alice()).is_ok());
        let mut k = Recording::new();
        k.process.as_mut().unwrap().foreign = vec![("mnt", 95)];
        assert!(resolve::resolve(&mut k, &config(""), &alice()).is_ok(), "a chroot-style container");
    }

    #[test]
    fn a_contained_delivery_enters_forks_and_waits_in_the_parent() {
        let mut k = Recording::new();
        let (calls, exited) = run(&mut k, &config(""), true);
        assert_eq!(exited, None);
        assert_eq!(
            calls,
            [
                "open /dev/tty",
                DAC,
                "open_cgroup /sys/fs/cgroup/unified/ct/alice",
                "open_cgroup /sys/fs/cgroup/cpu,cpuacct/ct/alice/tasks",
                ALL,
                "setns ns/ipc ipc",
                "setns ns/uts uts",
                "setns ns/net net",
                "setns ns/pid pid",
                "setns ns/mnt mnt",
                "chroot root",
                "channel",
                "clone3 into /sys/fs/cgroup/unified/ct/alice sharing memory",
                NONE,
                "read_to_end parent-end",
                "wait 5000",
            ]
        );
        assert_no_open_under(&calls, "1");
    }

    #[test]
    fn a_contained_delivery_joins_drops_and_execs_in_the_child() {
        let mut k = Recording::new();
        k.fork_as = Forked::Child;
        let (calls, exited) = run(&mut k, &config(""), true);
        assert_eq!(exited, Some(127), "the double's exec finds nothing");
        let after_fork = calls.iter().position(|c| c.starts_with("clone3")).unwrap() + 1;
        // Born with every capability effective (the parent's window before
        // the fork): the child's only capset is the drop's.
        assert_eq!(
            without_numbers(&calls[after_fork..]),
            [
                "close parent-end",
                "join_cgroup /sys/fs/cgroup/cpu,cpuacct/ct/alice/tasks",
                // Ours, but not compared: entering it changes nothing.
                "setns ns/cgroup cgroup",
                "setns ns/user user",
                "reset_signals",
                "setgroups [1001]",
                "setresgid 1001",
                "clear_ambient",
                "drop_bounding",
                "setresuid 1001",
                "set_non_dumpable",
                NONE,
                "set_no_new_privs",
                "observe",
                "set_parent_death_signal",
                "parent_alive",
                "chdir /home/alice",
                "close_range",
                "close_range",
                "execve /usr/local/bin/handler [handler x]",
                "execve /usr/bin/handler [handler x]",
                "execve /bin/handler [handler x]",
                "write child-end 127\tcommand handler not found inside the container",
                "exit 127",
            ]
        );
        assert_no_open_under(&calls, "1");
    }

    /// With a controlling terminal (asked on the host, before anything is
    /// entered), the child starts a session of its own once inside and
    /// before its drop; without one it stays in the caller's (Exim's
    /// process group, for its kill on timeout): see the test above.
    #[test]
    fn with_a_controlling_terminal_the_child_leaves_its_session() {
        let mut k = Recording::new();
        k.fork_as = Forked::Child;
        k.terminal = true;
        let (calls, _) = run(&mut k, &config(""), true);
        assert_eq!(calls.first().map(String::as_str), Some("open /dev/tty"));
        let at =
            |name: &str| calls.iter().position(|c| c.starts_with(name)).unwrap_or_else(|| panic!("{name}: {calls:?}"));
        assert!(at("setns ns/user") < at("setsid") && at("setsid") < at("setgroups"), "{calls:?}");
        assert_eq!(calls.iter().filter(|c| *c == "setsid").count(), 1);
    }

    #[test]
    fn a_cgroup_the_delivery_is_already_in_is_neither_opened_nor_joined() {
        let mut k = Recording::new();
        k.fork_as = Forked::Child;
        // The container shares our cpu,cpuacct cgroup; its v2 cgroup is its own.
        k.own_cgroups = "4:cpu,cpuacct:/ct/alice\n0::/\n".into();
        let (calls, _) = run(&mut k, &config(""), true);
        let cgroup_calls: Vec<&str> =
            calls.iter().map(String::as_str).filter(|c| c.contains("cgroup") && !c.starts_with("setns")).collect();
        assert_eq!(
            cgroup_calls,
            [
                "open_cgroup /sys/fs/cgroup/unified/ct/alice",
                "clone3 into /sys/fs/cgroup/unified/ct/alice sharing memory"
            ],
            "{calls:?}"
        );
    }

    #[test]
    fn an_uncontained_delivery_enters_nothing_and_keeps_the_users_bounding_set() {
        let mut k = Recording::new();
        k.fork_as = Forked::Child;
        k.terminal = true;
        let (calls, exited) = run(&mut k, &config("[rollout]\ncontain = \"none\"\n"), false);
        assert_eq!(exited, Some(127));
        assert_eq!(
            without_numbers(&calls),
            [
                "open /dev/tty",
                "channel",
                "clone3 sharing memory",
                "close parent-end",
                "setsid",
                "reset_signals",
                "capset effective=1,6,8,18,19,21",
                "setgroups [101001]",
                "setresgid 101001",
                "clear_ambient",
                "setresuid 101001",
                "set_non_dumpable",
                NONE,
                "observe",
                "set_parent_death_signal",
                "parent_alive",
                "close_range",
                "close_range",
                "execve /usr/bin/handler [handler x]",
                "execve /bin/handler [handler x]",
                "write child-end 127\tcommand handler not found on the host",
                "exit 127",
            ],
            "Exim's PATH is searched; cagepipe's group {} is not given on",
            caller().egid
        );
    }

    #[test]
    fn without_pidfd_the_process_is_pinned_by_its_proc_directory_alone() {
        let mut k = Recording::new();
        k.missing = vec!["pidfd"];
        let (calls, _) = run(&mut k, &config(""), true);
        let setns: Vec<&str> = calls.iter().map(String::as_str).filter(|c| c.starts_with("setns")).collect();
        assert_eq!(
            setns,
            ["setns ns/ipc ipc", "setns ns/uts uts", "setns ns/net net", "setns ns/pid pid", "setns ns/mnt mnt"]
        );
        assert!(!k.calls.iter().any(|c| c.starts_with("pidfd_alive")), "nothing to probe without a pidfd");
        let mut k = Recording::new();
        let (calls, _) = run(&mut k, &config("[kernel]\ndisable = [\"pidfd\"]\n"), true);
        assert!(!k.calls.iter().any(|c| c.starts_with("pidfd_open")), "disabled: not even tried");
        assert!(calls.contains(&"setns ns/mnt mnt".to_string()));
    }

    #[test]
    fn without_clone3_the_child_joins_cgroup_v2_itself() {
        let mut k = Recording::new();
        k.missing = vec!["clone3"];
        k.fork_as = Forked::Child;
        let (calls, _) = run(&mut k, &config(""), true);
        let i = calls.iter().position(|c| c.starts_with("clone3")).unwrap();
        assert_eq!(
            &calls[i..i + 2],
            ["clone3 into /sys/fs/cgroup/unified/ct/alice sharing memory".to_string(), "fork".into()]
        );
        assert!(calls.contains(&"join_cgroup /sys/fs/cgroup/unified/ct/alice/cgroup.procs".to_string()), "{calls:?}");
        // Disabled: not even tried; the child still shares our memory.
        let mut k = Recording::new();
        let (calls, _) = run(&mut k, &config("[kernel]\ndisable = [\"clone_into_cgroup\"]\n"), true);
        assert!(!calls.iter().any(|c| c.starts_with("clone3 into")) && calls.contains(&"clone3 sharing memory".into()));
        let mut k = Recording::new();
        let (calls, _) = run(&mut k, &config("[kernel]\ndisable = [\"clone_into_cgroup\", \"clone_vm\"]\n"), true);
        assert!(!calls.iter().any(|c| c.starts_with("clone3")) && calls.contains(&"fork".to_string()), "{calls:?}");
    }

    #[test]
    fn without_clone_vm_the_child_runs_on_a_copy() {
        let mut k = Recording::new();
        let (calls, _) = run(&mut k, &config("[kernel]\ndisable = [\"clone_vm\"]\n"), true);
        assert!(calls.contains(&"clone3 into /sys/fs/cgroup/unified/ct/alice".to_string()), "{calls:?}");
    }

    #[test]
    fn without_close_range_the_child_closes_descriptors_one_by_one() {
        let mut k = Recording::new();
        k.missing = vec!["close_range"];
        k.fork_as = Forked::Child;
        let (calls, _) = run(&mut k, &config(""), true);
        let closes: Vec<&str> =
            calls.iter().map(String::as_str).filter(|c| c.starts_with("close") && *c != "close parent-end").collect();
        assert_eq!(closes.first().map(|c| c.starts_with("close_range")), Some(true));
        assert_eq!(closes.last(), Some(&"close ..1023"), "the walk goes up to the fallback limit");
        let mut k = Recording::new();
        k.fork_as = Forked::Child;
        let (calls, _) = run(&mut k, &config("[kernel]\ndisable = [\"close_range\"]\n"), true);
        assert!(!calls.iter().any(|c| c.starts_with("close_range")), "{calls:?}");
    }

    #[test]
    fn a_failed_step_in_the_child_is_reported_and_nothing_runs() {
        for step in ["setns", "setresuid", "set_parent_death_signal", "chdir"] {
            let mut k = Recording::new();
            k.fork_as = Forked::Child;
            k.fail = Some(step);
            let place = Place::Container(Box::new(resolve::resolve(&mut k, &config(""), &alice()).unwrap()));
            let plan = plan::build(&config(""), &alice(), place, &argv(), &caller()).unwrap();
            let payload = catch_unwind(AssertUnwindSafe(|| launch::launch(&mut k, &plan)));
            let calls = k.calls.join("\n");
            match step {
                // Entering before the fork fails in the parent: no child.
                "setns" => assert!(payload.as_ref().is_ok_and(|r| r.as_ref().is_err_and(|e| e.exit_code() == 75))),
                // chdir falls back to / (which the double refuses too).
                _ => assert_eq!(payload.unwrap_err().downcast::<Exited>().unwrap().0, 75, "{step}:\n{calls}"),
            }
            assert!(!calls.contains("execve"), "{step}: nothing was executed:\n{calls}");
        }
    }

    #[test]
    fn the_parent_defers_when_the_container_stopped_under_the_command() {
        let mut k = Recording::new();
        k.ending = Ending::Signaled(9);
        let place = Place::Container(Box::new(resolve::resolve(&mut k, &config(""), &alice()).unwrap()));
        let plan = plan::build(&config(""), &alice(), place, &argv(), &caller()).unwrap();
        // The init is gone from the double's /proc: the container stopped.
        k.process = None;
        let supervised = launch::launch(&mut k, &plan).unwrap();
        let e = supervised.ending.unwrap_err();
        assert_eq!(e.exit_code(), 75, "{e}");
        assert!(e.to_string().contains("the container stopped during the delivery"), "{e}");
        // A live container: the command's own signal passes through.
        let mut k = Recording::new();
        k.ending = Ending::Signaled(9);
        let place = Place::Container(Box::new(resolve::resolve(&mut k, &config(""), &alice()).unwrap()));
        let plan = plan::build(&config(""), &alice(), place, &argv(), &caller()).unwrap();
        assert_eq!(launch::launch(&mut k, &plan).unwrap().ending.unwrap(), Ending::Signaled(9));
        assert_eq!(k.calls_of(&["pause"]).len(), 51, "it waited the whole grace period");
    }
}
