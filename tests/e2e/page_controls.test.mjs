// The page's own controls (issue 16): the Monitor menu, the Quality presets and touch input,
// end to end against a real share.
// - Monitors: an Xvfb two monitors wide (RandR monitors LEFT and RIGHT, 1280x720 each, beside
//   the whole screen), its left half painted one colour and its right half another, shared
//   from monitor 0. The page lists LEFT and RIGHT with their sizes; choosing RIGHT shows the
//   right half's colour at the same 1280x720, and a click then lands on the right monitor
//   (xev, xdotool). With control revoked the menu is disabled and says why, and a
//   SelectMonitor sent anyway is refused (input_refused).
// - Quality: "Low bandwidth" brings the share's target to 1 Mbit/s at most, is kept in the
//   browser and sent again when the page connects anew, and "Auto" lets it rise again.
// - Touch, on a phone (390x844, touch events): a tap clicks where it lands, a long press
//   right-clicks, a drag holds the left button from where it starts to where it ends, two
//   fingers scroll (xev on the host).
// - The controls at 1280x800 and 390x844: in view, not overlapping, menus inside the screen;
//   screenshots in artifacts/screenshots/ (test output, not tracked).
// The binary embeds the page it was built with: the browser gets this tree's assets/
// (useTreeAssets) when they differ. Each test has its own Xvfb, share and browser.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdirSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  REPO, withScope, startXvfb, startPattern, startShare, launchBrowser, openViewer, viewerStatus,
  pollUntil, waitForRights, waitForColours, videoPoint, startXev, pointerLocation, sendRaw,
  useTreeAssets, addMonitor,
} from './lib.mjs';

const TEST_TIMEOUT = 90_000;
const WIDE = { width: 2560, height: 720 };
const MONITOR = { width: 1280, height: 720 };
const LEFT_COLOUR = 'c82828';
const RIGHT_COLOUR = '28b43c';
// In the shared picture (one monitor): the middle of its top half, clear of xev's window.
const POINTS = [{ x: 320, y: 150, name: 'top, left part' }, { x: 960, y: 150, name: 'top, right part' }];
// On the right monitor: root x 1500..2100, y 420..670 (picture x 220..820).
const RIGHT_XEV = '600x250+1500+420';
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 800 };

const near = (a, b, tolerance = 2) => Math.abs(a - b) <= tolerance;

/**
 * Xvfb WIDE with RandR monitors LEFT and RIGHT, its left half LEFT_COLOUR and its right half
 * RIGHT_COLOUR (the test pattern's quadrants), xev on the right monitor, and a share of
 * monitor 0; a browser at `viewport` given this tree's page.
 */
async function twoMonitors(s, { shareArgs = [], viewport = DESKTOP, stdin = 'ignore', xev = true } = {}) {
  const x = s.add(await startXvfb(WIDE));
  await addMonitor(x.display, 'LEFT', { x: 0, y: 0, ...MONITOR });
  await addMonitor(x.display, 'RIGHT', { x: MONITOR.width, y: 0, ...MONITOR });
  const pattern = s.add(await startPattern(x.display));
  await pattern.setBlocks([LEFT_COLOUR, RIGHT_COLOUR, LEFT_COLOUR, RIGHT_COLOUR]);
  const events = xev ? s.add(await startXev(x.display, { geometry: RIGHT_XEV })) : null;
  const share = s.add(await startShare({
    display: x.display, args: ['--monitor', '0', '--audio', 'none', '--no-announce', ...shareArgs], stdin,
  }));
  const browser = s.add(await launchBrowser({ viewport }));
  await useTreeAssets(browser, share);
  return { x, xev: events, share, browser };
}

/** The items of a toolbar menu's list: [{text, checked}]. */
function menuItems(page, list) {
  return page.evaluate((sel) => [...document.querySelectorAll(`${sel} button`)].map((b) => ({
    text: b.textContent,
    checked: b.getAttribute('aria-checked') === 'true',
  })), list);
}

/** {visible, disabled, title} of a toolbar button. */
function buttonState(page, id) {
  return page.evaluate((id) => {
    const b = document.getElementById(id);
    return b && { visible: b.getClientRects().length > 0, disabled: b.disabled, title: b.title, text: b.textContent };
  }, id);
}

async function pictureSize(page) {
  const v = await viewerStatus(page);
  return { width: v.videoWidth, height: v.videoHeight };
}

test('the Monitor menu lists the host\'s monitors and switches the one shared; without control it is disabled',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const { x, xev, share, browser } = await twoMonitors(s, { shareArgs: ['--allow-control'], stdin: 'pipe' });
    const page = s.add(await openViewer(browser, share.viewerUrl()));
    await waitForRights(page, { control: true });
    await page.waitForSelector('#btn-monitor', { state: 'visible', timeout: 5000 });
    assert.deepEqual(await pictureSize(page), MONITOR, 'monitor 0 is shared: 1280x720');
    await waitForColours(page, POINTS, [LEFT_COLOUR, LEFT_COLOUR]);

    await page.click('#btn-monitor');
    await page.waitForSelector('#monitor-list', { state: 'visible', timeout: 2000 });
    const items = await menuItems(page, '#monitor-list');
    t.diagnostic(`monitor menu: ${JSON.stringify(items)}`);
    assert.deepEqual(items.slice(0, 2), [
      { text: 'LEFT — 1280×720', checked: true },
      { text: 'RIGHT — 1280×720', checked: false },
    ], 'LEFT (shared, marked) and RIGHT, with their sizes');
    assert.equal(items.length, 3, 'and the whole screen');
    assert.match(items[2].text, /^screen( \(primary\))? — 2560×720$/);

    const chose = Date.now();
    await page.getByRole('menuitemradio', { name: /^RIGHT/ }).click();
    await waitForColours(page, POINTS, [RIGHT_COLOUR, RIGHT_COLOUR], 40, 5000);
    t.diagnostic(`the right monitor's picture ${Date.now() - chose} ms after the choice`);
    assert.deepEqual(await pictureSize(page), MONITOR, 'still 1280x720');
    assert.equal(await page.isVisible('#monitor-list'), false, 'the menu closed');
    const marked = await pollUntil(() => menuItems(page, '#monitor-list'),
      (list) => list[1]?.checked && !list[0]?.checked, { timeoutMs: 3000, what: 'RIGHT marked as shared' });
    assert.deepEqual(marked.map((i) => i.checked), [false, true, false]);
    assert.match((await buttonState(page, 'btn-monitor')).title, /Shared: RIGHT — 1280×720/);

    // The page's click now lands on the right monitor.
    const target = { x: 500, y: 500 }; // root (1780, 500): inside xev's window
    const p = await videoPoint(page, target.x, target.y);
    const mark = xev.mark();
    await page.mouse.click(p.x, p.y);
    const press = await xev.waitFor((e) => e.type === 'ButtonPress' && e.button === 1, 5000, 'the click on the host', mark);
    assert.ok(near(press.rootX, MONITOR.width + target.x) && near(press.rootY, target.y),
      `the click at root (${press.rootX}, ${press.rootY}), want (${MONITOR.width + target.x}, ${target.y})`);
    const loc = await pointerLocation(x.display);
    assert.ok(loc.x >= MONITOR.width, `the host pointer on the right monitor: ${JSON.stringify(loc)}`);
    assert.equal((await share.stats()).input_refused, 0, 'nothing refused from a viewer with control');

    // Control taken away: the menu stays (the viewer sees what is shared) but is disabled and
    // says why; a SelectMonitor sent anyway is refused.
    share.stdin.write('revoke 1 control\n');
    await waitForRights(page, { control: false });
    const btn = await pollUntil(() => buttonState(page, 'btn-monitor'), (b) => b.visible && b.disabled,
      { timeoutMs: 3000, what: 'the Monitor button disabled' });
    t.diagnostic(`without control: ${JSON.stringify(btn)}`);
    assert.match(btn.title, /only a viewer with control/i);
    const before = await share.stats();
    assert.equal(await sendRaw(page, 'input', { type: 'SelectMonitor', index: 0 }), true, 'sent anyway');
    const after = await pollUntil(() => share.stats(), (st) => st.input_refused > before.input_refused,
      { timeoutMs: 5000, what: 'input_refused to grow' });
    t.diagnostic(`input_refused ${before.input_refused} -> ${after.input_refused}`);
    await sleep(500); // a switch would take ~100 ms
    await waitForColours(page, POINTS, [RIGHT_COLOUR, RIGHT_COLOUR], 40, 1000);
    assert.equal(await page.evaluate(() => window.porthole.monitors.current), 1, 'still sharing RIGHT');
  }));

test('Quality: "Low bandwidth" caps the share\'s target at 1 Mbit/s, is kept and sent again, "Auto" lifts it',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const x = s.add(await startXvfb(MONITOR));
    s.add(await startPattern(x.display));
    const share = s.add(await startShare({ display: x.display, args: ['--audio', 'none', '--no-announce'] }));
    const browser = s.add(await launchBrowser({ viewport: DESKTOP }));
    await useTreeAssets(browser, share);
    const page = s.add(await openViewer(browser, share.viewerUrl()));
    await waitForRights(page, { view: true });
    await page.waitForSelector('#btn-quality', { state: 'visible', timeout: 5000 });
    assert.equal(await page.isVisible('#monitor-menu'), false, 'no Monitor menu with one monitor');
    const start = await share.stats();
    t.diagnostic(`at the start: target_kbps ${start.target_kbps}, path_estimate_min_kbps ${start.path_estimate_min_kbps}`);

    await page.click('#btn-quality');
    const items = await menuItems(page, '#quality-list');
    assert.deepEqual(items.map((i) => [i.text.replace(/(Auto|Balanced|Low bandwidth).*/, '$1'), i.checked]),
      [['Auto', true], ['Balanced', false], ['Low bandwidth', false]], `the presets, Auto first: ${JSON.stringify(items)}`);
    let since = Date.now();
    await page.getByRole('menuitemradio', { name: /^Low bandwidth/ }).click();
    let st = await pollUntil(() => share.stats(), (v) => v.target_kbps > 0 && v.target_kbps <= 1000,
      { timeoutMs: 10000, what: 'target_kbps <= 1000' });
    t.diagnostic(`Low bandwidth: target_kbps ${st.target_kbps} (estimate ${st.path_estimate_min_kbps}) ` +
      `${Date.now() - since} ms after the choice`);
    assert.equal(await page.evaluate(() => localStorage.getItem('porthole.quality')), 'low', 'kept in the browser');
    await page.click('#btn-stats');
    await pollUntil(() => page.textContent('#stats'), (text) => /quality Low bandwidth: at most 1000 kbit\/s/.test(text),
      { timeoutMs: 3000, what: 'the stats panel showing the limit' });

    // A new connection (the page loaded again) starts without a limit: the page sends it again.
    await page.reload({ waitUntil: 'load' });
    await pollUntil(() => viewerStatus(page), (v) => v.state === 'connected' && v.videoWidth > 0,
      { timeoutMs: 20000, what: 'the reloaded page connected' });
    st = await pollUntil(() => share.stats(),
      (v) => v.viewers_connected === 1 && v.path_estimate_min_kbps > 0 && v.path_estimate_min_kbps <= 1000 &&
        v.target_kbps <= 1000,
      { timeoutMs: 10000, what: 'the new connection capped at 1000 kbit/s' });
    t.diagnostic(`after reloading: target_kbps ${st.target_kbps}, estimate ${st.path_estimate_min_kbps}`);
    assert.equal(await page.evaluate(() => window.porthole.quality.preset), 'low', 'the page remembered Low bandwidth');

    since = Date.now();
    await page.click('#btn-quality');
    await page.getByRole('menuitemradio', { name: /^Auto/ }).click();
    st = await pollUntil(() => share.stats(), (v) => v.target_kbps > 1000 && v.path_estimate_min_kbps > 1000,
      { timeoutMs: 15000, intervalMs: 250, what: 'target_kbps and the estimate above 1000 again' });
    t.diagnostic(`Auto: target_kbps ${st.target_kbps} (estimate ${st.path_estimate_min_kbps}) ${Date.now() - since} ms after`);
    assert.equal(await page.evaluate(() => localStorage.getItem('porthole.quality')), null, 'Auto is the default: nothing kept');
  }));

/** A CDP session sending touch events: points [{x, y}] (ids by position in the list). */
async function touchscreen(page) {
  const cdp = await page.context().newCDPSession(page);
  const send = (type, points) => cdp.send('Input.dispatchTouchEvent', {
    type, touchPoints: points.map((p, id) => ({ x: p.x, y: p.y, id, radiusX: 2, radiusY: 2, force: 1 })),
  });
  return {
    start: (points) => send('touchStart', points),
    move: (points) => send('touchMove', points),
    end: () => send('touchEnd', []),
    /** Moves `from` to `to` (lists of points, same length) in `steps` moves, `ms` apart. */
    async glide(from, to, { steps = 10, ms = 16 } = {}) {
      for (let i = 1; i <= steps; i++) {
        await send('touchMove', from.map((p, k) => ({
          x: p.x + ((to[k].x - p.x) * i) / steps, y: p.y + ((to[k].y - p.y) * i) / steps,
        })));
        await sleep(ms);
      }
    },
    stop: () => cdp.detach().catch(() => {}),
  };
}

test('touch on a phone: a tap clicks, a long press right-clicks, a drag holds the button, two fingers scroll',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const x = s.add(await startXvfb(MONITOR));
    s.add(await startPattern(x.display));
    const xev = s.add(await startXev(x.display, { geometry: '800x600+100+100' }));
    const share = s.add(await startShare({ display: x.display, args: ['--allow-control', '--audio', 'none', '--no-announce'] }));
    const browser = s.add(await launchBrowser({ viewport: PHONE }));
    await useTreeAssets(browser, share);
    const page = s.add(await openViewer(browser, share.viewerUrl(), { context: { hasTouch: true, isMobile: true } }));
    await waitForRights(page, { control: true });
    assert.equal(await page.evaluate(() => matchMedia('(pointer: coarse)').matches), true, 'a touch screen');
    const touch = await touchscreen(page);
    s.add({ label: 'touch', stop: touch.stop });
    // A CSS pixel is ~3.3 host pixels here.
    const scale = (await videoPoint(page, 0, 0)).box.width / MONITOR.width;
    const tolerance = Math.ceil(1 / scale) + 1;
    const pressesSince = (mark) => xev.since(mark).filter((e) => e.type === 'ButtonPress').map((e) => e.button);

    // A tap: a left click there.
    let p = await videoPoint(page, 700, 400);
    let mark = xev.mark();
    await page.touchscreen.tap(p.x, p.y);
    let press = await xev.waitFor((e) => e.type === 'ButtonPress', 5000, 'the tap\'s ButtonPress', mark);
    await xev.waitFor((e) => e.type === 'ButtonRelease' && e.button === 1, 5000, 'the tap\'s ButtonRelease', mark);
    t.diagnostic(`tap: button ${press.button} at (${press.rootX}, ${press.rootY}), want (700, 400) ±${tolerance}`);
    assert.equal(press.button, 1, 'a tap is a left click');
    assert.ok(near(press.rootX, 700, tolerance) && near(press.rootY, 400, tolerance), 'where the finger touched');

    // A long press: a right click there, and no left click.
    p = await videoPoint(page, 300, 500);
    mark = xev.mark();
    await touch.start([p]);
    press = await xev.waitFor((e) => e.type === 'ButtonPress', 3000, 'the long press\'s ButtonPress', mark);
    await touch.end();
    await xev.waitFor((e) => e.type === 'ButtonRelease' && e.button === 3, 5000, 'the release of button 3', mark);
    t.diagnostic(`long press: button ${press.button} at (${press.rootX}, ${press.rootY})`);
    assert.equal(press.button, 3, 'a long press is a right click');
    assert.ok(near(press.rootX, 300, tolerance) && near(press.rootY, 500, tolerance), 'where the finger rested');
    await sleep(300);
    assert.deepEqual(pressesSince(mark), [3], 'only the right click');

    // A drag: the left button held from where the finger lands to where it lifts.
    const from = await videoPoint(page, 200, 200);
    const to = await videoPoint(page, 600, 300);
    mark = xev.mark();
    await touch.start([from]);
    await touch.glide([from], [to]);
    await touch.end();
    const release = await xev.waitFor((e) => e.type === 'ButtonRelease', 5000, 'the drag\'s ButtonRelease', mark);
    press = xev.since(mark).find((e) => e.type === 'ButtonPress');
    t.diagnostic(`drag: press ${press?.button} at (${press?.rootX}, ${press?.rootY}), ` +
      `release ${release.button} at (${release.rootX}, ${release.rootY})`);
    assert.equal(press?.button, 1, 'the drag holds the left button');
    assert.ok(near(press.rootX, 200, tolerance) && near(press.rootY, 200, tolerance), 'pressed where it started');
    assert.equal(release.button, 1);
    assert.ok(near(release.rootX, 600, tolerance) && near(release.rootY, 300, tolerance), 'released where it ended');
    await sleep(300);
    assert.deepEqual(pressesSince(mark), [1], 'one press for the whole drag');

    // Two fingers: up scrolls down (button 5), down scrolls up (button 4); nothing clicks.
    // (The picture is ~220 px high here: each gesture starts and stays on it.)
    const fingers = async (hy) => [await videoPoint(page, 450, hy), await videoPoint(page, 550, hy)];
    const scroll = async (fromY, toY) => {
      const [from, to] = [await fingers(fromY), await fingers(toY)];
      const m = xev.mark();
      await touch.start(from);
      await touch.glide(from, to);
      await touch.end();
      await pollUntil(async () => pressesSince(m), (bs) => bs.length >= 2, { timeoutMs: 5000, what: 'wheel presses' });
      await sleep(300);
      const buttons = pressesSince(m);
      t.diagnostic(`two fingers from host y ${fromY} to ${toY} (${Math.round(to[0].y - from[0].y)} px): ` +
        `buttons ${JSON.stringify(buttons)}`);
      return buttons;
    };
    let buttons = await scroll(600, 200);
    assert.ok(buttons.length >= 2 && buttons.every((n) => n === 5), `fingers up: only wheel-down presses: ${buttons}`);
    buttons = await scroll(200, 600);
    assert.ok(buttons.length >= 2 && buttons.every((n) => n === 4), `fingers down: only wheel-up presses: ${buttons}`);
    const st = await share.stats();
    assert.equal(st.input_refused, 0, `nothing refused: ${JSON.stringify(st)}`);
  }));

test('the controls at 1280x800 and on a 390x844 phone: in view, apart, menus on screen; screenshots saved',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const { share, browser } = await twoMonitors(s, { shareArgs: ['--allow-control'], xev: false });
    const dir = path.join(REPO, 'artifacts', 'screenshots');
    mkdirSync(dir, { recursive: true });
    for (const viewport of [DESKTOP, PHONE]) {
      browser.viewport = viewport;
      const phone = viewport === PHONE;
      const page = s.add(await openViewer(browser, share.viewerUrl(),
        { context: phone ? { hasTouch: true, isMobile: true } : {} }));
      await waitForRights(page, { control: true });
      await page.waitForSelector('#btn-monitor', { state: 'visible', timeout: 5000 });
      await page.click('#btn-stats');
      await pollUntil(() => page.textContent('#stats'), (text) => /monitor LEFT — 1280×720/.test(text),
        { timeoutMs: 5000, what: 'the stats panel with the monitor shared' });
      const layout = () => page.evaluate(() => {
        const box = (el) => el && el.getClientRects().length ? el.getBoundingClientRect().toJSON() : null;
        return {
          scrollWidth: document.documentElement.scrollWidth,
          toolbar: box(document.getElementById('toolbar')),
          stats: box(document.getElementById('stats')),
          items: [...document.getElementById('toolbar').children].map((el) => ({ id: el.id, ...box(el) }))
            .filter((b) => b.width),
          lists: [...document.querySelectorAll('.menu-list')].map((el) => ({ id: el.id, ...box(el) })).filter((b) => b.width),
        };
      });
      const overlap = (p, q) => p.left < q.right - 0.5 && q.left < p.right - 0.5 && p.top < q.bottom - 0.5 && q.top < p.bottom - 0.5;
      const inView = (b) => b.left >= 0 && b.top >= 0 && b.right <= viewport.width && b.bottom <= viewport.height;
      const where = `at ${viewport.width}x${viewport.height}`;
      let l = await layout();
      t.diagnostic(`${where}: toolbar ${JSON.stringify(l.toolbar)}, items ${l.items.map((i) => i.id).join(' ')}`);
      assert.ok(l.scrollWidth <= viewport.width, `no sideways scrolling ${where}: ${l.scrollWidth}`);
      for (const id of ['keys-menu', 'monitor-menu', 'quality-menu', 'btn-stats']) {
        assert.ok(l.items.some((i) => i.id === id), `${id} shown ${where}`);
      }
      for (const [i, p] of l.items.entries()) {
        assert.ok(inView(p), `${p.id || 'status'} in view ${where}: ${JSON.stringify(p)}`);
        for (const q of l.items.slice(i + 1)) {
          assert.ok(!overlap(p, q), `${p.id} and ${q.id} apart ${where}: ${JSON.stringify([p, q])}`);
        }
      }
      assert.ok(!overlap(l.stats, l.toolbar), `the stats panel clear of the toolbar ${where}: ${JSON.stringify([l.stats, l.toolbar])}`);
      // On the phone, fingers: taps.
      const press = (selector) => (phone ? page.tap(selector) : page.click(selector));
      for (const menu of ['monitor', 'quality']) {
        await press(`#btn-${menu}`);
        await page.waitForSelector(`#${menu}-list`, { state: 'visible', timeout: 2000 });
        l = await layout();
        const list = l.lists.find((b) => b.id === `${menu}-list`);
        assert.equal(l.lists.length, 1, `one menu open at a time ${where}`);
        assert.ok(inView(list), `the ${menu} menu on screen ${where}: ${JSON.stringify(list)}`);
        const name = `page-${menu}-menu-${viewport.width}x${viewport.height}.png`;
        await page.screenshot({ path: path.join(dir, name) });
        assert.ok(statSync(path.join(dir, name)).size > 1000, `${name} written`);
        t.diagnostic(`${name}: menu ${JSON.stringify(list)}`);
      }
      await press('#btn-quality'); // closes its menu
      assert.equal((await layout()).lists.length, 0, 'the menu closed again');
      if (phone) {
        // A monitor picked with a finger.
        await press('#btn-monitor');
        await page.getByRole('menuitemradio', { name: /^RIGHT/ }).tap();
        await pollUntil(() => page.evaluate(() => window.porthole.monitors?.current), (c) => c === 1,
          { timeoutMs: 5000, what: 'RIGHT shared after a tap on it' });
      }
      await page.stop();
    }
  }));
