//! The benchmark's floor: what Exim itself does for a pipe delivery without
//! cagepipe. Sets gid and uid, then execs the payload:
//!     floor UID GID COMMAND [ARG]...
//! Also the "Exim" that starts cagepipe in the benchmark, so both sides pay
//! for the same launcher.
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStringExt;

use nix::unistd::{execv, setgroups, setresgid, setresuid, Gid, Uid};

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: floor UID GID COMMAND [ARG]...");
        std::process::exit(64);
    }
    let id = |i: usize| args[i].to_str().and_then(|s| s.parse::<u32>().ok()).expect("numeric id");
    let (uid, gid) = (Uid::from_raw(id(0)), Gid::from_raw(id(1)));
    setgroups(&[]).expect("setgroups");
    setresgid(gid, gid, gid).expect("setresgid");
    setresuid(uid, uid, uid).expect("setresuid");
    let argv: Vec<CString> = args[2..].iter().map(|a| CString::new(a.clone().into_vec()).expect("no NUL")).collect();
    let err = execv(&argv[0], &argv).unwrap_err();
    eprintln!("floor: exec {:?}: {err}", argv[0]);
    std::process::exit(127);
}
