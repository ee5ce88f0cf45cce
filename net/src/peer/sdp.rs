//! What the share reads in a viewer's offer: its H.264 formats (and why none fits), its
//! audio sections, its loopback candidates.

use super::*;

/// `sdp` without its loopback ICE candidates (for a peer on another machine, where they
/// can only fail).
pub fn without_loopback_candidates(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let loopback = line
            .strip_prefix("a=candidate:")
            .and_then(|c| c.split_whitespace().nth(4))
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback());
        if !loopback {
            out.push_str(line);
        }
    }
    out
}

/// The checks an offer passes before webrtc-rs negotiates with it: it parses as SDP, has a
/// video section, and that section takes what the share sends (see [`video_codec_refusal`]).
/// (Also the fuzz target `sdp`'s entry.)
pub fn parse_offer(offer_sdp: String) -> Result<RTCSessionDescription, PeerError> {
    let offer = RTCSessionDescription::offer(offer_sdp)
        .map_err(|e| PeerError::BadOffer(format!("not an SDP offer: {e}")))?;
    if !offer.sdp.contains("m=video") {
        return Err(PeerError::BadOffer(
            "the offer has no video section (m=video)".into(),
        ));
    }
    if let Some(why) = video_codec_refusal(&offer.sdp) {
        return Err(PeerError::BadOffer(why));
    }
    Ok(offer)
}

/// The `a=mid` of each audio section of `sdp`.
pub(super) fn audio_mids(sdp: &str) -> Vec<String> {
    let mut mids = Vec::new();
    let mut in_audio = false;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            in_audio = line.starts_with("m=audio");
        } else if let Some(mid) = line.strip_prefix("a=mid:").filter(|_| in_audio) {
            mids.push(mid.trim().to_owned());
        }
    }
    mids
}

/// Whether an H.264 format (its `a=fmtp` parameters) can receive what the share sends:
/// Constrained Baseline in packetization-mode 1 (RFC 6184 §8.2.2: the answer keeps the
/// offer's profile, so only a profile whose decoders take Constrained Baseline will do —
/// Baseline, or Main/Extended with the constraint flags that make them Constrained
/// Baseline-compatible; a missing profile-level-id means Baseline, 420010).
pub(super) fn h264_format_fits(fmtp: &str) -> bool {
    if fmtp_param(fmtp, "packetization-mode") != Some("1") {
        return false;
    }
    let profile = fmtp_param(fmtp, "profile-level-id").unwrap_or("420010");
    let (Some(idc), Some(iop)) = (
        profile
            .get(0..2)
            .and_then(|h| u8::from_str_radix(h, 16).ok()),
        profile
            .get(2..4)
            .and_then(|h| u8::from_str_radix(h, 16).ok()),
    ) else {
        return false;
    };
    match idc {
        0x42 => true,
        0x4d => iop & 0x80 != 0,
        0x58 => iop & 0xc0 == 0xc0,
        _ => false,
    }
}

/// One parameter of an `a=fmtp` line's parameter list (`k=v;k=v`), by name.
pub(super) fn fmtp_param<'a>(fmtp: &'a str, name: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Why the offer's first video section cannot take the share's H.264, naming what it
/// offers and what is needed; `None` when a format fits.
pub fn video_codec_refusal(sdp: &str) -> Option<String> {
    let section: Vec<&str> = sdp
        .lines()
        .map(str::trim_end)
        .skip_while(|l| !l.starts_with("m=video"))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !l.starts_with("m="))
        .map(|(_, l)| l)
        .collect();
    let formats: Vec<&str> = section.first()?.split_whitespace().skip(3).collect();
    let attr = |prefix: &str, pt: &str| {
        section.iter().find_map(|l| {
            let rest = l.strip_prefix(prefix)?;
            let (p, value) = rest.split_once(' ')?;
            (p == pt).then_some(value.trim())
        })
    };
    let mut offered = Vec::new();
    for pt in &formats {
        let Some(rtpmap) = attr("a=rtpmap:", pt) else {
            continue;
        };
        let name = rtpmap.split('/').next().unwrap_or(rtpmap);
        if !name.eq_ignore_ascii_case("H264") {
            if !["rtx", "red", "ulpfec", "flexfec-03"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
            {
                offered.push(name.to_owned());
            }
            continue;
        }
        let fmtp = attr("a=fmtp:", pt).unwrap_or("");
        if h264_format_fits(fmtp) {
            return None;
        }
        let param = |n: &str| fmtp_param(fmtp, n).unwrap_or("none");
        offered.push(format!(
            "H264 (profile-level-id {}, packetization-mode {})",
            param("profile-level-id"),
            param("packetization-mode")
        ));
    }
    offered.dedup();
    let listed = if offered.is_empty() {
        "no video codec".to_owned()
    } else {
        offered.join(", ")
    };
    let hint = if offered.iter().any(|o| o.starts_with("H264")) {
        ""
    } else {
        " In Firefox, H.264 comes from the OpenH264 plugin: enable it under about:addons → \
         Plugins (it downloads once), or use a Chromium-based browser."
    };
    Some(format!(
        "this share sends H.264 Constrained Baseline in packetization-mode 1, and the offer's \
         video takes no such format (it offers {listed}).{hint}"
    ))
}
