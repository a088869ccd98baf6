//! Hardening, second round (the delivery path): a host daemon with a
//! private mount namespace is not a container, an exec that fails for a
//! passing reason defers, and running out of memory defers. The real
//! binary, with file capabilities, run as the user the way Exim runs it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::rig::{
    self,
    Need::{Root, Tool},
};
use rig::{raw_pipe, write_pidfile};

/// A root daemon with a private mount namespace (as systemd's
/// `PrivateTmp=` gives one) but the host's pid namespace and root: a
/// pidfile naming it must not make it the user's container.
#[test]
fn a_host_daemon_with_a_private_mount_namespace_is_not_a_container() {
    let Some(_test) = rig::need(&[Root]) else { return };
    // The account and its configuration; no container.
    let s = rig::cage("hd-daemon").stopped().start();
    let user = &s.user;
    let marker = user.home.join("cagepipe-hd-ran");
    let _ = std::fs::remove_file(&marker);
    let mut daemon = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sleep", "600"])
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare --mount");
    // The pid of `sleep` itself: unshare execs it in place.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = daemon.id() as i32;
    assert_ne!(rig::ns_inode_of(pid, "mnt"), rig::host_ns_inode("mnt"), "the daemon has its own mount namespace");
    write_pidfile(&s.pidfile, &format!("{pid}\n"));

    let d = s.run(&raw_pipe(&format!("|/bin/sh -c 'touch {}'", marker.display())));
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(d.code(), Some(75), "{d:?}");
    assert!(d.stderr.contains("a host daemon"), "the reason names it: {}", d.stderr);
    assert!(!marker.exists(), "nothing ran in the daemon's namespace");
}

/// A program that is being written (another process holds it open for
/// writing) cannot be executed right now: ETXTBSY passes, so the message
/// waits in the queue instead of bouncing with 126.
#[test]
fn an_exec_that_fails_for_a_passing_reason_defers() {
    let Some(_test) = rig::need(&[Root]) else { return };
    let program = rig::fresh("busy");
    std::fs::copy("/bin/true", &program).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bind = (program.clone(), "/opt/busy".to_owned());
    let s = rig::cage("hd-txtbsy").container(move |o, _| o.bind_ro = vec![bind]).start();

    let ok = s.run(&raw_pipe("|/opt/busy"));
    assert_eq!(ok.code(), Some(0), "the program runs when nobody writes it: {ok:?}");
    let writer = std::fs::OpenOptions::new().write(true).open(&program).unwrap();
    let d = s.run(&raw_pipe("|/opt/busy"));
    drop(writer);
    let _ = std::fs::remove_file(&program);
    assert_eq!(d.code(), Some(75), "{d:?}");
    assert!(d.stderr.contains("for now") && d.stderr.contains("deferred"), "{}", d.stderr);
}

/// Out of memory at any point: cagepipe's own process ends with 75, never
/// by a signal (the standard library would abort, which Exim reads as the
/// command crashing and bounces). The address-space limit is swept across
/// the range where start-up succeeds but the work does not fit.
#[test]
fn running_out_of_memory_defers_and_never_aborts() {
    let Some(_test) = rig::need(&[Tool("prlimit")]) else { return };
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_cagepipe"));
    let big = "a".repeat(120_000);
    let mut saw_out_of_memory = 0;
    for mb in 6..40u64 {
        // Below some limit the loader or the runtime cannot even start the
        // program (before any code of cagepipe's runs): not what is tested.
        let starts = Command::new("prlimit")
            .arg(format!("--as={}", mb << 20))
            .arg(&bin)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
        if !starts {
            continue;
        }
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--as={}", mb << 20)).arg(&bin).args(["--user", "nobody", "--dry-run", "--", "/bin/true"]);
        for _ in 0..8 {
            cmd.arg(&big);
        }
        let out = cmd.stdin(Stdio::null()).output().expect("prlimit (util-linux)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), None, "{mb} MiB: killed by a signal: {stderr}");
        if stderr.contains("out of memory; the delivery is deferred") {
            assert_eq!(out.status.code(), Some(75), "{mb} MiB: {stderr}");
            saw_out_of_memory += 1;
        }
    }
    assert!(saw_out_of_memory > 0, "no limit in the sweep made an allocation fail: the test proves nothing");
}

/// What Landlock enforces here (ABI 3 and later: this kernel) and what it
/// cannot, each claim of README's Sandbox section pinned on a real delivery
/// with `landlock = "required"`: outside the write paths, writing,
/// creating, removing, renaming, linking and truncating are refused and
/// executing outside the execute paths is refused; changing a file's mode,
/// times or extended attributes, running a file through the dynamic loader
/// and executing a memfd are not restricted. Should a kernel or the crate
/// start to cover one of the latter, this test fails and the documentation
/// must say so.
#[test]
fn the_sandbox_enforces_what_the_documentation_says_and_no_more() {
    let Some(_test) = rig::need(&[Root, Tool("/usr/bin/python3")]) else { return };
    let sandbox =
        "[sandbox]\nlandlock = \"required\"\nwrite = [\"{home}\", \"/dev/null\"]\nexecute = [\"/usr\", \"/bin\", \"/lib\", \"/lib64\"]\n";
    let s = rig::cage("hd-landlock").config(sandbox).start();
    let user = &s.user;
    // Outside every write path: a directory and a file of the user's own,
    // so that only the sandbox can refuse.
    let drop = s.host_path("/srv/drop");
    std::fs::create_dir_all(drop.join("sub")).unwrap();
    for f in ["f", "g", "sub"] {
        let p = drop.join(f);
        if f != "sub" {
            std::fs::write(&p, b"x").unwrap();
        }
    }
    std::fs::copy("/usr/bin/true", drop.join("prog")).unwrap();
    for p in [drop.clone(), drop.join("sub"), drop.join("f"), drop.join("g"), drop.join("prog")] {
        std::os::unix::fs::chown(&p, Some(user.uid), Some(user.gid)).unwrap();
    }
    std::fs::set_permissions(drop.join("prog"), std::fs::Permissions::from_mode(0o755)).unwrap();

    // Each line: a shell command run alone by the sandboxed command, and
    // whether the sandbox refuses it.
    let loader = if std::path::Path::new("/lib64/ld-linux-x86-64.so.2").exists() {
        "/lib64/ld-linux-x86-64.so.2"
    } else {
        "/lib/ld-linux-aarch64.so.1"
    };
    let memfd = "import os; f=os.memfd_create('m'); os.write(f, open('/usr/bin/true','rb').read()); \
                 os.execv('/proc/self/fd/%d' % f, ['m'])";
    let cases: Vec<(&str, String, bool)> = vec![
        ("write", "echo y > /srv/drop/f".into(), true),
        ("create", "echo y > /srv/drop/new".into(), true),
        ("remove", "rm /srv/drop/g".into(), true),
        ("rename", "mv /srv/drop/f /srv/drop/sub/f".into(), true),
        ("link", "ln /srv/drop/f /srv/drop/sub/l".into(), true),
        ("truncate", "truncate -s 0 /srv/drop/f".into(), true),
        ("mkdir", "mkdir /srv/drop/d".into(), true),
        ("execute", "/srv/drop/prog".into(), true),
        ("chmod", "chmod 600 /srv/drop/f".into(), false),
        ("utimes", "touch -c -d @0 /srv/drop/f".into(), false),
        ("setxattr", "python3 -c \"import os; os.setxattr('/srv/drop/f', 'user.cp', b'1')\"".into(), false),
        ("loader", format!("{loader} /srv/drop/prog"), false),
        ("memfd", format!("python3 -c \"{memfd}\""), false),
    ];
    let mut wrong = Vec::new();
    for (what, command, refused) in &cases {
        let args = vec![std::ffi::OsString::from("--"), "/bin/sh".into(), "-c".into(), command.into()];
        let d = s.run(&args);
        let ok = d.code() == Some(0);
        if ok == *refused {
            wrong.push(format!("{what}: `{command}` {} ({d:?})", if ok { "was allowed" } else { "was refused" }));
        }
    }
    // The setxattr case needs user xattrs on the container's file system.
    assert!(wrong.is_empty(), "the sandbox does not do what the documentation says:\n{}", wrong.join("\n"));
    // Without the sandbox the refused ones work: it was the sandbox.
    let text = s.config_text();
    s.config.write(&text[..text.find("[sandbox]").unwrap()]);
    let args = vec![std::ffi::OsString::from("--"), "/bin/sh".into(), "-c".into(), "echo y > /srv/drop/f".into()];
    assert_eq!(s.run(&args).code(), Some(0));
}
