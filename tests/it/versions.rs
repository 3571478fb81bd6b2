//! Every API at every version Sluice advertises gets an answer (not a closed connection):
//! the codec refuses to encode fields a version lacks, so this catches version-gated fields.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use sluice::kafka::handlers::supported;

use crate::broker::{create_topic, start};
use crate::wire::{self, Conn};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn range(api: ApiKey) -> std::ops::RangeInclusive<i16> {
    let r = supported(api).unwrap();
    r.min..=r.max
}

#[test]
fn every_supported_version_answers() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    let mut c = Conn::connect(b.bootstrap());
    assert_eq!(create_topic(&mut c, "v", 2, &[]), 0);
    let id = c.call(&MetadataRequest::default().with_topics(None), 12).topics[0].topic_id;
    // By id, with the empty name the Java client sends (MetadataRequest's name has no null
    // default): the id wins, as in Kafka.
    let by_id = c.call(&MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_topic_id(id).with_name(Some(name("")))])), 12);
    assert_eq!((by_id.topics[0].error_code, by_id.topics[0].topic_id), (0, id), "Metadata v12 by id: {by_id:?}");

    for v in range(ApiKey::Metadata) {
        let topics = if v == 0 { vec![MetadataRequestTopic::default().with_name(Some(name("v")))] } else { vec![] };
        let req = MetadataRequest::default().with_topics(if v == 0 { Some(topics) } else { None });
        let resp = c.call(&req, v);
        assert_eq!(resp.topics.len(), 1, "Metadata v{v}");
        assert_eq!(resp.topics[0].partitions.len(), 2, "Metadata v{v}");
    }
    for v in range(ApiKey::Produce) {
        let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
            .with_name(name("v"))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(wire::batch(&[b"x"], Compression::None)))])]);
        let resp = c.call(&req, v);
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0, "Produce v{v}");
        // An error response must encode too.
        let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
            .with_name(name("v"))
            .with_partition_data(vec![PartitionProduceData::default().with_index(9).with_records(Some(wire::batch(&[b"x"], Compression::None)))])]);
        assert_eq!(c.call(&req, v).responses[0].partition_responses[0].error_code, 3, "Produce v{v}");
    }
    for v in range(ApiKey::Fetch) {
        let topic = if v >= 13 { FetchTopic::default().with_topic_id(id) } else { FetchTopic::default().with_topic(name("v")) };
        let mut req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![topic.with_partitions(vec![
                FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20),
                FetchPartition::default().with_partition(1).with_fetch_offset(5).with_partition_max_bytes(1 << 20),
            ])]);
        if v < 15 {
            req.replica_id = BrokerId(-1);
        }
        if v >= 7 {
            req.session_epoch = -1;
        }
        let resp = c.call(&req, v);
        let ps = &resp.responses[0].partitions;
        assert_eq!(ps[0].error_code, 0, "Fetch v{v}");
        assert!(ps[0].records.as_ref().is_some_and(|r| !r.is_empty()), "Fetch v{v}");
        assert_eq!(ps[1].error_code, 1, "Fetch v{v}: OFFSET_OUT_OF_RANGE");
    }
    for v in range(ApiKey::ListOffsets) {
        for ts in [-1i64, -2, -3, 0] {
            if ts == -3 && v < 7 {
                continue;
            }
            let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("v"))
                .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(ts)])]);
            let resp = c.call(&req, v);
            assert_eq!(resp.topics[0].partitions[0].error_code, 0, "ListOffsets v{v} ts {ts}");
        }
    }
    for v in range(ApiKey::CreateTopics) {
        let req = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default().with_name(name(&format!("ct{v}"))).with_num_partitions(1).with_replication_factor(1)])
            .with_timeout_ms(5000);
        assert_eq!(c.call(&req, v).topics[0].error_code, 0, "CreateTopics v{v}");
        assert_eq!(c.call(&req, v).topics[0].error_code, 36, "CreateTopics v{v}");
    }
    for v in range(ApiKey::CreatePartitions) {
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default().with_name(name(&format!("ct{}", 2 + v))).with_count(2)])
            .with_timeout_ms(5000);
        assert_eq!(c.call(&req, v).results[0].error_code, 0, "CreatePartitions v{v}");
    }
    for v in range(ApiKey::DescribeConfigs) {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default().with_resource_type(2).with_resource_name(StrBytes::from_static_str("v")),
            DescribeConfigsResource::default().with_resource_type(4).with_resource_name(StrBytes::from_static_str("0")),
        ]);
        let resp = c.call(&req, v);
        assert!(resp.results.iter().all(|r| r.error_code == 0 && !r.configs.is_empty()), "DescribeConfigs v{v}: {:?}", resp.results);
        // v3+ carries Kafka's ConfigType: retention.ms is a LONG (5), cleanup.policy a LIST (7).
        let ty = |n: &str| resp.results.iter().flat_map(|r| r.configs.iter()).find(|c| c.name.as_str() == n).map(|c| c.config_type);
        if v >= 3 {
            assert_eq!((ty("retention.ms"), ty("cleanup.policy")), (Some(5), Some(7)), "DescribeConfigs v{v}");
        }
    }
    for v in range(ApiKey::IncrementalAlterConfigs) {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("v"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str("3600000")))])]);
        assert_eq!(c.call(&req, v).responses[0].error_code, 0, "IncrementalAlterConfigs v{v}");
    }
    for v in range(ApiKey::AlterConfigs) {
        use kafka_protocol::messages::alter_configs_request as ac;
        let req = AlterConfigsRequest::default().with_resources(vec![ac::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("v"))
            .with_configs(vec![ac::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("3600000")))])]);
        assert_eq!(c.call(&req, v).responses[0].error_code, 0, "AlterConfigs v{v}");
    }
    for v in range(ApiKey::DescribeLogDirs) {
        let resp = c.call(&DescribeLogDirsRequest::default().with_topics(None), v);
        let dir = &resp.results[0];
        assert_eq!(dir.error_code, 0, "DescribeLogDirs v{v}");
        assert!(dir.topics.iter().any(|t| t.name.0.as_str() == "v" && t.partitions.iter().any(|p| p.partition_index == 0 && p.partition_size > 0)), "DescribeLogDirs v{v}: {dir:?}");
        assert!(v < 4 || dir.total_bytes > 0 && dir.usable_bytes >= 0, "DescribeLogDirs v{v}: {dir:?}");
    }
    for v in range(ApiKey::DescribeCluster) {
        let resp = c.call(&DescribeClusterRequest::default(), v);
        assert_eq!((resp.error_code, resp.brokers.len()), (0, 1), "DescribeCluster v{v}");
    }
    for v in range(ApiKey::InitProducerId) {
        let resp = c.call(&InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000).with_producer_id(ProducerId(-1)).with_producer_epoch(-1), v);
        assert_eq!(resp.error_code, 0, "InitProducerId v{v}");
        assert!(resp.producer_id.0 >= 0);
    }
    for v in range(ApiKey::DeleteRecords) {
        let req = DeleteRecordsRequest::default().with_timeout_ms(5000).with_topics(vec![DeleteRecordsTopic::default()
            .with_name(name("v"))
            .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(1 + v as i64)])]);
        let resp = c.call(&req, v);
        assert_eq!(resp.topics[0].partitions[0].error_code, 0, "DeleteRecords v{v}");
        assert_eq!(resp.topics[0].partitions[0].low_watermark, 1 + v as i64);
    }
    for v in range(ApiKey::DeleteTopics) {
        let t = format!("ct{}", 1 + v);
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default().with_name(Some(name(&t)))])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&t)])
        }
        .with_timeout_ms(5000);
        assert_eq!(c.call(&req, v).responses[0].error_code, 0, "DeleteTopics v{v}");
    }
    for v in range(ApiKey::AlterPartitionReassignments) {
        // A one-node broker: "move" to itself succeeds (nothing moves), elsewhere is refused per
        // partition (INVALID_REPLICA_ASSIGNMENT 39), a cancel finds nothing (85), unknown (3).
        use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
        let me = c.call(&MetadataRequest::default().with_topics(None), 12).brokers[0].node_id;
        let part = |p: i32, r: Option<Vec<i32>>| ReassignablePartition::default().with_partition_index(p).with_replicas(r.map(|r| r.into_iter().map(BrokerId).collect()));
        let req = AlterPartitionReassignmentsRequest::default().with_timeout_ms(5000).with_topics(vec![
            ReassignableTopic::default().with_name(name("v")).with_partitions(vec![part(0, Some(vec![me.0])), part(1, Some(vec![me.0 + 7])), part(1, None), part(9, Some(vec![me.0]))]),
        ]);
        let resp = c.call(&req, v);
        let codes: Vec<i16> = resp.responses[0].partitions.iter().map(|p| p.error_code).collect();
        assert_eq!((resp.error_code, codes), (0, vec![0, 39, 85, 3]), "AlterPartitionReassignments v{v}");
    }
    for v in range(ApiKey::ListPartitionReassignments) {
        let resp = c.call(&ListPartitionReassignmentsRequest::default().with_timeout_ms(5000).with_topics(None), v);
        assert_eq!((resp.error_code, resp.topics.len()), (0, 0), "ListPartitionReassignments v{v}");
    }
    for v in range(ApiKey::DescribeTopicPartitions) {
        // Every topic ("v" and what earlier steps created, sorted), paged one partition at a time.
        let req = DescribeTopicPartitionsRequest::default().with_response_partition_limit(1);
        let resp = c.call(&req, v);
        let cursor = resp.next_cursor.expect("a cursor after the first partition");
        assert_eq!(resp.topics.iter().map(|t| t.partitions.len()).sum::<usize>(), 1, "DescribeTopicPartitions v{v}");
        let req = DescribeTopicPartitionsRequest::default()
            .with_topics(vec![describe_topic_partitions_request::TopicRequest::default().with_name(name("v"))])
            .with_response_partition_limit(100)
            .with_cursor(Some(describe_topic_partitions_request::Cursor::default().with_topic_name(name("v")).with_partition_index(1)));
        let resp = c.call(&req, v);
        let t = &resp.topics[0];
        assert_eq!((t.error_code, t.topic_id, t.partitions.len(), resp.next_cursor.is_none()), (0, id, 1, true), "DescribeTopicPartitions v{v}: {resp:?}");
        assert_eq!((t.partitions[0].partition_index, t.partitions[0].leader_id.0 >= 0, t.partitions[0].eligible_leader_replicas.as_deref()), (1, true, Some(&[][..])));
        assert!(!cursor.topic_name.0.is_empty());
    }
    for v in range(ApiKey::ElectLeaders) {
        // One node leads its partitions already: no election needed (84), unknown topic (3).
        let req = ElectLeadersRequest::default().with_timeout_ms(5000).with_topic_partitions(Some(vec![
            elect_leaders_request::TopicPartitions::default().with_topic(name("v")).with_partitions(vec![0, 1]),
            elect_leaders_request::TopicPartitions::default().with_topic(name("nosuch")).with_partitions(vec![0]),
        ]));
        let resp = c.call(&req, v);
        let codes: Vec<Vec<i16>> = resp.replica_election_results.iter().map(|r| r.partition_result.iter().map(|p| p.error_code).collect()).collect();
        assert_eq!((resp.error_code, codes), (0, vec![vec![84, 84], vec![3]]), "ElectLeaders v{v}");
        let all = c.call(&ElectLeadersRequest::default().with_timeout_ms(5000).with_topic_partitions(None), v);
        assert!(all.replica_election_results.is_empty(), "ElectLeaders v{v} (all partitions): {all:?}");
    }
    // An idempotent producer (id 4242, epoch 3) writes partition 1 twice (sequences 0..=2).
    for seq in [0, 2] {
        let values: &[&[u8]] = if seq == 0 { &[b"p", b"q"] } else { &[b"r"] };
        let records = wire::batch_with(values, Compression::None, 4242, 3, seq);
        let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
            .with_name(name("v"))
            .with_partition_data(vec![PartitionProduceData::default().with_index(1).with_records(Some(records))])]);
        assert_eq!(c.call(&req, 9).responses[0].partition_responses[0].error_code, 0, "idempotent Produce seq {seq}");
    }
    for v in range(ApiKey::DescribeProducers) {
        let req = DescribeProducersRequest::default().with_topics(vec![
            describe_producers_request::TopicRequest::default().with_name(name("v")).with_partition_indexes(vec![1, 0, 7]),
        ]);
        let resp = c.call(&req, v);
        let ps = &resp.topics[0].partitions;
        assert_eq!(ps.iter().map(|p| p.error_code).collect::<Vec<_>>(), vec![0, 0, 3], "DescribeProducers v{v}: {resp:?}");
        let mine: Vec<_> = ps[0].active_producers.iter().map(|s| (s.producer_id.0, s.producer_epoch, s.last_sequence, s.current_txn_start_offset)).collect();
        assert_eq!(mine, vec![(4242, 3, 2, -1)], "DescribeProducers v{v}: {resp:?}");
        assert!(ps[0].active_producers[0].last_timestamp > 0);
    }
    for v in range(ApiKey::ListTransactions) {
        let req = ListTransactionsRequest::default().with_state_filters(vec![StrBytes::from_static_str("Ongoing"), StrBytes::from_static_str("Bogus")]);
        let resp = c.call(&req, v);
        assert_eq!((resp.error_code, resp.transaction_states.len()), (0, 0), "ListTransactions v{v}");
        assert_eq!(resp.unknown_state_filters, vec![StrBytes::from_static_str("Bogus")], "ListTransactions v{v}");
    }
    // No authorizer: SECURITY_DISABLED (54), as Kafka without authorizer.class.name answers.
    for v in range(ApiKey::DescribeAcls) {
        let resp = c.call(&DescribeAclsRequest::default().with_resource_type_filter(1).with_pattern_type_filter(1).with_operation(1).with_permission_type(1), v);
        assert_eq!(resp.error_code, 54, "DescribeAcls v{v}");
    }
    for v in range(ApiKey::CreateAcls) {
        let resp = c.call(&CreateAclsRequest::default().with_creations(vec![create_acls_request::AclCreation::default()]), v);
        assert_eq!(resp.results.iter().map(|r| r.error_code).collect::<Vec<_>>(), vec![54], "CreateAcls v{v}");
    }
    for v in range(ApiKey::DeleteAcls) {
        let resp = c.call(&DeleteAclsRequest::default().with_filters(vec![delete_acls_request::DeleteAclsFilter::default()]), v);
        assert_eq!(resp.filter_results.iter().map(|r| r.error_code).collect::<Vec<_>>(), vec![54], "DeleteAcls v{v}");
    }
    for v in range(ApiKey::ListConfigResources) {
        let resp = c.call(&ListConfigResourcesRequest::default(), v);
        assert_eq!((resp.error_code, resp.config_resources.len()), (0, 0), "ListConfigResources v{v}: no client-metrics subscriptions");
    }
    b.shutdown().unwrap();
}
