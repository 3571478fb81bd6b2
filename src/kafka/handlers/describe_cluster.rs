//! DescribeCluster: the brokers, the cluster id and the controller (this broker, or in cluster
//! mode the registered nodes and the metadata leader).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

pub async fn handle(
    ctx: RequestContext,
    req: DescribeClusterRequest,
) -> Option<DescribeClusterResponse> {
    let view = super::metadata::cluster_view(&ctx);
    Some(
        DescribeClusterResponse::default()
            .with_endpoint_type(req.endpoint_type)
            .with_cluster_id(StrBytes::from_string(view.cluster_id))
            .with_controller_id(BrokerId(view.controller))
            .with_brokers(
                view.brokers
                    .into_iter()
                    .map(|(id, host, port, rack)| {
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(id))
                            .with_host(StrBytes::from_string(host))
                            .with_port(port)
                            .with_rack(rack.map(StrBytes::from_string))
                    })
                    .collect(),
            )
            .with_cluster_authorized_operations(i32::MIN),
    )
}
