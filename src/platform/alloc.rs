//! The allocator: the system's, except that running out of memory ends
//! cagepipe with 75 (Exim keeps the message and retries) instead of the
//! standard library's abort, which Exim would take for a crash of the
//! command and bounce.

use std::alloc::{GlobalAlloc, Layout, System};

/// The system allocator, with out-of-memory mapped to exit 75.
pub(crate) struct DeferOnExhaustion;

const MESSAGE: &[u8] = b"cagepipe: out of memory; the delivery is deferred (exit 75)\n";

fn exhausted() -> ! {
    // SAFETY: write(2) of a static buffer to fd 2 and _exit(2): no
    // allocation, no lock, safe at any point, also in the forked child.
    unsafe {
        libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
        libc::_exit(75)
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; only a null result (failure) is turned into an exit.
unsafe impl GlobalAlloc for DeferOnExhaustion {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds GlobalAlloc::alloc's contract.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            exhausted();
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for alloc.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            exhausted();
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (so from System) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for dealloc; the caller upholds realloc's contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            exhausted();
        }
        p
    }
}
