//! The platform layer: the only module with `unsafe` and the only one that
//! calls the C library or `nix` directly. Everything above it uses the safe,
//! documented functions here.

#[allow(unsafe_code)]
pub(crate) mod alloc;
pub(crate) mod kernel;
#[cfg(test)]
pub(crate) mod recording;
pub(crate) mod secure_file;
#[allow(unsafe_code)]
pub(crate) mod sys;

/// Error numbers, as the kernel reports them.
pub(crate) use nix::errno::Errno;

/// The clone flag of each kind of namespace, for `setns`.
pub(crate) mod ns_flag {
    pub(crate) const IPC: i32 = libc::CLONE_NEWIPC;
    pub(crate) const UTS: i32 = libc::CLONE_NEWUTS;
    pub(crate) const NET: i32 = libc::CLONE_NEWNET;
    pub(crate) const PID: i32 = libc::CLONE_NEWPID;
    pub(crate) const TIME: i32 = libc::CLONE_NEWTIME;
    pub(crate) const NS: i32 = libc::CLONE_NEWNS;
    pub(crate) const CGROUP: i32 = libc::CLONE_NEWCGROUP;
    pub(crate) const USER: i32 = libc::CLONE_NEWUSER;
}

/// Error numbers as plain integers, for matching `raw_os_error()`.
pub(crate) mod errno {
    pub(crate) const EAGAIN: i32 = libc::EAGAIN;
    pub(crate) const ELOOP: i32 = libc::ELOOP;
    pub(crate) const EMFILE: i32 = libc::EMFILE;
    pub(crate) const ENFILE: i32 = libc::ENFILE;
    pub(crate) const ENOMEM: i32 = libc::ENOMEM;
    pub(crate) const ETXTBSY: i32 = libc::ETXTBSY;
    pub(crate) const ENOENT: i32 = libc::ENOENT;
    pub(crate) const ENOTDIR: i32 = libc::ENOTDIR;
}

/// The calling process, as cagepipe finds it at start-up.
pub(crate) mod process {
    use std::io;

    pub(crate) fn no_new_privs() -> io::Result<bool> {
        Ok(nix::sys::prctl::get_no_new_privs()?)
    }

    /// The host's /proc, opened once at start-up (before anything is
    /// entered) and checked to be the proc file system. The command's
    /// process reads its own status through it after entering the
    /// container, whose /proc (its mount, its files) the container owns.
    static HOST_PROC: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();

    /// Open /proc for [`read_own`]; false when it is not the proc file
    /// system (something is mounted over it).
    pub(crate) fn open_host_proc() -> io::Result<bool> {
        use nix::fcntl::OFlag;
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open("/proc", flags, nix::sys::stat::Mode::empty())?;
        let st = nix::sys::statfs::fstatfs(&fd)?;
        if st.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
            return Ok(false);
        }
        let _ = HOST_PROC.set(fd);
        Ok(true)
    }

    /// The host /proc opened at start-up, if it was.
    pub(crate) fn host_proc() -> Option<std::os::fd::BorrowedFd<'static>> {
        use std::os::fd::AsFd;
        HOST_PROC.get().map(|fd| fd.as_fd())
    }

    /// One of the calling process's own /proc files (`self/NAME` below the
    /// host's /proc, whatever mount namespace and root the process is in
    /// now), whole, in one read when it fits (a file the kernel renders
    /// at once: status, stat, cgroup).
    pub(crate) fn read_own(name: &str, max: usize) -> io::Result<Vec<u8>> {
        super::fs::read_rendered(std::fs::File::from(open_own(name)?), max)
    }

    /// [`read_own`], leaving the descriptor open: for the command's process
    /// before exec, whose descriptor walk closes every one anyway.
    pub(crate) fn read_own_before_exec(name: &str, max: usize) -> io::Result<Vec<u8>> {
        let file = std::mem::ManuallyDrop::new(std::fs::File::from(open_own(name)?));
        super::fs::read_rendered(&*file, max)
    }

    fn open_own(name: &str) -> io::Result<std::os::fd::OwnedFd> {
        use nix::fcntl::OFlag;
        let proc = host_proc().ok_or_else(|| io::Error::other("/proc was not opened at start-up"))?;
        let fd = nix::fcntl::openat(
            proc,
            format!("self/{name}").as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        Ok(fd)
    }

    #[cfg(test)]
    pub(crate) fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    pub(crate) const SIGCHLD: i32 = libc::SIGCHLD;

    /// SIGCHLD to its default and unblocked: an ignored SIGCHLD (a caller
    /// can hand it over so) would make waitpid fail.
    pub(crate) fn default_sigchld() {
        super::sys::default_and_unblock(libc::SIGCHLD);
    }

    /// Die from `sig` as the command did, so that Exim logs what it would
    /// have logged without cagepipe; exit 128+sig if the signal does not
    /// kill. No core dump of ours.
    pub(crate) fn die_from_signal(sig: i32) -> ! {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
        super::sys::default_and_unblock(sig);
        if let Ok(s) = nix::sys::signal::Signal::try_from(sig) {
            let _ = nix::sys::signal::raise(s);
        }
        std::process::exit(128 + sig)
    }
}

/// This machine's names, for the notices `survey` writes.
pub(crate) mod host {
    /// The kernel's host name (`uname -n`).
    pub(crate) fn name() -> Option<String> {
        nix::unistd::gethostname().ok().and_then(|n| n.into_string().ok())
    }

    /// The fully qualified name the resolver gives `host` (`hostname -f`).
    pub(crate) fn canonical_name(host: &str) -> Option<String> {
        super::sys::canonical_host_name(host)
    }
}

/// File-system primitives for the code that walks untrusted trees from the
/// host (`inroot`, `survey`) or opens the sandbox's paths: descriptor-based
/// (`openat`, `fstat`, `readlinkat`), so that no path is ever re-resolved.
pub(crate) mod fs {
    pub(crate) use nix::fcntl::{open, openat, readlinkat, OFlag};
    pub(crate) use nix::sys::stat::{fstat, FileStat, Mode, SFlag};
    pub(crate) use nix::sys::statvfs::{fstatvfs, FsFlags};

    /// The sticky bit of a mode.
    pub(crate) const S_ISVTX: u32 = libc::S_ISVTX;

    /// Read `file` to its end, at most `max` bytes, in as few reads as the
    /// kernel allows: a buffer that starts empty is grown from 32 bytes, one
    /// read per doubling, and /proc reports no size to size it from.
    pub(crate) fn read_small(file: impl std::io::Read, max: usize) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut buf = Vec::with_capacity(max.saturating_add(1).min(SMALL_READ));
        file.take(max as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// Read a file the kernel renders whole on its first read (a regular
    /// file, or a /proc file with one record: status, stat, cgroup), at
    /// most `max` bytes: a read that returns less than it asked for
    /// reached the end, so a file that fits takes one read.
    pub(crate) fn read_rendered(file: impl std::io::Read, max: usize) -> std::io::Result<Vec<u8>> {
        read_rendered_from(file, max.min(RENDERED_READ), max)
    }

    /// [`read_rendered`] with the first read's size given (a regular
    /// file's size from fstat, plus one).
    pub(crate) fn read_rendered_from(
        mut file: impl std::io::Read,
        asked: usize,
        max: usize,
    ) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let asked = asked.min(max);
        let mut buf = vec![0; asked];
        let n = loop {
            match file.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        buf.truncate(n);
        if n < asked || n == max {
            return Ok(buf);
        }
        file.take((max - n) as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// The first read of [`read_rendered`]: a status file with a long
    /// Groups line still fits.
    const RENDERED_READ: usize = 8 * 1024;

    /// The buffer a small file is read into at once: every /proc file and
    /// configuration cagepipe reads fits (a mount table of a few hundred
    /// mounts grows it once or twice).
    const SMALL_READ: usize = 16 * 1024;
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::fs::read_rendered;

    /// A reader that hands out at most `step` bytes per read, like a /proc
    /// file of many records.
    struct Trickle<'a>(&'a [u8], usize);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// The child's read-back after the drop reads /proc/self/status
    /// through the host's /proc; on this kernel it must see exactly what
    /// the system calls that read each item one by one see.
    #[test]
    fn the_read_back_through_proc_sees_what_the_system_calls_see() {
        use crate::platform::kernel::{Kernel, Linux};
        assert!(super::process::open_host_proc().unwrap(), "/proc is procfs");
        let seen = Linux::default().observe().unwrap();
        let u = nix::unistd::getresuid().unwrap();
        let g = nix::unistd::getresgid().unwrap();
        assert_eq!(seen.uids, [u.real.as_raw(), u.effective.as_raw(), u.saved.as_raw()]);
        assert_eq!(seen.gids, [g.real.as_raw(), g.effective.as_raw(), g.saved.as_raw()]);
        let mut groups: Vec<u32> = nix::unistd::getgroups().unwrap().into_iter().map(|g| g.as_raw()).collect();
        let mut seen_groups = seen.groups.clone();
        groups.sort_unstable();
        seen_groups.sort_unstable();
        assert_eq!(seen_groups, groups);
        assert_eq!(seen.caps, super::sys::capget().unwrap());
        assert_eq!(seen.ambient, super::sys::cap_ambient_read());
        let mut bounding = 0u64;
        for cap in 0..64 {
            // SAFETY: PR_CAPBSET_READ takes a capability number; no memory.
            match unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) } {
                1 => bounding |= 1 << cap,
                0 => {}
                _ => break,
            }
        }
        assert_eq!(seen.bounding, bounding);
        assert_eq!(seen.no_new_privs, nix::sys::prctl::get_no_new_privs().unwrap());
        assert_eq!(seen.dumpable, nix::sys::prctl::get_dumpable().unwrap());
    }

    #[test]
    fn a_rendered_file_is_read_whole_and_at_most_max() {
        assert_eq!(read_rendered(&b"Name:\tx\n"[..], 100).unwrap(), b"Name:\tx\n");
        assert_eq!(read_rendered(&b"0123456789"[..], 4).unwrap(), b"0123");
        // A first read that fills the buffer is followed up to the end.
        let long = vec![7u8; 20_000];
        assert_eq!(read_rendered(&long[..], 64 * 1024).unwrap(), long);
        assert_eq!(read_rendered(Trickle(&long, 8192), 64 * 1024).unwrap(), long);
        assert_eq!(read_rendered(&long[..], 10_000).unwrap().len(), 10_000);
    }
}
