//! Replays the committed corpus (`fuzz/corpus/<target>/`: inputs the
//! fuzzer found interesting, and every finding once fixed) and a batch of
//! fresh structure-aware and mutated inputs through every target: no
//! panic, memory within bound, round trips exact. The only test in this
//! binary, so the heap measurement sees no other test's allocations.

use std::path::Path;

use pg_fuzz::{Target, mutate, run, seed_input};

#[test]
fn corpus_and_fresh_inputs_keep_every_promise() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut replayed = 0;
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for target in Target::ALL {
        let dir = root.join(target.name());
        let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        replayed += inputs.len();
        let seeds: Vec<Vec<u8>> = (0..200).map(|_| seed_input(target, &mut rng)).collect();
        for (i, seed) in seeds.iter().enumerate() {
            // Seeds are valid: each must decode (the scope target always does).
            let outcome = run(target, seed).unwrap_or_else(|f| panic!("{target:?} seed: {f}"));
            assert!(
                outcome.starts_with("ok"),
                "{target:?} seed {i} did not decode: {outcome}"
            );
            inputs.push(mutate(seed, &seeds[(i + 1) % seeds.len()], &mut rng));
        }
        for input in &inputs {
            if let Err(finding) = run(target, input) {
                panic!("{target:?} on {input:?}: {finding}");
            }
        }
    }
    assert!(replayed > 0, "the committed corpus is empty");
}
