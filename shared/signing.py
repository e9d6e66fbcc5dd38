"""HMAC-SHA256 signatures of ingress events, for front-ends (signing) and submission (checking).

A front-end signs the exact bytes of the Kafka record value it publishes. Three Kafka
headers carry the signature:

    consilium-key-id     the key id issued by `consilium clients register` / `rotate`
    consilium-signed-at  when it signed, RFC 3339 UTC with milliseconds
                         (2026-01-05T09:30:00.000Z)
    consilium-signature  lowercase hex HMAC-SHA256(secret, string_to_sign)

    string_to_sign = "consilium-hmac-sha256/v1\\n" + key_id + "\\n" + signed_at + "\\n"
                     + lowercase hex SHA-256 of the record value

Signing the bytes, not a re-serialised payload, means any change to any byte (a
tampered value, another event id) breaks the signature, and no two JSON libraries have
to agree on a canonical form. The pure functions here do no I/O; the key registry lives
in the submission service (docs/SUBMISSION.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

SCHEME = "consilium-hmac-sha256/v1"
HEADER_KEY_ID = "consilium-key-id"
HEADER_SIGNED_AT = "consilium-signed-at"
HEADER_SIGNATURE = "consilium-signature"
SIGNATURE_HEADERS = (HEADER_KEY_ID, HEADER_SIGNED_AT, HEADER_SIGNATURE)

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class SigningKey:
    """A front-end's key: the id it names in headers and the shared secret."""

    key_id: str
    secret: bytes

    def __repr__(self) -> str:  # never print the secret
        return f"SigningKey(key_id={self.key_id!r})"


def format_signed_at(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, the only accepted form of `consilium-signed-at`."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_signed_at(text: str) -> datetime:
    """The inverse of `format_signed_at`; raises ValueError for any other form."""
    if len(text) != 24 or not text.endswith("Z"):
        raise ValueError(f"signed-at {text!r} is not YYYY-MM-DDTHH:MM:SS.mmmZ")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def string_to_sign(key_id: str, signed_at: str, value: bytes) -> bytes:
    digest = hashlib.sha256(value).hexdigest()
    return f"{SCHEME}\n{key_id}\n{signed_at}\n{digest}".encode()


def signature(secret: bytes, key_id: str, signed_at: str, value: bytes) -> str:
    return hmac.new(secret, string_to_sign(key_id, signed_at, value), hashlib.sha256).hexdigest()


def sign(value: bytes, key: SigningKey, signed_at: datetime | None = None) -> Headers:
    """The three signature headers for a record value (add them to the Kafka record)."""
    stamp = format_signed_at(signed_at or datetime.now(UTC))
    return [
        (HEADER_KEY_ID, key.key_id.encode()),
        (HEADER_SIGNED_AT, stamp.encode()),
        (HEADER_SIGNATURE, signature(key.secret, key.key_id, stamp, value).encode()),
    ]


class SignatureProblem(StrEnum):
    """Why a signature does not hold; the values are submission's rejection codes."""

    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    SIGNATURE_EXPIRED = "signature_expired"


@dataclass(frozen=True)
class SignedHeaders:
    """The signature headers of one record, as read (not yet checked)."""

    key_id: str
    signed_at_text: str
    signature: str

    @classmethod
    def read(cls, headers: Iterable[tuple[str, bytes]]) -> SignedHeaders | None:
        """The headers, or None when any is missing, repeated or not ASCII."""
        found: dict[str, list[bytes]] = {}
        for name, value in headers:
            if name in SIGNATURE_HEADERS:
                found.setdefault(name, []).append(value)
        if any(len(found.get(name, ())) != 1 for name in SIGNATURE_HEADERS):
            return None
        try:
            key_id, signed_at, sig = (found[name][0].decode("ascii") for name in SIGNATURE_HEADERS)
        except UnicodeDecodeError:
            return None
        if not key_id or len(key_id) > 200:
            return None
        return cls(key_id, signed_at, sig)


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one signature: ok, or a problem with a human message."""

    problem: SignatureProblem | None
    message: str = ""
    signed_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(
    value: bytes,
    signed: SignedHeaders,
    secret: bytes,
    reference: datetime,
    window: timedelta,
) -> Verdict:
    """Check a record's signature against `secret`, and that it was signed within `window`
    of `reference` (the broker's append time of the record, see docs/SUBMISSION.md)."""
    try:
        signed_at = parse_signed_at(signed.signed_at_text)
    except ValueError as exc:
        return Verdict(SignatureProblem.BAD_SIGNATURE, str(exc))
    expected = signature(secret, signed.key_id, signed.signed_at_text, value)
    if not hmac.compare_digest(expected, signed.signature.lower()):
        return Verdict(
            SignatureProblem.BAD_SIGNATURE,
            f"the signature does not match the record's bytes for key {signed.key_id}",
        )
    skew = abs(reference - signed_at)
    if skew > window:
        return Verdict(
            SignatureProblem.SIGNATURE_EXPIRED,
            f"signed at {signed.signed_at_text}, {skew.total_seconds():.0f}s from the broker's "
            f"time; the window is {window.total_seconds():.0f}s",
            signed_at,
        )
    return Verdict(None, "", signed_at)


def derive_secret(master: bytes, key_id: str, salt: str) -> bytes:
    """A client key's secret, derived from the service's master key: the database keeps only
    the salt, so a copy of it alone cannot forge a signature."""
    return hmac.new(master, f"consilium-client-key\n{key_id}\n{salt}".encode(), "sha256").digest()


def fingerprint(secret: bytes) -> str:
    """A short, non-secret identifier of a secret (to tell keys apart in listings)."""
    return hashlib.sha256(b"consilium-fingerprint\n" + secret).hexdigest()[:16]


def new_salt() -> str:
    return secrets.token_hex(16)


def secret_from_text(text: str) -> bytes:
    """Secrets travel as lowercase hex (what `consilium clients register` prints)."""
    return bytes.fromhex(text.strip())


def header_map(headers: Mapping[str, str]) -> Headers:
    """Text headers as the (name, bytes) pairs Kafka clients expect."""
    return [(name, value.encode()) for name, value in headers.items()]
