"""The structure the features stand on: one declaration per option, imports that run one way, tables not chains."""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

import pytest

from transferkit.config import GROUPS, RunConfig, option_fields

PKG = Path(__file__).resolve().parents[1] / "src" / "transferkit"
README = Path(__file__).resolve().parents[1] / "README.md"

# Each top-level module or package and its layer: a module may import only from its own layer or a lower one.
LAYERS = {
    "cli": 5,
    "__main__": 5,
    "api": 4,
    "demo": 4,
    "comparison": 4,
    "crossval": 4,
    "tune": 4,
    "pages": 4,  # the review and labelling pages: over core and evaluation; the train button calls api.fit
    "selection": 3,
    "engine": 3,
    "evaluation": 3,
    "predict": 3,
    "export": 3,
    "serve": 3,
    "tasks": 3,
    "core": 3,
    "data": 2,
    "backbones": 2,
    "bundle": 2,
    "rundir": 2,
    "options": 2,
    "strategies": 2,
    "progress": 2,
    "config": 1,
    "errors": 1,
    "faults": 1,
    "__init__": 1,
}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports, lazy (inside functions) and TYPE_CHECKING imports included."""
    edges = {}
    for m, f in mods.items():
        found = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = m.split(".")[: len(m.split(".")) - node.level + (1 if f.name == "__init__.py" else 0)]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                names = [name] + [f"{name}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for n in names:
                while n and n not in mods:
                    n = n.rpartition(".")[0]
                if n and n != m and not (m.startswith(n + ".") and mods[n].name == "__init__.py"):
                    found.add(n)
        edges[m] = found
    return edges


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return LAYERS[top]


def test_every_module_has_a_layer():
    tops = {m.split(".")[1] for m in _modules() if "." in m}
    assert tops <= set(LAYERS), f"give these a layer in LAYERS: {sorted(tops - set(LAYERS))}"


def test_no_import_cycles():
    edges = _imports(_modules())
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    assert cycles == []


def test_imports_run_downward():
    edges = _imports(_modules())
    upward = sorted(
        f"{m} -> {t}"
        for m, ts in edges.items()
        if m != "transferkit"
        for t in ts
        if t != "transferkit" and _layer(t) > _layer(m)
    )
    assert upward == []


def test_cli_options_are_the_config_fields():
    """Every config option is a flag of `train` and every flag of `train` is a config option (or train's own)."""
    from typer.main import get_command

    from transferkit.cli.app import app

    train = get_command(app).commands["train"]
    flags = {o for p in train.params for o in p.opts if o.startswith("--")} - {"--help"}
    own = {"--resume", "--log-json", "--config", "--review"}
    declared = {f.flag for f in option_fields() if f.opt.cli}
    assert flags - own == declared
    assert {f.name for f in option_fields() if not f.opt.cli} == {"path"}  # the DATA argument


@pytest.mark.parametrize("command", ["rank", "advise", "compare", "doctor", "evaluate", "train"])
def test_every_command_that_reads_data_takes_the_data_options(command):
    from typer.main import get_command

    from transferkit.cli.app import app

    cmd = get_command(app).commands[command]
    flags = {o for p in cmd.params for o in p.opts}
    assert {"--layout", "--path-column", "--label-column", "--h5-x", "--h5-y"} <= flags


def test_every_option_has_help_a_group_and_a_valid_default():
    from transferkit.options import validate

    for f in option_fields():
        assert f.opt.help.endswith(".") and f.opt.group in GROUPS, f.name
        if f.choices is not None:
            assert f.default in f.choices or f.default is None, f.name
    validate(RunConfig())  # the defaults pass their own checks


def test_choices_are_the_tables_keys():
    from transferkit.engine.optim import OPTIMIZERS, SCHEDULES

    fields = {f.name: f for f in option_fields()}
    assert set(fields["optimizer"].choices) == set(OPTIMIZERS)
    assert set(fields["schedule"].choices) == set(SCHEDULES)


def test_a_bad_choice_names_the_flag_and_the_choices():
    from transferkit.errors import ConfigError
    from transferkit.options import apply_overrides, validate

    with pytest.raises(ConfigError, match=r"Unknown --schedule 'cosin'.*Did you mean: cosine"):
        validate(apply_overrides(RunConfig(), {"schedule": "cosin"}))
    with pytest.raises(ConfigError, match=r"--lr -1.0: give at least 0"):
        validate(apply_overrides(RunConfig(), {"lr": -1.0}))
    with pytest.raises(ConfigError, match=r"Unknown option 'epoch'.*epochs"):
        apply_overrides(RunConfig(), {"epoch": 3})


def test_strategy_table_rows_parse_and_unknown_ones_list_the_table():
    from transferkit.errors import ConfigError
    from transferkit.strategies import STRATEGIES, TABLE, parse_strategy

    for key, kind in TABLE.items():
        s = parse_strategy(kind.spelling.replace(":K", ":1"))
        assert s.name == key and s.pretrained == kind.pretrained
    with pytest.raises(ConfigError, match="Valid choices: " + re.escape(", ".join(STRATEGIES))):
        parse_strategy("fine-tune-all")


def test_backbone_schemes_are_a_table():
    from transferkit.backbones import check_backbone_name, schemes
    from transferkit.errors import ConfigError

    assert set(schemes()) >= {"timm:", "torchvision:", "file:"}
    with pytest.raises(ConfigError) as e:
        check_backbone_name("resnet50")
    assert all(prefix in str(e.value) for prefix in schemes())


def test_train_help_is_grouped_and_fits_80_columns():
    import os
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "transferkit", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "80"},
    )
    panels = re.findall(r"╭─ (\w+) ─", r.stdout)
    assert set(GROUPS) <= set(panels)
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    assert "<bool>" not in r.stdout.replace("--help", "")  # flags take no value


def test_readme_option_tables_are_the_config():
    """The README's option tables are generated: `python -m transferkit.cli.options` prints them."""
    from transferkit.cli.options import markdown_tables

    text = README.read_text()
    found = re.search(r"<!-- options:start -->\n(.*?)<!-- options:end -->", text, re.S)
    assert found, "README.md lacks the <!-- options:start --> ... <!-- options:end --> block"
    assert found.group(1) == markdown_tables(), (
        "README.md's option tables are out of date: replace the block with `python -m transferkit.cli.options`"
    )


def test_public_api_is_explicit():
    import transferkit

    names = [n for n in dir(transferkit) if not n.startswith("_")]
    assert set(names) == {n for n in transferkit.__all__ if not n.startswith("_")}
    assert not {"Any", "TYPE_CHECKING", "annotations"} & set(names)


def test_literal_choices_resolve():
    hints = typing.get_type_hints(type(RunConfig().data))
    assert typing.get_args(hints["layout"]) == ("auto", "folders", "presplit", "list", "hdf5")


def test_every_task_is_one_row_and_better_is_its_order():
    """A task is one class (tasks/<name>.py) in one table; what it is lives on it: its probe, its score's names, which
    result is better."""
    from transferkit.selection.probes import PROBES
    from transferkit.tasks import TASKS, Task

    a, b = {"val_loss": 0.2, "val_acc": 0.8}, {"val_loss": 0.3, "val_acc": 0.9}
    for name, task in TASKS.items():
        assert isinstance(task, Task) and task.name == name and task.score_name in task.headline
        assert task.probe in PROBES and task.score_label and task.score_column and task.data_needs
        assert task.better(a, b) and not task.better(b, a) and task.better(b, a, by="score") and task.better(a, None)
        assert task.best([b, a]) is a and task.best([a, b], by="score") is b


# Modules that still test a task's name, each for a reason: the data layer reads labels below the tasks (it cannot
# import them; a reader gets the task's name), and options.py checks options below them. Nothing else may.
TASK_NAME_TESTS_LEFT: set[str] = set()  # every module asks the task (or its kind of labels)


def test_no_module_outside_tasks_tests_a_task_name():
    test = re.compile(
        r"task\s*[!=]=|[!=]=\s*[\"'](classification|regression|multilabel)[\"']"
        r"|[\"'](classification|regression|multilabel)[\"']\s*:"
    )
    found = sorted(
        str(f.relative_to(PKG))
        for f in PKG.rglob("*.py")
        if f.relative_to(PKG).parts[0] != "tasks" and test.search(f.read_text())
    )
    assert set(found) <= TASK_NAME_TESTS_LEFT, (
        f"ask the task instead (tasks/): {sorted(set(found) - TASK_NAME_TESTS_LEFT)}"
    )
