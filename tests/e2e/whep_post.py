"""The WHEP offer a third-party player sends (tests/e2e/aiortc_peer.py, gst_peer.py): the
SDP offer with the code as a bearer token, which a share takes with --allow-whep-token.
Standard library only: both players' Pythons import it."""

import urllib.error
import urllib.request


def post_offer(url, sdp, bearer, timeout=60):
    """POSTs `sdp` to the WHEP endpoint `url`; returns (status, body text), refusals too."""
    req = urllib.request.Request(url, data=sdp.encode(), method="POST")
    req.add_header("Content-Type", "application/sdp")
    req.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
