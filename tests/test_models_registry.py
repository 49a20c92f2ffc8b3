"""Model registry: names, options, configs that rebuild a model, seeds, errors in the user's terms."""

from __future__ import annotations

import json

import pytest
import torch

from xairepro.errors import UsageError
from xairepro.models import ModelInfo, build_model, list_models, model_from_config, model_info

# name -> options and a batch of its input shape, small enough for CPU tests
CASES: dict[str, tuple[dict, tuple[int, ...]]] = {
    "wrn-10-1": ({"num_classes": 5}, (2, 3, 16, 16)),
    "small-cnn": ({"num_classes": 4, "width": 4}, (2, 3, 12, 12)),
    "mnist-ae": ({"latent_dim": 3}, (2, 1, 28, 28)),
    "mnist-classifier": ({"latent_dim": 4, "num_classes": 10}, (2, 1, 28, 28)),
    "resnet18": ({"cifar_stem": True, "num_classes": 3}, (1, 3, 8, 8)),
    "burgess-vae": ({"image_size": 32, "in_channels": 3, "latent_dim": 3}, (2, 3, 32, 32)),
    "lstm-ae": ({"seq_len": 10, "embedding_dim": 4}, (2, 10, 1)),
    "simclr": ({"projection_hidden": 16, "projection_dim": 8}, (1, 3, 8, 8)),
}


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    out = model(x)
    return list(out) if isinstance(out, tuple) else [out]


def test_list_models_describes_every_model() -> None:
    infos = list_models()
    assert all(isinstance(i, ModelInfo) for i in infos)
    names = [i.name for i in infos]
    assert names == sorted(names, key=str.lower)
    assert set(names) == {"wrn-D-K", "resnet18", "resnet50", "small-cnn", "mnist-ae", "mnist-classifier",
                          "burgess-vae", "lstm-ae", "simclr"}
    for info in infos:
        assert info.kind in ("classifier", "autoencoder", "vae", "contrastive")
        assert info.description
        assert model_info(info.example) == info  # the example name is buildable and maps back


def test_every_listed_model_builds_from_its_example_name_on_meta() -> None:
    for info in list_models():
        with torch.device("meta"):
            model = build_model(info.example)
        assert model.config["name"] == info.example
        assert set(model.config) == {"name", *info.options}


def test_wrn_pattern_parses_any_depth_and_width() -> None:
    with torch.device("meta"):
        model = build_model("WRN-16-3")
    assert (model.depth, model.widen_factor) == (16, 3)
    assert model.config["name"] == "wrn-16-3"
    assert "depth" not in model.config
    assert model_info("wrn-40-4").name == "wrn-D-K"


@pytest.mark.parametrize("bad, suggestion", [("wrn28-2", "wrn-28-2"), ("mnist_ae", "mnist-ae"),
                                             ("small_cnn", "small-cnn")])
def test_unknown_name_suggests_the_closest_and_lists_valid(bad: str, suggestion: str) -> None:
    with pytest.raises(UsageError) as info:
        build_model(bad)
    message = str(info.value)
    assert f"unknown model {bad!r}" in message
    assert f"did you mean {suggestion!r}" in message
    assert "wrn-D-K" in message and "mnist-ae" in message
    assert "\n" not in message


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_empty_or_non_string_name_is_a_usage_error(bad: object) -> None:
    with pytest.raises(UsageError, match="model name"):
        build_model(bad)  # type: ignore[arg-type]


def test_unknown_option_names_the_option_and_suggests() -> None:
    with pytest.raises(UsageError, match=r"no option 'num_clases' \(did you mean 'num_classes'\?\)"):
        build_model("small-cnn", num_clases=3)
    with pytest.raises(UsageError, match="depth is set by the name"):
        build_model("wrn-28-2", depth=16)


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_rebuilds_identical_model(name: str) -> None:
    options, shape = CASES[name]
    original = build_model(name, seed=1, **options).eval()
    config = json.loads(json.dumps(original.config))  # plain JSON types survive a checkpoint
    assert config == original.config
    rebuilt = model_from_config(config, seed=2).eval()
    assert rebuilt.config == original.config
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    before = [o.clone() for o in _outputs(rebuilt, x)]
    rebuilt.load_state_dict(original.state_dict(), strict=True)
    with torch.no_grad():
        for a, b, c in zip(_outputs(original, x), _outputs(rebuilt, x), before):
            assert torch.equal(a, b)
            assert not torch.equal(a, c)  # the seed-2 weights differed before loading


def test_config_records_normalisation_as_plain_lists() -> None:
    model = build_model("small-cnn", mean=(0.5, 0.4, 0.3), std=torch.tensor([0.2, 0.2, 0.2]))
    assert model.config["mean"] == [0.5, 0.4, 0.3]
    assert model.config["std"] == pytest.approx([0.2, 0.2, 0.2])
    assert "normalize.mean" not in model.state_dict()  # the config, not the weights, carries it


@pytest.mark.parametrize("name, options, message", [
    ("resnet18", {"cifar_stem": "false"}, "resnet18: cifar_stem must be true or false, got 'false'"),
    ("wrn-10-1", {"conv_bias": 1}, "conv_bias must be true or false"),
    ("small-cnn", {"num_classes": 0}, "small-cnn: num_classes must be a positive integer, got 0"),
    ("mnist-ae", {"latent_dim": 2.5}, "latent_dim must be a positive integer"),
    ("lstm-ae", {"seq_len": -1}, "seq_len must be a positive integer"),
    ("small-cnn", {"mean": [0.5, 0.5]}, "mean has 2 values but the model takes 3 channels"),
])
def test_bad_option_values_are_usage_errors(name: str, options: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_model(name, **options)


def test_model_from_config_needs_a_name() -> None:
    with pytest.raises(UsageError, match="needs a 'name'"):
        model_from_config({"num_classes": 10})
    with pytest.raises(UsageError, match="must be a mapping"):
        model_from_config(42)  # type: ignore[arg-type]


def test_seed_gives_same_weights_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a = build_model("wrn-10-1", seed=7).state_dict()
    b = build_model("wrn-10-1", seed=7).state_dict()
    c = build_model("wrn-10-1", seed=8).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_cli_maps_model_errors_to_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from xairepro.cli import app, main

    @app.command("test-build-model")
    def _cmd(name: str) -> None:
        build_model(name).check_input(torch.rand(1, 1, 8, 8))

    try:
        assert main(["test-build-model", "wrn28-2"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("xairepro: error: unknown model 'wrn28-2'; did you mean 'wrn-28-2'?")
        assert err.count("\n") == 1
        assert main(["test-build-model", "wrn-28-2"]) == 2
        err = capsys.readouterr().err
        assert err == "xairepro: error: wrn-28-2 expects 3-channel images, got 1 channel\n"
    finally:
        app.registered_commands[:] = [c for c in app.registered_commands if c.name != "test-build-model"]
