//! Pass 1: walk every block of the file without LZW decompression, record each frame's
//! rectangle, disposal and transparency, and enforce every [`DecodeLimits`] limit before
//! anything proportional to the image is allocated (see the crate docs).

use std::io;

use gif::{ColorOutput, DecodeOptions, DecodingError, DisposalMethod};

use crate::{DecodeError, DecodeLimits};
/// Per-frame facts recorded by the scan pass.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameMeta {
    pub(crate) left: u16,
    pub(crate) top: u16,
    pub(crate) width: u16,
    pub(crate) height: u16,
    pub(crate) has_transparency: bool,
    pub(crate) dispose: DisposalMethod,
}

impl FrameMeta {
    pub(crate) fn area(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// The part of the frame rectangle on a `sw × sh` screen: `(x0, y0, x1, y1)`, exclusive
    /// ends; `None` if it is empty.
    pub(crate) fn clip(&self, sw: u32, sh: u32) -> Option<(u32, u32, u32, u32)> {
        let x0 = u32::from(self.left);
        let y0 = u32::from(self.top);
        let x1 = (x0 + u32::from(self.width)).min(sw);
        let y1 = (y0 + u32::from(self.height)).min(sh);
        (x0 < x1 && y0 < y1).then_some((x0, y0, x1, y1))
    }

    /// Does drawing this frame make the canvas independent of everything drawn before it?
    pub(crate) fn is_key_frame(&self, sw: u32, sh: u32) -> bool {
        !self.has_transparency && self.dispose != DisposalMethod::Previous && self.clip(sw, sh) == Some((0, 0, sw, sh))
    }
}

/// Result of the scan pass.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Effective logical screen (see the zero-size fallback in the module docs).
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) frames: Vec<FrameMeta>,
    /// Number of frames carrying a local colour table (tests and reports).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) local_palette_frames: usize,
}

pub(crate) fn decode_options(limits: &DecodeLimits, skip_frame_decoding: bool) -> DecodeOptions {
    let mut options = DecodeOptions::new();
    options.set_color_output(ColorOutput::Indexed);
    options.set_memory_limit(limits.gif_memory_limit());
    // Off on purpose: the crate's check rejects frames that are only *partially* outside the
    // screen, which real files have and browsers clip. We clip, and reject frames entirely
    // outside the screen ourselves (scan pass).
    options.check_frame_consistency(false);
    // Many encoders omit the LZW end code; browsers accept that.
    options.check_lzw_end_code(false);
    options.allow_unknown_blocks(false);
    options.skip_frame_decoding(skip_frame_decoding);
    options
}

/// Checks the signature and returns the length of the header (signature, logical screen
/// descriptor, global colour table).
pub(crate) fn check_header(bytes: &[u8]) -> Result<usize, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let sig = &bytes[..bytes.len().min(6)];
    if !(b"GIF89a".starts_with(sig) || b"GIF87a".starts_with(sig)) {
        return Err(DecodeError::NotGif);
    }
    let flags = match bytes.get(10) {
        Some(&f) => f,
        None => return Err(DecodeError::Truncated),
    };
    let global_table = if flags & 0x80 != 0 { 3usize << ((flags & 7) + 1) } else { 0 };
    Ok(13 + global_table)
}

/// The data ended before the first frame. It is "no frames" if it ends cleanly (complete header,
/// then only complete extension blocks, possibly a trailer), "truncated" if it ends inside a
/// block or after an image descriptor started.
pub(crate) fn classify_eof_before_first_frame(bytes: &[u8], header_len: usize) -> DecodeError {
    let mut pos = header_len;
    loop {
        match bytes.len().cmp(&pos) {
            std::cmp::Ordering::Less => return DecodeError::Truncated,
            std::cmp::Ordering::Equal => return DecodeError::NoFrames,
            std::cmp::Ordering::Greater => {}
        }
        match bytes[pos] {
            // The trailer: a clean end. (The gif crate reports an end of data for a trailer
            // right after the header, as it reads one byte past it there.)
            0x3B => return DecodeError::NoFrames,
            0x21 => {}
            // An image descriptor (or anything else) started and was cut.
            _ => return DecodeError::Truncated,
        }
        pos += 2; // introducer + label
        // Sub-blocks: length byte, data; a zero length ends the extension.
        loop {
            match bytes.get(pos) {
                None => return DecodeError::Truncated,
                Some(0) => {
                    pos += 1;
                    break;
                }
                Some(&n) => pos += 1 + usize::from(n),
            }
        }
    }
}

pub(crate) fn is_eof(e: &DecodingError) -> bool {
    match e {
        DecodingError::UnexpectedEof => true,
        DecodingError::Io(io) => io.kind() == io::ErrorKind::UnexpectedEof,
        _ => false,
    }
}

/// Maps a `gif` error to ours (an end of data is `Truncated`; the scan pass special-cases an end
/// before the first frame).
pub(crate) fn map_gif_error(e: DecodingError, limits: &DecodeLimits) -> DecodeError {
    if is_eof(&e) {
        return DecodeError::Truncated;
    }
    match e {
        DecodingError::MemoryLimit | DecodingError::OutOfMemory => {
            DecodeError::DecoderMemory { limit: limits.gif_memory_limit_bytes() }
        }
        DecodingError::LzwError(e) => DecodeError::CorruptData(format!("invalid LZW data: {e}")),
        other => DecodeError::CorruptData(other.to_string()),
    }
}

pub(crate) fn too_large(what: &'static str, value: u64, limit: u64) -> DecodeError {
    DecodeError::TooLarge { what, value, limit }
}

/// Pass 1: walk the whole file without LZW decoding and enforce every limit.
pub(crate) fn scan(bytes: &[u8], limits: &DecodeLimits) -> Result<Scan, DecodeError> {
    let header_len = check_header(bytes)?;
    let mut decoder = match decode_options(limits, true).read_info(bytes) {
        Ok(d) => d,
        Err(e) if is_eof(&e) => return Err(classify_eof_before_first_frame(bytes, header_len)),
        Err(DecodingError::Format(f)) if f.to_string().contains("does not contain any image") => {
            return Err(DecodeError::NoFrames);
        }
        Err(e) => return Err(map_gif_error(e, limits)),
    };
    let screen_w = u32::from(decoder.width());
    let screen_h = u32::from(decoder.height());
    check_screen(screen_w, screen_h, limits)?;

    let mut frames: Vec<FrameMeta> = Vec::new();
    let mut decoded: u64 = 0;
    let mut local_palette_frames = 0;
    loop {
        let frame = match decoder.next_frame_info() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if is_eof(&e) && frames.is_empty() => {
                return Err(classify_eof_before_first_frame(bytes, header_len));
            }
            Err(e) => return Err(map_gif_error(e, limits)),
        };
        if frames.len() >= limits.max_frames as usize {
            return Err(too_large("frames", frames.len() as u64 + 1, limits.max_frames.into()));
        }
        let meta = FrameMeta {
            left: frame.left,
            top: frame.top,
            width: frame.width,
            height: frame.height,
            has_transparency: frame.transparent.is_some(),
            dispose: frame.dispose,
        };
        let area = meta.area();
        if area > limits.max_canvas_pixels {
            return Err(too_large("frame_pixels", area, limits.max_canvas_pixels));
        }
        decoded = decoded.saturating_add(area);
        if decoded > limits.max_decoded_pixels {
            return Err(too_large("decoded_pixels", decoded, limits.max_decoded_pixels));
        }
        if frame.palette.is_some() {
            local_palette_frames += 1;
        }
        frames.push(meta);
    }
    if frames.is_empty() {
        return Err(DecodeError::NoFrames);
    }

    // Zero-sized screen dimension: take it from the frames' bounding box.
    let (mut width, mut height) = (screen_w, screen_h);
    if width == 0 || height == 0 {
        let nonempty = frames.iter().filter(|f| f.area() > 0);
        if width == 0 {
            width = nonempty.clone().map(|f| u32::from(f.left) + u32::from(f.width)).max().unwrap_or(0);
        }
        if height == 0 {
            height = nonempty.map(|f| u32::from(f.top) + u32::from(f.height)).max().unwrap_or(0);
        }
        if width == 0 || height == 0 {
            return Err(DecodeError::EmptyImage);
        }
        check_screen(width, height, limits)?;
    }
    for (i, f) in frames.iter().enumerate() {
        if f.area() > 0 && f.clip(width, height).is_none() {
            return Err(DecodeError::FrameOutOfBounds {
                frame: i,
                left: f.left,
                top: f.top,
                width: f.width,
                height: f.height,
                screen_width: width,
                screen_height: height,
            });
        }
    }
    Ok(Scan { width, height, frames, local_palette_frames })
}

pub(crate) fn check_screen(w: u32, h: u32, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if w > limits.max_width {
        return Err(too_large("screen_width", w.into(), limits.max_width.into()));
    }
    if h > limits.max_height {
        return Err(too_large("screen_height", h.into(), limits.max_height.into()));
    }
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_canvas_pixels {
        return Err(too_large("canvas_pixels", pixels, limits.max_canvas_pixels));
    }
    Ok(())
}
