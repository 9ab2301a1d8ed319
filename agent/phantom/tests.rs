//! Behaviour of the phantom as a whole: determinism, labels, what each degradation does to
//! the pixels, the OSD, and the file outputs. Small frames keep debug-mode tests fast.

use super::*;
use crate::artifact::Artifact;
use std::sync::Arc;

fn cfg(width: u32, height: u32, schedule: &str) -> PhantomConfig {
    PhantomConfig {
        width,
        height,
        fps: 10,
        seed: 7,
        schedule: Schedule::parse(schedule).unwrap(),
        ..PhantomConfig::default()
    }
}

/// Luma statistics over the field of view.
fn fov_luma(p: &Phantom, img: &I420Image, f: impl Fn(u8) -> bool) -> (f64, f64) {
    let (mut sum, mut hits, mut n) = (0f64, 0f64, 0f64);
    let r = p.fov_rect();
    for y in r.y..r.bottom() {
        for x in r.x..r.right() {
            if p.in_fov(x, y) {
                let v = img.y[(y * img.width + x) as usize];
                sum += v as f64;
                hits += f(v) as u8 as f64;
                n += 1.0;
            }
        }
    }
    (sum / n, hits / n)
}

/// Mean |4-neighbour Laplacian| of luma over the inner part of the field of view (away from
/// its edge, where the mask itself has strong gradients).
fn mean_abs_laplacian(p: &Phantom, img: &I420Image) -> f64 {
    let r = p.fov_rect();
    let (cx, cy) = (r.x + r.width / 2, r.y + r.height / 2);
    let half = r.height / 3;
    let w = img.width as usize;
    let at = |x: u32, y: u32| img.y[y as usize * w + x as usize] as i32;
    let (mut s, mut n) = (0f64, 0f64);
    for y in cy - half..cy + half {
        for x in cx - half..cx + half {
            let l = 4 * at(x, y) - at(x - 1, y) - at(x + 1, y) - at(x, y - 1) - at(x, y + 1);
            s += l.abs() as f64;
            n += 1.0;
        }
    }
    s / n
}

/// Mean Cb and Cr over the chroma samples inside the field of view.
fn fov_chroma(p: &Phantom, img: &I420Image) -> (f64, f64) {
    let (mut cb, mut cr, mut n) = (0f64, 0f64, 0f64);
    let cw = img.width / 2;
    for cy in 0..img.height / 2 {
        for cx in 0..cw {
            if p.in_fov(2 * cx, 2 * cy) && p.in_fov(2 * cx + 1, 2 * cy + 1) {
                cb += img.u[(cy * cw + cx) as usize] as f64;
                cr += img.v[(cy * cw + cx) as usize] as f64;
                n += 1.0;
            }
        }
    }
    (cb / n, cr / n)
}

#[test]
fn same_index_renders_identical_bytes_regardless_of_history() {
    let p = Phantom::new(cfg(320, 240, "good 1s; glare 1s; motion 1s; defocus 1s"));
    let a = p.render(13);
    // Render other frames (different degradations, reused thread scratch) in between.
    let _ = (p.render(5), p.render(25), p.render(34));
    let mut b = I420Image::new(320, 240);
    b.y.fill(99);
    p.render_into(13, &mut b);
    assert_eq!(a, b);
    // A fresh phantom from the same config agrees too.
    let q = Phantom::new(cfg(320, 240, "good 1s; glare 1s; motion 1s; defocus 1s"));
    assert_eq!(q.render(13), a);
    assert_eq!(q.render(25), p.render(25));
}

#[test]
fn a_different_seed_gives_a_different_frame() {
    let a = Phantom::new(cfg(320, 240, "good 1s"));
    let b = Phantom::new(PhantomConfig {
        seed: 8,
        ..cfg(320, 240, "good 1s")
    });
    let (fa, fb) = (a.render(3), b.render(3));
    let differing = fa.y.iter().zip(&fb.y).filter(|(x, y)| x != y).count();
    assert!(
        differing > fa.y.len() / 10,
        "only {differing} luma pixels differ"
    );
}

#[test]
fn consecutive_frames_pan_the_camera() {
    let p = Phantom::new(cfg(320, 240, "good 10s"));
    assert_ne!(p.render(0), p.render(30));
}

#[test]
fn indices_loop_over_the_schedule() {
    let p = Phantom::new(cfg(320, 240, "good 1s; dark 0.5s"));
    assert_eq!(p.num_frames(), 15);
    assert_eq!(p.render(16), p.render(1));
    assert_eq!(p.label(27).expected, Some(Artifact::Dark));
    assert_eq!(p.label(27).index, 27);
}

#[test]
fn labels_follow_the_schedule() {
    let p = Phantom::new(cfg(
        320,
        240,
        "good 2s; motion 1s len=24 angle=30; defocus 1s sigma=1.5; dark 1s gain=0.25; overexposed 1s gain=2.5; glare 1s area=0.06; outside 1s",
    ));
    assert_eq!(p.num_frames(), 80);
    let expected = [
        None,
        Some(Artifact::Blur),
        Some(Artifact::Blur),
        Some(Artifact::Dark),
        Some(Artifact::Overexposed),
        Some(Artifact::Glare),
        Some(Artifact::Outside),
    ];
    for (seg, exp) in expected.into_iter().enumerate() {
        let frames = p.segment_frames(seg);
        let mid = (frames.start + frames.end) / 2;
        let l = p.label(mid);
        assert_eq!((l.segment, l.expected), (seg, exp), "frame {mid}");
        assert_eq!(l.is_good(), l.severity < 0.5);
        assert!((l.quality() - (1.0 - l.severity)).abs() < 1e-6);
    }
    assert_eq!(p.segment_frames(2), 30..40);
    assert_eq!(
        p.label(35).degradation,
        Degradation::Defocus { sigma_px: 1.5 }
    );
}

#[test]
fn osd_text_lies_only_inside_osd_rects_outside_the_fov() {
    for (w, h, shape) in [
        (320, 240, FovShape::Circle),
        (640, 360, FovShape::Octagon),
        (640, 480, FovShape::Circle),
    ] {
        let with = Phantom::new(PhantomConfig {
            fov_shape: shape,
            ..cfg(w, h, "good 1s")
        });
        let without = Phantom::new(PhantomConfig {
            osd: false,
            fov_shape: shape,
            ..cfg(w, h, "good 1s")
        });
        assert!(without.osd_rects().is_empty());
        let rects = with.osd_rects();
        assert!(rects.len() >= 5, "{w}x{h}: OSD did not fit");
        let fov = with.fov_rect();
        assert_eq!(fov, without.fov_rect());
        assert_eq!(
            (fov.x % 2, fov.y % 2, fov.width % 2, fov.height % 2),
            (0, 0, 0, 0)
        );
        assert!(fov.right() <= w && fov.bottom() <= h);
        for r in &rects {
            assert!(r.intersect(&fov).is_empty(), "{r:?} overlaps {fov:?}");
        }
        let (a, b) = (with.render(4), without.render(4));
        assert_eq!(a.u, b.u);
        let mut changed = 0;
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) as usize;
                if a.y[i] != b.y[i] {
                    changed += 1;
                    assert!(
                        rects.iter().any(|r| r.contains(x, y)),
                        "OSD pixel at {x},{y}"
                    );
                    assert_eq!(a.y[i], osd::TEXT_Y);
                }
            }
        }
        assert!(changed > 200, "{w}x{h}: only {changed} text pixels");
    }
}

#[test]
fn the_osd_clock_changes_with_time() {
    let p = Phantom::new(cfg(320, 240, "good 5s"));
    let without = Phantom::new(PhantomConfig {
        osd: false,
        ..cfg(320, 240, "good 5s")
    });
    let clock = p.osd_rects()[4];
    let text = |i: u64| {
        let (a, b) = (p.render(i), without.render(i));
        (clock.y..clock.bottom())
            .flat_map(|y| (clock.x..clock.right()).map(move |x| (y * 320 + x) as usize))
            .map(|k| a.y[k] != b.y[k])
            .collect::<Vec<_>>()
    };
    assert_eq!(text(0), text(9)); // same second at 10 fps
    assert_ne!(text(0), text(10));
}

#[test]
fn border_is_black_and_fov_is_not() {
    let p = Phantom::new(cfg(320, 240, "good 1s"));
    let img = p.render(0);
    let osd = p.osd_rects();
    for y in 0..240 {
        for x in 0..320 {
            let i = (y * 320 + x) as usize;
            if !p.in_fov(x, y) && !osd.iter().any(|r| r.contains(x, y)) {
                assert_eq!(img.y[i], render::BLACK_Y, "{x},{y}");
            }
        }
    }
    assert!(img
        .u
        .iter()
        .zip(&img.v)
        .any(|(&u, &v)| u != 128 || v != 128));
    assert_eq!(img.u[0], 128);
    let (mean, _) = fov_luma(&p, &img, |_| false);
    assert!((60.0..160.0).contains(&mean), "mean fov luma {mean}");
}

/// σ = 1.5 px defocus at 1080p must measurably reduce the Laplacian energy at native
/// resolution (the mild blur the scorer has to catch).
#[test]
fn defocus_at_1080p_reduces_laplacian_energy() {
    let good = Phantom::new(cfg(1920, 1080, "good 1s"));
    let blurred = Phantom::new(cfg(1920, 1080, "defocus 1s sigma=1.5"));
    let (a, b) = (good.render(4), blurred.render(4));
    let (la, lb) = (
        mean_abs_laplacian(&good, &a),
        mean_abs_laplacian(&blurred, &b),
    );
    assert!(lb < 0.6 * la, "laplacian good {la:.2} defocus {lb:.2}");
}

#[test]
fn blur_reduces_laplacian_energy_at_360p() {
    let good = Phantom::new(cfg(640, 360, "good 1s"));
    let a = good.render(4);
    let la = mean_abs_laplacian(&good, &a);
    // σ=1.5 at 1080p is σ=0.5 here (sizes scale with height): still clearly measurable.
    for sched in [
        "defocus 1s sigma=1.5",
        "defocus 1s sigma=4.5",
        "motion 1s len=24 angle=0",
        "motion 1s len=24 angle=45",
        "motion 1s len=24 angle=90",
        "motion 1s len=24 angle=135",
    ] {
        let p = Phantom::new(cfg(640, 360, sched));
        let lb = mean_abs_laplacian(&p, &p.render(4));
        assert!(
            lb < 0.75 * la,
            "{sched}: laplacian good {la:.2} blurred {lb:.2}"
        );
    }
}

#[test]
fn dark_frames_have_lower_mean_luma_and_overexposed_frames_clip() {
    let good = Phantom::new(cfg(320, 240, "good 1s"));
    let dark = Phantom::new(cfg(320, 240, "dark 1s gain=0.25"));
    let over = Phantom::new(cfg(320, 240, "overexposed 1s gain=2.5"));
    let (g, _) = fov_luma(&good, &good.render(2), |_| false);
    let (d, _) = fov_luma(&dark, &dark.render(2), |_| false);
    let (o, clipped) = fov_luma(&over, &over.render(2), |v| v >= 235);
    assert!(d < 0.5 * g, "dark {d} good {g}");
    assert!(o > g, "over {o} good {g}");
    assert!(clipped > 0.25, "only {clipped} of the fov clipped");
}

#[test]
fn glare_covers_about_the_requested_area_with_colourless_highlights() {
    for (w, h, area) in [(320, 240, 0.06f32), (640, 360, 0.03), (640, 360, 0.12)] {
        let good = Phantom::new(cfg(w, h, "good 1s"));
        let p = Phantom::new(cfg(w, h, &format!("glare 1s area={area}")));
        let (_, base) = fov_luma(&good, &good.render(3), |v| v >= 230);
        assert!(base < 0.001, "good frame already has {base} near-white");
        for i in [1, 3, 7] {
            let img = p.render(i);
            let (_, frac) = fov_luma(&p, &img, |v| v >= 230);
            let rel = frac / area as f64;
            assert!(
                (0.75..1.25).contains(&rel),
                "{w}x{h} area {area} frame {i}: {frac}"
            );
        }
        // Positions change from frame to frame.
        assert_ne!(p.render(1).y, p.render(2).y);
    }
}

#[test]
fn outside_frames_are_bright_and_blue_while_nbi_mucosa_is_red() {
    let good = Phantom::new(cfg(320, 240, "good 1s"));
    let out = Phantom::new(cfg(320, 240, "outside 1s"));
    let (gi, oi) = (good.render(1), out.render(1));
    let (gcb, gcr) = fov_chroma(&good, &gi);
    let (ocb, ocr) = fov_chroma(&out, &oi);
    assert!(gcr > gcb + 10.0, "good Cb {gcb} Cr {gcr}");
    assert!(ocb > ocr + 5.0, "outside Cb {ocb} Cr {ocr}");
    let (gy, _) = fov_luma(&good, &gi, |_| false);
    let (oy, _) = fov_luma(&out, &oi, |_| false);
    assert!(oy > gy, "outside luma {oy} good {gy}");
}

#[test]
fn white_light_palette_is_redder_than_nbi() {
    let nbi = Phantom::new(cfg(320, 240, "good 1s"));
    let wl = Phantom::new(PhantomConfig {
        palette: Palette::WhiteLight,
        ..cfg(320, 240, "good 1s")
    });
    let (_, cr_nbi) = fov_chroma(&nbi, &nbi.render(0));
    let (_, cr_wl) = fov_chroma(&wl, &wl.render(0));
    assert!(cr_wl > cr_nbi, "{cr_wl} {cr_nbi}");
}

#[test]
fn invalid_configs_are_rejected() {
    assert!(matches!(
        Phantom::try_new(cfg(321, 240, "good 1s")),
        Err(PhantomError::Size { .. })
    ));
    assert!(matches!(
        Phantom::try_new(PhantomConfig {
            fps: 0,
            ..cfg(320, 240, "good 1s")
        }),
        Err(PhantomError::Fps(0))
    ));
    assert!(matches!(
        Phantom::try_new(cfg(320, 240, "good 0.01s")),
        Err(PhantomError::Schedule)
    ));
}

#[test]
fn config_round_trips_through_json() {
    let c = PhantomConfig::default();
    let j = serde_json::to_string(&c).unwrap();
    assert!(j.contains("\"schedule\":\"good 2s;"), "{j}");
    let back: PhantomConfig = serde_json::from_str(&j).unwrap();
    assert_eq!(back, c);
}

#[test]
fn write_stills_writes_images_and_one_csv_row_per_frame() {
    let dir = tempfile::tempdir().unwrap();
    let p = Phantom::new(cfg(160, 120, "good 0.5s; glare 0.5s"));
    let n = write_stills(&p, dir.path(), 3..8, StillFormat::Png).unwrap();
    assert_eq!(n, 5);
    let csv = std::fs::read_to_string(dir.path().join("labels.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], output::LABELS_HEADER);
    assert_eq!(lines.len(), 6);
    assert!(
        lines[1].starts_with("frame_000003.png,3,0,good,good,0.0000,1.0000,"),
        "{}",
        lines[1]
    );
    assert!(
        lines[5].starts_with("frame_000007.png,7,1,glare area=0.06,glare,"),
        "{}",
        lines[5]
    );
    for l in &lines[1..] {
        assert_eq!(l.split(',').count(), 11, "{l}");
    }
    let img = image::open(dir.path().join("frame_000005.png")).unwrap();
    assert_eq!((img.width(), img.height()), (160, 120));
    write_stills(&p, dir.path(), 0..1, StillFormat::Jpeg).unwrap();
    assert!(dir.path().join("frame_000000.jpg").exists());
}

/// Decode a video file with GStreamer and count its frames.
fn count_decoded_frames(path: &std::path::Path) -> usize {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    let pipeline = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! appsink name=sink sync=false",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gstreamer_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut n = 0;
    while sink.pull_sample().is_ok() {
        n += 1;
    }
    let bus = pipeline.bus().unwrap();
    let err = bus.pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(err.is_none(), "decode error: {err:?}");
    n
}

#[test]
fn write_video_produces_decodable_files_with_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let p = Phantom::new(cfg(160, 120, "good 1s; defocus 1s"));
    for name in ["clip.mkv", "clip.avi"] {
        let path = dir.path().join(name);
        assert_eq!(write_video(&p, &path, 5..17).unwrap(), 12);
        assert_eq!(count_decoded_frames(&path), 12, "{name}");
    }
    let bad = dir.path().join("clip.mp4");
    let err = write_video(&p, &bad, 0..2).unwrap_err().to_string();
    assert!(
        err.contains("clip.mp4") && err.contains("extension"),
        "{err}"
    );
    let missing = dir.path().join("no/such/dir/clip.mkv");
    let err = write_video(&p, &missing, 0..2).unwrap_err().to_string();
    assert!(err.contains("no/such/dir/clip.mkv"), "{err}");
}

#[test]
fn live_feed_pushes_frames_with_index_offsets_then_eos() {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    gst::init().unwrap();
    // 130 px wide: GStreamer pads I420 rows to 4 bytes, so this checks stride handling.
    let p = Arc::new(Phantom::new(cfg(130, 96, "good 1s")));
    let pipeline = gst::parse::launch("appsrc name=src ! appsink name=sink sync=false")
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gstreamer_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gstreamer_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let feed = spawn_live_feed(
        p.clone(),
        src,
        LiveOpts {
            realtime: false,
            max_frames: Some(6),
            start_index: 20,
        },
    );
    let mut seen = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let buf = sample.buffer().unwrap();
        let info = gstreamer_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        let map = buf.map_readable().unwrap();
        let (o, s) = (info.offset(), info.stride());
        assert_eq!(s[0], 132); // padded stride
        let expected = p.render(buf.offset());
        let view = crate::frame::I420View {
            width: 130,
            height: 96,
            y: &map[o[0]..],
            u: &map[o[1]..],
            v: &map[o[2]..],
            y_stride: s[0] as usize,
            uv_stride: s[1] as usize,
            uv_step: 1,
            colour: crate::frame::Colour::BT601,
        };
        assert_eq!(view.to_owned_image(), expected, "frame {}", buf.offset());
        seen.push((buf.offset(), buf.pts().unwrap().nseconds()));
    }
    feed.join();
    pipeline.set_state(gst::State::Null).unwrap();
    let want: Vec<(u64, u64)> = (0..6).map(|k| (20 + k, k * 100_000_000)).collect();
    assert_eq!(seen, want);
}

#[test]
fn realtime_live_feed_is_paced_and_stops_on_request() {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    gst::init().unwrap();
    let p = Arc::new(Phantom::new(PhantomConfig {
        fps: 50,
        ..cfg(128, 96, "good 1s")
    }));
    let pipeline = gst::parse::launch("appsrc name=src ! fakesink sync=false")
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gstreamer_app::AppSrc>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let started = std::time::Instant::now();
    let feed = spawn_live_feed(p, src, LiveOpts::default());
    std::thread::sleep(std::time::Duration::from_millis(300));
    feed.stop();
    let elapsed = started.elapsed().as_secs_f64();
    let pushed = feed.frames_pushed() + feed.frames_skipped();
    pipeline.set_state(gst::State::Null).unwrap();
    // 50 fps for ~0.3 s: about 15 frame slots, never a burst of the whole backlog.
    let expected = elapsed * 50.0;
    assert!(
        (pushed as f64) <= expected + 2.0 && (pushed as f64) >= expected * 0.5,
        "{pushed} frames in {elapsed:.3} s"
    );
    assert!(feed.is_finished());
    assert!(feed.cpu_time() > std::time::Duration::ZERO);
}
