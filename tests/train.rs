//! The trainer end to end on a small slice of every source: it trains, checkpoints, resumes, and
//! writes a model the classifier loads. (Speed and quality are the real run's business.)
#![cfg(all(feature = "train", not(target_arch = "wasm32")))]

mod common;

use burn::prelude::Device;
use dermscreen::classifier::Classifier;
use dermscreen::train::{run, End, Start, TrainConfig};

#[test]
fn trains_checkpoints_resumes_and_ships_a_loadable_model() {
    let out = common::temp_dir("train");
    let cfg = TrainConfig {
        data: common::data_root(),
        epochs: 1,
        batch_size: 8,
        input_size: 32,
        // The first epoch at a smaller side (progressive resizing), the resumed one at 32.
        low_res_size: Some(24),
        low_res_epochs: 1,
        max_steps_per_epoch: Some(2),
        limit_train: Some(300),
        val_fraction: 0.05,
        ..Default::default()
    };
    // A timing run stops at its checkpoint: nothing shipped, but it says how big an epoch is.
    run(cfg.clone(), &out, Start::New, End::Checkpoint).unwrap();
    for f in ["split.json", "val_labels.csv", "history.json", "checkpoint/model.bpk", "checkpoint/optimizer.bpk"] {
        assert!(out.join(f).is_file(), "{f} written");
    }
    for f in ["model.bpk", "model.json", "metrics.json"] {
        assert!(!out.join(f).exists(), "{f} not written by a run that stops at its checkpoint");
    }
    let split = json_in(&out, "split.json");
    assert!(split["train_images"].as_u64().unwrap() >= 250, "{split}");
    assert!(history_after(&out)[0]["val_loss"].is_null(), "its last epoch is not scored");
    // `--resume` alone keeps the run's own epoch count: it trains no further than the 1 saved
    // (not to `--epochs`' default).
    let resumed = std::process::Command::new(env!("CARGO_BIN_EXE_dermscreen"))
        .args(["train", "--out", out.to_str().unwrap(), "--resume", "--no-export"])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(history_after(&out).as_array().unwrap().len(), 1, "no epoch added");
    // A setting typed with `--resume` that differs from the run's is refused: the run goes on
    // with its own, so a new --lr would go unused. The run's own settings, as when its first
    // command is typed again with --resume, are accepted.
    let resume_with = |extra: &[&str]| {
        let args = ["train", "--out", out.to_str().unwrap(), "--resume", "--no-export"];
        std::process::Command::new(env!("CARGO_BIN_EXE_dermscreen")).args(args).args(extra).output().unwrap()
    };
    let refused = resume_with(&["--lr", "0.01", "--batch-size", "8"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--lr 0.01") && stderr.contains(&cfg.learning_rate.to_string()) && !stderr.contains("--batch-size"), "{stderr}");
    let data = cfg.data.to_str().unwrap();
    let same = resume_with(&["--batch-size", "8", "--input-size", "32", "--data", data, "--max-steps-per-epoch", "2"]);
    assert!(same.status.success(), "{}", String::from_utf8_lossy(&same.stderr));
    assert_eq!(history_after(&out).as_array().unwrap().len(), 1, "no epoch added");
    // Resume to two epochs and ship: the history continues rather than restarting.
    run(cfg.clone(), &out, Start::Resume { epochs: Some(2), typed: Vec::new() }, End::Ship).unwrap();
    for f in ["model.bpk", "model.json", "calibration.json", "metrics.json"] {
        assert!(out.join(f).is_file(), "{f} written");
    }
    let history = history_after(&out);
    let epochs: Vec<u64> = history.as_array().unwrap().iter().map(|e| e["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, [1, 2]);
    let sizes: Vec<u64> = history.as_array().unwrap().iter().map(|e| e["input_size"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [24, 32], "the low-resolution epoch first, then the model's input size");
    // A new run into the same folder (a forgotten --resume, a reused name) would start over
    // and overwrite the checkpoint: it is refused before anything is written.
    let saved = std::fs::read(out.join("checkpoint/model.bpk")).unwrap();
    let refused = run(TrainConfig { epochs: 3, ..cfg.clone() }, &out, Start::New, End::Ship).unwrap_err().to_string();
    assert!(refused.contains("already holds a training run (2 of 2 epochs done)") && refused.contains("--resume"), "{refused}");
    assert_eq!(std::fs::read(out.join("checkpoint/model.bpk")).unwrap(), saved, "the checkpoint is untouched");
    assert_eq!(history_after(&out), history, "the history is untouched");
    let by_source: Vec<&str> = history[1]["val_auc_mel_nv_by_source"].as_array().unwrap().iter().map(|e| e[0].as_str().unwrap()).collect();
    assert_eq!(by_source, ["ham10000", "bcn_20000", "msk", "pad_ufes_20"], "validation is scored per source");
    // `calibrate` refits a run's export in place, from the run's own validation labels.
    let refit = std::process::Command::new(env!("CARGO_BIN_EXE_dermscreen"))
        .args(["calibrate", "--model", out.to_str().unwrap(), "--data", common::data_root().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(refit.status.success(), "{}", String::from_utf8_lossy(&refit.stderr));
    let c = Classifier::load_dir(&out, Device::flex()).unwrap();
    assert!(c.meta().training_classes.iter().any(|k| k == "scc"), "squamous cell carcinoma is trained on");
    let domain = c.meta().domain.as_ref().expect("the export fits the domain head");
    assert_eq!(domain.high_risk_thresholds.len(), 2, "a flag threshold per kind of photo");
    assert_eq!(c.meta().preprocess.input_size, 32);
    assert!(c.meta().calibration.is_some() && c.meta().gate.is_some(), "the export calibrates and gates what it ships");
    let metrics = json_in(&out, "metrics.json");
    assert_eq!(metrics["split"]["grouped_by"], "lesion or patient, within each source");
    for group in ["ham10000", "bcn_20000", "msk", "pad_ufes_20", "dermoscopic", "clinical"] {
        assert!(metrics["validation_by_source"][group]["images"].as_u64().unwrap() > 0, "{group} validated on its own");
    }
    let _ = std::fs::remove_dir_all(&out);
}

fn history_after(out: &std::path::Path) -> serde_json::Value {
    json_in(out, "history.json")
}

/// A JSON file the run wrote into its folder.
fn json_in(out: &std::path::Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join(name)).unwrap()).unwrap()
}

/// What a run needs besides its photos is checked before the first epoch, not found missing
/// at the export hours later; and the sources file need not be in the folder it runs from.
#[cfg(unix)]
#[test]
fn a_run_that_cannot_export_stops_before_training() {
    let root = common::temp_dir("train-data");
    // Absolute, so that the links resolve from the temp folder.
    let data = std::fs::canonicalize(common::data_root()).unwrap();
    std::os::unix::fs::symlink(data.join("ham10000"), root.join("ham10000")).unwrap();
    let elsewhere = common::temp_dir("train-cwd");
    let train = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dermscreen"))
            .current_dir(&elsewhere)
            .args(["train", "--data", root.to_str().unwrap(), "--out", "run", "--input-size", "32"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(!elsewhere.join("run/checkpoint/model.bpk").exists(), "nothing trained");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // No ood/: the gate could not be fitted.
    let err = train(&[]);
    assert!(err.contains("ood: the photos that are not skin spots, which the export fits the gate on"), "{err}");
    // The default sources file, read from another folder (the copy built into the program),
    // names the sets this data root lacks.
    std::os::unix::fs::symlink(data.join("ood"), root.join("ood")).unwrap();
    let err = train(&[]);
    assert!(err.contains("source 'bcn_20000' of taxonomy/sources.json") && err.contains("isic2019-extra"), "{err}");
    // Dermoscopy only: no clinical photo to set that kind's flag threshold on.
    let sources: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(common::root().join("taxonomy/sources.json")).unwrap()).unwrap();
    let ham_only = serde_json::json!({ "sources": sources["sources"].as_array().unwrap().iter().filter(|s| s["name"] == "ham10000").collect::<Vec<_>>() });
    let file = elsewhere.join("ham_only.json");
    std::fs::write(&file, ham_only.to_string()).unwrap();
    let err = train(&["--sources", file.to_str().unwrap()]);
    assert!(err.contains("no malignant clinical photo among the validation photos"), "{err}");
}
