/**
 * GBNF, llama.cpp's grammar syntax, parsed and compiled to the flat table the engine's matcher reads
 * (native/engine/grammar.h). Syntax: `name ::= alternatives` rules (names of letters, digits, `-` and `_`; the
 * start rule is `root`), `|` alternation, `( )` grouping, `*` `+` `?` `{m}` `{m,}` `{m,n}` repetition, "literals",
 * [character classes] with ranges and `^` negation, `.` for any character, escapes \n \r \t \\ \" \[ \] \- \xHH
 * \uHHHH \UHHHHHHHH, and `#` comments. A rule's body may span lines.
 */
import { GrammarError } from "../errors";
import { grammarElementCodes } from "../native/binding";

const MAX_CODEPOINT = 0x10ffff;
/** The largest bound of a {m,n} repetition (each unit of it is copied into the table). */
const MAX_REPETITION = 1000;

interface Where {
  line: number;
  column: number;
}

type Item =
  | { kind: "chars"; negated: boolean; ranges: [number, number][] }
  | ({ kind: "ref"; name: string } & Where)
  | { kind: "group"; alternatives: Item[][] }
  | { kind: "repeat"; item: Item; min: number; max: number };

interface RuleSource extends Where {
  name: string;
  alternatives: Item[][];
}

/** A grammar ready for the engine: the table, and its rule names (index order) for messages. */
export interface CompiledGrammar {
  table: Int32Array;
  ruleNames: string[];
}

const isNameChar = (c: string) => /[A-Za-z0-9_-]/.test(c);

class Parser {
  private pos = 0;
  private rule: string | undefined;

  constructor(private readonly src: string) {}

  private where(at = this.pos): Where {
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < at; i++) {
      if (this.src[i] === "\n") {
        line++;
        lineStart = i + 1;
      }
    }
    return { line, column: at - lineStart + 1 };
  }

  fail(message: string, at = this.pos, rule = this.rule): never {
    const { line, column } = this.where(at);
    throw new GrammarError(message, rule, line, column);
  }

  /** Skips spaces, newlines and comments. */
  private space(): void {
    for (;;) {
      const c = this.src[this.pos];
      if (c === " " || c === "\t" || c === "\n" || c === "\r") this.pos++;
      else if (c === "#") while (this.pos < this.src.length && this.src[this.pos] !== "\n") this.pos++;
      else return;
    }
  }

  private name(): string {
    const start = this.pos;
    while (this.pos < this.src.length && isNameChar(this.src[this.pos])) this.pos++;
    if (this.pos === start) this.fail(`expected a rule name, found ${this.describe()}`);
    return this.src.slice(start, this.pos);
  }

  private describe(): string {
    return this.pos >= this.src.length ? "the end of the grammar" : JSON.stringify(this.src[this.pos]);
  }

  /** Whether a rule definition (`name ::=`) starts here. */
  private atDefinition(): boolean {
    const match = /^[A-Za-z0-9_-]+[ \t]*::=/.exec(this.src.slice(this.pos, this.pos + 200));
    return match !== null;
  }

  parse(): RuleSource[] {
    const rules: RuleSource[] = [];
    this.space();
    while (this.pos < this.src.length) {
      const at = this.pos;
      const name = this.name();
      this.rule = name;
      const where = this.where(at);
      while (this.src[this.pos] === " " || this.src[this.pos] === "\t") this.pos++;
      if (!this.src.startsWith("::=", this.pos)) this.fail(`expected "::=" after the rule name, found ${this.describe()}`);
      this.pos += 3;
      const alternatives = this.alternatives(false);
      if (rules.some((r) => r.name === name)) this.fail(`rule "${name}" is defined twice`, at);
      rules.push({ name, alternatives, ...where });
    }
    if (rules.length === 0) this.fail("the grammar defines no rule");
    return rules;
  }

  /** Alternatives up to a ")" (nested) or the next rule definition / the end (top level). */
  private alternatives(nested: boolean): Item[][] {
    const alternatives: Item[][] = [this.sequence(nested)];
    while (this.src[this.pos] === "|") {
      this.pos++;
      alternatives.push(this.sequence(nested));
    }
    return alternatives;
  }

  private sequence(nested: boolean): Item[] {
    const items: Item[] = [];
    for (;;) {
      this.space();
      const c = this.src[this.pos];
      if (c === undefined || c === "|" || (c === ")" && nested) || (!nested && this.atDefinition())) return items;
      if (c === "*" || c === "+" || c === "?" || c === "{") {
        const last = items.pop();
        if (!last) this.fail(`"${c}" must follow something to repeat`);
        items.push(this.repetition(last));
        continue;
      }
      items.push(this.primary());
    }
  }

  private repetition(item: Item): Item {
    const c = this.src[this.pos++];
    if (c === "*") return { kind: "repeat", item, min: 0, max: Infinity };
    if (c === "+") return { kind: "repeat", item, min: 1, max: Infinity };
    if (c === "?") return { kind: "repeat", item, min: 0, max: 1 };
    const start = this.pos - 1;
    const match = /^\s*(\d+)\s*(?:(,)\s*(\d*)\s*)?\}/.exec(this.src.slice(this.pos, this.pos + 40));
    if (!match) this.fail('expected "{m}", "{m,}" or "{m,n}"', start);
    this.pos += match[0].length;
    const min = Number(match[1]);
    const max = match[2] === undefined ? min : match[3] === "" ? Infinity : Number(match[3]);
    if (min > max) this.fail(`repetition {${min},${max}}: the minimum exceeds the maximum`, start);
    if (min > MAX_REPETITION || (max !== Infinity && max > MAX_REPETITION)) this.fail(`repetition bounds above ${MAX_REPETITION}`, start);
    return { kind: "repeat", item, min, max };
  }

  private primary(): Item {
    const c = this.src[this.pos];
    const at = this.pos;
    if (c === '"') {
      this.pos++;
      const chars: Item[] = [];
      while (this.src[this.pos] !== '"') {
        if (this.pos >= this.src.length || this.src[this.pos] === "\n") this.fail("unterminated string literal", at);
        const cp = this.char();
        chars.push({ kind: "chars", negated: false, ranges: [[cp, cp]] });
      }
      this.pos++;
      return { kind: "group", alternatives: [chars] };
    }
    if (c === "[") return this.charClass();
    if (c === ".") {
      this.pos++;
      return { kind: "chars", negated: true, ranges: [] };
    }
    if (c === "(") {
      this.pos++;
      const alternatives = this.alternatives(true);
      if (this.src[this.pos] !== ")") this.fail('expected ")" to close the group', at);
      this.pos++;
      return { kind: "group", alternatives };
    }
    if (isNameChar(c ?? "")) {
      const where = this.where();
      return { kind: "ref", name: this.name(), ...where };
    }
    return this.fail(`unexpected ${this.describe()}`);
  }

  private charClass(): Item {
    const at = this.pos++;
    const negated = this.src[this.pos] === "^";
    if (negated) this.pos++;
    const ranges: [number, number][] = [];
    while (this.src[this.pos] !== "]") {
      if (this.pos >= this.src.length) this.fail("unterminated character class", at);
      const lo = this.char();
      let hi = lo;
      if (this.src[this.pos] === "-" && this.src[this.pos + 1] !== "]") {
        this.pos++;
        const rangeAt = this.pos;
        hi = this.char();
        if (hi < lo) this.fail("a character range ends before it starts", rangeAt);
      }
      ranges.push([lo, hi]);
    }
    this.pos++;
    return { kind: "chars", negated, ranges };
  }

  /** One character of a literal or class, escapes decoded: its code point. */
  private char(): number {
    const at = this.pos;
    const cp = this.src.codePointAt(this.pos)!;
    if (cp !== 0x5c) {
      this.pos += cp > 0xffff ? 2 : 1;
      return cp;
    }
    const e = this.src[this.pos + 1];
    this.pos += 2;
    const simple: Record<string, number> = { n: 10, r: 13, t: 9, "\\": 92, '"': 34, "[": 91, "]": 93, "-": 45, "/": 47, "^": 94 };
    if (e !== undefined && e in simple) return simple[e];
    const digits = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
    if (digits === 0) this.fail(`unknown escape "\\${e ?? ""}"`, at);
    const hex = this.src.slice(this.pos, this.pos + digits);
    if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== digits) this.fail(`"\\${e}" needs ${digits} hex digits`, at);
    this.pos += digits;
    const value = parseInt(hex, 16);
    if (value > MAX_CODEPOINT) this.fail(`code point U+${hex} is beyond U+10FFFF`, at);
    return value;
  }
}

/** Rules as the table holds them: alternatives of elements, with generated rules for groups and repetitions. */
class TableBuilder {
  readonly names: string[] = [];
  readonly bodies: number[][][] = [];
  /** For a generated rule, the named rule it came from (for messages). */
  readonly origin: string[] = [];
  private readonly index = new Map<string, number>();
  /** The element codes, as the engine that reads the table defines them. */
  private readonly codes = grammarElementCodes();

  constructor(private readonly sources: RuleSource[]) {
    for (const r of sources) this.add(r.name, r.name);
  }

  private add(name: string, origin: string): number {
    const i = this.names.length;
    this.names.push(name);
    this.bodies.push([]);
    this.origin.push(origin);
    this.index.set(name, i);
    return i;
  }

  build(): void {
    for (const r of this.sources) {
      const i = this.index.get(r.name)!;
      this.bodies[i] = r.alternatives.map((alt) => this.sequence(alt, r.name));
    }
  }

  private generated(origin: string, alternatives: number[][]): number {
    const i = this.add(`${origin}#${this.names.length}`, origin); // '#' is no name character: no clash
    this.bodies[i] = alternatives;
    return i;
  }

  private sequence(items: Item[], origin: string): number[] {
    return items.flatMap((item) => this.item(item, origin));
  }

  /** The elements that match `item` in place. */
  private item(item: Item, origin: string): number[] {
    switch (item.kind) {
      case "chars":
        return [this.codes.chars, item.negated ? 1 : 0, item.ranges.length, ...item.ranges.flat()];
      case "ref": {
        const target = this.index.get(item.name);
        if (target === undefined) {
          throw new GrammarError(`rule "${item.name}" is referred to but not defined`, origin, item.line, item.column);
        }
        return [this.codes.ref, target];
      }
      case "group":
        if (item.alternatives.length === 1) return this.sequence(item.alternatives[0], origin);
        return [this.codes.ref, this.generated(origin, item.alternatives.map((alt) => this.sequence(alt, origin)))];
      case "repeat": {
        const unit = this.item(item.item, origin);
        const copies: number[] = [];
        for (let i = 0; i < item.min; i++) copies.push(...unit);
        if (item.max === Infinity) {
          // R ::= unit R | (nothing): right recursion, which the matcher keeps flat.
          const r = this.generated(origin, []);
          this.bodies[r] = [[...unit, this.codes.ref, r], []];
          return [...copies, this.codes.ref, r];
        }
        // Up to max - min more: O1 ::= unit | (nothing); Ok ::= unit O(k-1) | (nothing).
        let optional = -1;
        for (let k = 0; k < item.max - item.min; k++) {
          optional = this.generated(origin, [optional < 0 ? [...unit] : [...unit, this.codes.ref, optional], []]);
        }
        return optional < 0 ? copies : [...copies, this.codes.ref, optional];
      }
    }
  }

  /** Left recursion (a rule reaching itself before matching a character) would never end: refused, named. */
  checkLeftRecursion(): void {
    const n = this.names.length;
    const { chars } = this.codes;
    const nullable = new Array<boolean>(n).fill(false);
    const elementsNullable = (elements: number[]): boolean => {
      for (let i = 0; i < elements.length; ) {
        if (elements[i] === chars) return false;
        if (!nullable[elements[i + 1]]) return false;
        i += 2;
      }
      return true;
    };
    for (let changed = true; changed; ) {
      changed = false;
      for (let r = 0; r < n; r++) {
        if (!nullable[r] && this.bodies[r].some(elementsNullable)) nullable[r] = changed = true;
      }
    }
    // The rules each rule may enter before its first character.
    const leading = this.bodies.map((alts) => {
      const out: number[] = [];
      for (const elements of alts) {
        for (let i = 0; i < elements.length; ) {
          if (elements[i] === chars) break;
          out.push(elements[i + 1]);
          if (!nullable[elements[i + 1]]) break;
          i += 2;
        }
      }
      return out;
    });
    const state = new Uint8Array(n); // 0 unseen, 1 on the path, 2 done
    const visit = (r: number): void => {
      state[r] = 1;
      for (const next of leading[r]) {
        if (state[next] === 1) {
          const source = this.sources.find((s) => s.name === this.origin[next])!;
          const what = this.origin[next] === this.names[next] ? "is left-recursive" : "repeats something that can match nothing";
          throw new GrammarError(`rule "${this.origin[next]}" ${what}`, this.origin[next], source.line, source.column);
        }
        if (state[next] === 0) visit(next);
      }
      state[r] = 2;
    };
    for (let r = 0; r < n; r++) if (state[r] === 0) visit(r);
  }

  table(root: number): Int32Array {
    const n = this.names.length;
    const header = 2 + n;
    const out: number[] = [n, root];
    const offsets: number[] = [];
    const elements: number[] = [];
    const { altEnd, ruleEnd } = this.codes;
    for (const alts of this.bodies) {
      offsets.push(header + elements.length);
      for (const alt of alts) elements.push(...alt, altEnd);
      elements.push(ruleEnd);
    }
    return Int32Array.from([...out, ...offsets, ...elements]);
  }
}

/** Parses GBNF text and compiles it for the engine; a GrammarError (an InvalidArgumentError) names what is wrong. */
export function compileGrammar(source: string, root = "root"): CompiledGrammar {
  if (typeof source !== "string") throw new GrammarError("the grammar must be a string", undefined, 1, 1);
  const parser = new Parser(source);
  const rules = parser.parse();
  const builder = new TableBuilder(rules);
  builder.build();
  const rootIndex = builder.names.indexOf(root);
  if (rootIndex < 0 || rules.every((r) => r.name !== root)) throw new GrammarError(`the grammar has no "${root}" rule`, undefined, 1, 1);
  builder.checkLeftRecursion();
  return { table: builder.table(rootIndex), ruleNames: builder.names };
}
