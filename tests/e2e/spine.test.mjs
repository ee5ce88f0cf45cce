// The spine of Porthole: an X screen (Xvfb + `porthole test-pattern`) shared by
// `porthole share` and watched by headless Chromium over WebRTC (WHEP).
// Each test has its own Xvfb, pattern, share and browser. Loopback only.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  withScope, startXvfb, startPattern, startShare, launchBrowser, openViewer, openPage,
  waitForState, viewerStatus, countFrames, countFramesDetailed, waitForColours,
  quadrantCentres, DEFAULT_BLOCKS, postWhep, pollUntil, makeOffer, randomCode,
  PORTHOLE_BIN, xEnv, stopCleanly, signedAuth, pairWith,
} from './lib.mjs';
import { spawn } from 'node:child_process';
import { once } from 'node:events';

const SCREEN = { width: 1280, height: 720 };
const TOLERANCE = 40; // per channel: H.264 is BT.601 limited range with 4:2:0 chroma
const TEST_TIMEOUT = 90_000;

/** Xvfb + test pattern + share + browser, all registered in the scope for cleanup. */
async function setup(s, { shareArgs = [] } = {}) {
  const x = s.add(await startXvfb(SCREEN));
  const pattern = s.add(await startPattern(x.display));
  assert.deepEqual({ width: pattern.width, height: pattern.height }, SCREEN,
    'test-pattern reports the Xvfb screen size');
  const share = s.add(await startShare({ display: x.display, args: shareArgs }));
  const browser = s.add(await launchBrowser({ viewport: SCREEN }));
  return { x, pattern, share, browser };
}

test('browser shows the screen', { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
  const { pattern, share, browser } = await setup(s);
  const page = s.add(await openViewer(browser, share.viewerUrl()));

  // The share encodes the whole screen at its own size; allow a moment in case the first
  // frames were smaller, but it must settle on exactly the screen size.
  const st = await pollUntil(() => viewerStatus(page),
    (v) => v.videoWidth === SCREEN.width && v.videoHeight === SCREEN.height,
    { timeoutMs: 5000, what: `video size ${SCREEN.width}x${SCREEN.height}` }).catch(() => viewerStatus(page));
  assert.deepEqual({ w: st.videoWidth, h: st.videoHeight }, { w: SCREEN.width, h: SCREEN.height },
    'video has the screen size');

  const fc = await countFramesDetailed(page, 3000);
  assert.ok(fc.frames >= 20, `at least 20 frames in 3 s, got ${JSON.stringify(fc)}`);

  const points = quadrantCentres(SCREEN.width, SCREEN.height);
  await waitForColours(page, points, DEFAULT_BLOCKS, TOLERANCE, 5000);

  const next = ['00c8c8', 'c800c8', 'f0f0f0', '202020'];
  await pattern.setBlocks(next);
  await waitForColours(page, points, next, TOLERANCE, 5000);

  // And back, to be sure it follows changes and wasn't a fluke.
  await pattern.setBlocks([...DEFAULT_BLOCKS]);
  await waitForColours(page, points, DEFAULT_BLOCKS, TOLERANCE, 5000);

  await stopCleanly(browser, share);
}));

test('two viewers, one encoder', { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
  const { share, browser } = await setup(s);
  const page1 = s.add(await openViewer(browser, share.viewerUrl()));
  const page2 = s.add(await openViewer(browser, share.viewerUrl()));

  const [n1, n2] = await Promise.all([countFrames(page1, 2000), countFrames(page2, 2000)]);
  assert.ok(n1 >= 10, `viewer 1 shows at least 10 frames in 2 s, got ${n1}`);
  assert.ok(n2 >= 10, `viewer 2 shows at least 10 frames in 2 s, got ${n2}`);

  const s1 = await pollUntil(share.stats, (st) => st.viewers === 2,
    { timeoutMs: 5000, what: 'stats().viewers === 2' });
  assert.equal(s1.encoders_started, 1, `one encoder for two viewers: ${JSON.stringify(s1)}`);
  assert.equal(s1.viewers, 2);
  assert.ok(s1.peer_connections_created >= 2, `two peer connections: ${JSON.stringify(s1)}`);
  await sleep(1000);
  const s2 = await share.stats();
  assert.ok(s2.frames_encoded > s1.frames_encoded,
    `frames_encoded grows: ${s1.frames_encoded} then ${s2.frames_encoded}`);
  assert.equal(s2.encoders_started, 1, `still one encoder: ${JSON.stringify(s2)}`);

  await stopCleanly(browser, share);
}));

test('wrong code and garbage SDP are refused, share keeps serving', { timeout: TEST_TIMEOUT },
  (t) => withScope(t, async (s) => {
    const { share, browser } = await setup(s);
    const page = s.add(await openViewer(browser, share.viewerUrl()));
    const offer = await makeOffer(page);
    assert.match(offer, /^v=0\r?\n/, 'the browser made an SDP offer');
    let wrong = randomCode();
    while (wrong === share.code) wrong = randomCode();

    const before = await share.stats();

    // A wrong code fails its pairing (round one); the code shown in clear is not taken.
    const r1 = await pairWith(share.origin, wrong).then(() => 'paired', (e) => e.kind);
    assert.equal(r1, 'wrong-code', 'a wrong code does not pair');
    const r1b = await postWhep(share.origin, { code: { bearer: share.code }, body: offer });
    assert.equal(r1b.status, 401, `bearer code without --allow-whep-token -> 401, got ${r1b.status}: ${r1b.text}`);
    assert.match(r1b.text, /--allow-whep-token/);
    const afterWrong = await share.stats();
    assert.equal(afterWrong.peer_connections_created, before.peer_connections_created,
      'a refused offer creates no peer connection');

    const r2 = await postWhep(share.origin, { code: null, body: offer });
    assert.equal(r2.status, 401, `no Authorization -> 401, got ${r2.status}: ${r2.text}`);
    assert.equal((await share.stats()).peer_connections_created, before.peer_connections_created,
      'an unauthenticated offer creates no peer connection');

    const r3 = await postWhep(share.origin, { code: share.code, body: 'hello not sdp' });
    assert.equal(r3.status, 400, `garbage SDP -> 400, got ${r3.status}: ${r3.text}`);
    assert.ok(r3.text.trim().length > 0, 'a 400 says what was wrong');

    const r4 = await postWhep(share.origin, { code: share.code, body: offer, contentType: 'text/plain' });
    assert.ok([415, 400].includes(r4.status), `text/plain offer -> 415 (or 400), got ${r4.status}: ${r4.text}`);

    const st = await viewerStatus(page);
    assert.equal(st.state, 'connected', `first viewer still connected: ${JSON.stringify(st)}`);
    const n = await countFrames(page, 1000);
    assert.ok(n >= 5, `first viewer still gets frames: ${n} in 1 s`);

    const beforeWrongPage = await share.stats();
    const bad = s.add(await openPage(browser, share.viewerUrl(wrong)));
    const badStatus = await waitForState(bad, 'unauthorized', 15000);
    assert.equal(badStatus.state, 'unauthorized');
    const afterWrongPage = await share.stats();
    assert.equal(afterWrongPage.peer_connections_created, beforeWrongPage.peer_connections_created,
      'a viewer with the wrong code gets no peer connection on the share');
    assert.equal(afterWrongPage.viewers, 1, `still exactly one viewer: ${JSON.stringify(afterWrongPage)}`);
    t.diagnostic(`stats at end: ${JSON.stringify(afterWrongPage)}`);

    await stopCleanly(browser, share);
  }));

test('viewer disconnect frees the session', { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
  const { share, browser } = await setup(s);
  const page = s.add(await openViewer(browser, share.viewerUrl()));
  await pollUntil(share.stats, (st) => st.viewers === 1,
    { timeoutMs: 5000, what: 'stats().viewers === 1' });

  await page.evaluate(async () => { await window.porthole.disconnect(); });
  await pollUntil(share.stats, (st) => st.viewers === 0,
    { timeoutMs: 5000, what: 'stats().viewers === 0 after disconnect()' });
  const st = await viewerStatus(page);
  t.diagnostic(`viewer state after disconnect(): ${st.state}`);

  const unknown = `/whep/${'0'.repeat(24)}`;
  const res = await share.fetch(unknown, {
    method: 'DELETE', headers: { Authorization: await signedAuth(share.origin, share.code, 'DELETE', unknown) },
  });
  const text = await res.text();
  assert.equal(res.status, 404, `DELETE of an unknown session -> 404, got ${res.status}: ${text}`);

  await stopCleanly(browser, share);
}));

/** `porthole test-pattern --busy N` on `display`: thousands of new rectangles every frame. */
async function startBusyPattern(display, glyphs) {
  const child = spawn(PORTHOLE_BIN, ['test-pattern', '--display', display, '--busy', String(glyphs)],
    { env: xEnv(display), stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  await pollUntil(() => out, (o) => /^ready \d+x\d+$/m.test(o) || child.exitCode !== null,
    { timeoutMs: 15000, what: 'test-pattern --busy to be ready' });
  assert.match(out, /^ready /m, `test-pattern --busy: ${out}`);
  return {
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await Promise.race([once(child, 'exit'), sleep(3000)]);
      }
    },
    logText: () => out,
    label: 'porthole test-pattern --busy',
  };
}

test('busy content: the share holds its bit rate by lowering the frame rate, and frames keep coming',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const KBPS = 2000;
    const x = s.add(await startXvfb(SCREEN));
    s.add(await startBusyPattern(x.display, 3000));
    const share = s.add(await startShare({ display: x.display, args: ['--bitrate-kbps', String(KBPS)] }));
    const browser = s.add(await launchBrowser({ viewport: SCREEN }));
    const page = s.add(await openViewer(browser, share.viewerUrl()));
    await waitForState(page, 'connected', 15000);
    await sleep(2000); // the first half second of budget (the burst) is spent by now

    const a = await share.stats();
    const t0 = Date.now();
    const frames = await countFrames(page, 5000);
    const b = await share.stats();
    const secs = (Date.now() - t0) / 1000;
    const kbps = ((b.bytes_encoded - a.bytes_encoded) * 8) / 1000 / secs;
    const fps = (b.frames_encoded - a.frames_encoded) / secs;
    const perFrame = (b.bytes_encoded - a.bytes_encoded) / Math.max(1, b.frames_encoded - a.frames_encoded);
    t.diagnostic(`over ${secs.toFixed(1)} s at --bitrate-kbps ${KBPS}: ${kbps.toFixed(0)} kbit/s encoded, ` +
      `${fps.toFixed(1)} fps (${(perFrame / 1000).toFixed(0)} kB a frame), viewer rendered ${frames} frames; ` +
      `frames_paced ${a.frames_paced} -> ${b.frames_paced}, frames_captured ${b.frames_captured - a.frames_captured}`);
    // A 1280x720 frame of this content is tens of kB: at 30 fps it would take well over the
    // budget (the encoder's rate control makes frames smaller as it paces, 21-30 kB here,
    // so twice the budget is the bar, not more).
    assert.ok(perFrame * 8 * 30 / 1000 > 2 * KBPS, `the content is busy enough to need pacing: ${perFrame} B a frame`);
    assert.ok(kbps <= KBPS * 1.25, `encoded ${kbps.toFixed(0)} kbit/s with --bitrate-kbps ${KBPS}`);
    assert.ok(b.frames_paced > a.frames_paced, `the encoder waited for budget: ${JSON.stringify(b)}`);
    assert.ok(frames >= 5, `the viewer still gets frames: ${frames} in 5 s`);
    await stopCleanly(browser, share);
  }));
