"use strict";
// Generations forced to a scripted text, for tests of what happens to a reply the trained models would not write
// on their own (tool calls): a logitsProcessor leaves only the script's next token (then an end token) samplable,
// so the real decode loop, detokenizer and stop handling produce the text.

/**
 * A logitsProcessor that forces each generation it runs in to the next of `scripts` (texts, in turn, cycling), each
 * followed by an end token. A generation starts where the history stops growing by one token per step.
 */
function scriptProcessor(model, scripts) {
  const scriptIds = scripts.map((text) => model.tokenize(text, { addBos: false }));
  const eos = model.info.eosIds[0];
  let script = -1;
  let step = 0;
  let lastLength = -1;
  return (logits, tokens) => {
    if (tokens.length !== lastLength + 1) {
      script = (script + 1) % scriptIds.length;
      step = 0;
    }
    lastLength = tokens.length;
    const ids = scriptIds[script];
    const forced = step < ids.length ? ids[step] : eos;
    step++;
    logits.fill(-Infinity);
    logits[forced] = 0;
  };
}

/**
 * The model with every generate() forced to the scripts in turn (see scriptProcessor), for a server to run; the
 * prompts it was given are kept in `prompts` (as text) so a test can check what the server rendered.
 */
function scriptedModel(model, scripts) {
  const processor = scriptProcessor(model, scripts);
  const prompts = [];
  const scripted = new Proxy(model, {
    get(target, prop) {
      if (prop === "generate") {
        return (prompt, options) => {
          prompts.push(target.detokenize(prompt.tokens));
          return target.generate(prompt, { ...options, logitsProcessor: processor });
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { model: scripted, prompts };
}

module.exports = { scriptProcessor, scriptedModel };
