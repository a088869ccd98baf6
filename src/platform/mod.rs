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

    pub(crate) fn real_uid() -> u32 {
        nix::unistd::getuid().as_raw()
    }

    pub(crate) fn uids() -> io::Result<[u32; 3]> {
        let u = nix::unistd::getresuid()?;
        Ok([u.real.as_raw(), u.effective.as_raw(), u.saved.as_raw()])
    }

    pub(crate) fn gids() -> io::Result<[u32; 3]> {
        let g = nix::unistd::getresgid()?;
        Ok([g.real.as_raw(), g.effective.as_raw(), g.saved.as_raw()])
    }

    pub(crate) fn no_new_privs() -> io::Result<bool> {
        Ok(nix::sys::prctl::get_no_new_privs()?)
    }

    /// Whether /proc is the proc file system (and not something mounted
    /// over it).
    pub(crate) fn proc_is_procfs() -> io::Result<bool> {
        let st = nix::sys::statfs::statfs("/proc")?;
        Ok(st.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
    }

    #[cfg(test)]
    pub(crate) fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    pub(crate) fn effective_gid() -> u32 {
        nix::unistd::getegid().as_raw()
    }

    pub(crate) fn supplementary_groups() -> io::Result<Vec<u32>> {
        Ok(nix::unistd::getgroups()?.into_iter().map(|g| g.as_raw()).collect())
    }

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

    /// The buffer a small file is read into at once: every /proc file and
    /// configuration cagepipe reads fits (a mount table of a few hundred
    /// mounts grows it once or twice).
    const SMALL_READ: usize = 16 * 1024;
}
