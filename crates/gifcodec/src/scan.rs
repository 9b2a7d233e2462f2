//! Pass 1: walk every block of the file without LZW decompression, record each frame's
//! rectangle, disposal, transparency, palette and data offsets, apply the browsers' canvas rule,
//! and enforce every [`DecodeLimits`] limit before anything proportional to the image is
//! allocated (see the crate docs).
//!
//! The block parser is our own (not the `gif` crate's) so that each browser quirk is one
//! visible rule here: the end of data between blocks ends the file, an unknown extension is
//! skipped, a byte that starts no block ends the file, data cut inside a block keeps the frames
//! before it. Every rule names the browser source it follows; `docs/conformance.md` lists them.
//! Cost: one linear walk over the bytes and 40 bytes per frame; no allocation depends on a
//! value read from the file other than the frame list, which `max_frames` bounds.

use crate::{DecodeError, DecodeLimits};

/// Disposal method of a frame (graphic control extension, bits 2..=4 of the packed byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposal {
    /// 0: unspecified, treated as keep.
    Any,
    /// 1: leave the frame on the canvas.
    Keep,
    /// 2: clear the frame rectangle to transparent.
    Background,
    /// 3 (and 4): restore the rectangle as it was before the frame was drawn.
    Previous,
}

impl Disposal {
    /// Maps the 3-bit field like Chromium (`SkGifImageReader::parse`, case
    /// `SkGIFControlExtension`) and Firefox (`nsGIFDecoder2::ReadGraphicControlExtension`): 4 is
    /// restore-previous ("some specs say 3, others set the third bit"), 5..=7 are undefined and
    /// behave as keep.
    pub(crate) fn from_bits(v: u8) -> Self {
        match v & 7 {
            0 => Self::Any,
            2 => Self::Background,
            3 | 4 => Self::Previous,
            _ => Self::Keep,
        }
    }
}

/// Per-frame facts recorded by the scan pass.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameMeta {
    /// Frame rectangle after the canvas rule (first frame larger than the screen moves to 0,0)
    /// and the zero-size rule (a zero width or height takes the screen's size).
    pub(crate) left: u16,
    pub(crate) top: u16,
    pub(crate) width: u16,
    pub(crate) height: u16,
    pub(crate) transparent: Option<u8>,
    pub(crate) dispose: Disposal,
    /// Delay time of the graphic control extension, in centiseconds as written (0 when the
    /// frame has none); [`crate::sampling::shown_cs`] applies the browsers' rule for 0 and 1.
    pub(crate) delay_cs: u16,
    pub(crate) interlaced: bool,
    /// Byte offset and length of the local colour table.
    pub(crate) palette: Option<(usize, usize)>,
    /// Byte offset of the LZW minimum code size; the data sub-blocks follow it.
    pub(crate) data: usize,
    /// Every data sub-block and the block terminator are present (false only for the last
    /// frame of a file cut inside its image data).
    pub(crate) complete: bool,
}

impl FrameMeta {
    pub(crate) fn area(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    pub(crate) fn has_transparency(&self) -> bool {
        self.transparent.is_some()
    }

    /// The part of the frame rectangle on a `sw × sh` screen: `(x0, y0, x1, y1)`, exclusive
    /// ends; `None` if it is empty (a zero-area frame, or one entirely off the screen).
    pub(crate) fn clip(&self, sw: u32, sh: u32) -> Option<(u32, u32, u32, u32)> {
        let x0 = u32::from(self.left);
        let y0 = u32::from(self.top);
        let x1 = (x0 + u32::from(self.width)).min(sw);
        let y1 = (y0 + u32::from(self.height)).min(sh);
        (x0 < x1 && y0 < y1).then_some((x0, y0, x1, y1))
    }

    /// Does drawing this frame make the canvas independent of everything drawn before it?
    /// (Assuming its LZW data fills the rectangle; the render pass re-renders without key-frame
    /// skipping when a key frame's data turns out short.)
    pub(crate) fn is_key_frame(&self, sw: u32, sh: u32) -> bool {
        self.complete
            && !self.has_transparency()
            && self.dispose != Disposal::Previous
            && self.clip(sw, sh) == Some((0, 0, sw, sh))
    }
}

/// Result of the scan pass.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Effective logical screen (after the canvas rule, see the crate docs).
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) frames: Vec<FrameMeta>,
    /// Byte offset and length of the global colour table.
    pub(crate) global_palette: Option<(usize, usize)>,
    /// The data ended inside a block after at least one complete frame: the frames before the
    /// cut (and the cut frame, as far as its data goes) are shown.
    pub(crate) truncated: bool,
    /// Number of frames carrying a local colour table (tests and reports).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) local_palette_frames: usize,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// Colour table length in bytes for a packed field whose bit 7 says "table present".
fn table_len(flags: u8) -> usize {
    if flags & 0x80 != 0 { 3usize << ((flags & 7) + 1) } else { 0 }
}

/// Checks the signature and returns the length of the header (signature, logical screen
/// descriptor, global colour table). A header cut anywhere is [`DecodeError::Truncated`].
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
    let len = 13 + table_len(flags);
    if bytes.len() < len {
        return Err(DecodeError::Truncated);
    }
    Ok(len)
}

/// Skips a chain of sub-blocks starting at `pos` (length byte, data, …, zero length).
/// Returns the offset after the terminator, or `None` if the data ends first.
pub(crate) fn skip_sub_blocks(bytes: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        match *bytes.get(pos)? {
            0 => return Some(pos + 1),
            n => {
                pos += 1 + usize::from(n);
                if pos > bytes.len() {
                    return None;
                }
            }
        }
    }
}

/// Appends the data of the sub-block chain at `pos` to `out`, stopping at the terminator or at
/// the end of the data (a cut sub-block contributes the bytes that are there).
pub(crate) fn gather_sub_blocks(bytes: &[u8], mut pos: usize, out: &mut Vec<u8>) {
    out.clear();
    while let Some(&n) = bytes.get(pos) {
        if n == 0 {
            return;
        }
        let from = pos + 1;
        let to = (from + usize::from(n)).min(bytes.len());
        out.extend_from_slice(&bytes[from.min(to)..to]);
        pos = from + usize::from(n);
    }
}

pub(crate) fn too_large(what: &'static str, value: u64, limit: u64) -> DecodeError {
    DecodeError::TooLarge { what, value, limit }
}

/// How the block walk ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The trailer `;`, or the end of data between two blocks.
    Clean,
    /// The data ended inside a block.
    Cut,
    /// A byte that starts no block, at this offset.
    Junk(usize, u8),
}

/// Pass 1: walk the whole file without LZW decoding and enforce every limit.
///
/// Rules (each from Chromium's `SkGifImageReader::parse` and Firefox's `nsGIFDecoder2`; see
/// `docs/conformance.md`):
/// * the trailer, or the end of data between blocks, ends the file;
/// * a byte other than `!`, `,` or `;` where a block starts ends the file ("extraneous data
///   between blocks … proceed as if the file were correctly terminated");
/// * extensions other than the graphic control extension are skipped whatever their label; a
///   graphic control extension whose first sub-block is shorter than 4 bytes is ignored;
/// * first frame larger than the screen in either dimension, or any first frame of a GIF87a
///   file: the screen takes the frame's size and the frame moves to (0, 0)
///   (`nsGIFDecoder2::ReadImageDescriptor`, "Work around broken GIF files where the logical
///   screen size has weird width or height"); the grown screen is checked against the limits;
/// * a frame with a zero width or height takes the screen's size ("Work around more broken GIF
///   files that have zero image width or height"); with a zero screen too there is no pixel:
///   [`DecodeError::EmptyImage`];
/// * frames partly or entirely outside the screen are clipped (entirely: nothing is drawn);
/// * data cut inside a block: the frames so far are kept (the cut frame as far as its data
///   goes) if at least one frame is complete, else [`DecodeError::Truncated`].
pub(crate) fn scan(bytes: &[u8], limits: &DecodeLimits) -> Result<Scan, DecodeError> {
    let header_len = check_header(bytes)?;
    let mut sw = u32::from(u16_at(bytes, 6));
    let mut sh = u32::from(u16_at(bytes, 8));
    check_screen(sw, sh, limits)?;
    let gif87 = &bytes[3..6] == b"87a";
    let global_palette = (header_len > 13).then_some((13, header_len - 13));

    let mut frames: Vec<FrameMeta> = Vec::new();
    let mut decoded: u64 = 0;
    let mut local_palette_frames = 0;
    // Graphic control extension state for the next image.
    let mut transparent = None;
    let mut dispose = Disposal::Any;
    let mut delay_cs = 0u16;
    let mut pos = header_len;
    let end = loop {
        let Some(&intro) = bytes.get(pos) else { break End::Clean };
        match intro {
            b';' => break End::Clean,
            b'!' => {
                let Some(&label) = bytes.get(pos + 1) else { break End::Cut };
                let first = pos + 2;
                let Some(next) = skip_sub_blocks(bytes, first) else { break End::Cut };
                if label == 0xF9 && bytes[first] >= 4 {
                    let packed = bytes[first + 1];
                    transparent = (packed & 1 != 0).then_some(bytes[first + 4]);
                    dispose = Disposal::from_bits(packed >> 2);
                    delay_cs = u16_at(bytes, first + 2);
                }
                pos = next;
            }
            b',' => {
                let Some(d) = bytes.get(pos + 1..pos + 10) else { break End::Cut };
                let (mut left, mut top) = (u16_at(d, 0), u16_at(d, 2));
                let (mut width, mut height) = (u16_at(d, 4), u16_at(d, 6));
                let flags = d[8];
                pos += 10;
                let mut palette = None;
                let plen = table_len(flags);
                if plen > 0 {
                    if bytes.len() < pos + plen {
                        break End::Cut;
                    }
                    palette = Some((pos, plen));
                    pos += plen;
                }
                if pos >= bytes.len() {
                    break End::Cut; // no LZW minimum code size byte
                }
                if frames.len() >= limits.max_frames as usize {
                    return Err(too_large("frames", frames.len() as u64 + 1, limits.max_frames.into()));
                }
                if frames.is_empty() && (sw < u32::from(width) || sh < u32::from(height) || gif87) {
                    (sw, sh) = (u32::from(width), u32::from(height));
                    (left, top) = (0, 0);
                    check_screen(sw, sh, limits)?;
                }
                if width == 0 || height == 0 {
                    if sw == 0 || sh == 0 {
                        return Err(DecodeError::EmptyImage);
                    }
                    // The screen comes from a u16 header field or a u16 frame size.
                    width = u16::try_from(sw).unwrap_or(u16::MAX);
                    height = u16::try_from(sh).unwrap_or(u16::MAX);
                }
                let data = pos;
                let (complete, next) = match skip_sub_blocks(bytes, pos + 1) {
                    Some(next) => (true, next),
                    None => (false, bytes.len()),
                };
                let meta = FrameMeta {
                    left,
                    top,
                    width,
                    height,
                    transparent,
                    dispose,
                    delay_cs,
                    interlaced: flags & 0x40 != 0,
                    palette,
                    data,
                    complete,
                };
                let area = meta.area();
                if area > limits.max_canvas_pixels {
                    return Err(too_large("frame_pixels", area, limits.max_canvas_pixels));
                }
                decoded = decoded.saturating_add(area);
                if decoded > limits.max_decoded_pixels {
                    return Err(too_large("decoded_pixels", decoded, limits.max_decoded_pixels));
                }
                local_palette_frames += usize::from(palette.is_some());
                frames.push(meta);
                (transparent, dispose, delay_cs) = (None, Disposal::Any, 0);
                pos = next;
                if !complete {
                    break End::Cut;
                }
            }
            other => break End::Junk(pos, other),
        }
    };

    let complete_frames = frames.iter().filter(|f| f.complete).count();
    match end {
        _ if complete_frames > 0 => {}
        End::Cut => return Err(DecodeError::Truncated),
        End::Junk(offset, byte) => return Err(DecodeError::InvalidBlock { offset, byte }),
        End::Clean => return Err(DecodeError::NoFrames),
    }
    if sw == 0 || sh == 0 {
        // Only reachable with zero-area frames on a zero screen dimension.
        return Err(DecodeError::EmptyImage);
    }
    Ok(Scan { width: sw, height: sh, frames, global_palette, truncated: end == End::Cut, local_palette_frames })
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
