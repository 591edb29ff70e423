//! Fuzzing of every decoder a peer or a config file reaches, on stable
//! Rust (no nightly toolchain, so no libFuzzer or sanitizer coverage):
//! seeds are built structurally (valid frames, channel records, handshake
//! messages and configurations from a random generator), then mutated
//! (bit flips, interesting integers, insertions, deletions, splices,
//! truncation), and an input is kept in the corpus when it reaches an
//! outcome not seen before (a new error, or a new kind of success): a
//! cheap feedback in place of coverage.
//!
//! Every target promises, for any input: no panic, no hang (each run is
//! timed), heap use within [`memory_bound`], and, for what decodes, that
//! encoding it again decodes to the same value.
//!
//! ```
//! use pg_fuzz::{Target, run};
//! let outcome = run(Target::Frame, &[4, 0, 0]);
//! assert!(outcome.is_ok(), "a short frame is an error, not a panic");
//! ```

mod generate;
mod mutate;
mod targets;

pub use generate::seed_input;
pub use mutate::mutate;
pub use targets::{Finding, Target, memory_bound, run};
