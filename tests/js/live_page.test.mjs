// javascript/lcm_lora_live.js in a page (with javascript/lcm_lora_host.js): a live image is the extension's own
// request, its end is its `.then`, and nothing polls. The page is a stand-in with the host's globals as A1111 has
// them (submit, requestProgress, showSubmitButtons, localRemove); gradio's part (the click dispatching the event,
// running `submit` as its `_js`, then `ended` as the `.then`) is played by the tests.
import {test} from "node:test";
import assert from "node:assert/strict";
import {readFileSync} from "node:fs";
import vm from "node:vm";

const FILES = ["lcm_lora_host.js", "lcm_lora_live.js", "lcm_lora_prompt.js"];  // in the order the WebUI loads them
const STEMS = ["lcm-lora-sdv1-5"];
// What lib_lcm_webui.live_ui.live_config sends (tests/test_live.py checks the Python side).
const CONFIG = {tab: "txt2img", watched: ["prompt", "seed", "weight", "fast_decode"], stems: STEMS,
    ids: {live_run: "lcm_lora_txt2img_live_run", live_cut: "lcm_lora_txt2img_live_cut", refresh: "lcm_lora_txt2img_refresh"},
    submit: "submit",
    args: {live: 5, live_seed: 6}};
const GENERATE_ARGS = ["", "a cat", "", 1234, 1, false, -1, "gallery", "info"];  // id, inputs..., outputs

function page({infotext = "a cat\nSteps: 4, VAE Decoder: TAESD", clock = null} = {}) {
    const log = [];
    const timers = new Map();
    let nextTimer = 1;
    const progressBar = {classList: {contains: (name) => name === "progressDiv"}, style: {display: "block"}};
    const container = {previousElementSibling: progressBar};
    const elements = {};
    const element = (id) => elements[id] ??
        (elements[id] = {id, click: () => log.push(["click", id]), querySelectorAll: () => []});
    const context = {
        console,
        Promise,
        gradioApp: () => ({
            getElementById: element,
            querySelector: (selector) => (selector === ".prose#html_info_txt2img" ? {innerText: infotext} : null),
            querySelectorAll: () => [],
        }),
        // The host's page functions (A1111 1.10's javascript/ui.js and progressbar.js).
        submit: (...args) => {
            context.showSubmitButtons("txt2img", false);
            context.requestProgress("task(abc)", container, element("txt2img_gallery"), () => log.push(["hostEnd"]));
            const res = Array.from(args);
            res[0] = "task(abc)";
            return res;
        },
        requestProgress: (...args) => log.push(["requestProgress", args[0], args[3]]),
        showSubmitButtons: (tab, show) => log.push(["showSubmitButtons", tab, show]),
        localRemove: (key) => log.push(["localRemove", key]),
        setTimeout: (fn, ms) => {
            timers.set(nextTimer, {fn, ms});
            return nextTimer++;
        },
        clearTimeout: (id) => timers.delete(id),
        setInterval: () => {
            throw new Error("Live polls");
        },
    };
    if (clock) context.Date = {now: () => clock.now};
    vm.createContext(context);
    for (const file of FILES) {
        vm.runInContext(readFileSync(new URL(`../../javascript/${file}`, import.meta.url), "utf8"), context,
            {filename: file});
    }
    const live = vm.runInContext("lcmLoraLive", context);
    const clicks = () => log.filter(([kind, id]) => kind === "click" && id === CONFIG.ids.live_run).length;
    return {live, log, timers, clicks, progressBar, context};
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

function switchOn(p) {
    p.live.switched(CONFIG, [true, "a cat", 1234, 1, true]);
    assert.equal(p.clicks(), 1, "switching Live on requests an image at once");
    return p.live.submit(CONFIG, GENERATE_ARGS.slice());  // gradio runs the event's _js
}

test("a live request is the host's submit with the live args set, minus its polling and its buttons", () => {
    const p = page();
    const args = switchOn(p);
    assert.equal(args[0], "task(abc)", "the host's own task id");
    assert.equal(args[CONFIG.args.live], true);
    assert.equal(args[CONFIG.args.live_seed], 1234, "the seed in the seed box, drawn once");
    assert.deepEqual(args.slice(1, 5), GENERATE_ARGS.slice(1, 5), "the tab's own inputs, as they are");
    assert.deepEqual(p.log.filter(([kind]) => kind !== "click"), [
        ["showSubmitButtons", "txt2img", false],
        ["showSubmitButtons", "txt2img", true],
        ["localRemove", "txt2img_task_id"],
    ], "no progress polling, Generate stays (undone in the same task), no task id kept for a reload");
    assert.equal(typeof p.context.requestProgress, "function");
    assert.equal(p.context.requestProgress.toString().includes("log.push"), true, "the host's function is back");
});

test("the end of a live image is its result: the next image starts at once, and nothing polls", async () => {
    const p = page();
    switchOn(p);
    p.live.edited(CONFIG, "prompt", ["a cat and"]);
    p.live.edited(CONFIG, "prompt", ["a cat and a dog"]);
    assert.equal(p.clicks(), 1, "latest wins: the edits wait for the running image");
    p.live.ended(CONFIG);
    assert.equal(p.clicks(), 2, "the next image is requested in the same task as the result arrived");
    p.live.submit(CONFIG, GENERATE_ARGS.slice());
    p.live.ended(CONFIG);
    assert.equal(p.clicks(), 2, "nothing changed since: no image");
    await flush();
    const stats = p.live.stats("txt2img");
    assert.equal(stats.completed, 2);
    assert.equal(stats.gapsMs.length, 1);
    assert.ok(stats.gapsMs[0] < 50, `from a result to the next request: ${stats.gapsMs[0]} ms`);
    assert.equal(p.timers.size, 0, "no timer left: the slow-image timers end with their images");
    assert.ok(!p.log.some(([kind]) => kind === "requestProgress"), "a fast image never asks for progress");
});

test("Live's timing runs from the request to the result on screen", async () => {
    const p = page();
    switchOn(p);
    p.live.ended(CONFIG);
    assert.equal(p.live.stats("txt2img").running, false);
    await flush();
    const duration = p.live.stats("txt2img").lastDurationMs;
    assert.ok(duration >= 0 && duration < 1000, String(duration));
});

test("a slow live image shows the host's progress bar and Interrupt button until its result arrives", () => {
    const p = page();
    switchOn(p);
    const [[id, slow]] = [...p.timers.entries()];
    assert.equal(slow.ms, p.live.SHOW_RUNNING_MS);
    p.timers.delete(id);
    slow.fn();
    const progress = p.log.filter(([kind]) => kind === "requestProgress");
    assert.equal(progress.length, 1);
    assert.equal(progress[0][1], "task(abc)", "the progress of this request");
    assert.deepEqual(p.log[p.log.length - 2], ["showSubmitButtons", "txt2img", false], "Interrupt shown");
    progress[0][2]();
    assert.ok(!p.log.some(([kind]) => kind === "hostEnd"), "the host's own end of a click is not run for it");
    p.live.ended(CONFIG);
    assert.deepEqual(p.log[p.log.length - 1], ["showSubmitButtons", "txt2img", true]);
    assert.equal(p.progressBar.style.display, "none", "the bar goes with the result, not at the host's next poll");
});

test("switching Live off interrupts the running image (that task only); its end starts nothing", () => {
    const p = page();
    switchOn(p);
    p.live.edited(CONFIG, "prompt", ["a dog"]);
    p.live.switched(CONFIG, [false, "a dog", 1234, 1, true]);
    assert.deepEqual(p.log[p.log.length - 1], ["click", CONFIG.ids.live_cut]);
    assert.deepEqual([...p.live.cutTask(CONFIG, [""])], ["task(abc)"], "the cut names the running image's task");
    p.live.ended(CONFIG);
    assert.equal(p.clicks(), 1);
    assert.deepEqual([...p.live.cutTask(CONFIG, [""])], [""], "no image running: a cut names none");
    assert.ok(!p.log.some(([kind, id]) => kind === "click" && id === "txt2img_interrupt"),
        "never the host's Interrupt, which would stop whatever runs by then");
});

test("Fast decode on, but the image was decoded with the full VAE: the status line is fetched", async () => {
    const p = page({infotext: "a cat\nSteps: 4, Sampler: LCM-LoRA"});
    switchOn(p);
    p.live.ended(CONFIG);
    await flush();
    assert.ok(p.log.some(([kind, id]) => kind === "click" && id === CONFIG.ids.refresh));
    const q = page();
    switchOn(q);
    q.live.ended(CONFIG);
    await flush();
    assert.ok(!q.log.some(([kind, id]) => kind === "click" && id === CONFIG.ids.refresh), "TAESD: no request");
});

test("a typed edit waiting for a pause keeps its timer through events that change nothing", () => {
    const clock = {now: 0};
    const p = page({clock});
    switchOn(p);
    clock.now = 5000;  // a slow image: typed edits now wait for a pause in the typing
    p.live.ended(CONFIG);
    p.live.edited(CONFIG, "prompt", ["a cat and"]);
    assert.equal(p.clicks(), 1, "waits for a pause");
    const waiting = [...p.timers.values()].filter((timer) => timer.ms === p.live.RULES.pauseMs);
    assert.equal(waiting.length, 1);
    p.live.edited(CONFIG, "seed", [1234]);  // the same value again: no change
    assert.equal(p.timers.size, 1, "the waiting edit's timer is still there");
    clock.now += p.live.RULES.pauseMs;
    waiting[0].fn();
    assert.equal(p.clicks(), 2, "the pause came: the image starts");
});

test("a stale image is interrupted once the typing pauses; its end starts the new image and keeps the timing", async () => {
    const clock = {now: 0};
    const p = page({clock});
    switchOn(p);
    clock.now = 2000;
    p.live.ended(CONFIG);
    await flush();
    assert.equal(p.live.stats("txt2img").lastDurationMs, 2000);
    p.live.edited(CONFIG, "seed", [7]);  // starts at once
    p.live.submit(CONFIG, GENERATE_ARGS.slice());
    clock.now = 2100;
    p.live.edited(CONFIG, "prompt", ["a cat and a dog"]);
    const pause = [...p.timers.values()].filter((timer) => timer.ms === p.live.RULES.pauseMs);
    assert.equal(pause.length, 1);
    clock.now += p.live.RULES.pauseMs;
    pause[0].fn();
    assert.deepEqual(p.log[p.log.length - 1], ["click", CONFIG.ids.live_cut]);
    assert.deepEqual([...p.live.cutTask(CONFIG, [""])], ["task(abc)"]);
    clock.now = 2600;
    p.live.ended(CONFIG);  // the server answered "no change": the image on screen stays
    assert.equal(p.clicks(), 3, "the new image starts as the cut one ends");
    await flush();
    const stats = p.live.stats("txt2img");
    assert.equal(stats.cuts, 1);
    assert.equal(stats.lastDurationMs, 2000, "the cut image's time is not an image's time");
});
