//! Test accounts and groups (`cptest-*`): created on first use, removed
//! (`userdel -r`, `groupdel`) when the last test of this process that uses
//! them lets go. Each names the test process that made it (an account in
//! its comment field, a group at the end of its name), so that
//! `testbed/test` can sweep up after a run that was killed without
//! touching what a running test process uses.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A host account for tests, removed when its last holder is dropped.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    _lease: Arc<Lease>,
}

/// A test group (see [`test_group`]).
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    _lease: Arc<Lease>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    User,
    Group,
}

/// Serialises account changes within this test process and counts the
/// holders of each name; `useradd` itself locks /etc/passwd against other
/// processes (retried while busy).
static ACCOUNTS: Mutex<Option<HashMap<(Kind, String), usize>>> = Mutex::new(None);

#[derive(Debug)]
struct Lease {
    kind: Kind,
    name: String,
}

impl Lease {
    /// Count one more holder of `name`; `create` runs under the lock.
    fn take<T>(kind: Kind, name: &str, create: impl FnOnce() -> T) -> (T, Arc<Lease>) {
        assert!(
            name.starts_with("cptest-") && name.len() <= 32,
            "test accounts and groups are named cptest-*, at most 32 characters: {name:?}"
        );
        let mut held = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let value = create();
        *held.get_or_insert_with(HashMap::new).entry((kind, name.to_owned())).or_default() += 1;
        (value, Arc::new(Lease { kind, name: name.to_owned() }))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut held = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let counts = held.get_or_insert_with(HashMap::new);
        let key = (self.kind, self.name.clone());
        let left = counts.get(&key).copied().unwrap_or(1) - 1;
        if left > 0 {
            counts.insert(key, left);
            return;
        }
        counts.remove(&key);
        match self.kind {
            Kind::User => remove_user(&self.name),
            Kind::Group => remove_group(&self.name),
        }
    }
}

/// The test account `name` (`cptest-*`), created with a home and /bin/sh
/// if missing. Its uid is at least 1000.
pub fn test_user(name: &str) -> User {
    let (user, lease) = Lease::take(Kind::User, name, || {
        lookup_user(name).unwrap_or_else(|| {
            let owner = format!("cagepipe test, pid {}", std::process::id());
            create(name, &["useradd", "--create-home", "--shell", "/bin/sh", "--comment", &owner, name]);
            lookup_user(name).unwrap_or_else(|| panic!("useradd {name} left no account"))
        })
    });
    let (name, uid, gid, home) = user;
    assert!(uid >= 1000, "test account {name} has uid {uid} < 1000");
    User { name, uid, gid, home, _lease: lease }
}

/// The group `cptest-STEM-PID` of this test process, created if missing.
pub fn test_group(stem: &str) -> Group {
    let name = format!("cptest-{stem}-{}", std::process::id());
    let (gid, lease) = Lease::take(Kind::Group, &name, || {
        lookup_group(&name).unwrap_or_else(|| {
            create(&name, &["groupadd", &name]);
            lookup_group(&name).unwrap_or_else(|| panic!("groupadd {name} left no group"))
        })
    });
    Group { name, gid, _lease: lease }
}

fn run(argv: &[&str]) -> Output {
    Command::new(argv[0]).args(&argv[1..]).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {argv:?}: {e}"))
}

/// Run useradd/groupadd, retrying while another process holds the lock on
/// /etc/passwd or /etc/group.
fn create(name: &str, argv: &[&str]) {
    let mut last = String::new();
    for _ in 0..50 {
        let out = run(argv);
        if out.status.success() {
            return;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        if last.contains("already exists") {
            return; // another process won the race
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{argv:?} for {name} kept failing: {last}");
}

/// `userdel -r`; retried while a process of the account is still on its
/// way out (a killed command the host's init has not reaped yet), then
/// forced. A failure is said loudly; `testbed/test` fails a run that leaves
/// an account behind.
fn remove_user(name: &str) {
    let mut last = String::new();
    for attempt in 0..100 {
        let force = attempt == 99;
        let argv: &[&str] =
            if force { &["userdel", "--remove", "--force", name] } else { &["userdel", "--remove", name] };
        let out = run(argv);
        // 12: the home could not be removed entirely; 6: already gone.
        match out.status.code() {
            Some(0 | 6) => return,
            Some(12) => break,
            _ => {}
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(100));
    }
    if lookup_user(name).is_some() || last.contains("home") {
        eprintln!("WARNING: userdel --remove {name} failed: {last}");
    }
}

fn remove_group(name: &str) {
    let mut last = String::new();
    for _ in 0..50 {
        let out = run(&["groupdel", name]);
        if matches!(out.status.code(), Some(0 | 6)) {
            return;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("WARNING: groupdel {name} failed: {last}");
}

fn getent(database: &str, name: &str) -> Option<Vec<String>> {
    let out = run(&["getent", database, name]);
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
    Some(line.split(':').map(str::to_owned).collect())
}

fn lookup_user(name: &str) -> Option<(String, u32, u32, PathBuf)> {
    let fields = getent("passwd", name)?;
    Some((
        fields.first()?.clone(),
        fields.get(2)?.parse().ok()?,
        fields.get(3)?.parse().ok()?,
        PathBuf::from(fields.get(5)?),
    ))
}

fn lookup_group(name: &str) -> Option<u32> {
    getent("group", name)?.get(2)?.parse().ok()
}
