/**
 * JSON Schema to GBNF, for the subset constrained generation supports: object (properties, required,
 * additionalProperties), array (items, minItems, maxItems), string (enum, const, pattern for simple regular
 * expressions, format date / date-time / uuid), number / integer (minimum / maximum), boolean, null, anyOf / oneOf,
 * $ref / $defs, nullable, type lists; annotations (title, description, ...) are ignored. Any other keyword is an
 * UnsupportedSchemaError naming it: never silently dropped, since the output must validate.
 *
 * What the grammar produces is always valid against the schema, though not every valid value is produced: objects
 * list their properties in the schema's order and only those properties, numbers with bounds have at most 15
 * fraction digits and integer bounds rounded inward, and oneOf is taken as anyOf (its branches are assumed disjoint).
 */
import { UnsupportedSchemaError } from "../errors";

/** Whitespace between tokens, bounded so that a generation cannot run on in it. */
const WS = 'ws ::= | " " | "\\n" [ \\t]{0,20}';

/** Any JSON value (`json: true`). Numbers have at most 16 integer and 15 fraction digits, so that they end. */
const JSON_RULES = [
  "json-value ::= json-object | json-array | json-string | json-number | \"true\" | \"false\" | \"null\"",
  'json-object ::= "{" ws ( json-string ws ":" ws json-value ws ( "," ws json-string ws ":" ws json-value ws )* )? "}"',
  'json-array ::= "[" ws ( json-value ws ( "," ws json-value ws )* )? "]"',
  'json-string ::= "\\"" json-char* "\\""',
  'json-char ::= [^"\\\\\\x00-\\x1f] | "\\\\" ( ["\\\\/bfnrt] | "u" [0-9a-fA-F]{4} )',
  'json-number ::= json-integer ( "." [0-9]{1,15} )? ( [eE] [-+]? [0-9]{1,2} )?',
  'json-integer ::= "-"? ( "0" | [1-9] [0-9]{0,15} )',
  WS,
];

/** GBNF for any JSON value. */
export const JSON_GBNF = ["root ::= json-value", ...JSON_RULES].join("\n");

const ANNOTATIONS = new Set(["title", "description", "$schema", "$id", "$comment", "default", "examples", "deprecated", "readOnly", "writeOnly"]);
const KEYWORDS = new Set([
  "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const", "pattern", "format",
  "minimum", "maximum", "anyOf", "oneOf", "$ref", "$defs", "definitions", "nullable",
]);
const TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"] as const;
type JsonType = (typeof TYPES)[number];
/** The most items or digits of a bound the grammar spells out (each one a copy in the table). */
const MAX_COUNT = 1000;

/** A GBNF string literal matching exactly `text`. */
function gbnfLiteral(text: string): string {
  let out = '"';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

/** A code point inside a GBNF character class. */
function classChar(cp: number): string {
  if (/[A-Za-z0-9 ]/.test(String.fromCodePoint(cp))) return String.fromCodePoint(cp);
  return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, "0")}` : cp <= 0xffff ? `\\u${cp.toString(16).padStart(4, "0")}` : `\\U${cp.toString(16).padStart(8, "0")}`;
}

function gbnfClass(negated: boolean, ranges: [number, number][]): string {
  return `[${negated ? "^" : ""}${ranges.map(([lo, hi]) => (lo === hi ? classChar(lo) : `${classChar(lo)}-${classChar(hi)}`)).join("")}]`;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function jsonTypeOf(value: unknown): JsonType {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value as JsonType;
}

const pointer = (path: string, key: string | number) => `${path}/${String(key).replace(/~/g, "~0").replace(/\//g, "~1")}`;

// ---- Integer ranges, digit by digit ----

const nines = (n: number) => "9".repeat(n);
const zeros = (n: number) => "0".repeat(n);
const digitClass = (lo: string, hi: string) => (lo === hi ? gbnfLiteral(lo) : `[${lo}-${hi}]`);
const anyDigits = (n: number) => (n === 0 ? "" : n === 1 ? " [0-9]" : ` [0-9]{${n}}`);

/** The decimal numbers from lo to hi, both of the same number of digits. */
function sameLength(lo: string, hi: string): string {
  if (lo === hi) return gbnfLiteral(lo);
  const rest = lo.length - 1;
  if (lo[0] === hi[0]) return `${gbnfLiteral(lo[0])} ${sameLength(lo.slice(1), hi.slice(1))}`;
  const alternatives: string[] = [];
  let first = Number(lo[0]);
  let last = Number(hi[0]);
  if (lo.slice(1) !== zeros(rest)) {
    alternatives.push(`${gbnfLiteral(lo[0])} ( ${sameLength(lo.slice(1), nines(rest))} )`);
    first++;
  }
  const tail = hi.slice(1) !== nines(rest) ? `${gbnfLiteral(hi[0])} ( ${sameLength(zeros(rest), hi.slice(1))} )` : undefined;
  if (tail) last--;
  if (first <= last) alternatives.push(`${digitClass(String(first), String(last))}${anyDigits(rest)}`);
  if (tail) alternatives.push(tail);
  return alternatives.length === 1 ? alternatives[0] : `( ${alternatives.join(" | ")} )`;
}

/** The non-negative integers from lo to hi (undefined: no bound), without leading zeros. */
function naturalRange(lo: bigint, hi: bigint | undefined): string[] {
  const out: string[] = [];
  const loDigits = lo.toString().length;
  const hiDigits = hi === undefined ? loDigits : hi.toString().length;
  for (let n = loDigits; n <= hiDigits; n++) {
    const from = n === loDigits ? lo : 10n ** BigInt(n - 1);
    const to = hi !== undefined && n === hiDigits ? hi : 10n ** BigInt(n) - 1n;
    out.push(sameLength(from.toString(), to.toString()));
  }
  if (hi === undefined) out.push(`[1-9] [0-9]{${loDigits},}`);
  return out;
}

/** The integers from lo to hi (undefined: no bound), as a GBNF expression; undefined when there are none. */
function integerRange(lo: bigint | undefined, hi: bigint | undefined): string | undefined {
  if (lo !== undefined && hi !== undefined && lo > hi) return undefined;
  const alternatives: string[] = [];
  if (lo === undefined || lo < 0n) {
    // -k for k from max(1, -hi) to -lo.
    const top = hi !== undefined && hi < 0n ? -hi : 1n;
    alternatives.push(`"-" ( ${naturalRange(top, lo === undefined ? undefined : -lo).join(" | ")} )`);
  }
  if (hi === undefined || hi >= 0n) alternatives.push(...naturalRange(lo !== undefined && lo > 0n ? lo : 0n, hi));
  return `( ${alternatives.join(" | ")} )`;
}

// ---- Simple regular expressions (pattern) ----

/** Characters a JSON string cannot hold unescaped: the generated text leaves them out of classes. */
const UNSAFE: [number, number][] = [
  [0x00, 0x1f],
  [0x22, 0x22],
  [0x5c, 0x5c],
];

function subtractUnsafe(ranges: [number, number][]): [number, number][] {
  let out = ranges;
  for (const [ulo, uhi] of UNSAFE) {
    out = out.flatMap(([lo, hi]): [number, number][] => {
      if (hi < ulo || lo > uhi) return [[lo, hi]];
      const parts: [number, number][] = [];
      if (lo < ulo) parts.push([lo, ulo - 1]);
      if (hi > uhi) parts.push([uhi + 1, hi]);
      return parts;
    });
  }
  return out;
}

/** One character as JSON string content (escaped where JSON needs it), as a GBNF literal. */
const jsonCharLiteral = (ch: string) => gbnfLiteral(JSON.stringify(ch).slice(1, -1));

const CLASS_ESCAPES: Record<string, { negated: boolean; ranges: [number, number][] }> = {
  d: { negated: false, ranges: [[48, 57]] },
  w: { negated: false, ranges: [[48, 57], [65, 90], [95, 95], [97, 122]] },
  s: { negated: false, ranges: [[9, 13], [32, 32]] },
};

/** A regular expression of the simple kind (literals, classes, groups, alternation, quantifiers, ^ and $ at the
 * ends) as a GBNF expression over JSON string content. */
class PatternCompiler {
  private pos = 0;

  constructor(
    private readonly src: string,
    private readonly path: string,
  ) {}

  private unsupported(what: string): never {
    throw new UnsupportedSchemaError(`pattern ${JSON.stringify(this.src)}: ${what} is not supported (only simple patterns)`, "pattern", this.path);
  }

  compile(): string {
    if (this.src.startsWith("^")) this.pos++;
    const body = this.alternation();
    if (this.src[this.pos] === "$") this.pos++;
    if (this.pos < this.src.length) this.unsupported(`${JSON.stringify(this.src[this.pos])} at ${this.pos}`);
    return body;
  }

  private alternation(): string {
    const alternatives = [this.sequence()];
    while (this.src[this.pos] === "|") {
      this.pos++;
      alternatives.push(this.sequence());
    }
    return alternatives.length === 1 ? alternatives[0] : `( ${alternatives.join(" | ")} )`;
  }

  private sequence(): string {
    const items: string[] = [];
    for (;;) {
      const c = this.src[this.pos];
      if (c === undefined || c === "|" || c === ")" || (c === "$" && this.pos === this.src.length - 1)) break;
      let item = this.atom();
      const q = this.quantifier();
      if (q) item = `( ${item} )${q}`;
      items.push(item);
    }
    return items.length === 0 ? '""' : items.join(" ");
  }

  private quantifier(): string {
    const c = this.src[this.pos];
    let q = "";
    if (c === "*" || c === "+" || c === "?") {
      this.pos++;
      q = c;
    } else if (c === "{") {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.pos));
      if (!m) this.unsupported('"{" outside a quantifier');
      if (Number(m[1]) > MAX_COUNT || (m[3] && Number(m[3]) > MAX_COUNT)) this.unsupported(`a repetition above ${MAX_COUNT}`);
      this.pos += m[0].length;
      q = m[0];
    }
    if (q && this.src[this.pos] === "?") this.pos++; // lazy: the same strings
    return q;
  }

  private atom(): string {
    const c = this.src[this.pos];
    if (c === "(") {
      this.pos++;
      if (this.src[this.pos] === "?") {
        if (this.src[this.pos + 1] !== ":") this.unsupported("a lookaround or named group");
        this.pos += 2;
      }
      const inner = this.alternation();
      if (this.src[this.pos] !== ")") this.unsupported("an unclosed group");
      this.pos++;
      return `( ${inner} )`;
    }
    if (c === "[") return this.charClass();
    if (c === ".") {
      this.pos++;
      return gbnfClass(true, [[0x0a, 0x0a], [0x0d, 0x0d], [0x2028, 0x2029], ...UNSAFE]);
    }
    if (c === "\\") {
      const e = this.src[this.pos + 1];
      this.pos += 2;
      const cls = CLASS_ESCAPES[e?.toLowerCase() ?? ""];
      if (cls) return this.classExpression(e !== e.toLowerCase(), cls.ranges);
      return jsonCharLiteral(this.escapedChar(e));
    }
    if ("^$*+?{}]".includes(c)) this.unsupported(`${JSON.stringify(c)} at ${this.pos}`);
    const ch = String.fromCodePoint(this.src.codePointAt(this.pos)!);
    this.pos += ch.length;
    return jsonCharLiteral(ch);
  }

  private escapedChar(e: string | undefined): string {
    const controls: Record<string, string> = { n: "\n", r: "\r", t: "\t", f: "\f", v: "\v" };
    if (e !== undefined && e in controls) return controls[e];
    if (e !== undefined && /[\\^$.*+?()[\]{}|/\-"' ]/.test(e)) return e;
    return this.unsupported(`the escape "\\${e ?? ""}"`);
  }

  private classExpression(negated: boolean, ranges: [number, number][]): string {
    return negated ? gbnfClass(true, [...ranges, ...UNSAFE]) : gbnfClass(false, subtractUnsafe(ranges));
  }

  private charClass(): string {
    this.pos++;
    const negated = this.src[this.pos] === "^";
    if (negated) this.pos++;
    const ranges: [number, number][] = [];
    const one = (): number | [number, number][] => {
      const c = this.src[this.pos];
      if (c === "\\") {
        const e = this.src[this.pos + 1];
        this.pos += 2;
        const cls = CLASS_ESCAPES[e ?? ""];
        if (cls) return cls.ranges;
        return this.escapedChar(e).codePointAt(0)!;
      }
      const cp = this.src.codePointAt(this.pos)!;
      this.pos += cp > 0xffff ? 2 : 1;
      return cp;
    };
    while (this.src[this.pos] !== "]") {
      if (this.pos >= this.src.length) this.unsupported("an unclosed character class");
      const lo = one();
      if (typeof lo !== "number") {
        ranges.push(...lo);
        continue;
      }
      if (this.src[this.pos] === "-" && this.src[this.pos + 1] !== "]") {
        this.pos++;
        const hi = one();
        if (typeof hi !== "number" || hi < lo) this.unsupported("a malformed class range");
        ranges.push([lo, hi]);
      } else {
        ranges.push([lo, lo]);
      }
    }
    this.pos++;
    return this.classExpression(negated, ranges);
  }
}

// ---- Schemas ----

const FORMATS: Record<string, string> = {
  date: "json-date",
  "date-time": 'json-date "T" json-time',
  uuid: 'json-hex{8} "-" json-hex{4} "-" json-hex{4} "-" json-hex{4} "-" json-hex{12}',
};

/** Valid calendar dates (the 29th of February left out, since it depends on the year). */
const FORMAT_RULES = [
  'json-date ::= [0-9]{4} "-" ( ( "0" [13578] | "1" [02] ) "-" json-day31 | ( "0" [469] | "11" ) "-" json-day30 | "02-" json-day28 )',
  'json-day31 ::= "0" [1-9] | [12] [0-9] | "3" [01]',
  'json-day30 ::= "0" [1-9] | [12] [0-9] | "30"',
  'json-day28 ::= "0" [1-9] | "1" [0-9] | "2" [0-8]',
  'json-time ::= ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,3} )? ( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )',
  "json-hex ::= [0-9a-f]",
];

class SchemaCompiler {
  private readonly rules = new Map<string, string>();
  private readonly refs = new Map<string, string>();
  private usesFormats = false;

  constructor(private readonly root: unknown) {}

  compile(): string {
    const body = this.expression(this.root, "");
    const out = [`root ::= ${body}`, ...[...this.rules].map(([name, rule]) => `${name} ::= ${rule}`), ...JSON_RULES];
    if (this.usesFormats) out.push(...FORMAT_RULES);
    return out.join("\n");
  }

  /** A new rule of this body (one per distinct body), referred to by name. */
  private rule(body: string): string {
    for (const [name, existing] of this.rules) if (existing === body) return name;
    const name = `schema-${this.rules.size + 1}`;
    this.rules.set(name, body);
    return name;
  }

  private fail(message: string, keyword: string, path: string): never {
    throw new UnsupportedSchemaError(message, keyword, path);
  }

  private expression(schema: unknown, path: string): string {
    if (schema === true) return "json-value";
    if (schema === false) this.fail("the schema false admits no value", "false", path);
    if (!isObject(schema)) this.fail("a schema must be an object or a boolean", "type", path);
    for (const key of Object.keys(schema)) {
      if (!KEYWORDS.has(key) && !ANNOTATIONS.has(key)) this.fail(`the keyword "${key}" is not supported`, key, path);
    }
    const nullable = schema.nullable;
    if (nullable !== undefined && typeof nullable !== "boolean") this.fail("nullable must be a boolean", "nullable", path);
    const body = this.nonNull(schema, path);
    return nullable ? `( ${body} | "null" )` : body;
  }

  private nonNull(schema: Record<string, unknown>, path: string): string {
    const combinator = ["$ref", "anyOf", "oneOf"].find((k) => schema[k] !== undefined);
    if (combinator) {
      const siblings = Object.keys(schema).filter((k) => KEYWORDS.has(k) && !["nullable", "$defs", "definitions", combinator].includes(k));
      if (siblings.length > 0) this.fail(`"${siblings[0]}" beside "${combinator}" is not supported`, siblings[0], path);
      if (combinator === "$ref") return this.ref(schema.$ref, path);
      const branches = schema[combinator];
      if (!Array.isArray(branches) || branches.length === 0) this.fail(`${combinator} must be a non-empty array`, combinator, path);
      return `( ${branches.map((b, i) => this.expression(b, pointer(pointer(path, combinator), i))).join(" | ")} )`;
    }
    const types = this.types(schema, path);
    if (schema.const !== undefined || schema.enum !== undefined) return this.values(schema, types, path);
    const alternatives = types.map((t) => this.typed(t, schema, path));
    return alternatives.length === 1 ? alternatives[0] : `( ${alternatives.join(" | ")} )`;
  }

  /** The types the schema allows: its `type`, else those its keywords imply, else all. */
  private types(schema: Record<string, unknown>, path: string): JsonType[] {
    const type = schema.type;
    if (type !== undefined) {
      const list = Array.isArray(type) ? type : [type];
      for (const t of list) if (!TYPES.includes(t as JsonType)) this.fail(`unknown type ${JSON.stringify(t)}`, "type", path);
      if (list.length === 0) this.fail("type must not be empty", "type", path);
      // "number" covers "integer": listing both would offer integers twice.
      return (list as JsonType[]).filter((t, i) => list.indexOf(t) === i && !(t === "integer" && list.includes("number")));
    }
    if (["properties", "required", "additionalProperties"].some((k) => schema[k] !== undefined)) return ["object"];
    if (["items", "minItems", "maxItems"].some((k) => schema[k] !== undefined)) return ["array"];
    if (["pattern", "format"].some((k) => schema[k] !== undefined)) return ["string"];
    if (["minimum", "maximum"].some((k) => schema[k] !== undefined)) return ["number"];
    return [...TYPES.filter((t) => t !== "integer")];
  }

  private ref(ref: unknown, path: string): string {
    if (typeof ref !== "string") this.fail("$ref must be a string", "$ref", path);
    const known = this.refs.get(ref);
    if (known) return known;
    let target: unknown;
    if (ref === "#") target = this.root;
    else {
      const m = /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref);
      if (!m) this.fail(`$ref ${JSON.stringify(ref)}: only "#" and "#/$defs/name" are supported`, "$ref", path);
      const name = decodeURIComponent(m[2]).replace(/~1/g, "/").replace(/~0/g, "~");
      const defs = isObject(this.root) ? this.root[m[1]] : undefined;
      target = isObject(defs) && Object.hasOwn(defs, name) ? defs[name] : undefined;
      if (target === undefined) this.fail(`$ref ${JSON.stringify(ref)} names no definition`, "$ref", path);
    }
    // Named before its body is compiled, so that a recursive reference finds it.
    const name = `ref-${this.refs.size + 1}`;
    this.refs.set(ref, name);
    this.rules.set(name, "");
    this.rules.set(name, this.expression(target, ref.slice(1)));
    return name;
  }

  private values(schema: Record<string, unknown>, types: JsonType[], path: string): string {
    const keyword = schema.const !== undefined ? "const" : "enum";
    const values = keyword === "const" ? [schema.const] : schema.enum;
    if (!Array.isArray(values) || values.length === 0) this.fail("enum must be a non-empty array", "enum", path);
    const others = Object.keys(schema).filter((k) => KEYWORDS.has(k) && !["type", "const", "enum", "nullable"].includes(k));
    if (others.length > 0) this.fail(`"${others[0]}" beside "${keyword}" is not supported`, others[0], path);
    const fits = (v: unknown) => {
      const t = jsonTypeOf(v);
      return types.includes(t) || (t === "integer" && types.includes("number"));
    };
    const kept = values.filter(fits);
    if (kept.length === 0) this.fail(`no ${keyword} value has the schema's type`, keyword, path);
    return `( ${kept.map((v) => gbnfLiteral(JSON.stringify(v))).join(" | ")} )`;
  }

  private typed(type: JsonType, schema: Record<string, unknown>, path: string): string {
    switch (type) {
      case "null":
        return '"null"';
      case "boolean":
        return '( "true" | "false" )';
      case "string":
        return this.string(schema, path);
      case "integer":
      case "number":
        return this.number(type, schema, path);
      case "array":
        return this.array(schema, path);
      case "object":
        return this.object(schema, path);
    }
  }

  private string(schema: Record<string, unknown>, path: string): string {
    const { pattern, format } = schema;
    if (pattern !== undefined && format !== undefined) this.fail('"pattern" beside "format" is not supported', "pattern", path);
    if (pattern !== undefined) {
      if (typeof pattern !== "string") this.fail("pattern must be a string", "pattern", path);
      return this.rule(`"\\"" ${new PatternCompiler(pattern, path).compile()} "\\""`);
    }
    if (format !== undefined) {
      if (typeof format !== "string" || !Object.hasOwn(FORMATS, format)) {
        this.fail(`format ${JSON.stringify(format)} is not supported (date, date-time, uuid are)`, "format", path);
      }
      this.usesFormats = true;
      return this.rule(`"\\"" ${FORMATS[format]} "\\""`);
    }
    return "json-string";
  }

  private bound(schema: Record<string, unknown>, key: "minimum" | "maximum", path: string): number | undefined {
    const value = schema[key];
    if (value === undefined) return undefined;
    if (typeof value !== "number" || !Number.isFinite(value)) this.fail(`${key} must be a finite number`, key, path);
    if (Math.abs(value) > Number.MAX_SAFE_INTEGER) this.fail(`${key} beyond ±2^53 is not supported`, key, path);
    return value;
  }

  private number(type: "integer" | "number", schema: Record<string, unknown>, path: string): string {
    const min = this.bound(schema, "minimum", path);
    const max = this.bound(schema, "maximum", path);
    if (min === undefined && max === undefined) return type === "integer" ? "json-integer" : "json-number";
    const lo = min === undefined ? undefined : BigInt(Math.ceil(min));
    const hi = max === undefined ? undefined : BigInt(Math.floor(max));
    const alternatives: string[] = [];
    const whole = integerRange(lo, hi);
    if (whole) alternatives.push(whole);
    if (type === "number") {
      const fraction = ' "." [0-9]{1,15}';
      // i.ddd lies in [i, i + 1): i from max(lo, 0) to hi - 1.
      const positive = integerRange(lo !== undefined && lo > 0n ? lo : 0n, hi === undefined ? undefined : hi - 1n);
      if (positive) alternatives.push(`${positive}${fraction}`);
      // -k.ddd lies in (-(k + 1), -k]: k from max(0, -hi) to -lo - 1.
      const negative = integerRange(hi !== undefined && hi < 0n ? -hi : 0n, lo === undefined ? undefined : -lo - 1n);
      if (negative) alternatives.push(`"-" ${negative}${fraction}`);
    }
    if (alternatives.length === 0) this.fail(`no ${type} lies between minimum ${min} and maximum ${max}`, "minimum", path);
    return this.rule(alternatives.join(" | "));
  }

  private count(schema: Record<string, unknown>, key: "minItems" | "maxItems", path: string): number | undefined {
    const value = schema[key];
    if (value === undefined) return undefined;
    if (!Number.isInteger(value) || (value as number) < 0) this.fail(`${key} must be a non-negative integer`, key, path);
    if ((value as number) > MAX_COUNT) this.fail(`${key} above ${MAX_COUNT} is not supported`, key, path);
    return value as number;
  }

  private array(schema: Record<string, unknown>, path: string): string {
    const min = this.count(schema, "minItems", path) ?? 0;
    const max = this.count(schema, "maxItems", path);
    if (max !== undefined && max < min) this.fail("maxItems is below minItems", "maxItems", path);
    const item = schema.items === undefined ? "json-value" : this.expression(schema.items, pointer(path, "items"));
    if (max === 0) return '"[" ws "]"';
    const more = max === undefined ? `{${Math.max(min - 1, 0)},}` : `{${Math.max(min - 1, 0)},${max - 1}}`;
    const items = `${item} ws ( "," ws ${item} ws )${more}`;
    return this.rule(`"[" ws ${min === 0 ? `( ${items} )?` : items} "]"`);
  }

  private object(schema: Record<string, unknown>, path: string): string {
    const { properties, required, additionalProperties } = schema;
    if (properties !== undefined && !isObject(properties)) this.fail("properties must be an object", "properties", path);
    if (required !== undefined && (!Array.isArray(required) || !required.every((r) => typeof r === "string"))) {
      this.fail("required must be an array of strings", "required", path);
    }
    if (additionalProperties !== undefined && typeof additionalProperties !== "boolean") {
      this.fail("additionalProperties must be a boolean (a schema for them is not supported)", "additionalProperties", path);
    }
    const props = properties ?? {};
    const needed = new Set(required ?? []);
    for (const name of needed) if (!Object.hasOwn(props, name)) this.fail(`required property "${name}" has no schema in properties`, "required", path);
    const names = Object.keys(props);
    // With no properties listed and more allowed, any object.
    if (names.length === 0 && additionalProperties !== false) return "json-object";
    const pair = names.map((name) => `${gbnfLiteral(JSON.stringify(name))} ws ":" ws ${this.expression(props[name], pointer(pointer(path, "properties"), name))} ws`);
    // after[i]: the rest from property i once one was written (a comma before each); first[i]: before any was.
    let after = '""';
    let first = '""';
    for (let i = names.length - 1; i >= 0; i--) {
      const comma = `"," ws ${pair[i]} ${after}`;
      const nextAfter = needed.has(names[i]) ? comma : `( ${comma} | ${after} )`;
      const nextFirst = needed.has(names[i]) ? `${pair[i]} ${after}` : `( ${pair[i]} ${after} | ${first} )`;
      after = this.rule(nextAfter);
      first = this.rule(nextFirst);
    }
    return this.rule(`"{" ws ${first} "}"`);
  }
}

/** GBNF for the values a JSON Schema (of the supported subset) admits; UnsupportedSchemaError otherwise. */
export function jsonSchemaToGbnf(schema: unknown): string {
  return new SchemaCompiler(schema).compile();
}
