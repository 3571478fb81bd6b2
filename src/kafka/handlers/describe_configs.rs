//! DescribeConfigs for topics (resource type 2) and this broker (type 4).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::{configs, RequestContext};

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 4 };

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
/// Kafka's ConfigSource values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn entry(name: &str, value: String, source: i8, read_only: bool) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value)))
        .with_config_source(source)
        .with_read_only(read_only)
        .with_config_type(configs::config_type(name))
}

/// With `include_synonyms`, Kafka lists where a set value comes from, itself first (a topic's
/// override: `DYNAMIC_TOPIC_CONFIG:retention.ms=...`, as `kafka-configs --describe` prints it).
/// A default value gets no synonym here (Sluice's defaults are not broker configs by Kafka's names).
fn with_synonym(mut e: DescribeConfigsResourceResult) -> DescribeConfigsResourceResult {
    if e.config_source != SOURCE_DEFAULT {
        e.synonyms = vec![DescribeConfigsSynonym::default().with_name(e.name.clone()).with_value(e.value.clone()).with_source(e.config_source)];
    }
    e
}

pub async fn handle(ctx: RequestContext, req: DescribeConfigsRequest) -> Option<DescribeConfigsResponse> {
    let broker = ctx.shard.config();
    let mut results = Vec::new();
    let include_synonyms = req.include_synonyms;
    for r in req.resources {
        // null (and, leniently, an empty list) asks for every config.
        let keys: Option<Vec<String>> = r.configuration_keys.filter(|k| !k.is_empty()).map(|k| k.iter().map(|s| s.to_string()).collect());
        let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == name));
        let mut res = DescribeConfigsResult::default().with_resource_type(r.resource_type).with_resource_name(r.resource_name.clone());
        match r.resource_type {
            RESOURCE_TOPIC => match ctx.shard.shared.catalog.snapshot().topic(r.resource_name.as_str()) {
                Some(t) => {
                    res.configs = configs::defaults(broker)
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, default)| match t.configs.get(k) {
                            Some(v) => entry(k, v.clone(), SOURCE_TOPIC, false),
                            None => entry(k, default, SOURCE_DEFAULT, false),
                        })
                        .collect();
                }
                None => {
                    res.error_code = ResponseError::UnknownTopicOrPartition.code();
                    res.error_message = Some(StrBytes::from_string(format!("Topic '{}' does not exist.", r.resource_name.as_str())));
                }
            },
            RESOURCE_BROKER => {
                let me = broker.node_id.to_string();
                if !r.resource_name.is_empty() && r.resource_name.as_str() != me {
                    res.error_code = ResponseError::InvalidRequest.code();
                    res.error_message = Some(StrBytes::from_string(format!("this is broker {me}")));
                } else {
                    res.configs = configs::broker_configs(broker)
                        .into_iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, v)| entry(k, v, SOURCE_STATIC_BROKER, true))
                        .collect();
                }
            }
            other => {
                res.error_code = ResponseError::InvalidRequest.code();
                res.error_message = Some(StrBytes::from_string(format!("resource type {other} is not supported")));
            }
        }
        if include_synonyms {
            res.configs = res.configs.into_iter().map(with_synonym).collect();
        }
        results.push(res);
    }
    Some(DescribeConfigsResponse::default().with_results(results))
}
