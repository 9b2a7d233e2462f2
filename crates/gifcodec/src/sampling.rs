//! Which frames to sample: `K` instants spread over the animation's display time, not over its
//! frame indices (issue 16), so a frame that shows for two seconds counts as long as it shows and
//! a burst of 20 ms frames does not crowd out the rest.
//!
//! The display time of a frame is its graphic-control delay, with the browsers' rule for tiny
//! delays: a delay of 0 or 1 centisecond (≤ 10 ms) is shown for 10 cs (100 ms). Chromium
//! (`blink::ImageFrame` / `BitmapImage`: "We follow Firefox's behavior and use a duration of 100 ms
//! for any frames that specify a duration of <= 10 ms") and Firefox (`FrameTimeout`: "a delay of
//! 0 or 1 is treated as 100 ms") agree; many encoders write 0 meaning "as fast as possible".
//!
//! The instants are the centres of `K` equal slices of the total time, `(i + 0.5) · T / K`; the
//! frame on screen at an instant is sampled, once, with the number of instants that fell on it
//! (its share of the sampled display time). With equal delays this picks the same frames as
//! sampling by index (`floor((i + 0.5) · N / K)`), and every frame when `K ≥ N`.

/// The display time of a frame with graphic-control delay `delay_cs` (centiseconds), in
/// centiseconds: the browsers' rule (module docs) turns 0 and 1 into 10.
pub fn shown_cs(delay_cs: u16) -> u32 {
    if delay_cs <= 1 { 10 } else { u32::from(delay_cs) }
}

/// Frames to sample from an animation whose frames show for `shown` (display times, any unit,
/// each ≥ 1 — [`shown_cs`] of the delays): `(frame index, instants)` pairs in display order,
/// each frame once, the instants (≥ 1) summing to `k`. At most `min(k, shown.len())` pairs;
/// empty when `k == 0` or there are no frames.
pub fn sample_by_time(shown: &[u32], k: usize) -> Vec<(usize, u32)> {
    if k == 0 || shown.is_empty() {
        return Vec::new();
    }
    // Instant i falls on frame j when 2K·start_j ≤ (2i + 1)·T < 2K·end_j; in u128, exact.
    let total: u128 = shown.iter().map(|&d| u128::from(d.max(1))).sum();
    let k128 = k as u128;
    let mut out: Vec<(usize, u32)> = Vec::with_capacity(k.min(shown.len()));
    let (mut frame, mut end) = (0usize, u128::from(shown[0].max(1)));
    for i in 0..k128 {
        let t = (2 * i + 1) * total;
        while t >= 2 * k128 * end && frame + 1 < shown.len() {
            frame += 1;
            end += u128::from(shown[frame].max(1));
        }
        match out.last_mut() {
            Some((f, n)) if *f == frame => *n += 1,
            _ => out.push((frame, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sampling by index, as before issue 16 (the equal-delay case must agree with it).
    fn by_index(n: usize, k: usize) -> Vec<usize> {
        if k >= n {
            return (0..n).collect();
        }
        (0..k).map(|i| (2 * i + 1) * n / (2 * k)).collect()
    }

    #[test]
    fn equal_delays_sample_as_by_index() {
        for n in 1..40 {
            for k in 1..12 {
                for d in [1u32, 4, 10] {
                    let got = sample_by_time(&vec![d; n], k);
                    let frames: Vec<usize> = got.iter().map(|p| p.0).collect();
                    assert_eq!(frames, by_index(n, k), "n={n} k={k}");
                    assert_eq!(got.iter().map(|p| p.1).sum::<u32>(), k as u32);
                }
            }
        }
        assert_eq!(sample_by_time(&[10; 10], 4), [(1, 1), (3, 1), (6, 1), (8, 1)]);
    }

    #[test]
    fn a_long_pause_counts_as_long_as_it_shows() {
        // Frame 1 shows 3 s, the others 0.5 s (4 s in all): 8 instants at 0.25 s, 0.75 s, …:
        // one on frame 0, six on the pause, one on frame 2.
        assert_eq!(sample_by_time(&[50, 300, 50], 8), [(0, 1), (1, 6), (2, 1)]);
        // By index, the pause would be one frame of three, as much as each 0.5 s frame.
        assert_eq!(by_index(3, 8), [0, 1, 2]);
    }

    #[test]
    fn a_burst_of_short_frames_does_not_crowd_out_the_rest() {
        // 20 frames of 2 cs (0.4 s), then 4 frames of 50 cs (2 s): by time, 8 instants of
        // 0.3 s: one in the burst, seven over the long frames.
        let mut shown = vec![2u32; 20];
        shown.extend([50; 4]);
        let got = sample_by_time(&shown, 8);
        let in_burst: u32 = got.iter().filter(|p| p.0 < 20).map(|p| p.1).sum();
        assert_eq!(in_burst, 1, "{got:?}");
        assert_eq!(got.iter().filter(|p| p.0 >= 20).count(), 4, "every long frame is sampled: {got:?}");
        // By index, seven of the eight samples would be burst frames.
        assert_eq!(by_index(24, 8).iter().filter(|&&i| i < 20).count(), 7);
    }

    #[test]
    fn browsers_show_zero_and_one_centisecond_delays_for_100_ms() {
        assert_eq!(shown_cs(0), 10);
        assert_eq!(shown_cs(1), 10);
        assert_eq!(shown_cs(2), 2);
        assert_eq!(shown_cs(500), 500);
        // So a GIF of 0-delay frames with one 20 cs frame: that frame is twice as long as another.
        let shown: Vec<u32> = [0u16, 0, 20, 0].iter().map(|&d| shown_cs(d)).collect();
        assert_eq!(sample_by_time(&shown, 5), [(0, 1), (1, 1), (2, 2), (3, 1)]);
    }

    #[test]
    fn degenerate_inputs() {
        assert!(sample_by_time(&[], 8).is_empty());
        assert!(sample_by_time(&[10], 0).is_empty());
        assert_eq!(sample_by_time(&[10], 8), [(0, 8)], "a static GIF: one frame, all the time");
        assert_eq!(sample_by_time(&[0, 0], 3).iter().map(|p| p.1).sum::<u32>(), 3, "zero times count as 1");
    }
}
