"""streams.faust_fixes, without a broker: around a rebalance no offset is committed unless the
message was delivered to the stream. Each fix is also tested against the pinned Faust without it,
so an upgrade that changes the code the fixes rely on fails here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import faust
import faust.streams
import pytest
from faust.transport import consumer as faust_consumer
from faust.transport.consumer import ConsumerMessage
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams import faust_fixes
from tests.helpers import unavailable

TOPIC = "fix-niche-events"
PARTITION = TP(TOPIC, 0)
GENERATION = 5
ITERATORS = ["python", "cython"]


def test_the_pinned_faust_is_the_one_the_fixes_were_written_for() -> None:
    assert faust.__version__ == faust_fixes.FAUST_VERSION, "re-check streams.faust_fixes against this Faust"


# -- a skipped message is not acked -------------------------------------------------------------


@pytest.fixture(params=ITERATORS)
def iterator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Streams iterate with Faust's pure-Python loop or with its Cython StreamIterator."""
    if request.param == "python":
        monkeypatch.setattr(faust.streams, "_CStreamIterator", None)
    elif faust.streams._CStreamIterator is None:
        unavailable("Faust's Cython extension is not installed")
    return str(request.param)


def new_app(event: type[faust.Event] = faust_fixes.Event) -> faust.App:
    app = faust.App("test-faust-fixes", broker="kafka://127.0.0.1:1", store="memory://", Event=event)
    app.finalize()
    app.flow_control.resume()
    app.consumer_generation_id = GENERATION
    app.topics._acking_topics.add(TOPIC)
    return app


def event(app: faust.App, offset: int, generation: int = GENERATION) -> faust.Event:
    message = ConsumerMessage(TOPIC, 0, offset, 0.0, 0, {}, b"k", b"v", None, generation_id=generation)
    return app.create_event(b"k", b"v", {}, message)


async def delivered(app: faust.App, events: list[faust.Event], batches: bool = False) -> list[int]:
    """The offsets the stream hands to an agent (one by one, or in take_events batches)."""
    stream = app.stream(app.channel())
    for ev in events:
        stream.channel.queue.put_nowait(ev)
    out: list[int] = []

    async def agent() -> None:
        if batches:
            async for batch in stream.take_events(10, within=0.05):
                out.extend(ev.message.offset for ev in batch)
        else:
            async for _ in stream:
                assert stream.current_event is not None
                out.append(stream.current_event.message.offset)

    task = asyncio.ensure_future(agent())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return out


@pytest.mark.parametrize("batches", [False, True], ids=["events", "take_events"])
async def test_a_message_of_an_earlier_generation_is_skipped_and_not_acked(iterator: str, batches: bool) -> None:
    app = new_app()
    stale, current = event(app, 3, GENERATION - 1), event(app, 4)
    assert await delivered(app, [stale, current], batches) == [4]
    assert not stale.message.acked
    assert current.message.acked
    assert app.consumer._acked[PARTITION] == [4]


async def test_a_message_that_arrives_while_flow_control_is_off_is_not_acked(iterator: str) -> None:
    app = new_app()
    app.flow_control.suspend()
    held = event(app, 3)
    assert await delivered(app, [held]) == []
    assert not held.message.acked
    assert PARTITION not in app.consumer._acked


async def test_without_the_fix_faust_acks_the_message_it_skipped(iterator: str) -> None:
    """The bug as the pinned Faust has it: its pure-Python loop commits the skipped offset."""
    app = new_app(faust.Event)
    stale, current = event(app, 3, GENERATION - 1), event(app, 4)
    assert await delivered(app, [stale, current]) == [4]
    if iterator == "python":
        assert stale.message.acked
        assert app.consumer._acked[PARTITION] == [3, 4]
    else:
        assert app.consumer._acked[PARTITION] == [4]


# -- records fetched before a seek ----------------------------------------------------------------


class Broker:
    """What aiokafka hands Faust: fetches in turn, the partition sought to COMMITTED meanwhile."""

    COMMITTED = 3

    def __init__(self, consumer: faust_consumer.Consumer, fetches: list[list[int]], seek_during: int) -> None:
        self.consumer, self.fetches, self.seek_during = consumer, fetches, seek_during
        self.sought: list[dict[TP, int]] = []
        self.stopped = asyncio.Event()

    async def getmany(self, consumer: Any, timeout: float) -> AsyncIterator[tuple[TP, ConsumerMessage]]:
        if not self.fetches:
            self.stopped.set()
            return
        n = len(self.fetches)
        offsets = self.fetches.pop(0)
        if n == self.seek_during:  # the rebalance's seek completes while this fetch is under way
            await self.consumer.perform_seek()
            self.consumer.resume_flow()  # as Faust's recovery does after the seek
        for offset in offsets:
            yield PARTITION, ConsumerMessage(TOPIC, 0, offset, 0.0, 0, {}, b"k", b"v", None,
                                             generation_id=GENERATION)

    async def seek_to_committed(self, consumer: Any) -> dict[TP, int]:
        return {PARTITION: self.COMMITTED}

    async def seek_wait(self, consumer: Any, partitions: dict[TP, int]) -> None:
        self.sought.append(dict(partitions))
        consumer._read_offset.update(partitions)  # as AIOKafkaConsumerThread._seek_wait does


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Broker]]:
    holder: list[Broker] = []
    monkeypatch.setattr(faust_consumer.Consumer, "getmany", lambda self, timeout: holder[0].getmany(self, timeout))
    monkeypatch.setattr(faust_consumer.ThreadDelegateConsumer, "seek_to_committed",
                        lambda self: holder[0].seek_to_committed(self))
    monkeypatch.setattr(faust_consumer.ThreadDelegateConsumer, "seek_wait",
                        lambda self, partitions: holder[0].seek_wait(self, partitions))
    yield holder


async def drain(cls: type[faust_consumer.Consumer], patched: list[Broker],
                fetches: list[list[int]]) -> tuple[list[int], int | None, list[dict[TP, int]]]:
    """Run Faust's own fetch loop (Consumer._drain_messages) over the fetches, the first one issued
    before the seek; the stream acks every message delivered. Returns the offsets delivered, the
    offset Faust would commit, and the seeks made."""
    app = new_app()
    got: list[int] = []

    async def callback(message: ConsumerMessage) -> None:
        got.append(message.offset)
        consumer.ack(message)

    consumer = cls(app.transport, callback=callback, on_partitions_revoked=None, on_partitions_assigned=None)
    broker = Broker(consumer, fetches, seek_during=len(fetches))
    patched.append(broker)
    fetcher = type("Fetcher", (), {"_stopped": broker.stopped})()
    await asyncio.wait_for(consumer._drain_messages(fetcher), timeout=10)
    return got, consumer._new_offset(PARTITION), broker.sought


async def test_records_fetched_before_the_seek_are_dropped_and_read_again_in_order(patched: list[Broker]) -> None:
    got, commit, sought = await drain(faust_fixes.Consumer, patched, [[13, 14, 15], list(range(3, 17))])
    assert got == list(range(3, 17))
    assert commit == 17
    assert sought == [{PARTITION: 3}]


async def test_without_the_fix_faust_commits_offsets_it_never_delivered(patched: list[Broker]) -> None:
    """The traced failure: committed 3, a record at 13 from before the seek opens a "gap" 4..13,
    the records 3..12 read after the seek are dropped, and the commit moves past them."""
    got, commit, _ = await drain(faust_aiokafka.Consumer, patched, [[13, 14, 15], list(range(3, 17))])
    assert not set(range(3, 13)) & set(got)
    assert commit is not None and commit > 12


async def test_a_fetch_from_before_the_seek_that_starts_at_the_committed_offset_is_kept(
        patched: list[Broker]) -> None:
    got, commit, sought = await drain(faust_fixes.Consumer, patched, [[3, 4, 5], [6, 7]])
    assert (got, commit, sought) == ([3, 4, 5, 6, 7], 8, [])


async def test_a_fetch_after_the_seek_is_kept_as_is_even_past_a_gap(patched: list[Broker]) -> None:
    """Compacted or transactional topics skip offsets: after the seek, aiokafka's order is the truth."""
    got, _, sought = await drain(faust_fixes.Consumer, patched, [[], [5, 6]])
    assert (got, sought) == ([5, 6], [])


# -- records cleared from the queues by the flow control's resume ---------------------------------


def test_the_flow_controls_resume_clears_what_the_channels_hold() -> None:
    """Bug 3 as the pinned Faust has it: a resume drops the events delivered to a channel's queue."""
    app = new_app()
    stream = app.stream(app.channel())
    stream.channel.queue.put_nowait(event(app, 4))
    app.flow_control.resume()
    assert stream.channel.queue.empty()


async def test_the_seek_stops_the_flow_and_reads_never_committed_stream_partitions_from_the_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = new_app()
    changelog = app.Table("fix-table", partitions=1).changelog_topic.get_topic_name()
    other = TP("fix-other-source", 0)
    app.topics._acking_topics.add(other.topic)
    committed = {PARTITION: 3, other: None, TP(changelog, 0): None, TP("fix-not-acked", 0): None}
    flow_during_seek: list[bool] = []
    from_start: list[TP] = []

    async def seek_to_committed(self: Any) -> dict[TP, int | None]:
        flow_during_seek.append(self.flow_active)
        return committed

    async def seek_to_beginning(self: Any, *partitions: TP) -> None:
        from_start.extend(partitions)

    monkeypatch.setattr(faust_consumer.ThreadDelegateConsumer, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "seek_to_beginning", seek_to_beginning)
    consumer = app.consumer
    assert isinstance(consumer, faust_fixes.Consumer)
    await consumer.perform_seek()
    assert flow_during_seek == [False]
    assert not consumer.flow_active  # Faust resumes it once the queues are cleared
    assert from_start == [other]
    assert consumer._read_offset[PARTITION] == 3
