"""The dashboard's sign-in: one-time login codes, and the session cookie they buy.

A browser cannot send the bearer token on an ``EventSource`` or a page load, and
the token must not sit in URLs (history, logs). So ``shoal dashboard`` makes a
random code and hands only its SHA-256 to the orchestrator (``api.login``: every
message is recorded, the code never is); the URL it prints, ``/login?code=...``,
is good once, for ``CODE_TTL`` seconds. Redeeming it sets an ``HttpOnly``,
``SameSite=Strict`` cookie: ``<expires>.<nonce>.<HMAC>``, keyed with
``$SHOAL_HOME/api.session-key`` (0600, made once), so sessions outlive an
orchestrator restart (the page reconnects) and deleting the key ends them all.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from pathlib import Path

from shoal.paths import Home

CODE_TTL = 120.0
"""Seconds a login code stays good (it is good once)."""
SESSION_TTL = 12 * 3600
"""Seconds a session cookie stays good."""
_CODES_MAX = 64


def new_code() -> str:
    return secrets.token_urlsafe(24)


def code_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def cookie_name(home: Home) -> str:
    """Cookies are per host, not per port: one name per home, so two APIs do not clash."""
    return "shoal_session_" + hashlib.sha256(str(home.root).encode()).hexdigest()[:10]


def key_file(home: Home) -> Path:
    return home.root / "api.session-key"


def _key(home: Home) -> bytes:
    path = key_file(home)
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        pass
    home.ensure()
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    os.chmod(path, 0o600)
    return key


class Sessions:
    """Login codes waiting to be redeemed (in memory) and the cookies' key (on disk)."""

    def __init__(self, home: Home) -> None:
        self.cookie = cookie_name(home)
        self._key = _key(home)
        self._codes: dict[str, float] = {}
        """By the code's SHA-256: when it expires."""
        self._lock = threading.Lock()

    def add_code(self, digest: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._codes = {d: t for d, t in self._codes.items() if t > now}
            if len(self._codes) >= _CODES_MAX:  # nobody needs more; refuse a flood
                raise ValueError("too many login codes waiting; use one of them")
            self._codes[digest] = now + CODE_TTL

    def redeem(self, code: str, now: float | None = None) -> str | None:
        """The session cookie's value for a good code (used up now), else None."""
        now = time.time() if now is None else now
        with self._lock:
            expires = self._codes.pop(code_digest(code), None)
        if expires is None or expires <= now:
            return None
        return self.mint(now)

    def mint(self, now: float) -> str:
        body = f"{int(now + SESSION_TTL)}.{secrets.token_hex(8)}"
        return f"{body}.{self._mac(body)}"

    def valid(self, value: str, now: float | None = None) -> bool:
        body, _, mac = value.rpartition(".")
        expires = body.partition(".")[0]
        if not (body and expires.isdigit()):
            return False
        if not hmac.compare_digest(mac, self._mac(body)):
            return False
        return int(expires) > (time.time() if now is None else now)

    def of_request(self, cookie_header: str) -> bool:
        """Whether a request's ``Cookie`` header carries a good session."""
        for part in cookie_header.split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie and self.valid(value):
                return True
        return False

    def set_cookie(self, value: str) -> str:
        return f"{self.cookie}={value}; Path=/; Max-Age={SESSION_TTL}; HttpOnly; SameSite=Strict"

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
