#!/usr/bin/env node
// Fails when the import graph breaks the project's layering: `core/` importing another
// folder, or any cycle between files or between folders; and when code outside `store/` talks
// HTTP to a database itself (store/ is the one home of database calls; server/ is a server).
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FOLDERS = ['core', 'store', 'config', 'couchapp', 'agents', 'coordinator', 'server', 'dashboard', 'cli', 'bench'];

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : [];
  });
}

const graph = new Map();
for (const folder of FOLDERS) {
  let list = [];
  try {
    list = files(join(root, folder));
  } catch {
    continue;
  }
  for (const file of list) {
    const source = readFileSync(file, 'utf8');
    const targets = [...source.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) => resolve(dirname(file), m[1].replace(/\.js$/, '.ts')));
    graph.set(
      relative(root, file),
      targets.map((t) => relative(root, t)),
    );
  }
}

const problems = [];
/** What issues HTTP: a client request of the Database, fetch, node:http's request/get, the raw transport. */
const HTTP_CALL = [
  /\.request\s*[<(]/,
  /\bfetch\s*\(/,
  /\bhttps?\.(request|get)\s*\(/,
  /(^|[^.\w])request\s*\(\s*$|(^|[^.\w])request\s*\(\s*\{/,
  /store\/http\.js/,
];
/** A line that issues HTTP to something that is not a database says so, or the comment line above it does. */
const NOT_A_DATABASE = /not a database/;
for (const file of graph.keys()) {
  const folder = file.split('/')[0];
  if (folder === 'store' || folder === 'server') continue;
  const lines = readFileSync(join(root, file), 'utf8').split('\n');
  lines.forEach((line, i) => {
    const markedAbove = i > 0 && /^\s*\/\//.test(lines[i - 1]) && NOT_A_DATABASE.test(lines[i - 1]);
    if (/^\s*(\/\/|\*|\/\*)/.test(line) || NOT_A_DATABASE.test(line) || markedAbove) return;
    if (HTTP_CALL.some((pattern) => pattern.test(line)))
      problems.push(
        `${file}:${i + 1} issues HTTP outside store/ (database calls live in store/; mark a call to something else "not a database"): ${line.trim().slice(0, 120)}`,
      );
  });
}
const folderOf = (file) => file.split('/')[0];
const folderEdges = new Map();
for (const [file, targets] of graph) {
  for (const target of targets) {
    const [from, to] = [folderOf(file), folderOf(target)];
    if (from === 'core' && to !== 'core') problems.push(`${file} imports ${target}: core/ must not import other folders`);
    if (from !== to) {
      if (!folderEdges.has(from)) folderEdges.set(from, new Set());
      folderEdges.get(from).add(to);
    }
  }
}

function findCycle(edges) {
  const state = new Map();
  const stack = [];
  const visit = (node) => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of edges.get(node) ?? []) {
      if (state.get(next) === 'open') return [...stack.slice(stack.indexOf(next)), next];
      if (!state.has(next)) {
        const cycle = visit(next);
        if (cycle) return cycle;
      }
    }
    stack.pop();
    state.set(node, 'done');
    return undefined;
  };
  for (const node of edges.keys())
    if (!state.has(node)) {
      const c = visit(node);
      if (c) return c;
    }
  return undefined;
}

const fileCycle = findCycle(new Map([...graph].map(([k, v]) => [k, new Set(v)])));
if (fileCycle) problems.push(`import cycle between files: ${fileCycle.join(' → ')}`);
const folderCycle = findCycle(folderEdges);
if (folderCycle) problems.push(`import cycle between folders: ${folderCycle.join(' → ')}`);

if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.error(`imports: ${graph.size} files, no cycles, core/ self-contained, database HTTP only in store/`);
