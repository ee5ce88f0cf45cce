//! `porthole`: share a screen over WebRTC. This binary only wires `media` to `net`.

mod bench;
mod gui;
mod host;
mod record;
mod secrets;
mod share;
mod test_pattern;
mod virtual_display;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "porthole",
    version,
    about = "Share a screen and its sound over WebRTC"
)]
struct Cli {
    /// More logging (-v: debug, -vv: trace). PORTHOLE_LOG=<filter> overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// With no command: open the app and start sharing at once (remembered settings).
    #[arg(long)]
    share: bool,
    /// With no command: where the app's shares listen (default 0.0.0.0:7380).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Share this screen: prints `viewer: <url>` when ready; stop with Ctrl+C.
    /// (With no command, `porthole` opens the desktop app.)
    Share(Box<share::ShareArgs>),
    /// Watch a share in a window: `porthole view 'http://host:7380/#code=CODE'`.
    View {
        /// The link the sharing side shows (or host:port).
        url: String,
        /// The access code, if the link does not carry it (visible in the process list:
        /// prefer $PORTHOLE_CODE or --code-file).
        #[arg(long)]
        code: Option<String>,
        /// Read the access code from the first line of this file (`-`: standard input).
        #[arg(long, value_name = "PATH")]
        code_file: Option<std::path::PathBuf>,
        /// Record what arrives to this file (fragmented MP4) from the first keyframe.
        #[arg(long)]
        record: Option<std::path::PathBuf>,
    },
    /// Record a share to a file (fragmented MP4, H.264 + Opus, no re-encoding).
    Record(record::RecordArgs),
    /// List the Portholes sharing on this network (mDNS).
    List {
        /// How long to listen, in seconds.
        #[arg(long, default_value_t = 3.0)]
        timeout: f64,
        /// Print JSON (an array of objects) instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Measure what each stage of the video path costs here (prints figures).
    Bench(bench::BenchArgs),
    /// Save a PNG of an X display (for tests and bug reports).
    #[command(hide = true)]
    Screenshot {
        /// X display, e.g. :99 (default: $DISPLAY).
        #[arg(long)]
        display: Option<String>,
        /// Where to write the PNG.
        file: std::path::PathBuf,
    },
    /// Paint a live test picture on an X display (for tests and demos).
    #[command(hide = true)]
    TestPattern(test_pattern::PatternArgs),
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info,webrtc=warn,rtc=warn",
        1 => "debug,webrtc=info,rtc=info",
        _ => "trace",
    };
    let filter = std::env::var("PORTHOLE_LOG").unwrap_or_else(|_| default.to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn list(timeout: f64, json: bool) -> anyhow::Result<()> {
    let found = net::discovery::list(std::time::Duration::from_secs_f64(timeout.max(0.1)))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    for s in &found {
        let address = match s.best_address() {
            Some(std::net::IpAddr::V6(a)) => format!("[{a}]"),
            Some(a) => a.to_string(),
            None => s.host.clone(),
        };
        println!("{}\t{}:{}\t{}", s.name, address, s.port, s.flags());
    }
    if found.is_empty() {
        eprintln!("no Portholes found (listened {timeout} s)");
    }
    Ok(())
}

fn screenshot(display: Option<String>, file: &std::path::Path) -> anyhow::Result<()> {
    if let Some(d) = display {
        std::env::set_var("DISPLAY", d);
    }
    let mut cap = media::capture::ScreenCapturer::open(0)?;
    let (w, h) = (cap.width(), cap.height());
    let rgba = cap.grab(|bgrx| {
        bgrx.chunks_exact(4)
            .flat_map(|p| [p[2], p[1], p[0], 255])
            .collect::<Vec<u8>>()
    })?;
    let png = media::clipboard::rgba_to_png(w as u32, h as u32, &rgba)
        .map_err(|e| anyhow::anyhow!("cannot encode PNG: {e}"))?;
    std::fs::write(file, png)?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Some(Command::Share(args)) => share::run(*args),
        Some(Command::TestPattern(args)) => test_pattern::run(args),
        Some(Command::View {
            url,
            code,
            code_file,
            record,
        }) => secrets::code(code.as_deref(), code_file.as_deref())
            .inspect(|_| secrets::warn_if_link_has_code(&url))
            .and_then(|code| gui::run(gui::Start::View { url, code, record }, None)),
        Some(Command::Screenshot { display, file }) => screenshot(display, &file),
        Some(Command::List { timeout, json }) => list(timeout, json),
        Some(Command::Record(args)) => record::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        None if cli.share => gui::run(gui::Start::Share, cli.listen),
        None => gui::run(gui::Start::Home, cli.listen),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("porthole: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
