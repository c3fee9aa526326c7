"""The retry policy from a table, and the client's retry loop without real waiting."""

from __future__ import annotations

import pytest

from opshift import (
    AuthenticationError,
    ConfigurationError,
    NetworkError,
    OpShift,
    OpShiftError,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
)
from opshift._retry import backoff_wait
from opshift.testing import FakeTransport

from .helpers import SECRET, refused_url


def _error(status: int) -> OpShiftError:
    if status == 0:
        return NetworkError("down")
    if status >= 500:
        return ServerError("5xx", status_code=status)
    return OpShiftError("other", status_code=status)


@pytest.mark.parametrize(
    ("status", "attempt", "remaining", "rand", "expected"),
    [
        pytest.param(503, 1, 30.0, 1.0, 0.5, id="first-retry-full-jitter-top"),
        pytest.param(503, 1, 30.0, 0.0, 0.0, id="first-retry-jitter-bottom"),
        pytest.param(500, 2, 30.0, 0.5, 0.5, id="second-retry-doubles"),
        pytest.param(502, 2, 30.0, 1.0, 1.0, id="502"),
        pytest.param(504, 2, 30.0, 1.0, 1.0, id="504"),
        pytest.param(0, 1, 30.0, 1.0, 0.5, id="network-error"),
        pytest.param(503, 3, 30.0, 1.0, None, id="out-of-retries"),
        pytest.param(501, 1, 30.0, 1.0, None, id="501-not-retried"),
        pytest.param(505, 1, 30.0, 1.0, None, id="505-not-retried"),
        pytest.param(400, 1, 30.0, 1.0, None, id="400"),
        pytest.param(401, 1, 30.0, 1.0, None, id="401"),
        pytest.param(404, 1, 30.0, 1.0, None, id="404"),
        pytest.param(429, 1, 30.0, 1.0, None, id="429"),
        pytest.param(301, 1, 30.0, 1.0, None, id="redirect"),
        pytest.param(503, 1, 1.4, 1.0, None, id="no-room-after-backoff"),
        pytest.param(503, 1, 1.6, 1.0, 0.5, id="just-enough-room"),
    ],
)
def test_policy(
    status: int, attempt: int, remaining: float, rand: float, expected: float | None
) -> None:
    """Each row: which failures are retried, after how long, and when the deadline forbids it."""
    policy = RetryPolicy(max_retries=2, backoff=0.5, random=lambda: rand)
    assert policy.delay(_error(status), attempt, remaining, 30.0) == expected


def test_backoff_is_capped() -> None:
    """The doubling stops at backoff_max."""
    policy = RetryPolicy(max_retries=20, backoff=0.5, backoff_max=8.0, random=lambda: 1.0)
    assert policy.delay(_error(503), 15, 1000.0, 1000.0) == 8.0


@pytest.mark.parametrize(
    ("failures", "base", "cap", "jitter", "expected"),
    [
        pytest.param(1, 0.5, 8.0, 1.0, 0.5, id="first-wait-is-the-base"),
        pytest.param(2, 0.5, 8.0, 1.0, 1.0, id="doubles"),
        pytest.param(3, 0.5, 8.0, 0.5, 1.0, id="times-the-jitter"),
        pytest.param(5, 0.5, 8.0, 1.0, 8.0, id="reaches-the-cap"),
        pytest.param(40, 0.5, 8.0, 1.0, 8.0, id="stays-at-the-cap"),
        pytest.param(2000, 0.0, 8.0, 1.0, 0.0, id="zero-base-after-2000-failures"),
        pytest.param(10**6, 1.0, 60.0, 0.999, 59.94, id="a-million-failures"),
        pytest.param(1, 1.0, 60.0, 0.0, 0.0, id="jitter-bottom"),
        pytest.param(0, 1.0, 60.0, 1.0, 1.0, id="no-failure-yet-is-the-base"),
    ],
)
def test_backoff_wait_is_one_capped_formula(
    failures: int, base: float, cap: float, jitter: float, expected: float
) -> None:
    """The client's retries and the outbox's deliveries wait by this one table, any count."""
    assert backoff_wait(failures, base, cap, jitter) == pytest.approx(expected)


def test_two_thousand_retries_with_zero_backoff_raise_only_opshift_errors() -> None:
    """A policy of 2000 retries on a refused port ends in NetworkError, never OverflowError."""
    policy = RetryPolicy(max_retries=2000, backoff=0, sleep=lambda _: None)
    client = OpShift(SECRET, base_url=refused_url(), retry_policy=policy)
    with pytest.raises(NetworkError, match="refused"):
        client.ping("w")


def test_policy_is_frozen_and_replace_makes_a_copy() -> None:
    """A policy cannot be changed in place; replace() returns a changed copy."""
    policy = RetryPolicy(max_retries=2)
    with pytest.raises(AttributeError, match="frozen"):
        policy.max_retries = 5
    changed = policy.replace(max_retries=0)
    assert (policy.max_retries, changed.max_retries) == (2, 0)
    assert changed.replace(max_retries=2) == policy
    assert "max_retries=0" in repr(changed)


@pytest.mark.parametrize(
    ("options", "text"),
    [
        pytest.param({"max_retries": -1}, "max_retries must be an int >= 0", id="negative"),
        pytest.param({"max_retries": True}, "max_retries must be an int", id="bool"),
        pytest.param({"backoff": float("nan")}, "retry_backoff must be a finite number", id="nan"),
        pytest.param({"backoff_max": float("inf")}, "backoff_max must be a finite", id="inf"),
    ],
)
def test_policy_rejects_bad_settings(options: dict[str, object], text: str) -> None:
    """Bad numbers fail when the policy is made, with the setting's name."""
    with pytest.raises(ConfigurationError, match=text):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_retry_policy_and_max_retries_are_exclusive() -> None:
    """Passing both a policy and max_retries is ambiguous, so it is refused."""
    with pytest.raises(ConfigurationError, match="either retry_policy or max_retries"):
        OpShift(SECRET, retry_policy=RetryPolicy(), max_retries=5)


def _client(fake: FakeTransport, **options: object) -> tuple[OpShift, list[float]]:
    """A client whose retry policy records its waits instead of sleeping; jitter is 1.0."""
    waits: list[float] = []
    policy = RetryPolicy(
        max_retries=options.pop("max_retries", 2),  # type: ignore[arg-type]
        backoff=options.pop("retry_backoff", 0.5),  # type: ignore[arg-type]
        sleep=waits.append,
        random=lambda: 1.0,
    )
    client = OpShift(SECRET, transport=fake, retry_policy=policy, **options)  # type: ignore[arg-type]
    return client, waits


def test_client_retries_503_then_succeeds_with_backoff() -> None:
    """Two 503s are retried after 0.5 s and 1 s with the same signed body; the third answer wins."""
    fake = FakeTransport(SECRET)
    fake.fail_next(503, times=2)
    client, waits = _client(fake)
    assert client.ping("w")["message"].startswith("First ping")
    assert waits == [0.5, 1.0]
    assert len(fake.requests) == 3
    assert len({r.body for r in fake.requests}) == 1
    assert len({r.signature for r in fake.requests}) == 1


def test_client_gives_up_after_max_retries() -> None:
    """After max_retries the last ServerError is raised with OpShift's body."""
    fake = FakeTransport(SECRET)
    fake.fail_next(500, {"error": "boom"}, times=10)
    client, waits = _client(fake, max_retries=3)
    with pytest.raises(ServerError) as caught:
        client.ping("w")
    assert caught.value.body == {"error": "boom"}
    assert len(fake.requests) == 4
    assert waits == [0.5, 1.0, 2.0]


def test_max_retries_zero_sends_once() -> None:
    """max_retries=0 sends once and never sleeps."""
    fake = FakeTransport(SECRET)
    fake.fail_next(503)
    client, waits = _client(fake, max_retries=0)
    with pytest.raises(ServerError):
        client.ping("w")
    assert len(fake.requests) == 1
    assert waits == []


def test_network_errors_are_retried() -> None:
    """A reset connection is retried like a 5xx."""
    fake = FakeTransport(SECRET)
    fake.raise_next(ConnectionResetError("reset"))
    client, waits = _client(fake)
    assert client.ping("w")["pingStatus"] == "up"
    assert len(fake.calls) == 2
    assert waits == [0.5]


def test_auth_errors_are_not_retried() -> None:
    """A 401 is never retried."""
    fake = FakeTransport("f" * 64)
    client, waits = _client(fake, max_retries=5)
    with pytest.raises(AuthenticationError):
        client.ping("w")
    assert len(fake.requests) == 1
    assert waits == []


def test_backoff_that_would_pass_the_deadline_is_not_taken() -> None:
    """timeout=2 with a 4 s backoff: the call fails now instead of sleeping past 2 s."""
    fake = FakeTransport(SECRET)
    fake.fail_next(503, times=5)
    client, waits = _client(fake, timeout=2.0, retry_backoff=8.0)
    with pytest.raises(ServerError):
        client.ping("w")
    assert waits == []
    assert len(fake.requests) == 1


def test_each_attempt_gets_the_time_left() -> None:
    """The transport's timeout is what remains of the call's, never the full value again."""
    fake = FakeTransport(SECRET)
    fake.fail_next(503)
    client, _ = _client(fake, timeout=10.0)
    client.ping("w")
    first, second = (call[3] for call in fake.calls)
    assert 0 < second <= first <= 10.0


def test_timeout_is_not_retried_when_the_deadline_is_spent() -> None:
    """A timeout with no time left is raised at once, not retried."""
    fake = FakeTransport(SECRET)
    fake.raise_next(TimeoutError("timed out"))
    client, waits = _client(fake, timeout=0.001)
    with pytest.raises(RequestTimeoutError):
        client.ping("w")
    assert waits == []
