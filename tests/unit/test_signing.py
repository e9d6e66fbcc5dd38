"""Signatures of ingress records (shared/signing.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.signing import (
    HEADER_SIGNATURE,
    SignatureProblem,
    SignedHeaders,
    SigningKey,
    derive_secret,
    format_signed_at,
    parse_signed_at,
    sign,
    string_to_sign,
    verify,
)

KEY = SigningKey("viewer-1.k1", b"s" * 32)
AT = datetime(2026, 1, 5, 9, 30, 0, 123456, tzinfo=UTC)
WINDOW = timedelta(minutes=5)


def _check(value: bytes, headers: list[tuple[str, bytes]], secret: bytes = KEY.secret) -> object:
    signed = SignedHeaders.read(headers)
    assert signed is not None
    return verify(value, signed, secret, AT, WINDOW).problem


def test_a_signed_record_verifies() -> None:
    assert _check(b"{}", sign(b"{}", KEY, AT)) is None


def test_the_string_to_sign_is_the_documented_one() -> None:
    text = string_to_sign("k", "2026-01-05T09:30:00.123Z", b"{}")
    assert text == (
        b"consilium-hmac-sha256/v1\nk\n2026-01-05T09:30:00.123Z\n"
        b"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )


def test_changing_one_byte_breaks_the_signature() -> None:
    assert _check(b"{ }", sign(b"{}", KEY, AT)) == SignatureProblem.BAD_SIGNATURE


def test_a_signature_made_with_another_secret_is_forged() -> None:
    assert _check(b"{}", sign(b"{}", SigningKey(KEY.key_id, b"x" * 32), AT)) == (
        SignatureProblem.BAD_SIGNATURE
    )


def test_a_signature_outside_the_window_has_expired() -> None:
    late = sign(b"{}", KEY, AT - timedelta(minutes=5, seconds=1))
    early = sign(b"{}", KEY, AT + timedelta(minutes=6))
    assert _check(b"{}", late) == SignatureProblem.SIGNATURE_EXPIRED
    assert _check(b"{}", early) == SignatureProblem.SIGNATURE_EXPIRED


def test_missing_or_repeated_headers_read_as_unsigned() -> None:
    headers = sign(b"{}", KEY, AT)
    assert SignedHeaders.read(headers[:2]) is None
    assert SignedHeaders.read([*headers, (HEADER_SIGNATURE, b"00")]) is None


def test_signed_at_has_one_form() -> None:
    assert format_signed_at(AT) == "2026-01-05T09:30:00.123Z"
    assert parse_signed_at("2026-01-05T09:30:00.123Z") == AT.replace(microsecond=123000)
    for bad in ("2026-01-05T09:30:00Z", "2026-01-05 09:30:00.123Z", "1767605400"):
        try:
            parse_signed_at(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_derived_secrets_differ_per_key_and_salt() -> None:
    master = b"m"
    assert derive_secret(master, "k1", "a") != derive_secret(master, "k2", "a")
    assert derive_secret(master, "k1", "a") != derive_secret(master, "k1", "b")
    assert derive_secret(master, "k1", "a") == derive_secret(master, "k1", "a")
    assert "secret" not in repr(KEY) and "sss" not in repr(KEY)
