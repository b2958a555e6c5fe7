"""SHA-2 hex digests, for the names derived from a network and a container
(iptables chains, nft comments, ifb devices).

Not hashlib: importing it loads OpenSSL's libcrypto through _hashlib, about 3 ms
of every exec that names a chain or an ifb device. The interpreter's own SHA-2
modules give the same digests without it.
"""
from __future__ import annotations

import sys

if sys.version_info >= (3, 12):
    from _sha2 import sha256, sha512  # one module for the family since Python 3.12
else:
    from _sha256 import sha256
    from _sha512 import sha512


def sha256_hex(text: str) -> str:
    return sha256(text.encode()).hexdigest()


def sha512_hex(text: str) -> str:
    return sha512(text.encode()).hexdigest()
