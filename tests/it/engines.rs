//! The container engines' backends against the real engines (runc, crun,
//! Docker, Podman rootful and rootless, LXC, systemd-nspawn with and without
//! machined), installed from Debian packages by testbed/test: the real
//! binary with its file capabilities, run as an unprivileged user, finds the
//! container in the engine's own state and delivers into it. Every engine
//! daemon is started here and stopped again; no bridge, no firewall table;
//! the root filesystems, bundles and logs go when the last test here ends.
//! crun is in `crun`; user namespaces a user made (rootless Podman, a
//! process that unshares inside a container's cgroup) are in `userns`.
//! With CAGEPIPE_STRICT=1 a test that cannot run fails instead of skipping.

use crate::rig;
use crate::rig::exim as mta;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rig::{deliver, raw_pipe, Caller, ConfigDir, Delivery};

const PROBE: &str = "/opt/cagepipe-probe/probe";

/// Whether this test can run: root and every tool present. Skips loudly,
/// or panics under CAGEPIPE_STRICT=1.
fn can_run(_test: &str, tools: &[&'static str]) -> Option<rig::need::Running> {
    let mut needs = vec![rig::Need::Root];
    needs.extend(tools.iter().map(|t| rig::Need::Tool(t)));
    rig::need(&needs)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many tests are using [`base`] right now; the last one out removes
/// it with every rootfs, bundle and log in it.
static USERS: Mutex<usize> = Mutex::new(0);
/// The shared root filesystem, made by the first user of [`base`].
static ROOTFS: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Held for the whole of each test: while one is alive, [`base`] exists.
struct Lease;

impl Lease {
    fn take() -> Lease {
        *USERS.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Lease
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
        *users -= 1;
        if *users == 0 {
            ROOTFS.lock().unwrap_or_else(|e| e.into_inner()).take();
            let _ = std::fs::remove_dir_all(base());
        }
    }
}

/// A directory of ours below /run (root-owned 0755 all the way).
fn base() -> PathBuf {
    let dir = rig::scratch().join("engines");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A root filesystem without a registry: the shell, sleep, unshare and the
/// probe, with the libraries they load, copied from the host. Lives as
/// long as some test holds a [`Lease`].
fn rootfs() -> PathBuf {
    let mut made = ROOTFS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(root) = made.as_ref() {
        return root.clone();
    }
    let root = base().join("rootfs");
    make_rootfs(&root);
    *made = Some(root.clone());
    root
}

/// A private copy of the root filesystem for an engine that writes into
/// it (systemd-nspawn, Podman).
fn rootfs_copy(tag: &str) -> PathBuf {
    let copy = base().join(format!("rootfs-{tag}"));
    let _ = std::fs::remove_dir_all(&copy);
    run(Command::new("cp").arg("-a").arg(rootfs()).arg(&copy));
    copy
}

fn make_rootfs(root: &Path) {
    // /usr and os-release: systemd-nspawn refuses a tree without them.
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "opt/cagepipe-probe", "sbin", "usr"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let probe = rig::probe_binary();
    let binaries: [(&Path, &str); 4] = [
        (Path::new("/bin/dash"), "bin/sh"),
        (Path::new("/bin/sleep"), "bin/sleep"),
        (Path::new("/usr/bin/unshare"), "bin/unshare"),
        (probe, "opt/cagepipe-probe/probe"),
    ];
    for (from, to) in binaries {
        std::fs::copy(from, root.join(to)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        let libs = run(Command::new("ldd").arg(from));
        for lib in libs.split_whitespace().filter(|w| w.starts_with('/')) {
            let dest = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(lib, &dest).unwrap();
        }
    }
    std::fs::write(root.join("etc/hostname"), "engine\n").unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=cagepipe-test\n").unwrap();
}

/// Remove the cgroup `rel` and everything below it in every hierarchy
/// (only empty cgroups can go: one another container still uses stays).
fn remove_cgroup(rel: &str) {
    for h in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let top = h.path().join(rel);
        if !top.is_dir() {
            continue;
        }
        let out = Command::new("find").arg(&top).args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"]).output();
        let _ = out;
    }
}

/// The hard limit of `resource` here.
fn hard_limit(resource: nix::sys::resource::Resource) -> u64 {
    nix::sys::resource::getrlimit(resource).unwrap().1
}

fn user(tag: &str) -> (rig::User, Caller) {
    let user = rig::test_user(&format!("cptest-eng-{tag}"));
    let caller = Caller { uid: user.uid, gid: rig::cagepipe_gid() };
    (user, caller)
}

fn probe(config: &ConfigDir, caller: Caller) -> Delivery {
    deliver(config, caller, &raw_pipe(&format!("|{PROBE} report")), &[("PATH", "/bin:/usr/bin")], b"")
}

/// Everything that must hold inside for a delivery into the container
/// whose init is `init`: its namespaces, its cgroups, the user's own uid
/// and no capability at all.
fn assert_inside(d: &Delivery, init: i32, hostname: &str, user: &rig::User) -> BTreeMap<String, String> {
    assert_eq!(d.code(), Some(0), "delivery failed: {d:?}");
    let r = rig::parse_report(&d.stdout);
    for ns in ["mnt", "pid", "uts", "ipc", "net"] {
        assert_eq!(r[&format!("ns_{ns}")], rig::ns_inode_of(init, ns).to_string(), "{ns} namespace is the container's");
        assert_ne!(r[&format!("ns_{ns}")], rig::host_ns_inode(ns).to_string(), "{ns} namespace is not the host's");
    }
    assert_eq!(r["hostname"], hostname);
    let init_cgroups = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    let v2 = init_cgroups.lines().find(|l| l.starts_with("0::")).unwrap();
    assert!(r["cgroup"].split(';').any(|l| l == v2 || l == "0::/"), "joined {v2}: {}", r["cgroup"]);
    for k in ["uid", "euid", "suid", "fsuid"] {
        assert_eq!(r[k], user.uid.to_string(), "{k}");
    }
    for k in ["cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb"] {
        assert_eq!(u64::from_str_radix(&r[k], 16).unwrap(), 0, "{k} = {}", r[k]);
    }
    assert_eq!(r["no_new_privs"], "1");
    r
}

fn assert_deferred(d: &Delivery, why: &str) {
    assert_eq!(d.code(), Some(75), "{d:?}");
    assert!(d.stderr.contains(why), "expected {why:?} in: {}", d.stderr);
}

/// Field 22 of /proc/PID/stat of a process that must be there.
fn start_ticks(pid: i32) -> u64 {
    rig::start_ticks(pid).unwrap_or_else(|| panic!("process {pid} is gone"))
}

/// What root's `check` prints for the user under `config`.
fn check_text(config: &ConfigDir, user: &rig::User) -> String {
    let check = rig::run_as_root(
        &[OsString::from(format!("--config={}", config.file().display())), "check".into(), user.name.clone().into()],
        b"",
    );
    String::from_utf8_lossy(&check.stdout).into_owned()
}

/// One real Exim delivery through `backend`: Debian's exim4 with the
/// shipped configuration routes a message for the user through their
/// ~/.forward pipe and cagepipe into the container whose init is `init`.
fn exim_delivers(user: &rig::User, backend: &str, init: i32) {
    if !std::path::Path::new(mta::EXIM).exists() {
        rig::skip_or_fail("exim through an engine", &format!("{} is not installed", mta::EXIM));
        return;
    }
    let exim = mta::Exim::new(&format!("eng-{}", user.name));
    exim.write_conf(&format!("{}.include {}\n", exim.private_main(), mta::snippet("exim.conf").display()));
    exim.cagepipe_toml(&format!(
        "[container]\nbackend = \"{backend}\"\n\n[command]\npath = \"/bin:/opt/cagepipe-probe\"\n"
    ));
    let report = format!("/tmp/report-{}", user.name);
    let forward = user.home.join(".forward");
    std::fs::write(&forward, format!("|{PROBE} report --out {report}\n")).unwrap();
    nix::unistd::chown(&forward, Some(user.uid.into()), Some(user.gid.into())).unwrap();
    let rcpt = format!("{}@localhost", user.name);
    let (id, verdict) = exim.send(&rcpt, &mta::message("engine", "through the engine\n"));
    let _ = std::fs::remove_file(&forward);
    assert_eq!(verdict, mta::Verdict::Delivered, "{:?}", exim.log_of(&id));
    let inside = format!("/proc/{init}/root{report}");
    let r = rig::parse_report(&std::fs::read(&inside).unwrap_or_else(|e| panic!("no report at {inside}: {e}")));
    let _ = std::fs::remove_file(&inside);
    for ns in ["mnt", "pid", "uts", "net"] {
        assert_eq!(r[&format!("ns_{ns}")], rig::ns_inode_of(init, ns).to_string(), "{ns} namespace");
    }
    assert_eq!(r["uid"], user.uid.to_string());
    assert!(exim.paniclog().is_empty(), "{}", exim.paniclog());
    let _ = std::fs::remove_dir_all(&exim.dir);
}

// ---- runc (the oci backend) --------------------------------------------

struct Runc {
    id: String,
    bundle: PathBuf,
}

/// An OCI bundle in `bundle` made by `runtime spec`: the shared root
/// filesystem read-only, `sleep infinity`, hostname `id`, and a cgroup
/// namespace of its own besides the spec's pid, net, ipc, uts and mount.
fn oci_bundle(runtime: &str, bundle: &Path, id: &str) {
    std::fs::create_dir_all(bundle).unwrap();
    let _ = std::fs::remove_file(bundle.join("config.json"));
    run(Command::new(runtime).arg("spec").current_dir(bundle));
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    spec["root"] = serde_json::json!({"path": rootfs(), "readonly": true});
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["/bin/sleep", "infinity"]);
    spec["hostname"] = id.into();
    let namespaces = spec["linux"]["namespaces"].as_array_mut().unwrap();
    if !namespaces.iter().any(|n| n["type"] == "cgroup") {
        namespaces.push(serde_json::json!({"type": "cgroup"}));
    }
    std::fs::write(bundle.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
}

impl Runc {
    /// A runc container `id` with its own pid, net, ipc, uts, mount and
    /// cgroup namespaces, running `sleep infinity`.
    fn start(id: &str) -> Runc {
        let bundle = base().join(format!("bundle-{id}"));
        oci_bundle("runc", &bundle, id);
        let c = Runc { id: id.to_string(), bundle };
        c.run();
        c
    }

    fn run(&self) {
        let out = run_in_bundle(Command::new("runc").args(["run", "-d", &self.id]), &self.bundle, "runc.log");
        assert!(out.status.success(), "runc run: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn pid(&self) -> i32 {
        let state: serde_json::Value =
            serde_json::from_str(&run(Command::new("runc").args(["state", &self.id]))).unwrap();
        state["pid"].as_i64().unwrap() as i32
    }

    fn stop(&self) {
        let _ = Command::new("runc").args(["delete", "--force", &self.id]).stdin(Stdio::null()).output();
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.bundle);
    }
}

#[test]
fn oci_backend_delivers_into_a_runc_container_and_guards_its_state() {
    let Some(_running) =
        can_run("oci_backend_delivers_into_a_runc_container_and_guards_its_state", &["/usr/sbin/runc"])
    else {
        return;
    };
    let _lease = Lease::take();
    let (user, caller) = user("oci");
    let config = ConfigDir::new("[container]\nbackend = \"oci\"\nid = \"{user}\"\n");
    let _ = Command::new("runc").args(["delete", "--force", &user.name]).output();
    let c = Runc::start(&user.name);
    let first = c.pid();
    assert_inside(&probe(&config, caller), first, &user.name, &user);

    // check names the engine, the state file and the rule's verdict.
    let text = check_text(&config, &user);
    assert!(text.contains(&format!("runc state /run/runc/{}/state.json: pid {first}", user.name)), "{text}");
    assert!(text.contains("as recorded: same process"), "{text}");

    // A recycled number: the state names the pid with another start time.
    let state = PathBuf::from(format!("/run/runc/{}/state.json", user.name));
    let _ = doctored_start_is_refused(&config, caller, &state, "init_process_start", first);
    guards_the_state_and_follows_a_restart(
        &config,
        caller,
        &user,
        &state,
        first,
        || c.stop(),
        || {
            c.run();
            c.pid()
        },
    );
}

/// An OCI runtime's command run in its bundle directory. A detached
/// container keeps the runtime's stdio, so a pipe would never end: stdout
/// goes nowhere, stderr to `log` in the bundle, read back as the output's.
fn run_in_bundle(cmd: &mut Command, bundle: &Path, log: &str) -> std::process::Output {
    let log = bundle.join(log);
    let status = cmd
        .current_dir(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    std::process::Output { status, stdout: Vec::new(), stderr: std::fs::read(&log).unwrap_or_default() }
}

/// An OCI runtime's state naming the init with another start time (`key`)
/// is refused; the delivery, for more checks. The state is put back.
fn doctored_start_is_refused(config: &ConfigDir, caller: Caller, state: &Path, key: &str, first: i32) -> Delivery {
    let original = std::fs::read(state).unwrap();
    let mut doctored: serde_json::Value = serde_json::from_slice(&original).unwrap();
    doctored[key] = (start_ticks(first) + 1).into();
    std::fs::write(state, serde_json::to_vec(&doctored).unwrap()).unwrap();
    let d = probe(config, caller);
    assert_deferred(&d, "the container has exited");
    std::fs::write(state, &original).unwrap();
    d
}

/// A state file others may write is not believed; the container stopped
/// is 75, started again under the same id it is the new init (returned).
fn guards_the_state_and_follows_a_restart(
    config: &ConfigDir,
    caller: Caller,
    user: &rig::User,
    state: &Path,
    first: i32,
    stop: impl FnOnce(),
    start_again: impl FnOnce() -> i32,
) -> i32 {
    let mode = std::fs::metadata(state).unwrap().permissions();
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(mode.mode() | 0o002)).unwrap();
    assert_deferred(&probe(config, caller), "cannot be trusted");
    std::fs::set_permissions(state, mode).unwrap();
    assert_eq!(probe(config, caller).code(), Some(0));

    stop();
    assert_deferred(&probe(config, caller), "no OCI runtime has a container");
    let second = start_again();
    assert_ne!(first, second);
    assert_inside(&probe(config, caller), second, &user.name, user);
    second
}

// ---- LXC (the lxc backend, a cgroup backend) ------------------------------

struct Lxc {
    name: String,
    dir: PathBuf,
    rootfs: PathBuf,
}

impl Lxc {
    fn start(name: &str) -> Lxc {
        let dir = base().join(format!("lxc-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        // A copy of its own: liblxc changes the root directory's inode
        // (its ctime) at every start, and the Docker test tars the shared
        // one meanwhile ("file changed as we read it").
        let rootfs = rootfs_copy(&format!("lxc-{name}"));
        let conf = format!(
            "lxc.uts.name = {name}\nlxc.rootfs.path = dir:{}\nlxc.net.0.type = empty\n\
             lxc.apparmor.profile = unconfined\nlxc.init.cmd = /bin/sleep infinity\n\
             lxc.mount.auto = proc:mixed sys:ro\nlxc.autodev = 1\nlxc.log.file = {}/log\n",
            rootfs.display(),
            dir.display()
        );
        std::fs::write(dir.join("config"), conf).unwrap();
        let c = Lxc { name: name.to_string(), dir, rootfs };
        c.run();
        c
    }

    fn run(&self) {
        let out = Command::new("lxc-start")
            .args(["-n", &self.name, "-P"])
            .arg(base())
            .arg("-f")
            .arg(self.dir.join("config"))
            .arg("-d")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        assert!(out.status.success(), "lxc-start: {}\n{log}", String::from_utf8_lossy(&out.stderr));
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.pid().is_none() {
            assert!(Instant::now() < deadline, "lxc container {} did not start: {log}", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> Option<i32> {
        let out =
            Command::new("lxc-info").args(["-n", &self.name, "-P"]).arg(base()).args(["-p", "-H"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    fn stop(&self) {
        let _ = Command::new("lxc-stop").args(["-n", &self.name, "-P"]).arg(base()).args(["-k"]).output();
    }
}

impl Drop for Lxc {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.rootfs);
        // liblxc's monitor leaves this behind in every hierarchy.
        remove_cgroup("lxc.pivot");
    }
}

#[test]
fn lxc_backend_delivers_into_the_init_never_into_a_process_that_unshared() {
    let Some(_running) =
        can_run("lxc_backend_delivers_into_the_init_never_into_a_process_that_unshared", &["/usr/bin/lxc-start"])
    else {
        return;
    };
    let _lease = Lease::take();
    let (user, caller) = user("lxc");
    let config = ConfigDir::new("[container]\nbackend = [\"oci\", \"lxc\"]\n");
    let c = Lxc::start(&user.name);
    let first = c.pid().unwrap();
    assert_inside(&probe(&config, caller), first, &user.name, &user);

    // A process inside unshares a user, mount and pid namespace of its own
    // and stays in the container's cgroup: it is never the one entered.
    let mut inside = Command::new("lxc-attach")
        .args(["-n", &user.name, "-P"])
        .arg(base())
        .args(["--", "/bin/unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "/bin/sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // liblxc puts attached processes in `.lxc` below the container's cgroup2.
    let cgroup = PathBuf::from(format!("/sys/fs/cgroup/unified/lxc.payload.{}", user.name));
    let procs = cgroup.join(".lxc/cgroup.procs");
    let deadline = Instant::now() + Duration::from_secs(5);
    let unshared = loop {
        let members = std::fs::read_to_string(&procs).unwrap_or_default()
            + &std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
        let other = members
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .find(|&p| rig::ns_inode_of(p, "user") != rig::ns_inode_of(first, "user"));
        if let Some(p) = other {
            break p;
        }
        assert!(Instant::now() < deadline, "the unsharing process did not appear in {}", procs.display());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_ne!(rig::ns_inode_of(unshared, "mnt"), rig::ns_inode_of(first, "mnt"));
    let r = assert_inside(&probe(&config, caller), first, &user.name, &user);
    assert_eq!(r["ns_user"], rig::ns_inode_of(first, "user").to_string());
    let _ = inside.kill();
    let _ = inside.wait();

    c.stop();
    assert_deferred(&probe(&config, caller), "lxc has no container");
    c.run();
    let second = c.pid().unwrap();
    assert_ne!(first, second);
    assert_inside(&probe(&config, caller), second, &user.name, &user);
    exim_delivers(&user, "lxc", second);
}

// ---- Docker --------------------------------------------------------------

/// One dockerd for this test process, without a bridge or firewall rules.
struct Dockerd {
    child: Child,
    host: String,
}

static DOCKERD: Mutex<Option<Dockerd>> = Mutex::new(None);

fn docker(args: &[&str]) -> String {
    let guard = DOCKERD.lock().unwrap();
    let host = guard.as_ref().expect("dockerd").host.clone();
    drop(guard);
    run(Command::new("/usr/bin/docker").arg("-H").arg(host).args(args))
}

fn start_dockerd() {
    let mut guard = DOCKERD.lock().unwrap();
    if guard.is_some() {
        return;
    }
    let sock = base().join("docker.sock");
    let host = format!("unix://{}", sock.display());
    let child = Command::new("/usr/sbin/dockerd")
        .args(["--iptables=false", "--ip6tables=false", "--bridge=none", "-H", &host])
        .arg("--pidfile")
        .arg(base().join("docker.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(base().join("dockerd.log")).unwrap())
        .spawn()
        .unwrap();
    *guard = Some(Dockerd { child, host: host.clone() });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = Command::new("/usr/bin/docker").args(["-H", &host, "info"]).output().is_ok_and(|o| o.status.success());
        if ok {
            break;
        }
        let log = std::fs::read_to_string(base().join("dockerd.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "dockerd did not come up: {log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop_dockerd() {
    if let Some(mut d) = DOCKERD.lock().unwrap().take() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.child.id() as i32), nix::sys::signal::SIGTERM);
        let _ = d.child.wait();
    }
    // dockerd leaves an empty `docker` cgroup in every hierarchy.
    for h in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let _ = std::fs::remove_dir(h.path().join("docker"));
    }
}

#[test]
fn docker_backend_delivers_by_container_name() {
    let Some(_running) =
        can_run("docker_backend_delivers_by_container_name", &["/usr/sbin/dockerd", "/usr/bin/docker"])
    else {
        return;
    };
    let _lease = Lease::take();
    let (user, caller) = user("dock");
    start_dockerd();
    let result = std::panic::catch_unwind(|| {
        let image = "cagepipe-engines-test";
        // A copy of its own: runc and LXC, in other tests, make mount
        // points in the shared tree, and tar fails on a changing tree.
        let tree = rootfs_copy("docker");
        let mut tar =
            Command::new("tar").arg("-C").arg(&tree).args(["-c", "."]).stdout(Stdio::piped()).spawn().unwrap();
        let host = DOCKERD.lock().unwrap().as_ref().unwrap().host.clone();
        let out = Command::new("/usr/bin/docker")
            .args(["-H", &host, "import", "-", image])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(tar.wait().unwrap().success());
        let _ = std::fs::remove_dir_all(&tree);
        assert!(out.status.success(), "docker import: {}", String::from_utf8_lossy(&out.stderr));
        let _ = Command::new("/usr/bin/docker").args(["-H", &host, "rm", "-f", &user.name]).output();
        let start = || {
            docker(&[
                "run",
                "-d",
                "--name",
                &user.name,
                "--hostname",
                &user.name,
                "--network",
                "none",
                image,
                "/bin/sleep",
                "infinity",
            ]);
        };
        start();
        let pid = || -> i32 { docker(&["inspect", "-f", "{{.State.Pid}}", &user.name]).trim().parse().unwrap() };
        let config = ConfigDir::new("[container]\nbackend = \"docker\"\n");
        let first = pid();
        assert_inside(&probe(&config, caller), first, &user.name, &user);

        // A recycled number: runc's state names the pid with another start
        // time; and a container's config others may write is not believed.
        let id = docker(&["inspect", "-f", "{{.Id}}", &user.name]).trim().to_string();
        let state = PathBuf::from(format!("/run/docker/runtime-runc/moby/{id}/state.json"));
        let original = std::fs::read(&state).unwrap();
        let mut doctored: serde_json::Value = serde_json::from_slice(&original).unwrap();
        doctored["init_process_start"] = (start_ticks(first) + 1).into();
        std::fs::write(&state, serde_json::to_vec(&doctored).unwrap()).unwrap();
        assert_deferred(&probe(&config, caller), "the container has exited");
        std::fs::write(&state, &original).unwrap();
        let conf = PathBuf::from(format!("/var/lib/docker/containers/{id}/config.v2.json"));
        let mode = std::fs::metadata(&conf).unwrap().permissions();
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o606)).unwrap();
        assert_deferred(&probe(&config, caller), "cannot be trusted");
        std::fs::set_permissions(&conf, mode).unwrap();

        docker(&["stop", "-t", "0", &user.name]);
        assert_deferred(&probe(&config, caller), "is not running");
        docker(&["start", &user.name]);
        let second = pid();
        assert_ne!(first, second);
        assert_inside(&probe(&config, caller), second, &user.name, &user);
        exim_delivers(&user, "docker", second);
        docker(&["rm", "-f", &user.name]);
        docker(&["rmi", image]);
    });
    stop_dockerd();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

// ---- Podman (rootful) ------------------------------------------------------

/// `--ulimit NAME=N:N` with N at most `cap` and never above this process's
/// hard limit: Podman's defaults (1048576 files) need CAP_SYS_RESOURCE,
/// which a test machine may not have.
fn ulimit(resource: nix::sys::resource::Resource, name: &str, cap: u64) -> String {
    let n = hard_limit(resource).min(cap);
    format!("{name}={n}:{n}")
}

struct Podman {
    name: String,
    rootfs: PathBuf,
}

impl Podman {
    fn start(name: &str) -> Podman {
        let _ = Command::new("/usr/bin/podman").args(["rm", "-f", "-t", "0", name]).output();
        let rootfs = rootfs_copy(&format!("podman-{name}"));
        // Every option before --rootfs: the first word after it is the
        // root directory, and podman stops reading options there.
        run(Command::new("/usr/bin/podman")
            .args(["--runtime", "runc", "run", "-d", "--name", name, "--hostname", name, "--network", "none"])
            .args(["--ulimit", &ulimit(nix::sys::resource::Resource::RLIMIT_NOFILE, "nofile", 20_000)])
            .args(["--ulimit", &ulimit(nix::sys::resource::Resource::RLIMIT_NPROC, "nproc", 4096)])
            .arg("--rootfs")
            .arg(&rootfs)
            .args(["/bin/sleep", "infinity"]));
        Podman { name: name.to_string(), rootfs }
    }

    fn inspect(&self, format: &str) -> String {
        run(Command::new("/usr/bin/podman").args(["inspect", "-f", format, &self.name])).trim().to_string()
    }

    fn pid(&self) -> i32 {
        self.inspect("{{.State.Pid}}").parse().unwrap()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = Command::new("/usr/bin/podman").args(["rm", "-f", "-t", "0", &self.name]).output();
        let _ = std::fs::remove_dir_all(&self.rootfs);
        remove_cgroup("libpod_parent");
    }
}

#[test]
fn podman_backend_delivers_into_a_rootful_container_and_guards_its_state() {
    let Some(_running) = can_run(
        "podman_backend_delivers_into_a_rootful_container_and_guards_its_state",
        &["/usr/bin/podman", "/usr/bin/conmon", "/usr/sbin/runc"],
    ) else {
        return;
    };
    let _lease = Lease::take();
    let (user, caller) = user("pod");
    let config = ConfigDir::new("[container]\nbackend = \"podman\"\n");
    let c = Podman::start(&user.name);
    let first = c.pid();
    assert_inside(&probe(&config, caller), first, &user.name, &user);

    // A recycled number: runc's state names the pid with another start time.
    let id = c.inspect("{{.Id}}");
    let state = PathBuf::from(format!("/run/runc/{id}/state.json"));
    let original = std::fs::read(&state).unwrap();
    let mut doctored: serde_json::Value = serde_json::from_slice(&original).unwrap();
    doctored["init_process_start"] = (start_ticks(first) + 1).into();
    std::fs::write(&state, serde_json::to_vec(&doctored).unwrap()).unwrap();
    assert_deferred(&probe(&config, caller), "the container has exited");
    std::fs::write(&state, &original).unwrap();

    // The name list writable by others is not believed.
    let list = Path::new("/var/lib/containers/storage/overlay-containers/containers.json");
    let mode = std::fs::metadata(list).unwrap().permissions();
    std::fs::set_permissions(list, std::fs::Permissions::from_mode(0o606)).unwrap();
    assert_deferred(&probe(&config, caller), "cannot be trusted");
    std::fs::set_permissions(list, mode).unwrap();
    assert_eq!(probe(&config, caller).code(), Some(0));

    // Stopped: 75; started again: the new init.
    run(Command::new("/usr/bin/podman").args(["stop", "-t", "0", &user.name]));
    let stopped = probe(&config, caller);
    assert_eq!(stopped.code(), Some(75), "{stopped:?}");
    assert!(stopped.stderr.contains("podman"), "{}", stopped.stderr);
    run(Command::new("/usr/bin/podman").args(["start", &user.name]));
    let second = c.pid();
    assert_ne!(first, second);
    assert_inside(&probe(&config, caller), second, &user.name, &user);
}

// ---- systemd-nspawn: a plain cgroup, and machined ---------------------------

/// The hierarchies systemd-nspawn makes its cgroups in: systemd's own and
/// cgroup2 (hybrid), or the one cgroup2 (unified).
fn systemd_hierarchies() -> Vec<PathBuf> {
    let hybrid: Vec<PathBuf> = ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.join("cgroup.procs").exists())
        .collect();
    if hybrid.is_empty() {
        vec![PathBuf::from("/sys/fs/cgroup")]
    } else {
        hybrid
    }
}

/// A systemd-nspawn container started from a cgroup of its own, `unit`, as
/// a service manager would (`--keep-unit`): nspawn moves itself to
/// `<unit>/supervisor` and the container to `<unit>/payload`.
struct Nspawn {
    child: Option<Child>,
    name: String,
    unit: String,
    rootfs: PathBuf,
}

impl Nspawn {
    fn start(name: &str, unit: &str, bus: Option<&Path>) -> Nspawn {
        let rootfs = rootfs_copy(&format!("nspawn-{name}"));
        let mut n = Nspawn { child: None, name: name.to_string(), unit: unit.to_string(), rootfs };
        n.run(bus);
        n
    }

    fn run(&mut self, bus: Option<&Path>) {
        let mut procs = Vec::new();
        for h in systemd_hierarchies() {
            let dir = h.join(&self.unit);
            std::fs::create_dir_all(&dir).unwrap();
            procs.push(dir.join("cgroup.procs"));
        }
        let log = base().join(format!("nspawn-{}.log", self.name));
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "for f in $CGROUPS; do echo $$ > $f; done; exec \"$@\"", "sh", "/usr/bin/systemd-nspawn"])
            .env("CGROUPS", procs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" "))
            .args(["--keep-unit", "--private-network", "-q", "-M", &self.name, "-D"])
            .arg(&self.rootfs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        match bus {
            Some(sock) => cmd.env("DBUS_SYSTEM_BUS_ADDRESS", format!("unix:path={}", sock.display())),
            None => cmd.arg("--register=no"),
        };
        cmd.args(["/bin/sleep", "infinity"]);
        self.child = Some(cmd.spawn().unwrap());
        // Ready once the payload runs: nspawn puts its child in the payload
        // cgroup before that child has set the hostname and exec'd.
        let deadline = Instant::now() + Duration::from_secs(10);
        let payload_runs = |leader: Option<i32>| {
            leader
                .is_some_and(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep"))
        };
        while !payload_runs(self.leader()) {
            assert!(
                Instant::now() < deadline,
                "systemd-nspawn {} did not start: {}",
                self.name,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn payload(&self) -> PathBuf {
        systemd_hierarchies().pop().unwrap().join(&self.unit).join("payload")
    }

    fn leader(&self) -> Option<i32> {
        let procs = std::fs::read_to_string(self.payload().join("cgroup.procs")).ok()?;
        procs.split_whitespace().filter_map(|p| p.parse().ok()).find(|&p| rig::start_ticks(p).is_some())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(leader) = self.leader() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(leader), nix::sys::signal::SIGKILL);
            }
            let _ = child.wait();
        }
        // nspawn leaves its mount propagation directory behind.
        let _ = std::fs::remove_dir_all(format!("/run/systemd/nspawn/propagate/{}", self.name));
    }
}

impl Drop for Nspawn {
    fn drop(&mut self) {
        self.stop();
        remove_cgroup(&self.unit);
        let _ = std::fs::remove_dir_all(&self.rootfs);
    }
}

#[test]
fn cgroup_backend_delivers_into_nspawns_payload_and_guards_it() {
    let Some(_running) =
        can_run("cgroup_backend_delivers_into_nspawns_payload_and_guards_it", &["/usr/bin/systemd-nspawn"])
    else {
        return;
    };
    let _lease = Lease::take();
    let (user, caller) = user("cg");
    let unit = format!("cpeng-{}.scope", user.name);
    let config = ConfigDir::new("[container]\nbackend = \"cgroup\"\ncgroup = \"cpeng-{user}.scope/payload\"\n");
    let mut c = Nspawn::start(&user.name, &unit, None);
    let first = c.leader().unwrap();
    assert_inside(&probe(&config, caller), first, &user.name, &user);

    // A cgroup others may write is not believed.
    let payload = c.payload();
    std::fs::set_permissions(&payload, std::fs::Permissions::from_mode(0o757)).unwrap();
    assert_deferred(&probe(&config, caller), "cannot be trusted");
    std::fs::set_permissions(&payload, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Stopped: 75; started again: the new init.
    c.stop();
    assert_eq!(probe(&config, caller).code(), Some(75));
    c.run(None);
    let second = c.leader().unwrap();
    assert_ne!(first, second);
    assert_inside(&probe(&config, caller), second, &user.name, &user);
}

/// A private system bus with systemd-machined on it, for this test only.
struct Machined {
    dbus: Child,
    machined: Option<Child>,
    dir: PathBuf,
    sock: PathBuf,
}

impl Machined {
    fn start() -> Machined {
        let dir = base().join("bus");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let sock = dir.join("socket");
        let conf = format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig><type>system</type>\
             <listen>unix:path={}</listen><auth>EXTERNAL</auth><policy context=\"default\"><allow user=\"root\"/>\
             <allow own=\"*\"/><allow send_destination=\"*\"/><allow receive_sender=\"*\"/></policy></busconfig>\n",
            sock.display()
        );
        std::fs::write(dir.join("bus.conf"), conf).unwrap();
        let dbus = Command::new("/usr/bin/dbus-daemon")
            .arg(format!("--config-file={}", dir.join("bus.conf").display()))
            .args(["--nofork", "--nopidfile"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut m = Machined { dbus, machined: None, dir, sock };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !m.sock.exists() {
            assert!(Instant::now() < deadline, "dbus-daemon did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        m.run();
        m
    }

    /// (Re)start machined.
    fn run(&mut self) {
        self.stop_machined();
        self.machined = Some(
            Command::new("/lib/systemd/systemd-machined")
                .env("DBUS_SYSTEM_BUS_ADDRESS", format!("unix:path={}", self.sock.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.dir.join("machined.log")).unwrap())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = Command::new("/usr/bin/busctl")
                .arg(format!("--address=unix:path={}", self.sock.display()))
                .arg("list")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("org.freedesktop.machine1") {
                break;
            }
            assert!(Instant::now() < deadline, "systemd-machined did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop_machined(&mut self) {
        if let Some(mut m) = self.machined.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(m.id() as i32), nix::sys::signal::SIGTERM);
            let _ = m.wait();
        }
    }
}

impl Drop for Machined {
    fn drop(&mut self) {
        self.stop_machined();
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
    }
}

#[test]
fn machined_backend_delivers_into_a_registered_nspawn_machine() {
    let Some(_running) = can_run(
        "machined_backend_delivers_into_a_registered_nspawn_machine",
        &["/usr/bin/systemd-nspawn", "/lib/systemd/systemd-machined", "/usr/bin/dbus-daemon", "/usr/bin/busctl"],
    ) else {
        return;
    };
    let _lease = Lease::take();
    let (user, caller) = user("mach");
    let unit = format!("cpeng-{}.scope", user.name);
    let file = PathBuf::from(format!("/run/systemd/machines/{}", user.name));
    // machined's records of this machine, removed before and after (it
    // writes them again when it stops, and loads them when it starts).
    let records = MachineRecords(
        vec![file.clone(), format!("/run/systemd/machines/unit:{unit}").into()],
        !Path::new("/run/systemd/machines").exists(),
    );
    records.remove();
    let mut bus = Machined::start();
    let config = ConfigDir::new("[container]\nbackend = \"machined\"\n");
    let mut c = Nspawn::start(&user.name, &unit, Some(&bus.sock));
    let first = c.leader().unwrap();
    let registered = |leader: i32| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(&file).unwrap_or_default().contains(&format!("LEADER={leader}\n")) {
            assert!(Instant::now() < deadline, "machined did not register leader {leader} in {}", file.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    registered(first);
    assert_inside(&probe(&config, caller), first, &user.name, &user);

    // A leader that started after the machine was registered is another
    // process that got the number: refused.
    let original = std::fs::read_to_string(&file).unwrap();
    let mut newer = Command::new("/bin/sleep").arg("60").spawn().unwrap();
    std::fs::write(&file, original.replace(&format!("LEADER={first}\n"), &format!("LEADER={}\n", newer.id()))).unwrap();
    let d = probe(&config, caller);
    let _ = newer.kill();
    let _ = newer.wait();
    assert_eq!(d.code(), Some(75), "{d:?}");
    assert!(d.stderr.contains("started"), "{}", d.stderr);
    std::fs::write(&file, &original).unwrap();

    // A machine file others may write is not believed.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o646)).unwrap();
    assert_deferred(&probe(&config, caller), "cannot be trusted");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Stopped: 75. Without systemd nothing tells machined the leader is
    // gone, so the machine is dropped by hand before the container starts
    // again: the new leader.
    c.stop();
    assert_eq!(probe(&config, caller).code(), Some(75));
    // What systemd would have machined do when the scope empties: forget it
    // (machined reloads its state files on restart).
    bus.stop_machined();
    records.remove();
    bus.run();
    c.run(Some(&bus.sock));
    let second = c.leader().unwrap();
    assert_ne!(first, second);
    registered(second);
    assert_inside(&probe(&config, caller), second, &user.name, &user);
    drop(c);
}

/// machined's files about one machine, and whether machined's directory
/// was made during the test (then it goes too).
struct MachineRecords(Vec<PathBuf>, bool);

impl MachineRecords {
    fn remove(&self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Drop for MachineRecords {
    fn drop(&mut self) {
        self.remove();
        if self.1 {
            let _ = std::fs::remove_dir("/run/systemd/machines");
        }
    }
}

mod crun;
mod userns;
