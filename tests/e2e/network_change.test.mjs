// Network change (issue 14, "Wi-Fi on fire"): two hosts (network namespaces) joined by two
// links, like Wi-Fi plus Ethernet — `porthole share --listen 0.0.0.0:0` in "a", headless
// Chromium in "b". The link that carries the media goes down; the picture must go on over
// the other. Every presented frame's time is recorded in the page
// (requestVideoFrameCallback); the figure is the longest gap between two of them.
// Each test takes about 15 s.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  withScope, startXvfb, startPattern, startShareIn, startNetnsNode, runToolOk, pollUntil,
  launchBrowser, openViewer, statsFrom, selectedCandidatePair,
} from './lib.mjs';

const SCREEN = { width: 320, height: 240 };
const TEST_TIMEOUT = 90_000;
const LINKS = [
  { a: 'wa1', b: 'wb1', net: '10.216.1' },
  { a: 'wa2', b: 'wb2', net: '10.216.2' },
];

/** Namespaces a and b joined by both LINKS (a = .1, b = .2 on each). */
async function startTwoLinks(s) {
  const a = s.add(await startNetnsNode({ name: 'a' }));
  const b = s.add(await startNetnsNode({ name: 'b' }));
  for (const n of [a, b]) await n.runOk('ip', ['link', 'set', 'lo', 'up']);
  for (const l of LINKS) {
    await runToolOk('ip', ['link', 'add', l.a, 'netns', String(a.pid), 'type', 'veth',
      'peer', 'name', l.b, 'netns', String(b.pid)]);
    await a.runOk('ip', ['addr', 'add', `${l.net}.1/24`, 'dev', l.a]);
    await b.runOk('ip', ['addr', 'add', `${l.net}.2/24`, 'dev', l.b]);
    await a.runOk('ip', ['link', 'set', l.a, 'up']);
    await b.runOk('ip', ['link', 'set', l.b, 'up']);
  }
  // Chromium offers its default route's address: the first link, as on a laptop.
  await b.runOk('ip', ['route', 'add', 'default', 'via', `${LINKS[0].net}.1`]);
  await pollUntil(async () => (await Promise.all(LINKS.flatMap((l) => [
    a.runOk('ip', ['-o', 'link', 'show', l.a]), b.runOk('ip', ['-o', 'link', 'show', l.b]),
  ]))).map(String), (out) => out.every((x) => /LOWER_UP/.test(x)), { timeoutMs: 5000, what: 'links up' });
  return { a, b };
}

/** Starts recording presentation times of frames in the page. */
async function recordFrames(page) {
  await page.evaluate(() => {
    const v = document.getElementById('video');
    window.__frames = [];
    const onFrame = (now) => { window.__frames.push(now); v.requestVideoFrameCallback(onFrame); };
    v.requestVideoFrameCallback(onFrame);
  });
}

/** The longest gap (ms) between presented frames from `since` (page time) on, and the count. */
async function longestGap(page, since) {
  return page.evaluate((t0) => {
    const f = window.__frames.filter((t) => t >= t0);
    let gap = f.length ? f[0] - t0 : Infinity;
    for (let i = 1; i < f.length; i++) gap = Math.max(gap, f[i] - f[i - 1]);
    gap = Math.max(gap, performance.now() - (f.at(-1) ?? t0));
    return { gap: Math.round(gap), frames: f.length };
  }, since);
}

/** The selected candidate pair's two addresses, from the page's stats. */
async function selectedPair(page) {
  const p = await selectedCandidatePair(page);
  return p && `${p.local.address}:${p.local.port} -> ${p.remote.address}:${p.remote.port}`;
}

/**
 * Two links, Xvfb + pattern, the share in a, Chromium in b showing it over the first link;
 * then the link the media goes over is taken down in a and the page watched for 8 s.
 * Returns {gap, frames, before, after, state, share}.
 */
async function cutTheMediaLink(t, s) {
  const { a, b } = await startTwoLinks(s);
  const x = s.add(await startXvfb(SCREEN));
  s.add(await startPattern(x.display));
  const share = s.add(await startShareIn(a, { display: x.display, args: ['--audio', 'none', '--no-announce'] }));
  const browser = s.add(await launchBrowser({ viewport: SCREEN, node: b }));
  const url = `http://${LINKS[0].net}.1:${share.port}/#code=${share.code}`;
  const page = s.add(await openViewer(browser, url, { timeoutMs: 30000 }));
  await recordFrames(page);
  await new Promise((r) => { setTimeout(r, 1500); });
  const before = await selectedPair(page);
  const carrying = LINKS.find((l) => before?.includes(`${l.net}.`));
  assert.ok(carrying, `the media goes over one of the links: ${before}`);
  const cut = await page.evaluate(() => performance.now());
  await a.runOk('ip', ['link', 'set', carrying.a, 'down']);
  await new Promise((r) => { setTimeout(r, 8000); });
  const { gap, frames } = await longestGap(page, cut);
  const after = await selectedPair(page).catch((e) => `(${e.message})`);
  const state = await page.evaluate(() => window.porthole.state);
  t.diagnostic(`selected pair ${before}; took ${carrying.a} down; in the 8 s after: ${frames} frames, longest gap ` +
    `${gap} ms; selected pair now ${after}; page state ${state}`);
  return { gap, frames, before, after, state, share, carrying };
}

test('two links, the media\'s link goes down: the picture comes back by itself over the other',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const r = await cutTheMediaLink(t, s);
    assert.equal(r.state, 'connected', 'the page never dropped the session');
    assert.ok(!r.after?.includes(`${r.carrying.net}.`), `the page moved to the other link: ${r.after}`);
    // Before the ICE fix (third_party/rtc-ice) no frame came in these 8 s: the share kept
    // sending into the dead link while Chromium had moved to the other.
    assert.ok(r.frames >= 15, `frames after the cut: ${r.frames}`);
    assert.ok(r.gap < 8000, `the picture came back (longest gap ${r.gap} ms)`);
  }));

// Not met yet: Chromium moves to the other link only once it finds the selected pair dead
// (~6.5 s here); the share sees its writes fail at once but its ICE agent is not told.
test('two links, the media\'s link goes down: the longest gap in presented frames is ≤ 1 s',
  { timeout: TEST_TIMEOUT, todo: 'the share does not move on its own when its writes fail (~6.5 s gap)' },
  (t) => withScope(t, async (s) => {
    const r = await cutTheMediaLink(t, s);
    assert.ok(r.gap <= 1000, `longest gap ${r.gap} ms (want ≤ 1000)`);
  }));

/**
 * One link between a and b; the page in b shows the share in a; every packet between
 * them is dropped (nftables in a) for `seconds`, then let through again. Returns how long
 * after the restore the first frame came, and the page's states on the way.
 */
async function blackout(t, s, seconds) {
  const { a, b } = await startTwoLinks(s);
  const x = s.add(await startXvfb(SCREEN));
  s.add(await startPattern(x.display));
  const share = s.add(await startShareIn(a, { display: x.display, args: ['--audio', 'none', '--no-announce'] }));
  const browser = s.add(await launchBrowser({ viewport: SCREEN, node: b }));
  // Only the first link: the second goes down first, so there is no other path.
  await a.runOk('ip', ['link', 'set', LINKS[1].a, 'down']);
  const url = `http://${LINKS[0].net}.1:${share.port}/#code=${share.code}`;
  const page = s.add(await openViewer(browser, url, { timeoutMs: 30000 }));
  await recordFrames(page);
  await page.evaluate(() => {
    window.__states = [];
    window.porthole.on('state', ({ state }) => window.__states.push([Math.round(performance.now()), state]));
  });
  await new Promise((r) => { setTimeout(r, 1000); });
  for (const rule of [
    'add table inet porthole_blackout',
    'add chain inet porthole_blackout in { type filter hook input priority 0 ; }',
    'add chain inet porthole_blackout out { type filter hook output priority 0 ; }',
    `add rule inet porthole_blackout in iifname "${LINKS[0].a}" drop`,
    `add rule inet porthole_blackout out oifname "${LINKS[0].a}" drop`,
  ]) await a.runOk('nft', rule.split(' '));
  const cut = await page.evaluate(() => performance.now());
  // The host's view a few seconds in (from a itself: its own address is not behind the
  // block): the viewer is listed as reconnecting, its input released.
  await new Promise((r) => { setTimeout(r, 4500); });
  const during = await statsFrom(a, `http://${LINKS[0].net}.1:${share.port}`, share.code);
  await new Promise((r) => { setTimeout(r, seconds * 1000 - 4500); });
  await a.runOk('nft', ['delete', 'table', 'inet', 'porthole_blackout']);
  const restored = await page.evaluate(() => performance.now());
  const first = await page.waitForFunction((t0) => window.__frames.find((f) => f > t0), restored,
    { timeout: 15000, polling: 50 }).then((h) => h.jsonValue()).catch(() => null);
  const states = await page.evaluate((t0) => window.__states.filter(([at]) => at >= t0)
    .map(([at, st]) => `${Math.round(at - t0)}:${st}`), cut);
  const resumedMs = first == null ? null : Math.round(first - restored);
  t.diagnostic(`blackout ${seconds} s: first frame ${resumedMs} ms after the restore; page states (ms from the cut): ` +
    `${states.join(' ')}`);
  t.diagnostic(`the share 4.5 s into the blackout: ${during.viewers} viewer(s), ${during.viewers_reconnecting} reconnecting`);
  return { resumedMs, share, during };
}

for (const [seconds, within] of [[5, 2000], [20, 3000]]) {
  test(`all packets dropped for ${seconds} s, then restored: frames resume within ${within / 1000} s, by themselves`,
    { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
      const r = await blackout(t, s, seconds);
      assert.deepEqual([r.during.viewers, r.during.viewers_reconnecting], [1, 1],
        'the host lists the silent viewer as reconnecting');
      assert.match(r.share.stderrText(), /viewer unreachable; releasing its input/);
      assert.ok(r.resumedMs != null, 'frames came back');
      assert.ok(r.resumedMs <= within, `first frame ${r.resumedMs} ms after the restore (want ≤ ${within})`);
    }));
}
