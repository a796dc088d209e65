"""The platform's business calendar: which day it is, in which time zone.

poolfin value-dates money on the business day it arrives, in the platform's time zone
(Asia/Shanghai by default, `POOLFIN_TIMEZONE`): a payment arriving at 07:30 Beijing time on
the 5th is value-dated the 5th, although it is still the 4th in UTC. Every service asks this
module, never `datetime.now(UTC).date()`.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from functools import cache
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "Asia/Shanghai"


@cache
def timezone(name: str | None = None) -> ZoneInfo:
    """The platform's time zone (from `POOLFIN_TIMEZONE` unless named)."""
    return ZoneInfo(name or os.environ.get("POOLFIN_TIMEZONE") or DEFAULT_TIMEZONE)


def business_date(at: datetime | None = None) -> date:
    """The business day an instant falls on, in the platform's time zone (default: now)."""
    instant = at or datetime.now(UTC)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(timezone()).date()
