package dev.sluice.javatests;

import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;

import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.SubscriptionPattern;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.errors.WakeupException;

/**
 * One subscribed KafkaConsumer polling on its own thread, as an application would: it commits
 * (commitSync) what it consumed after every poll and in onPartitionsRevoked, so the group as a
 * whole consumes each record once across rebalances. Its state is read from the test's thread.
 */
final class Member implements AutoCloseable {
    final String name;
    final KafkaConsumer<String, String> consumer;
    final ConcurrentLinkedQueue<ConsumerRecord<String, String>> records = new ConcurrentLinkedQueue<>();
    /** Each callback as "revoked [..]", "assigned [..]", "lost [..]", in order. */
    final List<String> events = new CopyOnWriteArrayList<>();
    final AtomicReference<Set<TopicPartition>> assignment = new AtomicReference<>(Set.of());
    final AtomicReference<ConsumerGroupMetadata> groupMetadata = new AtomicReference<>();
    final AtomicReference<Throwable> failure = new AtomicReference<>();
    final java.util.concurrent.atomic.AtomicInteger deferredCommits = new java.util.concurrent.atomic.AtomicInteger();
    /** Consumed and not yet committed (only touched by the member's thread). */
    private final Map<TopicPartition, OffsetAndMetadata> pending = new HashMap<>();
    private final Thread thread;
    private volatile boolean stopping;
    private volatile CloseOptions.GroupMembershipOperation onClose = CloseOptions.GroupMembershipOperation.DEFAULT;

    Member(String name, Map<String, Object> conf, String topic) {
        this(name, conf, topic, null);
    }

    /** With a pattern: subscribe(SubscriptionPattern) (KIP-848's broker-side regex) instead of the topic. */
    Member(String name, Map<String, Object> conf, String topic, SubscriptionPattern pattern) {
        this.name = name;
        Map<String, Object> c = new HashMap<>(conf);
        c.putIfAbsent(org.apache.kafka.clients.consumer.ConsumerConfig.CLIENT_ID_CONFIG, "jt-" + name);
        this.consumer = Env.consumer(c);
        this.thread = new Thread(() -> run(topic, pattern), "member-" + name);
        this.thread.setDaemon(true);
        this.thread.start();
    }

    private void run(String topic, SubscriptionPattern pattern) {
        try {
            ConsumerRebalanceListener listener = new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                    events.add("revoked " + sorted(partitions));
                    commitPositions(partitions);
                    pending.keySet().removeAll(partitions);
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                    events.add("assigned " + sorted(partitions));
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> partitions) {
                    events.add("lost " + sorted(partitions));
                    pending.keySet().removeAll(partitions);
                }
            };
            if (pattern != null) {
                consumer.subscribe(pattern, listener);
            } else {
                consumer.subscribe(List.of(topic), listener);
            }
            while (!stopping) {
                ConsumerRecords<String, String> batch = consumer.poll(Duration.ofMillis(100));
                batch.forEach(records::add);
                for (TopicPartition tp : batch.partitions()) {
                    List<ConsumerRecord<String, String>> rs = batch.records(tp);
                    pending.put(tp, new OffsetAndMetadata(rs.get(rs.size() - 1).offset() + 1));
                }
                // Only partitions still owned: a later commit of a partition that moved could
                // take its new owner's committed offset back.
                pending.keySet().retainAll(consumer.assignment());
                if (!pending.isEmpty()) {
                    try {
                        consumer.commitSync(pending, Env.OP);
                        pending.clear();
                    } catch (RebalanceInProgressException e) {
                        // The client is rejoining (cooperative members consume meanwhile): the
                        // commit waits for the next poll, or for onPartitionsRevoked.
                        deferredCommits.incrementAndGet();
                    }
                }
                assignment.set(Set.copyOf(consumer.assignment()));
                try {
                    groupMetadata.set(consumer.groupMetadata());
                } catch (RuntimeException e) {
                    // not in the group yet
                }
            }
        } catch (WakeupException e) {
            // closing
        } catch (Throwable t) {
            failure.set(t);
        } finally {
            try {
                consumer.close(CloseOptions.timeout(Env.OP).withGroupMembershipOperation(onClose));
            } catch (Throwable t) {
                failure.compareAndSet(null, t);
            }
        }
    }

    private void commitPositions(Collection<TopicPartition> partitions) {
        Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
        for (TopicPartition tp : partitions) {
            offsets.put(tp, new OffsetAndMetadata(consumer.position(tp, Env.OP)));
        }
        if (!offsets.isEmpty()) {
            consumer.commitSync(offsets, Env.OP);
        }
    }

    static String sorted(Collection<TopicPartition> partitions) {
        return partitions.stream().map(TopicPartition::partition).sorted().map(String::valueOf)
            .collect(Collectors.joining(",", "[", "]"));
    }

    Set<Integer> partitions() {
        return assignment.get().stream().map(TopicPartition::partition).collect(Collectors.toSet());
    }

    int count() {
        return records.size();
    }

    /** Fails the test with the member's own exception if its poll loop died. */
    void check() {
        Throwable t = failure.get();
        if (t != null) {
            throw new AssertionError("member " + name + " failed: " + t, t);
        }
    }

    /** Stops polling and closes the consumer (DEFAULT: a dynamic member leaves, a static one stays). */
    void stop() throws InterruptedException {
        stop(CloseOptions.GroupMembershipOperation.DEFAULT);
    }

    void stop(CloseOptions.GroupMembershipOperation op) throws InterruptedException {
        onClose = op;
        stopping = true;
        thread.join(TimeUnit.SECONDS.toMillis(40));
        if (thread.isAlive()) {
            consumer.wakeup();
            thread.join(TimeUnit.SECONDS.toMillis(10));
        }
        check();
    }

    @Override
    public void close() throws InterruptedException {
        if (!stopping) {
            stop();
        }
    }

    @Override
    public String toString() {
        return name + "{partitions=" + partitions() + ", records=" + count() + ", events=" + events
            + ", deferredCommits=" + deferredCommits + "}";
    }
}
