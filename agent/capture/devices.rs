//! `endo-agent devices`: the capture devices GStreamer's device monitor sees, with their
//! caps, so an integrator can fill `source.device` and `source.caps`.

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
                caps: d
                    .caps()
                    .map(|c| c.iter().map(|s| s.to_string()).collect())
                    .unwrap_or_default(),
            }
        })
        .collect();
    monitor.stop();
    Ok(devices)
}
