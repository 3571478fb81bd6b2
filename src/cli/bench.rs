//! `sluice bench`: see [`crate::bench`].

pub use crate::bench::cli::{run, BenchArgs};
