// Porthole data-channel protocol, version 1: the browser's implementation.
//
// The specification is docs/protocol.md; the Rust implementation (which this file
// mirrors, check for check and in the same order) is net/src/protocol.rs. Both are tested
// against tests/protocol-vectors.json.
//
// Messages are plain objects in the JSON form of the vectors, e.g.
//   {type: 'PointerMove', x: 0, y: 65535}
//   {type: 'Key', pressed: true, code: 'KeyA'}
//   {type: 'ClipboardData', transfer: 1, mime: 'text', total: 2, offset: 0, data: [104, 105]}
// `decode` returns `data` / `rgba` as Uint8Array; `encode` takes arrays or typed arrays.
// Errors carry `.reason`, the name of the Rust DecodeError variant.
//
// An ES module with no dependencies; loaded by viewer.js and usable from node.

export const VERSION = 1;
export const MAX_KEY_CODE_LEN = 32;
export const MAX_TEXT_LEN = 1024;
export const MAX_CURSOR_SIDE = 256;
/** Clipboard bytes carried by one ClipboardData chunk at most. */
export const CLIPBOARD_CHUNK = 16 * 1024;
/** Monitors a Monitors message lists at most (and SelectMonitor indexes below). */
export const MAX_MONITORS = 16;
/** Bytes of a monitor's name at most. */
export const MAX_MONITOR_NAME = 64;
/** MaxBitrate limits (kbit/s) other than 0 (no limit) lie in this range. */
export const MAX_BITRATE_MIN = 100;
export const MAX_BITRATE_MAX = 1_000_000;

/** Bits of the Rights message. */
export const RIGHTS = Object.freeze({ VIEW: 1, CONTROL: 2, CLIPBOARD: 4 });

/** Notice codes (host → viewer). */
export const NOTICE = Object.freeze({
  CLIPBOARD_TOO_LARGE: 1,
  NOT_ALLOWED: 2,
  RATE_LIMITED: 3,
  MALFORMED: 4,
  REMOVED: 5,      // the host ended this viewer's session (its last message)
  HOST_STOPPED: 6, // the host stopped sharing (its last message)
});

/** Data-channel labels. */
export const CHANNELS = Object.freeze({ POINTER: 'pointer', INPUT: 'input', CLIPBOARD: 'clipboard' });

/** The RTCDataChannelInit of each channel (the viewer creates them before its offer). */
export const CHANNEL_OPTIONS = Object.freeze({
  pointer: Object.freeze({ ordered: false, maxRetransmits: 0 }),
  input: Object.freeze({ ordered: true }),
  clipboard: Object.freeze({ ordered: true }),
});

/** Clipboard content types: wire name → MIME type. */
export const MIME = Object.freeze({ text: 'text/plain;charset=utf-8', png: 'image/png' });

/** The type byte of each message. */
export const TYPES = Object.freeze({
  PointerMove: 0x01,
  PointerButton: 0x02,
  Wheel: 0x03,
  Key: 0x04,
  Text: 0x05,
  ReleaseAll: 0x06,
  RequestControl: 0x07,
  SelectMonitor: 0x08,
  MaxBitrate: 0x09,
  CursorPosition: 0x10,
  CursorShape: 0x11,
  Rights: 0x12,
  Notice: 0x13,
  Monitors: 0x14,
  ClipboardData: 0x20,
});

const MIME_BYTE = Object.freeze({ text: 1, png: 2 });
const MIME_NAME = Object.freeze({ 1: 'text', 2: 'png' });

/** A refused message (decode) or an unencodable one (encode). */
export class ProtocolError extends Error {
  constructor(reason, detail) {
    super(detail ? `${reason}: ${detail}` : reason);
    this.name = 'ProtocolError';
    this.reason = reason;
    this.detail = detail || null;
  }
}

const fail = (reason, detail) => { throw new ProtocolError(reason, detail); };

const utf8Encoder = new TextEncoder();
// fatal: invalid UTF-8 is refused like Rust's String::from_utf8; ignoreBOM: keep a
// leading U+FEFF as a character so that decode/encode round-trips.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// ---- channels ---------------------------------------------------------------

/** The label of the channel a message (or message type name) must travel on, or null. */
export function channelFor(type) {
  const name = type && typeof type === 'object' ? type.type : type;
  if (!Object.prototype.hasOwnProperty.call(TYPES, name)) return null;
  if (name === 'PointerMove' || name === 'CursorPosition') return CHANNELS.POINTER;
  if (name === 'ClipboardData') return CHANNELS.CLIPBOARD;
  return CHANNELS.INPUT;
}

/**
 * Whether a message (or type name) may arrive on channel `label`: its own channel, and
 * also `clipboard` for a Notice (the host reports clipboard refusals there).
 */
export function allowedOn(type, label) {
  const name = type && typeof type === 'object' ? type.type : type;
  return channelFor(name) === label || (name === 'Notice' && label === CHANNELS.CLIPBOARD);
}

// ---- decode -----------------------------------------------------------------

function toBytes(input) {
  if (input instanceof Uint8Array) return input;
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  const tag = Object.prototype.toString.call(input);
  if (tag === '[object ArrayBuffer]' || tag === '[object SharedArrayBuffer]') return new Uint8Array(input);
  if (Array.isArray(input)) return Uint8Array.from(input);
  throw new TypeError('expected a Uint8Array, ArrayBuffer or array of bytes');
}

class Reader {
  constructor(bytes) { this.b = bytes; this.pos = 0; }
  get remaining() { return this.b.length - this.pos; }
  take(n) {
    if (this.remaining < n) fail('Truncated');
    const out = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  rest() { return this.take(this.remaining); }
  u8() { return this.take(1)[0]; }
  bool(field) {
    const v = this.u8();
    if (v > 1) fail('OutOfRange', field);
    return v === 1;
  }
  u16() { const b = this.take(2); return b[0] | (b[1] << 8); }
  i16() { const v = this.u16(); return v >= 0x8000 ? v - 0x10000 : v; }
  u32() { const b = this.take(4); return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0; }
  i32() { return this.u32() | 0; }
}

function checkedText(bytes, min) {
  if (bytes.length < min || bytes.length > MAX_TEXT_LEN || bytes.includes(0)) fail('BadText');
  try {
    return utf8Decoder.decode(bytes);
  } catch {
    return fail('BadText');
  }
}

// A monitor name: 0 to 64 bytes of UTF-8 without NUL (null when it is not one).
function monitorName(bytes) {
  if (bytes.length > MAX_MONITOR_NAME || bytes.includes(0)) return null;
  try {
    return utf8Decoder.decode(bytes);
  } catch {
    return null;
  }
}

function isAsciiAlnum(c) {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/**
 * Decodes one data-channel message (Uint8Array, ArrayBuffer, typed array or byte array).
 * Throws a ProtocolError whose `.reason` says why the message is refused.
 */
export function decode(input) {
  const bytes = toBytes(input);
  if (bytes.length === 0) fail('Empty');
  const r = new Reader(bytes);
  const version = r.u8();
  if (version !== VERSION) fail('UnsupportedVersion', String(version));
  const kind = r.u8();
  let msg;
  switch (kind) {
    case 0x01:
      msg = { type: 'PointerMove', x: r.u16(), y: r.u16() };
      break;
    case 0x02: {
      const button = r.u8();
      const pressed = r.bool('pressed');
      const x = r.u16();
      const y = r.u16();
      if (button > 4) fail('OutOfRange', 'button');
      msg = { type: 'PointerButton', button, pressed, x, y };
      break;
    }
    case 0x03:
      msg = { type: 'Wheel', dx: r.i16(), dy: r.i16() };
      break;
    case 0x04: {
      const pressed = r.bool('pressed');
      const len = r.u8();
      const code = r.take(len);
      if (len < 1 || len > MAX_KEY_CODE_LEN || !code.every(isAsciiAlnum)) fail('BadKeyCode');
      msg = { type: 'Key', pressed, code: String.fromCharCode(...code) };
      break;
    }
    case 0x05: {
      const len = r.u16();
      msg = { type: 'Text', text: checkedText(r.take(len), 1) };
      break;
    }
    case 0x06:
      msg = { type: 'ReleaseAll' };
      break;
    case 0x07:
      msg = { type: 'RequestControl' };
      break;
    case 0x08: {
      const index = r.u8();
      if (index >= MAX_MONITORS) fail('OutOfRange', 'index');
      msg = { type: 'SelectMonitor', index };
      break;
    }
    case 0x09: {
      const kbps = r.u32();
      if (kbps !== 0 && (kbps < MAX_BITRATE_MIN || kbps > MAX_BITRATE_MAX)) fail('OutOfRange', 'kbps');
      msg = { type: 'MaxBitrate', kbps };
      break;
    }
    case 0x14: {
      const current = r.u8();
      const count = r.u8();
      if (count < 1 || count > MAX_MONITORS) fail('BadMonitors');
      const monitors = [];
      for (let i = 0; i < count; i++) {
        const x = r.i32();
        const y = r.i32();
        const width = r.u16();
        const height = r.u16();
        const primary = r.bool('primary');
        const name = monitorName(r.take(r.u8()));
        if (name === null) fail('BadMonitors');
        monitors.push({ name, x, y, width, height, primary });
      }
      if (current >= count) fail('OutOfRange', 'current');
      if (monitors.some((m) => m.width === 0 || m.height === 0)) fail('OutOfRange', 'size');
      msg = { type: 'Monitors', current, monitors };
      break;
    }
    case 0x10:
      msg = { type: 'CursorPosition', x: r.u16(), y: r.u16(), visible: r.bool('visible') };
      break;
    case 0x11: {
      const hotX = r.u16();
      const hotY = r.u16();
      const width = r.u16();
      const height = r.u16();
      if (width < 1 || width > MAX_CURSOR_SIDE || height < 1 || height > MAX_CURSOR_SIDE
        || hotX >= width || hotY >= height) fail('BadCursor');
      const rgba = r.rest();
      if (rgba.length !== width * height * 4) fail('BadCursor');
      msg = { type: 'CursorShape', hot_x: hotX, hot_y: hotY, width, height, rgba: rgba.slice() };
      break;
    }
    case 0x12: {
      const rights = r.u8();
      if (rights & ~(RIGHTS.VIEW | RIGHTS.CONTROL | RIGHTS.CLIPBOARD)) fail('OutOfRange', 'rights');
      msg = { type: 'Rights', rights, clipboard_max: r.u32() };
      break;
    }
    case 0x13: {
      const code = r.u8();
      const transfer = r.u32();
      const len = r.u16();
      msg = { type: 'Notice', code, transfer, text: checkedText(r.take(len), 0) };
      break;
    }
    case 0x20: {
      const transfer = r.u32();
      const mime = MIME_NAME[r.u8()];
      if (!mime) fail('OutOfRange', 'mime');
      const total = r.u32();
      const offset = r.u32();
      const data = r.rest();
      if (data.length > CLIPBOARD_CHUNK || offset + data.length > total) fail('BadChunk');
      msg = { type: 'ClipboardData', transfer, mime, total, offset, data: data.slice() };
      break;
    }
    default:
      fail('UnknownType', `0x${kind.toString(16).padStart(2, '0')}`);
  }
  if (r.remaining !== 0) fail('TrailingBytes');
  return msg;
}

// ---- encode -----------------------------------------------------------------

class Writer {
  constructor() { this.parts = []; this.length = 0; }
  bytes(b) { this.parts.push(b); this.length += b.length; }
  u8(v) { this.bytes(Uint8Array.of(v)); }
  u16(v) { this.bytes(Uint8Array.of(v & 0xff, (v >>> 8) & 0xff)); }
  u32(v) { this.bytes(Uint8Array.of(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff)); }
  finish() {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) { out.set(p, at); at += p.length; }
    return out;
  }
}

function int(msg, field, min, max) {
  const v = msg[field];
  if (!Number.isInteger(v) || v < min || v > max) fail('OutOfRange', `${msg.type}.${field} = ${v}`);
  return v;
}
const u8 = (m, f) => int(m, f, 0, 0xff);
const u16 = (m, f) => int(m, f, 0, 0xffff);
const i16 = (m, f) => int(m, f, -0x8000, 0x7fff);
const u32 = (m, f) => int(m, f, 0, 0xffffffff);

function bool(msg, field) {
  const v = msg[field];
  if (typeof v !== 'boolean') fail('OutOfRange', `${msg.type}.${field} must be a boolean`);
  return v ? 1 : 0;
}

function textBytes(msg, min) {
  if (typeof msg.text !== 'string') fail('BadText', `${msg.type}.text must be a string`);
  const b = utf8Encoder.encode(msg.text);
  if (b.length < min || b.length > MAX_TEXT_LEN || b.includes(0)) fail('BadText', `${msg.type}.text`);
  return b;
}

/**
 * Encodes a message to its bytes. Throws a ProtocolError (same reasons as decode) for a
 * message that would not decode, so whatever encodes is valid on the wire.
 */
export function encode(msg) {
  if (!msg || typeof msg !== 'object') throw new TypeError('encode: expected a message object');
  const kind = TYPES[msg.type];
  if (kind === undefined || !Object.prototype.hasOwnProperty.call(TYPES, msg.type)) {
    fail('UnknownType', String(msg.type));
  }
  const w = new Writer();
  w.u8(VERSION);
  w.u8(kind);
  switch (msg.type) {
    case 'PointerMove':
      w.u16(u16(msg, 'x')); w.u16(u16(msg, 'y'));
      break;
    case 'PointerButton':
      w.u8(int(msg, 'button', 0, 4)); w.u8(bool(msg, 'pressed'));
      w.u16(u16(msg, 'x')); w.u16(u16(msg, 'y'));
      break;
    case 'Wheel':
      w.u16(i16(msg, 'dx') & 0xffff); w.u16(i16(msg, 'dy') & 0xffff);
      break;
    case 'Key': {
      const code = msg.code;
      if (typeof code !== 'string' || !/^[A-Za-z0-9]{1,32}$/.test(code)) fail('BadKeyCode', String(code));
      w.u8(bool(msg, 'pressed')); w.u8(code.length);
      w.bytes(Uint8Array.from(code, (c) => c.charCodeAt(0)));
      break;
    }
    case 'Text': {
      const b = textBytes(msg, 1);
      w.u16(b.length); w.bytes(b);
      break;
    }
    case 'ReleaseAll':
    case 'RequestControl':
      break;
    case 'SelectMonitor':
      w.u8(int(msg, 'index', 0, MAX_MONITORS - 1));
      break;
    case 'MaxBitrate': {
      const kbps = u32(msg, 'kbps');
      if (kbps !== 0 && (kbps < MAX_BITRATE_MIN || kbps > MAX_BITRATE_MAX)) fail('OutOfRange', `MaxBitrate.kbps = ${kbps}`);
      w.u32(kbps);
      break;
    }
    case 'Monitors': {
      // decode's checks, in its order: the list and its names, then current, then sizes.
      const list = msg.monitors;
      if (!Array.isArray(list) || list.length < 1 || list.length > MAX_MONITORS) fail('BadMonitors', 'list');
      const names = list.map((m) => {
        if (typeof m.name !== 'string') fail('BadMonitors', 'name must be a string');
        const b = utf8Encoder.encode(m.name);
        if (b.length > MAX_MONITOR_NAME || b.includes(0)) fail('BadMonitors', `name ${m.name}`);
        return b;
      });
      const current = u8(msg, 'current');
      if (current >= list.length) fail('OutOfRange', 'current');
      w.u8(current); w.u8(list.length);
      list.forEach((m, i) => {
        const x = int(m, 'x', -0x80000000, 0x7fffffff);
        const y = int(m, 'y', -0x80000000, 0x7fffffff);
        const width = u16(m, 'width');
        const height = u16(m, 'height');
        if (width === 0 || height === 0) fail('OutOfRange', 'size');
        w.u32(x >>> 0); w.u32(y >>> 0); w.u16(width); w.u16(height);
        w.u8(bool(m, 'primary')); w.u8(names[i].length); w.bytes(names[i]);
      });
      break;
    }
    case 'CursorPosition':
      w.u16(u16(msg, 'x')); w.u16(u16(msg, 'y')); w.u8(bool(msg, 'visible'));
      break;
    case 'CursorShape': {
      const hotX = u16(msg, 'hot_x');
      const hotY = u16(msg, 'hot_y');
      const width = u16(msg, 'width');
      const height = u16(msg, 'height');
      // The reason decode gives (a size out of 1-256 or a hotspot outside is BadCursor).
      if (width < 1 || width > MAX_CURSOR_SIDE || height < 1 || height > MAX_CURSOR_SIDE
        || hotX >= width || hotY >= height) fail('BadCursor', `${width}x${height} with hotspot ${hotX},${hotY}`);
      const rgba = toBytes(msg.rgba || []);
      if (rgba.length !== width * height * 4) fail('BadCursor', 'rgba is not width*height*4 bytes');
      w.u16(hotX); w.u16(hotY); w.u16(width); w.u16(height); w.bytes(rgba);
      break;
    }
    case 'Rights': {
      const rights = u8(msg, 'rights');
      if (rights & ~(RIGHTS.VIEW | RIGHTS.CONTROL | RIGHTS.CLIPBOARD)) fail('OutOfRange', 'rights');
      w.u8(rights); w.u32(u32(msg, 'clipboard_max'));
      break;
    }
    case 'Notice': {
      const b = textBytes(msg, 0);
      w.u8(u8(msg, 'code')); w.u32(u32(msg, 'transfer')); w.u16(b.length); w.bytes(b);
      break;
    }
    case 'ClipboardData': {
      const mime = MIME_BYTE[msg.mime];
      if (!mime || !Object.prototype.hasOwnProperty.call(MIME_BYTE, msg.mime)) fail('OutOfRange', `mime ${msg.mime}`);
      const data = toBytes(msg.data || []);
      const total = u32(msg, 'total');
      const offset = u32(msg, 'offset');
      if (data.length > CLIPBOARD_CHUNK || offset + data.length > total) fail('BadChunk');
      w.u32(u32(msg, 'transfer')); w.u8(mime); w.u32(total); w.u32(offset); w.bytes(data);
      break;
    }
    default:
      fail('UnknownType', String(msg.type));
  }
  return w.finish();
}

// ---- text and clipboard helpers ----------------------------------------------

/**
 * Splits text into pieces of at most `maxBytes` UTF-8 bytes each (never inside a
 * character), dropping NULs, for Text messages. Returns [] for text with nothing to send.
 */
export function splitText(text, maxBytes = MAX_TEXT_LEN) {
  const pieces = [];
  let piece = '';
  let size = 0;
  for (const ch of String(text)) {
    if (ch === '\0') continue;
    const cp = ch.codePointAt(0);
    const n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (size + n > maxBytes && piece) { pieces.push(piece); piece = ''; size = 0; }
    piece += ch;
    size += n;
  }
  if (piece) pieces.push(piece);
  return pieces;
}

/**
 * Splits clipboard content into ClipboardData messages of at most CLIPBOARD_CHUNK bytes
 * (empty content: one chunk with total 0). `mime` is 'text' or 'png'.
 */
export function clipboardChunks(transfer, mime, bytes) {
  const content = toBytes(bytes);
  const total = content.length;
  if (!Object.prototype.hasOwnProperty.call(MIME_BYTE, mime)) fail('OutOfRange', `mime ${mime}`);
  if (total > 0xffffffff) fail('OutOfRange', 'clipboard content larger than 4 GiB');
  const chunks = [];
  let offset = 0;
  do {
    const data = content.subarray(offset, offset + CLIPBOARD_CHUNK);
    chunks.push({ type: 'ClipboardData', transfer, mime, total, offset, data });
    offset += data.length;
  } while (offset < total);
  return chunks;
}

/**
 * Reassembles incoming clipboard transfers, as net/src/protocol.rs's ClipboardAssembler
 * (the rules are docs/protocol.md's "Clipboard reassembly"): one transfer at a time, its
 * chunks in order. `push(msg)` takes a ClipboardData message and returns
 * {transfer, mime, bytes} when that transfer is complete, otherwise null (not complete
 * yet, or a chunk of a refused transfer, dropped quietly). It throws a ProtocolError with
 * `.transfer` when it refuses a chunk, and with it its transfer:
 * - 'TooLarge' (also `.total`, `.max`): the transfer's total is over `maxBytes`;
 * - 'BadSequence': neither the next chunk of the open transfer nor the first chunk
 *   (offset 0) of a new one (a gap, a repeat, an overlap, another transfer's chunk, a
 *   changed mime or total, a first chunk repeated); the open transfer is abandoned;
 * - 'BadChunk': over CLIPBOARD_CHUNK bytes, past its total, or empty in a non-empty transfer;
 * - 'BadText': a complete 'text' transfer that is not UTF-8.
 * A first chunk of another transfer abandons the open one quietly.
 */
export class ClipboardAssembler {
  constructor({ maxBytes = 16 * 1024 * 1024 } = {}) {
    this.maxBytes = maxBytes;
    this.open = null;      // {transfer, mime, total, received, parts}
    this.dropping = null;  // the last refused or abandoned transfer: its later chunks are dropped
  }

  push(msg) {
    if (!msg || msg.type !== 'ClipboardData') throw new TypeError('ClipboardAssembler.push: not a ClipboardData');
    const { transfer, mime, total, offset } = msg;
    const data = toBytes(msg.data || []);
    let open = this.open;
    this.open = null;
    if (offset === 0 && open && open.transfer === transfer) {
      this.refuse('BadSequence', transfer, `clipboard transfer ${transfer} started twice`);
    } else if (offset === 0) {
      this.dropping = null;
      if (total > this.maxBytes) {
        this.refuse('TooLarge', transfer, `clipboard transfer ${transfer} of ${total} bytes is over the cap of ${this.maxBytes}`,
          { total, max: this.maxBytes });
      }
      open = { transfer, mime, total, received: 0, parts: [] };
    } else if (!open) {
      if (this.dropping === transfer) return null;
      throw Object.assign(new ProtocolError('BadSequence', `clipboard chunk at ${offset} of transfer ${transfer}, which is not open`), { transfer });
    } else if (open.transfer !== transfer || open.mime !== mime || open.total !== total || open.received !== offset) {
      this.dropping = open.transfer;
      throw Object.assign(new ProtocolError('BadSequence', `clipboard chunk at ${offset} of transfer ${transfer} does not continue transfer ${open.transfer}`), { transfer });
    }
    if (data.length > CLIPBOARD_CHUNK || offset + data.length > total || (data.length === 0 && total > 0)) {
      this.refuse('BadChunk', transfer, `clipboard chunk of ${data.length} bytes at ${offset} of ${total}`);
    }
    open.parts.push(data.slice());
    open.received += data.length;
    if (open.received < total) {
      this.open = open;
      return null;
    }
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const p of open.parts) { bytes.set(p, at); at += p.length; }
    if (open.mime === 'text') {
      try {
        utf8Decoder.decode(bytes);
      } catch {
        this.refuse('BadText', transfer, `clipboard text of transfer ${transfer} is not UTF-8`);
      }
    }
    return { transfer, mime: open.mime, bytes };
  }

  // Refuses the chunk's transfer: nothing is open, its later chunks are dropped quietly.
  refuse(reason, transfer, detail, extra = {}) {
    this.open = null;
    this.dropping = transfer;
    throw Object.assign(new ProtocolError(reason, detail), { transfer, ...extra });
  }

  /** Forgets the open transfer. */
  reset() {
    this.open = null;
    this.dropping = null;
  }
}
