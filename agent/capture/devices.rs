//! `endo-agent devices`: the capture devices GStreamer's device monitor sees, with their
//! caps, so an integrator can fill `source.device` and `source.caps`, and for each mode
//! how the agent reads it: in place (I420 or NV12, [`super::NATIVE_FORMATS`]: no
//! conversion pass), converted (YUY2, UYVY, RGB…: `videoconvert` rewrites every frame at
//! full resolution, the dearest step of the capture tail, docs/benchmarks.md), or not at
//! all by the shipped `v4l2` template (MJPEG and other compressed modes need a template
//! with a decoder, pipelines/README.md). Pin an in-place mode in `source.caps` when the
//! card offers one.

use gstreamer as gst;
use gstreamer::prelude::*;

/// One video source device.
#[derive(Debug, serde::Serialize)]
pub struct DeviceInfo {
    pub name: String,
    pub class: String,
    /// e.g. `api.v4l2.path` or `device.path`, when the provider reports it.
    pub path: Option<String>,
    pub caps: Vec<String>,
    /// How the agent reads each of `caps`, in the same order.
    pub read: Vec<Read>,
}

/// How the agent's capture tail gets one device mode's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Read {
    /// Raw I420 or NV12: handed to the scorer as captured.
    InPlace,
    /// Compressed (MJPEG, H.264…): the shipped `v4l2` template has no decoder, so it
    /// needs a custom template (`image/jpeg ! jpegdec`, pipelines/README.md).
    NeedsDecoder,
    /// Another raw format (or a list with one): converted to I420 by `videoconvert`.
    Converted,
}

impl Read {
    pub fn as_str(self) -> &'static str {
        match self {
            Read::InPlace => "read in place",
            Read::NeedsDecoder => {
                "compressed: needs a template with a decoder, pipelines/README.md"
            }
            Read::Converted => "converted by videoconvert",
        }
    }
}

/// How a caps structure (one device mode) is read: see [`Read`].
pub fn read_path(s: &gst::StructureRef) -> Read {
    if s.name() != "video/x-raw" {
        return Read::NeedsDecoder;
    }
    let native = |f: &str| super::NATIVE_FORMATS.iter().any(|n| n.to_str() == f);
    if let Ok(f) = s.get::<&str>("format") {
        return if native(f) {
            Read::InPlace
        } else {
            Read::Converted
        };
    }
    match s.get::<gst::List>("format") {
        Ok(list) if !list.is_empty() && list.iter().all(|v| v.get::<&str>().is_ok_and(native)) => {
            Read::InPlace
        }
        _ => Read::Converted,
    }
}

pub fn list() -> Result<Vec<DeviceInfo>, String> {
    gst::init().map_err(|e| e.to_string())?;
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some("Video/Source"), None);
    monitor
        .start()
        .map_err(|e| format!("starting the device monitor: {e}"))?;
    let devices = monitor
        .devices()
        .into_iter()
        .map(|d| {
            let caps = d.caps().unwrap_or_else(gst::Caps::new_empty);
            let props = d.properties();
            let path = props.as_ref().and_then(|p| {
                ["api.v4l2.path", "device.path", "object.path"]
                    .iter()
                    .find_map(|k| p.get::<String>(*k).ok())
            });
            DeviceInfo {
                name: d.display_name().to_string(),
                class: d.device_class().to_string(),
                path,
                caps: caps.iter().map(|s| s.to_string()).collect(),
                read: caps.iter().map(read_path).collect(),
            }
        })
        .collect();
    monitor.stop();
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_says_whether_it_is_read_in_place_converted_or_needs_a_decoder() {
        gst::init().unwrap();
        let cases = [
            (
                "video/x-raw, format=NV12, width=1920, height=1080",
                Read::InPlace,
            ),
            (
                "video/x-raw, format=I420, width=1280, height=720",
                Read::InPlace,
            ),
            ("video/x-raw, format={ NV12, I420 }", Read::InPlace),
            (
                "video/x-raw, format=YUY2, width=1920, height=1080",
                Read::Converted,
            ),
            ("video/x-raw, format={ NV12, YUY2 }", Read::Converted),
            ("video/x-raw, width=1920", Read::Converted),
            ("image/jpeg, width=1920, height=1080", Read::NeedsDecoder),
        ];
        for (caps, want) in cases {
            let c: gst::Caps = caps.parse().unwrap();
            assert_eq!(read_path(c.structure(0).unwrap()), want, "{caps}");
        }
    }
}
