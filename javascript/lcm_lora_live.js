/* global gradioApp, lcmLoraPrompt, module, require */
// LCM-LoRA Live: while the panel's Live switch is on, every edit that changes the image (prompt, negative prompt,
// seed, size, the panel's values; in img2img the input image and denoising strength) leads to one new image,
// without clicking Generate.
//
// - Latest wins: while a generation runs, edits only mark the tab dirty; when it ends, one new generation starts
//   if anything changed. Never more than one waits; the states in between are dropped.
// - Adaptive wait (Krita AI Diffusion's Live rule, for typing): when the last image took at most `slowMs`, start
//   at once; when it took longer and the edit was typed text (prompt, negative prompt), wait for a pause of
//   `pauseMs` in the edits, but never more than `maxWaitMs` after the first edit still waiting. Other edits (a
//   slider, the seed, an image) come one at a time: they start at once.
// - One seed: Live draws a seed when it is switched on; a live request carries it, and the server uses it where
//   the seed is -1 (random), so the image changes only because the user changed something.
//
// A live image is requested by clicking the tab's own Generate button with the panel's hidden `live` and
// `live_seed` fields set (lib_lcm_webui/live_ui.py wires the events; lib_lcm_webui/live.py does the server's
// part: not saved, batch size 1, no per-step previews, TAESD decode). The part below `react` is pure and tested
// with node --test (tests/js/live_logic.test.mjs).

var lcmLoraLive = (function() {
    "use strict";

    // Krita starts at once below 1.5 s (a GPU's sub-second images). An image started on a word's first key makes the
    // word's own image wait for it (up to one image later, seen in bench/live_latency.py at 64x64 on a CPU, where an
    // image takes about 1.2 s in the page), while the pause costs 0.25 s: the pause applies from 0.5 s.
    var RULES = Object.freeze({slowMs: 500, pauseMs: 250, maxWaitMs: 3000});
    var NO_CHANGE = Object.freeze({__type__: "update"});
    var SEED_RANGE = 4294967296;
    var TYPED = Object.freeze(["prompt", "negative"]);

    function newState() {
        return {on: false, running: false, dirty: false, typing: false, seed: -1, seen: {}, firstEditAt: null,
            lastEditAt: null,
            startedAt: null, lastDurationMs: null, generations: 0, completed: 0};
    }

    // Milliseconds until a waiting edit may start a generation (0: now).
    function wait(state, now, rules) {
        if (!state.typing || state.lastDurationMs === null || state.lastDurationMs <= rules.slowMs) return 0;
        var pause = state.lastEditAt + rules.pauseMs - now;
        var cap = state.firstEditAt + rules.maxWaitMs - now;
        return Math.max(0, Math.min(pause, cap));
    }

    function markDirty(state, now, typing) {
        if (!state.dirty) state.firstEditAt = now;
        state.dirty = true;
        state.typing = Boolean(typing);
        state.lastEditAt = now;
    }

    // Pure: the Live state machine. `event` is one of
    //   {type: "on", now, seed, values}   the switch went on (values: the watched controls now)
    //   {type: "off"}                     the switch (or the panel) went off
    //   {type: "edit", now, name, value}  a watched control changed (value already normalised)
    //   {type: "tick", now}               a timer set from an earlier `startIn` fired
    //   {type: "finished", now}           the host showed a result
    // Returns what to do: {start: bool, startIn: ms or null, interrupt: bool}. Mutates `state`.
    function react(state, event, rules) {
        rules = rules || RULES;
        var todo = {start: false, startIn: null, interrupt: false};
        if (event.type === "on") {
            if (state.on) return todo;
            state.on = true;
            state.seed = event.seed;
            state.seen = Object.assign({}, event.values || {});
            markDirty(state, event.now);
        } else if (event.type === "off") {
            todo.interrupt = state.on && state.running;
            state.on = false;
            state.dirty = false;
            return todo;
        } else if (event.type === "edit") {
            if (event.name in state.seen && state.seen[event.name] === event.value) return todo;
            state.seen[event.name] = event.value;
            if (!state.on) return todo;
            markDirty(state, event.now, TYPED.indexOf(event.name) >= 0);
        } else if (event.type === "finished") {
            if (!state.running) return todo;
            state.running = false;
            state.completed += 1;
            state.lastDurationMs = event.now - state.startedAt;
        }
        if (!state.on || state.running || !state.dirty) return todo;
        var ms = wait(state, event.now, rules);
        if (ms > 0) {
            todo.startIn = ms;
            return todo;
        }
        state.running = true;
        state.dirty = false;
        state.startedAt = event.now;
        state.generations += 1;
        todo.start = true;
        return todo;
    }

    function drawSeed(hostSeed) {
        var seed = Number(hostSeed);
        if (Number.isInteger(seed) && seed >= 0 && seed < SEED_RANGE) return seed;
        return Math.floor(Math.random() * SEED_RANGE);
    }

    // What counts as a change. The prompt without an LCM-LoRA tag at the panel's weight: the panel writes that
    // tag when it switches on and moves it with its weight slider, and the server adds the same tag to a live
    // request anyway, so the image is the same with or without it. A tag at another weight stays: it wins.
    function normalise(name, value, stems, panelWeight) {
        if (name === "prompt" && typeof value === "string") {
            var tools = typeof lcmLoraPrompt !== "undefined" ? lcmLoraPrompt : require("./lcm_lora_prompt.js");
            var tags = tools.findLcmTags(value, stems);
            var text = value;
            for (var i = tags.length - 1; i >= 0; i--) {
                if (Number(tags[i].weight) === Number(panelWeight)) text = text.slice(0, tags[i].start) + text.slice(tags[i].end);
            }
            return text.replace(/\s+/g, " ").trim();
        }
        if (value !== null && typeof value === "object") return JSON.stringify(value);
        return value;
    }

    // -- the page ------------------------------------------------------------------------------------------

    var tabs = {};

    function tabOf(config) {
        return tabs[config.tab] ||
            (tabs[config.tab] = {state: newState(), timer: null, watchdog: null, seedSent: null,
                config: config});
    }

    function element(id) {
        return gradioApp().getElementById(id);
    }

    // Set a panel field through its DOM input, as typing would: gradio reads it into the request.
    function setField(id, value) {
        var root = element(id);
        var input = root && root.querySelector("input");
        if (!input) return;
        if (input.type === "checkbox") {
            if (input.checked !== value) input.checked = value;
            input.dispatchEvent(new Event("change", {bubbles: true}));
        } else {
            input.value = String(value);
            input.dispatchEvent(new Event("input", {bubbles: true}));
        }
    }

    function nextTask() {
        return new Promise(function(resolve) {
            setTimeout(resolve, 0);
        });
    }

    function generating(t) {
        var interrupt = element(t.config.host.interrupt);
        return Boolean(interrupt && interrupt.style.display !== "none" && interrupt.offsetParent !== null);
    }

    function apply(t, todo) {
        clearTimeout(t.timer);
        t.timer = null;
        if (todo.interrupt) {
            var interrupt = element(t.config.host.interrupt);
            if (interrupt) interrupt.click();
        }
        if (todo.startIn !== null) {
            t.timer = setTimeout(function() {
                apply(t, react(t.state, {type: "tick", now: Date.now()}));
            }, todo.startIn);
        }
        if (todo.start) start(t);
    }

    function start(t) {
        setField(t.config.ids.live, true);
        if (t.seedSent !== t.state.seed) {  // the seed stays while Live is on: write it once
            setField(t.config.ids.live_seed, t.state.seed);
            t.seedSent = t.state.seed;
        }
        // Svelte writes the new values into gradio's state in a microtask: click after it.
        nextTask().then(function() {
            var button = element(t.config.host.generate);
            if (button) button.click();
            watch(t);
        });
    }

    // The end of a generation: the host hides its Interrupt button when the request is over.
    function watch(t) {
        clearInterval(t.watchdog);
        var started = Date.now();
        t.watchdog = setInterval(function() {
            if (!t.state.running) {
                clearInterval(t.watchdog);
            } else if (Date.now() - started > 1000 && !generating(t)) {
                finish(t);
            }
        }, 500);
    }

    // Fast decode on, yet the image was not decoded with TAESD: the server fell back to the full VAE and says why
    // in the status line, which the page then fetches (only then: a request per image would slow Live down).
    function fellBack(t) {
        var fast = element(t.config.ids.fast_decode);
        var info = element("html_info_" + t.config.tab);
        var text = info ? info.innerText : "";
        return Boolean(fast && fast.querySelector("input:checked")) && /Steps:/.test(text) &&
            !/VAE Decoder: TAESD/.test(text);
    }

    function finish(t) {
        clearInterval(t.watchdog);
        setField(t.config.ids.live, false);
        if (fellBack(t)) {
            var refresh = element(t.config.ids.refresh);
            if (refresh) refresh.click();
        }
        apply(t, react(t.state, {type: "finished", now: Date.now()}));
    }

    // gradio `_js` entries (lib_lcm_webui/live_ui.py): args = the event's inputs, then its outputs' values.
    function switched(config, args) {
        var t = tabOf(config);
        var on = Boolean(args[0]);
        if (on) {
            var values = {};
            var weight = args[config.watched.indexOf("weight") + 1];
            config.watched.forEach(function(name, i) {
                values[name] = normalise(name, args[i + 1], config.stems, weight);
            });
            var seedBox = element(config.tab + "_seed");
            var hostSeed = seedBox && seedBox.querySelector("input") ? seedBox.querySelector("input").value : -1;
            apply(t, react(t.state, {type: "on", now: Date.now(), seed: drawSeed(hostSeed), values: values}));
            return true;  // Live switches the panel on
        }
        apply(t, react(t.state, {type: "off"}));
        return NO_CHANGE;
    }

    function panelSwitched(config, args) {
        var t = tabOf(config);
        return !args[0] && t.state.on ? false : NO_CHANGE;
    }

    function edited(config, name, args) {
        var t = tabOf(config);
        apply(t, react(t.state, {type: "edit", now: Date.now(), name: name,
            value: normalise(name, args[0], config.stems, t.state.seen.weight)}));
    }

    // For tests and the bench: what Live did on a tab so far.
    function stats(tab) {
        var t = tabs[tab];
        if (!t) return null;
        var s = t.state;
        return {on: s.on, running: s.running, dirty: s.dirty, seed: s.seed, generations: s.generations,
            completed: s.completed, lastDurationMs: s.lastDurationMs};
    }

    return Object.freeze({
        RULES: RULES,
        newState: newState,
        react: react,
        wait: wait,
        drawSeed: drawSeed,
        normalise: normalise,
        switched: switched,
        panelSwitched: panelSwitched,
        edited: edited,
        stats: stats,
    });
})();

if (typeof module !== "undefined" && module.exports) {
    module.exports = lcmLoraLive;
}
