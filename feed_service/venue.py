"""What the venue-neutral machinery asks of an exchange: the `Venue` protocol and its frames.

The connection, the supervisor, the router and the sources speak only these words; an
exchange's wire (its URLs, stream names, subscribe frames, message layout) lives in its
own module (`feed_service.binance`) and is handed in by the composition root
(`feed_service.app`). import-linter forbids the neutral modules to import a venue module,
and `tests/functional/feed/test_second_venue.py` drives the supervisor with a second one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from enum import Enum, StrEnum
from typing import NamedTuple, Protocol

from feed_service.streams import StreamId
from functions.core.contracts import CandleClosed
from functions.core.errors import InvalidInput, TransientError


class MalformedFrame(InvalidInput):
    """A frame (or a REST row) that is not well-formed for its venue: skipped and counted."""


class BackfillError(TransientError):
    """The venue's REST API could not give us the missing candles now (throttled, banned, down)."""


class FrameKind(Enum):
    CANDLE_CLOSED = "candle_closed"
    CANDLE_OPEN = "candle_open"
    RESPONSE = "response"
    SHUTDOWN = "shutdown"
    OTHER = "other"


class Frame(NamedTuple):
    """One classified frame. A tuple, not a frozen dataclass: one is built per closed
    candle, and a frozen dataclass's `__init__` costs ~2 µs of `object.__setattr__`."""

    kind: FrameKind
    candle: CandleClosed | None = None
    request_id: int | None = None
    error: str | None = None


OPEN_FRAME = Frame(FrameKind.CANDLE_OPEN)
SHUTDOWN_FRAME = Frame(FrameKind.SHUTDOWN)
OTHER_FRAME = Frame(FrameKind.OTHER)


class FrameParser(Protocol):
    def parse(self, text: str | bytes) -> Frame:
        """Classify one frame; raise `MalformedFrame` if it cannot be understood."""


class Subscription(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


class Venue(FrameParser, Protocol):
    """An exchange's WebSocket wire, as a connection and a supervisor need it.

    Requests are numbered by the connection; the venue's parser reports their answers as
    `FrameKind.RESPONSE` frames carrying the same number, which is how a connection knows
    a subscription took effect.
    """

    @property
    def names_per_request(self) -> int:
        """How many stream names one subscribe/unsubscribe request may carry."""

    def stream_name(self, stream: StreamId) -> str:
        """The stream's name on the wire."""

    def connect_url(self, base_url: str, names: Collection[str]) -> tuple[str, frozenset[str]]:
        """The URL to connect to for `names`, and the names that URL already subscribes."""

    def request(self, kind: Subscription, request_id: int, names: Sequence[str]) -> str:
        """The text frame asking the venue to (un)subscribe `names`."""
