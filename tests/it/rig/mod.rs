//! The one test rig every integration test uses:
//!
//! - [`need`]: what a test needs (root, Exim, a tool) and the one decision
//!   when it is missing: SKIP for a developer, a failure under strict mode
//!   (`CAGEPIPE_STRICT=1`, which `testbed/test` and CI set);
//! - [`cage`]: the fixture most tests start from, a test account, its
//!   running container and a configuration that finds it (built by
//!   [`cage::cage`]), with an optional [`syslog::Syslog`] catcher;
//! - [`container`]: `testbed/container`'s real throwaway containers;
//! - [`cagepipe`]: the binary under test, installed with file capabilities
//!   and run the way Exim runs it;
//! - [`probe`]: the probe's reports, and the [`probe::Marker`] that proves a
//!   refused command never ran;
//! - [`contained`]: [`contained::assert_contained`], every namespace kind,
//!   cgroups, ids, capabilities, `no_new_privs`;
//! - [`check`]: the one reader of `check --format json`;
//! - [`exim`]: a private real Exim;
//! - [`accounts`], [`scratch`]: test accounts and scratch files, removed
//!   again by the rig (and swept by `testbed/test` after a killed run).

pub mod accounts;
pub mod cage;
pub mod cagepipe;
pub mod check;
pub mod contained;
pub mod container;
pub mod exim;
pub mod need;
pub mod probe;
pub mod scratch;
pub mod strace;
pub mod syslog;

pub use accounts::{test_group, test_user, User};
pub use cage::{cage, Cage};
pub use cagepipe::{
    cagepipe_gid, command, deliver, delivered, env_refs, file_caps, installed_binary, raw_pipe, run_as_root,
    run_for_peak_rss, run_with_stdin, write_pidfile, Caller, ConfigDir, Delivery,
};
pub use check::CheckJson;
pub use contained::{assert_contained, assert_contained_as, assert_refused, report, Inside};
pub use container::{
    describe_pids, host_ns_inode, ns_inode_of, process_running, start_ticks, stop_container, unique_name, Container,
    ContainerOpts,
};
pub use need::{need, need_alone, need_nothing, note, skip_or_fail, Need};
pub use probe::{fnv64, parse_report, probe, probe_binary, Marker, Report, PROBE_IN_CONTAINER};
pub use scratch::{fresh, fresh_dir, scratch};
pub use syslog::Syslog;
