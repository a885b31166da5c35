"""pyrovae.io's bounded config parsing: the depth limit is the same for YAML, JSON and
TOML, and a YAML document stops being composed at the first node past it."""

import pytest

from pyrovae import io as pio
from pyrovae.errors import PyrovaeError


def _nested(fmt: str, depth: int) -> str:
    inner = "[" * depth + "]" * depth
    return {"yaml": f"a: {inner}", "json": f'{{"a": {inner}}}', "toml": f"a = {inner}"}[fmt]


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
def test_depth_limit_is_the_same_in_every_format(fmt):
    data = pio.parse_text(_nested(fmt, pio.MAX_DEPTH), fmt, "c")
    assert list(data) == ["a"]
    for depth in (pio.MAX_DEPTH + 1, 1500):
        with pytest.raises(PyrovaeError, match=rf"^c: nested (too deeply|more than "
                                                rf"{pio.MAX_DEPTH} levels)"):
            pio.parse_text(_nested(fmt, depth), fmt, "c")


def test_yaml_composing_stops_at_the_limit(monkeypatch):
    composed = []
    compose = pio._Loader.compose_node

    def counted(self, parent, index):
        composed.append(self._depth)
        return compose(self, parent, index)

    monkeypatch.setattr(pio._Loader, "compose_node", counted)
    with pytest.raises(PyrovaeError, match="nested too deeply"):
        pio.parse_text(_nested("yaml", 1500), "yaml", "c")
    assert len(composed) <= pio.MAX_DEPTH + 3  # not one per level of the 1,500
    assert pio.parse_text("x: &A [1, {y: 2}]\nz: *A", "yaml", "c") == {
        "x": [1, {"y": 2}], "z": [1, {"y": 2}]}
