"""Sluice's own admin CLI (`sluice topic ...`) speaks the Kafka protocol to a running broker.

PENDING: `sluice topic` does not exist yet; conftest.py keeps this directory out of the run.
Move this file to tests/clients/ in the commit that adds the subcommand."""

import subprocess

from sluicetest import admin_client, free_port, sluice_binary, wait_for_partitions

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
