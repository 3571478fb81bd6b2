//! CreatePartitions: grow a topic.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::topics;
use crate::kafka::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };

pub async fn handle(ctx: RequestContext, req: CreatePartitionsRequest) -> Option<CreatePartitionsResponse> {
    let mut results = Vec::new();
    for t in req.topics {
        let res = if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            Err((ResponseError::InvalidReplicaAssignment.code(), "manual replica assignment is not supported on a single broker".to_string()))
        } else {
            topics::add_partitions(&ctx.shard, t.name.0.as_str(), t.count, req.validate_only).await.map_err(|e| (e.code, e.message))
        };
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name);
        if let Err((code, msg)) = res {
            r.error_code = code;
            r.error_message = Some(StrBytes::from_string(msg));
        }
        results.push(r);
    }
    Some(CreatePartitionsResponse::default().with_results(results))
}
