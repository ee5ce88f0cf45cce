//! H.264 encoding with openh264, tuned for interactive screen sharing:
//! real-time mode, constrained baseline (no B-frames, no lookahead), no frame
//! skipping (a skipped frame is an empty packet the decoder chokes on), an infinite GOP,
//! and IDR frames only when asked for (a viewer joined or lost a picture).

use std::time::{Duration, Instant};

use bytes::Bytes;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, UsageType, VuiConfig,
};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

use crate::picture::ChangeMark;
use crate::picture::I420Picture;
use crate::still::StillMap;

/// Our option in the patched openh264 (`third_party/openh264-sys2`): the still-macroblock
/// map for the next frame.
const ENCODER_OPTION_STATIC_MB_MAP: openh264_sys2::ENCODER_OPTION =
    openh264_sys2::ENCODER_OPTION_BITS_VARY_PERCENTAGE + 1;

/// What the encoder is asked to do. Bitrate and fps can be changed while running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderSettings {
    pub fps: u32,
    pub bitrate_kbps: u32,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            fps: 30,
            bitrate_kbps: 8_000,
        }
    }
}

impl EncoderSettings {
    /// The openh264 configuration these settings stand for.
    pub fn config(&self) -> EncoderConfig {
        EncoderConfig::new()
            // openh264's "camera" real-time mode, not its screen-content mode. Screen-content
            // mode runs a scroll detector over the whole picture before every frame, in
            // plain C; on a flat background it scans every line of every region for one
            // with texture (perf: 29% of the sender's CPU, `WelsVP::CheckLine`). Measured
            // with tests/bench/g2g.mjs, 1080p, 30 fps, same run as the x264 reference on a
            // loaded 2-core box: a clock on a static desktop 49 -> 19 ms p50 and 38 -> 23%
            // of a core; 30% of the screen scrolling 108 -> 39 ms p50 and 17 -> 28 fps.
            .usage_type(UsageType::CameraVideoRealTime)
            .profile(Profile::Baseline)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(self.bitrate_kbps.saturating_mul(1000)))
            .max_frame_rate(FrameRate::from_hz(self.fps.max(1) as f32))
            // Every frame we hand over must come out: a skipped frame is an empty packet.
            .skip_frames(false)
            // 0 = only the first frame is an IDR; later ones come from `force_idr`.
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            // Scene-change detection would insert IDRs of its own; requests drive them.
            .scene_change_detect(false)
            // Whole-picture analysis passes: CPU before every frame, for quality we do not
            // need at the bit rates we run.
            .adaptive_quantization(false)
            .background_detection(false)
            .complexity(Complexity::Low)
            // Slices of at most one RTP payload, encoded on up to 4 cores (`porthole
            // bench`, 1080p, 2 cores: a busy frame 15 -> 8.5 ms, an IDR 15 -> 8 ms, for ~7%
            // more bytes and ~55 MB more memory); each slice travels in one packet (no
            // FU-A), so a lost packet costs one slice, not the frame. (openh264's "auto"
            // thread count took more memory for no gain on 2 cores.)
            .max_slice_len(MAX_SLICE_BYTES)
            .num_threads(encoder_threads())
            // Say what the colours are, so players do not guess.
            .vui(VuiConfig::bt601())
    }
}

/// Largest slice NAL unit the encoder makes: fits one RTP payload
/// ([`types::RTP_PAYLOAD_MTU`]) with room to spare, checked where both are defined.
pub use types::MAX_SLICE_BYTES;

/// Encoder threads: one per core, at most 4.
fn encoder_threads() -> u16 {
    #[cfg(test)]
    if let Some(n) = tests::THREADS.with(|t| t.get()) {
        return n;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4) as u16)
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot start the H.264 encoder: {0}")]
    Init(String),
    #[error("H.264 encoding failed: {0}")]
    Encode(String),
}

/// One openh264 encoder. Create one per source, never one per viewer.
pub struct H264Encoder {
    inner: Encoder,
    settings: EncoderSettings,
    frames: u64,
    buf: Vec<u8>,
    /// The lowest bit rate since the current openh264 encoder was made.
    low_kbps: u32,
    /// The bit rate the encoder was configured with: the ceiling (openh264 refuses a
    /// target over the maximum it was started with, which the crate sets to the target).
    max_kbps: u32,
    /// Whether the current openh264 encoder has initialised (at its first picture; it
    /// takes no rate option before).
    started: bool,
    /// Frames in a row that look starved (see [`STARVED_QP`]).
    starved_frames: u32,
    last_reset: Option<Instant>,
    /// Bytes of the last keyframe (what the IDR of a fresh encoder will likely cost).
    last_keyframe_bytes: usize,
    /// Rate-control resets so far.
    pub resets: u64,
    /// The size of the pictures the current openh264 encoder was given.
    dimensions: Option<(usize, usize)>,
    /// A fresh encoder initialising on a helper thread (see [`Spare`]).
    spare: Option<Spare>,
    /// Which macroblocks openh264 may skip without mode decision.
    still: StillMap,
    /// The last frame's QP (for [`StillMap`]).
    last_qp: Option<u32>,
    /// Macroblocks openh264 was told are still for the last frame (0 if it refused the map).
    still_told: usize,
}

/// A fresh openh264 encoder made and initialised on a helper thread for a new size, while
/// the current one goes on encoding the old size. openh264 initialises at its first
/// picture: 20-40 ms for 1080p on an idle 2-core machine, but 100-400 ms beside Chromium in
/// the latency benchmark, where the picture froze for that long at each change of size (a
/// 1080p keyframe of 226 kB once left 0.4 s after its capture). (A rate-control reset still
/// makes its fresh encoder on the encoding thread.)
struct Spare {
    dimensions: (usize, usize),
    settings: EncoderSettings,
    ready: std::sync::mpsc::Receiver<Result<Encoder, EncodeError>>,
}

impl Spare {
    /// Starts one, initialised with `picture` (the picture it is for: openh264's rate
    /// control sizes the next IDR by the last one's complexity, and after a black picture
    /// a 1080p IDR at 2.8 Mbit/s was 280 kB where a fresh encoder's was 180-225 kB).
    fn start(settings: EncoderSettings, picture: I420Picture) -> Self {
        let dimensions = picture.dimensions();
        let (tx, ready) = std::sync::mpsc::sync_channel(1);
        let warm = move || {
            let made = H264Encoder::openh264(settings).and_then(|mut enc| {
                // Its first picture initialises it; the next real one is an IDR.
                enc.encode(&picture)
                    .map_err(|e| EncodeError::Init(e.to_string()))?;
                Ok(enc)
            });
            // Gone if the size changed again meanwhile: then it is dropped here.
            let _ = tx.send(made);
        };
        // Named as the encoding thread, so CPU by thread counts it there.
        if let Err(e) = std::thread::Builder::new()
            .name("porthole-encode".into())
            .spawn(warm)
        {
            tracing::warn!("cannot start a thread to initialise an encoder: {e}");
        }
        Self {
            dimensions,
            settings,
            ready,
        }
    }
}

/// openh264's rate control carries a debt of overshoot forward (`bFixRCOverShoot`, on and
/// not configurable through the crate) and, when the bit rate goes up, scales the debt up
/// with it. After a congested spell (keyframes and busy frames far over a 400 kbit/s
/// target), a link freed to 1.8 Mbit/s got frames of 1.7 kB at the highest QP for 6 s:
/// the estimate, capped by what arrives, could not grow. (openh264 caps its QP at 42 when
/// starving a low bit rate.) A frame at this QP or above…
pub const STARVED_QP: u32 = 40;
/// …smaller than this share of the target's bytes per frame…
pub const STARVED_SHARE: f64 = 0.6;
/// …this many times (less a third of it for each frame that is not), once the target is [`STARVED_RISE`] × its lowest since the
/// encoder was made, makes a fresh encoder (its first frame an IDR; the debt gone), at most once
/// every [`RESET_EVERY`].
pub const STARVED_FRAMES: u32 = 15;
/// See [`STARVED_FRAMES`].
pub const STARVED_RISE: f64 = 1.5;
/// See [`STARVED_FRAMES`].
pub const RESET_EVERY: Duration = Duration::from_secs(5);
/// A fresh encoder starts with an IDR: only when the last keyframe fits in this much of the
/// target's bytes. (Behind a 3 Mbit/s link, the 180 kB IDR of a 1080p reset was 0.5 s of the
/// link: it overflowed the bottleneck's queue, and the loss cost a freeze and a backoff. A
/// starved encoder's small frames are a picture that moves; that IDR was none.)
pub const RESET_KEYFRAME_BUDGET: Duration = Duration::from_millis(250);
/// …or once this many frames in a row looked starved: behind a link that was freed, the
/// starved encoder's small frames kept the estimate (capped by what arrives) from growing,
/// and the target never got back up.
pub const STARVED_FRAMES_LONG: u32 = 60;

/// The output of one `encode` call.
pub struct Encoded {
    pub data: Bytes,
    pub keyframe: bool,
}

impl H264Encoder {
    pub fn new(settings: EncoderSettings) -> Result<Self, EncodeError> {
        Ok(Self {
            inner: Self::openh264(settings)?,
            settings,
            frames: 0,
            buf: Vec::new(),
            low_kbps: settings.bitrate_kbps,
            max_kbps: settings.bitrate_kbps,
            started: false,
            starved_frames: 0,
            last_reset: None,
            last_keyframe_bytes: 0,
            resets: 0,
            dimensions: None,
            spare: None,
            still: StillMap::default(),
            last_qp: None,
            still_told: 0,
        })
    }

    /// A configured openh264 encoder (it initialises at its first picture).
    fn openh264(settings: EncoderSettings) -> Result<Encoder, EncodeError> {
        let mut inner = Encoder::with_api_config(OpenH264API::from_source(), settings.config())
            .map_err(|e| EncodeError::Init(e.to_string()))?;
        // openh264 initialises at the first picture and prints its parameter notes
        // ("will take uiMaxNalsize", "bitrate can't be controlled ... without enabling skip
        // frame": both what we ask for) as warnings on stderr, which made every share's log
        // look broken. Errors only; the trace level is the one option it takes before then.
        let mut level = openh264_sys2::WELS_LOG_ERROR;
        // SAFETY: the option takes a pointer to an int (as the crate itself passes it); the
        // encoder exists and is not shared yet.
        let quiet = unsafe {
            inner.raw_api().set_option(
                openh264_sys2::ENCODER_OPTION_TRACE_LEVEL,
                (&raw mut level).cast(),
            )
        };
        if quiet != 0 {
            tracing::debug!("openh264 kept its trace level ({quiet})");
        }
        Ok(inner)
    }

    pub fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// Changes the target bit rate and frame rate of the running encoder (no new keyframe).
    pub fn set_rate(&mut self, bitrate_kbps: u32, fps: u32) -> Result<(), EncodeError> {
        if (bitrate_kbps, fps) == (self.settings.bitrate_kbps, self.settings.fps) {
            return Ok(());
        }
        if !self.started {
            // openh264 initialises at the first picture and takes no option before it: the
            // encoder not yet started is made again with the new rate.
            self.settings = EncoderSettings { fps, bitrate_kbps };
            self.low_kbps = self.low_kbps.min(bitrate_kbps);
            self.inner = Self::openh264(self.settings)?;
            return Ok(());
        }
        let kbps_to_bps =
            |kbps: u32| i32::try_from(u64::from(kbps.max(1)) * 1000).unwrap_or(i32::MAX);
        let mut max = openh264_sys2::SBitrateInfo {
            iLayer: openh264_sys2::SPATIAL_LAYER_0,
            iBitrate: kbps_to_bps(self.max_kbps.max(bitrate_kbps)),
        };
        let mut bitrate = openh264_sys2::SBitrateInfo {
            iLayer: openh264_sys2::SPATIAL_LAYER_ALL,
            iBitrate: kbps_to_bps(bitrate_kbps),
        };
        let mut frame_rate = fps.max(1) as f32;
        // SAFETY: both options take a pointer to the value's type, as libwebrtc's H.264
        // encoder passes them; the encoder is initialised (it exists) and not shared.
        let (m, a, b) = unsafe {
            let api = self.inner.raw_api();
            (
                // The ceiling first (an encoder made again after a reset started lower).
                api.set_option(
                    openh264_sys2::ENCODER_OPTION_MAX_BITRATE,
                    (&raw mut max).cast(),
                ),
                api.set_option(
                    openh264_sys2::ENCODER_OPTION_BITRATE,
                    (&raw mut bitrate).cast(),
                ),
                api.set_option(
                    openh264_sys2::ENCODER_OPTION_FRAME_RATE,
                    (&raw mut frame_rate).cast(),
                ),
            )
        };
        if m != 0 || a != 0 || b != 0 {
            return Err(EncodeError::Encode(format!(
                "cannot set the rate to {bitrate_kbps} kbit/s at {fps} fps (openh264 {m}/{a}/{b})"
            )));
        }
        self.settings = EncoderSettings { fps, bitrate_kbps };
        self.low_kbps = self.low_kbps.min(bitrate_kbps);
        Ok(())
    }

    /// Whether a picture of `dimensions` can be encoded now without waiting for a fresh
    /// encoder to initialise: yes for the current size (or before the first picture); for a
    /// new size, only once one made for it on a helper thread is ready (the first call
    /// starts it, with the picture `picture` makes). Meanwhile, encode the current size.
    pub fn ready_for(
        &mut self,
        dimensions: (usize, usize),
        picture: impl FnOnce() -> I420Picture,
    ) -> bool {
        if !self.started || self.dimensions == Some(dimensions) {
            return true;
        }
        if self
            .spare
            .as_ref()
            .is_none_or(|s| s.dimensions != dimensions)
        {
            self.spare = Some(Spare::start(self.settings, picture()));
        }
        self.take_spare(dimensions)
    }

    /// Puts a ready spare for `dimensions` in the current encoder's place (its next picture
    /// an IDR); true if it did, or if the spare failed (`encode` then starts one itself).
    fn take_spare(&mut self, dimensions: (usize, usize)) -> bool {
        let Some(spare) = self.spare.as_ref().filter(|s| s.dimensions == dimensions) else {
            return false;
        };
        let made = match spare.ready.try_recv() {
            Ok(made) => made,
            Err(std::sync::mpsc::TryRecvError::Empty) => return false,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(EncodeError::Init(
                "the thread initialising it is gone".into(),
            )),
        };
        let spare = self.spare.take().expect("checked above");
        match made {
            Ok(inner) => {
                let wanted = self.settings;
                self.inner = inner;
                self.inner.force_intra_frame();
                self.dimensions = Some(dimensions);
                self.settings = spare.settings;
                self.low_kbps = spare.settings.bitrate_kbps;
                self.starved_frames = 0;
                // The rate set while it initialised.
                if let Err(e) = self.set_rate(wanted.bitrate_kbps, wanted.fps) {
                    tracing::warn!("{e}");
                }
            }
            Err(e) => tracing::warn!("{e}; starting one on the encoding thread"),
        }
        true
    }

    /// Encodes one picture; `force_idr` makes it a keyframe.
    pub fn encode(
        &mut self,
        picture: &impl YUVSource,
        force_idr: bool,
    ) -> Result<Encoded, EncodeError> {
        self.encode_marked(picture, force_idr, None)
    }

    /// [`encode`](Self::encode), told where `picture` stands in its capture's change log
    /// (what changed since the last picture is then known without comparing them).
    pub fn encode_marked(
        &mut self,
        picture: &impl YUVSource,
        force_idr: bool,
        mark: Option<&ChangeMark>,
    ) -> Result<Encoded, EncodeError> {
        let dimensions = picture.dimensions();
        if self.started && self.dimensions != Some(dimensions) {
            // A new size: openh264-rs re-initialises the encoder with the bit rate it was
            // made with, not the one set since (after a halving behind a link stepped down to
            // 2 Mbit/s, the keyframe and the frames after it were made for the configured
            // 8 Mbit/s: 80, 80, 65, 51 kB, a burst the link lost). A fresh encoder at the
            // current rate instead (its first frame an IDR, as the new size needs anyway).
            self.start_afresh()?;
        }
        self.dimensions = Some(dimensions);
        // (A fresh encoder's first frame is an IDR.)
        if force_idr && self.started {
            self.inner.force_intra_frame();
        }
        let started = Instant::now();
        let mut map = self.still.update(picture, self.last_qp, mark);
        self.still_told = 0;
        if self.started {
            // SAFETY: our patched openh264 copies the map's pointer and length; `map` and
            // the bytes it points at (`self.still`) live until after the encode below, and
            // the option is set again before every encode.
            let r = unsafe {
                self.inner
                    .raw_api()
                    .set_option(ENCODER_OPTION_STATIC_MB_MAP, (&raw mut map).cast())
            };
            if r == 0 {
                self.still_told = self.still.still;
            } else {
                tracing::debug!("openh264 refused the still-macroblock map ({r})");
            }
        }
        let stream = self
            .inner
            .encode(picture)
            .map_err(|e| EncodeError::Encode(e.to_string()))?;
        let keyframe = matches!(stream.frame_type(), FrameType::IDR | FrameType::I);
        self.buf.clear();
        stream.write_vec(&mut self.buf);
        self.frames += 1;
        self.started = true;
        if keyframe {
            self.last_keyframe_bytes = self.buf.len();
        } else {
            self.watch_rate_control(self.buf.len())?;
        }
        let qp = self.last_qp();
        self.last_qp = qp;
        self.still.encoded(qp, keyframe);
        tracing::trace!(
            frame = self.frames,
            qp,
            keyframe,
            still_mbs = self.still_told,
            bytes = self.buf.len(),
            encode_us = started.elapsed().as_micros() as u64,
            "encoded"
        );
        Ok(Encoded {
            data: Bytes::copy_from_slice(&self.buf),
            keyframe,
        })
    }
}

impl H264Encoder {
    /// Macroblocks of the last frame openh264 was told are still (see [`StillMap`]).
    pub fn still_macroblocks(&self) -> usize {
        self.still_told
    }

    /// The QP of the last frame, from openh264's statistics.
    fn last_qp(&mut self) -> Option<u32> {
        let mut stats = openh264_sys2::SEncoderStatistics::default();
        // SAFETY: the option fills an SEncoderStatistics (codec_app_def.h); the encoder
        // exists and is ours alone.
        let r = unsafe {
            self.inner.raw_api().get_option(
                openh264_sys2::ENCODER_OPTION_GET_STATISTICS,
                (&raw mut stats).cast(),
            )
        };
        (r == 0).then_some(stats.uiAverageFrameQP)
    }

    /// Replaces openh264's encoder with a fresh one at the current settings (its first frame
    /// an IDR; no rate-control debt).
    fn start_afresh(&mut self) -> Result<(), EncodeError> {
        self.inner = Self::openh264(self.settings)?;
        self.started = false;
        self.low_kbps = self.settings.bitrate_kbps;
        self.starved_frames = 0;
        Ok(())
    }

    /// Counts starved frames (see [`STARVED_QP`]) and makes a fresh encoder when due.
    fn watch_rate_control(&mut self, bytes: usize) -> Result<(), EncodeError> {
        let EncoderSettings { bitrate_kbps, fps } = self.settings;
        let risen = f64::from(bitrate_kbps) >= f64::from(self.low_kbps) * STARVED_RISE;
        let per_frame = f64::from(bitrate_kbps) * 1000.0 / 8.0 / f64::from(fps.max(1));
        // Mostly starved frames, not all: a busy frame now and then gets its bits.
        let starved = risen
            && (bytes as f64) < per_frame * STARVED_SHARE
            && self.last_qp().is_some_and(|qp| qp >= STARVED_QP);
        self.starved_frames = if starved {
            self.starved_frames + 1
        } else if risen {
            self.starved_frames.saturating_sub(STARVED_FRAMES / 3)
        } else {
            0
        };
        let budget = f64::from(bitrate_kbps) * 1000.0 / 8.0 * RESET_KEYFRAME_BUDGET.as_secs_f64();
        let due = self.last_reset.is_none_or(|t| t.elapsed() >= RESET_EVERY)
            && (self.last_keyframe_bytes as f64 <= budget
                || self.starved_frames >= STARVED_FRAMES_LONG);
        if self.starved_frames >= STARVED_FRAMES && due {
            tracing::debug!(
                bitrate_kbps,
                low_kbps = self.low_kbps,
                bytes,
                "rate control starved after a rise: a fresh encoder"
            );
            self.start_afresh()?;
            self.last_reset = Some(Instant::now());
            self.resets += 1;
        }
        Ok(())
    }
}

/// Splits an Annex B byte stream into NAL units (the one scanner, shared with `net`).
pub use annexb::nal_units;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::Converter;
    use crate::decoder::H264Decoder;

    fn picture(width: usize, height: usize, seed: u8) -> Converter {
        let mut frame = Vec::with_capacity(width * height * 4);
        for y in 0..height {
            for x in 0..width {
                let v = (x as u8)
                    .wrapping_mul(3)
                    .wrapping_add(seed)
                    .wrapping_add(y as u8);
                frame.extend_from_slice(&[v, v / 2, 255 - v, 0]);
            }
        }
        let mut conv = Converter::new(width, height);
        conv.convert(&frame, width, height);
        conv
    }

    fn nal_types(data: &[u8]) -> Vec<u8> {
        annexb::nal_types(data).collect()
    }

    thread_local! {
        /// Encoder threads for the encoders this test thread makes (None: one per core).
        pub(super) static THREADS: std::cell::Cell<Option<u16>> = const { std::cell::Cell::new(None) };
    }

    /// first_mb_in_slice of each coded slice (the header's first field, ue(v)).
    fn slice_starts(data: &[u8]) -> Vec<u32> {
        annexb::nal_units(data)
            .filter(|n| n.first().is_some_and(|h| matches!(h & 0x1f, 1 | 5)))
            .map(|n| {
                let bit = |i: usize| (n[1 + i / 8] >> (7 - i % 8)) & 1;
                let zeros = (0..).take_while(|&i| bit(i) == 0).count();
                let rest = (0..zeros).fold(0u32, |v, i| v << 1 | u32::from(bit(zeros + 1 + i)));
                (1u32 << zeros) - 1 + rest
            })
            .collect()
    }

    /// openh264's workers run real-time where the process may (`crate::priority`): the
    /// patch makes its SCHED_FIFO request count (upstream's lacked PTHREAD_EXPLICIT_SCHED, so
    /// they inherited the creating thread's normal policy), and falls back to that policy
    /// where it is refused.
    #[test]
    fn encoding_threads_run_real_time_where_permitted() {
        // May this process? (Asked on a thread of its own, which then ends.)
        let permitted = std::thread::spawn(crate::priority::realtime_this_thread)
            .join()
            .unwrap();
        THREADS.with(|t| t.set(Some(2)));
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        THREADS.with(|t| t.set(None));
        for i in 0..3 {
            let out = enc.encode(picture(320, 240, i).picture(), false).unwrap();
            assert!(!out.data.is_empty(), "encodes either way");
        }
        let fifo = crate::priority::thread_policies()
            .into_iter()
            .filter(|(_, policy)| *policy == libc::SCHED_FIFO)
            .count();
        if permitted {
            assert!(
                fifo >= 2,
                "openh264's two workers on SCHED_FIFO: {fifo} threads are"
            );
        } else {
            eprintln!("real-time scheduling not permitted here: only the fallback was checked");
        }
    }

    /// openh264 codes a picture in one partition per thread, each cut into slices, and the
    /// frame waits for the slowest. Partitions of equal size left all the motion of a moving
    /// bottom region to one of two threads (1080p, 30 % moving: 19 % of a core on one, 4 % on
    /// the other). Porthole's patch cuts a P picture's partitions at equal shares of the
    /// expected work, counting still macroblocks light: here the still top three quarters
    /// are one slice, and the second partition starts among the moving rows (equal halves
    /// would start it at macroblock 160, in the still part).
    #[test]
    fn partitions_share_the_work_not_the_picture() {
        THREADS.with(|t| t.set(Some(2)));
        let (w, h) = (320, 256);
        let (mbs, still_mbs) = (20 * 16, 20 * 12);
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        THREADS.with(|t| t.set(None));
        let mut dec = H264Decoder::new().unwrap();
        let mut checked = 0;
        for i in 0..16usize {
            let mut pic = I420Picture {
                y: (0..w * h).map(|k| (80 + (k % w) / 4) as u8).collect(),
                u: vec![128; w * h / 4],
                v: vec![128; w * h / 4],
                width: w,
                height: h,
            };
            // The bottom quarter is noise that changes every frame.
            for y in 192..h {
                for x in 0..w {
                    pic.y[y * w + x] = 40 + ((x * 37 + y * 91 + i * 53) % 171) as u8;
                }
            }
            let out = enc.encode(&pic, false).unwrap();
            assert!(
                dec.decode(&out.data).unwrap().is_some(),
                "frame {i} decodes"
            );
            let starts = slice_starts(&out.data);
            assert!(starts.iter().all(|&s| s < mbs), "frame {i}: {starts:?}");
            // (Until the reference settles, nothing is marked still: equal halves.)
            if enc.still_macroblocks() < still_mbs as usize {
                continue;
            }
            checked += 1;
            assert!(
                starts.iter().all(|&s| s == 0 || s >= still_mbs),
                "frame {i}: a slice starts in the still part: {starts:?}"
            );
        }
        assert!(checked >= 4, "still top in only {checked} frames");
    }

    #[test]
    fn first_frame_is_idr_then_only_p_frames_with_an_infinite_gop() {
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        let first = enc.encode(picture(320, 240, 0).picture(), false).unwrap();
        assert!(first.keyframe);
        let types = nal_types(&first.data);
        assert!(
            types.contains(&7) && types.contains(&8) && types.contains(&5),
            "{types:?}"
        );
        for i in 1..=120u8 {
            let out = enc.encode(picture(320, 240, i).picture(), false).unwrap();
            assert!(!out.keyframe, "frame {i} was a keyframe");
            assert!(!out.data.is_empty(), "frame {i} was skipped");
            assert!(nal_types(&out.data).iter().all(|&t| t == 1), "frame {i}");
        }
    }

    /// A noisy picture (hard to compress): its IDR is far bigger than one RTP payload.
    fn noise(width: usize, height: usize, seed: u32) -> Converter {
        let frame = crate::noise_bytes(width * height * 4, seed);
        let mut conv = Converter::new(width, height);
        conv.convert(&frame, width, height);
        conv
    }

    /// A still picture with a noisy band of `rows` rows that changes every frame.
    fn band(width: usize, height: usize, rows: usize, seed: u32) -> Converter {
        let mut state = seed.wrapping_mul(2_654_435_761) | 1;
        let mut frame = Vec::with_capacity(width * height * 4);
        for y in 0..height {
            for x in 0..width {
                if y < rows {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    frame.extend_from_slice(&[
                        state as u8,
                        (state >> 8) as u8,
                        (state >> 16) as u8,
                        0,
                    ]);
                } else {
                    let v = ((x / 16 + y / 16) % 2 * 200) as u8;
                    frame.extend_from_slice(&[v, v, v, 0]);
                }
            }
        }
        let mut conv = Converter::new(width, height);
        conv.convert(&frame, width, height);
        conv
    }

    #[test]
    fn rate_control_starved_by_an_earlier_overshoot_is_started_afresh() {
        // A fresh encoder at 1 Mbit/s (4.2 kB a frame) gives this picture ~4.1 kB frames
        // at QP 27.
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        // The picture's keyframe (small: a fresh encoder's IDR fits the rate).
        enc.encode(band(640, 360, 8, 0).picture(), false).unwrap();
        // A congested spell: 100 kbit/s, and noise far over it (a deep debt).
        enc.set_rate(100, 30).unwrap();
        for i in 0..30 {
            enc.encode(noise(640, 360, i).picture(), false).unwrap();
        }
        // The link is free again: openh264 alone would keep it at QP 42 and ~0.9 kB a
        // frame for as long as its debt lasts (seconds; it grows with the rate).
        enc.set_rate(1000, 30).unwrap();
        let sizes: Vec<usize> = (0..60u32)
            .map(|i| {
                enc.encode(band(640, 360, 8, i).picture(), false)
                    .unwrap()
                    .data
                    .len()
            })
            .collect();
        let mean = |s: &[usize]| s.iter().sum::<usize>() as f64 / s.len() as f64;
        let (starved, after) = (mean(&sizes[1..STARVED_FRAMES as usize]), mean(&sizes[40..]));
        assert_eq!(enc.resets, 1, "sizes {sizes:?}");
        assert!(
            starved < 1500.0 && after > 2.5 * starved,
            "starved {starved:.0} B, then {after:.0} B a frame: {sizes:?}"
        );
        // Afresh, it still goes up to the configured rate.
        enc.set_rate(EncoderSettings::default().bitrate_kbps, 30)
            .unwrap();
    }

    #[test]
    fn a_new_size_is_encoded_at_the_rate_set_since_not_the_one_configured() {
        // Made at 8 Mbit/s (33 kB a frame at 30 fps), then set to 300 kbit/s (1.25 kB).
        let settings = EncoderSettings {
            fps: 30,
            bitrate_kbps: 8000,
        };
        let mut enc = H264Encoder::new(settings).unwrap();
        for i in 0..10 {
            enc.encode(noise(640, 360, i).picture(), false).unwrap();
        }
        enc.set_rate(300, 30).unwrap();
        for i in 10..40 {
            enc.encode(noise(640, 360, i).picture(), false).unwrap();
        }
        // The picture is halved: a keyframe, then frames as small as openh264 makes noise
        // at 300 kbit/s (~13 kB at its highest QP). openh264-rs alone re-initialised at
        // 8 Mbit/s: frames of 25-50 kB, for as long as no other rate was set.
        let frames: Vec<Encoded> = (40..50)
            .map(|i| enc.encode(noise(320, 180, i).picture(), false).unwrap())
            .collect();
        assert!(frames[0].keyframe);
        let after: Vec<usize> = frames[1..].iter().map(|f| f.data.len()).collect();
        let tail = after[after.len() - 4..].iter().sum::<usize>() as f64 / 4.0;
        assert!(
            tail < 18_000.0,
            "frames after the new size's keyframe: {after:?}"
        );
        assert_eq!(enc.settings().bitrate_kbps, 300);
    }

    fn i420(c: &Converter) -> I420Picture {
        let p = c.picture();
        let (width, height) = p.dimensions();
        I420Picture {
            y: p.y().to_vec(),
            u: p.u().to_vec(),
            v: p.v().to_vec(),
            width,
            height,
        }
    }

    #[test]
    fn a_new_size_waits_for_its_encoder_off_the_encoding_thread() {
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        let mut dec = H264Decoder::new().unwrap();
        assert!(
            enc.ready_for((640, 360), || i420(&band(640, 360, 8, 0))),
            "before the first picture, any size"
        );
        let first = enc.encode(band(640, 360, 8, 0).picture(), false).unwrap();
        assert!(first.keyframe);
        dec.decode(&first.data).unwrap();
        enc.set_rate(2000, 30).unwrap();
        // Halved: not at once; the current size goes on, as P-frames, until it is ready.
        let half = || i420(&band(320, 180, 8, 0));
        assert!(!enc.ready_for((320, 180), half));
        let mut waited = 0;
        while !enc.ready_for((320, 180), half) {
            let out = enc
                .encode(band(640, 360, 8, waited).picture(), false)
                .unwrap();
            assert!(!out.keyframe, "frame {waited} of the old size");
            dec.decode(&out.data).unwrap();
            waited += 1;
            assert!(
                waited < 500,
                "no encoder for the new size after {waited} frames"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Then the new size starts with an IDR, at the rate set meanwhile.
        let out = enc.encode(band(320, 180, 8, 0).picture(), false).unwrap();
        assert!(out.keyframe);
        assert_eq!(enc.settings().bitrate_kbps, 2000);
        let shown = dec.decode(&out.data).unwrap().expect("a picture");
        assert_eq!(shown.size(), (320, 180));
        for i in 1..5 {
            let out = enc.encode(band(320, 180, 8, i).picture(), false).unwrap();
            assert!(!out.keyframe);
            assert!(dec.decode(&out.data).unwrap().is_some());
        }
        // And back: the full size waits for its own.
        assert!(!enc.ready_for((640, 360), || i420(&band(640, 360, 8, 0))));
    }

    #[test]
    fn a_fresh_encoder_waits_longer_when_its_keyframe_would_not_fit_the_rate() {
        // The same starved spell, but the last keyframe was of noise: a fresh encoder's IDR
        // would cost more than RESET_KEYFRAME_BUDGET of the new rate, so it stays starved
        // for STARVED_FRAMES_LONG frames, not STARVED_FRAMES.
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        enc.set_rate(100, 30).unwrap();
        let idr = enc.encode(noise(640, 360, 0).picture(), false).unwrap();
        assert!(idr.keyframe);
        for i in 1..30 {
            enc.encode(noise(640, 360, i).picture(), false).unwrap();
        }
        enc.set_rate(1000, 30).unwrap();
        let budget = 1000.0 * 1000.0 / 8.0 * RESET_KEYFRAME_BUDGET.as_secs_f64();
        assert!(idr.data.len() as f64 > budget, "IDR {} B", idr.data.len());
        for i in 0..STARVED_FRAMES_LONG - 10 {
            enc.encode(band(640, 360, 8, i).picture(), false).unwrap();
        }
        assert_eq!(enc.resets, 0);
        // Unless it stays starved for long.
        for i in 0..40 {
            enc.encode(band(640, 360, 8, i).picture(), false).unwrap();
        }
        assert_eq!(enc.resets, 1);
    }

    #[test]
    fn slices_fit_one_rtp_payload_and_decode_to_the_whole_picture() {
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        let mut dec = H264Decoder::new().unwrap();
        for (i, force_idr) in [(0, false), (1, false), (2, true)] {
            let out = enc.encode(noise(640, 360, i).picture(), force_idr).unwrap();
            let slices: Vec<&[u8]> = nal_units(&out.data)
                .filter(|n| matches!(n[0] & 0x1f, 1 | 5))
                .collect();
            assert!(
                out.data.len() > 20_000,
                "noise compressed to {}",
                out.data.len()
            );
            assert!(slices.len() > 10, "frame {i}: {} slices", slices.len());
            for s in &slices {
                assert!(
                    s.len() <= MAX_SLICE_BYTES as usize,
                    "a {}-byte slice",
                    s.len()
                );
            }
            let picture = dec.decode(&out.data).unwrap().expect("a picture");
            assert_eq!(picture.size(), (640, 360));
        }
    }

    #[test]
    fn still_macroblocks_are_skipped_and_a_change_among_them_decodes() {
        let (w, h) = (320, 240);
        let mut pic = I420Picture {
            y: (0..w * h).map(|i| 40 + ((i % w) / 2) as u8).collect(),
            u: vec![128; w * h / 4],
            v: vec![128; w * h / 4],
            width: w,
            height: h,
        };
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        let mut dec = H264Decoder::new().unwrap();
        let mut shown = None;
        for i in 0..=crate::still::STILL_AFTER as usize + 2 {
            let out = enc.encode(&pic, false).unwrap();
            let still = enc.still_macroblocks();
            // The keyframe and the frames that refine it go through mode decision.
            let refining = i < crate::still::STILL_AFTER as usize;
            assert_eq!(still == 0, refining, "frame {i}: {still} still");
            shown = Some(
                dec.decode(&out.data)
                    .unwrap()
                    .expect("a picture")
                    .to_picture(),
            );
        }
        assert_eq!(enc.still_macroblocks(), (w / 16) * (h / 16));
        let before = shown.unwrap();
        // A white square over macroblock columns 9-10 and rows 6-8.
        for y in 104..136 {
            pic.y[y * w + 144..y * w + 176].fill(235);
        }
        let out = enc.encode(&pic, false).unwrap();
        assert_eq!(enc.still_macroblocks(), (w / 16) * (h / 16) - 6);
        let after = dec
            .decode(&out.data)
            .unwrap()
            .expect("a picture")
            .to_picture();
        let red = |p: &crate::decoder::Picture, x: usize, y: usize| p.rgba[(y * w + x) * 4];
        assert!(red(&after, 160, 120) > 240, "the square shows");
        for (x, y) in [
            (20, 20),
            (140, 120),
            (180, 120),
            (160, 100),
            (160, 140),
            (300, 230),
        ] {
            let (a, b) = (red(&after, x, y), red(&before, x, y));
            assert!(a.abs_diff(b) <= 4, "({x}, {y}) was {b}, now {a}");
        }
    }

    /// Our patch's shortcuts: where openh264's reconstruction already holds the reference, a
    /// still macroblock is not copied into it; only the macroblocks that changed are copied
    /// into its source pictures and analysed; a P_Skip macroblock among P_Skip ones is not
    /// deblocked. The stream must be byte for byte the one made without them, or the
    /// encoder would be coding against pixels the decoder does not have. A square moves
    /// across a smooth picture and rests, so that still macroblocks border moving ones
    /// (whose deblocked edges change them) and become still again. The height is not a
    /// whole number of macroblocks, as 1080 is not (openh264 pads the last row). On the
    /// right, texture scrolls in a T of macroblocks (the bar sideways, the stem down): the
    /// still macroblock right of the stem, under the bar, has moving neighbours left and
    /// above, so its P_Skip vector is theirs, not zero, and it is not a plain P_Skip.
    #[test]
    fn a_square_moving_among_still_macroblocks_codes_the_same_stream_without_shortcuts() {
        let (w, h) = (352, 120);
        let background: Vec<u8> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                // Smooth (where macroblocks meet, the deblocking filter works), with a
                // little texture for the motion search.
                (90 + (x + y) / 8 + (x * 7 + y * 13) % 5) as u8
            })
            .collect();
        // A low rate: a coarse quantiser leaves steps at macroblock edges for the
        // deblocking filter to smooth.
        let settings = EncoderSettings {
            fps: 30,
            bitrate_kbps: 150,
        };
        let mut enc = H264Encoder::new(settings).unwrap();
        let mut copying = H264Encoder::new(settings).unwrap();
        copying.still.copy_always = true;
        let mut dec = H264Decoder::new().unwrap();
        let mut skipped = 0;
        for i in 0..150usize {
            let mut pic = I420Picture {
                y: background.clone(),
                u: vec![128; w * h / 4],
                v: vec![128; w * h / 4],
                width: w,
                height: h,
            };
            // Moves for 24 frames, then stays for 24 (its pixels still changing): the
            // macroblocks around it become still next to coded ones.
            let step = (i % 48).min(24) + (i / 48) * 24;
            let (sx, sy) = ((step * 3) % (256 - 24), 40 + (i / 48) * 16);
            // Noisy, so that its macroblocks carry coefficients up to their edges.
            for y in sy..sy + 24 {
                for x in sx..sx + 24 {
                    pic.y[y * w + x] = 60 + ((x * 37 + y * 91 + i * 53) % 131) as u8;
                }
            }
            // The T: the bar (macroblock row 1, columns 16-21) scrolls 2 pixels a frame
            // sideways, the stem (column 18, rows 1-5) 2 pixels a frame down.
            let texture =
                |a: usize, b: usize| 40 + ((a * 29 + b * 7 + (a / 3) * (b / 5)) % 150) as u8;
            for y in 16..96 {
                for x in 256..352 {
                    let (bar, stem) = (y < 32, (288..304).contains(&x));
                    if bar {
                        pic.y[y * w + x] = texture(x + 2 * i, y);
                    } else if stem {
                        pic.y[y * w + x] = texture(x, y + 1000 - 2 * i);
                    }
                }
            }
            let out = enc.encode(&pic, false).unwrap();
            let reference = copying.encode(&pic, false).unwrap();
            assert!(
                out.data == reference.data,
                "frame {i} differs from the one made without shortcuts"
            );
            skipped += enc.still_macroblocks();
            assert!(
                dec.decode(&out.data).unwrap().is_some(),
                "frame {i} decodes"
            );
        }
        assert!(
            skipped > 150 * 100,
            "still macroblocks were coded as such: {skipped}"
        );
    }

    #[test]
    fn unchanged_pictures_still_produce_frames() {
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        let pic = picture(160, 128, 9);
        for _ in 0..10 {
            assert!(!enc.encode(pic.picture(), false).unwrap().data.is_empty());
        }
    }

    #[test]
    fn forced_idr_carries_parameter_sets() {
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        enc.encode(picture(320, 240, 0).picture(), false).unwrap();
        enc.encode(picture(320, 240, 1).picture(), false).unwrap();
        let idr = enc.encode(picture(320, 240, 2).picture(), true).unwrap();
        assert!(idr.keyframe);
        let types = nal_types(&idr.data);
        assert_eq!(&types[..2], &[7, 8], "SPS and PPS lead an IDR: {types:?}");
        assert!(types.contains(&5));
    }

    #[test]
    fn stream_is_constrained_baseline_and_decodes() {
        let mut enc = H264Encoder::new(EncoderSettings {
            fps: 60,
            bitrate_kbps: 2_000,
        })
        .unwrap();
        let first = enc.encode(picture(320, 240, 0).picture(), false).unwrap();
        let sps = nal_units(&first.data).find(|n| n[0] & 0x1f == 7).unwrap();
        assert_eq!(sps[1], 66, "profile_idc must be Baseline");
        let mut dec = H264Decoder::new().unwrap();
        let decoded = dec.decode(&first.data).unwrap().expect("a picture");
        assert_eq!(decoded.size(), (320, 240));
        for i in 1..5 {
            let out = enc.encode(picture(320, 240, i).picture(), false).unwrap();
            // No B-frames, no lookahead: every frame decodes as soon as it arrives.
            assert!(
                dec.decode(&out.data).unwrap().is_some(),
                "frame {i} was delayed"
            );
        }
    }
}
