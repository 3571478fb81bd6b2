"""Apache Kafka's own command-line tools (4.4, `scripts/kafka.sh tool NAME ARGS...`) against the
test's broker: Sluice by default, Apache Kafka with `pytest --broker kafka`. Each tool must give
the same outcome against both; the output is parsed by column names and labels, not positions.

A JVM start costs 1-3 s, so related steps share one test. Every tool run is bounded.
"""

import json
import re
import subprocess

import pytest

from sluicetest import REPO_ROOT, admin_client, consume_all, create_topic, free_port, wait_until

KAFKA_SH = REPO_ROOT / "scripts" / "kafka.sh"
TOOL_TIMEOUT_S = 90.0


def tool(name, *args, stdin="", timeout_s=TOOL_TIMEOUT_S, ok=True):
    """Runs one Kafka tool; returns the CompletedProcess. With ok=True, a non-zero exit fails the
    test with the tool's output."""
    cmd = [str(KAFKA_SH), "tool", name, *map(str, args)]
    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{name} {' '.join(map(str, args))} still running after {timeout_s} s:\n"
                             f"--- stdout ---\n{e.stdout}\n--- stderr ---\n{e.stderr}") from None
    if ok and done.returncode != 0:
        raise AssertionError(f"{name} {' '.join(map(str, args))} exited {done.returncode}:\n"
                             f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}")
    return done


def describe(done):
    return f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"


def table(text, first_column):
    """The rows of the whitespace-separated table whose header line starts with `first_column`,
    as dicts keyed by the header's names. Empty cells: kafka-consumer-groups prints '-'; only a
    last column may be empty (kafka-groups' PROTOCOL of a group that only committed), read as ''."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = line.split()
        if cells and cells[0] == first_column:
            header = cells
            rows = []
            for row in lines[i + 1:]:
                values = row.split()
                if not values:
                    break
                assert len(header) - 1 <= len(values) <= len(header), f"row {row!r} does not fit header {header}"
                rows.append(dict(zip(header, values + [""])))
            return rows
    raise AssertionError(f"no table with a {first_column} column in:\n{text}")


def labelled(line):
    """`Topic: t\tPartition: 0\tLeader: 1\tElr: ` (kafka-topics --describe) as a dict; a label
    may have an empty value."""
    return {k.strip(): v.strip() for k, v in re.findall(r"([A-Za-z]+):([^\t]*)", line)}


def topics_describe(bootstrap, topic):
    done = tool("kafka-topics", "--describe", "--topic", topic, "--bootstrap-server", bootstrap)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = labelled(lines[0])
    partitions = [labelled(line) for line in lines[1:] if "Partition:" in line]
    return summary, partitions


def topics_list(bootstrap):
    done = tool("kafka-topics", "--list", "--bootstrap-server", bootstrap)
    return set(done.stdout.split())


def get_offsets(bootstrap, topic, time):
    """kafka-get-offsets: {partition: offset} from its `topic:partition:offset` lines."""
    done = tool("kafka-get-offsets", "--bootstrap-server", bootstrap, "--topic", topic, "--time", time)
    offsets = {}
    for line in done.stdout.split():
        name, partition, offset = line.rsplit(":", 2)
        assert name == topic, describe(done)
        offsets[int(partition)] = int(offset)
    return offsets


def produce(bootstrap, topic, per_partition):
    """confluent-kafka: len(values) messages to each partition; {partition: values}."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for partition, values in per_partition.items():
        for v in values:
            p.produce(topic, value=v.encode(), key=f"k-{v}".encode(), partition=partition)
    assert p.flush(30) == 0, "messages left unacknowledged"


@pytest.mark.timeout(180)
def test_kafka_topics_seed_command_line(bootstrap):
    done = tool("kafka-topics", "--create", "--topic", "orders", "--bootstrap-server", bootstrap,
                "--partitions", "3", "--replication-factor", "1")  # the seed command line, verbatim
    assert "Created topic orders." in done.stdout, describe(done)

    summary, partitions = topics_describe(bootstrap, "orders")
    assert summary["Topic"] == "orders" and summary["PartitionCount"] == "3", summary
    assert summary["ReplicationFactor"] == "1", summary
    assert sorted(int(p["Partition"]) for p in partitions) == [0, 1, 2], partitions
    for p in partitions:
        leader = int(p["Leader"])
        assert leader >= 0 and p["Replicas"] == str(leader) and p["Isr"] == str(leader), p
        # Kafka 4's describe reads DescribeTopicPartitions (API 75): ELR lists, empty here (through
        # the Metadata fallback, when a broker lacks API 75, the tool prints N/A).
        assert p.get("Elr") == "" and p.get("LastKnownElr") == "", p

    # A comma-separated --bootstrap-server with a dead address first: the tool moves on.
    dead = f"127.0.0.1:{free_port()}"
    assert "orders" in topics_list(f"{dead},{bootstrap}")

    tool("kafka-topics", "--alter", "--topic", "orders", "--partitions", "6", "--bootstrap-server", bootstrap)
    summary, partitions = topics_describe(bootstrap, "orders")
    assert summary["PartitionCount"] == "6", summary
    assert sorted(int(p["Partition"]) for p in partitions) == list(range(6)), partitions
    assert all(int(p["Leader"]) >= 0 for p in partitions), partitions

    # Fewer partitions are refused.
    done = tool("kafka-topics", "--alter", "--topic", "orders", "--partitions", "2",
                "--bootstrap-server", bootstrap, ok=False)
    assert done.returncode != 0 and "InvalidPartitionsException" in done.stdout + done.stderr, describe(done)

    tool("kafka-topics", "--delete", "--topic", "orders", "--bootstrap-server", bootstrap)
    admin = admin_client(bootstrap)
    wait_until(lambda: "orders" not in admin.list_topics(timeout=10).topics, 30, "orders to be deleted")
    assert "orders" not in topics_list(bootstrap)
    done = tool("kafka-topics", "--describe", "--topic", "orders", "--bootstrap-server", bootstrap, ok=False)
    assert done.returncode != 0 and "does not exist" in done.stdout + done.stderr, describe(done)


@pytest.mark.timeout(120)
def test_console_producer_consumer_keys(bootstrap):
    create_topic(bootstrap, "keyed", 3)
    lines = [f"user{i % 3}:event-{i}" for i in range(9)]
    tool("kafka-console-producer", "--bootstrap-server", bootstrap, "--topic", "keyed",
         "--property", "parse.key=true", "--property", "key.separator=:", stdin="\n".join(lines) + "\n")

    done = tool("kafka-console-consumer", "--bootstrap-server", bootstrap, "--topic", "keyed",
                "--from-beginning", "--max-messages", "9", "--timeout-ms", "30000",
                "--property", "print.key=true", "--property", "key.separator=:")
    # (stdout also carries the tool's deprecation note about --property)
    got = [line for line in done.stdout.splitlines() if line.startswith("user")]
    assert sorted(got) == sorted(lines), describe(done)
    assert "Processed a total of 9 messages" in done.stderr, describe(done)
    # One key, one partition: each key's events in order.
    for key in ("user0", "user1", "user2"):
        assert [v for v in got if v.startswith(key + ":")] == [v for v in lines if v.startswith(key + ":")]

    # The keys are the records' keys, as another client reads them.
    messages = consume_all(bootstrap, "keyed", 3)
    by_partition = {}
    for m in messages:
        by_partition.setdefault(m.key(), set()).add(m.partition())
        assert m.value().decode() in {line.split(":", 1)[1] for line in lines if line.startswith(m.key().decode() + ":")}
    assert set(by_partition) == {b"user0", b"user1", b"user2"}
    assert all(len(ps) == 1 for ps in by_partition.values()), by_partition


@pytest.mark.timeout(240)
def test_kafka_consumer_groups(bootstrap):
    from confluent_kafka import Consumer, TopicPartition
    create_topic(bootstrap, "events", 2)
    produce(bootstrap, "events", {0: [f"a{i}" for i in range(5)], 1: [f"b{i}" for i in range(5)]})
    # A group commits: partition 0 at 2 (lag 3), partition 1 at its end (lag 0).
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "tools-g", "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition("events", 0, 2), TopicPartition("events", 1, 5)], asynchronous=False)
    finally:
        c.close()

    done = tool("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--list")
    assert "tools-g" in done.stdout.split(), describe(done)

    def lag_table():
        done = tool("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--describe", "--group", "tools-g")
        rows = table(done.stdout, "GROUP")
        return {int(r["PARTITION"]): (int(r["CURRENT-OFFSET"]), int(r["LOG-END-OFFSET"]), int(r["LAG"]))
                for r in rows if r["TOPIC"] == "events"}, done

    lags, done = lag_table()
    assert lags == {0: (2, 5, 3), 1: (5, 5, 0)}, describe(done)

    done = tool("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--reset-offsets", "--group", "tools-g",
                "--topic", "events", "--to-earliest", "--execute")
    rows = table(done.stdout, "GROUP")
    assert {int(r["PARTITION"]): int(r["NEW-OFFSET"]) for r in rows} == {0: 0, 1: 0}, describe(done)

    # The group re-reads everything from 0 (no --from-beginning: the committed offsets rule).
    done = tool("kafka-console-consumer", "--bootstrap-server", bootstrap, "--topic", "events", "--group", "tools-g",
                "--max-messages", "10", "--timeout-ms", "30000")
    assert sorted(done.stdout.split()) == sorted([f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]), describe(done)

    # The console consumer committed its position when it closed.
    lags, done = lag_table()
    assert lags == {0: (5, 5, 0), 1: (5, 5, 0)}, describe(done)

    # kafka-groups (ListGroups with types): a classic group of the consumer protocol.
    done = tool("kafka-groups", "--bootstrap-server", bootstrap, "--list")
    rows = [r for r in table(done.stdout, "GROUP") if r["GROUP"] == "tools-g"]
    assert rows == [{"GROUP": "tools-g", "TYPE": "Classic", "PROTOCOL": "consumer"}], describe(done)

    done = tool("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--delete", "--group", "tools-g")
    assert "Deletion of requested consumer groups ('tools-g') was successful." in done.stdout, describe(done)
    done = tool("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--list")
    assert "tools-g" not in done.stdout.split(), describe(done)


@pytest.mark.timeout(150)
def test_kafka_consumer_groups_active_member(bootstrap):
    """While a console consumer is a member: --members and --describe show its id, host and
    client id; --reset-offsets is refused (the group is Stable)."""
    from confluent_kafka import ConsumerGroupState, KafkaException
    create_topic(bootstrap, "live", 2)
    member = subprocess.Popen([str(KAFKA_SH), "tool", "kafka-console-consumer", "--bootstrap-server", bootstrap,
                               "--topic", "live", "--group", "live-g", "--timeout-ms", "90000"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        admin = admin_client(bootstrap)

        def stable():
            try:
                d = admin.describe_consumer_groups(["live-g"], request_timeout=10)["live-g"].result(10)
            except KafkaException:  # NOT_COORDINATOR while Kafka loads the group's offsets partition
                return None
            return d.state == ConsumerGroupState.STABLE and len(d.members) == 1 and d.members[0].assignment.topic_partitions
        wait_until(stable, 60, "the console consumer to join live-g")

        done = tool("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--describe", "--group", "live-g", "--members")
        rows = table(done.stdout, "GROUP")
        assert len(rows) == 1 and rows[0]["#PARTITIONS"] == "2", describe(done)
        assert rows[0]["CONSUMER-ID"].startswith("console-consumer-") and rows[0]["HOST"] == "/127.0.0.1", describe(done)
        assert rows[0]["CLIENT-ID"] == "console-consumer", describe(done)

        done = tool("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--describe", "--group", "live-g")
        rows = table(done.stdout, "GROUP")
        assert sorted(int(r["PARTITION"]) for r in rows) == [0, 1], describe(done)
        assert all(r["CONSUMER-ID"].startswith("console-consumer-") and r["CLIENT-ID"] == "console-consumer" for r in rows), describe(done)

        done = tool("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--reset-offsets", "--group", "live-g",
                    "--topic", "live", "--to-earliest", "--execute")
        assert ("Assignments can only be reset if the group 'live-g' is inactive, but the current state is Stable."
                in done.stdout + done.stderr), describe(done)
        assert table(done.stdout, "GROUP") == [], describe(done)
    finally:
        member.terminate()
        try:
            member.wait(timeout=20)
        except subprocess.TimeoutExpired:
            member.kill()
            member.wait(timeout=10)


@pytest.mark.timeout(120)
def test_kafka_configs(bootstrap):
    create_topic(bootstrap, "conf", 1)
    entity = ["--bootstrap-server", bootstrap, "--entity-type", "topics", "--entity-name", "conf"]

    done = tool("kafka-configs", "--alter", *entity, "--add-config", "retention.ms=3600000")
    assert "Completed updating config for topic conf." in done.stdout, describe(done)

    done = tool("kafka-configs", "--describe", *entity)
    assert "Dynamic configs for topic conf are:" in done.stdout, describe(done)
    entries = [line.strip() for line in done.stdout.splitlines() if line.startswith("  ")]
    assert len(entries) == 1 and entries[0].startswith("retention.ms=3600000 sensitive=false"), describe(done)
    # DescribeConfigs with include_synonyms: the override names its source.
    assert "synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=3600000}" in entries[0], describe(done)

    done = tool("kafka-configs", "--alter", *entity, "--delete-config", "retention.ms")
    assert "Completed updating config for topic conf." in done.stdout, describe(done)
    done = tool("kafka-configs", "--describe", "--all", *entity)
    assert "All configs for topic conf are:" in done.stdout, describe(done)
    entries = {line.split("=", 1)[0].strip(): line.split("=", 1)[1].split()[0]
               for line in done.stdout.splitlines() if line.startswith("  ")}
    assert entries.get("retention.ms") == "604800000", describe(done)  # back to the default
    assert entries.get("cleanup.policy") == "delete", describe(done)


@pytest.mark.timeout(120)
def test_get_offsets_and_delete_records(bootstrap, tmp_path):
    create_topic(bootstrap, "trim", 2)
    produce(bootstrap, "trim", {0: [f"x{i}" for i in range(5)], 1: [f"y{i}" for i in range(3)]})
    assert get_offsets(bootstrap, "trim", -2) == {0: 0, 1: 0}
    assert get_offsets(bootstrap, "trim", -1) == {0: 5, 1: 3}

    spec = tmp_path / "delete.json"
    spec.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": "trim", "partition": 0, "offset": 2},
        {"topic": "trim", "partition": 1, "offset": -1},  # -1: up to the high watermark
    ]}))
    done = tool("kafka-delete-records", "--bootstrap-server", bootstrap, "--offset-json-file", spec)
    marks = dict(re.findall(r"partition: (\S+)\s+low_watermark: (\d+)", done.stdout))
    assert marks == {"trim-0": "2", "trim-1": "3"}, describe(done)

    assert get_offsets(bootstrap, "trim", -2) == {0: 2, 1: 3}
    assert [m.value() for m in consume_all(bootstrap, "trim", 2)] == [f"x{i}".encode() for i in range(2, 5)]


@pytest.mark.timeout(120)
def test_get_offsets_by_timestamp(bootstrap):
    """--time -3 (max timestamp) and --time <ms>: Kafka answers with the first *record* that has
    the largest timestamp / a timestamp at or after the time, also inside one batch."""
    from confluent_kafka import Producer
    create_topic(bootstrap, "stamps", 1)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 200})  # one batch
    for i, ts in enumerate([1000, 3000, 3000, 2000]):
        p.produce("stamps", value=f"s{i}".encode(), partition=0, timestamp=ts)
    assert p.flush(30) == 0
    assert get_offsets(bootstrap, "stamps", -3) == {0: 1}
    assert get_offsets(bootstrap, "stamps", 1500) == {0: 1}


@pytest.mark.timeout(240)
def test_perf_tests(bootstrap):
    create_topic(bootstrap, "perf", 3)
    done = tool("kafka-producer-perf-test", "--topic", "perf", "--num-records", "20000", "--record-size", "100",
                "--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all",
                timeout_s=180)
    finals = re.findall(r"^(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                        r"([\d.]+) ms max latency, (\d+) ms 50th", done.stdout, re.M)
    assert len(finals) == 1 and finals[0][0] == "20000", describe(done)
    assert float(finals[0][1]) > 0 and float(finals[0][3]) > 0, describe(done)
    assert get_offsets(bootstrap, "perf", -1) and sum(get_offsets(bootstrap, "perf", -1).values()) == 20000

    done = tool("kafka-consumer-perf-test", "--bootstrap-server", bootstrap, "--topic", "perf",
                "--messages", "20000", "--timeout", "60000", timeout_s=180)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    header = next(i for i, line in enumerate(lines) if line.startswith("start.time"))
    row = dict(zip([h.strip() for h in lines[header].split(",")], [v.strip() for v in lines[header + 1].split(",")]))
    assert int(row["data.consumed.in.nMsg"]) == 20000, describe(done)
    assert abs(float(row["data.consumed.in.MB"]) - 20000 * 100 / 1024 / 1024) < 0.01, describe(done)


@pytest.mark.timeout(60)
def test_broker_api_versions(bootstrap):
    done = tool("kafka-broker-api-versions", "--bootstrap-server", bootstrap)
    assert re.search(r"\(id: \d+ rack: \S+ isFenced: false\) -> \(", done.stdout), describe(done)
    apis = dict(re.findall(r"^\s*(\w+)\(\d+\): (.*?),?$", done.stdout, re.M))
    for api in ("Produce", "Fetch", "ListOffsets", "Metadata", "OffsetCommit", "OffsetFetch", "FindCoordinator",
                "JoinGroup", "CreateTopics", "DeleteTopics", "DeleteRecords", "DescribeConfigs",
                "IncrementalAlterConfigs", "CreatePartitions", "DeleteGroups", "ApiVersions"):
        assert api in apis and "[usable:" in apis[api], f"{api}: {apis.get(api)}\n{describe(done)}"


@pytest.mark.timeout(90)
def test_kafka_log_dirs(bootstrap):
    create_topic(bootstrap, "dirs", 2)
    produce(bootstrap, "dirs", {0: ["one", "two", "three"]})
    done = tool("kafka-log-dirs", "--bootstrap-server", bootstrap, "--describe", "--topic-list", "dirs")
    line = next((line for line in done.stdout.splitlines() if line.startswith("{")), None)
    assert line is not None, describe(done)
    brokers = json.loads(line)["brokers"]
    assert len(brokers) == 1 and brokers[0]["logDirs"], describe(done)
    parts = {}
    for d in brokers[0]["logDirs"]:
        assert d["error"] is None and d["logDir"], d
        for p in d["partitions"]:
            parts[p["partition"]] = p
    assert set(parts) == {"dirs-0", "dirs-1"}, describe(done)
    assert parts["dirs-0"]["size"] > 0 and parts["dirs-1"]["size"] == 0, describe(done)
    assert all(p["offsetLag"] == 0 and p["isFuture"] is False for p in parts.values()), describe(done)


@pytest.mark.timeout(90)
def test_kafka_leader_election(bootstrap):
    """A single node: every partition already has its preferred leader; Kafka says so and
    exits 0. An unknown partition is reported as not elected."""
    create_topic(bootstrap, "elect", 2)
    done = tool("kafka-leader-election", "--bootstrap-server", bootstrap, "--election-type", "preferred",
                "--topic", "elect", "--partition", "0")
    assert "Valid replica already elected for partitions elect-0" in done.stdout, describe(done)
    done = tool("kafka-leader-election", "--bootstrap-server", bootstrap, "--election-type", "preferred",
                "--all-topic-partitions")
    assert "could not be elected" not in done.stdout + done.stderr, describe(done)
    done = tool("kafka-leader-election", "--bootstrap-server", bootstrap, "--election-type", "preferred",
                "--topic", "nosuch", "--partition", "0", ok=False)
    out = done.stdout + done.stderr
    assert "UnknownTopicOrPartitionException" in out and "1 replica(s) could not be elected" in out, describe(done)


@pytest.mark.timeout(90)
def test_kafka_transactions_tool(bootstrap):
    """`kafka-transactions describe-producers` lists a partition's idempotent producer (id,
    epoch, last sequence, no transaction); `list` shows no transaction (none was started)."""
    create_topic(bootstrap, "idem", 1)
    produce(bootstrap, "idem", {0: [f"i{i}" for i in range(4)]})  # idempotent: sequences 0..3
    done = tool("kafka-transactions", "--bootstrap-server", bootstrap, "describe-producers",
                "--topic", "idem", "--partition", "0")
    rows = table(done.stdout, "ProducerId")
    assert len(rows) == 1, describe(done)
    row = rows[0]
    assert int(row["ProducerId"]) >= 0 and int(row["ProducerEpoch"]) >= 0, describe(done)
    assert row["LastSequence"] == "3" and row["LatestCoordinatorEpoch"] == "-1", describe(done)
    assert row["CurrentTransactionStartOffset"] == "None" and int(row["LastTimestamp"]) > 0, describe(done)

    done = tool("kafka-transactions", "--bootstrap-server", bootstrap, "list")
    assert done.stdout.split() == ["TransactionalId", "Coordinator", "ProducerId", "TransactionState"], describe(done)


@pytest.mark.timeout(60)
def test_kafka_acls_without_authorizer(bootstrap):
    """No authorizer (Kafka's default, Sluice always): listing or adding ACLs fails with
    SecurityDisabledException and Kafka's message."""
    for args in (["--list"], ["--add", "--allow-principal", "User:alice", "--operation", "Read", "--topic", "orders"]):
        done = tool("kafka-acls", "--bootstrap-server", bootstrap, *args, ok=False)
        assert done.returncode != 0, describe(done)
        assert "SecurityDisabledException: No Authorizer is configured on the broker" in done.stdout + done.stderr, describe(done)


@pytest.mark.timeout(60)
def test_kafka_client_metrics_list(bootstrap):
    """No client-metrics subscription exists (ListConfigResources): an empty list, exit 0."""
    done = tool("kafka-client-metrics", "--bootstrap-server", bootstrap, "--list")
    assert done.stdout.strip() == "", describe(done)


@pytest.mark.timeout(120)
def test_kafka_reassign_partitions_one_node(bootstrap, tmp_path):
    """One broker: --generate proposes the partitions where they are, --execute of that plan
    succeeds (nothing moves), --verify reports it completed and clears the replication throttles
    (deletes of broker and topic configs that are not set)."""
    admin = create_topic(bootstrap, "moved", 2)
    (node,) = admin.list_topics(timeout=10).brokers
    move = tmp_path / "move.json"
    move.write_text(json.dumps({"version": 1, "topics": [{"topic": "moved"}]}))
    done = tool("kafka-reassign-partitions", "--bootstrap-server", bootstrap, "--topics-to-move-json-file", move,
                "--broker-list", node, "--generate")
    lines = done.stdout.splitlines()
    at = lines.index("Proposed partition reassignment configuration")
    plan = json.loads(lines[at + 1])
    assert sorted((p["topic"], p["partition"], p["replicas"]) for p in plan["partitions"]) == \
        [("moved", 0, [node]), ("moved", 1, [node])], describe(done)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(lines[at + 1])

    done = tool("kafka-reassign-partitions", "--bootstrap-server", bootstrap, "--reassignment-json-file", plan_file,
                "--execute")
    assert "Successfully started partition reassignment" in done.stdout, describe(done)
    assert "Error" not in done.stdout + done.stderr, describe(done)

    done = tool("kafka-reassign-partitions", "--bootstrap-server", bootstrap, "--reassignment-json-file", plan_file,
                "--verify")
    for p in (0, 1):
        assert f"Reassignment of partition moved-{p} is completed." in done.stdout, describe(done)
    assert "Clearing topic-level throttles on topic moved" in done.stdout, describe(done)
    assert "Error" not in done.stdout + done.stderr, describe(done)
