//! The disease taxonomy: a tree loaded from data (`taxonomy/taxonomy.json`), the paper's
//! partitioning algorithm that turns it into training classes, and the aggregation of
//! training-class probabilities to any set of inference nodes.
//!
//! Esteva et al. 2017: a node whose subtree holds fewer than `maxClassSize` images becomes one
//! training class; otherwise the algorithm recurses into its children (leaves always stop). The
//! probability of an inference node is the sum of the probabilities of the training classes
//! below it.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// The taxonomy shipped with the crate, so the CLI and the browser need no extra file.
pub const BUNDLED_TAXONOMY: &str = include_str!("../taxonomy/taxonomy.json");

/// Errors from loading, validating or using a taxonomy.
#[derive(Debug, thiserror::Error)]
pub enum TaxonomyError {
    #[error("taxonomy is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("taxonomy has no nodes")]
    Empty,
    #[error("duplicate node id '{0}'")]
    DuplicateId(String),
    #[error("node '{node}' names unknown parent '{parent}'")]
    UnknownParent { node: String, parent: String },
    #[error("taxonomy must have exactly one root (a node with no parent), found {0}")]
    RootCount(usize),
    #[error("cycle in the taxonomy through node '{0}'")]
    Cycle(String),
    #[error("unknown taxonomy node '{0}'")]
    UnknownNode(String),
    #[error("training classes overlap: '{0}' lies inside '{1}'")]
    OverlappingClasses(String, String),
    #[error("node '{node}' cannot be resolved: it lies inside training class '{class}', which the model does not split")]
    FinerThanTraining { node: String, class: String },
}

/// One node of the tree as stored in the data file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeSpec {
    /// Stable identifier; diseases from HAM10000 keep their dx code (`mel`, `nv`, ...).
    pub id: String,
    /// Human-readable name shown in the UI.
    pub name: String,
    /// Parent id; `null` for the root.
    pub parent: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct TaxonomyFile {
    version: String,
    nodes: Vec<NodeSpec>,
}

/// A validated disease tree.
#[derive(Debug, Clone)]
pub struct Taxonomy {
    version: String,
    nodes: Vec<NodeSpec>,
    index: HashMap<String, usize>,
    children: Vec<Vec<usize>>,
    root: usize,
}

impl Taxonomy {
    /// The taxonomy bundled with this build.
    pub fn bundled() -> Self {
        Self::from_json(BUNDLED_TAXONOMY).expect("bundled taxonomy is validated by the test suite")
    }

    /// Parses and validates a taxonomy file: unique ids, known parents, one root, no cycles.
    pub fn from_json(text: &str) -> Result<Self, TaxonomyError> {
        let file: TaxonomyFile = serde_json::from_str(text)?;
        Self::new(file.version, file.nodes)
    }

    /// Builds and validates a taxonomy from its nodes.
    pub fn new(version: impl Into<String>, nodes: Vec<NodeSpec>) -> Result<Self, TaxonomyError> {
        if nodes.is_empty() {
            return Err(TaxonomyError::Empty);
        }
        let mut index = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            if index.insert(n.id.clone(), i).is_some() {
                return Err(TaxonomyError::DuplicateId(n.id.clone()));
            }
        }
        let mut children = vec![Vec::new(); nodes.len()];
        let mut roots = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            match &n.parent {
                None => roots.push(i),
                Some(p) => {
                    let &pi = index.get(p).ok_or_else(|| TaxonomyError::UnknownParent {
                        node: n.id.clone(),
                        parent: p.clone(),
                    })?;
                    children[pi].push(i);
                }
            }
        }
        // With one parent each, a cycle means some nodes are unreachable from the root.
        for (i, n) in nodes.iter().enumerate() {
            let mut seen = HashSet::new();
            let mut cur = i;
            while let Some(p) = &nodes[cur].parent {
                if !seen.insert(cur) {
                    return Err(TaxonomyError::Cycle(n.id.clone()));
                }
                cur = index[p];
            }
        }
        if roots.len() != 1 {
            return Err(TaxonomyError::RootCount(roots.len()));
        }
        Ok(Self {
            version: version.into(),
            nodes,
            index,
            children,
            root: roots[0],
        })
    }

    /// The data version, recorded in `model.json` so weights and tree are checked together.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The root's id.
    pub fn root(&self) -> &str {
        &self.nodes[self.root].id
    }

    /// The node with this id.
    pub fn node(&self, id: &str) -> Result<&NodeSpec, TaxonomyError> {
        self.index
            .get(id)
            .map(|&i| &self.nodes[i])
            .ok_or_else(|| TaxonomyError::UnknownNode(id.to_string()))
    }

    /// Children of a node, in file order.
    pub fn children(&self, id: &str) -> Result<Vec<&str>, TaxonomyError> {
        let i = self.idx(id)?;
        Ok(self.children[i].iter().map(|&c| self.nodes[c].id.as_str()).collect())
    }

    /// Whether `ancestor` is `node` or lies above it.
    pub fn is_within(&self, node: &str, ancestor: &str) -> Result<bool, TaxonomyError> {
        let target = self.idx(ancestor)?;
        let mut cur = self.idx(node)?;
        loop {
            if cur == target {
                return Ok(true);
            }
            match &self.nodes[cur].parent {
                Some(p) => cur = self.index[p],
                None => return Ok(false),
            }
        }
    }

    /// Index of the training class that contains `node` (a diagnosis), if any.
    pub fn class_of(&self, node: &str, training_classes: &[String]) -> Option<usize> {
        training_classes.iter().position(|c| self.is_within(node, c).unwrap_or(false))
    }

    /// The node a label `dx` is scored as: the training class it lies within, or itself where it
    /// lies above training classes (a table that knows only `benign` or `malignant`). `None`
    /// for the root, which decides nothing, and for a node the model has no class at or above.
    pub fn scored_node(&self, dx: &str, training_classes: &[String]) -> Option<String> {
        if let Some(k) = self.class_of(dx, training_classes) {
            return Some(training_classes[k].clone());
        }
        let above = dx != self.root() && training_classes.iter().any(|c| self.is_within(c, dx).unwrap_or(false));
        above.then(|| dx.to_string())
    }

    /// All node ids in pre-order (parents before children, siblings in file order).
    pub fn preorder(&self) -> Vec<&str> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![self.root];
        while let Some(i) = stack.pop() {
            out.push(self.nodes[i].id.as_str());
            stack.extend(self.children[i].iter().rev());
        }
        out
    }

    /// The paper's partitioning algorithm.
    ///
    /// `counts` gives the number of images labelled with each node (usually leaves; a missing
    /// node counts 0). Starting at the root, a node whose subtree holds fewer than
    /// `max_class_size` images becomes one training class, otherwise it is split into its
    /// children; leaves always stop. Subtrees with no images give no class. Returns class ids
    /// in pre-order.
    pub fn partition(&self, counts: &HashMap<String, usize>, max_class_size: usize) -> Vec<String> {
        let mut subtree = vec![0usize; self.nodes.len()];
        self.fill_subtree_counts(self.root, counts, &mut subtree);
        let mut out = Vec::new();
        self.partition_rec(self.root, &subtree, max_class_size, &mut out);
        out
    }

    fn fill_subtree_counts(&self, i: usize, counts: &HashMap<String, usize>, acc: &mut [usize]) -> usize {
        let mut total = counts.get(&self.nodes[i].id).copied().unwrap_or(0);
        for &c in &self.children[i] {
            total += self.fill_subtree_counts(c, counts, acc);
        }
        acc[i] = total;
        total
    }

    fn partition_rec(&self, i: usize, subtree: &[usize], max: usize, out: &mut Vec<String>) {
        if subtree[i] == 0 {
            return;
        }
        if subtree[i] < max || self.children[i].is_empty() {
            out.push(self.nodes[i].id.clone());
            return;
        }
        for &c in &self.children[i] {
            self.partition_rec(c, subtree, max, out);
        }
    }

    /// For each node in `nodes`, the indices of the training classes that lie within it.
    ///
    /// Fails if a node is unknown, if the training classes overlap, or if a node lies strictly
    /// inside a training class (the model cannot split that class).
    pub fn aggregation_map(
        &self,
        training_classes: &[String],
        nodes: &[String],
    ) -> Result<Vec<Vec<usize>>, TaxonomyError> {
        for (a, ca) in training_classes.iter().enumerate() {
            for cb in &training_classes[a + 1..] {
                if self.is_within(ca, cb)? {
                    return Err(TaxonomyError::OverlappingClasses(ca.clone(), cb.clone()));
                }
                if self.is_within(cb, ca)? {
                    return Err(TaxonomyError::OverlappingClasses(cb.clone(), ca.clone()));
                }
            }
        }
        nodes
            .iter()
            .map(|node| {
                let mut members = Vec::new();
                for (k, class) in training_classes.iter().enumerate() {
                    if self.is_within(class, node)? {
                        members.push(k);
                    } else if self.is_within(node, class)? {
                        return Err(TaxonomyError::FinerThanTraining {
                            node: node.clone(),
                            class: class.clone(),
                        });
                    }
                }
                Ok(members)
            })
            .collect()
    }

    /// Inference-class probabilities: each node gets the sum of the probabilities of the
    /// training classes below it.
    pub fn aggregate(
        &self,
        training_classes: &[String],
        probs: &[f32],
        nodes: &[String],
    ) -> Result<Vec<f32>, TaxonomyError> {
        let map = self.aggregation_map(training_classes, nodes)?;
        Ok(map.iter().map(|m| m.iter().map(|&k| probs[k]).sum()).collect())
    }

    /// The inner nodes (not the root) that hold at least one training class: the default
    /// inference nodes reported next to the training classes, in pre-order.
    pub fn default_inference_nodes(&self, training_classes: &[String]) -> Vec<String> {
        self.preorder()
            .into_iter()
            .filter(|id| *id != self.root() && !self.children[self.index[*id]].is_empty())
            .filter(|id| !training_classes.iter().any(|c| c == id))
            .filter(|id| {
                training_classes
                    .iter()
                    .any(|c| self.is_within(c, id).unwrap_or(false))
            })
            .map(str::to_string)
            .collect()
    }

    fn idx(&self, id: &str) -> Result<usize, TaxonomyError> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| TaxonomyError::UnknownNode(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: &str, parent: Option<&str>) -> NodeSpec {
        NodeSpec {
            id: id.into(),
            name: id.into(),
            parent: parent.map(Into::into),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bundled_taxonomy_is_valid_and_places_ham10000_diagnoses() {
        let t = Taxonomy::bundled();
        assert_eq!(t.root(), "root");
        for (dx, parent) in [
            ("bkl", "benign_epidermal"),
            ("akiec", "malignant_epidermal"),
            ("bcc", "malignant_epidermal"),
            ("df", "benign_dermal"),
            ("vasc", "benign_dermal"),
            ("nv", "benign_melanocytic"),
            ("mel", "malignant_melanocytic"),
        ] {
            assert_eq!(t.node(dx).unwrap().parent.as_deref(), Some(parent), "{dx}");
        }
        assert_eq!(t.children("root").unwrap(), ["benign", "malignant", "non_neoplastic"]);
        let second: usize = ["benign", "malignant", "non_neoplastic"]
            .iter()
            .map(|c| t.children(c).unwrap().len())
            .sum();
        assert_eq!(second, 9, "the paper's nine second-level classes");
    }

    #[test]
    fn rejects_duplicate_unknown_parent_cycle_and_two_roots() {
        let dup = Taxonomy::new("t", vec![n("r", None), n("a", Some("r")), n("a", Some("r"))]);
        assert!(matches!(dup, Err(TaxonomyError::DuplicateId(id)) if id == "a"));
        let unknown = Taxonomy::new("t", vec![n("r", None), n("a", Some("nope"))]);
        assert!(matches!(unknown, Err(TaxonomyError::UnknownParent { .. })));
        let cycle = Taxonomy::new("t", vec![n("r", None), n("a", Some("b")), n("b", Some("a"))]);
        assert!(matches!(cycle, Err(TaxonomyError::Cycle(_))));
        let two = Taxonomy::new("t", vec![n("r", None), n("s", None)]);
        assert!(matches!(two, Err(TaxonomyError::RootCount(2))));
        let bad_json = Taxonomy::from_json("{\"version\": 1}");
        assert!(matches!(bad_json, Err(TaxonomyError::Json(_))));
    }

    /// The paper's example: with maxClassSize 1,000 on HAM10000's counts, akiec+bcc merge into
    /// their parent and df+vasc into theirs; a bound just above the largest leaf keeps all seven.
    #[test]
    fn partition_follows_max_class_size() {
        let t = Taxonomy::bundled();
        let counts: HashMap<String, usize> = [
            ("nv", 6705),
            ("mel", 1113),
            ("bkl", 1099),
            ("bcc", 514),
            ("akiec", 327),
            ("vasc", 142),
            ("df", 115),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let paper = t.partition(&counts, 1000);
        assert_eq!(paper, strings(&["benign_dermal", "bkl", "nv", "malignant_epidermal", "mel"]));
        let shipped = t.partition(&counts, 100);
        assert_eq!(shipped, strings(&["df", "vasc", "bkl", "nv", "akiec", "bcc", "mel"]));
        // Everything under the bound collapses to the root.
        assert_eq!(t.partition(&counts, 20_000), strings(&["root"]));
    }

    #[test]
    fn paper_worked_example_benign_is_0_6() {
        // Seven benign training classes and three others; P(benign) = 0.1 + 0.05 + 0.05 + 0.3
        // + 0.02 + 0.03 + 0.05 = 0.6.
        let mut nodes = vec![n("root", None), n("benign", Some("root")), n("malignant", Some("root"))];
        let benign = ["b1", "b2", "b3", "b4", "b5", "b6", "b7"];
        for b in benign {
            nodes.push(n(b, Some("benign")));
        }
        for m in ["m1", "m2", "m3"] {
            nodes.push(n(m, Some("malignant")));
        }
        let t = Taxonomy::new("t", nodes).unwrap();
        let classes = strings(&["b1", "b2", "b3", "b4", "b5", "b6", "b7", "m1", "m2", "m3"]);
        let probs = [0.1, 0.05, 0.05, 0.3, 0.02, 0.03, 0.05, 0.2, 0.1, 0.1];
        let out = t
            .aggregate(&classes, &probs, &strings(&["benign", "malignant", "root"]))
            .unwrap();
        assert!((out[0] - 0.6).abs() < 1e-6, "P(benign) = {}", out[0]);
        assert!((out[1] - 0.4).abs() < 1e-6);
        assert!((out[2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn aggregation_refuses_nodes_finer_than_training_classes() {
        let t = Taxonomy::bundled();
        let classes = strings(&["benign", "malignant_epidermal", "mel"]);
        let err = t.aggregate(&classes, &[0.5, 0.3, 0.2], &strings(&["nv"])).unwrap_err();
        assert!(matches!(err, TaxonomyError::FinerThanTraining { .. }));
        let out = t
            .aggregate(&classes, &[0.5, 0.3, 0.2], &strings(&["malignant"]))
            .unwrap();
        assert!((out[0] - 0.5).abs() < 1e-6, "P(malignant) = {}", out[0]);
        let overlap = t.aggregate(&strings(&["benign", "nv"]), &[0.5, 0.5], &strings(&["root"]));
        assert!(matches!(overlap, Err(TaxonomyError::OverlappingClasses(..))));
    }

    #[test]
    fn default_inference_nodes_skip_empty_branches() {
        let t = Taxonomy::bundled();
        let classes = strings(&["df", "vasc", "bkl", "nv", "akiec", "bcc", "mel"]);
        let nodes = t.default_inference_nodes(&classes);
        assert_eq!(
            nodes,
            strings(&[
                "benign",
                "benign_dermal",
                "benign_epidermal",
                "benign_melanocytic",
                "malignant",
                "malignant_epidermal",
                "malignant_melanocytic"
            ])
        );
    }
}
