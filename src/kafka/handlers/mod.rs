//! One file per Kafka API. Each declares `VERSIONS` (what Sluice answers) and `handle`.
//! [`APIS`] lists them all: ApiVersions is derived from it and dispatch checks it.

pub mod acls;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_topic_partitions;
pub mod fetch;
pub mod elect_leaders;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_config_resources;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod produce;
pub mod sync_group;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, VersionRange};

use crate::kafka::{Reply, RequestContext};
use crate::protocol;

/// An API Sluice answers, with the versions it supports.
pub struct ApiSpec {
    pub key: ApiKey,
    pub versions: VersionRange,
}

const fn spec(key: ApiKey, versions: VersionRange) -> ApiSpec {
    ApiSpec { key, versions }
}

/// The single table of supported APIs and versions.
pub const APIS: &[ApiSpec] = &[
    spec(ApiKey::Produce, produce::VERSIONS),
    spec(ApiKey::Fetch, fetch::VERSIONS),
    spec(ApiKey::ListOffsets, list_offsets::VERSIONS),
    spec(ApiKey::Metadata, metadata::VERSIONS),
    spec(ApiKey::ApiVersions, api_versions::VERSIONS),
    spec(ApiKey::CreateTopics, create_topics::VERSIONS),
    spec(ApiKey::DeleteTopics, delete_topics::VERSIONS),
    spec(ApiKey::DeleteRecords, delete_records::VERSIONS),
    spec(ApiKey::InitProducerId, init_producer_id::VERSIONS),
    spec(ApiKey::DescribeConfigs, describe_configs::VERSIONS),
    spec(ApiKey::CreatePartitions, create_partitions::VERSIONS),
    spec(ApiKey::AlterConfigs, alter_configs::VERSIONS),
    spec(ApiKey::IncrementalAlterConfigs, incremental_alter_configs::VERSIONS),
    spec(ApiKey::DescribeCluster, describe_cluster::VERSIONS),
    spec(ApiKey::DescribeLogDirs, describe_log_dirs::VERSIONS),
    spec(ApiKey::DescribeTopicPartitions, describe_topic_partitions::VERSIONS),
    spec(ApiKey::ElectLeaders, elect_leaders::VERSIONS),
    spec(ApiKey::DescribeProducers, describe_producers::VERSIONS),
    spec(ApiKey::ListTransactions, list_transactions::VERSIONS),
    spec(ApiKey::DescribeAcls, acls::DESCRIBE_VERSIONS),
    spec(ApiKey::CreateAcls, acls::CREATE_VERSIONS),
    spec(ApiKey::DeleteAcls, acls::DELETE_VERSIONS),
    spec(ApiKey::ListConfigResources, list_config_resources::VERSIONS),
    spec(ApiKey::FindCoordinator, find_coordinator::VERSIONS),
    spec(ApiKey::JoinGroup, join_group::VERSIONS),
    spec(ApiKey::SyncGroup, sync_group::VERSIONS),
    spec(ApiKey::Heartbeat, heartbeat::VERSIONS),
    spec(ApiKey::LeaveGroup, leave_group::VERSIONS),
    spec(ApiKey::OffsetCommit, offset_commit::VERSIONS),
    spec(ApiKey::OffsetFetch, offset_fetch::VERSIONS),
    spec(ApiKey::OffsetDelete, offset_delete::VERSIONS),
    spec(ApiKey::ListGroups, list_groups::VERSIONS),
    spec(ApiKey::DescribeGroups, describe_groups::VERSIONS),
    spec(ApiKey::DeleteGroups, delete_groups::VERSIONS),
    spec(ApiKey::ConsumerGroupHeartbeat, consumer_group_heartbeat::VERSIONS),
    spec(ApiKey::ConsumerGroupDescribe, consumer_group_describe::VERSIONS),
    spec(ApiKey::AlterPartitionReassignments, alter_partition_reassignments::VERSIONS),
    spec(ApiKey::ListPartitionReassignments, list_partition_reassignments::VERSIONS),
];

/// How a request of one connection is ordered against the connection's other requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOrder {
    /// Runs as soon as it is read, concurrently with earlier requests (Fetch, ApiVersions:
    /// they change nothing another request of the connection could observe).
    Free,
    /// Produce: waits for earlier state-changing requests, then appends before the next
    /// request is read; its durability wait overlaps later requests.
    AppendsFirst,
    /// Every other API: starts only once the previous state-changing request of the
    /// connection has finished, so commits, membership and admin changes take effect in
    /// arrival order, as Kafka (which processes a connection's requests one at a time) does.
    Chained,
}

pub fn ordering(key: ApiKey) -> RequestOrder {
    match key {
        ApiKey::Fetch | ApiKey::ApiVersions => RequestOrder::Free,
        ApiKey::Produce => RequestOrder::AppendsFirst,
        _ => RequestOrder::Chained,
    }
}

pub fn supported(key: ApiKey) -> Option<VersionRange> {
    APIS.iter().find(|a| a.key == key).map(|a| a.versions)
}

/// Decodes the body, runs the handler and encodes the response frame.
async fn route<Req, Resp, Fut>(
    ctx: RequestContext,
    mut body: Bytes,
    handle: impl FnOnce(RequestContext, Req) -> Fut,
) -> Reply
where
    Req: Decodable,
    Resp: Encodable,
    Fut: std::future::Future<Output = Option<Resp>>,
{
    let version = ctx.version();
    let api = ctx.api;
    let correlation_id = ctx.header.correlation_id;
    let req = match protocol::decode_body::<Req>(&mut body, version) {
        Ok(r) => r,
        Err(e) => return Reply::Close(format!("malformed {api:?} v{version} request: {e}")),
    };
    match handle(ctx, req).await {
        None => Reply::Nothing,
        Some(resp) => match protocol::encode_response(api, version, correlation_id, &resp) {
            Ok(frame) => Reply::Frame(frame),
            Err(e) => Reply::Close(format!("encoding {api:?} v{version} response failed: {e}")),
        },
    }
}

/// Like [`route`], for handlers that build their own [`Reply`] (Fetch, for zero-copy).
async fn route_reply<Req, Fut>(ctx: RequestContext, mut body: Bytes, handle: impl FnOnce(RequestContext, Req) -> Fut) -> Reply
where
    Req: Decodable,
    Fut: std::future::Future<Output = Reply>,
{
    let (api, version) = (ctx.api, ctx.version());
    match protocol::decode_body::<Req>(&mut body, version) {
        Ok(req) => handle(ctx, req).await,
        Err(e) => Reply::Close(format!("malformed {api:?} v{version} request: {e}")),
    }
}

/// Starts answering one request whose header is already decoded.
///
/// What must happen in arrival order on a connection (the appends of a Produce) happens
/// before this returns; the returned future finishes the request and may run concurrently
/// with later requests of the same connection. Responses still leave in request order.
pub async fn dispatch(ctx: RequestContext, body: Bytes) -> LocalBoxFuture<'static, Reply> {
    let (api, started) = (ctx.api, std::time::Instant::now());
    let rest = dispatch_api(ctx, body).await;
    async move {
        let reply = rest.await;
        crate::recorder::request_done(api, started.elapsed(), matches!(reply, Reply::Close(_)));
        reply
    }
    .boxed_local()
}

async fn dispatch_api(ctx: RequestContext, body: Bytes) -> LocalBoxFuture<'static, Reply> {
    let version = ctx.version();
    let Some(range) = supported(ctx.api) else {
        let msg = format!("unsupported API {:?}", ctx.api);
        return async move { Reply::Close(msg) }.boxed_local();
    };
    if version < range.min || version > range.max {
        let reply = if ctx.api == ApiKey::ApiVersions {
            api_versions::unsupported_version(&ctx)
        } else {
            Reply::Close(format!("unsupported version {version} of {:?} (supported {range})", ctx.api))
        };
        return async move { reply }.boxed_local();
    }
    match ctx.api {
        ApiKey::Produce => produce::submit(ctx, body).await,
        ApiKey::Fetch => route_reply(ctx, body, fetch::handle).boxed_local(),
        ApiKey::ListOffsets => route(ctx, body, list_offsets::handle).boxed_local(),
        ApiKey::Metadata => route(ctx, body, metadata::handle).boxed_local(),
        ApiKey::ApiVersions => route(ctx, body, api_versions::handle).boxed_local(),
        ApiKey::CreateTopics => route(ctx, body, create_topics::handle).boxed_local(),
        ApiKey::DeleteTopics => route(ctx, body, delete_topics::handle).boxed_local(),
        ApiKey::DeleteRecords => route(ctx, body, delete_records::handle).boxed_local(),
        ApiKey::InitProducerId => route(ctx, body, init_producer_id::handle).boxed_local(),
        ApiKey::DescribeConfigs => route(ctx, body, describe_configs::handle).boxed_local(),
        ApiKey::CreatePartitions => route(ctx, body, create_partitions::handle).boxed_local(),
        ApiKey::AlterConfigs => route(ctx, body, alter_configs::handle).boxed_local(),
        ApiKey::IncrementalAlterConfigs => route(ctx, body, incremental_alter_configs::handle).boxed_local(),
        ApiKey::DescribeCluster => route(ctx, body, describe_cluster::handle).boxed_local(),
        ApiKey::DescribeLogDirs => route(ctx, body, describe_log_dirs::handle).boxed_local(),
        ApiKey::DescribeTopicPartitions => route(ctx, body, describe_topic_partitions::handle).boxed_local(),
        ApiKey::ElectLeaders => route(ctx, body, elect_leaders::handle).boxed_local(),
        ApiKey::DescribeProducers => route(ctx, body, describe_producers::handle).boxed_local(),
        ApiKey::ListTransactions => route(ctx, body, list_transactions::handle).boxed_local(),
        ApiKey::DescribeAcls => route(ctx, body, acls::describe).boxed_local(),
        ApiKey::CreateAcls => route(ctx, body, acls::create).boxed_local(),
        ApiKey::DeleteAcls => route(ctx, body, acls::delete).boxed_local(),
        ApiKey::ListConfigResources => route(ctx, body, list_config_resources::handle).boxed_local(),
        ApiKey::FindCoordinator => route(ctx, body, find_coordinator::handle).boxed_local(),
        ApiKey::JoinGroup => route(ctx, body, join_group::handle).boxed_local(),
        ApiKey::SyncGroup => route(ctx, body, sync_group::handle).boxed_local(),
        ApiKey::Heartbeat => route(ctx, body, heartbeat::handle).boxed_local(),
        ApiKey::LeaveGroup => route(ctx, body, leave_group::handle).boxed_local(),
        ApiKey::OffsetCommit => route(ctx, body, offset_commit::handle).boxed_local(),
        ApiKey::OffsetFetch => route(ctx, body, offset_fetch::handle).boxed_local(),
        ApiKey::OffsetDelete => route(ctx, body, offset_delete::handle).boxed_local(),
        ApiKey::ListGroups => route(ctx, body, list_groups::handle).boxed_local(),
        ApiKey::DescribeGroups => route(ctx, body, describe_groups::handle).boxed_local(),
        ApiKey::DeleteGroups => route(ctx, body, delete_groups::handle).boxed_local(),
        ApiKey::ConsumerGroupHeartbeat => route(ctx, body, consumer_group_heartbeat::handle).boxed_local(),
        ApiKey::ConsumerGroupDescribe => route(ctx, body, consumer_group_describe::handle).boxed_local(),
        ApiKey::AlterPartitionReassignments => route(ctx, body, alter_partition_reassignments::handle).boxed_local(),
        ApiKey::ListPartitionReassignments => route(ctx, body, list_partition_reassignments::handle).boxed_local(),
        other => {
            let msg = format!("unsupported API {other:?}");
            async move { Reply::Close(msg) }.boxed_local()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_within_codec_ranges() {
        for a in APIS {
            let codec = a.key.valid_versions();
            assert!(a.versions.min >= codec.min && a.versions.max <= codec.max, "{:?}", a.key);
            assert!(!a.versions.is_empty());
        }
    }
}
