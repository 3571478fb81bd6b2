package dev.sluice.javatests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Offsets by time, tiny fetch limits, null keys/values, and a record above message.max.bytes. */
@Timeout(90)
class FetchAndOffsetsTest {
    static final Duration WAIT = Duration.ofSeconds(30);

    static List<ConsumerRecord<String, String>> read(KafkaConsumer<String, String> c, int n) {
        List<ConsumerRecord<String, String>> out = new ArrayList<>();
        Env.waitUntil(WAIT, n + " records", () -> {
            c.poll(Duration.ofMillis(100)).forEach(out::add);
            return out.size() >= n;
        });
        return out;
    }

    @Test
    void offsetsForTimesAndListOffsetsByTimestamp() throws Exception {
        String t = Env.unique("times");
        TopicPartition tp = new TopicPartition(t, 0);
        long base = System.currentTimeMillis() - 3_600_000;
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, t, 1);
            try (KafkaProducer<String, String> p = Env.producer(Map.of(ProducerConfig.ACKS_CONFIG, "all"))) {
                for (int i = 0; i < 10; i++) {
                    // Timestamps rise by a second, except record 6: the newest of all.
                    long ts = i == 6 ? base + 100_000 : base + i * 1000L;
                    p.send(new ProducerRecord<>(t, 0, ts, "k", "v" + i)).get(Env.OP_MS, TimeUnit.MILLISECONDS);
                }
            }
            try (KafkaConsumer<String, String> c = Env.consumer(Map.of())) {
                Map<TopicPartition, OffsetAndTimestamp> at = c.offsetsForTimes(Map.of(tp, base + 3500), Env.OP);
                assertEquals(4, at.get(tp).offset(), "first offset with timestamp >= base+3.5 s");
                assertEquals(base + 4000, at.get(tp).timestamp());
                at = c.offsetsForTimes(Map.of(tp, base + 200_000), Env.OP);
                assertNull(at.get(tp), "no record at or after base+200 s: " + at);
                assertEquals(Map.of(tp, 0L), c.beginningOffsets(List.of(tp), Env.OP));
                assertEquals(Map.of(tp, 10L), c.endOffsets(List.of(tp), Env.OP));
            }
            assertEquals(0, admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp)
                .get(Env.OP_MS, TimeUnit.MILLISECONDS).offset());
            assertEquals(10, admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp)
                .get(Env.OP_MS, TimeUnit.MILLISECONDS).offset());
            var byTime = admin.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(base + 7000))).partitionResult(tp)
                .get(Env.OP_MS, TimeUnit.MILLISECONDS);
            assertEquals(6, byTime.offset(), "first offset with timestamp >= base+7 s is record 6 (base+100 s)");
            var max = admin.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).partitionResult(tp)
                .get(Env.OP_MS, TimeUnit.MILLISECONDS);
            assertEquals(6, max.offset(), "OffsetSpec.maxTimestamp");
            assertEquals(base + 100_000, max.timestamp());
        }
    }

    @Test
    void tinyFetchLimitsStillMakeProgress() throws Exception {
        String t = Env.unique("tinyfetch");
        TopicPartition tp = new TopicPartition(t, 0);
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, t, 1);
        }
        Env.produceToPartitions(t, 1, 50, "a");
        Map<String, Object> conf = new HashMap<>();
        conf.put(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, 1);            // below one batch: the broker
        conf.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, 1);  // still returns a whole first batch
        conf.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 7);
        try (KafkaConsumer<String, String> c = Env.consumer(conf)) {
            c.assign(List.of(tp));
            c.seek(tp, 10);
            List<ConsumerRecord<String, String>> got = read(c, 40);
            for (int i = 0; i < 40; i++) {
                assertEquals(10 + i, got.get(i).offset());
                assertEquals("a-p0-" + (10 + i), got.get(i).value());
            }
        }
    }

    @Test
    void nullKeysValuesAndHeaders() throws Exception {
        String t = Env.unique("nulls");
        TopicPartition tp = new TopicPartition(t, 0);
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, t, 1);
        }
        try (KafkaProducer<String, String> p = Env.producer(Map.of(ProducerConfig.ACKS_CONFIG, "all"))) {
            ProducerRecord<String, String> r0 = new ProducerRecord<>(t, 0, null, null);
            ProducerRecord<String, String> r1 = new ProducerRecord<>(t, 0, "", "");
            ProducerRecord<String, String> r2 = new ProducerRecord<>(t, 0, "k", null);
            r2.headers().add(new RecordHeader("empty", new byte[0])).add(new RecordHeader("null", null))
                .add(new RecordHeader("dup", "1".getBytes())).add(new RecordHeader("dup", "2".getBytes()));
            for (var r : List.of(r0, r1, r2)) {
                p.send(r).get(Env.OP_MS, TimeUnit.MILLISECONDS);
            }
        }
        try (KafkaConsumer<String, String> c = Env.consumer(Map.of())) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            List<ConsumerRecord<String, String>> got = read(c, 3);
            assertNull(got.get(0).key());
            assertNull(got.get(0).value());
            assertEquals("", got.get(1).key());
            assertEquals("", got.get(1).value());
            assertEquals("k", got.get(2).key());
            assertNull(got.get(2).value());
            var h = got.get(2).headers().toArray();
            assertEquals(4, h.length);
            assertEquals("empty", h[0].key());
            assertEquals(0, h[0].value().length);
            assertEquals("null", h[1].key());
            assertNull(h[1].value());
            assertEquals("1", new String(h[2].value()));
            assertEquals("2", new String(h[3].value()));
        }
    }

    @Test
    void recordAboveMessageMaxBytesIsRefused() throws Exception {
        String t = Env.unique("toolarge");
        TopicPartition tp = new TopicPartition(t, 0);
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, t, 1);
        }
        Map<String, Object> conf = new HashMap<>();
        conf.put(ProducerConfig.ACKS_CONFIG, "all");
        conf.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 4 * 1024 * 1024); // the client lets it go
        conf.put(ProducerConfig.BUFFER_MEMORY_CONFIG, 16 * 1024 * 1024);
        conf.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "none");
        try (KafkaProducer<String, String> p = Env.producer(conf)) {
            // Just under the broker's default message.max.bytes (1048588) is accepted.
            RecordMetadata ok = p.send(new ProducerRecord<>(t, 0, "big", "x".repeat(1_000_000)))
                .get(Env.OP_MS, TimeUnit.MILLISECONDS);
            assertEquals(0, ok.offset());
            Future<RecordMetadata> tooBig = p.send(new ProducerRecord<>(t, 0, "huge", "y".repeat(2 * 1024 * 1024)));
            ExecutionException e = assertThrows(ExecutionException.class, () -> tooBig.get(Env.OP_MS, TimeUnit.MILLISECONDS));
            assertInstanceOf(RecordTooLargeException.class, e.getCause(), "a 2 MiB record: " + e.getCause());
            RecordMetadata after = p.send(new ProducerRecord<>(t, 0, "small", "z")).get(Env.OP_MS, TimeUnit.MILLISECONDS);
            assertEquals(1, after.offset(), "the refused record took no offset");
        }
        try (KafkaConsumer<String, String> c = Env.consumer(Map.of())) {
            assertEquals(Map.of(tp, 2L), c.endOffsets(List.of(tp), Env.OP));
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            List<ConsumerRecord<String, String>> got = read(c, 2);
            assertEquals(1_000_000, got.get(0).value().length());
            assertNotNull(got.get(1).value());
            assertEquals("z", got.get(1).value());
        }
    }

    @ParameterizedTest(name = "group.protocol={0}")
    @ValueSource(strings = {"classic", "consumer"})
    void autoCommitAndMetadataCalls(String protocol) throws Exception {
        String t = Env.unique("autocommit-" + protocol);
        String group = Env.unique("g-autocommit-" + protocol);
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, t, 2);
            Env.produceToPartitions(t, 2, 10, "a");
            Map<String, Object> conf = new HashMap<>();
            conf.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            conf.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
            conf.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, true);
            conf.put(ConsumerConfig.AUTO_COMMIT_INTERVAL_MS_CONFIG, 200);
            try (KafkaConsumer<String, String> c = Env.consumer(conf)) {
                assertEquals(2, c.partitionsFor(t, Env.OP).size(), "partitionsFor");
                assertTrue(c.listTopics(Env.OP).containsKey(t), "listTopics");
                c.subscribe(List.of(t));
                List<ConsumerRecord<String, String>> got = read(c, 20);
                assertEquals(20, got.size());
            } // close commits what was consumed
            Map<TopicPartition, Long> committed = new HashMap<>();
            admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(Env.OP_MS, TimeUnit.MILLISECONDS)
                .forEach((tp, om) -> committed.put(tp, om.offset()));
            assertEquals(Map.of(new TopicPartition(t, 0), 10L, new TopicPartition(t, 1), 10L), committed,
                "auto-committed offsets after close");
        }
    }
}
