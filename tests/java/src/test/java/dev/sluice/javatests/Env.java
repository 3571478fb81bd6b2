package dev.sluice.javatests;

import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Where the broker is and client conveniences shared by the tests. Every client has bounded
 * timeouts, and every wait is bounded, so no test can hang (JUnit's @Timeout is the last resort).
 *
 * <p>System properties (or environment variables): {@code bootstrap} (KAFKA_BOOTSTRAP), host:port
 * of the broker; {@code broker} (BROKER_KIND), "sluice" or "kafka": only used to skip the few
 * assertions where Sluice is known to differ (each names its entry in docs/kafka-differences.md).
 */
final class Env {
    /** Bound of a single admin call or client request. */
    static final Duration OP = Duration.ofSeconds(20);
    static final long OP_MS = OP.toMillis();

    private Env() {}

    static String bootstrap() {
        String b = System.getProperty("bootstrap");
        if (b == null || b.isBlank()) {
            b = System.getenv("KAFKA_BOOTSTRAP");
        }
        if (b == null || b.isBlank()) {
            throw new IllegalStateException(
                "no broker: pass -Dbootstrap=HOST:PORT (or set KAFKA_BOOTSTRAP)");
        }
        return b.trim();
    }

    static String brokerKind() {
        String k = System.getProperty("broker");
        if (k == null || k.isBlank()) {
            k = System.getenv("BROKER_KIND");
        }
        return k == null ? "" : k.trim().toLowerCase();
    }

    static boolean isSluice() {
        return brokerKind().equals("sluice");
    }

    /** A name no other test (or earlier run against the same broker) uses. */
    static String unique(String prefix) {
        return "jt-" + prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    static Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, (int) OP_MS);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) OP_MS);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "sluice-java-tests-admin");
        return Admin.create(p);
    }

    static KafkaProducer<String, String> producer(Map<String, Object> extra) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, (int) OP_MS);
        // Generous: on a loaded 2-core machine a broker (Kafka's JVM above all) can stall for
        // seconds; a record still fails within a minute.
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60_000);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.putAll(extra);
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<String, String> consumer(Map<String, Object> extra) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, (int) OP_MS);
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) OP_MS);
        p.putAll(extra);
        return new KafkaConsumer<>(p);
    }

    /** Creates a topic (replication factor 1) and waits until every partition has a leader. */
    static void createTopic(Admin admin, String name, int partitions) throws Exception {
        admin.createTopics(List.of(new NewTopic(name, partitions, (short) 1)))
            .all().get(OP_MS, TimeUnit.MILLISECONDS);
        waitForPartitions(admin, name, partitions);
        waitForLeadersServing(name, partitions);
    }

    /**
     * Metadata can name a leader a moment before that broker serves the partition (Kafka answers
     * NOT_LEADER_OR_FOLLOWER meanwhile). An idempotent producer with 5 requests in flight can then
     * have its first batch refused and the next ones accepted (Kafka takes a first sequence other
     * than 0 from a producer it has no state for), and the retried first batch is refused with
     * OutOfOrderSequence until the delivery timeout: seen against Kafka 4.4 on a loaded machine.
     * ListOffsets through the consumer retries until every leader answers.
     */
    static void waitForLeadersServing(String name, int partitions) {
        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < partitions; p++) {
            tps.add(new TopicPartition(name, p));
        }
        try (KafkaConsumer<String, String> c = consumer(Map.of())) {
            c.endOffsets(tps, OP);
        }
    }

    static TopicDescription waitForPartitions(Admin admin, String name, int partitions) {
        return waitUntil(Duration.ofSeconds(30), "topic " + name + " with " + partitions + " led partitions", () -> {
            try {
                TopicDescription d = admin.describeTopics(List.of(name)).allTopicNames()
                    .get(OP_MS, TimeUnit.MILLISECONDS).get(name);
                if (d.partitions().size() == partitions
                    && d.partitions().stream().allMatch(p -> p.leader() != null && p.leader().id() >= 0)) {
                    return d;
                }
            } catch (Exception e) {
                // not there yet (UnknownTopicOrPartition while metadata propagates)
            }
            return null;
        });
    }

    /** Sends {@code count} records to each partition ("k{i % 7}" keys, values "{tag}-p{p}-{i}"). */
    static void produceToPartitions(String topic, int partitions, int count, String tag) throws Exception {
        try (KafkaProducer<String, String> producer = producer(Map.of(ProducerConfig.ACKS_CONFIG, "all"))) {
            List<java.util.concurrent.Future<?>> sent = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                for (int i = 0; i < count; i++) {
                    sent.add(producer.send(new ProducerRecord<>(topic, p, "k" + (i % 7), tag + "-p" + p + "-" + i)));
                }
            }
            producer.flush();
            for (var f : sent) {
                f.get(OP_MS, TimeUnit.MILLISECONDS);
            }
        }
    }

    /** Reads partitions from the beginning with assign() until {@code expected} records arrived. */
    static List<ConsumerRecord<String, String>> readAll(String topic, int partitions, int expected) {
        List<ConsumerRecord<String, String>> out = new ArrayList<>();
        try (KafkaConsumer<String, String> c = consumer(Map.of())) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                tps.add(new TopicPartition(topic, p));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (out.size() < expected) {
                if (System.nanoTime() > deadline) {
                    fail("read only " + out.size() + " of " + expected + " records of " + topic + " within 30 s");
                }
                c.poll(Duration.ofMillis(200)).forEach(out::add);
            }
            // Nothing beyond what was expected turns up.
            c.poll(Duration.ofMillis(300)).forEach(out::add);
        }
        return out;
    }

    /** Polls {@code check} every 50 ms until it returns non-null (or true); fails after {@code timeout}. */
    static <T> T waitUntil(Duration timeout, String what, Supplier<T> check) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            T v = check.get();
            if (v != null && !Boolean.FALSE.equals(v)) {
                return v;
            }
            if (System.nanoTime() > deadline) {
                fail("timed out after " + timeout.toSeconds() + " s waiting for " + what);
            }
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                fail("interrupted waiting for " + what);
            }
        }
    }
}
