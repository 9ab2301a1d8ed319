//! The Yocto layer: the recipe passes `oelint-adv` (PyPI) with no finding above info
//! (the HOMEPAGE reachability check is skipped: it needs the internet), its crate list is
//! what `Cargo.lock` locks, and the runtime GStreamer plugins it declares cover the
//! elements the shipped pipelines use.

mod common;

use common::repo;
use common::services::tool;
use std::process::Command;

const RECIPE: &str = "yocto/meta-endo-agent/recipes-multimedia/endo-agent/endo-agent_0.1.0.bb";

#[test]
fn the_recipe_passes_oelint_adv() {
    let out = Command::new(tool("oelint-adv"))
        .args(["--quiet", "--release", "scarthgap"])
        .args(["--suppress", "oelint.vars.homepageping", "--hide", "info"])
        .arg(repo().join(RECIPE))
        .current_dir(repo().join("yocto/meta-endo-agent"))
        .output()
        .expect("oelint-adv (scripts/setup-test.sh installs it)");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}

#[test]
fn the_crate_list_matches_cargo_lock() {
    let out = Command::new("python3")
        .arg(repo().join("yocto/scripts/gen-crates.py"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And the check is not vacuous: every locked crates.io package is listed with its hash.
    let lock = std::fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    let inc = std::fs::read_to_string(
        repo().join("yocto/meta-endo-agent/recipes-multimedia/endo-agent/endo-agent-crates.inc"),
    )
    .unwrap();
    let mut n = 0;
    for block in lock.split("[[package]]").skip(1) {
        let get = |k: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        let (Some(name), Some(version), Some(sum)) = (get("name"), get("version"), get("checksum"))
        else {
            continue; // the workspace crate itself
        };
        assert!(
            inc.contains(&format!("crate://crates.io/{name}/{version} ")),
            "{name} {version}"
        );
        assert!(
            inc.contains(&format!("SRC_URI[{name}-{version}.sha256sum] = \"{sum}\"")),
            "{name}"
        );
        n += 1;
    }
    assert!(n > 100, "{n} crates");
}

#[test]
fn the_recipe_declares_the_plugins_the_pipelines_need() {
    let recipe = std::fs::read_to_string(repo().join(RECIPE)).unwrap();
    // element → the Yocto package that provides it
    let provides = [
        (
            "videoconvert",
            "gstreamer1.0-plugins-base-videoconvertscale",
        ),
        ("videoscale", "gstreamer1.0-plugins-base-videoconvertscale"),
        ("videorate", "gstreamer1.0-plugins-base-videorate"),
        ("videotestsrc", "gstreamer1.0-plugins-base-videotestsrc"),
        ("appsrc", "gstreamer1.0-plugins-base-app"),
        ("decodebin", "gstreamer1.0-plugins-base-playback"),
        ("v4l2src", "gstreamer1.0-plugins-good-video4linux2"),
        ("jpegdec", "gstreamer1.0-plugins-good-jpeg"),
        ("rtspsrc", "gstreamer1.0-plugins-good-rtsp"),
    ];
    let mut pipelines = String::new();
    for e in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "pipeline") {
            pipelines += &std::fs::read_to_string(p).unwrap();
        }
    }
    for (element, package) in provides {
        if pipelines.contains(element) {
            assert!(recipe.contains(package), "{element} needs {package}");
        }
    }
    assert!(recipe.contains("inherit cargo") && recipe.contains("systemd"));
    assert!(recipe.contains("SYSTEMD_SERVICE:${PN} = \"endo-agent.service\""));
}
