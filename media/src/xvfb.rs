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

fn display_free(n: u32) -> bool {
    !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
        && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
}

impl Xvfb {
    /// Starts `width`×`height`×24 on the first free display number in `numbers`.
    pub fn start(
        width: u32,
        height: u32,
        numbers: std::ops::Range<u32>,
    ) -> Result<Self, XvfbError> {
        let (lo, hi) = (numbers.start, numbers.end);
        let n = numbers
            .into_iter()
            .find(|&n| display_free(n))
            .ok_or(XvfbError::NoFreeDisplay(lo, hi))?;
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
        while !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
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
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
