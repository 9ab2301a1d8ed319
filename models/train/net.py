"""The quality network and its ONNX export (written op by op with onnx.helper, so the
graph holds only standard ops that tract runs: Slice, Conv, Relu, GlobalAveragePool,
GlobalMaxPool, Flatten, Concat, Gemm, Sigmoid).

Input [1, 4, 224, 224]: channels 0-2 the field of view downscaled to 224² (RGB, 0..1),
channel 3 a 2×2 mosaic of 112² luma tiles copied at native resolution (0..1), see
docs/scoring.md. Two branches:

  overview (RGB):  Conv 4×4/4 3→8, Conv 3×3/2 8→16, Conv 3×3/2 16→32   (56², 28², 14²)
                   → global average and global max pool (glare is small and bright)
  detail (luma):   Conv 4×4/4 1→16, Conv 3×3/2 16→32, Conv 3×3/2 32→32, Conv 3×3/2 32→32
                   (56², 28², 14², 7²) → global average pool (and, with `detail_max`, global
                   max pool: defocus blurs the whole view, so the sharpest place is the
                   evidence that a smooth scene is in focus). The first conv sees every
                   native pixel (4×4 blocks, no gaps), enough to learn the high-pass
                   filters that tell σ = 1.5 px defocus from sharp. (A 3×3/2 1→8 start at
                   112² scored a little better but took ~1.0 ms in tract instead of ~0.65.)
  head:            [96] ([128] with `detail_max`) → Gemm 32 → ReLU → Gemm 7 → Sigmoid → quality [1,1], artifacts [1,6]

Every conv is followed by batch norm (folded into the conv at export) and ReLU.
"""
import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

SIZE = 224
OV = [(3, 8, 4, 4, 0), (8, 16, 3, 2, 1), (16, 32, 3, 2, 1)]
DE = [(1, 16, 4, 4, 0), (16, 32, 3, 2, 1), (32, 32, 3, 2, 1), (32, 32, 3, 2, 1)]
HIDDEN = 32
N_OUT = 7


def conv_stack(spec):
    layers = []
    for cin, cout, k, s, p in spec:
        layers += [nn.Conv2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers)


class Net(nn.Module):
    def __init__(self, detail_max=False):
        super().__init__()
        self.detail_max = detail_max
        self.ov = conv_stack(OV)
        self.de = conv_stack(DE)
        self.fc1 = nn.Linear(2 * OV[-1][1] + (2 if detail_max else 1) * DE[-1][1], HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, N_OUT)

    def forward(self, x):
        o = self.ov(x[:, :3])
        d = self.de(x[:, 3:4])
        parts = [o.mean((2, 3)), o.amax((2, 3)), d.mean((2, 3))]
        if self.detail_max:
            parts.append(d.amax((2, 3)))
        f = torch.cat(parts, 1)
        z = self.fc2(torch.relu(self.fc1(f)))
        return z  # logits: [quality, blur, dark, overexposed, glare, outside]


def folded(seq):
    """(weight, bias) per conv of a Conv-BN-ReLU stack, batch norm folded in."""
    out = []
    mods = list(seq)
    for i in range(0, len(mods), 3):
        conv, bn = mods[i], mods[i + 1]
        w = conv.weight.detach().numpy().astype(np.float64)
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
        bias = (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
        out.append(((w * scale[:, None, None, None]).astype(np.float32), bias.astype(np.float32)))
    return out


def to_onnx(net, name="endo-quality"):
    net.eval()
    init, nodes = [], []

    def const(n, v, dtype=np.float32):
        init.append(numpy_helper.from_array(np.asarray(v, dtype=dtype), n))
        return n

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    x_ov = node("Slice", ["image", const("s0", [0], np.int64), const("s3", [3], np.int64), const("ax1", [1], np.int64)], "overview")
    x_de = node("Slice", ["image", "s3", const("s4", [4], np.int64), "ax1"], "detail")

    def stack(x, spec, convs, tag):
        for i, ((cin, cout, k, s, p), (w, b)) in enumerate(zip(spec, convs)):
            x = node("Conv", [x, const(f"{tag}{i}_w", w), const(f"{tag}{i}_b", b)], f"{tag}{i}_conv",
                     kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p])
            x = node("Relu", [x], f"{tag}{i}_relu")
        return x

    o = stack(x_ov, OV, folded(net.ov), "ov")
    d = stack(x_de, DE, folded(net.de), "de")
    oa = node("Flatten", [node("GlobalAveragePool", [o], "ov_gap")], "ov_avg")
    om = node("Flatten", [node("GlobalMaxPool", [o], "ov_gmp")], "ov_max")
    da = node("Flatten", [node("GlobalAveragePool", [d], "de_gap")], "de_avg")
    parts = [oa, om, da]
    if net.detail_max:
        parts.append(node("Flatten", [node("GlobalMaxPool", [d], "de_gmp")], "de_max"))
    f = node("Concat", parts, "features", axis=1)
    h = node("Relu", [node("Gemm", [f, const("fc1_w", net.fc1.weight.detach().numpy()), const("fc1_b", net.fc1.bias.detach().numpy())], "fc1", transB=1)], "fc1_relu")
    z = node("Gemm", [h, const("fc2_w", net.fc2.weight.detach().numpy()), const("fc2_b", net.fc2.bias.detach().numpy())], "logits", transB=1)
    y = node("Sigmoid", [z], "probs")
    node("Slice", [y, "s0", const("s1", [1], np.int64), "ax1"], "quality")
    node("Slice", [y, "s1", const("s_end", [N_OUT], np.int64), "ax1"], "artifacts")
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 4, SIZE, SIZE])],
        [helper.make_tensor_value_info("quality", TensorProto.FLOAT, [1, 1]),
         helper.make_tensor_value_info("artifacts", TensorProto.FLOAT, [1, N_OUT - 1])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="endo-agent models/train")
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model
