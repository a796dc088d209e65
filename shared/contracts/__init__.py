"""The contract: topic names, the envelope and one model per message."""

from shared.contracts import messages, topics
from shared.contracts.codec import Rejected, decode, encode

__all__ = ["Rejected", "decode", "encode", "messages", "topics"]
