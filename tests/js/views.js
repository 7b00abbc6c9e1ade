// For tests/test_compact.py: reads one JSON request per line, answers one line. Each request holds
// streams as [[event name, data], ...]; each is applied with web/stream.js (expand, then reduce), as
// the page does, and the views' entities come back as canonical JSON (keys sorted), with `truth`
// (the hub's own states) put through the same canonical form.
"use strict";
const fs = require("fs");
const path = require("path");
const readline = require("readline");
const vm = require("vm");

const source = fs.readFileSync(path.join(__dirname, "..", "..", "web", "stream.js"), "utf8");
vm.runInThisContext(`${source}\n;globalThis.streamApi = { expand, reduce, isoOf };`);
const { expand, reduce, isoOf } = globalThis.streamApi;

function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function apply(events) {
  let view = null, outOfStep = 0;
  for (const [name, text] of events) {
    const expanded = expand(view, name, JSON.parse(text));
    if (!expanded) { outOfStep += 1; continue; }
    view = reduce(view, expanded[0], expanded[1]);
  }
  return { entities: view ? canonical(view.entities) : null, outOfStep };
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const request = JSON.parse(line);
  const answer = {};
  if (request.iso) answer.iso = request.iso.map(isoOf);
  for (const [name, events] of Object.entries(request.streams ?? {})) answer[name] = apply(events);
  if (request.truth !== undefined) answer.truth = canonical(JSON.parse(request.truth));
  process.stdout.write(JSON.stringify(answer) + "\n");
});
