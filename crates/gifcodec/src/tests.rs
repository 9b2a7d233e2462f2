use super::*;
use crate::render::*;
use crate::scan::*;
use gif::{ColorOutput, DecodeOptions, DisposalMethod};
use std::borrow::Cow;
use std::path::PathBuf;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/gifs").join(name)
}

const SPEC: SampleSpec = SampleSpec { frames: 8, size: 224 };

// ---- manifest ---------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct Entry {
    file: String,
    kind: String,
    frames: Option<usize>,
    size: Option<[u32; 2]>,
    #[serde(default)]
    expect_tags: Vec<String>,
    reason: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[test]
fn manifest_files_behave_as_specified() {
    let text = std::fs::read_to_string(testdata("manifest.json")).expect("manifest.json");
    let entries: Vec<Entry> = serde_json::from_str(&text).expect("manifest parses");
    assert!(!entries.is_empty());
    let limits = DecodeLimits::default();
    for e in &entries {
        let bytes = std::fs::read(testdata(&e.file)).expect(&e.file);
        for k in [1usize, 4, 8] {
            let spec = SampleSpec { frames: k, size: 64 };
            let got = decode_and_sample(&bytes, spec, &limits);
            match e.kind.as_str() {
                "valid" => {
                    let s = got.unwrap_or_else(|err| panic!("{}: expected Ok, got {err}", e.file));
                    if let Some(n) = e.frames {
                        assert_eq!(s.total_frames, n, "{}", e.file);
                    }
                    if let Some([w, h]) = e.size {
                        assert_eq!((s.width, s.height), (w, h), "{}", e.file);
                    }
                    assert_eq!(s.count, k.min(s.total_frames), "{}", e.file);
                    assert_eq!(s.rgb.len(), s.count * 64 * 64 * 3, "{}", e.file);
                    assert_eq!(s.warnings, e.warnings, "{}", e.file);
                    // Real photos/recordings are not all black.
                    if !e.expect_tags.is_empty() {
                        assert!(s.rgb.iter().any(|&b| b != 0), "{}", e.file);
                    }
                }
                "invalid" => {
                    let err = got.expect_err(&e.file);
                    let want = e.reason.as_deref().expect("invalid entries carry a reason");
                    assert_eq!(err.reason(), want, "{}: {err}", e.file);
                }
                other => panic!("unknown kind {other}"),
            }
        }
    }
}

#[test]
fn real_recording_783_frames_passes_and_bomb_fails_on_frame_count() {
    let limits = DecodeLimits::default();
    let rec = std::fs::read(testdata("real_terminal_recording_783f.gif")).unwrap();
    let s = decode_and_sample(&rec, SPEC, &limits).unwrap();
    assert_eq!((s.total_frames, s.count), (783, 8));
    let bomb = std::fs::read(testdata("bomb_many_frames.gif")).unwrap();
    match decode_and_sample(&bomb, SPEC, &limits).unwrap_err() {
        DecodeError::TooLarge { what, .. } => {
            assert!(what == "frames" || what == "decoded_pixels", "{what}")
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn corpus_local_palette_usage() {
    // Local colour tables are exercised by real files, not only by the hand-built ones.
    let limits = DecodeLimits::default();
    for (file, local) in [
        ("chelsea_200x200_8f_interlaced.gif", 7),
        ("coffee_200x200_8f_interlaced.gif", 7),
        ("rocket_200x200_8f_interlaced.gif", 7),
        ("coffee_480x270_16f.gif", 15),
        ("real_terminal_recording_783f.gif", 1),
        ("chelsea_480x270_24f_O3.gif", 0),
        ("chelsea_moving_patch_30f_O3.gif", 0),
        ("chelsea_static.gif", 0),
    ] {
        let bytes = std::fs::read(testdata(file)).unwrap();
        assert_eq!(scan(&bytes, &limits).unwrap().local_palette_frames, local, "{file}");
    }
}

#[test]
fn matches_pillow_reference_within_rounding() {
    // testdata/gifs/pillow_ref/*.k8_s32.rgb: Pillow 13 (seek, convert("RGB"), BILINEAR resize
    // of the centred square) with the same sample indices; see testdata/gifs/README.md.
    // Pillow composites independently of this module (disposal, transparency, local
    // palettes), so agreement within rounding validates compositing on real optimised GIFs.
    let limits = DecodeLimits::default();
    for file in [
        "chelsea_480x270_24f_O3.gif",
        "chelsea_moving_patch_30f_O3.gif",
        "coffee_480x270_16f.gif",
        "real_terminal_recording_783f.gif",
    ] {
        let bytes = std::fs::read(testdata(file)).unwrap();
        let stem = file.trim_end_matches(".gif");
        let reference = std::fs::read(testdata(&format!("pillow_ref/{stem}.k8_s32.rgb"))).unwrap();
        let s = decode_and_sample(&bytes, SampleSpec { frames: 8, size: 32 }, &limits).unwrap();
        assert_eq!(s.rgb.len(), reference.len(), "{file}");
        let diffs: Vec<u8> = s.rgb.iter().zip(&reference).map(|(a, b)| a.abs_diff(*b)).collect();
        let max = diffs.iter().copied().max().unwrap_or(0);
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        assert!(max <= 3 && mean < 0.5, "{file}: max {max}, mean {mean:.3}");
    }
}

#[test]
fn determinism_same_bytes_same_output() {
    let limits = DecodeLimits::default();
    for name in ["chelsea_480x270_24f_O3.gif", "chelsea_200x200_8f_interlaced.gif"] {
        let bytes = std::fs::read(testdata(name)).unwrap();
        let a = decode_and_sample(&bytes, SPEC, &limits).unwrap();
        let b = decode_and_sample(&bytes, SPEC, &limits).unwrap();
        assert_eq!(a.rgb, b.rgb, "{name}");
    }
}

// ---- LZW decoder vs the gif crate's (weezl) -----------------------------------------------

/// All frames' raw indices in stream order (no de-interlacing), via the gif crate.
fn reference_indices(bytes: &[u8]) -> Vec<Result<Vec<u8>, ()>> {
    let mut o = DecodeOptions::new();
    o.set_color_output(ColorOutput::Indexed);
    o.set_memory_limit(gif::MemoryLimit::Unlimited);
    let mut d = o.read_info(bytes).unwrap();
    let mut out = Vec::new();
    loop {
        let f = match d.next_frame_info() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => {
                out.push(Err(()));
                break;
            }
        };
        let n = usize::from(f.width) * usize::from(f.height);
        let mut buf = vec![0u8; n];
        match d.fill_buffer(&mut buf) {
            Ok(true) => out.push(Ok(buf)),
            Ok(false) | Err(_) => {
                out.push(Err(()));
                break;
            }
        }
    }
    out
}

/// All frames' raw indices in stream order via our scan and LZW decoder.
fn our_indices(bytes: &[u8]) -> Vec<Result<Vec<u8>, ()>> {
    let sc = scan(bytes, &DecodeLimits::default()).unwrap();
    let mut lzw = lzw::Decoder::new();
    let mut out = Vec::new();
    let mut data = Vec::new();
    for f in &sc.frames {
        let n = f.area() as usize;
        let mut fb = lzw::FrameBuffer::new(n);
        gather_sub_blocks(bytes, f.data + 1, &mut data);
        match lzw.decode(bytes[f.data], &data, &mut fb, n) {
            Ok(k) if k == n => out.push(Ok(fb.output(n).to_vec())),
            _ => {
                out.push(Err(()));
                break;
            }
        }
    }
    out
}

#[test]
fn lzw_matches_gif_crate_on_corpus() {
    let text = std::fs::read_to_string(testdata("manifest.json")).unwrap();
    let entries: Vec<Entry> = serde_json::from_str(&text).unwrap();
    // (Cut files and the one-pixel frame_outside_screen.gif are left out: partial frames by design.)
    for e in entries.iter().filter(|e| e.kind == "valid" && e.warnings.is_empty() && !e.expect_tags.is_empty()) {
        let bytes = std::fs::read(testdata(&e.file)).unwrap();
        let (want, got) = (reference_indices(&bytes), our_indices(&bytes));
        assert_eq!(want.len(), got.len(), "{}", e.file);
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert!(w.is_ok(), "{} frame {i}", e.file);
            assert!(w == g, "{} frame {i} differs", e.file);
        }
    }
}

/// Textbook GIF LZW (dictionary of byte strings), stopping once `n` pixels are produced.
fn textbook_lzw(min: u8, data: &[u8], n: usize) -> Result<Vec<u8>, ()> {
    let clear = 1usize << min;
    let mut width = u32::from(min) + 1;
    let mut dict: Vec<Vec<u8>> = Vec::new();
    let reset = |dict: &mut Vec<Vec<u8>>| {
        dict.clear();
        dict.extend((0..clear + 2).map(|c| vec![c as u8]));
    };
    reset(&mut dict);
    let mut prev: Option<Vec<u8>> = None;
    let mut out = Vec::new();
    let mut bit = 0usize;
    while out.len() < n && bit + width as usize <= data.len() * 8 {
        let mut code = 0usize;
        for k in 0..width as usize {
            let b = bit + k;
            code |= usize::from((data[b / 8] >> (b % 8)) & 1) << k;
        }
        bit += width as usize;
        if code == clear {
            reset(&mut dict);
            width = u32::from(min) + 1;
            prev = None;
            continue;
        }
        if code == clear + 1 {
            break;
        }
        let s = if code < dict.len() && prev.is_some() || code < clear {
            dict[code].clone()
        } else if code == dict.len() && prev.is_some() {
            let p = prev.clone().unwrap();
            let mut s = p.clone();
            s.push(p[0]);
            s
        } else {
            return Err(());
        };
        if let Some(mut e) = prev.take()
            && dict.len() < 4096
        {
            e.push(s[0]);
            dict.push(e);
        }
        out.extend_from_slice(&s);
        prev = Some(s);
        if dict.len() == 1 << width && width < 12 {
            width += 1;
        }
    }
    if out.len() < n {
        return Err(());
    }
    out.truncate(n);
    Ok(out)
}

#[test]
fn lzw_matches_textbook_and_gif_crate_on_random_streams() {
    let mut rand = xorshift(0x9e37_79b9_7f4a_7c15);
    let (mut valid, mut invalid, mut gif_stricter) = (0, 0, 0);
    let mut lzw = lzw::Decoder::new();
    for round in 0..4000 {
        let w = 1 + (rand() % 70) as u16;
        let h = 1 + (rand() % 70) as u16;
        let n = usize::from(w) * usize::from(h);
        let colours = 1u64 << (1 + rand() % 8); // 2..=256 colours: code sizes 2..=8
        // Pixel data with runs, so that long strings and KwKwK codes occur.
        let mut px = Vec::with_capacity(n);
        while px.len() < n {
            let c = (rand() % colours) as u8;
            let run = 1 + (rand() % if round % 3 == 0 { 200 } else { 4 }) as usize;
            px.extend(std::iter::repeat_n(c, run.min(n - px.len())));
        }
        let mut frame = gif::Frame { width: w, height: h, buffer: Cow::Owned(px.clone()), ..gif::Frame::default() };
        frame.make_lzw_pre_encoded();
        let mut lzw_bytes = frame.buffer.to_vec();
        // The encoder derives the code size (2..=8) from the largest index used.
        let min_code = lzw_bytes[0];
        match round % 4 {
            0 => {} // valid as encoded
            1 => {
                for _ in 0..1 + rand() % 3 {
                    let i = 1 + (rand() as usize) % lzw_bytes.len().saturating_sub(1).max(1);
                    if i < lzw_bytes.len() {
                        lzw_bytes[i] = rand() as u8;
                    }
                }
            }
            2 => {
                let keep = 2 + (rand() as usize) % lzw_bytes.len();
                lzw_bytes.truncate(keep);
            }
            _ => {
                let len = 1 + (rand() % 300) as usize;
                lzw_bytes.truncate(1);
                lzw_bytes.extend((0..len).map(|_| rand() as u8));
            }
        }
        let data = &lzw_bytes[1..];
        let textbook = textbook_lzw(min_code, data, n);
        let mut fb = lzw::FrameBuffer::new(n);
        let ours = match lzw.decode(min_code, data, &mut fb, n) {
            Ok(k) if k == n => Ok(fb.output(n).to_vec()),
            _ => Err(()),
        };
        assert_eq!(textbook, ours, "round {round}, min code {min_code}, {w}x{h}, data {lzw_bytes:?}");
        if round % 4 == 0 {
            assert_eq!(ours.as_deref(), Ok(&px[..]), "round {round}: round trip");
        }
        // The gif crate (weezl) must agree whenever it succeeds. It can fail where we do
        // not: it reads one code past the last pixel and rejects it if invalid.
        let mut file = Vec::new();
        {
            let mut enc = gif::Encoder::new(&mut file, w, h, &[0u8; 768]).unwrap();
            let f = gif::Frame { width: w, height: h, buffer: Cow::Borrowed(&lzw_bytes), ..gif::Frame::default() };
            enc.write_lzw_pre_encoded_frame(&f).unwrap();
        }
        match (reference_indices(&file).first(), &ours) {
            (Some(Ok(reference)), Ok(o)) => assert_eq!(reference, o, "round {round}"),
            (Some(Ok(_)), Err(_)) => panic!("round {round}: gif crate decodes, we fail"),
            (_, Ok(_)) => gif_stricter += 1,
            _ => {}
        }
        if ours.is_ok() {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    eprintln!("random LZW streams: {valid} decoded, {invalid} rejected, gif crate stricter: {gif_stricter}");
    assert!(valid > 1000 && invalid > 1000, "valid {valid} invalid {invalid}");
    assert!(gif_stricter < 40, "gif crate stricter in {gif_stricter} cases");
}

// ---- hand-built GIFs --------------------------------------------------------------------

/// Palette: 0 black, 1 red, 2 green, 3 blue, 4 white, 5 yellow, 6 magenta, 7 cyan.
const PAL: [u8; 24] = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 255, 255, 0, 255, 0, 255, 0, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];
const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 255, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const WHITE: [u8; 3] = [255, 255, 255];

struct F {
    rect: (u16, u16, u16, u16), // left, top, width, height
    px: Vec<u8>,
    transparent: Option<u8>,
    dispose: DisposalMethod,
    palette: Option<Vec<u8>>,
    interlaced: bool,
    /// Graphic-control delay, centiseconds.
    delay: u16,
}

fn f(rect: (u16, u16, u16, u16), fill: u8) -> F {
    let n = usize::from(rect.2) * usize::from(rect.3);
    F {
        rect,
        px: vec![fill; n],
        transparent: None,
        dispose: DisposalMethod::Keep,
        palette: None,
        interlaced: false,
        delay: 0,
    }
}

fn encode(w: u16, h: u16, global: Option<&[u8]>, frames: &[F]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut out, w, h, global.unwrap_or(&[])).unwrap();
        for fr in frames {
            let frame = gif::Frame {
                left: fr.rect.0,
                top: fr.rect.1,
                width: fr.rect.2,
                height: fr.rect.3,
                buffer: Cow::Borrowed(&fr.px),
                transparent: fr.transparent,
                dispose: fr.dispose,
                palette: fr.palette.clone(),
                interlaced: fr.interlaced,
                delay: fr.delay,
                ..gif::Frame::default()
            };
            enc.write_frame(&frame).unwrap();
        }
    }
    out
}

fn px(canvas: &(u32, u32, Vec<u8>), x: u32, y: u32) -> [u8; 3] {
    let i = ((y * canvas.0 + x) * 3) as usize;
    [canvas.2[i], canvas.2[i + 1], canvas.2[i + 2]]
}

fn canvas(bytes: &[u8], index: usize) -> (u32, u32, Vec<u8>) {
    composite_frame(bytes, index, &DecodeLimits::default()).unwrap()
}

/// Frame 0: 4x4 red. Frame 1: 2x2 green at (1,1) with the given disposal. Frame 2: 1x1
/// blue at (0,0).
fn disposal_gif(dispose: DisposalMethod) -> Vec<u8> {
    let mut g = f((1, 1, 2, 2), 2);
    g.dispose = dispose;
    encode(4, 4, Some(&PAL), &[f((0, 0, 4, 4), 1), g, f((0, 0, 1, 1), 3)])
}

#[test]
fn disposal_keep() {
    let c = canvas(&disposal_gif(DisposalMethod::Keep), 2);
    assert_eq!(px(&c, 0, 0), BLUE);
    assert_eq!(px(&c, 1, 1), GREEN);
    assert_eq!(px(&c, 2, 2), GREEN);
    assert_eq!(px(&c, 3, 3), RED);
    // Unspecified disposal behaves like keep.
    let c = canvas(&disposal_gif(DisposalMethod::Any), 2);
    assert_eq!(px(&c, 1, 1), GREEN);
}

#[test]
fn disposal_background_clears_rect_to_black() {
    let bytes = disposal_gif(DisposalMethod::Background);
    let shown = canvas(&bytes, 1);
    assert_eq!(px(&shown, 1, 1), GREEN); // disposal applies after display
    let c = canvas(&bytes, 2);
    assert_eq!(px(&c, 0, 0), BLUE);
    assert_eq!(px(&c, 1, 1), BLACK);
    assert_eq!(px(&c, 2, 2), BLACK);
    assert_eq!(px(&c, 3, 1), RED); // outside the rect: untouched
    assert_eq!(px(&c, 3, 3), RED);
}

#[test]
fn disposal_previous_restores_rect() {
    let bytes = disposal_gif(DisposalMethod::Previous);
    assert_eq!(px(&canvas(&bytes, 1), 2, 2), GREEN);
    let c = canvas(&bytes, 2);
    assert_eq!(px(&c, 0, 0), BLUE);
    assert_eq!(px(&c, 1, 1), RED);
    assert_eq!(px(&c, 2, 2), RED);
}

#[test]
fn disposal_previous_on_first_frame_restores_blank() {
    let mut a = f((0, 0, 2, 2), 1);
    a.dispose = DisposalMethod::Previous;
    let bytes = encode(2, 2, Some(&PAL), &[a, f((0, 0, 1, 1), 3)]);
    let c = canvas(&bytes, 1);
    assert_eq!(px(&c, 0, 0), BLUE);
    assert_eq!(px(&c, 1, 1), BLACK);
}

/// A small deterministic generator for the randomised tests (xorshift64).
fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

#[test]
fn composite_row_matches_per_pixel_select() {
    // The 8-pixel fast paths (all transparent, none, mixed) and the remainder must paint
    // exactly what the plain per-pixel rule paints, for every width and run pattern.
    let mut rand = xorshift(0x1234_5678_9abc_def1);
    let mut lut = [[0u8; 3]; 256];
    for (i, e) in lut.iter_mut().enumerate() {
        *e = [i as u8, (i as u8).wrapping_mul(7), 255 - i as u8];
    }
    for round in 0..2000 {
        let width = (rand() % 70) as usize;
        let t = (rand() % 256) as u8;
        let mut src = Vec::with_capacity(width);
        while src.len() < width {
            // Runs of transparent or opaque pixels, short or long.
            let run = 1 + (rand() % if round % 2 == 0 { 3 } else { 20 }) as usize;
            let transparent = rand() & 1 == 0;
            for _ in 0..run.min(width - src.len()) {
                src.push(if transparent { t } else { (rand() % 256) as u8 });
            }
        }
        let before: Vec<u8> = (0..width * 3).map(|_| (rand() % 256) as u8).collect();
        let mut fast = before.clone();
        composite_row(&mut fast, &src, &lut, Some(t));
        let mut expected = before.clone();
        for (d, &i) in expected.chunks_exact_mut(3).zip(&src) {
            if i != t {
                d.copy_from_slice(&lut[usize::from(i)]);
            }
        }
        assert_eq!(fast, expected, "round {round}, width {width}");
    }
}

#[test]
fn transparency_over_previous_frame() {
    // Frame 1 is full-size white with a transparent (index 0) checkerboard hole pattern.
    let mut t = f((0, 0, 4, 4), 4);
    for (i, p) in t.px.iter_mut().enumerate() {
        if (i % 4 + i / 4) % 2 == 0 {
            *p = 0;
        }
    }
    t.transparent = Some(0);
    let bytes = encode(4, 4, Some(&PAL), &[f((0, 0, 4, 4), 1), t]);
    let c = canvas(&bytes, 1);
    for y in 0..4 {
        for x in 0..4 {
            let want = if (x + y) % 2 == 0 { RED } else { WHITE };
            assert_eq!(px(&c, x, y), want, "({x},{y})");
        }
    }
    // On the first frame, transparent pixels show as black.
    let mut first = f((0, 0, 2, 1), 0);
    first.px = vec![0, 4];
    first.transparent = Some(0);
    let c = canvas(&encode(2, 1, Some(&PAL), &[first]), 0);
    assert_eq!((px(&c, 0, 0), px(&c, 1, 0)), (BLACK, WHITE));
}

#[test]
fn frame_offset_places_subrectangle() {
    let mut sub = f((2, 1, 2, 2), 0);
    sub.px = vec![1, 2, 3, 4];
    let bytes = encode(5, 4, Some(&PAL), &[f((0, 0, 5, 4), 0), sub]);
    let c = canvas(&bytes, 1);
    assert_eq!(px(&c, 2, 1), RED);
    assert_eq!(px(&c, 3, 1), GREEN);
    assert_eq!(px(&c, 2, 2), BLUE);
    assert_eq!(px(&c, 3, 2), WHITE);
    assert_eq!(px(&c, 1, 1), BLACK);
    assert_eq!(px(&c, 4, 2), BLACK);
    assert_eq!(px(&c, 2, 3), BLACK);
}

#[test]
fn local_palette_overrides_global() {
    let mut local = f((0, 0, 2, 1), 0);
    local.px = vec![0, 1];
    local.palette = Some(vec![10, 20, 30, 40, 50, 60]);
    let bytes = encode(2, 1, Some(&PAL), &[f((0, 0, 2, 1), 1), local, f((0, 0, 1, 1), 2)]);
    let c = canvas(&bytes, 1);
    assert_eq!(px(&c, 0, 0), [10, 20, 30]);
    assert_eq!(px(&c, 1, 0), [40, 50, 60]);
    // The next frame without a local table goes back to the global one.
    assert_eq!(px(&canvas(&bytes, 2), 0, 0), GREEN);
    // No global table at all, local tables only.
    let mut only = f((0, 0, 1, 1), 1);
    only.palette = Some(vec![1, 2, 3, 4, 5, 6]);
    let c = canvas(&encode(1, 1, None, &[only]), 0);
    assert_eq!(px(&c, 0, 0), [4, 5, 6]);
    let scan = scan(&bytes, &DecodeLimits::default()).unwrap();
    assert_eq!(scan.local_palette_frames, 1);
}

#[test]
fn palette_index_past_table_is_black() {
    let mut a = f((0, 0, 2, 1), 0);
    a.px = vec![1, 3]; // 2-entry table: index 3 is past its end
    a.palette = Some(vec![0, 0, 0, 9, 9, 9]);
    let c = canvas(&encode(2, 1, None, &[a]), 0);
    assert_eq!((px(&c, 0, 0), px(&c, 1, 0)), ([9, 9, 9], BLACK));
}

#[test]
fn interlaced_rows_are_deinterlaced() {
    // 1x10 image, row y has palette index y % 8. Data must be written in interlace order.
    let h = 10u16;
    let rows: Vec<u8> = (0..h).map(|y| (y % 8) as u8).collect();
    let order: Vec<usize> =
        INTERLACE_PASSES.iter().flat_map(|&(s, step)| (s as usize..h as usize).step_by(step)).collect();
    assert_eq!(order, [0, 8, 4, 2, 6, 1, 3, 5, 7, 9]);
    let mut fr = f((0, 0, 1, h), 0);
    fr.px = order.iter().map(|&y| rows[y]).collect();
    fr.interlaced = true;
    let bytes = encode(1, h, Some(&PAL), &[fr]);
    let c = canvas(&bytes, 0);
    for y in 0..u32::from(h) {
        let i = (y % 8) as usize * 3;
        assert_eq!(px(&c, 0, y), [PAL[i], PAL[i + 1], PAL[i + 2]], "row {y}");
    }
}

#[test]
fn partially_offscreen_frame_is_clipped() {
    // 3x3 frame at (2,2) on a 4x4 screen: only its top-left 2x2 is visible.
    let mut fr = f((2, 2, 3, 3), 0);
    fr.px = vec![1, 2, 3, 2, 3, 4, 3, 4, 5];
    let bytes = encode(4, 4, Some(&PAL), &[f((0, 0, 4, 4), 4), fr]);
    let c = canvas(&bytes, 1);
    assert_eq!(px(&c, 2, 2), RED);
    assert_eq!(px(&c, 3, 2), GREEN);
    assert_eq!(px(&c, 2, 3), GREEN);
    assert_eq!(px(&c, 3, 3), BLUE);
    assert_eq!(px(&c, 1, 1), WHITE);
    let s = decode_and_sample(&bytes, SampleSpec { frames: 2, size: 8 }, &DecodeLimits::default()).unwrap();
    assert_eq!(s.count, 2);
}

#[test]
fn entirely_offscreen_later_frame_draws_nothing() {
    // Browsers clip later frames to the screen; one entirely outside draws nothing.
    let bytes = encode(4, 4, Some(&PAL), &[f((0, 0, 4, 4), 1), f((4, 0, 2, 2), 2), f((60000, 60000, 2, 2), 2)]);
    let s = decode_and_sample(&bytes, SPEC, &DecodeLimits::default()).unwrap();
    assert_eq!((s.total_frames, s.width, s.height), (3, 4, 4));
    for i in 1..3 {
        let c = canvas(&bytes, i);
        assert!(c.2.chunks_exact(3).all(|p| p == RED), "frame {i}");
    }
}

#[test]
fn zero_sized_screen_grows_to_first_frame() {
    // Canvas rule (Firefox nsGIFDecoder2): the screen takes the first frame's size; later
    // frames are clipped to it.
    let bytes = encode(0, 0, Some(&PAL), &[f((1, 1, 3, 2), 1), f((1, 1, 3, 3), 2)]);
    let c = canvas(&bytes, 0);
    assert_eq!((c.0, c.1), (3, 2));
    assert!(c.2.chunks_exact(3).all(|p| p == RED), "first frame moved to 0,0");
    let c = canvas(&bytes, 1);
    assert_eq!(px(&c, 0, 0), RED);
    assert_eq!(px(&c, 1, 1), GREEN);
    assert_eq!(px(&c, 2, 1), GREEN);
    let empty = encode(0, 0, Some(&PAL), &[f((0, 0, 0, 0), 0)]);
    let e = decode_and_sample(&empty, SPEC, &DecodeLimits::default()).unwrap_err();
    assert!(matches!(e, DecodeError::EmptyImage), "{e}");
    assert_eq!(e.reason(), "no_frames");
}

#[test]
fn frames_are_sampled_by_display_time_and_signed() {
    // Red 0.5 s, green 3 s, blue and white 0.5 s each (4.5 s): 9 instants of 0.5 s land once on
    // red, six times on green, once each on blue and white. By index, green would be one of four.
    let mut frames = vec![f((0, 0, 8, 8), 1), f((0, 0, 8, 8), 2), f((0, 0, 8, 8), 3), f((0, 0, 8, 8), 4)];
    for (fr, d) in frames.iter_mut().zip([50, 300, 50, 50]) {
        fr.delay = d;
    }
    let bytes = encode(8, 8, Some(&PAL), &frames);
    let s = decode_and_sample(&bytes, SampleSpec { frames: 9, size: 8 }, &DecodeLimits::default()).unwrap();
    assert_eq!((s.count, s.total_frames), (4, 4));
    assert_eq!(s.indices, [0, 1, 2, 3]);
    let nine = |n: f32| n / 9.0;
    assert_eq!(s.shown, [nine(1.0), nine(6.0), nine(1.0), nine(1.0)]);
    assert_eq!(&s.signatures[1].thumb[..3], &GREEN);
    assert_eq!(s.signatures[1].luma_std, 0.0, "a uniform frame shows nothing");
    assert!(s.signatures[0].distance(&s.signatures[1]) > 100.0);
    // Three instants (0.75 s, 2.25 s, 3.75 s): none on red, two on green, one on blue.
    let s = decode_and_sample(&bytes, SampleSpec { frames: 3, size: 8 }, &DecodeLimits::default()).unwrap();
    assert_eq!(s.indices, [1, 2]);
    assert_eq!(s.shown, [2.0 / 3.0, 1.0 / 3.0]);
    assert_eq!(s.rgb.len(), 2 * 8 * 8 * 3);
    assert_eq!(&s.rgb[..3], &GREEN);
    assert_eq!(&s.rgb[8 * 8 * 3..8 * 8 * 3 + 3], &BLUE);
}

#[test]
fn zero_area_frame_takes_screen_size_and_paints_what_its_data_holds() {
    let bytes = encode(2, 2, Some(&PAL), &[f((0, 0, 2, 2), 1), f((1, 1, 0, 0), 0), f((0, 0, 1, 1), 2)]);
    assert_eq!(px(&canvas(&bytes, 1), 1, 1), RED);
    assert_eq!(px(&canvas(&bytes, 2), 0, 0), GREEN);
    let s = decode_and_sample(&bytes, SPEC, &DecodeLimits::default()).unwrap();
    assert_eq!((s.total_frames, s.count), (3, 3));
}

#[test]
fn key_frames_skip_earlier_frames_without_changing_output() {
    // Frames alternate full opaque key frames and small sub-rectangles; the skipping plan
    // must give the same canvas as drawing every frame.
    let mut frames = Vec::new();
    for i in 0..12u8 {
        if i % 4 == 0 {
            frames.push(f((0, 0, 6, 6), 1 + i % 3));
        } else {
            let mut s = f((u16::from(i % 5), u16::from(i % 4), 2, 2), 4);
            s.dispose = if i % 3 == 0 { DisposalMethod::Previous } else { DisposalMethod::Keep };
            s.transparent = Some(0);
            s.px[0] = 0;
            frames.push(s);
        }
    }
    let bytes = encode(6, 6, Some(&PAL), &frames);
    let sc = scan(&bytes, &DecodeLimits::default()).unwrap();
    let samples = sample_indices(12, 3); // 2, 6, 10
    assert_eq!(samples, [2, 6, 10]);
    let needed = plan(&sc, &samples);
    let want: Vec<bool> = (0..=10).map(|j| !matches!(j, 3 | 7)).collect();
    assert_eq!(needed, want);
    // Reference: render with every frame needed.
    let mut reference = Vec::new();
    let all: Vec<usize> = (0..12).collect();
    render(&bytes, &sc, &all, 0, true, |slot, c: &[u8]| {
        if samples.contains(&slot) {
            reference.push(c.to_vec());
        }
        Ok(())
    })
    .unwrap();
    let mut skipped = Vec::new();
    render(&bytes, &sc, &samples, 0, true, |_, c: &[u8]| {
        skipped.push(c.to_vec());
        Ok(())
    })
    .unwrap();
    assert_eq!(reference, skipped);
}

#[test]
fn sample_indices_are_spread_distinct_increasing() {
    assert_eq!(sample_indices(10, 4), [1, 3, 6, 8]);
    assert_eq!(sample_indices(8, 8), (0..8).collect::<Vec<_>>());
    assert_eq!(sample_indices(3, 8), [0, 1, 2]);
    assert_eq!(sample_indices(1, 1), [0]);
    assert_eq!(sample_indices(783, 8), [48, 146, 244, 342, 440, 538, 636, 734]);
    for n in 1..200 {
        for k in 1..20 {
            let s = sample_indices(n, k);
            assert_eq!(s.len(), k.min(n));
            assert!(s.windows(2).all(|w| w[0] < w[1]), "n={n} k={k}");
            assert!(*s.last().unwrap() < n);
        }
    }
}

#[test]
fn output_is_center_crop_of_shorter_side() {
    // 60x20 screen: red | green | blue thirds. Shorter side 20 -> 10 px, centre crop: the
    // output is the green third; only the outermost columns see a little of the filter's
    // support beyond the crop box, red on the left and, symmetrically, blue on the right.
    let px: Vec<u8> = (0..20).flat_map(|_| (0..60u8).map(|x| 1 + x / 20)).collect();
    let mut fr = f((0, 0, 60, 20), 0);
    fr.px = px;
    let bytes = encode(60, 20, Some(&PAL), &[fr]);
    let s = decode_and_sample(&bytes, SampleSpec { frames: 4, size: 10 }, &DecodeLimits::default()).unwrap();
    assert_eq!((s.count, s.total_frames, s.width, s.height), (1, 1, 60, 20));
    let at = |x: usize, y: usize| &s.rgb[(y * 10 + x) * 3..(y * 10 + x) * 3 + 3];
    for y in 0..10 {
        for x in 1..9 {
            assert_eq!(at(x, y), GREEN, "({x},{y})");
        }
        let (l, r) = (at(0, y), at(9, y));
        assert!(l[0] > 0 && l[1] > 200 && l[2] == 0, "{l:?}");
        assert!(r[2] > 0 && r[1] > 200 && r[0] == 0, "{r:?}");
        assert_eq!((l[0], l[1]), (r[2], r[1]), "crop is centred");
    }
}

#[test]
fn error_reasons_for_small_hostile_inputs() {
    let l = DecodeLimits::default();
    let r = |b: &[u8]| decode_and_sample(b, SPEC, &l).unwrap_err().reason();
    assert_eq!(r(b""), "empty_object");
    assert_eq!(r(b"\x89PNG\r\n\x1a\n"), "not_a_gif");
    assert_eq!(r(b"GIF88a\x01\x00\x01\x00\x00\x00\x00"), "not_a_gif");
    assert_eq!(r(b"GIF8"), "truncated");
    assert_eq!(r(b"GIF89a\x01\x00"), "truncated");
    // Header + trailer, no frames.
    assert_eq!(r(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"), "no_frames");
    let good = encode(4, 4, Some(&PAL), &[f((0, 0, 4, 4), 1), f((0, 0, 4, 4), 2)]);
    // 37 = header with its 8-colour table, 45 = after the first graphic control extension:
    // clean ends before any image are "no frames", other cuts before the first frame is
    // complete are "truncated"; later cuts decode (one rule for cut files).
    let sc = scan(&good, &l).unwrap();
    let first_end = skip_sub_blocks(&good, sc.frames[0].data + 1).unwrap();
    // Block boundaries after the first frame: a cut there is a clean end (missing trailer).
    let mut clean = vec![first_end, good.len() - 1];
    if good[first_end] == b'!' {
        clean.push(skip_sub_blocks(&good, first_end + 2).unwrap());
    }
    for cut in 6..good.len() {
        let got = decode_and_sample(&good[..cut], SPEC, &l);
        if cut < first_end {
            let want = if cut == 37 || cut == 45 { "no_frames" } else { "truncated" };
            assert_eq!(got.unwrap_err().reason(), want, "cut at {cut}");
        } else {
            let s = got.unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            // A cut between blocks is a clean end; one inside a block is flagged.
            let want: &[&str] = if clean.contains(&cut) { &[] } else { &["truncated"] };
            assert_eq!(s.warnings, want, "cut at {cut}");
            assert!(s.total_frames >= 1);
        }
    }
    // Limits.
    let tiny = DecodeLimits { max_frames: 1, ..DecodeLimits::default() };
    let e = decode_and_sample(&good, SPEC, &tiny).unwrap_err();
    assert!(matches!(e, DecodeError::TooLarge { what: "frames", .. }), "{e}");
    let tiny = DecodeLimits { max_decoded_pixels: 31, ..DecodeLimits::default() };
    let e = decode_and_sample(&good, SPEC, &tiny).unwrap_err();
    assert!(matches!(e, DecodeError::TooLarge { what: "decoded_pixels", value: 32, limit: 31 }), "{e}");
    let tiny = DecodeLimits { max_canvas_pixels: 15, ..DecodeLimits::default() };
    let e = decode_and_sample(&good, SPEC, &tiny).unwrap_err();
    assert!(matches!(e, DecodeError::TooLarge { what: "canvas_pixels", .. }), "{e}");
    // Bad spec.
    let e = decode_and_sample(&good, SampleSpec { frames: 0, size: 224 }, &l).unwrap_err();
    assert!(matches!(e, DecodeError::InvalidSpec(_)), "{e}");
    assert_eq!(e.reason(), "decode_failed");
    let e = decode_and_sample(&good, SampleSpec { frames: 1, size: 0 }, &l).unwrap_err();
    assert!(matches!(e, DecodeError::InvalidSpec(_)), "{e}");
    assert_eq!(e.reason(), "decode_failed");
}

#[test]
fn lzw_data_too_short_is_drawn_as_far_as_it_goes() {
    // Hand-assembled: 2x2 screen, one 2x2 frame whose LZW stream ends after 1 pixel.
    let mut b = b"GIF89a\x02\x00\x02\x00\x80\x00\x00".to_vec();
    b.extend_from_slice(&[0, 0, 0, 255, 255, 255]); // 2-colour global table
    b.extend_from_slice(b",\x00\x00\x00\x00\x02\x00\x02\x00\x00"); // image descriptor
    // min code size 2; codes (3 bits): clear(4), 1, end(5) -> LSB-first packing.
    let codes = [4u16, 1, 5];
    let mut acc = 0u32;
    let mut bits = 0;
    let mut data = Vec::new();
    for c in codes {
        acc |= u32::from(c) << bits;
        bits += 3;
        while bits >= 8 {
            data.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        data.push(acc as u8);
    }
    b.push(2);
    b.push(data.len() as u8);
    b.extend_from_slice(&data);
    b.push(0);
    b.push(b';');
    // One pixel (white) decoded; the rest of the frame stays transparent (black, alpha 0).
    let (w, h, frames) = composite_rgba(&b, &DecodeLimits::default(), usize::MAX).unwrap();
    assert_eq!((w, h), (2, 2));
    assert_eq!(frames[0], [[255, 255, 255, 255], [0; 4], [0; 4], [0; 4]].concat());
    let s = decode_and_sample(&b, SPEC, &DecodeLimits::default()).unwrap();
    assert!(s.warnings.is_empty());
}

#[test]
fn limits_serde_defaults_and_unknown_fields() {
    let l: DecodeLimits = serde_json::from_str(r#"{"max_frames": 10}"#).unwrap();
    assert_eq!(l, DecodeLimits { max_frames: 10, ..DecodeLimits::default() });
    assert!(serde_json::from_str::<DecodeLimits>(r#"{"max_frame": 10}"#).is_err());
}

#[test]
fn never_panics_on_mutated_inputs() {
    // Cheap in-test fuzzing: byte flips and truncations of a small multi-feature GIF.
    let mut sub = f((1, 1, 3, 3), 4);
    sub.transparent = Some(4);
    sub.dispose = DisposalMethod::Previous;
    sub.palette = Some(PAL.to_vec());
    sub.interlaced = true;
    let base = encode(5, 5, Some(&PAL), &[f((0, 0, 5, 5), 1), sub, f((3, 3, 4, 4), 2)]);
    let limits = DecodeLimits {
        max_canvas_pixels: 1 << 20,
        max_frames: 50,
        max_decoded_pixels: 1 << 22,
        ..DecodeLimits::default()
    };
    let spec = SampleSpec { frames: 4, size: 8 };
    let mut rand = xorshift(0x2545_f491_4f6c_dd1d);
    for _ in 0..20_000 {
        let state = rand();
        let mut m = base.clone();
        let flips = 1 + (state % 4) as usize;
        for k in 0..flips {
            let pos = ((state >> (8 + 8 * k)) as usize) % m.len();
            m[pos] = (state >> (3 * k)) as u8;
        }
        if state.is_multiple_of(7) {
            m.truncate((state >> 20) as usize % m.len());
        }
        let _ = decode_and_sample(&m, spec, &limits);
    }
}

// ---- conformance corpus (issue 11) ---------------------------------------------------------

fn conformance(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/conformance").join(name)
}

#[derive(serde::Deserialize)]
struct Quirk {
    file: String,
    rule: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    width: u32,
    #[serde(default)]
    height: u32,
    #[serde(default)]
    frames: Vec<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Every file of `testdata/conformance/` (generated by `tools/gen_conformance.py`, one per quirk
/// class) renders exactly as the browsers' rules say: every frame's RGBA, pixel by pixel
/// (where the expected alpha is 0 the RGB is not compared), the canvas size and the warnings;
/// or fails with the expected reason.
#[test]
fn conformance_corpus_matches_expected() {
    let text = std::fs::read_to_string(conformance("expected.json")).expect("expected.json");
    let quirks: Vec<Quirk> = serde_json::from_str(&text).unwrap();
    assert!(quirks.len() >= 30, "{} quirk files", quirks.len());
    let limits = DecodeLimits::default();
    for q in &quirks {
        let bytes = std::fs::read(conformance(&q.file)).expect(&q.file);
        let ctx = format!("{} ({})", q.file, q.rule);
        match &q.error {
            Some(reason) => {
                let e = decode_and_sample(&bytes, SPEC, &limits).expect_err(&ctx);
                assert_eq!(e.reason(), reason, "{ctx}: {e}");
                assert!(composite_rgba(&bytes, &limits, usize::MAX).is_err(), "{ctx}");
            }
            None => {
                let (w, h, frames) =
                    composite_rgba(&bytes, &limits, usize::MAX).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!((w, h), (q.width, q.height), "{ctx}: canvas size");
                assert_eq!(frames.len(), q.frames.len(), "{ctx}: frame count");
                for (i, (got, want)) in frames.iter().zip(&q.frames).enumerate() {
                    let want = unhex(want);
                    assert_eq!(got.len(), want.len(), "{ctx}: frame {i}");
                    for (k, (g, x)) in got.chunks_exact(4).zip(want.chunks_exact(4)).enumerate() {
                        let same = g[3] == x[3] && (x[3] == 0 || g == x);
                        assert!(
                            same,
                            "{ctx}: frame {i} pixel ({}, {}): got {g:?}, want {x:?}",
                            k as u32 % w,
                            k as u32 / w
                        );
                    }
                }
                let s = decode_and_sample(&bytes, SPEC, &limits).unwrap();
                assert_eq!(s.warnings, q.warnings, "{ctx}: warnings");
                assert_eq!(s.total_frames, q.frames.len(), "{ctx}");
            }
        }
    }
}

// ---- the five inputs of issue 11, built from a real frame --------------------------------

/// `chelsea_static.gif` split into (logical screen descriptor without the signature, global
/// colour table, the image block: descriptor to block terminator).
fn chelsea_parts() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let bytes = std::fs::read(testdata("chelsea_static.gif")).unwrap();
    let sc = scan(&bytes, &DecodeLimits::default()).unwrap();
    let f = sc.frames[0];
    assert!(f.palette.is_none() && (f.left, f.top, f.width, f.height) == (0, 0, 320, 240));
    let (gat, glen) = sc.global_palette.unwrap();
    let end = skip_sub_blocks(&bytes, f.data + 1).unwrap();
    (bytes[6..13].to_vec(), bytes[gat..gat + glen].to_vec(), bytes[f.data - 10..end].to_vec())
}

/// A 4-frame animation of the chelsea frame (GCE + image each), with `before` ahead of the first
/// image, and the trailer if `trailer`.
fn chelsea_animation(before: &[u8], trailer: bool) -> Vec<u8> {
    let (lsd, gct, img) = chelsea_parts();
    let mut b = b"GIF89a".to_vec();
    b.extend_from_slice(&lsd);
    b.extend_from_slice(&gct);
    b.extend_from_slice(b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00");
    b.extend_from_slice(before);
    for _ in 0..4 {
        b.extend_from_slice(b"\x21\xf9\x04\x00\x0a\x00\x00\x00");
        b.extend_from_slice(&img);
    }
    if trailer {
        b.push(b';');
    }
    b
}

fn chelsea_canvas() -> Vec<u8> {
    let bytes = std::fs::read(testdata("chelsea_static.gif")).unwrap();
    canvas(&bytes, 0).2
}

#[test]
fn issue11_1_missing_trailer_after_complete_frames_decodes_every_frame() {
    let full = chelsea_animation(&[], true);
    let cut = chelsea_animation(&[], false);
    assert_eq!(cut.len() + 1, full.len());
    let (a, b) = (decode_and_sample(&full, SPEC, &DecodeLimits::default()).unwrap(), {
        decode_and_sample(&cut, SPEC, &DecodeLimits::default()).unwrap()
    });
    assert_eq!((b.total_frames, b.count), (4, 4));
    assert!(b.warnings.is_empty(), "the end between blocks is a clean end");
    assert_eq!(a.rgb, b.rgb);
    for i in 0..4 {
        assert_eq!(canvas(&cut, i).2, chelsea_canvas(), "frame {i}");
    }
}

#[test]
fn issue11_2_unknown_extension_before_first_image_is_skipped() {
    let plain = chelsea_animation(&[], true);
    let odd = chelsea_animation(b"\x21\x2a\x00", true);
    let s = decode_and_sample(&odd, SPEC, &DecodeLimits::default()).unwrap();
    assert_eq!(s.total_frames, 4);
    assert_eq!(s.rgb, decode_and_sample(&plain, SPEC, &DecodeLimits::default()).unwrap().rgb);
    assert_eq!(canvas(&odd, 3).2, chelsea_canvas());
}

#[test]
fn issue11_3_small_logical_screen_grows_to_the_first_frame() {
    let (mut lsd, gct, img) = chelsea_parts();
    for (w, h) in [(1u16, 1u16), (100, 75)] {
        lsd[..2].copy_from_slice(&w.to_le_bytes());
        lsd[2..4].copy_from_slice(&h.to_le_bytes());
        let mut b = b"GIF89a".to_vec();
        b.extend_from_slice(&lsd);
        b.extend_from_slice(&gct);
        b.extend_from_slice(&img);
        b.push(b';');
        let s = decode_and_sample(&b, SPEC, &DecodeLimits::default()).unwrap();
        assert_eq!((s.width, s.height), (320, 240), "screen {w}x{h}");
        assert_eq!(canvas(&b, 0).2, chelsea_canvas(), "screen {w}x{h}: the whole photo");
        // Growth counts against the same limits: a canvas limit below 320x240 rejects it.
        let tight = DecodeLimits { max_canvas_pixels: 320 * 240 - 1, ..DecodeLimits::default() };
        let e = decode_and_sample(&b, SPEC, &tight).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge { what: "canvas_pixels", .. }), "{e}");
        let narrow = DecodeLimits { max_width: 319, ..DecodeLimits::default() };
        let e = decode_and_sample(&b, SPEC, &narrow).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge { what: "screen_width", .. }), "{e}");
    }
    // Later frames are clipped to the grown screen, not grown again.
    let mut b = encode(2, 2, Some(&PAL), &[f((0, 0, 2, 2), 1), f((0, 0, 4, 4), 2)]);
    b[6..10].copy_from_slice(&[1, 0, 1, 0]); // logical screen 1x1
    let (w, h, frames) = composite_rgba(&b, &DecodeLimits::default(), usize::MAX).unwrap();
    assert_eq!((w, h), (2, 2));
    assert!(frames[1].chunks_exact(4).all(|p| p[..3] == GREEN && p[3] == 255));
}

#[test]
fn issue11_4_tracking_pixel_with_lzw_code_size_1_decodes() {
    let hex = "47 49 46 38 39 61 01 00 01 00 80 00 00 c0 c0 c0 00 00 00 21 f9 04 01 00 00 00 00 2c 00 00 00 00 \
               01 00 01 00 00 01 01 32 00 3b";
    let b: Vec<u8> = hex.split_whitespace().map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
    let s = decode_and_sample(&b, SPEC, &DecodeLimits::default()).unwrap();
    assert_eq!((s.width, s.height, s.total_frames), (1, 1, 1));
    assert!(s.warnings.is_empty());
    // Index 0 is the transparent index: one transparent pixel (black on the RGB canvas).
    assert_eq!(composite_rgba(&b, &DecodeLimits::default(), usize::MAX).unwrap().2, [vec![0, 0, 0, 0]]);
    assert!(s.rgb.iter().all(|&v| v == 0));
}

#[test]
fn issue11_5_no_colour_table_renders_black() {
    let (mut lsd, _gct, img) = chelsea_parts();
    lsd[4] &= 0x7F; // no global colour table
    let mut b = b"GIF89a".to_vec();
    b.extend_from_slice(&lsd);
    b.extend_from_slice(&img);
    b.push(b';');
    let s = decode_and_sample(&b, SPEC, &DecodeLimits::default()).unwrap();
    assert_eq!((s.width, s.height), (320, 240));
    let (_, _, frames) = composite_rgba(&b, &DecodeLimits::default(), usize::MAX).unwrap();
    assert!(frames[0].chunks_exact(4).all(|p| p == [0, 0, 0, 255]), "every index is opaque black");
}
