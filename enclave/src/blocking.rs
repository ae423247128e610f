//! Running one future to completion from the enclave's synchronous code (the core runs under
//! the link server's lock, inside `block_in_place`; sealing runs at boot): on a scoped thread
//! of its own with a current-thread Tokio runtime, so it works inside or outside a runtime.
//! The KMS calls ([`crate::kms`]), the chain reads ([`crate::chain`]) and the floor sources
//! ([`crate::floor`]) all go through it.

/// Runs `future` to completion on a thread and runtime of its own and returns its output.
///
/// # Errors
/// A message if the runtime does not start or the thread panics.
pub fn run<T: Send>(future: impl std::future::Future<Output = T> + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| rt.block_on(future))
                    .map_err(|e| format!("runtime: {e}"))
            })
            .join()
            .unwrap_or_else(|_| Err("the thread running it panicked".into()))
    })
}
