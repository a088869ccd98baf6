//! A real Postfix: Debian's postfix delivers ~/.forward pipes through its
//! local(8) agent with `local_command_shell` running the installed cagepipe,
//! which runs each command inside the recipient's container.
//!
//! Debian cannot have exim4 (tests/exim.rs) and postfix installed together,
//! so the package is only unpacked (testbed/postfix: `apt-get download`,
//! `dpkg-deb -x` under target/postfix/root). Each Postfix here runs in a
//! private mount namespace whose /usr and /etc are read-only overlays that
//! add the unpacked tree and this instance's files (main.cf, master.cf,
//! cagepipe.toml, passwd and group with the `postfix` account and the
//! `postdrop` group), with its own queue and log under the test's scratch
//! directory. Its master runs in the foreground as a child of the test and
//! is stopped, daemons and all, when the test ends; the host's /etc and /usr
//! never change.
//!
//! What the README promises for Postfix, checked here: the command runs
//! inside the container; a container that is down makes cagepipe exit 75,
//! so Postfix defers and keeps the message, and delivers it once the
//! container is back; the command's exit status and signal reach Postfix
//! unchanged; and local(8) gives the command only the recipient's primary
//! group, so the binary must be executable by others (mode 0751) on a
//! Postfix host: with the packages' 0750 root:cagepipe, group membership
//! does not help and every pipe delivery defers.

use crate::rig;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rig::{Container, ContainerOpts, User};

const PROBE: &str = rig::PROBE_IN_CONTAINER;
const DOMAIN: &str = "example.test";
/// A loaded 2-core CI machine: Postfix's queue manager wakes every second.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// testbed/test sets CAGEPIPE_STRICT=1: a test that cannot run fails there.
fn strict() -> bool {
    std::env::var_os("CAGEPIPE_STRICT").is_some_and(|v| v == "1")
}

/// The unpacked Postfix, or why this test cannot run (a failure in strict
/// mode, a loud SKIP otherwise).
fn postfix_tree(test: &str) -> Option<PathBuf> {
    let why = if !nix::unistd::geteuid().is_root() {
        "needs root (real namespaces, mounts, test accounts)".to_string()
    } else {
        let script = rig::container::repo_dir().join("testbed/postfix");
        match Command::new(&script).stdin(Stdio::null()).stderr(Stdio::piped()).output() {
            Ok(out) if out.status.success() => {
                return Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
            }
            Ok(out) => format!("testbed/postfix failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => format!("{}: {e}", script.display()),
        }
    };
    assert!(!strict(), "{test} cannot run (CAGEPIPE_STRICT=1): {why}");
    eprintln!("SKIP {test}: {why}");
    None
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mkdir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The lowest id from `from` up that no line of `file` (passwd or group)
/// uses.
fn free_id(file: &str, from: u32) -> u32 {
    let used: Vec<u32> =
        std::fs::read_to_string(file).unwrap().lines().filter_map(|l| l.split(':').nth(2)?.parse().ok()).collect();
    (from..).find(|id| !used.contains(id)).unwrap()
}

/// A test account that is removed again, home and all, when the test ends.
struct Account {
    user: User,
}

impl Account {
    fn new(name: &str) -> Account {
        Account { user: rig::test_user(name) }
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        // useradd/userdel of other test processes hold the lock briefly.
        for _ in 0..50 {
            let out = Command::new("userdel").arg("--remove").arg(&self.user.name).stderr(Stdio::piped()).output();
            match out {
                Ok(o) if o.status.success() || String::from_utf8_lossy(&o.stderr).contains("does not exist") => return,
                // No mail spool for a test account: the account is gone all the same.
                Ok(o) if String::from_utf8_lossy(&o.stderr).contains("mail spool") => return,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        eprintln!("could not remove the test account {}", self.user.name);
    }
}

/// A cagepipe installed for Postfix: root:cagepipe with the packaged file
/// capabilities, and `mode`.
fn install_cagepipe(dir: &Path, mode: u32) -> PathBuf {
    let gid = rig::cagepipe_gid();
    mkdir(dir, 0o755);
    let bin = dir.join("cagepipe");
    std::fs::copy(env!("CARGO_BIN_EXE_cagepipe"), &bin).unwrap();
    nix::unistd::chown(&bin, Some(0.into()), Some(gid.into())).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(mode)).unwrap();
    let caps = include_str!("../../packaging/file-caps").trim();
    run_ok(Command::new("setcap").arg(caps).arg(&bin));
    bin
}

/// One private Postfix, its master a child of this test.
struct Postfix {
    dir: PathBuf,
    master: Child,
    /// Inode of the master's mount namespace: every Postfix process has it.
    namespace: u64,
    /// The namespace itself, held open: a namespace's inode number is
    /// reused once it is freed, and then it would name another test's
    /// container (whose processes `Drop` must never kill).
    _pinned: std::fs::File,
}

impl Postfix {
    /// Start a Postfix whose local(8) runs `cagepipe -c` for command
    /// deliveries; cagepipe reads `cagepipe_toml`; `member_of_cagepipe`
    /// accounts are listed in the cagepipe group of its /etc/group.
    fn start(tree: &Path, name: &str, cagepipe: &Path, cagepipe_toml: &str, member_of_cagepipe: &[&str]) -> Postfix {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = rig::scratch().join(format!("postfix-{name}-{}", N.fetch_add(1, Ordering::SeqCst)));
        let _ = std::fs::remove_dir_all(&dir);
        mkdir(&dir, 0o755);
        let etc = dir.join("etc");
        mkdir(&etc.join("postfix"), 0o755);
        mkdir(&etc.join("cagepipe"), 0o755);
        mkdir(&dir.join("spool"), 0o755);

        // The postfix account and postdrop group exist only in this
        // instance's /etc.
        let uid = free_id("/etc/passwd", 64000);
        let gid = free_id("/etc/group", 64000);
        let postdrop = free_id("/etc/group", gid + 1);
        let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        passwd.push_str(&format!("postfix:x:{uid}:{gid}:Postfix:/nonexistent:/usr/sbin/nologin\n"));
        let mut group = String::new();
        for line in std::fs::read_to_string("/etc/group").unwrap().lines() {
            let mut line = line.to_string();
            if line.starts_with("cagepipe:") && !member_of_cagepipe.is_empty() {
                let sep = if line.ends_with(':') { "" } else { "," };
                line = format!("{line}{sep}{}", member_of_cagepipe.join(","));
            }
            group.push_str(&line);
            group.push('\n');
        }
        group.push_str(&format!("postfix:x:{gid}:\npostdrop:x:{postdrop}:\n"));
        write(&etc.join("passwd"), &passwd, 0o644);
        write(&etc.join("group"), &group, 0o644);
        let data = dir.join("data");
        mkdir(&data, 0o700);
        nix::unistd::chown(&data, Some(uid.into()), Some(gid.into())).unwrap();
        write(&etc.join("cagepipe/cagepipe.toml"), cagepipe_toml, 0o644);

        let d = dir.display();
        // What a Postfix host needs for cagepipe (README): local_command_shell,
        // and command_execution_directory so that a .forward pipe starts in
        // the home, as with Exim. The rest keeps this instance to itself.
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {d}/spool\n\
             data_directory = {d}/data\n\
             maillog_file_prefixes = {d}\n\
             maillog_file = {d}/maillog\n\
             myhostname = mail.{DOMAIN}\n\
             mydomain = {DOMAIN}\n\
             myorigin = {DOMAIN}\n\
             mydestination = {DOMAIN}\n\
             inet_interfaces = loopback-only\n\
             inet_protocols = ipv4\n\
             alias_maps =\n\
             alias_database =\n\
             recipient_delimiter = +\n\
             biff = no\n\
             default_transport = error\n\
             relay_transport = error\n\
             smtputf8_enable = no\n\
             queue_run_delay = 1s\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 2s\n\
             local_command_shell = {} -c\n\
             command_execution_directory = $home\n",
            cagepipe.display()
        );
        write(&etc.join("postfix/main.cf"), &main_cf, 0o644);
        // Only what local delivery needs; no network listener at all.
        let master_cf = "\
pickup    unix  n       -       n       1       1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       1       1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
showq     unix  n       -       n       -       -       showq
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";
        write(&etc.join("postfix/master.cf"), master_cf, 0o644);

        // `postfix check` creates the queue directories; the master then
        // stays in the foreground (-d), a child of this test.
        let script = r#"set -e
tree=$1 etc=$2
mount -t overlay cptest-postfix -o "ro,lowerdir=$etc:$tree/etc:/etc" /etc
mount -t overlay cptest-postfix -o "ro,lowerdir=$tree/usr:/usr" /usr
postfix check
exec /usr/lib/postfix/sbin/master -d"#;
        let out = std::fs::File::create(dir.join("master.out")).unwrap();
        let master = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh"])
            .arg(tree)
            .arg(&etc)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start the Postfix master");
        // The master's own mount namespace, once unshare has made it. Its
        // inode tells this instance's processes apart (and is never the
        // host's: see `processes`).
        let host = rig::host_ns_inode("mnt");
        let mut master = master;
        let mut pinned = None;
        wait_for(Duration::from_secs(10), || {
            pinned = std::fs::File::open(format!("/proc/{}/ns/mnt", master.id()))
                .ok()
                .and_then(|f| Some((f.metadata().ok()?.ino(), f)))
                .filter(|(ino, _)| *ino != host);
            pinned.is_some()
        });
        let Some((namespace, pinned)) = pinned else {
            let _ = master.kill();
            let _ = master.wait();
            panic!("unshare did not give the Postfix master a mount namespace of its own");
        };
        let postfix = Postfix { dir, master, namespace, _pinned: pinned };
        let started = wait_for(DELIVERY_TIMEOUT, || postfix.maillog().contains("daemon started"));
        assert!(
            started,
            "the Postfix master did not start:\n{}\n{}",
            std::fs::read_to_string(postfix.dir.join("master.out")).unwrap_or_default(),
            postfix.maillog()
        );
        postfix
    }

    /// `program ARGS` as root in the master's mount namespace.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--mount")
            .arg(format!("--target={}", self.master.id()))
            .arg("--")
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/");
        cmd
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// Submit a message from `sender` (unique per message) to `rcpt` with
    /// sendmail(1); its queue id once pickup(8) has it.
    fn send(&self, sender: &str, rcpt: &str, body: &str) -> String {
        let message = format!("From: {sender}\nTo: {rcpt}\nSubject: {sender}\n\n{body}\n");
        let cmd = self.command("/usr/sbin/sendmail", &["-i", "-f", sender, rcpt]);
        let out = rig::run_with_stdin(cmd, message.as_bytes());
        assert!(out.status.success(), "sendmail failed: {out:?}");
        let pickup = format!(" from=<{sender}>");
        let mut id = None;
        wait_for(DELIVERY_TIMEOUT, || {
            id = self.maillog().lines().find(|l| l.contains("postfix/pickup[") && l.ends_with(&pickup)).and_then(|l| {
                let (_, rest) = l.split_once("]: ")?;
                Some(rest.split(':').next()?.to_string())
            });
            id.is_some()
        });
        id.unwrap_or_else(|| panic!("pickup(8) never logged the message from {sender}:\n{}", self.maillog()))
    }

    /// The first maillog line for message `id` to `rcpt` whose status
    /// (`sent`, `deferred`, `bounced`) is `status`; waits for it.
    fn wait_status(&self, id: &str, rcpt: &str, status: &str) -> String {
        let to = format!("{id}: to=<{rcpt}>");
        let want = format!(" status={status} ");
        let mut found = None;
        wait_for(DELIVERY_TIMEOUT, || {
            found = self.maillog().lines().find(|l| l.contains(&to) && l.contains(&want)).map(str::to_string);
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no status={status} for {id} to {rcpt} in Postfix's log:\n{}", self.maillog()))
    }

    /// Every status line of message `id` so far.
    fn statuses(&self, id: &str) -> Vec<String> {
        let prefix = format!("{id}: to=<");
        self.maillog().lines().filter(|l| l.contains(&prefix) && l.contains(" status=")).map(str::to_string).collect()
    }

    /// Is message `id` in Postfix's queue (`postqueue -p`)?
    fn queued(&self, id: &str) -> bool {
        run_ok(&mut self.command("/usr/sbin/postqueue", &["-p"])).contains(id)
    }

    /// Attempt every deferred message now (`postqueue -f`).
    fn flush(&self) {
        run_ok(&mut self.command("/usr/sbin/postqueue", &["-f"]));
    }

    /// Processes in the master's private mount namespace (the master and
    /// its daemons, the commands they run on the host side). Never the
    /// host's namespace: `start` made sure it is another one.
    fn processes(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        if self.namespace == rig::host_ns_inode("mnt") {
            return pids;
        }
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            if rig::process_running(pid)
                && std::fs::metadata(format!("/proc/{pid}/ns/mnt")).is_ok_and(|m| m.ino() == self.namespace)
            {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // SIGTERM to the master, which this test started: it stops its
        // daemons, then exits. Whatever is left in its private namespace
        // after that is a defect, reported (and only then killed).
        let master = nix::unistd::Pid::from_raw(self.master.id() as i32);
        let _ = nix::sys::signal::kill(master, nix::sys::signal::Signal::SIGTERM);
        let _ = self.master.wait();
        let mut gone = wait_for(Duration::from_secs(20), || self.processes().is_empty());
        // Postfix's own daemons now and then miss the master's group-wide
        // SIGTERM (one seen in about ten runs: qmgr and local, idle). They
        // are Postfix's, not a delivery's: told once more, they go. Any
        // other process left (cagepipe, a command) stays a defect.
        let daemon = |pid: &i32| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.to_string_lossy().contains("/lib/postfix/"))
        };
        if !gone && self.processes().iter().all(daemon) {
            for pid in self.processes() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
            }
            gone = wait_for(Duration::from_secs(10), || self.processes().is_empty());
        }
        let left = self.processes();
        let described = rig::describe_pids(&left);
        for &pid in &left {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if !gone && !std::thread::panicking() {
            panic!("Postfix left processes behind after its master stopped:\n{described}");
        }
    }
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// A root-owned pidfile directory and the cagepipe.toml that uses it.
fn pidfile_config(dir: &Path) -> (PathBuf, String) {
    let piddir = dir.join("pids");
    mkdir(&piddir, 0o755);
    let toml = format!("[container]\npidfile = \"{}/{{user}}.pid\"\n", piddir.display());
    (piddir, toml)
}

fn start_container(user: &User, piddir: &Path, test: &str) -> Container {
    let opts = ContainerOpts {
        users: vec![user.name.clone()],
        pidfile: Some(piddir.join(format!("{}.pid", user.name))),
        ..Default::default()
    };
    Container::start(&rig::unique_name(test), &opts)
}

/// `~/.forward+EXT` on the host, as local(8) reads it for user+EXT@domain.
fn forward(user: &User, extension: &str, text: &str) {
    let path = user.home.join(format!(".forward+{extension}"));
    write(&path, text, 0o644);
    nix::unistd::chown(&path, Some(user.uid.into()), Some(user.gid.into())).unwrap();
}

fn rcpt(user: &User, extension: &str) -> String {
    format!("{}+{extension}@{DOMAIN}", user.name)
}

/// A file in the user's home inside the container, as the host sees it.
fn inside(c: &Container, user: &User, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{}/root{}/{name}", c.pid, user.home.display()))
}

fn report(c: &Container, user: &User, name: &str) -> BTreeMap<String, String> {
    let path = inside(c, user, name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("no probe report at {}: {e}", path.display()));
    rig::parse_report(&bytes)
}

#[test]
fn postfix_runs_forward_pipes_inside_the_container_and_hears_their_status() {
    let Some(_running) = rig::need(&[rig::Need::Root]) else { return };
    let test = "postfix_runs_forward_pipes_inside_the_container_and_hears_their_status";
    let Some(tree) = postfix_tree(test) else { return };
    let account = Account::new("cptest-pfx-deliver");
    let user = &account.user;
    let scratch = rig::scratch().join("postfix-deliver");
    // The setting a Postfix host needs (README): executable by the mail
    // users, who are not asked to be in any group.
    let cagepipe = install_cagepipe(&scratch.join("bin"), 0o751);
    let (piddir, toml) = pidfile_config(&scratch);
    let mut container = start_container(user, &piddir, test);
    let postfix = Postfix::start(&tree, "deliver", &cagepipe, &toml, &[]);
    let home = user.home.display().to_string();

    // Delivered, inside: the namespaces, cgroups, ids and files are the
    // container's, the capabilities empty, the message on stdin, and the
    // command starts in the home (command_execution_directory = $home).
    forward(user, "inside", &format!("\"|{PROBE} report --save-stdin {home}/stdin --out {home}/report\"\n"));
    let id = postfix.send(&format!("inside@{DOMAIN}"), &rcpt(user, "inside"), "body line 7d1c");
    let line = postfix.wait_status(&id, &rcpt(user, "inside"), "sent");
    assert!(line.contains("delivered to command"), "{line}");
    let r = report(&container, user, "report");
    for ns in ["mnt", "pid", "uts", "ipc", "net", "cgroup"] {
        assert_eq!(r[&format!("ns_{ns}")], container.ns_inode(ns).to_string(), "{ns} namespace is the container's");
    }
    assert_eq!(r["hostname"], container.name);
    for cgroup in r["cgroup"].split(';') {
        assert!(cgroup.ends_with(":/"), "cgroup line {cgroup:?} is the container's own cgroup");
    }
    for k in ["uid", "euid", "suid", "fsuid"] {
        assert_eq!(r[k], user.uid.to_string(), "{k}");
    }
    for k in ["cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb"] {
        assert_eq!(u64::from_str_radix(&r[k], 16).unwrap(), 0, "{k} = {}", r[k]);
    }
    assert_eq!(r["no_new_privs"], "1");
    assert_eq!(r["home_marker"], container.name, "the files seen are the container's");
    assert_eq!(r["cwd"], home, "a .forward pipe starts in the home, inside");
    let stdin = std::fs::read_to_string(inside(&container, user, "stdin")).unwrap();
    assert!(stdin.contains("\nbody line 7d1c\n"), "the message reached the command:\n{stdin}");
    assert!(!postfix.queued(&id), "a delivered message leaves the queue");

    // The command's exit status reaches Postfix unchanged: 7 bounces with
    // "status 7", 75 (EX_TEMPFAIL) defers and keeps the message, a signal
    // is reported as that signal.
    forward(user, "seven", "\"|exit 7\"\n");
    let id = postfix.send(&format!("seven@{DOMAIN}"), &rcpt(user, "seven"), "x");
    let line = postfix.wait_status(&id, &rcpt(user, "seven"), "bounced");
    assert!(line.contains("Command died with status 7"), "{line}");

    forward(user, "tempfail", "\"|exit 75\"\n");
    let tempfail = postfix.send(&format!("tempfail@{DOMAIN}"), &rcpt(user, "tempfail"), "x");
    postfix.wait_status(&tempfail, &rcpt(user, "tempfail"), "deferred");
    // The queue manager logs the deferral, then moves the file from the
    // active queue to the deferred one: a listing between the two can miss
    // it (seen once in a full run).
    assert!(wait_for(DELIVERY_TIMEOUT, || postfix.queued(&tempfail)), "a deferred message stays in the queue");

    forward(user, "signal", "\"|kill -TERM $$\"\n");
    let id = postfix.send(&format!("signal@{DOMAIN}"), &rcpt(user, "signal"), "x");
    let statuses = |id: &str| postfix.statuses(id);
    assert!(
        wait_for(DELIVERY_TIMEOUT, || statuses(&id).iter().any(|l| l.contains("Command died with signal 15"))),
        "no 'Command died with signal 15' for {id}:\n{}",
        postfix.maillog()
    );

    // A container that is down: cagepipe exits 75, Postfix defers with
    // cagepipe's reason and keeps the message; once the container is back,
    // the next attempt delivers it, inside.
    container.stop().unwrap();
    forward(user, "down", &format!("\"|{PROBE} report --out {home}/after-restart\"\n"));
    let down = postfix.send(&format!("down@{DOMAIN}"), &rcpt(user, "down"), "x");
    let line = postfix.wait_status(&down, &rcpt(user, "down"), "deferred");
    assert!(line.contains("no running container") || line.contains("pidfile"), "cagepipe says why: {line}");
    assert!(postfix.queued(&down), "Postfix keeps the message while the container is down");
    let container = start_container(user, &piddir, test);
    postfix.flush();
    postfix.wait_status(&down, &rcpt(user, "down"), "sent");
    let r = report(&container, user, "after-restart");
    assert_eq!(r["ns_mnt"], container.ns_inode("mnt").to_string(), "delivered into the container that is back");
    assert!(!postfix.queued(&down));
    assert!(postfix.queued(&tempfail), "the command's own 75 keeps deferring");
    drop(postfix);
    drop(container);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn postfix_gives_the_command_only_the_primary_group_so_0750_defers() {
    let Some(_running) = rig::need(&[rig::Need::Root]) else { return };
    let test = "postfix_gives_the_command_only_the_primary_group_so_0750_defers";
    let Some(tree) = postfix_tree(test) else { return };
    let account = Account::new("cptest-pfx-group");
    let user = &account.user;
    let scratch = rig::scratch().join("postfix-group");
    // As the packages install it (root:cagepipe 0750), with the user a
    // member of the cagepipe group: local(8) sets only the recipient's uid
    // and primary gid (setgroups with that one group), so it cannot execute
    // cagepipe. Nothing is lost: the delivery defers.
    let cagepipe = install_cagepipe(&scratch.join("bin"), 0o750);
    let (piddir, toml) = pidfile_config(&scratch);
    let container = start_container(user, &piddir, test);
    let postfix = Postfix::start(&tree, "group", &cagepipe, &toml, &[&user.name]);
    let home = user.home.display().to_string();
    forward(user, "group", &format!("\"|{PROBE} report --out {home}/report\"\n"));
    let id = postfix.send(&format!("group@{DOMAIN}"), &rcpt(user, "group"), "x");
    let line = postfix.wait_status(&id, &rcpt(user, "group"), "deferred");
    assert!(line.contains("Permission denied"), "local(8) cannot execute a 0750 cagepipe: {line}");
    assert!(postfix.queued(&id), "the message waits in the queue");
    assert!(!inside(&container, user, "report").exists(), "nothing ran");

    // With the Postfix setting (0751, file capabilities kept) the waiting
    // message is delivered.
    std::fs::set_permissions(&cagepipe, std::fs::Permissions::from_mode(0o751)).unwrap();
    let caps = run_ok(Command::new("getcap").arg(&cagepipe));
    assert!(caps.contains(include_str!("../../packaging/file-caps").trim()), "chmod keeps the capabilities: {caps}");
    postfix.flush();
    postfix.wait_status(&id, &rcpt(user, "group"), "sent");
    let r = report(&container, user, "report");
    assert_eq!(r["ns_mnt"], container.ns_inode("mnt").to_string());
    drop(postfix);
    drop(container);
    let _ = std::fs::remove_dir_all(&scratch);
}
