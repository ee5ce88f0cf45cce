//! `porthole`: share a screen over WebRTC. This binary only wires `media` to `net`.

mod bench;
mod clip;
mod config;
mod console;
mod generate;
mod gui;
mod host;
mod record;
mod recording;
mod secrets;
mod share;
mod stop_signal;
mod test_pattern;
mod virtual_display;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
        /// The name the host sees for this viewer (default: this computer's name).
        #[arg(long)]
        name: Option<String>,
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
    /// Write the man pages or the shell completions (for packaging).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

/// `--version`: the crate's, and the commit when the build was given one
/// (`PORTHOLE_GIT_COMMIT`, which packaging/build-deb.sh sets from the source it builds).
fn version() -> String {
    let crate_version = env!("CARGO_PKG_VERSION");
    match option_env!("PORTHOLE_GIT_COMMIT") {
        Some(commit) if !commit.is_empty() => format!("{crate_version} ({commit})"),
        _ => crate_version.to_owned(),
    }
}

/// The command line with its built-in defaults (the man pages and completions show these).
fn cli_command() -> clap::Command {
    Cli::command()
        .version(version())
        .long_about(
            "Share a screen and its sound over WebRTC, with any modern browser or another \
             Porthole.\n\n\
             With no command, porthole opens the desktop app: share this screen, connect to \
             another Porthole, or pick one from the nearby list. `porthole share` shares from \
             the command line and prints the link viewers open (`viewer: http://…/#code=…`); \
             `porthole view LINK` watches a share in a window, `porthole record LINK FILE` \
             records one, `porthole list` shows the shares on this network.",
        )
        .after_long_help(config::help_text())
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        // The WebRTC stack warns about what it recovers from itself (duplicate or late
        // packets, a candidate pair not there yet): dozens of lines per viewer that read as
        // failures. Its errors still show; what matters to a user is logged by Porthole.
        // enigo's X11 side logs an error when it is kept from connecting on purpose (a
        // Wayland share injects through Wayland only); a real failure to inject is
        // Porthole's own error.
        0 => {
            "info,webrtc=error,rtc=error,rtc_ice=error,rtc_dtls=error,rtc_srtp=error,\
              rtc_sctp=error,rtc_interceptor=error,enigo=error,enigo::platform::x11=off"
        }
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
        println!("{}\t{}:{}\t{}", s.name, s.host_in_url(), s.port, s.flags());
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
    // Defaults from the configuration file go in before parsing: command line > environment
    // > file > built-in.
    let cmd = match config::command_with_defaults(cli_command()) {
        Ok(cmd) => cmd,
        Err(e) => {
            eprintln!("porthole: configuration file {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let cli = Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit());
    init_logging(cli.verbose);
    let result = match cli.command {
        Some(Command::Share(args)) => share::run(*args),
        Some(Command::TestPattern(args)) => test_pattern::run(args),
        Some(Command::View {
            url,
            code,
            code_file,
            record,
            name,
        }) => secrets::code(code.as_deref(), code_file.as_deref())
            .inspect(|_| secrets::warn_if_link_has_code(&url))
            .and_then(|code| {
                gui::run(
                    gui::Start::View {
                        url,
                        code,
                        record,
                        name,
                    },
                    None,
                )
            }),
        Some(Command::Screenshot { display, file }) => screenshot(display, &file),
        Some(Command::List { timeout, json }) => list(timeout, json),
        Some(Command::Record(args)) => record::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Generate(args)) => generate::run(args, cli_command()),
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
