//! dermscreen: skin-lesion screening after Esteva et al. 2017, in Rust with Burn.
//!
//! Data flows one way: bytes -> image ([`preprocess`]) -> tensor -> logits ([`model`]) ->
//! training-class probabilities -> inference-node probabilities ([`taxonomy`]) -> a
//! [`classifier::Prediction`]. [`eval`] and [`report`] score predictions against labels;
//! [`dataset`] reads HAM10000 and splits it by lesion; `train` (feature `train`) fits the
//! network; `web` (wasm32 only) is the browser engine.

pub mod classifier;
pub mod dataset;
pub mod eval;
pub mod model;
pub mod preprocess;
pub mod report;
pub mod taxonomy;
#[cfg(feature = "train")]
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;
