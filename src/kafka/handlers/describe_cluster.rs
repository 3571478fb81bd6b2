//! DescribeCluster: this broker, the cluster id and the controller (this broker).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

pub async fn handle(ctx: RequestContext, req: DescribeClusterRequest) -> Option<DescribeClusterResponse> {
    let node = ctx.shard.config().node_id;
    let (host, port) = super::metadata::advertised(&ctx);
    let cluster_id = ctx.shard.shared.catalog.snapshot().data.cluster_id.clone();
    Some(
        DescribeClusterResponse::default()
            .with_endpoint_type(req.endpoint_type)
            .with_cluster_id(StrBytes::from_string(cluster_id))
            .with_controller_id(BrokerId(node))
            .with_brokers(vec![DescribeClusterBroker::default()
                .with_broker_id(BrokerId(node))
                .with_host(StrBytes::from_string(host))
                .with_port(port)])
            .with_cluster_authorized_operations(i32::MIN),
    )
}
