//! The platform layer: the only module with `unsafe` and the only one that
//! calls the C library or `nix` directly. Everything above it uses the safe,
//! documented functions here.

#[allow(unsafe_code)]
pub(crate) mod sys;
pub(crate) mod secure_file;
