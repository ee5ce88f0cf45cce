// The browser's protocol module (assets/protocol.js) against the shared vectors
// (tests/protocol-vectors.json), like net/src/protocol.rs. Run: node --test tests/js/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  encode, decode, clipboardChunks, ClipboardAssembler, channelFor, allowedOn, splitText,
  CLIPBOARD_CHUNK, TYPES,
} from '../../assets/protocol.js';

// {repeat: string or byte array, times: n} in a vector stands for it repeated n times.
const expand = (v) => {
  if (Array.isArray(v)) return v.map(expand);
  if (!v || typeof v !== 'object') return v;
  if (Object.keys(v).sort().join() === 'repeat,times') {
    return typeof v.repeat === 'string' ? v.repeat.repeat(v.times) : Array(v.times).fill(v.repeat).flat();
  }
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, expand(x)]));
};
const vectors = expand(JSON.parse(readFileSync(new URL('../protocol-vectors.json', import.meta.url), 'utf8')));
const unhex = (hex) => Uint8Array.from(hex.replace(/\s+/g, '').match(/../g) || [], (h) => parseInt(h, 16));
// Typed arrays become plain arrays (decode returns Uint8Array for data and rgba).
const plain = (msg) => Object.fromEntries(Object.entries(msg).map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v) : v]));

test('every valid vector decodes to its message and encodes back to its bytes', () => {
  assert.ok(vectors.valid.length >= 12);
  for (const v of vectors.valid) {
    const bytes = unhex(v.hex);
    assert.deepStrictEqual(plain(decode(bytes)), v.message, v.name);
    assert.deepStrictEqual(plain(decode(bytes.buffer)), v.message, `${v.name} (ArrayBuffer)`);
    assert.deepStrictEqual(Array.from(encode(v.message)), Array.from(bytes), v.name);
  }
  const types = new Set(vectors.valid.map((v) => v.message.type));
  assert.deepStrictEqual([...types].sort(), Object.keys(TYPES).sort(), 'every message type are covered');
});

test('every invalid vector is refused for the stated reason', () => {
  assert.ok(vectors.invalid.length >= 10);
  for (const v of vectors.invalid) {
    assert.throws(() => decode(unhex(v.hex)), (err) => err.reason === v.error, `${v.name}: want ${v.error}`);
  }
});

test('every encode_invalid vector is refused by encode for the stated reason', () => {
  assert.ok(vectors.encode_invalid.length >= 20);
  for (const v of vectors.encode_invalid) {
    assert.throws(() => encode(v.message), (err) => err.reason === v.error, `${v.name}: want ${v.error}`);
  }
});

test('every encode_limits vector encodes and decodes back to itself', () => {
  assert.ok(vectors.encode_limits.length >= 7);
  for (const v of vectors.encode_limits) {
    assert.deepStrictEqual(plain(decode(encode(v.message))), v.message, v.name);
  }
});

test('every reassembly vector: each chunk has the stated outcome', () => {
  assert.ok(vectors.reassembly.length >= 25);
  for (const v of vectors.reassembly) {
    const asm = new ClipboardAssembler({ maxBytes: v.max });
    v.steps.forEach(({ chunk, expect }, i) => {
      const what = `${v.name}, chunk ${i}`;
      if (expect && expect.error) {
        assert.throws(() => asm.push(chunk), (err) => err.reason === expect.error && err.transfer === chunk.transfer,
          `${what}: want ${expect.error}`);
        return;
      }
      const got = asm.push(chunk);
      if (expect === null) assert.equal(got, null, what);
      else assert.deepStrictEqual({ transfer: got.transfer, mime: got.mime, data: Array.from(got.bytes) }, expect.done, what);
    });
  }
});

test('encode refuses what would not decode (values JSON can hold but Rust cannot)', () => {
  const bad = [
    [{ type: 'PointerMove', x: 65536, y: 0 }, 'OutOfRange'],
    [{ type: 'PointerMove', x: 1.5, y: 0 }, 'OutOfRange'],
    [{ type: 'Wheel', dx: 0, dy: 40000 }, 'OutOfRange'],
    [{ type: 'CursorPosition', x: 0, y: 0, visible: 1 }, 'OutOfRange'],
    [{ type: 'Text', text: 42 }, 'BadText'],
    [{ type: 'Nope' }, 'UnknownType'],
    [{ type: 'ClipboardData', transfer: 1, mime: 'gif', total: 0, offset: 0, data: [] }, 'OutOfRange'],
    [{ type: 'ClipboardData', transfer: -1, mime: 'text', total: 0, offset: 0, data: [] }, 'OutOfRange'],
  ];
  for (const [msg, reason] of bad) assert.throws(() => encode(msg), (e) => e.reason === reason, JSON.stringify(msg));
});

test('clipboard chunks round-trip and reassemble', () => {
  const content = Uint8Array.from({ length: 40000 }, (_, i) => i & 0xff);
  const chunks = clipboardChunks(7, 'png', content);
  assert.equal(chunks.length, 3);
  const asm = new ClipboardAssembler({ maxBytes: 65536 });
  let done = null;
  chunks.forEach((c, i) => {
    assert.ok(c.data.length <= CLIPBOARD_CHUNK);
    const r = asm.push(decode(encode(c)));
    if (i < 2) assert.equal(r, null); else done = r;
  });
  assert.equal(done.transfer, 7);
  assert.equal(done.mime, 'png');
  assert.deepStrictEqual(Array.from(done.bytes), Array.from(content));

  const empty = clipboardChunks(1, 'text', new Uint8Array(0));
  assert.deepStrictEqual(empty.map(plain), [{ type: 'ClipboardData', transfer: 1, mime: 'text', total: 0, offset: 0, data: [] }]);
  assert.deepStrictEqual(plain(asm.push(decode(encode(empty[0])))), { transfer: 1, mime: 'text', bytes: [] });

  // Over the cap: refused at the first chunk, later chunks dropped silently.
  const big = clipboardChunks(9, 'text', new Uint8Array(70000));
  assert.throws(() => asm.push(big[0]), (e) => e.reason === 'TooLarge' && e.transfer === 9);
  for (const c of big.slice(1)) assert.equal(asm.push(c), null);
  // A chunk that does not continue its transfer.
  assert.throws(() => asm.push(chunks[1]), (e) => e.reason === 'BadSequence');
});

test('channels, text splitting', () => {
  assert.equal(channelFor('PointerMove'), 'pointer');
  assert.equal(channelFor({ type: 'CursorPosition' }), 'pointer');
  assert.equal(channelFor('Key'), 'input');
  assert.equal(channelFor('ReleaseAll'), 'input');
  assert.equal(channelFor('ClipboardData'), 'clipboard');
  assert.equal(channelFor('Other'), null);
  assert.ok(allowedOn('Notice', 'clipboard') && allowedOn('Notice', 'input') && !allowedOn('Key', 'pointer'));
  const pieces = splitText('a€'.repeat(600));
  assert.ok(pieces.every((p) => new TextEncoder().encode(p).length <= 1024));
  assert.equal(pieces.join(''), 'a€'.repeat(600));
  assert.deepStrictEqual(splitText('\0'), []);
});

test('every message type may arrive only on the channels the vectors name', () => {
  const labels = ['pointer', 'input', 'clipboard'];
  const kinds = new Set();
  for (const c of vectors.channels) {
    const msg = decode(unhex(c.hex));
    assert.equal(msg.type, c.type);
    kinds.add(msg.type);
    for (const label of labels) {
      assert.equal(allowedOn(msg, label), c.on.includes(label), `${c.type} on ${label}`);
    }
  }
  assert.deepStrictEqual([...kinds].sort(), Object.keys(TYPES).sort());
});

