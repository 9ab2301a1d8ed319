//! Getting phantom frames out: still images with a `labels.csv` (training data, fixtures),
//! video files through GStreamer (demo recordings, file-source tests), and a live feed into an
//! `appsrc` from its own thread (the demo camera and the benchmarks).
//!
//! All three render frame `i` with [`Phantom::render_planes`], so they agree byte for byte
//! before encoding. GStreamer buffers are rendered in place (no intermediate copy), respecting
//! the strides and plane offsets GStreamer's I420 layout uses (rows padded to 4 bytes).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use image::ImageEncoder as _;

use super::{I420PlanesMut, Phantom};
use crate::frame::I420Image;

/// Why writing phantom output failed. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode {}: {source}", path.display())]
    Image {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("cannot write video {}: unsupported extension (use .mkv or .avi)", path.display())]
    UnsupportedExtension { path: PathBuf },
    #[error("cannot write video {}: {message}", path.display())]
    Gst { path: PathBuf, message: String },
}

/// Image format of stills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StillFormat {
    /// Lossless; what training and fixtures should use.
    #[default]
    Png,
    /// JPEG quality 92, like the agent's uploads.
    Jpeg,
}

impl StillFormat {
    fn extension(self) -> &'static str {
        match self {
            StillFormat::Png => "png",
            StillFormat::Jpeg => "jpg",
        }
    }
}

/// Header of `labels.csv`.
pub const LABELS_HEADER: &str =
    "file,index,segment,degradation,expected,severity,quality,fov_x,fov_y,fov_w,fov_h";

/// Write `frame_{index:06}.png` (or `.jpg`) for every index in `frames`, plus `labels.csv`
/// (header [`LABELS_HEADER`], one row per frame, `expected` = artifact name or `good`).
pub fn write_stills(
    phantom: &Phantom,
    dir: &Path,
    frames: Range<u64>,
    format: StillFormat,
) -> Result<u64, OutputError> {
    let cfg = phantom.config();
    let (w, h) = (cfg.width, cfg.height);
    write_labelled(phantom, dir, frames, |index, img| {
        let name = format!("frame_{index:06}.{}", format.extension());
        let path = dir.join(&name);
        let rgb = img.view().to_rgb();
        let file = BufWriter::new(File::create(&path).map_err(|source| OutputError::Io {
            path: path.clone(),
            source,
        })?);
        let encoded = match format {
            StillFormat::Png => image::codecs::png::PngEncoder::new(file).write_image(
                &rgb,
                w,
                h,
                image::ExtendedColorType::Rgb8,
            ),
            StillFormat::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(file, 92)
                .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8),
        };
        encoded.map_err(|source| OutputError::Image { path, source })?;
        Ok(name)
    })
}

/// Render every index in `frames`, hand each frame to `sink` (which stores it and returns
/// the name for the `file` column), and write `labels.csv` into `dir` as
/// [`write_stills`] does. Model training uses it to store model inputs instead of images.
pub fn write_labelled(
    phantom: &Phantom,
    dir: &Path,
    frames: Range<u64>,
    mut sink: impl FnMut(u64, &I420Image) -> Result<String, OutputError>,
) -> Result<u64, OutputError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OutputError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let csv_path = dir.join("labels.csv");
    let mut csv = BufWriter::new(File::create(&csv_path).map_err(io(&csv_path))?);
    writeln!(csv, "{LABELS_HEADER}").map_err(io(&csv_path))?;
    let cfg = phantom.config();
    let fov = phantom.fov_rect();
    let mut img = I420Image::new(cfg.width, cfg.height);
    let mut count = 0;
    for index in frames {
        phantom.render_into(index, &mut img);
        let name = sink(index, &img)?;
        let l = phantom.label(index);
        writeln!(
            csv,
            "{name},{index},{},{},{},{:.4},{:.4},{},{},{},{}",
            l.segment,
            l.degradation,
            l.expected.map_or("good", |a| a.as_str()),
            l.severity,
            l.quality(),
            fov.x,
            fov.y,
            fov.width,
            fov.height
        )
        .map_err(io(&csv_path))?;
        count += 1;
    }
    csv.flush().map_err(io(&csv_path))?;
    Ok(count)
}

/// Caps of the phantom's raw video: I420 at the configured size and rate, BT.601 limited
/// range (what `frame::rgb_to_yuv` produces).
pub fn caps(phantom: &Phantom) -> gst::Caps {
    let cfg = phantom.config();
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", cfg.width as i32)
        .field("height", cfg.height as i32)
        .field("framerate", gst::Fraction::new(cfg.fps as i32, 1))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .field("interlace-mode", "progressive")
        .field("colorimetry", "bt601")
        .build()
}

/// Time of frame `n` of a stream at `fps`.
fn frame_time(n: u64, fps: u32) -> gst::ClockTime {
    gst::ClockTime::from_nseconds((n as u128 * 1_000_000_000 / fps as u128) as u64)
}

/// Render frame `index` directly into a (writable) GStreamer buffer laid out as `info`.
pub fn render_into_buffer(
    phantom: &Phantom,
    index: u64,
    buffer: &mut gst::BufferRef,
    info: &gst_video::VideoInfo,
) -> Result<(), BufferError> {
    let mut map = buffer
        .map_writable()
        .map_err(|_| BufferError("cannot map buffer writable".into()))?;
    let data = map.as_mut_slice();
    let (off, stride) = (info.offset(), info.stride());
    if data.len() < info.size() || off.len() < 3 || stride.len() < 3 {
        return Err(BufferError(format!(
            "buffer of {} bytes too small for {}x{} I420 ({} bytes)",
            data.len(),
            info.width(),
            info.height(),
            info.size()
        )));
    }
    let (head, v) = data.split_at_mut(off[2]);
    let (y, u) = head.split_at_mut(off[1]);
    phantom.render_planes(
        index,
        &mut I420PlanesMut {
            y: &mut y[off[0]..],
            u,
            v,
            y_stride: stride[0] as usize,
            uv_stride: stride[1] as usize,
        },
    );
    Ok(())
}

/// A GStreamer buffer that cannot hold a phantom frame.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct BufferError(pub String);

/// Encode `frames` as Motion-JPEG into a Matroska (`.mkv`) or AVI (`.avi`) file:
/// `appsrc ! jpegenc ! matroskamux|avimux ! filesink`. Timestamps start at 0 for the first
/// frame of the range. Blocks until the file is finalised; returns the number of frames.
pub fn write_video(phantom: &Phantom, path: &Path, frames: Range<u64>) -> Result<u64, OutputError> {
    let err = |message: String| OutputError::Gst {
        path: path.to_path_buf(),
        message,
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let mux_name = match ext.as_deref() {
        Some("mkv") => "matroskamux",
        Some("avi") => "avimux",
        _ => {
            return Err(OutputError::UnsupportedExtension {
                path: path.to_path_buf(),
            })
        }
    };
    let location = path
        .to_str()
        .ok_or_else(|| err("path is not valid UTF-8".into()))?;
    gst::init().map_err(|e| err(format!("GStreamer init failed: {e}")))?;
    let caps = caps(phantom);
    let info = gst_video::VideoInfo::from_caps(&caps).map_err(|e| err(e.to_string()))?;
    let src = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        // Not `block`: a blocked push would hang forever if the pipeline failed; the loop
        // below waits for queue space itself while watching the bus.
        .block(false)
        .max_bytes(4 * info.size() as u64)
        .build();
    let make = |name: &str| {
        gst::ElementFactory::make(name)
            .build()
            .map_err(|e| err(format!("GStreamer element `{name}` unavailable: {e}")))
    };
    let enc = make("jpegenc")?;
    enc.set_property("quality", 90i32);
    let mux = make(mux_name)?;
    let sink = make("filesink")?;
    sink.set_property("location", location);
    let pipeline = gst::Pipeline::new();
    pipeline
        .add_many([src.upcast_ref(), &enc, &mux, &sink])
        .and_then(|_| gst::Element::link_many([src.upcast_ref(), &enc, &mux, &sink]))
        .map_err(|e| err(format!("cannot build pipeline: {e}")))?;

    let result = run_video(phantom, &pipeline, &src, &info, frames, &err);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn run_video(
    phantom: &Phantom,
    pipeline: &gst::Pipeline,
    src: &gst_app::AppSrc,
    info: &gst_video::VideoInfo,
    frames: Range<u64>,
    err: &dyn Fn(String) -> OutputError,
) -> Result<u64, OutputError> {
    let bus = pipeline
        .bus()
        .ok_or_else(|| err("pipeline has no bus".into()))?;
    let bus_error = |fallback: String| {
        // Prefer the pipeline's own explanation (e.g. filesink cannot open the file).
        match bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(500),
            &[gst::MessageType::Error],
        ) {
            Some(msg) => match msg.view() {
                gst::MessageView::Error(e) => err(format!("{} ({:?})", e.error(), e.debug())),
                _ => err(fallback),
            },
            None => err(fallback),
        }
    };
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| bus_error(format!("pipeline failed to start: {e}")))?;
    let fps = phantom.config().fps;
    let start = frames.start;
    let mut count = 0;
    let frame_bytes = info.size() as u64;
    for index in frames {
        // Back-pressure: never queue more than a few frames, and stop on a pipeline error.
        while src.current_level_bytes() + frame_bytes > src.max_bytes() {
            if let Some(msg) =
                bus.timed_pop_filtered(gst::ClockTime::from_mseconds(2), &[gst::MessageType::Error])
            {
                if let gst::MessageView::Error(e) = msg.view() {
                    return Err(err(format!("{} ({:?})", e.error(), e.debug())));
                }
            }
        }
        let mut buffer = gst::Buffer::with_size(info.size()).map_err(|e| err(e.to_string()))?;
        {
            let b = buffer.get_mut().expect("new buffer is writable");
            render_into_buffer(phantom, index, b, info).map_err(|e| err(e.to_string()))?;
            let n = index - start;
            b.set_pts(frame_time(n, fps));
            b.set_duration(frame_time(n + 1, fps) - frame_time(n, fps));
            b.set_offset(index);
        }
        src.push_buffer(buffer)
            .map_err(|flow| bus_error(format!("pushing frame {index} failed: {flow:?}")))?;
        count += 1;
    }
    src.end_of_stream()
        .map_err(|flow| bus_error(format!("end of stream failed: {flow:?}")))?;
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::NONE,
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .ok_or_else(|| err("bus closed before end of stream".into()))?;
    if let gst::MessageView::Error(e) = msg.view() {
        return Err(err(format!("{} ({:?})", e.error(), e.debug())));
    }
    Ok(count)
}

/// How a live feed runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveOpts {
    /// Pace frames to the wall clock at the configured fps (a camera). When false, frames
    /// are produced as fast as the pipeline consumes them (benchmarks, tests).
    pub realtime: bool,
    /// Push this many frames, then send end-of-stream. `None` = until stopped.
    pub max_frames: Option<u64>,
    /// Index of the first frame (frame indices loop over the schedule).
    pub start_index: u64,
}

impl Default for LiveOpts {
    fn default() -> Self {
        LiveOpts {
            realtime: true,
            max_frames: None,
            start_index: 0,
        }
    }
}

/// Counters a live feed publishes while it runs.
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Buffers accepted by the appsrc.
    pub frames_pushed: AtomicU64,
    /// Realtime only: frame slots skipped because the generator ran late or the appsrc
    /// queue was full (a camera drops frames rather than delaying them).
    pub frames_skipped: AtomicU64,
    /// CPU time consumed by the feed thread so far, in nanoseconds (rendering dominates), so a
    /// benchmark can subtract the generator's cost from the process's.
    pub cpu_time_ns: AtomicU64,
    /// The thread has exited.
    pub finished: AtomicBool,
}

/// A running live feed. Dropping it stops the thread (as [`LiveFeed::stop`]).
pub struct LiveFeed {
    counters: Arc<LiveCounters>,
    stop: Arc<AtomicBool>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl LiveFeed {
    pub fn frames_pushed(&self) -> u64 {
        self.counters.frames_pushed.load(Ordering::Relaxed)
    }
    pub fn frames_skipped(&self) -> u64 {
        self.counters.frames_skipped.load(Ordering::Relaxed)
    }
    /// CPU time of the feed thread so far.
    pub fn cpu_time(&self) -> Duration {
        Duration::from_nanos(self.counters.cpu_time_ns.load(Ordering::Relaxed))
    }
    /// Shared counters, which stay readable after the feed is stopped or dropped.
    pub fn counters(&self) -> Arc<LiveCounters> {
        self.counters.clone()
    }
    pub fn is_finished(&self) -> bool {
        self.counters.finished.load(Ordering::Acquire)
    }
    /// Ask the thread to stop and wait for it. Does not send end-of-stream. Returns within
    /// about one frame period, unless the thread is inside a `push_buffer` that blocks
    /// (only if the caller made the appsrc blocking).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.join_thread();
    }
    /// Wait for the feed to end on its own (after `max_frames` or a push error).
    pub fn join(self) {
        self.join_thread();
    }
    fn join_thread(&self) {
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            if h.join().is_err() {
                tracing::error!("phantom live feed thread panicked");
            }
        }
    }
}

impl Drop for LiveFeed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// CPU time of the calling thread, nanoseconds (0 if the clock is unavailable).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes into it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Start a thread that renders frames into `appsrc`.
///
/// The appsrc is configured here: the phantom's [`caps`], `format=time`, `is-live` = realtime,
/// non-blocking with a queue of 4 frames (`max-bytes`). Buffers have PTS = (index −
/// start_index) / fps, a one-frame duration and `offset` = the frame index (so a consumer can
/// look up [`Phantom::label`]). In realtime mode frames are paced to the wall clock; a late
/// generator skips frame slots instead of bursting (at most ~3 frames catch-up). Otherwise,
/// a full queue makes the thread wait. The thread ends on [`LiveFeed::stop`], when a push
/// fails (flushing / EOS downstream: quietly), or after `max_frames` (then sends EOS).
pub fn spawn_live_feed(phantom: Arc<Phantom>, appsrc: gst_app::AppSrc, opts: LiveOpts) -> LiveFeed {
    let caps = caps(&phantom);
    let info =
        gst_video::VideoInfo::from_caps(&caps).expect("phantom caps are valid raw video caps");
    appsrc.set_caps(Some(&caps));
    appsrc.set_format(gst::Format::Time);
    appsrc.set_is_live(opts.realtime);
    appsrc.set_block(false);
    appsrc.set_max_bytes(4 * info.size() as u64);

    let counters = Arc::new(LiveCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (c, s) = (counters.clone(), stop.clone());
    let handle = std::thread::Builder::new()
        .name("phantom-feed".into())
        .spawn(move || {
            live_loop(&phantom, &appsrc, &caps, &info, opts, &c, &s);
            c.cpu_time_ns.store(thread_cpu_ns(), Ordering::Relaxed);
            c.finished.store(true, Ordering::Release);
        })
        .expect("spawn phantom feed thread");
    LiveFeed {
        counters,
        stop,
        handle: Mutex::new(Some(handle)),
    }
}

/// A pool of reusable frame buffers (they come back when downstream drops them), falling
/// back to plain allocation if the pool cannot be set up.
fn make_pool(caps: &gst::Caps, size: usize) -> Option<gst::BufferPool> {
    let pool = gst::BufferPool::new();
    let mut config = pool.config();
    config.set_params(Some(caps), size as u32, 2, 0);
    pool.set_config(config).ok()?;
    pool.set_active(true).ok()?;
    Some(pool)
}

/// Frame `index` (the `slot`-th since the start) rendered into a buffer from `pool`,
/// with its timestamps and frame number.
fn frame_buffer(
    phantom: &Phantom,
    pool: Option<&gst::BufferPool>,
    info: &gst_video::VideoInfo,
    index: u64,
    slot: u64,
) -> Result<gst::Buffer, String> {
    let fps = phantom.config().fps;
    let mut buffer = pool
        .and_then(|p| p.acquire_buffer(None).ok())
        .map_or_else(|| gst::Buffer::with_size(info.size()), Ok)
        .map_err(|_| format!("cannot allocate a {}-byte buffer", info.size()))?;
    let b = buffer.get_mut().expect("fresh buffer is writable");
    render_into_buffer(phantom, index, b, info).map_err(|e| e.to_string())?;
    b.set_pts(frame_time(slot, fps));
    b.set_duration(frame_time(slot + 1, fps) - frame_time(slot, fps));
    b.set_offset(index);
    b.set_offset_end(index + 1);
    Ok(buffer)
}

fn live_loop(
    phantom: &Phantom,
    appsrc: &gst_app::AppSrc,
    caps: &gst::Caps,
    info: &gst_video::VideoInfo,
    opts: LiveOpts,
    counters: &LiveCounters,
    stop: &AtomicBool,
) {
    let fps = phantom.config().fps;
    let period_ns = 1_000_000_000 / fps as u64;
    let frame_bytes = info.size() as u64;
    let pool = make_pool(caps, info.size());
    let t0 = Instant::now();
    let mut slot = 0u64; // frame number since the start: index = start_index + slot
    let mut pushed = 0u64;
    let queue_full = || appsrc.current_level_bytes() + frame_bytes > appsrc.max_bytes();
    while !stop.load(Ordering::Acquire) {
        if opts.max_frames.is_some_and(|m| pushed >= m) {
            let _ = appsrc.end_of_stream();
            break;
        }
        if opts.realtime {
            let due = t0 + Duration::from_nanos(slot.saturating_mul(period_ns));
            let now = Instant::now();
            if now < due {
                // Sleep in short steps so that stop() is honoured promptly.
                std::thread::sleep((due - now).min(Duration::from_millis(20)));
                continue;
            }
            let behind = ((now - due).as_nanos() / period_ns as u128) as u64;
            if behind > 3 {
                slot += behind;
                counters.frames_skipped.fetch_add(behind, Ordering::Relaxed);
            }
            if queue_full() {
                slot += 1;
                counters.frames_skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        } else if queue_full() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }

        let index = opts.start_index + slot;
        let buffer = match frame_buffer(phantom, pool.as_ref(), info, index, slot) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("phantom feed: {e}");
                break;
            }
        };
        match appsrc.push_buffer(buffer) {
            Ok(_) => {}
            Err(gst::FlowError::Flushing) | Err(gst::FlowError::Eos) => break,
            Err(e) => {
                tracing::warn!("phantom feed: push failed ({e:?}), stopping");
                break;
            }
        }
        pushed += 1;
        slot += 1;
        counters.frames_pushed.store(pushed, Ordering::Relaxed);
        counters
            .cpu_time_ns
            .store(thread_cpu_ns(), Ordering::Relaxed);
    }
    if let Some(p) = pool {
        let _ = p.set_active(false);
    }
}
