"""LICO text side: frozen encoders (minilm, CLIP), prompt learner modes, caching, class-name checks."""

from __future__ import annotations

import copy
import string
from pathlib import Path

import pytest
import torch

from xairepro.errors import OfflineError, UsageError
from xairepro.lico import PromptLearner, load_text_encoder
from xairepro.lico.text_encoders import BertTextEncoder, ClipTextEncoder, minilm_path

NAMES = ["airplane", "sea_lion", "cat"]


pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder("minilm")


@pytest.fixture(scope="module")
def tiny_bert():
    """A 1-layer BERT with random weights and minilm's tokenizer: fast stand-in for gradient tests."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=40))
    return BertTextEncoder("tiny-bert", model, tokenizer, bos_id=tokenizer.cls_token_id,
                           eos_id=tokenizer.sep_token_id, pad_id=tokenizer.pad_token_id, embed_dim=16, width=16,
                           max_length=40, source="test")


def _tiny_clip_folder(folder: Path) -> Path:
    """Save a tiny random CLIP text tower and a character-level CLIP tokenizer to ``folder``."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    vocab = {c: i for i, c in enumerate(string.ascii_lowercase)}
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(string.ascii_lowercase)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=40, projection_dim=8,
                         bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                         pad_token_id=vocab["<|endoftext|>"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        CLIPTextModelWithProjection(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_minilm_is_frozen_offline_bert(minilm) -> None:
    assert minilm.name == "minilm" and minilm.width == 384 and minilm.embed_dim == 384
    assert all(not p.requires_grad for p in minilm.parameters())
    minilm.train()
    assert not minilm.training and not any(m.training for m in minilm.modules())
    assert load_text_encoder("minilm") is minilm  # loaded once per process
    assert minilm.describe()["name"] == "minilm"


def test_bert_encoder_matches_hf_forward(minilm) -> None:
    tok = minilm.tokenizer(["a photo of a cat", "ship"], padding=True, return_tensors="pt")
    lengths = tok["attention_mask"].sum(1)
    with torch.no_grad():
        ours = minilm(minilm.embed_ids(tok["input_ids"].flatten()).view(2, -1, 384), lengths)
        ref = minilm.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(ours[i, :n], ref[i, :n], atol=1e-5, rtol=1e-5)


def test_clip_loads_from_local_folder_and_matches_hf(tmp_path: Path) -> None:
    from transformers import CLIPTextModelWithProjection

    folder = _tiny_clip_folder(tmp_path / "clip")
    enc = load_text_encoder("clip", clip_path=str(folder))
    assert isinstance(enc, ClipTextEncoder) and enc.width == 8 and enc.embed_dim == 16
    assert all(not p.requires_grad for p in enc.parameters())
    ids = [enc.bos_id, *enc.token_ids("cat"), enc.eos_id, enc.pad_id, enc.pad_id]
    ids = torch.tensor([ids, [enc.bos_id, *enc.token_ids("ox"), enc.eos_id, enc.pad_id, enc.pad_id, enc.pad_id]])
    lengths = torch.tensor([5, 4])
    ref_model = CLIPTextModelWithProjection.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        ours = enc(enc.embed_ids(ids.flatten()).view(2, 7, 16), lengths)
        ref = ref_model(input_ids=ids)
    hidden = ref_model.text_projection(ref.last_hidden_state)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(ours[i, :n], hidden[i, :n], atol=1e-5, rtol=1e-5)
    # the EOT output is CLIP's pooled text embedding
    torch.testing.assert_close(ours[torch.arange(2), lengths - 1], ref.text_embeds, atol=1e-5, rtol=1e-5)


def test_missing_clip_weights_give_offline_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    attempts = []

    class Recorder(socket.socket):
        def connect(self, address):  # type: ignore[override]
            attempts.append(address)
            raise OSError("no network in this test")

    monkeypatch.setattr(socket, "socket", Recorder)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: attempts.append(a) or Recorder().connect(a))
    with pytest.raises(OfflineError, match=r"not a local folder.*clip_path=FOLDER"):
        load_text_encoder("clip", clip_path=str(tmp_path / "nowhere"))
    with pytest.raises(OfflineError, match="never downloads"):
        load_text_encoder("clip", clip_path="openai/clip-vit-base-patch32-not-cached")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OfflineError, match="empty"):
        load_text_encoder("clip", clip_path=str(tmp_path / "empty"))
    assert attempts == []  # local files only: nothing tried the network
    with pytest.raises(UsageError, match="minilm, clip"):
        load_text_encoder("gpt")


def test_paper_prompts_shapes_and_gradients(minilm) -> None:
    learner = PromptLearner(minilm, NAMES, token_dim=64, mode="paper", seed=0)
    assert learner.ctx.shape == (12, 384) and learner.num_text_tokens == 13
    assert 0.015 < learner.ctx.std().item() < 0.025
    out = learner()
    assert out.shape == (3, 13, 64)
    out.square().sum().backward()
    assert learner.ctx.grad is not None and learner.ctx.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.h_psi.parameters())
    assert all(p.grad is None for p in minilm.parameters())
    # the frozen encoder is not part of the module tree or its state
    assert not any(k.startswith("encoder") or "model." in k for k in learner.state_dict())
    assert {k for k, _ in learner.named_parameters()} == {"ctx", "h_psi.0.weight", "h_psi.0.bias",
                                                          "h_psi.2.weight", "h_psi.2.bias"}


def test_paper_mode_keeps_context_outputs_and_name_mean(tiny_bert) -> None:
    learner = PromptLearner(tiny_bert, NAMES, token_dim=5, mode="paper", n_ctx=4, seed=1)
    g = learner.encode()
    assert g.shape == (3, 5, 16)
    for k, name in enumerate(NAMES):
        ids = tiny_bert.token_ids(name.replace("_", " "))
        seq = torch.cat([tiny_bert.embed_ids([tiny_bert.bos_id]), learner.ctx.detach(),
                         tiny_bert.embed_ids(ids), tiny_bert.embed_ids([tiny_bert.eos_id])])
        with torch.no_grad():
            out = tiny_bert(seq.unsqueeze(0), torch.tensor([seq.shape[0]]))[0]
        torch.testing.assert_close(g[k, :4], out[1:5].detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(g[k, 4], out[5:5 + len(ids)].mean(0).detach(), atol=1e-5, rtol=1e-5)
    assert len(tiny_bert.token_ids("sea lion")) == 2  # a name of two word pieces


def test_official_mode_per_class_context_and_eot(tiny_bert) -> None:
    learner = PromptLearner(tiny_bert, NAMES, token_dim=5, mode="official", n_ctx=3, seed=2)
    assert learner.ctx.shape == (3, 3, 16) and learner.num_text_tokens == 1
    g = learner.encode()
    assert g.shape == (3, 1, 16)
    for k, name in enumerate(NAMES):
        ids = tiny_bert.token_ids(name.replace("_", " "))
        seq = torch.cat([tiny_bert.embed_ids([tiny_bert.bos_id]), learner.ctx[k].detach(),
                         tiny_bert.embed_ids(ids), tiny_bert.embed_ids([tiny_bert.eos_id])])
        with torch.no_grad():
            out = tiny_bert(seq.unsqueeze(0), torch.tensor([seq.shape[0]]))[0]
        torch.testing.assert_close(g[k, 0], out[-1], atol=1e-5, rtol=1e-5)  # the [SEP] output
    # per-class contexts: class 0's output depends only on its own context
    learner.ctx.grad = None
    learner()[0].sum().backward()
    assert learner.ctx.grad[0].abs().sum() > 0 and learner.ctx.grad[1:].abs().sum() == 0


def test_label_order_is_kept(tiny_bert) -> None:
    a = PromptLearner(tiny_bert, ["cat", "dog", "ship"], token_dim=4, n_ctx=2, seed=3)
    b = PromptLearner(tiny_bert, ["ship", "cat", "dog"], token_dim=4, n_ctx=2, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(a()[[2, 0, 1]], b(), atol=1e-6, rtol=1e-6)


def test_seeded_init_leaves_global_rng(tiny_bert) -> None:
    state = torch.random.get_rng_state()
    a = PromptLearner(tiny_bert, NAMES, token_dim=4, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = PromptLearner(tiny_bert, NAMES, token_dim=4, seed=5)
    c = PromptLearner(tiny_bert, NAMES, token_dim=4, seed=6)
    assert torch.equal(a.ctx, b.ctx) and not torch.equal(a.ctx, c.ctx)
    assert torch.equal(a.h_psi[2].weight, b.h_psi[2].weight)


def test_no_grad_outputs_cached_until_context_changes(tiny_bert, monkeypatch: pytest.MonkeyPatch) -> None:
    learner = PromptLearner(tiny_bert, NAMES, token_dim=4, n_ctx=2, seed=7)
    calls = []
    original = learner._run_encoder
    monkeypatch.setattr(learner, "_run_encoder", lambda: calls.append(1) or original())
    with torch.no_grad():
        first = learner()
        second = learner()
        assert len(calls) == 1 and torch.equal(first, second)
        learner.ctx.add_(0.1)
        third = learner()
    assert len(calls) == 2 and not torch.equal(first, third)
    learner().sum()  # with gradient: always recomputed
    assert len(calls) == 3


def test_deepcopy_shares_the_frozen_encoder(tiny_bert) -> None:
    learner = PromptLearner(tiny_bert, NAMES, token_dim=4, seed=8)
    clone = copy.deepcopy(learner)
    assert clone.encoder is learner.encoder and clone.ctx is not learner.ctx


@pytest.mark.parametrize("names,match", [
    (["cat", "cat"], "twice"),
    (["cat", ""], "non-empty"),
    ("cat", "list of strings"),
])
def test_bad_class_names(tiny_bert, names, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        PromptLearner(tiny_bert, names, token_dim=4)


def test_prompt_too_long_and_bad_mode(tiny_bert) -> None:
    with pytest.raises(UsageError, match="exceed"):
        PromptLearner(tiny_bert, NAMES, token_dim=4, n_ctx=38)
    with pytest.raises(UsageError, match="paper, official"):
        PromptLearner(tiny_bert, NAMES, token_dim=4, mode="coop")
