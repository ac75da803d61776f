"""The async-resource face of objects whose ``close()`` is synchronous."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ("SyncClosable",)


class SyncClosable:
    """``aclose()`` and ``async with`` for a class that defines a synchronous ``close()``.

    Closing a hub endpoint never waits (it only drops buffers and wakes
    waiters), so one implementation serves the hub, its receivers and the
    subscriptions built on them.
    """

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Async alias of :meth:`close`."""
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
