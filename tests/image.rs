//! The agent's OCI image (issue 15), built offline by `scripts/image.sh` from this build's
//! binary (stripped on the way in) on a base made from Debian packages; cached: the base
//! is made once, the image layer is rebuilt in seconds. One image for both ends:
//! - `run` with the image's defaults (the example config: phantom source, shipped model,
//!   local datalake on the state volume), read-only root, the image's non-root user, all
//!   capabilities dropped, no network but loopback: `/metrics` answers and counts scored
//!   frames, frames land in the mounted state directory, nothing can be written outside
//!   it, `check-config` passes inside, and a stop is clean;
//! - `ingest` with the same image (read-only, non-root) against real Mosquitto (TLS) and
//!   SeaweedFS on the host's loopback, fed by an agent on the host: the bucket holds the
//!   agent's local datalake byte for byte.

mod common;

use common::podman::{podman, text, Container};
use common::services::{Mosquitto, Pki, Seaweed};
use common::uplink::{
    agent_config, compare, delivered, drained, ingest_numbers, local_objects, make_bucket,
    mqtt_section, s3_section, wait,
};
use common::{bin, repo, Agent};
use std::process::Command;
use std::time::Duration;

/// The image's user (Containerfile: `USER 10001:44`).
const UID: u32 = 10001;
const GID: u32 = 44;

/// The image, built once for both tests (they run in parallel).
fn image() -> String {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let out = Command::new(repo().join("scripts/image.sh"))
                .arg(bin())
                .env("ENDO_IMAGE_TAG", "test")
                .output()
                .expect("scripts/image.sh");
            assert!(out.status.success(), "image.sh: {}", text(&out));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .clone()
}

/// `GET path` on the container's loopback (no curl in the image: bash's /dev/tcp).
fn get(c: &Container, path: &str) -> String {
    c.exec(&format!(
        "exec bash -c 'exec 3<>/dev/tcp/127.0.0.1/9464 && printf \"GET {path} HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3'"
    ))
    .1
}

fn scored(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("endo_agent_frames_scored_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn the_image_runs_the_agent_read_only_unprivileged_and_offline() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(UID), Some(GID)).unwrap();
    let volume = format!("{}:/var/lib/endo-agent", state.display());
    let name = format!("endo-agent-image-{}", std::process::id());
    let c = Container::start(
        &name,
        &[
            "--read-only",
            "--network=none",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "-v",
            &volume,
            &image,
        ],
    );
    wait(
        "frames scored, per /metrics",
        Duration::from_secs(60),
        || scored(&get(&c, "/metrics")) >= 30.0,
    );
    let metrics = get(&c, "/metrics");
    assert!(metrics.starts_with("HTTP/1.0 200"), "{metrics}");
    assert!(get(&c, "/healthz").starts_with("HTTP/1.0 200"));
    let (_, id) = c.exec("id -u; id -g");
    assert_eq!(id.split_whitespace().collect::<Vec<_>>(), ["10001", "44"]);
    let lake = state.join("datalake");
    wait(
        "frames in the state volume",
        Duration::from_secs(60),
        || !common::files(&lake, "jpg").is_empty(),
    );
    for path in ["/usr/bin/x", "/etc/endo-agent/x", "/x"] {
        let (ok, out) = c.exec(&format!("touch {path}"));
        assert!(!ok, "{path} is writable: {out}");
        assert!(out.contains("Read-only file system"), "{path}: {out}");
    }
    // GStreamer's registry on the volume, not on the read-only root.
    assert!(state.join("gstreamer-registry.bin").exists());

    let out = podman()
        .args(["run", "--rm", "--read-only", "--network=none", &image])
        .args(["check-config", "/etc/endo-agent/agent.toml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "check-config: {}", text(&out));
    assert!(
        text(&out).contains("/etc/endo-agent/agent.toml: ok"),
        "{}",
        text(&out)
    );

    assert_eq!(c.stop(30), 0, "exit code at the stop:\n{}", c.logs());
    let logs = c.logs();
    assert!(logs.contains("stopped"), "{logs}");
    assert!(
        !logs.contains(" WARN ") && !logs.contains(" ERROR "),
        "{logs}"
    );
    let size = common::podman::run(&["image", "inspect", "-f", "{{.Size}}", &image]);
    eprintln!(
        "image {image}: {} MB",
        size.parse::<u64>().unwrap() / 1_000_000
    );
}

#[test]
fn the_same_image_runs_ingest_into_the_store() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::generate(&d.join("pki"));
    let broker = Mosquitto::start(&d.join("mosquitto"), &pki, false, false);
    let store = Seaweed::start(&d.join("weed"), &pki);
    make_bucket(&store, &pki, d, "lake-image");
    let config = d.join("ingest.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n{}",
            mqtt_section(&broker, &pki.ca, None)
                .replace("[mqtt]", "[mqtt]\nclient_id = \"ingest-image\""),
            s3_section(&store, &pki, d, "lake-image")
        ),
    )
    .unwrap();
    // The image's user reads the test's CA and credentials (made by root, some 0600).
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(d)
        .status()
        .unwrap();
    // Ingest reaches the broker and the store on the host's loopback.
    let mount = format!("{0}:{0}:ro", d.display());
    let name = format!("endo-agent-ingest-{}", std::process::id());
    let cfg = config.display().to_string();
    let ingest = Container::start(
        &name,
        &[
            "--read-only",
            "--network=host",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "-v",
            &mount,
            &image,
            "ingest",
            "--config",
            &cfg,
        ],
    );
    wait("ingest to subscribe", Duration::from_secs(30), || {
        ingest.logs().contains("subscribing")
    });

    let agent_dir = d.join("agent");
    std::fs::create_dir(&agent_dir).unwrap();
    let agent = Agent::start(
        &agent_dir,
        &agent_config(
            &agent_dir,
            r#""local", "mqtt""#,
            300,
            &mqtt_section(&broker, &pki.ca, None),
        ),
    );
    agent.wait_for("the source to end", Duration::from_secs(120), |a| {
        a.metrics()
            .value("endo_agent_source_state{state=\"running\"}")
            == 0.0
    });
    agent.wait_for("every frame delivered", Duration::from_secs(120), drained);
    assert!(delivered(&agent, "mqtt") >= 5.0);
    assert!(agent.stop().success());
    let local = local_objects(&agent_dir);
    wait(
        "ingest to store every frame",
        Duration::from_secs(60),
        || store.filer_list("lake-image").len() >= local.len(),
    );
    assert_eq!(
        compare(&store, "lake-image", &local),
        (0, 0, 0),
        "image ingest: missing, differing, extra"
    );
    assert_eq!(ingest.stop(45), 0, "{}", ingest.logs());
    let logs = ingest.logs();
    let stats = logs
        .lines()
        .rfind(|l| l.starts_with("ingest:"))
        .unwrap_or_else(|| panic!("no stats line:\n{logs}"));
    let [messages, stored, _, rejected, _] = ingest_numbers(stats);
    assert_eq!((stored, rejected), (messages, 0), "{stats}");
    // Two objects a frame (JPEG and record); the agent run's one procedure record is
    // a single JSON object but one message.
    let procedures = local
        .keys()
        .filter(|k| k.ends_with("/procedure.json"))
        .count();
    assert_eq!(procedures, 1, "{:?}", local.keys().collect::<Vec<_>>());
    assert_eq!(
        (stored as usize - procedures) * 2 + procedures,
        local.len(),
        "{stats}"
    );
}
