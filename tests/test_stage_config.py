"""humandiff.io.stage.section_config: a params section checked against config dataclasses and built."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml

from humandiff.io import ArtifactError
from humandiff.io.stage import section_config


@dataclass(frozen=True)
class Sizes:
    width: int = 8
    dropout: float = 0.1
    name: str | None = None

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ArtifactError(f"sizes: 'width' must be > 0, got {self.width!r}")


@dataclass(frozen=True)
class Options:
    lr: float
    seed: int = 0
    dropout: float = 0.1


def _params(tmp_path, **section) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"stage": section}))
    return str(path)


def test_builds_configs_and_returns_the_checked_section(tmp_path):
    path = _params(tmp_path, width=4, dropout=0, name=None, lr=1, seed=3, threads=2)
    (sizes, options), values = section_config(path, "stage", (Sizes, Options), {"threads": int})
    assert sizes == Sizes(width=4, dropout=0.0, name=None) and options == Options(lr=1.0, seed=3, dropout=0.0)
    assert type(sizes.dropout) is float and type(options.lr) is float  # an int is taken for a float
    assert values["threads"] == 2 and values["lr"] == 1.0
    config, _ = section_config(_params(tmp_path, width=2, dropout=0.5, name="x"), "stage", Sizes)
    assert config == Sizes(2, 0.5, "x")


def test_defaults_may_be_left_out_and_nothing_else(tmp_path):
    path = _params(tmp_path, width=4, lr=0.5, seed=1, dropout=0.2)
    (sizes, options), _ = section_config(path, "stage", (Sizes, Options), defaults=("name",))
    assert sizes.name is None and options.lr == 0.5
    with pytest.raises(ArtifactError, match=r"^.*params.yaml: missing parameter 'stage.name'$"):
        section_config(path, "stage", (Sizes, Options))
    with pytest.raises(TypeError, match="lr"):  # no default to leave it at
        section_config(path, "stage", (Sizes, Options), defaults=("name", "lr"))


@pytest.mark.parametrize("section, message", [
    ({"width": 4, "dropout": 0.1, "name": None, "widht": 3}, "params.yaml: unknown parameter(s) stage.widht (allowed:"),
    ({"width": 4.5, "dropout": 0.1, "name": None}, "params.yaml: parameter 'stage.width' must be int, got 4.5"),
    ({"width": True, "dropout": 0.1, "name": None}, "parameter 'stage.width' must be int, got True"),
    ({"width": 4, "dropout": "high", "name": None}, "parameter 'stage.dropout' must be float, got 'high'"),
    ({"width": 4, "dropout": 0.1, "name": 3}, "parameter 'stage.name' must be str/null, got 3"),
    ({"width": 0, "dropout": 0.1, "name": None}, "params.yaml: sizes: 'stage.width' must be > 0, got 0"),
])
def test_errors_are_one_line_naming_the_parameter(tmp_path, section, message):
    with pytest.raises(ArtifactError) as caught:
        section_config(_params(tmp_path, **section), "stage", Sizes)
    assert message in str(caught.value) and len(str(caught.value).splitlines()) == 1


def test_extra_keys_are_required_and_typed(tmp_path):
    path = _params(tmp_path, width=4, dropout=0.1, name=None)
    with pytest.raises(ArtifactError, match="missing parameter 'stage.device'"):
        section_config(path, "stage", Sizes, {"device": str})
    path = _params(tmp_path, width=4, dropout=0.1, name=None, device=1)
    with pytest.raises(ArtifactError, match="parameter 'stage.device' must be str, got 1"):
        section_config(path, "stage", Sizes, {"device": str})
    with pytest.raises(TypeError, match="width"):
        section_config(path, "stage", Sizes, {"width": int})
