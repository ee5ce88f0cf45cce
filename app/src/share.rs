//! `porthole share`: capture → encode → fan out to viewers over WebRTC.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use media::encoder::EncoderSettings;
use media::pipeline::{KeyframeRequest, PipelineConfig, VideoPipeline};
use net::{AccessCode, IceConfig, IceServer, ShareConfig, ShareServer, VideoFanout, VideoSample};

use crate::host::{watch_cursor, DesktopHost};
use crate::virtual_display::{parse_size, VirtualDisplay};

#[derive(clap::Args, Debug, Clone)]
pub struct ShareArgs {
    /// X display to share, e.g. :0 (default: $DISPLAY).
    #[arg(long)]
    pub display: Option<String>,
    /// Monitor of that display to share (0 = first; see RandR).
    #[arg(long, default_value_t = 0)]
    pub monitor: usize,
    /// Address and port to serve viewers on.
    #[arg(long, default_value = "0.0.0.0:7380")]
    pub listen: SocketAddr,
    /// Access code viewers must give (default: a fresh random one). Visible to other
    /// local users in the process list: prefer $PORTHOLE_CODE or --code-file.
    #[arg(long)]
    pub code: Option<String>,
    /// Read the access code from the first line of this file (`-`: standard input).
    #[arg(long, value_name = "PATH")]
    pub code_file: Option<std::path::PathBuf>,
    /// Frames per second to capture at most.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=120))]
    pub fps: u32,
    /// Video bit rate, kbit/s. Held: when busy content (scrolling, video) would need more,
    /// the frame rate drops instead.
    #[arg(long, default_value_t = 8000, value_parser = clap::value_parser!(u32).range(100..=100_000))]
    pub bitrate_kbps: u32,
    /// Start a private virtual display of this size (e.g. 1920x1080) with a live test
    /// picture, and share it: for machines without a screen.
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub r#virtual: Option<(u32, u32)>,
    /// STUN server for viewers behind NAT, e.g. stun:stun.example.org:3478 (repeatable).
    #[arg(long)]
    pub stun: Vec<String>,
    /// TURN server, e.g. turn:turn.example.org:3478?transport=udp (repeatable).
    #[arg(long)]
    pub turn: Vec<String>,
    /// TURN user name.
    #[arg(long, default_value = "")]
    pub turn_user: String,
    /// TURN password (visible in the process list: prefer $PORTHOLE_TURN_PASSWORD or
    /// --turn-password-file).
    #[arg(long, default_value = "")]
    pub turn_password: String,
    /// Read the TURN password from the first line of this file (`-`: standard input).
    #[arg(long, value_name = "PATH")]
    pub turn_password_file: Option<std::path::PathBuf>,
    /// Most viewers at once.
    #[arg(long, default_value_t = 16)]
    pub max_viewers: usize,
    /// Let viewers control this screen (mouse, wheel, keyboard).
    #[arg(long)]
    pub allow_control: bool,
    /// Share the clipboard with viewers, both ways.
    #[arg(long)]
    pub allow_clipboard: bool,
    /// Sound to share: `default` (what this machine plays: the monitor of the default
    /// output), `none`, or a device by name (see --list-audio).
    #[arg(long, default_value = "default")]
    pub audio: String,
    /// List the audio devices that can be shared, and exit.
    #[arg(long)]
    pub list_audio: bool,
    /// Do not announce this share on the LAN (mDNS).
    #[arg(long)]
    pub no_announce: bool,
    /// Name to announce on the LAN (default: this machine's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Largest clipboard content accepted from a viewer, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub clipboard_max_bytes: u32,
}

impl ShareArgs {
    /// Share options from command-line flags (e.g. `["--allow-control"]`), defaults for the rest.
    pub fn from_flags(flags: &[&str]) -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: ShareArgs,
        }
        use clap::Parser;
        Wrapper::try_parse_from(std::iter::once("share").chain(flags.iter().copied()))
            .map(|w| w.args)
    }
}

fn ice_config(args: &ShareArgs) -> IceConfig {
    let ip = args.listen.ip();
    let udp_addrs = if ip.is_loopback() {
        vec![format!("{ip}:0")]
    } else if ip.is_unspecified() {
        // The wildcard expands to every non-loopback interface; loopback is added for
        // viewers on this machine. Listening on `::` (IPv6 viewers too), IPv6 interfaces as
        // well, when there is a routable IPv6 address (webrtc-rs skips link-local ones).
        let mut addrs = vec!["0.0.0.0:0".to_owned()];
        if ip.is_ipv6() && net::lan_addresses().iter().any(IpAddr::is_ipv6) {
            addrs.push("[::]:0".to_owned());
        }
        addrs.push("127.0.0.1:0".to_owned());
        addrs
    } else {
        vec![SocketAddr::new(ip, 0).to_string()]
    };
    let mut servers: Vec<IceServer> = args
        .stun
        .iter()
        .map(|url| IceServer {
            url: url.clone(),
            username: String::new(),
            credential: String::new(),
        })
        .collect();
    servers.extend(args.turn.iter().map(|url| IceServer {
        url: url.clone(),
        username: args.turn_user.clone(),
        credential: args.turn_password.clone(),
    }));
    IceConfig { servers, udp_addrs }
}

/// The host part of the URL to show: the listen address, or a LAN address for a wildcard.
fn url_host(listen: SocketAddr) -> String {
    pick_url_host(listen.ip(), &net::lan_addresses()).to_string()
}

/// For a wildcard, a LAN address the socket accepts on: IPv4 first; IPv6 too when listening
/// on `::` (dual stack), e.g. on an IPv6-only LAN; loopback when there is none.
fn pick_url_host(listen: IpAddr, lan: &[IpAddr]) -> IpAddr {
    if !listen.is_unspecified() {
        return listen;
    }
    let v6_too = listen.is_ipv6();
    lan.iter()
        .copied()
        .find(IpAddr::is_ipv4)
        .or_else(|| lan.iter().copied().find(|ip| v6_too && ip.is_ipv6()))
        .unwrap_or(if v6_too {
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        })
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

/// Starts audio capture, or says why there is none (never fatal).
fn start_audio(choice: &str, fanout: &Arc<VideoFanout>) -> Option<media::audio::AudioPipeline> {
    let source = match choice {
        "none" => return None,
        "default" => media::audio::AudioSource::Default,
        name => media::audio::AudioSource::Named(name.to_owned()),
    };
    let fanout = fanout.clone();
    match media::audio::AudioPipeline::start(source, move |packet| {
        fanout.publish(VideoSample {
            data: packet.data,
            capture_time: packet.capture_time,
            keyframe: true,
        })
    }) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!("no audio: {e}; sharing video only (use --audio none to silence this)");
            None
        }
    }
}

pub fn run(mut args: ShareArgs) -> anyhow::Result<()> {
    if args.list_audio {
        return list_audio();
    }
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
    args.turn_password = turn_password.unwrap_or_default();

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
    } else if std::env::var_os("DISPLAY").is_none() {
        bail!(
            "no X display to share: $DISPLAY is not set.\n  \
             Share a running X server with --display :0, or start a private one with \
             --virtual 1920x1080 (needs Xvfb)."
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("porthole-net")
        .build()?;
    let result = runtime.block_on(serve(args, code));
    pattern_stop.store(true, Ordering::Relaxed);
    if let Some(t) = pattern_thread {
        let _ = t.join();
    }
    drop(virtual_display);
    result
}

/// A share running in this process: capture, encoders, host I/O and the server.
/// Used by `porthole share` and by the GUI.
pub struct RunningShare {
    pub server: ShareServer,
    pub url: String,
    pub code: AccessCode,
    pub size: (u32, u32),
    pub has_audio: bool,
    /// The share's DTLS fingerprint (SHA-256).
    pub fingerprint: String,
    announcer: Option<net::discovery::Announcer>,
    audio: Option<media::audio::AudioPipeline>,
    pipeline: VideoPipeline,
    _cursor: Option<media::cursor::CursorWatcher>,
}

impl RunningShare {
    /// Starts sharing the display in `$DISPLAY` (call inside a tokio runtime).
    pub async fn start(
        args: &ShareArgs,
        code: AccessCode,
        approve: Option<net::Approver>,
    ) -> anyhow::Result<Self> {
        let epoch = Instant::now();
        let identity = net::peer::ShareIdentity::generate()?;
        let keyframe = KeyframeRequest::default();
        let fanout = {
            let keyframe = keyframe.clone();
            VideoFanout::new(epoch, Arc::new(move || keyframe.request()))
        };
        let pipeline = {
            let fanout = fanout.clone();
            let config = PipelineConfig {
                monitor: args.monitor,
                encoder: EncoderSettings {
                    fps: args.fps,
                    bitrate_kbps: args.bitrate_kbps,
                },
                ..Default::default()
            };
            VideoPipeline::start(config, keyframe, move |frame| {
                fanout.publish(VideoSample {
                    data: frame.data,
                    capture_time: frame.capture_time,
                    keyframe: frame.keyframe,
                })
            })?
        };
        let (width, height) = pipeline.size();
        let stats = pipeline.stats().clone();

        let monitor = media::capture::monitor_rect(None, args.monitor)?;
        let events = net::HostEvents::new();
        let host = Arc::new(DesktopHost::open(monitor, &events));
        let cursor = watch_cursor(monitor, events.clone());
        let injector_host = host.clone();
        let media_stats: net::MediaStats = Arc::new(move || {
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            vec![
                ("encoders_started", get(&stats.encoders_started)),
                ("frames_captured", get(&stats.frames_captured)),
                ("frames_unchanged", get(&stats.frames_unchanged)),
                ("frames_dropped", get(&stats.frames_dropped)),
                ("frames_paced", get(&stats.frames_paced)),
                ("frames_encoded", get(&stats.frames_encoded)),
                ("keyframes", get(&stats.keyframes)),
                ("bytes_encoded", get(&stats.bytes_encoded)),
                (
                    "input_injected",
                    injector_host.injector.as_ref().map_or(0, |i| i.injected()),
                ),
            ]
        });

        let audio_fanout = VideoFanout::audio(epoch);
        let audio = start_audio(&args.audio, &audio_fanout);
        let audio_stats = audio.as_ref().map(|a| a.stats().clone());
        let media_stats: net::MediaStats = {
            let video_stats = media_stats;
            Arc::new(move || {
                let mut all = video_stats();
                if let Some(a) = &audio_stats {
                    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
                    all.extend([
                        ("audio_frames_captured", get(&a.frames_captured)),
                        ("audio_frames_sent", get(&a.frames_sent)),
                        ("audio_frames_silent", get(&a.frames_silent)),
                        ("audio_overruns", get(&a.overruns)),
                        ("audio_reopens", get(&a.reopens)),
                    ]);
                }
                all
            })
        };
        let server = ShareServer::start(
            ShareConfig {
                listen: args.listen,
                code: code.clone(),
                ice: ice_config(args),
                max_viewers: args.max_viewers,
                media_stats,
                host,
                events,
                default_rights: net::Rights {
                    control: args.allow_control,
                    clipboard: args.allow_clipboard,
                },
                clipboard_max: args.clipboard_max_bytes,
                approve: approve.clone(),
                identity: Some(identity.clone()),
            },
            fanout,
            audio.as_ref().map(|_| audio_fanout),
        )
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = server.local_addr();
        tracing::info!(width, height, "sharing the screen");
        let url = net::viewer_url(&url_host(addr), addr.port(), &code);
        let announcer = if args.no_announce {
            None
        } else if args.listen.ip().is_loopback() {
            // Nobody on the LAN could connect: announcing would only mislead.
            tracing::warn!("listening on loopback only (no network): not announced on the LAN");
            None
        } else {
            let announcement = net::discovery::ShareAnnouncement {
                name: args
                    .name
                    .clone()
                    .unwrap_or_else(net::discovery::default_name),
                port: addr.port(),
                audio: audio.is_some(),
                control: args.allow_control,
                fingerprint: identity.short_fingerprint(),
            };
            match net::discovery::Announcer::start(&announcement) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!("not announced on the LAN: {e}");
                    None
                }
            }
        };
        Ok(Self {
            fingerprint: identity.fingerprint.clone(),
            announcer,
            server,
            url,
            code,
            size: (width, height),
            has_audio: audio.is_some(),
            audio,
            pipeline,
            _cursor: cursor,
        })
    }

    /// Whether capture still runs.
    pub fn is_running(&self) -> bool {
        self.pipeline.is_running()
    }

    /// Stops serving and capturing.
    pub async fn stop(self) {
        tracing::info!("stopping the share");
        // Goodbye first, so browsers drop the entry at once.
        drop(self.announcer);
        self.server.shutdown().await;
        drop(self.audio);
        drop(self.pipeline);
    }
}

async fn serve(args: ShareArgs, code: AccessCode) -> anyhow::Result<()> {
    let share = RunningShare::start(&args, code, None).await?;
    tracing::info!(fingerprint = %share.fingerprint, "DTLS certificate");
    println!("viewer: {}", share.url);
    use std::io::Write;
    std::io::stdout().flush()?;
    let outcome = wait_for_end(&share).await;
    share.stop().await;
    outcome
}

/// Waits for Ctrl+C / SIGTERM, or for the pipeline to die.
async fn wait_for_end(share: &RunningShare) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = check.tick() => {
                if !share.is_running() {
                    bail!("screen capture stopped (see the error above)");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pick_url_host;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_url_shows_an_address_the_listener_accepts_on() {
        let both = [ip("10.0.0.5"), ip("2001:db8::5")];
        let v6_only = [ip("2001:db8::5")];
        assert_eq!(pick_url_host(ip("192.168.1.2"), &both), ip("192.168.1.2"));
        assert_eq!(pick_url_host(ip("0.0.0.0"), &both), ip("10.0.0.5"));
        assert_eq!(pick_url_host(ip("::"), &both), ip("10.0.0.5"));
        assert_eq!(pick_url_host(ip("::"), &v6_only), ip("2001:db8::5"));
        // An IPv4 wildcard cannot be reached over IPv6.
        assert_eq!(pick_url_host(ip("0.0.0.0"), &v6_only), ip("127.0.0.1"));
        assert_eq!(pick_url_host(ip("::"), &[]), ip("::1"));
    }
}
