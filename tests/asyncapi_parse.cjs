// Checks AsyncAPI documents with the AsyncAPI project's own parser (@asyncapi/parser, with
// @asyncapi/avro-schema-parser), for tests/test_asyncapi.py. The 3.x parser converts Avro
// schemas but lints them only in 2.x documents, so every Avro schema is also put through the
// Avro parser's own validate() (avsc), as the parser does for 2.x.
// Usage: node tests/asyncapi_parse.cjs <node_modules folder> <document.yaml|json>...
// Prints one JSON object per document, a line each:
//   {"file", "ok", "document": bool, "diagnostics": [{severity, code, message, path}]}
// "ok" is false when the parser could not build a document or reported an error; the exit
// status is 1 if any document is not ok.
"use strict";
const fs = require("fs");
const path = require("path");

const SEVERITIES = ["error", "warning", "information", "hint"];

async function check(modules, parser, avro, file) {
  const text = fs.readFileSync(file, "utf8");
  const { document, diagnostics } = await parser.parse(text);
  const out = diagnostics.map((d) => ({
    severity: SEVERITIES[d.severity] || String(d.severity),
    code: String(d.code),
    message: d.message,
    path: d.path.join("/"),
  }));
  const yaml = require(path.join(modules, "js-yaml"));
  const avroFormats = new Set(avro.getMimeTypes());
  const pending = [];
  (function walk(node, at) {
    if (node === null || typeof node !== "object") return;
    if (avroFormats.has(node.schemaFormat) && node.schema !== undefined) {
      pending.push(avro.validate({ data: node.schema, path: [...at, "schema"] }));
    }
    for (const [key, value] of Object.entries(node)) walk(value, [...at, key]);
  })(yaml.load(text), []);
  for (const found of await Promise.all(pending)) {
    for (const d of found) {
      out.push({ severity: "error", code: "avro-schema", message: d.message, path: d.path.join("/") });
    }
  }
  const ok = Boolean(document) && !out.some((d) => d.severity === "error");
  return { file, ok, document: Boolean(document), diagnostics: out };
}

async function main() {
  const [modules, ...files] = process.argv.slice(2);
  const { Parser } = require(path.join(modules, "@asyncapi/parser"));
  const { AvroSchemaParser } = require(path.join(modules, "@asyncapi/avro-schema-parser"));
  const parser = new Parser();
  const avro = AvroSchemaParser();
  parser.registerSchemaParser(avro);
  let allOk = true;
  for (const file of files) {
    const result = await check(modules, parser, avro, file);
    allOk = allOk && result.ok;
    process.stdout.write(JSON.stringify(result) + "\n");
  }
  process.exitCode = allOk ? 0 : 1;
}

main().catch((err) => {
  process.stderr.write(String((err && err.stack) || err) + "\n");
  process.exitCode = 2;
});
