//! dermscreen: skin-lesion screening after Esteva et al. 2017, in Rust with Burn.
//!
//! Data flows one way: bytes -> image ([`preprocess`]) -> tensor -> logits ([`model`]) ->
//! training-class probabilities -> inference-node probabilities ([`taxonomy`]) -> a
//! [`classifier::Prediction`]; [`saliency`] shows where the network looked. [`eval`] and [`report`] score predictions against labels;
//! [`dataset`] reads the labelled photo sets and splits them by lesion or patient; `onnx` (feature `onnx`) writes the network as an ONNX graph; `train` (feature `train`) fits the
//! network; `web` (wasm32 only) is the browser engine.

#[cfg(feature = "train")]
pub mod augment;
pub mod calibration;
pub mod classifier;
pub mod context;
pub mod dataset;
pub mod eval;
#[cfg(feature = "train")]
pub mod fit;
#[cfg(feature = "train")]
pub mod fit_context;
pub mod gate;
pub mod model;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod preprocess;
pub mod report;
pub mod saliency;
pub mod synthetic;
pub mod taxonomy;
#[cfg(feature = "train")]
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;

/// An error and its causes as one line ("what: why: detail"), leaving out a cause whose words
/// the line already ends with (many errors repeat their source in their own message). The CLI
/// prints it under `--verbose`; the browser logs it to the console.
pub fn error_message(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let words = c.to_string();
        if !message.ends_with(&words) {
            message.push_str(": ");
            message.push_str(&words);
        }
        cause = c.source();
    }
    message
}
