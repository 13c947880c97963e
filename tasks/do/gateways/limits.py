"""Gateways: rate limiting (a token bucket around any gateway) and retries with backoff."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tasks.do.gateways.base import (
    MAX_ERROR_LENGTH,
    Gateway,
    GatewayError,
    OutboundMessage,
    PermanentGatewayError,
    SendReceipt,
    TransientGatewayError,
    UnusableGatewayError,
    _Closing,
    _finish_after_failure,
    _refused,
    _scrub,
    log,
)


class Limiter(Protocol):
    """Anything that blocks until `n` sends are allowed."""

    def acquire(self, n: int = 1) -> object: ...


class RateLimiter:
    """A thread-safe token bucket: `per_second` tokens a second, at most `burst` saved up.

    `acquire(n)` takes `n` tokens, sleeping until they have accrued; `n` may exceed
    `burst` (the bucket goes into debt and the caller waits it off). Waiters are served in
    the order they called. This limits one process. Across workers on a Prefect server, use
    a global concurrency limit with slot decay instead (PLATFORM-NOTES; `rate_limit` warns
    and proceeds when the limit does not exist, so pass `strict=True`)::

        prefect gcl create gateway-sms --limit 50 --slot-decay-per-second 50

        from prefect.concurrency.sync import rate_limit

        class PrefectRateLimit:
            burst = 50                   # at most the limit: a bigger `occupy` never fits
            def acquire(self, n: int = 1) -> None:
                rate_limit("gateway-sms", occupy=n, strict=True)

        gateway = RateLimitedGateway(inner, PrefectRateLimit())
    """

    def __init__(
        self,
        per_second: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not per_second > 0:
            raise ValueError(f"per_second must be positive, got {per_second}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.per_second = float(per_second)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RateLimiter(per_second={self.per_second}, burst={self.burst})"

    def acquire(self, n: int = 1) -> float:
        """Take `n` tokens; returns the seconds slept."""
        if n < 0:
            raise ValueError(f"cannot acquire {n} tokens")
        if n == 0:
            return 0.0
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.per_second)
            self._updated = now
            self._tokens -= n
            wait = -self._tokens / self.per_second if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


class RateLimitedGateway(_Closing):
    """`inner` at the pace `limiter` allows, counted per message: the batch goes out in
    slices of `chunk_size` (default: the limiter's burst), each after its tokens."""

    def __init__(self, inner: Gateway, limiter: Limiter, chunk_size: int | None = None) -> None:
        self.inner = inner
        self.limiter = limiter
        self.chunk_size = max(1, chunk_size or int(getattr(limiter, "burst", 1)))
        self.name = inner.name

    def __repr__(self) -> str:
        return f"RateLimitedGateway({self.inner!r}, {self.limiter!r})"

    def close(self) -> None:
        self.inner.close()

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendReceipt]:
        receipts: list[SendReceipt] = []
        for start in range(0, len(messages), self.chunk_size):
            chunk = messages[start : start + self.chunk_size]
            self.limiter.acquire(len(chunk))
            try:
                receipts.extend(self.inner.send_batch(chunk))
            except GatewayError as exc:
                return _finish_after_failure(receipts, messages, exc)
        return receipts


class CircuitBreaker:
    """Stops calling a provider that keeps failing, for the rest of a dispatch run.

    It opens after `threshold` consecutive failed calls — a `TransientGatewayError`, or a
    call whose every message came back refused for now (`retryable`) — or at once with
    `trip` (a gateway that cannot be used as configured); a call with an accepted message
    starts the count again. Once open it stays open: the channel's remaining sends wait for
    the next run instead of being tried one by one against a provider that is down.
    `reason` is the last failure, for the summary.
    """

    def __init__(self, threshold: int = 3) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, got {threshold}")
        self.threshold = threshold
        self.failures = 0
        self.reason: str | None = None
        self.tripped = False

    def __repr__(self) -> str:
        return f"CircuitBreaker(failures={self.failures}, open={self.open})"

    @property
    def open(self) -> bool:
        return self.tripped or self.failures >= self.threshold

    def failure(self, reason: str) -> None:
        """One more failed call in a row."""
        self.failures += 1
        self.reason = reason

    def trip(self, reason: str) -> None:
        """Open now: the provider cannot be used as configured."""
        self.tripped, self.reason = True, reason

    def record(self, receipts: Sequence[SendReceipt]) -> None:
        """A call's receipts: an accepted message closes the count, all refused for now is
        one more failure."""
        if any(receipt.accepted for receipt in receipts):
            self.failures = 0
        elif receipts and all(receipt.retryable for receipt in receipts):
            errors = [receipt.error for receipt in receipts if receipt.error]
            self.failure(
                f"{len(receipts)} messages refused for now" + (f": {errors[0]}" if errors else "")
            )


def send_with_retries(
    gateway: Gateway,
    messages: Sequence[OutboundMessage],
    attempts: int = 3,
    base_delay: float = 0.5,
    *,
    max_delay: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    breaker: CircuitBreaker | None = None,
) -> list[SendReceipt]:
    """`gateway.send_batch(messages)`, tried up to `attempts` times in all.

    Retried: a `TransientGatewayError` (the whole batch again), and the messages whose
    receipts are `retryable` (only those). The wait before try k+1 is `base_delay · 2^(k-1)`
    seconds, at least the provider's `Retry-After`, at most `max_delay`. A
    `PermanentGatewayError` is raised at once. When the tries run out — or `breaker` opens:
    the provider failed too many times in a row — the last `TransientGatewayError` is
    raised if nothing was accepted; otherwise the messages still unsent get failed,
    retryable receipts. One receipt per message, in order.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    keys = [message.idempotency_key for message in messages]
    if len(set(keys)) != len(keys):
        raise ValueError("idempotency keys repeat within the batch")
    final: dict[str, SendReceipt] = {}
    pending = list(messages)
    for attempt in range(1, attempts + 1):
        delay = min(max_delay, base_delay * 2 ** (attempt - 1))
        try:
            receipts = gateway.send_batch(pending)
        except TransientGatewayError as exc:
            if breaker is not None:
                breaker.failure(str(exc))
            if attempt == attempts or (breaker is not None and breaker.open):
                if not any(receipt.accepted for receipt in final.values()):
                    raise
                for message in pending:
                    final[message.idempotency_key] = _refused(message, str(exc), True)
                break
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, max_delay))
            log.warning(
                "%s: try %d of %d failed (%s); retrying %d messages in %.2f s",
                gateway.name,
                attempt,
                attempts,
                exc,
                len(pending),
                delay,
            )
            sleep(delay)
            continue
        if [receipt.idempotency_key for receipt in receipts] != [
            message.idempotency_key for message in pending
        ]:
            raise RuntimeError(f"{gateway.name}: receipts do not match the messages sent")
        final.update((receipt.idempotency_key, receipt) for receipt in receipts)
        pending = [
            message
            for message, receipt in zip(pending, receipts, strict=True)
            if not receipt.accepted and receipt.retryable
        ]
        if breaker is not None:
            breaker.record(receipts)
        if not pending or attempt == attempts or (breaker is not None and breaker.open):
            break
        log.warning(
            "%s: %d messages refused for now; retrying them in %.2f s",
            gateway.name,
            len(pending),
            delay,
        )
        sleep(delay)
    return [final[key] for key in keys]


def retry_on_transient(task: object, task_run: object, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry the task only on a `TransientGatewayError`."""
    try:
        state.result()
    except TransientGatewayError:
        return True
    except Exception:
        return False
    return False


def provider_receipts(
    gateway: Gateway, messages: Sequence[OutboundMessage], breaker: CircuitBreaker
) -> list[SendReceipt]:
    """The gateway's receipts for `messages`, retried; never an exception, so that one
    provider's failure stays on its channel. A call that fails as a whole answers every
    message alike: not accepted, `retryable` (left for the next run) unless the provider
    refused the request for good (a `PermanentGatewayError`: the sends fail). An open
    `breaker` means the provider is down: the messages are not tried."""
    retryable = True
    if breaker.open:
        reason = f"not tried, {gateway.name} kept failing: {breaker.reason}"
    else:
        try:
            return send_with_retries(gateway, messages, breaker=breaker)
        except TransientGatewayError as exc:
            reason = str(exc)
        except PermanentGatewayError as exc:
            reason, retryable = str(exc), False
        except UnusableGatewayError as exc:
            reason = str(exc)
            breaker.trip(reason)
        except Exception as exc:  # a provider's answer nobody foresaw: its channel waits
            reason = f"{gateway.name}: unexpected {type(exc).__name__}: {_scrub(str(exc))}"
            log.warning("%s; its sends are left for the next run", reason)
            log.debug("%s failed", gateway.name, exc_info=True)
            breaker.failure(reason)
    reason = reason[:MAX_ERROR_LENGTH]
    return [
        SendReceipt(message.idempotency_key, False, None, error=reason, retryable=retryable)
        for message in messages
    ]
