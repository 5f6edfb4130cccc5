/* global gradioApp, onUiLoaded, onOptionsChanged, opts, lcmLoraPrompt, module, require */
// The LCM-LoRA panel's page logic: switching the panel on sets the tab's own Sampling method, Schedule type,
// Sampling steps, CFG Scale, hires controls and the prompt's <lora:STEM:W> tag; switching it off gives the
// user's values back (those the user changed meanwhile stay as they are).
//
// lib_lcm/webui_ui.py wires gradio events with `_js` = lcmLoraPanel.handle(config, args): gradio passes the
// current values of the panel and of the tab's controls, and applies the values returned (gradio updates),
// without a request to the server. `react` below is the pure part (tested with node --test in tests/js/panel_logic.test.mjs).

var lcmLoraPanel = (function() {
    "use strict";

    var MODE_TCD = "TCD";
    // What each host control is set to while the panel is on; the hires pass follows the first pass.
    var FIXED_TARGETS = {
        scheduler: "Automatic",
        hr_sampler: "Use same sampler",
        hr_scheduler: "Use same scheduler",
        hr_steps: 0,
    };
    var NO_CHANGE = Object.freeze({__type__: "update"});
    var HOST_CONTROLS = ["sampler", "scheduler", "host_steps", "host_cfg_scale", "hr_sampler", "hr_scheduler",
        "hr_steps"];

    function promptTools() {
        if (typeof lcmLoraPrompt !== "undefined") return lcmLoraPrompt;
        if (typeof require === "function") return require("./lcm_lora_prompt.js");
        throw new Error("LCM-LoRA: javascript/lcm_lora_prompt.js is not loaded");
    }

    // The LoRA stem the server put in the status line: a stem, null (this checkpoint has none) or undefined
    // (not known yet: the status line is still being computed).
    function stemFromStatus(statusHtml) {
        var match = /data-lcm-stem="([^"]*)"/.exec(statusHtml || "");
        if (!match) return undefined;
        return match[1] === "" ? null : match[1];
    }

    function sameValue(a, b) {
        if (typeof a === "number" || typeof b === "number") {
            return a !== "" && b !== "" && a !== null && b !== null && Number(a) === Number(b);
        }
        return a === b;
    }

    function targetValues(values, samplers) {
        var targets = {};
        HOST_CONTROLS.forEach(function(name) {
            if (!(name in values)) return;
            if (name === "sampler") targets[name] = values.mode === MODE_TCD ? samplers.TCD : samplers.LCM;
            else if (name === "host_steps") targets[name] = values.steps;
            else if (name === "host_cfg_scale") targets[name] = values.cfg_scale;
            else targets[name] = FIXED_TARGETS[name];
        });
        return targets;
    }

    function newState() {
        return {active: false, saved: {}, applied: {}, promptBefore: null, promptAfter: null, promptEdited: false,
            tagStem: null, userHadTag: false};
    }

    // The prompt with the panel's tag for `stem` (undefined: leave the prompt alone until the stem is known).
    function taggedPrompt(prompt, stem, weight, state) {
        var tools = promptTools();
        if (stem) return tools.applyLcmTag(prompt, stem, Number(weight));
        if (stem === null && state.tagStem && !state.userHadTag) return tools.removeLcmTag(prompt, state.tagStem);
        return prompt;
    }

    function enable(state, values, samplers) {
        var changes = {};
        var stem = stemFromStatus(values.status);
        var targets = targetValues(values, samplers);
        state.active = true;
        state.saved = {};
        state.applied = targets;
        Object.keys(targets).forEach(function(name) {
            state.saved[name] = values[name];
            changes[name] = targets[name];
        });
        state.promptBefore = values.prompt;
        state.userHadTag = promptTools().findLcmTags(values.prompt).length > 0;
        state.promptEdited = false;
        state.tagStem = null;
        var prompt = taggedPrompt(values.prompt, stem, values.weight, state);
        if (stem) state.tagStem = stem;
        state.promptAfter = prompt;
        if (prompt !== values.prompt) changes.prompt = prompt;
        return changes;
    }

    function sync(state, values, samplers) {
        var changes = {};
        var targets = targetValues(values, samplers);
        Object.keys(targets).forEach(function(name) {
            if (!sameValue(targets[name], state.applied[name])) {
                changes[name] = targets[name];
                state.applied[name] = targets[name];
            }
        });
        // A prompt equal to the one before switching on comes from an event that fired together with the switch
        // (gradio reads every handler's inputs before applying any result): not an edit.
        if (values.prompt !== state.promptAfter && values.prompt !== state.promptBefore) state.promptEdited = true;
        var stem = stemFromStatus(values.status);
        var prompt = taggedPrompt(values.prompt, stem, values.weight, state);
        if (stem !== undefined) state.tagStem = stem;
        if (prompt !== values.prompt) {
            changes.prompt = prompt;
            state.promptAfter = prompt;
        }
        return changes;
    }

    function disable(state, values) {
        var changes = {};
        Object.keys(state.applied).forEach(function(name) {
            if (name in values && sameValue(values[name], state.applied[name])) changes[name] = state.saved[name];
        });
        if (!state.promptEdited && values.prompt === state.promptAfter) {
            if (state.promptBefore !== values.prompt) changes.prompt = state.promptBefore;
        } else if (state.tagStem && !state.userHadTag) {
            var prompt = promptTools().removeLcmTag(values.prompt, state.tagStem);
            if (prompt !== values.prompt) changes.prompt = prompt;
        }
        var fresh = newState();
        Object.keys(fresh).forEach(function(key) {
            state[key] = fresh[key];
        });
        return changes;
    }

    // Pure: given the panel's state and the current values, what to change ({name: new value}).
    // `values` holds the panel's inputs (enabled, steps, cfg_scale, weight, mode, status) and the tab's
    // controls that exist (prompt, sampler, scheduler, host_steps, host_cfg_scale, hr_*). Mutates `state`.
    function react(state, values, samplers) {
        if (values.enabled && !state.active) return enable(state, values, samplers);
        if (!values.enabled && state.active) return disable(state, values);
        if (values.enabled) return sync(state, values, samplers);
        return {};
    }

    var states = {};

    // gradio `_js` entry: args = the event's input values followed by its outputs' current values.
    // Unchanged outputs get an empty update, not their value: when several of the panel's events fire at once
    // (a paste sets many controls), each handler sees the values from before any of them ran, and writing
    // those back would undo what the others set.
    function handle(config, args) {
        var values = {};
        config.inputs.forEach(function(name, i) {
            values[name] = args[i];
        });
        var state = states[config.tab] || (states[config.tab] = newState());
        var changes;
        try {
            changes = react(state, values, config.samplers);
        } catch (e) {
            console.error("LCM-LoRA panel:", e);
            changes = {};
        }
        return config.outputs.map(function(name) {
            return name in changes ? changes[name] : NO_CHANGE;
        });
    }

    function gammaVisibility(mode) {
        return {__type__: "update", visible: mode === MODE_TCD};
    }

    // The status lines are refreshed by the server on request: when the panel is switched on, when the
    // checkpoint changes (the options JSON the page keeps changes with it) and once the page is up.
    var lastCheckpoint;

    function refreshStatus() {
        ["txt2img", "img2img"].forEach(function(tab) {
            var button = gradioApp().getElementById("lcm_lora_" + tab + "_refresh");
            if (button) button.click();
        });
    }

    function onOptions(force) {
        var checkpoint = typeof opts === "object" && opts ? opts.sd_model_checkpoint : undefined;
        if (force !== true && (checkpoint === undefined || checkpoint === lastCheckpoint)) return;
        lastCheckpoint = checkpoint;
        refreshStatus();
    }

    return Object.freeze({
        handle: handle,
        react: react,
        newState: newState,
        stemFromStatus: stemFromStatus,
        gammaVisibility: gammaVisibility,
        onOptions: onOptions,
        refreshStatus: refreshStatus,
    });
})();

if (typeof module !== "undefined" && module.exports) {
    module.exports = lcmLoraPanel;
} else {
    onUiLoaded(function() {
        lcmLoraPanel.onOptions(true);
    });
    onOptionsChanged(lcmLoraPanel.onOptions);
}
