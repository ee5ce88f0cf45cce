//! `porthole bench`: what each stage of the video path costs on this machine, measured on a
//! real X display with real content, and printed as figures (never asserted).
//!
//! Scenes, each for a fixed time at the share's frame rate:
//! - `static`: nothing changes; every tick asks X DAMAGE what changed and gets nothing
//!   (the cost of an idle share).
//! - `strip`: the test pattern's moving bar (about 1/8 of the screen changes per frame,
//!   like typing or a cursor-sized update).
//! - `busy`: the whole picture changes every frame, with thousands of glyph-sized
//!   rectangles (like scrolling a page of text: the worst case for the encoder).
//! - `keyframe`: IDRs of the busy picture (what a joining viewer or a PLI costs).
//!
//! Per frame, the share's own capture path ([`DamageCapturer`]): the damaged bands from X
//! DAMAGE, grabbing them (MIT-SHM), BGRX → I420 of those bands, the snapshot handed to the
//! encoder (copy of what changed since a dropped one), H.264 encode, and what a native
//! viewer does with it: decode and convert to RGBA. The scene's CPU time is this process's (user + system, all threads) over the
//! scene's wall time; the X server's drawing is not counted. Opus: 10 ms stereo frames of a
//! tone, encoded back to back.

use std::fmt;
use std::time::{Duration, Instant};

use crate::audio::{OpusEncoder, CHANNELS, FRAME_SAMPLES, RATE};
use crate::capture::CaptureError;
use crate::decoder::{DecodeError, H264Decoder};
use crate::encoder::{EncodeError, EncoderSettings, H264Encoder};
use crate::pattern::{Painter, PatternError, PALETTES};
use crate::x11grab::DamageCapturer;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Other(String),
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// X display to draw on and capture (e.g. ":99"; `None` = `$DISPLAY`, which the
    /// capture always reads: set it before calling).
    pub display: Option<String>,
    pub monitor: usize,
    pub encoder: EncoderSettings,
    /// Wall time per scene.
    pub scene_time: Duration,
    /// Glyph-sized rectangles drawn per frame in the busy scene.
    pub busy_glyphs: usize,
    /// IDRs encoded in the keyframe scene.
    pub keyframes: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            display: None,
            monitor: 0,
            encoder: EncoderSettings::default(),
            scene_time: Duration::from_secs(5),
            busy_glyphs: 3000,
            keyframes: 10,
        }
    }
}

/// Durations of one stage, in microseconds.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<u64>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_micros() as u64);
    }

    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// The `q` quantile (0..=1), nearest rank; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        let mut v = self.0.clone();
        v.sort_unstable();
        let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some(Duration::from_micros(v[rank - 1]))
    }

    pub fn mean(&self) -> Option<Duration> {
        let n = self.0.len() as u64;
        (n > 0).then(|| Duration::from_micros(self.0.iter().sum::<u64>() / n))
    }
}

/// One scene's figures.
#[derive(Clone, Debug, Default)]
pub struct SceneReport {
    pub name: &'static str,
    pub ticks: usize,
    pub changed: usize,
    /// Asking X DAMAGE which rows changed.
    pub damage: Samples,
    pub grab: Samples,
    pub copy: Samples,
    pub convert: Samples,
    pub encode: Samples,
    pub decode: Samples,
    pub to_rgba: Samples,
    pub encoded_bytes: u64,
    pub keyframes: usize,
    pub wall: Duration,
    pub cpu: Duration,
}

impl SceneReport {
    /// Encoded bit rate over the scene's wall time.
    pub fn kbit_per_s(&self) -> f64 {
        self.encoded_bytes as f64 * 8.0 / 1000.0 / self.wall.as_secs_f64().max(1e-9)
    }

    /// CPU time per tick.
    pub fn cpu_per_tick(&self) -> Duration {
        self.cpu / (self.ticks.max(1) as u32)
    }

    /// CPU use as a share of one core.
    pub fn cpu_percent(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    /// Sender cost of a changed frame: damage + grab + convert + copy + encode (medians).
    pub fn sender_p50(&self) -> Duration {
        [
            &self.damage,
            &self.grab,
            &self.copy,
            &self.convert,
            &self.encode,
        ]
        .iter()
        .filter_map(|s| s.quantile(0.5))
        .sum()
    }
}

/// Everything `run` measured.
#[derive(Clone, Debug, Default)]
pub struct BenchReport {
    pub width: usize,
    pub height: usize,
    pub encoder: EncoderSettings,
    pub scenes: Vec<SceneReport>,
    pub opus: Samples,
    pub opus_bytes: u64,
    /// Peak resident memory of this process (VmHWM), KiB.
    pub peak_rss_kib: Option<u64>,
}

/// This process's CPU time so far (user + system, all threads).
pub fn process_cpu_time() -> Duration {
    // /proc/self/stat fields 14 and 15 (utime, stime) are in clock ticks (USER_HZ = 100).
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // After ") ": field 3 (state) is index 0, so utime (14) is index 11, stime index 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Peak resident set size (VmHWM) of this process, in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scene {
    Static,
    Strip,
    Busy,
    Keyframe,
}

struct Bench {
    config: BenchConfig,
    painter: Painter,
    capturer: DamageCapturer,
    encoder: H264Encoder,
    decoder: H264Decoder,
    rgba: Vec<u8>,
    step: u32,
}

impl Bench {
    /// Changes the screen as the scene does and waits until X has drawn it.
    fn draw(&mut self, scene: Scene) -> Result<(), BenchError> {
        self.step = self.step.wrapping_add(1);
        match scene {
            Scene::Static => return Ok(()),
            Scene::Strip => self.painter.tick()?,
            Scene::Busy | Scene::Keyframe => {
                let palette = PALETTES[self.step as usize % PALETTES.len()];
                self.painter.set_blocks(palette)?;
                self.painter.scatter(self.step, self.config.busy_glyphs)?;
                self.painter.tick()?;
            }
        }
        self.painter.sync()?;
        Ok(())
    }

    fn scene(&mut self, name: &'static str, scene: Scene) -> Result<SceneReport, BenchError> {
        let mut r = SceneReport {
            name,
            ..Default::default()
        };
        let period = Duration::from_secs_f64(1.0 / f64::from(self.config.encoder.fps.max(1)));
        let cpu0 = process_cpu_time();
        let start = Instant::now();
        let mut next = start;
        loop {
            let done = match scene {
                Scene::Keyframe => r.ticks >= self.config.keyframes,
                _ => start.elapsed() >= self.config.scene_time,
            };
            if done {
                break;
            }
            // Drawing is the X server's work, not ours: it happens outside the timed stages
            // (but inside the scene's wall and CPU time, as our requests are cheap).
            self.draw(scene)?;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            next = (next + period).max(Instant::now());
            r.ticks += 1;

            // What the share's capture thread does: ask what changed (the painter's requests
            // were synced, so X has reported it), grab and convert those rows, snapshot.
            let t = Instant::now();
            let bands = if self.capturer.wait(Duration::ZERO)? {
                self.capturer.take_bands()?
            } else {
                Vec::new()
            };
            r.damage.push(t.elapsed());
            if bands.is_empty() {
                continue;
            }
            let cost = self.capturer.grab(&bands)?;
            r.grab.push(Duration::from_micros(cost.grab_us));
            r.convert.push(Duration::from_micros(cost.convert_us));
            r.changed += 1;
            let t = Instant::now();
            let picture = self.capturer.snapshot();
            r.copy.push(t.elapsed());
            let picture = &*picture;

            let t = Instant::now();
            let encoded = self.encoder.encode(picture, scene == Scene::Keyframe)?;
            r.encode.push(t.elapsed());
            r.encoded_bytes += encoded.data.len() as u64;
            r.keyframes += usize::from(encoded.keyframe);

            let t = Instant::now();
            let decoded = self.decoder.decode(&encoded.data)?;
            r.decode.push(t.elapsed());
            if let Some(picture) = decoded {
                let t = Instant::now();
                picture.write_rgba(&mut self.rgba);
                r.to_rgba.push(t.elapsed());
            }
        }
        r.wall = start.elapsed();
        r.cpu = process_cpu_time().saturating_sub(cpu0);
        Ok(r)
    }
}

/// Runs every scene on the display in `config` (scrap captures `$DISPLAY`).
pub fn run(config: BenchConfig) -> Result<BenchReport, BenchError> {
    let mut painter = Painter::connect(config.display.as_deref())?;
    painter.paint()?;
    painter.sync()?;
    let mut capturer = DamageCapturer::open(config.monitor)?;
    if !capturer.tracks_damage() {
        return Err(BenchError::Other(
            "the X server has no DAMAGE extension: the share would grab every frame whole".into(),
        ));
    }
    let (width, height) = capturer.size();
    // The first call grabs the whole screen; after it, only what the scenes change.
    let bands = capturer.take_bands()?;
    capturer.grab(&bands)?;
    let decoder = H264Decoder::new()?;
    let mut bench = Bench {
        encoder: H264Encoder::new(config.encoder)?,
        decoder,
        painter,
        capturer,
        config: config.clone(),
        rgba: Vec::new(),
        step: 0,
    };
    let mut report = BenchReport {
        width,
        height,
        encoder: config.encoder,
        ..Default::default()
    };
    // The first frame (an IDR of the initial picture) is part of the first scene that
    // changes; "static" then measures only the damage poll.
    bench.draw(Scene::Strip)?;
    report.scenes.push(bench.scene("strip", Scene::Strip)?);
    report.scenes.push(bench.scene("static", Scene::Static)?);
    report.scenes.push(bench.scene("busy", Scene::Busy)?);
    report
        .scenes
        .push(bench.scene("keyframe", Scene::Keyframe)?);

    let (opus, opus_bytes) = opus_bench(500)?;
    report.opus = opus;
    report.opus_bytes = opus_bytes;
    report.peak_rss_kib = peak_rss_kib();
    Ok(report)
}

/// Encodes `frames` 10 ms frames of a 440 Hz tone; returns their times and total bytes.
fn opus_bench(frames: usize) -> Result<(Samples, u64), BenchError> {
    let mut enc = OpusEncoder::new(96_000).map_err(|e| BenchError::Other(e.to_string()))?;
    let mut samples = Samples::default();
    let mut bytes = 0u64;
    let mut frame = vec![0f32; FRAME_SAMPLES * CHANNELS];
    for i in 0..frames {
        for (n, s) in frame.chunks_exact_mut(CHANNELS).enumerate() {
            let t = (i * FRAME_SAMPLES + n) as f32 / RATE as f32;
            let v = 0.3 * (2.0 * std::f32::consts::PI * 440.0 * t).sin();
            s.fill(v);
        }
        let t = Instant::now();
        let packet = enc
            .encode(&frame)
            .map_err(|e| BenchError::Other(e.to_string()))?;
        samples.push(t.elapsed());
        bytes += packet.map_or(0, |p| p.len() as u64);
    }
    Ok((samples, bytes))
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".into(),
        |d| format!("{:.2}", d.as_secs_f64() * 1000.0),
    )
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "video {}x{}, H.264 {} kbit/s at {} fps (openh264 real-time, no B-frames)",
            self.width, self.height, self.encoder.bitrate_kbps, self.encoder.fps
        )?;
        writeln!(
            f,
            "{:<9} {:<10} {:>7} {:>7} {:>7} {:>6}",
            "scene", "stage", "p50 ms", "p95 ms", "max ms", "n"
        )?;
        for s in &self.scenes {
            let stages: [(&str, &Samples); 7] = [
                ("damage", &s.damage),
                ("grab", &s.grab),
                ("convert", &s.convert),
                ("copy", &s.copy),
                ("encode", &s.encode),
                ("decode", &s.decode),
                ("to RGBA", &s.to_rgba),
            ];
            for (stage, samples) in stages {
                if samples.count() == 0 {
                    continue;
                }
                writeln!(
                    f,
                    "{:<9} {:<10} {:>7} {:>7} {:>7} {:>6}",
                    s.name,
                    stage,
                    ms(samples.quantile(0.5)),
                    ms(samples.quantile(0.95)),
                    ms(samples.quantile(1.0)),
                    samples.count()
                )?;
            }
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<9} {:>6} {:>8} {:>14} {:>9} {:>10} {:>6} {:>10}",
            "scene",
            "ticks",
            "changed",
            "sender p50 ms",
            "kbit/s",
            "bytes/frm",
            "CPU %",
            "CPU ms/tick"
        )?;
        for s in &self.scenes {
            let per_frame = s.encoded_bytes.checked_div(s.changed as u64).unwrap_or(0);
            writeln!(
                f,
                "{:<9} {:>6} {:>8} {:>14} {:>9.0} {:>10} {:>6.1} {:>10.2}",
                s.name,
                s.ticks,
                s.changed,
                if s.changed > 0 {
                    ms(Some(s.sender_p50()))
                } else {
                    "-".into()
                },
                s.kbit_per_s(),
                per_frame,
                s.cpu_percent(),
                s.cpu_per_tick().as_secs_f64() * 1000.0
            )?;
        }
        let budget = f64::from(self.encoder.bitrate_kbps) * 1000.0 / 8.0;
        for s in self.scenes.iter().filter(|s| s.changed > s.keyframes) {
            let per_frame = s.encoded_bytes as f64 / s.changed as f64;
            let fps = (budget / per_frame).min(f64::from(self.encoder.fps));
            if fps < f64::from(self.encoder.fps) {
                writeln!(
                    f,
                    "{}: {:.0} kB a frame; within {} kbit/s the share's pacer sends ~{:.1} fps of it",
                    s.name,
                    per_frame / 1000.0,
                    self.encoder.bitrate_kbps,
                    fps
                )?;
            }
        }
        writeln!(f)?;
        writeln!(
            f,
            "audio: Opus 10 ms stereo frames: encode p50 {} ms, p95 {} ms, max {} ms ({} frames, {:.0} kbit/s)",
            ms(self.opus.quantile(0.5)),
            ms(self.opus.quantile(0.95)),
            ms(self.opus.quantile(1.0)),
            self.opus.count(),
            self.opus_bytes as f64 * 8.0 / 1000.0 / (self.opus.count().max(1) as f64 * 0.01)
        )?;
        match self.peak_rss_kib {
            Some(kib) => writeln!(f, "memory: peak resident {:.1} MiB", kib as f64 / 1024.0),
            None => writeln!(f, "memory: peak resident unknown (no /proc/self/status)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut s = Samples::default();
        assert_eq!(s.quantile(0.5), None);
        for us in [5u64, 1, 4, 2, 3] {
            s.push(Duration::from_micros(us));
        }
        assert_eq!(s.quantile(0.5), Some(Duration::from_micros(3)));
        assert_eq!(s.quantile(0.95), Some(Duration::from_micros(5)));
        assert_eq!(s.quantile(0.0), Some(Duration::from_micros(1)));
        assert_eq!(s.mean(), Some(Duration::from_micros(3)));
    }

    #[test]
    fn cpu_time_and_memory_are_read() {
        let before = process_cpu_time();
        let t = Instant::now();
        let mut x = 0u64;
        // Spin until the kernel has counted 30 ms of CPU (it counts in 10 ms ticks).
        while process_cpu_time().saturating_sub(before) < Duration::from_millis(30)
            && t.elapsed() < Duration::from_secs(20)
        {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        let spent = process_cpu_time().saturating_sub(before);
        assert!(
            spent >= Duration::from_millis(30),
            "{spent:?} of CPU counted"
        );
        assert!(
            peak_rss_kib().is_some_and(|k| k > 1024),
            "{:?}",
            peak_rss_kib()
        );
    }
}
