//! Pipeline templates: the source part of the capture pipeline, from `pipelines/`.
//!
//! The built-in templates are the files in `pipelines/`, compiled into the binary;
//! `capture.template` names another file. `{name}` placeholders are replaced with values
//! from the `[source]` config section; `{{` and `}}` stand for literal braces.

use std::path::{Path, PathBuf};

use crate::config::{Config, SourceKind};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("pipeline template {origin}: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("pipeline template {origin}: unknown placeholder {{{name}}} (known: {known})")]
    Placeholder {
        origin: String,
        name: String,
        known: String,
    },
    #[error("pipeline template {origin}: unbalanced brace at byte {at}")]
    Brace { origin: String, at: usize },
}

/// The built-in template for a source kind.
pub fn builtin(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Phantom => include_str!("../../pipelines/phantom.pipeline"),
        SourceKind::Test => include_str!("../../pipelines/test.pipeline"),
        SourceKind::File => include_str!("../../pipelines/file.pipeline"),
        SourceKind::V4l2 => include_str!("../../pipelines/v4l2.pipeline"),
        SourceKind::Decklink => include_str!("../../pipelines/decklink.pipeline"),
        SourceKind::Rtsp => include_str!("../../pipelines/rtsp.pipeline"),
    }
}

/// A rendered source description and where it came from (for messages).
#[derive(Debug, Clone)]
pub struct SourceDescription {
    pub origin: String,
    pub launch: String,
}

/// Load the template the config asks for and fill in its placeholders.
pub fn render_source(cfg: &Config) -> Result<SourceDescription, TemplateError> {
    let (origin, text) = match &cfg.capture.template {
        Some(p) => (p.display().to_string(), read(p)?),
        None => (
            format!("pipelines/{}.pipeline (built in)", cfg.source.kind.as_str()),
            builtin(cfg.source.kind).to_string(),
        ),
    };
    let vars = variables(cfg);
    let launch = fill(&text, &vars, &origin)?;
    Ok(SourceDescription { origin, launch })
}

fn read(p: &Path) -> Result<String, TemplateError> {
    std::fs::read_to_string(p).map_err(|source| TemplateError::Read {
        origin: p.display().to_string(),
        source,
    })
}

fn variables(cfg: &Config) -> Vec<(&'static str, String)> {
    let s = &cfg.source;
    let caps = if s.caps.is_empty() {
        "video/x-raw".to_string()
    } else {
        s.caps.clone()
    };
    let path: PathBuf = s.path.clone();
    vec![
        ("width", s.width.to_string()),
        ("height", s.height.to_string()),
        ("fps", s.fps.to_string()),
        ("pattern", s.pattern.clone()),
        (
            "num_buffers",
            if s.max_frames == 0 {
                "-1".into()
            } else {
                s.max_frames.to_string()
            },
        ),
        ("path", path.display().to_string()),
        ("device", s.device.clone()),
        ("caps", caps),
        ("device_number", s.device_number.to_string()),
        ("mode", s.mode.clone()),
        ("url", s.url.clone()),
        ("latency_ms", s.latency_ms.to_string()),
    ]
}

/// Replace `{name}` with its value; `{{`/`}}` are literal braces.
pub fn fill(text: &str, vars: &[(&str, String)], origin: &str) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut offset = 0;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push(tail.as_bytes()[0] as char);
            rest = &tail[2..];
            offset += i + 2;
            continue;
        }
        if tail.starts_with('}') {
            return Err(TemplateError::Brace {
                origin: origin.into(),
                at: offset + i,
            });
        }
        let end = tail.find('}').ok_or(TemplateError::Brace {
            origin: origin.into(),
            at: offset + i,
        })?;
        let name = &tail[1..end];
        let value = vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
            .ok_or_else(|| TemplateError::Placeholder {
                origin: origin.into(),
                name: name.into(),
                known: vars.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", "),
            })?;
        out.push_str(value);
        rest = &tail[end + 1..];
        offset += i + end + 1;
    }
    out.push_str(rest);
    Ok(out.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled() {
        let vars = vec![("device", "/dev/video2".to_string())];
        assert_eq!(
            fill("v4l2src device={device} ! {{x}}", &vars, "t").unwrap(),
            "v4l2src device=/dev/video2 ! {x}"
        );
    }

    #[test]
    fn unknown_placeholder_names_template_and_name() {
        let e = fill(
            "v4l2src device={dev}",
            &[("device", String::new())],
            "my.pipeline",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("my.pipeline") && e.contains("{dev}"), "{e}");
        let e = fill("a } b", &[], "t").unwrap_err().to_string();
        assert!(e.contains("unbalanced"), "{e}");
    }

    #[test]
    fn every_builtin_renders_with_defaults() {
        for kind in [
            SourceKind::Phantom,
            SourceKind::Test,
            SourceKind::File,
            SourceKind::V4l2,
            SourceKind::Decklink,
            SourceKind::Rtsp,
        ] {
            let mut cfg = Config::default();
            cfg.source.kind = kind;
            let d = render_source(&cfg).unwrap();
            assert!(!d.launch.contains('{'), "{}", d.launch);
        }
    }
}
