//! The staged switch-over: which accounts' deliveries enter their container
//! (`[rollout] contain`) and which still run on the host, exactly as Exim
//! would have run them without cagepipe.
//!
//! A hoster turns `force_command` on for the whole server with
//! `contain = "none"` (nothing changes yet, but every pipe delivery now
//! passes through cagepipe and is logged), watches the syslog lines, then
//! lists users and `@groups` until `contain = "all"`.
#![forbid(unsafe_code)]

use crate::config::account::{self, Account, Database};
use crate::config::Rollout;
use crate::error::Result;

/// Where an account's deliveries run, and the setting that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placement {
    /// In the account's container. The text says why (for check).
    Contained(String),
    /// On the host, as Exim would have run it. The text says why.
    Uncontained(String),
}

impl Placement {
    pub(crate) fn is_contained(&self) -> bool {
        matches!(self, Placement::Contained(_))
    }

    /// One word or phrase for syslog, check and survey.
    pub(crate) fn state(&self) -> &'static str {
        match self {
            Placement::Contained(_) => "contained",
            Placement::Uncontained(_) => "uncontained (rollout)",
        }
    }

    pub(crate) fn why(&self) -> &str {
        match self {
            Placement::Contained(w) | Placement::Uncontained(w) => w,
        }
    }
}

/// Decide where `account`'s deliveries run. Group membership is the
/// account's primary group and every group that lists it as a member, as
/// for the command's own groups. A listed group that does not exist
/// contains nobody (check and survey name it).
pub(crate) fn place(rollout: &Rollout, account: &Account, db: &Database) -> Result<Placement> {
    let groups = match rollout {
        Rollout::Listed { users, groups, .. } if !users.contains(&account.name) => account::group_gids(db, groups)?,
        _ => Vec::new(),
    };
    Ok(place_with(rollout, account, &groups))
}

/// [`place`] with the listed groups' gids already looked up (`survey`
/// decides for thousands of accounts with one read of the group file).
pub(crate) fn place_with(rollout: &Rollout, account: &Account, group_gids: &[(String, u32)]) -> Placement {
    let Rollout::Listed { users, line, .. } = rollout else {
        return Placement::Contained("[rollout] contain = \"all\"".into());
    };
    if users.contains(&account.name) {
        return Placement::Contained(format!("listed by name in [rollout] contain (line {line})"));
    }
    for (name, gid) in group_gids {
        if account.groups.contains(gid) {
            return Placement::Contained(format!("member of @{name}, listed in [rollout] contain (line {line})"));
        }
    }
    Placement::Uncontained(format!("not listed in [rollout] contain (line {line}), by name or group"))
}

/// The user names of the setting that are no account: a typo there silently
/// leaves that account uncontained, so check reports it.
pub(crate) fn unknown_users(rollout: &Rollout, db: &Database) -> Vec<String> {
    let Rollout::Listed { users, .. } = rollout else { return Vec::new() };
    users.iter().filter(|u| account::lookup(db, account::Key::Name(u)).is_err()).cloned().collect()
}

/// The `@groups` of the setting that do not exist in the group database:
/// a typo there silently contains nobody, so check reports it.
pub(crate) fn unknown_groups(rollout: &Rollout, db: &Database) -> Result<Vec<String>> {
    let Rollout::Listed { groups, .. } = rollout else { return Ok(Vec::new()) };
    let known = account::group_gids(db, groups)?;
    Ok(groups.iter().filter(|g| !known.iter().any(|(k, _)| k == *g)).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn alice(groups: Vec<u32>) -> Account {
        Account {
            name: "alice".into(),
            uid: 1001,
            gid: 1001,
            groups,
            home: PathBuf::from("/home/alice"),
            shell: "/bin/sh".into(),
        }
    }

    fn listed(users: &[&str], groups: &[&str]) -> Rollout {
        Rollout::Listed {
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            line: 7,
        }
    }

    /// A group database that does not exist: only reached when groups are
    /// listed, so these cases prove the name match needs no file.
    fn no_db() -> Database {
        Database { passwd: "/nonexistent/passwd".into(), group: "/nonexistent/group".into() }
    }

    #[test]
    fn all_contains_everyone_and_none_no_one() {
        assert!(place(&Rollout::All, &alice(vec![1001]), &no_db()).unwrap().is_contained());
        let none = listed(&[], &[]);
        let p = place(&none, &alice(vec![1001]), &no_db()).unwrap();
        assert_eq!(p.state(), "uncontained (rollout)");
        assert!(p.why().contains("line 7"), "{}", p.why());
    }

    #[test]
    fn users_are_matched_by_exact_name() {
        assert!(place(&listed(&["bob", "alice"], &[]), &alice(vec![]), &no_db()).unwrap().is_contained());
        assert!(!place(&listed(&["alic", "alice2"], &[]), &alice(vec![]), &no_db()).unwrap().is_contained());
    }

    #[test]
    fn groups_are_matched_through_the_group_database() {
        if !crate::platform::process::is_root() {
            eprintln!("SKIP groups_are_matched_through_the_group_database: needs a root-owned fixture file");
            return;
        }
        let dir = PathBuf::from(format!("/run/cagepipe-rollout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Database { passwd: dir.join("passwd"), group: dir.join("group") };
        std::fs::write(&db.group, "web:x:1500:alice\nstaff:x:1600:\nbroken\n").unwrap();
        let p = place(&listed(&[], &["staff", "web"]), &alice(vec![1001, 1500]), &db).unwrap();
        assert!(p.is_contained() && p.why().contains("@web"), "{p:?}");
        // The primary group counts like a listed membership.
        assert!(place(&listed(&[], &["staff"]), &alice(vec![1600]), &db).unwrap().is_contained());
        assert!(!place(&listed(&[], &["staff", "nosuch"]), &alice(vec![1001]), &db).unwrap().is_contained());
        assert_eq!(unknown_groups(&listed(&[], &["staff", "nosuch"]), &db).unwrap(), vec!["nosuch".to_string()]);
        std::fs::write(&db.passwd, "alice:x:1001:1001::/home/alice:/bin/sh\n").unwrap();
        assert_eq!(unknown_users(&listed(&["alice", "alcie"], &[]), &db), vec!["alcie".to_string()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
