//! The CNN: a small, config-driven ResNet (basic residual blocks, batch norm, ReLU).
//!
//! Chosen by measurement on Burn's CPU backend, where dense 3x3 convolutions run ~50x faster
//! per FLOP than depthwise ones, so a plain ResNet trains faster than a MobileNet of similar
//! accuracy; the same dense convolutions map well onto WebGPU on phones.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::module::Param;
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Architecture of [`Net`]; serialised into `model.json` next to the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Output channels of the stem convolution (5x5, stride 2, then 3x3 max-pool stride 2).
    pub stem_channels: usize,
    /// Channels of each stage; every stage after the first halves the resolution.
    pub stage_channels: Vec<usize>,
    /// Residual blocks per stage.
    pub blocks_per_stage: Vec<usize>,
    /// Number of training classes (logits).
    pub num_classes: usize,
    /// Dropout before the classifier (training only).
    pub dropout: f64,
}

impl NetConfig {
    /// The shipped architecture: ~1.5 M parameters, ~75 M multiply-accumulates at 112 px.
    pub fn resnet_small(num_classes: usize) -> Self {
        Self {
            stem_channels: 32,
            stage_channels: vec![32, 64, 128, 256],
            blocks_per_stage: vec![1, 1, 2, 1],
            num_classes,
            dropout: 0.2,
        }
    }

    /// The same network with `factor` times the channels in the stem and every stage (rounded
    /// to a multiple of 8, which keeps SIMD lanes and GPU workgroups full); compute grows with
    /// the square of `factor`.
    pub fn widened(mut self, factor: f64) -> Self {
        let scale = |c: usize| (((c as f64 * factor) / 8.0).round() as usize).max(1) * 8;
        self.stem_channels = scale(self.stem_channels);
        self.stage_channels = self.stage_channels.iter().map(|&c| scale(c)).collect();
        self
    }

    /// Builds the network with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> Net {
        let stem = ConvBn::new(3, self.stem_channels, 5, 2, device);
        let mut blocks = Vec::new();
        let mut c_in = self.stem_channels;
        for (s, (&c_out, &n)) in self.stage_channels.iter().zip(&self.blocks_per_stage).enumerate() {
            for b in 0..n {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(c_in, c_out, stride, device));
                c_in = c_out;
            }
        }
        Net {
            stem,
            pool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            blocks,
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(c_in, self.num_classes).init(device),
            relu: Relu::new(),
        }
    }
}

/// Convolution + batch norm, padded to keep the size at stride 1.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub(crate) conv: Conv2d,
    /// `None` once folded into `conv` for inference ([`Net::fold_batch_norms`]).
    pub(crate) bn: Option<BatchNorm>,
}

impl ConvBn {
    fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize, device: &Device) -> Self {
        let pad = kernel / 2;
        Self {
            conv: Conv2dConfig::new([c_in, c_out], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_bias(false)
                .init(device),
            bn: Some(BatchNormConfig::new(c_out).init(device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv.forward(x);
        match &self.bn {
            Some(bn) => bn.forward(y),
            None => y,
        }
    }

    /// The same function as one biased convolution: batch norm at inference is a per-channel
    /// `y * scale + shift` with `scale = gamma / sqrt(var + eps)` and
    /// `shift = beta - mean * scale`, so `conv(x, w) * scale + shift = conv(x, w * scale) + shift`.
    fn fold(mut self) -> Self {
        let Some(bn) = self.bn.take() else { return self };
        let scale = bn.gamma.val() / bn.running_var.value().add_scalar(bn.epsilon).sqrt();
        let shift = bn.beta.val() - bn.running_mean.value() * scale.clone();
        let [c_out] = scale.dims();
        let bias = match self.conv.bias.take() {
            Some(b) => b.val() * scale.clone() + shift,
            None => shift,
        };
        self.conv.weight = Param::from_tensor(self.conv.weight.val() * scale.reshape([c_out, 1, 1, 1]));
        self.conv.bias = Some(Param::from_tensor(bias));
        self
    }
}

/// ResNet basic block: two 3x3 conv-bn with a (projected when needed) identity shortcut.
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub(crate) conv1: ConvBn,
    pub(crate) conv2: ConvBn,
    pub(crate) shortcut: Option<ConvBn>,
    relu: Relu,
}

impl BasicBlock {
    fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        let shortcut = (stride != 1 || c_in != c_out).then(|| ConvBn::new(c_in, c_out, 1, stride, device));
        Self {
            conv1: ConvBn::new(c_in, c_out, 3, stride, device),
            conv2: ConvBn::new(c_out, c_out, 3, 1, device),
            shortcut,
            relu: Relu::new(),
        }
    }

    fn fold(self) -> Self {
        Self {
            conv1: self.conv1.fold(),
            conv2: self.conv2.fold(),
            shortcut: self.shortcut.map(ConvBn::fold),
            relu: self.relu,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.shortcut {
            Some(s) => s.forward(x.clone()),
            None => x.clone(),
        };
        let y = self.relu.forward(self.conv1.forward(x));
        self.relu.forward(self.conv2.forward(y) + identity)
    }
}

/// The classifier network: input `[batch, 3, size, size]` normalised RGB, output logits over
/// the training classes.
#[derive(Module, Debug)]
pub struct Net {
    pub(crate) stem: ConvBn,
    pool: MaxPool2d,
    pub(crate) blocks: Vec<BasicBlock>,
    gap: AdaptiveAvgPool2d,
    dropout: Dropout,
    pub(crate) head: Linear,
    relu: Relu,
}

impl Net {
    /// Folds every batch norm into the convolution before it, for inference only: the outputs
    /// stay the same (to float rounding), with one pass over each activation instead of two.
    /// On WebGPU that is 14 fewer layers of small dispatches per view; the trainer never
    /// calls it, since training needs the batch statistics.
    pub fn fold_batch_norms(self) -> Self {
        Self {
            stem: self.stem.fold(),
            blocks: self.blocks.into_iter().map(BasicBlock::fold).collect(),
            ..self
        }
    }

    /// The last hidden layer: global-average-pooled features, `[batch, channels of the last stage]`.
    pub fn embed(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = self.pool.forward(self.relu.forward(self.stem.forward(x)));
        for b in &self.blocks {
            x = b.forward(x);
        }
        self.gap.forward(x).flatten(1, 3)
    }

    /// Logits over the training classes, `[batch, num_classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.dropout.forward(self.embed(x)))
    }

    /// Logits and the last hidden layer side by side, `[batch, num_classes + channels of the
    /// last stage]`: one pass and one readback give the prediction and what the gate scores.
    pub fn forward_with_embedding(&self, x: Tensor<4>) -> Tensor<2> {
        let e = self.embed(x);
        Tensor::cat(vec![self.head.forward(self.dropout.forward(e.clone())), e], 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::RunningState;
    use burn::tensor::Distribution;

    /// Batch-norm statistics and affine terms away from their initial 0/1, as training leaves them.
    fn trained(bn: &mut BatchNorm, device: &Device) {
        let [c] = bn.gamma.val().dims();
        let uniform = |lo, hi| Tensor::<1>::random([c], Distribution::Uniform(lo, hi), device);
        bn.gamma = Param::from_tensor(uniform(0.5, 1.5));
        bn.beta = Param::from_tensor(uniform(-0.5, 0.5));
        bn.running_mean = RunningState::new(uniform(-0.3, 0.3));
        bn.running_var = RunningState::new(uniform(0.2, 2.0));
    }

    #[test]
    fn folding_batch_norms_keeps_the_outputs() {
        let device = Device::flex();
        let mut net = NetConfig::resnet_small(7).init(&device);
        let convs = std::iter::once(&mut net.stem).chain(
            net.blocks.iter_mut().flat_map(|b| [Some(&mut b.conv1), Some(&mut b.conv2), b.shortcut.as_mut()].into_iter().flatten()),
        );
        for c in convs {
            trained(c.bn.as_mut().unwrap(), &device);
        }
        let x = Tensor::<4>::random([2, 3, 48, 48], Distribution::Normal(0.0, 1.0), &device);
        let expected = net.forward_with_embedding(x.clone());
        let folded = net.fold_batch_norms();
        assert!(folded.stem.bn.is_none() && folded.blocks.iter().all(|b| b.conv1.bn.is_none() && b.conv2.bn.is_none()));
        let got = folded.forward_with_embedding(x);
        let scale = expected.clone().abs().max().into_scalar::<f32>();
        let diff = (got - expected).abs().max().into_scalar::<f32>();
        assert!(scale > 0.1 && diff <= 1e-4 * scale, "max |folded - unfolded| {diff} at output scale {scale}");
    }

    #[test]
    fn widening_scales_every_stage_and_keeps_the_shape_of_the_net() {
        let base = NetConfig::resnet_small(8);
        let wide = base.clone().widened(1.5);
        assert_eq!(wide.stem_channels, 48);
        assert_eq!(wide.stage_channels, [48, 96, 192, 384]);
        assert_eq!((wide.blocks_per_stage.clone(), wide.num_classes), (base.blocks_per_stage.clone(), 8));
        assert_eq!(base.clone().widened(1.0), base);
        let logits = wide.init(&Device::flex()).forward(Tensor::<4>::zeros([1, 3, 48, 48], &Device::flex()));
        assert_eq!(logits.dims(), [1, 8]);
    }
}
