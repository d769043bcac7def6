"""Types of the compiled closed-kline decoder (feed_service/_kline.c)."""

from typing import Any

class ClosedKlineDecoder:
    def __init__(
        self,
        *,
        candle_type: type[Any],
        template: dict[str, object],
        fields_set: frozenset[str],
        frame_type: type[tuple[Any, ...]],
        kind: object,
        open_frame: object,
        intervals: tuple[str, ...],
        decimal: type[Any],
        fromtimestamp: Any,
        utc: object,
    ) -> None: ...
    def decode(self, text: str) -> Any:
        """The Frame of a compact open or a plain closed kline, or None: the Python path decides."""
