//! The weights file: to and from bytes (f16 or f32), and its SHA-256.

use crate::model::{Net, NetConfig};
use burn::prelude::*;
use burn::store::{BurnpackStore, HalfPrecisionAdapter, ModuleSnapshot};
use burn::tensor::Bytes;
use sha2::{Digest, Sha256};
use super::{BoxedSource, ClassifierError};

/// SHA-256 as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Saves weights as burnpack, conv/linear weights in f16 when `half` is set. Returns the bytes.
pub fn weights_to_bytes(net: &Net, half: bool) -> Result<Vec<u8>, ClassifierError> {
    let mut store = BurnpackStore::from_bytes(None);
    if half {
        store = store.with_to_adapter(HalfPrecisionAdapter::new());
    }
    let err = |source: BoxedSource| ClassifierError::Store { file: "<memory>".into(), what: "could not be written", source };
    net.save_into(&mut store).map_err(|e| err(e.into()))?;
    let bytes = store.get_bytes().map_err(|e| err(e.into()))?;
    Ok(bytes.to_vec())
}

/// Loads burnpack weights into a network of the given architecture, for inference; `half` when
/// conv and linear weights are stored in f16 (they are widened to f32 on load).
pub fn net_from_bytes(config: &NetConfig, bytes: Vec<u8>, half: bool, file: &str, device: &Device) -> Result<Net, ClassifierError> {
    // Freshly built modules are in training mode (batch-statistics batch norm, dropout on);
    // loaded weights are for inference.
    Ok(load_weights(config.init(device), bytes, half, file)?.valid())
}

/// `net` with the burnpack weights `bytes` (see [`net_from_bytes`]), on `net`'s device and in
/// its mode: the trainer starts from a shipped model this way.
pub fn load_weights(mut net: Net, bytes: Vec<u8>, half: bool, file: &str) -> Result<Net, ClassifierError> {
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
    if half {
        // The adapter converts in whichever direction the stored dtype implies, so it must
        // only see f16 files.
        store = store.with_from_adapter(HalfPrecisionAdapter::new());
    }
    let err = |message: String| ClassifierError::Weights { file: file.to_string(), message };
    let result = net.load_from(&mut store).map_err(|e| ClassifierError::Store {
        file: file.to_string(),
        what: "does not match the architecture in model.json",
        source: e.into(),
    })?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(err(format!(
            "does not match the architecture in model.json ({} errors, {} missing, {} unexpected tensors; first: {})",
            result.errors.len(),
            result.missing.len(),
            result.unused.len(),
            result
                .errors
                .first()
                .map(|e| e.to_string())
                .or_else(|| result.missing.first().map(|m| format!("missing {}", m.0)))
                .or_else(|| result.unused.first().map(|u| format!("unexpected {u}")))
                .unwrap_or_default()
        )));
    }
    Ok(net)
}
