//! The command line with bad input: every mistake gives a non-zero exit and a message
//! that names the file, the key or the thing that is wrong. And the shipped configs pass.

mod common;

use common::{bin, model_path, repo};
use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn the_shipped_configs_are_valid() {
    // The example names a tower's paths (/usr/share/..., /etc/endo-agent/...): its values
    // are checked here, its files only on a tower. The demo's files are in the repository.
    let example = repo().join("config/agent.example.toml");
    let (ok, text) = run(&["check-config", "--no-files", example.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("appsink name=agent_sink"), "{text}");
    let demo = repo().join("config/demo.toml");
    let (ok, text) = run(&["check-config", demo.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("appsink name=agent_sink"), "{text}");
    assert!(
        text.contains("model: endo-quality") && text.contains("sha256 and manifest match"),
        "{text}"
    );
    // Without --no-files the example's missing model is found, as `run` would find it.
    let (ok, text) = run(&["check-config", example.to_str().unwrap()]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("/usr/share/endo-agent/models/quality-int8.manifest.json"),
        "{text}"
    );
}

#[test]
fn check_config_loads_every_file_the_config_names() {
    // Issue 12 item 6: a missing model, token_file or ca_file was only found by `run`.
    let d = tempfile::tempdir().unwrap();
    let model = model_path();
    let base = format!("[model]\npath = \"{model}\"\n");
    let check = |name: &str, text: &str| {
        let f = write(&d, name, text);
        let (ok, out) = run(&["check-config", &f]);
        (ok, out, f)
    };
    // Every file present and loadable: each is listed as checked, the token is not shown.
    let token = write(&d, "token", "a-token-of-24-characters\n");
    write(&d, "short", "short\n");
    write(&d, "not-a-cert.pem", "this is no certificate\n");
    let (ok, out, _) = check(
        "good.toml",
        &format!("{base}[http]\nlisten = \"0.0.0.0:0\"\ntoken_file = \"{token}\"\n"),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("first line of") && out.contains("(24 characters)"),
        "{out}"
    );
    assert!(
        !out.contains("a-token-of-24-characters"),
        "the token was printed: {out}"
    );
    assert!(out.contains("spool.dir: "), "{out}");

    for (name, text, expect) in [
        (
            "model.toml",
            "[model]\npath = \"missing/model.onnx\"\n".to_string(),
            vec!["missing/model.manifest.json"],
        ),
        (
            "token.toml",
            format!("{base}[http]\nlisten = \"0.0.0.0:0\"\ntoken_file = \"no-such-token\"\n"),
            vec!["http.token_file", "no-such-token"],
        ),
        (
            "short-token.toml",
            format!("{base}[http]\nlisten = \"0.0.0.0:0\"\ntoken_file = \"short\"\n"),
            vec!["http.token_file", "at least 16 characters"],
        ),
        (
            "ca.toml",
            format!("{base}[uplink]\nsinks = [\"mqtt\"]\n[mqtt]\nca_file = \"no-such-ca.pem\"\n"),
            vec!["mqtt.ca_file", "no-such-ca.pem"],
        ),
        (
            "bad-ca.toml",
            format!("{base}[uplink]\nsinks = [\"mqtt\"]\n[mqtt]\nca_file = \"not-a-cert.pem\"\n"),
            vec!["mqtt.ca_file", "not-a-cert.pem", "no PEM certificate"],
        ),
        (
            "password.toml",
            format!(
                "{base}[uplink]\nsinks = [\"mqtt\"]\n[mqtt]\ntls = false\nallow_plaintext = true\nusername = \"u\"\npassword_file = \"no-such-password\"\n"
            ),
            vec!["mqtt.password_file", "no-such-password"],
        ),
        (
            "s3.toml",
            format!(
                "{base}[uplink]\nsinks = [\"s3\"]\n[s3]\nendpoint = \"https://s3.example.org\"\nbucket = \"b\"\ncredentials_file = \"no-such-credentials\"\n"
            ),
            vec!["s3.credentials_file", "no-such-credentials"],
        ),
        (
            "file-source.toml",
            format!("{base}[source]\nkind = \"file\"\npath = \"no-such-video.mkv\"\n"),
            vec!["source.path", "no-such-video.mkv"],
        ),
        (
            "spool-file.toml",
            format!("{base}[spool]\ndir = \"short/spool\"\n"),
            vec!["spool.dir", "is not a directory"],
        ),
    ] {
        let (ok, out, f) = check(name, &text);
        assert!(!ok, "{name} passed: {out}");
        assert!(out.contains(&f), "{name}: the config file is not named: {out}");
        for e in expect {
            assert!(out.contains(e), "{name}: {e:?} is not in: {out}");
        }
    }
}

#[test]
fn check_config_refuses_a_corrupt_model_with_its_path_and_reason() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("quality-int8.onnx");
    let mut bytes = std::fs::read(model_path()).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&m, bytes).unwrap();
    std::fs::copy(
        repo().join("models/quality-int8.manifest.json"),
        d.path().join("quality-int8.manifest.json"),
    )
    .unwrap();
    let f = write(&d, "a.toml", "[model]\npath = \"quality-int8.onnx\"\n");
    let (ok, out) = run(&["check-config", &f]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&m.display().to_string()) && out.contains("sha256"),
        "{out}"
    );
}

#[test]
fn an_unknown_key_names_the_key_and_the_file() {
    let d = tempfile::tempdir().unwrap();
    let f = write(&d, "a.toml", "[select]\nthreshhold_high = 0.7\n");
    let (ok, text) = run(&["check-config", &f]);
    assert!(!ok);
    assert!(
        text.contains("threshhold_high") && text.contains(&f),
        "{text}"
    );
}

#[test]
fn a_wrong_type_names_the_key() {
    let d = tempfile::tempdir().unwrap();
    let f = write(&d, "a.toml", "[source]\nfps = \"sixty\"\n");
    let (ok, text) = run(&["check-config", &f]);
    assert!(!ok);
    assert!(
        text.contains("fps") && text.contains("invalid type") && text.contains(&f),
        "{text}"
    );
}

#[test]
fn a_value_out_of_range_names_the_key() {
    let d = tempfile::tempdir().unwrap();
    let f = write(&d, "a.toml", "[encode]\njpeg_quality = 0\n");
    let (ok, text) = run(&["check-config", &f]);
    assert!(!ok);
    assert!(text.contains("encode.jpeg_quality"), "{text}");
}

#[test]
fn a_mask_whose_width_overflows_is_refused_naming_the_key() {
    // Issue 12 item 3: it passed, x + width wrapped and the mask was not applied.
    let d = tempfile::tempdir().unwrap();
    let f = write(&d, "a.toml", "[fov]\nmasks = [[1, 0, 4294967295, 200]]\n");
    let (ok, text) = run(&["check-config", &f]);
    assert!(!ok, "{text}");
    assert!(text.contains("fov.masks") && text.contains(&f), "{text}");
}

#[test]
fn a_template_with_an_unknown_placeholder_is_named() {
    let d = tempfile::tempdir().unwrap();
    let t = write(&d, "card.pipeline", "v4l2src device={devcie}");
    let f = write(
        &d,
        "a.toml",
        &format!("[source]\nkind = \"v4l2\"\n[capture]\ntemplate = \"{t}\"\n"),
    );
    let (ok, text) = run(&["check-config", &f]);
    assert!(!ok);
    assert!(
        text.contains("card.pipeline") && text.contains("{devcie}"),
        "{text}"
    );
}

#[test]
fn a_template_that_does_not_parse_is_named_with_gstreamers_reason() {
    let d = tempfile::tempdir().unwrap();
    let t = write(&d, "broken.pipeline", "videotestsrc ! no_such_element_here");
    let f = write(
        &d,
        "a.toml",
        &format!("[source]\nkind = \"test\"\n[capture]\ntemplate = \"{t}\"\n"),
    );
    let (ok, text) = run(&["check-config", &f]);
    assert!(!ok);
    assert!(
        text.contains("broken.pipeline") && text.contains("does not parse"),
        "{text}"
    );
    assert!(text.contains("no_such_element_here"), "{text}");
}

#[test]
fn run_refuses_a_missing_model_with_its_path() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        &d,
        "a.toml",
        "[model]\npath = \"missing/model.onnx\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
    );
    let (ok, text) = run(&["run", "--config", &f]);
    assert!(!ok);
    assert!(text.contains("missing/model.manifest.json"), "{text}");
}

#[test]
fn run_refuses_a_model_whose_sha256_does_not_match() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m.onnx");
    let mut bytes = std::fs::read(model_path()).unwrap();
    bytes.push(0);
    std::fs::write(&m, bytes).unwrap();
    std::fs::copy(
        repo().join("models/quality-int8.manifest.json"),
        d.path().join("m.manifest.json"),
    )
    .unwrap();
    let f = write(
        &d,
        "a.toml",
        "[model]\npath = \"m.onnx\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
    );
    let (ok, text) = run(&["run", "--config", &f]);
    assert!(!ok);
    assert!(
        text.contains("sha256") && text.contains(&m.display().to_string()),
        "{text}"
    );
}

#[test]
fn score_prints_a_verdict_per_image() {
    let d = tempfile::tempdir().unwrap();
    let stills = d.path().join("stills");
    let (ok, text) = run(&[
        "phantom",
        "--width",
        "640",
        "--height",
        "360",
        "--schedule",
        "good 1s; dark 1s gain=0.2",
        "--fps",
        "2",
        "--stills",
        stills.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let csv = std::fs::read_to_string(stills.join("labels.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    let images: Vec<String> = (0..4)
        .map(|i| {
            stills
                .join(format!("frame_{i:06}.png"))
                .display()
                .to_string()
        })
        .collect();
    let mut args = vec!["score", "--json", "--model"];
    let model = model_path();
    args.push(&model);
    args.extend(images.iter().map(String::as_str));
    let (ok, text) = run(&args);
    assert!(ok, "{text}");
    let verdicts: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(verdicts.len(), 4, "{text}");
    assert!(
        verdicts[0]["score"]["reasons"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{}",
        verdicts[0]
    );
    assert_eq!(
        verdicts[3]["score"]["reasons"][0], "dark",
        "{}",
        verdicts[3]
    );
}

#[test]
fn version_names_the_agent_and_the_model() {
    let (ok, text) = run(&[
        "version",
        "--config",
        repo().join("config/demo.toml").to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")) && text.contains("endo-quality"),
        "{text}"
    );
}

#[test]
fn devices_lists_what_the_device_monitor_sees() {
    let (ok, text) = run(&["devices", "--json"]);
    assert!(ok, "{text}");
    let json_start = text.find('[').expect("a JSON list");
    let list: Vec<serde_json::Value> = serde_json::from_str(&text[json_start..]).unwrap();
    // This machine may have no camera; whatever is listed is a video source with caps.
    for d in list {
        assert!(d["class"].as_str().unwrap().contains("Video"), "{d}");
        // Each mode says how the agent would read it.
        let (caps, read) = (d["caps"].as_array().unwrap(), d["read"].as_array().unwrap());
        assert_eq!(caps.len(), read.len(), "{d}");
        for r in read {
            assert!(
                ["in_place", "needs_decoder", "converted"].contains(&r.as_str().unwrap()),
                "{d}"
            );
        }
    }
}

#[test]
fn endo_agent_device_from_the_environment_names_the_tower_and_is_checked() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        &d,
        "a.toml",
        "[agent]\nsite = \"st-mary\"\ndevice = \"from-file\"\n",
    );
    let check = |device: &str| {
        let out = Command::new(bin())
            .args(["check-config", "--no-files", &f])
            .env("ENDO_AGENT_DEVICE", device)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = check("tower-node-7");
    assert!(
        ok && text.contains("keys: frames/st-mary/tower-node-7/"),
        "{text}"
    );
    let (ok, text) = check("");
    assert!(
        ok && text.contains("keys: frames/st-mary/from-file/"),
        "{text}"
    );
    let (ok, text) = check("no/slashes");
    assert!(!ok, "{text}");
    assert!(
        text.contains("ENDO_AGENT_DEVICE") && text.contains("no/slashes") && text.contains(&f),
        "{text}"
    );
}
