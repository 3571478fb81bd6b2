//! The one integration-test binary: modules below, compiled once.

mod broker;
mod storage;
mod wire;
