// Porthole viewer: receives a shared X11 screen over WebRTC (WHEP) and shows it,
// and (with the host's permission) sends pointer, keyboard and clipboard back over
// data channels (protocol: docs/protocol.md, implemented in protocol.js).
//
// Loaded as an ES module from index.html. No dependencies, no build step.
// One file of ~2,200 lines on purpose: the page has no build step and loads no framework,
// so its parts are numbered sections of one module sharing one state object and event bus
// (below), rather than modules that would need a bundler or a dozen requests to load.
//
// Layout of this file (add new features as their own section and hook into
// the small event bus with `on(...)` rather than editing the core flow):
//   1. constants        6. peer connection     11. toast
//   2. DOM              7. media               12. data channels
//   3. state & events   8. session lifecycle   13. host -> viewer (rights, cursor, notices, clipboard)
//   4. URL fragment     9. controls            14. viewer -> host input (mouse, touch, keys)
//   5. WHEP signalling 10. page lifecycle      15. clipboard to host
//                                              16. sound (mute button, autoplay refusal)
//                                              17. monitors and quality
//                                              18. public API and boot
//
// Events emitted on the bus:
//   'state'        {state, prev}          after every state change
//   'peer'         RTCPeerConnection      created, before the offer (data channels are added here)
//   'peer-closed'  RTCPeerConnection      torn down
//   'track'        RTCTrackEvent          remote track received
//   'sound'        {present, muted, blocked}  the audio track came or went, or (un)muting
//   'first-frame'  {video}                first decoded video frame of a session
//   'channel-open' label                  a data channel ('pointer', 'input', 'clipboard') opened
//   'rights'       {view, control, clipboard, clipboardMax}   the host sent this viewer's rights
//   'notice'       {code, transfer, text, local}              a notice (from the host, or local)
//   'clipboard'    {mime, text?, bytes, size}                 the host's clipboard arrived
//   'monitors'     {current, monitors: [{name, x, y, width, height, primary}]}   the host's monitors
//
// The access code is never logged and never put in the query string.

import * as protocol from '/protocol.js';
import { pair, loadModule, PairingError, NOT_THE_SHARE } from '/pake.js';

// ---- 1. constants ---------------------------------------------------------

const WHEP_ENDPOINT = '/whep';
const ICE_GATHER_TIMEOUT_MS = 2000;
const CONNECT_TIMEOUT_MS = 30000;
// A lost host is asked this often whether it answers again (bounded: no backoff beyond
// it); once it does, a new session at once. Each ask gives up after this long too: a
// request sent into a dead network waits out TCP's backoff (1 s, 2 s, 4 s…) otherwise.
const RETRY_MS = 1000;
// A lost session is resumed (same viewer, rights, no new approval, no code) this long after
// the loss; the share keeps it 60 s.
const RESUME_MS = 55000;
// While the connection is quiet, the share is asked this often whether our session lives.
const PROBE_MS = 1000;
// An answer this slow means the host is being asked whether to let the viewer in.
const WAITING_FOR_HOST_AFTER_MS = 1000;
const IDLE_HIDE_MS = 3000;
const MAX_ERROR_TEXT = 500;
const TOAST_MS = 6000;
const MAX_NOTICES = 100;
// The most host clipboard bytes this page accepts (the host's own cap is in Rights).
const VIEWER_CLIPBOARD_MAX = 64 * 1024 * 1024;
// Clipboard upload flow control on the data channel.
const CLIPBOARD_HIGH_WATER = 1024 * 1024;
const CLIPBOARD_LOW_WATER = 256 * 1024;
// How long a Ctrl+V press waits for the browser's paste event before going to the host.
const PASTE_KEY_HOLD_MS = 300;
// The host cursor image follows the video's scale within these bounds (never magnified:
// the stream may be sent at a lower resolution than the host's screen).
const CURSOR_MIN_SCALE = 0.5;
const CURSOR_MAX_SCALE = 1;

const STATES = Object.freeze([
  'idle', 'need-code', 'connecting', 'connected', 'reconnecting',
  'dropped', 'unauthorized', 'refused', 'unreachable', 'closed',
]);

const ACTIVE_STATES = new Set(['connecting', 'connected', 'reconnecting']);

const STATUS_TEXT = {
  'idle': 'Idle',
  'need-code': 'Waiting for the access code',
  'connecting': 'Connecting…',
  'connected': 'Connected',
  'reconnecting': 'Reconnecting…',
  'dropped': 'Disconnected: the host stopped sharing or the network dropped',
  'unauthorized': 'Wrong access code',
  'refused': 'The host refused the connection',
  'unreachable': 'Cannot reach the host',
  'closed': 'Disconnected',
};

const MSG = {
  enterCode: 'Enter the access code shown by the host.',
  connecting: 'Connecting…',
  waitingForHost: 'Waiting for the host to let you in…',
  firstFrame: 'Waiting for the first frame…',
  dropped: 'Disconnected: the host stopped sharing or the network dropped',
  timeout: 'Disconnected: the media connection could not be established in time.',
  closed: 'Disconnected.',
  unreachable: 'Cannot reach the host',
  wrongCode: 'Wrong access code',
  retrying: 'Trying again every second…',
  clickToPlay: 'Click anywhere to start the video.',
  soundBlocked: 'Sound is muted by the browser — click the speaker to unmute',
  noWebRTC: 'This browser does not support WebRTC, so it cannot show the shared screen.',
};

const NOTICE_TEXT = {
  [protocol.NOTICE.CLIPBOARD_TOO_LARGE]: 'The host refused the clipboard: it is too large.',
  [protocol.NOTICE.NOT_ALLOWED]: 'The host did not allow that: this viewer lacks the right.',
  [protocol.NOTICE.RATE_LIMITED]: 'The host is dropping input: too much at once.',
  [protocol.NOTICE.MALFORMED]: 'The host refused a malformed message.',
  [protocol.NOTICE.REMOVED]: 'The host ended your session.',
  [protocol.NOTICE.HOST_STOPPED]: 'The host stopped sharing.',
};

// ---- 2. DOM ---------------------------------------------------------------

const $ = (id) => document.getElementById(id);

const ui = {
  stage: $('stage'),
  video: $('video'),
  overlay: $('overlay'),
  message: $('message'),
  codeForm: $('code-form'),
  codeInput: $('code-input'),
  nameInput: $('name-input'),
  btnReconnect: $('btn-reconnect'),
  toolbar: $('toolbar'),
  status: $('status'),
  btnAudio: $('btn-audio'),
  btnFullscreen: $('btn-fullscreen'),
  btnDisconnect: $('btn-disconnect'),
  rights: $('rights'),
  btnAskControl: $('btn-ask-control'),
  keysMenu: $('keys-menu'),
  btnStats: $('btn-stats'),
  stats: $('stats'),
  btnKeys: $('btn-keys'),
  keysList: $('keys-list'),
  monitorMenu: $('monitor-menu'),
  btnMonitor: $('btn-monitor'),
  monitorList: $('monitor-list'),
  qualityMenu: $('quality-menu'),
  btnQuality: $('btn-quality'),
  qualityList: $('quality-list'),
  toast: $('toast'),
  cursor: $('cursor'),
};

// ---- 3. state & events ----------------------------------------------------

const session = {
  state: 'idle',
  pc: null,
  code: null,          // access code (secret: never log it, never sent: see pake.js)
  paired: null,        // the pairing that admitted this session (signs its DELETE)
  iceServers: [],
  resourceUrl: null,   // WHEP session URL from the Location header
  generation: 0,       // bumped on every teardown; stale async work checks it
  firstFrame: false,
  needsGesture: false, // autoplay was blocked; waiting for a click
  pendingAudio: [],    // audio tracks that arrived before the video track
  connectTimer: 0,
  lastError: null,     // {state, message, status} or null
  retrying: false,     // the host was lost: asking every RETRY_MS until it answers
  retryTimer: 0,
  probeTimer: 0,       // while 'reconnecting': is our session still on the share?
  resume: null,        // a lost session {url, paired, until}: the next offer resumes it
};

const listeners = new Map();

function on(event, fn) {
  if (!listeners.has(event)) listeners.set(event, new Set());
  listeners.get(event).add(fn);
  return () => listeners.get(event).delete(fn);
}

function emit(event, detail) {
  for (const fn of listeners.get(event) || []) {
    try { fn(detail); } catch (err) { console.error('[porthole] listener for', event, 'failed:', err); }
  }
}

function setState(state, statusText) {
  if (!STATES.includes(state)) throw new Error(`unknown state: ${state}`);
  const prev = session.state;
  session.state = state;
  document.body.dataset.state = state;
  const text = statusText || STATUS_TEXT[state];
  ui.status.textContent = text;
  ui.status.title = text;
  ui.btnDisconnect.disabled = !ACTIVE_STATES.has(state);
  if (prev !== state) {
    console.info(`[porthole] state: ${prev} -> ${state}`);
    emit('state', { state, prev });
  }
}

function recordError(state, message, status = null) {
  session.lastError = { state, message, status };
}

// ---- 4. URL fragment ------------------------------------------------------

function fragmentParams() {
  return new URLSearchParams(location.hash.replace(/^#/, ''));
}

function readFragment() {
  const params = fragmentParams();
  const code = (params.get('code') || '').trim() || null;
  return { code, iceServers: parseIceServers(params.get('ice')) };
}

function parseIceServers(raw) {
  if (!raw) return [];
  try {
    const value = JSON.parse(raw);
    if (Array.isArray(value)) return value;
    if (value && typeof value === 'object') return [value];
  } catch { /* fall through */ }
  console.warn('[porthole] ignoring malformed ice= fragment parameter');
  return [];
}

function writeFragmentCode(code) {
  const params = fragmentParams();
  if (code) params.set('code', code); else params.delete('code');
  const hash = params.toString();
  const url = location.pathname + location.search + (hash ? `#${hash}` : '');
  history.replaceState(history.state, '', url);
}

// ---- 5. WHEP signalling ---------------------------------------------------

class ConnectError extends Error {
  constructor(state, message, status = null) {
    super(message);
    this.state = state;
    this.status = status;
  }
}

// Round one: pair with the share (the code never leaves this page). Maps a pairing failure
// to what the page shows.
async function pairWithShare(code) {
  try {
    return await pair(location.origin, code);
  } catch (err) {
    if (!(err instanceof PairingError)) throw err;
    if (err.kind === 'wrong-code') throw new ConnectError('unauthorized', MSG.wrongCode, null);
    if (err.kind === 'unreachable') throw new ConnectError('unreachable', MSG.unreachable, null);
    if (err.kind === 'refused') {
      throw refusal({ status: err.status, statusText: '' }, err.message);
    }
    throw new ConnectError('refused', `Could not pair with the host: ${err.message}`, null);
  }
}

// `resumeUrl`: the lost session this offer resumes, signed by its pairing (`paired`).
async function whepOffer(paired, sdp, resumeUrl = null) {
  const headers = new Headers({
    'Content-Type': 'application/sdp',
    Authorization: paired.authorization('POST', WHEP_ENDPOINT, sdp),
  });
  if (resumeUrl) headers.set('Porthole-Resume', new URL(resumeUrl).pathname.split('/').pop());
  const name = viewerName();
  if (name) headers.set('Porthole-Viewer-Name', encodeURIComponent(name));
  let res;
  try {
    res = await fetch(WHEP_ENDPOINT, { method: 'POST', headers, body: sdp, cache: 'no-store' });
  } catch {
    throw new ConnectError('unreachable', MSG.unreachable, null);
  }
  const body = await res.text().catch(() => '');
  if (res.status === 201 || res.status === 200) {
    // Both DTLS fingerprints are in the offer we signed and this answer: a relay with its
    // own certificate cannot make this MAC.
    if (!paired.verifyAnswer(body, res.headers.get('Porthole-Answer-MAC'))) {
      throw new ConnectError('refused', NOT_THE_SHARE, res.status);
    }
    return { sdp: body, resourceUrl: resolveLocation(res.headers.get('Location')) };
  }
  throw refusal(res, body);
}

function refusal(res, body) {
  const { status } = res;
  if (status === 401) return new ConnectError('unauthorized', MSG.wrongCode, status);
  // The share found our offer changed on its way: somebody is in between.
  if (status === 403 && body.includes('not the share you were given')) {
    return new ConnectError('refused', NOT_THE_SHARE, status);
  }
  let detail = body.trim() || res.statusText || 'no reason given';
  if (detail.length > MAX_ERROR_TEXT) detail = `${detail.slice(0, MAX_ERROR_TEXT)}…`;
  const message = status === 400
    ? `The host refused the connection: ${detail}`
    : `The host refused the connection (HTTP ${status}): ${detail}`;
  return new ConnectError('refused', message, status);
}

function resolveLocation(value) {
  if (!value) return null;
  try {
    return new URL(value, new URL(WHEP_ENDPOINT, location.href)).href;
  } catch {
    return null;
  }
}

function whepDelete(url, paired, keepalive) {
  if (!url || !paired) return;
  let headers;
  try {
    headers = new Headers({ Authorization: paired.authorization('DELETE', new URL(url).pathname, '') });
  } catch {
    return;
  }
  fetch(url, { method: 'DELETE', headers, keepalive, cache: 'no-store' }).catch(() => {});
}

// ---- 6. peer connection ---------------------------------------------------

function isCurrent(gen, pc) {
  return gen === session.generation && (pc === undefined || pc === session.pc);
}

function createPeer(gen) {
  const pc = new RTCPeerConnection({ iceServers: session.iceServers });
  for (const kind of ['video', 'audio']) {
    negotiateCaptureTime(pc.addTransceiver(kind, { direction: 'recvonly' }));
  }
  pc.addEventListener('track', (ev) => { if (isCurrent(gen, pc)) onTrack(ev); });
  if ('connectionState' in pc) {
    pc.addEventListener('connectionstatechange', () => {
      if (isCurrent(gen, pc)) onPeerState(pc.connectionState);
    });
  } else {
    // Older browsers: derive the same states from the ICE connection state.
    pc.addEventListener('iceconnectionstatechange', () => {
      const s = pc.iceConnectionState === 'completed' ? 'connected' : pc.iceConnectionState;
      if (isCurrent(gen, pc)) onPeerState(s);
    });
  }
  emit('peer', pc);
  return pc;
}

// The share stamps every packet with playout-delay (render at once) and abs-capture-time (when
// the picture was taken). Chromium offers playout-delay by default but abs-capture-time only on
// request: ask for both where the browser lets a page choose.
const WANTED_EXTENSIONS = [
  'http://www.webrtc.org/experiments/rtp-hdrext/playout-delay',
  'http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time',
];

function negotiateCaptureTime(transceiver) {
  if (typeof transceiver.getHeaderExtensionsToNegotiate !== 'function') return;
  try {
    const exts = transceiver.getHeaderExtensionsToNegotiate();
    for (const e of exts) {
      if (WANTED_EXTENSIONS.includes(e.uri) && e.direction === 'stopped') e.direction = 'recvonly';
    }
    transceiver.setHeaderExtensionsToNegotiate(exts);
  } catch (_) { /* older browser: the default set */ }
}

function waitForIceGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const check = (ev) => {
      if (pc.iceGatheringState === 'complete' || (ev && ev.type === 'icecandidate' && !ev.candidate)) done();
    };
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      pc.removeEventListener('icecandidate', check);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', check);
    pc.addEventListener('icecandidate', check);
  });
}

function onPeerState(pcState) {
  switch (pcState) {
    case 'connected':
      clearTimeout(session.connectTimer);
      stopProbing();
      session.retrying = false;
      setState('connected');
      if (session.firstFrame && !session.needsGesture) hideOverlay();
      else if (!session.firstFrame) showOverlay({ text: MSG.firstFrame, busy: true });
      break;
    case 'disconnected':
      setState('reconnecting');
      startProbing();
      break;
    case 'failed':
    case 'closed':
      // A lost path, or a share that gave this session up: try again until it answers.
      drop(MSG.dropped, { retry: true });
      break;
    default: // 'new', 'connecting', 'checking': nothing to do
      break;
  }
}

// ---- 7. media -------------------------------------------------------------

// Render every frame the moment it is decoded: the share also sends playout-delay 0 on its
// packets; these are the receiver's own knobs for the same thing (Chromium: jitterBufferTarget,
// older: playoutDelayHint). contentHint tells the decoder side this is screen content.
function lowLatencyReceiver(receiver, track) {
  if (!receiver) return;
  try { if ('jitterBufferTarget' in receiver) receiver.jitterBufferTarget = 0; } catch (_) { /* unsupported */ }
  try { if ('playoutDelayHint' in receiver) receiver.playoutDelayHint = 0; } catch (_) { /* unsupported */ }
  try { if (track.kind === 'video' && 'contentHint' in track) track.contentHint = 'detail'; } catch (_) { /* unsupported */ }
}

function onTrack(ev) {
  const { track } = ev;
  lowLatencyReceiver(ev.receiver, track);
  emit('track', ev);
  if (track.kind === 'video') attachVideo(track, ev.streams && ev.streams[0]);
  else if (track.kind === 'audio') attachAudio(track);
}

function attachVideo(track, stream) {
  const media = stream && stream.getVideoTracks().includes(track) ? stream : new MediaStream([track]);
  for (const audio of session.pendingAudio) {
    if (!media.getTrackById(audio.id)) media.addTrack(audio);
  }
  session.pendingAudio = [];
  ui.video.srcObject = media;
  watchFirstFrame(session.generation);
  syncSound();
  // The track events of one answer fire in one task: start playback after all of them,
  // so the attempt to play with sound is made with the audio track in the stream.
  const gen = session.generation;
  setTimeout(() => { if (isCurrent(gen) && ui.video.srcObject === media) playVideo(); }, 0);
}

function attachAudio(track) {
  const media = ui.video.srcObject;
  if (media instanceof MediaStream) {
    if (!media.getTrackById(track.id)) media.addTrack(track);
  } else {
    session.pendingAudio.push(track);
  }
  for (const type of ['ended', 'mute', 'unmute']) track.addEventListener(type, syncSound);
  syncSound();
}

// Plays the stream, with sound unless the user muted it. Browsers may refuse to start
// playback with sound before the user has interacted with the page (NotAllowedError):
// then it plays muted and the speaker button says so (section 16).
async function playVideo() {
  const gen = session.generation;
  const video = ui.video;
  if (!video.srcObject) return;
  if (!sound.userMuted) {
    video.muted = false;
    const r = await tryPlay(video);
    if (!isCurrent(gen) || r === 'aborted') return;
    if (r === 'ok') {
      session.needsGesture = false;
      sound.blocked = false;
      syncSound();
      return;
    }
    if (r === 'not-allowed') {
      sound.blocked = true;
      console.info('[porthole] playback with sound refused by the browser: playing muted');
    }
  }
  video.muted = true;
  const r = await tryPlay(video);
  if (!isCurrent(gen) || r === 'aborted') return;
  if (r === 'ok') session.needsGesture = false;
  else if (r === 'not-allowed') waitForGesture();
  syncSound();
}

// video.play() as 'ok' | 'aborted' (source replaced meanwhile) | 'not-allowed' | 'failed'.
async function tryPlay(video) {
  try {
    await video.play();
    return 'ok';
  } catch (err) {
    const name = err && err.name;
    if (name === 'AbortError') return 'aborted';
    if (name === 'NotAllowedError') return 'not-allowed';
    console.warn('[porthole] video.play() failed:', name);
    return 'failed';
  }
}

function waitForGesture() {
  session.needsGesture = true;
  showOverlay({ text: MSG.clickToPlay });
  document.addEventListener('click', () => {
    session.needsGesture = false;
    if (session.firstFrame && session.state === 'connected') hideOverlay();
    playVideo();
  }, { once: true });
}

function watchFirstFrame(gen) {
  const video = ui.video;
  const done = () => {
    if (!isCurrent(gen) || session.firstFrame) return;
    session.firstFrame = true;
    video.removeEventListener('loadeddata', done);
    emit('first-frame', { video });
    if (session.state === 'connected' && !session.needsGesture) hideOverlay();
  };
  video.addEventListener('loadeddata', done, { once: true });
  if (typeof video.requestVideoFrameCallback === 'function') {
    video.requestVideoFrameCallback(done);
  }
}

function detachMedia() {
  session.pendingAudio = [];
  ui.video.srcObject = null;
  sound.blocked = false;
  sound.hinted = false;
  syncSound();
}

// ---- 8. session lifecycle -------------------------------------------------

// Start (or restart) a session. `code` is optional: without it the code is
// taken from the URL fragment, and the code form is shown if there is none.
// Resolves with the state once signalling is done (not when media flows).
async function connect(code) {
  if (typeof code === 'string' && code.trim()) writeFragmentCode(code.trim());
  const fragment = readFragment();
  endSession({ notifyHost: true });
  session.code = fragment.code;
  session.iceServers = fragment.iceServers;
  session.lastError = null;
  if (!session.code) {
    askForCode();
    return session.state;
  }
  if (typeof RTCPeerConnection !== 'function') {
    recordError('idle', MSG.noWebRTC);
    setState('idle', 'WebRTC not supported');
    showOverlay({ text: MSG.noWebRTC, error: true });
    return session.state;
  }
  await negotiate(++session.generation, session.code);
  return session.state;
}

async function negotiate(gen, code) {
  setState('connecting');
  showOverlay({ text: MSG.connecting, busy: true });
  try {
    // A lost session is resumed with its own pairing; otherwise pairing runs while the
    // offer is made and candidates gathered: at most one round trip is added before the
    // offer goes out.
    const resume = session.resume && Date.now() < session.resume.until ? session.resume : null;
    const pairing = resume ? null : pairWithShare(code);
    pairing?.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
    const pc = createPeer(gen);
    session.pc = pc;
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc, ICE_GATHER_TIMEOUT_MS);
    if (!isCurrent(gen, pc)) return;
    let paired = resume ? resume.paired : await pairing;
    if (!isCurrent(gen, pc)) return;
    // The host may be deciding whether to let this viewer in (it has two minutes): say so,
    // rather than "Connecting…" all along.
    const waiting = setTimeout(() => {
      if (isCurrent(gen, pc) && session.state === 'connecting') {
        setState('connecting', MSG.waitingForHost);
        showOverlay({ text: MSG.waitingForHost, busy: true });
      }
    }, WAITING_FOR_HOST_AFTER_MS);
    let answer;
    try {
      if (resume) {
        try {
          answer = await whepOffer(paired, pc.localDescription.sdp, resume.url);
        } catch (err) {
          // Gone from the share (too long, or it restarted): pair with the code instead.
          if (!(err instanceof ConnectError && err.status === 401)) throw err;
          session.resume = null;
          paired = await pairWithShare(code);
          if (!isCurrent(gen, pc)) return;
        }
      }
      answer ??= await whepOffer(paired, pc.localDescription.sdp);
    } finally {
      clearTimeout(waiting);
    }
    session.resume = null;
    if (!isCurrent(gen, pc)) {
      whepDelete(answer.resourceUrl, paired, false); // abandoned while in flight
      return;
    }
    setState('connecting');
    showOverlay({ text: MSG.connecting, busy: true });
    // From the answer on (not while the host decides): the media connection gets this long.
    session.connectTimer = setTimeout(() => {
      if (isCurrent(gen) && session.state === 'connecting') drop(MSG.timeout);
    }, CONNECT_TIMEOUT_MS);
    session.resourceUrl = answer.resourceUrl;
    session.paired = paired;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
  } catch (err) {
    if (isCurrent(gen)) onConnectError(err);
  }
}

function onConnectError(err) {
  const e = err instanceof ConnectError
    ? err
    : new ConnectError('dropped', `Could not set up the connection: ${(err && err.message) || err}`);
  if (!(err instanceof ConnectError)) console.warn('[porthole] connection setup failed:', err);
  endSession({ notifyHost: true });
  recordError(e.state, e.message, e.status);
  setState(e.state);
  if (session.retrying && (e.state === 'unreachable' || e.state === 'dropped')) {
    scheduleRetry(e.message); // still lost: the next try in RETRY_MS
  } else if (e.state === 'unauthorized') {
    stopRetrying();
    const wrong = session.code;
    session.code = null;
    writeFragmentCode(null); // don't retry a wrong code on reload
    showCodeForm(e.message, true, wrong);
  } else {
    stopRetrying(); // an answer that is no: trying again would get the same
    showOverlay({ text: e.message, error: true, reconnect: true });
  }
}

// The connection was lost (ICE failure, host closed the session, timeout). One that is
// tried again resumes this session (see `resume` on the share): the share is not told to
// end it.
function drop(message, { notifyHost = true, retry = false, now = false } = {}) {
  const resumable = (retry || session.retrying) && session.resourceUrl && session.paired;
  if (resumable) {
    session.resume = { url: session.resourceUrl, paired: session.paired, until: Date.now() + RESUME_MS };
  } else if (!session.retrying) {
    session.resume = null;
  }
  endSession({ notifyHost: notifyHost && !resumable });
  recordError('dropped', message);
  setState('dropped', message);
  if (retry || session.retrying) scheduleRetry(message, { now });
  else showOverlay({ text: message, error: true, reconnect: true });
}

// The host was lost (not removed, not stopped: those say so): ask it every RETRY_MS
// whether it answers, and connect as soon as it does, until the user does something else.
// `now`: connect at once (the share said the session is gone, so it is reachable).
function scheduleRetry(message, { now = false } = {}) {
  session.retrying = true;
  showOverlay({ text: `${message} ${MSG.retrying}`, error: true, reconnect: true });
  clearTimeout(session.retryTimer);
  const retry = () => {
    if (session.retrying && !ACTIVE_STATES.has(session.state)) connect();
  };
  if (now) {
    session.retryTimer = setTimeout(retry, 0);
    return;
  }
  const ask = async () => {
    const asked = Date.now();
    const answered = await hostAnswers(RETRY_MS);
    if (!session.retrying || ACTIVE_STATES.has(session.state)) return;
    if (answered) retry();
    else session.retryTimer = setTimeout(ask, Math.max(0, RETRY_MS - (Date.now() - asked)));
  };
  session.retryTimer = setTimeout(ask, RETRY_MS);
}

// Whether the share's host answers within `timeoutMs`, on a connection of its own. Not
// fetch(): an aborted fetch leaves its TCP connect running in the browser's pool and the
// next fetch waits on it, through TCP's backoff (1 s, 2 s, 4 s…) — seconds after the
// network is back. A WebSocket's connect is its own and ends with it. The share does not
// speak WebSocket: any answer (its refusal) closes the socket at once, which is the "yes".
function hostAnswers(timeoutMs) {
  return new Promise((resolve) => {
    let ws;
    try {
      ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${WHEP_ENDPOINT}`);
    } catch {
      resolve(false);
      return;
    }
    const timer = setTimeout(() => { ws.close(); resolve(false); }, timeoutMs);
    ws.onclose = () => { clearTimeout(timer); resolve(true); };
  });
}

function stopRetrying() {
  session.retrying = false;
  clearTimeout(session.retryTimer);
}

// While the connection is quiet ('reconnecting'), ask the share every PROBE_MS whether this
// session still exists (OPTIONS on its resource: 404 once the share gave it up). Gone: a new
// session at once, instead of waiting for ICE to fail; unreachable or still there: wait.
function startProbing() {
  stopProbing();
  const url = session.resourceUrl;
  const gen = session.generation;
  if (!url) return;
  const probe = async () => {
    let gone = false;
    try {
      // credentials 'omit': the browser's other pool of connections (privacy mode). A probe
      // sent into a dead network leaves its TCP connect in backoff in that pool, where the
      // next session's requests, made once the host answers again, would wait on it.
      const res = await fetch(url, {
        method: 'OPTIONS', cache: 'no-store', credentials: 'omit', signal: AbortSignal.timeout(PROBE_MS),
      });
      gone = res.status === 404;
    } catch { /* unreachable: keep waiting */ }
    if (!isCurrent(gen) || session.state !== 'reconnecting') return;
    if (gone) {
      // The share gave the session up and keeps it a minute: the next offer resumes it.
      drop(MSG.dropped, { retry: true, now: true, notifyHost: false });
    } else {
      session.probeTimer = setTimeout(probe, PROBE_MS);
    }
  };
  session.probeTimer = setTimeout(probe, PROBE_MS);
}

function stopProbing() {
  clearTimeout(session.probeTimer);
}

// User-initiated disconnect: tell the host, close everything.
function disconnect() {
  stopRetrying();
  session.resume = null;
  if (!session.pc && !session.resourceUrl && !ACTIVE_STATES.has(session.state)) return;
  endSession({ notifyHost: true, keepalive: true });
  setState('closed');
  showOverlay({ text: MSG.closed, reconnect: true });
}

// Tear down the current session (if any) and invalidate in-flight work.
function endSession({ notifyHost = true, keepalive = false } = {}) {
  session.generation += 1;
  clearTimeout(session.connectTimer);
  stopProbing();
  const { pc, resourceUrl, paired } = session;
  session.pc = null;
  session.resourceUrl = null;
  session.paired = null;
  session.firstFrame = false;
  if (notifyHost && resourceUrl) whepDelete(resourceUrl, paired, keepalive);
  if (pc) {
    try { pc.close(); } catch { /* already closed */ }
    emit('peer-closed', pc);
  }
  detachMedia();
}

// ---- 9. controls (overlay, code form, toolbar) ----------------------------

function showOverlay({ text, busy = false, error = false, form = false, reconnect = false }) {
  ui.message.textContent = text;
  ui.overlay.classList.toggle('busy', busy);
  ui.overlay.classList.toggle('error', error);
  ui.codeForm.hidden = !form;
  ui.btnReconnect.hidden = !reconnect;
  ui.overlay.hidden = false;
  if (reconnect && !form && document.activeElement === document.body) ui.btnReconnect.focus();
}

function hideOverlay() {
  ui.overlay.hidden = true;
}

function askForCode() {
  setState('need-code');
  showCodeForm(MSG.enterCode, false, '');
}

// The name this viewer gives itself (shown to the host; a label, not an identity), kept
// in this browser for the next time.
const NAME_KEY = 'porthole.viewerName';
const MAX_NAME_CHARS = 32;

function viewerName() {
  try {
    return [...(localStorage.getItem(NAME_KEY) || '').trim()].slice(0, MAX_NAME_CHARS).join('');
  } catch {
    return ''; // storage refused (private mode, a sandboxed frame)
  }
}

function saveViewerName(name) {
  try {
    const n = name.trim();
    if (n) localStorage.setItem(NAME_KEY, n);
    else localStorage.removeItem(NAME_KEY);
  } catch { /* not kept: sent this once anyway */ }
}

function showCodeForm(text, isError, prefill) {
  showOverlay({ text, error: isError, form: true });
  if (ui.nameInput && !ui.nameInput.value) ui.nameInput.value = viewerName();
  ui.codeInput.value = prefill || '';
  ui.codeInput.setAttribute('aria-invalid', String(isError));
  ui.codeInput.focus();
  ui.codeInput.select();
}

function onCodeSubmit(ev) {
  ev.preventDefault();
  const code = ui.codeInput.value.trim();
  if (!code) {
    ui.codeInput.focus();
    return;
  }
  if (ui.nameInput) saveViewerName(ui.nameInput.value);
  ui.codeInput.value = '';
  connect(code);
}

function fullscreenElement() {
  return document.fullscreenElement || document.webkitFullscreenElement || null;
}

async function toggleFullscreen() {
  const stage = ui.stage;
  try {
    if (fullscreenElement()) {
      await (document.exitFullscreen || document.webkitExitFullscreen).call(document);
    } else if (stage.requestFullscreen || stage.webkitRequestFullscreen) {
      await (stage.requestFullscreen || stage.webkitRequestFullscreen).call(stage);
    } else if (ui.video.webkitEnterFullscreen) {
      ui.video.webkitEnterFullscreen(); // iPhone Safari: video element only
    }
  } catch (err) {
    console.warn('[porthole] fullscreen toggle failed:', err && err.name);
  }
}

function syncFullscreenButton() {
  const active = Boolean(fullscreenElement());
  const label = active ? 'Exit full screen' : 'Enter full screen';
  ui.btnFullscreen.setAttribute('aria-pressed', String(active));
  ui.btnFullscreen.setAttribute('aria-label', label);
  ui.btnFullscreen.title = label;
  const supported = Boolean(document.fullscreenEnabled || document.webkitFullscreenEnabled
    || ui.video.webkitEnterFullscreen);
  ui.btnFullscreen.hidden = !supported;
}

function setupControls() {
  ui.codeForm.addEventListener('submit', onCodeSubmit);
  ui.btnReconnect.addEventListener('click', () => { connect(); });
  ui.btnDisconnect.addEventListener('click', () => disconnect());
  ui.btnFullscreen.addEventListener('click', () => { toggleFullscreen(); });
  if (ui.btnAskControl) ui.btnAskControl.addEventListener('click', () => { askForControl(); });
  if (ui.btnStats) ui.btnStats.addEventListener('click', () => { showStats(ui.stats.hidden); });
  addMenu(ui.keysMenu, ui.btnKeys, ui.keysList, (item) => {
    if (item.dataset.keys) sendCombo(item.dataset.keys.split(' '));
  });
  addMenu(ui.monitorMenu, ui.btnMonitor, ui.monitorList, (item) => {
    if (item.dataset.index) selectMonitor(Number(item.dataset.index));
  });
  addMenu(ui.qualityMenu, ui.btnQuality, ui.qualityList, (item) => {
    if (item.dataset.quality) setQuality(item.dataset.quality);
  });
  document.addEventListener('click', (ev) => {
    if (!menus.some((m) => m.root.contains(ev.target))) closeMenus();
  });
  trackToolbarHeight();
  if (ui.btnAudio) ui.btnAudio.addEventListener('click', () => { setMuted(!ui.video.muted); });
  document.addEventListener('fullscreenchange', syncFullscreenButton);
  document.addEventListener('webkitfullscreenchange', syncFullscreenButton);
  syncFullscreenButton();
}

// The toolbar's menus (Keys, Monitor, Quality): a button opens its list below it, one list
// at a time; picking an item or clicking elsewhere closes it.
const menus = [];

function addMenu(root, button, list, onPick) {
  if (!root || !button || !list) return;
  const menu = { root, button, list };
  menus.push(menu);
  button.addEventListener('click', () => openMenu(menu, list.hidden));
  list.addEventListener('click', (ev) => {
    const item = ev.target.closest('button');
    if (!item || item.disabled) return;
    openMenu(menu, false);
    onPick(item);
  });
}

function openMenu(menu, open) {
  for (const m of menus) {
    const shown = m === menu && open;
    m.list.hidden = !shown;
    m.button.setAttribute('aria-expanded', String(shown));
  }
}

function closeMenus() {
  openMenu(null, false);
}

// Closes the menu of `root` if it is open (its control went away or was disabled).
function closeMenuOf(root) {
  const menu = menus.find((m) => m.root === root);
  if (menu && !menu.list.hidden) openMenu(menu, false);
}

// The toolbar's bottom edge as --toolbar-bottom: on a phone the toolbar may take two rows,
// and the stats panel goes below it.
function trackToolbarHeight() {
  const set = () => {
    document.documentElement.style.setProperty('--toolbar-bottom', `${Math.round(ui.toolbar.getBoundingClientRect().bottom)}px`);
  };
  if (typeof ResizeObserver === 'function') new ResizeObserver(set).observe(ui.toolbar);
  window.addEventListener('resize', set);
  set();
}

// Fade the toolbar out while the pointer is idle (CSS does it only when connected).
function setupIdleToolbar() {
  let timer = 0;
  const wake = () => {
    document.body.classList.remove('idle');
    clearTimeout(timer);
    timer = setTimeout(() => document.body.classList.add('idle'), IDLE_HIDE_MS);
  };
  for (const type of ['pointermove', 'pointerdown', 'keydown', 'touchstart']) {
    document.addEventListener(type, wake, { passive: true });
  }
  wake();
}

// ---- 10. page lifecycle ---------------------------------------------------

function setupLifecycle() {
  let resumeOnShow = false;
  // Release the host-side session as the page goes away (keepalive fetch).
  const release = () => {
    if (!session.resourceUrl) return;
    whepDelete(session.resourceUrl, session.paired, true);
    session.resourceUrl = null;
  };
  window.addEventListener('beforeunload', release);
  window.addEventListener('pagehide', () => {
    release();
    resumeOnShow = ACTIVE_STATES.has(session.state);
    if (session.pc) endSession({ notifyHost: false });
  });
  // Restored from the back/forward cache: the old session is gone, start anew.
  window.addEventListener('pageshow', (ev) => {
    if (ev.persisted && resumeOnShow) connect();
  });
  // A new code typed into the URL fragment: connect with it.
  window.addEventListener('hashchange', () => {
    const { code } = readFragment();
    if (code && code !== session.code) connect();
  });
}

// ---- 11. toast ------------------------------------------------------------

let toastTimer = 0;

function showToast(text, { error = false } = {}) {
  if (!ui.toast) return;
  ui.toast.textContent = text;
  ui.toast.classList.toggle('error', error);
  ui.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { ui.toast.hidden = true; }, TOAST_MS);
}

// ---- 12. data channels ----------------------------------------------------

// Per-connection state of the data-channel features. `notices` and the host's
// clipboard outlive a connection; the rest is reset for every peer connection.
const link = {
  pc: null,
  channels: { pointer: null, input: null, clipboard: null },
  rights: null,        // {view, control, clipboard, clipboardMax}, frozen, or null
  monitors: null,      // the host's latest Monitors: {current, monitors}, or null
  cursor: { x: 0, y: 0, visible: false, shape: null },
  assembler: new protocol.ClipboardAssembler({ maxBytes: VIEWER_CLIPBOARD_MAX }),
  hostClipboard: null, // {mime, text?, bytes, size}
  notices: [],
  nextTransfer: 1,
  clipboardQueue: Promise.resolve(),
};

function resetLink(pc) {
  link.pc = pc;
  link.channels = { pointer: null, input: null, clipboard: null };
  link.rights = null;
  link.monitors = null;
  link.cursor = { x: 0, y: 0, visible: false, shape: null };
  link.assembler.reset();
  resetInput();
  renderRights();
  syncControlUi();
  scheduleCursor();
}

// The viewer creates the three channels before its offer (docs/protocol.md).
function openChannels(pc) {
  resetLink(pc);
  if (typeof pc.createDataChannel !== 'function') return;
  for (const [label, init] of Object.entries(protocol.CHANNEL_OPTIONS)) {
    let ch;
    try {
      ch = pc.createDataChannel(label, { ...init });
    } catch (err) {
      console.warn(`[porthole] cannot create the '${label}' data channel:`, err && err.message);
      continue;
    }
    ch.binaryType = 'arraybuffer';
    if (label === protocol.CHANNELS.CLIPBOARD) ch.bufferedAmountLowThreshold = CLIPBOARD_LOW_WATER;
    link.channels[label] = ch;
    ch.addEventListener('open', () => {
      if (link.pc !== pc) return;
      console.info(`[porthole] data channel '${label}' open`);
      emit('channel-open', label);
    });
    ch.addEventListener('message', (ev) => { if (link.pc === pc) receive(pc, label, ev.data); });
  }
}

function openChannel(label) {
  const ch = link.channels[label];
  return ch && ch.readyState === 'open' ? ch : null;
}

// Encodes and sends one message; false when the channel is not open.
function sendOn(label, msg) {
  const ch = openChannel(label);
  if (!ch) return false;
  const bytes = protocol.encode(msg);
  try {
    ch.send(bytes);
  } catch (err) {
    console.warn(`[porthole] sending ${msg.type} on '${label}' failed:`, err && err.message);
    return false;
  }
  return true;
}

// Incoming messages: decoded, checked against their channel, never thrown out of here.
function receive(pc, label, data) {
  if (typeof data === 'string') {
    console.warn(`[porthole] ignoring a text message on the '${label}' channel`);
    return;
  }
  if (typeof Blob === 'function' && data instanceof Blob) {
    data.arrayBuffer().then((buf) => { if (link.pc === pc) receive(pc, label, buf); }, () => {});
    return;
  }
  let msg;
  try {
    msg = protocol.decode(data);
  } catch (err) {
    console.warn(`[porthole] refused a malformed message on '${label}':`, (err && err.message) || err);
    return;
  }
  if (!protocol.allowedOn(msg.type, label)) {
    console.warn(`[porthole] refused ${msg.type} on the '${label}' channel`);
    return;
  }
  try {
    onHostMessage(msg);
  } catch (err) {
    console.warn(`[porthole] handling ${msg.type} failed:`, err);
  }
}

// ---- 13. host -> viewer (rights, cursor, notices, clipboard) ---------------

function onHostMessage(msg) {
  switch (msg.type) {
    case 'Rights': onRights(msg); break;
    case 'CursorPosition': onCursorPosition(msg); break;
    case 'CursorShape': onCursorShape(msg); break;
    case 'Notice': onNotice(msg); break;
    case 'ClipboardData': onClipboardChunk(msg); break;
    case 'Monitors': onMonitors(msg); break;
    default: console.warn(`[porthole] ignoring ${msg.type}: not a host-to-viewer message`);
  }
}

// Asks the host for control (RequestControl); the button rests for as long as the share
// would refuse another request.
const ASK_CONTROL_INTERVAL_MS = 5000;

function askForControl() {
  if (!link.rights || link.rights.control) return;
  if (!sendOn('input', { type: 'RequestControl' })) return;
  showToast('Asked the host for control');
  ui.btnAskControl.disabled = true;
  setTimeout(() => { ui.btnAskControl.disabled = false; }, ASK_CONTROL_INTERVAL_MS);
}

function onRights(msg) {
  const bits = msg.rights;
  const had = link.rights;
  link.rights = Object.freeze({
    view: (bits & protocol.RIGHTS.VIEW) !== 0,
    control: (bits & protocol.RIGHTS.CONTROL) !== 0,
    clipboard: (bits & protocol.RIGHTS.CLIPBOARD) !== 0,
    clipboardMax: msg.clipboard_max,
  });
  console.info('[porthole] rights:', JSON.stringify(link.rights));
  if (had && !had.control && link.rights.control) showToast('The host gave you control');
  if (!link.rights.control) resetInput();
  renderRights();
  syncControlUi();
  emit('rights', link.rights);
}

function rightsLabel(r) {
  if (r.control) return r.clipboard ? 'Control + clipboard' : 'Control';
  return r.clipboard ? 'View + clipboard' : 'View only';
}

// ---- the stats panel: what the connection does, once a second ----

const STATS_INTERVAL_MS = 1000;
const statsPanel = { timer: 0, last: null };

function showStats(on) {
  ui.stats.hidden = !on;
  ui.btnStats.setAttribute('aria-pressed', String(on));
  clearInterval(statsPanel.timer);
  statsPanel.last = null;
  if (on) {
    updateStats();
    statsPanel.timer = setInterval(updateStats, STATS_INTERVAL_MS);
  }
}

async function updateStats() {
  const pc = session.pc;
  if (!pc || ui.stats.hidden) return;
  let report;
  try {
    report = await pc.getStats();
  } catch {
    return;
  }
  let video = null;
  let pair = null;
  const codecs = new Map();
  report.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') video = r;
    if (r.type === 'codec') codecs.set(r.id, r);
    if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r;
  });
  const lines = [];
  if (video) {
    const prev = statsPanel.last;
    const kbps = prev && video.timestamp > prev.timestamp
      ? Math.round(((video.bytesReceived - prev.bytesReceived) * 8) / (video.timestamp - prev.timestamp))
      : null;
    statsPanel.last = { timestamp: video.timestamp, bytesReceived: video.bytesReceived };
    const codec = codecs.get(video.codecId)?.mimeType?.replace(/^video\//, '') ?? '?';
    lines.push(`${video.frameWidth ?? '?'}×${video.frameHeight ?? '?'} ${codec}, ${Math.round(video.framesPerSecond ?? 0)} fps`);
    lines.push(`${kbps ?? '…'} kbit/s, ${video.packetsLost ?? 0} packets lost`);
    if (video.jitterBufferEmittedCount) {
      lines.push(`jitter buffer ${Math.round((1000 * video.jitterBufferDelay) / video.jitterBufferEmittedCount)} ms`);
    }
  } else {
    lines.push('no video yet');
  }
  if (pair?.currentRoundTripTime !== undefined) {
    lines.push(`round trip ${Math.round(pair.currentRoundTripTime * 1000)} ms`);
  }
  lines.push(qualityLine());
  const shown = link.monitors;
  if (shown && shown.monitors.length >= 2) {
    lines.push(`monitor ${monitorLabel(shown.monitors[shown.current], shown.current)}`);
  }
  ui.stats.textContent = lines.join('\n');
}

// The special-keys menu: combinations the viewer's own system or browser would take
// (Ctrl+Alt+Del, Alt+Tab, the Windows key...), pressed on the host in order and released in
// reverse.
function sendCombo(codes) {
  if (!canControl()) return;
  for (const code of codes) sendInput({ type: 'Key', pressed: true, code });
  for (const code of [...codes].reverse()) sendInput({ type: 'Key', pressed: false, code });
}

function renderRights() {
  const r = link.rights;
  if (ui.btnStats) ui.btnStats.disabled = !r;
  if (ui.btnAskControl) ui.btnAskControl.hidden = !r || r.control;
  if (ui.keysMenu) {
    ui.keysMenu.hidden = !r || !r.control;
    if (ui.keysMenu.hidden) closeMenuOf(ui.keysMenu);
  }
  renderMonitors();
  renderQuality();
  if (!ui.rights) return;
  ui.rights.hidden = !r;
  if (!r) return;
  ui.rights.textContent = rightsLabel(r);
  ui.rights.dataset.control = String(r.control);
  const parts = [r.control ? 'You can use the host\'s mouse and keyboard.' : 'You can watch but not control the screen.'];
  if (r.clipboard) parts.push(`The clipboard is shared (up to ${formatBytes(r.clipboardMax)} to the host).`);
  ui.rights.title = parts.join(' ');
}

function formatBytes(n) {
  if (n >= 1024 * 1024) return `${Math.round(n / (1024 * 1024))} MiB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KiB`;
  return `${n} bytes`;
}

function canControl() {
  return session.state === 'connected' && !!link.rights && link.rights.control;
}

// Body classes: 'controlling' (input goes to the host), 'host-cursor' (the local
// cursor is hidden over the video because the host's is drawn there).
function syncControlUi() {
  const control = canControl();
  document.body.classList.toggle('controlling', control);
  document.body.classList.toggle('host-cursor', control && !!link.cursor.shape);
}

// The video frame's box inside the <video> element (object-fit: contain), in
// viewport coordinates, or null before the first frame.
function videoBox() {
  const v = ui.video;
  const vw = v.videoWidth;
  const vh = v.videoHeight;
  const rect = v.getBoundingClientRect();
  if (!vw || !vh || !rect.width || !rect.height) return null;
  const scale = Math.min(rect.width / vw, rect.height / vh);
  const width = vw * scale;
  const height = vh * scale;
  return {
    left: rect.left + (rect.width - width) / 2,
    top: rect.top + (rect.height - height) / 2,
    width, height, scale,
  };
}

function onCursorPosition(msg) {
  Object.assign(link.cursor, { x: msg.x, y: msg.y, visible: msg.visible });
  scheduleCursor();
}

function onCursorShape(msg) {
  const { width, height } = msg;
  const canvas = ui.cursor;
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  if (ctx && typeof ImageData === 'function') {
    const px = new Uint8ClampedArray(msg.rgba.buffer, msg.rgba.byteOffset, msg.rgba.byteLength);
    ctx.putImageData(new ImageData(px, width, height), 0, 0);
  }
  link.cursor.shape = { width, height, hot_x: msg.hot_x, hot_y: msg.hot_y };
  syncControlUi();
  scheduleCursor();
}

let cursorFrame = 0;

function scheduleCursor() {
  if (cursorFrame) return;
  cursorFrame = (window.requestAnimationFrame || ((fn) => setTimeout(fn, 16)))(renderCursor);
}

// Draws the host cursor at its position minus the hotspot, through the video's letterbox.
function renderCursor() {
  cursorFrame = 0;
  const el = ui.cursor;
  const c = link.cursor;
  const box = c.shape && c.visible && session.state === 'connected' ? videoBox() : null;
  if (!box) {
    el.hidden = true;
    return;
  }
  const stage = ui.stage.getBoundingClientRect();
  const scale = Math.min(CURSOR_MAX_SCALE, Math.max(CURSOR_MIN_SCALE, box.scale));
  const left = box.left - stage.left + (c.x / 65535) * box.width - c.shape.hot_x * scale;
  const top = box.top - stage.top + (c.y / 65535) * box.height - c.shape.hot_y * scale;
  el.style.width = `${c.shape.width * scale}px`;
  el.style.height = `${c.shape.height * scale}px`;
  el.style.transform = `translate(${left}px, ${top}px)`;
  el.hidden = false;
}

function onNotice(msg) {
  const text = msg.text || NOTICE_TEXT[msg.code] || `Notice from the host (code ${msg.code}).`;
  addNotice({ code: msg.code, transfer: msg.transfer, text, local: false });
  // The host's last word: say why at once, instead of a frozen picture until the
  // connection times out.
  if (msg.code === protocol.NOTICE.REMOVED || msg.code === protocol.NOTICE.HOST_STOPPED) {
    drop(`Disconnected: ${text}`, { notifyHost: false });
  }
}

function addNotice(notice) {
  link.notices.push(notice);
  if (link.notices.length > MAX_NOTICES) link.notices.splice(0, link.notices.length - MAX_NOTICES);
  console.info(`[porthole] notice ${notice.code}${notice.local ? ' (local)' : ''}: ${notice.text}`);
  showToast(notice.text, { error: true });
  emit('notice', notice);
}

function onClipboardChunk(msg) {
  let done;
  try {
    done = link.assembler.push(msg);
  } catch (err) {
    if (err && err.reason === 'TooLarge') {
      addNotice({
        code: protocol.NOTICE.CLIPBOARD_TOO_LARGE,
        transfer: msg.transfer,
        text: `Host clipboard too large: ${msg.total} bytes (this page accepts at most ${VIEWER_CLIPBOARD_MAX})`,
        local: true,
      });
    } else {
      console.warn('[porthole] dropped a clipboard chunk:', (err && err.message) || err);
    }
    return;
  }
  if (done) acceptHostClipboard(done);
}

function acceptHostClipboard({ mime, bytes }) {
  const value = mime === 'png'
    ? { mime: 'image/png', bytes, size: bytes.length }
    : { mime: 'text/plain', text: new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes), bytes, size: bytes.length };
  link.hostClipboard = value;
  emit('clipboard', value);
  writeSystemClipboard(value);
  showToast(value.text !== undefined
    ? `Host clipboard: ${Array.from(value.text).length} characters`
    : `Host clipboard: image (${Math.max(1, Math.round(value.size / 1024))} KB)`);
}

// Best effort: needs a secure context and focus; plain-http origins often lack it.
function writeSystemClipboard(value) {
  const clip = navigator.clipboard;
  if (!clip) return;
  let written = null;
  try {
    if (value.text !== undefined && typeof clip.writeText === 'function') {
      written = clip.writeText(value.text);
    } else if (value.mime === 'image/png' && typeof clip.write === 'function' && typeof ClipboardItem === 'function') {
      written = clip.write([new ClipboardItem({ 'image/png': new Blob([value.bytes], { type: 'image/png' }) })]);
    }
  } catch (err) {
    console.info('[porthole] cannot write the system clipboard:', err && err.name);
    return;
  }
  if (written && typeof written.catch === 'function') {
    written.catch((err) => console.info('[porthole] cannot write the system clipboard:', err && err.name));
  }
}

function base64(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

// Ctrl+C (or Edit > Copy) in the page copies the host's clipboard, unless the user has
// selected text in the page itself.
function onCopy(ev) {
  const clip = link.hostClipboard;
  if (!clip || !ev.clipboardData || isFormField(ev.target)) return;
  const selection = window.getSelection ? window.getSelection() : null;
  if (selection && !selection.isCollapsed && String(selection).trim()) return;
  if (clip.text !== undefined) {
    ev.clipboardData.setData('text/plain', clip.text);
  } else {
    try {
      ev.clipboardData.items.add(new File([clip.bytes], 'clipboard.png', { type: 'image/png' }));
    } catch { /* not supported for copy in every browser */ }
    ev.clipboardData.setData('text/html', `<img src="data:image/png;base64,${base64(clip.bytes)}">`);
  }
  ev.preventDefault();
}

function setupHostView() {
  on('peer', openChannels);
  on('peer-closed', (pc) => { if (link.pc === pc) resetLink(null); });
  on('state', () => { syncControlUi(); scheduleCursor(); });
  on('first-frame', scheduleCursor);
  ui.video.addEventListener('resize', scheduleCursor);
  ui.video.addEventListener('loadedmetadata', scheduleCursor);
  window.addEventListener('resize', scheduleCursor);
  document.addEventListener('fullscreenchange', scheduleCursor);
  document.addEventListener('webkitfullscreenchange', scheduleCursor);
  if (typeof ResizeObserver === 'function') new ResizeObserver(scheduleCursor).observe(ui.video);
  document.addEventListener('copy', onCopy);
}

// ---- 14. viewer -> host input ---------------------------------------------

// Sent only while connected with the control right; the host enforces it too.
// PointerMove goes on the lossy 'pointer' channel; everything else on 'input', in order.

const KEY_CODE = /^[A-Za-z0-9]{1,32}$/;
// What each physical key types on the host's keymap (US): [unshifted, shifted].
const US_KEYS = (() => {
  const keys = {
    Space: [' ', ' '], Minus: ['-', '_'], Equal: ['=', '+'], BracketLeft: ['[', '{'],
    BracketRight: [']', '}'], Backslash: ['\\', '|'], Semicolon: [';', ':'], Quote: ["'", '"'],
    Backquote: ['`', '~'], Comma: [',', '<'], Period: ['.', '>'], Slash: ['/', '?'],
  };
  for (let c = 65; c <= 90; c++) {
    const letter = String.fromCharCode(c);
    keys[`Key${letter}`] = [letter.toLowerCase(), letter];
  }
  for (let d = 0; d <= 9; d++) keys[`Digit${d}`] = [String(d), ')!@#$%^&*('[d]];
  return keys;
})();
// DOM MouseEvent.button -> its bit in MouseEvent.buttons.
const BUTTON_BIT = [1, 4, 2, 8, 16];

const input = {
  pendingMove: null, // latest position not yet sent
  moveFrame: 0,
  lastPos: { x: 0, y: 0 },
  buttons: new Set(), // buttons pressed on the host by this page
  wheelX: 0,          // sub-unit wheel remainders
  wheelY: 0,
  holding: false,     // input held back while a paste is uploaded first
  held: [],
  holdTimer: 0,
  textKeys: new Set(), // physical keys whose press was sent as text (their release is not sent)
  pressedKeys: new Set(), // physical keys pressed on the host by this page
};

function resetInput() {
  resetTouch();
  input.pendingMove = null;
  input.buttons.clear();
  input.wheelX = 0;
  input.wheelY = 0;
  input.holding = false;
  input.held = [];
  input.textKeys.clear();
  input.pressedKeys.clear();
  clearTimeout(input.holdTimer);
}

function isFormField(target) {
  return !!(target && target.closest && target.closest('form, input, textarea, select, [contenteditable=""], [contenteditable="true"]'));
}

// Client coordinates -> normalised frame position; null in the black bars (unless clamped).
function framePosition(clientX, clientY, clamp) {
  const box = videoBox();
  if (!box) return null;
  let fx = (clientX - box.left) / box.width;
  let fy = (clientY - box.top) / box.height;
  if (!clamp && (fx < 0 || fx > 1 || fy < 0 || fy > 1)) return null;
  fx = Math.min(1, Math.max(0, fx));
  fy = Math.min(1, Math.max(0, fy));
  return { x: Math.round(fx * 65535), y: Math.round(fy * 65535) };
}

function sendInput(msg) {
  if (input.holding) {
    input.held.push(msg);
    return true;
  }
  return canControl() && sendOn('input', msg);
}

// Holds 'input' messages back (to let a paste upload go first) until releaseInput().
function holdInput(ms) {
  input.holding = true;
  clearTimeout(input.holdTimer);
  input.holdTimer = setTimeout(releaseInput, ms);
}

function releaseInput() {
  clearTimeout(input.holdTimer);
  if (!input.holding) return;
  input.holding = false;
  for (const msg of input.held.splice(0)) sendInput(msg);
}

function flushMove() {
  if (input.moveFrame) (window.cancelAnimationFrame || clearTimeout)(input.moveFrame);
  input.moveFrame = 0;
  const pos = input.pendingMove;
  input.pendingMove = null;
  if (pos && canControl()) sendOn('pointer', { type: 'PointerMove', x: pos.x, y: pos.y });
}

function queueMove(pos) {
  input.pendingMove = pos;
  input.lastPos = pos;
  if (!input.moveFrame) input.moveFrame = (window.requestAnimationFrame || ((fn) => setTimeout(fn, 16)))(flushMove);
}

function pressButton(button, pos) {
  flushMove();
  input.lastPos = pos;
  input.buttons.add(button);
  sendInput({ type: 'PointerButton', button, pressed: true, x: pos.x, y: pos.y });
}

function releaseButton(button, pos) {
  if (!input.buttons.delete(button)) return;
  flushMove();
  input.lastPos = pos;
  sendInput({ type: 'PointerButton', button, pressed: false, x: pos.x, y: pos.y });
}

function blurFocused() {
  const focused = document.activeElement;
  if (focused && focused !== document.body && typeof focused.blur === 'function') focused.blur();
}

function onPointerDown(ev) {
  if (ev.pointerType === 'touch') {
    onTouchDown(ev);
    return;
  }
  if (!canControl() || !(ev.button >= 0 && ev.button <= 4)) return;
  const pos = framePosition(ev.clientX, ev.clientY, false);
  if (!pos) return; // in the black bars
  ev.preventDefault();
  blurFocused();
  try { ui.video.setPointerCapture(ev.pointerId); } catch { /* not supported */ }
  pressButton(ev.button, pos);
}

function onPointerMove(ev) {
  if (ev.pointerType === 'touch') {
    onTouchMove(ev);
    return;
  }
  if (!canControl()) return;
  const dragging = input.buttons.size > 0;
  const pos = framePosition(ev.clientX, ev.clientY, dragging);
  // A further button pressed or released while another is down comes as a pointermove.
  if (ev.button >= 0 && ev.button <= 4 && typeof ev.buttons === 'number') {
    const down = (ev.buttons & BUTTON_BIT[ev.button]) !== 0;
    if (down && pos && !input.buttons.has(ev.button)) pressButton(ev.button, pos);
    else if (!down) releaseButton(ev.button, pos || input.lastPos);
    return;
  }
  if (pos) queueMove(pos);
}

function onPointerUp(ev) {
  if (ev.pointerType === 'touch') {
    onTouchUp(ev);
    return;
  }
  if (!input.buttons.has(ev.button)) return;
  if (canControl()) ev.preventDefault();
  releaseButton(ev.button, framePosition(ev.clientX, ev.clientY, true) || input.lastPos);
}

function onPointerCancel() {
  resetTouch();
  for (const button of [...input.buttons]) releaseButton(button, input.lastPos);
}

// Touch (phones, tablets): the finger is the host's pointer. A tap is a left click where
// it lands, a finger that moves before TOUCH_HOLD_MS drags with the left button held, one
// held still that long is a right click, and two fingers moving together scroll (Wheel,
// the picture following the fingers). What a touch is becomes known only as it goes:
// nothing is pressed until then.
const TOUCH_HOLD_MS = 500;
const TOUCH_SLOP_PX = 10;            // a finger that moves less is still
const TOUCH_WHEEL_PER_PX = 120 / 50; // 1/120-notch units per CSS pixel: a notch every 50 px

const touch = {
  points: new Map(), // pointerId -> {x, y}: the fingers down on the video (client px)
  mode: null,        // null | 'pending' (tap, drag or hold?) | 'drag' | 'held' | 'scroll'
  start: null,       // the first finger's {x, y, pos} when it landed
  timer: 0,          // the long press
  last: null,        // 'scroll': the fingers' previous centre
  wheelX: 0,         // 'scroll': sub-unit remainders
  wheelY: 0,
};

function resetTouch() {
  clearTimeout(touch.timer);
  touch.points.clear();
  touch.mode = null;
  touch.start = null;
  touch.last = null;
  touch.wheelX = 0;
  touch.wheelY = 0;
}

function touchCentre() {
  let x = 0;
  let y = 0;
  for (const p of touch.points.values()) {
    x += p.x;
    y += p.y;
  }
  return { x: x / touch.points.size, y: y / touch.points.size };
}

function onTouchDown(ev) {
  if (!canControl()) return;
  if (touch.points.size === 0) {
    const pos = framePosition(ev.clientX, ev.clientY, false);
    if (!pos) return; // in the black bars
    ev.preventDefault();
    blurFocused();
    resetTouch();
    touch.points.set(ev.pointerId, { x: ev.clientX, y: ev.clientY });
    touch.mode = 'pending';
    touch.start = { x: ev.clientX, y: ev.clientY, pos };
    // The host pointer goes there at once: what is under it shows its hover state.
    queueMove(pos);
    flushMove();
    touch.timer = setTimeout(onTouchHold, TOUCH_HOLD_MS);
    return;
  }
  // A second finger while the first has done nothing yet: the two scroll.
  if (touch.mode !== 'pending' && touch.mode !== 'scroll') return; // dragging or held: ignored
  ev.preventDefault();
  clearTimeout(touch.timer);
  touch.points.set(ev.pointerId, { x: ev.clientX, y: ev.clientY });
  touch.mode = 'scroll';
  touch.last = touchCentre();
}

function onTouchHold() {
  if (touch.mode !== 'pending' || !canControl()) return;
  touch.mode = 'held';
  const { pos } = touch.start;
  pressButton(2, pos);
  releaseButton(2, pos);
}

function onTouchMove(ev) {
  const p = touch.points.get(ev.pointerId);
  if (!p || !canControl()) return;
  ev.preventDefault();
  p.x = ev.clientX;
  p.y = ev.clientY;
  if (touch.mode === 'pending') {
    if (Math.hypot(p.x - touch.start.x, p.y - touch.start.y) <= TOUCH_SLOP_PX) return;
    clearTimeout(touch.timer);
    touch.mode = 'drag';
    pressButton(0, touch.start.pos);
  }
  if (touch.mode === 'drag') {
    const pos = framePosition(p.x, p.y, true);
    if (pos) queueMove(pos);
  } else if (touch.mode === 'scroll') {
    touchScroll();
  }
}

// Fingers moving up scroll down (the picture follows them), as on a phone's own pages.
function touchScroll() {
  const c = touchCentre();
  touch.wheelX -= (c.x - touch.last.x) * TOUCH_WHEEL_PER_PX;
  touch.wheelY -= (c.y - touch.last.y) * TOUCH_WHEEL_PER_PX;
  touch.last = c;
  const dx = clampI16(Math.trunc(touch.wheelX));
  const dy = clampI16(Math.trunc(touch.wheelY));
  if (!dx && !dy) return;
  touch.wheelX -= dx;
  touch.wheelY -= dy;
  sendInput({ type: 'Wheel', dx, dy });
}

function onTouchUp(ev) {
  if (!touch.points.has(ev.pointerId)) return;
  touch.points.delete(ev.pointerId);
  if (touch.mode === 'scroll') {
    if (touch.points.size) touch.last = touchCentre(); // the fingers left go on scrolling
    else resetTouch();
    return;
  }
  const { mode, start } = touch;
  resetTouch();
  if (!canControl()) return;
  if (mode === 'pending') {
    // A tap: a click where the finger landed (a little wobble is not a drag).
    pressButton(0, start.pos);
    releaseButton(0, start.pos);
  } else if (mode === 'drag') {
    releaseButton(0, framePosition(ev.clientX, ev.clientY, true) || input.lastPos);
  }
}

function clampI16(v) {
  return Math.max(-32768, Math.min(32767, v));
}

function onWheel(ev) {
  if (!canControl()) return;
  const pos = framePosition(ev.clientX, ev.clientY, false);
  if (!pos) return;
  ev.preventDefault();
  // 1/120 notch units: pixels (mode 0) as 100 px per notch, lines as 3 per notch, pages as 10 notches.
  const unit = ev.deltaMode === 1 ? 40 : ev.deltaMode === 2 ? 1200 : 1.2;
  input.wheelX += ev.deltaX * unit;
  input.wheelY += ev.deltaY * unit;
  const dx = clampI16(Math.round(input.wheelX));
  const dy = clampI16(Math.round(input.wheelY));
  input.wheelX = Math.abs(input.wheelX - dx) < 1 ? input.wheelX - dx : 0;
  input.wheelY = Math.abs(input.wheelY - dy) < 1 ? input.wheelY - dy : 0;
  if (!dx && !dy) return;
  queueMove(pos);
  flushMove();
  sendInput({ type: 'Wheel', dx, dy });
}

function sendText(text) {
  for (const piece of protocol.splitText(text, protocol.MAX_TEXT_LEN)) sendInput({ type: 'Text', text: piece });
}

function isPasteShortcut(ev) {
  return ((ev.code === 'KeyV' && (ev.ctrlKey || ev.metaKey)) || (ev.code === 'Insert' && ev.shiftKey))
    && !ev.altKey && !ev.repeat;
}

/** `key` when it is one printable character, else null. */
function printableChar(key) {
  const chars = Array.from(typeof key === 'string' ? key : '');
  return chars.length === 1 && chars[0] >= ' ' && chars[0] !== '\x7f' ? key : null;
}

/**
 * The character a key press carries that its physical key would not type on the host: from
 * another keyboard layout, an on-screen keyboard or a key event without a physical Shift
 * ("H" on KeyH, "!" on Digit1). Null when the key itself types it (then the key is sent, so
 * it can be held, repeat and combine), and for shortcuts (Ctrl, Alt, Meta: by physical key).
 */
function charToType(ev) {
  const altGraph = !!ev.getModifierState?.('AltGraph');
  if (!altGraph && (ev.ctrlKey || ev.metaKey || ev.altKey)) return null;
  if (printableChar(ev.key) === null) return null;
  // The numeric keypad goes as keys (held, bound by applications), whatever it types.
  if (ev.code.startsWith('Numpad')) return null;
  const us = US_KEYS[ev.code];
  if (!us) return ev.key;
  let shifted = ev.shiftKey;
  if (ev.code.startsWith('Key') && ev.getModifierState?.('CapsLock')) shifted = !shifted;
  return !altGraph && us[shifted ? 1 : 0] === ev.key ? null : ev.key;
}

function onKey(ev) {
  if (!canControl() || isFormField(ev.target)) return;
  if (ev.isComposing || ev.keyCode === 229) return; // IME at work: compositionend sends the text
  const pressed = ev.type === 'keydown';
  const code = ev.code || '';
  if (KEY_CODE.test(code) && code !== 'Unidentified') {
    // Text or key is decided once per physical press: its repeats and its release follow
    // that choice, so a key pressed on the host is always released there.
    const asText = pressed
      ? input.textKeys.has(code) || (!input.pressedKeys.has(code) && charToType(ev) !== null)
      : input.textKeys.has(code);
    if (asText) {
      ev.preventDefault();
      if (pressed) {
        input.textKeys.add(code);
        const text = printableChar(ev.key);
        if (text !== null) sendText(text);
      } else {
        input.textKeys.delete(code);
      }
      return;
    }
    if (pressed) input.pressedKeys.add(code);
    else input.pressedKeys.delete(code);
    if (pressed && isPasteShortcut(ev) && link.rights.clipboard) {
      // Let the browser fire 'paste' so the local clipboard reaches the host before the keys.
      holdInput(PASTE_KEY_HOLD_MS);
    } else {
      ev.preventDefault();
    }
    sendInput({ type: 'Key', pressed, code });
    return;
  }
  // No physical key the host knows: type the character instead.
  const text = pressed ? printableChar(ev.key) : null;
  if (text !== null) {
    ev.preventDefault();
    sendText(text);
  }
}

function onCompositionEnd(ev) {
  if (!canControl() || isFormField(ev.target) || !ev.data) return;
  sendText(ev.data);
}

// Focus left the page: release everything this viewer holds on the host.
function releaseAll() {
  resetTouch();
  releaseInput();
  input.buttons.clear();
  input.textKeys.clear();
  input.pressedKeys.clear();
  if (canControl()) sendInput({ type: 'ReleaseAll' });
}

function setupInput() {
  const v = ui.video;
  v.addEventListener('pointerdown', onPointerDown);
  v.addEventListener('pointermove', onPointerMove);
  window.addEventListener('pointerup', onPointerUp, true);
  window.addEventListener('pointercancel', onPointerCancel, true);
  v.addEventListener('wheel', onWheel, { passive: false });
  const preventWhileControlling = (ev) => { if (canControl()) ev.preventDefault(); };
  v.addEventListener('contextmenu', preventWhileControlling);
  v.addEventListener('auxclick', preventWhileControlling);
  v.addEventListener('mouseup', preventWhileControlling); // back/forward buttons navigate otherwise
  v.addEventListener('dragstart', preventWhileControlling);
  window.addEventListener('keydown', onKey, true);
  window.addEventListener('keyup', onKey, true);
  window.addEventListener('compositionend', onCompositionEnd, true);
  window.addEventListener('blur', releaseAll);
  document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'hidden') releaseAll(); });
}

// ---- 15. clipboard to host ------------------------------------------------

// Needs the clipboard right. Resolves true when sent, false when refused locally
// (no right, channel not open, over the host's cap).
function sendClipboard(mime, bytes) {
  const r = link.rights;
  if (!r || !r.clipboard || !openChannel('clipboard')) return Promise.resolve(false);
  if (bytes.length > r.clipboardMax) {
    const text = `Clipboard too large: ${bytes.length} bytes (the host accepts at most ${r.clipboardMax})`;
    addNotice({ code: protocol.NOTICE.CLIPBOARD_TOO_LARGE, transfer: 0, text, local: true });
    return Promise.resolve(false);
  }
  // One transfer at a time, in order.
  const job = link.clipboardQueue.then(() => transmitClipboard(mime, bytes));
  link.clipboardQueue = job.catch(() => false);
  return job;
}

async function transmitClipboard(mime, bytes) {
  const ch = openChannel('clipboard');
  if (!ch) return false;
  const transfer = link.nextTransfer;
  link.nextTransfer = transfer >= 0xffffffff ? 1 : transfer + 1;
  for (const msg of protocol.clipboardChunks(transfer, mime, bytes)) {
    if (ch.bufferedAmount > CLIPBOARD_HIGH_WATER) await drained(ch);
    if (ch.readyState !== 'open') {
      console.warn(`[porthole] clipboard transfer ${transfer} cut short: the channel closed`);
      return false;
    }
    ch.send(protocol.encode(msg));
  }
  showToast(`Sent clipboard to host (${bytes.length} bytes)`);
  return true;
}

function drained(ch) {
  return new Promise((resolve) => {
    const done = () => {
      ch.removeEventListener('bufferedamountlow', done);
      ch.removeEventListener('close', done);
      resolve();
    };
    ch.bufferedAmountLowThreshold = CLIPBOARD_LOW_WATER;
    ch.addEventListener('bufferedamountlow', done);
    ch.addEventListener('close', done);
  });
}

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Object.prototype.toString.call(data) === '[object ArrayBuffer]') return new Uint8Array(data);
  if (Array.isArray(data)) return Uint8Array.from(data);
  throw new TypeError('expected a Uint8Array, ArrayBuffer or array of bytes');
}

function pasteText(text) {
  return sendClipboard('text', new TextEncoder().encode(String(text)));
}

function pasteBytes(mime, bytes) {
  const kind = { 'text/plain': 'text', 'text/plain;charset=utf-8': 'text', text: 'text', 'image/png': 'png', png: 'png' }[
    String(mime).toLowerCase().replace(/\s+/g, '')];
  if (!kind) return Promise.reject(new TypeError(`pasteBytes: unsupported type ${mime}`));
  return sendClipboard(kind, toBytes(bytes));
}

function onPaste(ev) {
  const r = link.rights;
  const dt = ev.clipboardData;
  if (isFormField(ev.target) || !r || !r.clipboard || !dt || !openChannel('clipboard')) {
    releaseInput();
    return;
  }
  let file = null;
  for (const item of Array.from(dt.items || [])) {
    if (item.kind === 'file' && item.type === 'image/png') file = file || item.getAsFile();
  }
  if (!file) file = Array.from(dt.files || []).find((f) => f.type === 'image/png') || null;
  let job;
  if (file) job = file.arrayBuffer().then((buf) => sendClipboard('png', new Uint8Array(buf)));
  else if (Array.from(dt.types || []).includes('text/plain')) job = pasteText(dt.getData('text/plain'));
  else {
    releaseInput();
    return;
  }
  ev.preventDefault();
  // The held Ctrl+V goes to the host once the content is on its way.
  clearTimeout(input.holdTimer);
  job.catch((err) => console.warn('[porthole] paste failed:', err)).finally(releaseInput);
}

function setupClipboard() {
  document.addEventListener('paste', onPaste);
}

// Raw access for tests: encodes and sends regardless of rights.
function sendMessage(label, msg) {
  return sendOn(label, msg);
}

// ---- 16. sound (mute button, autoplay refusal) ----------------------------

// The audio plays through the <video> element, whose stream carries the audio track.
const sound = {
  userMuted: false, // the user's choice (speaker button, setMuted): kept across sessions
  blocked: false,   // the browser refused playback with sound: playing muted until a gesture
  hinted: false,    // the "muted by the browser" hint was shown for this session
  last: '',         // the last state emitted as 'sound'
};

// Audio is present when a live audio track has media: a remote track stays muted (in the
// MediaStreamTrack sense) until its first packet, and a host without audio may still
// answer the offer's audio m-line as if it would send.
function audioPresent() {
  const media = ui.video.srcObject;
  const tracks = media instanceof MediaStream ? media.getAudioTracks() : [];
  return tracks.concat(session.pendingAudio).some((t) => t.readyState === 'live' && !t.muted);
}

function soundState() {
  const muted = ui.video.muted;
  return { present: audioPresent(), muted, blocked: sound.blocked && muted };
}

// Shows the speaker button while there is an audio track, labelled with what a click does.
function syncSound() {
  const st = soundState();
  const btn = ui.btnAudio;
  if (btn) {
    btn.hidden = !st.present;
    const label = st.muted ? 'Unmute' : 'Mute';
    btn.title = label;
    btn.setAttribute('aria-label', label);
    btn.dataset.muted = String(st.muted);
    btn.classList.toggle('blocked', st.blocked);
  }
  if (st.present && st.blocked && !sound.hinted) {
    sound.hinted = true;
    showToast(MSG.soundBlocked);
  }
  const key = JSON.stringify(st);
  if (key !== sound.last) {
    sound.last = key;
    emit('sound', st);
  }
}

// Mutes or unmutes. Resolves to whether the element is now as asked: unmuting needs the
// user to have interacted with the page in most browsers; if the browser refuses, the
// video keeps playing muted and this resolves false.
async function setMuted(muted) {
  const video = ui.video;
  sound.userMuted = Boolean(muted);
  if (sound.userMuted) {
    video.muted = true;
    sound.blocked = false;
    syncSound();
    return true;
  }
  const gen = session.generation;
  // Chromium pauses a muted autoplaying element that is unmuted without a user gesture.
  video.muted = false;
  if (video.srcObject && video.paused) {
    const r = await tryPlay(video);
    if (!isCurrent(gen)) return !video.muted;
    if (r === 'not-allowed') {
      sound.blocked = true;
      sound.hinted = false; // say it again: the user just asked for sound
      video.muted = true;
      tryPlay(video).then(syncSound);
      syncSound();
      return false;
    }
  }
  sound.blocked = false;
  syncSound();
  return !video.muted;
}

function setupSound() {
  ui.video.addEventListener('volumechange', syncSound);
  syncSound();
}

// ---- 17. monitors and quality ---------------------------------------------

// The host's monitors (its Monitors message, when 'input' opens and whenever the monitor
// shared changes): with two or more, the toolbar's Monitor menu lists them and a viewer
// with control picks the one shared (SelectMonitor). One picture serves every viewer, so
// the choice is everybody's.
function onMonitors(msg) {
  const had = link.monitors;
  link.monitors = Object.freeze({
    current: msg.current,
    monitors: Object.freeze(msg.monitors.map((m) => Object.freeze({ ...m }))),
  });
  const now = link.monitors.monitors[msg.current];
  console.info(`[porthole] monitors: ${link.monitors.monitors.length}, sharing ${monitorLabel(now, msg.current)}`);
  if (had && had.current !== msg.current) showToast(`The host now shares ${monitorLabel(now, msg.current)}`);
  renderMonitors();
  emit('monitors', link.monitors);
}

/** "NAME (primary) — W×H" (a monitor without a name is "Monitor N", counted from 1). */
function monitorLabel(m, index) {
  return `${m.name || `Monitor ${index + 1}`}${m.primary ? ' (primary)' : ''} — ${m.width}×${m.height}`;
}

function renderMonitors() {
  if (!ui.monitorMenu) return;
  const shown = link.monitors;
  ui.monitorMenu.hidden = !shown || shown.monitors.length < 2;
  if (ui.monitorMenu.hidden) {
    closeMenuOf(ui.monitorMenu);
    ui.monitorList.replaceChildren();
    return;
  }
  const control = !!link.rights && link.rights.control;
  const now = `Shared: ${monitorLabel(shown.monitors[shown.current], shown.current)}.`;
  ui.btnMonitor.disabled = !control;
  ui.btnMonitor.title = control
    ? `${now} Share another of the host's monitors (every viewer sees the one shared)`
    : `${now} Only a viewer with control can switch monitors: ask the host for control`;
  if (!control) closeMenuOf(ui.monitorMenu);
  ui.monitorList.replaceChildren(...shown.monitors.map((m, i) => {
    const item = document.createElement('button');
    item.type = 'button';
    item.setAttribute('role', 'menuitemradio');
    item.setAttribute('aria-checked', String(i === shown.current));
    item.dataset.index = String(i);
    item.textContent = monitorLabel(m, i);
    return item;
  }));
}

// Asks the host to share monitor `index` of its list (needs control); the host answers
// every viewer with a new Monitors message. False when not sent.
function selectMonitor(index) {
  const shown = link.monitors;
  if (!canControl() || !shown || !Number.isInteger(index) || index < 0 || index >= shown.monitors.length) return false;
  if (index === shown.current) return true;
  return sendOn('input', { type: 'SelectMonitor', index });
}

// Quality presets: the most this viewer asks to be sent (MaxBitrate; 0 is no limit). Kept
// in this browser, sent when changed and whenever 'input' opens (a new or resumed
// connection starts without a limit).
const QUALITY_KEY = 'porthole.quality';
const QUALITY = Object.freeze({
  auto: Object.freeze({ label: 'Auto', kbps: 0 }),
  balanced: Object.freeze({ label: 'Balanced', kbps: 4000 }),
  low: Object.freeze({ label: 'Low bandwidth', kbps: 1000 }),
});

const quality = { preset: 'auto' };

function loadQuality() {
  try {
    const kept = localStorage.getItem(QUALITY_KEY);
    if (kept && Object.hasOwn(QUALITY, kept)) quality.preset = kept;
  } catch { /* storage refused: Auto */ }
}

function setQuality(preset) {
  if (!Object.hasOwn(QUALITY, preset)) throw new RangeError(`unknown quality preset: ${preset}`);
  quality.preset = preset;
  try {
    if (preset === 'auto') localStorage.removeItem(QUALITY_KEY);
    else localStorage.setItem(QUALITY_KEY, preset);
  } catch { /* not kept: this page uses it anyway */ }
  renderQuality();
  sendQuality();
  if (statsPanel.timer) updateStats();
}

function sendQuality() {
  return sendOn('input', { type: 'MaxBitrate', kbps: QUALITY[quality.preset].kbps });
}

function qualityLine() {
  const q = QUALITY[quality.preset];
  return q.kbps ? `quality ${q.label}: at most ${q.kbps} kbit/s` : `quality ${q.label}: no limit`;
}

function renderQuality() {
  if (!ui.qualityMenu) return;
  ui.qualityMenu.hidden = !link.rights;
  if (ui.qualityMenu.hidden) closeMenuOf(ui.qualityMenu);
  const q = QUALITY[quality.preset];
  ui.btnQuality.title = `Picture quality: ${q.label}${q.kbps ? ` (at most ${q.kbps / 1000} Mbit/s)` : ' (as the network allows)'}`;
  for (const item of ui.qualityList.querySelectorAll('[data-quality]')) {
    item.setAttribute('aria-checked', String(item.dataset.quality === quality.preset));
  }
}

function setupMonitorsAndQuality() {
  loadQuality();
  renderQuality();
  // A connection starts without a limit: only a limit needs saying.
  on('channel-open', (label) => {
    if (label === protocol.CHANNELS.INPUT && QUALITY[quality.preset].kbps) sendQuality();
  });
}

// ---- 18. public API and boot ----------------------------------------------

const api = {
  get state() { return session.state; },
  get pc() { return session.pc; },
  get video() { return ui.video; },
  get lastError() { return session.lastError; },
  get sessionUrl() { return session.resourceUrl; },
  // Asks the host to end this session (the signed DELETE that Leave sends) without closing
  // the connection here: what the host does with a session it has ended can be watched.
  endAtHost() {
    if (!session.resourceUrl || !session.paired) return Promise.resolve(null);
    const auth = session.paired.authorization('DELETE', new URL(session.resourceUrl).pathname, '');
    return fetch(session.resourceUrl, { method: 'DELETE', headers: { Authorization: auth }, cache: 'no-store' })
      .then((r) => r.status);
  },
  states: STATES,
  get rights() { return link.rights; },
  get clipboard() { return link.hostClipboard; },
  get notices() { return link.notices; },
  get cursor() {
    const c = link.cursor;
    return { x: c.x, y: c.y, visible: c.visible, shape: c.shape ? { ...c.shape } : null };
  },
  get channels() { return { ...link.channels }; },
  get monitors() { return link.monitors; },
  get quality() { return { preset: quality.preset, ...QUALITY[quality.preset] }; },
  setQuality,
  selectMonitor,
  get audio() { return soundState(); },
  setMuted,
  connect,
  disconnect,
  on,
  sendMessage,
  pasteText,
  pasteBytes,
  protocol,
};

window.porthole = api;

function boot() {
  setupControls();
  setupIdleToolbar();
  setupLifecycle();
  setupHostView();
  setupInput();
  setupClipboard();
  setupSound();
  setupMonitorsAndQuality();
  setState('idle');
  loadModule().catch(() => {}); // fetched while the page starts; errors show on connect
  connect();
}

boot();
