//! IncrementalAlterConfigs for topic configs: SET (0) and DELETE (1). The catalog change is
//! durable before the owning shards apply the new storage config. As on Kafka, deleting a config
//! that is not set succeeds: a topic config Sluice does not know (e.g. the replication throttles
//! `kafka-reassign-partitions --verify` clears) is never set, and this broker's configs are all
//! static, so deleting any of them changes nothing; setting one is refused.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::handlers::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::kafka::topics::TopicError;
use crate::kafka::{configs, RequestContext};
use crate::runtime::{log_config, owner_shard};
use crate::cluster::ClusterOf;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

pub async fn handle(
    ctx: RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> Option<IncrementalAlterConfigsResponse> {
    let mut responses = Vec::new();
    for r in req.resources {
        let mut out = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let res = alter_topic(
            &ctx,
            r.resource_type,
            r.resource_name.to_string(),
            r.configs,
            req.validate_only,
        )
        .await;
        if let Err(e) = res {
            out.error_code = e.code;
            out.error_message = Some(StrBytes::from_string(e.message));
        }
        responses.push(out);
    }
    Some(IncrementalAlterConfigsResponse::default().with_responses(responses))
}

async fn alter_topic(
    ctx: &RequestContext,
    resource_type: i8,
    topic: String,
    changes: Vec<kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig>,
    validate_only: bool,
) -> Result<(), TopicError> {
    if resource_type == RESOURCE_BROKER && changes.iter().all(|c| c.config_operation == OP_DELETE) {
        return Ok(());
    }
    if resource_type != RESOURCE_TOPIC {
        return Err(TopicError::new(
            ResponseError::InvalidRequest,
            "only topic configs can be altered; broker configs are static",
        ));
    }
    let mut ops = Vec::new();
    for c in changes {
        let name = c.name.to_string();
        match (c.config_operation, c.value) {
            (OP_SET, Some(v)) => {
                configs::validate(&name, v.as_str())
                    .map_err(|m| TopicError::new(ResponseError::InvalidConfig, m))?;
                ops.push((name, Some(v.to_string())));
            }
            (OP_SET, None) => {
                return Err(TopicError::new(
                    ResponseError::InvalidConfig,
                    format!("null value for {name}"),
                ))
            }
            (OP_DELETE, _) => {
                // An unknown name is never set: nothing to delete.
                if !configs::validate(&name, "0").is_err_and(|m| m.starts_with("Unknown")) {
                    ops.push((name, None));
                }
            }
            (op, _) => {
                return Err(TopicError::new(
                    ResponseError::InvalidConfig,
                    format!(
                        "operation {op} is not supported for {name} (no list-valued topic configs)"
                    ),
                ))
            }
        }
    }
    apply_topic_configs(ctx, topic, ops, false, validate_only).await
}

/// Applies `ops` (name, Some(value) = set, None = back to the default) to the configs of
/// `topic`; with `replace_all` every config not in `ops` goes back to its default first (the
/// legacy AlterConfigs). The catalog change (in a cluster: the metadata log) is durable before
/// the owning shards apply the new storage config.
pub(super) async fn apply_topic_configs(
    ctx: &RequestContext,
    topic: String,
    ops: Vec<(String, Option<String>)>,
    replace_all: bool,
    validate_only: bool,
) -> Result<(), TopicError> {
    if ctx.shard.shared.catalog.snapshot().topic(&topic).is_none() {
        return Err(TopicError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Topic '{topic}' does not exist."),
        ));
    }
    if validate_only {
        return Ok(());
    }
    if ctx.shard.shared.cluster().is_some() {
        // Cluster mode: the new config set goes through the metadata log (applied everywhere).
        let Some(meta) = ctx.shard.shared.catalog.snapshot().topic(&topic).cloned() else {
            return Err(TopicError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("Topic '{topic}' does not exist."),
            ));
        };
        let mut configs = meta.configs.clone();
        if replace_all {
            configs.clear();
        }
        for (k, v) in ops {
            match v {
                Some(v) => configs.insert(k, v),
                None => configs.remove(&k),
            };
        }
        let op = crate::cluster::metadata::MetaOp::SetConfigs {
            name: topic.clone(),
            id: meta.id,
            configs,
        };
        return Ok(crate::cluster::metadata::propose(&ctx.shard, op).await?);
    }
    let t = topic.clone();
    let meta = ctx
        .shard
        .shared
        .catalog
        .update(move |d| {
            let meta = d.topics.get_mut(&t).ok_or_else(|| {
                TopicError::new(
                    ResponseError::UnknownTopicOrPartition,
                    "topic deleted meanwhile",
                )
            })?;
            if replace_all {
                meta.configs.clear();
            }
            for (k, v) in ops {
                match v {
                    Some(v) => meta.configs.insert(k, v),
                    None => meta.configs.remove(&k),
                };
            }
            Ok::<_, TopicError>(meta.clone())
        })
        .await
        .map_err(|e| TopicError::new(ResponseError::KafkaStorageError, e.to_string()))??;
    let n = ctx.shard.shared.shard_count();
    let cfg = log_config(ctx.shard.config(), &meta);
    for p in 0..meta.partitions {
        let owner = owner_shard(&meta.id, p, n);
        let (name, cfg) = (meta.name.clone(), cfg.clone());
        let _ = ctx
            .shard
            .run_on(owner, move |s| async move {
                if let Some(log) = s.log(&name, p) {
                    log.set_config(cfg);
                }
            })
            .await;
    }
    tracing::info!(topic = %topic, "topic configs altered");
    Ok(())
}
