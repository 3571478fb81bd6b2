//! ConsumerGroupDescribe (KIP-848): epochs, assignor and members with their current and
//! target assignments.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use uuid::Uuid;

use crate::group::{self, consumer::Tp};
use crate::kafka::RequestContext;
use crate::limits;
use crate::group::GroupShard;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

fn assignment(tps: &[Tp], names: &BTreeMap<Uuid, String>) -> Assignment {
    let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
    for (t, p) in tps {
        by_topic.entry(*t).or_default().push(*p);
    }
    Assignment::default().with_topic_partitions(
        by_topic
            .into_iter()
            .map(|(id, ps)| {
                let name = names.get(&id).cloned().unwrap_or_default();
                TopicPartitions::default()
                    .with_topic_id(id)
                    .with_topic_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(ps)
            })
            .collect(),
    )
}

pub async fn handle(
    ctx: RequestContext,
    req: ConsumerGroupDescribeRequest,
) -> Option<ConsumerGroupDescribeResponse> {
    let snap = ctx.shard.shared.catalog.snapshot();
    let names: BTreeMap<Uuid, String> = snap.topics().map(|t| (t.id, t.name.clone())).collect();
    let mut out = Vec::new();
    for gid in req
        .group_ids
        .into_iter()
        .take(limits::TOPICS_PER_REQUEST_MAX)
    {
        let id = gid.0.to_string();
        let d = DescribedGroup::default()
            .with_group_id(gid)
            .with_authorized_operations(i32::MIN);
        if let Err(e) = group::validate_group_id(&id) {
            out.push(d.with_error_code(e.code()));
            continue;
        }
        let key = id.clone();
        match group::on_coordinator(&ctx.shard, &key, move |s| async move {
            s.groups().consumer_describe(&id)
        })
        .await
        {
            Err(e) => out.push(d.with_error_code(e.code())),
            Ok(None) => out.push(
                d.with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "not a consumer-protocol group",
                    ))),
            ),
            Ok(Some(g)) => {
                let members = g
                    .members
                    .iter()
                    .map(|m| {
                        Member::default()
                            .with_member_id(StrBytes::from_string(m.member_id.clone()))
                            .with_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                            .with_rack_id(m.rack_id.clone().map(StrBytes::from_string))
                            .with_member_epoch(m.epoch)
                            .with_client_id(StrBytes::from_string(m.client_id.clone()))
                            .with_client_host(StrBytes::from_string(m.client_host.clone()))
                            .with_subscribed_topic_names(
                                m.subscribed
                                    .iter()
                                    .map(|t| TopicName(StrBytes::from_string(t.clone())))
                                    .collect(),
                            )
                            .with_assignment(assignment(&m.assigned, &names))
                            .with_target_assignment(assignment(&m.target, &names))
                            .with_member_type(1)
                    })
                    .collect();
                out.push(
                    d.with_group_state(StrBytes::from_static_str(g.state))
                        .with_group_epoch(g.epoch)
                        .with_assignment_epoch(g.assignment_epoch)
                        .with_assignor_name(StrBytes::from_string(g.assignor))
                        .with_members(members),
                );
            }
        }
    }
    Some(ConsumerGroupDescribeResponse::default().with_groups(out))
}
