// javascript/lcm_lora_panel.js: what switching the panel on/off and editing it does to the tab's controls.
import {test} from "node:test";
import assert from "node:assert/strict";
import {createRequire} from "node:module";
import {readFileSync} from "node:fs";
import {fileURLToPath} from "node:url";
import vm from "node:vm";

const PANEL_URL = new URL("../../javascript/lcm_lora_panel.js", import.meta.url);
const PROMPT_URL = new URL("../../javascript/lcm_lora_prompt.js", import.meta.url);
const HOST_URL = new URL("../../javascript/lcm_lora_host.js", import.meta.url);
const panel = createRequire(import.meta.url)(fileURLToPath(PANEL_URL));

const SAMPLERS = {LCM: "LCM-LoRA", TCD: "LCM-LoRA TCD"};
// What lib_lcm_webui.panel.page_config sends (tests/test_panel.py checks the Python side gives these).
const FIXED = {scheduler: "Automatic", hr_sampler: "Use same sampler", hr_scheduler: "Use same scheduler", hr_steps: 0};
const STEMS = ["lcm-lora-sdv1-5", "lcm-lora-sdxl", "lcm-lora-ssd-1b"];
const CONFIG = {samplers: SAMPLERS, stems: STEMS, fixed: FIXED};
const SD15 = '<div class="lcm-lora-status" data-lcm-stem="lcm-lora-sdv1-5" data-lcm-installed="true">...</div>';
const SDXL = '<div class="lcm-lora-status" data-lcm-stem="lcm-lora-sdxl" data-lcm-installed="false">...</div>';
const UNSUPPORTED = '<div class="lcm-lora-status" data-lcm-stem="" data-lcm-installed="false">SD 2.x</div>';
const CHECKING = "<div>Checking the loaded checkpoint...</div>";

// A txt2img tab as the user left it, with the panel off.
function txt2img(overrides = {}) {
    return {
        enabled: false, steps: 4, cfg_scale: 1, weight: 1, mode: "LCM", status: SD15,
        prompt: "a cat, <lora:style:0.8>", sampler: "DPM++ 2M", scheduler: "Karras", host_steps: 20,
        host_cfg_scale: 7, hr_sampler: "Euler", hr_scheduler: "Use same scheduler", hr_steps: 10,
        ...overrides,
    };
}

// Apply the changes `react` asks for, as gradio does with the returned values.
function step(state, values, edits = {}) {
    const current = {...values, ...edits};
    const changes = panel.react(state, current, CONFIG);
    return {...current, ...changes};
}

test("switching on sets every host control and adds the tag once", () => {
    const state = panel.newState();
    const on = step(state, txt2img(), {enabled: true});
    assert.equal(on.sampler, "LCM-LoRA");
    assert.equal(on.scheduler, "Automatic");
    assert.equal(on.host_steps, 4);
    assert.equal(on.host_cfg_scale, 1);
    assert.equal(on.hr_sampler, "Use same sampler");
    assert.equal(on.hr_scheduler, "Use same scheduler");
    assert.equal(on.hr_steps, 0);
    assert.equal(on.prompt, "a cat, <lora:style:0.8> <lora:lcm-lora-sdv1-5:1>");
    const again = step(state, on);
    assert.equal(again.prompt, on.prompt, "a second event while on must not add another tag");
});

test("switching off restores what the user had, prompt included", () => {
    const state = panel.newState();
    const before = txt2img();
    const on = step(state, before, {enabled: true});
    const off = step(state, on, {enabled: false});
    assert.deepEqual(off, before);
});

test("controls the user changed while on are kept when switching off", () => {
    const state = panel.newState();
    const on = step(state, txt2img(), {enabled: true});
    const off = step(state, on, {enabled: false, host_steps: 6, sampler: "Euler a"});
    assert.equal(off.host_steps, 6);
    assert.equal(off.sampler, "Euler a");
    assert.equal(off.host_cfg_scale, 7, "an untouched control still returns to the user's value");
    assert.equal(off.scheduler, "Karras");
});

test("text typed while on survives switching off; only the panel's tag goes", () => {
    const state = panel.newState();
    const on = step(state, txt2img({prompt: "a cat"}), {enabled: true});
    assert.equal(on.prompt, "a cat <lora:lcm-lora-sdv1-5:1>");
    const typed = on.prompt.replace("a cat", "a black cat") + ", night";
    const off = step(state, on, {enabled: false, prompt: typed});
    assert.equal(off.prompt, "a black cat, night");
});

test("an existing tag with another weight is updated, not duplicated, and comes back on switch off", () => {
    const state = panel.newState();
    const before = txt2img({prompt: "<lora:lcm-lora-sdv1-5:0.5> a cat"});
    const on = step(state, before, {enabled: true});
    assert.equal(on.prompt, "<lora:lcm-lora-sdv1-5:1> a cat");
    const off = step(state, on, {enabled: false});
    assert.equal(off.prompt, before.prompt);
});

test("a user's own LCM tag stays when the prompt was edited meanwhile", () => {
    const state = panel.newState();
    const on = step(state, txt2img({prompt: "<lora:lcm:0.5> a cat"}), {enabled: true});
    assert.equal(on.prompt, "<lora:lcm-lora-sdv1-5:1> a cat");
    const off = step(state, on, {enabled: false, prompt: on.prompt + " at night"});
    assert.equal(off.prompt, "<lora:lcm-lora-sdv1-5:1> a cat at night");
});

test("panel steps, CFG, weight and mode keep the host controls in sync while on", () => {
    const state = panel.newState();
    let v = step(state, txt2img(), {enabled: true});
    v = step(state, v, {steps: 6});
    assert.equal(v.host_steps, 6);
    v = step(state, v, {cfg_scale: 1.5});
    assert.equal(v.host_cfg_scale, 1.5);
    v = step(state, v, {weight: 0.75});
    assert.equal(v.prompt, "a cat, <lora:style:0.8> <lora:lcm-lora-sdv1-5:0.75>");
    v = step(state, v, {mode: "TCD"});
    assert.equal(v.sampler, "LCM-LoRA TCD");
    const off = step(state, v, {enabled: false});
    assert.deepEqual(off, {...txt2img(), steps: 6, cfg_scale: 1.5, weight: 0.75, mode: "TCD"});
});

test("a sync leaves alone a host control the user changed while on", () => {
    const state = panel.newState();
    let v = step(state, txt2img(), {enabled: true});
    v = step(state, v, {host_cfg_scale: 2, weight: 0.9});
    assert.equal(v.host_cfg_scale, 2);
    v = step(state, v, {steps: 8});
    assert.equal(v.host_steps, 8);
    assert.equal(v.host_cfg_scale, 2);
});

test("panel edits while off change nothing", () => {
    const state = panel.newState();
    const values = txt2img({steps: 7, mode: "TCD", weight: 0.5});
    assert.deepEqual(panel.react(state, values, CONFIG), {});
});

test("a checkpoint change moves the tag to the new variant", () => {
    const state = panel.newState();
    let v = step(state, txt2img(), {enabled: true});
    v = step(state, v, {status: SDXL});
    assert.equal(v.prompt, "a cat, <lora:style:0.8> <lora:lcm-lora-sdxl:1>");
    const off = step(state, v, {enabled: false});
    assert.equal(off.prompt, "a cat, <lora:style:0.8>");
});

test("an unsupported checkpoint drops the panel's tag; a supported one brings it back", () => {
    const state = panel.newState();
    let v = step(state, txt2img(), {enabled: true});
    v = step(state, v, {status: UNSUPPORTED});
    assert.equal(v.prompt, "a cat, <lora:style:0.8>");
    assert.equal(v.sampler, "LCM-LoRA");
    v = step(state, v, {status: SD15});
    assert.equal(v.prompt, "a cat, <lora:style:0.8> <lora:lcm-lora-sdv1-5:1>");
});

test("while the status is not known the prompt is left alone, then tagged when it arrives", () => {
    const state = panel.newState();
    let v = step(state, txt2img({status: CHECKING}), {enabled: true});
    assert.equal(v.prompt, "a cat, <lora:style:0.8>");
    assert.equal(v.sampler, "LCM-LoRA");
    v = step(state, v, {status: SD15});
    assert.equal(v.prompt, "a cat, <lora:style:0.8> <lora:lcm-lora-sdv1-5:1>");
    const off = step(state, v, {enabled: false});
    assert.equal(off.prompt, "a cat, <lora:style:0.8>");
});

test("img2img and hosts before 1.9 lack some controls: only those present are touched", () => {
    const state = panel.newState();
    const values = txt2img();
    for (const name of ["scheduler", "hr_sampler", "hr_scheduler", "hr_steps"]) delete values[name];
    const changes = panel.react(state, {...values, enabled: true}, CONFIG);
    assert.deepEqual(Object.keys(changes).sort(), ["host_cfg_scale", "host_steps", "prompt", "sampler"]);
});

test("stemFromStatus reads the server's data attribute", () => {
    assert.equal(panel.stemFromStatus(SD15), "lcm-lora-sdv1-5");
    assert.equal(panel.stemFromStatus(UNSUPPORTED), null);
    assert.equal(panel.stemFromStatus(CHECKING), undefined);
    assert.equal(panel.stemFromStatus(null), undefined);
});

test("a family's status names its file and sampler: the tab gets that sampler and tag, not the mode's", () => {
    const LIGHTNING = '<div class="lcm-lora-status" data-lcm-stem="sdxl_lightning_4step_lora" data-lcm-installed="true"'
        + ' data-lcm-sampler="LCM-LoRA Euler trailing">...</div>';
    const config = {...CONFIG, stems: [...STEMS, "sdxl_lightning_4step_lora"]};
    const state = panel.newState();
    const on = {...txt2img({enabled: true, status: SDXL}), ...panel.react(state, txt2img({enabled: true, status: SDXL}), config)};
    assert.equal(on.sampler, "LCM-LoRA");
    const family = {...on, status: LIGHTNING};
    const changed = {...family, ...panel.react(state, family, config)};
    assert.equal(changed.sampler, "LCM-LoRA Euler trailing");
    assert.equal(changed.prompt, "a cat, <lora:style:0.8> <lora:sdxl_lightning_4step_lora:1>");
    assert.equal(panel.samplerFromStatus(SD15), undefined);
});

test("handle maps gradio's argument list to the outputs, empty updates where nothing changes", () => {
    const config = {
        tab: "handle-test", ...CONFIG,
        inputs: ["enabled", "steps", "cfg_scale", "weight", "mode", "status", "prompt", "sampler", "host_steps"],
        outputs: ["prompt", "sampler", "host_steps"],
    };
    const inputs = [true, 5, 1, 1, "LCM", SD15, "a cat", "Euler", 20];
    const outputsNow = ["a cat", "Euler", 20];
    assert.deepEqual(panel.handle(config, inputs.concat(outputsNow)),
        ["a cat <lora:lcm-lora-sdv1-5:1>", "LCM-LoRA", 5]);
    const on = ["a cat <lora:lcm-lora-sdv1-5:1>", "LCM-LoRA", 5];
    const offInputs = [false, 5, 1, 1, "LCM", SD15, ...on];
    assert.deepEqual(panel.handle(config, offInputs.concat(on)), ["a cat", "Euler", 20]);
    const none = {__type__: "update"};
    assert.deepEqual(panel.handle(config, offInputs.concat(on)), [none, none, none], "already off: nothing to do");
});

test("events fired together (a paste) do not undo each other: later handlers see stale values", () => {
    const config = {
        tab: "together-test", ...CONFIG,
        inputs: ["enabled", "steps", "cfg_scale", "weight", "mode", "status", "prompt", "sampler", "host_cfg_scale"],
        outputs: ["prompt", "sampler", "host_cfg_scale"],
    };
    // gradio reads the inputs of every handler first: all three see the pasted values, none sees another's result.
    const stale = [true, 6, 1, 0.75, "LCM", SD15, "a cat", "DPM++ 2M", 7];
    const results = [0, 1, 2].map(() => panel.handle(config, stale.concat(stale.slice(6))));
    const applied = {prompt: "a cat", sampler: "DPM++ 2M", host_cfg_scale: 7};
    for (const result of results) {
        result.forEach((value, i) => {
            if (!(value && value.__type__ === "update")) applied[config.outputs[i]] = value;
        });
    }
    assert.deepEqual(applied, {prompt: "a cat <lora:lcm-lora-sdv1-5:0.75>", sampler: "LCM-LoRA", host_cfg_scale: 1});
    // ... and switching off still restores the exact prompt from before.
    const off = panel.handle(config, [false, 6, 1, 0.75, "LCM", SD15, applied.prompt, "LCM-LoRA", 1, applied.prompt,
        "LCM-LoRA", 1]);
    assert.deepEqual(off, ["a cat", "DPM++ 2M", 7]);
});

test("gammaVisibility shows gamma for TCD only, as a gradio update", () => {
    assert.deepEqual(panel.gammaVisibility("TCD"), {__type__: "update", visible: true});
    assert.deepEqual(panel.gammaVisibility("LCM"), {__type__: "update", visible: false});
});

// The WebUI loads the files as classic scripts into one page; emulate that. The page has the panel's two refresh
// buttons (found by their class) and, on Forge, the top bar's checkpoint dropdown.
function loadInPage(opts, topBar = null) {
    const clicks = [];
    const callbacks = {uiLoaded: [], optionsChanged: [], timers: [], intervals: []};
    const refreshButtons = ["lcm_lora_txt2img_refresh", "lcm_lora_img2img_refresh"].map(
        (id) => ({id, click: () => clicks.push(id)}));
    const context = {
        console,
        opts,
        gradioApp: () => ({getElementById: (id) => ({click: () => clicks.push(id)}),
            querySelector: (selector) => (selector === ".model_selection input" ? topBar : null),
            querySelectorAll: (selector) => (selector === ".lcm-lora-refresh" ? refreshButtons : [])}),
        onUiLoaded: (fn) => callbacks.uiLoaded.push(fn),
        onOptionsChanged: (fn) => callbacks.optionsChanged.push(fn),
        setTimeout: (fn, ms) => callbacks.timers.push([fn, ms]),
        setInterval: (fn, ms) => callbacks.intervals.push([fn, ms]),
    };
    vm.createContext(context);
    // A1111 includes extension scripts sorted by name: the host's page, the panel, then the prompt helper.
    vm.runInContext(readFileSync(HOST_URL, "utf8"), context, {filename: "lcm_lora_host.js"});
    vm.runInContext(readFileSync(PANEL_URL, "utf8"), context, {filename: "lcm_lora_panel.js"});
    vm.runInContext(readFileSync(PROMPT_URL, "utf8"), context, {filename: "lcm_lora_prompt.js"});
    return {context, clicks, callbacks};
}

test("in the page: status refreshed once the UI is up and when the checkpoint changes, not otherwise", () => {
    const page = loadInPage({sd_model_checkpoint: "a.safetensors [1]"});
    assert.equal(page.callbacks.uiLoaded.length, 1);
    assert.equal(page.callbacks.optionsChanged.length, 1);
    page.callbacks.uiLoaded[0]();
    assert.deepEqual(page.clicks, ["lcm_lora_txt2img_refresh", "lcm_lora_img2img_refresh"]);
    page.callbacks.optionsChanged[0]();
    assert.equal(page.clicks.length, 2, "unchanged checkpoint: no request");
    page.context.opts.sd_model_checkpoint = "b.safetensors [2]";
    page.callbacks.optionsChanged[0]();
    assert.equal(page.clicks.length, 4);
});

test("in the page: Forge's top-bar checkpoint change refreshes the status after the host's own event", () => {
    const topBar = {value: "a.safetensors [1]"};
    const page = loadInPage({sd_model_checkpoint: "a.safetensors [1]"}, topBar);
    page.callbacks.uiLoaded[0]();
    assert.equal(page.callbacks.intervals.length, 1);
    const watch = page.callbacks.intervals[0][0];
    watch();
    watch();
    assert.equal(page.callbacks.timers.length, 0, "the first value seen and an unchanged one: no request");
    topBar.value = "full-sdxl.safetensors [2]";  // the options JSON of the page stays as it was
    watch();
    watch();
    assert.equal(page.callbacks.timers.length, 1);
    const [refresh, delay] = page.callbacks.timers[0];
    assert.ok(delay >= 500, "after the host's change event has reached the server");
    const before = page.clicks.length;
    refresh();
    assert.deepEqual(page.clicks.slice(before), ["lcm_lora_txt2img_refresh", "lcm_lora_img2img_refresh"]);
});

test("in the page: without a top bar (A1111) the watch does nothing", () => {
    const page = loadInPage({sd_model_checkpoint: "a.safetensors [1]"});
    page.callbacks.uiLoaded[0]();
    page.callbacks.intervals[0][0]();
    assert.equal(page.callbacks.timers.length, 0);
});

test("in the page: the panel finds the prompt helper loaded after it", () => {
    const page = loadInPage({});
    const config = {tab: "txt2img", ...CONFIG, inputs: ["enabled", "weight", "status", "prompt"],
        outputs: ["prompt"]};
    const result = vm.runInContext("lcmLoraPanel.handle", page.context)(config, [true, 1, SD15, "a cat", "a cat"]);
    assert.deepEqual(result, ["a cat <lora:lcm-lora-sdv1-5:1>"]);
});

test("the stems come from the server's config: a registry with other stems is tagged with those", () => {
    const state = panel.newState();
    const config = {...CONFIG, stems: ["my-lcm-sd15", "my-lcm-xl"]};
    const custom = '<div class="lcm-lora-status" data-lcm-stem="my-lcm-sd15" data-lcm-installed="true">...</div>';
    const before = txt2img({status: custom});
    const on = {...before, enabled: true};
    Object.assign(on, panel.react(state, on, config));
    assert.equal(on.prompt, "a cat, <lora:style:0.8> <lora:my-lcm-sd15:1>");
    const off = {...on, enabled: false};
    Object.assign(off, panel.react(state, off, config));
    assert.equal(off.prompt, before.prompt);
});

test("the fixed targets come from the server's config", () => {
    const state = panel.newState();
    const config = {...CONFIG, fixed: {...FIXED, scheduler: "Uniform"}};
    const on = {...txt2img(), enabled: true};
    assert.equal(panel.react(state, on, config).scheduler, "Uniform");
});
