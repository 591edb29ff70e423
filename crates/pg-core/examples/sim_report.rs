//! Prints the report of a few seeds (a development aid).
fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let nodes: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    for seed in 0..n {
        let config = pg_core::sim::scenario::ScenarioConfig::new(nodes, seed);
        match pg_core::sim::scenario::run(&config) {
            Ok(r) => println!("{r:?}"),
            Err(f) => println!("FAIL {f}"),
        }
    }
}
