//! Order-preserving parallel map over a batch on scoped threads (std only). The enclave uses
//! it for the per-lead work that touches no shared state: signature checks, HPKE opens, rule
//! checks and receipt signatures.

/// Maps `f` over `items` on up to `workers` threads (the calling thread included), in
/// contiguous chunks; results are in `items` order. One thread does it all when `workers` is
/// 1 or there is a single item.
pub fn par_map<T: Sync, U: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> U + Sync,
) -> Vec<U> {
    let workers = workers.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(workers);
    let mut chunks = items.chunks(chunk);
    let first = chunks.next().unwrap_or_default();
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .map(|c| scope.spawn(move || c.iter().map(f).collect::<Vec<U>>()))
            .collect();
        let mut out: Vec<U> = first.iter().map(f).collect();
        for h in handles {
            // A panic in a worker is a bug in our code, not input: propagate it.
            out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::par_map;

    #[test]
    fn keeps_order_for_every_worker_count() {
        for n in [0usize, 1, 2, 3, 7, 64, 257] {
            let items: Vec<u64> = (0..n as u64).collect();
            let want: Vec<u64> = items.iter().map(|x| x * x + 1).collect();
            for workers in [1, 2, 3, 8, 1000] {
                assert_eq!(
                    par_map(&items, workers, |x| x * x + 1),
                    want,
                    "n={n} w={workers}"
                );
            }
        }
    }
}
