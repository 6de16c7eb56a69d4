"""Every numeric option of every command is checked by one rule (`genomix.cli.Range`): finite, within its declared
range, refused in one line that names the flag before any work; legal extremes run or fail in one line.

The options are found by introspecting the command line, so a new numeric option is covered (and must declare a
range) without a change here.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, get_args, get_origin, get_type_hints

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.main import get_command

from genomix import cli
from genomix.errors import GenomixError
from genomix.models.modelfile import read_card


def _kind(annotation: object) -> type | None:
    """int or float for a numeric option's type (`int | None` too), else None."""
    kinds = [k for k in (get_args(annotation) or (annotation,)) if k is not type(None)]
    return kinds[0] if len(kinds) == 1 and kinds[0] in (int, float) else None


def _range(callback: object) -> cli.Range | None:
    """The Range an option's callback checks against: `Range.check`, or --threads' own callback."""
    if callback is cli._threads:
        return cli.THREADS
    owner = getattr(callback, "__self__", None)
    return owner if isinstance(owner, cli.Range) else None


def numeric_options() -> Iterator[tuple[str, str, str, type, cli.Range | None]]:
    """(command, parameter, flag, int or float, its Range) of every numeric option of every command."""
    for info in cli.app.registered_commands:
        command = info.name or info.callback.__name__
        for name, hint in get_type_hints(info.callback, include_extras=True).items():
            if get_origin(hint) is not Annotated or (kind := _kind(get_args(hint)[0])) is None:
                continue
            option = get_args(hint)[1]
            flag = next((d for d in option.param_decls if d.startswith("--")), f"--{name.replace('_', '-')}")
            yield command, name, flag, kind, _range(option.callback)


NUMERIC = list(numeric_options())
IDS = [f"{command}{flag}" for command, _, flag, _, _ in NUMERIC]
GROUP = get_command(cli.app)
# Arguments that let each command run at once on tiny inputs (train and pretrain stop at their missing input,
# after their settings are checked); {model}, {fa} etc. are filled in by the `workspace` fixture.
BASE = {
    "train": ["{absent}", "-o", "{dir}/m.gmx", "--device", "cpu"],
    "pretrain": ["{absent}", "-o", "{dir}/b.gmx", "--device", "cpu"],
    "predict": ["{model}", "{fa}", "-o", "{dir}/p.tsv", "--device", "cpu"],
    "embed": ["{model}", "{fa}", "-o", "{dir}/e.npy", "--device", "cpu"],
    "evaluate": ["{model}", "{fa}", "-o", "{dir}/m.json", "--device", "cpu"],
    "scan": ["{model}", "--reference", "{genome}", "-o", "{dir}/t.bedgraph", "--device", "cpu"],
    "variants": ["{model}", "--vcf", "{vcf}", "--reference", "{genome}", "-o", "{dir}/v.tsv", "--device", "cpu"],
    "explain": ["{model}", "{fa}", "-o", "{dir}/x.tsv", "--device", "cpu"],
}
SPECIAL = ["nan", "inf", "-inf", "-1", "0", "1e30", "1e400", str(10**30), str(cli.LARGEST_INT + 1), "-0.0", "0.5"]
TEXTS = st.one_of(st.sampled_from(SPECIAL), st.integers().map(str), st.floats().map(repr))


def test_every_numeric_option_declares_its_range():
    assert {command for command, *_ in NUMERIC} == set(BASE)
    assert len(NUMERIC) > 40
    undeclared = [f"{command} {flag}" for command, _, flag, _, numbers in NUMERIC if numbers is None]
    assert not undeclared, f"numeric options without a declared Range: {undeclared}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, trained_model: Path) -> dict[str, str]:
    """Tiny inputs for every command: two records of the model's classes, a 300-base genome, a VCF of one SNV."""
    folder = tmp_path_factory.mktemp("numeric")
    classes = read_card(trained_model).classes
    bases = "ACGTTGCAAGCTAGCTTACG" * 15
    (folder / "in.fa").write_text(f">r1 label={classes[0]}\n{bases[:70]}\n>r2 label={classes[1]}\n{bases[90:160]}\n")
    (folder / "g.fa").write_text(f">chr1\n{bases}\n")
    (folder / "v.vcf").write_text("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=300>\n"
                                  "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                                  f"chr1\t50\t.\t{bases[49]}\tT\t.\t.\t.\n")
    return {"model": str(trained_model), "fa": str(folder / "in.fa"), "genome": str(folder / "g.fa"),
            "vcf": str(folder / "v.vcf"), "absent": str(folder / "absent.fa"), "dir": str(folder)}


def base_args(command: str, workspace: dict[str, str]) -> list[str]:
    return [a.format(**workspace) for a in BASE[command]]


def number(kind: type, text: str) -> float | None:
    """The value of `text` as a literal of the option's type, or None (the parser may take some such, "1.0" as an
    int, say)."""
    try:
        return kind(text) if kind is float or text.lstrip("-").isdigit() else None
    except ValueError:
        return None


@pytest.fixture(scope="module")
def parse(workspace: dict[str, str]) -> Iterator:
    """parse(option, text): the option's parsed value, or the message it is refused with; the command line is only
    parsed (every option's callback runs, as before any work), with --threads not applied to this process."""

    def run(option: tuple, text: str) -> tuple[bool, object]:
        command, name, flag, _, _ = option
        try:
            context = GROUP.commands[command].make_context(command, [*base_args(command, workspace), flag, text])
        except GenomixError as err:
            assert "\n" not in str(err)
            return False, str(err)
        except typer.TyperException as err:  # what main() also turns into one line
            return False, err.format_message()
        return True, context.params[name]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "use_threads", lambda threads: None)
        yield run


def check_rule(parse, option: tuple, text: str) -> None:
    """A value is taken exactly when it is in the option's range; else refused in a message that names the flag."""
    _, _, flag, kind, numbers = option
    value = number(kind, text)
    taken, result = parse(option, text)
    if taken:
        assert result in numbers and (value is None or result == value), (flag, text, result)
    else:
        assert flag in str(result), result
        assert value is None or value not in numbers, (flag, text, result)


@settings(max_examples=300, deadline=None, database=None)
@given(option=st.sampled_from(NUMERIC), text=TEXTS)
def test_a_value_is_taken_exactly_when_in_its_range(parse, option, text):
    check_rule(parse, option, text)


@pytest.mark.parametrize("option", NUMERIC, ids=IDS)
def test_every_option_refuses_non_finite_and_out_of_range_values(parse, option):
    for text in SPECIAL:
        check_rule(parse, option, text)
    kind = option[3]
    for text in ("nan", "inf", "-inf", "1e400") if kind is float else (str(cli.LARGEST_INT + 1), "-1e30"):
        assert not parse(option, text)[0], text


def extremes(kind: type, numbers: cli.Range) -> list[float]:
    """The lowest and the highest value the range takes."""
    step = (lambda x, to: math.nextafter(x, to)) if kind is float else (lambda x, to: x + (1 if to > x else -1))
    low = numbers.low if numbers.low is not None else -cli.LARGEST_INT if kind is int else -sys.float_info.max
    high = numbers.high if numbers.high is not None else cli.LARGEST_INT if kind is int else sys.float_info.max
    low = step(kind(low), math.inf) if numbers.low_open else kind(low)
    high = step(kind(high), -math.inf) if numbers.high_open else kind(high)
    return [low, high]


@pytest.mark.parametrize("option", NUMERIC, ids=IDS)
def test_legal_extremes_run_or_fail_in_one_line(genomix_main, workspace, option):
    command, _, flag, kind, numbers = option
    for value in extremes(kind, numbers):
        proc = genomix_main(command, *base_args(command, workspace), flag, repr(value))
        stderr = proc.stderr.decode()
        assert proc.returncode in (0, 2) and "Traceback" not in stderr, (value, stderr)
        if proc.returncode == 2:  # a check that needs the inputs or the model: --step beyond the window, say
            assert len([line for line in stderr.splitlines() if line.startswith("genomix: error: ")]) == 1, stderr


@pytest.mark.parametrize("command", BASE)
def test_a_refused_value_is_one_line_with_exit_code_2(genomix_main, workspace, user_error, command):
    _, _, flag, kind, _ = next(option for option in NUMERIC if option[0] == command)
    user_error(genomix_main(command, *base_args(command, workspace), flag, "nan" if kind is float else "-1"),
               f"{flag} must be")
