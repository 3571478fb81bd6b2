//! ApiVersions: the supported ranges, derived from [`super::APIS`].
//!
//! A client asking with a version newer than ours gets a v0 response carrying
//! UNSUPPORTED_VERSION and our ranges, as Kafka does, so it can retry with one we know.
//! The response header is always v0 (no tagged fields), whatever the body version.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;

use crate::kafka::{Reply, RequestContext};
use crate::protocol;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

fn api_keys() -> Vec<ApiVersion> {
    super::APIS
        .iter()
        .map(|a| ApiVersion::default().with_api_key(a.key as i16).with_min_version(a.versions.min).with_max_version(a.versions.max))
        .collect()
}

pub async fn handle(_ctx: RequestContext, _req: ApiVersionsRequest) -> Option<ApiVersionsResponse> {
    Some(ApiVersionsResponse::default().with_api_keys(api_keys()).with_finalized_features_epoch(-1))
}

pub fn unsupported_version(ctx: &RequestContext) -> Reply {
    let resp = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys());
    match protocol::encode_response(ApiKey::ApiVersions, 0, ctx.header.correlation_id, &resp) {
        Ok(f) => Reply::Frame(f),
        Err(e) => Reply::Close(e.to_string()),
    }
}
