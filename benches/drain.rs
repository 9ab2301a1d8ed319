//! Spool drain benchmark: how fast the uplink empties a backlog of 1080p frames into
//! Mosquitto (MQTT 5 over TLS, QoS 1, PUBACK per frame) and into SeaweedFS (HTTPS PUT of
//! JPEG + record), both real servers started on loopback by the same scripts the tests
//! use. A spool is filled with N records carrying a real 1080p phantom JPEG, then the
//! sink's worker runs until it is empty; frames/s = N / wall time. The two sinks are
//! measured alternately, `--rounds` times each, and the median is reported.
//!
//!   cargo bench --bench drain -- [--frames 300] [--rounds 3]
//!
//! Without `--bench` (under `cargo test --all-targets`) it drains 10 frames per sink
//! once and checks they all arrived.

#[path = "../tests/common/services.rs"]
mod services;
#[path = "support/mod.rs"]
mod support;
use support::arg;

use endo_agent::config::{Config, FovShape, UplinkConfig};
use endo_agent::fov::Fov;
use endo_agent::phantom::{Phantom, PhantomConfig};
use endo_agent::spool::SpoolHandle;
use endo_agent::spool::{EvictPolicy, Spool, SpoolConfig, SpoolRecord};
use endo_agent::uplink::mqtt::MqttSink;
use endo_agent::uplink::s3::S3Sink;
use endo_agent::uplink::worker::{run_sink, Retry, SinkStatus};
use endo_agent::uplink::{Blocking, Sink};
use services::{Mosquitto, Pki, Seaweed, S3_KEY, S3_SECRET};
use std::path::Path;
use std::time::{Duration, Instant};

fn jpeg_1080p() -> Vec<u8> {
    let p = Phantom::new(PhantomConfig {
        width: 1920,
        height: 1080,
        ..Default::default()
    });
    let img = p.render(30);
    let fov = Fov::new(p.fov_rect(), FovShape::Circle, &[], 1920, 1080);
    endo_agent::encode::encode_jpeg(&img.view(), &fov, 90).unwrap()
}

fn filled_spool(dir: &Path, sink: &str, n: usize, jpeg: &[u8], round: usize) -> SpoolHandle {
    let (mut spool, _) = Spool::open(SpoolConfig {
        dir: dir.to_path_buf(),
        max_records: n + 10,
        max_bytes: 1 << 40,
        policy: EvictPolicy::LowestQuality,
        sinks: vec![sink.to_string()],
        min_free_bytes: 0,
        free_space: |_| None,
    })
    .unwrap();
    for i in 0..n {
        let key = format!("bench/site/tower/2026/11/21/round-{round}/{i:010}");
        let json = serde_json::to_vec(&serde_json::json!({"key": key, "quality": 0.9})).unwrap();
        spool
            .append(&SpoolRecord {
                key,
                quality: 0.9,
                created_ms: 0,
                jpeg: jpeg.to_vec(),
                json,
                annotation: Vec::new(),
            })
            .unwrap();
    }
    let h = SpoolHandle::new(spool);
    h.close();
    h
}

fn drain(sink: Box<dyn Sink>, spool: &SpoolHandle) -> (u64, Duration) {
    let stop = endo_agent::shutdown::Shutdown::new();
    let status = SinkStatus::new(sink.name());
    let t0 = Instant::now();
    let n = run_sink(
        sink,
        spool,
        Retry::from(&UplinkConfig::default()),
        &stop,
        &status,
    );
    (n, t0.elapsed())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let (frames, rounds) = if bench {
        (arg(&args, "--frames", 300), arg(&args, "--rounds", 3))
    } else {
        (10, 1)
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::generate(&d.join("pki"));
    let broker = Mosquitto::start(&d.join("mosquitto"), &pki, false, false);
    let store = Seaweed::start(&d.join("weed"), &pki);
    let creds = d.join("creds");
    std::fs::write(
        &creds,
        format!("aws_access_key_id={S3_KEY}\naws_secret_access_key={S3_SECRET}\n"),
    )
    .unwrap();
    let mut cfg = Config::default();
    cfg.mqtt.host = "localhost".into();
    cfg.mqtt.port = broker.port;
    cfg.mqtt.ca_file = pki.ca.clone();
    cfg.s3.endpoint = store.endpoint();
    cfg.s3.bucket = "bench".into();
    cfg.s3.ca_file = pki.ca.clone();
    cfg.s3.credentials_file = creds;
    let client = endo_agent::uplink::s3::S3Client::new(&cfg.s3).unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    while let Err(e) = client.create_bucket() {
        assert!(Instant::now() < end, "seaweedfs: {e}");
        std::thread::sleep(Duration::from_millis(500));
    }

    let jpeg = jpeg_1080p();
    println!(
        "drain: {frames} frames of {} KiB (1080p phantom JPEG, q90) per run, {rounds} rounds",
        jpeg.len() / 1024
    );
    let (mut mqtt_fps, mut s3_fps) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for name in ["mqtt", "s3"] {
            let sdir = d.join(format!("spool-{name}-{round}"));
            let spool = filled_spool(&sdir, name, frames, &jpeg, round);
            let sink: Box<dyn Sink> = match name {
                "mqtt" => Box::new(MqttSink::new(&cfg, None).unwrap()),
                _ => Box::new(Blocking::new(S3Sink::new(&cfg.s3).unwrap())),
            };
            let (n, t) = drain(sink, &spool);
            assert_eq!(n as usize, frames, "{name}: every frame delivered");
            assert!(spool.is_empty(), "{name}: spool empty");
            let fps = n as f64 / t.as_secs_f64();
            println!(
                "  round {round} {name:4}: {n} frames in {:.2} s = {fps:.1} frames/s ({:.1} MB/s)",
                t.as_secs_f64(),
                fps * jpeg.len() as f64 / 1e6
            );
            if name == "mqtt" {
                mqtt_fps.push(fps)
            } else {
                s3_fps.push(fps)
            }
        }
    }
    // The store really has the last round's objects.
    let last = format!(
        "bench/site/tower/2026/11/21/round-{}/{:010}.jpg",
        rounds - 1,
        frames - 1
    );
    assert_eq!(store.filer_get("bench", &last).as_deref(), Some(&jpeg[..]));
    println!(
        "median: mqtt {:.1} frames/s, s3 {:.1} frames/s",
        median(mqtt_fps),
        median(s3_fps)
    );
}
