/* global gradioApp, onUiLoaded, onOptionsChanged, lcmLoraPrompt, lcmLoraHost, module, require */
// The LCM-LoRA panel's page logic: switching the panel on sets the tab's own Sampling method, Schedule type,
// Sampling steps, CFG Scale, hires controls and the prompt's <lora:STEM:W> tag; switching it off gives the
// user's values back (those the user changed meanwhile stay as they are).
//
// lib_lcm_webui/panel.py wires gradio events with `_js` = lcmLoraPanel.handle(config, args): gradio passes the
// current values of the panel and of the tab's controls, and applies the values returned (gradio updates),
// without a request to the server. `config` (lib_lcm_webui.panel.page_config) carries every fact this script
// needs: the sampler per mode (`samplers`), every catalogue file's stem (`stems`) and what the host controls that
// follow no panel value are set to (`fixed`). A family other than LCM-LoRA runs its file's recipe: the status line
// names that sampler (`data-lcm-sampler`), which then wins over the mode's. `react` below is the pure part (tested with node --test in
// tests/js/panel_logic.test.mjs).

var lcmLoraPanel = (function() {
    "use strict";

    var MODE_TCD = "TCD";
    var NO_CHANGE = Object.freeze({__type__: "update"});
    // The host controls that follow a panel value: {control: the panel value it follows}.
    var FOLLOWERS = {sampler: "mode", host_steps: "steps", host_cfg_scale: "cfg_scale"};

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

    // The sampler of the family's file the server put in the status line, or undefined (LCM-LoRA: by mode).
    function samplerFromStatus(statusHtml) {
        var match = /data-lcm-sampler="([^"]*)"/.exec(statusHtml || "");
        return match && match[1] ? match[1] : undefined;
    }

    function sameValue(a, b) {
        if (typeof a === "number" || typeof b === "number") {
            return a !== "" && b !== "" && a !== null && b !== null && Number(a) === Number(b);
        }
        return a === b;
    }

    function targetValues(values, config) {
        var targets = {};
        Object.keys(FOLLOWERS).concat(Object.keys(config.fixed)).forEach(function(name) {
            if (!(name in values)) return;
            if (name === "sampler") targets[name] = samplerFromStatus(values.status) || config.samplers[values.mode];
            else if (name in FOLLOWERS) targets[name] = values[FOLLOWERS[name]];
            else targets[name] = config.fixed[name];
        });
        return targets;
    }

    function newState() {
        return {active: false, saved: {}, applied: {}, promptBefore: null, promptAfter: null, promptEdited: false,
            tagStem: null, userHadTag: false};
    }

    // The prompt with the panel's tag for `stem` (undefined: leave the prompt alone until the stem is known).
    function taggedPrompt(prompt, stem, weight, state, stems) {
        var tools = promptTools();
        if (stem) return tools.applyLcmTag(prompt, stem, Number(weight), stems);
        if (stem === null && state.tagStem && !state.userHadTag) return tools.removeLcmTag(prompt, stems, state.tagStem);
        return prompt;
    }

    function enable(state, values, config) {
        var changes = {};
        var stem = stemFromStatus(values.status);
        var targets = targetValues(values, config);
        state.active = true;
        state.saved = {};
        state.applied = targets;
        Object.keys(targets).forEach(function(name) {
            state.saved[name] = values[name];
            changes[name] = targets[name];
        });
        state.promptBefore = values.prompt;
        state.userHadTag = promptTools().findLcmTags(values.prompt, config.stems).length > 0;
        state.promptEdited = false;
        state.tagStem = null;
        var prompt = taggedPrompt(values.prompt, stem, values.weight, state, config.stems);
        if (stem) state.tagStem = stem;
        state.promptAfter = prompt;
        if (prompt !== values.prompt) changes.prompt = prompt;
        return changes;
    }

    function sync(state, values, config) {
        var changes = {};
        var targets = targetValues(values, config);
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
        var prompt = taggedPrompt(values.prompt, stem, values.weight, state, config.stems);
        if (stem !== undefined) state.tagStem = stem;
        if (prompt !== values.prompt) {
            changes.prompt = prompt;
            state.promptAfter = prompt;
        }
        return changes;
    }

    function disable(state, values, config) {
        var changes = {};
        Object.keys(state.applied).forEach(function(name) {
            if (name in values && sameValue(values[name], state.applied[name])) changes[name] = state.saved[name];
        });
        if (!state.promptEdited && values.prompt === state.promptAfter) {
            if (state.promptBefore !== values.prompt) changes.prompt = state.promptBefore;
        } else if (state.tagStem && !state.userHadTag) {
            var prompt = promptTools().removeLcmTag(values.prompt, config.stems, state.tagStem);
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
    // controls that exist (prompt, sampler, scheduler, host_steps, host_cfg_scale, hr_*); `config` is the
    // server's (samplers, stems, fixed). Mutates `state`.
    function react(state, values, config) {
        if (values.enabled && !state.active) return enable(state, values, config);
        if (!values.enabled && state.active) return disable(state, values, config);
        if (values.enabled) return sync(state, values, config);
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
            changes = react(state, values, config);
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

    function host() {
        return typeof lcmLoraHost !== "undefined" ? lcmLoraHost : require("./lcm_lora_host.js");
    }

    function refreshStatus() {
        gradioApp().querySelectorAll(".lcm-lora-refresh").forEach(function(button) {
            button.click();
        });
    }

    function onOptions(force) {
        var checkpoint = host().checkpoint();
        if (force !== true && (checkpoint === undefined || checkpoint === lastCheckpoint)) return;
        lastCheckpoint = checkpoint;
        refreshStatus();
    }

    // A checkpoint picked in Forge 2's top bar does not change the page's options: its value is watched (once a
    // second) instead. The refresh waits for the host's own change event to reach the server first.
    var TOP_BAR_SETTLE_MS = 1000;
    var lastTopBar;

    function watchTopBar() {
        var checkpoint = host().topBarCheckpoint();
        if (checkpoint === undefined || checkpoint === lastTopBar) return;
        var first = lastTopBar === undefined;
        lastTopBar = checkpoint;
        if (!first) setTimeout(refreshStatus, TOP_BAR_SETTLE_MS);
    }

    return Object.freeze({
        handle: handle,
        react: react,
        newState: newState,
        stemFromStatus: stemFromStatus,
        samplerFromStatus: samplerFromStatus,
        gammaVisibility: gammaVisibility,
        onOptions: onOptions,
        watchTopBar: watchTopBar,
        refreshStatus: refreshStatus,
    });
})();

if (typeof module !== "undefined" && module.exports) {
    module.exports = lcmLoraPanel;
} else {
    onUiLoaded(function() {
        lcmLoraPanel.onOptions(true);
        setInterval(lcmLoraPanel.watchTopBar, 1000);
    });
    onOptionsChanged(lcmLoraPanel.onOptions);
}
