//! DeleteTopics (by name, or by topic id from v6).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use uuid::Uuid;

use crate::kafka::topics;
use crate::kafka::RequestContext;
use crate::limits;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 6 };

pub async fn handle(ctx: RequestContext, req: DeleteTopicsRequest) -> Option<DeleteTopicsResponse> {
    // v0-v5 name topics in `topic_names`; v6 in `topics` (name or id).
    let mut wanted: Vec<(Option<String>, Uuid)> = req.topic_names.into_iter().map(|n| (Some(n.0.to_string()), Uuid::nil())).collect();
    wanted.extend(req.topics.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)));
    let mut out = Vec::new();
    for (i, (name, id)) in wanted.into_iter().enumerate() {
        let mut r = DeletableTopicResult::default().with_topic_id(id);
        let name = match name {
            Some(n) => Some(n),
            None => ctx.shard.shared.catalog.snapshot().topic_by_id(&id).map(|t| t.name.clone()),
        };
        r.name = name.clone().map(|n| TopicName(StrBytes::from_string(n)));
        let res = match name {
            _ if i >= limits::TOPICS_PER_REQUEST_MAX => Err((ResponseError::PolicyViolation.code(), "too many topics in one request".to_string())),
            None => Err((ResponseError::UnknownTopicId.code(), format!("no topic with id {id}"))),
            Some(n) => topics::delete_topic(&ctx.shard, &n).await.map_err(|e| (e.code, e.message)),
        };
        match res {
            Ok(meta) => r.topic_id = meta.id,
            Err((code, msg)) => {
                r.error_code = code;
                r.error_message = Some(StrBytes::from_string(msg));
            }
        }
        out.push(r);
    }
    Some(DeleteTopicsResponse::default().with_responses(out))
}
