import dataclasses

import pytest

from relsum.core.config import ConfigError, cfg, field_help, flat_params, load_config, parse_overrides


@dataclasses.dataclass
class Inner:
    rate: float = cfg(1e-5, help="a rate")
    names: list[str] = cfg(["a"], help="names")

    def __post_init__(self):
        if self.rate <= 0:
            raise ValueError("rate must be positive")


@dataclasses.dataclass
class Outer:
    mode: str = cfg("x", help="mode")
    flag: bool = cfg(False, help="flag")
    maybe: int | None = cfg(None, help="optional int")
    inner: Inner = cfg(default_factory=Inner, help="nested")


def test_yaml_then_overrides_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mode: y\ninner:\n  rate: 0.5\n")
    config = load_config(Outer, path, ["inner.rate=2e-3", "flag=true", "maybe=3"])
    assert config.mode == "y" and config.flag is True and config.maybe == 3
    assert config.inner.rate == pytest.approx(2e-3)
    assert config.inner.names == ["a"]


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="inner.nope"):
        load_config(Outer, None, ["inner.nope=1"])


def test_post_init_check_runs_after_overrides():
    with pytest.raises(ConfigError, match="rate must be positive"):
        load_config(Outer, None, ["inner.rate=-1"])


def test_bad_type_is_reported():
    with pytest.raises(ConfigError, match="maybe"):
        load_config(Outer, None, ["maybe=abc"])


@dataclasses.dataclass
class Plain:
    count: int = cfg(1, help="a plain int")
    ratio: float = cfg(0.5, help="a plain float")


@pytest.mark.parametrize(("override", "message"), [("count=abc", "count: 'abc' is not an integer"),
                                                   ("count=1.5", "count: 1.5 is not an integer"),
                                                   ("ratio=half", "ratio: 'half' is not a number")])
def test_unparseable_number_is_a_config_error_not_a_bare_value_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Plain, None, [override])


def test_mutable_defaults_are_not_shared():
    a, b = Outer(), Outer()
    a.inner.names.append("z")
    assert b.inner.names == ["a"]


def test_help_and_flat_params():
    helps = field_help(Outer)
    assert "inner.rate" in helps and "a rate" in helps["inner.rate"]
    assert flat_params(Outer())["inner.rate"] == 1e-5


def test_override_syntax():
    assert parse_overrides(["a.b=1", "c=[x, y]"]) == {"a": {"b": 1}, "c": ["x", "y"]}
    with pytest.raises(ConfigError):
        parse_overrides(["novalue"])


def _custom_inner():
    return Inner(rate=0.5, names=["custom"])


@dataclasses.dataclass
class Parent:
    inner: Inner = cfg(default_factory=_custom_inner, help="a customised child")


def test_nested_override_keeps_the_parents_custom_defaults():
    config = load_config(Parent, None, ["inner.names=[z]"])
    assert config.inner.rate == 0.5 and config.inner.names == ["z"]


def test_help_shows_the_parents_custom_defaults():
    assert "(default: 0.5)" in field_help(Parent)["inner.rate"]
    assert "(default: 1e-05)" in field_help(Outer)["inner.rate"]
