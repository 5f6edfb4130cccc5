/* global lcmLoraPrompt, lcmLoraHost, module, require */
// LCM-LoRA Live: while the panel's Live switch is on, every edit that changes the image (prompt, negative prompt,
// seed, size, the panel's values; in img2img the input image and denoising strength) leads to one new image,
// without clicking Generate.
//
// - Latest wins: while a live image runs, edits only mark the tab dirty; when its result arrives, one new image
//   starts at once if anything changed. Never more than one waits; the states in between are dropped.
// - Adaptive wait (Krita AI Diffusion's Live rule, for typing): when the last image took at most `slowMs` (from its
//   request to its result painted), start at once; when it took longer and the edit was typed text (prompt,
//   negative prompt), wait for a pause of `pauseMs` in the edits, but never more than `maxWaitMs` after the first
//   edit still waiting. Other edits (a slider, the seed, an image) come one at a time: they start at once.
// - A stale image is cut short: once the edits made while an image runs have paused for `pauseMs`, and that image
//   (at its last measured duration) still has more than half of it to go, Live interrupts it and starts the new
//   one as soon as it ends. An interrupted image still finishes its step and is decoded (about half an image at
//   4 steps), so cutting one closer to its end would not bring the new one sooner. The cut image is not shown
//   (the server answers "no change": lib_lcm_webui/live_ui.py), its time is not an image's time, and the image
//   after a cut one always runs to its end, so that pausing every few seconds still shows images.
// - One seed: Live draws a seed when it is switched on; a live request carries it, and the server uses it where
//   the seed is -1 (random), so the image changes only because the user changed something.
//
// A live image is a request of this extension's own (lib_lcm_webui/live_ui.py): a click on the panel's hidden
// button, whose gradio event is the tab's own generation; `submit` below fills its arguments (the host's submit
// function, with the live args set), `ended` runs when its result arrives (the event's `.then`): no polling
// timer, no minimum duration. A cut is a click on another hidden button, whose event interrupts the host only
// while it still runs that image's task (`cutTask`). The server's part (not saved, batch size 1, no per-step
// previews, TAESD decode): lib_lcm_webui/live.py. What is known of the host's page: lcm_lora_host.js. The part above "the page" is pure
// and tested with node --test (tests/js/live_logic.test.mjs); the page part too, with a stand-in host
// (tests/js/live_page.test.mjs).

var lcmLoraLive = (function() {
    "use strict";

    // Typed edits start an image at once while images take at most slowMs: typing then makes an image every image
    // time, and the final prompt's image comes on average half an image after the last key, against a pause
    // (pauseMs) plus one image when typed edits wait for a pause. Up to 1 s that costs the final image at most
    // one pause more (D/2 - pauseMs <= 250 ms) and gives images while typing; above it, the pause wins.
    // Measured with bench/live_latency.py (docs/live.md).
    var RULES = Object.freeze({slowMs: 1000, pauseMs: 250, maxWaitMs: 3000});
    // A live image still running after this shows the host's progress bar and Interrupt button (a CPU, a large
    // size); faster ones show nothing but their result, and ask the server nothing while they run.
    var SHOW_RUNNING_MS = 1000;
    var NO_CHANGE = Object.freeze({__type__: "update"});
    var SEED_RANGE = 4294967296;
    var TYPED = Object.freeze(["prompt", "negative"]);

    function newState() {
        return {on: false, running: false, dirty: false, typing: false, seed: -1, seen: {}, firstEditAt: null,
            lastEditAt: null, startedAt: null, lastDurationMs: null, generations: 0, completed: 0, cut: false,
            lastCut: false, cuts: 0};
    }

    // Milliseconds until the running image, made stale by edits, is to be interrupted (0: now), or null: let it
    // end. Never the first image (no duration yet) nor the one after a cut image.
    function cutWait(state, now, rules) {
        if (!state.running || !state.dirty || state.cut || state.lastCut || state.lastDurationMs === null) return null;
        var at = Math.max(now, state.lastEditAt + rules.pauseMs);
        if (at - state.startedAt >= state.lastDurationMs / 2) return null;
        return at - now;
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
    //   {type: "on", now, seed, values}    the switch went on (values: the watched controls now)
    //   {type: "off"}                      the switch (or the panel) went off
    //   {type: "edit", now, name, value}   a watched control changed (value already normalised)
    //   {type: "tick", now}                a timer set from an earlier `startIn` fired
    //   {type: "finished", now}            the running image's result arrived
    //   {type: "painted", now, startedAt, cut}  the result of the image started at `startedAt` is on screen
    //                                      (cut: it was interrupted by Live, so the previous one still is)
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
            state.cut = state.cut || todo.interrupt;  // its time is not an image's
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
            state.completed += 1;  // ended, shown or cut: generations - completed are in flight
            state.lastCut = state.cut;
            state.cut = false;
            if (!state.lastCut) state.lastDurationMs = event.now - state.startedAt;  // until it is painted
        } else if (event.type === "painted") {
            if (!event.cut) state.lastDurationMs = event.now - event.startedAt;
        }
        if (state.on && state.running) {
            var cutIn = cutWait(state, event.now, rules);
            if (cutIn === 0) {
                state.cut = true;
                state.cuts += 1;
                todo.interrupt = true;
            } else if (cutIn !== null) {
                todo.startIn = cutIn;  // a tick then: still stale and paused?
            }
            return todo;
        }
        if (!state.on || !state.dirty) return todo;
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

    function host() {
        return typeof lcmLoraHost !== "undefined" ? lcmLoraHost : require("./lcm_lora_host.js");
    }

    var tabs = {};

    function tabOf(config) {
        return tabs[config.tab] || (tabs[config.tab] = {state: newState(), timer: null, slow: null, request: null,
            endedAt: null, gapsMs: [], config: config});
    }

    // A waiting edit's timer is replaced only by a newer wait or a start: an event that changes nothing (an edit
    // back to the same value, a painted result) leaves it, and a timer that fires late finds nothing to do.
    function apply(t, todo) {
        if (todo.start || todo.startIn !== null) {
            clearTimeout(t.timer);
            t.timer = null;
        }
        if (todo.interrupt && t.request) host().click(t.config.ids.live_cut);  // cutTask names the image
        if (todo.startIn !== null) {
            t.timer = setTimeout(function() {
                apply(t, react(t.state, {type: "tick", now: Date.now()}));
            }, todo.startIn);
        }
        if (todo.start) start(t);
    }

    function start(t) {
        t.slow = setTimeout(function() {
            host().showRunning(t.config.tab, t.request);
        }, SHOW_RUNNING_MS);
        if (!host().click(t.config.ids.live_run)) {
            console.error("LCM-LoRA Live: the live request button is missing from the page");
            ended(t.config);
        }
    }

    // gradio `_js` of the live request (args: the tab's Generate inputs, then its outputs' values): the host's own
    // submit function, with this request's live args.
    function submit(config, args) {
        var t = tabOf(config);
        if (t.endedAt !== null) t.gapsMs.push(Date.now() - t.endedAt);  // from the last result to this request
        var request;
        try {
            request = host().submitQuietly(config.tab, config.submit, args);
        } catch (e) {  // the request still runs, as a live one: its end comes as for any other
            console.error("LCM-LoRA Live:", e);
            request = {args: Array.prototype.slice.call(args), progress: null};
        }
        request.args[config.args.live] = true;
        request.args[config.args.live_seed] = t.state.seed;
        t.request = request;
        return request.args;
    }

    // gradio `_js` of the cut (args: the hidden task-id box): the task id of the running live image; the server
    // interrupts the host only while it runs that task, never the image started after it.
    function cutTask(config) {
        var t = tabOf(config);
        return [t.request && t.request.id ? t.request.id : ""];
    }

    // gradio `_js` of the live request's `.then`: its result has arrived (or it failed).
    function ended(config) {
        var t = tabOf(config);
        clearTimeout(t.slow);
        host().endRunning(config.tab, t.request);
        t.request = null;
        var startedAt = t.state.startedAt;
        var cut = t.state.cut;
        var todo = react(t.state, {type: "finished", now: Date.now()});
        t.endedAt = todo.start ? Date.now() : null;
        apply(t, todo);
        host().whenPainted(config.tab).then(function() {
            apply(t, react(t.state, {type: "painted", now: Date.now(), startedAt: startedAt, cut: cut}));
            if (!cut && fellBack(t)) host().click(t.config.ids.refresh);
        });
    }

    // Fast decode on, yet the image was not decoded with TAESD: the server fell back to the full VAE and says why
    // in the status line, which the page then fetches (only then: a request per image would slow Live down).
    function fellBack(t) {
        return Boolean(t.state.seen.fast_decode) && host().decoder(t.config.tab) === "full";
    }

    // gradio `_js` entries of the switch and the edits (lib_lcm_webui/live_ui.py): args = the event's inputs, then
    // its outputs' values.
    function switched(config, args) {
        var t = tabOf(config);
        if (!args[0]) {
            apply(t, react(t.state, {type: "off"}));
            return NO_CHANGE;
        }
        var values = {};
        var weight = args[config.watched.indexOf("weight") + 1];
        config.watched.forEach(function(name, i) {
            values[name] = normalise(name, args[i + 1], config.stems, weight);
        });
        var hostSeed = config.watched.indexOf("seed") >= 0 ? args[config.watched.indexOf("seed") + 1] : -1;
        apply(t, react(t.state, {type: "on", now: Date.now(), seed: drawSeed(hostSeed), values: values}));
        return true;  // Live switches the panel on
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

    // For tests and the bench: what Live did on a tab so far (gapsMs: from a result to the request it started).
    function stats(tab) {
        var t = tabs[tab];
        if (!t) return null;
        var s = t.state;
        return {on: s.on, running: s.running, dirty: s.dirty, seed: s.seed, generations: s.generations,
            completed: s.completed, cuts: s.cuts, lastDurationMs: s.lastDurationMs, gapsMs: t.gapsMs.slice()};
    }

    return Object.freeze({
        RULES: RULES,
        SHOW_RUNNING_MS: SHOW_RUNNING_MS,
        newState: newState,
        react: react,
        wait: wait,
        drawSeed: drawSeed,
        normalise: normalise,
        switched: switched,
        panelSwitched: panelSwitched,
        edited: edited,
        submit: submit,
        cutTask: cutTask,
        ended: ended,
        stats: stats,
    });
})();

if (typeof module !== "undefined" && module.exports) {
    module.exports = lcmLoraLive;
}
