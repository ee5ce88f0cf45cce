// Porthole viewer: receives a shared X11 screen over WebRTC (WHEP) and shows it.
//
// Loaded as an ES module from index.html. No dependencies, no build step.
//
// Layout of this file (add new features as their own section and hook into
// the small event bus with `on(...)` rather than editing the core flow):
//   1. constants        5. WHEP signalling      9. controls (toolbar, form)
//   2. DOM              6. peer connection     10. page lifecycle
//   3. state & events   7. media               11. public API and boot
//   4. URL fragment     8. session lifecycle
//
// Events emitted on the bus (for later features: input capture, clipboard,
// data channels, audio, cursor overlay):
//   'state'       {state, prev}          after every state change
//   'peer'        RTCPeerConnection      created, before the offer (add data channels here)
//   'peer-closed' RTCPeerConnection      torn down
//   'track'       RTCTrackEvent          remote track received
//   'first-frame' {video}                first decoded video frame of a session
//
// The access code is never logged and never put in the query string.

// ---- 1. constants ---------------------------------------------------------

const WHEP_ENDPOINT = '/whep';
const ICE_GATHER_TIMEOUT_MS = 2000;
const CONNECT_TIMEOUT_MS = 30000;
const IDLE_HIDE_MS = 3000;
const MAX_ERROR_TEXT = 500;

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
  firstFrame: 'Waiting for the first frame…',
  dropped: 'Disconnected: the host stopped sharing or the network dropped',
  timeout: 'Disconnected: the media connection could not be established in time.',
  closed: 'Disconnected.',
  unreachable: 'Cannot reach the host',
  wrongCode: 'Wrong access code',
  clickToPlay: 'Click anywhere to start the video.',
  noWebRTC: 'This browser does not support WebRTC, so it cannot show the shared screen.',
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
  btnReconnect: $('btn-reconnect'),
  toolbar: $('toolbar'),
  status: $('status'),
  btnFullscreen: $('btn-fullscreen'),
  btnDisconnect: $('btn-disconnect'),
};

// ---- 3. state & events ----------------------------------------------------

const session = {
  state: 'idle',
  pc: null,
  code: null,          // access code (secret: never log it)
  iceServers: [],
  resourceUrl: null,   // WHEP session URL from the Location header
  generation: 0,       // bumped on every teardown; stale async work checks it
  firstFrame: false,
  needsGesture: false, // autoplay was blocked; waiting for a click
  pendingAudio: [],    // audio tracks that arrived before the video track
  connectTimer: 0,
  lastError: null,     // {state, message, status} or null
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

function authHeaders(code, extra = {}) {
  try {
    return new Headers({ ...extra, Authorization: `Bearer ${code}` });
  } catch {
    // Header values must be ISO-8859-1; such a code cannot be right.
    throw new ConnectError('unauthorized', MSG.wrongCode, null);
  }
}

async function whepOffer(code, sdp) {
  const headers = authHeaders(code, { 'Content-Type': 'application/sdp' });
  let res;
  try {
    res = await fetch(WHEP_ENDPOINT, { method: 'POST', headers, body: sdp, cache: 'no-store' });
  } catch {
    throw new ConnectError('unreachable', MSG.unreachable, null);
  }
  const body = await res.text().catch(() => '');
  if (res.status === 201 || res.status === 200) {
    return { sdp: body, resourceUrl: resolveLocation(res.headers.get('Location')) };
  }
  throw refusal(res, body);
}

function refusal(res, body) {
  const { status } = res;
  if (status === 401) return new ConnectError('unauthorized', MSG.wrongCode, status);
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

function whepDelete(url, code, keepalive) {
  if (!url || !code) return;
  let headers;
  try { headers = authHeaders(code); } catch { return; }
  fetch(url, { method: 'DELETE', headers, keepalive, cache: 'no-store' }).catch(() => {});
}

// ---- 6. peer connection ---------------------------------------------------

function isCurrent(gen, pc) {
  return gen === session.generation && (pc === undefined || pc === session.pc);
}

function createPeer(gen) {
  const pc = new RTCPeerConnection({ iceServers: session.iceServers });
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
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
      setState('connected');
      if (session.firstFrame && !session.needsGesture) hideOverlay();
      else if (!session.firstFrame) showOverlay({ text: MSG.firstFrame, busy: true });
      break;
    case 'disconnected':
      setState('reconnecting');
      break;
    case 'failed':
    case 'closed':
      drop(MSG.dropped);
      break;
    default: // 'new', 'connecting', 'checking': nothing to do
      break;
  }
}

// ---- 7. media -------------------------------------------------------------

function onTrack(ev) {
  const { track } = ev;
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
  playVideo();
}

function attachAudio(track) {
  const media = ui.video.srcObject;
  if (media instanceof MediaStream) {
    if (!media.getTrackById(track.id)) media.addTrack(track);
  } else {
    session.pendingAudio.push(track);
  }
}

function playVideo() {
  ui.video.muted = true; // required for autoplay; an audio toggle can unmute later
  const played = ui.video.play();
  if (!played || typeof played.catch !== 'function') return;
  played.then(() => { session.needsGesture = false; }).catch((err) => {
    if (err && err.name === 'AbortError') return; // source replaced meanwhile
    console.warn('[porthole] video.play() failed:', err && err.name);
    if (err && err.name === 'NotAllowedError') waitForGesture();
  });
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
  session.connectTimer = setTimeout(() => {
    if (isCurrent(gen) && session.state === 'connecting') drop(MSG.timeout);
  }, CONNECT_TIMEOUT_MS);
  try {
    const pc = createPeer(gen);
    session.pc = pc;
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc, ICE_GATHER_TIMEOUT_MS);
    if (!isCurrent(gen, pc)) return;
    const answer = await whepOffer(code, pc.localDescription.sdp);
    if (!isCurrent(gen, pc)) {
      whepDelete(answer.resourceUrl, code, false); // abandoned while in flight
      return;
    }
    session.resourceUrl = answer.resourceUrl;
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
  if (e.state === 'unauthorized') {
    const wrong = session.code;
    session.code = null;
    writeFragmentCode(null); // don't retry a wrong code on reload
    showCodeForm(e.message, true, wrong);
  } else {
    showOverlay({ text: e.message, error: true, reconnect: true });
  }
}

// The connection was lost (ICE failure, host closed the session, timeout).
function drop(message) {
  endSession({ notifyHost: true });
  recordError('dropped', message);
  setState('dropped');
  showOverlay({ text: message, error: true, reconnect: true });
}

// User-initiated disconnect: tell the host, close everything.
function disconnect() {
  if (!session.pc && !session.resourceUrl && !ACTIVE_STATES.has(session.state)) return;
  endSession({ notifyHost: true, keepalive: true });
  setState('closed');
  showOverlay({ text: MSG.closed, reconnect: true });
}

// Tear down the current session (if any) and invalidate in-flight work.
function endSession({ notifyHost = true, keepalive = false } = {}) {
  session.generation += 1;
  clearTimeout(session.connectTimer);
  const { pc, resourceUrl, code } = session;
  session.pc = null;
  session.resourceUrl = null;
  session.firstFrame = false;
  if (notifyHost && resourceUrl) whepDelete(resourceUrl, code, keepalive);
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

function showCodeForm(text, isError, prefill) {
  showOverlay({ text, error: isError, form: true });
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
  document.addEventListener('fullscreenchange', syncFullscreenButton);
  document.addEventListener('webkitfullscreenchange', syncFullscreenButton);
  syncFullscreenButton();
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
    whepDelete(session.resourceUrl, session.code, true);
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

// ---- 11. public API and boot ----------------------------------------------

const api = {
  get state() { return session.state; },
  get pc() { return session.pc; },
  get video() { return ui.video; },
  get lastError() { return session.lastError; },
  get sessionUrl() { return session.resourceUrl; },
  states: STATES,
  connect,
  disconnect,
  on,
};

window.porthole = api;

function boot() {
  setupControls();
  setupIdleToolbar();
  setupLifecycle();
  setState('idle');
  connect();
}

boot();
