//! The host's video pipeline: capture thread → newest-frame slot → encode thread → sink.
//!
//! ```text
//!  X11 ──DAMAGE──▶ capture thread ──(I420 picture)──▶ LatestSlot ──▶ encode thread ──▶ sink
//!                  grabs and converts                 drops stale     H.264
//!                  only changed bands, ≤ fps                          IDR on request
//! ```
//!
//! One encoder per pipeline, whatever the number of viewers: the sink fans out.
//! An unchanged screen costs nothing (no damage, no grab, no encode); a change is grabbed
//! as soon as the X server reports it (at most `fps` frames a second); a keyframe request
//! re-encodes the last picture at once, and the last picture is re-sent about once a
//! second so receivers see the stream is alive.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use types::ByteBudget;

use crate::capture::CaptureError;
use crate::encoder::{EncoderSettings, H264Encoder};
use crate::picture::ChangeMark;
use crate::slot::LatestSlot;
use crate::x11grab::{DamageCapturer, I420Picture};
use crate::EncodedFrame;

/// A shared "the next frame must be an IDR" flag. Any viewer may raise it; the encoder
/// lowers it when it produces the keyframe, so many requests cost one IDR.
#[derive(Clone, Default, Debug)]
pub struct KeyframeRequest(Arc<AtomicBool>);

impl KeyframeRequest {
    pub fn request(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// Returns whether a keyframe was asked for, and clears the request.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
    pub fn is_pending(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Holds the encoder to its bit rate when the picture is too hard for openh264's own rate
/// control. That control may not skip frames (we never let it: a skipped frame is an empty
/// packet), so on busy content (scrolling text, video) it overshoots many times over, and
/// a link sized for the target would queue seconds of video. Instead, once the bytes
/// encoded exceed the budget, the next frame waits until the budget has refilled: the frame
/// rate drops, the bit rate holds, and the frame that goes out is the newest one.
#[derive(Debug)]
pub struct RatePacer {
    bytes_per_sec: f64,
    /// Starts full: the first frames go at once.
    budget: ByteBudget,
    /// A keyframe's bytes not yet counted, and the share each frame adds (see
    /// [`KEYFRAME_SPREAD_FRAMES`]).
    spreading: f64,
    spread_share: f64,
    /// The last frame's bytes, if it was not a keyframe (see [`PACER_MAX_DEBT`]).
    last_frame_bytes: f64,
}

/// A debt beyond this much of the rate is forgiven, unless the last frame alone costs more:
/// frames that big each are held to the average (the frame rate falls until they fit), but
/// a debt of a keyframe or of earlier frames is repaid by holds of at most this long, not a
/// stall. A held frame carries all the motion of the hold: the first frames after a halved
/// picture's keyframe, held 0.5 s each, were 60 and 47 kB (2 kB once at full rate).
pub const PACER_MAX_DEBT: Duration = Duration::from_millis(100);

/// A keyframe counts against the budget in equal shares over the next this many frames,
/// not at once (libwebrtc's frame dropper spreads a key frame over half a second of frames
/// too). Counted at once, the keyframe of a halved picture (60 kB at 580 kbit/s) held the
/// encoder for half a second; the next frame then carried half a second of motion (60 kB,
/// another hold), then 47 kB: 1.4 s at 2 frames a second behind a link stepped down to
/// 2 Mbit/s. Spread, the debt is repaid by a lower frame rate while the frames stay small.
pub const KEYFRAME_SPREAD_FRAMES: f64 = 15.0;

/// Bytes the pacer lets through at once: half a second of budget (a keyframe, a sudden
/// change of the whole screen).
pub const PACER_BURST: Duration = Duration::from_millis(500);

fn bytes_per_sec(bitrate_kbps: u32) -> f64 {
    f64::from(bitrate_kbps.max(1)) * 1000.0 / 8.0
}

impl RatePacer {
    pub fn new(bitrate_kbps: u32, now: Instant) -> Self {
        let bytes_per_sec = bytes_per_sec(bitrate_kbps);
        Self {
            bytes_per_sec,
            budget: ByteBudget::full(now, PACER_BURST, bytes_per_sec),
            spreading: 0.0,
            spread_share: 0.0,
            last_frame_bytes: 0.0,
        }
    }

    fn fill(&mut self, now: Instant) {
        self.budget.fill(now, self.bytes_per_sec);
    }

    /// Forgives a debt beyond [`PACER_MAX_DEBT`] (or the last frame's own bytes).
    fn forgive(&mut self) {
        let max = (PACER_MAX_DEBT.as_secs_f64() * self.bytes_per_sec).max(self.last_frame_bytes);
        self.budget.forgive_beyond(max);
    }

    /// How long the next frame must wait (zero: it may go now).
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.fill(now);
        self.budget.wait(self.bytes_per_sec)
    }

    /// Changes the rate at `now`. The burst follows the new rate; on a lower rate a debt
    /// keeps the wait it stood for (time owed, not bytes), never more than [`PACER_BURST`]:
    /// bytes owed at 6 Mbit/s, repaid at the 150 kbit/s a congested link left, held the
    /// encoder for 5 s, and the viewer with it.
    pub fn set_rate(&mut self, bitrate_kbps: u32, now: Instant) {
        self.fill(now);
        let old = self.bytes_per_sec;
        self.bytes_per_sec = bytes_per_sec(bitrate_kbps);
        self.budget.change_rate(old, self.bytes_per_sec);
    }

    /// Counts an encoded frame of `bytes`; a keyframe over the next
    /// [`KEYFRAME_SPREAD_FRAMES`] frames.
    pub fn spend(&mut self, bytes: usize, keyframe: bool, now: Instant) {
        self.fill(now);
        if keyframe {
            self.spreading += bytes as f64;
            self.spread_share = self.spreading / KEYFRAME_SPREAD_FRAMES;
            return;
        }
        let share = self.spread_share.min(self.spreading);
        self.spreading -= share;
        self.last_frame_bytes = bytes as f64;
        self.budget.spend(bytes + share.round() as usize);
        self.forgive();
    }
}

/// What the encoder aims at, set from outside while it runs (congestion control): bit rate,
/// frame rate (the capture's cap) and picture size (1 = full, 2 = half each way).
#[derive(Debug)]
pub struct EncoderControl {
    kbps: AtomicU32,
    fps: AtomicU32,
    scale_div: AtomicU32,
    /// The last keyframe: its bytes, shifted left 8, or'ed with the `scale_div` it was made
    /// at (0: none yet).
    last_keyframe: AtomicU64,
}

impl EncoderControl {
    pub fn new(settings: EncoderSettings) -> Arc<Self> {
        Arc::new(Self {
            kbps: AtomicU32::new(settings.bitrate_kbps),
            fps: AtomicU32::new(settings.fps.max(1)),
            scale_div: AtomicU32::new(1),
            last_keyframe: AtomicU64::new(0),
        })
    }

    /// The last keyframe made: `(bytes, scale_div)`.
    pub fn last_keyframe(&self) -> Option<(usize, u32)> {
        match self.last_keyframe.load(Ordering::Relaxed) {
            0 => None,
            v => Some(((v >> 8) as usize, (v & 0xff) as u32)),
        }
    }

    fn note_keyframe(&self, bytes: usize, scale_div: u32) {
        let v = ((bytes as u64) << 8) | u64::from(scale_div.min(0xff));
        self.last_keyframe.store(v, Ordering::Relaxed);
    }

    pub fn set(&self, kbps: u32, fps: u32, scale_div: u32) {
        self.kbps.store(kbps.max(1), Ordering::Relaxed);
        self.fps.store(fps.max(1), Ordering::Relaxed);
        self.scale_div
            .store(scale_div.clamp(1, 2), Ordering::Relaxed);
    }

    /// `(kbps, fps, scale_div)` as last set.
    pub fn get(&self) -> (u32, u32, u32) {
        (
            self.kbps.load(Ordering::Relaxed),
            self.fps.load(Ordering::Relaxed),
            self.scale_div.load(Ordering::Relaxed),
        )
    }

    fn period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.fps.load(Ordering::Relaxed).max(1)))
    }
}

/// After the screen stops changing, the last picture is encoded again this many times,
/// [`REFINE_AFTER`] apart: the encoder spent few bits on it while it changed (the rate
/// budget), and each re-encode sharpens it (small P-frames). Without it a still picture
/// reached full quality only through the once-a-second keep-alive, in seconds.
pub const REFINE_FRAMES: u32 = 3;
/// See [`REFINE_FRAMES`].
pub const REFINE_AFTER: Duration = Duration::from_millis(100);

/// Counters of the pipeline, readable from any thread.
#[derive(Default, Debug)]
pub struct PipelineStats {
    pub encoders_started: AtomicU64,
    pub frames_captured: AtomicU64,
    pub frames_unchanged: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub frames_encoded: AtomicU64,
    pub keyframes: AtomicU64,
    pub bytes_encoded: AtomicU64,
    /// Times the encoder waited for the bit-rate budget (see [`RatePacer`]).
    pub frames_paced: AtomicU64,
}

/// Where the pictures come from.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum CaptureSource {
    /// The X server in `$DISPLAY` (MIT-SHM grabs of what X DAMAGE reports).
    #[default]
    X11,
    /// A Wayland desktop's ScreenCast portal and PipeWire (see [`crate::portal`]); the
    /// token, when the portal gave one before, skips its dialog.
    Portal { restore_token: Option<String> },
}

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub source: CaptureSource,
    /// Index of the monitor (RandR) to capture.
    pub monitor: usize,
    /// When set, the monitor to capture while running: a change of its index switches the
    /// capture to that monitor (the next frame is a keyframe of the new size).
    pub follow: Option<crate::capture::SharedMonitor>,
    pub encoder: EncoderSettings,
    /// Re-send the last picture after this long without a change.
    pub keepalive: Duration,
    /// Where the encoder's targets come from while it runs (`None`: `encoder`, fixed).
    pub control: Option<Arc<EncoderControl>>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            source: CaptureSource::X11,
            monitor: 0,
            follow: None,
            encoder: EncoderSettings::default(),
            keepalive: Duration::from_secs(1),
            control: None,
        }
    }
}

struct Captured {
    picture: Arc<I420Picture>,
    /// Where `picture` stands in its capture's change log.
    mark: ChangeMark,
    time: Instant,
    grab_us: u64,
    convert_us: u64,
    /// Rows grabbed and converted for this frame.
    rows: usize,
    /// When it was put in the slot (grabbed, converted and snapshot taken).
    ready: Instant,
}

/// A running capture → encode pipeline. Dropping it stops both threads.
pub struct VideoPipeline {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<PipelineStats>,
    size: Arc<Mutex<(u32, u32)>>,
    restore_token: Arc<Mutex<Option<String>>>,
}

impl VideoPipeline {
    /// Opens the capture and starts the threads. `sink` gets every encoded frame, on the
    /// encode thread: it must hand the frame on quickly (e.g. into a channel).
    pub fn start(
        config: PipelineConfig,
        keyframe: KeyframeRequest,
        sink: impl FnMut(EncodedFrame) + Send + 'static,
    ) -> Result<Self, CaptureError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(PipelineStats::default());
        let slot = Arc::new(LatestSlot::<Captured>::new());
        let (opened_tx, opened_rx) = mpsc::channel();
        let size = Arc::new(Mutex::new((0, 0)));
        let restore_token = Arc::new(Mutex::new(None));

        let capture = {
            let (stop, stats, slot) = (stop.clone(), stats.clone(), slot.clone());
            let config = config.clone();
            let size = size.clone();
            let token_out = restore_token.clone();
            std::thread::Builder::new()
                .name("porthole-capture".into())
                .spawn(move || match config.source.clone() {
                    CaptureSource::X11 => capture_loop(config, stop, stats, slot, opened_tx, size),
                    CaptureSource::Portal { restore_token } => portal_capture_loop(
                        (restore_token.as_deref(), token_out),
                        config,
                        stop,
                        stats,
                        slot,
                        opened_tx,
                        size,
                    ),
                })
                .expect("spawn capture thread")
        };
        match opened_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = capture.join();
                return Err(e);
            }
            Err(_) => {
                let _ = capture.join();
                return Err(CaptureError::Grab(std::io::Error::other(
                    "capture thread ended before opening the screen",
                )));
            }
        };
        let encode = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name("porthole-encode".into())
                .spawn(move || encode_loop(config, stop, stats, slot, keyframe, sink))
                .expect("spawn encode thread")
        };
        Ok(Self {
            stop,
            threads: vec![capture, encode],
            stats,
            size,
            restore_token,
        })
    }

    /// The token the ScreenCast portal gave for the next share to skip its dialog (each
    /// token is good once; `None` for X11, or when the portal keeps none).
    pub fn restore_token(&self) -> Option<String> {
        self.restore_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stats(&self) -> &Arc<PipelineStats> {
        &self.stats
    }

    /// The captured picture size (even; it changes when the capture follows another
    /// monitor).
    pub fn size(&self) -> (u32, u32) {
        *self.size.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads [`size`](Self::size) from anywhere, for as long as it is kept.
    pub fn size_reader(&self) -> impl Fn() -> (u32, u32) + Send + Sync + 'static {
        let size = self.size.clone();
        move || *size.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether both threads still run (a capture error ends them).
    pub fn is_running(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for VideoPipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

fn capture_loop(
    config: PipelineConfig,
    stop: Arc<AtomicBool>,
    stats: Arc<PipelineStats>,
    slot: Arc<LatestSlot<Captured>>,
    opened: mpsc::Sender<Result<(), CaptureError>>,
    size: Arc<Mutex<(u32, u32)>>,
) {
    let opened_size = |capturer: &DamageCapturer| {
        let (width, height) = capturer.size();
        *size.lock().unwrap_or_else(|e| e.into_inner()) = (width as u32, height as u32);
        (width, height)
    };
    let mut monitor = config.monitor;
    let mut capturer = match DamageCapturer::open(monitor) {
        Ok(c) => c,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    let (width, height) = opened_size(&capturer);
    let _ = opened.send(Ok(()));
    tracing::info!(
        width,
        height,
        monitor,
        damage = capturer.tracks_damage(),
        "capturing"
    );

    let control = config
        .control
        .clone()
        .unwrap_or_else(|| EncoderControl::new(config.encoder));
    let mut last_grab: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        let wanted = config.follow.as_ref().map_or(monitor, |f| f.get().0);
        if wanted != monitor {
            match DamageCapturer::open(wanted) {
                Ok(c) => {
                    capturer = c;
                    monitor = wanted;
                    let (width, height) = opened_size(&capturer);
                    tracing::info!(width, height, monitor, "capturing another monitor");
                }
                Err(e) => {
                    tracing::warn!("cannot capture monitor {wanted}: {e}; staying on {monitor}");
                    if let Some(f) = &config.follow {
                        if let Ok(rect) = crate::capture::monitor_rect(None, monitor) {
                            f.set(monitor, rect);
                        }
                    }
                }
            }
        }
        // Nothing happens until the screen changes (at most 100 ms, to notice a stop).
        let changed = match capturer.wait(Duration::from_millis(100)) {
            Ok(changed) => changed,
            Err(e) => {
                tracing::error!("{e}; stopping capture");
                stop.store(true, Ordering::Release);
                return;
            }
        };
        if !changed {
            continue;
        }
        wait_for_period(last_grab, control.period());
        let time = Instant::now();
        let result = capturer
            .take_bands()
            .and_then(|bands| Ok((capturer.grab(&bands)?, bands.is_empty())));
        match result {
            Ok((_, true)) => {
                // Damage elsewhere on the X screen (another monitor).
                stats.frames_unchanged.fetch_add(1, Ordering::Relaxed);
            }
            Ok((cost, false)) => {
                last_grab = Some(time);
                stats.frames_captured.fetch_add(1, Ordering::Relaxed);
                let frame = Captured {
                    picture: capturer.snapshot(),
                    mark: capturer.mark(),
                    time,
                    grab_us: cost.grab_us,
                    convert_us: cost.convert_us,
                    rows: cost.rows,
                    ready: Instant::now(),
                };
                if slot.put(frame) {
                    stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::error!("{e}; stopping capture");
                stop.store(true, Ordering::Release);
            }
        }
    }
}

/// The frame-rate cap: frames are at least one `period` apart, so a change within a period
/// of the last grab waits for the period to end (collecting more damage meanwhile).
fn wait_for_period(last_grab: Option<Instant>, period: Duration) {
    if let Some(due) = last_grab.map(|last| last + period) {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// The capture thread on Wayland: frames come from PipeWire when the screen changes, at
/// most `fps` a second; only the rows their damage regions name are converted (the whole
/// frame when the portal tells none).
fn portal_capture_loop(
    (restore_token, token_out): (Option<&str>, Arc<Mutex<Option<String>>>),
    config: PipelineConfig,
    stop: Arc<AtomicBool>,
    stats: Arc<PipelineStats>,
    slot: Arc<LatestSlot<Captured>>,
    opened: mpsc::Sender<Result<(), CaptureError>>,
    size: Arc<Mutex<(u32, u32)>>,
) {
    let capture = match crate::portal::PortalCapture::open(restore_token) {
        Ok(c) => c,
        Err(e) => {
            let _ = opened.send(Err(CaptureError::Portal(e)));
            return;
        }
    };
    *token_out.lock().unwrap_or_else(|e| e.into_inner()) = capture.restore_token.clone();
    // The size the portal announced; without one, the first frame's.
    let announced = capture.size.filter(|&(w, h)| w > 0 && h > 0);
    let (width, height) = match announced {
        Some((w, h)) => (w as u32, h as u32),
        None => match capture.read(Duration::from_secs(5), |m| (m.width, m.height)) {
            Some(size) => size,
            None => {
                let _ = opened.send(Err(CaptureError::Grab(std::io::Error::other(
                    "the screen cast announced no size and sent no picture within 5 s",
                ))));
                return;
            }
        },
    };
    let set_size = |w: usize, h: usize| {
        *size.lock().unwrap_or_else(|e| e.into_inner()) = (w as u32, h as u32);
    };
    let (w, h) = crate::convert::even_size(width as usize, height as usize);
    set_size(w, h);
    let _ = opened.send(Ok(()));
    tracing::info!(width, height, "capturing the screen cast");
    let control = config
        .control
        .clone()
        .unwrap_or_else(|| EncoderControl::new(config.encoder));
    let mut picture = crate::picture::BandPicture::new(w, h);
    // Until the first frame paints it all, the picture is black.
    let mut whole = true;
    let mut last_grab: Option<Instant> = None;
    let mut settle = crate::portal::SettleNudge::default();
    while !stop.load(Ordering::Acquire) {
        if !capture.wait(crate::portal::SETTLE_AFTER) {
            settle.on_quiet(Instant::now());
            continue;
        }
        wait_for_period(last_grab, control.period());
        let started = Instant::now();
        let converted = capture.read(Duration::ZERO, |m| {
            let size = crate::convert::even_size(m.width as usize, m.height as usize);
            if size != picture.size() {
                tracing::info!(
                    width = m.width,
                    height = m.height,
                    "the screen cast changed size"
                );
                picture = crate::picture::BandPicture::new(size.0, size.1);
                set_size(size.0, size.1);
                whole = true;
            }
            let (pw, ph) = picture.size();
            // Whole rows: the mirror's last row has no room past its width, which the
            // vector converter would want for a band that starts further right.
            let bands = if std::mem::take(&mut whole) || m.full {
                vec![crate::picture::Band::whole(pw, ph)]
            } else {
                let rows = m.damage.iter();
                let rows = rows.map(|&(y, h)| crate::picture::Band::rows_of(y, y + h, pw));
                crate::picture::merge_bands(rows.collect(), pw, ph, 16)
            };
            let mut rows = 0;
            if pw > 0 && ph > 0 {
                for b in &bands {
                    picture.convert(&m.bgrx[b.y0 * m.stride + b.x0 * 4..], m.stride / 4, *b);
                    rows += b.rows();
                }
            }
            (rows, m.time.unwrap_or(started))
        });
        let Some((rows, time)) = converted else {
            continue;
        };
        settle.frame(started, rows);
        if rows == 0 {
            stats.frames_unchanged.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // The cap counts from this read (a frame that waited in the mirror is not older
        // for it: counting from its arrival would let reads come closer than a period).
        last_grab = Some(started);
        stats.frames_captured.fetch_add(1, Ordering::Relaxed);
        let captured = Captured {
            picture: picture.snapshot(),
            mark: picture.mark(),
            time,
            grab_us: 0,
            convert_us: started.elapsed().as_micros() as u64,
            rows,
            ready: Instant::now(),
        };
        if slot.put(captured) {
            stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether `encoder` can take `full` at `scale_div` (1 full, 2 halved) now; if not, an
/// encoder for that size is starting (see [`H264Encoder::ready_for`]).
fn ready_at(encoder: &mut H264Encoder, full: &I420Picture, scale_div: u32) -> bool {
    let wanted = if scale_div >= 2 {
        full.half_size()
    } else {
        (full.width, full.height)
    };
    encoder.ready_for(wanted, || {
        if scale_div >= 2 {
            full.half()
        } else {
            full.clone()
        }
    })
}

fn encode_loop(
    config: PipelineConfig,
    stop: Arc<AtomicBool>,
    stats: Arc<PipelineStats>,
    slot: Arc<LatestSlot<Captured>>,
    keyframe: KeyframeRequest,
    mut sink: impl FnMut(EncodedFrame),
) {
    // It runs openh264's serial part of each frame and waits for its workers (real-time too).
    crate::priority::realtime_this_thread();
    let mut encoder = match H264Encoder::new(config.encoder) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("{e}");
            stop.store(true, Ordering::Release);
            return;
        }
    };
    stats.encoders_started.fetch_add(1, Ordering::Relaxed);
    let control = config
        .control
        .clone()
        .unwrap_or_else(|| EncoderControl::new(config.encoder));
    let mut last: Option<Arc<I420Picture>> = None;
    let mut last_mark: Option<ChangeMark> = None;
    let mut last_capture_time = Instant::now();
    let mut last_encode = Instant::now();
    let mut pacer = RatePacer::new(config.encoder.bitrate_kbps, Instant::now());
    let mut holding = false;
    // The size encoded: 1 full, 2 halved (it follows the control's once the encoder for it
    // is ready).
    let mut applied_div = 1;
    // Re-encodes of a picture that stopped changing still to come (see REFINE_FRAMES).
    let mut refines_left = 0u32;
    while !stop.load(Ordering::Acquire) {
        let (kbps, fps, scale_div) = control.get();
        if (kbps, fps) != (encoder.settings().bitrate_kbps, encoder.settings().fps) {
            match encoder.set_rate(kbps, fps) {
                Ok(()) => {
                    pacer.set_rate(kbps, Instant::now());
                    tracing::debug!(kbps, fps, scale_div, "encoder target");
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        // Over budget: leave the newest frame in the slot (the capture keeps replacing it)
        // until the budget has refilled. A keyframe request goes through at once.
        let wait = pacer.wait(Instant::now());
        if !wait.is_zero() && !keyframe.is_pending() {
            if !holding {
                holding = true;
                stats.frames_paced.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(wait.min(Duration::from_millis(10)));
            continue;
        }
        holding = false;
        let frame = slot.take_timeout(Duration::from_millis(10));
        let (capture_time, grab_us, convert_us, rows, put_at) = match frame {
            Some(frame) => {
                last = Some(frame.picture);
                last_mark = Some(frame.mark);
                last_capture_time = frame.time;
                refines_left = REFINE_FRAMES;
                (
                    frame.time,
                    frame.grab_us,
                    frame.convert_us,
                    frame.rows,
                    frame.ready,
                )
            }
            None => {
                // Nothing new on screen: answer a keyframe request, sharpen a picture that
                // just stopped changing, or keep the stream alive.
                let since = last_encode.elapsed();
                let refine = refines_left > 0 && since >= REFINE_AFTER;
                // (A change of size whose encoder is now ready, too.)
                let switch = scale_div != applied_div
                    && last
                        .as_deref()
                        .is_some_and(|full| ready_at(&mut encoder, full, scale_div));
                let due = refine || since >= config.keepalive || switch;
                if last.is_none() || !(keyframe.is_pending() || due) {
                    continue;
                }
                refines_left = refines_left.saturating_sub(1);
                let now = Instant::now();
                (now, 0, 0, 0, now)
            }
        };
        let Some(full) = last.as_deref() else {
            continue;
        };
        // Halved when the bit rate is too low for the full size. A new size starts with an
        // IDR from a fresh encoder, initialised on a helper thread: until it is ready the
        // current size goes on.
        let ready = ready_at(&mut encoder, full, scale_div);
        if !ready && scale_div > applied_div {
            // Going down, for a link too slow for this size: nothing more of the old size
            // into its queue meanwhile (behind 3 Mbit/s, full-size frames sent while the
            // half size's encoder started made the first seconds' delays 220-440 ms).
            continue;
        }
        let scale_div = if ready {
            applied_div = scale_div;
            scale_div
        } else {
            applied_div
        };
        let halved;
        let (picture, mark) = if scale_div >= 2 {
            halved = full.half();
            (&halved, last_mark.as_ref().map(|m| m.halved(full)))
        } else {
            (full, last_mark.clone())
        };
        let force_idr = keyframe.take();
        let started = Instant::now();
        let queued_us = started.saturating_duration_since(capture_time).as_micros() as u64;
        // From the slot to the encoder: the encoding thread's wake-up (and a held frame).
        let handoff_us = started.saturating_duration_since(put_at).as_micros() as u64;
        let encoded = match encoder.encode_marked(picture, force_idr, mark.as_ref()) {
            Ok(encoded) => encoded,
            Err(e) => {
                tracing::error!("{e}; stopping the video pipeline");
                stop.store(true, Ordering::Release);
                return;
            }
        };
        let encode_us = started.elapsed().as_micros() as u64;
        last_encode = Instant::now();
        pacer.spend(encoded.data.len(), encoded.keyframe, last_encode);
        stats.frames_encoded.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes_encoded
            .fetch_add(encoded.data.len() as u64, Ordering::Relaxed);
        if encoded.keyframe {
            stats.keyframes.fetch_add(1, Ordering::Relaxed);
            control.note_keyframe(encoded.data.len(), scale_div.clamp(1, 2));
        }
        tracing::debug!(
            grab_us,
            convert_us,
            rows,
            queued_us,
            handoff_us,
            encode_us,
            bytes = encoded.data.len(),
            keyframe = encoded.keyframe,
            since_capture_us = capture_time.elapsed().as_micros() as u64,
            "video frame"
        );
        // A re-sent picture keeps the time it was captured at monotonic order.
        let capture_time = capture_time.max(last_capture_time);
        sink(EncodedFrame {
            data: encoded.data,
            capture_time,
            keyframe: encoded.keyframe,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_holds_the_average_to_the_budget_and_allows_a_burst() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // 8000 kbit/s = 1 MB/s; a burst of 0.5 s = 500 kB.
        let mut p = RatePacer::new(8000, t0);
        assert_eq!(p.wait(t0), Duration::ZERO);
        p.spend(400_000, false, t0);
        assert_eq!(p.wait(t0), Duration::ZERO, "within the burst");
        p.spend(300_000, false, t0);
        // 200 kB in debt at 1 MB/s: 200 ms.
        assert_eq!(p.wait(t0), Duration::from_millis(200));
        assert_eq!(p.wait(ms(150)), Duration::from_millis(50));
        assert_eq!(p.wait(ms(200)), Duration::ZERO);

        // Frames of 150 kB offered at 30 fps for 10 s: what goes out is ~1 MB/s.
        let mut p = RatePacer::new(8000, t0);
        let mut sent = 0usize;
        for tick in 0..300u64 {
            let now = ms(tick * 1000 / 30);
            if p.wait(now).is_zero() {
                p.spend(150_000, false, now);
                sent += 150_000;
            }
        }
        let rate = sent as f64 / 10.0;
        assert!((900_000.0..=1_100_000.0).contains(&rate), "{rate} B/s");
    }

    #[test]
    fn light_content_is_never_held() {
        let t0 = Instant::now();
        let mut p = RatePacer::new(2000, t0);
        for tick in 0..600u64 {
            let now = t0 + Duration::from_millis(tick * 1000 / 60);
            assert_eq!(p.wait(now), Duration::ZERO, "tick {tick}");
            p.spend(2_000, false, now); // 60 fps x 2 kB = 960 kbit/s < 2000
        }
    }

    #[test]
    fn a_lower_rate_keeps_the_wait_a_debt_stood_for_not_its_bytes() {
        let t0 = Instant::now();
        // 6000 kbit/s = 750 kB/s; 450 kB spent at once: 75 kB (100 ms) in debt.
        let mut p = RatePacer::new(6000, t0);
        p.spend(450_000, false, t0);
        assert_eq!(p.wait(t0), Duration::from_millis(100));
        // The link falls to 150 kbit/s (18.75 kB/s): still 100 ms, not 4 s.
        p.set_rate(150, t0);
        assert_eq!(p.wait(t0), Duration::from_millis(100));
        // A debt never stands for more than the burst's time.
        let mut p = RatePacer::new(6000, t0);
        p.spend(2_000_000, false, t0);
        p.set_rate(150, t0);
        assert_eq!(p.wait(t0), PACER_BURST);
        // Going up repays it sooner; credit is capped at the new burst.
        let mut p = RatePacer::new(1000, t0);
        p.spend(62_500 + 12_500, false, t0);
        p.set_rate(2000, t0);
        assert_eq!(p.wait(t0), Duration::from_millis(50));
    }

    #[test]
    fn a_keyframe_is_repaid_by_a_lower_frame_rate_not_a_stall() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // 580 kbit/s = 72.5 kB/s, already in debt by the frames before; a 60 kB keyframe, then
        // 2 kB frames offered at 30 fps.
        let mut p = RatePacer::new(580, t0);
        p.spend(36_250 + 5_000, false, t0);
        p.spend(60_000, true, t0);
        let mut encoded = Vec::new();
        let mut longest = Duration::ZERO;
        let mut last = t0;
        for tick in 1..=90u64 {
            let now = ms(tick * 1000 / 30);
            if p.wait(now).is_zero() {
                p.spend(2_000, false, now);
                longest = longest.max(now - last);
                last = now;
                encoded.push(now);
            }
        }
        // Never the stall that counting it at once made (60 kB + 5 kB of debt at 72.5 kB/s:
        // 0.9 s), but a lower frame rate while it is repaid…
        assert!(longest <= Duration::from_millis(150), "{longest:?}");
        assert!(
            (60..=85).contains(&encoded.len()),
            "{} frames in 3 s",
            encoded.len()
        );
        // …and frames the rate has room for are not held once it is.
        let late: Vec<_> = encoded.iter().filter(|&&t| t > ms(1_500)).collect();
        assert_eq!(late.len(), 45, "full rate from 1.5 s: {late:?}");
    }

    #[test]
    fn idle_time_does_not_bank_more_than_the_burst() {
        let t0 = Instant::now();
        let mut p = RatePacer::new(8000, t0);
        let later = t0 + Duration::from_secs(60);
        p.spend(600_000, false, later);
        // 500 kB of burst, not 60 s of budget: 100 kB in debt.
        assert_eq!(p.wait(later), Duration::from_millis(100));
    }
}
