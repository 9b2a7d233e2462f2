//! `autotag tag` on real GIFs with the exported model: local files and s3:// objects on the
//! real S3 server, one line per input, errors as lines with the worker's dead-letter reasons.

use autotag_test_support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_files_and_s3_objects_one_line_each() {
    let s3 = S3Server::start();
    s3.create_bucket("gifs").await;
    s3.put("gifs", "uploads/coffee.gif", read(&testdata("coffee_static.gif"))).await;
    let inputs = [
        testdata("chelsea_static.gif").display().to_string(),
        testdata("not_a_gif.gif").display().to_string(),
        testdata("no-such-file.gif").display().to_string(),
        "s3://gifs/uploads/coffee.gif".to_owned(),
        "s3://gifs/uploads/missing.gif".to_owned(),
    ];
    let out = autotag_cli(&["tag", "--json"]).args(&inputs).envs(s3.aws_env()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "every input got a line, so exit 0: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("JSON lines")).collect();
    assert_eq!(lines.len(), inputs.len(), "{stdout}");
    assert!(!stdout.contains("00000"), "scores print in the f32's shortest form, as suggestions do: {stdout}");
    let tags = |v: &Value| -> Vec<String> { sorted_tags(v) };
    for (line, input) in lines.iter().zip(&inputs) {
        assert_eq!(line["input"], input.as_str());
    }
    assert!(tags(&lines[0]).contains(&"cat".to_owned()), "{}", lines[0]);
    assert_eq!(lines[0]["frames_sampled"], 1, "a static GIF is one frame");
    assert_eq!(lines[1]["error"]["reason"], "not_a_gif", "{}", lines[1]);
    assert_eq!(lines[2]["error"]["reason"], "object_not_found", "{}", lines[2]);
    assert!(tags(&lines[3]).contains(&"coffee".to_owned()), "{}", lines[3]);
    assert_eq!(lines[4]["error"]["reason"], "object_not_found", "{}", lines[4]);
    for t in lines[0]["tags"].as_array().unwrap() {
        let score = t["score"].as_f64().unwrap();
        assert!((0.4..=1.0).contains(&score), "at least the calibrated threshold (tools/scoring.json): {t}");
    }

    // The table, for people.
    let out = autotag_cli(&["tag", &inputs[0], &inputs[1]]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(table.lines().next().unwrap().starts_with("input"), "{table}");
    assert!(table.contains("cat ") && table.contains("error not_a_gif"), "{table}");
}

/// `autotag tag --json INPUTS` with the exported model: its lines, after a successful exit.
fn tag_json(inputs: &[String]) -> Vec<Value> {
    let out = autotag_cli(&["tag", "--json"]).args(inputs).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A GIF of `frames` frames of `w`×`h` pixels, all of palette index 0 (`rgb`), optionally
/// transparent (index 0 is then the transparent colour: nothing is ever painted).
fn uniform_gif(w: u16, h: u16, frames: usize, rgb: [u8; 3], transparent: bool) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let palette = [rgb, [255 - rgb[0], 255 - rgb[1], 255 - rgb[2]]].concat();
        let mut enc = gif::Encoder::new(&mut out, w, h, &palette).unwrap();
        enc.set_repeat(gif::Repeat::Infinite).unwrap();
        for _ in 0..frames {
            let f = gif::Frame {
                width: w,
                height: h,
                delay: 10,
                buffer: std::borrow::Cow::Owned(vec![0u8; w as usize * h as usize]),
                transparent: transparent.then_some(0),
                ..gif::Frame::default()
            };
            enc.write_frame(&f).unwrap();
        }
    }
    out
}

/// Issue 14: a GIF that shows nothing gets no tags (the model scores a black frame `animal` at
/// 0.24-0.40; the scoring data drops content-free frames).
#[test]
fn blank_gifs_get_no_tags() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("black", uniform_gif(96, 64, 4, [0, 0, 0], false)),
        ("white", uniform_gif(96, 64, 4, [255, 255, 255], false)),
        ("grey", uniform_gif(96, 64, 4, [128, 128, 128], false)),
        ("one_pixel", uniform_gif(1, 1, 1, [200, 30, 30], false)),
        ("transparent", uniform_gif(64, 64, 3, [90, 200, 90], true)),
    ];
    let mut inputs = Vec::new();
    for (name, bytes) in &cases {
        let p = dir.path().join(format!("{name}.gif"));
        std::fs::write(&p, bytes).unwrap();
        inputs.push(p.display().to_string());
    }
    let lines = tag_json(&inputs);
    assert_eq!(lines.len(), cases.len(), "{lines:?}");
    for ((name, _), line) in cases.iter().zip(&lines) {
        assert!(line.get("error").is_none(), "{name} decodes: {line}");
        assert!(line["frames_sampled"].as_u64().unwrap() >= 1, "{name}: {line}");
        assert_eq!(line["tags"], serde_json::json!([]), "{name} shows nothing: {line}");
        assert_eq!(line["frames_inferred"], 0, "{name}: a blank frame is not inferred: {line}");
    }
}

/// The first frame of a test GIF as RGBA, centre-cropped to `w`×`h`.
fn photo_rgba(name: &str, w: u16, h: u16) -> Vec<u8> {
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::RGBA);
    let mut d = opts.read_info(std::io::Cursor::new(read(&testdata(name)))).unwrap();
    let f = d.read_next_frame().unwrap().unwrap();
    let (fw, fh, w, h) = (usize::from(f.width), usize::from(f.height), usize::from(w), usize::from(h));
    assert!(fw >= w && fh >= h, "{name} too small");
    let (x0, y0) = ((fw - w) / 2, (fh - h) / 2);
    let mut out = Vec::new();
    for y in y0..y0 + h {
        out.extend_from_slice(&f.buffer[(y * fw + x0) * 4..(y * fw + x0 + w) * 4]);
    }
    out
}

/// A GIF whose frames are the given RGBA pictures, 10 cs each.
fn photo_gif(w: u16, h: u16, frames: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut out, w, h, &[]).unwrap();
        for rgba in frames {
            let mut px = rgba.to_vec();
            let mut f = gif::Frame::from_rgba_speed(w, h, &mut px, 10);
            f.delay = 10;
            enc.write_frame(&f).unwrap();
        }
    }
    out
}

/// Issue 16: a picture repeated is inferred once, two alternating pictures twice, and the tags
/// are the pictures' (the scores of a skipped frame are those of the frame it repeats).
#[test]
fn repeated_frames_are_inferred_once() {
    let (w, h) = (240, 240);
    let cat = photo_rgba("chelsea_static.gif", w, h);
    let coffee = photo_rgba("coffee_static.gif", w, h);
    let dir = tempfile::tempdir().unwrap();
    let same = dir.path().join("same.gif");
    std::fs::write(&same, photo_gif(w, h, &[&cat[..]; 8])).unwrap();
    let alternating = dir.path().join("alternating.gif");
    let frames: Vec<&[u8]> = (0..8).map(|i| if i % 2 == 0 { &cat[..] } else { &coffee[..] }).collect();
    std::fs::write(&alternating, photo_gif(w, h, &frames)).unwrap();
    let lines = tag_json(&[same.display().to_string(), alternating.display().to_string()]);
    assert_eq!(
        (lines[0]["frames_sampled"].as_u64(), lines[0]["frames_inferred"].as_u64()),
        (Some(8), Some(1)),
        "{}",
        lines[0]
    );
    assert!(sorted_tags(&lines[0]).contains(&"cat".to_owned()), "{}", lines[0]);
    assert_eq!(
        (lines[1]["frames_sampled"].as_u64(), lines[1]["frames_inferred"].as_u64()),
        (Some(8), Some(2)),
        "{}",
        lines[1]
    );
    let tags = sorted_tags(&lines[1]);
    assert!(tags.contains(&"cat".to_owned()) && tags.contains(&"coffee".to_owned()), "both scenes: {}", lines[1]);
}
