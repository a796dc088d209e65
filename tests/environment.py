"""The environment a user's shell gives a `poolfin` command in the tests.

PATH is narrowed to /usr/bin:/bin on purpose: cron jobs, systemd units and minimal containers
run commands so, and poolfin must not depend on /usr/sbin or on what a developer's shell adds.
On a machine that never ran poolfin, embedded PostgreSQL (as root) must create its account
with `useradd`, which lives in /usr/sbin: poolfin finds it itself (shared/infra/postgres.py),
and tests/e2e/test_start.py shows it on a fresh /etc (defect 8).
"""

from __future__ import annotations

from pathlib import Path

USER_PATH = "/usr/bin:/bin"


def user_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """PATH as above, HOME when given (a test's own directory), then `extra`."""
    env = {"PATH": USER_PATH}
    if home is not None:
        env["HOME"] = str(home)
    return {**env, **extra}
