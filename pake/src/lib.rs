//! Pairing: a SPAKE2 exchange keyed by the share's access code, and the keys that
//! authenticate the signaling after it. The code itself never leaves either side.
//!
//! SPAKE2 (RFC 9382) over Ed25519 is the RustCrypto `spake2` crate; the keys are HKDF-SHA256
//! of its shared secret, the MACs HMAC-SHA256. This crate is built twice: natively for the
//! share and the Rust client, and to WebAssembly for the viewer page (`assets/pake.js`
//! loads it; see the `wasm` module), so both viewers run the same code.
//!
//! 1. `POST /pake`: the viewer sends its SPAKE2 message; the share answers with its own
//!    and a key confirmation (an HMAC over both messages). A viewer with the wrong code, or
//!    one talking to somebody who does not know the code, finds out here and stops: one
//!    guess per exchange, and nothing either side sent lets a listener test codes offline.
//! 2. Every later request (the WHEP offer, `DELETE`, stats) carries an HMAC over its
//!    method, path and body with the viewer's request key, which also confirms the viewer's
//!    key to the share; the share's SDP answer carries an HMAC with the share's answer key.
//!    Both DTLS fingerprints are inside those SDPs: a relay that puts its own certificate
//!    in either breaks a MAC, and the side that checks it refuses before any media flows.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};

/// SPAKE2's identities: the viewer is side A, the share side B.
pub const VIEWER_ID: &[u8] = b"porthole viewer";
pub const SHARE_ID: &[u8] = b"porthole share";
/// Length of either side's SPAKE2 message (a side byte and a compressed point).
pub const MESSAGE_LEN: usize = 33;
/// Length of every MAC (HMAC-SHA256).
pub const MAC_LEN: usize = 32;
/// HKDF salt: names the protocol and its version, so keys never serve another purpose.
const SALT: &[u8] = b"porthole pairing v1";

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PakeError {
    #[error("the pairing message is malformed")]
    BadMessage,
    /// The other side does not hold the same code: a wrong code, or somebody in between.
    #[error(
        "the pairing did not confirm: a wrong access code, or not the share the code belongs to"
    )]
    NotConfirmed,
}

/// The keys both sides hold after a pairing.
pub struct Keys {
    share_confirm: [u8; 32],
    request: [u8; 32],
    answer: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<hidden>)")
    }
}

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        // Length-prefixed: no two different part lists feed the MAC the same bytes.
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

impl Keys {
    fn derive(shared: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(SALT), shared);
        let expand = |label: &[u8]| {
            let mut key = [0u8; 32];
            hk.expand(label, &mut key)
                .expect("32 bytes is a valid HKDF-SHA256 length");
            key
        };
        Self {
            share_confirm: expand(b"share confirmation"),
            request: expand(b"viewer request"),
            answer: expand(b"share answer"),
        }
    }

    fn confirmation(&self, viewer_message: &[u8], share_message: &[u8]) -> HmacSha256 {
        hmac(&self.share_confirm, &[viewer_message, share_message])
    }

    /// The viewer's MAC over one request: `method`, `path` (with its query) and `body`.
    pub fn request_mac(&self, method: &str, path: &str, body: &[u8]) -> [u8; MAC_LEN] {
        hmac(&self.request, &[method.as_bytes(), path.as_bytes(), body])
            .finalize()
            .into_bytes()
            .into()
    }

    /// Checks a viewer's request MAC (constant time).
    pub fn verify_request(&self, method: &str, path: &str, body: &[u8], mac: &[u8]) -> bool {
        hmac(&self.request, &[method.as_bytes(), path.as_bytes(), body])
            .verify_slice(mac)
            .is_ok()
    }

    /// The share's MAC over its SDP answer.
    pub fn answer_mac(&self, answer: &[u8]) -> [u8; MAC_LEN] {
        hmac(&self.answer, &[answer]).finalize().into_bytes().into()
    }

    /// Checks the share's answer MAC (constant time).
    pub fn verify_answer(&self, answer: &[u8], mac: &[u8]) -> bool {
        hmac(&self.answer, &[answer]).verify_slice(mac).is_ok()
    }
}

/// The password SPAKE2 is keyed with: the code without surrounding white space.
fn password(code: &str) -> Password {
    Password::new(code.trim().as_bytes())
}

fn start_rng(seed: [u8; 32]) -> ChaCha20Rng {
    ChaCha20Rng::from_seed(seed)
}

/// The viewer's half of a pairing in progress.
pub struct ViewerPairing {
    state: Spake2<Ed25519Group>,
    message: Vec<u8>,
}

impl ViewerPairing {
    /// Starts a pairing with `code`. `seed`: 32 bytes from the system's random source.
    pub fn start(code: &str, seed: [u8; 32]) -> Self {
        let (state, message) = Spake2::<Ed25519Group>::start_a_with_rng(
            &password(code),
            &Identity::new(VIEWER_ID),
            &Identity::new(SHARE_ID),
            start_rng(seed),
        );
        Self { state, message }
    }

    /// What to send to the share.
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// Takes the share's message and key confirmation. `Err(NotConfirmed)`: the share does
    /// not hold this code (or the code is wrong) — stop, and send nothing more.
    pub fn finish(self, share_message: &[u8], confirm: &[u8]) -> Result<Keys, PakeError> {
        if share_message.len() != MESSAGE_LEN {
            return Err(PakeError::BadMessage);
        }
        let shared = self
            .state
            .finish(share_message)
            .map_err(|_| PakeError::BadMessage)?;
        let keys = Keys::derive(&shared);
        keys.confirmation(&self.message, share_message)
            .verify_slice(confirm)
            .map_err(|_| PakeError::NotConfirmed)?;
        Ok(keys)
    }
}

/// The share's side of a pairing, made in one step from the viewer's message.
pub struct ShareReply {
    pub keys: Keys,
    /// The share's SPAKE2 message.
    pub message: Vec<u8>,
    /// The share's key confirmation.
    pub confirm: [u8; MAC_LEN],
}

/// Answers a viewer's pairing message. A viewer with a wrong code gets a reply all the
/// same (the share cannot tell yet); its confirmation will not verify.
pub fn share_respond(
    code: &str,
    viewer_message: &[u8],
    seed: [u8; 32],
) -> Result<ShareReply, PakeError> {
    if viewer_message.len() != MESSAGE_LEN {
        return Err(PakeError::BadMessage);
    }
    let (state, message) = Spake2::<Ed25519Group>::start_b_with_rng(
        &password(code),
        &Identity::new(VIEWER_ID),
        &Identity::new(SHARE_ID),
        start_rng(seed),
    );
    let shared = state
        .finish(viewer_message)
        .map_err(|_| PakeError::BadMessage)?;
    let keys = Keys::derive(&shared);
    let confirm = keys
        .confirmation(viewer_message, &message)
        .finalize()
        .into_bytes()
        .into();
    Ok(ShareReply {
        keys,
        message,
        confirm,
    })
}

/// The page's interface (WebAssembly, no bindings generator): one byte buffer shared with
/// JavaScript, which writes a call's input into it (`buffer(len)` sizes it and returns its
/// address) and reads the output from `buffer_ptr()` after the call. One pairing per
/// instance: `assets/pake.js` makes an instance per connection.
#[cfg(target_arch = "wasm32")]
pub mod wasm {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        static PAIRING: RefCell<Option<ViewerPairing>> = const { RefCell::new(None) };
        static KEYS: RefCell<Option<Keys>> = const { RefCell::new(None) };
    }

    fn input() -> Vec<u8> {
        BUF.with(|b| b.borrow().clone())
    }

    fn output(bytes: &[u8]) -> isize {
        BUF.with(|b| {
            let mut b = b.borrow_mut();
            b.clear();
            b.extend_from_slice(bytes);
        });
        bytes.len() as isize
    }

    /// Makes the buffer `len` bytes long and returns its address.
    #[no_mangle]
    pub extern "C" fn buffer(len: usize) -> *mut u8 {
        BUF.with(|b| {
            let mut b = b.borrow_mut();
            b.resize(len, 0);
            b.as_mut_ptr()
        })
    }

    /// The buffer's address (it may move during a call).
    #[no_mangle]
    pub extern "C" fn buffer_ptr() -> *const u8 {
        BUF.with(|b| b.borrow().as_ptr())
    }

    /// Input: 32 random bytes, then the code (UTF-8). Output: the viewer's message.
    #[no_mangle]
    pub extern "C" fn start() -> isize {
        let data = input();
        let Some((seed, code)) = data.split_first_chunk::<32>() else {
            return -2;
        };
        let Ok(code) = std::str::from_utf8(code) else {
            return -2;
        };
        let pairing = ViewerPairing::start(code, *seed);
        let n = output(pairing.message());
        PAIRING.with(|p| *p.borrow_mut() = Some(pairing));
        n
    }

    /// Input: the share's message, then its confirmation. 0: paired; -1: not confirmed
    /// (wrong code, or not the share); -2: malformed or out of order.
    #[no_mangle]
    pub extern "C" fn finish() -> isize {
        let data = input();
        let Some(pairing) = PAIRING.with(|p| p.borrow_mut().take()) else {
            return -2;
        };
        if data.len() < MESSAGE_LEN {
            return -2;
        }
        let (message, confirm) = data.split_at(MESSAGE_LEN);
        match pairing.finish(message, confirm) {
            Ok(keys) => {
                KEYS.with(|k| *k.borrow_mut() = Some(keys));
                0
            }
            Err(PakeError::NotConfirmed) => -1,
            Err(PakeError::BadMessage) => -2,
        }
    }

    /// Input: method, path and body, the first two `method_len` and `path_len` bytes long.
    /// Output: the request MAC. -2: not paired or malformed.
    #[no_mangle]
    pub extern "C" fn request_mac(method_len: usize, path_len: usize) -> isize {
        let data = input();
        if data.len() < method_len + path_len {
            return -2;
        }
        let (method, rest) = data.split_at(method_len);
        let (path, body) = rest.split_at(path_len);
        let (Ok(method), Ok(path)) = (std::str::from_utf8(method), std::str::from_utf8(path))
        else {
            return -2;
        };
        let mac = KEYS.with(|k| {
            k.borrow()
                .as_ref()
                .map(|k| k.request_mac(method, path, body))
        });
        match mac {
            Some(mac) => output(&mac),
            None => -2,
        }
    }

    /// Input: the answer's MAC, then the answer. 1: verified; 0: not; -2: not paired.
    #[no_mangle]
    pub extern "C" fn verify_answer() -> isize {
        let data = input();
        if data.len() < MAC_LEN {
            return 0;
        }
        let (mac, answer) = data.split_at(MAC_LEN);
        KEYS.with(|k| match k.borrow().as_ref() {
            Some(keys) => isize::from(keys.verify_answer(answer, mac)),
            None => -2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// An RNG that gives `Scalar::random` (64 bytes, reduced mod ℓ) a chosen scalar.
    struct FixedScalar([u8; 64], usize);

    impl rand_chacha::rand_core::RngCore for FixedScalar {
        fn next_u32(&mut self) -> u32 {
            unimplemented!()
        }
        fn next_u64(&mut self) -> u64 {
            unimplemented!()
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.copy_from_slice(&self.0[self.1..self.1 + dest.len()]);
            self.1 += dest.len();
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_chacha::rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rand_chacha::rand_core::CryptoRng for FixedScalar {}

    fn fixed(scalar_le: &str) -> FixedScalar {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&unhex(scalar_le));
        FixedScalar(bytes, 0)
    }

    /// The published SPAKE2 interoperability vector (python-spake2, and the `spake2`
    /// crate's own `test_asymmetric`): password "password", identities "idA"/"idB", fixed
    /// scalars. The crate as we call it gives the same messages and key.
    #[test]
    fn spake2_matches_the_published_vector() {
        // 2611694063369306139794446498317402240796898290761098242657700742213257926693 and
        // 7002393159576182977806091886122272758628412261510164356026361256515836884383,
        // little-endian.
        let a = fixed("25184061a70b1142f1a9f043a52cf7033dc308b5a0a32e42b003ecd59c2ac605");
        let b = fixed("9fb5e845084e0cbe27ac8b4d3af139b33f3f8a047d4234e2d45d33c5cd367b0f");
        let (pw, ida, idb) = (
            Password::new(b"password"),
            Identity::new(b"idA"),
            Identity::new(b"idB"),
        );
        let (sa, msg_a) = Spake2::<Ed25519Group>::start_a_with_rng(&pw, &ida, &idb, a);
        let (sb, msg_b) = Spake2::<Ed25519Group>::start_b_with_rng(&pw, &ida, &idb, b);
        assert_eq!(
            hex(&msg_a),
            "416fc960df73c9cf8ed7198b0c9534e2e96a5984bfc5edc023fd24dacf371f2af9"
        );
        assert_eq!(
            hex(&msg_b),
            "42354e97b88406922b1df4bea1d7870f17aed3dba7c720b313edae315b00959309"
        );
        let (ka, kb) = (sa.finish(&msg_b).unwrap(), sb.finish(&msg_a).unwrap());
        assert_eq!(
            hex(&ka),
            "712295de7219c675ddd31942184aa26e0a957cf216bc230d165b215047b520c1"
        );
        assert_eq!(ka, kb);
    }

    /// RFC 4231 test case 2 and RFC 5869 test case 1: the MAC and KDF primitives.
    #[test]
    fn hmac_and_hkdf_match_their_rfc_vectors() {
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let hk = Hkdf::<Sha256>::new(Some(&unhex("000102030405060708090a0b0c")), &[0x0b; 22]);
        let mut okm = [0u8; 42];
        hk.expand(&unhex("f0f1f2f3f4f5f6f7f8f9"), &mut okm).unwrap();
        assert_eq!(
            hex(&okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    fn pair(viewer_code: &str, share_code: &str) -> (Result<Keys, PakeError>, ShareReply) {
        let viewer = ViewerPairing::start(viewer_code, [1; 32]);
        let reply = share_respond(share_code, viewer.message(), [2; 32]).unwrap();
        (viewer.finish(&reply.message, &reply.confirm), reply)
    }

    #[test]
    fn the_same_code_pairs_and_both_sides_hold_the_same_keys() {
        let (viewer, share) = pair("48213907", " 48213907\n");
        let viewer = viewer.unwrap();
        let offer = b"v=0\r\na=fingerprint:sha-256 AA:BB\r\n";
        let mac = viewer.request_mac("POST", "/whep", offer);
        assert!(share.keys.verify_request("POST", "/whep", offer, &mac));
        let answer = b"v=0\r\na=fingerprint:sha-256 CC:DD\r\n";
        assert!(viewer.verify_answer(answer, &share.keys.answer_mac(answer)));
    }

    #[test]
    fn a_wrong_code_fails_on_the_first_round() {
        let (viewer, _) = pair("48213907", "48213908");
        assert_eq!(viewer.unwrap_err(), PakeError::NotConfirmed);
    }

    #[test]
    fn a_changed_sdp_or_request_does_not_verify() {
        let (viewer, share) = pair("code-1234", "code-1234");
        let viewer = viewer.unwrap();
        let offer = b"v=0\r\na=fingerprint:sha-256 AA:BB\r\n";
        let mac = viewer.request_mac("POST", "/whep", offer);
        let swapped = b"v=0\r\na=fingerprint:sha-256 EE:FF\r\n";
        assert!(!share.keys.verify_request("POST", "/whep", swapped, &mac));
        assert!(!share.keys.verify_request("DELETE", "/whep", offer, &mac));
        assert!(!share.keys.verify_request("POST", "/whep/x", offer, &mac));
        assert!(!share
            .keys
            .verify_request("POST", "/whep", offer, &mac[..31]));
        // The share's answer key is not the viewer's request key: no reflection.
        let answer_mac = share.keys.answer_mac(offer);
        assert!(!share
            .keys
            .verify_request("POST", "/whep", offer, &answer_mac));
        assert!(!viewer.verify_answer(swapped, &share.keys.answer_mac(offer)));
        // Length prefixes: moving bytes between parts changes the MAC.
        assert_ne!(
            viewer.request_mac("POST", "/whep", b"x"),
            viewer.request_mac("POST", "/whepx", b"")
        );
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert_eq!(
            share_respond("code-1234", &[0x41; 5], [2; 32]).err(),
            Some(PakeError::BadMessage)
        );
        let viewer = ViewerPairing::start("code-1234", [1; 32]);
        assert_eq!(
            viewer.finish(&[0x42; 32], &[0; 32]).err(),
            Some(PakeError::BadMessage)
        );
        // A reflected message (the viewer's own, side byte A) is refused by the share.
        let viewer = ViewerPairing::start("code-1234", [1; 32]);
        let mut reflected = viewer.message().to_vec();
        reflected[0] = 0x42;
        let reply = share_respond("code-1234", viewer.message(), [2; 32]).unwrap();
        assert!(viewer.finish(&reflected, &reply.confirm).is_err());
    }

    #[test]
    fn fresh_seeds_give_fresh_messages() {
        let a = ViewerPairing::start("code-1234", [1; 32]);
        let b = ViewerPairing::start("code-1234", [3; 32]);
        assert_ne!(a.message(), b.message());
        assert_eq!(a.message().len(), MESSAGE_LEN);
    }
}
