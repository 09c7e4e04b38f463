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
