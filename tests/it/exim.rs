//! The shipped exim-config/ snippets proven by real deliveries: Debian's
//! exim4 queues a message and delivers it through the real cagepipe (file
//! capabilities, group cagepipe) into a real container. Each test asserts
//! Exim's verdict from its own main log and queue, and what happened inside
//! from the probe's report. Configurations are built from the shipped files
//! with `.include`, never retyped.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::rig::exim::{message, snippet, wait_for, Exim, Verdict, EXIM};
use crate::rig::{self, Cage, Container, Need, Report, User, PROBE_IN_CONTAINER as PROBE};

const NEEDS: [Need; 2] = [Need::Root, Need::Exim];
/// And Debian's configuration generator (exim4-config).
const NEEDS_DEBIAN: [Need; 3] = [Need::Root, Need::Exim, Need::Tool("update-exim4.conf")];

/// An Exim, and a cage (test account, container, configuration) whose
/// configuration that Exim's deliveries see as /etc/cagepipe/cagepipe.toml.
struct World {
    exim: Exim,
    cage: Cage,
}

/// The probe's directory (which exists only inside containers) on PATH.
fn command_path() -> String {
    format!("\n[command]\npath = \"/usr/bin:/bin:{}\"\n", Path::new(PROBE).parent().unwrap().display())
}

impl World {
    /// `short` names the test account (cptest-x<short>); no container yet.
    fn new(short: &str) -> World {
        let cage = rig::cage(&format!("x{short}")).config(&command_path()).stopped().start();
        let exim = Exim::new(short);
        exim.cagepipe_toml(&cage.config_text());
        World { exim, cage }
    }

    fn with_container(short: &str) -> World {
        let mut w = World::new(short);
        w.cage.start_container();
        w
    }

    /// A valid cagepipe configuration: pidfiles where the container writes
    /// them, and the probe on PATH.
    fn toml(&self) -> String {
        self.cage.config_text()
    }

    fn user(&self) -> &User {
        &self.cage.user
    }

    fn container(&self) -> &Container {
        self.cage.container()
    }

    /// The user's ~/.forward on the host, as Exim reads it.
    fn forward(&self, text: &str) {
        let user = self.user();
        let path = user.home.join(".forward");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        nix::unistd::chown(&path, Some(user.uid.into()), Some(user.gid.into())).unwrap();
    }

    fn rcpt(&self) -> String {
        format!("{}@localhost", self.user().name)
    }

    /// A file in the user's home inside the container, as the host sees it.
    fn inside(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}/{name}", self.container().pid, self.user().home.display()))
    }

    /// Where the probe writes its report: in the home inside the container.
    fn report_path(&self) -> String {
        format!("{}/report", self.user().home.display())
    }

    fn report(&self) -> Report {
        let path = self.inside("report");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("no probe report at {}: {e}", path.display()));
        rig::parse_report(&bytes)
    }

    /// Nothing ran: the probe wrote no report.
    fn no_report(&self) -> bool {
        !self.inside("report").exists()
    }

    /// What must hold inside for a delivery as the account.
    fn assert_contained(&self, r: &Report) {
        rig::assert_contained(self.container(), r, self.user().uid, self.user().gid);
    }
}

/// The generic configuration, as shipped, with this Exim's spool and log.
fn generic(exim: &Exim) -> String {
    format!("{}.include {}\n", exim.private_main(), snippet("exim.conf").display())
}

/// The bytes Exim writes into a pipe for message `id` after its `From `
/// line: the header lines from the spool (`-Mvh`, deleted ones left out),
/// an empty line, the body (`-Mvb`, after its "ID-D" line) and the default
/// message_suffix "\n".
fn pipe_input_after_from_line(exim: &Exim, id: &str) -> Vec<u8> {
    let h = exim.command(&["-Mvh", id]).output().unwrap().stdout;
    let b = exim.command(&["-Mvb", id]).output().unwrap().stdout;
    // -Mvh prints the spool header file: envelope lines, then each header
    // as "NNNc text" where NNN is the length of text (with its newlines)
    // and c is a flag, '*' for a deleted header.
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_headers = false;
    while i < h.len() {
        let line_end = h[i..].iter().position(|&c| c == b'\n').map_or(h.len(), |p| i + p + 1);
        let line = &h[i..line_end];
        let header_start = line.len() > 5
            && line[..3].iter().all(u8::is_ascii_digit)
            && line[4] == b' '
            && (line[3].is_ascii_alphabetic() || line[3] == b' ' || line[3] == b'*');
        if header_start && (in_headers || line_end < h.len()) {
            in_headers = true;
            let len: usize = std::str::from_utf8(&line[..3]).unwrap().parse().unwrap();
            let text = &h[i + 5..i + 5 + len];
            if line[3] != b'*' {
                out.extend_from_slice(text);
            }
            i += 5 + len;
        } else {
            assert!(
                !in_headers,
                "unexpected line in -Mvh output after the headers: {:?}",
                String::from_utf8_lossy(line)
            );
            i = line_end;
        }
    }
    out.push(b'\n');
    let body_start = b.iter().position(|&c| c == b'\n').map_or(b.len(), |p| p + 1);
    assert_eq!(&b[..body_start], format!("{id}-D\n").as_bytes(), "-Mvb starts with the spool file's name");
    out.extend_from_slice(&b[body_start..]);
    out.push(b'\n');
    out
}

// 1 ------------------------------------------------------------------------

#[test]
fn forward_pipe_is_delivered_inside_the_container_with_the_message_intact() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let w = World::with_container("fwd");
    w.exim.write_conf(&generic(&w.exim));
    let saved = format!("{}/stdin", w.user().home.display());
    w.forward(&format!("|{PROBE} report --out {} --save-stdin {saved}\n", w.report_path()));
    // A body bigger than any pipe buffer, every byte value but NUL and
    // bare CR, lines of odd lengths.
    let mut body = String::new();
    for i in 0..40_000u32 {
        let c = char::from_u32(0x21 + (i % 94)).unwrap();
        body.push_str(&c.to_string().repeat((i % 97) as usize));
        body.push_str(" \u{e9}\u{2603}\t.\n");
    }
    let msg = message("forward", &body);
    let id = w.exim.submit("sender@example.org", &[&w.rcpt()], &msg);
    let expected = pipe_input_after_from_line(&w.exim, &id);
    w.exim.deliver(&id);
    assert_eq!(w.exim.verdict(&id, &w.rcpt()), Verdict::Delivered, "{:?}", w.exim.log_of(&id));
    assert!(!w.exim.on_queue(&id));

    let r = w.report();
    w.assert_contained(&r);
    assert_eq!(r["cwd"], w.user().home.display().to_string(), "a .forward pipe starts in the home, as with Exim");
    let got = std::fs::read(w.inside("stdin")).unwrap();
    let nl = got.iter().position(|&c| c == b'\n').expect("a From line");
    assert!(got.starts_with(b"From sender@example.org "), "Exim's message_prefix: {:?}", &got[..nl]);
    assert_eq!(r["stdin_len"], got.len().to_string());
    assert!(got[nl + 1..] == expected[..], "stdin after the From line is byte for byte what Exim has on its spool");
    assert!(w.exim.paniclog().is_empty(), "{}", w.exim.paniclog());
}

// 2 ------------------------------------------------------------------------

/// A DirectAdmin-like router over the shipped DirectAdmin transports: the
/// alias file of example.test, its owner in /etc/virtual/domainowners.
fn directadmin(exim: &Exim) -> String {
    format!(
        "{main}domainlist local_domains = example.test\n\
         begin routers\n\
         virtual_aliases:\n  driver = redirect\n  domains = +local_domains\n  allow_fail\n  allow_defer\n  \
         data = ${{lookup{{$local_part}}lsearch{{/etc/virtual/example.test/aliases}}}}\n  \
         pipe_transport = virtual_address_pipe\n\
         begin transports\n\
         .include {da}\n",
        main = exim.private_main(),
        da = snippet("directadmin/transports.conf").display()
    )
}

#[test]
fn directadmin_alias_pipe_runs_as_the_domain_owner_from_the_root() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let w = World::with_container("da");
    w.exim.write_conf(&directadmin(&w.exim));
    w.exim.etc_file("virtual/domainowners", &format!("example.test: {}\n", w.user().name));
    w.exim.etc_file(
        "virtual/example.test/aliases",
        &format!("support: \"|{PROBE} report --stdin-hash --out {}\"\n", w.report_path()),
    );
    let msg = message("alias", "a ticket\n");
    let id = w.exim.submit("sender@example.org", &["support@example.test"], &msg);
    let expected = pipe_input_after_from_line(&w.exim, &id);
    w.exim.deliver(&id);
    assert_eq!(w.exim.verdict(&id, "support@example.test"), Verdict::Delivered, "{:?}", w.exim.log_of(&id));
    let r = w.report();
    w.assert_contained(&r);
    assert_eq!(r["cwd"], "/", "an alias pipe starts in /, as with Exim");
    let root = std::fs::metadata(format!("/proc/{}/root", w.container().pid)).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(r["cwd_dev_ino"], format!("{}:{}", root.dev(), root.ino()), "the container's /, not the host's");
    let prefix_len: usize = r["stdin_len"].parse::<usize>().unwrap() - expected.len();
    assert!(prefix_len > "From sender@example.org ".len(), "the From line came first");
}

// 3 ------------------------------------------------------------------------

#[test]
fn no_container_running_defers_and_the_retry_delivers() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let mut w = World::new("retry");
    w.exim.write_conf(&generic(&w.exim));
    w.forward(&format!("|{PROBE} report --stdin-hash --out {}\n", w.report_path()));
    let (id, v) = w.exim.send(&w.rcpt(), &message("retry", "wait for me\n"));
    match v {
        Verdict::Deferred(line) => assert!(line.contains("returned 75"), "cagepipe's tempfail: {line}"),
        other => panic!("no container must defer, got {other:?}"),
    }
    assert!(w.exim.on_queue(&id), "the message waits on the queue");
    let log = w.exim.log_of(&id).join("\n");
    assert!(log.contains("pidfile"), "Exim's log says why (log_defer_output): {log}");

    w.cage.start_container();
    w.exim.deliver(&id);
    assert_eq!(w.exim.verdict(&id, &w.rcpt()), Verdict::Delivered, "{:?}", w.exim.log_of(&id));
    assert!(!w.exim.on_queue(&id));
    let r = w.report();
    w.assert_contained(&r);
    assert!(r["stdin_len"].parse::<usize>().unwrap() > "wait for me\n".len());
}

// 4 ------------------------------------------------------------------------

#[test]
fn the_commands_exit_status_decides_defer_bounce_or_delivered() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let w = World::with_container("status");
    w.exim.write_conf(&generic(&w.exim));

    w.forward(&format!("|{PROBE} report --out {} --exit 75\n", w.report_path()));
    let (id, v) = w.exim.send(&w.rcpt(), &message("s75", "x\n"));
    assert!(matches!(v, Verdict::Deferred(_)), "exit 75 defers: {v:?}");
    assert!(w.exim.on_queue(&id));
    assert!(!w.no_report(), "the command ran");
    w.exim.command(&["-Mrm", &id]).output().unwrap();

    w.forward(&format!("|{PROBE} report --out {} --exit 1\n", w.report_path()));
    let (id, v) = w.exim.send(&w.rcpt(), &message("s1", "x\n"));
    match v {
        Verdict::Failed(line) => assert!(line.contains("returned 1"), "{line}"),
        other => panic!("exit 1 bounces, got {other:?}"),
    }
    assert!(!w.exim.log_of(&id).is_empty());

    // Reads 10 bytes of a message far bigger than a pipe buffer and exits 0:
    // Exim ignores the broken pipe and counts the status.
    w.forward(&format!("|{PROBE} report --out {} --read-bytes 10\n", w.report_path()));
    let big = "y".repeat(100) + "\n";
    let (_, v) = w.exim.send(&w.rcpt(), &message("partial", &big.repeat(20_000)));
    assert_eq!(v, Verdict::Delivered);
    assert_eq!(w.report()["stdin_len"], "10");
}

// 5 ------------------------------------------------------------------------

/// A configuration with a plain pipe transport and no cagepipe: what Exim
/// does without it, for comparison.
fn without_cagepipe(exim: &Exim) -> String {
    format!(
        "{main}domainlist local_domains = localhost\n\
         begin routers\n\
         userforward:\n  driver = redirect\n  domains = +local_domains\n  check_local_user\n  \
         file = $home/.forward\n  pipe_transport = plain_pipe\n\
         begin transports\n\
         plain_pipe:\n  driver = pipe\n  return_fail_output\n",
        main = exim.private_main()
    )
}

#[test]
fn a_command_killed_by_a_signal_is_logged_as_without_cagepipe() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let w = World::with_container("signal");
    w.exim.write_conf(&generic(&w.exim));
    w.forward(&format!("|{PROBE} report --out {} --signal 11\n", w.report_path()));
    let (_, with) = w.exim.send(&w.rcpt(), &message("sig", "x\n"));

    // The same signal from the same program run on the host by a plain pipe.
    let plain = Exim::new("signal-plain");
    plain.write_conf(&without_cagepipe(&plain));
    w.forward(&format!("|{} report --signal 11\n", rig::probe_binary().display()));
    let (_, without) = plain.send(&w.rcpt(), &message("sig", "x\n"));

    let tail = |v: &Verdict| match v {
        Verdict::Failed(line) => line[line.find("terminated by signal").expect(line)..].to_string(),
        other => panic!("a signal bounces: {other:?}"),
    };
    assert_eq!(tail(&with), "terminated by signal 11 (Segmentation fault)");
    assert_eq!(tail(&with), tail(&without), "cagepipe passes the signal on unchanged");
}

// 6 ------------------------------------------------------------------------

#[test]
fn exims_timeout_leaves_nothing_running_in_the_container() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let w = World::with_container("timeout");
    // A local setting appended right after the shipped transport, which the
    // generic configuration keeps last for exactly this.
    w.exim.write_conf(&format!("{}  timeout = 2s\n", generic(&w.exim)));
    w.forward(&format!("|{PROBE} report --out {} --spawn-bg --sleep 600\n", w.report_path()));
    let (_, v) = w.exim.send(&w.rcpt(), &message("timeout", "x\n"));
    match v {
        Verdict::Failed(line) => assert!(line.contains("timed out"), "{line}"),
        other => panic!("Exim's timeout bounces by default: {other:?}"),
    }
    let r = w.report();
    assert!(r.contains_key("bg_pid"), "the command left a background child");
    let c = w.container();
    assert!(
        wait_for(Duration::from_secs(10), || c.leftovers().is_empty()),
        "still running in the container:\n{}",
        rig::describe_pids(&c.leftovers())
    );
}

// 7 ------------------------------------------------------------------------

#[test]
fn expansion_syntax_in_a_forward_file_is_never_expanded() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let w = World::with_container("expand");
    w.exim.write_conf(&generic(&w.exim));
    // On the host, runnable by the user: what ${run} would execute.
    let marker = w.exim.dir.join("ran-on-the-host");
    let evil = w.exim.dir.join("evil");
    std::fs::write(&evil, format!("#!/bin/sh\ntouch {}\necho EXPANDED\n", marker.display())).unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    let words = [format!("${{run{{{}}}}}", evil.display()), "${readfile{/etc/hostname}}".into(), "$HOME".into()];
    w.forward(&format!("|{PROBE} report --out {} {}\n", w.report_path(), words.join(" ")));
    let (_, v) = w.exim.send(&w.rcpt(), &message("expand", "x\n"));
    assert_eq!(v, Verdict::Delivered);
    let r = w.report();
    w.assert_contained(&r);
    assert!(!marker.exists(), "${{run}} executed {} on the host", evil.display());
    let argv: Vec<&str> = (0..r["argv_count"].parse().unwrap()).map(|i| r[&format!("argv_{i}")].as_str()).collect();
    assert_eq!(argv[argv.len() - 3..], [words[0].as_str(), words[1].as_str(), words[2].as_str()], "{argv:?}");
}

// 8 ------------------------------------------------------------------------

#[test]
fn quoted_words_arrive_in_order_and_a_bare_name_is_found_inside() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let w = World::with_container("quotes");
    w.exim.write_conf(&generic(&w.exim));
    // The probe's directory exists only inside the container: only a PATH
    // search in there finds `probe`.
    assert!(!Path::new(PROBE).exists(), "{PROBE} must not exist on the host for this test");
    w.forward(&format!(
        "\"|probe report --out {} 'a b' \\\"c d\\\" e 'f \\\\ g' \\\"h\\\\\\\"i\\\"\"\n",
        w.report_path()
    ));
    let (_, v) = w.exim.send(&w.rcpt(), &message("quotes", "x\n"));
    assert_eq!(v, Verdict::Delivered, "{:?}", std::fs::read_to_string(w.user().home.join(".forward")));
    let r = w.report();
    w.assert_contained(&r);
    let argv: Vec<&str> = (0..r["argv_count"].parse().unwrap()).map(|i| r[&format!("argv_{i}")].as_str()).collect();
    assert_eq!(argv[0], "probe");
    // Exim undid the .forward item's quoting (\" and \\); cagepipe split the
    // pipe text: 'f \ g' is literal, "h\"i" honours the backslash.
    assert_eq!(argv[4..], ["a b", "c d", "e", "f \\ g", "h\"i"], "{argv:?}");
}

// 9 ------------------------------------------------------------------------

#[test]
fn a_broken_or_unsafe_config_defers_with_the_reason_and_the_fix_delivers() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let w = World::with_container("config");
    w.exim.write_conf(&generic(&w.exim));
    w.forward(&format!("|{PROBE} report --out {}\n", w.report_path()));
    let good = w.toml();

    // A typo: the unknown key, with its line and column.
    w.exim.cagepipe_toml(&good.replace("pidfile =", "pidfil ="));
    let (id, v) = w.exim.send(&w.rcpt(), &message("config", "x\n"));
    assert!(matches!(v, Verdict::Deferred(_)), "{v:?}");
    let log = w.exim.log_of(&id).join("\n");
    assert!(log.contains("pidfil") && log.contains("line 2"), "Exim's log names the key and line: {log}");

    // Writable by others: not trusted.
    w.exim.cagepipe_toml(&good);
    std::fs::set_permissions(w.exim.dir.join("etc-add/cagepipe/cagepipe.toml"), std::fs::Permissions::from_mode(0o666))
        .unwrap();
    w.exim.deliver(&id);
    let v = w.exim.verdict(&id, &w.rcpt());
    assert!(matches!(v, Verdict::Deferred(_)), "{v:?}");
    let log = w.exim.log_of(&id).join("\n");
    assert!(log.contains("writable"), "Exim's log says the file is writable by others: {log}");
    assert!(w.exim.on_queue(&id) && w.no_report(), "nothing ran, nothing lost");

    w.exim.cagepipe_toml(&good);
    w.exim.deliver(&id);
    assert_eq!(w.exim.verdict(&id, &w.rcpt()), Verdict::Delivered, "{:?}", w.exim.log_of(&id));
    w.assert_contained(&w.report());
}

// 10 -----------------------------------------------------------------------

#[test]
fn the_command_dies_from_sigterm_sent_inside_the_container() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let w = World::with_container("sigterm");
    w.exim.write_conf(&generic(&w.exim));
    w.forward(&format!("|{PROBE} report --out {} --sleep 60\n", w.report_path()));
    let id = w.exim.submit("sender@example.org", &[&w.rcpt()], &message("term", "x\n"));
    let exim = w.exim.command(&["-M", &id]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let written = || std::fs::read_to_string(w.inside("report")).is_ok_and(|t| t.contains("\nhome_marker="));
    assert!(wait_for(Duration::from_secs(20), written), "the command started and reported");
    let inner_pid = w.report()["pid"].clone();
    // Exim ignores SIGTERM and hands that on; cagepipe resets it.
    let kill = w.container().nsenter().args(["kill", "-TERM", &inner_pid]).output().unwrap();
    assert!(kill.status.success(), "{}", String::from_utf8_lossy(&kill.stderr));
    let out = exim.wait_with_output().unwrap();
    assert!(out.status.success());
    match w.exim.verdict(&id, &w.rcpt()) {
        Verdict::Failed(line) => assert!(line.contains("terminated by signal 15"), "{line}"),
        other => panic!("{other:?}"),
    }
}

// 11 -----------------------------------------------------------------------

#[test]
fn postfix_style_dash_c_runs_through_the_containers_shell() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    // Postfix's local(8) with `local_command_shell = /usr/sbin/cagepipe -c`
    // runs `cagepipe -c 'COMMAND'` as the user, with the message on stdin.
    // Postfix and Exim cannot both be installed on Debian, so the rig plays
    // local(8): same user, same group, same arguments.
    let w = World::with_container("shell");
    let home = w.user().home.display().to_string();
    // Shell syntax only a shell understands; the test -x is true only inside.
    let script = format!(
        "test -x {PROBE} || exit 9; X='two words'; probe report --stdin-hash --out \"$HOME/report\" \"$X\" $((6*7)) | cat; exit 7"
    );
    let d =
        rig::deliver(&w.cage.config, w.cage.caller, &["-c".into(), script.into()], &[("HOME", &home)], b"message\n");
    assert_eq!(d.code(), Some(7), "the shell's status: {d:?}");
    let r = w.report();
    w.assert_contained(&r);
    assert_eq!(r["argv_5"], "two words");
    assert_eq!(r["argv_6"], "42");
    assert_eq!(r["stdin_len"], "8", "the message reached the command through the shell");
}

// Debian, cPanel ------------------------------------------------------------

/// Debian's own exim4 configuration, generated by update-exim4.conf from a
/// copy of /etc/exim4 with the shipped Debian snippet installed the way
/// exim-config/README.md says: as a .rul file (split), or in place of the
/// address_pipe block of the template (non-split).
fn debian(exim: &Exim, split: bool) -> String {
    let confdir = exim.dir.join("etc-exim4");
    let cp = std::process::Command::new("cp").arg("-a").arg("/etc/exim4").arg(&confdir).status().unwrap();
    assert!(cp.success());
    std::fs::write(
        confdir.join("update-exim4.conf.conf"),
        format!(
            "dc_eximconfig_configtype='local'\ndc_other_hostnames=''\ndc_local_interfaces='127.0.0.1'\n\
             dc_readhost=''\ndc_relay_domains=''\ndc_minimaldns='false'\ndc_relay_nets=''\ndc_smarthost=''\n\
             CFILEMODE='644'\ndc_use_split_config='{split}'\ndc_hide_mailname=''\ndc_mailname_in_oh='true'\n\
             dc_localdelivery='mail_spool'\n"
        ),
    )
    .unwrap();
    let rul = snippet("debian/30_exim4-config_address_pipe.rul");
    if split {
        std::fs::copy(&rul, confdir.join("conf.d/transport/30_exim4-config_address_pipe.rul")).unwrap();
    } else {
        let template = std::fs::read_to_string(confdir.join("exim4.conf.template")).unwrap();
        let start = template.find("\naddress_pipe:\n").expect("Debian's template has an address_pipe transport") + 1;
        let end = start + template[start..].find("\n\n").expect("the block ends with an empty line");
        let edited = format!("{}.include {}{}", &template[..start], rul.display(), &template[end..]);
        std::fs::write(confdir.join("exim4.conf.template"), edited).unwrap();
    }
    let out = exim.dir.join("debian.conf");
    let gen =
        std::process::Command::new("update-exim4.conf").arg("-d").arg(&confdir).arg("-o").arg(&out).output().unwrap();
    assert!(gen.status.success(), "update-exim4.conf: {}", String::from_utf8_lossy(&gen.stderr));
    let generated = std::fs::read_to_string(&out).unwrap();
    // Debian's configuration takes its spool from the SPOOLDIR macro and
    // sets no log_file_path: both go first.
    format!("SPOOLDIR = {d}/spool\nlog_file_path = {d}/log/%slog\n{generated}", d = exim.dir.display())
}

fn debian_forward_is_contained(short: &str, split: bool) {
    let w = World::with_container(short);
    w.exim.write_conf(&debian(&w.exim, split));
    w.exim.etc_file("aliases", "postmaster: root\n");
    w.forward(&format!("|{PROBE} report --stdin-hash --out {}\n", w.report_path()));
    let (id, v) = w.exim.send(&w.rcpt(), &message(short, "via Debian's routers\n"));
    assert_eq!(v, Verdict::Delivered, "{:?}", w.exim.log_of(&id));
    let line = w.exim.log_of(&id).into_iter().find(|l| l.contains(" => ")).unwrap();
    assert!(
        line.contains("R=userforward T=address_pipe"),
        "Debian's userforward router, cagepipe's address_pipe: {line}"
    );
    let r = w.report();
    w.assert_contained(&r);
    assert_eq!(r["cwd"], w.user().home.display().to_string());
}

#[test]
fn debian_split_config_with_the_rul_transport_delivers_inside() {
    let Some(_test) = rig::need(&NEEDS_DEBIAN) else { return };
    debian_forward_is_contained("debsplit", true);
}

#[test]
fn debian_template_with_the_transport_replaced_delivers_inside() {
    let Some(_test) = rig::need(&NEEDS_DEBIAN) else { return };
    debian_forward_is_contained("debtmpl", false);
}

/// cPanel-like virtual alias routing that picks its pipe transport with the
/// shipped expression, over the shipped transport and a stand-in for
/// cPanel's stock one.
fn cpanel(exim: &Exim) -> String {
    format!(
        "{main}.include {macro_}\n\
         domainlist local_domains = example.test : unowned.test\n\
         begin routers\n\
         virtual_aliases:\n  driver = redirect\n  domains = +local_domains\n  allow_fail\n  allow_defer\n  \
         data = ${{lookup{{$local_part@$domain}}lsearch{{/etc/valiases-test}}}}\n  \
         pipe_transport = CAGEPIPE_PIPE_TRANSPORT\n\
         begin transports\n\
         virtual_address_pipe:\n  driver = pipe\n  user = nobody\n  return_output\n\
         .include {transport}\n",
        main = exim.private_main(),
        macro_ = snippet("cpanel/pipe_transport.conf").display(),
        transport = snippet("cpanel/transport.conf").display()
    )
}

#[test]
fn cpanel_forwarder_pipe_of_an_account_domain_runs_inside() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let w = World::with_container("cpanel");
    w.exim.write_conf(&cpanel(&w.exim));
    w.exim.etc_file("userdomains", &format!("example.test: {}\n*: nobody\n", w.user().name));
    w.exim.etc_file(
        "valiases-test",
        &format!("tickets@example.test: |{PROBE} report --out {}\nother@unowned.test: |/bin/true\n", w.report_path()),
    );
    let (id, v) = w.exim.send("tickets@example.test", &message("cpanel", "x\n"));
    assert_eq!(v, Verdict::Delivered, "{:?}", w.exim.log_of(&id));
    let line = w.exim.log_of(&id).into_iter().find(|l| l.contains(" => ")).unwrap();
    assert!(line.contains("T=cagepipe_virtual_address_pipe"), "{line}");
    let r = w.report();
    w.assert_contained(&r);
    assert_eq!(r["cwd"], "/");

    // A domain no account owns keeps cPanel's stock transport (as nobody).
    let (id, v) = w.exim.send("other@unowned.test", &message("unowned", "x\n"));
    assert_eq!(v, Verdict::Delivered, "{:?}", w.exim.log_of(&id));
    let line = w.exim.log_of(&id).into_iter().find(|l| l.contains(" => ")).unwrap();
    assert!(line.contains("T=virtual_address_pipe"), "{line}");
}

// cagepipe check: the Exim side -----------------------------------------------

/// `cagepipe check --exim-config CONF` as root, with /usr/sbin/cagepipe and
/// /etc/cagepipe as the deliveries see them: exit code and output.
fn check_exim(exim: &Exim) -> (i32, String) {
    let conf = exim.conf.to_str().unwrap().to_string();
    let out =
        exim.namespaced("/usr/sbin/cagepipe", &["check", "--exim", EXIM, "--exim-config", &conf]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().expect("exited"), text)
}

fn problem_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("exim problem")).collect()
}

#[test]
fn check_finds_every_shipped_snippet_clean() {
    let Some(_test) = rig::need(&NEEDS_DEBIAN) else { return };
    let w = World::new("lintok");
    let configs: Vec<(&str, String, &[&str])> = vec![
        ("generic", generic(&w.exim), &["cagepipe_pipe"]),
        ("debian split", debian(&w.exim, true), &["address_pipe"]),
        ("directadmin", directadmin(&w.exim), &["virtual_address_pipe", "address_pipe"]),
        ("cpanel", cpanel(&w.exim), &["cagepipe_virtual_address_pipe"]),
    ];
    for (what, conf, transports) in configs {
        w.exim.write_conf(&conf);
        let (code, text) = check_exim(&w.exim);
        assert_eq!(code, 0, "{what}:\n{text}");
        assert!(problem_lines(&text).is_empty(), "{what}:\n{text}");
        assert!(text.contains("CONFIGURATION OK"), "{what}:\n{text}");
        for t in transports {
            assert!(
                text.lines().any(|l| l.starts_with("exim transport") && l.contains(&format!(" {t}: ok"))),
                "{what}: {t} not judged ok:\n{text}"
            );
        }
    }
}

#[test]
fn check_reports_each_broken_variant_of_the_generic_transport() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let w = World::new("lintbad");
    let shipped = std::fs::read_to_string(snippet("exim.conf")).unwrap();
    let variants = [
        ("  force_command\n", "", "force_command is missing"),
        ("  force_command\n", "  force_command\n  use_shell\n", "use_shell is set"),
        ("--raw-pipe=$address_pipe", "-- $address_pipe", "bare `$address_pipe`"),
        ("  group = cagepipe\n", "", "group is not set"),
        ("  group = cagepipe\n", "  group = mail\n", "group mail does not match"),
        ("  temp_errors = 75:73\n", "  temp_errors = 73\n", "does not contain 75"),
    ];
    for (i, (from, to, expect)) in variants.iter().enumerate() {
        assert!(shipped.contains(from), "the shipped exim.conf has {from:?}");
        let variant = w.exim.dir.join(format!("variant{i}.conf"));
        std::fs::write(&variant, shipped.replace(from, to)).unwrap();
        w.exim.write_conf(&format!("{}.include {}\n", w.exim.private_main(), variant.display()));
        let (code, text) = check_exim(&w.exim);
        let problems = problem_lines(&text);
        assert_eq!(problems.len(), 1, "{to:?}:\n{text}");
        assert!(problems[0].contains("cagepipe_pipe: ") && problems[0].contains(expect), "{to:?}:\n{text}");
        assert_eq!(code, 78, "{to:?}:\n{text}");
        assert!(text.contains("EXIM CONFIGURATION: 1 problem(s)"), "{text}");
    }

    // A configuration Exim itself rejects is a problem too.
    w.exim.write_conf("this is not an exim configuration\n");
    let (code, text) = check_exim(&w.exim);
    assert_eq!(code, 78, "{text}");
    assert!(
        problem_lines(&text)
            .iter()
            .any(|l| l.contains("-bP transport_list failed: Exim configuration error in line 1")),
        "Exim's own reason: {text}"
    );
    // The same for monitoring, as JSON.
    let conf = w.exim.conf.to_str().unwrap().to_string();
    let out = w
        .exim
        .namespaced("/usr/sbin/cagepipe", &["check", "--format=json", "--exim", EXIM, "--exim-config", &conf])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let j = rig::CheckJson::parse(&out.stdout, &out);
    assert_eq!(j.verdict(), "CONFIGURATION OK");
    assert_eq!(j.exit(), 78);
    assert_eq!(j.exim_problem_count(), 1);
    assert!(j.exim_problems()[0].contains("Exim configuration error"), "{j}");
}

// rollout ------------------------------------------------------------------

/// The probe's report of a run on the host, from the user's host home.
fn host_report(user: &User, name: &str) -> BTreeMap<String, String> {
    let path = user.home.join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("no probe report at {}: {e}", path.display()));
    let _ = std::fs::remove_file(&path);
    rig::parse_report(&bytes)
}

#[test]
fn rollout_runs_an_uncontained_account_like_a_plain_pipe_and_a_listed_one_inside() {
    let Some(_test) = rig::need(&NEEDS) else { return };
    let w = World::with_container("rollout");
    let probe = rig::probe_binary().display().to_string();
    let forward_on_host = format!("|{probe} report --out {}/report-host 'a b'\n", w.user().home.display());

    // Without cagepipe: what Exim itself gives the command.
    let plain = Exim::new("rollout-plain");
    plain.write_conf(&without_cagepipe(&plain));
    w.forward(&forward_on_host);
    let (_, v) = plain.send(&w.rcpt(), &message("plain", "x\n"));
    assert_eq!(v, Verdict::Delivered, "{v:?}");
    let without = host_report(w.user(), "report-host");

    // force_command on, the account not contained yet.
    w.exim.write_conf(&generic(&w.exim));
    w.exim.cagepipe_toml(&format!("{}\n[rollout]\ncontain = \"none\"\n", w.toml()));
    let (id, v) = w.exim.send(&w.rcpt(), &message("rollout", "x\n"));
    assert_eq!(v, Verdict::Delivered, "{:?}", w.exim.log_of(&id));
    let with = host_report(w.user(), "report-host");
    assert!(w.no_report(), "nothing ran in the container");
    assert_eq!(with["ns_pid"], rig::host_ns_inode("pid").to_string(), "on the host");
    // Everything Exim decides is the same (ids, groups, capabilities,
    // no_new_privs, environment, cwd). What cagepipe always does
    // differently: it resets the signals Exim leaves ignored and closes
    // descriptors above 2 that Exim's caller leaked. The message id and
    // process ids are per delivery; the mount namespace is the test rig's.
    let per_delivery = ["pid", "ppid", "pgid", "sid", "sig_ign", "fds", "env_MESSAGE_ID", "ns_mnt"];
    let differing: std::collections::BTreeSet<String> = with
        .keys()
        .chain(without.keys())
        .filter(|k| with.get(*k) != without.get(*k))
        .filter(|k| !per_delivery.contains(&k.as_str()))
        .cloned()
        .collect();
    assert!(
        differing.is_empty(),
        "differs from a plain pipe: {:?}",
        differing.iter().map(|k| (k, with.get(k), without.get(k))).collect::<Vec<_>>()
    );
    assert_eq!(with["uid"], w.user().uid.to_string());
    assert_eq!(with["argv_4"], "a b");
    assert_eq!(with["env_MESSAGE_ID"], id, "Exim's own variables");
    assert_eq!(with["fds"], "0,1,2");
    assert_eq!(u64::from_str_radix(&with["sig_ign"], 16).unwrap(), 0, "cagepipe resets Exim's ignored signals");

    // The account listed: the same kind of pipe runs inside its container.
    w.exim.cagepipe_toml(&format!("{}\n[rollout]\ncontain = [\"{}\"]\n", w.toml(), w.user().name));
    w.forward(&format!("|{PROBE} report --out {}\n", w.report_path()));
    let (id, v) = w.exim.send(&w.rcpt(), &message("contained", "x\n"));
    assert_eq!(v, Verdict::Delivered, "{:?}", w.exim.log_of(&id));
    w.assert_contained(&w.report());
}
