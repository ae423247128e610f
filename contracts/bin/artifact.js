#!/usr/bin/env node
// Writes the committed artifact of a contract from forge's build output: the ABI, creation and
// runtime bytecode, and the compiler and settings that made them (from the solc metadata).
// Usage: artifact.js OUT_DIR CONTRACT > artifacts/CONTRACT.json
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const [outDir, name] = process.argv.slice(2);
if (!outDir || !name) {
  process.stderr.write("usage: artifact.js OUT_DIR CONTRACT\n");
  process.exit(2);
}
const built = JSON.parse(fs.readFileSync(path.join(outDir, `${name}.sol`, `${name}.json`), "utf8"));
const meta = typeof built.rawMetadata === "string" ? JSON.parse(built.rawMetadata) : built.metadata;
const artifact = {
  contractName: name,
  source: `contracts/src/${name}.sol`,
  compiler: `solc ${meta.compiler.version}`,
  settings: {
    evmVersion: meta.settings.evmVersion,
    optimizer: meta.settings.optimizer,
    viaIR: Boolean(meta.settings.viaIR),
  },
  abi: built.abi,
  bytecode: built.bytecode.object,
  deployedBytecode: built.deployedBytecode.object,
};
process.stdout.write(JSON.stringify(artifact, null, 2) + "\n");
