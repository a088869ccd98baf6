//! The command line and environment the user's command gets, and finding
//! the program on PATH inside the container.
#![forbid(unsafe_code)]

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;

use crate::config::account::Account;
use crate::config::Config;
use crate::platform::kernel::Kernel;
use crate::platform::sys::ExecWords;
use crate::platform::Errno;

/// Build the environment from scratch: Exim's variables that are present,
/// then the account's identity and the configured PATH. Nothing else gets
/// through (no LD_*, no IFS/BASH_ENV/ENV, no RUST_*).
pub(crate) fn environment(account: &Account, config: &Config, inherited: &[(OsString, OsString)]) -> Vec<Vec<u8>> {
    let mut env = Vec::new();
    for name in &config.pass_env {
        if let Some((_, value)) = inherited.iter().find(|(k, _)| k.as_bytes() == name.as_bytes()) {
            env.push([name.as_bytes(), b"=", value.as_bytes()].concat());
        }
    }
    let account_vars: [(&str, &OsStr); 4] = [
        ("HOME", account.home.as_os_str()),
        ("USER", OsStr::new(&account.name)),
        ("LOGNAME", OsStr::new(&account.name)),
        ("SHELL", account.shell.as_os_str()),
    ];
    for (name, value) in account_vars {
        env.push([name.as_bytes(), b"=", value.as_bytes()].concat());
    }
    env.push([b"PATH=".as_slice(), config.command_path.as_bytes()].concat());
    env
}

pub(crate) fn to_cstrings(items: &[Vec<u8>]) -> io::Result<Vec<CString>> {
    items
        .iter()
        .map(|i| CString::new(i.clone()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte")))
        .collect()
}

/// The candidates execve is tried with, like execvp: the name itself when it
/// contains a '/', else each PATH directory joined with it.
pub(crate) fn candidates(program: &[u8], path: &str) -> Vec<CString> {
    if program.contains(&b'/') {
        return CString::new(program).into_iter().collect();
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .filter_map(|d| CString::new([d.as_bytes(), b"/", program].concat()).ok())
        .collect()
}

/// Try each candidate; return the error that best explains the failure:
/// EACCES if some candidate existed but could not be executed, else the
/// last error. Only returns on failure.
pub(crate) fn exec_first(k: &mut impl Kernel, candidates: &[CString], argv: &ExecWords, env: &ExecWords) -> io::Error {
    let mut saw_eacces = false;
    let mut last = io::Error::from_raw_os_error(Errno::ENOENT as i32);
    for path in candidates {
        let err = k.execve(path, argv, env);
        match err.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::ENAMETOOLONG) => last = err,
            Some(Errno::EACCES) => {
                saw_eacces = true;
                last = err;
            }
            _ => return err,
        }
    }
    if saw_eacces {
        io::Error::from_raw_os_error(Errno::EACCES as i32)
    } else {
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn account() -> Account {
        Account {
            name: "alice".into(),
            uid: 1001,
            gid: 1001,
            groups: vec![1001],
            home: PathBuf::from("/home/alice"),
            shell: OsString::from("/bin/bash"),
        }
    }

    #[test]
    fn environment_is_built_from_scratch() {
        let config = crate::config::parse(
            "[container]\npidfile = \"/x\"\n[command]\npath = \"/usr/bin:/bin\"\n",
            std::path::Path::new("/c"),
        )
        .unwrap();
        let inherited: Vec<(OsString, OsString)> = [
            ("LOCAL_PART", "support"),
            ("USER", "support"),
            ("LD_PRELOAD", "/tmp/evil.so"),
            ("IFS", "x"),
            ("BASH_ENV", "/tmp/x"),
            ("RUST_BACKTRACE", "1"),
            ("SENDER", "a@b.test"),
            ("HOME", "/elsewhere"),
        ]
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
        let env: Vec<String> =
            environment(&account(), &config, &inherited).into_iter().map(|e| String::from_utf8(e).unwrap()).collect();
        assert_eq!(
            env,
            [
                "LOCAL_PART=support",
                "SENDER=a@b.test",
                "HOME=/home/alice",
                "USER=alice",
                "LOGNAME=alice",
                "SHELL=/bin/bash",
                "PATH=/usr/bin:/bin"
            ]
        );
    }

    #[test]
    fn relative_names_are_searched_on_path_absolute_ones_are_not() {
        let c: Vec<_> = candidates(b"handler", "/usr/local/bin:/usr/bin").into_iter().map(|c| c.into_bytes()).collect();
        assert_eq!(c, [b"/usr/local/bin/handler".to_vec(), b"/usr/bin/handler".to_vec()]);
        let c: Vec<_> = candidates(b"/home/a/bin/h", "/usr/bin").into_iter().map(|c| c.into_bytes()).collect();
        assert_eq!(c, [b"/home/a/bin/h".to_vec()]);
        let c: Vec<_> = candidates(b"bin/h", "/usr/bin").into_iter().map(|c| c.into_bytes()).collect();
        assert_eq!(c, [b"bin/h".to_vec()]);
    }

    #[test]
    fn exec_failure_explains_itself() {
        let argv = ExecWords::new(to_cstrings(&[b"x".to_vec()]).unwrap());
        let none = ExecWords::new(Vec::new());
        let missing = candidates(b"cagepipe-no-such-program", "/nonexistent:/usr/bin");
        let k = &mut crate::platform::kernel::Linux::default();
        assert_eq!(exec_first(k, &missing, &argv, &none).raw_os_error(), Some(Errno::ENOENT as i32));
        // A directory is found but cannot be executed.
        let dir = candidates(b"/etc", "");
        assert_eq!(exec_first(k, &dir, &argv, &none).raw_os_error(), Some(Errno::EACCES as i32));
    }
}
