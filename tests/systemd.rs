//! The systemd unit and the agent's side of `Type=notify`: the unit's hardening is scored
//! by `systemd-analyze security` (target: exposure ≤ 2.0), and the real binary, started
//! with a notify socket this test owns, sends STATUS lines, READY=1 only after the first
//! frame was scored, WATCHDOG=1 while frames flow (and while it knowingly retries a
//! missing camera), and STOPPING=1 on SIGTERM.

mod common;

use common::{repo, with_common, Agent};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn the_unit_is_hardened_to_an_exposure_of_two_or_less() {
    let unit = repo().join("systemd/endo-agent.service");
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (package systemd; scripts/setup-test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure line:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let level: f64 = line
        .split(':')
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    eprintln!("{line}");
    assert!(level <= 2.0, "{line}");
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "ExecStartPre=/usr/bin/endo-agent check-config",
        "LimitNOFILE=65536",
        "StateDirectory=endo-agent",
        // GStreamer's registry in the unit's cache: the dynamic user has no home.
        "CacheDirectory=endo-agent",
        "Environment=GST_REGISTRY=%C/endo-agent/",
        "CapabilityBoundingSet=\n",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "DevicePolicy=closed",
    ] {
        assert!(
            std::fs::read_to_string(&unit).unwrap().contains(key),
            "{key}"
        );
    }
}

/// Datagrams received on a notify socket, with their arrival times.
struct NotifySocket {
    path: std::path::PathBuf,
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    fn bind(dir: &std::path::Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                seen2.lock().unwrap().push((Instant::now(), msg));
            }
        });
        NotifySocket { path, seen }
    }

    fn messages(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn count(&self, what: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.lines().any(|l| l == what))
            .count()
    }

    fn wait(&self, what: &str, timeout: Duration, f: impl Fn(&[String]) -> bool) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if f(&self.messages()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}; got {:#?}", self.messages());
    }
}

#[test]
fn ready_watchdog_status_and_stopping_reach_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = NotifySocket::bind(d);
    let config = with_common(
        d,
        "[source]\nkind = \"phantom\"\nwidth = 640\nheight = 360\nfps = 30\n\
         schedule = \"good 60s\"\nmax_frames = 150\n[capture]\non_eos = \"idle\"\n",
    );
    let agent = Agent::start_with_env(
        d,
        &config,
        &[
            ("NOTIFY_SOCKET", sock.path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    sock.wait("READY=1", Duration::from_secs(30), |m| {
        m.iter().any(|l| l.lines().any(|l| l == "READY=1"))
    });
    let msgs = sock.messages();
    let ready_at = msgs.iter().position(|m| m.contains("READY=1")).unwrap();
    assert!(
        msgs[..ready_at]
            .iter()
            .any(|m| m.starts_with("STATUS=loading model")),
        "{msgs:#?}"
    );
    assert!(
        msgs[ready_at].contains("STATUS=scoring; first frame quality"),
        "{msgs:#?}"
    );
    assert_eq!(sock.count("READY=1"), 1, "READY is sent once");
    assert!(agent.metrics().value("endo_agent_frames_scored_total") >= 1.0);

    // The watchdog (1 s → pinged every 0.5 s) is fed while frames are scored...
    let before = sock.count("WATCHDOG=1");
    std::thread::sleep(Duration::from_secs(2));
    let during = sock.count("WATCHDOG=1") - before;
    assert!(
        (2..=6).contains(&during),
        "{during} pings in 2 s while scoring"
    );
    // ...a periodic status line a person can read...
    sock.wait("a periodic STATUS line", Duration::from_secs(10), |m| {
        m.iter()
            .any(|l| l.starts_with("STATUS=") && l.contains("fps;") && l.contains("sinks local up"))
    });
    // ...and, once the source ended and everything is written, by the idle upkeep.
    agent.wait_for("the source to end", Duration::from_secs(30), |a| {
        a.status()["drained"].as_bool() == Some(true)
    });
    let before = sock.count("WATCHDOG=1");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        sock.count("WATCHDOG=1") - before >= 2,
        "idle after a finished source is healthy"
    );

    assert!(agent.stop().success());
    sock.wait("STOPPING=1", Duration::from_secs(5), |m| {
        m.iter().any(|l| l.lines().any(|l| l == "STOPPING=1"))
    });
}

#[test]
fn a_missing_camera_is_never_ready_but_keeps_the_watchdog_fed_while_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = NotifySocket::bind(d);
    let config = with_common(
        d,
        "[source]\nkind = \"v4l2\"\ndevice = \"/dev/video-not-plugged-in\"\n",
    );
    let agent = Agent::start_with_env(
        d,
        &config,
        &[
            ("NOTIFY_SOCKET", sock.path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    sock.wait(
        "watchdog pings while the source backs off",
        Duration::from_secs(15),
        |m| {
            m.iter()
                .filter(|l| l.lines().any(|l| l == "WATCHDOG=1"))
                .count()
                >= 3
        },
    );
    sock.wait(
        "a status line naming the backoff",
        Duration::from_secs(10),
        |m| m.iter().any(|l| l.contains("source backoff")),
    );
    assert_eq!(sock.count("READY=1"), 0, "no frame was ever scored");
    assert!(agent.stop().success());
}
