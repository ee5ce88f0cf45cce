// Glass-to-glass latency benchmark (prints figures, asserts nothing): Xvfb shows the test
// pattern, `porthole share` sends it, one headless Chromium viewer shows it. Each trial
// repaints one quadrant with a new colour on the host and times how long until Chromium
// presents a video frame that shows it.
//
// Run from the repository root, in a loopback-only network namespace:
//   unshare -n sh -c 'ip link set lo up; node tests/bench/latency.mjs [--trials 30]'
// Options: --trials N (30), --fps N (the share's; default its own), --size WxH (1280x720),
// --bitrate-kbps N (the share's).
//
// How it is measured. The host's side: the time the test pattern answers "ok" to a
// "blocks ..." command, i.e. once the X server has drawn the new colour (XSync). The
// viewer's side: a requestVideoFrameCallback loop draws every presented frame's sample
// point to a canvas and records, for the first frame with the new colour, its
// expectedDisplayTime (when Chromium means to show it) on the wall clock. Both run on this
// machine's clock. The figure includes waiting for the next capture tick (up to one frame
// period at the share's fps), grab, conversion, encode, packetisation, loopback network,
// jitter buffer, decode and compositing; headless Chromium has no real display, so a
// monitor's own latency is not in it.

import { setTimeout as sleep } from 'node:timers/promises';
import {
  startXvfb, startPattern, startShare, launchBrowser, openViewer, useTreeAssets,
  waitForState, quadrantCentres,
} from '../e2e/lib.mjs';
import { cliArgs, runBench, quantile } from './lib.mjs';

function parseArgs(argv) {
  const opts = { trials: 30, fps: null, size: '1280x720', bitrate: null };
  for (const [a, val] of cliArgs(argv)) {
    switch (a) {
      case '--trials': opts.trials = Number(val()); break;
      case '--fps': opts.fps = Number(val()); break;
      case '--size': opts.size = val(); break;
      case '--bitrate-kbps': opts.bitrate = Number(val()); break;
      case '-h': case '--help':
        process.stdout.write('usage: node tests/bench/latency.mjs [--trials N] [--fps N] [--size WxH] [--bitrate-kbps N]\n');
        process.exit(0);
        break;
      default: throw new Error(`unknown argument ${a} (try --help)`);
    }
  }
  const m = /^(\d+)x(\d+)$/.exec(opts.size);
  if (!m) throw new Error('--size wants WxH, e.g. 1920x1080');
  opts.width = Number(m[1]);
  opts.height = Number(m[2]);
  if (!(opts.trials >= 1)) throw new Error('--trials must be at least 1');
  return opts;
}

/** Starts the in-page watcher: every presented frame's colour at (x, y) goes to a log. */
async function installWatcher(page, point) {
  await page.evaluate(({ x, y }) => {
    const video = document.getElementById('video') || window.porthole?.video;
    if (!video?.requestVideoFrameCallback) throw new Error('no video element with requestVideoFrameCallback');
    const canvas = new OffscreenCanvas(1, 1);
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    const w = window;
    w.__latency = { frames: 0, want: null, hit: null };
    const onFrame = (now, meta) => {
      const st = w.__latency;
      st.frames++;
      if (st.want && !st.hit) {
        ctx.drawImage(video, x, y, 1, 1, 0, 0, 1, 1);
        const [r, g, b] = ctx.getImageData(0, 0, 1, 1).data;
        const d = Math.max(Math.abs(r - st.want[0]), Math.abs(g - st.want[1]), Math.abs(b - st.want[2]));
        if (d <= 40) {
          st.hit = {
            display: performance.timeOrigin + meta.expectedDisplayTime,
            callback: performance.timeOrigin + now,
            received: meta.receiveTime !== undefined ? performance.timeOrigin + meta.receiveTime : null,
            rtp: meta.rtpTimestamp ?? null,
          };
        }
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }, point);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  await runBench('latency', async (scope) => {
    let failed = false;
    const screen = { width: opts.width, height: opts.height };
    const x = scope.add(await startXvfb(screen));
    const pattern = scope.add(await startPattern(x.display));
    const args = [];
    if (opts.fps) args.push('--fps', String(opts.fps));
    if (opts.bitrate) args.push('--bitrate-kbps', String(opts.bitrate));
    const share = scope.add(await startShare({ display: x.display, args }));
    const browser = scope.add(await launchBrowser({ viewport: screen }));
    await useTreeAssets(browser, share);
    const page = scope.add(await openViewer(browser, share.viewerUrl()));
    await waitForState(page, 'connected', 15000);
    const point = quadrantCentres(opts.width, opts.height)[0];
    await installWatcher(page, point);
    await sleep(2000);

    console.log(`# glass-to-glass latency: ${opts.width}x${opts.height}, share fps ${opts.fps ?? 'default'}, ` +
      `${opts.trials} trials; one quadrant changes colour per trial`);
    const colours = ['20c8c8', 'c820b4', 'f0f0f0', '102010', 'e08020', '2040e0'];
    const base = [...pattern.blocks];
    const results = [];
    for (let i = 0; i < opts.trials; i++) {
      const hex = colours[i % colours.length];
      const want = [0, 2, 4].map((k) => parseInt(hex.slice(k, k + 2), 16));
      await page.evaluate((w) => { window.__latency.want = w; window.__latency.hit = null; }, want);
      const sent = Date.now();
      await pattern.setBlocks([hex, base[1], base[2], base[3]]);
      const drawn = Date.now();
      let hit = null;
      for (let waited = 0; waited < 5000 && !hit; waited += 5) {
        hit = await page.evaluate(() => window.__latency.hit);
        if (!hit) await sleep(5);
      }
      if (!hit) {
        console.log(`${String(i + 1).padStart(3)}  no frame with the new colour within 5 s`);
        continue;
      }
      const ms = hit.display - drawn;
      results.push({ ms, upper: hit.display - sent, received: hit.received ? hit.received - drawn : NaN });
      console.log(`${String(i + 1).padStart(3)}  ${ms.toFixed(1).padStart(6)} ms  (from the command: ` +
        `${(hit.display - sent).toFixed(1)} ms; frame received ${hit.received ? `${(hit.received - drawn).toFixed(1)} ms` : 'n/a'})`);
      // Irregular spacing, so changes do not lock to the capture ticks.
      await sleep(300 + Math.floor(Math.random() * 200));
    }
    const lat = results.map((r) => r.ms);
    const rec = results.map((r) => r.received).filter(Number.isFinite);
    console.log('');
    if (!lat.length) {
      console.log('no trial saw the change');
      failed = true;
      return;
    }
    console.log(`summary over ${lat.length}/${opts.trials} trials: drawn on the host -> presented by Chromium: ` +
      `median ${quantile(lat, 0.5).toFixed(1)} ms, p95 ${quantile(lat, 0.95).toFixed(1)} ms, ` +
      `min ${Math.min(...lat).toFixed(1)} ms, max ${Math.max(...lat).toFixed(1)} ms`);
    const upper = results.map((r) => r.upper);
    console.log(`  counted from when the command was sent (the paint happened between the two): ` +
      `median ${quantile(upper, 0.5).toFixed(1)} ms, p95 ${quantile(upper, 0.95).toFixed(1)} ms`);
    if (rec.length) {
      console.log(`  of which until the frame's last packet was received: median ${quantile(rec, 0.5).toFixed(1)} ms, ` +
        `p95 ${quantile(rec, 0.95).toFixed(1)} ms`);
    }
    const stats = await share.stats();
    console.log(`  host: ${JSON.stringify(Object.fromEntries(Object.entries(stats)
      .filter(([k]) => /^frames_|^keyframes$|^bytes_encoded$/.test(k))))}`);
    return failed;
  });
}

await main();
