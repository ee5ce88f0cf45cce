// Congestion control with real links: the suite's loopback namespace, a token-bucket
// bottleneck on `lo` (tc tbf; `lo` set to MTU 1500 first, or tbf drops everything) and a
// per-viewer policer (nftables), real `porthole share` and `porthole record` viewers (the
// native client sends transport-wide congestion feedback, as browsers do). The share's
// /api/stats says what the encoder aims at (target_kbps/fps) and what each path can carry.
//
// These assert behaviour, not speed: the target comes down when the link does and goes back
// up when it recovers; a slow viewer does not drag a fast one below the policy's promise.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  withScope, startXvfb, startClockPattern, startShare, startRecord, pollUntil,
} from './lib.mjs';

const sh = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** A tbf bottleneck of `rate` on lo (this namespace only); returns {stop}. */
function bottleneck(rate) {
  sh('ip', ['link', 'set', 'lo', 'mtu', '1500']);
  sh('tc', ['qdisc', 'replace', 'dev', 'lo', 'root', 'tbf', 'rate', rate, 'burst', '16kb', 'latency', '150ms']);
  return {
    label: `tbf ${rate} on lo`,
    stop: async () => {
      try { sh('tc', ['qdisc', 'del', 'dev', 'lo', 'root']); } catch { /* already gone */ }
      sh('ip', ['link', 'set', 'lo', 'mtu', '65536']);
    },
  };
}

/** The times (s) of the keyframes (sync samples) in a recording's video, from ffprobe. */
function keyframeTimes(file) {
  const out = sh('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time,flags',
    '-of', 'csv=p=0', file]);
  return out.split('\n').map((l) => l.split(',')).filter(([, flags]) => flags?.startsWith('K'))
    .map(([t]) => Number(t));
}

/** UDP ports process `pid` has open (its ICE sockets). */
function udpPorts(pid) {
  const out = sh('ss', ['-Huanp']);
  return [...out.matchAll(/^\S+\s+\S+\s+\S+\s+\S+:(\d+)\s+.*pid=(\d+),/gm)]
    .filter((m) => Number(m[2]) === pid).map((m) => Number(m[1]));
}

/** An nftables policer: what goes to `ports` beyond `kbytesPerSec` is dropped. */
function police(ports, kbytesPerSec) {
  const table = `pt_police_${process.pid}`;
  sh('nft', ['add', 'table', 'inet', table]);
  sh('nft', ['add', 'chain', 'inet', table, 'in', '{ type filter hook input priority 0 ; }']);
  for (const port of ports) {
    sh('nft', ['add', 'rule', 'inet', table, 'in', 'udp', 'dport', String(port),
      'limit', 'rate', 'over', `${kbytesPerSec}`, 'kbytes/second', 'drop']);
  }
  return { label: `nft policer ${ports}`, stop: async () => { try { sh('nft', ['delete', 'table', 'inet', table]); } catch { /* gone */ } } };
}

/** Samples the share's stats every 250 ms into `timeline` until stopped. */
function sampler(share, timeline) {
  const t0 = Date.now();
  let running = true;
  const done = (async () => {
    while (running) {
      try {
        const s = await share.stats();
        timeline.push({ t: (Date.now() - t0) / 1000, kbps: s.target_kbps, fps: s.target_fps, scale: s.target_scale_div, path: s.path_estimate_min_kbps, over: s.units_over_budget, behind: s.units_behind });
      } catch { /* share busy: next time */ }
      await sleep(250);
    }
  })();
  return { label: 'stats sampler', stop: async () => { running = false; await done; } };
}

async function sharedSetup(scope, { width = 1280, height = 720, motionPercent = 40, kbps = 6000 } = {}) {
  const x = scope.add(await startXvfb({ width, height }));
  // The clock pattern's busy region scrolls every frame: plenty of bits to fill a link.
  scope.add(await startClockPattern(x.display, { motionPercent }));
  const share = scope.add(await startShare({
    display: x.display, args: ['--audio', 'none', '--no-announce', '--bitrate-kbps', String(kbps)],
  }));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'porthole-cc-'));
  scope.add({ label: 'tmp dir', stop: async () => rmSync(dir, { recursive: true, force: true }) });
  return { x, share, dir };
}

const show = (timeline) => timeline.map((s) => `${s.t.toFixed(1)}s:${s.kbps}`).join(' ');

// Runs on the 2-core dev box: down to 496-864 kbit/s in 1.0-1.6 s, held at a median of
// 555-814 (305-922) behind the 1.2 Mbit/s link, back over 3500 in 5.6-7.5 s. Allowed 15 s.
// (A single reading 3 s into the hold, as first asserted, caught the estimate's probes over
// the link now and then: 1356-1580 in 3 of 11 runs.) (Issue 11 asks for latency back under
// 150 ms within 3 s of a step; the g2g --step benchmark measures that, not this.)
test('the encoder target follows a link that steps down and back up', {
  timeout: 90000,
}, (t) => withScope(t, async (scope) => {
  const { share, dir } = await sharedSetup(scope);
  const rec = scope.add(startRecord(share.viewerUrl(), path.join(dir, 'a.mp4')));
  const timeline = [];
  scope.add(sampler(share, timeline));

  // Unimpaired: the estimate grows from its start until the encoder gets (most of) its
  // configured 6 Mbit/s (with one viewer: no viewer would leave the target as configured).
  await pollUntil(() => share.stats(), (s) => s.viewers === 1 && s.path_estimate_min_kbps > 0 && s.target_kbps >= 3500, { timeoutMs: 15000, what: 'target >= 3500 kbit/s on a free link' });
  const beforeStep = timeline.length;

  // 1.2 Mbit/s bottleneck: the target comes down to what fits.
  const link = scope.add(bottleneck('1200kbit'));
  const stepped = Date.now();
  const low = await pollUntil(() => share.stats(), (s) => s.viewers === 1 && s.target_kbps <= 1200, { timeoutMs: 8000, what: `target <= 1200 kbit/s behind a 1.2 Mbit/s link (${show(timeline)})` });
  const downIn = (Date.now() - stepped) / 1000;
  const holdFrom = timeline.length;
  await sleep(3000);
  const last = (await share.stats()).target_kbps;
  // Over those 3 s the target stays under the link: its median does (the estimate probes
  // over the link now and then, and comes back when a queue shows), and it never runs away.
  const hold = [...timeline.slice(holdFrom).map((s) => s.kbps), last].sort((a, b) => a - b);
  const held = hold[Math.floor(hold.length / 2)];
  assert.ok(held <= 1200, `the target stays under the link: median ${held} kbit/s (${show(timeline)})`);
  assert.ok(hold[hold.length - 1] <= 1800, `the target does not run away: up to ${hold[hold.length - 1]} kbit/s (${show(timeline)})`);
  // …and does not collapse to the floor (150) once the first overshoot has drained.
  assert.ok(held >= 200, `the target holds to what the link carries: median ${held} kbit/s (${show(timeline)})`);

  // The link recovers: the target goes back up, in seconds.
  await link.stop();
  const freed = Date.now();
  await pollUntil(() => share.stats(), (s) => s.viewers === 1 && s.target_kbps >= 3500, { timeoutMs: 15000, what: `target back >= 3500 kbit/s within 15 s (${show(timeline)})` });
  const upIn = (Date.now() - freed) / 1000;

  await rec.stop();
  const summary = rec.summary();
  // The picture kept moving through it all (a congested second or two at a few fps).
  assert.ok(summary && summary.videoFrames >= 8 * summary.seconds, `the viewer kept receiving: ${JSON.stringify(summary)}`);
  t.diagnostic(`target before ${timeline[beforeStep - 1]?.kbps} kbit/s; down to ${low.target_kbps} in ${downIn.toFixed(1)} s; held at ${held} (median; ${hold[0]}-${hold[hold.length - 1]}); back up in ${upIn.toFixed(1)} s`);
  t.diagnostic(`timeline ${show(timeline)}`);
}));

test('a slow viewer does not drag a fast one down', {
  timeout: 90000,
}, (t) => withScope(t, async (scope) => {
  const { share, dir } = await sharedSetup(scope);
  const fast = scope.add(startRecord(share.viewerUrl(), path.join(dir, 'fast.mp4')));
  const slow = scope.add(startRecord(share.viewerUrl(), path.join(dir, 'slow.mp4')));
  await pollUntil(() => share.stats(), (s) => s.viewers === 2 && s.target_kbps >= 3000, { timeoutMs: 15000, what: 'two viewers, target >= 3000 kbit/s' });

  // The slow viewer's path carries 40 kB/s (320 kbit/s); beyond that, packets are dropped.
  const ports = await pollUntil(async () => udpPorts(slow.child.pid), (p) => p.length > 0, { what: 'the slow viewer\'s UDP ports' });
  scope.add(police(ports, 40));
  const timeline = [];
  scope.add(sampler(share, timeline));
  await sleep(8000);

  // The slow one is hopeless beside the fast one: it must not set the encoder's target.
  const recent = timeline.slice(-8);
  const minKbps = Math.min(...recent.map((s) => s.kbps));
  const minFps = Math.min(...recent.map((s) => s.fps));
  assert.ok(minKbps >= 2000, `the encoder kept aiming at the fast viewer: ${minKbps} kbit/s (${show(timeline)})`);
  assert.equal(minFps, 30, 'full frame rate for the fast viewer');
  // What its link cannot carry is skipped, whole units up to its next keyframe (each ~2.5 s
  // apart, see below), in one of two ways. While its estimate is still coming down, its
  // budget refuses the units after a keyframe (units_over_budget). Once the estimate is near
  // its link (~400 kbit/s), pacing one ~100 kB keyframe out takes ~0.8 s, and the fan-out's
  // 8-unit queue moves past it before its budget is asked (units_behind): CI saw only this,
  // 18 s without a unit over budget.
  const skipped = (st) => st.units_over_budget + st.units_behind;
  const s = await pollUntil(() => share.stats(), (st) => skipped(st) > 0,
    { timeoutMs: 10000, what: 'the slow viewer\'s units skipped (over its budget or behind the fan-out)' });

  // What the fast viewer got over the same seconds: frames at (nearly) the policy's rate.
  await fast.stop();
  await slow.stop();
  const f = fast.summary();
  // A policed viewer may never see a whole keyframe (its packets are dropped, not queued).
  const sl = slow.summary() || { videoFrames: 0 };
  assert.ok(f, `the fast recorder summarised: ${fast.stderrText().slice(-300)}`);
  // A hopeless viewer asks for keyframes no more often than its own link carries one
  // (100 kB at 320 kbit/s: 2.5 s), so the fast viewer gets no flood of IDRs. (It asked
  // every second, and every viewer got an IDR a second.) The last 5 s of the recording
  // are policed, after the slow viewer's estimate has come down to its link: at most
  // three keyframes 2.5 s apart fit in them (the build before made five).
  const fastKeys = keyframeTimes(path.join(dir, 'fast.mp4'));
  t.diagnostic(`keyframes the fast viewer got at ${fastKeys.map((k) => k.toFixed(1)).join(' ')} of ${f.seconds.toFixed(1)} s`);
  assert.ok(fastKeys.filter((k) => k >= f.seconds - 5).length <= 3,
    `the fast viewer got no flood of keyframes: ${fastKeys.join(' ')} s of ${f.seconds} s`);
  const fastFps = f.videoFrames / f.seconds;
  assert.ok(fastFps >= 20, `the fast viewer got ${fastFps.toFixed(1)} fps (${JSON.stringify(f)})`);
  assert.ok(sl.videoFrames < f.videoFrames, `the slow viewer got fewer frames: ${sl.videoFrames} vs ${f.videoFrames}`);
  t.diagnostic(`target min ${minKbps} kbit/s at ${minFps} fps with a 320 kbit/s viewer; fast ${fastFps.toFixed(1)} fps (${f.videoFrames} frames), slow ${sl.videoFrames} frames; units over budget ${s.units_over_budget}, behind ${s.units_behind}`);
}));

// Behind 1 Mbit/s a 1080p keyframe (130-220 kB here) takes 1-2 s of the link: its tail is
// lost in the bottleneck's queue, and before the share halved the picture for it, the
// viewer got no picture at all. Now the picture is halved (its keyframes fit), the viewer
// keeps getting frames, and the full size comes back once the link is freed. How soon
// depends on openh264's rate-control debt (README, "What remains"): 7.7-22.7 s in 15 runs on
// the 2-core dev box, near the 25 s first allowed (CI failed this test once; what it showed
// does not say which check); allowed 40 s.
test('behind a 1 Mbit/s link a 1080p picture is halved, keeps moving, and comes back', {
  timeout: 90000,
}, (t) => withScope(t, async (scope) => {
  const { share, dir } = await sharedSetup(scope, { width: 1920, height: 1080, motionPercent: 30, kbps: 8000 });
  const link = scope.add(bottleneck('1mbit'));
  const timeline = [];
  scope.add(sampler(share, timeline));
  const rec = scope.add(startRecord(share.viewerUrl(), path.join(dir, 'slow.mp4')));
  const scales = () => timeline.map((s) => `${s.t.toFixed(1)}s:${s.kbps}/${s.scale}`).join(' ');

  await pollUntil(() => share.stats(), (s) => s.viewers === 1 && s.target_scale_div === 2, { timeoutMs: 20000, what: `the picture halved behind 1 Mbit/s (${scales()})` });
  await sleep(8000);
  // From the sampler's first halved sample on (not from the timeline's length when the poll
  // above saw it: a sample asked for before the halving can land after that).
  const halvedAt = timeline.findIndex((s) => s.scale === 2);
  assert.ok(halvedAt >= 0, `the sampler saw the halving (${scales()})`);
  const held = timeline.slice(halvedAt);
  assert.ok(held.every((s) => s.scale === 2), `the picture stays halved behind the link (${scales()})`);

  await link.stop();
  const freed = Date.now();
  await pollUntil(() => share.stats(), (s) => s.viewers === 1 && s.target_scale_div === 1, { timeoutMs: 40000, what: `full size again once the link is freed (${scales()})` });
  const backIn = (Date.now() - freed) / 1000;

  await rec.stop();
  const summary = rec.summary();
  // The picture kept moving: at least 10 fps over the whole run, congested start included.
  assert.ok(summary && summary.videoFrames >= 10 * summary.seconds, `the viewer kept receiving: ${JSON.stringify(summary)} (${scales()})`);
  t.diagnostic(`halved at ${timeline.find((x) => x.scale === 2)?.t.toFixed(1)} s; full size ${backIn.toFixed(1)} s after the link was freed; ${(summary.videoFrames / summary.seconds).toFixed(1)} fps recorded`);
  t.diagnostic(`timeline ${scales()}`);
}));
