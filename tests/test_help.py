"""Every command's --help, walked from the typer app: flags only from config.py's fields, no Python type in sight,
no torch imported; a command's own options filled, checked and refused as the run's are."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from transferkit.cli.app import app
from transferkit.cli.options import COMMANDS as DECLARED
from transferkit.cli.options import with_options
from transferkit.config import opt

COMMANDS = get_command(app).commands  # name -> the click command typer made, in `transferkit --help` order
# What Python, not a person, would write: `<bool>`, `<list[Path]>`, `typing.Optional[...]`, `<class 'int'>`, ...
PYTHON = re.compile(
    r"<bool>|<list\[|Path\]>|list\[|tuple\[|dict\[|Optional\[|Literal\[|typing\.|NoneType|<class |Posix"
)


def _help(*args: str) -> str:
    r = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "160"}, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def _declared(name: str) -> list:
    fn = COMMANDS[name].callback
    return [*getattr(fn, "option_fields", []), *getattr(fn, "config_fields", [])]


def test_the_commands_are_walked_not_listed():
    assert {"train", "predict", "evaluate", "export", "serve", "doctor", "demo", "env"} <= set(COMMANDS)


def test_every_command_with_options_is_in_the_table_the_readme_is_made_from():
    assert {name for name in COMMANDS if _declared(name)} == set(DECLARED)


@pytest.mark.parametrize("name", [None, *COMMANDS])
def test_help_shows_no_python_types(name):
    text = _help(*([name] if name else []))
    assert not PYTHON.findall(text), PYTHON.findall(text)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_flag_is_a_declared_field_and_shows_in_help(name):
    """No hand-written typer.Option left: a command's flags are exactly its fields' (own and the run's)."""
    text = _help(name)
    declared = _declared(name)
    for f in declared:
        for flag in f.flags:
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"{name} --help lacks {flag}"
    flags = {o for p in COMMANDS[name].params if p.param_type_name == "option" for o in p.opts} - {"--help"}
    assert flags == {flag for f in declared for flag in f.flags}


def test_help_of_every_command_imports_no_torch():
    code = (
        "import sys\n"
        "from typer.main import get_command\nfrom typer.testing import CliRunner\n"
        "from transferkit.cli.app import app\n"
        "for args in [[]] + [[name] for name in get_command(app).commands]:\n"
        "    assert CliRunner().invoke(app, [*args, '--help']).exit_code == 0, args\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'timm', 'matplotlib')]\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "args, said",
    [
        (
            ["predict", "B", "I", "--runtime", "onnxx"],
            "Unknown --runtime 'onnxx'. Did you mean: onnx? Valid choices: torch, onnx.",
        ),
        (["predict", "B", "I", "--precision", "fp8"], "Valid choices: auto, fp32, bf16, fp16."),
        (["evaluate", "B", "D", "--split", "tests"], "Valid choices: auto, test, val, train, all."),
        (["export", "B", "-f", "tflite"], "Valid choices: onnx, torchscript."),
        (["export", "B", "--check-limit", "0"], "--check-limit 0: give at least 1."),
        (["serve", "B", "--max-wait-ms", "-1"], "--max-wait-ms -1.0: give at least 0."),
        (["compare", "D", "--seeds", "0"], "--seeds 0: give at least 1."),
    ],
)
def test_a_value_outside_the_declaration_exits_2_with_the_valid_ones(monkeypatch, capsys, args, said):
    from transferkit.cli.app import main

    monkeypatch.setattr(sys, "argv", ["transferkit", *args])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    assert said in capsys.readouterr().err.replace("\n", "")


def test_choices_are_the_tables_the_code_uses():
    from transferkit.config import ExportOptions, LoadOptions, fields_of
    from transferkit.engine.runtime import PRECISIONS
    from transferkit.export import FORMATS

    assert {f.name: f.choices for f in fields_of(LoadOptions)}["precision"] == PRECISIONS
    assert {f.name: f.choices for f in fields_of(ExportOptions)}["format"] == FORMATS


@dataclass
class Toy:
    count: int = opt(2, "How many.", "Options", min=1, flag="--count -n")
    mode: Literal["a", "b"] = opt("a", "Which.", "Options")
    keep: bool = opt(True, "Keep nothing.", "Options", flag="--no-keep")
    paths: tuple[Path, ...] = opt((), "Paths. Repeatable.", "Options")


def _toy():
    seen = {}

    @with_options(Toy)
    def toy(name: str = typer.Argument("x"), *, options: Toy) -> None:
        seen["options"] = options

    one = typer.Typer()
    one.command()(toy)
    return one, seen


def test_a_command_gets_its_dataclass_filled_from_the_command_line():
    one, seen = _toy()
    assert CliRunner().invoke(one, []).exit_code == 0 and seen["options"] == Toy()
    r = CliRunner().invoke(one, ["y", "-n", "3", "--mode", "b", "--no-keep", "--paths", "p", "--paths", "q"])
    assert r.exit_code == 0, r.output
    assert seen["options"] == Toy(count=3, mode="b", keep=False, paths=(Path("p"), Path("q")))


def test_a_command_refuses_what_its_fields_do_not_allow():
    from transferkit.errors import ConfigError

    one, _ = _toy()
    r = CliRunner().invoke(one, ["--mode", "c"])
    assert isinstance(r.exception, ConfigError) and "Valid choices: a, b" in str(r.exception)
    r = CliRunner().invoke(one, ["--count", "0"])
    assert isinstance(r.exception, ConfigError) and "--count 0: give at least 1" in str(r.exception)


def test_an_option_declared_twice_is_refused():
    with pytest.raises(TypeError, match="declared twice.*count"):

        @with_options(Toy)
        def clash(count: int = typer.Option(1), *, options: Toy) -> None: ...


def test_the_readme_tables_show_a_pair_or_list_default_as_the_command_line_takes_it():
    """`--crop-scale` takes two values (0.35 1) and `--split` one comma-separated word: the tables showed 0.35,1,
    which the command line refuses."""
    import shlex

    from transferkit.cli.options import markdown_tables
    from transferkit.config import option_fields
    from transferkit.data.split import parse_split

    train = COMMANDS["train"]
    run_tables = markdown_tables().split("**`transferkit ")[0]  # the run's options, before each command's own
    pairs = [f for f in option_fields() if f.opt.cli and isinstance(f.default, tuple) and f.default]
    assert {f.flag for f in pairs} >= {"--crop-scale", "--split"}
    for f in pairs:
        shown = re.search(rf"^\| `{f.flag}` \| ([^|]*) \|", run_tables, re.M)[1].strip("`")
        try:
            value = train.make_context("train", ["DATA", f.flag, *shlex.split(shown)]).params[f.name]
        except Exception as e:  # a usage error (of the click typer carries: not always `click`'s)
            pytest.fail(f"the tables show {f.flag} {shown}, which the command line refuses: {e}")
        assert (parse_split(value) if f.name == "split" else value) == f.default, (f.flag, shown, value)
    assert "| `--crop-scale` | `0.35 1` |" in run_tables
