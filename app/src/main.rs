//! `porthole`: share a screen over WebRTC. This binary only wires `media` to `net`.

mod gui;
mod host;
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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Share this screen: prints `viewer: <url>` when ready; stop with Ctrl+C.
    /// (With no command, `porthole` opens the desktop app.)
    Share(Box<share::ShareArgs>),
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Some(Command::Share(args)) => share::run(*args),
        Some(Command::TestPattern(args)) => test_pattern::run(args),
        None => gui::run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("porthole: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
