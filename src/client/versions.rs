//! The API versions this client speaks (its window per API key).
//!
//! Negotiation picks the highest version inside both the client's window and the
//! broker's ApiVersions range. Windows stop below the versions that address topics
//! only by id (Produce v13, Fetch v13, DeleteTopics v6), which this client does not use.

use kafka_protocol::messages::ApiKey;

/// (min, max) versions the client speaks for `key`; (0, -1) for APIs it never sends.
pub fn client_window(key: i16) -> (i16, i16) {
    match ApiKey::try_from(key) {
        Ok(ApiKey::ApiVersions) => (0, 3),
        Ok(ApiKey::Metadata) => (1, 12),
        Ok(ApiKey::Produce) => (3, 12),
        Ok(ApiKey::Fetch) => (4, 12),
        Ok(ApiKey::ListOffsets) => (1, 8),
        Ok(ApiKey::CreateTopics) => (2, 7),
        Ok(ApiKey::DeleteTopics) => (1, 5),
        Ok(ApiKey::CreatePartitions) => (0, 3),
        Ok(ApiKey::DescribeConfigs) => (1, 4),
        Ok(ApiKey::FindCoordinator) => (1, 3),
        Ok(ApiKey::ListGroups) => (0, 4),
        Ok(ApiKey::DescribeGroups) => (0, 5),
        Ok(ApiKey::OffsetFetch) => (1, 7),
        Ok(ApiKey::OffsetCommit) => (2, 8),
        Ok(ApiKey::DeleteGroups) => (0, 2),
        Ok(ApiKey::JoinGroup) => (4, 7),
        Ok(ApiKey::SyncGroup) => (3, 5),
        Ok(ApiKey::Heartbeat) => (3, 4),
        Ok(ApiKey::LeaveGroup) => (3, 4),
        Ok(ApiKey::AlterPartitionReassignments) => (0, 0),
        Ok(ApiKey::ListPartitionReassignments) => (0, 0),
        _ => (0, -1),
    }
}

/// Human name of an API key, for errors.
pub fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(ApiKey::ApiVersions) => "ApiVersions",
        Ok(ApiKey::Metadata) => "Metadata",
        Ok(ApiKey::Produce) => "Produce",
        Ok(ApiKey::Fetch) => "Fetch",
        Ok(ApiKey::ListOffsets) => "ListOffsets",
        Ok(ApiKey::CreateTopics) => "CreateTopics",
        Ok(ApiKey::DeleteTopics) => "DeleteTopics",
        Ok(ApiKey::CreatePartitions) => "CreatePartitions",
        Ok(ApiKey::DescribeConfigs) => "DescribeConfigs",
        Ok(ApiKey::FindCoordinator) => "FindCoordinator",
        Ok(ApiKey::ListGroups) => "ListGroups",
        Ok(ApiKey::DescribeGroups) => "DescribeGroups",
        Ok(ApiKey::OffsetFetch) => "OffsetFetch",
        Ok(ApiKey::OffsetCommit) => "OffsetCommit",
        Ok(ApiKey::DeleteGroups) => "DeleteGroups",
        Ok(ApiKey::JoinGroup) => "JoinGroup",
        Ok(ApiKey::SyncGroup) => "SyncGroup",
        Ok(ApiKey::Heartbeat) => "Heartbeat",
        Ok(ApiKey::LeaveGroup) => "LeaveGroup",
        Ok(ApiKey::AlterPartitionReassignments) => "AlterPartitionReassignments",
        Ok(ApiKey::ListPartitionReassignments) => "ListPartitionReassignments",
        _ => "request",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    #[test]
    fn windows_lie_inside_the_crate_ranges() {
        for (key, range) in [
            (ApiKey::ApiVersions, ApiVersionsRequest::VERSIONS),
            (ApiKey::Metadata, MetadataRequest::VERSIONS),
            (ApiKey::Produce, ProduceRequest::VERSIONS),
            (ApiKey::Fetch, FetchRequest::VERSIONS),
            (ApiKey::ListOffsets, ListOffsetsRequest::VERSIONS),
            (ApiKey::CreateTopics, CreateTopicsRequest::VERSIONS),
            (ApiKey::DeleteTopics, DeleteTopicsRequest::VERSIONS),
            (ApiKey::CreatePartitions, CreatePartitionsRequest::VERSIONS),
            (ApiKey::DescribeConfigs, DescribeConfigsRequest::VERSIONS),
            (ApiKey::FindCoordinator, FindCoordinatorRequest::VERSIONS),
            (ApiKey::ListGroups, ListGroupsRequest::VERSIONS),
            (ApiKey::DescribeGroups, DescribeGroupsRequest::VERSIONS),
            (ApiKey::OffsetFetch, OffsetFetchRequest::VERSIONS),
            (ApiKey::OffsetCommit, OffsetCommitRequest::VERSIONS),
            (ApiKey::DeleteGroups, DeleteGroupsRequest::VERSIONS),
            (ApiKey::JoinGroup, JoinGroupRequest::VERSIONS),
            (ApiKey::SyncGroup, SyncGroupRequest::VERSIONS),
            (ApiKey::Heartbeat, HeartbeatRequest::VERSIONS),
            (ApiKey::LeaveGroup, LeaveGroupRequest::VERSIONS),
        ] {
            let (lo, hi) = client_window(key as i16);
            assert!(lo <= hi, "{key:?}");
            assert!(
                lo >= range.min && hi <= range.max,
                "{key:?} {lo}..{hi} vs {range}"
            );
        }
    }
}
