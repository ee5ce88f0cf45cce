// A/V sync benchmark (prints figures, asserts nothing): a private PulseAudio plays a tone
// into a null sink, Xvfb shows the moving test pattern, `porthole share` sends both, and
// one headless Chromium viewer receives them. Every second it reads the viewer's
// inbound-rtp stats for audio and video and prints one line; at the end, a summary of the
// A/V offset at the start and the end, the drift between them, and the jitter buffers.
//
// Run from the repository root, in a loopback-only network namespace:
//   unshare -n sh -c 'ip link set lo up; node tests/bench/av_drift.mjs [--seconds 60]'
// Options: --seconds N (60), --freq HZ (440), --player-latency-ms MS (20; "default" for
// PulseAudio's ~2 s, like paplay), --fps N (share's, default its own), --warmup N (3 s).
//
// How the offset is measured. estimatedPlayoutTimestamp (per inbound-rtp, in NTP ms) is
// the sender's capture clock of what is playing out now, mapped from RTP time with the
// RTCP sender reports of that stream. Audio minus video at the same getStats() instant is
// the A/V offset as the receiver sees it: positive means the sound being played was
// captured later than the picture being shown (audio ahead of video). Drift is its change
// from the start (median of the first 5 s after warm-up) to the end (median of the last
// 5 s), and also the least-squares slope. Both sender and viewer run on this machine's
// wall clock, so "now - estimatedPlayoutTimestamp" is also each stream's capture-to-
// playout latency (as far as the sender reports map RTP time to the capture clock).
// Chromium's lip sync moves that offset on purpose, by changing the jitter-buffer delay of
// one stream (video delay steps of ~15 ms, NetEq's audio target): "net" is the offset
// minus (video jitter-buffer delay - audio jitter-buffer delay), i.e. what remains once
// the receiver's buffering is taken out; its change over the run is the drift of the
// streams' clocks and sender-report mappings, which is what the host is responsible for.
// If a stream has no estimatedPlayoutTimestamp (no sender report yet), the line shows
// the offset estimated from the jitter buffers instead: video jitter-buffer delay minus
// audio jitter-buffer delay over the last second (what each adds on the receiver; blind
// to sender-side and network differences), marked with "~".

import { setTimeout as sleep } from 'node:timers/promises';
import {
  startXvfb, startPattern, launchBrowser, openViewer, startPulse, playTone,
  startShareWithEnv, useTreeAssets, waitForAudioTrack, inboundRtp,
} from '../e2e/lib.mjs';
import { cliArgs, runBench } from './lib.mjs';

const NTP_UNIX_OFFSET_MS = 2208988800000; // 1900-01-01 to 1970-01-01

function parseArgs(argv) {
  const opts = { seconds: 60, freq: 440, playerLatencyMs: 20, fps: null, warmup: 3 };
  for (const [a, val] of cliArgs(argv)) {
    switch (a) {
      case '--seconds': opts.seconds = Number(val()); break;
      case '--freq': opts.freq = Number(val()); break;
      case '--player-latency-ms': { const v = val(); opts.playerLatencyMs = v === 'default' ? null : Number(v); break; }
      case '--fps': opts.fps = Number(val()); break;
      case '--warmup': opts.warmup = Number(val()); break;
      case '-h': case '--help':
        process.stdout.write('usage: node tests/bench/av_drift.mjs [--seconds N] [--freq HZ] ' +
          '[--player-latency-ms MS|default] [--fps N] [--warmup S]\n');
        process.exit(0);
        break;
      default: throw new Error(`unknown argument ${a} (try --help)`);
    }
  }
  if (!(opts.seconds >= 5)) throw new Error('--seconds must be at least 5');
  return opts;
}

const median = (xs) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const mean = (xs) => {
  const v = xs.filter(Number.isFinite);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
};
/** Least-squares slope of ys over xs (per unit of x). */
function slope(xs, ys) {
  const pts = xs.map((x, i) => [x, ys[i]]).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (pts.length < 3) return NaN;
  const mx = mean(pts.map((p) => p[0]));
  const my = mean(pts.map((p) => p[1]));
  let num = 0;
  let den = 0;
  for (const [x, y] of pts) { num += (x - mx) * (y - my); den += (x - mx) ** 2; }
  return den ? num / den : NaN;
}
const f = (v, digits = 1, unit = '') => (Number.isFinite(v) ? `${v.toFixed(digits)}${unit}` : 'n/a');
const signed = (v, digits = 1, unit = ' ms') => (Number.isFinite(v) ? `${v >= 0 ? '+' : ''}${v.toFixed(digits)}${unit}` : 'n/a');
const pad = (s, n) => String(s).padStart(n);

/** Per-interval figures of one stream between two inbound-rtp snapshots. */
function interval(prev, cur) {
  if (!prev || !cur) return {};
  const d = (k) => (cur[k] ?? NaN) - (prev[k] ?? NaN);
  const emitted = d('jitterBufferEmittedCount');
  return {
    packets: d('packetsReceived'),
    jbMs: emitted > 0 ? (1000 * d('jitterBufferDelay')) / emitted : NaN,
    jbTargetMs: emitted > 0 ? (1000 * d('jitterBufferTargetDelay')) / emitted : NaN,
    concealedPct: d('totalSamplesReceived') > 0 ? (100 * d('concealedSamples')) / d('totalSamplesReceived') : NaN,
    frames: d('framesDecoded'),
  };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  await runBench('av_drift', async (scope) => {
    const pulse = scope.add(await startPulse());
    scope.add(await playTone(pulse, opts.freq, { latencyMs: opts.playerLatencyMs }));
    const x = scope.add(await startXvfb({ width: 1280, height: 720 }));
    scope.add(await startPattern(x.display));
    const shareArgs = opts.fps ? ['--fps', String(opts.fps)] : [];
    const share = scope.add(await startShareWithEnv(pulse.env, { display: x.display, args: shareArgs }));
    const browser = scope.add(await launchBrowser());
    await useTreeAssets(browser, share);
    const page = scope.add(await openViewer(browser, share.viewerUrl()));
    await waitForAudioTrack(page, 10000);

    console.log(`# A/V drift benchmark: ${opts.seconds} s, ${opts.freq} Hz tone (player latency ` +
      `${opts.playerLatencyMs === null ? 'PulseAudio default' : `${opts.playerLatencyMs} ms`}), ` +
      `1280x720 moving test pattern, one Chromium viewer; warm-up ${opts.warmup} s`);
    console.log('# A-V: audio minus video estimatedPlayoutTimestamp (+: audio ahead); net: A-V minus ' +
      '(V jb - A jb); lat: now minus estimatedPlayoutTimestamp; jb, tgt: jitter-buffer delay and target ' +
      'per emitted sample/frame over the last second (ms); conc: audio samples concealed');
    console.log(`#${pad('t', 4)} ${pad('A-V', 9)} ${pad('net', 6)} ${pad('A lat', 8)} ${pad('V lat', 8)} | ` +
      `${pad('A pkts', 6)} ${pad('A jb', 7)} ${pad('A tgt', 7)} ${pad('conc', 6)} | ${pad('V fps', 5)} ${pad('V jb', 7)}`);

    const rows = [];
    let prev = await inboundRtp(page);
    const first = prev;
    const t0 = Date.now();
    const total = opts.warmup + opts.seconds;
    for (let i = 1; i <= total; i++) {
      await sleep(Math.max(0, t0 + i * 1000 - Date.now()));
      const cur = await inboundRtp(page);
      const ia = interval(prev?.audio, cur.audio);
      const iv = interval(prev?.video, cur.video);
      const estA = cur.audio?.estimatedPlayoutTimestamp;
      const estV = cur.video?.estimatedPlayoutTimestamp;
      const haveEst = Number.isFinite(estA) && Number.isFinite(estV);
      const now = cur.timestamp; // the stats' wall-clock time (Unix ms)
      const row = {
        t: i - opts.warmup,
        warm: i <= opts.warmup,
        offset: haveEst ? estA - estV : NaN,
        net: haveEst ? estA - estV - (iv.jbMs - ia.jbMs) : NaN,
        jbOffset: iv.jbMs - ia.jbMs, // video buffered longer -> audio played earlier relative
        estimated: haveEst,
        latA: Number.isFinite(estA) ? now - (estA - NTP_UNIX_OFFSET_MS) : NaN,
        latV: Number.isFinite(estV) ? now - (estV - NTP_UNIX_OFFSET_MS) : NaN,
        a: ia,
        v: iv,
      };
      rows.push(row);
      const off = haveEst ? signed(row.offset, 0) : `~${signed(row.jbOffset, 0)}`;
      console.log(`${row.warm ? 'w' : ' '}${pad(`${row.t}s`, 4)} ${pad(off, 9)} ${pad(signed(row.net, 1, ''), 6)} ${pad(f(row.latA, 0, ' ms'), 8)} ` +
        `${pad(f(row.latV, 0, ' ms'), 8)} | ${pad(f(ia.packets, 0), 6)} ${pad(f(ia.jbMs, 1), 7)} ` +
        `${pad(f(ia.jbTargetMs, 1), 7)} ${pad(f(ia.concealedPct, 1, '%'), 6)} | ${pad(f(iv.frames, 0), 5)} ${pad(f(iv.jbMs, 1), 7)}`);
      prev = cur;
    }
    const last = prev;
    const stats = await share.stats();

    // ---- summary
    const run = rows.filter((r) => !r.warm);
    const withEst = run.filter((r) => r.estimated);
    const useEst = withEst.length >= run.length * 0.8;
    const key = useEst ? 'offset' : 'jbOffset';
    const head = run.slice(0, 5).map((r) => r[key]);
    const tail = run.slice(-5).map((r) => r[key]);
    const initial = median(head);
    const final = median(tail);
    const spanS = run.length ? run[run.length - 1].t - run[0].t : NaN;
    const perMin = slope(run.map((r) => r.t), run.map((r) => r[key])) * 60;
    const all = run.map((r) => r[key]).filter(Number.isFinite);
    const cum = (s, k) => (last?.[s]?.[k] ?? NaN) - (first?.[s]?.[k] ?? NaN);
    const jbMean = (s) => (1000 * cum(s, 'jitterBufferDelay')) / cum(s, 'jitterBufferEmittedCount');
    const jbTarget = (s) => (1000 * cum(s, 'jitterBufferTargetDelay')) / cum(s, 'jitterBufferEmittedCount');

    console.log('');
    console.log(`summary over ${run.length} s (after ${opts.warmup} s warm-up):`);
    if (useEst) {
      console.log('  method: estimatedPlayoutTimestamp of both inbound-rtp streams (RTCP sender reports), ' +
        `present in ${withEst.length}/${run.length} samples`);
    } else {
      console.log(`  method: estimatedPlayoutTimestamp missing in ${run.length - withEst.length}/${run.length} samples, ` +
        'so the offset is video jitter-buffer delay minus audio jitter-buffer delay per second: ' +
        'the receiver-side part of the A/V offset only (no sender or network differences)');
    }
    console.log(`  A/V offset (audio minus video, + = audio ahead): initial ${signed(initial)} ` +
      `(median of the first 5 s), final ${signed(final)} (median of the last 5 s); ` +
      `min ${signed(Math.min(...all))}, max ${signed(Math.max(...all))}, median ${signed(median(all))}`);
    console.log(`  drift: ${signed(final - initial)} over ${f(spanS, 0)} s ` +
      `(least-squares slope ${signed(perMin, 2, ' ms/min')})`);
    // Chromium's lip sync steps the video delay during the first seconds, which moves the
    // offset on purpose; the second half shows what is left once it has settled.
    const mid = Math.floor(run.length / 2);
    const midOffset = median(run.slice(mid, mid + 5).map((r) => r[key]));
    const late = run.slice(mid).map((r) => r[key]);
    console.log(`  second half: ${signed(final - midOffset)} over ${f(run.length - mid, 0)} s ` +
      `(least-squares slope ${signed(slope(run.slice(mid).map((r) => r.t), late) * 60, 2, ' ms/min')}; ` +
      `range ${signed(Math.min(...late.filter(Number.isFinite)))} .. ${signed(Math.max(...late.filter(Number.isFinite)))})`);
    if (useEst) {
      const netAll = run.map((r) => r.net);
      const netInitial = median(run.slice(0, 5).map((r) => r.net));
      const netFinal = median(run.slice(-5).map((r) => r.net));
      const netPerMin = slope(run.map((r) => r.t), netAll) * 60;
      const jbShift = (s, k) => mean(run.slice(-5).map((r) => r[s][k])) - mean(run.slice(0, 5).map((r) => r[s][k]));
      console.log(`  of which the receiver's lip sync / jitter buffers: video jitter buffer ${signed(jbShift('v', 'jbMs'))}, ` +
        `audio ${signed(jbShift('a', 'jbMs'))} (first 5 s to last 5 s)`);
      console.log(`  drift net of jitter-buffer changes: ${signed(netFinal - netInitial)} ` +
        `(net offset ${signed(netInitial)} -> ${signed(netFinal)}; slope ${signed(netPerMin, 2, ' ms/min')}; ` +
        `range ${signed(Math.min(...netAll.filter(Number.isFinite)))} .. ${signed(Math.max(...netAll.filter(Number.isFinite)))})`);
    }
    console.log(`  capture-to-playout latency (sender-report mapped): audio median ${f(median(run.map((r) => r.latA)), 0, ' ms')}, ` +
      `video median ${f(median(run.map((r) => r.latV)), 0, ' ms')}`);
    console.log(`  audio jitter buffer: mean delay ${f(jbMean('audio'), 1, ' ms')} (target ${f(jbTarget('audio'), 1, ' ms')}); ` +
      `first 5 s ${f(mean(run.slice(0, 5).map((r) => r.a.jbMs)), 1, ' ms')}, last 5 s ${f(mean(run.slice(-5).map((r) => r.a.jbMs)), 1, ' ms')}`);
    console.log(`  video jitter buffer: mean delay ${f(jbMean('video'), 1, ' ms')} (target ${f(jbTarget('video'), 1, ' ms')}); ` +
      `first 5 s ${f(mean(run.slice(0, 5).map((r) => r.v.jbMs)), 1, ' ms')}, last 5 s ${f(mean(run.slice(-5).map((r) => r.v.jbMs)), 1, ' ms')}`);
    const conc = (100 * cum('audio', 'concealedSamples')) / cum('audio', 'totalSamplesReceived');
    console.log(`  audio: ${f(cum('audio', 'packetsReceived'), 0)} packets, ${f(cum('audio', 'packetsLost'), 0)} lost, ` +
      `${f(conc, 2, '%')} of samples concealed, codec ${last?.audio?.codec ?? 'n/a'}`);
    console.log(`  video: ${f(cum('video', 'framesDecoded'), 0)} frames decoded ` +
      `(${f(cum('video', 'framesDecoded') / ((last.timestamp - first.timestamp) / 1000), 1)} fps), ` +
      `${f(cum('video', 'framesDropped'), 0)} dropped, ${f(cum('video', 'freezeCount'), 0)} freezes, codec ${last?.video?.codec ?? 'n/a'}`);
    console.log(`  host: ${JSON.stringify(Object.fromEntries(Object.entries(stats)
      .filter(([k]) => /^audio_|^frames_encoded$|^frames_dropped$|^keyframes$/.test(k))))}`);
  });
}

await main();
