"""Three faust-streaming 0.15.3 bugs that commit offsets no agent processed, and their workarounds.

At-least-once (DESIGN.md §9) holds only if an offset is committed after its message was processed.
Around a rebalance Faust breaks that in three ways. tests/unit/streams/test_faust_fixes.py checks the
workarounds and reproduces the bugs on the pinned Faust, so an upgrade that changes them fails.

1. Records from before a seek, delivered after it (what loses events when a worker takes over a
   dead one's partitions). After an assignment Faust resumes the partitions and then seeks each to
   its committed offset C (faust/tables/recovery.py 313-322 and 649-656, in that order since PR
   #241; `Consumer.perform_seek`, faust/transport/consumer.py 565-580, sets `_read_offset[tp] = C`).
   A fetch issued before the seek can still hand over records from the old position (issues #216,
   #221; PR #223's generation stamp does not catch them: `getmany` reads the generation after the
   fetch returned, 739-740). `_drain_messages` then sees offset X > C + 1: it records C+1..X as a
   "gap" (1208-1215, meant for compacted and transactional topics), moves the read offset to X
   (1223), and drops the records C..X-1 that arrive after the seek ("DROPPED MESSAGE ROFF",
   1224-1230). `_new_offset` (1097-1151) merges the gap into the acked offsets, so the commit
   moves past C..X-1 though nobody processed them (issue #606). Observed on a takeover: sought to
   160, first record 228, then 160..386 dropped. `Consumer` below drops the records of a fetch
   issued before their partition's seek unless they continue from C, and seeks the partition to C
   again, so they are read again, in order.

2. A skipped message is acked. `Stream._py_aiter` (faust/streams.py 1287-1300) skips a message
   fetched in an earlier generation, or while flow control is off, before tracking it (1301-1305),
   and its `finally` acks every skipped value (1342-1344: `do_ack or value is skipped_value`, then
   `event.ack()`), so `Consumer.ack` (consumer.py 825-853) marks its offset safe to commit.
   `Event` below refuses that ack. Only the pure-Python iterator has this bug: the Cython one
   (faust/_cython/streams.pyx, `StreamIterator._prepare_event`) returns no event for a skipped
   message and acks nothing; Faust uses the pure-Python one when the extension is missing or
   NO_CYTHON is set.

3. Records dropped by the flow control's resume. `FlowControlEvent.resume()` clears every channel
   queue (mode/utils/queues.py 97-101; channel queues are `clear_on_resume`, faust/channels.py
   142-146). Recovery resumes flow control early (faust/tables/recovery.py 478, nothing to
   recover), then resumes the stream partitions and seeks (649-656) and resumes it again (659):
   records delivered in between, their read offsets already advanced, are cleared from the
   queues and never processed. A partition never committed is not sought at all
   (`AIOKafkaConsumer.seek_to_committed` seeks only committed offsets), so nothing reads them again,
   and the first commit of such a partition takes the first run of acked offsets whatever lies
   before it (`_new_offset` checks the head only against a committed offset, 1136-1142); a hole of
   one offset passes even that check (`min(acked) - committed > 1`). Observed: a worker's first
   assignment lost offsets 0-4 of a partition, a takeover lost one offset in the middle.
   `Consumer.perform_seek` below stops the consumer's flow before seeking (Faust resumes it after
   the queues are cleared), and `seek_to_committed` seeks a stream partition never committed to
   its beginning (for `auto_offset_reset` earliest), so whatever a resume cleared is read again.

Upstream master (snapshot of 2026-08-20) still has all three:
https://github.com/faust-streaming/faust/issues/216, /issues/221, /pull/223, /pull/241, /issues/606.

An offset held back here never stalls commits: the partition is sought back to it and re-reads
it, and a revoked partition's acks and committed offset are dropped on revocation (consumer.py
642-662) and its commits discarded (`_commit_offsets`, 1039-1082).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import faust
from aiokafka.errors import IllegalStateError
from faust.transport.consumer import ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT, Message

FAUST_VERSION = "0.15.3"
log = logging.getLogger(__name__)


def skipped_by_stream(app: AppT, message: Message) -> bool:
    """Whether a stream skips this message unprocessed (faust/streams.py 1287-1290)."""
    return not app.flow_control.is_active() or message.generation_id != app.consumer_generation_id


class Event(faust.Event):
    """An event whose ack is refused when the stream skipped it (bug 2 above).

    The stream tracks a message only after the skip test passed (streams.py 1301-1305), so an
    untracked message that would be skipped now is exactly the one the skip branch acks; refusing
    it cannot hold up `Consumer.wait_empty`, which waits for tracked messages only.
    """

    def ack(self) -> bool:
        message = self.message
        if not message.tracked and skipped_by_stream(self.app, message):
            return False
        return super().ack()


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, minus records fetched from before a partition's seek (bug 1 above)
    and records cleared from the queues by a resume (bug 3).

    A record of a fetch issued before its partition was last sought to offset C is kept only if it
    continues from C; otherwise it is dropped before Faust sees it (no gap, no read offset moved),
    and the partition is sought to where it should continue, so the records are fetched again in
    order. Records of later fetches are all kept: those start at C or after a legitimate gap.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seeks = 0
        # tp -> [number of the seek that placed it, next offset expected from that seek]
        self._resuming: dict[TP, list[int]] = {}

    async def perform_seek(self) -> None:
        """Stop the flow first: Faust resumes it after the seek (bug 3), so nothing fetched before
        the seek reaches a channel queue that the flow control's resume then clears."""
        self.stop_flow()
        await super().perform_seek()

    async def seek_to_committed(self) -> Mapping[TP, int]:
        offsets = await super().seek_to_committed()
        self._seeks += 1
        never_committed = []
        for tp, offset in offsets.items():
            if offset and offset > 0:  # what aiokafka's seek_to_committed moved
                self._resuming[ensure_TP(tp)] = [self._seeks, offset]
            elif self.app.topics.acks_enabled_for(tp.topic) and not self._is_changelog_tp(tp):
                never_committed.append(tp)
        if never_committed and self.app.conf.consumer_auto_offset_reset == "earliest":
            # where aiokafka started them; otherwise records read and dropped since are not read again
            await self._thread.seek_to_beginning(*never_committed)
        return offsets

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        fetched_after = self._seeks  # read before the fetch is issued
        sought_again: set[TP] = set()
        async for tp, message in super().getmany(timeout):
            resuming = self._resuming.get(tp)
            if resuming is not None:
                seek, expected = resuming
                if fetched_after >= seek:
                    del self._resuming[tp]
                elif message.offset > expected:
                    if tp not in sought_again:
                        sought_again.add(tp)
                        await self._seek_again(tp, expected)
                    continue
                elif message.offset == expected:
                    resuming[1] = expected + 1
            yield tp, message

    async def _seek_again(self, tp: TP, offset: int) -> None:
        log.warning("%s: dropped records fetched before its seek to offset %d; seeking there again", tp, offset)
        with contextlib.suppress(IllegalStateError):  # revoked meanwhile: its new owner seeks it
            await self.seek_wait({tp: offset})
            self._seeks += 1
            self._resuming[tp] = [self._seeks, offset]


# The consumer class of Faust's Kafka transport (`kafka://`), for every app of the process: importing
# this module is what puts it in place (Faust has no per-app setting for it).
faust_aiokafka.Transport.Consumer = Consumer
