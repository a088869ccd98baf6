#![deny(unsafe_code)]
// The C entry point, not Rust's: the standard library's start-up (a poll
// of descriptors 0-2, a read of /proc/self/maps for the main thread's
// stack guard, an alternate signal stack and SIGSEGV/SIGBUS handlers) is
// work cagepipe does itself or needs not, on every delivery. What it keeps
// of it is done in cagepipe::main: descriptors 0-2 opened on /dev/null if
// closed (by the C library already when started with capabilities),
// SIGPIPE kept from killing us (blocked, not ignored). The arguments still
// reach std::env (the C library hands them to the standard library before
// main).
#![cfg_attr(not(test), no_main)]
//! Exim's pipe transport runs this for every pipe delivery (force_command).

#[cfg(not(test))]
use std::ffi::{c_char, c_int};

/// The process's entry point, called by the C library's start-up.
#[cfg(not(test))]
#[allow(unsafe_code)] // no_mangle: this is the C `main` symbol; no unsafe code runs here.
#[no_mangle]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    cagepipe::main()
}
