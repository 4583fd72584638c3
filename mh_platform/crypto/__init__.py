"""Field-level encryption, key hierarchy, blind indexes and crypto-shredding (pure).

Modules: ``envelope`` (AES-256-GCM versioned envelope bound to table/column/row), ``keyring``
(master keys, wrapped data keys, the in-process keyring), ``blind_index`` (HMAC-SHA256 exact-match
indexes), ``shredding`` (per-student key lifecycle and the erasure ledger). Design: docs/crypto.md.

``self_test()`` runs published known-answer vectors through the primitives the package uses; the
app calls it at start-up and refuses to serve if it raises.
"""

from __future__ import annotations

from hmac import compare_digest

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SelfTestFailed(RuntimeError):
    """A known-answer test did not reproduce its published value: do not start."""


# AES-256-GCM: McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16.
_GCM_K = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
_GCM_IV = "cafebabefacedbaddecaf888"
_GCM_P = (
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
)
_GCM_A = "feedfacedeadbeeffeedfacedeadbeefabaddad2"
_GCM_CT = (
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
    "76fc6ece0f4e1768cddf8853bb2d551b"
)
# HMAC-SHA256: RFC 4231 test case 2.
_HMAC_OUT = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
# HKDF-SHA256: RFC 5869 test case 1.
_HKDF_OUT = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"


def self_test() -> None:
    """Known-answer tests for AES-256-GCM (seal and open), HMAC-SHA256 and HKDF-SHA256."""
    gcm = AESGCM(bytes.fromhex(_GCM_K))
    iv, p, a, ct = (bytes.fromhex(x) for x in (_GCM_IV, _GCM_P, _GCM_A, _GCM_CT))
    if not compare_digest(gcm.encrypt(iv, p, a), ct) or gcm.decrypt(iv, ct, a) != p:
        raise SelfTestFailed("AES-256-GCM known-answer test failed")
    h = crypto_hmac.HMAC(b"Jefe", hashes.SHA256())
    h.update(b"what do ya want for nothing?")
    if not compare_digest(h.finalize(), bytes.fromhex(_HMAC_OUT)):
        raise SelfTestFailed("HMAC-SHA256 known-answer test failed")
    okm = HKDF(hashes.SHA256(), 42, bytes(range(13)), bytes(range(0xF0, 0xFA))).derive(b"\x0b" * 22)
    if not compare_digest(okm, bytes.fromhex(_HKDF_OUT)):
        raise SelfTestFailed("HKDF-SHA256 known-answer test failed")
