//! The fleet side, checked by the tools that will consume it: `promtool check rules` and
//! `promtool test rules` (a unit test per alert), the PrometheusRule kept equal to the
//! rules file, `kubectl kustomize` + `kubernetes-validate --strict` on the rendered k3s
//! manifests (the Prometheus Operator's CRDs have no schema there and are skipped), and
//! every metric the alerts and the Grafana dashboard use is one a running agent exports.

mod common;

use common::services::tool;
use common::{repo, with_common, Agent};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn alert_rules_pass_promtool_and_each_alert_has_a_unit_test() {
    let k3s = repo().join("k3s");
    let (ok, text) = run(Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(k3s.join("base/endo-agent.rules.yml")));
    assert!(ok, "{text}");
    let (ok, text) = run(Command::new(tool("promtool"))
        .args(["test", "rules"])
        .arg(k3s.join("tests/alerts.test.yml")));
    assert!(ok && text.contains("SUCCESS"), "{text}");
    // Every alert has at least one test case.
    let rules = std::fs::read_to_string(k3s.join("base/endo-agent.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(k3s.join("tests/alerts.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 9, "{alerts:?}");
    for a in &alerts {
        assert!(
            tests.contains(&format!("alertname: {a}")),
            "no promtool test for {a}"
        );
    }
}

#[test]
fn the_prometheus_rule_resource_carries_exactly_the_rules_file() {
    let k3s = repo().join("k3s/base");
    let rules = std::fs::read_to_string(k3s.join("endo-agent.rules.yml")).unwrap();
    let cr = std::fs::read_to_string(k3s.join("prometheusrule.yaml")).unwrap();
    let groups = &rules[rules.find("groups:").unwrap()..];
    let spec = &cr[cr.find("spec:\n").unwrap() + "spec:\n".len()..];
    let dedented: String = spec
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        dedented.trim_end(),
        groups.trim_end(),
        "regenerate prometheusrule.yaml from the rules file"
    );
}

/// `kubectl kustomize` of `dir`, holding every one of `kinds`, and passing
/// `kubernetes-validate --strict` (Kubernetes 1.32) with `resource` (kind/name) named as
/// passed; returns the rendered YAML.
fn rendered_and_valid(dir: &str, kinds: &[&str], resource: &str) -> String {
    let (ok, rendered) = run(Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join(dir)));
    assert!(ok, "{dir}: {rendered}");
    for kind in kinds {
        assert!(
            rendered.contains(&format!("kind: {kind}\n")),
            "{dir}: no {kind}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("rendered.yaml");
    std::fs::write(&f, &rendered).unwrap();
    let (ok, text) = run(Command::new(tool("kubernetes-validate"))
        .args(["-k", "1.32.0", "--strict"])
        .arg(&f));
    assert!(ok, "{dir}:\n{text}");
    assert!(
        text.contains(&format!("passed for resource {resource}")),
        "{dir}: {text}"
    );
    rendered
}

/// The `image:` of a manifest in the repository, and the manifest's text.
fn manifest_image(path: &str) -> (String, String) {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    let image = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("image: "))
        .unwrap_or_else(|| panic!("{path}: no image line"))
        .to_string();
    (image, text)
}

#[test]
fn the_rendered_k3s_manifests_validate() {
    let dir = tempfile::tempdir().unwrap();
    for overlay in ["k3s/base", "k3s/overlays/example"] {
        let kinds = [
            "DaemonSet",
            "Service",
            "ServiceMonitor",
            "PrometheusRule",
            "ConfigMap",
        ];
        let rendered = rendered_and_valid(overlay, &kinds, "daemonset/endo-agent");
        assert!(
            rendered.contains("grafana_dashboard: \"1\""),
            "dashboard ConfigMap label"
        );
    }
    // The validator does refuse a broken manifest (so a pass above means something).
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: x\nspec:\n  selector: {}\n  template:\n    spec:\n      containers: oops\n",
    )
    .unwrap();
    let (ok, text) = run(Command::new(tool("kubernetes-validate"))
        .args(["-k", "1.32.0", "--strict"])
        .arg(&bad));
    assert!(!ok, "a broken DaemonSet passed:\n{text}");
}

/// `endo_agent_*` names in a text, with histogram suffixes folded to the family name.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(p) = text[i..].find("endo_agent_") {
        let start = i + p;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        out.insert(text[start..end].to_string());
        i = end;
    }
    out
}

#[test]
fn every_metric_in_the_alerts_and_the_dashboard_is_exported_by_the_agent() {
    let k3s = repo().join("k3s/base");
    let used: BTreeSet<String> = metric_names(
        &(std::fs::read_to_string(k3s.join("endo-agent.rules.yml")).unwrap()
            + &std::fs::read_to_string(k3s.join("dashboards/endo-agent-fleet.json")).unwrap()),
    );
    assert!(used.len() >= 15, "{used:?}");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = with_common(
        d,
        "[source]\nkind = \"phantom\"\nwidth = 640\nheight = 360\nfps = 30\n\
         schedule = \"good 60s\"\n[select]\nwindow_ms = 200\n",
    );
    let agent = Agent::start(d, &config);
    agent.wait_for(
        "frames scored and delivered",
        Duration::from_secs(30),
        |a| {
            a.metrics()
                .value("endo_agent_frames_delivered_total{sink=\"local\"}")
                >= 1.0
        },
    );
    let exported: BTreeSet<String> = agent
        .metrics()
        .0
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    assert!(agent.stop().success());
    let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "used but not exported: {missing:?}\nexported: {exported:?}"
    );
}

#[test]
fn the_daemonset_runs_the_image_the_script_builds_as_its_user() {
    // scripts/image.sh tags localhost/endo-agent:VERSION (pushed as REGISTRY/endo-agent:
    // VERSION), and the Containerfile's user is the one the pod's securityContext names.
    let (image, ds) = manifest_image("k3s/base/daemonset.yaml");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        image.ends_with(&format!("/endo-agent:{version}")),
        "the DaemonSet runs {image}, the script builds endo-agent:{version}"
    );
    let script = std::fs::read_to_string(repo().join("scripts/image.sh")).unwrap();
    assert!(script.contains("image=\"localhost/endo-agent:${ENDO_IMAGE_TAG:-$version}\""));
    let containerfile = std::fs::read_to_string(repo().join("Containerfile")).unwrap();
    let user = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    let (uid, gid) = user.trim().split_once(':').unwrap();
    assert!(
        ds.contains(&format!("runAsUser: {uid}\n")),
        "runAsUser is not {uid}"
    );
    assert!(
        ds.contains(&format!("runAsGroup: {gid}\n")),
        "runAsGroup is not {gid}"
    );
    assert!(ds.contains("readOnlyRootFilesystem: true"));
}

#[test]
fn the_ingest_statefulset_renders_validates_and_runs_the_agents_image() {
    // Issue 15: the cloud end of the MQTT route, two replicas on one shared subscription,
    // each under its pod's stable name.
    let kinds = [
        "StatefulSet",
        "Service",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "ConfigMap",
    ];
    let rendered = rendered_and_valid("k3s/ingest", &kinds, "statefulset/endo-ingest");
    assert!(rendered.contains("replicas: 2\n"), "{rendered}");
    assert!(
        rendered.contains("- name: ENDO_INGEST_CLIENT_ID\n          valueFrom:\n            fieldRef:\n              fieldPath: metadata.name"),
        "each replica's client id is its pod name:\n{rendered}"
    );
    let (ingest_image, sts) = manifest_image("k3s/ingest/statefulset.yaml");
    assert_eq!(ingest_image, manifest_image("k3s/base/daemonset.yaml").0);
    assert!(sts.contains("readOnlyRootFilesystem: true") && sts.contains("runAsUser: 10001\n"));
    // Its config is valid, and shares the frames.
    let cfg = repo().join("k3s/ingest/ingest.toml");
    let (ok, text) = run(Command::new(common::bin())
        .args(["check-config", "--no-files"])
        .arg(&cfg));
    assert!(ok, "{text}");
    let toml = std::fs::read_to_string(&cfg).unwrap();
    assert!(toml.contains("share_group = \"endo-ingest\""), "{toml}");
    // Probed and scraped on the port its config listens on.
    assert!(toml.contains("listen = \"0.0.0.0:9465\""), "{toml}");
    assert!(sts.contains("containerPort: 9465") && sts.contains("path: /readyz"));
}
