//! The one integration-test binary: modules below, compiled once.

mod broker;
mod groups;
mod storage;
mod wire;
