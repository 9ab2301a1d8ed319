//! Helpers for integration tests: run the real `endo-agent` binary on a config written
//! by the test, find its HTTP port (port 0 → chosen by the OS, read from its log), scrape
//! its endpoints, and stop it with SIGTERM when the test ends.
#![allow(dead_code)]

pub mod podman;
pub mod services;
pub mod uplink;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod root;
pub use root::repo;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_endo-agent")
}

pub fn model_path() -> String {
    repo()
        .join("models/quality-int8.onnx")
        .display()
        .to_string()
}

/// Append the sections every test shares: the shipped model, a datalake in `dir`, HTTP on
/// a free loopback port.
pub fn with_common(dir: &std::path::Path, config: &str) -> String {
    format!(
        "{config}\n[model]\npath = \"{}\"\n[datalake]\ndir = \"{}\"\n[spool]\ndir = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
        model_path(),
        dir.join("lake").display(),
        dir.join("spool").display()
    )
}

/// An HTTP client that returns error statuses as responses, for asserting on them.
pub fn http_client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

/// A running agent. Killed (SIGKILL) on drop if the test did not stop it.
/// A mount made for the agent alone (see [`Agent::start_with_mounts`]).
pub enum Mount {
    /// Bind `.0` over `.1`.
    Bind(PathBuf, PathBuf),
    /// A tmpfs of `.1` KiB at `.0`, as a small disk that fills.
    Tmpfs(PathBuf, u64),
}

/// One mount(2) call, its strings made before the fork.
struct MountCall {
    src: Option<std::ffi::CString>,
    dst: std::ffi::CString,
    fstype: Option<std::ffi::CString>,
    flags: libc::c_ulong,
    data: Option<std::ffi::CString>,
}

impl Mount {
    fn call(&self) -> MountCall {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        match self {
            Mount::Bind(src, dst) => MountCall {
                src: Some(c(src)),
                dst: c(dst),
                fstype: None,
                flags: libc::MS_BIND,
                data: None,
            },
            Mount::Tmpfs(dst, kib) => MountCall {
                src: Some(c"tmpfs".into()),
                dst: c(dst),
                fstype: Some(c"tmpfs".into()),
                flags: 0,
                data: Some(std::ffi::CString::new(format!("size={kib}k")).unwrap()),
            },
        }
    }
}

impl MountCall {
    fn run(&self) -> std::io::Result<()> {
        let ptr =
            |s: &Option<std::ffi::CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        // Safety: every pointer is null or a NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                ptr(&self.src),
                self.dst.as_ptr(),
                ptr(&self.fstype),
                self.flags,
                ptr(&self.data).cast(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

pub struct Agent {
    child: Child,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    /// Write `config` to `dir/agent.toml` and start `endo-agent run` on it.
    pub fn start(dir: &Path, config: &str) -> Agent {
        Agent::start_with_env(dir, config, &[])
    }

    /// As [`Agent::start`], with extra environment variables.
    pub fn start_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Agent {
        Agent::spawn(dir, config, env, None, &[])
    }

    /// As [`Agent::start`], with at most `nofile` file descriptors (soft and hard limit,
    /// so the agent cannot raise it), as under a unit with a low `LimitNOFILE=`.
    pub fn start_with_nofile(dir: &Path, config: &str, nofile: u64) -> Agent {
        Agent::spawn(dir, config, &[], Some(nofile), &[])
    }

    /// As [`Agent::start`], with `hosts` in place of `/etc/hosts` for the agent alone:
    /// names the machine does not resolve, e.g. a virtual-hosted S3 bucket's
    /// `{bucket}.s3.test`.
    pub fn start_with_hosts(dir: &Path, config: &str, hosts: &Path) -> Agent {
        let bind = Mount::Bind(hosts.to_path_buf(), "/etc/hosts".into());
        Agent::spawn(dir, config, &[], None, &[bind])
    }

    /// As [`Agent::start`], with `mounts` made in the agent's own mount namespace (between
    /// fork and exec; needs root, as CI has). The test sees them through
    /// [`Agent::inside`] while the agent runs.
    pub fn start_with_mounts(dir: &Path, config: &str, mounts: &[Mount]) -> Agent {
        Agent::spawn(dir, config, &[], None, mounts)
    }

    /// `path` as the agent sees it (through `/proc/PID/root`, i.e. its mounts).
    pub fn inside(&self, path: &Path) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.child.id()))
            .join(path.strip_prefix("/").unwrap())
    }

    fn spawn(
        dir: &Path,
        config: &str,
        env: &[(&str, &str)],
        nofile: Option<u64>,
        mounts: &[Mount],
    ) -> Agent {
        use std::os::unix::process::CommandExt;
        std::fs::create_dir_all(dir).unwrap();
        let cfg = dir.join("agent.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut cmd = Command::new(bin());
        if !mounts.is_empty() {
            let calls: Vec<MountCall> = mounts.iter().map(Mount::call).collect();
            // Safety: unshare and mount are plain system calls; their strings were made
            // before the fork and nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let private = MountCall {
                        src: None,
                        dst: c"/".into(),
                        fstype: None,
                        flags: libc::MS_REC | libc::MS_PRIVATE,
                        data: None,
                    };
                    if libc::unshare(libc::CLONE_NEWNS) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    for c in std::iter::once(&private).chain(&calls) {
                        c.run()?;
                    }
                    Ok(())
                });
            }
        }
        if let Some(n) = nofile {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // Safety: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .args(["run", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start endo-agent");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // `http listening on http://ADDR` (or https:// with [http] tls_*_file).
                // The line goes into the log before the address is announced, so a test
                // that starts on the address always finds the line in the log.
                let addr = line.find("http listening on ").and_then(|i| {
                    let rest = &line[i + "http listening on ".len()..];
                    rest.strip_prefix("http://")
                        .or_else(|| rest.strip_prefix("https://"))
                        .map(|a| a.trim().to_string())
                });
                log2.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "agent did not start listening; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Agent { child, addr, log }
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", self.addr);
        match http_client().get(&url).call() {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(e) => panic!("GET {url}: {e}"),
        }
    }

    /// POST a JSON body (or none), with a bearer token if given: (status, JSON answer, or
    /// the text as a JSON string).
    pub fn post(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut req = http_client().post(&format!("http://{}{path}", self.addr));
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let resp = match body {
            Some(b) => req
                .header("Content-Type", "application/json")
                .send(b.to_string().as_bytes()),
            None => req.send_empty(),
        };
        let mut r = resp.unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (
            r.status().as_u16(),
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// Annotate the newest preview frame through the operator API: one rectangle with
    /// `label`. Returns the answer (key, annotation object name).
    pub fn annotate_newest(&self, label: &str) -> serde_json::Value {
        let (code, f) = self.post("/api/freeze", Some(serde_json::json!({})), None);
        assert_eq!(code, 200, "freeze: {f}");
        let (w, h) = (f["width"].as_f64().unwrap(), f["height"].as_f64().unwrap());
        let body = serde_json::json!({"frame": f["frame"], "label": label, "shapes": [
            {"type": "rect", "x": w / 4.0, "y": h / 4.0, "width": w / 3.0, "height": h / 3.0}]});
        let (code, k) = self.post("/api/annotations", Some(body), None);
        assert_eq!(code, 201, "annotate: {k}");
        k
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/api/status").1).unwrap()
    }

    pub fn metrics(&self) -> Metrics {
        Metrics(self.get("/metrics").1)
    }

    /// Poll `f` every 100 ms until it returns true or `timeout` passes (then panic with the log).
    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Agent) -> bool) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}; metrics:\n{}\nlog:\n{}",
            self.metrics().0,
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGKILL: no clean shutdown, as after a power cut or an OOM kill.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit status.
    /// Send `signal` (e.g. SIGHUP) and go on.
    pub fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    pub fn stop(self) -> std::process::ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Send `signal` (SIGTERM, SIGINT = Ctrl-C), then wait for the exit status.
    pub fn stop_with(mut self, signal: i32) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < end,
                "agent did not stop after signal {signal}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus text exposition.
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the series `name{labels}` (labels exactly as rendered, e.g. `reason="x"`),
    /// or 0 if absent.
    pub fn value(&self, series: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                (k == series).then(|| v.parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }

    /// Sum of every series of a metric family whose labels contain `filter`.
    pub fn sum(&self, name: &str, filter: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                let fam = k.split('{').next()?;
                (fam == name && k.contains(filter))
                    .then(|| v.parse::<f64>().ok())
                    .flatten()
            })
            .sum()
    }
}

/// The frame records under `dir` (a datalake): every `.json` but annotations and
/// procedure records, sorted.
pub fn frame_records(dir: &Path) -> Vec<PathBuf> {
    files(dir, "json")
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.ends_with(".annotation.json") && name != "procedure.json"
        })
        .collect()
}

/// The procedure records under `dir` (a datalake), sorted.
pub fn procedure_records(dir: &Path) -> Vec<PathBuf> {
    files(dir, "json")
        .into_iter()
        .filter(|p| p.file_name().unwrap() == "procedure.json")
        .collect()
}

/// All files under `dir` with extension `ext`, sorted.
pub fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
