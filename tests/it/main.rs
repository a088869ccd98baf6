//! The integration tests, one binary: real containers (`testbed/container`),
//! the real binary installed with its file capabilities and run as an
//! unprivileged user the way Exim runs it, a real Exim. Every module uses
//! the one rig in `rig/`; `testbed/test` runs them all in strict mode
//! (`CAGEPIPE_STRICT=1`), where a test that cannot run fails.

mod rig;

mod attacks;
mod deliver;
mod exim;
mod exim_check;
mod faults;
mod load;
mod man;
mod packaging;
mod rollout;
mod sandbox;
mod survey;
mod testbed;
