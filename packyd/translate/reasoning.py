"""packyd's thinking-block signature: the carrier for upstream encrypted reasoning.

Under ``store: false`` the upstream keeps nothing, so a reasoning item can only be continued by
replaying its final ``encrypted_content``. Claude Code echoes a thinking block's ``signature``
byte for byte on the next turn, so the blob travels there, behind a versioned prefix that makes
packyd's own signatures recognisable: real Anthropic signatures (or other proxies') are not
replayable upstream and are dropped instead of causing ``invalid_encrypted_content``.

Nothing else is needed in the envelope: the item id must not be replayed under
``store: false`` (the server would try to load it), and the summary is rebuilt as empty.
The blob is already URL-safe base64, so it is carried as is, without a second encoding that
would grow every turn's history by a third.
"""

from __future__ import annotations

import re

__all__ = ["SIGNATURE_PREFIX", "pack_signature", "unpack_signature", "is_packyd_signature"]

SIGNATURE_PREFIX = "pky1:"
# Fernet-style tokens and other opaque blobs: URL-safe or standard base64 alphabet.
_BLOB = re.compile(r"^[A-Za-z0-9_\-+/=.]*$")


def pack_signature(encrypted_content: str | None) -> str:
    """Signature for a thinking block; an item without a blob still gets a packyd signature
    so that it is recognised (and skipped) when it comes back."""
    return SIGNATURE_PREFIX + (encrypted_content or "")


def is_packyd_signature(signature: str) -> bool:
    return signature.startswith(SIGNATURE_PREFIX)


def unpack_signature(signature: str) -> str | None:
    """The ``encrypted_content`` inside a packyd signature, or None when the signature is
    foreign, empty, or damaged (a corrupt blob would fail the whole upstream request)."""
    if not signature.startswith(SIGNATURE_PREFIX):
        return None
    blob = signature[len(SIGNATURE_PREFIX) :]
    if not blob or not _BLOB.match(blob):
        return None
    return blob
