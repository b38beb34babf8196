//! The sandbox's test helpers (its `testing` feature), for its own tests.
#![allow(dead_code, unused_imports)]

pub use connect_sandbox::testing::*;
