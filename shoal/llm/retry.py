"""How long to wait before retrying a model call: backoff with jitter, or what the provider asks."""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping


def retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds the provider asks to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` is either seconds or an HTTP date; ``retry-after-ms`` is
    OpenAI's and Azure's finer-grained variant. None when absent or unreadable.
    """
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            value = float(lowered["retry-after-ms"]) / 1000
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    raw = lowered.get("retry-after", "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def backoff(retry: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform in ``[0, min(cap, base * 2**(retry-1))]``.

    Full jitter spreads actors that failed together (one rate limit hits the
    whole team) instead of having them retry in lockstep.
    """
    ceiling = min(cap, base * 2 ** max(retry - 1, 0))
    return (rng or random).uniform(0, ceiling)
