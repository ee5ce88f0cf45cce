//! Recording received streams to fragmented MP4 (ISO BMFF: H.264 `avc1` + Opus), without
//! re-encoding, through muxide's `FragmentedMuxer`.
//!
//! - The file starts at a keyframe (the caller asks the sender for one: `wants_keyframe`).
//! - Timestamps come from RTP (90 kHz video, 48 kHz audio), extended across wrap-around;
//!   audio is placed relative to the first video frame (Porthole senders derive both RTP
//!   clocks from one capture epoch).
//! - A fragment (`moof`+`mdat`) is written and synced at least every second, so a crash
//!   or `kill -9` loses at most the last second: the file up to there stays playable.
//! - Parameter sets stay in-band in keyframe samples, so a resolution change mid-recording
//!   still decodes.
//! - A write error (disk full, unwritable path) is returned; it ends only the recording.
//! - Each fragment starts at its first sample's real time: muxide 0.5 guesses a fragment's
//!   `tfdt` (ISO/IEC 14496-12 §8.8.12, base media decode time) from the previous one's
//!   average sample duration, which after a still screen (a frame a second) or silence
//!   (Opus DTX: no packets) put the following samples seconds early, out of sync and
//!   overlapping. We write the true value into each `traf`'s `tfdt` before the fragment
//!   goes to disk.
//! - The file ends where the recording did. muxide gives a fragment's last sample the
//!   duration of the one before it: after a still screen (a frame a second) the file ran up
//!   to a second past the stop, or ended up to a second before it. [`Recorder::finish`]
//!   sets the last picture's duration: until the stop, or one frame time when the stream
//!   ended (the share went away).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use muxide::api::AudioCodec;
use muxide::codec::h264::{annexb_to_avcc, extract_avc_config};
use muxide::fragmented::{FragmentAudioConfig, FragmentConfig, FragmentedMuxer};
use types::{AUDIO_CLOCK_HZ, VIDEO_CLOCK_HZ};

pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// A picture's time at 30 fps, on the 90 kHz clock: how long the last picture lasts when
/// the stream ended rather than the recording being stopped.
const FRAME_TICKS: u32 = VIDEO_CLOCK_HZ / 30;
/// Track IDs in muxide's layout: the video is track 1, the audio track 2.
const VIDEO_TRACK: u32 = 1;
const AUDIO_TRACK: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot write the recording {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot mux the recording: {0}")]
    Mux(String),
}

/// Extends 32-bit RTP timestamps to 64 bits across wrap-around.
#[derive(Default, Debug)]
pub struct RtpClock {
    last: Option<u32>,
    extended: i64,
}

impl RtpClock {
    pub fn extend(&mut self, ts: u32) -> i64 {
        match self.last {
            None => self.extended = i64::from(ts),
            Some(last) => self.extended += i64::from(ts.wrapping_sub(last) as i32),
        }
        self.last = Some(ts);
        self.extended
    }
}

pub struct Recorder {
    path: PathBuf,
    file: File,
    with_audio: bool,
    muxer: Option<FragmentedMuxer>,
    video_clock: RtpClock,
    audio_clock: RtpClock,
    /// Extended RTP time of the first video frame (on the video clock).
    video_start: Option<i64>,
    last_video_dts: Option<u64>,
    last_audio_pts: Option<u64>,
    /// When the last sample of each track was received.
    last_video_at: Option<Instant>,
    last_audio_at: Option<Instant>,
    /// Where in the file the duration of the last written sample of each track is, and
    /// its value (the file's end is set from it by `finish`).
    last_video_duration: Option<(u64, u32)>,
    last_audio_duration: Option<(u64, u32)>,
    /// Decode time of the first sample of each track in the fragment being built.
    fragment_video_start: Option<u64>,
    fragment_audio_start: Option<u64>,
    last_flush: Instant,
    bytes: u64,
    video_frames: u64,
    audio_packets: u64,
    first_frame_at: Option<Instant>,
}

impl Recorder {
    /// Creates (truncates) `path`. `with_audio`: the share sends Opus too.
    pub fn create(path: &Path, with_audio: bool) -> Result<Self, RecordError> {
        let file = File::create(path).map_err(|source| RecordError::Io {
            path: path.to_owned(),
            error: source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            file,
            with_audio,
            muxer: None,
            video_clock: RtpClock::default(),
            audio_clock: RtpClock::default(),
            video_start: None,
            last_video_dts: None,
            last_audio_pts: None,
            last_video_at: None,
            last_audio_at: None,
            last_video_duration: None,
            last_audio_duration: None,
            fragment_video_start: None,
            fragment_audio_start: None,
            last_flush: Instant::now(),
            bytes: 0,
            video_frames: 0,
            audio_packets: 0,
            first_frame_at: None,
        })
    }

    /// True until the first keyframe has started the file.
    pub fn wants_keyframe(&self) -> bool {
        self.muxer.is_none()
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Recorded time so far.
    pub fn duration(&self) -> Duration {
        self.first_frame_at.map(|t| t.elapsed()).unwrap_or_default()
    }

    /// Media time recorded so far: the time of the latest sample written (what a player
    /// will show as the length, give or take the last frame).
    pub fn media_duration(&self) -> Duration {
        let video = self
            .last_video_dts
            .map_or(0.0, |d| d as f64 / f64::from(VIDEO_CLOCK_HZ));
        let audio = self
            .last_audio_pts
            .map_or(0.0, |p| p as f64 / f64::from(AUDIO_CLOCK_HZ));
        Duration::from_secs_f64(video.max(audio))
    }

    pub fn counts(&self) -> (u64, u64) {
        (self.video_frames, self.audio_packets)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        self.file
            .write_all(bytes)
            .map_err(|source| RecordError::Io {
                path: self.path.clone(),
                error: source,
            })?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Adds one H.264 access unit (Annex B) with RTP time `rtp_time`, received at `received`.
    pub fn video(
        &mut self,
        annexb: &[u8],
        rtp_time: u32,
        keyframe: bool,
        received: Instant,
    ) -> Result<(), RecordError> {
        let ext = self.video_clock.extend(rtp_time);
        if self.muxer.is_none() {
            if !keyframe {
                return Ok(());
            }
            self.start(annexb)?;
            self.video_start = Some(ext);
        }
        let start = self.video_start.unwrap_or(ext);
        let mut dts = u64::try_from(ext - start).unwrap_or(0);
        // Equal or backwards times (a re-sent picture) still need increasing DTS.
        if let Some(last) = self.last_video_dts {
            dts = dts.max(last + 1);
        }
        self.last_video_dts = Some(dts);
        self.last_video_at = Some(received);
        self.fragment_video_start.get_or_insert(dts);
        let avcc = annexb_to_avcc(annexb);
        let muxer = self.muxer.as_mut().expect("started");
        muxer
            .write_video(dts, dts, &avcc, keyframe)
            .map_err(|e| RecordError::Mux(e.to_string()))?;
        self.video_frames += 1;
        self.maybe_flush()
    }

    /// Adds one Opus packet with RTP time `rtp_time` (on the audio clock), received at
    /// `received`.
    pub fn audio(
        &mut self,
        opus: &[u8],
        rtp_time: u32,
        received: Instant,
    ) -> Result<(), RecordError> {
        let ext = self.audio_clock.extend(rtp_time);
        let (Some(video_start), true) = (self.video_start, self.with_audio) else {
            return Ok(()); // nothing before the first keyframe
        };
        // Place it on the video's time line: same epoch, different clock rates.
        let rel = ext - video_start * i64::from(AUDIO_CLOCK_HZ) / i64::from(VIDEO_CLOCK_HZ);
        let Ok(mut pts) = u64::try_from(rel) else {
            return Ok(()); // captured before the first picture
        };
        if let Some(last) = self.last_audio_pts {
            if pts <= last {
                pts = last + 1;
            }
        }
        self.last_audio_pts = Some(pts);
        self.last_audio_at = Some(received);
        self.fragment_audio_start.get_or_insert(pts);
        let muxer = self.muxer.as_mut().expect("started");
        muxer
            .write_audio(pts, pts, opus)
            .map_err(|e| RecordError::Mux(e.to_string()))?;
        self.audio_packets += 1;
        self.maybe_flush()
    }

    fn start(&mut self, keyframe: &[u8]) -> Result<(), RecordError> {
        let avc = extract_avc_config(keyframe)
            .ok_or_else(|| RecordError::Mux("the keyframe has no SPS/PPS".into()))?;
        let (width, height) = picture_size(keyframe)?;
        let mut config = FragmentConfig::new(width, height, VIDEO_CLOCK_HZ)
            .with_fragment_duration_ms(FLUSH_EVERY.as_millis() as u32);
        config.sps = avc.sps.clone();
        config.pps = avc.pps.clone();
        let mut muxer = if self.with_audio {
            FragmentedMuxer::new_with_audio(
                config,
                FragmentAudioConfig {
                    codec: AudioCodec::Opus,
                    sample_rate: AUDIO_CLOCK_HZ,
                    channels: 2,
                },
            )
        } else {
            FragmentedMuxer::new(config)
        }
        .map_err(|e| RecordError::Mux(e.to_string()))?;
        let init = muxer.init_segment();
        self.muxer = Some(muxer);
        self.write(&init)?;
        self.sync()?;
        self.last_flush = Instant::now();
        self.first_frame_at = Some(Instant::now());
        tracing::info!(width, height, path = %self.path.display(), "recording started");
        Ok(())
    }

    fn maybe_flush(&mut self) -> Result<(), RecordError> {
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered fragment and syncs it to disk.
    pub fn flush(&mut self) -> Result<(), RecordError> {
        self.last_flush = Instant::now();
        let Some(mut segment) = self.muxer.as_mut().and_then(|m| m.flush_segment()) else {
            return Ok(());
        };
        let starts = [
            (VIDEO_TRACK, self.fragment_video_start.take()),
            (AUDIO_TRACK, self.fragment_audio_start.take()),
        ];
        for (track, start) in starts {
            if let Some(start) = start {
                if !set_tfdt(&mut segment, track, start) {
                    return Err(RecordError::Mux(format!(
                        "no tfdt for track {track} in the fragment muxide made"
                    )));
                }
            }
        }
        // The file offset of each track's last sample duration, in this fragment if it
        // has one (the fragment goes at the end of the file: `bytes` is its offset).
        if let Some((at, d)) = last_sample_duration(&segment, VIDEO_TRACK) {
            self.last_video_duration = Some((self.bytes + at as u64, d));
        }
        if let Some((at, d)) = last_sample_duration(&segment, AUDIO_TRACK) {
            self.last_audio_duration = Some((self.bytes + at as u64, d));
        }
        self.write(&segment)?;
        self.sync()
    }

    fn sync(&mut self) -> Result<(), RecordError> {
        self.file.sync_data().map_err(|source| RecordError::Io {
            path: self.path.clone(),
            error: source,
        })
    }

    /// Writes what is left, and ends the file where the recording ended: `stopped_at`,
    /// when it was stopped (its duration was up, or its user stopped it): the last picture
    /// shows until then; `None` when the stream ended: it shows for one frame time (or less,
    /// as long as muxide made it). The audio's last packet never lasts past the stop.
    pub fn finish(mut self, stopped_at: Option<Instant>) -> Result<u64, RecordError> {
        self.flush()?;
        let ticks_until = |at: Option<Instant>, clock_hz: u32| {
            let (Some(end), Some(at)) = (stopped_at, at) else {
                return None;
            };
            let secs = end.saturating_duration_since(at).as_secs_f64();
            Some((secs * f64::from(clock_hz)).min(f64::from(u32::MAX)) as u32)
        };
        let mut patches = Vec::new();
        if let Some((offset, muxide)) = self.last_video_duration {
            let duration = match ticks_until(self.last_video_at, VIDEO_CLOCK_HZ) {
                // At least a frame time (as long as muxide made it), or the picture that
                // came just before the stop would barely show.
                Some(ticks) => ticks.max(muxide.min(FRAME_TICKS)),
                None => muxide.min(FRAME_TICKS),
            };
            patches.push((offset, muxide, duration));
        }
        if let Some((offset, muxide)) = self.last_audio_duration {
            if let Some(ticks) = ticks_until(self.last_audio_at, AUDIO_CLOCK_HZ) {
                patches.push((offset, muxide, muxide.min(ticks.max(1))));
            }
        }
        let io = |error| RecordError::Io {
            path: self.path.clone(),
            error,
        };
        // Nothing is written after these: the file position is left where the last is.
        for (offset, was, duration) in patches {
            if duration != was {
                self.file.seek(SeekFrom::Start(offset)).map_err(io)?;
                self.file.write_all(&duration.to_be_bytes()).map_err(io)?;
            }
        }
        self.sync()?;
        Ok(self.bytes)
    }
}

/// The boxes in `data[range]`: (type, start, end) of each, `start` at its header.
fn boxes(data: &[u8], range: std::ops::Range<usize>) -> Boxes {
    let mut out = Vec::new();
    let mut at = range.start;
    while at + 8 <= range.end {
        let size32 = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"));
        let kind: [u8; 4] = data[at + 4..at + 8].try_into().expect("4 bytes");
        let size = match size32 {
            0 => range.end - at,
            1 if at + 16 <= range.end => {
                u64::from_be_bytes(data[at + 8..at + 16].try_into().expect("8 bytes")) as usize
            }
            n => n as usize,
        };
        if size < 8 || at + size > range.end {
            break;
        }
        out.push((kind, at, at + size));
        at += size;
    }
    out
}

fn be32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

/// Boxes as `boxes` lists them: (type, start, end).
type Boxes = Vec<([u8; 4], usize, usize)>;

/// Every `traf` in the `moof`s of `data`, in order: its track ID (from its `tfhd`; `None`
/// without one) and its boxes.
fn trafs(data: &[u8]) -> impl Iterator<Item = (Option<u32>, Boxes)> + '_ {
    boxes(data, 0..data.len())
        .into_iter()
        .filter(|(kind, ..)| kind == b"moof")
        .flat_map(move |(_, start, end)| boxes(data, start + 8..end))
        .filter(|(kind, ..)| kind == b"traf")
        .map(move |(_, start, end)| {
            let children = boxes(data, start + 8..end);
            // tfhd: full box header (4), then track_ID.
            let track = children
                .iter()
                .find(|(k, ..)| k == b"tfhd")
                .and_then(|&(_, s, e)| (s + 16 <= e).then(|| be32(data, s + 12)));
            (track, children)
        })
}

/// The boxes in the `traf` of track `track_id` in the `moof` of `segment`, if there is one.
fn traf_children(segment: &[u8], track_id: u32) -> Option<Boxes> {
    trafs(segment)
        .find(|(track, _)| *track == Some(track_id))
        .map(|(_, children)| children)
}

/// Sets the base media decode time (`tfdt`) of track `track_id` in the `moof` of `segment`;
/// false when there is no such `traf` or `tfdt`.
pub fn set_tfdt(segment: &mut [u8], track_id: u32, time: u64) -> bool {
    let Some(children) = traf_children(segment, track_id) else {
        return false;
    };
    let Some(&(_, s, e)) = children.iter().find(|(k, ..)| k == b"tfdt") else {
        return false;
    };
    match segment.get(s + 8) {
        Some(1) if s + 20 <= e => segment[s + 12..s + 20].copy_from_slice(&time.to_be_bytes()),
        Some(0) if s + 16 <= e => match u32::try_from(time) {
            Ok(t) => segment[s + 12..s + 16].copy_from_slice(&t.to_be_bytes()),
            Err(_) => return false,
        },
        _ => return false,
    }
    true
}

/// Where the last sample's duration of track `track_id` is in `segment` (its `trun`,
/// ISO/IEC 14496-12 §8.8.8), and its value; `None` when the fragment has no sample of that
/// track or its `trun` gives no durations.
pub fn last_sample_duration(segment: &[u8], track_id: u32) -> Option<(usize, u32)> {
    let children = traf_children(segment, track_id)?;
    let &(_, s, e) = children.iter().rev().find(|(k, ..)| k == b"trun")?;
    if s + 16 > e {
        return None;
    }
    let flags = be32(segment, s + 8) & 0x00ff_ffff;
    let count = be32(segment, s + 12) as usize;
    if count == 0 || flags & 0x100 == 0 {
        return None;
    }
    // data-offset and first-sample-flags, then per sample: duration, size, flags,
    // composition time offset (each present as its flag says).
    let header = 16 + 4 * ((flags & 0x1 != 0) as usize + (flags & 0x4 != 0) as usize);
    let per_sample = 4 * [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|&&f| flags & f != 0)
        .count();
    let at = s + header + per_sample * (count - 1);
    (at + 4 <= e).then(|| (at, be32(segment, at)))
}

/// The picture size of a keyframe, by decoding it (the SPS would say the same).
fn picture_size(keyframe: &[u8]) -> Result<(u32, u32), RecordError> {
    let mut dec =
        crate::decoder::H264Decoder::new().map_err(|e| RecordError::Mux(e.to_string()))?;
    let pic = dec
        .decode(keyframe)
        .map_err(|e| RecordError::Mux(format!("undecodable keyframe: {e}")))?
        .ok_or_else(|| RecordError::Mux("the keyframe gave no picture".into()))?;
    let (w, h) = pic.size();
    Ok((w as u32, h as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::Converter;
    use crate::encoder::{EncoderSettings, H264Encoder};

    fn frames(
        width: usize,
        height: usize,
        n: usize,
        enc: &mut H264Encoder,
    ) -> Vec<(bytes::Bytes, bool)> {
        let mut conv = Converter::new(width, height);
        (0..n)
            .map(|i| {
                let bgrx: Vec<u8> = (0..width * height)
                    .flat_map(|p| [(p + i * 7) as u8, 0x40, 0x90, 0])
                    .collect();
                conv.convert(&bgrx, width, height);
                let out = enc.encode(conv.picture(), false).unwrap();
                (out.data, out.keyframe)
            })
            .collect()
    }

    #[test]
    fn rtp_times_extend_across_wraparound() {
        let mut c = RtpClock::default();
        assert_eq!(c.extend(u32::MAX - 10), i64::from(u32::MAX - 10));
        assert_eq!(c.extend(5), i64::from(u32::MAX) + 6);
        assert_eq!(
            c.extend(3),
            i64::from(u32::MAX) + 4,
            "a late packet goes back a little"
        );
    }

    #[test]
    fn starts_at_a_keyframe_and_writes_init_then_fragments() {
        let dir = std::env::temp_dir().join(format!("porthole-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.mp4");
        let mut rec = Recorder::create(&path, true).unwrap();
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        let units = frames(160, 96, 10, &mut enc);
        // P-frames before the keyframe are skipped; a forced IDR starts the file.
        let (p, kf) = &units[1];
        assert!(!kf);
        rec.video(p, 1000, false, Instant::now()).unwrap();
        assert!(rec.wants_keyframe());
        assert_eq!(rec.bytes_written(), 0);
        let mut conv = Converter::new(160, 96);
        conv.convert(&vec![0u8; 160 * 96 * 4], 160, 96);
        let idr = enc.encode(conv.picture(), true).unwrap();
        rec.video(&idr.data, 3000, true, Instant::now()).unwrap();
        assert!(!rec.wants_keyframe());
        // Audio from before the first picture is dropped; after it, kept.
        rec.audio(&[0xfc, 0xff, 0xfe], 0, Instant::now()).unwrap();
        for (i, (unit, kf)) in units[2..].iter().enumerate() {
            rec.video(unit, 3000 + 3000 * (i as u32 + 1), *kf, Instant::now())
                .unwrap();
            rec.audio(
                &[0xfc, 0xff, 0xfe],
                1600 + 1600 * (i as u32 + 1),
                Instant::now(),
            )
            .unwrap();
        }
        let (v, a) = rec.counts();
        assert_eq!(v, 9);
        assert_eq!(a, 8);
        let total = rec.finish(None).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, total);
        assert_eq!(&bytes[4..8], b"ftyp");
        let has = |tag: &[u8]| bytes.windows(4).any(|w| w == tag);
        assert!(has(b"moov") && has(b"moof") && has(b"mdat") && has(b"avcC") && has(b"Opus"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// (track, tfdt) of every fragment in an MP4 file's bytes.
    fn tfdts(bytes: &[u8]) -> Vec<(u32, u64)> {
        trafs(bytes)
            .map(|(track, kids)| {
                let (_, ds, _) = kids.iter().find(|(k, ..)| k == b"tfdt").unwrap();
                let time = if bytes[ds + 8] == 1 {
                    u64::from_be_bytes(bytes[ds + 12..ds + 20].try_into().unwrap())
                } else {
                    u64::from(be32(bytes, ds + 12))
                };
                (track.unwrap(), time)
            })
            .collect()
    }

    #[test]
    fn fragments_start_at_their_first_samples_time_after_a_still_screen_and_silence() {
        let dir = std::env::temp_dir().join(format!("porthole-rec-gap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gap.mp4");
        let mut rec = Recorder::create(&path, true).unwrap();
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        let mut units = frames(160, 96, 6, &mut enc).into_iter();
        let (idr, kf) = units.next().unwrap();
        assert!(kf);
        // Fragment 1: video at 0, 33, 66 ms; audio from 20 ms, 10 ms apart.
        let v0 = 900_000u32;
        let a0 = v0 / 90_000 * 48_000;
        rec.video(&idr, v0, true, Instant::now()).unwrap();
        for i in 1..3u32 {
            let (p, _) = units.next().unwrap();
            rec.video(&p, v0 + 3000 * i, false, Instant::now()).unwrap();
        }
        for i in 0..5u32 {
            rec.audio(&[0xfc, 0xff, 0xfe], a0 + 960 + 480 * i, Instant::now())
                .unwrap();
        }
        rec.flush().unwrap();
        // Still and silent for 3 s; then fragment 2: video at 3.0 s, audio at 3.5 s.
        for i in 0..3u32 {
            let (p, _) = units.next().unwrap();
            rec.video(&p, v0 + 270_000 + 3000 * i, false, Instant::now())
                .unwrap();
        }
        for i in 0..3u32 {
            rec.audio(&[0xfc, 0xff, 0xfe], a0 + 168_000 + 480 * i, Instant::now())
                .unwrap();
        }
        rec.finish(None).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            tfdts(&bytes),
            vec![(1, 0), (2, 960), (1, 270_000), (2, 168_000)],
            "muxide alone would have put fragment 2 at (1, 9000) and (2, 3360)"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Where each track ends in an MP4 file's bytes: (track, the last fragment's tfdt plus
    /// its samples' durations).
    fn track_ends(bytes: &[u8]) -> Vec<(u32, u64)> {
        let mut ends: Vec<(u32, u64)> = Vec::new();
        for ((_, kids), (track, start)) in trafs(bytes).zip(tfdts(bytes)) {
            let (_, rs, _) = kids.iter().find(|(k, ..)| k == b"trun").unwrap();
            // muxide's trun: flags 0xf01 (data offset; duration, size, flags, cto).
            assert_eq!(be32(bytes, rs + 8) & 0xffffff, 0xf01);
            let count = be32(bytes, rs + 12) as usize;
            let total: u64 = (0..count)
                .map(|i| u64::from(be32(bytes, rs + 20 + 16 * i)))
                .sum();
            ends.retain(|(t, _)| *t != track);
            ends.push((track, start + total));
        }
        ends.sort();
        ends
    }

    /// A recording of a still screen (a picture a second) and silence (a packet per 400 ms),
    /// with the first picture received at `t0`.
    fn still_recording(path: &Path, t0: Instant) -> Recorder {
        let mut rec = Recorder::create(path, true).unwrap();
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        let mut units = frames(160, 96, 4, &mut enc).into_iter();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let v0 = 900_000u32;
        let a0 = v0 / 90_000 * 48_000;
        let (idr, kf) = units.next().unwrap();
        assert!(kf);
        rec.video(&idr, v0, true, ms(0)).unwrap();
        let (p, _) = units.next().unwrap();
        rec.video(&p, v0 + 3000, false, ms(33)).unwrap();
        for i in 0..5u32 {
            rec.audio(&[0xfc, 0xff, 0xfe], a0 + 19_200 * i, ms(400 * u64::from(i)))
                .unwrap();
        }
        rec.flush().unwrap();
        // The share's keepalives: the same picture a second apart.
        for i in 1..3u32 {
            let (p, _) = units.next().unwrap();
            rec.video(&p, v0 + 90_000 * i, false, ms(1000 * u64::from(i)))
                .unwrap();
        }
        rec
    }

    #[test]
    fn the_file_ends_where_the_recording_was_stopped_after_a_still_screen() {
        let dir = std::env::temp_dir().join(format!("porthole-rec-end-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t0 = Instant::now();
        let cases = [
            // Stopped 0.5 s after the last picture (at 2 s): video to 2.5 s; the audio's
            // last packet (at 1.6 s, 400 ms like the one before) ends at 2.0 s as muxide
            // made it.
            (
                "half.mp4",
                Some(2500),
                (2 * 90_000 + 45_000, 4 * 19_200 + 19_200),
            ),
            // Stopped just as the last picture came: it shows for a frame time.
            (
                "at.mp4",
                Some(2000),
                (2 * 90_000 + 3000, 4 * 19_200 + 19_200),
            ),
            // Stopped 0.1 s after the audio's last packet: its 400 ms are cut to 100 ms.
            (
                "audio.mp4",
                Some(1700),
                (2 * 90_000 + 3000, 4 * 19_200 + 4800),
            ),
            // The stream ended (the share went away): a frame time, not the second muxide
            // would repeat from the keepalives' spacing.
            ("ended.mp4", None, (2 * 90_000 + 3000, 4 * 19_200 + 19_200)),
        ];
        for (name, stop_ms, (video_end, audio_end)) in cases {
            let path = dir.join(name);
            let rec = still_recording(&path, t0);
            rec.finish(stop_ms.map(|ms| t0 + Duration::from_millis(ms)))
                .unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(
                track_ends(&bytes),
                vec![(VIDEO_TRACK, video_end), (AUDIO_TRACK, audio_end)],
                "{name}: muxide alone ends the video at {} (its last picture lasting a second)",
                3 * 90_000
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn last_sample_duration_refuses_what_is_not_a_fragment() {
        assert_eq!(last_sample_duration(b"\0\0\0\x08moof", 1), None);
        assert_eq!(last_sample_duration(&[], 1), None);
    }

    #[test]
    fn set_tfdt_refuses_a_missing_track() {
        let mut not_mp4 = b"\0\0\0\x08moof".to_vec();
        assert!(!set_tfdt(&mut not_mp4, 1, 5));
        assert!(!set_tfdt(&mut [], 1, 5));
    }

    #[test]
    fn an_unwritable_path_is_a_clear_error() {
        let err = Recorder::create(Path::new("/proc/porthole/x.mp4"), false)
            .err()
            .unwrap();
        assert!(err.to_string().contains("/proc/porthole/x.mp4"), "{err}");
    }
}
