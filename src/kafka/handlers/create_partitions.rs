//! CreatePartitions: grow a topic.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::topics;
use crate::kafka::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };

pub async fn handle(ctx: RequestContext, req: CreatePartitionsRequest) -> Option<CreatePartitionsResponse> {
    let mut results = Vec::new();
    for t in req.topics {
        let assignment: Vec<Vec<i32>> = t
            .assignments
            .iter()
            .flatten()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect();
        let res = topics::add_partitions(&ctx.shard, t.name.0.as_str(), t.count, &assignment, req.validate_only)
            .await
            .map_err(|e| (e.code, e.message));
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name);
        if let Err((code, msg)) = res {
            r.error_code = code;
            r.error_message = Some(StrBytes::from_string(msg));
        }
        results.push(r);
    }
    Some(CreatePartitionsResponse::default().with_results(results))
}
