//! Load: hundreds of deliveries at once, into one container and spread over
//! many, through the real binary run the way Exim runs it. Every message
//! must arrive byte for byte inside its container (the probe hashes its
//! stdin), and afterwards nothing may be left: no zombie children of this
//! process, no descriptor more than before, no process in any container but
//! its init. The figures are printed (`cargo test --test it load:: --
//! --nocapture`). Both tests count this process's descriptors and
//! children, so each runs alone (`rig::need_alone`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use crate::rig::syslog::Collector;
use crate::rig::{self, Cage, ConfigDir, Delivery, Need::Root, Syslog};

const DELIVERIES: usize = 500;
const CONTAINERS: usize = 50;

/// One user's cage (its pidfile where the shared configuration looks), and
/// what a report from inside it must say.
struct Target {
    cage: Cage,
    /// What a report from inside it must say.
    inside: rig::Inside,
}

/// A cage for each of the test accounts `cptest-PREFIXnn`, all started at
/// once, their pidfiles in `piddir`.
fn start_targets(prefix: &str, count: usize, piddir: &std::path::Path) -> Vec<Target> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|i| {
                scope.spawn(move || {
                    let cage = rig::cage(&format!("{prefix}{i:02}")).piddir(piddir).start();
                    let inside = rig::Inside::of(cage.container(), cage.user.uid, cage.user.gid);
                    Target { cage, inside }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a container starts")).collect()
    })
}

/// Stop them all at once.
fn stop_targets(targets: &mut [Target]) {
    std::thread::scope(|scope| {
        for t in targets.iter_mut() {
            scope.spawn(move || t.cage.container_mut().stop().unwrap_or_else(|e| panic!("{e}")));
        }
    });
}

/// Room for every delivery's pipes at once (three descriptors each here).
fn raise_fd_limit(want: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want.max(soft), want.max(hard)).unwrap();
    }
}

fn open_fd_count() -> usize {
    // The directory's own descriptor is listed too; it is the same each time.
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Children of this process, as (pid, state letter).
fn children() -> Vec<(i32, char)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
        let f: Vec<&str> = rest.split(' ').collect();
        if f.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(me) {
            out.push((pid, f[0].chars().next().unwrap_or('?')));
        }
    }
    out
}

/// A message of its own for delivery `i`: 1 to 16 KiB, no two alike.
fn message(i: usize) -> Vec<u8> {
    let len = 1024 + (i * 7919) % (15 * 1024);
    let mut m = format!("From sender@example.org Mon Jan  1 00:00:00 2024\nSubject: load {i}\n\n").into_bytes();
    m.extend((0..len).map(|j| b"abcdefghijklmnopqrstuvwxyz0123456789 \n"[(i * 31 + j * 17) % 38]));
    m
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Start all `DELIVERIES` at once, spread round-robin over `targets`, then
/// check each one and everything left behind, and print the figures.
fn deliver_all_at_once(name: &str, targets: &[Target], config: &ConfigDir, syslog: Collector) {
    let fds_before = open_fd_count();
    let in_flight = AtomicUsize::new(0);
    let peak_in_flight = AtomicUsize::new(0);
    let peak_inside = AtomicUsize::new(0);
    let sampling = AtomicBool::new(true);
    let start = Barrier::new(DELIVERIES + 1);
    let results: Mutex<Vec<(usize, Delivery, Duration)>> = Mutex::new(Vec::with_capacity(DELIVERIES));
    let v2_dirs: Vec<PathBuf> = targets
        .iter()
        .map(|t| {
            let dirs = t.cage.container().cgroup_dirs();
            dirs.into_iter().find(|d| d.join("cgroup.type").exists()).expect("a v2 cgroup")
        })
        .collect();
    let mut wall = Duration::ZERO;
    std::thread::scope(|scope| {
        // How many commands run inside at once: the containers' cgroup v2
        // members but each one's init and launcher.
        scope.spawn(|| {
            while sampling.load(Ordering::SeqCst) {
                let n: usize = v2_dirs
                    .iter()
                    .map(|d| {
                        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                        procs.lines().count().saturating_sub(2)
                    })
                    .sum();
                peak_inside.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        for i in 0..DELIVERIES {
            let (start, results, in_flight, peak_in_flight) = (&start, &results, &in_flight, &peak_in_flight);
            let t = &targets[i % targets.len()];
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn_scoped(scope, move || {
                    let args = rig::probe("report --stdin-hash");
                    let m = message(i);
                    start.wait();
                    let began = Instant::now();
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak_in_flight.fetch_max(now, Ordering::SeqCst);
                    let d = t.cage.deliver_with(config, &args, &m);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    results.lock().unwrap().push((i, d, began.elapsed()));
                })
                .expect("a thread per delivery");
        }
        start.wait();
        let began = Instant::now();
        while results.lock().unwrap().len() < DELIVERIES {
            std::thread::sleep(Duration::from_millis(5));
        }
        wall = began.elapsed();
        sampling.store(false, Ordering::SeqCst);
    });
    // Before the syslog socket (open since before the count) is closed.
    let fds_after = open_fd_count();
    let audit = syslog.finish();

    // Every message arrived whole, inside its own container.
    let results = results.into_inner().unwrap();
    let mut failures = Vec::new();
    for (i, d, _) in &results {
        let t = &targets[i % targets.len()];
        if d.code() != Some(0) {
            failures.push(format!("delivery {i}: {d:?}"));
            continue;
        }
        let r = rig::parse_report(&d.stdout);
        let m = message(*i);
        let mut differ = t.inside.differences(&r);
        for (key, want) in [("stdin_len", m.len().to_string()), ("stdin_fnv64", rig::fnv64(&m))] {
            if r.get(key) != Some(&want) {
                differ.push(format!("{key} is {:?}, not {want:?}", r.get(key)));
            }
        }
        if !differ.is_empty() || !d.stderr.is_empty() {
            failures.push(format!("delivery {i}: {differ:?}, stderr {:?}", d.stderr));
        }
    }
    assert!(failures.is_empty(), "{} of {DELIVERIES} not delivered as sent:\n{}", failures.len(), failures.join("\n"));

    // One audit line each, all successes.
    let delivered: Vec<&String> = audit.iter().filter(|l| l.contains(" outcome=exited exit=0 ")).collect();
    assert_eq!(delivered.len(), DELIVERIES, "one audit line per delivery; got {} lines:\n{audit:#?}", audit.len());
    let mut own: Vec<Duration> = delivered
        .iter()
        .filter_map(|l| l.rsplit_once("duration_ms=")?.1.trim().parse::<f64>().ok())
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .collect();
    own.sort_unstable();

    // Nothing left behind, here or inside.
    let kids = children();
    assert!(kids.iter().all(|(_, state)| *state != 'Z'), "zombie children of the test process: {kids:?}");
    assert!(kids.is_empty(), "children of the test process left: {kids:?}");
    assert_eq!(fds_after, fds_before, "descriptors of the test process before and after");
    for t in targets {
        let c = t.cage.container();
        let left = c.leftovers();
        assert!(left.is_empty(), "left in {}:\n{}", c.name, rig::describe_pids(&left));
    }

    let mut latency: Vec<Duration> = results.iter().map(|(_, _, l)| *l).collect();
    latency.sort_unstable();
    println!(
        "{name}: {DELIVERIES} deliveries into {} container(s), all delivered and verified\n  \
         wall time {:.2} s, {:.0} deliveries/s\n  \
         per delivery (Exim's view: spawn to exit, including the test rig's unshare, mount, setpriv): \
         median {}, p95 {}, max {}\n  \
         cagepipe's own time (audit line duration_ms): median {}, p95 {}, max {}\n  \
         peak concurrent: {} deliveries in flight, {} commands running inside at once (sampled)",
        targets.len(),
        wall.as_secs_f64(),
        DELIVERIES as f64 / wall.as_secs_f64(),
        ms(percentile(&latency, 0.5)),
        ms(percentile(&latency, 0.95)),
        ms(*latency.last().unwrap()),
        ms(percentile(&own, 0.5)),
        ms(percentile(&own, 0.95)),
        ms(*own.last().unwrap()),
        peak_in_flight.load(Ordering::SeqCst),
        peak_inside.load(Ordering::SeqCst),
    );
}

#[test]
fn five_hundred_deliveries_at_once_into_one_container() {
    let Some(_test) = rig::need_alone(&[Root]) else { return };
    raise_fd_limit(4 * DELIVERIES as u64 + 256);
    let syslog = Syslog::new();
    let (config, piddir) = ConfigDir::with_pidfile_dir(&syslog.config());
    let mut targets = start_targets("loadone", 1, &piddir);
    deliver_all_at_once("one container", &targets, &config, syslog.collect());
    stop_targets(&mut targets);
}

#[test]
fn five_hundred_deliveries_at_once_over_fifty_containers() {
    let Some(_test) = rig::need_alone(&[Root]) else { return };
    raise_fd_limit(4 * DELIVERIES as u64 + 256);
    let syslog = Syslog::new();
    let (config, piddir) = ConfigDir::with_pidfile_dir(&syslog.config());
    // The accounts first: the figure is the containers' start.
    let _accounts: Vec<rig::User> = (0..CONTAINERS).map(|i| rig::test_user(&format!("cptest-load{i:02}"))).collect();
    let started = Instant::now();
    let mut targets = start_targets("load", CONTAINERS, &piddir);
    let start_time = started.elapsed();
    deliver_all_at_once("fifty containers", &targets, &config, syslog.collect());
    let stopping = Instant::now();
    stop_targets(&mut targets);
    println!(
        "  {CONTAINERS} containers started at once in {:.2} s, stopped at once in {:.2} s",
        start_time.as_secs_f64(),
        stopping.elapsed().as_secs_f64()
    );
}
