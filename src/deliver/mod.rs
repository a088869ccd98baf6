//! The delivery path: everything a pipe delivery does, privileged, in order.
#![forbid(unsafe_code)]

pub(crate) mod cgroup;
pub(crate) mod command;
pub(crate) mod inroot;
pub(crate) mod launch;
pub(crate) mod namespace;
pub(crate) mod privileges;
pub(crate) mod resolve;
pub(crate) mod sandbox;
pub(crate) mod startup;
