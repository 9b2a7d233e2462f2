//! A cheap signature of each sampled frame, computed where the pixels are (issue 16): how much
//! the frame shows ([`luma_std`]) and a small-scale picture of it ([`FrameSignature::thumb`]) to
//! tell near-duplicate frames apart from new ones without running the model. What counts as
//! blank or as a duplicate is not decided here: the thresholds are the model's scoring data
//! (`autotag_model::skip`).

/// Side of the thumbnail grid: the frame is averaged over `THUMB × THUMB` blocks.
pub const THUMB: usize = 8;
/// Colour histogram bins: 4 levels per channel (the top 2 bits of each of R, G, B).
pub const HIST_BINS: usize = 64;

/// What the decoder tells about one sampled frame besides its pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameSignature {
    /// [`luma_std`] of the frame (0–255 units): 0 for a uniform frame.
    pub luma_std: f32,
    /// The frame's mean RGB over an 8 × 8 grid of equal blocks, row-major, `[r, g, b]` per
    /// block (192 bytes): the "small-scale difference" of ffmpeg's `mpdecimate`, at a scale where
    /// dithering, palette noise and compression noise average out.
    pub thumb: [u8; THUMB * THUMB * 3],
    /// Share of the frame's pixels in each of 64 colour bins (4 levels per channel): where the
    /// thumbnail says "moved" for a pan or a zoom over one picture, the colours stay.
    pub hist: [f32; HIST_BINS],
}

impl FrameSignature {
    /// The signature of one `side × side` packed-RGB frame (`rgb.len() == side² × 3`; a
    /// shorter buffer is read as far as it goes, a longer one up to `side²` pixels).
    pub fn of(rgb: &[u8], side: usize) -> Self {
        let mut sums = [0u64; THUMB * THUMB * 3];
        let mut counts = [0u64; THUMB * THUMB];
        let mut bins = [0u64; HIST_BINS];
        let side = side.max(1);
        for (i, px) in rgb.chunks_exact(3).take(side * side).enumerate() {
            bins[usize::from(px[0] >> 6) * 16 + usize::from(px[1] >> 6) * 4 + usize::from(px[2] >> 6)] += 1;
            let (y, x) = (i / side, i % side);
            let b = (y * THUMB / side) * THUMB + x * THUMB / side;
            counts[b] += 1;
            for c in 0..3 {
                sums[b * 3 + c] += u64::from(px[c]);
            }
        }
        let mut thumb = [0u8; THUMB * THUMB * 3];
        for (i, t) in thumb.iter_mut().enumerate() {
            let n = counts[i / 3];
            // A mean of u8 values fits a u8; an empty block (side < 8) is 0.
            *t = (sums[i] + n / 2).checked_div(n).map_or(0, |m| u8::try_from(m).unwrap_or(u8::MAX));
        }
        let pixels: u64 = bins.iter().sum();
        let mut hist = [0f32; HIST_BINS];
        if pixels > 0 {
            for (h, &b) in hist.iter_mut().zip(&bins) {
                *h = b as f32 / pixels as f32;
            }
        }
        Self { luma_std: luma_std(rgb), thumb, hist }
    }

    /// How different two frames look: the mean absolute difference of their thumbnails, in
    /// 0–255 units (0: the same picture at this scale; a cut between two photos measures tens).
    pub fn distance(&self, other: &Self) -> f32 {
        let sum: u32 = self.thumb.iter().zip(&other.thumb).map(|(a, b)| u32::from(a.abs_diff(*b))).sum();
        sum as f32 / self.thumb.len() as f32
    }
}

impl FrameSignature {
    /// How different two frames' colours are, wherever they are: half the L1 distance of their
    /// histograms, in `[0, 1]` (0: the same colour shares; 1: no colour in common).
    pub fn histogram_distance(&self, other: &Self) -> f32 {
        0.5 * self.hist.iter().zip(&other.hist).map(|(a, b)| (a - b).abs()).sum::<f32>()
    }
}

/// The standard deviation of a frame's luma (ITU-R BT.601 weights), in 0–255 units: how much a
/// frame shows. A uniform frame (all black, white, grey; a fade's darkest step; a 1×1 GIF scaled
/// up) is 0. `rgb` is packed RGB (`len` a multiple of 3); an empty frame is 0.
pub fn luma_std(rgb: &[u8]) -> f32 {
    let n = rgb.len() / 3;
    if n == 0 {
        return 0.0;
    }
    let (mut sum, mut sq) = (0f64, 0f64);
    for px in rgb.chunks_exact(3) {
        let y = 0.299 * f64::from(px[0]) + 0.587 * f64::from(px[1]) + 0.114 * f64::from(px[2]);
        sum += y;
        sq += y * y;
    }
    let mean = sum / n as f64;
    ((sq / n as f64 - mean * mean).max(0.0)).sqrt() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_std_of_uniform_and_two_tone_frames() {
        assert_eq!(luma_std(&[]), 0.0);
        assert_eq!(luma_std(&[7, 7, 7].repeat(100)), 0.0);
        // Half black, half white: luma 0 and 255 (weights sum to 1), std 127.5.
        let mut two = [0u8, 0, 0].repeat(50);
        two.extend([255u8, 255, 255].repeat(50));
        assert!((luma_std(&two) - 127.5).abs() < 1e-3, "{}", luma_std(&two));
    }

    #[test]
    fn thumbnails_average_blocks_and_distance_is_their_mean_difference() {
        // 16 × 16: left half red, right half blue → each 2 × 2 block is one colour.
        let side = 16;
        let mut rgb = Vec::new();
        for _y in 0..side {
            for x in 0..side {
                rgb.extend(if x < 8 { [255u8, 0, 0] } else { [0, 0, 255] });
            }
        }
        let s = FrameSignature::of(&rgb, side);
        assert_eq!(&s.thumb[..3], &[255, 0, 0]);
        assert_eq!(&s.thumb[7 * 3..8 * 3], &[0, 0, 255]);
        assert_eq!(s.distance(&s), 0.0);
        // Mirrored: every block differs by 255 in two channels of three.
        let mirrored: Vec<u8> = rgb.chunks(side * 3).flat_map(|row| row.chunks(3).rev().flatten().copied()).collect();
        let m = FrameSignature::of(&mirrored, side);
        assert!((s.distance(&m) - 170.0).abs() < 1e-3, "{}", s.distance(&m));
        // …yet the same colours: half red, half blue.
        assert_eq!(s.histogram_distance(&m), 0.0);
        assert!((s.hist[3 * 16] - 0.5).abs() < 1e-6 && (s.hist[3] - 0.5).abs() < 1e-6);
        let green = FrameSignature::of(&[0u8, 255, 0].repeat(side * side), side);
        assert!((s.histogram_distance(&green) - 1.0).abs() < 1e-6);
        // Side not a multiple of 8, and a short buffer, do not panic.
        let odd = FrameSignature::of(&[9u8; 5 * 5 * 3], 5);
        assert!(odd.thumb.iter().all(|&v| v == 9 || v == 0));
        let _ = FrameSignature::of(&[1, 2], 4);
    }
}
