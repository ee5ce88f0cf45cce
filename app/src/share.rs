//! A share: capture → encode → fan out to viewers over WebRTC ([`RunningShare`]), started
//! by `porthole share` ([`cli`]) and by the app, both from [`ShareOptions`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use media::capture::SharedMonitor;
use media::encoder::EncoderSettings;
use media::pipeline::{
    CaptureSource, EncoderControl, KeyframeRequest, PipelineConfig, VideoPipeline,
};
use net::cc::EncoderPolicy;
use net::{AccessCode, IceConfig, MediaFanout, MediaUnit, ShareConfig, ShareServer};

use crate::host::{watch_cursor, DesktopHost};

mod cli;
mod monitors;
mod options;
mod portal_token;

pub use cli::run;
use monitors::{describe_monitors, follow_monitor_requests};
pub use monitors::{monitor_entries, MonitorSwitch, SwitchError};
pub use options::{
    audio_choice, parse_listen, Backend, BadListen, ShareArgs, ShareOptions, DEFAULT_BITRATE_KBPS,
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

/// Starts audio capture, or says why there is none (never fatal).
fn start_audio(
    source: Option<&media::audio::AudioSource>,
    fanout: &Arc<MediaFanout>,
) -> Option<media::audio::AudioPipeline> {
    let source = source?.clone();
    let fanout = fanout.clone();
    match media::audio::AudioPipeline::start(source, move |packet| {
        fanout.publish(MediaUnit {
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

/// How often the encoder's target follows the viewers' path estimates: about as often as
/// feedback comes (every 50-60 ms). A backoff then reaches the encoder within a frame or
/// two; at 200 ms, the encoder went on making 4.5 Mbit/s for up to 200 ms after the
/// estimate behind a 3 Mbit/s link fell to 2.1, into the link's queue. (The policy is
/// cheap: a few comparisons per viewer.)
const STEER_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Congestion control's last step: every `STEER_INTERVAL`, the viewers' path estimates
/// become the one encoder's bit rate, frame rate and size (`net::cc::EncoderPolicy`).
/// The policy follows the picture's size (`size`), which changes with the monitor shared.
async fn steer_encoder(
    fanout: Arc<MediaFanout>,
    control: Arc<EncoderControl>,
    mut policy: EncoderPolicy,
    size: impl Fn() -> (u32, u32),
) {
    let mut tick = tokio::time::interval(STEER_INTERVAL);
    let mut last = policy.current();
    loop {
        // Every tick, and at once when a viewer's path is added.
        tokio::select! {
            _ = tick.tick() => {}
            () = fanout.paths_changed.notified() => {}
        }
        let (width, height) = size();
        policy.set_size(width, height);
        if let Some((bytes, scale_div)) = control.last_keyframe() {
            policy.note_keyframe(bytes, scale_div);
        }
        let now = Instant::now();
        policy.set_congested(now, fanout.congested());
        let target = policy.update(now, &fanout.media_estimates());
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
            MediaFanout::video(epoch, Arc::new(move || keyframe.request()))
        };
        let settings = EncoderSettings {
            fps: options.fps,
            bitrate_kbps: options.bitrate_kbps,
        };
        let control = EncoderControl::new(settings);
        let start_pipeline = |source, monitor: usize, follow: Option<SharedMonitor>| {
            let fanout = fanout.clone();
            let config = PipelineConfig {
                source,
                monitor,
                follow,
                encoder: settings,
                control: Some(control.clone()),
                ..Default::default()
            };
            VideoPipeline::start(config, keyframe.clone(), move |frame| {
                fanout.publish(MediaUnit {
                    data: frame.data,
                    capture_time: frame.capture_time,
                    keyframe: frame.keyframe,
                })
            })
        };
        let (monitor_list, monitor, pipeline) = match options.backend {
            Backend::X11 => {
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
                let pipeline =
                    start_pipeline(CaptureSource::X11, options.monitor, Some(monitor.clone()))?;
                (monitor_list, monitor, pipeline)
            }
            Backend::Wayland => {
                // The portal's dialog picks the monitor; it is the only one viewers see. The
                // token of the last share skips the dialog when the portal still honours it.
                let token_file = portal_token::path();
                let restore_token = token_file.as_deref().and_then(portal_token::load);
                let source = CaptureSource::Portal {
                    restore_token: restore_token.clone(),
                };
                let pipeline = start_pipeline(source, 0, None)?;
                let new_token = pipeline.restore_token();
                tracing::info!(
                    restored = restore_token.is_some(),
                    kept = new_token.is_some(),
                    "screen cast started (a token kept: the next share asks no question)"
                );
                if let Some(file) = &token_file {
                    if let Err(e) = portal_token::save(file, new_token.as_deref()) {
                        tracing::warn!(
                            "cannot keep the screen cast's token in {}: {e}",
                            file.display()
                        );
                    }
                }
                let (width, height) = pipeline.size();
                let only = media::capture::Monitor {
                    name: "screen cast".into(),
                    rect: media::capture::MonitorRect {
                        x: 0,
                        y: 0,
                        width,
                        height,
                    },
                    primary: true,
                };
                let monitor = SharedMonitor::new(0, only.rect);
                (vec![only], monitor, pipeline)
            }
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
        let host = Arc::new(DesktopHost::open(
            monitor.clone(),
            &events,
            options.backend == Backend::Wayland,
        ));
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
                ("units_behind", get(&video_fanout.units_behind)),
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

        let audio_fanout = MediaFanout::audio(epoch);
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
