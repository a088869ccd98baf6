//! `cagepipe check` as root reads Debian's real exim4 (`-bP`) and lints every
//! transport that names cagepipe. Exim configurations are private files in a
//! scratch directory that `.include` the shipped exim-config/ snippets
//! (never retyped) or small transports written here; the installed cagepipe
//! under test (root:cagepipe 0750, file capabilities) runs the check.
//!
//! The shipped snippets name /usr/sbin/cagepipe, so those checks run in a
//! private mount namespace whose /usr/sbin/cagepipe is the binary under test,
//! whatever this host has installed there (or not).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::rig::exim::{snippet, Exim, EXIM};
use crate::rig::{self, ConfigDir, Need};

const NEEDS: [Need; 2] = [Need::Root, Need::Exim];

/// One scratch Exim (configurations, its spool and log, and what /usr/sbin
/// gains in its namespace: the binary under test as /usr/sbin/cagepipe),
/// and a valid cagepipe configuration.
struct Lab {
    exim: Exim,
    cagepipe_config: ConfigDir,
}

/// What one `cagepipe check` printed and returned.
#[derive(Debug)]
struct Checked {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Checked {
    fn problems(&self) -> Vec<&str> {
        self.lines("exim problem")
    }

    /// Lines whose key is exactly `key` (the value starts after the padding).
    fn lines(&self, key: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(key))
            .filter(|rest| rest.starts_with("  "))
            .map(str::trim_start)
            .collect()
    }

    fn ok_transports(&self) -> Vec<&str> {
        self.lines("exim transport").into_iter().filter_map(|v| v.split_once(": ok").map(|(name, _)| name)).collect()
    }

    fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

fn checked(out: std::process::Output) -> Checked {
    Checked {
        code: out.status.code().unwrap_or_else(|| panic!("killed: {out:?}")),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Lab {
    fn new(name: &str) -> Lab {
        let (cagepipe_config, _) = ConfigDir::with_pidfile_dir("");
        Lab { exim: Exim::new(&format!("check-{name}")), cagepipe_config }
    }

    /// The main-section lines every configuration here starts with.
    fn main_section(&self) -> String {
        self.exim.private_main()
    }

    /// Write `name` (root-owned 0644, as Exim wants its configuration).
    fn file(&self, name: &str, text: &str) -> PathBuf {
        self.exim.file(name, text)
    }

    /// A complete configuration around a transports-section `fragment`: one
    /// router that accepts everything for transport `first`.
    fn scaffold(&self, name: &str, first: &str, fragment: &Path) -> PathBuf {
        self.file(
            name,
            &format!(
                "{main}begin routers\n\ndeliver_all:\n  driver = accept\n  transport = {first}\n\n\
                 begin transports\n\n.include {fragment}\n",
                main = self.main_section(),
                fragment = fragment.display()
            ),
        )
    }

    /// The scaffold around transports written here.
    fn with_transports(&self, name: &str, first: &str, transports: &str) -> PathBuf {
        let fragment = self.file(&format!("{name}.transports"), transports);
        self.scaffold(name, first, &fragment)
    }

    fn check_args(&self, exim: &str, conf: &Path, extra: &[&str]) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--config".into(), self.cagepipe_config.file().into(), "check".into()];
        args.extend(extra.iter().map(OsString::from));
        args.extend(["--exim".into(), exim.into(), "--exim-config".into(), conf.into()]);
        args
    }

    /// `cagepipe --config C check [EXTRA] --exim /usr/sbin/exim4
    /// --exim-config CONF` as root, in this process's namespaces.
    fn check(&self, conf: &Path, extra: &[&str]) -> Checked {
        checked_delivery(rig::run_as_root(&self.check_args(EXIM, conf, extra), b""))
    }

    /// `program ARGS` as root in a private mount namespace in which
    /// /usr/sbin/cagepipe is the binary under test (this Exim's namespace).
    fn with_test_binary_at_usr_sbin(&self, program: &Path, args: &[OsString]) -> Command {
        self.exim.namespaced(program, args)
    }

    /// [`Lab::check`] with the shipped path /usr/sbin/cagepipe being the
    /// binary under test.
    fn check_shipped(&self, conf: &Path) -> Checked {
        let args = self.check_args(EXIM, conf, &[]);
        checked(self.with_test_binary_at_usr_sbin(rig::installed_binary(), &args).output().unwrap())
    }
}

/// A transport naming the installed test binary in the shipped way; each
/// `(from, to)` edit breaks one thing.
fn transport(name: &str, edits: &[(&str, &str)]) -> String {
    let mut text = format!(
        "{name}:\n  driver = pipe\n  force_command\n  command = {bin} --raw-pipe=$address_pipe\n  \
         group = cagepipe\n  temp_errors = 75:73\n  return_fail_output\n\n",
        bin = rig::installed_binary().display()
    );
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} is not in the transport");
        text = text.replacen(from, to, 1);
    }
    text
}

/// `(from, to)` edits of the clean transport text.
type Edits = &'static [(&'static str, &'static str)];

/// The five problems, each as an edit of the clean transport (its name, the
/// edits, what its line must say).
const BROKEN: &[(&str, Edits, &str)] = &[
    ("no_force", &[("  force_command\n", "")], "force_command is missing"),
    ("shell", &[("  force_command\n", "  force_command\n  use_shell\n")], "use_shell is set"),
    ("bare", &[("--raw-pipe=$address_pipe", "-- $address_pipe")], "bare `$address_pipe`"),
    ("no_group", &[("  group = cagepipe\n", "")], "group is not set"),
    ("wrong_group", &[("group = cagepipe", "group = root")], "group root does not match"),
    ("no_75", &[("temp_errors = 75:73", "temp_errors = 73")], "temp_errors (73) does not contain 75"),
];

fn assert_clean(what: &str, c: &Checked, transports: &[&str]) {
    assert_eq!(c.code, 0, "{what}: {c}");
    assert!(c.problems().is_empty(), "{what}: {c}");
    assert_eq!(c.last_line(), "CONFIGURATION OK", "{what}: {c}");
    assert!(!c.stdout.contains("EXIM CONFIGURATION"), "{what}: {c}");
    let ok = c.ok_transports();
    for t in transports {
        assert!(ok.contains(t), "{what}: {t} is not listed as ok: {c}");
    }
    assert_eq!(ok.len(), transports.len(), "{what}: only {transports:?} name cagepipe: {c}");
}

#[test]
fn every_shipped_snippet_is_clean() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let lab = Lab::new("shipped");
    // exim.conf is complete; only the spool and log are prepended.
    let generic =
        lab.file("generic.conf", &format!("{}.include {}\n", lab.main_section(), snippet("exim.conf").display()));
    let configs = [
        ("exim.conf", generic, &["cagepipe_pipe"][..]),
        (
            "debian .rul",
            lab.scaffold("debian.conf", "address_pipe", &snippet("debian/30_exim4-config_address_pipe.rul")),
            &["address_pipe"],
        ),
        (
            "directadmin",
            lab.scaffold("directadmin.conf", "virtual_address_pipe", &snippet("directadmin/transports.conf")),
            &["virtual_address_pipe", "address_pipe"],
        ),
        (
            "cpanel",
            lab.scaffold("cpanel.conf", "cagepipe_virtual_address_pipe", &snippet("cpanel/transport.conf")),
            &["cagepipe_virtual_address_pipe"],
        ),
    ];
    for (what, conf, transports) in configs {
        let c = lab.check_shipped(&conf);
        assert_clean(what, &c, transports);
        assert_eq!(
            c.lines("exim"),
            [format!("{EXIM} -C {}", conf.display())],
            "{what}: which Exim and configuration were asked: {c}"
        );
        // The shipped files may gain transports that do not run cagepipe.
        let counts = c.lines("exim transports");
        let (read, ours) = counts
            .first()
            .and_then(|l| l.strip_suffix(" run cagepipe"))
            .and_then(|l| l.split_once(" read, "))
            .unwrap_or_else(|| panic!("{what}: an `exim transports` line: {c}"));
        assert_eq!(ours, transports.len().to_string(), "{what}: {c}");
        assert!(read.parse::<usize>().unwrap() >= transports.len(), "{what}: {c}");
    }
}

/// The clean result above depends on /usr/sbin/cagepipe being the binary
/// under test: with a copy of another group there, the shipped snippet's
/// group no longer matches.
#[test]
fn the_shipped_group_is_compared_with_the_binary_at_usr_sbin() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let lab = Lab::new("usrsbin");
    let out = lab
        .with_test_binary_at_usr_sbin(
            Path::new("/usr/bin/stat"),
            &["-c".into(), "%g %a".into(), "/usr/sbin/cagepipe".into()],
        )
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{} 750", rig::cagepipe_gid()),
        "the namespace shows the test binary at /usr/sbin/cagepipe: {out:?}"
    );

    // Replace the link with a root:root copy: the group check must notice.
    let link = lab.exim.sbin_add.join("cagepipe");
    std::fs::remove_file(&link).unwrap();
    std::fs::copy(rig::installed_binary(), &link).unwrap();
    nix::unistd::chown(&link, Some(0.into()), Some(0.into())).unwrap();
    let conf = lab.scaffold("debian.conf", "address_pipe", &snippet("debian/30_exim4-config_address_pipe.rul"));
    let c = lab.check_shipped(&conf);
    assert_eq!(c.code, 78, "{c}");
    let problems = c.problems();
    assert_eq!(problems.len(), 1, "{c}");
    assert!(
        problems[0]
            .starts_with("address_pipe: group cagepipe does not match the group of /usr/sbin/cagepipe (root, gid 0)"),
        "{c}"
    );
    assert!(problems[0].contains("write `group = root`"), "{c}");
}

#[test]
fn each_problem_gets_its_own_line_and_exit_78() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let lab = Lab::new("broken");
    // The baseline every variant breaks is clean.
    let conf = lab.with_transports("clean.conf", "clean", &transport("clean", &[]));
    assert_clean("the clean transport", &lab.check(&conf, &[]), &["clean"]);

    for (name, edits, expect) in BROKEN {
        let conf = lab.with_transports(&format!("{name}.conf"), name, &transport(name, edits));
        let c = lab.check(&conf, &[]);
        assert_eq!(c.code, 78, "{name}: {c}");
        let problems = c.problems();
        assert_eq!(problems.len(), 1, "{name}: one problem: {c}");
        assert!(problems[0].starts_with(&format!("{name}: ")), "{name}: the line names the transport: {c}");
        assert!(problems[0].contains(expect), "{name}: {expect:?}: {c}");
        assert!(c.ok_transports().is_empty(), "{name}: a transport with a problem is not ok: {c}");
        assert_eq!(
            c.stdout.lines().rev().take(2).collect::<Vec<_>>(),
            ["EXIM CONFIGURATION: 1 problem(s)", "CONFIGURATION OK"],
            "{name}: cagepipe's own verdict, then Exim's: {c}"
        );
    }
}

#[test]
fn problems_are_counted_per_transport_in_one_configuration() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let lab = Lab::new("many");
    let mut text = String::from("address_file:\n  driver = appendfile\n\n");
    text.push_str(&transport("fine", &[]));
    for (name, edits, _) in BROKEN {
        text.push_str(&transport(name, edits));
    }
    let conf = lab.with_transports("many.conf", "fine", &text);
    let c = lab.check(&conf, &[]);
    assert_eq!(c.code, 78, "{c}");
    assert_eq!(c.lines("exim transports"), [format!("{} read, {} run cagepipe", BROKEN.len() + 2, BROKEN.len() + 1)]);
    assert_eq!(c.ok_transports(), ["fine"], "address_file is not reported individually: {c}");
    let problems = c.problems();
    assert_eq!(problems.len(), BROKEN.len(), "{c}");
    for (name, _, expect) in BROKEN {
        let mine: Vec<&&str> = problems.iter().filter(|p| p.starts_with(&format!("{name}: "))).collect();
        assert_eq!(mine.len(), 1, "{name}: {c}");
        assert!(mine[0].contains(expect), "{name}: {c}");
    }
    assert_eq!(c.last_line(), format!("EXIM CONFIGURATION: {} problem(s)", BROKEN.len()), "{c}");

    // The same for monitoring, as one JSON object.
    let c = lab.check(&conf, &["--format=json"]);
    assert_eq!(c.code, 78, "{c}");
    let j = rig::CheckJson::parse(c.stdout.as_bytes(), &c);
    assert_eq!(j.verdict(), "CONFIGURATION OK", "{j}");
    assert_eq!(j.exit(), 78, "{j}");
    assert_eq!(j.exim_problem_count(), BROKEN.len() as u64, "{j}");
    assert_eq!(j.exim_problems().len(), BROKEN.len(), "{j}");
    assert_eq!(j.exim_transports()[0], "fine: ok", "{j}");
}

#[test]
fn what_is_fine_is_not_a_problem() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let lab = Lab::new("fine");
    let bin = rig::installed_binary().display().to_string();
    let fixed = format!(
        "fixed:\n  driver = pipe\n  command = {bin} -- /bin/true\n  group = cagepipe\n  temp_errors = 75:73\n\n"
    );
    let text = [
        transport("any_temp_error", &[("temp_errors = 75:73", "temp_errors = *")]),
        transport("numeric_group", &[("group = cagepipe", &format!("group = {}", rig::cagepipe_gid()))]),
        transport("expanded_group", &[("group = cagepipe", "group = ${if eq{$domain}{x}{mail}{cagepipe}}")]),
        transport("braced", &[("--raw-pipe=$address_pipe", "--raw-pipe=${address_pipe}")]),
        fixed,
        "not_ours:\n  driver = pipe\n  command = /usr/bin/procmail -- $address_pipe\n\n".to_string(),
    ]
    .concat();
    let conf = lab.with_transports("fine.conf", "fixed", &text);
    let c = lab.check(&conf, &[]);
    assert_clean("fine variants", &c, &["any_temp_error", "numeric_group", "expanded_group", "braced", "fixed"]);
    let transport_line = |name: &str| {
        c.lines("exim transport").into_iter().find(|l| l.starts_with(&format!("{name}: "))).unwrap_or_default()
    };
    assert!(transport_line("fixed").contains("fixed command"), "{c}");
    assert!(transport_line("expanded_group").contains("cannot be verified"), "{c}");
    assert_eq!(transport_line("any_temp_error"), "any_temp_error: ok", "{c}");

    // Nothing names cagepipe yet: said, but not a problem.
    let conf = lab.with_transports("none.conf", "not_ours", "not_ours:\n  driver = pipe\n  command = /bin/true\n\n");
    let c = lab.check(&conf, &[]);
    assert_eq!(c.code, 0, "{c}");
    assert!(c.problems().is_empty(), "{c}");
    assert_eq!(c.lines("exim transports"), ["1 read, 0 run cagepipe"], "{c}");
    assert!(c.lines("exim note").iter().any(|n| n.starts_with("no transport runs cagepipe")), "{c}");
}

#[test]
fn exim_itself_missing_or_failing() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let lab = Lab::new("exim");
    let conf = lab.with_transports("ok.conf", "ok", &transport("ok", &[]));

    // An --exim that does not exist is a problem.
    let missing = lab.exim.dir.join("no-such-exim");
    let c = checked_delivery(rig::run_as_root(&lab.check_args(missing.to_str().unwrap(), &conf, &[]), b""));
    assert_eq!(c.code, 78, "{c}");
    assert_eq!(c.problems().len(), 1, "{c}");
    assert!(c.problems()[0].contains(&format!("{} does not exist", missing.display())), "{c}");

    // A configuration Exim rejects: Exim's own first message, once.
    let bad = lab.file("bad.conf", &format!("{}no_such_option = 1\n", lab.main_section()));
    let c = lab.check(&bad, &[]);
    assert_eq!(c.code, 78, "{c}");
    assert_eq!(c.problems().len(), 1, "{c}");
    let p = c.problems()[0];
    assert!(p.starts_with(&format!("{EXIM} -bP transport_list failed: Exim configuration error in line 4")), "{c}");
    assert!(p.contains("no_such_option"), "{c}");

    // No Exim at any of the usual places (a Postfix host): said, not a
    // problem. Every usual directory is an empty tmpfs in the namespace.
    let script = r#"set -e
for d in /usr/sbin /usr/exim/bin /usr/local/sbin; do
    if [ -d "$d" ]; then mount -t tmpfs cagepipe-noexim "$d"; fi
done
exec "$@""#;
    let args: Vec<OsString> = vec!["--config".into(), lab.cagepipe_config.file().into(), "check".into()];
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh"])
        .arg(rig::installed_binary())
        .args(&args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .output()
        .unwrap();
    let c = checked(out);
    assert_eq!(c.code, 0, "{c}");
    assert!(c.problems().is_empty(), "{c}");
    let exim = c.lines("exim");
    assert_eq!(exim.len(), 1, "{c}");
    assert!(exim[0].starts_with("not found (") && exim[0].contains("not checked"), "{c}");
    assert_eq!(c.last_line(), "CONFIGURATION OK", "{c}");
}

fn checked_delivery(d: rig::Delivery) -> Checked {
    Checked {
        code: d.code().expect("exited"),
        stdout: String::from_utf8_lossy(&d.stdout).into_owned(),
        stderr: d.stderr,
    }
}

/// `check USER` keeps the delivery's verdict and exit code first; Exim's
/// problems are reported after it. A user checking themself never runs Exim.
#[test]
fn the_delivery_verdict_comes_first_and_users_do_not_run_exim() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let lab = Lab::new("user");
    let s = rig::cage("eximchk").stopped().start();
    let user = &s.user;
    let conf = lab.with_transports("bad.conf", "bad", &transport("bad", &[("temp_errors = 75:73", "temp_errors = 1")]));

    // No container for the user: not deliverable, and that code wins.
    let c = lab.check(&conf, &[&user.name]);
    let tail: Vec<&str> = c.stdout.lines().rev().take(2).collect();
    assert_eq!(tail[0], "EXIM CONFIGURATION: 1 problem(s)", "{c}");
    let code = tail[1]
        .strip_prefix("NOT DELIVERABLE (exit ")
        .and_then(|r| r.split_once(')'))
        .and_then(|(n, _)| n.parse::<i32>().ok())
        .unwrap_or_else(|| panic!("a NOT DELIVERABLE line: {c}"));
    assert_eq!(c.code, code, "{c}");
    assert_ne!(c.code, 78, "{c}");
    assert!(c.lines("user").iter().any(|l| l.starts_with(&user.name)), "the user was checked: {c}");
    assert_eq!(c.problems().len(), 1, "{c}");

    // The same user checking themself: no Exim lines at all.
    let caller = s.caller;
    let d = rig::deliver(&lab.cagepipe_config, caller, &["check".into()], &[], b"");
    let c = checked_delivery(d);
    assert!(c.stdout.contains("NOT DELIVERABLE"), "{c}");
    assert!(!c.stdout.lines().any(|l| l.starts_with("exim")), "a user's check runs no Exim: {c}");
    assert!(!c.stdout.contains("EXIM CONFIGURATION"), "{c}");

    // And may not name an Exim.
    for extra in [&["--exim", EXIM][..], &["--exim-config", "/etc/exim4/exim4.conf"]] {
        let mut args: Vec<OsString> = vec!["check".into()];
        args.extend(extra.iter().map(OsString::from));
        let d = rig::deliver(&lab.cagepipe_config, caller, &args, &[], b"");
        assert_eq!(d.code(), Some(77), "{extra:?}: {d:?}");
        assert!(d.stdout.is_empty(), "{extra:?}: {d:?}");
    }
}
