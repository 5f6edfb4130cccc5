"""lib_lcm.prompt_tags: the shared case table (also run by tests/js) and property tests."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_lcm import prompt_tags
from lib_lcm.prompt_tags import format_weight, has_lcm_alias
from lib_lcm.weights import registry

CASES = json.loads((Path(__file__).parent / "prompt_tag_cases.json").read_text(encoding="utf-8"))["cases"]
# The stems of the shipped registry (their one home); a case may give its own ("stems" in its args).
LCM_STEMS = registry.stems(registry.load_registry(registry.default_registry_path()))


def find_lcm_tags(prompt):
    return prompt_tags.find_lcm_tags(prompt, LCM_STEMS)


def apply_lcm_tag(prompt, stem, weight, respect_user_weight=False):
    return prompt_tags.apply_lcm_tag(prompt, stem, weight, LCM_STEMS, respect_user_weight=respect_user_weight)


def remove_lcm_tag(prompt, stem=None):
    return prompt_tags.remove_lcm_tag(prompt, LCM_STEMS, stem)


def resolve_lcm_alias(prompt, stem):
    return prompt_tags.resolve_lcm_alias(prompt, stem, LCM_STEMS)


def stems_of(args):
    return args.get("stems", LCM_STEMS)


FUNCTIONS = {
    "format_weight": lambda a: format_weight(a["weight"]),
    "find": lambda a: [dataclasses.asdict(tag) for tag in prompt_tags.find_lcm_tags(a["prompt"], stems_of(a))],
    "has_alias": lambda a: has_lcm_alias(a["prompt"]),
    "apply": lambda a: prompt_tags.apply_lcm_tag(
        a["prompt"], a["stem"], a["weight"], stems_of(a), respect_user_weight=a.get("respect_user_weight", False)
    ),
    "remove": lambda a: prompt_tags.remove_lcm_tag(a["prompt"], stems_of(a), a.get("stem")),
    "resolve": lambda a: prompt_tags.resolve_lcm_alias(a["prompt"], a["stem"], stems_of(a)),
}


def test_table_covers_every_function():
    assert len(CASES) >= 40
    assert {case["fn"] for case in CASES} == set(FUNCTIONS)
    assert len({case["name"] for case in CASES}) == len(CASES), "case names must be unique"


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_shared_case(case):
    run = FUNCTIONS[case["fn"]]
    if case.get("error"):
        with pytest.raises((TypeError, ValueError)):
            run(case["args"])
    else:
        assert run(case["args"]) == case["expected"]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown LCM-LoRA file stem 'sdxl'"):
        apply_lcm_tag("a", "sdxl", 1)
    with pytest.raises(TypeError, match="weight must be a number"):
        format_weight("0.8")
    with pytest.raises(TypeError, match="prompt must be a string"):
        remove_lcm_tag(None)


def test_stems_come_from_the_caller_not_a_built_in_list():
    custom = ("my-lcm-sd15", "My-LCM-XL")
    prompt = "a <lora:lcm-lora-sdv1-5:1> <lora:my-lcm-xl:0.5>"
    assert [t.stem for t in prompt_tags.find_lcm_tags(prompt, custom)] == ["My-LCM-XL"]
    assert prompt_tags.apply_lcm_tag(prompt, "my-lcm-sd15", 1, custom) == "a <lora:lcm-lora-sdv1-5:1> <lora:my-lcm-sd15:1>"
    assert prompt_tags.resolve_lcm_alias("<lora:lcm:0.7>", "My-LCM-XL", custom) == "<lora:My-LCM-XL:0.7>"
    with pytest.raises(ValueError, match="unknown LCM-LoRA file stem 'lcm-lora-sdxl'"):
        prompt_tags.apply_lcm_tag("a", "lcm-lora-sdxl", 1, custom)


def test_find_offsets_index_the_prompt():
    prompt = "猫 🐱 <lora:lcm:1>, <lyco:LCM-LORA-SDXL:te=0.5>"
    tags = find_lcm_tags(prompt)
    assert [prompt[t.start : t.end] for t in tags] == [t.text for t in tags]
    assert [t.stem for t in tags] == [None, "lcm-lora-sdxl"]


# Prompts built from the pieces real prompts are made of, plus the characters that confuse tag parsing.
OTHER_PIECES = st.sampled_from(
    [
        "a cat", "masterpiece", "(best quality:1.2)", "[a:b:0.5]", "BREAK", "AND", "猫", "🐱", "é",
        "<lora:style:0.8>", "<lyco:detail:0.5:1>", "<hypernet:x:1>", "<LORA:lcm-lora-sdxl:1>", "<lora:lcmx:1>",
        "<", ">", ":", "=", "<foo:", "<lora", ":lcm-lora-sdxl>", "<lora:", "lcm", ",", ", ", " ", "  ", "\t", "\n", "\r\n",
    ]
)
LCM_PIECES = st.sampled_from(
    [
        "<lora:lcm>", "<lora:lcm:0.5>", "<lora:LCM:1:0.5>", "<lyco:lcm:te=0.3>", "<lora:lcm-lora-sdv1-5:1>",
        "<lora:lcm-lora-sdxl:0.8>", "<lora:LCM-LoRA-SSD-1B:unet=0.6>", "<lora:lcm-lora-sdv1-5:abc>",
    ]
)
NO_LCM_PROMPTS = st.lists(st.one_of(OTHER_PIECES, st.text(max_size=4)), max_size=10).map("".join).filter(
    lambda p: not find_lcm_tags(p)
)
ANY_PROMPTS = st.lists(st.one_of(OTHER_PIECES, LCM_PIECES, st.text(max_size=3)), max_size=10).map("".join)
STEMS = st.sampled_from(LCM_STEMS)
WEIGHTS = st.one_of(st.sampled_from([0, 0.5, 0.8, 1, 1.0, 0.30000000000000004]), st.floats(-10, 10))
RESPECT = st.booleans()


def outside_lcm_tags(prompt: str) -> str:
    """The prompt's characters outside LCM tags, without whitespace and commas (what edits may tidy)."""
    spans = [(t.start, t.end) for t in find_lcm_tags(prompt)]
    kept, position = [], 0
    for start, end in spans:
        kept.append(prompt[position:start])
        position = end
    kept.append(prompt[position:])
    return re.sub(r"[\s,]", "", "".join(kept))


@settings(max_examples=300, deadline=None)
@given(NO_LCM_PROMPTS, STEMS, WEIGHTS, RESPECT)
def test_remove_undoes_apply(prompt, stem, weight, respect):
    applied = apply_lcm_tag(prompt, stem, weight, respect_user_weight=respect)
    assert remove_lcm_tag(applied) == prompt
    assert remove_lcm_tag(applied, stem) == prompt


@settings(max_examples=300, deadline=None)
@given(ANY_PROMPTS, STEMS, WEIGHTS, RESPECT)
def test_apply_leaves_exactly_one_tag_and_is_idempotent(prompt, stem, weight, respect):
    applied = apply_lcm_tag(prompt, stem, weight, respect_user_weight=respect)
    tags = find_lcm_tags(applied)
    assert len(tags) == 1
    assert tags[0].stem == stem
    assert apply_lcm_tag(applied, stem, weight, respect_user_weight=respect) == applied
    assert outside_lcm_tags(applied) == outside_lcm_tags(prompt)


@settings(max_examples=300, deadline=None)
@given(ANY_PROMPTS, STEMS, WEIGHTS)
def test_weights_after_apply(prompt, stem, weight):
    before = find_lcm_tags(prompt)
    panel = find_lcm_tags(apply_lcm_tag(prompt, stem, weight))[0]
    assert panel.weight == float(format_weight(weight))
    server = find_lcm_tags(apply_lcm_tag(prompt, stem, weight, respect_user_weight=True))[0]
    if before and before[0].weight is not None:
        assert server.weight == before[0].weight
    else:
        assert server.weight == float(format_weight(weight))


@settings(max_examples=300, deadline=None)
@given(ANY_PROMPTS)
def test_remove_removes_all_and_keeps_other_text(prompt):
    tags = find_lcm_tags(prompt)
    assert [prompt[t.start : t.end] for t in tags] == [t.text for t in tags]
    removed = remove_lcm_tag(prompt)
    assert find_lcm_tags(removed) == []
    assert outside_lcm_tags(removed) == outside_lcm_tags(prompt)


@settings(max_examples=200, deadline=None)
@given(ANY_PROMPTS, STEMS)
def test_resolve_only_renames_aliases(prompt, stem):
    before = find_lcm_tags(prompt)
    after = find_lcm_tags(resolve_lcm_alias(prompt, stem))
    assert [t.stem or stem for t in before] == [t.stem for t in after]
    assert [t.weight for t in before] == [t.weight for t in after]
    assert not has_lcm_alias(resolve_lcm_alias(prompt, stem))


@given(st.floats(-1e5, 1e5))
def test_format_weight_round_trips_to_six_decimals(weight):
    text = format_weight(weight)
    assert re.fullmatch(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?", text)
    assert abs(float(text) - weight) <= 0.5e-6 + 1e-9 * abs(weight)
    assert prompt_tags.RE_NUMBER.fullmatch(text)
