//! DescribeAcls, CreateAcls, DeleteAcls (`kafka-acls`, `Admin.describeAcls/createAcls/
//! deleteAcls`). Sluice has no authorizer: every client may do everything, as on a Kafka broker
//! without `authorizer.class.name`, so it answers as such a Kafka does: SECURITY_DISABLED with
//! Kafka's message, for the request and for each creation and deletion filter.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::RequestContext;

pub const DESCRIBE_VERSIONS: VersionRange = VersionRange { min: 1, max: 3 };
pub const CREATE_VERSIONS: VersionRange = VersionRange { min: 1, max: 3 };
pub const DELETE_VERSIONS: VersionRange = VersionRange { min: 1, max: 3 };

const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

fn message() -> Option<StrBytes> {
    Some(StrBytes::from_static_str(NO_AUTHORIZER))
}

pub async fn describe(_ctx: RequestContext, _req: DescribeAclsRequest) -> Option<DescribeAclsResponse> {
    Some(DescribeAclsResponse::default().with_error_code(ResponseError::SecurityDisabled.code()).with_error_message(message()))
}

pub async fn create(_ctx: RequestContext, req: CreateAclsRequest) -> Option<CreateAclsResponse> {
    let results = req
        .creations
        .iter()
        .map(|_| AclCreationResult::default().with_error_code(ResponseError::SecurityDisabled.code()).with_error_message(message()))
        .collect();
    Some(CreateAclsResponse::default().with_results(results))
}

pub async fn delete(_ctx: RequestContext, req: DeleteAclsRequest) -> Option<DeleteAclsResponse> {
    let results = req
        .filters
        .iter()
        .map(|_| DeleteAclsFilterResult::default().with_error_code(ResponseError::SecurityDisabled.code()).with_error_message(message()))
        .collect();
    Some(DeleteAclsResponse::default().with_filter_results(results))
}
