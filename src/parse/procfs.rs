#![forbid(unsafe_code)]
//! Parsers for /proc files and container-manager pidfiles. No I/O here.
//!
//! Parts of this text are chosen by the container: process names (`comm`),
//! cgroup names, mount sources. So every parser is strict. It rejects
//! anything that could be read two ways, works in one linear pass, and never
//! panics. Every file except a pidfile must end in a newline, because the
//! kernel always writes one. Without it the read may have been cut short.

// Ordered sets, not hashed ones: a hash set asks the kernel for random keys
// (a getrandom on every delivery), and these sets are small.
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// A /proc text that cannot be trusted to mean one thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Which file, e.g. `/proc/PID/stat`.
    pub what: &'static str,
    pub detail: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot parse {}: {}", self.what, self.detail)
    }
}

impl std::error::Error for ParseError {}

fn fail(what: &'static str, detail: impl Into<String>) -> ParseError {
    ParseError { what, detail: detail.into() }
}

/// Container-chosen bytes, made safe and short enough for an error message.
fn escape_for_message(bytes: &[u8], max_chars: usize) -> String {
    let mut out = String::new();
    for &byte in bytes {
        let escaped = std::ascii::escape_default(byte);
        if out.len() + escaped.len() > max_chars {
            out.push_str("...");
            break;
        }
        out.extend(escaped.map(char::from));
    }
    out
}

fn quoted(bytes: &[u8]) -> String {
    format!("\"{}\"", escape_for_message(bytes, 60))
}

/// Strict ASCII decimal: digits only, no sign (Rust's `parse` accepts `+`), no
/// leading zero (the kernel never writes one), no overflow.
fn parse_decimal(field: &[u8]) -> Option<u64> {
    if field.is_empty() || (field[0] == b'0' && field.len() > 1) {
        return None;
    }
    field.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

fn parse_num<T: TryFrom<u64>>(field: &[u8]) -> Option<T> {
    T::try_from(parse_decimal(field)?).ok()
}

/// The kernel's capability and signal masks: exactly 16 hex digits.
fn parse_hex16(field: &[u8]) -> Option<u64> {
    if field.len() != 16 {
        return None;
    }
    field.iter().try_fold(0u64, |acc, &b| {
        let digit = char::from(b).to_digit(16)?;
        Some((acc << 4) | u64::from(digit))
    })
}

fn words(value: &[u8]) -> Vec<&[u8]> {
    value.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).collect()
}

/// The lines of a kernel text file, which must end with a newline.
fn lines<'a>(text: &'a [u8], what: &'static str) -> Result<impl Iterator<Item = &'a [u8]>, ParseError> {
    if text.is_empty() {
        return Err(fail(what, "the text is empty"));
    }
    let body =
        text.strip_suffix(b"\n").ok_or_else(|| fail(what, "the text does not end with a newline (cut short?)"))?;
    Ok(body.split(|&b| b == b'\n'))
}

const STAT: &str = "/proc/PID/stat";

/// The fields of /proc/PID/stat that pin a process's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    /// One letter: R, S, D, Z, T, t, X, I, ...
    pub state: u8,
    pub ppid: i32,
    /// Field 9, the kernel's PF_* flags (PF_EXITING: the process is dying
    /// but not yet a zombie, e.g. a pid namespace's init while the kernel
    /// kills the rest of its namespace).
    pub flags: u32,
    /// Field 22, clock ticks after boot. Together with the pid, this names
    /// one process, even after the pid is reused.
    pub start_ticks: u64,
}

/// /proc/PID/stat. comm is in parentheses and may itself contain spaces and
/// ')' — find the LAST ')'. Fields after it: state (3rd field), ppid (4th),
/// ..., starttime (22nd field, clock ticks since boot).
///
/// The kernel prints comm without escaping. So a process named `x) Z 1` could
/// forge fields if the parser took the first ')'. Nothing after comm can
/// contain ')', so the last one is always the real end.
pub fn parse_stat(text: &[u8]) -> Result<Stat, ParseError> {
    let line =
        text.strip_suffix(b"\n").ok_or_else(|| fail(STAT, "the text does not end with a newline (cut short?)"))?;
    let open = line.iter().position(|&b| b == b'(').ok_or_else(|| fail(STAT, "no '(' before the command name"))?;
    let close = line
        .iter()
        .rposition(|&b| b == b')')
        .filter(|&close| close > open)
        .ok_or_else(|| fail(STAT, "no ')' after the command name"))?;
    let pid_text = &line[..open];
    let pid = pid_text
        .strip_suffix(b" ")
        .and_then(parse_num::<i32>)
        .filter(|&pid| pid > 0)
        .ok_or_else(|| fail(STAT, format!("bad pid {}", quoted(pid_text))))?;
    let after_comm =
        line[close + 1..].strip_prefix(b" ").ok_or_else(|| fail(STAT, "no space after the command name"))?;
    // fields[0] is field 3 in proc(5) numbering.
    let fields: Vec<&[u8]> = after_comm.split(|&b| b == b' ').collect();
    let field =
        |number: usize| fields.get(number - 3).copied().ok_or_else(|| fail(STAT, format!("field {number} is missing")));
    let state = match field(3)? {
        [letter] if letter.is_ascii_alphabetic() => *letter,
        other => return Err(fail(STAT, format!("bad state {}", quoted(other)))),
    };
    let ppid = field(4)?;
    let ppid = parse_num::<i32>(ppid).ok_or_else(|| fail(STAT, format!("bad ppid {}", quoted(ppid))))?;
    let flags = field(9)?;
    let flags = parse_num::<u32>(flags).ok_or_else(|| fail(STAT, format!("bad flags {}", quoted(flags))))?;
    let start = field(22)?;
    let start_ticks = parse_num::<u64>(start).ok_or_else(|| fail(STAT, format!("bad starttime {}", quoted(start))))?;
    Ok(Stat { pid, state, ppid, flags, start_ticks })
}

const STATUS: &str = "/proc/PID/status";

/// The credentials and process state in /proc/PID/status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Real, effective, saved, filesystem.
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
    pub threads: u32,
    /// The pid in each pid namespace, outermost first (empty before 4.1).
    pub ns_pid: Vec<i32>,
    /// None before 4.10, which had no NoNewPrivs line.
    pub no_new_privs: Option<bool>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    /// None before 4.3, which had no ambient set.
    pub cap_amb: Option<u64>,
    pub sig_blk: u64,
    pub sig_ign: u64,
    /// Signals with a handler (SigCgt).
    pub sig_cgt: u64,
}

/// Store one parsed line. A repeated key is refused: the kernel prints each
/// key once, so a repeat means the text is not what it claims.
fn store<T>(slot: &mut Option<T>, key: &str, value: &[u8], parsed: Option<T>) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(fail(STATUS, format!("more than one {key} line")));
    }
    let parsed = parsed.ok_or_else(|| fail(STATUS, format!("bad {key} value {}", quoted(value))))?;
    *slot = Some(parsed);
    Ok(())
}

fn parse_list<T: TryFrom<u64>>(value: &[u8]) -> Option<Vec<T>> {
    words(value).into_iter().map(parse_num).collect()
}

fn parse_single<T>(value: &[u8], parse: impl Fn(&[u8]) -> Option<T>) -> Option<T> {
    match words(value)[..] {
        [only] => parse(only),
        _ => None,
    }
}

/// /proc/PID/status (only the fields we need; unknown lines ignored). Uid:/Gid:
/// have 4 ids (real, effective, saved, fs); Groups: space-separated (may be
/// empty); Cap*: 16 hex digits; NoNewPrivs: 0/1 (absent on old kernels →
/// None); Threads: count; NSpid: list of pids (absent on old kernels → empty);
/// SigBlk/SigIgn: hex masks.
///
/// The Name line is the only one a process controls. The kernel escapes
/// newlines in it, so it cannot forge a line.
pub fn parse_status(text: &[u8]) -> Result<Status, ParseError> {
    let (mut uid, mut gid, mut groups, mut threads) = (None, None, None, None);
    let (mut ns_pid, mut no_new_privs, mut cap_amb) = (None, None, None);
    let (mut cap_inh, mut cap_prm, mut cap_eff, mut cap_bnd) = (None, None, None, None);
    let (mut sig_blk, mut sig_ign, mut sig_cgt) = (None, None, None);
    for line in lines(text, STATUS)? {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let Ok(key) = std::str::from_utf8(&line[..colon]) else {
            continue;
        };
        let value = &line[colon + 1..];
        let ids4 = || <[u32; 4]>::try_from(parse_list::<u32>(value)?).ok();
        match key {
            "Uid" => store(&mut uid, key, value, ids4()),
            "Gid" => store(&mut gid, key, value, ids4()),
            "Groups" => store(&mut groups, key, value, parse_list(value)),
            "Threads" => store(&mut threads, key, value, parse_single(value, parse_num)),
            "NSpid" => {
                let pids = parse_list::<i32>(value).filter(|pids| !pids.is_empty() && pids.iter().all(|&pid| pid > 0));
                store(&mut ns_pid, key, value, pids)
            }
            "NoNewPrivs" => {
                let flag = parse_single(value, |word| match word {
                    b"0" => Some(false),
                    b"1" => Some(true),
                    _ => None,
                });
                store(&mut no_new_privs, key, value, flag)
            }
            "CapInh" => store(&mut cap_inh, key, value, parse_single(value, parse_hex16)),
            "CapPrm" => store(&mut cap_prm, key, value, parse_single(value, parse_hex16)),
            "CapEff" => store(&mut cap_eff, key, value, parse_single(value, parse_hex16)),
            "CapBnd" => store(&mut cap_bnd, key, value, parse_single(value, parse_hex16)),
            "CapAmb" => store(&mut cap_amb, key, value, parse_single(value, parse_hex16)),
            "SigBlk" => store(&mut sig_blk, key, value, parse_single(value, parse_hex16)),
            "SigIgn" => store(&mut sig_ign, key, value, parse_single(value, parse_hex16)),
            "SigCgt" => store(&mut sig_cgt, key, value, parse_single(value, parse_hex16)),
            _ => Ok(()),
        }?;
    }
    let missing = |key: &str| fail(STATUS, format!("no {key} line"));
    Ok(Status {
        uid: uid.ok_or_else(|| missing("Uid"))?,
        gid: gid.ok_or_else(|| missing("Gid"))?,
        groups: groups.unwrap_or_default(),
        threads: threads.ok_or_else(|| missing("Threads"))?,
        ns_pid: ns_pid.unwrap_or_default(),
        no_new_privs,
        cap_inh: cap_inh.ok_or_else(|| missing("CapInh"))?,
        cap_prm: cap_prm.ok_or_else(|| missing("CapPrm"))?,
        cap_eff: cap_eff.ok_or_else(|| missing("CapEff"))?,
        cap_bnd: cap_bnd.ok_or_else(|| missing("CapBnd"))?,
        cap_amb,
        sig_blk: sig_blk.ok_or_else(|| missing("SigBlk"))?,
        sig_ign: sig_ign.ok_or_else(|| missing("SigIgn"))?,
        sig_cgt: sig_cgt.ok_or_else(|| missing("SigCgt"))?,
    })
}

const CGROUP: &str = "/proc/PID/cgroup";

/// One line of /proc/PID/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupEntry {
    /// 0 for the cgroup2 hierarchy.
    pub hierarchy_id: u32,
    /// v1 controllers such as `cpu` or `name=systemd`; empty for cgroup2.
    pub controllers: Vec<String>,
    /// From the hierarchy root, verbatim, with any " (deleted)" suffix.
    pub path: String,
}

/// Why a cgroup path is unusable, if it is.
fn cgroup_path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("empty path");
    }
    let Some(relative) = path.strip_prefix('/') else {
        return Some("path does not start with '/'");
    };
    if relative.is_empty() {
        return None;
    }
    relative.split('/').find_map(|component| match component {
        "" => Some("path has an empty component"),
        "." | ".." => Some("path has a '.' or '..' component"),
        _ => None,
    })
}

/// /proc/PID/cgroup lines "ID:CONTROLLERS:PATH". v2 is "0::/path". v1 e.g.
/// "4:cpu,cpuacct:/a/b" or "1:name=systemd:/x".
///
/// The kernel prints cgroup names unescaped. A container that can create
/// cgroups can therefore put a newline in a name and forge extra lines. The
/// defences are:
/// - the kernel lists the cgroup2 line (id 0) last, so any line after it is
///   refused;
/// - hierarchy ids and controllers must each appear only once;
/// - the ID:CONTROLLERS shape is checked strictly.
///
/// A path outside the reader's cgroup namespace shows as `/../..`; that is
/// refused too, because it cannot be joined relative to our mount.
pub fn parse_cgroup(text: &[u8]) -> Result<Vec<CgroupEntry>, ParseError> {
    let mut entries: Vec<CgroupEntry> = Vec::new();
    let mut seen_ids = BTreeSet::new();
    let mut seen_controllers = BTreeSet::new();
    for raw in lines(text, CGROUP)? {
        let bad = |why: &str| fail(CGROUP, format!("{why} in line {}", quoted(raw)));
        let line = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
        if entries.last().is_some_and(|last| last.hierarchy_id == 0) {
            return Err(bad("a line after the cgroup2 line"));
        }
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not ID:CONTROLLERS:PATH"));
        };
        let hierarchy_id = parse_num::<u32>(id.as_bytes()).ok_or_else(|| bad("bad hierarchy id"))?;
        if !seen_ids.insert(hierarchy_id) {
            return Err(bad("repeated hierarchy id"));
        }
        let controllers: Vec<String> =
            if controllers.is_empty() { Vec::new() } else { controllers.split(',').map(str::to_owned).collect() };
        if hierarchy_id == 0 && !controllers.is_empty() {
            return Err(bad("controllers on the cgroup2 hierarchy"));
        }
        if hierarchy_id != 0 && controllers.is_empty() {
            return Err(bad("no controllers on a v1 hierarchy"));
        }
        for controller in &controllers {
            if controller.is_empty() {
                return Err(bad("an empty controller name"));
            }
            if !seen_controllers.insert(controller.clone()) {
                return Err(bad("a controller in two hierarchies"));
            }
        }
        if let Some(problem) = cgroup_path_problem(path) {
            return Err(bad(problem));
        }
        entries.push(CgroupEntry { hierarchy_id, controllers, path: path.to_owned() });
    }
    Ok(entries)
}

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of /proc/PID/mountinfo, with the escaped fields decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_id: u32,
    pub parent_id: u32,
    /// The directory of the filesystem mounted here. Not always a path:
    /// nsfs shows e.g. `net:[4026531840]`.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    /// Split on ',' and then decoded, so an escaped comma stays inside its option.
    pub super_options: Vec<String>,
}

/// Undo the kernel's `\ooo` escaping (`mangle()` in fs/proc_namespace.c).
/// A backslash must start exactly three octal digits, because the kernel
/// escapes every literal backslash as `\134`.
fn unescape_octal(field: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(field.len());
    let mut rest = field;
    while let Some((&byte, after)) = rest.split_first() {
        if byte != b'\\' {
            out.push(byte);
            rest = after;
            continue;
        }
        let [high @ b'0'..=b'3', mid @ b'0'..=b'7', low @ b'0'..=b'7', tail @ ..] = after else {
            return None;
        };
        out.push(((high - b'0') << 6) | ((mid - b'0') << 3) | (low - b'0'));
        rest = tail;
    }
    Some(out)
}

/// /proc/self/mountinfo. Fields: mount ID, parent ID, major:minor, root, mount
/// point, mount options, optional fields..., "-", fstype, source, super
/// options. root and mount point escape space, tab, newline and backslash as
/// \040 \011 \012 \134 — unescape them.
///
/// Fields are split on single spaces, not runs of them. Every variable field
/// is escaped, so a space is always a separator. An empty source (possible
/// with `mount ""`) then shows up as an empty field, not a shifted line.
pub fn parse_mountinfo(text: &[u8]) -> Result<Vec<MountInfo>, ParseError> {
    let mut mounts = Vec::new();
    let mut seen_ids = BTreeSet::new();
    for line in lines(text, MOUNTINFO)? {
        let bad = |why: &str| fail(MOUNTINFO, format!("{why} in line {}", quoted(line)));
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let Some(&[mount_id, parent_id, dev, root, mount_point, mount_options]) = fields.get(..6) else {
            return Err(bad("too few fields"));
        };
        let dash =
            fields.iter().skip(6).position(|&f| f == b"-").map(|at| at + 6).ok_or_else(|| bad("no '-' separator"))?;
        let [fs_type, source, super_options] = fields[dash + 1..] else {
            return Err(bad("not three fields after '-'"));
        };
        let mount_id = parse_num::<u32>(mount_id).ok_or_else(|| bad("bad mount id"))?;
        let parent_id = parse_num::<u32>(parent_id).ok_or_else(|| bad("bad parent id"))?;
        let colon = dev.iter().position(|&b| b == b':');
        let dev_ok =
            colon.is_some_and(|c| parse_num::<u32>(&dev[..c]).is_some() && parse_num::<u32>(&dev[c + 1..]).is_some());
        if !dev_ok {
            return Err(bad("bad major:minor"));
        }
        if mount_options.is_empty() || fields[6..dash].iter().any(|f| f.is_empty()) {
            return Err(bad("an empty field"));
        }
        let path = |field: &[u8], what: &str| match unescape_octal(field) {
            Some(bytes) if !bytes.is_empty() => Ok(PathBuf::from(OsString::from_vec(bytes))),
            _ => Err(bad(what)),
        };
        let root = path(root, "bad root")?;
        let mount_point = path(mount_point, "bad mount point")?;
        if !mount_point.is_absolute() {
            return Err(bad("relative mount point"));
        }
        let string = |field: &[u8], what: &str| {
            unescape_octal(field).and_then(|bytes| String::from_utf8(bytes).ok()).ok_or_else(|| bad(what))
        };
        let fs_type = string(fs_type, "bad filesystem type")?;
        let source = string(source, "bad source")?;
        if fs_type.is_empty() || super_options.is_empty() {
            return Err(bad("an empty field"));
        }
        let super_options = super_options
            .split(|&b| b == b',')
            .map(|option| string(option, "bad super option"))
            .collect::<Result<Vec<_>, _>>()?;
        if !seen_ids.insert(mount_id) {
            return Err(bad("repeated mount id"));
        }
        mounts.push(MountInfo { mount_id, parent_id, root, mount_point, fs_type, source, super_options });
    }
    Ok(mounts)
}

const ID_MAP: &str = "/proc/PID/uid_map or gid_map";

/// The kernel's limit on the lines of an id map (UID_GID_MAP_MAX_EXTENTS).
const MAX_ID_MAP_LINES: usize = 340;

/// One line of an id map: `count` ids from `inside` in the namespace are
/// `outside` in the parent namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// Whether two `count`-long runs starting at `a` and `b` share an id.
fn runs_overlap(a: u32, a_count: u32, b: u32, b_count: u32) -> bool {
    u64::from(a) < u64::from(b) + u64::from(b_count) && u64::from(b) < u64::from(a) + u64::from(a_count)
}

/// /proc/PID/uid_map and gid_map: lines "INSIDE OUTSIDE COUNT"
/// (whitespace-aligned). Reject count 0, overflow of inside+count or
/// outside+count beyond u32, more than 340 lines.
///
/// Ranges that overlap inside or outside are refused too. The kernel refuses
/// to write such a map (`mappings_overlap` in kernel/user_namespace.c), and it
/// would make an id map two ways. An empty text is a namespace with no map
/// written yet: Ok with no ranges, so nothing is mapped.
pub fn parse_id_map(text: &[u8]) -> Result<Vec<IdMapRange>, ParseError> {
    let mut ranges: Vec<IdMapRange> = Vec::new();
    if text.is_empty() {
        return Ok(ranges);
    }
    for line in lines(text, ID_MAP)? {
        let bad = |why: &str| fail(ID_MAP, format!("{why} in line {}", quoted(line)));
        if ranges.len() == MAX_ID_MAP_LINES {
            return Err(fail(ID_MAP, format!("more than {MAX_ID_MAP_LINES} lines")));
        }
        let [inside, outside, count] = words(line)[..] else {
            return Err(bad("not three numbers"));
        };
        let (Some(inside), Some(outside), Some(count)) =
            (parse_num::<u32>(inside), parse_num::<u32>(outside), parse_num::<u32>(count))
        else {
            return Err(bad("not three numbers"));
        };
        if count == 0 {
            return Err(bad("a count of 0"));
        }
        // The kernel's own rule: first + count must not wrap in u32.
        if inside.checked_add(count).is_none() || outside.checked_add(count).is_none() {
            return Err(bad("a range past 4294967295"));
        }
        let overlaps = ranges.iter().any(|r| {
            runs_overlap(r.inside, r.count, inside, count) || runs_overlap(r.outside, r.count, outside, count)
        });
        if overlaps {
            return Err(bad("a range overlapping an earlier one"));
        }
        ranges.push(IdMapRange { inside, outside, count });
    }
    Ok(ranges)
}

/// The id a host (outside) id has inside the namespace, None when unmapped.
pub fn map_outside_to_inside(map: &[IdMapRange], outside: u32) -> Option<u32> {
    map.iter().find_map(|range| {
        let offset = outside.checked_sub(range.outside)?;
        if offset < range.count {
            range.inside.checked_add(offset)
        } else {
            None
        }
    })
}

const PROC_STAT: &str = "/proc/stat";

/// "btime N" line of /proc/stat: boot time in seconds since the epoch.
///
/// With a stat's start_ticks, this dates a process. Two btime lines, or a
/// zero, mean the text is not the kernel's.
pub fn parse_btime(proc_stat: &[u8]) -> Result<u64, ParseError> {
    let mut btime = None;
    for line in lines(proc_stat, PROC_STAT)? {
        let Some(value) = line.strip_prefix(b"btime ") else {
            continue;
        };
        if btime.is_some() {
            return Err(fail(PROC_STAT, "more than one btime line"));
        }
        let seconds = parse_num::<u64>(value)
            .filter(|&seconds| seconds > 0)
            .ok_or_else(|| fail(PROC_STAT, format!("bad btime {}", quoted(value))))?;
        btime = Some(seconds);
    }
    btime.ok_or_else(|| fail(PROC_STAT, "no btime line"))
}

/// The kernel's PID_MAX_LIMIT on 64-bit: no pid is larger.
const PID_MAX_LIMIT: u64 = 4_194_304;

/// Longest pidfile accepted; a pid needs at most 7 digits.
const MAX_PIDFILE_BYTES: usize = 64;

/// Why a pidfile names no process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidfileError {
    /// Nothing but white space, e.g. while the manager is still writing it.
    Empty,
    /// Anything else that is not one pid; holds the content escaped and cut
    /// to about 40 characters.
    Garbage(String),
}

impl fmt::Display for PidfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidfileError::Empty => f.write_str("the pidfile is empty"),
            PidfileError::Garbage(content) => {
                write!(f, "the pidfile does not hold one decimal pid from 1 to {PID_MAX_LIMIT}: \"{content}\"")
            }
        }
    }
}

impl std::error::Error for PidfileError {}

/// A pidfile written by a container manager: ASCII decimal pid, optional
/// surrounding ASCII white space (a trailing newline is usual), nothing else.
/// Reject empty, sign, leading '+', zero, > 4194304 (PID_MAX_LIMIT), more
/// than 64 bytes total, any other byte.
///
/// Leading zeros are refused as well: the text is not the plain decimal a
/// manager writes, and `010` could be meant as octal. A file that holds only
/// white space counts as Empty.
pub fn parse_pidfile(contents: &[u8]) -> Result<i32, PidfileError> {
    let garbage = || PidfileError::Garbage(escape_for_message(contents, 40));
    if contents.len() > MAX_PIDFILE_BYTES {
        return Err(garbage());
    }
    let start = contents.iter().position(|b| !b.is_ascii_whitespace());
    let end = contents.iter().rposition(|b| !b.is_ascii_whitespace());
    let (Some(start), Some(end)) = (start, end) else {
        return Err(PidfileError::Empty);
    };
    parse_decimal(&contents[start..=end])
        .filter(|pid| (1..=PID_MAX_LIMIT).contains(pid))
        .and_then(|pid| i32::try_from(pid).ok())
        .ok_or_else(garbage)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed every prefix to `parse`; it must return (never panic) and must
    /// refuse every proper prefix that does not end at a line end.
    fn check_prefixes<T>(sample: &[u8], parse: impl Fn(&[u8]) -> Result<T, ParseError>) {
        for len in 0..=sample.len() {
            let prefix = &sample[..len];
            let result = parse(prefix);
            if len > 0 && !prefix.ends_with(b"\n") {
                assert!(result.is_err(), "accepted a cut line: {prefix:?}");
            }
        }
    }

    fn err_detail<T: fmt::Debug>(result: Result<T, ParseError>) -> String {
        result.unwrap_err().detail
    }

    #[test]
    fn parse_error_display() {
        let error = fail(STAT, "no ')' after the command name");
        assert_eq!(error.to_string(), "cannot parse /proc/PID/stat: no ')' after the command name");
    }

    #[test]
    fn escape_for_message_escapes_and_shortens() {
        assert_eq!(escape_for_message(b"ab\n\xff\\", 40), "ab\\n\\xff\\\\");
        assert_eq!(escape_for_message(b"abcdefgh", 5), "abcde...");
        assert_eq!(escape_for_message(b"abcd\x01", 5), "abcd...");
    }

    #[test]
    fn parse_decimal_is_strict() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"4194304"), Some(4_194_304));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        for bad in [&b""[..], b"+1", b"-1", b"01", b"1 ", b"1a", b"18446744073709551616"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
        assert_eq!(parse_num::<i32>(b"2147483648"), None);
        assert_eq!(parse_num::<i32>(b"2147483647"), Some(i32::MAX));
    }

    #[test]
    fn parse_hex16_needs_sixteen_digits() {
        assert_eq!(parse_hex16(b"000001ffffffffff"), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_hex16(b"FFFFFFFFFFFFFFFF"), Some(u64::MAX));
        assert_eq!(parse_hex16(b"1ffffffffff"), None);
        assert_eq!(parse_hex16(b"+00001ffffffffff"), None);
        assert_eq!(parse_hex16(b"000001fffffffffg"), None);
    }

    const STAT_SAMPLE: &[u8] = b"4242 (a) b) c) S 4200 4242 4200 0 -1 4194560 1115 0 0 0 \
1 0 0 0 20 0 1 0 118893 9158656 1280 18446744073709551615 94596018352128 \
94596018372009 140728172448416 0 0 0 65536 3686404 1266761467 0 0 0 17 1 0 0 0 0 0 \
94596018388016 94596018389632 94596998266880 140728172452578 140728172452598 \
140728172452598 140728172453867 0\n";

    #[test]
    fn stat_comm_with_parens_and_spaces() {
        assert_eq!(
            parse_stat(STAT_SAMPLE),
            Ok(Stat { pid: 4242, state: b'S', ppid: 4200, flags: 4_194_560, start_ticks: 118_893 })
        );
    }

    #[test]
    fn stat_comm_forging_fields_is_ignored() {
        let text = b"7 (x) Z 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1) R 0 7 7 0 -1 \
4194560 0 0 0 0 0 0 0 0 20 0 1 0 555 0 0\n";
        let stat = parse_stat(text).unwrap();
        assert_eq!((stat.state, stat.ppid, stat.start_ticks), (b'R', 0, 555));
    }

    #[test]
    fn stat_newline_in_comm() {
        let text = b"9 (evil\n1 (x) R) S 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 0\n";
        assert_eq!(parse_stat(text).unwrap().start_ticks, 77);
    }

    #[test]
    fn stat_rejections() {
        let cases: [(&[u8], &str); 10] = [
            (b"", "the text does not end with a newline (cut short?)"),
            (b"1 (x) S 0", "the text does not end with a newline (cut short?)"),
            (b"1 x) S 0\n", "no '(' before the command name"),
            (b"1 (x S 0\n", "no ')' after the command name"),
            (b"0 (x) S 0\n", "bad pid \"0 \""),
            (b"-1 (x) S 0\n", "bad pid \"-1 \""),
            (b"1(x) S 0\n", "bad pid \"1\""),
            (b"1 (x)S 0\n", "no space after the command name"),
            (b"1 (x) SS 0\n", "bad state \"SS\""),
            (b"1 (x) S -1\n", "bad ppid \"-1\""),
        ];
        for (text, detail) in cases {
            assert_eq!(err_detail(parse_stat(text)), detail, "{text:?}");
        }
        // Field 1 parsed but the text is too short for starttime.
        assert_eq!(err_detail(parse_stat(b"1 (x) S 0 1 1 0 -1 0 0 0 0\n")), "field 22 is missing");
        let bad_start = b"1 (x) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 +5 0\n";
        assert_eq!(err_detail(parse_stat(bad_start)), "bad starttime \"+5\"");
    }

    #[test]
    fn stat_every_prefix_returns() {
        check_prefixes(STAT_SAMPLE, parse_stat);
        // Cut inside starttime: "118893" must not be read as "1188".
        let cut = STAT_SAMPLE.windows(7).position(|w| w == b" 118893").unwrap();
        assert_eq!(
            err_detail(parse_stat(&STAT_SAMPLE[..cut + 5])),
            "the text does not end with a newline (cut short?)"
        );
        // Cut just before starttime, with the newline an editor might add.
        let mut before_start = STAT_SAMPLE[..cut].to_vec();
        before_start.push(b'\n');
        assert_eq!(err_detail(parse_stat(&before_start)), "field 22 is missing");
    }

    const STATUS_MODERN: &[u8] = b"Name:\tbash\\nUid:\\t0\\t0\\t0\\t0\n\
Umask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\nPid:\t4242\nPPid:\t4200\n\
TracerPid:\t0\nUid:\t1000\t1001\t1002\t1003\nGid:\t100\t101\t102\t103\nFDSize:\t256\n\
Groups:\t4 24 27 1000 \nNStgid:\t4242\t17\nNSpid:\t4242\t17\nNSpgid:\t4242\t17\n\
NSsid:\t4200\t1\nKthread:\t0\nVmPeak:\t   10136 kB\nVmSize:\t   10136 kB\n\
Threads:\t3\nSigQ:\t0/62598\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n\
SigBlk:\t0000000000010000\nSigIgn:\t0000000000380004\nSigCgt:\t000000004b817efb\n\
CapInh:\t0000000000000000\nCapPrm:\t0000000000000400\nCapEff:\t0000000000000000\n\
CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n\
Seccomp_filters:\t1\nSpeculation_Store_Bypass:\tthread vulnerable\n\
Cpus_allowed:\tff\nCpus_allowed_list:\t0-7\nMems_allowed:\t00000000,00000001\n\
Mems_allowed_list:\t0\nvoluntary_ctxt_switches:\t150\nnonvoluntary_ctxt_switches:\t3\n";

    /// Status as printed by kernels before 4.1 (e.g. RHEL 7's 3.10): no
    /// NSpid, CapAmb or NoNewPrivs lines.
    const STATUS_OLD: &[u8] = b"Name:\tprocmail\nState:\tS (sleeping)\nTgid:\t812\n\
Ngid:\t0\nPid:\t812\nPPid:\t1\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n\
FDSize:\t64\nGroups:\t\nVmPeak:\t  115384 kB\nThreads:\t1\nSigQ:\t0/14989\n\
SigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\n\
SigIgn:\t0000000000000000\nSigCgt:\t0000000180000000\nCapInh:\t0000000000000000\n\
CapPrm:\t0000001fffffffff\nCapEff:\t0000001fffffffff\nCapBnd:\t0000001fffffffff\n\
Seccomp:\t0\nCpus_allowed:\t1\nCpus_allowed_list:\t0\n";

    #[test]
    fn status_modern_kernel() {
        let status = parse_status(STATUS_MODERN).unwrap();
        assert_eq!(
            status,
            Status {
                uid: [1000, 1001, 1002, 1003],
                gid: [100, 101, 102, 103],
                groups: vec![4, 24, 27, 1000],
                threads: 3,
                ns_pid: vec![4242, 17],
                no_new_privs: Some(true),
                cap_inh: 0,
                cap_prm: 0x400,
                cap_eff: 0,
                cap_bnd: 0x1ff_ffff_ffff,
                cap_amb: Some(0),
                sig_blk: 0x10000,
                sig_ign: 0x38_0004,
                sig_cgt: 0x4b81_7efb,
            }
        );
    }

    #[test]
    fn status_old_kernel() {
        let status = parse_status(STATUS_OLD).unwrap();
        assert_eq!(status.uid, [0; 4]);
        assert_eq!(status.groups, Vec::<u32>::new());
        assert_eq!(status.threads, 1);
        assert_eq!(status.ns_pid, Vec::<i32>::new());
        assert_eq!(status.no_new_privs, None);
        assert_eq!(status.cap_amb, None);
        assert_eq!(status.cap_eff, 0x1f_ffff_ffff);
    }

    #[test]
    fn status_empty_groups_with_trailing_space() {
        let text = [STATUS_OLD, b"Groups:\t \n"].concat();
        // Groups already appeared in STATUS_OLD.
        assert_eq!(err_detail(parse_status(&text)), "more than one Groups line");
        let text = String::from_utf8(STATUS_OLD.to_vec()).unwrap().replace("Groups:\t\n", "Groups:\t \n");
        assert_eq!(parse_status(text.as_bytes()).unwrap().groups, Vec::<u32>::new());
    }

    fn replace_line(sample: &[u8], key: &str, new_line: &str) -> Vec<u8> {
        let text = std::str::from_utf8(sample).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with(&format!("{key}:")) {
                out.push_str(new_line);
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.into_bytes()
    }

    #[test]
    fn status_rejections() {
        let cases = [
            ("Uid", "Uid:\t1\t2\t3\n", "bad Uid value \"\\t1\\t2\\t3\""),
            ("Uid", "Uid:\t1\t2\t3\t4\t5\n", "bad Uid value \"\\t1\\t2\\t3\\t4\\t5\""),
            ("Gid", "Gid:\t1\t2\t3\t-4\n", "bad Gid value \"\\t1\\t2\\t3\\t-4\""),
            ("Groups", "Groups:\t4 x\n", "bad Groups value \"\\t4 x\""),
            ("Threads", "Threads:\t1 2\n", "bad Threads value \"\\t1 2\""),
            ("NSpid", "NSpid:\t\n", "bad NSpid value \"\\t\""),
            ("NSpid", "NSpid:\t5\t0\n", "bad NSpid value \"\\t5\\t0\""),
            ("NoNewPrivs", "NoNewPrivs:\t2\n", "bad NoNewPrivs value \"\\t2\""),
            ("CapEff", "CapEff:\t1ffffffffff\n", "bad CapEff value \"\\t1ffffffffff\""),
            ("CapAmb", "CapAmb:\t\n", "bad CapAmb value \"\\t\""),
            ("SigIgn", "SigIgn:\t00000000000000000\n", "bad SigIgn value \"\\t00000000000000000\""),
            ("Uid", "Uid:\t0\t0\t0\t0\nUid:\t0\t0\t0\t0\n", "more than one Uid line"),
        ];
        for (key, line, detail) in cases {
            let text = replace_line(STATUS_MODERN, key, line);
            assert_eq!(err_detail(parse_status(&text)), detail, "{line:?}");
        }
        for key in ["Uid", "Gid", "Threads", "CapInh", "CapPrm", "CapEff", "CapBnd", "SigBlk", "SigIgn"] {
            let text = replace_line(STATUS_MODERN, key, "");
            assert_eq!(err_detail(parse_status(&text)), format!("no {key} line"));
        }
        let text = replace_line(STATUS_MODERN, "Groups", "");
        assert_eq!(parse_status(&text).unwrap().groups, Vec::<u32>::new());
    }

    #[test]
    fn status_every_prefix_returns() {
        check_prefixes(STATUS_MODERN, parse_status);
        check_prefixes(STATUS_OLD, parse_status);
        // Cut right after a complete line that precedes required fields.
        let cut = STATUS_MODERN.windows(7).position(|w| w == b"Threads").unwrap();
        assert_eq!(err_detail(parse_status(&STATUS_MODERN[..cut])), "no Threads line");
    }

    const CGROUP_HYBRID: &[u8] = b"12:pids:/c1\n11:name=systemd:/c1\n10:cpu,cpuacct:/c1\n\
9:memory:/c1/sub:with:colons\n4:devices:/c1 (deleted)\n1:freezer:/\n0::/c1\n";

    #[test]
    fn cgroup_hybrid() {
        let entries = parse_cgroup(CGROUP_HYBRID).unwrap();
        let summary: Vec<(u32, Vec<&str>, &str)> = entries
            .iter()
            .map(|e| {
                let controllers = e.controllers.iter().map(String::as_str).collect();
                (e.hierarchy_id, controllers, e.path.as_str())
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (12, vec!["pids"], "/c1"),
                (11, vec!["name=systemd"], "/c1"),
                (10, vec!["cpu", "cpuacct"], "/c1"),
                (9, vec!["memory"], "/c1/sub:with:colons"),
                (4, vec!["devices"], "/c1 (deleted)"),
                (1, vec!["freezer"], "/"),
                (0, vec![], "/c1"),
            ]
        );
    }

    #[test]
    fn cgroup_v2_only() {
        assert_eq!(
            parse_cgroup(b"0::/user.slice/user-1000.slice/session-2.scope\n"),
            Ok(vec![CgroupEntry {
                hierarchy_id: 0,
                controllers: vec![],
                path: "/user.slice/user-1000.slice/session-2.scope".into(),
            }])
        );
    }

    #[test]
    fn cgroup_rejections() {
        let cases: [(&[u8], &str); 17] = [
            (b"", "the text is empty"),
            (b"0::/a", "the text does not end with a newline (cut short?)"),
            (b"\n", "not ID:CONTROLLERS:PATH in line \"\""),
            (b"0:/a\n", "not ID:CONTROLLERS:PATH in line \"0:/a\""),
            (b"x::/a\n", "bad hierarchy id in line \"x::/a\""),
            (b"+1:cpu:/a\n", "bad hierarchy id in line \"+1:cpu:/a\""),
            (b"1:cpu:/a\n1:pids:/a\n", "repeated hierarchy id in line \"1:pids:/a\""),
            (b"0:cpu:/a\n", "controllers on the cgroup2 hierarchy in line \"0:cpu:/a\""),
            (b"1::/a\n", "no controllers on a v1 hierarchy in line \"1::/a\""),
            (b"1:cpu,,x:/a\n", "an empty controller name in line \"1:cpu,,x:/a\""),
            (b"2:cpu:/a\n1:cpu:/b\n", "a controller in two hierarchies in line \"1:cpu:/b\""),
            (b"0::\n", "empty path in line \"0::\""),
            (b"0::a/b\n", "path does not start with '/' in line \"0::a/b\""),
            (b"0::/../../x\n", "path has a '.' or '..' component in line \"0::/../../x\""),
            (b"0::/a/./b\n", "path has a '.' or '..' component in line \"0::/a/./b\""),
            (b"0::/a//b\n", "path has an empty component in line \"0::/a//b\""),
            (b"0::/a/\xff\n", "not UTF-8 in line \"0::/a/\\xff\""),
        ];
        for (text, detail) in cases {
            assert_eq!(err_detail(parse_cgroup(text)), detail, "{text:?}");
        }
    }

    #[test]
    fn cgroup_newline_in_name_cannot_forge_lines() {
        // A container made a cgroup named "x\n1:cpu:/evil" and moved into it.
        assert_eq!(
            err_detail(parse_cgroup(b"0::/c1/x\n1:cpu:/evil\n")),
            "a line after the cgroup2 line in line \"1:cpu:/evil\""
        );
        // The same trick in a delegated v1 hierarchy repeats an id or controller.
        assert_eq!(
            err_detail(parse_cgroup(b"2:name=systemd:/c1/x\n1:cpu:/evil\n1:cpu:/c1\n0::/c1\n")),
            "repeated hierarchy id in line \"1:cpu:/c1\""
        );
        assert_eq!(
            err_detail(parse_cgroup(b"2:name=systemd:/c1/x\n7:cpu:/evil\n1:cpu:/c1\n0::/c1\n")),
            "a controller in two hierarchies in line \"1:cpu:/c1\""
        );
    }

    #[test]
    fn cgroup_every_prefix_returns() {
        check_prefixes(CGROUP_HYBRID, parse_cgroup);
        assert_eq!(parse_cgroup(b"12:pids:/c1\n").unwrap().len(), 1);
        assert!(parse_cgroup(b"12:pids:/c1\n11:name=sys").is_err());
    }

    const MOUNTINFO_SAMPLE: &[u8] = b"29 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n\
22 29 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n\
26 22 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755,inode64\n\
27 26 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate\n\
28 26 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd\n\
32 26 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct\n\
120 29 8:1 /srv/mail\\040spool /var/mail\\040box\\011x\\134y rw,relatime shared:1 master:3 - ext4 /dev/sda1 rw\n\
200 29 0:50 / /mnt/x rw,relatime - tmpfs  rw,o=a\\054b\n\
201 29 0:4 net:[4026531840] /run/netns/a rw - nsfs nsfs rw\n";

    #[test]
    fn mountinfo_sample() {
        let mounts = parse_mountinfo(MOUNTINFO_SAMPLE).unwrap();
        assert_eq!(mounts.len(), 9);
        assert_eq!(
            mounts[3],
            MountInfo {
                mount_id: 27,
                parent_id: 26,
                root: "/".into(),
                mount_point: "/sys/fs/cgroup/unified".into(),
                fs_type: "cgroup2".into(),
                source: "cgroup2".into(),
                super_options: vec!["rw".into(), "nsdelegate".into()],
            }
        );
        assert_eq!(mounts[4].super_options, ["rw", "xattr", "name=systemd"]);
        assert_eq!(mounts[5].mount_point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(mounts[6].root, PathBuf::from("/srv/mail spool"));
        assert_eq!(mounts[6].mount_point, PathBuf::from("/var/mail box\tx\\y"));
        assert_eq!(mounts[7].source, "");
        assert_eq!(mounts[7].super_options, ["rw", "o=a,b"]);
        assert_eq!(mounts[8].root, PathBuf::from("net:[4026531840]"));
    }

    #[test]
    fn mountinfo_non_utf8_paths_survive() {
        let mounts = parse_mountinfo(b"5 1 0:9 / /m\\377\xfe rw - tmpfs t rw\n").unwrap();
        assert_eq!(mounts[0].mount_point, PathBuf::from(OsString::from_vec(b"/m\xff\xfe".to_vec())));
    }

    #[test]
    fn mountinfo_rejections() {
        let cases: [(&[u8], &str); 16] = [
            (b"", "the text is empty"),
            (b"1 0 0:1 / / rw - ext4 a rw", "the text does not end with a newline (cut short?)"),
            (b"1 0 0:1 / / rw ext4 a rw\n", "no '-' separator"),
            (b"1 0 0:1 / / - ext4 a rw\n", "no '-' separator"),
            (b"1 0 0:1 / / rw - ext4 a\n", "not three fields after '-'"),
            (b"1 0 0:1 / / rw - ext4 a rw x\n", "not three fields after '-'"),
            (b"x 0 0:1 / / rw - ext4 a rw\n", "bad mount id"),
            (b"1 -1 0:1 / / rw - ext4 a rw\n", "bad parent id"),
            (b"1 0 01 / / rw - ext4 a rw\n", "bad major:minor"),
            (b"1 0 0:1 / / rw  - ext4 a rw\n", "an empty field"),
            (b"1 0 0:1 /\\x / rw - ext4 a rw\n", "bad root"),
            (b"1 0 0:1 / /\\400 rw - ext4 a rw\n", "bad mount point"),
            (b"1 0 0:1 / a rw - ext4 a rw\n", "relative mount point"),
            (b"1 0 0:1 / / rw - \xff a rw\n", "bad filesystem type"),
            (b"1 0 0:1 / / rw - ext4 a \n", "an empty field"),
            (b"1 0 0:1 / / rw - ext4 a rw\n1 0 0:1 / /b rw - ext4 a rw\n", "repeated mount id"),
        ];
        for (text, detail) in cases {
            let got = err_detail(parse_mountinfo(text));
            assert!(got.starts_with(detail), "{text:?}: {got}");
        }
        assert_eq!(err_detail(parse_mountinfo(b"1 0 0:1 / /\n")), "too few fields in line \"1 0 0:1 / /\"");
    }

    #[test]
    fn unescape_octal_rules() {
        assert_eq!(unescape_octal(b"a\\040b\\134"), Some(b"a b\\".to_vec()));
        assert_eq!(unescape_octal(b"\\377"), Some(vec![0xff]));
        assert_eq!(unescape_octal(b"\\"), None);
        assert_eq!(unescape_octal(b"\\04"), None);
        assert_eq!(unescape_octal(b"\\400"), None);
        assert_eq!(unescape_octal(b"\\08x"), None);
    }

    #[test]
    fn mountinfo_every_prefix_returns() {
        check_prefixes(MOUNTINFO_SAMPLE, parse_mountinfo);
        let first_line_end = MOUNTINFO_SAMPLE.iter().position(|&b| b == b'\n').unwrap();
        assert_eq!(parse_mountinfo(&MOUNTINFO_SAMPLE[..=first_line_end]).unwrap().len(), 1);
        assert!(parse_mountinfo(&MOUNTINFO_SAMPLE[..first_line_end]).is_err());
    }

    const ID_MAP_SAMPLE: &[u8] = b"         0     100000      65536\n     65536       1000          1\n";

    #[test]
    fn id_map_sample() {
        let map = parse_id_map(ID_MAP_SAMPLE).unwrap();
        assert_eq!(
            map,
            vec![
                IdMapRange { inside: 0, outside: 100_000, count: 65_536 },
                IdMapRange { inside: 65_536, outside: 1000, count: 1 },
            ]
        );
        assert_eq!(parse_id_map(b"").unwrap(), vec![]);
        let full = parse_id_map(b"         0          0 4294967295\n").unwrap();
        assert_eq!(full[0].count, u32::MAX);
    }

    #[test]
    fn id_map_rejections() {
        let cases: [(&[u8], &str); 9] = [
            (b"0 0 1", "the text does not end with a newline (cut short?)"),
            (b"\n", "not three numbers"),
            (b"0 0\n", "not three numbers"),
            (b"0 0 1 1\n", "not three numbers"),
            (b"0 -1 1\n", "not three numbers"),
            (b"0 0 0\n", "a count of 0"),
            (b"1 0 4294967295\n", "a range past 4294967295"),
            (b"0 4294967295 1\n", "a range past 4294967295"),
            (b"0 1000 10\n5 2000 1\n", "a range overlapping an earlier one"),
        ];
        for (text, detail) in cases {
            let got = err_detail(parse_id_map(text));
            assert!(got.starts_with(detail), "{text:?}: {got}");
        }
        assert!(err_detail(parse_id_map(b"0 1000 10\n10 1009 1\n")).starts_with("a range overlapping"));
        assert!(parse_id_map(b"0 1000 10\n10 1010 1\n").is_ok());
    }

    #[test]
    fn id_map_line_limit() {
        let line = |i: u32| format!("{i} {} 1\n", 1000 + i);
        let ok: String = (0..340).map(line).collect();
        assert_eq!(parse_id_map(ok.as_bytes()).unwrap().len(), 340);
        let too_many: String = (0..341).map(line).collect();
        assert_eq!(err_detail(parse_id_map(too_many.as_bytes())), "more than 340 lines");
    }

    #[test]
    fn id_map_every_prefix_returns() {
        check_prefixes(ID_MAP_SAMPLE, parse_id_map);
        // The first line alone, complete, is a valid one-range map.
        assert_eq!(parse_id_map(&ID_MAP_SAMPLE[..33]).unwrap().len(), 1);
    }

    #[test]
    fn map_outside_to_inside_lookups() {
        let map = parse_id_map(ID_MAP_SAMPLE).unwrap();
        assert_eq!(map_outside_to_inside(&map, 100_000), Some(0));
        assert_eq!(map_outside_to_inside(&map, 165_535), Some(65_535));
        assert_eq!(map_outside_to_inside(&map, 165_536), None);
        assert_eq!(map_outside_to_inside(&map, 99_999), None);
        assert_eq!(map_outside_to_inside(&map, 1000), Some(65_536));
        assert_eq!(map_outside_to_inside(&map, 0), None);
        assert_eq!(map_outside_to_inside(&[], 0), None);
        // A hand-built range that would overflow inside maps nothing.
        let odd = [IdMapRange { inside: u32::MAX, outside: 0, count: 2 }];
        assert_eq!(map_outside_to_inside(&odd, 0), Some(u32::MAX));
        assert_eq!(map_outside_to_inside(&odd, 1), None);
    }

    const PROC_STAT_SAMPLE: &[u8] = b"cpu  1 2 3 4 5 6 7 0 0 0\ncpu0 1 2 3 4 5 6 7 0 0 0\n\
intr 123 0 0\nctxt 456\nbtime 1795393510\nprocesses 3913\nprocs_running 1\n\
procs_blocked 0\nsoftirq 1 2 3\n";

    #[test]
    fn btime_sample() {
        assert_eq!(parse_btime(PROC_STAT_SAMPLE), Ok(1_795_393_510));
    }

    #[test]
    fn btime_rejections() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "the text is empty"),
            (b"ctxt 1\n", "no btime line"),
            (b"btime 0\n", "bad btime \"0\""),
            (b"btime -5\n", "bad btime \"-5\""),
            (b"btime  5\n", "bad btime \" 5\""),
            (b"btime 5\nbtime 5\n", "more than one btime line"),
        ];
        for (text, detail) in cases {
            assert_eq!(err_detail(parse_btime(text)), detail, "{text:?}");
        }
    }

    #[test]
    fn btime_every_prefix_returns() {
        check_prefixes(PROC_STAT_SAMPLE, parse_btime);
        // Cut inside the btime number: refused, never a smaller boot time.
        let at = PROC_STAT_SAMPLE.windows(6).position(|w| w == b"btime ").unwrap();
        assert!(parse_btime(&PROC_STAT_SAMPLE[..at + 9]).is_err());
    }

    #[test]
    fn pidfile_accepts_plain_pids() {
        assert_eq!(parse_pidfile(b"4242\n"), Ok(4242));
        assert_eq!(parse_pidfile(b"1"), Ok(1));
        assert_eq!(parse_pidfile(b" \t4194304\r\n\n"), Ok(4_194_304));
    }

    #[test]
    fn pidfile_empty() {
        assert_eq!(parse_pidfile(b""), Err(PidfileError::Empty));
        assert_eq!(parse_pidfile(b" \n\t"), Err(PidfileError::Empty));
    }

    #[test]
    fn pidfile_garbage() {
        let garbage = |s: &str| Err(PidfileError::Garbage(s.into()));
        assert_eq!(parse_pidfile(b"0\n"), garbage("0\\n"));
        assert_eq!(parse_pidfile(b"-1"), garbage("-1"));
        assert_eq!(parse_pidfile(b"+12"), garbage("+12"));
        assert_eq!(parse_pidfile(b"012"), garbage("012"));
        assert_eq!(parse_pidfile(b"4194305"), garbage("4194305"));
        assert_eq!(parse_pidfile(b"99999999999999999999999"), garbage("99999999999999999999999"));
        assert_eq!(parse_pidfile(b"12 34\n"), garbage("12 34\\n"));
        assert_eq!(parse_pidfile(b"12\x00"), garbage("12\\x00"));
        assert_eq!(parse_pidfile(b"0x10"), garbage("0x10"));
        assert_eq!(parse_pidfile(b"\xef\xbc\x91"), garbage("\\xef\\xbc\\x91"));
        let long = [&b"1"[..], &[b' '; 64]].concat();
        assert_eq!(parse_pidfile(&long), garbage(&format!("1{}...", " ".repeat(39))));
        let exactly_64 = [&b"1"[..], &[b' '; 63]].concat();
        assert_eq!(parse_pidfile(&exactly_64), Ok(1));
    }

    #[test]
    fn pidfile_error_display() {
        assert_eq!(PidfileError::Empty.to_string(), "the pidfile is empty");
        assert_eq!(
            PidfileError::Garbage("x\\n".into()).to_string(),
            "the pidfile does not hold one decimal pid from 1 to 4194304: \"x\\n\""
        );
    }

    #[test]
    fn pidfile_every_prefix_returns() {
        let sample = b"  4242\n";
        for len in 0..=sample.len() {
            let expected = match len {
                0..=2 => Err(PidfileError::Empty),
                3 => Ok(4),
                4 => Ok(42),
                5 => Ok(424),
                _ => Ok(4242),
            };
            assert_eq!(parse_pidfile(&sample[..len]), expected, "{len}");
        }
    }
}
