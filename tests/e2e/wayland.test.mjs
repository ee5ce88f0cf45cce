// Porthole on a Wayland desktop, end to end (issue 18): a headless sway (pixman renderer)
// with PipeWire, WirePlumber and the ScreenCast portal, started by scripts/wayland-desktop.sh
// as an unprivileged user in its own D-Bus session; `porthole share --backend wayland`
// inside it; headless Chromium (outside, as root, in the same loopback-only namespace)
// views it. Checked: sway's output colours and their change reach the page; a click reaches
// wev (a Wayland client that prints its input events) at the right place; text typed in
// the page reaches foot running `cat > file`; the clipboard crosses both ways
// (wl-copy / wl-paste, the wlr data-control protocol on the host).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import {
  withScope, startWaylandShare, launchBrowser, openViewer, viewerStatus, waitForColours, pollUntil,
  videoPoint, typeLikeAUser, waitForRights, pageClipboard, dispatchPaste,
} from './lib.mjs';

const SIZE = { width: 640, height: 480 };
const TEST_TIMEOUT = 150_000;
const notRoot = process.getuid?.() !== 0 ? 'needs root: the desktop runs as a user the script creates' : false;

const paint = (desk, colour) => desk.sway('output', 'HEADLESS-1', 'bg', `#${colour}`, 'solid_color');

/** The views (windows) in sway's tree: [{app_id, rect, focused}]. */
async function views(desk) {
  const tree = JSON.parse((await desk.sway('-t', 'get_tree', '-r')).stdout);
  const out = [];
  const walk = (n) => {
    if (n.app_id || n.window) out.push({ app_id: n.app_id, rect: n.rect, focused: n.focused, pid: n.pid });
    for (const c of [...(n.nodes || []), ...(n.floating_nodes || [])]) walk(c);
  };
  walk(tree);
  return out;
}

async function openViewerOf(s, desk) {
  const browser = s.add(await launchBrowser({ viewport: { width: 1024, height: 768 } }));
  const page = s.add(await openViewer(browser, desk.url, { timeoutMs: 30000 }));
  const st = await pollUntil(() => viewerStatus(page), (v) => v.videoWidth === SIZE.width,
    { timeoutMs: 5000, what: `video ${SIZE.width} wide` });
  assert.deepEqual([st.videoWidth, st.videoHeight], [SIZE.width, SIZE.height], 'the video is the output\'s size');
  return page;
}

const CORNERS = [
  { x: 320, y: 240, name: 'centre' }, { x: 40, y: 40, name: 'top left' }, { x: 600, y: 440, name: 'bottom right' },
];

test('a Wayland desktop: its colours and their change, a click and typed text', { timeout: TEST_TIMEOUT, skip: notRoot },
  (t) => withScope(t, async (s) => {
    const desk = await startWaylandShare(s, { ...SIZE, shareArgs: ['--allow-control'] });
    await paint(desk, 'c82828');
    const page = await openViewerOf(s, desk);
    await waitForColours(page, CORNERS, CORNERS.map(() => 'c82828'), 30, 5000);
    await paint(desk, '28b43c');
    await waitForColours(page, CORNERS, CORNERS.map(() => '28b43c'), 30, 3000);
    t.diagnostic('red, then green: sway\'s output reached the page, and its change');
    // The portal's restore token is kept for the next share, readable by its owner only.
    const tokenFile = path.join(desk.stateDir, 'porthole', 'screencast-restore-token');
    assert.ok(existsSync(tokenFile), `the share kept the portal's restore token in ${tokenFile}`);
    assert.equal(statSync(tokenFile).mode & 0o777, 0o600, 'the token file is private');

    // wev prints every input event it gets; foot types into a file. sway tiles them side by
    // side, wev on the left; foot, opened last, has the keyboard.
    const wevLog = path.join(desk.work, 'wev.log');
    const typed = path.join(desk.work, 'typed.txt');
    await desk.sway('exec', `stdbuf -oL wev > ${wevLog} 2>&1`);
    await pollUntil(() => views(desk), (v) => v.length === 1, { timeoutMs: 5000, what: 'the wev window' });
    await desk.sway('exec', `foot --app-id=porthole-typing sh -c 'cat > ${typed}'`);
    const [wev, foot] = await pollUntil(async () => {
      const v = await views(desk);
      return [v.find((w) => w.app_id !== 'porthole-typing'), v.find((w) => w.app_id === 'porthole-typing')];
    }, ([a, b]) => a && b && b.focused && existsSync(typed), { timeoutMs: 10000, what: 'foot beside wev, focused' });
    t.diagnostic(`wev at ${JSON.stringify(wev.rect)}, foot at ${JSON.stringify(foot.rect)}`);
    await waitForRights(page, { control: true });

    // A click in the middle of wev's window reaches wev there (surface coordinates).
    const target = { x: wev.rect.x + Math.round(wev.rect.width / 2), y: wev.rect.y + Math.round(wev.rect.height / 2) };
    const p = await videoPoint(page, target.x, target.y);
    await page.mouse.click(p.x, p.y);
    const log = await pollUntil(() => (existsSync(wevLog) ? readFileSync(wevLog, 'utf8') : ''),
      (l) => /button: 272 \(left\), state: 0 \(released\)/.test(l), { timeoutMs: 5000, what: 'wev saw a left click' });
    const press = log.split('\n').filter((l) => /wl_pointer\] button: .*button: 272 \(left\), state: 1 \(pressed\)/.test(l));
    assert.equal(press.length, 1, `one press of the left button reached wev:\n${log.slice(-2000)}`);
    const motions = [...log.matchAll(/wl_pointer\] (?:enter|motion): .*?x, y: ([\d.]+), ([\d.]+)/g)];
    assert.ok(motions.length > 0, `wev saw the pointer:\n${log.slice(-2000)}`);
    const [sx, sy] = motions.at(-1).slice(1).map(Number);
    const want = { x: target.x - wev.rect.x, y: target.y - wev.rect.y };
    assert.ok(Math.abs(sx - want.x) <= 2 && Math.abs(sy - want.y) <= 2,
      `the click landed at wev's (${sx}, ${sy}), want (${want.x}, ${want.y}) ±2`);

    // A click on foot gives it the keyboard again; then the page types.
    const f = await videoPoint(page, foot.rect.x + foot.rect.width / 2, foot.rect.y + foot.rect.height / 2);
    await page.mouse.click(f.x, f.y);
    await pollUntil(() => views(desk), (v) => v.find((w) => w.app_id === 'porthole-typing')?.focused,
      { timeoutMs: 5000, what: 'foot focused by the click' });
    const text = 'Hello, Wayland 42';
    await typeLikeAUser(page, text);
    await page.keyboard.press('Enter');
    const got = await pollUntil(() => readFileSync(typed, 'utf8'), (c) => c.includes('\n'),
      { timeoutMs: 5000, what: 'a line in foot\'s file' });
    assert.equal(got, `${text}\n`, 'foot got exactly the typed line');
  }));

test('a Wayland desktop: the clipboard crosses both ways', { timeout: TEST_TIMEOUT, skip: notRoot },
  (t) => withScope(t, async (s) => {
    const desk = await startWaylandShare(s, { ...SIZE, shareArgs: ['--allow-clipboard'] });
    const page = await openViewerOf(s, desk);
    await waitForRights(page, { clipboard: true });

    const hostText = 'from the Wayland host ✓';
    const copy = await desk.inSession('wl-copy', [hostText], { detached: true });
    assert.equal(copy.code, 0, 'wl-copy took the clipboard');
    const c = await pollUntil(() => pageClipboard(page), (v) => v?.text === hostText,
      { timeoutMs: 5000, what: `porthole.clipboard.text === ${JSON.stringify(hostText)}` });
    assert.equal(c.mime, 'text/plain', 'it arrives as text');
    t.diagnostic('host -> viewer: wl-copy reached the page');

    const viewerText = 'from the viewer ✓';
    await dispatchPaste(page, { text: viewerText });
    const pasted = await pollUntil(async () => (await desk.inSession('wl-paste', ['--no-newline'])).stdout,
      (v) => v === viewerText, { timeoutMs: 5000, what: `wl-paste prints ${JSON.stringify(viewerText)}` });
    assert.equal(pasted, viewerText);
    t.diagnostic('viewer -> host: the page\'s paste is what wl-paste reads');
    // Our own write is not sent back as a host change.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await pageClipboard(page))?.text, hostText, 'the viewer\'s own paste did not come back to it');
  }));
