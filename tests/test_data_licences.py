"""Every data set the tool bundles, generates or can fetch carries a licence and a citation, shown by
``xairepro list --long`` and carried in a run's provenance."""

from __future__ import annotations

import pytest

from xairepro.cli.catalog import load_catalog
from xairepro.data import data_terms, list_datasets
from xairepro.data.fetch import fetchable
from xairepro.data.licences import DATA_TERMS
from xairepro.runner.provenance import dataset_provenance


def test_every_registered_and_fetchable_set_has_terms() -> None:
    names = {d.name for d in list_datasets()} | set(fetchable())
    missing = sorted(n for n in names if data_terms(n) is None)
    assert not missing, f"no licence/citation recorded for {missing} (xairepro/data/licences.py)"
    assert set(DATA_TERMS) == names, f"terms of unknown sets: {sorted(set(DATA_TERMS) - names)}"
    for name in names:
        terms = data_terms(name)
        assert len(terms.licence) > 5 and len(terms.citation) > 20, name


def test_bundled_sets_name_their_origin() -> None:
    for info in list_datasets():
        if info.bundled:
            assert data_terms(info.name).licence.startswith(("MIT", "CC BY")), info.name


def test_list_long_shows_licence_and_citation(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from xairepro.cli import main

    monkeypatch.setenv("COLUMNS", "1000")
    assert main(["list", "datasets", "--long"]) == 0
    out = capsys.readouterr().out
    for name in ("fashion-mnist", "ecg5000", "digits", "mnist-10k"):
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert data_terms(name).licence in line and data_terms(name).citation in line, name
    assert main(["list", "datasets"]) == 0  # the compact listing leaves them out
    assert "Fashion-MNIST: a Novel Image Dataset" not in capsys.readouterr().out


def test_catalog_rows_carry_the_terms() -> None:
    section = load_catalog()["datasets"]
    assert {"licence", "cite"} <= set(section["long_only"])
    i, j = section["columns"].index("licence"), section["columns"].index("cite")
    for row in section["rows"]:
        assert (row[i], row[j]) == (DATA_TERMS[row[0]].licence, DATA_TERMS[row[0]].citation), row[0]


def test_provenance_carries_the_terms() -> None:
    out = dataset_provenance(["digits", "fashion-mnist", "not-a-set"], None)
    for name in ("digits", "fashion-mnist"):
        assert out[name]["licence"] == DATA_TERMS[name].licence
        assert out[name]["citation"] == DATA_TERMS[name].citation
    assert out["not-a-set"].get("licence") is None
