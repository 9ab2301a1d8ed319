//! The uplink tests' shared pieces (tests/uplink.rs, tests/outage.rs): the sections of an
//! agent config that point at the test's Mosquitto and SeaweedFS, buckets, `endo-agent
//! ingest` as a child process, and the comparison of the store with the local datalake.

use super::services::{Mosquitto, Pki, Seaweed, S3_KEY, S3_SECRET};
use super::{bin, files, model_path, Agent};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn credentials(dir: &Path) -> PathBuf {
    let p = dir.join("s3-credentials");
    std::fs::write(
        &p,
        format!("[default]\naws_access_key_id = {S3_KEY}\naws_secret_access_key = {S3_SECRET}\n"),
    )
    .unwrap();
    p
}

pub fn mqtt_section(m: &Mosquitto, ca: &Path, client: Option<&Pki>) -> String {
    let mut s = format!(
        "[mqtt]\nhost = \"localhost\"\nport = {}\nca_file = \"{}\"\nkeepalive_s = 5\nack_timeout_s = 5\nsummary_interval_s = 1\n",
        m.port,
        ca.display()
    );
    if let Some(p) = client {
        s += &format!(
            "client_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
            p.client_cert.display(),
            p.client_key.display()
        );
    }
    s
}

pub fn s3_section(w: &Seaweed, pki: &Pki, dir: &Path, bucket: &str) -> String {
    format!(
        "[s3]\nendpoint = \"{}\"\nbucket = \"{bucket}\"\nca_file = \"{}\"\ncredentials_file = \"{}\"\ntimeout_s = 10\n",
        w.endpoint(),
        pki.ca.display(),
        credentials(dir).display()
    )
}

/// A phantom stream of good frames and how many of them are selected.
pub struct Stream {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub window_ms: u32,
    pub per_second: f64,
}

impl Stream {
    /// 640×360 at 30 fps, selected at up to 5 per second: the uplink tests' stream.
    pub const SMALL: Stream = Stream {
        width: 640,
        height: 360,
        fps: 30,
        window_ms: 200,
        per_second: 5.0,
    };
}

/// An agent on [`Stream::SMALL`] forwarding to `sinks`, then `sections` ([mqtt], [s3]).
pub fn agent_config(dir: &Path, sinks: &str, frames: u64, sections: &str) -> String {
    stream_config(dir, &Stream::SMALL, sinks, frames, sections)
}

/// An agent on `stream` (`frames` frames, 0 = unbounded; idle at the end) forwarding to
/// `sinks`, then `sections`.
pub fn stream_config(
    dir: &Path,
    stream: &Stream,
    sinks: &str,
    frames: u64,
    sections: &str,
) -> String {
    let Stream {
        width,
        height,
        fps,
        window_ms,
        per_second,
    } = stream;
    format!(
        r#"
[agent]
site = "uplink-site"
device = "tower-3"
[source]
kind = "phantom"
width = {width}
height = {height}
fps = {fps}
schedule = "good 60s"
max_frames = {frames}
[capture]
on_eos = "idle"
[model]
path = "{model}"
[select]
window_ms = {window_ms}
max_per_second = {per_second:?}
duplicate_bits = 0
[datalake]
dir = "{lake}"
[spool]
dir = "{spool}"
[uplink]
sinks = [{sinks}]
backoff_initial_ms = 100
backoff_max_ms = 1000
[http]
listen = "127.0.0.1:0"
{sections}
"#,
        model = model_path(),
        lake = dir.join("lake").display(),
        spool = dir.join("spool").display(),
    )
}

pub fn make_bucket(w: &Seaweed, pki: &Pki, dir: &Path, bucket: &str) {
    let cfg = endo_agent::config::S3Config {
        endpoint: w.endpoint(),
        bucket: bucket.into(),
        ca_file: pki.ca.clone(),
        credentials_file: credentials(dir),
        ..Default::default()
    };
    let c = endo_agent::uplink::s3::S3Client::new(&cfg).unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        match c.create_bucket() {
            Ok(()) => return,
            Err(e) if Instant::now() < end => {
                eprintln!("waiting for seaweedfs: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("create bucket {bucket}: {e}\n{}", w.log_text()),
        }
    }
}

/// The local datalake: object key → bytes.
pub fn local_objects(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let lake = dir.join("lake");
    let mut out = BTreeMap::new();
    for ext in ["jpg", "json"] {
        for p in files(&lake, ext) {
            let key = p.strip_prefix(&lake).unwrap().display().to_string();
            out.insert(key, std::fs::read(&p).unwrap());
        }
    }
    out
}

/// Compare the store with the local datalake: every local object present with equal
/// bytes, nothing else. Returns (missing, differing, extra).
pub fn compare(
    w: &Seaweed,
    bucket: &str,
    local: &BTreeMap<String, Vec<u8>>,
) -> (usize, usize, usize) {
    let listed = w.filer_list(bucket);
    let extra = listed.iter().filter(|k| !local.contains_key(*k)).count();
    let (mut missing, mut differing) = (0, 0);
    for (k, v) in local {
        match w.filer_get(bucket, k) {
            None => missing += 1,
            Some(b) if &b != v => differing += 1,
            Some(_) => {}
        }
    }
    (missing, differing, extra)
}

/// `endo-agent ingest` as a child process, stderr to a file.
pub struct Ingest {
    pub child: Child,
    log: PathBuf,
}

impl Ingest {
    pub fn start(dir: &Path, config: &str) -> Ingest {
        let cfg = dir.join("ingest.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.join("ingest.log");
        let child = Command::new(bin())
            .args(["ingest", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start ingest");
        Ingest { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` from its `[ingest] listen` address (read from its log): (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let log = self.log_text();
        let addr = log
            .lines()
            .find_map(|l| l.split("ingest metrics and health on http://").nth(1))
            .unwrap_or_else(|| panic!("no listener in the log:\n{log}"))
            .trim();
        let url = format!("http://{addr}{path}");
        match super::http_client().get(&url).call() {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(e) => panic!("GET {url}: {e}"),
        }
    }

    /// SIGTERM; returns its final stats line.
    pub fn stop(mut self) -> String {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        let text = self.log_text();
        assert!(status.success(), "ingest failed: {status}\n{text}");
        text.lines()
            .rfind(|l| l.starts_with("ingest:"))
            .unwrap_or_else(|| panic!("no stats line:\n{text}"))
            .to_string()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    assert!(within(timeout, f), "timed out waiting for {what}");
}

/// Poll `f` every 200 ms until it holds (true) or `timeout` passed (false).
pub fn within(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Frames `sink` has stored, from the agent's metrics.
pub fn delivered(a: &Agent, sink: &str) -> f64 {
    a.metrics().value(&format!(
        "endo_agent_frames_delivered_total{{sink=\"{sink}\"}}"
    ))
}

pub fn drained(a: &Agent) -> bool {
    let s = a.status();
    s["drained"].as_bool() == Some(true) && s["spool_frames"].as_u64() == Some(0)
}

/// "ingest: N messages, M frames stored (D duplicates), R rejected, U stored but not
/// acked …" → [N, M, D, R, U].
pub fn ingest_numbers(stats: &str) -> [u64; 5] {
    let nums: Vec<u64> = stats
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().unwrap())
        .collect();
    nums[..].try_into().unwrap_or_else(|_| panic!("{stats}"))
}

/// Both remote routes hold exactly the local datalake `local`: S3 directly in `lake-s3`,
/// MQTT through ingest in `lake-mqtt` (waited for up to `timeout`). Then ingest stops; it
/// must have stored every message, each of the `forwarded` records once (frames and
/// procedure records; the rest counted as duplicates), and rejected none. Returns its
/// stats line.
pub fn assert_routes_land(
    store: &Seaweed,
    ingest: Ingest,
    local: &BTreeMap<String, Vec<u8>>,
    forwarded: u64,
    timeout: Duration,
) -> String {
    assert_eq!(
        compare(store, "lake-s3", local),
        (0, 0, 0),
        "s3 route: missing, differing, extra"
    );
    let stored = within(timeout, || {
        store.filer_list("lake-mqtt").len() >= local.len()
    });
    if !stored {
        let (missing, differing, extra) = compare(store, "lake-mqtt", local);
        let log = ingest.log_text();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "ingest had not stored every frame {timeout:?} after the end: \
             {missing} missing, {differing} differing, {extra} extra of {}; \
             ingest's log, last lines first:\n{}",
            local.len(),
            tail.join("\n")
        );
    }
    assert_eq!(
        compare(store, "lake-mqtt", local),
        (0, 0, 0),
        "mqtt + ingest route: missing, differing, extra"
    );
    let stats = ingest.stop();
    let [messages, stored, duplicates, rejected, _] = ingest_numbers(&stats);
    assert_eq!(rejected, 0, "{stats}");
    assert_eq!(stored, messages, "{stats}");
    assert_eq!(
        stored - duplicates,
        forwarded,
        "each frame stored once, the rest counted as duplicates: {stats}"
    );
    stats
}
