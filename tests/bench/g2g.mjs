// Glass-to-glass latency and CPU benchmark (prints figures, asserts nothing), the rig of
// issue 10: a clock code painted on Xvfb every 4 ms -> a sender -> headless Chromium,
// which reads the code on every presented frame. Porthole and a reference sender
// (GStreamer webrtcbin + x264, tests/bench/gst_whep.py) in the same run, one after the
// other, on the same display and painter, with a table of the two at the end.
//
// Run from the repository root, in a loopback-only network namespace:
//   unshare -n sh -c 'ip link set lo up; node tests/bench/g2g.mjs'
// Options: --size WxH (1920x1080), --fps N (30), --seconds S (15, measured per sender),
// --sender porthole|gst|both (both), --bitrate-kbps N (8000), --motion-percent P (30),
// --warmup S (3, after the first frame, not measured), --no-trace (no Chromium trace: no
// paint -> swapped), --reader luma|canvas (luma: how the code is read, below).
// Impaired links (issue 11; root, in the loopback-only namespace: they shape `lo`, which then
// carries everything, signalling included): --link RATE (a tc tbf bottleneck, e.g. 3mbit;
// `lo` is set to MTU 1500 first, or tbf drops everything), --loss N (nftables drops N % of
// UDP at random), --step (the measured window is cut in thirds: 8mbit, 2mbit, 8mbit; the
// figures are printed per third as well).
// G2G_TRACE_DIR=DIR keeps the Chromium trace of each sender's window there (Perfetto opens it).
// BENCH_LOGS=1 prints the senders' logs at the end (with RUST_LOG=debug: per-frame figures).
// Porthole is $PORTHOLE_BIN (default target/debug/porthole); the reference needs
// `scripts/install-deps.sh bench` (python3-gi and GStreamer from Debian).
//
// What is measured. The painter (`porthole test-pattern --clock`) writes the wall-clock
// time (CLOCK_REALTIME, ms mod 2^32) as 32 black/white cells plus their 32 complements
// every 4 ms, each paint finished with a round trip to the X server, and scrolls a busy
// picture over the bottom 30 % of the screen at the sender's fps. In Chromium, a
// requestVideoFrameCallback on every presented frame reads the cells at the frame's
// native size; a frame where any cell and its complement agree (torn, smeared by the
// encoder) is counted as undecodable and skipped. The cells are read from the decoded
// picture's luma (a WebCodecs VideoFrame of the element, copyTo of the code's square only;
// the frame's timestamp must be the callback's media time, or it is counted as replaced).
// Until 2026-12-03 they were read through a 2D canvas (`--reader canvas`, still there):
// drawImage of a video frame converts the whole frame to RGB in Chromium's software path,
// ~35 % of a core at 1080p30 that no real viewer spends, on the 2 cores the sender shares
// (machine 143-149 % -> 110 % with the same sender). For a decoded frame:
//   paint -> swapped  = when Chromium's compositor swapped the frame onto the (headless)
//                       screen, from a trace of the measured window (swapTimes): the
//                       figure the targets are read on
//   paint -> shown    = performance.timeOrigin + metadata.expectedDisplayTime - code:
//                       Chromium's estimate, kept for comparison (see below)
//   paint -> received = performance.timeOrigin + metadata.receiveTime - code
//                       (the frame's last packet; sender and network)
//   received -> shown = the rest (jitter buffer, decode, compositing), split into
//     decode          = metadata.processingDuration (last packet -> decoded), and
//     decoded -> shown / decoded -> swapped = what the compositor adds
//   paint -> decoded = paint -> received + decode: the sender's share, without the display
// Why not expectedDisplayTime: for a WebRTC frame rendered at once (no smoothing; Porthole
// asks for that with playout-delay 0), Chromium 156's WebMediaPlayerMSCompositor gives the
// frame the deadline_max of the last BeginFrame before it arrived (that frame's time plus
// two display intervals) as its expected display time, whenever the frame is really drawn.
// So decoded -> shown came out ~4 ms in some browser launches and ~25 ms in others, for any
// sender, while the trace showed every frame swapped a median 2-2.5 ms after it reached the
// compositor in both kinds of launch (2026-12-03, docs/benchmarks.md). A frame that
// Chromium holds back (a stream without playout-delay 0 goes through its smoothing
// buffer) is swapped when it is drawn, so the wait counts for that sender too.
// Run with --no-trace to leave the trace out (paint -> shown is then the main figure).
// Both clocks are this machine's wall clock. The code is the time its paint was sent, so
// the figure includes waiting for the sender's next capture (up to a frame period) and
// the up to 4 ms the code is older than the screen; headless Chromium has no monitor, so a
// display's own delay is not in it. fps is metadata.presentedFrames over the measured
// window. CPU is utime+stime from /proc/PID/stat over the same window, in % of one core,
// for the sender (all its threads), the painter and Xvfb; "machine" is every process on
// every core (from /proc/stat), to show how busy the machine was.

import http from 'node:http';
import path from 'node:path';
import { readFileSync, readdirSync, existsSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  REPO, Scope, startXvfb, startClockPattern, startShare, startProcess, launchBrowser, openPage,
  openViewer, useTreeAssets, startWaylandShare,
} from '../e2e/lib.mjs';
import { cliArgs, runBench, quantile } from './lib.mjs';

const USAGE = 'usage: node tests/bench/g2g.mjs [--size WxH] [--fps N] [--seconds S] ' +
  '[--sender porthole|gst|wayland|both|all] [--bitrate-kbps N] [--motion-percent P] [--warmup S] ' +
  '[--link RATE] [--loss N] [--step] [--no-trace] [--reader luma|canvas]\n';

function parseArgs(argv) {
  const opts = {
    size: '1920x1080', fps: 30, seconds: 15, sender: 'both', bitrate: 8000, motion: 30, warmup: 3,
    link: null, loss: 0, step: false, trace: true, reader: 'luma',
  };
  for (const [a, val] of cliArgs(argv)) {
    const num = (lo, hi) => {
      const v = Number(val());
      if (!(v >= lo && v <= hi)) throw new Error(`${a} wants a number in ${lo}..${hi}`);
      return v;
    };
    switch (a) {
      case '--size': opts.size = val(); break;
      case '--fps': opts.fps = Math.round(num(1, 240)); break;
      case '--seconds': opts.seconds = num(1, 3600); break;
      case '--sender': opts.sender = val(); break;
      case '--bitrate-kbps': opts.bitrate = Math.round(num(100, 100000)); break;
      case '--motion-percent': opts.motion = Math.round(num(0, 100)); break;
      case '--warmup': opts.warmup = num(0, 600); break;
      case '--link': opts.link = val(); if (!/^\d+(\.\d+)?[km]?bit$/.test(opts.link)) throw new Error('--link wants a tc rate, e.g. 3mbit'); break;
      case '--loss': opts.loss = Math.round(num(0, 99)); break;
      case '--step': opts.step = true; break;
      case '--no-trace': opts.trace = false; break;
      case '--reader': opts.reader = val(); if (!['luma', 'canvas'].includes(opts.reader)) throw new Error('--reader wants luma or canvas'); break;
      case '-h': case '--help': process.stdout.write(USAGE); process.exit(0); break;
      default: throw new Error(`unknown argument ${a}\n${USAGE}`);
    }
  }
  const m = /^(\d+)x(\d+)$/.exec(opts.size);
  if (!m || Number(m[1]) < 320 || Number(m[2]) < 240) throw new Error('--size wants WxH of at least 320x240, e.g. 1920x1080');
  opts.width = Number(m[1]);
  opts.height = Number(m[2]);
  const senders = {
    porthole: ['porthole'], gst: ['gst'], wayland: ['porthole', 'porthole-wayland'], both: ['porthole', 'gst'],
    all: ['porthole', 'gst', 'porthole-wayland'],
  }[opts.sender];
  if (!senders) throw new Error('--sender wants porthole, gst, wayland, both or all');
  opts.senders = senders;
  return opts;
}

// ---------------------------------------------------------------------------------------
// Figures

const fmt = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

const CLK_TCK = (() => {
  try { return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100; } catch { return 100; }
})();

/** {name, seconds} from a /proc stat file (utime+stime); throws if it is gone. */
function readStat(file) {
  const stat = readFileSync(file, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After "pid (comm) ": state is field 3, so utime (14) and stime (15) are at 11 and 12.
  return {
    name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
    seconds: (Number(fields[11]) + Number(fields[12])) / CLK_TCK,
  };
}

/** utime+stime of a process (all its threads) in seconds; NaN if it is gone. */
function processCpuSeconds(pid) {
  try { return readStat(`/proc/${pid}/stat`).seconds; } catch { return NaN; }
}

/** utime+stime of each of a process's threads: {tid: {name, seconds}}. */
function threadCpuSeconds(pid) {
  const out = {};
  let tids = [];
  try { tids = readdirSync(`/proc/${pid}/task`); } catch { return out; }
  for (const tid of tids) {
    try { out[tid] = readStat(`/proc/${pid}/task/${tid}/stat`); } catch { /* the thread ended */ }
  }
  return out;
}

/** {busy, total} seconds of every CPU from /proc/stat. */
function machineCpuSeconds() {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = cpu[3] + (cpu[4] || 0);
  const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK };
}

/** Starts a CPU window over `pids` ({name: pid}); end() gives {name: % of one core}. */
function cpuWindow(pids) {
  const t0 = process.hrtime.bigint();
  const start = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, processCpuSeconds(pid)]));
  const m0 = machineCpuSeconds();
  const threads0 = threadCpuSeconds(pids.sender);
  return {
    end() {
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const out = {};
      for (const [k, pid] of Object.entries(pids)) out[k] = ((processCpuSeconds(pid) - start[k]) / wall) * 100;
      // The sender's threads, summed by name (each from its own start: openh264's workers
      // are replaced when the encoder is; a thread that ended in the window is not counted).
      const byName = {};
      for (const [tid, { name, seconds }] of Object.entries(threadCpuSeconds(pids.sender))) {
        byName[name] = (byName[name] ?? 0) + seconds - (threads0[tid]?.seconds ?? 0);
      }
      out.senderThreads = Object.entries(byName)
        .map(([name, secs]) => [name, (secs / wall) * 100])
        .filter(([, pct]) => pct >= 0.5)
        .sort((a, b) => b[1] - a[1]);
      const m1 = machineCpuSeconds();
      out.machine = ((m1.busy - m0.busy) / wall) * 100;
      out.cores = (m1.total - m0.total) / wall;
      return out;
    },
  };
}

// ---------------------------------------------------------------------------------------
// The reader: runs in the page (the same code for both senders)

/** Installs the reader in `page`: every presented frame is read once recording starts. */
async function installReader(page, { screen, clock, reader }) {
  await page.evaluate(({ screen, clock, reader }) => {
    const video = document.getElementById('video') || window.porthole?.video || document.querySelector('video');
    if (!video?.requestVideoFrameCallback) throw new Error('no video element with requestVideoFrameCallback');
    const BITS = 32;
    const SIDE = 8;
    const MAX_SAMPLES = 100000;
    const ctx = new OffscreenCanvas(1, 1).getContext('2d', { willReadFrequently: true });
    const st = {
      recording: false, callbacks: 0, decoded: 0, undecodable: 0, implausible: 0, backwards: 0,
      reader: reader === 'canvas' ? 'canvas' : null, stale: 0, readErrors: 0, lastReadError: null, pending: 0,
      lastCode: null, first: null, last: null, sizes: {}, shown: [], received: [], captured: [], decode: [], times: [],
      media: [], presentedAt: [], painted: [],
    };
    window.__g2g = st;

    /** Where the code's square is in a frame of fw x fh, and its cells' size. */
    const square = (fw, fh) => {
      const fx = fw / screen.width;
      const fy = fh / screen.height;
      return {
        rx: Math.floor(clock.x * fx), ry: Math.floor(clock.y * fy),
        rw: Math.ceil(clock.cell * SIDE * fx), rh: Math.ceil(clock.cell * SIDE * fy),
        cw: clock.cell * fx, ch: clock.cell * fy,
      };
    };

    /** The 64 cells' brightness: the mean of `px(x, y)` (0..255) over each centre. */
    const cellsOf = ({ cw, ch }, px) => {
      const half = Math.max(1, Math.floor(Math.min(cw, ch) / 6));
      const out = new Array(BITS * 2);
      for (let k = 0; k < BITS * 2; k++) {
        const cx = Math.floor(((k % SIDE) + 0.5) * cw);
        const cy = Math.floor((Math.floor(k / SIDE) + 0.5) * ch);
        let sum = 0;
        let n = 0;
        for (let y = cy - half; y <= cy + half; y++) {
          for (let x = cx - half; x <= cx + half; x++) {
            sum += px(x, y);
            n++;
          }
        }
        out[k] = sum / n;
      }
      return out;
    };

    /** The cells through a canvas: the frame is converted to RGB (the whole frame, in
     * Chromium's software path) and the square read back. */
    const readCellsCanvas = (fw, fh) => {
      const sq = square(fw, fh);
      const { rx, ry, rw, rh } = sq;
      if (ctx.canvas.width !== rw || ctx.canvas.height !== rh) {
        ctx.canvas.width = rw;
        ctx.canvas.height = rh;
      }
      ctx.drawImage(video, rx, ry, rw, rh, 0, 0, rw, rh);
      const d = ctx.getImageData(0, 0, rw, rh).data;
      return cellsOf(sq, (x, y) => {
        const i = (y * rw + x) * 4;
        return (d[i] + d[i + 1] + d[i + 2]) / 3;
      });
    };

    /** The cells from the decoded picture itself: only the square's luma is copied out
     * (WebCodecs VideoFrame.copyTo with a rect), nothing converted. A planar YUV frame
     * only; null otherwise (the canvas is used then). `mediaUs`: the callback's media time. */
    const PLANAR = new Set(['I420', 'I420A', 'NV12', 'I422', 'I444']);
    const readCellsPlanar = async (fw, fh, mediaUs) => {
      let frame;
      try {
        frame = new VideoFrame(video);
      } catch {
        return null;
      }
      try {
        if (!PLANAR.has(frame.format)) return null;
        // The element's frame is the callback's (the same media time) unless a newer one
        // has replaced it already.
        if (frame.timestamp !== mediaUs || frame.codedWidth !== fw || frame.codedHeight !== fh) {
          return 'stale';
        }
        const sq = square(fw, fh);
        // 4:2:0 wants even edges: widen the rect to them and read at an offset.
        const x0 = sq.rx & ~1;
        const y0 = sq.ry & ~1;
        const w = Math.min(fw - x0, (sq.rx + sq.rw - x0 + 1) & ~1);
        const h = Math.min(fh - y0, (sq.ry + sq.rh - y0 + 1) & ~1);
        const buf = new Uint8Array(frame.allocationSize({ rect: { x: x0, y: y0, width: w, height: h } }));
        const layout = await frame.copyTo(buf, { rect: { x: x0, y: y0, width: w, height: h } });
        const { offset, stride } = layout[0];
        const dx = sq.rx - x0;
        const dy = sq.ry - y0;
        // Limited-range luma (16..235) stretched to 0..255, to compare like the RGB path.
        return cellsOf(sq, (x, y) => (buf[offset + (y + dy) * stride + x + dx] - 16) * 255 / 219);
      } finally {
        frame.close();
      }
    };

    /** The code, or null when any cell is unclear or agrees with its complement. */
    const decode = (cells) => {
      let code = 0;
      for (let k = 0; k < BITS; k++) {
        const a = cells[k];
        const b = cells[k + BITS];
        if (Math.abs(a - 128) < 48 || Math.abs(b - 128) < 48 || (a > 128) === (b > 128)) return null;
        if (a > 128) code += 2 ** k;
      }
      return code;
    };

    const onFrame = (now, meta) => {
      video.requestVideoFrameCallback(onFrame);
      if (!st.recording) return;
      st.callbacks++;
      st.first ??= { presented: meta.presentedFrames, at: meta.expectedDisplayTime };
      st.last = { presented: meta.presentedFrames, at: meta.expectedDisplayTime };
      const size = `${meta.width}x${meta.height}`;
      st.sizes[size] = (st.sizes[size] || 0) + 1;
      if (st.reader === 'canvas') {
        record(meta, readCellsCanvas(meta.width, meta.height));
        return;
      }
      st.pending++;
      readCellsPlanar(meta.width, meta.height, Math.round(meta.mediaTime * 1e6)).then((cells) => {
        st.pending--;
        if (cells === null) {
          // Not a frame in memory: the canvas from now on (this frame is lost).
          st.reader = 'canvas';
          st.undecodable++;
        } else if (cells === 'stale') {
          st.stale++;
        } else {
          st.reader = 'luma';
          record(meta, cells);
        }
      }, (e) => {
        st.pending--;
        st.readErrors++;
        st.lastReadError = String(e);
      });
    };

    /** Puts down what one presented frame showed. */
    const record = (meta, cells) => {
      const code = decode(cells);
      if (code === null) {
        st.undecodable++;
        return;
      }
      // The code is the paint's wall-clock ms mod 2^32: put it back next to the present.
      const shownAt = performance.timeOrigin + meta.expectedDisplayTime;
      const wrap = 2 ** 32;
      let painted = shownAt - (shownAt % wrap) + code;
      if (painted > shownAt + wrap / 2) painted -= wrap;
      if (painted < shownAt - wrap / 2) painted += wrap;
      const shown = shownAt - painted;
      // Only a misread (or a broken clock) puts a paint more than 10 s from its showing.
      if (shown < -1000 || shown > 10000) {
        st.implausible++;
        return;
      }
      // Frames are shown in order, so their codes never go back: one that does was misread.
      if (st.lastCode !== null && painted < st.lastCode) st.backwards++;
      st.lastCode = painted;
      st.decoded++;
      if (st.shown.length >= MAX_SAMPLES) return;
      st.shown.push(shown);
      st.times.push(shownAt);
      st.received.push(meta.receiveTime !== undefined ? performance.timeOrigin + meta.receiveTime - painted : null);
      st.captured.push(meta.captureTime !== undefined ? performance.timeOrigin + meta.captureTime - painted : null);
      // WebRTC frames carry processingDuration: last packet received -> decoded (s).
      st.decode.push(meta.processingDuration !== undefined ? meta.processingDuration * 1000 : null);
      // What ties this frame to Chromium's trace (see swapTimes): its media time (µs) and
      // when the compositor took it (page clock, ms).
      st.media.push(Math.round(meta.mediaTime * 1e6));
      st.presentedAt.push(meta.presentationTime);
      st.painted.push(painted);
    };
    video.requestVideoFrameCallback(onFrame);
  }, { screen, clock, reader });
}

async function startRecording(page) {
  await page.evaluate(() => { window.__g2g.recording = true; });
}

/** Stops recording and returns what the reader saw (plus the page's clock skew). */
async function stopRecording(page) {
  return page.evaluate(async () => {
    const st = window.__g2g;
    st.recording = false;
    // The frames still being read (copyTo is asynchronous) are counted too.
    for (let i = 0; i < 200 && st.pending > 0; i++) await new Promise((r) => setTimeout(r, 5));
    // Date.now() against performance.timeOrigin + now(): both should be the wall clock.
    const skews = [];
    for (let i = 0; i < 20; i++) skews.push(Date.now() - (performance.timeOrigin + performance.now()));
    skews.sort((a, b) => a - b);
    const { shown, received, captured, decode, times, ...rest } = st;
    return { ...rest, shown, received, captured, decode, times, skewMs: skews[10] + 0.5, timeOrigin: performance.timeOrigin };
  });
}

// ---------------------------------------------------------------------------------------
// The senders

/** Porthole: `porthole share`, watched through its own viewer page. */
async function porthole(scope, { x, browser, opts }) {
  const share = scope.add(await startShare({
    display: x.display,
    args: ['--fps', String(opts.fps), '--bitrate-kbps', String(opts.bitrate), '--audio', 'none', '--no-announce'],
  }));
  await useTreeAssets(browser, share);
  const page = scope.add(await openViewer(browser, share.viewerUrl(), { timeoutMs: 30000 }));
  return { name: 'porthole', pid: share.pid, page, alive: () => !share.exitInfo };
}

/**
 * Porthole on a Wayland desktop: sway (headless, pixman) with a rootful Xwayland filling
 * its output, the same clock painter drawing on that Xwayland, `porthole share --backend
 * wayland` capturing through the ScreenCast portal and PipeWire. The clock's path is longer
 * than on Xvfb by what any Wayland desktop adds: Xwayland commits the painted picture to
 * sway, sway composites it, xdg-desktop-portal-wlr copies it (screencopy) into PipeWire.
 * Their CPU is printed apart from the sender's.
 */
async function portholeWayland(scope, { browser, opts }) {
  const desk = await startWaylandShare(scope, {
    width: opts.width, height: opts.height, xwayland: true,
    shareArgs: ['--fps', String(opts.fps), '--bitrate-kbps', String(opts.bitrate)],
  });
  const pattern = scope.add(await startClockPattern(desk.display, { motionPercent: opts.motion, motionFps: opts.fps }));
  await useTreeAssets(browser, desk);
  const page = scope.add(await openViewer(browser, desk.url, { timeoutMs: 30000 }));
  const pgrep = (name) => {
    try {
      return Number(execFileSync('pgrep', ['-n', '-u', 'porthole-wl', '-f', name]).toString().trim()) || null;
    } catch { return null; }
  };
  return {
    name: 'porthole (Wayland)', pid: desk.pids.share, page, alive: () => !desk.exitInfo, pattern,
    display: { pid: desk.pids.xwayland, name: 'Xwayland' },
    extraCpu: {
      sway: desk.pids.sway, 'xdg-desktop-portal-wlr': pgrep('/xdg-desktop-portal-wlr'), pipewire: pgrep('^pipewire$'),
    },
  };
}

/** The page the reference sender is watched through: a bare WHEP player. */
const REFERENCE_PAGE = `<!doctype html>
<meta charset="utf-8"><title>reference sender</title>
<style>html,body{margin:0;height:100%;background:#000}video{width:100%;height:100%;object-fit:contain}</style>
<video id="video" autoplay muted playsinline></video>
<script>
window.reference = { state: 'connecting', error: null };
(async () => {
  const pc = new RTCPeerConnection();
  window.reference.pc = pc;
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.ontrack = (e) => { document.getElementById('video').srcObject = e.streams[0] || new MediaStream([e.track]); };
  await pc.setLocalDescription();
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve(); });
    setTimeout(resolve, 5000);
  });
  const res = await fetch('/whep', { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
  const text = await res.text();
  if (res.status !== 201) throw new Error('POST /whep: ' + res.status + ' ' + text);
  await pc.setRemoteDescription({ type: 'answer', sdp: text });
  window.reference.state = 'connected';
})().catch((e) => { window.reference.state = 'failed'; window.reference.error = String(e); console.error(e); });
</script>`;

/** Serves REFERENCE_PAGE on 127.0.0.1 and passes POST /whep on to `whepUrl`. */
async function servePage(whepUrl) {
  const server = http.createServer(async (req, res) => {
    try {
      if (req.method === 'GET' && req.url === '/') {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
        res.end(REFERENCE_PAGE);
      } else if (req.method === 'POST' && req.url === '/whep') {
        const chunks = [];
        let size = 0;
        for await (const c of req) {
          size += c.length;
          if (size > 65536) throw new Error('offer too big');
          chunks.push(c);
        }
        const up = await fetch(whepUrl, {
          method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: Buffer.concat(chunks),
          signal: AbortSignal.timeout(20000),
        });
        res.writeHead(up.status, { 'Content-Type': up.headers.get('content-type') || 'text/plain' });
        res.end(await up.text());
      } else {
        res.writeHead(404).end();
      }
    } catch (err) {
      res.writeHead(502, { 'Content-Type': 'text/plain' }).end(`${err.message}\n`);
    }
  });
  await new Promise((resolve, reject) => server.listen(0, '127.0.0.1', resolve).once('error', reject));
  const url = `http://127.0.0.1:${server.address().port}/`;
  return { url, label: 'reference page server', stop: () => new Promise((r) => server.close(() => r())) };
}

/** The reference: GStreamer webrtcbin + x264 (tests/bench/gst_whep.py). */
async function gst(scope, { x, browser, opts }) {
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const proc = scope.add(startProcess('gst_whep', python, [
    path.join(REPO, 'tests', 'bench', 'gst_whep.py'), '--display', x.display, '--fps', String(opts.fps),
    '--bitrate-kbps', String(opts.bitrate), '--listen', '127.0.0.1:0',
  ]));
  const m = await proc.waitLine(/^whep: (http:\/\/127\.0\.0\.1:\d+\/whep)$/, 20000, '"whep: URL"');
  const pageServer = scope.add(await servePage(m[1]));
  const page = scope.add(await openPage(browser, pageServer.url));
  try {
    await page.waitForFunction(() => {
      const v = document.getElementById('video');
      return window.reference.state === 'failed' || (v.videoWidth > 0 && v.currentTime > 0);
    }, null, { timeout: 30000, polling: 100 });
  } catch (err) {
    throw new Error(`the reference page shows no video: ${err.message.split('\n')[0]}`);
  }
  const state = await page.evaluate(() => ({ state: window.reference.state, error: window.reference.error }));
  if (state.state === 'failed') throw new Error(`the reference page failed: ${state.error}`);
  return { name: 'gst x264', pid: proc.pid, page, alive: () => !proc.exitInfo };
}

// ---------------------------------------------------------------------------------------

// ---- impaired links -----------------------------------------------------------------

const run = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** A tbf bottleneck of `rate` on lo, or none (`null`). */
function setLink(rate) {
  if (rate) {
    run('ip', ['link', 'set', 'lo', 'mtu', '1500']);
    run('tc', ['qdisc', 'replace', 'dev', 'lo', 'root', 'tbf', 'rate', rate, 'burst', '16kb', 'latency', '150ms']);
  } else {
    try { run('tc', ['qdisc', 'del', 'dev', 'lo', 'root']); } catch { /* none */ }
  }
}

/** Random UDP loss of `percent` % with nftables; returns the undo. */
function setLoss(percent) {
  const table = `g2g_loss_${process.pid}`;
  run('nft', ['add', 'table', 'inet', table]);
  run('nft', ['add', 'chain', 'inet', table, 'in', '{ type filter hook input priority 0 ; }']);
  run('nft', ['add', 'rule', 'inet', table, 'in', 'meta', 'l4proto', 'udp', 'numgen', 'random', 'mod', '100', '<', String(percent), 'drop']);
  return () => { try { run('nft', ['delete', 'table', 'inet', table]); } catch { /* gone */ } };
}

function conditionName(opts) {
  const parts = [];
  if (opts.step) parts.push('step 8 -> 2 -> 8 Mbit/s');
  else if (opts.link) parts.push(`link ${opts.link}`);
  if (opts.loss) parts.push(`${opts.loss}% UDP loss`);
  return parts.length ? parts.join(', ') : 'unimpaired loopback';
}

// ---------------------------------------------------------------------------------------
// When a frame reached the screen, from Chromium's own trace

/** The trace categories swapTimes reads (few, so that tracing costs little). */
const TRACE_CATEGORIES = ['media', 'graphics.pipeline'];

/** The first element of the sorted `xs` at or after `t`, or undefined. */
function firstAtOrAfter(xs, t) {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < t) lo = mid + 1; else hi = mid;
  }
  return xs[lo];
}

/**
 * Paint -> swapped for each frame the reader decoded, from a Chromium trace of the
 * measured window (`TRACE_CATEGORIES`): the frame's WebMediaPlayerMSCompositor::SetCurrentFrame
 * (matched by media time), the next compositor frame viz receives (the video's surface),
 * the next draw that starts after it, and that draw's swap (STEP_FINISH_BUFFER_SWAP: the
 * software output has the picture; headless Chromium has no monitor to wait for). The
 * trace's clock (TimeTicks) is put on the page's by the frames' presentationTime, which
 * is when SetCurrentFrame ran. Returns {swapped: [ms or null per decoded frame], matched,
 * offsetSpread} or null when the trace has none of it.
 */
function swapTimes(buf, seen) {
  const events = JSON.parse(buf.toString('utf8')).traceEvents ?? [];
  const set = new Map();
  const recv = [];
  const draws = [];
  const swaps = [];
  for (const e of events) {
    if (e.name === 'WebMediaPlayerMSCompositor::SetCurrentFrame' && e.args?.Timestamp !== undefined) {
      set.set(Number(e.args.Timestamp), e.ts);
    } else if (e.name === 'Graphics.Pipeline') {
      const step = e.args?.chrome_graphics_pipeline?.step;
      if (step === 'STEP_RECEIVE_COMPOSITOR_FRAME') recv.push(e.ts);
      else if (step === 'STEP_DRAW_AND_SWAP') draws.push(e.ts);
      else if (step === 'STEP_FINISH_BUFFER_SWAP') swaps.push(e.ts);
    }
  }
  for (const xs of [recv, draws, swaps]) xs.sort((a, b) => a - b);
  const setAt = (m) => set.get(m) ?? set.get(m - 1) ?? set.get(m + 1);
  const offsets = [];
  seen.media.forEach((m, i) => {
    const ts = setAt(m);
    if (ts !== undefined && seen.presentedAt[i] !== undefined) offsets.push(ts / 1000 - seen.presentedAt[i]);
  });
  if (!offsets.length || !swaps.length) return null;
  const offset = quantile(offsets, 0.5);
  const swapped = seen.media.map((m, i) => {
    const ts = setAt(m);
    if (ts === undefined) return null;
    const r = firstAtOrAfter(recv, ts);
    const d = r === undefined ? undefined : firstAtOrAfter(draws, r);
    const sw = d === undefined ? undefined : firstAtOrAfter(swaps, d);
    return sw === undefined ? null : seen.timeOrigin + sw / 1000 - offset - seen.painted[i];
  });
  return {
    swapped,
    matched: swapped.filter((x) => x !== null).length,
    offsetSpread: quantile(offsets.map((o) => Math.abs(o - offset)), 0.95),
  };
}

async function measure(sender, { x, pattern: xPattern, opts }) {
  const pattern = sender.pattern ?? xPattern;
  await installReader(sender.page, { screen: { width: opts.width, height: opts.height }, clock: pattern.clock, reader: opts.reader });
  await sleep(opts.warmup * 1000);
  const painter0 = await pattern.stats();
  const extra = Object.fromEntries(Object.entries(sender.extraCpu ?? {}).filter(([, pid]) => pid));
  const cpu = cpuWindow({ sender: sender.pid, painter: pattern.pid, xvfb: sender.display?.pid ?? x.pid, ...extra });
  const tracer = opts.trace ? sender.page.context().browser() : null;
  if (tracer) await tracer.startTracing(sender.page, { categories: TRACE_CATEGORIES });
  await startRecording(sender.page);
  if (opts.step) {
    const third = opts.seconds * 1000 / 3;
    await sleep(third);
    setLink('2mbit');
    sender.stepAt = Date.now();
    await sleep(third);
    setLink('8mbit');
    sender.stepBackAt = Date.now();
    await sleep(third);
  } else {
    await sleep(opts.seconds * 1000);
  }
  const seen = await stopRecording(sender.page);
  let swap = null;
  if (tracer) {
    try {
      const buf = await tracer.stopTracing();
      if (process.env.G2G_TRACE_DIR) writeFileSync(path.join(process.env.G2G_TRACE_DIR, `${sender.name.replace(/\W+/g, '_')}.json`), buf);
      swap = swapTimes(buf, seen);
    } catch (err) {
      console.error(`g2g: ${sender.name}: no swap times from the trace: ${err.message}`);
    }
  }
  const load = cpu.end();
  const painter1 = await pattern.stats();
  if (!sender.alive()) throw new Error(`${sender.name} exited during the measurement`);
  const pairs = seen.shown.map((s, i) => [s, seen.received[i]]).filter(([, r]) => r !== null);
  const span = seen.first && seen.last ? (seen.last.at - seen.first.at) / 1000 : NaN;
  const swapped = swap ? swap.swapped : seen.shown.map(() => null);
  const useSwap = swap !== null && swap.matched >= 0.95 * seen.shown.length;
  return {
    name: sender.name,
    swap,
    // Paint -> swapped where the trace has the frame (see swapTimes).
    swapped: swapped.filter((w) => w !== null),
    // Decoded -> swapped: what Chromium's compositor really adds after the decoder.
    afterDecodeSwap: swapped.map((w, i) => [w, seen.received[i], seen.decode[i]])
      .filter(([w, r, d]) => w !== null && r !== null && d !== null).map(([w, r, d]) => w - r - d),
    // The figure the targets are read on (one per decoded frame, null where missing):
    // paint -> swapped when the trace has at least 95 % of the frames, otherwise
    // paint -> shown (Chromium's estimate).
    mainAll: useSwap ? swapped : seen.shown,
    main: useSwap ? swapped.filter((w) => w !== null) : seen.shown,
    mainName: useSwap ? 'paint -> swapped' : 'paint -> shown',
    stepAt: sender.stepAt,
    stepBackAt: sender.stepBackAt,
    seen,
    shown: seen.shown,
    received: pairs.map(([, r]) => r),
    afterReceive: pairs.map(([s, r]) => s - r),
    captured: seen.captured.filter((c) => c !== null),
    decode: seen.decode.filter((d) => d !== null),
    // Paint -> decoded: the sender, the network and Chromium's decoder, without the display.
    decoded: seen.shown.map((s, i) => [seen.received[i], seen.decode[i]])
      .filter(([r, d]) => r !== null && d !== null).map(([r, d]) => r + d),
    // Decoded -> shown: what the compositor adds after the decoder (waiting for a display tick).
    afterDecode: seen.shown.map((s, i) => [s, seen.received[i], seen.decode[i]])
      .filter(([, r, d]) => r !== null && d !== null).map(([s, r, d]) => s - r - d),
    fps: span > 0 ? (seen.last.presented - seen.first.presented) / span : NaN,
    load,
    displayName: sender.display?.name ?? 'Xvfb',
    extraCpu: Object.keys(extra),
    painter: {
      paints: painter1.paints - painter0.paints,
      skipped: painter1.skipped - painter0.skipped,
      motion: painter1.motion - painter0.motion,
    },
  };
}

function line(label, xs) {
  return `  ${label.padEnd(18)} p50 ${fmt(quantile(xs, 0.5)).padStart(6)} ms   p95 ${fmt(quantile(xs, 0.95)).padStart(6)} ms` +
    `   max ${fmt(xs.length ? Math.max(...xs) : NaN).padStart(6)} ms   (${xs.length} frames)`;
}

function report(r, opts) {
  const s = r.seen;
  const out = [`${r.name}:`];
  out.push(`  frames read ${s.callbacks}: decoded ${s.decoded}, undecodable ${s.undecodable}, implausible ${s.implausible}, ` +
    `codes going back ${s.backwards}; frame sizes ${Object.entries(s.sizes).map(([k, v]) => `${k}×${v}`).join(' ') || 'none'}`);
  out.push(`  read from: ${s.reader === 'luma' ? 'the decoded luma (VideoFrame.copyTo)' : 'a canvas (drawImage)'}` +
    `; frames already replaced when read ${s.stale}; read errors ${s.readErrors}; unfinished ${s.pending}` +
    (s.lastReadError ? ` (last: ${s.lastReadError})` : ''));
  const gap = longestGap(s.times);
  out.push(`  presented fps ${fmt(r.fps)}; longest gap between decoded frames ${fmt(gap.ms)} ms` +
    (gap.endedAt ? `, ended ${new Date(gap.endedAt).toISOString()}` : ''));
  if (r.stepAt) {
    const within = (a, b) => r.mainAll.filter((w, i) => w !== null && s.times[i] >= a && s.times[i] < b);
    out.push(line('step: first 3 s at 2 Mbit/s', within(r.stepAt, r.stepAt + 3000)));
    out.push(line('step: after 3 s at 2 Mbit/s', within(r.stepAt + 3000, r.stepBackAt)));
    out.push(line('step: back at 8 Mbit/s', within(r.stepBackAt, Infinity)));
  }
  if (r.swap) {
    out.push(line('paint -> swapped', r.swapped) +
      ` from Chromium's trace (${r.swap.matched} of ${s.shown.length} frames; clocks matched within ${fmt(r.swap.offsetSpread, 2)} ms)`);
  } else if (opts.trace) {
    out.push('  paint -> swapped   n/a (the trace had none of the frames)');
  }
  out.push(line('paint -> shown', r.shown) + ' (Chromium\'s estimate: rVFC expectedDisplayTime)');
  if (opts.link || opts.loss || opts.step) {
    // Where the tail is: the worst of the main figure in each second of the window.
    const t0 = s.times[0];
    const worst = [];
    s.times.forEach((t, i) => {
      const k = Math.floor((t - t0) / 1000);
      if (r.mainAll[i] !== null) worst[k] = Math.max(worst[k] ?? 0, r.mainAll[i]);
    });
    out.push(`  ${r.mainName}, worst each second from ${new Date(t0).toISOString()}: ` +
      `${Array.from(worst, (w) => (w === undefined ? '-' : Math.round(w))).join(' ')} ms`);
  }
  out.push(r.received.length ? line('paint -> received', r.received) : '  paint -> received  n/a (no receiveTime in the frame metadata)');
  if (r.afterReceive.length) out.push(line('received -> shown', r.afterReceive));
  if (r.decode.length) out.push(line('  of which decode', r.decode));
  if (r.decoded.length) out.push(line('paint -> decoded', r.decoded));
  if (r.afterDecodeSwap.length) out.push(line('  decoded -> swapped', r.afterDecodeSwap));
  if (r.afterDecode.length) out.push(line('  decoded -> shown', r.afterDecode));
  if (r.captured.length) out.push(line('paint -> captureTime', r.captured));
  const extra = r.extraCpu.map((k) => `, ${k} ${fmt(r.load[k])}`).join('');
  out.push(`  CPU, % of one core: sender ${fmt(r.load.sender)}, painter ${fmt(r.load.painter)}, ` +
    `${r.displayName} ${fmt(r.load.xvfb)}${extra}; machine ${fmt(r.load.machine)} of ${fmt(r.load.cores * 100, 0)} (all processes)`);
  if (r.load.senderThreads?.length) {
    out.push(`  sender's threads, % of one core: ${r.load.senderThreads.map(([n, p]) => `${n} ${fmt(p)}`).join(', ')}`);
  }
  const expected = opts.seconds * 1000 / 4;
  out.push(`  painter: ${r.painter.paints} codes painted (${fmt(expected, 0)} due), ${r.painter.skipped} ticks skipped, ` +
    `${r.painter.motion} scroll steps; page clock skew ${fmt(s.skewMs)} ms`);
  return out.join('\n');
}

function longestGap(times) {
  let gap = { ms: times.length > 1 ? 0 : NaN, endedAt: null };
  for (let i = 1; i < times.length; i++) {
    if (times[i] - times[i - 1] > gap.ms) gap = { ms: times[i] - times[i - 1], endedAt: times[i] };
  }
  return gap;
}

function table(results) {
  const rows = results.map((r) => ({
    name: r.name, what: r.mainName, p50: quantile(r.main, 0.5), p95: quantile(r.main, 0.95), max: r.main.length ? Math.max(...r.main) : NaN,
    est50: quantile(r.shown, 0.5), est95: quantile(r.shown, 0.95),
    recv: quantile(r.received, 0.5), decoded: quantile(r.decoded, 0.5),
    show: quantile(r.afterDecodeSwap.length ? r.afterDecodeSwap : r.afterDecode, 0.5),
    fps: r.fps, cpu: r.load.sender,
  }));
  // p50/p95/max are paint -> swapped (Chromium's trace) where the report says so.
  const head = '| sender | p50 ms | p95 ms | max ms | estimate p50 / p95 | paint→received p50 | paint→decoded p50 | decoded→swapped p50 | fps | sender CPU % |';
  const out = [head, '|---|---|---|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    out.push(`| ${r.name} | ${fmt(r.p50)} | ${fmt(r.p95)} | ${fmt(r.max)} | ${fmt(r.est50)} / ${fmt(r.est95)} | ${fmt(r.recv)} | ${fmt(r.decoded)} | ${fmt(r.show)} | ${fmt(r.fps)} | ${fmt(r.cpu)} |`);
  }
  if (rows.length === 2) {
    const [a, b] = rows;
    const q = (k) => fmt(a[k] / b[k], 2);
    out.push(`| ratio ${a.name} / ${b.name} | ${q('p50')} | ${q('p95')} | ${q('max')} | ${q('est50')} / ${q('est95')} | ${q('recv')} | ${q('decoded')} | ${q('show')} | ${q('fps')} | ${q('cpu')} |`);
  }
  const what = [...new Set(rows.map((r) => r.what))].join(' / ');
  out.push('', `p50/p95/max: ${what}; estimate: paint -> shown by Chromium's expectedDisplayTime.`);
  return out.join('\n');
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`g2g: ${err.message}\n`);
    process.exitCode = 2;
    return;
  }
  await runBench('g2g', async (scope) => {
    let failed = false;
    const x = scope.add(await startXvfb({ width: opts.width, height: opts.height }));
    const pattern = scope.add(await startClockPattern(x.display, { motionPercent: opts.motion, motionFps: opts.fps }));
    const browser = scope.add(await launchBrowser({ viewport: { width: opts.width, height: opts.height } }));
    console.log(`# glass-to-glass: ${opts.width}x${opts.height}, ${opts.fps} fps, ${opts.bitrate} kbit/s, ` +
      `${opts.motion}% of the screen moving, clock painted every 4 ms; ${opts.seconds} s measured per sender ` +
      `after ${opts.warmup} s of warm-up; ${cpuCount()} cores; Chromium ${browser.version()}; ${conditionName(opts)}`);
    const results = [];
    for (const name of opts.senders) {
      const inner = new Scope(name);
      let undoLoss = null;
      try {
        if (opts.step) setLink('8mbit');
        else if (opts.link) setLink(opts.link);
        if (opts.loss) undoLoss = setLoss(opts.loss);
        const start = { porthole, gst, 'porthole-wayland': portholeWayland }[name];
        const sender = await start(inner, { x, browser, opts });
        const r = await measure(sender, { x, pattern, opts });
        results.push(r);
        console.log(report(r, opts));
        if (!r.shown.length) failed = true;
      } catch (err) {
        failed = true;
        inner.dump();
        console.error(`g2g: ${name}: ${err?.stack || err}`);
      } finally {
        if (process.env.BENCH_LOGS) inner.dump(); // the senders' logs (e.g. RUST_LOG=debug)
        await inner.cleanup();
        if (opts.step || opts.link) setLink(null);
        undoLoss?.();
      }
    }
    if (results.length) {
      console.log('');
      console.log(table(results));
    }
    return failed;
  });
}

function cpuCount() {
  return readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((l) => l.startsWith('processor')).length;
}

await main();
