//! `porthole share`: capture → encode → fan out to viewers over WebRTC.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use media::capture::{Monitor, SharedMonitor};
use media::encoder::EncoderSettings;
use media::pipeline::{EncoderControl, KeyframeRequest, PipelineConfig, VideoPipeline};
use net::cc::EncoderPolicy;
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
    /// Address and port to serve viewers on (ADDR:PORT; a bare PORT means every interface).
    #[arg(long, default_value = "0.0.0.0:7380", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Access code viewers must give (default: a fresh random one). Visible to other
    /// local users in the process list: prefer $PORTHOLE_CODE or --code-file.
    #[arg(long)]
    pub code: Option<String>,
    /// Read the access code from the first line of this file (`-`: standard input).
    #[arg(long, value_name = "PATH")]
    pub code_file: Option<std::path::PathBuf>,
    /// When the code stops admitting new viewers: `first-use` (after the first viewer is
    /// in), or a time after the start such as `10m`, `90s`, `2h`. Viewers already in stay;
    /// reconnecting needs a new code. Default: while the share runs.
    #[arg(long, value_name = "first-use|DURATION", value_parser = parse_code_ttl)]
    pub code_ttl: Option<net::access::CodeExpiry>,
    /// Also admit WHEP players that show the code as `Authorization: Bearer <code>`
    /// (OBS, GStreamer, ...): they cannot pair, so nothing ties their connection to the
    /// code; they watch only and are listed as unauthenticated. The code crosses the
    /// network in clear for them.
    #[arg(long)]
    pub allow_whep_token: bool,
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
    /// Admit every viewer with the code without asking. By default each viewer waits for a
    /// yes on this terminal; with no terminal (stdin not a TTY) viewers are refused unless
    /// this is given.
    #[arg(long = "no-approval", visible_alias = "yes")]
    pub no_approval: bool,
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

fn parse_code_ttl(text: &str) -> Result<net::access::CodeExpiry, String> {
    text.parse()
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

/// `--listen`: ADDR:PORT, or a bare PORT (every interface, as the default).
pub fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    value.parse().map_err(|_| {
        "not an address and port: give ADDR:PORT (e.g. 0.0.0.0:7380, 127.0.0.1:7380, \
         [::]:7380) or a bare port (7380)"
            .to_owned()
    })
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
    pub has_audio: bool,
    /// Which monitor is shared; viewers with control and the app switch it.
    pub monitors: MonitorSwitch,
    /// The share's DTLS fingerprint (SHA-256).
    pub fingerprint: String,
    announcer: Option<net::discovery::Announcer>,
    audio: Option<media::audio::AudioPipeline>,
    pipeline: VideoPipeline,
    steering: tokio::task::JoinHandle<()>,
    monitor_requests: tokio::task::JoinHandle<()>,
    _cursor: Option<media::cursor::CursorWatcher>,
}

/// How often the encoder's target follows the viewers' path estimates.
const STEER_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Congestion control's last step: every `STEER_INTERVAL`, the viewers' path estimates
/// become the one encoder's bit rate, frame rate and size (`net::cc::EncoderPolicy`).
/// The policy follows the picture's size (`size`), which changes with the monitor shared.
async fn steer_encoder(
    fanout: Arc<VideoFanout>,
    control: Arc<EncoderControl>,
    mut policy: EncoderPolicy,
    size: impl Fn() -> (u32, u32),
) {
    let mut tick = tokio::time::interval(STEER_INTERVAL);
    let mut last = policy.current();
    loop {
        tick.tick().await;
        let (width, height) = size();
        policy.set_size(width, height);
        let target = policy.update(Instant::now(), &fanout.path_estimates());
        control.set(target.kbps, target.fps, target.scale_div);
        if target != last {
            tracing::debug!(?target, "encoder target");
            last = target;
        }
    }
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
        let settings = EncoderSettings {
            fps: args.fps,
            bitrate_kbps: args.bitrate_kbps,
        };
        let control = EncoderControl::new(settings);
        let monitor_list = media::capture::monitors(None)?;
        let Some(first) = monitor_list.get(args.monitor) else {
            return Err(SwitchError::NoSuchMonitor {
                index: args.monitor,
                count: monitor_list.len(),
                listed: describe_monitors(&monitor_list),
            }
            .into());
        };
        let monitor = SharedMonitor::new(args.monitor, first.rect);
        tracing::info!("sharing monitor {}: {}", args.monitor, first.describe());
        let pipeline = {
            let fanout = fanout.clone();
            let config = PipelineConfig {
                monitor: args.monitor,
                follow: Some(monitor.clone()),
                encoder: settings,
                control: Some(control.clone()),
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
        let steering = tokio::spawn(steer_encoder(
            fanout.clone(),
            control.clone(),
            EncoderPolicy::new(args.bitrate_kbps, args.fps, width, height),
            pipeline.size_reader(),
        ));
        let video_fanout = fanout.clone();

        let events = net::HostEvents::new();
        let monitors = MonitorSwitch {
            shared: monitor.clone(),
            events: events.clone(),
        };
        monitors.announce(&monitor_list, args.monitor);
        let monitor_requests = tokio::spawn(follow_monitor_requests(monitors.clone()));
        let host = Arc::new(DesktopHost::open(monitor.clone(), &events));
        let cursor = watch_cursor(monitor, events.clone());
        let injector_host = host.clone();
        let media_stats: net::MediaStats = Arc::new(move || {
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            let (kbps, fps, scale_div) = control.get();
            let estimates = video_fanout.path_estimates();
            vec![
                ("target_kbps", u64::from(kbps)),
                ("target_fps", u64::from(fps)),
                ("target_scale_div", u64::from(scale_div)),
                (
                    "path_estimate_min_kbps",
                    estimates
                        .iter()
                        .copied()
                        .filter(|&e| e > 0)
                        .min()
                        .unwrap_or(0)
                        / 1000,
                ),
                ("units_over_budget", get(&video_fanout.units_over_budget)),
                ("packets_resent", get(&video_fanout.resends.resent)),
                ("resends_refused", get(&video_fanout.resends.refused)),
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
                (
                    "input_dropped",
                    injector_host.injector.as_ref().map_or(0, |i| i.refused()),
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
                allow_token: args.allow_whep_token,
                code_expiry: args.code_ttl,
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
            has_audio: audio.is_some(),
            monitors,
            audio,
            pipeline,
            steering,
            monitor_requests,
            _cursor: cursor,
        })
    }

    /// The picture's size now (even; it follows the monitor shared).
    pub fn size(&self) -> (u32, u32) {
        self.pipeline.size()
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
        self.steering.abort();
        self.monitor_requests.abort();
        drop(self.audio);
        drop(self.pipeline);
    }
}

/// "0: HDMI-1 (primary), 1920×1080 at 0,0; 1: …"
pub fn describe_monitors(list: &[Monitor]) -> String {
    list.iter()
        .enumerate()
        .map(|(i, m)| format!("{i}: {}", m.describe()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why the monitor shared was not switched.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    List(#[from] media::capture::CaptureError),
    #[error("there is no monitor {index} (this display has {count}: {listed})")]
    NoSuchMonitor {
        index: usize,
        count: usize,
        listed: String,
    },
}

/// Which monitor the share captures. Viewers with control ask for another one
/// (`SelectMonitor`), the app and the terminal pick one; the capture, input injection and
/// the cursor follow it, and every viewer is told (`Monitors`). One encoder serves every
/// viewer, so every viewer sees the monitor picked.
#[derive(Clone)]
pub struct MonitorSwitch {
    shared: SharedMonitor,
    events: net::HostEvents,
}

impl MonitorSwitch {
    /// The index of the monitor shared.
    pub fn current(&self) -> usize {
        self.shared.get().0
    }

    /// Shares monitor `index` of the display's monitors as they are now.
    pub fn select(&self, index: usize) -> Result<Monitor, SwitchError> {
        let list = media::capture::monitors(None)?;
        let Some(m) = list.get(index).cloned() else {
            return Err(SwitchError::NoSuchMonitor {
                index,
                count: list.len(),
                listed: describe_monitors(&list),
            });
        };
        self.shared.set(index, m.rect);
        self.announce(&list, index);
        Ok(m)
    }

    /// Tells every viewer the monitors and the one shared (the first 16 of them, names
    /// cut to 64 bytes: what the protocol carries).
    fn announce(&self, list: &[Monitor], current: usize) {
        let Ok(current) = u8::try_from(current) else {
            return;
        };
        if usize::from(current) >= net::protocol::MAX_MONITORS {
            tracing::info!("monitor {current} is past the 16 viewers can pick from");
            return;
        }
        let entries = monitor_entries(list);
        self.events.monitors(current, entries);
    }
}

/// The monitors as the protocol carries them: the first 16, names cut to 64 bytes.
pub fn monitor_entries(list: &[Monitor]) -> Vec<net::protocol::MonitorEntry> {
    list.iter()
        .take(net::protocol::MAX_MONITORS)
        .map(|m| net::protocol::MonitorEntry {
            name: cut_name(&m.name),
            x: m.rect.x,
            y: m.rect.y,
            width: m.rect.width.clamp(1, u32::from(u16::MAX)) as u16,
            height: m.rect.height.clamp(1, u32::from(u16::MAX)) as u16,
            primary: m.primary,
        })
        .collect()
}

/// `name` cut to at most 64 bytes at a character boundary, without NULs.
fn cut_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().filter(|&c| c != '\0') {
        if out.len() + c.len_utf8() > net::protocol::MAX_MONITOR_NAME {
            break;
        }
        out.push(c);
    }
    out
}

/// Switches the monitor when a viewer (with control: the gate checked) asks.
async fn follow_monitor_requests(monitors: MonitorSwitch) {
    let mut requests = monitors.events.monitor_requests();
    loop {
        match requests.recv().await {
            Ok((viewer, index)) => match monitors.select(usize::from(index)) {
                Ok(m) => tracing::info!(
                    viewer,
                    "viewer {viewer} switched the share to monitor {index}: {}",
                    m.describe()
                ),
                Err(e) => tracing::warn!(viewer, "monitor not switched: {e}"),
            },
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn serve(args: ShareArgs, code: AccessCode) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let terminal = std::io::stdin().is_terminal();
    let (knocks_tx, knocks) = tokio::sync::mpsc::channel(console::MAX_WAITING);
    let approve = match (args.no_approval, terminal) {
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
    let share = RunningShare::start(&args, code, approve).await?;
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
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let mut lines = console::stdin_lines();
    let mut requests = share.server.control_requests();
    let (mut lines_open, mut knocks_open) = (true, true);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
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

/// The terminal of `porthole share`: a yes/no for each viewer that knocks, and commands to
/// list viewers, change their rights and disconnect them.
mod console {
    use std::collections::VecDeque;
    use std::io::Write;

    use net::{Approver, PendingViewer, Rights, ShareServer};
    use tokio::sync::{mpsc, oneshot};

    /// Viewers waiting for an answer at once; more are refused (the share is being hammered).
    pub const MAX_WAITING: usize = 8;

    pub const HELP: &str = "commands: list | kick N | revoke N control|clipboard|all | \
                            grant N control|clipboard|all | help";

    pub type Knock = (PendingViewer, oneshot::Sender<Option<Rights>>);

    /// Asks on the terminal: each knock waits in the console's queue.
    pub fn ask_on_terminal(knocks: mpsc::Sender<Knock>) -> Approver {
        std::sync::Arc::new(move |viewer: PendingViewer| {
            let (tx, rx) = oneshot::channel();
            let (no, addr) = (viewer.no, viewer.addr);
            if knocks.try_send((viewer, tx)).is_err() {
                tracing::warn!(
                    viewer = no,
                    %addr,
                    "refused a viewer: {MAX_WAITING} viewers are already waiting for an answer"
                );
            }
            rx
        })
    }

    /// No terminal and no --no-approval: every viewer is refused, saying why.
    pub fn refuse_all() -> Approver {
        std::sync::Arc::new(|viewer: PendingViewer| {
            tracing::warn!(
                viewer = viewer.no,
                addr = %viewer.addr,
                "refused a viewer: nobody can approve it (stdin is not a terminal); \
                 start the share with --no-approval to admit everyone with the code"
            );
            oneshot::channel::<Option<Rights>>().1
        })
    }

    /// Lines typed on stdin (each cut to 256 characters), read on a thread of their own.
    pub fn stdin_lines() -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel(16);
        let spawned = std::thread::Builder::new()
            .name("porthole-stdin".into())
            .spawn(move || {
                for line in std::io::stdin().lines() {
                    let Ok(line) = line else { break };
                    let line: String = line.chars().take(256).collect();
                    if tx.blocking_send(line).is_err() {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot read commands from stdin: {e}");
        }
        rx
    }

    #[derive(Debug, PartialEq, Eq)]
    pub enum Command {
        List,
        Kick(u64),
        Rights {
            no: u64,
            grant: bool,
            control: bool,
            clipboard: bool,
        },
        Help,
    }

    /// Why a typed command was not understood (the text is shown at the prompt).
    #[derive(Debug, PartialEq, Eq, thiserror::Error)]
    pub enum CommandError {
        #[error("{0:?}: which viewer? (a number from `list`)")]
        NoViewer(String),
        #[error("{0} N control|clipboard|all")]
        NoRight(&'static str),
        #[error("unknown command {0:?}; {HELP}")]
        Unknown(String),
    }

    /// Parses a typed command; `Err` says what is wrong.
    pub fn parse(line: &str) -> Result<Command, CommandError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |w: Option<&&str>| -> Result<u64, CommandError> {
            w.and_then(|w| w.parse().ok())
                .ok_or_else(|| CommandError::NoViewer(line.to_owned()))
        };
        match words.first().copied() {
            Some("list" | "ls") => Ok(Command::List),
            Some("help" | "?") => Ok(Command::Help),
            Some("kick" | "disconnect") => Ok(Command::Kick(number(words.get(1))?)),
            Some(verb @ ("revoke" | "grant")) => {
                let verb = if verb == "grant" { "grant" } else { "revoke" };
                let no = number(words.get(1))?;
                let (control, clipboard) = match words.get(2).copied() {
                    Some("control") => (true, false),
                    Some("clipboard") => (false, true),
                    Some("all") => (true, true),
                    _ => return Err(CommandError::NoRight(verb)),
                };
                Ok(Command::Rights {
                    no,
                    grant: verb == "grant",
                    control,
                    clipboard,
                })
            }
            _ => Err(CommandError::Unknown(line.to_owned())),
        }
    }

    /// The answer to a yes/no prompt: `None` when it is neither.
    pub fn answer(line: &str) -> Option<bool> {
        match line.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Some(true),
            "" | "n" | "no" => Some(false),
            _ => None,
        }
    }

    /// ` "NAME"` for a viewer that gave itself a name.
    fn named(name: Option<&str>) -> String {
        name.map(|n| format!(" \"{n}\"")).unwrap_or_default()
    }

    fn rights_text(r: Rights) -> String {
        match (r.control, r.clipboard) {
            (false, false) => "view only".into(),
            (true, false) => "view and control".into(),
            (false, true) => "view and clipboard".into(),
            (true, true) => "view, control and clipboard".into(),
        }
    }

    fn say(text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
        let _ = err.flush();
    }

    pub struct Console {
        pub knocks: mpsc::Receiver<Knock>,
        /// Viewers waiting; the first one is being asked.
        waiting: VecDeque<Knock>,
    }

    impl Console {
        pub fn new(knocks: mpsc::Receiver<Knock>) -> Self {
            Self {
                knocks,
                waiting: VecDeque::new(),
            }
        }

        fn prompt(&self) {
            if let Some((v, _)) = self.waiting.front() {
                let kind = match (v.authenticated, v.user_agent.is_empty()) {
                    (false, _) => "unauthenticated: a WHEP player with the code in clear",
                    (true, true) => "porthole",
                    (true, false) => "a browser",
                };
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "Viewer {}{} from {} ({kind}) wants to watch, with {}. Let in? [y/N] ",
                    v.no,
                    named(v.name.as_deref()),
                    v.addr.ip(),
                    rights_text(v.rights)
                );
                let _ = err.flush();
            }
        }

        pub fn knock(&mut self, knock: Knock) {
            self.waiting.push_back(knock);
            if self.waiting.len() == 1 {
                self.prompt();
            }
        }

        /// Forgets viewers that stopped waiting (gave up, or the share's timeout).
        pub fn expire(&mut self) {
            let front_gone = self.waiting.front().is_some_and(|(_, tx)| tx.is_closed());
            if let Some((v, _)) = self.waiting.front().filter(|_| front_gone) {
                say(&format!(
                    "
Viewer {} stopped waiting.",
                    v.no
                ));
            }
            self.waiting.retain(|(_, tx)| !tx.is_closed());
            if front_gone {
                self.prompt();
            }
        }

        /// Viewer `no` asks for control: the host is told how to give it.
        pub fn asks_control(&self, no: u64) {
            say(&format!(
                "
Viewer {no} asks for control: `grant {no} control` gives it."
            ));
            self.prompt();
        }

        pub async fn line(&mut self, line: &str, server: &ShareServer) {
            if !self.waiting.is_empty() {
                match answer(line) {
                    Some(yes) => {
                        if let Some((v, tx)) = self.waiting.pop_front() {
                            let _ = tx.send(yes.then_some(v.rights));
                            say(&format!(
                                "Viewer {} {}.",
                                v.no,
                                if yes { "let in" } else { "turned away" }
                            ));
                        }
                    }
                    None => say("Answer y or n."),
                }
                self.prompt();
                return;
            }
            if line.trim().is_empty() {
                return;
            }
            match parse(line) {
                Ok(command) => run(command, server).await,
                Err(e) => say(&e.to_string()),
            }
        }
    }

    async fn run(command: Command, server: &ShareServer) {
        let viewers = server.viewers();
        let find = |no: u64| viewers.iter().find(|v| v.no == no);
        match command {
            Command::Help => say(HELP),
            Command::List => {
                if viewers.is_empty() {
                    say("No viewers.");
                }
                for v in &viewers {
                    let secs = std::time::SystemTime::now()
                        .duration_since(v.since)
                        .unwrap_or_default()
                        .as_secs();
                    say(&format!(
                        "Viewer {}{}  {}  {}  {}{}{}",
                        v.no,
                        named(v.name.as_deref()),
                        v.addr,
                        if v.reconnecting {
                            "reconnecting (input released)".into()
                        } else if v.connected {
                            format!("connected {secs} s")
                        } else {
                            "connecting".into()
                        },
                        rights_text(v.rights),
                        if v.asks_control {
                            "  asks for control"
                        } else {
                            ""
                        },
                        if v.authenticated {
                            ""
                        } else {
                            "  unauthenticated (bearer code)"
                        }
                    ));
                }
            }
            Command::Kick(no) => match find(no) {
                Some(v) => {
                    server.disconnect(&v.id).await;
                    say(&format!("Viewer {no} disconnected."));
                }
                None => say(&format!("No viewer {no} (see `list`).")),
            },
            Command::Rights {
                no,
                grant,
                control,
                clipboard,
            } => match find(no) {
                Some(v) => {
                    let mut rights = v.rights;
                    if control {
                        rights.control = grant;
                    }
                    if clipboard {
                        rights.clipboard = grant;
                    }
                    server.set_rights(&v.id, rights);
                    say(&format!("Viewer {no}: {}.", rights_text(rights)));
                }
                None => say(&format!("No viewer {no} (see `list`).")),
            },
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn commands_parse_and_mistakes_say_why() {
            assert_eq!(parse("list"), Ok(Command::List));
            assert_eq!(parse("  kick 3 "), Ok(Command::Kick(3)));
            assert_eq!(
                parse("revoke 2 control"),
                Ok(Command::Rights {
                    no: 2,
                    grant: false,
                    control: true,
                    clipboard: false
                })
            );
            assert_eq!(
                parse("grant 2 all"),
                Ok(Command::Rights {
                    no: 2,
                    grant: true,
                    control: true,
                    clipboard: true
                })
            );
            assert_eq!(parse("kick"), Err(CommandError::NoViewer("kick".into())));
            assert!(parse("kick")
                .unwrap_err()
                .to_string()
                .contains("which viewer"));
            assert_eq!(
                parse("revoke 2 mouse"),
                Err(CommandError::NoRight("revoke"))
            );
            assert!(parse("revoke 2 mouse")
                .unwrap_err()
                .to_string()
                .contains("control|clipboard|all"));
            assert_eq!(parse("reboot"), Err(CommandError::Unknown("reboot".into())));
        }

        #[test]
        fn only_yes_lets_a_viewer_in() {
            assert_eq!(answer("y"), Some(true));
            assert_eq!(answer(" YES "), Some(true));
            assert_eq!(answer(""), Some(false), "Enter means no");
            assert_eq!(answer("n"), Some(false));
            assert_eq!(answer("list"), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pick_url_host;
    use super::{check_port_free, parse_listen};
    use std::net::SocketAddr;

    #[test]
    fn listen_takes_an_address_and_port_or_a_bare_port_and_says_which_otherwise() {
        assert_eq!(
            parse_listen("7390"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 7390)))
        );
        assert_eq!(
            parse_listen("127.0.0.1:7390"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 7390)))
        );
        assert_eq!(parse_listen("[::]:7390").map(|a| a.port()), Ok(7390));
        for bad in ["localhost", "7390x", "1.2.3.4", ":7390", "70000"] {
            let e = parse_listen(bad).unwrap_err();
            assert!(
                e.contains("ADDR:PORT") && e.contains("bare port"),
                "{bad}: {e}"
            );
        }
    }

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
