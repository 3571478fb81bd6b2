//! InitProducerId for idempotent producers (no transactions yet).
//!
//! A new producer gets an id never handed out before (reserved durably in blocks). A producer
//! that presents its current id and epoch (KIP-360, v3+) gets the epoch bumped, which resets
//! its sequence numbers on every partition.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::protocol::VersionRange;

use crate::kafka::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

pub async fn handle(ctx: RequestContext, req: InitProducerIdRequest) -> Option<InitProducerIdResponse> {
    let resp = InitProducerIdResponse::default();
    if req.transactional_id.is_some() {
        if crate::recorder::log_allowed("init_producer_id.transactional") {
            tracing::warn!(peer = %ctx.peer_addr, "transactional producer refused: transactions are not supported yet");
        }
        return Some(resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()).with_producer_id(ProducerId(-1)).with_producer_epoch(-1));
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return Some(resp.with_producer_id(req.producer_id).with_producer_epoch(req.producer_epoch + 1));
    }
    match ctx.shard.shared.allocate_producer_id().await {
        Ok(id) => Some(resp.with_producer_id(ProducerId(id)).with_producer_epoch(0)),
        Err(e) => {
            tracing::error!(error = %e, "producer id allocation failed");
            Some(resp.with_error_code(ResponseError::KafkaStorageError.code()).with_producer_id(ProducerId(-1)).with_producer_epoch(-1))
        }
    }
}
