// Runs the calls read as JSON from stdin ([{fn, args}]) through javascript/lcm_lora_prompt.js and prints
// [{result} | {error}] as JSON; tests/test_js.py compares them with lib_lcm/prompt_tags.py.
import {readFileSync} from "node:fs";
import {FUNCTIONS} from "./prompt_tags_calls.mjs";

const calls = JSON.parse(readFileSync(0, "utf8"));
const results = calls.map(({fn, args}) => {
    try {
        return {result: FUNCTIONS[fn](args)};
    } catch (e) {
        return {error: e.constructor.name};
    }
});
process.stdout.write(JSON.stringify(results));
