#!/usr/bin/env bash
# Create the topics listed on stdin, idempotently, with kafka-topics.sh.
# Input is the output of `python -m shared.topics`: "<name> <partitions> [key=value ...]".
# Used by the one-shot topics-init job of docker-compose.yml (inside the apache/kafka image);
# deploy/local/stack.sh does the same from its own jars.
#
#   python -m shared.topics | create-topics.sh BOOTSTRAP
set -euo pipefail

bootstrap="${1:?usage: create-topics.sh BOOTSTRAP < topics.txt}"
kafka_topics="${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}"
count=0

while read -r name partitions configs; do
    [[ -z $name || $name == \#* ]] && continue
    [[ $partitions =~ ^[1-9][0-9]*$ ]] || { echo "bad partition count for $name: '$partitions'" >&2; exit 1; }
    args=(--bootstrap-server "$bootstrap" --create --if-not-exists
          --topic "$name" --partitions "$partitions" --replication-factor 1)
    for kv in $configs; do args+=(--config "$kv"); done
    "$kafka_topics" "${args[@]}"
    count=$((count + 1))
done

[[ $count -gt 0 ]] || { echo "no topics on stdin" >&2; exit 1; }
echo "$count topics ensured on $bootstrap"
