"""`poolfin up`'s maturity job: after each midnight (Asia/Shanghai) it closes the day that
ended, once, and retries a close that failed."""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from poolfin import cli, servicing

TODAY = date(2026, 11, 24)


@pytest.fixture
def closes(monkeypatch: pytest.MonkeyPatch) -> list[date]:
    closed: list[date] = []

    async def close_day(bootstrap: str, database_url: str, day: date, **_: Any) -> int:
        closed.append(day)
        return 3

    monkeypatch.setattr(servicing, "close_day", close_day)
    monkeypatch.setattr(cli, "_business_yesterday", lambda: TODAY - timedelta(days=1))
    return closed


STACK: Any = SimpleNamespace(bootstrap="127.0.0.1:1", database_url="postgresql://x", keyring=None)


def test_the_day_that_ended_is_closed_once(closes: list[date]) -> None:
    yesterday = TODAY - timedelta(days=1)
    after = cli._close_days_after_midnight(STACK, yesterday - timedelta(days=1))
    assert (after, closes) == (yesterday, [yesterday])
    assert cli._close_days_after_midnight(STACK, after) == yesterday
    assert closes == [yesterday]  # not again within the same day


def test_a_failed_close_is_retried_on_the_next_round(
    monkeypatch: pytest.MonkeyPatch, closes: list[date]
) -> None:
    async def broken(*_: Any, **__: Any) -> int:
        raise OSError("broker away")

    monkeypatch.setattr(servicing, "close_day", broken)
    before = TODAY - timedelta(days=2)
    assert cli._close_days_after_midnight(STACK, before) == before
