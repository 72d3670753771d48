"""A CloudWatch Logs client shared by threads: one rate limiter, retries with backoff and jitter."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from logferry.aws import session
from logferry.errors import ConfigError, SourceError

#: Default quotas per account and region (requests per second), from the CloudWatch Logs docs.
DEFAULT_RATES = {
    "GetLogEvents": 25.0,
    "DescribeLogStreams": 5.0,
    "DescribeLogGroups": 5.0,
    "FilterLogEvents": 5.0,
}
_RETRYABLE_CODES = {
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ServiceUnavailableException",
    "InternalFailure",
    "LimitExceededException",
}
_TRANSIENT_ERRORS = (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError)


class StreamNotFoundError(SourceError):
    """The log group or stream does not exist (deleted, or never created)."""


class InvalidTokenError(SourceError):
    """CloudWatch no longer accepts a saved forward token (it expired)."""


class TokenBucket:
    """Requests per second with a small burst; callers reserve a slot and sleep outside the lock."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._tokens = self.burst
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until one request may go."""
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            # Going negative reserves a future slot, so waiters are served in order.
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


class RateLimiter:
    """One token bucket per API operation, shared by every thread of a process."""

    def __init__(self, rates: dict[str, float] | None = None) -> None:
        merged = {**DEFAULT_RATES, **(rates or {})}
        self._buckets = {op: TokenBucket(rate) for op, rate in merged.items()}

    def acquire(self, operation: str) -> None:
        """Wait for a slot of ``operation`` (operations without a quota go at once)."""
        bucket = self._buckets.get(operation)
        if bucket is not None:
            bucket.acquire()


@dataclass
class ClientStats:
    """Counters for status output and tests."""

    requests: int = 0
    throttled: int = 0
    retries: int = 0


class LogsClient:
    """boto3 ``logs`` client behind the rate limiter, retrying throttling and cut connections.

    botocore's own retries are off so that every attempt passes through the limiter and the
    throttling count is ours to report.
    """

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        limiter: RateLimiter | None = None,
        max_attempts: int = 8,
        base_delay: float = 0.2,
        max_delay: float = 20.0,
        pool_size: int = 16,
    ) -> None:
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=pool_size,
            connect_timeout=10,
            read_timeout=60,
        )
        try:
            self._client = session(profile, region).client(
                "logs", endpoint_url=endpoint_url or None, config=config
            )
        except NoRegionError:
            raise ConfigError(
                "no AWS region: set AWS_REGION / AWS_DEFAULT_REGION, a profile, or --region"
            ) from None
        except ValueError as exc:  # e.g. an empty region makes an invalid endpoint
            raise ConfigError(
                f"cannot create the CloudWatch Logs client ({exc}): check AWS_REGION and "
                "--endpoint-url"
            ) from None
        self.limiter = limiter or RateLimiter()
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.stats = ClientStats()
        self._stats_lock = threading.Lock()

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call ``operation`` (``GetLogEvents``…) with retries; raise our errors, one line each."""
        method = getattr(self._client, _snake(operation))
        for attempt in range(self.max_attempts):
            self.limiter.acquire(operation)
            self._count(requests=1)
            try:
                result: dict[str, Any] = method(**params)
                return result
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                message = exc.response.get("Error", {}).get("Message", "") or code
                if code in _RETRYABLE_CODES and attempt + 1 < self.max_attempts:
                    self._count(throttled=1, retries=1)
                    self._backoff(attempt)
                    continue
                if code == "ResourceNotFoundException":
                    raise StreamNotFoundError(f"{operation}: {message}") from None
                if code == "InvalidParameterException" and "token" in message.lower():
                    raise InvalidTokenError(f"{operation}: {message}") from None
                if code in {"AccessDeniedException", "UnrecognizedClientException"}:
                    raise ConfigError(
                        f"{operation} was refused ({code}): check the AWS credentials and region"
                    ) from None
                raise SourceError(
                    f"{operation} failed: {code}: {message}", transient=code in _RETRYABLE_CODES
                ) from None
            except NoCredentialsError:
                raise ConfigError(
                    "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
                ) from None
            except _TRANSIENT_ERRORS as exc:
                if attempt + 1 < self.max_attempts:
                    self._count(retries=1)
                    self._backoff(attempt)
                    continue
                raise SourceError(f"{operation} failed: {exc}", transient=True) from None
            except BotoCoreError as exc:
                raise SourceError(f"{operation} failed: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> None:
        # Full jitter (AWS architecture blog): spreads the retries of many threads apart.
        time.sleep(random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt)))

    def groups(self, prefix: str = "") -> Iterator[dict[str, Any]]:
        """Log groups whose name starts with ``prefix``, by name."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {}
            if prefix:
                params["logGroupNamePrefix"] = prefix
            if token:
                params["nextToken"] = token
            page = self.call("DescribeLogGroups", **params)
            yield from page.get("logGroups", [])
            token = page.get("nextToken")
            if not token:
                return

    def streams(
        self, group: str, prefix: str = "", order: str = "name"
    ) -> Iterator[dict[str, Any]]:
        """Streams of ``group`` (by name, or newest event first with ``order='last-event'``)."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {"logGroupName": group}
            if order == "last-event":
                params.update(orderBy="LastEventTime", descending=True)
            elif prefix:
                params["logStreamNamePrefix"] = prefix  # AWS refuses a prefix with LastEventTime
            if token:
                params["nextToken"] = token
            page = self.call("DescribeLogStreams", **params)
            for stream in page.get("logStreams", []):
                if stream["logStreamName"].startswith(prefix):
                    yield stream
            token = page.get("nextToken")
            if not token:
                return


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
