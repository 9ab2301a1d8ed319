//! Fleet sizing benchmark: N agent processes (phantom towers, each its own device name) →
//! Mosquitto (MQTT 5 over TLS) → 2 `endo-agent ingest` replicas on one shared subscription
//! → SeaweedFS (S3 over HTTPS), all real and on loopback, started by the tests' own helpers.
//! For each number of towers it runs `--seconds` after a warm-up and reports, side by side:
//! frames/s selected by the towers, delivered to the broker, stored by ingest; ingest's lag
//! (capture → stored); the mean time a replica spends storing one frame (its two PUTs,
//! from `endo_ingest_s3_put_seconds`) and so one replica's ceiling (a replica stores one
//! frame at a time); and the CPU each component used, in cores and in ms per stored frame.
//! Those are what the sizing rule in docs/deploy.md is made of. The towers run on the same
//! machine as the cloud end: on a small machine their own scoring saturates it first. A level is
//! *saturated* when ingest stores under 95 % of what the towers select or its lag grows
//! past 5 s: the machine (or a component) cannot keep up.
//!
//!   cargo bench --bench fleet -- [--towers 1,2,4,8] [--seconds 20] [--per-second 10]
//!                                [--width 640] [--height 360] [--fps 30]
//!
//! `--per-second` is each tower's `select.max_per_second` (the shipped default is 2: a
//! bench tower at 10 stands for five real ones).
//!
//! Without `--bench` (under `cargo test --all-targets`) it runs 2 towers for a few seconds
//! and checks the fleet path end to end: every frame each tower wrote to its local datalake
//! is in the bucket with the same bytes, and both replicas stored a share.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;
use support::arg;

use common::services::{Mosquitto, Pki, Seaweed};
use common::uplink::{
    compare, drained, ingest_numbers, local_objects, make_bucket, mqtt_section, s3_section,
    stream_config, wait, Ingest, Stream,
};
use common::{Agent, Metrics};
use std::path::Path;
use std::time::{Duration, Instant};

/// CPU seconds (user + system, all threads) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| support::cpu_of_stat(&stat).map(|(_, cpu)| cpu))
        .unwrap_or(0.0)
}

/// The fleet's cloud end: broker, store, bucket and two ingest replicas.
struct Cloud {
    pki: Pki,
    broker: Mosquitto,
    store: Seaweed,
    replicas: Vec<Ingest>,
}

impl Cloud {
    fn start(d: &Path) -> Cloud {
        let pki = Pki::generate(&d.join("pki"));
        let broker = Mosquitto::start(&d.join("mosquitto"), &pki, false, false);
        let store = Seaweed::start(&d.join("weed"), &pki);
        make_bucket(&store, &pki, d, "fleet");
        let replicas = (0..2)
            .map(|i| {
                let home = d.join(format!("ingest-{i}"));
                std::fs::create_dir_all(&home).unwrap();
                let config = format!(
                    "[ingest]\nshare_group = \"fleet\"\nlisten = \"127.0.0.1:0\"\n{}\n{}",
                    mqtt_section(&broker, &pki.ca, None)
                        .replace("[mqtt]", &format!("[mqtt]\nclient_id = \"ingest-{i}\"")),
                    s3_section(&store, &pki, d, "fleet")
                );
                let ingest = Ingest::start(&home, &config);
                wait("a replica to subscribe", Duration::from_secs(30), || {
                    ingest.log_text().contains("subscribing to $share/fleet/")
                });
                ingest
            })
            .collect();
        Cloud {
            pki,
            broker,
            store,
            replicas,
        }
    }

    fn ingest_metrics(&self) -> Vec<Metrics> {
        self.replicas
            .iter()
            .map(|r| Metrics(r.get("/metrics").1))
            .collect()
    }
}

/// `n` towers of level `level`, each a phantom stream of `frames` frames (0 = unbounded)
/// forwarding to `sinks` (the bench: MQTT alone, as a fleet tower; the check adds the local
/// datalake to compare the bucket with).
fn start_towers(
    d: &Path,
    cloud: &Cloud,
    (n, level): (usize, usize),
    stream: &Stream,
    (frames, sinks): (u64, &str),
) -> Vec<Agent> {
    (0..n)
        .map(|i| {
            let dir = d.join(format!("level-{level}/tower-{i}"));
            let config = stream_config(
                &dir,
                stream,
                sinks,
                frames,
                &mqtt_section(&cloud.broker, &cloud.pki.ca, None),
            )
            .replace("device = \"tower-3\"", &format!("device = \"tower-{i}\""))
            .replace(
                "site = \"uplink-site\"",
                &format!("site = \"fleet-{level}\""),
            );
            Agent::start(&dir, &config)
        })
        .collect()
}

/// One sample of the whole fleet's counters and CPU.
struct Sample {
    at: Instant,
    selected: f64,
    delivered: f64,
    stored: f64,
    lag: f64,
    /// Ingest's PUT histogram, both replicas: (seconds, frames).
    put: (f64, f64),
    cpu: [f64; 4], // towers, broker, ingest (both), store
}

fn sample(towers: &[Agent], cloud: &Cloud) -> Sample {
    let tm: Vec<Metrics> = towers.iter().map(Agent::metrics).collect();
    let im = cloud.ingest_metrics();
    let total = |ms: &[Metrics], name: &str| ms.iter().map(|m| m.sum(name, "")).sum::<f64>();
    Sample {
        at: Instant::now(),
        selected: total(&tm, "endo_agent_frames_selected_total"),
        delivered: total(&tm, "endo_agent_frames_delivered_total"),
        stored: total(&im, "endo_ingest_stored_total"),
        lag: im
            .iter()
            .map(|m| m.value("endo_ingest_lag_seconds"))
            .fold(0.0, f64::max),
        put: (
            total(&im, "endo_ingest_s3_put_seconds_sum"),
            total(&im, "endo_ingest_s3_put_seconds_count"),
        ),
        cpu: [
            towers.iter().map(|a| cpu_seconds(a.pid())).sum(),
            cloud.broker.pid().map_or(0.0, cpu_seconds),
            cloud
                .replicas
                .iter()
                .map(|r| cpu_seconds(r.child.id()))
                .sum(),
            cloud.store.pid().map_or(0.0, cpu_seconds),
        ],
    }
}

fn bench(args: &[String]) {
    let towers: Vec<usize> = arg(args, "--towers", "1,2,4,8".to_string())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    let seconds: f64 = arg(args, "--seconds", 20.0);
    let per_second: f64 = arg(args, "--per-second", 10.0);
    let stream = Stream {
        width: arg(args, "--width", 640),
        height: arg(args, "--height", 360),
        fps: arg(args, "--fps", 30),
        window_ms: (1000.0 / per_second).round() as u32,
        per_second,
    };
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(dir.path());
    println!(
        "fleet: {}x{} at {} fps per tower, select.max_per_second {per_second}, {seconds} s per level, 2 ingest replicas, {} cores",
        stream.width,
        stream.height,
        stream.fps,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>6} {:>9} {:>10} {:>7} {:>6} {:>7} {:>9} {:>9} | cores: {:>6} {:>6} {:>6} {:>6} | ms CPU per stored frame: {:>6} {:>6} {:>6} {:>6}  state",
        "towers", "selected/s", "delivered/s", "stored/s", "ratio", "lag s", "store ms", "ceiling/s",
        "towers", "broker", "ingest", "store", "towers", "broker", "ingest", "store"
    );
    for (level, &n) in towers.iter().enumerate() {
        let agents = start_towers(dir.path(), &cloud, (n, level), &stream, (0, "\"mqtt\""));
        std::thread::sleep(Duration::from_secs(4)); // warm-up: model loaded, FOV locked
        let a = sample(&agents, &cloud);
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let b = sample(&agents, &cloud);
        let dt = b.at.duration_since(a.at).as_secs_f64();
        let rate = |x: f64, y: f64| (y - x) / dt;
        let (sel, del, sto) = (
            rate(a.selected, b.selected),
            rate(a.delivered, b.delivered),
            rate(a.stored, b.stored),
        );
        let cores: Vec<f64> = (0..4).map(|i| rate(a.cpu[i], b.cpu[i])).collect();
        let per_frame: Vec<f64> = cores.iter().map(|c| 1000.0 * c / sto.max(1e-9)).collect();
        let ratio = sto / sel.max(1e-9);
        // A replica stores one frame at a time (two PUTs): its ceiling is 1 / that time.
        let put_ms = 1000.0 * (b.put.0 - a.put.0) / (b.put.1 - a.put.1).max(1.0);
        let ceiling = 1000.0 / put_ms.max(1e-9);
        let saturated = ratio < 0.95 || b.lag > 5.0;
        println!(
            "{n:>6} {sel:>9.1} {del:>10.1} {sto:>7.1} {ratio:>6.2} {:>7.2} {put_ms:>9.2} {ceiling:>9.0} | cores: {:>6.2} {:>6.2} {:>6.2} {:>6.2} | ms CPU per stored frame: {:>6.2} {:>6.2} {:>6.2} {:>6.2}  {}",
            b.lag,
            cores[0], cores[1], cores[2], cores[3],
            per_frame[0], per_frame[1], per_frame[2], per_frame[3],
            if saturated { "SATURATED" } else { "keeps up" }
        );
        for agent in agents {
            agent.stop();
        }
        // Let ingest catch up before the next level, so each level starts from an idle cloud.
        let end = Instant::now() + Duration::from_secs(60);
        let mut last = -1.0;
        while Instant::now() < end {
            let stored: f64 = cloud
                .ingest_metrics()
                .iter()
                .map(|m| m.sum("endo_ingest_stored_total", ""))
                .sum();
            if stored == last {
                break;
            }
            last = stored;
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

/// The check under `cargo test --all-targets`: two towers, two replicas, every frame lands.
fn check() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cloud = Cloud::start(d);
    // 4 s of video each (on_eos = idle): the towers drain, then every frame is stored.
    let towers = start_towers(
        d,
        &cloud,
        (2, 0),
        &Stream::SMALL,
        (120, "\"local\", \"mqtt\""),
    );
    let mut local = std::collections::BTreeMap::new();
    for (i, t) in towers.into_iter().enumerate() {
        t.wait_for("the tower to drain", Duration::from_secs(90), |a| {
            a.log_text()
                .contains("source ended and every frame is delivered")
                && drained(a)
        });
        local.extend(local_objects(&d.join(format!("level-0/tower-{i}"))));
        let status = t.stop();
        assert!(status.success(), "tower {i} exited {status}");
    }
    assert!(local.len() >= 2 * 2 * 10, "{} local objects", local.len());
    wait("every frame in the bucket", Duration::from_secs(60), || {
        cloud.store.filer_list("fleet").len() >= local.len()
    });
    assert_eq!(
        compare(&cloud.store, "fleet", &local),
        (0, 0, 0),
        "the bucket holds exactly the towers' datalakes"
    );
    let stored: Vec<[u64; 5]> = cloud
        .replicas
        .into_iter()
        .map(|r| ingest_numbers(&r.stop()))
        .collect();
    assert!(
        stored.iter().all(|s| s[1] > 0 && s[3] == 0),
        "both replicas store a share, neither rejects: {stored:?}"
    );
    println!(
        "fleet check: 2 towers, {} objects; replicas [messages, stored, duplicates, rejected, unacked]: {stored:?}",
        local.len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") {
        bench(&args);
    } else {
        check();
    }
}
