//! The `endo-agent` binary: parse the command line, dispatch, map errors to exit codes.
//! Everything else lives in the library (`agent/lib.rs`).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

use endo_agent::config::{Config, FovMode};
use endo_agent::fov::{Fov, FovLocator, Locate};
use endo_agent::frame::{I420Image, I420View, Rect};
use endo_agent::phantom::{self, Phantom, PhantomConfig, Schedule, StillFormat};
use endo_agent::score::model::{manifest_path, Manifest, ModelRunner};
use endo_agent::score::preprocess::Preprocessor;
use endo_agent::score::Scorer;
use endo_agent::shutdown::Shutdown;
use std::io::Write;

#[derive(Parser)]
#[command(
    name = "endo-agent",
    version,
    about = "Edge agent beside an endoscope: capture, score image quality, forward only good frames"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (capture → score → select → datalake) until stopped.
    Run {
        /// The config file (TOML); see config/agent.example.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The cloud end of the MQTT route: subscribe to every device's frames and write
    /// each frame and record into the S3 datalake ([mqtt] and [s3] of the config).
    Ingest {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Parse and validate a config file and its pipeline, and load every file it names
    /// (model and manifest, token, certificates, keys, credentials); opens no device
    /// and connects to nothing.
    CheckConfig {
        config: PathBuf,
        /// Skip the files: check a config written for another machine.
        #[arg(long)]
        no_files: bool,
    },
    /// List the capture devices GStreamer sees, with their caps.
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// Score still images offline and print a table (or JSON lines).
    Score {
        images: Vec<PathBuf>,
        /// Config whose [model], [fov] and [scoring] sections to use; default: built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Model file (overrides the config).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Score with classical measures only.
        #[arg(long)]
        no_model: bool,
        #[arg(long)]
        json: bool,
    },
    /// Generate synthetic NBI endoscopy video with a scripted degradation schedule.
    Phantom(PhantomArgs),
    /// Write the model inputs the scorer would build for still images (model training on
    /// real annotated frames): raw little-endian f32, one input tensor per image, in order.
    ModelInput {
        images: Vec<PathBuf>,
        /// The model manifest whose input contract to follow.
        #[arg(long)]
        manifest: PathBuf,
        /// Output file; appended to if it exists.
        #[arg(long)]
        out: PathBuf,
        /// Config whose [fov] section to use; default: built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Score a recording from the site's own scope (a video file, or the configured live
    /// source) and suggest `[scoring]` / `[select]` values: prints the distributions and a
    /// TOML snippet, writes calibration.json, calibration.png and frames.jsonl.
    Calibrate(CalibrateArgs),
    /// Print the agent's version and the model's.
    Version {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct CalibrateArgs {
    /// The config file (its [source], [fov], [model], [scoring] and [select]); default: built-in defaults.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// A video file to replay through pipelines/file.pipeline; default: the configured source.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Stop after this many seconds (default for a live source: 120).
    #[arg(long)]
    seconds: Option<f64>,
    /// Stop after this many frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Directory for calibration.json, calibration.png and frames.jsonl.
    #[arg(long, default_value = "calibration")]
    out: PathBuf,
    /// Share of the recording's frames that should pass select.threshold_high.
    #[arg(long, default_value_t = 0.7)]
    pass_share: f32,
    /// Refuse when fewer frames than this are scored or well exposed.
    #[arg(long, default_value_t = 30)]
    min_frames: usize,
    /// Score with classical measures only (overrides model.enabled).
    #[arg(long)]
    no_model: bool,
}

#[derive(clap::Args)]
struct PhantomArgs {
    #[arg(long, default_value_t = 1280)]
    width: u32,
    #[arg(long, default_value_t = 720)]
    height: u32,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Degradation schedule, e.g. "good 2s; defocus 1s sigma=1.5; dark 1s gain=0.25" (default: the demo schedule).
    #[arg(long)]
    schedule: Option<String>,
    /// circle | octagon
    #[arg(long, default_value = "circle")]
    fov: String,
    /// First frame index.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Number of frames (default: one pass of the schedule).
    #[arg(long)]
    frames: Option<u64>,
    /// Write a video file (.mkv or .avi, MJPEG).
    #[arg(long)]
    video: Option<PathBuf>,
    /// Write still images and labels.csv into this directory.
    #[arg(long)]
    stills: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Png)]
    format: Format,
    /// nbi | white-light
    #[arg(long, default_value = "nbi")]
    palette: String,
    /// Leave out the burned-in patient data and clock.
    #[arg(long)]
    no_osd: bool,
    /// With --stills: write the model inputs the scorer would build (for this manifest's
    /// input contract) to `inputs.f32` in the stills directory instead of images, one raw
    /// little-endian f32 tensor per frame, rows in labels.csv order.
    #[arg(long, requires = "stills")]
    model_input: Option<PathBuf>,
    /// Print the schedule and per-segment frame ranges.
    #[arg(long)]
    print_schedule: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Png,
    Jpeg,
}

fn main() {
    endo_agent::logging::init();
    let cli = Cli::parse();
    if let Err(e) = dispatch(cli.command) {
        endo_agent::logging::fatal(&format!("{e:#}"));
        std::process::exit(1);
    }
}

fn dispatch(cmd: Command) -> Result<()> {
    match cmd {
        Command::Run { config } => {
            let cfg = Config::load(&config)?;
            let stop = Shutdown::new();
            stop.on_signals()?;
            endo_agent::daemon::run(cfg, stop)?;
            Ok(())
        }
        Command::Ingest { config } => {
            let cfg = Config::load(&config)?;
            cfg.validate_mqtt(&config)?;
            cfg.validate_s3(&config)?;
            let stop = Shutdown::new();
            stop.on_signals()?;
            let st = endo_agent::ingest::run(&cfg, stop)?;
            eprintln!(
                "ingest: {} messages, {} stored (frames and procedure records) ({} duplicates), {} rejected, {} stored but not acked (sent again by the broker)",
                st.received, st.stored, st.duplicates, st.rejected, st.unacked
            );
            Ok(())
        }
        Command::CheckConfig { config, no_files } => {
            let cfg = Config::load(&config)?;
            endo_agent::capture::check_pipeline(&cfg)?;
            let (origin, launch) = endo_agent::capture::launch_description(&cfg)?;
            if !no_files {
                let checked = endo_agent::preflight::check_files(&cfg)
                    .with_context(|| format!("config file {}", config.display()))?;
                for line in checked {
                    println!("{line}");
                }
            }
            println!("{}: ok", config.display());
            println!(
                "keys: {}/{}/{}/…",
                cfg.datalake.prefix, cfg.agent.site, cfg.agent.device
            );
            println!("pipeline ({origin}): {launch}");
            Ok(())
        }
        Command::Devices { json } => devices(json),
        Command::Score {
            images,
            config,
            model,
            no_model,
            json,
        } => score(&images, config.as_deref(), model, no_model, json),
        Command::Phantom(args) => phantom_cmd(args),
        Command::Calibrate(args) => calibrate(args),
        Command::ModelInput {
            images,
            manifest,
            out,
            config,
        } => model_input(&images, &manifest, &out, config.as_deref()),
        Command::Version { config } => {
            println!("endo-agent {}", endo_agent::VERSION);
            let cfg = match config {
                Some(p) => Config::load(&p)?,
                None => Config::default(),
            };
            let mp = manifest_path(&cfg.model.path);
            match std::fs::read_to_string(&mp)
                .ok()
                .and_then(|t| serde_json::from_str::<Manifest>(&t).ok())
            {
                Some(m) => println!(
                    "model {} {} ({}, sha256 {})",
                    m.name, m.version, m.quantization, m.sha256
                ),
                None => println!("model: no readable manifest at {}", mp.display()),
            }
            Ok(())
        }
    }
}

fn calibrate(a: CalibrateArgs) -> Result<()> {
    use endo_agent::calibrate;
    if !(0.01..=1.0).contains(&a.pass_share) {
        bail!(
            "--pass-share {}: expected a share within 0.01..1",
            a.pass_share
        );
    }
    let mut cfg = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if a.no_model {
        cfg.model.enabled = false;
    }
    let opts = calibrate::Options {
        input: a.input,
        seconds: a.seconds,
        frames: a.frames,
        params: calibrate::suggest::Params {
            pass_share: a.pass_share,
        },
        min_frames: a.min_frames.max(1),
    };
    let rec = calibrate::record(&cfg, &opts)?;
    let an = calibrate::analyse(&rec, &cfg, &opts)?;
    let written = calibrate::write_report(&a.out, &rec, &an, &cfg, &opts)?;
    print!("{}", calibrate::summary_text(&rec, &an, &written));
    Ok(())
}

fn devices(json: bool) -> Result<()> {
    let list = endo_agent::capture::devices::list().map_err(anyhow::Error::msg)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if list.is_empty() {
        println!("no video capture devices found");
    }
    for d in list {
        println!(
            "{} [{}] {}",
            d.name,
            d.class,
            d.path.as_deref().unwrap_or("-")
        );
        for (c, r) in d.caps.iter().zip(&d.read) {
            println!("    {c}    [{}]", r.as_str());
        }
    }
    Ok(())
}

fn load_image(path: &Path) -> Result<I420Image> {
    let img = image::open(path)
        .with_context(|| format!("reading image {}", path.display()))?
        .to_rgb8();
    let (w, h) = (img.width() & !1, img.height() & !1);
    if w < 16 || h < 16 {
        bail!(
            "image {} is too small ({}x{})",
            path.display(),
            img.width(),
            img.height()
        );
    }
    let cropped = image::imageops::crop_imm(&img, 0, 0, w, h).to_image();
    Ok(I420Image::from_rgb(w, h, cropped.as_raw()))
}

fn score(
    images: &[PathBuf],
    config: Option<&Path>,
    model: Option<PathBuf>,
    no_model: bool,
    json: bool,
) -> Result<()> {
    if images.is_empty() {
        bail!("no images given");
    }
    let mut cfg = match config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(m) = model {
        cfg.model.path = m;
    }
    let runner = if no_model || !cfg.model.enabled {
        None
    } else {
        Some(ModelRunner::load(&cfg.model.path)?)
    };
    let mut scorer = Scorer::new(cfg.scoring.clone(), runner);
    // Each still is its own "session": find its field of view from itself alone.
    let mut fov_cfg = cfg.fov.clone();
    if fov_cfg.mode == FovMode::Auto {
        fov_cfg.auto_frames = 1;
    }
    if !json {
        println!(
            "{:<40} {:>7} {:>7} {:>7}  {:<12} blur  dark  over  glare outside noise",
            "image", "quality", "classic", "model", "reason"
        );
    }
    for path in images {
        let img = load_image(path)?;
        let view = img.view();
        let fov = still_fov(&fov_cfg, &view, path);
        // Stills are unrelated: none is a sharpness reference for the next.
        scorer.reset();
        let (s, _) = scorer.score(&view, &fov)?;
        if json {
            let info = endo_agent::record::ScoreInfo::from_score(&s);
            println!(
                "{}",
                serde_json::json!({"image": path, "fov": fov.rect, "score": info})
            );
        } else {
            let a = s.artifacts;
            println!(
                "{:<40} {:>7.3} {:>7.3} {:>7}  {:<12} {:.2}  {:.2}  {:.2}  {:.2}  {:.2}    {:.2}",
                path.display().to_string(),
                s.quality,
                s.classical_quality,
                s.model_quality()
                    .map(|q| format!("{q:.3}"))
                    .unwrap_or_else(|| "-".into()),
                s.primary_reason().map(|r| r.as_str()).unwrap_or("good"),
                a[0],
                a[1],
                a[2],
                a[3],
                a[4],
                a[5]
            );
        }
    }
    Ok(())
}

/// The field of view of one still, found from itself alone; the whole image if none is found.
fn still_fov(fov_cfg: &endo_agent::config::FovConfig, view: &I420View, path: &Path) -> Fov {
    let mut locator = FovLocator::new(fov_cfg);
    match locator.observe(view) {
        Locate::Locked(f) => f.clone(),
        Locate::Pending | Locate::Refused => {
            // Too dark (or no border) to find the field of view, or a fixed rect that
            // misses this image: judge the whole image (offline; nothing is uploaded).
            tracing::warn!(
                "{}: no field of view found ({}); scoring the whole image",
                path.display(),
                locator.last_rejection().map_or("not found", |r| r.as_str())
            );
            let masks: Vec<Rect> = fov_cfg
                .masks
                .iter()
                .map(|&[x, y, w, h]| Rect::new(x, y, w, h))
                .collect();
            Fov::new(
                Rect::new(0, 0, view.width, view.height),
                fov_cfg.shape,
                &masks,
                view.width,
                view.height,
            )
        }
    }
}

fn read_manifest(path: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading manifest {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing manifest {}", path.display()))
}

fn append_f32(out: &mut impl Write, values: &[f32]) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    out.write_all(&bytes)
}

fn model_input(
    images: &[PathBuf],
    manifest: &Path,
    out: &Path,
    config: Option<&Path>,
) -> Result<()> {
    let spec = read_manifest(manifest)?.input;
    let cfg = match config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let mut fov_cfg = cfg.fov.clone();
    if fov_cfg.mode == FovMode::Auto {
        fov_cfg.auto_frames = 1;
    }
    let mut pre = Preprocessor::new(&spec);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .with_context(|| format!("opening {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for path in images {
        let img = load_image(path)?;
        let view = img.view();
        let fov = still_fov(&fov_cfg, &view, path);
        pre.run(&view, fov.rect);
        append_f32(&mut w, &pre.input).with_context(|| format!("writing {}", out.display()))?;
    }
    w.flush()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// `phantom --stills D --model-input M`: the model's input tensors of the frames, as
/// the agent's preprocessing makes them, with their labels.
fn write_model_inputs(p: &Phantom, d: &Path, m: &Path, frames: std::ops::Range<u64>) -> Result<()> {
    let spec = read_manifest(m)?.input;
    let mut pre = Preprocessor::new(&spec);
    let rect = p.fov_rect();
    std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    let path = d.join("inputs.f32");
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    );
    let fov_cfg = endo_agent::config::FovConfig {
        auto_frames: 1,
        ..Default::default()
    };
    let n = phantom::write_labelled(p, d, frames, |index, img| {
        // The rectangle the agent would find (a little inside the drawn one); the drawn
        // one where it finds none (dark frames), as a live agent keeps its locked FOV.
        let found = match FovLocator::new(&fov_cfg).observe(&img.view()) {
            Locate::Locked(f) => f.rect,
            Locate::Pending | Locate::Refused => rect,
        };
        pre.run(&img.view(), found);
        append_f32(&mut w, &pre.input).map_err(|source| phantom::OutputError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(format!("input_{index:06}"))
    })?;
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "wrote {n} model inputs to {} and labels.csv to {}",
        path.display(),
        d.display()
    );
    Ok(())
}

fn phantom_cmd(a: PhantomArgs) -> Result<()> {
    let schedule = match &a.schedule {
        Some(s) => Schedule::parse(s)?,
        None => Schedule::default(),
    };
    let shape = match a.fov.as_str() {
        "circle" => phantom::FovShape::Circle,
        "octagon" => phantom::FovShape::Octagon,
        other => bail!("--fov {other:?}: expected circle or octagon"),
    };
    let palette = match a.palette.as_str() {
        "nbi" => phantom::Palette::Nbi,
        "white-light" => phantom::Palette::WhiteLight,
        other => bail!("--palette {other:?}: expected nbi or white-light"),
    };
    let cfg = PhantomConfig {
        width: a.width,
        height: a.height,
        fps: a.fps,
        seed: a.seed,
        schedule,
        fov_shape: shape,
        palette,
        osd: !a.no_osd,
    };
    let p = Phantom::try_new(cfg)?;
    let frames = a.start..a.start + a.frames.unwrap_or(p.num_frames());
    if a.print_schedule || (a.video.is_none() && a.stills.is_none()) {
        println!("schedule: {}", p.config().schedule);
        println!(
            "frames per pass: {} at {} fps; field of view {:?}",
            p.num_frames(),
            a.fps,
            p.fov_rect()
        );
        for (i, seg) in p.config().schedule.segments.iter().enumerate() {
            let r = p.segment_frames(i);
            println!("  frames {:>6}..{:<6} {}", r.start, r.end, seg);
        }
    }
    if let Some(v) = &a.video {
        let n = phantom::write_video(&p, v, frames.clone())?;
        println!("wrote {n} frames to {}", v.display());
    }
    if let (Some(d), Some(m)) = (&a.stills, &a.model_input) {
        return write_model_inputs(&p, d, m, frames);
    }
    if let Some(d) = &a.stills {
        let fmt = match a.format {
            Format::Png => StillFormat::Png,
            Format::Jpeg => StillFormat::Jpeg,
        };
        let n = phantom::write_stills(&p, d, frames, fmt)?;
        println!("wrote {n} stills and labels.csv to {}", d.display());
    }
    Ok(())
}
