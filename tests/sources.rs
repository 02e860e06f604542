//! The data the shipped model was trained and validated on, rebuilt from `taxonomy/sources.json`
//! as the trainer builds it: the shipped validation split is that split, and no lesion or
//! patient has photos on both sides of it.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use dermscreen::context::{Context, FIELDS};
use dermscreen::dataset::{read_source, read_sources, split_by_group, Kind, Table};
use std::collections::{HashMap, HashSet};

#[test]
fn the_shipped_split_is_grouped_within_every_source_and_covers_both_kinds() {
    let root = common::data_root();
    let sources = read_sources(&common::root().join("taxonomy/sources.json")).unwrap();
    let samples: Vec<_> = sources.iter().flat_map(|s| read_source(&root, s).unwrap()).collect();
    // The trainer's defaults: seed 20171025, a fifth of each diagnosis's groups held out.
    let split = split_by_group(&samples, 0.2, 20_171_025);
    let shipped: HashSet<String> = common::validation_rows().into_iter().map(|l| l.image).collect();
    let rebuilt: HashSet<String> = split.val.iter().map(|s| s.image.clone()).collect();
    assert_eq!(shipped, rebuilt, "model/validation_split.csv is the trainer's validation split");
    // The patient context the export fitted its context head on is what the sources say now.
    let table = Table::read(&common::root().join("model/validation_split.csv")).unwrap();
    let shipped_context: HashMap<String, Context> = table
        .columns(["image"])
        .unwrap()
        .into_iter()
        .zip(table.columns(FIELDS).unwrap())
        .map(|([image], values)| (image, Context::from_pairs(FIELDS.into_iter().zip(values.iter().map(String::as_str))).unwrap()))
        .collect();
    let differing: Vec<_> = split.val.iter().filter(|s| shipped_context[&s.image] != s.context).map(|s| &s.image).collect();
    assert!(differing.is_empty(), "context differs for {} photos, e.g. {:?}", differing.len(), differing.first());
    assert!(split.val.iter().filter(|s| s.context.has("age")).count() > 4000, "ages are read");
    let held_out: HashSet<(&str, &str)> = split.val.iter().map(|s| (s.source.as_str(), s.group.as_str())).collect();
    let straddling: Vec<_> = split.train.iter().filter(|s| held_out.contains(&(s.source.as_str(), s.group.as_str()))).collect();
    assert!(straddling.is_empty(), "groups on both sides: {:?}", &straddling[..straddling.len().min(3)]);
    // BCN20000 has many photos per lesion and PAD-UFES-20 several lesions per patient: the
    // grouping is what keeps them apart.
    let per_group = |source: &str| {
        let photos = samples.iter().filter(|s| s.source == source).count();
        let groups = samples.iter().filter(|s| s.source == source).map(|s| &s.group).collect::<HashSet<_>>().len();
        photos as f64 / groups as f64
    };
    assert!(per_group("bcn_20000") > 2.0 && per_group("pad_ufes_20") > 1.1);
    for kind in Kind::ALL {
        let malignant = split.val.iter().filter(|s| s.kind == kind && ["mel", "bcc", "scc", "akiec"].contains(&s.dx.as_str())).count();
        assert!(malignant >= 20, "{} validation photos include {malignant} malignant ones", kind.as_str());
    }
}
