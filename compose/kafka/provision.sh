#!/usr/bin/env bash
# Kafka principals of scribe-stream (SCRAM-SHA-512) and what each may do (ACLs), idempotent:
# run by the one-shot kafka-init service on every `docker compose up`, as the super user
# `admin` (the broker's own principal, created when its data directory was formatted).
# A password changed in compose/.env takes effect at the next run; ACLs are only added.
#
#   principal  who                                   may
#   platform   the novel platform (outside compose)  write novel-events
#   runner     prefect-worker (flow runs)            read novel-events (a run reads its event);
#                                                    write the results, DLQ and failures topics
#   worker     scribe-worker (Faust, group           read novel-events and the results topic in
#              scribe-stream)                        its group; write the DLQ (bad input) and the
#                                                    results topic (the chapter agent publishes
#                                                    chapter.removed / novel.removed there)
#   operator   scribe-init, scribe-ops (topics       create the topics; read every topic; write
#              create, replay, resink, dlq redrive,  novel-events (redrive, produce) and the
#              status)                               results topic (replay, resink); replay
#                                                    groups scribe-stream-replay-*; read the
#                                                    worker group's offsets
#   monitor    scribe-exporter (scribe status as     describe the topics and the worker group's
#              Prometheus gauges)                    offsets; read the results topic (when the
#                                                    oldest waiting result was written)
#
# Nobody else may write the results topic, which the sink trusts. Environment: BOOTSTRAP,
# KAFKA_BIN, TOPIC_EVENTS/_EMBEDDINGS/_DLQ/_FAILURES, GROUP (the worker's), and
# KAFKA_{ADMIN,PLATFORM,RUNNER,WORKER,OPERATOR,MONITOR}_PASSWORD.
set -euo pipefail

bin=${KAFKA_BIN:-/opt/kafka/bin}
bootstrap=${BOOTSTRAP:-kafka:9092}
events=${TOPIC_EVENTS:-novel-events}
results=${TOPIC_EMBEDDINGS:-novel-events.embeddings}
dlq=${TOPIC_DLQ:-novel-events.dlq}
failures=${TOPIC_FAILURES:-novel-events.failures}
group=${GROUP:-scribe-stream}

for name in ADMIN PLATFORM RUNNER WORKER OPERATOR MONITOR; do
  var="KAFKA_${name}_PASSWORD"
  # The SCRAM option syntax has no quoting: letters, digits, '_' and '-' only.
  if [[ ! ${!var:-} =~ ^[A-Za-z0-9_-]{16,}$ ]]; then
    echo "kafka-init: $var must be 16+ characters of A-Z a-z 0-9 _ -" >&2
    exit 1
  fi
done

config=$(mktemp)
trap 'rm -f "$config"' EXIT
cat >"$config" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
PROPS

user() { # NAME PASSWORD: create or update the principal's SCRAM-SHA-512 credential
  "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --command-config "$config" \
    --alter --entity-type users --entity-name "$1" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$2]"
}

allow() { # PRINCIPAL ARGS...: add an allow rule (kafka-acls --add is idempotent)
  "$bin/kafka-acls.sh" --bootstrap-server "$bootstrap" --command-config "$config" \
    --add --allow-principal "User:$1" "${@:2}"
}

user platform "$KAFKA_PLATFORM_PASSWORD"
user runner "$KAFKA_RUNNER_PASSWORD"
user worker "$KAFKA_WORKER_PASSWORD"
user operator "$KAFKA_OPERATOR_PASSWORD"
user monitor "$KAFKA_MONITOR_PASSWORD"

allow platform --operation Write --topic "$events"

allow runner --operation Read --topic "$events"
allow runner --operation Write --topic "$results" --topic "$dlq" --topic "$failures"

allow worker --operation Read --topic "$events" --topic "$results"
allow worker --operation Read --group "$group"
allow worker --operation Write --topic "$dlq" --topic "$results"
allow worker --operation Describe --topic "$failures"

allow operator --operation Create --operation Describe \
  --topic "$events" --topic "$results" --topic "$dlq" --topic "$failures"
allow operator --operation Read --topic "$events" --topic "$results" --topic "$dlq"
allow operator --operation Write --topic "$events" --topic "$results"
allow operator --operation Read --resource-pattern-type prefixed --group "$group-replay-"
allow operator --operation Describe --group "$group"
allow monitor --operation Describe --topic "$events" --topic "$results" --topic "$dlq"
allow monitor --operation Read --topic "$results"
allow monitor --operation Describe --group "$group"

echo "kafka-init: principals platform, runner, worker, operator, monitor and their ACLs are in place"
