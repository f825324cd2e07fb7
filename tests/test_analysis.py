"""Run analysis: confusion matrix and per-class accuracy against a direct count, the contact sheet of
confident mistakes, Grad-CAM and attention rollout on hand-built networks whose maps are worked out
by hand, attention rollout's weights against the model's own attention."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from fdsl.train.analysis import (  # noqa: E402
    SHEET_SIZE,
    _attention_weights,
    _normalise_maps,
    grad_cam,
    per_class_accuracy,
    rollout_matrix,
    where_model_looks,
    write_run_analysis,
)
from fdsl.train.models import build_model  # noqa: E402

torch.set_num_threads(1)
PNG = b"\x89PNG\r\n\x1a\n"


def _prepare(images: torch.Tensor) -> torch.Tensor:
    x = images.float() / 255.0
    return (x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x) - 0.5


def _batches(n: int = 40, classes: int = 3, size: int = 32, batch: int = 16, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, size, size), generator=gen, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    return [(images[i:i + batch], labels[i:i + batch]) for i in range(0, n, batch)]


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny"])
def test_confusion_and_per_class_accuracy_match_a_direct_count(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    classes = ["a", "b", "c"]
    model = build_model(name, len(classes), 32).train()
    batches = _batches()
    result = write_run_analysis(tmp_path, model, batches, classes, prepare=_prepare,
                                device=torch.device("cpu"), model_name=name)
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # Grad-CAM leaves no gradients
    model.eval()
    with torch.no_grad():
        preds = torch.cat([model(_prepare(x)).argmax(1) for x, _ in batches]).numpy()
    labels = torch.cat([y for _, y in batches]).numpy()
    report = json.loads((tmp_path / "confusion.json").read_text())
    matrix = np.array(report["matrix"])
    assert matrix.sum(1).tolist() == [14, 13, 13]  # rows: true classes, 40 images over 3 classes
    expected = np.zeros((3, 3), int)
    np.add.at(expected, (labels, preds), 1)
    assert (matrix == expected).all()
    for i, c in enumerate(classes):
        direct = float((preds[labels == i] == i).mean())
        assert result["per_class_top1"][c] == pytest.approx(direct)
        assert report["per_class_top1"][c] == pytest.approx(direct)
    assert report["top1"] == pytest.approx(float((preds == labels).mean()))
    # the layers the maps come from: 12 blocks of ViT-Tiny; at 32 px ResNet-18's layer2 (4 x 4)
    assert result["where_model_looks"] == ("attention rollout over blocks 0-11" if name.startswith("vit")
                                           else "Grad-CAM on layer2")
    for png in ("confusion.png", "misclassified.png", "attention_maps.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_per_class_accuracy_marks_classes_without_held_out_images() -> None:
    confusion = np.array([[3, 1], [0, 0]])
    assert per_class_accuracy(confusion, ["x", "y"]) == {"x": 0.75, "y": None}


class _Brightness(nn.Module):
    """Class 1's logit is the mean brightness of the image; Grad-CAM must point at bright pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.layer4 = nn.Conv2d(3, 1, 1, bias=False)
        nn.init.ones_(self.layer4.weight)
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[-1.0], [1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer4(x).mean((2, 3)))


def test_grad_cam_points_at_the_evidence() -> None:
    x = torch.zeros(2, 3, 16, 16)
    x[0, :, :4, :4] = 1.0  # bright top-left corner
    x[1, :, 10:, 12:] = 1.0  # bright bottom-right block
    model = _Brightness()
    cam = grad_cam(model, x, model.layer4)
    assert cam.shape == (2, 16, 16) and float(cam.min()) >= 0 and float(cam.max()) == pytest.approx(1)
    assert float(cam[0, :4, :4].min()) == pytest.approx(1) and float(cam[0, 8:, 8:].max()) == 0
    assert float(cam[1, 10:, 12:].min()) == pytest.approx(1) and float(cam[1, :8, :8].max()) == 0


def test_grad_cam_picks_a_stage_wide_enough_on_small_images() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", 3, 16).eval()
    x = torch.randn(2, 3, 16, 16)
    method, maps = where_model_looks(model, x)
    assert method == "Grad-CAM on layer1" and maps.shape == (2, 16, 16)
    assert float(maps.amax((1, 2)).min()) == pytest.approx(1) and float(maps.amin((1, 2)).max()) == 0
    # layer4 is 1 x 1 at 16 px; layer1 (4 x 4) is the deepest stage wide enough: its Grad-CAM
    acts: list[torch.Tensor] = []
    hook = model.layer1.register_forward_hook(lambda _m, _i, o: acts.append(o))
    logits = model(x)
    hook.remove()
    assert acts[0].shape[-2:] == (4, 4)
    (grad,) = torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), acts[0])
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * acts[0]).sum(1)).detach()
    assert torch.allclose(maps, _normalise_maps(cam, (16, 16)), atol=1e-5)
    flat = _normalise_maps(torch.full((1, 2, 2), 3.0) + torch.tensor([[0.0, 1e-9], [0.0, 0.0]]), (4, 4))
    assert torch.equal(flat, torch.zeros(1, 4, 4))  # float noise on a flat map is not drawn


def test_rollout_uses_the_models_own_attention() -> None:
    torch.manual_seed(1)
    model = build_model("vit_tiny", 3, 32).eval()
    attn = model.blocks[0].attn
    x = torch.randn(2, 5, 192)
    weights = _attention_weights(attn, x)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3, 5), atol=1e-5)
    b, n, d = x.shape
    v = attn.qkv(x).reshape(b, n, 3, 3, d // 3).permute(2, 0, 3, 1, 4)[2]
    rebuilt = attn.proj((weights @ v).transpose(1, 2).reshape(b, n, d))
    assert torch.allclose(rebuilt, attn(x), atol=1e-5)  # the hook sees what the forward computes
    method, maps = where_model_looks(model, torch.randn(2, 3, 32, 32))
    assert method == "attention rollout over blocks 0-11" and maps.shape == (2, 32, 32)
    assert float(maps.amin((1, 2)).max()) == 0 and float(maps.amax((1, 2)).min()) == pytest.approx(1)


class _ConvLinear(nn.Module):
    """Identity 1x1 conv ``features`` (2 channels), global average pool, fc = [[2, -1], [-1, 1]]."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(2, 2, 1, bias=False)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            self.fc.weight.copy_(torch.tensor([[2.0, -1.0], [-1.0, 1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def test_grad_cam_of_a_hand_set_network() -> None:
    x = torch.zeros(2, 2, 4, 4)
    x[0, 0] = torch.tensor([[1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 3.0]])
    x[0, 1] = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 4, 0], [0, 0, 0, 1.0]])
    x[1, 1] = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [2, 0, 0, 4.0]])
    # Image 0: pooled (6/16, 6/16), logits (6/16, 0) -> class 0; d logit_0 / d A_k = fc[0, k] / 16, so
    # alpha = (2, -1) / 16 and the map is relu(2 x_0 - x_1) / 16 = relu([[2,0,0,0],[0,3,0,0],
    # [0,0,-4,0],[0,0,0,5]]) / 16, scaled by its maximum 5 / 16.
    # Image 1: logits (-7/16, 7/16) -> class 1; alpha = (-1, 1) / 16: the map is x_1 / 4.
    method, maps = where_model_looks(_ConvLinear(), x)
    assert method == "Grad-CAM on features"
    expected = torch.tensor([[[0.4, 0, 0, 0], [0, 0.6, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]],
                             [[0, 0.25, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0.5, 0, 0, 1]]])
    assert torch.allclose(maps, expected, atol=1e-6)


def test_rollout_through_identity_attention_is_the_identity() -> None:
    eye = torch.eye(5).expand(2, 3, 5, 5)  # batch 2, 3 heads, 5 tokens
    assert torch.equal(rollout_matrix([eye, eye]), torch.eye(5).expand(2, 5, 5))


def test_rollout_of_two_known_blocks_is_their_product() -> None:
    a1 = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    a2 = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # swaps tokens 0 and 2
    # (0.5 a2 + 0.5 I) (0.5 a1 + 0.5 I) = [[.5, 0, .5], [0, 1, 0], [.5, 0, .5]] [[.75, .25, 0],
    # [0, 1, 0], [0, 0, 1]]
    expected = torch.tensor([[0.375, 0.125, 0.5], [0.0, 1.0, 0.0], [0.375, 0.125, 0.5]])
    assert torch.allclose(rollout_matrix([a1.view(1, 1, 3, 3), a2.view(1, 1, 3, 3)])[0], expected)
    # heads are averaged first: heads (a2, I) -> 0.5 (0.5 a2 + 0.5 I) + 0.5 I
    both = torch.stack([a2, torch.eye(3)]).unsqueeze(0)
    assert torch.allclose(rollout_matrix([both])[0], torch.tensor([[0.75, 0.0, 0.25], [0.0, 1.0, 0.0],
                                                                   [0.25, 0.0, 0.75]]))


class _Attention(nn.Module):
    """One head, dim 2: q = (sqrt 2, 0) for every token, k_j = (x_j[feature], 0), so every query
    attends with softmax(x_j[feature]) -- the probabilities whose logs the tokens carry."""

    def __init__(self, feature: int) -> None:
        super().__init__()
        self.num_heads = 1
        self.qkv = nn.Linear(2, 6)
        with torch.no_grad():
            self.qkv.weight.zero_()
            self.qkv.bias.zero_()
            self.qkv.bias[0] = 2 ** 0.5
            self.qkv.weight[2, feature] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Block(nn.Module):
    def __init__(self, feature: int) -> None:
        super().__init__()
        self.attn = _Attention(feature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


class _TwoBlockViT(nn.Module):
    """A class token and a 2 x 2 patch grid whose tokens carry log p1 and log p2."""

    P1 = (0.2, 0.4, 0.2, 0.1, 0.1)
    P2 = (0.2, 0.1, 0.1, 0.2, 0.4)

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_Block(0), _Block(1)])
        self.register_buffer("tokens", torch.tensor([self.P1, self.P2]).log().T.unsqueeze(0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.tokens.expand(images.shape[0], -1, -1)
        for block in self.blocks:
            x = block(x)
        return x[:, 0]


def test_rollout_through_a_hand_set_two_block_transformer() -> None:
    # Each block attends with P_i = 1 p_i^T (every row p_i), and P2 P1 = P1, so the rollout is
    # (0.5 P2 + 0.5 I)(0.5 P1 + 0.5 I) = 0.5 P1 + 0.25 P2 + 0.25 I. The class token's row over the
    # patches: 0.5 (.4, .2, .1, .1) + 0.25 (.1, .1, .2, .4) = (.225, .125, .1, .15), scaled to [0, 1]
    # with min .1 and span .125.
    method, maps = where_model_looks(_TwoBlockViT(), torch.zeros(1, 3, 2, 2))
    assert method == "attention rollout over blocks 0-1"
    assert torch.allclose(maps[0], torch.tensor([[1.0, 0.2], [0.0, 0.4]]), atol=1e-6)


def test_contact_sheet_keeps_the_most_confident_mistakes(tmp_path: Path) -> None:
    class Always0(nn.Module):
        """Predicts class 0 with a confidence that grows with the first pixel."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            first = x[:, 0, 0, 0]
            return torch.stack([(first + 1) * 10, torch.zeros_like(first)], 1)

    images = torch.zeros(40, 1, 8, 8, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(40, dtype=torch.uint8) * 5 + 10
    labels = torch.ones(40, dtype=torch.int64)  # every prediction (class 0) is wrong
    batches = [(images[i:i + 8], labels[i:i + 8]) for i in range(0, 40, 8)]
    write_run_analysis(tmp_path, Always0(), batches, ["zero", "one"], prepare=_prepare,
                       device=torch.device("cpu"), model_name="toy")
    report = json.loads((tmp_path / "confusion.json").read_text())
    assert report["matrix"] == [[0, 0], [40, 0]] and report["per_class_top1"] == {"zero": None, "one": 0.0}
    assert (tmp_path / "misclassified.png").read_bytes()[:8] == PNG
    # the sheet holds the SHEET_SIZE brightest (most confident) of the 40 mistakes
    from fdsl.train.analysis import _Collector

    collector = _Collector(2)
    for x, y in batches:
        collector.add(x, y, torch.softmax(Always0()(_prepare(x)), 1))
    firsts = sorted(int(w[1][0, 0, 0]) for w in collector.wrong)
    assert firsts == [int(v) for v in images[-SHEET_SIZE:, 0, 0, 0]]
