//! The quality model: an ONNX file run by tract, described by a manifest beside it.
//!
//! The manifest (`<model stem>.manifest.json`) is the model's contract with the agent:
//! input name, shape, layout and normalisation; output names and artifact labels; version;
//! and the sha256 of the ONNX file. [`ModelRunner::load`] refuses a model whose hash, input
//! shape, outputs or labels do not match its manifest, naming the file and the reason.
//! tract types stay inside this module.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::artifact::Artifact;

/// Why a model was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("model file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model file {path}: sha256 is {actual} but its manifest says {expected}; refusing a model that is not the one described")]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("model file {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("running model {path}: {reason}")]
    Run { path: PathBuf, reason: String },
}

/// The manifest beside a model file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Model family name.
    pub name: String,
    /// Model version, recorded in every datalake record.
    pub version: String,
    /// File name of the ONNX model (relative to the manifest).
    pub file: String,
    /// sha256 of the ONNX file, lowercase hex.
    pub sha256: String,
    /// Weight/activation format, e.g. `f32`, `int8-qdq`.
    pub quantization: String,
    pub input: InputSpec,
    pub outputs: OutputSpec,
    /// Free text: what the model is, how it was made.
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    /// [1, 3, H, W] for NCHW or [1, H, W, 3] for NHWC.
    pub shape: [usize; 4],
    /// NCHW | NHWC
    pub layout: Layout,
    /// Channel order; only RGB is supported.
    pub color: String,
    /// value = (pixel * scale - mean[c]) / std[c]
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// An optional fourth channel of native-resolution luma detail (NCHW only): the
    /// shape is then [1, 4, H, W]. Without it the input is the RGB overview alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<DetailSpec>,
}

/// Channel 3 of the input: a mosaic of `tiles` × `tiles` luma tiles, each (H/tiles) ×
/// (W/tiles) pixels copied from the frame at native resolution (no resampling), so that
/// blur of a pixel or two survives — a downscale of a 1080p frame to 224² hides it.
///
/// Tile centres lie on a `tiles` × `tiles` grid centred on the field of view, spanning
/// `spread` × the FOV's width and height (tile (i, j) centre =
/// FOV centre + (j/(tiles−1) − ½, i/(tiles−1) − ½) · spread · FOV size; one tile sits at
/// the centre). Tiles are moved inside the frame if they would cross its edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailSpec {
    pub tiles: u32,
    pub spread: f32,
    /// value = (luma * scale − mean) / std, luma being the Y plane's code value.
    pub scale: f32,
    pub mean: f32,
    pub std: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    #[serde(rename = "NCHW")]
    Nchw,
    #[serde(rename = "NHWC")]
    Nhwc,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Output holding overall quality, shape [1, 1], 0 (bad) .. 1 (good).
    pub quality: String,
    /// Output holding per-artifact values, shape [1, labels.len()], each 0..1.
    pub artifacts: String,
    /// Artifact names, in output order (blur, dark, overexposed, glare, outside).
    pub labels: Vec<String>,
}

impl InputSpec {
    /// Channels the input must have: 3 (RGB), plus 1 with a detail channel.
    pub fn channels(&self) -> usize {
        3 + self.detail.is_some() as usize
    }

    /// (height, width) of the input image.
    pub fn size(&self) -> (u32, u32) {
        match self.layout {
            Layout::Nchw => (self.shape[2] as u32, self.shape[3] as u32),
            Layout::Nhwc => (self.shape[1] as u32, self.shape[2] as u32),
        }
    }
}

/// What the model said about one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelOutput {
    pub quality: f32,
    /// Indexed by [`Artifact::index`]; artifacts the model does not output are 0.
    pub artifacts: [f32; Artifact::COUNT],
}

/// A loaded, checked, optimised model ready to run on the scoring thread.
///
/// It keeps tract's run state and its input tensor between frames: a fresh state per
/// run rebuilds every operator's state and value table, and a fresh input tensor is a
/// 0.8 MB allocation and copy per frame at 224² × 4 channels.
pub struct ModelRunner {
    path: PathBuf,
    manifest: Manifest,
    state: TypedSimpleState,
    /// The input handed to tract; exclusively ours again once a run has returned.
    input: Arc<Tensor>,
    quality_ix: usize,
    artifacts_ix: usize,
    /// Model output position → artifact.
    labels: Vec<Artifact>,
}

/// The manifest path for a model path: `dir/name.onnx` → `dir/name.manifest.json`.
pub fn manifest_path(model: &Path) -> PathBuf {
    let stem = model.file_stem().unwrap_or_default().to_string_lossy();
    model.with_file_name(format!("{stem}.manifest.json"))
}

/// sha256 of a byte string, lowercase hex.
pub use crate::sha256_hex;

/// The largest input dimension a manifest may declare (a 4096² input is already far
/// beyond any quality model the agent runs per frame).
pub const MAX_INPUT_DIM: usize = 4096;

impl ModelRunner {
    /// Load `path` and its manifest; check hash, file name, input shape, outputs and labels.
    pub fn load(path: &Path) -> Result<ModelRunner, ModelError> {
        let mpath = manifest_path(path);
        let text = std::fs::read_to_string(&mpath).map_err(|e| ModelError::Manifest {
            path: mpath.clone(),
            reason: format!("cannot read it ({e}); every model needs a manifest beside it"),
        })?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| ModelError::Manifest {
            path: mpath.clone(),
            reason: e.to_string(),
        })?;
        let bytes = std::fs::read(path).map_err(|source| ModelError::Read {
            path: path.to_owned(),
            source,
        })?;
        let actual = sha256_hex(&bytes);
        if actual != manifest.sha256.to_ascii_lowercase() {
            return Err(ModelError::HashMismatch {
                path: path.to_owned(),
                expected: manifest.sha256.clone(),
                actual,
            });
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if manifest.file != name {
            return Err(ModelError::Manifest {
                path: mpath,
                reason: format!(
                    "its file {:?} is not this model ({name:?}); a manifest describes one file",
                    manifest.file
                ),
            });
        }
        Self::from_bytes(path, manifest, &bytes)
    }

    fn from_bytes(
        path: &Path,
        manifest: Manifest,
        bytes: &[u8],
    ) -> Result<ModelRunner, ModelError> {
        let invalid = |reason: String| ModelError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let spec = manifest.input.clone();
        check_input_spec(&spec).map_err(invalid)?;
        let mut labels = Vec::new();
        for l in &manifest.outputs.labels {
            labels.push(Artifact::parse(l).ok_or_else(|| {
                invalid(format!(
                    "manifest output label {l:?} is not a known artifact"
                ))
            })?);
        }
        let model = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .map_err(|e| invalid(format!("not a loadable ONNX model: {e:#}")))?;
        // The declared input must be the model's input, with the declared shape.
        check_model_input(&model, &spec).map_err(invalid)?;
        let out_names: Vec<String> = model
            .output_outlets()
            .map_err(|e| invalid(format!("{e:#}")))?
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(str::to_string)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        let find = |name: &str| {
            out_names.iter().position(|n| n == name).ok_or_else(|| {
                invalid(format!(
                    "manifest output {name:?} is not among the model's outputs {out_names:?}"
                ))
            })
        };
        let quality_ix = find(&manifest.outputs.quality)?;
        let artifacts_ix = find(&manifest.outputs.artifacts)?;
        let plan = model
            .with_input_fact(0, f32::fact(spec.shape).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| {
                invalid(format!(
                    "cannot prepare the model with input {:?}: {e:#}",
                    spec.shape
                ))
            })?;
        let state = TypedSimpleState::new(&plan).map_err(|e| invalid(format!("{e:#}")))?;
        let input = Tensor::zero::<f32>(&spec.shape).map_err(|e| invalid(format!("{e:#}")))?;
        let mut runner = ModelRunner {
            path: path.to_owned(),
            manifest,
            state,
            input: Arc::new(input),
            quality_ix,
            artifacts_ix,
            labels,
        };
        // One dry run proves the output shapes before the first real frame.
        let zeros = vec![0.0f32; spec.shape.iter().product()];
        runner.run(&zeros)?;
        Ok(runner)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run on a normalised input laid out as the manifest says.
    pub fn run(&mut self, input: &[f32]) -> Result<ModelOutput, ModelError> {
        let want: usize = self.manifest.input.shape.iter().product();
        if input.len() != want {
            return Err(ModelError::Run {
                path: self.path.clone(),
                reason: format!(
                    "input has {} values, the manifest's shape {:?} needs {want}",
                    input.len(),
                    self.manifest.input.shape
                ),
            });
        }
        self.run_with(|slot| slot.copy_from_slice(input))
    }

    /// Run on the input `fill` writes into the model's own input tensor (as many values
    /// as the manifest's shape holds, laid out as it says): the score thread's
    /// preprocessing writes there directly, with no copy in between.
    pub fn run_with(&mut self, fill: impl FnOnce(&mut [f32])) -> Result<ModelOutput, ModelError> {
        let path = &self.path;
        let err = |reason: String| ModelError::Run {
            path: path.clone(),
            reason,
        };
        // tract drops its references to the input when the run ends, so the tensor is
        // ours alone again and is written in place; were it ever still shared, make_mut
        // would give this run a copy rather than write under tract.
        {
            let mut ram = Arc::make_mut(&mut self.input)
                .try_as_plain_ram_mut()
                .map_err(|e| err(format!("{e:#}")))?;
            fill(
                ram.as_slice_mut::<f32>()
                    .map_err(|e| err(format!("{e:#}")))?,
            );
        }
        let out = self
            .state
            .run(tvec!(self.input.clone().into_tvalue()))
            .map_err(|e| err(format!("{e:#}")))?;
        let q = out[self.quality_ix]
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .map_err(|e| err(format!("quality output: {e:#}")))?;
        let a = out[self.artifacts_ix]
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .map_err(|e| err(format!("artifacts output: {e:#}")))?;
        if q.len() != 1 || a.len() != self.labels.len() {
            return Err(err(format!(
                "outputs have {} and {} values, the manifest promises 1 and {}",
                q.len(),
                a.len(),
                self.labels.len()
            )));
        }
        let mut artifacts = [0.0; Artifact::COUNT];
        for (v, l) in a.iter().zip(&self.labels) {
            artifacts[l.index()] = v.clamp(0.0, 1.0);
        }
        Ok(ModelOutput {
            quality: q[0].clamp(0.0, 1.0),
            artifacts,
        })
    }
}

/// The manifest's input is one the agent can feed: RGB, concrete sane dimensions, batch 1,
/// the channels its layout says, and detail tiles that divide the input.
fn check_input_spec(spec: &InputSpec) -> Result<(), String> {
    if spec.color != "RGB" {
        return Err(format!(
            "manifest input.color {:?}: only RGB is supported",
            spec.color
        ));
    }
    // Concrete, sane dimensions before anything is sized by them: a model with symbolic
    // H/W takes whatever the manifest says (a zero size scored everything 0, a huge one
    // aborted on a 160 GB allocation).
    if spec.shape.iter().any(|&d| d == 0 || d > MAX_INPUT_DIM) {
        return Err(format!(
            "manifest input.shape {:?}: every dimension must be within 1..={MAX_INPUT_DIM}",
            spec.shape
        ));
    }
    let channels = match spec.layout {
        Layout::Nchw => spec.shape[1],
        Layout::Nhwc => spec.shape[3],
    };
    if spec.shape[0] != 1 || channels != spec.channels() {
        return Err(format!(
            "manifest input.shape {:?}: expected batch 1 and {} channels",
            spec.shape,
            spec.channels()
        ));
    }
    if let Some(d) = &spec.detail {
        let (h, w) = spec.size();
        let ok = spec.layout == Layout::Nchw
            && d.tiles >= 1
            && h % d.tiles == 0
            && w % d.tiles == 0
            && (0.0..=1.0).contains(&d.spread)
            && d.std != 0.0;
        if !ok {
            return Err(format!(
                "manifest input.detail {d:?}: needs NCHW, 1 or more tiles dividing {h}x{w}, spread in 0..1 and std != 0"
            ));
        }
    }
    Ok(())
}

/// The model has exactly the one input the manifest declares, with its name and shape.
fn check_model_input(model: &InferenceModel, spec: &InputSpec) -> Result<(), String> {
    let inputs = model.input_outlets().map_err(|e| format!("{e:#}"))?;
    if inputs.len() != 1 {
        return Err(format!(
            "model has {} inputs, the agent feeds exactly one",
            inputs.len()
        ));
    }
    let in_name = model.node(inputs[0].node).name.clone();
    if in_name != spec.name {
        return Err(format!(
            "model input is {in_name:?} but the manifest says {:?}",
            spec.name
        ));
    }
    let declared = model.input_fact(0).map_err(|e| format!("{e:#}"))?;
    {
        let dims: Vec<Option<i64>> = declared
            .shape
            .dims()
            .map(|d| d.concretize().and_then(|d| d.to_i64().ok()))
            .collect();
        let matches = dims.len() == 4
            && dims
                .iter()
                .zip(spec.shape)
                .all(|(d, s)| d.is_none_or(|d| d == s as i64));
        if !matches {
            return Err(format!(
                "model input shape is {dims:?} but the manifest says {:?}",
                spec.shape
            ));
        }
    }
    Ok(())
}
