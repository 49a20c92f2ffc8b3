"""The LICO wrapper around a tiny hand-made backbone: composition, variants, gradients, errors."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xairepro.errors import UsageError
from xairepro.lico import LICO, LicoConfig, LicoObjective, image_tokens, manifold_matching_loss, ot_loss
from xairepro.lico.text_encoders import BertTextEncoder, minilm_path

NAMES = ["cat", "dog", "ship"]


pytestmark = pytest.mark.usefixtures("one_thread_module")


class TinyNet(nn.Module):
    """conv(stride 2) -> BN -> ReLU: 6 maps of 4 x 4 on 8 x 8 images; head: mean pool + linear."""

    def __init__(self, num_classes: int = 3, flat_features: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.final = nn.Sequential(nn.BatchNorm2d(6), nn.ReLU())
        self.fc = nn.Linear(6, num_classes)
        self.flat_features = flat_features

    @property
    def cam_layer(self) -> nn.Module:
        return self.final

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.final(self.conv(x))
        return f.mean((2, 3)) if self.flat_features else f

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f.mean((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@pytest.fixture(scope="module")
def tiny_bert():
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=40))
    return BertTextEncoder("tiny-bert", model, tokenizer, bos_id=tokenizer.cls_token_id,
                           eos_id=tokenizer.sep_token_id, pad_id=tokenizer.pad_token_id, embed_dim=16, width=16,
                           max_length=40, source="test")


def make(tiny_bert, seed: int = 0, **cfg) -> LICO:
    torch.manual_seed(seed)
    cfg.setdefault("n_ctx", 4)
    return LICO(TinyNet(), NAMES, LicoConfig(**cfg), input_shape=(3, 8, 8), text_encoder=tiny_bert, seed=seed)


def batch(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=gen), torch.tensor([0, 1, 2, 0, 1, 1][:n])


def test_image_tokens_are_normalised_channels() -> None:
    feats = torch.rand(2, 5, 3, 4)
    tokens = image_tokens(feats)
    assert tokens.shape == (2, 5, 12)
    manual = feats.reshape(2, 5, 12) / feats.reshape(2, 5, 12).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(tokens, manual)
    with pytest.raises(UsageError, match=r"\(B, C, H, W\)"):
        image_tokens(torch.rand(2, 5))


def test_inference_is_the_plain_backbone(tiny_bert) -> None:
    model = make(tiny_bert).eval()
    x, _ = batch()
    assert model.num_image_tokens == 6 and model.token_dim == 16
    assert torch.equal(model(x), model.backbone(x))
    keys = set(model.state_dict())
    assert {k.split(".")[0] for k in keys} == {"backbone", "alignment"}
    assert "alignment.prompt.ctx" in keys and not any("encoder" in k or "embeddings" in k for k in keys)
    assert model.cam_layer is model.backbone.final
    assert set(LICO.backbone_state_dict(model.state_dict())) == set(model.backbone.state_dict())


def test_loss_is_ce_plus_weighted_terms(tiny_bert) -> None:
    model = make(tiny_bert)
    x, y = batch()
    out = model(x, y)
    feats = model.backbone.forward_features(x)
    tokens = image_tokens(feats)
    text = F.normalize(model.alignment.prompt(), dim=-1)[y]                      # (B, M, d') gathered by label
    tau = math.log(1 / 0.07)
    mm = manifold_matching_loss(tokens, text, tau)
    ot = ot_loss(tokens, text, 0.1, 100)
    ce = F.cross_entropy(model.backbone(x), y)
    torch.testing.assert_close(out.terms["mm"], mm.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.terms["ot"], ot.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.terms["ce"], ce.detach())
    torch.testing.assert_close(out.loss, ce + 10 * mm + ot, atol=1e-5, rtol=1e-6)
    assert out.terms["tau"].item() == pytest.approx(tau)
    assert out.logits.shape == (6, 3)


@pytest.mark.parametrize("losses,keys", [("ce", {"ce"}), ("mm", {"ce", "mm", "tau"}), ("ot", {"ce", "ot"}),
                                         ("mm+ot", {"ce", "mm", "tau", "ot"})])
def test_ablations(tiny_bert, losses: str, keys: set[str]) -> None:
    model = make(tiny_bert, losses=losses)
    x, y = batch()
    out = model(x, y)
    assert set(out.terms) == keys
    if losses == "ce":
        assert model.alignment.prompt is None
        assert torch.equal(out.loss, F.cross_entropy(model.backbone(x), y))
    full = make(tiny_bert, losses="mm+ot")(x, y)
    expected = full.terms["ce"] + 10 * full.terms.get("mm", 0) * ("mm" in keys) + full.terms["ot"] * ("ot" in keys)
    torch.testing.assert_close(out.loss.detach(), expected, atol=1e-5, rtol=1e-6)


def test_temperature_variants(tiny_bert) -> None:
    x, y = batch()
    fixed = make(tiny_bert, temperature="fixed")
    assert "tau" not in dict(fixed.named_parameters()) and fixed.alignment.temperature().item() == 1.0
    out = fixed(x, y)
    tokens = image_tokens(fixed.backbone.forward_features(x))
    text = F.normalize(fixed.alignment.prompt(), dim=-1)[y]
    torch.testing.assert_close(out.terms["mm"], manifold_matching_loss(tokens, text, 1.0).detach(),
                               atol=1e-6, rtol=1e-6)

    learnable = make(tiny_bert, temperature="learnable")
    assert learnable.alignment.tau.requires_grad and learnable.alignment.tau.item() == pytest.approx(2.659, abs=1e-3)
    learnable(x, y).loss.backward()
    assert learnable.alignment.tau.grad is not None and learnable.alignment.tau.grad.abs() > 0

    clamped = make(tiny_bert, temperature="learnable-clamped", tau_max=2.0)
    assert clamped.alignment.temperature().item() == 2.0
    clamped(x, y).loss.backward()
    assert clamped.alignment.tau.grad.item() == 0.0  # at the bound the clamp passes no gradient upwards


def test_mm_sign_official(tiny_bert) -> None:
    model = make(tiny_bert, mm_sign="official")
    x, y = batch()
    out = model(x, y)
    tokens = image_tokens(model.backbone.forward_features(x))
    text = F.normalize(model.alignment.prompt(), dim=-1)[y]
    official = manifold_matching_loss(tokens, text, model.alignment.tau, sign="official")
    paper = manifold_matching_loss(tokens, text, model.alignment.tau, sign="paper")
    torch.testing.assert_close(out.terms["mm"], official.detach(), atol=1e-6, rtol=1e-6)
    assert abs(official.item() - paper.item()) > 1e-4


def _backbone_grads(model: LICO, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model(x, y).loss.backward()
    return [p.grad.clone() for p in model.backbone.parameters()]


def test_ot_grad_none_passes_no_gradient(tiny_bert) -> None:
    x, y = batch()
    ce_only = _backbone_grads(make(tiny_bert, losses="ce"), x, y)
    no_grad = make(tiny_bert, losses="ot", ot_grad="none")
    with_none = _backbone_grads(no_grad, x, y)
    with_cost = _backbone_grads(make(tiny_bert, losses="ot"), x, y)
    for a, b in zip(ce_only, with_none):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert no_grad.alignment.prompt.ctx.grad is None
    assert any((a - b).abs().max() > 1e-7 for a, b in zip(ce_only, with_cost))


def test_mm_term_matches_cdist_on_gathered_text(tiny_bert) -> None:
    """The class-level distance shortcut equals distances between the gathered per-sample text tokens."""
    model = make(tiny_bert, losses="mm", prompt_mode="official")
    x, y = batch()
    out = model(x, y)
    tokens = image_tokens(model.backbone.forward_features(x))
    text = F.normalize(model.alignment.prompt(), dim=-1)[y]
    assert text.shape == (6, 1, 16)
    ref = manifold_matching_loss(tokens, text, model.alignment.tau)
    torch.testing.assert_close(out.terms["mm"], ref.detach(), atol=1e-6, rtol=1e-6)


def test_frozen_minilm_gets_no_gradient_context_and_mapping_do() -> None:
    from xairepro.lico import load_text_encoder

    minilm = load_text_encoder("minilm")
    torch.manual_seed(0)
    model = LICO(TinyNet(), NAMES, LicoConfig(prompt_mode="paper"), input_shape=(3, 8, 8))
    assert model.alignment.prompt.encoder is minilm
    x, y = batch()
    model(x, y).loss.backward()
    assert all(p.grad is None for p in minilm.parameters())
    assert model.alignment.prompt.ctx.grad is not None and model.alignment.prompt.ctx.grad.abs().sum() > 0
    for p in model.alignment.prompt.h_psi.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert model.config["text_encoder"]["name"] == "minilm"
    assert model.config["lico"]["prompt_mode"] == "paper"


def test_deepcopy_for_ema_shares_encoder(tiny_bert) -> None:
    model = make(tiny_bert)
    clone = copy.deepcopy(model)
    assert clone.alignment.prompt.encoder is model.alignment.prompt.encoder
    x, y = batch()
    torch.testing.assert_close(clone(x, y).loss, model(x, y).loss)


def test_objective_metrics_and_wrong_model(tiny_bert) -> None:
    model = make(tiny_bert)
    x, y = batch()
    loss, metrics = LicoObjective().loss(model, (x, y))
    assert set(metrics) == {"accuracy", "ce", "mm", "tau", "ot"}
    assert all(v.dim() == 0 and not v.requires_grad for v in metrics.values())
    assert loss.requires_grad
    with pytest.raises(UsageError, match="needs a text branch for TinyNet"):
        LicoObjective().loss(TinyNet(), (x, y))
    with pytest.raises(UsageError, match="labelled"):
        LicoObjective().loss(model, (x,))
    with pytest.raises(UsageError, match="its own text branch"):
        LicoObjective(model.alignment).loss(model, (x, y))


class NoCamNet(TinyNet):
    """The same network without ``cam_layer``: the objective calls forward_features/forward_head."""

    @property
    def cam_layer(self) -> nn.Module:
        raise NotImplementedError


@pytest.mark.parametrize("net", [TinyNet, NoCamNet])
def test_objective_on_plain_classifier_equals_wrapper(tiny_bert, net) -> None:
    wrapped = make(tiny_bert, seed=4)
    torch.manual_seed(4)
    plain = net()
    objective = LicoObjective.for_model(plain, NAMES, LicoConfig(n_ctx=4), input_shape=(3, 8, 8),
                                        text_encoder=tiny_bert, seed=4)
    assert objective.modules() == [objective.alignment]
    x, y = batch()
    loss_w, metrics_w = LicoObjective().loss(wrapped, (x, y))
    loss_p, metrics_p = objective.loss(plain, (x, y))
    torch.testing.assert_close(loss_p, loss_w, atol=0, rtol=0)
    loss_w.backward()
    loss_p.backward()
    for a, b in zip(wrapped.backbone.parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=0, rtol=0)
    torch.testing.assert_close(wrapped.alignment.prompt.ctx.grad, objective.alignment.prompt.ctx.grad, atol=0, rtol=0)
    assert set(metrics_p) == set(metrics_w)
    assert all(not h for m in plain.modules() for h in (m._forward_hooks,))  # the hook is removed
    with pytest.raises(UsageError, match="2 class names for a model with 3 classes"):
        LicoObjective.for_model(plain, ["cat", "dog"], input_shape=(3, 8, 8), text_encoder=tiny_bert)


def test_bad_input(tiny_bert) -> None:
    with pytest.raises(UsageError, match="2 class names for a model with 3 classes"):
        LICO(TinyNet(), ["cat", "dog"], input_shape=(3, 8, 8), text_encoder=tiny_bert)
    with pytest.raises(UsageError, match=r"\(B, C, H, W\)"):
        LICO(TinyNet(flat_features=True), NAMES, input_shape=(3, 8, 8), text_encoder=tiny_bert)
    with pytest.raises(UsageError, match="forward_features"):
        LICO(nn.Linear(3, 3), NAMES, input_shape=(3, 8, 8), text_encoder=tiny_bert)
    with pytest.raises(UsageError, match="input_shape"):
        LICO(TinyNet(), NAMES, text_encoder=tiny_bert)
    with pytest.raises(UsageError, match="lico.losses"):
        LICO(TinyNet(), NAMES, LicoConfig(losses="all"), input_shape=(3, 8, 8), text_encoder=tiny_bert)
    model = make(tiny_bert)
    with pytest.raises(UsageError, match="built for tokens of 16"):
        model(torch.rand(2, 3, 16, 16), torch.tensor([0, 1]))
    flat = make(tiny_bert)
    flat.backbone.flat_features = True
    with pytest.raises(UsageError, match=r"\(B, C, H, W\)"):
        flat(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))
