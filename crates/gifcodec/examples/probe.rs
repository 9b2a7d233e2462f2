//! Runs autotag's GIF decoder over files and reports, one JSON line per file, what it makes of
//! each: `{"file", "ok": true, "width", "height", "frames", "warnings"}` or
//! `{"file", "ok": false, "reason", "error"}`. With `--rgba DIR`, also writes the first
//! `--max-frames N` (default 20) frames of each decodable file as raw RGBA
//! (`DIR/<index>.<frame>.rgba`, width × height × 4 bytes, alpha 0 or 255) for pixel comparison.
//! Used by `tools/peer_corpus.py`; default limits (`DecodeLimits::default()`), K = 8, 224 px.
//!
//! Usage: `cargo run --release -p gifcodec --example probe -- [--rgba DIR] [--max-frames N] FILE...`

use std::io::Write;

use gifcodec::{DecodeLimits, SampleSpec, composite_rgba, decode_and_sample};

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut rgba_dir, mut max_frames, mut files) = (None, 20usize, Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rgba" => rgba_dir = args.next(),
            "--max-frames" => max_frames = args.next().and_then(|n| n.parse().ok()).unwrap_or(20),
            _ => files.push(a),
        }
    }
    let limits = DecodeLimits::default();
    let spec = SampleSpec { frames: 8, size: 224 };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (i, file) in files.iter().enumerate() {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                let _ = writeln!(
                    out,
                    "{{\"file\":{},\"ok\":false,\"reason\":\"io\",\"error\":{}}}",
                    json_str(file),
                    json_str(&e.to_string())
                );
                continue;
            }
        };
        let line = match decode_and_sample(&bytes, spec, &limits) {
            Ok(s) => {
                let warnings: Vec<String> = s.warnings.iter().map(|w| json_str(w)).collect();
                if let Some(dir) = &rgba_dir
                    && let Ok((_, _, frames)) = composite_rgba(&bytes, &limits, max_frames)
                {
                    for (k, f) in frames.iter().enumerate() {
                        let _ = std::fs::write(format!("{dir}/{i}.{k}.rgba"), f);
                    }
                }
                format!(
                    "{{\"file\":{},\"ok\":true,\"width\":{},\"height\":{},\"frames\":{},\"warnings\":[{}]}}",
                    json_str(file),
                    s.width,
                    s.height,
                    s.total_frames,
                    warnings.join(",")
                )
            }
            Err(e) => format!(
                "{{\"file\":{},\"ok\":false,\"reason\":{},\"error\":{}}}",
                json_str(file),
                json_str(e.reason()),
                json_str(&e.to_string())
            ),
        };
        let _ = writeln!(out, "{line}");
    }
}
