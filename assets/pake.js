// Pairing with a share: SPAKE2 keyed by the access code (the Rust crate `pake/`, compiled
// to WebAssembly and served as /pake.wasm, so the page runs the same code as the share and
// the native client). The code never leaves this page: the share gets a SPAKE2 message,
// and every later request carries an HMAC made with the keys the pairing gave. The share's
// SDP answer carries its own HMAC, so a relay that puts its own DTLS certificate in either
// description is found out before any media flows.
//
// Works in browsers and in Node (the tests pair with it too): needs only WebAssembly,
// fetch, crypto.getRandomValues, TextEncoder and btoa/atob.

export const MESSAGE_LEN = 33;
export const MAC_LEN = 32;
/** What a viewer says when a MAC does not verify: somebody is between it and the share. */
export const NOT_THE_SHARE = 'This connection is not the share you were given the code for: ' +
  'somebody between you and the host changed it. Nothing was shown or sent.';

export class PairingError extends Error {
  /**
   * kind: 'wrong-code' (the share does not hold this code, or it is not the share),
   * 'refused' (an HTTP refusal; `status` and the host's text), 'unreachable', 'protocol'.
   */
  constructor(kind, message, status = null) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

let compiled = null;

/** The compiled module: from `bytes`, or fetched once from /pake.wasm. */
export function loadModule(bytes) {
  if (bytes) return WebAssembly.compile(bytes);
  compiled ??= fetch('/pake.wasm', { cache: 'no-store' })
    .then((r) => {
      if (!r.ok) throw new PairingError('protocol', `cannot load /pake.wasm (HTTP ${r.status})`);
      return r.arrayBuffer();
    })
    .then((b) => WebAssembly.compile(b))
    .catch((err) => {
      compiled = null;
      throw err;
    });
  return compiled;
}

export function b64(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export function unb64(text) {
  if (typeof text !== 'string') throw new PairingError('protocol', 'the share\'s pairing reply is malformed');
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    throw new PairingError('protocol', 'the share\'s pairing reply is malformed');
  }
}

const utf8 = (text) => (typeof text === 'string' ? new TextEncoder().encode(text) : new Uint8Array(text));

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** One WebAssembly instance: one pairing and its keys. */
class Instance {
  constructor(module) {
    this.x = new WebAssembly.Instance(module, {}).exports;
  }

  /** Writes `input` to the shared buffer, calls `fn(...args)`; returns {n, out}. */
  call(fn, input, ...args) {
    const ptr = this.x.buffer(input.length);
    new Uint8Array(this.x.memory.buffer, ptr, input.length).set(input);
    const n = this.x[fn](...args);
    const out = n > 0 ? new Uint8Array(this.x.memory.buffer, this.x.buffer_ptr(), n).slice() : null;
    return { n, out };
  }
}

/** A finished pairing: signs this viewer's requests and checks the share's answer. */
export class Paired {
  constructor(instance, id) {
    this.instance = instance;
    this.id = id;
  }

  /** The Authorization header value for `method path` with `body` (string or bytes). */
  authorization(method, path, body = '') {
    const m = utf8(method);
    const p = utf8(path);
    const { n, out } = this.instance.call('request_mac', concat(m, p, utf8(body)), m.length, p.length);
    if (n !== MAC_LEN) throw new PairingError('protocol', 'pairing keys missing');
    return `Porthole-PAKE id=${this.id}, mac=${b64(out)}`;
  }

  /** Whether the share's answer `sdp` carries its MAC (header value `mac`, base64). */
  verifyAnswer(sdp, mac) {
    if (!mac) return false;
    let bytes;
    try {
      bytes = unb64(mac.trim());
    } catch {
      return false;
    }
    if (bytes.length !== MAC_LEN) return false;
    return this.instance.call('verify_answer', concat(bytes, utf8(sdp))).n === 1;
  }
}

/**
 * Round one: pairs with the share at `origin` using `code`. Resolves to a `Paired`, or
 * throws a PairingError (a wrong code is found here, before any offer is made).
 * options: module (a compiled module; default /pake.wasm), fetchImpl, signal.
 */
export async function pair(origin, code, { module, fetchImpl = fetch, signal } = {}) {
  const instance = new Instance(module ?? (await loadModule()));
  const seed = crypto.getRandomValues(new Uint8Array(32));
  const { n, out: message } = instance.call('start', concat(seed, utf8(code)));
  if (n !== MESSAGE_LEN) throw new PairingError('protocol', 'the pairing could not start');
  let res;
  try {
    res = await fetchImpl(new URL('/pake', origin), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ message: b64(message) }),
      cache: 'no-store',
      signal,
    });
  } catch (err) {
    throw new PairingError('unreachable', `cannot reach the share: ${err?.cause?.code || err?.message || err}`);
  }
  const text = await res.text().catch(() => '');
  if (res.status !== 200) throw new PairingError('refused', text.trim() || `HTTP ${res.status}`, res.status);
  let reply;
  try {
    reply = JSON.parse(text);
  } catch {
    throw new PairingError('protocol', 'the share\'s pairing reply is not JSON');
  }
  if (typeof reply?.id !== 'string' || !/^[0-9a-f]{1,64}$/.test(reply.id)) {
    throw new PairingError('protocol', 'the share\'s pairing reply has no usable id');
  }
  const r = instance.call('finish', concat(unb64(reply.message), unb64(reply.confirm))).n;
  if (r === -1) {
    throw new PairingError('wrong-code', 'Wrong access code (or this is not the share the code belongs to).');
  }
  if (r !== 0) throw new PairingError('protocol', 'the share\'s pairing reply is malformed');
  return new Paired(instance, reply.id);
}
