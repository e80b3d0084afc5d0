"""Model families: every module of ``sentiflow.families`` is found, and each entry round-trips its models."""

from __future__ import annotations

import pytest

from sentiflow.families.catalogue import ModelFamily, UnknownFamilyError, families, family
from sentiflow.modeling.pyfunc import load_classifier, pip_requirements, save_classifier
from sentiflow.names import FAMILY_TFIDF, FAMILY_TRANSFORMER
from sentiflow.train.cli import build_parser


def test_both_shipped_families_are_found_with_distinct_names_and_task_ids():
    found = families()
    assert set(found) == {FAMILY_TFIDF, FAMILY_TRANSFORMER}
    assert all(isinstance(entry, ModelFamily) for entry in found.values())
    assert len({entry.task_id for entry in found.values()}) == len(found)
    assert [name for name, entry in found.items() if entry.gpu] == [FAMILY_TRANSFORMER]


def test_an_unknown_family_is_an_error_naming_the_known_ones():
    with pytest.raises(UnknownFamilyError, match="known: tfidf-logreg, transformer"):
        family("xgboost")


def test_the_cli_offers_every_family_and_every_family_parameter():
    parser = build_parser()
    family_action = next(a for a in parser._actions if a.dest == "family")
    assert sorted(family_action.choices or []) == sorted(families())
    dests = {a.dest for a in parser._actions}
    for entry in families().values():
        assert {f"param_{name}" for name in entry.params.model_fields} <= dests


def test_a_saved_tfidf_model_loads_back_through_its_family(tmp_path):
    from sentiflow.families.tfidf.model import TfidfClassifier

    texts = ["good great fine", "bad awful poor", "great good", "awful bad"] * 3
    labels = [1, 0, 1, 0] * 3
    classifier = TfidfClassifier.build(["negative", "positive"], max_features=100).fit(texts, labels)
    loaded = load_classifier(save_classifier(classifier, tmp_path / "classifier"))
    assert isinstance(loaded, TfidfClassifier)
    assert [p.label for p in loaded.predict(["great", "awful"])] == ["positive", "negative"]
    assert "scikit-learn" in pip_requirements(FAMILY_TFIDF)


def test_a_descriptor_naming_an_unknown_family_is_refused(tmp_path):
    (tmp_path / "classifier.json").write_text('{"family": "nope", "label_names": ["a", "b"]}')
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        load_classifier(tmp_path)


def test_every_family_has_form_fields_its_switch_among_them_and_params_from_them():
    for entry in families().values():
        fields = {name for form in entry.form for name in form.model_fields}
        assert entry.switch in fields, entry.name
        assert entry.params_from_form is not None
        params = entry.params_from_form([form() for form in entry.form], 7)
        assert isinstance(params, entry.params), entry.name
    assert family(FAMILY_TFIDF).params_from_form([family(FAMILY_TFIDF).form[0]()], 7).seed == 7  # type: ignore[attr-defined,misc]
