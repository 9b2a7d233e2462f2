//! Fuzz target: `decode_and_sample` must never panic, hang or allocate past its limits, and
//! what it returns must be consistent.
#![no_main]

use gifcodec::{DecodeError, DecodeLimits, SampleSpec, decode_and_sample};
use libfuzzer_sys::fuzz_target;

const SIZE: u32 = 32;
const K: usize = 4;

fuzz_target!(|data: &[u8]| {
    // Small limits keep each run fast while still exercising every limit check.
    let limits = DecodeLimits {
        max_width: 2048,
        max_height: 2048,
        max_canvas_pixels: 1 << 20,
        max_frames: 200,
        max_decoded_pixels: 20_000_000,
    };
    let spec = SampleSpec { frames: K, size: SIZE };
    match decode_and_sample(data, spec, &limits) {
        Ok(s) => {
            assert!(s.count >= 1 && s.count <= K && s.count <= s.total_frames);
            assert!(s.total_frames <= limits.max_frames as usize);
            assert_eq!(s.count, K.min(s.total_frames));
            assert_eq!(s.rgb.len(), s.count * (SIZE * SIZE * 3) as usize);
            assert!(s.width >= 1 && s.height >= 1);
            assert!(u64::from(s.width) * u64::from(s.height) <= limits.max_canvas_pixels);
        }
        Err(e) => {
            let reason = e.reason();
            assert!(!reason.is_empty() && reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            // The spec is valid and sizes are checked before resizing: these would be bugs.
            assert!(!matches!(e, DecodeError::InvalidSpec(_) | DecodeError::Resize(_)), "{e}");
            let _ = e.to_string();
        }
    }
});
