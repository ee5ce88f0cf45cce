// Issue 13, findings 6 and 8, end to end with the real binary:
// - secrets stay out of argv: `porthole share` takes its code from PORTHOLE_CODE or from
//   `--code-file -` (standard input), and then no process's /proc/PID/cmdline holds it;
//   `--code` still works but warns (and there the scan does find it: the check can fail);
// - the app remembers a link in settings.json with mode 0600 and without its #code=;
// - the native viewer sends nothing of its own clipboard to a host that holds the
//   clipboard right until its user ticks "Send my clipboard" (checked with xclip on both
//   screens);
// - an mDNS record that copies a share's name and fingerprint from another machine is
//   listed next to it, not instead of it (two network namespaces, avahi-publish).
// Loopback only, except the mDNS test's private veth LAN.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync, existsSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  PORTHOLE_BIN, withScope, startXvfb, startShare, randomCode, pollUntil, runToolOk,
  startPortholeApp, grabScreen, findColourSquares, findColourBox, readClipboard, ownClipboard,
  startLan, startShareIn, startListIn, portholeList, signedFetch,
} from './lib.mjs';

const TEST_TIMEOUT = 120_000;
const CHECKBOX = '3c3c3c'; // egui's dark-theme checkbox box
const TOOLBAR = { x: 0, y: 0, width: 900, height: 40 };

/** PIDs whose command line contains `needle`. */
function processesWithInArgv(needle) {
  const found = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`);
      if (argv.includes(Buffer.from(needle))) found.push({ pid, argv: argv.toString().split('\0').join(' ') });
    } catch { /* gone */ }
  }
  return found;
}

/**
 * `porthole share` started by hand (lib's startShare always passes --code): with `env`
 * added, `stdin` written to its standard input. Resolves to {url, code, pid, stderr(), stop}.
 */
async function spawnShare(t, s, { display, args = [], env = {}, stdin = null }) {
  const child = spawn(PORTHOLE_BIN, ['share', '--display', display, '--listen', '127.0.0.1:0',
    '--audio', 'none', '--no-announce', ...args], {
    env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (d) => { stderr += d; });
  child.stdout.on('data', (d) => { stdout += d; });
  if (stdin != null) child.stdin.end(stdin); else child.stdin.end();
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  s.add({
    label: `porthole share ${args.join(' ')}`,
    logText: () => `stdout:\n${stdout}\nstderr:\n${stderr}`,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      await Promise.race([exited, sleep(5000).then(() => child.kill('SIGKILL'))]);
    },
  });
  const line = await pollUntil(() => stdout, (o) => /^viewer: http:\/\/\S+$/m.test(o),
    { timeoutMs: 30000, what: `"viewer: URL" from porthole share (stderr: ${stderr})` });
  const url = line.match(/^viewer: (http:\/\/\S+)$/m)[1];
  const code = new URLSearchParams(new URL(url).hash.slice(1)).get('code');
  t.diagnostic(`share ${child.pid} printed ${url.replace(code, '<code>')}`);
  return { url, code, origin: new URL(url).origin, pid: child.pid, stderr: () => stderr };
}

/** The status of a signed GET /api/stats with `code` (a code that does not pair: 401). */
async function statsStatus(origin, code) {
  let r;
  try {
    r = await signedFetch(new URL('/api/stats', origin), code);
  } catch (err) {
    if (err.kind === 'wrong-code') return 401;
    throw err;
  }
  await r.text();
  return r.status;
}

const ARGV_WARNING = /other users of this machine can\s+read/;

test('the access code can be given without putting it in argv', { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
  const x = s.add(await startXvfb({ width: 320, height: 240 }));

  // From the environment.
  const envCode = `env-${randomCode()}`;
  const a = await spawnShare(t, s, { display: x.display, env: { PORTHOLE_CODE: envCode } });
  assert.equal(a.code, envCode, 'the share uses PORTHOLE_CODE');
  assert.equal(await statsStatus(a.origin, envCode), 200, 'the code from the environment is accepted');
  assert.deepEqual(processesWithInArgv(envCode), [], 'no command line holds the code');
  assert.doesNotMatch(a.stderr(), ARGV_WARNING, 'no warning when argv is clean');
  const environ = readFileSync(`/proc/${a.pid}/environ`).toString();
  t.diagnostic(`/proc/${a.pid}/environ mode ${(statSync(`/proc/${a.pid}/environ`).mode & 0o777).toString(8)} ` +
    `(the starting environment: ${environ.includes(envCode) ? 'holds' : 'does not hold'} the code)`);

  // From standard input.
  const stdinCode = `stdin-${randomCode()}`;
  const b = await spawnShare(t, s, { display: x.display, args: ['--code-file', '-'], stdin: `${stdinCode}\n` });
  assert.equal(b.code, stdinCode, 'the share uses the code read from standard input');
  assert.equal(await statsStatus(b.origin, stdinCode), 200);
  assert.deepEqual(processesWithInArgv(stdinCode), [], 'no command line holds the code');

  // --code still works, and says why it should not be used; the scan sees it there.
  const argvCode = `argv-${randomCode()}`;
  const c = await spawnShare(t, s, { display: x.display, args: ['--code', argvCode] });
  assert.equal(c.code, argvCode);
  const seen = processesWithInArgv(argvCode);
  assert.ok(seen.some((p) => Number(p.pid) === c.pid), `the scan finds a code in argv: ${JSON.stringify(seen)}`);
  await pollUntil(() => c.stderr(), (e) => ARGV_WARNING.test(e), { timeoutMs: 5000, what: 'the --code warning' });

  // Both a flag and a file: refused, with the reason.
  const both = spawn(PORTHOLE_BIN, ['share', '--display', x.display, '--listen', '127.0.0.1:0',
    '--code', argvCode, '--code-file', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
  both.stdin.end('x\n');
  let bothErr = '';
  both.stderr.on('data', (d) => { bothErr += d; });
  const r = await new Promise((resolve) => both.once('exit', (code) => resolve(code)));
  assert.notEqual(r, 0);
  assert.match(bothErr, /--code or --code-file, not both/);
}));

test('the app remembers a link in a private settings.json, without its code', { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
  const a = s.add(await startXvfb({ width: 320, height: 240 }));
  const share = s.add(await startShare({ display: a.display, args: ['--audio', 'none'] }));
  const b = s.add(await startXvfb({ width: 1280, height: 800 }));
  const viewer = s.add(startPortholeApp({ display: b.display, args: ['view', share.viewerUrl()] }));
  const file = viewer.settingsFile;
  await pollUntil(() => existsSync(file), (e) => e, { timeoutMs: 20000, what: `${file} written` });
  const mode = statSync(file).mode & 0o777;
  const text = readFileSync(file, 'utf8');
  t.diagnostic(`settings.json mode ${mode.toString(8)}: ${text.replace(/\s+/g, ' ')}`);
  assert.equal(mode, 0o600, 'settings.json is readable by its owner only');
  assert.ok(!text.includes(share.code), 'settings.json does not hold the code');
  assert.doesNotMatch(text, /code=/);
  assert.equal(JSON.parse(text).last_address, share.viewerUrl().replace(/#.*$/, ''), 'the link is remembered without it');
  const leftovers = readdirSync(viewer.settingsFile.replace(/\/[^/]+$/, ''));
  assert.deepEqual(leftovers, ['settings.json'], 'no temporary file left behind');
}));

/** The viewer toolbar's "Send my clipboard" checkbox on `display`, with `checked`, or null. */
function sendClipboardBox(img) {
  const squares = findColourSquares(img, CHECKBOX, { region: TOOLBAR });
  if (squares.length !== 1) return null;
  const sq = squares[0];
  const tick = findColourBox(img, 'd0d0d0', { tolerance: 0x50, region: sq });
  return { ...sq, checked: !!tick && tick.count >= 5 };
}

async function waitForScreen(display, find, { timeoutMs = 20000, what }) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const found = find(await grabScreen(display));
    if (found) return found;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} on ${display}`);
    await sleep(200);
  }
}

test('the native viewer sends no local copy to the host before its user allows it', { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
  const a = s.add(await startXvfb({ width: 640, height: 480 }));
  const share = s.add(await startShare({ display: a.display, args: ['--audio', 'none', '--allow-clipboard'] }));
  const b = s.add(await startXvfb({ width: 1280, height: 800 }));
  await runToolOk('xdotool', ['mousemove', '1279', '799'], { display: b.display });
  const viewer = s.add(startPortholeApp({ display: b.display, args: ['view', share.viewerUrl()] }));

  // Connected, with the clipboard right (it comes with the session's first messages).
  await pollUntil(() => share.stats(), (st) => st.viewers_connected === 1,
    { timeoutMs: 30000, what: 'the native viewer connected' });
  await sleep(1500);

  // Something copied on the viewer's machine stays there.
  const first = `viewer-private-${randomCode()}`;
  s.add(await ownClipboard(b.display, first));
  await sleep(3000);
  const host1 = await readClipboard(a.display);
  t.diagnostic(`host clipboard 3 s after the viewer's copy: ${JSON.stringify(host1?.toString() ?? null)}`);
  assert.notEqual(host1?.toString(), first, 'the local copy did not reach the host');

  // The toolbar offers the toggle, unticked.
  const box = await waitForScreen(b.display, sendClipboardBox,
    { timeoutMs: 10000, what: 'the "Send my clipboard" checkbox in the viewer toolbar' });
  assert.equal(box.checked, false, 'off by default');

  // The user ticks it: later copies go.
  await runToolOk('xdotool', ['mousemove', '--sync', String(Math.round(box.cx)), String(Math.round(box.cy)), 'click', '1'], { display: b.display });
  // Off it again: a hovered checkbox has another colour.
  await runToolOk('xdotool', ['mousemove', '1279', '799'], { display: b.display });
  await waitForScreen(b.display, (img) => sendClipboardBox(img)?.checked, { timeoutMs: 5000, what: 'the checkbox ticked' });
  const second = `viewer-allowed-${randomCode()}`;
  s.add(await ownClipboard(b.display, second));
  const host2 = await pollUntil(() => readClipboard(a.display), (v) => v?.toString() === second,
    { timeoutMs: 10000, what: 'the allowed copy on the host clipboard' });
  t.diagnostic(`host clipboard after allowing: ${host2.toString()}`);
  assert.equal(viewer.exitInfo, null, 'the viewer is still running');
}));

/**
 * From `node`, multicasts an unsolicited mDNS answer (PTR, SRV, TXT and A, cache-flush set,
 * as a responder announcing a service) for instance `name` of _porthole._tcp at `node`'s
 * address and `port`, `times` times `everyMs` apart: a spoof copying a share's name.
 */
async function sendMdnsSpoof(node, { name, port, txt, times = 12, everyMs = 400 }) {
  const script = `
const dgram = require('node:dgram');
const [ip4, name, port, txtJson, times, everyMs] = process.argv.slice(-6);
const nameBytes = (n) => Buffer.concat([...n.split('.').map((l) => Buffer.concat([Buffer.from([Buffer.byteLength(l)]), Buffer.from(l)])), Buffer.from([0])]);
const u16 = (v) => Buffer.from([v >> 8, v & 255]);
const u32 = (v) => Buffer.from([v >>> 24, (v >> 16) & 255, (v >> 8) & 255, v & 255]);
const rr = (owner, type, cls, ttl, rdata) => Buffer.concat([nameBytes(owner), u16(type), u16(cls), u32(ttl), u16(rdata.length), rdata]);
const inst = name + '._porthole._tcp.local';
const host = 'spoof-' + process.pid + '.local';
const txt = Buffer.concat(JSON.parse(txtJson).map((t) => Buffer.concat([Buffer.from([Buffer.byteLength(t)]), Buffer.from(t)])));
const packet = Buffer.concat([
  Buffer.from([0, 0, 0x84, 0, 0, 0, 0, 4, 0, 0, 0, 0]),
  rr('_porthole._tcp.local', 12, 1, 4500, nameBytes(inst)),
  rr(inst, 33, 0x8001, 120, Buffer.concat([u16(0), u16(0), u16(Number(port)), nameBytes(host)])),
  rr(inst, 16, 0x8001, 4500, txt),
  rr(host, 1, 0x8001, 120, Buffer.from(ip4.split('.').map(Number))),
]);
const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
s.bind(5353, async () => {
  s.setMulticastInterface(ip4);
  for (let i = 0; i < Number(times); i++) {
    await new Promise((res, rej) => s.send(packet, 5353, '224.0.0.251', (e) => (e ? rej(e) : res())));
    await new Promise((res) => setTimeout(res, Number(everyMs)));
  }
  console.log('sent');
  s.close();
});
`;
  const file = path.join(tmpdir(), `porthole-mdns-spoof-${process.pid}-${Date.now()}.cjs`);
  writeFileSync(file, script);
  try {
    await node.runOk(process.execPath, [file, node.ip4, name, String(port), JSON.stringify(txt), String(times), String(everyMs)],
      { timeoutMs: times * everyMs + 5000 });
  } finally {
    rmSync(file, { force: true });
  }
}

test('an mDNS record copying a share\'s name and fingerprint is listed beside it, not instead', { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
  const lan = s.add(await startLan());
  const x = s.add(await startXvfb({ width: 320, height: 240 }));
  const name = `studio-${randomCode().slice(0, 6)}`;
  const share = s.add(await startShareIn(lan.a, { display: x.display, args: ['--name', name, '--audio', 'none'] }));
  const before = await portholeList(lan.b, { timeout: 3 });
  assert.ok(before.entries?.some((e) => e.name === name && e.port === share.port), `${name} listed from b: ${before.stdout}`);

  // b announces the same name and the same fingerprint text, with its own address.
  const spoofPort = share.port === 7399 ? 7398 : 7399;
  const txt = ['v=1', 'video=1', 'audio=0', 'control=0', `fp=${share.shortFingerprint}`];
  const listing = s.add(startListIn(lan.a, { timeout: 7 }));
  await sleep(1500); // the browse has found the real share
  await sendMdnsSpoof(lan.b, { name, port: spoofPort, txt });
  const r = await listing.done;
  const entries = (r.entries || []).filter((e) => e.name === name);
  t.diagnostic(`listed from a while b spoofed: ${JSON.stringify(entries)}`);
  assert.ok(entries.some((e) => e.port === spoofPort && e.addresses.includes(lan.b.ip4)),
    `the spoofed record was heard: ${r.stdout}\n${r.stderr}`);
  assert.ok(entries.some((e) => e.port === share.port && e.addresses.includes(lan.a.ip4)),
    `the real share is still listed, not replaced by the newer record: ${JSON.stringify(entries)}`);
  assert.equal(entries.length, 2, 'two entries of that name');
}));
