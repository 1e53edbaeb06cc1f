"""Test helpers for the OPA tests: HS256 tokens as OPA-Envoy's quick start expects them
(signed with "secret"), and that policy, read from its fixture."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

POLICY = Path(__file__).resolve().parents[1] / "data" / "opa_envoy_quick_start_policy.rego"


def quick_start_policy() -> str:
    return POLICY.read_text()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(role: str, sub: str = "alice", secret: bytes = b"secret", valid_for: int = 3600,
          **claims: Any) -> str:
    """A signed token valid from a minute ago for ``valid_for`` seconds (negative: expired)."""
    now = int(time.time())
    payload = {"role": role, "sub": _b64(sub.encode()), "nbf": now - 60,
               "exp": now + valid_for, **claims}
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"
