// A second browser engine: Firefox ESR (Debian's), headless, driven over WebDriver BiDi
// (puppeteer-core), plays the viewer page: it pairs, negotiates H.264, shows the screen
// and follows its changes, and its data channels open. Firefox's own WebRTC stack, ICE
// agent, SCTP and decoder (libavcodec here: see FIREFOX_PREFS in lib.mjs). About 10 s.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  withScope, startXvfb, startPattern, startShare, launchFirefox, pollUntil, viewerStatus, runTool, runToolOk,
  countFramesDetailed, quadrantCentres, waitForColours, DEFAULT_BLOCKS,
} from './lib.mjs';

const SCREEN = { width: 320, height: 240 };
const TEST_TIMEOUT = 90_000;
const TOLERANCE = 40;
const SUBNET = '10.217.1';

test('Firefox ESR plays the viewer page: H.264, the screen and its changes, data channels open',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    // A network with a default route (Firefox gathers nothing without one): a veth pair
    // in this test's namespace, removed at the end.
    await runToolOk('ip', ['link', 'add', 'pf0', 'type', 'veth', 'peer', 'name', 'pf1']);
    s.add({ label: 'veth pf0/pf1', stop: () => runTool('ip', ['link', 'del', 'pf0']) });
    await runToolOk('ip', ['addr', 'add', `${SUBNET}.1/24`, 'dev', 'pf0']);
    for (const dev of ['pf0', 'pf1']) await runToolOk('ip', ['link', 'set', dev, 'up']);
    await runToolOk('ip', ['route', 'add', 'default', 'via', `${SUBNET}.2`]);
    const x = s.add(await startXvfb(SCREEN));
    const pattern = s.add(await startPattern(x.display));
    const share = s.add(await startShare({ display: x.display, listen: `${SUBNET}.1:0`, args: ['--audio', 'none'] }));
    const browser = s.add(await launchFirefox());
    const page = s.add(await browser.openPage(share.viewerUrl()));
    await pollUntil(() => viewerStatus(page), (v) => v.state === 'connected' && v.videoWidth > 0,
      { timeoutMs: 20000, intervalMs: 100, what: 'the page connected, with video' });

    const codec = await page.evaluate(async () => {
      const found = [];
      (await window.porthole.pc.getStats()).forEach((r) => {
        if (r.type === 'codec' && /^video\//.test(r.mimeType)) found.push(`${r.mimeType} ${r.sdpFmtpLine ?? ''}`);
      });
      return found.join(', ');
    });
    const fc = await countFramesDetailed(page, 3000);
    t.diagnostic(`${browser.label}: codec ${codec}; ${JSON.stringify(fc)} in 3 s`);
    assert.match(codec, /video\/H264/i, 'H.264 was negotiated');
    assert.ok(fc.frames >= 20, `at least 20 frames presented in 3 s: ${JSON.stringify(fc)}`);

    const points = quadrantCentres(SCREEN.width, SCREEN.height);
    await waitForColours(page, points, DEFAULT_BLOCKS, TOLERANCE, 5000);
    const next = ['00c8c8', 'c800c8', 'f0f0f0', '202020'];
    await pattern.setBlocks(next);
    await waitForColours(page, points, next, TOLERANCE, 5000);

    // The three data channels open (Firefox starts SCTP its own way) and the share's rights
    // message arrives on them.
    await pollUntil(() => browser.logText(),
      (l) => ['pointer', 'input', 'clipboard'].every((c) => l.includes(`data channel '${c}' open`)) && /rights: \{/.test(l),
      { timeoutMs: 5000, what: 'three data channels open and the rights message' });
    const stats = await share.stats();
    assert.equal(stats.viewers, 1, 'the share lists the Firefox viewer');
  }));
