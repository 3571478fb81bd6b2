//! DescribeLogDirs (`kafka-log-dirs --describe`, `Admin.describeLogDirs`): the one log
//! directory (`log.dir`) with the size of every partition it holds, asked of each shard that
//! owns partitions, and (v4) the file system's total and usable bytes.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 4 };

pub async fn handle(ctx: RequestContext, req: DescribeLogDirsRequest) -> Option<DescribeLogDirsResponse> {
    let data_dir = ctx.shard.config().data_dir.clone();
    // None: every partition; else the asked (topic, partition) pairs.
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req
        .topics
        .map(|ts| ts.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect());
    let mut sizes: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    let mut error = ResponseError::KafkaStorageError.code();
    let n = ctx.shard.shared.shard_count();
    let asks = (0..n).map(|i| {
        ctx.shard.run_on(i, |s| async move {
            s.logs()
                .into_iter()
                .map(|((topic, p), log)| (topic, p, i64::try_from(log.size_bytes()).unwrap_or(i64::MAX)))
                .collect::<Vec<_>>()
        })
    });
    let answers = futures::future::join_all(asks).await;
    if answers.iter().all(Result::is_ok) {
        error = 0;
    }
    for (topic, p, size) in answers.into_iter().flatten().flatten() {
        let asked = match &wanted {
            None => true,
            Some(w) => w.get(&topic).is_some_and(|ps| ps.contains(&p)),
        };
        if asked {
            sizes.entry(topic).or_default().push((p, size));
        }
    }
    let topics = sizes
        .into_iter()
        .map(|(name, mut parts)| {
            parts.sort_unstable();
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, size)| DescribeLogDirsPartition::default().with_partition_index(p).with_partition_size(size))
                        .collect(),
                )
        })
        .collect();
    let (total, usable) = fs_bytes(&data_dir).unwrap_or((-1, -1));
    let dir = std::fs::canonicalize(&data_dir).unwrap_or(data_dir);
    let result = DescribeLogDirsResult::default()
        .with_error_code(error)
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable);
    Some(DescribeLogDirsResponse::default().with_results(vec![result]))
}

/// (total, usable) bytes of the file system holding `dir` (statvfs), as Kafka reports them.
fn fs_bytes(dir: &std::path::Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct on success; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as i64;
    Some((st.f_blocks as i64 * frsize, st.f_bavail as i64 * frsize))
}
