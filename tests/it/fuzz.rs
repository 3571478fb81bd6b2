//! A fuzzer on the stable toolchain (cargo-fuzz needs nightly plus libFuzzer, not part of CI):
//! seeded, reproducible random and mutated inputs fed in-process to what a client controls:
//! `protocol::decode_request_header`, the body decoder of every API in `handlers::APIS` at
//! every version (the codec `protocol::decode_body::<XRequest>` runs), the record
//! batches inside decoded Produce requests, and `storage::batch::{validate, split_batches,
//! decode_records}`.
//!
//! A case fails on any panic, including one the broker's `protocol::guard` would have turned
//! into a closed connection: the raw codecs run here under this harness' own `catch_unwind`.
//! Inputs are bounded (`FUZZ_INPUT_BYTES_MAX`), so an abort by allocation cannot hide.
//!
//! The seed corpus: every (API, version) request kafka-protocol can encode (a default and a
//! populated one; Produce with real v2 batches), plus every file in tests/fuzz-corpus/ (seeds
//! written there by `SLUICE_FUZZ_WRITE_CORPUS=1`, and regression inputs of past findings, which
//! run first on every run).
//!
//! Environment: SLUICE_FUZZ_CASES (default 50 000: the CI run, a few seconds), SLUICE_FUZZ_SEED (default: a
//! fixed one in CI; scripts/fuzz.sh passes a fresh one), SLUICE_FUZZ_FIRST_CASE (resume). Case i
//! draws from its own RNG seeded by (seed, i): a failure prints seed and case, and re-running
//! with SLUICE_FUZZ_SEED=seed SLUICE_FUZZ_FIRST_CASE=i SLUICE_FUZZ_CASES=1 reproduces it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, MetadataRequest, ProduceRequest, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice::kafka::handlers::APIS;
use sluice::protocol;
use sluice::storage::batch::{self, BatchBuilder};

/// Bound on one fuzz input (a request frame's payload).
const FUZZ_INPUT_BYTES_MAX: usize = 64 * 1024;
const FUZZ_CASES_DEFAULT: u64 = 50_000;
const FUZZ_SEED_DEFAULT: u64 = 0x5eed_5eed;
/// Long runs report progress (stderr) this often, so a stopped run still says how far it got.
const FUZZ_PROGRESS_EVERY_CASES: u64 = 1_000_000;
/// Extra versions each case's body is decoded at, besides the header's own.
const FUZZ_EXTRA_VERSIONS_PER_CASE: usize = 2;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn header_bytes(key: ApiKey, version: i16, correlation_id: i32) -> BytesMut {
    let h = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut out = BytesMut::new();
    h.encode(&mut out, key.request_header_version(version))
        .unwrap();
    out
}

fn sample_batches() -> Bytes {
    let a = BatchBuilder::new(1_700_000_000_000)
        .producer(7, 0, 0)
        .record(Some(b"k"), Some(b"value"))
        .record(None, Some(b"second"))
        .build();
    let b = batch::simple_batch(3, 20, 1_700_000_000_001);
    [a, b].concat().into()
}

/// The request types the harness knows, by API key: every API Sluice serves or is about to
/// (consumer groups). `every_advertised_api_has_a_seed_at_every_version` fails if APIS grows
/// past this list.
macro_rules! with_request_types {
    ($m:ident) => {
        $m! {
            Produce => ProduceRequest, Fetch => FetchRequest, ListOffsets => ListOffsetsRequest,
            Metadata => MetadataRequest, ApiVersions => ApiVersionsRequest,
            CreateTopics => CreateTopicsRequest, DeleteTopics => DeleteTopicsRequest,
            DeleteRecords => DeleteRecordsRequest, InitProducerId => InitProducerIdRequest,
            DescribeConfigs => DescribeConfigsRequest, CreatePartitions => CreatePartitionsRequest,
            IncrementalAlterConfigs => IncrementalAlterConfigsRequest, AlterConfigs => AlterConfigsRequest,
            DescribeCluster => DescribeClusterRequest, DescribeLogDirs => DescribeLogDirsRequest, FindCoordinator => FindCoordinatorRequest,
            JoinGroup => JoinGroupRequest, SyncGroup => SyncGroupRequest,
            Heartbeat => HeartbeatRequest, LeaveGroup => LeaveGroupRequest,
            OffsetCommit => OffsetCommitRequest, OffsetFetch => OffsetFetchRequest,
            ListGroups => ListGroupsRequest, DescribeGroups => DescribeGroupsRequest,
            DeleteGroups => DeleteGroupsRequest, OffsetDelete => OffsetDeleteRequest,
            ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
            ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
            AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
            ListPartitionReassignments => ListPartitionReassignmentsRequest,
            DescribeTopicPartitions => DescribeTopicPartitionsRequest, ElectLeaders => ElectLeadersRequest,
            DescribeProducers => DescribeProducersRequest, ListTransactions => ListTransactionsRequest,
            DescribeAcls => DescribeAclsRequest, CreateAcls => CreateAclsRequest, DeleteAcls => DeleteAclsRequest,
            ListConfigResources => ListConfigResourcesRequest
        }
    };
}

/// Decodes `body` as the request type of `api` at `version` with the codec
/// `protocol::decode_body` runs (unguarded: a panic reaches the harness). None: unknown type.
/// For Produce, the decoded request (its record batches are checked next).
#[allow(unreachable_patterns)] // Produce has its own arm, first
fn decode_as(
    api: ApiKey,
    body: &mut Bytes,
    version: i16,
) -> Option<anyhow::Result<Option<ProduceRequest>>> {
    macro_rules! arms {
        ($($key:ident => $ty:ident),*) => {
            match api {
                ApiKey::Produce => Some(ProduceRequest::decode(body, version).map(Some)),
                $(ApiKey::$key => Some(kafka_protocol::messages::$ty::decode(body, version).map(|_| None)),)*
                _ => None,
            }
        };
    }
    with_request_types!(arms)
}

/// The default request of `api`, encoded at `version` (None: unknown type or not encodable).
fn encode_default(api: ApiKey, version: i16) -> Option<Vec<u8>> {
    macro_rules! arms {
        ($($key:ident => $ty:ident),*) => {
            match api {
                $(ApiKey::$key => {
                    let mut b = header_bytes(api, version, 1);
                    kafka_protocol::messages::$ty::default().encode(&mut b, version).ok()?;
                    Some(b.to_vec())
                })*
                _ => None,
            }
        };
    }
    with_request_types!(arms)
}

/// A populated request (Produce with real v2 batches, Metadata naming a topic).
fn encode_populated(api: ApiKey, version: i16) -> Option<Vec<u8>> {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TopicName;
    let name = TopicName(StrBytes::from_static_str("fuzz-topic"));
    let mut b = header_bytes(api, version, 2);
    match api {
        ApiKey::Produce => ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(if version < 13 {
                    name
                } else {
                    Default::default()
                })
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(sample_batches()))])])
            .encode(&mut b, version)
            .ok()?,
        ApiKey::Metadata => MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name))
            ]))
            .encode(&mut b, version)
            .ok()?,
        _ => return None,
    }
    Some(b.to_vec())
}

/// Request payloads (header + body, without the 4-byte length) for every (API, version).
fn generated_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for api in APIS {
        for v in api.versions.min..=api.versions.max {
            for (kind, req) in [
                ("default", encode_default(api.key, v)),
                ("populated", encode_populated(api.key, v)),
            ] {
                if let Some(b) = req {
                    out.push((format!("{:?}-v{v}-{kind}", api.key), b));
                }
            }
        }
    }
    out.push(("batches".into(), sample_batches().to_vec()));
    out
}

fn load_corpus() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(corpus_dir()) {
        let mut paths: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "bin") {
                let mut b = std::fs::read(&p).unwrap();
                b.truncate(FUZZ_INPUT_BYTES_MAX);
                out.push((p.file_name().unwrap().to_string_lossy().into_owned(), b));
            }
        }
    }
    out
}

/// Runs one input through every decoder; Err(description) on a panic.
fn run_one(input: &[u8]) -> Result<(), String> {
    let r = catch_unwind(AssertUnwindSafe(|| exercise(input)));
    r.map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into())
    })
}

fn check_batches(records: &[u8]) {
    let _ = batch::validate(records, u32::MAX);
    let _ = batch::validate(records, 1 << 20);
    for b in batch::split_batches(records) {
        if batch::validate(b, u32::MAX).is_ok() {
            let _ = batch::decode_records(b);
        }
    }
}

fn exercise(input: &[u8]) {
    // The broker's own entry point (its guard would hide a codec panic: run the raw one too).
    let mut body = Bytes::copy_from_slice(input);
    let parsed = protocol::decode_request_header(&mut body);
    if input.len() >= 4 {
        let key = i16::from_be_bytes([input[0], input[1]]);
        if let Ok(api) = ApiKey::try_from(key) {
            let range = api.valid_versions();
            let version = i16::from_be_bytes([input[2], input[3]]).clamp(range.min, range.max);
            let mut raw = Bytes::copy_from_slice(&input[4..]);
            let _ = RequestHeader::decode(&mut raw, api.request_header_version(version));
        }
    }
    check_batches(input);
    let Ok((api, header)) = parsed else { return };
    let Some(spec) = APIS.iter().find(|a| a.key == api) else {
        return;
    };
    let v = header.request_api_version;
    let mut versions = vec![v];
    // A few more versions of the same body, derived from the input (deterministic).
    let span = (spec.versions.max - spec.versions.min + 1) as usize;
    for i in 0..FUZZ_EXTRA_VERSIONS_PER_CASE {
        let pick = input
            .get(input.len().saturating_sub(1 + i))
            .copied()
            .unwrap_or(0) as usize;
        versions.push(spec.versions.min + (pick % span) as i16);
    }
    for ver in versions {
        if ver < spec.versions.min || ver > spec.versions.max {
            continue;
        }
        let mut b = body.clone();
        // What `protocol::decode_body::<XRequest>` runs, for whichever X the key names.
        if let Some(Ok(Some(req))) = decode_as(api, &mut b, ver) {
            for t in &req.topic_data {
                for p in &t.partition_data {
                    if let Some(r) = &p.records {
                        check_batches(r);
                    }
                }
            }
        }
    }
}

fn mutate(rng: &mut StdRng, seeds: &[(String, Vec<u8>)]) -> Vec<u8> {
    const INTERESTING_I32: [i32; 9] = [0, -1, 1, i32::MAX, i32::MIN, 0x7fff, 0x8000, 255, 256];
    let mut b = if rng.random_range(0..20) == 0 || seeds.is_empty() {
        let n = rng.random_range(0..512);
        (0..n).map(|_| rng.random()).collect()
    } else {
        seeds[rng.random_range(0..seeds.len())].1.clone()
    };
    let rounds = rng.random_range(1..=6);
    for _ in 0..rounds {
        let len = b.len();
        match rng.random_range(0..9) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] = rng.random();
            }
            2 if len >= 4 => {
                let i = rng.random_range(0..=len - 4);
                let v = INTERESTING_I32[rng.random_range(0..INTERESTING_I32.len())];
                b[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            3 if len >= 2 => {
                let i = rng.random_range(0..=len - 2);
                let v = INTERESTING_I32[rng.random_range(0..INTERESTING_I32.len())] as i16;
                b[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            4 if len > 0 => b.truncate(rng.random_range(0..len)),
            5 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..64);
                let ins: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                b.splice(i..i, ins);
            }
            6 if len > 1 => {
                let i = rng.random_range(0..len);
                let j = rng.random_range(i..=len.min(i + 64));
                b.drain(i..j);
            }
            7 if !seeds.is_empty() => {
                // Splice: our prefix, another seed's suffix.
                let other = &seeds[rng.random_range(0..seeds.len())].1;
                let i = rng.random_range(0..=len);
                let j = rng.random_range(0..=other.len());
                b.truncate(i);
                b.extend_from_slice(&other[j..]);
            }
            8 if len >= 4 => {
                // Another version of the same API (the body no longer matches it).
                let v: i16 = rng.random_range(-1..20);
                b[2..4].copy_from_slice(&v.to_be_bytes());
            }
            _ => {}
        }
    }
    b.truncate(FUZZ_INPUT_BYTES_MAX);
    b
}

/// Runs `cases` cases from `first`; returns (cases run, failures as descriptions).
fn fuzz(seed: u64, first: u64, cases: u64) -> (u64, Vec<String>) {
    let mut seeds = generated_seeds();
    seeds.extend(load_corpus());
    let mut failures = Vec::new();
    // Every corpus entry as is, first (regressions).
    for (name, input) in &seeds {
        if let Err(e) = run_one(input) {
            failures.push(format!("corpus entry {name}: panic: {e}"));
        }
    }
    // No quiet panic hook: hooks are process-wide and other tests run in parallel threads.
    let mut run = 0;
    for i in first..first.saturating_add(cases) {
        let mut rng = StdRng::seed_from_u64(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let input = mutate(&mut rng, &seeds);
        run += 1;
        if run % FUZZ_PROGRESS_EVERY_CASES == 0 {
            eprintln!("fuzz: {run} executions (seed {seed}, next case {})", i + 1);
        }
        if let Err(e) = run_one(&input) {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            failures.push(format!(
                "case {i} (SLUICE_FUZZ_SEED={seed} SLUICE_FUZZ_FIRST_CASE={i} SLUICE_FUZZ_CASES=1): \
                 panic: {e}; input ({} bytes, save as tests/fuzz-corpus/regress-*.bin): {hex}",
                input.len()
            ));
            if failures.len() >= 10 {
                break;
            }
        }
    }
    (run, failures)
}

#[test]
fn fuzz_decoders_and_batch_validation() {
    if std::env::var_os("SLUICE_FUZZ_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(corpus_dir()).unwrap();
        for (name, bytes) in generated_seeds() {
            std::fs::write(corpus_dir().join(format!("seed-{name}.bin")), bytes).unwrap();
        }
    }
    let seed = env_u64("SLUICE_FUZZ_SEED", FUZZ_SEED_DEFAULT);
    let first = env_u64("SLUICE_FUZZ_FIRST_CASE", 0);
    let cases = env_u64("SLUICE_FUZZ_CASES", FUZZ_CASES_DEFAULT);
    let t = Instant::now();
    let (run, failures) = fuzz(seed, first, cases);
    let s = t.elapsed().as_secs_f64();
    println!(
        "fuzz: seed {seed}, cases {first}..{}, {run} executions in {s:.1} s ({:.0}/s), {} failures",
        first + run,
        run as f64 / s.max(1e-9),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "fuzz findings:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_advertised_api_has_a_seed_at_every_version() {
    let seeds = generated_seeds();
    for api in APIS {
        for v in api.versions.min..=api.versions.max {
            let prefix = format!("{:?}-v{v}-", api.key);
            assert!(
                seeds.iter().any(|(n, _)| n.starts_with(&prefix)),
                "no seed for {prefix}: add its request type to default_request()"
            );
        }
    }
}

#[test]
fn seeds_decode_back() {
    // The seeds are well-formed: header and body decode at their own version.
    for (name, input) in generated_seeds() {
        if name == "batches" {
            continue;
        }
        let mut body = Bytes::from(input);
        let (api, h) = protocol::decode_request_header(&mut body).unwrap();
        decode_as(api, &mut body, h.request_api_version)
            .unwrap_or_else(|| panic!("{name}: no request type"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
