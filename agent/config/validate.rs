//! Values that parse but make no sense, refused naming the key and the file; and the
//! accepted range of every numeric key.

use std::path::Path;

use super::*;

impl Config {
    /// Check values that parse but make no sense. No I/O.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        self.validate_names(path)?;
        self.validate_ranges(path)?;
        self.validate_paths(path)?;
        self.validate_source(path)?;
        self.validate_capture(path)?;
        self.validate_fov(path)?;
        self.validate_scoring(path)?;
        self.validate_select(path)?;
        self.validate_uplink(path)?;
        self.validate_ingest(path)?;
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid(
                path,
                "http.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:9464",
                    self.http.listen
                ),
            );
        }
        self.validate_operator(path)
    }

    /// The names that go into every datalake key.
    fn validate_names(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        for (key, v) in [
            ("agent.site", &self.agent.site),
            ("agent.device", &self.agent.device),
        ] {
            if !is_key_segment(v) {
                return bad(
                    key,
                    format!("{v:?} must be 1-64 characters of [A-Za-z0-9._-]"),
                );
            }
        }
        if !self.agent.session.is_empty() && !is_key_segment(&self.agent.session) {
            return bad(
                "agent.session",
                "must be 1-64 characters of [A-Za-z0-9._-]".into(),
            );
        }
        if !is_key_segment(&self.datalake.prefix) {
            return bad(
                "datalake.prefix",
                "must be 1-64 characters of [A-Za-z0-9._-]".into(),
            );
        }
        Ok(())
    }

    /// Every numeric key within its range ([`Config::int_ranges`], [`Config::float_ranges`]).
    fn validate_ranges(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        for (key, v, lo, hi) in self.int_ranges() {
            if !(lo..=hi).contains(&v) {
                return bad(key, format!("{v} is outside {lo}..{hi}"));
            }
        }
        for (key, v, lo, hi) in self.float_ranges() {
            // Written so that NaN fails: it compares false with everything.
            if !(v.is_finite() && v > lo && v <= hi) {
                return bad(key, format!("{v} must be above {lo} and at most {hi}"));
            }
        }
        Ok(())
    }

    /// Directories and the model: an empty path would be the working directory.
    fn validate_paths(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        for (key, p) in [
            ("spool.dir", &self.spool.dir),
            ("datalake.dir", &self.datalake.dir),
        ] {
            if p.as_os_str().is_empty() {
                return bad(
                    key,
                    "is empty; name a directory (an empty path would be the working directory)"
                        .into(),
                );
            }
        }
        if self.model.enabled && self.model.path.as_os_str().is_empty() {
            return bad(
                "model.path",
                "is empty; name the ONNX model, or set model.enabled = false".into(),
            );
        }
        Ok(())
    }

    /// `[source]`: the frame size of generated sources, the phantom's schedule and shape, the
    /// file, the RTSP URL, and values pasted into a pipeline description.
    fn validate_source(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        let s = &self.source;
        if matches!(s.kind, SourceKind::Phantom | SourceKind::Test) {
            if s.width < 64 || s.height < 64 || s.width > 7680 || s.height > 4320 {
                return bad(
                    "source.width",
                    format!("{}x{} is outside 64x64..7680x4320", s.width, s.height),
                );
            }
            if !s.width.is_multiple_of(2) || !s.height.is_multiple_of(2) {
                return bad(
                    "source.width",
                    "width and height must be even (I420)".into(),
                );
            }
        }
        if s.kind == SourceKind::Phantom {
            if let Err(e) = self.phantom() {
                return bad("source.schedule", e.to_string());
            }
            if !matches!(s.phantom_fov.as_str(), "circle" | "octagon") {
                return bad(
                    "source.phantom_fov",
                    format!("{:?} is not circle or octagon", s.phantom_fov),
                );
            }
        }
        if s.kind == SourceKind::File && s.path.as_os_str().is_empty() {
            return bad(
                "source.path",
                "a file source needs the path of a video file".into(),
            );
        }
        if s.kind == SourceKind::Rtsp && !s.url.starts_with("rtsp") {
            return bad(
                "source.url",
                format!("{:?} is not an rtsp:// or rtsps:// URL", s.url),
            );
        }
        for (key, v) in [
            ("source.caps", &s.caps),
            ("source.pattern", &s.pattern),
            ("source.device", &s.device),
            ("source.mode", &s.mode),
            ("source.url", &s.url),
        ] {
            // Values are pasted into a gst-launch description; refuse what would break out of it.
            if v.contains('!') || v.contains('"') || v.contains('\n') {
                return bad(key, "must not contain '!', '\"' or newlines".into());
            }
        }
        Ok(())
    }

    /// `[capture]`: the restart backoff.
    fn validate_capture(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        let c = &self.capture;
        if c.backoff_initial_ms > c.backoff_max_ms {
            return bad(
                "capture.backoff_initial_ms",
                "must be at most capture.backoff_max_ms".into(),
            );
        }
        Ok(())
    }

    /// `[fov]`: a fixed rect, the masks, and geometry that must not wrap.
    fn validate_fov(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        let f = &self.fov;
        if f.mode == FovMode::Fixed && f.rect.is_none() {
            return bad(
                "fov.rect",
                "fov.mode = \"fixed\" needs fov.rect = [x, y, width, height]".into(),
            );
        }
        // Geometry from input: x + width and y + height must not wrap (a wrapped mask
        // covered nothing). The frame size is only known at run time, where a rect that
        // misses the frame is refused and a mask partly outside it is clipped.
        let fits =
            |[x, y, w, h]: [u32; 4]| x.checked_add(w).is_some() && y.checked_add(h).is_some();
        if let Some(r @ [_, _, w, h]) = f.rect {
            if w < 16 || h < 16 {
                return bad("fov.rect", "width and height must be at least 16".into());
            }
            if !fits(r) {
                return bad(
                    "fov.rect",
                    format!("{r:?}: x + width and y + height must fit in 32 bits"),
                );
            }
        }
        for (i, &m) in f.masks.iter().enumerate() {
            if m[2] == 0 || m[3] == 0 {
                return bad(
                    "fov.masks",
                    format!("mask {i} {m:?} is empty (width and height must be above 0)"),
                );
            }
            if !fits(m) {
                return bad(
                    "fov.masks",
                    format!("mask {i} {m:?}: x + width and y + height must fit in 32 bits"),
                );
            }
        }
        Ok(())
    }

    /// `[scoring]`: ramps whose ends are finite and in order, weights within 0..1.
    fn validate_scoring(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        let sc = &self.scoring;
        if !(sc.sharpness_bad.is_finite()
            && sc.sharpness_good.is_finite()
            && sc.sharpness_bad < sc.sharpness_good)
        {
            return bad(
                "scoring.sharpness_bad",
                "must be finite and below scoring.sharpness_good".into(),
            );
        }
        if !(sc.isotropy_bad.is_finite()
            && sc.isotropy_good.is_finite()
            && sc.isotropy_bad < sc.isotropy_good)
        {
            return bad(
                "scoring.isotropy_bad",
                "must be finite and below scoring.isotropy_good".into(),
            );
        }
        for (key, [a, b]) in [
            ("scoring.dark_fraction", sc.dark_fraction),
            ("scoring.clipped_fraction", sc.clipped_fraction),
            ("scoring.specular_fraction", sc.specular_fraction),
            ("scoring.outside_cast", sc.outside_cast),
            ("scoring.relative_sharpness", sc.relative_sharpness),
            ("scoring.dark_mean_luma", sc.dark_mean_luma),
            ("scoring.overexposed_mean_luma", sc.overexposed_mean_luma),
            ("scoring.noise_sigma", sc.noise_sigma),
            ("scoring.blockiness", sc.blockiness),
        ] {
            if !(a.is_finite() && b.is_finite() && a < b) {
                return bad(
                    key,
                    format!("[{a}, {b}]: two finite numbers, the first below the second"),
                );
            }
        }
        if !(0.0..=1.0).contains(&sc.model_weight) {
            return bad("scoring.model_weight", "must be within 0..1".into());
        }
        if !(0.0..=1.0).contains(&sc.reason_threshold) {
            return bad("scoring.reason_threshold", "must be within 0..1".into());
        }
        if sc.reference_min_frames > sc.reference_frames {
            return bad(
                "scoring.reference_min_frames",
                "must be within 1..scoring.reference_frames".into(),
            );
        }
        if !(0.0..=1.0).contains(&sc.reference_percentile) {
            return bad("scoring.reference_percentile", "must be within 0..1".into());
        }
        Ok(())
    }

    /// `[select]`: the thresholds and their hysteresis.
    fn validate_select(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        let se = &self.select;
        if !(0.0..=1.0).contains(&se.threshold_high) || !(0.0..=1.0).contains(&se.threshold_low) {
            return bad(
                "select.threshold_high",
                "thresholds must be within 0..1".into(),
            );
        }
        if se.threshold_low > se.threshold_high {
            return bad(
                "select.threshold_low",
                "must not be above select.threshold_high".into(),
            );
        }
        Ok(())
    }

    /// `[http]` token, `[display]` and `[operator]`.
    fn validate_operator(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        let h = &self.http;
        if h.tls_cert_file.as_os_str().is_empty() != h.tls_key_file.as_os_str().is_empty() {
            return bad(
                "http.tls_cert_file",
                "http.tls_cert_file and http.tls_key_file go together".into(),
            );
        }
        if !h.token.is_empty() && !h.token_file.as_os_str().is_empty() {
            return bad(
                "http.token",
                "set http.token or http.token_file, not both".into(),
            );
        }
        if !h.token.is_empty() && (h.token.len() < 16 || h.token.chars().any(|c| c.is_whitespace()))
        {
            return bad(
                "http.token",
                "must be at least 16 characters without spaces".into(),
            );
        }
        if !h.is_loopback() && h.token.is_empty() && h.token_file.as_os_str().is_empty() {
            return bad(
                "http.token",
                format!(
                    "http.listen = {:?} is reachable from other machines, so the operator API needs a bearer token: set http.token or http.token_file",
                    h.listen
                ),
            );
        }
        let d = &self.display;
        if d.enabled {
            let name = d.sink.split_whitespace().next().unwrap_or("");
            if name.is_empty() || d.sink.contains('!') || d.sink.contains('\n') {
                return bad(
                    "display.sink",
                    format!(
                        "{:?} must be one GStreamer element with its properties (no '!')",
                        d.sink
                    ),
                );
            }
        }
        let o = &self.operator;
        if o.labels.is_empty() {
            return bad("operator.labels", "list at least one label".into());
        }
        for (i, l) in o.labels.iter().enumerate() {
            if !is_key_segment(l) {
                return bad(
                    "operator.labels",
                    format!("{l:?} must be 1-64 characters of [A-Za-z0-9._-]"),
                );
            }
            if o.labels[..i].contains(l) {
                return bad("operator.labels", format!("{l:?} is listed twice"));
            }
        }
        Ok(())
    }

    fn validate_uplink(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        let sinks = &self.uplink.sinks;
        if sinks.is_empty() {
            return bad(
                "uplink.sinks",
                "list at least one of local, mqtt, s3".into(),
            );
        }
        for (i, k) in sinks.iter().enumerate() {
            if sinks[..i].contains(k) {
                return bad("uplink.sinks", format!("{} is listed twice", k.as_str()));
            }
        }
        if self.uplink.backoff_max_ms < self.uplink.backoff_initial_ms {
            return bad(
                "uplink.backoff_initial_ms",
                "must be at most uplink.backoff_max_ms".into(),
            );
        }
        if sinks.contains(&SinkKind::Mqtt) {
            self.validate_mqtt(path)?;
        }
        if sinks.contains(&SinkKind::S3) {
            self.validate_s3(path)?;
        }
        Ok(())
    }

    /// The `[mqtt]` section, checked when a sink or `ingest` uses it.
    pub fn validate_mqtt(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        let m = &self.mqtt;
        if m.host.is_empty() {
            return bad("mqtt.host", "is empty".into());
        }
        if !m.tls && !m.allow_plaintext {
            return bad(
                "mqtt.tls",
                "is false, which would send frames unencrypted; set mqtt.allow_plaintext = true as well if that is really meant".into(),
            );
        }
        if m.tls && m.ca_file.as_os_str().is_empty() {
            return bad(
                "mqtt.ca_file",
                "is empty; name the PEM file of the CA that signed the broker's certificate".into(),
            );
        }
        if m.client_cert_file.as_os_str().is_empty() != m.client_key_file.as_os_str().is_empty() {
            return bad(
                "mqtt.client_cert_file",
                "mqtt.client_cert_file and mqtt.client_key_file go together".into(),
            );
        }
        if !m.topic_prefix.split('/').all(is_key_segment) {
            return bad(
                "mqtt.topic_prefix",
                format!(
                    "{:?} must be segments of [A-Za-z0-9._-] separated by /",
                    m.topic_prefix
                ),
            );
        }
        Ok(())
    }

    /// The `[ingest]` section (checked always: `check-config` of an ingest's file).
    fn validate_ingest(&self, path: &Path) -> Result<(), ConfigError> {
        let g = &self.ingest.share_group;
        if !g.is_empty() && !is_key_segment(g) {
            return invalid(
                path,
                "ingest.share_group",
                format!(
                    "{:?} must be 1-64 characters of [A-Za-z0-9._-] (one topic level)",
                    crate::clip(g)
                ),
            );
        }
        let l = &self.ingest.listen;
        if !l.is_empty() && l.parse::<std::net::SocketAddr>().is_err() {
            return invalid(
                path,
                "ingest.listen",
                format!(
                    "{:?} is not an address like 0.0.0.0:9465 (empty: no listener)",
                    crate::clip(l)
                ),
            );
        }
        Ok(())
    }

    /// The `[s3]` section, checked when a sink or `ingest` uses it.
    pub fn validate_s3(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        let s = &self.s3;
        let scheme = s.endpoint.split("://").next().unwrap_or("");
        if !s.endpoint.contains("://") || !(scheme == "https" || scheme == "http") {
            return bad(
                "s3.endpoint",
                format!("{:?} is not an http(s):// URL", s.endpoint),
            );
        }
        if scheme == "http" && !s.allow_plaintext {
            return bad(
                "s3.endpoint",
                format!("{:?} is plaintext http; use https, or set s3.allow_plaintext = true if that is really meant", s.endpoint),
            );
        }
        if s.bucket.is_empty() {
            return bad("s3.bucket", "is empty".into());
        }
        if s.region.is_empty() {
            return bad("s3.region", "is empty".into());
        }
        Ok(())
    }

    /// Every integer key with its accepted range (inclusive), checked by [`validate`]
    /// before anything is sized or timed by it, and listed in `config/agent.example.toml`.
    /// The bounds keep every product with them (`max_mib << 20`, `window_ms * 10^6`,
    /// queue allocations) far from overflow and from allocations that abort.
    ///
    /// [`validate`]: Config::validate
    #[rustfmt::skip]
    pub fn int_ranges(&self) -> [(&'static str, u64, u64, u64); 34] {
        const H: u64 = 3_600_000; // an hour, in milliseconds
        let n = |v: usize| v as u64;
        let (s, c, f, sc) = (&self.source, &self.capture, &self.fov, &self.scoring);
        let (m, o) = (&self.mqtt, &self.operator);
        [
            ("source.fps", s.fps.into(), 1, 240),
            ("source.latency_ms", s.latency_ms.into(), 0, 60_000),
            ("source.device_number", s.device_number.into(), 0, 63),
            ("capture.queue_frames", n(c.queue_frames), 1, 64),
            ("capture.backoff_initial_ms", c.backoff_initial_ms, 1, H),
            ("capture.backoff_max_ms", c.backoff_max_ms, 1, H),
            ("capture.backoff_reset_after_ms", c.backoff_reset_after_ms, 1, 24 * H),
            ("fov.auto_frames", f.auto_frames.into(), 1, 10_000),
            ("fov.auto_margin", f.auto_margin.into(), 0, 64),
            ("fov.auto_recheck_frames", f.auto_recheck_frames.into(), 0, 1_000_000),
            ("scoring.sharpness_row_step", sc.sharpness_row_step.into(), 1, 8),
            ("scoring.reference_frames", sc.reference_frames.into(), 1, 100_000),
            ("scoring.reference_min_frames", sc.reference_min_frames.into(), 1, 100_000),
            ("select.window_ms", self.select.window_ms, 1, H),
            ("select.duplicate_bits", self.select.duplicate_bits.into(), 0, 32),
            ("select.duplicate_resend_s", self.select.duplicate_resend_s.into(), 0, 86_400),
            ("encode.jpeg_quality", self.encode.jpeg_quality.into(), 1, 100),
            ("encode.queue_frames", n(self.encode.queue_frames), 1, 256),
            ("spool.max_records", n(self.spool.max_records), 1, 10_000_000),
            ("spool.max_mib", self.spool.max_mib, 1, 1 << 24),
            ("spool.min_free_mib", self.spool.min_free_mib, 0, 1 << 20),
            ("uplink.backoff_initial_ms", self.uplink.backoff_initial_ms, 1, H),
            ("uplink.backoff_max_ms", self.uplink.backoff_max_ms, 1, H),
            ("mqtt.port", m.port.into(), 1, 65_535),
            ("mqtt.inflight", n(m.inflight), 1, 1000),
            ("mqtt.keepalive_s", m.keepalive_s, 5, 65_535),
            ("mqtt.summary_interval_s", m.summary_interval_s, 0, 86_400),
            ("mqtt.ack_timeout_s", m.ack_timeout_s, 1, 3600),
            ("s3.timeout_s", self.s3.timeout_s, 1, 3600),
            ("display.scale", self.display.scale.into(), 0, 16),
            ("operator.preview_width", o.preview_width.into(), 64, 1920),
            ("operator.recent_frames", n(o.recent_frames), 1, 64),
            ("operator.mark_window_ms", o.mark_window_ms, 100, 60_000),
            ("operator.max_shapes", n(o.max_shapes), 1, 256),
        ]
    }

    /// The rate keys with their accepted range (above the first bound, at most the second).
    pub fn float_ranges(&self) -> [(&'static str, f32, f32, f32); 2] {
        [
            (
                "select.max_per_second",
                self.select.max_per_second,
                0.0,
                240.0,
            ),
            ("operator.preview_fps", self.operator.preview_fps, 0.0, 15.0),
        ]
    }
}
