//! What the integration tests share: a share's configuration, a real encoder feeding a
//! fan-out, and a real offer.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

pub mod offer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use net::{AccessCode, HostEvents, IceConfig, MediaFanout, MediaUnit, Rights, ShareConfig};

/// A share on a free loopback port with access code `code`: view-only, ICE on loopback
/// only, its own DTLS identity. Tests change what they need with `..share_config(…)`.
pub fn share_config(code: &str, max_viewers: usize) -> ShareConfig {
    ShareConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        code: AccessCode::parse(code).unwrap(),
        ice: IceConfig {
            servers: vec![],
            udp_addrs: vec!["127.0.0.1:0".into()],
        },
        max_viewers,
        media_stats: Arc::new(Vec::new),
        host: Arc::new(net::session::ViewOnlyHost),
        events: HostEvents::new(),
        default_rights: Rights::default(),
        clipboard_max: 1024,
        approve: None,
        identity: Some(net::peer::ShareIdentity::generate().unwrap()),
        allow_token: false,
        code_expiry: None,
    }
}

/// A fan-out fed with real H.264 of a 320x240 test picture at 30 fps, from a thread; a
/// keyframe only when the fan-out asks for one.
pub struct TestEncoder {
    pub fanout: Arc<MediaFanout>,
    /// Keyframes made so far.
    pub keyframes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestEncoder {
    /// The picture moves `step` pixels a frame (0: a still picture, what a static screen
    /// costs).
    pub fn start(step: u32) -> Self {
        let request = Arc::new(AtomicBool::new(false));
        let fanout = {
            let r = request.clone();
            MediaFanout::video(
                Instant::now(),
                Arc::new(move || r.store(true, Ordering::Relaxed)),
            )
        };
        let keyframes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (fanout, keyframes, stop) = (fanout.clone(), keyframes.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut enc = media::encoder::H264Encoder::new(Default::default()).unwrap();
                let mut conv = media::convert::Converter::new(320, 240);
                let mut shift = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let frame: Vec<u8> = (0..320 * 240)
                        .flat_map(|p| [(p % 320 + shift) as u8, 0x80, 0x20, 0])
                        .collect();
                    conv.convert(&frame, 320, 240);
                    let out = enc
                        .encode(conv.picture(), request.swap(false, Ordering::Relaxed))
                        .unwrap();
                    if out.keyframe {
                        keyframes.fetch_add(1, Ordering::Relaxed);
                    }
                    fanout.publish(MediaUnit {
                        data: out.data,
                        capture_time: Instant::now(),
                        keyframe: out.keyframe,
                    });
                    shift += step;
                    std::thread::sleep(Duration::from_millis(33));
                }
            })
        };
        Self {
            fanout,
            keyframes,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}
