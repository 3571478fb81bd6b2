//! CreateTopics.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::configs;
use crate::kafka::topics::{self, NewTopic, TopicError};
use crate::kafka::RequestContext;
use crate::limits;

pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 7 };

pub async fn handle(ctx: RequestContext, req: CreateTopicsRequest) -> Option<CreateTopicsResponse> {
    let mut results = Vec::with_capacity(req.topics.len().min(limits::TOPICS_PER_REQUEST_MAX));
    for (i, t) in req.topics.into_iter().enumerate() {
        let name = t.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(t.name.clone());
        let outcome = if i >= limits::TOPICS_PER_REQUEST_MAX {
            Err(TopicError::new(ResponseError::PolicyViolation, "too many topics in one request"))
        } else if let Err(e) = consecutive_partitions(&t.assignments) {
            Err(e)
        } else {
            let mut cfg = BTreeMap::new();
            let mut bad = None;
            for c in t.configs {
                match c.value {
                    Some(v) => {
                        cfg.insert(c.name.to_string(), v.to_string());
                    }
                    None => bad = Some(TopicError::new(ResponseError::InvalidConfig, format!("null value for config {}", c.name.as_str()))),
                }
            }
            match bad {
                Some(e) => Err(e),
                None => {
                    let mut lists: Vec<_> = t.assignments.iter().map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect())).collect();
                    lists.sort_by_key(|(p, _)| *p);
                    let assignment = lists.into_iter().map(|(_, b)| b).collect();
                    let new = NewTopic { name: name.clone(), partitions: t.num_partitions, replication_factor: t.replication_factor, configs: cfg, assignment };
                    topics::create_topic(&ctx.shard, new, req.validate_only).await
                }
            }
        };
        match outcome {
            Ok(meta) => {
                let mut configs_out = Vec::new();
                for (k, default) in configs::defaults(ctx.shard.config()) {
                    let (value, source) = match meta.configs.get(k) {
                        Some(v) => (v.clone(), 1i8),
                        None => (default, 5i8),
                    };
                    configs_out.push(
                        CreatableTopicConfigs::default()
                            .with_name(StrBytes::from_static_str(k))
                            .with_value(Some(StrBytes::from_string(value)))
                            .with_config_source(source),
                    );
                }
                result = result
                    .with_topic_id(meta.id)
                    .with_num_partitions(meta.partitions)
                    .with_replication_factor(meta.replicas.first().map_or(1, |r| r.len() as i16))
                    .with_configs(Some(configs_out));
            }
            Err(e) => {
                result = result
                    .with_error_code(e.code)
                    .with_error_message(Some(StrBytes::from_string(e.message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1);
            }
        }
        results.push(result);
    }
    Some(CreateTopicsResponse::default().with_topics(results))
}

/// A manual assignment must name partitions 0..n-1, each once (Kafka's controller rule).
fn consecutive_partitions(assignments: &[kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment]) -> Result<(), TopicError> {
    let mut seen: Vec<i32> = assignments.iter().map(|a| a.partition_index).collect();
    seen.sort_unstable();
    for (i, p) in seen.iter().enumerate() {
        if *p != i as i32 {
            return Err(TopicError::new(
                ResponseError::InvalidReplicaAssignment,
                "Partitions of a manual assignment must be numbered 0 to n-1, each once.",
            ));
        }
    }
    Ok(())
}
