//! AlterConfigs (the legacy API, key 33, which librdkafka's `AlterConfigs` and older tools
//! send): Kafka's semantics, the given set REPLACES the resource's configs: every topic config
//! not named goes back to its default. Only topic resources; broker configs are static here.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::handlers::describe_configs::RESOURCE_TOPIC;
use crate::kafka::handlers::incremental_alter_configs::apply_topic_configs;
use crate::kafka::topics::TopicError;
use crate::kafka::{configs, RequestContext};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

pub async fn handle(ctx: RequestContext, req: AlterConfigsRequest) -> Option<AlterConfigsResponse> {
    let mut responses = Vec::with_capacity(req.resources.len().min(crate::limits::TOPICS_PER_REQUEST_MAX));
    for r in req.resources {
        let mut out = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let res = if r.resource_type != RESOURCE_TOPIC {
            Err(TopicError::new(ResponseError::InvalidRequest, "only topic configs can be altered; broker configs are static"))
        } else {
            replace(&ctx, r.resource_name.to_string(), r.configs, req.validate_only).await
        };
        if let Err(e) = res {
            out.error_code = e.code;
            out.error_message = Some(StrBytes::from_string(e.message));
        }
        responses.push(out);
    }
    Some(AlterConfigsResponse::default().with_responses(responses))
}

async fn replace(
    ctx: &RequestContext,
    topic: String,
    entries: Vec<kafka_protocol::messages::alter_configs_request::AlterableConfig>,
    validate_only: bool,
) -> Result<(), TopicError> {
    let mut ops = Vec::with_capacity(entries.len());
    for c in entries {
        let name = c.name.to_string();
        match c.value {
            Some(v) => {
                configs::validate(&name, v.as_str()).map_err(|m| TopicError::new(ResponseError::InvalidConfig, m))?;
                ops.push((name, Some(v.to_string())));
            }
            // A null value names no value: the config keeps its default.
            None => ops.push((name, None)),
        }
    }
    apply_topic_configs(ctx, topic, ops, true, validate_only).await
}
