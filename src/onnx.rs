//! The shipped network as an ONNX graph (feature `onnx`), so that another engine can run the
//! same weights: `./build.sh bench` times onnxruntime beside this crate's engine and checks
//! that both give the same probabilities.
//!
//! The graph is the classifier from preprocessed input to calibrated training-class
//! probabilities, as [`Classifier::predictions`] computes them: input `image`
//! `[n, 3, s, s]` (the normalised CHW floats [`Classifier::input_from_bytes`] returns), the
//! test-time views when the model uses them (the image, flipped left-right, flipped
//! upside-down; batched, views first), the network with batch norms folded into the
//! convolutions, the logits averaged over the views, the logit adjustment and calibration,
//! and a softmax: output `probabilities` `[n, classes]`. Opset 17.
//!
//! The two linear heads on the last hidden layer, averaged over the views as the classifier
//! does, come along when the model has them, so that an app on another engine can pick the flag's
//! threshold for the kind of photo and turn away what is not a skin spot: `dermoscopic_logit`
//! `[n]` (log-odds that the photo was taken through a dermatoscope; `>= 0` reads as
//! dermoscopic, which picks `domain.high_risk_thresholds`) and `lesion_score` `[n]` (the
//! gate's log-odds of "a skin spot", against `gate.min_lesion_score`). The gate's pixel checks
//! (too dark, blurry, overexposed, spot too small) are not part of the graph.

use crate::classifier::{read_f32, Classifier, ClassifierError};
use crate::gate::LesionHead;
use crate::model::{ConvBn, Net};
use burn::nn::PaddingConfig2d;
use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// ONNX operator set the graph is written against (onnxruntime 1.14 and later run it).
pub const OPSET: i64 = 17;
/// Name of the graph's input, `[n, 3, s, s]`.
pub const INPUT: &str = "image";
/// Name of the graph's output, `[n, classes]`.
pub const OUTPUT: &str = "probabilities";
/// Name of the kind-of-photo head's output, `[n]` (when the model has one).
pub const DERMOSCOPIC_OUTPUT: &str = "dermoscopic_logit";
/// Name of the gate head's output, `[n]` (when the model has a gate).
pub const LESION_OUTPUT: &str = "lesion_score";

/// Encodes the classifier as an ONNX model (protobuf bytes).
pub fn export(classifier: &Classifier) -> Result<Vec<u8>, ClassifierError> {
    let meta = classifier.meta();
    let mut g = Graph::default();
    let s = meta.preprocess.input_size as i64;
    let x = if meta.test_time_flips {
        let lr = g.flip(INPUT, 3, s);
        let ud = g.flip(INPUT, 2, s);
        g.node("Concat", &[INPUT, &lr, &ud], &[int("axis", 0)])
    } else {
        INPUT.to_string()
    };
    let (logits, embedding) = g.net(classifier.net(), &x)?;
    let views = meta.views() as i64;
    let k = meta.training_classes.len();
    let mean = g.mean_over_views(&logits, "views_shape", views, k as i64);
    // softmax(scale * (z + adjustment) + bias) = softmax(scale * z + (scale * adjustment + bias))
    let (scale, bias) = match &meta.calibration {
        Some(c) => (c.scale, c.bias.clone()),
        None => (1.0, vec![0.0; k]),
    };
    let offset: Vec<f32> = meta.logit_adjustment.iter().zip(&bias).map(|(a, b)| scale * a + b).collect();
    let scale = g.constant_f32("calibration_scale", &[], vec![scale]);
    let offset = g.constant_f32("calibration_offset", &[k], offset);
    let scaled = g.node("Mul", &[&mean, &scale], &[]);
    let shifted = g.node("Add", &[&scaled, &offset], &[]);
    g.nodes.push(node("Softmax", &[&shifted], &[OUTPUT], &[int("axis", 1)]));
    let mut outputs = vec![value_info(OUTPUT, &[Dim::Batch, Dim::Fixed(k as i64)])];
    let heads = [(DERMOSCOPIC_OUTPUT, meta.domain.as_ref().map(|d| &d.head)), (LESION_OUTPUT, meta.gate.as_ref().map(|g| &g.head))];
    if heads.iter().any(|(_, h)| h.is_some()) {
        let mean = g.mean_over_views(&embedding, "embedding_views_shape", views, embedding_width(classifier));
        for (name, head) in heads {
            if let Some(head) = head {
                g.linear_head(name, head, &mean);
                outputs.push(value_info(name, &[Dim::Batch]));
            }
        }
    }

    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET, ..Default::default() }],
        producer_name: "dermscreen".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!("{} (weights sha256 {})", meta.name, meta.weights.sha256),
        graph: Some(GraphProto {
            name: meta.name.clone(),
            node: g.nodes,
            initializer: g.initializers,
            input: vec![value_info(INPUT, &[Dim::Batch, Dim::Fixed(3), Dim::Fixed(s), Dim::Fixed(s)])],
            output: outputs,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    model
        .write_to_bytes()
        .map_err(|e| ClassifierError::Meta(format!("could not encode the ONNX graph: {e}")))
}

/// Channels of the last hidden layer.
fn embedding_width(classifier: &Classifier) -> i64 {
    classifier.net().head.weight.val().dims()[0] as i64
}

/// A graph under construction: nodes in order and the weights they read.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Graph {
    /// Adds a node with one fresh output and returns that output's name.
    fn node(&mut self, op: &str, inputs: &[&str], attributes: &[AttributeProto]) -> String {
        let out = format!("{}_{}", op.to_lowercase(), self.nodes.len());
        self.nodes.push(node(op, inputs, &[&out], attributes));
        out
    }

    fn constant_f32(&mut self, name: &str, dims: &[usize], values: Vec<f32>) -> String {
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::FLOAT as i32,
            float_data: values,
            ..Default::default()
        });
        name.into()
    }

    fn constant_i64(&mut self, name: &str, values: &[i64]) -> String {
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: vec![values.len() as i64],
            data_type: DataType::INT64 as i32,
            int64_data: values.to_vec(),
            ..Default::default()
        });
        name.into()
    }

    /// `x` `[views * n, width]` (views first) averaged over the views: `[n, width]`. `shape_name`
    /// names the reshape's constant.
    fn mean_over_views(&mut self, x: &str, shape_name: &str, views: i64, width: i64) -> String {
        let shape = self.constant_i64(shape_name, &[views, -1, width]);
        let by_view = self.node("Reshape", &[x, &shape], &[]);
        self.node("ReduceMean", &[&by_view], &[ints("axes", &[0]), int("keepdims", 0)])
    }

    /// [`LesionHead::score`] of each row of `embedding` `[n, c]`, as output `name` `[n]`:
    /// `w . ((e - mean) / scale) + bias` = `e . (w / scale) + (bias - w . (mean / scale))`.
    fn linear_head(&mut self, name: &str, head: &LesionHead, embedding: &str) {
        let w: Vec<f32> = head.weights.iter().zip(&head.scale).map(|(w, s)| w / s).collect();
        let b = head.bias - w.iter().zip(&head.mean).map(|(w, m)| w * m).sum::<f32>();
        let w = self.constant_f32(&format!("{name}.weight"), &[w.len()], w);
        let b = self.constant_f32(&format!("{name}.bias"), &[], vec![b]);
        let dot = self.node("MatMul", &[embedding, &w], &[]);
        self.nodes.push(node("Add", &[&dot, &b], &[name], &[]));
    }

    /// The input reversed along `axis`, of length `len`: a gather of the reversed indices.
    /// Not a slice with step -1: onnxruntime-web 1.30's WebGPU backend sizes that wrongly (the
    /// views' Concat then fails), and every engine runs a gather.
    fn flip(&mut self, input: &str, axis: i64, len: i64) -> String {
        let reversed: Vec<i64> = (0..len).rev().collect();
        let indices = self.constant_i64(&format!("flip{axis}_indices"), &reversed);
        self.node("Gather", &[input, &indices], &[int("axis", axis)])
    }

    /// A convolution with its folded batch norm as the bias.
    fn conv(&mut self, name: &str, c: &ConvBn, input: &str) -> Result<String, ClassifierError> {
        if c.bn.is_some() {
            return Err(ClassifierError::Meta("export needs the batch norms folded into the convolutions".into()));
        }
        let PaddingConfig2d::Explicit(pad, ..) = c.conv.padding else {
            return Err(ClassifierError::Meta(format!("unexpected padding {:?}", c.conv.padding)));
        };
        let weight = c.conv.weight.val();
        let shape = weight.dims();
        let bias = c.conv.bias.as_ref().ok_or_else(|| ClassifierError::Meta("a folded convolution has a bias".into()))?;
        let w = self.constant_f32(&format!("{name}.weight"), &shape, read_f32(weight.into_data())?);
        let b = self.constant_f32(&format!("{name}.bias"), &[shape[0]], read_f32(bias.val().into_data())?);
        let (k, s, pad) = (shape[2] as i64, c.conv.stride[0] as i64, pad as i64);
        let attributes = [ints("kernel_shape", &[k, k]), ints("strides", &[s, s]), ints("pads", &[pad; 4])];
        Ok(self.node("Conv", &[input, &w, &b], &attributes))
    }

    /// The network of [`crate::model::Net::forward`]: logits `[batch, classes]` and the last
    /// hidden layer `[batch, channels]`.
    fn net(&mut self, net: &Net, input: &str) -> Result<(String, String), ClassifierError> {
        let stem = self.conv("stem", &net.stem, input)?;
        let stem = self.node("Relu", &[&stem], &[]);
        let mut x = self.node(
            "MaxPool",
            &[&stem],
            &[ints("kernel_shape", &[3, 3]), ints("strides", &[2, 2]), ints("pads", &[1; 4])],
        );
        for (i, b) in net.blocks.iter().enumerate() {
            let identity = match &b.shortcut {
                Some(s) => self.conv(&format!("blocks.{i}.shortcut"), s, &x)?,
                None => x.clone(),
            };
            let y = self.conv(&format!("blocks.{i}.conv1"), &b.conv1, &x)?;
            let y = self.node("Relu", &[&y], &[]);
            let y = self.conv(&format!("blocks.{i}.conv2"), &b.conv2, &y)?;
            let sum = self.node("Add", &[&y, &identity], &[]);
            x = self.node("Relu", &[&sum], &[]);
        }
        let pooled = self.node("GlobalAveragePool", &[&x], &[]);
        let embedding = self.node("Flatten", &[&pooled], &[int("axis", 1)]);
        // Burn's linear weight is `[embedding, classes]`: Gemm's B as it is.
        let weight = net.head.weight.val();
        let shape = weight.dims();
        let bias = net.head.bias.as_ref().ok_or_else(|| ClassifierError::Meta("the classifier has a bias".into()))?;
        let w = self.constant_f32("head.weight", &shape, read_f32(weight.into_data())?);
        let b = self.constant_f32("head.bias", &[shape[1]], read_f32(bias.val().into_data())?);
        Ok((self.node("Gemm", &[&embedding, &w, &b], &[]), embedding))
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attributes: &[AttributeProto]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: outputs[0].into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attributes.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), type_: AttributeType::INT.into(), i: value, ..Default::default() }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), type_: AttributeType::INTS.into(), ints: values.to_vec(), ..Default::default() }
}

enum Dim {
    Batch,
    Fixed(i64),
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Batch => tensor_shape_proto::dimension::Value::DimParam("n".into()),
                Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: DataType::FLOAT as i32,
        shape: Some(TensorShapeProto { dim, ..Default::default() }).into(),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }).into(),
        ..Default::default()
    }
}
