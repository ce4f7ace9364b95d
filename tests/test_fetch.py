"""FetchFeeds' pure scheduling and limits."""

from __future__ import annotations

import pytest

from pipelines.fetch import FetchError, PollState, after_failure, after_success, conditional_headers, read_limited


def test_conditional_headers_from_the_second_poll():
    assert "If-None-Match" not in conditional_headers(PollState())
    state = after_success(PollState(), now=100.0, interval_s=60, etag='"v1"', modified="Wed, 25 Nov 2026 09:00:00 GMT")
    headers = conditional_headers(state)
    assert headers["If-None-Match"] == '"v1"' and headers["If-Modified-Since"] == "Wed, 25 Nov 2026 09:00:00 GMT"
    assert state.next_due == 160.0 and state.failures == 0


def test_failures_back_off_exponentially_up_to_the_cap_and_never_stop():
    state = PollState()
    delays = []
    for _ in range(8):
        state = after_failure(state, now=0.0, interval_s=60, max_backoff_s=600)
        delays.append(state.next_due)
    assert delays == [60, 120, 240, 480, 600, 600, 600, 600]
    assert after_success(state, 1000.0, 60, None, None).failures == 0


def test_body_over_the_limit_is_cut_off_early():
    chunks = iter([b"x" * 400, b"x" * 400, b"x" * 400, pytest.fail])  # the 4th chunk must never be read
    with pytest.raises(FetchError, match="larger than the limit of 1000 bytes") as err:
        read_limited(chunks, 1000)
    assert err.value.outcome == "too_large"
