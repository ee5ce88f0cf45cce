//! Recording what a viewer receives to a file: the one driver of `media::record::Recorder`,
//! for `porthole record` and the app's viewer (Record, `porthole view --record`).
//!
//! - The file's tracks are known at once: audio when the share's answer says it sends
//!   sound (`ShareClient::has_audio`), never by waiting to see whether any arrives.
//! - The file starts at a keyframe. Until one has arrived, the sender is asked for one
//!   (a PLI) at once and then at most every [`KEYFRAME_REQUEST_INTERVAL`], not at every
//!   frame: a keyframe takes a round trip and an encode to come, and each request costs the
//!   share (and every other viewer) a large frame.
//!
//! Time is passed in, so the policy is tested without a clock.

use std::path::Path;
use std::time::{Duration, Instant};

use media::record::{RecordError, Recorder};
use net::client::ReceivedUnit;

/// Least time between two keyframe requests while a recording waits for its first one.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// A recording in progress.
pub struct Recording {
    recorder: Recorder,
    last_keyframe_request: Option<Instant>,
}

impl Recording {
    /// Creates (truncates) `path`. `with_audio`: the share's answer says sound comes
    /// (`ShareClient::has_audio`).
    pub fn create(path: &Path, with_audio: bool) -> Result<Self, RecordError> {
        Ok(Self {
            recorder: Recorder::create(path, with_audio)?,
            last_keyframe_request: None,
        })
    }

    /// Writes one video unit received at `now`. `Ok(true)`: ask the sender for a keyframe
    /// now (the file still waits for its first one).
    pub fn video(&mut self, unit: &ReceivedUnit, now: Instant) -> Result<bool, RecordError> {
        self.recorder
            .video(&unit.data, unit.rtp_time, unit.keyframe, unit.received)?;
        Ok(self.keyframe_due(now))
    }

    /// Writes one audio packet (dropped before the file has started, or when the file has
    /// no sound track).
    pub fn audio(&mut self, unit: &ReceivedUnit) -> Result<(), RecordError> {
        self.recorder
            .audio(&unit.data, unit.rtp_time, unit.received)
    }

    /// Whether to ask the sender for a keyframe at `now`: the file waits for its first one
    /// and none was asked for in the last [`KEYFRAME_REQUEST_INTERVAL`]. A `true` counts as
    /// the request made.
    pub fn keyframe_due(&mut self, now: Instant) -> bool {
        if self.started() {
            return false;
        }
        let due = self
            .last_keyframe_request
            .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_REQUEST_INTERVAL);
        if due {
            self.last_keyframe_request = Some(now);
        }
        due
    }

    /// Whether the file has started (its first keyframe arrived).
    pub fn started(&self) -> bool {
        !self.recorder.wants_keyframe()
    }

    /// The recorder, for its figures (time, bytes, counts).
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Writes what is buffered and closes the file; returns the bytes written. `stopped_at`:
    /// when the recording was stopped (its last picture shows until then); `None` when the
    /// stream ended (see `Recorder::finish`).
    pub fn finish(self, stopped_at: Option<Instant>) -> Result<u64, RecordError> {
        self.recorder.finish(stopped_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::convert::Converter;
    use media::encoder::{EncoderSettings, H264Encoder};

    fn unit(data: Vec<u8>, rtp_time: u32, keyframe: bool) -> ReceivedUnit {
        ReceivedUnit {
            data: data.into(),
            rtp_time,
            keyframe,
            received: Instant::now(),
            capture_ntp: None,
            playout_delay: None,
        }
    }

    /// A real keyframe (the recorder reads the picture's size from it).
    fn keyframe(rtp_time: u32) -> ReceivedUnit {
        let (w, h) = (64, 48);
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        let mut conv = Converter::new(w, h);
        conv.convert(&[0x40u8, 0x80, 0xc0, 0].repeat(w * h), w, h);
        let out = enc.encode(conv.picture(), true).unwrap();
        assert!(out.keyframe);
        unit(out.data.to_vec(), rtp_time, true)
    }

    /// A file in a directory of its own, removed with the returned guard.
    fn temp_file(name: &str) -> (TempDir, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("porthole-recording-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        (TempDir(dir), path)
    }

    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn keyframes_are_asked_for_at_once_then_at_most_every_500_ms_until_the_file_starts() {
        let (_dir, path) = temp_file("throttle.mp4");
        let mut rec = Recording::create(&path, false).unwrap();
        let t0 = Instant::now();
        let delta = unit(vec![0, 0, 0, 1, 0x41, 0x9a], 0, false);
        let at = |ms| t0 + Duration::from_millis(ms);
        // Frame after frame (30 fps) without a keyframe: one request per 500 ms.
        let asked: Vec<u64> = (0..40)
            .map(|i| i * 33)
            .filter(|&ms| rec.video(&delta, at(ms)).unwrap())
            .collect();
        assert_eq!(asked, [0, 528, 1056]);
        assert!(!rec.started());
        // Starting from the UI asks too, with the same throttle.
        assert!(!rec.keyframe_due(at(1300)));
        assert!(rec.keyframe_due(at(1600)));
        // The keyframe starts the file: no more requests, whatever comes.
        assert!(!rec.video(&keyframe(90_000), at(1700)).unwrap());
        assert!(rec.started());
        assert!(!rec.video(&delta, at(5000)).unwrap());
        assert!(!rec.keyframe_due(at(9000)));
        assert_eq!(rec.recorder().counts(), (2, 0));
        rec.finish(None).unwrap();
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_sound_track_follows_the_answer_from_the_first_keyframe() {
        for with_audio in [true, false] {
            let (_dir, path) = temp_file(&format!("audio-{with_audio}.mp4"));
            let mut rec = Recording::create(&path, with_audio).unwrap();
            let opus = |t| unit(vec![0xfc, 0xff, 0xfe], t, true);
            // Sound before the first picture is not recorded.
            rec.audio(&opus(0)).unwrap();
            // The file starts with the first keyframe, not after waiting for sound.
            assert!(!rec.video(&keyframe(90_000), Instant::now()).unwrap());
            assert!(rec.started());
            rec.audio(&opus(48_000 + 960)).unwrap();
            rec.audio(&opus(48_000 + 1920)).unwrap();
            let audio_packets = if with_audio { 2 } else { 0 };
            assert_eq!(rec.recorder().counts(), (1, audio_packets), "{with_audio}");
            rec.finish(None).unwrap();
            std::fs::remove_file(&path).unwrap();
        }
    }
}
