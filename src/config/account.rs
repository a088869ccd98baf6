//! The Unix account a delivery runs as, from the host's /etc/passwd and
//! /etc/group.
//!
//! Identity comes from the real uid Exim gave us (never from USER/LOGNAME,
//! which Exim sets to the local part), or from `--user` when root asks.
//!
//! The files are read directly rather than through NSS: a process holding
//! capabilities then loads no NSS module chosen by configuration, and a
//! lookup costs tens of microseconds instead of hundreds. Hosting panels
//! (cPanel, DirectAdmin, Plesk) keep their accounts in these files.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::platform::secure_file;

/// Longest user name accepted (useradd's limit is 32).
pub(crate) const MAX_NAME_LEN: usize = 32;

/// Largest user database file read (a server with 100,000 accounts has an
/// /etc/passwd of about 8 MB).
const MAX_DB_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Primary and supplementary groups, sorted, without duplicates.
    pub(crate) groups: Vec<u32>,
    pub(crate) home: PathBuf,
    pub(crate) shell: OsString,
}

/// Where the user database lives (tests point elsewhere).
#[derive(Debug, Clone)]
pub(crate) struct Database {
    pub(crate) passwd: PathBuf,
    pub(crate) group: PathBuf,
}

impl Default for Database {
    fn default() -> Self {
        Database { passwd: "/etc/passwd".into(), group: "/etc/group".into() }
    }
}

/// A user name is substituted into paths: allow only what account tools
/// create, so that it can never carry '/', '..', NUL or a leading '-'.
pub(crate) fn check_user_name(name: &str) -> std::result::Result<(), String> {
    let shown: String = name.chars().take(MAX_NAME_LEN).flat_map(char::escape_default).collect();
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("user name \"{shown}\" must be 1 to {MAX_NAME_LEN} characters long"));
    }
    let first_ok = name.as_bytes()[0].is_ascii_alphanumeric() || name.as_bytes()[0] == b'_';
    let rest_ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !first_ok || !rest_ok {
        return Err(format!(
            "user name \"{shown}\" may contain only letters, digits, '_', '-' and '.', and must not start with '-' or '.'"
        ));
    }
    Ok(())
}

/// Which account to look up.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key<'a> {
    Uid(u32),
    Name(&'a str),
}

/// One parsed /etc/passwd line.
struct PasswdEntry<'a> {
    name: &'a [u8],
    uid: u32,
    gid: u32,
    home: &'a [u8],
    shell: &'a [u8],
}

fn parse_passwd_line(line: &[u8]) -> Option<PasswdEntry<'_>> {
    let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
    if f.len() != 7 {
        return None;
    }
    let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u32>().ok();
    Some(PasswdEntry { name: f[0], uid: num(f[2])?, gid: num(f[3])?, home: f[5], shell: f[6] })
}

fn read_db(path: &Path) -> Result<Vec<u8>> {
    secure_file::read_root_owned(path, MAX_DB_BYTES)
        .map(|f| f.contents)
        .map_err(|e| Error::Account(format!("cannot read the user database: {e}")))
}

/// Look up an account in the database: the first matching passwd line (as
/// getpwuid does), and every group that lists the name as a member.
pub(crate) fn lookup(db: &Database, key: Key<'_>) -> Result<Account> {
    if let Key::Name(name) = key {
        check_user_name(name).map_err(Error::Usage)?;
    }
    let passwd = read_db(&db.passwd)?;
    let entry = passwd
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"#") && !l.starts_with(b"+") && !l.starts_with(b"-"))
        .filter_map(parse_passwd_line)
        .find(|e| match key {
            Key::Uid(uid) => e.uid == uid,
            Key::Name(name) => e.name == name.as_bytes(),
        });
    let Some(entry) = entry else {
        return Err(Error::Account(match key {
            Key::Uid(uid) => format!("uid {uid} has no entry in {}", db.passwd.display()),
            Key::Name(name) => format!("no user named {name} in {}", db.passwd.display()),
        }));
    };
    let name = String::from_utf8(entry.name.to_vec()).map_err(|_| Error::Account("user name is not UTF-8".into()))?;
    check_user_name(&name).map_err(Error::Account)?;

    let group = read_db(&db.group)?;
    let supplementary = group_entries(&group).filter(|g| g.members().any(|m| m == entry.name)).map(|g| g.gid).collect();
    Ok(account_from(&entry, name, supplementary))
}

/// One well-formed /etc/group line (four fields, a numeric gid).
struct GroupEntry<'a> {
    name: &'a [u8],
    gid: u32,
    members: &'a [u8],
}

impl<'a> GroupEntry<'a> {
    fn members(&self) -> impl Iterator<Item = &'a [u8]> {
        self.members.split(|&b| b == b',').filter(|m| !m.is_empty())
    }
}

/// The group file's usable lines; the others are skipped, as getgrent does.
fn group_entries(group: &[u8]) -> impl Iterator<Item = GroupEntry<'_>> {
    group.split(|&b| b == b'\n').filter_map(|line| {
        let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        if f.len() != 4 {
            return None;
        }
        let gid = std::str::from_utf8(f[2]).ok()?.parse::<u32>().ok()?;
        Some(GroupEntry { name: f[0], gid, members: f[3] })
    })
}

/// The account of a passwd entry whose name is validated, with the gids of
/// the groups that list it (the primary group is added here).
fn account_from(entry: &PasswdEntry<'_>, name: String, supplementary: Vec<u32>) -> Account {
    let mut groups = supplementary;
    groups.push(entry.gid);
    groups.sort_unstable();
    groups.dedup();
    Account {
        name,
        uid: entry.uid,
        gid: entry.gid,
        groups,
        home: PathBuf::from(OsString::from_vec(entry.home.to_vec())),
        shell: OsString::from_vec(entry.shell.to_vec()),
    }
}

/// A passwd line `list` skipped: its number and why.
pub(crate) type NotAnAccount = (usize, String);

/// Every account in the database, in file order (the first line wins for
/// a name used twice, as for getpwnam), read in one pass over each file;
/// lines that are not accounts cagepipe could serve are returned with the
/// line number and the reason (`cagepipe survey`).
pub(crate) fn list(db: &Database) -> Result<(Vec<Account>, Vec<NotAnAccount>)> {
    let passwd = read_db(&db.passwd)?;
    let group = read_db(&db.group)?;
    let mut member_of: std::collections::HashMap<&[u8], Vec<u32>> = std::collections::HashMap::new();
    for g in group_entries(&group) {
        for member in g.members() {
            member_of.entry(member).or_default().push(g.gid);
        }
    }
    let mut seen = std::collections::HashSet::new();
    let (mut accounts, mut skipped) = (Vec::new(), Vec::new());
    for (n, line) in passwd.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() || line.starts_with(b"#") || line.starts_with(b"+") || line.starts_with(b"-") {
            continue;
        }
        let Some(entry) = parse_passwd_line(line) else {
            skipped.push((n + 1, "not a passwd entry".to_string()));
            continue;
        };
        let name = match std::str::from_utf8(entry.name).map_err(|_| "is not UTF-8".to_string()).and_then(|name| {
            check_user_name(name)?;
            Ok(name)
        }) {
            Ok(name) => name.to_string(),
            Err(why) => {
                skipped.push((n + 1, why));
                continue;
            }
        };
        if !seen.insert(name.clone()) {
            continue;
        }
        let supplementary = member_of.get(entry.name).cloned().unwrap_or_default();
        accounts.push(account_from(&entry, name, supplementary));
    }
    Ok((accounts, skipped))
}

/// The gid of each named group that exists in the group database, in the
/// order of `names` (`[rollout] contain = ["@web"]`).
pub(crate) fn group_gids(db: &Database, names: &[String]) -> Result<Vec<(String, u32)>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let group = read_db(&db.group)?;
    Ok(names
        .iter()
        .filter_map(|name| group_entries(&group).find(|g| g.name == name.as_bytes()).map(|g| (name.clone(), g.gid)))
        .collect())
}

/// The real name of each account (the first comma-separated part of the
/// passwd GECOS field, as `finger` shows it), where it has one: the notices
/// of `survey` greet people by it. Raw bytes; a user may have set it
/// (chfn), so it is hostile.
pub(crate) fn real_names(db: &Database) -> Result<std::collections::HashMap<String, Vec<u8>>> {
    let passwd = read_db(&db.passwd)?;
    let mut names = std::collections::HashMap::new();
    for line in passwd.split(|&b| b == b'\n') {
        let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        if f.len() != 7 {
            continue;
        }
        let real = f[4].split(|&b| b == b',').next().unwrap_or_default();
        if let (Ok(name), false) = (std::str::from_utf8(f[0]), real.is_empty()) {
            names.entry(name.to_string()).or_insert_with(|| real.to_vec());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn names_that_could_escape_a_path_are_refused() {
        for good in ["alice", "a", "web_1", "u-2.x", "_svc", "A1"] {
            assert!(check_user_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in ["", "..", ".", "a/b", "../x", "-rf", ".hidden", "a\0b", "a b", "al\u{e9}", "x\n", long.as_str()] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_user_name(&"a".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn root_is_found_by_uid_and_name_in_the_real_files() {
        let db = Database::default();
        let r = lookup(&db, Key::Uid(0)).unwrap();
        assert_eq!(r.name, "root");
        assert_eq!(r.gid, 0);
        assert!(r.groups.contains(&0));
        assert_eq!(lookup(&db, Key::Name("root")).unwrap(), r);
        assert!(matches!(lookup(&db, Key::Uid(4_000_000_000)), Err(Error::Account(_))));
        assert!(matches!(lookup(&db, Key::Name("no-such-user-xyz")), Err(Error::Account(_))));
        assert!(matches!(lookup(&db, Key::Name("../etc")), Err(Error::Usage(_))));
    }

    #[test]
    fn groups_come_from_membership_lists_and_odd_lines_are_skipped() {
        if !crate::platform::process::is_root() {
            eprintln!(
                "SKIP groups_come_from_membership_lists_and_odd_lines_are_skipped: needs root-owned fixture files"
            );
            return;
        }
        let dir = PathBuf::from(format!("/run/cagepipe-account-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = Database { passwd: dir.join("passwd"), group: dir.join("group") };
        std::fs::write(
            &db.passwd,
            "# comment\nbroken line\nalice:x:1001:1001:Alice:/home/alice:/bin/bash\n\
             alice2:x:1001:1001::/other:/bin/sh\nbad/name:x:1003:1003::/h:/bin/sh\n+nis\n",
        )
        .unwrap();
        std::fs::write(
            &db.group,
            "alice:x:1001:\nweb:x:1500:bob,alice\nalicex:x:1600:alicex\nmail:x:8:alice\nbroken\nnum:x:abc:alice\n",
        )
        .unwrap();
        let a = lookup(&db, Key::Uid(1001)).unwrap();
        assert_eq!(a.name, "alice", "first matching line wins");
        let (all, skipped) = list(&db).unwrap();
        assert_eq!(all.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["alice", "alice2"]);
        assert_eq!(all[0], a, "one pass gives what the lookup gives");
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(skipped[0], (2, "not a passwd entry".to_string()));
        assert_eq!(skipped[1].0, 5);
        assert!(skipped[1].1.contains("user name \"bad/name\""), "{skipped:?}");
        assert_eq!(a.groups, vec![8, 1001, 1500]);
        assert_eq!(a.home, PathBuf::from("/home/alice"));
        assert_eq!(a.shell, OsString::from("/bin/bash"));
        let e = lookup(&db, Key::Uid(1003)).unwrap_err();
        assert!(e.to_string().contains("may contain only"), "{e}");
        std::fs::set_permissions(&db.group, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(lookup(&db, Key::Uid(1001)).unwrap_err().to_string().contains("writable"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
