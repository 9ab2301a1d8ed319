//! podman as the tests run it: this machine's settings (scripts/containers.conf: runc,
//! no default ulimits), and a container removed when the test ends.

use super::repo;
use std::process::{Command, Output};

pub fn podman() -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", repo().join("scripts/containers.conf"));
    c
}

/// stdout then stderr of a finished command.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run podman with `args`; it must succeed. Its stdout, trimmed.
pub fn run(args: &[&str]) -> String {
    let out = podman()
        .args(args)
        .output()
        .expect("podman (scripts/setup-test.sh installs it)");
    assert!(out.status.success(), "podman {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A container by name, removed (killed) when dropped.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `podman run -d --name NAME ARGS…`.
    pub fn start(name: &str, args: &[&str]) -> Container {
        let _ = podman().args(["rm", "-f", "-t", "0", name]).output();
        let mut all = vec!["run", "-d", "--name", name];
        all.extend_from_slice(args);
        run(&all);
        Container {
            name: name.to_string(),
        }
    }

    /// `podman exec NAME sh -c SCRIPT`: whether it succeeded, and its output.
    pub fn exec(&self, script: &str) -> (bool, String) {
        let out = podman()
            .args(["exec", &self.name, "sh", "-c", script])
            .output()
            .expect("podman exec");
        (out.status.success(), text(&out))
    }

    /// Everything the container wrote to stdout and stderr.
    pub fn logs(&self) -> String {
        let out = podman().args(["logs", &self.name]).output().unwrap();
        text(&out)
    }

    /// `podman stop -t SECS` (SIGTERM, then SIGKILL); the main process's exit code.
    pub fn stop(&self, secs: u32) -> i64 {
        run(&["stop", "-t", &secs.to_string(), &self.name]);
        run(&["inspect", "-f", "{{.State.ExitCode}}", &self.name])
            .parse()
            .unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.name]).output();
    }
}
