// Authenticated pairing (issue 15), with real parts: `porthole share` on Xvfb, headless
// Chromium running the viewer page, the native client (`porthole record`), tcpdump, and a
// relaying man in the middle built on aiortc (tests/e2e/aiortc_peer.py, an independent stack).
// - A capture of all loopback traffic while a browser viewer and the native client connect
//   holds the code in no encoding (plain, hex, base64); a control capture of one request
//   that does send it finds it.
// - A relaying man in the middle (it serves the share's own page, relays the pairing,
//   copies the viewer's headers onto its own offer, answers with its own certificate): the
//   page and the native client refuse it with the clear message, nothing is shown or typed,
//   the host lists no viewer. The same relay does carry the share's video to a bearer-token
//   player (the control: the relay works, and only pairing stops it).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  withScope, startXvfb, startPattern, startShare, launchBrowser, openViewer, openPage,
  viewerStatus, waitForState, pollUntil, startRecord, startProcess, withCode,
} from './lib.mjs';

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });
const here = path.dirname(fileURLToPath(import.meta.url));
const SCREEN = { width: 320, height: 240 };
const TEST_TIMEOUT = 120_000;
const NOT_THE_SHARE = /not the share you were given the code for/;
// scripts/install-deps.sh test makes it.
const AIORTC_PYTHON = process.env.PORTHOLE_AIORTC_PYTHON
  || path.join(process.env.PORTHOLE_TEST_CACHE || '/var/cache/porthole-test', 'aiortc-venv', 'bin', 'python');

async function setup(s, { shareArgs = [] } = {}) {
  const x = s.add(await startXvfb(SCREEN));
  s.add(await startPattern(x.display));
  const share = s.add(await startShare({ display: x.display, args: shareArgs }));
  const browser = s.add(await launchBrowser({ viewport: SCREEN }));
  return { x, share, browser };
}

/**
 * tcpdump of every packet on lo into a fresh file (immediate mode: without it, packets left
 * in the ring at exit were lost here). stop() waits until it is written and checks that the
 * kernel dropped none; it resolves to the file's bytes.
 */
async function capture(s) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'porthole-pcap-'));
  const file = path.join(dir, 'lo.pcap');
  const child = spawn('tcpdump', ['-i', 'lo', '-s', '0', '-U', '-n', '--immediate-mode', '-B', '32768', '-Z', 'root', '-w', file],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await pollUntil(() => stderr, (e) => /listening on lo/.test(e), { timeoutMs: 5000, what: 'tcpdump listening' });
  // A marker datagram in the file (written packet by packet) means tcpdump has written all
  // that came before it.
  const markerSeen = async (what) => {
    const marker = Buffer.from(`porthole-capture-marker-${process.pid}-${Date.now()}-${what}`);
    const udp = dgram.createSocket('udp4');
    try {
      await pollUntil(async () => {
        await new Promise((resolve) => { udp.send(marker, 9, '127.0.0.1', () => resolve()); });
        return existsSync(file) && readFileSync(file).includes(marker);
      }, (seen) => seen, { timeoutMs: 5000, intervalMs: 50, what: `tcpdump ${what}` });
    } finally {
      udp.close();
    }
  };
  // "listening" comes a moment before packets are: nothing sent after this returns is missed.
  await markerSeen('capturing');
  const handle = {
    file,
    async stop() {
      // SIGINT ends tcpdump without reading what is still in the kernel's buffer (a control
      // capture once held the start marker and not the request sent after it): a marker
      // first, so all sent before stop() is in the file.
      if (child.exitCode === null) {
        await markerSeen('caught up');
        child.kill('SIGINT');
      }
      await exited;
      const dropped = stderr.match(/(\d+) packets? dropped by kernel/);
      assert.ok(dropped, `tcpdump's summary: ${stderr}`);
      assert.equal(Number(dropped[1]), 0, `tcpdump lost packets: ${stderr}`);
      return readFileSync(file);
    },
  };
  s.add({ stop: async () => { await handle.stop().catch(() => {}); rmSync(dir, { recursive: true, force: true }); } });
  return handle;
}

/** Every encoding of `code` a leak could take: plain, hex (both cases), base64 (3 offsets). */
function encodingsOf(code) {
  const bytes = Buffer.from(code, 'utf8');
  const out = new Map([['plain', bytes], ['hex', Buffer.from(bytes.toString('hex'))],
    ['HEX', Buffer.from(bytes.toString('hex').toUpperCase())]]);
  for (let pad = 0; pad < 3; pad++) {
    // The stable middle of base64 of the code at each alignment inside a longer string.
    const b64 = Buffer.concat([Buffer.alloc(pad, 0x20), bytes]).toString('base64');
    const inner = b64.slice(Math.ceil(pad * 4 / 3) + 1, -2).replace(/=+$/, '');
    out.set(`base64+${pad}`, Buffer.from(inner));
    out.set(`base64url+${pad}`, Buffer.from(inner.replace(/\+/g, '-').replace(/\//g, '_')));
  }
  return out;
}

/** The encodings of `code` found in `pcap`. */
function leaks(pcap, code) {
  return [...encodingsOf(code)].filter(([, needle]) => pcap.includes(needle)).map(([name]) => name);
}

/** The relay of tests/e2e/aiortc_peer.py in front of `share`: {origin, events()}. */
async function startRelay(s, share) {
  const proc = s.add(startProcess('mitm', AIORTC_PYTHON, [path.join(here, 'aiortc_peer.py'), 'relay', '--share', share.origin]));
  const origin = (await proc.waitLine(/^mitm: (http:\/\/\S+)$/, 20000, 'the relay listening'))[1];
  const events = () => proc.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  return { origin, events, proc };
}

test('the code never crosses the wire: a capture of a browser viewer and the native client connecting holds it in no encoding',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const { share, browser } = await setup(s);
    const pcap = await capture(s);
    const started = Date.now();
    const page = s.add(await openViewer(browser, share.viewerUrl()));
    t.diagnostic(`browser viewer showing video ${Date.now() - started} ms after opening the page`);
    const rec = s.add(startRecord(share.viewerUrl(), path.join(os.tmpdir(), `pairing-${process.pid}.mkv`), ['--duration', '2']));
    const exit = await rec.exited;
    assert.equal(exit.code, 0, `porthole record: ${rec.stderrText()}`);
    assert.ok(rec.summary()?.videoFrames > 0, `the native client received video: ${rec.stderrText()}`);
    await page.stop();
    const st = await share.stats();
    const bytes = await pcap.stop();
    t.diagnostic(`${bytes.length} bytes captured; pairings ${st.pairings}, confirmed ${st.pairings_confirmed}`);
    // The capture holds the signaling (it is not vacuous) ...
    for (const seen of ['POST /pake', 'POST /whep', 'Porthole-PAKE id=', 'porthole-answer-mac']) {
      assert.ok(bytes.includes(Buffer.from(seen)), `the capture holds "${seen}"`);
    }
    // ... and not the code.
    assert.deepEqual(leaks(bytes, share.code), [], 'the code is in the capture');

    // Control: one request that does carry the code (a bearer header) is found.
    const control = await capture(s);
    const r = await fetch(new URL('/api/stats', share.origin), { headers: { Authorization: `Bearer ${share.code}` } });
    assert.equal(r.status, 401, 'the share does not take the code in a header');
    await r.text();
    const controlBytes = await control.stop();
    const found = leaks(controlBytes, share.code);
    t.diagnostic(`control capture (${controlBytes.length} bytes, bearer header ` +
      `${controlBytes.includes(Buffer.from('Bearer')) ? '' : 'not '}seen): the code found as ${found.join(', ')}`);
    assert.ok(found.includes('plain'), 'the search finds a code that was sent');
  }));

test('a relaying man in the middle is refused by the page and the native client; the relay itself works',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    assert.ok(existsSync(AIORTC_PYTHON), `aiortc's Python at ${AIORTC_PYTHON} (scripts/install-deps.sh test)`);
    const { share, browser } = await setup(s, { shareArgs: ['--allow-control', '--allow-whep-token'] });
    const relay = await startRelay(s, share);
    t.diagnostic(`relay ${relay.origin} in front of ${share.origin}`);

    // The browser opens the relay's address: the share's own page, served through it.
    const page = s.add(await openPage(browser, withCode(`${relay.origin}/`, share.code)));
    const st = await waitForState(page, ['refused', 'dropped', 'unauthorized', 'connected'], 30000);
    t.diagnostic(`page through the relay: ${JSON.stringify(st)}`);
    assert.equal(st.state, 'refused', `the page refuses: ${JSON.stringify(st)}`);
    assert.match(st.lastError, NOT_THE_SHARE);
    const overlay = await page.evaluate(() => document.body.innerText);
    assert.match(overlay, NOT_THE_SHARE, 'the page shows the message');
    await sleep(1000);
    const after = await viewerStatus(page);
    assert.equal(after.videoWidth, 0, 'nothing was shown');
    assert.notEqual(after.pcState, 'connected', 'no connection to the relay');

    // The native client, through the same relay.
    const rec = s.add(startRecord(withCode(`${relay.origin}/`, share.code), path.join(os.tmpdir(), `mitm-${process.pid}.mkv`), ['--duration', '3']));
    const exit = await rec.exited;
    t.diagnostic(`porthole record through the relay: exit ${JSON.stringify(exit)}; ${rec.stderrText().trim().split('\n').pop()}`);
    assert.notEqual(exit.code, 0, 'the recorder fails');
    assert.match(rec.stderrText(), NOT_THE_SHARE);

    const events = relay.events();
    const refused = events.filter((e) => e.what === 'share-answered');
    t.diagnostic(`relay events: ${JSON.stringify(events.map((e) => e.what))}; share answers: ` +
      `${JSON.stringify(refused.map((e) => e.status))}`);
    assert.ok(events.some((e) => e.what === 'pairing-relayed'), 'the pairing went through the relay');
    assert.ok(refused.length >= 2 && refused.every((e) => e.status === 403 && NOT_THE_SHARE.test(e.text)),
      'the share refused every offer the relay made with a viewer\'s headers');
    const stats = await share.stats();
    t.diagnostic(`share stats: viewers ${stats.viewers}, peer connections ${stats.peer_connections_created}, ` +
      `MACs refused ${stats.mac_refused}, input forwarded ${stats.input_forwarded}`);
    assert.equal(stats.viewers, 0, 'the host lists no viewer');
    assert.equal(stats.peer_connections_created, 0, 'no peer connection was made for the relay');
    assert.ok(stats.mac_refused >= 2);
    assert.equal(stats.input_forwarded, 0, 'nothing was typed');

    // Control: a bearer-token player through the same relay gets the share's video.
    const play = startProcess('mitm-play', AIORTC_PYTHON, [path.join(here, 'aiortc_peer.py'), 'play',
      '--url', `${relay.origin}/whep`, '--bearer', share.code, '--seconds', '4']);
    s.add(play);
    const out = JSON.parse((await play.waitLine(/^\{.*$/, 40000, 'the player\'s summary'))[0]);
    t.diagnostic(`bearer player through the relay: ${JSON.stringify(out)}`);
    assert.equal(out.status, 201);
    assert.ok(out.frames >= 10, `the relay carries the share's video: ${out.frames} frames`);
    const listed = await share.stats();
    assert.equal(listed.viewers, 1, 'the host sees the relay as its (unauthenticated) viewer');
    assert.match(share.stderrText(), /viewer admitted \(unauthenticated/);
  }));

test('a relay that passes the offer on but answers with its own certificate is refused by the page',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    assert.ok(existsSync(AIORTC_PYTHON), `aiortc's Python at ${AIORTC_PYTHON}`);
    const { share, browser } = await setup(s);
    const proc = s.add(startProcess('mitm', AIORTC_PYTHON, [path.join(here, 'aiortc_peer.py'), 'relay',
      '--share', share.origin, '--offer', 'viewer']));
    const origin = (await proc.waitLine(/^mitm: (http:\/\/\S+)$/, 20000, 'the relay listening'))[1];
    const page = s.add(await openPage(browser, withCode(`${origin}/`, share.code)));
    const st = await waitForState(page, ['refused', 'dropped', 'unauthorized', 'connected'], 30000);
    t.diagnostic(`page: ${JSON.stringify(st)}`);
    assert.equal(st.state, 'refused');
    assert.match(st.lastError, NOT_THE_SHARE);
    // The share answered the viewer's own offer (its MAC verified); the page refused the
    // relay's answer, so that session never connects and gives its slot back.
    const events = proc.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    assert.ok(events.some((e) => e.what === 'share-answered' && e.status === 201), JSON.stringify(events));
    const gone = await pollUntil(() => share.stats(), (x) => x.viewers === 0,
      { timeoutMs: 8000, what: 'the never-connected session dropped' });
    assert.equal(gone.viewers_connected, 0);
    assert.equal((await viewerStatus(page)).videoWidth, 0, 'nothing was shown');
  }));
