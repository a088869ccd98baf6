//! `[rollout]`: accounts not yet contained run on the host exactly as Exim
//! would have run them without cagepipe; listed users and @groups enter
//! their container. The real binary with its file capabilities, called as
//! Exim calls it, asserted by the probe from where the command ran.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::OnceLock;

use crate::rig::{self, Cage, Delivery, Need::Root, Report, PROBE_IN_CONTAINER as PROBE_INSIDE};
use rig::raw_pipe;

/// The probe where every test user can run it on the host.
fn host_probe() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = rig::fresh("probe");
        std::fs::copy(rig::probe_binary(), &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    })
}

/// The cage's configuration with this `[rollout]` section (and `extra`).
fn set_rollout(s: &Cage, section: &str, extra: &str) {
    s.config.write(&format!(
        "[container]\npidfile = \"{}/{{user}}.pid\"\n{extra}\n[rollout]\n{section}\n",
        s.piddir.display()
    ));
}

/// Deliver a message as Exim would (for a .forward pipe: nothing hostile in
/// the environment, on the host it all reaches the command, as it would
/// without cagepipe).
fn run(s: &Cage, args: &[OsString]) -> Delivery {
    s.deliver(args, b"a message\n")
}

fn report(s: &Cage, args: &[OsString]) -> Report {
    rig::report(&run(s, args))
}

fn bounding_set_of_this_process() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap().trim();
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn an_uncontained_account_runs_on_the_host_as_exim_would_have_run_it() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("rhost").syslog().start();
    let log = s.log();
    set_rollout(&s, "contain = \"none\"", &log.config());

    let r = report(&s, &raw_pipe(&format!("|{} report 'a b'", host_probe())));
    // (The mount namespace is the test rig's private copy of the host's,
    // made to bind a configuration over /etc/cagepipe.)
    for ns in ["pid", "uts", "ipc", "net", "cgroup", "user"] {
        assert_eq!(r[&format!("ns_{ns}")], rig::host_ns_inode(ns).to_string(), "{ns}: the host's");
    }
    assert_ne!(r["ns_mnt"], s.container().ns_inode("mnt").to_string());
    assert_ne!(r["ns_pid"], s.container().ns_inode("pid").to_string());
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
    let d = run(&s, &raw_pipe(&format!("|{} report --exit 3", host_probe())));
    assert_eq!(d.code(), Some(3), "{d:?}");
    assert!(log.line().contains("outcome=exited exit=3 "));
    // The same program exists inside the container (at another path):
    // the line says containing the account would work.
    let d = run(&s, &raw_pipe(&format!("|{PROBE_INSIDE} report")));
    assert_eq!(d.code(), Some(127), "not on the host: {d:?}");
    assert!(log.line().contains("if_contained=ready outcome=not-found exit=127 "));
    let d = run(&s, &raw_pipe(&format!("|{} report --signal 15", host_probe())));
    assert_eq!(d.signal(), Some(15), "{d:?}");
    assert!(log.line().contains("outcome=signaled signal=15 "));
    // A relative name is searched on Exim's PATH, on the host.
    let d = run(&s, &raw_pipe("|true"));
    assert_eq!(d.code(), Some(0), "{d:?}");
    log.line();
    let d = run(&s, &raw_pipe("|no-such-program-here"));
    assert_eq!(d.code(), Some(127), "{d:?}");
    assert!(d.stderr.contains("no-such-program-here"), "{}", d.stderr);
    log.line();

    // Not contained means the container is not needed at all.
    std::fs::remove_file(&s.pidfile).unwrap();
    let r = report(&s, &raw_pipe(&format!("|{} report", host_probe())));
    assert_eq!(r["ns_pid"], rig::host_ns_inode("pid").to_string());
}

#[test]
fn listed_users_and_groups_enter_their_container_and_the_rest_do_not() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("rlisted").start();
    let inside = raw_pipe(&format!("|{PROBE_INSIDE} report"));
    let on_host = raw_pipe(&format!("|{} report", host_probe()));

    set_rollout(&s, &format!("contain = [\"cptest-nobody\", \"{}\"]", s.user.name), "");
    let r = report(&s, &inside);
    assert_eq!(r["ns_pid"], s.container().ns_inode("pid").to_string(), "listed by name: contained");
    rig::assert_contained(s.container(), &r, s.user.uid, s.user.gid);

    set_rollout(&s, "contain = \"all\"", "");
    assert_eq!(report(&s, &inside)["ns_pid"], s.container().ns_inode("pid").to_string());

    let group = rig::test_group("rollout");
    let group = group.name.as_str();
    set_rollout(&s, &format!("contain = [\"@{group}\"]"), "");
    let r = report(&s, &on_host);
    assert_eq!(r["ns_pid"], rig::host_ns_inode("pid").to_string(), "not a member yet: on the host");
    let out = Command::new("usermod").args(["-aG", group, &s.user.name]).output().unwrap();
    assert!(out.status.success(), "usermod: {}", String::from_utf8_lossy(&out.stderr));
    let r = report(&s, &inside);
    assert_eq!(r["ns_pid"], s.container().ns_inode("pid").to_string(), "member of a listed @group: contained");

    // A contained account whose container is down defers as ever (75);
    // rollout never turns that into a delivery on the host.
    std::fs::remove_file(&s.pidfile).unwrap();
    assert_eq!(run(&s, &inside).code(), Some(75));
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
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = rig::cage("rcheck").start();
    set_rollout(&s, "contain = [\"@cptest-nosuchgroup\"]", "");
    let d = run(&s, &[OsString::from("check")]);
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
    assert!(out.contains(&format!("pid {} running since", s.container().pid)), "check still resolves: {out}");
    let d = run(&s, &[OsString::from("check"), OsString::from("--format=json")]);
    let j = rig::CheckJson::parse(&d.stdout, &d);
    assert!(j.placement().starts_with("uncontained (rollout): "), "{j}");
    assert_eq!(j.rollout(), "contain = [\"@cptest-nosuchgroup\"] (/etc/cagepipe/cagepipe.toml line 5)");
    assert_eq!(j.verdict(), "DELIVERABLE");

    let mut args = vec![OsString::from("--dry-run")];
    args.extend(raw_pipe("|/bin/true x"));
    let d = run(&s, &args);
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
