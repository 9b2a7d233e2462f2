//! Warm-up and batch buckets.
//!
//! Batches are padded up to a small set of *bucket* sizes (powers of two up to `max_batch`, and
//! `max_batch`). TorchScript's profiling executor re-optimises for every new input shape, which
//! makes the first forwards of a shape several times slower (measured: ~130 ms, then ~65 ms,
//! then ~20 ms at batch 1; docs: environment); with buckets a service warms every shape it will
//! ever run before it reports ready.

use std::time::Instant;

use crate::{Backend, ModelError};

/// Batch sizes the model is run with: powers of two below `max_batch`, and
/// `max_batch`.
pub fn buckets(max_batch: usize) -> Vec<usize> {
    let mut b: Vec<usize> = (0..).map(|i| 1usize << i).take_while(|&x| x < max_batch).collect();
    b.push(max_batch);
    b
}

/// Smallest bucket holding `n` frames.
pub fn bucket_for(buckets: &[usize], n: usize) -> usize {
    buckets.iter().copied().find(|&b| b >= n).unwrap_or(n)
}

/// Run warm-up forwards for every bucket shape; returns seconds spent.
pub fn warm_up(backend: &dyn Backend, side: u32, buckets: &[usize], runs: usize) -> Result<f64, ModelError> {
    let t = Instant::now();
    let frame = (side as usize).pow(2) * 3;
    for &b in buckets {
        let data = vec![127u8; b * frame];
        for _ in 0..runs {
            backend.forward(&data, b)?;
        }
    }
    Ok(t.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_sizes() {
        assert_eq!(buckets(16), [1, 2, 4, 8, 16]);
        assert_eq!(buckets(12), [1, 2, 4, 8, 12]);
        assert_eq!(buckets(1), [1]);
        let b = buckets(12);
        assert_eq!(bucket_for(&b, 3), 4);
        assert_eq!(bucket_for(&b, 9), 12);
        assert_eq!(bucket_for(&b, 1), 1);
    }
}
