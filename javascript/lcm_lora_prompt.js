/* global module */
// Prompt editing for the LCM-LoRA <lora:...> tag: pure functions, no DOM.
// Mirrors lib_lcm/prompt_tags.py rule for rule (see its docstring); both are tested against
// tests/prompt_tag_cases.json. Loaded by the WebUI as a classic script (window.lcmLoraPrompt) and by
// Node as CommonJS (module.exports). Offsets are UTF-16 indices, as String.slice and textarea selections use.
//
// `stems`: the LCM-LoRA file stems (the weights registry's; the page gets them from the server's config).
// lcmLoraPrompt.findLcmTags(prompt, stems) -> [{text, name, stem (null for <lora:lcm>), weight (null if not explicit), start, end}]
// lcmLoraPrompt.hasLcmAlias(prompt) -> boolean
// lcmLoraPrompt.applyLcmTag(prompt, stem, weight, stems, respectUserWeight) -> prompt with exactly one LCM tag for stem
// lcmLoraPrompt.removeLcmTag(prompt, stems, stem) -> prompt without LCM tags (only stem's when given)
// lcmLoraPrompt.resolveLcmAlias(prompt, stem, stems) -> <lora:lcm...> renamed to stem
// lcmLoraPrompt.formatWeight(weight), lcmLoraPrompt.lcmTag(stem, weight) -> "0.8", "<lora:STEM:0.8>"
// Bad arguments throw TypeError / RangeError.

var lcmLoraPrompt = (function() {
    "use strict";

    var LCM_ALIAS = "lcm";
    var LORA_NETWORKS = ["lora", "lyco"];
    var WEIGHT_DECIMALS = 6;
    var MAX_ABS_WEIGHT = 1e6;

    // The host's /<(\w+):([^>]+)>/ with Python's Unicode \w, which is [\p{L}\p{N}_].
    var RE_EXTRA_NETWORK = /<([\p{L}\p{N}_]+):([^>]+)>/gu;
    var RE_ONE_EXTRA_NETWORK = /^<([\p{L}\p{N}_]+):([^>]+)>$/u;
    var RE_OPEN_END = /<[\p{L}\p{N}_]*$/u;
    var RE_CLOSE_START = /^[\p{L}\p{N}_]*:/u;
    var RE_TAG_NAME = /^[^\s:<>=]+$/; // a name the host's parser reads back as one positional item
    var RE_NUMBER = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;
    var RE_NON_ASCII = /[\u0080-\uffff]/;
    var WHITESPACE = " \t\n\r\f\v";
    var LINE_SPACE = " \t\r\f\v";

    function stripEnd(text, chars) {
        var end = text.length;
        while (end > 0 && chars.indexOf(text.charAt(end - 1)) >= 0) end--;
        return text.slice(0, end);
    }

    function stripStart(text, chars) {
        var start = 0;
        while (start < text.length && chars.indexOf(text.charAt(start)) >= 0) start++;
        return text.slice(start);
    }

    function checkPrompt(prompt) {
        if (typeof prompt !== "string") {
            throw new TypeError("prompt must be a string, got " + (prompt === null ? "null" : typeof prompt));
        }
    }

    // {ASCII-lower-case stem: stem as the registry spells it}
    function stemKeys(stems) {
        if (!Array.isArray(stems) || stems.some(function(stem) {
            return typeof stem !== "string";
        })) {
            throw new TypeError("stems must be a list of strings, got " + JSON.stringify(stems));
        }
        var keys = Object.create(null);
        stems.forEach(function(stem) {
            keys[stem.toLowerCase()] = stem;
        });
        return keys;
    }

    function checkStem(stem, stems) {
        stemKeys(stems);
        if (stems.indexOf(stem) < 0) {
            throw new RangeError("unknown LCM-LoRA file stem " + JSON.stringify(stem) + "; expected one of " + stems.join(", "));
        }
    }

    // Compact decimal text of a LoRA weight: 1 -> "1", 0.30000000000000004 -> "0.3"; six decimals at most,
    // halves away from zero, no exponent, never "-0".
    function formatWeight(weight) {
        if (typeof weight !== "number") {
            throw new TypeError("LCM-LoRA weight must be a number, got " + JSON.stringify(weight));
        }
        if (!(Math.abs(weight) < MAX_ABS_WEIGHT)) {
            throw new RangeError("LCM-LoRA weight must be a finite number below " + MAX_ABS_WEIGHT + " in size, got " + weight);
        }
        var digits = Math.abs(weight).toFixed(WEIGHT_DECIMALS).replace(/0+$/, "").replace(/\.$/, "");
        if (digits === "0") return "0";
        return weight < 0 ? "-" + digits : digits;
    }

    function lcmTag(stem, weight) {
        if (typeof stem !== "string" || !RE_TAG_NAME.test(stem)) {
            throw new RangeError("LCM-LoRA file stem " + JSON.stringify(stem) + " cannot be written in a <lora:...> tag");
        }
        return "<lora:" + stem + ":" + formatWeight(weight) + ">";
    }

    // The host's ExtraNetworkParams: positional items with their index, and k=v items.
    function splitItems(args) {
        var positional = [];
        var named = {};
        args.split(":").forEach(function(item, index) {
            var parts = item.split("=");
            if (parts.length === 2) {
                named[parts[0]] = parts[1];
            } else {
                positional.push({index: index, text: item});
            }
        });
        return {positional: positional, named: named};
    }

    function parseNumber(text) {
        text = stripStart(stripEnd(text, WHITESPACE), WHITESPACE);
        if (!RE_NUMBER.test(text)) return null;
        var value = Number(text);
        return isFinite(value) ? value : null;
    }

    function has(object, key) {
        return Object.prototype.hasOwnProperty.call(object, key);
    }

    // The host's unet multiplier when given explicitly and every multiplier it reads parses, else null.
    function unetWeight(positional, named) {
        var given = positional.slice(1, 3);
        ["te", "unet"].forEach(function(key) {
            if (has(named, key)) given.push(named[key]);
        });
        if (!given.length) return null;
        if (given.some(function(text) {
            return parseNumber(text) === null;
        })) return null;
        if (has(named, "unet")) return parseNumber(named.unet);
        if (positional.length > 2) return parseNumber(positional[2]);
        if (has(named, "te")) return parseNumber(named.te);
        return parseNumber(positional[1]);
    }

    function parseLoraArgs(network, args, byKey) {
        if (LORA_NETWORKS.indexOf(network) < 0) return null;
        var items = splitItems(args);
        if (!items.positional.length) return null;
        var name = items.positional[0].text;
        var key = stripStart(stripEnd(name, WHITESPACE), WHITESPACE);
        if (RE_NON_ASCII.test(key)) return null;
        key = key.toLowerCase();
        var stem;
        if (key === LCM_ALIAS) {
            stem = null;
        } else if (has(byKey, key)) {
            stem = byKey[key];
        } else {
            return null;
        }
        var positionalTexts = items.positional.map(function(item) {
            return item.text;
        });
        return {name: name, stem: stem, weight: unetWeight(positionalTexts, items.named)};
    }

    // Every LCM tag in the prompt, in order, as the host's parser sees it:
    // [{text, name, stem (null for the alias), weight (null when not explicit), start, end}].
    function findLcmTags(prompt, stems) {
        checkPrompt(prompt);
        var byKey = stemKeys(stems);
        var found = [];
        for (var match of prompt.matchAll(RE_EXTRA_NETWORK)) {
            var parsed = parseLoraArgs(match[1], match[2], byKey);
            if (parsed === null) continue;
            found.push({
                text: match[0],
                name: parsed.name,
                stem: parsed.stem,
                weight: parsed.weight,
                start: match.index,
                end: match.index + match[0].length,
            });
        }
        return found;
    }

    function hasLcmAlias(prompt) {
        return findLcmTags(prompt, []).some(function(tag) {
            return tag.stem === null;
        });
    }

    // The tag text with its name item (the first positional one) replaced by the stem.
    function renamed(tagText, stem) {
        var match = RE_ONE_EXTRA_NETWORK.exec(tagText);
        var items = match[2].split(":");
        items[splitItems(match[2]).positional[0].index] = stem;
        return "<" + match[1] + ":" + items.join(":") + ">";
    }

    function insert(prompt, tag, stems) {
        var body = stripEnd(prompt, WHITESPACE);
        var candidate;
        var start;
        if (body) {
            candidate = body + " " + tag + prompt.slice(body.length);
            start = body.length + 1;
        } else {
            candidate = prompt + tag;
            start = prompt.length;
        }
        var tags = findLcmTags(candidate, stems);
        if (tags.length === 1 && tags[0].start === start) return candidate;
        // An unclosed <word: before the end would make the appended tag part of itself.
        return tag + " " + prompt;
    }

    // Delete text.slice(start, end) (a tag), a comma right after it, and one neighbouring separator; never a
    // newline, and never glue <word and word:...> into a new tag. Same rules as _remove_span in
    // lib_lcm/prompt_tags.py.
    function removeSpan(text, start, end) {
        var after = text.charAt(end) === "," ? end + 1 : end;
        var lineStart = start > 0 ? text.lastIndexOf("\n", start - 1) + 1 : 0;
        var lineEnd = text.indexOf("\n", after);
        if (lineEnd < 0) lineEnd = text.length;
        var left = text.slice(lineStart, start);
        var right = text.slice(after, lineEnd);
        var leftContent = stripEnd(left, LINE_SPACE);
        var leftSpace = left.length - leftContent.length;
        var rightSpace = right.length - stripStart(right, LINE_SPACE).length;
        var hasNext = rightSpace < right.length;
        if (!leftContent) {
            return text.slice(0, start) + text.slice(after + Math.min(rightSpace, 1));
        }
        if (!hasNext) {
            return text.slice(0, start - Math.min(leftSpace, 1)) + text.slice(after);
        }
        var comma = after > end && leftContent.charAt(leftContent.length - 1) !== "," ? "," : "";
        var kept = leftSpace ? text.slice(start - leftSpace, start) : text.slice(after, after + rightSpace);
        if (!comma && !kept && RE_OPEN_END.test(leftContent) && RE_CLOSE_START.test(right)) {
            kept = " "; // joining <word and word:...> would make a new tag
        }
        return text.slice(0, start - leftSpace) + comma + kept + text.slice(after + rightSpace);
    }

    // Exactly one LCM tag, for `stem`: inserted when absent, else the first is rewritten in place and the
    // others removed. With respectUserWeight an explicit user weight is kept and only the name is fixed.
    function applyLcmTag(prompt, stem, weight, stems, respectUserWeight) {
        checkPrompt(prompt);
        checkStem(stem, stems);
        var newTag = lcmTag(stem, weight);
        var tags = findLcmTags(prompt, stems);
        if (!tags.length) return insert(prompt, newTag, stems);
        var text = prompt;
        for (var i = tags.length - 1; i > 0; i--) {
            text = removeSpan(text, tags[i].start, tags[i].end);
        }
        var first = tags[0];
        if (respectUserWeight && first.weight !== null) newTag = renamed(first.text, stem);
        return text.slice(0, first.start) + newTag + text.slice(first.end);
    }

    // Remove LCM tags and the separator next to each; only those naming `stem` when it is given.
    function removeLcmTag(prompt, stems, stem) {
        checkPrompt(prompt);
        if (stem !== undefined && stem !== null) checkStem(stem, stems);
        var tags = findLcmTags(prompt, stems);
        var text = prompt;
        for (var i = tags.length - 1; i >= 0; i--) {
            if (stem === undefined || stem === null || tags[i].stem === stem) {
                text = removeSpan(text, tags[i].start, tags[i].end);
            }
        }
        return text;
    }

    // Rewrite every <lora:lcm...> alias to name `stem`, keeping its weight and other arguments.
    function resolveLcmAlias(prompt, stem, stems) {
        checkPrompt(prompt);
        checkStem(stem, stems);
        var tags = findLcmTags(prompt, stems);
        var text = prompt;
        for (var i = tags.length - 1; i >= 0; i--) {
            if (tags[i].stem === null) {
                text = text.slice(0, tags[i].start) + renamed(tags[i].text, stem) + text.slice(tags[i].end);
            }
        }
        return text;
    }

    return Object.freeze({
        LCM_ALIAS: LCM_ALIAS,
        formatWeight: formatWeight,
        lcmTag: lcmTag,
        findLcmTags: findLcmTags,
        hasLcmAlias: hasLcmAlias,
        applyLcmTag: applyLcmTag,
        removeLcmTag: removeLcmTag,
        resolveLcmAlias: resolveLcmAlias,
    });
})();

if (typeof module !== "undefined" && module.exports) {
    module.exports = lcmLoraPrompt;
}
