"""The JavaScript side: `node --test tests/js`, and javascript/lcm_lora_prompt.js against lib_lcm/prompt_tags.py.

Node.js (18.15 or newer) is required: without it these tests fail, they do not skip.
"""
from __future__ import annotations

import dataclasses
import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lib_lcm import prompt_tags
from lib_lcm.weights import registry

ROOT = Path(__file__).resolve().parents[1]
JS_TESTS = ROOT / "tests" / "js"
CASES = json.loads((ROOT / "tests" / "prompt_tag_cases.json").read_text(encoding="utf-8"))["cases"]
# What tests/js/prompt_tags_calls.mjs uses when a call names no stems: the shipped registry's.
SHIPPED_STEMS = list(registry.stems(registry.load_registry(registry.default_registry_path())))
CUSTOM_STEMS = ["My-LCM", "lcm-lora-sdxl"]
MIN_NODE = (18, 15)  # node:test with --test-reporter


def node_executable() -> str:
    """The `node` to run; a missing or too old Node.js fails the calling test (a core test, never skipped)."""
    path = shutil.which("node")
    if path is None:
        pytest.fail("Node.js >= 18.15 is required for the JavaScript tests (tests/js) but `node` is not on PATH")
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    found = re.match(r"v(\d+)\.(\d+)", version)
    if found is None or tuple(map(int, found.groups())) < MIN_NODE:
        pytest.fail(f"Node.js >= {'.'.join(map(str, MIN_NODE))} is required for tests/js, found {version or '?'}")
    return path


def test_node_test_suite_passes():
    node = node_executable()
    # Files are named explicitly: how `node --test DIR` finds files differs between Node versions.
    files = sorted(str(path) for path in JS_TESTS.glob("*.test.mjs"))
    assert files, f"no *.test.mjs files in {JS_TESTS}"
    run = subprocess.run(
        [node, "--test", "--test-reporter=tap", *files], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-6000:]
    passed = int(re.search(r"^# pass (\d+)$", report, re.M).group(1))
    failed = int(re.search(r"^# fail (\d+)$", report, re.M).group(1))
    assert failed == 0, report[-6000:]
    assert passed > len(CASES), f"only {passed} node tests passed; the table alone has {len(CASES)} cases"


PIECES = [
    "a cat", "masterpiece", "(best quality:1.2)", "[a:b:0.5]", " BREAK ", "AND", "猫", "🐱", "é", "K",
    "<lora:style:0.8>", "<lyco:detail:0.5:1>", "<hypernet:x:1>", "<LORA:lcm-lora-sdxl:1>", "<lora:lcmx:1>",
    "<lora:lcm>", "<lora:lcm:0.5>", "<lora:LCM:1:0.5>", "<lyco:lcm:te=0.3>", "<lora:lcm-lora-sdv1-5:1>",
    "<lora:lcm-lora-sdxl:0.8>", "<lora:LCM-LoRA-SSD-1B:unet=0.6>", "<lora:lcm-lora-sdv1-5:abc>", "<lora: lcm :1e0>",
    "<lora:x=1:lcm:.5>", "<lora:lcm-lora-sdxl:dyn=4>", "<lora:lcm:inf>", "<é:", "<", ">", ":", "=", "<foo:", "<lora", ":lcm-lora-sdxl>",
    "<lora:", "lcm", ",", ", ", " ", "  ", "\t", "\n", "\r\n", "\u3000", "\xa0", "<lora:my-lcm:0.5>", "<lyco:MY-LCM>",
]
WEIGHTS = [0, -0.0, 1, 1.0, 0.8, 0.30000000000000004, 0.0078125, -0.0078125, 2.5e-7, 123456.789, 999999.9999999, 1e6]


def random_calls(rng: random.Random, count: int) -> list[dict]:
    calls = []
    for _ in range(count):
        prompt = "".join(rng.choice(PIECES) for _ in range(rng.randrange(8)))
        stems = CUSTOM_STEMS if rng.random() < 0.25 else SHIPPED_STEMS
        stem = rng.choice(stems)
        weight = rng.choice(WEIGHTS) if rng.random() < 0.5 else round(rng.uniform(-3, 3), rng.randrange(1, 9))
        fn = rng.choice(["find", "has_alias", "apply", "apply", "remove", "resolve", "format_weight"])
        args = {"prompt": prompt, "stem": stem, "weight": weight}
        if stems is CUSTOM_STEMS:
            args["stems"] = stems
        if fn == "apply":
            args["respect_user_weight"] = rng.random() < 0.5
        if fn == "remove" and rng.random() < 0.5:
            args["stem"] = None
        calls.append({"fn": fn, "args": args})
    return calls


def python_result(call: dict):
    a = call["args"]
    stems = a.get("stems", SHIPPED_STEMS)
    try:
        if call["fn"] == "find":
            return {"result": [dataclasses.asdict(t) for t in prompt_tags.find_lcm_tags(a["prompt"], stems)]}
        result = {
            "has_alias": lambda: prompt_tags.has_lcm_alias(a["prompt"]),
            "apply": lambda: prompt_tags.apply_lcm_tag(a["prompt"], a["stem"], a["weight"], stems,
                                                       a["respect_user_weight"]),
            "remove": lambda: prompt_tags.remove_lcm_tag(a["prompt"], stems, a["stem"]),
            "resolve": lambda: prompt_tags.resolve_lcm_alias(a["prompt"], a["stem"], stems),
            "format_weight": lambda: prompt_tags.format_weight(a["weight"]),
        }[call["fn"]]()
        return {"result": result}
    except ValueError:
        return {"error": "RangeError"}
    except TypeError:
        return {"error": "TypeError"}


def test_javascript_matches_python_on_random_prompts():
    node = node_executable()
    calls = random_calls(random.Random(20231109), 3000)
    run = subprocess.run(
        [node, str(JS_TESTS / "prompt_tags_cli.mjs")],
        input=json.dumps(calls),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    js_results = json.loads(run.stdout)
    assert len(js_results) == len(calls)
    mismatches = [
        (call, js, py)
        for call, js in zip(calls, js_results, strict=True)
        if js != (py := python_result(call))
    ]
    assert not mismatches, f"{len(mismatches)} of {len(calls)} differ, first: {mismatches[0]}"
    assert sum("error" in r for r in js_results) < len(calls) // 10
