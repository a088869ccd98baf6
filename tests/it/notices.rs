//! `cagepipe survey --notices DIR`: one message per account whose pipes
//! need attention, over a fixture server (synthetic accounts, a real
//! container for the account whose pipe is ready, DirectAdmin aliases with
//! a domain owner, hostile names and pipe texts). Every notice is parsed by
//! a real mail parser (`mail-parser`), and one goes through a real Exim
//! (`exim4 -t`) into a mailbox and arrives intact.

use crate::rig;
use crate::rig::exim as mta;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders};
use rig::{ConfigDir, Delivery};
use serde_json::Value;

const PROBE: &str = rig::PROBE_IN_CONTAINER;

/// Root (and Exim, when `exim`) or a loud skip; with CAGEPIPE_STRICT=1 a
/// test that cannot run fails.
fn can_run(_test: &str, exim: bool) -> Option<rig::need::Running> {
    if exim {
        rig::need(&[rig::Need::Root, rig::Need::Exim])
    } else {
        rig::need(&[rig::Need::Root])
    }
}

/// A fixture server under one root-owned directory.
struct Server {
    dir: PathBuf,
    passwd: Vec<String>,
    pids: PathBuf,
    config: ConfigDir,
}

impl Server {
    fn new(name: &str) -> Server {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = rig::scratch().join(format!("notices-{name}-{}", N.fetch_add(1, Ordering::SeqCst)));
        let pids = dir.join("pids");
        for d in [&dir, &pids, &dir.join("etc"), &dir.join("home")] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let config = ConfigDir::new(&format!("[container]\npidfile = \"{}/{{user}}.pid\"\n", pids.display()));
        Server { dir, passwd: Vec::new(), pids, config }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// A root-owned file (and its directory).
    fn file(&self, rel: &str, contents: &[u8], mode: u32) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// An account with real name `gecos`, a home under the fixture (named
    /// `home_name`) and a ~/.forward holding `forward` if given.
    fn account(&mut self, name: &str, uid: u32, gecos: &[u8], home_name: &str, forward: Option<&[u8]>) -> PathBuf {
        let home = self.path(&format!("home/{home_name}"));
        std::fs::create_dir_all(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(uid), Some(uid)).unwrap();
        let mut line = format!("{name}:x:{uid}:{uid}:").into_bytes();
        line.extend_from_slice(gecos);
        line.extend_from_slice(format!(":{}:/bin/sh", home.display()).as_bytes());
        self.passwd.push(String::from_utf8(line).unwrap());
        if let Some(text) = forward {
            let f = home.join(".forward");
            std::fs::write(&f, text).unwrap();
            std::os::unix::fs::chown(&f, Some(uid), Some(uid)).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        home
    }

    fn survey(&self, extra: &[OsString]) -> Delivery {
        self.file("etc/passwd", format!("{}\n", self.passwd.join("\n")).as_bytes(), 0o644);
        self.file("etc/group", b"", 0o644);
        let mut args: Vec<OsString> = vec!["--config".into(), self.config.file().into(), "survey".into()];
        for (flag, rel) in [("--passwd", "etc/passwd"), ("--group", "etc/group"), ("--directadmin", "virtual")] {
            args.push(flag.into());
            args.push(self.path(rel).into());
        }
        args.extend(["--cpanel".into(), self.path("cpanel").into()]);
        args.extend(extra.iter().cloned());
        rig::run_as_root(&args, b"")
    }
}

/// The fixture tree (homes, notices, 10,000 of them in the big test) goes
/// with the test.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn json(d: &Delivery) -> Value {
    serde_json::from_slice(&d.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {d:?}"))
}

/// The header names of a raw message, in order, checking on the way that
/// every line of the header block is a field or a folded continuation.
fn header_names(raw: &str) -> Vec<String> {
    let head = raw.split("\n\n").next().unwrap();
    let mut names = Vec::new();
    for line in head.lines() {
        if line.starts_with(' ') {
            assert!(!names.is_empty(), "a continuation before any field:\n{raw}");
            continue;
        }
        let (name, _) = line.split_once(':').unwrap_or_else(|| panic!("not a header field: {line:?}\n{raw}"));
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{line:?}");
        names.push(name.to_string());
    }
    for line in raw.lines() {
        assert!(line.len() <= 998, "a line longer than RFC 5322 allows");
    }
    names
}

fn to_of(m: &Message) -> (Option<String>, String) {
    let Some(Address::List(list)) = m.to() else { panic!("no To list") };
    assert_eq!(list.len(), 1, "exactly one recipient: {list:?}");
    (list[0].name.as_deref().map(str::to_string), list[0].address.as_deref().unwrap().to_string())
}

fn text_of(m: &Message) -> String {
    assert_eq!(m.parts.len(), 1, "one text/plain part, no MIME structure");
    m.body_text(0).expect("a text body").into_owned()
}

const EXPECTED_HEADERS: [&str; 8] =
    ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"];

#[test]
fn each_account_with_pipes_needing_attention_gets_one_message_that_parses() {
    let Some(_running) = can_run("each_account_with_pipes_needing_attention_gets_one_message_that_parses", false)
    else {
        return;
    };
    let mut s = Server::new("main");
    // ready-ntc: its only pipe is ready (a running container has the probe).
    let c = rig::Container::start(
        &rig::unique_name("notices"),
        &rig::ContainerOpts { pidfile: Some(s.pids.join("ready-ntc.pid")), ..Default::default() },
    );
    s.account("ready-ntc", 310_001, b"Ready Person", "ready-ntc", Some(format!("|{PROBE} report\n").as_bytes()));
    // three-ntc: two pipes in ~/.forward, one in an alias file (no container).
    let three_home = s.account(
        "three-ntc",
        310_002,
        b"Theo Three,Room 1",
        "three-ntc",
        Some(b"# mine\n|/usr/bin/ticket-in\n\\three-ntc\n\"|/usr/bin/php -q /srv/list.php\"\n"),
    );
    let extra = s.file("etc/lists", b"lists: \"|/usr/bin/mailman post lists\"\n", 0o644);
    // owner-ntc owns shop.test; the alias pipe there is theirs. Its text
    // tries to add a header and a MIME part (with raw carriage returns, a
    // carriage return, which some mail software reads as a line end).
    s.account("owner-ntc", 310_003, b"", "owner-ntc", None);
    s.file("virtual/domainowners", b"shop.test: owner-ntc\n", 0o644);
    s.file(
        "virtual/shop.test/aliases",
        b"orders: \"|/usr/bin/orders\rBcc: victim@example.org\r\r--x\rContent-Type: text/html\r.\r\"\n",
        0o600,
    );
    s.file("virtual/nobody.test/aliases", b"x: \"|/usr/bin/x\"\n", 0o600);
    // hostile-ntc: a real name and a pipe with non-ASCII, control and
    // bidi characters, a home with a non-ASCII name.
    let gecos = "J\u{fc}rgen \x1b[31mM\u{fc}ller\u{202e}\x07 \"Boss\" <x@y>".as_bytes();
    let pipe = "|/usr/bin/pr\u{f6}g \x1b]0;owned\x07 \u{202e}txt.exe\r.\rSubject: injected\n";
    let hostile_home = s.account("hostile-ntc", 310_004, gecos, "h\u{e9}l\u{e8}ne", Some(pipe.as_bytes()));
    let contacts = s.file("etc/contacts", b"owner-ntc: billing@shop.test # from the panel\n", 0o644);

    let dir = s.path("notices");
    let lists = format!("{}:three-ntc", extra.display());
    let args = |more: &[&str]| -> Vec<OsString> {
        let mut a = os(&["--format", "json", "--aliases", &lists, "--mail-domain", "example.test"]);
        a.extend(os(&["--notices", dir.to_str().unwrap(), "--contacts", contacts.to_str().unwrap()]));
        a.extend(os(more));
        a
    };
    let d = s.survey(&args(&[]));
    assert_eq!(d.code(), Some(1), "{d:?}");
    let j = json(&d);
    let n = &j["notices"];
    assert_eq!(n["written"], 3, "{n}");
    assert_eq!(n["pipes"], 5, "3 + 1 + 1: {n}");
    assert_eq!(n["unaddressed"], 1, "nobody.test has no owner: {n}");
    assert_eq!(n["domain"], "example.test");
    let by_account: BTreeMap<String, Value> = n["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["account"].as_str().unwrap().to_string(), a.clone()))
        .collect();
    assert_eq!(by_account.keys().collect::<Vec<_>>(), ["hostile-ntc", "owner-ntc", "three-ntc"]);
    assert_eq!(by_account["three-ntc"]["pipes"], 3);
    assert_eq!(by_account["owner-ntc"]["contact"], "billing@shop.test");
    assert_eq!(by_account["three-ntc"]["contact"], "three-ntc@example.test");
    for (account, a) in &by_account {
        assert_eq!(a["file"], dir.join(format!("{account}.eml")).to_str().unwrap());
    }
    let files: BTreeSet<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(files, ["hostile-ntc.eml", "owner-ntc.eml", "three-ntc.eml"].map(String::from).into());
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o700, 0), "DIR is root's, 0700");
    for f in &files {
        assert_eq!(std::fs::metadata(dir.join(f)).unwrap().mode() & 0o777, 0o600);
    }

    // three-ntc: three pipes in two files, each with where, pipe, reason and advice.
    let raw = std::fs::read_to_string(dir.join("three-ntc.eml")).unwrap();
    assert_eq!(header_names(&raw), EXPECTED_HEADERS);
    let m = MessageParser::default().parse(raw.as_bytes()).expect("parses");
    assert_eq!(to_of(&m), (Some("Theo Three".into()), "three-ntc@example.test".into()));
    assert_eq!(m.subject(), Some("Action needed: 3 mail pipes of your account three-ntc"));
    assert!(m.date().is_some() && m.message_id().is_some_and(|id| id.ends_with("@example.test")), "{raw}");
    assert_eq!(
        m.content_type().map(|c| (c.ctype(), c.subtype(), c.attribute("charset"))),
        Some(("text", Some("plain"), Some("utf-8")))
    );
    let body = text_of(&m);
    let fwd = format!("{}/.forward", three_home.display());
    for needle in [
        "Hello Theo Three,".to_string(),
        format!(
            "1. {fwd}, line 2\n   Pipe:     |/usr/bin/ticket-in\n   Problem:  The account's container is not running"
        ),
        format!("2. {fwd}, line 4\n   Pipe:     |/usr/bin/php -q /srv/list.php\n"),
        format!("3. {}, line 1 (address lists)\n   Pipe:     |/usr/bin/mailman post lists\n", extra.display()),
        "   To do:    Make sure your container is running.".into(),
        "the postmaster of example.test".into(),
    ] {
        assert!(body.contains(&needle), "{needle:?} not in:\n{body}");
    }
    assert!(!body.contains("{{"), "{body}");

    // owner-ntc: the alias pipe of the domain they own; its newlines stay
    // escaped text in the body: no Bcc, no second part.
    let raw = std::fs::read_to_string(dir.join("owner-ntc.eml")).unwrap();
    assert_eq!(header_names(&raw), EXPECTED_HEADERS, "no header added:\n{raw}");
    let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
    assert_eq!(to_of(&m), (None, "billing@shop.test".into()));
    assert!(m.bcc().is_none() && m.header("Bcc").is_none());
    let body = text_of(&m);
    assert!(
        body.contains("   Pipe:     |/usr/bin/orders\\x0dBcc: victim@example.org\\x0d\\x0d--x\\x0dContent-Type: text/html\\x0d.\n"),
        "{body}"
    );
    assert!(body.contains("(address orders)"), "{body}");
    assert!(body.trim_end().ends_with("the postmaster of example.test"), "the body is whole: {body}");

    // hostile-ntc: the real name is encoded (RFC 2047), escaped, and only
    // a display name; the pipe's control and bidi characters are escaped.
    let raw = std::fs::read_to_string(dir.join("hostile-ntc.eml")).unwrap();
    assert_eq!(header_names(&raw), EXPECTED_HEADERS, "{raw}");
    assert!(raw.split("\n\n").next().unwrap().is_ascii(), "headers are ASCII:\n{raw}");
    assert!(raw.contains("=?utf-8?B?"), "{raw}");
    let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
    let (name, address) = to_of(&m);
    assert_eq!(address, "hostile-ntc@example.test");
    assert_eq!(name.as_deref(), Some("J\u{fc}rgen \\x1b[31mM\u{fc}ller\\u{202e}\\x07 \"Boss\" <x@y>"));
    let body = text_of(&m);
    assert!(
        body.contains(
            "   Pipe:     |/usr/bin/pr\u{f6}g \\x1b]0;owned\\x07 \\u{202e}txt.exe\\x0d.\\x0dSubject: injected\n"
        ),
        "{body}"
    );
    assert!(body.contains(&format!("{}/.forward, line 1", hostile_home.display())), "{body}");
    assert!(!body.chars().any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'), "{body:?}");
    assert!(
        m.header("Subject").is_some() && m.subject() == Some("Action needed: 1 mail pipe of your account hostile-ntc")
    );

    // Existing notices stay unless --force; then they are replaced.
    let before = std::fs::read(dir.join("three-ntc.eml")).unwrap();
    let d = s.survey(&args(&[]));
    assert_eq!(d.code(), Some(75), "{d:?}");
    assert!(
        d.stderr.contains("already holds hostile-ntc.eml, owner-ntc.eml, three-ntc.eml (3 in all)"),
        "{}",
        d.stderr
    );
    assert!(d.stderr.contains("--force"), "{}", d.stderr);
    assert_eq!(std::fs::read(dir.join("three-ntc.eml")).unwrap(), before);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let d = s.survey(&args(&["--force"]));
    assert_eq!(d.code(), Some(1), "{d:?}");
    assert_ne!(std::fs::read(dir.join("three-ntc.eml")).unwrap(), before, "a new Date and Message-ID");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3, "no temporary files left");

    // The text output ends with the notices' summary line.
    let mut text_args = args(&["--force"]);
    text_args.retain(|a| a != "--format" && a != "json");
    let d = s.survey(&text_args);
    let out = String::from_utf8(d.stdout).unwrap();
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("3 notices written to {} for 5 pipes (1 not addressed to a customer", dir.display())),
        "{out}"
    );
    assert!(last.ends_with("default address USER@example.test (--mail-domain)"), "{last}");
    drop(c);
}

#[test]
fn a_broken_template_stops_before_the_survey_with_line_and_column() {
    let Some(_running) = can_run("a_broken_template_stops_before_the_survey_with_line_and_column", false) else {
        return;
    };
    let mut s = Server::new("template");
    s.account("tmpl-ntc", 310_101, b"", "tmpl-ntc", Some(b"|/usr/bin/nothing-here\n"));
    let dir = s.path("notices");
    let notices = ["--notices", dir.to_str().unwrap(), "--mail-domain", "example.test"];
    let bad = s.file("etc/bad.tmpl", b"Subject: Pipes of {{user}}\n\nHello {{nmae}},\n", 0o644);
    let mut args = os(&notices);
    args.extend(os(&["--template", bad.to_str().unwrap()]));
    let d = s.survey(&args);
    assert_eq!(d.code(), Some(64), "{d:?}");
    assert!(
        d.stderr.contains(&format!("{}: line 3, column 7: unknown placeholder `{{{{nmae}}}}`", bad.display())),
        "{}",
        d.stderr
    );
    assert!(d.stdout.is_empty() && !dir.exists(), "nothing surveyed, nothing written");

    // A template of one's own: fields, the loop, a section, From.
    let good = s.file(
        "etc/good.tmpl",
        b"Subject: [{{domain}}] {{count}} pipe{{s}} for {{user}}\nFrom: Support <support@example.test>\n\n\
          Dear {{name}} ({{contact}}),\n{{#pipes}}\n* {{code}} at {{file}}:{{line}}{{?alias}} ({{alias}}){{/alias}}\n{{/pipes}}\n",
        0o644,
    );
    let mut args = os(&notices);
    args.extend(os(&["--template", good.to_str().unwrap()]));
    let d = s.survey(&args);
    assert_eq!(d.code(), Some(1), "{d:?}");
    let raw = std::fs::read_to_string(dir.join("tmpl-ntc.eml")).unwrap();
    let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
    assert_eq!(m.subject(), Some("[example.test] 1 pipe for tmpl-ntc"));
    let Some(Address::List(from)) = m.from() else { panic!("no From") };
    assert_eq!(from[0].address.as_deref(), Some("support@example.test"));
    let forward = s.path("home/tmpl-ntc/.forward");
    assert_eq!(
        text_of(&m),
        format!("Dear tmpl-ntc (tmpl-ntc@example.test),\n* no-container at {}:1\n", forward.display())
    );
    // A header the template may not set is refused too.
    let evil = s.file("etc/evil.tmpl", b"Subject: x\nBcc: all@example.test\n\nbody\n", 0o644);
    let mut args = os(&notices);
    args.extend(os(&["--force", "--template", evil.to_str().unwrap()]));
    let d = s.survey(&args);
    assert_eq!(d.code(), Some(64), "{d:?}");
    assert!(d.stderr.contains("line 2, column 1: unknown header `Bcc:`"), "{}", d.stderr);
}

#[test]
fn a_notice_sent_through_exim_arrives_intact() {
    let Some(_running) = can_run("a_notice_sent_through_exim_arrives_intact", true) else { return };
    let mut s = Server::new("exim");
    let pipe = "|/usr/bin/pr\u{f6}g \x1b[2J \u{202e}x\n";
    s.account("mail-ntc", 310_201, "Zo\u{eb} \x07Mail".as_bytes(), "mail-ntc", Some(pipe.as_bytes()));
    let dir = s.path("notices");
    let d = s.survey(&os(&["--notices", dir.to_str().unwrap(), "--mail-domain", "example.test"]));
    assert_eq!(d.code(), Some(1), "{d:?}");
    let notice = std::fs::read(dir.join("mail-ntc.eml")).unwrap();

    // A private Exim that accepts any local address into one mailbox file,
    // as the Exim user, without an mbox "From " line.
    let exim = mta::Exim::new("notices");
    let mailboxes = exim.dir.join("mail");
    std::fs::create_dir_all(&mailboxes).unwrap();
    let out = std::process::Command::new("chown").arg("Debian-exim").arg(&mailboxes).output().unwrap();
    assert!(out.status.success());
    exim.write_conf(&format!(
        "{main}domainlist local_domains = example.test\nqualify_domain = example.test\n\
         begin routers\nlocal:\n  driver = accept\n  domains = +local_domains\n  transport = mailbox\n\
         begin transports\nmailbox:\n  driver = appendfile\n  file = {mb}/mailbox\n  user = Debian-exim\n  \
         message_prefix =\n  message_suffix =\n  envelope_to_add = false\n  return_path_add = false\n  delivery_date_add = false\n",
        main = exim.private_main(),
        mb = mailboxes.display()
    ));
    let sent = rig::run_with_stdin(exim.command(&["-odi", "-oi", "-t"]), &notice);
    assert!(sent.status.success(), "exim -t: {sent:?}\n{}", exim.mainlog());
    let delivered = std::fs::read(mailboxes.join("mailbox")).unwrap_or_else(|e| panic!("{e}\n{}", exim.mainlog()));
    // Root's -C makes Exim note that it dropped privileges; nothing else.
    let panics: Vec<String> =
        exim.paniclog().lines().filter(|l| !l.contains("lost privilege for using -C")).map(String::from).collect();
    assert!(panics.is_empty(), "{panics:?}");

    let original = MessageParser::default().parse(&notice).unwrap();
    let arrived = MessageParser::default().parse(&delivered).unwrap();
    assert_eq!(arrived.subject(), original.subject());
    assert_eq!(arrived.message_id(), original.message_id());
    assert_eq!(to_of(&arrived), to_of(&original));
    assert_eq!(to_of(&arrived).0.as_deref(), Some("Zo\u{eb} \\x07Mail"));
    assert_eq!(text_of(&arrived), text_of(&original));
    assert!(text_of(&arrived).contains("|/usr/bin/pr\u{f6}g \\x1b[2J \\u{202e}x"));
    // Byte for byte: the body as written, Exim's Received line on top.
    let body_of = |raw: &[u8]| -> Vec<u8> {
        let at = raw.windows(2).position(|w| w == b"\n\n").unwrap();
        raw[at..].to_vec()
    };
    assert_eq!(body_of(&delivered), body_of(&notice));
    assert!(matches!(arrived.header("Received"), Some(HeaderValue::Received(_))), "through Exim");
    let _ = std::fs::remove_dir_all(&exim.dir);
}

#[test]
fn notices_for_ten_thousand_accounts() {
    let Some(_running) = can_run("notices_for_ten_thousand_accounts", false) else { return };
    let mut s = Server::new("big");
    let n = 10_000;
    for i in 0..n {
        s.account(&format!("big{i:05}"), 320_000 + i, b"", &format!("big{i:05}"), Some(b"|/usr/bin/x\n"));
    }
    let dir = s.path("notices");
    let started = std::time::Instant::now();
    let d = s.survey(&os(&["--format=json"]));
    let survey_only = started.elapsed();
    assert_eq!(d.code(), Some(1), "{d:?}");
    let started = std::time::Instant::now();
    let d = s.survey(&os(&["--format=json", "--notices", dir.to_str().unwrap(), "--mail-domain", "example.test"]));
    let with_notices = started.elapsed();
    assert_eq!(d.code(), Some(1));
    let j = json(&d);
    assert_eq!(j["notices"]["written"], n);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), n as usize);
    // The figure for the README; not asserted (tests do not time things).
    eprintln!(
        "survey of {n} accounts with notices: {:.2} s wall ({:.2} s reported for the survey; the survey alone {:.2} s wall)",
        with_notices.as_secs_f64(),
        j["summary"]["seconds"].as_f64().unwrap(),
        survey_only.as_secs_f64()
    );
}
