//! Rootful Podman: name → id in containers/storage's `containers.json`
//! (root 0600; the storage driver is part of the path), the init's pid and
//! start time from the OCI runtime's state, else conmon's pidfile.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use super::{bad_state, oci, read_state, Found, Lookup};
use crate::error::{Error, Result};
use crate::parse::{engine_state, procfs};
use crate::platform::kernel::Kernel;

/// containers/storage's drivers, each with its own `<driver>-containers`.
const DRIVERS: &[&str] = &["overlay", "vfs", "btrfs", "zfs"];
/// Podman's default run root (conmon's pidfile is below it).
const RUN_ROOT: &str = "/run/containers/storage";

pub(crate) fn find(
    k: &mut impl Kernel,
    root: &Path,
    oci_roots: &[PathBuf],
    name: &str,
    not_running: &dyn Fn(String) -> Error,
) -> Result<Lookup> {
    for driver in DRIVERS {
        let list = root.join(format!("{driver}-containers")).join("containers.json");
        let Some(file) = read_state(k, "podman", &list, 16 << 20)? else { continue };
        let ids = engine_state::podman_ids_named(&file.contents, name).map_err(|e| bad_state("podman", &list, e))?;
        let Some(id) = ids.into_iter().find(|i| engine_state::is_plain_id(i)) else { continue };
        let listed = format!("podman container {name:?}: {}", list.display());
        if let Some(mut found) = oci::state_of(k, "podman", oci_roots, &id)? {
            found.source = format!("podman {name}");
            found.evidence.insert(0, listed);
            return Ok(Lookup::Found(found));
        }
        let pidfile = Path::new(RUN_ROOT).join(format!("{driver}-containers")).join(&id).join("userdata/pidfile");
        let Some(pf) = read_state(k, "podman", &pidfile, 64)? else {
            return Err(not_running(format!(
                "podman container {name:?} ({}) is not running: no runtime state in {} and no {}",
                &id[..id.len().min(12)],
                super::shown(oci_roots),
                pidfile.display()
            )));
        };
        let pid = procfs::parse_pidfile(&pf.contents).map_err(|e| bad_state("podman", &pidfile, e.to_string()))?;
        return Ok(Lookup::Found(Found {
            pid,
            written_ns: Some(pf.written_ns),
            start_ticks: None,
            source: format!("podman {name}"),
            evidence: vec![
                listed,
                format!("conmon pidfile {}: pid {pid}, written after it started", pidfile.display()),
            ],
            cgroup: None,
        }));
    }
    Ok(Lookup::Absent(format!("podman has no container named {name:?} (looked in {})", root.display())))
}
