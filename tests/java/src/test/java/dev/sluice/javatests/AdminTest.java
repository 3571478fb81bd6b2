package dev.sluice.javatests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.GroupSubscribedToTopicException;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.InvalidReplicationFactorException;
import org.apache.kafka.common.errors.InvalidTopicException;
import org.apache.kafka.common.errors.OffsetOutOfRangeException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownMemberIdException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The Admin client: topics, partitions, topic configs, consumer groups, records, cluster, log dirs. */
@Timeout(90)
class AdminTest {
    static final Duration WAIT = Duration.ofSeconds(30);

    static <T> T get(KafkaFuture<T> f) throws Exception {
        return f.get(Env.OP_MS, TimeUnit.MILLISECONDS);
    }

    static Throwable failureOf(KafkaFuture<?> f) throws Exception {
        ExecutionException e = assertThrows(ExecutionException.class, () -> f.get(Env.OP_MS, TimeUnit.MILLISECONDS));
        return e.getCause();
    }

    @Test
    void createListDescribeDeleteTopics() throws Exception {
        String a = Env.unique("adm-a");
        String b = Env.unique("adm-b");
        try (Admin admin = Env.admin()) {
            get(admin.createTopics(List.of(new NewTopic(a, 3, (short) 1),
                new NewTopic(b, 1, (short) 1).configs(Map.of("retention.ms", "7200000")))).all());
            Env.waitUntil(WAIT, "listTopics shows both topics", () -> {
                try {
                    return get(admin.listTopics().names()).containsAll(Set.of(a, b));
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
            });
            TopicDescription da = Env.waitForPartitions(admin, a, 3);
            Env.waitForPartitions(admin, b, 1);
            assertEquals(a, da.name());
            assertFalse(da.isInternal());
            assertNotNull(da.topicId());
            assertFalse(da.topicId().toString().equals("AAAAAAAAAAAAAAAAAAAAAA"), "a real topic id");
            for (var p : da.partitions()) {
                assertEquals(1, p.replicas().size(), "replicas of " + p);
                assertEquals(1, p.isr().size(), "isr of " + p);
                assertEquals(p.leader().id(), p.replicas().get(0).id());
            }
            assertEquals(List.of(0, 1, 2), da.partitions().stream().map(p -> p.partition()).collect(Collectors.toList()));

            String dry = Env.unique("adm-dry");
            get(admin.createTopics(List.of(new NewTopic(dry, 2, (short) 1)),
                new CreateTopicsOptions().validateOnly(true)).all());
            Thread.sleep(300);
            assertFalse(get(admin.listTopics().names()).contains(dry), "validateOnly creates nothing");

            Throwable exists = failureOf(admin.createTopics(List.of(new NewTopic(a, 3, (short) 1))).all());
            assertInstanceOf(TopicExistsException.class, exists, "createTopics of an existing topic");

            // By topic id: describe, and delete b.
            Map<org.apache.kafka.common.Uuid, TopicDescription> byId = get(admin.describeTopics(
                TopicCollection.ofTopicIds(List.of(da.topicId()))).allTopicIds());
            assertEquals(a, byId.get(da.topicId()).name(), "describeTopics by topic id");
            assertEquals(3, byId.get(da.topicId()).partitions().size());
            org.apache.kafka.common.Uuid idB = Env.waitForPartitions(admin, b, 1).topicId();
            get(admin.deleteTopics(TopicCollection.ofTopicIds(List.of(idB))).all());

            get(admin.deleteTopics(List.of(a)).all());
            Env.waitUntil(WAIT, "listTopics no longer shows the deleted topics", () -> {
                try {
                    Set<String> names = get(admin.listTopics().names());
                    return !names.contains(a) && !names.contains(b);
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
            });
            Throwable gone = failureOf(admin.describeTopics(List.of(a)).allTopicNames());
            assertInstanceOf(UnknownTopicOrPartitionException.class, gone, "describeTopics of a deleted topic");
        }
    }

    @Test
    void createPartitions() throws Exception {
        String t = Env.unique("adm-parts");
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, t, 2);
            get(admin.createPartitions(Map.of(t, NewPartitions.increaseTo(5))).all());
            Env.waitForPartitions(admin, t, 5);
            Env.waitForLeadersServing(t, 5);
            Throwable fewer = failureOf(admin.createPartitions(Map.of(t, NewPartitions.increaseTo(3))).all());
            assertInstanceOf(InvalidPartitionsException.class, fewer, "createPartitions to fewer partitions");
            Env.produceToPartitions(t, 5, 3, "a"); // the new partitions take records
            List<ConsumerRecord<String, String>> got = Env.readAll(t, 5, 15);
            assertEquals(15, got.size());
            assertEquals(3, got.stream().filter(r -> r.partition() == 4).count());
        }
    }

    @Test
    void describeAndIncrementalAlterTopicConfigs() throws Exception {
        String t = Env.unique("adm-config");
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, t);
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, t, 1);
            Config before = get(admin.describeConfigs(List.of(res)).all()).get(res);
            ConfigEntry retention = before.get("retention.ms");
            assertNotNull(retention, "describeConfigs lists retention.ms: " + before);
            assertFalse(retention.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                "retention.ms is not set on the new topic: " + retention);
            assertNotNull(before.get("cleanup.policy"), "describeConfigs lists cleanup.policy");

            get(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("max.message.bytes", "200000"), AlterConfigOp.OpType.SET)))).all());
            Env.waitUntil(WAIT, "describeConfigs shows the altered values", () -> {
                Config c = describe(admin, res);
                return "3600000".equals(c.get("retention.ms").value())
                    && c.get("retention.ms").source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG
                    && "200000".equals(c.get("max.message.bytes").value());
            });

            Throwable bad = failureOf(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "not-a-number"), AlterConfigOp.OpType.SET)))).all());
            assertInstanceOf(InvalidConfigurationException.class, bad, "SET retention.ms=not-a-number");
            assertEquals("3600000", describe(admin, res).get("retention.ms").value(), "a refused SET changes nothing");

            get(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE)))).all());
            Env.waitUntil(WAIT, "describeConfigs shows retention.ms back at its default", () -> {
                Config c = describe(admin, res);
                return c.get("retention.ms").source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG
                    && retention.value().equals(c.get("retention.ms").value())
                    && "200000".equals(c.get("max.message.bytes").value());
            });
        }
    }

    @Test
    void configListOpsSynonymsBrokerConfigsAndInvalidTopics() throws Exception {
        String t = Env.unique("adm-config2");
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, t);
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, t, 1);
            // APPEND and SUBTRACT on a list-valued config.
            // Sluice differs: refuses APPEND/SUBTRACT (no list-valued topic configs); see
            // docs/kafka-differences.md, "AdminTest.configListOpsSynonymsBrokerConfigsAndInvalidTopics".
            if (!Env.isSluice()) {
            get(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND)))).all());
            Env.waitUntil(WAIT, "cleanup.policy=delete,compact after APPEND compact",
                () -> "delete,compact".equals(describe(admin, res).get("cleanup.policy").value()));
            get(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("cleanup.policy", "delete"), AlterConfigOp.OpType.SUBTRACT)))).all());
            Env.waitUntil(WAIT, "cleanup.policy=compact after SUBTRACT delete",
                () -> "compact".equals(describe(admin, res).get("cleanup.policy").value()));
            }

            // Synonyms: a topic override names the broker default below it.
            get(admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "600000"), AlterConfigOp.OpType.SET)))).all());
            ConfigEntry retention = Env.waitUntil(WAIT, "retention.ms=600000 with synonyms", () -> {
                try {
                    ConfigEntry e = get(admin.describeConfigs(List.of(res),
                        new DescribeConfigsOptions().includeSynonyms(true)).all()).get(res).get("retention.ms");
                    return "600000".equals(e.value()) ? e : null;
                } catch (Exception ex) {
                    throw new AssertionError(ex);
                }
            });
            {
                List<ConfigEntry.ConfigSynonym> syn = retention.synonyms();
                assertFalse(syn.isEmpty(), "synonyms of retention.ms: " + retention);
                assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, syn.get(0).source(), "first synonym: " + syn);
                assertEquals("retention.ms", syn.get(0).name());
                assertEquals("600000", syn.get(0).value());
                assertEquals(ConfigEntry.ConfigType.LONG, retention.type(), "type of retention.ms: " + retention);
            }

            // The broker's own configs.
            Node node = get(admin.describeCluster().nodes()).iterator().next();
            ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(node.id()));
            Config bc = get(admin.describeConfigs(List.of(broker)).all()).get(broker);
            assertNotNull(bc.get("message.max.bytes"), "broker config message.max.bytes: " + bc);
            assertNotNull(bc.get("num.partitions"), "broker config num.partitions");

            // Refused topics.
            Throwable rf = failureOf(admin.createTopics(List.of(new NewTopic(Env.unique("adm-rf"), 1, (short) 3))).all());
            assertInstanceOf(InvalidReplicationFactorException.class, rf, "replication factor 3 on one broker");
            Throwable name = failureOf(admin.createTopics(List.of(new NewTopic("bad name!", 1, (short) 1))).all());
            assertInstanceOf(InvalidTopicException.class, name, "an invalid topic name");
            Throwable cfg = failureOf(admin.createTopics(List.of(new NewTopic(Env.unique("adm-badcfg"), 1, (short) 1)
                .configs(Map.of("no.such.config", "1")))).all());
            assertInstanceOf(InvalidConfigurationException.class, cfg, "an unknown topic config");
        }
    }

    static Config describe(Admin admin, ConfigResource res) {
        try {
            return get(admin.describeConfigs(List.of(res)).all()).get(res);
        } catch (Exception e) {
            throw new AssertionError("describeConfigs " + res + ": " + e, e);
        }
    }

    @SuppressWarnings("deprecation")
    static Set<String> listConsumerGroupsOld(Admin admin) throws Exception {
        return get(admin.listConsumerGroups().all()).stream().map(g -> g.groupId()).collect(Collectors.toSet());
    }

    static Map<TopicPartition, OffsetAndMetadata> offsets(Admin admin, String group) {
        try {
            Map<TopicPartition, OffsetAndMetadata> m = new HashMap<>(
                get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()));
            m.values().removeIf(v -> v == null);
            return m;
        } catch (Exception e) {
            throw new AssertionError("listConsumerGroupOffsets " + group + ": " + e, e);
        }
    }

    static ConsumerGroupDescription describeGroup(Admin admin, String group) {
        try {
            return get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
        } catch (Exception e) {
            throw new AssertionError("describeConsumerGroups " + group + ": " + e, e);
        }
    }

    @Test
    void consumerGroups() throws Exception {
        String t = Env.unique("adm-groups");
        String group = Env.unique("g-adm");
        TopicPartition tp0 = new TopicPartition(t, 0);
        TopicPartition tp1 = new TopicPartition(t, 1);
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, t, 2);
            Env.produceToPartitions(t, 2, 10, "a");
            Map<String, Object> conf = new HashMap<>(ClassicGroupTest.classic(group,
                org.apache.kafka.clients.consumer.RangeAssignor.class.getName()));
            Member m = new Member("m", conf, t);
            try {
                Env.waitUntil(WAIT, "the member consumed and committed everything: " + m,
                    () -> ClassicGroupTest.total(m) == 20 && m.partitions().size() == 2
                        && Map.of(tp0, 10L, tp1, 10L).equals(offsets(admin, group).entrySet().stream()
                            .collect(Collectors.toMap(Map.Entry::getKey, e -> e.getValue().offset()))));

                Collection<GroupListing> listed = get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all());
                GroupListing mine = listed.stream().filter(g -> g.groupId().equals(group)).findFirst()
                    .orElseThrow(() -> new AssertionError("listGroups(forConsumerGroups) lacks " + group + ": " + listed));
                assertEquals("consumer", mine.protocol(), "protocol type of " + mine);
                assertTrue(listConsumerGroupsOld(admin).contains(group), "listConsumerGroups lists " + group);

                ConsumerGroupDescription d = Env.waitUntil(WAIT, "describeConsumerGroups shows the group stable",
                    () -> {
                        ConsumerGroupDescription g = describeGroup(admin, group);
                        return g.groupState() == GroupState.STABLE ? g : null;
                    });
                assertEquals(1, d.members().size(), "members of " + d);
                assertEquals(Set.of(tp0, tp1), d.members().iterator().next().assignment().topicPartitions());
                assertFalse(d.isSimpleConsumerGroup());
                assertEquals("range", d.partitionAssignor(), "the classic group's protocol name");
                assertEquals(org.apache.kafka.common.GroupType.CLASSIC, d.type());
                assertNotNull(d.coordinator());

                // Kafka refuses to alter the offsets of a group with members.
                Throwable active = failureOf(admin.alterConsumerGroupOffsets(group,
                    Map.of(tp0, new OffsetAndMetadata(1))).all());
                assertInstanceOf(UnknownMemberIdException.class, active, "alterConsumerGroupOffsets of an active group");
                assertEquals(10, offsets(admin, group).get(tp0).offset(), "a refused alter changes nothing");

                // Kafka refuses to delete offsets of a topic the active group subscribes to.
                Throwable refused = failureOf(admin.deleteConsumerGroupOffsets(group, Set.of(tp1)).all());
                assertInstanceOf(GroupSubscribedToTopicException.class, refused,
                    "deleteConsumerGroupOffsets of a subscribed topic");
            } finally {
                m.stop();
            }
            Env.waitUntil(WAIT, "the group is empty after its member left",
                () -> describeGroup(admin, group).groupState() == GroupState.EMPTY);
            assertEquals(0, describeGroup(admin, group).members().size());

            get(admin.alterConsumerGroupOffsets(group, Map.of(tp0, new OffsetAndMetadata(3, "altered"))).all());
            Map<TopicPartition, OffsetAndMetadata> o = offsets(admin, group);
            assertEquals(3, o.get(tp0).offset());
            assertEquals("altered", o.get(tp0).metadata());
            assertEquals(10, o.get(tp1).offset());

            get(admin.deleteConsumerGroupOffsets(group, Set.of(tp1)).all());
            o = offsets(admin, group);
            assertEquals(Set.of(tp0), o.keySet(), "offsets after deleteConsumerGroupOffsets(p1): " + o);

            // A new member of the group starts at the altered offset.
            try (KafkaConsumer<String, String> c = Env.consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, group))) {
                c.assign(List.of(tp0));
                assertEquals(3, c.position(tp0, Env.OP));
            }

            get(admin.deleteConsumerGroups(List.of(group)).all());
            Env.waitUntil(WAIT, "listGroups no longer lists the deleted group", () -> {
                try {
                    return get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all()).stream()
                        .noneMatch(g -> g.groupId().equals(group));
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
            });
        }
    }

    @Test
    void unknownGroup() throws Exception {
        String group = Env.unique("g-none");
        try (Admin admin = Env.admin()) {
            Throwable t = failureOf(admin.describeConsumerGroups(List.of(group)).all());
            assertInstanceOf(GroupIdNotFoundException.class, t, "describeConsumerGroups of an unknown group");
            assertEquals(Map.of(), offsets(admin, group), "listConsumerGroupOffsets of an unknown group");
            Throwable d = failureOf(admin.deleteConsumerGroups(List.of(group)).all());
            assertInstanceOf(GroupIdNotFoundException.class, d, "deleteConsumerGroups of an unknown group");
        }
    }

    @Test
    void deleteRecordsMovesBeginningOffset() throws Exception {
        String t = Env.unique("adm-delrec");
        TopicPartition tp0 = new TopicPartition(t, 0);
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, t, 1);
            Env.produceToPartitions(t, 1, 10, "a");
            Throwable beyond = failureOf(admin.deleteRecords(Map.of(tp0, RecordsToDelete.beforeOffset(11))).lowWatermarks().get(tp0));
            assertInstanceOf(OffsetOutOfRangeException.class, beyond, "deleteRecords beyond the high watermark");
            var low = get(admin.deleteRecords(Map.of(tp0, RecordsToDelete.beforeOffset(4))).lowWatermarks().get(tp0));
            assertEquals(4, low.lowWatermark());
            ListOffsetsResult.ListOffsetsResultInfo earliest =
                get(admin.listOffsets(Map.of(tp0, OffsetSpec.earliest())).partitionResult(tp0));
            assertEquals(4, earliest.offset(), "listOffsets(earliest) after deleteRecords");
            try (KafkaConsumer<String, String> c = Env.consumer(Map.of())) {
                assertEquals(Map.of(tp0, 4L), c.beginningOffsets(List.of(tp0), Env.OP));
                assertEquals(Map.of(tp0, 10L), c.endOffsets(List.of(tp0), Env.OP));
                c.assign(List.of(tp0));
                c.seekToBeginning(List.of(tp0));
                List<ConsumerRecord<String, String>> rs = new ArrayList<>();
                Env.waitUntil(WAIT, "6 records from offset 4", () -> {
                    c.poll(Duration.ofMillis(100)).forEach(rs::add);
                    return rs.size() >= 6;
                });
                assertEquals(4, rs.get(0).offset());
                assertEquals("a-p0-4", rs.get(0).value());
            }
        }
    }

    @Test
    void describeCluster() throws Exception {
        try (Admin admin = Env.admin()) {
            DescribeClusterResult cluster = admin.describeCluster();
            Collection<Node> nodes = get(cluster.nodes());
            String clusterId = get(cluster.clusterId());
            Node controller = get(cluster.controller());
            assertFalse(nodes.isEmpty(), "describeCluster nodes");
            assertNotNull(clusterId, "clusterId");
            assertFalse(clusterId.isBlank(), "clusterId");
            assertNotNull(controller, "controller");
            Set<String> endpoints = nodes.stream().map(n -> n.host() + ":" + n.port()).collect(Collectors.toSet());
            assertTrue(endpoints.contains(Env.bootstrap()), "the bootstrap broker is a node: " + endpoints);
        }
    }

    @Test
    void describeLogDirs() throws Exception {
        String t = Env.unique("adm-logdirs");
        try (Admin admin = Env.admin()) {
            Collection<Node> nodes = get(admin.describeCluster().nodes());
            Env.createTopic(admin, t, 2);
            Env.produceToPartitions(t, 2, 20, "a");
            List<Integer> ids = nodes.stream().map(Node::id).collect(Collectors.toList());
            Map<Integer, Map<String, LogDirDescription>> dirs = get(admin.describeLogDirs(ids).allDescriptions());
            assertEquals(Set.copyOf(ids), dirs.keySet(), "describeLogDirs answers for every broker");
            Map<TopicPartition, ReplicaInfo> replicas = new HashMap<>();
            for (Map<String, LogDirDescription> byDir : dirs.values()) {
                assertFalse(byDir.isEmpty(), "each broker has a log dir");
                for (var e : byDir.entrySet()) {
                    assertTrue(e.getValue().error() == null, "log dir " + e.getKey() + " error " + e.getValue().error());
                    replicas.putAll(e.getValue().replicaInfos());
                }
            }
            for (int p = 0; p < 2; p++) {
                ReplicaInfo r = replicas.get(new TopicPartition(t, p));
                assertNotNull(r, "describeLogDirs lists partition " + p + " of " + t);
                assertTrue(r.size() > 0, "partition " + p + " has bytes on disk: " + r);
            }
        }
    }
}
