//! ListConfigResources v0 (formerly ListClientMetricsResources, KIP-714; `kafka-client-metrics
//! --list`): the client-metrics subscriptions, of which Sluice has none (it does not collect
//! client metrics), so the list is empty. v1 (KIP-1142: topics, brokers, groups by resource type)
//! is not offered: clients asking only for client-metrics resources use v0.

use kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};
use kafka_protocol::protocol::VersionRange;

use crate::kafka::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub async fn handle(_ctx: RequestContext, _req: ListConfigResourcesRequest) -> Option<ListConfigResourcesResponse> {
    Some(ListConfigResourcesResponse::default())
}
