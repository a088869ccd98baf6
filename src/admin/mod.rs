//! The administrator's tools: `check`, `--dry-run`'s rendering, `survey` and
//! the lint of Exim's transports. Never on the delivery path.
#![forbid(unsafe_code)]

pub(crate) mod check;
pub(crate) mod exim;
pub(crate) mod notices;
pub(crate) mod survey;
