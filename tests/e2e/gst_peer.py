#!/usr/bin/python3
"""GStreamer webrtcbin (an independent WebRTC stack) as a WHEP player of a Porthole share,
for tests/e2e/interop.test.mjs.

  /usr/bin/python3 tests/e2e/gst_peer.py --url http://127.0.0.1:PORT/whep --bearer CODE
                                         [--audio] [--seconds 3]

Offers to receive H.264 video (and Opus audio with --audio), posts the offer with the
code as a bearer token (what a third-party player does: the share must allow it), decodes
what arrives and prints one JSON line: {"status", "frames", "width", "height",
"audio_buffers", "state"}, or {"status", "text"} when refused. Debian packages: those of
`scripts/install-deps.sh bench` (python3-gi, gir1.2-gst-plugins-bad-1.0, gstreamer1.0-nice,
gstreamer1.0-plugins-{base,good,bad}; H.264 is decoded by -bad's openh264dec, or by
avdec_h264 where gstreamer1.0-libav is installed).
"""

import argparse
import json
import sys
from pathlib import Path
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

# The benchmark's GStreamer sender has the webrtcbin helpers both use.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from gst_whep import emit_and_wait, ice_on, log_bus, watch_gathering  # noqa: E402
from whep_post import post_offer  # noqa: E402

GATHER_TIMEOUT_S = 10


def log(msg):
    print(f"gst_peer: {msg}", file=sys.stderr, flush=True)


class Player:
    def __init__(self, opts):
        self.opts = opts
        self.pipeline = Gst.Pipeline.new("player")
        self.wb = Gst.ElementFactory.make("webrtcbin", "wb")
        self.wb.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipeline.add(self.wb)
        self.gathered = watch_gathering(self.wb)
        self.wb.connect("pad-added", self._on_pad)
        self.ice = ice_on(self.wb, opts.host)
        self.counts = {"frames": 0, "width": 0, "height": 0, "audio_buffers": 0}
        video = Gst.Caps.from_string(
            "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=102,"
            "packetization-mode=(string)1,profile-level-id=(string)42e01f,"
            "level-asymmetry-allowed=(string)1,rtcp-fb-nack-pli=(boolean)true")
        self.wb.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, video)
        if opts.audio:
            audio = Gst.Caps.from_string(
                "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111")
            self.wb.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, audio)
        log_bus(self.pipeline, log, warnings=False)
        self.pipeline.set_state(Gst.State.PLAYING)

    def _on_pad(self, _wb, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        caps = pad.get_current_caps() or pad.query_caps(None)
        media = caps.get_structure(0).get_string("media")
        if media == "video":
            decoder = "avdec_h264" if Gst.ElementFactory.find("avdec_h264") else "openh264dec"
            desc = (f"rtph264depay ! h264parse ! {decoder} ! videoconvert "
                    "! fakesink name=vsink signal-handoffs=true sync=false")
        else:
            desc = "rtpopusdepay ! fakesink name=asink signal-handoffs=true sync=false"
        bin_ = Gst.parse_bin_from_description(desc, True)
        self.pipeline.add(bin_)
        bin_.sync_state_with_parent()
        pad.link(bin_.get_static_pad("sink"))
        sink = bin_.get_by_name("vsink" if media == "video" else "asink")
        sink.connect("handoff", self._on_video if media == "video" else self._on_audio)

    def _on_video(self, _sink, _buf, pad):
        self.counts["frames"] += 1
        s = pad.get_current_caps().get_structure(0)
        self.counts["width"], self.counts["height"] = s.get_int("width")[1], s.get_int("height")[1]

    def _on_audio(self, _sink, _buf, _pad):
        self.counts["audio_buffers"] += 1

    def _call(self, signal_name, *args):
        return emit_and_wait(self.wb, signal_name, *args)

    def offer(self):
        reply = self._call("create-offer", None)
        offer = reply.get_value("offer")
        self._call("set-local-description", offer)
        if not self.gathered.wait(GATHER_TIMEOUT_S):
            log("ICE gathering did not complete; offering what there is")
        return self.wb.get_property("local-description").sdp.as_text()

    def answer(self, text):
        res, msg = GstSdp.SDPMessage.new_from_text(text)
        if res != GstSdp.SDPResult.OK:
            raise ValueError("the answer is not valid SDP")
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        self._call("set-remote-description", answer)
        index = -1
        for line in text.splitlines():
            if line.startswith("m="):
                index += 1
            elif line.startswith("a=candidate:") and index >= 0:
                self.wb.emit("add-ice-candidate", index, line[2:])

    def state(self):
        return self.wb.get_property("connection-state").value_nick


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--bearer", required=True)
    ap.add_argument("--audio", action="store_true")
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--host", default="127.0.0.1", help="the local address ICE uses")
    opts = ap.parse_args()
    Gst.init(None)
    loop = GLib.MainLoop()
    threading.Thread(target=loop.run, daemon=True).start()
    player = Player(opts)
    sdp = player.offer()
    status, answer = post_offer(opts.url, sdp, opts.bearer)
    if status != 201:
        print(json.dumps({"status": status, "text": answer[:500]}), flush=True)
        return 0
    out = {"status": status}
    try:
        player.answer(answer)
    except Exception as e:  # noqa: BLE001 - reported: the answer refused
        out["refused_answer"] = repr(e)
    time.sleep(opts.seconds)
    out.update(player.counts, state=player.state())
    print(json.dumps(out), flush=True)
    player.pipeline.set_state(Gst.State.NULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
