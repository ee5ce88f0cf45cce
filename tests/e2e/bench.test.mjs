// `porthole bench` runs end to end on its own Xvfb and prints a figure for every stage of
// every scene. Only that it measures is checked here: speed is never asserted in tests.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runTool, PORTHOLE_BIN } from './lib.mjs';

const num = String.raw`(\d+\.\d\d)`;

test('porthole bench measures every stage of every scene', { timeout: 120_000 }, async (t) => {
  const r = await runTool(PORTHOLE_BIN, ['bench', '--virtual', '640x480', '--seconds', '0.5'], { timeoutMs: 90_000 });
  const out = r.stdout.toString();
  assert.equal(r.code, 0, `porthole bench failed: ${r.stderr}`);
  t.diagnostic(`\n${out}`);
  assert.match(out, /^video 640x480, H\.264 8000 kbit\/s at 30 fps/m);
  const rows = new Map();
  for (const m of out.matchAll(new RegExp(String.raw`^(\w+)\s+(grab|compare|copy|convert|encode|decode|to RGBA)\s+${num}\s+${num}\s+${num}\s+(\d+)$`, 'gm'))) {
    rows.set(`${m[1]} ${m[2]}`, { p50: Number(m[3]), p95: Number(m[4]), max: Number(m[5]), n: Number(m[6]) });
  }
  for (const scene of ['strip', 'busy', 'keyframe']) {
    for (const stage of ['grab', 'compare', 'copy', 'convert', 'encode', 'decode', 'to RGBA']) {
      const row = rows.get(`${scene} ${stage}`);
      assert.ok(row, `no ${scene} ${stage} line in:\n${out}`);
      assert.ok(row.n > 0 && row.p50 <= row.p95 && row.p95 <= row.max, `${scene} ${stage}: ${JSON.stringify(row)}`);
    }
  }
  // An unchanged screen is grabbed and compared, never converted or encoded.
  assert.ok(rows.get('static grab') && rows.get('static compare'), out);
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
