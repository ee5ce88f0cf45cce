//! `porthole share` on the command line: secrets, the display (`--display`, `--virtual`),
//! the runtime, approval on the terminal (`crate::console`), and waiting for the end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use net::AccessCode;

use super::{RunningShare, ShareArgs, ShareOptions};
use crate::console;
use crate::virtual_display::VirtualDisplay;

pub fn run(mut args: ShareArgs) -> anyhow::Result<()> {
    if args.list_audio {
        return list_audio();
    }
    check_port_free(args.listen)?;
    let code = match crate::secrets::code(args.code.as_deref(), args.code_file.as_deref())? {
        Some(text) => AccessCode::parse(&text).context("the access code")?,
        None => AccessCode::generate(),
    };
    args.code = None;
    let turn_password = crate::secrets::resolve(&crate::secrets::SecretSources {
        what: "TURN password",
        flag: (
            "--turn-password",
            Some(args.turn_password.as_str()).filter(|p| !p.is_empty()),
        ),
        file: ("--turn-password-file", args.turn_password_file.as_deref()),
        env: crate::secrets::TURN_PASSWORD_ENV,
    })?;
    let options = args.options(turn_password.as_deref().unwrap_or_default());
    args.turn_password.clear();

    // The display must be chosen before any thread starts: scrap reads $DISPLAY.
    let mut virtual_display = None;
    let pattern_stop = Arc::new(AtomicBool::new(false));
    let mut pattern_thread = None;
    if let Some((w, h)) = args.r#virtual {
        let vd = VirtualDisplay::start(w, h)?;
        std::env::set_var("DISPLAY", &vd.name);
        let mut painter = media::pattern::Painter::connect(Some(&vd.name))?;
        painter.paint()?;
        let stop = pattern_stop.clone();
        pattern_thread = Some(std::thread::spawn(move || {
            let (_tx, rx) = std::sync::mpsc::channel();
            if let Err(e) = crate::test_pattern::animate(&mut painter, rx, 3.0, 0, Some(&stop)) {
                tracing::warn!("test picture stopped: {e:#}");
            }
        }));
        virtual_display = Some(vd);
    } else if let Some(display) = &args.display {
        std::env::set_var("DISPLAY", display);
    } else if options.backend == super::options::Backend::Wayland {
        tracing::info!("sharing a Wayland desktop through its ScreenCast portal");
    } else if std::env::var_os("DISPLAY").is_none() {
        bail!(
            "no X display to share: $DISPLAY is not set.\n  \
             Share a running X server with --display :0, or start a private one with \
             --virtual 1920x1080 (needs Xvfb)."
        );
    }
    if options.backend == super::options::Backend::X11 {
        // An X display is shared: its clipboard is X11's (arboard would take a Wayland
        // session's first; on a Wayland desktop XWayland bridges the two).
        std::env::remove_var("WAYLAND_DISPLAY");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("porthole-net")
        .build()?;
    let result = runtime.block_on(serve(options, args.no_approval, code));
    pattern_stop.store(true, Ordering::Relaxed);
    if let Some(t) = pattern_thread {
        let _ = t.join();
    }
    drop(virtual_display);
    result
}

fn list_audio() -> anyhow::Result<()> {
    let devices = media::audio::list_devices()?;
    if devices.is_empty() {
        println!("no audio devices");
    }
    for d in devices {
        println!("{}\t{}", d.id, d.description);
    }
    Ok(())
}

/// Fails early, before anything is captured, when the port is taken (the server binds it
/// again for real later: this only moves the error to the start).
fn check_port_free(listen: SocketAddr) -> anyhow::Result<()> {
    if listen.port() == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind(listen) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "cannot listen on {listen}: the port is in use (another share?). Choose another \
             with --listen, e.g. --listen {}",
            SocketAddr::new(listen.ip(), listen.port().wrapping_add(1).max(1024))
        ),
        Err(e) => Err(e).with_context(|| format!("cannot listen on {listen}")),
    }
}

async fn serve(options: ShareOptions, no_approval: bool, code: AccessCode) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let terminal = std::io::stdin().is_terminal();
    let (knocks_tx, knocks) = tokio::sync::mpsc::channel(console::MAX_WAITING);
    let approve = match (no_approval, terminal) {
        (true, _) => None,
        (false, true) => Some(console::ask_on_terminal(knocks_tx)),
        (false, false) => {
            tracing::warn!(
                "no terminal to approve viewers on (stdin is not a TTY): every viewer will be \
                 refused; pass --no-approval to admit everyone with the code"
            );
            Some(console::refuse_all())
        }
    };
    let share = RunningShare::start(&options, code, approve).await?;
    tracing::info!(fingerprint = %share.fingerprint, "DTLS certificate");
    println!("viewer: {}", share.url);
    use std::io::Write;
    std::io::stdout().flush()?;
    if terminal {
        eprintln!("{}", console::HELP);
    }
    let outcome = wait_for_end(&share, console::Console::new(knocks)).await;
    share.stop().await;
    outcome
}

/// Waits for Ctrl+C / SIGTERM, or for the pipeline to die; meanwhile asks the host about
/// viewers and runs its commands (typed on stdin).
async fn wait_for_end(share: &RunningShare, mut console: console::Console) -> anyhow::Result<()> {
    let mut stop = crate::stop_signal::StopSignal::new()?;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let mut lines = console::stdin_lines();
    let mut requests = share.server.control_requests();
    let (mut lines_open, mut knocks_open) = (true, true);
    loop {
        tokio::select! {
            _ = stop.recv() => return Ok(()),
            _ = check.tick() => {
                if !share.is_running() {
                    bail!("screen capture stopped (see the error above)");
                }
                console.expire();
            }
            knock = console.knocks.recv(), if knocks_open => match knock {
                Some(knock) => console.knock(knock),
                None => knocks_open = false,
            },
            line = lines.recv(), if lines_open => match line {
                Some(line) => console.line(&line, &share.server).await,
                None => lines_open = false,
            },
            Ok(no) = requests.recv() => console.asks_control(no),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_port_free;
    use std::net::SocketAddr;

    #[test]
    fn a_port_in_use_is_refused_before_anything_starts() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = check_port_free(addr).unwrap_err().to_string();
        assert!(e.contains("in use") && e.contains("--listen"), "{e}");
        drop(taken);
        assert!(check_port_free(addr).is_ok());
        assert!(check_port_free(SocketAddr::from(([127, 0, 0, 1], 0))).is_ok());
    }
}
