//! A real Prometheus (Debian package) scrapes a running agent on the phantom source; the
//! test asks Prometheus's HTTP API — not the agent — for the frame counter and the
//! latency histogram, so what a fleet's Prometheus would store is checked end to end.

mod common;

use common::services::{free_port, tool, wait_port};
use common::{with_common, Agent};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn query(port: u16, q: &str) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{port}/api/v1/query");
    let mut r = ureq::get(&url)
        .query("query", q)
        .call()
        .expect("prometheus query");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// The value of the first sample of an instant-vector result, if any.
fn first_value(v: &serde_json::Value) -> Option<f64> {
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_the_frame_counter_and_the_latency_histogram() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = with_common(
        d,
        "[agent]\nsite = \"prom-site\"\ndevice = \"tower-9\"\n[source]\nkind = \"phantom\"\n\
         width = 640\nheight = 360\nfps = 30\nschedule = \"good 120s\"\n",
    );
    let agent = Agent::start(d, &config);
    let port = free_port(None);
    std::fs::write(
        d.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: endo-agent\n    static_configs:\n      - targets: ['{}']\n        labels:\n          device: tower-9\n",
            agent.addr
        ),
    )
    .unwrap();
    let mut prom = Command::new(tool("prometheus"))
        .arg(format!(
            "--config.file={}",
            d.join("prometheus.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("prometheus.log")).unwrap())
        .spawn()
        .expect("start prometheus");
    assert!(
        wait_port(port, Duration::from_secs(30)),
        "prometheus did not listen"
    );

    let end = Instant::now() + Duration::from_secs(60);
    let (mut scored, mut p50) = (None, None);
    while Instant::now() < end && (scored.is_none() || p50.is_none()) {
        std::thread::sleep(Duration::from_millis(500));
        scored = first_value(&query(
            port,
            "endo_agent_frames_scored_total{job=\"endo-agent\",device=\"tower-9\"}",
        ))
        .filter(|v| *v > 0.0);
        p50 = first_value(&query(
            port,
            "histogram_quantile(0.5, rate(endo_agent_capture_to_score_seconds_bucket[5s]))",
        ))
        .filter(|v| v.is_finite());
    }
    let up = first_value(&query(port, "up{job=\"endo-agent\"}"));
    let _ = prom.kill();
    let _ = prom.wait();
    let log = std::fs::read_to_string(d.join("prometheus.log")).unwrap_or_default();
    let scored = scored.unwrap_or_else(|| panic!("no frame counter in Prometheus\n{log}"));
    let p50 = p50.unwrap_or_else(|| panic!("no latency histogram in Prometheus\n{log}"));
    assert_eq!(up, Some(1.0));
    // What Prometheus stored is what the agent counts (it keeps counting meanwhile).
    let now = agent.metrics().value("endo_agent_frames_scored_total");
    assert!(
        scored >= 1.0 && scored <= now,
        "prometheus {scored}, agent {now}"
    );
    assert!(p50 > 0.0 && p50 < 0.25, "capture→score p50 {p50} s");
    eprintln!(
        "prometheus: {scored} frames scored, capture→score p50 {:.2} ms",
        p50 * 1e3
    );
    assert!(agent.stop().success());
}
