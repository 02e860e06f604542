//! The train/validation split: grouped by lesion or patient, stratified by diagnosis, seeded,
//! within each source.

use super::Sample;
use std::collections::{BTreeMap, HashMap};

/// Train and validation samples.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a hash of a string: stable across runs and platforms, for seeded orders and folds.
pub fn fnv1a(s: &str) -> u64 {
    s.bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Splits by group within each source: a group (lesion or patient) goes to validation whole.
/// Within a source, groups are stratified by diagnosis (a patient with several diagnoses by the
/// rarest of them), ordered by a seeded hash of their id, and the first
/// `round(val_fraction * n)` of each stratum go to validation. Deterministic for a given seed
/// and independent of file order.
pub fn split_by_group(samples: &[Sample], val_fraction: f64, seed: u64) -> Split {
    let mut images_per_dx: HashMap<(&str, &str), usize> = HashMap::new();
    for s in samples {
        *images_per_dx.entry((&s.source, &s.dx)).or_insert(0) += 1;
    }
    // (source, group) -> the rarest diagnosis among its images.
    let mut stratum: HashMap<(&str, &str), &str> = HashMap::new();
    for s in samples {
        let rarity = |dx: &str| (images_per_dx[&(s.source.as_str(), dx)], dx.to_string());
        stratum
            .entry((&s.source, &s.group))
            .and_modify(|dx| {
                if rarity(&s.dx) < rarity(dx) {
                    *dx = &s.dx;
                }
            })
            .or_insert(&s.dx);
    }
    let mut by_stratum: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for (&(source, group), &dx) in &stratum {
        by_stratum.entry((source, dx)).or_default().push(group);
    }
    let mut val_groups = std::collections::HashSet::new();
    for (&(source, _), groups) in by_stratum.iter_mut() {
        groups.sort_by_key(|g| (splitmix64(seed ^ fnv1a(g)), *g));
        let n_val = (val_fraction * groups.len() as f64).round() as usize;
        val_groups.extend(groups.iter().take(n_val).map(|g| (source, *g)));
    }
    let (val, train) = samples
        .iter()
        .cloned()
        .partition(|s| val_groups.contains(&(s.source.as_str(), s.group.as_str())));
    Split { train, val }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::dataset::Kind;

    fn sample(source: &str, group: String, image: String, dx: &str) -> Sample {
        Sample { source: source.into(), kind: Kind::Dermoscopic, group, image, dx: dx.into(), context: Context::default() }
    }

    fn synthetic() -> Vec<Sample> {
        let mut v = Vec::new();
        for i in 0..200 {
            let dx = if i % 10 == 0 { "mel" } else { "nv" };
            for k in 0..(1 + i % 3) {
                v.push(sample("a", format!("L{i}"), format!("I{i}_{k}"), dx));
            }
        }
        v
    }

    #[test]
    fn split_groups_lesions_stratifies_and_is_deterministic() {
        let s = synthetic();
        let a = split_by_group(&s, 0.2, 7);
        let b = split_by_group(&s, 0.2, 7);
        assert_eq!(a.val, b.val);
        let train_groups: std::collections::HashSet<_> = a.train.iter().map(|s| &s.group).collect();
        assert!(a.val.iter().all(|s| !train_groups.contains(&s.group)));
        let val_mel: std::collections::HashSet<_> = a.val.iter().filter(|s| s.dx == "mel").map(|s| &s.group).collect();
        assert_eq!(val_mel.len(), 4, "20% of the 20 melanoma lesions");
        let mut reversed = s.clone();
        reversed.reverse();
        let c = split_by_group(&reversed, 0.2, 7);
        let mut v1: Vec<_> = a.val.iter().map(|s| &s.image).collect();
        let mut v2: Vec<_> = c.val.iter().map(|s| &s.image).collect();
        v1.sort();
        v2.sort();
        assert_eq!(v1, v2, "independent of file order");
        assert_ne!(a.val, split_by_group(&s, 0.2, 8).val, "the seed matters");
    }

    #[test]
    fn a_patient_with_several_diagnoses_stays_on_one_side_and_sources_split_apart() {
        let mut s = synthetic();
        // Patients of a second source, each with a nevus and (every fifth) a carcinoma.
        for p in 0..50 {
            s.push(sample("b", format!("P{p}"), format!("b/P{p}_1"), "nv"));
            if p % 5 == 0 {
                s.push(sample("b", format!("P{p}"), format!("b/P{p}_2"), "bcc"));
            }
        }
        // A group id both sources use is two different groups.
        s.push(sample("b", "L0".into(), "b/L0".into(), "nv"));
        let split = split_by_group(&s, 0.2, 3);
        for side in [&split.train, &split.val] {
            let other = if std::ptr::eq(side, &split.train) { &split.val } else { &split.train };
            let groups: std::collections::HashSet<_> = other.iter().map(|s| (&s.source, &s.group)).collect();
            assert!(side.iter().all(|s| !groups.contains(&(&s.source, &s.group))), "no group straddles the split");
        }
        let val_bcc_patients = split.val.iter().filter(|s| s.source == "b" && s.dx == "bcc").count();
        assert_eq!(val_bcc_patients, 2, "stratified by the rarer diagnosis: 20% of 10 carcinoma patients");
    }
}
