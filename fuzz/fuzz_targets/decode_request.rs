//! libFuzzer target: a request frame's payload through the broker's header decoder, the body
//! codec of its API at its version (unguarded, so a codec panic is a finding), the record
//! batches of a Produce request, and batch validation of the raw input.
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;
use sluice::kafka::handlers::APIS;
use sluice::protocol;
use sluice::storage::batch;

fn check_batches(records: &[u8]) {
    let _ = batch::validate(records, u32::MAX);
    for b in batch::split_batches(records) {
        if batch::validate(b, u32::MAX).is_ok() {
            let _ = batch::decode_records(b);
        }
    }
}

macro_rules! decode_others {
    ($api:expr, $body:expr, $v:expr; $($key:ident => $ty:ident),*) => {
        match $api {
            $(ApiKey::$key => { let _ = $ty::decode($body, $v); })*
            _ => {}
        }
    };
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 64 * 1024 {
        return;
    }
    check_batches(data);
    let mut body = Bytes::copy_from_slice(data);
    let Ok((api, header)) = protocol::decode_request_header(&mut body) else { return };
    let v = header.request_api_version;
    let Some(spec) = APIS.iter().find(|a| a.key == api) else { return };
    if v < spec.versions.min || v > spec.versions.max {
        return;
    }
    if api == ApiKey::Produce {
        if let Ok(req) = ProduceRequest::decode(&mut body, v) {
            for t in &req.topic_data {
                for p in &t.partition_data {
                    if let Some(r) = &p.records {
                        check_batches(r);
                    }
                }
            }
        }
        return;
    }
    decode_others!(api, &mut body, v;
        Fetch => FetchRequest, ListOffsets => ListOffsetsRequest, Metadata => MetadataRequest,
        ApiVersions => ApiVersionsRequest, CreateTopics => CreateTopicsRequest,
        DeleteTopics => DeleteTopicsRequest, DeleteRecords => DeleteRecordsRequest,
        InitProducerId => InitProducerIdRequest, DescribeConfigs => DescribeConfigsRequest,
        CreatePartitions => CreatePartitionsRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        DescribeCluster => DescribeClusterRequest, FindCoordinator => FindCoordinatorRequest,
        JoinGroup => JoinGroupRequest, SyncGroup => SyncGroupRequest, Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest, OffsetCommit => OffsetCommitRequest,
        OffsetFetch => OffsetFetchRequest, ListGroups => ListGroupsRequest,
        DescribeGroups => DescribeGroupsRequest, DeleteGroups => DeleteGroupsRequest,
        OffsetDelete => OffsetDeleteRequest, ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest);
});
