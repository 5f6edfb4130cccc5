"""X/Y/Z plot axes for LCM-LoRA (weight, steps, sampler mode, TCD gamma, family).

An axis value lands in the generation state's `overrides`; the script merges it over the panel's values and
an axis implies LCM-LoRA on (plotting an LCM axis with LCM off would plot nothing).
"""
from __future__ import annotations

from modules import scripts

from lib_lcm.params import PARAMS_BY_KEY
from lib_lcm_webui.state import generation_state, update_generation_state

# In the order the plot's axis list has always shown them (its indices are public through the API).
AXES = tuple((key, PARAMS_BY_KEY[key].axis) for key in ("weight", "steps", "mode", "gamma", "family"))
AXIS_LABELS = tuple(label for _, label in AXES)


def _setter(key):
    def apply(p, value, _values):
        overrides = {**generation_state(p).overrides, key: value, "enabled": True}
        update_generation_state(p, overrides=overrides)
    return apply


def _xyz_script_data():
    for data in scripts.scripts_data:
        if data.script_class.__module__ in ("xyz_grid.py", "scripts.xyz_grid") or data.path.endswith("xyz_grid.py"):
            return data
    return None


def _axis_option(xyz, key, label):
    param = PARAMS_BY_KEY[key]
    if param.choices:
        return xyz.AxisOption(label, str, _setter(key), choices=lambda c=param.labels or param.choices: list(c))
    return xyz.AxisOption(label, param.kind, _setter(key))


def register_axes():
    """Idempotent: re-running (Reload UI) never adds an axis twice.

    API-only starts build the X/Y/Z script's axis list (its ui()) before on_before_ui, so the script
    instances that already exist get the new axes appended too (at the end: existing indices stay valid).
    """
    data = _xyz_script_data()
    if data is None:
        return False
    xyz = data.module
    present = {axis.label for axis in xyz.axis_options}
    xyz.axis_options.extend(_axis_option(xyz, key, label) for key, label in AXES if label not in present)
    ours = [axis for axis in xyz.axis_options if axis.label in AXIS_LABELS]
    for instance in _xyz_script_instances(data.script_class):
        current = getattr(instance, "current_axis_options", None)
        if current is not None:
            labels = {axis.label for axis in current}
            current.extend(axis for axis in ours if axis.label not in labels)
    return True


def _xyz_script_instances(script_class):
    """The X/Y/Z script's instances, by the class the host registered (A1111 and Forge name it `Script`, Forge
    Classic's built-in xyz extension `XYZ`)."""
    for runner in (getattr(scripts, "scripts_txt2img", None), getattr(scripts, "scripts_img2img", None)):
        for script in getattr(runner, "scripts", None) or ():
            if isinstance(script, script_class):
                yield script
