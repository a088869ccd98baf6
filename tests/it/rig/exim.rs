//! A real Exim (Debian's exim4) driven as root without a daemon: a private
//! configuration with its own spool and log, `-odq` to queue a message,
//! `-M ID` to deliver it in this process, and Exim's own main log and queue
//! to read the verdict.
//!
//! Every Exim command runs in a private mount namespace in which
//! - /usr/sbin is a read-only overlay that adds the cagepipe under test,
//!   installed root:cagepipe 0750 with its file capabilities, as
//!   /usr/sbin/cagepipe: the shipped snippets name that path, unchanged;
//! - /etc is a read-only overlay that adds this instance's files
//!   (/etc/cagepipe/cagepipe.toml, /etc/virtual/domainowners, ...),
//!   so the host's /etc is never touched.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::cagepipe::{installed_binary, run_with_stdin, Delivery};
use super::scratch::fresh;

/// Debian's binary; the tests need nothing else of Exim.
pub const EXIM: &str = "/usr/sbin/exim4";

/// The shipped snippet `rel` under exim-config/.
pub fn snippet(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("exim-config").join(rel);
    assert!(p.is_file(), "shipped snippet {} is missing", p.display());
    p
}

fn exim_user_ids() -> (u32, u32) {
    let out = Command::new("getent").args(["passwd", "Debian-exim"]).output().expect("getent");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let f: Vec<&str> = line.trim().split(':').collect();
    assert!(f.len() > 3, "no Debian-exim account: is exim4 installed?");
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

fn mkdir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// One private Exim: configuration, spool, log and the /etc and /usr/sbin
/// additions its deliveries see.
pub struct Exim {
    pub dir: PathBuf,
    pub conf: PathBuf,
    etc_add: PathBuf,
    /// What /usr/sbin gains: `cagepipe`, a hard link to the installed
    /// binary under test.
    pub sbin_add: PathBuf,
}

/// How Exim left a message after a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `=>`: delivered.
    Delivered,
    /// `==`: deferred; the message stays queued.
    Deferred(String),
    /// `**`: failed (bounced).
    Failed(String),
}

impl Exim {
    pub fn new(name: &str) -> Exim {
        let dir = fresh(&format!("exim-{name}"));
        mkdir(&dir, 0o755);
        let (uid, gid) = exim_user_ids();
        for d in ["spool", "log"] {
            mkdir(&dir.join(d), 0o750);
            nix::unistd::chown(&dir.join(d), Some(uid.into()), Some(gid.into())).unwrap();
        }
        let etc_add = dir.join("etc-add");
        let sbin_add = dir.join("sbin-add");
        mkdir(&etc_add, 0o755);
        mkdir(&sbin_add, 0o755);
        // A hard link keeps the owner, mode and security.capability xattr
        // that installed_binary set (both live in the scratch directory).
        std::fs::hard_link(installed_binary(), sbin_add.join("cagepipe")).expect("link the installed cagepipe");
        Exim { conf: dir.join("exim.conf"), dir, etc_add, sbin_add }
    }

    /// The main-section lines every configuration here starts with: its own
    /// spool and log, and a fixed host name.
    pub fn private_main(&self) -> String {
        format!(
            "spool_directory = {d}/spool\nlog_file_path = {d}/log/%slog\nprimary_hostname = mail.example.test\n",
            d = self.dir.display()
        )
    }

    /// Write the Exim configuration (root-owned, 0644, as Exim demands).
    pub fn write_conf(&self, text: &str) {
        std::fs::write(&self.conf, text).unwrap();
        std::fs::set_permissions(&self.conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// Write `name` in this Exim's directory (root-owned 0644, as Exim
    /// wants its configuration files); its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    /// Add `/etc/<rel>` (root-owned 0644) to what this Exim's deliveries see.
    pub fn etc_file(&self, rel: &str, contents: &str) {
        let path = self.etc_add.join(rel);
        let mut parent = path.parent().unwrap().to_path_buf();
        let mut dirs = Vec::new();
        while parent != self.etc_add {
            dirs.push(parent.clone());
            parent = parent.parent().unwrap().to_path_buf();
        }
        for d in dirs.iter().rev() {
            mkdir(d, 0o755);
        }
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// cagepipe's configuration as /etc/cagepipe/cagepipe.toml.
    pub fn cagepipe_toml(&self, toml: &str) {
        self.etc_file("cagepipe/cagepipe.toml", toml);
    }

    /// The command that runs `exim4 -C conf ARGS` in the private mount
    /// namespace described at the top.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut all = vec!["-C", self.conf.to_str().unwrap()];
        all.extend_from_slice(args);
        self.namespaced(EXIM, &all)
    }

    /// `program ARGS` as root in the private mount namespace (e.g. the
    /// installed /usr/sbin/cagepipe).
    pub fn namespaced<A: AsRef<std::ffi::OsStr>>(&self, program: impl AsRef<std::ffi::OsStr>, args: &[A]) -> Command {
        let script = r#"set -e
etc=$1 sbin=$2; shift 2
mount -t overlay cagepipe-it -o "ro,lowerdir=$etc:/etc" /etc
mount -t overlay cagepipe-it -o "ro,lowerdir=$sbin:/usr/sbin" /usr/sbin
exec "$@""#;
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh"])
            .arg(&self.etc_add)
            .arg(&self.sbin_add)
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/");
        cmd
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> Delivery {
        run_with_stdin(self.command(args), stdin)
    }

    /// Queue `message` from `sender` to `rcpt` (`-odq`); its message id.
    pub fn submit(&self, sender: &str, rcpt: &[&str], message: &[u8]) -> String {
        let before = self.mainlog().lines().count();
        let mut args = vec!["-odq", "-oi", "-f", sender];
        args.extend_from_slice(rcpt);
        let out = self.run(&args, message);
        assert!(out.status.success(), "exim4 -odq failed: {out:?}");
        let log = self.mainlog();
        let id = log
            .lines()
            .skip(before)
            .find_map(|l| {
                let mut f = l.split_whitespace().skip(2);
                let id = f.next()?;
                (f.next()? == "<=").then(|| id.to_string())
            })
            .unwrap_or_else(|| panic!("no '<=' line for the new message in the main log:\n{log}"));
        id
    }

    /// Deliver message `id` now, in this process (`-M`); Exim's output.
    pub fn deliver(&self, id: &str) -> Delivery {
        self.run(&["-M", id], b"")
    }

    /// The verdict of the latest attempt for `rcpt` of message `id`.
    pub fn verdict(&self, id: &str, rcpt: &str) -> Verdict {
        let log = self.mainlog();
        let line = log
            .lines()
            .rev()
            .filter(|l| l.contains(id) && l.contains(rcpt))
            .find(|l| [" => ", " == ", " ** "].iter().any(|m| l.contains(m)))
            .unwrap_or_else(|| panic!("no delivery line for {rcpt} of {id} in the main log:\n{log}"))
            .to_string();
        if line.contains(" => ") {
            Verdict::Delivered
        } else if line.contains(" == ") {
            Verdict::Deferred(line)
        } else {
            Verdict::Failed(line)
        }
    }

    /// Submit and deliver once; the id and the verdict for `rcpt`.
    pub fn send(&self, rcpt: &str, message: &[u8]) -> (String, Verdict) {
        let id = self.submit("sender@example.org", &[rcpt], message);
        self.deliver(&id);
        let v = self.verdict(&id, rcpt);
        (id, v)
    }

    /// Is message `id` still on Exim's queue?
    pub fn on_queue(&self, id: &str) -> bool {
        let out = self.run(&["-bp"], b"");
        String::from_utf8_lossy(&out.stdout).contains(id)
    }

    pub fn mainlog(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/mainlog")).unwrap_or_default()
    }

    /// Exim's main log lines about message `id`.
    pub fn log_of(&self, id: &str) -> Vec<String> {
        self.mainlog().lines().filter(|l| l.contains(id)).map(str::to_string).collect()
    }

    /// The paniclog, which must stay empty.
    pub fn paniclog(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/paniclog")).unwrap_or_default()
    }
}

/// A simple message with a unique body marker.
pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: sender@example.org\nTo: someone@example.test\nSubject: {subject}\n\
         Message-ID: <{subject}@example.org>\n\n{body}\n"
    )
    .into_bytes()
}

/// Wait until `cond` holds, at most `limit`; whether it did.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}
