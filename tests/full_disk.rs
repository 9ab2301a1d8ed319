//! A full disk is a full spool (issue 12, finding 5), on a real filesystem: the spool and
//! the local datalake share a 3 MiB tmpfs mounted for the agent alone. When it fills,
//! frames are dropped as `spool_full` (the policy's choice, counted), never lost half-
//! written as `spool_write_failed`; no temporary file is left; `/readyz` says the disk is
//! full and comes back when space is freed; "spool full" is logged at a bounded rate, and
//! a stop is clean. Before the fix, 15 of 18 selected frames were `spool_write_failed`,
//! zero-byte `.tmp` files stayed behind and `/readyz` answered 200.

mod common;

use common::{files, model_path, Agent, Mount};
use std::path::Path;
use std::time::Duration;

/// Free KiB on the filesystem holding `p`, as the spool reads it.
fn free_kib(p: &Path) -> u64 {
    endo_agent::spool::disk_free(p).expect("statvfs") / 1024
}

fn temporary_files(dir: &Path) -> Vec<String> {
    walk(dir)
        .into_iter()
        .map(|p| p[dir.as_os_str().len()..].to_string())
        .filter(|n| n.contains(".tmp") && !n.ends_with("/.tmp"))
        .collect()
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        out.push(p.display().to_string());
        if p.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

#[test]
fn a_full_disk_drops_frames_by_policy_says_so_and_recovers_when_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = d.join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let (spool, lake) = (disk.join("spool"), disk.join("lake"));
    let config = format!(
        r#"
[source]
kind = "phantom"
width = 1280
height = 720
fps = 30
schedule = "good 60s"
[model]
path = "{model}"
[select]
window_ms = 200
max_per_second = 5.0
duplicate_bits = 0
[datalake]
dir = "{lake}"
[spool]
dir = "{spool}"
min_free_mib = 1
[uplink]
sinks = ["local"]
[http]
listen = "127.0.0.1:0"
"#,
        model = model_path(),
        lake = lake.display(),
        spool = spool.display(),
    );
    let agent = Agent::start_with_mounts(d, &config, &[Mount::Tmpfs(disk.clone(), 3 * 1024)]);
    let (inside_disk, inside_lake) = (agent.inside(&disk), agent.inside(&lake));
    assert!(
        free_kib(&inside_disk) <= 3 * 1024,
        "the agent's disk is not the small tmpfs"
    );
    agent.wait_for("the disk to fill", Duration::from_secs(120), |a| {
        a.metrics()
            .value("endo_agent_frames_evicted_total{reason=\"spool_full\"}")
            >= 5.0
    });
    agent.wait_for("/readyz to say so", Duration::from_secs(10), |a| {
        a.get("/readyz").0 == 503
    });
    let (_, why) = agent.get("/readyz");
    assert!(why.contains("disk is full"), "{why}");
    let m = agent.metrics();
    assert_eq!(m.value("endo_agent_spool_disk_low"), 1.0);
    assert_eq!(
        m.value("endo_agent_frames_evicted_total{reason=\"spool_write_failed\"}"),
        0.0,
        "frames lost half-written"
    );
    let delivered = m.value("endo_agent_frames_delivered_total{sink=\"local\"}");
    assert!(
        delivered >= 5.0,
        "{delivered} frames reached the datalake before it filled"
    );
    // The reserve holds (min_free_mib = 1, less a frame in flight).
    let free = free_kib(&inside_disk);
    assert!(free >= 512, "{free} KiB free: the reserve was eaten");
    assert_eq!(temporary_files(&inside_disk), Vec::<String>::new());

    // Space comes back: the datalake's frames are moved off (here: deleted).
    for f in files(&inside_lake, "jpg")
        .into_iter()
        .chain(files(&inside_lake, "json"))
    {
        std::fs::remove_file(f).unwrap();
    }
    agent.wait_for("/readyz to recover", Duration::from_secs(30), |a| {
        a.get("/readyz").0 == 200
    });
    agent.wait_for("new frames in the datalake", Duration::from_secs(30), |a| {
        a.metrics()
            .value("endo_agent_frames_delivered_total{sink=\"local\"}")
            > delivered
    });
    assert_eq!(agent.metrics().value("endo_agent_spool_disk_low"), 0.0);

    let log = agent.log_text();
    let full_lines = log.lines().filter(|l| l.contains("spool full")).count();
    assert!(
        (1..=10).contains(&full_lines),
        "{full_lines} 'spool full' lines: rate-limited to one every 10 s"
    );
    assert!(agent.stop().success());
    let log_lines = log.lines().count();
    assert!(log_lines < 200, "{log_lines} log lines:\n{log}");
}
