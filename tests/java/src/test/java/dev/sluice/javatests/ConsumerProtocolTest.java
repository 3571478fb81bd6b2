package dev.sluice.javatests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.SubscriptionPattern;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** KafkaConsumer with group.protocol=consumer (KIP-848: ConsumerGroupHeartbeat, server-side assignment). */
class ConsumerProtocolTest {
    static ConsumerGroupDescription describe(Admin admin, String group) {
        try {
            return admin.describeConsumerGroups(List.of(group)).all().get(Env.OP_MS, TimeUnit.MILLISECONDS).get(group);
        } catch (Exception e) {
            throw new AssertionError("describeConsumerGroups(" + group + ") failed: " + e, e);
        }
    }

    static final int PARTITIONS = 4;
    static final int PER_PARTITION = 25;

    @Test
    @Timeout(180)
    void twoMembersSplitThenOneLeaves() throws Exception {
        String topic = Env.unique("kip848");
        String group = Env.unique("g-kip848");
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, topic, PARTITIONS);
            Env.produceToPartitions(topic, PARTITIONS, PER_PARTITION, "a");
            Map<String, Object> conf = Map.of(ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
            try (Member m1 = new Member("m1", conf, topic)) {
                Env.waitUntil(ClassicGroupTest.WAIT, "m1 alone owns all partitions and read the first batch: " + m1,
                    () -> ClassicGroupTest.total(m1) == PARTITIONS * PER_PARTITION && m1.partitions().size() == PARTITIONS);
                try (Member m2 = new Member("m2", conf, topic)) {
                    Env.waitUntil(ClassicGroupTest.WAIT, "two members split the partitions 2/2: " + m1 + " " + m2, () -> {
                        Set<Integer> union = new HashSet<>(m1.partitions());
                        union.addAll(m2.partitions());
                        return ClassicGroupTest.total(m1, m2) >= 0 && m1.partitions().size() == 2
                            && m2.partitions().size() == 2 && union.size() == PARTITIONS;
                    });
                    // The coordinator's view once both members reconciled: each member's assignment
                    // is its target and what its client owns, at the group's epoch.
                    ConsumerGroupDescription d = Env.waitUntil(ClassicGroupTest.WAIT,
                        "describeConsumerGroups shows 2 reconciled members", () -> {
                            ConsumerGroupDescription g = describe(admin, group);
                            boolean settled = g.members().size() == 2 && g.groupState() == GroupState.STABLE
                                && g.members().stream().allMatch(mem -> mem.targetAssignment().isPresent()
                                    && mem.targetAssignment().get().equals(mem.assignment())
                                    && mem.assignment().topicPartitions().size() == 2);
                            return settled ? g : null;
                        });
                    assertEquals(GroupType.CONSUMER, d.type(), "a KIP-848 group: " + d);
                    assertTrue(d.groupEpoch().isPresent() && d.targetAssignmentEpoch().isPresent(), "epochs: " + d);
                    assertEquals(d.groupEpoch().get(), d.targetAssignmentEpoch().get(), "target assignment is current: " + d);
                    assertEquals("uniform", d.partitionAssignor(), "the server-side assignor (Kafka's default): " + d);
                    for (MemberDescription mem : d.members()) {
                        assertEquals(d.targetAssignmentEpoch(), mem.memberEpoch(), "member epoch of " + mem);
                        Member local = mem.clientId().equals("jt-m1") ? m1 : m2;
                        assertEquals("jt-" + local.name, mem.clientId(), "client id of " + mem);
                        assertEquals(local.assignment.get(), mem.assignment().topicPartitions(),
                            "the coordinator's assignment of " + local.name + " is what its client owns");
                    }
                    Set<Integer> m2Partitions = m2.partitions();
                    Env.produceToPartitions(topic, PARTITIONS, PER_PARTITION, "b");
                    Env.waitUntil(ClassicGroupTest.WAIT, "the group consumed the second batch: " + m1 + " " + m2,
                        () -> ClassicGroupTest.total(m1, m2) == 2 * PARTITIONS * PER_PARTITION);
                    assertTrue(m2.records.stream().allMatch(r -> m2Partitions.contains(r.partition())),
                        "m2 read only its partitions: " + m2);
                    assertEquals(2 * PER_PARTITION, m2.records.size(), "m2 read the second batch of its partitions");

                    m2.stop(); // leaves the group (ConsumerGroupHeartbeat with member epoch -1)
                    Env.waitUntil(ClassicGroupTest.WAIT, "m1 owns all partitions after m2 left: " + m1,
                        () -> ClassicGroupTest.total(m1) >= 0 && m1.partitions().size() == PARTITIONS);
                    Env.waitUntil(ClassicGroupTest.WAIT, "describeConsumerGroups shows m1 alone with all partitions", () -> {
                        ConsumerGroupDescription g = describe(admin, group);
                        return g.members().size() == 1
                            && g.members().iterator().next().assignment().topicPartitions().size() == PARTITIONS;
                    });
                    Env.produceToPartitions(topic, PARTITIONS, PER_PARTITION, "c");
                    Env.waitUntil(ClassicGroupTest.WAIT, "m1 consumed the third batch: " + m1,
                        () -> ClassicGroupTest.total(m1, m2) == 3 * PARTITIONS * PER_PARTITION);
                    ClassicGroupTest.sleep(500);
                    ClassicGroupTest.assertConsumedOnce(List.of(m1, m2), 3 * PARTITIONS * PER_PARTITION);
                }
            }
        }
    }

    @Test
    @Timeout(120)
    void regexSubscriptionResolvedByTheBroker() throws Exception {
        // Sluice differs: ConsumerGroupHeartbeat with SubscribedTopicRegex is refused
        // (INVALID_REQUEST); see docs/kafka-differences.md, "ConsumerProtocolTest.regexSubscriptionResolvedByTheBroker".
        Assumptions.assumeFalse(Env.isSluice(), "Sluice does not support KIP-848 regex subscriptions yet");
        String prefix = Env.unique("kip848re");
        String group = Env.unique("g-kip848re");
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, prefix + "-x", 2);
            Env.createTopic(admin, prefix + "-y", 1);
            Env.createTopic(admin, prefix + "z-other", 1); // does not match
            Env.produceToPartitions(prefix + "-x", 2, 5, "x");
            Env.produceToPartitions(prefix + "-y", 1, 5, "y");
            Env.produceToPartitions(prefix + "z-other", 1, 5, "z");
            Map<String, Object> conf = Map.of(ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
            try (Member m = new Member("re", conf, null, new SubscriptionPattern(prefix + "-.*"))) {
                Env.waitUntil(ClassicGroupTest.WAIT, "the member owns the 3 partitions of the 2 matching topics: " + m,
                    () -> ClassicGroupTest.total(m) == 15 && m.assignment.get().size() == 3);
                assertTrue(m.records.stream().noneMatch(r -> r.topic().endsWith("z-other")), "only matching topics");
                // A matching topic created later joins the subscription.
                Env.createTopic(admin, prefix + "-w", 1);
                Env.produceToPartitions(prefix + "-w", 1, 5, "w");
                Env.waitUntil(ClassicGroupTest.WAIT, "the member picks up the new matching topic: " + m,
                    () -> ClassicGroupTest.total(m) == 20 && m.assignment.get().size() == 4);
            }
        }
    }

    @Test
    @Timeout(150)
    void staticMemberRestartsWithItsPartitions() throws Exception {
        String topic = Env.unique("kip848static");
        String group = Env.unique("g-kip848static");
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, topic, PARTITIONS);
            Env.produceToPartitions(topic, PARTITIONS, PER_PARTITION, "a");
            Map<String, Object> conf1 = new java.util.HashMap<>(Map.of(ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer"));
            Map<String, Object> conf2 = new java.util.HashMap<>(conf1);
            conf1.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, group + "-i1");
            conf2.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, group + "-i2");
            Member m1 = new Member("m1", conf1, topic);
            Member m2 = null;
            Member again = null;
            try {
                Env.waitUntil(ClassicGroupTest.WAIT, "m1 alone owns all partitions: " + m1,
                    () -> ClassicGroupTest.total(m1) == PARTITIONS * PER_PARTITION && m1.partitions().size() == PARTITIONS);
                Member first = m2 = new Member("m2", conf2, topic);
                Env.waitUntil(ClassicGroupTest.WAIT, "two static members split the partitions 2/2: " + m1 + " " + first,
                    () -> ClassicGroupTest.total(m1, first) >= 0 && m1.partitions().size() == 2 && first.partitions().size() == 2);
                Env.waitUntil(ClassicGroupTest.WAIT, "the group settles", () -> {
                    int before = m1.events.size();
                    ClassicGroupTest.sleep(1500);
                    return m1.events.size() == before && m1.partitions().size() == 2;
                });
                int m1Events = m1.events.size();
                Set<Integer> m1Partitions = m1.partitions();
                Set<Integer> m2Partitions = m2.partitions();

                m2.stop(); // a static member leaves temporarily (member epoch -2): its partitions wait for it
                Env.produceToPartitions(topic, PARTITIONS, PER_PARTITION, "b");
                Env.waitUntil(ClassicGroupTest.WAIT, "m1 consumed the new records of its own partitions: " + m1,
                    () -> ClassicGroupTest.total(m1) == PARTITIONS * PER_PARTITION + 2 * PER_PARTITION);
                ClassicGroupTest.sleep(2000);
                assertEquals(m1Partitions, m1.partitions(), "m1 did not take m2's partitions while m2 was away");

                Member second = again = new Member("m2-restarted", conf2, topic);
                Env.waitUntil(ClassicGroupTest.WAIT, "the restarted m2 has its partitions back and read what was produced meanwhile: " + second,
                    () -> ClassicGroupTest.total(second) == 2 * PER_PARTITION && second.partitions().equals(m2Partitions));
                ClassicGroupTest.sleep(1000);
                ClassicGroupTest.total(m1, second);
                assertEquals(m1Partitions, m1.partitions(), "m1 kept its partitions");
                assertEquals(m1Events, m1.events.size(), "m1 saw no revoke/assign while m2 restarted: " + m1.events);
                ClassicGroupTest.assertConsumedOnce(List.of(m1, m2, second), 2 * PARTITIONS * PER_PARTITION);
            } finally {
                m1.stop(org.apache.kafka.clients.consumer.CloseOptions.GroupMembershipOperation.LEAVE_GROUP);
                if (again != null) {
                    again.stop(org.apache.kafka.clients.consumer.CloseOptions.GroupMembershipOperation.LEAVE_GROUP);
                } else if (m2 != null) {
                    m2.stop(org.apache.kafka.clients.consumer.CloseOptions.GroupMembershipOperation.LEAVE_GROUP);
                }
            }
        }
    }
}
