//! `[rollout]`: accounts not yet contained run on the host exactly as Exim
//! would have run them without cagepipe; listed users and @groups enter
//! their container. The real binary with its file capabilities, called as
//! Exim calls it, asserted by the probe from where the command ran.

mod common;
mod rig;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::{Container, ContainerOpts};
use rig::{deliver, raw_pipe, Caller, ConfigDir, Delivery};

const PROBE_INSIDE: &str = common::PROBE_IN_CONTAINER;

/// The probe where every test user can run it on the host.
fn host_probe() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = rig::scratch().join("probe");
        std::fs::copy(common::probe_binary(), &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    })
}

struct Setup {
    container: Container,
    config: ConfigDir,
    piddir: PathBuf,
    user: common::User,
    caller: Caller,
}

impl Setup {
    fn new(test: &str) -> Setup {
        let user = common::test_user(&format!("cptest-r{}", &test[..test.len().min(12)]));
        let (config, piddir) = ConfigDir::with_pidfile_dir("");
        let opts = ContainerOpts {
            users: vec![user.name.clone()],
            pidfile: Some(piddir.join(format!("{}.pid", user.name))),
            ..Default::default()
        };
        let container = Container::start(&common::unique_name(test), &opts);
        let caller = Caller { uid: user.uid, gid: rig::cagepipe_gid() };
        Setup { container, config, piddir, user, caller }
    }

    /// The configuration with this `[rollout]` section (and `extra`).
    fn rollout(&self, section: &str, extra: &str) {
        self.config.write(&format!(
            "[container]\npidfile = \"{}/{{user}}.pid\"\n{extra}\n[rollout]\n{section}\n",
            self.piddir.display()
        ));
    }

    /// Exim's environment for a .forward pipe (nothing hostile: on the host
    /// it all reaches the command, as it would without cagepipe).
    fn env(&self) -> Vec<(String, String)> {
        [
            ("LOCAL_PART", "support".to_string()),
            ("DOMAIN", "example.test".into()),
            ("SENDER", "sender@example.org".into()),
            ("RECIPIENT", "support@example.test".into()),
            ("MESSAGE_ID", "1abcDE-000001-AB".into()),
            ("QUALIFY_DOMAIN", "example.test".into()),
            ("USER", "support".into()),
            ("LOGNAME", "support".into()),
            ("HOME", self.user.home.display().to_string()),
            ("SHELL", "/bin/sh".into()),
            ("PATH", "/bin:/usr/bin".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn run(&self, args: &[OsString]) -> Delivery {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        deliver(&self.config, self.caller, args, &env, b"a message\n")
    }

    fn report(&self, args: &[OsString]) -> BTreeMap<String, String> {
        let d = self.run(args);
        assert_eq!(d.code(), Some(0), "delivery failed: {d:?}");
        common::parse_report(&d.stdout)
    }
}

fn bounding_set_of_this_process() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap().trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// A syslog socket of our own, readable line by line.
struct Syslog {
    socket: std::os::unix::net::UnixDatagram,
    path: PathBuf,
}

impl Syslog {
    fn new(name: &str) -> Syslog {
        let path = rig::scratch().join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&path);
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        socket.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        Syslog { socket, path }
    }

    fn config(&self) -> String {
        format!("[log]\nsocket = \"{}\"\n", self.path.display())
    }

    fn line(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a syslog line");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }
}

#[test]
fn an_uncontained_account_runs_on_the_host_as_exim_would_have_run_it() {
    if !common::require_root("an_uncontained_account_runs_on_the_host_as_exim_would_have_run_it") {
        return;
    }
    let s = Setup::new("host");
    let log = Syslog::new("rollout-host");
    s.rollout("contain = \"none\"", &log.config());

    let r = s.report(&raw_pipe(&format!("|{} report 'a b'", host_probe())));
    // (The mount namespace is the test rig's private copy of the host's,
    // made to bind a configuration over /etc/cagepipe.)
    for ns in ["pid", "uts", "ipc", "net", "cgroup", "user"] {
        assert_eq!(r[&format!("ns_{ns}")], common::host_ns_inode(ns).to_string(), "{ns}: the host's");
    }
    assert_ne!(r["ns_mnt"], s.container.ns_inode("mnt").to_string());
    assert_ne!(r["ns_pid"], s.container.ns_inode("pid").to_string());
    for k in ["uid", "euid", "suid", "fsuid"] {
        assert_eq!(r[k], s.user.uid.to_string(), "{k}");
    }
    // The account's own primary group, not the cagepipe group Exim's
    // transport ran cagepipe with; no supplementary groups, as Exim gave.
    for k in ["gid", "egid", "sgid", "fsgid"] {
        assert_eq!(r[k], s.user.gid.to_string(), "{k}");
    }
    assert_eq!(r["groups"], "", "the supplementary groups Exim gave (none)");
    for k in ["cap_inh", "cap_prm", "cap_eff", "cap_amb"] {
        assert_eq!(u64::from_str_radix(&r[k], 16).unwrap(), 0, "{k} = {}", r[k]);
    }
    // Like any process of the user on the host: a set-uid sendmail works.
    assert_eq!(u64::from_str_radix(&r["cap_bnd"], 16).unwrap(), bounding_set_of_this_process());
    assert_eq!(r["no_new_privs"], "0");
    assert_eq!(r["fds"], "0,1,2");
    assert_eq!(r["cwd"], s.user.home.display().to_string(), "where Exim started it");
    assert_eq!(r["argv_2"], "a b");
    let env: BTreeMap<String, String> = r
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("env_").map(|k| (k.to_string(), v.clone())))
        .filter(|(k, _)| k != "count")
        .collect();
    let expected: BTreeMap<String, String> = s.env().into_iter().collect();
    assert_eq!(env, expected, "Exim's environment, unchanged");
    let line = log.line();
    assert!(
        line.contains(&format!(
            "user={} uid={} container=\"uncontained (rollout)\" if_contained=not-found outcome=exited exit=0 ",
            s.user.name, s.user.uid
        )),
        "{line}"
    );

    // The command's status and signal reach Exim unchanged here too.
    let d = s.run(&raw_pipe(&format!("|{} report --exit 3", host_probe())));
    assert_eq!(d.code(), Some(3), "{d:?}");
    assert!(log.line().contains("outcome=exited exit=3 "));
    // The same program exists inside the container (at another path):
    // the line says containing the account would work.
    let d = s.run(&raw_pipe(&format!("|{PROBE_INSIDE} report")));
    assert_eq!(d.code(), Some(127), "not on the host: {d:?}");
    assert!(log.line().contains("if_contained=ready outcome=not-found exit=127 "));
    let d = s.run(&raw_pipe(&format!("|{} report --signal 15", host_probe())));
    assert_eq!(d.signal(), Some(15), "{d:?}");
    assert!(log.line().contains("outcome=signaled signal=15 "));
    // A relative name is searched on Exim's PATH, on the host.
    let d = s.run(&raw_pipe("|true"));
    assert_eq!(d.code(), Some(0), "{d:?}");
    log.line();
    let d = s.run(&raw_pipe("|no-such-program-here"));
    assert_eq!(d.code(), Some(127), "{d:?}");
    assert!(d.stderr.contains("no-such-program-here"), "{}", d.stderr);
    log.line();

    // Not contained means the container is not needed at all.
    std::fs::remove_file(s.piddir.join(format!("{}.pid", s.user.name))).unwrap();
    let r = s.report(&raw_pipe(&format!("|{} report", host_probe())));
    assert_eq!(r["ns_pid"], common::host_ns_inode("pid").to_string());
}

#[test]
fn listed_users_and_groups_enter_their_container_and_the_rest_do_not() {
    if !common::require_root("listed_users_and_groups_enter_their_container_and_the_rest_do_not") {
        return;
    }
    let s = Setup::new("listed");
    let inside = raw_pipe(&format!("|{PROBE_INSIDE} report"));
    let on_host = raw_pipe(&format!("|{} report", host_probe()));

    s.rollout(&format!("contain = [\"cptest-nobody\", \"{}\"]", s.user.name), "");
    let r = s.report(&inside);
    assert_eq!(r["ns_pid"], s.container.ns_inode("pid").to_string(), "listed by name: contained");
    assert_eq!(r["no_new_privs"], "1");

    s.rollout("contain = \"all\"", "");
    assert_eq!(s.report(&inside)["ns_pid"], s.container.ns_inode("pid").to_string());

    let group = "cptest-rolloutgrp";
    common::ensure_group(group);
    // Test accounts outlive a run: start from no membership.
    let _ = Command::new("gpasswd").args(["-d", &s.user.name, group]).output();
    s.rollout(&format!("contain = [\"@{group}\"]"), "");
    let r = s.report(&on_host);
    assert_eq!(r["ns_pid"], common::host_ns_inode("pid").to_string(), "not a member yet: on the host");
    let out = Command::new("usermod").args(["-aG", group, &s.user.name]).output().unwrap();
    assert!(out.status.success(), "usermod: {}", String::from_utf8_lossy(&out.stderr));
    let r = s.report(&inside);
    assert_eq!(r["ns_pid"], s.container.ns_inode("pid").to_string(), "member of a listed @group: contained");

    // A contained account whose container is down defers as ever (75);
    // rollout never turns that into a delivery on the host.
    std::fs::remove_file(s.piddir.join(format!("{}.pid", s.user.name))).unwrap();
    assert_eq!(s.run(&inside).code(), Some(75));
    let _ = Command::new("gpasswd").args(["-d", &s.user.name, group]).output();
}

/// The value of the first `key  value` line of a check or dry-run report.
fn value<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).filter(|rest| rest.starts_with("  ")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{out}"))
}

#[test]
fn check_and_dry_run_show_the_accounts_rollout_state() {
    if !common::require_root("check_and_dry_run_show_the_accounts_rollout_state") {
        return;
    }
    let s = Setup::new("check");
    s.rollout("contain = [\"@cptest-nosuchgroup\"]", "");
    let d = s.run(&[OsString::from("check")]);
    let out = String::from_utf8_lossy(&d.stdout).into_owned();
    assert_eq!(d.code(), Some(0), "containing it would work: {out}");
    assert!(
        out.contains("rollout               contain = [\"@cptest-nosuchgroup\"] (/etc/cagepipe/cagepipe.toml line 5)"),
        "{out}"
    );
    assert!(
        out.contains("placement             uncontained (rollout): not listed in [rollout] contain (line 5)"),
        "{out}"
    );
    assert!(out.contains("what containing the account would find"), "{out}");
    assert!(out.contains(&format!("pid {} running since", s.container.pid)), "check still resolves: {out}");
    let d = s.run(&[OsString::from("check"), OsString::from("--format=json")]);
    let j: serde_json::Value = serde_json::from_slice(&d.stdout).unwrap_or_else(|e| panic!("{e}: {d:?}"));
    assert_eq!(j["placement"]["state"], "uncontained (rollout)", "{j}");
    assert_eq!(j["placement"]["contained"], false, "{j}");
    assert_eq!(j["config"]["rollout"]["contain"], serde_json::json!(["@cptest-nosuchgroup"]), "{j}");
    assert_eq!(j["config"]["rollout"]["line"], 5, "{j}");
    assert_eq!(j["verdict"], "DELIVERABLE");

    let mut args = vec![OsString::from("--dry-run")];
    args.extend(raw_pipe("|/bin/true x"));
    let d = s.run(&args);
    let out = String::from_utf8_lossy(&d.stdout).into_owned();
    assert_eq!(d.code(), Some(0), "{out}");
    assert_eq!(value(&out, "runs on the host as"), format!("uid {} gid {} groups", s.user.uid, s.user.gid));
    assert_eq!(value(&out, "exec tries"), "/bin/true", "{out}");
    assert!(!out.contains("target "), "no container is looked up for an uncontained dry run: {out}");

    // Root checking the installation is told about the group that does not exist.
    let conf = s.config.file().into_os_string();
    let d = rig::run_as_root(&[OsString::from("--config"), conf, OsString::from("check")], b"");
    let out = String::from_utf8_lossy(&d.stdout).into_owned();
    assert_eq!(
        value(&out, "rollout problem"),
        "@cptest-nosuchgroup is not a group in /etc/group: it contains nobody",
        "{out}"
    );
}
