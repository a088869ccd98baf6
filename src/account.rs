//! The Unix account a delivery runs as, from the host's user database.
//!
//! Identity comes from the real uid Exim gave us (never from USER/LOGNAME,
//! which Exim sets to the local part), or from `--user` when root asks.
#![forbid(unsafe_code)]

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::unistd::{Gid, Uid, User};

use crate::error::{Error, Result};

/// Longest user name accepted (useradd's limit is 32).
pub const MAX_NAME_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Primary and supplementary groups, sorted, without duplicates.
    pub groups: Vec<u32>,
    pub home: PathBuf,
    pub shell: OsString,
}

/// A user name is substituted into paths: allow only what account tools
/// create, so that it can never carry '/', '..', NUL or a leading '-'.
pub fn check_user_name(name: &str) -> std::result::Result<(), String> {
    let shown: String = name.chars().take(MAX_NAME_LEN).flat_map(char::escape_default).collect();
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("user name \"{shown}\" must be 1 to {MAX_NAME_LEN} characters long"));
    }
    let first_ok = name.as_bytes()[0].is_ascii_alphanumeric() || name.as_bytes()[0] == b'_';
    let rest_ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !first_ok || !rest_ok {
        return Err(format!("user name \"{shown}\" may contain only letters, digits, '_', '-' and '.', and must not start with '-' or '.'"));
    }
    Ok(())
}

fn from_user(user: User) -> Result<Account> {
    check_user_name(&user.name).map_err(Error::Account)?;
    let cname = CString::new(user.name.as_bytes()).map_err(|_| Error::Account("user name contains NUL".into()))?;
    let mut groups: Vec<u32> = nix::unistd::getgrouplist(&cname, user.gid)
        .map_err(|e| Error::Account(format!("cannot list the groups of {}: {}", user.name, e.desc())))?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    groups.push(user.gid.as_raw());
    groups.sort_unstable();
    groups.dedup();
    Ok(Account {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
        home: user.dir,
        shell: user.shell.into_os_string(),
    })
}

/// The account of a uid (the caller's real uid).
pub fn by_uid(uid: u32) -> Result<Account> {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(u)) => from_user(u),
        Ok(None) => Err(Error::Account(format!("uid {uid} has no entry in the user database"))),
        Err(e) => Err(Error::Account(format!("cannot look up uid {uid}: {}", e.desc()))),
    }
}

/// The account of a name (root's `--user NAME` or `check NAME`).
pub fn by_name(name: &str) -> Result<Account> {
    check_user_name(name).map_err(Error::Usage)?;
    match User::from_name(name) {
        Ok(Some(u)) => from_user(u),
        Ok(None) => Err(Error::Account(format!("no user named {name}"))),
        Err(e) => Err(Error::Account(format!("cannot look up user {name}: {}", e.desc()))),
    }
}

/// Home directory as bytes, for building paths inside the container.
pub fn home_bytes(a: &Account) -> &[u8] {
    a.home.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn root_is_found_by_uid_and_name() {
        let r = by_uid(0).unwrap();
        assert_eq!(r.name, "root");
        assert_eq!(r.gid, 0);
        assert!(r.groups.contains(&0));
        assert_eq!(by_name("root").unwrap(), r);
        assert!(matches!(by_uid(4_000_000_000), Err(Error::Account(_))));
        assert!(matches!(by_name("no-such-user-xyz"), Err(Error::Account(_))));
        assert!(matches!(by_name("../etc"), Err(Error::Usage(_))));
    }
}
