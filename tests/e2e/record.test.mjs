// Recording, end to end: `porthole record URL FILE` connects to a live share (PulseAudio
// null sink playing a tone, Xvfb painted by the test pattern) like a browser does and
// writes fragmented MP4 (H.264 + Opus, not re-encoded). The files are checked with
// ffprobe/ffmpeg: the streams, a clean decode, the duration, the picture at two moments
// (the quadrant colours change halfway through) and the tone's frequency. Also: a
// recorder killed with SIGKILL leaves a playable file (fragments are flushed every
// second), and an unwritable path is a clear error that leaves the share serving.
// Each test has its own PulseAudio, Xvfb, test pattern and share. Loopback only.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  withScope, recordingsDir, startXvfb, startPattern, startPulse, playTone, startShareWithEnv, startRecord,
  runTool, quadrantCentres, compareColours, DEFAULT_BLOCKS, pollUntil, frameAt, sampleFrame,
} from './lib.mjs';

const SCREEN = { width: 1280, height: 720 };
const TEST_TIMEOUT = 90_000;
const CHANGED_BLOCKS = Object.freeze(['20c8c8', 'c820b4', 'f0f0f0', '102010']); // TL TR BL BR
const TONE_HZ = 440;
// The tone's own player buffers 250 ms: at pacat's 20 ms it underran under a full suite's
// load ("Stream underrun." in `pacat -v`, a gap in the sink itself), and the recording
// faithfully held that gap, failing the zero-crossing check at one second in ~5 runs.
const TONE = { latencyMs: 250 };

/** PulseAudio + tone + Xvfb + pattern + share (capturing the null sink), all in the scope. */
async function setup(s, { tone = true } = {}) {
  const pa = s.add(await startPulse());
  if (tone) s.add(await playTone(pa, TONE_HZ, TONE));
  const x = s.add(await startXvfb(SCREEN));
  const pattern = s.add(await startPattern(x.display));
  const share = s.add(await startShareWithEnv(pa.env, { display: x.display, args: ['--no-announce'] }));
  return { pa, x, pattern, share, dir: recordingsDir(s, 'porthole-record-') };
}

/** Waits for the recorder to exit (SIGKILLing it after timeoutMs); returns {code, signal, ms}. */
async function recorderExit(rec, timeoutMs) {
  const started = Date.now();
  const r = await Promise.race([rec.exited, sleep(timeoutMs).then(() => null)]);
  if (r) return { ...r, ms: Date.now() - started };
  const k = await rec.stop({ signal: 'SIGKILL', graceMs: 2000 });
  assert.fail(`porthole record still running ${timeoutMs} ms on (killed: ${JSON.stringify(k)}); stderr:\n${rec.stderrText()}`);
}

/** ffprobe -show_streams -show_format -count_packets, parsed. */
async function probe(file) {
  const r = await runTool('ffprobe', ['-v', 'error', '-count_packets', '-show_streams', '-show_format',
    '-of', 'json', file], { timeoutMs: 20000 });
  assert.equal(r.code, 0, `ffprobe ${file} exits 0 (code=${r.code} signal=${r.signal}); stderr:\n${r.stderr}`);
  assert.equal(r.stderr.trim(), '', `ffprobe -v error ${file} prints nothing on stderr`);
  return JSON.parse(r.stdout.toString());
}

/**
 * Runs a full decode (ffmpeg -v error -i FILE -f null -) and asserts exit 0 and nothing on
 * stderr, with one exception: ffmpeg's null output takes 1/(average frame rate) as its
 * video time base, so two frames of a variable-rate recording closer together than that
 * (a screen share sends a frame when the screen changes, and a keyframe on request at
 * once) round to one tick and ffmpeg says "non monotonically increasing dts to muxer"
 * about its own output. When that is all it says, and the same decode with the input's
 * own time base (-enc_time_base:v -1) prints nothing, the file is fine: noted, not failed.
 * (Packet times going backwards in the file itself are timeline()'s business.)
 */
async function assertDecodesCleanly(t, file) {
  const r = await runTool('ffmpeg', ['-nostdin', '-v', 'error', '-i', file, '-f', 'null', '-'], { timeoutMs: 30000 });
  assert.equal(r.code, 0, `ffmpeg decodes ${file} with exit code 0 (code=${r.code} signal=${r.signal}); stderr:\n${r.stderr}`);
  if (r.stderr === '') return;
  const lines = r.stderr.trim().split('\n');
  const onlyOutputDts = lines.every((l) =>
    /^\[null @ [^\]]+\] Application provided invalid, non monotonically increasing dts to muxer in stream 0: /.test(l) ||
    /^\s*Last message repeated \d+ times$/.test(l));
  const r2 = await runTool('ffmpeg', ['-nostdin', '-v', 'error', '-i', file, '-enc_time_base:v', '-1', '-f', 'null', '-'],
    { timeoutMs: 30000 });
  if (onlyOutputDts && r2.code === 0 && r2.stderr === '') {
    t.diagnostic(`note: ffmpeg -f null printed ${lines.length} "non monotonically increasing dts to muxer" line(s) ` +
      `about its own 1/(average fps) output time base (frames closer than that); with -enc_time_base:v -1 the ` +
      `decode of ${path.basename(file)} is silent`);
    return;
  }
  assert.fail(`ffmpeg -v error decodes ${file} without a word on stderr, but it printed ${lines.length} line(s):\n` +
    `${lines.slice(0, 20).join('\n')}\nand with -enc_time_base:v -1 (code ${r2.code}):\n` +
    `${r2.stderr.trim().split('\n').slice(0, 20).join('\n')}`);
}

/**
 * The packets of each stream as the demuxer sees them: {video, audio}, each
 * {count, firstPts, lastPts, backwards: [{i, from, to}], discarded, maxGap: {at, s}}.
 * In a fragmented MP4 each fragment's packet times start at its tfdt: a tfdt earlier than
 * the end of the previous fragment shows up as times going backwards (and ffmpeg flags
 * such packets 'D', discard).
 */
async function timeline(file) {
  const r = await runTool('ffprobe', ['-v', 'error', '-show_entries', 'packet=stream_index,pts_time,flags',
    '-of', 'csv=p=0', file], { timeoutMs: 20000 });
  assert.equal(r.code, 0, `ffprobe -show_packets ${file}: ${r.stderr}`);
  const info = await probe(file);
  const kinds = new Map(info.streams.map((st) => [st.index, st.codec_type]));
  const out = {};
  for (const line of r.stdout.toString().trim().split('\n')) {
    const [idx, pts, flags] = line.split(',');
    const kind = kinds.get(Number(idx));
    const t = Number(pts);
    const st = (out[kind] ??= { count: 0, firstPts: t, lastPts: t, max: t, backwards: [], discarded: 0, maxGap: { at: t, s: 0 }, times: [] });
    st.times.push(t);
    if (st.count > 0) {
      if (t <= st.max) st.backwards.push({ i: st.count, from: st.max, to: t });
      else if (t - st.max > st.maxGap.s) st.maxGap = { at: st.max, s: Number((t - st.max).toFixed(6)) };
    }
    st.max = Math.max(st.max, t);
    st.lastPts = t;
    if (flags?.includes('D')) st.discarded++;
    st.count++;
  }
  return out;
}

/** Asserts each stream's packet times only go forward and none is flagged for discard. */
function assertForward(tl, label) {
  for (const [kind, st] of Object.entries(tl)) {
    assert.ok(st.backwards.length === 0 && st.discarded === 0,
      `${label}: the ${kind} packets' times only go forward, but ${st.backwards.length} of ${st.count} go back ` +
      `(${st.discarded} flagged discard), e.g. ${JSON.stringify(st.backwards.slice(0, 5))}: a fragment's tfdt ` +
      'earlier than the end of the fragment before it');
  }
}

const fmtTimeline = (tl) => Object.entries(tl).map(([k, st]) => `${k}: ${st.count} packets ${st.firstPts}..${st.lastPts} s, ` +
  `largest gap ${st.maxGap.s} s after ${st.maxGap.at} s, ${st.backwards.length} backwards, ${st.discarded} discard`).join('; ');

/** The streams of a probe: exactly one h264 width x height and (if audio) one opus. */
function assertStreams(info, { width, height }, label) {
  const streams = info.streams.map((st) => `${st.codec_type}/${st.codec_name}`);
  const video = info.streams.filter((st) => st.codec_type === 'video');
  const audio = info.streams.filter((st) => st.codec_type === 'audio');
  assert.equal(info.streams.length, 2, `${label}: two streams, got ${JSON.stringify(streams)}`);
  assert.equal(video.length, 1, `${label}: one video stream, got ${JSON.stringify(streams)}`);
  assert.equal(audio.length, 1, `${label}: one audio stream, got ${JSON.stringify(streams)}`);
  const [v] = video;
  const [a] = audio;
  assert.equal(v.codec_name, 'h264', `${label}: the video is H.264`);
  assert.equal(v.codec_tag_string, 'avc1', `${label}: the video's sample entry is avc1`);
  assert.deepEqual([v.width, v.height], [width, height], `${label}: the video is ${width}x${height}`);
  assert.equal(a.codec_name, 'opus', `${label}: the audio is Opus`);
  assert.equal(Number(a.sample_rate), 48000, `${label}: Opus at 48 kHz`);
  return { v, a };
}

/** Decodes the audio to mono 48 kHz float32; returns a Float32Array. */
async function decodeAudio(file) {
  const r = await runTool('ffmpeg', ['-nostdin', '-v', 'error', '-i', file, '-vn', '-ac', '1', '-ar', '48000',
    '-f', 'f32le', '-'], { timeoutMs: 20000 });
  assert.equal(r.code, 0, `ffmpeg decodes the audio (code=${r.code}); stderr:\n${r.stderr}`);
  assert.equal(r.stderr, '', 'the audio decodes without a word on stderr');
  const b = r.stdout;
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length - (b.length % 4)));
}

/**
 * The tone in `samples[start, start + n)`: the strongest DFT bin between 50 and 4000 Hz
 * (1 Hz bins over a 1 s window at 48 kHz, Hann window, refined by parabolic interpolation),
 * the rate of zero crossings as a cross-check, the RMS level and the share of the window's
 * energy within ±5 Hz of the peak.
 */
function analyseTone(samples, start, n = 48000, rate = 48000) {
  const x = new Float64Array(n);
  let sq = 0;
  let crossings = 0;
  for (let i = 0; i < n; i++) {
    const s = samples[start + i];
    sq += s * s;
    if (i > 0 && (samples[start + i - 1] < 0) !== (s < 0)) crossings++;
    x[i] = s * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1)));
  }
  const binHz = rate / n;
  const lo = Math.ceil(50 / binHz);
  const hi = Math.floor(4000 / binHz);
  const mag = new Float64Array(hi + 2);
  let total = 0;
  // Goertzel per bin: ~4000 bins x 48000 samples, well under a second.
  for (let k = lo - 1; k <= hi + 1; k++) {
    const w = (2 * Math.PI * k) / n;
    const c = 2 * Math.cos(w);
    let s1 = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const s0 = x[i] + c * s1 - s2;
      s2 = s1;
      s1 = s0;
    }
    mag[k] = s1 * s1 + s2 * s2 - c * s1 * s2; // |X[k]|^2
    if (k >= lo && k <= hi) total += mag[k];
  }
  let best = lo;
  for (let k = lo; k <= hi; k++) if (mag[k] > mag[best]) best = k;
  const [l, c, r] = [mag[best - 1], mag[best], mag[best + 1]].map((m) => Math.log(m + 1e-30));
  const denom = l - 2 * c + r;
  const shift = denom !== 0 ? Math.max(-0.5, Math.min(0.5, (0.5 * (l - r)) / denom)) : 0;
  let near = 0;
  for (let k = Math.max(lo, best - 5); k <= Math.min(hi, best + 5); k++) near += mag[k];
  const rms = Math.sqrt(sq / n);
  return {
    freq: (best + shift) * binHz,
    zeroCrossingHz: crossings / 2 / (n / rate),
    rmsDb: 20 * Math.log10(rms + 1e-12),
    peakShare: total > 0 ? near / total : 0,
  };
}

const fmt = (x, d = 2) => Number(x).toFixed(d);

test('a 10 s recording of a live share probes, decodes and holds the screen and the tone',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const { pattern, share, dir } = await setup(s);
    const file = path.join(dir, 'out.mp4');
    const points = quadrantCentres(SCREEN.width, SCREEN.height);

    const spawned = Date.now();
    const rec = s.add(startRecord(share.viewerUrl(), file, ['--duration', '10']));
    // The file appears when the first keyframe is in: from then on it is the recording's clock.
    await pollUntil(() => fs.existsSync(file) || rec.exitInfo !== null, (v) => v,
      { timeoutMs: 10000, intervalMs: 20, what: `${file} to appear` });
    assert.equal(rec.exitInfo, null, `the recorder is still running once the file exists; stderr:\n${rec.stderrText()}`);
    const appeared = Date.now();
    const firstKeyframeMs = appeared - spawned;
    await sleep(5000);
    await pattern.setBlocks(CHANGED_BLOCKS);
    const changedAtMs = Date.now() - appeared;

    const exit = await recorderExit(rec, 20000);
    const totalMs = Date.now() - spawned;
    t.diagnostic(`file appeared ${firstKeyframeMs} ms after the recorder started; colours changed ${changedAtMs} ms ` +
      `later; recorder exited after ${totalMs} ms: ${JSON.stringify(exit)}`);
    assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null },
      `porthole record --duration 10 exits 0; stderr:\n${rec.stderrText()}`);
    assert.ok(totalMs < 16000, `porthole record --duration 10 is done within 16 s, took ${totalMs} ms`);
    const summary = rec.summary();
    assert.ok(summary, `stderr has the "recorded ..." summary line:\n${rec.stderrText()}`);
    t.diagnostic(`summary: ${JSON.stringify(summary)}`);
    const size = fs.statSync(file).size;
    assert.equal(summary.file, file, 'the summary names the file');
    assert.equal(summary.bytes, size, `the summary's byte count is the file's size (${size})`);

    const info = await probe(file);
    const { v, a } = assertStreams(info, SCREEN, 'out.mp4');
    const duration = Number(info.format.duration);
    t.diagnostic(`ffprobe: format ${info.format.format_name}, duration ${duration} s, ${info.format.size} bytes; ` +
      `video ${v.codec_name} ${v.profile} ${v.width}x${v.height} ${v.pix_fmt} r=${v.r_frame_rate} avg=${v.avg_frame_rate} ` +
      `start ${v.start_time} dur ${v.duration} packets ${v.nb_read_packets}; audio ${a.codec_name} ${a.sample_rate} Hz ` +
      `${a.channels} ch start ${a.start_time} dur ${a.duration} packets ${a.nb_read_packets}`);
    assert.ok(Math.abs(duration - 10) <= 0.5, `the recording lasts 10 s ± 0.5, ffprobe says ${duration} s`);
    assert.equal(Number(v.nb_read_packets), summary.videoFrames, 'the file holds as many video frames as the summary says');
    assert.equal(Number(a.nb_read_packets), summary.audioPackets, 'the file holds as many audio packets as the summary says');
    const tl = await timeline(file);
    t.diagnostic(`timeline: ${fmtTimeline(tl)}; the recorder's own clock said ${summary.seconds} s`);
    assertForward(tl, 'out.mp4');
    await assertDecodesCleanly(t, file);
    // 10 ms Opus frames while the tone plays: ~100 a second.
    assert.ok(summary.audioPackets >= 900, `≥ 900 audio packets in 10 s, got ${summary.audioPackets}`);

    // The picture: the default colours early on, the changed ones after the change.
    const early = sampleFrame(await frameAt(file, 2, SCREEN), points);
    const c2 = compareColours(points, early, DEFAULT_BLOCKS, 40);
    t.diagnostic(`frame at 2 s:\n${c2.report}`);
    assert.ok(c2.ok, `the frame at 2 s shows the default quadrant colours:\n${c2.report}`);
    const late = sampleFrame(await frameAt(file, 9, SCREEN), points);
    const c9 = compareColours(points, late, CHANGED_BLOCKS, 40);
    t.diagnostic(`frame at 9 s:\n${c9.report}`);
    assert.ok(c9.ok, `the frame at 9 s shows the changed quadrant colours (changed at ~${fmt(changedAtMs / 1000, 1)} s):\n${c9.report}`);

    // The sound: a 440 Hz tone, well above silence, in 1 s windows at 2, 5 and 8 s.
    const pcm = await decodeAudio(file);
    t.diagnostic(`decoded audio: ${fmt(pcm.length / 48000)} s`);
    assert.ok(pcm.length >= 9 * 48000, `≥ 9 s of decoded audio, got ${fmt(pcm.length / 48000)} s`);
    for (const at of [2, 5, 8]) {
      const tone = analyseTone(pcm, at * 48000);
      t.diagnostic(`audio at ${at}-${at + 1} s: peak ${fmt(tone.freq)} Hz (${fmt(100 * tone.peakShare, 1)}% of the energy ` +
        `within ±5 Hz), zero crossings ${fmt(tone.zeroCrossingHz)} Hz, RMS ${fmt(tone.rmsDb, 1)} dBFS`);
      assert.ok(Math.abs(tone.freq - TONE_HZ) <= 10, `the dominant frequency at ${at} s is 440 ± 10 Hz, got ${fmt(tone.freq)} Hz`);
      assert.ok(Math.abs(tone.zeroCrossingHz - TONE_HZ) <= 10,
        `zero crossings at ${at} s say 440 ± 10 Hz, got ${fmt(tone.zeroCrossingHz)} Hz`);
      // The tone is played at amplitude 0.5 (-9 dBFS RMS); silence would be far below -60.
      assert.ok(tone.rmsDb > -25, `the audio at ${at} s is well above silence: RMS ${fmt(tone.rmsDb, 1)} dBFS`);
      assert.ok(tone.peakShare > 0.9, `the tone holds > 90% of the energy at ${at} s, got ${fmt(100 * tone.peakShare, 1)}%`);
    }
  }));

test('kill -9 mid-recording leaves a playable file', { timeout: TEST_TIMEOUT },
  (t) => withScope(t, async (s) => {
    const { share, dir } = await setup(s);
    const file = path.join(dir, 'k.mp4');
    const rec = s.add(startRecord(share.viewerUrl(), file));
    await pollUntil(() => fs.existsSync(file) || rec.exitInfo !== null, (v) => v,
      { timeoutMs: 10000, intervalMs: 20, what: `${file} to appear` });
    assert.equal(rec.exitInfo, null, `the recorder is still running; stderr:\n${rec.stderrText()}`);
    await sleep(5000);
    assert.equal(rec.exitInfo, null, `the recorder is still running after 5 s; stderr:\n${rec.stderrText()}`);
    const sizeBefore = fs.statSync(file).size;
    rec.child.kill('SIGKILL');
    const exit = await recorderExit(rec, 5000);
    assert.equal(exit.signal, 'SIGKILL', `the recorder died of SIGKILL: ${JSON.stringify(exit)}`);
    const size = fs.statSync(file).size;
    t.diagnostic(`killed 5 s after the file appeared: ${sizeBefore} bytes just before, ${size} bytes after`);
    assert.equal(rec.summary(), null, 'no summary line: it had no chance to finish');
    // The share sees a dead viewer (no goodbye at all) and frees its session.
    const killedAt = Date.now();
    const freed = await pollUntil(() => share.stats(), (st) => st.viewers === 0,
      { timeoutMs: 20000, intervalMs: 200, what: 'the share to drop the dead recorder' });
    t.diagnostic(`the share dropped the killed recorder ${Date.now() - killedAt} ms later (viewers=${freed.viewers})`);

    const info = await probe(file);
    const { v, a } = assertStreams(info, SCREEN, 'k.mp4');
    const duration = Number(info.format.duration);
    t.diagnostic(`ffprobe: duration ${duration} s; video packets ${v.nb_read_packets} (dur ${v.duration}), ` +
      `audio packets ${a.nb_read_packets} (dur ${a.duration})`);
    assert.ok(duration >= 4, `the killed recording holds ≥ 4 s, ffprobe says ${duration} s`);
    assert.ok(Number(a.nb_read_packets) >= 300, `the killed recording holds audio: ${a.nb_read_packets} packets`);
    const tl = await timeline(file);
    t.diagnostic(`timeline: ${fmtTimeline(tl)}`);
    assertForward(tl, 'k.mp4');
    await assertDecodesCleanly(t, file);
  }));

test('an unwritable path is a clear error and the share is unaffected', { timeout: TEST_TIMEOUT },
  (t) => withScope(t, async (s) => {
    const { share, dir } = await setup(s);
    const before = await share.stats();
    assert.equal(before.viewers, 0, `no viewer yet: ${JSON.stringify(before)}`);
    const bad = '/proc/nope/x.mp4';
    const rec = s.add(startRecord(share.viewerUrl(), bad, ['--duration', '2']));
    const exit = await recorderExit(rec, 8000);
    const err = rec.stderrText();
    t.diagnostic(`recorder to ${bad}: ${JSON.stringify(exit)} after ${exit.ms} ms; stderr:\n${err}`);
    assert.ok(exit.code !== 0 && exit.code !== null, `porthole record to ${bad} exits non-zero: ${JSON.stringify(exit)}`);
    assert.ok(err.includes(bad), `stderr names the path ${bad}:\n${err}`);
    assert.equal(rec.summary(), null, 'no "recorded ..." summary for a failed recording');
    assert.equal(fs.existsSync(bad), false);

    // The share goes on serving: stats answer, and a recording to a good path (the code
    // given with --code this time) works.
    assert.equal(share.exitInfo, null, `the share is still running; stderr:\n${share.stderrText()}`);
    // The recorder that gave up must not stay on the share as a viewer (the host's
    // viewer count and its sending for it): it ends its session on the way out.
    const leftAt = Date.now();
    await pollUntil(() => share.stats(), (st) => st.viewers === 0,
      { timeoutMs: 20000, intervalMs: 250, what: 'the share to count 0 viewers after the failed recorder exited' })
      .catch((err) => assert.fail(`the failed recorder's session stays on the share: ${err.message}`));
    const lingeredMs = Date.now() - leftAt;
    t.diagnostic(`the share counted 0 viewers ${lingeredMs} ms after the failed recorder exited`);
    const good = path.join(dir, 'good.mp4');
    const rec2 = s.add(startRecord(share.url, good, ['--code', share.code, '--duration', '2']));
    const exit2 = await recorderExit(rec2, 12000);
    assert.deepEqual({ code: exit2.code, signal: exit2.signal }, { code: 0, signal: null },
      `the second recording exits 0; stderr:\n${rec2.stderrText()}`);
    const summary = rec2.summary();
    t.diagnostic(`second recording: ${JSON.stringify(summary)}`);
    assert.ok(summary && summary.videoFrames > 0, `the second recording has video: ${rec2.stderrText()}`);
    const info = await probe(good);
    assertStreams(info, SCREEN, 'good.mp4');
    assertForward(await timeline(good), 'good.mp4');
    await assertDecodesCleanly(t, good);
    assert.equal(share.exitInfo, null, 'the share is still running');

    // An existing file is not overwritten without --force, and the share never sees it.
    const size = fs.statSync(good).size;
    const rec3 = s.add(startRecord(share.url, good, ['--code', share.code, '--duration', '2']));
    const exit3 = await recorderExit(rec3, 8000);
    assert.ok(exit3.code !== 0 && exit3.code !== null, `recording over ${good} without --force exits non-zero: ${JSON.stringify(exit3)}`);
    assert.match(rec3.stderrText(), /already exists; pass --force/, 'the refusal says how to overwrite');
    assert.equal(fs.statSync(good).size, size, 'the existing recording is untouched');
    assert.equal((await share.stats()).peer_connections_created, before.peer_connections_created + 2,
      'the refused recorder never offered to the share');
    const after = await pollUntil(() => share.stats(), (st) => st.viewers === 0,
      { timeoutMs: 5000, intervalMs: 100, what: 'the share to count 0 viewers after the good recording' });
    t.diagnostic(`share stats at the end: viewers=${after.viewers} audio_packets_published=${after.audio_packets_published}`);
    // Checked last, so the rest is known whatever this says.
    assert.ok(lingeredMs < 3000, `the failed recorder's session ends with it (the share counts 0 viewers within ` +
      `3 s), but it stayed ${lingeredMs} ms: the recorder exits without DELETE-ing its WHEP session, and the ` +
      'share keeps a viewer (and sends to it) until the peer connection times out');
  }));

test('an idle desktop (a still screen, then a burst of change; silence, then sound) records cleanly',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    // The common case for a recording: nothing moves for seconds (the share re-sends its
    // picture once a second) and nothing plays (DTX: no audio packets), then both start.
    const pa = s.add(await startPulse());
    const x = s.add(await startXvfb(SCREEN));
    const share = s.add(await startShareWithEnv(pa.env, { display: x.display, args: ['--no-announce'] }));
    const dir = recordingsDir(s, 'porthole-record-');
    const file = path.join(dir, 'idle.mp4');
    const rec = s.add(startRecord(share.viewerUrl(), file, ['--duration', '8']));
    await pollUntil(() => fs.existsSync(file) || rec.exitInfo !== null, (v) => v,
      { timeoutMs: 10000, intervalMs: 20, what: `${file} to appear` });
    await sleep(4000);
    const pattern = s.add(await startPattern(x.display));
    const movingAt = Date.now(); // the bar moves from now on (it was painted just before)
    s.add(await playTone(pa, TONE_HZ));
    const soundAt = Date.now(); // PulseAudio lists the tone's stream: it plays
    await sleep(1500);
    await pattern.stop();
    const exit = await recorderExit(rec, 20000);
    assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null },
      `porthole record --duration 8 exits 0; stderr:\n${rec.stderrText()}`);
    const summary = rec.summary();
    t.diagnostic(`summary: ${JSON.stringify(summary)}`);
    const info = await probe(file);
    const { v, a } = assertStreams(info, SCREEN, 'idle.mp4');
    const duration = Number(info.format.duration);
    const tl = await timeline(file);
    t.diagnostic(`ffprobe: duration ${duration} s, video ${v.nb_read_packets} packets, audio ${a.nb_read_packets} packets; ` +
      `timeline: ${fmtTimeline(tl)}`);
    // The file ends where --duration stopped it, whenever the last picture came (8.02 s in
    // three runs; before the recorder set the last picture's length, muxide repeated the
    // still screen's second-long spacing: 8.82 s once in CI, and down to 7.03 possible).
    assert.ok(Math.abs(duration - 8) <= 0.25, `the recording lasts 8 s ± 0.25, ffprobe says ${duration} s`);
    assert.equal(Number(v.nb_read_packets), summary.videoFrames, 'every video frame is in the file');
    assert.equal(Number(a.nb_read_packets), summary.audioPackets, 'every audio packet is in the file');
    assertForward(tl, 'idle.mp4');
    await assertDecodesCleanly(t, file);
    // In sync after the still, silent part: the picture starts moving and the sound starts
    // in the file as far apart as they did on the host (when each began is only known to
    // the test within the time its helpers take to report, hence the tolerance).
    const firstDense = (times, gap) => times.find((t0, i) => i + 3 < times.length &&
      times[i + 1] - t0 < gap && times[i + 2] - times[i + 1] < gap && times[i + 3] - times[i + 2] < gap);
    const movingInFile = firstDense(tl.video.times, 0.1);
    // (Opus sends every 10 ms frame for a moment after the start before DTX sets in.)
    const soundInFile = firstDense(tl.audio.times.filter((t0) => t0 > 1), 0.03);
    const onHost = (soundAt - movingAt) / 1000;
    t.diagnostic(`the picture starts moving at ${movingInFile} s and the sound at ${soundInFile} s in the file ` +
      `(${(soundInFile - movingInFile).toFixed(3)} s apart); on the host, at most ${onHost.toFixed(3)} s apart`);
    assert.ok(Number.isFinite(movingInFile) && Number.isFinite(soundInFile), fmtTimeline(tl));
    assert.ok(soundInFile - movingInFile >= -0.25 && soundInFile - movingInFile <= onHost + 0.25,
      `sound starts ${(soundInFile - movingInFile).toFixed(3)} s after the picture moves in the file, ` +
      `${onHost.toFixed(3)} s at most on the host`);
    // The still part: about one frame a second; the sound: packets only once the tone plays.
    assert.ok(tl.video.maxGap.s >= 0.8, `a still screen sends about a frame a second: ${fmtTimeline(tl)}`);
    assert.ok(summary.audioPackets >= 100 && summary.audioPackets < 700,
      `dense audio only while the tone played (~3-4 s of 8; Opus DTX sends a packet per 400 ms of silence): ` +
      `${summary.audioPackets} packets`);
  }));

test('the share dies mid-recording (kill -9): the recorder says so, finishes the file and exits',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const { share, dir } = await setup(s);
    const file = path.join(dir, 'dead.mp4');
    const rec = s.add(startRecord(share.viewerUrl(), file));
    await pollUntil(() => fs.existsSync(file) || rec.exitInfo !== null, (v) => v,
      { timeoutMs: 10000, intervalMs: 20, what: `${file} to appear` });
    await sleep(3000);
    const killedAt = Date.now();
    const k = await share.stop({ signal: 'SIGKILL' });
    assert.equal(k.signal, 'SIGKILL', `the share died of SIGKILL: ${JSON.stringify(k)}`);
    const exit = await recorderExit(rec, 30000);
    const noticedMs = Date.now() - killedAt;
    t.diagnostic(`the recorder exited ${noticedMs} ms after the share was killed: ${JSON.stringify(exit)}; ` +
      `stderr tail:\n${rec.stderrText().trim().split('\n').slice(-3).join('\n')}`);
    assert.match(rec.stderrText(), /the share ended: /, 'the recorder says the share ended');
    assert.ok(exit.code !== null, `the recorder exits by itself: ${JSON.stringify(exit)}`);
    const summary = rec.summary();
    assert.ok(summary, `a "recorded ..." summary: what there is was kept:\n${rec.stderrText()}`);
    const info = await probe(file);
    const { v } = assertStreams(info, SCREEN, 'dead.mp4');
    const duration = Number(info.format.duration);
    t.diagnostic(`summary ${JSON.stringify(summary)}; ffprobe: ${duration} s, ${v.nb_read_packets} video packets`);
    assert.ok(duration >= 2.5 && duration <= 4.5, `about the 3 s recorded before the share died: ${duration} s`);
    assert.ok(Math.abs(summary.seconds - duration) <= 0.2,
      `the summary gives the recording's length (${summary.seconds} s), not the time spent waiting (${duration} s in the file)`);
    assert.equal(Number(v.nb_read_packets), summary.videoFrames, 'every frame received is in the file');
    assertForward(await timeline(file), 'dead.mp4');
    await assertDecodesCleanly(t, file);
  }));
