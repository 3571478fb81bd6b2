"""Sluice's own admin CLI (`sluice topic ...`) speaks the Kafka protocol to a running broker."""

import subprocess

import pytest

from sluicetest import admin_client, free_port, sluice_binary, wait_for_partitions

pytestmark = pytest.mark.sluice_only(reason="Sluice's own CLI (`sluice topic/produce/consume/bench`)")

CLI_TIMEOUT_S = 30


def sluice(*args):
    return subprocess.run([str(sluice_binary()), *args], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)


def test_topic_create_and_list(bootstrap):
    done = sluice("topic", "create", "orders", "--partitions", "3", "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stderr
    admin = admin_client(bootstrap)
    wait_for_partitions(admin, "orders", 3)

    done = sluice("topic", "list", "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stderr
    assert "orders" in done.stdout.split(), done.stdout

    # Creating it again is an error the user sees.
    done = sluice("topic", "create", "orders", "--partitions", "3", "--bootstrap", bootstrap)
    assert done.returncode != 0
    assert done.stderr.strip(), "no error message"


def test_topic_create_with_config(bootstrap):
    from confluent_kafka.admin import ConfigResource, ResourceType
    done = sluice("topic", "create", "short-lived", "--partitions", "1", "--config",
                  "retention.ms=60000", "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stderr
    admin = admin_client(bootstrap)
    wait_for_partitions(admin, "short-lived", 1)
    resource = ConfigResource(ResourceType.TOPIC, "short-lived")
    entries = admin.describe_configs([resource])[resource].result(15)
    assert entries["retention.ms"].value == "60000"


def test_clear_error_when_broker_is_down():
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    done = sluice("topic", "create", "x", "--partitions", "1", "--bootstrap", address)
    assert done.returncode != 0
    assert address in done.stderr, f"the error should name the address it tried: {done.stderr!r}"


def test_produce_and_consume_interoperate_with_kafka_python(bootstrap):
    from kafka import KafkaConsumer, KafkaProducer
    done = sluice("topic", "create", "events", "--partitions", "2", "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stderr
    admin = admin_client(bootstrap)
    wait_for_partitions(admin, "events", 2)

    # sluice produce (stdin lines) -> kafka-python consumer
    lines = [f'{{"n": {i}}}' for i in range(50)]
    done = subprocess.run([str(sluice_binary()), "produce", "--topic", "events", "--bootstrap", bootstrap],
                          input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    consumer = KafkaConsumer("events", bootstrap_servers=[bootstrap], auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    got = sorted(m.value.decode() for m in consumer)
    consumer.close()
    assert got == sorted(lines)

    # kafka-python producer (keyed) -> sluice consume, per-partition order kept
    producer = KafkaProducer(bootstrap_servers=[bootstrap])
    for i in range(5):
        producer.send("events", key=b"user-1", value=f"k{i}".encode())
    producer.flush()
    producer.close()
    done = sluice("consume", "--topic", "events", "--from-beginning", "--max-messages", "55",
                  "--timeout-ms", "5000", "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert sorted(out) == sorted(lines + [f"k{i}" for i in range(5)])
    assert [v for v in out if v.startswith("k")] == [f"k{i}" for i in range(5)]

    # a missing topic is one clear line and a non-zero exit
    done = sluice("consume", "--topic", "nope", "--timeout-ms", "100", "--bootstrap", bootstrap)
    assert done.returncode != 0
    assert done.stderr.strip() == "error: topic 'nope' does not exist"


def test_bench_against_a_separately_started_broker(bootstrap, tmp_path):
    import json
    out = tmp_path / "bench.json"
    done = subprocess.run([str(sluice_binary()), "bench", "--bootstrap", bootstrap, "--rate", "500",
                           "--duration", "1s", "--warmup", "0s", "--quiet", "--json", str(out)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "publish" in done.stdout and "end-to-end" in done.stdout, done.stdout
    doc = json.loads(out.read_text())
    assert set(doc) == {"workload", "environment", "throughput", "publish_latency_us", "e2e_latency_us",
                        "timeline"}
    assert doc["throughput"]["msgs_per_s"] > 0
    for key in ("p50", "p90", "p99", "p999", "p9999", "max"):
        assert doc["publish_latency_us"][key] > 0 and doc["e2e_latency_us"][key] > 0
    results = doc["workload"]["phases"][0]["results"]
    assert results["consumed_msgs"] == results["acked_msgs"] > 0
