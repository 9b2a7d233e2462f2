//! Pass 2: decode and composite frames in order up to the last sampled one, skipping the
//! frames that a later key frame repaints, and hand each sampled canvas to the caller.

use crate::DecodeError;
use crate::lzw;
use crate::scan::{Disposal, FrameMeta, Scan, gather_sub_blocks};
/// Which frames in `0..=last sample` must be decoded: for each sample `s`, the frames from the
/// last key frame at or before `s` (or frame 0) up to `s`.
pub(crate) fn plan(scan: &Scan, samples: &[usize]) -> Vec<bool> {
    let Some(&last) = samples.last() else {
        return Vec::new();
    };
    let mut needed = vec![false; last + 1];
    let mut latest_key = 0usize; // latest key frame at or before j (0 if none: canvas starts blank)
    let mut next_unmarked = 0usize;
    let mut samples = samples.iter().copied().peekable();
    for (j, f) in scan.frames.iter().enumerate().take(last + 1) {
        if f.is_key_frame(scan.width, scan.height) {
            latest_key = j;
        }
        if samples.next_if_eq(&j).is_some() {
            for n in needed.iter_mut().take(j + 1).skip(latest_key.max(next_unmarked)) {
                *n = true;
            }
            next_unmarked = j + 1;
        }
    }
    needed
}

/// 256-entry palette lookup; indices past the end of the colour table are black.
pub(crate) fn build_lut(palette: &[u8], lut: &mut [[u8; 3]; 256]) {
    *lut = [[0; 3]; 256];
    for (entry, rgb) in lut.iter_mut().zip(palette.chunks_exact(3)) {
        entry.copy_from_slice(rgb);
    }
}

#[inline]
pub(crate) fn composite_row(dst: &mut [u8], src: &[u8], lut: &[[u8; 3]; 256], transparent: Option<u8>) {
    match transparent {
        None => {
            for (d, &i) in dst.chunks_exact_mut(3).zip(src) {
                d.copy_from_slice(&lut[usize::from(i)]);
            }
        }
        Some(t) => {
            // Optimised GIFs leave unchanged areas transparent, often in long runs, so 8 pixels
            // are classified at once: all transparent (nothing to write), none (a plain copy),
            // or mixed (the branch-free select below).
            let splat = u64::from_ne_bytes([t; 8]);
            let (src8, src_rest) = src.as_chunks::<8>();
            let (dst8, dst_rest) = dst.as_chunks_mut::<24>();
            for (d, s) in dst8.iter_mut().zip(src8) {
                let x = u64::from_ne_bytes(*s) ^ splat; // a zero byte where a pixel is transparent
                if x == 0 {
                    continue;
                }
                let has_transparent = x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080 != 0;
                if has_transparent {
                    select_row(d, s, lut, t);
                } else {
                    for (d, &i) in d.chunks_exact_mut(3).zip(s) {
                        d.copy_from_slice(&lut[usize::from(i)]);
                    }
                }
            }
            select_row(dst_rest, src_rest, lut, t);
        }
    }
}

/// Paints the non-transparent pixels of `src` over `dst`, without a branch per pixel:
/// optimised GIFs mix transparent and opaque pixels in patterns a branch predictor cannot
/// follow (this loop was half the run time with a branch).
#[inline(always)]
pub(crate) fn select_row(dst: &mut [u8], src: &[u8], lut: &[[u8; 3]; 256], t: u8) {
    for (d, &i) in dst.chunks_exact_mut(3).zip(src) {
        let new = lut[usize::from(i)];
        let paint = 0u8.wrapping_sub(u8::from(i != t)); // 0xFF: paint, 0x00: keep
        d[0] = (new[0] & paint) | (d[0] & !paint);
        d[1] = (new[1] & paint) | (d[1] & !paint);
        d[2] = (new[2] & paint) | (d[2] & !paint);
    }
}

pub(crate) const INTERLACE_PASSES: [(u32, usize); 4] = [(0, 8), (4, 8), (2, 4), (1, 2)];
pub(crate) const PROGRESSIVE: [(u32, usize); 1] = [(0, 1)];

/// Pass 2: decode and composite frames up to the last sample; call `emit(slot, canvas)` for
/// each sampled frame (slot = position in `samples`), before that frame's disposal.
///
/// `clear` is the byte value of transparent canvas pixels (0 in production: transparent is
/// black; the RGBA test probe renders twice with two values to find the transparent pixels).
/// With `key_frames`, frames that a later key frame repaints are skipped; returns `Ok(false)`
/// if a key frame turned out not to repaint the whole screen (its LZW data ended early) after
/// frames were skipped: the caller then renders again without key-frame skipping.
pub(crate) fn render(
    bytes: &[u8],
    scan: &Scan,
    samples: &[usize],
    clear: u8,
    key_frames: bool,
    mut emit: impl FnMut(usize, &[u8]) -> Result<(), DecodeError>,
) -> Result<bool, DecodeError> {
    let needed =
        if key_frames { plan(scan, samples) } else { samples.last().map_or(Vec::new(), |&l| vec![true; l + 1]) };
    if needed.is_empty() {
        return Ok(true);
    }
    let (sw, sh) = (scan.width, scan.height);
    let stride = sw as usize * 3;
    // The scan checked sw * sh <= max_canvas_pixels and every frame area <= max_canvas_pixels.
    let canvas_pixels = u64::from(sw) * u64::from(sh);
    let too_big = || DecodeError::InvalidSpec("canvas larger than the address space");
    let canvas_len = usize::try_from(canvas_pixels * 3).map_err(|_| too_big())?;
    let mut canvas = vec![clear; canvas_len];
    let drawn = |f: &FrameMeta| if f.clip(sw, sh).is_some() { f.area() } else { 0 };
    let max_area = scan.frames.iter().zip(&needed).filter(|(_, n)| **n).map(|(f, _)| drawn(f)).max().unwrap_or(0);
    let max_area = usize::try_from(max_area).map_err(|_| too_big())?;
    let mut indices = lzw::FrameBuffer::new(max_area);
    let mut lzw = lzw::Decoder::new();
    let mut saved: Vec<u8> = Vec::new();
    // One frame's LZW data, its sub-blocks concatenated (at most the file's size).
    let mut compressed: Vec<u8> = Vec::new();

    let mut global_lut = [[0u8; 3]; 256];
    if let Some((at, len)) = scan.global_palette {
        build_lut(&bytes[at..at + len], &mut global_lut);
    }
    let mut local_lut = [[0u8; 3]; 256];
    let mut next_sample = 0usize;
    let mut skipped_any = false;

    for (j, (&need, meta)) in needed.iter().zip(&scan.frames).enumerate() {
        if !need {
            skipped_any = true;
            continue;
        }
        let lut = match meta.palette {
            Some((at, len)) => {
                build_lut(&bytes[at..at + len], &mut local_lut);
                &local_lut
            }
            None => &global_lut,
        };
        let clip = meta.clip(sw, sh);
        let fw = usize::from(meta.width);
        let area = fw * usize::from(meta.height);
        let mut decoded = 0;
        if clip.is_some() && area > 0 {
            gather_sub_blocks(bytes, meta.data + 1, &mut compressed);
            decoded = lzw.decode(bytes[meta.data], &compressed, &mut indices, area).map_err(|e| match e {
                lzw::Error::CodeSize(size) => DecodeError::LzwCodeSize { frame: j, size },
                e => DecodeError::CorruptData(format!("frame {j}: {e}")),
            })?;
            if decoded < area && skipped_any && meta.is_key_frame(sw, sh) {
                return Ok(false);
            }
        }

        if let (Disposal::Previous, Some((x0, y0, x1, y1))) = (meta.dispose, clip) {
            saved.clear();
            for y in y0..y1 {
                let at = y as usize * stride;
                saved.extend_from_slice(&canvas[at + x0 as usize * 3..at + x1 as usize * 3]);
            }
        }

        if let (Some((x0, y0, x1, y1)), true) = (clip, decoded > 0) {
            let pixels = indices.output(decoded);
            let passes: &[(u32, usize)] = if meta.interlaced { &INTERLACE_PASSES } else { &PROGRESSIVE };
            let src_from = (x0 - u32::from(meta.left)) as usize;
            let src_len = (x1 - x0) as usize;
            // Rows are stored in stream order; the interlace passes map them to frame rows.
            // Image data that ends early leaves a last, partial row: drawn as far as it goes.
            let mut frame_rows = passes.iter().flat_map(|&(start, step)| (start..u32::from(meta.height)).step_by(step));
            let rows = pixels.chunks_exact(fw);
            let partial = rows.remainder();
            for (line, fy) in rows.zip(&mut frame_rows) {
                let cy = u32::from(meta.top) + fy;
                if cy < y0 || cy >= y1 {
                    continue;
                }
                let at = cy as usize * stride;
                let dst = &mut canvas[at + x0 as usize * 3..at + x1 as usize * 3];
                composite_row(dst, &line[src_from..src_from + src_len], lut, meta.transparent);
            }
            if let (Some(fy), true) = (frame_rows.next(), partial.len() > src_from) {
                let cy = u32::from(meta.top) + fy;
                if cy >= y0 && cy < y1 {
                    let n = (partial.len() - src_from).min(src_len);
                    let at = cy as usize * stride + x0 as usize * 3;
                    composite_row(&mut canvas[at..at + n * 3], &partial[src_from..src_from + n], lut, meta.transparent);
                }
            }
        }

        if samples.get(next_sample) == Some(&j) {
            emit(next_sample, &canvas)?;
            next_sample += 1;
        }

        if let Some((x0, y0, x1, y1)) = clip {
            let span = (x1 - x0) as usize * 3;
            match meta.dispose {
                Disposal::Background => {
                    for y in y0..y1 {
                        let at = y as usize * stride + x0 as usize * 3;
                        canvas[at..at + span].fill(clear);
                    }
                }
                Disposal::Previous => {
                    for (y, src) in (y0..y1).zip(saved.chunks_exact(span)) {
                        let at = y as usize * stride + x0 as usize * 3;
                        canvas[at..at + span].copy_from_slice(src);
                    }
                }
                Disposal::Any | Disposal::Keep => {}
            }
        }
    }
    Ok(true)
}
