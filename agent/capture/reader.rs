//! Appsink samples to [`CapturedFrame`]s: the one place that knows which formats the
//! scorer reads. I420 and NV12 ([`NATIVE_FORMATS`]) are mapped in place (a refcount, no
//! copy); the `videoconvert` in front of the appsink converts anything else to I420.
//!
//! Packed 4:2:2 (YUY2, UYVY) is left to `videoconvert`: its ORC kernels convert a 1080p
//! frame to I420 in ≈ 0.35 ms, and an agent-side unpacking pass was measured no faster
//! (docs/benchmarks.md, "Packed 4:2:2 capture formats").

use gstreamer as gst;
use gstreamer_video as gst_video;
use std::time::Instant;

use super::CapturedFrame;

/// Formats the scorer reads in place, as the appsink's caps list them: anything else is
/// converted (to the first) by the `videoconvert` before it.
pub const NATIVE_FORMATS: [gst_video::VideoFormat; 2] =
    [gst_video::VideoFormat::I420, gst_video::VideoFormat::Nv12];

/// The appsink's caps in the agent's tail: [`NATIVE_FORMATS`].
pub const APPSINK_CAPS: &str = "video/x-raw,format={I420,NV12}";

/// Turns appsink samples into frames, parsing the caps only when they change.
#[derive(Default)]
pub struct SampleReader {
    info: Option<(gst::Caps, gst_video::VideoInfo)>,
}

impl SampleReader {
    /// The frame of `sample`, arrived at `arrived`; None when it has no buffer or caps,
    /// its caps are not raw video in a native format, or its buffer does not map.
    pub fn read(&mut self, sample: &gst::Sample, arrived: Instant) -> Option<CapturedFrame> {
        let (buffer, caps) = (sample.buffer_owned()?, sample.caps()?);
        // Caps change rarely (renegotiation); parse them only then.
        if self
            .info
            .as_ref()
            .is_none_or(|(c, _)| c.as_ptr() != caps.as_ptr())
        {
            self.info = Some((caps.to_owned(), gst_video::VideoInfo::from_caps(caps).ok()?));
        }
        CapturedFrame::from_buffer(buffer, &self.info.as_ref().expect("set above").1, arrived)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(caps: &str) -> gst::Sample {
        gst::init().unwrap();
        let caps: gst::Caps = caps.parse().unwrap();
        let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
        let mut buffer = gst::Buffer::from_mut_slice(vec![7u8; info.size()]);
        buffer.get_mut().unwrap().set_offset(3);
        gst::Sample::builder().buffer(&buffer).caps(&caps).build()
    }

    #[test]
    fn native_formats_map_in_place_and_others_are_refused() {
        let mut reader = SampleReader::default();
        for (format, step) in [("I420", 1), ("NV12", 2), ("I420", 1)] {
            let s = sample(&format!(
                "video/x-raw,format={format},width=4,height=4,framerate=25/1,colorimetry=bt709"
            ));
            let frame = reader.read(&s, Instant::now()).expect(format);
            let v = frame.view();
            assert_eq!((v.width, v.height, v.uv_step), (4, 4, step), "{format}");
            assert_eq!(v.colour.matrix, crate::frame::Matrix::Bt709, "{format}");
            assert_eq!(frame.offset, Some(3));
        }
        for format in ["YUY2", "RGB"] {
            let s = sample(&format!(
                "video/x-raw,format={format},width=4,height=4,framerate=25/1"
            ));
            assert!(reader.read(&s, Instant::now()).is_none(), "{format}");
        }
    }
}
