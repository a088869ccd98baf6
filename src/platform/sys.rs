//! The one place for the raw system calls that `nix` does not wrap safely
//! (pidfd, clone3, close_range, capget/capset with 64-bit masks, ns ioctls).
//! Everything here is a thin, documented wrapper: no policy, no parsing.
//! The crate denies `unsafe` everywhere else; callers stay safe Rust.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `pidfd_open(2)` (Linux 5.3). `ENOSYS` on older kernels such as EL8's 4.18.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new fd or -1;
    // it touches no memory of ours.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_long, 0 as libc::c_long) })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `setns(2)` with any namespace flags; `fd` is a namespace file or, since
/// Linux 5.8, a pidfd (then several flags may be joined in one atomic step).
pub(crate) fn setns(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: setns reads nothing from our memory; fd is a live borrowed fd.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), flags) } as libc::c_long).map(drop)
}

/// `close_range(2)` (Linux 5.9). `ENOSYS` on older kernels.
pub(crate) fn close_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: closes descriptors only; callers own every fd in the range by
    // the start-up invariant (inherited ones were closed first).
    cvt(unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_long, last as libc::c_long, 0 as libc::c_long) })
        .map(drop)
}

/// One `getdents64(2)` on a directory opened for reading: its next records
/// into `buf`; how many bytes, 0 at the end.
pub(crate) fn getdents(dir: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::syscall(libc::SYS_getdents64, dir.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
    cvt(n).map(|n| n as usize)
}

/// A connected pair of close-on-exec Unix stream sockets.
pub(crate) fn stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: the kernel writes two descriptors into the two-element array.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) }
        as libc::c_long)?;
    // SAFETY: the kernel just returned these two fds to us; nobody else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Close one raw descriptor number, ignoring EBADF (used by the fallback that
/// walks a range of numbers on kernels without close_range).
pub(crate) fn close_fd_number(fd: RawFd) {
    // SAFETY: the fd number is not owned by any live OwnedFd in the calling
    // code path (it is the pre-exec child, where every owner has been
    // forgotten or is about to be replaced by exec).
    unsafe { libc::close(fd) };
}

/// Close `fds`: with one close_range when their numbers are consecutive
/// (the range then holds exactly them), else one by one.
pub(crate) fn close_together(fds: Vec<OwnedFd>) {
    let mut numbers: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    numbers.sort_unstable();
    match (numbers.first(), numbers.last()) {
        (Some(&first), Some(&last)) if numbers.len() > 1 && (last - first) as usize + 1 == numbers.len() => {
            // The numbers leave their owners here; each is closed below.
            for fd in fds {
                let _ = fd.into_raw_fd();
            }
            // The range holds exactly those descriptors, owned by nothing now.
            if close_range(first as u32, last as u32).is_err() {
                numbers.into_iter().for_each(close_fd_number);
            }
        }
        _ => drop(fds),
    }
}

/// Whether the kernel started us in secure-execution mode (`AT_SECURE`: the
/// exec raised our capabilities or ids). The C library then opens 0, 1 and
/// 2 itself before `main` if they are closed, or aborts: glibc
/// (`__libc_check_standard_fds`, in the dynamic loader and in a static
/// program's start-up) and musl (`__init_libc`) alike.
pub(crate) fn started_secure() -> bool {
    // SAFETY: getauxval reads the auxiliary vector; no memory of ours.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Which of the standard descriptors 0, 1 and 2 are closed, in one
/// `poll` (a closed descriptor reports POLLNVAL).
pub(crate) fn closed_std_fds() -> io::Result<[bool; 3]> {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd { fd, events: 0, revents: 0 });
    // SAFETY: three valid pollfd structs; a zero timeout never blocks.
    cvt(unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } as libc::c_long)?;
    Ok(fds.map(|p| p.revents & libc::POLLNVAL != 0))
}

/// No "fast bins" in the C library's allocator: a freed small block is
/// merged at once instead of being kept aside until a larger request
/// sweeps them all together. That sweep writes to every page that holds
/// one, and in the forked child each such page is a copy-on-write fault
/// (the child's first larger allocation, reading its own status, cost 14 of
/// them). cagepipe allocates little; merging at once costs it nothing
/// measurable.
pub(crate) fn no_fast_bins() {
    // SAFETY: mallopt(3) with a valid parameter, before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
    }
}

/// Block SIGPIPE: a write to a closed pipe then fails with EPIPE instead of
/// killing the process, as ignoring it (what Rust programs do) would.
/// (cagepipe starts without the standard library's runtime set-up; see
/// main.rs.) Blocked, not ignored: an ignored signal survives exec, so the
/// child would have to set it back to default with a call of its own; the
/// mask the child empties anyway. A SIGPIPE left pending by such a write
/// stays ours: a fork does not pass pending signals on.
pub(crate) fn block_sigpipe() {
    // SAFETY: an empty set initialised by sigemptyset, then one signal
    // added; no old set requested.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Open `/dev/null` onto a closed standard descriptor so that the next file
/// we open cannot become someone's stdin/stdout/stderr.
pub(crate) fn open_devnull_at(fd: RawFd) -> io::Result<()> {
    // SAFETY: the path is a valid NUL-terminated C string.
    let got = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    if got != fd {
        // SAFETY: dup2 onto a closed standard fd, then close the temporary.
        let r = unsafe { libc::dup2(got, fd) };
        // SAFETY: `got` is the fd we just opened above.
        unsafe { libc::close(got) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

static SINGLE_THREADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Record that the start-up check saw exactly one thread. cagepipe never
/// starts a thread, so this stays true for the life of the process.
pub(crate) fn mark_single_threaded() {
    SINGLE_THREADED.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn refuse_unless_single_threaded() -> io::Result<()> {
    if SINGLE_THREADED.load(std::sync::atomic::Ordering::SeqCst) {
        Ok(())
    } else {
        Err(io::Error::other("refusing to fork: the process was not verified single-threaded"))
    }
}

/// The signals ignored when the start-up check read /proc/self/status
/// (SigIgn: the caller's, cagepipe ignores none); all of them until then. A caught signal needs no reset: exec resets it.
static NOT_DEFAULT_AT_STARTUP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// Record which signals the kernel reported ignored at start-up (bit N-1
/// for signal N). cagepipe itself only ever sets signals back to SIG_DFL
/// after that, so the child need reset no others.
pub(crate) fn note_signals_at_startup(ignored: u64) {
    NOT_DEFAULT_AT_STARTUP.store(ignored, std::sync::atomic::Ordering::SeqCst);
}

/// Whether the ambient set was empty when the start-up check read
/// /proc/self/status. It stays empty: only PR_CAP_AMBIENT_RAISE adds to it,
/// which cagepipe never calls (entering a user namespace empties it again).
static AMBIENT_EMPTY_AT_STARTUP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Record the ambient set start-up saw (`None`: the kernel does not show
/// it). The exec of a binary with file capabilities empties it.
pub(crate) fn note_ambient_at_startup(ambient: Option<u64>) {
    AMBIENT_EMPTY_AT_STARTUP.store(ambient == Some(0), std::sync::atomic::Ordering::SeqCst);
}

/// The kernel's `struct sigaction` for `rt_sigaction(2)` on x86_64 and the
/// other architectures cagepipe ships on (handler, flags, restorer, mask).
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// `struct clone_args` of clone3(2), up to the `cgroup` field (version 2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The command's process, started three ways; each runs `child` in it, which
/// ends in exec or `_exit`. Returns the child's pid.
///
/// - `share_memory` (x86_64; clone3 is Linux 5.3): `clone3(CLONE_VM |
///   CLONE_VFORK)`. The child runs on our memory, on a stack of its own
///   below ours, and we sleep until its exec or exit: no page tables to
///   copy, no copy-on-write fault in either process, no copy to tear down at
///   its exec. Its allocations go to an arena of their own
///   ([`super::alloc`]), so our heap is never changed under us, not even
///   by a child killed in the middle of an allocation.
/// - `into_cgroup` (clone3 with CLONE_INTO_CGROUP, Linux 5.7): born in that
///   cgroup v2 directory; with or without shared memory.
/// - neither: `fork(2)`, the child on a copy of our memory.
///
/// ENOSYS, EINVAL or E2BIG from clone3: this kernel lacks it, nothing ran.
pub(crate) fn spawn(
    into_cgroup: Option<BorrowedFd<'_>>,
    share_memory: bool,
    child: &mut dyn FnMut() -> std::convert::Infallible,
) -> io::Result<i32> {
    refuse_unless_single_threaded()?;
    let mut args = CloneArgs { exit_signal: libc::SIGCHLD as u64, ..CloneArgs::default() };
    if let Some(cgroup) = into_cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cgroup.as_raw_fd() as u64;
    }
    if share_memory && cfg!(target_arch = "x86_64") {
        return clone_shared(args, child);
    }
    let pid = match into_cgroup {
        Some(_) => {
            // SAFETY: one thread (checked above; cagepipe starts none), so no
            // lock is held elsewhere. Without CLONE_VM and with no stack
            // given, the child runs on a copy of our memory exactly like
            // fork. The C library's fork handlers do not run, so the child
            // must not rely on its cached thread id (it only drops
            // privileges and execs; it never calls raise or pthread_*).
            unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) }
        }
        // SAFETY: one thread, so no lock can be held by a thread that does
        // not exist in the child, and the child may run ordinary Rust code.
        None => libc::c_long::from(unsafe { libc::fork() }),
    };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => run(child),
        pid => Ok(pid as i32),
    }
}

/// How far below our stack pointer the child's stack starts: past the
/// frames this function and the system call still push, and the red zone.
const CHILD_STACK_GAP: usize = 16 << 10;
/// What clone3 is told the child's stack measures (it only checks that the
/// range is user memory). The child grows down into our stack's mapping,
/// which the kernel extends as for us, up to the same limit.
const CHILD_STACK_SIZE: usize = 256 << 10;

/// [`spawn`] with `args` (the exit signal, the cgroup) plus CLONE_VM,
/// CLONE_VFORK and a stack of the child's own.
#[cfg(target_arch = "x86_64")]
fn clone_shared(mut args: CloneArgs, child: &mut dyn FnMut() -> std::convert::Infallible) -> io::Result<i32> {
    let sp: usize;
    // SAFETY: reads the stack pointer into a register; touches nothing.
    unsafe { std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    let top = (sp - CHILD_STACK_GAP) & !15;
    args.flags |= libc::CLONE_VM as u64 | libc::CLONE_VFORK as u64;
    args.stack = (top - CHILD_STACK_SIZE) as u64;
    args.stack_size = CHILD_STACK_SIZE as u64;
    let mut child = child;
    let arg: *mut &mut dyn FnMut() -> std::convert::Infallible = &mut child;
    let ret: isize;
    // SAFETY: clone3 with CLONE_VM|CLONE_VFORK and a stack of the child's
    // own, the way posix_spawn starts a process:
    // - In the parent the instruction after `syscall` sees the return value
    //   (the pid, or -errno) and jumps to the end: the asm block returns
    //   like any system call. Because of CLONE_VFORK that happens only once
    //   the child has exec'd or exited, so nothing of ours runs while the
    //   child uses our memory.
    // - In the child (rax 0), the kernel has set rsp to `top`, 16-byte
    //   aligned, CHILD_STACK_GAP below every frame of ours: `call` leaves it
    //   as a function expects it, and the child never writes into our
    //   frames. r12 and r13 survive the system call and hold the argument
    //   and the entry point, which never returns (`ud2` is never reached).
    // - `arg` points to `child` in our frame, alive until we return, which
    //   is after the child is done with it.
    // - One thread (checked by the caller), so no lock is held; cagepipe
    //   installs no signal handler (it starts without the standard
    //   library's runtime), so none can run in the child on our memory; a
    //   handler a caller set does not survive the exec into cagepipe.
    // - No `nomem`: the compiler assumes the asm wrote memory, as the child
    //   did.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") arg,
            in("r13") shared_child_entry as unsafe extern "C" fn(*mut &mut dyn FnMut() -> std::convert::Infallible) -> !,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    super::alloc::leave_child_arena();
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret as i32));
    }
    Ok(ret as i32)
}

#[cfg(not(target_arch = "x86_64"))]
fn clone_shared(_: CloneArgs, _: &mut dyn FnMut() -> std::convert::Infallible) -> io::Result<i32> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// Where the child of [`clone_shared`] starts, on its own stack.
///
/// # Safety
/// `arg` points to the closure the parent passed, still alive (the parent
/// sleeps until the child's exec or exit).
#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn shared_child_entry(arg: *mut &mut dyn FnMut() -> std::convert::Infallible) -> ! {
    super::alloc::enter_child_arena();
    // SAFETY: see the function's contract.
    run(unsafe { &mut *arg })
}

/// Run the child's steps, which end in exec or `_exit`.
// (A call returning an uninhabited type counts as diverging for the lint.)
#[allow(unreachable_code)]
pub(crate) fn run(child: &mut dyn FnMut() -> std::convert::Infallible) -> ! {
    match child() {}
}

/// Set every signal that was ignored at start-up (every signal if
/// start-up did not say) back to SIG_DFL, and empty the mask.
/// Exim starts pipe commands with SIGHUP/SIGINT/SIGTERM/SIGUSR1 ignored,
/// and SIG_IGN survives exec. The raw syscall is used because the C
/// library refuses to touch the real-time signals it reserves (32, 33),
/// which a caller can also hand over ignored.
pub(crate) fn reset_all_signals() -> io::Result<()> {
    let dfl = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
    let not_default = NOT_DEFAULT_AT_STARTUP.load(std::sync::atomic::Ordering::SeqCst);
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || not_default & (1u64 << (sig - 1)) == 0 {
            continue;
        }
        // SAFETY: a valid kernel sigaction for SIG_DFL (no handler code, no
        // restorer needed); old action not requested; sigsetsize is 8.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig as libc::c_long,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8 as libc::c_long,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let empty: u64 = 0;
    // SAFETY: a valid 8-byte signal set; old set not requested.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as libc::c_long,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8 as libc::c_long,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reset one signal to SIG_DFL and unblock it (used before re-raising the
/// signal that killed the command, and for SIGCHLD at start-up).
pub(crate) fn default_and_unblock(sig: libc::c_int) {
    // SAFETY: SIG_DFL runs no code of ours.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
    // SAFETY: zeroed sigset_t is then initialised by sigemptyset/sigaddset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both calls write only into `set`.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
    }
    // SAFETY: valid initialised set, no old set requested.
    unsafe { libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
}

/// The words of a command line or an environment for execve: the strings,
/// and the NULL-terminated array of pointers to them that the kernel reads,
/// built once when the words are (in the parent, before there is a child):
/// the child's exec then allocates nothing, however many words there are.
pub(crate) struct ExecWords {
    words: Vec<std::ffi::CString>,
    pointers: Vec<*const libc::c_char>,
}

impl ExecWords {
    pub(crate) fn new(words: Vec<std::ffi::CString>) -> ExecWords {
        // Each pointer points into a string's own heap buffer, which stays
        // where it is when `words` moves; `words` is never changed after.
        let pointers = words.iter().map(|w| w.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        ExecWords { words, pointers }
    }
}

impl std::ops::Deref for ExecWords {
    type Target = [std::ffi::CString];
    fn deref(&self) -> &[std::ffi::CString] {
        &self.words
    }
}

impl std::fmt::Debug for ExecWords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.words.fmt(f)
    }
}

/// `execve(2)`; returns only on failure.
pub(crate) fn execve(path: &std::ffi::CStr, argv: &ExecWords, env: &ExecWords) -> io::Error {
    // SAFETY: `path` is a NUL-terminated string; both arrays end in NULL and
    // point to the NUL-terminated strings their ExecWords owns, alive for
    // the call.
    unsafe { libc::execve(path.as_ptr(), argv.pointers.as_ptr(), env.pointers.as_ptr()) };
    io::Error::last_os_error()
}

/// `_exit(2)`: leave the forked child without running destructors or
/// flushing buffers the parent also holds.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and needs no cleanup from us.
    unsafe { libc::_exit(code) }
}

/// The uid that created the user namespace `nsfd`, as our user namespace
/// sees it (`NS_GET_OWNER_UID`, Linux 4.11).
pub(crate) fn ns_owner_uid(nsfd: BorrowedFd<'_>) -> io::Result<u32> {
    const NS_GET_OWNER_UID: libc::c_ulong = 0xb704; // _IO(0xb7, 0x4)
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer, which
    // points at a live local.
    cvt(unsafe { libc::ioctl(nsfd.as_raw_fd(), NS_GET_OWNER_UID as _, &mut uid) } as libc::c_long)?;
    Ok(uid)
}

// ---- capabilities ------------------------------------------------------
//
// Raw capget/capset with 64-bit masks (version 3), so that every set is
// read and written whole, including capabilities newer than any crate's list.

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's effective, permitted and inheritable sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CapSets {
    pub(crate) effective: u64,
    pub(crate) permitted: u64,
    pub(crate) inheritable: u64,
}

pub(crate) fn capget() -> io::Result<CapSets> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array are what version 3 expects.
    cvt(unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) })?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok(CapSets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

pub(crate) fn capset(sets: CapSets) -> io::Result<()> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let split = |v: u64| (v as u32, (v >> 32) as u32);
    let (el, eh) = split(sets.effective);
    let (pl, ph) = split(sets.permitted);
    let (il, ih) = split(sets.inheritable);
    let data = [
        CapData { effective: el, permitted: pl, inheritable: il },
        CapData { effective: eh, permitted: ph, inheritable: ih },
    ];
    // SAFETY: header and two data elements as version 3 expects; read only.
    cvt(unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) }).map(drop)
}

/// Drop every capability from the bounding set (needs CAP_SETPCAP). Walks
/// numbers until the kernel says EINVAL, so it also covers capabilities
/// newer than this program.
pub(crate) fn capbset_drop_all() -> io::Result<()> {
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes a capability number; no memory.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                return Ok(());
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Empty the ambient set (Linux 4.3), unless it was seen empty at start-up
/// and so is still (the drop's verification reads it back either way).
pub(crate) fn cap_ambient_clear_all() -> io::Result<()> {
    if AMBIENT_EMPTY_AT_STARTUP.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(());
    }
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The ambient set as a mask.
pub(crate) fn cap_ambient_read() -> u64 {
    let mut mask = 0u64;
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe {
            libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_IS_SET as libc::c_ulong, cap as libc::c_ulong, 0, 0)
        };
        if r < 0 {
            break;
        }
        if r == 1 {
            mask |= 1 << cap;
        }
    }
    mask
}

/// The canonical name of `host` as the resolver (nsswitch: /etc/hosts, DNS)
/// gives it, as `hostname -f` prints it: `getaddrinfo` with `AI_CANONNAME`.
pub(crate) fn canonical_host_name(host: &str) -> Option<String> {
    let host = std::ffi::CString::new(host).ok()?;
    // SAFETY: an all-zero addrinfo is the documented "no hints" value; only
    // the flags field is then set.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_CANONNAME;
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: host is NUL-terminated, hints lives across the call, and on
    // success `list` receives a list we free below.
    let ret = unsafe { libc::getaddrinfo(host.as_ptr(), std::ptr::null(), &hints, &mut list) };
    if ret != 0 || list.is_null() {
        return None;
    }
    // SAFETY: getaddrinfo succeeded, so `list` points to a valid addrinfo
    // whose ai_canonname is null or a NUL-terminated string it owns.
    let name = unsafe {
        let canon = (*list).ai_canonname;
        (!canon.is_null()).then(|| std::ffi::CStr::from_ptr(canon).to_string_lossy().into_owned())
    };
    // SAFETY: `list` came from getaddrinfo and is freed once; `name` is a copy.
    unsafe { libc::freeaddrinfo(list) };
    name
}
