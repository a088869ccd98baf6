//! The integration tests, one binary: real containers (`testbed/container`),
//! the real binary installed with its file capabilities and run as an
//! unprivileged user the way Exim runs it, a real Exim. Every module uses
//! the one rig in `rig/`; `testbed/test` runs them all in strict mode
//! (`CAGEPIPE_STRICT=1`), where a test that cannot run fails.

mod rig;

mod attacks;
mod budget;
mod cagefs;
mod deliver;
mod engines;
mod exim;
mod exim_check;
mod faults;
mod hardening;
mod kernels;
mod load;
mod man;
mod notices;
mod packaging;
mod postfix;
mod rollout;
mod sandbox;
mod survey;
mod survey_hostile;
mod testbed;
