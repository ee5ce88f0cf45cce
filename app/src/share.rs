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
use net::{AccessCode, IceConfig, ShareConfig, ShareServer, VideoFanout, VideoSample};

use crate::host::{watch_cursor, DesktopHost};
use crate::virtual_display::VirtualDisplay;

mod options;

pub use options::{
    audio_choice, parse_listen, BadListen, ShareArgs, ShareOptions, DEFAULT_BITRATE_KBPS,
    DEFAULT_FPS, DEFAULT_LISTEN,
};

/// The ICE agent's addresses for `listen` (the servers are the options').
fn ice_config(options: &ShareOptions) -> IceConfig {
    let ip = options.listen.ip();
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
    IceConfig {
        servers: options.ice_servers.clone(),
        udp_addrs,
    }
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
fn start_audio(
    source: Option<&media::audio::AudioSource>,
    fanout: &Arc<VideoFanout>,
) -> Option<media::audio::AudioPipeline> {
    let source = source?.clone();
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
    let result = runtime.block_on(serve(options, args.no_approval, code));
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
        options: &ShareOptions,
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
            fps: options.fps,
            bitrate_kbps: options.bitrate_kbps,
        };
        let control = EncoderControl::new(settings);
        let monitor_list = media::capture::monitors(None)?;
        let Some(first) = monitor_list.get(options.monitor) else {
            return Err(SwitchError::NoSuchMonitor {
                index: options.monitor,
                count: monitor_list.len(),
                listed: describe_monitors(&monitor_list),
            }
            .into());
        };
        let monitor = SharedMonitor::new(options.monitor, first.rect);
        tracing::info!("sharing monitor {}: {}", options.monitor, first.describe());
        let pipeline = {
            let fanout = fanout.clone();
            let config = PipelineConfig {
                monitor: options.monitor,
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
            EncoderPolicy::new(options.bitrate_kbps, options.fps, width, height),
            pipeline.size_reader(),
        ));
        let video_fanout = fanout.clone();

        let events = net::HostEvents::new();
        let monitors = MonitorSwitch {
            shared: monitor.clone(),
            events: events.clone(),
        };
        monitors.announce(&monitor_list, options.monitor);
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
        let audio = start_audio(options.audio.as_ref(), &audio_fanout);
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
                listen: options.listen,
                code: code.clone(),
                ice: ice_config(options),
                max_viewers: options.max_viewers,
                media_stats,
                host,
                events,
                default_rights: net::Rights {
                    control: options.rights.control,
                    clipboard: options.rights.clipboard,
                },
                clipboard_max: options.clipboard_max_bytes,
                approve: approve.clone(),
                identity: Some(identity.clone()),
                allow_token: options.allow_whep_token,
                code_expiry: options.code_expiry,
            },
            fanout,
            audio.as_ref().map(|_| audio_fanout),
        )
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
        let addr = server.local_addr();
        tracing::info!(width, height, "sharing the screen");
        let url = net::viewer_url(&url_host(addr), addr.port(), &code);
        let announcer = if !options.announce {
            None
        } else if options.listen.ip().is_loopback() {
            // Nobody on the LAN could connect: announcing would only mislead.
            tracing::warn!("listening on loopback only (no network): not announced on the LAN");
            None
        } else {
            let announcement = net::discovery::ShareAnnouncement {
                name: options
                    .name
                    .clone()
                    .unwrap_or_else(net::discovery::default_name),
                port: addr.port(),
                audio: audio.is_some(),
                control: options.rights.control,
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
    use super::check_port_free;
    use super::pick_url_host;
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
