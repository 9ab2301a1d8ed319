//! The HTTP listener over TLS (issue 12, also build): with `[http] tls_cert_file` and
//! `tls_key_file` every route is served over HTTPS to a real client (curl, trusting the
//! test CA), plain HTTP and a client trusting another CA get nothing, unusable files stop
//! the start naming the key; and every route refuses a body over the limit.

mod common;

use common::services::Pki;
use common::{bin, model_path, Agent, Metrics};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "tls-test-token-0123456789";

fn config(dir: &Path, pki: &Pki) -> String {
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
[datalake]
dir = "{lake}"
[spool]
dir = "{spool}"
[http]
listen = "127.0.0.1:0"
token = "{TOKEN}"
tls_cert_file = "{cert}"
tls_key_file = "{key}"
"#,
        model = model_path(),
        lake = dir.join("lake").display(),
        spool = dir.join("spool").display(),
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
    )
}

/// `curl` against the agent: (exit code, HTTP status or 0, body).
fn curl(args: &[&str], url: &str) -> (i32, u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        body.to_string(),
    )
}

#[test]
fn https_serves_every_route_and_refuses_plain_http_and_untrusted_clients() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&dir.path().join("pki"));
    let agent = Agent::start(dir.path(), &config(dir.path(), &pki));
    assert!(
        agent
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("http listening on https://")),
        "the log says https"
    );
    let url = |path: &str| format!("https://{}{path}", agent.addr);
    let ca = pki.ca.display().to_string();
    let trusted = ["--cacert", ca.as_str()];
    let auth = format!("Authorization: Bearer {TOKEN}");

    assert_eq!(curl(&trusted, &url("/healthz")), (0, 200, "ok\n".into()));
    let mut ready = false;
    for _ in 0..100 {
        if curl(&trusted, &url("/readyz")).1 == 200 {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ready, "/readyz over https");
    let (_, code, body) = curl(&trusted, &url("/metrics"));
    assert_eq!(code, 200);
    assert!(
        body.contains("endo_agent_frames_scored_total"),
        "{body:.300}"
    );
    let (_, code, body) = curl(&trusted, &url("/api/status"));
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(status["frames_captured"].as_u64().unwrap() > 0, "{status}");
    let (_, code, page) = curl(&trusted, &url("/"));
    assert_eq!(code, 200);
    assert!(
        page.contains("<html") || page.contains("<!doctype"),
        "{page:.200}"
    );
    // The operator API: the token travels inside TLS and is still required.
    assert_eq!(curl(&trusted, &url("/api/operator")).1, 401);
    let (_, code, op) = curl(
        &[&trusted[..], &["-H", auth.as_str()]].concat(),
        &url("/api/operator"),
    );
    assert_eq!(code, 200, "{op}");
    let (_, code, kept) = curl(
        &[&trusted[..], &["-H", auth.as_str(), "-X", "POST"]].concat(),
        &url("/api/mark"),
    );
    assert_eq!(code, 201, "mark over https: {kept}");

    // Plain HTTP to the HTTPS port: no HTTP answer at all, counted as a failed handshake.
    let (exit, code, _) = curl(&[], &format!("http://{}/healthz", agent.addr));
    assert_ne!(exit, 0, "plain http must fail");
    assert_eq!(code, 0);
    // A client that trusts another CA refuses the agent's certificate (curl exit 60).
    let rogue = pki.rogue_ca.display().to_string();
    let (exit, code, _) = curl(&["--cacert", rogue.as_str()], &url("/healthz"));
    assert_eq!((exit, code), (60, 0), "an untrusted certificate is refused");
    let (_, _, text) = curl(&trusted, &url("/metrics"));
    let m = Metrics(text);
    assert!(
        m.value(r#"endo_agent_http_connections_total{outcome="tls_failed"}"#) >= 2.0,
        "the plain and the untrusted client are counted"
    );
    // Still serving after them.
    assert_eq!(curl(&trusted, &url("/healthz")).1, 200);
    assert!(agent.stop().success());
}

#[test]
fn every_route_refuses_a_body_over_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&dir.path().join("pki"));
    let agent = Agent::start(dir.path(), &config(dir.path(), &pki));
    let ca = pki.ca.display().to_string();
    let auth = format!("Authorization: Bearer {TOKEN}");
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 3 << 20]).unwrap();
    let data = format!("@{}", big.display());
    for (method, path) in [
        ("POST", "/api/mark"),
        ("POST", "/api/session/start"),
        ("POST", "/api/freeze"),
        ("POST", "/api/annotations"),
        ("GET", "/metrics"),
        ("GET", "/api/status"),
    ] {
        let (_, code, body) = curl(
            &[
                "--cacert",
                ca.as_str(),
                "-H",
                auth.as_str(),
                "-H",
                "Content-Type: application/json",
                "-X",
                method,
                "--data-binary",
                data.as_str(),
            ],
            &format!("https://{}{path}", agent.addr),
        );
        assert_eq!(code, 413, "{method} {path}: {body:.200}");
        assert!(body.contains("limit"), "{method} {path}: {body:.200}");
    }
    assert!(agent.stop().success());
}

#[test]
fn unusable_certificate_files_stop_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&dir.path().join("pki"));
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let good = config(dir.path(), &pki);
    for (cfg, key) in [
        (
            good.replace(
                &pki.server_cert.display().to_string(),
                &not_pem.display().to_string(),
            ),
            "http.tls_cert_file",
        ),
        (
            good.replace(
                &pki.server_key.display().to_string(),
                &not_pem.display().to_string(),
            ),
            "http.tls_key_file",
        ),
        (
            good.replace(
                &format!("tls_key_file = \"{}\"\n", pki.server_key.display()),
                "",
            ),
            "http.tls_cert_file",
        ),
    ] {
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, &cfg).unwrap();
        for args in [&["check-config"][..], &["run", "--config"][..]] {
            let cmd = args[0];
            let out = Command::new(bin()).args(args).arg(&path).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{cmd} must refuse: {err}");
            assert!(err.contains(key), "{cmd}: {key} named in: {err}");
        }
    }
}
