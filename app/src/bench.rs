//! `porthole bench`: per-stage costs of the video path (and Opus) on this machine, on a
//! private Xvfb display by default. Prints figures; asserts nothing. See `media::bench`.

use std::time::Duration;

use crate::virtual_display::{parse_size, VirtualDisplay};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Size of the private display the benchmark draws on and captures.
    #[arg(long = "virtual", value_name = "WxH", default_value = "1920x1080", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Use this X display instead (its root window gets painted over; windows on top
    /// show up in the capture).
    #[arg(long, conflicts_with = "size")]
    pub display: Option<String>,
    /// Monitor of the display to capture.
    #[arg(long, default_value_t = 0)]
    pub monitor: usize,
    /// Seconds per scene (strip, static, busy).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Frame rate the scenes run at (the share's --fps).
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// H.264 target bit rate (the share's --bitrate-kbps).
    #[arg(long, default_value_t = 8000)]
    pub bitrate_kbps: u32,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    // Before any thread starts: scrap reads $DISPLAY.
    let _virtual_display = match &args.display {
        Some(d) => {
            std::env::set_var("DISPLAY", d);
            None
        }
        None => {
            let vd = VirtualDisplay::start(args.size.0, args.size.1)?;
            std::env::set_var("DISPLAY", &vd.name);
            Some(vd)
        }
    };
    let display = std::env::var("DISPLAY").ok();
    let config = media::bench::BenchConfig {
        display: display.clone(),
        monitor: args.monitor,
        encoder: media::encoder::EncoderSettings {
            fps: args.fps.clamp(1, 240),
            bitrate_kbps: args.bitrate_kbps.max(100),
        },
        scene_time: Duration::from_secs_f64(args.seconds.clamp(0.2, 600.0)),
        ..Default::default()
    };
    eprintln!(
        "porthole bench on {} ({} s per scene)...",
        display.as_deref().unwrap_or("?"),
        config.scene_time.as_secs_f64()
    );
    let report = media::bench::run(config)?;
    print!("{report}");
    Ok(())
}
