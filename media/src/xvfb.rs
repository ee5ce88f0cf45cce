//! A private X server (Xvfb) for machines without a screen and for tests.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum XvfbError {
    #[error("no free X display number between :{0} and :{1}")]
    NoFreeDisplay(u32, u32),
    #[error("cannot start Xvfb (install it: scripts/install-deps.sh build): {0}")]
    Spawn(std::io::Error),
    #[error("Xvfb {0} exited at start")]
    Exited(String),
    #[error("Xvfb {0} did not start within 10 s")]
    Timeout(String),
}

/// A running Xvfb; killed when dropped.
pub struct Xvfb {
    /// The display name, e.g. `:57`.
    pub name: String,
    child: Child,
}

fn socket_path(n: u32) -> String {
    format!("/tmp/.X11-unix/X{n}")
}

fn lock_path(n: u32) -> String {
    format!("/tmp/.X{n}-lock")
}

/// Whether display `n` can be taken. An X server that was killed outright leaves its lock
/// file and socket behind; like the X server itself, this treats a lock whose process is
/// gone as stale, and removes it and the socket (nothing answers on it), so leftovers of
/// crashed runs do not use up the display numbers.
fn display_free(n: u32) -> bool {
    let (socket, lock) = (socket_path(n), lock_path(n));
    let holder = match std::fs::read_to_string(&lock) {
        Ok(text) => text.trim().parse::<i32>().ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => return false,
    };
    if let Some(pid) = holder {
        if pid > 0 && Path::new(&format!("/proc/{pid}")).exists() {
            return false;
        }
    }
    if Path::new(&socket).exists() && std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return false; // a server without a lock file (or one we cannot read) answers here
    }
    for f in [&lock, &socket] {
        if let Err(e) = std::fs::remove_file(f) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return false;
            }
        }
    }
    true
}

impl Xvfb {
    /// Starts `width`×`height`×24 on the first free display number in `numbers`; when
    /// another server takes a number first, it goes on to the next.
    pub fn start(
        width: u32,
        height: u32,
        numbers: std::ops::Range<u32>,
    ) -> Result<Self, XvfbError> {
        let (lo, hi) = (numbers.start, numbers.end);
        let mut lost = None;
        for n in numbers {
            if !display_free(n) {
                continue;
            }
            match Self::start_on(n, width, height) {
                Err(XvfbError::Exited(name)) => lost = Some(XvfbError::Exited(name)),
                started => return started,
            }
        }
        Err(lost.unwrap_or(XvfbError::NoFreeDisplay(lo, hi)))
    }

    fn start_on(n: u32, width: u32, height: u32) -> Result<Self, XvfbError> {
        let name = format!(":{n}");
        let child = Command::new("Xvfb")
            .args([
                &name,
                "-screen",
                "0",
                &format!("{width}x{height}x24"),
                "-nolisten",
                "tcp",
                // Without it Xvfb resets when its last client leaves, dropping capture.
                "-noreset",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(XvfbError::Spawn)?;
        let mut x = Self { name, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&socket_path(n)).exists() {
            if matches!(x.child.try_wait(), Ok(Some(_))) {
                return Err(XvfbError::Exited(x.name.clone()));
            }
            if Instant::now() > deadline {
                return Err(XvfbError::Timeout(x.name.clone()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(x)
    }
}

impl Drop for Xvfb {
    /// SIGTERM first, so that Xvfb removes its lock file and socket; SIGKILL after 2 s.
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a SIGKILLed Xvfb leaves (a lock naming a dead process, and its socket) does not
    /// keep the display number from being used, and a stopped Xvfb cleans up after itself.
    #[test]
    fn stale_leftovers_are_taken_over_and_a_stop_cleans_up() {
        let n = 5000 + std::process::id() % 1000;
        let mut dead = Command::new("true").spawn().unwrap();
        dead.wait().unwrap();
        std::fs::create_dir_all("/tmp/.X11-unix").unwrap();
        std::fs::write(lock_path(n), format!("{:>10}\n", dead.id())).unwrap();
        std::fs::write(socket_path(n), b"").unwrap();
        let x = Xvfb::start(64, 64, n..n + 1).expect("Xvfb (scripts/install-deps.sh)");
        assert_eq!(x.name, format!(":{n}"));
        let pid = std::fs::read_to_string(lock_path(n)).unwrap();
        assert_eq!(pid.trim(), x.child.id().to_string());
        assert!(!display_free(n), "a running server's display is not free");
        drop(x);
        assert!(!Path::new(&lock_path(n)).exists());
        assert!(!Path::new(&socket_path(n)).exists());
    }
}
