//! What the fuzz targets share: a reader that splits one fuzzer input into fields, and
//! the fixed keys and secrets taken from the repository's public test data.
//!
//! Every target reads its input as `mode byte ‖ fields`, each documented at the top of the
//! target; the seeds under `seeds/<target>/` are written in the same layout by
//! `seeds/make_seeds.py`.

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flowgate_gateway::crypto::keys::PrivateKey;
use serde_json::Value;

/// The public pywa vectors (`tests/data/whatsapp-flows-pywa.json`).
pub static PYWA: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../tests/data/whatsapp-flows-pywa.json"))
        .expect("the pywa vectors are JSON")
});

/// The OpenSSL-made test key (`tests/data/keys/pkcs8.pem`).
pub const TEST_KEY_PEM: &str = include_str!("../../tests/data/keys/pkcs8.pem");
/// Its public key, for wrapping AES keys as a WhatsApp client does.
pub const TEST_PUBLIC_KEY_PEM: &str = include_str!("../../tests/data/keys/pkcs1.pub.pem");

/// A string in the pywa vectors, by JSON pointer.
pub fn pywa_text(pointer: &str) -> &'static str {
    PYWA.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing from the pywa vectors"))
}

/// Base64 bytes in the pywa vectors, by JSON pointer.
pub fn pywa_bytes(pointer: &str) -> Vec<u8> {
    STANDARD
        .decode(pywa_text(pointer))
        .expect("the pywa vectors hold base64")
}

/// The pywa vector's RSA key (PBES2, DES-EDE3-CBC, passphrase `pywa`).
pub fn pywa_key() -> PrivateKey {
    PrivateKey::from_pem(
        pywa_text("/flow_request/private_key_pem"),
        Some(pywa_text("/flow_request/private_key_password").as_bytes()),
    )
    .expect("the pywa key loads")
}

/// The test key (`tests/data/keys/pkcs8.pem`).
pub fn test_key() -> PrivateKey {
    PrivateKey::from_pem(TEST_KEY_PEM, None).expect("the test key loads")
}

/// The pywa vector's AES-128 key, unwrapped with its RSA key.
pub fn pywa_aes_key() -> Vec<u8> {
    pywa_key()
        .decrypt(&pywa_bytes("/flow_request/request_body/encrypted_aes_key"))
        .expect("the pywa AES key unwraps")
}

/// The pywa vector's app secret (the body signature's key).
pub fn pywa_app_secret() -> &'static str {
    pywa_text("/signature/app_secret")
}

/// RSA-OAEP-SHA256 of `aes_key` under the test public key, as a WhatsApp client wraps it.
pub fn wrap_for_test_key(aes_key: &[u8]) -> Vec<u8> {
    use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
    let der = STANDARD
        .decode(
            TEST_PUBLIC_KEY_PEM
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .expect("the public key PEM is base64");
    // `pkcs1.pub.pem` is `openssl rsa -pubout`: a SubjectPublicKeyInfo.
    let public = OaepPublicEncryptingKey::new(
        PublicEncryptingKey::from_der(&der).expect("the test public key parses"),
    )
    .expect("an OAEP key");
    let mut out = vec![0u8; public.ciphertext_size()];
    public
        .encrypt(&OAEP_SHA256_MGF1SHA256, aes_key, &mut out, None)
        .expect("OAEP encryption")
        .to_vec()
}

/// Splits one fuzzer input into fields, front to back. Reading past the end yields
/// zeros and empty slices, so every input is a valid one.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// One byte (0 when the input is used up).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Exactly `N` bytes, zero-padded when the input is used up.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let head = self.take(N);
        out[..head.len()].copy_from_slice(head);
        out
    }

    /// A field prefixed by its length in one byte.
    pub fn short(&mut self) -> &'a [u8] {
        let n = self.byte() as usize;
        self.take(n)
    }

    /// A field prefixed by its big-endian length in two bytes.
    pub fn long(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.take(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// The input as text, as a parser that takes `&str` receives it after the caller's UTF-8 check.
pub fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// The gateway's path for an opened (decrypted or plain) request body: parse and validate,
/// then build the flow service call, as `routes` does. Checks what must hold for any input:
/// a refusal is a 4xx with a stable code, never a 5xx; a ping makes no call; the
/// idempotency key is a deterministic SHA-256; screen data survives its trip through
/// `google.protobuf.Struct` (exactly, once integral doubles are written as integers).
pub fn request_path(payload: &[u8]) {
    use flowgate_gateway::translate::{self, Inbound};
    use flowgate_proto::json::struct_to_json;
    use flowgate_proto::v1::RequestContext;

    let inbound = match translate::parse(payload) {
        Ok(inbound) => inbound,
        Err(e) => {
            assert!(e.status().is_client_error(), "{e:?} is {}", e.status());
            assert!(!e.code().is_empty());
            let _ = serde_json::to_vec(&e.body()).expect("error bodies serialise");
            return;
        }
    };
    let _ = (
        inbound.action(),
        inbound.version(),
        inbound.screen(),
        inbound.flow_token(),
        inbound.flow_token_signature(),
    );
    let key = translate::idempotency_key("fuzz", &inbound);
    assert_eq!(key.len(), 64);
    assert_eq!(key, translate::idempotency_key("fuzz", &inbound));
    let context = RequestContext {
        flow: "fuzz".into(),
        attempt: 1,
        idempotency_key: key,
        ..RequestContext::default()
    };
    let data = match &inbound {
        Inbound::Ping => None,
        Inbound::ErrorNotification(n) => Some(n.data.clone()),
        Inbound::Init(e) | Inbound::DataExchange(e) | Inbound::Back(e) => Some(e.data.clone()),
    };
    let ping = inbound == Inbound::Ping;
    match translate::to_call(inbound, context) {
        Ok(None) => assert!(ping, "only a ping makes no call"),
        Ok(Some(mut call)) => {
            assert!(!ping, "a ping makes no call");
            call.set_attempt(2);
            let _ = call.method();
            let data = data.expect("only a ping has no data");
            let once = struct_to_json(translate::data_to_proto(&data).expect("converted"), "data")
                .expect("a Struct made from JSON converts back");
            let twice = struct_to_json(
                translate::data_to_proto(&once).expect("converted back"),
                "data",
            )
            .expect("converts back again");
            assert_eq!(once, twice, "the Struct round trip is not stable");
        }
        Err(e) => {
            assert_eq!(e.status().as_u16(), 400, "{e:?}");
            assert!(data.is_some_and(|d| translate::data_to_proto(&d).is_err()));
        }
    }
}

/// The gateway's path for a flow service answer: a `FlowResponse` (protobuf bytes, as they
/// arrive over gRPC) turned into WhatsApp JSON, then sealed. A bad answer is a 502; a good
/// one is 200 or 427 and never names `SUCCESS` except as a completion.
pub fn answer_path(response: &[u8], flow_token: &str, sealer: &flowgate_gateway::envelope::Sealer) {
    use flowgate_gateway::translate::{self, AnswerKind};
    use prost::Message;

    let Ok(response) = flowgate_proto::v1::FlowResponse::decode(response) else {
        return;
    };
    match translate::answer(response, flow_token) {
        Ok(answer) => {
            let _ = answer.kind.label();
            let screen = answer.json.get("screen").and_then(Value::as_str);
            match answer.kind {
                AnswerKind::Complete => assert_eq!(screen, Some(translate::SUCCESS)),
                AnswerKind::TokenInvalid => assert_eq!(answer.status.as_u16(), 427),
                _ => assert_ne!(screen, Some(translate::SUCCESS)),
            }
            let _ = sealer.seal(answer.status, &answer.json);
        }
        Err(e) => {
            assert_eq!(e.status().as_u16(), 502, "{e:?}");
            let _ = sealer.seal_error(e);
        }
    }
}
