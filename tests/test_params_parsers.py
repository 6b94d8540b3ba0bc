"""The run parameters' parsers, each beside the data it parses, and their errors.

``synth://`` URIs (``roadvision.data.synth.uri``), target regions (``roadvision.data.weights``)
and held-out cities (``roadvision.data.split``); errors name the pipeline parameter, as the
KFP UI and ``--set`` users know it.
"""

from __future__ import annotations

import pytest

from roadvision.components.run_params import RunParams
from roadvision.data.split import parse_holdout_cities
from roadvision.data.synth import parse_synth_uri
from roadvision.data.weights import parse_target_regions
from roadvision.errors import UserError


def test_synth_uri_gives_generate_arguments():
    assert parse_synth_uri("synth://roadwork?n=48&size=tiny&seed=3") == (
        "roadwork", {"n": 48, "size": "tiny", "seed": 3})
    assert parse_synth_uri("synth://lanes?size=100x70&num_classes=12") == (
        "lanes", {"n": 200, "size": (100, 70), "seed": 0, "num_classes": 12})
    assert parse_synth_uri("synth://lanes") == ("lanes", {"n": 200, "size": "default",
                                                          "seed": 0})


@pytest.mark.parametrize("uri,message", [
    ("synth://potholes?n=10", "synth:// needs a task"),
    ("synth://roadwork?preset=tiny", r"unknown synth:// option\(s\) \['preset'\]"),
    ("synth://roadwork?n=many", "n='many' is not an integer"),
    ("synth://roadwork?size=huge", "size='huge' is neither WxH nor a named size"),
    ("synth://roadwork?n=4", "n=4 is out of range"),
])
def test_bad_synth_uris_name_data_uri(uri, message):
    with pytest.raises(UserError, match=f"^data_uri: .*{message}"):
        parse_synth_uri(uri)


def test_synth_uri_output_generates(tmp_path):
    from roadvision.data.contract import read_info
    from roadvision.data.synth import generate

    task, opts = parse_synth_uri("synth://roadwork?n=8&size=tiny&seed=1")
    info = generate(task=task, out=tmp_path / "d", **opts)
    assert info.num_samples == 8 and info.source == "synth:tiny"
    assert read_info(tmp_path / "d").extra["size"] == [96, 96]


def test_target_regions():
    assert parse_target_regions("") == parse_target_regions("  ") == []
    assert parse_target_regions("40.44,-79.99;42.36,-71.06") == [(40.44, -79.99),
                                                                (42.36, -71.06)]
    with pytest.raises(UserError, match="^target_regions: "):
        parse_target_regions("91,0")


def test_holdout_cities():
    assert parse_holdout_cities("") == []
    assert parse_holdout_cities(" alpha, beta ,") == ["alpha", "beta"]
    with pytest.raises(UserError, match="^holdout_cities: 'a,a' names a city twice"):
        parse_holdout_cities("a,a")


@pytest.mark.parametrize("changes,parameter", [
    ({"holdout_cities": "x,x"}, "holdout_cities"),
    ({"data_uri": "synth://roadwork?size=huge"}, "data_uri"),
    ({"training_profile": "huge"}, "training_profile"),
    ({"student_preset": "lanes_tiny"}, "student_preset"),
])
def test_run_params_use_the_parsers(changes, parameter):
    with pytest.raises(UserError, match=f"^{parameter}: "):
        RunParams().replace(**changes).validate(check_mlflow=False)
