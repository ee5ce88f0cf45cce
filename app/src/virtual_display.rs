//! `--virtual WxH`: a private Xvfb display (with a live test picture) for machines
//! without a screen.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub struct VirtualDisplay {
    pub name: String,
    child: Child,
}

/// Parses `WxH`, e.g. `1920x1080`.
pub fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, e.g. 1920x1080, not {text:?}"))?;
    let parse = |s: &str| s.trim().parse::<u32>().map_err(|e| format!("{s:?}: {e}"));
    let (w, h) = (parse(w)?, parse(h)?);
    if !(16..=7680).contains(&w) || !(16..=4320).contains(&h) {
        return Err(format!("{w}x{h} is out of range (16x16 to 7680x4320)"));
    }
    Ok((w, h))
}

fn display_free(n: u32) -> bool {
    !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
        && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
}

impl VirtualDisplay {
    pub fn start(width: u32, height: u32) -> anyhow::Result<Self> {
        let n = (50..200)
            .find(|&n| display_free(n))
            .context("no free X display number between :50 and :199")?;
        let name = format!(":{n}");
        let child = Command::new("Xvfb")
            .args([
                &name,
                "-screen",
                "0",
                &format!("{width}x{height}x24"),
                "-nolisten",
                "tcp",
                // Without it Xvfb resets when its last client leaves, dropping our capture.
                "-noreset",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start Xvfb (install it: scripts/install-deps.sh build)")?;
        let mut display = Self { name, child };
        let socket = format!("/tmp/.X11-unix/X{n}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&socket).exists() {
            if let Some(status) = display.child.try_wait()? {
                bail!("Xvfb {} exited at start ({status})", display.name);
            }
            if Instant::now() > deadline {
                bail!("Xvfb {} did not start within 10 s", display.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let name = display.name.clone();
        tracing::info!(%name, width, height, "started a virtual display");
        Ok(display)
    }
}

impl Drop for VirtualDisplay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1920x1080"), Ok((1920, 1080)));
        assert_eq!(parse_size("640X480"), Ok((640, 480)));
        assert!(parse_size("1920").is_err());
        assert!(parse_size("0x0").is_err());
        assert!(parse_size("axb").is_err());
    }
}
