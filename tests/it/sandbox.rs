//! The `[sandbox]` section: the real binary, with real file capabilities,
//! run as an unprivileged user, delivering into real containers with
//! Landlock on. The probe tries writes, executions and a Maildir rename from
//! inside and reports each outcome.
//!
//! A kernel without Landlock (CloudLinux 8's 4.18) is reproduced on this
//! one by a seccomp filter that makes Landlock's three system calls fail
//! the way such a kernel does, so cagepipe and the landlock crate take the
//! same path they would take there.

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use crate::rig::{self, Cage, Delivery, Need::Root, Report};
use rig::raw_pipe;

/// Writable by the user as far as file permissions go (sticky and
/// world-writable, like /tmp), but listed in no `write` entry.
const DROP_DIR: &str = "/srv/drop";

/// What the probe and the programs it runs need to execute: the probe, the
/// dynamic loader and /usr/bin.
const EXECUTE: &str = r#"["/usr", "/bin", "/lib", "/lib64", "/opt/cagepipe-probe"]"#;

/// A cage for a fresh test user with [`DROP_DIR`] inside, and a
/// configuration with `sandbox` (the lines of a `[sandbox]` section) whose
/// audit lines go to the cage's syslog catcher.
fn setup(test: &str, sandbox: &str) -> Cage {
    let s = rig::cage(test).syslog().config(&format!("[sandbox]\n{sandbox}")).start();
    let drop_dir = s.host_path(DROP_DIR);
    std::fs::create_dir_all(&drop_dir).unwrap();
    std::fs::set_permissions(&drop_dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    s
}

fn home(s: &Cage) -> String {
    s.user.home.display().to_string()
}

/// A directory inside the container, owned by the user.
fn user_dir(s: &Cage, inside: &str) {
    let dir = s.host_path(inside);
    std::fs::create_dir_all(&dir).unwrap();
    let (uid, gid) = (nix::unistd::Uid::from_raw(s.user.uid), nix::unistd::Gid::from_raw(s.user.gid));
    nix::unistd::chown(&dir, Some(uid), Some(gid)).unwrap();
}

/// Rewrite the `[sandbox]` section (the rest of the configuration stays).
fn set_sandbox(s: &Cage, sandbox: &str) {
    let text = s.config_text();
    let kept = &text[..text.find("[sandbox]\n").unwrap()];
    s.config.write(&format!("{kept}[sandbox]\n{sandbox}"));
}

fn run(s: &Cage, args: &[OsString]) -> Delivery {
    s.deliver(args, b"a message\n")
}

/// The delivery as on a kernel whose Landlock system calls fail with `errno`.
fn run_without_landlock(s: &Cage, args: &[OsString], errno: i32) -> Delivery {
    let mut cmd = s.command(args);
    hide_landlock(&mut cmd, errno);
    rig::run_with_stdin(cmd, b"a message\n")
}

/// The probe's report after a delivery that must have succeeded silently
/// (Exim's `return_output` would bounce a delivery that writes to stderr).
fn report(d: &Delivery) -> Report {
    let r = rig::report(d);
    assert_eq!(d.stderr, "", "a successful delivery says nothing on stderr");
    r
}

fn probe(args: &[&str]) -> Vec<OsString> {
    rig::probe(&format!("report {}", args.join(" ")))
}

fn sandbox(mode: &str, write: &str, execute: &str) -> String {
    format!("landlock = \"{mode}\"\nwrite = {write}\nexecute = {execute}\n")
}

/// Make Landlock's system calls fail with `errno`, as on a kernel without
/// it (ENOSYS: not built in, as on CloudLinux 8; EOPNOTSUPP: built in but
/// not enabled at boot). Installed as root without no_new_privs, so the
/// file capabilities of cagepipe still apply; inherited across every exec
/// down to cagepipe.
fn hide_landlock(cmd: &mut Command, errno: i32) {
    use std::os::unix::process::CommandExt;
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jeq = |k: i64, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k: k as u32,
    };
    let filter = [
        // seccomp_data.nr; the Landlock numbers are the same on every
        // architecture.
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        jeq(libc::SYS_landlock_create_ruleset, 2, 0),
        jeq(libc::SYS_landlock_add_rule, 1, 0),
        jeq(libc::SYS_landlock_restrict_self, 0, 1),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | errno as u32),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let install = move || {
        let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
        // SAFETY: prctl only reads the program, which outlives the call;
        // prctl is async-signal-safe, as the forked child requires.
        let r = unsafe {
            libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER as libc::c_ulong, &program as *const _, 0, 0)
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the closure allocates nothing and makes one prctl call.
    unsafe {
        cmd.pre_exec(install);
    }
}

#[test]
fn writing_is_allowed_only_beneath_the_write_paths() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = setup("sbwrite", &sandbox("required", r#"["{home}", "/tmp", "/dev/null"]"#, EXECUTE));
    let home = home(&s);
    let (in_home, in_tmp, in_drop) = (format!("{home}/note"), "/tmp/note", format!("{DROP_DIR}/note"));
    let tries = ["--try-write", &in_home, "--try-write", in_tmp, "--try-write", "/dev/null", "--try-write", &in_drop];
    let r = report(&run(&s, &probe(&tries)));
    assert_eq!(r[&format!("try_write:{in_home}")], "ok");
    assert_eq!(r["try_write:/tmp/note"], "ok");
    assert_eq!(r["try_write:/dev/null"], "ok");
    assert_eq!(r[&format!("try_write:{in_drop}")], "EACCES", "{DROP_DIR} is writable, but not listed");
    assert!(!s.host_path(&in_drop).exists());
    // The file in the home is real, and the user's: the sandbox came after the drop.
    let written = std::fs::metadata(s.host_path(&in_home)).unwrap();
    assert_eq!(written.uid(), s.user.uid);
    assert_eq!(r["no_new_privs"], "1");
    let line = s.log().line();
    assert!(line.contains(&format!("pid={} sandbox=enforced outcome=exited exit=0 ", s.container().pid)), "{line}");

    // The same delivery without the sandbox may write there: what refused
    // it above was the sandbox, not the file permissions.
    set_sandbox(&s, "landlock = \"off\"\n");
    let r = report(&run(&s, &probe(&tries)));
    assert_eq!(r[&format!("try_write:{in_drop}")], "ok");
    assert!(!s.log().line().contains("sandbox="), "no sandbox, no sandbox field");
}

#[test]
fn executing_is_allowed_only_beneath_the_execute_paths() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = setup("sbexec", &sandbox("required", r#"["{home}", "/tmp"]"#, EXECUTE));
    let home = home(&s);
    // A program of the user's own, in the home: writable, but not listed
    // for execution.
    user_dir(&s, &format!("{home}/bin"));
    let own = format!("{home}/bin/true");
    std::fs::copy("/usr/bin/true", s.host_path(&own)).unwrap();
    nix::unistd::chown(&s.host_path(&own), Some(nix::unistd::Uid::from_raw(s.user.uid)), None).unwrap();
    let tries = ["--try-exec", "/usr/bin/true", "--try-exec", &own];
    let r = report(&run(&s, &probe(&tries)));
    assert_eq!(r["try_exec:/usr/bin/true"], "ok");
    assert_eq!(r[&format!("try_exec:{own}")], "EACCES");
    // Nor can it be the delivered command itself.
    let d = run(&s, &raw_pipe(&format!("|{own}")));
    assert_eq!(d.code(), Some(126), "{d:?}");
    assert!(d.stderr.contains("cannot execute") && d.stderr.contains("Permission denied"), "{}", d.stderr);

    // Listed, it runs: the refusal above was the sandbox's.
    set_sandbox(&s, &sandbox("required", r#"["{home}", "/tmp"]"#, r#"["/usr", "/lib", "/lib64", "/opt", "{home}"]"#));
    let r = report(&run(&s, &probe(&tries)));
    assert_eq!(r[&format!("try_exec:{own}")], "ok");
    assert_eq!(run(&s, &raw_pipe(&format!("|{own}"))).code(), Some(0));
}

#[test]
fn maildir_delivery_renames_from_tmp_to_new_under_the_sandbox() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // /var/tmp is not in this container: skipped, and said so.
    let s = setup("sbmaildir", &sandbox("required", r#"["{home}/Maildir", "/dev/null", "/var/tmp"]"#, EXECUTE));
    let maildir = format!("{}/Maildir", home(&s));
    for sub in ["", "/tmp", "/new", "/cur"] {
        user_dir(&s, &format!("{maildir}{sub}"));
    }
    // What a Maildir delivery agent does: write into tmp, then rename into
    // new, a move between directories (Landlock's Refer right).
    let (tmp, new) = (format!("{maildir}/tmp/1.probe"), format!("{maildir}/new/1.probe"));
    let r = report(&run(&s, &probe(&["--try-write", &tmp, "--try-rename", &tmp, &new])));
    assert_eq!(r[&format!("try_write:{tmp}")], "ok");
    assert_eq!(r[&format!("try_rename:{tmp}")], "ok");
    assert!(!s.host_path(&tmp).exists());
    assert_eq!(std::fs::read_to_string(s.host_path(&new)).unwrap(), "written by the probe\n");
    let line = s.log().line();
    assert!(line.contains(" sandbox=\"enforced; absent or out of reach inside, skipped: /var/tmp\" "), "{line}");
    // Moving it out of the write paths is refused (renaming out needs the
    // right to remove it from new/ and to create it in the home).
    let outside = format!("{}/1.probe", home(&s));
    let r = report(&run(&s, &probe(&["--try-rename", &new, &outside])));
    assert_eq!(r[&format!("try_rename:{new}")], "EACCES");
    assert!(s.host_path(&new).exists());
}

#[test]
fn best_effort_without_landlock_delivers_and_says_the_sandbox_is_not_applied() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = setup("sbbest", &sandbox("best-effort", r#"["{home}", "/tmp", "/dev/null"]"#, EXECUTE));
    let in_drop = format!("{DROP_DIR}/note");
    let args = probe(&["--try-write", &in_drop]);
    // This kernel has Landlock: enforced.
    let r = report(&run(&s, &args));
    assert_eq!(r[&format!("try_write:{in_drop}")], "EACCES");
    assert!(s.log().line().contains(" sandbox=enforced "));
    // As on a kernel without it: delivered, unsandboxed, and the audit line
    // (not stderr, which Exim's return_output would bounce) says so.
    let r = report(&run_without_landlock(&s, &args, libc::ENOSYS));
    assert_eq!(r[&format!("try_write:{in_drop}")], "ok", "no sandbox was applied");
    let line = s.log().line();
    assert!(line.contains(" sandbox=\"not applied: this kernel has no Landlock"), "{line}");
    assert!(line.contains("outcome=exited exit=0"), "{line}");
    let r = report(&run_without_landlock(&s, &args, libc::EOPNOTSUPP));
    assert_eq!(r[&format!("try_write:{in_drop}")], "ok");
    let line = s.log().line();
    assert!(line.contains(" sandbox=\"not applied: Landlock is built into this kernel but not enabled"), "{line}");
}

#[test]
fn required_without_landlock_defers_and_runs_nothing() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = setup("sbrequired", &sandbox("required", r#"["{home}", "/tmp"]"#, EXECUTE));
    let marker = format!("{}/ran", home(&s));
    let m = s.marker();
    let args = m.probe(&format!("--try-write {marker}"));
    for (errno, why) in [(libc::ENOSYS, "this kernel has no Landlock"), (libc::EOPNOTSUPP, "not enabled")] {
        let d = run_without_landlock(&s, &args, errno);
        assert_eq!(d.code(), Some(75), "{d:?}");
        assert!(d.stdout.is_empty(), "nothing ran: {d:?}");
        assert!(!s.host_path(&marker).exists(), "nothing ran");
        m.assert_absent();
        for words in ["[sandbox] landlock = \"required\" cannot be met", why, "nothing was run", "\"best-effort\""] {
            assert!(d.stderr.contains(words), "stderr should say {words:?}: {}", d.stderr);
        }
        let line = s.log().line();
        assert!(line.contains("outcome=deferred exit=75 reason=\"[sandbox] landlock = "), "{line}");
        // Quotes inside the quoted reason are escaped once: \" (not \\").
        assert!(line.contains(r#"landlock = \"required\" cannot be met"#), "{line}");
        assert!(line.contains(why), "{line}");
    }
    // With Landlock, the same delivery runs.
    assert_eq!(report(&run(&s, &args))[&format!("try_write:{marker}")], "ok");
    m.assert_written();
}

#[test]
fn an_invalid_sandbox_section_defers_naming_line_and_column() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = setup("sbinvalid", &sandbox("required", r#"["{home}"]"#, EXECUTE));
    // Lines 1-2 are [container], 3-4 [log], 5 is "[sandbox]".
    for (section, where_, words) in [
        ("landlock = \"strict\"\n", "line 6, column 12", "must be \"off\", \"best-effort\" or \"required\""),
        ("landlock = \"required\"\nwrite = [\"{home}\"]\n", "line 6, column 12", "needs write = [...] and execute"),
        ("landlock = \"required\"\nwrite = [\"/tmp\",\n  \"tmp\"]\nexecute = []\n", "line 8, column 3", "absolute"),
        ("landlock = \"off\"\nexec = [\"/usr\"]\n", "line 7, column 1", "exec"),
    ] {
        set_sandbox(&s, section);
        let m = s.marker();
        let d = run(&s, &m.probe(""));
        assert_eq!(d.code(), Some(75), "{section}: {d:?}");
        assert!(d.stderr.contains(where_) && d.stderr.contains(words), "{section}: {}", d.stderr);
        assert!(d.stdout.is_empty(), "nothing ran: {d:?}");
        m.assert_absent();
    }
}

#[test]
fn dry_run_shows_the_sandbox_for_the_user() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let s = setup("sbdryrun", &sandbox("best-effort", r#"["{home}/Maildir", "/var/mail/{user}"]"#, r#"["/usr"]"#));
    let mut args = vec![OsString::from("--dry-run")];
    args.extend(probe(&[]));
    let d = run(&s, &args);
    let out = String::from_utf8_lossy(&d.stdout).into_owned();
    assert_eq!(d.code(), Some(0), "{d:?}");
    assert!(out.contains("sandbox               landlock, best-effort: what the kernel supports\n"), "{out}");
    let write = format!("sandbox may write     beneath {}/Maildir /var/mail/{}\n", home(&s), s.user.name);
    assert!(out.contains(&write), "{out}");
    assert!(out.contains("sandbox may execute   beneath /usr\n"), "{out}");
}
