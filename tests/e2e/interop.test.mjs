// Interop (issue 14): two independent WebRTC stacks as WHEP clients of a real `porthole
// share` — aiortc (PyPI; tests/e2e/aiortc_peer.py) and GStreamer's webrtcbin (Debian;
// tests/e2e/gst_peer.py) — offering video only and video + audio, against a share with and
// without sound; aiortc with Porthole's data channels too; and an offer the share cannot
// serve. Neither can pair (that is the page's and the native client's), so they show the
// code as a bearer token, which the shares here allow (`--allow-whep-token`, view only).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  withScope, startXvfb, startPattern, startPulse, playTone, startShareWithEnv, startProcess,
} from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCREEN = { width: 320, height: 240 };
const TEST_TIMEOUT = 90_000;
// scripts/install-deps.sh test makes it.
const AIORTC_PYTHON = process.env.PORTHOLE_AIORTC_PYTHON
  || path.join(process.env.PORTHOLE_TEST_CACHE || '/var/cache/porthole-test', 'aiortc-venv', 'bin', 'python');

async function setup(s, { sound }) {
  assert.ok(existsSync(AIORTC_PYTHON), `aiortc's Python at ${AIORTC_PYTHON} (scripts/install-deps.sh test)`);
  const pa = sound ? s.add(await startPulse()) : null;
  if (pa) s.add(await playTone(pa, 440));
  const x = s.add(await startXvfb(SCREEN));
  s.add(await startPattern(x.display));
  const share = s.add(await startShareWithEnv(pa?.env ?? {}, {
    display: x.display, args: ['--allow-whep-token', '--allow-control', ...(sound ? [] : ['--audio', 'none'])],
  }));
  return share;
}

/** aiortc's player against `share`: resolves to its JSON summary. */
async function play(s, share, { audio = false, channels = false, codecs = null, seconds = 3 } = {}) {
  const args = [path.join(here, 'aiortc_peer.py'), 'play', '--url', `${share.origin}/whep`,
    '--bearer', share.code, '--seconds', String(seconds)];
  if (audio) args.push('--audio');
  if (channels) args.push('--channels');
  if (codecs) args.push('--codecs', codecs);
  const proc = s.add(startProcess('aiortc', AIORTC_PYTHON, args));
  return JSON.parse((await proc.waitLine(/^\{.*$/, 40000, 'aiortc\'s summary'))[0]);
}

for (const sound of [false, true]) {
  for (const audio of [false, true]) {
    test(`aiortc offering video${audio ? ' + audio' : ' only'} plays a share ${sound ? 'with' : 'without'} sound; ` +
      'its data channels open', { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
      const share = await setup(s, { sound });
      const r = await play(s, share, { audio, channels: true });
      t.diagnostic(JSON.stringify(r));
      assert.equal(r.status, 201, r.text);
      assert.equal(r.refused_answer, undefined, 'aiortc takes the answer');
      assert.equal(r.state, 'connected');
      assert.ok(r.frames >= 20, `video frames: ${r.frames}`);
      assert.deepEqual([r.width, r.height], [SCREEN.width, SCREEN.height]);
      if (sound && audio) assert.ok(r.audio_frames >= 50, `audio frames: ${r.audio_frames}`);
      else assert.equal(r.audio_frames, 0, 'no audio is sent');
      assert.deepEqual(r.channels_open, ['clipboard', 'input', 'pointer']);
      assert.ok(r.messages >= 1, 'the share\'s first message (the rights) arrived');
      const st = await share.stats();
      assert.equal(st.input_forwarded, 0);
    }));
  }
}

/** GStreamer's player against `share`: resolves to its JSON summary. */
async function gstPlay(s, share, { audio = false, seconds = 3 } = {}) {
  const args = [path.join(here, 'gst_peer.py'), '--url', `${share.origin}/whep`, '--bearer', share.code,
    '--seconds', String(seconds)];
  if (audio) args.push('--audio');
  const proc = s.add(startProcess('gst', '/usr/bin/python3', args));
  return JSON.parse((await proc.waitLine(/^\{.*$/, 40000, 'GStreamer\'s summary'))[0]);
}

for (const sound of [false, true]) {
  for (const audio of [false, true]) {
    test(`GStreamer webrtcbin offering video${audio ? ' + audio' : ' only'} plays a share ${sound ? 'with' : 'without'} sound`,
      { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
        const share = await setup(s, { sound });
        const r = await gstPlay(s, share, { audio });
        t.diagnostic(JSON.stringify(r));
        assert.equal(r.status, 201, r.text);
        assert.equal(r.refused_answer, undefined, 'webrtcbin takes the answer');
        assert.equal(r.state, 'connected');
        assert.ok(r.frames >= 20, `video frames decoded: ${r.frames}`);
        assert.deepEqual([r.width, r.height], [SCREEN.width, SCREEN.height]);
        if (sound && audio) assert.ok(r.audio_buffers >= 50, `audio packets: ${r.audio_buffers}`);
        else assert.equal(r.audio_buffers, 0, 'no audio is sent');
      }));
  }
}

test('an offer without H.264 (aiortc offering VP8 only) gets 400 naming what it offered',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const share = await setup(s, { sound: false });
    const r = await play(s, share, { codecs: 'vp8', seconds: 0.1 });
    t.diagnostic(JSON.stringify(r));
    assert.equal(r.status, 400);
    assert.match(r.text, /Constrained Baseline in packetization-mode 1/);
    assert.match(r.text, /it offers VP8/);
    assert.match(r.text, /OpenH264/);
    assert.equal((await share.stats()).peer_connections_created, 0);
  }));
