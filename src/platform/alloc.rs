//! The allocator: the system's, except that running out of memory ends
//! cagepipe with 75 (Exim keeps the message and retries) instead of the
//! standard library's abort, which Exim would take for a crash of the
//! command and bounce; and that a child sharing our memory until its exec
//! (`sys::spawn`) allocates from an arena of its own.
//!
//! The arena: the child's allocations are bumped from a static buffer and
//! never freed (its exec drops them all); while it runs, freeing anything
//! is a no-op. So the C library's heap is never changed by the child: a
//! child killed in the middle of an allocation cannot leave it half
//! updated for us, and nothing of ours is freed under us. A block from the
//! arena that we later free or grow (the child may have stored one where we
//! look) is left where it is, or copied out. A child that needs more than
//! the arena (error messages naming a long program, say; the command's words
//! are laid out for exec before it exists) gets more mapped, in chunks that
//! count as the arena too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

/// The child's arena: far more than the child's few allocations (its
/// status read, its messages, the sandbox's rules); pages it does not touch
/// cost nothing.
const ARENA_SIZE: usize = 256 << 10;
/// Further chunks, mapped as needed: at least this big, at most this many.
const CHUNK_MIN: usize = 1 << 20;
const CHUNKS: usize = 32;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; ARENA_SIZE]>);

// SAFETY: only the child of `sys::spawn` writes to it, through `bump`,
// while its parent sleeps (CLONE_VFORK); cagepipe has one thread.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_SIZE]));
/// Bytes of the arena handed out; never reset, so a block stays valid for
/// as long as the process lives.
static ARENA_USED: AtomicUsize = AtomicUsize::new(0);
/// Set by the child of `sys::spawn` first thing, cleared by its parent once
/// the child is gone (the flag is in the memory they share).
static IN_CHILD: AtomicBool = AtomicBool::new(false);
/// The chunks mapped so far, (start, length), and how much of the last one
/// is handed out.
static CHUNK_START: [AtomicUsize; CHUNKS] = [const { AtomicUsize::new(0) }; CHUNKS];
static CHUNK_LEN: [AtomicUsize; CHUNKS] = [const { AtomicUsize::new(0) }; CHUNKS];
static CHUNK_COUNT: AtomicUsize = AtomicUsize::new(0);
static CHUNK_USED: AtomicUsize = AtomicUsize::new(0);

/// The shared child starts: from now on allocate from the arena.
pub(crate) fn enter_child_arena() {
    IN_CHILD.store(true, Ordering::SeqCst);
}

/// The shared child has exec'd or exited: the parent allocates as before.
pub(crate) fn leave_child_arena() {
    IN_CHILD.store(false, Ordering::SeqCst);
}

fn in_arena(p: *mut u8) -> bool {
    let p = p as usize;
    let start = ARENA.0.get() as usize;
    let chunks = CHUNK_COUNT.load(Ordering::SeqCst);
    (start..start + ARENA_SIZE).contains(&p)
        || (0..chunks).any(|i| {
            let start = CHUNK_START[i].load(Ordering::SeqCst);
            (start..start + CHUNK_LEN[i].load(Ordering::SeqCst)).contains(&p)
        })
}

/// `layout` from `[base, base + len)` of which `used` bytes are handed out:
/// the block's offset and the new `used`, if it fits.
fn fit(base: usize, len: usize, used: usize, layout: Layout) -> Option<(usize, usize)> {
    let start = (base + used).checked_next_multiple_of(layout.align().max(16))? - base;
    let end = start.checked_add(layout.size()).filter(|e| *e <= len)?;
    Some((start, end))
}

/// A block of the arena, zeroed: the arena starts zeroed and is handed out
/// once, and a new chunk is fresh anonymous memory.
fn bump(layout: Layout) -> *mut u8 {
    let base = ARENA.0.get() as usize;
    if let Some((start, end)) = fit(base, ARENA_SIZE, ARENA_USED.load(Ordering::SeqCst), layout) {
        ARENA_USED.store(end, Ordering::SeqCst);
        // Never handed out before, so still as the program started: zero.
        // (Not written here: a page the child does not use stays untouched.)
        return (base + start) as *mut u8;
    }
    let count = CHUNK_COUNT.load(Ordering::SeqCst);
    if count > 0 {
        let (base, len) = (CHUNK_START[count - 1].load(Ordering::SeqCst), CHUNK_LEN[count - 1].load(Ordering::SeqCst));
        if let Some((start, end)) = fit(base, len, CHUNK_USED.load(Ordering::SeqCst), layout) {
            CHUNK_USED.store(end, Ordering::SeqCst);
            return (base + start) as *mut u8; // fresh anonymous memory: zero
        }
    }
    if count == CHUNKS {
        exhausted();
    }
    let Some(len) = layout.size().checked_add(layout.align()).map(|n| n.max(CHUNK_MIN)) else {
        exhausted();
    };
    // SAFETY: a new private anonymous mapping; no memory of ours is touched.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        exhausted();
    }
    CHUNK_START[count].store(base as usize, Ordering::SeqCst);
    CHUNK_LEN[count].store(len, Ordering::SeqCst);
    CHUNK_USED.store(0, Ordering::SeqCst);
    CHUNK_COUNT.store(count + 1, Ordering::SeqCst);
    bump(layout)
}

// SAFETY: outside the shared child, every method forwards to `System` with
// the caller's arguments unchanged (only a null result, a failure, is turned
// into an exit), but for blocks of the arena, which are never given back.
// In the child, blocks come from the arena: each is handed out once, sized
// and aligned as asked, inside the arena; nothing is given back.
//
// Never inlined: each allocation and each drop in the program calls these,
// and inlined (link-time optimisation would) their arena checks grew the
// program's code by 400 KiB, all mapped on every delivery.
unsafe impl GlobalAlloc for DeferOnExhaustion {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if IN_CHILD.load(Ordering::Relaxed) {
            return bump(layout);
        }
        // SAFETY: the caller upholds GlobalAlloc::alloc's contract.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            exhausted();
        }
        p
    }
    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if IN_CHILD.load(Ordering::Relaxed) {
            return bump(layout);
        }
        // SAFETY: as for alloc.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            exhausted();
        }
        p
    }
    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if IN_CHILD.load(Ordering::Relaxed) || in_arena(ptr) {
            return;
        }
        // SAFETY: `ptr` came from this allocator, not from the arena, so
        // from System, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    #[inline(never)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if IN_CHILD.load(Ordering::Relaxed) || in_arena(ptr) {
            // SAFETY: the caller upholds realloc's contract: `new_size`
            // with the old alignment is a valid layout.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: as for alloc.
            let new = unsafe { self.alloc(new_layout) };
            // SAFETY: both blocks are valid for the smaller size and do not
            // overlap (the new one was never handed out before).
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            return new;
        }
        // SAFETY: as for dealloc; the caller upholds realloc's contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            exhausted();
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The arena as its child uses it (`bump`), and as the parent meets its
    // blocks afterwards (`dealloc`, `realloc` outside the child). The flag
    // itself is not flipped here: the test threads share the allocator.
    #[test]
    fn arena_blocks_are_aligned_zeroed_apart_and_outlive_their_free() {
        let a = bump(Layout::from_size_align(10, 1).unwrap());
        let b = bump(Layout::from_size_align(100, 64).unwrap());
        assert!(in_arena(a) && in_arena(b));
        assert_eq!(b as usize % 64, 0);
        assert!(b as usize >= a as usize + 10, "blocks do not overlap");
        // SAFETY: both blocks are 10 and 100 bytes long, handed out above.
        unsafe {
            assert!(std::slice::from_raw_parts(b, 100).iter().all(|x| *x == 0));
            std::ptr::copy_nonoverlapping(b"arena-data".as_ptr(), a, 10);
            // Freeing an arena block is a no-op: it stays readable.
            DeferOnExhaustion.dealloc(b, Layout::from_size_align(100, 64).unwrap());
            // Growing one outside the child copies it to the system heap.
            let grown = DeferOnExhaustion.realloc(a, Layout::from_size_align(10, 1).unwrap(), 4096);
            assert!(!in_arena(grown));
            assert_eq!(std::slice::from_raw_parts(grown, 10), b"arena-data");
            assert_eq!(std::slice::from_raw_parts(a, 10), b"arena-data", "the old block is left as it was");
            DeferOnExhaustion.dealloc(grown, Layout::from_size_align(4096, 1).unwrap());
        }
        // More than the arena holds: a chunk is mapped, and counts as the
        // arena.
        let big = bump(Layout::from_size_align(ARENA_SIZE * 2, 8).unwrap());
        let small = bump(Layout::from_size_align(64, 8).unwrap());
        assert!(in_arena(big) && in_arena(small) && in_arena(big.wrapping_add(ARENA_SIZE * 2 - 1)));
        // SAFETY: `big` is ARENA_SIZE * 2 bytes long, fresh.
        unsafe {
            assert!(std::slice::from_raw_parts(big, ARENA_SIZE * 2).iter().all(|x| *x == 0));
            DeferOnExhaustion.dealloc(big, Layout::from_size_align(ARENA_SIZE * 2, 8).unwrap());
        }
        assert!(!in_arena(std::ptr::null_mut()));
        let heap = Box::new(7u8);
        assert!(!in_arena(&*heap as *const u8 as *mut u8));
    }
}
