//! Docker: the name is only in `<root>/containers/<id>/config.v2.json`
//! (root 0600), so the directory is scanned; the init's pid and start time
//! come from runc's state under Docker's runtime root, never from
//! config.v2.json's `State.Pid` (stale when dockerd died).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use super::{bad_state, oci, open_state_dir, read_state_in, Lookup};
use crate::error::{Error, Result};
use crate::parse::engine_state;
use crate::platform::kernel::Kernel;

/// Where dockerd (with containerd) has runc keep its state.
const RUNTIME_ROOT: &str = "/run/docker/runtime-runc/moby";
/// A server with more containers than this is refused rather than scanned.
const MAX_CONTAINERS: usize = 100_000;

pub(crate) fn find(
    k: &mut impl Kernel,
    root: &Path,
    name: &str,
    not_running: &dyn Fn(String) -> Error,
) -> Result<Lookup> {
    let dir = root.join("containers");
    let absent = || Lookup::Absent(format!("docker has no container named {name:?} (looked in {})", dir.display()));
    // Opened and checked from `/` once; each container's file is then
    // opened relative to it (a few system calls, not a walk from `/`).
    let Some(containers) = open_state_dir(k, "docker", &dir, MAX_CONTAINERS)? else { return Ok(absent()) };
    let mut id = None;
    for (candidate, _) in containers.entries.iter().filter(|(i, is_dir)| *is_dir && engine_state::is_plain_id(i)) {
        let rel = Path::new(candidate).join("config.v2.json");
        let Some(file) = read_state_in(k, "docker", &containers, &rel, oci::MAX_STATE)? else { continue };
        if engine_state::parse_docker_config(&file.contents).map_err(|e| bad_state("docker", &dir.join(&rel), e))?
            == name
        {
            id = Some(candidate);
            break;
        }
    }
    let Some(id) = id else { return Ok(absent()) };
    let roots = [PathBuf::from(RUNTIME_ROOT)];
    match oci::state_of(k, "docker", &roots, id)? {
        Some(mut found) => {
            found.source = format!("docker {name}");
            found.evidence.insert(0, format!("docker container {name:?}: {}", dir.join(id).display()));
            Ok(Lookup::Found(found))
        }
        // The container exists but is stopped: docker decides (no
        // fall-through to the next engine), and the mail waits.
        None => Err(not_running(format!(
            "docker container {name:?} ({}) is not running: runc has no state for it in {RUNTIME_ROOT}",
            &id[..id.len().min(12)]
        ))),
    }
}
