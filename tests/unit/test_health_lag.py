"""The consumer-lag series of a worker follow the partitions it holds."""

from types import SimpleNamespace

from aiokafka import TopicPartition

from streams import metrics
from streams.health import Watch


def test_the_lag_of_a_partition_let_go_is_removed_at_once():
    """Found by a black-box test with two workers: after a rebalance a worker kept showing the lag of
    partitions another worker now held, until its next measure."""
    held = {TopicPartition("case-events", 0), TopicPartition("case-events", 1)}
    watch = Watch(SimpleNamespace(assigned=held))
    for tp in held:
        metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(7)
    watch.lag_partitions = {(tp.topic, str(tp.partition)) for tp in held}
    watch.pipeline.assigned = {TopicPartition("case-events", 0)}  # partition 1 moved to another worker
    watch.drop_lag_of_partitions_let_go()
    shown = {s.labels["partition"] for m in metrics.CONSUMER_LAG.collect() for s in m.samples
             if s.labels.get("topic") == "case-events"}
    assert shown == {"0"} and watch.lag_partitions == {("case-events", "0")}
    metrics.CONSUMER_LAG.remove("case-events", "0")


def test_the_lag_counts_to_the_end_the_broker_has_not_the_end_last_fetched(monkeypatch):
    """Found by a black-box test: a worker working through what it had fetched, 21,000 messages
    behind, showed a lag of 7,700, falling while the real lag rose: the end offset was the one its
    last fetch saw. The end is asked of the broker; without an answer, the end last fetched."""
    import asyncio

    tp = TopicPartition("case-events", 0)

    class Consumer:
        answer = {tp: 5000}

        def highwater(self, partition):
            return 1200  # what the last fetch saw

        async def highwaters(self, *partitions):
            if self.answer is None:
                raise TimeoutError("no answer")
            return self.answer

    consumer = Consumer()
    pipeline = SimpleNamespace(assigned={tp}, settings=SimpleNamespace(case_events_topic="case-events",
                                                                         ticket_actions_topic="ticket-actions"),
                               app=SimpleNamespace(consumer=consumer))
    watch = Watch(pipeline)
    monkeypatch.setattr("streams.health.committed_offsets", lambda consumer, held: {tp: 1000})

    def lag() -> float:
        asyncio.run(watch.measure_lag())
        return metrics.CONSUMER_LAG.labels("case-events", "0")._value.get()

    try:
        assert lag() == 4000
        consumer.answer = None  # the broker does not answer: the end last fetched
        assert lag() == 200
    finally:
        metrics.CONSUMER_LAG.remove("case-events", "0")


def test_a_worker_taking_what_its_own_broker_holds_before_it_stops_is_not_ready():
    """Found by a black-box test: after SIGTERM a worker on its own broker takes what that broker
    holds (up to 30 s) before it stops, and /readyz said ready all that while."""
    pipeline = SimpleNamespace(failure=None, stopping=False, draining=True)
    assert Watch(pipeline).readiness() == (False, "the worker is stopping (taking the events its own broker holds first)")
