"""Flask-Limiter storage ``database://``: the counters in the platform's own database
(``services.rate_limits``), shared by every worker process and node — the default.

``create_app`` passes the app's ServiceContext as the storage option ``ctx``. Fixed-window limits
only (Flask-Limiter's default strategy, the one the platform uses): the class declares no moving or
sliding window support, so ``limits`` refuses those strategies on it rather than miscounting.
"""

from __future__ import annotations

import time
from typing import Any

from limits.storage import Storage

from mh_platform.services import rate_limits

SCHEME = "database"


class DatabaseStorage(Storage):
    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        ctx = options.pop("ctx", None)
        if ctx is None:
            raise ValueError("the database:// rate-limit storage needs the app's ServiceContext (option ctx)")
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self.ctx = ctx

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return rate_limits.STORAGE_ERRORS

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return rate_limits.hit(self.ctx, key, expiry, amount, time.time())

    def get(self, key: str) -> int:
        return rate_limits.count(self.ctx, key, time.time())

    def get_expiry(self, key: str) -> float:
        return rate_limits.window_end(self.ctx, key, time.time())

    def check(self) -> bool:
        return rate_limits.check(self.ctx)

    def reset(self) -> int | None:
        return rate_limits.clear_all(self.ctx)

    def clear(self, key: str) -> None:
        rate_limits.clear(self.ctx, key)
