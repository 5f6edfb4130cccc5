// javascript/lcm_lora_live.js: when Live starts a generation (latest wins, the adaptive wait, one seed).
import {test} from "node:test";
import assert from "node:assert/strict";
import {createRequire} from "node:module";
import {fileURLToPath} from "node:url";

const live = createRequire(import.meta.url)(fileURLToPath(new URL("../../javascript/lcm_lora_live.js", import.meta.url)));
const STEMS = ["lcm-lora-sdv1-5", "lcm-lora-sdxl", "lcm-lora-ssd-1b"];
const RULES = live.RULES;

function started(state, on = 0, values = {prompt: "a cat"}) {
    const todo = live.react(state, {type: "on", now: on, seed: 42, values});
    assert.equal(todo.start, true, "switching Live on makes an image at once");
    return state;
}

test("switching on starts one generation at once and keeps the drawn seed", () => {
    const state = started(live.newState());
    assert.equal(state.seed, 42);
    assert.equal(state.generations, 1);
    assert.equal(live.react(state, {type: "on", now: 5, seed: 7}).start, false, "already on: nothing new");
    assert.equal(state.seed, 42);
});

test("edits during a generation wait; at its end exactly one generation starts (latest wins)", () => {
    const state = started(live.newState());
    for (let i = 0; i < 10; i++) {
        const todo = live.react(state, {type: "edit", now: 10 + i, name: "prompt", value: "a cat" + "!".repeat(i + 1)});
        assert.deepEqual(todo, {start: false, startIn: null, interrupt: false});
    }
    assert.equal(live.react(state, {type: "finished", now: 300}).start, true);
    assert.equal(state.generations, 2);
    assert.equal(live.react(state, {type: "finished", now: 600}).start, false, "nothing changed since");
    assert.equal(state.completed, 2);
});

test("an edit back to the value already shown changes nothing", () => {
    const state = started(live.newState());
    live.react(state, {type: "finished", now: 100});
    assert.equal(live.react(state, {type: "edit", now: 200, name: "prompt", value: "a cat"}).start, false);
    assert.equal(live.react(state, {type: "edit", now: 210, name: "seed", value: 5}).start, true);
});

test("fast generations start at once; slow ones wait for a pause in typing, but not past the cap", () => {
    const state = started(live.newState());
    live.react(state, {type: "finished", now: RULES.slowMs + 500});  // the last image took longer than slowMs
    let t = 10000;
    let todo = live.react(state, {type: "edit", now: t, name: "prompt", value: "x"});
    assert.equal(todo.start, false);
    assert.equal(todo.startIn, RULES.pauseMs);
    // Typing on every 100 ms keeps pushing the start back, until maxWaitMs after the first waiting edit.
    for (let i = 1; i * 100 < RULES.maxWaitMs; i++) {
        todo = live.react(state, {type: "edit", now: t + i * 100, name: "prompt", value: "x".repeat(i + 1)});
        assert.equal(todo.start, false);
        assert.ok(todo.startIn <= RULES.pauseMs && todo.startIn > 0);
    }
    todo = live.react(state, {type: "tick", now: t + RULES.maxWaitMs});
    assert.equal(todo.start, true, "never later than maxWaitMs after the first edit");
});

test("after a slow generation, an edit that is not typing (a slider, the seed, an image) starts at once", () => {
    const state = started(live.newState());
    live.react(state, {type: "finished", now: 4000});
    live.react(state, {type: "edit", now: 5000, name: "prompt", value: "y"});
    assert.equal(live.react(state, {type: "edit", now: 5010, name: "seed", value: 3}).start, true);
    live.react(state, {type: "finished", now: 9000});
    assert.equal(live.react(state, {type: "edit", now: 9100, name: "denoising", value: 0.5}).start, true);
});

test("a slow generation's edit starts once typing pauses", () => {
    const state = started(live.newState());
    live.react(state, {type: "finished", now: 4000});
    live.react(state, {type: "edit", now: 5000, name: "prompt", value: "y"});
    assert.equal(live.react(state, {type: "tick", now: 5100}).start, false);
    assert.equal(live.react(state, {type: "tick", now: 5000 + RULES.pauseMs}).start, true);
});

test("switching off stops at once: the running generation is interrupted and nothing waits", () => {
    const state = started(live.newState());
    live.react(state, {type: "edit", now: 10, name: "prompt", value: "z"});
    assert.equal(live.react(state, {type: "off"}).interrupt, true);
    assert.equal(live.react(state, {type: "finished", now: 50}).start, false);
    assert.equal(live.react(state, {type: "edit", now: 60, name: "prompt", value: "zz"}).start, false);
    assert.equal(live.react(state, {type: "off"}).interrupt, false);
});

test("edits while off are remembered, so switching on compares with what is on screen", () => {
    const state = live.newState();
    live.react(state, {type: "edit", now: 0, name: "prompt", value: "a"});
    assert.equal(state.dirty, false);
    started(state, 10, {prompt: "a"});
});

test("the drawn seed: an explicit seed as is, -1 (or nonsense) a random 32-bit one", () => {
    assert.equal(live.drawSeed("1234"), 1234);
    for (const value of [-1, "-1", "", "abc", 2 ** 32]) {
        const seed = live.drawSeed(value);
        assert.ok(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32, String(value));
    }
});

test("the panel's own tag at the panel's weight is not a prompt change; another weight is", () => {
    const bare = live.normalise("prompt", "a cat", STEMS, 1);
    assert.equal(live.normalise("prompt", "a cat <lora:lcm-lora-sdv1-5:1>", STEMS, 1), bare);
    assert.equal(live.normalise("prompt", "a cat  <lora:lcm-lora-sdxl:1>", STEMS, 1), bare);
    assert.notEqual(live.normalise("prompt", "a cat <lora:lcm-lora-sdv1-5:0.5>", STEMS, 1), bare);
    assert.equal(live.normalise("prompt", "a cat <lora:style:1>", STEMS, 1), "a cat <lora:style:1>");
    assert.equal(live.normalise("image", {a: 1}, STEMS, 1), '{"a":1}');
});

// An image that took `duration` ms, then the next one started at `at` (a seed edit starts at once).
function timed(duration, at) {
    const state = started(live.newState());
    live.react(state, {type: "finished", now: duration});
    assert.equal(live.react(state, {type: "edit", now: at, name: "seed", value: 1}).start, true);
    return state;
}

test("a stale image with more than half of it to go is cut once the edits pause; the new one starts when it ends", () => {
    const state = timed(2000, 10000);  // images take 2 s; this one runs from 10 000 to ~12 000
    let todo = live.react(state, {type: "edit", now: 10100, name: "prompt", value: "a dog"});
    assert.deepEqual(todo, {start: false, startIn: RULES.pauseMs, interrupt: false}, "a tick at the pause");
    todo = live.react(state, {type: "edit", now: 10200, name: "prompt", value: "a dogs"});
    assert.equal(todo.startIn, RULES.pauseMs, "typing on moves the pause");
    assert.equal(live.react(state, {type: "tick", now: 10300}).interrupt, false, "no pause yet");
    todo = live.react(state, {type: "tick", now: 10200 + RULES.pauseMs});
    assert.deepEqual(todo, {start: false, startIn: null, interrupt: true});
    assert.equal(live.react(state, {type: "tick", now: 10500}).interrupt, false, "interrupted once");
    todo = live.react(state, {type: "finished", now: 10700});
    assert.equal(todo.start, true, "the edit's image starts as the cut one ends");
    assert.equal(state.lastDurationMs, 2000, "a cut image's time is not an image's time");
    assert.equal(state.completed, 2, "ended (one of them cut): none in flight");
    assert.equal(state.cuts, 1);
});

test("no cut for an image past its half, for the first image, or for the image after a cut one", () => {
    const late = timed(2000, 10000);
    const todo = live.react(late, {type: "edit", now: 10800, name: "prompt", value: "a dog"});
    assert.equal(todo.startIn, null, "at the pause it is past its half: it ends sooner than a cut one would");
    assert.equal(todo.interrupt, false);

    const first = started(live.newState());  // no duration yet
    assert.equal(live.react(first, {type: "edit", now: 10, name: "prompt", value: "a dog"}).startIn, null);
    assert.equal(live.react(first, {type: "tick", now: 5000}).interrupt, false);

    const state = timed(2000, 10000);
    live.react(state, {type: "edit", now: 10100, name: "prompt", value: "a dog"});
    assert.equal(live.react(state, {type: "tick", now: 10100 + RULES.pauseMs}).interrupt, true);
    assert.equal(live.react(state, {type: "finished", now: 10500}).start, true);
    live.react(state, {type: "edit", now: 10600, name: "prompt", value: "a dog!"});
    assert.equal(live.react(state, {type: "tick", now: 10600 + RULES.pauseMs}).interrupt, false,
        "the image after a cut one runs to its end, so pausing often still shows images");
    live.react(state, {type: "finished", now: 12500});
    live.react(state, {type: "edit", now: 12600, name: "prompt", value: "a dog!!"});
    assert.equal(live.react(state, {type: "tick", now: 12600 + RULES.pauseMs}).interrupt, true, "and then again");
});

test("typing on without a pause never cuts: every image while typing is shown", () => {
    const state = timed(2000, 0);
    let interrupts = 0;
    for (let t = 100; t < 20000; t += 125) {  // 8 characters a second
        interrupts += live.react(state, {type: "edit", now: t, name: "prompt", value: "x".repeat(t)}).interrupt;
        if (state.running && t - state.startedAt >= 2000) live.react(state, {type: "finished", now: t});
    }
    assert.equal(interrupts, 0);
    assert.equal(state.cuts, 0);
    assert.ok(state.generations >= 5, String(state.generations));
    assert.equal(state.completed, state.generations - (state.running ? 1 : 0), "every image started is shown");
});

test("an image interrupted because Live was switched off does not count as an image's time", () => {
    const state = timed(2000, 10000);
    live.react(state, {type: "off"});
    live.react(state, {type: "finished", now: 10300});
    assert.equal(state.lastDurationMs, 2000);
});
