//! The second half of `check-config`: every file a config names exists and loads, the
//! way `run` loads it, so that a missing model, token or certificate is found by the
//! `ExecStartPre=` check (or by the person editing the file) and not by the running
//! agent. The configuration's values are checked before this, by [`Config::validate`];
//! here only what needs I/O. Nothing is created, connected or written.
//!
//! [`Config::validate`]: crate::config::Config::validate

use std::path::{Path, PathBuf};

use crate::config::{Config, SinkKind, SourceKind};
use crate::daemon::AgentError;
use crate::score::model::ModelRunner;
use crate::uplink::mqtt::mqtt_options;
use crate::uplink::s3::S3Sink;

/// Check the files `cfg` names; one line per thing checked, for the operator to read.
/// The first failure is the error, naming the key, the path and the reason.
pub fn check_files(cfg: &Config) -> Result<Vec<String>, AgentError> {
    let mut out = Vec::new();
    if cfg.model.enabled {
        let m = ModelRunner::load(&cfg.model.path)?;
        let man = m.manifest();
        out.push(format!(
            "model: {} {} ({}), sha256 and manifest match: {}",
            man.name,
            man.version,
            man.quantization,
            cfg.model.path.display()
        ));
    } else {
        out.push("model: disabled (classical measures only)".into());
    }
    if cfg.source.kind == SourceKind::File {
        let p = &cfg.source.path;
        match std::fs::metadata(p) {
            Ok(m) if m.is_file() => out.push(format!("source.path: {}", p.display())),
            Ok(_) => return Err(path_err("source.path", p, "is not a file".into())),
            Err(e) => return Err(path_err("source.path", p, e.to_string())),
        }
    }
    let mut dirs = vec![("spool.dir", &cfg.spool.dir)];
    if cfg.uplink.sinks.contains(&SinkKind::Local) {
        dirs.push(("datalake.dir", &cfg.datalake.dir));
    }
    for (key, dir) in dirs {
        out.push(format!("{key}: {}", directory(key, dir)?));
    }
    out.push(match cfg.http_token()? {
        Some(t) if cfg.http.token_file.as_os_str().is_empty() => {
            format!("http token: http.token ({} characters)", t.len())
        }
        Some(t) => format!(
            "http token: first line of {} ({} characters)",
            cfg.http.token_file.display(),
            t.len()
        ),
        None => "http token: none (http.listen is loopback only)".into(),
    });
    if let Some((cert, key)) = cfg.http.tls() {
        crate::tls::server_config(cert, key).map_err(AgentError::Tls)?;
        out.push(format!(
            "http tls: {} and {} read (https)",
            cert.display(),
            key.display()
        ));
    }
    for kind in &cfg.uplink.sinks {
        match kind {
            SinkKind::Local => {}
            SinkKind::Mqtt => {
                // What MqttSink::new reads: certificates, key and password file.
                mqtt_options(&cfg.mqtt, "endo-agent-check-config")?;
                let m = &cfg.mqtt;
                out.push(format!(
                    "mqtt: {}://{}:{}, certificates, key and password file read",
                    if m.tls { "mqtts" } else { "mqtt" },
                    m.host,
                    m.port
                ));
            }
            SinkKind::S3 => {
                S3Sink::new(&cfg.s3)?;
                out.push(format!(
                    "s3: {} bucket {}, credentials and CA read",
                    cfg.s3.endpoint, cfg.s3.bucket
                ));
            }
        }
    }
    Ok(out)
}

/// What `run` will find at a directory it uses: the directory, or an ancestor it can
/// create it in. Something else in the way (a file) is an error.
fn directory(key: &'static str, dir: &Path) -> Result<String, AgentError> {
    let mut p = dir;
    loop {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() && p == dir => return Ok(format!("{} exists", dir.display())),
            Ok(m) if m.is_dir() => {
                return Ok(format!(
                    "{} will be created (in {})",
                    dir.display(),
                    p.display()
                ))
            }
            Ok(_) => {
                return Err(path_err(
                    key,
                    dir,
                    format!("{} is not a directory", p.display()),
                ))
            }
            // A file on the way up reads as NotADirectory: walk up to it and name it.
            Err(e)
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(path_err(key, dir, e.to_string()))
            }
            Err(_) => match p.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => p = parent,
                _ => return Ok(format!("{} will be created", dir.display())),
            },
        }
    }
}

fn path_err(key: &'static str, path: &Path, why: String) -> AgentError {
    AgentError::Path {
        key,
        path: PathBuf::from(path),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_found_or_creatable_and_a_file_in_the_way_is_named() {
        let d = tempfile::tempdir().unwrap();
        assert!(directory("spool.dir", d.path())
            .unwrap()
            .ends_with("exists"));
        let deep = d.path().join("a/b/c");
        let s = directory("spool.dir", &deep).unwrap();
        assert!(s.contains("will be created"), "{s}");
        std::fs::write(d.path().join("f"), b"x").unwrap();
        let e = directory("spool.dir", &d.path().join("f/sub"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spool.dir") && e.contains("is not a directory"),
            "{e}"
        );
    }
}
