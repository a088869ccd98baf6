//! The probe (`examples/probe.rs`): where it is, what its report says, and
//! the marker a refused delivery's command would have written.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use super::cagepipe::raw_pipe;
use super::container::{repo_dir, Container};
use super::need::strict;

/// Where every container sees the probe.
pub const PROBE_IN_CONTAINER: &str = "/opt/cagepipe-probe/probe";

/// A probe report: its `key=value` lines.
pub type Report = BTreeMap<String, String>;

/// `--raw-pipe=|PROBE ARGS`: the probe inside the container.
pub fn probe(args: &str) -> Vec<OsString> {
    raw_pipe(&format!("|{PROBE_IN_CONTAINER} {args}"))
}

/// The probe binary, built once per test process (`cargo test --test X`
/// does not build examples; a no-op when it is up to date).
pub fn probe_binary() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        // target/<profile>/cagepipe -> target/<profile>/examples/probe
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_cagepipe")).parent().expect("cagepipe binary has a directory");
        let probe = bin_dir.join("examples/probe");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--example", "probe"]);
        if bin_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let failure = match build.current_dir(repo_dir()).stdin(Stdio::null()).output() {
            Ok(out) if out.status.success() => return probe,
            Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
            Err(err) => err.to_string(),
        };
        assert!(probe.exists(), "cargo build --example probe failed and there is no probe:\n{failure}");
        assert!(!strict(), "cargo build --example probe failed (CAGEPIPE_STRICT=1: no stale probe):\n{failure}");
        let _ = writeln!(
            std::io::stderr(),
            "WARNING: cargo build --example probe failed; using the existing {}:\n{failure}",
            probe.display()
        );
        probe
    })
}

/// FNV-1a, 64 bit, as 16 lowercase hex digits: the probe's `stdin_fnv64`.
pub fn fnv64(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The probe's `key=value` lines, keys and values unescaped (`\\`, `\n`,
/// `\r`, `\t`, `\xHH`; non-UTF-8 bytes become U+FFFD).
pub fn parse_report(stdout: &[u8]) -> Report {
    let mut report = BTreeMap::new();
    for line in stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            panic!("probe line without '=': {:?}", String::from_utf8_lossy(line));
        };
        let key = String::from_utf8_lossy(&unescape(&line[..eq])).into_owned();
        let value = String::from_utf8_lossy(&unescape(&line[eq + 1..])).into_owned();
        report.insert(key, value);
    }
    report
}

/// Undo the probe's escaping; the raw bytes.
pub fn unescape(escaped: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut i = 0;
    while i < escaped.len() {
        let byte = escaped[i];
        if byte != b'\\' || i + 1 == escaped.len() {
            out.push(byte);
            i += 1;
            continue;
        }
        let (decoded, used) = match escaped[i + 1] {
            b'\\' => (Some(b'\\'), 2),
            b'n' => (Some(b'\n'), 2),
            b'r' => (Some(b'\r'), 2),
            b't' => (Some(b'\t'), 2),
            b'x' => (
                escaped
                    .get(i + 2..i + 4)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
                4,
            ),
            _ => (None, 0),
        };
        match decoded {
            Some(b) => {
                out.push(b);
                i += used;
            }
            None => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// A file the delivered command writes first thing (`probe report --mark`)
/// if it runs at all: inside the container, or in another container the
/// test has, or on the host. Its absence after a refusal proves that
/// nothing ran.
#[derive(Debug)]
pub struct Marker {
    /// The path the command is given (in /tmp).
    pub path: String,
    /// The root directories, as the host sees them, of the containers it
    /// could run in; the first is where a delivery should run it.
    roots: Vec<PathBuf>,
}

impl Marker {
    /// A fresh marker for a command delivered into `c`.
    pub fn new(c: &Container) -> Marker {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = format!("/tmp/cagepipe-ran-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        Marker { path, roots: vec![c.host_path("/")] }
    }

    /// Look in container `c` too (an attack aims at it).
    pub fn also(mut self, c: &Container) -> Marker {
        self.roots.push(c.host_path("/"));
        self
    }

    /// `--raw-pipe=|PROBE report --mark PATH ARGS`.
    pub fn probe(&self, args: &str) -> Vec<OsString> {
        probe(&format!("report --mark {} {args}", self.path))
    }

    fn places(&self) -> Vec<PathBuf> {
        let mut places: Vec<PathBuf> = self.roots.iter().map(|r| r.join(self.path.trim_start_matches('/'))).collect();
        places.push(PathBuf::from(&self.path));
        places
    }

    /// Nothing ran: the marker is nowhere. The containers' roots must still
    /// be there to look in (else the check would prove nothing).
    pub fn assert_absent(&self) {
        for root in &self.roots {
            assert!(root.is_dir(), "cannot prove nothing ran: {} is gone", root.display());
        }
        for place in self.places() {
            assert!(!place.exists(), "the command ran: it wrote {}", place.display());
        }
    }

    /// The command ran, inside the first container: the control that the
    /// marker works.
    pub fn assert_written(&self) {
        let places = self.places();
        assert!(places[0].exists(), "the command did not write {}", places[0].display());
        for other in &places[1..] {
            assert!(!other.exists(), "the command ran elsewhere: {}", other.display());
        }
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        for place in self.places() {
            let _ = std::fs::remove_file(place);
        }
    }
}
