"""A hub receiver is a real anyio object stream: code written for anyio's streams takes it."""

from __future__ import annotations

import anyio
from anyio.abc import ObjectReceiveStream

from stream import EventStreamHub
from tests.stream._helpers import ev


async def test_a_receiver_is_an_anyio_object_receive_stream() -> None:
    async with EventStreamHub() as hub:
        receiver = hub.subscribe("s")
        assert isinstance(receiver, ObjectReceiveStream)
        hub.publish(ev("s", 1))
        stream: ObjectReceiveStream[object] = receiver
        async with stream:
            assert (await stream.receive()).sequence == 1  # type: ignore[attr-defined]
        try:
            receiver.receive_nowait()
        except anyio.ClosedResourceError:
            pass
        else:
            raise AssertionError("a closed receiver must raise ClosedResourceError")


async def test_the_hub_closing_ends_an_anyio_consumer() -> None:
    hub = EventStreamHub()
    receiver = hub.subscribe("s")
    hub.publish(ev("s", 1))
    hub.close()
    assert [event.sequence async for event in receiver] == [1]
    try:
        await receiver.receive()
    except anyio.EndOfStream:
        pass
    else:
        raise AssertionError("a drained, ended receiver must raise EndOfStream")
