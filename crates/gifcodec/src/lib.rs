//! GIF decoding and frame sampling: bytes from S3 in, `K` composited, resized RGB frames out.
//!
//! **Owns** the GIF codec (block scan, LZW, compositing, sampling, resizing) and its resource
//! limits ([`DecodeLimits`], the `[limits]` config section). **Never imports** anything of
//! autotag's: it is a leaf crate, fuzzed on its own (`fuzz/`) and testable on a bare clone
//! (`cargo test -p gifcodec`). Its error codes ([`DecodeError::reason`]) match the dead-letter
//! `Reason` codes of `autotag-contract`; the worker maps them exhaustively.
//!
//! # Design
//!
//! GIF files are untrusted input and a classic decompression-bomb vector (image-rs #1052: a
//! 469-byte GIF that used more than 7 GB; Pillow CVE-2022-45198). A GIF header is a few bytes,
//! but it can declare a 65535×65535 logical screen (4.3 Gpx) or tens of thousands of frames.
//! So nothing proportional to the image size is allocated before every limit has been checked,
//! and the work done afterwards is bounded by those same limits.
//!
//! Decoding is therefore done in **two passes** over the in-memory bytes:
//!
//! 1. **Scan** (the private `scan` module, our own block parser): walk every block of the file
//!    without LZW decompression. This counts the frames and records each frame's rectangle,
//!    disposal method, transparency, palette and data offsets, and applies the browsers' canvas
//!    rule (below). Every limit in [`DecodeLimits`] is enforced here — screen size (also after
//!    the canvas grows), canvas pixels, frame count, per-frame pixels and the sum of frame areas
//!    that LZW would have to produce. Structural damage (truncation, stray bytes) is found here
//!    too, so a hostile file costs one cheap linear walk and a few bytes per frame.
//! 2. **Render**: choose `K` sample indices spread over the animation, then decode and composite
//!    frames in order only up to the last sampled index. Only sampled frames are resized and
//!    copied to the output. A frame that paints the whole screen opaquely (full-screen
//!    rectangle, no transparent index, disposal not "previous") makes everything before it
//!    irrelevant, so when such a *key frame* lies between two samples the frames before it are
//!    skipped without LZW decoding (full-frame GIFs then decode only the sampled frames).
//!
//! The render pass takes each needed frame's compressed bytes at the offsets the scan recorded
//! and decompresses them with the small LZW decoder in the private `lzw` module. That decoder stores dictionary
//! entries as (position, length) references into the frame's own output and decodes a code as
//! a short forward copy; on the test corpus it is 1.7–4× faster than the crate's decompressor,
//! which took ~80% of the run time. Its output is checked against a textbook LZW decoder and
//! the `gif` crate's on every corpus frame and on thousands of random streams (unit tests).
//!
//! Peak memory of one call is about 7 bytes per canvas pixel at most (RGB canvas, one frame's
//! indices, the region saved for "previous" disposal, one frame's compressed data) plus the
//! output, i.e. ≤ ~115 MiB with the default limits and ~1 MiB for a 480×270 GIF.
//!
//! # Compositing
//!
//! Compositing is done here into an RGB canvas of the logical-screen size, row by row, touching
//! only the part of the frame rectangle that lies on the screen. The rules follow Chromium and
//! Firefox; `docs/conformance.md` gives the source of each and the conformance corpus
//! (`testdata/conformance/`) checks them pixel by pixel:
//!
//! * palette: the frame's local colour table if present, else the global one; indices beyond
//!   the table's length, and every index of a frame with no colour table at all, are painted
//!   black;
//! * transparency: pixels equal to the frame's transparent index leave the canvas unchanged;
//! * interlaced frames are de-interlaced while decoding (rows arrive in the 4-pass order);
//! * **canvas rule** (Firefox `nsGIFDecoder2::ReadImageDescriptor`, shared by older
//!   WebKit/Chromium `GIFImageReader`): when the first frame is wider or taller than the logical
//!   screen (or the file is GIF87a), the screen takes the first frame's size and that frame's
//!   offset becomes (0, 0); the grown screen must pass the same limits. Later frames are clipped
//!   to the screen; one entirely outside it draws nothing. A frame with a zero width or height
//!   takes the screen's size;
//! * image data that ends before the frame rectangle is filled is drawn as far as it goes; the
//!   rest of the rectangle is left as it was (transparent), as browsers do;
//! * disposal (applied after the frame is shown): *unspecified*/*keep* (and the undefined values
//!   5–7) leave the canvas, *background* clears the frame rectangle to transparent (like
//!   browsers do; the background-colour index is ignored), *previous* (3, and 4 as in both
//!   browsers) restores the rectangle saved before the frame was drawn.
//!
//! The canvas starts fully transparent. **Transparent (never painted or cleared) pixels are
//! black (0, 0, 0) in the output**, so the canvas needs no alpha channel: "transparent" and
//! "black" are the same bytes.
//!
//! A logical screen with a zero width or height (seen in some old encoders) grows to the first
//! frame by the canvas rule; if the first frame is empty too the file is rejected with
//! [`DecodeError::EmptyImage`].
//!
//! # Resizing
//!
//! Each sampled canvas is resized so that its shorter side becomes `size`, then centre-cropped
//! to `size × size` (the ImageNet evaluation convention). This is done in one
//! `fast_image_resize` call with a source crop box (bilinear convolution, i.e. antialiased like
//! Pillow's `BILINEAR`), writing straight into the output buffer.
//!
//! # Strictness
//!
//! (Browsers show what they can; autotag tags what a browser shows. See `docs/conformance.md`.)
//!
//! * The end of data between blocks ends the file (the trailer is optional), and so does a byte
//!   that starts no block (Chromium and Firefox: "proceed as if the file were correctly
//!   terminated"). Extensions with unknown labels are skipped.
//! * **One rule for cut files**: data that ends inside a block after at least one complete frame
//!   keeps the frames (the cut one drawn as far as its data goes) and sets
//!   [`SampledFrames::warnings`] to `["truncated"]`; with no complete frame it is
//!   [`DecodeError::Truncated`]. A clean end before any image, or only junk, is
//!   [`DecodeError::NoFrames`] / [`DecodeError::InvalidBlock`].
//! * A frame whose LZW data holds an invalid code is [`DecodeError::CorruptData`]; an LZW
//!   minimum code size outside 1..=11 is [`DecodeError::LzwCodeSize`]. Extra LZW data after the
//!   rectangle is filled is ignored, and the LZW end code is not required (many encoders omit
//!   it).
//! * Frames after the last sampled one, and frames skipped because a later key frame repaints
//!   the whole screen, are never LZW-decoded, so damage inside their image data is not detected.
//!
//! Output is deterministic for a given input and CPU (the resizer picks SIMD code paths at run
//! time; different instruction sets may differ by rounding in the last bit).

use fast_image_resize as fr;

mod lzw;
mod render;
pub mod sampling;
mod scan;
pub mod signature;
#[cfg(test)]
mod tests;

use render::render;
use scan::scan;
pub use signature::{FrameSignature, luma_std};

/// Resource limits enforced by the scan pass, before any canvas is allocated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeLimits {
    /// Largest accepted logical-screen width in pixels. Bounds the canvas row length. Default
    /// 4096: far above anything a tagging model needs (frames are shrunk to 224 px), while the
    /// GIF format itself allows 65535.
    pub max_width: u32,
    /// Largest accepted logical-screen height in pixels. Default 4096, as for `max_width`.
    pub max_height: u32,
    /// Largest accepted logical-screen area (width × height). The RGB canvas costs 3 bytes per
    /// pixel, so the default 16 777 216 (a 4096×4096 screen) caps it at 48 MiB. A single frame
    /// rectangle may not be larger than this either.
    pub max_canvas_pixels: u64,
    /// Largest accepted number of frames. Bounds the scan pass's per-frame bookkeeping and the
    /// render pass's length. Default 5000: long real recordings (hundreds to a few thousand
    /// frames) pass, frame-count bombs (tens of thousands of tiny frames) fail.
    pub max_frames: u32,
    /// Largest accepted sum of frame-rectangle areas over all frames of the file, i.e. the
    /// number of pixels a full decode would have to LZW-decompress. This bounds the CPU time of
    /// the render pass, whatever the file size. Default 400 000 000 (e.g. 3000 full 480×270
    /// frames, or 100 full 2000×2000 ones): at most about 1.5 s of decoding and compositing on
    /// one core (~4 ns per pixel measured on photo GIFs).
    pub max_decoded_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_width: 4096,
            max_height: 4096,
            max_canvas_pixels: 16_777_216,
            max_frames: 5000,
            max_decoded_pixels: 400_000_000,
        }
    }
}

/// What to sample: `frames` (K) frames, each resized and cropped to `size × size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleSpec {
    /// Number of frames to sample (K). Must be in `1..=MAX_SAMPLE_FRAMES`.
    pub frames: usize,
    /// Side of the square output frames in pixels (224 for ImageNet models). Must be in
    /// `1..=MAX_SAMPLE_SIZE`.
    pub size: u32,
}

/// Largest accepted [`SampleSpec::frames`].
pub const MAX_SAMPLE_FRAMES: usize = 1024;
/// Largest accepted [`SampleSpec::size`].
pub const MAX_SAMPLE_SIZE: u32 = 4096;
/// Largest accepted output buffer (`min(K, frames) * size * size * 3`), 1 GiB.
const MAX_OUTPUT_BYTES: usize = 1 << 30;

/// Sampled frames, ready to be normalised into an NHWC / NCHW tensor.
pub struct SampledFrames {
    /// `count * size * size * 3` bytes: RGB, row-major, one frame after the other (NHWC).
    pub rgb: Vec<u8>,
    /// Number of frames in `rgb`: the distinct frames on screen at the `K` sampled instants,
    /// at most `min(K, total_frames)` ([`sampling`]).
    pub count: usize,
    /// Index of each sampled frame in the animation, increasing.
    pub indices: Vec<usize>,
    /// Each sampled frame's share of the sampled display time (instants that fell on it / `K`;
    /// the shares sum to 1): how much it weighs in the GIF's scores.
    pub shown: Vec<f32>,
    /// Each sampled frame's [`FrameSignature`] (how much it shows, a thumbnail to find
    /// near-duplicates).
    pub signatures: Vec<FrameSignature>,
    /// Number of frames in the animation.
    pub total_frames: usize,
    /// Logical screen width (after the zero-size fallback, see the module docs).
    pub width: u32,
    /// Logical screen height.
    pub height: u32,
    /// What was wrong with a file that still decoded, as stable codes: `"truncated"` when the
    /// data ended inside a block after at least one complete frame (the frames before the cut
    /// are shown, the cut one as far as its data goes). Empty for a clean file.
    pub warnings: Vec<&'static str>,
}

impl std::fmt::Debug for SampledFrames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampledFrames")
            .field("rgb_len", &self.rgb.len())
            .field("count", &self.count)
            .field("indices", &self.indices)
            .field("shown", &self.shown)
            .field("total_frames", &self.total_frames)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// Why a GIF could not be decoded. [`DecodeError::reason`] gives the dead-letter code.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The object has zero bytes.
    #[error("object is empty (0 bytes)")]
    Empty,
    /// The data does not start with `GIF87a` or `GIF89a`.
    #[error("not a GIF: missing GIF87a/GIF89a signature")]
    NotGif,
    /// The data ends inside a block (header, extension, image descriptor, palette or image
    /// data) before any frame is complete. (A cut after a complete frame decodes, with the
    /// warning `truncated`.)
    #[error("GIF data is truncated before the first frame is complete")]
    Truncated,
    /// The file contains no image (header only, or header and trailer).
    #[error("GIF contains no frames")]
    NoFrames,
    /// A frame's LZW data holds a code that is neither defined nor the next to be defined.
    #[error("corrupt GIF data: {0}")]
    CorruptData(String),
    /// A frame's LZW minimum code size is outside 1..=11 (Chromium accepts 0..=11, Firefox
    /// 0..=12; 0 and 12 leave no room for a usable code table and are not produced by encoders).
    #[error("frame {frame}: invalid LZW minimum code size {size}")]
    LzwCodeSize {
        /// Zero-based frame index.
        frame: usize,
        /// The minimum code size byte.
        size: u8,
    },
    /// A byte that starts no GIF block (not `!`, `,` or `;`) where the first block after the
    /// header should be. (After a frame, such a byte ends the file, as in browsers.)
    #[error("no GIF block at offset {offset} (byte 0x{byte:02x}) before the first frame")]
    InvalidBlock {
        /// Byte offset in the file.
        offset: usize,
        /// The byte found there.
        byte: u8,
    },
    /// A [`DecodeLimits`] limit was exceeded. `what` names the quantity: `screen_width`,
    /// `screen_height`, `canvas_pixels`, `frames`, `frame_pixels`, `decoded_pixels`.
    #[error("GIF too large: {what} = {value} exceeds the limit {limit}")]
    TooLarge {
        /// Which quantity exceeded its limit.
        what: &'static str,
        /// Its value (for `frames` and `decoded_pixels`: the value when the scan stopped).
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// Zero-sized logical screen and only zero-sized frames: there is no pixel to show.
    #[error("GIF has no pixels (zero-sized logical screen and frames)")]
    EmptyImage,
    /// The caller's [`SampleSpec`] is out of range (a configuration error, not bad input).
    #[error("invalid sample spec: {0}")]
    InvalidSpec(&'static str),
    /// The resizer failed (a bug: sizes are validated before resizing).
    #[error("resize failed: {0}")]
    Resize(String),
}

impl DecodeError {
    /// Stable dead-letter reason code (snake_case), one of the codes listed in
    /// `schemas/dead-letter.schema.json`: `empty_object`, `not_a_gif`, `truncated`, `no_frames`,
    /// `corrupt_image_data`, `invalid_lzw_code_size`, `invalid_block`, `too_large`,
    /// `decode_failed`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty_object",
            Self::NotGif => "not_a_gif",
            Self::Truncated => "truncated",
            Self::NoFrames => "no_frames",
            Self::CorruptData(_) => "corrupt_image_data",
            Self::LzwCodeSize { .. } => "invalid_lzw_code_size",
            Self::InvalidBlock { .. } => "invalid_block",
            Self::TooLarge { .. } => "too_large",
            // Nothing to show: the same code as a GIF without frames.
            Self::EmptyImage => "no_frames",
            // Not the input's fault (configuration or a bug): the generic decode code.
            Self::InvalidSpec(_) | Self::Resize(_) => "decode_failed",
        }
    }
}

/// Decode `bytes` as a GIF and return the frames on screen at K instants spread over the
/// animation's display time ([`sampling`]), each composited correctly, resized (shorter side to
/// `spec.size`, centre crop to `size × size`) and signed ([`FrameSignature`]).
///
/// With equal frame delays the sampled indices are `floor((i + 0.5) * N / K)` for `i in 0..K`
/// when `K < N`, and all frames when `K >= N`.
pub fn decode_and_sample(bytes: &[u8], spec: SampleSpec, limits: &DecodeLimits) -> Result<SampledFrames, DecodeError> {
    if spec.frames == 0 || spec.frames > MAX_SAMPLE_FRAMES {
        return Err(DecodeError::InvalidSpec("frames must be in 1..=1024"));
    }
    if spec.size == 0 || spec.size > MAX_SAMPLE_SIZE {
        return Err(DecodeError::InvalidSpec("size must be in 1..=4096"));
    }
    let scan = scan(bytes, limits)?;
    let shown: Vec<u32> = scan.frames.iter().map(|f| sampling::shown_cs(f.delay_cs)).collect();
    let samples = sampling::sample_by_time(&shown, spec.frames);
    let indices: Vec<usize> = samples.iter().map(|s| s.0).collect();
    let shown: Vec<f32> = samples.iter().map(|s| s.1 as f32 / spec.frames as f32).collect();
    let side = spec.size as usize;
    let frame_bytes = side * side * 3;
    let total_bytes = frame_bytes
        .checked_mul(indices.len())
        .filter(|&b| b <= MAX_OUTPUT_BYTES)
        .ok_or(DecodeError::InvalidSpec("output larger than 1 GiB"))?;
    let mut rgb = vec![0u8; total_bytes];

    let mut resizer = fr::Resizer::new();
    let options = fr::ResizeOptions::new()
        .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear))
        .fit_into_destination(Some((0.5, 0.5)));
    let (w, h) = (scan.width, scan.height);
    let mut emit = |slot: usize, canvas: &[u8]| {
        let out = rgb
            .get_mut(slot * frame_bytes..(slot + 1) * frame_bytes)
            .ok_or_else(|| DecodeError::Resize("output slot out of range".into()))?;
        let src = fr::images::ImageRef::new(w, h, canvas, fr::PixelType::U8x3)
            .map_err(|e| DecodeError::Resize(e.to_string()))?;
        let mut dst = fr::images::Image::from_slice_u8(spec.size, spec.size, out, fr::PixelType::U8x3)
            .map_err(|e| DecodeError::Resize(e.to_string()))?;
        resizer.resize(&src, &mut dst, &options).map_err(|e| DecodeError::Resize(e.to_string()))
    };
    if !render(bytes, &scan, &indices, 0, true, &mut emit)? {
        render(bytes, &scan, &indices, 0, false, &mut emit)?;
    }

    let signatures = rgb.chunks(frame_bytes).map(|f| FrameSignature::of(f, side)).collect();
    let warnings = if scan.truncated { vec!["truncated"] } else { Vec::new() };
    Ok(SampledFrames {
        rgb,
        count: indices.len(),
        indices,
        shown,
        signatures,
        total_frames: scan.frames.len(),
        width: w,
        height: h,
        warnings,
    })
}

/// `min(k, n)` distinct increasing frame indices spread over `0..n` when every frame shows
/// equally long: the centres of `k` equal slices, `floor((i + 0.5) * n / k)`; all frames when
/// `k >= n`. (Tests: what sampling by time gives for equal delays.)
#[cfg(test)]
pub(crate) fn sample_indices(n: usize, k: usize) -> Vec<usize> {
    sampling::sample_by_time(&vec![10; n], k).into_iter().map(|s| s.0).collect()
}

/// Composites frames `0..=index` and returns the RGB canvas (`width * height * 3` bytes) as
/// shown while frame `index` is displayed (before its disposal). Test/debug probe that shares
/// the production code path, key-frame skipping included.
#[allow(dead_code)]
pub(crate) fn composite_frame(
    bytes: &[u8],
    index: usize,
    limits: &DecodeLimits,
) -> Result<(u32, u32, Vec<u8>), DecodeError> {
    let scan = scan(bytes, limits)?;
    let out = composite_with_clear(bytes, &scan, index, 0)?;
    Ok((scan.width, scan.height, out))
}

fn composite_with_clear(bytes: &[u8], scan: &scan::Scan, index: usize, clear: u8) -> Result<Vec<u8>, DecodeError> {
    if index >= scan.frames.len() {
        return Err(DecodeError::InvalidSpec("frame index out of range"));
    }
    let mut out = Vec::new();
    let mut grab = |_: usize, canvas: &[u8]| {
        out = canvas.to_vec();
        Ok(())
    };
    if !render(bytes, scan, &[index], clear, true, &mut grab)? {
        render(bytes, scan, &[index], clear, false, &mut grab)?;
    }
    Ok(out)
}

/// The first `max_frames` frames of the animation as RGBA (`width * height * 4` bytes each,
/// alpha 0 or 255) as shown while that frame is displayed; `(width, height, frames)`. A
/// conformance probe (tests, `examples/probe.rs`): the production canvas has no alpha channel
/// (transparent is black), so each frame is rendered twice with transparent pixels set to 0x00
/// and to 0xFF; a pixel that differs is transparent. Costs O(frames²) decoding: for small files.
pub fn composite_rgba(
    bytes: &[u8],
    limits: &DecodeLimits,
    max_frames: usize,
) -> Result<(u32, u32, Vec<Vec<u8>>), DecodeError> {
    let scan = scan(bytes, limits)?;
    let n = scan.frames.len().min(max_frames);
    let mut frames = Vec::with_capacity(n);
    for i in 0..n {
        let (a, b) = (composite_with_clear(bytes, &scan, i, 0)?, composite_with_clear(bytes, &scan, i, 0xFF)?);
        let mut rgba = Vec::with_capacity(a.len() / 3 * 4);
        for (p, q) in a.chunks_exact(3).zip(b.chunks_exact(3)) {
            if p == q {
                rgba.extend_from_slice(&[p[0], p[1], p[2], 255]);
            } else {
                rgba.extend_from_slice(&[0, 0, 0, 0]);
            }
        }
        frames.push(rgba);
    }
    Ok((scan.width, scan.height, frames))
}
