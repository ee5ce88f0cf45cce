// Helpers for Porthole's end-to-end tests: Xvfb, the `porthole test-pattern` painter,
// `porthole share`, and headless Chromium (Debian's, driven by playwright-core).
//
// Everything here talks to 127.0.0.1 only; the suite is meant to run inside
// `unshare -n` with nothing but loopback up.
//
// Every start*/launch*/open* helper returns an object with an async, idempotent stop().
// Spawned processes keep their stdout+stderr in a bounded log buffer (`logText()`), which
// `withScope` prints when a test fails. Live children are also SIGKILLed when this Node
// process exits, whatever happens.

import { pair } from '../../assets/pake.js';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  existsSync, unlinkSync, readFileSync, accessSync, mkdtempSync, rmSync, writeFileSync, constants as fsConstants,
} from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { deflateSync, inflateSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PORTHOLE_BIN = process.env.PORTHOLE_BIN || path.join(REPO, 'target', 'debug', 'porthole');
export const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const FIREFOX_BIN = process.env.FIREFOX_BIN || '/usr/bin/firefox-esr';
const VERBOSE = !!process.env.PORTHOLE_E2E_VERBOSE;
const LOG_LIMIT = 512 * 1024; // bytes kept per process (the tail)

// ---------------------------------------------------------------------------------------
// Process bookkeeping

const live = new Set(); // ChildProcess objects still running

function killGroup(child, signal) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal); // detached: the child leads its own process group
  } catch {
    try { child.kill(signal); } catch { /* already gone */ }
  }
}

process.on('exit', () => {
  for (const child of live) killGroup(child, 'SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    for (const child of live) killGroup(child, 'SIGKILL');
    process.exit(128 + ({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 }[sig]));
  });
}

const t0 = Date.now();
function stamp() {
  return `+${((Date.now() - t0) / 1000).toFixed(3)}s`;
}

/** A bounded text log: keeps the tail when it grows past LOG_LIMIT. */
class LogBuffer {
  constructor(name) {
    this.name = name;
    this.text = '';
    this.dropped = 0;
  }
  add(line) {
    line = line.replace(/\x1b\[[0-9;]*[A-Za-z]/g, ''); // ANSI colours
    this.text += `[${stamp()}] ${line}\n`;
    if (VERBOSE) process.stderr.write(`[${this.name} ${stamp()}] ${line}\n`);
    if (this.text.length > LOG_LIMIT) {
      const cut = this.text.length - LOG_LIMIT;
      this.dropped += cut;
      this.text = this.text.slice(cut);
    }
  }
  toString() {
    return (this.dropped ? `[... ${this.dropped} earlier characters dropped ...]\n` : '') + this.text;
  }
}

/** Splits a stream into lines and hands each to onLine. */
function lineSplitter(stream, onLine) {
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    pending += chunk;
    let i;
    while ((i = pending.indexOf('\n')) >= 0) {
      onLine(pending.slice(0, i).replace(/\r$/, ''));
      pending = pending.slice(i + 1);
    }
  });
  stream.on('end', () => {
    if (pending) onLine(pending);
    pending = '';
  });
}

/**
 * Spawns a process in its own process group with stdout/stderr captured.
 * Returns a handle with: child, name, log (LogBuffer), stderr (LogBuffer, stderr only),
 * lines (stdout lines), exited (Promise<{code, signal}>), waitLine(re, ms),
 * stop({signal, graceMs}) -> {code, signal, killed}.
 */
function spawnLogged(name, cmd, args, { env, stdin = 'ignore' } = {}) {
  const log = new LogBuffer(name);
  const stderr = new LogBuffer(name);
  log.add(`$ ${[cmd, ...args].join(' ')}`);
  const child = spawn(cmd, args, {
    env: env || process.env,
    stdio: [stdin, 'pipe', 'pipe'],
    detached: true,
  });
  live.add(child);

  const lines = [];
  let cursor = 0;
  const waiters = new Set();
  let exitInfo = null;
  let spawnError = null;

  const exited = new Promise((resolve) => {
    child.once('error', (err) => {
      spawnError = err;
      log.add(`spawn error: ${err.message}`);
      exitInfo = exitInfo || { code: null, signal: null, error: err };
      live.delete(child);
      resolve(exitInfo);
      for (const w of waiters) w.check();
    });
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      log.add(`exited: code=${code} signal=${signal}`);
      live.delete(child);
      // Let the pipes drain so a last stdout line is seen before waiters give up.
      setImmediate(() => {
        resolve(exitInfo);
        for (const w of waiters) w.check();
      });
    });
  });

  lineSplitter(child.stdout, (line) => {
    log.add(`out| ${line}`);
    lines.push(line);
    for (const w of waiters) w.check();
  });
  lineSplitter(child.stderr, (line) => {
    log.add(`err| ${line}`);
    stderr.add(line);
  });
  if (child.stdin) child.stdin.on('error', (err) => log.add(`stdin error: ${err.message}`));

  /** Waits for the next stdout line (after the previously consumed one) matching re. */
  function waitLine(re, timeoutMs, what = String(re)) {
    return new Promise((resolve, reject) => {
      const w = {
        check() {
          while (cursor < lines.length) {
            const line = lines[cursor++];
            const m = line.match(re);
            if (m) {
              done();
              resolve(m);
              return;
            }
          }
          if (exitInfo) {
            done();
            reject(new Error(
              `${name} exited (code=${exitInfo.code} signal=${exitInfo.signal}` +
              `${spawnError ? ` error=${spawnError.message}` : ''}) before printing ${what}\n` +
              `--- ${name} output ---\n${log}`));
          }
        },
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${name} to print ${what}\n` +
          `--- ${name} output ---\n${log}`));
      }, timeoutMs);
      function done() {
        clearTimeout(timer);
        waiters.delete(w);
      }
      waiters.add(w);
      w.check();
    });
  }

  let stopping = null;
  /** Sends `signal`, waits up to graceMs, then SIGKILLs. Idempotent. */
  function stop({ signal = 'SIGTERM', graceMs = 5000 } = {}) {
    if (!stopping) {
      stopping = (async () => {
        if (exitInfo) {
          try { process.kill(-child.pid, 'SIGKILL'); } catch { /* group empty */ }
          return { ...exitInfo, killed: false };
        }
        log.add(`stopping with ${signal}`);
        killGroup(child, signal);
        const timedOut = Symbol('timeout');
        const r = await Promise.race([exited, sleep(graceMs).then(() => timedOut)]);
        if (r !== timedOut) {
          // Anything it left in its process group goes too.
          try { process.kill(-child.pid, 'SIGKILL'); } catch { /* group empty */ }
          return { ...r, killed: false };
        }
        log.add(`still running ${graceMs} ms after ${signal}: SIGKILL`);
        killGroup(child, 'SIGKILL');
        const r2 = await exited;
        return { ...r2, killed: true };
      })();
    }
    return stopping;
  }

  return {
    name, child, log, stderr, lines, exited, waitLine, stop,
    get exitInfo() { return exitInfo; },
    logText: () => log.toString(),
  };
}

/** The environment for a child: DISPLAY/WAYLAND_DISPLAY removed, so only --display counts. */
function childEnv(extra = {}) {
  const env = { ...process.env, NO_COLOR: '1', ...extra };
  delete env.DISPLAY;
  delete env.WAYLAND_DISPLAY;
  return env;
}

function requireExecutable(file, hint) {
  try {
    accessSync(file, fsConstants.X_OK);
  } catch {
    throw new Error(`${file} is missing or not executable: ${hint}`);
  }
}

function requirePorthole() {
  requireExecutable(PORTHOLE_BIN,
    'build it with `cargo build` (or set PORTHOLE_BIN to the porthole binary)');
}

// ---------------------------------------------------------------------------------------
// Scope: cleanup in reverse order, logs printed on failure

/**
 * Runs body(scope) and always cleans up what was added to the scope (in reverse order),
 * also when the test times out or is cancelled (t.signal). On failure, prints the logs
 * of everything in the scope to stderr and as test diagnostics.
 *
 *   test('x', (t) => withScope(t, async (s) => { const x = s.add(await startXvfb(...)); ... }))
 */
export async function withScope(t, body) {
  const scope = new Scope(t?.name || 'test');
  // Timed out or cancelled: body() may never settle, so print and clean up from here.
  const onAbort = () => { scope.dump(); scope.cleanup().catch(() => {}); };
  t?.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await body(scope);
  } catch (err) {
    scope.dump();
    throw err;
  } finally {
    t?.signal?.removeEventListener('abort', onAbort);
    await scope.cleanup();
  }
}

/**
 * A fresh directory for a test's recordings (named `prefix` + random), removed when the
 * scope `s` ends unless PORTHOLE_E2E_KEEP is set.
 */
export function recordingsDir(s, prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  s.add({
    label: `recordings in ${dir}`,
    stop: async () => {
      if (process.env.PORTHOLE_E2E_KEEP) process.stderr.write(`kept recordings in ${dir}\n`);
      else rmSync(dir, { recursive: true, force: true });
    },
  });
  return dir;
}

export class Scope {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.cleaning = null;
  }
  /** Registers an object with stop() (and optionally logText()); returns it. */
  add(item) {
    this.items.push(item);
    return item;
  }
  dump() {
    if (this.dumped) return;
    this.dumped = true;
    const parts = [];
    for (const item of this.items) {
      const text = typeof item.logText === 'function' ? item.logText() : '';
      if (text) parts.push(`----- ${item.label || item.name || 'item'} log -----\n${text}`);
    }
    if (!parts.length) return;
    const all = `===== logs for failed test "${this.name}" =====\n${parts.join('\n')}` +
      `===== end of logs for "${this.name}" =====\n`;
    // The test runner shows a test file's stderr in its report.
    process.stderr.write(all);
  }
  cleanup() {
    if (!this.cleaning) {
      this.cleaning = (async () => {
        for (const item of [...this.items].reverse()) {
          try {
            await item.stop();
          } catch (err) {
            process.stderr.write(`cleanup of ${item.label || item.name || 'item'} failed: ${err?.stack || err}\n`);
          }
        }
      })();
    }
    return this.cleaning;
  }
}

// ---------------------------------------------------------------------------------------
// Xvfb

/**
 * Whether display n is taken. A killed X server leaves its lock and socket behind; a lock
 * whose process is gone is stale (the X server itself thinks so), and both are removed so
 * leftovers of crashed runs do not use up the numbers (media/src/xvfb.rs does the same).
 */
function displayInUse(n) {
  const socket = `/tmp/.X11-unix/X${n}`;
  const lock = `/tmp/.X${n}-lock`;
  if (!existsSync(lock)) return existsSync(socket);
  let pid = NaN;
  try { pid = Number.parseInt(readFileSync(lock, 'utf8').trim(), 10); } catch { return true; }
  if (pid > 0 && existsSync(`/proc/${pid}`)) return true;
  try {
    for (const f of [lock, socket]) if (existsSync(f)) unlinkSync(f);
  } catch { return true; }
  return false;
}

async function waitFor(cond, timeoutMs, intervalMs = 50) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= end) return false;
    await sleep(intervalMs);
  }
}

/**
 * Starts Xvfb on the first free display from :90 up. Returns {display, width, height, stop,
 * logText}.
 */
export async function startXvfb({ width = 1280, height = 720 } = {}) {
  let lastError = null;
  for (let n = 90; n < 190; n++) {
    if (displayInUse(n)) continue;
    const display = `:${n}`;
    const proc = spawnLogged(`Xvfb ${display}`, 'Xvfb', [
      display, '-screen', '0', `${width}x${height}x24`, '-nolisten', 'tcp', '-noreset',
    ], { env: childEnv() });
    const socket = `/tmp/.X11-unix/X${n}`;
    const ok = await waitFor(() => existsSync(socket) || proc.exitInfo !== null, 10000);
    if (ok && proc.exitInfo === null) {
      const stop = async () => {
        const r = await proc.stop({ signal: 'SIGTERM', graceMs: 5000 });
        if (r.killed) {
          // SIGKILLed Xvfb leaves its lock and socket behind; they're ours, remove them.
          for (const f of [socket, `/tmp/.X${n}-lock`]) {
            try { unlinkSync(f); } catch { /* gone */ }
          }
        }
        return r;
      };
      return {
        display, number: n, width, height, pid: proc.child.pid, stop, logText: proc.logText, label: `Xvfb ${display}`,
      };
    }
    if (proc.exitInfo === null) {
      await proc.stop({ signal: 'SIGKILL', graceMs: 2000 });
      throw new Error(`Xvfb ${display} did not create ${socket} within 10 s\n${proc.logText()}`);
    }
    // Lost a race for this display number (or it failed): try the next one.
    lastError = new Error(`Xvfb ${display} exited early\n${proc.logText()}`);
    if (proc.exitInfo?.error) throw lastError; // e.g. Xvfb not installed
  }
  throw lastError || new Error('no free X display number between :90 and :189');
}

// ---------------------------------------------------------------------------------------
// porthole test-pattern

export const DEFAULT_BLOCKS = Object.freeze(['c82828', '28b43c', '323cc8', 'dcc828']); // TL TR BL BR

/**
 * Starts `porthole test-pattern ARGS` and waits for each of `lines` ([regex, ms, what]) in
 * turn (it is killed if one does not come). Returns {proc, matches, command, stop}:
 * command(line, reply, what) writes a line on its stdin once the previous command has
 * been answered and resolves to the match of its reply; stop closes stdin, then SIGTERM.
 */
async function spawnPattern(label, args, lines) {
  requirePorthole();
  const proc = spawnLogged(label, PORTHOLE_BIN, ['test-pattern', ...args], {
    env: childEnv(), stdin: 'pipe',
  });
  const matches = [];
  try {
    for (const [re, ms, what] of lines) matches.push(await proc.waitLine(re, ms, what));
  } catch (err) {
    await proc.stop({ signal: 'SIGKILL' });
    throw err;
  }
  let queue = Promise.resolve();
  function command(line, reply, what) {
    const run = async () => {
      if (proc.exitInfo) throw new Error(`test-pattern has exited (${JSON.stringify(proc.exitInfo)})`);
      proc.child.stdin.write(`${line}\n`);
      return proc.waitLine(reply, 5000, what);
    };
    const p = queue.then(run);
    queue = p.catch(() => {});
    return p;
  }
  const stop = async () => {
    try { proc.child.stdin.end(); } catch { /* closed */ }
    return proc.stop({ signal: 'SIGTERM', graceMs: 3000 });
  };
  return { proc, matches, command, stop };
}

const READY_LINE = [/^ready (\d+)x(\d+)$/, 15000, '"ready WxH"'];

/**
 * Starts `porthole test-pattern --display D`. Returns {width, height, blocks, setBlocks,
 * stop, logText}.
 */
export async function startPattern(display) {
  const { proc, matches: [m], command, stop } = await spawnPattern('test-pattern', ['--display', display], [READY_LINE]);
  let blocks = [...DEFAULT_BLOCKS];

  /** Repaints the four quadrants (TL TR BL BR, 'RRGGBB' each) and waits for 'ok'. */
  function setBlocks(colours) {
    if (!Array.isArray(colours) || colours.length !== 4 || !colours.every((c) => /^[0-9a-fA-F]{6}$/.test(c))) {
      throw new Error(`setBlocks wants 4 RRGGBB strings, got ${JSON.stringify(colours)}`);
    }
    return command(`blocks ${colours.join(' ')}`, /^ok$/, '"ok" after "blocks"').then(() => {
      blocks = [...colours];
    });
  }

  return {
    width: Number(m[1]), height: Number(m[2]),
    get blocks() { return blocks; },
    setBlocks, stop, logText: proc.logText, label: 'porthole test-pattern',
  };
}

/**
 * Starts `porthole test-pattern --clock --display D` (the glass-to-glass benchmark's
 * picture: the wall-clock ms as a code of 64 black/white cells, repainted every `clockMs`,
 * and a busy picture scrolling over the bottom `motionPercent` % of the screen at
 * `motionFps`). Returns {width, height, clock: {x, y, cell}, pid, stats(), stop, logText};
 * stats() resolves to {paints, skipped, motion, skipped_motion} (counts since the start).
 */
export async function startClockPattern(display, { clockMs = 4, motionPercent = 30, motionFps = 30 } = {}) {
  const { proc, matches: [ready, clock], command, stop } = await spawnPattern('test-pattern --clock', [
    '--display', display, '--clock', '--clock-ms', String(clockMs),
    '--motion-percent', String(motionPercent), '--motion-fps', String(motionFps),
  ], [READY_LINE, [/^clock (\d+) (\d+) (\d+)$/, 5000, '"clock X Y CELL"']]);
  async function stats() {
    const m = await command('stats', /^stats (.*)$/, '"stats ..."');
    return Object.fromEntries(m[1].split(' ').map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)]));
  }
  return {
    width: Number(ready[1]), height: Number(ready[2]),
    clock: { x: Number(clock[1]), y: Number(clock[2]), cell: Number(clock[3]) },
    pid: proc.child.pid, stats, stop, logText: proc.logText, label: 'porthole test-pattern --clock',
  };
}

/**
 * Starts any long-running command with the helpers' bookkeeping (own process group, logs
 * kept, killed when Node exits). Returns the handle of spawnLogged (waitLine, stop,
 * exited, logText, ...) plus pid and label.
 */
export function startProcess(name, cmd, args, { env = {}, stdin = 'ignore' } = {}) {
  const proc = spawnLogged(name, cmd, args, { env: childEnv(env), stdin });
  return Object.assign(proc, { pid: proc.child.pid, label: name });
}

// ---------------------------------------------------------------------------------------
// porthole share

/** A fresh random share code: 12 lowercase letters/digits. */
export function randomCode() {
  const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789';
  return [...randomBytes(12)].map((b) => alphabet[b % alphabet.length]).join('');
}

/** `url` with its fragment set to `#code=<code>` (the viewer reads the code from there). */
export function withCode(url, code) {
  const u = new URL(url);
  u.hash = `code=${encodeURIComponent(code)}`;
  return u.toString();
}

/**
 * Starts `porthole share --display D --listen 127.0.0.1:0 --code CODE --no-approval ...args`
 * (`approval: true`: without --no-approval; `stdin: 'pipe'`: commands can be written to
 * `share.stdin`; `listen`: another address of this namespace, port 0).
 * Returns {url, origin, code, pid, viewerUrl(code?), stats(), fetch(path, init), stop(),
 * stderrText(), logText(), exited}.
 * stop() sends SIGINT, SIGKILLs after 5 s, and resolves to {code, signal, killed}.
 */
export async function startShare({
  display, code = randomCode(), args = [], approval = false, stdin = 'ignore', listen = '127.0.0.1:0',
}) {
  requirePorthole();
  const listenHost = listen.replace(/:\d+$/, '');
  const proc = spawnLogged('share', PORTHOLE_BIN, [
    'share', '--display', display, '--listen', listen, '--code', code,
    ...(approval ? [] : ['--no-approval']), ...args,
  ], { env: childEnv(), stdin });
  let m;
  try {
    m = await proc.waitLine(/^viewer: (http:\/\/\S+)$/, 30000, '"viewer: http://..."');
  } catch (err) {
    await proc.stop({ signal: 'SIGKILL' });
    throw err;
  }
  const url = m[1];
  const origin = new URL(url).origin;
  const host = new URL(url).hostname;
  if (host !== listenHost) {
    await proc.stop({ signal: 'SIGKILL' });
    throw new Error(`share printed a viewer URL not on ${listenHost}: ${url}`);
  }

  async function shareFetch(p, init = {}) {
    return fetch(new URL(p, origin), { redirect: 'manual', signal: AbortSignal.timeout(10000), ...init });
  }

  async function stats() {
    const res = await signedFetch(new URL('/api/stats', origin), code);
    const text = await res.text();
    if (res.status !== 200) throw new Error(`GET /api/stats -> ${res.status}: ${text}`);
    try {
      return JSON.parse(text);
    } catch {
      throw new Error(`GET /api/stats returned non-JSON: ${text}`);
    }
  }

  return {
    url, origin, code, pid: proc.child.pid, stdin: proc.child.stdin,
    viewerUrl: (c = code) => withCode(url, c),
    stats, fetch: shareFetch,
    stop: ({ signal = 'SIGINT', graceMs = 5000 } = {}) => proc.stop({ signal, graceMs }),
    exited: proc.exited,
    get exitInfo() { return proc.exitInfo; },
    stderrText: () => proc.stderr.toString(),
    logText: proc.logText,
    label: 'porthole share',
  };
}

// ---------------------------------------------------------------------------------------
// Pairing (assets/pake.js, with the share's own /pake.wasm): how tests make requests a
// viewer would, without ever sending the code.

const pakeModules = new Map();

/** The share's compiled pairing module (fetched from `origin` once). */
export function pakeModuleOf(origin) {
  const key = new URL(origin).origin;
  if (!pakeModules.has(key)) {
    const p = fetch(new URL('/pake.wasm', key), { signal: AbortSignal.timeout(10000) })
      .then((r) => {
        if (!r.ok) throw new Error(`GET /pake.wasm -> ${r.status}`);
        return r.arrayBuffer();
      })
      .then((b) => WebAssembly.compile(b));
    p.catch(() => pakeModules.delete(key));
    pakeModules.set(key, p);
  }
  return pakeModules.get(key);
}

/**
 * Pairs with the share at `origin` using `code` (round one). Resolves to a Paired
 * (`authorization(method, path, body)`, `verifyAnswer(sdp, mac)`); rejects with a
 * PairingError (kind 'wrong-code', 'refused' with status, ...). `fetchImpl`: another fetch.
 */
export async function pairWith(origin, code, { fetchImpl } = {}) {
  return pair(new URL(origin).origin, code, { module: await pakeModuleOf(origin), fetchImpl });
}

/** An `Authorization` value for one request (`method path body`) from a fresh pairing. */
export async function signedAuth(origin, code, method, path, body = '') {
  return (await pairWith(origin, code)).authorization(method, path, body);
}

/** fetch(), signed by a fresh pairing with `code`, as the viewers sign their requests. */
export async function signedFetch(url, code, init = {}) {
  const u = new URL(url);
  const method = init.method ?? 'GET';
  const auth = await signedAuth(u.origin, code, method, u.pathname, init.body ?? '');
  return fetch(u, {
    signal: AbortSignal.timeout(10000), ...init, headers: { ...(init.headers ?? {}), Authorization: auth },
  });
}

/**
 * POSTs an SDP offer to `${origin}/whep`, signed by a fresh pairing with `code`; code:
 * null for no Authorization header, `{bearer: C}` for `Authorization: Bearer C`,
 * `{authorization: A}` for that header as given.
 * Returns {status, headers, text}.
 */
export async function postWhep(origin, { code, body, contentType = 'application/sdp' }) {
  const headers = { 'Content-Type': contentType };
  if (code?.bearer != null) headers.Authorization = `Bearer ${code.bearer}`;
  else if (code?.authorization != null) headers.Authorization = code.authorization;
  else if (code != null) headers.Authorization = await signedAuth(origin, code, 'POST', '/whep', body);
  const res = await fetch(new URL('/whep', origin), {
    method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(10000),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Polls fn() until pred(value) holds; returns the value, or throws with the last one. */
export async function pollUntil(fn, pred, { timeoutMs = 5000, intervalMs = 100, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      lastErr = undefined;
      if (pred(last)) return last;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= end) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value: ` +
        `${lastErr ? `error ${lastErr.message}` : JSON.stringify(last)}`);
    }
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------
// Browser

/** Closes the browser, then stops the share with SIGINT and asserts a clean exit. */
export async function stopCleanly(browser, share) {
  await browser.stop();
  const r = await share.stop();
  assert.equal(r.killed, false, 'share exits within 5 s of SIGINT');
  assert.deepEqual({ code: r.code, signal: r.signal }, { code: 0, signal: null },
    `share exits with code 0 after SIGINT; stderr:\n${share.stderrText()}`);
}

export const CHROMIUM_ARGS = Object.freeze([
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--no-proxy-server',
]);

/**
 * Launches headless Chromium. Returns the playwright Browser with extra fields:
 * viewport, stop(), logText(). Pages made with openViewer/openPage use `viewport`.
 * `node` (startNetnsNode): Chromium runs in that node's network namespace (playwright
 * still drives it over its pipe). `home`: its HOME (whose .pki/nssdb holds the
 * certificates it trusts).
 */
export async function launchBrowser({ viewport = { width: 1280, height: 720 }, node = null, home = null } = {}) {
  requireExecutable(CHROMIUM_BIN, 'install chromium (scripts/install-deps.sh test) or set CHROMIUM_BIN');
  const log = new LogBuffer('chromium');
  let executablePath = CHROMIUM_BIN;
  let wrapperDir = null;
  if (node) {
    wrapperDir = mkdtempSync(path.join(os.tmpdir(), 'porthole-chromium-'));
    executablePath = path.join(wrapperDir, 'chromium');
    writeFileSync(executablePath,
      `#!/bin/sh\nexec nsenter -t ${node.pid} -n -- ${CHROMIUM_BIN} "$@"\n`, { mode: 0o755 });
  }
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [...CHROMIUM_ARGS],
    env: childEnv(home ? { HOME: home } : {}),
    timeout: 30000,
  });
  log.add(`launched chromium ${browser.version()}`);
  browser.viewport = viewport;
  browser.netnsNode = node;
  browser.pageLog = log;
  browser.label = 'chromium';
  browser.logText = () => log.toString();
  let closing = null;
  browser.stop = () => {
    if (!closing) {
      closing = browser.close().catch((err) => log.add(`close failed: ${err.message}`))
        .finally(() => { if (wrapperDir) rmSync(wrapperDir, { recursive: true, force: true }); });
    }
    return closing;
  };
  return browser;
}

/**
 * Firefox's preferences for the tests. H.264: Firefox offers it only when the OpenH264
 * plugin (downloaded from Cisco at run time, not here) or "hardware" H.264 is there; the
 * latter decodes through the system libavcodec and is allowed by the last two (its
 * gfx-blocklist entry forced to "OK": there is no GPU here to rule on). A Firefox user on
 * a network gets the plugin by itself.
 */
export const FIREFOX_PREFS = Object.freeze({
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'media.autoplay.default': 0,
  'media.gmp-manager.updateEnabled': false,
  'media.webrtc.hw.h264.enabled': true,
  'gfx.blacklist.webrtc.hw.acceleration.h264': 1,
});

/**
 * Headless Firefox ESR driven over WebDriver BiDi (puppeteer-core), with a fresh profile,
 * in this network namespace (puppeteer reaches it over a local TCP port). The namespace
 * needs a default route: without one Firefox takes the network for down and gathers no
 * ICE candidate at all. Returns the browser, with stop(), pageLog and openPage(url) (a page whose console goes to
 * the log; page.stop() closes it).
 */
export async function launchFirefox() {
  requireExecutable(FIREFOX_BIN, 'install firefox-esr (scripts/install-deps.sh test) or set FIREFOX_BIN');
  const log = new LogBuffer('firefox');
  const profile = mkdtempSync(path.join(os.tmpdir(), 'porthole-firefox-'));
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX_BIN,
    headless: true,
    userDataDir: profile,
    extraPrefsFirefox: { ...FIREFOX_PREFS },
    env: childEnv({ HOME: profile }),
    timeout: 60000,
  });
  log.add(`launched ${await browser.version()}`);
  browser.pageLog = log;
  browser.label = 'firefox';
  browser.logText = () => log.toString();
  let pages = 0;
  browser.openPage = async (url) => {
    const id = ++pages;
    const page = await browser.newPage();
    page.on('console', (msg) => log.add(`page${id} console.${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => log.add(`page${id} pageerror: ${err.message}`));
    page.stop = () => page.close().catch(() => {});
    page.label = `page${id}`;
    log.add(`page${id} goto ${url}`);
    await page.goto(url, { waitUntil: 'load', timeout: 15000 });
    return page;
  };
  let closing = null;
  browser.stop = () => {
    if (!closing) {
      closing = browser.close().catch((err) => log.add(`close failed: ${err.message}`))
        .finally(() => rmSync(profile, { recursive: true, force: true }));
    }
    return closing;
  };
  return browser;
}

let pageCounter = 0;

/**
 * Opens url in a new page, in its own browser context (so viewers share nothing).
 * Console messages and page errors go to the browser's log. Returns the page, with
 * page.stop() closing its context. `context`: more options of that context (e.g.
 * `{hasTouch: true, isMobile: true}` for a phone). With PORTHOLE_E2E_TREE_ASSETS=1 the
 * page gets the working tree's assets/ (see routeTreeAssets), unless the browser runs in
 * another network namespace.
 */
export async function openPage(browser, url, { context: contextOptions = {} } = {}) {
  const id = ++pageCounter;
  const context = await browser.newContext({
    viewport: browser.viewport || { width: 1280, height: 720 }, ...contextOptions,
  });
  // (Not for a browser in another network namespace: the route fetches from this one.)
  if (process.env.PORTHOLE_E2E_TREE_ASSETS && !browser.treeAssets && !browser.netnsNode) await routeTreeAssets(context);
  // Without camera/microphone permission Chromium gathers only the default route's address
  // as an ICE candidate, and in a loopback-only namespace there is no default route: the
  // page would gather no candidate at all. With the permission (and
  // --allow-loopback-in-peer-connection) it offers 127.0.0.1 host candidates.
  const log = browser.pageLog;
  // Not grantable on a plain-HTTP origin other than localhost (a LAN address): there,
  // Chromium offers the default route's address.
  await context.grantPermissions(['camera', 'microphone'], { origin: new URL(url).origin })
    .catch((err) => log?.add(`page${id}: no camera/microphone permission (${err.message.split('\n')[0]})`));
  const page = await context.newPage();
  page.on('console', (msg) => log?.add(`page${id} console.${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (err) => log?.add(`page${id} pageerror: ${err.message}`));
  page.on('requestfailed', (req) => log?.add(`page${id} request failed: ${req.method()} ${req.url()} ${req.failure()?.errorText}`));
  page.on('response', (res) => {
    if (res.status() >= 400) log?.add(`page${id} HTTP ${res.status()} for ${res.request().method()} ${res.url()}`);
  });
  page.stop = () => context.close().catch(() => {});
  page.label = `page${id}`;
  log?.add(`page${id} goto ${url}`);
  await page.goto(url, { waitUntil: 'load', timeout: 15000 });
  return page;
}

/**
 * The viewer page's selected ICE candidate pair: {local, remote}, each {address, port,
 * candidateType, protocol, relayProtocol}; null before there is one.
 */
export async function selectedCandidatePair(page) {
  return page.evaluate(async () => {
    const stats = await window.porthole.pc.getStats();
    let id = null;
    stats.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) id = r.selectedCandidatePairId; });
    const p = id && stats.get(id);
    if (!p) return null;
    const pick = (c) => ({
      address: c.address, port: c.port, candidateType: c.candidateType, protocol: c.protocol,
      relayProtocol: c.relayProtocol ?? null,
    });
    return { local: pick(stats.get(p.localCandidateId)), remote: pick(stats.get(p.remoteCandidateId)) };
  });
}

/** Reads {state, lastError, videoWidth, videoHeight} from the viewer page. */
export async function viewerStatus(page) {
  return page.evaluate(() => {
    const p = window.porthole;
    const v = document.getElementById('video') || p?.video;
    let lastError = p?.lastError;
    if (lastError instanceof Error) lastError = `${lastError.name}: ${lastError.message}`;
    else if (lastError != null && typeof lastError !== 'string') {
      try { lastError = JSON.stringify(lastError); } catch { lastError = String(lastError); }
    }
    return {
      hasPorthole: !!p,
      state: p?.state,
      lastError: lastError ?? null,
      videoWidth: v?.videoWidth ?? null,
      videoHeight: v?.videoHeight ?? null,
      iceState: p?.pc?.iceConnectionState ?? null,
      pcState: p?.pc?.connectionState ?? null,
    };
  });
}

/** Waits until window.porthole.state is one of `states`; returns the status. */
export async function waitForState(page, states, timeoutMs = 10000) {
  const want = Array.isArray(states) ? states : [states];
  try {
    await page.waitForFunction((w) => w.includes(window.porthole?.state), want, { timeout: timeoutMs, polling: 50 });
  } catch (err) {
    let st = null;
    try { st = await viewerStatus(page); } catch { /* page gone */ }
    throw new Error(`viewer did not reach state ${want.join('|')} within ${timeoutMs} ms; ` +
      `now: ${JSON.stringify(st)} (${err.message.split('\n')[0]})`);
  }
  return viewerStatus(page);
}

/**
 * Opens the viewer at url (include `#code=...`, see share.viewerUrl()) and waits until it is
 * connected and showing video. Returns the page. `context`: as for openPage.
 */
export async function openViewer(browser, url, { timeoutMs = 20000, context = {} } = {}) {
  const page = await openPage(browser, url, { context });
  try {
    await page.waitForFunction(() => {
      const v = document.getElementById('video') || window.porthole?.video;
      return window.porthole?.state === 'connected' && v && v.videoWidth > 0;
    }, null, { timeout: timeoutMs, polling: 100 });
  } catch (err) {
    let st = null;
    try { st = await viewerStatus(page); } catch { /* page gone */ }
    await page.stop();
    throw new Error(`viewer at ${url} not connected with video within ${timeoutMs} ms; ` +
      `status: ${JSON.stringify(st)} (${err.message.split('\n')[0]})`);
  }
  return page;
}

// ---------------------------------------------------------------------------------------
// In-page measurements

/**
 * Counts frames presented by the <video> during `ms` using requestVideoFrameCallback.
 * Returns {frames, decoded} where decoded is the getVideoPlaybackQuality() delta.
 */
export async function countFramesDetailed(page, ms) {
  return page.evaluate((ms) => new Promise((resolve) => {
    const v = document.getElementById('video') || window.porthole?.video;
    if (!v) { resolve({ frames: 0, decoded: 0, error: 'no video element' }); return; }
    const q0 = v.getVideoPlaybackQuality?.().totalVideoFrames ?? 0;
    let frames = 0;
    let done = false;
    const cb = () => {
      if (done) return;
      frames++;
      v.requestVideoFrameCallback(cb);
    };
    v.requestVideoFrameCallback(cb);
    setTimeout(() => {
      done = true;
      const q1 = v.getVideoPlaybackQuality?.().totalVideoFrames ?? 0;
      resolve({ frames, decoded: q1 - q0 });
    }, ms);
  }), ms);
}

/** Number of video frames presented during `ms` (requestVideoFrameCallback). */
export async function countFrames(page, ms) {
  return (await countFramesDetailed(page, ms)).frames;
}

/**
 * Draws the current video frame to a videoWidth x videoHeight canvas and returns [r,g,b]
 * at each {x, y} (video pixels), averaged over a 5x5 patch.
 */
export async function samplePixels(page, points) {
  return page.evaluate((points) => {
    const v = document.getElementById('video') || window.porthole?.video;
    const w = v.videoWidth;
    const h = v.videoHeight;
    if (!w || !h) throw new Error('video has no frame yet');
    const c = document.createElement('canvas');
    c.width = w;
    c.height = h;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(v, 0, 0, w, h);
    return points.map(({ x, y }) => {
      const x0 = Math.max(0, Math.min(w - 5, Math.round(x) - 2));
      const y0 = Math.max(0, Math.min(h - 5, Math.round(y) - 2));
      const d = ctx.getImageData(x0, y0, 5, 5).data;
      const sum = [0, 0, 0];
      for (let i = 0; i < d.length; i += 4) {
        sum[0] += d[i];
        sum[1] += d[i + 1];
        sum[2] += d[i + 2];
      }
      const n = d.length / 4;
      return sum.map((s) => Math.round(s / n));
    });
  }, points);
}

/** 'RRGGBB' (or '#RRGGBB') -> [r, g, b]; arrays pass through. */
export function rgb(c) {
  if (Array.isArray(c)) return c;
  const s = c.replace(/^#/, '');
  return [0, 2, 4].map((i) => parseInt(s.slice(i, i + 2), 16));
}

const hex = (c) => rgb(c).map((v) => v.toString(16).padStart(2, '0')).join('');

/** Compares samples to expected colours; returns {ok, report}. */
export function compareColours(points, samples, expected, tolerance = 40) {
  let ok = true;
  const rows = points.map((p, i) => {
    const want = rgb(expected[i]);
    const got = samples[i];
    const diff = want.map((v, k) => got[k] - v);
    const good = diff.every((d) => Math.abs(d) <= tolerance);
    if (!good) ok = false;
    return `  (${p.x},${p.y})${p.name ? ` ${p.name}` : ''}: want #${hex(want)} got #${hex(got)} ` +
      `diff [${diff.join(', ')}] ${good ? 'ok' : `OUT OF TOLERANCE (±${tolerance})`}`;
  });
  return { ok, report: rows.join('\n') };
}

/**
 * Polls samplePixels until every point is within `tolerance` per channel of its expected
 * colour ('RRGGBB' or [r,g,b]). Returns the last samples; throws a readable diff on timeout.
 */
export async function waitForColours(page, points, expected, tolerance = 40, timeoutMs = 5000) {
  const end = Date.now() + timeoutMs;
  let last = null;
  let lastErr = null;
  for (;;) {
    try {
      last = await samplePixels(page, points);
      lastErr = null;
      if (compareColours(points, last, expected, tolerance).ok) return last;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= end) break;
    await sleep(100);
  }
  if (!last) throw new Error(`could not sample video pixels within ${timeoutMs} ms: ${lastErr?.message}`);
  throw new Error(`video colours did not match within ${timeoutMs} ms:\n` +
    compareColours(points, last, expected, tolerance).report);
}

/**
 * Centres of the four pattern quadrants (TL, TR, BL, BR) for a width x height screen: the
 * quadrants fill the top floor(H*7/8) rows.
 */
export function quadrantCentres(width, height) {
  const top = Math.floor((height * 7) / 8);
  const qw = width / 2;
  const qh = top / 2;
  const xs = [Math.floor(qw / 2), Math.floor(qw + qw / 2)];
  const ys = [Math.floor(qh / 2), Math.floor(qh + qh / 2)];
  return [
    { x: xs[0], y: ys[0], name: 'top-left' },
    { x: xs[1], y: ys[0], name: 'top-right' },
    { x: xs[0], y: ys[1], name: 'bottom-left' },
    { x: xs[1], y: ys[1], name: 'bottom-right' },
  ];
}

/** A real recvonly video offer made by the page's browser (for feeding the WHEP endpoint). */
export async function makeOffer(page) {
  return page.evaluate(async () => {
    const pc = new RTCPeerConnection();
    try {
      pc.addTransceiver('video', { direction: 'recvonly' });
      const o = await pc.createOffer();
      return o.sdp;
    } finally {
      pc.close();
    }
  });
}

// ---------------------------------------------------------------------------------------
// X tools (xdotool, xclip, xev) on a test display, for remote control and clipboard tests

/** Environment for an X client on `display`: a UTF-8 locale, so text tools speak UTF-8. */
export function xEnv(display, extra = {}) {
  return { ...childEnv({ LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8', ...extra }), DISPLAY: display };
}

/**
 * Runs a short-lived command to completion (SIGKILLed after timeoutMs). `input`: stdin
 * (string or Buffer). Resolves to {code, signal, timedOut, stdout: Buffer, stderr: string};
 * rejects only if the command cannot be started.
 */
export function runTool(cmd, args, { display, input, timeoutMs = 5000, env } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: env || (display ? xEnv(display) : childEnv()),
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    live.add(child);
    const out = [];
    let err = '';
    let timedOut = false;
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => { if (err.length < 65536) err += d; });
    const timer = setTimeout(() => { timedOut = true; killGroup(child, 'SIGKILL'); }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      live.delete(child);
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      // Whatever it left in its process group (e.g. a forked xclip) goes too.
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* group empty */ }
      resolve({ code, signal, timedOut, stdout: Buffer.concat(out), stderr: err });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? undefined);
  });
}

/** Like runTool, but throws (with stderr) unless the command exits 0. Returns stdout. */
export async function runToolOk(cmd, args, opts = {}) {
  const r = await runTool(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed: code=${r.code} signal=${r.signal}` +
      `${r.timedOut ? ` (killed after ${opts.timeoutMs ?? 5000} ms)` : ''}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** The X pointer position on `display` as {x, y} (xdotool getmouselocation). */
export async function pointerLocation(display) {
  const out = (await runToolOk('xdotool', ['getmouselocation', '--shell'], { display })).toString();
  const x = out.match(/^X=(-?\d+)$/m);
  const y = out.match(/^Y=(-?\d+)$/m);
  if (!x || !y) throw new Error(`unexpected xdotool getmouselocation output: ${out}`);
  return { x: Number(x[1]), y: Number(y[1]) };
}

/**
 * Defines a RandR monitor NAME on `display` covering {x, y, width, height} of its screen
 * (`xrandr --setmonitor`, at 96 dpi; the Xvfb must run with -noreset, as startXvfb's do,
 * or the server forgets it when xrandr disconnects).
 */
export async function addMonitor(display, name, { x, y, width, height }) {
  const mm = (px) => Math.round((px * 25.4) / 96);
  await runToolOk('xrandr', ['--setmonitor', name, `${width}/${mm(width)}x${height}/${mm(height)}+${x}+${y}`, 'none'],
    { display });
}

/** Moves the X pointer on `display` (xdotool mousemove). */
export async function movePointer(display, x, y) {
  await runToolOk('xdotool', ['mousemove', '--sync', String(x), String(y)], { display });
}

/**
 * Reads the CLIPBOARD selection of `display` as `target` (default UTF8_STRING). Returns a
 * Buffer, or null when there is no owner or the owner does not offer that target.
 */
export async function readClipboard(display, { target = 'UTF8_STRING', timeoutMs = 3000 } = {}) {
  const r = await runTool('xclip', ['-selection', 'clipboard', '-t', target, '-o'], { display, timeoutMs });
  if (r.timedOut) throw new Error(`xclip -o -t ${target} got no answer within ${timeoutMs} ms (owner not answering?)`);
  if (r.code !== 0) return null;
  return r.stdout;
}

/** The targets the CLIPBOARD owner offers (empty when there is no owner). */
export async function clipboardTargets(display) {
  const b = await readClipboard(display, { target: 'TARGETS' });
  return b ? b.toString().split('\n').map((l) => l.trim()).filter(Boolean) : [];
}

/**
 * Makes an xclip process own CLIPBOARD on `display` with `data` (string or Buffer) as
 * `target` (null: xclip's default, UTF8_STRING text). xclip stays in the foreground and
 * exits by itself when someone else takes the selection. Resolves once the target is
 * offered. Returns {stop, logText, label, exited}.
 */
export async function ownClipboard(display, data, { target = null } = {}) {
  const args = ['-selection', 'clipboard', '-quiet', '-i'];
  if (target) args.push('-t', target);
  const proc = spawnLogged('xclip', 'xclip', args, { env: xEnv(display), stdin: 'pipe' });
  proc.child.stdin.end(data);
  const want = target || 'UTF8_STRING';
  const ok = await waitFor(async () => proc.exitInfo !== null ||
    (await clipboardTargets(display).catch(() => [])).includes(want), 5000, 50);
  if (!ok || proc.exitInfo) {
    await proc.stop({ signal: 'SIGKILL' });
    throw new Error(`xclip did not take CLIPBOARD (offering ${want}) within 5 s\n${proc.logText()}`);
  }
  return {
    stop: () => proc.stop({ signal: 'SIGTERM', graceMs: 2000 }),
    exited: proc.exited,
    get exitInfo() { return proc.exitInfo; },
    logText: proc.logText,
    label: `xclip (${want})`,
  };
}

function parseXevBlock(lines) {
  const head = lines[0].match(/^(\w+) event, serial (\d+), synthetic (\w+), window (0x[0-9a-f]+)/);
  if (!head) return null;
  const text = lines.join('\n');
  const ev = { type: head[1], serial: Number(head[2]), synthetic: head[3] === 'YES', window: head[4], raw: text };
  let m = text.match(/\((-?\d+),(-?\d+)\), root:\((-?\d+),(-?\d+)\)/);
  if (m) Object.assign(ev, { x: Number(m[1]), y: Number(m[2]), rootX: Number(m[3]), rootY: Number(m[4]) });
  m = text.match(/\bstate 0x([0-9a-f]+)/);
  if (m) ev.state = parseInt(m[1], 16);
  m = text.match(/\bbutton (\d+),/);
  if (m) ev.button = Number(m[1]);
  m = text.match(/keycode (\d+) \(keysym 0x([0-9a-f]+), ([^)]*)\)/);
  if (m) Object.assign(ev, { keycode: Number(m[1]), keysym: parseInt(m[2], 16), keysymName: m[3] });
  m = text.match(/XLookupString gives (\d+) bytes:(?: \(([0-9a-f ]+)\))?/);
  if (m) {
    const bytes = Buffer.from((m[2] || '').trim().split(/\s+/).filter(Boolean).map((h) => parseInt(h, 16)));
    let s = bytes.toString('utf8');
    if (s.includes('\ufffd')) s = bytes.toString('latin1'); // not UTF-8: a Latin-1 locale
    ev.bytes = [...bytes];
    ev.text = s;
  }
  return ev;
}

/**
 * Starts `xev` on `display` with a window at `geometry`, selecting keyboard, button and
 * structure events, in a UTF-8 locale with line-buffered output, and parses what it prints.
 * Resolves once the window is mapped. Returns {events, mark(), since(i), waitFor(pred, ms,
 * what, from), stop, logText, label}; each event is {type, serial, window, x, y, rootX,
 * rootY, state, button, keycode, keysym, keysymName, text, bytes, raw} (fields as present).
 */
export async function startXev(display, { geometry = '800x600+100+100', name = 'porthole-e2e-xev' } = {}) {
  const xevArgs = ['-name', name, '-geometry', geometry,
    '-event', 'keyboard', '-event', 'button', '-event', 'structure'];
  const haveStdbuf = existsSync('/usr/bin/stdbuf') || existsSync('/bin/stdbuf');
  const [cmd, args] = haveStdbuf ? ['stdbuf', ['-oL', 'xev', ...xevArgs]] : ['xev', xevArgs];
  const proc = spawnLogged('xev', cmd, args, { env: xEnv(display) });
  const events = [];
  const waiters = new Set();
  let block = null;
  let seen = 0; // stdout lines handled
  const flush = () => {
    if (block) {
      const ev = parseXevBlock(block);
      if (ev) events.push(ev);
      block = null;
      for (const w of waiters) w();
    }
  };
  let lastLineAt = 0;
  const pump = () => {
    while (seen < proc.lines.length) {
      const line = proc.lines[seen++];
      lastLineAt = Date.now();
      if (/^\w+ event, serial/.test(line)) { flush(); block = [line]; } else if (line.trim() === '') flush();
      else if (block) block.push(line);
    }
    // xev separates events with a blank line *before* each one, so the last event has no
    // terminator: take it once output has been quiet a moment (key events end with their
    // XFilterEvent line, so those are never taken half-printed).
    if (block && Date.now() - lastLineAt >= 40 &&
        (!/^Key(Press|Release) /.test(block[0]) || block.some((l) => /XFilterEvent/.test(l)))) {
      flush();
    }
  };
  // proc.lines fills as stdout arrives; poll it cheaply (spawnLogged has no per-line hook).
  const timer = setInterval(pump, 20);
  proc.exited.then(() => { pump(); flush(); clearInterval(timer); for (const w of waiters) w(); });

  function waitFor(pred, timeoutMs, what = 'an xev event', from = 0) {
    return new Promise((resolve, reject) => {
      let i = from;
      const check = () => {
        pump();
        for (; i < events.length; i++) {
          if (pred(events[i])) { done(); resolve(events[i]); return; }
        }
        if (proc.exitInfo) { done(); reject(new Error(`xev exited before ${what}\n${proc.logText()}`)); }
      };
      const t = setTimeout(() => {
        done();
        const recent = events.slice(from).slice(-8).map((e) => e.raw).join('\n\n');
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; xev events since the mark: ` +
          `${events.length - from}${recent ? `, the last ones:\n${recent}` : ''}`));
      }, timeoutMs);
      const iv = setInterval(check, 25);
      function done() { clearTimeout(t); clearInterval(iv); waiters.delete(check); }
      waiters.add(check);
      check();
    });
  }

  const handle = {
    events,
    /** Index to pass to since()/waitFor(): events after this moment. */
    mark: () => { pump(); return events.length; },
    since: (i) => { pump(); return events.slice(i); },
    waitFor,
    stop: async () => { clearInterval(timer); return proc.stop({ signal: 'SIGTERM', graceMs: 2000 }); },
    logText: proc.logText,
    label: `xev ${geometry}`,
  };
  try {
    await waitFor((e) => e.type === 'MapNotify', 10000, 'xev MapNotify (its window on screen)');
  } catch (err) {
    await handle.stop();
    throw err;
  }
  return handle;
}

/** The text typed by the KeyPress events in `events` (XLookupString of each). */
export function typedText(events) {
  return events.filter((e) => e.type === 'KeyPress').map((e) => e.text || '').join('');
}

/** X modifier masks in an event's `state`. */
export const XMASK = Object.freeze({ Shift: 0x1, Lock: 0x2, Control: 0x4, Mod1: 0x8, Button1: 0x100 });

// ---------------------------------------------------------------------------------------
// Keyboard input as a real US keyboard produces it

const US_UNSHIFTED = { ' ': 'Space', ',': 'Comma', '.': 'Period', '/': 'Slash', ';': 'Semicolon',
  "'": 'Quote', '[': 'BracketLeft', ']': 'BracketRight', '\\': 'Backslash', '-': 'Minus',
  '=': 'Equal', '`': 'Backquote' };
const US_SHIFTED = { '!': 'Digit1', '@': 'Digit2', '#': 'Digit3', '$': 'Digit4', '%': 'Digit5',
  '^': 'Digit6', '&': 'Digit7', '*': 'Digit8', '(': 'Digit9', ')': 'Digit0', '<': 'Comma',
  '>': 'Period', '?': 'Slash', ':': 'Semicolon', '"': 'Quote', '{': 'BracketLeft',
  '}': 'BracketRight', '|': 'Backslash', '_': 'Minus', '+': 'Equal', '~': 'Backquote' };

/**
 * Types `text` into the page the way a person on a US keyboard would: Shift is held
 * (ShiftLeft keydown) for capitals and shifted symbols, and characters that have no key
 * on that layout arrive as a keydown with an empty `code` and the character as `key`
 * (what virtual keyboards and compose sequences produce), through CDP.
 * (page.keyboard.type() neither presses Shift for capitals nor makes any key event for
 * 'ö': it uses Input.insertText, which does nothing on a page without an editable focus.)
 */
export async function typeLikeAUser(page, text, { delayMs = 0 } = {}) {
  let cdp = null;
  for (const ch of text) {
    let combo = null;
    if (/^[a-z]$/.test(ch)) combo = `Key${ch.toUpperCase()}`;
    else if (/^[A-Z]$/.test(ch)) combo = `Shift+Key${ch}`;
    else if (/^[0-9]$/.test(ch)) combo = `Digit${ch}`;
    else if (US_UNSHIFTED[ch]) combo = US_UNSHIFTED[ch];
    else if (US_SHIFTED[ch]) combo = `Shift+${US_SHIFTED[ch]}`;
    else if (ch === '\n' || ch === '\r') combo = 'Enter';
    else if (ch === '\t') combo = 'Tab';
    if (combo) {
      await page.keyboard.press(combo);
    } else {
      cdp ??= await page.context().newCDPSession(page);
      await cdp.send('Input.dispatchKeyEvent', { type: 'keyDown', key: ch, code: '', text: ch, unmodifiedText: ch });
      await cdp.send('Input.dispatchKeyEvent', { type: 'keyUp', key: ch, code: '' });
    }
    if (delayMs) await sleep(delayMs);
  }
  if (cdp) await cdp.detach().catch(() => {});
}

/**
 * Types `text` the way an on-screen keyboard, an IME or another layout's keyboard does: each
 * character is a keydown/keyup whose `key` is the character and whose `code` is the US key
 * at that place (KeyH for "H", Digit1 for "!", none for "ö"), with no Shift pressed.
 */
export async function typeWithoutShift(page, text) {
  const usCode = (ch) => {
    if (/^[a-z]$/i.test(ch)) return `Key${ch.toUpperCase()}`;
    if (/^[0-9]$/.test(ch)) return `Digit${ch}`;
    return US_UNSHIFTED[ch] || US_SHIFTED[ch] || '';
  };
  const cdp = await page.context().newCDPSession(page);
  try {
    for (const ch of text) {
      const code = usCode(ch);
      await cdp.send('Input.dispatchKeyEvent', { type: 'keyDown', key: ch, code, text: ch, unmodifiedText: ch });
      await cdp.send('Input.dispatchKeyEvent', { type: 'keyUp', key: ch, code });
    }
  } finally {
    await cdp.detach().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------
// Viewer page: rights, pointer geometry, clipboard, notices, raw messages

/** Waits until window.porthole.rights is set and has every field of `want`; returns it. */
export async function waitForRights(page, want = {}, timeoutMs = 10000) {
  try {
    await page.waitForFunction((want) => {
      const r = window.porthole?.rights;
      return !!r && Object.entries(want).every(([k, v]) => r[k] === v);
    }, want, { timeout: timeoutMs, polling: 50 });
  } catch (err) {
    const now = await page.evaluate(() => window.porthole?.rights ?? null).catch((e) => `error: ${e.message}`);
    throw new Error(`viewer rights did not become ${JSON.stringify(want)} within ${timeoutMs} ms; ` +
      `now: ${JSON.stringify(now)} (${err.message.split('\n')[0]})`);
  }
  return page.evaluate(() => ({ ...window.porthole.rights }));
}

/**
 * The page position (CSS px, viewport coordinates) showing host pixel (hx, hy): the centre
 * of that pixel inside the <video>'s content box with `object-fit: contain` letterboxing.
 * Returns {x, y, box: {left, top, width, height}, videoWidth, videoHeight}.
 */
export async function videoPoint(page, hx, hy) {
  return page.evaluate(([hx, hy]) => {
    const v = document.getElementById('video') || window.porthole?.video;
    const r = v.getBoundingClientRect();
    const vw = v.videoWidth;
    const vh = v.videoHeight;
    if (!vw || !vh) throw new Error('video has no size yet');
    const fit = getComputedStyle(v).objectFit;
    let left = r.left;
    let top = r.top;
    let w = r.width;
    let h = r.height;
    if (fit === 'contain' || fit === 'scale-down') {
      let s = Math.min(r.width / vw, r.height / vh);
      if (fit === 'scale-down') s = Math.min(s, 1);
      w = vw * s;
      h = vh * s;
      left = r.left + (r.width - w) / 2;
      top = r.top + (r.height - h) / 2;
    } else if (fit !== 'fill') {
      throw new Error(`videoPoint: object-fit ${fit} not handled`);
    }
    return {
      x: left + ((hx + 0.5) / vw) * w,
      y: top + ((hy + 0.5) / vh) * h,
      box: { left, top, width: w, height: h },
      videoWidth: vw,
      videoHeight: vh,
    };
  }, [hx, hy]);
}

/** window.porthole.clipboard as {mime, text, size, bytes: number[]} (or null). */
export async function pageClipboard(page) {
  return page.evaluate(() => {
    const c = window.porthole?.clipboard;
    if (!c) return null;
    return { mime: c.mime, text: c.text, size: c.size, bytes: c.bytes ? Array.from(c.bytes) : null };
  });
}

/** A copy of window.porthole.notices. */
export async function pageNotices(page) {
  return page.evaluate(() => (window.porthole?.notices || []).map((n) => ({ ...n })));
}

/** Waits for a notice (after the first `from`) matching every field of `want`; returns it. */
export async function waitForNotice(page, want, { from = 0, timeoutMs = 5000 } = {}) {
  try {
    await page.waitForFunction(([want, from]) => (window.porthole?.notices || []).slice(from)
      .some((n) => Object.entries(want).every(([k, v]) => n[k] === v)), [want, from],
    { timeout: timeoutMs, polling: 50 });
  } catch (err) {
    const all = await pageNotices(page).catch((e) => `error: ${e.message}`);
    throw new Error(`no notice like ${JSON.stringify(want)} within ${timeoutMs} ms; notices: ` +
      `${JSON.stringify(all)} (${err.message.split('\n')[0]})`);
  }
  const all = await pageNotices(page);
  return all.slice(from).find((n) => Object.entries(want).every(([k, v]) => n[k] === v));
}

/** porthole.sendMessage(label, msg) in the page; resolves to what it returns. */
export async function sendRaw(page, label, msg) {
  return page.evaluate(async ([label, msg]) => window.porthole.sendMessage(label, msg), [label, msg]);
}

/**
 * Dispatches a `paste` ClipboardEvent (bubbling, cancelable, like a real one) on the
 * focused element, with a DataTransfer holding {text} as text/plain or {mime, bytes} as a
 * File. Returns {defaultPrevented}.
 */
export async function dispatchPaste(page, { text, mime, bytes }) {
  return page.evaluate(({ text, mime, bytes }) => {
    const dt = new DataTransfer();
    if (text != null) dt.setData('text/plain', text);
    if (bytes) dt.items.add(new File([new Uint8Array(bytes)], 'pasted', { type: mime }));
    const ev = new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true, composed: true });
    (document.activeElement || document.body).dispatchEvent(ev);
    return { defaultPrevented: ev.defaultPrevented };
  }, { text, mime, bytes: bytes ? Array.from(bytes) : null });
}

// ---------------------------------------------------------------------------------------
// PNG: a tiny encoder (8-bit RGBA) and decoder (8-bit grey/RGB/palette/grey-alpha/RGBA,
// non-interlaced), enough to make clipboard images and compare their pixels.

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** Encodes width x height straight RGBA (Buffer/Uint8Array, rows top-down) as a PNG. */
export function encodePng(width, height, rgba) {
  if (rgba.length !== width * height * 4) throw new Error('encodePng: rgba has the wrong length');
  const stride = width * 4;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (stride + 1)] = 0; // filter: none
    Buffer.from(rgba.buffer, rgba.byteOffset + y * stride, stride).copy(raw, y * (stride + 1) + 1);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // RGBA
  ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr), pngChunk('IDAT', deflateSync(raw)),
    pngChunk('IEND', Buffer.alloc(0))]);
}

/** Decodes a PNG into {width, height, rgba: Buffer}; throws on what it does not support. */
export function decodePng(input) {
  const buf = Buffer.from(input);
  if (buf.length < 8 || !buf.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error('not a PNG (bad signature)');
  let pos = 8;
  let ihdr = null;
  let palette = null;
  let trns = null;
  const idat = [];
  for (;;) {
    if (pos + 12 > buf.length) throw new Error('PNG truncated');
    const len = buf.readUInt32BE(pos);
    const type = buf.toString('latin1', pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (data.length !== len) throw new Error(`PNG chunk ${type} truncated`);
    if (buf.readUInt32BE(pos + 8 + len) !== crc32(buf.subarray(pos + 4, pos + 8 + len))) {
      throw new Error(`PNG chunk ${type} has a bad CRC`);
    }
    pos += 12 + len;
    if (type === 'IHDR') {
      ihdr = { width: data.readUInt32BE(0), height: data.readUInt32BE(4), depth: data[8], colour: data[9], interlace: data[12] };
    } else if (type === 'PLTE') palette = data;
    else if (type === 'tRNS') trns = data;
    else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
  }
  if (!ihdr) throw new Error('PNG without IHDR');
  const { width, height, depth, colour, interlace } = ihdr;
  if (depth !== 8) throw new Error(`PNG bit depth ${depth} not supported by this decoder`);
  if (interlace !== 0) throw new Error('interlaced PNG not supported by this decoder');
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colour];
  if (!channels) throw new Error(`PNG colour type ${colour} unknown`);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length < (stride + 1) * height) throw new Error('PNG image data too short');
  const px = Buffer.alloc(stride * height);
  const bpp = channels;
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = px.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? px.subarray((y - 1) * stride, y * stride) : null;
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? row[i - bpp] : 0;
      const b = prev ? prev[i] : 0;
      const c = prev && i >= bpp ? prev[i - bpp] : 0;
      let v;
      switch (f) {
        case 0: v = src[i]; break;
        case 1: v = src[i] + a; break;
        case 2: v = src[i] + b; break;
        case 3: v = src[i] + ((a + b) >> 1); break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          v = src[i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          break;
        }
        default: throw new Error(`PNG filter ${f} unknown`);
      }
      row[i] = v & 0xff;
    }
  }
  const rgba = Buffer.alloc(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const s = px.subarray(i * channels, (i + 1) * channels);
    let r; let g; let b; let al = 255;
    switch (colour) {
      case 0: r = g = b = s[0]; if (trns && trns.length >= 2 && trns.readUInt16BE(0) === s[0]) al = 0; break;
      case 2:
        [r, g, b] = s;
        if (trns && trns.length >= 6 && trns.readUInt16BE(0) === r && trns.readUInt16BE(2) === g && trns.readUInt16BE(4) === b) al = 0;
        break;
      case 3:
        if (!palette || s[0] * 3 + 2 >= palette.length) throw new Error('PNG palette index out of range');
        r = palette[s[0] * 3]; g = palette[s[0] * 3 + 1]; b = palette[s[0] * 3 + 2];
        if (trns && s[0] < trns.length) al = trns[s[0]];
        break;
      case 4: r = g = b = s[0]; al = s[1]; break;
      default: [r, g, b, al] = s;
    }
    rgba[i * 4] = r; rgba[i * 4 + 1] = g; rgba[i * 4 + 2] = b; rgba[i * 4 + 3] = al;
  }
  return { width, height, rgba };
}

/** A width x height RGBA test picture, different for each `seed`, with some translucency. */
export function makeTestImage(width, height, seed = 0) {
  const rgba = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      rgba[i] = (x * 16 + seed * 40) & 0xff;
      rgba[i + 1] = (y * 16 + seed * 90) & 0xff;
      rgba[i + 2] = ((x ^ y) * 8 + seed * 17) & 0xff;
      rgba[i + 3] = (x + y + seed) % 5 === 0 ? 128 : 255;
    }
  }
  return { width, height, rgba };
}

/** Describes how two decoded images differ ('' when they are the same). */
export function imageDiff(a, b) {
  if (a.width !== b.width || a.height !== b.height) return `size ${a.width}x${a.height} vs ${b.width}x${b.height}`;
  for (let i = 0; i < a.rgba.length; i += 4) {
    for (let k = 0; k < 4; k++) {
      if (a.rgba[i + k] !== b.rgba[i + k]) {
        const p = i / 4;
        return `first difference at (${p % a.width},${Math.floor(p / a.width)}): ` +
          `rgba(${[...a.rgba.subarray(i, i + 4)]}) vs rgba(${[...b.rgba.subarray(i, i + 4)]})`;
      }
    }
  }
  return '';
}

// ---------------------------------------------------------------------------------------
// Audio: a private PulseAudio with a null sink, tones played into it, the share's audio,
// and measurements in the viewer page (WebAudio spectrum, inbound-rtp stats)

// Namespace imports (hoisted like any import) so they cannot clash with names above.
import * as audioFs from 'node:fs';
import * as audioOs from 'node:os';

// PulseAudio directories still to remove; also removed when this process exits (its
// daemons are SIGKILLed then, with every other child).
const pulseDirs = new Set();
process.on('exit', () => {
  for (const dir of pulseDirs) {
    try { audioFs.rmSync(dir, { recursive: true, force: true }); } catch { /* gone */ }
  }
});

/**
 * Starts a private PulseAudio daemon (no systemd, no D-Bus, works as root) in a fresh
 * directory under /tmp, listening on `<dir>/native` with anonymous auth, with one null
 * sink `sink` (the default sink; its monitor is what `porthole share --audio default`
 * captures). Resolves once `pactl info` answers. Returns {dir, socket, server
 * ('unix:<socket>'), env ({PULSE_SERVER}), sink, monitor, pactl(...args), stop, logText,
 * label}. stop() ends the daemon and removes the directory.
 */
export async function startPulse({ sink = 'porthole_null', rate = 48000, channels = 2 } = {}) {
  const dir = audioFs.mkdtempSync(path.join(audioOs.tmpdir(), 'porthole-pulse-'));
  audioFs.chmodSync(dir, 0o700);
  pulseDirs.add(dir);
  const socket = path.join(dir, 'native');
  const removeDir = () => {
    try { audioFs.rmSync(dir, { recursive: true, force: true }); } catch { /* gone */ }
    pulseDirs.delete(dir);
  };
  const env = childEnv({ HOME: dir, XDG_RUNTIME_DIR: dir });
  delete env.PULSE_SERVER;
  const proc = spawnLogged('pulseaudio', 'pulseaudio', [
    '-n', '--daemonize=no', '--exit-idle-time=-1', '--disallow-exit', '--use-pid-file=no',
    '--system=false', '-F', '/dev/null',
    `--load=module-native-protocol-unix socket=${socket} auth-anonymous=1`,
    `--load=module-null-sink sink_name=${sink} rate=${rate} channels=${channels}`,
  ], { env });
  const server = `unix:${socket}`;
  const clientEnv = () => childEnv({ PULSE_SERVER: server });
  const pactl = (...args) => runToolOk('pactl', args, { env: clientEnv(), timeoutMs: 5000 })
    .then((b) => b.toString());
  const up = await waitFor(async () => proc.exitInfo !== null ||
    (audioFs.existsSync(socket) && (await runTool('pactl', ['info'], { env: clientEnv() })
      .then((r) => r.code === 0, () => false))), 10000, 100);
  if (!up || proc.exitInfo) {
    await proc.stop({ signal: 'SIGKILL' });
    removeDir();
    throw new Error(`PulseAudio did not come up on ${socket} within 10 s\n${proc.logText()}`);
  }
  // The only sink is the default anyway; say so explicitly for clarity.
  await pactl('set-default-sink', sink).catch(() => {});
  return {
    dir, socket, server, sink, monitor: `${sink}.monitor`,
    env: { PULSE_SERVER: server },
    pactl,
    stop: async () => {
      const r = await proc.stop({ signal: 'SIGTERM', graceMs: 3000 });
      removeDir();
      return r;
    },
    logText: proc.logText,
    label: `pulseaudio ${dir}`,
  };
}

let toneCounter = 0;

/**
 * Plays a sine of `freq` Hz (stereo, 48 kHz float, amplitude `volume`) into `pulse`'s sink
 * (sox -> pacat) until stop(). `latencyMs`: the player's buffer (pacat --latency-msec);
 * null for PulseAudio's default (~2 s, what paplay and power-saving players get).
 * Resolves once PulseAudio lists the stream. Returns {freq, stop, logText, label}.
 */
export async function playTone(pulse, freq, {
  volume = 0.5, seconds = 3600, device = pulse.sink, latencyMs = 20,
} = {}) {
  const f = Number(freq);
  const vol = Number(volume);
  const secs = Number(seconds);
  if (!(f > 0 && f < 24000) || !(vol > 0 && vol <= 1) || !(secs > 0)) {
    throw new Error(`playTone: bad arguments freq=${freq} volume=${volume} seconds=${seconds}`);
  }
  if (!/^[\w.-]+$/.test(device)) throw new Error(`playTone: bad device name ${JSON.stringify(device)}`);
  if (latencyMs !== null && !(Number(latencyMs) > 0)) throw new Error(`playTone: bad latencyMs ${latencyMs}`);
  const name = `porthole-tone-${f}-${process.pid}-${++toneCounter}`;
  const script =
    `sox -q -n -r 48000 -c 2 -e floating-point -b 32 -L -t raw - synth ${secs} sine ${f} vol ${vol} | ` +
    `pacat --playback --raw --format=float32le --rate=48000 --channels=2 ` +
    `${latencyMs === null ? '' : `--latency-msec=${Number(latencyMs)} `}` +
    `--device=${device} --client-name=porthole-e2e --stream-name=${name}`;
  const proc = spawnLogged(`tone ${f} Hz`, 'sh', ['-c', script], { env: childEnv({ PULSE_SERVER: pulse.server }) });
  const playing = await waitFor(async () => proc.exitInfo !== null ||
    (await pulse.pactl('list', 'sink-inputs').catch(() => '')).includes(name), 5000, 50);
  if (!playing || proc.exitInfo) {
    await proc.stop({ signal: 'SIGKILL' });
    throw new Error(`the ${f} Hz tone did not start playing within 5 s\n${proc.logText()}`);
  }
  return {
    freq: f,
    stop: () => proc.stop({ signal: 'SIGTERM', graceMs: 2000 }),
    exited: proc.exited,
    logText: proc.logText,
    label: `tone ${f} Hz`,
  };
}

/**
 * startShare() with extra environment variables for the share (e.g. pulse.env, or
 * {PULSE_SERVER: ...}). startShare spawns before its first await, with a copy of
 * process.env: the variables are set just around that synchronous part and restored
 * right after, so nothing else (Chromium in particular) ever sees them.
 */
export function startShareWithEnv(env, opts) {
  const saved = new Map();
  for (const [k, v] of Object.entries(env || {})) {
    saved.set(k, Object.prototype.hasOwnProperty.call(process.env, k) ? process.env[k] : undefined);
    if (v == null) delete process.env[k]; else process.env[k] = String(v);
  }
  try {
    return startShare(opts);
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
  }
}

const VIEWER_ASSETS = Object.freeze({
  '/': 'index.html',
  '/index.html': 'index.html',
  '/viewer.js': 'viewer.js',
  '/viewer.css': 'viewer.css',
  '/protocol.js': 'protocol.js',
  '/pake.js': 'pake.js',
});

/**
 * The viewer page is embedded in the porthole binary at build time. When the binary's
 * copy differs from the working tree's assets/ (a binary built before the last edit of
 * the page), makes every page of `browser` get the tree's files instead, with the share's
 * own response headers (CSP included), and says so on stderr. Returns {stale: [paths]}.
 * A no-op when the binary is up to date.
 */
export async function useTreeAssets(browser, share) {
  const stale = [];
  for (const [p, file] of Object.entries(VIEWER_ASSETS)) {
    const tree = audioFs.readFileSync(path.join(REPO, 'assets', file));
    const res = await share.fetch(p);
    const served = Buffer.from(await res.arrayBuffer());
    if (res.status === 200 && !served.equals(tree)) stale.push(p);
  }
  if (!stale.length || browser.treeAssets) return { stale };
  process.stderr.write(`note: ${PORTHOLE_BIN} serves an older viewer page (${stale.join(' ')} differ ` +
    'from assets/); the browser gets the working tree\'s assets/ instead. Rebuild with `cargo build`.\n');
  browser.treeAssets = true;
  onNewContext(browser, routeTreeAssets);
  return { stale };
}

/**
 * Makes the pages of browser context `context` get the viewer page from the working
 * tree's assets/ (with the share's own response headers, CSP included) instead of the copy
 * embedded in the porthole binary. For every page with PORTHOLE_E2E_TREE_ASSETS=1 (to run
 * any test against a page edited since the binary was built).
 */
export function routeTreeAssets(context) {
  return context.route((url) => Object.hasOwn(VIEWER_ASSETS, url.pathname), async (route) => {
    const file = VIEWER_ASSETS[new URL(route.request().url()).pathname];
    const response = await route.fetch();
    await route.fulfill({ response, body: audioFs.readFileSync(path.join(REPO, 'assets', file)) });
  });
}

/**
 * Runs `await setup(context)` on every browser context `browser` makes from now on (the
 * pages of openPage/openViewer each get their own), before any page of it loads: for
 * routes and init scripts.
 */
export function onNewContext(browser, setup) {
  const inner = browser.newContext.bind(browser);
  browser.newContext = async (...args) => {
    const context = await inner(...args);
    await setup(context);
    return context;
  };
}

/**
 * Makes the pages of `browser` refuse to start playback with sound before the user has
 * interacted with the page, as Firefox and Safari do (Chromium lets WebRTC streams
 * autoplay with sound): HTMLMediaElement.play() on an unmuted element rejects with
 * NotAllowedError, and unmuting a playing element pauses it, until the page has seen a
 * trusted pointerdown, click or keydown (which page.click() and page.keyboard make; not
 * navigator.userActivation, which Playwright's page.evaluate() activates). Counts them in
 * window.__autoplayRefusals and window.__autoplayPauses.
 */
export function refuseAutoplayWithSound(browser) {
  onNewContext(browser, (context) => context.addInitScript(() => {
    const play = HTMLMediaElement.prototype.play;
    let interacted = false;
    for (const type of ['pointerdown', 'click', 'keydown']) {
      window.addEventListener(type, (ev) => { if (ev.isTrusted) interacted = true; }, true);
    }
    window.__autoplayRefusals = 0;
    window.__autoplayPauses = 0;
    // Unmuting a playing element without a gesture pauses it (Chromium and WebKit do so
    // for everything but WebRTC streams).
    const muted = Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, 'muted');
    Object.defineProperty(HTMLMediaElement.prototype, 'muted', {
      ...muted,
      set(value) {
        muted.set.call(this, value);
        if (!value && !interacted && !this.paused) {
          window.__autoplayPauses += 1;
          this.pause();
        }
      },
    });
    HTMLMediaElement.prototype.play = function playUnlessRefused(...args) {
      if (!this.muted && !interacted) {
        window.__autoplayRefusals += 1;
        return Promise.reject(new DOMException(
          'play() failed because the user didn\'t interact with the document first.', 'NotAllowedError'));
      }
      return play.apply(this, args);
    };
  }));
}

/** The viewer's audio state: {present, muted, blocked} (window.porthole.audio) plus the stream's audio tracks. */
export async function viewerAudio(page) {
  return page.evaluate(() => {
    const v = document.getElementById('video');
    const tracks = v?.srcObject?.getAudioTracks?.() ?? [];
    const btn = document.getElementById('btn-audio');
    return {
      ...(window.porthole?.audio ?? {}),
      tracks: tracks.map((t) => ({ id: t.id, readyState: t.readyState, muted: t.muted, enabled: t.enabled })),
      videoMuted: v?.muted ?? null,
      paused: v?.paused ?? null,
      button: btn ? { hidden: btn.hidden, title: btn.title, label: btn.getAttribute('aria-label') } : null,
    };
  });
}

/** Waits until the viewer's stream has a live audio track; returns viewerAudio(). */
export async function waitForAudioTrack(page, timeoutMs = 10000) {
  return pollUntil(() => viewerAudio(page),
    (a) => a.present && a.tracks.some((t) => t.readyState === 'live'),
    { timeoutMs, what: 'a live audio track in the viewer' });
}

/**
 * Builds a WebAudio graph in the page: the <video> element's audio track ->
 * MediaStreamSource -> AnalyserNode (fftSize, no smoothing). Chromium feeds a remote
 * WebRTC track to WebAudio only while the track is also being played, which the viewer
 * does. Returns {sampleRate, binHz, state}.
 */
export async function startAudioAnalyser(page, { fftSize = 8192 } = {}) {
  return page.evaluate(async (fftSize) => {
    const v = document.getElementById('video');
    const track = v?.srcObject?.getAudioTracks?.().find((t) => t.readyState === 'live');
    if (!track) throw new Error('the viewer\'s stream has no live audio track');
    const old = window.__portholeAnalyser;
    if (old) old.ctx.close().catch(() => {});
    const ctx = new AudioContext();
    const src = ctx.createMediaStreamSource(new MediaStream([track]));
    const an = ctx.createAnalyser();
    an.fftSize = fftSize;
    an.smoothingTimeConstant = 0;
    src.connect(an);
    if (ctx.state !== 'running') await ctx.resume().catch(() => {});
    window.__portholeAnalyser = { ctx, src, an, buf: new Float32Array(an.frequencyBinCount) };
    return { sampleRate: ctx.sampleRate, binHz: ctx.sampleRate / fftSize, state: ctx.state };
  }, fftSize);
}

/**
 * One look at the spectrum: the strongest bin (above 40 Hz), its frequency (refined by
 * parabolic interpolation), level in dBFS, and the noise floor (the median bin).
 * Returns {freq, db, floorDb, snrDb, binHz, state, time}.
 */
export async function audioPeak(page) {
  return page.evaluate(() => {
    const a = window.__portholeAnalyser;
    if (!a) throw new Error('startAudioAnalyser() first');
    const { an, buf, ctx } = a;
    an.getFloatFrequencyData(buf);
    const binHz = ctx.sampleRate / an.fftSize;
    let best = -1;
    for (let i = Math.max(1, Math.ceil(40 / binHz)); i < buf.length - 1; i++) {
      if (Number.isFinite(buf[i]) && (best < 0 || buf[i] > buf[best])) best = i;
    }
    const finite = Array.from(buf).filter(Number.isFinite).sort((x, y) => x - y);
    const floorDb = finite.length ? finite[Math.floor(finite.length / 2)] : -Infinity;
    if (best < 0) return { freq: null, db: -Infinity, floorDb, snrDb: 0, binHz, state: ctx.state, time: ctx.currentTime };
    const [l, c, r] = [buf[best - 1], buf[best], buf[best + 1]];
    const denom = l - 2 * c + r;
    const shift = Number.isFinite(denom) && denom !== 0 ? Math.max(-0.5, Math.min(0.5, (0.5 * (l - r)) / denom)) : 0;
    return {
      freq: (best + shift) * binHz, db: c, floorDb, snrDb: c - floorDb, binHz,
      state: ctx.state, time: ctx.currentTime,
    };
  });
}

/**
 * Polls audioPeak() until the peak is within toleranceHz of freq, at least minDb dBFS and
 * minSnrDb above the noise floor, `stable` looks in a row. Returns {peak, afterMs, history}
 * (history: the peaks seen, for a report); throws with the recent history on timeout.
 */
export async function waitForTone(page, freq, {
  toleranceHz = 15, minDb = -50, minSnrDb = 30, stable = 3, timeoutMs = 10000, intervalMs = 100,
} = {}) {
  const start = Date.now();
  const history = [];
  let run = 0;
  for (;;) {
    const p = await audioPeak(page);
    history.push({ t: Date.now() - start, freq: p.freq && Math.round(p.freq * 10) / 10, db: Math.round(p.db), floorDb: Math.round(p.floorDb) });
    const ok = p.freq !== null && Math.abs(p.freq - freq) <= toleranceHz && p.db >= minDb && p.snrDb >= minSnrDb;
    run = ok ? run + 1 : 0;
    if (run >= stable) return { peak: p, afterMs: Date.now() - start, history };
    if (Date.now() - start >= timeoutMs) {
      throw new Error(`no ${freq} Hz tone (±${toleranceHz} Hz, ≥ ${minDb} dBFS, ≥ ${minSnrDb} dB over the floor) ` +
        `within ${timeoutMs} ms; last peaks: ${JSON.stringify(history.slice(-10))}`);
    }
    await sleep(intervalMs);
  }
}

/**
 * The page's peer connection getStats(), reduced to the inbound-rtp entries by kind, each
 * with its codec's mimeType as `codec`: {timestamp, audio, video, transceivers}.
 * transceivers: [{kind, mid, direction, currentDirection}].
 */
export async function inboundRtp(page) {
  return page.evaluate(async () => {
    const pc = window.porthole?.pc;
    if (!pc) return { timestamp: Date.now(), audio: null, video: null, transceivers: [] };
    const report = await pc.getStats();
    const codecs = new Map();
    report.forEach((s) => { if (s.type === 'codec') codecs.set(s.id, s.mimeType); });
    const out = { timestamp: null, audio: null, video: null };
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const kind = s.kind || s.mediaType;
      out[kind] = { ...s, codec: codecs.get(s.codecId) ?? null };
      out.timestamp = s.timestamp;
    });
    out.timestamp ??= performance.timeOrigin + performance.now();
    out.transceivers = pc.getTransceivers().map((t) => ({
      kind: t.receiver.track?.kind ?? null, mid: t.mid, direction: t.direction, currentDirection: t.currentDirection,
    }));
    return out;
  });
}

// ---------------------------------------------------------------------------------------
// porthole record

/**
 * Starts `porthole record URL FILE ...args` (e.g. ['--duration', '10'] or ['--code', c]).
 * Returns {file, child, exited (Promise<{code, signal}>), stop({signal, graceMs}),
 * stderrText(), summary() (the "recorded ..." line parsed: {seconds, videoFrames,
 * audioPackets, bytes, file} or null), exitInfo, logText, label}. stop() defaults to
 * SIGINT (the recorder then finishes the file).
 */
export function startRecord(url, file, args = []) {
  requirePorthole();
  const proc = spawnLogged('record', PORTHOLE_BIN, ['record', url, file, ...args], { env: childEnv() });
  return recordHandle(proc, file, `porthole record ${file}`);
}

/** The handle startRecord and startRecordIn return for a running recorder `proc`. */
function recordHandle(proc, file, label) {
  const stderrText = () => proc.stderr.toString();
  return {
    file,
    child: proc.child,
    exited: proc.exited,
    get exitInfo() { return proc.exitInfo; },
    stop: ({ signal = 'SIGINT', graceMs = 5000 } = {}) => proc.stop({ signal, graceMs }),
    stderrText,
    summary() {
      const m = stderrText().match(/recorded ([\d.]+) s: (\d+) video frames, (\d+) audio packets, (\d+) bytes to (.+)$/m);
      return m && {
        seconds: Number(m[1]), videoFrames: Number(m[2]), audioPackets: Number(m[3]), bytes: Number(m[4]), file: m[5],
      };
    },
    logText: proc.logText,
    label,
  };
}

// ---------------------------------------------------------------------------------------
// The desktop app and the native viewer (eframe windows on an Xvfb), and screenshots of
// X displays: decoded PNGs to find things in by colour, crop and save.

// Namespace imports (hoisted like any import) so they cannot clash with names above.
import * as appFs from 'node:fs';
import * as appOs from 'node:os';

/** Where the app's and the viewer's windows open with no window manager. */
export const APP_WINDOW = Object.freeze({ x: 0, y: 0, width: 900, height: 640 });

/**
 * Settings for a share from the app without questions: no sound, control allowed, no
 * clipboard, no approval prompt (the app's `settings.json`).
 */
export const APP_SETTINGS = Object.freeze({
  monitor: 0, audio: 'none', allow_control: true, allow_clipboard: false, ask_approval: false, last_address: '',
});

// App home directories still to remove (also when this process exits).
const appDirs = new Set();
process.on('exit', () => {
  for (const dir of appDirs) {
    try { appFs.rmSync(dir, { recursive: true, force: true }); } catch { /* gone */ }
  }
});

/**
 * Starts the `porthole` binary with a window on `display`: the desktop app (args [] or
 * ['--share']) or the native viewer (['view', url]). It gets a fresh home directory
 * (HOME, XDG_CONFIG_HOME, XDG_CACHE_HOME, XDG_DATA_HOME, and a 0700 XDG_RUNTIME_DIR, all
 * under one /tmp/porthole-app-* directory removed on stop), so no settings leak in or
 * out; `settings` (an object) is written to `$XDG_CONFIG_HOME/porthole/settings.json`
 * first. Returns {display, dir, settingsFile, readSettings(), lines, waitLine(re, ms,
 * what), waitUrl(ms) (the `viewer: URL` line of `--share`), exited, exitInfo, stop(),
 * stderrText(), logText, label}.
 */
export function startPortholeApp({ display, args = [], settings = null, label = null, env = {} }) {
  requirePorthole();
  const dir = appFs.mkdtempSync(path.join(appOs.tmpdir(), 'porthole-app-'));
  appDirs.add(dir);
  const sub = (name, mode = 0o755) => {
    const p = path.join(dir, name);
    appFs.mkdirSync(p, { recursive: true, mode });
    appFs.chmodSync(p, mode);
    return p;
  };
  const runtime = sub('runtime', 0o700);
  const config = sub('config');
  const settingsFile = path.join(config, 'porthole', 'settings.json');
  if (settings) {
    sub(path.join('config', 'porthole'));
    appFs.writeFileSync(settingsFile, JSON.stringify(settings));
  }
  const name = label || `porthole ${args[0] === 'view' ? 'view' : `app${args.length ? ` ${args.join(' ')}` : ''}`} ${display}`;
  const proc = spawnLogged(name, PORTHOLE_BIN, args, {
    env: xEnv(display, {
      HOME: dir, XDG_RUNTIME_DIR: runtime, XDG_CONFIG_HOME: config,
      XDG_CACHE_HOME: sub('cache'), XDG_DATA_HOME: sub('data'), ...env,
    }),
  });
  return {
    display, dir, settingsFile,
    readSettings: () => JSON.parse(appFs.readFileSync(settingsFile, 'utf8')),
    lines: proc.lines,
    waitLine: proc.waitLine,
    waitUrl: async (timeoutMs = 30000) => (await proc.waitLine(/^viewer: (http:\/\/\S+)$/, timeoutMs, '"viewer: http://..."'))[1],
    exited: proc.exited,
    get exitInfo() { return proc.exitInfo; },
    stop: async () => {
      const r = await proc.stop({ signal: 'SIGTERM', graceMs: 3000 });
      try { appFs.rmSync(dir, { recursive: true, force: true }); } catch { /* gone */ }
      appDirs.delete(dir);
      return r;
    },
    stderrText: () => proc.stderr.toString(),
    logText: proc.logText,
    label: name,
  };
}

/**
 * Waits for a visible top-level window called exactly `name` on `display` (xdotool
 * search); returns its id (decimal string).
 */
export async function findWindow(display, name = 'Porthole', timeoutMs = 20000) {
  const re = `^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
  const ids = await pollUntil(async () => (await runTool('xdotool', ['search', '--onlyvisible', '--name', re], { display }))
    .stdout.toString().split('\n').map((l) => l.trim()).filter(Boolean), (l) => l.length > 0,
  { timeoutMs, intervalMs: 100, what: `a visible window named ${JSON.stringify(name)} on ${display}` });
  return ids[ids.length - 1];
}

let grabCounter = 0;

/** A screenshot of the whole X screen of `display` (`porthole screenshot`), decoded: {width, height, rgba}. */
export async function grabScreen(display, { timeoutMs = 20000 } = {}) {
  requirePorthole();
  const file = path.join(appOs.tmpdir(), `porthole-grab-${process.pid}-${++grabCounter}.png`);
  try {
    await runToolOk(PORTHOLE_BIN, ['screenshot', '--display', display, file], { timeoutMs, env: childEnv() });
    return decodePng(appFs.readFileSync(file));
  } finally {
    try { appFs.unlinkSync(file); } catch { /* not written */ }
  }
}

/** The part {x, y, width, height} of a decoded image (clipped to it), as a new image. */
export function cropImage(img, { x, y, width, height }) {
  const x0 = Math.max(0, x);
  const y0 = Math.max(0, y);
  const w = Math.min(img.width, x + width) - x0;
  const h = Math.min(img.height, y + height) - y0;
  if (w <= 0 || h <= 0) throw new Error(`cropImage: ${JSON.stringify({ x, y, width, height })} is outside ${img.width}x${img.height}`);
  const rgba = Buffer.alloc(w * h * 4);
  for (let row = 0; row < h; row++) {
    const from = ((y0 + row) * img.width + x0) * 4;
    Buffer.from(img.rgba.buffer, img.rgba.byteOffset + from, w * 4).copy(rgba, row * w * 4);
  }
  return { width: w, height: h, rgba };
}

/** Writes a decoded image as a PNG file (creating its directory). */
export function writePngFile(file, img) {
  appFs.mkdirSync(path.dirname(file), { recursive: true });
  appFs.writeFileSync(file, encodePng(img.width, img.height, img.rgba));
}

/** The mean [r, g, b] of the (2r+1)x(2r+1) patch around (x, y) of a decoded image. */
export function imageAverage(img, x, y, r = 2) {
  const sum = [0, 0, 0];
  let n = 0;
  for (let yy = Math.round(y) - r; yy <= Math.round(y) + r; yy++) {
    for (let xx = Math.round(x) - r; xx <= Math.round(x) + r; xx++) {
      if (xx < 0 || yy < 0 || xx >= img.width || yy >= img.height) continue;
      const i = (yy * img.width + xx) * 4;
      sum[0] += img.rgba[i]; sum[1] += img.rgba[i + 1]; sum[2] += img.rgba[i + 2];
      n++;
    }
  }
  if (!n) throw new Error(`imageAverage: (${x},${y}) is outside ${img.width}x${img.height}`);
  return sum.map((s) => Math.round(s / n));
}

function colourMatcher(img, colour, tolerance) {
  const [r, g, b] = rgb(colour);
  return (i) => Math.abs(img.rgba[i] - r) <= tolerance && Math.abs(img.rgba[i + 1] - g) <= tolerance &&
    Math.abs(img.rgba[i + 2] - b) <= tolerance;
}

function regionOf(img, region) {
  const r = region || { x: 0, y: 0, width: img.width, height: img.height };
  const x0 = Math.max(0, r.x);
  const y0 = Math.max(0, r.y);
  return { x0, y0, x1: Math.min(img.width, r.x + r.width), y1: Math.min(img.height, r.y + r.height) };
}

/**
 * The bounding box {x, y, width, height, count} of the pixels within `tolerance` (per
 * channel) of `colour` ('RRGGBB' or [r,g,b]) inside `region` (default: the whole image);
 * count: how many matched. null when none does.
 */
export function findColourBox(img, colour, { tolerance = 40, region = null } = {}) {
  const match = colourMatcher(img, colour, tolerance);
  const { x0, y0, x1, y1 } = regionOf(img, region);
  let bx0 = Infinity; let by0 = Infinity; let bx1 = -1; let by1 = -1; let count = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      if (!match((y * img.width + x) * 4)) continue;
      count++;
      if (x < bx0) bx0 = x;
      if (x > bx1) bx1 = x;
      if (y < by0) by0 = y;
      if (y > by1) by1 = y;
    }
  }
  return count ? { x: bx0, y: by0, width: bx1 - bx0 + 1, height: by1 - by0 + 1, count } : null;
}

/**
 * Connected areas (4-neighbour) of pixels within `tolerance` of `colour` inside `region`
 * whose bounding box is a square-ish minSize..maxSize px on each side (|w - h| <= 2): e.g.
 * egui's checkbox boxes. Each: {x, y, width, height, count, cx, cy}, sorted top to
 * bottom, then left to right.
 */
export function findColourSquares(img, colour, { tolerance = 3, region = null, minSize = 10, maxSize = 20 } = {}) {
  const match = colourMatcher(img, colour, tolerance);
  const { x0, y0, x1, y1 } = regionOf(img, region);
  const w = x1 - x0;
  const seen = new Uint8Array(w * (y1 - y0));
  const out = [];
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const k = (y - y0) * w + (x - x0);
      if (seen[k] || !match((y * img.width + x) * 4)) continue;
      seen[k] = 1;
      const stack = [[x, y]];
      let bx0 = x; let by0 = y; let bx1 = x; let by1 = y; let count = 0;
      while (stack.length) {
        const [px, py] = stack.pop();
        count++;
        if (px < bx0) bx0 = px;
        if (px > bx1) bx1 = px;
        if (py < by0) by0 = py;
        if (py > by1) by1 = py;
        for (const [nx, ny] of [[px + 1, py], [px - 1, py], [px, py + 1], [px, py - 1]]) {
          if (nx < x0 || ny < y0 || nx >= x1 || ny >= y1) continue;
          const nk = (ny - y0) * w + (nx - x0);
          if (seen[nk] || !match((ny * img.width + nx) * 4)) continue;
          seen[nk] = 1;
          stack.push([nx, ny]);
        }
      }
      const bw = bx1 - bx0 + 1;
      const bh = by1 - by0 + 1;
      if (bw >= minSize && bw <= maxSize && bh >= minSize && bh <= maxSize && Math.abs(bw - bh) <= 2) {
        out.push({ x: bx0, y: by0, width: bw, height: bh, count, cx: bx0 + (bw - 1) / 2, cy: by0 + (bh - 1) / 2 });
      }
    }
  }
  return out.sort((a, b) => a.y - b.y || a.x - b.x);
}

// ---------------------------------------------------------------------------------------
// LAN discovery (mDNS/DNS-SD): private network namespaces joined by a veth pair, `porthole
// share`/`porthole list` run inside them, and a private avahi-daemon (with its own D-Bus)
// for interop.
//
// A namespace here is held by a process (`unshare --net --uts ... sleep`), not named with
// `ip netns add`: inside the suite's `unshare -n` that bind-mounts /run/netns/NAME in the
// host's mount namespace (unshare -n has no mount namespace of its own), and under a
// non-root `unshare -r -n` it cannot mount at all. Commands run inside with
// `nsenter -t PID -n -u` (the network and the host name of the namespace). The veth pair is
// created straight into the two namespaces, so it never exists in the caller's. When the
// holder and everything started inside are gone, the kernel deletes the namespace and its
// veth end: nothing outlives the test.

import * as lanFs from 'node:fs';
import * as lanOs from 'node:os';

let lanCounter = 0;

/** A short random suffix for host names, service names and namespaces. */
export function lanSuffix() {
  return `${(++lanCounter).toString(36)}${randomBytes(3).toString('hex')}`;
}

/**
 * Starts a fresh network namespace (only `lo`, down) with its own host name, held by a
 * sleeping process. Returns a node: {name, pid, hostname, nsenterArgs(cmd, args),
 * run(cmd, args, opts) (runTool inside), runOk(cmd, args, opts), spawn(label, cmd, args,
 * {env, stdin}) (a logged process inside: {lines, stderr, waitLine, exited, exitInfo, stop,
 * logText}), stop, logText, label}. Needs root (or CAP_SYS_ADMIN in a user namespace).
 */
export async function startNetnsNode({ name = 'a', hostname = `pt-${name}-${lanSuffix()}` } = {}) {
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(hostname)) throw new Error(`startNetnsNode: bad host name ${JSON.stringify(hostname)}`);
  const holder = spawnLogged(`netns ${name}`, 'unshare', [
    '--net', '--uts', 'sh', '-c', `hostname ${hostname} && echo ready && exec sleep infinity`,
  ], { env: childEnv() });
  try {
    await holder.waitLine(/^ready$/, 5000, '"ready"');
  } catch (err) {
    await holder.stop({ signal: 'SIGKILL' });
    throw new Error(`cannot make a network namespace (needs root, or CAP_SYS_ADMIN): ${err.message}`);
  }
  const pid = holder.child.pid;
  const nsenterArgs = (cmd, args = []) => ['-t', String(pid), '-n', '-u', '--', cmd, ...args];
  const node = {
    name, pid, hostname,
    nsenterArgs,
    run: (cmd, args = [], opts = {}) => runTool('nsenter', nsenterArgs(cmd, args), opts),
    runOk: (cmd, args = [], opts = {}) => runToolOk('nsenter', nsenterArgs(cmd, args), opts),
    spawn: (label, cmd, args = [], { env, stdin } = {}) =>
      spawnLogged(`${label} [${name}]`, 'nsenter', nsenterArgs(cmd, args), { env: env || childEnv(), stdin }),
    stop: () => holder.stop({ signal: 'SIGKILL', graceMs: 2000 }),
    logText: holder.logText,
    label: `network namespace ${name} (${hostname}, holder pid ${pid})`,
  };
  return node;
}

/**
 * Two network namespaces `a` and `b` (see startNetnsNode) joined by a veth pair `va`/`vb`:
 * a = `${subnet}.1/24` (and `${subnet6}1/64` with ipv6), b = `.2`. Nothing is routed
 * anywhere else; multicast works on veth without a route (mdns-sd and avahi pick the
 * interface per socket). Each node also gets {ifname, ip4, ip6}. Returns {a, b, stop,
 * logText, label}; stop() ends both holders (the kernel then removes the namespaces and
 * the veth pair).
 */
export async function startLan({ ipv4 = true, ipv6 = false, subnet = '10.213.0', subnet6 = 'fd00:213::' } = {}) {
  const nodes = [];
  const stop = async () => {
    for (const n of [...nodes].reverse()) await n.stop();
  };
  try {
    nodes.push(await startNetnsNode({ name: 'a' }));
    nodes.push(await startNetnsNode({ name: 'b' }));
    const [a, b] = nodes;
    await runToolOk('ip', ['link', 'add', 'va', 'netns', String(a.pid), 'type', 'veth',
      'peer', 'name', 'vb', 'netns', String(b.pid)]);
    for (const [node, ifname, n] of [[a, 'va', 1], [b, 'vb', 2]]) {
      node.ifname = ifname;
      node.ip4 = ipv4 ? `${subnet}.${n}` : null;
      node.ip6 = ipv6 ? `${subnet6}${n}` : null;
      await node.runOk('ip', ['link', 'set', 'lo', 'up']);
      if (ipv4) await node.runOk('ip', ['addr', 'add', `${node.ip4}/24`, 'dev', ifname]);
      if (ipv6) await node.runOk('ip', ['-6', 'addr', 'add', `${node.ip6}/64`, 'dev', ifname, 'nodad']);
      await node.runOk('ip', ['link', 'set', ifname, 'up']);
    }
    await pollUntil(async () => {
      const out = await Promise.all([[a, 'va'], [b, 'vb']].map(([n, i]) => n.runOk('ip', ['-o', 'link', 'show', i])));
      return out.map((o) => o.toString());
    }, (links) => links.every((l) => /[<,]LOWER_UP[,>]/.test(l)), { timeoutMs: 5000, what: 'both veth ends up' });
    return {
      a, b, stop,
      logText: () => nodes.map((n) => n.logText()).join(''),
      label: `LAN ${a.hostname} <-> ${b.hostname}`,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * `porthole share` on a pty (util-linux `script`), as a host at a terminal runs it: it asks
 * before letting a viewer in. `node`: in that network namespace. Returns {write(text),
 * output(), waitFor(re, from, timeoutMs, what), stop()}.
 */
export async function startShareOnTerminal({ display, code, args = [], node = null, listen = '127.0.0.1:0' }) {
  requirePorthole();
  const quote = (a) => `'${String(a).replace(/'/g, "'\\''")}'`;
  const cmd = [...(node ? ['nsenter', ...node.nsenterArgs(PORTHOLE_BIN)] : [PORTHOLE_BIN]),
    'share', '--display', display, '--listen', listen, '--code', code, '--no-announce', ...args]
    .map(quote).join(' ');
  const env = { ...process.env, NO_COLOR: '1', TERM: 'dumb' };
  delete env.DISPLAY;
  const child = spawn('script', ['-qfec', cmd, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let out = '';
  let exited = false;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (c) => { out += c.replace(/\r/g, ''); });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (c) => { out += c; });
  child.on('exit', () => { exited = true; });
  return {
    write: (text) => child.stdin.write(text),
    output: () => out,
    async waitFor(re, from = 0, timeoutMs = 10000, what = String(re)) {
      return pollUntil(() => re.exec(out.slice(from)), Boolean, { timeoutMs, what: `${what} on the terminal` })
        .catch((err) => { throw new Error(`${err.message}\n--- terminal ---\n${out}`); });
    },
    async stop() {
      if (!exited) {
        try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
        await sleep(500);
        try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
      }
    },
    logText: () => out,
    label: 'porthole share (on a pty)',
  };
}

/**
 * Starts `porthole share --display D --listen LISTEN --code CODE ...args` inside `node`
 * (see startNetnsNode), with extra environment `env`. Resolves once it prints its viewer
 * URL. Returns {url, host, port, code, fingerprint (the DTLS certificate's SHA-256, as
 * logged: 'ab:cd:...', lowercase), shortFingerprint (its first 16 hex digits, what is
 * announced), lines, exited, exitInfo, stop({signal}) (default SIGINT, SIGKILL after 5 s;
 * resolves to {code, signal, killed, ms}), stderrText, logText, label}.
 */
export async function startShareIn(node, { display, code = randomCode(), listen = '0.0.0.0:0', args = [], env = {} }) {
  requirePorthole();
  const proc = node.spawn('share', PORTHOLE_BIN, [
    'share', '--display', display, '--listen', listen, '--code', code, '--no-approval', ...args,
  ], { env: childEnv(env) });
  let url;
  let fingerprint;
  try {
    url = (await proc.waitLine(/^viewer: (http:\/\/\S+)$/, 30000, '"viewer: http://..."'))[1];
    // Logged on stderr just before the URL goes to stdout: give that pipe a moment.
    fingerprint = await pollUntil(() => proc.stderr.toString().match(/DTLS certificate fingerprint=([0-9A-Fa-f:]+)/)?.[1],
      (f) => !!f, { timeoutMs: 3000, intervalMs: 20, what: 'the share to log "DTLS certificate fingerprint=..."' });
  } catch (err) {
    await proc.stop({ signal: 'SIGKILL' });
    throw err;
  }
  const u = new URL(url);
  fingerprint = fingerprint.toLowerCase();
  return {
    url, host: u.hostname, port: Number(u.port), code,
    fingerprint,
    shortFingerprint: fingerprint.replace(/:/g, '').slice(0, 16),
    lines: proc.lines,
    exited: proc.exited,
    get exitInfo() { return proc.exitInfo; },
    stop: async ({ signal = 'SIGINT', graceMs = 5000 } = {}) => {
      const started = Date.now();
      const r = await proc.stop({ signal, graceMs });
      return { ...r, ms: Date.now() - started };
    },
    stderrText: () => proc.stderr.toString(),
    logText: proc.logText,
    label: `porthole share [${node.name}]`,
  };
}

/** The environment for `porthole list` with mdns-sd's debug log (see parseMdnsLog). */
export const MDNS_DEBUG_ENV = Object.freeze({ PORTHOLE_LOG: 'warn,mdns_sd::service_daemon=debug' });

/**
 * What mdns-sd's debug log (MDNS_DEBUG_ENV) says happened, with its timestamps (ms since
 * the epoch): {start (first log line), resolved: [{t, fullname}], removed: [{t, fullname}]}.
 * fullname: e.g. 'pt-a-1x._porthole._tcp.local.'. For figures and preconditions only.
 */
export function parseMdnsLog(text) {
  const out = { start: null, resolved: [], removed: [] };
  for (const line of text.split('\n')) {
    const m = line.match(/(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)\s+\w+\s+(\S+): (.*)$/);
    if (!m) continue;
    const t = Date.parse(m[1]);
    out.start ??= t;
    let r;
    if ((r = m[3].match(/^resolved '(.+?)' -> host/))) out.resolved.push({ t, fullname: r[1] });
    else if ((r = m[3].match(/sent ServiceRemoved to listener of \S+: (.+)$/))) out.removed.push({ t, fullname: r[1].trim() });
  }
  return out;
}

/** Parses `porthole list` text output: NAME<TAB>ADDRESS:PORT<TAB>FLAGS -> [{name, address, port, flags, fp, line}]. */
export function parseListLines(text) {
  return text.split('\n').filter((l) => l.trim()).map((line) => {
    const parts = line.split('\t');
    const m = parts[1]?.match(/^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/);
    const f = parts[2]?.match(/^(\S*) fp=(\S*)$/);
    return {
      line,
      name: parts[0],
      address: m ? (m[1] ?? m[2]) : null,
      bracketed: !!m?.[1],
      port: m ? Number(m[3]) : null,
      flags: f ? (f[1] ? f[1].split(',') : []) : null,
      fp: f ? f[2] : null,
      fields: parts.length,
    };
  });
}

/**
 * Runs `porthole list --timeout S [--json]` inside `node` (killed after S + 10 s). Returns
 * {code, signal, timedOut, ms, stdout, stderr, entries} where entries is the parsed JSON
 * array (json) or parseListLines() (text), null when it failed or did not parse (then
 * parseError says why). env: extra environment (e.g. MDNS_DEBUG_ENV).
 */
export async function portholeList(node, { timeout = 3, json = true, env = {}, timeoutMs = null } = {}) {
  requirePorthole();
  const started = Date.now();
  const r = await node.run(PORTHOLE_BIN, listArgs(timeout, json), {
    env: childEnv(env), timeoutMs: timeoutMs ?? timeout * 1000 + 10000,
  });
  const ms = Date.now() - started;
  const stdout = r.stdout.toString();
  return {
    code: r.code, signal: r.signal, timedOut: r.timedOut, ms, stdout, stderr: r.stderr,
    ...listEntries(r.code, stdout, json),
  };
}

/** The arguments of `porthole list --timeout S [--json]`. */
function listArgs(timeout, json) {
  return ['list', '--timeout', String(timeout), ...(json ? ['--json'] : [])];
}

/**
 * What a `porthole list` that exited with `code` printed: {entries, parseError}; entries
 * is the parsed JSON array (json) or parseListLines() (text), null when it failed or did
 * not parse (then parseError says why).
 */
function listEntries(code, stdout, json) {
  if (code !== 0) return { entries: null, parseError: null };
  try {
    return { entries: json ? JSON.parse(stdout) : parseListLines(stdout), parseError: null };
  } catch (err) {
    return { entries: null, parseError: err.message };
  }
}

/**
 * A short Node script run inside a namespace: POSTs a minimal recvonly H.264 offer (made
 * by hand: no browser needed to read the answer) to `${origin}/whep` with the code, reads
 * the answer's a=fingerprint, and DELETEs the session it made. Prints one JSON line.
 */
/** The page's pairing module, for the probes below (they import it by URL). */
const PAKE_URL = new URL('../../assets/pake.js', import.meta.url).href;

/** The start of the probes below: their arguments, and pairing as a viewer does. */
const PROBE_PAIRING = `
const [origin, code, pakeUrl] = process.argv.slice(-3);
const { pair } = await import(pakeUrl);
async function pairWithShare() {
  const wasm = await fetch(new URL('/pake.wasm', origin), { signal: AbortSignal.timeout(8000) })
    .then((r) => r.arrayBuffer()).then((b) => WebAssembly.compile(b));
  return pair(origin, code, { module: wasm });
}
`;

const WHEP_PROBE = `${PROBE_PAIRING}
const { randomBytes } = await import('node:crypto');
const hex = (n) => randomBytes(n).toString('hex');
const fp = [...randomBytes(32)].map((b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':');
const sdp = ['v=0', 'o=- ' + Date.now() + ' 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0',
  'm=video 9 UDP/TLS/RTP/SAVPF 102', 'c=IN IP4 0.0.0.0', 'a=rtcp:9 IN IP4 0.0.0.0',
  'a=ice-ufrag:' + hex(4), 'a=ice-pwd:' + hex(12), 'a=fingerprint:sha-256 ' + fp, 'a=setup:actpass',
  'a=mid:0', 'a=recvonly', 'a=rtcp-mux', 'a=rtpmap:102 H264/90000', 'a=rtcp-fb:102 nack pli',
  'a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f', ''].join('\\r\\n');
const out = {};
try {
  const paired = await pairWithShare();
  const auth = { Authorization: paired.authorization('POST', '/whep', sdp) };
  const r = await fetch(new URL('/whep', origin), { method: 'POST', headers: { 'Content-Type': 'application/sdp', ...auth }, body: sdp, signal: AbortSignal.timeout(8000) });
  const text = await r.text();
  out.status = r.status;
  out.location = r.headers.get('location');
  out.fingerprint = (text.match(/^a=fingerprint:sha-256 (\\S+)/m) || [])[1] ?? null;
  out.answerSigned = paired.verifyAnswer(text, r.headers.get('porthole-answer-mac'));
  if (r.status !== 201) out.body = text.slice(0, 500);
  if (out.location) {
    const del = { Authorization: paired.authorization('DELETE', out.location, '') };
    out.deleted = (await fetch(new URL(out.location, origin), { method: 'DELETE', headers: del, signal: AbortSignal.timeout(5000) })).status;
  }
} catch (e) {
  out.error = String(e.cause?.code || e.cause?.message || e.message);
}
console.log(JSON.stringify(out));
`;

/**
 * From inside `node`: POSTs a WHEP offer to `origin` with `code` (see WHEP_PROBE). Returns
 * {status, location, fingerprint ('AB:CD:...' from the answer, or null), deleted (the
 * DELETE's status), body (when not 201), error (when the request failed)}.
 */
export async function whepFrom(node, origin, code) {
  const r = await node.runOk(process.execPath, ['--input-type=module', '-e', WHEP_PROBE, origin, code, PAKE_URL], { timeoutMs: 20000 });
  return JSON.parse(r.toString().trim().split('\n').pop());
}

/** A Node script run inside a namespace: a signed GET /api/stats; prints its JSON. */
const STATS_PROBE = `${PROBE_PAIRING}
const paired = await pairWithShare();
const r = await fetch(new URL('/api/stats', origin), {
  headers: { Authorization: paired.authorization('GET', '/api/stats', '') }, signal: AbortSignal.timeout(8000) });
console.log(JSON.stringify(await r.json()));
`;

/** From inside `node`: the share's /api/stats at `origin` (signed, as a viewer pairs). */
export async function statsFrom(node, origin, code) {
  const r = await node.runOk(process.execPath, ['--input-type=module', '-e', STATS_PROBE, origin, code, PAKE_URL],
    { timeoutMs: 20000 });
  return JSON.parse(r.toString().trim().split('\n').pop());
}

/** From inside `node`: GET url. Returns {status} or {error: 'ECONNREFUSED' | ...}. */
export async function httpFrom(node, url, { timeoutMs = 5000 } = {}) {
  const script = `const url = process.argv[process.argv.length - 1];
fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(${Number(timeoutMs)}) })
  .then(async (r) => { await r.arrayBuffer(); console.log(JSON.stringify({ status: r.status })); },
    (e) => console.log(JSON.stringify({ error: String(e.cause?.code || e.cause?.message || e.name || e.message) })));`;
  const r = await node.runOk(process.execPath, ['-e', script, url], { timeoutMs: timeoutMs + 5000 });
  return JSON.parse(r.toString().trim().split('\n').pop());
}

/** avahi's escaped names (`\032` decimal bytes, `\.` and `\\`) back to text. */
export function unescapeAvahi(s) {
  const parts = [];
  for (const m of s.matchAll(/\\(\d{3})|\\([\s\S])|([^\\]+)/gu)) {
    if (m[1]) parts.push(Buffer.from([Number(m[1])]));
    else parts.push(Buffer.from(m[2] ?? m[3]));
  }
  return Buffer.concat(parts).toString('utf8');
}

/**
 * Parses `avahi-browse -p` lines: [{event: '+' | '=' | '-', iface, proto, name (unescaped),
 * rawName, type, domain, host, address, port, txt ({key: value}), txtList (['k=v', ...])}];
 * host/address/port/txt only on '=' (resolved) lines.
 */
export function parseAvahiBrowse(lines) {
  const out = [];
  for (const line of lines) {
    const f = line.split(';');
    if (!['+', '=', '-'].includes(f[0]) || f.length < 6) continue;
    const e = { event: f[0], iface: f[1], proto: f[2], rawName: f[3], name: unescapeAvahi(f[3]), type: f[4], domain: f[5] };
    if (f[0] === '=') {
      e.host = f[6];
      e.address = f[7];
      e.port = Number(f[8]);
      const rawTxt = f.slice(9).join(';');
      e.txtList = [...rawTxt.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
      e.txt = Object.fromEntries(e.txtList.map((kv) => {
        const i = kv.indexOf('=');
        return i < 0 ? [kv, null] : [kv.slice(0, i), kv.slice(i + 1)];
      }));
    }
    out.push(e);
  }
  return out;
}

const lanDirs = new Set();
process.on('exit', () => {
  for (const dir of lanDirs) {
    try { lanFs.rmSync(dir, { recursive: true, force: true }); } catch { /* gone */ }
  }
});

/**
 * A private avahi-daemon inside `node` (a namespace of startLan), on `node.ifname` only,
 * with its own D-Bus system bus: dbus-daemon listens on a socket in a fresh
 * /tmp/porthole-avahi-* directory (DBUS_SYSTEM_BUS_ADDRESS points the daemon and the
 * avahi tools there), and avahi-daemon runs in its own mount namespace with a tmpfs on
 * /run (its pid file and socket are compiled in as /run/avahi-daemon/...) and on
 * /etc/avahi/services (no static services). Neither touches the host's D-Bus or avahi.
 * The host name is the namespace's. Resolves once avahi says "Server startup complete".
 * Returns {dir, env, browse(type, {timeoutMs}) (avahi-browse -rpt, parsed), startBrowse(type)
 * (a running avahi-browse -rp: {events(), waitEvent(pred, timeoutMs, what) -> {event, at},
 * stop, ...}), publish(name, type, port, txtList) (a running avahi-publish -s, resolved once
 * established), stop, logText, label}.
 */
export async function startAvahi(node, { ipv6 = true } = {}) {
  for (const tool of ['dbus-daemon', 'avahi-daemon', 'avahi-browse', 'avahi-publish']) {
    const found = (process.env.PATH || '/usr/sbin:/usr/bin').split(':').concat(['/usr/sbin', '/usr/bin'])
      .some((d) => { try { accessSync(path.join(d, tool), fsConstants.X_OK); return true; } catch { return false; } });
    if (!found) throw new Error(`${tool} is missing: install avahi-daemon, avahi-utils and dbus (scripts/install-deps.sh test)`);
  }
  const dir = lanFs.mkdtempSync(path.join(lanOs.tmpdir(), 'porthole-avahi-'));
  lanDirs.add(dir);
  const busSocket = path.join(dir, 'bus');
  const busConf = path.join(dir, 'bus.conf');
  const avahiConf = path.join(dir, 'avahi-daemon.conf');
  lanFs.writeFileSync(busConf, `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${busSocket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`);
  lanFs.writeFileSync(avahiConf, `[server]
use-ipv4=yes
use-ipv6=${ipv6 ? 'yes' : 'no'}
allow-interfaces=${node.ifname}
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000
[wide-area]
enable-wide-area=no
[publish]
publish-addresses=yes
publish-hinfo=no
publish-workstation=no
publish-domain=no
[reflector]
enable-reflector=no
`);
  const env = childEnv({ DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${busSocket}` });
  delete env.DBUS_SESSION_BUS_ADDRESS;
  const procs = [];
  const stop = async () => {
    for (const p of [...procs].reverse()) await p.stop({ signal: 'SIGTERM', graceMs: 3000 });
    try { lanFs.rmSync(dir, { recursive: true, force: true }); } catch { /* gone */ }
    lanDirs.delete(dir);
  };
  const logText = () => procs.slice(0, 2).map((p) => p.logText()).join(''); // the daemons
  try {
    const dbus = node.spawn('dbus-daemon', 'dbus-daemon', [
      `--config-file=${busConf}`, '--nofork', '--nopidfile', '--nosyslog', '--print-address',
    ], { env });
    procs.push(dbus);
    await dbus.waitLine(/^unix:/, 10000, 'its address');
    const script = 'mount -t tmpfs -o mode=0755 tmpfs /run && mkdir /run/avahi-daemon && ' +
      '{ [ ! -d /etc/avahi/services ] || mount -t tmpfs -o mode=0755 tmpfs /etc/avahi/services; } && ' +
      `exec avahi-daemon -f '${avahiConf}' --no-drop-root --no-chroot --no-rlimits --no-proc-title 2>&1`;
    const avahi = node.spawn('avahi-daemon', 'unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { env });
    procs.push(avahi);
    await avahi.waitLine(/Server startup complete/, 15000, '"Server startup complete"');
  } catch (err) {
    const logs = logText();
    await stop();
    throw new Error(`${err.message}\n${logs}`);
  }

  async function browse(type = '_porthole._tcp', { timeoutMs = 10000 } = {}) {
    const r = await node.run('avahi-browse', ['-rpt', type], { env, timeoutMs });
    if (r.code !== 0) throw new Error(`avahi-browse -rpt ${type} failed: code=${r.code} ${r.stderr.trim()}`);
    const text = r.stdout.toString();
    return { text, events: parseAvahiBrowse(text.split('\n')) };
  }

  function startBrowse(type = '_porthole._tcp') {
    const p = node.spawn('avahi-browse', 'avahi-browse', ['-rp', type], { env });
    procs.push(p);
    const events = () => parseAvahiBrowse(p.lines);
    return {
      events,
      async waitEvent(pred, timeoutMs = 10000, what = 'an avahi-browse event') {
        const e = await pollUntil(() => events().find(pred), (x) => !!x, { timeoutMs, intervalMs: 20, what });
        return { event: e, at: Date.now() };
      },
      stop: () => p.stop({ signal: 'SIGTERM', graceMs: 2000 }),
      logText: p.logText,
      label: `avahi-browse -rp ${type} [${node.name}]`,
    };
  }

  async function publish(name, type, port, txtList = []) {
    const p = node.spawn('avahi-publish', 'avahi-publish', ['-s', name, type, String(port), ...txtList], { env });
    procs.push(p);
    // It says so on stderr.
    const m = await pollUntil(() => p.stderr.toString().match(/Established under name '(.*)'$/m), (x) => !!x || !!p.exitInfo,
      { timeoutMs: 10000, intervalMs: 20, what: 'avahi-publish to say "Established under name"' })
      .catch((err) => { throw new Error(`${err.message}\n${p.logText()}`); });
    if (!m) throw new Error(`avahi-publish exited: ${JSON.stringify(p.exitInfo)}\n${p.logText()}`);
    return {
      established: m[1],
      stop: () => p.stop({ signal: 'SIGTERM', graceMs: 2000 }),
      logText: p.logText,
      label: `avahi-publish ${name} [${node.name}]`,
    };
  }

  return { dir, env, browse, startBrowse, publish, stop, logText, label: `avahi-daemon [${node.name}] in ${dir}` };
}

/**
 * Starts `porthole list --timeout S [--json]` inside `node` and returns at once (for a
 * browse that runs across an event, e.g. a share stopping): {started (ms since the epoch),
 * done (Promise<{code, signal, ms, stdout, stderr, entries, parseError}>), stderrText(),
 * stop, logText, label}. env: extra environment (e.g. MDNS_DEBUG_ENV).
 */
export function startListIn(node, { timeout = 6, json = true, env = {} } = {}) {
  requirePorthole();
  const started = Date.now();
  const proc = node.spawn('porthole list', PORTHOLE_BIN, listArgs(timeout, json), { env: childEnv(env) });
  const killer = setTimeout(() => { proc.stop({ signal: 'SIGKILL' }); }, timeout * 1000 + 10000);
  const done = proc.exited.then((r) => {
    clearTimeout(killer);
    const stdout = proc.lines.join('\n');
    return {
      code: r.code, signal: r.signal, ms: Date.now() - started, stdout, stderr: proc.stderr.toString(),
      ...listEntries(r.code, stdout, json),
    };
  });
  return {
    started, done,
    stderrText: () => proc.stderr.toString(),
    stop: () => { clearTimeout(killer); return proc.stop({ signal: 'SIGTERM', graceMs: 2000 }); },
    logText: proc.logText,
    label: `porthole list --timeout ${timeout} [${node.name}]`,
  };
}

/**
 * A passive mDNS listener inside `node` (a namespace of startLan): a Node script bound to
 * port 5353 (SO_REUSEADDR, next to any mDNS stack there) in 224.0.0.251 on node.ip4 (and
 * ff02::fb on node.ifname with ipv6) that prints every packet it hears as a JSON line:
 * {t (ms since the epoch), from, family, response (bool), records: [{section, name, type,
 * ttl, target?, port?}]}. Names are lowercase, dotted, without the final dot. Returns
 * {packets(), goodbyes(fullname) (the responses that carry the instance's SRV with TTL 0),
 * stop, logText, label}.
 */
export async function startMdnsSniffer(node, { ipv6 = true } = {}) {
  const script = `
const dgram = require('node:dgram');
const [ip4, ifname, v6] = process.argv.slice(-3);
const TYPES = { 1: 'A', 12: 'PTR', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 47: 'NSEC', 255: 'ANY' };
function readName(buf, off) {
  const labels = [];
  let jumped = false;
  let end = off;
  for (let guard = 0; guard < 128; guard++) {
    const len = buf[off];
    if (len === undefined) throw new Error('truncated name');
    if ((len & 0xc0) === 0xc0) {
      if (!jumped) end = off + 2;
      off = ((len & 0x3f) << 8) | buf[off + 1];
      jumped = true;
      continue;
    }
    if (len === 0) { if (!jumped) end = off + 1; return [labels.join('.').toLowerCase(), end]; }
    labels.push(buf.toString('utf8', off + 1, off + 1 + len));
    off += 1 + len;
  }
  throw new Error('name loop');
}
function parse(buf) {
  const flags = buf.readUInt16BE(2);
  const counts = [4, 6, 8, 10].map((o) => buf.readUInt16BE(o));
  let off = 12;
  for (let i = 0; i < counts[0]; i++) { off = readName(buf, off)[1] + 4; }
  const records = [];
  ['answer', 'authority', 'additional'].forEach((section, k) => {
    for (let i = 0; i < counts[k + 1]; i++) {
      const [name, o] = readName(buf, off);
      const type = buf.readUInt16BE(o);
      const ttl = buf.readUInt32BE(o + 4);
      const len = buf.readUInt16BE(o + 8);
      const rdata = o + 10;
      const r = { section, name, type: TYPES[type] || type, ttl };
      if (type === 12) r.target = readName(buf, rdata)[0];
      if (type === 33) { r.port = buf.readUInt16BE(rdata + 4); r.target = readName(buf, rdata + 6)[0]; }
      records.push(r);
      off = rdata + len;
    }
  });
  return { response: (flags & 0x8000) !== 0, records };
}
function listen(type, group, iface) {
  const s = dgram.createSocket({ type, reuseAddr: true });
  s.on('message', (msg, rinfo) => {
    let p;
    try { p = parse(msg); } catch (e) { p = { error: e.message }; }
    console.log(JSON.stringify({ t: Date.now(), from: rinfo.address, family: type, ...p }));
  });
  s.on('error', (e) => { console.error(type + ': ' + e.message); });
  return new Promise((resolve) => s.bind(5353, () => { s.addMembership(group, iface); resolve(); }));
}
Promise.all([listen('udp4', '224.0.0.251', ip4), ...(v6 === '1' ? [listen('udp6', 'ff02::fb', '::%' + ifname)] : [])])
  .then(() => console.log('ready'));
`;
  const file = path.join(lanOs.tmpdir(), `porthole-mdns-sniffer-${process.pid}-${lanSuffix()}.cjs`);
  lanFs.writeFileSync(file, script);
  lanDirs.add(file);
  const proc = node.spawn('mdns sniffer', process.execPath, [file, node.ip4 || '0.0.0.0', node.ifname, ipv6 ? '1' : '0']);
  try {
    await proc.waitLine(/^ready$/, 5000, '"ready"');
  } catch (err) {
    await proc.stop({ signal: 'SIGKILL' });
    throw err;
  }
  const packets = () => proc.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  return {
    packets,
    goodbyes: (fullname) => packets().filter((p) => p.response && p.records?.some((r) =>
      r.type === 'SRV' && r.ttl === 0 && r.name === fullname.toLowerCase().replace(/\.$/, ''))),
    stop: async () => {
      const r = await proc.stop({ signal: 'SIGTERM', graceMs: 2000 });
      try { lanFs.rmSync(file, { force: true }); } catch { /* gone */ }
      lanDirs.delete(file);
      return r;
    },
    logText: proc.logText,
    label: `mdns sniffer [${node.name}]`,
  };
}

/**
 * Multicasts one mDNS query for `name` (type `type`, e.g. 'A') from `node` over IPv4, from
 * port 5353 as a full mDNS querier does, so the responder answers by multicast. Resolves
 * once sent.
 */
export async function sendMdnsQuery(node, name, type = 'A') {
  const code = { A: 1, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, ANY: 255 }[type];
  if (!code) throw new Error(`sendMdnsQuery: unknown type ${type}`);
  const script = `
const dgram = require('node:dgram');
const [ip4, name, code] = process.argv.slice(-3);
const labels = name.replace(/\\.$/, '').split('.');
const parts = [Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])];
for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l));
parts.push(Buffer.from([0, code >> 8, code & 255, 0, 1]));
const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
s.bind(5353, () => {
  s.setMulticastInterface(ip4);
  s.send(Buffer.concat(parts), 5353, '224.0.0.251', (e) => { if (e) { console.error(e.message); process.exit(1); } console.log('sent'); s.close(); });
});
`;
  const file = path.join(lanOs.tmpdir(), `porthole-mdns-query-${process.pid}-${lanSuffix()}.cjs`);
  lanFs.writeFileSync(file, script);
  try {
    await node.runOk(process.execPath, [file, node.ip4, name, String(code)], { timeoutMs: 5000 });
  } finally {
    lanFs.rmSync(file, { force: true });
  }
}

// ---------------------------------------------------------------------------------------
// TURN: a share and a viewer with no path to each other but through a TURN server (coturn)
// in a third namespace between them. Namespaces as for LAN discovery (startNetnsNode).

import * as turnFs from 'node:fs';
import * as turnOs from 'node:os';

/** The addresses of startTurnNet: t on both links, a (the share) and b (the viewer). */
export const TURN_NET = Object.freeze({
  tA: '10.214.1.1', a: '10.214.1.2', // link t <-> a: 10.214.1.0/24
  tB: '10.214.2.1', b: '10.214.2.2', // link t <-> b: 10.214.2.0/24
});

/**
 * Three network namespaces (see startNetnsNode): t between a and b, joined by two veth
 * pairs, `ta`/`va` (10.214.1.0/24: t .1, a .2) and `tb`/`vb` (10.214.2.0/24: t .1, b .2).
 * a routes 10.214.2.0/24 via t and b routes 10.214.1.0/24 via t, so each can reach both
 * of t's addresses (delivered locally in t), but IP forwarding is off in t (set and
 * checked), so a and b cannot reach each other: what goes from one to the other through t
 * is dropped there. Nothing is routed anywhere else. Returns {t, a, b, forwarding (t's
 * net.ipv4.ip_forward as read back), stop, logText, label}.
 */
export async function startTurnNet() {
  const nodes = [];
  const stop = async () => {
    for (const n of [...nodes].reverse()) await n.stop();
  };
  try {
    for (const name of ['t', 'a', 'b']) nodes.push(await startNetnsNode({ name }));
    const [t, a, b] = nodes;
    for (const n of nodes) await n.runOk('ip', ['link', 'set', 'lo', 'up']);
    await t.runOk('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=0']);
    const forwarding = (await t.runOk('cat', ['/proc/sys/net/ipv4/ip_forward'])).toString().trim();
    const links = [
      [a, 'ta', 'va', TURN_NET.tA, TURN_NET.a, '10.214.2.0/24'],
      [b, 'tb', 'vb', TURN_NET.tB, TURN_NET.b, '10.214.1.0/24'],
    ];
    for (const [node, tIf, nIf, tIp, nIp, other] of links) {
      await runToolOk('ip', ['link', 'add', tIf, 'netns', String(t.pid), 'type', 'veth',
        'peer', 'name', nIf, 'netns', String(node.pid)]);
      await t.runOk('ip', ['addr', 'add', `${tIp}/24`, 'dev', tIf]);
      await t.runOk('ip', ['link', 'set', tIf, 'up']);
      await node.runOk('ip', ['addr', 'add', `${nIp}/24`, 'dev', nIf]);
      await node.runOk('ip', ['link', 'set', nIf, 'up']);
      node.ifname = nIf;
      node.ip4 = nIp;
    }
    await pollUntil(async () => {
      const out = await Promise.all([[t, 'ta'], [t, 'tb'], [a, 'va'], [b, 'vb']]
        .map(([n, i]) => n.runOk('ip', ['-o', 'link', 'show', i])));
      return out.map((o) => o.toString());
    }, (l) => l.every((x) => /[<,]LOWER_UP[,>]/.test(x)), { timeoutMs: 5000, what: 'all four veth ends up' });
    await a.runOk('ip', ['route', 'add', '10.214.2.0/24', 'via', TURN_NET.tA]);
    await b.runOk('ip', ['route', 'add', '10.214.1.0/24', 'via', TURN_NET.tB]);
    return {
      t, a, b, forwarding, stop,
      logText: () => nodes.map((n) => n.logText()).join(''),
      label: `TURN net ${a.hostname} <-> ${t.hostname} <-> ${b.hostname}`,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * coturn (`turnserver`) inside `node`: no config file, UDP (and TCP) on `port` at each of
 * `listen`, relaying from `relay`, long-term credentials `user`:`password` in `realm`
 * (and TLS on `tls.port`, 5349, with `tls.cert` and `tls.key` PEM files, when `tls` is given),
 * no DTLS, no CLI, verbose log to stdout, then `extraArgs`; its pid file and user
 * database in a fresh /tmp/porthole-turn-* directory (nothing of the host's). coturn's
 * defaults refuse loopback peers (127.x, ::1). Resolves once it listens.
 * Returns {dir, port, lines, logText, stop, label}.
 */
export async function startTurnServer(node, {
  listen, relay, port = 3478, user = 'u', password = 'p', realm = 'porthole.test',
  minPort = 49152, maxPort = 49252, extraArgs = [], tls = null,
}) {
  requireExecutable('/usr/bin/turnserver', 'install coturn (scripts/install-deps.sh test)');
  const dir = turnFs.mkdtempSync(path.join(turnOs.tmpdir(), 'porthole-turn-'));
  lanDirs.add(dir);
  const args = ['-n', '--log-file=stdout', '--simple-log', '--verbose',
    ...listen.map((ip) => `--listening-ip=${ip}`), `--relay-ip=${relay}`, `--listening-port=${port}`,
    `--min-port=${minPort}`, `--max-port=${maxPort}`,
    '--lt-cred-mech', `--user=${user}:${password}`, `--realm=${realm}`, '--fingerprint',
    ...(tls ? [`--cert=${tls.cert}`, `--pkey=${tls.key}`, `--tls-listening-port=${tls.port ?? 5349}`, '--no-tlsv1', '--no-tlsv1_1']
      : ['--no-tls']),
    '--no-dtls', '--no-cli', '--no-rfc5780', '--no-stun-backward-compatibility',
    `--pidfile=${path.join(dir, 'turnserver.pid')}`, `--db=${path.join(dir, 'turndb')}`, ...extraArgs];
  const proc = node.spawn('turnserver', '/usr/bin/turnserver', args);
  const stop = async () => {
    const r = await proc.stop({ signal: 'SIGTERM', graceMs: 3000 });
    try { turnFs.rmSync(dir, { recursive: true, force: true }); } catch { /* gone */ }
    lanDirs.delete(dir);
    return r;
  };
  try {
    // "IPv4. UDP listener opened on: 10.214.1.1:3478", one per address, then it serves.
    await pollUntil(() => listen.every((ip) => proc.lines.some((l) => l.includes(`UDP listener opened on: ${ip}:${port}`))) ||
      proc.exitInfo, (v) => !!v, { timeoutMs: 10000, intervalMs: 50, what: 'turnserver to open its listeners' });
    if (proc.exitInfo) throw new Error(`turnserver exited: ${JSON.stringify(proc.exitInfo)}`);
  } catch (err) {
    const logs = proc.logText();
    await stop();
    throw new Error(`${err.message}\n${logs}`);
  }
  return { dir, port, lines: proc.lines, logText: proc.logText, stop, label: `turnserver [${node.name}]` };
}

/**
 * A TCP relay inside `node`: a Node script listening on `host`:0 that pipes each
 * connection to `target` ('ip:port'), so HTTP (the page, WHEP) reaches a share across a
 * namespace that forwards nothing. Returns {host, port, connections() (how many it took),
 * stop, logText, label}.
 */
export async function startTcpProxy(node, host, target) {
  const script = `
const net = require('node:net');
const [host, target] = process.argv.slice(-2);
const i = target.lastIndexOf(':');
let n = 0;
const server = net.createServer((c) => {
  const id = ++n;
  console.log('conn ' + id + ' from ' + c.remoteAddress + ':' + c.remotePort);
  const up = net.connect(Number(target.slice(i + 1)), target.slice(0, i));
  c.pipe(up); up.pipe(c);
  const end = (w) => (e) => { if (e) console.log('conn ' + id + ' ' + w + ' error ' + e.message); c.destroy(); up.destroy(); };
  c.on('error', end('client')); up.on('error', end('upstream'));
  c.on('close', () => up.destroy()); up.on('close', () => c.destroy());
});
server.listen(0, host, () => console.log('listening ' + server.address().port));
`;
  const proc = node.spawn('tcp proxy', process.execPath, ['-e', script, host, target]);
  let port;
  try {
    port = Number((await proc.waitLine(/^listening (\d+)$/, 5000, '"listening PORT"'))[1]);
  } catch (err) {
    await proc.stop({ signal: 'SIGKILL' });
    throw err;
  }
  return {
    host, port,
    connections: () => proc.lines.filter((l) => /^conn \d+ from /.test(l)).length,
    stop: () => proc.stop({ signal: 'SIGTERM', graceMs: 2000 }),
    logText: proc.logText,
    label: `tcp proxy ${host}:${port} -> ${target} [${node.name}]`,
  };
}

/** Like WHEP_PROBE, but it prints the whole answer (SDP) too. */
const WHEP_ANSWER_PROBE = WHEP_PROBE.replace("out.location = r.headers.get('location');",
  "out.location = r.headers.get('location');\n  out.answer = text;");

/**
 * From inside `node`: POSTs a hand-made recvonly H.264 offer (no candidates) to
 * `${origin}/whep` with `code` and DELETEs the session. Returns {status, location,
 * fingerprint, deleted, answer (the SDP), ms (the POST's round trip), error}.
 */
export async function whepAnswerFrom(node, origin, code) {
  if (!WHEP_ANSWER_PROBE.includes('out.answer = text')) throw new Error('whepAnswerFrom: WHEP_PROBE changed shape');
  const started = Date.now();
  const r = await node.runOk(process.execPath, ['--input-type=module', '-e', WHEP_ANSWER_PROBE, origin, code, PAKE_URL],
    { timeoutMs: 20000 });
  return { ...JSON.parse(r.toString().trim().split('\n').pop()), ms: Date.now() - started };
}

/**
 * The `a=candidate:` lines of an SDP: [{line, foundation, component, transport, priority,
 * address, port, type ('host' | 'srflx' | 'prflx' | 'relay'), raddr, rport}].
 */
export function sdpCandidates(sdp) {
  const out = [];
  for (const raw of sdp.split(/\r?\n/)) {
    const m = raw.match(/^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) typ (\S+)(.*)$/);
    if (!m) continue;
    const rest = m[8];
    out.push({
      line: raw, foundation: m[1], component: Number(m[2]), transport: m[3].toLowerCase(), priority: Number(m[4]),
      address: m[5], port: Number(m[6]), type: m[7],
      raddr: rest.match(/ raddr (\S+)/)?.[1] ?? null, rport: Number(rest.match(/ rport (\d+)/)?.[1] ?? NaN) || null,
    });
  }
  return out;
}

/**
 * What coturn's verbose log (startTurnServer's lines) says about each TURN session
 * (allocation): Map id -> {id, user, allocated (an ALLOCATE succeeded), peers (addresses
 * it was given a permission or channel for), permissions / channelBinds (successful
 * CREATE_PERMISSION / CHANNEL_BIND), forbidden (requests refused 403), refreshedToZero (the
 * client released it), usage and peerUsage ({rp, rb, sp, sb}: packets and bytes received
 * and sent, with the client and with its peers; printed once the allocation is gone),
 * closed (the reason), lines}.
 */
export function parseTurnLog(lines) {
  const sessions = new Map();
  for (const line of lines) {
    const m = line.match(/session (\d+): (.*)$/);
    if (!m) continue;
    const [, id, text] = m;
    let s = sessions.get(id);
    if (!s) {
      s = { id, user: null, allocated: false, peers: [], permissions: 0, channelBinds: 0, forbidden: 0,
        refreshedToZero: false, usage: null, peerUsage: null, closed: null, lines: [] };
      sessions.set(id, s);
    }
    s.lines.push(line);
    let r;
    if ((r = text.match(/user <([^>]*)>: incoming packet (\w+) processed, success/))) {
      s.user = r[1];
      if (r[2] === 'ALLOCATE') s.allocated = true;
      else if (r[2] === 'CREATE_PERMISSION') s.permissions++;
      else if (r[2] === 'CHANNEL_BIND') s.channelBinds++;
    } else if (/incoming packet CREATE_PERMISSION processed, error 403/.test(text)) {
      s.forbidden++;
    } else if ((r = text.match(/^peer (\S+) lifetime updated/))) {
      if (!s.peers.includes(r[1])) s.peers.push(r[1]);
    } else if (/^refreshed, .*lifetime=0\b/.test(text)) {
      s.refreshedToZero = true;
    } else if ((r = text.match(/^(peer )?usage: .*rp=(\d+), rb=(\d+), sp=(\d+), sb=(\d+)/))) {
      s[r[1] ? 'peerUsage' : 'usage'] = { rp: Number(r[2]), rb: Number(r[3]), sp: Number(r[4]), sb: Number(r[5]) };
    } else if ((r = text.match(/^closed .*reason: (.*)$/))) {
      s.closed = r[1];
    }
  }
  return sessions;
}

/** Decodes one frame of a recording at `seconds` as rgb24 (ffmpeg); returns {width, height, data}. */
export async function frameAt(file, seconds, { width, height }) {
  const r = await runTool('ffmpeg', ['-nostdin', '-v', 'error', '-ss', String(seconds), '-i', file,
    '-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { timeoutMs: 20000 });
  if (r.code !== 0) throw new Error(`ffmpeg extracts a frame at ${seconds} s (code=${r.code}); stderr:\n${r.stderr}`);
  if (r.stdout.length !== width * height * 3) {
    throw new Error(`a ${width}x${height} rgb24 frame at ${seconds} s, got ${r.stdout.length} bytes; stderr:\n${r.stderr}`);
  }
  return { width, height, data: r.stdout };
}

/** [r, g, b] averaged over the 5x5 patch around each point of an rgb24 frame. */
export function sampleFrame({ width, height, data }, points) {
  return points.map(({ x, y }) => {
    const sum = [0, 0, 0];
    const x0 = Math.max(0, Math.min(width - 5, x - 2));
    const y0 = Math.max(0, Math.min(height - 5, y - 2));
    for (let dy = 0; dy < 5; dy++) {
      for (let dx = 0; dx < 5; dx++) {
        const i = ((y0 + dy) * width + x0 + dx) * 3;
        for (let k = 0; k < 3; k++) sum[k] += data[i + k];
      }
    }
    return sum.map((v) => Math.round(v / 25));
  });
}

/** startRecord inside `node` (a namespace of startLan/startTurnNet): the same handle. */
export function startRecordIn(node, url, file, args = []) {
  requirePorthole();
  const proc = node.spawn('record', PORTHOLE_BIN, ['record', url, file, ...args], { env: childEnv() });
  return recordHandle(proc, file, `porthole record ${file} [${node.name}]`);
}

/**
 * From inside `node`: opens a TCP connection to host:port and closes it. Returns
 * {connected: true} or {error: 'ECONNREFUSED' | 'EHOSTUNREACH' | 'ETIMEDOUT' | ...}
 * ('ETIMEDOUT' also when nothing answered within timeoutMs: a dropped SYN).
 */
export async function tcpConnectFrom(node, host, port, { timeoutMs = 2000 } = {}) {
  const script = `const net = require('node:net');
const [host, port, ms] = process.argv.slice(-3);
const done = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
const c = net.connect(Number(port), host, () => { c.destroy(); done({ connected: true }); });
c.on('error', (e) => done({ error: String(e.code || e.message) }));
setTimeout(() => done({ error: 'ETIMEDOUT' }), Number(ms));`;
  const r = await node.runOk(process.execPath, ['-e', script, host, String(port), String(timeoutMs)], { timeoutMs: timeoutMs + 5000 });
  return JSON.parse(r.toString().trim().split('\n').pop());
}

// ---------------------------------------------------------------------------------------
// A Wayland desktop (issue 18): scripts/wayland-desktop.sh runs sway (headless, pixman),
// PipeWire, WirePlumber and the ScreenCast portal as an unprivileged user in its own D-Bus
// session, and `porthole share --backend wayland` inside it. Needs root.

import * as wlFs from 'node:fs';

export const WAYLAND_USER = 'porthole-wl';

/** Runs cmd to its exit; resolves to {code, stdout, stderr}. `detached`: its output is not
 * waited for (wl-copy forks a child that keeps serving the clipboard). */
export function runToExit(cmd, args, { timeoutMs = 10000, detached = false } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: detached ? 'ignore' : ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => { stdout += d; });
    child.stderr?.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${cmd} ${args.join(' ')}: timed out`)); }, timeoutMs);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on(detached ? 'exit' : 'close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

async function runToExitOk(cmd, args, opts) {
  const r = await runToExit(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

/**
 * A Wayland desktop of `width`x`height` running `porthole share --backend wayland
 * --listen 127.0.0.1:0 --no-approval --audio none --no-announce ...shareArgs`, registered
 * in scope `s`. `xwayland`: also a rootful Xwayland filling the output (an X display the
 * X11 painters can draw on, shown like any Wayland window). Returns {url (with the code),
 * work, stateDir, sway(...args), inSession(cmd, args, opts), pids: {share, sway, xwayland},
 * display (Xwayland's, or null), proc}.
 */
export async function startWaylandShare(s, { width = 640, height = 480, shareArgs = [], xwayland = false } = {}) {
  requirePorthole();
  const work = wlFs.mkdtempSync('/tmp/porthole-wl-e2e-');
  wlFs.chmodSync(work, 0o777);
  s.add({ label: `work dir ${work}`, stop: async () => wlFs.rmSync(work, { recursive: true, force: true }) });
  // The desktop's user cannot read root's build tree.
  wlFs.copyFileSync(PORTHOLE_BIN, path.join(work, 'porthole'));
  wlFs.chmodSync(path.join(work, 'porthole'), 0o755);
  let display = null;
  if (xwayland) {
    for (let n = 200; n < 300 && display === null; n++) if (!displayInUse(n)) display = `:${n}`;
    if (!display) throw new Error('no free X display number for Xwayland in :200..:299');
  }
  const inside = path.join(work, 'inside.sh');
  wlFs.writeFileSync(inside, `#!/bin/bash
set -euo pipefail
work=$1 xdisplay=$2; shift 2
sock=$(ls "$XDG_RUNTIME_DIR"/sway-ipc.*.sock | head -1)
xpid=
if [ -n "$xdisplay" ]; then
  Xwayland "$xdisplay" -noreset > "$work/xwayland.log" 2>&1 &
  xpid=$!
  for _ in $(seq 100); do
    swaymsg -s "$sock" -t get_tree | grep -q '"shell": "xdg_shell"' && break
    sleep 0.05
  done
  swaymsg -s "$sock" fullscreen enable > /dev/null
  # The painters run as root, outside the session.
  DISPLAY=$xdisplay xhost +si:localuser:root > /dev/null
fi
printf '%s\\n' "$XDG_RUNTIME_DIR" "$WAYLAND_DISPLAY" "$sock" "$$" "$xpid" > "$work/session.tmp"
mv "$work/session.tmp" "$work/session"
exec "$work/porthole" share "$@"
`);
  wlFs.chmodSync(inside, 0o755);
  const code = randomCode();
  const proc = s.add(startProcess('wayland desktop + porthole share', path.join(REPO, 'scripts', 'wayland-desktop.sh'), [
    '--size', `${width}x${height}`, '--user', WAYLAND_USER, '--', inside, work, display ?? '',
    '--backend', 'wayland', '--listen', '127.0.0.1:0', '--code', code, '--no-approval',
    '--audio', 'none', '--no-announce', ...shareArgs,
  ], { env: { PORTHOLE_LOG: process.env.PORTHOLE_LOG || 'info' } }));
  // The first run builds the patched portal backend (third_party/, into target/xdpw).
  const m = await proc.waitLine(/^viewer: (http:\/\/\S+)$/, 120000, '"viewer: http://..."');
  const [runtimeDir, waylandDisplay, swaySock, sharePid, xPid] =
    wlFs.readFileSync(path.join(work, 'session'), 'utf8').split('\n');
  const sway = (...args) => runToExitOk('swaymsg', ['-s', swaySock, ...args]);
  const inSession = (cmd, args, opts) => runToExit('runuser', ['-u', WAYLAND_USER, '--', 'env',
    `XDG_RUNTIME_DIR=${runtimeDir}`, `WAYLAND_DISPLAY=${waylandDisplay}`, cmd, ...args], opts);
  const url = m[1];
  return {
    url: withCode(url, code), origin: new URL(url).origin, code, work, proc, sway, inSession, display,
    stateDir: path.join(runtimeDir, '..', 'state'),
    pids: {
      share: Number(sharePid), xwayland: Number(xPid) || null,
      sway: Number(/sway-ipc\.\d+\.(\d+)\.sock$/.exec(swaySock)?.[1]) || null,
    },
    fetch: (p, init = {}) => fetch(new URL(p, url), { redirect: 'manual', signal: AbortSignal.timeout(10000), ...init }),
    exited: proc.exited,
    get exitInfo() { return proc.exitInfo; },
  };
}
