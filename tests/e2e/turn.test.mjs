// TURN, end to end, with a real coturn: `porthole share --turn URL --turn-user U
// --turn-password P` gathers a relay candidate, and when the viewer has no other way to
// reach it, the video flows through the TURN server. Three fresh network namespaces
// (lib.mjs: startTurnNet): the share in "a" (10.214.1.2), the viewer (`porthole record`)
// in "b" (10.214.2.2), and "t" between them on both links (10.214.1.1 and 10.214.2.1) with
// IP forwarding off, so nothing goes from a to b or back. In t: coturn (`turnserver`,
// long-term credentials, listening on both of t's addresses, relaying from 10.214.1.1) and
// a small TCP relay that carries the signalling (the page, WHEP) from b to the share.
// The first test records through the relay and checks the file (H.264, the screen's
// colours) and coturn's own account of it (the allocation, the permission for the viewer,
// the packets it sent the viewer); the second is the control: the same network without
// --turn gets no media at all, so the first can only have worked through TURN.
// The third: every UDP packet between t and b dropped (nftables), a headless Chromium in b
// plays the share's page through coturn over TCP (`ice=` in the link's fragment), the share
// having no TURN of its own.
// Nothing is sent beyond these namespaces. Needs root (or CAP_SYS_ADMIN), iproute2,
// util-linux (unshare, nsenter), coturn and ffmpeg (ffprobe).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import {
  withScope, recordingsDir, startXvfb, startPattern, pollUntil, runTool, randomCode, httpFrom, tcpConnectFrom, startShareIn, startTurnNet, startTurnServer,
  startTcpProxy, whepAnswerFrom, sdpCandidates, parseTurnLog, startRecordIn, TURN_NET, quadrantCentres,
  compareColours, DEFAULT_BLOCKS, frameAt, sampleFrame, launchBrowser, openViewer, countFrames,
  selectedCandidatePair,
} from './lib.mjs';

const SCREEN = { width: 640, height: 480 };
const TEST_TIMEOUT = 60_000;
const TURN_PORT = 3478;
const TURN_TLS_PORT = 5349;
const RELAY_PORTS = { minPort: 49152, maxPort: 49252 };
const RECORD_SECONDS = 3;

/**
 * The three namespaces, coturn in t, Xvfb + test pattern, the share in a (with `turnArgs`)
 * and the signalling relay in t; checks that b reaches the share only through that relay.
 * Returns {net, turn, user, password, share, origin, dir}.
 */
async function setup(t, s, { useTurn, tls = null }) {
  const net = s.add(await startTurnNet());
  assert.equal(net.forwarding, '0', 'IP forwarding is off in t');
  const user = `u${randomCode().slice(0, 6)}`;
  const password = randomCode();
  const turn = s.add(await startTurnServer(net.t, {
    listen: [TURN_NET.tA, TURN_NET.tB], relay: TURN_NET.tA, port: TURN_PORT, user, password, ...RELAY_PORTS, tls,
  }));
  const x = s.add(await startXvfb(SCREEN));
  s.add(await startPattern(x.display));
  const turnArgs = useTurn
    ? ['--turn', `turn:${TURN_NET.tA}:${TURN_PORT}?transport=udp`, '--turn-user', user, '--turn-password', password]
    : [];
  const share = s.add(await startShareIn(net.a, { display: x.display, args: ['--audio', 'none', '--no-announce', ...turnArgs] }));
  assert.equal(share.host, TURN_NET.a, `the share's viewer URL uses a's address: ${share.url}`);
  const proxy = s.add(await startTcpProxy(net.t, TURN_NET.tB, `${TURN_NET.a}:${share.port}`));
  const origin = `http://${TURN_NET.tB}:${proxy.port}`;

  // No direct path from b to a; the relay in t carries the signalling.
  const direct = await tcpConnectFrom(net.b, TURN_NET.a, share.port, { timeoutMs: 2000 });
  assert.ok(direct.error, `b cannot reach the share at ${TURN_NET.a}:${share.port} directly: ${JSON.stringify(direct)}`);
  assert.deepEqual(await httpFrom(net.b, `${origin}/`), { status: 200 }, `b gets the page through ${origin}`);
  t.diagnostic(`b -> a directly: ${direct.error}; b -> ${origin} (relayed by t) -> ${TURN_NET.a}:${share.port}: 200`);
  return { net, turn, user, password, share, origin, dir: recordingsDir(s, 'porthole-turn-rec-') };
}

/** What the share answers to a hand-made offer from b: {whep, candidates}, with a diagnostic. */
async function answerFromB(t, env) {
  const whep = await whepAnswerFrom(env.net.b, env.origin, env.share.code);
  assert.equal(whep.status, 201, `WHEP from b through the relay: ${JSON.stringify({ ...whep, answer: undefined })}`);
  assert.equal(typeof whep.answer, 'string');
  const candidates = sdpCandidates(whep.answer);
  t.diagnostic(`the share's answer (${whep.ms} ms) has ${candidates.length} candidate lines: ` +
    candidates.map((c) => c.line.replace(/^a=candidate:/, '')).join(' | '));
  return { whep, candidates };
}

/** ffprobe -count_packets -show_streams -show_format, parsed. */
async function probe(file) {
  const r = await runTool('ffprobe', ['-v', 'error', '-count_packets', '-show_streams', '-show_format',
    '-of', 'json', file], { timeoutMs: 20000 });
  assert.equal(r.code, 0, `ffprobe ${file} exits 0 (code=${r.code} signal=${r.signal}); stderr:\n${r.stderr}`);
  return JSON.parse(r.stdout.toString());
}

/** The recorder's exit, waiting up to timeoutMs (then SIGINT, which makes it finish). */
async function recorderExit(rec, timeoutMs) {
  const started = Date.now();
  const r = await Promise.race([rec.exited, new Promise((res) => setTimeout(() => res(null), timeoutMs))]);
  if (r) return { ...r, ms: Date.now() - started, stopped: false };
  const k = await rec.stop({ signal: 'SIGINT', graceMs: 5000 });
  return { code: k.code, signal: k.signal, killed: k.killed, ms: Date.now() - started, stopped: true };
}

/**
 * The last n lines of a porthole stderr, without the per-packet noise of its loopback
 * socket ("Failed to write packet ... from 127.0.0.1:...: Invalid argument", every check).
 */
const tail = (text, n = 12) => text.trim().split('\n')
  .filter((l) => !/Failed to write packet to \S+ from 127\.0\.0\.1:|local_srtp_context is not set/.test(l))
  .slice(-n).join('\n');

test('with --turn, a viewer with no direct path records the screen through coturn',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const env = await setup(t, s, { useTurn: true });
    const { net, turn, user, share, origin, dir } = env;

    // The answer offers a relay candidate on coturn's relay address.
    const { candidates } = await answerFromB(t, env);
    const relay = candidates.filter((c) => c.type === 'relay');
    assert.ok(relay.length > 0, `the answer of a share started with --turn has a "typ relay" candidate; the share's log:\n${tail(env.share.stderrText(), 30)}`);
    for (const c of relay) {
      assert.equal(c.address, TURN_NET.tA, `a relay candidate is on coturn's relay address: ${c.line}`);
      assert.ok(c.port >= RELAY_PORTS.minPort && c.port <= RELAY_PORTS.maxPort,
        `a relay candidate's port is in coturn's relay range ${RELAY_PORTS.minPort}-${RELAY_PORTS.maxPort}: ${c.line}`);
    }

    // The recording, from b.
    const file = path.join(dir, 'turn.mp4');
    const rec = s.add(startRecordIn(net.b, `${origin}/#code=${share.code}`, file, ['--duration', String(RECORD_SECONDS)]));
    const exit = await recorderExit(rec, 30000);
    t.diagnostic(`recorder in b: ${JSON.stringify(exit)}; stderr tail:\n${tail(rec.stderrText(), 4)}`);
    assert.deepEqual({ code: exit.code, signal: exit.signal, stopped: exit.stopped }, { code: 0, signal: null, stopped: false },
      `porthole record --duration ${RECORD_SECONDS} in b finishes by itself and exits 0; stderr:\n${tail(rec.stderrText(), 40)}`);
    const summary = rec.summary();
    assert.ok(summary, `the recorder prints its "recorded ..." summary:\n${tail(rec.stderrText(), 40)}`);
    t.diagnostic(`summary: ${JSON.stringify(summary)}`);
    assert.ok(summary.videoFrames > 0, `video frames were recorded: ${JSON.stringify(summary)}`);

    const info = await probe(file);
    const video = info.streams.filter((st) => st.codec_type === 'video');
    assert.equal(video.length, 1, `one video stream: ${JSON.stringify(info.streams.map((st) => st.codec_name))}`);
    const [v] = video;
    t.diagnostic(`ffprobe: ${v.codec_name} ${v.width}x${v.height}, ${v.nb_read_packets} packets, duration ${info.format.duration} s`);
    assert.equal(v.codec_name, 'h264');
    assert.deepEqual([v.width, v.height], [SCREEN.width, SCREEN.height], 'the screen size');
    assert.equal(Number(v.nb_read_packets), summary.videoFrames, 'the file holds the frames the summary counts');
    const points = quadrantCentres(SCREEN.width, SCREEN.height);
    const cmp = compareColours(points, sampleFrame(await frameAt(file, 1, SCREEN), points), DEFAULT_BLOCKS, 40);
    t.diagnostic(`frame at 1 s:\n${cmp.report}`);
    assert.ok(cmp.ok, `the recording shows the test pattern's quadrants:\n${cmp.report}`);

    // coturn's side: an allocation for our user with a permission for the viewer, and the
    // packets it relayed to it. The per-peer counts are printed when the allocation goes
    // (the share releases it when the viewer leaves; coturn closes it a second later).
    let sessions;
    const viewerSession = () => [...(sessions = parseTurnLog(turn.lines)).values()].find((x) => x.peers.includes(TURN_NET.b));
    try {
      await pollUntil(() => viewerSession()?.peerUsage ?? null, (u) => !!u,
        { timeoutMs: 20000, intervalMs: 200, what: "coturn's usage figures for the allocation with the viewer as its peer" });
    } catch (err) {
      assert.fail(`${err.message}\ncoturn sessions: ${JSON.stringify([...parseTurnLog(turn.lines).values()].map((x) => ({ ...x, lines: x.lines.length })))}`);
    }
    const vs = viewerSession();
    for (const x of sessions.values()) {
      t.diagnostic(`coturn session ${x.id}: user ${x.user} allocated=${x.allocated} peers=${JSON.stringify(x.peers)} ` +
        `permissions=${x.permissions} channelBinds=${x.channelBinds} refused(403)=${x.forbidden} released=${x.refreshedToZero} ` +
        `usage=${JSON.stringify(x.usage)} peerUsage=${JSON.stringify(x.peerUsage)} closed=${x.closed}`);
    }
    assert.ok(vs.allocated, `coturn allocated a relay for the share: ${vs.lines.join('\n')}`);
    assert.equal(vs.user, user, 'with the --turn-user credentials');
    assert.ok(vs.permissions > 0, `coturn granted a permission (CREATE_PERMISSION success) for the viewer ${TURN_NET.b}:\n${vs.lines.slice(0, 20).join('\n')}`);
    assert.ok(vs.peerUsage.sp >= summary.videoFrames,
      `coturn sent the viewer at least as many packets as frames were recorded (${summary.videoFrames}): ${JSON.stringify(vs.peerUsage)}`);
    assert.ok(vs.peerUsage.rp > 0, `coturn relayed packets from the viewer to the share: ${JSON.stringify(vs.peerUsage)}`);
    t.diagnostic(`through TURN: coturn sent the viewer ${vs.peerUsage.sp} packets (${vs.peerUsage.sb} bytes) and relayed ` +
      `${vs.peerUsage.rp} (${vs.peerUsage.rb} bytes) back; ${summary.videoFrames} frames recorded`);

    // Neither end offers the other its loopback addresses: no permission asked of coturn
    // for 127.0.0.1 (it refuses them: 403 Forbidden IP), no checks from 127.0.0.1 to a
    // LAN address (EINVAL).
    const logs = { share: env.share.stderrText(), recorder: rec.stderrText() };
    for (const [who, text] of Object.entries(logs)) {
      assert.doesNotMatch(text, /Forbidden IP|permission request failed/, `${who} asked coturn for a loopback peer:\n${tail(text, 20)}`);
      assert.doesNotMatch(text, /from 127\.0\.0\.1:\d+: Invalid argument/, `${who} checked a LAN address from loopback:\n${tail(text, 20)}`);
    }
    assert.ok(!vs.lines.some((l) => /peer 127\.0\.0\.1/.test(l)), 'coturn saw no loopback peer');
  }));

test('control: the same network without --turn gets no media (there is no direct path)',
  { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
    const env = await setup(t, s, { useTurn: false });
    const { net, turn, share, origin, dir } = env;

    const { candidates } = await answerFromB(t, env);
    assert.ok(candidates.length > 0, 'the answer has candidates');
    assert.deepEqual(candidates.filter((c) => c.type === 'relay'), [], 'no relay candidate without --turn');

    // The recorder connects (signalling works) but no media can arrive: wait until the share
    // gives the viewer up (its ICE fails after ~10 s) or 25 s pass, then stop the recorder.
    const file = path.join(dir, 'none.mp4');
    const rec = s.add(startRecordIn(net.b, `${origin}/#code=${share.code}`, file, ['--duration', String(RECORD_SECONDS)]));
    const started = Date.now();
    await pollUntil(() => rec.exitInfo !== null || /viewer left/.test(share.stderrText()), (v) => v,
      { timeoutMs: 25000, intervalMs: 200, what: 'the recorder to give up or the share to drop it' }).catch(() => {});
    const waitedMs = Date.now() - started;
    const exit = await recorderExit(rec, 0);
    t.diagnostic(`after ${waitedMs} ms: recorder ${JSON.stringify(exit)}; stderr tail:\n${tail(rec.stderrText(), 4)}`);
    assert.ok(exit.code !== 0 && exit.code !== null, `the recorder fails without a relay: ${JSON.stringify(exit)}\n${tail(rec.stderrText(), 40)}`);
    assert.equal(rec.summary(), null, `no "recorded ..." summary:\n${tail(rec.stderrText(), 40)}`);
    if (fs.existsSync(file)) {
      const info = await probe(file).catch(() => null);
      const packets = info?.streams?.filter((st) => st.codec_type === 'video').map((st) => Number(st.nb_read_packets)) ?? [];
      assert.ok(packets.every((n) => !(n > 0)), `no video frames in ${file}: ${JSON.stringify(packets)}`);
    }
    const allocated = [...parseTurnLog(turn.lines).values()].filter((x) => x.allocated);
    assert.deepEqual(allocated.map((x) => x.id), [], 'nobody used coturn');
    t.diagnostic(`without --turn: ${candidates.filter((c) => c.component === 1).map((c) => `${c.address}:${c.port} ${c.type}`).join(', ')} ` +
      `offered; no media in ${waitedMs} ms`);
  }));

/** Drops every UDP packet between t and b (nftables in t): b reaches t by TCP only. */
async function blockUdpToB(net) {
  const rules = [
    'add table inet porthole_block',
    'add chain inet porthole_block in { type filter hook input priority 0 ; }',
    'add chain inet porthole_block out { type filter hook output priority 0 ; }',
    'add rule inet porthole_block in iifname "tb" meta l4proto udp counter drop',
    'add rule inet porthole_block out oifname "tb" meta l4proto udp counter drop',
  ];
  for (const r of rules) await net.t.runOk('nft', r.split(' '));
}

/** The selected pair's local candidate in the page: {candidateType, protocol, relayProtocol}. */
async function selectedLocalCandidate(page) {
  const local = (await selectedCandidatePair(page))?.local;
  return local ? { candidateType: local.candidateType, protocol: local.protocol, relayProtocol: local.relayProtocol } : null;
}

/**
 * A test CA and a certificate it signs for `ip` (openssl), in `dir`; and a HOME whose NSS
 * database (certutil) trusts that CA, for Chromium. Returns {cert, key, home}.
 */
async function turnCertificate(dir, ip) {
  const f = (name) => path.join(dir, name);
  const steps = [
    ['openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca-key.pem'), '-out', f('ca.pem'),
      '-days', '1', '-subj', '/CN=porthole test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign']],
    ['openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('key.pem'), '-out', f('req.pem'),
      '-subj', '/CN=porthole-turn-test']],
    ['openssl', ['x509', '-req', '-in', f('req.pem'), '-CA', f('ca.pem'), '-CAkey', f('ca-key.pem'),
      '-CAcreateserial', '-out', f('cert.pem'), '-days', '1', '-extfile', f('ext.cnf')]],
  ];
  fs.writeFileSync(f('ext.cnf'), `subjectAltName=IP:${ip}\nextendedKeyUsage=serverAuth\n`);
  const home = f('home');
  const db = path.join(home, '.pki', 'nssdb');
  fs.mkdirSync(db, { recursive: true });
  steps.push(['certutil', ['-d', `sql:${db}`, '-N', '--empty-password']]);
  steps.push(['certutil', ['-d', `sql:${db}`, '-A', '-t', 'C,,', '-n', 'porthole-test-ca', '-i', f('ca.pem')]]);
  for (const [cmd, args] of steps) {
    const r = await runTool(cmd, args, { timeoutMs: 20000 });
    assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  }
  return { cert: f('cert.pem'), key: f('key.pem'), home };
}

for (const transport of ['tcp', 'tls']) {
  test(`UDP blocked between the viewer and the network: the browser plays through TURN over ${transport.toUpperCase()}`,
    { timeout: TEST_TIMEOUT }, (t) => withScope(t, async (s) => {
      // TLS: a certificate for t's address from a test CA that this Chromium (only) trusts.
      const tls = transport === 'tls'
        ? { ...(await turnCertificate(recordingsDir(s, 'porthole-turn-tls-'), TURN_NET.tB)), port: TURN_TLS_PORT }
        : null;
      // The share needs no TURN of its own: coturn relays from its side of the block.
      const env = await setup(t, s, { useTurn: false, tls });
      const { net, user, password, share, origin } = env;
      await blockUdpToB(net);
      // Chromium offers its default route's address (a LAN origin gets no permission that
      // would list every interface); t forwards nothing, so this adds no path.
      await net.b.runOk('ip', ['route', 'add', 'default', 'via', TURN_NET.tB]);
      const udp = await net.b.run(process.execPath, ['-e', `
        const s = require('node:dgram').createSocket('udp4');
        s.send('x', ${TURN_PORT}, '${TURN_NET.tB}', () => s.close());`]);
      const counters = (await net.t.runOk('nft', ['list', 'table', 'inet', 'porthole_block'])).toString();
      t.diagnostic(`UDP from b dropped in t: ${counters.match(/iifname "tb".*counter packets (\d+)/)?.[1]} packets (probe exit ${udp.code})`);
      assert.match(counters, /iifname "tb" meta l4proto udp counter packets [1-9]/, 'the block drops UDP from b');

      const browser = s.add(await launchBrowser({ viewport: SCREEN, node: net.b, home: tls?.home }));
      const urls = transport === 'tls'
        ? `turns:${TURN_NET.tB}:${TURN_TLS_PORT}?transport=tcp`
        : `turn:${TURN_NET.tB}:${TURN_PORT}?transport=tcp`;
      const ice = JSON.stringify({ urls, username: user, credential: password });
      const url = `${origin}/#code=${share.code}&ice=${encodeURIComponent(ice)}`;
      const page = s.add(await openViewer(browser, url, { timeoutMs: 30000 }));
      const frames = await countFrames(page, 1000);
      const local = await selectedLocalCandidate(page);
      t.diagnostic(`the page in b (${urls}) shows ${frames} frames a second; its selected local candidate: ${JSON.stringify(local)}`);
      assert.ok(frames >= 10, `frames through TURN over ${transport}: ${frames}`);
      assert.deepEqual(local, { candidateType: 'relay', protocol: 'udp', relayProtocol: transport },
        `the media goes through a relay that the page reaches by ${transport.toUpperCase()}`);
    }));
}
