#!/usr/bin/env bash
# Create every topic the Sunlight workers use, before the first worker starts, with the partition
# count the workers are told (SUNLIGHT_PARTITIONS, here PARTITIONS) and replication 3. A worker
# creates a missing topic itself, but with replication 1: fine on one broker, not on three.
#
# The list is streams/app.py `topic_names` for the default app id "sunlight"
# (tests/integration/test_deploy_files.py checks that they agree). The changelog topics hold
# the workers' tables (one record per case, ticket and notice): they are compacted, never
# deleted by age. Input topics keep 30 days, so that a lost store can be refilled from them
# within that window; the rest keep Kafka's default 7 days.
#
# An existing topic is left alone, but its partition count must equal PARTITIONS: Faust refuses
# to start on a mismatch, and a case's events are routed by its key modulo the count, so the
# count can never change once events are in (docs/deploy.md, "Partitions and workers").
set -euo pipefail

: "${BOOTSTRAP:?BOOTSTRAP (the brokers) is required}"
: "${PARTITIONS:?PARTITIONS (SUNLIGHT_PARTITIONS) is required}"
REPLICATION="${REPLICATION:-3}"
MIN_ISR="${MIN_ISR:-2}"
TOPICS_CMD="${KAFKA_HOME:-/opt/kafka}/bin/kafka-topics.sh"
THIRTY_DAYS_MS=2592000000

# name                            partitions   cleanup   retention (ms; - = broker default)
TOPICS=$(cat <<LIST
case-events                       $PARTITIONS  delete    $THIRTY_DAYS_MS
sunlight-case-ticks               $PARTITIONS  delete    -
alerts                            $PARTITIONS  delete    -
case-events-dlq                   $PARTITIONS  delete    $THIRTY_DAYS_MS
sunlight-cases-changelog          $PARTITIONS  compact   -
sunlight-penalty-peers            $PARTITIONS  delete    -
sunlight-penalty-peers-changelog  $PARTITIONS  compact   -
ticket-actions                    $PARTITIONS  delete    $THIRTY_DAYS_MS
sunlight-ticket-ticks             $PARTITIONS  delete    -
sunlight-tickets-changelog        $PARTITIONS  compact   -
sunlight-notices                  $PARTITIONS  delete    -
sunlight-notice-log-changelog     $PARTITIONS  compact   -
sunlight-__assignor-__leader      1            delete    -
LIST
)

status=0
while read -r name partitions cleanup retention; do
    [ -z "$name" ] && continue
    configs=(--config "cleanup.policy=$cleanup" --config "min.insync.replicas=$MIN_ISR")
    if [ "$retention" != "-" ]; then
        configs+=(--config "retention.ms=$retention")
    fi
    "$TOPICS_CMD" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$name" \
        --partitions "$partitions" --replication-factor "$REPLICATION" "${configs[@]}"
    have=$("$TOPICS_CMD" --bootstrap-server "$BOOTSTRAP" --describe --topic "$name" \
        | sed -n 's/.*PartitionCount: *\([0-9]*\).*/\1/p' | head -n 1)
    if [ "$have" != "$partitions" ]; then
        echo "topic $name has $have partitions, the workers expect $partitions (SUNLIGHT_PARTITIONS);" \
             "the count of an existing topic cannot change: see docs/deploy.md" >&2
        status=1
    fi
done <<< "$TOPICS"
exit $status
