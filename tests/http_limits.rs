//! The HTTP listener under a flood of idle and slow connections (issue 12 item 2): with
//! `LimitNOFILE=1024`, 1,100 idle connections took every descriptor, `/healthz` stopped
//! answering and spool writes failed with EMFILE, losing selected frames; a client sending
//! one byte a second held its connection for ever. Now connections are capped, slow or
//! idle ones are closed after the header timeout, and the spool keeps its descriptors.

mod common;

use common::{model_path, Agent};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn config(dir: &std::path::Path) -> String {
    format!(
        r#"
[source]
kind = "phantom"
width = 640
height = 360
fps = 30
schedule = "good 600s"
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
[http]
listen = "127.0.0.1:0"
"#,
        model = model_path(),
        lake = dir.join("lake").display(),
        spool = dir.join("spool").display(),
    )
}

/// Whether the peer closed `s` within `within` (a read returned end-of-file or reset).
fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 1024];
    while t0.elapsed() < within {
        match s.read(&mut buf) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(t0.elapsed()),
        }
    }
    None
}

#[test]
fn a_flood_of_idle_and_slow_connections_neither_silences_health_nor_loses_frames() {
    // This process holds 1,100 connections: make sure it may.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(8192);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start_with_nofile(dir.path(), &config(dir.path()), 1024);
    agent.wait_for("frames delivered", Duration::from_secs(60), |a| {
        a.metrics()
            .value("endo_agent_frames_delivered_total{sink=\"local\"}")
            >= 3.0
    });
    let before = agent
        .metrics()
        .value("endo_agent_frames_delivered_total{sink=\"local\"}");

    // A slow client: one byte of a request header a second.
    let mut slow = TcpStream::connect(&agent.addr).unwrap();
    let slow_thread = std::thread::spawn(move || {
        let t0 = Instant::now();
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*b]).is_err() {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_secs(1));
            if t0.elapsed() > Duration::from_secs(40) {
                break;
            }
        }
        closed_within(&mut slow, Duration::from_secs(1)).map(|_| t0.elapsed())
    });

    // 1,100 idle connections: more than the agent has descriptors for.
    let t_flood = Instant::now();
    let mut idle: Vec<TcpStream> = (0..1100)
        .filter_map(|_| TcpStream::connect(&agent.addr).ok())
        .collect();
    assert!(idle.len() >= 1000, "only {} connections opened", idle.len());

    // Health answers again once the idle ones timed out (10 s), though they are still
    // open on this side.
    let end = Instant::now() + Duration::from_secs(30);
    let healthy_after = loop {
        let ok = TcpStream::connect(&agent.addr).ok().and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .ok()?;
            let mut answer = String::new();
            s.read_to_string(&mut answer).ok()?;
            answer.starts_with("HTTP/1.1 200").then_some(())
        });
        if ok.is_some() {
            break t_flood.elapsed();
        }
        assert!(
            Instant::now() < end,
            "/healthz did not answer within 30 s of the flood"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!("healthz answered {healthy_after:?} after the flood");

    // An idle connection of the flood is closed by the agent (the header timeout).
    let first_idle = &mut idle[0];
    assert!(
        closed_within(first_idle, Duration::from_secs(20)).is_some(),
        "an idle connection was kept open"
    );
    let slow_closed = slow_thread.join().unwrap();
    let slow_closed = slow_closed.expect("the slow client kept its connection for 40 s");
    assert!(
        slow_closed < Duration::from_secs(20),
        "the slow client was closed only after {slow_closed:?}"
    );

    // Frames went on: none lost to EMFILE, deliveries continued during the flood.
    agent.wait_for("more deliveries", Duration::from_secs(30), |a| {
        a.metrics()
            .value("endo_agent_frames_delivered_total{sink=\"local\"}")
            > before + 3.0
    });
    let m = agent.metrics();
    assert_eq!(
        m.value("endo_agent_frames_evicted_total{reason=\"spool_write_failed\"}"),
        0.0,
        "{}",
        agent.log_text()
    );
    assert!(
        m.value("endo_agent_http_connections_total{outcome=\"refused_busy\"}") >= 700.0,
        "{}",
        m.0
    );
    drop(idle);
    assert!(agent.stop().success());
}
