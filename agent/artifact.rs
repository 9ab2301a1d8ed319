//! The artifacts a frame can be rejected for. Their string names are part of the
//! datalake record, the metrics labels and the model manifest, so they never change.

use serde::{Deserialize, Serialize};

/// Why a frame is bad. Motion blur and defocus are both `Blur` to the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Artifact {
    /// Motion blur or defocus.
    Blur,
    /// Under-exposed: most of the field of view too dark to see mucosa.
    Dark,
    /// Over-exposed: large clipped areas.
    Overexposed,
    /// Specular glare: saturated, colourless highlights.
    Glare,
    /// The scope is outside the body (room, light, drape).
    Outside,
    /// Sensor noise or compression artefacts (a noisy sensor at high gain, an MJPEG
    /// capture card at low quality): texture that is not the mucosa's.
    Noise,
}

impl Artifact {
    /// How many artifacts there are: the length of every per-artifact array.
    pub const COUNT: usize = 6;

    pub const ALL: [Artifact; Artifact::COUNT] = [
        Artifact::Blur,
        Artifact::Dark,
        Artifact::Overexposed,
        Artifact::Glare,
        Artifact::Outside,
        Artifact::Noise,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Artifact::Blur => "blur",
            Artifact::Dark => "dark",
            Artifact::Overexposed => "overexposed",
            Artifact::Glare => "glare",
            Artifact::Outside => "outside",
            Artifact::Noise => "noise",
        }
    }

    pub fn parse(s: &str) -> Option<Artifact> {
        Artifact::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
