//! Host audio: cpal capture (PulseAudio; by default the monitor of the default output, i.e.
//! what the host hears) → 48 kHz stereo → Opus (10 ms frames, in-band FEC, DTX).
//!
//! ```text
//!  cpal callback ──samples──▶ bounded channel (drops when full) ──▶ encode thread
//!   (device rate/channels)                                          to 48 kHz stereo,
//!                                                                   10 ms Opus frames ──▶ sink
//! ```
//! Frames carry their capture time on the same monotonic clock as video, so RTP timestamps
//! of both streams agree and the browser keeps them in sync.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

pub const RATE: u32 = 48_000;
pub const CHANNELS: usize = 2;
/// 10 ms at 48 kHz.
pub const FRAME_SAMPLES: usize = 480;

/// One Opus packet (10 ms of stereo audio).
#[derive(Clone, Debug)]
pub struct EncodedAudio {
    pub data: Bytes,
    /// When the first sample of this frame was captured.
    pub capture_time: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioSource {
    /// The monitor of the default output: what the host hears.
    Default,
    /// A device by (a part of) its name or description.
    Named(String),
}

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("no audio system: {0}")]
    Host(String),
    #[error("no audio input device matches {0:?} (see `porthole share --list-audio`)")]
    NoDevice(String),
    #[error("audio device error: {0}")]
    Device(String),
    #[error("Opus encoder error: {0}")]
    Opus(String),
}

fn host() -> Result<cpal::Host, AudioError> {
    // PulseAudio (or PipeWire's Pulse server) directly: the ALSA route starts ~1.7 s slower.
    // A busy server now and then drops a fresh connection mid-handshake: try again.
    let mut last = None;
    for attempt in 0..3 {
        match cpal::host_from_id(cpal::HostId::PulseAudio) {
            Ok(h) => return Ok(h),
            Err(e) => {
                tracing::debug!(attempt, "PulseAudio connection failed: {e}");
                last = Some(e);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Err(AudioError::Host(format!(
        "{} (is PulseAudio running? set PULSE_SERVER if it has no XDG_RUNTIME_DIR socket)",
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// A capture-capable device: its id (stable) and human description.
#[derive(Clone, Debug)]
pub struct AudioDevice {
    pub id: String,
    pub description: String,
}

fn describe(d: &cpal::Device) -> AudioDevice {
    AudioDevice {
        id: d.id().map(|i| i.to_string()).unwrap_or_default(),
        description: d
            .description()
            .map(|d| d.to_string())
            .unwrap_or_else(|_| "(unnamed)".into()),
    }
}

/// Lists the devices audio can be captured from (inputs and monitors of outputs).
pub fn list_devices() -> Result<Vec<AudioDevice>, AudioError> {
    let host = host()?;
    let devices = host
        .input_devices()
        .map_err(|e| AudioError::Device(e.to_string()))?;
    Ok(devices.map(|d| describe(&d)).collect())
}

fn pick_device(source: &AudioSource) -> Result<cpal::Device, AudioError> {
    let host = host()?;
    let inputs: Vec<cpal::Device> = host
        .input_devices()
        .map_err(|e| AudioError::Device(e.to_string()))?
        .collect();
    match source {
        AudioSource::Default => {
            // The monitor source of the default sink is named "<sink>.monitor".
            let sink = host
                .default_output_device()
                .map(|d| describe(&d).id)
                .unwrap_or_default();
            let sink_name = sink.rsplit(':').next().unwrap_or(&sink).to_owned();
            inputs
                .iter()
                .find(|d| {
                    let id = describe(d).id;
                    !sink_name.is_empty() && id.ends_with(&format!("{sink_name}.monitor"))
                })
                .or_else(|| inputs.iter().find(|d| describe(d).id.ends_with(".monitor")))
                .cloned()
                .or_else(|| host.default_input_device())
                .ok_or_else(|| AudioError::NoDevice("default".into()))
        }
        AudioSource::Named(name) => {
            let lower = name.to_lowercase();
            inputs
                .into_iter()
                .find(|d| {
                    let a = describe(d);
                    a.id == *name
                        || a.id.to_lowercase().contains(&lower)
                        || a.description.to_lowercase().contains(&lower)
                })
                .ok_or_else(|| AudioError::NoDevice(name.clone()))
        }
    }
}

/// Opus for live sharing: 48 kHz stereo, 10 ms frames, FEC, DTX.
pub struct OpusEncoder {
    inner: opus::Encoder,
    out: Vec<u8>,
}

impl OpusEncoder {
    pub fn new(bitrate_bps: i32) -> Result<Self, AudioError> {
        let err = |e: opus::Error| AudioError::Opus(e.to_string());
        let mut inner = opus::Encoder::new(RATE, opus::Channels::Stereo, opus::Application::Audio)
            .map_err(err)?;
        inner
            .set_bitrate(opus::Bitrate::Bits(bitrate_bps))
            .map_err(err)?;
        inner.set_inband_fec(true).map_err(err)?;
        inner.set_packet_loss_perc(10).map_err(err)?;
        inner.set_dtx(true).map_err(err)?;
        Ok(Self {
            inner,
            out: vec![0; 4000],
        })
    }

    /// Encodes one 10 ms frame (960 interleaved samples). `None`: a DTX frame not worth
    /// sending (silence; the receiver conceals it).
    pub fn encode(&mut self, frame: &[f32]) -> Result<Option<Bytes>, AudioError> {
        let n = self
            .inner
            .encode_float(frame, &mut self.out)
            .map_err(|e| AudioError::Opus(e.to_string()))?;
        // RFC 6716 / opus_encoder_ctl(DTX): packets of 1-2 bytes need not be transmitted.
        Ok((n > 2).then(|| Bytes::copy_from_slice(&self.out[..n])))
    }
}

/// Counters of the audio pipeline.
#[derive(Default, Debug)]
pub struct AudioStats {
    pub frames_captured: AtomicU64,
    pub frames_sent: AtomicU64,
    pub frames_silent: AtomicU64,
    pub overruns: AtomicU64,
    /// Times the capture stream was dropped and reopened.
    pub reopens: AtomicU64,
}

/// Running capture + encode. Dropping it stops both.
pub struct AudioPipeline {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<AudioStats>,
    pub device: AudioDevice,
}

impl AudioPipeline {
    pub fn start(
        source: AudioSource,
        mut sink: impl FnMut(EncodedAudio) + Send + 'static,
    ) -> Result<Self, AudioError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(AudioStats::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        // ~1 s of callbacks at most; the encoder is far faster, so this only fills on a stall.
        let (tx, rx) = mpsc::sync_channel::<(Instant, Vec<f32>)>(100);

        let capture = {
            let stop = stop.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("porthole-audio-in".into())
                .spawn(move || {
                    let health = Arc::new(StreamHealth::new());
                    let mut stream = match open_capture(&source, &tx, &stats, &health) {
                        Ok((stream, info)) => {
                            let _ = ready_tx.send(Ok(info));
                            Some(stream)
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    // The audio system may drop the stream (PulseAudio restarted, the
                    // stream killed, a device gone): reopen it, backing off, until stopped.
                    let mut backoff = REOPEN_FIRST;
                    let mut next_try = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                        if let Some(why) = stream.as_ref().and_then(|_| health.trouble()) {
                            tracing::warn!("audio capture stopped ({why}); reopening it");
                            stream = None;
                            stats.reopens.fetch_add(1, Ordering::Relaxed);
                            next_try = Instant::now();
                        }
                        if stream.is_none() && Instant::now() >= next_try {
                            health.reset();
                            match open_capture(&source, &tx, &stats, &health) {
                                Ok((s, info)) => {
                                    tracing::info!(device = %info.description, "audio capture resumed");
                                    stream = Some(s);
                                    backoff = REOPEN_FIRST;
                                }
                                Err(e) => {
                                    tracing::warn!("audio capture cannot reopen yet: {e}; next try in {backoff:?}");
                                    next_try = Instant::now() + backoff;
                                    backoff = (backoff * 2).min(REOPEN_MAX);
                                }
                            }
                        }
                    }
                    drop(stream);
                })
                .map_err(|e| AudioError::Device(e.to_string()))?
        };
        let device = match ready_rx.recv() {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                let _ = capture.join();
                return Err(e);
            }
            Err(_) => return Err(AudioError::Device("capture thread ended".into())),
        };
        tracing::info!(device = %device.description, id = %device.id, "capturing audio");

        let mut encoder = OpusEncoder::new(96_000)?;
        let encode = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name("porthole-audio-enc".into())
                .spawn(move || {
                    realtime_priority("audio encoding");
                    let mut clock = SampleClock::default();
                    let mut pending: Vec<f32> = Vec::with_capacity(FRAME_SAMPLES * CHANNELS * 4);
                    while !stop.load(Ordering::Relaxed) {
                        let Ok((arrival, samples)) = rx.recv_timeout(Duration::from_millis(50))
                        else {
                            continue;
                        };
                        let frames = samples.len() / CHANNELS;
                        // The first of these samples was captured about `frames` ago.
                        let first = arrival
                            .checked_sub(Duration::from_secs_f64(frames as f64 / f64::from(RATE)))
                            .unwrap_or(arrival);
                        clock.observe(first, pending.len() / CHANNELS);
                        pending.extend_from_slice(&samples);
                        while pending.len() >= FRAME_SAMPLES * CHANNELS {
                            let frame: Vec<f32> =
                                pending.drain(..FRAME_SAMPLES * CHANNELS).collect();
                            let capture_time = clock.take(FRAME_SAMPLES);
                            stats.frames_captured.fetch_add(1, Ordering::Relaxed);
                            match encoder.encode(&frame) {
                                Ok(Some(data)) => {
                                    stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                                    sink(EncodedAudio { data, capture_time });
                                }
                                Ok(None) => {
                                    stats.frames_silent.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => tracing::warn!("{e}"),
                            }
                        }
                    }
                })
                .map_err(|e| AudioError::Device(e.to_string()))?
        };
        Ok(Self {
            stop,
            threads: vec![capture, encode],
            stats,
            device,
        })
    }

    pub fn stats(&self) -> &Arc<AudioStats> {
        &self.stats
    }
}

/// No audio for this long from a running stream counts as a dropped stream. (A monitor
/// source delivers silence too, so live streams never go quiet this long.)
const STALL: Duration = Duration::from_secs(3);
const REOPEN_FIRST: Duration = Duration::from_millis(500);
const REOPEN_MAX: Duration = Duration::from_secs(5);

/// What the capture callbacks report to the thread that owns the stream.
struct StreamHealth {
    /// Set by cpal's error callback.
    failed: std::sync::Mutex<Option<String>>,
    /// Milliseconds since `epoch` of the last data callback (or of the last reset).
    last_data_ms: AtomicU64,
    epoch: Instant,
}

impl StreamHealth {
    fn new() -> Self {
        Self {
            failed: std::sync::Mutex::new(None),
            last_data_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn data(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_data_ms.store(ms, Ordering::Relaxed);
    }

    fn fail(&self, why: String) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.get_or_insert(why);
    }

    /// Starts watching a new stream.
    fn reset(&self) {
        *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.data();
    }

    /// Why the stream should be reopened, if it should.
    fn trouble(&self) -> Option<String> {
        if let Some(why) = self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Some(why);
        }
        let last = Duration::from_millis(self.last_data_ms.load(Ordering::Relaxed));
        let quiet = self.epoch.elapsed().saturating_sub(last);
        (quiet >= STALL).then(|| format!("no audio for {:.1} s", quiet.as_secs_f64()))
    }
}

/// Opens and starts the capture stream for `source`, feeding `tx`.
fn open_capture(
    source: &AudioSource,
    tx: &mpsc::SyncSender<(Instant, Vec<f32>)>,
    stats: &Arc<AudioStats>,
    health: &Arc<StreamHealth>,
) -> Result<(cpal::Stream, AudioDevice), AudioError> {
    let device = pick_device(source)?;
    // Ask PulseAudio for 48 kHz stereo f32; it converts for us. 10 ms fragments: with the
    // default, PulseAudio picks ~2 s and delivers audio in bursts (and starts that late).
    let wanted = cpal::StreamConfig {
        channels: 2,
        sample_rate: RATE,
        buffer_size: cpal::BufferSize::Fixed(FRAME_SAMPLES as u32),
    };
    let (tx, overruns, on_data, on_error) =
        (tx.clone(), stats.clone(), health.clone(), health.clone());
    health.reset();
    let mut prioritised = false;
    let stream = device
        .build_input_stream::<f32, _, _>(
            wanted,
            move |data: &[f32], _: &cpal::InputCallbackInfo| {
                if !std::mem::replace(&mut prioritised, true) {
                    // The audio system's client thread, which calls this.
                    realtime_priority("audio capture");
                }
                on_data.data();
                if tx.try_send((Instant::now(), data.to_vec())).is_err() {
                    overruns.overruns.fetch_add(1, Ordering::Relaxed);
                }
            },
            move |e| {
                tracing::warn!("audio capture: {e}");
                on_error.fail(e.to_string());
            },
            Some(Duration::from_secs(5)),
        )
        .map_err(|e| AudioError::Device(e.to_string()))?;
    stream
        .play()
        .map_err(|e| AudioError::Device(e.to_string()))?;
    Ok((stream, describe(&device)))
}

impl Drop for AudioPipeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Asks for real-time scheduling (round-robin, low priority 10) for the calling thread, so
/// that a busy machine does not hold audio back: 10 ms of audio must move every 10 ms.
/// Needs the right (root, `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` from the session, as
/// PulseAudio gets through rtkit); without it the thread keeps its normal priority.
fn realtime_priority(what: &str) {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: pthread_self() is the calling thread; `param` lives across the call.
    let err = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_RR, &param) };
    if err == 0 {
        tracing::debug!("{what}: real-time priority");
    } else {
        tracing::debug!(
            "{what}: no real-time priority ({}); normal priority",
            std::io::Error::from_raw_os_error(err)
        );
    }
}

/// Capture times of samples: counted from the device's samples (smooth), re-anchored to
/// arrival times when samples were lost or the count ran ahead.
///
/// PulseAudio's record queue holds ~250 ms (`third_party/cpal/PORTHOLE.md`): a capture
/// callback that runs late (a busy machine) gets the fragments it missed in a burst, all
/// arriving "now". Their count says when they were captured; their arrival does not. So a
/// late arrival alone changes nothing; samples count as lost (and the clock jumps ahead)
/// only when every arrival for [`LATE_FOR`] was late by over [`MAX_LATE_SKEW`] — by the
/// least of those latenesses —
/// or when one is later than the queue could have held ([`MAX_QUEUED`]).
#[derive(Default)]
pub struct SampleClock {
    /// Capture time of the next sample not yet taken.
    next: Option<Instant>,
    /// Since when every arrival has been late by more than [`MAX_SKEW`], and the least
    /// lateness since then.
    late: Option<(Instant, Duration)>,
}

/// Counted and arrival time may disagree by this much (scheduling jitter).
pub const MAX_SKEW: Duration = Duration::from_millis(20);
/// Arrivals may come this much later than counted and still be on time: PulseAudio's
/// delivery latency varies by a few fragments, and moving the clock for that would put a
/// gap into the stream (heard, and seen in recordings) where no audio was lost.
pub const MAX_LATE_SKEW: Duration = Duration::from_millis(60);
/// An arrival later than this behind the count cannot be a queued burst: samples were lost.
pub const MAX_QUEUED: Duration = Duration::from_millis(300);
/// Lateness that lasts this long is taken as lost samples.
pub const LATE_FOR: Duration = Duration::from_secs(1);

impl SampleClock {
    /// A buffer whose first sample was captured at `first` (by its arrival) arrived while
    /// `queued` samples (per channel) were still waiting to be taken.
    pub fn observe(&mut self, first: Instant, queued: usize) {
        let queued = Duration::from_secs_f64(queued as f64 / f64::from(RATE));
        let Some(next) = self.next else {
            self.anchor(first, queued);
            return;
        };
        let expected = next + queued;
        if first + MAX_SKEW < expected {
            // The count ran ahead of the device (its clock is slower than ours).
            self.anchor(first, queued);
            return;
        }
        let late = first.saturating_duration_since(expected);
        if late <= MAX_LATE_SKEW {
            self.late = None;
            return;
        }
        if late > MAX_QUEUED {
            self.anchor(first, queued);
            return;
        }
        let (since, least) = self.late.get_or_insert((first, late));
        *least = (*least).min(late);
        if first.saturating_duration_since(*since) >= LATE_FOR {
            // Late all along: that much audio never came.
            tracing::debug!(
                "audio clock moves {} ms ahead (audio lost)",
                least.as_millis()
            );
            self.next = Some(next + *least);
            self.late = None;
        }
    }

    fn anchor(&mut self, first: Instant, queued: Duration) {
        self.next = Some(first.checked_sub(queued).unwrap_or(first));
        self.late = None;
    }

    /// Takes the capture time of the next `samples` samples.
    pub fn take(&mut self, samples: usize) -> Instant {
        let t = self.next.unwrap_or_else(Instant::now);
        self.next = Some(t + Duration::from_secs_f64(samples as f64 / f64::from(RATE)));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, secs: f32, amp: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .flat_map(|i| {
                let s = amp * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin();
                [s, s]
            })
            .collect()
    }

    /// Frequency from zero crossings of the left channel.
    fn frequency(stereo: &[f32], rate: u32) -> f32 {
        let left: Vec<f32> = stereo.iter().step_by(2).copied().collect();
        let crossings = left
            .windows(2)
            .filter(|w| w[0] <= 0.0 && w[1] > 0.0)
            .count();
        crossings as f32 * rate as f32 / left.len() as f32
    }

    fn rms(stereo: &[f32]) -> f32 {
        (stereo.iter().map(|s| s * s).sum::<f32>() / stereo.len() as f32).sqrt()
    }

    #[test]
    fn opus_round_trip_keeps_a_sine() {
        let mut enc = OpusEncoder::new(96_000).unwrap();
        let mut dec = opus::Decoder::new(RATE, opus::Channels::Stereo).unwrap();
        let input = sine(440.0, RATE, 1.0, 0.5);
        let mut decoded = Vec::new();
        for frame in input.chunks_exact(FRAME_SAMPLES * 2) {
            let packet = enc.encode(frame).unwrap().expect("a tone is not silence");
            let mut pcm = vec![0f32; FRAME_SAMPLES * 2];
            let n = dec.decode_float(&packet, &mut pcm, false).unwrap();
            assert_eq!(n, FRAME_SAMPLES);
            decoded.extend_from_slice(&pcm);
        }
        // Skip the codec's start-up.
        let steady = &decoded[RATE as usize / 10 * 2..];
        let f = frequency(steady, RATE);
        assert!((f - 440.0).abs() < 3.0, "{f} Hz");
        let level = rms(steady);
        assert!((level - 0.3536).abs() < 0.03, "rms {level}");
    }

    #[test]
    fn silence_costs_almost_nothing() {
        let mut enc = OpusEncoder::new(96_000).unwrap();
        let silence = vec![0f32; FRAME_SAMPLES * 2];
        // 5 s of silence: DTX settles after ~200 ms, then a comfort-noise frame each 400 ms.
        let sent = (0..500)
            .filter(|_| enc.encode(&silence).unwrap().is_some())
            .count();
        assert!(sent < 50, "{sent} of 500 silent frames were sent");
    }

    #[test]
    fn sample_clock_is_smooth_but_follows_arrivals() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut c = SampleClock::default();
        c.observe(t0, 0);
        assert_eq!(c.take(480), t0);
        assert_eq!(c.take(480), ms(10));
        // An arrival 5 ms late is jitter: keep counting.
        c.observe(ms(25), 0);
        assert_eq!(c.take(480), ms(20));
        // Far later than the record queue holds (the stream stalled, was reopened):
        // re-anchor at once.
        c.observe(ms(430), 0);
        assert_eq!(c.take(480), ms(430));
        // Arrivals ahead of the count (a slow device clock): re-anchor at once.
        c.observe(ms(400), 0);
        assert_eq!(c.take(480), ms(400));
    }

    #[test]
    fn a_burst_after_a_stall_keeps_its_count() {
        // A fragment every 10 ms, then the reader stalls 150 ms and gets the 15 fragments
        // it missed at once (PulseAudio queued them): their times go on 10 ms apart.
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut c = SampleClock::default();
        let mut times = Vec::new();
        for i in 0..10u64 {
            c.observe(ms(i * 10), 0);
            times.push(c.take(480));
        }
        for _ in 0..15 {
            // Each arrives at 250 ms, so "captured" at 240 ms by its arrival.
            c.observe(ms(240), 0);
            times.push(c.take(480));
        }
        for i in 25..40u64 {
            c.observe(ms(i * 10), 0);
            times.push(c.take(480));
        }
        for (i, t) in times.iter().enumerate() {
            assert_eq!(*t, ms(i as u64 * 10), "fragment {i}");
        }
    }

    #[test]
    fn samples_lost_for_good_move_the_clock_once_the_lateness_lasts() {
        // 100 ms of audio never arrives: every later arrival is 100 ms behind the count.
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut c = SampleClock::default();
        c.observe(t0, 0);
        c.take(480);
        let mut last = t0;
        for i in 1..=150u64 {
            c.observe(ms(100 + i * 10), 0);
            last = c.take(480);
            if i < 100 {
                assert_eq!(
                    last,
                    ms(i * 10),
                    "counted until the lateness has lasted 1 s"
                );
            }
        }
        assert_eq!(last, ms(100 + 150 * 10), "then the lost 100 ms are skipped");
    }

    #[test]
    fn a_steady_delivery_delay_moves_nothing() {
        // PulseAudio delivers every fragment 40 ms later than the first one came: that is
        // latency, not loss, and the count goes on without a gap.
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut c = SampleClock::default();
        c.observe(t0, 0);
        assert_eq!(c.take(480), t0);
        for i in 1..=300u64 {
            c.observe(ms(40 + i * 10), 0);
            assert_eq!(c.take(480), ms(i * 10), "fragment {i}");
        }
    }
}

/// Plays received Opus packets on the default output: decode → small jitter buffer →
/// cpal. The buffer starts playing at `START_MS` and drops the oldest audio beyond `MAX_MS`,
/// so latency stays bounded whatever the network does.
pub struct AudioPlayer {
    shared: Arc<std::sync::Mutex<PlayerState>>,
    decoder: std::sync::Mutex<opus::Decoder>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct PlayerState {
    buffer: std::collections::VecDeque<f32>,
    playing: bool,
    muted: bool,
    underruns: u64,
}

pub const START_MS: usize = 40;
pub const MAX_MS: usize = 200;

impl PlayerState {
    /// Appends decoded samples, dropping the oldest beyond the cap.
    fn push(&mut self, samples: &[f32]) {
        self.buffer.extend(samples);
        let max = MAX_MS * RATE as usize / 1000 * CHANNELS;
        if self.buffer.len() > max {
            let excess = self.buffer.len() - max;
            self.buffer.drain(..excess);
        }
        if self.buffer.len() >= START_MS * RATE as usize / 1000 * CHANNELS {
            self.playing = true;
        }
    }

    /// Fills `out` with audio (silence while buffering or muted).
    fn pull(&mut self, out: &mut [f32]) {
        for s in out.iter_mut() {
            if !self.playing {
                *s = 0.0;
                continue;
            }
            *s = match self.buffer.pop_front() {
                Some(v) if !self.muted => v,
                Some(_) => 0.0,
                None => {
                    // Ran dry: wait for the buffer to refill before playing again.
                    self.playing = false;
                    self.underruns += 1;
                    0.0
                }
            };
        }
    }
}

impl AudioPlayer {
    pub fn start() -> Result<Self, AudioError> {
        let shared = Arc::new(std::sync::Mutex::new(PlayerState {
            buffer: std::collections::VecDeque::new(),
            playing: false,
            muted: false,
            underruns: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("porthole-audio-out".into())
                .spawn(move || {
                    let opened = (|| {
                        let device = host()?
                            .default_output_device()
                            .ok_or_else(|| AudioError::NoDevice("default output".into()))?;
                        let config = cpal::StreamConfig {
                            channels: 2,
                            sample_rate: RATE,
                            buffer_size: cpal::BufferSize::Default,
                        };
                        let stream = device
                            .build_output_stream::<f32, _, _>(
                                config,
                                move |out: &mut [f32], _: &cpal::OutputCallbackInfo| {
                                    shared.lock().unwrap_or_else(|e| e.into_inner()).pull(out);
                                },
                                |e| tracing::warn!("audio playback: {e}"),
                                Some(Duration::from_secs(5)),
                            )
                            .map_err(|e| AudioError::Device(e.to_string()))?;
                        stream
                            .play()
                            .map_err(|e| AudioError::Device(e.to_string()))?;
                        Ok(stream)
                    })();
                    let stream = match opened {
                        Ok(s) => {
                            let _ = ready_tx.send(Ok(()));
                            s
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    drop(stream);
                })
                .map_err(|e| AudioError::Device(e.to_string()))?
        };
        ready_rx
            .recv()
            .map_err(|_| AudioError::Device("playback thread ended".into()))??;
        let decoder = opus::Decoder::new(RATE, opus::Channels::Stereo)
            .map_err(|e| AudioError::Opus(e.to_string()))?;
        Ok(Self {
            shared,
            decoder: std::sync::Mutex::new(decoder),
            stop,
            thread: Some(thread),
        })
    }

    /// Decodes and queues one Opus packet.
    pub fn push(&self, packet: &[u8]) {
        let mut pcm = [0f32; 5760 * 2];
        let n = {
            let mut dec = self.decoder.lock().unwrap_or_else(|e| e.into_inner());
            match dec.decode_float(packet, &mut pcm, false) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!("undecodable Opus packet: {e}");
                    return;
                }
            }
        };
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(&pcm[..n * CHANNELS]);
    }

    pub fn set_muted(&self, muted: bool) {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).muted = muted;
    }

    pub fn is_muted(&self) -> bool {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).muted
    }
}

impl Drop for AudioPlayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod player_tests {
    use super::*;

    fn state() -> PlayerState {
        PlayerState {
            buffer: Default::default(),
            playing: false,
            muted: false,
            underruns: 0,
        }
    }

    #[test]
    fn jitter_buffer_prebuffers_caps_latency_and_recovers_from_underrun() {
        let mut s = state();
        let ten_ms = vec![0.5f32; 480 * 2];
        let mut out = vec![1.0f32; 480 * 2];
        s.push(&ten_ms);
        s.pull(&mut out);
        assert!(
            out.iter().all(|&v| v == 0.0),
            "silent until 40 ms are buffered"
        );
        for _ in 0..3 {
            s.push(&ten_ms);
        }
        s.pull(&mut out);
        assert!(out.iter().all(|&v| v == 0.5));
        // A burst of 1 s is cut to the newest 200 ms.
        for _ in 0..100 {
            s.push(&ten_ms);
        }
        assert_eq!(s.buffer.len(), MAX_MS * 48 * 2);
        // Draining past the end is an underrun: silence, then a fresh prebuffer.
        let mut big = vec![0.0f32; MAX_MS * 48 * 2 + 10];
        s.pull(&mut big);
        assert_eq!(s.underruns, 1);
        assert!(!s.playing);
        s.muted = true;
        for _ in 0..4 {
            s.push(&ten_ms);
        }
        s.pull(&mut out);
        assert!(out.iter().all(|&v| v == 0.0), "muted");
    }
}
