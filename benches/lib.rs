//! Shared helpers of the pg-rs criterion benchmarks.
