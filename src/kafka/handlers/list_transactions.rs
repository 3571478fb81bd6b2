//! ListTransactions (`kafka-transactions list`, `Admin.listTransactions`): Sluice has no
//! transactions (no transactional producer can start one), so the list is empty. State filters
//! Kafka does not know are echoed back as unknown, as Kafka does.

use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse};
use kafka_protocol::protocol::VersionRange;

use crate::kafka::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// Kafka's transaction states (TransactionState.java).
const STATES: &[&str] = &["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"];

pub async fn handle(_ctx: RequestContext, req: ListTransactionsRequest) -> Option<ListTransactionsResponse> {
    let unknown = req.state_filters.into_iter().filter(|s| !STATES.contains(&s.as_str())).collect();
    Some(ListTransactionsResponse::default().with_unknown_state_filters(unknown))
}
