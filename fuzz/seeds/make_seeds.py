#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target under fuzz/seeds/<target>/, from the
repository's test data (tests/data/, flow-service/flows/). Each seed follows the input
layout documented at the top of its target (mode byte, then fields). Standard library only.

    python3 fuzz/seeds/make_seeds.py
"""

import base64
import hashlib
import hmac
import json
import pathlib
import shutil
import struct

FUZZ = pathlib.Path(__file__).resolve().parent.parent
ROOT = FUZZ.parent
SEEDS = FUZZ / "seeds"

PYWA = json.loads((ROOT / "tests/data/whatsapp-flows-pywa.json").read_text())
KEYS = ROOT / "tests/data/keys"
FLOWS = {name: json.loads((ROOT / f"flow-service/flows/{name}.json").read_text())
         for name in ("signup", "booking")}


def short(data: bytes) -> bytes:
    assert len(data) < 256
    return bytes([len(data)]) + data


def long(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def compact(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# Request bodies as WhatsApp sends them, once decrypted.
REQUESTS = [
    PYWA["flow_request"]["decrypted_request"],
    {"action": "ping", "version": "3.0"},
    {"action": "INIT", "version": "3.0", "flow_token": "tok-1"},
    {"action": "data_exchange", "version": "3.0", "flow_token": "tok-1", "screen": "DETAILS",
     "data": {"email": "ada@example.com", "count": 3, "price": 0.1, "ok": True, "none": None,
              "items": [{"id": "a", "n": [1, 2.5, -7]}], "flow_token_signature": "x"}},
    {"action": "BACK", "version": "3.0", "flow_token": "tok-1", "screen": "DETAILS"},
    {"action": "data_exchange", "version": "3.0", "flow_token": "tok-1", "screen": "S",
     "data": {"error": "invalid-screen-transition", "error_message": "line\nbreak \u001b[31m"}},
    {"action": "INIT", "version": "3.0", "flow_token": "tok-1",
     "data": {"big": 9007199254740991, "bigger": 9007199254740992, "deep": [[[{"a": [[1]]}]]]}},
    {"action": "INIT", "version": "3.0", "flow_token": "tok-1",
     "flow_token_signature": "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"},
]


# --- protobuf, just enough for FlowResponse and google.protobuf.Struct ---------------

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def pb_value(value) -> bytes:
    if value is None:
        return varint(1 << 3 | 0) + varint(0)
    if isinstance(value, bool):
        return varint(4 << 3 | 0) + varint(int(value))
    if isinstance(value, (int, float)):
        return varint(2 << 3 | 1) + struct.pack("<d", float(value))
    if isinstance(value, str):
        return field(3, value.encode())
    if isinstance(value, dict):
        return field(5, pb_struct(value))
    return field(6, b"".join(field(1, pb_value(v)) for v in value))


def pb_struct(obj: dict) -> bytes:
    return b"".join(field(1, field(1, k.encode()) + field(2, pb_value(v))) for k, v in obj.items())


def write(target: str, name: str, data: bytes) -> None:
    (SEEDS / target).mkdir(parents=True, exist_ok=True)
    (SEEDS / target / name).write_bytes(data)


def envelope_open() -> None:
    body = compact(PYWA["flow_request"]["request_body"])
    write("envelope_open", "pywa-unsigned", b"\x03" + body)
    write("envelope_open", "pywa-signed", b"\x01" + body)
    write("envelope_open", "pywa-no-header", b"\x00" + body)
    sig = PYWA["signature"]
    raw = base64.b64decode(sig["raw_body_base64"])
    write("envelope_open", "signature-vector", b"\x02" + short(sig["x_hub_signature_256"].encode()) + raw)
    write("envelope_open", "not-encrypted", b"\x03" + compact({"encrypted_flow_data": "AAAA"}))


def aead_open_json() -> None:
    request = PYWA["flow_request"]["request_body"]
    iv = base64.b64decode(request["initial_vector"])
    sealed = base64.b64decode(request["encrypted_flow_data"])
    write("aead_open_json", "pywa-ciphertext", b"\x00" + iv + sealed)
    for i, body in enumerate(REQUESTS):
        write("aead_open_json", f"plaintext-{i}", b"\x01" + bytes(range(16)) + compact(body))
    write("aead_open_json", "tampered", b"\x02" + bytes(16) + struct.pack(">H", 5) + b"\x01" + compact(REQUESTS[1]))
    write("aead_open_json", "truncated", b"\x02" + bytes(16) + struct.pack(">H", 7) + b"\x00" + compact(REQUESTS[2]))
    write("aead_open_json", "envelope", b"\x03" + iv + compact(REQUESTS[3]))


def plain_request() -> None:
    for i, body in enumerate(REQUESTS):
        write("plain_request", f"request-{i}", b"\x00" + compact(body))
    write("plain_request", "not-an-object", b"\x00[1,2]")
    data = {"departments": [{"id": "c", "title": "Cardiology"}], "n": 3, "x": 0.5, "f": False, "z": None}
    answers = {
        "next-screen": field(1, field(1, b"DETAILS") + field(2, pb_struct(data))),
        "next-screen-error": field(1, field(1, b"DETAILS") + field(2, pb_struct({})) + field(3, b"try again")),
        "success-as-screen": field(1, field(1, b"SUCCESS")),
        "not-finite": field(1, field(1, b"S") + field(2, pb_struct({"nan": float("nan"), "inf": float("inf")}))),
        "complete": field(2, field(1, pb_struct({"booking_id": "b-1", "n": 1}))),
        "token-invalid": field(3, field(1, b"This flow has expired.")),
        "no-outcome": b"",
    }
    for name, pb in answers.items():
        write("plain_request", f"proto-{name}", b"\x01" + short(b"tok-1") + pb)
    described = [
        {"screen": "DETAILS", "data": data, "error_message": "try again"},
        {"complete": {"booking_id": "b-1"}},
        {"token_invalid": ""},
    ]
    for i, d in enumerate(described):
        write("plain_request", f"json-{i}", b"\x02" + short(b"tok-1") + compact(d))


def key_load() -> None:
    for name in ("pkcs1.pem", "pkcs8.pem", "rotated.pem"):
        write("key_load", name, b"\x00" + short(b"") + (KEYS / name).read_bytes())
    encrypted = (KEYS / "pkcs8-encrypted.pem").read_bytes()
    write("key_load", "pkcs8-encrypted.pem", b"\x01" + short(b"flowgate-test") + encrypted)
    write("key_load", "pkcs8-encrypted-no-passphrase", b"\x00" + short(b"") + encrypted)
    pywa = PYWA["flow_request"]
    write("key_load", "pywa-3des", b"\x01" + short(pywa["private_key_password"].encode()) + pywa["private_key_pem"].encode())
    legacy = (b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
              b"DEK-Info: DES-EDE3-CBC,0011223344556677\n\nAAAA\n-----END RSA PRIVATE KEY-----\n")
    write("key_load", "legacy", b"\x00" + short(b"") + legacy)
    write("key_load", "with-text-around", b"\x00" + short(b"") + b"a certificate first\n"
          + (KEYS / "pkcs1.pub.pem").read_bytes() + (KEYS / "pkcs8.pem").read_bytes() + b"trailing\n")


def examples(screen: dict) -> dict:
    return {k: v.get("__example__") for k, v in screen.get("data", {}).items()}


def flow_json() -> None:
    for name, flow in FLOWS.items():
        write("flow_json", f"{name}.json", b"\x00" + (ROOT / f"flow-service/flows/{name}.json").read_bytes())
    # The signup flow without an endpoint: no data_api_version, no routing model, and its
    # data_exchange replaced by a navigate with the same payload.
    signup = json.loads(json.dumps(FLOWS["signup"]))
    del signup["data_api_version"], signup["routing_model"]
    text = json.dumps(signup).replace('"name": "data_exchange"', '"name": "navigate", "next": {"type": "screen", "name": "CONFIRMATION_SCREEN"}')
    write("flow_json", "signup-no-endpoint.json", b"\x00" + text.encode())
    for index, (name, flow) in enumerate(FLOWS.items()):
        screens = flow["screens"]
        for action in range(3):
            for screen in screens:
                answer = {"screen": screen["id"], "data": examples(screen)}
                frm = screens[0]["id"].encode()
                write("flow_json", f"{name}-{action}-{screen['id']}",
                      bytes([1, index, action]) + short(frm) + compact(answer))
        last = screens[-1]["id"].encode()
        write("flow_json", f"{name}-complete", bytes([1, index, 1]) + short(last) + compact({"complete": {"id": 1}}))
        write("flow_json", f"{name}-token-invalid", bytes([1, index, 0]) + short(b"") + compact({"token_invalid": "gone"}))


SECRET = b"0123456789abcdef0123456789abcdef"


def flow_token(claims: dict) -> str:
    signed = "v1." + b64url(compact(claims))
    mac = hmac.new(SECRET, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{b64url(mac)}"


def signed_token() -> None:
    claims = {"flow": "booking", "sub": "customer-7", "exp": 1_800_000_900, "nonce": "bm9uY2U"}
    write("signed_token", "token", b"\x00" + flow_token(claims).encode())
    write("signed_token", "token-expired", b"\x00" + flow_token({**claims, "exp": 1}).encode())
    write("signed_token", "unsigned", b"\x00tok-1")
    write("signed_token", "signed-part", b"\x01v1." + b64url(compact(claims)).encode())
    write("signed_token", "claims", b"\x02" + compact(claims))
    write("signed_token", "claims-other-flow", b"\x02" + compact({**claims, "flow": "signup"}))
    write("signed_token", "issue", b"\x03" + short(b"booking") + short(b"customer-7") + struct.pack(">H", 900))
    secret = PYWA["signature"]["app_secret"].encode()
    header = compact({"alg": "HS256", "typ": "JWT"})
    for name, jwt_claims in {"jwt": {"flow_token": "tok-1", "exp": 1_900_000_000},
                             "jwt-expired": {"flow_token": "tok-1", "exp": 1},
                             "jwt-no-claims": {}}.items():
        signed = f"{b64url(header)}.{b64url(compact(jwt_claims))}"
        mac = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
        write("signed_token", name, b"\x04" + short(b"tok-1") + f"{signed}.{b64url(mac)}".encode())
        write("signed_token", f"{name}-signed", b"\x05" + short(b"tok-1") + long(header) + compact(jwt_claims))
    write("signed_token", "jwt-alg-none", b"\x05" + short(b"tok-1") + long(compact({"alg": "none"})) + b"{}")


def media_decrypt() -> None:
    media = PYWA["media"]
    obj = {"media_id": "m-1", "cdn_url": "https://cdn.example/m-1", "file_name": "photo.jpg",
           "encryption_metadata": media["encryption_metadata"]}
    cdn = base64.b64decode(media["cdn_file_base64"])
    write("media_decrypt", "pywa", b"\x00" + long(compact(obj)) + cdn)
    write("media_decrypt", "pywa-bare-metadata", b"\x00" + long(compact(media["encryption_metadata"])) + cdn)
    keys = bytes(range(32)) + bytes(range(32, 64)) + bytes(range(64, 80))
    write("media_decrypt", "encrypt", b"\x01" + keys + bytes.fromhex(media["plaintext_first_bytes_hex"]))
    write("media_decrypt", "encrypt-empty", b"\x01" + keys)
    write("media_decrypt", "tamper", b"\x02" + keys + struct.pack(">H", 3) + b"\x80" + b"hello, media")
    write("media_decrypt", "truncate", b"\x02" + keys + struct.pack(">H", 20) + b"\x00" + b"hello, media")


if __name__ == "__main__":
    for target in ("envelope_open", "aead_open_json", "plain_request", "key_load", "flow_json",
                   "signed_token", "media_decrypt"):
        shutil.rmtree(SEEDS / target, ignore_errors=True)
        globals()[target]()
    for target in sorted(p for p in SEEDS.iterdir() if p.is_dir()):
        files = list(target.iterdir())
        print(f"{target.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")
