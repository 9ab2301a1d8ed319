//! End-to-end benchmark: the agent, in-process, on the phantom source played live at
//! 1920×1080@60 for a fixed time, with the shipped model and a local datalake in a
//! temporary directory. Prints achieved fps, frames dropped (by reason), agent CPU time per
//! frame (process CPU minus the phantom generator's own thread), p50/p99 capture→score
//! latency and peak RSS.
//!
//!   cargo bench --bench e2e -- --seconds 20 [--width 1920 --height 1080 --fps 60] [--model F]
//!     [--format I420|NV12|YUY2|UYVY]
//!
//! `--format` makes the source hand the agent that format, as a capture card would: the
//! phantom's I420 is converted by a `videoconvert` in the *source* part of the pipeline,
//! on the appsrc's own streaming thread (`phantom:src`), which is the generator's cost, so
//! the "agent threads" line leaves it out with `phantom-feed`.
//!
//! `--display` runs the agent twice back to back, without and then with the on-screen
//! overlay's display branch (`--display-sink`, default `fakesink sync=false`), and prints
//! the two side by side plus the delay the branch added to the video and the displayed
//! score's age (p50/p99, exact over the last 8192 frames) and the frames rendered.
//!
//! Per thread (by name, from `/proc/self/task/*/stat`), the CPU per frame over the run's
//! steady part. `--web-client` keeps a web page's event stream open meanwhile (the preview
//! JPEGs are encoded only then).
//!
//! Without `--bench` (as under `cargo test --all-targets`) it runs a 2-second smoke at
//! 320×240 from a YUY2 source (the `--format` path; every other test feeds I420), with a
//! web page connected, and checks that frames flowed.

#[path = "../tests/common/root.rs"]
mod root;

#[path = "support/mod.rs"]
mod support;
use support::arg;

use endo_agent::config::{Config, FovShape, OnEos, SourceKind};
use std::time::{Duration, Instant};

fn cpu_time() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn peak_rss_mb() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss as f64 / 1024.0
}

/// CPU time (user + system) of each live thread of this process, by thread id, with its
/// name (`/proc/self/task/*/stat`).
fn thread_cpu() -> std::collections::HashMap<u32, (String, Duration)> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        if let Some((name, cpu)) = support::cpu_of_stat(&stat) {
            out.insert(tid, (name.to_string(), Duration::from_secs_f64(cpu)));
        }
    }
    out
}

/// Per thread name: CPU used between two [`thread_cpu`] samples (threads started in
/// between count from zero).
fn thread_delta(
    a: &std::collections::HashMap<u32, (String, Duration)>,
    b: &std::collections::HashMap<u32, (String, Duration)>,
) -> Vec<(String, Duration)> {
    let mut by: std::collections::BTreeMap<String, Duration> = Default::default();
    for (tid, (name, cpu)) in b {
        let before = a.get(tid).map_or(Duration::ZERO, |x| x.1);
        // GStreamer names its threads after elements ("agent_queue:src"); group by the name.
        *by.entry(name.clone()).or_default() += cpu.saturating_sub(before);
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    v
}

/// What one run measured.
struct Run {
    elapsed: Duration,
    summary: endo_agent::daemon::Summary,
    cpu: Duration,
    dropped_busy: f64,
    fov_pending: f64,
    /// Per-thread CPU over the run's steady part (after a 2 s warm-up), and that part's
    /// length.
    threads: Vec<(String, Duration)>,
    window: Duration,
}

/// Sum of the current values of every series starting with `name`.
fn series(name: &str) -> f64 {
    endo_agent::metrics::install()
        .render()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

fn dropped() -> (f64, f64) {
    (
        series("endo_agent_frames_dropped_total{reason=\"scorer_busy\"}")
            + series("endo_agent_frames_dropped_total{reason=\"convert_busy\"}"),
        series("endo_agent_frames_dropped_total{reason=\"fov_pending\"}"),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let (secs, w, h, fps) = if bench {
        (
            arg(&args, "--seconds", 20u64),
            arg(&args, "--width", 1920u32),
            arg(&args, "--height", 1080u32),
            arg(&args, "--fps", 60u32),
        )
    } else {
        (2, 320, 240, 30)
    };
    // The smoke run (no `--bench`) exercises the display branch too.
    let display = !bench || args.iter().any(|a| a == "--display");
    let sink: String = arg(&args, "--display-sink", "fakesink sync=false".to_string());
    let web = args.iter().any(|a| a == "--web-client") || !bench;
    let page = if web {
        ", a web page connected"
    } else {
        ", no web page"
    };
    let format: String = arg(
        &args,
        "--format",
        if bench { "I420" } else { "YUY2" }.into(),
    );
    let plain = run(&args, &format, secs, (w, h, fps), None, web);
    print_run(
        &plain,
        (w, h, fps),
        &format!("{format}, without display{page}"),
    );
    if display {
        let with = run(&args, &format, secs, (w, h, fps), Some(&sink), web);
        print_run(&with, (w, h, fps), &format!("with display ({sink})"));
        print_display(&plain, &with);
    }
    println!("  peak RSS (incl. generator) {:.1} MB", peak_rss_mb());
}

fn cpu_per_frame(r: &Run) -> f64 {
    r.cpu.saturating_sub(r.summary.generator_cpu).as_secs_f64() * 1e3
        / r.summary.scored.max(1) as f64
}

fn print_display(plain: &Run, with: &Run) {
    let Some(st) = &with.summary.overlay else {
        println!("display: the run had no display branch");
        return;
    };
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_string(), |d| format!("{:.3}", d.as_secs_f64() * 1e3))
    };
    println!("display branch");
    println!("  frames rendered           {}", st.frames_rendered);
    println!(
        "  added delay p50 / p99     {} ms / {} ms",
        ms(st.delay_p50),
        ms(st.delay_p99)
    );
    println!(
        "  score age p50 / p99       {} ms / {} ms",
        ms(st.score_age_p50),
        ms(st.score_age_p99)
    );
    println!(
        "  agent CPU per frame       {:.3} ms without, {:.3} ms with display (+{:.3} ms)",
        cpu_per_frame(plain),
        cpu_per_frame(with),
        cpu_per_frame(with) - cpu_per_frame(plain)
    );
    assert!(st.frames_rendered > 0, "the display branch drew nothing");
}

fn run(
    args: &[String],
    format: &str,
    secs: u64,
    (w, h, fps): (u32, u32, u32),
    display: Option<&str>,
    web_client: bool,
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.source.kind = SourceKind::Phantom;
    cfg.source.width = w;
    cfg.source.height = h;
    cfg.source.fps = fps;
    cfg.capture.on_eos = OnEos::Stop;
    cfg.fov.shape = FovShape::Circle;
    if format != "I420" {
        let template = dir.path().join("phantom-packed.pipeline");
        let builtin = std::fs::read_to_string(root::repo().join("pipelines/phantom.pipeline"))
            .expect("pipelines/phantom.pipeline");
        std::fs::write(
            &template,
            format!(
                "{} ! videoconvert name=generator_convert ! video/x-raw,format={format}",
                builtin.trim()
            ),
        )
        .unwrap();
        cfg.capture.template = Some(template);
    }
    // --model models/quality-ref.onnx measures the earlier reference model for comparison.
    let model: String = arg(args, "--model", "models/quality-int8.onnx".to_string());
    cfg.model.path = root::repo().join(model);
    cfg.datalake.dir = dir.path().join("lake");
    cfg.spool.dir = dir.path().join("spool");
    // A free port chosen here, so that `--web-client` knows where to connect.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port");
    cfg.http.listen = addr.to_string();
    if let Some(sink) = display {
        cfg.display.enabled = true;
        cfg.display.sink = sink.into();
    }
    let (busy0, pending0) = dropped();

    let stop = endo_agent::shutdown::Shutdown::new();
    let stopper = stop.clone();
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let warmup = Duration::from_secs(2).min(Duration::from_secs(secs) / 2);
    let web = web_client;
    let sampler = std::thread::spawn(move || {
        std::thread::sleep(warmup);
        // `--web-client`: a web page's event stream open for the whole steady part.
        let page = web.then(|| open_event_stream(addr, &stopper));
        let (a, ta) = (thread_cpu(), Instant::now());
        std::thread::sleep(Duration::from_secs(secs).saturating_sub(warmup));
        let (b, tb) = (thread_cpu(), Instant::now());
        stopper.stop();
        if let Some(p) = page {
            let _ = p.join();
        }
        (thread_delta(&a, &b), tb - ta)
    });
    let summary = endo_agent::daemon::run(cfg, stop).expect("agent run");
    let elapsed = t0.elapsed();
    let cpu = cpu_time() - cpu0;
    let (busy1, pending1) = dropped();
    let (threads, window) = sampler.join().expect("sampler");
    assert!(summary.scored > 0, "no frame was scored");
    Run {
        elapsed,
        summary,
        cpu,
        dropped_busy: busy1 - busy0,
        fov_pending: pending1 - pending0,
        threads,
        window,
    }
}

/// Read the agent's `/api/events` at `addr` (as a web page does) until `stop`.
fn open_event_stream(
    addr: std::net::SocketAddr,
    stop: &endo_agent::shutdown::Shutdown,
) -> std::thread::JoinHandle<()> {
    let stop = stop.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        write!(s, "GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut buf = [0u8; 4096];
        while !stop.is_stopped() {
            let _ = s.read(&mut buf);
        }
    })
}

fn print_run(r: &Run, (w, h, fps): (u32, u32, u32), what: &str) {
    let Run {
        elapsed,
        summary,
        cpu,
        dropped_busy,
        fov_pending,
        ..
    } = r;
    let agent_cpu = cpu.saturating_sub(summary.generator_cpu);
    let scored = summary.scored.max(1);
    println!(
        "e2e: phantom {w}x{h}@{fps} live for {:.1} s, {what}",
        elapsed.as_secs_f64()
    );
    println!("  frames captured           {}", summary.captured);
    println!(
        "  frames scored             {} ({:.1} fps)",
        summary.scored,
        summary.scored as f64 / elapsed.as_secs_f64()
    );
    println!("  dropped (scorer/convert)  {dropped_busy}");
    println!("  dropped (fov pending)     {fov_pending}");
    println!("  generator skipped slots   {}", summary.generator_skipped);
    println!(
        "  selected / delivered      {} / {}",
        summary.selected, summary.delivered
    );
    println!(
        "  agent CPU per frame       {:.3} ms (process {:.2} s - generator {:.2} s)",
        agent_cpu.as_secs_f64() * 1e3 / scored as f64,
        cpu.as_secs_f64(),
        summary.generator_cpu.as_secs_f64()
    );
    println!(
        "  capture->score p50 / p99  {:.2} ms / {:.2} ms",
        summary.latency_p50.as_secs_f64() * 1e3,
        summary.latency_p99.as_secs_f64() * 1e3
    );
    // Frames scored in the sampled window, at the run's mean rate.
    let frames = scored as f64 * r.window.as_secs_f64() / elapsed.as_secs_f64();
    println!(
        "  CPU per frame by thread over the last {:.1} s (the generator is phantom-feed, and \
         phantom:src with --format):",
        r.window.as_secs_f64()
    );
    let generator = |n: &str| n == "phantom-feed" || n == "phantom:src";
    let agent: Duration = r
        .threads
        .iter()
        .filter(|(n, _)| !generator(n))
        .map(|x| x.1)
        .sum();
    println!(
        "    {:<24} {:.3} ms",
        "(agent threads)",
        agent.as_secs_f64() * 1e3 / frames.max(1.0)
    );
    for (name, cpu) in r.threads.iter().filter(|(_, c)| !c.is_zero()) {
        println!(
            "    {name:<24} {:.3} ms",
            cpu.as_secs_f64() * 1e3 / frames.max(1.0)
        );
    }
}
