// Security of input and admission, end to end (issue 13, findings 1, 2 and the PNG bomb of
// 5): a real browser viewer floods the share with input while a program on the shared Xvfb
// (xev) receives what is typed; nothing queued is typed more than 1 s after a DELETE, a
// revoke or a SIGTERM, and SIGTERM exits within 2 s; releases are rate-limited (but a
// release of a key the viewer holds still gets through); `porthole share` without a
// terminal refuses viewers unless --no-approval, asks on a terminal (a pty from `script`),
// and its `kick N` disconnects a viewer; a PNG bomb on the clipboard channel leaves the
// share's peak memory under 150 MB. Loopback only.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  PORTHOLE_BIN, withScope, startXvfb, startPattern, startShare, launchBrowser, openViewer, openPage,
  viewerStatus, pollUntil, waitForRights, movePointer, runToolOk, xEnv, sendRaw, postWhep,
  makeOffer, startXev, readClipboard, encodePng, makeTestImage, randomCode, withCode, signedFetch,
  startShareOnTerminal,
} from './lib.mjs';

const SCREEN = { width: 1280, height: 720 };
const VIEWPORT = { width: 1280, height: 720 };
const KEYLOG_GEOMETRY = '600x400+100+100';
const TEST_TIMEOUT = 120_000;
/** What a flood sends: this many Text messages of 1,024 characters (the protocol's most). */
const FLOOD_TEXTS = 60;

// ---------------------------------------------------------------------------------------
// A light receiver of typed keys: xev, of which only KeyPress times and keysyms are kept
// (a flood types tens of thousands of keys; lib's startXev keeps every line of each).

async function startKeyLog(display) {
  const child = spawn('stdbuf', ['-oL', 'xev', '-name', 'porthole-keylog', '-geometry', KEYLOG_GEOMETRY,
    '-event', 'keyboard', '-event', 'structure'], { env: xEnv(display), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const presses = []; // {time (X server ms), name (keysym)}
  let mapped = false;
  let current = null;
  let pending = '';
  let exited = false;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop();
    for (const line of lines) {
      if (/^\w+ event,/.test(line)) {
        current = line.startsWith('KeyPress event') ? {} : null;
        if (line.startsWith('MapNotify event')) mapped = true;
        continue;
      }
      if (!current) continue;
      const t = /\btime (\d+)/.exec(line);
      if (t) current.time = Number(t[1]);
      const k = /keysym 0x[0-9a-f]+, ([^)]*)\)/.exec(line);
      if (k) {
        current.name = k[1];
        presses.push(current);
        current = null;
      }
    }
  });
  child.on('exit', () => { exited = true; });
  const stop = async () => {
    if (!exited) {
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  };
  await pollUntil(() => mapped || exited, (v) => v, { timeoutMs: 10000, what: 'the xev window mapped' });
  if (exited) throw new Error('xev exited before mapping its window');
  return { presses, stop, label: 'xev key log' };
}

/** Presses F12 on the host with xdotool: its X time marks "now" among the typed keys. */
async function markNow(log, display) {
  const from = log.presses.length;
  await runToolOk('xdotool', ['key', 'F12'], { display });
  const mark = await pollUntil(() => log.presses.slice(from).find((p) => p.name === 'F12'), Boolean,
    { timeoutMs: 10000, what: 'the F12 marker in xev' });
  return mark.time;
}

/** Waits until no key arrived for `quietMs` (at most `maxMs`); what was typed after `mark`. */
async function typedAfter(log, mark, { quietMs = 2000, maxMs = 40000 } = {}) {
  const end = Date.now() + maxMs;
  let n = -1;
  let since = Date.now();
  while (Date.now() < end) {
    if (log.presses.length !== n) { n = log.presses.length; since = Date.now(); }
    if (Date.now() - since >= quietMs) break;
    await sleep(100);
  }
  const after = log.presses.filter((p) => p.name !== 'F12' && p.time > mark);
  const lastMs = after.length ? after[after.length - 1].time - mark : 0;
  return { keys: after.length, lastMs };
}

/** Xvfb + pattern + key log (with the pointer, so the keyboard focus, in it) + share + browser. */
async function setup(s, { shareArgs = ['--allow-control'], shareOpts = {} } = {}) {
  const x = s.add(await startXvfb(SCREEN));
  s.add(await startPattern(x.display));
  const log = s.add(await startKeyLog(x.display));
  await movePointer(x.display, 300, 300);
  const share = s.add(await startShare({ display: x.display, args: shareArgs, ...shareOpts }));
  const browser = s.add(await launchBrowser({ viewport: VIEWPORT }));
  return { x, log, share, browser };
}

/** Sends FLOOD_TEXTS Text messages of 1,024 'a's on the input channel; returns how many went. */
async function floodText(page) {
  return page.evaluate((n) => {
    const text = 'a'.repeat(1024);
    let sent = 0;
    for (let i = 0; i < n; i++) sent += window.porthole.sendMessage('input', { type: 'Text', text }) ? 1 : 0;
    return sent;
  }, FLOOD_TEXTS);
}

/** Keeps a flood of Text and key presses going from the page (every 20 ms) until stopped. */
async function startContinuousFlood(page) {
  await page.evaluate(() => {
    const text = 'a'.repeat(1024);
    window.__flood = setInterval(() => {
      for (let i = 0; i < 10; i++) window.porthole.sendMessage('input', { type: 'Text', text });
      for (let i = 0; i < 20; i++) {
        window.porthole.sendMessage('input', { type: 'Key', pressed: true, code: 'KeyB' });
        window.porthole.sendMessage('input', { type: 'Key', pressed: false, code: 'KeyB' });
      }
    }, 20);
  });
}

async function waitForTyping(log, what) {
  await pollUntil(() => log.presses.filter((p) => p.name === 'a' || p.name === 'b').length, (n) => n > 0,
    { timeoutMs: 10000, what: `typing to start (${what})` });
}

// ---------------------------------------------------------------------------------------

test('queued input is not typed after DELETE /whep/ID', { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
  const { x, log, share, browser } = await setup(s);
  const page = s.add(await openViewer(browser, share.viewerUrl()));
  await waitForRights(page, { control: true });
  const session = await page.evaluate(() => window.porthole.sessionUrl);
  assert.ok(session, 'the page knows its WHEP session URL');

  assert.equal(await floodText(page), FLOOD_TEXTS, 'the flood was sent');
  await waitForTyping(log, 'the flood');
  // As the page's own DELETE would: signed by the session's pairing.
  const status = await page.evaluate(() => window.porthole.endAtHost());
  assert.equal(status, 200, 'DELETE answered 200');
  const mark = await markNow(log, x.display);
  const after = await typedAfter(log, mark);
  const st = await share.stats();
  t.diagnostic(`typed after DELETE: ${after.keys} keys over ${after.lastMs} ms; ` +
    `typed in all: ${log.presses.length - 1}; stats: ${JSON.stringify(st)}`);
  assert.ok(after.lastMs <= 1000, `typing went on ${after.lastMs} ms after DELETE answered (${after.keys} keys)`);
}));

test('queued input is not typed after `revoke N control` on the share\'s stdin', { timeout: TEST_TIMEOUT },
  (t) => withScope(t, async (s) => {
    const { x, log, share, browser } = await setup(s, { shareOpts: { stdin: 'pipe' } });
    const page = s.add(await openViewer(browser, share.viewerUrl()));
    await waitForRights(page, { control: true });

    assert.equal(await floodText(page), FLOOD_TEXTS, 'the flood was sent');
    await waitForTyping(log, 'the flood');
    share.stdin.write('revoke 1 control\n');
    const mark = await markNow(log, x.display);
    const rights = await waitForRights(page, { control: false });
    const after = await typedAfter(log, mark);
    t.diagnostic(`typed after the revoke: ${after.keys} keys over ${after.lastMs} ms; rights now ${JSON.stringify(rights)}`);
    assert.ok(after.lastMs <= 1000, `typing went on ${after.lastMs} ms after the revoke (${after.keys} keys)`);
    // And what the viewer sends now is refused, not typed.
    const before = log.presses.length;
    await sendRaw(page, 'input', { type: 'Text', text: 'zzz' });
    await sleep(700);
    assert.deepEqual(log.presses.slice(before).map((p) => p.name), [], 'nothing typed without control');
  }));

test('SIGTERM under an input flood exits within 2 s and types nothing queued after', { timeout: TEST_TIMEOUT },
  (t) => withScope(t, async (s) => {
    const { x, log, share, browser } = await setup(s);
    const page = s.add(await openViewer(browser, share.viewerUrl()));
    await waitForRights(page, { control: true });
    await startContinuousFlood(page);
    await waitForTyping(log, 'the continuous flood');
    await sleep(1500); // a backlog builds up, if the queue lets it
    const st = await share.stats();
    const t0 = Date.now();
    const stopping = share.stop({ signal: 'SIGTERM', graceMs: 30000 });
    const mark = await markNow(log, x.display);
    const r = await stopping;
    const ms = Date.now() - t0;
    const after = await typedAfter(log, mark);
    t.diagnostic(`exit ${ms} ms after SIGTERM (${JSON.stringify(r)}); typed after it: ${after.keys} keys ` +
      `over ${after.lastMs} ms; stats before: ${JSON.stringify(st)}`);
    assert.equal(r.killed, false, 'exited by itself');
    assert.ok(ms <= 2000, `the share took ${ms} ms to exit after SIGTERM`);
    assert.ok(after.lastMs <= 1000, `typing went on ${after.lastMs} ms after SIGTERM (${after.keys} keys)`);
  }));

test('releases are rate-limited, yet a held key is always released', { timeout: TEST_TIMEOUT },
  (t) => withScope(t, async (s) => {
    const x = s.add(await startXvfb(SCREEN));
    s.add(await startPattern(x.display));
    await movePointer(x.display, 300, 300);
    const xev = s.add(await startXev(x.display, { geometry: KEYLOG_GEOMETRY }));
    const share = s.add(await startShare({ display: x.display, args: ['--allow-control'] }));
    const browser = s.add(await launchBrowser({ viewport: VIEWPORT }));
    const page = s.add(await openViewer(browser, share.viewerUrl()));
    await waitForRights(page, { control: true });
    const st0 = await share.stats();
    const mark = xev.mark();
    const N = 10000;
    const took = await page.evaluate((n) => {
      const p = window.porthole;
      const t0 = performance.now();
      p.sendMessage('input', { type: 'Key', pressed: true, code: 'ShiftLeft' });
      for (let i = 0; i < n; i++) {
        if (i % 2) p.sendMessage('input', { type: 'Key', pressed: false, code: 'KeyQ' });
        // (inside the xev window, which has the keyboard focus while the pointer is in it)
        else p.sendMessage('input', { type: 'PointerButton', button: 2, pressed: false, x: 10000 + ((i * 7) % 10000), y: 20000 });
      }
      p.sendMessage('input', { type: 'Key', pressed: false, code: 'ShiftLeft' });
      return performance.now() - t0;
    }, N);
    await xev.waitFor((e) => e.type === 'KeyRelease' && e.keysymName === 'Shift_L', 10000,
      'the release of the held Shift (no ReleaseAll sent)', mark);
    const st1 = await pollUntil(share.stats,
      (st) => (st.input_forwarded - st0.input_forwarded) + (st.rate_limited - st0.rate_limited) >= N + 2,
      { timeoutMs: 15000, what: 'every release counted as forwarded or rate-limited' });
    const forwarded = st1.input_forwarded - st0.input_forwarded;
    const limited = st1.rate_limited - st0.rate_limited;
    t.diagnostic(`${N} releases of keys and buttons not held, sent in ${took.toFixed(0)} ms: ` +
      `${forwarded} forwarded, ${limited} rate-limited`);
    // INPUT_RATE: a burst of 600, then 300 a second (and the arrival spreads over a few s).
    assert.ok(forwarded <= 600 + 300 * 5, `${forwarded} releases forwarded`);
    assert.ok(limited >= N - 2100, `${limited} releases rate-limited`);
  }));

// ---------------------------------------------------------------------------------------
// Approval on the CLI

test('without a terminal and without --no-approval, viewers are refused with a reason',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const x = s.add(await startXvfb(SCREEN));
    s.add(await startPattern(x.display));
    const share = s.add(await startShare({ display: x.display, approval: true }));
    const browser = s.add(await launchBrowser({ viewport: VIEWPORT }));
    const page = s.add(await openPage(browser, `${share.origin}/`)); // no code: it just makes an offer
    const offer = await makeOffer(page);
    const r = await postWhep(share.origin, { code: share.code, body: offer });
    t.diagnostic(`POST /whep: ${r.status} ${r.text}`);
    assert.equal(r.status, 403, `a viewer nobody can approve is refused: ${r.status} ${r.text}`);
    await pollUntil(() => share.stderrText(), (e) => /--no-approval/.test(e) && /refused a viewer/.test(e),
      { timeoutMs: 3000, what: 'a log line naming --no-approval' });
    const st = await share.stats();
    assert.equal(st.peer_connections_created, 0, 'no peer connection was made');
  }));

test('on a terminal the share asks for each viewer, lists them and kicks one', { timeout: TEST_TIMEOUT },
  (t) => withScope(t, async (s) => {
    const x = s.add(await startXvfb(SCREEN));
    s.add(await startPattern(x.display));
    const code = randomCode();
    const term = s.add(await startShareOnTerminal({ display: x.display, code, args: ['--allow-control'] }));
    const url = (await term.waitFor(/viewer: (http:\/\/\S+)/))[1];
    const browser = s.add(await launchBrowser({ viewport: VIEWPORT }));

    // The first viewer waits for a yes, and its page says so.
    let from = term.output().length;
    const page = s.add(await openPage(browser, withCode(url, code)));
    const ask = await term.waitFor(/Viewer (\d+) from 127\.0\.0\.1 \(a browser\) wants to watch, with view and control\. Let in\? \[y\/N\]/, from);
    const first = Number(ask[1]);
    await sleep(1000);
    const waiting = await signedFetch(new URL('/api/stats', url), code).then((r) => r.json());
    assert.equal(waiting.viewers, 0, 'not admitted before the answer');
    const told = await pollUntil(() => page.evaluate(() => document.getElementById('status')?.textContent ?? ''),
      (text) => /Waiting for the host/.test(text), { timeoutMs: 3000, what: 'the page saying it waits for the host' });
    t.diagnostic(`while the host decides, the page says: ${told}`);
    term.write('y\n');
    await pollUntil(() => viewerStatus(page), (v) => v.state === 'connected' && v.videoWidth > 0,
      { timeoutMs: 30000, what: 'the first viewer connected with video once let in' });
    await waitForRights(page, { control: true });

    // `list` shows it with its rights.
    from = term.output().length;
    term.write('list\n');
    await term.waitFor(new RegExp(`Viewer ${first}  127\\.0\\.0\\.1:\\d+  connected \\d+ s  view and control`), from);

    // A second viewer is turned away with Enter (the default is no).
    from = term.output().length;
    const page2 = s.add(await openPage(browser, withCode(url, code)));
    const ask2 = await term.waitFor(/Viewer (\d+) from 127\.0\.0\.1 \(a browser\) wants to watch/, from);
    term.write('\n');
    await term.waitFor(new RegExp(`Viewer ${ask2[1]} turned away`), from);
    await pollUntil(() => viewerStatus(page2), (v) => v.state !== 'connecting' && v.state !== 'connected',
      { timeoutMs: 10000, what: 'the second viewer refused' });

    // `kick N` disconnects the first one.
    from = term.output().length;
    term.write(`kick ${first}\n`);
    await term.waitFor(new RegExp(`Viewer ${first} disconnected`), from);
    const st = await pollUntil(() => viewerStatus(page), (v) => v.state !== 'connected',
      { timeoutMs: 10000, what: 'the kicked viewer no longer connected' });
    t.diagnostic(`kicked viewer's page: ${JSON.stringify(st)}`);
    // It may knock again (the page reconnects), but it is asked about, not let in.
    const again = await term.waitFor(/Viewer (\d+) from 127\.0\.0\.1 \(a browser\) wants to watch/, from, 15000)
      .catch(() => null);
    if (again) term.write('n\n');
    const stats = await signedFetch(new URL('/api/stats', url), code).then((r) => r.json());
    assert.equal(stats.viewers, 0, `no viewer left: ${JSON.stringify(stats)}`);
  }));

// ---------------------------------------------------------------------------------------
// PNG bomb on the clipboard channel

/** A greyscale PNG of w×h zero pixels: ~60 KB that would decode to w×h×4 bytes of RGBA. */
function pngBomb(w, h) {
  const table = new Int32Array(256).map((_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c;
  });
  const crc = (buf) => {
    let c = -1;
    for (const b of buf) c = table[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ -1) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  const raw = Buffer.alloc((w + 1) * h); // filter byte 0 and zero pixels on every row
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0))]);
}

function peakMemoryMB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]);
  return kb / 1024;
}

test('a PNG bomb on the clipboard channel is refused before decoding', { timeout: TEST_TIMEOUT },
  (t) => withScope(t, async (s) => {
    const x = s.add(await startXvfb(SCREEN));
    s.add(await startPattern(x.display));
    const share = s.add(await startShare({ display: x.display, args: ['--allow-clipboard'] }));
    const browser = s.add(await launchBrowser({ viewport: VIEWPORT }));
    const page = s.add(await openViewer(browser, share.viewerUrl()));
    await waitForRights(page, { clipboard: true });
    await sleep(1000);
    const before = peakMemoryMB(share.pid);
    const st0 = await share.stats();

    const bomb = pngBomb(8000, 8000); // 244 MiB of RGBA once decoded
    assert.ok(bomb.length < 300_000, `the bomb is small: ${bomb.length} bytes`);
    const sent = await page.evaluate((b) => window.porthole.pasteBytes('image/png', new Uint8Array(b)), Array.from(bomb));
    assert.equal(sent, true, 'the page sent the PNG');
    await pollUntil(share.stats, (st) => st.clipboard_received > st0.clipboard_received,
      { timeoutMs: 10000, what: 'the share received the transfer' });
    await sleep(3000); // whatever decoding it would do
    const after = peakMemoryMB(share.pid);
    t.diagnostic(`bomb ${bomb.length} bytes; share peak memory (VmHWM) ${before.toFixed(0)} MB before, ` +
      `${after.toFixed(0)} MB after`);
    assert.ok(after < 150, `peak memory after the bomb: ${after.toFixed(0)} MB`);
    assert.match(share.stderrText(), /clipboard image refused: image too large: 8000x8000/,
      'the refusal is logged with the size');

    // A real picture still goes through.
    const img = makeTestImage(32, 16, 3);
    const png = encodePng(img.width, img.height, img.rgba);
    assert.equal(await page.evaluate((b) => window.porthole.pasteBytes('image/png', new Uint8Array(b)), Array.from(png)), true);
    await pollUntil(() => readClipboard(x.display, { target: 'image/png' }), (b) => b && b.length > 0,
      { timeoutMs: 5000, what: 'a small image on the host clipboard' });
  }));
