//! Long outages and a soak (issue 12): a 1280×720 phantom at 60 fps through a broker
//! outage and then a store outage of `ENDO_OUTAGE_S` seconds each (default 120), with
//! every forwarded frame reaching every route — the local datalake, S3 directly, and MQTT
//! through `endo-agent ingest` into a second bucket — byte for byte, none lost.
//!
//! With `ENDO_SOAK_S=1800` the same rig runs a soak instead: the broker flaps (down
//! `ENDO_FLAP_DOWN_S`, default 20 s, in every minute) for that long, the agent's RSS is
//! sampled every 10 s, and the same zero-loss checks hold at the end; RSS may not grow
//! from the soak's second fifth to its last by more than a quarter. Not in CI: the figures
//! are in docs/benchmarks.md ("Long outages and a soak").

mod common;

use common::services::{Mosquitto, Pki, Seaweed};
use common::uplink::{assert_routes_land, delivered, drained, local_objects, make_bucket};
use common::uplink::{mqtt_section, s3_section, stream_config, Ingest, Stream};
use common::Agent;
use std::path::Path;
use std::time::{Duration, Instant};

const FPS: u64 = 60;

/// 1280×720 at 60 fps, selected at up to 2 per second.
const STREAM: Stream = Stream {
    width: 1280,
    height: 720,
    fps: FPS as u32,
    window_ms: 500,
    per_second: 2.0,
};

/// `name`'s value in seconds, if it is set.
fn env_secs_set(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: not seconds"))
    })
}

fn env_secs(name: &str, default: u64) -> u64 {
    env_secs_set(name).unwrap_or(default)
}

/// The agent's resident set, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

struct Rig {
    broker: Mosquitto,
    store: Seaweed,
    ingest: Ingest,
    agent: Agent,
    rss: Vec<(f64, f64)>,
    started: Instant,
}

impl Rig {
    fn start(d: &Path, frames: u64) -> Rig {
        let pki = Pki::generate(&d.join("pki"));
        let broker = Mosquitto::start(&d.join("mosquitto"), &pki, false, false);
        let store = Seaweed::start(&d.join("weed"), &pki);
        make_bucket(&store, &pki, d, "lake-s3");
        make_bucket(&store, &pki, d, "lake-mqtt");
        let ingest = Ingest::start(
            d,
            &format!(
                "{}\n{}",
                mqtt_section(&broker, &pki.ca, None)
                    .replace("[mqtt]", "[mqtt]\nclient_id = \"ingest-soak\""),
                s3_section(&store, &pki, d, "lake-mqtt")
            ),
        );
        let sections = format!(
            "{}\n{}",
            mqtt_section(&broker, &pki.ca, None),
            s3_section(&store, &pki, d, "lake-s3")
        );
        let sinks = r#""local", "mqtt", "s3""#;
        let agent = Agent::start(d, &stream_config(d, &STREAM, sinks, frames, &sections));
        agent.wait_for(
            "the first frames on every route",
            Duration::from_secs(60),
            |a| {
                ["local", "mqtt", "s3"]
                    .iter()
                    .all(|s| delivered(a, s) >= 2.0)
            },
        );
        Rig {
            broker,
            store,
            ingest,
            agent,
            rss: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Sleep `secs`, sampling the agent's RSS every 10 s.
    fn run_for(&mut self, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            let t = self.started.elapsed().as_secs_f64();
            self.rss.push((t, rss_mib(self.agent.pid())));
            std::thread::sleep(Duration::from_secs(10).min(end - Instant::now()));
        }
    }

    fn spool_frames(&self) -> f64 {
        self.agent.metrics().value("endo_agent_spool_records")
    }

    /// Every forwarded frame on every route, none twice in a store, none lost; prints
    /// the run's figures.
    fn finish(self, d: &Path, label: &str) {
        let Rig {
            store,
            ingest,
            agent,
            rss,
            started,
            broker: _broker,
        } = self;
        agent.wait_for("the source to end", Duration::from_secs(600), |a| {
            a.metrics()
                .value("endo_agent_source_state{state=\"running\"}")
                == 0.0
        });
        agent.wait_for("every frame delivered", Duration::from_secs(600), drained);
        let m = agent.metrics();
        let selected = m.value("endo_agent_frames_selected_total");
        let captured = m.value("endo_agent_frames_captured_total");
        let dropped = m.sum("endo_agent_frames_dropped_total", "");
        let evicted = m.sum("endo_agent_frames_evicted_total", "");
        let mqtt_errors = m.sum("endo_agent_sink_errors_total", "sink=\"mqtt\"");
        let s3_errors = m.sum("endo_agent_sink_errors_total", "sink=\"s3\"");
        let resends = m.value("endo_agent_sink_retries_total{sink=\"mqtt\"}");
        for sink in ["local", "mqtt", "s3"] {
            assert_eq!(
                delivered(&agent, sink),
                selected,
                "{sink}: delivered vs forwarded"
            );
        }
        assert_eq!(evicted, 0.0, "frames evicted from the spool");
        assert!(agent.stop().success());
        let local = local_objects(d);
        // Two objects a frame, and the procedure record written at the source's end.
        assert_eq!(local.len() as f64, 2.0 * selected + 1.0);
        assert_eq!(
            m.value("endo_agent_procedures_total{ended_by=\"agent_stop\"}"),
            1.0
        );
        let stats = assert_routes_land(
            &store,
            ingest,
            &local,
            selected as u64 + 1,
            Duration::from_secs(300),
        );
        let rss_max = rss.iter().map(|r| r.1).fold(0.0, f64::max);
        eprintln!(
            "{label}: {:.0} s, captured {captured}, dropped {dropped}, forwarded {selected}, \
             lost 0 on local/mqtt/s3, mqtt errors {mqtt_errors}, s3 errors {s3_errors}, \
             mqtt resends {resends}, RSS max {rss_max:.1} MiB; {stats}",
            started.elapsed().as_secs_f64()
        );
        assert!(
            mqtt_errors >= 1.0,
            "{label}: the broker's outage was not seen"
        );
        if std::env::var_os("ENDO_SOAK_RSS").is_some() {
            for (t, r) in &rss {
                eprintln!("rss\t{t:.0}\t{r:.1}");
            }
        }
    }
}

#[test]
fn a_60_fps_stream_loses_nothing_through_minutes_long_broker_and_store_outages() {
    if std::env::var_os("ENDO_SOAK_S").is_some() {
        return soak(env_secs("ENDO_SOAK_S", 1800));
    }
    // In the test command since 2026-12-03 (≈ 5 min): one run of eight before had ingest
    // short of every MQTT frame 300 s after the store outage; since the rig stopped killing
    // SeaweedFS inside its graceful stop and ingest stopped sending stale acks after a
    // reconnect, every run passed (docs/benchmarks.md). `ENDO_OUTAGE_S` changes the length.
    let outage = env_secs("ENDO_OUTAGE_S", 120);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Long enough that frames are still captured through both outages.
    let mut rig = Rig::start(d, FPS * (2 * outage + 60));

    rig.broker.stop();
    rig.run_for(outage);
    let held = rig.spool_frames();
    assert!(
        held >= 10.0,
        "the spool held {held} frames for MQTT during its outage"
    );
    let mqtt_during = delivered(&rig.agent, "mqtt");
    rig.broker.restart();
    rig.agent
        .wait_for("mqtt to catch up", Duration::from_secs(300), |a| {
            delivered(a, "mqtt") > mqtt_during
                && delivered(a, "mqtt") >= delivered(a, "local") - 2.0
        });

    rig.store.stop();
    rig.run_for(outage);
    let s3_during = delivered(&rig.agent, "s3");
    assert!(
        delivered(&rig.agent, "local") - s3_during >= 10.0,
        "frames forwarded while the store was down"
    );
    rig.store.restart();
    assert!(
        rig.agent
            .metrics()
            .sum("endo_agent_sink_errors_total", "sink=\"s3\"")
            >= 1.0
    );
    rig.finish(d, &format!("outages of {outage} s each"));
}

/// The soak (not in CI): the broker down `ENDO_FLAP_DOWN_S` of every 60 s for `secs`.
fn soak(secs: u64) {
    let down = env_secs("ENDO_FLAP_DOWN_S", 20).min(50);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut rig = Rig::start(d, FPS * secs);
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() + Duration::from_secs(60) <= end {
        rig.broker.stop();
        rig.run_for(down);
        rig.broker.restart();
        rig.run_for(60 - down);
    }
    // RSS after warm-up (the second fifth) against the last fifth.
    let n = rig.rss.len();
    let fifth = |k: usize| {
        rig.rss[k * n / 5..(k + 1) * n / 5]
            .iter()
            .map(|r| r.1)
            .fold(0.0, f64::max)
    };
    let (early, late) = (fifth(1), fifth(4));
    eprintln!("soak RSS: second fifth max {early:.1} MiB, last fifth max {late:.1} MiB");
    assert!(
        late <= early * 1.25,
        "RSS grew from {early:.1} to {late:.1} MiB"
    );
    rig.finish(
        d,
        &format!("soak of {secs} s, broker down {down} s a minute"),
    );
}
