"""kafka-python 3.0 against Sluice: the usual Kafka tutorial, verbatim, plus keyed sends,
partitions_for_topic and topic auto-creation on first send."""

import json
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

SEND_TIMEOUT_S = 20


def create_orders_topic(bootstrap):
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        admin.create_topics([NewTopic(name="orders", num_partitions=3, replication_factor=1)])
    finally:
        admin.close()


def read_messages(consumer, count, timeout_s):
    """Iterates the consumer until `count` messages arrived (bounded by timeout_s and by the
    consumer's consumer_timeout_ms); then one more poll to catch any extra messages."""
    got = []
    deadline = time.monotonic() + timeout_s
    for message in consumer:
        got.append(message)
        if len(got) >= count or time.monotonic() > deadline:
            break
    extra = consumer.poll(timeout_ms=1000)
    for records in extra.values():
        got.extend(records)
    return got


def test_tutorial_orders(bootstrap):
    """The tutorial: create `orders` (3 partitions), send 100 JSON events, read all of them."""
    create_orders_topic(bootstrap)

    producer = KafkaProducer(bootstrap_servers=[bootstrap],
                             value_serializer=lambda v: json.dumps(v).encode('utf-8'))
    events = [{"order_id": i, "customer": f"c{i % 7}", "amount_cents": 100 + i} for i in range(100)]
    futures = [producer.send('orders', event) for event in events]
    producer.flush()
    sent = [f.get(timeout=SEND_TIMEOUT_S) for f in futures]
    producer.close()
    assert {m.partition for m in sent} <= {0, 1, 2}

    consumer = KafkaConsumer('orders', bootstrap_servers=[bootstrap], auto_offset_reset='earliest',
                             consumer_timeout_ms=15000)
    try:
        messages = read_messages(consumer, 100, timeout_s=40)
    finally:
        consumer.close()

    received = [json.loads(m.value.decode('utf-8')) for m in messages]
    assert len(received) == 100, f"expected 100 events, got {len(received)}"
    assert sorted(received, key=lambda e: e["order_id"]) == events
    # Each event sits at the partition and offset its produce acknowledgement named.
    acked = {(m.partition, m.offset): e["order_id"] for m, e in zip(sent, events)}
    assert {(m.partition, m.offset): e["order_id"] for m, e in zip(messages, received)} == acked


def test_keyed_sends_stay_on_one_partition_in_order(bootstrap):
    create_orders_topic(bootstrap)
    producer = KafkaProducer(bootstrap_servers=[bootstrap], key_serializer=str.encode,
                             value_serializer=lambda v: json.dumps(v).encode('utf-8'))
    keys = [f"customer-{k}" for k in range(12)]
    futures = []
    for seq in range(25):
        for key in keys:
            futures.append((key, seq, producer.send('orders', key=key, value={"key": key, "seq": seq})))
    producer.flush()
    acked = {}
    for key, seq, future in futures:
        md = future.get(timeout=SEND_TIMEOUT_S)
        acked[(md.partition, md.offset)] = (key, seq)
    producer.close()
    assert len(acked) == len(futures), "two sends were acknowledged with the same offset"

    consumer = KafkaConsumer('orders', bootstrap_servers=[bootstrap], auto_offset_reset='earliest',
                             consumer_timeout_ms=15000)
    try:
        messages = read_messages(consumer, len(futures), timeout_s=40)
    finally:
        consumer.close()
    assert len(messages) == len(futures)

    partitions_of = {}
    last_seq = {}
    last_offset = {}
    for m in messages:
        value = json.loads(m.value)
        key = m.key.decode()
        assert value["key"] == key
        assert acked[(m.partition, m.offset)] == (key, value["seq"])
        partitions_of.setdefault(key, set()).add(m.partition)
        # Offsets grow within a partition; a key's events come back in send order.
        assert m.offset > last_offset.get(m.partition, -1)
        last_offset[m.partition] = m.offset
        assert value["seq"] == last_seq.get(key, -1) + 1, f"{key} out of order"
        last_seq[key] = value["seq"]
    assert all(len(p) == 1 for p in partitions_of.values()), partitions_of
    assert all(s == 24 for s in last_seq.values())
    # 12 keys over 3 partitions: the partitioner spread them (murmur2 of these keys).
    assert len({p for ps in partitions_of.values() for p in ps}) > 1


def test_partitions_for_topic(bootstrap):
    create_orders_topic(bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap])
    try:
        assert consumer.partitions_for_topic('orders') == {0, 1, 2}
        assert 'orders' in consumer.topics()
        # Offsets of an empty topic: beginning == end == 0 on every partition.
        tps = [TopicPartition('orders', p) for p in range(3)]
        assert consumer.beginning_offsets(tps) == {tp: 0 for tp in tps}
        assert consumer.end_offsets(tps) == {tp: 0 for tp in tps}
    finally:
        consumer.close()


def test_topic_auto_created_on_first_send(bootstrap):
    producer = KafkaProducer(bootstrap_servers=[bootstrap], max_block_ms=20000,
                             value_serializer=lambda v: json.dumps(v).encode('utf-8'))
    md = producer.send('auto-created', {"hello": "sluice"}).get(timeout=SEND_TIMEOUT_S)
    producer.close()
    assert (md.topic, md.partition, md.offset) == ('auto-created', 0, 0)

    consumer = KafkaConsumer('auto-created', bootstrap_servers=[bootstrap],
                             auto_offset_reset='earliest', consumer_timeout_ms=15000)
    try:
        # num.partitions defaults to 1, as in Kafka.
        assert consumer.partitions_for_topic('auto-created') == {0}
        messages = read_messages(consumer, 1, timeout_s=30)
    finally:
        consumer.close()
    assert [json.loads(m.value) for m in messages] == [{"hello": "sluice"}]
