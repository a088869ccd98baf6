//! A datagram socket standing in for /dev/log (`[log] socket`), for the
//! audit lines deliveries write.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::scratch::fresh;

/// The syslog catcher: its socket is removed when it is dropped.
pub struct Syslog {
    pub path: PathBuf,
    socket: UnixDatagram,
}

impl Syslog {
    pub fn new() -> Syslog {
        let path = fresh("syslog").with_extension("sock");
        let socket = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        // Deliveries run as the user.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Syslog { path, socket }
    }

    /// The `[log]` section that sends audit lines here.
    pub fn config(&self) -> String {
        format!("[log]\nsocket = \"{}\"\n", self.path.display())
    }

    /// The next line; a test failure after 5 s without one.
    pub fn line(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a syslog line within 5 s");
        String::from_utf8(buf[..n].to_vec()).expect("a UTF-8 syslog line")
    }

    /// Keep reading in a thread (so senders never wait) until
    /// [`Collector::finish`].
    pub fn collect(self) -> Collector {
        self.socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let done = stop.clone();
        let lines = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut buf = vec![0u8; 4096];
            loop {
                match self.socket.recv(&mut buf) {
                    Ok(n) => lines.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(_) if done.load(Ordering::SeqCst) => return lines,
                    Err(_) => {}
                }
            }
        });
        Collector { stop, lines }
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A [`Syslog`] read by a thread of its own.
pub struct Collector {
    stop: Arc<AtomicBool>,
    lines: JoinHandle<Vec<String>>,
}

impl Collector {
    /// Every line received; the socket is closed and removed.
    pub fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.lines.join().expect("the syslog collector")
    }
}
