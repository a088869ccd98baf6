//! crun (the oci backend reading `<root>/<id>/status`): a real crun
//! container, found by its status file's pid and start time.
//!
//! crun 1.8 refuses to start on a hybrid cgroup host whose cgroup2 has a
//! controller ("cgroups in hybrid mode not supported"). Each crun started
//! here therefore runs in a mount namespace of its own in which an empty
//! file covers `<cgroup2>/cgroup.controllers`; the host's mounts are never
//! touched.

use super::*;

/// The cgroup2 mount's `cgroup.controllers` when this host is hybrid
/// (cgroup v1 hierarchies next to a cgroup2 that has controllers): the
/// file crun must not see.
fn hybrid_controllers() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut v1 = false;
    let mut v2 = None;
    for line in mounts.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let point = left.split(' ').nth(4).unwrap_or_default();
        match right.split(' ').next() {
            Some("cgroup") => v1 = true,
            Some("cgroup2") => v2 = Some(PathBuf::from(point).join("cgroup.controllers")),
            _ => {}
        }
    }
    let v2 = v2?;
    let has_controllers = !std::fs::read_to_string(&v2).unwrap_or_default().trim().is_empty();
    (v1 && has_controllers).then_some(v2)
}

struct Crun {
    id: String,
    bundle: PathBuf,
    /// crun's state root, if not its default /run/crun.
    root: Option<PathBuf>,
}

impl Crun {
    /// A crun container `id` with its own pid, net, ipc, uts, mount and
    /// cgroup namespaces, running `sleep infinity`.
    fn start(id: &str, root: Option<&Path>) -> Crun {
        let tag = if root.is_some() { "private" } else { "default" };
        let bundle = base().join(format!("bundle-crun-{tag}-{id}"));
        oci_bundle("/usr/bin/crun", &bundle, id);
        std::fs::write(bundle.join("empty"), "").unwrap();
        let c = Crun { id: id.to_string(), bundle, root: root.map(Path::to_path_buf) };
        c.crun(&["delete", "--force", id]);
        c.run();
        c
    }

    /// crun with `args`, in a private mount namespace that hides the
    /// cgroup2 controllers on a hybrid host.
    fn crun(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = match hybrid_controllers() {
            Some(controllers) => {
                let mut c = Command::new("/usr/bin/unshare");
                c.args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
                    .arg("mount --bind \"$1\" \"$2\" && shift 2 && exec /usr/bin/crun \"$@\"")
                    .arg("sh")
                    .arg(self.bundle.join("empty"))
                    .arg(controllers);
                c
            }
            None => Command::new("/usr/bin/crun"),
        };
        if let Some(root) = &self.root {
            cmd.arg("--root").arg(root);
        }
        run_in_bundle(cmd.args(args), &self.bundle, "crun.log")
    }

    fn run(&self) {
        let out = self.crun(&["run", "-d", &self.id]);
        assert!(out.status.success(), "crun run {}: {}", self.id, String::from_utf8_lossy(&out.stderr));
    }

    fn status_file(&self) -> PathBuf {
        self.root.as_deref().unwrap_or(Path::new("/run/crun")).join(&self.id).join("status")
    }

    /// The init's pid as crun recorded it, after checking that the record
    /// carries the start time the guard compares.
    fn pid(&self) -> i32 {
        let status: serde_json::Value = serde_json::from_slice(&std::fs::read(self.status_file()).unwrap()).unwrap();
        let pid = status["pid"].as_i64().unwrap_or_else(|| panic!("no pid in {status}")) as i32;
        let start = status["process-start-time"].as_u64().unwrap_or_else(|| panic!("no start time in {status}"));
        assert_eq!(start, start_ticks(pid), "crun's process-start-time is field 22 of /proc/{pid}/stat");
        pid
    }

    fn stop(&self) {
        let out = self.crun(&["delete", "--force", &self.id]);
        assert!(out.status.success(), "crun delete {}: {}", self.id, String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Crun {
    fn drop(&mut self) {
        let _ = self.crun(&["delete", "--force", &self.id]);
        let _ = std::fs::remove_dir_all(&self.bundle);
        remove_cgroup(&self.id);
    }
}

#[test]
fn oci_backend_delivers_into_a_crun_container_and_guards_its_status() {
    let Some(_running) = can_run(
        "oci_backend_delivers_into_a_crun_container_and_guards_its_status",
        &["/usr/bin/crun", "/usr/bin/unshare"],
    ) else {
        return;
    };
    let _lease = Lease::take();
    let (user, caller) = user("crun");
    // The default state roots: /run/runc, then /run/crun.
    let config = ConfigDir::new("[container]\nbackend = \"oci\"\nid = \"{user}\"\n");
    let c = Crun::start(&user.name, None);
    let first = c.pid();
    assert_inside(&probe(&config, caller), first, &user.name, &user);

    // check names crun's status file and the start-time guard.
    let text = check_text(&config, &user);
    let status = c.status_file();
    assert!(
        text.contains(&format!(
            "crun state {}: pid {first}, start time {} ticks after boot",
            status.display(),
            start_ticks(first)
        )),
        "{text}"
    );
    assert!(text.contains("as recorded: same process"), "{text}");

    // A recycled number: the status names the pid with another start time.
    let d = doctored_start_is_refused(&config, caller, &status, "process-start-time", first);
    assert!(d.stdout.is_empty(), "nothing ran: {d:?}");

    // A status file others may write, stopped, started again.
    let second = guards_the_state_and_follows_a_restart(
        &config,
        caller,
        &user,
        &status,
        first,
        || c.stop(),
        || {
            c.run();
            c.pid()
        },
    );

    // A private state root, named in the configuration, works the same.
    c.stop();
    let root = base().join(format!("crun-root-{}", user.name));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    let private = ConfigDir::new(&format!(
        "[container]\nbackend = \"oci\"\nstate = [\"{}\"]\nid = \"{{user}}\"\n",
        root.display()
    ));
    let p = Crun::start(&user.name, Some(&root));
    let third = p.pid();
    assert_ne!(second, third);
    assert_inside(&probe(&private, caller), third, &user.name, &user);
    // The default roots do not look there.
    assert_deferred(&probe(&config, caller), "no OCI runtime has a container");
    drop(p);
    let _ = std::fs::remove_dir_all(&root);
}
