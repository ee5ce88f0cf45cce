// `porthole bench` runs end to end on its own Xvfb and prints a figure for every stage of
// every scene; so does the glass-to-glass benchmark (tests/bench/g2g.mjs). Only that they
// measure is checked here: speed is never asserted in tests.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { runTool, PORTHOLE_BIN, REPO } from './lib.mjs';

const num = String.raw`(\d+\.\d\d)`;

test('porthole bench measures every stage of every scene', { timeout: 120_000 }, async (t) => {
  const r = await runTool(PORTHOLE_BIN, ['bench', '--virtual', '640x480', '--seconds', '0.5'], { timeoutMs: 90_000 });
  const out = r.stdout.toString();
  assert.equal(r.code, 0, `porthole bench failed: ${r.stderr}`);
  t.diagnostic(`\n${out}`);
  assert.match(out, /^video 640x480, H\.264 8000 kbit\/s at 30 fps/m);
  const rows = new Map();
  for (const m of out.matchAll(new RegExp(String.raw`^(\w+)\s+(damage|grab|convert|copy|encode|decode|to RGBA)\s+${num}\s+${num}\s+${num}\s+(\d+)$`, 'gm'))) {
    rows.set(`${m[1]} ${m[2]}`, { p50: Number(m[3]), p95: Number(m[4]), max: Number(m[5]), n: Number(m[6]) });
  }
  for (const scene of ['strip', 'busy', 'keyframe']) {
    for (const stage of ['damage', 'grab', 'convert', 'copy', 'encode', 'decode', 'to RGBA']) {
      const row = rows.get(`${scene} ${stage}`);
      assert.ok(row, `no ${scene} ${stage} line in:\n${out}`);
      assert.ok(row.n > 0 && row.p50 <= row.p95 && row.p95 <= row.max, `${scene} ${stage}: ${JSON.stringify(row)}`);
    }
  }
  // An unchanged screen costs a damage poll a tick: never grabbed, converted or encoded.
  assert.ok(rows.get('static damage'), out);
  assert.ok(!rows.has('static grab'), `the static scene grabbed:\n${out}`);
  assert.ok(!rows.has('static encode'), `the static scene encoded frames:\n${out}`);
  const summary = new Map([...out.matchAll(/^(strip|static|busy|keyframe)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$/gm)]
    .map((m) => [m[1], { ticks: Number(m[2]), changed: Number(m[3]), bytesPerFrame: Number(m[6]) }]));
  assert.equal(summary.get('static')?.changed, 0, out);
  assert.equal(summary.get('keyframe')?.ticks, 10, out);
  assert.ok(summary.get('busy')?.changed > 0 && summary.get('busy').bytesPerFrame > summary.get('strip').bytesPerFrame,
    `a busy picture costs more bytes than a moving bar:\n${out}`);
  assert.match(out, /^audio: Opus 10 ms stereo frames: encode p50 \d+\.\d\d ms/m);
  assert.match(out, /^memory: peak resident \d+\.\d MiB$/m);
});

// tests/bench/g2g.mjs end to end, briefly, with Porthole only: the clock painter's codes
// are read back by the page on presented frames, and every figure is printed. A misread
// code would land seconds away from its showing ("implausible") or go back in time
// between frames, so those must be none; how fast anything is is never asserted.
test('the glass-to-glass benchmark reads the painted clock on presented frames', { timeout: 150_000 }, async (t) => {
  const g2g = path.join(REPO, 'tests', 'bench', 'g2g.mjs');
  const r = await runTool(process.execPath, [g2g, '--size', '640x480', '--seconds', '3', '--warmup', '1', '--sender', 'porthole'],
    { timeoutMs: 120_000 });
  const out = r.stdout.toString();
  t.diagnostic(`\n${out}`);
  assert.equal(r.code, 0, `g2g failed:\n${out}\n${r.stderr}`);
  assert.match(out, /^# glass-to-glass: 640x480, 30 fps, 8000 kbit\/s, 30% of the screen moving/m);
  const frames = out.match(/^ {2}frames read (\d+): decoded (\d+), undecodable (\d+), implausible (\d+), codes going back (\d+); frame sizes 640x480×\d+$/m);
  assert.ok(frames, `no frames line in:\n${out}`);
  const [read, decoded, undecodable, implausible, back] = frames.slice(1).map(Number);
  assert.ok(decoded > 0, `no code decoded:\n${out}`);
  // Read from the decoded picture (not through a canvas), every frame accounted for.
  const how = out.match(/^ {2}read from: (.+?); frames already replaced when read (\d+); read errors (\d+); unfinished (\d+)/m);
  assert.ok(how, `no read-from line in:
${out}`);
  const [source, stale, errors, unfinished] = [how[1], ...how.slice(2).map(Number)];
  assert.equal(source, 'the decoded luma (VideoFrame.copyTo)', out);
  assert.equal(errors, 0, out);
  assert.equal(unfinished, 0, out);
  assert.equal(read, decoded + undecodable + implausible + stale, out);
  assert.equal(implausible, 0, `codes misread:\n${out}`);
  assert.equal(back, 0, `codes misread (going back in time):\n${out}`);
  const ms = String.raw`-?\d+\.\d ms`;
  for (const label of ['paint -> received', 'received -> shown', '  of which decode', 'paint -> decoded',
    '  decoded -> swapped', '  decoded -> shown']) {
    assert.match(out, new RegExp(String.raw`^ {2}${label} +p50 +${ms} +p95 +${ms} +max +${ms} +\(\d+ frames\)$`, 'm'), `${label}:\n${out}`);
  }
  assert.match(out, new RegExp(String.raw`^ {2}paint -> shown +p50 +${ms} +p95 +${ms} +max +${ms} +\(\d+ frames\) \(Chromium's estimate: rVFC expectedDisplayTime\)$`, 'm'), out);
  // When each frame was swapped, from Chromium's trace: found for (nearly) every frame read.
  const swapped = out.match(new RegExp(String.raw`^ {2}paint -> swapped +p50 +${ms} +p95 +${ms} +max +${ms} +\((\d+) frames\) from Chromium's trace \((\d+) of (\d+) frames; clocks matched within (\d+\.\d+) ms\)$`, 'm'));
  assert.ok(swapped, `no paint -> swapped line in:\n${out}`);
  const [, matched, of, spread] = swapped.slice(1).map(Number);
  assert.equal(of, decoded, out);
  assert.ok(matched >= 0.95 * decoded, `swaps found for ${matched} of ${decoded} frames:\n${out}`);
  assert.ok(spread < 1, `the trace's clock and the page's disagree by ${spread} ms:\n${out}`);
  assert.match(out, /^ {2}presented fps \d+\.\d; longest gap between decoded frames \d+\.\d ms, ended \d{4}-\d\d-\d\dT[\d:.]+Z$/m);
  assert.match(out, /^ {2}CPU, % of one core: sender \d+\.\d, painter \d+\.\d, Xvfb \d+\.\d; machine \d+\.\d of \d+ \(all processes\)$/m);
  assert.match(out, /^ {2}painter: [1-9]\d* codes painted/m);
  // sender | p50 | p95 | max | estimate p50 / p95 | paint→received | paint→decoded | decoded→swapped | fps | CPU
  assert.match(out, /^\| porthole \| -?\d+\.\d \| -?\d+\.\d \| -?\d+\.\d \| -?\d+\.\d \/ -?\d+\.\d \| -?\d+\.\d \| -?\d+\.\d \| -?\d+\.\d \| \d+\.\d \| \d+\.\d \|$/m);
  assert.match(out, /^p50\/p95\/max: paint -> swapped; estimate: paint -> shown by Chromium's expectedDisplayTime\.$/m);
});
