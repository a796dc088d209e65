"""Apache Kafka for testcontainers.

testcontainers-python's KafkaContainer drives Confluent images only: it runs Confluent's
start scripts and refuses image tags below 7.0.0 in KRaft mode, so it cannot run the
`apache/kafka` image. This container runs that image as one KRaft node. It binds the same
free port on the host and in the container, so the listener the broker advertises before it
starts is the one clients reach.
"""

from __future__ import annotations

import socket

from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

IMAGE = "apache/kafka:3.8.0"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ApacheKafkaContainer(DockerContainer):
    def __init__(self, image: str = IMAGE) -> None:
        super().__init__(image)
        self.port = _free_port()
        self.host = self.get_docker_client().host()
        self.with_bind_ports(self.port, self.port)
        self.with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENERS=f"PLAINTEXT://:{self.port},CONTROLLER://:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://{self.host}:{self.port}",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            KAFKA_INTER_BROKER_LISTENER_NAME="PLAINTEXT",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_NUM_PARTITIONS="3",
        )
        self.waiting_for(LogMessageWaitStrategy("Kafka Server started").with_startup_timeout(120))

    def get_bootstrap_server(self) -> str:
        return f"{self.host}:{self.port}"
