// Time to first frame (prints figures, asserts nothing): how long a viewer takes from
// opening the link to its first presented frame, for one or more `porthole` binaries in
// the same run (trials alternate between them, so machine noise falls on all alike). Made
// for issue 15: pairing must add at most one round trip.
//
// Run from the repository root, in a loopback-only network namespace:
//   unshare -n sh -c 'ip link set lo up; node tests/bench/first_frame.mjs \
//     [--bin OLD --bin NEW] [--trials 15]'
//
// Browser: a fresh context per trial navigates to the share's link; the page's own
// requestVideoFrameCallback gives the first frame's presentation time, measured from the
// start of navigation (performance.timeOrigin). The resource timings of /pake and /whep
// show where the signaling's time went. Native: `porthole record LINK FILE --duration 0.2`
// from spawn to its "recording started" line (the first keyframe in hand).

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  startXvfb, startPattern, launchBrowser, startProcess, PORTHOLE_BIN, randomCode,
} from '../e2e/lib.mjs';
import { cliArgs, runBench, quantile } from './lib.mjs';

function parseArgs(argv) {
  const opts = { bins: [], trials: 15, size: '1280x720' };
  for (const [a, val] of cliArgs(argv)) {
    switch (a) {
      case '--bin': opts.bins.push(val()); break;
      case '--trials': opts.trials = Number(val()); break;
      case '--size': opts.size = val(); break;
      case '-h': case '--help':
        process.stdout.write('usage: node tests/bench/first_frame.mjs [--bin PATH]... [--trials N] [--size WxH]\n');
        process.exit(0);
        break;
      default: throw new Error(`unknown argument ${a} (try --help)`);
    }
  }
  if (!opts.bins.length) opts.bins.push(PORTHOLE_BIN);
  const m = /^(\d+)x(\d+)$/.exec(opts.size);
  if (!m) throw new Error('--size wants WxH');
  opts.width = Number(m[1]);
  opts.height = Number(m[2]);
  return opts;
}

async function startShareOf(scope, bin, display) {
  const code = randomCode();
  const proc = scope.add(startProcess(`share ${path.basename(path.dirname(bin))}`, bin, [
    'share', '--display', display, '--listen', '127.0.0.1:0', '--no-approval', '--audio', 'none',
    '--no-announce'], { env: { PORTHOLE_CODE: code } }));
  const url = (await proc.waitLine(/^viewer: (http:\/\/\S+)$/, 30000, 'the viewer link'))[1];
  return { url, code };
}

async function browserTrial(browser, url, size) {
  const context = await browser.newContext({ viewport: { width: size.width, height: size.height } });
  try {
    await context.grantPermissions(['camera', 'microphone'], { origin: new URL(url).origin });
    await context.addInitScript(() => {
      const arm = () => {
        const v = document.getElementById('video');
        if (!v) { requestAnimationFrame(arm); return; }
        v.requestVideoFrameCallback((now, meta) => { window.__firstFrame = meta.presentationTime ?? now; });
      };
      document.addEventListener('DOMContentLoaded', arm);
    });
    const page = await context.newPage();
    await page.goto(url, { waitUntil: 'commit', timeout: 15000 });
    await page.waitForFunction(() => window.__firstFrame != null, null, { timeout: 20000, polling: 20 });
    return await page.evaluate(() => {
      const res = (p) => performance.getEntriesByType('resource').find((e) => new URL(e.name).pathname === p);
      const span = (e) => (e ? { start: e.startTime, end: e.responseEnd } : null);
      return { firstFrame: window.__firstFrame, pake: span(res('/pake')), whep: span(res('/whep')) };
    });
  } finally {
    await context.close().catch(() => {});
  }
}

function nativeTrial(bin, url, dir, i) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(bin, ['record', url, path.join(dir, `r${i}.mp4`), '--duration', '0.2', '--force'],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    let at = null;
    child.stderr.on('data', (d) => {
      err += d;
      if (at == null && /recording started/.test(err)) at = performance.now() - started;
    });
    child.once('exit', (code) => (at != null ? resolve(at) : reject(new Error(`record exited ${code}: ${err}`))));
  });
}

const fmt = (xs) => `p50 ${quantile(xs, 0.5).toFixed(0)} ms, p90 ${quantile(xs, 0.9).toFixed(0)} ms (n=${xs.length})`;

await runBench('first_frame', async (scope) => {
  const opts = parseArgs(process.argv.slice(2));
  const x = scope.add(await startXvfb({ width: opts.width, height: opts.height }));
  scope.add(await startPattern(x.display));
  const shares = [];
  for (const bin of opts.bins) shares.push({ bin, ...(await startShareOf(scope, bin, x.display)) });
  const browser = scope.add(await launchBrowser({ viewport: { width: opts.width, height: opts.height } }));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'first-frame-'));
  scope.add({ stop: async () => rmSync(dir, { recursive: true, force: true }) });
  const results = shares.map(() => ({ page: [], signal: [], pake: [], native: [] }));
  for (let t = 0; t < opts.trials; t++) {
    for (const [i, share] of shares.entries()) {
      const r = await browserTrial(browser, share.url, opts);
      results[i].page.push(r.firstFrame);
      if (r.whep) results[i].signal.push(r.whep.end - (r.pake ?? r.whep).start);
      if (r.pake) results[i].pake.push(r.pake.end - r.pake.start);
      results[i].native.push(await nativeTrial(share.bin, share.url, dir, t * shares.length + i));
    }
  }
  for (const [i, share] of shares.entries()) {
    const r = results[i];
    console.log(`${share.bin}`);
    console.log(`  page: navigation → first frame ${fmt(r.page)}`);
    console.log(`        first signaling request → WHEP answer ${fmt(r.signal)}` +
      (r.pake.length ? `; POST /pake alone ${fmt(r.pake)}` : ' (no pairing)'));
    console.log(`  native: spawn → first keyframe ${fmt(r.native)}`);
  }
  return false;
});
