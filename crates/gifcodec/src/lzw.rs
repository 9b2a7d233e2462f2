//! GIF-flavoured LZW decompression into a whole-frame index buffer.
//!
//! Instead of walking prefix chains byte by byte, every dictionary entry is stored as a
//! (position, length) reference to an earlier occurrence of its string in the output, and
//! decoding a code is a short forward copy. Literal codes point into a 2048-byte preamble holding
//! the bytes `code as u8` for every possible literal code, so literals and strings take the same
//! path.
//!
//! Minimum code sizes 1..=11 are accepted, as Chromium does (`SkGifImageReader`,
//! `SkGIFLZWContext::prepareToDecode` rejects a data size of 12 or more; Firefox
//! `nsGIFDecoder2::ReadLZWData` rejects more than 12): 1 is what 1×1 "tracking pixel" GIFs use,
//! and with sizes 9..=11 a literal code above 255 becomes its low byte, as both browsers store
//! suffixes as bytes. 0 and 12 or more are [`Error::CodeSize`]. The buffer has 8 bytes of
//! slack at the end so that copies can move 8 bytes at a time.

/// Bytes `(0..2048) as u8` in front of the output, the sources of the literal codes.
const PREAMBLE: usize = 2048;
/// Room for 8-byte copies overrunning the end of the output.
const SLACK: usize = 8;
const MAX_CODES: usize = 4096;
const MAX_WIDTH: u32 = 12;

/// Why a frame's LZW data could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// Minimum code size outside 1..=11.
    CodeSize(u8),
    /// A code that is neither in the dictionary nor the next one to be defined, after
    /// `decoded` pixels.
    InvalidCode { decoded: usize },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CodeSize(n) => write!(f, "invalid LZW minimum code size {n}"),
            Self::InvalidCode { decoded } => write!(f, "invalid LZW code after {decoded} pixels"),
        }
    }
}

/// Output buffer: preamble, frame pixels (indices), slack.
pub(crate) struct FrameBuffer {
    buf: Vec<u8>,
}

impl FrameBuffer {
    /// A buffer for frames of up to `max_pixels` pixels.
    pub(crate) fn new(max_pixels: usize) -> Self {
        let mut buf = vec![0u8; PREAMBLE + max_pixels + SLACK];
        for (i, b) in buf.iter_mut().take(PREAMBLE).enumerate() {
            *b = i as u8;
        }
        Self { buf }
    }

    /// The first `pixels` decoded indices.
    pub(crate) fn output(&self, pixels: usize) -> &[u8] {
        &self.buf[PREAMBLE..PREAMBLE + pixels]
    }
}

/// Dictionary: for each code, where its string starts in the frame buffer and its length
/// (0 marks the clear and end codes).
pub(crate) struct Decoder {
    start: Box<[u32; MAX_CODES]>,
    len: Box<[u16; MAX_CODES]>,
}

/// Copies `len >= 1` bytes from `src` to `dst` 8 at a time. Requires `src + len <= dst`
/// (the source is complete before the destination starts; bytes read past `src + len` are
/// only ever written past `dst + len`) and `dst + len + 7 < buf.len()`.
#[inline(always)]
fn copy_forward(buf: &mut [u8], src: usize, dst: usize, len: usize) {
    let mut k = 0;
    loop {
        let mut word = [0u8; 8];
        word.copy_from_slice(&buf[src + k..src + k + 8]);
        buf[dst + k..dst + k + 8].copy_from_slice(&word);
        k += 8;
        if k >= len {
            break;
        }
    }
}

impl Decoder {
    pub(crate) fn new() -> Self {
        Self { start: Box::new([0; MAX_CODES]), len: Box::new([0; MAX_CODES]) }
    }

    /// Decodes `data` (the concatenated sub-blocks of one frame) until `pixels` indices
    /// have been produced, and returns how many were: `pixels`, or fewer when the data or an
    /// end code comes first (the caller draws what there is, as browsers do). Data after
    /// `pixels` is ignored, and the end code is optional.
    pub(crate) fn decode(
        &mut self,
        min_code_size: u8,
        data: &[u8],
        frame: &mut FrameBuffer,
        pixels: usize,
    ) -> Result<usize, Error> {
        if !(1..=11).contains(&min_code_size) {
            return Err(Error::CodeSize(min_code_size));
        }
        let buf = &mut frame.buf[..];
        let out_end = PREAMBLE + pixels;
        if buf.len() < out_end + SLACK {
            // Sized by the caller from the scan; cannot happen.
            return Ok(0);
        }
        let start = &mut *self.start;
        let lens = &mut *self.len;
        let clear = 1usize << min_code_size;
        let end = clear + 1;
        for c in 0..clear {
            start[c] = c as u32;
            lens[c] = 1;
        }
        lens[clear] = 0;
        lens[end] = 0;

        let min_width = u32::from(min_code_size) + 1;
        let mut width = min_width;
        let mut mask = (1usize << width) - 1;
        let mut next = clear + 2;
        // The width grows when `next` reaches `grow_at`: 2^width (textbook), except for minimum
        // code size 1, where the first free code (4) already equals 2^2. There Chromium and
        // Firefox (`(avail & codemask) == 0` after an entry is added) keep 2-bit codes until
        // `next` reaches 8, so the growth lags one bit behind (longer size-1 streams are
        // ill-defined: both browsers' code mask breaks; no encoder writes them).
        let lag = u32::from(min_code_size == 1);
        let mut grow_at = 1usize << (min_width + lag);
        // Position and length of the previously emitted string; prev_len == 0: none yet
        // (start of data or just after a clear code), so no dictionary entry is added.
        let mut prev_pos = 0usize;
        let mut prev_len = 0usize;
        let mut pos = PREAMBLE;

        let mut bits: u64 = 0;
        let mut nbits: u32 = 0;
        let mut inp = 0usize;

        loop {
            if nbits < width {
                if let Some(chunk) = data.get(inp..inp + 8) {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(chunk);
                    // Bits of a partially taken byte land above `nbits` and are ORed in
                    // again, identically, by the next refill.
                    bits |= u64::from_le_bytes(word) << nbits;
                    let take = (63 - nbits) / 8;
                    inp += take as usize;
                    nbits += take * 8;
                } else {
                    while nbits <= 56 {
                        let Some(&b) = data.get(inp) else { break };
                        bits |= u64::from(b) << nbits;
                        inp += 1;
                        nbits += 8;
                    }
                    if nbits < width {
                        break; // out of data
                    }
                }
            }
            let code = (bits as usize) & mask;
            bits >>= width;
            nbits -= width;

            let len;
            if code < next {
                len = usize::from(lens[code]);
                if len == 0 {
                    if code == clear {
                        width = min_width;
                        mask = (1usize << width) - 1;
                        next = clear + 2;
                        grow_at = 1usize << (min_width + lag);
                        prev_len = 0;
                        continue;
                    }
                    break; // end code
                }
                let src = start[code] as usize;
                if prev_len != 0 && next < MAX_CODES {
                    // New entry: previous string + first byte of this one (written now).
                    start[next] = prev_pos as u32;
                    lens[next] = (prev_len + 1) as u16;
                    next += 1;
                }
                if pos + len <= out_end {
                    copy_forward(buf, src, pos, len);
                } else {
                    let fits = out_end - pos;
                    buf.copy_within(src..src + fits, pos);
                    return Ok(pixels);
                }
            } else if code == next && prev_len != 0 {
                // The code being defined right now: previous string + its own first byte.
                len = prev_len + 1;
                start[next] = prev_pos as u32;
                lens[next] = len as u16;
                next += 1;
                if pos + len <= out_end {
                    copy_forward(buf, prev_pos, pos, prev_len);
                    buf[pos + prev_len] = buf[prev_pos];
                } else {
                    let fits = out_end - pos; // < len, so <= prev_len
                    buf.copy_within(prev_pos..prev_pos + fits, pos);
                    return Ok(pixels);
                }
            } else {
                return Err(Error::InvalidCode { decoded: pos - PREAMBLE });
            }
            prev_pos = pos;
            prev_len = len;
            pos += len;
            if pos >= out_end {
                return Ok(pixels);
            }
            if next == grow_at && width < MAX_WIDTH {
                width += 1;
                mask = (1usize << width) - 1;
                grow_at <<= 1;
            }
        }
        Ok((pos - PREAMBLE).min(pixels))
    }
}
