//! Colour: the agent's YCbCr → RGB conversions (the datalake JPEG, the preview, the model's
//! input) honour the frame's colorimetry from the caps, and agree with GStreamer's own
//! `videoconvert` of the same frame within ±3 levels per channel (but for ≤ 3 % of values
//! 4–5 apart: rounding on both sides) and shift no colour against the RGB the frame was
//! made from — for BT.601, BT.709 and BT.2020, limited and full range, and for MJPEG
//! decoded by `jpegdec` (issue 14). NV12 is read in place and scores as I420; YUY2 and
//! UYVY (converted by the tail's `videoconvert`) keep their colour and score as I420.
//!
//! Each case pushes one frame through a real GStreamer pipeline: an `appsrc` with the
//! case's caps, a `tee`, the agent's own capture tail (`videoconvert ! APPSINK_CAPS !
//! appsink`) on one branch and `videoconvert` to RGB on the other.
//! The reference branch converts to 16-bit RGB (`RGBA64_LE`, rounded to 8 bits here):
//! GStreamer 1.22's 8-bit I420 → RGB fast path is itself 2–4 levels off the standard's
//! equations (BT.601 limited Y 128 → 128 instead of 130.4, Y 200 Cb 110 Cr 106 → green 235
//! instead of 239.2), its 16-bit path within about 1.3.

#[path = "common/packed.rs"]
mod packed;
#[path = "common/root.rs"]
mod root;

use endo_agent::capture::{CapturedFrame, SampleReader, APPSINK_CAPS};
use endo_agent::config::FovShape;
use endo_agent::encode::encode_jpeg;
use endo_agent::fov::Fov;
use endo_agent::frame::{yuv_to_rgb, Colour, Matrix, Rect};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use std::time::Instant;

const W: u32 = 320;
const H: u32 = 240;

/// The frame as the agent's capture tail hands it over, and GStreamer's RGB of it.
struct Converted {
    frame: CapturedFrame,
    reference: Vec<u8>,
}

/// Push `data` (one frame of `caps`, with `encode` elements between the source and the
/// tee) and pull one sample from each branch.
fn convert(caps: &str, encode: &str, data: Vec<u8>) -> Converted {
    let desc = format!(
        "appsrc name=src caps=\"{caps}\" format=time {encode} ! tee name=t \
         t. ! queue ! videoconvert ! {APPSINK_CAPS} ! appsink name=agent sync=false \
         t. ! queue ! videoconvert dither=none chroma-resampler=nearest \
            ! video/x-raw,format=RGBA64_LE ! appsink name=rgb sync=false"
    );
    let [a, r] = push_one(&desc, data, ["agent", "rgb"]);
    let frame = captured(&a);
    let rinfo = gst_video::VideoInfo::from_caps(r.caps().unwrap()).unwrap();
    let map = r.buffer().unwrap().map_readable().unwrap();
    let stride = rinfo.stride()[0] as usize;
    let mut reference = Vec::with_capacity((W * H * 3) as usize);
    for row in 0..H as usize {
        let line = &map[row * stride..row * stride + W as usize * 8];
        for px in line.chunks_exact(8) {
            for c in 0..3 {
                let v = u16::from_le_bytes([px[2 * c], px[2 * c + 1]]) as u32;
                reference.push(((v + 128) / 257) as u8);
            }
        }
    }
    Converted { frame, reference }
}

/// Launch `desc`, push `data` as the one buffer of its appsrc `src`, and pull one sample
/// from each appsink named in `sinks` (an error on the bus fails the test with it).
fn push_one<const N: usize>(desc: &str, data: Vec<u8>, sinks: [&str; N]) -> [gst::Sample; N] {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let element = |name: &str| pipeline.by_name(name).unwrap();
    let src = element("src").downcast::<gst_app::AppSrc>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut buffer = gst::Buffer::from_mut_slice(data);
    buffer.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    src.push_buffer(buffer).unwrap();
    src.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    if let Some(m) = bus.timed_pop_filtered(
        gst::ClockTime::from_mseconds(300),
        &[gst::MessageType::Error],
    ) {
        panic!("{desc}: {m:?}");
    }
    let samples = sinks.map(|name| {
        element(name)
            .downcast::<gst_app::AppSink>()
            .unwrap()
            .try_pull_sample(gst::ClockTime::from_seconds(10))
            .unwrap_or_else(|| panic!("{desc}: no frame on {name}"))
    });
    pipeline.set_state(gst::State::Null).unwrap();
    samples
}

/// The agent's frame of an appsink sample, as the capture callback makes it.
fn captured(s: &gst::Sample) -> CapturedFrame {
    SampleReader::default()
        .read(s, Instant::now())
        .expect("maps as I420 or NV12")
}

/// `rgb` (packed, W × H) as a tightly packed I420 frame of `matrix` and range, by the
/// standard's equations in floating point (chroma: the mean of each 2 × 2 block).
fn i420_of(rgb: &[u8], matrix: Matrix, full_range: bool) -> Vec<u8> {
    let (kr, kb) = match matrix {
        Matrix::Bt601 => (0.299, 0.114),
        Matrix::Bt709 => (0.2126, 0.0722),
        Matrix::Bt2020 => (0.2627, 0.0593),
    };
    let (ys, cs, y0) = if full_range {
        (255.0, 255.0, 0.0)
    } else {
        (219.0, 224.0, 16.0)
    };
    let (w, h) = (W as usize, H as usize);
    let mut d = vec![0u8; w * h * 3 / 2];
    let mut cb = vec![0f64; w * h];
    let mut cr = vec![0f64; w * h];
    for i in 0..w * h {
        let [r, g, b] = [0, 1, 2].map(|c| rgb[i * 3 + c] as f64 / 255.0);
        let y = kr * r + (1.0 - kr - kb) * g + kb * b;
        d[i] = (y0 + ys * y).round() as u8;
        cb[i] = (b - y) / (2.0 * (1.0 - kb));
        cr[i] = (r - y) / (2.0 * (1.0 - kr));
    }
    let (cw, ch) = (w / 2, h / 2);
    for y in 0..ch {
        for x in 0..cw {
            let at = |p: &[f64]| {
                (p[2 * y * w + 2 * x]
                    + p[2 * y * w + 2 * x + 1]
                    + p[(2 * y + 1) * w + 2 * x]
                    + p[(2 * y + 1) * w + 2 * x + 1])
                    / 4.0
            };
            d[w * h + y * cw + x] = (128.0 + cs * at(&cb)).round() as u8;
            d[w * h + cw * ch + y * cw + x] = (128.0 + cs * at(&cr)).round() as u8;
        }
    }
    d
}

/// A mucosa-like RGB frame: red-dominant, smooth, from dark to highlights of 250, with a
/// bluish band (what NBI shows as vessels).
fn mucosa_rgb() -> Vec<u8> {
    let mut d = Vec::with_capacity((W * H * 3) as usize);
    for y in 0..H {
        for x in 0..W {
            let t = x as f32 / W as f32;
            let s = y as f32 / H as f32;
            let band = (-((s - 0.5) * 8.0).powi(2)).exp();
            d.extend_from_slice(&[
                (20.0 + 230.0 * t * (1.0 - 0.5 * band)) as u8,
                (10.0 + 110.0 * s * t) as u8,
                (10.0 + 60.0 * (1.0 - t) * s + 150.0 * band * t) as u8,
            ]);
        }
    }
    d
}

/// How two packed RGB8 images of the same size differ.
#[derive(Debug)]
struct Diff {
    /// The largest absolute difference of one channel value.
    max: u8,
    /// The mean absolute difference.
    mean: f64,
    /// The share of channel values more than 3 levels apart.
    over3: f64,
    /// Per channel, the mean of `a − b`: a colour shift, which noise and compression
    /// do not cause.
    bias: [f64; 3],
}

fn diff(a: &[u8], b: &[u8]) -> Diff {
    assert_eq!(a.len(), b.len());
    let n = a.len() as f64;
    let d = || a.iter().zip(b).map(|(x, y)| x.abs_diff(*y));
    let mut bias = [0f64; 3];
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        bias[i % 3] += (*x as f64 - *y as f64) / (n / 3.0);
    }
    Diff {
        max: d().max().unwrap(),
        mean: d().map(f64::from).sum::<f64>() / n,
        over3: d().filter(|&x| x > 3).count() as f64 / n,
        bias,
    }
}

/// Within ±3 levels but for a few values (≤ 3 %) that rounding on both sides puts 4–5
/// apart.
fn agrees(d: &Diff) -> bool {
    d.max <= 5 && d.over3 <= 0.03 && d.mean <= 1.5
}

/// No colour shift: every channel's mean within ±`levels`.
fn unshifted(d: &Diff, levels: f64) -> bool {
    d.bias.iter().all(|b| b.abs() <= levels)
}

fn full_frame() -> Fov {
    Fov::new(Rect::new(0, 0, W, H), FovShape::Rect, &[], W, H)
}

fn decoded_jpeg(c: &Converted) -> Vec<u8> {
    let jpeg = encode_jpeg(&c.frame.view(), &full_frame(), 95).unwrap();
    image::load_from_memory(&jpeg).unwrap().to_rgb8().into_raw()
}

#[test]
fn raw_frames_convert_as_videoconvert_does_for_every_matrix_and_range() {
    let cases = [
        ("bt601", Matrix::Bt601, false),
        ("bt709", Matrix::Bt709, false),
        ("bt2020", Matrix::Bt2020, false),
        ("1:4:5:4", Matrix::Bt601, true),
        ("1:3:5:1", Matrix::Bt709, true),
    ];
    for (colorimetry, matrix, full_range) in cases {
        let caps = format!(
            "video/x-raw,format=I420,width={W},height={H},framerate=30/1,colorimetry={colorimetry}"
        );
        let source = mucosa_rgb();
        let c = convert(&caps, "", i420_of(&source, matrix, full_range));
        let view = c.frame.view();
        assert_eq!(
            view.colour,
            Colour { matrix, full_range },
            "{colorimetry}: the colour read from the caps"
        );
        // GStreamer's conversion, and the RGB the frame was made from (4:2:0 chroma
        // subsampling alone moves a few values by up to ±4 around the bluish band).
        let rgb = view.to_rgb();
        // GStreamer's 16-bit path reads 1.2–1.6 levels bright in red and blue (Y 128 →
        // 131.6, 130.1, 131.7 where the equations give 130.4): ±2 against it, ±1 against
        // the source.
        for (what, reference, shift) in [
            ("videoconvert", &c.reference, 2.0),
            ("the source", &source, 1.0),
        ] {
            let d = diff(&rgb, reference);
            println!("{colorimetry}: to_rgb vs {what}: {d:?}");
            assert!(
                agrees(&d) && unshifted(&d, shift),
                "{colorimetry}: to_rgb vs {what}: {d:?}"
            );
        }
        // The datalake JPEG (quality 95): compression moves single values further, but
        // shifts no colour.
        let j = diff(&decoded_jpeg(&c), &c.reference);
        println!("{colorimetry}: datalake JPEG vs videoconvert: {j:?}");
        assert!(
            j.mean <= 2.0 && unshifted(&j, 2.0),
            "{colorimetry}: the JPEG vs videoconvert: {j:?}"
        );
        // The conversion the agent used before, BT.601 limited range whatever the caps:
        // this comparison fails for every other colorimetry (so the test above can).
        if (matrix, full_range) != (Matrix::Bt601, false) {
            let mut fixed = Vec::with_capacity(c.reference.len());
            for row in 0..H {
                let (yr, c) = (view.y_row(row), view.chroma_row(row / 2));
                for (x, &y) in yr.iter().enumerate() {
                    let (u, v) = c.at(x / 2);
                    fixed.extend_from_slice(&yuv_to_rgb(y, u, v));
                }
            }
            let d = diff(&fixed, &c.reference);
            assert!(
                !(agrees(&d) && unshifted(&d, 2.0)),
                "{colorimetry}: BT.601 limited would pass too: {d:?}"
            );
        }
    }
}

#[test]
fn mjpeg_decoded_by_jpegdec_keeps_its_colour_in_the_datalake_jpeg() {
    // A capture card's MJPEG: a standard (full-range BT.601, 4:2:2) JPEG per frame.
    let source = mucosa_rgb();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode(&source, W, H, image::ExtendedColorType::Rgb8)
        .unwrap();
    let caps = format!("image/jpeg,width={W},height={H},framerate=30/1");
    let c = convert(&caps, "! jpegdec ! video/x-raw,format=I420", jpeg);
    let view = c.frame.view();
    assert!(
        view.colour.full_range,
        "jpegdec's frames are full range: {:?}",
        view.colour
    );
    let d = diff(&view.to_rgb(), &c.reference);
    println!("mjpeg: to_rgb vs videoconvert: {d:?}");
    assert!(
        agrees(&d) && unshifted(&d, 2.0),
        "mjpeg: to_rgb vs videoconvert: {d:?}"
    );
    // Against the RGB the card encoded: JPEG (the card's and the datalake's) moves values
    // and each rounds red and blue ≈ 0.7 levels down, but no colour may shift beyond that
    // (before the fix: red +11.5 and blue −6.5 on a real gastroscopy still).
    let written = decoded_jpeg(&c);
    let d = diff(&written, &source);
    println!("mjpeg: datalake JPEG vs the source: {d:?}");
    assert!(
        d.mean <= 2.0 && unshifted(&d, 2.0),
        "mjpeg: the datalake JPEG vs the source: {d:?}"
    );
    let clipped = |img: &[u8]| img.iter().filter(|&&v| v == 255).count() as f64 / img.len() as f64;
    assert!(
        clipped(&written) <= clipped(&source) + 0.002,
        "mjpeg: {:.2} % of the written values clip at 255, {:.2} % of the source's",
        clipped(&written) * 100.0,
        clipped(&source) * 100.0
    );
}

/// One frame through the agent's capture tail alone (`videoconvert ! APPSINK_CAPS !
/// appsink`), as the scorer receives it.
fn agent_frame(caps: &str, data: Vec<u8>) -> CapturedFrame {
    let desc = format!(
        "appsrc name=src caps=\"{caps}\" format=time ! videoconvert ! {APPSINK_CAPS} \
         ! appsink name=agent sync=false"
    );
    let [s] = push_one(&desc, data, ["agent"]);
    captured(&s)
}

/// The scorer with the shipped model and the default `[scoring]`.
fn shipped_scorer() -> endo_agent::score::Scorer {
    let model =
        endo_agent::score::model::ModelRunner::load(&root::repo().join("models/quality-int8.onnx"))
            .unwrap();
    let cfg = endo_agent::config::Config::default();
    endo_agent::score::Scorer::new(cfg.scoring, Some(model))
}

/// A real photograph of the committed test subset at `w` × `h`, as I420.
fn real_still(w: u32, h: u32) -> endo_agent::frame::I420Image {
    let path = root::repo().join("models/realset/subset/Dune-0_clean_0.jpg");
    let rgb = image::open(path).unwrap().to_rgb8();
    let rgb = image::imageops::resize(&rgb, w, h, image::imageops::FilterType::Triangle);
    endo_agent::frame::I420Image::from_rgb(w, h, rgb.as_raw())
}

/// The field of view a 1280×720 processor layout would have, scaled to `w` × `h`.
fn processor_fov(w: u32, h: u32) -> Fov {
    Fov::new(
        Rect::new((w / 4) & !1, (h / 20) & !1, (w / 2) & !1, (h * 9 / 10) & !1),
        FovShape::Circle,
        &[],
        w,
        h,
    )
}

/// Issue 14: NV12 (many UVC cards) is read in place, not converted, and converts and
/// encodes exactly as the same frame in I420, with the same classical measures and a
/// quality within 0.005 — on real photographic content at 720p and 1080p.
#[test]
fn nv12_frames_are_read_in_place_and_score_as_their_i420_twins() {
    let mut scorer = shipped_scorer();
    for (w, h) in [(1280u32, 720u32), (1920, 1080)] {
        let img = real_still(w, h);
        let i420: Vec<u8> = [img.y.clone(), img.u.clone(), img.v.clone()].concat();
        let mut nv12 = img.y.clone();
        for (u, v) in img.u.iter().zip(&img.v) {
            nv12.extend_from_slice(&[*u, *v]);
        }
        let caps = |f: &str| {
            format!("video/x-raw,format={f},width={w},height={h},framerate=30/1,colorimetry=bt601")
        };
        let planar = agent_frame(&caps("I420"), i420);
        let packed = agent_frame(&caps("NV12"), nv12);
        let (a, b) = (planar.view(), packed.view());
        assert_eq!(
            (a.uv_step, b.uv_step),
            (1, 2),
            "{w}x{h}: NV12 must arrive as NV12"
        );
        let fov = processor_fov(w, h);
        assert_eq!(
            a.crop(fov.rect).to_rgb(),
            b.crop(fov.rect).to_rgb(),
            "{w}x{h}: RGB"
        );
        assert_eq!(
            encode_jpeg(&a, &fov, 90).unwrap(),
            encode_jpeg(&b, &fov, 90).unwrap(),
            "{w}x{h}: JPEG"
        );
        scorer.reset();
        let (sa, _) = scorer.score(&a, &fov).unwrap();
        scorer.reset();
        let (sb, _) = scorer.score(&b, &fov).unwrap();
        println!(
            "{w}x{h}: I420 quality {:.4} (model {:?}), NV12 {:.4} (model {:?})",
            sa.quality,
            sa.model_quality(),
            sb.quality,
            sb.model_quality()
        );
        assert_eq!(sa.measures, sb.measures, "{w}x{h}: classical measures");
        // The model's input differs by the resizer's rounding of chroma pairs (its
        // two-channel kernel rounds a few averages the other way): 0.002 measured at 1080p.
        assert!(
            (sa.quality - sb.quality).abs() <= 0.005,
            "{w}x{h}: quality {} vs {}",
            sa.quality,
            sb.quality
        );
    }
}

/// Issue 14: YUY2 and UYVY (DeckLink, most HDMI/SDI-to-USB cards) through the agent's
/// capture tail (converted to I420 by its `videoconvert`) keep their colorimetry: the RGB
/// and the datalake JPEG agree with GStreamer's own RGB of the packed frame for BT.601 and
/// BT.709, limited and full range.
#[test]
fn packed_422_frames_keep_their_colour_through_the_capture_tail() {
    let cases = [
        ("bt601", Matrix::Bt601, false),
        ("bt709", Matrix::Bt709, false),
        ("1:4:5:4", Matrix::Bt601, true),
        ("1:3:5:1", Matrix::Bt709, true),
    ];
    let source = mucosa_rgb();
    for format in ["YUY2", "UYVY"] {
        for (colorimetry, matrix, full_range) in cases {
            let caps = format!(
                "video/x-raw,format={format},width={W},height={H},framerate=30/1,\
                 colorimetry={colorimetry}"
            );
            let i420 = i420_of(&source, matrix, full_range);
            let (w, h) = (W as usize, H as usize);
            let (y, uv) = i420.split_at(w * h);
            let (u, v) = uv.split_at(w * h / 4);
            let c = convert(&caps, "", packed::packed_422(y, u, v, w, h, format));
            let view = c.frame.view();
            let what = format!("{format} {colorimetry}");
            assert_eq!(view.uv_step, 1, "{what}: planar I420 at the appsink");
            assert_eq!(view.colour, Colour { matrix, full_range }, "{what}: colour");
            // Exact: the planes are the 4:2:0 frame the packed one was made of.
            let own = view.to_owned_image();
            assert_eq!(
                [own.y, own.u, own.v].concat(),
                i420,
                "{what}: the unpacked planes"
            );
            let d = diff(&view.to_rgb(), &c.reference);
            println!("{what}: to_rgb vs videoconvert: {d:?}");
            assert!(
                agrees(&d) && unshifted(&d, 2.0),
                "{what}: to_rgb vs videoconvert: {d:?}"
            );
            let j = diff(&decoded_jpeg(&c), &c.reference);
            println!("{what}: datalake JPEG vs videoconvert: {j:?}");
            assert!(
                j.mean <= 2.0 && unshifted(&j, 2.0),
                "{what}: the JPEG vs videoconvert: {j:?}"
            );
        }
    }
}

/// Issue 14: a real still at 720p and 1080p scores the same whether the card sends it as
/// I420, YUY2 or UYVY (the planes at the appsink are the same bytes, so the measures,
/// the model's quality and the JPEG are equal, not merely close).
#[test]
fn packed_422_frames_score_as_their_i420_twins() {
    let mut scorer = shipped_scorer();
    for (w, h) in [(1280u32, 720u32), (1920, 1080)] {
        let img = real_still(w, h);
        let i420: Vec<u8> = [img.y.clone(), img.u.clone(), img.v.clone()].concat();
        let caps = |f: &str| {
            format!("video/x-raw,format={f},width={w},height={h},framerate=30/1,colorimetry=bt709")
        };
        let fov = processor_fov(w, h);
        let planar = agent_frame(&caps("I420"), i420.clone());
        scorer.reset();
        let (want, _) = scorer.score(&planar.view(), &fov).unwrap();
        let want_jpeg = encode_jpeg(&planar.view(), &fov, 90).unwrap();
        for format in ["YUY2", "UYVY"] {
            let data = packed::packed_422(&img.y, &img.u, &img.v, w as usize, h as usize, format);
            let frame = agent_frame(&caps(format), data);
            let view = frame.view();
            assert_eq!(view.colour.matrix, Matrix::Bt709, "{format} {w}x{h}");
            let own = view.to_owned_image();
            assert!(
                [own.y, own.u, own.v].concat() == i420,
                "{format} {w}x{h}: the planes differ from the I420 twin's"
            );
            scorer.reset();
            let (got, _) = scorer.score(&view, &fov).unwrap();
            println!(
                "{format} {w}x{h}: quality {:.4} (I420 {:.4})",
                got.quality, want.quality
            );
            assert_eq!(got.measures, want.measures, "{format} {w}x{h}: measures");
            assert_eq!(got.quality, want.quality, "{format} {w}x{h}: quality");
            assert_eq!(
                encode_jpeg(&view, &fov, 90).unwrap(),
                want_jpeg,
                "{format} {w}x{h}: JPEG"
            );
        }
    }
}
