//! What must hold inside for any delivery into a container, and what a
//! refusal looks like.

use super::cagepipe::Delivery;
use super::container::{cgroup_lines, host_ns_inode, Container};
use super::probe::{parse_report, Marker, Report};

/// Every namespace kind a process has (`/proc/PID/ns`, as the probe reports
/// them as `ns_<kind>`).
pub const NAMESPACES: [&str; 8] = ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time"];

/// The report `r` came from a command run inside `c` as the user whose ids
/// inside are `uid` and `gid`, with nothing else:
/// - every namespace the container has of its own is the container's, and
///   every one it shares with the host is the host's;
/// - its hostname, and files in its home (`home_marker`), are the
///   container's;
/// - it is in the container's own cgroup in every hierarchy the container
///   has (in the container's cgroup namespace each reads "/": any other
///   cgroup would show as "/../x");
/// - all eight ids are the user's, all five capability sets are empty,
///   `no_new_privs` is set, only descriptors 0-2 are open, and no signal is
///   ignored or blocked.
pub fn assert_contained(c: &Container, r: &Report, uid: u32, gid: u32) {
    for kind in NAMESPACES {
        let theirs = c.ns_inode(kind);
        let whose = if theirs != host_ns_inode(kind) { "the container's own" } else { "the host's (shared)" };
        assert_eq!(r[&format!("ns_{kind}")], theirs.to_string(), "{kind} namespace is {whose}");
    }
    assert_eq!(r["hostname"], c.name);
    assert_eq!(r["home_marker"], c.name, "the files seen are the container's, not the host's");

    let lines: Vec<&str> = r["cgroup"].split(';').collect();
    for line in &lines {
        assert!(line.ends_with(":/"), "cgroup line {line:?} is the container's own cgroup");
    }
    let init = cgroup_lines(c.pid);
    for hierarchy in &init {
        let joined = format!("{}:{}:/", hierarchy.hierarchy, hierarchy.controllers);
        assert!(lines.contains(&joined.as_str()), "cgroup {joined} joined: {}", r["cgroup"]);
    }
    assert_eq!(lines.len(), init.len(), "the container's hierarchies and no others: {}", r["cgroup"]);
    assert!(lines.contains(&"0::/"), "cgroup v2 joined: {}", r["cgroup"]);

    for k in ["uid", "euid", "suid", "fsuid"] {
        assert_eq!(r[k], uid.to_string(), "{k}");
    }
    for k in ["gid", "egid", "sgid", "fsgid"] {
        assert_eq!(r[k], gid.to_string(), "{k}");
    }
    for k in ["cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb"] {
        assert_eq!(u64::from_str_radix(&r[k], 16).ok(), Some(0), "{k} = {}", r[k]);
    }
    assert_eq!(r["no_new_privs"], "1");
    assert_eq!(r["fds"], "0,1,2", "only the standard descriptors");
    assert_eq!(u64::from_str_radix(&r["sig_ign"], 16).ok(), Some(0), "Exim's ignored signals were reset");
    assert_eq!(u64::from_str_radix(&r["sig_blk"], 16).ok(), Some(0), "signal mask is empty");
}

/// [`assert_contained`] for `user` as the container's /etc/passwd knows it.
pub fn assert_contained_as(c: &Container, user: &str, r: &Report) {
    let (uid, gid) = c.inside_ids(user);
    assert_contained(c, r, uid, gid);
}

/// The delivery succeeded; the probe's report from its stdout.
pub fn report(d: &Delivery) -> Report {
    assert_eq!(d.code(), Some(0), "delivery failed: {d:?}");
    parse_report(&d.stdout)
}

/// The delivery was refused with `code` and a message saying `words`, and
/// printed nothing.
pub fn assert_refused(d: &Delivery, code: i32, words: &str) {
    assert_eq!(d.code(), Some(code), "{words}: {d:?}");
    assert!(d.stderr.contains(words), "stderr should say {words:?}: {}", d.stderr);
    assert!(d.stdout.is_empty(), "nothing ran: {d:?}");
}

impl Marker {
    /// [`assert_refused`], and the command given `--mark` never ran.
    pub fn assert_refused(&self, d: &Delivery, code: i32, words: &str) {
        assert_refused(d, code, words);
        self.assert_absent();
    }
}
