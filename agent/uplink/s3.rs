//! The S3 sink: an HTTPS PUT of `{key}.jpg` and then `{key}.json` to an S3-compatible
//! store (AWS S3, MinIO, SeaweedFS). Requests are SigV4-signed by `rusty-s3` (presigned
//! URLs, a sans-I/O signer) and sent by `ureq` over rustls; the object key comes from the
//! record alone, so a retry overwrites the same object instead of adding one.
//!
//! Credentials come from `s3.credentials_file` (AWS shared-credentials form: lines
//! `aws_access_key_id = …` and `aws_secret_access_key = …`) or, when that is unset, from
//! the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`). They are never logged:
//! errors name the file, not its contents.

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{annotation_name, object_names, tls, BlockingSink, Encoded, SinkError};
use crate::config::S3Config;

const SINK: &str = "s3";
/// Lifetime of a presigned request URL: long enough for one upload.
const SIGNED_FOR: Duration = Duration::from_secs(300);

/// Read the access key pair from an AWS-style credentials file.
pub fn read_credentials(path: &Path) -> Result<Credentials, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut key, mut secret) = (None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty()
            || line.starts_with('#')
            || line.starts_with(';')
            || line.starts_with('[')
        {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim().to_ascii_lowercase().trim_start_matches("aws_") {
            "access_key_id" => key = Some(v),
            "secret_access_key" => secret = Some(v),
            _ => {}
        }
    }
    match (key, secret) {
        (Some(k), Some(s)) if !k.is_empty() && !s.is_empty() => Ok(Credentials::new(k, s)),
        _ => Err(format!(
            "{}: needs aws_access_key_id and aws_secret_access_key lines",
            path.display()
        )),
    }
}

fn credentials(cfg: &S3Config) -> Result<Credentials, String> {
    match tls::opt_path(&cfg.credentials_file) {
        Some(p) => read_credentials(p).map_err(|e| format!("s3.credentials_file {e}")),
        None => match (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Ok(k), Ok(s)) if !k.is_empty() && !s.is_empty() => Ok(Credentials::new(k, s)),
            _ => Err("no credentials: set s3.credentials_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment".into()),
        },
    }
}

/// A small S3 client: signed PUT / GET / bucket creation.
pub struct S3Client {
    bucket: Bucket,
    creds: Credentials,
    http: ureq::Agent,
}

impl S3Client {
    pub fn new(cfg: &S3Config) -> Result<S3Client, SinkError> {
        let setup = |detail: String| SinkError::Setup { sink: SINK, detail };
        let endpoint: url::Url = cfg
            .endpoint
            .parse()
            .map_err(|e| setup(format!("s3.endpoint {:?}: {e}", cfg.endpoint)))?;
        let style = if cfg.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(endpoint, style, cfg.bucket.clone(), cfg.region.clone())
            .map_err(|e| setup(format!("s3 bucket {:?}: {e}", cfg.bucket)))?;
        let creds = credentials(cfg).map_err(setup)?;
        let roots = match tls::opt_path(&cfg.ca_file) {
            Some(ca) => {
                let certs = tls::load_certs(ca).map_err(|e| setup(format!("s3.ca_file {e}")))?;
                ureq::tls::RootCerts::Specific(Arc::new(
                    certs
                        .iter()
                        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                        .collect(),
                ))
            }
            None => ureq::tls::RootCerts::WebPki,
        };
        let http = ureq::Agent::config_builder()
            .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(cfg.timeout_s)))
            .https_only(!cfg.allow_plaintext)
            .build()
            .new_agent();
        Ok(S3Client {
            bucket,
            creds,
            http,
        })
    }

    fn error(e: ureq::Error) -> SinkError {
        let detail = e.to_string();
        match e {
            ureq::Error::Timeout(_) => SinkError::Timeout { sink: SINK, detail },
            _ if tls::is_tls_error(&detail) => SinkError::Tls {
                sink: SINK,
                detail: tls::explain(&detail),
            },
            _ => SinkError::Connect { sink: SINK, detail },
        }
    }

    fn refused(what: &str, status: u16, body: &str) -> SinkError {
        // S3 error bodies are small XML documents naming the code; keep the start of it.
        let body: String = body.chars().take(300).collect();
        SinkError::Refused {
            sink: SINK,
            detail: format!("{what}: HTTP {status}: {body}"),
        }
    }

    /// PUT one object.
    pub fn put(&self, key: &str, body: &[u8], content_type: &str) -> Result<(), SinkError> {
        let url = self
            .bucket
            .put_object(Some(&self.creds), key)
            .sign(SIGNED_FOR);
        let mut resp = self
            .http
            .put(url.as_str())
            .header("content-type", content_type)
            .send(body)
            .map_err(Self::error)?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Err(Self::refused(&format!("PUT {key}"), status, &text))
    }

    /// Create the bucket (an existing bucket of ours is fine).
    pub fn create_bucket(&self) -> Result<(), SinkError> {
        let url = self.bucket.create_bucket(&self.creds).sign(SIGNED_FOR);
        let mut resp = self
            .http
            .put(url.as_str())
            .send_empty()
            .map_err(Self::error)?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if (200..300).contains(&status) || text.contains("BucketAlreadyOwnedByYou") {
            return Ok(());
        }
        Err(Self::refused("create bucket", status, &text))
    }

    /// Store a frame: the JPEG first, then the annotation if any, then its record (a
    /// record in the store always has its image beside it). A document without an image
    /// (a procedure record: `jpeg` empty) is its record alone.
    pub fn put_frame(
        &self,
        key: &str,
        jpeg: &[u8],
        annotation: &[u8],
        record_json: &[u8],
    ) -> Result<(), SinkError> {
        let [jpg, json] = object_names(key);
        if !jpeg.is_empty() {
            self.put(&jpg, jpeg, "image/jpeg")?;
        }
        if !annotation.is_empty() {
            self.put(&annotation_name(key), annotation, "application/json")?;
        }
        self.put(&json, record_json, "application/json")
    }
}

pub struct S3Sink {
    client: S3Client,
}

impl S3Sink {
    pub fn new(cfg: &S3Config) -> Result<S3Sink, SinkError> {
        Ok(S3Sink {
            client: S3Client::new(cfg)?,
        })
    }
}

impl BlockingSink for S3Sink {
    fn name(&self) -> &'static str {
        SINK
    }
    fn deliver(&mut self, item: &Encoded) -> Result<(), SinkError> {
        super::check_key("s3", &item.key)?;
        self.client
            .put_frame(&item.key, &item.jpeg, &item.annotation, &item.record_json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_in_aws_form() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("credentials");
        std::fs::write(
            &p,
            "[default]\n# comment\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key=s3cr3t\n",
        )
        .unwrap();
        let c = read_credentials(&p).unwrap();
        assert_eq!(c.key(), "AKIDEXAMPLE");
        assert_eq!(c.secret(), "s3cr3t");
        std::fs::write(&p, "aws_access_key_id = AKIDEXAMPLE\n").unwrap();
        let e = read_credentials(&p).unwrap_err();
        assert!(
            e.contains("aws_secret_access_key") && e.contains("credentials"),
            "{e}"
        );
        assert!(
            !format!("{c:?}").contains("s3cr3t"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn plaintext_endpoint_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("credentials");
        std::fs::write(&p, "access_key_id=a\nsecret_access_key=b\n").unwrap();
        let cfg = S3Config {
            endpoint: "http://127.0.0.1:1".into(),
            bucket: "b".into(),
            credentials_file: p,
            ..Default::default()
        };
        let c = S3Client::new(&cfg).unwrap();
        let e = c.put("k", b"x", "text/plain").unwrap_err();
        assert!(e.to_string().to_lowercase().contains("https"), "{e}");
    }
}
