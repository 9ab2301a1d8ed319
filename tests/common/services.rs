//! Real services for the uplink tests, started on loopback with ports chosen at run time:
//! a certificate authority (rcgen), Mosquitto with TLS, and SeaweedFS as the S3 store.
//! `scripts/setup-test.sh` installs them; `scripts/test.sh` puts them on PATH.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A port that is free now (and, with `plus`, so is port + plus).
/// The domain under which SeaweedFS serves virtual-hosted buckets, `{bucket}.s3.test`.
pub const VHOST_DOMAIN: &str = "s3.test";

pub fn free_port(plus: Option<u16>) -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        match plus {
            None => return p,
            Some(d) => {
                if p > 20000 && p < 45000 && TcpListener::bind(("127.0.0.1", p + d)).is_ok() {
                    return p;
                }
            }
        }
    }
    panic!("no free port");
}

pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    while Instant::now() < end {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Find a tool: `$ENDO_TEST_BIN/name`, then PATH, then the usual Debian place.
pub fn tool(name: &str) -> PathBuf {
    if let Ok(d) = std::env::var("ENDO_TEST_BIN") {
        let p = Path::new(&d).join(name);
        if p.exists() {
            return p;
        }
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let venv = Path::new(&home)
        .join(".cache/endo-agent/test-venv/bin")
        .join(name);
    if venv.exists() {
        return venv;
    }
    for d in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin"])
    {
        let p = Path::new(d).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found: run scripts/setup-test.sh (scripts/test.sh does)");
}

/// Certificates written as PEM files: a CA with a server certificate for localhost /
/// 127.0.0.1 and a client certificate, plus a second, untrusted CA with its own server
/// certificate.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_ca: PathBuf,
    pub rogue_server_cert: PathBuf,
    pub rogue_server_key: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let pem = p.self_signed(&key).unwrap().pem();
    (p, key, pem)
}

fn leaf(issuer: &Issuer<'_, KeyPair>, cn: &str, server: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    // Servers also answer as `s3.test` and any `{bucket}.s3.test`: S3 virtual-hosted
    // addressing (tests/uplink.rs maps those names to 127.0.0.1 for the agent alone).
    let mut p = CertificateParams::new(if server {
        vec![
            "localhost".to_string(),
            VHOST_DOMAIN.to_string(),
            format!("*.{VHOST_DOMAIN}"),
        ]
    } else {
        vec![]
    })
    .unwrap();
    if server {
        p.subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
    }
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    pub fn generate(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let w = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let (cap, cak, capem) = ca("endo test CA");
        let issuer = Issuer::new(cap, cak);
        let (sc, sk) = leaf(&issuer, "localhost", true);
        let (cc, ck) = leaf(&issuer, "tower-1", false);
        let (rp, rk, rpem) = ca("rogue CA");
        let rogue = Issuer::new(rp, rk);
        let (rc, rk) = leaf(&rogue, "localhost", true);
        Pki {
            ca: w("ca.pem", &capem),
            server_cert: w("server.pem", &sc),
            server_key: w("server.key", &sk),
            client_cert: w("client.pem", &cc),
            client_key: w("client.key", &ck),
            rogue_ca: w("rogue-ca.pem", &rpem),
            rogue_server_cert: w("rogue-server.pem", &rc),
            rogue_server_key: w("rogue-server.key", &rk),
        }
    }
}

/// Mosquitto with one TLS listener on loopback, persistence on (so a restart keeps the
/// ingest's session and its unacknowledged messages).
pub struct Mosquitto {
    pub port: u16,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// `require_client_cert`: mTLS. `rogue`: serve the certificate of the untrusted CA.
    pub fn start(dir: &Path, pki: &Pki, require_client_cert: bool, rogue: bool) -> Mosquitto {
        Mosquitto::start_with(dir, pki, require_client_cert, rogue, "")
    }

    /// A broker that announces `max_packet_size` in its CONNACK and refuses larger packets.
    pub fn start_with_max_packet(dir: &Path, pki: &Pki, max_packet_size: u32) -> Mosquitto {
        Mosquitto::start_with(
            dir,
            pki,
            false,
            false,
            &format!("max_packet_size {max_packet_size}\n"),
        )
    }

    /// As [`Mosquitto::start`], with `extra` lines appended to its configuration.
    pub fn start_with(
        dir: &Path,
        pki: &Pki,
        require_client_cert: bool,
        rogue: bool,
        extra: &str,
    ) -> Mosquitto {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port(None);
        let (cert, key) = if rogue {
            (&pki.rogue_server_cert, &pki.rogue_server_key)
        } else {
            (&pki.server_cert, &pki.server_key)
        };
        let conf = dir.join("mosquitto.conf");
        let log = dir.join("mosquitto.log");
        std::fs::write(
            &conf,
            format!(
                "user root\npersistence true\npersistence_location {}/\nlog_dest file {}\n\
                 log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
                 max_queued_messages 100000\nmax_inflight_messages 64\n\
                 listener {port} 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\n\
                 tls_version tlsv1.2\nrequire_certificate {require_client_cert}\n{extra}",
                dir.display(),
                log.display(),
                pki.ca.display(),
                cert.display(),
                key.display(),
            ),
        )
        .unwrap();
        let mut m = Mosquitto {
            port,
            conf,
            log,
            child: None,
        };
        m.restart();
        m
    }

    /// Start (again) on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(tool("mosquitto"))
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        assert!(
            wait_port(self.port, Duration::from_secs(10)),
            "mosquitto did not listen on {}; log:\n{}",
            self.port,
            self.log_text()
        );
    }

    /// SIGTERM (mosquitto saves its persistence file) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// The running server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub const S3_KEY: &str = "endoagenttest";
pub const S3_SECRET: &str = "s3cr3t-for-the-test-store";

/// SeaweedFS (`weed server`) with a filer and an HTTPS S3 gateway on loopback. S3 requires
/// the test's access key; the filer's plain HTTP API is the independent read-back path.
pub struct Seaweed {
    pub s3_port: u16,
    pub filer_port: u16,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Seaweed {
    pub fn start(dir: &Path, pki: &Pki) -> Seaweed {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let s3_config = dir.join("s3.json");
        std::fs::write(
            &s3_config,
            serde_json::json!({"identities": [{
                "name": "agent",
                "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]
            }]})
            .to_string(),
        )
        .unwrap();
        // Every port explicitly (gRPC ports are port + 10000 unless set), all distinct:
        // a free port can be handed out twice, and once the lance listener landed on the
        // volume server's port and the S3 gateway died at start.
        let mut taken = Vec::new();
        let mut draw = |plus: Option<u16>| loop {
            let p = free_port(plus);
            let twin = plus.map(|d| p + d);
            if !taken.contains(&p) && twin.is_none_or(|t| !taken.contains(&t)) {
                taken.push(p);
                taken.extend(twin);
                return p;
            }
        };
        let ports: Vec<u16> = (0..4).map(|_| draw(Some(10000))).collect();
        let extra: Vec<u16> = (0..3).map(|_| draw(None)).collect();
        let (master, volume, filer, s3) = (ports[0], ports[1], ports[2], ports[3]);
        let args = vec![
            "server".to_string(),
            format!("-dir={}", dir.join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-master.port={master}"),
            format!("-volume.port={volume}"),
            "-master.volumeSizeLimitMB=256".into(),
            // Room for both test buckets' volumes (sparse files, nothing preallocated), and
            // writable down to 256 MiB of free disk (the default, 1 %, turns a shared build
            // machine's nearly full disk into read-only volumes and HTTP 500s).
            "-volume.max=32".into(),
            "-volume.minFreeSpace=256MiB".into(),
            "-filer".into(),
            format!("-filer.port={filer}"),
            "-s3".into(),
            format!("-s3.port={s3}"),
            format!("-s3.port.iceberg={}", extra[0]),
            format!("-s3.port.lance={}", extra[1]),
            format!("-metricsPort={}", extra[2]),
            format!("-s3.config={}", s3_config.display()),
            // `{bucket}.s3.test` addresses the bucket (virtual-hosted style); requests to
            // 127.0.0.1 stay path-style.
            format!("-s3.domainName={VHOST_DOMAIN}"),
            format!("-s3.cert.file={}", pki.server_cert.display()),
            format!("-s3.key.file={}", pki.server_key.display()),
        ];
        let mut w = Seaweed {
            s3_port: s3,
            filer_port: filer,
            args,
            log: dir.join("weed.log"),
            child: None,
        };
        w.restart();
        w
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.s3_port)
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(tool("weed"))
            .args(&self.args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start weed");
        self.child = Some(child);
        assert!(
            wait_port(self.s3_port, Duration::from_secs(60))
                && wait_port(self.filer_port, Duration::from_secs(30)),
            "seaweedfs did not start; log:\n{}",
            self.log_text()
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            // weed 4.48 takes about 25 s to stop: its filer waits 15 s for gRPC streams
            // (then forces them), the volume server 10 s more. The old 15 s limit killed
            // it in the middle of closing its filer store, at every stop.
            let end = Instant::now() + Duration::from_secs(60);
            while Instant::now() < end {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // A kill may lose what weed acknowledged last: say so, since a test that
            // then misses an object is seeing the rig, not the agent.
            eprintln!("weed did not stop within 60 s of SIGTERM: killed");
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The running server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn http() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent()
    }

    /// Read an object through the filer's HTTP API — not through S3.
    pub fn filer_get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let url = format!(
            "http://127.0.0.1:{}/buckets/{bucket}/{key}",
            self.filer_port
        );
        let mut r = Self::http().get(&url).call().expect("filer GET");
        (r.status().as_u16() == 200).then(|| {
            r.body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_vec()
                .unwrap()
        })
    }

    /// Every object key in a bucket, through the filer's directory listing.
    pub fn filer_list(&self, bucket: &str) -> Vec<String> {
        let root = format!("/buckets/{bucket}");
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let mut last = String::new();
            loop {
                let url = format!(
                    "http://127.0.0.1:{}{dir}/?limit=1000&lastFileName={last}",
                    self.filer_port
                );
                let mut r = Self::http()
                    .get(&url)
                    .header("Accept", "application/json")
                    .call()
                    .expect("filer list");
                if r.status().as_u16() != 200 {
                    break;
                }
                let v: serde_json::Value =
                    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
                let entries = v["Entries"].as_array().cloned().unwrap_or_default();
                if entries.is_empty() {
                    break;
                }
                for e in &entries {
                    let path = e["FullPath"].as_str().unwrap().to_string();
                    let is_dir = e["Mode"].as_u64().unwrap_or(0) & (1 << 31) != 0;
                    if is_dir {
                        stack.push(path);
                    } else {
                        out.push(path[root.len() + 1..].to_string());
                    }
                }
                if v["ShouldDisplayLoadMore"].as_bool() != Some(true) {
                    break;
                }
                last = v["LastFileName"].as_str().unwrap_or("").to_string();
            }
        }
        out.sort();
        out
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
