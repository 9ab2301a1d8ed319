//! Criterion benches of the hot path (capture → score) at 1080p, on phantom frames:
//! preprocessing (crop + scale + convert, against convert-then-scale), the classical
//! measures, the model, the whole scorer; and JPEG encoding of a selected frame (off the
//! hot path, on the encode worker), the phantom generator's render time, and the
//! conversion of a packed 4:2:2 capture frame (YUY2, UYVY) to I420 by `videoconvert`.
//! `cargo bench --bench scoring`.

#[path = "../tests/common/packed.rs"]
mod packed;
#[path = "../tests/common/root.rs"]
mod root;

use criterion::{criterion_group, criterion_main, Criterion};
use endo_agent::config::{FovConfig, ScoringConfig};
use endo_agent::fov::{FovLocator, Locate};
use endo_agent::phantom::{Phantom, PhantomConfig};
use endo_agent::score::classical;
use endo_agent::score::model::ModelRunner;
use endo_agent::score::preprocess::Preprocessor;
use endo_agent::score::Scorer;
use fast_image_resize as fr;
use std::hint::black_box;

fn setup() -> (
    endo_agent::frame::I420Image,
    endo_agent::fov::Fov,
    ModelRunner,
) {
    let p = Phantom::new(PhantomConfig {
        width: 1920,
        height: 1080,
        fps: 60,
        ..PhantomConfig::default()
    });
    let frame = p.render(30);
    let mut loc = FovLocator::new(&FovConfig {
        auto_frames: 1,
        ..FovConfig::default()
    });
    let fov = match loc.observe(&frame.view()) {
        Locate::Locked(f) => f.clone(),
        Locate::Pending | Locate::Refused => panic!("no fov"),
    };
    let model = ModelRunner::load(&root::repo().join("models/quality-ref.onnx")).unwrap();
    (frame, fov, model)
}

fn benches(c: &mut Criterion) {
    let (frame, fov, mut model) = setup();
    let view = frame.view();
    let spec = model.manifest().input.clone();

    let mut g = c.benchmark_group("preprocess_1080p_fov_to_224");
    let mut pre = Preprocessor::new(&spec);
    g.bench_function("scale_then_convert", |b| {
        b.iter(|| pre.run(black_box(&view), fov.rect))
    });
    // The alternative the design rejects: full-resolution RGB first, then scale RGB.
    let mut resizer = fr::Resizer::new();
    let mut dst = fr::images::Image::new(224, 224, fr::PixelType::U8x3);
    g.bench_function("convert_then_scale", |b| {
        b.iter(|| {
            let rgb = view.crop(fov.rect).to_rgb();
            let src = fr::images::ImageRef::new(
                fov.rect.width,
                fov.rect.height,
                &rgb,
                fr::PixelType::U8x3,
            )
            .unwrap();
            let opts = fr::ResizeOptions::new()
                .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Box));
            resizer.resize(&src, &mut dst, &opts).unwrap();
            black_box(dst.buffer()[0])
        })
    });
    g.finish();

    let cfg = ScoringConfig::default();
    let crop = view.crop(fov.rect);
    c.bench_function("classical_measures_1080p", |b| {
        b.iter(|| classical::measure(black_box(&crop), &fov, &cfg))
    });
    // The two noise measures inside `measure` on their own: their share of it, side by side.
    c.bench_function("classical_noise_sigma_1080p", |b| {
        b.iter(|| classical::noise_sigma(black_box(&crop), &fov))
    });
    c.bench_function("classical_blockiness_1080p", |b| {
        b.iter(|| classical::blockiness(black_box(&crop), &fov))
    });

    pre.run(&view, fov.rect);
    let input = pre.input.clone();
    c.bench_function("model_reference_f32_224", |b| {
        b.iter(|| model.run(black_box(&input)).unwrap())
    });

    let mut scorer = Scorer::new(cfg.clone(), Some(model));
    c.bench_function("scorer_total_1080p", |b| {
        b.iter(|| scorer.score(black_box(&view), &fov).unwrap())
    });

    // The phantom generator feeds the e2e benchmark from its own thread; its cost per frame
    // bounds the frame rate it can sustain.
    let mut g = c.benchmark_group("phantom_render_1080p");
    g.sample_size(20);
    let sched = "good 1s; defocus 1s sigma=1.5; motion 1s len=24 angle=30; glare 1s area=0.06";
    let p = Phantom::new(PhantomConfig {
        width: 1920,
        height: 1080,
        fps: 30,
        schedule: endo_agent::phantom::Schedule::parse(sched).unwrap(),
        ..PhantomConfig::default()
    });
    let mut out = endo_agent::frame::I420Image::new(1920, 1080);
    for (name, idx) in [
        ("good", 5u64),
        ("defocus", 35),
        ("motion", 65),
        ("glare", 95),
    ] {
        g.bench_function(name, |b| b.iter(|| p.render_into(black_box(idx), &mut out)));
    }
    g.finish();

    let mut g = c.benchmark_group("encode");
    g.sample_size(20);
    g.bench_function("jpeg_q90_fov_1080p", |b| {
        b.iter(|| endo_agent::encode::encode_jpeg(black_box(&view), &fov, 90).unwrap())
    });
    g.finish();
}

/// A packed 4:2:2 frame from a capture card (YUY2, UYVY) to the I420 the scorer reads,
/// by GStreamer's converter with `videoconvert`'s defaults (one thread, as in the capture
/// tail), beside a plain copy of the same number of I420 bytes (the floor of any pass).
fn packed(c: &mut Criterion) {
    use gstreamer as gst;
    use gstreamer_video as gst_video;
    gst::init().unwrap();
    let (img, _, _) = setup();
    let (w, h) = (1920usize, 1080usize);
    let mut g = c.benchmark_group("capture_packed_1080p");
    let out_info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, w as u32, h as u32)
        .fps(gst::Fraction::new(60, 1))
        .build()
        .unwrap();
    for (format, gformat) in [
        ("YUY2", gst_video::VideoFormat::Yuy2),
        ("UYVY", gst_video::VideoFormat::Uyvy),
    ] {
        let data = packed::packed_422(&img.y, &img.u, &img.v, w, h, format);
        let info = gst_video::VideoInfo::builder(gformat, w as u32, h as u32)
            .fps(gst::Fraction::new(60, 1))
            .build()
            .unwrap();
        let converter = gst_video::VideoConverter::new(
            &info,
            &out_info,
            Some(gst_video::VideoConverterConfig::new()),
        )
        .unwrap();
        let src =
            gst_video::VideoFrame::from_buffer_readable(gst::Buffer::from_mut_slice(data), &info)
                .unwrap();
        let mut dst = gst_video::VideoFrame::from_buffer_writable(
            gst::Buffer::with_size(out_info.size()).unwrap(),
            &out_info,
        )
        .unwrap();
        g.bench_function(format!("{format}/videoconvert"), |b| {
            b.iter(|| converter.frame(black_box(&src), &mut dst))
        });
    }
    let planes = [img.y.clone(), img.u.clone(), img.v.clone()].concat();
    let mut copy = vec![0u8; planes.len()];
    g.bench_function("I420/copy", |b| {
        b.iter(|| copy.copy_from_slice(black_box(&planes)))
    });
    g.finish();
}

criterion_group!(scoring, benches, packed);
criterion_main!(scoring);
