// The desktop app and the native viewer, end to end, looked at through screenshots of
// their Xvfb screens (no OCR: things are found by their colours and shapes).
// - `porthole view` shows the shared screen (the test pattern's four blocks, in place)
//   and follows changes;
// - clicks and typing in the native viewer reach the host (checked with xev), until the
//   host unticks "Control 1" in the app's viewers grid;
// - screenshots of the real windows for the README (artifacts/screenshots/ and
//   docs/screenshots/).
// Host screens are 1280x720, viewer screens 1280x800; no window manager, so the windows
// open at (0,0), 900x640. Each test has its own Xvfbs. Loopback only.

import jsQR from 'jsqr';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  REPO, withScope, startXvfb, startPattern, startShare, DEFAULT_BLOCKS, quadrantCentres, compareColours,
  rgb, runToolOk, pointerLocation, startXev, typedText, pollUntil,
  APP_WINDOW, APP_SETTINGS, startPortholeApp, findWindow, grabScreen, cropImage, writePngFile,
  imageAverage, findColourBox, findColourSquares, signedFetch,
} from './lib.mjs';

const HOST = { width: 1280, height: 720 };
const VIEWER_SCREEN = { width: 1280, height: 800 };
/** The centre of the viewer toolbar's first button, "Leave" (the window sits at 0,0). */
const LEAVE_BUTTON = { x: 32, y: 18 };
const TEST_TIMEOUT = 180_000;
const COLOUR_TOLERANCE = 40;
const PX_TOLERANCE = 4; // host pixels; the viewer shows the host at ~0.69 scale
// xev on the host, clear of the app's window (0,0 900x640).
const XEV_GEOMETRY = '300x300+950+400';
const XEV_CENTRE = { x: 1100, y: 550 };

// egui's dark theme, as the app draws it.
const PANEL = '1b1b1b'; // window background
const CHECKBOX = '3c3c3c'; // the box of a checkbox (and nothing else of that size)
const SHARING_RED = 'dc2828'; // "SHARING"
const CONTROLLED_ORANGE = 'e69614'; // "CONTROLLED by N"
const STATS_YELLOW = 'ffff00'; // the viewer's stats overlay

const ARTIFACTS = path.join(REPO, 'artifacts', 'screenshots');
const DOCS_SHOTS = path.join(REPO, 'docs', 'screenshots');

// ---------------------------------------------------------------------------------------

const near = (a, b, tol = PX_TOLERANCE) => Math.abs(a - b) <= tol;
const fmtRect = (r) => r && `${r.width}x${r.height}+${r.x}+${r.y}`;

/** Whether the window at APP_WINDOW is up and painted (its background at the bottom-right corner). */
function windowPainted(img) {
  const c = imageAverage(img, APP_WINDOW.x + APP_WINDOW.width - 4, APP_WINDOW.y + APP_WINDOW.height - 4, 1);
  return c.every((v, i) => Math.abs(v - rgb(PANEL)[i]) <= 6);
}

/**
 * Screenshots `display` until find(img) returns something (not null/false). `procs`: the
 * porthole processes involved; their exit fails the wait at once. Returns {img, found, ms}.
 */
async function waitForScreen(display, find, { timeoutMs = 20000, what, procs = [] }) {
  const start = Date.now();
  let img = null;
  for (;;) {
    img = await grabScreen(display);
    const found = find(img);
    if (found) return { img, found, ms: Date.now() - start };
    for (const p of procs) {
      if (p.exitInfo) throw new Error(`${p.label} exited (${JSON.stringify(p.exitInfo)}) while waiting for ${what}`);
    }
    if (Date.now() - start >= timeoutMs) {
      const file = path.join(ARTIFACTS, `timeout-${display.replace(':', '')}-${Date.now()}.png`);
      writePngFile(file, img);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} on ${display} (last screenshot: ${file})`);
    }
    await sleep(150);
  }
}

/**
 * Where the viewer window shows the test pattern: the video rectangle {x, y, width,
 * height} found from the top-left and bottom-right blocks (the blocks fill the top 7/8
 * of the host screen), or null when they are not both on screen with the host's shape.
 */
function patternVideoRect(img, blocks) {
  if (!windowPainted(img)) return null;
  const opts = { tolerance: COLOUR_TOLERANCE, region: APP_WINDOW };
  const tl = findColourBox(img, blocks[0], opts);
  const br = findColourBox(img, blocks[3], opts);
  if (!tl || !br || tl.count < 20000 || br.count < 20000) return null;
  const width = br.x + br.width - tl.x;
  const blocksHeight = br.y + br.height - tl.y;
  const top = Math.floor((HOST.height * 7) / 8);
  if (!near(blocksHeight, (width * top) / HOST.width, 3)) return null; // not the host's shape (yet)
  return { x: tl.x, y: tl.y, width, height: Math.round((width * HOST.height) / HOST.width) };
}

/**
 * The video rectangle of a viewer watching a host whose root window is black (the app
 * and xev cover only part of it): the bounding box of the black pixels in the viewer's
 * window; null unless it has the host's shape and sits inside the painted window.
 */
function blackVideoRect(img) {
  if (!windowPainted(img)) return null;
  const box = findColourBox(img, '000000', { tolerance: 10, region: APP_WINDOW });
  if (!box || box.width < 600 || box.x < 1 || box.y < 10) return null;
  if (!near(box.height, (box.width * HOST.height) / HOST.width, 3)) return null;
  return box;
}

/**
 * The viewer pixel over host pixel (hx, hy): the viewer maps its video rectangle's left
 * and right edges to host x 0 and width-1 (the same for y).
 */
function toViewer(rect, hx, hy) {
  return {
    x: Math.round(rect.x + (hx / (HOST.width - 1)) * rect.width),
    y: Math.round(rect.y + (hy / (HOST.height - 1)) * rect.height),
  };
}

/** Samples the four quadrant centres of the host pattern where the viewer shows them. */
function sampleQuadrants(img, rect) {
  const points = quadrantCentres(HOST.width, HOST.height);
  const at = points.map((p) => ({ ...toViewer(rect, p.x, p.y), name: p.name }));
  return { points: at, samples: at.map((p) => imageAverage(img, p.x, p.y, 3)) };
}

/** Yellow stats-overlay pixels in the top-left corner of the video. */
function overlayPixels(img, rect) {
  const box = findColourBox(img, STATS_YELLOW, {
    tolerance: 40, region: { x: rect.x, y: rect.y, width: Math.min(500, rect.width), height: 40 },
  });
  return box ? box.count : 0;
}

/** xdotool on `display`. */
const xdo = (display, ...args) => runToolOk('xdotool', args.map(String), { display, timeoutMs: 20000 });

/**
 * The viewers grid of the app's sharing screen: the two checkbox boxes of viewer 1
 * ("Control 1", "Clipboard 1"), each with `checked` (a light tick mark inside), or null.
 */
function viewerCheckboxes(img) {
  if (!windowPainted(img)) return null;
  const squares = findColourSquares(img, CHECKBOX, { region: { x: 0, y: 120, width: APP_WINDOW.width, height: 200 } });
  if (squares.length < 2 || squares[0].y !== squares[1].y) return null;
  const checked = (sq) => {
    const tick = findColourBox(img, 'd0d0d0', { tolerance: 0x50, region: sq });
    return !!tick && tick.count >= 5;
  };
  const [control, clipboard] = squares;
  return { control: { ...control, checked: checked(control) }, clipboard: { ...clipboard, checked: checked(clipboard) } };
}

/** Whether the app's header says "CONTROLLED by N" (its orange label next to "SHARING"). */
function saysControlled(img) {
  const box = findColourBox(img, CONTROLLED_ORANGE, { tolerance: 30, region: { x: 0, y: 0, width: 400, height: 32 } });
  return !!box && box.count >= 20;
}

function saysSharing(img) {
  const box = findColourBox(img, SHARING_RED, { tolerance: 30, region: { x: 0, y: 0, width: 120, height: 32 } });
  return !!box && box.count >= 20;
}

/** GET /api/stats of a share (any origin) with the code. */
async function shareStats(origin, code) {
  const res = await signedFetch(new URL('/api/stats', origin), code);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${origin}/api/stats -> ${res.status}: ${text}`);
  return JSON.parse(text);
}

/** Key events that are out of order: a release without a press, or keys still down at the end. */
function keyOrderProblems(events) {
  const down = new Map();
  const problems = [];
  for (const e of events) {
    if (e.type === 'KeyPress') down.set(e.keycode, e.keysymName);
    else if (e.type === 'KeyRelease') {
      if (!down.has(e.keycode)) problems.push(`release of ${e.keysymName} (keycode ${e.keycode}) while not pressed`);
      down.delete(e.keycode);
    }
  }
  for (const name of down.values()) problems.push(`${name} still held at the end`);
  return problems;
}

const keyTrace = (events) => events.filter((e) => /^Key(Press|Release)$/.test(e.type))
  .map((e) => `${e.type === 'KeyPress' ? '+' : '-'}${e.keysymName}`).join(' ');

/** Runs fn; an assertion failure is kept in `failures` (and reported) instead of thrown. */
async function soft(t, failures, what, fn) {
  try {
    await fn();
  } catch (err) {
    failures.push(`${what}: ${err.message}`);
    t.diagnostic(`FAILED (test goes on): ${what}: ${err.message}`);
  }
}

/**
 * A saved screenshot for the record: artifacts/screenshots/NAME; README shots are copied to
 * docs/screenshots/NAME only with PORTHOLE_UPDATE_DOCS_SCREENSHOTS=1 (a test run leaves
 * tracked files alone).
 */
function saveShot(name, img, { docs = false } = {}) {
  const file = path.join(ARTIFACTS, name);
  writePngFile(file, img);
  if (docs && process.env.PORTHOLE_UPDATE_DOCS_SCREENSHOTS === '1') {
    mkdirSync(DOCS_SHOTS, { recursive: true });
    copyFileSync(file, path.join(DOCS_SHOTS, name));
  }
  return file;
}

// ---------------------------------------------------------------------------------------

test('the native viewer shows the host screen', { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
  const a = s.add(await startXvfb(HOST));
  const pattern = s.add(await startPattern(a.display));
  assert.deepEqual({ width: pattern.width, height: pattern.height }, HOST, 'test-pattern covers the host screen');
  const share = s.add(await startShare({ display: a.display, args: ['--audio', 'none'] }));
  const b = s.add(await startXvfb(VIEWER_SCREEN));
  await xdo(b.display, 'mousemove', VIEWER_SCREEN.width - 1, VIEWER_SCREEN.height - 1); // off the window

  const started = Date.now();
  const viewer = s.add(startPortholeApp({ display: b.display, args: ['view', share.viewerUrl()] }));
  const first = await waitForScreen(b.display, (img) => patternVideoRect(img, DEFAULT_BLOCKS),
    { timeoutMs: 30000, what: 'the four pattern blocks in the viewer window', procs: [viewer, share] });
  const rect = first.found;
  t.diagnostic(`first picture ${Date.now() - started} ms after \`porthole view\` started; video at ${fmtRect(rect)}`);
  saveShot('native-viewer-pattern.png', cropImage(first.img, APP_WINDOW));

  // The whole video inside the window, below the toolbar, as wide as the window allows.
  assert.ok(rect.x >= APP_WINDOW.x && rect.x + rect.width <= APP_WINDOW.x + APP_WINDOW.width &&
    rect.y >= APP_WINDOW.y + 20 && rect.y + rect.height <= APP_WINDOW.y + APP_WINDOW.height,
  `the video ${fmtRect(rect)} lies inside the window, below the toolbar`);
  assert.ok(rect.width >= APP_WINDOW.width - 40, `the video fills the window's width: ${fmtRect(rect)}`);

  // Each block where the host has it.
  const { points, samples } = sampleQuadrants(first.img, rect);
  const cmp = compareColours(points, samples, DEFAULT_BLOCKS, COLOUR_TOLERANCE);
  assert.ok(cmp.ok, `the viewer shows each block in its place:\n${cmp.report}`);
  t.diagnostic(`block colours in the viewer:\n${cmp.report}`);

  // The stats overlay, and the share sees one viewer.
  const overlay = overlayPixels(first.img, rect);
  assert.ok(overlay >= 50, `the yellow stats overlay is drawn over the video's top-left corner (${overlay} px)`);
  const st = await share.stats();
  assert.equal(st.viewers_connected, 1, `one viewer connected: ${JSON.stringify(st)}`);

  // New colours: the viewer follows within 5 s.
  const next = ['1e90ff', 'ff8c00', '8a2be2', '20b2aa'];
  await pattern.setBlocks(next);
  const changed = Date.now();
  let last = null;
  const follow = await waitForScreen(b.display, (img) => {
    const r = patternVideoRect(img, next);
    if (!r) return null;
    const q = sampleQuadrants(img, r);
    last = compareColours(q.points, q.samples, next, COLOUR_TOLERANCE);
    return last.ok ? r : null;
  }, { timeoutMs: 5000, what: `the new block colours ${next.join(' ')}`, procs: [viewer, share] }).catch((err) => {
    throw new Error(`${err.message}${last ? `\nlast comparison:\n${last.report}` : ''}`);
  });
  const followMs = Date.now() - changed;
  t.diagnostic(`the viewer showed the new colours ${followMs} ms after the host painted them`);
  assert.ok(followMs <= 5000, `new colours within 5 s (${followMs} ms)`);
  assert.ok(['x', 'y', 'width', 'height'].every((k) => near(follow.found[k], rect[k], 2)),
    `the video stays where it was: ${fmtRect(follow.found)} vs ${fmtRect(rect)}`);

  // F3 hides the overlay (keyboard focus first: there is no window manager to give it).
  const win = await findWindow(b.display);
  await xdo(b.display, 'windowfocus', '--sync', win);
  await xdo(b.display, 'key', 'F3');
  await waitForScreen(b.display, (img) => overlayPixels(img, rect) === 0,
    { timeoutMs: 5000, what: 'the stats overlay gone after F3', procs: [viewer] });
  assert.equal(viewer.exitInfo, null, 'the viewer is still running');

  // Leave (the toolbar's first button): the host drops the viewer at once, because the
  // viewer says so (DELETE), not after a timeout; it used to stay listed for good.
  assert.equal((await share.stats()).viewers, 1, 'one viewer before Leave');
  await xdo(b.display, 'mousemove', '--sync', LEAVE_BUTTON.x, LEAVE_BUTTON.y, 'click', '1');
  const left = Date.now();
  const after = await pollUntil(() => share.stats(), (st2) => st2.viewers === 0,
    { timeoutMs: 5000, intervalMs: 50, what: 'no viewer on the host after Leave' });
  const goneMs = Date.now() - left;
  t.diagnostic(`the host dropped the viewer ${goneMs} ms after Leave`);
  assert.ok(goneMs <= 1000, `the host dropped the viewer within 1 s of Leave (${goneMs} ms)`);
  assert.equal(after.viewers_connected, 0, `no viewer connected: ${JSON.stringify(after)}`);
}));

test('clicks and typing from the native viewer reach the host, and a revoke stops them',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const failures = [];
    // Host: the desktop app sharing at once, control allowed, no approval prompt.
    const a = s.add(await startXvfb(HOST));
    const xev = s.add(await startXev(a.display, { geometry: XEV_GEOMETRY }));
    const app = s.add(startPortholeApp({ display: a.display, args: ['--share'], settings: APP_SETTINGS }));
    const printed = await app.waitUrl(30000);
    const u = new URL(printed);
    const code = new URLSearchParams(u.hash.slice(1)).get('code');
    assert.ok(code, `the printed link carries the code: ${printed}`);
    assert.equal(u.port, '7380', `the app listens on 7380: ${printed}`);
    const origin = `http://127.0.0.1:${u.port}`;
    const url = `${origin}/#code=${encodeURIComponent(code)}`;
    t.diagnostic(`the app printed ${printed}`);
    const hostShot = await waitForScreen(a.display, saysSharing,
      { timeoutMs: 15000, what: '"SHARING" in the app window', procs: [app] });
    assert.equal(saysControlled(hostShot.img), false, 'nobody controls yet');

    // Viewer: `porthole view` on its own screen.
    const b = s.add(await startXvfb(VIEWER_SCREEN));
    await xdo(b.display, 'mousemove', VIEWER_SCREEN.width - 1, VIEWER_SCREEN.height - 1); // off the window
    const viewer = s.add(startPortholeApp({ display: b.display, args: ['view', url] }));
    const shown = await waitForScreen(b.display, blackVideoRect,
      { timeoutMs: 30000, what: 'the host screen in the viewer window', procs: [viewer, app] });
    const rect = shown.found;
    t.diagnostic(`viewer shows the host at ${fmtRect(rect)}`);

    // The host app lists the viewer, with control.
    const grid = await waitForScreen(a.display, (img) => {
      const boxes = viewerCheckboxes(img);
      return boxes && saysControlled(img) ? boxes : null;
    }, { timeoutMs: 15000, what: 'viewer 1 in the app\'s viewers grid, "CONTROLLED by 1"', procs: [app] });
    assert.equal(grid.found.control.checked, true, `"Control 1" is ticked: ${JSON.stringify(grid.found)}`);
    assert.equal(grid.found.clipboard.checked, false, `"Clipboard 1" is not: ${JSON.stringify(grid.found)}`);
    saveShot('native-host-controlled.png', cropImage(grid.img, APP_WINDOW));

    // A move over the video moves the host pointer (only sent with the control right).
    const target = XEV_CENTRE;
    const p = toViewer(rect, target.x, target.y);
    t.diagnostic(`host (${target.x},${target.y}) is viewer (${p.x},${p.y})`);
    await xdo(b.display, 'mousemove', '--sync', p.x, p.y);
    const loc = await pollUntil(() => pointerLocation(a.display),
      (l) => near(l.x, target.x) && near(l.y, target.y),
      { timeoutMs: 10000, what: `host pointer at (${target.x},${target.y}) ±${PX_TOLERANCE}` });
    t.diagnostic(`host pointer after the move: (${loc.x},${loc.y})`);

    // A click lands there: one press, then its release.
    let mark = xev.mark();
    await xdo(b.display, 'click', '1');
    const press = await xev.waitFor((e) => e.type === 'ButtonPress', 5000, 'a ButtonPress', mark);
    assert.equal(press.button, 1, `a left click is button 1:\n${press.raw}`);
    assert.ok(near(press.rootX, target.x) && near(press.rootY, target.y),
      `ButtonPress at root (${press.rootX},${press.rootY}), want (${target.x},${target.y}) ±${PX_TOLERANCE}`);
    await soft(t, failures, 'the click', async () => {
      await xev.waitFor((e) => e.type === 'ButtonRelease' && e.button === 1, 5000, 'the ButtonRelease', mark);
      await sleep(300);
      const buttons = xev.since(mark).filter((e) => /^Button/.test(e.type)).map((e) => `${e.type} ${e.button}`);
      assert.deepEqual(buttons, ['ButtonPress 1', 'ButtonRelease 1'], 'one press, then one release');
    });

    // Typing: the viewer needs the keyboard focus, which a window manager would give it.
    const win = await findWindow(b.display);
    await xdo(b.display, 'windowfocus', '--sync', win);
    mark = xev.mark();
    await xdo(b.display, 'type', 'Hello 123');
    await xdo(b.display, 'key', 'Return');
    await soft(t, failures, 'typing', async () => {
      await xev.waitFor((e) => e.type === 'KeyPress' && e.keysymName === 'Return', 10000, 'the KeyPress of Return', mark);
      await sleep(500); // the last releases
      const evs = xev.since(mark);
      t.diagnostic(`keys on the host: ${keyTrace(evs)}`);
      assert.equal(typedText(evs), 'Hello 123\r', `the host gets exactly what was typed; keys: ${keyTrace(evs)}`);
      assert.deepEqual(keyOrderProblems(evs), [], `every key pressed, then released; keys: ${keyTrace(evs)}`);
    });
    await sleep(500);
    const stats1 = await shareStats(origin, code);
    t.diagnostic(`host stats while controlling: ${JSON.stringify(stats1)}`);
    assert.ok(stats1.input_forwarded > 0 && stats1.input_injected > 0, `the viewer's input was injected: ${JSON.stringify(stats1)}`);

    // Revoke: untick "Control 1" in the host app (a click on the host screen).
    const toolbarBefore = cropImage(await grabScreen(b.display), { x: 0, y: 0, width: APP_WINDOW.width, height: 30 });
    const box = grid.found.control;
    // (Then the host's pointer goes back into xev's window: off the checkbox, whose hover
    // colour would hide it, and where the viewer's input would land if it still came.)
    await xdo(a.display, 'mousemove', '--sync', Math.round(box.cx), Math.round(box.cy), 'click', '1',
      'mousemove', '--sync', XEV_CENTRE.x, XEV_CENTRE.y);
    const revoked = await waitForScreen(a.display, (img) => {
      const boxes = viewerCheckboxes(img);
      return boxes && !boxes.control.checked && !saysControlled(img) ? boxes : null;
    }, { timeoutMs: 10000, what: '"Control 1" unticked and no "CONTROLLED by" in the app', procs: [app] });
    saveShot('native-host-revoked.png', cropImage(revoked.img, APP_WINDOW));
    // The viewer's toolbar changes ("Controlling" becomes "View only").
    await waitForScreen(b.display, (img) => {
      const bar = cropImage(img, { x: 0, y: 0, width: APP_WINDOW.width, height: 30 });
      return !bar.rgba.equals(toolbarBefore.rgba);
    }, { timeoutMs: 10000, what: 'the viewer\'s toolbar to change after the revoke', procs: [viewer] });
    // (On the revoke the host itself releases whatever the viewer held: a ReleaseAll,
    // counted in input_injected. Counting starts after it.)
    await sleep(300);
    const stats2 = await shareStats(origin, code);
    t.diagnostic(`host stats after the revoke: ${JSON.stringify(stats2)}`);

    // The viewer tries again.
    mark = xev.mark();
    const target2 = { x: 1000, y: 450 };
    const p2 = toViewer(rect, target2.x, target2.y);
    await xdo(b.display, 'mousemove', '--sync', p2.x, p2.y);
    await xdo(b.display, 'click', '1');
    await xdo(b.display, 'windowfocus', '--sync', win);
    await xdo(b.display, 'type', 'Hello 123');
    await xdo(b.display, 'key', 'Return');
    await sleep(2000);
    const after = xev.since(mark).filter((e) => /^(Button|Key)(Press|Release)$/.test(e.type));
    assert.deepEqual(after.map((e) => `${e.type} ${e.button ?? e.keysymName}`), [],
      'after the revoke, nothing from the viewer reaches the host');
    const loc2 = await pointerLocation(a.display);
    assert.ok(near(loc2.x, XEV_CENTRE.x, 0) && near(loc2.y, XEV_CENTRE.y, 0),
      `the host pointer stays where the host put it (${XEV_CENTRE.x},${XEV_CENTRE.y}): (${loc2.x},${loc2.y})`);
    const stats3 = await shareStats(origin, code);
    t.diagnostic(`host stats after the viewer's tries: ${JSON.stringify(stats3)}`);
    assert.equal(stats3.input_injected, stats2.input_injected, 'nothing injected for the viewer after the revoke');
    assert.equal(stats3.input_forwarded, stats2.input_forwarded, 'no input accepted from the viewer after the revoke');
    assert.equal(stats3.viewers_connected, 1, `the viewer is still connected: ${JSON.stringify(stats3)}`);
    // Still watching.
    const still = await waitForScreen(b.display, blackVideoRect,
      { timeoutMs: 5000, what: 'the host screen still in the viewer', procs: [viewer, app] });
    saveShot('native-viewer-view-only.png', cropImage(still.img, APP_WINDOW));

    assert.deepEqual(failures, [], `checks that failed along the way:\n${failures.join('\n')}`);
  }));

test('screenshots of the real app', { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
  // Home, as a new user sees it (no settings yet), on a 1280x800 screen.
  const c = s.add(await startXvfb(VIEWER_SCREEN));
  await xdo(c.display, 'mousemove', VIEWER_SCREEN.width - 1, VIEWER_SCREEN.height - 1);
  const home = s.add(startPortholeApp({ display: c.display }));
  const homeShot = await waitForScreen(c.display, (img) => {
    const boxes = windowPainted(img) && findColourSquares(img, CHECKBOX, { region: APP_WINDOW });
    return boxes && boxes.length === 3 ? boxes : null;
  }, { timeoutMs: 30000, what: 'the Home screen (its three checkboxes)', procs: [home] });
  // Defaults: control and clipboard off, "Ask before each viewer joins" on.
  const ticks = homeShot.found.map((sq) => {
    const tick = findColourBox(homeShot.img, 'd0d0d0', { tolerance: 0x50, region: sq });
    return !!tick && tick.count >= 5;
  });
  assert.deepEqual(ticks, [false, false, true], 'Home defaults: Allow control off, Allow clipboard off, Ask before each viewer joins on');
  await sleep(500); // one more frame, for good measure
  const homeImg = cropImage(await grabScreen(c.display), APP_WINDOW);
  t.diagnostic(`home.png -> ${saveShot('home.png', homeImg, { docs: true })}`);
  await home.stop();

  // Sharing, with one native viewer connected; and that viewer.
  const a = s.add(await startXvfb(HOST));
  s.add(await startPattern(a.display));
  await xdo(a.display, 'mousemove', 1000, 200); // the host cursor over the green block, away from the app
  const app = s.add(startPortholeApp({ display: a.display, args: ['--share'], settings: APP_SETTINGS }));
  const printed = await app.waitUrl(30000);
  const b = s.add(await startXvfb(VIEWER_SCREEN));
  await xdo(b.display, 'mousemove', VIEWER_SCREEN.width - 1, VIEWER_SCREEN.height - 1);
  const viewer = s.add(startPortholeApp({ display: b.display, args: ['view', printed] }));
  const sharing = await waitForScreen(a.display, (img) => (saysSharing(img) && viewerCheckboxes(img)) || null,
    { timeoutMs: 30000, what: 'the sharing screen with viewer 1', procs: [app, viewer] });
  assert.equal(sharing.found.control.checked, true, '"Control 1" ticked (allow_control)');
  const viewed = await waitForScreen(b.display, (img) => {
    if (!windowPainted(img)) return null;
    const green = findColourBox(img, DEFAULT_BLOCKS[1], { tolerance: COLOUR_TOLERANCE, region: APP_WINDOW });
    const yellow = findColourBox(img, STATS_YELLOW, { tolerance: 40, region: APP_WINDOW });
    return green && green.count > 20000 && yellow && yellow.count > 50 ? { green, yellow } : null;
  }, { timeoutMs: 30000, what: 'the shared screen and the stats overlay in the viewer', procs: [app, viewer] });
  t.diagnostic(`viewer: pattern's green block at ${fmtRect(viewed.found.green)}, overlay at ${fmtRect(viewed.found.yellow)}`);
  await sleep(1500); // let the overlay's fps settle past the first second
  const sharingImg = cropImage(await grabScreen(a.display), APP_WINDOW);
  const viewerImg = cropImage(await grabScreen(b.display), APP_WINDOW);
  assert.ok(saysSharing(sharingImg) && viewerCheckboxes(sharingImg), 'sharing.png shows the share and viewer 1');
  // Its QR code is the viewer link without the code (the code is never on the shared screen).
  const qr = jsQR(new Uint8ClampedArray(sharingImg.rgba.buffer, sharingImg.rgba.byteOffset, sharingImg.rgba.length),
    sharingImg.width, sharingImg.height);
  t.diagnostic(`the sharing screen's QR code reads ${JSON.stringify(qr?.data ?? null)}`);
  assert.equal(qr?.data, printed.split('#')[0], 'the QR code is the viewer link, without its code');
  assert.ok(findColourBox(viewerImg, STATS_YELLOW, { tolerance: 40 }), 'viewer.png shows the stats overlay');
  t.diagnostic(`sharing.png -> ${saveShot('sharing.png', sharingImg, { docs: true })}`);
  t.diagnostic(`viewer.png -> ${saveShot('viewer.png', viewerImg, { docs: true })}`);
}));
