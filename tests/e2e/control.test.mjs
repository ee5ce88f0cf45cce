// Remote control and clipboard, end to end: a viewer in headless Chromium drives the
// pointer and keyboard of a shared Xvfb screen (checked with xev and xdotool), and the
// clipboard travels both ways (checked with xclip). Also: a view-only viewer injects
// nothing, an over-cap paste is refused by the page and by the host, and the browser's
// protocol module passes the shared protocol vectors.
// Each test has its own Xvfb (1920x1080), test pattern, share and browser. Loopback only.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  REPO, withScope, startXvfb, startPattern, startShare, launchBrowser, openViewer, openPage,
  viewerStatus, countFrames, pollUntil, startXev, typedText, XMASK, typeLikeAUser, typeWithoutShift,
  pointerLocation, movePointer, readClipboard, clipboardTargets, ownClipboard, waitForRights,
  videoPoint, pageClipboard, pageNotices, waitForNotice, sendRaw, dispatchPaste,
  encodePng, decodePng, makeTestImage, imageDiff, stopCleanly,
} from './lib.mjs';

const SCREEN = { width: 1920, height: 1080 };
// Not the screen's shape: the 16:9 video is letterboxed (bands above and below).
const VIEWPORT = { width: 1280, height: 900 };
const XEV_GEOMETRY = '800x600+100+100'; // covers root x 100..~904, y 100..~704
const TEST_TIMEOUT = 90_000;
const PX_TOLERANCE = 2;

/** Xvfb + test pattern + share + browser (+ xev), all registered in the scope for cleanup. */
async function setup(s, { shareArgs = [], xev = true, stdin = 'ignore' } = {}) {
  const x = s.add(await startXvfb(SCREEN));
  const pattern = s.add(await startPattern(x.display));
  assert.deepEqual({ width: pattern.width, height: pattern.height }, SCREEN,
    'test-pattern reports the Xvfb screen size');
  const events = xev ? s.add(await startXev(x.display, { geometry: XEV_GEOMETRY })) : null;
  const share = s.add(await startShare({ display: x.display, args: shareArgs, stdin }));
  const browser = s.add(await launchBrowser({ viewport: VIEWPORT }));
  return { x, pattern, xev: events, share, browser };
}

/** Opens the viewer and waits for full-size video. */
async function openFullViewer(s, browser, share) {
  const page = s.add(await openViewer(browser, share.viewerUrl()));
  await pollUntil(() => viewerStatus(page),
    (v) => v.videoWidth === SCREEN.width && v.videoHeight === SCREEN.height,
    { timeoutMs: 5000, what: `video size ${SCREEN.width}x${SCREEN.height}` });
  return page;
}

/** The stats counter `key`, asserting that the share reports it as a number. */
function counter(st, key) {
  assert.equal(typeof st[key], 'number', `/api/stats has a numeric "${key}": ${JSON.stringify(st)}`);
  return st[key];
}

const near = (a, b) => Math.abs(a - b) <= PX_TOLERANCE;

/** Asserts the viewer is still connected and showing new frames. */
async function assertStillStreaming(page, what) {
  const st = await viewerStatus(page);
  assert.equal(st.state, 'connected', `${what}: viewer still connected: ${JSON.stringify(st)}`);
  const n = await countFrames(page, 1000);
  assert.ok(n >= 5, `${what}: viewer still gets frames: ${n} in 1 s`);
}

/** The text of an element (or null when missing). */
async function textOf(page, selector) {
  return page.evaluate((sel) => document.querySelector(sel)?.textContent ?? null, selector);
}

// ---------------------------------------------------------------------------------------

test('a click on the video moves the host pointer and clicks there', { timeout: TEST_TIMEOUT },
  (t) => withScope(t, async (s) => {
    const { x, xev, share, browser } = await setup(s, { shareArgs: ['--allow-control'] });
    const page = await openFullViewer(s, browser, share);

    const rights = await waitForRights(page, { control: true });
    assert.equal(rights.view, true, `rights: ${JSON.stringify(rights)}`);
    assert.equal(rights.clipboard, false, `no clipboard right without --allow-clipboard: ${JSON.stringify(rights)}`);
    const label = await textOf(page, '#rights');
    assert.match(label ?? '', /control/i, `#rights says the viewer has control, got ${JSON.stringify(label)}`);
    const ch = await page.evaluate(() => {
      const c = window.porthole.channels || {};
      const d = (ch) => (ch instanceof RTCDataChannel
        ? { label: ch.label, ordered: ch.ordered, maxRetransmits: ch.maxRetransmits, readyState: ch.readyState }
        : ch ?? null);
      return { pointer: d(c.pointer), input: d(c.input), clipboard: d(c.clipboard) };
    });
    t.diagnostic(`channels: ${JSON.stringify(ch)}`);
    // The page exposes its RTCDataChannels: an absent or non-channel value fails here.
    assert.equal(ch.pointer?.label, 'pointer', 'window.porthole.channels.pointer is the pointer RTCDataChannel');
    assert.equal(ch.input?.label, 'input', 'window.porthole.channels.input is the input RTCDataChannel');
    assert.deepEqual({ ordered: ch.pointer.ordered, maxRetransmits: ch.pointer.maxRetransmits },
      { ordered: false, maxRetransmits: 0 }, 'the pointer channel is unordered with no retransmits');
    assert.equal(ch.input.ordered, true, 'the input channel is ordered');
    assert.equal(ch.input.maxRetransmits, null, 'the input channel is reliable');

    const before = await share.stats();
    assert.equal(counter(before, 'input_injected'), 0, 'nothing injected before any input');

    // Left click at host pixel (700, 400).
    const target = { x: 700, y: 400 };
    const p = await videoPoint(page, target.x, target.y);
    t.diagnostic(`host (${target.x},${target.y}) is page (${p.x.toFixed(1)},${p.y.toFixed(1)}); ` +
      `video content box ${JSON.stringify(p.box)}`);
    assert.ok(p.box.top >= 50, `the video is letterboxed in a ${VIEWPORT.width}x${VIEWPORT.height} ` +
      `viewport (content box ${JSON.stringify(p.box)})`);
    let mark = xev.mark();
    await page.mouse.click(p.x, p.y);

    const loc = await pollUntil(() => pointerLocation(x.display),
      (l) => near(l.x, target.x) && near(l.y, target.y),
      { timeoutMs: 5000, what: `host pointer at (${target.x},${target.y}) ±${PX_TOLERANCE}` });
    t.diagnostic(`host pointer after the click: ${JSON.stringify(loc)}`);
    const press = await xev.waitFor((e) => e.type === 'ButtonPress', 5000, 'a ButtonPress', mark);
    assert.equal(press.button, 1, `a left click is button 1:\n${press.raw}`);
    assert.ok(near(press.rootX, target.x) && near(press.rootY, target.y),
      `ButtonPress at root (${press.rootX},${press.rootY}), want (${target.x},${target.y}) ±${PX_TOLERANCE}`);
    const release = await xev.waitFor((e) => e.type === 'ButtonRelease', 5000, 'a ButtonRelease', mark);
    assert.equal(release.button, 1, `the left button is released again:\n${release.raw}`);
    assert.equal(xev.since(mark).filter((e) => e.type === 'ButtonPress').length, 1, 'exactly one press for one click');

    // Right click elsewhere: button 3, at its own position (the press carries its position).
    const target2 = { x: 300, y: 650 };
    const p2 = await videoPoint(page, target2.x, target2.y);
    mark = xev.mark();
    await page.mouse.click(p2.x, p2.y, { button: 'right' });
    const press3 = await xev.waitFor((e) => e.type === 'ButtonPress', 5000, 'a ButtonPress (right click)', mark);
    assert.equal(press3.button, 3, `a right click is button 3:\n${press3.raw}`);
    assert.ok(near(press3.rootX, target2.x) && near(press3.rootY, target2.y),
      `right ButtonPress at root (${press3.rootX},${press3.rootY}), want (${target2.x},${target2.y}) ±${PX_TOLERANCE}`);
    await xev.waitFor((e) => e.type === 'ButtonRelease' && e.button === 3, 5000, 'release of button 3', mark);
    const st1 = await share.stats();
    assert.equal(st1.input_injected > before.input_injected, true,
      `input_injected grows: ${before.input_injected} then ${st1.input_injected}`);

    // The wheel: down is button 5, up is button 4.
    const p3 = await videoPoint(page, 500, 300);
    await page.mouse.move(p3.x, p3.y);
    await pollUntil(() => pointerLocation(x.display), (l) => near(l.x, 500) && near(l.y, 300),
      { timeoutMs: 5000, what: 'host pointer at (500,300) after a move (no button)' });
    mark = xev.mark();
    await page.mouse.wheel(0, 240);
    const down = await xev.waitFor((e) => e.type === 'ButtonPress', 5000, 'a wheel ButtonPress (down)', mark);
    assert.equal(down.button, 5, `wheel down is button 5:\n${down.raw}`);
    await sleep(300);
    const downPresses = xev.since(mark).filter((e) => e.type === 'ButtonPress').map((e) => e.button);
    assert.ok(downPresses.every((b) => b === 5), `scrolling down gives only button 5 presses: ${downPresses}`);
    mark = xev.mark();
    await page.mouse.wheel(0, -240);
    const up = await xev.waitFor((e) => e.type === 'ButtonPress', 5000, 'a wheel ButtonPress (up)', mark);
    assert.equal(up.button, 4, `wheel up is button 4:\n${up.raw}`);
    await sleep(300);
    const upPresses = xev.since(mark).filter((e) => e.type === 'ButtonPress').map((e) => e.button);
    assert.ok(upPresses.every((b) => b === 4), `scrolling up gives only button 4 presses: ${upPresses}`);
    assert.ok(near(up.rootX, 500) && near(up.rootY, 300), `wheel at the pointer: root (${up.rootX},${up.rootY})`);

    const st = await share.stats();
    assert.equal(counter(st, 'input_refused'), 0, `nothing refused for a viewer with control: ${JSON.stringify(st)}`);
    assert.equal(counter(st, 'malformed_messages'), 0, `no malformed messages from the page: ${JSON.stringify(st)}`);
    t.diagnostic(`stats: ${JSON.stringify(st)}`);
    // The host reports its pointer back (CursorPosition, normalised like PointerMove).
    const toPx = (v, size) => Math.round((v * (size - 1)) / 65535);
    const cursor = await pollUntil(() => page.evaluate(() => window.porthole.cursor ?? null),
      (c) => c && c.visible === true && near(toPx(c.x, SCREEN.width), 500) && near(toPx(c.y, SCREEN.height), 300),
      { timeoutMs: 3000, what: 'porthole.cursor at host (500,300), visible (x, y normalised to 0..65535)' });
    t.diagnostic(`porthole.cursor: ${JSON.stringify(cursor)}`);

    await stopCleanly(browser, share);
  }));

test('typed text arrives exactly, with modifiers', { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
  const { x, xev, share, browser } = await setup(s, { shareArgs: ['--allow-control'] });
  const page = await openFullViewer(s, browser, share);
  await waitForRights(page, { control: true });

  // Without a window manager the keyboard focus follows the pointer: put it into xev's window.
  const inside = await videoPoint(page, 500, 400);
  let mark = xev.mark();
  await page.mouse.click(inside.x, inside.y);
  await xev.waitFor((e) => e.type === 'ButtonRelease', 5000, 'the click into the xev window', mark);
  const loc = await pointerLocation(x.display);
  assert.ok(near(loc.x, 500) && near(loc.y, 400), `pointer in the xev window: ${JSON.stringify(loc)}`);

  const text = 'Hello, Wörld! 123';
  mark = xev.mark();
  await typeLikeAUser(page, text);
  await page.keyboard.press('Enter');
  await xev.waitFor((e) => e.type === 'KeyPress' && e.keysymName === 'Return', 10000, 'the KeyPress of Return', mark);
  await sleep(300); // the last releases
  const evs = xev.since(mark);
  const got = typedText(evs);
  assert.equal(got, `${text}\r`, 'the host typed exactly the text (reconstructed from xev KeyPress events):\n' +
    evs.filter((e) => e.type === 'KeyPress').map((e) => `  ${e.keysymName} state 0x${e.state.toString(16)} ` +
      `-> ${JSON.stringify(e.text)}`).join('\n'));

  const presses = evs.filter((e) => e.type === 'KeyPress');
  const hIndex = presses.findIndex((e) => e.text === 'H');
  assert.ok(hIndex >= 0, 'a KeyPress typed "H"');
  const h = presses[hIndex];
  const shiftBefore = presses.slice(0, hIndex).some((e) => /^Shift_[LR]$/.test(e.keysymName));
  assert.ok((h.state & XMASK.Shift) !== 0 || shiftBefore,
    `capital H typed with Shift held (state 0x${h.state.toString(16)}, Shift press before: ${shiftBefore})`);
  const o = presses.find((e) => e.text === 'ö');
  t.diagnostic(`ö typed as keycode ${o?.keycode} keysym ${o?.keysymName} state 0x${o?.state?.toString(16)}`);

  // No key stays down: every pressed keycode was released as often as it was pressed.
  const balance = new Map();
  for (const e of evs) {
    if (e.type === 'KeyPress') balance.set(e.keycode, (balance.get(e.keycode) || 0) + 1);
    if (e.type === 'KeyRelease') balance.set(e.keycode, (balance.get(e.keycode) || 0) - 1);
  }
  const stuck = [...balance].filter(([, n]) => n !== 0);
  assert.deepEqual(stuck, [], `keys pressed and released in pairs (keycode, presses - releases): ${JSON.stringify(stuck)}`);

  // The same text from keys that carry the character but no Shift (an on-screen keyboard,
  // an IME, another layout): "H" on KeyH, "!" on Digit1, "ö" on no key. It arrived as
  // "hello, wrld1 123" before the page typed such characters as text.
  mark = xev.mark();
  await typeWithoutShift(page, text);
  await page.keyboard.press('Enter');
  await xev.waitFor((e) => e.type === 'KeyPress' && e.keysymName === 'Return', 10000, 'the KeyPress of Return', mark);
  await sleep(300);
  const evs2 = xev.since(mark);
  assert.equal(typedText(evs2), `${text}\r`, 'the host typed exactly the text sent without Shift:\n' +
    evs2.filter((e) => e.type === 'KeyPress').map((e) => `  ${e.keysymName} state 0x${e.state.toString(16)} ` +
      `-> ${JSON.stringify(e.text)}`).join('\n'));

  // A press decided as text (or as a key) stays so through its repeats and its release, even
  // when the character changes under it (Shift let go while the key is held): no key is
  // left down on the host.
  mark = xev.mark();
  const cdp = await page.context().newCDPSession(page);
  const key = (type, code, ch, autoRepeat = false) => cdp.send('Input.dispatchKeyEvent',
    { type, code, key: ch, autoRepeat, ...(type === 'keyDown' ? { text: ch, unmodifiedText: ch } : {}) });
  await key('keyDown', 'Digit2', '"');
  await key('keyDown', 'Digit2', '2', true);
  await key('keyUp', 'Digit2', '2');
  await key('keyDown', 'Digit3', '3');
  await key('keyDown', 'Digit3', '#', true);
  await key('keyUp', 'Digit3', '#');
  await cdp.detach().catch(() => {});
  await page.keyboard.press('Enter');
  await xev.waitFor((e) => e.type === 'KeyPress' && e.keysymName === 'Return', 10000, 'the KeyPress of Return', mark);
  await sleep(300);
  const evs3 = xev.since(mark);
  // (The host takes a repeated press of a key it holds as held: one '3', or two.)
  assert.match(typedText(evs3), /^"233?\r$/, 'text stays text, a key stays a key, through repeats');
  const held = new Map();
  for (const e of evs3) {
    if (e.type === 'KeyPress') held.set(e.keycode, (held.get(e.keycode) || 0) + 1);
    if (e.type === 'KeyRelease') held.set(e.keycode, (held.get(e.keycode) || 0) - 1);
  }
  // (X autorepeat gives a held key's repeats as press/release pairs; our repeat is a press.)
  const stillDown = [...held].filter(([, n]) => n > 1 || n < 0);
  assert.deepEqual(stillDown, [], `no key left down: ${JSON.stringify([...held])}`);

  // Control+a: the 'a' press carries the Control mask.
  mark = xev.mark();
  await page.keyboard.press('Control+a');
  const a = await xev.waitFor((e) => e.type === 'KeyPress' && e.keysymName === 'a', 5000, 'the KeyPress of a', mark);
  assert.ok((a.state & XMASK.Control) !== 0, `Control held while 'a' is pressed: state 0x${a.state.toString(16)}\n${a.raw}`);
  await xev.waitFor((e) => e.type === 'KeyRelease' && /^Control_[LR]$/.test(e.keysymName), 5000, 'Control released', mark);

  const st = await share.stats();
  assert.ok(counter(st, 'input_injected') >= text.length, `input_injected counts the keys: ${JSON.stringify(st)}`);
  assert.equal(counter(st, 'input_refused'), 0, `nothing refused: ${JSON.stringify(st)}`);
  assert.equal(counter(st, 'malformed_messages'), 0, `no malformed messages: ${JSON.stringify(st)}`);

  await stopCleanly(browser, share);
}));

test('a view-only viewer asks for control; the host sees it, grants it, and the viewer controls',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const { xev, share, browser } = await setup(s, { stdin: 'pipe' });
    const page = await openFullViewer(s, browser, share);
    await waitForRights(page, { control: false });
    const button = '#btn-ask-control';
    assert.equal(await page.isVisible(button), true, 'a view-only viewer has "Ask for control"');

    await page.click(button);
    await pollUntil(() => share.stderrText(),
      (e) => /Viewer 1 asks for control: `grant 1 control` gives it/.test(e),
      { timeoutMs: 3000, what: 'the request on the host\'s terminal' });
    await pollUntil(() => textOf(page, '#toast'), (x) => /asked the host for control/i.test(x ?? ''),
      { timeoutMs: 3000, what: 'the page saying it asked' });
    const listed = await pollUntil(async () => {
      const from = share.stderrText().length;
      share.stdin.write('list\n');
      await sleep(200);
      return share.stderrText().slice(from);
    }, (out) => /Viewer 1 .*view only  asks for control/.test(out), { timeoutMs: 3000, what: '`list` showing the request' });
    t.diagnostic(`list: ${listed.trim()}`);
    // Asking again at once is refused by the share (one request per 5 s).
    const st0 = await share.stats();
    await page.evaluate(() => window.porthole.sendMessage('input', { type: 'RequestControl' }));
    await pollUntil(share.stats, (st) => st.rate_limited > st0.rate_limited,
      { timeoutMs: 3000, what: 'the second request refused as rate-limited' });

    share.stdin.write('grant 1 control\n');
    await waitForRights(page, { control: true });
    await pollUntil(() => textOf(page, '#toast'), (x) => /gave you control/i.test(x ?? ''),
      { timeoutMs: 3000, what: 'the page saying it has control' });
    assert.equal(await page.isVisible(button), false, 'no "Ask for control" once it has control');
    const target = { x: 700, y: 400 };
    const p = await videoPoint(page, target.x, target.y);
    const mark = xev.mark();
    await page.mouse.click(p.x, p.y);
    const press = await xev.waitFor((e) => e.type === 'ButtonPress' && e.button === 1, 5000,
      'the granted viewer\'s click on the host', mark);
    assert.ok(near(press.rootX, target.x) && near(press.rootY, target.y),
      `the click landed at host (${press.rootX}, ${press.rootY}), want (${target.x}, ${target.y})`);
  }));

test('the special-keys menu presses Ctrl+Alt+Del on the host and lets go in reverse',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const { x, xev, share, browser } = await setup(s, { shareArgs: ['--allow-control'] });
    const page = await openFullViewer(s, browser, share);
    await waitForRights(page, { control: true });
    assert.equal(await page.isVisible('#btn-keys'), true, 'a viewer with control has the Keys menu');
    // Keyboard focus follows the pointer (no window manager): into xev's window.
    const inside = await videoPoint(page, 500, 400);
    let mark = xev.mark();
    await page.mouse.click(inside.x, inside.y);
    await xev.waitFor((e) => e.type === 'ButtonRelease', 5000, 'the click into the xev window', mark);
    assert.ok(near((await pointerLocation(x.display)).x, 500));

    mark = xev.mark();
    await page.click('#btn-keys');
    await page.click('#keys-list [data-keys="ControlLeft AltLeft Delete"]');
    await xev.waitFor((e) => e.type === 'KeyRelease' && /^Control_[LR]$/.test(e.keysymName), 5000,
      'the release of Control, last', mark);
    const keys = xev.since(mark).filter((e) => /^Key(Press|Release)$/.test(e.type))
      .map((e) => `${e.type === 'KeyPress' ? '+' : '-'}${e.keysymName}`);
    t.diagnostic(`xev: ${keys.join(' ')}`);
    assert.deepEqual(keys, ['+Control_L', '+Alt_L', '+Delete', '-Delete', '-Alt_L', '-Control_L'],
      'pressed in order, released in reverse');
    assert.equal(await page.isVisible('#keys-list'), false, 'the menu closed');
  }));

test('a view-only viewer injects nothing and its refusals are counted', { timeout: TEST_TIMEOUT },
  (t) => withScope(t, async (s) => {
    const { x, xev, share, browser } = await setup(s);
    // The host's clipboard holds something a view-only viewer must not get.
    const secret = 'host secret ✓';
    s.add(await ownClipboard(x.display, secret));
    // Pointer inside the xev window, so an injected key or click would show there.
    await movePointer(x.display, 500, 400);
    const page = await openFullViewer(s, browser, share);

    const rights = await waitForRights(page, { view: true });
    assert.deepEqual({ control: rights.control, clipboard: rights.clipboard }, { control: false, clipboard: false },
      `a share without --allow-* grants view only: ${JSON.stringify(rights)}`);
    const label = await textOf(page, '#rights');
    assert.match(label ?? '', /view only/i, `#rights says "View only", got ${JSON.stringify(label)}`);

    const loc0 = await pointerLocation(x.display);
    const mark = xev.mark();
    const st0 = await share.stats();
    assert.equal(counter(st0, 'input_injected'), 0);

    // Real input on the page: the page must not even send it.
    const p = await videoPoint(page, 700, 400);
    await page.mouse.click(p.x, p.y);
    await page.mouse.click(p.x + 40, p.y + 40, { button: 'right' });
    await page.mouse.wheel(0, 240);
    await page.keyboard.type('abc');
    await page.keyboard.press('Enter');
    await sleep(500);
    const st1 = await share.stats();
    assert.equal(st1.input_refused, st0.input_refused,
      `the page sends no input without the control right (input_refused ${st0.input_refused} -> ${st1.input_refused})`);

    // Raw messages, sent regardless of rights: the host must drop them.
    const raw = [
      ['input', { type: 'PointerButton', button: 0, pressed: true, x: 30000, y: 30000 }],
      ['input', { type: 'PointerButton', button: 0, pressed: false, x: 30000, y: 30000 }],
      ['input', { type: 'Key', pressed: true, code: 'KeyQ' }],
      ['input', { type: 'Key', pressed: false, code: 'KeyQ' }],
      ['pointer', { type: 'PointerMove', x: 100, y: 100 }],
      ['clipboard', { type: 'ClipboardData', transfer: 5, mime: 'text', total: 4, offset: 0, data: [101, 118, 105, 108] }],
    ];
    for (const [labelName, msg] of raw) {
      const sent = await sendRaw(page, labelName, msg);
      assert.equal(sent, true, `sendMessage('${labelName}', ${msg.type}) sent (channel open)`);
    }
    // The pointer channel may lose a message, so count the reliable ones for sure.
    await pollUntil(share.stats, (st) => st.input_refused >= st0.input_refused + raw.length - 1,
      { timeoutMs: 5000, what: `input_refused >= ${st0.input_refused + raw.length - 1}` });
    await sleep(1000);
    const st3 = await share.stats();
    t.diagnostic(`stats: ${JSON.stringify(st3)}`);
    assert.ok(st3.input_refused >= raw.length - 1, `input_refused counts the raw messages: ${JSON.stringify(st3)}`);
    assert.equal(st3.input_injected, 0, `nothing injected: ${JSON.stringify(st3)}`);
    assert.equal(counter(st3, 'clipboard_received'), 0, `no clipboard taken from a view-only viewer: ${JSON.stringify(st3)}`);
    assert.equal(counter(st3, 'clipboard_sent'), 0, `no clipboard sent to a view-only viewer: ${JSON.stringify(st3)}`);

    const loc1 = await pointerLocation(x.display);
    assert.deepEqual(loc1, loc0, 'the host pointer did not move');
    const injected = xev.since(mark).filter((e) => /^(ButtonPress|ButtonRelease|KeyPress|KeyRelease)$/.test(e.type));
    assert.deepEqual(injected.map((e) => e.raw), [], 'xev saw no button or key event');
    const clip = await readClipboard(x.display);
    assert.equal(clip?.toString(), secret, 'the host clipboard is unchanged');
    assert.equal(await pageClipboard(page), null, 'the view-only viewer never received the host clipboard');

    await assertStillStreaming(page, 'after refused input');
    await stopCleanly(browser, share);
  }));

test('clipboard both ways, images too, and an over-cap paste is refused', { timeout: TEST_TIMEOUT },
  (t) => withScope(t, async (s) => {
    const CAP = 65536;
    const { x, share, browser } = await setup(s, {
      shareArgs: ['--allow-clipboard', '--clipboard-max-bytes', String(CAP)], xev: false,
    });
    const page = await openFullViewer(s, browser, share);
    const rights = await waitForRights(page, { clipboard: true });
    assert.deepEqual({ control: rights.control, clipboardMax: rights.clipboardMax }, { control: false, clipboardMax: CAP },
      `rights with --allow-clipboard --clipboard-max-bytes ${CAP}: ${JSON.stringify(rights)}`);
    const st0 = await share.stats();

    // (a) host -> viewer, text.
    const hostText = 'from host ✓';
    s.add(await ownClipboard(x.display, hostText));
    await pollUntil(() => pageClipboard(page), (c) => c?.text === hostText,
      { timeoutMs: 5000, what: `porthole.clipboard.text === ${JSON.stringify(hostText)}` });
    const c1 = await pageClipboard(page);
    assert.equal(c1.mime, 'text/plain', `host text arrives as text/plain: ${JSON.stringify({ ...c1, bytes: undefined })}`);
    assert.deepEqual(Buffer.from(c1.bytes), Buffer.from(hostText), 'its bytes are the UTF-8 text');
    const st1 = await pollUntil(share.stats, (st) => st.clipboard_sent > st0.clipboard_sent,
      { timeoutMs: 3000, what: 'clipboard_sent grows' });

    // (b) viewer -> host, text, through a real paste event.
    const viewerText = 'from viewer ✓';
    await dispatchPaste(page, { text: viewerText });
    await pollUntil(() => readClipboard(x.display), (b) => b?.toString() === viewerText,
      { timeoutMs: 5000, what: `host CLIPBOARD (UTF8_STRING) === ${JSON.stringify(viewerText)}` });
    const targets = await clipboardTargets(x.display);
    assert.ok(targets.includes('UTF8_STRING'), `host offers UTF8_STRING: ${targets}`);
    const st2 = await pollUntil(share.stats, (st) => st.clipboard_received === st1.clipboard_received + 1,
      { timeoutMs: 3000, what: `clipboard_received === ${st1.clipboard_received + 1}` });
    // The host keeps owning it: still readable a moment later.
    await sleep(500);
    assert.equal((await readClipboard(x.display))?.toString(), viewerText, 'the host still serves the pasted text');

    // (c) viewer -> host, PNG.
    const imgA = makeTestImage(16, 16, 1);
    const pngA = encodePng(imgA.width, imgA.height, imgA.rgba);
    const sentA = await page.evaluate(async (bytes) => window.porthole.pasteBytes('image/png', new Uint8Array(bytes)),
      Array.from(pngA));
    assert.equal(sentA, true, 'pasteBytes(image/png) resolves true');
    const gotA = await pollUntil(() => readClipboard(x.display, { target: 'image/png' }), (b) => b && b.length > 0,
      { timeoutMs: 5000, what: 'host CLIPBOARD offers image/png' });
    if (Buffer.compare(gotA, pngA) !== 0) {
      t.diagnostic(`host re-encoded the PNG (${pngA.length} -> ${gotA.length} bytes); comparing pixels`);
      const diff = imageDiff(imgA, decodePng(gotA));
      assert.equal(diff, '', `the PNG on the host clipboard has the pasted pixels: ${diff}`);
    }
    assert.ok((await clipboardTargets(x.display)).includes('image/png'), 'host offers image/png');
    await pollUntil(share.stats, (st) => st.clipboard_received === st2.clipboard_received + 1,
      { timeoutMs: 3000, what: `clipboard_received === ${st2.clipboard_received + 1}` });

    // (c) host -> viewer, PNG (a different picture, so an echo of A cannot pass).
    const imgB = makeTestImage(24, 10, 7);
    const pngB = encodePng(imgB.width, imgB.height, imgB.rgba);
    s.add(await ownClipboard(x.display, pngB, { target: 'image/png' }));
    const cB = await pollUntil(() => pageClipboard(page),
      (c) => c?.mime === 'image/png' && c.bytes && (() => { try { return !imageDiff(imgB, decodePng(Buffer.from(c.bytes))); } catch { return false; } })(),
      { timeoutMs: 5000, what: 'porthole.clipboard is the host PNG (image/png, same pixels)' }).catch(async (err) => {
      const c = await pageClipboard(page);
      let detail = c ? `mime ${c.mime}, ${c.bytes?.length} bytes` : 'null';
      if (c?.mime === 'image/png') {
        try { detail += `; ${imageDiff(imgB, decodePng(Buffer.from(c.bytes)))}`; } catch (e) { detail += `; ${e.message}`; }
      }
      throw new Error(`${err.message}\nporthole.clipboard: ${detail}`);
    });
    assert.equal(cB.size, cB.bytes.length, 'clipboard.size is its byte length');

    // Text of exactly the cap in several chunks, with UTF-8 sequences split across chunk
    // boundaries, both ways.
    const bigV = `a${'ü'.repeat(32767)}z`;
    assert.equal(Buffer.byteLength(bigV), CAP, 'the big paste is exactly the cap');
    assert.equal(await page.evaluate((s) => window.porthole.pasteText(s), bigV), true,
      'pasteText of exactly the cap is sent');
    await pollUntil(() => readClipboard(x.display), (b) => b?.toString() === bigV,
      { timeoutMs: 5000, what: `host CLIPBOARD is the ${CAP}-byte text` });
    const bigH = `b${'ö'.repeat(30000)}`;
    s.add(await ownClipboard(x.display, bigH));
    await page.waitForFunction((t) => window.porthole.clipboard?.text === t, bigH, { timeout: 5000, polling: 100 })
      .catch(async () => {
        const c = await page.evaluate(() => ({ mime: window.porthole.clipboard?.mime, size: window.porthole.clipboard?.size }));
        throw new Error(`the viewer did not get the ${Buffer.byteLength(bigH)}-byte host text within 5 s; ` +
          `porthole.clipboard: ${JSON.stringify(c)}`);
      });

    // (d) over the cap: the page refuses locally...
    const text0 = 'before over-cap ✓';
    assert.equal(await page.evaluate((s) => window.porthole.pasteText(s), text0), true, 'a small pasteText is sent');
    await pollUntil(() => readClipboard(x.display), (b) => b?.toString() === text0,
      { timeoutMs: 5000, what: `host CLIPBOARD === ${JSON.stringify(text0)}` });
    const n0 = (await pageNotices(page)).length;
    const big = await page.evaluate(() => window.porthole.pasteText('x'.repeat(70000)));
    assert.equal(big, false, 'pasteText over the cap resolves false (not sent)');
    const local = await waitForNotice(page, { code: 1 }, { from: n0 });
    t.diagnostic(`local notice: ${JSON.stringify(local)}`);
    await page.waitForFunction(() => /too large/i.test(document.getElementById('toast')?.textContent || ''),
      null, { timeout: 3000, polling: 50 }).catch(async () => {
      throw new Error(`#toast does not mention "too large": ${JSON.stringify(await textOf(page, '#toast'))}`);
    });

    // ... and the host enforces the cap on raw chunks too.
    const st4 = await share.stats();
    const n1 = (await pageNotices(page)).length;
    const chunk = (offset) => ({ type: 'ClipboardData', transfer: 99, mime: 'text', total: 70000, offset,
      data: Array(16384).fill(120) });
    assert.equal(await sendRaw(page, 'clipboard', chunk(0)), true, 'raw over-cap chunk sent');
    const hostNotice = await waitForNotice(page, { code: 1, transfer: 99 }, { from: n1 });
    assert.ok(!hostNotice.local, `the notice for transfer 99 comes from the host: ${JSON.stringify(hostNotice)}`);
    assert.equal(await sendRaw(page, 'clipboard', chunk(16384)), true, 'second raw chunk sent');
    await sleep(500);
    const st5 = await share.stats();
    assert.equal(counter(st5, 'clipboard_refused'), st4.clipboard_refused + 1,
      `clipboard_refused counts the refused transfer once: ${st4.clipboard_refused} -> ${st5.clipboard_refused}`);
    assert.equal(st5.clipboard_received, st4.clipboard_received, 'nothing received from the refused transfer');
    assert.equal((await readClipboard(x.display))?.toString(), text0, 'the host clipboard is unchanged');

    // The session goes on: frames, and a further small paste.
    await assertStillStreaming(page, 'after the refused transfer');
    const text1 = 'after over-cap ✓';
    await dispatchPaste(page, { text: text1 });
    await pollUntil(() => readClipboard(x.display), (b) => b?.toString() === text1,
      { timeoutMs: 5000, what: `host CLIPBOARD === ${JSON.stringify(text1)}` });
    const stEnd = await share.stats();
    t.diagnostic(`stats: ${JSON.stringify(stEnd)}`);
    assert.equal(counter(stEnd, 'input_refused'), 0, `nothing refused for missing rights: ${JSON.stringify(stEnd)}`);

    await stopCleanly(browser, share);
  }));

test('protocol vectors pass in the browser', { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
  const vectors = JSON.parse(readFileSync(path.join(REPO, 'tests', 'protocol-vectors.json'), 'utf8'));
  assert.ok(vectors.valid.length > 0 && vectors.invalid.length > 0, 'there are vectors');
  const x = s.add(await startXvfb(SCREEN));
  const share = s.add(await startShare({ display: x.display }));
  const browser = s.add(await launchBrowser({ viewport: VIEWPORT }));
  const page = s.add(await openPage(browser, share.viewerUrl()));

  const results = await page.evaluate(async (vectors) => {
    const mod = await import('/protocol.js');
    const bytesOf = (hex) => new Uint8Array((hex.replace(/\s+/g, '').match(/../g) || []).map((h) => parseInt(h, 16)));
    const hexOf = (b) => Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
    // Uint8Arrays and other typed arrays become plain arrays, recursively.
    const plain = (v) => {
      if (ArrayBuffer.isView(v)) return Array.from(v);
      if (Array.isArray(v)) return v.map(plain);
      if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
      return v;
    };
    const out = { exports: Object.keys(mod), valid: [], invalid: [] };
    for (const v of vectors.valid) {
      const r = { name: v.name };
      try { r.decoded = plain(mod.decode(bytesOf(v.hex))); } catch (e) { r.decodeError = `${e?.name}: ${e?.message} (reason ${e?.reason})`; }
      try {
        const enc = mod.encode(v.message);
        r.encoded = hexOf(enc instanceof ArrayBuffer ? new Uint8Array(enc) : enc);
      } catch (e) { r.encodeError = `${e?.name}: ${e?.message} (reason ${e?.reason})`; }
      out.valid.push(r);
    }
    for (const v of vectors.invalid) {
      const r = { name: v.name };
      try { r.decoded = plain(mod.decode(bytesOf(v.hex))); } catch (e) { r.reason = e?.reason ?? null; r.message = String(e?.message); }
      out.invalid.push(r);
    }
    return out;
  }, vectors);
  t.diagnostic(`protocol.js exports: ${results.exports.join(', ')}`);
  assert.ok(results.exports.includes('decode') && results.exports.includes('encode'),
    `/protocol.js exports decode and encode; it exports: ${results.exports.join(', ') || 'nothing'}`);

  const failures = [];
  vectors.valid.forEach((v, i) => {
    const r = results.valid[i];
    const hex = v.hex.replace(/\s+/g, '').toLowerCase();
    if (r.decodeError) failures.push(`valid "${v.name}": decode threw ${r.decodeError}`);
    else {
      try { assert.deepStrictEqual(r.decoded, v.message); } catch {
        failures.push(`valid "${v.name}": decoded ${JSON.stringify(r.decoded)}, want ${JSON.stringify(v.message)}`);
      }
    }
    if (r.encodeError) failures.push(`valid "${v.name}": encode threw ${r.encodeError}`);
    else if (r.encoded !== hex) failures.push(`valid "${v.name}": encoded ${r.encoded}, want ${hex}`);
  });
  vectors.invalid.forEach((v, i) => {
    const r = results.invalid[i];
    if ('decoded' in r) failures.push(`invalid "${v.name}": decoded to ${JSON.stringify(r.decoded)}, want error ${v.error}`);
    else if (r.reason !== v.error) failures.push(`invalid "${v.name}": threw reason ${JSON.stringify(r.reason)} (${r.message}), want ${v.error}`);
  });
  assert.deepEqual(failures, [], `${failures.length} of ${vectors.valid.length * 2 + vectors.invalid.length} vector checks failed`);
  t.diagnostic(`${vectors.valid.length} valid (decode + encode) and ${vectors.invalid.length} invalid vectors pass`);

  // The page exposes the same module.
  const same = await page.evaluate(async () => {
    const mod = await import('/protocol.js');
    const p = window.porthole?.protocol;
    return !!p && typeof p.decode === 'function' && typeof p.encode === 'function' &&
      Array.from(p.encode({ type: 'ReleaseAll' })).join(',') === Array.from(mod.encode({ type: 'ReleaseAll' })).join(',');
  });
  assert.equal(same, true, 'window.porthole.protocol has encode/decode like /protocol.js');

  await browser.stop();
  await share.stop();
}));

test('a flood of input is rate-limited, and ReleaseAll still releases what it held', { timeout: TEST_TIMEOUT },
  (t) => withScope(t, async (s) => {
    const { x, xev, share, browser } = await setup(s, { shareArgs: ['--allow-control'] });
    await movePointer(x.display, 500, 400); // keys go to the xev window
    const page = await openFullViewer(s, browser, share);
    await waitForRights(page, { control: true });
    const st0 = await share.stats();
    const mark = xev.mark();

    // Shift down, then far more input than the host accepts at once (wheel ticks of 1/120
    // notch), then Shift up and ReleaseAll. protocol.md: "ReleaseAll is always accepted".
    const FLOOD = 4000;
    const sent = await page.evaluate((n) => {
      const p = window.porthole;
      let ok = p.sendMessage('input', { type: 'Key', pressed: true, code: 'ShiftLeft' });
      for (let i = 0; i < n; i++) ok = p.sendMessage('input', { type: 'Wheel', dx: 0, dy: 1 }) && ok;
      ok = p.sendMessage('input', { type: 'Key', pressed: false, code: 'ShiftLeft' }) && ok;
      ok = p.sendMessage('input', { type: 'ReleaseAll' }) && ok;
      return ok;
    }, FLOOD);
    assert.equal(sent, true, 'all messages sent');
    await xev.waitFor((e) => e.type === 'KeyPress' && e.keysymName === 'Shift_L', 5000, 'the Shift_L press', mark);
    const st1 = await pollUntil(share.stats, (st) => st.rate_limited > st0.rate_limited,
      { timeoutMs: 5000, what: 'rate_limited grows during the flood' });
    t.diagnostic(`after the flood: ${JSON.stringify(st1)}`);

    await xev.waitFor((e) => e.type === 'KeyRelease' && e.keysymName === 'Shift_L', 5000,
      'the Shift_L release (by the Key release or by ReleaseAll)', mark).catch(async () => {
      const st = await share.stats();
      throw new Error('Shift_L is still held on the host after the flood: its release and the ReleaseAll ' +
        `after it were dropped (rate_limited ${st0.rate_limited} -> ${st.rate_limited}, ` +
        `input_injected ${st.input_injected} of ${FLOOD + 3} sent)`);
    });

    // Once the flood is over, input goes through again, without Shift.
    await sleep(2500); // the bucket refills
    const mark2 = xev.mark();
    assert.equal(await sendRaw(page, 'input', { type: 'Key', pressed: true, code: 'KeyA' }), true);
    assert.equal(await sendRaw(page, 'input', { type: 'Key', pressed: false, code: 'KeyA' }), true);
    const a = await xev.waitFor((e) => e.type === 'KeyPress' && e.keycode !== undefined, 5000, 'the KeyPress of KeyA', mark2);
    assert.equal(a.text, 'a', `KeyA types "a" (no Shift held): ${a.keysymName} state 0x${a.state.toString(16)}`);
    await assertStillStreaming(page, 'after the flood');
    await stopCleanly(browser, share);
  }));
