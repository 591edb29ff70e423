//! R2 on one node, by registry size: a lookup through pg-api must not
//! grow with the number of keys registered (the cluster R2 of
//! `cargo xtask bench` looks up one key in a registry of a few).

use std::time::Instant;

use pg_api::ScopeOptions as ApiScopeOptions;

/// `R2_lookup_registry_size`: 1M lookups of one key through pg-api while
/// the scope holds `keys` registrations in all.
pub(crate) fn lookup_by_registry_size() {
    let node = pg_api::Node::builder()
        .name("r2")
        .scope("app:pg", ApiScopeOptions::default())
        .start()
        .unwrap();
    let holder = node.spawn("holder");
    let pg = holder.open("app:pg").unwrap();
    pg.register("the-key").unwrap();
    let others = node.spawn("others");
    let others_pg = others.open("app:pg").unwrap();
    let mut registered = 1;
    for keys in [1usize, 100_000] {
        while registered < keys {
            others_pg.register(&format!("key:{registered}")).unwrap();
            registered += 1;
        }
        let n = 1_000_000;
        let start = Instant::now();
        let mut found = 0usize;
        for _ in 0..n {
            found += usize::from(std::hint::black_box(pg.lookup("the-key").unwrap()).is_some());
        }
        let ns = start.elapsed().as_secs_f64() * 1e9 / n as f64;
        assert_eq!(found, n, "every lookup finds the key");
        println!(
            "{{\"system\":\"pg-rs\",\"workload\":\"R2_lookup_registry_size\",\"keys\":{keys},\"n\":{n},\"ns_per_op\":{ns:.1}}}"
        );
    }
    drop((others, holder));
    node.shutdown();
}
