"""Prompt editing for the LCM-LoRA `<lora:...>` tag: find, apply (insert/update), remove, resolve the alias.

Mirrored line for line by `javascript/lcm_lora_prompt.js`; both are tested against `tests/prompt_tag_cases.json`.

Parsing follows the host exactly (AUTOMATIC1111 1.6-1.10):
- `modules/extra_networks.py`: a tag is `re.compile(r"<(\\w+):([^>]+)>")`, scanned left to right; the network
  type is case-sensitive (`<LORA:x>` is an unknown network the host skips), its arguments are split on ":" and
  an item with exactly one "=" is a named argument.
- `extensions-builtin/Lora`: the networks "lora" and its alias "lyco" load LoRAs; the name is the first
  positional item, `te` = positional[1] or te=, `unet` = positional[2] or unet= (defaulting to te), 1.0 when
  absent.

Rules this module adds on top:
- An LCM tag is a lora/lyco tag whose name (ASCII case-insensitive, surrounding whitespace ignored) is one of
  `stems` (the LCM-LoRA file stems of the weights registry, `lib_lcm.weights.registry.stems()`, passed in by the caller:
  the registry is their one home) or the alias "lcm", which stands for the loaded checkpoint's variant.
- Its weight is the UNet multiplier: LCM-LoRA holds UNet weights only, so `<lora:NAME:TE:UNET>` has weight UNET.
  A weight is explicit when te or unet is given and every multiplier the host would read is a finite number.
- Insertion appends " <tag>" after the last non-whitespace character (trailing whitespace stays after the tag);
  an empty or whitespace-only prompt gets the tag at its end. No comma is added (the host's own separator is a
  space). If an unclosed `<word:` before the end would swallow the new tag, the tag goes first instead.
- Several LCM tags: the first one is kept (rewritten) and the others are removed.
- Removal deletes the tag (with a comma right after it) and one separator, so `remove(apply(p)) == p`; newlines
  and other networks' tags are never touched.

Public API (the JS file exports the same in camelCase on `lcmLoraPrompt`, same argument order):
- find_lcm_tags(prompt, stems) -> [LcmTag(text, name, stem or None for the alias, weight or None, start, end)]
  (`stem` is spelled as in `stems`)
- has_lcm_alias(prompt) -> bool
- apply_lcm_tag(prompt, stem, weight, stems, respect_user_weight=False) -> str
- remove_lcm_tag(prompt, stems, stem=None) -> str
- resolve_lcm_alias(prompt, stem, stems) -> str
- format_weight(weight) -> str, lcm_tag(stem, weight) -> str
Bad arguments raise TypeError/ValueError (JS: TypeError/RangeError) with a message naming the value.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

LCM_ALIAS = "lcm"
LORA_NETWORKS = ("lora", "lyco")
WEIGHT_DECIMALS = 6
MAX_ABS_WEIGHT = 1e6

# The host's pattern, verbatim: `\w` is Unicode-aware here (JS uses [\p{L}\p{N}_] with the u flag).
RE_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
RE_OPEN_END = re.compile(r"<\w*\Z")
RE_CLOSE_START = re.compile(r"\w*:")
RE_TAG_NAME = re.compile(r"[^\s:<>=]+")  # a name the host's parser reads back as one positional item
RE_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
WHITESPACE = " \t\n\r\f\v"
LINE_SPACE = " \t\r\f\v"


@dataclass(frozen=True)
class LcmTag:
    """One LCM tag in a prompt; `start`/`end` index code points (`prompt[start:end] == text`)."""

    text: str
    name: str
    stem: str | None
    weight: float | None
    start: int
    end: int


def format_weight(weight: float) -> str:
    """Compact decimal text of a LoRA weight: 1 -> "1", 0.30000000000000004 -> "0.3".

    Rounded to WEIGHT_DECIMALS places, halves away from zero (as JS `toFixed` on the magnitude), trailing zeros
    dropped, never an exponent and never "-0".
    """
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise TypeError(f"LCM-LoRA weight must be a number, got {weight!r}")
    if not abs(weight) < MAX_ABS_WEIGHT:  # also NaN, infinities and ints too large for a float
        raise ValueError(f"LCM-LoRA weight must be a finite number below {MAX_ABS_WEIGHT:g} in size, got {repr(weight)[:40]}")
    weight = float(weight)
    quantum = Decimal(1).scaleb(-WEIGHT_DECIMALS)
    digits = format(Decimal(abs(weight)).quantize(quantum, rounding=ROUND_HALF_UP), "f")
    digits = digits.rstrip("0").rstrip(".")
    if digits == "0":
        return "0"
    return "-" + digits if weight < 0 else digits


def lcm_tag(stem: str, weight: float) -> str:
    """The tag the extension writes: `<lora:STEM:WEIGHT>`."""
    if not isinstance(stem, str) or not RE_TAG_NAME.fullmatch(stem):
        raise ValueError(f"LCM-LoRA file stem {stem!r} cannot be written in a <lora:...> tag")
    return f"<lora:{stem}:{format_weight(weight)}>"


def find_lcm_tags(prompt: str, stems) -> list[LcmTag]:
    """Every LCM tag in `prompt` (the alias, or one of `stems`), in order, as the host's parser sees the prompt."""
    _check_prompt(prompt)
    by_key = _stem_keys(stems)
    found = []
    for match in RE_EXTRA_NETWORK.finditer(prompt):
        parsed = _parse_lora_args(match.group(1), match.group(2), by_key)
        if parsed is None:
            continue
        name, stem, weight = parsed
        found.append(LcmTag(match.group(0), name, stem, weight, match.start(), match.end()))
    return found


def lora_names(prompt: str) -> list[str]:
    """The name of every `<lora:NAME...>` / `<lyco:NAME...>` tag in `prompt`, as the host's parser reads it, in order."""
    _check_prompt(prompt)
    names = []
    for match in RE_EXTRA_NETWORK.finditer(prompt):
        positional, _ = _split_items(match.group(2)) if match.group(1) in LORA_NETWORKS else ([], {})
        if positional and positional[0][1].strip(WHITESPACE):
            names.append(positional[0][1].strip(WHITESPACE))
    return names


def has_lcm_alias(prompt: str) -> bool:
    """Whether the prompt uses the `<lora:lcm...>` alias."""
    return any(tag.stem is None for tag in find_lcm_tags(prompt, ()))


def apply_lcm_tag(prompt: str, stem: str, weight: float, stems, respect_user_weight: bool = False) -> str:
    """Make `prompt` hold exactly one LCM tag, for `stem`.

    Without an LCM tag, " <lora:STEM:WEIGHT>" is inserted (see the module docstring). Otherwise the first LCM tag
    is rewritten where it stands and the others are removed. The rewrite is the whole tag
    `<lora:STEM:WEIGHT>` (the panel's weight wins), or with `respect_user_weight` only the name, when the user
    gave an explicit weight: `<lora:lcm:0.5>` -> `<lora:STEM:0.5>`, `<lora:lcm>` -> `<lora:STEM:WEIGHT>`.
    """
    _check_prompt(prompt)
    _check_stem(stem, stems)
    new_tag = lcm_tag(stem, weight)
    tags = find_lcm_tags(prompt, stems)
    if not tags:
        return _insert(prompt, new_tag, stems)
    text = prompt
    for tag in reversed(tags[1:]):
        text = _remove_span(text, tag.start, tag.end)
    first = tags[0]
    if respect_user_weight and first.weight is not None:
        new_tag = _renamed(first.text, stem)
    return text[: first.start] + new_tag + text[first.end :]


def remove_lcm_tag(prompt: str, stems, stem: str | None = None) -> str:
    """Remove LCM tags and the separator next to each; only those naming `stem` when it is given."""
    _check_prompt(prompt)
    if stem is not None:
        _check_stem(stem, stems)
    text = prompt
    for tag in reversed(find_lcm_tags(prompt, stems)):
        if stem is None or tag.stem == stem:
            text = _remove_span(text, tag.start, tag.end)
    return text


def resolve_lcm_alias(prompt: str, stem: str, stems) -> str:
    """Rewrite every `<lora:lcm...>` alias to name `stem`, keeping its weight and other arguments."""
    _check_prompt(prompt)
    _check_stem(stem, stems)
    text = prompt
    for tag in reversed(find_lcm_tags(prompt, stems)):
        if tag.stem is None:
            text = text[: tag.start] + _renamed(tag.text, stem) + text[tag.end :]
    return text


def _check_prompt(prompt):
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")


def _stem_keys(stems) -> dict:
    """{ASCII-lower-case stem: stem as the registry spells it}."""
    if isinstance(stems, str) or not all(isinstance(stem, str) for stem in stems):
        raise TypeError(f"stems must be a list of strings, got {stems!r}")
    return {stem.lower(): stem for stem in stems}


def _check_stem(stem, stems):
    if stem not in _stem_keys(stems).values():
        raise ValueError(f"unknown LCM-LoRA file stem {stem!r}; expected one of {', '.join(stems)}")


def _split_items(args: str):
    """The host's ExtraNetworkParams: (positional items as (index, text)), {name: value} for `k=v` items."""
    positional, named = [], {}
    for index, item in enumerate(args.split(":")):
        parts = item.split("=")
        if len(parts) == 2:
            named[parts[0]] = parts[1]
        else:
            positional.append((index, item))
    return positional, named


def _parse_lora_args(network: str, args: str, by_key: dict):
    """(name, stem or None for the alias, weight) when the tag is an LCM tag, else None."""
    if network not in LORA_NETWORKS:
        return None
    positional, named = _split_items(args)
    if not positional:
        return None
    name = positional[0][1]
    key = name.strip(WHITESPACE)
    if not key.isascii():
        return None
    key = key.lower()
    if key == LCM_ALIAS:
        stem = None
    elif key in by_key:
        stem = by_key[key]
    else:
        return None
    return name, stem, _unet_weight([item for _, item in positional], named)


def _number(text: str) -> float | None:
    text = text.strip(WHITESPACE)
    if not RE_NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _unet_weight(positional: list[str], named: dict[str, str]) -> float | None:
    """The host's unet multiplier when given explicitly and every multiplier it reads parses, else None."""
    given = positional[1:3] + [named[key] for key in ("te", "unet") if key in named]
    if not given:
        return None
    values = [_number(text) for text in given]
    if any(value is None for value in values):
        return None
    if "unet" in named:
        return _number(named["unet"])
    if len(positional) > 2:
        return _number(positional[2])
    if "te" in named:
        return _number(named["te"])
    return _number(positional[1])


def _renamed(tag_text: str, stem: str) -> str:
    """`tag_text` with its name item (the first positional one) replaced by `stem`."""
    match = RE_EXTRA_NETWORK.fullmatch(tag_text)
    items = match.group(2).split(":")
    positional, _ = _split_items(match.group(2))
    items[positional[0][0]] = stem
    return f"<{match.group(1)}:{':'.join(items)}>"


def _insert(prompt: str, tag: str, stems) -> str:
    body = prompt.rstrip(WHITESPACE)
    if body:
        candidate = body + " " + tag + prompt[len(body) :]
        start = len(body) + 1
    else:
        candidate = prompt + tag
        start = len(prompt)
    if [found.start for found in find_lcm_tags(candidate, stems)] == [start]:
        return candidate
    # An unclosed `<word:` before the end would make the appended tag part of itself.
    return tag + " " + prompt


def _remove_span(text: str, start: int, end: int) -> str:
    """Delete text[start:end] (a tag), a comma right after it, and one neighbouring separator.

    On its line, with content on both sides the left run of spaces is kept (else the right one), and a comma
    that followed the tag moves to the left content if that lacks one; at the end of a line one space before
    the tag goes; at the start of a line (or alone on it) one character of the space after it goes.
    Newlines are never removed, and one space is kept where gluing both sides would make a new tag.
    """
    after = end + 1 if text[end : end + 1] == "," else end
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", after)
    if line_end < 0:
        line_end = len(text)
    left, right = text[line_start:start], text[after:line_end]
    left_content = left.rstrip(LINE_SPACE)
    left_space = len(left) - len(left_content)
    right_space = len(right) - len(right.lstrip(LINE_SPACE))
    has_next = right_space < len(right)
    if not left_content:
        return text[:start] + text[after + min(right_space, 1) :]
    if not has_next:
        return text[: start - min(left_space, 1)] + text[after:]
    comma = "," if after > end and not left_content.endswith(",") else ""
    kept = text[start - left_space : start] if left_space else text[after : after + right_space]
    if not comma and not kept and RE_OPEN_END.search(left_content) and RE_CLOSE_START.match(right):
        kept = " "  # joining `<word` and `word:...>` would make a new tag
    return text[: start - left_space] + comma + kept + text[after + right_space :]
