"""Due moments sent as ticks (streams.app.Pipeline._fire): a tick the broker does not take is due
again, never dropped (found by a black-box test: a case popped from the deadline index whose
tick was not delivered had its card lost until a restart)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from streams.app import Pipeline
from streams.timers import DeadlineIndex

DUE = datetime(2026, 3, 17, tzinfo=timezone.utc)


class Producer:
    """Takes the first `takes` ticks, then refuses (a broker unreachable); each taken tick's
    delivery is a future the test completes."""

    def __init__(self, takes: int):
        self.takes = takes
        self.sent: list[bytes] = []
        self.deliveries: list[asyncio.Future] = []

    async def send(self, topic, key, value, partition, timestamp, headers):
        if len(self.sent) >= self.takes:
            raise ConnectionError("broker unreachable")
        self.sent.append(key)
        self.deliveries.append(asyncio.get_running_loop().create_future())
        return self.deliveries[-1]


def pipeline(producer: Producer):
    return SimpleNamespace(fire_lock=asyncio.Lock(), index_ready=True, app=SimpleNamespace(producer=producer),
                           clock=SimpleNamespace(input_incomplete=False, now=lambda partition: DUE + timedelta(hours=1)))


def test_ticks_not_sent_or_not_delivered_are_due_again():
    async def run():
        index, ticked = DeadlineIndex(), set()
        for n in range(3):
            index.schedule(f"C-{n}", DUE + timedelta(minutes=n), 0)
        producer = Producer(takes=2)
        fake = pipeline(producer)
        sent = await Pipeline._fire(fake, index, "ticks", ticked)
        # Two sent; the third refused, due again (it was popped and dropped).
        assert sent == 2 and ticked == {"C-0", "C-1"} and "C-2" in index and len(index) == 1
        # The first delivered; the second never taken by the broker: due again, no longer on its way.
        producer.deliveries[0].set_result(None)
        producer.deliveries[1].set_exception(TimeoutError("no answer"))
        await asyncio.sleep(0)
        assert "C-1" in index and ticked == {"C-0"} and "C-0" not in index
        # The broker back: both due again are sent.
        producer.takes = 10
        assert await Pipeline._fire(fake, index, "ticks", ticked) == 2
        assert sorted(producer.sent[2:]) == [b"C-1", b"C-2"] and len(index) == 0

    asyncio.run(run())
