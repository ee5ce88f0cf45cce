#!/usr/bin/python3
"""The reference sender of tests/bench/g2g.mjs: GStreamer webrtcbin + x264 behind a WHEP
endpoint, so the benchmark can put Porthole beside a well-known open pipeline.

  /usr/bin/python3 tests/bench/gst_whep.py --display :90 [--fps 30] [--bitrate-kbps 8000]
                                           [--listen 127.0.0.1:0]

It prints `whep: http://127.0.0.1:PORT/whep` once listening. POST /whep (an SDP offer,
Content-Type application/sdp) answers 201 with the SDP answer, every ICE candidate
gathered, and starts sending

  ximagesrc use-damage=false show-pointer=false ! video/x-raw,framerate=FPS/1
  ! videoconvert ! video/x-raw,format=I420
  ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=KBPS key-int-max=100000 bframes=0
  ! video/x-h264,profile=constrained-baseline
  ! rtph264pay config-interval=-1 pt=<the offer's H.264 payload type> ! webrtcbin

One viewer at a time: a new offer replaces the previous viewer; DELETE /whep/1 ends it.
Only loopback listen addresses are accepted, and ICE uses that address only. Debian
packages: python3-gi, gir1.2-gst-plugins-bad-1.0, gir1.2-nice-0.1, gstreamer1.0-nice,
gstreamer1.0-plugins-{base,good,bad,ugly}, gstreamer1.0-x (scripts/install-deps.sh bench).
"""

import argparse
import ipaddress
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402

MAX_OFFER_BYTES = 64 * 1024
GATHER_TIMEOUT_S = 10


def log(msg):
    print(f"gst_whep: {msg}", file=sys.stderr, flush=True)


def ice_on(wb, host):
    """Makes webrtcbin `wb` gather on `host` (libnice leaves loopback out of its host
    candidates; loopback is all there is here), without ICE-TCP. Returns the ICE agent:
    hold it as long as `wb` lives (PyGObject drops a reference of webrtcbin's own agent when
    the wrapper goes, and webrtcbin then crashes on its next use of it)."""
    ice = wb.get_property("ice-agent")
    ice.set_property("ice-tcp", False)
    address = Nice.Address.new()
    if not address.set_from_string(host) or not ice.get_property("agent").add_local_address(address):
        raise RuntimeError(f"libnice does not take {host} as a local address")
    return ice


def watch_gathering(wb):
    """An event set once webrtcbin `wb` has gathered all its ICE candidates."""
    done = threading.Event()

    def on_state(wb, _pspec):
        if wb.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            done.set()

    wb.connect("notify::ice-gathering-state", on_state)
    return done


def log_bus(pipeline, log, warnings=True):
    """Sends `pipeline`'s errors (and warnings) to `log`."""
    def report(kind):
        def on_message(_bus, msg):
            err, dbg = msg.parse_error() if kind == "error" else msg.parse_warning()
            log(f"{kind} from {msg.src.get_name()}: {err.message} ({dbg})")
        return on_message

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message::error", report("error"))
    if warnings:
        bus.connect("message::warning", report("warning"))


def emit_and_wait(wb, signal_name, *args):
    """Emits a webrtcbin action signal that takes a promise, and waits for its reply."""
    promise = Gst.Promise.new()
    wb.emit(signal_name, *args, promise)
    promise.wait()
    return promise.get_reply()


def pick_h264_payload(offer):
    """The offer's payload type for H.264 packetization-mode=1, constrained baseline
    preferred (what x264 makes with profile=constrained-baseline). None if it has none."""
    names = dict(re.findall(r"^a=rtpmap:(\d+) ([\w-]+)/90000", offer, re.M))
    fmtp = dict(re.findall(r"^a=fmtp:(\d+) (.*)$", offer, re.M))
    best = None
    for pt, name in names.items():
        if name.upper() != "H264":
            continue
        params = dict(p.split("=", 1) for p in fmtp.get(pt, "").strip().split(";") if "=" in p)
        if params.get("packetization-mode") != "1":
            continue
        profile = params.get("profile-level-id", "").lower()
        rank = 0 if profile.startswith("42e0") else 1 if profile.startswith("4200") else 2
        if best is None or rank < best[0]:
            best = (rank, int(pt), profile or "42e01f")
    return None if best is None else (best[1], best[2])


class Session:
    """One viewer: a pipeline from the X display into webrtcbin, answering one offer."""

    def __init__(self, opts, offer_text):
        chosen = pick_h264_payload(offer_text)
        if chosen is None:
            raise ValueError("the offer has no H.264 (packetization-mode=1) video")
        pt, _profile = chosen
        desc = (
            f"ximagesrc display-name={opts.display} use-damage=false show-pointer=false "
            f"! video/x-raw,framerate={opts.fps}/1 "
            f"! videoconvert ! video/x-raw,format=I420 "
            f"! x264enc tune=zerolatency speed-preset=ultrafast bitrate={opts.bitrate_kbps} "
            f"key-int-max=100000 bframes=0 "
            f"! video/x-h264,profile=constrained-baseline,stream-format=byte-stream "
            f"! rtph264pay config-interval=-1 pt={pt} aggregate-mode=zero-latency "
            f"! application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload={pt} "
            f"! webrtcbin name=wb bundle-policy=max-bundle"
        )
        log(f"pipeline: {desc}")
        self.pipeline = Gst.parse_launch(desc)
        self.wb = self.pipeline.get_by_name("wb")
        self.gathered = watch_gathering(self.wb)
        self.ice = ice_on(self.wb, opts.host)
        # The sink pad's transceiver: send only, the offer's H.264 payload type. Not its
        # profile-level-id: the payloader would hold x264 to that level (3.1 in Chromium's
        # offers, at most 1280x720 at 30 fps) and refuse 1080p; decoders ignore the level.
        trans = self.wb.emit("get-transceiver", 0)
        trans.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        trans.set_property("codec-preferences", Gst.Caps.from_string(
            f"application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload={pt},"
            f"packetization-mode=(string)1,level-asymmetry-allowed=(string)1,"
            f"rtcp-fb-nack-pli=(boolean)true"))
        log_bus(self.pipeline, log)
        self.pipeline.set_state(Gst.State.PLAYING)
        self.answer = self._negotiate(offer_text)

    def _call(self, signal_name, *args):
        return emit_and_wait(self.wb, signal_name, *args)

    def _negotiate(self, offer_text):
        res, msg = GstSdp.SDPMessage.new_from_text(offer_text)
        if res != GstSdp.SDPResult.OK:
            raise ValueError("the offer is not valid SDP")
        offer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, msg)
        self._call("set-remote-description", offer)
        # Candidates in the offer's SDP (the viewer gathers before it posts).
        for index, line in self._candidates(offer_text):
            self.wb.emit("add-ice-candidate", index, line)
        reply = self._call("create-answer", None)
        answer = reply.get_value("answer") if reply is not None else None
        if answer is None:
            raise ValueError(f"webrtcbin made no answer: {reply.to_string() if reply else 'no reply'}")
        self._call("set-local-description", answer)
        if not self.gathered.wait(GATHER_TIMEOUT_S):
            log("ICE gathering did not complete; answering with what there is")
        text = self.wb.get_property("local-description").sdp.as_text()
        if "a=candidate" not in text:
            raise ValueError("no local ICE candidate was gathered")
        return text

    @staticmethod
    def _candidates(sdp):
        index = -1
        for line in sdp.splitlines():
            if line.startswith("m="):
                index += 1
            elif line.startswith("a=candidate:") and index >= 0:
                yield index, line[2:]

    def stop(self):
        self.pipeline.set_state(Gst.State.NULL)
        self.pipeline.get_bus().remove_signal_watch()


class Server:
    def __init__(self, opts):
        self.opts = opts
        self.lock = threading.Lock()
        self.session = None

    def offer(self, text):
        with self.lock:
            if self.session is not None:
                self.session.stop()
                self.session = None
            self.session = Session(self.opts, text)
            return self.session.answer

    def delete(self):
        with self.lock:
            had = self.session is not None
            if had:
                self.session.stop()
                self.session = None
            return had


def make_handler(server):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            log(f"{self.address_string()} {fmt % args}")

        def _reply(self, status, body=b"", ctype="text/plain", extra=()):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            if self.path != "/whep":
                return self._reply(404, b"not found\n")
            if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/sdp":
                return self._reply(415, b"want Content-Type: application/sdp\n")
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_OFFER_BYTES:
                return self._reply(400, b"offer missing or too big\n")
            text = self.rfile.read(length).decode("utf-8", "replace")
            try:
                answer = server.offer(text)
            except Exception as err:  # a refused offer is a 400 with the reason
                log(f"offer refused: {err}")
                return self._reply(400, f"{err}\n".encode())
            self._reply(201, answer.encode(), "application/sdp", [("Location", "/whep/1")])

        def do_DELETE(self):
            if self.path != "/whep/1":
                return self._reply(404, b"not found\n")
            self._reply(200 if server.delete() else 404)

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--display", required=True, help="X display to capture, e.g. :90")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--bitrate-kbps", type=int, default=8000)
    ap.add_argument("--listen", default="127.0.0.1:0", help="loopback ADDR:PORT")
    opts = ap.parse_args()
    host, _, port = opts.listen.rpartition(":")
    opts.host = host.strip("[]")
    try:
        if not ipaddress.ip_address(opts.host).is_loopback:
            raise ValueError
    except ValueError:
        ap.error("--listen must be a loopback ADDR:PORT")
    if not 1 <= opts.fps <= 240 or not 100 <= opts.bitrate_kbps <= 100_000:
        ap.error("--fps wants 1..240 and --bitrate-kbps 100..100000")

    Gst.init(None)
    for name in ("ximagesrc", "videoconvert", "x264enc", "rtph264pay", "webrtcbin", "nicesrc"):
        if Gst.ElementFactory.find(name) is None:
            sys.exit(f"gst_whep: GStreamer element {name} is missing: run scripts/install-deps.sh bench")
    server = Server(opts)
    httpd = ThreadingHTTPServer((opts.host, int(port)), make_handler(server))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print(f"whep: http://{host}:{httpd.server_address[1]}/whep", flush=True)

    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    loop.run()
    httpd.shutdown()
    server.delete()


if __name__ == "__main__":
    main()
