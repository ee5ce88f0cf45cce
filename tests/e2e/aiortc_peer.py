#!/usr/bin/env python3
"""aiortc (an independent WebRTC stack) against a Porthole share: a relaying man in the
middle (tests/e2e/pairing.test.mjs) and a WHEP player (tests/e2e/interop.test.mjs).

    aiortc_peer.py relay --share http://127.0.0.1:PORT [--listen 127.0.0.1:0] [--offer own|viewer]
        prints `mitm: http://HOST:PORT` once listening, then one JSON line per event.
    aiortc_peer.py play --url http://HOST:PORT/whep --bearer CODE [--seconds 4] [--audio]
                        [--channels] [--codecs vp8,...]
        a bearer-token WHEP player (what a third-party player does): prints JSON
        {"status", "frames", "audio_frames", "width", "height", "channels_open", ...}.

What the relay does is what an attacker on the path does with plain HTTP signaling:
- every GET (the viewer page, its scripts, /pake.wasm) and POST /pake, DELETE and
  /api/stats go to the share unchanged: the viewer runs the share's real page from here;
- POST /whep: it makes its *own* offer (its own DTLS certificate) and sends it to the
  share with the viewer's request headers (Authorization too) copied onto it; it answers
  the viewer with its own answer and certificate, carrying over the share's response
  headers (Location, and any Porthole-Answer-MAC), and relays the share's video to it.
  If the share refuses, it answers the viewer anyway, with a picture of its own.
  With `--offer viewer` it passes the viewer's own offer on instead (the share answers it),
  and still answers the viewer itself.

Against a share that takes the code in a header (bearer), this relays the share's video
to the viewer: the relay works. Against paired viewers, the share refuses the copied
offer (its MAC covers the viewer's offer) and the viewer refuses the relay's answer.
"""

import argparse
import asyncio
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aioice.ice
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription, VideoStreamTrack
from aiortc.contrib.media import MediaRelay
from whep_post import post_offer

# The tests run in a network namespace with loopback only; aioice leaves 127.0.0.1 out.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []

HOP_HEADERS = {"host", "content-length", "connection", "keep-alive", "transfer-encoding",
               "origin", "referer", "accept-encoding"}


def event(**fields):
    print(json.dumps(fields), flush=True)


async def gathered(pc):
    """Waits for ICE gathering (aiortc gathers during setLocalDescription)."""
    while pc.iceGatheringState != "complete":
        await asyncio.sleep(0.05)


class Relay:
    def __init__(self, share, loop, offer_mode):
        self.share = share.rstrip("/")
        self.offer_mode = offer_mode
        self.loop = loop
        self.relay = MediaRelay()
        self.pcs = []

    def forward(self, method, path, headers, body):
        """One request to the share, as the viewer made it. Returns (status, headers, body)."""
        req = urllib.request.Request(self.share + path, data=body if body else None, method=method)
        for k, v in headers.items():
            if k.lower() not in HOP_HEADERS:
                req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=150) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    async def whep(self, headers, offer):
        """The relay's own offer to the share (viewer's headers copied), its own answer to
        the viewer. Returns (status, headers, answer)."""
        up = RTCPeerConnection()
        self.pcs.append(up)
        up.addTransceiver("video", direction="recvonly")
        track = asyncio.get_running_loop().create_future()

        @up.on("track")
        def on_track(t):
            if t.kind == "video" and not track.done():
                track.set_result(t)

        await up.setLocalDescription(await up.createOffer())
        await gathered(up)
        mine = up.localDescription.sdp if self.offer_mode == "own" else offer
        status, share_headers, body = await asyncio.to_thread(
            self.forward, "POST", "/whep", headers, mine.encode())
        text = body.decode(errors="replace")
        event(what="share-answered", status=status, text=text[:300] if status != 201 else "")
        source = None
        if status == 201 and self.offer_mode == "own":
            await up.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
            try:
                source = self.relay.subscribe(await asyncio.wait_for(track, 10))
            except asyncio.TimeoutError:
                event(what="no-track")
        down = RTCPeerConnection()
        self.pcs.append(down)

        @down.on("connectionstatechange")
        async def on_state():
            event(what="viewer-connection", state=down.connectionState)

        await down.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        # The share's video, or (refused) a picture of the relay's own.
        picture = source or VideoStreamTrack()
        for t in down.getTransceivers():
            if t.kind == "video":
                t.sender.replaceTrack(picture)
                t.direction = "sendonly"
        await down.setLocalDescription(await down.createAnswer())
        await gathered(down)
        keep = {k: v for k, v in share_headers.items()
                if k.lower() in ("location", "porthole-answer-mac")}
        if "Location" not in keep and "location" not in keep:
            keep["Location"] = "/whep/relayed"
        event(what="answered-viewer", relayed=source is not None)
        return 201, keep, down.localDescription.sdp.encode()


def handler_for(relay):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def reply(self, status, headers, body):
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() not in HOP_HEADERS:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def proxy(self):
            body = self.body()
            headers = dict(self.headers.items())
            if self.command == "POST" and self.path == "/whep":
                event(what="offer", headers={k: v for k, v in headers.items()
                                             if k.lower() in ("authorization", "content-type")})
                fut = asyncio.run_coroutine_threadsafe(
                    relay.whep(headers, body.decode()), relay.loop)
                try:
                    status, out_headers, out = fut.result(timeout=60)
                except Exception as e:  # noqa: BLE001 - reported to the test
                    event(what="error", error=repr(e))
                    self.reply(500, {}, repr(e).encode())
                    return
                out_headers["Content-Type"] = "application/sdp"
                self.reply(status, out_headers, out)
                return
            if self.path == "/pake":
                event(what="pairing-relayed")
            status, out_headers, out = relay.forward(self.command, self.path, headers, body)
            self.reply(status, out_headers, out)

        do_GET = do_POST = do_DELETE = do_PATCH = do_OPTIONS = proxy

    return Handler


def run_relay(args):
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    relay = Relay(args.share, loop, args.offer)
    host, port = args.listen.rsplit(":", 1)
    httpd = ThreadingHTTPServer((host, int(port)), handler_for(relay))
    print(f"mitm: http://{host}:{httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


async def play(args):
    """A WHEP player: offers to receive video (and audio, with --audio; only `--codecs`),
    with Porthole's three data channels when asked; prints what arrived as one JSON line."""
    pc = RTCPeerConnection()
    video = pc.addTransceiver("video", direction="recvonly")
    if args.codecs:
        wanted = {c.lower() for c in args.codecs.split(",")}
        caps = RTCRtpReceiver.getCapabilities("video").codecs
        video.setCodecPreferences([c for c in caps if c.mimeType.split("/")[1].lower() in wanted])
    if args.audio:
        pc.addTransceiver("audio", direction="recvonly")
    got = {"video": 0, "audio": 0, "width": 0, "height": 0, "open": [], "messages": 0}
    if args.channels:
        # Porthole's channels (docs/protocol.md): pointer unordered without retransmits.
        for label, options in (("pointer", {"ordered": False, "maxRetransmits": 0}),
                               ("input", {}), ("clipboard", {})):
            channel = pc.createDataChannel(label, **options)
            channel.on("open", lambda label=label: got["open"].append(label))
            channel.on("message", lambda _m: got.__setitem__("messages", got["messages"] + 1))

    @pc.on("track")
    def on_track(track):
        async def read():
            while True:
                try:
                    frame = await track.recv()
                except Exception:  # noqa: BLE001 - the track ended
                    return
                got[track.kind] += 1
                if track.kind == "video":
                    got["width"], got["height"] = frame.width, frame.height
        asyncio.ensure_future(read())

    await pc.setLocalDescription(await pc.createOffer())
    await gathered(pc)
    status, answer = await asyncio.to_thread(post_offer, args.url, pc.localDescription.sdp, args.bearer)
    if status != 201:
        print(json.dumps({"status": status, "text": answer[:500], "frames": 0}), flush=True)
        await pc.close()
        return
    out = {"status": status}
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    except Exception as e:  # noqa: BLE001 - reported: a strict client refusing the answer
        out["refused_answer"] = repr(e)
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.1)
    out.update(frames=got["video"], audio_frames=got["audio"], width=got["width"],
               height=got["height"], channels_open=sorted(got["open"]), messages=got["messages"],
               state=pc.connectionState)
    print(json.dumps(out), flush=True)
    await pc.close()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("relay")
    r.add_argument("--share", required=True)
    r.add_argument("--listen", default="127.0.0.1:0")
    r.add_argument("--offer", choices=["own", "viewer"], default="own")
    pl = sub.add_parser("play")
    pl.add_argument("--url", required=True)
    pl.add_argument("--bearer", required=True)
    pl.add_argument("--seconds", type=float, default=4)
    pl.add_argument("--audio", action="store_true", help="offer to receive audio too")
    pl.add_argument("--channels", action="store_true", help="open Porthole's data channels")
    pl.add_argument("--codecs", help="video codecs to offer, e.g. vp8 (default: all)")
    args = p.parse_args()
    if args.cmd == "relay":
        run_relay(args)
    else:
        asyncio.run(play(args))


if __name__ == "__main__":
    sys.exit(main())
