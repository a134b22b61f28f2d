"""Standard Webhooks signatures: signing a delivery, and checking a saved one.

Stdlib only, so the operator's commands and receivers (`foreman.webhooks`) can verify a
delivery without the webhook client's HTTP stack (docs/contract.md section 5, docs/adr/0016).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping


def signing_key(secret: str) -> bytes:
    """`whsec_<base64>` means the decoded bytes (Standard Webhooks); anything else its UTF-8 bytes."""
    if not secret.startswith("whsec_"):
        return secret.encode()
    try:
        # Padding added as the standardwebhooks library does, so unpadded secrets agree with it.
        key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    except (binascii.Error, ValueError):
        raise ValueError("webhook_secret starts with whsec_ but the rest is not base64") from None
    if not key:
        raise ValueError("webhook_secret starts with whsec_ but decodes to no bytes")
    return key


def signature_headers(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The signed headers of one attempt: Standard Webhooks' three plus `X-Foreman-Signature`."""
    return signed_headers(signing_key(secret), event_id, timestamp, body)


def signed_headers(key: bytes, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    standard = hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(standard).decode(),
        "X-Foreman-Signature": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
    }


def verify_delivery(secret: str, headers: Mapping[str, str], body: bytes, tolerance: float | None) -> list[str]:
    """What is wrong with a delivery (nothing: an empty list): both signatures must match the body
    and the secret, and with `tolerance`, the timestamp be at most that many seconds from now.
    Header names in any case."""
    headers = {name.lower(): value for name, value in headers.items()}
    problems = []
    event_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not event_id or not stamp.isdigit():
        return ["webhook-id or webhook-timestamp missing"]
    expected = signature_headers(secret, event_id, int(stamp), body)
    given = headers.get("webhook-signature", "").split()
    if not any(hmac.compare_digest(sig, expected["webhook-signature"]) for sig in given):
        problems.append("webhook-signature does not match the body and secret")
    if not hmac.compare_digest(headers.get("x-foreman-signature", ""), expected["X-Foreman-Signature"]):
        problems.append("X-Foreman-Signature does not match the body and secret")
    if tolerance is not None and abs(time.time() - int(stamp)) > tolerance:
        problems.append(f"webhook-timestamp is more than {tolerance:g}s away from now")
    return problems
