"""The front-end recipes in README.md ("Publishing a label"): the shell one, with openssl,
signs exactly as shared/signing.py does; docs/SUBMISSION.md explains every rejection code."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.events import RejectionCode
from shared.signing import parse_signed_at, signature

ROOT = Path(__file__).resolve().parents[2]
SECRET = bytes.fromhex("6b1f" * 16)
KEY_ID = "viewer-1.k3f9a0c1b2d4e"
SIGNED_AT = "2026-01-05T09:30:00.123Z"
# Bytes that a careless shell would mangle: quotes, a pipe, UTF-8, a trailing newline.
VALUE = '{"event_id":"5d3c","payload":{"item_id":"study-0001|Pneumothorax","note":"é"}}\n'


def _recipe() -> list[str]:
    """The lines of README's shell recipe, up to (not including) the kcat command."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Publishing a label (front-ends)", 1)[1].split("\n## ", 1)[0]
    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", section, re.S) if "openssl" in b]
    lines: list[str] = block.splitlines()
    return lines[: next(i for i, line in enumerate(lines) if line.startswith("kcat "))]


def _run(script: str, tmp_path: Path, **env: str) -> str:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


@openssl
def test_the_shell_recipe_signs_like_shared_signing(tmp_path: Path) -> None:
    (tmp_path / "label.json").write_bytes(VALUE.encode())
    lines = [
        line for line in _recipe() if not line.startswith(("KEY_ID=", "SECRET=", "SIGNED_AT="))
    ]
    shell = _run(
        "\n".join([*lines, 'echo "$SIGNATURE"']),
        tmp_path,
        KEY_ID=KEY_ID,
        SECRET=SECRET.hex(),
        SIGNED_AT=SIGNED_AT,
    )
    assert shell == signature(SECRET, KEY_ID, SIGNED_AT, VALUE.encode())


@openssl
def test_the_shell_recipe_stamps_signed_at_in_the_accepted_form(tmp_path: Path) -> None:
    (line,) = [line for line in _recipe() if line.startswith("SIGNED_AT=")]
    stamp = _run(f'{line}\necho "$SIGNED_AT"', tmp_path)
    parse_signed_at(stamp)  # raises unless YYYY-MM-DDTHH:MM:SS.mmmZ


def test_the_submission_guide_explains_every_rejection_code() -> None:
    guide = (ROOT / "docs" / "SUBMISSION.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", guide, re.M))
    assert {code.value for code in RejectionCode} <= set(rows)
    assert all(meaning.strip() for meaning in rows.values())


def test_the_python_example_publishes_a_signed_label(monkeypatch: pytest.MonkeyPatch) -> None:
    """README's Python example, run against a stand-in producer: it sends a decodable
    label.submitted keyed by the item, signed so that shared/signing.py verifies it."""
    import aiokafka

    from shared.events import REGISTRY
    from shared.signing import SignedHeaders, secret_from_text, verify

    sent: dict[str, Any] = {}

    class Producer:
        def __init__(self, **_: Any) -> None: ...
        async def start(self) -> None: ...
        async def stop(self) -> None: ...
        async def send_and_wait(self, topic: str, value: bytes, **kw: Any) -> None:
            sent.update(kw, topic=topic, value=value)

    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", Producer)
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Publishing a label (front-ends)", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```python\n(.*?)```", section, re.S)
    secret = "6b1f" * 16
    exec(example.replace('"6b1f...e0"', f'"{secret}"'), {"__name__": "readme_example"})

    event = REGISTRY.decode(sent["value"])
    assert sent["topic"] == "labels.submitted.v1" and event.event_type == "label.submitted"
    assert sent["key"] == event.payload.item_id.encode()
    signed = SignedHeaders.read(sent["headers"])
    assert signed is not None
    at = parse_signed_at(signed.signed_at_text)
    assert verify(sent["value"], signed, secret_from_text(secret), at, timedelta(0)).ok
