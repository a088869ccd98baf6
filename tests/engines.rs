//! The container engines' backends against the real engines (runc, Docker,
//! LXC), installed from Debian packages by .ci/run: the real binary with
//! its file capabilities, run as an unprivileged user, finds the
//! container in the engine's own state and delivers into it. Every engine
//! daemon is started here and stopped again; no bridge, no firewall table.
//! With CAGEPIPE_STRICT=1 a test that cannot run fails instead of skipping.

mod common;
mod rig;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rig::{deliver, raw_pipe, Caller, ConfigDir, Delivery};

const PROBE: &str = "/opt/cagepipe-probe/probe";

/// Whether this test can run: root and every tool present. Skips loudly,
/// or panics under CAGEPIPE_STRICT=1.
fn can_run(test: &str, tools: &[&str]) -> bool {
    let strict = std::env::var("CAGEPIPE_STRICT").is_ok_and(|v| v == "1");
    if !common::require_root(test) {
        assert!(!strict, "{test}: CAGEPIPE_STRICT=1 but not root");
        return false;
    }
    for tool in tools {
        if !Path::new(tool).exists() {
            assert!(!strict, "{test}: CAGEPIPE_STRICT=1 but {tool} is not installed (.ci/run installs it)");
            let _ = writeln!(std::io::stderr(), "SKIP {test}: {tool} is not installed");
            return false;
        }
    }
    true
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

/// A directory of ours below /run (root-owned 0755 all the way).
fn base() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = rig::scratch().join("engines");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    })
}

/// A root filesystem without a registry: the shell, sleep, unshare and the
/// probe, with the libraries they load, copied from the host.
fn rootfs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = base().join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "opt/cagepipe-probe", "sbin"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let probe = common::probe_binary();
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
        root
    })
}

fn user(tag: &str) -> (common::User, Caller) {
    let user = common::test_user(&format!("cptest-eng-{tag}"));
    let caller = Caller { uid: user.uid, gid: rig::cagepipe_gid() };
    (user, caller)
}

fn probe(config: &ConfigDir, caller: Caller) -> Delivery {
    deliver(config, caller, &raw_pipe(&format!("|{PROBE} report")), &[("PATH", "/bin:/usr/bin")], b"")
}

/// Everything that must hold inside for a delivery into the container
/// whose init is `init`: its namespaces, its cgroups, the user's own uid
/// and no capability at all.
fn assert_inside(d: &Delivery, init: i32, hostname: &str, user: &common::User) -> BTreeMap<String, String> {
    assert_eq!(d.code(), Some(0), "delivery failed: {d:?}");
    let r = common::parse_report(&d.stdout);
    for ns in ["mnt", "pid", "uts", "ipc", "net"] {
        assert_eq!(
            r[&format!("ns_{ns}")],
            common::ns_inode_of(init, ns).to_string(),
            "{ns} namespace is the container's"
        );
        assert_ne!(r[&format!("ns_{ns}")], common::host_ns_inode(ns).to_string(), "{ns} namespace is not the host's");
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

/// Field 22 of /proc/PID/stat.
fn start_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(") ").unwrap().1.split(' ').nth(19).unwrap().parse().unwrap()
}

// ---- runc (the oci backend) --------------------------------------------

struct Runc {
    id: String,
    bundle: PathBuf,
}

impl Runc {
    /// A runc container `id` with its own pid, net, ipc, uts, mount and
    /// cgroup namespaces, running `sleep infinity`.
    fn start(id: &str) -> Runc {
        let bundle = base().join(format!("bundle-{id}"));
        std::fs::create_dir_all(&bundle).unwrap();
        let _ = std::fs::remove_file(bundle.join("config.json"));
        run(Command::new("runc").arg("spec").current_dir(&bundle));
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        spec["root"] = serde_json::json!({"path": rootfs(), "readonly": true});
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["/bin/sleep", "infinity"]);
        spec["hostname"] = id.into();
        spec["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "cgroup"}));
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
        let c = Runc { id: id.to_string(), bundle };
        c.run();
        c
    }

    fn run(&self) {
        // The detached container keeps runc's stdio: a pipe would never end.
        let log = self.bundle.join("runc.log");
        let status = Command::new("runc")
            .args(["run", "-d", &self.id])
            .current_dir(&self.bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .status()
            .unwrap();
        assert!(status.success(), "runc run: {}", std::fs::read_to_string(&log).unwrap_or_default());
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
    if !can_run("oci_backend_delivers_into_a_runc_container_and_guards_its_state", &["/usr/sbin/runc"]) {
        return;
    }
    let (user, caller) = user("oci");
    let config = ConfigDir::new("[container]\nbackend = \"oci\"\nid = \"{user}\"\n");
    let _ = Command::new("runc").args(["delete", "--force", &user.name]).output();
    let c = Runc::start(&user.name);
    let first = c.pid();
    assert_inside(&probe(&config, caller), first, &user.name, &user);

    // check names the engine, the state file and the rule's verdict.
    let check = rig::run_as_root(
        &[OsString::from(format!("--config={}", config.file().display())), "check".into(), user.name.clone().into()],
        b"",
    );
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(text.contains(&format!("runc state /run/runc/{}/state.json: pid {first}", user.name)), "{text}");
    assert!(text.contains("as recorded: same process"), "{text}");

    // A recycled number: the state names the pid with another start time.
    let state = PathBuf::from(format!("/run/runc/{}/state.json", user.name));
    let original = std::fs::read(&state).unwrap();
    let mut doctored: serde_json::Value = serde_json::from_slice(&original).unwrap();
    doctored["init_process_start"] = (start_ticks(first) + 1).into();
    std::fs::write(&state, serde_json::to_vec(&doctored).unwrap()).unwrap();
    assert_deferred(&probe(&config, caller), "the container has exited");
    std::fs::write(&state, &original).unwrap();

    // State writable by others is not believed.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o602)).unwrap();
    assert_deferred(&probe(&config, caller), "cannot be trusted");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(probe(&config, caller).code(), Some(0));

    // Stopped: 75; started again: the new init.
    c.stop();
    assert_deferred(&probe(&config, caller), "no OCI runtime has a container");
    c.run();
    let second = c.pid();
    assert_ne!(first, second);
    assert_inside(&probe(&config, caller), second, &user.name, &user);
}

// ---- LXC (the lxc backend, a cgroup backend) ------------------------------

struct Lxc {
    name: String,
    dir: PathBuf,
}

impl Lxc {
    fn start(name: &str) -> Lxc {
        let dir = base().join(format!("lxc-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = format!(
            "lxc.uts.name = {name}\nlxc.rootfs.path = dir:{}\nlxc.net.0.type = empty\n\
             lxc.apparmor.profile = unconfined\nlxc.init.cmd = /bin/sleep infinity\n\
             lxc.mount.auto = proc:mixed sys:ro\nlxc.autodev = 1\nlxc.log.file = {}/log\n",
            rootfs().display(),
            dir.display()
        );
        std::fs::write(dir.join("config"), conf).unwrap();
        let c = Lxc { name: name.to_string(), dir };
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
    }
}

#[test]
fn lxc_backend_delivers_into_the_init_never_into_a_process_that_unshared() {
    if !can_run("lxc_backend_delivers_into_the_init_never_into_a_process_that_unshared", &["/usr/bin/lxc-start"]) {
        return;
    }
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
            .find(|&p| common::ns_inode_of(p, "user") != common::ns_inode_of(first, "user"));
        if let Some(p) = other {
            break p;
        }
        assert!(Instant::now() < deadline, "the unsharing process did not appear in {}", procs.display());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_ne!(common::ns_inode_of(unshared, "mnt"), common::ns_inode_of(first, "mnt"));
    let r = assert_inside(&probe(&config, caller), first, &user.name, &user);
    assert_eq!(r["ns_user"], common::ns_inode_of(first, "user").to_string());
    let _ = inside.kill();
    let _ = inside.wait();

    c.stop();
    assert_deferred(&probe(&config, caller), "lxc has no container");
    c.run();
    let second = c.pid().unwrap();
    assert_ne!(first, second);
    assert_inside(&probe(&config, caller), second, &user.name, &user);
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
    if !can_run("docker_backend_delivers_by_container_name", &["/usr/sbin/dockerd", "/usr/bin/docker"]) {
        return;
    }
    let (user, caller) = user("dock");
    start_dockerd();
    let result = std::panic::catch_unwind(|| {
        let image = "cagepipe-engines-test";
        let mut tar =
            Command::new("tar").arg("-C").arg(rootfs()).args(["-c", "."]).stdout(Stdio::piped()).spawn().unwrap();
        let host = DOCKERD.lock().unwrap().as_ref().unwrap().host.clone();
        let out = Command::new("/usr/bin/docker")
            .args(["-H", &host, "import", "-", image])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(tar.wait().unwrap().success());
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

        docker(&["stop", "-t", "0", &user.name]);
        assert_deferred(&probe(&config, caller), "is not running");
        docker(&["start", &user.name]);
        let second = pid();
        assert_ne!(first, second);
        assert_inside(&probe(&config, caller), second, &user.name, &user);
        docker(&["rm", "-f", &user.name]);
        docker(&["rmi", image]);
    });
    stop_dockerd();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
