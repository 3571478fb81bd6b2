package dev.sluice.javatests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** An idempotent acks=all producer with each compression codec; the records read back in order. */
class ProducerCodecTest {
    static final int PARTITIONS = 3;
    static final int RECORDS = 600;
    static final int KEYS = 20;
    /** CreateTime of record i is BASE_TS + i. */
    static final long BASE_TS = System.currentTimeMillis() - 60_000;

    @ParameterizedTest(name = "compression.type={0}")
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    @Timeout(150)
    void idempotentAcksAllRoundTrip(String codec) throws Exception {
        String topic = Env.unique("codec-" + codec);
        try (Admin admin = Env.admin()) {
            Env.createTopic(admin, topic, PARTITIONS);
        }
        Map<String, Object> conf = new HashMap<>();
        conf.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        conf.put(ProducerConfig.ACKS_CONFIG, "all");
        conf.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        conf.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 5);
        conf.put(ProducerConfig.LINGER_MS_CONFIG, 20);
        conf.put(ProducerConfig.BATCH_SIZE_CONFIG, 4096); // several batches per partition
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        // A repetitive value compresses well; the index makes each one distinct.
        String filler = "sluice-".repeat(20);
        try (KafkaProducer<String, String> producer = Env.producer(conf)) {
            for (int i = 0; i < RECORDS; i++) {
                ProducerRecord<String, String> r = new ProducerRecord<>(topic, null, BASE_TS + i,
                    "key-" + (i % KEYS), i + ":" + filler);
                r.headers().add(new RecordHeader("h", ("hv" + i).getBytes()));
                sent.add(producer.send(r));
            }
            producer.flush();
        }
        // Each acknowledged record's (partition, offset); per partition the offsets are dense
        // and in send order (idempotence keeps order with 5 requests in flight).
        Map<Integer, Long> nextOffset = new HashMap<>();
        Map<String, Integer> partitionOfKey = new HashMap<>();
        Map<String, String> valueAt = new HashMap<>();
        for (int i = 0; i < RECORDS; i++) {
            RecordMetadata md = sent.get(i).get(70, TimeUnit.SECONDS);
            long expected = nextOffset.getOrDefault(md.partition(), 0L);
            assertEquals(expected, md.offset(), "offset of record " + i + " in partition " + md.partition());
            assertEquals(BASE_TS + i, md.timestamp(), "RecordMetadata timestamp of record " + i);
            nextOffset.put(md.partition(), expected + 1);
            Integer prev = partitionOfKey.putIfAbsent("key-" + (i % KEYS), md.partition());
            assertTrue(prev == null || prev == md.partition(), "one key, one partition");
            valueAt.put(md.partition() + "@" + md.offset(), i + ":" + filler);
        }

        List<ConsumerRecord<String, String>> got = Env.readAll(topic, PARTITIONS, RECORDS);
        assertEquals(RECORDS, got.size(), "records read back");
        Map<String, Integer> lastIndexOfKey = new HashMap<>();
        for (ConsumerRecord<String, String> r : got) {
            assertEquals(valueAt.get(r.partition() + "@" + r.offset()), r.value(),
                "value at " + r.partition() + "@" + r.offset());
            int index = Integer.parseInt(r.value().substring(0, r.value().indexOf(':')));
            assertEquals("key-" + (index % KEYS), r.key());
            assertEquals("hv" + index, new String(r.headers().lastHeader("h").value()));
            assertEquals(BASE_TS + index, r.timestamp(), "CreateTime of record " + index);
            assertEquals(org.apache.kafka.common.record.TimestampType.CREATE_TIME, r.timestampType());
            Integer last = lastIndexOfKey.put(r.key(), index);
            assertTrue(last == null || last < index, "per-key order: " + r.key() + " " + last + " then " + index);
        }
        assertEquals(KEYS, lastIndexOfKey.size());
    }
}
