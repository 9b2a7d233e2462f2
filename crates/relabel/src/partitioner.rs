//! The partition a `gif_id` belongs in: Kafka's default partitioner for keyed records
//! (`murmur2(key) & 0x7fffffff) % partitions`, the Java client's, and librdkafka's
//! `murmur2_random` for a non-empty key), which every producer of ours uses (the partitioning
//! contract, README "Event contract").
//!
//! The job folds a GIF's inputs in the state of the partition they arrive in; a record in
//! another partition than its `gif_id`'s (a producer with another partitioner, or keyed by
//! something else) would split a GIF's state in two and give it two sets of labels. Such a
//! record is refused with reason `misplaced`, counted and logged, naming the partitions.

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), as an `i32` like Java's.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ len as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partitions` (> 0).
pub fn partition_of(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's own test (`UtilsTest.testMurmur2`).
    #[test]
    fn kafkas_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "{}", String::from_utf8_lossy(key));
        }
        assert_eq!(partition_of(b"21", 4), (-973_932_308i32 & 0x7fff_ffff) % 4);
    }
}
