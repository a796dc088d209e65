"""poolfin's producers (aiokafka) partition by the Java client's murmur2: checked here against
an independent murmur2 and the Java client's own figures. A librdkafka client matches it only
with `partitioner=murmur2_random` (tests/integration/test_partitioner.py, on a broker)."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """org.apache.kafka.common.utils.Utils.murmur2, as unsigned 32-bit arithmetic."""
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ len(data)) & MASK
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & MASK
        k ^= k >> r
        k = (k * m) & MASK
        h = ((h * m) & MASK) ^ k
    tail = data[whole:]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * m) & MASK
    h ^= h >> 13
    h = (h * m) & MASK
    h ^= h >> 15
    return h


def java_partition(key: bytes, partitions: int) -> int:
    """The Java client's default for a keyed record: toPositive(murmur2(key)) % partitions."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def aiokafka_partition(key: bytes, partitions: int) -> int:
    every = list(range(partitions))
    return int(DefaultPartitioner()(key, every, every))


# Figures from the Java client (org.apache.kafka.clients.producer.Partitioner, 1000
# partitions), as kafka-python's and aiokafka's own tests give them.
@pytest.mark.parametrize(
    ("key", "partition"),
    [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)],
)
def test_the_java_clients_figures(key: bytes, partition: int) -> None:
    assert java_partition(key, 1000) == partition
    assert aiokafka_partition(key, 1000) == partition


@given(key=st.binary(max_size=300), partitions=st.integers(min_value=1, max_value=200))
def test_aiokafka_partitions_as_the_reference_murmur2(key: bytes, partitions: int) -> None:
    assert aiokafka_partition(key, partitions) == java_partition(key, partitions)


@given(
    pool_id=st.from_regex(r"[A-Za-z0-9._:/-]{1,128}", fullmatch=True),
    partitions=st.integers(min_value=1, max_value=64),
)
def test_pool_ids_as_utf8_keys(pool_id: str, partitions: int) -> None:
    key = pool_id.encode()
    assert aiokafka_partition(key, partitions) == java_partition(key, partitions)
