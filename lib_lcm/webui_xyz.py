"""WebUI glue: X/Y/Z plot axes for LCM-LoRA (weight, steps, sampler mode, TCD gamma).

An axis value lands in `p.lcm_lora_overrides`; the script merges it over the panel's values and an axis
implies LCM-LoRA on (plotting an LCM axis with LCM off would plot nothing).
"""
from __future__ import annotations

from lib_lcm.params import PARAMS

AXES = (("weight", "LCM-LoRA weight"), ("steps", "LCM-LoRA steps"), ("mode", "LCM-LoRA mode"),
        ("gamma", "LCM-LoRA TCD gamma"))


def _setter(key):
    def apply(p, value, _values):
        overrides = dict(getattr(p, "lcm_lora_overrides", None) or {})
        overrides[key] = value
        overrides["enabled"] = True
        p.lcm_lora_overrides = overrides
    return apply


def find_xyz_module():
    from modules import scripts

    for data in scripts.scripts_data:
        if data.script_class.__module__ in ("xyz_grid.py", "scripts.xyz_grid") or data.path.endswith("xyz_grid.py"):
            return data.module
    return None


def register_axes():
    """Idempotent: re-running (Reload UI) never adds an axis twice.

    API-only starts build the X/Y/Z script's axis list (its ui()) before on_before_ui, so the script
    instances that already exist get the new axes appended too (at the end: existing indices stay valid).
    """
    xyz = find_xyz_module()
    if xyz is None:
        return False
    by_key = {param.key: param for param in PARAMS}
    present = {axis.label for axis in xyz.axis_options}
    for key, label in AXES:
        if label in present:
            continue
        param = by_key[key]
        if param.choices:
            option = xyz.AxisOption(label, str, _setter(key), choices=lambda c=param.choices: list(c))
        else:
            option = xyz.AxisOption(label, param.kind, _setter(key))
        xyz.axis_options.append(option)
    ours = [axis for axis in xyz.axis_options if axis.label in {label for _, label in AXES}]
    for instance in _xyz_script_instances(xyz):
        current = getattr(instance, "current_axis_options", None)
        if current is not None:
            labels = {axis.label for axis in current}
            current.extend(axis for axis in ours if axis.label not in labels)
    return True


def _xyz_script_instances(xyz):
    from modules import scripts

    for runner in (getattr(scripts, "scripts_txt2img", None), getattr(scripts, "scripts_img2img", None)):
        for script in getattr(runner, "scripts", None) or ():
            if isinstance(script, xyz.Script):
                yield script
