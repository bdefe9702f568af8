"""Configuration from the environment, with the runbook's names and defaults.

`Settings.from_env()` collects every problem before failing, so
`python -m api check-config` (the runbooks' env:validate) names all of them.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

ENV_FILE_HINT = "export it or put it in /etc/likes/api.env"


class ConfigError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    database_url: str
    client_id_secret: str
    client_id_secret_previous: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    rate_limit_window_ms: int = 60000
    rate_limit_max_requests: int = 60
    rate_limit_read_max_requests: int = 600
    cache_ttl_seconds: int = 10
    log_level: str = "INFO"
    log_file: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    request_max_size: int = 4096
    request_timeout: float = 5.0
    db_pool_min: int = 2
    db_pool_max: int = 10
    db_timeout_seconds: float = 2.0
    proxies_count: int = 0
    real_ip_header: str | None = None
    cors_allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    release: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        p = _Parser(env)
        s = cls(
            database_url=p.url("DATABASE_URL", ("postgresql", "postgres"), required=True),
            client_id_secret=p.secret("CLIENT_ID_SECRET", required=True),
            client_id_secret_previous=p.secret("CLIENT_ID_SECRET_PREVIOUS", required=False),
            redis_url=p.url("REDIS_URL", ("redis", "rediss"), default=cls.redis_url),
            rate_limit_window_ms=p.integer("RATE_LIMIT_WINDOW_MS", cls.rate_limit_window_ms, 1000, 86_400_000,
                                           multiple_of=1000),
            rate_limit_max_requests=p.integer("RATE_LIMIT_MAX_REQUESTS", cls.rate_limit_max_requests, 1, 1_000_000),
            rate_limit_read_max_requests=p.integer("RATE_LIMIT_READ_MAX_REQUESTS", cls.rate_limit_read_max_requests,
                                                   1, 10_000_000),
            cache_ttl_seconds=p.integer("CACHE_TTL_SECONDS", cls.cache_ttl_seconds, 1, 86_400),
            log_level=p.choice("LOG_LEVEL", cls.log_level, ("DEBUG", "INFO", "WARNING", "ERROR")),
            log_file=env.get("LOG_FILE") or None,
            host=p.string("HOST", cls.host),
            port=p.integer("PORT", cls.port, 1, 65535),
            workers=p.integer("WORKERS", cls.workers, 1, 64),
            request_max_size=p.integer("REQUEST_MAX_SIZE", cls.request_max_size, 256, 1_048_576),
            request_timeout=p.number("REQUEST_TIMEOUT", cls.request_timeout, 0.5, 120),
            db_pool_min=p.integer("DB_POOL_MIN", cls.db_pool_min, 1, 100),
            db_pool_max=p.integer("DB_POOL_MAX", cls.db_pool_max, 1, 500),
            db_timeout_seconds=p.number("DB_TIMEOUT_SECONDS", cls.db_timeout_seconds, 0.1, 60),
            proxies_count=p.integer("PROXIES_COUNT", cls.proxies_count, 0, 10),
            real_ip_header=env.get("REAL_IP_HEADER") or None,
            cors_allowed_origins=p.origins("CORS_ALLOWED_ORIGINS"),
            release=p.release("LIKES_RELEASE"),
        )
        if not p.problems and s.db_pool_min > s.db_pool_max:
            p.problems.append(f"DB_POOL_MIN ({s.db_pool_min}) is larger than DB_POOL_MAX ({s.db_pool_max})")
        if not p.problems and s.rate_limit_read_max_requests < s.rate_limit_max_requests:
            p.problems.append("RATE_LIMIT_READ_MAX_REQUESTS must be at least RATE_LIMIT_MAX_REQUESTS: reads get the higher limit")
        if p.problems:
            raise ConfigError(p.problems)
        return s

    @property
    def rate_limit_window_seconds(self) -> int:
        return self.rate_limit_window_ms // 1000


class _Parser:
    def __init__(self, env: dict[str, str]):
        self.env = env
        self.problems: list[str] = []

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def string(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def url(self, name: str, schemes: tuple[str, ...], default: str = "", required: bool = False) -> str:
        value = self._raw(name)
        if value is None:
            if required:
                self.problems.append(f"{name} is not set: {ENV_FILE_HINT}")
            return default
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            self.problems.append(f"{name} must be a {schemes[0]}:// URL with a host, got scheme {parts.scheme or 'none'!r}")
        return value

    def secret(self, name: str, required: bool) -> str | None:
        value = self._raw(name)
        if value is None:
            if required:
                self.problems.append(f"{name} is not set: {ENV_FILE_HINT} (generate one with: openssl rand -hex 32)")
            return None
        if len(value) < 32:
            self.problems.append(f"{name} is too short ({len(value)} characters): use at least 32, e.g. openssl rand -hex 32")
        return value

    def integer(self, name: str, default: int, lo: int, hi: int, multiple_of: int = 1) -> int:
        value = self._raw(name)
        if value is None:
            return default
        if not re.fullmatch(r"-?\d+", value):
            self.problems.append(f"{name} must be a whole number, got {value!r}")
            return default
        n = int(value)
        if not lo <= n <= hi:
            self.problems.append(f"{name} must be between {lo} and {hi}, got {n}")
        elif n % multiple_of:
            self.problems.append(f"{name} must be a multiple of {multiple_of}, got {n}")
        return n

    def number(self, name: str, default: float, lo: float, hi: float) -> float:
        value = self._raw(name)
        if value is None:
            return default
        try:
            n = float(value)
        except ValueError:
            self.problems.append(f"{name} must be a number, got {value!r}")
            return default
        if not lo <= n <= hi:
            self.problems.append(f"{name} must be between {lo} and {hi}, got {value}")
        return n

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self._raw(name)
        if value is None:
            return default
        if value.upper() not in choices:
            self.problems.append(f"{name} must be one of {', '.join(choices)}, got {value!r}")
            return default
        return value.upper()

    def release(self, name: str) -> str | None:
        value = self._raw(name)
        if value is not None and not re.fullmatch(r"[A-Za-z0-9._+-]{1,64}", value):
            self.problems.append(f"{name} must be 1-64 characters from A-Z a-z 0-9 . _ + -, got {value!r}")
            return None
        return value

    def origins(self, name: str) -> tuple[str, ...]:
        value = self._raw(name)
        if value is None:
            return ()
        # Browsers send the Origin header lower-case and without a default port.
        origins = tuple(o.strip().rstrip("/").lower() for o in value.split(",") if o.strip())
        for o in origins:
            parts = urlsplit(o)
            try:
                port = parts.port
            except ValueError:
                port = -1
            if (parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query
                    or parts.username or port == -1):
                self.problems.append(f"{name} entries must be origins like https://example.com, got {o!r}")
            elif (parts.scheme, port) in (("http", 80), ("https", 443)):
                self.problems.append(f"{name}: write {o!r} without its default port, as browsers send it")
        return origins
