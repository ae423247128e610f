//! Order-preserving parallel map over a batch on scoped threads (std only). The enclave uses
//! it for the per-lead work that touches no shared state: signature checks, HPKE opens, rule
//! checks and receipt signatures.

/// Maps `f` over `items` on up to `workers` threads (the calling thread included), in
/// contiguous chunks; results are in `items` order. One thread does it all when `workers` is
/// 1 or there is a single item.
pub fn par_map<T: Send, U: Send>(
    mut items: Vec<T>,
    workers: usize,
    f: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    let workers = workers.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.into_iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(workers);
    let mut rest = items.split_off(chunk);
    let f = &f;
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        while !rest.is_empty() {
            let tail = rest.split_off(chunk.min(rest.len()));
            let c = std::mem::replace(&mut rest, tail);
            handles.push(scope.spawn(move || c.into_iter().map(f).collect::<Vec<U>>()));
        }
        let mut out: Vec<U> = items.into_iter().map(f).collect();
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
                    par_map(items.clone(), workers, |x| x * x + 1),
                    want,
                    "n={n} w={workers}"
                );
            }
        }
    }
}
