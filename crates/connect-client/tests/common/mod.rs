//! The sandbox (Connect's emulator) and its test helpers, which the client's tests run against.
#![allow(dead_code, unused_imports)]

pub use connect_sandbox::testing::*;
