// javascript/lcm_lora_prompt.js against the case table shared with tests/test_prompt_tags.py.
import {test} from "node:test";
import assert from "node:assert/strict";
import {readFileSync} from "node:fs";
import vm from "node:vm";
import {FUNCTIONS, LCM_STEMS, SOURCE_URL, prompt} from "./prompt_tags_calls.mjs";

const {cases} = JSON.parse(readFileSync(new URL("../prompt_tag_cases.json", import.meta.url), "utf8"));

test("the table covers every function", () => {
    assert.ok(cases.length >= 40);
    assert.deepEqual(new Set(cases.map((c) => c.fn)), new Set(Object.keys(FUNCTIONS)));
});

for (const c of cases) {
    test(`${c.fn}: ${c.name}`, () => {
        const run = FUNCTIONS[c.fn];
        if (c.error) {
            assert.throws(() => run(c.args), (e) => e instanceof TypeError || e instanceof RangeError);
        } else {
            assert.deepEqual(run(c.args), c.expected);
        }
    });
}

test("find offsets are UTF-16 indices into the prompt", () => {
    const text = "猫 🐱 <lora:lcm:1>, <lyco:LCM-LORA-SDXL:te=0.5>";
    const tags = prompt.findLcmTags(text, LCM_STEMS);
    assert.deepEqual(tags.map((t) => text.slice(t.start, t.end)), tags.map((t) => t.text));
    assert.deepEqual(tags.map((t) => t.stem), [null, "lcm-lora-sdxl"]);
});

test("finding twice gives the same result (no regex state leaks between calls)", () => {
    const text = "a <lora:lcm:1> b <lora:lcm-lora-sdxl:1>";
    assert.deepEqual(prompt.findLcmTags(text, LCM_STEMS), prompt.findLcmTags(text, LCM_STEMS));
    assert.equal(prompt.findLcmTags(text, LCM_STEMS).length, 2);
});

test("errors name the problem", () => {
    assert.throws(() => prompt.applyLcmTag("a", "sdxl", 1, LCM_STEMS), /unknown LCM-LoRA file stem "sdxl"/);
    assert.throws(() => prompt.formatWeight("0.8"), /weight must be a number/);
    assert.throws(() => prompt.removeLcmTag(null, LCM_STEMS), /prompt must be a string/);
});

test("loads in a page as a classic script: one global, no module system", () => {
    const page = {};
    vm.createContext(page);
    vm.runInContext(readFileSync(SOURCE_URL, "utf8"), page, {filename: "lcm_lora_prompt.js"});
    const globals = Object.keys(page);
    assert.deepEqual(globals, ["lcmLoraPrompt"]);
    assert.equal(page.lcmLoraPrompt.applyLcmTag("a", "lcm-lora-sdxl", 1, ["lcm-lora-sdxl"]), "a <lora:lcm-lora-sdxl:1>");
    assert.ok(Object.isFrozen(page.lcmLoraPrompt));
});
