//! Pure parsers of untrusted text: no I/O, no system calls, no state. What
//! the fuzz targets cover (fuzz/), and all that is public here for them.
#![forbid(unsafe_code)]

pub mod engine_state;
pub mod mailfiles;
pub mod pipe_text;
pub mod procfs;
#[cfg(test)]
pub(crate) mod test_rng;
