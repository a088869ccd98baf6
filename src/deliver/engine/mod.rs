//! Step 4's first half: finding the account's container in an engine's own
//! root-owned state, reading files only (never the engine's tool or
//! daemon, which are milliseconds away and may be down). Each engine is one
//! module that ends in a [`Found`] reference; `resolve::pin` then does the
//! rest for all of them.
#![forbid(unsafe_code)]

pub(crate) mod docker;
pub(crate) mod machined;
pub(crate) mod members;
pub(crate) mod oci;
pub(crate) mod podman;

use std::path::{Path, PathBuf};

use crate::config::account::Account;
use crate::config::{Backend, Template};
use crate::deliver::privileges::{self, CAP_DAC_OVERRIDE};
use crate::error::{Error, Result};
use crate::parse::engine_state;
use crate::platform::kernel::Kernel;
use crate::platform::secure_file::{TrustedDir, TrustedFile, Untrusted};

/// What an engine's state says about the account's container.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) pid: i32,
    /// When the reference was written (ns since the epoch), if it is a file.
    pub(crate) written_ns: Option<i128>,
    /// The init's start time as the engine recorded it (ticks since boot):
    /// an exact reuse guard where it exists.
    pub(crate) start_ticks: Option<u64>,
    /// For messages and the audit line: "docker alice".
    pub(crate) source: String,
    /// What was read, for `check`: "runc state /run/runc/alice/state.json".
    pub(crate) evidence: Vec<String>,
    /// Cgroup backends: the directory the process must still be in once
    /// pinned.
    pub(crate) cgroup: Option<PathBuf>,
}

/// An engine's answer.
#[derive(Debug)]
pub(crate) enum Lookup {
    Found(Found),
    /// The engine has no container for the account; why, for the message
    /// when no engine has one.
    Absent(String),
}

/// Ask one engine.
pub(crate) fn find(
    k: &mut impl Kernel,
    backend: &Backend,
    account: &Account,
    not_running: &dyn Fn(String) -> Error,
) -> Result<Lookup> {
    match backend {
        Backend::Pidfile { .. } => unreachable!("the pidfile backend is read by resolve itself"),
        // The state engines read only root-owned state files (each through
        // the checked open, below roots the administrator configured, by
        // names checked to be one plain entry): one raise of
        // CAP_DAC_OVERRIDE for the whole lookup, not one around each file.
        Backend::Oci { roots, id } => {
            let id = name_of("oci", id, account)?;
            privileges::with_caps(k, &[CAP_DAC_OVERRIDE], |k| oci::find(k, roots, &id))
        }
        Backend::Docker { name, root } => {
            let name = name_of("docker", name, account)?;
            privileges::with_caps(k, &[CAP_DAC_OVERRIDE], |k| docker::find(k, root, &name, not_running))
        }
        Backend::Podman { name, root, oci_roots } => {
            let name = name_of("podman", name, account)?;
            privileges::with_caps(k, &[CAP_DAC_OVERRIDE], |k| podman::find(k, root, oci_roots, &name, not_running))
        }
        Backend::Lxc { name } => {
            let name = name_of("lxc", name, account)?;
            // liblxc (LXC, LXD, Incus) runs each container's processes in
            // this cgroup, in every hierarchy, and it is root's.
            members::find(k, "lxc", &format!("lxc.payload.{name}"), &format!("lxc {name}"), not_running)
        }
        Backend::Machined { name } => {
            let name = name_of("machined", name, account)?;
            privileges::with_caps(k, &[CAP_DAC_OVERRIDE], |k| machined::find(k, &name))
        }
        Backend::Cgroup { cgroup } => {
            let rel = cgroup_of(cgroup, account)?;
            members::find(k, "cgroup", &rel, &format!("cgroup {rel}"), not_running)
        }
    }
}

/// A container name or id for the account: its template expanded, and
/// checked to name one directory entry, so that no account can name
/// another's container through its own name.
fn name_of(engine: &'static str, template: &Template, account: &Account) -> Result<String> {
    let name = template.expand(&account.name, account.uid);
    if !engine_state::is_plain_id(&name) {
        return Err(Error::Engine {
            engine,
            path: None,
            problem: format!(
                "the name {:?} made from {:?} for user {} is not a plain container name (letters, digits, '_', '.', '-'; at most 128)",
                crate::escape::escape(name.as_bytes()),
                template.text(),
                account.name
            ),
        });
    }
    Ok(name)
}

/// A cgroup path below the hierarchies' roots, each component checked.
fn cgroup_of(template: &Template, account: &Account) -> Result<String> {
    let path = template.expand(&account.name, account.uid);
    let rel = path.trim_start_matches('/').trim_end_matches('/');
    let plain = |c: &str| !c.is_empty() && c != "." && c != ".." && c.bytes().all(|b| b.is_ascii_graphic());
    if rel.is_empty() || !rel.split('/').all(plain) {
        return Err(Error::Engine {
            engine: "cgroup",
            path: None,
            problem: format!(
                "the cgroup {:?} made from {:?} for user {} is not a plain path below the hierarchies' roots",
                crate::escape::escape(path.as_bytes()),
                template.text(),
                account.name
            ),
        });
    }
    Ok(rel.to_string())
}

/// A root-owned state file, read with `cap_dac_override` raised only for
/// the read (engines keep their state 0600 in 0700 directories). `None`:
/// it does not exist.
pub(crate) fn read_state(
    k: &mut impl Kernel,
    engine: &'static str,
    path: &Path,
    max: usize,
) -> Result<Option<TrustedFile>> {
    let read = privileges::with_caps(k, &[CAP_DAC_OVERRIDE], |k| Ok(k.read_trusted(path, max)))?;
    match read {
        Ok(f) => Ok(Some(f)),
        Err(Untrusted::Missing(_)) => Ok(None),
        Err(e) => Err(untrusted(engine, path, e)),
    }
}

/// A root-owned state directory kept open with its entries, for reading
/// many files below it ([`read_state_in`]); `None`: it does not exist.
pub(crate) fn open_state_dir(
    k: &mut impl Kernel,
    engine: &'static str,
    dir: &Path,
    max: usize,
) -> Result<Option<TrustedDir>> {
    let opened = privileges::with_caps(k, &[CAP_DAC_OVERRIDE], |k| Ok(k.open_trusted_dir(dir, max)))?;
    match opened {
        Ok(dir) => Ok(Some(dir)),
        Err(Untrusted::Missing(_)) => Ok(None),
        Err(e) => Err(untrusted(engine, dir, e)),
    }
}

/// [`read_state`] for `rel` below an open state directory: a few system
/// calls, where a path from `/` walks and checks every directory again.
pub(crate) fn read_state_in(
    k: &mut impl Kernel,
    engine: &'static str,
    dir: &TrustedDir,
    rel: &Path,
    max: usize,
) -> Result<Option<TrustedFile>> {
    let read = privileges::with_caps(k, &[CAP_DAC_OVERRIDE], |k| Ok(k.read_trusted_in(dir, rel, max)))?;
    match read {
        Ok(f) => Ok(Some(f)),
        Err(Untrusted::Missing(_)) => Ok(None),
        Err(e) => Err(untrusted(engine, &dir.path.join(rel), e)),
    }
}

fn untrusted(engine: &'static str, path: &Path, e: Untrusted) -> Error {
    let problem = match e {
        Untrusted::Unsafe { path: p, why } => format!(
            "cannot be trusted: {} {why}; an engine's state and every directory above it must be owned by root and not writable by group or others",
            p.display()
        ),
        other => format!("cannot be read: {other}"),
    };
    Error::Engine { engine, path: Some(path.to_path_buf()), problem }
}

/// A state file that is there but says nothing usable.
pub(crate) fn bad_state(engine: &'static str, path: &Path, problem: String) -> Error {
    Error::Engine { engine, path: Some(path.to_path_buf()), problem }
}

/// A list of directories for a message.
pub(crate) fn shown(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Each engine against the recording kernel: what it reads, and that the
/// first engine with a container decides.
#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::config::{self, Config};
    use crate::deliver::resolve;
    use crate::platform::recording::Recording;

    use crate::deliver::fixtures::alice;

    fn config(container: &str) -> Config {
        config::parse(&format!("[container]\n{container}\n"), Path::new("/etc/cagepipe/cagepipe.toml")).unwrap()
    }

    /// The double's container (pid 4711, started at tick 500) and a state
    /// file written after boot.
    fn with_file(path: &str, contents: &str) -> Recording {
        let mut k = Recording::new();
        k.files.insert(PathBuf::from(path), (contents.as_bytes().to_vec(), 1_000_000_000_000 + 6_000_000_000));
        k
    }

    #[test]
    fn an_oci_state_with_the_inits_start_time_is_pinned() {
        let mut k = with_file("/run/runc/alice/state.json", r#"{"init_process_pid":4711,"init_process_start":500}"#);
        let t = resolve::resolve(&mut k, &config("backend = \"oci\""), &alice()).unwrap();
        assert_eq!((t.pid, t.source.as_str()), (4711, "oci alice"));
        assert!(t.evidence[0].starts_with("runc state /run/runc/alice/state.json: pid 4711"), "{:?}", t.evidence);
        assert!(t.evidence.iter().any(|e| e.contains("tick 500, as recorded: same process")), "{:?}", t.evidence);
        // The state file was read with cap_dac_override raised just for it.
        let calls = k.calls_of(&["capset", "read_trusted"]);
        assert_eq!(calls[..3], ["capset effective=1", "read_trusted /run/runc/alice/state.json", "capset effective="]);
    }

    #[test]
    fn a_recycled_pid_or_a_state_from_before_boot_is_refused() {
        let mut k = with_file("/run/crun/alice/status", r#"{"pid":4711,"process-start-time":499}"#);
        let e = resolve::resolve(&mut k, &config("backend = \"oci\""), &alice()).unwrap_err().to_string();
        assert!(
            e.contains("oci alice: process 4711 started at tick 500, the state says 499: the container has exited"),
            "{e}"
        );
        let mut k = Recording::new();
        k.files.insert(PathBuf::from("/run/runc/alice/state.json"), (br#"{"pid":4711}"#.to_vec(), 999_000_000_000));
        let e = resolve::resolve(&mut k, &config("backend = \"oci\""), &alice()).unwrap_err().to_string();
        assert!(e.contains("stale: it was last written 1 s before this boot"), "{e}");
    }

    #[test]
    fn docker_finds_the_id_by_name_and_reads_runcs_state() {
        let mut k = with_file("/var/lib/docker/containers/bbb/config.v2.json", r#"{"Name":"/alice"}"#);
        k.files.insert(
            PathBuf::from("/var/lib/docker/containers/aaa/config.v2.json"),
            (br#"{"Name":"/bob"}"#.to_vec(), 0),
        );
        k.dirs.insert(PathBuf::from("/var/lib/docker/containers"), vec!["aaa".into(), "bbb".into(), "../x".into()]);
        let state = (br#"{"init_process_pid":4711,"init_process_start":500}"#.to_vec(), 1_000_000_000_001);
        k.files.insert(PathBuf::from("/run/docker/runtime-runc/moby/bbb/state.json"), state);
        let t = resolve::resolve(&mut k, &config("backend = \"docker\""), &alice()).unwrap();
        assert_eq!(t.source, "docker alice");
        // The directory is opened once and each file read relative to it,
        // cap_dac_override raised once for the whole lookup, and for
        // nothing else.
        let calls = k.calls_of(&["capset", "open_trusted_dir", "read_trusted_in", "read_trusted"]);
        let containers = "/var/lib/docker/containers";
        assert_eq!(
            calls[..6],
            [
                "capset effective=1".to_string(),
                format!("open_trusted_dir {containers}"),
                format!("read_trusted_in {containers} aaa/config.v2.json"),
                format!("read_trusted_in {containers} bbb/config.v2.json"),
                "read_trusted /run/docker/runtime-runc/moby/bbb/state.json".into(),
                "capset effective=".into(),
            ]
        );
        assert!(!k.calls.iter().any(|c| c.contains("../x")), "{:?}", k.calls);
        // Stopped: docker decides, the next engine is not asked.
        k.files.remove(Path::new("/run/docker/runtime-runc/moby/bbb/state.json"));
        let cfg = config("backend = [\"docker\", \"pidfile\"]\npidfile = \"/run/cagepipe/{user}.pid\"");
        let e = resolve::resolve(&mut k, &cfg, &alice()).unwrap_err();
        assert_eq!(e.exit_code(), 75);
        assert!(e.to_string().contains("docker container \"alice\" (bbb) is not running"), "{e}");
        assert!(!k.calls.iter().any(|c| c.contains("cagepipe/alice.pid")), "{:?}", k.calls);
    }

    #[test]
    fn engines_without_a_container_pass_to_the_next_and_all_are_named_when_none_has_one() {
        let mut k = with_file("/run/cagepipe/alice.pid", "4711\n");
        let cfg = config("backend = [\"oci\", \"machined\", \"pidfile\"]\npidfile = \"/run/cagepipe/{user}.pid\"");
        assert_eq!(resolve::resolve(&mut k, &cfg, &alice()).unwrap().source, "pidfile /run/cagepipe/alice.pid");
        k.files.clear();
        k.files.insert(PathBuf::from("/elsewhere"), (Vec::new(), 0));
        let e = resolve::resolve(&mut k, &cfg, &alice()).unwrap_err().to_string();
        assert!(e.contains("no OCI runtime has a container \"alice\" (looked in /run/runc, /run/crun)"), "{e}");
        assert!(e.contains("machined has no machine \"alice\""), "{e}");
        assert!(e.contains("no pidfile /run/cagepipe/alice.pid"), "{e}");
    }

    #[test]
    fn a_cgroup_backend_pins_the_member_that_is_pid_1_and_re_reads_its_cgroup() {
        let mut k = with_file("/sys/fs/cgroup/unified/ct/alice/cgroup.procs", "4711\n");
        let t = resolve::resolve(&mut k, &config("backend = \"cgroup\"\ncgroup = \"ct/{user}\""), &alice()).unwrap();
        assert_eq!(t.source, "cgroup ct/alice");
        assert!(t.evidence.iter().any(|e| e.contains("init 4711: pid 1 of its own pid namespace")), "{:?}", t.evidence);
        assert!(t.evidence.iter().any(|e| e.contains("still in /sys/fs/cgroup/unified/ct/alice")), "{:?}", t.evidence);
        // Listed in one cgroup, found in another once pinned.
        let mut k = with_file("/sys/fs/cgroup/unified/ct/bob/cgroup.procs", "4711\n");
        let e = resolve::resolve(&mut k, &config("backend = \"cgroup\"\ncgroup = \"ct/bob\""), &alice()).unwrap_err();
        assert!(e.to_string().contains("left /sys/fs/cgroup/unified/ct/bob"), "{e}");
    }

    /// With cgroup v2 alone (our own cgroups say so), the cgroup backend
    /// looks in cgroup2's root found by probing it, as the pin does, and
    /// never reads the mount table.
    #[test]
    fn a_cgroup_backend_with_cgroup_v2_alone_reads_no_mount_table() {
        let mut k = Recording::pure_v2();
        k.files.insert(PathBuf::from("/sys/fs/cgroup/ct/alice/cgroup.procs"), (b"4711\n".to_vec(), 0));
        let t = resolve::resolve(&mut k, &config("backend = \"cgroup\"\ncgroup = \"ct/{user}\""), &alice()).unwrap();
        assert!(t.evidence.iter().any(|e| e.contains("still in /sys/fs/cgroup/ct/alice")), "{:?}", t.evidence);
        assert_eq!(t.cgroups.join.iter().map(|d| d.to_string()).collect::<Vec<_>>(), ["v2 /sys/fs/cgroup/ct/alice"]);
        assert!(!k.calls.iter().any(|c| c == "mountinfo"), "{:?}", k.calls);
        assert_eq!(k.calls_of(&["probe_dir"]), ["probe_dir /sys/fs/cgroup", "probe_dir /sys/fs/cgroup"]);
    }

    #[test]
    fn a_rootless_container_is_refused_with_its_reason() {
        let mut k = with_file("/run/runc/alice/state.json", r#"{"init_process_pid":4711,"init_process_start":500}"#);
        k.process.as_mut().unwrap().userns_owner = 101_001;
        let e = resolve::resolve(&mut k, &config("backend = \"oci\""), &alice()).unwrap_err();
        assert_eq!(e.exit_code(), 75);
        assert!(e.to_string().contains("rootless containers are owned by the user and are not entered"), "{e}");
    }
}
