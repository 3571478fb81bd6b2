package dev.sluice.javatests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.FencedInstanceIdException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** KafkaConsumer with the classic group protocol (JoinGroup/SyncGroup/Heartbeat). */
class ClassicGroupTest {
    static final int PARTITIONS = 4;
    static final int PER_PARTITION = 25;
    static final Duration WAIT = Duration.ofSeconds(45);

    static Map<String, Object> classic(String group, String assignor) {
        Map<String, Object> c = new HashMap<>();
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        c.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignor);
        c.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10_000);
        c.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500);
        c.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, 60_000); // also the rebalance timeout
        return c;
    }

    static void assertConsumedOnce(List<Member> members, int expected) {
        List<ConsumerRecord<String, String>> all = new ArrayList<>();
        members.forEach(m -> all.addAll(m.records));
        Set<String> positions = all.stream().map(r -> r.partition() + "@" + r.offset()).collect(Collectors.toSet());
        Set<String> values = all.stream().map(ConsumerRecord::value).collect(Collectors.toSet());
        assertEquals(expected, all.size(), "records consumed by the group: " + members);
        assertEquals(expected, positions.size(), "distinct (partition, offset) consumed");
        assertEquals(expected, values.size(), "distinct values consumed");
    }

    static int total(Member... ms) {
        int n = 0;
        for (Member m : ms) {
            m.check();
            n += m.count();
        }
        return n;
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(classes = {RangeAssignor.class, CooperativeStickyAssignor.class})
    @Timeout(180)
    void twoMembersSplitRebalanceOnJoinAndLeave(Class<?> assignor) throws Exception {
        boolean cooperative = assignor == CooperativeStickyAssignor.class;
        String topic = Env.unique("classic-" + assignor.getSimpleName());
        String group = Env.unique("g-classic-" + assignor.getSimpleName());
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, topic, PARTITIONS);
        }
        Env.produceToPartitions(topic, PARTITIONS, PER_PARTITION, "a");
        Map<String, Object> conf = classic(group, assignor.getName());
        try (Member m1 = new Member("m1", conf, topic)) {
            Env.waitUntil(WAIT, "m1 alone owns all partitions and read the first batch: " + m1,
                () -> total(m1) == PARTITIONS * PER_PARTITION && m1.partitions().size() == PARTITIONS);
            int m1EventsBeforeJoin = m1.events.size();

            try (Member m2 = new Member("m2", conf, topic)) {
                Env.waitUntil(WAIT, "two members split the partitions 2/2: " + m1 + " " + m2, () -> {
                    Set<Integer> a = m1.partitions(), b = m2.partitions();
                    Set<Integer> union = new HashSet<>(a);
                    union.addAll(b);
                    return total(m1, m2) >= 0 && a.size() == 2 && b.size() == 2 && union.size() == PARTITIONS;
                });
                List<String> joinEvents = m1.events.subList(m1EventsBeforeJoin, m1.events.size());
                if (cooperative) {
                    assertFalse(joinEvents.contains("revoked [0,1,2,3]"),
                        "cooperative: m1 gives up only the partitions that move: " + joinEvents);
                    assertTrue(joinEvents.stream().anyMatch(e -> e.startsWith("revoked [") && e.length() == "revoked [x,y]".length()),
                        "cooperative: m1 revokes two partitions: " + joinEvents);
                } else {
                    assertTrue(joinEvents.contains("revoked [0,1,2,3]"),
                        "eager: m1 revokes everything before rejoining: " + joinEvents);
                }
                Set<Integer> m2Partitions = m2.partitions();
                Env.produceToPartitions(topic, PARTITIONS, PER_PARTITION, "b");
                Env.waitUntil(WAIT, "the group consumed the second batch: " + m1 + " " + m2,
                    () -> total(m1, m2) == 2 * PARTITIONS * PER_PARTITION);
                long m2b = m2.records.stream().filter(r -> r.value().startsWith("b-")).count();
                assertEquals(2 * PER_PARTITION, m2b, "m2 read the second batch of its two partitions");
                assertTrue(m2.records.stream().allMatch(r -> m2Partitions.contains(r.partition())),
                    "m2 read only its partitions: " + m2);

                m2.stop(); // a dynamic member leaves the group on close
                Env.waitUntil(WAIT, "m1 owns all partitions again after m2 left: " + m1,
                    () -> total(m1) >= 0 && m1.partitions().size() == PARTITIONS);
                Env.produceToPartitions(topic, PARTITIONS, PER_PARTITION, "c");
                Env.waitUntil(WAIT, "m1 consumed the third batch: " + m1 + " " + m2,
                    () -> total(m1, m2) == 3 * PARTITIONS * PER_PARTITION);
                Thread.sleep(500); // nothing is consumed twice, even a moment later
                assertConsumedOnce(List.of(m1, m2), 3 * PARTITIONS * PER_PARTITION);
            }
        }
    }

    @Test
    @Timeout(180)
    void staticMemberRestartsWithoutRebalance() throws Exception {
        String topic = Env.unique("static");
        String group = Env.unique("g-static");
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, topic, PARTITIONS);
            Env.produceToPartitions(topic, PARTITIONS, PER_PARTITION, "a");
            Map<String, Object> conf1 = classic(group, RangeAssignor.class.getName());
            conf1.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 45_000);
            Map<String, Object> conf2 = new HashMap<>(conf1);
            conf1.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, group + "-i1");
            conf2.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, group + "-i2");
            Member m1 = new Member("m1", conf1, topic);
            Member m2 = null;
            Member m2again = null;
            try {
                Env.waitUntil(WAIT, "m1 alone owns all partitions: " + m1,
                    () -> total(m1) == PARTITIONS * PER_PARTITION && m1.partitions().size() == PARTITIONS);
                Member first2 = m2 = new Member("m2", conf2, topic);
                Env.waitUntil(WAIT, "two static members split the partitions 2/2: " + m1 + " " + m2,
                    () -> total(m1, first2) >= 0 && m1.partitions().size() == 2 && first2.partitions().size() == 2);
                // Settled: m1's callbacks stop changing.
                Env.waitUntil(WAIT, "the group settles", () -> {
                    int before = m1.events.size();
                    sleep(1500);
                    return m1.events.size() == before && m1.partitions().size() == 2;
                });
                ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all()
                    .get(Env.OP_MS, TimeUnit.MILLISECONDS).get(group);
                assertEquals(Set.of(group + "-i1", group + "-i2"), d.members().stream()
                    .map(m -> m.groupInstanceId().orElse("none")).collect(Collectors.toSet()),
                    "describeConsumerGroups shows both group.instance.ids");
                int m1Events = m1.events.size();
                int generation = m1.groupMetadata.get().generationId();
                Set<Integer> m1Partitions = m1.partitions();
                Set<Integer> m2Partitions = m2.partitions();

                m2.stop(); // a static member does not leave on close: its partitions wait for it
                ConsumerGroupDescription away = admin.describeConsumerGroups(List.of(group)).all()
                    .get(Env.OP_MS, TimeUnit.MILLISECONDS).get(group);
                assertEquals(2, away.members().size(),
                    "the closed static member stays in the group until its session times out: " + away);
                Env.produceToPartitions(topic, PARTITIONS, PER_PARTITION, "b");
                Env.waitUntil(WAIT, "m1 consumed the new records of its own partitions: " + m1,
                    () -> total(m1) == PARTITIONS * PER_PARTITION + 2 * PER_PARTITION);
                sleep(2000);
                assertEquals(m1Partitions, m1.partitions(), "m1 did not take m2's partitions while m2 was away");

                Member second2 = m2again = new Member("m2-restarted", conf2, topic);
                Env.waitUntil(WAIT, "the restarted m2 has its partitions back and read what was produced meanwhile: " + second2,
                    () -> total(second2) == 2 * PER_PARTITION && second2.partitions().equals(m2Partitions));
                assertTrue(second2.records.stream().allMatch(r -> r.value().startsWith("b-")),
                    "the restarted m2 resumed at its committed offsets");
                sleep(1000);
                total(m1, second2);
                assertEquals(m1Partitions, m1.partitions(), "m1 kept its partitions");
                assertEquals(m1Events, m1.events.size(),
                    "m1 saw no rebalance (no revoke/assign callbacks) while m2 restarted: " + m1.events);
                assertEquals(generation, m1.groupMetadata.get().generationId(), "m1's generation is unchanged");
                assertEquals(generation, second2.groupMetadata.get().generationId(),
                    "the restarted m2 joined the same generation");
                assertConsumedOnce(List.of(m1, m2, second2), 2 * PARTITIONS * PER_PARTITION);
            } finally {
                // Static members leave explicitly, so the group empties.
                m1.stop(CloseOptions.GroupMembershipOperation.LEAVE_GROUP);
                if (m2again != null) {
                    m2again.stop(CloseOptions.GroupMembershipOperation.LEAVE_GROUP);
                } else if (m2 != null) {
                    m2.stop(CloseOptions.GroupMembershipOperation.LEAVE_GROUP);
                }
            }
        }
    }

    @Test
    @Timeout(120)
    void sameInstanceIdFencesTheOlderMember() throws Exception {
        String topic = Env.unique("fence");
        String group = Env.unique("g-fence");
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, topic, 2);
        }
        Env.produceToPartitions(topic, 2, 10, "a");
        Map<String, Object> conf = classic(group, RangeAssignor.class.getName());
        conf.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 30_000);
        conf.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, group + "-same");
        Member old = new Member("old", conf, topic);
        Member newer = null;
        try {
            Env.waitUntil(WAIT, "the first member owns both partitions: " + old,
                () -> total(old) == 20 && old.partitions().size() == 2);
            Member n = newer = new Member("new", conf, topic);
            Env.waitUntil(WAIT, "the newer member with the same group.instance.id owns both partitions: " + n,
                () -> n.partitions().size() == 2);
            Env.waitUntil(WAIT, "the older member is fenced (its poll throws FencedInstanceIdException): " + old,
                () -> old.failure.get() != null);
            assertInstanceOf(FencedInstanceIdException.class, old.failure.get(), "the older member's failure");
            Env.produceToPartitions(topic, 2, 10, "b");
            Env.waitUntil(WAIT, "the newer member reads the new records: " + n,
                () -> n.records.stream().filter(r -> r.value().startsWith("b-")).count() == 20);
        } finally {
            old.failure.set(null);
            old.stop(CloseOptions.GroupMembershipOperation.REMAIN_IN_GROUP);
            old.failure.set(null);
            if (newer != null) {
                newer.stop(CloseOptions.GroupMembershipOperation.LEAVE_GROUP);
            }
        }
    }

    @Test
    @Timeout(60)
    void commitSyncThenCommitted() throws Exception {
        String topic = Env.unique("commit");
        String group = Env.unique("g-commit");
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, topic, 3);
        }
        Env.produceToPartitions(topic, 3, 10, "a");
        TopicPartition tp0 = new TopicPartition(topic, 0);
        TopicPartition tp1 = new TopicPartition(topic, 1);
        TopicPartition tp2 = new TopicPartition(topic, 2);
        Map<String, Object> conf = Map.of(ConsumerConfig.GROUP_ID_CONFIG, group,
            ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        try (KafkaConsumer<String, String> c = Env.consumer(conf)) {
            c.assign(List.of(tp0, tp1, tp2));
            c.commitSync(Map.of(tp0, new OffsetAndMetadata(3, "meta-0"), tp1, new OffsetAndMetadata(10, "")), Env.OP);
            Map<TopicPartition, OffsetAndMetadata> got = c.committed(Set.of(tp0, tp1, tp2), Env.OP);
            assertEquals(3, got.get(tp0).offset());
            assertEquals("meta-0", got.get(tp0).metadata());
            assertEquals(10, got.get(tp1).offset());
            assertEquals("", got.get(tp1).metadata());
            assertEquals(null, got.get(tp2), "no committed offset for partition 2: " + got);
            // A commit replaces the earlier one.
            c.commitSync(Map.of(tp0, new OffsetAndMetadata(7, "meta-0b")), Env.OP);
            got = c.committed(Set.of(tp0, tp1), Env.OP);
            assertEquals(7, got.get(tp0).offset());
            assertEquals("meta-0b", got.get(tp0).metadata());
            assertEquals(10, got.get(tp1).offset());
        }
        // Another consumer of the group starts at the committed offsets.
        try (KafkaConsumer<String, String> c = Env.consumer(conf)) {
            c.assign(List.of(tp0, tp1));
            assertEquals(7, c.position(tp0, Env.OP));
            assertEquals(10, c.position(tp1, Env.OP));
            List<ConsumerRecord<String, String>> rs = new ArrayList<>();
            Env.waitUntil(Duration.ofSeconds(20), "3 records from offset 7 of partition 0", () -> {
                c.poll(Duration.ofMillis(100)).forEach(rs::add);
                return rs.size() >= 3;
            });
            assertEquals(List.of("a-p0-7", "a-p0-8", "a-p0-9"),
                rs.stream().map(ConsumerRecord::value).collect(Collectors.toList()));
        }
    }

    static boolean sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return true;
    }
}
