"""A whole poolfin on this machine: the embedded broker, the embedded PostgreSQL and the four
services, each its own process (`poolfin run NAME`), as in production."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from poolfin.keys import Keyring
from poolfin.registry import SERVICES
from shared.contracts.topics import ALL_STATIC_TOPICS
from shared.infra.kafka import EmbeddedKafka
from shared.infra.postgres import EmbeddedPostgres
from shared.runtime import ensure_topics


@dataclass
class Stack:
    """Start with `start()`, stop with `stop()`; `restart(name)` kills and restarts one."""

    work_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    kafka: EmbeddedKafka | None = None
    postgres: EmbeddedPostgres | None = None
    bootstrap: str = ""
    database_url: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # credit's HTTP front (pool positions, applications), on a free local port.
    http_port: int = field(default_factory=lambda: free_port())
    # The trust file, the services' secrets and the local parties' keys (poolfin/keys.py);
    # default: `keys` in the work directory.
    keys_dir: Path | None = None
    _keyring: Keyring | None = None
    # Each service instance's /metrics and /health (shared/ops.py), on a free local port.
    ops_ports: dict[str, int] = field(default_factory=dict)
    # The operators' dashboard, when `poolfin up` (or a test) serves it.
    dashboard_url: str | None = None
    # Where the embedded PostgreSQL keeps its data between runs (`poolfin up`); None: a
    # temporary directory, deleted at stop (tests).
    pg_dir: Path | None = None

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            self._keyring = Keyring.provision(self.keys_dir or self.work_dir / "keys")
        return self._keyring

    def start(self, services: tuple[str, ...] = tuple(SERVICES), timeout: float = 60) -> Stack:
        """Start what is missing: with `bootstrap` and `database_url` given (Apache Kafka and
        a PostgreSQL server, e.g. from testcontainers), only the services."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.keyring  # noqa: B018 - provisioned before any service needs it
        try:
            if not self.bootstrap:
                self.kafka = EmbeddedKafka(log_file=self.work_dir / "kafka.log")
                self.kafka.start()
                self.bootstrap = self.kafka.bootstrap
            if not self.database_url:
                if self.pg_dir is not None:
                    self.pg_dir.mkdir(parents=True, exist_ok=True)
                self.postgres = EmbeddedPostgres(
                    self.pg_dir / "pg" if self.pg_dir else None, keep=self.pg_dir is not None
                )
                self.postgres.start()
                self.database_url = self.postgres.create_database("poolfin")
            asyncio.run(ensure_topics(self.bootstrap, ALL_STATIC_TOPICS, self.partitions))
            for name in services:
                self.start_service(name)
            self.wait_ready(services, timeout)
        except BaseException:
            # Whatever was started is stopped on every exit path, failure included: a start
            # that fails half-way must not leave a broker or a database behind (defect 9).
            self.stop()
            raise
        return self

    @property
    def partitions(self) -> int:
        raw = {**os.environ, **self.env}.get("POOLFIN_TOPIC_PARTITIONS", "3")
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"POOLFIN_TOPIC_PARTITIONS={raw!r} is not a whole number above 0")
        return int(raw)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def service_env(self, name: str) -> dict[str, str]:
        env = {
            **os.environ,
            **self.keyring.env(),
            **self.env,
            "POOLFIN_KAFKA_BOOTSTRAP": self.bootstrap,
            "POOLFIN_DATABASE_URL": self.database_url,
            "POOLFIN_READY_FILE": str(self._ready_file(name)),
            "POOLFIN_LOG_JSON": "true",
        }
        env.pop("POOLFIN_HTTP_PORT", None)
        if name == "credit":  # the first credit instance only
            env["POOLFIN_HTTP_PORT"] = str(self.http_port)
        env["POOLFIN_OPS_PORT"] = str(self.ops_ports.setdefault(name, free_port()))
        return env

    def ops_url(self, name: str) -> str:
        """Where a service instance serves /metrics and /health."""
        return f"http://127.0.0.1:{self.ops_ports[name]}"

    def _ready_file(self, name: str) -> Path:
        return self.work_dir / f"{name}.ready"

    def start_service(self, name: str) -> None:
        """Start a service process. `name` may carry a replica number, as `credit#2`: another
        instance of the service in the same consumer group (scale-out)."""
        self._ready_file(name).unlink(missing_ok=True)
        log = open(self.work_dir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "poolfin.cli", "run", name.partition("#")[0]],
            env=self.service_env(name),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )

    def wait_ready(self, services: tuple[str, ...], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for name in services:
            while not self._ready_file(name).exists():
                process = self.processes[name]
                if process.poll() is not None:
                    raise RuntimeError(
                        f"service {name} exited with {process.returncode}; "
                        f"see {self.work_dir / (name + '.log')}"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(f"service {name} not ready after {timeout}s")
                time.sleep(0.1)

    def kill(self, name: str) -> None:
        """SIGKILL: a crash, not a clean stop."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_service(self, name: str) -> None:
        """A deliberate stop: the instance is no longer expected (a killed one still is)."""
        process = self.processes.pop(name)
        self.ops_ports.pop(name, None)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        for name in list(self.processes):
            self.stop_service(name)
        if self.kafka:
            self.kafka.stop()
        if self.postgres:
            self.postgres.stop()

    def supervise(self) -> list[str]:
        """Restart what died (the broker, PostgreSQL, a service); returns what was done, in
        words for the operator. The embedded broker keeps its topics in memory: a new one has
        none of the old records or consumer offsets, and that is said loudly."""
        said: list[str] = []
        if self.kafka is not None and not self.kafka.alive():
            said.append(
                "BROKER DIED: started a new embedded broker on the same port; its topics, "
                "their records and every consumer offset were in memory and are LOST "
                "(topics recreated empty; services restarted; outbox rows not yet sent are "
                "still sent)"
            )
            self.kafka = EmbeddedKafka(port=self.kafka.port, log_file=self.work_dir / "kafka.log")
            self.kafka.start()
            asyncio.run(ensure_topics(self.bootstrap, ALL_STATIC_TOPICS, self.partitions))
            for name in list(self.processes):
                self.kill(name)
                self.start_service(name)
        if self.postgres is not None and not self.postgres.alive():
            said.append("PostgreSQL died: restarting it on the same data directory")
            self.postgres.restart()
            said.append("PostgreSQL is back; services reconnect by themselves")
        for name, process in list(self.processes.items()):
            if process.poll() is not None:
                said.append(f"service {name} exited ({process.returncode}); restarting")
                self.start_service(name)
        return said

    def describe(self) -> dict[str, object]:
        """What stack.json records: where everything is, for every `poolfin` command."""
        return {
            "kafka_bootstrap": self.bootstrap,
            "database_url": self.database_url,
            "http": self.http_url,
            "dashboard_url": self.dashboard_url,
            "keys_dir": str(self.keyring.directory),
            "work_dir": str(self.work_dir),
            "services": {
                n: {
                    "pid": p.pid,
                    "metrics_url": f"{self.ops_url(n)}/metrics",
                    "health_url": f"{self.ops_url(n)}/health",
                    "log": str(self.work_dir / f"{n}.log"),
                }
                for n, p in self.processes.items()
            },
            "topics": list(ALL_STATIC_TOPICS),
        }

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def state_file(data_dir: str) -> Path:
    return Path(data_dir) / "stack.json"


def running_stack(data_dir: str) -> dict[str, object] | None:
    """The stack `poolfin up` announced, if its services are still alive."""
    path = state_file(data_dir)
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        pids = [int(s["pid"]) for s in dict(state.get("services", {})).values()]
    except (ValueError, TypeError, KeyError):
        return None  # not a stack.json this version wrote
    for pid in pids:
        try:
            os.kill(pid, 0)
        except OSError:
            return None
    return dict(state)


def new_work_dir(data_dir: str) -> Path:
    return Path(data_dir) / f"run-{uuid.uuid4().hex[:8]}"
